#include "config.h"

#include "publish.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "auth.h"
#include "err.h"
#include "jsonv.h"
#include "redis.h"

#define USER_RULE "user: must match [A-Za-z0-9_.-]{1,64}"
#define IDEM_RULE "idempotency key: must match [A-Za-z0-9_.:-]{1,128}"

/* The script's error for a key whose record was made for another payload. */
#define REUSED_REPLY "ERR herald: idempotency key already used"

/* P:U:history:idem:KEY:N at most: a history key, the key, ":" and 20 digits. */
#define IDEM_NAME_MAX (REDIS_KEY_MAX + sizeof ":idem:" + PUBLISH_IDEM_KEY_MAX + 22)

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

int publish_idem_check(const char *key, size_t len, char *err, size_t errlen)
{
	if (key == NULL || len == 0 || len > PUBLISH_IDEM_KEY_MAX)
		return herr_set(HERR_INVAL, err, errlen, IDEM_RULE);
	for (size_t i = 0; i < len; i++) {
		char ch = key[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '-'))
			return herr_set(HERR_INVAL, err, errlen, IDEM_RULE);
	}
	return 0;
}

int publish_idem_new(char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[16];
	size_t got = 0;

	if (len < 2 * sizeof rnd + 1)
		return HERR_INVAL;
	while (got < sizeof rnd) {
		ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return HERR_IO;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof rnd; i++) {
		buf[2 * i] = hex[rnd[i] >> 4];
		buf[2 * i + 1] = hex[rnd[i] & 15];
	}
	buf[2 * sizeof rnd] = '\0';
	return 0;
}

int publish_parse_reply(const redisReply *r, struct cursor *id, int *dup, char *err, size_t errlen)
{
	if (dup != NULL)
		*dup = 0;
	if (r == NULL)
		return herr_set(HERR_REDIS, err, errlen, "redis: no reply");
	if (r->type == REDIS_REPLY_ERROR) {
		if (r->str != NULL && strncmp(r->str, REUSED_REPLY, strlen(REUSED_REPLY)) == 0)
			return herr_set(HERR_INVAL, err, errlen,
				    "idempotency key: already used for another payload");
		return herr_set(HERR_REDIS, err, errlen, "redis: %s",
			    r->str != NULL ? r->str : "error");
	}
	if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str != NULL &&
	    cursor_parse(r->str, r->len, id) == 0) {
		/* The script answers a replay as a status reply, a new entry as a bulk. */
		if (dup != NULL)
			*dup = r->type == REDIS_REPLY_STATUS;
		return 0;
	}
	return herr_set(HERR_INVAL, err, errlen, "redis: the publish script answered no id");
}

/* Which idempotency record each payload of a call gets. */
struct idem {
	const char *key; /* NULL: none */
	size_t first;	 /* the N of payload 0's KEY:N */
	int whole;	 /* one publish named by KEY itself, without ":N"; its
			  * errors do not name an index */
};

/* KEYS[2] of payload i: P:U:history:idem:KEY[:N]. */
static size_t idem_name(char *buf, size_t len, const char *hkey, const struct idem *im, size_t i)
{
	int n = im->whole ? snprintf(buf, len, "%s:idem:%s", hkey, im->key)
			  : snprintf(buf, len, "%s:idem:%s:%zu", hkey, im->key, im->first + i);

	/* Cannot truncate: IDEM_NAME_MAX holds the longest history key, the
	 * longest key and 20 digits. */
	return n < 0 ? 0 : (size_t)n;
}

/*
 * Pipelining keeps order: one connection, replies in command order.  A
 * NOSCRIPT (Redis restarted, or SCRIPT FLUSH) fails every command from one
 * point on, so the script is loaded and those commands are sent again, in
 * order, once.
 */
static int publish_run(redisContext *rc, const struct conf *c, const char *user,
		       const char *const *payloads, const size_t *lens, size_t n,
		       const struct idem *im, struct cursor *ids, int *dups, char *err,
		       size_t errlen)
{
	const char *prefix = c->channel_prefix != NULL ? c->channel_prefix : "notifications";
	char key[REDIS_KEY_MAX], ikey[IDEM_NAME_MAX], maxlen[24], ttl[24], window[24], why[256];
	const char *kv[6], *argv[9];
	size_t kvlen[6], argvlen[9];
	size_t *todo, m;
	int rv = 0, argc, nkv = 0, nkeys = im->key != NULL ? 2 : 1;
	int wait = c->publish_wait_replicas > 0;
	long long acked = 0;

	if (user == NULL || !auth_user_valid(user, strlen(user)))
		return herr_set(HERR_INVAL, err, errlen, USER_RULE);
	if (im->key != NULL && publish_idem_check(im->key, strlen(im->key), err, errlen) != 0)
		return HERR_INVAL;
	for (size_t i = 0; i < n; i++) {
		rv = check_payload(payloads[i], lens[i], why, sizeof why);
		if (rv != 0 && im->whole)
			return herr_set(rv, err, errlen, "payload: %s", why);
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
	snprintf(window, sizeof window, "%ld", c->idempotency_window);
	/* KEYS[1], [KEYS[2]], ARGV[1..3], [ARGV[4]]; "" is filled per payload. */
	kv[nkv++] = key;
	if (im->key != NULL)
		kv[nkv++] = "";
	kv[nkv++] = "";
	kv[nkv++] = maxlen;
	kv[nkv++] = ttl;
	if (im->key != NULL)
		kv[nkv++] = window;
	for (int k = 0; k < nkv; k++)
		kvlen[k] = strlen(kv[k]);
	argc =
	    redis_evalsha_argv(&redis_script_publish, nkeys, nkv - nkeys, kv, kvlen, argv, argvlen);
	if (argc < 0)
		return herr_set(HERR_NOMEM, err, errlen, "SHA1 of the publish script failed");
	todo = malloc(n * sizeof *todo);
	if (todo == NULL)
		return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		todo[i] = i;
		ids[i].ms = 0;
		ids[i].seq = 0;
		if (dups != NULL)
			dups[i] = 0;
	}
	m = n;
	for (int attempt = 0; m > 0; attempt++) {
		size_t again = 0;

		for (size_t k = 0; k < m; k++) {
			/* hiredis copies the arguments: ikey is free again at once. */
			if (im->key != NULL) {
				argv[4] = ikey;
				argvlen[4] = idem_name(ikey, sizeof ikey, key, im, todo[k]);
			}
			argv[3 + nkeys] = payloads[todo[k]];
			argvlen[3 + nkeys] = lens[todo[k]];
			if (redisAppendCommandArgv(rc, argc, argv, argvlen) != REDIS_OK) {
				rv = herr_set(HERR_NOMEM, err, errlen, "redis: %s", rc->errstr);
				goto out;
			}
		}
		/* WAIT covers every write of this connection before it. */
		if (wait && redisAppendCommand(rc, "WAIT %ld %ld", c->publish_wait_replicas,
					       c->publish_wait_timeout) != REDIS_OK) {
			rv = herr_set(HERR_NOMEM, err, errlen, "redis: %s", rc->errstr);
			goto out;
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
				prv = publish_parse_reply(r, &ids[todo[k]],
							  dups != NULL ? &dups[todo[k]] : NULL, why,
							  sizeof why);
				if (prv != 0 && rv == 0 && im->whole)
					rv = herr_set(prv, err, errlen, "%s", why);
				else if (prv != 0 && rv == 0)
					rv = herr_set(prv, err, errlen, "payloads[%zu]: %s", todo[k],
						  why);
			}
			freeReplyObject(r);
		}
		if (wait) {
			redisReply *r = NULL;

			/* Read even after an error reply: the connection stays in step. */
			if (redisGetReply(rc, (void **)&r) != REDIS_OK) {
				rv = herr_set(HERR_REDIS, err, errlen, "redis: %s",
					      rc->errstr[0] != '\0' ? rc->errstr : "no reply");
				goto out;
			}
			acked = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
			if (r->type == REDIS_REPLY_ERROR)
				snprintf(why, sizeof why, "%s", r->str);
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
	if (wait && acked < c->publish_wait_replicas) {
		if (acked < 0)
			rv = herr_set(HERR_AGAIN, err, errlen,
				      "not acknowledged: WAIT failed: %s; the master stored the "
				      "notification, a retry with the same idempotency key stores "
				      "nothing new",
				      why);
		else
			rv = herr_set(HERR_AGAIN, err, errlen,
				      "not acknowledged: %lld of %ld replicas had it after %ld ms "
				      "(WAIT); the master stored the notification, a retry with the "
				      "same idempotency key stores nothing new",
				      acked, c->publish_wait_replicas, c->publish_wait_timeout);
	}
out:
	free(todo);
	return rv;
}

int publish_one(redisContext *rc, const struct conf *c, const char *user, const char *payload,
		size_t len, struct cursor *id, char *err, size_t errlen)
{
	return publish_batch(rc, c, user, &payload, &len, 1, id, err, errlen);
}

int publish_batch(redisContext *rc, const struct conf *c, const char *user,
		  const char *const *payloads, const size_t *lens, size_t n, struct cursor *ids,
		  char *err, size_t errlen)
{
	const struct idem im = {NULL, 0, 0};

	return publish_run(rc, c, user, payloads, lens, n, &im, ids, NULL, err, errlen);
}

int publish_one_idem(redisContext *rc, const struct conf *c, const char *user, const char *payload,
		     size_t len, const char *key, struct cursor *id, int *dup, char *err,
		     size_t errlen)
{
	const struct idem im = {key, 0, 1};

	return publish_run(rc, c, user, &payload, &len, 1, &im, id, dup, err, errlen);
}

int publish_batch_idem(redisContext *rc, const struct conf *c, const char *user,
		       const char *const *payloads, const size_t *lens, size_t n, const char *key,
		       size_t first, struct cursor *ids, int *dups, char *err, size_t errlen)
{
	const struct idem im = {key, first, 0};

	return publish_run(rc, c, user, payloads, lens, n, &im, ids, dups, err, errlen);
}
