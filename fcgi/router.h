/*
 * router.h - herald-fcgi's request validation: which route, which user,
 * which parameters, or which error (DESIGN.md sections 4 and 5).
 *
 * Pure: no I/O, no clock (the caller passes now), so every bad-input case is
 * a unit test.  Order of checks: path (404), method (405), query length
 * (414), token (401), parameters (400).
 */
#ifndef HERALD_ROUTER_H
#define HERALD_ROUTER_H

#include <stddef.h>
#include <time.h>

#include "auth.h"
#include "conf.h"
#include "cursor.h"
#include "publish.h"
#include "ticket.h"

/* Longest query string accepted (bytes); a JWT is well under it. */
#define ROUTER_QUERY_MAX 4096
/* Default and largest poll `limit` (DESIGN 5). */
#define ROUTER_LIMIT_MAX 100

enum route_kind {
	ROUTE_NONE = 0,
	ROUTE_POLL,
	ROUTE_SSE,
	ROUTE_HEALTH,
	ROUTE_METRICS,
	ROUTE_PUBLISH,
	ROUTE_LIVE,  /* path_health "/live": liveness, answered without Redis */
	ROUTE_READY, /* path_health "/ready": readiness, metrics_ready() decides */
	ROUTE_TICKET, /* POST path_ticket: a ticket for the token in Authorization */
};

/* The CGI variables of a request; any may be NULL (absent). */
struct route_in {
	const char *method;         /* REQUEST_METHOD */
	const char *path;           /* DOCUMENT_URI, else PATH_INFO, else SCRIPT_NAME */
	const char *query;          /* QUERY_STRING */
	const char *authorization;  /* HTTP_AUTHORIZATION */
	const char *cookie;         /* HTTP_COOKIE */
	const char *last_event_id;  /* HTTP_LAST_EVENT_ID */
	const char *content_length; /* CONTENT_LENGTH */
	const char *idempotency_key; /* HTTP_IDEMPOTENCY_KEY */
};

struct route {
	int kind;               /* enum route_kind (also set on most errors) */
	int status;             /* 0: go ahead; else the HTTP status to answer */
	const char *error;      /* constant error code for the JSON body */
	char detail[160];       /* "" or the detail for the JSON body */
	const char *allow;      /* the Allow header of a 405 */
	struct auth_identity id;  /* poll, sse, ticket: the token's user; sse with a
				   * ticket: filled by the handler that redeems it */
	char ticket[TICKET_LEN + 1]; /* sse: ?ticket= (well formed), else "" */
	int has_since;          /* poll: since; sse: Last-Event-ID or last_event_id */
	struct cursor since;
	unsigned limit;         /* poll */
	long wait;              /* poll: seconds */
	int revoke_on_loop;     /* sse: the revocation check is left to the loop (held.c) */
	int revoke_with_read;   /* poll: the check goes with the history read */
	char user[AUTH_USER_MAX + 1]; /* publish: the target user */
	long content_length;    /* publish */
	/* publish: the Idempotency-Key header without its optional quotes, ""
	 * when absent (the caller then makes one per request) */
	char idem_key[PUBLISH_IDEM_KEY_MAX + 1];
};

/*
 * Route in.  a verifies tokens (poll, sse); now is the time to check them
 * at.  Fills *out and returns out->status (0 when the request may proceed).
 */
int router_route(const struct conf *c, const auth_t *a, time_t now, const struct route_in *in,
		 struct route *out);

/*
 * The path of a request from its CGI variables: DOCUMENT_URI (nginx), else
 * PATH_INFO when it names a route, else SCRIPT_NAME, else REQUEST_URI
 * without its query.  Pointers into the arguments, or NULL.
 */
const char *router_path(const struct conf *c, const char *document_uri, const char *path_info,
			const char *script_name, const char *request_uri, size_t *len);

/* The JSON body of an error route: {"error":"...","detail":"..."}. */
int router_error_json(const struct route *r, char *buf, size_t len);

/*
 * Non-zero when given (given_len bytes, the credentials of the request's
 * Authorization: Bearer) equals key (NUL-terminated, the publish_key).  The
 * time taken tells neither where they differ nor whether the lengths match:
 * SHA-256 digests of both are compared with CRYPTO_memcmp.  NULLs are unequal.
 */
int router_key_equal(const char *given, size_t given_len, const char *key);

#endif
