/*
 * auth.h - JWT verification (DESIGN.md section 4).
 *
 * The whole check is here, on OpenSSL and json-c: libjwt 1.10 checks a
 * signature and nothing more, with holes of its own (NOTES.md), and a
 * second pass through it cost a sixth of an SSE connect (issue 13), so the
 * tests and fuzz target keep it only as an independent issuer of tokens.
 *   - the header's algorithm must equal the configured one (no `none`, no
 *     HS/RS confusion), checked before any signature work;
 *   - HMAC signatures are compared in constant time, with the key's HMAC
 *     pads computed once at start-up; RS256/ES256 with the key parsed at
 *     start-up;
 *   - header and claims must be RFC 8259 JSON objects in UTF-8 (jsonv),
 *     else AUTH_MALFORMED;
 *   - a header typ other than "JWT" (any case) is malformed;
 *   - exp is required, nbf checked when present, iss/aud when configured,
 *     all with the configured leeway; an exp past AUTH_EXP_MAX is clamped;
 *   - the user claim (string or integer) must match [A-Za-z0-9_.-]{1,64};
 *   - tokens longer than AUTH_TOKEN_MAX are refused before any decoding.
 *
 * auth_verify() is thread-safe: an auth_t is immutable once built.
 */
#ifndef HERALD_AUTH_H
#define HERALD_AUTH_H

#include <stddef.h>
#include <time.h>

#include "conf.h"

#define AUTH_TOKEN_MAX 8192
#define AUTH_USER_MAX 64
/* The longest jti an identity keeps (see struct auth_identity). */
#define AUTH_JTI_MAX 128
/*
 * The largest exp an identity carries: 9999-12-31T23:59:59Z.  A later exp is
 * accepted and clamped to it, so (exp + leeway) * 1000 fits a long long.
 */
#define AUTH_EXP_MAX 253402300799LL

/* Why a token was refused.  auth_reason() gives the stable string used in
 * the 401 body's "detail" and in logs. */
enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING = -1,        /* "missing": no token at all */
	AUTH_TOO_LONG = -2,       /* "too_long" */
	AUTH_MALFORMED = -3,      /* "malformed": not three base64url parts of JSON */
	AUTH_BAD_ALG = -4,        /* "bad_algorithm": header alg is not the configured one */
	AUTH_BAD_SIGNATURE = -5,  /* "bad_signature" */
	AUTH_EXPIRED = -6,        /* "expired" */
	AUTH_NOT_YET_VALID = -7,  /* "not_yet_valid" */
	AUTH_MISSING_EXP = -8,    /* "missing_exp": no exp, or not a number */
	AUTH_BAD_ISSUER = -9,     /* "bad_issuer" */
	AUTH_BAD_AUDIENCE = -10,  /* "bad_audience" */
	AUTH_MISSING_USER = -11,  /* "missing_user" */
	AUTH_BAD_USER = -12,      /* "bad_user": wrong type, too long or bad characters */
	AUTH_INTERNAL = -13,      /* "internal": out of memory */
	AUTH_REVOKED = -14,       /* "revoked": valid, but revoked in Redis (issued
				   * before the user's not-before time, or its jti
				   * revoked); never returned by auth_verify() */
	AUTH_BAD_TICKET = -15,    /* "bad_ticket": a ticket that is unknown, used,
				   * expired or forged (src/ticket.h) */
};

typedef struct auth auth_t;

struct auth_identity {
	char user[AUTH_USER_MAX + 1]; /* the user id, NUL-terminated */
	long long exp;                /* the token's exp (seconds since the epoch), <= AUTH_EXP_MAX */
	long long iat;                /* the token's iat, 0 when absent or not an integer */
	/*
	 * The token's jti when it is a string of 1 to AUTH_JTI_MAX printable
	 * ASCII characters without spaces (auth_jti_valid), else "": such a
	 * token cannot be revoked by jti (only by the user's not-before time).
	 */
	char jti[AUTH_JTI_MAX + 1];
};

/*
 * Build a verifier from c (jwt_alg, jwt_secret or jwt_key_file, claim, iss,
 * aud, leeway).  Reads the key file now; call again on SIGHUP to reload and
 * swap the pointer.  Returns 0 or HERR_INVAL/HERR_IO/HERR_NOMEM with a
 * message naming the file and the problem in err.
 */
int auth_new(auth_t **out, const struct conf *c, char *err, size_t errlen);
void auth_free(auth_t *a);

/*
 * Verify token (len bytes, need not be NUL-terminated) at time now.
 * On AUTH_OK fills *id (id may be NULL).  Returns an enum auth_result.
 */
int auth_verify(const auth_t *a, const char *token, size_t len, time_t now,
		struct auth_identity *id);

const char *auth_reason(int result);

/*
 * Find the token of a request in DESIGN order: the `Authorization: Bearer`
 * header value, then the `token` query parameter (percent-decoded), then the
 * cookie named cookie_name.  Any argument may be NULL (absent).  Copies the
 * token into out (NUL-terminated).  A source with an empty value counts as
 * absent; the Bearer scheme is case-insensitive, followed by one or more
 * spaces.  Returns AUTH_OK, AUTH_MISSING, AUTH_TOO_LONG when the token does
 * not fit in outlen, or AUTH_MALFORMED when the `token` query parameter is
 * badly percent-encoded.
 */
int auth_find_token(const char *authorization, const char *query,
		    const char *cookie_header, const char *cookie_name,
		    char *out, size_t outlen);

/* Where auth_find_token_from() found the token. */
enum auth_source {
	AUTH_FROM_NONE = 0,
	AUTH_FROM_HEADER,  /* Authorization: Bearer */
	AUTH_FROM_QUERY,   /* ?token= */
	AUTH_FROM_COOKIE,  /* the cookie: a browser sends it on cross-site requests too */
};

/*
 * auth_find_token(), also telling in *from (may be NULL) which source the
 * token came from, or was refused from (AUTH_TOO_LONG, AUTH_MALFORMED);
 * AUTH_FROM_NONE with AUTH_MISSING.  A WebSocket handshake is not subject to
 * CORS: a token from a cookie is only as good as the request's Origin.
 */
int auth_find_token_from(const char *authorization, const char *query,
			 const char *cookie_header, const char *cookie_name,
			 char *out, size_t outlen, enum auth_source *from);

/* Non-zero when s (len bytes) is a valid user id: [A-Za-z0-9_.-]{1,64}. */
int auth_user_valid(const char *s, size_t len);

/* Non-zero when s (len bytes) is a jti Herald keeps: 1 to AUTH_JTI_MAX
 * bytes from '!' to '~' (it becomes part of a Redis key and of a control
 * message, whose fields are separated by spaces). */
int auth_jti_valid(const char *s, size_t len);

/*
 * Unpadded base64url (RFC 7515) of n bytes into out, which has room for
 * 4 * ceil(n / 3) + 1 bytes; NUL-terminated.  Returns the length.
 */
size_t auth_b64url_encode(const unsigned char *in, size_t n, char *out);

#endif
