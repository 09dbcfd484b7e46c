/*
 * ws_handshake.h - the HTTP/1.1 side of herald-ws: a bounded request
 * parser, the WebSocket opening handshake checks (RFC 6455 section 4.2), and
 * the responses (101, errors, plain GETs for health and metrics).  Functions
 * over buffers, no I/O, any thread: herald-ws, the unit tests and the fuzz
 * target link them from codec/libcodec.a.
 *
 * The parser works on the request as it accumulates in one buffer of at
 * most WSH_MAX bytes: wsh_parse() says "need more" until the blank line
 * arrives, then splits the request in place (pointers into the buffer,
 * NUL-terminated), so nothing is copied and nothing outlives the buffer.
 */
#ifndef HERALD_WS_HANDSHAKE_H
#define HERALD_WS_HANDSHAKE_H

#include <stddef.h>

#define WSH_MAX 8192        /* request line and headers, CRLFs included */
#define WSH_ACCEPT_LEN 28   /* base64 of a SHA-1 */

struct wsh_req {
	char *method;
	char *path;             /* the request target up to '?' */
	char *query;            /* after '?', or NULL */
	int minor;              /* HTTP/1.x */
	/* the headers herald reads; NULL when absent */
	char *host;
	char *upgrade;
	char *connection;       /* the first Connection header (all are scanned for "upgrade") */
	char *key;              /* Sec-WebSocket-Key */
	char *version;          /* Sec-WebSocket-Version */
	char *origin;
	char *authorization;
	char *cookie;
	char *x_forwarded_for;
	int connection_upgrade; /* Connection lists the token "upgrade" */
	int upgrade_websocket;  /* Upgrade lists the token "websocket" */
};

/*
 * Parse buf (len bytes received so far).  The request line is checked as
 * soon as its bytes arrive, so garbage is refused at once.  Returns the request's length (headers and blank line) with *r
 * filled and buf modified in place, 0 when the blank line has not arrived
 * (and len < WSH_MAX), or a negative HTTP status: -400 (malformed request
 * line or header, folded header, duplicate Upgrade/Sec-WebSocket-Key/
 * Sec-WebSocket-Version/Origin/Authorization/Host), -431 (no blank line
 * within WSH_MAX bytes), -505 (not HTTP/1.x).
 */
int wsh_parse(char *buf, size_t len, struct wsh_req *r);

/*
 * The upgrade checks for a request to the WebSocket path.  Returns 0, or an
 * HTTP status: 405 (not GET), 400 (HTTP/1.0, no Upgrade: websocket, no
 * Connection: upgrade, a key that is not 16 bytes in base64, no Host), 426
 * (Sec-WebSocket-Version absent or not 13: answer with
 * "Sec-WebSocket-Version: 13").
 */
int wsh_check_upgrade(const struct wsh_req *r);

/*
 * Non-zero when origin may connect: allowed is a NULL-terminated list (NULL
 * or empty: any origin); a request without Origin (not a browser) passes.
 * Origins compare case-insensitively and exactly ("https://app.example").
 */
int wsh_origin_allowed(const char *origin, char *const *allowed);

/*
 * Non-zero only when origin is present and named in allowed (a
 * NULL-terminated list; NULL or empty: none is; "*" names no origin).  The
 * check for a request authenticated by a cookie, which any site's page can
 * make a browser send.
 */
int wsh_origin_listed(const char *origin, char *const *allowed);

/* Sec-WebSocket-Accept for key: out gets WSH_ACCEPT_LEN characters and a NUL.
 * Returns 0 or -1 (OpenSSL failed). */
int wsh_accept(const char *key, char out[WSH_ACCEPT_LEN + 1]);

/* The 101 response.  Returns its length, or -1 when out is too small. */
int wsh_response_101(char *out, size_t outlen, const char *accept);

/*
 * A complete response with Connection: close: status, content type and body
 * (body may be NULL), and extra header lines (each ending in CRLF, may be
 * NULL).  Returns its length, or -1 when out is too small.
 */
int wsh_response(char *out, size_t outlen, int status, const char *extra_headers,
		 const char *content_type, const char *body, size_t body_len);

/*
 * The same response in a buffer of its exact size, whatever the body's
 * size (/metrics grows with every metric): malloc()ed, owned by the caller,
 * not NUL-terminated; *len gets its length.  NULL when out of memory.
 */
char *wsh_response_new(int status, const char *extra_headers, const char *content_type,
		       const char *body, size_t body_len, size_t *len);

#endif
