/*
 * publish, history and the two scripts against a real redis-server (started
 * by the fixture on a free port).  Each test uses its own user id, so the
 * tests share one server.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <check.h>

#include "fixture.h"

#include "conf.h"
#include "cursor.h"
#include "envelope.h"
#include "err.h"
#include "history.h"
#include "publish.h"
#include "redis.h"

static struct redis_fixture fx;

static redisContext *connect_url(const char *url)
{
	struct redis_addr a;
	redisContext *rc = NULL;
	char err[256];

	ck_assert_int_eq(redis_url_parse(url, &a, err, sizeof err), 0);
	ck_assert_msg(redis_connect(&a, 5000, &rc, err, sizeof err) == 0, "%s", err);
	return rc;
}

static redisContext *conn(void)
{
	return connect_url(fx.url);
}

static void conf_defaults(struct conf *c)
{
	ck_assert_int_eq(conf_init(c), 0);
}

static redisReply *cmd(redisContext *rc, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(rc, fmt, arg);

	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r->str);
	return r;
}

static long long cmd_int(redisContext *rc, const char *fmt, const char *arg)
{
	redisReply *r = cmd(rc, fmt, arg);
	long long v;

	ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

static void key_of(char *key, const char *user)
{
	ck_assert_int_gt(redis_history_key(key, REDIS_KEY_MAX, "notifications", user), 0);
}

/* Publish n payloads {"i":0}, {"i":1}, ... in one pipeline. */
static void publish_n(redisContext *rc, const struct conf *c, const char *user, size_t n,
		      struct cursor *ids)
{
	char **p = calloc(n, sizeof *p);
	size_t *len = calloc(n, sizeof *len);
	char err[256];

	ck_assert(p != NULL && len != NULL);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_ne(asprintf(&p[i], "{\"i\":%zu}", i), -1);
		len[i] = strlen(p[i]);
	}
	ck_assert_msg(
	    publish_batch(rc, c, user, (const char *const *)p, len, n, ids, err, sizeof err) == 0,
	    "%s", err);
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
	free(len);
}

/* The stream holds exactly these ids, in this order, each envelope naming
 * its stream id and carrying {"i":first+k}. */
static void check_stream(redisContext *rc, const char *user, const struct cursor *ids, size_t n,
			 size_t first)
{
	char key[REDIS_KEY_MAX], want[CURSOR_STR_MAX], data[64];
	redisReply *r;

	key_of(key, user);
	r = cmd(rc, "XRANGE %s - +", key);
	ck_assert_uint_eq(r->elements, n);
	for (size_t k = 0; k < n; k++) {
		redisReply *e = r->element[k];
		struct cursor envid;
		const char *env;

		cursor_format(&ids[k], want, sizeof want);
		ck_assert_str_eq(e->element[0]->str, want);
		ck_assert_uint_eq(e->element[1]->elements, 2);
		ck_assert_str_eq(e->element[1]->element[0]->str, "e");
		env = e->element[1]->element[1]->str;
		ck_assert_int_eq(envelope_id(env, strlen(env), &envid), 0);
		ck_assert_int_eq(cursor_cmp(&envid, &ids[k]), 0);
		snprintf(data, sizeof data, "\"data\":{\"i\":%zu}}", first + k);
		ck_assert_msg(strstr(env, data) != NULL, "%s lacks %s", env, data);
	}
	freeReplyObject(r);
}

START_TEST(publish_envelope)
{
	redisContext *rc = conn();
	struct cursor id;
	struct conf c;
	char err[256], key[REDIS_KEY_MAX], ids[CURSOR_STR_MAX], want[256];
	const char *payload = "{\"title\":\"Meeting moved\",\"at\":[10,30],\"x\":null}";
	redisReply *r;

	conf_defaults(&c);
	ck_assert_msg(publish_one(rc, &c, "env", payload, strlen(payload), &id, err, sizeof err) ==
			  0,
		      "%s", err);
	cursor_format(&id, ids, sizeof ids);
	snprintf(want, sizeof want,
		 "{\"id\":\"%s\",\"channel\":\"notifications:env\",\"ts\":%llu,\"data\":%s}", ids,
		 (unsigned long long)id.ms, payload);
	key_of(key, "env");
	r = cmd(rc, "XRANGE %s - +", key);
	ck_assert_uint_eq(r->elements, 1);
	ck_assert_str_eq(r->element[0]->element[0]->str, ids);
	ck_assert_str_eq(r->element[0]->element[1]->element[0]->str, "e");
	ck_assert_str_eq(r->element[0]->element[1]->element[1]->str, want);
	freeReplyObject(r);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

/* 1000 pipelined publishes land within a few ms: many share one ms and the
 * script must number them as Redis would. */
START_TEST(ids_in_order)
{
	enum { N = 1000 };
	redisContext *rc = conn();
	struct cursor *ids = calloc(N, sizeof *ids);
	struct conf c;
	int same_ms = 0;

	ck_assert_ptr_nonnull(ids);
	conf_defaults(&c);
	c.history_max = 5000;
	publish_n(rc, &c, "order", N, ids);
	for (size_t i = 1; i < N; i++) {
		ck_assert_int_lt(cursor_cmp(&ids[i - 1], &ids[i]), 0);
		same_ms += ids[i].seq > 0;
	}
	ck_assert_msg(same_ms > 0, "no two publishes in one millisecond: test proves nothing");
	check_stream(rc, "order", ids, N, 0);
	conf_free(&c);
	free(ids);
	redisFree(rc);
}
END_TEST

/* Entries deleted from the end: last-generated-id is above the last entry, the
 * first XADD fails and the script follows last-generated-id. */
START_TEST(id_after_deleted_tail)
{
	redisContext *rc = conn();
	struct cursor id[2];
	struct conf c;
	char key[REDIS_KEY_MAX], err[256], want[CURSOR_STR_MAX];
	redisReply *r;

	conf_defaults(&c);
	key_of(key, "tail");
	r = cmd(rc, "XADD %s 99999999999999-5 e x", key);
	freeReplyObject(r);
	ck_assert_int_eq(cmd_int(rc, "XDEL %s 99999999999999-5", key), 1);
	ck_assert_msg(publish_one(rc, &c, "tail", "1", 1, &id[0], err, sizeof err) == 0, "%s", err);
	cursor_format(&id[0], want, sizeof want);
	ck_assert_str_eq(want, "99999999999999-6");
	ck_assert_msg(publish_one(rc, &c, "tail", "2", 1, &id[1], err, sizeof err) == 0, "%s", err);
	cursor_format(&id[1], want, sizeof want);
	ck_assert_str_eq(want, "99999999999999-7");
	r = cmd(rc, "XRANGE %s - +", key);
	ck_assert_uint_eq(r->elements, 2);
	ck_assert_str_eq(r->element[0]->element[0]->str, "99999999999999-6");
	ck_assert_ptr_nonnull(
	    strstr(r->element[0]->element[1]->element[1]->str, "{\"id\":\"99999999999999-6\""));
	freeReplyObject(r);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

START_TEST(live_same_bytes)
{
	redisContext *rc = conn(), *sub = conn();
	struct cursor id;
	struct conf c;
	char err[256], key[REDIS_KEY_MAX];
	redisReply *r, *x;

	conf_defaults(&c);
	r = cmd(sub, "SUBSCRIBE %s", "notifications:live");
	freeReplyObject(r);
	ck_assert_msg(
	    publish_one(rc, &c, "live", "{\"a\":\"\\u00e9\"}", 14, &id, err, sizeof err) == 0, "%s",
	    err);
	ck_assert_int_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
	ck_assert_uint_eq(r->elements, 3);
	ck_assert_str_eq(r->element[0]->str, "message");
	ck_assert_str_eq(r->element[1]->str, "notifications:live");
	key_of(key, "live");
	x = cmd(rc, "XRANGE %s - +", key);
	ck_assert_uint_eq(r->element[2]->len, x->element[0]->element[1]->element[1]->len);
	ck_assert_str_eq(r->element[2]->str, x->element[0]->element[1]->element[1]->str);
	freeReplyObject(x);
	freeReplyObject(r);
	conf_free(&c);
	redisFree(sub);
	redisFree(rc);
}
END_TEST

START_TEST(ttl_and_trim)
{
	redisContext *rc = conn();
	struct cursor *ids = calloc(1000, sizeof *ids);
	struct conf c;
	char key[REDIS_KEY_MAX];
	long long ttl, len;

	ck_assert_ptr_nonnull(ids);
	conf_defaults(&c);
	c.history_ttl = 3600;
	c.history_max = 100;
	publish_n(rc, &c, "trim", 1000, ids);
	key_of(key, "trim");
	ttl = cmd_int(rc, "TTL %s", key);
	ck_assert_msg(ttl > 3590 && ttl <= 3600, "TTL %lld", ttl);
	len = cmd_int(rc, "XLEN %s", key);
	/* MAXLEN ~ trims whole nodes (100 entries by default) */
	ck_assert_msg(len >= 100 && len <= 200, "XLEN %lld", len);
	conf_free(&c);
	free(ids);
	redisFree(rc);
}
END_TEST

static void read_ok(redisContext *rc, const struct conf *c, const char *user,
		    const struct cursor *since, unsigned limit, struct history_result *hr)
{
	char err[256];

	ck_assert_msg(history_read(rc, c, user, since, limit, 0, hr, err, sizeof err) == 0, "%s", err);
}

START_TEST(history_since_and_newest)
{
	redisContext *rc = conn();
	struct cursor ids[10];
	struct history_result hr;
	struct conf c;

	conf_defaults(&c);
	publish_n(rc, &c, "hist", 10, ids);

	read_ok(rc, &c, "hist", &ids[3], 4, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 4);
	for (size_t k = 0; k < 4; k++) {
		ck_assert_int_eq(cursor_cmp(&hr.entries[k].id, &ids[4 + k]), 0);
		ck_assert_uint_eq(hr.entries[k].len, strlen(hr.entries[k].env));
	}
	ck_assert_int_eq(cursor_cmp(&hr.last, &ids[9]), 0);
	ck_assert_ptr_nonnull(hr.reply);
	history_result_free(&hr);

	read_ok(rc, &c, "hist", &ids[9], 100, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 0);
	ck_assert_int_eq(cursor_cmp(&hr.last, &ids[9]), 0);
	history_result_free(&hr);

	read_ok(rc, &c, "hist", NULL, 3, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 3);
	for (size_t k = 0; k < 3; k++)
		ck_assert_int_eq(cursor_cmp(&hr.entries[k].id, &ids[7 + k]), 0);
	ck_assert_int_eq(cursor_cmp(&hr.last, &ids[9]), 0);
	history_result_free(&hr);

	read_ok(rc, &c, "hist", NULL, 1000, &hr);
	ck_assert_uint_eq(hr.n, 10);
	ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[0]), 0);
	history_result_free(&hr);

	/* a cursor before everything, nothing removed: not truncated */
	read_ok(rc, &c, "hist", &(struct cursor){0, 0}, 5, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 5);
	ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[0]), 0);
	history_result_free(&hr);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

/*
 * Redis 7.0 does not move max-deleted-entry-id when MAXLEN trims, so the
 * script also compares the cursor with the first entry; this proves the
 * result either way.
 */
START_TEST(history_truncated)
{
	enum { N = 3000 };
	redisContext *rc = conn();
	struct cursor *ids = calloc(N, sizeof *ids);
	struct history_result hr;
	struct conf c;
	char key[REDIS_KEY_MAX], first[CURSOR_STR_MAX];
	struct cursor f;
	size_t kept;
	redisReply *r;

	ck_assert_ptr_nonnull(ids);
	conf_defaults(&c);
	c.history_max = 1000;
	for (size_t b = 0; b < N; b += 1000)
		publish_n(rc, &c, "trunc", 1000, ids + b);
	key_of(key, "trunc");
	r = cmd(rc, "XRANGE %s - + COUNT 1", key);
	snprintf(first, sizeof first, "%s", r->element[0]->element[0]->str);
	freeReplyObject(r);
	ck_assert_int_eq(cursor_parse(first, strlen(first), &f), 0);
	for (kept = 0; kept < N && cursor_cmp(&ids[kept], &f) != 0; kept++)
		;
	ck_assert_msg(kept > 0 && kept < N, "nothing trimmed");

	read_ok(rc, &c, "trunc", &ids[10], 10, &hr);
	ck_assert_int_eq(hr.truncated, 1);
	ck_assert_uint_eq(hr.n, 10);
	ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[kept]), 0);
	history_result_free(&hr);

	read_ok(rc, &c, "trunc", &ids[kept], 10, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[kept + 1]), 0);
	history_result_free(&hr);

	read_ok(rc, &c, "trunc", &ids[N - 500], 1000, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 499);
	ck_assert_int_eq(cursor_cmp(&hr.last, &ids[N - 1]), 0);
	history_result_free(&hr);

	/* XDEL in the middle: a cursor before the deleted entry is truncated */
	{
		char mid[CURSOR_STR_MAX];

		cursor_format(&ids[N - 100], mid, sizeof mid);
		r = redisCommand(rc, "XDEL %s %s", key, mid);
		ck_assert_int_eq(r->integer, 1);
		freeReplyObject(r);
	}
	read_ok(rc, &c, "trunc", &ids[N - 200], 10, &hr);
	ck_assert_int_eq(hr.truncated, 1);
	history_result_free(&hr);
	read_ok(rc, &c, "trunc", &ids[N - 100], 10, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[N - 99]), 0);
	history_result_free(&hr);

	conf_free(&c);
	free(ids);
	redisFree(rc);
}
END_TEST

START_TEST(history_missing_stream)
{
	redisContext *rc = conn();
	struct history_result hr;
	struct conf c;

	conf_defaults(&c);
	read_ok(rc, &c, "nobody", &(struct cursor){1732550000000ULL, 0}, 10, &hr);
	ck_assert_int_eq(hr.truncated, 1);
	ck_assert_uint_eq(hr.n, 0);
	ck_assert_uint_eq(hr.last.ms, 0);
	history_result_free(&hr);
	read_ok(rc, &c, "nobody", NULL, 10, &hr);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_uint_eq(hr.n, 0);
	history_result_free(&hr);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

START_TEST(history_bad_input)
{
	redisContext *rc = conn();
	struct history_result hr;
	struct history_argv h;
	struct cursor cur;
	struct conf c;
	char err[256], key[REDIS_KEY_MAX];
	const char *kv[3];
	redisReply *r;

	conf_defaults(&c);
	ck_assert_int_eq(cursor_parse("12-x", 4, &cur), HERR_INVAL);
	ck_assert_int_eq(cursor_parse("-1", 2, &cur), HERR_INVAL);
	ck_assert_int_eq(history_argv(&h, &c, "bad user", NULL, 10, 0), HERR_INVAL);
	ck_assert_int_eq(history_argv(&h, &c, "u", NULL, 0, 0), HERR_INVAL);
	ck_assert_int_eq(history_read(rc, &c, "u", NULL, 5000, 0, &hr, err, sizeof err), HERR_INVAL);

	/* The script refuses what other callers may send. */
	key_of(key, "bad");
	kv[0] = key;
	kv[1] = "abc";
	kv[2] = "10";
	r = redis_eval_sync(rc, &redis_script_history, 1, 2, kv, NULL, err, sizeof err);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(history_parse_reply(r, &hr, err, sizeof err), HERR_REDIS);
	ck_assert_str_eq(err, "redis: ERR herald: since must be MS-SEQ");
	freeReplyObject(r);
	kv[1] = "";
	kv[2] = "0";
	r = redis_eval_sync(rc, &redis_script_history, 1, 2, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	/* the largest id: nothing after it, and no Redis error */
	kv[1] = "18446744073709551615-18446744073709551615";
	kv[2] = "10";
	cmd_int(rc, "DEL %s", key);
	r = cmd(rc, "XADD %s 5-0 e x", key);
	freeReplyObject(r);
	r = redis_eval_sync(rc, &redis_script_history, 1, 2, kv, NULL, err, sizeof err);
	ck_assert_int_eq(history_parse_reply(r, &hr, err, sizeof err), 0);
	ck_assert_uint_eq(hr.n, 0);
	history_result_free(&hr);
	freeReplyObject(r);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

/* What a caller in another language sees from the publish script itself. */
START_TEST(script_checks)
{
	redisContext *rc = conn();
	char err[256], key[REDIS_KEY_MAX];
	const char *kv[4];
	redisReply *r;

	key_of(key, "lua");
	kv[0] = key;
	kv[1] = "{not json";
	r = redis_eval_sync(rc, &redis_script_publish, 1, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	ck_assert_str_eq(r->str, "ERR herald: payload is not JSON");
	freeReplyObject(r);
	kv[1] = "";
	r = redis_eval_sync(rc, &redis_script_publish, 1, 1, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: payload is empty");
	freeReplyObject(r);
	kv[0] = "notifications:lua";
	kv[1] = "{}";
	r = redis_eval_sync(rc, &redis_script_publish, 1, 1, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: key must end in \":history\"");
	freeReplyObject(r);
	kv[0] = key;
	kv[2] = "0";
	r = redis_eval_sync(rc, &redis_script_publish, 1, 2, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: maxlen must be a positive integer");
	freeReplyObject(r);
	ck_assert_int_eq(cmd_int(rc, "EXISTS %s", key), 0);
	/* defaults for maxlen and ttl */
	r = redis_eval_sync(rc, &redis_script_publish, 1, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	freeReplyObject(r);
	ck_assert_int_gt(cmd_int(rc, "TTL %s", key), 604790);
	redisFree(rc);
}
END_TEST

START_TEST(noscript_reload)
{
	redisContext *rc = conn();
	struct cursor ids[20];
	struct history_result hr;
	struct conf c;
	char err[256];
	redisReply *r;

	conf_defaults(&c);
	r = cmd(rc, "SCRIPT FLUSH", NULL);
	freeReplyObject(r);
	ck_assert_msg(publish_one(rc, &c, "flush", "1", 1, &ids[0], err, sizeof err) == 0, "%s",
		      err);
	r = cmd(rc, "SCRIPT FLUSH", NULL);
	freeReplyObject(r);
	read_ok(rc, &c, "flush", NULL, 10, &hr);
	ck_assert_uint_eq(hr.n, 1);
	history_result_free(&hr);
	r = cmd(rc, "SCRIPT FLUSH", NULL);
	freeReplyObject(r);
	cmd_int(rc, "DEL %s", "notifications:flush:history");
	publish_n(rc, &c, "flush", 20, ids);
	check_stream(rc, "flush", ids, 20, 0);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

START_TEST(redis_down)
{
	struct redis_fixture down;
	struct redis_addr a;
	redisContext *rc, *rc2 = NULL;
	struct cursor id;
	struct conf c;
	char err[256], want[64];

	conf_defaults(&c);
	ck_assert_int_eq(fixture_redis_start(&down), 0);
	rc = connect_url(down.url);
	fixture_redis_kill(&down);
	err[0] = '\0';
	ck_assert_int_eq(publish_one(rc, &c, "down", "{}", 2, &id, err, sizeof err), HERR_REDIS);
	ck_assert_msg(strncmp(err, "redis: ", 7) == 0 && strlen(err) > 8, "\"%s\"", err);
	ck_assert_int_eq(publish_one(rc, &c, "down", "{}", 2, &id, err, sizeof err), HERR_REDIS);
	redisFree(rc);
	rc = connect_url(fx.url);
	redisFree(rc);

	ck_assert_int_eq(redis_url_parse(down.url, &a, err, sizeof err), 0);
	ck_assert_int_eq(redis_connect(&a, 1000, &rc2, err, sizeof err), HERR_REDIS);
	ck_assert_ptr_null(rc2);
	snprintf(want, sizeof want, "connect(127.0.0.1:%d) failed: ", down.port);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "\"%s\"", err);
	fixture_redis_destroy(&down);
	conf_free(&c);
}
END_TEST

START_TEST(history_read_down)
{
	struct redis_fixture down;
	struct history_result hr;
	redisContext *rc;
	struct conf c;
	char err[256];

	conf_defaults(&c);
	ck_assert_int_eq(fixture_redis_start(&down), 0);
	rc = connect_url(down.url);
	fixture_redis_kill(&down);
	ck_assert_int_eq(history_read(rc, &c, "down", NULL, 10, 0, &hr, err, sizeof err), HERR_REDIS);
	ck_assert_ptr_null(hr.entries);
	history_result_free(&hr);
	redisFree(rc);
	fixture_redis_destroy(&down);
	conf_free(&c);
}
END_TEST

/* A command sent ahead of the read, in the same round trip (a poll's
 * revocation check): its reply comes back, in order, also when the read
 * meets NOSCRIPT and sends itself again, and on a broken link neither does. */
START_TEST(history_read_after_pipelined)
{
	redisContext *rc = conn();
	struct redis_fixture down;
	struct cursor ids[3];
	struct history_result hr;
	struct conf c;
	char err[256];
	const char *argv[] = {"MGET", "after:a", "after:b"};
	const struct redis_cmd before = {3, argv, NULL};
	redisReply *first, *r;

	conf_defaults(&c);
	publish_n(rc, &c, "after", 3, ids);
	r = cmd(rc, "SET after:b 42", NULL);
	freeReplyObject(r);
	for (int flush = 0; flush < 2; flush++) {
		if (flush) {
			r = cmd(rc, "SCRIPT FLUSH", NULL);
			freeReplyObject(r);
		}
		ck_assert_msg(history_read_after(rc, &before, &first, &c, "after", &ids[0], 10, 0,
						 &hr, err, sizeof err) == 0,
			      "%s", err);
		ck_assert_ptr_nonnull(first);
		ck_assert_int_eq(first->type, REDIS_REPLY_ARRAY);
		ck_assert_uint_eq(first->elements, 2);
		ck_assert_int_eq(first->element[0]->type, REDIS_REPLY_NIL);
		ck_assert_str_eq(first->element[1]->str, "42");
		freeReplyObject(first);
		ck_assert_uint_eq(hr.n, 2);
		ck_assert_int_eq(cursor_cmp(&hr.entries[0].id, &ids[1]), 0);
		ck_assert_int_eq(cursor_cmp(&hr.entries[1].id, &ids[2]), 0);
		history_result_free(&hr);
	}
	/* the link is still in step: a plain command gets its own reply */
	ck_assert_int_eq(cmd_int(rc, "DEL %s", "after:b"), 1);

	ck_assert_int_eq(fixture_redis_start(&down), 0);
	redisFree(rc);
	rc = connect_url(down.url);
	fixture_redis_kill(&down);
	ck_assert_int_eq(history_read_after(rc, &before, &first, &c, "after", NULL, 10, 0, &hr, err,
					    sizeof err),
			 HERR_REDIS);
	ck_assert_ptr_null(first);
	ck_assert_int_ne(rc->err, 0);
	history_result_free(&hr);
	redisFree(rc);
	fixture_redis_destroy(&down);
	conf_free(&c);
}
END_TEST

START_TEST(batch_one_invalid)
{
	redisContext *rc = conn();
	const char *p[] = {"{\"ok\":1}", "{\"ok\":2}", "{\"bad\":tru}", "{\"ok\":3}"};
	size_t len[4];
	struct cursor ids[4];
	struct conf c;
	char err[256];

	conf_defaults(&c);
	for (size_t i = 0; i < 4; i++)
		len[i] = strlen(p[i]);
	ck_assert_int_eq(publish_batch(rc, &c, "batch", p, len, 4, ids, err, sizeof err),
			 HERR_INVAL);
	ck_assert_msg(strncmp(err, "payloads[2]: ", 13) == 0, "%s", err);
	ck_assert_int_eq(cmd_int(rc, "EXISTS %s", "notifications:batch:history"), 0);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

/* ---- idempotency: a publish is stored once (DESIGN 8) ------------------------- */

static void idem_ok(redisContext *rc, const struct conf *c, const char *user, const char *payload,
		    const char *key, struct cursor *id, int *dup)
{
	char err[256];

	ck_assert_msg(publish_one_idem(rc, c, user, payload, strlen(payload), key, id, dup, err,
				       sizeof err) == 0,
		      "%s", err);
}

static long long xlen(redisContext *rc, const char *user)
{
	char key[REDIS_KEY_MAX];

	key_of(key, user);
	return cmd_int(rc, "XLEN %s", key);
}

START_TEST(idem_same_key)
{
	redisContext *rc = conn(), *sub = conn(), *other = conn();
	struct cursor a, b;
	struct conf c;
	char ids[CURSOR_STR_MAX];
	int dup = -1;
	long long ttl;
	redisReply *r;

	conf_defaults(&c);
	r = cmd(sub, "SUBSCRIBE %s", "notifications:idem1");
	freeReplyObject(r);
	idem_ok(rc, &c, "idem1", "{\"n\":1}", "k-1", &a, &dup);
	ck_assert_int_eq(dup, 0);
	/* the same key again, and on another connection: the first id, nothing stored */
	idem_ok(rc, &c, "idem1", "{\"n\":1}", "k-1", &b, &dup);
	ck_assert_int_eq(dup, 1);
	ck_assert_int_eq(cursor_cmp(&a, &b), 0);
	idem_ok(other, &c, "idem1", "{\"n\":1}", "k-1", &b, &dup);
	ck_assert_int_eq(dup, 1);
	ck_assert_int_eq(cursor_cmp(&a, &b), 0);
	ck_assert_int_eq(xlen(rc, "idem1"), 1);
	/* ... and delivered once: the next message on the channel is the next publish */
	idem_ok(rc, &c, "idem1", "{\"n\":2}", NULL, &b, &dup);
	ck_assert_int_eq(dup, 0);
	ck_assert_int_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
	ck_assert_ptr_nonnull(strstr(r->element[2]->str, "\"data\":{\"n\":1}"));
	freeReplyObject(r);
	ck_assert_int_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
	ck_assert_ptr_nonnull(strstr(r->element[2]->str, "\"data\":{\"n\":2}"));
	freeReplyObject(r);
	/* the record: the id and the payload's SHA1, for the window */
	cursor_format(&a, ids, sizeof ids);
	r = cmd(rc, "GET %s", "notifications:idem1:history:idem:k-1");
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	ck_assert_msg(strncmp(r->str, ids, strlen(ids)) == 0 && r->str[strlen(ids)] == ' ' &&
			  strlen(r->str) == strlen(ids) + 41 &&
			  strspn(r->str + strlen(ids) + 1, "0123456789abcdef") == 40,
		      "record \"%s\"", r->str);
	freeReplyObject(r);
	ttl = cmd_int(rc, "TTL %s", "notifications:idem1:history:idem:k-1");
	ck_assert_msg(ttl > 590 && ttl <= 600, "TTL %lld", ttl);
	conf_free(&c);
	redisFree(other);
	redisFree(sub);
	redisFree(rc);
}
END_TEST

START_TEST(idem_different_keys)
{
	redisContext *rc = conn();
	struct cursor a, b, none[2];
	struct conf c;
	int dup = -1;

	conf_defaults(&c);
	idem_ok(rc, &c, "idem2", "{}", "k-1", &a, &dup);
	idem_ok(rc, &c, "idem2", "{}", "k-2", &b, &dup);
	ck_assert_int_eq(dup, 0);
	ck_assert_int_lt(cursor_cmp(&a, &b), 0);
	/* without a key every publish stores, as before */
	idem_ok(rc, &c, "idem2", "{}", NULL, &none[0], &dup);
	idem_ok(rc, &c, "idem2", "{}", NULL, &none[1], &dup);
	ck_assert_int_eq(dup, 0);
	/* a key names a publish for one user only */
	idem_ok(rc, &c, "idem2b", "{}", "k-1", &b, &dup);
	ck_assert_int_eq(dup, 0);
	ck_assert_int_eq(xlen(rc, "idem2"), 4);
	ck_assert_int_eq(xlen(rc, "idem2b"), 1);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

START_TEST(idem_window_expires)
{
	redisContext *rc = conn();
	struct cursor a, b;
	struct conf c;
	int dup = -1, i;

	conf_defaults(&c);
	c.idempotency_window = 1;
	idem_ok(rc, &c, "idem3", "{}", "once", &a, &dup);
	ck_assert_int_eq(cmd_int(rc, "TTL %s", "notifications:idem3:history:idem:once"), 1);
	idem_ok(rc, &c, "idem3", "{}", "once", &b, &dup);
	ck_assert_int_eq(dup, 1);
	for (i = 0; i < 60 && cmd_int(rc, "EXISTS %s", "notifications:idem3:history:idem:once");
	     i++)
		usleep(50 * 1000);
	ck_assert_msg(i < 60, "the record outlived its 1 s window");
	/* past the window the same key is a new publish */
	idem_ok(rc, &c, "idem3", "{}", "once", &b, &dup);
	ck_assert_int_eq(dup, 0);
	ck_assert_int_lt(cursor_cmp(&a, &b), 0);
	ck_assert_int_eq(xlen(rc, "idem3"), 2);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

START_TEST(idem_refused)
{
	redisContext *rc = conn();
	struct cursor a;
	struct conf c;
	char err[256], key[REDIS_KEY_MAX], first[CURSOR_STR_MAX];
	const char *kv[6];
	redisReply *r;
	int dup = -1;

	conf_defaults(&c);
	/* malformed keys never reach Redis */
	ck_assert_int_eq(
	    publish_one_idem(rc, &c, "idem4", "{}", 2, "a b", &a, NULL, err, sizeof err),
	    HERR_INVAL);
	ck_assert_str_eq(err, "idempotency key: must match [A-Za-z0-9_.:-]{1,128}");
	ck_assert_int_eq(publish_one_idem(rc, &c, "idem4", "{}", 2, "", &a, NULL, err, sizeof err),
			 HERR_INVAL);
	ck_assert_int_eq(cmd_int(rc, "EXISTS %s", "notifications:idem4:history"), 0);
	/* a key used for another payload: refused, nothing stored */
	idem_ok(rc, &c, "idem4", "{\"v\":1}", "k", &a, &dup);
	ck_assert_int_eq(
	    publish_one_idem(rc, &c, "idem4", "{\"v\":2}", 7, "k", &a, &dup, err, sizeof err),
	    HERR_INVAL);
	ck_assert_str_eq(err, "idempotency key: already used for another payload");
	ck_assert_int_eq(xlen(rc, "idem4"), 1);

	/* What a caller in another language sees from the script itself. */
	key_of(key, "idem4");
	kv[0] = key;
	kv[1] = "notifications:other:history:idem:k";
	kv[2] = "{}";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	ck_assert_str_eq(r->str, "ERR herald: KEYS[2] must be KEYS[1] .. \":idem:\" .. KEY, KEY of "
				 "[A-Za-z0-9_.:-]{1,200}");
	freeReplyObject(r);
	kv[1] = "notifications:idem4:history:idem:";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	kv[1] = "notifications:idem4:history:idem:a b";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
	freeReplyObject(r);
	kv[1] = "notifications:idem4:history:idem:w";
	kv[3] = "";
	kv[4] = "";
	kv[5] = "0";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 4, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: window must be a positive integer");
	freeReplyObject(r);
	/* a window without a record is a mistake, not a silent no-op */
	kv[1] = "{}";
	kv[2] = "";
	kv[3] = "";
	kv[4] = "60";
	r = redis_eval_sync(rc, &redis_script_publish, 1, 4, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: a window needs KEYS[2], the idempotency record");
	freeReplyObject(r);
	/* a record that holds something else */
	r = cmd(rc, "SET %s junk", "notifications:idem4:history:idem:junk");
	freeReplyObject(r);
	kv[1] = "notifications:idem4:history:idem:junk";
	kv[2] = "{}";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_str_eq(r->str, "ERR herald: the idempotency record holds no id");
	freeReplyObject(r);
	ck_assert_int_eq(xlen(rc, "idem4"), 1);
	/* two keys, defaults: a bulk id first, the same id as a status reply after */
	kv[1] = "notifications:idem4:history:idem:py";
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
	snprintf(first, sizeof first, "%s", r->str);
	freeReplyObject(r);
	r = redis_eval_sync(rc, &redis_script_publish, 2, 1, kv, NULL, err, sizeof err);
	ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
	ck_assert_str_eq(r->str, first);
	freeReplyObject(r);
	ck_assert_int_gt(cmd_int(rc, "TTL %s", "notifications:idem4:history:idem:py"), 590);
	ck_assert_int_eq(xlen(rc, "idem4"), 2);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

/*
 * Two connections publish the same 300 keyed payloads at once, from both
 * ends (started together, they meet in the middle, so both win some).
 */
struct racer {
	struct cursor ids[300];
	int dups[300];
	int backwards;
	int rv;
	char err[256];
};

static pthread_barrier_t race_start;

static void *race(void *arg)
{
	struct racer *rr = arg;
	const char *p[300];
	size_t len[300];
	redisContext *rc = conn();
	struct conf c;

	conf_defaults(&c);
	for (size_t i = 0; i < 300; i++) {
		p[i] = "{\"race\":true}";
		len[i] = strlen(p[i]);
	}
	/* one key per payload, each sent alone: the two connections interleave */
	rr->rv = 0;
	pthread_barrier_wait(&race_start);
	for (size_t k = 0; k < 300 && rr->rv == 0; k++) {
		size_t i = rr->backwards ? 299 - k : k;

		rr->rv = publish_batch_idem(rc, &c, "idem5", p + i, len + i, 1, "race", i,
					    rr->ids + i, rr->dups + i, rr->err, sizeof rr->err);
	}
	conf_free(&c);
	redisFree(rc);
	return NULL;
}

START_TEST(idem_concurrent)
{
	static struct racer r[2];
	redisContext *rc = conn();
	pthread_t t[2];
	int both = 0;

	ck_assert_int_eq(pthread_barrier_init(&race_start, NULL, 2), 0);
	for (int k = 0; k < 2; k++) {
		r[k].backwards = k;
		ck_assert_int_eq(pthread_create(&t[k], NULL, race, &r[k]), 0);
	}
	for (int k = 0; k < 2; k++) {
		pthread_join(t[k], NULL);
		ck_assert_msg(r[k].rv == 0, "%s", r[k].err);
	}
	pthread_barrier_destroy(&race_start);
	for (size_t i = 0; i < 300; i++) {
		ck_assert_int_eq(cursor_cmp(&r[0].ids[i], &r[1].ids[i]), 0);
		ck_assert_int_eq(r[0].dups[i] + r[1].dups[i], 1);
		both += r[0].dups[i];
	}
	ck_assert_int_eq(xlen(rc, "idem5"), 300);
	/* each side won some: they did run at the same time */
	ck_assert_msg(both > 0 && both < 300, "connection 1 replayed %d of 300", both);
	redisFree(rc);
}
END_TEST

START_TEST(idem_batch)
{
	redisContext *rc = conn();
	const char *p[] = {"{\"i\":0}", "{\"i\":1}", "{\"i\":2}",
			   "{\"i\":3}", "{\"i\":4}", "{\"i\":5}"};
	size_t len[6];
	struct cursor ids[6], again[6];
	int dups[6];
	struct conf c;
	char err[256];

	conf_defaults(&c);
	for (size_t i = 0; i < 6; i++)
		len[i] = strlen(p[i]);
	ck_assert_msg(
	    publish_batch_idem(rc, &c, "idem6", p, len, 4, "B", 0, ids, dups, err, sizeof err) == 0,
	    "%s", err);
	for (size_t i = 0; i < 4; i++)
		ck_assert_int_eq(dups[i], 0);
	check_stream(rc, "idem6", ids, 4, 0);
	/* the whole batch again: nothing stored, the same ids */
	ck_assert_msg(publish_batch_idem(rc, &c, "idem6", p, len, 4, "B", 0, again, dups, err,
					 sizeof err) == 0,
		      "%s", err);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_int_eq(dups[i], 1);
		ck_assert_int_eq(cursor_cmp(&ids[i], &again[i]), 0);
	}
	/* resumed from payload 2 (a pipeline cut short): 2 and 3 replayed, 4 and 5 new */
	ck_assert_msg(publish_batch_idem(rc, &c, "idem6", p + 2, len + 2, 4, "B", 2, ids + 2, dups,
					 err, sizeof err) == 0,
		      "%s", err);
	ck_assert(dups[0] == 1 && dups[1] == 1 && dups[2] == 0 && dups[3] == 0);
	ck_assert_int_eq(cursor_cmp(&ids[2], &again[2]), 0);
	check_stream(rc, "idem6", ids, 6, 0);
	ck_assert_int_eq(cmd_int(rc, "EXISTS %s", "notifications:idem6:history:idem:B:5"), 1);
	ck_assert_int_eq(cmd_int(rc, "EXISTS %s", "notifications:idem6:history:idem:B"), 0);
	/* a batch whose payload 1 differs from the recorded one: that one refused */
	p[1] = "{\"i\":\"changed\"}";
	len[1] = strlen(p[1]);
	ck_assert_int_eq(
	    publish_batch_idem(rc, &c, "idem6", p, len, 3, "B", 0, again, dups, err, sizeof err),
	    HERR_INVAL);
	ck_assert_str_eq(err, "payloads[1]: idempotency key: already used for another payload");
	ck_assert(dups[0] == 1 && dups[2] == 1);
	ck_assert(again[1].ms == 0 && again[1].seq == 0);
	ck_assert_int_eq(xlen(rc, "idem6"), 6);
	conf_free(&c);
	redisFree(rc);
}
END_TEST

static Suite *publish_suite(void)
{
	Suite *s = suite_create("publish");
	TCase *tc = tcase_create("publish");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, publish_envelope);
	tcase_add_test(tc, ids_in_order);
	tcase_add_test(tc, id_after_deleted_tail);
	tcase_add_test(tc, live_same_bytes);
	tcase_add_test(tc, ttl_and_trim);
	tcase_add_test(tc, script_checks);
	tcase_add_test(tc, noscript_reload);
	tcase_add_test(tc, batch_one_invalid);
	tcase_add_test(tc, redis_down);
	suite_add_tcase(s, tc);

	tc = tcase_create("idempotency");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, idem_same_key);
	tcase_add_test(tc, idem_different_keys);
	tcase_add_test(tc, idem_window_expires);
	tcase_add_test(tc, idem_refused);
	tcase_add_test(tc, idem_concurrent);
	tcase_add_test(tc, idem_batch);
	suite_add_tcase(s, tc);

	tc = tcase_create("history");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, history_since_and_newest);
	tcase_add_test(tc, history_truncated);
	tcase_add_test(tc, history_missing_stream);
	tcase_add_test(tc, history_bad_input);
	tcase_add_test(tc, history_read_down);
	tcase_add_test(tc, history_read_after_pipelined);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN); /* as every Herald program does */
	if (fixture_redis_start(&fx) != 0) {
		/* TAP: a plan of zero tests with a reason is a skip. */
		printf("1..0 # SKIP cannot start redis-server (set REDIS_SERVER)\n");
		return EXIT_SUCCESS;
	}
	sr = srunner_create(publish_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	fixture_redis_destroy(&fx);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
