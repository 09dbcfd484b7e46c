#include "config.h"

#include "stream.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "sse.h"
#include "waiter.h"
#include "clock.h"

/* Frames are batched into one write up to this size. */
#define BATCH_MAX (64 * 1024)

struct batch {
	char *buf;
	size_t len, cap;
};

static int batch_add(struct batch *b, const struct hub_msg *m)
{
	long n = sse_msg(NULL, 0, m);

	if (n < 0)
		return 0; /* a message we cannot frame (cannot happen for hub ids): skip */
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (p == NULL)
			return HERR_NOMEM;
		b->buf = p;
		b->cap = cap;
	}
	sse_msg(b->buf + b->len, b->cap - b->len, m);
	b->len += (size_t)n;
	return 0;
}

/* Write everything queued; 0, or SSE_END_CLIENT / HERR_NOMEM. */
static int drain(struct waiter *w, const struct sse_stream_io *io, struct batch *b,
		 struct sse_stream_stats *st)
{
	struct hub_msg *m;

	while ((m = waiter_pop(w)) != NULL) {
		int rc = batch_add(b, m);

		hub_msg_unref(m);
		if (rc < 0)
			return rc;
		st->events++;
		if (b->len >= BATCH_MAX) {
			if (io->write(io->ud, b->buf, b->len) < 0)
				return SSE_END_CLIENT;
			b->len = 0;
		}
	}
	if (b->len > 0) {
		if (io->write(io->ud, b->buf, b->len) < 0)
			return SSE_END_CLIENT;
		b->len = 0;
	}
	/* keep a burst's buffer from pinning memory for the stream's life */
	if (b->cap > 16384) {
		free(b->buf);
		b->buf = NULL;
		b->cap = 0;
	}
	return 0;
}

int sse_stream_run(struct hub *h, const char *user, const struct cursor *since,
		   const struct sse_stream_io *io, const struct sse_stream_opts *o,
		   struct sse_stream_stats *st)
{
	struct sse_stream_stats dummy = {0};
	struct batch b = {NULL, 0, 0};
	struct waiter w;
	char head[32];
	long long next_hb;
	int rc, end = SSE_END_CLIENT;

	if (st == NULL)
		st = &dummy;
	rc = waiter_init(&w, h);
	if (rc < 0)
		return rc;
	rc = waiter_attach(&w, user, since);
	if (rc < 0) {
		waiter_fini(&w);
		return rc;
	}
	sse_retry(head, sizeof head, o->retry_ms);
	if (io->begin(io->ud) < 0 || io->write(io->ud, head, strlen(head)) < 0)
		goto out;
	next_hb = o->heartbeat_ms > 0 ? clock_wall_ms() + o->heartbeat_ms : -1;
	for (;;) {
		long long now, until;
		int ev;

		rc = drain(&w, io, &b, st);
		if (rc != 0) {
			end = SSE_END_CLIENT;
			break;
		}
		now = clock_wall_ms();
		if (now >= o->deadline_ms) {
			end = SSE_END_LIFETIME;
			break;
		}
		if (next_hb >= 0 && now >= next_hb) {
			static const char hb[] = ": heartbeat\n\n";

			if (io->write(io->ud, hb, sizeof hb - 1) < 0) {
				end = SSE_END_CLIENT;
				break;
			}
			st->heartbeats++;
			next_hb = now + o->heartbeat_ms;
		}
		until = o->deadline_ms;
		if (next_hb >= 0 && next_hb < until)
			until = next_hb;
		/* a far deadline (a token valid for years) is re-checked each minute */
		if (until - now > 60000)
			until = now + 60000;
		ev = waiter_wait(&w, io->fd, (int)(until > now ? until - now : 0));
		if (ev == WAITER_CLOSED) {
			/* HUB_CLOSE_ERROR ends the stream as a shutdown does: the
			 * client reconnects with Last-Event-ID and resumes. */
			end = atomic_load(&w.closed) == HUB_CLOSE_SLOW ? SSE_END_SLOW
								       : SSE_END_SHUTDOWN;
			break;
		}
		if (ev == WAITER_HANGUP || ev < 0) {
			end = SSE_END_CLIENT;
			break;
		}
	}
out:
	waiter_fini(&w);
	free(b.buf);
	return end;
}
