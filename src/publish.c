#include "config.h"

#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "err.h"
#include "jsonv.h"
#include "redis.h"

#define USER_RULE "user: must match [A-Za-z0-9_.-]{1,64}"

/* The payload checks, with a message that does not name the payload. */
static int check_payload(const char *payload, size_t len, char *err, size_t errlen)
{
	struct jsonv_error je = {0, NULL};

	if (payload == NULL || len == 0)
		return herr_set(HERR_INVAL, err, errlen, "empty");
	if (len > PUBLISH_PAYLOAD_MAX)
		return herr_set(HERR_TOOBIG, err, errlen, "%zu bytes, over the limit of %d", len,
			    PUBLISH_PAYLOAD_MAX);
	if (jsonv_validate(payload, len, 0, &je) != 0)
		return herr_set(HERR_INVAL, err, errlen, "%s at byte %zu",
			    je.what != NULL ? je.what : "not JSON", je.offset);
	return 0;
}

int publish_check(const char *user, const char *payload, size_t len, char *err, size_t errlen)
{
	char why[128];
	int rv;

	if (user == NULL || !auth_user_valid(user, strlen(user)))
		return herr_set(HERR_INVAL, err, errlen, USER_RULE);
	rv = check_payload(payload, len, why, sizeof why);
	if (rv != 0)
		return herr_set(rv, err, errlen, "payload: %s", why);
	return 0;
}

int publish_parse_reply(const redisReply *r, struct cursor *id, char *err, size_t errlen)
{
	if (r == NULL)
		return herr_set(HERR_REDIS, err, errlen, "redis: no reply");
	if (r->type == REDIS_REPLY_ERROR)
		return herr_set(HERR_REDIS, err, errlen, "redis: %s",
			    r->str != NULL ? r->str : "error");
	if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str != NULL &&
	    cursor_parse(r->str, r->len, id) == 0)
		return 0;
	return herr_set(HERR_INVAL, err, errlen, "redis: the publish script answered no id");
}

int publish_one(redisContext *rc, const struct conf *c, const char *user, const char *payload,
		size_t len, struct cursor *id, char *err, size_t errlen)
{
	return publish_batch(rc, c, user, &payload, &len, 1, id, err, errlen);
}

/*
 * Pipelining keeps order: one connection, replies in command order.  A
 * NOSCRIPT (Redis restarted, or SCRIPT FLUSH) fails every command from one
 * point on, so the script is loaded and those commands are sent again, in
 * order, once.
 */
int publish_batch(redisContext *rc, const struct conf *c, const char *user,
		  const char *const *payloads, const size_t *lens, size_t n, struct cursor *ids,
		  char *err, size_t errlen)
{
	const char *prefix = c->channel_prefix != NULL ? c->channel_prefix : "notifications";
	char key[REDIS_KEY_MAX], maxlen[24], ttl[24], why[256];
	const char *kv[4], *argv[7];
	size_t kvlen[4], argvlen[7];
	size_t *todo, m;
	int rv = 0, argc;

	if (user == NULL || !auth_user_valid(user, strlen(user)))
		return herr_set(HERR_INVAL, err, errlen, USER_RULE);
	for (size_t i = 0; i < n; i++) {
		rv = check_payload(payloads[i], lens[i], why, sizeof why);
		if (rv != 0)
			return herr_set(rv, err, errlen, "payloads[%zu]: %s", i, why);
	}
	if (redis_history_key(key, sizeof key, prefix, user) < 0)
		return herr_set(HERR_INVAL, err, errlen,
			    "channel_prefix: empty, too long, or holds '\"', '\\' or a control "
			    "character");
	if (n == 0)
		return 0;
	snprintf(maxlen, sizeof maxlen, "%ld", c->history_max);
	snprintf(ttl, sizeof ttl, "%ld", c->history_ttl);
	kv[0] = key;
	kv[1] = "";
	kv[2] = maxlen;
	kv[3] = ttl;
	for (int k = 0; k < 4; k++)
		kvlen[k] = strlen(kv[k]);
	argc = redis_evalsha_argv(&redis_script_publish, 1, 3, kv, kvlen, argv, argvlen);
	if (argc < 0)
		return herr_set(HERR_NOMEM, err, errlen, "SHA1 of the publish script failed");
	todo = malloc(n * sizeof *todo);
	if (todo == NULL)
		return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		todo[i] = i;
		ids[i].ms = 0;
		ids[i].seq = 0;
	}
	m = n;
	for (int attempt = 0; m > 0; attempt++) {
		size_t again = 0;

		for (size_t k = 0; k < m; k++) {
			argv[4] = payloads[todo[k]];
			argvlen[4] = lens[todo[k]];
			if (redisAppendCommandArgv(rc, argc, argv, argvlen) != REDIS_OK) {
				rv = herr_set(HERR_NOMEM, err, errlen, "redis: %s", rc->errstr);
				goto out;
			}
		}
		for (size_t k = 0; k < m; k++) {
			redisReply *r = NULL;
			int prv;

			if (redisGetReply(rc, (void **)&r) != REDIS_OK) {
				rv = herr_set(HERR_REDIS, err, errlen, "redis: %s",
					  rc->errstr[0] != '\0' ? rc->errstr : "no reply");
				goto out;
			}
			/* todo[again] <= todo[k]: compacting in place is safe. */
			if (attempt == 0 && redis_reply_is_noscript(r)) {
				todo[again++] = todo[k];
			} else {
				prv = publish_parse_reply(r, &ids[todo[k]], why, sizeof why);
				if (prv != 0 && rv == 0)
					rv = herr_set(prv, err, errlen, "payloads[%zu]: %s", todo[k],
						  why);
			}
			freeReplyObject(r);
		}
		if (rv != 0)
			goto out;
		m = again;
		if (m > 0) {
			rv = redis_script_load(rc, &redis_script_publish, err, errlen);
			if (rv != 0)
				goto out;
		}
	}
out:
	free(todo);
	return rv;
}
