/*
 * held.h - herald-fcgi's event loop: connections without a worker.
 *
 * The loop thread (the libevent base it is given, which the Redis
 * subscriber shares) owns:
 *   - the listening socket: it accepts without blocking.  When a new
 *     connection's request is there whole (fcgi_request_complete over a
 *     peek), the loop lets libfcgi read it (the reads find every byte
 *     there, so they do not block) and reads its route: an SSE stream it
 *     holds at once (handle_on_loop), anything else goes with its route to
 *     the queue the workers take from (held_next), first come first served;
 *     a request not yet whole goes to that queue unread;
 *   - held requests: SSE streams and long-polls waiting for a message.  The
 *     loop attaches them to the hub (while a stream's revocation check is
 *     out on the same wake-up; the response opens once it passed), writes
 *     their FastCGI records without
 *     blocking (heartbeats, the lifetime and token deadline, the poll's
 *     wait, all on the monotonic clock), drops a client that stops reading
 *     after SEND_TIMEOUT_S without progress, sees nginx close the
 *     connection at once, and ends them all on shutdown.
 *
 * The loop also watches a new connection whose request has not arrived
 * at the accept (nginx writes it at once), and reads it there and then.
 *
 * Kept-alive connections between requests wait in an epoll set of their
 * own (idle_ep), each armed for one report: one costs a descriptor and 16
 * bytes, never a worker, and the loop never wakes for it.  The workers
 * wait on that set themselves, one at a time (held_next): the one waiting
 * takes the connections whose request arrived and reads them (polls: the
 * workers read in parallel); the worker that answered re-arms the
 * connection itself (held_keep).  The idle thread closes a connection idle
 * fcgi_idle_timeout, the oldest ones when accept runs out of descriptors,
 * and every one on shutdown.
 *
 * Workers call held_next, held_keep and held_hold; the main thread
 * held_stop; any thread held_get_stats.  Everything else runs on the loop
 * thread.
 */
#ifndef HERALD_FCGI_HELD_H
#define HERALD_FCGI_HELD_H

#include <event2/event.h>
#include <fcgiapp.h>

#include "router.h"

struct held_loop;

struct held_stats {
	long streams;    /* SSE streams held now */
	long polls;      /* long-polls waiting now */
	long idle;       /* connections waiting for a request */
	long queued;     /* connections with a request, waiting for a worker */
	unsigned long events, heartbeats, stalled;
	unsigned long reclaimed; /* idle connections closed for new ones */
};

/* Before the loop runs.  listen_fd is made non-blocking.  0 or HERR_*. */
int held_loop_new(struct held_loop **out, struct event_base *base, int listen_fd);

/* After the loop thread ended: closes what is left. */
void held_loop_free(struct held_loop *l);

/*
 * A request the loop has read (libfcgi, on the heap: NOTES.md) and routed,
 * for a worker to answer with handle_routed.  The worker owns it: after
 * FCGX_Finish_r (or FCGX_Free when it holds the request), free() it.
 */
struct held_req {
	FCGX_Request r;
	struct route rt;
};

/*
 * Workers.  held_next blocks until a connection has a request and returns
 * its descriptor, or -1 once held_stop was called and the queue is empty.
 * It gives first the kept-alive connections this worker took from the
 * idle set in its last wait (up to HELD_BATCH at once), then the loop's
 * queue; with neither, the worker waits for both, one worker at a time
 * (the others wait to be next).  *req is the request when the loop has
 * read it already (it arrived whole), else NULL: the worker reads it with
 * FCGX_Accept_r (on a kept-alive connection it is there, or on its way:
 * nginx writes it whole).  *flags: HELD_PARTIAL when that request had not
 * arrived whole: its read may wait for the peer (up to SO_RCVTIMEO).
 * HELD_NONBLOCKING when the descriptor is as accepted (O_NONBLOCK, no
 * timeouts) with its request there whole: the worker calls
 * held_fd_blocking before it writes (an answer, or held_keep), or holds it
 * with held_hold(.., 1, ..).  Without it the descriptor is blocking with
 * SO_RCVTIMEO/SO_SNDTIMEO set.  wait 0: never blocks; -1 at once when
 * there is nothing, or the queue's next request has not arrived whole (a
 * worker filling a batch leaves that one to a worker that may wait for
 * it).  held_unstash queues for other workers the connections taken in
 * the last wait that held_next has not given yet (a batch that stopped
 * early).
 */
/* The most requests a worker takes at once: the polls among them share one
 * round trip to Redis (handle_batch). */
#define HELD_BATCH 16
#define HELD_PARTIAL 1u
#define HELD_NONBLOCKING 2u
int held_next(struct held_loop *l, int wait, struct held_req **req, unsigned *flags);
void held_unstash(struct held_loop *l);

/* Make fd blocking with the send and receive timeouts: 0, or -1 (errno). */
int held_fd_blocking(int fd);

/*
 * Let libfcgi read the request on fd (its bytes there, or a blocking fd)
 * into r, made with FCGX_InitRequest(r, -1, 0): 0, or -1 when nginx closed
 * fd or sent no valid request (libfcgi closed fd).
 */
int held_read(FCGX_Request *r, int fd);

/*
 * Free a request's libfcgi buffers and parameters, keep its connection
 * (read to the end of its body first, so the socket turns readable again
 * only when nginx closes it).  Returns the descriptor; *reqid its FastCGI
 * request id.  For a request to hold.
 */
int held_release(FCGX_Request *r, unsigned *reqid);


/* The worker is done with fd (blocking) and the connection stays open:
 * watch it. */
void held_keep(struct held_loop *l, int fd);

/*
 * Hand a request to hold (rt->kind ROUTE_SSE, or ROUTE_POLL with wait > 0)
 * to the loop, with its connection (libfcgi's request already freed with
 * the descriptor kept, the request body read; nonblocking: fd is in
 * O_NONBLOCK already) and FastCGI request id.  The loop answers it, ends
 * it and closes fd.
 */
void held_hold(struct held_loop *l, int fd, int nonblocking, unsigned reqid,
	       const struct route *rt);

/*
 * Main thread, at shutdown: stop accepting, close idle connections, end
 * every held request (after hub_close_all, streams end and polls answer),
 * and wake the workers.  Returns once nothing is held or after timeout_ms.
 */
void held_stop(struct held_loop *l, int timeout_ms);

void held_get_stats(struct held_loop *l, struct held_stats *st);

/*
 * Any thread: the process ran out of descriptors opening something it
 * cannot do without (a Redis link: redis_set_nofile_hook).  Closes up to
 * max of the oldest idle kept-alive connections, as accept does when it
 * runs out (nginx opens another when it needs one), counted in
 * reclaimed.  How many it closed.
 */
long held_reclaim(struct held_loop *l, long max);

#endif
