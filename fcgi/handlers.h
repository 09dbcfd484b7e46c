/*
 * handlers.h - herald-fcgi's request handlers, run by the workers (a
 * batch of requests at a time per worker, handle_batch, one after the
 * other but for the polls' shared round trip to Redis; blocking on
 * libfcgi and Redis only), by
 * the loop thread for the route of a request that has arrived whole and
 * for SSE streams (handle_on_loop), and, under CGI, by the main thread for
 * the one request on stdio.
 */
#ifndef HERALD_FCGI_HANDLERS_H
#define HERALD_FCGI_HANDLERS_H

#include <fcgiapp.h>
#include <hiredis/hiredis.h>

#include "router.h"

/* Where an answer goes: libfcgi's request, or stdio under CGI (r NULL). */
struct io {
	FCGX_Request *r;
	/* non-zero while r's connection is non-blocking without timeouts
	 * (HELD_NONBLOCKING): io_blocking changes that before a write; NULL
	 * for a request the loop answers, or CGI */
	int *nonblocking;
};

/* Make io's connection blocking (with timeouts) if it is not yet. */
void io_blocking(const struct io *io);

enum handle_result {
	HANDLE_DONE = 0, /* answered */
	HANDLE_HOLD = 1, /* *rt is an SSE stream or a long-poll to wait: nothing
			  * was written; the caller hands it to the loop */
};

/*
 * Answer one request: handle_route, then handle_routed.  *rcp is the
 * worker's Redis connection (NULL until needed; replaced after errors).
 */
int handle(const struct io *io, redisContext **rcp, struct route *rt);

/* Read the request's route, the token checked: parameters only, no I/O. */
void handle_route(const struct io *io, struct route *rt);

/*
 * May the loop thread answer rt with handle_routed(io, NULL, rt) (which
 * then returns HANDLE_HOLD without any I/O)?  An SSE stream without a
 * ticket, when the loop's Redis link checks revocation.
 */
int handle_on_loop(const struct route *rt);

/* Answer a request whose route handle_route read. */
int handle_routed(const struct io *io, redisContext **rcp, struct route *rt);

/* One request of a worker's batch: io and rt (its route read by
 * handle_route) from the worker, res from handle_batch. */
struct handle_item {
	const struct io *io;
	struct route *rt;
	int res; /* enum handle_result */
};

/*
 * Answer items[0..n) as handle_routed answers each, except that the polls
 * among them (two or more; without a ticket; not in cluster mode) send
 * their revocation checks and history reads to Redis in one write and
 * take the replies in one read: one round trip, one wait, for the batch.
 */
void handle_batch(struct handle_item *items, size_t n, redisContext **rcp);

/* Is rt such a poll (its read may go in one write with others')? */
int handle_batchable(const struct route *rt);

/* Answer 503 unavailable (e.g. shutting down). */
void handle_unavailable(const struct io *io, const char *detail);

#endif
