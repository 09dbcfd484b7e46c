#include "config.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub.h"
#include "suites.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* --- fake transport: records wake and close --- */

struct tconn {
	struct hub_conn hc;
	int wakes;
	int closes;
	int reason;
};

static void t_wake(struct hub_conn *c)
{
	container_of(c, struct tconn, hc)->wakes++;
}

static void t_close(struct hub_conn *c, int reason)
{
	struct tconn *t = container_of(c, struct tconn, hc);

	t->closes++;
	t->reason = reason;
}

static const struct hub_conn_ops tops = {t_wake, t_close};

static void tconn_init(struct tconn *t)
{
	memset(t, 0, sizeof(*t));
	t->hc.ops = &tops;
}

/* --- fake backend: records calls; the test answers history reads --- */

#define MAXHIST 64

struct hist_call {
	struct hub_req *req;
	char user[AUTH_USER_MAX + 1];
	int has_since; /* 0: a read of the tail (hub_attach_tail) */
	struct cursor since;
	unsigned limit;
	size_t max_bytes;
};

static struct {
	int subs, unsubs;
	char last_sub[AUTH_USER_MAX + 1];
	char last_unsub[AUTH_USER_MAX + 1];
	struct hist_call hist[MAXHIST];
	int nhist;
} fb;

static void b_subscribe(void *ud, const char *user)
{
	(void)ud;
	fb.subs++;
	snprintf(fb.last_sub, sizeof(fb.last_sub), "%s", user);
}

static void b_unsubscribe(void *ud, const char *user)
{
	(void)ud;
	fb.unsubs++;
	snprintf(fb.last_unsub, sizeof(fb.last_unsub), "%s", user);
}

static void b_history(void *ud, struct hub_req *req, const char *user, const struct cursor *since,
		      unsigned limit, size_t max_bytes)
{
	struct hist_call *hc;

	(void)ud;
	ck_assert_int_lt(fb.nhist, MAXHIST);
	hc = &fb.hist[fb.nhist++];
	hc->req = req;
	snprintf(hc->user, sizeof(hc->user), "%s", user);
	hc->has_since = since != NULL;
	if (since != NULL)
		hc->since = *since;
	hc->limit = limit;
	hc->max_bytes = max_bytes;
}

static const struct hub_backend_ops bops = {b_subscribe, b_unsubscribe, b_history};

/* --- fake clock --- */

static long long fake_now;

static long long t_now(void)
{
	return fake_now;
}

/* --- helpers --- */

static struct hub *hub;

static void make_hub(size_t qmax, unsigned maxc, unsigned maxu)
{
	struct hub_limits lim = {qmax, maxc, maxu, 100, 0};

	ck_assert_int_eq(hub_new(&hub, &lim, t_now), 0);
	hub_set_backend(hub, &bops, NULL);
}

static void setup(void)
{
	memset(&fb, 0, sizeof(fb));
	fake_now = 1000;
	make_hub(256 * 1024, 0, 0);
}

static void teardown(void)
{
	hub_free(hub);
	hub = NULL;
}

static size_t env_id(char *buf, size_t sz, const char *user, uint64_t ms)
{
	return (size_t)snprintf(buf, sz,
				"{\"id\":\"%" PRIu64 "-0\",\"channel\":\"notifications:%s\","
				"\"ts\":%" PRIu64 ",\"data\":{\"n\":%" PRIu64 "}}",
				ms, user, ms, ms);
}

static void pub(const char *user, uint64_t ms)
{
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), user, ms);

	hub_on_message(hub, user, buf, len);
}

static void pub_null(const char *user)
{
	char buf[256];
	int len = snprintf(buf, sizeof(buf),
			   "{\"id\":null,\"channel\":\"notifications:%s\",\"ts\":1,\"data\":\"x\"}",
			   user);

	hub_on_message(hub, user, buf, (size_t)len);
}

/*
 * Answer a history read with entries ms-0 for each ms in ids; with
 * more_end, entries wait after more_end-0.
 */
static void answer_page(struct hub_req *req, const char *user, const uint64_t *ids, size_t n,
			int truncated, uint64_t more_end, int err)
{
	static char bufs[16][256];
	struct history_entry e[16];
	struct hub_page p;

	ck_assert_uint_le(n, 16);
	for (size_t i = 0; i < n; i++) {
		e[i].id.ms = ids[i];
		e[i].id.seq = 0;
		e[i].len = env_id(bufs[i], sizeof(bufs[i]), user, ids[i]);
		e[i].env = bufs[i];
	}
	memset(&p, 0, sizeof(p));
	p.e = e;
	p.n = n;
	p.truncated = truncated;
	p.more = more_end != 0;
	p.end.ms = more_end;
	hub_history_done(hub, req, err == 0 ? &p : NULL, err);
}

static void answer(struct hub_req *req, const char *user, const uint64_t *ids, size_t n,
		   int truncated, int err)
{
	answer_page(req, user, ids, n, truncated, 0, err);
}

/*
 * Answer a read of the tail: the newest entry is newest-0 (0: an empty
 * history), and the page holds it when it is an envelope.
 */
static void answer_tail(struct hub_req *req, const char *user, uint64_t newest, int err)
{
	char buf[256];
	struct history_entry e;
	struct hub_page p;

	memset(&p, 0, sizeof(p));
	if (newest != 0) {
		e.id.ms = newest;
		e.id.seq = 0;
		e.len = env_id(buf, sizeof(buf), user, newest);
		e.env = buf;
		p.e = &e;
		p.n = 1;
		p.end = e.id;
	}
	hub_history_done(hub, req, err == 0 ? &p : NULL, err);
}

/* Pop everything queued on c: "1-0 N R C5-0 ..." (N: id null, R: reset,
 * C: the cursor of hub_attach_tail). */
static const char *drain(struct tconn *t)
{
	static char out[4096];
	size_t off = 0;
	struct hub_msg *m;

	out[0] = '\0';
	while ((m = hub_pop(hub, &t->hc)) != NULL) {
		const char *sep = off > 0 ? " " : "";

		if (m->kind == HUB_MSG_RESET)
			off += (size_t)snprintf(out + off, sizeof(out) - off, "%sR", sep);
		else if (m->kind == HUB_MSG_CURSOR)
			off +=
			    (size_t)snprintf(out + off, sizeof(out) - off,
					     "%sC%" PRIu64 "-%" PRIu64, sep, m->id.ms, m->id.seq);
		else if (!m->has_id)
			off += (size_t)snprintf(out + off, sizeof(out) - off, "%sN", sep);
		else
			off += (size_t)snprintf(out + off, sizeof(out) - off,
						"%s%" PRIu64 "-%" PRIu64, sep, m->id.ms, m->id.seq);
		ck_assert_uint_eq(m->data[m->len], '\0');
		hub_msg_unref(m);
		ck_assert_uint_lt(off, sizeof(out));
	}
	return out;
}

static struct hub_stats stats(void)
{
	struct hub_stats st;

	hub_get_stats(hub, &st);
	return st;
}

static void attach_live(struct tconn *t, const char *user)
{
	tconn_init(t);
	ck_assert_int_eq(hub_attach(hub, &t->hc, user, NULL), 0);
	hub_on_subscribed(hub, user);
}

/* --- tests --- */

START_TEST(msg_refcount)
{
	const char *env = "{\"id\":\"17-3\",\"channel\":\"notifications:u\",\"ts\":1,\"data\":1}";
	const char *nul = "{\"id\":null,\"channel\":\"notifications:u\",\"ts\":1,\"data\":1}";
	struct hub_msg *m = hub_msg_new(HUB_MSG_NOTIFY, env, strlen(env));

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->has_id, 1);
	ck_assert_uint_eq(m->id.ms, 17);
	ck_assert_uint_eq(m->id.seq, 3);
	ck_assert_uint_eq(m->len, strlen(env));
	ck_assert_str_eq(m->data, env);
	ck_assert_ptr_eq(hub_msg_ref(m), m);
	hub_msg_unref(m);
	hub_msg_unref(m);
	hub_msg_unref(NULL);

	m = hub_msg_new(HUB_MSG_NOTIFY, nul, strlen(nul));
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->has_id, 0);
	hub_msg_unref(m);

	m = hub_msg_new(HUB_MSG_RESET, "", 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->has_id, 0);
	ck_assert_uint_eq(m->len, 0);
	hub_msg_unref(m);
}
END_TEST

START_TEST(subscribe_refcounted)
{
	struct tconn a, b;

	tconn_init(&a);
	tconn_init(&b);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	ck_assert_int_eq(fb.subs, 1);
	ck_assert_str_eq(fb.last_sub, "u1");
	ck_assert_int_eq(hub_attach(hub, &b.hc, "u1", NULL), 0);
	ck_assert_int_eq(fb.subs, 1);
	ck_assert_uint_eq(stats().users, 1);
	ck_assert_uint_eq(stats().conns, 2);

	hub_detach(hub, &a.hc);
	ck_assert_int_eq(fb.unsubs, 0);
	hub_detach(hub, &a.hc); /* twice is harmless */
	ck_assert_int_eq(fb.unsubs, 0);
	ck_assert_uint_eq(stats().conns, 1);
	hub_detach(hub, &b.hc);
	ck_assert_int_eq(fb.unsubs, 1);
	ck_assert_str_eq(fb.last_unsub, "u1");
	ck_assert_uint_eq(stats().users, 0);
	ck_assert_uint_eq(stats().conns, 0);

	/* A new first connection subscribes again. */
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	ck_assert_int_eq(fb.subs, 2);
	hub_detach(hub, &a.hc);
	ck_assert_int_eq(fb.unsubs, 2);
}
END_TEST

START_TEST(users_isolated)
{
	struct tconn a, b;

	attach_live(&a, "u1");
	attach_live(&b, "u2");
	ck_assert_int_eq(fb.subs, 2);
	pub("u1", 1);
	pub("u2", 2);
	pub("u3", 3); /* nobody here */
	ck_assert_str_eq(drain(&a), "1-0");
	ck_assert_str_eq(drain(&b), "2-0");
	ck_assert_uint_eq(stats().messages_in, 3);
	ck_assert_uint_eq(stats().delivered, 2);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

START_TEST(live_in_order)
{
	struct tconn a, b;
	char buf[256];

	attach_live(&a, "u1");
	attach_live(&b, "u1");
	for (uint64_t i = 1; i <= 5; i++)
		pub("u1", i);
	ck_assert_int_eq(a.wakes, 1); /* only on empty -> non-empty */
	ck_assert_str_eq(drain(&a), "1-0 2-0 3-0 4-0 5-0");
	ck_assert_str_eq(drain(&b), "1-0 2-0 3-0 4-0 5-0");
	pub("u1", 6);
	ck_assert_int_eq(a.wakes, 2);
	ck_assert_str_eq(drain(&a), "6-0");
	ck_assert_uint_eq(stats().queued_bytes, env_id(buf, sizeof(buf), "u1", 6));
	ck_assert_str_eq(drain(&b), "6-0");
	ck_assert_uint_eq(stats().queued_bytes, 0);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
	ck_assert_uint_eq(stats().queued_bytes, 0);
}
END_TEST

START_TEST(wait_sub_then_live)
{
	struct tconn a;

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	pub("u1", 1); /* before the confirmation: held, not lost */
	ck_assert_int_eq(a.wakes, 0);
	ck_assert_str_eq(drain(&a), "");
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 0);
	pub("u1", 2);
	ck_assert_str_eq(drain(&a), "1-0 2-0");
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(duplicates_dropped)
{
	struct tconn a;

	attach_live(&a, "u1");
	pub("u1", 3);
	pub("u1", 3);
	pub("u1", 2);
	pub("u1", 4);
	ck_assert_str_eq(drain(&a), "3-0 4-0");
	ck_assert_uint_eq(stats().duplicates_dropped, 2);
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(null_ids_delivered)
{
	struct tconn a;

	attach_live(&a, "u1");
	pub_null("u1");
	pub("u1", 1);
	pub_null("u1");
	pub_null("u1");
	ck_assert_str_eq(drain(&a), "N 1-0 N N");
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(resume_union)
{
	struct tconn a;
	struct cursor since = {10, 0};
	uint64_t hist[] = {11, 12, 13};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	ck_assert_int_eq(fb.nhist, 0); /* not before the subscription is confirmed */
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_str_eq(fb.hist[0].user, "u1");
	ck_assert_uint_eq(fb.hist[0].since.ms, 10);
	ck_assert_uint_eq(fb.hist[0].since.seq, 0);
	ck_assert_uint_eq(fb.hist[0].limit, 100);
	ck_assert_uint_eq(stats().replays, 1);

	/* Live during the replay: buffered. */
	pub("u1", 12);
	pub("u1", 13);
	pub_null("u1");
	pub("u1", 14);
	ck_assert_int_eq(a.wakes, 0);
	ck_assert_str_eq(drain(&a), "");

	answer(fb.hist[0].req, "u1", hist, 3, 0, 0);
	ck_assert_int_eq(a.wakes, 1);
	ck_assert_str_eq(drain(&a), "11-0 12-0 13-0 N 14-0");
	ck_assert_uint_eq(stats().duplicates_dropped, 2);

	pub("u1", 14);
	pub("u1", 15);
	ck_assert_str_eq(drain(&a), "15-0");
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(resume_skips_up_to_cursor)
{
	struct tconn a, b;
	struct cursor since = {10, 0};
	uint64_t hist[] = {9, 10, 11};

	/* User already confirmed: the read starts at once. */
	attach_live(&a, "u1");
	tconn_init(&b);
	ck_assert_int_eq(hub_attach(hub, &b.hc, "u1", &since), 0);
	ck_assert_int_eq(fb.nhist, 1);
	pub("u1", 10); /* not after the cursor */
	answer(fb.hist[0].req, "u1", hist, 3, 0, 0);
	ck_assert_str_eq(drain(&b), "11-0");
	ck_assert_str_eq(drain(&a), "10-0");
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

START_TEST(resume_truncated_reset)
{
	struct tconn a;
	struct cursor since = {1, 0};
	uint64_t hist[] = {50, 51};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	answer(fb.hist[0].req, "u1", hist, 2, 1, 0);
	ck_assert_str_eq(drain(&a), "R 50-0 51-0");
	ck_assert_uint_eq(stats().resets, 1);
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(history_error_retries)
{
	struct tconn a;
	struct cursor since = {10, 0};
	uint64_t hist[] = {11};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	pub("u1", 12);
	answer(fb.hist[0].req, "u1", NULL, 0, 0, HERR_REDIS);
	ck_assert_str_eq(drain(&a), "");
	pub("u1", 13);
	ck_assert_str_eq(drain(&a), "");

	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 2);
	ck_assert_uint_eq(fb.hist[1].since.ms, 10);
	ck_assert_uint_eq(fb.hist[1].since.seq, 0);
	answer(fb.hist[1].req, "u1", hist, 1, 0, 0);
	ck_assert_str_eq(drain(&a), "11-0 12-0 13-0");
	ck_assert_uint_eq(stats().replays, 2);
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * A backend that gave up on a read (HERR_AGAIN after its retries, or an error
 * no confirmation would fix) makes the hub close the connection with
 * HUB_CLOSE_ERROR, so it is not left waiting while the link stays up.
 */
START_TEST(history_give_up_closes)
{
	static const int errs[] = {HERR_AGAIN, HERR_NOMEM, HERR_INVAL};
	struct tconn a, b;
	struct cursor since = {10, 0};

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		memset(&fb, 0, sizeof(fb));
		attach_live(&b, "u1");
		tconn_init(&a);
		ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
		ck_assert_int_eq(fb.nhist, 1);
		pub("u1", 12); /* held for a, queued for b */
		answer(fb.hist[0].req, "u1", NULL, 0, 0, errs[i]);
		ck_assert_int_eq(a.closes, 1);
		ck_assert_int_eq(a.reason, HUB_CLOSE_ERROR);
		ck_assert_int_eq(b.closes, 0);
		ck_assert_str_eq(drain(&a), "");
		ck_assert_str_eq(drain(&b), "12-0");
		/* Closed: nothing more is queued nor read for it. */
		pub("u1", 13);
		hub_on_subscribed(hub, "u1");
		ck_assert_int_eq(fb.nhist, 1);
		ck_assert_str_eq(drain(&a), "");
		ck_assert_str_eq(drain(&b), "13-0");
		ck_assert_int_eq(a.closes, 1);
		ck_assert_uint_eq(stats().slow_closed, 0);
		hub_detach(hub, &a.hc);
		hub_detach(hub, &b.hc);
		ck_assert_uint_eq(stats().conns, 0);
		ck_assert_uint_eq(stats().queued_bytes, 0);
	}
}
END_TEST

/* HERR_CLOSED (the backend is going away) waits like HERR_REDIS. */
START_TEST(history_closed_waits)
{
	struct tconn a;
	struct cursor since = {10, 0};
	uint64_t hist[] = {11};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	answer(fb.hist[0].req, "u1", NULL, 0, 0, HERR_CLOSED);
	ck_assert_int_eq(a.closes, 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 2);
	answer(fb.hist[1].req, "u1", hist, 1, 0, 0);
	ck_assert_str_eq(drain(&a), "11-0");
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(detach_during_replay)
{
	struct tconn a;
	struct cursor since = {10, 0};
	uint64_t hist[] = {11, 12};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	pub("u1", 12);
	pub("u1", 13);
	hub_detach(hub, &a.hc);
	ck_assert_int_eq(fb.unsubs, 1);
	ck_assert_uint_eq(stats().users, 0);
	answer(fb.hist[0].req, "u1", hist, 2, 0, 0); /* dropped */
	ck_assert_int_eq(a.wakes, 0);
	ck_assert_uint_eq(stats().queued_bytes, 0);
	ck_assert_uint_eq(stats().delivered, 0);
}
END_TEST

START_TEST(link_lost_catch_up)
{
	struct tconn a, b, c;
	struct cursor since = {20, 0};
	uint64_t ha[] = {5, 6, 7};
	uint64_t hb[] = {6, 7};
	uint64_t hc[] = {21};
	uint64_t hc2[] = {21, 22};

	fake_now = 5000;
	attach_live(&a, "u1"); /* live at 5000 */
	fake_now = 6000;
	attach_live(&b, "u2"); /* live at 6000, gets nothing */
	tconn_init(&c);
	ck_assert_int_eq(hub_attach(hub, &c.hc, "u3", &since), 0);
	hub_on_subscribed(hub, "u3");
	ck_assert_int_eq(fb.nhist, 1); /* c's read in flight */
	pub("u1", 5);
	ck_assert_str_eq(drain(&a), "5-0");

	fake_now = 9000;
	hub_on_link_lost(hub);
	/* The read answered after the loss is dropped. */
	answer(fb.hist[0].req, "u3", hc, 1, 0, 0);
	ck_assert_str_eq(drain(&c), "");

	hub_on_subscribed(hub, "u1");
	hub_on_subscribed(hub, "u2");
	hub_on_subscribed(hub, "u3");
	ck_assert_int_eq(fb.nhist, 4);
	ck_assert_int_eq(fb.subs, 3); /* the backend resubscribes by itself */
	ck_assert_str_eq(fb.hist[1].user, "u1");
	ck_assert_uint_eq(fb.hist[1].since.ms, 5);
	ck_assert_uint_eq(fb.hist[1].since.seq, 0);
	ck_assert_str_eq(fb.hist[2].user, "u2");
	ck_assert_uint_eq(fb.hist[2].since.ms, 5999); /* from 6000 inclusive */
	ck_assert_uint_eq(fb.hist[2].since.seq, UINT64_MAX);
	ck_assert_str_eq(fb.hist[3].user, "u3");
	ck_assert_uint_eq(fb.hist[3].since.ms, 20);

	pub("u1", 7);
	answer(fb.hist[1].req, "u1", ha, 3, 0, 0);
	answer(fb.hist[2].req, "u2", hb, 2, 0, 0);
	answer(fb.hist[3].req, "u3", hc2, 2, 0, 0);
	ck_assert_str_eq(drain(&a), "6-0 7-0");
	ck_assert_str_eq(drain(&b), "6-0 7-0");
	ck_assert_str_eq(drain(&c), "21-0 22-0");

	/* Live again. */
	pub("u2", 8);
	ck_assert_str_eq(drain(&b), "8-0");
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
	hub_detach(hub, &c.hc);
}
END_TEST

START_TEST(link_lost_keeps_waiting_conns)
{
	struct tconn a;

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	hub_on_link_lost(hub);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 0); /* never live: nothing to catch up */
	pub("u1", 1);
	ck_assert_str_eq(drain(&a), "1-0");
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * A full queue whose messages are all in the history is dropped and the
 * connection caught up from after the last message its transport took:
 * not closed, nothing lost, nothing twice.
 */
START_TEST(slow_consumer_caught_up)
{
	struct tconn a, b;
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);
	uint64_t i, hist[] = {101, 102, 103, 104};

	teardown();
	make_hub(len * 3, 0, 0); /* page_bytes 1.5 messages */
	attach_live(&a, "u1");
	attach_live(&b, "u1");
	for (i = 100; i < 103; i++)
		pub("u1", i);
	ck_assert_str_eq(drain(&b), "100-0 101-0 102-0");
	hub_msg_unref(hub_pop(hub, &a.hc)); /* a's transport took 100 */
	pub("u1", 103);
	pub("u1", 104); /* a: over the cap */
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().slow_closed, 0);
	ck_assert_uint_eq(stats().slow_caught_up, 1);
	ck_assert_uint_eq(stats().queued_bytes, 2 * len); /* b's 103 and 104 only */
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_uint_eq(fb.hist[0].since.ms, 100); /* after the last taken */
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 1);
	pub("u1", 105); /* held */
	answer(fb.hist[0].req, "u1", hist, 4, 0, 0);
	ck_assert_str_eq(drain(&a), "101-0 102-0 103-0 104-0");
	ck_assert_int_eq(fb.nhist, 2); /* the page was over half a page: once more */
	answer(fb.hist[1].req, "u1", NULL, 0, 0, 0);
	ck_assert_str_eq(drain(&a), "105-0");
	ck_assert_str_eq(drain(&b), "103-0 104-0 105-0");
	pub("u1", 106);
	ck_assert_str_eq(drain(&a), "106-0");
	ck_assert_str_eq(drain(&b), "106-0");
	ck_assert_uint_eq(stats().slow_caught_up, 1);
	ck_assert_int_eq(a.closes, 0);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

/* A full queue holding a message without an id cannot catch up: closed. */
START_TEST(slow_consumer_closed)
{
	struct tconn a, b;
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);

	teardown();
	make_hub(len * 3, 0, 0);
	attach_live(&a, "u1");
	attach_live(&b, "u1");
	pub("u1", 100);
	pub_null("u1");
	pub("u1", 101);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_str_eq(drain(&b), "100-0 N 101-0");
	pub("u1", 102); /* a: over the cap, with N queued */
	ck_assert_int_eq(a.closes, 1);
	ck_assert_int_eq(a.reason, HUB_CLOSE_SLOW);
	ck_assert_int_eq(b.closes, 0);
	ck_assert_uint_eq(stats().slow_closed, 1);
	ck_assert_uint_eq(stats().slow_caught_up, 0);
	ck_assert_uint_eq(stats().queued_bytes, len); /* b's 102 only */
	ck_assert_ptr_null(hub_pop(hub, &a.hc));
	pub("u1", 104);
	pub_null("u1");
	ck_assert_int_eq(a.closes, 1);
	ck_assert_ptr_null(hub_pop(hub, &a.hc));
	ck_assert_str_eq(drain(&b), "102-0 104-0 N");
	hub_close_all(hub); /* a is closed already */
	ck_assert_int_eq(a.closes, 1);
	ck_assert_int_eq(b.closes, 1);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
	ck_assert_uint_eq(stats().conns, 0);
}
END_TEST

/*
 * Live messages held during a replay past send_queue_max are dropped, and
 * the replay reads once more so the history gives them back: the answer
 * of the read that was in flight cannot end the replay.
 */
START_TEST(slow_during_replay)
{
	struct tconn a;
	struct cursor since = {1, 0};
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);
	uint64_t hist1[] = {99};
	uint64_t hist2[] = {100, 101, 102, 103};

	teardown();
	make_hub(len * 2, 0, 0);
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	pub("u1", 100);
	pub("u1", 101);
	pub("u1", 102); /* over the cap: 100 and 101 dropped, 102 held */
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().held_dropped, 2);
	answer(fb.hist[0].req, "u1", hist1, 1, 0, 0); /* sent before the drop */
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_str_eq(drain(&a), "99-0");
	ck_assert_int_eq(fb.nhist, 2); /* drained: read on */
	ck_assert_uint_eq(fb.hist[1].since.ms, 99);
	pub("u1", 103);
	answer(fb.hist[1].req, "u1", hist2, 4, 0, 0);
	ck_assert_str_eq(drain(&a), "100-0 101-0 102-0 103-0");
	/* More than half a page was queued: one read more before live. */
	ck_assert_int_eq(fb.nhist, 3);
	ck_assert_uint_eq(fb.hist[2].since.ms, 103);
	answer(fb.hist[2].req, "u1", NULL, 0, 0, 0);
	pub("u1", 104);
	ck_assert_str_eq(drain(&a), "104-0");
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().slow_closed, 0);
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * A live connection whose reader is behind loses the link: what it holds
 * meanwhile counts with what is still queued, so the catch-up does not
 * flush it past send_queue_max (a slow close); the history gives back what
 * was dropped.
 */
START_TEST(link_lost_with_full_queue)
{
	struct tconn a;
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);
	uint64_t hist[] = {102, 103, 104};

	teardown();
	make_hub(len * 3, 0, 0);
	attach_live(&a, "u1");
	pub("u1", 100);
	pub("u1", 101); /* queued, not read yet */
	hub_on_link_lost(hub);
	pub("u1", 102);
	pub("u1", 103); /* 2 queued + 2 held > 3: the held ones are dropped */
	pub("u1", 104);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_ge(stats().held_dropped, 1);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_uint_eq(fb.hist[0].since.ms, 101);
	answer(fb.hist[0].req, "u1", hist, 3, 0, 0);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_str_eq(drain(&a), "100-0 101-0 102-0 103-0 104-0");
	if (fb.nhist == 2) /* held ones were dropped after the read: one more */
		answer(fb.hist[1].req, "u1", NULL, 0, 0, 0);
	pub("u1", 105);
	ck_assert_str_eq(drain(&a), "105-0");
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().slow_closed, 0);
	hub_detach(hub, &a.hc);
}
END_TEST

/* A connection with no cursor has no history to fall back on: it closes. */
START_TEST(slow_while_waiting_fresh)
{
	struct tconn a;
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);

	teardown();
	make_hub(len * 2, 0, 0);
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	pub("u1", 100);
	pub("u1", 101);
	ck_assert_int_eq(a.closes, 0);
	pub("u1", 102);
	ck_assert_int_eq(a.closes, 1);
	ck_assert_int_eq(a.reason, HUB_CLOSE_SLOW);
	hub_detach(hub, &a.hc);
}
END_TEST

/* A history page larger than send_queue_max is queued: replay does not count. */
START_TEST(replay_not_counted)
{
	struct tconn a;
	struct cursor since = {1, 0};
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);
	uint64_t hist[] = {100, 101, 102, 103, 104, 105};

	teardown();
	make_hub(len * 4, 0, 0); /* page_bytes: 2 messages */
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	pub("u1", 106);
	answer(fb.hist[0].req, "u1", hist, 6, 0, 0);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().queued_bytes, 6 * len);
	/* Not live while more than half a page waits: one read more once it
	 * has drained, then 106 (held) ends the replay. */
	ck_assert_str_eq(drain(&a), "100-0 101-0 102-0 103-0 104-0 105-0");
	ck_assert_int_eq(fb.nhist, 2);
	ck_assert_uint_eq(fb.hist[1].since.ms, 105);
	answer(fb.hist[1].req, "u1", NULL, 0, 0, 0);
	ck_assert_uint_eq(stats().queued_bytes, len);
	/* Live messages count only themselves against the cap: 106 (paced)
	 * and four live ones fit; a fifth catches up from the history. */
	pub("u1", 107);
	pub("u1", 108);
	pub("u1", 109);
	pub("u1", 110);
	ck_assert_uint_eq(stats().slow_caught_up, 0);
	pub("u1", 111);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().slow_caught_up, 1);
	ck_assert_uint_eq(stats().queued_bytes, 0);
	ck_assert_int_eq(fb.nhist, 3);
	ck_assert_uint_eq(fb.hist[2].since.ms, 105); /* nothing taken since the page */
	hub_detach(hub, &a.hc);
	answer(fb.hist[2].req, "u1", NULL, 0, 0, 0); /* owed after a detach too */
}
END_TEST

/*
 * Pages: the next is read once all but half a page has drained, from the
 * end of the last; live messages wait until the page that reaches the end.
 */
START_TEST(replay_paged)
{
	struct tconn a;
	struct cursor since = {1, 0};
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);
	uint64_t p1[] = {100, 101, 102, 103};
	uint64_t p2[] = {105, 106};

	teardown();
	make_hub(len * 8, 0, 0); /* page_bytes: 4 messages */
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_uint_eq(fb.hist[0].max_bytes, len * 4);
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 1);
	pub("u1", 107);
	answer_page(fb.hist[0].req, "u1", p1, 4, 0, 104, 0); /* 104: not an envelope */
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_uint_eq(stats().replays, 1);
	ck_assert_uint_eq(stats().replay_pages, 1);
	ck_assert_int_eq(a.wakes, 1);
	hub_msg_unref(hub_pop(hub, &a.hc));
	ck_assert_int_eq(fb.nhist, 1); /* 3 left > half a page */
	hub_msg_unref(hub_pop(hub, &a.hc));
	ck_assert_int_eq(fb.nhist, 2); /* 2 left: read on */
	ck_assert_uint_eq(fb.hist[1].since.ms, 104);
	ck_assert_uint_eq(stats().replays, 1);
	ck_assert_uint_eq(stats().replay_pages, 2);
	pub("u1", 108);
	ck_assert_str_eq(drain(&a), "102-0 103-0");
	ck_assert_int_eq(fb.nhist, 2); /* one read at a time */
	answer_page(fb.hist[1].req, "u1", p2, 2, 0, 0, 0);
	ck_assert_str_eq(drain(&a), "105-0 106-0 107-0 108-0");
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 0);
	pub("u1", 109);
	ck_assert_str_eq(drain(&a), "109-0");
	ck_assert_uint_eq(stats().replayed, 6);
	hub_detach(hub, &a.hc);
}
END_TEST

/* The link goes while a page is queued: the catch-up reads from the last queued. */
START_TEST(replay_link_lost_paged)
{
	struct tconn a;
	struct cursor since = {1, 0};
	uint64_t p1[] = {100, 101, 102, 103};
	uint64_t p2[] = {104};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	answer_page(fb.hist[0].req, "u1", p1, 4, 0, 200, 0);
	ck_assert_int_eq(fb.nhist, 2); /* a small page: read on at once */
	ck_assert_uint_eq(fb.hist[1].since.ms, 200);
	hub_on_link_lost(hub);
	answer(fb.hist[1].req, "u1", NULL, 0, 0, HERR_REDIS);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 3);
	ck_assert_uint_eq(fb.hist[2].since.ms, 103);
	answer(fb.hist[2].req, "u1", p2, 1, 0, 0);
	ck_assert_str_eq(drain(&a), "100-0 101-0 102-0 103-0 104-0");
	hub_detach(hub, &a.hc);
}
END_TEST

/* A backend whose page does not move past its cursor would loop: closed. */
START_TEST(replay_stuck_closes)
{
	struct tconn a;
	struct cursor since = {10, 0};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	answer_page(fb.hist[0].req, "u1", NULL, 0, 0, 10, 0);
	ck_assert_int_eq(a.closes, 1);
	ck_assert_int_eq(a.reason, HUB_CLOSE_ERROR);
	ck_assert_int_eq(fb.nhist, 1);
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * A simulated stream of 10,000 entries answered page by page as Redis
 * would (limit, byte budget, page end), while live messages keep coming:
 * every entry arrives once, in order, and the queue never holds more than
 * about 1.5 pages.
 */
#define SIM_MAX 12000
static struct {
	uint64_t next;	 /* next id to publish */
	char env[SIM_MAX][96];
	size_t len[SIM_MAX];
} sim;

static void sim_publish(const char *user)
{
	uint64_t id = sim.next++;

	ck_assert_uint_lt(id, SIM_MAX);
	sim.len[id] = env_id(sim.env[id], sizeof(sim.env[id]), user, id);
	hub_on_message(hub, user, sim.env[id], sim.len[id]);
}

static void sim_answer(int k)
{
	static struct history_entry e[HISTORY_LIMIT_MAX];
	struct hist_call *hc = &fb.hist[k];
	struct hub_page p;
	size_t bytes = 0;
	uint64_t id;

	memset(&p, 0, sizeof(p));
	for (id = hc->since.ms + 1; id < sim.next && p.n < hc->limit; id++) {
		if (p.n > 0 && bytes + sim.len[id] > hc->max_bytes)
			break;
		e[p.n].id.ms = id;
		e[p.n].id.seq = 0;
		e[p.n].env = sim.env[id];
		e[p.n].len = sim.len[id];
		bytes += sim.len[id];
		p.n++;
		p.end.ms = id;
	}
	p.e = e;
	p.more = p.n > 0 && p.end.ms < sim.next - 1;
	hub_history_done(hub, hc->req, &p, 0);
}

START_TEST(replay_10000_while_live)
{
	struct tconn a;
	struct cursor since = {1, 0};
	uint64_t want = 2, peak = 0;
	int answered = 0;
	struct hub_msg *m;

	teardown();
	memset(&fb, 0, sizeof(fb));
	make_hub(16 * 1024, 0, 0);
	sim.next = 1;
	for (int i = 0; i < 10000; i++)
		sim_publish("u1"); /* nobody attached yet: history only */
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	for (int round = 0; round < 100000 && want < sim.next; round++) {
		if (answered < fb.nhist)
			sim_answer(answered++);
		if (round % 7 == 0 && sim.next < 11000)
			sim_publish("u1"); /* live, during the replay */
		if (stats().queued_bytes > peak)
			peak = stats().queued_bytes;
		for (int k = 0; k < 5 && (m = hub_pop(hub, &a.hc)) != NULL; k++) {
			ck_assert(m->has_id);
			ck_assert_uint_eq(m->id.ms, want);
			want++;
			hub_msg_unref(m);
		}
		ck_assert_int_eq(a.closes, 0);
		if (answered > MAXHIST / 2) { /* recycle the call log */
			memmove(fb.hist, fb.hist + answered,
				(size_t)(fb.nhist - answered) * sizeof(fb.hist[0]));
			fb.nhist -= answered;
			answered = 0;
		}
	}
	ck_assert_uint_eq(want, sim.next);
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 0);
	ck_assert_uint_le(peak, 16 * 1024 * 3 / 4 + 2 * 96);
	ck_assert_uint_eq(stats().slow_closed, 0);
	sim_publish("u1");
	m = hub_pop(hub, &a.hc);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(m->id.ms, sim.next - 1);
	hub_msg_unref(m);
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * The last page of a replay is still queued when a burst of live messages
 * (twice send_queue_max) arrives before the client has read any of it:
 * the connection does not go live behind a full page, so the burst is held
 * (and dropped past the cap, then read from the history) instead of
 * closing a client that reads at its own pace.
 */
START_TEST(replay_last_page_then_burst)
{
	struct tconn a;
	struct cursor since = {1, 0};
	uint64_t want = 2;
	int answered = 0;
	struct hub_msg *m;

	teardown();
	memset(&fb, 0, sizeof(fb));
	make_hub(16 * 1024, 0, 0);
	sim.next = 1;
	for (size_t bytes = 0; bytes < 5 * 1024; bytes += sim.len[sim.next - 1])
		sim_publish("u1"); /* one page of history (page: 8 KiB, 100) */
	ck_assert_uint_lt(sim.next, 100);
	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &since), 0);
	hub_on_subscribed(hub, "u1");
	sim_answer(answered++); /* the whole backlog, no more */
	for (size_t bytes = 0; bytes < 2 * 16 * 1024; bytes += sim.len[sim.next - 1])
		sim_publish("u1"); /* live, nothing read yet */
	ck_assert_int_eq(a.closes, 0);
	for (int round = 0; round < 10000 && (want < sim.next || answered < fb.nhist); round++) {
		if (answered < fb.nhist)
			sim_answer(answered++);
		while ((m = hub_pop(hub, &a.hc)) != NULL) {
			ck_assert_uint_eq(m->id.ms, want);
			want++;
			hub_msg_unref(m);
		}
		ck_assert_int_eq(a.closes, 0);
	}
	ck_assert_uint_eq(want, sim.next);
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 0);
	ck_assert_uint_eq(stats().slow_closed, 0);
	sim_publish("u1");
	m = hub_pop(hub, &a.hc);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(m->id.ms, sim.next - 1);
	hub_msg_unref(m);
	hub_detach(hub, &a.hc);
}
END_TEST

START_TEST(limits_again)
{
	struct tconn a, b, c, d;

	teardown();
	make_hub(1024, 3, 2);
	tconn_init(&a);
	tconn_init(&b);
	tconn_init(&c);
	tconn_init(&d);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", NULL), 0);
	ck_assert_int_eq(hub_attach(hub, &b.hc, "u1", NULL), 0);
	ck_assert_int_eq(hub_attach(hub, &c.hc, "u1", NULL), HERR_AGAIN); /* per user */
	ck_assert_int_eq(hub_attach(hub, &c.hc, "u2", NULL), 0);
	ck_assert_int_eq(hub_attach(hub, &d.hc, "u3", NULL), HERR_AGAIN); /* total */
	ck_assert_uint_eq(stats().conns, 3);
	ck_assert_uint_eq(stats().users, 2);
	ck_assert_int_eq(fb.subs, 2);
	hub_detach(hub, &d.hc); /* never attached: harmless */
	hub_detach(hub, &a.hc);
	ck_assert_int_eq(hub_attach(hub, &d.hc, "u3", NULL), 0);
	hub_detach(hub, &b.hc);
	hub_detach(hub, &c.hc);
	hub_detach(hub, &d.hc);
	ck_assert_uint_eq(stats().users, 0);
}
END_TEST

START_TEST(close_all)
{
	struct tconn t[3];

	attach_live(&t[0], "u1");
	attach_live(&t[1], "u1");
	attach_live(&t[2], "u2");
	pub("u1", 1);
	hub_close_all(hub);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(t[i].closes, 1);
		ck_assert_int_eq(t[i].reason, HUB_CLOSE_SHUTDOWN);
		ck_assert_ptr_null(hub_pop(hub, &t[i].hc));
	}
	ck_assert_uint_eq(stats().conns, 3); /* attached until detached */
	ck_assert_uint_eq(stats().slow_closed, 0);
	ck_assert_uint_eq(stats().queued_bytes, 0);
	hub_close_all(hub);
	ck_assert_int_eq(t[0].closes, 1);
	for (int i = 0; i < 3; i++)
		hub_detach(hub, &t[i].hc);
	ck_assert_int_eq(fb.unsubs, 2);
}
END_TEST

static void count_user(void *arg, const char *user)
{
	char *seen = arg;

	ck_assert_uint_eq(strlen(user), 2);
	seen[user[1] - '0']++;
}

START_TEST(foreach_user)
{
	struct tconn t[3];
	char seen[10] = {0};

	attach_live(&t[0], "u1");
	attach_live(&t[1], "u1");
	attach_live(&t[2], "u2");
	hub_foreach_user(hub, count_user, seen);
	ck_assert_int_eq(seen[1], 1);
	ck_assert_int_eq(seen[2], 1);
	for (int i = 0; i < 3; i++)
		hub_detach(hub, &t[i].hc);
	memset(seen, 0, sizeof(seen));
	hub_foreach_user(hub, count_user, seen);
	ck_assert_int_eq(seen[1] + seen[2], 0);
}
END_TEST

START_TEST(stats_numbers)
{
	struct tconn a, b;
	struct cursor since = {1, 0};
	uint64_t hist[] = {2, 3};
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 4);
	struct hub_stats st;

	attach_live(&a, "u1");
	tconn_init(&b);
	ck_assert_int_eq(hub_attach(hub, &b.hc, "u1", &since), 0);
	pub("u1", 4);				     /* a: queued; b: pend */
	pub("u1", 4);				     /* a: dup; b: pend */
	pub_null("u9");				     /* no such user */
	answer(fb.hist[0].req, "u1", hist, 2, 1, 0); /* b: R 2 3 4 (second 4 dup) */
	hub_get_stats(hub, &st);
	ck_assert_uint_eq(st.conns, 2);
	ck_assert_uint_eq(st.users, 1);
	ck_assert_uint_eq(st.messages_in, 3);
	ck_assert_uint_eq(st.delivered, 5);
	ck_assert_uint_eq(st.duplicates_dropped, 2);
	ck_assert_uint_eq(st.replays, 1);
	ck_assert_uint_eq(st.resets, 1);
	ck_assert_uint_eq(st.slow_closed, 0);
	ck_assert_uint_eq(st.queued_bytes, len + 3 * len);
	ck_assert_str_eq(drain(&b), "R 2-0 3-0 4-0");
	ck_assert_uint_eq(stats().queued_bytes, len);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
	ck_assert_uint_eq(stats().queued_bytes, 0);
}
END_TEST

START_TEST(many_conns)
{
	enum { NCONN = 10000, NUSER = 1000 };
	struct tconn *t = calloc(NCONN, sizeof(*t));
	char user[16];

	ck_assert_ptr_nonnull(t);
	for (int i = 0; i < NCONN; i++) {
		tconn_init(&t[i]);
		snprintf(user, sizeof(user), "user%d", i % NUSER);
		ck_assert_int_eq(hub_attach(hub, &t[i].hc, user, NULL), 0);
		if (i < NUSER)
			hub_on_subscribed(hub, user);
	}
	ck_assert_uint_eq(stats().users, NUSER);
	ck_assert_uint_eq(stats().conns, NCONN);
	ck_assert_int_eq(fb.subs, NUSER);
	for (int u = 0; u < NUSER; u++) {
		snprintf(user, sizeof(user), "user%d", u);
		pub(user, 1);
	}
	ck_assert_uint_eq(stats().delivered, NCONN);
	/* One in three first (every user keeps some), then the rest backwards. */
	for (int i = 0; i < NCONN; i++)
		if (i % 3 == 1)
			hub_detach(hub, &t[i].hc);
	ck_assert_uint_eq(stats().users, NUSER);
	ck_assert_int_eq(fb.unsubs, 0);
	for (int i = NCONN - 1; i >= 0; i--)
		if (i % 3 != 1)
			hub_detach(hub, &t[i].hc);
	ck_assert_uint_eq(stats().users, 0);
	ck_assert_uint_eq(stats().conns, 0);
	ck_assert_uint_eq(stats().queued_bytes, 0);
	ck_assert_int_eq(fb.unsubs, NUSER);
	free(t);
}
END_TEST

/* --- hub_attach_tail: a connection without a cursor starts from the tail --- */

/*
 * The tail is read once the subscription is confirmed; the connection is
 * told it first (0-0 on an empty history) and goes live: what is published
 * after the read arrives live, with no replay.
 */
START_TEST(tail_empty_history)
{
	struct tconn a;

	tconn_init(&a);
	ck_assert_int_eq(hub_attach_tail(hub, &a.hc, "u1"), 0);
	ck_assert_int_eq(fb.subs, 1);
	ck_assert_int_eq(fb.nhist, 0); /* not before the confirmation */
	ck_assert_int_eq(hub_has_more(hub, &a.hc), 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_int_eq(fb.hist[0].has_since, 0);
	ck_assert_uint_eq(fb.hist[0].limit, 1);
	pub("u1", 5); /* live during the read: held */
	ck_assert_str_eq(drain(&a), "");
	answer_tail(fb.hist[0].req, "u1", 0, 0);
	ck_assert_int_eq(fb.nhist, 1); /* no replay after it */
	ck_assert_str_eq(drain(&a), "C0-0 5-0");
	ck_assert_uint_eq(stats().replays, 0);
	pub("u1", 7);
	ck_assert_str_eq(drain(&a), "7-0");
	hub_detach(hub, &a.hc);
}
END_TEST

/*
 * The user is subscribed already: the read goes out at once.  Held messages up to the tail were
 * published before it and are dropped; the cursor message's JSON is what
 * herald-ws sends.
 */
START_TEST(tail_skips_up_to_tail)
{
	struct tconn a, b;
	struct hub_msg *m;

	attach_live(&a, "u1");
	tconn_init(&b);
	ck_assert_int_eq(hub_attach_tail(hub, &b.hc, "u1"), 0);
	ck_assert_int_eq(fb.nhist, 1);
	ck_assert_int_eq(fb.hist[0].has_since, 0);
	pub("u1", 9);
	pub("u1", 10);
	pub_null("u1");
	pub("u1", 11);
	answer_tail(fb.hist[0].req, "u1", 10, 0);
	ck_assert_int_eq(fb.nhist, 1);
	m = hub_pop(hub, &b.hc);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->kind, HUB_MSG_CURSOR);
	ck_assert_int_eq(m->has_id, 1);
	ck_assert_str_eq(m->data, "{\"type\":\"cursor\",\"cursor\":\"10-0\"}");
	ck_assert_uint_eq(m->len, strlen(m->data));
	hub_msg_unref(m);
	ck_assert_str_eq(drain(&b), "N 11-0");
	ck_assert_str_eq(drain(&a), "9-0 10-0 N 11-0");
	ck_assert_uint_eq(stats().replays, 0);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

/* Redis gone before the answer: read again once resubscribed; a read that
 * failed for good closes as a resume's would. */
START_TEST(tail_errors)
{
	struct tconn a, b;

	tconn_init(&a);
	ck_assert_int_eq(hub_attach_tail(hub, &a.hc, "u1"), 0);
	ck_assert_int_eq(fb.nhist, 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 1);
	hub_on_subscribed(hub, "u1"); /* again, the read in flight: no other */
	ck_assert_int_eq(fb.nhist, 1);
	answer_tail(fb.hist[0].req, "u1", 0, HERR_REDIS);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_str_eq(drain(&a), "");
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 2);
	ck_assert_int_eq(fb.hist[1].has_since, 0);

	/* The link goes while the second read is in flight: its answer is
	 * dropped, and the tail is read again (not a replay from 0-0). */
	hub_on_link_lost(hub);
	answer_tail(fb.hist[1].req, "u1", 3, 0);
	ck_assert_str_eq(drain(&a), "");
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 3);
	ck_assert_int_eq(fb.hist[2].has_since, 0);
	answer_tail(fb.hist[2].req, "u1", 7, 0);
	ck_assert_str_eq(drain(&a), "C7-0");
	ck_assert_int_eq(fb.nhist, 3); /* live, no replay */

	tconn_init(&b);
	ck_assert_int_eq(hub_attach_tail(hub, &b.hc, "u1"), 0);
	ck_assert_int_eq(fb.nhist, 4);
	answer_tail(fb.hist[3].req, "u1", 0, HERR_AGAIN);
	ck_assert_int_eq(b.closes, 1);
	ck_assert_int_eq(b.reason, HUB_CLOSE_ERROR);
	ck_assert_str_eq(drain(&b), "");
	ck_assert_int_eq(a.closes, 0);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
	ck_assert_uint_eq(stats().queued_bytes, 0);
}
END_TEST

/* Once started, a lost link catches it up from the last id, or the tail. */
START_TEST(tail_link_lost_catch_up)
{
	struct tconn a, b;
	uint64_t h1[] = {21, 22};

	tconn_init(&a);
	tconn_init(&b);
	ck_assert_int_eq(hub_attach_tail(hub, &a.hc, "u1"), 0);
	ck_assert_int_eq(hub_attach_tail(hub, &b.hc, "u1"), 0);
	ck_assert_int_eq(fb.nhist, 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 2);
	/* the user's list is newest first: b, then a */
	answer_tail(fb.hist[0].req, "u1", 20, 0); /* b */
	answer_tail(fb.hist[1].req, "u1", 0, 0);  /* a */
	ck_assert_int_eq(fb.nhist, 2);
	ck_assert_str_eq(drain(&a), "C0-0");
	ck_assert_str_eq(drain(&b), "C20-0");
	hub_on_link_lost(hub);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 4);
	ck_assert_int_eq(fb.hist[2].has_since, 1);
	ck_assert_int_eq(fb.hist[3].has_since, 1);
	ck_assert_uint_eq(fb.hist[2].since.ms, 20);
	ck_assert_uint_eq(fb.hist[3].since.ms, 0);
	ck_assert_uint_eq(fb.hist[3].since.seq, 0);
	answer(fb.hist[2].req, "u1", h1, 2, 0, 0);
	/* a's read after 0-0 finds the history created since: not cut */
	answer(fb.hist[3].req, "u1", h1, 2, 0, 0);
	ck_assert_str_eq(drain(&a), "21-0 22-0");
	ck_assert_str_eq(drain(&b), "21-0 22-0");
	ck_assert_uint_eq(stats().resets, 0);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

/*
 * The cursor 0-0 on a history that still does not exist: the script says
 * truncated (no stream), but nothing after 0-0 was ever there: no reset.
 * With entries (a stream that was trimmed), the reset stands.
 */
START_TEST(zero_cursor_not_truncated)
{
	struct tconn a, b;
	struct cursor zero = {0, 0};
	uint64_t hist[] = {50};

	tconn_init(&a);
	ck_assert_int_eq(hub_attach(hub, &a.hc, "u1", &zero), 0);
	hub_on_subscribed(hub, "u1");
	answer(fb.hist[0].req, "u1", NULL, 0, 1, 0);
	ck_assert_str_eq(drain(&a), "");
	ck_assert_uint_eq(stats().resets, 0);
	pub("u1", 3);
	ck_assert_str_eq(drain(&a), "3-0");

	tconn_init(&b);
	ck_assert_int_eq(hub_attach(hub, &b.hc, "u1", &zero), 0);
	answer(fb.hist[1].req, "u1", hist, 1, 1, 0);
	ck_assert_str_eq(drain(&b), "R 50-0");
	ck_assert_uint_eq(stats().resets, 1);

	ck_assert_int_eq(history_cut(NULL, 1, 0), 0);
	ck_assert_int_eq(history_cut(&zero, 0, 3), 0);
	ck_assert_int_eq(history_cut(&zero, 1, 0), 0);
	ck_assert_int_eq(history_cut(&zero, 1, 1), 1);
	zero.seq = 1;
	ck_assert_int_eq(history_cut(&zero, 1, 0), 1);
	hub_detach(hub, &a.hc);
	hub_detach(hub, &b.hc);
}
END_TEST

/*
 * A full queue that still holds the cursor is not caught up (that would
 * drop the cursor): it closes, and the client connects again without one.
 */
START_TEST(tail_cursor_not_dropped)
{
	struct tconn a;
	char buf[256];
	size_t len = env_id(buf, sizeof(buf), "u1", 100);

	teardown();
	make_hub(len * 2, 0, 0);
	tconn_init(&a);
	ck_assert_int_eq(hub_attach_tail(hub, &a.hc, "u1"), 0);
	hub_on_subscribed(hub, "u1");
	answer_tail(fb.hist[0].req, "u1", 99, 0); /* live at once */
	pub("u1", 100);
	ck_assert_int_eq(a.closes, 0);
	pub("u1", 101); /* over the cap with the cursor queued */
	ck_assert_int_eq(a.closes, 1);
	ck_assert_int_eq(a.reason, HUB_CLOSE_SLOW);
	ck_assert_uint_eq(stats().slow_caught_up, 0);
	hub_detach(hub, &a.hc);

	/* Once the cursor is taken, the same burst is caught up. */
	tconn_init(&a);
	ck_assert_int_eq(hub_attach_tail(hub, &a.hc, "u1"), 0);
	hub_on_subscribed(hub, "u1");
	ck_assert_int_eq(fb.nhist, 2);
	answer_tail(fb.hist[1].req, "u1", 99, 0);
	ck_assert_str_eq(drain(&a), "C99-0");
	pub("u1", 100);
	pub("u1", 101);
	pub("u1", 102);
	ck_assert_int_eq(a.closes, 0);
	ck_assert_uint_eq(stats().slow_caught_up, 1);
	ck_assert_int_eq(fb.nhist, 3);
	ck_assert_uint_eq(fb.hist[2].since.ms, 99);
	hub_detach(hub, &a.hc);
	answer(fb.hist[2].req, "u1", NULL, 0, 0, 0); /* dropped */
}
END_TEST

Suite *hub_suite(void)
{
	Suite *s = suite_create("hub");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, msg_refcount);
	tcase_add_test(tc, subscribe_refcounted);
	tcase_add_test(tc, users_isolated);
	tcase_add_test(tc, live_in_order);
	tcase_add_test(tc, wait_sub_then_live);
	tcase_add_test(tc, duplicates_dropped);
	tcase_add_test(tc, null_ids_delivered);
	tcase_add_test(tc, resume_union);
	tcase_add_test(tc, resume_skips_up_to_cursor);
	tcase_add_test(tc, resume_truncated_reset);
	tcase_add_test(tc, history_error_retries);
	tcase_add_test(tc, history_give_up_closes);
	tcase_add_test(tc, history_closed_waits);
	tcase_add_test(tc, detach_during_replay);
	tcase_add_test(tc, link_lost_catch_up);
	tcase_add_test(tc, link_lost_keeps_waiting_conns);
	tcase_add_test(tc, slow_consumer_closed);
	tcase_add_test(tc, slow_consumer_caught_up);
	tcase_add_test(tc, slow_during_replay);
	tcase_add_test(tc, slow_while_waiting_fresh);
	tcase_add_test(tc, link_lost_with_full_queue);
	tcase_add_test(tc, replay_not_counted);
	tcase_add_test(tc, replay_paged);
	tcase_add_test(tc, replay_link_lost_paged);
	tcase_add_test(tc, replay_stuck_closes);
	tcase_add_test(tc, replay_10000_while_live);
	tcase_add_test(tc, replay_last_page_then_burst);
	tcase_add_test(tc, limits_again);
	tcase_add_test(tc, close_all);
	tcase_add_test(tc, foreach_user);
	tcase_add_test(tc, stats_numbers);
	tcase_add_test(tc, many_conns);
	tcase_add_test(tc, tail_empty_history);
	tcase_add_test(tc, tail_skips_up_to_tail);
	tcase_add_test(tc, tail_errors);
	tcase_add_test(tc, tail_link_lost_catch_up);
	tcase_add_test(tc, zero_cursor_not_truncated);
	tcase_add_test(tc, tail_cursor_not_dropped);
	suite_add_tcase(s, tc);
	return s;
}
