/*
 * evredis.h - a hiredis 0.14 async context on a libevent loop, with a
 * persistent read event.  Every asynchronous Redis link of Herald attaches
 * with it (the subscriber's links in sub.c, the Cluster masters' command
 * links in cluster.c), so they all behave alike.
 *
 * Why not hiredis's own adapter (adapters/libevent.h): in 0.14 it registers
 * the read event without EV_PERSIST, and hiredis re-arms reading after every
 * reply it handles, so libevent deletes and re-adds the descriptor for each
 * reply: two epoll_ctl calls on the delivery path (herald-ws at 1,000 msg/s:
 * 6,906 epoll_ctl for 3,454 wakeups).  Here the read event persists, and
 * event_add() on it while pending is a no-op.
 *
 * Writes are not armed on the descriptor either.  hiredis asks for a write
 * after each command; that activates a flush event, run once the loop has
 * handled what woke it, so every command of one wake-up goes out in one
 * write(), with no epoll_ctl (the stock way arms EV_WRITE and disarms it
 * again: two epoll_ctl per write, herald-fcgi's SSE connects made 1.6 per
 * stream).  Only a write the socket does not take whole arms EV_WRITE.
 *
 * Header-only, as hiredis's adapters are: whatever links sub.c or cluster.c
 * (the programs, the tests, the fuzz targets) needs no other source.
 */
#ifndef HERALD_EVREDIS_H
#define HERALD_EVREDIS_H

#include <stdlib.h>

#include <event2/event.h>
#include <hiredis/async.h>

struct evredis {
	redisAsyncContext *ac;
	struct event *rd, *wr; /* wr: connecting, or a write the socket did not take whole */
	struct event *flush;   /* activated: write what hiredis holds */
	int in_flush;          /* inside the flush: hiredis wanting more arms wr */
	int freed;             /* hiredis freed ac during the flush */
};

/* Free e and its events (any of them may be NULL: a failed attach). */
static inline void evredis_free(struct evredis *e)
{
	if (e->rd != NULL)
		event_free(e->rd);
	if (e->wr != NULL)
		event_free(e->wr);
	if (e->flush != NULL)
		event_free(e->flush);
	free(e);
}

static inline void evredis_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleRead(((struct evredis *)arg)->ac);
}

static inline void evredis_write(evutil_socket_t fd, short what, void *arg)
{
	struct evredis *e = arg;

	(void)fd;
	(void)what;
	e->in_flush = 1;
	redisAsyncHandleWrite(e->ac); /* may free ac, and so e (freed, below) */
	e->in_flush = 0;
	if (e->freed)
		evredis_free(e);
}

static inline void evredis_add_read(void *p)
{
	event_add(((struct evredis *)p)->rd, NULL);
}

static inline void evredis_del_read(void *p)
{
	event_del(((struct evredis *)p)->rd);
}

static inline void evredis_add_write(void *p)
{
	struct evredis *e = p;

	if (event_pending(e->wr, EV_WRITE, NULL))
		return; /* connecting, or waiting for room */
	if (e->in_flush)
		event_add(e->wr, NULL); /* the socket took part: wait for room */
	else
		event_active(e->flush, EV_WRITE, 0);
}

static inline void evredis_del_write(void *p)
{
	event_del(((struct evredis *)p)->wr);
}

/* hiredis calls it when it frees ac. */
static inline void evredis_cleanup(void *p)
{
	struct evredis *e = p;

	if (e->in_flush) {
		event_del(e->rd);
		event_del(e->wr);
		e->freed = 1;
		return;
	}
	evredis_free(e);
}

/*
 * Attach ac (just made by redisAsyncConnect*, nothing attached yet) to base:
 * reading at once and for good, writing until the connect completes.  The
 * events are freed with ac (redisAsyncFree, or hiredis after a disconnect).
 * Returns 0, or -1 (out of memory, or ac already attached): ac is untouched
 * then, the caller frees it.
 */
static inline int evredis_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct evredis *e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof *e)) == NULL)
		return -1;
	e->ac = ac;
	e->rd = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, evredis_read, e);
	e->wr = event_new(base, ac->c.fd, EV_WRITE, evredis_write, e);
	e->flush = event_new(base, -1, 0, evredis_write, e);
	if (e->rd == NULL || e->wr == NULL || e->flush == NULL || event_add(e->rd, NULL) < 0 ||
	    event_add(e->wr, NULL) < 0) {
		evredis_free(e);
		return -1;
	}
	ac->ev.data = e;
	ac->ev.addRead = evredis_add_read;
	ac->ev.delRead = evredis_del_read;
	ac->ev.addWrite = evredis_add_write;
	ac->ev.delWrite = evredis_del_write;
	ac->ev.cleanup = evredis_cleanup;
	return 0;
}

#endif
