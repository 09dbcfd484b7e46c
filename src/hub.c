#include "config.h"

#include "hub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "err.h"
#include "clock.h"
#include "umap.h"

enum conn_state {
	ST_WAIT_SUB = 0, /* the user's subscription is not confirmed yet */
	ST_REPLAY = 1,	 /* history read in flight; live messages go to pend */
	ST_LIVE = 2,
	ST_CLOSING = 3, /* ops->close called; waiting for hub_detach */
	ST_PAGED = 4,	/* a replay page is queued; the next is read when it has
			 * drained (hub_pop); live messages go to pend */
	ST_TAIL = 5,	/* hub_attach_tail: the read of the history's tail in
			 * flight; live messages go to pend */
};

struct hub_user {
	struct umap_node node; /* in hub.users, keyed by user */
	struct hub_conn *conns;
	unsigned nconns;
	int subscribed; /* confirmed by hub_on_subscribed since the last link loss */
	char user[AUTH_USER_MAX + 1];
};

struct hub {
	pthread_mutex_t mu;
	struct hub_limits lim;
	long long (*now_ms)(void);
	const struct hub_backend_ops *be;
	void *be_ud;
	struct umap users; /* of struct hub_user */
	struct hub_stats st;
};

#define USER(n) container_of(n, struct hub_user, node)

/* --- messages ------------------------------------------------------------ */

static struct hub_msg *msg_alloc(int kind, const char *data, size_t len)
{
	struct hub_msg *m = malloc(sizeof(*m) + len + 1);

	if (m == NULL)
		return NULL;
	atomic_init(&m->refs, 1);
	m->kind = kind;
	m->has_id = 0;
	m->id.ms = 0;
	m->id.seq = 0;
	m->len = len;
	if (len > 0)
		memcpy(m->data, data, len);
	m->data[len] = '\0';
	return m;
}

struct hub_msg *hub_msg_new(int kind, const char *data, size_t len)
{
	struct hub_msg *m = msg_alloc(kind, data, len);

	if (m != NULL && kind == HUB_MSG_NOTIFY)
		m->has_id = envelope_id(m->data, len, &m->id) == 0;
	return m;
}

struct hub_msg *hub_msg_ref(struct hub_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void hub_msg_unref(struct hub_msg *m)
{
	if (m == NULL)
		return;
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

/* --- users --------------------------------------------------------------- */

static struct hub_user *user_find(const struct hub *h, const char *user)
{
	struct umap_node *n = umap_find(&h->users, user);

	return n != NULL ? USER(n) : NULL;
}

static struct hub_user *user_add(struct hub *h, const char *user)
{
	struct hub_user *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	snprintf(u->user, sizeof u->user, "%s", user); /* length checked by hub_attach */
	umap_add(&h->users, &u->node, u->user);
	h->st.users++;
	return u;
}

static void user_remove(struct hub *h, struct hub_user *u)
{
	umap_remove(&h->users, &u->node);
	h->st.users--;
	free(u);
}

/* --- per-connection queues ----------------------------------------------- */

static void queue_drop(struct hub *h, struct hub_conn *c)
{
	for (size_t i = 0; i < c->q_len; i++)
		hub_msg_unref(c->q[(c->q_head + i) % c->q_cap].m);
	free(c->q);
	h->st.queued_bytes -= c->q_bytes;
	c->q = NULL;
	c->q_head = c->q_len = c->q_cap = 0;
	c->q_bytes = 0;
	c->q_replay_bytes = 0;
	c->q_noid = 0;
	c->q_cursor = 0;
}

static void pend_drop(struct hub_conn *c)
{
	for (size_t i = 0; i < c->pend_len; i++)
		hub_msg_unref(c->pend[i]);
	free(c->pend);
	c->pend = NULL;
	c->pend_len = c->pend_cap = 0;
	c->pend_bytes = 0;
}

/* The answer of a read in flight, if any, will be dropped. */
static void req_forget(struct hub_conn *c)
{
	if (c->req != NULL) {
		c->req->conn = NULL;
		c->req = NULL;
	}
}

static void conn_close(struct hub *h, struct hub_conn *c, int reason)
{
	if (c->state == ST_CLOSING)
		return;
	queue_drop(h, c);
	pend_drop(c);
	req_forget(c);
	c->state = ST_CLOSING;
	if (reason == HUB_CLOSE_SLOW)
		h->st.slow_closed++;
	else if (reason == HUB_CLOSE_DISCONNECT)
		h->st.disconnected++;
	else if (reason == HUB_CLOSE_REVOKED)
		h->st.revoked++;
	c->ops->close(c, reason);
}

static int ring_grow(struct hub_conn *c)
{
	size_t cap = c->q_cap != 0 ? c->q_cap * 2 : 8;
	struct hub_qent *q = malloc(cap * sizeof(*q));

	if (q == NULL)
		return HERR_NOMEM;
	for (size_t i = 0; i < c->q_len; i++)
		q[i] = c->q[(c->q_head + i) % c->q_cap];
	free(c->q);
	c->q = q;
	c->q_cap = cap;
	c->q_head = 0;
	return 0;
}

static struct cursor replay_cursor(const struct hub_conn *c);
static void page_next(struct hub *h, struct hub_conn *c);

/*
 * A live connection whose queue would pass send_queue_max is behind, not
 * stuck (a reader that stopped is the transport's write timeout's to
 * drop): a client still draining a replay through the proxy's buffers, a
 * burst.  When every message it was to get is in the history (each has
 * its id) and there is a history to read, the queue is dropped and the
 * connection caught up from after the last message its transport took,
 * page by page as a resume, while live messages are held: nothing lost,
 * no reconnect, memory bounded by a page.  Returns 0, or -1: it must close.
 */
static int queue_catch_up(struct hub *h, struct hub_conn *c, const struct hub_msg *m)
{
	/* A cursor message still queued would be dropped with the queue: the
	 * client would have no cursor. */
	if (c->state != ST_LIVE || c->q_noid > 0 || c->q_cursor ||
	    (m->kind == HUB_MSG_NOTIFY && !m->has_id) || h->be == NULL || h->be->history == NULL ||
	    (!c->has_sent && c->live_ms <= 0))
		return -1;
	queue_drop(h, c);
	c->last = c->sent;
	c->has_last = c->has_sent;
	c->replay = 1;
	c->page_next = replay_cursor(c);
	c->state = ST_PAGED;
	h->st.slow_caught_up++;
	page_next(h, c);
	return 0;
}

/*
 * Past the byte cap the connection catches up from the history, or, when
 * it cannot (or out of memory), is closed: the client is better off
 * resuming.  Paced messages (a replay's) do not count: the replay paces
 * them itself.
 */
static void queue_push(struct hub *h, struct hub_conn *c, struct hub_msg *m, int paced)
{
	size_t max = h->lim.send_queue_max;

	if (c->state == ST_CLOSING)
		return;
	if (max != 0 && !paced && c->q_bytes - c->q_replay_bytes + m->len > max) {
		if (queue_catch_up(h, c, m) != 0)
			conn_close(h, c, HUB_CLOSE_SLOW);
		return;
	}
	if (c->q_len == c->q_cap && ring_grow(c) != 0) {
		conn_close(h, c, HUB_CLOSE_SLOW);
		return;
	}
	c->q[(c->q_head + c->q_len) % c->q_cap] = (struct hub_qent){hub_msg_ref(m), paced};
	c->q_len++;
	c->q_bytes += m->len;
	if (m->kind == HUB_MSG_NOTIFY && !m->has_id)
		c->q_noid++;
	if (m->kind == HUB_MSG_CURSOR)
		c->q_cursor = 1;
	if (paced)
		c->q_replay_bytes += m->len;
	h->st.queued_bytes += m->len;
	h->st.delivered++;
	if (c->q_len == 1)
		c->ops->wake(c);
}

/* Queue m unless its id is not after the last one c got. */
static void queue_notify(struct hub *h, struct hub_conn *c, struct hub_msg *m, int paced)
{
	if (m->has_id) {
		if (c->has_last && cursor_cmp(&m->id, &c->last) <= 0) {
			h->st.duplicates_dropped++;
			return;
		}
		c->last = m->id;
		c->has_last = 1;
	}
	queue_push(h, c, m, paced);
}

/*
 * Hold m until c goes live.  Past the cap (or out of memory) a replaying
 * connection drops what it holds and reads the history on (pend_gap); one
 * that has no history to read from closes.  The cap counts the live
 * messages still queued too (a connection that lost its link while
 * live): flushed on top of them, the held ones would pass send_queue_max
 * and close a connection the history could have caught up.
 */
static void pend_push(struct hub *h, struct hub_conn *c, struct hub_msg *m)
{
	size_t max = h->lim.send_queue_max;

	if (max != 0 && c->q_bytes - c->q_replay_bytes + c->pend_bytes + m->len > max) {
		if (!c->replay) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			return;
		}
		h->st.held_dropped += c->pend_len;
		pend_drop(c);
		c->pend_gap = 1;
	}
	if (c->pend_len == c->pend_cap) {
		size_t cap = c->pend_cap != 0 ? c->pend_cap * 2 : 8;
		struct hub_msg **p = realloc(c->pend, cap * sizeof(*p));

		if (p == NULL) {
			if (!c->replay) {
				conn_close(h, c, HUB_CLOSE_SLOW);
				return;
			}
			h->st.held_dropped += c->pend_len + 1;
			pend_drop(c);
			c->pend_gap = 1;
			return;
		}
		c->pend = p;
		c->pend_cap = cap;
	}
	c->pend[c->pend_len++] = hub_msg_ref(m);
	c->pend_bytes += m->len;
}

/*
 * Deliver what arrived while c was not live; c may close on the way.  The
 * held messages end the replay, paced with it: they were bounded while
 * held, and counted now on top of what is still queued, they would close a
 * client that is only as far behind as its backlog.
 */
static void pend_flush(struct hub *h, struct hub_conn *c)
{
	struct hub_msg **p = c->pend;
	size_t n = c->pend_len;

	c->pend = NULL;
	c->pend_len = c->pend_cap = 0;
	c->pend_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if (c->state != ST_CLOSING)
			queue_notify(h, c, p[i], c->replay);
		hub_msg_unref(p[i]);
	}
	free(p);
}

/* --- state changes ------------------------------------------------------- */

/*
 * Cursors are exclusive: a connection that never got an id catches up from
 * the millisecond it went live, inclusive.
 */
static struct cursor replay_cursor(const struct hub_conn *c)
{
	struct cursor cur = {0, 0};

	if (c->has_last)
		return c->last;
	if (c->live_ms > 0) {
		cur.ms = (uint64_t)c->live_ms - 1;
		cur.seq = UINT64_MAX;
	}
	return cur;
}

static size_t page_bytes(const struct hub *h)
{
	if (h->lim.page_bytes != 0)
		return h->lim.page_bytes;
	return h->lim.send_queue_max != 0 ? h->lim.send_queue_max / 2 : 128 * 1024;
}

/* Ask for the page after since; req is c's, allocated by the caller. */
static void page_read(struct hub *h, struct hub_conn *c, struct hub_req *req,
		      const struct cursor *since)
{
	req->conn = c;
	c->req = req;
	c->state = ST_REPLAY;
	c->pend_gap = 0;
	c->page_next = *since;
	h->st.replay_pages++;
	if (h->be != NULL && h->be->history != NULL)
		h->be->history(h->be_ud, req, c->user->user, since, h->lim.page_entries,
			       page_bytes(h));
}

/* The first page of a resume or catch-up. */
static void replay_start(struct hub *h, struct hub_conn *c, struct hub_req *req)
{
	struct cursor since = replay_cursor(c);

	h->st.replays++;
	page_read(h, c, req, &since);
}

/*
 * A paged connection reads on once all but half a page has drained, so
 * the next page is there before the transport runs dry.
 */
static void page_next(struct hub *h, struct hub_conn *c)
{
	struct hub_req *req;

	if (c->state != ST_PAGED || c->q_replay_bytes > page_bytes(h) / 2)
		return;
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		conn_close(h, c, HUB_CLOSE_ERROR);
		return;
	}
	page_read(h, c, req, &c->page_next);
}

/* First live moment of a connection attached without a cursor. */
static void go_live_fresh(struct hub *h, struct hub_conn *c)
{
	c->state = ST_LIVE;
	c->live_ms = h->now_ms();
	pend_flush(h, c);
}

/*
 * hub_attach_tail: ask where the history ends.  Only once the user's
 * subscription is confirmed: whatever is published after the read then
 * comes live, and no replay after the answer is needed.  req is c's.
 */
static void tail_read(struct hub *h, struct hub_conn *c, struct hub_req *req)
{
	req->conn = c;
	c->req = req;
	c->state = ST_TAIL;
	if (h->be != NULL && h->be->history != NULL)
		h->be->history(h->be_ud, req, c->user->user, NULL, 1, 0);
}

/*
 * The tail T is known: queue it as the connection's cursor, first, and
 * make it the last id (held messages up to it were published before the
 * read and are dropped), then go live.
 */
static void tail_done(struct hub *h, struct hub_conn *c, const struct hub_page *p)
{
	struct cursor t = p->end;
	char id[CURSOR_STR_MAX], buf[CURSOR_STR_MAX + 32];
	struct hub_msg *m;
	int n;

	for (size_t i = 0; i < p->n; i++)
		if (cursor_cmp(&p->e[i].id, &t) > 0)
			t = p->e[i].id;
	n = cursor_format(&t, id, sizeof id);
	if (n > 0)
		n = snprintf(buf, sizeof buf, "{\"type\":\"cursor\",\"cursor\":\"%s\"}", id);
	m = n > 0 ? msg_alloc(HUB_MSG_CURSOR, buf, (size_t)n) : NULL;
	if (m == NULL) {
		conn_close(h, c, HUB_CLOSE_SLOW);
		return;
	}
	m->has_id = 1;
	m->id = t;
	c->tail = 0;
	c->last = t;
	c->has_last = 1;
	queue_push(h, c, m, 0);
	hub_msg_unref(m);
	if (c->state != ST_CLOSING)
		go_live_fresh(h, c);
}

/* --- public API ---------------------------------------------------------- */

void hub_limits_conf(struct hub_limits *lim, const struct conf *c)
{
	memset(lim, 0, sizeof *lim);
	lim->send_queue_max = (size_t)c->send_queue_max;
	lim->max_connections = (unsigned)c->max_connections;
	lim->max_per_user = (unsigned)c->max_connections_per_user;
	lim->page_entries = (unsigned)c->replay_page;
}

int hub_new(struct hub **out, const struct hub_limits *lim, long long (*now_ms)(void))
{
	struct hub *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return HERR_NOMEM;
	if (umap_init(&h->users, 0) != 0) {
		free(h);
		return HERR_NOMEM;
	}
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		umap_free(&h->users);
		free(h);
		return HERR_NOMEM;
	}
	h->lim = *lim;
	h->now_ms = now_ms != NULL ? now_ms : clock_wall_ms;
	*out = h;
	return 0;
}

void hub_free(struct hub *h)
{
	struct umap_node *n, *next;

	if (h == NULL)
		return;
	for (n = umap_first(&h->users); n != NULL; n = next) {
		next = umap_next(&h->users, n);
		free(USER(n));
	}
	umap_free(&h->users);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void hub_set_backend(struct hub *h, const struct hub_backend_ops *ops, void *ud)
{
	pthread_mutex_lock(&h->mu);
	h->be = ops;
	h->be_ud = ud;
	pthread_mutex_unlock(&h->mu);
}

static int attach(struct hub *h, struct hub_conn *c, const char *user, const struct cursor *since,
		  int tail)
{
	const struct hub_conn_ops *ops = c->ops;
	const char *jti = c->jti;
	long long iat = c->iat;
	struct hub_req *req = NULL;
	struct hub_user *u;
	size_t ulen = strlen(user);
	int ret = 0;

	if (ulen == 0 || ulen > AUTH_USER_MAX)
		return HERR_INVAL;
	pthread_mutex_lock(&h->mu);
	u = user_find(h, user);
	if ((h->lim.max_connections != 0 && h->st.conns >= h->lim.max_connections) ||
	    (u != NULL && h->lim.max_per_user != 0 && u->nconns >= h->lim.max_per_user)) {
		ret = HERR_AGAIN;
		goto out;
	}
	if (u != NULL && u->subscribed && (since != NULL || tail)) {
		req = calloc(1, sizeof(*req));
		if (req == NULL) {
			ret = HERR_NOMEM;
			goto out;
		}
	}
	if (u == NULL) {
		u = user_add(h, user);
		if (u == NULL) {
			ret = HERR_NOMEM;
			goto out;
		}
		if (h->be != NULL && h->be->subscribe != NULL)
			h->be->subscribe(h->be_ud, u->user);
	}

	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->iat = iat;
	c->jti = jti;
	c->user = u;
	c->next = u->conns;
	if (u->conns != NULL)
		u->conns->prev = c;
	u->conns = c;
	u->nconns++;
	h->st.conns++;
	c->state = ST_WAIT_SUB;
	if (since != NULL) {
		/* Nothing up to the cursor is wanted: it acts as the last id. */
		c->last = *since;
		c->has_last = 1;
		c->sent = *since;
		c->has_sent = 1;
		c->replay = 1;
	}
	c->tail = since == NULL && tail;
	if (c->tail && req != NULL)
		tail_read(h, c, req);
	else if (req != NULL)
		replay_start(h, c, req);
	else if (u->subscribed)
		go_live_fresh(h, c);
out:
	if (ret != 0)
		free(req);
	pthread_mutex_unlock(&h->mu);
	return ret;
}

int hub_attach(struct hub *h, struct hub_conn *c, const char *user, const struct cursor *since)
{
	return attach(h, c, user, since, 0);
}

int hub_attach_tail(struct hub *h, struct hub_conn *c, const char *user)
{
	return attach(h, c, user, NULL, 1);
}

void hub_detach(struct hub *h, struct hub_conn *c)
{
	struct hub_user *u;

	pthread_mutex_lock(&h->mu);
	u = c->user;
	if (u == NULL)
		goto out;
	queue_drop(h, c);
	pend_drop(c);
	req_forget(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		u->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->user = NULL;
	c->state = ST_CLOSING;
	h->st.conns--;
	if (--u->nconns == 0) {
		if (h->be != NULL && h->be->unsubscribe != NULL)
			h->be->unsubscribe(h->be_ud, u->user);
		user_remove(h, u);
	}
out:
	pthread_mutex_unlock(&h->mu);
}

struct hub_msg *hub_pop(struct hub *h, struct hub_conn *c)
{
	struct hub_msg *m = NULL;

	pthread_mutex_lock(&h->mu);
	if (c->q_len > 0) {
		struct hub_qent e = c->q[c->q_head];

		m = e.m;
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
		c->q_bytes -= m->len;
		if (e.paced)
			c->q_replay_bytes -= m->len;
		if (m->kind == HUB_MSG_CURSOR) {
			c->q_cursor = 0;
			/* Most connections stay idle after their cursor: do not
			 * keep a ring for them (8 entries, 0.14 KiB each). */
			if (c->q_len == 0) {
				free(c->q);
				c->q = NULL;
				c->q_head = c->q_cap = 0;
			}
		}
		if (m->kind == HUB_MSG_NOTIFY && !m->has_id)
			c->q_noid--;
		else if (m->has_id) {
			c->sent = m->id;
			c->has_sent = 1;
		}
		h->st.queued_bytes -= m->len;
		page_next(h, c);
	}
	pthread_mutex_unlock(&h->mu);
	return m;
}

int hub_has_more(struct hub *h, struct hub_conn *c)
{
	int more;

	pthread_mutex_lock(&h->mu);
	more = c->q_len > 0 || c->state == ST_REPLAY || c->state == ST_PAGED || c->state == ST_TAIL;
	pthread_mutex_unlock(&h->mu);
	return more;
}

void hub_close_all(struct hub *h)
{
	pthread_mutex_lock(&h->mu);
	for (struct umap_node *n = umap_first(&h->users); n != NULL; n = umap_next(&h->users, n))
		for (struct hub_conn *c = USER(n)->conns; c != NULL; c = c->next)
			conn_close(h, c, HUB_CLOSE_SHUTDOWN);
	pthread_mutex_unlock(&h->mu);
}

unsigned hub_close_user(struct hub *h, const char *user,
			int (*match)(void *arg, long long iat, const char *jti), void *arg, int reason)
{
	struct hub_user *u;
	unsigned n = 0;

	pthread_mutex_lock(&h->mu);
	u = user_find(h, user);
	for (struct hub_conn *c = u != NULL ? u->conns : NULL; c != NULL; c = c->next) {
		if (c->state == ST_CLOSING || (match != NULL && !match(arg, c->iat, c->jti)))
			continue;
		conn_close(h, c, reason);
		n++;
	}
	pthread_mutex_unlock(&h->mu);
	return n;
}

void hub_on_subscribed(struct hub *h, const char *user)
{
	struct hub_user *u;

	pthread_mutex_lock(&h->mu);
	u = user_find(h, user);
	if (u == NULL)
		goto out;
	u->subscribed = 1;
	for (struct hub_conn *c = u->conns; c != NULL; c = c->next) {
		struct hub_req *req;

		if (c->state != ST_WAIT_SUB)
			continue;
		if (!c->replay && !c->tail) {
			go_live_fresh(h, c);
			continue;
		}
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			conn_close(h, c, HUB_CLOSE_SLOW);
		else if (c->tail)
			tail_read(h, c, req);
		else
			replay_start(h, c, req);
	}
out:
	pthread_mutex_unlock(&h->mu);
}

void hub_on_message(struct hub *h, const char *user, const char *env, size_t len)
{
	struct hub_user *u;
	struct hub_msg *m;

	pthread_mutex_lock(&h->mu);
	h->st.messages_in++;
	u = user_find(h, user);
	if (u == NULL)
		goto out;
	m = hub_msg_new(HUB_MSG_NOTIFY, env, len);
	for (struct hub_conn *c = u->conns; c != NULL; c = c->next) {
		/* Losing a message silently would break at-least-once. */
		if (m == NULL)
			conn_close(h, c, HUB_CLOSE_SLOW);
		else if (c->state == ST_LIVE)
			queue_notify(h, c, m, 0);
		else if (c->state != ST_CLOSING)
			pend_push(h, c, m);
	}
	hub_msg_unref(m);
out:
	pthread_mutex_unlock(&h->mu);
}

void hub_on_link_lost(struct hub *h)
{
	pthread_mutex_lock(&h->mu);
	for (struct umap_node *n = umap_first(&h->users); n != NULL; n = umap_next(&h->users, n)) {
		struct hub_user *u = USER(n);

		u->subscribed = 0;
		for (struct hub_conn *c = u->conns; c != NULL; c = c->next) {
			if (c->state == ST_TAIL) {
				/* Its read is lost with the link and it has no cursor
				 * yet: it reads the tail again once resubscribed. */
				req_forget(c);
				c->state = ST_WAIT_SUB;
				continue;
			}
			if (c->state != ST_LIVE && c->state != ST_REPLAY && c->state != ST_PAGED)
				continue;
			req_forget(c);
			c->state = ST_WAIT_SUB;
			c->replay = 1;
		}
	}
	pthread_mutex_unlock(&h->mu);
}

/* Queue page p of c's replay; then read on, or go live. */
static void page_done(struct hub *h, struct hub_conn *c, const struct hub_page *p)
{
	/* c->page_next is still the cursor this page was read after. */
	if (history_cut(&c->page_next, p->truncated, p->n)) {
		struct hub_msg *m = msg_alloc(HUB_MSG_RESET, "", 0);

		if (m == NULL) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			return;
		}
		queue_push(h, c, m, 1);
		hub_msg_unref(m);
		h->st.resets++;
	}
	for (size_t i = 0; i < p->n && c->state != ST_CLOSING; i++) {
		const struct history_entry *e = &p->e[i];
		struct hub_msg *m;

		if (c->has_last && cursor_cmp(&e->id, &c->last) <= 0) {
			h->st.duplicates_dropped++;
			continue;
		}
		m = msg_alloc(HUB_MSG_NOTIFY, e->env, e->len);
		if (m == NULL) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			return;
		}
		/* The stream id is authoritative. */
		m->has_id = 1;
		m->id = e->id;
		queue_notify(h, c, m, 1);
		hub_msg_unref(m);
		h->st.replayed++;
	}
	if (c->state == ST_CLOSING)
		return;
	if (p->more || c->pend_gap || c->q_replay_bytes > page_bytes(h) / 2) {
		/* Read on after the page's end (past entries it skipped) or, when
		 * held messages were dropped meanwhile, read once more: the read
		 * that ends a replay must have been sent after the last drop.
		 * Nor does a connection go live with more than half a page still
		 * queued: live messages published while it drains would pile up
		 * behind the page and close a client that keeps up.  It reads
		 * once more when the page has drained (what came meanwhile). */
		if (p->more) {
			if (cursor_cmp(&p->end, &c->page_next) <= 0) {
				/* A backend that does not move on would loop. */
				conn_close(h, c, HUB_CLOSE_ERROR);
				return;
			}
			c->page_next = p->end;
		}
		if (c->has_last && cursor_cmp(&c->last, &c->page_next) > 0)
			c->page_next = c->last;
		c->state = ST_PAGED;
		page_next(h, c);
		return;
	}
	pend_flush(h, c);
	if (c->state != ST_CLOSING) {
		c->state = ST_LIVE;
		c->replay = 0;
	}
}

void hub_history_done(struct hub *h, struct hub_req *req, const struct hub_page *p, int err)
{
	struct hub_conn *c;

	pthread_mutex_lock(&h->mu);
	c = req->conn;
	free(req);
	if (c != NULL) {
		c->req = NULL;
		if (err == HERR_REDIS || err == HERR_CLOSED)
			/* Keep the cursor and pend: the next confirmation retries. */
			c->state = ST_WAIT_SUB;
		else if (err != 0 || p == NULL)
			/* Waiting would strand c while the link stays up. */
			conn_close(h, c, HUB_CLOSE_ERROR);
		else if (c->state == ST_TAIL)
			tail_done(h, c, p);
		else
			page_done(h, c, p);
	}
	pthread_mutex_unlock(&h->mu);
}

void hub_foreach_user(struct hub *h, void (*fn)(void *arg, const char *user), void *arg)
{
	pthread_mutex_lock(&h->mu);
	for (struct umap_node *n = umap_first(&h->users); n != NULL; n = umap_next(&h->users, n))
		fn(arg, USER(n)->user);
	pthread_mutex_unlock(&h->mu);
}

void hub_get_stats(struct hub *h, struct hub_stats *st)
{
	pthread_mutex_lock(&h->mu);
	*st = h->st;
	pthread_mutex_unlock(&h->mu);
}
