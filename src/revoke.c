#include "config.h"

#include "revoke.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "text.h"

/* The field of msg from *i to the next space (or the end), advancing past
 * the space.  Empty fields (two spaces, a leading or trailing one) fail. */
static int field(const char *msg, size_t len, size_t *i, const char **f, size_t *flen)
{
	const char *sp;

	if (*i >= len)
		return HERR_INVAL;
	*f = msg + *i;
	sp = memchr(*f, ' ', len - *i);
	*flen = sp != NULL ? (size_t)(sp - *f) : len - *i;
	if (*flen == 0)
		return HERR_INVAL;
	*i += *flen + (sp != NULL ? 1 : 0);
	if (sp != NULL && *i >= len)
		return HERR_INVAL; /* a trailing space */
	return 0;
}

int revoke_parse(const char *msg, size_t len, struct revoke_cmd *out)
{
	const char *verb, *user, *arg = NULL;
	size_t i = 0, vlen, ulen, alen = 0;
	uint64_t t;

	memset(out, 0, sizeof *out);
	if (msg == NULL || len > REVOKE_MSG_MAX || field(msg, len, &i, &verb, &vlen) != 0 ||
	    field(msg, len, &i, &user, &ulen) != 0 || !auth_user_valid(user, ulen))
		return HERR_INVAL;
	if (i < len && field(msg, len, &i, &arg, &alen) != 0)
		return HERR_INVAL;
	if (i < len)
		return HERR_INVAL; /* a fourth field */
	if (vlen == 10 && memcmp(verb, "disconnect", 10) == 0 && arg == NULL) {
		out->kind = REVOKE_DISCONNECT;
	} else if (vlen == 3 && memcmp(verb, "nbf", 3) == 0 && arg != NULL &&
		   text_parse_uint(arg, alen, (uint64_t)AUTH_EXP_MAX, &t) == 0) {
		out->kind = REVOKE_BEFORE;
		out->before = (long long)t;
	} else if (vlen == 3 && memcmp(verb, "jti", 3) == 0 && arg != NULL &&
		   auth_jti_valid(arg, alen)) {
		out->kind = REVOKE_JTI;
		memcpy(out->jti, arg, alen);
		out->jti[alen] = '\0';
	} else {
		return HERR_INVAL;
	}
	memcpy(out->user, user, ulen);
	out->user[ulen] = '\0';
	return 0;
}

int revoke_format(const struct revoke_cmd *cmd, char *buf, size_t len)
{
	int n;

	if (!auth_user_valid(cmd->user, strlen(cmd->user)))
		return HERR_INVAL;
	switch (cmd->kind) {
	case REVOKE_DISCONNECT:
		n = snprintf(buf, len, "disconnect %s", cmd->user);
		break;
	case REVOKE_BEFORE:
		if (cmd->before < 0 || cmd->before > AUTH_EXP_MAX)
			return HERR_INVAL;
		n = snprintf(buf, len, "nbf %s %lld", cmd->user, cmd->before);
		break;
	case REVOKE_JTI:
		if (!auth_jti_valid(cmd->jti, strlen(cmd->jti)))
			return HERR_INVAL;
		n = snprintf(buf, len, "jti %s %s", cmd->user, cmd->jti);
		break;
	default:
		return HERR_INVAL;
	}
	if (n < 0 || (size_t)n >= len)
		return HERR_TOOBIG;
	return n;
}

int revoke_channel(char *buf, size_t len, const char *prefix)
{
	/* "__herald" is a valid user id: its channel is P:__herald, never this. */
	int n = redis_channel(buf, len, prefix, "__herald");

	if (n < 0)
		return n;
	if ((size_t)n + 8 >= len)
		return HERR_TOOBIG;
	memcpy(buf + n, ":control", 9);
	return n + 8;
}

int revoke_nbf_key(char *buf, size_t len, const char *prefix, const char *user)
{
	int n = redis_channel(buf, len, prefix, user);

	if (n < 0)
		return n;
	if ((size_t)n + 4 >= len)
		return HERR_TOOBIG;
	memcpy(buf + n, ":nbf", 5);
	return n + 4;
}

int revoke_jti_key(char *buf, size_t len, const char *prefix, const char *user, const char *jti)
{
	int n = redis_channel(buf, len, prefix, user);
	int m;

	if (n < 0)
		return n;
	if (jti == NULL || !auth_jti_valid(jti, strlen(jti)))
		return HERR_INVAL;
	m = snprintf(buf + n, len - (size_t)n, ":revoked:%s", jti);
	if (m < 0 || (size_t)m >= len - (size_t)n)
		return HERR_TOOBIG;
	return n + m;
}

int revoke_match(const struct revoke_cmd *cmd, long long iat, const char *jti)
{
	switch (cmd->kind) {
	case REVOKE_DISCONNECT:
		return 1;
	case REVOKE_BEFORE:
		return iat < cmd->before;
	case REVOKE_JTI:
		return jti != NULL && jti[0] != '\0' && strcmp(jti, cmd->jti) == 0;
	default:
		return 0;
	}
}

int revoke_check_argv(struct revoke_argv *ra, const char *prefix, const struct auth_identity *id)
{
	int n;

	ra->argv[0] = "MGET";
	ra->argvlen[0] = 4;
	n = revoke_nbf_key(ra->keys[0], sizeof ra->keys[0], prefix, id->user);
	if (n < 0)
		return HERR_INVAL;
	ra->argv[1] = ra->keys[0];
	ra->argvlen[1] = (size_t)n;
	ra->argc = 2;
	if (id->jti[0] != '\0') {
		n = revoke_jti_key(ra->keys[1], sizeof ra->keys[1], prefix, id->user, id->jti);
		if (n < 0)
			return HERR_INVAL;
		ra->argv[2] = ra->keys[1];
		ra->argvlen[2] = (size_t)n;
		ra->argc = 3;
	}
	return ra->argc;
}

int revoke_check_reply(const redisReply *r, const struct auth_identity *id)
{
	uint64_t nbf;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->elements != (id->jti[0] != '\0' ? 2u : 1u))
		return HERR_REDIS;
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type != REDIS_REPLY_NIL && r->element[i]->type != REDIS_REPLY_STRING)
			return HERR_REDIS;
	if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
		return AUTH_REVOKED;
	if (r->element[0]->type == REDIS_REPLY_STRING) {
		/* A value that is no time is ignored rather than lock the user out. */
		if (text_parse_uint(r->element[0]->str, r->element[0]->len, (uint64_t)AUTH_EXP_MAX,
				    &nbf) == 0 &&
		    id->iat < (long long)nbf)
			return AUTH_REVOKED;
	}
	return AUTH_OK;
}

int revoke_check_result(const redisReply *r, const struct revoke_argv *ra,
			const struct auth_identity *id, const char *errstr, char *err, size_t errlen)
{
	int res = revoke_check_reply(r, id);

	if (res == HERR_REDIS)
		herr_set(HERR_REDIS, err, errlen, "MGET %s: %s", ra->keys[0],
			 r != NULL ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
			 : errstr != NULL && errstr[0] != '\0' ? errstr
								 : "no reply");
	return res;
}

int revoke_check_sync(redisContext *rc, const char *prefix, const struct auth_identity *id,
		      char *err, size_t errlen)
{
	struct revoke_argv ra;
	redisReply *r;
	int res;

	if (revoke_check_argv(&ra, prefix, id) < 0)
		return herr_set(HERR_REDIS, err, errlen, "revocation check: bad key names");
	r = redisCommandArgv(rc, ra.argc, ra.argv, ra.argvlen);
	res = revoke_check_result(r, &ra, id, rc->errstr, err, errlen);
	freeReplyObject(r);
	return res;
}
