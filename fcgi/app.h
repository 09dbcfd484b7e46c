/*
 * app.h - herald-fcgi's process state, and who owns what on which thread.
 *
 * herald-fcgi is four parts:
 *
 *   main.c      the command line, configuration, signals (the main thread
 *               waits in sigwait()), start-up and shutdown.
 *   held.c      the event loop thread (libevent, shared with the Redis
 *               subscriber): it owns the listening socket and every held
 *               request (SSE streams, long-polls waiting for a message),
 *               whose FastCGI records it writes itself without blocking.
 *               Every FastCGI connection nginx keeps alive between
 *               requests waits in an epoll set the workers wait on (one
 *               at a time), so only the worker that takes its request
 *               wakes for it; an idle thread closes the ones idle too
 *               long.  A request that
 *               has arrived whole on a new connection (nginx opens one
 *               per SSE stream) it lets libfcgi read (no read can block
 *               then) and routes, token check included: an SSE stream it
 *               holds at once; anything else goes to a worker with its
 *               route.  A request still arriving goes to a worker unread,
 *               and so does every request when jwt_alg is RS256 or ES256
 *               (a check of tens of microseconds stays off the loop).
 *   handlers.c  the workers (`threads` of them): each takes the
 *               kept-alive connections whose request arrived (up to 16
 *               per wait: their polls share one round trip to Redis), or
 *               a connection from the loop's queue (and the polls queued
 *               behind it), lets libfcgi read the request unless the
 *               loop did, and answers the short ones (polls with something
 *               to return, health, metrics, publish, errors) with blocking
 *               writes bounded by SO_SNDTIMEO; a request to hold (a
 *               long-poll, a stream redeeming a ticket) goes back to the
 *               loop with its route, the connection's descriptor and its
 *               request id.  Under CGI the same handlers answer the one
 *               request on stdio.
 *   reply.c     the text of answers (status heads, the poll document, error
 *               bodies), shared by the workers and the loop.
 *
 * So no thread ever waits for a client: a worker waits only for libfcgi's
 * read of a request that has arrived and for Redis, and the loop never
 * blocks.  The struct below is written before the threads start, except
 * the fields marked otherwise.
 */
#ifndef HERALD_FCGI_APP_H
#define HERALD_FCGI_APP_H

#include <pthread.h>
#include <stdatomic.h>

#include "auth.h"
#include "conf.h"
#include "hub.h"
#include "redis.h"
#include "sub.h"

#define PROG "herald-fcgi"
#define REDIS_TIMEOUT_MS 2000
#define RETRY_AFTER_S 5
/* A client that stops reading is dropped after this long without progress. */
#define SEND_TIMEOUT_S 10

struct held_loop;

struct app {
	struct conf conf;
	const char *conf_path;
	pthread_rwlock_t auth_lock; /* guards auth: SIGHUP swaps it */
	auth_t *auth;
	struct hub *hub;            /* NULL under CGI */
	struct sub *sub;            /* NULL under CGI; the loop thread's */
	struct held_loop *loop;     /* NULL under CGI */
	struct redis_addr raddr;
	long long start_ms;
	long threads;               /* workers */
	atomic_int stopping;        /* set once by main on SIGTERM/SIGINT */
	atomic_long busy;           /* workers inside a request */
	atomic_ulong n_polls, n_streams, n_publishes, n_errors;
	atomic_ulong n_poll_batches, n_polls_batched; /* handle_batch */
	/* publishes answered 503 not_replicated (publish_wait_replicas) */
	atomic_ulong n_publish_unacked;
	/* tickets minted, refused; requests refused as revoked; revocation
	 * checks Redis could not answer (let in: fail open) */
	atomic_ulong n_tickets, n_ticket_refused, n_revoked_refused, n_revoke_check_errors;
	/* held requests refused with 503 past max_connections (0: no cap) */
	atomic_ulong n_full;
	unsigned max_held;
};

extern struct app app;

#endif
