/*
 * Integration tests of the Redis subscriber (src/sub.c) against a real
 * redis-server started by the fixture, with a real hub and fake transport
 * connections that record what the hub queues for them.  Each test runs its
 * own libevent loop in small non-blocking steps until a condition holds or
 * a deadline passes.
 */
#include "config.h"

#include <check.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <pthread.h>

#include "conf.h"
#include "cursor.h"
#include "err.h"
#include "fixture.h"
#include "history.h"
#include "hub.h"
#include "log.h"
#include "redis.h"
#include "sub.h"

#define WAIT_MS	   10000
#define MAX_MSGS   64
#define MAX_CONNS  8
#define MAX_EVENTS 128

struct fconn {
	struct hub_conn hc; /* first: the hub hands us this pointer back */
	int attached;
	int closed;
	int reason; /* enum hub_close_reason, once closed */
	size_t n;
	char *msg[MAX_MSGS];
	size_t len[MAX_MSGS];
	int kind[MAX_MSGS];
	/* every message with an id, beyond MAX_MSGS too */
	size_t ids;
	size_t out_of_order; /* ids not larger than the one before */
	struct cursor last;
};

struct ctx {
	struct redis_fixture f;
	struct conf conf;
	struct event_base *base;
	struct hub *hub;
	struct sub *sub;
	struct fconn *conns[MAX_CONNS];
	int nconns;
	char events[MAX_EVENTS][256];
	int nevents;
	const char *password; /* for the test's own connections */
};

static void fc_wake(struct hub_conn *c)
{
	(void)c; /* the pump pops every connection after each step */
}

static void fc_close(struct hub_conn *c, int reason)
{
	((struct fconn *)c)->closed = 1;
	((struct fconn *)c)->reason = reason;
}

static const struct hub_conn_ops fc_ops = {fc_wake, fc_close};

static void bare_close(struct hub_conn *c, int reason)
{
	(void)c;
	(void)reason;
}

/* For connections that only hold a subscription. */
static const struct hub_conn_ops bare_ops = {fc_wake, bare_close};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_event(void *ud, int level, const char *msg)
{
	struct ctx *x = ud;

	if (getenv("HERALD_TEST_VERBOSE") != NULL)
		fprintf(stderr, "event %d: %s\n", level, msg);
	if (x->nevents < MAX_EVENTS)
		snprintf(x->events[x->nevents++], sizeof x->events[0], "%s", msg);
}

static int has_event(const struct ctx *x, const char *needle)
{
	for (int i = 0; i < x->nevents; i++)
		if (strstr(x->events[i], needle) != NULL)
			return 1;
	return 0;
}

static int count_events(const struct ctx *x, const char *needle)
{
	int n = 0;

	for (int i = 0; i < x->nevents; i++)
		if (strstr(x->events[i], needle) != NULL)
			n++;
	return n;
}

/* One loop step, then take what the hub queued for every connection. */
static void pump(struct ctx *x)
{
	event_base_loop(x->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	for (int i = 0; i < x->nconns; i++) {
		struct fconn *c = x->conns[i];
		struct hub_msg *m;

		if (!c->attached)
			continue;
		while ((m = hub_pop(x->hub, &c->hc)) != NULL) {
			if (m->has_id) {
				if (c->ids > 0 && cursor_cmp(&m->id, &c->last) <= 0)
					c->out_of_order++;
				c->last = m->id;
				c->ids++;
			}
			if (c->n < MAX_MSGS) {
				c->msg[c->n] = strndup(m->data, m->len);
				c->len[c->n] = m->len;
				c->kind[c->n] = m->kind;
				c->n++;
			}
			hub_msg_unref(m);
		}
	}
	nanosleep(&(struct timespec){0, 1000000}, NULL);
}

#define WAIT_FOR(x, cond, ms)                                                                      \
	({                                                                                         \
		long long deadline_ = now_ms() + (ms);                                             \
		int ok_;                                                                           \
		while (!(ok_ = (cond)) && now_ms() < deadline_)                                    \
			pump(x);                                                                   \
		ok_;                                                                               \
	})

static void run_for(struct ctx *x, long long ms)
{
	long long deadline = now_ms() + ms;

	while (now_ms() < deadline)
		pump(x);
}

static struct sub_status status(struct ctx *x)
{
	struct sub_status st;

	sub_get_status(x->sub, &st);
	return st;
}

static void ctx_start_sub(struct ctx *x, unsigned canary_ms)
{
	char err[200];

	ck_assert_int_eq(sub_new(&x->sub, x->base, &x->conf, x->hub, canary_ms, err, sizeof err),
			 0);
	sub_set_event_cb(x->sub, on_event, x);
}

/* A Redis, a loop, a hub; the subscriber when start_sub. */
static void ctx_init(struct ctx *x, unsigned canary_ms, int start_sub)
{
	struct hub_limits lim = {256 * 1024, 0, 0, 100, 0};
	char err[200];

	memset(x, 0, sizeof *x);
	ck_assert_int_eq(fixture_redis_start(&x->f), 0);
	ck_assert_int_eq(conf_init(&x->conf), 0);
	ck_assert_int_eq(conf_set(&x->conf, "redis_url", x->f.url, "test", err, sizeof err), 0);
	x->base = event_base_new();
	ck_assert_ptr_nonnull(x->base);
	ck_assert_int_eq(hub_new(&x->hub, &lim, NULL), 0);
	if (start_sub)
		ctx_start_sub(x, canary_ms);
}

static void conn_free(struct fconn *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->msg[i]);
	free(c);
}

static void ctx_done(struct ctx *x)
{
	for (int i = 0; i < x->nconns; i++)
		if (x->conns[i]->attached)
			hub_detach(x->hub, &x->conns[i]->hc);
	/* Lets the subscriber answer what the detaches queued. */
	if (x->sub != NULL)
		run_for(x, 20);
	sub_free(x->sub);
	for (int i = 0; i < x->nconns; i++)
		conn_free(x->conns[i]);
	hub_free(x->hub);
	event_base_free(x->base);
	conf_free(&x->conf);
	fixture_redis_destroy(&x->f);
}

static struct fconn *attach(struct ctx *x, const char *user, const char *since)
{
	struct fconn *c = calloc(1, sizeof(*c));
	struct cursor cur;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_lt(x->nconns, MAX_CONNS);
	c->hc.ops = &fc_ops;
	if (since != NULL)
		ck_assert_int_eq(cursor_parse(since, strlen(since), &cur), 0);
	ck_assert_int_eq(hub_attach(x->hub, &c->hc, user, since ? &cur : NULL), 0);
	c->attached = 1;
	x->conns[x->nconns++] = c;
	return c;
}

static void detach(struct ctx *x, struct fconn *c)
{
	hub_detach(x->hub, &c->hc);
	c->attached = 0;
}

static redisContext *sync_conn(const struct ctx *x)
{
	struct timeval tv = {1, 0};
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", x->f.port, tv);

	if (rc != NULL && rc->err) {
		redisFree(rc);
		return NULL;
	}
	if (rc != NULL && x->password != NULL)
		freeReplyObject(redisCommand(rc, "AUTH %s", x->password));
	return rc;
}

/* Publish through the script; the id goes to id (CURSOR_STR_MAX).  0 or -1. */
static int publish(const struct ctx *x, const char *user, const char *payload, char *id)
{
	char key[REDIS_KEY_MAX], err[200];
	const char *kv[2];
	size_t kvlen[2];
	redisContext *rc = sync_conn(x);
	redisReply *r;
	int ok;

	if (rc == NULL)
		return -1;
	ck_assert_int_gt(redis_history_key(key, sizeof key, "notifications", user), 0);
	kv[0] = key;
	kvlen[0] = strlen(key);
	kv[1] = payload;
	kvlen[1] = strlen(payload);
	r = redis_eval_sync(rc, &redis_script_publish, 1, 1, kv, kvlen, err, sizeof err);
	ok = r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
	if (ok && id != NULL)
		snprintf(id, CURSOR_STR_MAX, "%s", r->str);
	freeReplyObject(r);
	redisFree(rc);
	return ok ? 0 : -1;
}

/* The envelope bytes stored under id in user's history (caller frees). */
static char *stored_env(const struct ctx *x, const char *user, const char *id)
{
	char key[REDIS_KEY_MAX];
	redisContext *rc = sync_conn(x);
	redisReply *r;
	char *env = NULL;

	ck_assert_ptr_nonnull(rc);
	redis_history_key(key, sizeof key, "notifications", user);
	r = redisCommand(rc, "XRANGE %s %s %s", key, id, id);
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		redisReply *fields = r->element[0]->element[1];

		env = strndup(fields->element[1]->str, fields->element[1]->len);
	}
	freeReplyObject(r);
	redisFree(rc);
	ck_assert_ptr_nonnull(env);
	return env;
}

static long long sync_int(const struct ctx *x, const char *cmd, const char *arg)
{
	redisContext *rc = sync_conn(x);
	redisReply *r;
	long long v = -1;

	ck_assert_ptr_nonnull(rc);
	r = redisCommand(rc, cmd, arg);
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	else if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
		v = r->element[1]->integer; /* PUBSUB NUMSUB channel count */
	freeReplyObject(r);
	redisFree(rc);
	return v;
}

static long long numsub(const struct ctx *x, const char *channel)
{
	return sync_int(x, "PUBSUB NUMSUB %s", channel);
}

/* cmdstat_subscribe:calls=N from INFO commandstats. */
static long long subscribe_calls(const struct ctx *x)
{
	redisContext *rc = sync_conn(x);
	redisReply *r;
	long long v = 0;

	ck_assert_ptr_nonnull(rc);
	r = redisCommand(rc, "INFO commandstats");
	if (r != NULL && r->type == REDIS_REPLY_STRING) {
		const char *p = strstr(r->str, "cmdstat_subscribe:calls=");

		if (p != NULL)
			v = strtoll(p + strlen("cmdstat_subscribe:calls="), NULL, 10);
	}
	freeReplyObject(r);
	redisFree(rc);
	return v;
}

static int user_subscribed(struct ctx *x, unsigned n)
{
	return status(x).subscribed == n;
}

START_TEST(test_live)
{
	struct ctx x;
	struct fconn *a, *b;
	char id[CURSOR_STR_MAX];
	char *env;

	ctx_init(&x, 0, 1);
	ck_assert(WAIT_FOR(&x, status(&x).state == SUB_CONNECTED, WAIT_MS));
	ck_assert(has_event(&x, "connected, resubscribing 0 users"));
	a = attach(&x, "42", NULL);
	b = attach(&x, "43", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 2), WAIT_MS));
	run_for(&x, 20);

	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id), 0);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));
	env = stored_env(&x, "42", id);
	ck_assert_str_eq(a->msg[0], env);
	free(env);

	/* An unmodified publisher: wrapped with "id":null. */
	ck_assert_int_eq(sync_int(&x, "PUBLISH notifications:42 %s", "hello"), 1);
	ck_assert(WAIT_FOR(&x, a->n == 2, WAIT_MS));
	ck_assert(strncmp(a->msg[1], "{\"id\":null,\"channel\":\"notifications:42\"", 39) == 0);
	ck_assert_ptr_nonnull(strstr(a->msg[1], "\"data\":\"hello\"}"));

	run_for(&x, 50);
	ck_assert_uint_eq(b->n, 0);
	ck_assert_uint_eq(a->n, 2);
	ck_assert_uint_eq(status(&x).messages, 2);
	ctx_done(&x);
}
END_TEST

START_TEST(test_refcount)
{
	struct ctx x;
	struct fconn *a1, *a2, *a3;
	char id[CURSOR_STR_MAX];

	ctx_init(&x, 0, 1);
	a1 = attach(&x, "42", NULL);
	a2 = attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1), WAIT_MS));
	ck_assert_int_eq(numsub(&x, "notifications:42"), 1);

	detach(&x, a1);
	run_for(&x, 50);
	ck_assert_int_eq(numsub(&x, "notifications:42"), 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id), 0);
	ck_assert(WAIT_FOR(&x, a2->n == 1, WAIT_MS));

	detach(&x, a2);
	ck_assert(WAIT_FOR(&x, numsub(&x, "notifications:42") == 0, WAIT_MS));
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 0), WAIT_MS));

	/* Attach, detach, attach before the loop runs: ends subscribed, and
	 * the hub gets its confirmation. */
	a3 = attach(&x, "42", NULL);
	detach(&x, a3);
	a3 = attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1), WAIT_MS));
	run_for(&x, 20);
	ck_assert_int_eq(numsub(&x, "notifications:42"), 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":2}", id), 0);
	ck_assert(WAIT_FOR(&x, a3->n == 1, WAIT_MS));

	/* Detach and attach before the loop runs, while Redis has the channel:
	 * nothing to send, but the hub still waits for its confirmation. */
	detach(&x, a3);
	a3 = attach(&x, "42", NULL);
	run_for(&x, 50);
	ck_assert_int_eq(numsub(&x, "notifications:42"), 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":2.5}", id), 0);
	ck_assert(WAIT_FOR(&x, a3->n == 1, WAIT_MS));

	/* Detach and attach again while the UNSUBSCRIBE is in flight. */
	detach(&x, a3);
	pump(&x);
	a3 = attach(&x, "42", NULL);
	run_for(&x, 100);
	ck_assert_int_eq(numsub(&x, "notifications:42"), 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":3}", id), 0);
	ck_assert(WAIT_FOR(&x, a3->n == 1, WAIT_MS));
	ck_assert_ptr_nonnull(strstr(a3->msg[0], "{\"n\":3}"));
	ctx_done(&x);
}
END_TEST

START_TEST(test_resume)
{
	struct ctx x;
	struct fconn *a;
	char ids[6][CURSOR_STR_MAX], payload[32];

	ctx_init(&x, 0, 1);
	for (int i = 0; i < 5; i++) {
		snprintf(payload, sizeof payload, "{\"n\":%d}", i);
		ck_assert_int_eq(publish(&x, "42", payload, ids[i]), 0);
	}
	a = attach(&x, "42", ids[1]);
	ck_assert(WAIT_FOR(&x, a->n == 3, WAIT_MS));
	for (int i = 0; i < 3; i++) {
		char *env = stored_env(&x, "42", ids[i + 2]);

		ck_assert_str_eq(a->msg[i], env);
		free(env);
	}
	ck_assert_uint_ge(status(&x).history_reads, 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":5}", ids[5]), 0);
	ck_assert(WAIT_FOR(&x, a->n == 4, WAIT_MS));
	ck_assert_ptr_nonnull(strstr(a->msg[3], ids[5]));
	run_for(&x, 50);
	ck_assert_uint_eq(a->n, 4);
	ctx_done(&x);
}
END_TEST

/*
 * Publish n notifications of about size bytes to user, pipelined, keeping
 * keep entries; ids[0] gets the first id, ids[1] the last.
 */
static void publish_n(const struct ctx *x, const char *user, int n, size_t size, long keep,
		      char ids[2][CURSOR_STR_MAX])
{
	char key[REDIS_KEY_MAX], maxlen[24], err[200], *payload = malloc(size + 64);
	const char *kv[3];
	size_t kvlen[3];
	redisContext *rc = sync_conn(x);
	redisReply *r;

	ck_assert_ptr_nonnull(rc);
	ck_assert_ptr_nonnull(payload);
	redis_history_key(key, sizeof key, "notifications", user);
	snprintf(maxlen, sizeof maxlen, "%ld", keep);
	for (int i = 0; i < n; i++) {
		int len = snprintf(payload, size + 64, "{\"n\":%d,\"pad\":\"%0*d\"}", i,
				   (int)size, 0);

		kv[0] = key;
		kv[1] = payload;
		kv[2] = maxlen;
		kvlen[0] = strlen(key);
		kvlen[1] = (size_t)len;
		kvlen[2] = strlen(maxlen);
		if (i == 0) { /* loads the script */
			r = redis_eval_sync(rc, &redis_script_publish, 1, 2, kv, kvlen, err,
					    sizeof err);
			ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STRING, "%s", err);
			snprintf(ids[0], CURSOR_STR_MAX, "%s", r->str);
			freeReplyObject(r);
			continue;
		}
		ck_assert_int_eq(redisAppendCommand(rc, "EVALSHA %s 1 %b %b %b",
						    redis_script_publish.sha, kv[0], kvlen[0],
						    kv[1], kvlen[1], kv[2], kvlen[2]),
				 REDIS_OK);
	}
	for (int i = 1; i < n; i++) {
		ck_assert_int_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
		ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
		if (i == n - 1)
			snprintf(ids[1], CURSOR_STR_MAX, "%s", r->str);
		freeReplyObject(r);
	}
	free(payload);
	redisFree(rc);
}

/* The history script's pages: a byte budget, the page's end, more. */
START_TEST(test_history_pages)
{
	struct ctx x;
	struct history_result hr;
	struct cursor since, last;
	char ids[2][CURSOR_STR_MAX], err[200];
	redisContext *rc;
	size_t total = 0;
	int pages = 0;

	ctx_init(&x, 0, 0);
	publish_n(&x, "7", 100, 400, 1000, ids);
	rc = sync_conn(&x);
	ck_assert_ptr_nonnull(rc);
	ck_assert_int_eq(cursor_parse(ids[0], strlen(ids[0]), &since), 0);
	ck_assert_int_eq(cursor_parse(ids[1], strlen(ids[1]), &last), 0);
	for (;;) {
		ck_assert_int_eq(history_read(rc, &x.conf, "7", &since, 1000, 4096, &hr, err,
					      sizeof err),
				 0);
		pages++;
		ck_assert_uint_ge(hr.n, 1);
		ck_assert_uint_le(hr.n, 9); /* 4096 / ~450 */
		ck_assert_int_eq(cursor_cmp(&hr.page_end, &hr.entries[hr.n - 1].id), 0);
		ck_assert_int_eq(cursor_cmp(&hr.last, &last), 0);
		total += hr.n;
		since = hr.page_end;
		if (!hr.more) {
			ck_assert_int_eq(cursor_cmp(&hr.page_end, &last), 0);
			history_result_free(&hr);
			break;
		}
		history_result_free(&hr);
		ck_assert_int_lt(pages, 100);
	}
	ck_assert_uint_eq(total, 99);
	ck_assert_int_ge(pages, 11);
	/* One entry over the budget still comes, alone. */
	ck_assert_int_eq(cursor_parse(ids[0], strlen(ids[0]), &since), 0);
	ck_assert_int_eq(history_read(rc, &x.conf, "7", &since, 1000, 10, &hr, err, sizeof err),
			 0);
	ck_assert_uint_eq(hr.n, 1);
	ck_assert_int_eq(hr.more, 1);
	history_result_free(&hr);
	/* The page ends after entries that are not envelopes, too. */
	freeReplyObject(redisCommand(rc, "XADD notifications:7:history * other x"));
	ck_assert_int_eq(history_read(rc, &x.conf, "7", &last, 10, 0, &hr, err, sizeof err), 0);
	ck_assert_uint_eq(hr.n, 0);
	ck_assert_int_eq(hr.more, 0);
	ck_assert_int_gt(cursor_cmp(&hr.page_end, &last), 0);
	history_result_free(&hr);
	redisFree(rc);
	ctx_done(&x);
}
END_TEST

/*
 * Reads pipelined on one link (a herald-fcgi worker's batch of polls):
 * history_append for each, then history_collect in order.  With the
 * script gone (SCRIPT FLUSH), every read comes back HERR_AGAIN without
 * a reload and the link stays in step (the command sent before one of
 * them still gets its own reply); read alone with reload, then
 * pipelined again, each gets its own user's entries.
 */
START_TEST(test_history_pipelined)
{
	static const char *const users[3] = {"pa", "pb", "pc"};
	const char *echo[2] = {"ECHO", "before-pb"};
	const size_t echolen[2] = {4, 9};
	struct history_argv h[3];
	struct history_result hr;
	char ids[2][CURSOR_STR_MAX], err[200];
	redisContext *rc;
	redisReply *first;
	struct ctx x;

	ctx_init(&x, 0, 0);
	for (int i = 0; i < 3; i++)
		publish_n(&x, users[i], 2 + i, 40, 1000, ids);
	rc = sync_conn(&x);
	ck_assert_ptr_nonnull(rc);
	freeReplyObject(redisCommand(rc, "SCRIPT FLUSH"));
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 3; i++) {
			struct redis_cmd before = {i == 1 ? 2 : 0, echo, echolen};

			ck_assert_int_eq(history_argv(&h[i], &x.conf, users[i], NULL, 100, 0), 0);
			ck_assert_int_eq(history_append(rc, &before, &h[i], err, sizeof err), 0);
		}
		for (int i = 0; i < 3; i++) {
			int rv = history_collect(rc, i == 1, &first, &h[i], NULL, 0, &hr, err,
						 sizeof err);

			if (i == 1) {
				ck_assert_ptr_nonnull(first);
				ck_assert_str_eq(first->str, "before-pb");
				freeReplyObject(first);
			}
			if (round == 0) {
				ck_assert_int_eq(rv, HERR_AGAIN);
				ck_assert_int_eq(rc->err, 0);
				continue;
			}
			ck_assert_int_eq(rv, 0);
			ck_assert_uint_eq(hr.n, (size_t)(2 + i));
			history_result_free(&hr);
		}
		if (round == 0) { /* alone, with the reload: loads the script */
			struct redis_cmd none = {0, NULL, NULL};

			ck_assert_int_eq(history_append(rc, &none, &h[0], err, sizeof err), 0);
			ck_assert_int_eq(history_collect(rc, 0, NULL, &h[0], NULL, 1, &hr, err,
							 sizeof err),
					 0);
			ck_assert_uint_eq(hr.n, 2);
			history_result_free(&hr);
		}
	}
	redisFree(rc);
	ctx_done(&x);
}
END_TEST

/*
 * A backlog far over send_queue_max and over many pages, resumed while
 * notifications keep coming: all of it once, in order, then live.
 */
START_TEST(test_resume_paged)
{
	struct ctx x;
	struct fconn *a;
	char ids[2][CURSOR_STR_MAX], live[2][CURSOR_STR_MAX];

	ctx_init(&x, 0, 1);
	publish_n(&x, "42", 3000, 400, 5000, ids);
	a = attach(&x, "42", ids[0]);
	for (int i = 0; i < 20; i++) {
		publish_n(&x, "42", 5, 100, 5000, live);
		pump(&x);
	}
	ck_assert(WAIT_FOR(&x, a->ids == 2999 + 100 || a->closed, WAIT_MS * 3));
	ck_assert_int_eq(a->closed, 0);
	ck_assert_uint_eq(a->out_of_order, 0);
	ck_assert_uint_ge(status(&x).history_reads, 10);
	publish_n(&x, "42", 1, 10, 5000, live);
	ck_assert(WAIT_FOR(&x, a->ids == 2999 + 101, WAIT_MS));
	ck_assert_uint_eq(a->out_of_order, 0);
	run_for(&x, 50);
	ck_assert_uint_eq(a->ids, 2999 + 101);
	ctx_done(&x);
}
END_TEST

START_TEST(test_reconnect)
{
	struct ctx x;
	struct fconn *a;
	struct sub_status st;
	char id1[CURSOR_STR_MAX], id2[CURSOR_STR_MAX], id3[CURSOR_STR_MAX];

	ctx_init(&x, 200, 1);
	a = attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1) && status(&x).healthy, WAIT_MS));
	run_for(&x, 20);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id1), 0);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));

	fixture_redis_kill(&x.f);
	ck_assert(WAIT_FOR(&x, status(&x).state != SUB_CONNECTED, WAIT_MS));
	st = status(&x);
	ck_assert_int_eq(st.healthy, 0);
	ck_assert_uint_eq(st.subscribed, 0);
	ck_assert_str_ne(st.last_error, "");
	ck_assert(has_event(&x, "connection lost"));
	ck_assert_int_ne(publish(&x, "42", "{\"n\":0}", NULL), 0);
	run_for(&x, 500);
	ck_assert_int_ne(status(&x).state, SUB_CONNECTED);
	ck_assert_int_eq(status(&x).healthy, 0);

	/* The loop does not run here: this lands in the history before the
	 * subscriber is back, and must come through the catch-up. */
	ck_assert_int_eq(fixture_redis_restart(&x.f), 0);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":2}", id2), 0);
	ck_assert(
	    WAIT_FOR(&x, status(&x).state == SUB_CONNECTED && user_subscribed(&x, 1), WAIT_MS));
	ck_assert(WAIT_FOR(&x, a->n == 2, WAIT_MS));
	ck_assert_int_eq(publish(&x, "42", "{\"n\":3}", id3), 0);
	ck_assert(WAIT_FOR(&x, a->n == 3, WAIT_MS));
	run_for(&x, 100);
	ck_assert_uint_eq(a->n, 3);
	ck_assert_ptr_nonnull(strstr(a->msg[0], id1));
	ck_assert_ptr_nonnull(strstr(a->msg[1], id2));
	ck_assert_ptr_nonnull(strstr(a->msg[2], id3));
	st = status(&x);
	ck_assert_uint_eq(st.reconnects, 1);
	ck_assert(has_event(&x, "connected, resubscribing 1 users"));
	ck_assert(WAIT_FOR(&x, status(&x).healthy, WAIT_MS));
	ctx_done(&x);
}
END_TEST

START_TEST(test_canary)
{
	struct ctx x;
	redisContext *rc;
	redisReply *r;

	ctx_init(&x, 100, 1);
	ck_assert(WAIT_FOR(&x, status(&x).healthy, WAIT_MS));
	ck_assert_uint_gt(status(&x).canary_rtt_us, 0);

	/* A deaf subscriber: PUBLISH is held by CLIENT PAUSE WRITE, so the
	 * canary stops coming back while both sockets stay up. */
	rc = sync_conn(&x);
	ck_assert_ptr_nonnull(rc);
	r = redisCommand(rc, "CLIENT PAUSE 1500 WRITE");
	ck_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	redisFree(rc);
	ck_assert(WAIT_FOR(&x, has_event(&x, "canary not received"), WAIT_MS));
	ck_assert(WAIT_FOR(&x, status(&x).reconnects >= 1 && status(&x).healthy, WAIT_MS));
	ctx_done(&x);
}
END_TEST

START_TEST(test_free_pending)
{
	struct ctx x;
	struct fconn *a;
	char id[CURSOR_STR_MAX];

	/* Queued, not yet seen by the loop. */
	ctx_init(&x, 0, 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id), 0);
	attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1), WAIT_MS));
	run_for(&x, 20);
	a = attach(&x, "42", "0-1");
	sub_free(x.sub);
	x.sub = NULL;
	ck_assert_uint_eq(a->n, 0);
	ctx_done(&x);

	/* Sent, reply not read yet. */
	ctx_init(&x, 0, 1);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id), 0);
	attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1), WAIT_MS));
	run_for(&x, 20);
	a = attach(&x, "42", "0-1");
	ck_assert(WAIT_FOR(&x, status(&x).history_reads == 1, WAIT_MS));
	sub_free(x.sub);
	x.sub = NULL;
	ck_assert_uint_eq(a->n, 0);
	ctx_done(&x);
}
END_TEST

START_TEST(test_absent)
{
	struct ctx x;
	struct fconn *a;
	struct sub_status st;
	char id[CURSOR_STR_MAX];

	ctx_init(&x, 0, 0);
	fixture_redis_kill(&x.f);
	ctx_start_sub(&x, 0);
	ck_assert(WAIT_FOR(&x, status(&x).last_error[0] != '\0', WAIT_MS));
	ck_assert(WAIT_FOR(&x, status(&x).state == SUB_DISCONNECTED, WAIT_MS));
	st = status(&x);
	ck_assert_int_eq(st.healthy, 0);
	ck_assert(has_event(&x, "connect failed"));
	a = attach(&x, "42", NULL);
	run_for(&x, 300);
	ck_assert_int_ne(status(&x).state, SUB_CONNECTED);

	ck_assert_int_eq(fixture_redis_restart(&x.f), 0);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1) && status(&x).healthy, WAIT_MS));
	ck_assert_uint_eq(status(&x).reconnects, 0);
	run_for(&x, 20);
	ck_assert_int_eq(publish(&x, "42", "{\"n\":1}", id), 0);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));
	ctx_done(&x);
}
END_TEST

START_TEST(test_batch)
{
	enum { N = 2500 };
	struct ctx x;
	struct hub_conn *cs = calloc(N, sizeof(*cs));
	char user[16];
	long long calls;

	ck_assert_ptr_nonnull(cs);
	ctx_init(&x, 0, 1);
	ck_assert(WAIT_FOR(&x, status(&x).state == SUB_CONNECTED, WAIT_MS));
	calls = subscribe_calls(&x);
	for (int i = 0; i < N; i++) {
		snprintf(user, sizeof user, "u%d", i);
		cs[i].ops = &bare_ops;
		ck_assert_int_eq(hub_attach(x.hub, &cs[i], user, NULL), 0);
	}
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, N), WAIT_MS));
	/* Batched: a handful of SUBSCRIBE commands, not one per user. */
	ck_assert_int_le(subscribe_calls(&x) - calls, 5);
	ck_assert_int_eq(numsub(&x, "notifications:u1234"), 1);

	/* And after a restart, resubscribed the same way. */
	ck_assert_int_eq(fixture_redis_restart(&x.f), 0);
	ck_assert(WAIT_FOR(&x, status(&x).reconnects == 1 && user_subscribed(&x, N), WAIT_MS));
	ck_assert_int_le(subscribe_calls(&x), 6);
	ck_assert(has_event(&x, "resubscribing 2500 users"));

	for (int i = 0; i < N; i++)
		hub_detach(x.hub, &cs[i]);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 0), WAIT_MS));
	ck_assert_int_eq(numsub(&x, "notifications:u1234"), 0);
	ctx_done(&x);
	free(cs);
}
END_TEST

struct churn {
	struct hub *hub;
	struct hub_conn cs[20];
	atomic_int done;
};

/* Another thread attaches and detaches; ends with u0..u9 attached. */
static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	char user[16];

	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 20; i++) {
			snprintf(user, sizeof user, "u%d", i);
			ch->cs[i].ops = &bare_ops;
			if (hub_attach(ch->hub, &ch->cs[i], user, NULL) != 0)
				abort();
		}
		for (int i = round == 199 ? 10 : 0; i < 20; i++)
			hub_detach(ch->hub, &ch->cs[i]);
		if (round % 16 == 0)
			nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
	ch->done = 1;
	return NULL;
}

START_TEST(test_threads)
{
	struct ctx x;
	struct churn ch;
	pthread_t t;

	ctx_init(&x, 0, 1);
	ck_assert(WAIT_FOR(&x, status(&x).state == SUB_CONNECTED, WAIT_MS));
	memset(&ch, 0, sizeof ch);
	ch.hub = x.hub;
	ck_assert_int_eq(pthread_create(&t, NULL, churn_main, &ch), 0);
	ck_assert(WAIT_FOR(&x, ch.done, WAIT_MS));
	pthread_join(t, NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 10), WAIT_MS));
	run_for(&x, 100);
	ck_assert_uint_eq(status(&x).subscribed, 10);
	ck_assert_int_eq(numsub(&x, "notifications:u3"), 1);
	ck_assert_int_eq(numsub(&x, "notifications:u13"), 0);
	for (int i = 0; i < 10; i++)
		hub_detach(x.hub, &ch.cs[i]);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 0), WAIT_MS));
	ctx_done(&x);
}
END_TEST

/* A server that accepts the TCP connection and never answers. */
START_TEST(test_timeout)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	struct ctx x;
	char url[64], err[200];
	int fd;

	ctx_init(&x, 0, 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(sa.sin_port));
	ck_assert_int_eq(conf_set(&x.conf, "redis_url", url, "test", err, sizeof err), 0);
	ctx_start_sub(&x, 0);
	ck_assert(WAIT_FOR(&x, has_event(&x, "connect timed out after 2 s"), WAIT_MS));
	ck_assert_int_ne(status(&x).state, SUB_CONNECTED);
	ck_assert_str_eq(status(&x).last_error, "connect timed out after 2 s");
	ctx_done(&x);
	close(fd);
}
END_TEST

/* AUTH and SELECT on both links; a wrong password is a connect failure. */
START_TEST(test_auth)
{
	struct ctx x;
	struct fconn *a;
	char url[128], err[200];

	ctx_init(&x, 0, 0);
	/* A status reply, not an integer: sync_int says -1. */
	ck_assert_int_eq(sync_int(&x, "CONFIG SET requirepass %s", "s3cret"), -1);
	x.password = "s3cret";
	snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0", x.f.port);
	ck_assert_int_eq(conf_set(&x.conf, "redis_url", url, "test", err, sizeof err), 0);
	ctx_start_sub(&x, 0);
	ck_assert(WAIT_FOR(&x, has_event(&x, "AUTH failed"), WAIT_MS));
	sub_free(x.sub);
	x.sub = NULL;

	snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/3", x.f.port);
	ck_assert_int_eq(conf_set(&x.conf, "redis_url", url, "test", err, sizeof err), 0);
	ctx_start_sub(&x, 100);
	a = attach(&x, "42", NULL);
	ck_assert(WAIT_FOR(&x, user_subscribed(&x, 1) && status(&x).healthy, WAIT_MS));
	run_for(&x, 20);
	ck_assert_int_eq(sync_int(&x, "PUBLISH notifications:42 %s", "{}"), 1);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));
	ck_assert_int_eq(sync_int(&x, "CLIENT KILL TYPE pubsub%s", ""), 1);
	ck_assert(WAIT_FOR(&x, status(&x).reconnects == 1 && user_subscribed(&x, 1), WAIT_MS));
	ctx_done(&x);
}
END_TEST

/*
 * A history key of the wrong type makes the history script answer
 * -WRONGTYPE while the link stays up: the read is retried on a timer, and
 * once the key is fixed the connection gets its replay and goes live, with
 * no reconnect.
 */
START_TEST(test_history_retry)
{
	struct ctx x;
	struct fconn *a;
	struct sub_status st;
	char id1[CURSOR_STR_MAX], id2[CURSOR_STR_MAX];

	ctx_init(&x, 0, 1);
	ck_assert_int_eq(sync_int(&x, "SET notifications:u:history %s", "x"), -1);
	a = attach(&x, "u", "1-0");
	/* The first retry failed too: the second waits at least 250 ms. */
	ck_assert(WAIT_FOR(&x, has_event(&x, "retry 2 of 5"), WAIT_MS));
	ck_assert(has_event(&x, "history read for user u failed: WRONGTYPE"));
	ck_assert_int_eq(count_events(&x, "history read for user u failed"), 2);
	ck_assert_uint_eq(status(&x).history_retries, 1);
	ck_assert_int_eq(a->closed, 0);
	ck_assert_uint_eq(a->n, 0);

	ck_assert_int_eq(sync_int(&x, "DEL %s", "notifications:u:history"), 1);
	/* Live, held until the replay is done; the replay has it too. */
	ck_assert_int_eq(publish(&x, "u", "{\"n\":1}", id1), 0);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));
	ck_assert_int_eq(a->kind[0], HUB_MSG_NOTIFY);
	ck_assert_ptr_nonnull(strstr(a->msg[0], id1));
	ck_assert_int_eq(publish(&x, "u", "{\"n\":2}", id2), 0);
	ck_assert(WAIT_FOR(&x, a->n == 2, WAIT_MS));
	ck_assert_ptr_nonnull(strstr(a->msg[1], id2));
	run_for(&x, 50);
	ck_assert_uint_eq(a->n, 2);
	ck_assert_int_eq(a->closed, 0);
	st = status(&x);
	ck_assert_uint_eq(st.reconnects, 0);
	ck_assert_uint_eq(st.history_reads, 1);
	ck_assert_uint_eq(st.history_retries, 2);
	ck_assert_uint_eq(st.history_failures, 0);
	ctx_done(&x);
}
END_TEST

/* A key that stays wrong: after the last retry the connection is closed
 * (HUB_CLOSE_ERROR) and the client's resume works once the key is fixed. */
START_TEST(test_history_give_up)
{
	struct ctx x;
	struct fconn *a, *b;
	struct sub_status st;
	char id1[CURSOR_STR_MAX];

	ctx_init(&x, 0, 1);
	ck_assert_int_eq(sync_int(&x, "SET notifications:u:history %s", "x"), -1);
	a = attach(&x, "u", "1-0");
	/* 250 ms + 500 ms + 1 s + 2 s + 4 s at most. */
	ck_assert(WAIT_FOR(&x, a->closed, 20000));
	ck_assert_int_eq(a->reason, HUB_CLOSE_ERROR);
	ck_assert_uint_eq(a->n, 0);
	st = status(&x);
	ck_assert_uint_eq(st.history_reads, 1);
	ck_assert_uint_eq(st.history_retries, 5);
	ck_assert_uint_eq(st.history_failures, 1);
	ck_assert_uint_eq(st.reconnects, 0);
	ck_assert_int_eq(count_events(&x, "history read for user u failed: WRONGTYPE"), 6);
	ck_assert(has_event(&x, "retry 5 of 5"));
	ck_assert(has_event(&x, "giving up after 5 retries"));
	detach(&x, a);

	/* The client comes back with its cursor. */
	ck_assert_int_eq(sync_int(&x, "DEL %s", "notifications:u:history"), 1);
	ck_assert_int_eq(publish(&x, "u", "{\"n\":1}", id1), 0);
	b = attach(&x, "u", "1-0");
	ck_assert(WAIT_FOR(&x, b->n == 1, WAIT_MS));
	ck_assert_ptr_nonnull(strstr(b->msg[0], id1));
	ck_assert_uint_eq(status(&x).history_reads, 2);
	ctx_done(&x);
}
END_TEST

/* sub_free() with a read waiting for its retry timer, then with a retry
 * sent: every read is answered, nothing leaks. */
START_TEST(test_history_retry_free)
{
	struct ctx x;
	struct fconn *a;

	ctx_init(&x, 0, 1);
	ck_assert_int_eq(sync_int(&x, "SET notifications:u:history %s", "x"), -1);
	a = attach(&x, "u", "1-0");
	ck_assert(WAIT_FOR(&x, has_event(&x, "retry 1 of 5"), WAIT_MS));
	sub_free(x.sub);
	x.sub = NULL;
	ck_assert_int_eq(a->closed, 0);
	ck_assert_uint_eq(a->n, 0);
	ctx_done(&x);

	ctx_init(&x, 0, 1);
	ck_assert_int_eq(sync_int(&x, "SET notifications:u:history %s", "x"), -1);
	a = attach(&x, "u", "1-0");
	ck_assert(WAIT_FOR(&x, status(&x).history_retries == 1, WAIT_MS));
	sub_free(x.sub);
	x.sub = NULL;
	ck_assert_int_eq(a->closed, 0);
	ctx_done(&x);
}
END_TEST

/* A lost link cancels the retry timers; the resubscribe asks again. */
START_TEST(test_history_retry_reconnect)
{
	struct ctx x;
	struct fconn *a;
	struct sub_status st;
	char id1[CURSOR_STR_MAX];

	ctx_init(&x, 0, 1);
	ck_assert_int_eq(sync_int(&x, "SET notifications:u:history %s", "x"), -1);
	a = attach(&x, "u", "1-0");
	ck_assert(WAIT_FOR(&x, has_event(&x, "retry 1 of 5"), WAIT_MS));
	/* The command link only (the pub/sub one is TYPE pubsub). */
	ck_assert_int_eq(sync_int(&x, "CLIENT KILL TYPE normal%s", ""), 1);
	ck_assert(WAIT_FOR(&x,
			   status(&x).reconnects == 1 && status(&x).history_reads == 2 &&
			       count_events(&x, "retry 1 of 5") == 2,
			   WAIT_MS));
	ck_assert_uint_eq(status(&x).history_retries, 0);

	ck_assert_int_eq(sync_int(&x, "DEL %s", "notifications:u:history"), 1);
	ck_assert_int_eq(publish(&x, "u", "{\"n\":1}", id1), 0);
	ck_assert(WAIT_FOR(&x, a->n == 1, WAIT_MS));
	ck_assert_ptr_nonnull(strstr(a->msg[0], id1));
	run_for(&x, 600);
	st = status(&x);
	ck_assert_uint_eq(a->n, 1);
	ck_assert_int_eq(a->closed, 0);
	ck_assert_uint_eq(st.history_reads, 2);
	ck_assert_uint_eq(st.history_retries, 1);
	ck_assert_uint_eq(st.history_failures, 0);
	ctx_done(&x);
}
END_TEST

static Suite *sub_suite(void)
{
	Suite *s = suite_create("sub");
	TCase *tc = tcase_create("redis");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_live);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_resume);
	tcase_add_test(tc, test_history_pages);
	tcase_add_test(tc, test_history_pipelined);
	tcase_add_test(tc, test_resume_paged);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_canary);
	tcase_add_test(tc, test_free_pending);
	tcase_add_test(tc, test_absent);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_auth);
	tcase_add_test(tc, test_history_retry);
	tcase_add_test(tc, test_history_give_up);
	tcase_add_test(tc, test_history_retry_free);
	tcase_add_test(tc, test_history_retry_reconnect);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sub_suite());
	int failed;

	/* The hub may call the subscriber from any thread (event_active). */
	evthread_use_pthreads();
	redis_scripts_init();
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
