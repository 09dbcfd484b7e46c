/*
 * sse.h - Server-Sent Events framing (WHATWG HTML "event stream"), both ways.
 *
 * Writing: every function formats into a caller's buffer the way snprintf
 * does: it returns the length the whole frame needs (without the NUL) and
 * writes at most outlen - 1 bytes plus a NUL, so a caller sizes its buffer
 * with a first call on (NULL, 0).  Nothing a publisher sends can add a field:
 * data is split at every CR, LF and CRLF into one `data:` line each (the
 * browser joins them back with LF), and the one-line fields (id, event) are
 * refused with HERR_INVAL when they hold CR, LF or NUL.
 *
 * Reading: struct sse_parser interprets a byte stream as a browser does, for
 * the tests, the fuzz target and herald-bench.
 *
 * No I/O, no threads: herald-fcgi writes the frames from whichever thread
 * holds the stream; a parser belongs to its caller's thread.
 */
#ifndef HERALD_SSE_H
#define HERALD_SSE_H

#include <stddef.h>

#include "hub.h"

/* The retry the stream starts with (ms): the browser reconnects after it. */
#define SSE_RETRY_MS 3000

/*
 * One event: `id: ID` (when id is non-NULL), `event: EVENT` (when event is
 * non-NULL), one `data: LINE` per line of data (len bytes; len 0 gives one
 * empty data line), then a blank line.  Returns the frame's length or
 * HERR_INVAL (id or event holds CR, LF or NUL).
 */
long sse_event(char *out, size_t outlen, const char *id, const char *event, const char *data,
	       size_t len);

/* `retry: MS` and a blank line. */
long sse_retry(char *out, size_t outlen, unsigned ms);

/* A comment: `: TEXT` per line of text; browsers ignore it. */
long sse_comment(char *out, size_t outlen, const char *text);

/*
 * The heartbeat herald-fcgi writes every `heartbeat` seconds:
 *   : heartbeat
 *   event: heartbeat
 *   data: {}
 * The comment keeps proxies' read timeouts from ending a quiet stream (and
 * is what older readers looked for); the named event is dispatched to the
 * page's "heartbeat" listener only (EventSource's onmessage and the
 * "notification" listeners never see it), so a client can tell an open but
 * dead stream by its silence.
 */
long sse_heartbeat(char *out, size_t outlen);

/*
 * The frame for a hub message: a notification with an id gives
 * `id: ID` / `event: notification` / `data: ENVELOPE`; an "id":null one the
 * same without `id:` (the browser keeps its Last-Event-ID); a RESET gives
 * `event: reset` / `data: {"reason":"history_truncated"}`; a CURSOR gives
 * `id: ID` / `event: cursor` / `data: {"type":"cursor",...}`.
 */
long sse_msg(char *out, size_t outlen, const struct hub_msg *m);

/* --- reading ------------------------------------------------------------ */

/*
 * Called for each dispatched event: type ("message" when no event field),
 * data (NUL-terminated, len bytes, the final LF removed), and the last event
 * id (the stream's, as the browser keeps it; "" when none).  Pointers are
 * valid until the callback returns.
 */
typedef void (*sse_event_fn)(void *ud, const char *type, const char *data, size_t len,
			     const char *last_id);

struct sse_parser {
	sse_event_fn on_event;
	void *ud;
	size_t max_line;     /* longest line accepted (bytes); 0 = 1 MiB */
	/* state, private */
	char *line;
	size_t line_len, line_cap;
	char *data;
	size_t data_len, data_cap;
	char event[64];
	char last_id[128];
	int skip_lf;         /* the previous chunk ended with CR */
	int bom_done;
	/* what the stream said besides events, for tests */
	long retry;          /* last valid retry field; -1 none */
	unsigned long comments;
	unsigned long events;
};

/* Set up p (no allocation yet). */
void sse_parser_init(struct sse_parser *p, sse_event_fn fn, void *ud);
void sse_parser_free(struct sse_parser *p);

/* Feed len bytes.  Returns 0, HERR_TOOBIG (a line longer than max_line) or
 * HERR_NOMEM; after an error the parser must be freed. */
int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len);

#endif
