#include "config.h"

#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "err.h"
#include "http.h"
#include "metrics.h"
#include "publish.h"
#include "text.h"

static int fail(struct route *r, int status, const char *error, const char *detail)
{
	r->status = status;
	r->error = error;
	snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
	return status;
}

static int bad(struct route *r, const char *detail)
{
	return fail(r, 400, "bad_request", detail);
}

/* A decimal without sign in [lo, hi]. */
static int parse_ulong(const char *s, long lo, long hi, long *out)
{
	uint64_t v;

	if (text_parse_uint(s, strlen(s), (uint64_t)hi, &v) != 0 || v < (uint64_t)lo)
		return HERR_INVAL;
	*out = (long)v;
	return 0;
}

/* Query parameter name: 1 present (in buf), 0 absent or empty, <0 malformed. */
static int param(const char *query, const char *name, char *buf, size_t len)
{
	int n = http_query_get(query, name, buf, len);

	if (n == HERR_NOTFOUND)
		return 0;
	if (n < 0)
		return n;
	return n > 0;
}

static int cursor_param(struct route *r, const char *value, const char *what)
{
	char msg[96];

	if (cursor_parse(value, strlen(value), &r->since) < 0) {
		snprintf(msg, sizeof msg, "%s: not a stream id (MS-SEQ)", what);
		return bad(r, msg);
	}
	r->has_since = 1;
	return 0;
}

static int authenticate(struct route *r, const struct conf *c, const auth_t *a, time_t now,
			const struct route_in *in)
{
	char token[AUTH_TOKEN_MAX + 1];
	int rc;

	rc = auth_find_token(in->authorization, in->query, in->cookie, c->jwt_cookie, token,
			     sizeof token);
	if (rc == AUTH_OK)
		rc = auth_verify(a, token, strlen(token), now, &r->id);
	if (rc != AUTH_OK)
		return fail(r, 401, "invalid_token", auth_reason(rc));
	return 0;
}

/* SSE: a well-formed ?ticket= stands for the token (redeemed by the handler). */
static int sse_ticket(struct route *r, const struct route_in *in)
{
	char buf[64];
	int n = http_query_get(in->query, "ticket", buf, sizeof buf);

	if (n == HERR_NOTFOUND || n == 0)
		return 0;
	if (n < 0 || !ticket_valid(buf, (size_t)n)) {
		fail(r, 401, "invalid_token", auth_reason(AUTH_BAD_TICKET));
		return -1;
	}
	memcpy(r->ticket, buf, TICKET_LEN + 1);
	return 1;
}

/* The ticket endpoint takes the token from Authorization only: keeping it
 * out of URLs is its point. */
static int authenticate_header(struct route *r, const auth_t *a, time_t now,
			       const struct route_in *in)
{
	char token[AUTH_TOKEN_MAX + 1];
	int rc = auth_find_token(in->authorization, NULL, NULL, NULL, token, sizeof token);

	if (rc == AUTH_OK)
		rc = auth_verify(a, token, strlen(token), now, &r->id);
	if (rc != AUTH_OK)
		return fail(r, 401, "invalid_token", auth_reason(rc));
	return 0;
}

static int route_poll(struct route *r, const struct conf *c, const char *q)
{
	char buf[CURSOR_STR_MAX + 8];
	long v;
	int rc;

	rc = param(q, "since", buf, sizeof buf);
	if (rc < 0)
		return bad(r, "since: not a stream id (MS-SEQ)");
	if (rc > 0 && cursor_param(r, buf, "since") != 0)
		return r->status;
	r->limit = ROUTER_LIMIT_MAX;
	rc = param(q, "limit", buf, sizeof buf);
	if (rc < 0 || (rc > 0 && parse_ulong(buf, 1, ROUTER_LIMIT_MAX, &v) < 0))
		return bad(r, "limit: must be an integer from 1 to 100");
	if (rc > 0)
		r->limit = (unsigned)v;
	r->wait = 0;
	rc = param(q, "wait", buf, sizeof buf);
	if (rc < 0 || (rc > 0 && parse_ulong(buf, 0, c->poll_wait_max, &v) < 0)) {
		char msg[64];

		snprintf(msg, sizeof msg, "wait: must be an integer from 0 to %ld",
			 c->poll_wait_max);
		return bad(r, msg);
	}
	if (rc > 0)
		r->wait = v;
	return 0;
}

static int route_sse(struct route *r, const char *q, const char *header)
{
	char buf[CURSOR_STR_MAX + 8];
	int rc;

	/* The header is what the browser sends on reconnect: newer than the URL's. */
	if (header != NULL && header[0] != '\0')
		return cursor_param(r, header, "Last-Event-ID");
	rc = param(q, "last_event_id", buf, sizeof buf);
	if (rc < 0)
		return bad(r, "last_event_id: not a stream id (MS-SEQ)");
	if (rc > 0)
		return cursor_param(r, buf, "last_event_id");
	return 0;
}

/*
 * Compare SHA-256 digests of both in constant time: the time depends neither
 * on where they differ nor on the presented length against the key's (a
 * length check first would tell an attacker the key's length).
 */
int router_key_equal(const char *given, size_t given_len, const char *key)
{
	unsigned char dg[EVP_MAX_MD_SIZE], dk[EVP_MAX_MD_SIZE];
	unsigned int ng = 0, nk = 0;

	if (given == NULL || key == NULL)
		return 0;
	if (EVP_Digest(given, given_len, dg, &ng, EVP_sha256(), NULL) != 1 ||
	    EVP_Digest(key, strlen(key), dk, &nk, EVP_sha256(), NULL) != 1 || ng != nk ||
	    ng == 0)
		return 0;
	return CRYPTO_memcmp(dg, dk, ng) == 0;
}

/*
 * The Idempotency-Key header: a bare key, or the quoted string of
 * draft-ietf-httpapi-idempotency-key-header (a Structured Field String).
 */
static int idem_header(struct route *r, const char *h)
{
	size_t len = strlen(h);

	if (len >= 2 && h[0] == '"' && h[len - 1] == '"') {
		h++;
		len -= 2;
	}
	if (publish_idem_check(h, len, NULL, 0) != 0)
		return bad(r, "Idempotency-Key: must match [A-Za-z0-9_.:-]{1,128}");
	memcpy(r->idem_key, h, len);
	r->idem_key[len] = '\0';
	return 0;
}

static int route_publish(struct route *r, const struct conf *c, const struct route_in *in)
{
	const char *auth = in->authorization;
	long len;
	int rc;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 ||
	    !router_key_equal(auth + 7, strlen(auth + 7), c->publish_key))
		return fail(r, 401, "invalid_key", "Authorization: Bearer PUBLISH_KEY required");
	rc = param(in->query, "user", r->user, sizeof r->user);
	if (rc <= 0 || !auth_user_valid(r->user, strlen(r->user)))
		return bad(r, "user: must match [A-Za-z0-9_.-]{1,64}");
	if (in->content_length == NULL ||
	    parse_ulong(in->content_length, 0, 999999999, &len) < 0)
		return fail(r, 411, "length_required", "Content-Length required");
	if (len > PUBLISH_PAYLOAD_MAX)
		return fail(r, 413, "payload_too_large", "payload: at most 65536 bytes");
	r->content_length = len;
	if (in->idempotency_key != NULL)
		return idem_header(r, in->idempotency_key);
	return 0;
}

static int path_is(const char *path, size_t len, const char *want)
{
	return want != NULL && strlen(want) == len && memcmp(path, want, len) == 0;
}

static int kind_of(const struct conf *c, const char *path, size_t len)
{
	if (path == NULL)
		return ROUTE_NONE;
	if (path_is(path, len, c->path_poll))
		return ROUTE_POLL;
	if (path_is(path, len, c->path_sse))
		return ROUTE_SSE;
	if (path_is(path, len, c->path_health))
		return ROUTE_HEALTH;
	if (path_is(path, len, c->path_metrics))
		return ROUTE_METRICS;
	switch (metrics_probe_of(c->path_health, path, len)) {
	case METRICS_PROBE_LIVE: return ROUTE_LIVE;
	case METRICS_PROBE_READY: return ROUTE_READY;
	default: break;
	}
	if (path_is(path, len, c->path_publish) && c->publish_key != NULL)
		return ROUTE_PUBLISH;
	if (path_is(path, len, c->path_ticket))
		return ROUTE_TICKET;
	return ROUTE_NONE;
}

const char *router_path(const struct conf *c, const char *document_uri, const char *path_info,
			const char *script_name, const char *request_uri, size_t *len)
{
	if (document_uri != NULL && document_uri[0] != '\0') {
		*len = strlen(document_uri);
		return document_uri;
	}
	if (path_info != NULL && kind_of(c, path_info, strlen(path_info)) != ROUTE_NONE) {
		*len = strlen(path_info);
		return path_info;
	}
	if (script_name != NULL && script_name[0] != '\0') {
		*len = strlen(script_name);
		return script_name;
	}
	if (request_uri != NULL) {
		*len = strcspn(request_uri, "?");
		return request_uri;
	}
	*len = 0;
	return NULL;
}

int router_route(const struct conf *c, const auth_t *a, time_t now, const struct route_in *in,
		 struct route *r)
{
	const char *want;

	memset(r, 0, sizeof *r);
	r->kind = kind_of(c, in->path, in->path ? strlen(in->path) : 0);
	if (r->kind == ROUTE_NONE)
		return fail(r, 404, "not_found", "no such endpoint");
	want = r->kind == ROUTE_PUBLISH || r->kind == ROUTE_TICKET ? "POST" : "GET";
	if (in->method == NULL || strcmp(in->method, want) != 0) {
		r->allow = want;
		return fail(r, 405, "method_not_allowed", want);
	}
	if (in->query != NULL && strlen(in->query) > ROUTER_QUERY_MAX)
		return fail(r, 414, "uri_too_long", "query string over 4096 bytes");
	switch (r->kind) {
	case ROUTE_POLL:
		if (authenticate(r, c, a, now, in) != 0)
			return r->status;
		return route_poll(r, c, in->query);
	case ROUTE_SSE:
		switch (sse_ticket(r, in)) {
		case 0:
			if (authenticate(r, c, a, now, in) != 0)
				return r->status;
			break;
		case 1:
			break;
		default:
			return r->status;
		}
		return route_sse(r, in->query, in->last_event_id);
	case ROUTE_TICKET:
		return authenticate_header(r, a, now, in);
	case ROUTE_PUBLISH:
		return route_publish(r, c, in);
	default:
		return 0;
	}
}

int router_error_json(const struct route *r, char *buf, size_t len)
{
	const char *error = r->error ? r->error : "internal"; /* one of our constants */
	char detail[sizeof r->detail * TEXT_JSON_CHAR_MAX + 1];
	size_t dlen = strnlen(r->detail, sizeof r->detail);
	size_t fixed = strlen("{\"error\":\"\",\"detail\":\"\"}") + strlen(error) + 1;
	size_t room = len > fixed ? len - fixed : 0;
	size_t i = 0, o = 0;

	/* detail may quote what the client sent: escape it, and cut it at a
	 * character boundary rather than let snprintf cut the JSON short. */
	while (i < dlen) {
		char piece[TEXT_JSON_CHAR_MAX];
		size_t used, n = text_json_char(r->detail + i, dlen - i, piece, &used);

		if (o + n > room)
			break;
		memcpy(detail + o, piece, n);
		o += n;
		i += used;
	}
	detail[o] = '\0';
	return snprintf(buf, len, "{\"error\":\"%s\",\"detail\":\"%s\"}", error, detail);
}
