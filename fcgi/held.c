/*
 * The event loop of herald-fcgi: idle connections and held requests.  See
 * held.h for what it owns and app.h for the threads.
 *
 * A held request is a struct held: its hub connection, its FastCGI
 * connection (non-blocking), three events (the socket readable: nginx
 * closed it or sent something; writable or woken by the hub; the timer) and
 * an output buffer of whole FastCGI records.  Messages are taken from the
 * hub only when the buffer is empty, so what a held request holds beyond
 * its struct is at most one batch, and the hub's queue limits apply as on
 * WebSocket.
 */
#include "config.h"

#include "held.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "app.h"
#include "clock.h"
#include "err.h"
#include "fcgi_record.h"
#include "handlers.h"
#include "hub.h"
#include "jitter.h"
#include "log.h"
#include "reply.h"
#include "revoke.h"
#include "sse.h"
#include "sub.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* Messages are written in batches of about this size. */
#define BATCH_BYTES (64 * 1024)
/* The idle thread looks for connections idle fcgi_idle_timeout (nginx
 * forgot them) a quarter of it apart, within these bounds. */
#define IDLE_SWEEP_MIN_MS 250
#define IDLE_SWEEP_MAX_MS 5000
/* The most idle connections closed at once when descriptors run out
 * (accept_pause). */
#define IDLE_RECLAIM 64
/* Connections accepted per wake-up of the listener, so others get a turn;
 * the loop reads the requests of the first ACCEPT_READ itself, the rest go
 * to the workers unread (a burst of new streams then drains from the
 * listen backlog at the accept rate, the workers reading in parallel,
 * instead of overflowing it: nginx answers 502 to a connect it refuses). */
#define ACCEPT_BURST 1024
#define ACCEPT_READ 64
/* A stream without a cursor sends its head with its first event (the
 * cursor, once the subscription is up and the tail read): one write, and
 * the client's open means live.  If that takes longer, the head goes alone
 * after this long. */
#define HEAD_WAIT_MS 1000
/* A request the loop reads itself fits in this much (an SSE request through
 * nginx is about 1 KiB); a larger one goes to a worker unread. */
#define PEEK_MAX 8192

struct held {
	struct hub_conn hc;
	struct held_loop *l;
	struct held *prev, *next;   /* the loop's list */
	int fd;
	unsigned reqid;
	int kind;                   /* ROUTE_SSE or ROUTE_POLL */
	int attached;
	int opened;                 /* the response began (held_open): until then
				     * the hub's messages wait in its queue */
	int woken;                  /* the hub woke it before it opened */
	int ending;                 /* the end records are in the buffer */
	atomic_int hub_closed;      /* 0 or the hub's enum hub_close_reason */
	long long end_ms;           /* monotonic: lifetime, token expiry or poll wait */
	long long hb_ms;            /* monotonic: next heartbeat; 0 none */
	long long stall_ms;         /* monotonic: a blocked write gives up; 0 none */
	long long head_ms;          /* monotonic: an SSE head waiting for the stream's
				     * cursor goes out alone by then; 0 none */
	unsigned char *ob;          /* whole FastCGI records */
	size_t olen, ooff, ocap;
	unsigned limit;             /* poll: entries per answer */
	long wait_s;                /* poll: how long to hold it */
	int has_since;              /* poll: the request's cursor */
	struct cursor since;
	long long exp;              /* the token's expiry (s since the epoch; 0 none) */
	struct sub_call *admit;     /* the revocation check in flight, or NULL */
	char user[AUTH_USER_MAX + 1];
	char jti[AUTH_JTI_MAX + 1];  /* the token's, for hc.jti */
	struct event rev, wev, tev;
};

/*
 * A connection kept alive between requests waits in idle_ep, an epoll set
 * the workers wait on themselves (one at a time: held_next), armed once
 * (EPOLLONESHOT).  Its request disarms it, so it leaves no watch to delete
 * when a worker takes it; the worker that answered re-arms it
 * (EPOLL_CTL_MOD): no thread but the one that answers it wakes for a poll.
 * A descriptor closed anywhere (by libfcgi in a worker, too) leaves the set
 * by itself, and a disarmed one never reports.
 *
 * Each descriptor number has a slot in l->idle_slot, under idle_mu: its
 * place in the list of idle connections (oldest closed first when they
 * time out or descriptors run out) and the generation of its watch, which
 * its event carries.  An event whose generation is no longer the slot's
 * (the idle thread closed the connection after the event was taken, and
 * the number may be another connection's by now) is ignored.  A waiting
 * slot's generation is odd; taking or closing it makes it even.
 */
struct idle {
	int prev, next;             /* descriptors; newest first; -1: none */
	unsigned gen;               /* odd: waiting, armed with this */
	unsigned since_s;           /* idle since (monotonic seconds) */
};

/* A new connection whose request has not arrived yet: the loop watches it
 * (nginx writes it at once: the loop reads it there and then). */
struct fresh {
	struct held_loop *l;
	struct fresh *prev, *next;
	int fd;
	struct event ev;
};

/* A connection with a request, for a worker; req NULL: not read yet. */
struct qent {
	int fd;
	unsigned flags;             /* HELD_PARTIAL, HELD_NONBLOCKING */
	struct held_req *req;
};

/* A request handed over by a worker. */
struct handoff {
	struct handoff *next;
	int fd;
	int nonblocking;            /* fd is in O_NONBLOCK already */
	unsigned reqid;
	struct route rt;
};

struct held_loop {
	struct event_base *base;
	int listen_fd;
	struct event *lev, *lpause; /* the listener; its pause after EMFILE */
	struct event *in_ev;       /* workers handed something over */
	struct event *stop_ev;
	struct event *trim_ev;      /* gives freed memory back once nothing is held */
	struct held *held;         /* loop thread only */
	struct fresh *fresh;       /* loop thread only */
	struct jitter jit;         /* loop thread only: where in its last tenth a stream ends */
	pthread_mutex_t idle_mu;   /* guards the slots, the idle list, idle_closed */
	struct idle *idle_slot;    /* by descriptor */
	int idle_nslot;
	int idle_head, idle_tail;  /* newest first; -1: none */
	int idle_closed;           /* stopping: no connection waits any more */
	int idle_ep;               /* idle connections, and q_wake (data IDLE_QUEUE) */
	int idle_wake;             /* eventfd of the idle thread: stop, or reclaim */
	pthread_mutex_t lead_mu;   /* the worker that waits on idle_ep */
	atomic_int idle_stop_req;  /* held_stop: the idle thread ends */
	atomic_long idle_reclaim_req; /* idle connections to close for new ones */
	pthread_t idle_thread;
	int idle_started;

	int q_wake;                /* eventfd in idle_ep: the queue has more */
	pthread_mutex_t mu;        /* guards what follows */
	struct qent *q;            /* ring of connections with a request */
	size_t q_head, q_len, q_cap;
	struct handoff *hand;      /* held requests from workers */
	int stopping;

	long long revoke_warn_ms;  /* loop thread: the last fail-open warning */

	atomic_long n_streams, n_polls, n_idle;
	atomic_ulong events, heartbeats, stalled, reclaimed;
};

/* --- the workers' queue ------------------------------------------------------ */

/* idle_ep's event for q_wake (a descriptor's event holds it and its
 * generation, which is never all ones). */
#define IDLE_QUEUE UINT64_MAX

/* The queue has something: the worker waiting on idle_ep (if any) wakes. */
static void queue_wake(struct held_loop *l)
{
	uint64_t one = 1;

	if (write(l->q_wake, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("cannot wake the workers: %s", strerror(errno));
}

/*
 * Queue fd for a worker.  Only a push to an empty queue wakes one: every
 * worker looks at the queue before it waits on idle_ep (held_next), so
 * what is queued behind goes to the next worker that is free.
 */
static int queue_push(struct held_loop *l, int fd, struct held_req *req, unsigned flags)
{
	int wake;

	pthread_mutex_lock(&l->mu);
	if (l->q_len == l->q_cap) {
		size_t cap = l->q_cap ? l->q_cap * 2 : 64;
		struct qent *q = malloc(cap * sizeof *q);

		if (q == NULL) {
			pthread_mutex_unlock(&l->mu);
			return HERR_NOMEM;
		}
		for (size_t i = 0; i < l->q_len; i++)
			q[i] = l->q[(l->q_head + i) % l->q_cap];
		free(l->q);
		l->q = q;
		l->q_cap = cap;
		l->q_head = 0;
	}
	wake = l->q_len == 0;
	l->q[(l->q_head + l->q_len) % l->q_cap] = (struct qent){fd, flags, req};
	l->q_len++;
	pthread_mutex_unlock(&l->mu);
	if (wake)
		queue_wake(l);
	return 0;
}

/* The queue's next entry (wait: partial ones too), or -1: none, or -2:
 * none and stopping.  l->mu held. */
static int queue_pop(struct held_loop *l, int wait, struct held_req **req, unsigned *flags)
{
	if (l->q_len == 0 || (!wait && (l->q[l->q_head].flags & HELD_PARTIAL) != 0))
		return l->stopping ? -2 : -1;
	const struct qent *e = &l->q[l->q_head];

	*req = e->req;
	*flags = e->flags;
	l->q_head = (l->q_head + 1) % l->q_cap;
	l->q_len--;
	return e->fd;
}

/*
 * The idle connections a worker took from idle_ep with one epoll_wait and
 * has not yet read: held_next gives them before anything else, and
 * held_unstash queues what the worker's batch did not take.
 */
static _Thread_local int stash[HELD_BATCH];
static _Thread_local int stash_len, stash_pos;

static int idle_take(struct held_loop *l, uint64_t data);
static void idle_watch(struct held_loop *l, int fd);

/*
 * fd, one of several taken in one wait: stays in the stash when its
 * request is there whole (or nginx closed it, or it is not FastCGI:
 * libfcgi's read says so and closes it).  One still arriving goes to the
 * queue as partial, for a worker that may wait for it, so that a peer
 * hanging mid-request never holds up the requests taken with it; one with
 * nothing to read after all waits again.
 */
static void stash_check(struct held_loop *l, int fd)
{
	unsigned char buf[PEEK_MAX];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		idle_watch(l, fd);
	} else if (n > 0 && fcgi_request_complete(buf, (size_t)n) == 0) {
		if (queue_push(l, fd, NULL, HELD_PARTIAL) != 0)
			close(fd); /* nginx answers 502; the client retries */
	} else {
		stash[stash_len++] = fd;
	}
}

int held_next(struct held_loop *l, int wait, struct held_req **req, unsigned *flags)
{
	struct epoll_event evs[HELD_BATCH];
	int fd, n, err, took[HELD_BATCH], ntook;

	*req = NULL;
	*flags = 0;
	if (stash_pos < stash_len)
		return stash[stash_pos++];
	stash_len = stash_pos = 0;
	pthread_mutex_lock(&l->mu);
	fd = queue_pop(l, wait, req, flags);
	pthread_mutex_unlock(&l->mu);
	if (fd != -1 || !wait)
		return fd < 0 ? -1 : fd; /* -2: stopping */
	/* Leader and followers: one worker at a time waits on idle_ep (the
	 * others for lead_mu), takes up to HELD_BATCH connections whose
	 * request arrived, and lets the next one wait while it answers them. */
	for (;;) {
		pthread_mutex_lock(&l->lead_mu);
		pthread_mutex_lock(&l->mu);
		fd = queue_pop(l, 1, req, flags);
		pthread_mutex_unlock(&l->mu);
		if (fd != -1) {
			pthread_mutex_unlock(&l->lead_mu);
			return fd < 0 ? -1 : fd; /* -2: stopping */
		}
		n = epoll_wait(l->idle_ep, evs, HELD_BATCH, -1);
		err = errno;
		for (int k = 0; k < n; k++) {
			uint64_t v;

			if (evs[k].data.u64 == IDLE_QUEUE && read(l->q_wake, &v, sizeof v) < 0 &&
			    errno != EAGAIN)
				log_warn("worker: reading its wake-up: %s", strerror(errno));
		}
		pthread_mutex_unlock(&l->lead_mu);
		if (n < 0 && err != EINTR) {
			log_error("worker: epoll_wait: %s", strerror(err));
			usleep(100000);
		}
		ntook = 0;
		pthread_mutex_lock(&l->idle_mu);
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u64 != IDLE_QUEUE && (fd = idle_take(l, evs[k].data.u64)) >= 0)
				took[ntook++] = fd;
		}
		pthread_mutex_unlock(&l->idle_mu);
		/* one alone the worker reads whatever comes (as a worker waiting
		 * for a partial one would); of several, each must be there whole */
		if (ntook == 1)
			stash[stash_len++] = took[0];
		for (int k = 0; ntook > 1 && k < ntook; k++)
			stash_check(l, took[k]);
		if (stash_len > 0)
			return stash[stash_pos++];
	}
}

void held_unstash(struct held_loop *l)
{
	while (stash_pos < stash_len) {
		int fd = stash[stash_pos++];

		if (queue_push(l, fd, NULL, 0) != 0)
			close(fd); /* nginx answers 502; the client retries */
	}
	stash_len = stash_pos = 0;
}

static void idle_watch(struct held_loop *l, int fd);

void held_keep(struct held_loop *l, int fd)
{
	idle_watch(l, fd);
}

void held_hold(struct held_loop *l, int fd, int nonblocking, unsigned reqid,
	       const struct route *rt)
{
	struct handoff *h = malloc(sizeof *h);

	if (h == NULL) {
		/* nginx sees the connection close and answers 502; the client retries */
		log_error("out of memory holding a request for %s: closing it", rt->id.user);
		close(fd);
		return;
	}
	h->fd = fd;
	h->nonblocking = nonblocking;
	h->reqid = reqid;
	h->rt = *rt;
	pthread_mutex_lock(&l->mu);
	h->next = l->hand;
	l->hand = h;
	pthread_mutex_unlock(&l->mu);
	event_active(l->in_ev, EV_READ, 1);
}

void held_get_stats(struct held_loop *l, struct held_stats *st)
{
	memset(st, 0, sizeof *st);
	st->streams = atomic_load(&l->n_streams);
	st->polls = atomic_load(&l->n_polls);
	st->idle = atomic_load(&l->n_idle);
	pthread_mutex_lock(&l->mu);
	st->queued = (long)l->q_len;
	pthread_mutex_unlock(&l->mu);
	st->events = atomic_load(&l->events);
	st->heartbeats = atomic_load(&l->heartbeats);
	st->stalled = atomic_load(&l->stalled);
	st->reclaimed = atomic_load(&l->reclaimed);
}

/* --- idle connections --------------------------------------------------------- */

/* fd's slot leaves the idle list, its generation even.  l->idle_mu held. */
static void idle_unlink(struct held_loop *l, int fd)
{
	struct idle *i = &l->idle_slot[fd];

	if (i->prev >= 0)
		l->idle_slot[i->prev].next = i->next;
	else
		l->idle_head = i->next;
	if (i->next >= 0)
		l->idle_slot[i->next].prev = i->prev;
	else
		l->idle_tail = i->prev;
	i->gen++;
	atomic_fetch_sub(&l->n_idle, 1);
}

/* A slot for every descriptor up to fd.  l->idle_mu held. */
static int idle_slots(struct held_loop *l, int fd)
{
	struct idle *p;
	int n = l->idle_nslot > 0 ? l->idle_nslot : 256;

	if (fd < l->idle_nslot)
		return 0;
	while (n <= fd)
		n *= 2;
	p = realloc(l->idle_slot, (size_t)n * sizeof *p);
	if (p == NULL)
		return HERR_NOMEM;
	memset(p + l->idle_nslot, 0, (size_t)(n - l->idle_nslot) * sizeof *p);
	l->idle_slot = p;
	l->idle_nslot = n;
	return 0;
}

/*
 * Worker, after idle_ep reported data (fd and generation): fd when its
 * connection still waits there, now taken (its watch is disarmed); -1 when
 * the idle thread closed it meanwhile.  l->idle_mu held.
 */
static int idle_take(struct held_loop *l, uint64_t data)
{
	int fd = (int)(uint32_t)data;

	if (fd >= l->idle_nslot || l->idle_slot[fd].gen != (unsigned)(data >> 32) ||
	    (l->idle_slot[fd].gen & 1) == 0)
		return -1;
	idle_unlink(l, fd);
	return fd;
}

static void hold_one(struct held_loop *l, struct handoff *ho);

int held_fd_blocking(int fd)
{
	static const struct timeval to = {SEND_TIMEOUT_S, 0};

	if (fcntl(fd, F_SETFL, 0) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &to, sizeof to) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &to, sizeof to) != 0)
		return -1;
	return 0;
}

/*
 * Give fd, accepted here, to a worker with its request q (NULL: unread;
 * partial: not all of it has arrived).  A connection accepted here is
 * non-blocking without timeouts: a worker reads and writes with blocking
 * calls, bounded so that a stuck peer never holds it long.  One whose
 * request is there whole goes as it is (HELD_NONBLOCKING): the worker's
 * read takes what is there, and the worker makes it blocking only when it
 * writes an answer; a stream it holds comes back without the four calls there and
 * back (fcntl, two setsockopt, fcntl), half the streams of a burst.
 */
static void to_worker(struct held_loop *l, int fd, struct held_req *q, int partial)
{
	unsigned flags = partial ? HELD_PARTIAL : HELD_NONBLOCKING;

	if (partial && held_fd_blocking(fd) != 0)
		goto fail;
	if (queue_push(l, fd, q, flags) == 0)
		return;
fail:
	if (q != NULL) {
		FCGX_Free(&q->r, 0);
		free(q);
	}
	close(fd); /* nginx answers 502; the client retries */
}

int held_read(FCGX_Request *r, int fd)
{
	r->ipcFd = fd;
	r->keepConnection = 1; /* so Accept's implicit Finish keeps fd */
	if (FCGX_Accept_r(r) == 0)
		return 0;
	r->ipcFd = -1; /* nginx closed it, or sent no valid request: libfcgi closed it */
	return -1;
}

int held_release(FCGX_Request *r, unsigned *reqid)
{
	char drain[256];
	int fd;

	while (FCGX_GetStr(drain, sizeof drain, r->in) > 0)
		;
	*reqid = (unsigned)r->requestId;
	FCGX_Free(r, 0);
	fd = r->ipcFd;
	r->ipcFd = -1;
	return fd;
}

/*
 * A request has arrived whole on fd, a new connection: let libfcgi read it
 * here (every byte it reads is there, so even a non-blocking fd serves),
 * read its route, and hold an SSE stream at once; anything else goes to a
 * worker with its route.  No thread hand-off, no wake-up, for a stream.
 */
static void loop_read(struct held_loop *l, int fd)
{
	struct held_req *q = malloc(sizeof *q);
	struct io io;

	if (q == NULL || FCGX_InitRequest(&q->r, -1, 0) != 0) {
		free(q);
		to_worker(l, fd, NULL, 0);
		return;
	}
	if (held_read(&q->r, fd) != 0) {
		FCGX_Free(&q->r, 0);
		free(q);
		return;
	}
	io.r = &q->r;
	io.nonblocking = NULL; /* the loop writes nothing that does not fit */
	handle_route(&io, &q->rt);
	if (handle_on_loop(&q->rt) && handle_routed(&io, NULL, &q->rt) == HANDLE_HOLD) {
		struct handoff ho = {.rt = q->rt, .nonblocking = 1};

		ho.fd = held_release(&q->r, &ho.reqid);
		free(q);
		hold_one(l, &ho);
		return;
	}
	to_worker(l, fd, q, 0);
}

/*
 * Does the loop read a request arriving on a new connection itself?  nginx
 * opens one per SSE stream (no fastcgi_keep_conn there), while a kept-alive
 * one carries polls, which the workers take and read themselves
 * (held_next), in parallel, as fast and with a shorter tail under a
 * closed-loop load (1,000 pollers: p99 86 ms against 109 when the loop
 * read them).  An HMAC check costs microseconds; an RS256 or ES256 one tens
 * of them, too long for the thread that writes every held stream: a worker
 * reads those.
 */
static int loop_reads(void)
{
	return app.conf.jwt_alg <= CONF_ALG_HS512;
}

/*
 * Bytes arrived on fd, accepted here: a request that
 * is there whole, and that the loop may read (loop_reads, and not past the
 * first ACCEPT_READ of a burst), the loop reads; any other, a worker reads
 * (its libfcgi waits for whatever is still to come: a request not yet whole
 * goes as partial: only a worker that may wait takes it, and meanwhile
 * another waits for the next requests, so a peer that hangs mid-request
 * never keeps the queue from the others).
 * buf holds the n > 0 bytes a peek (up to PEEK_MAX) saw.  While stopping, a
 * stream is refused (hold_one) and a worker answers anything else 503.
 */
static void request_arrived(struct held_loop *l, int fd, int may_read,
			    const unsigned char *buf, ssize_t n)
{
	int whole = fcgi_request_complete(buf, (size_t)n);

	if (may_read && whole == 1)
		loop_read(l, fd);
	else
		to_worker(l, fd, NULL, whole == 0);
}

/*
 * Idle thread: close, oldest first, the connections idle since before
 * older_s (fcgi_idle_timeout: nginx forgot them), at most max of them;
 * all: every one, and none may wait any more (stopping).  How many closed.
 * A worker that took one's event meanwhile finds its generation changed.
 */
static long idle_close(struct held_loop *l, long long older_s, long max, int all)
{
	long n = 0;

	pthread_mutex_lock(&l->idle_mu);
	if (all)
		l->idle_closed = 1;
	while (l->idle_tail >= 0 &&
	       (all || ((long long)l->idle_slot[l->idle_tail].since_s <= older_s && n < max))) {
		int fd = l->idle_tail;

		idle_unlink(l, fd);
		close(fd);
		n++;
	}
	pthread_mutex_unlock(&l->idle_mu);
	return n;
}

/* Out of descriptors: close up to max of the oldest idle connections,
 * counted.  How many. */
static long idle_reclaim(struct held_loop *l, long max)
{
	long n = idle_close(l, LLONG_MAX, max, 0);

	atomic_fetch_add(&l->reclaimed, (unsigned long)n);
	return n;
}

long held_reclaim(struct held_loop *l, long max)
{
	long n = idle_reclaim(l, max);

	if (n > 0) {
		log_warn("out of descriptors for a Redis connection: closed %ld idle "
			 "kept-alive connection%s (oldest first) to make way",
			 n, n == 1 ? "" : "s");
	}
	return n;
}

static unsigned mono_s(void)
{
	return (unsigned)(clock_mono_us() / 1000000);
}

static void idle_sweep(struct held_loop *l, int all)
{
	long long old = (long long)mono_s() - app.conf.fcgi_idle_timeout;

	idle_close(l, old, LONG_MAX, all);
}

/* Idle thread: idle_wake reported.  1 to stop; else the connections the
 * loop asked for (idle_reclaim) are closed. */
static int idle_woken(struct held_loop *l)
{
	uint64_t v;
	long want;

	if (read(l->idle_wake, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("idle thread: reading its wake-up: %s", strerror(errno));
	if (atomic_load(&l->idle_stop_req))
		return 1;
	want = atomic_exchange(&l->idle_reclaim_req, 0);
	if (want > 0)
		idle_reclaim(l, want);
	return 0;
}

/*
 * The idle thread: closes the connections idle past fcgi_idle_timeout,
 * those the loop asks for when descriptors run out, and all of them at
 * shutdown.  The workers take the ones whose request arrives.
 */
static void *idle_main(void *arg)
{
	struct held_loop *l = arg;
	long long swept = clock_mono_us();
	long period_ms = app.conf.fcgi_idle_timeout * 1000 / 4;

	if (period_ms < IDLE_SWEEP_MIN_MS)
		period_ms = IDLE_SWEEP_MIN_MS;
	if (period_ms > IDLE_SWEEP_MAX_MS)
		period_ms = IDLE_SWEEP_MAX_MS;
	for (;;) {
		struct pollfd p = {.fd = l->idle_wake, .events = POLLIN};
		int n = poll(&p, 1, (int)period_ms);

		if ((n > 0 && idle_woken(l)) || (n < 0 && errno != EINTR)) {
			idle_sweep(l, 1);
			return NULL;
		}
		if (clock_mono_us() - swept >= (long long)period_ms * 1000) {
			idle_sweep(l, 0);
			swept = clock_mono_us();
		}
	}
}

/* Any thread (a worker's held_keep, mostly): fd, kept alive, waits for its
 * next request in idle_ep. */
static void idle_watch(struct held_loop *l, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT};
	struct idle *i;

	/* armed under the lock: the idle thread, stopping, closes every
	 * connection in the list, and none may be armed after that */
	pthread_mutex_lock(&l->idle_mu);
	if (l->idle_closed || idle_slots(l, fd) != 0)
		goto fail;
	i = &l->idle_slot[fd];
	i->gen++; /* odd: waiting (taken or closed, it was even) */
	ev.data.u64 = (uint64_t)i->gen << 32 | (uint32_t)fd;
	/* MOD for a descriptor idle_ep knows (a worker's kept-alive
	 * connection), ADD for a new one */
	if (epoll_ctl(l->idle_ep, EPOLL_CTL_MOD, fd, &ev) != 0 &&
	    (errno != ENOENT || epoll_ctl(l->idle_ep, EPOLL_CTL_ADD, fd, &ev) != 0)) {
		i->gen++;
		goto fail;
	}
	i->since_s = mono_s();
	i->prev = -1;
	i->next = l->idle_head;
	if (l->idle_head >= 0)
		l->idle_slot[l->idle_head].prev = fd;
	else
		l->idle_tail = fd;
	l->idle_head = fd;
	atomic_fetch_add(&l->n_idle, 1);
	pthread_mutex_unlock(&l->idle_mu);
	return;
fail:
	pthread_mutex_unlock(&l->idle_mu);
	close(fd);
}

static void fresh_free(struct fresh *f, int close_fd)
{
	struct held_loop *l = f->l;

	event_del(&f->ev);
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		l->fresh = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	if (close_fd)
		close(f->fd);
	atomic_fetch_sub(&l->n_idle, 1);
	free(f);
}

static void fresh_close_all(struct held_loop *l)
{
	for (struct fresh *f = l->fresh, *next; f != NULL; f = next) {
		next = f->next;
		fresh_free(f, 1);
	}
}

static void on_fresh(evutil_socket_t fd, short what, void *arg)
{
	struct fresh *f = arg;
	struct held_loop *l = f->l;
	unsigned char buf[PEEK_MAX];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		fresh_free(f, 1);
		return;
	}
	n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return; /* spurious: the event is persistent */
	if (n <= 0) {
		fresh_free(f, 1); /* nginx closed it */
		return;
	}
	fresh_free(f, 0);
	request_arrived(l, fd, loop_reads(), buf, n);
}

/* Watch a new connection for its request. */
static void fresh_watch(struct held_loop *l, int fd)
{
	struct fresh *f;
	struct timeval tv = {app.conf.fcgi_idle_timeout, 0};

	if (l->stopping || (f = malloc(sizeof *f)) == NULL) {
		close(fd);
		return;
	}
	f->l = l;
	f->fd = fd;
	event_assign(&f->ev, l->base, fd, EV_READ | EV_PERSIST, on_fresh, f);
	if (event_add(&f->ev, &tv) != 0) {
		close(fd);
		free(f);
		return;
	}
	f->prev = NULL;
	f->next = l->fresh;
	if (l->fresh != NULL)
		l->fresh->prev = f;
	l->fresh = f;
	atomic_fetch_add(&l->n_idle, 1);
}

/*
 * Out of descriptors (or memory) at accept: pause new connections.  As
 * nginx reuses its kept-alive connections when it runs out, the oldest
 * idle kept-alive connections are closed for new ones (nginx opens
 * another when it needs one): the idle thread closes up to
 * IDLE_RECLAIM of them and accepting resumes after 10 ms; with none
 * idle, after 200 ms.
 */
static void accept_pause(struct held_loop *l, int err)
{
	static const struct timeval brief = {0, 10000}, pause = {0, 200000};
	long idle = atomic_load(&l->n_idle); /* with new ones not yet read */
	uint64_t one = 1;

	event_del(l->lev);
	if ((err == EMFILE || err == ENFILE) && idle > 0 && l->idle_wake >= 0) {
		long n = idle < IDLE_RECLAIM ? idle : IDLE_RECLAIM;

		log_warn("accept: %s: closing up to %ld of the %ld idle connections (oldest "
			 "kept-alive first) for new ones",
			 strerror(err), n, idle);
		atomic_fetch_add(&l->idle_reclaim_req, n);
		if (write(l->idle_wake, &one, sizeof one) < 0)
			log_warn("cannot wake the idle thread: %s", strerror(errno));
		evtimer_add(l->lpause, &brief);
		return;
	}
	log_warn("accept: %s: pausing new connections for 200 ms", strerror(err));
	evtimer_add(l->lpause, &pause);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct held_loop *l = arg;
	unsigned char buf[PEEK_MAX];
	ssize_t n;
	int may_read;

	(void)what;
	for (int k = 0; k < ACCEPT_BURST; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				accept_pause(l, errno);
			return; /* EAGAIN, or aborted connections */
		}
		/* nginx writes the request as soon as it connects: when it is
		 * there already, no watch */
		may_read = loop_reads() && k < ACCEPT_READ;
		n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
		if (n > 0)
			request_arrived(l, fd, may_read, buf, n);
		else
			fresh_watch(l, fd);
	}
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct held_loop *l = arg;

	(void)fd;
	(void)what;
	if (!l->stopping)
		event_add(l->lev, NULL);
}

/* --- held requests: output ------------------------------------------------------ */

static int ob_reserve(struct held *h, size_t n)
{
	size_t cap;
	unsigned char *p;

	if (h->olen + n <= h->ocap)
		return 0;
	cap = h->ocap ? h->ocap : 512;
	while (cap < h->olen + n)
		cap *= 2;
	p = realloc(h->ob, cap);
	if (p == NULL)
		return HERR_NOMEM;
	h->ob = p;
	h->ocap = cap;
	return 0;
}

/* Append len bytes of response as STDOUT records. */
static int ob_stdout(struct held *h, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (ob_reserve(h, fcgi_stdout_size(len)) != 0)
		return HERR_NOMEM;
	h->olen += fcgi_stdout_put(h->ob + h->olen, h->reqid, data, len);
	return 0;
}

/* One hub message as an SSE event, in one record when it fits (always, for
 * envelopes within the 64 KiB payload limit). */
static int ob_event(struct held *h, const struct hub_msg *m)
{
	long n = sse_msg(NULL, 0, m);

	if (n < 0)
		return 0; /* a message we cannot frame (cannot happen for hub ids): skip */
	if ((size_t)n <= FCGI_CONTENT_MAX) {
		if (ob_reserve(h, FCGI_HEADER_LEN + (size_t)n + 1) != 0)
			return HERR_NOMEM;
		fcgi_header_put(h->ob + h->olen, FCGI_T_STDOUT, h->reqid, (size_t)n, 0);
		sse_msg((char *)h->ob + h->olen + FCGI_HEADER_LEN, (size_t)n + 1, m);
		h->olen += FCGI_HEADER_LEN + (size_t)n;
	} else {
		char *tmp = malloc((size_t)n + 1);
		int rc;

		if (tmp == NULL)
			return HERR_NOMEM;
		sse_msg(tmp, (size_t)n + 1, m);
		rc = ob_stdout(h, tmp, (size_t)n);
		free(tmp);
		if (rc != 0)
			return rc;
	}
	if (m->kind != HUB_MSG_CURSOR)
		atomic_fetch_add(&h->l->events, 1);
	return 0;
}

/* The response ends: the empty STDOUT record and END_REQUEST. */
static void ob_end(struct held *h)
{
	if (h->ending)
		return;
	h->ending = 1;
	if (ob_reserve(h, FCGI_END_LEN) == 0)
		h->olen += fcgi_end_put(h->ob + h->olen, h->reqid, 0);
}

static void held_arm(struct held *h);
static void held_start(struct held *h);
static void held_open(struct held *h);
static void admit_fail_open(struct held *h, const char *why);

static void held_free(struct held *h)
{
	struct held_loop *l = h->l;

	if (h->attached)
		hub_detach(app.hub, &h->hc);
	sub_call_cancel(h->admit);
	event_del(&h->rev);
	event_del(&h->wev);
	event_del(&h->tev);
	close(h->fd);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		l->held = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	atomic_fetch_sub(h->kind == ROUTE_SSE ? &l->n_streams : &l->n_polls, 1);
	free(h->ob);
	free(h);
	if (l->held == NULL && !evtimer_pending(l->trim_ev, NULL)) {
		static const struct timeval later = {1, 0};

		evtimer_add(l->trim_ev, &later);
	}
}

/* Write what the buffer holds: 0 all written, 1 blocked (EV_WRITE armed),
 * -1 the connection failed. */
static int held_flush(struct held *h)
{
	int progress = 0;

	while (h->ooff < h->olen) {
		ssize_t n = send(h->fd, h->ob + h->ooff, h->olen - h->ooff, MSG_NOSIGNAL);

		if (n > 0) {
			h->ooff += (size_t)n;
			progress = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(&h->wev, NULL);
			/* the stall clock restarts only when bytes move */
			if (h->stall_ms == 0 || progress) {
				h->stall_ms = clock_mono_ms() + SEND_TIMEOUT_S * 1000;
				held_arm(h);
			}
			return 1;
		}
		return -1;
	}
	h->olen = h->ooff = 0;
	if (h->stall_ms != 0) {
		h->stall_ms = 0;
		held_arm(h);
	}
	/* an idle stream holds no buffer: most of the time it has nothing to send */
	free(h->ob);
	h->ob = NULL;
	h->ocap = 0;
	return 0;
}

/* A long-poll answers with m (NULL: nothing) and what else the hub has for
 * it, up to its limit. */
static void poll_answer(struct held *h, struct hub_msg *m)
{
	struct poll_doc p;
	struct metrics_buf out;

	poll_doc_init(&p, h->has_since, &h->since);
	if (m == NULL && p.n < h->limit)
		m = hub_pop(app.hub, &h->hc);
	for (; m != NULL; m = p.n < h->limit ? hub_pop(app.hub, &h->hc) : NULL) {
		if (m->kind == HUB_MSG_RESET)
			p.truncated = 1;
		else
			poll_doc_add(&p, m->data, m->len, m->has_id ? &m->id : NULL);
		hub_msg_unref(m);
	}
	p.more = hub_has_more(app.hub, &h->hc);
	hub_detach(app.hub, &h->hc);
	h->attached = 0;
	metrics_buf_init(&out);
	poll_doc_reply(&p, app.conf.poll_interval, &out);
	atomic_fetch_add(&app.n_polls, 1);
	if (out.err || ob_stdout(h, out.data, out.len) != 0)
		log_warn("poll for %s: out of memory for the answer", h->user);
	metrics_buf_free(&out);
	ob_end(h);
}

/*
 * The control channel closed h (enum hub_close_reason DISCONNECT or
 * REVOKED): a stream gets `event: disconnect` and ends, so herald.js stops
 * (disconnect) or fetches a new token (revoked) instead of resuming; a
 * long-poll answers 403 disconnected or 401 revoked.
 */
static void held_disconnect(struct held *h, int why)
{
	const char *reason = why == HUB_CLOSE_DISCONNECT ? "disconnect" : "revoked";

	if (h->kind == ROUTE_SSE) {
		char ev[96];
		int n = snprintf(ev, sizeof ev, "event: disconnect\ndata: {\"reason\":\"%s\"}\n\n",
				 reason);

		ob_stdout(h, ev, (size_t)n);
	} else {
		struct route e = {.kind = ROUTE_POLL};
		struct metrics_buf out;

		if (why == HUB_CLOSE_DISCONNECT) {
			e.status = 403;
			e.error = "disconnected";
			snprintf(e.detail, sizeof e.detail, "disconnected by the server");
		} else {
			e.status = 401;
			e.error = "invalid_token";
			snprintf(e.detail, sizeof e.detail, "revoked");
		}
		metrics_buf_init(&out);
		reply_error(&out, &e);
		atomic_fetch_add(&app.n_errors, 1);
		if (out.err || ob_stdout(h, out.data, out.len) != 0)
			log_warn("poll for %s: out of memory for the answer", h->user);
		metrics_buf_free(&out);
	}
	log_debug("%s for %s: closed by the control channel (%s)",
		  h->kind == ROUTE_SSE ? "SSE" : "poll", h->user, reason);
	hub_detach(app.hub, &h->hc);
	h->attached = 0;
	ob_end(h);
}

/* A stream's queued messages into its buffer, up to BATCH_BYTES. */
static void sse_fill(struct held *h)
{
	while (h->olen < BATCH_BYTES) {
		struct hub_msg *m = hub_pop(app.hub, &h->hc);
		int erc;

		if (m == NULL)
			return;
		erc = ob_event(h, m);
		hub_msg_unref(m);
		if (erc != 0) {
			log_warn("SSE for %s: out of memory, ending the stream", h->user);
			ob_end(h);
			return;
		}
	}
}

/* Move the request on: write, take messages, end.  May free h. */
static void held_pump(struct held *h)
{
	if (!h->opened && !h->ending) {
		h->woken = 1; /* the revocation check is still out: held_open pumps */
		return;
	}
	if (h->head_ms != 0) {
		/* whatever is there goes now, the head too */
		h->head_ms = 0;
		held_arm(h);
	}
	/* What the hub queued goes out with the bytes waiting (the head, or a
	 * write that blocked), in one write: the head and the cursor event
	 * reach nginx, and the client, together. */
	if (h->kind == ROUTE_SSE && !h->ending && atomic_load(&h->hub_closed) == 0)
		sse_fill(h);
	for (;;) {
		int rc = held_flush(h);

		if (rc < 0) {
			log_debug("%s for %s: write failed: %s, dropping it",
				  h->kind == ROUTE_SSE ? "SSE" : "poll", h->user,
				  strerror(errno));
			held_free(h);
			return;
		}
		if (rc > 0)
			return; /* EV_WRITE calls us again */
		if (h->ending) {
			held_free(h);
			return;
		}
		if (atomic_load(&h->hub_closed) == HUB_CLOSE_DISCONNECT ||
		    atomic_load(&h->hub_closed) == HUB_CLOSE_REVOKED) {
			held_disconnect(h, atomic_load(&h->hub_closed));
			continue;
		}
		if (h->kind == ROUTE_POLL) {
			struct hub_msg *m = NULL;

			/* answered at the first message, a reset, or the hub's close */
			if (atomic_load(&h->hub_closed) == 0 &&
			    (m = hub_pop(app.hub, &h->hc)) == NULL)
				return;
			poll_answer(h, m);
			continue;
		}
		if (atomic_load(&h->hub_closed) != 0) {
			/* slow, shutdown or a failed history read: the stream ends and
			 * the client resumes from its Last-Event-ID */
			hub_detach(app.hub, &h->hc);
			h->attached = 0;
			ob_end(h);
			continue;
		}
		sse_fill(h);
		if (h->olen == 0)
			return;
	}
}

/* --- held requests: events ------------------------------------------------------ */

static void held_arm(struct held *h)
{
	long long due = h->end_ms, now = clock_mono_ms();
	struct timeval tv;

	if (h->hb_ms != 0 && h->hb_ms < due)
		due = h->hb_ms;
	if (h->stall_ms != 0 && h->stall_ms < due)
		due = h->stall_ms;
	if (h->head_ms != 0 && h->head_ms < due)
		due = h->head_ms;
	due = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(due / 1000);
	tv.tv_usec = (suseconds_t)(due % 1000) * 1000;
	evtimer_add(&h->tev, &tv);
}

static void on_held_timer(evutil_socket_t fd, short what, void *arg)
{
	struct held *h = arg;
	long long now = clock_mono_ms();

	(void)fd;
	(void)what;
	if (h->admit != NULL) {
		sub_call_cancel(h->admit);
		h->admit = NULL;
		admit_fail_open(h, "no answer from Redis in time");
		held_open(h);
		return;
	}
	if (h->stall_ms != 0 && now >= h->stall_ms) {
		log_info("%s for %s: the client read nothing for %d s, dropping it",
			 h->kind == ROUTE_SSE ? "SSE" : "poll", h->user, SEND_TIMEOUT_S);
		atomic_fetch_add(&h->l->stalled, 1);
		held_free(h);
		return;
	}
	if (h->ending || h->stall_ms != 0) {
		held_arm(h); /* writing is blocked: wait for it */
		return;
	}
	if (h->head_ms != 0 && now >= h->head_ms) {
		held_pump(h); /* clears head_ms, arms the timer */
		return;
	}
	if (now >= h->end_ms) {
		if (h->kind == ROUTE_POLL) {
			poll_answer(h, NULL);
		} else {
			log_debug("SSE for %s: lifetime or token expiry reached, ending",
				  h->user);
			hub_detach(app.hub, &h->hc);
			h->attached = 0;
			ob_end(h);
		}
		held_pump(h);
		return;
	}
	if (h->hb_ms != 0 && now >= h->hb_ms) {
		/* the comment for proxies, the named event for the page (sse.h) */
		char hb[64];
		long n = sse_heartbeat(hb, sizeof hb);

		h->hb_ms = now + app.conf.heartbeat * 1000;
		if (n > 0 && (size_t)n < sizeof hb && ob_stdout(h, hb, (size_t)n) == 0)
			atomic_fetch_add(&h->l->heartbeats, 1);
		held_arm(h);
		held_pump(h);
		return;
	}
	held_arm(h);
}

static void on_held_read(evutil_socket_t fd, short what, void *arg)
{
	struct held *h = arg;

	(void)fd;
	(void)what;
	/* nginx closed the connection (the client left) or sent a record
	 * (FCGI_ABORT_REQUEST): either way nobody reads this response any more */
	log_debug("%s for %s: nginx closed the connection",
		  h->kind == ROUTE_SSE ? "SSE" : "poll", h->user);
	held_free(h);
}

static void on_held_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	held_pump(arg);
}

/* The hub's callbacks run with its lock held: only schedule the loop. */
static void hub_wake(struct hub_conn *hc)
{
	struct held *h = container_of(hc, struct held, hc);

	event_active(&h->wev, EV_WRITE, 1);
}

static void hub_close(struct hub_conn *hc, int reason)
{
	struct held *h = container_of(hc, struct held, hc);

	atomic_store(&h->hub_closed, reason);
	event_active(&h->wev, EV_WRITE, 1);
}

static const struct hub_conn_ops held_ops = {hub_wake, hub_close};

/*
 * Answer a request the loop cannot hold and close it.  One send that does
 * not wait: a 503 is small, and the connection's send buffer is empty (its
 * request has just been read), so it fits; a peer that could not take it
 * loses only the answer, never the loop's time.
 */
static void refuse(struct held_loop *l, int fd, unsigned reqid, const char *detail)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	reply_unavailable(&b, detail);
	atomic_fetch_add(&app.n_errors, 1);
	if (!b.err) {
		unsigned char *rec = malloc(fcgi_stdout_size(b.len) + FCGI_END_LEN);

		if (rec != NULL) {
			size_t n = fcgi_stdout_put(rec, reqid, b.data, b.len);

			n += fcgi_end_put(rec + n, reqid, 0);
			(void)!send(fd, rec, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			free(rec);
		}
	}
	metrics_buf_free(&b);
	close(fd);
	(void)l;
}

/* Answer h with b's text (a whole response) and end it.  May free h. */
static void held_answer(struct held *h, struct metrics_buf *b)
{
	atomic_fetch_add(&app.n_errors, 1);
	if (b->err || ob_stdout(h, b->data, b->len) != 0)
		log_warn("%s for %s: out of memory for the answer",
			 h->kind == ROUTE_SSE ? "SSE" : "poll", h->user);
	metrics_buf_free(b);
	ob_end(h);
	/* the deadline the timer keeps while the answer is written */
	h->end_ms = clock_mono_ms() + SEND_TIMEOUT_S * 1000;
	held_pump(h);
}

static void held_unavailable(struct held *h, const char *detail)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	reply_unavailable(&b, detail);
	held_answer(h, &b);
}

/*
 * Attach h to the hub: its subscription (and, for a stream without a
 * cursor, the read of the history's tail) starts now, while the revocation
 * check is out; the response opens once both are through (held_open, from
 * here or on_admit).  May free h.
 */
static void held_start(struct held *h)
{
	int rc;

	if (h->l->stopping) {
		held_unavailable(h, "shutting down");
		return;
	}
	/* A stream without Last-Event-ID starts from the history's tail and
	 * is told it first (sse_msg): its reconnect resumes from there. */
	if (h->kind == ROUTE_SSE && !h->has_since)
		rc = hub_attach_tail(app.hub, &h->hc, h->user);
	else
		rc = hub_attach(app.hub, &h->hc, h->user, h->has_since ? &h->since : NULL);
	if (rc != 0) {
		log_warn("%s for %s refused: %s", h->kind == ROUTE_SSE ? "SSE" : "poll", h->user,
			 herr_str(rc));
		if (rc == HERR_AGAIN)
			atomic_fetch_add(&app.n_full, 1);
		held_unavailable(h, rc == HERR_AGAIN ? "too many connections" : herr_str(rc));
		return;
	}
	h->attached = 1;
	if (h->admit == NULL)
		held_open(h);
}

/* Start h's response: the SSE head, or the poll's wait.  May free h. */
static void held_open(struct held *h)
{
	long long now = clock_mono_ms(), wall = clock_wall_ms();
	char head[64];

	h->opened = 1;
	if (h->kind == ROUTE_SSE) {
		long long life = app.conf.sse_max_lifetime * 1000LL;
		long long end;

		/* at a random moment of the lifetime's last tenth: streams opened
		 * together (a restart, a deploy, a network back) end, and come back,
		 * spread out instead of all at once an hour later, and again */
		life -= (long long)jitter_upto(&h->l->jit, (uint64_t)(life / 10));
		end = now + life;

		/* a stream outliving its token would be a session nobody
		 * authorised; the expiry is wall time, the deadline monotonic */
		if (h->exp > 0 && h->exp * 1000 - wall < end - now)
			end = now + (h->exp * 1000 > wall ? h->exp * 1000 - wall : 0);
		h->end_ms = end;
		h->hb_ms = app.conf.heartbeat > 0 ? now + app.conf.heartbeat * 1000 : 0;
		atomic_fetch_add(&app.n_streams, 1);
		sse_retry(head, sizeof head, SSE_RETRY_MS);
		if (ob_stdout(h, reply_sse_head, strlen(reply_sse_head)) != 0 ||
		    ob_stdout(h, head, strlen(head)) != 0) {
			ob_end(h);
		} else if (!h->has_since && !h->woken) {
			/* the hub wakes h with the cursor (HEAD_WAIT_MS) */
			h->head_ms = now + HEAD_WAIT_MS;
			held_arm(h);
			return;
		}
	} else {
		h->end_ms = now + h->wait_s * 1000;
	}
	held_arm(h);
	held_pump(h);
}

/* Fail open: a revocation check Redis could not answer lets the stream in
 * (the control channel still closes it once a command comes). */
static void admit_fail_open(struct held *h, const char *why)
{
	long long now = clock_mono_ms();

	atomic_fetch_add(&app.n_revoke_check_errors, 1);
	if (h->l->revoke_warn_ms == 0 || now - h->l->revoke_warn_ms >= 10000) {
		h->l->revoke_warn_ms = now;
		log_warn("revocation check for %s failed: %s; letting it in (fail open; "
			 "warned once per 10 s)", h->user, why);
	}
}

/* The token's identity as the revocation check needs it. */
static void held_identity(const struct held *h, struct auth_identity *id)
{
	memset(id, 0, sizeof *id);
	memcpy(id->user, h->user, sizeof id->user);
	memcpy(id->jti, h->jti, sizeof id->jti);
	id->iat = h->hc.iat;
	id->exp = h->exp;
}

/* The revocation check's answer (NULL: the link went away). */
static void on_admit(void *ud, const redisReply *r)
{
	struct held *h = ud;
	struct auth_identity id;
	int res;

	h->admit = NULL;
	held_identity(h, &id);
	res = revoke_check_reply(r, &id);
	if (res == AUTH_REVOKED) {
		struct route e = {.status = 401, .error = "invalid_token", .kind = h->kind};
		struct metrics_buf b;

		snprintf(e.detail, sizeof e.detail, "%s", auth_reason(res));
		atomic_fetch_add(&app.n_revoked_refused, 1);
		metrics_buf_init(&b);
		reply_error(&b, &e);
		held_answer(h, &b);
		return;
	}
	if (res != AUTH_OK)
		admit_fail_open(h, r == NULL ? "Redis connection lost"
				   : r->type == REDIS_REPLY_ERROR ? r->str
								  : "unexpected reply");
	held_open(h);
}

/*
 * Check that h's token is not revoked (the worker left it to the loop),
 * on the subscriber's command link: one pipelined command, no thread
 * waiting for it.  0: on_admit or the timer goes on.
 */
static int admit_send(struct held *h)
{
	struct auth_identity id;
	struct revoke_argv ra;
	struct timeval tv = {REDIS_TIMEOUT_MS / 1000, (REDIS_TIMEOUT_MS % 1000) * 1000};
	int rc;

	held_identity(h, &id);
	if (revoke_check_argv(&ra, app.conf.channel_prefix, &id) < 0)
		return HERR_INVAL;
	rc = sub_command(app.sub, ra.argc, ra.argv, ra.argvlen, on_admit, h, &h->admit);
	if (rc == 0)
		evtimer_add(&h->tev, &tv); /* Redis that does not answer: fail open */
	return rc;
}

static void hold_one(struct held_loop *l, struct handoff *ho)
{
	const struct route *rt = &ho->rt;
	struct held *h;
	int rc;

	if (l->stopping) {
		refuse(l, ho->fd, ho->reqid, "shutting down");
		return;
	}
	h = calloc(1, sizeof *h);
	if (h == NULL) {
		refuse(l, ho->fd, ho->reqid, "out of memory");
		return;
	}
	/* a worker's connection has no status flag: O_NONBLOCK is the only one */
	if (!ho->nonblocking && fcntl(ho->fd, F_SETFL, O_NONBLOCK) < 0) {
		free(h);
		refuse(l, ho->fd, ho->reqid, "internal error");
		return;
	}
	h->l = l;
	h->fd = ho->fd;
	h->reqid = ho->reqid;
	h->kind = rt->kind;
	h->limit = rt->limit;
	h->wait_s = rt->wait;
	h->has_since = rt->has_since;
	h->since = rt->since;
	h->exp = rt->id.exp;
	memcpy(h->user, rt->id.user, sizeof h->user);
	memcpy(h->jti, rt->id.jti, sizeof h->jti);
	h->hc.ops = &held_ops;
	h->hc.iat = rt->id.iat;
	h->hc.jti = h->jti;
	/* the hub may wake h from inside hub_attach */
	event_assign(&h->rev, l->base, h->fd, EV_READ | EV_PERSIST, on_held_read, h);
	event_assign(&h->wev, l->base, h->fd, EV_WRITE, on_held_write, h);
	evtimer_assign(&h->tev, l->base, on_held_timer, h);
	event_add(&h->rev, NULL);
	h->prev = NULL;
	h->next = l->held;
	if (l->held != NULL)
		l->held->prev = h;
	l->held = h;
	atomic_fetch_add(h->kind == ROUTE_SSE ? &l->n_streams : &l->n_polls, 1);
	/* the revocation check and the subscription go out together: one
	 * round trip to Redis fewer before the stream opens */
	if (rt->revoke_on_loop && (rc = admit_send(h)) != 0)
		admit_fail_open(h, herr_str(rc));
	held_start(h);
}

/* Workers handed over requests to hold. */
static void on_input(evutil_socket_t fd, short what, void *arg)
{
	struct held_loop *l = arg;
	struct handoff *hand, *next, *rev = NULL;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&l->mu);
	hand = l->hand;
	l->hand = NULL;
	pthread_mutex_unlock(&l->mu);
	/* in arrival order */
	for (; hand != NULL; hand = next) {
		next = hand->next;
		hand->next = rev;
		rev = hand;
	}
	for (; rev != NULL; rev = next) {
		next = rev->next;
		hold_one(l, rev);
		free(rev);
	}
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct held_loop *l = arg;

	(void)fd;
	(void)what;
	event_del(l->lev);
	event_del(l->lpause);
	fresh_close_all(l); /* the idle thread closes the others */
	on_input(-1, 0, l); /* hold_one refuses what came in meanwhile */
}

/*
 * Once nothing is held, give freed memory back: glibc keeps what the loop
 * thread's arena freed (10,000 streams that came and went) resident.
 */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
	struct held_loop *l = arg;

	(void)fd;
	(void)what;
	if (l->held == NULL)
		malloc_trim(0);
}

/* --- life -------------------------------------------------------------------------- */

int held_loop_new(struct held_loop **out, struct event_base *base, int listen_fd)
{
	struct held_loop *l = calloc(1, sizeof *l);
	int flags;

	*out = NULL;
	if (l == NULL)
		return HERR_NOMEM;
	l->base = base;
	l->idle_ep = l->idle_wake = -1;
	l->listen_fd = listen_fd;
	l->q_wake = -1;
	l->idle_head = l->idle_tail = -1;
	jitter_seed(&l->jit, l);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->idle_mu, NULL);
	pthread_mutex_init(&l->lead_mu, NULL);
	flags = fcntl(listen_fd, F_GETFL);
	if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		held_loop_free(l);
		return HERR_IO;
	}
	l->lev = event_new(base, listen_fd, EV_READ | EV_PERSIST, on_accept, l);
	l->lpause = evtimer_new(base, on_accept_resume, l);
	l->in_ev = event_new(base, -1, 0, on_input, l);
	l->stop_ev = event_new(base, -1, 0, on_stop, l);
	l->trim_ev = evtimer_new(base, on_trim, l);
	if (l->lev == NULL || l->lpause == NULL || l->in_ev == NULL || l->stop_ev == NULL || l->trim_ev == NULL ||
	    event_add(l->lev, NULL) != 0) {
		held_loop_free(l);
		return HERR_NOMEM;
	}
	l->idle_ep = epoll_create1(EPOLL_CLOEXEC);
	l->idle_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->q_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->idle_ep < 0 || l->idle_wake < 0 || l->q_wake < 0 ||
	    epoll_ctl(l->idle_ep, EPOLL_CTL_ADD, l->q_wake,
		      &(struct epoll_event){.events = EPOLLIN, .data.u64 = IDLE_QUEUE}) != 0) {
		held_loop_free(l);
		return HERR_IO;
	}
	if (pthread_create(&l->idle_thread, NULL, idle_main, l) != 0) {
		held_loop_free(l);
		return HERR_NOMEM;
	}
	l->idle_started = 1;
	*out = l;
	return 0;
}

/* The idle thread closes every idle connection and ends. */
static void idle_stop(struct held_loop *l)
{
	uint64_t one = 1;

	atomic_store(&l->idle_stop_req, 1);
	if (l->idle_wake >= 0 && write(l->idle_wake, &one, sizeof one) < 0)
		log_warn("cannot wake the idle thread: %s", strerror(errno));
}

void held_stop(struct held_loop *l, int timeout_ms)
{
	pthread_mutex_lock(&l->mu);
	l->stopping = 1;
	pthread_mutex_unlock(&l->mu);
	queue_wake(l); /* the waiting worker wakes; each sees stopping before it
			* would wait (held_next) */
	idle_stop(l);
	event_active(l->stop_ev, EV_READ, 1);
	/* streams end and polls answer through the hub's close callbacks */
	hub_close_all(app.hub);
	while (timeout_ms > 0 &&
	       atomic_load(&l->n_streams) + atomic_load(&l->n_polls) > 0) {
		usleep(10000);
		timeout_ms -= 10;
	}
}

void held_loop_free(struct held_loop *l)
{
	if (l == NULL)
		return;
	for (struct held *h = l->held, *next; h != NULL; h = next) {
		next = h->next;
		held_free(h);
	}
	if (l->idle_started) {
		idle_stop(l); /* start-up failed: held_stop was not called */
		pthread_join(l->idle_thread, NULL);
	}
	idle_sweep(l, 1);
	fresh_close_all(l);
	on_input(-1, 0, l);
	pthread_mutex_lock(&l->mu);
	while (l->q_len > 0) {
		struct held_req *q = l->q[l->q_head].req;

		if (q != NULL) {
			FCGX_Free(&q->r, 0);
			free(q);
		}
		close(l->q[l->q_head].fd);
		l->q_head = (l->q_head + 1) % l->q_cap;
		l->q_len--;
	}
	pthread_mutex_unlock(&l->mu);
	free(l->q);
	if (l->lev != NULL)
		event_free(l->lev);
	if (l->lpause != NULL)
		event_free(l->lpause);
	if (l->in_ev != NULL)
		event_free(l->in_ev);
	if (l->stop_ev != NULL)
		event_free(l->stop_ev);
	if (l->trim_ev != NULL)
		event_free(l->trim_ev);
	if (l->idle_ep >= 0)
		close(l->idle_ep);
	if (l->idle_wake >= 0)
		close(l->idle_wake);
	if (l->q_wake >= 0)
		close(l->q_wake);
	free(l->idle_slot);
	pthread_mutex_destroy(&l->lead_mu);
	pthread_mutex_destroy(&l->idle_mu);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
