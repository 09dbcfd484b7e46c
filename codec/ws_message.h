/*
 * ws_message.h - the JSON messages of a WebSocket session beside the
 * envelopes (docs/protocol.md), as functions over buffers: no I/O, no
 * state, any thread.
 *
 * A client sends one kind, as a text message:
 *   {"type":"refresh","token":"<JWT>"}
 * herald-ws answers a refresh it accepted with
 *   {"type":"refreshed","expires_at":<the new token's exp, seconds>}
 * warns a connection whose token is about to expire with
 *   {"type":"expiring","expires_in":<seconds until it closes it with 4401>}
 * and, every ws_ping_interval in which it sent no other text frame, tells
 * the page (which cannot see pings) that the connection is alive with
 *   {"type":"heartbeat"}
 * Other keys in a client's message are ignored (room to grow); the server's
 * messages have no "id", which tells them from envelopes.
 */
#ifndef HERALD_WS_MESSAGE_H
#define HERALD_WS_MESSAGE_H

#include <stddef.h>

/* What wsm_parse() found: a kind (> 0) or why the message is refused (< 0). */
enum wsm_result {
	WSM_REFRESH = 1,
	WSM_MALFORMED = -1,    /* "bad_message": not strict JSON (RFC 8259), not an object */
	WSM_UNKNOWN_TYPE = -2, /* "unknown_type": no string "type", or one not known here */
	WSM_NO_TOKEN = -3,     /* "missing": a refresh without a non-empty string "token" */
	WSM_TOO_LONG = -4,     /* "too_long": the token does not fit the caller's buffer */
	WSM_INTERNAL = -5,     /* "internal": out of memory */
};

/* The longest server message wsm_refreshed() / wsm_expiring() /
 * wsm_heartbeat() write, with its NUL. */
#define WSM_OUT_MAX 64

/*
 * Parse one client text message: len bytes at s (need not be
 * NUL-terminated).  For a refresh, copies the token NUL-terminated into
 * token (tokenmax bytes) and returns WSM_REFRESH; otherwise returns an
 * enum wsm_result error and token is left empty.  A token holding a NUL
 * (an escaped \u0000) is WSM_MALFORMED.
 */
int wsm_parse(const void *s, size_t len, char *token, size_t tokenmax);

/* The word for a result, as close reasons and logs carry it ("bad_message",
 * "unknown_type", "missing", "too_long", "internal"; "refresh" for
 * WSM_REFRESH). */
const char *wsm_reason(int result);

/* The server's messages, written NUL-terminated into out (WSM_OUT_MAX
 * bytes).  Return the length. */
size_t wsm_refreshed(char out[WSM_OUT_MAX], long long expires_at);
size_t wsm_expiring(char out[WSM_OUT_MAX], long long expires_in);
size_t wsm_heartbeat(char out[WSM_OUT_MAX]);

#endif
