#include "config.h"

#include "hub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "err.h"
#include "clock.h"

enum conn_state {
	ST_WAIT_SUB = 0, /* the user's subscription is not confirmed yet */
	ST_REPLAY = 1,	 /* history read in flight; live messages go to pend */
	ST_LIVE = 2,
	ST_CLOSING = 3, /* ops->close called; waiting for hub_detach */
};

struct hub_user {
	struct hub_user *next; /* hash chain */
	uint32_t hash;
	struct hub_conn *conns;
	unsigned nconns;
	int subscribed; /* confirmed by hub_on_subscribed since the last link loss */
	char user[AUTH_USER_MAX + 1];
};

/*
 * One history() call.  The backend owns the pointer until hub_history_done,
 * which frees it; conn goes NULL when nobody waits for the answer any more.
 */
struct hub_req {
	struct hub_conn *conn;
};

struct hub {
	pthread_mutex_t mu;
	struct hub_limits lim;
	long long (*now_ms)(void);
	const struct hub_backend_ops *be;
	void *be_ud;
	struct hub_user **tab; /* chained hash of users, tab_cap a power of two */
	size_t tab_cap;
	struct hub_stats st;
};

#define HUB_TAB_INIT 64

static uint32_t user_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

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
	uint32_t hash = user_hash(user);
	struct hub_user *u = h->tab[hash & (h->tab_cap - 1)];

	for (; u != NULL; u = u->next)
		if (u->hash == hash && strcmp(u->user, user) == 0)
			return u;
	return NULL;
}

/* A failed grow only makes the chains longer. */
static void tab_grow(struct hub *h)
{
	size_t cap = h->tab_cap * 2;
	struct hub_user **tab = calloc(cap, sizeof(*tab));

	if (tab == NULL)
		return;
	for (size_t i = 0; i < h->tab_cap; i++) {
		struct hub_user *u = h->tab[i], *next;

		for (; u != NULL; u = next) {
			next = u->next;
			u->next = tab[u->hash & (cap - 1)];
			tab[u->hash & (cap - 1)] = u;
		}
	}
	free(h->tab);
	h->tab = tab;
	h->tab_cap = cap;
}

static struct hub_user *user_add(struct hub *h, const char *user)
{
	struct hub_user *u = calloc(1, sizeof(*u));
	size_t b;

	if (u == NULL)
		return NULL;
	snprintf(u->user, sizeof u->user, "%s", user); /* length checked by hub_attach */
	u->hash = user_hash(user);
	if (h->st.users + 1 > h->tab_cap)
		tab_grow(h);
	b = u->hash & (h->tab_cap - 1);
	u->next = h->tab[b];
	h->tab[b] = u;
	h->st.users++;
	return u;
}

static void user_remove(struct hub *h, struct hub_user *u)
{
	struct hub_user **pp = &h->tab[u->hash & (h->tab_cap - 1)];

	while (*pp != u)
		pp = &(*pp)->next;
	*pp = u->next;
	h->st.users--;
	free(u);
}

/* --- per-connection queues ----------------------------------------------- */

static void queue_drop(struct hub *h, struct hub_conn *c)
{
	for (size_t i = 0; i < c->q_len; i++)
		hub_msg_unref(c->q[(c->q_head + i) % c->q_cap]);
	free(c->q);
	h->st.queued_bytes -= c->q_bytes;
	c->q = NULL;
	c->q_head = c->q_len = c->q_cap = 0;
	c->q_bytes = 0;
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
	c->ops->close(c, reason);
}

static int ring_grow(struct hub_conn *c)
{
	size_t cap = c->q_cap != 0 ? c->q_cap * 2 : 8;
	struct hub_msg **q = malloc(cap * sizeof(*q));

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

/* Past the byte cap (or out of memory) the client is better off resuming. */
static void queue_push(struct hub *h, struct hub_conn *c, struct hub_msg *m)
{
	size_t max = h->lim.send_queue_max;

	if (c->state == ST_CLOSING)
		return;
	if ((max != 0 && c->q_bytes + m->len > max) ||
	    (c->q_len == c->q_cap && ring_grow(c) != 0)) {
		conn_close(h, c, HUB_CLOSE_SLOW);
		return;
	}
	c->q[(c->q_head + c->q_len) % c->q_cap] = hub_msg_ref(m);
	c->q_len++;
	c->q_bytes += m->len;
	h->st.queued_bytes += m->len;
	h->st.delivered++;
	if (c->q_len == 1)
		c->ops->wake(c);
}

/* Queue m unless its id is not after the last one c got. */
static void queue_notify(struct hub *h, struct hub_conn *c, struct hub_msg *m)
{
	if (m->has_id) {
		if (c->has_last && cursor_cmp(&m->id, &c->last) <= 0) {
			h->st.duplicates_dropped++;
			return;
		}
		c->last = m->id;
		c->has_last = 1;
	}
	queue_push(h, c, m);
}

static void pend_push(struct hub *h, struct hub_conn *c, struct hub_msg *m)
{
	size_t max = h->lim.send_queue_max;

	if (max != 0 && c->pend_bytes + m->len > max) {
		conn_close(h, c, HUB_CLOSE_SLOW);
		return;
	}
	if (c->pend_len == c->pend_cap) {
		size_t cap = c->pend_cap != 0 ? c->pend_cap * 2 : 8;
		struct hub_msg **p = realloc(c->pend, cap * sizeof(*p));

		if (p == NULL) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			return;
		}
		c->pend = p;
		c->pend_cap = cap;
	}
	c->pend[c->pend_len++] = hub_msg_ref(m);
	c->pend_bytes += m->len;
}

/* Deliver what arrived while c was not live; c may close on the way. */
static void pend_flush(struct hub *h, struct hub_conn *c)
{
	struct hub_msg **p = c->pend;
	size_t n = c->pend_len;

	c->pend = NULL;
	c->pend_len = c->pend_cap = 0;
	c->pend_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		if (c->state != ST_CLOSING)
			queue_notify(h, c, p[i]);
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

/* req is c's, allocated by the caller. */
static void replay_start(struct hub *h, struct hub_conn *c, struct hub_req *req)
{
	struct cursor since = replay_cursor(c);

	req->conn = c;
	c->req = req;
	c->state = ST_REPLAY;
	h->st.replays++;
	if (h->be != NULL && h->be->history != NULL)
		h->be->history(h->be_ud, req, c->user->user, &since, h->lim.history_limit);
}

/* First live moment of a connection attached without a cursor. */
static void go_live_fresh(struct hub *h, struct hub_conn *c)
{
	c->state = ST_LIVE;
	c->live_ms = h->now_ms();
	pend_flush(h, c);
}

/* --- public API ---------------------------------------------------------- */

int hub_new(struct hub **out, const struct hub_limits *lim, long long (*now_ms)(void))
{
	struct hub *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return HERR_NOMEM;
	h->tab = calloc(HUB_TAB_INIT, sizeof(*h->tab));
	if (h->tab == NULL || pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h->tab);
		free(h);
		return HERR_NOMEM;
	}
	h->tab_cap = HUB_TAB_INIT;
	h->lim = *lim;
	h->now_ms = now_ms != NULL ? now_ms : clock_wall_ms;
	*out = h;
	return 0;
}

void hub_free(struct hub *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->tab_cap; i++) {
		struct hub_user *u = h->tab[i], *next;

		for (; u != NULL; u = next) {
			next = u->next;
			free(u);
		}
	}
	free(h->tab);
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

int hub_attach(struct hub *h, struct hub_conn *c, const char *user, const struct cursor *since)
{
	const struct hub_conn_ops *ops = c->ops;
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
	if (since != NULL && u != NULL && u->subscribed) {
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
		c->replay = 1;
	}
	if (u->subscribed) {
		if (req != NULL)
			replay_start(h, c, req);
		else
			go_live_fresh(h, c);
	}
out:
	pthread_mutex_unlock(&h->mu);
	return ret;
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
		m = c->q[c->q_head];
		c->q_head = (c->q_head + 1) % c->q_cap;
		c->q_len--;
		c->q_bytes -= m->len;
		h->st.queued_bytes -= m->len;
	}
	pthread_mutex_unlock(&h->mu);
	return m;
}

void hub_close_all(struct hub *h)
{
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->tab_cap; i++)
		for (struct hub_user *u = h->tab[i]; u != NULL; u = u->next)
			for (struct hub_conn *c = u->conns; c != NULL; c = c->next)
				conn_close(h, c, HUB_CLOSE_SHUTDOWN);
	pthread_mutex_unlock(&h->mu);
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
		if (!c->replay) {
			go_live_fresh(h, c);
			continue;
		}
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			conn_close(h, c, HUB_CLOSE_SLOW);
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
			queue_notify(h, c, m);
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
	for (size_t i = 0; i < h->tab_cap; i++) {
		for (struct hub_user *u = h->tab[i]; u != NULL; u = u->next) {
			u->subscribed = 0;
			for (struct hub_conn *c = u->conns; c != NULL; c = c->next) {
				if (c->state != ST_LIVE && c->state != ST_REPLAY)
					continue;
				req_forget(c);
				c->state = ST_WAIT_SUB;
				c->replay = 1;
			}
		}
	}
	pthread_mutex_unlock(&h->mu);
}

void hub_history_done(struct hub *h, struct hub_req *req, const struct history_entry *e, size_t n,
		      int truncated, int err)
{
	struct hub_conn *c;

	pthread_mutex_lock(&h->mu);
	c = req->conn;
	free(req);
	if (c == NULL)
		goto out;
	c->req = NULL;
	if (err == HERR_REDIS || err == HERR_CLOSED) {
		/* Keep the cursor and pend: the next confirmation retries. */
		c->state = ST_WAIT_SUB;
		goto out;
	}
	if (err != 0) {
		/* Waiting would strand c while the link stays up. */
		conn_close(h, c, HUB_CLOSE_ERROR);
		goto out;
	}
	if (truncated) {
		struct hub_msg *m = msg_alloc(HUB_MSG_RESET, "", 0);

		if (m == NULL) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			goto out;
		}
		queue_push(h, c, m);
		hub_msg_unref(m);
		h->st.resets++;
	}
	for (size_t i = 0; i < n && c->state != ST_CLOSING; i++) {
		struct hub_msg *m;

		if (c->has_last && cursor_cmp(&e[i].id, &c->last) <= 0) {
			h->st.duplicates_dropped++;
			continue;
		}
		m = msg_alloc(HUB_MSG_NOTIFY, e[i].env, e[i].len);
		if (m == NULL) {
			conn_close(h, c, HUB_CLOSE_SLOW);
			break;
		}
		/* The stream id is authoritative. */
		m->has_id = 1;
		m->id = e[i].id;
		queue_notify(h, c, m);
		hub_msg_unref(m);
	}
	if (c->state == ST_CLOSING)
		goto out;
	pend_flush(h, c);
	if (c->state != ST_CLOSING) {
		c->state = ST_LIVE;
		c->replay = 0;
	}
out:
	pthread_mutex_unlock(&h->mu);
}

void hub_foreach_user(struct hub *h, void (*fn)(void *arg, const char *user), void *arg)
{
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->tab_cap; i++)
		for (struct hub_user *u = h->tab[i]; u != NULL; u = u->next)
			fn(arg, u->user);
	pthread_mutex_unlock(&h->mu);
}

void hub_get_stats(struct hub *h, struct hub_stats *st)
{
	pthread_mutex_lock(&h->mu);
	*st = h->st;
	pthread_mutex_unlock(&h->mu);
}
