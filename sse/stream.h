/*
 * stream.h - one SSE stream session (DESIGN.md section 5): retry, the replay
 * after the client's Last-Event-ID, live events, heartbeat comments, and an
 * end after the maximum lifetime, when the client leaves, stops reading, is
 * too slow (hub queue full) or the process shuts down.
 *
 * Replay-then-live without gap or duplicate is the hub's work (DESIGN 8):
 * the stream attaches with the cursor and writes what the hub queues.  The
 * session runs on the caller's thread and blocks in poll() between events;
 * the transport (FastCGI request, test socket) is behind struct
 * sse_stream_io.
 */
#ifndef HERALD_STREAM_H
#define HERALD_STREAM_H

#include <stdatomic.h>

#include "cursor.h"
#include "hub.h"

struct sse_stream_io {
	/* Send the response head (status and headers).  0 or <0: give up. */
	int (*begin)(void *ud);
	/* Write and flush len bytes.  0, or <0 when the client is gone (a
	 * failed or timed-out write). */
	int (*write)(void *ud, const char *buf, size_t len);
	int fd;     /* the client's socket, watched for hang-up; -1 for none */
	void *ud;
};

struct sse_stream_opts {
	long heartbeat_ms;     /* comment interval; 0 = none */
	long long deadline_ms; /* wall-clock ms at which the stream ends */
	unsigned retry_ms;     /* the retry field sent first */
};

enum sse_end {
	SSE_END_LIFETIME = 1,  /* reached deadline_ms */
	SSE_END_CLIENT = 2,    /* the client hung up, or a write failed */
	SSE_END_SLOW = 3,      /* the hub closed it: queue full */
	SSE_END_SHUTDOWN = 4,  /* the hub closed it: hub_close_all */
};

struct sse_stream_stats {
	unsigned long events;     /* notification and reset frames written */
	unsigned long heartbeats;
};

/*
 * Run a stream for user, resuming after since (NULL: live only).  Attaches
 * to h first: when that fails nothing is written and the hub error is
 * returned (HERR_AGAIN: connection limits; HERR_NOMEM; HERR_IO: no
 * eventfd), so the caller can answer 503.  Otherwise returns an enum
 * sse_end once the stream is over and detached.  st may be NULL.
 */
int sse_stream_run(struct hub *h, const char *user, const struct cursor *since,
		   const struct sse_stream_io *io, const struct sse_stream_opts *o,
		   struct sse_stream_stats *st);

#endif
