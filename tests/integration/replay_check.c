/*
 * replay_check - resume a Herald client and check what arrives (issue 11).
 *
 * A client of each transport, written against the wire formats alone
 * (DESIGN.md sections 5 and 6), that resumes after a cursor and checks the
 * notifications it receives: their payloads are {"n":K,...}, and K must run
 * from A to B, each exactly once, in order, with nothing else (and, with
 * -R, the reset signal first).  A ws/sse/sseq connection made without a
 * cursor may get the server's cursor message first ({"type":"cursor",
 * "cursor":"ID"} / `event: cursor`); it is kept as the cursor (a -c
 * reconnect resumes from it); anywhere else it is a failure.  Envelopes
 * are parsed with json-c; their ids
 * must increase, their ts match their id, their channel name the user (-u).
 *
 *   replay_check [options] ADDR PATH       ADDR: host:port or unix:/path
 *   replay_check [options] -f FILE ADDR    one connection per line of FILE:
 *                                          "PATH [CURSOR]", all at once
 *
 *   -T ws|sse|sseq|poll|lpoll   transport (default ws):
 *        ws     WebSocket, the cursor as &since=
 *        sse    SSE, the cursor in a Last-Event-ID header
 *        sseq   SSE, the cursor as &last_event_id=
 *        poll   plain polls: limit=L; the next at once while "more" is
 *               true, else after -i milliseconds
 *        lpoll  long-polls: limit=L&wait=W, the next at once
 *   -s CURSOR   resume after this id (default: none)
 *   -a A -b B   the expected n, inclusive (default 1..1)
 *   -R          expect the reset signal before anything else (and allow it)
 *   -u USER     the envelopes' channel must be notifications:USER
 *   -m M        print "reached M MS" when n = M arrives (the script then
 *               publishes the live ones)
 *   -M          poll/lpoll: every page before the one holding M must say
 *               "more":true, that one "more":false (no publishing meanwhile)
 *   -l L        poll limit (default 100); a page larger than L is an error
 *   -w W        lpoll wait in seconds (default 20)
 *   -i MS       poll interval when "more" is false (default 100)
 *   -d USEC     sleep this long after each notification (a slow reader)
 *   -g MS       after B, keep reading this long for extras (default 300)
 *   -t SECONDS  give up (a failure) after this long (default 60)
 *   -L          print "lag MS n=K" per notification (now - its ts)
 *   -H 'N: V'   extra request header (repeatable)
 *   -S          stall: send the request on each connection, never read;
 *               print "stalled N", hold them until stdin closes or -t
 *               passes, then print "peer closed K of N"
 *   -c          ws/sse/sseq: when the server ends the stream (WS close, SSE
 *               end), reconnect after 100 ms from the last id, as herald.js
 *               and EventSource do (printed as reconnects=K); without -c an
 *               end before B is a failure.  poll/lpoll: a 503 (a long-poll
 *               while the subscriber reconnects) is asked again 1 s later
 *               with the same cursor, as herald.js does after Retry-After
 *               (5 s; shorter here to keep the test short; counted in
 *               reconnects); without -c it is a failure
 *   -r BYTES    SO_RCVBUF of the connections (default: the kernel's; with -S 4096):
 *               a small one keeps the server's replay going while -d reads slowly
 *
 * Output: with one connection, one line
 *   ok|FAIL T count=C first=F last=L dups=D gaps=G ooo=O other=X ids_ooo=I
 *   reset=0|1 pages=P ms=MS [reconnects=K] [why]
 * With -f, that line for each failed connection, then
 *   conns=N ok=K failed=F notifications=SUM ms=MS
 * Exit status 0 when every connection passed.  No timing is asserted: -t
 * is a safety net against a hang.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "sse.h"
#include "ws_frame.h"

enum tr { TR_WS, TR_SSE, TR_SSEQ, TR_POLL, TR_LPOLL };
static const char *const tr_name[] = {"ws", "sse", "sseq", "poll", "lpoll"};

enum phase { PH_IDLE, PH_HEAD, PH_BODY, PH_DONE };
enum chunk { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_END };

struct buf {
	char *p;
	size_t len, cap;
};

struct conn {
	char *path;
	char cursor[64];
	int fd;
	enum phase phase;
	long long next_at; /* poll: when the next request goes */
	struct buf in;	   /* raw bytes from the socket */
	struct buf body;   /* decoded body bytes (SSE lines, poll JSON) */
	int status;
	int chunked;
	long long clen;	     /* Content-Length, -1 if none */
	long long body_seen; /* body bytes decoded so far */
	enum chunk ch;
	long long ch_left;
	int body_complete;
	/* WebSocket message assembly */
	struct buf msg;
	int msg_op;
	/* SSE: the codec's parser, started again with each connection */
	struct sse_parser sse;
	int sse_on;
	/* the check */
	unsigned char *seen;
	long count, dups, ooo, other, ids_ooo, more_wrong, big_pages, pages, reconnects;
	long first, last, maxn;
	int reset_seen;
	int cursor_due; /* connected without a cursor, nothing received yet */
	int have_id;
	unsigned long long last_ms, last_seq;
	int reached;
	int got_b;
	long long t0, grace_until, t_end;
	int finished;
	int failed;
	char why[200];
};

/* options */
static enum tr tr = TR_WS;
static long opt_a = 1, opt_b = 1, opt_m = -1;
static int opt_reset, opt_strict_more, opt_lag, opt_stall, opt_reconnect;
static const char *opt_user;
static long opt_limit = 100, opt_wait = 20, opt_interval_ms = 100, opt_delay_us, opt_grace_ms = 300,
	    opt_timeout_s = 60, opt_rcvbuf = -1;
static const char *hdrs[16];
static int nhdrs;
static const char *addr;

static void on_sse_event(void *ud, const char *type, const char *data, size_t len,
		      const char *last_id);
static void ws_send_ctl(struct conn *c, int op, const uint8_t *p, size_t n);

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void die(const char *what)
{
	fprintf(stderr, "replay_check: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			die("realloc");
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_eat(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	if (b->p != NULL)
		b->p[b->len] = '\0';
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static void fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return; /* keep the first reason */
	c->failed = 1;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
}

/* --- the check ------------------------------------------------------------ */

/* The server's cursor message: first, and only on a connection made without one. */
static void got_cursor(struct conn *c, const char *id)
{
	unsigned long long ms, seq;
	char tail;

	if (!c->cursor_due || sscanf(id, "%llu-%llu%c", &ms, &seq, &tail) != 2) {
		c->other++;
		fail(c, "unexpected cursor message (%.40s)", id);
		return;
	}
	c->cursor_due = 0;
	snprintf(c->cursor, sizeof c->cursor, "%llu-%llu", ms, seq);
}

static void got_reset(struct conn *c)
{
	c->cursor_due = 0;
	if (opt_reset && !c->reset_seen && c->count == 0 && c->other == 0 && c->dups == 0) {
		c->reset_seen = 1;
		return;
	}
	c->other++;
	fail(c, "unexpected reset signal (after %ld notifications)", c->count);
}

static void got_n(struct conn *c, long n)
{
	long long now = now_ms();

	if (n < opt_a || n > opt_b) {
		c->other++;
		fail(c, "n=%ld outside %ld..%ld", n, opt_a, opt_b);
		return;
	}
	if (opt_reset && !c->reset_seen)
		fail(c, "n=%ld before the reset signal", n);
	if (c->seen[n - opt_a]) {
		c->dups++;
		fail(c, "n=%ld twice", n);
		return;
	}
	c->seen[n - opt_a] = 1;
	if (c->count == 0)
		c->first = n;
	c->count++;
	c->last = n;
	if (n < c->maxn) {
		c->ooo++;
		fail(c, "n=%ld after n=%ld", n, c->maxn);
	}
	if (n > c->maxn)
		c->maxn = n;
	if (n == opt_m && !c->reached) {
		c->reached = 1;
		printf("reached %ld %lld\n", n, now - c->t0);
		fflush(stdout);
	}
	if (n == opt_b) {
		c->got_b = 1;
		c->grace_until = now + opt_grace_ms;
	}
	if (opt_delay_us > 0)
		usleep((useconds_t)opt_delay_us);
}

/* One envelope, parsed: {"id":"MS-SEQ","channel":"P:U","ts":MS,"data":{"n":K,...}}. */
static void got_env_obj(struct conn *c, json_object *o, const char *raw, size_t rawlen)
{
	json_object *id, *ch, *ts, *data, *n;
	unsigned long long ms, seq;
	const char *ids;
	char tail;

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "id", &id) ||
	    !json_object_object_get_ex(o, "channel", &ch) ||
	    !json_object_object_get_ex(o, "ts", &ts) ||
	    !json_object_object_get_ex(o, "data", &data) ||
	    !json_object_is_type(id, json_type_string) ||
	    !json_object_is_type(ch, json_type_string) || !json_object_is_type(ts, json_type_int)) {
		c->other++;
		fail(c, "not an envelope: %.80s", raw);
		return;
	}
	ids = json_object_get_string(id);
	if (sscanf(ids, "%llu-%llu%c", &ms, &seq, &tail) != 2 ||
	    (unsigned long long)json_object_get_int64(ts) != ms) {
		c->other++;
		fail(c, "bad id or ts: %.80s", raw);
		return;
	}
	if (opt_user != NULL) {
		const char *chs = json_object_get_string(ch);
		const char *colon = strrchr(chs, ':');

		if (colon == NULL || strcmp(colon + 1, opt_user) != 0) {
			c->other++;
			fail(c, "channel %s is not user %s's", chs, opt_user);
			return;
		}
	}
	if (c->have_id && (ms < c->last_ms || (ms == c->last_ms && seq <= c->last_seq))) {
		c->ids_ooo++;
		fail(c, "id %s not after %llu-%llu", ids, c->last_ms, c->last_seq);
	}
	c->have_id = 1;
	c->last_ms = ms;
	c->last_seq = seq;
	if (opt_lag) {
		printf("lag %lld n=%s\n", wall_ms() - (long long)ms,
		       json_object_object_get_ex(data, "n", &n) ? json_object_get_string(n) : "?");
		fflush(stdout);
	}
	if (!json_object_object_get_ex(data, "n", &n) || !json_object_is_type(n, json_type_int)) {
		c->other++;
		fail(c, "payload without n: %.*s", (int)(rawlen < 80 ? rawlen : 80), raw);
		return;
	}
	got_n(c, (long)json_object_get_int64(n));
}

static void got_env(struct conn *c, const char *p, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	json_object *o, *t, *cur;

	if (tok == NULL)
		die("json_tokener_new");
	o = json_tokener_parse_ex(tok, p, (int)len);
	if (o == NULL || json_tokener_get_parse_end(tok) != len) {
		c->other++;
		fail(c, "not JSON: %.*s", (int)(len < 80 ? len : 80), p);
	} else if (json_object_is_type(o, json_type_object) &&
		   json_object_object_get_ex(o, "type", &t) &&
		   json_object_is_type(t, json_type_string) &&
		   strcmp(json_object_get_string(t), "cursor") == 0 &&
		   json_object_object_get_ex(o, "cursor", &cur) &&
		   json_object_is_type(cur, json_type_string)) {
		got_cursor(c, json_object_get_string(cur));
	} else {
		c->cursor_due = 0;
		got_env_obj(c, o, p, len);
	}
	json_object_put(o);
	json_tokener_free(tok);
}

/* --- requests --------------------------------------------------------------- */

static int send_request(struct conn *c)
{
	char req[16384];
	const char *sep = strchr(c->path, '?') != NULL ? "&" : "?";
	int n, i;

	c->cursor_due = (tr == TR_WS || tr == TR_SSE || tr == TR_SSEQ) && c->cursor[0] == '\0';
	switch (tr) {
	case TR_WS:
		n = snprintf(
		    req, sizeof req,
		    "GET %s%s%s%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n",
		    c->path, c->cursor[0] ? sep : "", c->cursor[0] ? "since=" : "", c->cursor);
		break;
	case TR_SSE:
		n = snprintf(req, sizeof req,
			     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
			     "Cache-Control: no-cache\r\n%s%s%s",
			     c->path, c->cursor[0] ? "Last-Event-ID: " : "", c->cursor,
			     c->cursor[0] ? "\r\n" : "");
		break;
	case TR_SSEQ:
		n = snprintf(
		    req, sizeof req,
		    "GET %s%s%s%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
		    "Cache-Control: no-cache\r\n",
		    c->path, c->cursor[0] ? sep : "", c->cursor[0] ? "last_event_id=" : "",
		    c->cursor);
		break;
	default: {
		char extra[64] = "";

		if (tr == TR_LPOLL)
			snprintf(extra, sizeof extra, "&wait=%ld", opt_wait);
		n = snprintf(req, sizeof req,
			     "GET %s%slimit=%ld%s%s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			     "Connection: close\r\n",
			     c->path, sep, opt_limit, extra, c->cursor[0] ? "&since=" : "",
			     c->cursor);
		break;
	}
	}
	for (i = 0; i < nhdrs && n > 0 && (size_t)n < sizeof req; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", hdrs[i]);
	if (n > 0 && (size_t)n < sizeof req)
		n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
	if (n <= 0 || (size_t)n >= sizeof req) {
		fail(c, "request too long");
		return -1;
	}
	return client_write_all(c->fd, req, (size_t)n);
}

static int conn_open(struct conn *c)
{
	c->fd = client_dial("replay_check", addr, opt_rcvbuf >= 0 ? (int)opt_rcvbuf : opt_stall ? 4096 : 0);
	if (c->fd < 0) {
		fail(c, "connect failed");
		return -1;
	}
	c->phase = PH_HEAD;
	c->status = 0;
	c->chunked = 0;
	c->clen = -1;
	c->body_seen = 0;
	c->ch = CH_SIZE;
	c->ch_left = 0;
	c->body_complete = 0;
	c->in.len = c->body.len = 0;
	if (c->sse_on)
		sse_parser_free(&c->sse);
	sse_parser_init(&c->sse, on_sse_event, c);
	c->sse_on = 1;
	if (send_request(c) != 0) {
		fail(c, "request failed: %s", strerror(errno));
		return -1;
	}
	if (!opt_stall)
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void finish(struct conn *c)
{
	if (c->finished)
		return;
	if (tr == TR_WS && c->fd >= 0 && c->phase == PH_BODY) {
		uint8_t cl[WSF_CTRL_MAX];

		ws_send_ctl(c, WSF_OP_CLOSE, cl, wsf_close_payload(cl, WSF_CLOSE_NORMAL, NULL));
	}
	conn_close(c);
	c->finished = 1;
	c->t_end = now_ms();
	c->phase = PH_DONE;
}

/* --- HTTP ------------------------------------------------------------------ */

static int head_parse(struct conn *c)
{
	char *end = strstr(c->in.p, "\r\n\r\n");
	char *line;

	if (end == NULL)
		return c->in.len > 65536 ? -1 : 0;
	*end = '\0';
	if (sscanf(c->in.p, "HTTP/1.%*d %d", &c->status) != 1)
		return -1;
	for (line = strstr(c->in.p, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;

		if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strstr(h, "chunked") != NULL)
			c->chunked = 1;
		else if (strncasecmp(h, "Content-Length:", 15) == 0)
			c->clen = atoll(h + 15);
	}
	buf_eat(&c->in, (size_t)(end - c->in.p) + 4);
	c->phase = PH_BODY;
	return 1;
}

/* Move body bytes from in to body (chunked or not); body_complete at the end. */
static int body_decode(struct conn *c)
{
	while (c->in.len > 0 && !c->body_complete) {
		if (!c->chunked) {
			size_t n = c->in.len;

			if (c->clen >= 0 && (long long)n > c->clen - c->body_seen)
				n = (size_t)(c->clen - c->body_seen);
			buf_add(&c->body, c->in.p, n);
			buf_eat(&c->in, n);
			c->body_seen += (long long)n;
			if (c->clen >= 0 && c->body_seen >= c->clen)
				c->body_complete = 1;
			continue;
		}
		switch (c->ch) {
		case CH_SIZE:
		case CH_DATA_END:
		case CH_TRAILER: {
			char *eol = memchr(c->in.p, '\n', c->in.len);

			if (eol == NULL)
				return 0;
			if (c->ch == CH_SIZE) {
				char *e;

				c->ch_left = strtoll(c->in.p, &e, 16);
				if (e == c->in.p || c->ch_left < 0)
					return -1;
				c->ch = c->ch_left == 0 ? CH_TRAILER : CH_DATA;
			} else if (c->ch == CH_DATA_END) {
				c->ch = CH_SIZE;
			} else if (eol == c->in.p || (eol == c->in.p + 1 && c->in.p[0] == '\r')) {
				c->body_complete = 1;
			}
			buf_eat(&c->in, (size_t)(eol - c->in.p) + 1);
			break;
		}
		case CH_DATA: {
			size_t n = c->in.len < (size_t)c->ch_left ? c->in.len : (size_t)c->ch_left;

			buf_add(&c->body, c->in.p, n);
			buf_eat(&c->in, n);
			c->ch_left -= (long long)n;
			if (c->ch_left == 0)
				c->ch = CH_DATA_END;
			break;
		}
		default:
			return 0;
		}
	}
	return 0;
}

/* --- SSE ----------------------------------------------------------------------- */

/* An event of the stream: the reset signal, or a notification. */
static void on_sse_event(void *ud, const char *type, const char *data, size_t len,
		      const char *last_id)
{
	struct conn *c = ud;

	/* last_id: only the cursor event's; the envelopes' ids are checked instead */
	if (c->finished)
		return;
	if (strcmp(type, "reset") == 0) {
		got_reset(c);
	} else if (strcmp(type, "cursor") == 0) {
		got_cursor(c, last_id);
	} else if (strcmp(type, "heartbeat") == 0) {
		/* every `heartbeat` s, whatever else was sent (protocol.md, 11):
		 * a replay that outlasts one sees it; not a notification */
	} else if (strcmp(type, "notification") == 0 || strcmp(type, "message") == 0) {
		got_env(c, data, len);
	} else {
		c->other++;
		fail(c, "unknown SSE event '%s'", type);
	}
}

static void sse_lines(struct conn *c)
{
	if (c->body.len > 0 && sse_parser_feed(&c->sse, c->body.p, c->body.len) != 0) {
		fail(c, "SSE: a line over 1 MiB");
		finish(c);
	}
	buf_eat(&c->body, c->body.len);
}

/* --- polls -------------------------------------------------------------------- */

static void poll_page(struct conn *c)
{
	json_object *o = json_tokener_parse(c->body.p != NULL ? c->body.p : "");
	json_object *arr, *cur, *tr_, *more;
	size_t n;
	int had_m = c->reached, is_more = 0, has_more;

	c->pages++;
	if (c->status == 503 && opt_reconnect && !c->got_b) {
		/* -c: unavailable for now (the subscriber reconnecting): come
		 * back with the same cursor, as herald.js does (after
		 * Retry-After) */
		json_object_put(o);
		conn_close(c);
		c->body.len = 0;
		c->reconnects++;
		c->phase = PH_IDLE;
		c->next_at = now_ms() + 1000;
		return;
	}
	if (c->status != 200 || o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "notifications", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		fail(c, "poll answered %d: %.100s", c->status, c->body.p != NULL ? c->body.p : "");
		json_object_put(o);
		finish(c);
		return;
	}
	if (json_object_object_get_ex(o, "truncated", &tr_) && json_object_get_boolean(tr_))
		got_reset(c);
	n = json_object_array_length(arr);
	if ((long)n > opt_limit) {
		c->big_pages++;
		fail(c, "a page of %zu notifications with limit=%ld", n, opt_limit);
	}
	for (size_t i = 0; i < n && !c->finished; i++) {
		json_object *e = json_object_array_get_idx(arr, i);

		got_env_obj(c, e, json_object_to_json_string(e),
			    strlen(json_object_to_json_string(e)));
	}
	has_more = json_object_object_get_ex(o, "more", &more);
	if (has_more)
		is_more = json_object_get_boolean(more);
	if (opt_strict_more && opt_m >= 0 && !had_m) {
		if (!has_more) {
			c->more_wrong++;
			fail(c, "a poll answer without \"more\"");
		} else if (is_more == c->reached) {
			c->more_wrong++;
			fail(c, "page %ld (%zu notifications, last n=%ld): more=%s", c->pages, n,
			     c->last, is_more ? "true" : "false");
		}
	}
	if (json_object_object_get_ex(o, "cursor", &cur) &&
	    json_object_is_type(cur, json_type_string))
		snprintf(c->cursor, sizeof c->cursor, "%s", json_object_get_string(cur));
	json_object_put(o);
	conn_close(c);
	c->body.len = 0;
	if (c->got_b) {
		finish(c);
		return;
	}
	c->phase = PH_IDLE;
	c->next_at = now_ms() + (is_more || tr == TR_LPOLL ? 0 : opt_interval_ms);
}

/* -c: the stream ended before B; come back from the last id (0), or 1. */
static int reconnect(struct conn *c)
{
	if (!opt_reconnect || c->got_b || c->failed || tr == TR_POLL || tr == TR_LPOLL)
		return 1;
	if (c->have_id)
		snprintf(c->cursor, sizeof c->cursor, "%llu-%llu", c->last_ms, c->last_seq);
	conn_close(c);
	c->reconnects++;
	c->msg.len = 0;
	c->phase = PH_IDLE;
	c->next_at = now_ms() + 100;
	return 0;
}

/* --- WebSocket ------------------------------------------------------------------ */

/* A control frame, masked with a zero key (the payload goes as is). */
static void ws_send_ctl(struct conn *c, int op, const uint8_t *p, size_t n)
{
	static const uint8_t key[4] = {0, 0, 0, 0};
	uint8_t f[WSF_HDR_MAX + WSF_CTRL_MAX];
	long w = wsf_write_frame(f, sizeof f, 1, op, key, p, n > WSF_CTRL_MAX ? WSF_CTRL_MAX : n);

	if (w > 0)
		client_write_all(c->fd, f, (size_t)w);
}

static void ws_frames(struct conn *c)
{
	while (!c->finished) {
		struct wsf_frame f;
		long used = wsf_frame_read((uint8_t *)c->in.p, c->in.len, (size_t)1 << 30, &f);

		if (used == 0)
			return;
		if (used < 0 || f.masked) {
			fail(c, used < 0 ? "a malformed frame" : "a masked frame from the server");
			finish(c);
			return;
		}
		if (f.opcode == WSF_OP_PING) {
			ws_send_ctl(c, WSF_OP_PONG, f.payload, f.len);
		} else if (f.opcode == WSF_OP_CLOSE) {
			if (reconnect(c) == 0)
				return;
			if (!c->got_b)
				fail(c, "closed %d %.*s", wsf_close_code(f.payload, f.len),
				     f.len > 2 ? (int)f.len - 2 : 0, (const char *)f.payload + 2);
			finish(c);
			return;
		} else if (f.opcode == WSF_OP_TEXT || f.opcode == WSF_OP_CONT) {
			if (f.opcode == WSF_OP_TEXT)
				c->msg.len = 0;
			buf_add(&c->msg, f.payload, f.len);
			if (f.fin) {
				if (c->msg.len == 14 &&
				    memcmp(c->msg.p, "{\"reset\":true}", 14) == 0)
					got_reset(c);
				else
					got_env(c, c->msg.p, c->msg.len);
				c->msg.len = 0;
			}
		} else if (f.opcode != WSF_OP_PONG) {
			c->other++;
			fail(c, "frame opcode %d", f.opcode);
		}
		buf_eat(&c->in, (size_t)used);
	}
}

/* --- the loop ------------------------------------------------------------------ */

static void on_eof(struct conn *c);


static void on_bytes(struct conn *c)
{
	if (c->phase == PH_HEAD) {
		int r = head_parse(c);

		if (r < 0) {
			fail(c, "bad HTTP response");
			finish(c);
			return;
		}
		if (r == 0)
			return;
		if ((tr == TR_WS && c->status != 101) ||
		    ((tr == TR_SSE || tr == TR_SSEQ) && c->status != 200)) {
			fail(c, "HTTP status %d", c->status);
			finish(c);
			return;
		}
	}
	if (tr == TR_WS) {
		ws_frames(c);
		return;
	}
	if (body_decode(c) < 0) {
		fail(c, "bad chunked encoding");
		finish(c);
		return;
	}
	if (tr == TR_SSE || tr == TR_SSEQ) {
		sse_lines(c);
		/* the response ended (chunked terminator): the stream is over,
		 * even if nginx keeps the connection open for the next request */
		if (c->body_complete && !c->finished)
			on_eof(c);
	} else if (c->body_complete) {
		poll_page(c);
	}
}

static void on_eof(struct conn *c)
{
	if (c->phase == PH_BODY && (tr == TR_POLL || tr == TR_LPOLL)) {
		poll_page(c);
		return;
	}
	if (c->phase == PH_BODY && reconnect(c) == 0)
		return;
	if (!c->got_b)
		fail(c, "the server %s (%s)",
		     c->body_complete ? "ended the response" : "closed the connection",
		     c->phase == PH_HEAD ? "before answering" : "mid-stream");
	finish(c);
}

static void report(const struct conn *c)
{
	char rbuf[32] = "";
	long gaps = 0;

	if (opt_reconnect)
		snprintf(rbuf, sizeof rbuf, " reconnects=%ld", c->reconnects);

	for (long n = opt_a; n <= opt_b; n++)
		gaps += !c->seen[n - opt_a];
	printf("%s %s count=%ld first=%ld last=%ld dups=%ld gaps=%ld ooo=%ld other=%ld ids_ooo=%ld "
	       "reset=%d pages=%ld ms=%lld%s%s%s\n",
	       c->failed ? "FAIL" : "ok", tr_name[tr], c->count, c->first, c->last, c->dups, gaps,
	       c->ooo, c->other, c->ids_ooo, c->reset_seen, c->pages, c->t_end - c->t0, rbuf,
	       c->failed ? " " : "", c->failed ? c->why : "");
}

static int verdict(struct conn *c)
{
	long gaps = 0;

	for (long n = opt_a; n <= opt_b; n++)
		gaps += !c->seen[n - opt_a];
	if (gaps > 0)
		fail(c, "%ld of %ld..%ld never arrived", gaps, opt_a, opt_b);
	if (opt_reset && !c->reset_seen)
		fail(c, "no reset signal");
	return c->failed;
}

static void conns_free(struct conn *cs, int nc)
{
	for (int i = 0; i < nc; i++) {
		free(cs[i].path);
		free(cs[i].seen);
		buf_free(&cs[i].in);
		buf_free(&cs[i].body);
		buf_free(&cs[i].msg);
		if (cs[i].sse_on)
			sse_parser_free(&cs[i].sse);
	}
	free(cs);
}

static int stall(struct conn *cs, int nc)
{
	int closed = 0, i;
	struct pollfd in = {0, POLLIN, 0};
	long long deadline = now_ms() + opt_timeout_s * 1000;

	for (i = 0; i < nc; i++)
		if (conn_open(&cs[i]) != 0)
			return 2;
	printf("stalled %d\n", nc);
	fflush(stdout);
	while (now_ms() < deadline) {
		int r = poll(&in, 1, (int)(deadline - now_ms()));

		if (r > 0) {
			char b[64];

			if (read(0, b, sizeof b) <= 0)
				break;
		}
	}
	for (i = 0; i < nc; i++) {
		struct pollfd p = {cs[i].fd, POLLRDHUP, 0};

		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			closed++;
		conn_close(&cs[i]);
	}
	printf("peer closed %d of %d\n", closed, nc);
	return 0;
}

static enum tr parse_tr(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (strcmp(s, tr_name[i]) == 0)
			return (enum tr)i;
	fprintf(stderr, "replay_check: unknown transport %s\n", s);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *file = NULL, *cursor = "";
	struct conn *cs;
	int nc = 0, opt, failed = 0;
	long long t0, deadline;
	long total = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "T:s:a:b:Ru:m:Ml:w:i:d:g:t:LH:f:Sr:c")) != -1) {
		switch (opt) {
		case 'T':
			tr = parse_tr(optarg);
			break;
		case 's':
			cursor = optarg;
			break;
		case 'a':
			opt_a = atol(optarg);
			break;
		case 'b':
			opt_b = atol(optarg);
			break;
		case 'R':
			opt_reset = 1;
			break;
		case 'u':
			opt_user = optarg;
			break;
		case 'm':
			opt_m = atol(optarg);
			break;
		case 'M':
			opt_strict_more = 1;
			break;
		case 'l':
			opt_limit = atol(optarg);
			break;
		case 'w':
			opt_wait = atol(optarg);
			break;
		case 'i':
			opt_interval_ms = atol(optarg);
			break;
		case 'd':
			opt_delay_us = atol(optarg);
			break;
		case 'g':
			opt_grace_ms = atol(optarg);
			break;
		case 't':
			opt_timeout_s = atol(optarg);
			break;
		case 'L':
			opt_lag = 1;
			break;
		case 'H':
			if (nhdrs < 16)
				hdrs[nhdrs++] = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'c':
			opt_reconnect = 1;
			break;
		case 'S':
			opt_stall = 1;
			break;
		case 'r':
			opt_rcvbuf = atol(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: replay_check [options] ADDR PATH (see the source)\n");
			return 2;
		}
	}
	if (argc - optind != (file != NULL ? 1 : 2) || opt_b < opt_a) {
		fprintf(stderr, "usage: replay_check [options] ADDR PATH | -f FILE ADDR\n");
		return 2;
	}
	addr = argv[optind];
	if (file != NULL) {
		FILE *f = fopen(file, "r");
		char line[8192];
		int cap = 0;

		if (f == NULL)
			die(file);
		cs = NULL;
		while (fgets(line, sizeof line, f) != NULL) {
			char p[8192], cu[64] = "";

			if (sscanf(line, "%8191s %63s", p, cu) < 1)
				continue;
			if (nc == cap) {
				cap = cap ? cap * 2 : 64;
				cs = realloc(cs, (size_t)cap * sizeof *cs);
				if (cs == NULL)
					die("realloc");
			}
			memset(&cs[nc], 0, sizeof cs[nc]);
			cs[nc].path = strdup(p);
			snprintf(cs[nc].cursor, sizeof cs[nc].cursor, "%s", cu);
			nc++;
		}
		fclose(f);
		if (nc == 0) {
			fprintf(stderr, "replay_check: %s: no paths\n", file);
			return 2;
		}
	} else {
		cs = calloc(1, sizeof *cs);
		if (cs == NULL)
			die("calloc");
		cs[0].path = strdup(argv[optind + 1]);
		snprintf(cs[0].cursor, sizeof cs[0].cursor, "%s", cursor);
		nc = 1;
	}
	for (int i = 0; i < nc; i++) {
		cs[i].fd = -1;
		cs[i].seen = calloc((size_t)(opt_b - opt_a + 1), 1);
		if (cs[i].seen == NULL)
			die("calloc");
		cs[i].maxn = opt_a - 1;
	}
	if (opt_stall) {
		int rc = stall(cs, nc);

		conns_free(cs, nc);
		return rc;
	}

	t0 = now_ms();
	deadline = t0 + opt_timeout_s * 1000;
	for (int i = 0; i < nc; i++) {
		cs[i].t0 = now_ms();
		if (conn_open(&cs[i]) != 0)
			finish(&cs[i]);
	}
	for (;;) {
		struct pollfd *pf = calloc((size_t)nc, sizeof *pf);
		int *ix = calloc((size_t)nc, sizeof *ix), np = 0, active = 0;
		long long now = now_ms(), wake = deadline;

		if (pf == NULL || ix == NULL)
			die("calloc");
		for (int i = 0; i < nc; i++) {
			struct conn *c = &cs[i];

			if (c->finished)
				continue;
			active++;
			if (c->got_b && c->grace_until < wake)
				wake = c->grace_until;
			if (c->phase == PH_IDLE) {
				if (c->next_at < wake)
					wake = c->next_at;
				continue;
			}
			pf[np].fd = c->fd;
			pf[np].events = POLLIN;
			ix[np++] = i;
		}
		if (active == 0) {
			free(pf);
			free(ix);
			break;
		}
		if (poll(pf, (nfds_t)np, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR)
			die("poll");
		for (int k = 0; k < np; k++) {
			struct conn *c = &cs[ix[k]];

			if (pf[k].revents == 0)
				continue;
			for (;;) {
				char b[65536];
				ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT);

				if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
					break;
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					on_eof(c);
					break;
				}
				buf_add(&c->in, b, (size_t)r);
				on_bytes(c);
				if (c->finished || c->phase == PH_IDLE)
					break;
			}
		}
		now = now_ms();
		for (int i = 0; i < nc; i++) {
			struct conn *c = &cs[i];

			if (c->finished)
				continue;
			if (c->got_b && now >= c->grace_until && c->phase != PH_HEAD)
				finish(c);
			else if (c->phase == PH_IDLE && now >= c->next_at && conn_open(c) != 0)
				finish(c);
			else if (now >= deadline) {
				fail(c, "timeout after %ld s", opt_timeout_s);
				finish(c);
			}
		}
		free(pf);
		free(ix);
	}
	for (int i = 0; i < nc; i++) {
		if (verdict(&cs[i]))
			failed++;
		total += cs[i].count;
		if (nc == 1 || cs[i].failed)
			report(&cs[i]);
	}
	if (nc > 1)
		printf("conns=%d ok=%d failed=%d notifications=%ld ms=%lld\n", nc, nc - failed,
		       failed, total, now_ms() - t0);
	conns_free(cs, nc);
	return failed ? 1 : 0;
}
