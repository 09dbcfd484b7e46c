/*
 * waiter.h - a hub connection owned by one thread that sleeps in poll().
 *
 * herald-fcgi holds each SSE stream and each waiting long-poll on a thread
 * of its own.  The hub wakes it through an eventfd (hub_conn_ops.wake and
 * .close only write to it, as the hub's callback rules require), and the
 * same poll() watches the request's socket for the client hanging up
 * (POLLRDHUP), so a client that leaves is noticed at once, not at the next
 * write.
 */
#ifndef HERALD_WAITER_H
#define HERALD_WAITER_H

#include <stdatomic.h>

#include "hub.h"

struct waiter {
	struct hub_conn conn;
	struct hub *hub;
	int efd;            /* eventfd the hub's callbacks write to */
	atomic_int closed;  /* 0, or the enum hub_close_reason the hub gave */
	int attached;
};

enum waiter_event {
	WAITER_READY = 1,   /* woken: pop until NULL, then wait again */
	WAITER_TIMEOUT = 2,
	WAITER_CLOSED = 3,  /* the hub closed the connection (w->closed says why) */
	WAITER_HANGUP = 4,  /* the client's socket hung up or sent something */
};

/* Create the eventfd.  0 or HERR_IO. */
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

/* Detach from the hub and close the eventfd. */
void waiter_fini(struct waiter *w);

#endif
