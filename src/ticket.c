#include "config.h"

#include "ticket.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "err.h"
#include "redis.h"
#include "text.h"

int ticket_valid(const char *t, size_t len)
{
	if (t == NULL || len != TICKET_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = t[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

int ticket_new(char *out)
{
	unsigned char rnd[TICKET_BYTES];
	size_t got = 0;

	while (got < sizeof rnd) {
		ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return HERR_IO;
		got += (size_t)n;
	}
	auth_b64url_encode(rnd, sizeof rnd, out);
	return 0;
}

int ticket_key(char *buf, size_t len, const char *prefix, const char *ticket)
{
	/* "__herald" is a valid user id: its channel P:__herald is no key of this shape */
	int n = redis_channel(buf, len, prefix, "__herald");
	int m;

	if (n < 0)
		return n;
	/* Cluster layout: no hash tag, so the tickets spread over every slot
	 * (P:__herald is shorter than P:{__herald}: it fits). */
	if (redis_get_cluster())
		n = snprintf(buf, len, "%s:__herald", prefix);
	if (ticket == NULL || !ticket_valid(ticket, strlen(ticket)))
		return HERR_INVAL;
	m = snprintf(buf + n, len - (size_t)n, ":ticket:%s", ticket);
	if (m < 0 || (size_t)m >= len - (size_t)n)
		return HERR_TOOBIG;
	return n + m;
}

int ticket_value(char *buf, size_t len, const struct auth_identity *id)
{
	int n = snprintf(buf, len, "%s %lld %lld%s%s", id->user, id->exp, id->iat,
			 id->jti[0] != '\0' ? " " : "", id->jti);

	if (n < 0 || (size_t)n >= len)
		return HERR_TOOBIG;
	return n;
}

/* The next space-separated field of s from *i; 0 or HERR_INVAL when empty. */
static int next_field(const char *s, size_t len, size_t *i, const char **f, size_t *flen)
{
	const char *sp;

	if (*i >= len)
		return HERR_INVAL;
	*f = s + *i;
	sp = memchr(*f, ' ', len - *i);
	*flen = sp != NULL ? (size_t)(sp - *f) : len - *i;
	*i += *flen + (sp != NULL ? 1 : 0);
	if (sp != NULL && *i >= len)
		return HERR_INVAL; /* a trailing space */
	return *flen > 0 ? 0 : HERR_INVAL;
}

static int parse_value(const char *s, size_t len, struct auth_identity *id)
{
	const char *f;
	size_t i = 0, flen;
	uint64_t v;

	memset(id, 0, sizeof *id);
	if (next_field(s, len, &i, &f, &flen) != 0 || !auth_user_valid(f, flen))
		return HERR_INVAL;
	memcpy(id->user, f, flen);
	if (next_field(s, len, &i, &f, &flen) != 0 ||
	    text_parse_uint(f, flen, (uint64_t)AUTH_EXP_MAX, &v) != 0)
		return HERR_INVAL;
	id->exp = (long long)v;
	if (next_field(s, len, &i, &f, &flen) != 0 ||
	    text_parse_uint(f, flen, (uint64_t)AUTH_EXP_MAX, &v) != 0)
		return HERR_INVAL;
	id->iat = (long long)v;
	if (i < len) {
		if (next_field(s, len, &i, &f, &flen) != 0 || !auth_jti_valid(f, flen) || i < len)
			return HERR_INVAL;
		memcpy(id->jti, f, flen);
	}
	return 0;
}

int ticket_redeem_reply(const redisReply *r, time_t now, long leeway, struct auth_identity *id)
{
	if (r == NULL || (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING))
		return HERR_REDIS;
	if (r->type == REDIS_REPLY_NIL || parse_value(r->str, r->len, id) != 0)
		return AUTH_BAD_TICKET;
	if ((long long)now - leeway > id->exp)
		return AUTH_EXPIRED;
	return AUTH_OK;
}

int ticket_store_sync(redisContext *rc, const char *prefix, const struct auth_identity *id,
		      long ttl, char *out, char *err, size_t errlen)
{
	char key[REDIS_KEY_MAX], val[AUTH_USER_MAX + AUTH_JTI_MAX + 64], ex[24];
	const char *argv[6];
	size_t argvlen[6];
	redisReply *r;
	int kn, vn, ret;

	if (out[0] == '\0' && ticket_new(out) != 0)
		return herr_set(HERR_IO, err, errlen, "getrandom failed: %s", strerror(errno));
	kn = ticket_key(key, sizeof key, prefix, out);
	vn = ticket_value(val, sizeof val, id);
	if (kn < 0 || vn < 0)
		return herr_set(HERR_INVAL, err, errlen, "ticket: bad key or value");
	snprintf(ex, sizeof ex, "%ld", ttl);
	argv[0] = "SET";
	argv[1] = key;
	argv[2] = val;
	argv[3] = "EX";
	argv[4] = ex;
	argv[5] = "NX";
	argvlen[0] = 3;
	argvlen[1] = (size_t)kn;
	argvlen[2] = (size_t)vn;
	argvlen[3] = 2;
	argvlen[4] = strlen(ex);
	argvlen[5] = 2;
	r = redisCommandArgv(rc, 6, argv, argvlen);
	if (r == NULL)
		return herr_set(HERR_REDIS, err, errlen, "SET ticket: %s",
				rc->errstr[0] != '\0' ? rc->errstr : "no reply");
	/* NX: a nil answer is a collision of 256 random bits, i.e. a broken RNG */
	ret = r->type == REDIS_REPLY_STATUS ? 0 : HERR_REDIS;
	if (ret != 0)
		herr_set(HERR_REDIS, err, errlen, "SET ticket: %s",
			 r->type == REDIS_REPLY_ERROR ? r->str : "not stored");
	freeReplyObject(r);
	return ret;
}

int ticket_redeem_sync(redisContext *rc, const char *prefix, const char *ticket, time_t now,
		       long leeway, struct auth_identity *id, char *err, size_t errlen)
{
	char key[REDIS_KEY_MAX];
	const char *argv[2];
	size_t argvlen[2];
	redisReply *r;
	int kn, res;

	kn = ticket_key(key, sizeof key, prefix, ticket);
	if (kn == HERR_INVAL)
		return AUTH_BAD_TICKET;
	if (kn < 0)
		return herr_set(HERR_REDIS, err, errlen, "ticket: key too long");
	argv[0] = "GETDEL";
	argvlen[0] = 6;
	argv[1] = key;
	argvlen[1] = (size_t)kn;
	r = redisCommandArgv(rc, 2, argv, argvlen);
	if (r == NULL)
		return herr_set(HERR_REDIS, err, errlen, "GETDEL ticket: %s",
				rc->errstr[0] != '\0' ? rc->errstr : "no reply");
	res = ticket_redeem_reply(r, now, leeway, id);
	if (res == HERR_REDIS)
		herr_set(HERR_REDIS, err, errlen, "GETDEL ticket: %s",
			 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	freeReplyObject(r);
	return res;
}
