#include "config.h"

#include "sub.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>

#include "auth.h"
#include "clock.h"
#include "cluster.h"
#include "envelope.h"
#include "err.h"
#include "evredis.h"
#include "history.h"
#include "jitter.h"
#include "log.h"
#include "redis.h"
#include "revoke.h"
#include "umap.h"

#define CONNECT_TIMEOUT_MS 2000
#define BACKOFF_BASE_MS	   100
/* Full jitter under a 2 s cap: a Redis back from a restart or a failover is
 * used within 2 s (a 10 s cap cost bench/chaos's cluster-kill 11-15 s of
 * recovery), and each process still tries at most about once a second. */
#define BACKOFF_MAX_MS 2000
/* A link that stayed healthy this long resets the backoff. */
#define STABLE_US	  (10LL * 1000 * 1000)
#define CANARY_DEFAULT_MS 2000
#define CANARY_MISSES	  3
/* Channels per SUBSCRIBE/UNSUBSCRIBE command. */
#define BATCH_MAX 1000
/* Sentinel: a lost watch link moves to the next sentinel after this. */
#define WATCH_RETRY_MS 1000
/* A history read Redis answered with an error: retries after 250 ms doubling. */
#define HIST_RETRY_BASE_MS 250
#define HIST_RETRY_MAX	   5

enum link_state {
	LINK_CLOSED = 0,
	LINK_CONNECTING = 1, /* TCP, AUTH, SELECT and the first reply pending */
	LINK_READY = 2,
};

/* One hiredis async context.  ac is NULL once hiredis or we freed it. */
struct link {
	redisAsyncContext *ac;
	int state;
};

/*
 * What Redis knows of a user's channel on the pub/sub link.  Only one
 * SUBSCRIBE or UNSUBSCRIBE is in flight per channel, so a confirmation always
 * answers the command we think it does.
 */
enum chan_state {
	CH_NONE = 0,
	CH_SUBSCRIBING = 1,
	CH_SUBSCRIBED = 2,
	CH_UNSUBSCRIBING = 3,
};

/* A user the hub wants subscribed (desired), or one still being unsubscribed. */
struct chan {
	struct umap_node node; /* in sub.chans, keyed by user */
	struct chan *dnext;    /* the dirty list */
	unsigned char desired;
	unsigned char dirty;
	/* The hub asked again: it waits for hub_on_subscribed even if Redis
	 * has the channel already. */
	unsigned char confirm;
	int state;
	size_t chlen;
	char user[AUTH_USER_MAX + 1];
	char channel[];
};

enum op_kind {
	OP_SUBSCRIBE,
	OP_UNSUBSCRIBE,
	OP_HISTORY,
};

/* A hub request, queued from any thread for the loop. */
struct op {
	struct op *next;
	int kind;
	struct hub_req *req;
	int has_since;
	struct cursor since;
	unsigned limit;
	size_t max_bytes;
	char user[AUTH_USER_MAX + 1];
};

/*
 * A history read in flight on the command link (the hiredis privdata), or
 * waiting on its retry timer (then on the sub's retrying list).
 */
struct hist {
	struct sub *s;
	struct hub_req *req;
	struct hist *prev, *next; /* s->retrying */
	struct event *ev_retry;	  /* made at the first error reply */
	unsigned tries;		  /* retries sent */
	int has_since;
	int retried;	    /* NOSCRIPT seen once in this try: SCRIPT LOAD sent */
	unsigned redirects; /* MOVED/ASK followed (cluster) */
	struct cursor since;
	unsigned limit;
	size_t max_bytes;
	char user[AUTH_USER_MAX + 1];
};

/* Channels collected for one SUBSCRIBE or UNSUBSCRIBE command. */
struct batch {
	const char *argv[BATCH_MAX + 1];
	size_t argvlen[BATCH_MAX + 1];
	struct chan *ents[BATCH_MAX];
	size_t n;
};

struct sub {
	struct event_base *base;
	struct hub *hub;
	const struct conf *conf;  /* borrowed */
	struct redis_addr addr;	  /* the configuration: redis_url, the sentinels */
	struct redis_addr master; /* where the links go: addr, or the sentinels' answer */
	char addrstr[300];	  /* master, for log lines */
	char canary[REDIS_KEY_MAX];
	size_t canary_len;
	char control[REDIS_KEY_MAX]; /* the control channel (revoke.h) */
	size_t control_len;
	long long canary_us; /* interval */

	/* Loop thread only from here ... */
	struct link ps, cmd;
	/*
	 * Sentinel (addr.nsentinels > 0): sq asks one sentinel for the master
	 * at each attempt (rs says which; good is the one that answered last),
	 * sw stays subscribed to +switch-master on sentinel sw_idx across
	 * attempts and moves to the next sentinel when it fails.
	 */
	struct link sq, sw;
	/* Redis Cluster (redis_cluster): a command link per master, for the
	 * reads routed by key (history, sub_command); ps and cmd go to one
	 * node, any node (cluster.h). */
	struct cluster_async *cl;
	struct redis_resolve rs;
	int good, sw_idx;
	struct event *ev_watch;
	int state;	    /* enum sub_state */
	int ever_connected; /* a later connect counts as a reconnect */
	int closing;	    /* sub_free runs */
	int installed;	    /* we are the hub's backend */
	int healthy;
	unsigned attempt; /* failed attempts since the link was last stable */
	struct jitter jit;
	long long connected_us, healthy_us, canary_rx_us;

	struct event *ev_ops, *ev_reconnect, *ev_timeout, *ev_canary;

	struct umap chans; /* of struct chan */
	struct chan *dirty;
	size_t n_desired, n_subscribed;
	struct batch *bsub, *bunsub;
	struct hist *retrying; /* reads waiting for their retry timer */
	/* ... to here. */

	pthread_mutex_t q_lock; /* guards the queue below */
	struct op *q_head, **q_tail;
	int q_resync;		/* a request was lost to ENOMEM: rebuild from the hub */
	struct hub_req *q_lost; /* reads whose op could not be allocated, through
				 * be_next: answered HERR_NOMEM from the loop */

	pthread_mutex_t st_lock; /* guards st */
	struct sub_status st;

	sub_event_fn ev_fn;
	void *ev_ud;
};

static void reconcile(struct sub *s);
static void fail_all(struct sub *s, const char *why);

/* --- small helpers ------------------------------------------------------- */

static struct timeval tv_ms(long long ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	return tv;
}

static void emit(struct sub *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void emit(struct sub *s, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (s->ev_fn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	s->ev_fn(s->ev_ud, level, msg);
}

/* Publish the loop's view into the thread-safe snapshot. */
static void status_sync(struct sub *s, const char *error)
{
	pthread_mutex_lock(&s->st_lock);
	s->st.state = s->state;
	s->st.healthy = s->healthy;
	s->st.subscribed = s->n_subscribed;
	if (error != NULL) {
		size_t n = strnlen(error, sizeof s->st.last_error - 1);

		memcpy(s->st.last_error, error, n);
		s->st.last_error[n] = '\0';
	}
	pthread_mutex_unlock(&s->st_lock);
}

static void status_add(struct sub *s, uint64_t *field)
{
	pthread_mutex_lock(&s->st_lock);
	(*field)++;
	pthread_mutex_unlock(&s->st_lock);
}

/* --- the user table ------------------------------------------------------ */

#define CHAN(n) container_of(n, struct chan, node)

static struct chan *chan_find(struct sub *s, const char *user)
{
	struct umap_node *n = umap_find(&s->chans, user);

	return n != NULL ? CHAN(n) : NULL;
}

static struct chan *chan_add(struct sub *s, const char *user)
{
	char channel[REDIS_KEY_MAX];
	struct chan *e;
	size_t ulen;
	int n;

	ulen = strlen(user);
	if (ulen > AUTH_USER_MAX)
		return NULL;
	n = redis_channel(channel, sizeof channel, s->conf->channel_prefix, user);
	if (n < 0)
		return NULL;
	e = calloc(1, sizeof(*e) + (size_t)n + 1);
	if (e == NULL)
		return NULL;
	memcpy(e->user, user, ulen + 1);
	memcpy(e->channel, channel, (size_t)n + 1);
	e->chlen = (size_t)n;
	umap_add(&s->chans, &e->node, e->user);
	return e;
}

/* e must not be on the dirty list. */
static void chan_remove(struct sub *s, struct chan *e)
{
	umap_remove(&s->chans, &e->node);
	free(e);
}

static void chan_dirty(struct sub *s, struct chan *e)
{
	if (e->dirty)
		return;
	e->dirty = 1;
	e->dnext = s->dirty;
	s->dirty = e;
}

static void set_desired(struct sub *s, struct chan *e, int desired)
{
	if (e->desired == desired)
		return;
	e->desired = (unsigned char)desired;
	if (desired)
		s->n_desired++;
	else
		s->n_desired--;
}

/* --- the request queue (any thread -> loop) ------------------------------ */

static void queue_push(struct sub *s, struct op *o)
{
	pthread_mutex_lock(&s->q_lock);
	*s->q_tail = o;
	s->q_tail = &o->next;
	pthread_mutex_unlock(&s->q_lock);
	event_active(s->ev_ops, EV_READ, 0);
}

static struct op *op_new(int kind, const char *user)
{
	size_t ulen = strlen(user);
	struct op *o;

	if (ulen > AUTH_USER_MAX)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return NULL;
	o->kind = kind;
	memcpy(o->user, user, ulen + 1);
	return o;
}

/* A (un)subscribe could not be queued: the loop rebuilds the set from the hub. */
static void queue_resync(struct sub *s)
{
	pthread_mutex_lock(&s->q_lock);
	s->q_resync = 1;
	pthread_mutex_unlock(&s->q_lock);
	event_active(s->ev_ops, EV_READ, 0);
}

static void be_subscribe(void *ud, const char *user)
{
	struct sub *s = ud;
	struct op *o = op_new(OP_SUBSCRIBE, user);

	if (o == NULL)
		queue_resync(s);
	else
		queue_push(s, o);
}

static void be_unsubscribe(void *ud, const char *user)
{
	struct sub *s = ud;
	struct op *o = op_new(OP_UNSUBSCRIBE, user);

	if (o == NULL)
		queue_resync(s);
	else
		queue_push(s, o);
}

static void be_history(void *ud, struct hub_req *req, const char *user, const struct cursor *since,
		       unsigned limit, size_t max_bytes)
{
	struct sub *s = ud;
	struct op *o = op_new(OP_HISTORY, user);

	if (o == NULL) {
		/* Still answered exactly once, from the loop: the list goes
		 * through the request itself, so keeping it cannot fail. */
		pthread_mutex_lock(&s->q_lock);
		req->be_next = s->q_lost;
		s->q_lost = req;
		pthread_mutex_unlock(&s->q_lock);
		event_active(s->ev_ops, EV_READ, 0);
		return;
	}
	o->req = req;
	o->limit = limit;
	o->max_bytes = max_bytes;
	if (since != NULL) {
		o->has_since = 1;
		o->since = *since;
	}
	queue_push(s, o);
}

static const struct hub_backend_ops backend_ops = {
    .subscribe = be_subscribe,
    .unsubscribe = be_unsubscribe,
    .history = be_history,
};

/* --- history reads ------------------------------------------------------- */

static void hist_send_cb(redisAsyncContext *ac, void *r, void *privdata);

/* ac NULL: the command link, or in a cluster the link of the key's master. */
static int hist_send(struct sub *s, struct hist *h, redisAsyncContext *ac)
{
	struct history_argv ha;
	int rc;

	rc = history_argv(&ha, s->conf, h->user, h->has_since ? &h->since : NULL, h->limit,
			  h->max_bytes);
	if (rc < 0)
		return rc;
	if (ac == NULL)
		ac = s->cl != NULL ? cluster_async_route(s->cl, ha.key, strlen(ha.key)) : s->cmd.ac;
	if (ac == NULL ||
	    redisAsyncCommandArgv(ac, hist_send_cb, h, ha.argc, ha.argv, ha.argvlen) != REDIS_OK)
		return HERR_REDIS;
	return 0;
}

/* h must not be on the retrying list. */
static void hist_done(struct hist *h, const struct hub_page *p, int err)
{
	hub_history_done(h->s->hub, h->req, p, err);
	if (h->ev_retry != NULL)
		event_free(h->ev_retry);
	free(h);
}

static void hist_unlink(struct sub *s, struct hist *h)
{
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		s->retrying = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
}

/* Answer every read waiting for a retry with err. */
static void hist_cancel_retries(struct sub *s, int err)
{
	struct hist *h = s->retrying, *next;

	s->retrying = NULL;
	for (; h != NULL; h = next) {
		next = h->next;
		h->prev = h->next = NULL;
		hist_done(h, NULL, err);
	}
}

static void hist_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hist *h = arg;
	struct sub *s = h->s;
	int rc;

	(void)fd;
	(void)what;
	hist_unlink(s, h);
	/* A lost link cancels the timers; this is only a safety net. */
	if (s->state != SUB_CONNECTED || s->cmd.ac == NULL) {
		hist_done(h, NULL, HERR_REDIS);
		return;
	}
	h->tries++;
	h->retried = 0;
	status_add(s, &s->st.history_retries);
	rc = hist_send(s, h, NULL);
	if (rc != 0)
		hist_done(h, NULL, rc);
}

/*
 * Redis answered h with an error while the link is up.  Nothing else would
 * ask again (the subscription stays confirmed), so retry on a timer and in
 * the end give up: the hub then closes the connection, which resumes.
 */
static void hist_retry_later(struct sub *s, struct hist *h, const char *why)
{
	long long delay_ms;
	struct timeval tv;

	if (h->tries >= HIST_RETRY_MAX) {
		emit(s, LOG_LEVEL_WARN,
		     "history read for user %s failed: %s; giving up after %u retries, "
		     "closing its connection so the client resumes",
		     h->user, why, h->tries);
		goto fail;
	}
	/* Equal jitter: reads failing together (-BUSY) spread their retries. */
	delay_ms = (long long)HIST_RETRY_BASE_MS << h->tries;
	delay_ms = delay_ms / 2 + (long long)jitter_upto(&s->jit, (uint64_t)(delay_ms / 2));
	tv = tv_ms(delay_ms);
	if (h->ev_retry == NULL)
		h->ev_retry = evtimer_new(s->base, hist_retry_cb, h);
	if (h->ev_retry == NULL || evtimer_add(h->ev_retry, &tv) != 0) {
		emit(s, LOG_LEVEL_WARN,
		     "history read for user %s failed: %s; cannot arm a retry timer, "
		     "closing its connection so the client resumes",
		     h->user, why);
		goto fail;
	}
	h->prev = NULL;
	h->next = s->retrying;
	if (s->retrying != NULL)
		s->retrying->prev = h;
	s->retrying = h;
	emit(s, LOG_LEVEL_WARN, "history read for user %s failed: %s; retry %u of %u in %.2f s",
	     h->user, why, h->tries + 1, HIST_RETRY_MAX, (double)delay_ms / 1000.0);
	return;
fail:
	status_add(s, &s->st.history_failures);
	hist_done(h, NULL, HERR_AGAIN);
}

/*
 * Called with the script's reply, or NULL when the context goes away (then
 * hiredis calls it from its free, with ac->data possibly detached).
 */
static void hist_send_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct hist *h = privdata;
	struct sub *s = h->s;
	redisReply *reply = r;
	struct history_result res;
	struct hub_page page;
	char err[160];
	int rc;

	if (reply == NULL) {
		hist_done(h, NULL, s->closing ? HERR_CLOSED : HERR_REDIS);
		return;
	}
	if (redis_reply_is_noscript(reply) && !h->retried && ac->data != NULL) {
		/* A restarted or flushed Redis: load, then retry once on the same
		 * connection, which keeps the order. */
		h->retried = 1;
		if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s",
				      redis_script_history.source) == REDIS_OK &&
		    hist_send(s, h, ac) == 0)
			return;
		hist_done(h, NULL, HERR_REDIS);
		return;
	}
	if (s->cl != NULL && reply->type == REDIS_REPLY_ERROR && ac->data != NULL &&
	    h->redirects < CLUSTER_TRIES) {
		/* MOVED or ASK: send it where the cluster says, at once. */
		redisAsyncContext *to = cluster_async_redirect(s->cl, reply->str, reply->len);

		if (to != NULL) {
			h->redirects++;
			h->retried = 0;
			if (hist_send(s, h, to) != 0)
				hist_done(h, NULL, HERR_REDIS);
			return;
		}
	}
	rc = history_parse_reply(reply, &res, err, sizeof err);
	if (rc != 0 && reply->type == REDIS_REPLY_ERROR && ac->data != NULL &&
	    s->state == SUB_CONNECTED) {
		hist_retry_later(s, h, reply->str != NULL ? reply->str : "error");
		return;
	}
	if (rc != 0) {
		/* A reply of the wrong shape would come back the same: the hub
		 * closes the connection rather than wait. */
		if (rc != HERR_REDIS) {
			emit(s, LOG_LEVEL_WARN,
			     "history read for user %s: %s; closing its connection", h->user, err);
			status_add(s, &s->st.history_failures);
		}
		hist_done(h, NULL, rc);
		return;
	}
	page.e = res.entries;
	page.n = res.n;
	page.truncated = res.truncated;
	page.more = res.more;
	page.end = res.page_end;
	hist_done(h, &page, 0);
	history_result_free(&res);
}

static void hist_start(struct sub *s, const struct op *o)
{
	struct hist *h;
	int rc;

	if (s->closing) {
		hub_history_done(s->hub, o->req, NULL, HERR_CLOSED);
		return;
	}
	if (s->state != SUB_CONNECTED || s->cmd.ac == NULL) {
		hub_history_done(s->hub, o->req, NULL, HERR_REDIS);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		hub_history_done(s->hub, o->req, NULL, HERR_NOMEM);
		return;
	}
	h->s = s;
	h->req = o->req;
	h->has_since = o->has_since;
	h->since = o->since;
	h->limit = o->limit;
	h->max_bytes = o->max_bytes;
	memcpy(h->user, o->user, sizeof h->user);
	rc = hist_send(s, h, NULL);
	if (rc != 0) {
		hist_done(h, NULL, rc);
		return;
	}
	status_add(s, &s->st.history_reads);
}

/* --- the loop side of the queue ------------------------------------------ */

static void resync_one(void *arg, const char *user)
{
	struct sub *s = arg;
	struct chan *e = chan_find(s, user);

	if (e == NULL)
		e = chan_add(s, user);
	if (e == NULL)
		return; /* the next request retries */
	set_desired(s, e, 1);
	e->confirm = 1;
	chan_dirty(s, e);
}

static void resync(struct sub *s)
{
	for (struct umap_node *n = umap_first(&s->chans); n != NULL; n = umap_next(&s->chans, n)) {
		set_desired(s, CHAN(n), 0);
		chan_dirty(s, CHAN(n));
	}
	hub_foreach_user(s->hub, resync_one, s);
}

static void apply(struct sub *s, const struct op *o)
{
	struct chan *e;

	switch (o->kind) {
	case OP_SUBSCRIBE:
		e = chan_find(s, o->user);
		if (e == NULL)
			e = chan_add(s, o->user);
		if (e == NULL) {
			queue_resync(s);
			return;
		}
		set_desired(s, e, 1);
		e->confirm = 1;
		chan_dirty(s, e);
		break;
	case OP_UNSUBSCRIBE:
		e = chan_find(s, o->user);
		if (e == NULL)
			return;
		set_desired(s, e, 0);
		e->confirm = 0;
		chan_dirty(s, e);
		break;
	case OP_HISTORY:
		hist_start(s, o);
		break;
	}
}

/* The user event: swap the queue out, then act on it without the lock. */
static void ops_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sub *s = arg;
	struct hub_req *lost, *lnext;
	struct op *list, *next;
	int again;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&s->q_lock);
	list = s->q_head;
	s->q_head = NULL;
	s->q_tail = &s->q_head;
	again = s->q_resync;
	s->q_resync = 0;
	lost = s->q_lost;
	s->q_lost = NULL;
	pthread_mutex_unlock(&s->q_lock);

	for (; lost != NULL; lost = lnext) {
		lnext = lost->be_next;
		hub_history_done(s->hub, lost, NULL, HERR_NOMEM);
	}
	for (; list != NULL; list = next) {
		next = list->next;
		apply(s, list);
		free(list);
	}
	if (again)
		resync(s);
	reconcile(s);
}

/* --- subscriptions on the pub/sub link ----------------------------------- */

static void ps_cb(redisAsyncContext *ac, void *r, void *privdata);

static void batch_flush(struct sub *s, struct batch *b, int unsub)
{
	int rc;

	if (b->n == 0)
		return;
	b->argv[0] = unsub ? "UNSUBSCRIBE" : "SUBSCRIBE";
	b->argvlen[0] = strlen(b->argv[0]);
	/* hiredis keeps SUBSCRIBE's callback per channel and takes none for
	 * UNSUBSCRIBE: every confirmation goes to the channel's callback. */
	rc = redisAsyncCommandArgv(s->ps.ac, unsub ? NULL : ps_cb, s, (int)b->n + 1, b->argv,
				   b->argvlen);
	if (rc != REDIS_OK) {
		/* The link is going down; the reconnect starts from scratch. */
		for (size_t i = 0; i < b->n; i++)
			b->ents[i]->state = unsub ? CH_SUBSCRIBED : CH_NONE;
	}
	b->n = 0;
}

static void batch_add(struct sub *s, struct batch *b, struct chan *e, int unsub)
{
	b->ents[b->n] = e;
	b->argv[b->n + 1] = e->channel;
	b->argvlen[b->n + 1] = e->chlen;
	b->n++;
	e->state = unsub ? CH_UNSUBSCRIBING : CH_SUBSCRIBING;
	if (b->n == BATCH_MAX)
		batch_flush(s, b, unsub);
}

/*
 * Bring Redis in line with the desired set, for every dirty user, in as
 * few commands as possible.  Users with a command in flight wait for its
 * confirmation, which marks them dirty again.
 */
static void reconcile(struct sub *s)
{
	int live = s->state == SUB_CONNECTED && s->ps.ac != NULL;
	struct chan *e;

	while ((e = s->dirty) != NULL) {
		s->dirty = e->dnext;
		e->dnext = NULL;
		e->dirty = 0;
		if (e->desired) {
			if (!live)
				continue;
			if (e->state == CH_NONE) {
				batch_add(s, s->bsub, e, 0);
			} else if (e->state == CH_SUBSCRIBED && e->confirm) {
				e->confirm = 0;
				hub_on_subscribed(s->hub, e->user);
			}
		} else if (e->state == CH_NONE) {
			chan_remove(s, e);
		} else if (e->state == CH_SUBSCRIBED && live) {
			batch_add(s, s->bunsub, e, 1);
		}
	}
	if (live) {
		batch_flush(s, s->bsub, 0);
		batch_flush(s, s->bunsub, 1);
	}
}

/* After a loss Redis has no subscription of ours. */
static void chans_reset(struct sub *s)
{
	struct chan *e;

	while ((e = s->dirty) != NULL) {
		s->dirty = e->dnext;
		e->dnext = NULL;
		e->dirty = 0;
	}
	for (struct umap_node *n = umap_first(&s->chans), *next; n != NULL; n = next) {
		next = umap_next(&s->chans, n);
		e = CHAN(n);
		e->state = CH_NONE;
		if (!e->desired)
			chan_remove(s, e);
	}
	s->n_subscribed = 0;
}

static void on_canary(struct sub *s, const redisReply *payload)
{
	long long now = clock_mono_us();
	long long sent = strtoll(payload->str, NULL, 10);
	long long rtt = now - sent;

	if (sent <= 0 || rtt < 0)
		return;
	s->canary_rx_us = now;
	if (!s->healthy) {
		s->healthy = 1;
		s->healthy_us = now;
		status_sync(s, NULL);
	}
	pthread_mutex_lock(&s->st_lock);
	s->st.canary_rtt_us = rtt > 0 ? (uint64_t)rtt : 1;
	pthread_mutex_unlock(&s->st_lock);
}

static void maybe_ready(struct sub *s);

static int control_match(void *arg, long long iat, const char *jti)
{
	return revoke_match(arg, iat, jti);
}

/* A command on the control channel: close the matching connections here. */
static void on_control(struct sub *s, const redisReply *payload)
{
	struct revoke_cmd cmd;
	unsigned n;

	if (revoke_parse(payload->str, payload->len, &cmd) != 0) {
		status_add(s, &s->st.control_invalid);
		emit(s, LOG_LEVEL_WARN,
		     "control channel %s: ignoring a malformed message of %zu bytes", s->control,
		     payload->len);
		return;
	}
	status_add(s, &s->st.control_messages);
	n = hub_close_user(s->hub, cmd.user, control_match, &cmd,
			   cmd.kind == REVOKE_DISCONNECT ? HUB_CLOSE_DISCONNECT
							 : HUB_CLOSE_REVOKED);
	if (n > 0 || cmd.kind == REVOKE_DISCONNECT)
		emit(s, LOG_LEVEL_INFO, "control: %s for user %s: %u connection%s closed",
		     cmd.kind == REVOKE_DISCONNECT ? "disconnect"
		     : cmd.kind == REVOKE_BEFORE   ? "tokens revoked before a time"
						   : "token revoked by jti",
		     cmd.user, n, n == 1 ? "" : "s");
}

/* --- commands for the program (sub_command) ------------------------------- */

struct sub_call {
	sub_reply_fn fn; /* NULL once cancelled */
	void *ud;
};

static void call_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sub_call *call = privdata;

	(void)ac;
	if (call->fn != NULL)
		call->fn(call->ud, r);
	free(call);
}

int sub_command(struct sub *s, int argc, const char **argv, const size_t *argvlen, sub_reply_fn fn,
		void *ud, struct sub_call **out)
{
	redisAsyncContext *ac = s->cmd.ac;
	struct sub_call *call;

	if (out != NULL)
		*out = NULL;
	/* In a cluster the first argument is the key that names the master. */
	if (s->cl != NULL && argc > 1)
		ac = cluster_async_route(s->cl, argv[1],
					 argvlen != NULL ? argvlen[1] : strlen(argv[1]));
	if (s->closing || s->state != SUB_CONNECTED || ac == NULL)
		return HERR_REDIS;
	call = calloc(1, sizeof *call);
	if (call == NULL)
		return HERR_NOMEM;
	call->fn = fn;
	call->ud = ud;
	if (redisAsyncCommandArgv(ac, call_cb, call, argc, argv, argvlen) != REDIS_OK) {
		free(call);
		return HERR_REDIS;
	}
	if (out != NULL)
		*out = call;
	return 0;
}

void sub_call_cancel(struct sub_call *call)
{
	if (call != NULL)
		call->fn = NULL;
}

static void on_user_reply(struct sub *s, const char *kind, const redisReply *chan,
			  const redisReply *arg)
{
	char user[AUTH_USER_MAX + 1];
	struct chan *e;

	if (redis_channel_user(chan->str, chan->len, s->conf->channel_prefix, user) != 0)
		return;
	e = chan_find(s, user);
	if (strcmp(kind, "message") == 0) {
		char *env = NULL;
		size_t len = 0;

		if (e == NULL || !e->desired || arg->type != REDIS_REPLY_STRING)
			return;
		status_add(s, &s->st.messages);
		if (envelope_from_channel(chan->str, arg->str, arg->len, clock_wall_ms(), &env,
					  &len) != 0)
			return;
		if (env != NULL)
			hub_on_message(s->hub, user, env, len);
		else
			hub_on_message(s->hub, user, arg->str, arg->len);
		free(env);
	} else if (strcmp(kind, "subscribe") == 0) {
		if (e == NULL || e->state != CH_SUBSCRIBING)
			return;
		e->state = CH_SUBSCRIBED;
		s->n_subscribed++;
		status_sync(s, NULL);
		if (e->desired) {
			e->confirm = 0;
			hub_on_subscribed(s->hub, user);
		} else {
			chan_dirty(s, e);
			event_active(s->ev_ops, EV_READ, 0);
		}
	} else if (strcmp(kind, "unsubscribe") == 0) {
		if (e == NULL || e->state != CH_UNSUBSCRIBING)
			return;
		e->state = CH_NONE;
		s->n_subscribed--;
		status_sync(s, NULL);
		/* Resubscribes when wanted again, else frees the entry. */
		chan_dirty(s, e);
		event_active(s->ev_ops, EV_READ, 0);
	}
}

/*
 * Every pub/sub reply: subscribe/unsubscribe confirmations and messages, for
 * the canary and every user.  NULL when hiredis frees the context.
 */
static void ps_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sub *s = ac->data;
	redisReply *reply = r;
	const redisReply *kind, *chan;

	(void)privdata;
	if (reply == NULL || s == NULL || ac != s->ps.ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		fail_all(s, reply->str);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	kind = reply->element[0];
	chan = reply->element[1];
	if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
		return;
	if (chan->len == s->control_len && memcmp(chan->str, s->control, chan->len) == 0) {
		if (strcmp(kind->str, "message") == 0 &&
		    reply->element[2]->type == REDIS_REPLY_STRING)
			on_control(s, reply->element[2]);
		return;
	}
	if (chan->len == s->canary_len && memcmp(chan->str, s->canary, chan->len) == 0) {
		if (strcmp(kind->str, "subscribe") == 0) {
			s->ps.state = LINK_READY;
			maybe_ready(s);
		} else if (strcmp(kind->str, "message") == 0 &&
			   reply->element[2]->type == REDIS_REPLY_STRING) {
			on_canary(s, reply->element[2]);
		}
		return;
	}
	on_user_reply(s, kind->str, chan, reply->element[2]);
}

/* --- connections ---------------------------------------------------------- */

static struct link *link_of(struct sub *s, const redisAsyncContext *ac)
{
	if (ac == s->ps.ac)
		return &s->ps;
	if (ac == s->cmd.ac)
		return &s->cmd;
	if (ac == s->sq.ac)
		return &s->sq;
	if (ac == s->sw.ac)
		return &s->sw;
	return NULL;
}

static void sentinel_lost(struct sub *s, struct link *l, const char *why);

/* Free our context; late callbacks see ac->data NULL and return. */
static void link_close(struct link *l)
{
	redisAsyncContext *ac = l->ac;

	l->ac = NULL;
	l->state = LINK_CLOSED;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

static void send_canary(struct sub *s)
{
	char ts[32];

	if (s->cmd.ac == NULL)
		return;
	snprintf(ts, sizeof ts, "%lld", clock_mono_us());
	redisAsyncCommand(s->cmd.ac, NULL, NULL, "PUBLISH %b %s", s->canary, s->canary_len, ts);
}

static void maybe_ready(struct sub *s)
{
	long long now;

	if (s->ps.state != LINK_READY || s->cmd.state != LINK_READY || s->state == SUB_CONNECTED ||
	    (s->cl != NULL && !cluster_async_ready(s->cl)))
		return;
	now = clock_mono_us();
	evtimer_del(s->ev_timeout);
	s->state = SUB_CONNECTED;
	s->connected_us = now;
	s->canary_rx_us = now;
	s->healthy_us = 0;
	if (s->ever_connected)
		status_add(s, &s->st.reconnects);
	s->ever_connected = 1;
	status_sync(s, NULL);
	emit(s, LOG_LEVEL_INFO, "redis %s: connected, resubscribing %zu users", s->addrstr,
	     s->n_desired);
	for (struct umap_node *n = umap_first(&s->chans); n != NULL; n = umap_next(&s->chans, n))
		chan_dirty(s, CHAN(n));
	reconcile(s);
	send_canary(s);
}

/* AUTH, SELECT and the command link's PING. */
static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sub *s = ac->data;
	redisReply *reply = r;
	const char *what = privdata;
	char why[200];
	struct link *l;

	if (reply == NULL || s == NULL || (l = link_of(s, ac)) == NULL)
		return;
	if (strcmp(what, "ROLE") == 0) {
		/* A sentinel may name a master that a failover demoted since. */
		if (redis_role_check(reply, s->addrstr, why, sizeof why) != 0) {
			fail_all(s, why);
			return;
		}
		l->state = LINK_READY;
		maybe_ready(s);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		snprintf(why, sizeof why, "%s failed: %s", what, reply->str);
		if (l == &s->sq || l == &s->sw)
			sentinel_lost(s, l, why);
		else
			fail_all(s, why);
		return;
	}
	if (strcmp(what, "PING") == 0) {
		l->state = LINK_READY;
		maybe_ready(s);
	}
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct sub *s = ac->data;
	char why[200];
	struct link *l;

	if (s == NULL || (l = link_of(s, ac)) == NULL || status == REDIS_OK)
		return;
	/* hiredis frees this context when we return. */
	snprintf(why, sizeof why, "%s", ac->errstr ? ac->errstr : "connect failed");
	ac->data = NULL;
	l->ac = NULL;
	l->state = LINK_CLOSED;
	if (l == &s->sq || l == &s->sw)
		sentinel_lost(s, l, why);
	else
		fail_all(s, why);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct sub *s = ac->data;
	char why[200];
	struct link *l;

	if (s == NULL || (l = link_of(s, ac)) == NULL)
		return;
	/* hiredis frees this context when we return. */
	if (status != REDIS_OK && ac->errstr != NULL && ac->errstr[0] != '\0')
		snprintf(why, sizeof why, "%s", ac->errstr);
	else
		snprintf(why, sizeof why, "closed");
	ac->data = NULL;
	l->ac = NULL;
	l->state = LINK_CLOSED;
	if (l == &s->sq || l == &s->sw)
		sentinel_lost(s, l, why);
	else
		fail_all(s, why);
}

/*
 * Connect l to PATH (a unix socket) or HOST:PORT on the loop, with the
 * persistent-read adapter (evredis.h) and the links' callbacks.  Nothing is
 * queued yet.
 */
static int link_connect(struct sub *s, struct link *l, const char *path, const char *host, int port,
			char *err, size_t errlen)
{
	/* out of descriptors, the process's hook may free some
	 * (redis_set_nofile_hook); else the retry timer goes on */
	redisAsyncContext *ac = redis_async_connect(path, host, port);

	if (ac == NULL) {
		snprintf(err, errlen, "out of memory");
		return HERR_NOMEM;
	}
	if (ac->err) {
		snprintf(err, errlen, "%s", ac->errstr);
		redisAsyncFree(ac);
		return HERR_REDIS;
	}
	ac->data = s;
	if (evredis_attach(ac, s->base) < 0) {
		snprintf(err, errlen, "cannot attach to the event loop");
		ac->data = NULL;
		redisAsyncFree(ac);
		return HERR_REDIS;
	}
	l->ac = ac;
	l->state = LINK_CONNECTING;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return 0;
}

static int link_open(struct sub *s, struct link *l, int pubsub, char *err, size_t errlen)
{
	redisAsyncContext *ac;
	int rc = link_connect(s, l, s->master.path, s->master.host, s->master.port, err, errlen);

	if (rc != 0)
		return rc;
	ac = l->ac;
	/* Queued now, written once connected; replies come back in order. */
	if (s->master.password[0] != '\0')
		redisAsyncCommand(ac, setup_cb, (void *)"AUTH", "AUTH %s", s->master.password);
	if (s->master.db != 0)
		redisAsyncCommand(ac, setup_cb, (void *)"SELECT", "SELECT %d", s->master.db);
	/* The control channel first: the canary's confirmation, which makes
	 * the link ready, then means both are subscribed. */
	if (pubsub)
		redisAsyncCommand(ac, ps_cb, s, "SUBSCRIBE %b %b", s->control, s->control_len,
				  s->canary, s->canary_len);
	else if (s->addr.nsentinels > 0)
		redisAsyncCommand(ac, setup_cb, (void *)"ROLE", "ROLE");
	else
		redisAsyncCommand(ac, setup_cb, (void *)"PING", "PING");
	return 0;
}

static void open_links(struct sub *s)
{
	char err[160];
	struct timeval tv = tv_ms(CONNECT_TIMEOUT_MS);

	if (link_open(s, &s->ps, 1, err, sizeof err) != 0 ||
	    link_open(s, &s->cmd, 0, err, sizeof err) != 0) {
		fail_all(s, err);
		return;
	}
	evtimer_del(s->ev_timeout);
	evtimer_add(s->ev_timeout, &tv);
}

/* --- Redis Sentinel -------------------------------------------------------- */

static void sentinel_query_cb(redisAsyncContext *ac, void *r, void *privdata);
static void sentinel_watch_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Open l to sentinel n: AUTH, then the query (sq) or the SUBSCRIBE (sw). */
static int sentinel_open(struct sub *s, struct link *l, const struct redis_node *n, char *err,
			 size_t errlen)
{
	redisAsyncContext *ac;
	int rc = link_connect(s, l, NULL, n->host, n->port, err, errlen);

	if (rc != 0)
		return rc;
	ac = l->ac;
	if (s->addr.sentinel_password[0] != '\0')
		redisAsyncCommand(ac, setup_cb, (void *)"AUTH", "AUTH %s",
				  s->addr.sentinel_password);
	if (l == &s->sq)
		redisAsyncCommand(ac, sentinel_query_cb, NULL,
				  "SENTINEL get-master-addr-by-name %s", s->addr.master_name);
	else
		redisAsyncCommand(ac, sentinel_watch_cb, NULL, "SUBSCRIBE +switch-master");
	return 0;
}

/* Ask the next sentinel of this attempt for the master, or give up the attempt. */
static void sentinel_ask(struct sub *s)
{
	struct timeval tv = tv_ms(CONNECT_TIMEOUT_MS);
	const struct redis_node *n;
	char err[160], why[300];

	while ((n = redis_resolve_next(&s->rs)) != NULL) {
		if (sentinel_open(s, &s->sq, n, err, sizeof err) == 0) {
			evtimer_del(s->ev_timeout);
			evtimer_add(s->ev_timeout, &tv);
			return;
		}
		herr_set(0, why, sizeof why, "sentinel %s:%d: %s", n->host, n->port, err);
		redis_resolve_failed(&s->rs, why);
	}
	herr_set(0, why, sizeof why, "no sentinel answered for master %s (last: %s)",
		 s->addr.master_name, s->rs.why);
	fail_all(s, why);
}

static void sentinel_query_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sub *s = ac->data;
	char msg[512];

	(void)privdata;
	if (r == NULL || s == NULL || ac != s->sq.ac)
		return;
	if (redis_resolve_answer(&s->rs, r, msg, sizeof msg) != 0) {
		sentinel_lost(s, &s->sq, s->rs.why);
		return;
	}
	emit(s, LOG_LEVEL_INFO, "%s", msg);
	s->good = s->rs.current;
	link_close(&s->sq);
	s->master = s->rs.master;
	redis_addr_str(&s->master, s->addrstr, sizeof s->addrstr);
	open_links(s);
}

/* The master the sentinels named is not where our links are: go there now. */
static void reconnect_now(struct sub *s, const char *why)
{
	struct timeval tv = tv_ms(0);

	if (s->state != SUB_DISCONNECTED)
		fail_all(s, why);
	s->attempt = 0;
	evtimer_del(s->ev_reconnect);
	evtimer_add(s->ev_reconnect, &tv);
}

/* A +switch-master of our master (to), or a malformed one (to NULL; len bytes). */
static void on_switch(struct sub *s, const struct redis_node *to, size_t len)
{
	const struct redis_node *sn = &s->addr.sentinel[s->sw_idx];
	char why[400];

	if (to == NULL) {
		emit(s, LOG_LEVEL_WARN,
		     "redis: sentinel %s:%d: ignoring a malformed +switch-master "
		     "message of %zu bytes",
		     sn->host, sn->port, len);
		return;
	}
	status_add(s, &s->st.failovers);
	herr_set(0, why, sizeof why, "sentinel %s:%d: +switch-master: master %s is now %s:%d",
		 sn->host, sn->port, s->addr.master_name, to->host, to->port);
	if (s->state == SUB_CONNECTED && s->master.port == to->port &&
	    strcmp(s->master.host, to->host) == 0) {
		emit(s, LOG_LEVEL_INFO, "redis: %s, where we are already", why);
		return;
	}
	emit(s, LOG_LEVEL_WARN, "redis: %s (was %s), reconnecting", why, s->addrstr);
	reconnect_now(s, why);
}

static void sentinel_watch_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct sub *s = ac->data;
	const redisReply *reply = r;
	struct redis_node to;

	(void)privdata;
	if (reply == NULL || s == NULL || ac != s->sw.ac)
		return;
	switch (redis_watch_reply(reply, s->addr.master_name, &to)) {
	case REDIS_WATCH_ERROR:
		sentinel_lost(s, &s->sw, reply->str);
		break;
	case REDIS_WATCH_SUBSCRIBED:
		s->sw.state = LINK_READY;
		emit(s, LOG_LEVEL_INFO, "redis: watching sentinel %s:%d for failovers of master %s",
		     s->addr.sentinel[s->sw_idx].host, s->addr.sentinel[s->sw_idx].port,
		     s->addr.master_name);
		break;
	case REDIS_WATCH_SWITCH:
		on_switch(s, &to, 0);
		break;
	case REDIS_WATCH_MALFORMED:
		on_switch(s, NULL, reply->element[2]->len);
		break;
	default:
		break;
	}
}

static void watch_open(struct sub *s)
{
	const struct redis_node *n = &s->addr.sentinel[s->sw_idx];
	char err[160];

	if (s->closing || s->sw.ac != NULL || evtimer_pending(s->ev_watch, NULL))
		return;
	if (sentinel_open(s, &s->sw, n, err, sizeof err) != 0)
		sentinel_lost(s, &s->sw, err);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	watch_open(arg);
}

/*
 * A sentinel link failed (l's context is closed or being freed by
 * hiredis).  The query goes on with the next sentinel; the watch moves to
 * the next sentinel after WATCH_RETRY_MS.
 */
static void sentinel_lost(struct sub *s, struct link *l, const char *why)
{
	int idx = l == &s->sq ? s->rs.current : s->sw_idx;
	const struct redis_node *n = &s->addr.sentinel[idx < 0 ? 0 : idx];
	char reason[300];
	struct timeval tv = tv_ms(WATCH_RETRY_MS);
	int was_ready = l->state == LINK_READY;

	if (s->closing)
		return;
	/* The resolver's own reasons name the sentinel already. */
	if (why == s->rs.why)
		snprintf(reason, sizeof reason, "%s", why);
	else
		snprintf(reason, sizeof reason, "sentinel %s:%d: %s", n->host, n->port, why);
	link_close(l);
	if (l == &s->sq) {
		redis_resolve_failed(&s->rs, reason);
		emit(s, LOG_LEVEL_WARN, "redis: %s; asking the next sentinel", reason);
		sentinel_ask(s);
		return;
	}
	s->sw_idx = (s->sw_idx + 1) % s->addr.nsentinels;
	emit(s, was_ready ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
	     "redis: %s; watching for failovers through sentinel %s:%d in %.1f s", reason,
	     s->addr.sentinel[s->sw_idx].host, s->addr.sentinel[s->sw_idx].port,
	     WATCH_RETRY_MS / 1000.0);
	evtimer_add(s->ev_watch, &tv);
}

/* The masters' links: all up (then perhaps ready), or one lost. */
static void cluster_event(void *ud, int ok, const char *msg)
{
	struct sub *s = ud;

	if (!ok) {
		fail_all(s, msg);
		return;
	}
	emit(s, LOG_LEVEL_INFO, "%s", msg);
	maybe_ready(s);
}

static void start_connect(struct sub *s)
{
	s->state = SUB_CONNECTING;
	status_sync(s, NULL);
	if (s->cl != NULL) {
		/* A node in turn: the seeds, then the masters last seen. */
		cluster_async_next_node(s->cl, &s->master);
		redis_addr_str(&s->master, s->addrstr, sizeof s->addrstr);
		if (cluster_async_start(s->cl, &s->master) != 0) {
			fail_all(s, "redis cluster: cannot start reading the slot map");
			return;
		}
	}
	if (s->addr.nsentinels == 0) {
		open_links(s);
		return;
	}
	watch_open(s);
	redis_resolve_start(&s->rs, &s->addr);
	s->rs.next = s->good;
	sentinel_ask(s);
}

/*
 * Any loss or failed attempt: drop both links, tell the hub (once per loss
 * of a working link), and try again after a full-jitter backoff.
 */
static void fail_all(struct sub *s, const char *why)
{
	int was_connected = s->state == SUB_CONNECTED;
	long long now = clock_mono_us(), cap_ms, delay_ms;
	char reason[200];
	struct timeval tv;

	if (s->closing || s->state == SUB_DISCONNECTED)
		return;
	/* why may live in a context freed below. */
	snprintf(reason, sizeof reason, "%s", why);
	s->state = SUB_DISCONNECTED;
	link_close(&s->ps);
	link_close(&s->cmd);
	link_close(&s->sq);
	cluster_async_stop(s->cl);
	/* The hub drops these answers and asks again after the resubscribe. */
	hist_cancel_retries(s, HERR_REDIS);
	evtimer_del(s->ev_timeout);
	chans_reset(s);
	if (was_connected && s->healthy && now - s->healthy_us >= STABLE_US)
		s->attempt = 0;
	s->healthy = 0;
	cap_ms = BACKOFF_BASE_MS << (s->attempt < 7 ? s->attempt : 7);
	if (cap_ms > BACKOFF_MAX_MS)
		cap_ms = BACKOFF_MAX_MS;
	delay_ms = (long long)jitter_upto(&s->jit, (uint64_t)cap_ms);
	if (s->attempt < 32)
		s->attempt++;
	tv = tv_ms(delay_ms);
	evtimer_add(s->ev_reconnect, &tv);
	status_sync(s, reason);
	if (was_connected) {
		hub_on_link_lost(s->hub);
		emit(s, LOG_LEVEL_WARN, "redis %s: connection lost: %s, reconnecting in %.2f s",
		     s->addrstr, reason, (double)delay_ms / 1000.0);
	} else {
		emit(s, LOG_LEVEL_WARN, "redis %s: connect failed: %s, retrying in %.2f s",
		     s->addrstr, reason, (double)delay_ms / 1000.0);
	}
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_connect(arg);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sub *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SUB_CONNECTING && s->sq.ac != NULL)
		sentinel_lost(s, &s->sq, "no answer within 2 s");
	else if (s->state == SUB_CONNECTING)
		fail_all(s, "connect timed out after 2 s");
}

static void canary_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sub *s = arg;
	long long silent;
	char why[100];

	(void)fd;
	(void)what;
	if (s->state != SUB_CONNECTED)
		return;
	silent = clock_mono_us() - s->canary_rx_us;
	if (silent > CANARY_MISSES * s->canary_us) {
		/* Connected yet deaf: the classic state after a failover. */
		snprintf(why, sizeof why, "canary not received for %.1f s", (double)silent / 1e6);
		fail_all(s, why);
		return;
	}
	send_canary(s);
}

/* --- public --------------------------------------------------------------- */

int sub_new(struct sub **out, struct event_base *base, const struct conf *c, struct hub *h,
	    unsigned canary_interval_ms, char *err, size_t errlen)
{
	struct timeval tv;
	char host[128];
	struct sub *s;
	int rc;

	*out = NULL;
	if (base == NULL || c == NULL || h == NULL || c->redis_url == NULL ||
	    c->channel_prefix == NULL) {
		snprintf(err, errlen, "sub_new: missing argument");
		return HERR_INVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto nomem;
	pthread_mutex_init(&s->q_lock, NULL);
	pthread_mutex_init(&s->st_lock, NULL);
	s->q_tail = &s->q_head;
	s->base = base;
	s->hub = h;
	s->conf = c;
	redis_scripts_init();
	rc = redis_addr_from_conf(c, &s->addr, err, errlen);
	if (rc != 0) {
		sub_free(s);
		return rc;
	}
	s->master = s->addr;
	redis_addr_str(&s->addr, s->addrstr, sizeof s->addrstr);
	if (c->redis_cluster) {
		rc = cluster_async_new(&s->cl, base, c, cluster_event, s, err, errlen);
		if (rc != 0) {
			sub_free(s);
			return rc;
		}
	}
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	rc = snprintf(s->canary, sizeof s->canary, "%s:__herald:canary:%s:%ld", c->channel_prefix,
		      host, (long)getpid());
	if (rc < 0 || (size_t)rc >= sizeof s->canary) {
		snprintf(err, errlen, "channel_prefix too long");
		sub_free(s);
		return HERR_INVAL;
	}
	s->canary_len = (size_t)rc;
	rc = revoke_channel(s->control, sizeof s->control, c->channel_prefix);
	if (rc < 0) {
		snprintf(err, errlen, "channel_prefix too long");
		sub_free(s);
		return HERR_INVAL;
	}
	s->control_len = (size_t)rc;
	s->canary_us =
	    (long long)(canary_interval_ms ? canary_interval_ms : CANARY_DEFAULT_MS) * 1000;
	jitter_seed(&s->jit, s);
	rc = umap_init(&s->chans, 0);
	s->bsub = calloc(1, sizeof(*s->bsub));
	s->bunsub = calloc(1, sizeof(*s->bunsub));
	s->ev_ops = event_new(base, -1, 0, ops_cb, s);
	s->ev_reconnect = evtimer_new(base, reconnect_cb, s);
	s->ev_timeout = evtimer_new(base, timeout_cb, s);
	s->ev_canary = event_new(base, -1, EV_PERSIST, canary_cb, s);
	s->ev_watch = evtimer_new(base, watch_cb, s);
	if (rc != 0 || s->bsub == NULL || s->bunsub == NULL || s->ev_ops == NULL ||
	    s->ev_reconnect == NULL || s->ev_timeout == NULL || s->ev_canary == NULL ||
	    s->ev_watch == NULL) {
		sub_free(s);
		goto nomem;
	}
	tv = tv_ms(s->canary_us / 1000);
	evtimer_add(s->ev_canary, &tv);
	hub_set_backend(h, &backend_ops, s);
	s->installed = 1;
	/* The first attempt runs from the loop, so its outcome reaches the
	 * event callback set after this returns. */
	s->state = SUB_CONNECTING;
	status_sync(s, NULL);
	tv = tv_ms(0);
	evtimer_add(s->ev_reconnect, &tv);
	*out = s;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return HERR_NOMEM;
}

void sub_free(struct sub *s)
{
	struct op *o, *next;

	if (s == NULL)
		return;
	s->closing = 1;
	if (s->installed)
		hub_set_backend(s->hub, NULL, NULL);
	/* Answers every history read in flight with HERR_CLOSED. */
	link_close(&s->ps);
	link_close(&s->cmd);
	link_close(&s->sq);
	link_close(&s->sw);
	cluster_async_free(s->cl);
	for (o = s->q_head; o != NULL; o = next) {
		next = o->next;
		if (o->kind == OP_HISTORY)
			hub_history_done(s->hub, o->req, NULL, HERR_CLOSED);
		free(o);
	}
	while (s->q_lost != NULL) {
		struct hub_req *req = s->q_lost;

		s->q_lost = req->be_next;
		hub_history_done(s->hub, req, NULL, HERR_CLOSED);
	}
	hist_cancel_retries(s, HERR_CLOSED);
	if (s->ev_ops != NULL)
		event_free(s->ev_ops);
	if (s->ev_reconnect != NULL)
		event_free(s->ev_reconnect);
	if (s->ev_timeout != NULL)
		event_free(s->ev_timeout);
	if (s->ev_canary != NULL)
		event_free(s->ev_canary);
	if (s->ev_watch != NULL)
		event_free(s->ev_watch);
	for (struct umap_node *n = umap_first(&s->chans), *hnext; n != NULL; n = hnext) {
		hnext = umap_next(&s->chans, n);
		free(CHAN(n));
	}
	umap_free(&s->chans);
	free(s->bsub);
	free(s->bunsub);
	pthread_mutex_destroy(&s->q_lock);
	pthread_mutex_destroy(&s->st_lock);
	free(s);
}

void sub_set_event_cb(struct sub *s, sub_event_fn fn, void *ud)
{
	s->ev_fn = fn;
	s->ev_ud = ud;
}

void sub_get_status(struct sub *s, struct sub_status *st)
{
	pthread_mutex_lock(&s->st_lock);
	*st = s->st;
	pthread_mutex_unlock(&s->st_lock);
}
