/*
 * waiter.h - a hub connection owned by one thread that sleeps in ppoll().
 *
 * herald-fcgi holds each SSE stream and each waiting long-poll on a thread
 * of its own.  The same ppoll() watches the request's socket for the client
 * hanging up (POLLRDHUP), so a client that leaves is noticed at once, not at
 * the next write; the hub wakes the thread with a signal (hub_conn_ops.wake
 * and .close set a flag and pthread_kill() it, as the hub's callback rules
 * allow).  A signal rather than an eventfd: a held stream then costs one
 * descriptor, not two, so 10,000 streams fit under a 20,000 open-files limit.
 */
#ifndef HERALD_WAITER_H
#define HERALD_WAITER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "hub.h"

struct waiter {
	struct hub_conn conn;
	struct hub *hub;
	pthread_t thread;   /* the one that waits */
	atomic_int pending; /* set by the hub's callbacks before the signal */
	atomic_int closed;  /* 0, or the enum hub_close_reason the hub gave */
	int attached;
};

enum waiter_event {
	WAITER_READY = 1,   /* woken: pop until NULL, then wait again */
	WAITER_TIMEOUT = 2,
	WAITER_CLOSED = 3,  /* the hub closed the connection (w->closed says why) */
	WAITER_HANGUP = 4,  /* the client's socket hung up or sent something */
};

/*
 * Once per process, before any thread is created: installs the wake-up
 * signal's (empty) handler and blocks the signal in the calling thread, so
 * every thread created later has it blocked but in waiter_wait().  0 or
 * HERR_IO.
 */
int waiter_setup(void);

/* For the calling thread (the one that will wait).  Always 0. */
int waiter_init(struct waiter *w, struct hub *h);

/* hub_attach(); 0, HERR_AGAIN (limits), HERR_NOMEM. */
int waiter_attach(struct waiter *w, const char *user, const struct cursor *since);

/*
 * Sleep until the hub wakes or closes w, fd (the client's socket; -1 for
 * none) hangs up or becomes readable, or timeout_ms passes (-1: no limit).
 * Returns an enum waiter_event, or HERR_IO when poll() fails.
 */
int waiter_wait(struct waiter *w, int fd, int timeout_ms);

/* The next message (the caller unrefs it), or NULL. */
struct hub_msg *waiter_pop(struct waiter *w);

/* Detach from the hub; no callback reaches w afterwards. */
void waiter_fini(struct waiter *w);

#endif
