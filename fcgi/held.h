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
 * The idle thread owns kept-alive connections between requests, in its own
 * epoll set, each armed for one report: one costs a descriptor and 40
 * bytes, never a worker, and the loop never wakes for it.  When a request
 * arrives the idle thread queues the connection for a worker unread (a
 * poll: the workers read in parallel); the worker that answered re-arms
 * the connection itself (held_keep).  It closes a connection idle
 * fcgi_idle_timeout, and every one on shutdown.
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
 * *req is the request when the loop has read it already (it arrived
 * whole), else NULL: the worker reads it with FCGX_Accept_r.  *flags:
 * HELD_PARTIAL when that request had not arrived whole: its read may wait
 * for the peer (up to SO_RCVTIMEO), so the worker reads it between
 * held_worker_blocking(l, 1) and (l, 0).  HELD_NONBLOCKING when the
 * descriptor is as accepted (O_NONBLOCK, no timeouts) with its request
 * there whole: the worker calls held_fd_blocking before it writes (an
 * answer, or held_keep), or holds it with held_hold(.., 1, ..).  Without
 * it the descriptor is blocking with SO_RCVTIMEO/SO_SNDTIMEO set.
 * wait 0: never blocks; -1 at once when the queue is empty or its next
 * request has not arrived whole (a worker filling a batch leaves that one
 * to a worker that may wait for it).
 */
#define HELD_PARTIAL 1u
#define HELD_NONBLOCKING 2u
int held_next(struct held_loop *l, int wait, struct held_req **req, unsigned *flags);

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

/*
 * A worker calls held_worker_start once before its first held_next, and
 * held_worker_blocking(l, 1) before a request that waits for Redis (then
 * (l, 0) after it): held_next wakes a sleeping worker only while fewer
 * workers than processors run, and one waiting for Redis does not count.
 * l may be NULL (CGI) for held_worker_blocking.
 */
void held_worker_start(struct held_loop *l);
void held_worker_blocking(struct held_loop *l, int blocking);

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

#endif
