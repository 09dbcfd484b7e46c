/*
 * herald-fcgi: the FastCGI responder for SSE streams and polling, and the
 * plain-CGI answer to one polling or health request.
 *
 * Threads.  `threads` acceptor threads (256 KiB stacks) take requests with
 * FCGX_Accept_r and answer the short ones themselves: polls with something
 * to return, health, metrics, publish, errors.  A request that must be held
 * (an SSE stream, or a long-poll with nothing to return yet) is handed, as a
 * heap-allocated FCGX_Request, to a new thread with a 64 KiB stack that
 * sleeps in ppoll() on the request socket until the hub wakes it with a
 * signal (sse/waiter.h).  The acceptor goes back to accepting at once, so
 * held streams never starve polls: short requests always find `threads`
 * acceptors.  The cost of a held request is one thread: 9.6 KiB resident per
 * stream measured (8 KiB of its stack, the rest hub entry and queue), once
 * the thread has handed libfcgi's request back (see struct io); 1,000
 * streams, 1,000 threads.  One
 * loop thread owning every stream would save the thread but needs
 * non-blocking writes libfcgi does not do; the simple design meets the
 * memory target, so it is the one here.
 *
 * Held threads run on stacks we mmap ourselves, and the loop thread joins
 * each finished thread and unmaps its stack (then trims malloc once none
 * is held).  glibc would keep up to 40 MiB of finished threads' stacks in
 * its cache, resident: 1,000 streams that came and went left ~19 MiB.
 *
 * One more thread runs the libevent loop of the Redis subscriber (sub.h).
 * Signals are blocked in every thread and taken by the main thread with
 * sigwait(): SIGTERM/SIGINT end every stream and exit, SIGHUP reopens the
 * log and reloads the JWT key.
 */
#include "config.h"

#include <errno.h>
#include <fcgiapp.h>
#include <malloc.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "conf.h"
#include "cursor.h"
#include "err.h"
#include "history.h"
#include "http.h"
#include "hub.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "redis.h"
#include "router.h"
#include "sse/sse.h"
#include "sse/stream.h"
#include "sse/waiter.h"
#include "sub.h"
#include "clock.h"

#define PROG "herald-fcgi"
#define ACCEPTOR_STACK (256 * 1024)
#define HELD_STACK (64 * 1024)
#define HELD_GUARD 4096
/* A client that stops reading blocks a write at most this long (SO_SNDTIMEO). */
#define SEND_TIMEOUT_S 10
#define REDIS_TIMEOUT_MS 2000
#define RETRY_AFTER_S 5
#define DEFAULT_LISTEN "unix:/run/herald/fcgi.sock"
#define STR_(x) #x
#define STRINGIFY(x) STR_(x)

static struct {
	struct conf conf;
	const char *conf_path;
	pthread_rwlock_t auth_lock;
	auth_t *auth;
	struct hub *hub;
	struct sub *sub;
	struct event_base *base;
	pthread_t loop_thread;
	struct redis_addr raddr;
	long long start_ms;
	int listen_fd;
	char unix_path[108];
	atomic_int stopping;
	atomic_long busy;      /* acceptors inside a request */
	atomic_long held;      /* held threads alive */
	pthread_mutex_t done_mu;
	struct held *done;     /* held threads that returned, to join (done_mu) */
	struct event *reap_ev; /* on base: joins them */
	atomic_long streams;   /* SSE streams now */
	atomic_long waiting;   /* long-polls waiting now */
	atomic_ulong n_polls, n_streams, n_publishes, n_errors, n_sse_events;
	long threads;
} app;

/* --- request I/O: a FastCGI request, or CGI (environment and stdio) ------- */

/*
 * Where a request's answer goes: libfcgi's request (acceptors), stdio (CGI),
 * or, for a held request, the FastCGI socket itself: held threads free
 * libfcgi's request (16 KiB of stream buffers and the parameters) and write
 * FCGI_STDOUT records themselves, which halves what a held stream costs.
 */
struct io {
	FCGX_Request *r; /* libfcgi's, or NULL */
	int fd;          /* with r == NULL: the FastCGI socket, or -1 for CGI */
	unsigned reqid;  /* FastCGI request id, with fd */
};

static int io_cgi(const struct io *io)
{
	return io->r == NULL && io->fd < 0;
}

/* One FastCGI record, written whole (bounded by the socket's SO_SNDTIMEO). */
static int fcgi_record(int fd, unsigned reqid, int type, const char *buf, size_t len)
{
	unsigned char hd[8] = {1, (unsigned char)type, (unsigned char)(reqid >> 8),
			       (unsigned char)reqid, (unsigned char)(len >> 8),
			       (unsigned char)len, 0, 0};
	struct iovec iov[2] = {{hd, sizeof hd}, {(void *)buf, len}};
	int n = len > 0 ? 2 : 1, k = 0;

	while (k < n) {
		ssize_t w = writev(fd, iov + k, n - k);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return HERR_IO;
		while (k < n && (size_t)w >= iov[k].iov_len)
			w -= (ssize_t)iov[k++].iov_len;
		if (k < n) {
			iov[k].iov_base = (char *)iov[k].iov_base + w;
			iov[k].iov_len -= (size_t)w;
		}
	}
	return 0;
}

#define FCGI_STDOUT_T 6
#define FCGI_END_REQUEST_T 3
#define FCGI_RECORD_MAX 65535

static int raw_write(const struct io *io, const char *buf, size_t len)
{
	while (len > 0) {
		size_t n = len > FCGI_RECORD_MAX ? FCGI_RECORD_MAX : len;

		if (fcgi_record(io->fd, io->reqid, FCGI_STDOUT_T, buf, n) != 0)
			return HERR_IO;
		buf += n;
		len -= n;
	}
	return 0;
}

/* The end of a held request: the empty STDOUT record, END_REQUEST, close. */
static void raw_end(struct io *io)
{
	static const char complete[8] = {0}; /* appStatus 0, FCGI_REQUEST_COMPLETE */

	if (fcgi_record(io->fd, io->reqid, FCGI_STDOUT_T, NULL, 0) == 0)
		fcgi_record(io->fd, io->reqid, FCGI_END_REQUEST_T, complete, sizeof complete);
	close(io->fd);
	io->fd = -1;
}

static const char *io_param(const struct io *io, const char *name)
{
	if (io->r != NULL)
		return FCGX_GetParam(name, io->r->envp);
	return io->fd < 0 ? getenv(name) : NULL; /* held: parameters are freed */
}

static int io_write(const struct io *io, const char *buf, size_t len)
{
	if (io_cgi(io))
		return fwrite(buf, 1, len, stdout) == len ? 0 : HERR_IO;
	if (io->r == NULL)
		return raw_write(io, buf, len);
	if (len > INT_MAX || FCGX_PutStr(buf, (int)len, io->r->out) < 0)
		return HERR_IO;
	return 0;
}

static int io_flush(const struct io *io)
{
	if (io_cgi(io))
		return fflush(stdout) == 0 ? 0 : HERR_IO;
	if (io->r == NULL)
		return 0; /* raw records are written at once */
	if (FCGX_FFlush(io->r->out) < 0 || FCGX_GetError(io->r->out) != 0)
		return HERR_IO;
	return 0;
}

static long io_read(const struct io *io, char *buf, size_t len)
{
	if (io_cgi(io))
		return (long)fread(buf, 1, len, stdin);
	if (io->r == NULL)
		return 0; /* held: the body was read before */
	return FCGX_GetStr(buf, len > INT_MAX ? INT_MAX : (int)len, io->r->in);
}

/* Status line and headers; extra is "" or complete "Name: value\r\n" lines. */
static int io_head(const struct io *io, int status, const char *ctype, const char *extra)
{
	char h[512];
	int n = snprintf(h, sizeof h, "Status: %d %s\r\nContent-Type: %s\r\n%s\r\n", status,
			 http_status_text(status), ctype, extra ? extra : "");

	if (n < 0 || (size_t)n >= sizeof h)
		return HERR_INVAL;
	return io_write(io, h, (size_t)n);
}

static void respond(const struct io *io, int status, const char *ctype, const char *extra,
		    const char *body, size_t len)
{
	if (status >= 400)
		atomic_fetch_add(&app.n_errors, 1);
	if (io_head(io, status, ctype, extra) == 0 && io_write(io, body, len) == 0)
		io_flush(io);
}

static void respond_json(const struct io *io, int status, const char *extra, const char *body)
{
	char h[256];

	snprintf(h, sizeof h, "Cache-Control: no-store\r\n%s", extra ? extra : "");
	respond(io, status, "application/json", h, body, strlen(body));
}

static void respond_error(const struct io *io, const struct route *rt)
{
	char body[256], extra[128] = "";

	router_error_json(rt, body, sizeof body);
	if (rt->status == 401 && rt->kind == ROUTE_PUBLISH)
		snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer\r\n");
	else if (rt->status == 401)
		snprintf(extra, sizeof extra,
			 "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
	else if (rt->status == 405)
		snprintf(extra, sizeof extra, "Allow: %s\r\n", rt->allow);
	else if (rt->status == 503 || rt->status == 429)
		snprintf(extra, sizeof extra, "Retry-After: %d\r\n", RETRY_AFTER_S);
	respond_json(io, rt->status, extra, body);
}

static void respond_unavailable(const struct io *io, const char *detail)
{
	struct route rt = {.status = 503, .error = "unavailable"};

	snprintf(rt.detail, sizeof rt.detail, "%s", detail);
	respond_error(io, &rt);
}

/* --- health and metrics ---------------------------------------------------- */

/* Under CGI there is no subscriber: a PING stands for it. */
static void cgi_sub_status(struct sub_status *st)
{
	char err[160];
	redisContext *rc = NULL;
	redisReply *r;

	memset(st, 0, sizeof *st);
	if (redis_connect(&app.raddr, REDIS_TIMEOUT_MS, &rc, err, sizeof err) != 0) {
		snprintf(st->last_error, sizeof st->last_error, "%s", err);
		return;
	}
	r = redisCommand(rc, "PING");
	if (r != NULL && r->type == REDIS_REPLY_STATUS) {
		st->state = SUB_CONNECTED;
		st->healthy = 1;
	} else {
		snprintf(st->last_error, sizeof st->last_error, "PING failed: %s",
			 rc->err ? rc->errstr : "error reply");
	}
	freeReplyObject(r);
	redisFree(rc);
}

static void snapshot(struct hub_stats *hs, struct sub_status *ss)
{
	memset(hs, 0, sizeof *hs);
	if (app.hub != NULL)
		hub_get_stats(app.hub, hs);
	if (app.sub != NULL)
		sub_get_status(app.sub, ss);
	else
		cgi_sub_status(ss);
}

static void do_health(const struct io *io)
{
	struct hub_stats hs;
	struct sub_status ss;
	struct metrics_buf b;
	char extra[256];
	int status;

	snapshot(&hs, &ss);
	snprintf(extra, sizeof extra,
		 "\"streams\":%ld,\"polls_waiting\":%ld,\"threads\":%ld,\"threads_busy\":%ld,"
		 "\"mode\":\"%s\"",
		 atomic_load(&app.streams), atomic_load(&app.waiting), app.threads,
		 atomic_load(&app.busy), io_cgi(io) ? "cgi" : "fastcgi");
	metrics_buf_init(&b);
	status = metrics_health_json(&b, PROG, &hs, &ss, app.start_ms, clock_wall_ms(), extra);
	if (b.err)
		respond_unavailable(io, "out of memory");
	else
		respond_json(io, status,
			     status == 503 ? "Retry-After: " STRINGIFY(RETRY_AFTER_S) "\r\n" : "",
			     b.data);
	metrics_buf_free(&b);
}

static void do_metrics(const struct io *io)
{
	struct hub_stats hs;
	struct sub_status ss;
	struct metrics_buf b;

	snapshot(&hs, &ss);
	metrics_buf_init(&b);
	metrics_prometheus(&b, PROG, &hs, &ss, app.start_ms, clock_wall_ms());
	metrics_gauge(&b, "herald_fcgi_streams", "SSE streams held now.",
		      (double)atomic_load(&app.streams));
	metrics_gauge(&b, "herald_fcgi_polls_waiting", "Long-polls waiting now.",
		      (double)atomic_load(&app.waiting));
	metrics_gauge(&b, "herald_fcgi_threads", "Acceptor threads.", (double)app.threads);
	metrics_gauge(&b, "herald_fcgi_threads_busy", "Acceptor threads inside a request.",
		      (double)atomic_load(&app.busy));
	metrics_gauge(&b, "herald_fcgi_held_threads", "Threads holding a stream or long-poll.",
		      (double)atomic_load(&app.held));
	metrics_counter(&b, "herald_fcgi_polls_total", "Poll requests answered.",
			atomic_load(&app.n_polls));
	metrics_counter(&b, "herald_fcgi_streams_total", "SSE streams started.",
			atomic_load(&app.n_streams));
	metrics_counter(&b, "herald_fcgi_sse_events_total", "SSE events written.",
			atomic_load(&app.n_sse_events));
	metrics_counter(&b, "herald_fcgi_publishes_total", "Messages published over HTTP.",
			atomic_load(&app.n_publishes));
	metrics_counter(&b, "herald_fcgi_errors_total", "Responses with a 4xx or 5xx status.",
			atomic_load(&app.n_errors));
	if (b.err)
		respond_unavailable(io, "out of memory");
	else
		respond(io, 200, "text/plain; version=0.0.4", "Cache-Control: no-store\r\n", b.data,
			b.len);
	metrics_buf_free(&b);
}

/* --- polling ---------------------------------------------------------------- */

struct poll_out {
	struct metrics_buf b;
	unsigned n;
	int has_cursor;
	struct cursor cursor;
	int truncated;
};

static void poll_out_init(struct poll_out *p, const struct route *rt)
{
	metrics_buf_init(&p->b);
	metrics_printf(&p->b, "{\"notifications\":[");
	p->n = 0;
	p->has_cursor = rt->has_since;
	p->cursor = rt->since;
	p->truncated = 0;
}

static void poll_out_add(struct poll_out *p, const char *env, size_t len, const struct cursor *id)
{
	metrics_printf(&p->b, "%s%.*s", p->n ? "," : "", (int)len, env);
	p->n++;
	if (id != NULL) {
		p->has_cursor = 1;
		p->cursor = *id;
	}
}

static void poll_out_send(const struct io *io, struct poll_out *p)
{
	char cur[CURSOR_STR_MAX];

	if (p->has_cursor)
		cursor_format(&p->cursor, cur, sizeof cur);
	metrics_printf(&p->b, "],\"cursor\":%s%s%s,\"truncated\":%s,\"poll_interval\":%ld}",
		       p->has_cursor ? "\"" : "", p->has_cursor ? cur : "null",
		       p->has_cursor ? "\"" : "", p->truncated ? "true" : "false",
		       app.conf.poll_interval);
	atomic_fetch_add(&app.n_polls, 1);
	if (p->b.err)
		respond_unavailable(io, "out of memory");
	else
		respond_json(io, 200, NULL, p->b.data);
	metrics_buf_free(&p->b);
}

/* Read history; 0 with *res filled, or <0 after answering 503. */
static int poll_read(const struct io *io, redisContext **rcp, const struct route *rt,
		     struct history_result *res)
{
	char err[256];
	int rc, reused = *rcp != NULL;

again:
	if (*rcp == NULL && redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, sizeof err) != 0) {
		log_warn("poll for %s: %s, answering 503", rt->id.user, err);
		respond_unavailable(io, "redis");
		return HERR_REDIS;
	}
	rc = history_read(*rcp, &app.conf, rt->id.user, rt->has_since ? &rt->since : NULL,
			  rt->limit, res, err, sizeof err);
	if (rc != 0 && reused && (*rcp)->err != 0) {
		/* a kept connection Redis closed (restart, timeout): one fresh try */
		redisFree(*rcp);
		*rcp = NULL;
		reused = 0;
		goto again;
	}
	if (rc != 0) {
		log_warn("history_read(%s) failed: %s, answering 503", rt->id.user, err);
		redisFree(*rcp);
		*rcp = NULL;
		respond_unavailable(io, "redis");
		return rc;
	}
	return 0;
}

static void poll_send_result(const struct io *io, const struct route *rt,
			     const struct history_result *res)
{
	struct poll_out p;

	poll_out_init(&p, rt);
	for (size_t i = 0; i < res->n; i++)
		poll_out_add(&p, res->entries[i].env, res->entries[i].len, &res->entries[i].id);
	p.truncated = res->truncated;
	poll_out_send(io, &p);
}

/*
 * The held half of a long-poll: attached to the hub after the cursor (the
 * hub replays what came after it, so nothing published since the read is
 * missed), woken by the live subscription, answered at the first messages or
 * at the timeout.
 */
static void poll_wait(const struct io *io, const struct route *rt, int client_fd)
{
	long long deadline = clock_wall_ms() + rt->wait * 1000;
	struct poll_out p;
	struct waiter w;

	if (waiter_init(&w, app.hub) != 0 ||
	    waiter_attach(&w, rt->id.user, rt->has_since ? &rt->since : NULL) != 0) {
		waiter_fini(&w);
		respond_unavailable(io, "too many connections");
		return;
	}
	atomic_fetch_add(&app.waiting, 1);
	poll_out_init(&p, rt);
	while (!atomic_load(&app.stopping)) {
		long long now = clock_wall_ms();
		struct hub_msg *m;
		int ev;

		while (p.n < rt->limit && (m = waiter_pop(&w)) != NULL) {
			if (m->kind == HUB_MSG_RESET)
				p.truncated = 1;
			else
				poll_out_add(&p, m->data, m->len, m->has_id ? &m->id : NULL);
			hub_msg_unref(m);
		}
		if (p.n > 0 || p.truncated || now >= deadline)
			break;
		ev = waiter_wait(&w, client_fd, (int)(deadline - now));
		if (ev == WAITER_HANGUP || ev == WAITER_CLOSED || ev < 0)
			break;
	}
	waiter_fini(&w);
	atomic_fetch_sub(&app.waiting, 1);
	poll_out_send(io, &p);
}

/* --- SSE ------------------------------------------------------------------------ */

static int sse_begin(void *ud)
{
	static const char head[] = "Status: 200 OK\r\n"
				   "Content-Type: text/event-stream\r\n"
				   "Cache-Control: no-cache\r\n"
				   "X-Accel-Buffering: no\r\n\r\n";
	const struct io *io = ud;

	return io_write(io, head, sizeof head - 1);
}

static int sse_write(void *ud, const char *buf, size_t len)
{
	const struct io *io = ud;

	if (atomic_load(&app.stopping))
		return HERR_CLOSED;
	if (io_write(io, buf, len) < 0)
		return HERR_IO;
	return io_flush(io);
}

static void do_sse(const struct io *io, const struct route *rt)
{
	struct sse_stream_io sio = {sse_begin, sse_write, io->fd, (void *)io};
	struct sse_stream_opts o;
	struct sse_stream_stats st = {0};
	struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
	int rc;

	setsockopt(io->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	o.heartbeat_ms = app.conf.heartbeat * 1000;
	o.retry_ms = SSE_RETRY_MS;
	o.deadline_ms = clock_wall_ms() + app.conf.sse_max_lifetime * 1000;
	/* a stream outliving its token would be a session nobody authorised */
	if (rt->id.exp > 0 && rt->id.exp * 1000 < o.deadline_ms)
		o.deadline_ms = rt->id.exp * 1000;
	atomic_fetch_add(&app.streams, 1);
	atomic_fetch_add(&app.n_streams, 1);
	rc = sse_stream_run(app.hub, rt->id.user, rt->has_since ? &rt->since : NULL, &sio, &o,
			    &st);
	atomic_fetch_sub(&app.streams, 1);
	atomic_fetch_add(&app.n_sse_events, st.events);
	if (rc < 0) {
		log_warn("SSE for %s refused: %s", rt->id.user, herr_str(rc));
		respond_unavailable(io, rc == HERR_AGAIN ? "too many connections" : herr_str(rc));
	} else {
		log_debug("SSE for %s ended (%d): %lu events, %lu heartbeats", rt->id.user, rc,
			  st.events, st.heartbeats);
	}
}

/* --- held threads -------------------------------------------------------------- */

struct held {
	FCGX_Request *r;
	struct route rt;
	pthread_t t;
	void *map;         /* guard page + HELD_STACK, mmap'd */
	struct held *next; /* on app.done */
};

/* Join every held thread that returned and unmap its stack. */
static void held_reap(void)
{
	struct held *h, *next;

	pthread_mutex_lock(&app.done_mu);
	h = app.done;
	app.done = NULL;
	pthread_mutex_unlock(&app.done_mu);
	for (; h != NULL; h = next) {
		next = h->next;
		pthread_join(h->t, NULL);
		munmap(h->map, HELD_GUARD + HELD_STACK);
		free(h);
	}
	if (atomic_load(&app.held) == 0)
		malloc_trim(0);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	held_reap();
}

static void *held_main(void *arg)
{
	struct held *h = arg;
	struct io io = {NULL, h->r->ipcFd, (unsigned)h->r->requestId};
	char drain[256];

	/* Consume the (empty) request body, so the socket only turns readable
	 * again when nginx hangs up or aborts; then give libfcgi's buffers and
	 * the parameters back (the route holds what we need) and keep the fd. */
	while (FCGX_GetStr(drain, sizeof drain, h->r->in) > 0)
		;
	FCGX_Free(h->r, 0);
	free(h->r);
	h->r = NULL;
	if (atomic_load(&app.stopping))
		respond_unavailable(&io, "shutting down");
	else if (h->rt.kind == ROUTE_SSE)
		do_sse(&io, &h->rt);
	else
		poll_wait(&io, &h->rt, io.fd);
	raw_end(&io);
	/* Queue ourselves for the loop thread to join.  Nothing touches h or
	 * app.reap_ev after the decrement: shutdown waits for held == 0. */
	pthread_mutex_lock(&app.done_mu);
	h->next = app.done;
	app.done = h;
	pthread_mutex_unlock(&app.done_mu);
	event_active(app.reap_ev, EV_TIMEOUT, 1);
	atomic_fetch_sub(&app.held, 1);
	return NULL;
}

/* Hand r to a held thread.  0 (r is the thread's now) or <0 (answer it yourself). */
static int hand_off(FCGX_Request *r, const struct route *rt)
{
	pthread_attr_t attr;
	struct held *h = malloc(sizeof *h);
	int rc;

	if (h == NULL)
		return HERR_NOMEM;
	h->r = r;
	h->rt = *rt;
	h->map = mmap(NULL, HELD_GUARD + HELD_STACK, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (h->map == MAP_FAILED) {
		free(h);
		log_error("mmap of a %d KiB stack failed: %s, answering 503", HELD_STACK / 1024,
			  strerror(errno));
		return HERR_AGAIN;
	}
	/* The stack grows down: an overflow hits the guard page, not the heap. */
	mprotect(h->map, HELD_GUARD, PROT_NONE);
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)h->map + HELD_GUARD, HELD_STACK);
	atomic_fetch_add(&app.held, 1);
	rc = pthread_create(&h->t, &attr, held_main, h);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		atomic_fetch_sub(&app.held, 1);
		munmap(h->map, HELD_GUARD + HELD_STACK);
		free(h);
		log_error("pthread_create for a held request failed: %s, answering 503",
			  strerror(rc));
		return HERR_AGAIN;
	}
	return 0;
}

/* --- publish ------------------------------------------------------------------- */

static void do_publish(const struct io *io, redisContext **rcp, const struct route *rt)
{
	char err[256], body[128], id[CURSOR_STR_MAX];
	struct cursor cur;
	size_t got = 0;
	char *buf = malloc((size_t)rt->content_length + 1);
	int rc;

	if (buf == NULL) {
		respond_unavailable(io, "out of memory");
		return;
	}
	while (got < (size_t)rt->content_length) {
		long n = io_read(io, buf + got, (size_t)rt->content_length - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got != (size_t)rt->content_length) {
		struct route e = {.status = 400, .error = "bad_request",
				  .detail = "body shorter than Content-Length"};

		respond_error(io, &e);
		goto out;
	}
	if (publish_check(rt->user, buf, got, err, sizeof err) != 0) {
		struct route e = {.status = 400, .error = "bad_request"};

		snprintf(e.detail, sizeof e.detail, "%.150s", err);
		respond_error(io, &e);
		goto out;
	}
	if (*rcp == NULL && redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, sizeof err) != 0) {
		log_warn("publish for %s: %s, answering 503", rt->user, err);
		respond_unavailable(io, "redis");
		goto out;
	}
	rc = publish_one(*rcp, &app.conf, rt->user, buf, got, &cur, err, sizeof err);
	if (rc != 0 && (*rcp)->err != 0) {
		/* a kept connection Redis closed: one fresh try (publishing twice is
		 * impossible here: the command never reached a live server) */
		redisFree(*rcp);
		*rcp = NULL;
		if (redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, sizeof err) == 0)
			rc = publish_one(*rcp, &app.conf, rt->user, buf, got, &cur, err,
					 sizeof err);
	}
	if (rc != 0) {
		log_warn("publish for %s failed: %s", rt->user, err);
		redisFree(*rcp);
		*rcp = NULL;
		respond_unavailable(io, "redis");
		goto out;
	}
	atomic_fetch_add(&app.n_publishes, 1);
	cursor_format(&cur, id, sizeof id);
	snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
	respond_json(io, 200, NULL, body);
out:
	free(buf);
}

/* --- one request --------------------------------------------------------------- */

static void read_route(const struct io *io, struct route *rt)
{
	struct route_in in;
	size_t plen;
	const char *path;
	char pbuf[1024];

	path = router_path(&app.conf, io_param(io, "DOCUMENT_URI"), io_param(io, "PATH_INFO"),
			   io_param(io, "SCRIPT_NAME"), io_param(io, "REQUEST_URI"), &plen);
	if (path != NULL && plen < sizeof pbuf) {
		memcpy(pbuf, path, plen);
		pbuf[plen] = '\0';
		path = pbuf;
	} else {
		path = NULL;
	}
	in.method = io_param(io, "REQUEST_METHOD");
	in.path = path;
	in.query = io_param(io, "QUERY_STRING");
	in.authorization = io_param(io, "HTTP_AUTHORIZATION");
	in.cookie = io_param(io, "HTTP_COOKIE");
	in.last_event_id = io_param(io, "HTTP_LAST_EVENT_ID");
	in.content_length = io_param(io, "CONTENT_LENGTH");
	pthread_rwlock_rdlock(&app.auth_lock);
	router_route(&app.conf, app.auth, time(NULL), &in, rt);
	pthread_rwlock_unlock(&app.auth_lock);
}

/* Answer one request.  Returns 1 when it was handed to a held thread. */
static int handle(const struct io *io, redisContext **rcp)
{
	struct route rt;
	struct history_result res;

	read_route(io, &rt);
	if (rt.status != 0) {
		respond_error(io, &rt);
		return 0;
	}
	switch (rt.kind) {
	case ROUTE_HEALTH:
		do_health(io);
		return 0;
	case ROUTE_METRICS:
		do_metrics(io);
		return 0;
	case ROUTE_PUBLISH:
		do_publish(io, rcp, &rt);
		return 0;
	case ROUTE_SSE:
		if (io_cgi(io)) {
			struct route e = {.status = 501, .error = "not_implemented",
					  .detail = "SSE needs herald-fcgi as a FastCGI server"};

			respond_error(io, &e);
			return 0;
		}
		if (hand_off(io->r, &rt) == 0)
			return 1;
		respond_unavailable(io, "too many connections");
		return 0;
	case ROUTE_POLL:
		break;
	default:
		return 0;
	}
	if (poll_read(io, rcp, &rt, &res) != 0)
		return 0;
	if (res.n > 0 || res.truncated || rt.wait == 0) {
		poll_send_result(io, &rt, &res);
		history_result_free(&res);
		return 0;
	}
	history_result_free(&res);
	if (io_cgi(io)) {
		/* CGI: no hub; read again each second until the wait is over */
		long long deadline = clock_wall_ms() + rt.wait * 1000;

		for (;;) {
			struct timespec ts = {1, 0};

			nanosleep(&ts, NULL);
			if (poll_read(io, rcp, &rt, &res) != 0)
				return 0;
			if (res.n > 0 || res.truncated || clock_wall_ms() >= deadline)
				break;
			history_result_free(&res);
		}
		poll_send_result(io, &rt, &res);
		history_result_free(&res);
		return 0;
	}
	if (app.sub != NULL) {
		struct sub_status ss;

		sub_get_status(app.sub, &ss);
		if (ss.state != SUB_CONNECTED) {
			respond_unavailable(io, "redis");
			return 0;
		}
	}
	if (hand_off(io->r, &rt) == 0)
		return 1;
	respond_unavailable(io, "too many connections");
	return 0;
}

static void *acceptor_main(void *arg)
{
	FCGX_Request *r = NULL;
	redisContext *rc = NULL;

	(void)arg;
	while (!atomic_load(&app.stopping)) {
		struct io io;

		if (r == NULL) {
			r = malloc(sizeof *r);
			if (r == NULL || FCGX_InitRequest(r, app.listen_fd, 0) != 0) {
				free(r);
				r = NULL;
				sleep(1);
				continue;
			}
		}
		if (FCGX_Accept_r(r) < 0) {
			if (atomic_load(&app.stopping))
				break;
			/* EMFILE and the like: back off instead of spinning */
			log_warn("FCGX_Accept_r failed: %s, retrying in 100 ms", strerror(errno));
			usleep(100000);
			continue;
		}
		atomic_fetch_add(&app.busy, 1);
		io = (struct io){r, r->ipcFd, (unsigned)r->requestId};
		if (atomic_load(&app.stopping)) {
			respond_unavailable(&io, "shutting down");
		} else if (handle(&io, &rc)) {
			r = NULL;
		} else {
			FCGX_Finish_r(r);
		}
		atomic_fetch_sub(&app.busy, 1);
	}
	if (r != NULL) {
		FCGX_Finish_r(r);
		FCGX_Free(r, 1);
		free(r);
	}
	redisFree(rc);
	return NULL;
}

/* --- listening ------------------------------------------------------------------- */

/* Our own listener: FCGX_OpenSocket exits on failure and ignores modes. */
static int open_listener(const char *spec, char *err, size_t errlen)
{
	const struct listen_opts lo = {.mode = app.conf.socket_mode,
				       .owner = app.conf.socket_owner, .backlog = 1024};
	const char *path = listen_unix_path(spec);
	int fd = listen_open(spec, &lo, err, errlen);

	if (fd >= 0 && path != NULL)
		snprintf(app.unix_path, sizeof app.unix_path, "%s", path);
	return fd;
}

/* --- the subscriber's loop thread ----------------------------------------------- */

static void on_sub_event(void *ud, int level, const char *msg)
{
	(void)ud;
	log_at(level, "%s", msg);
}

static void *loop_main(void *arg)
{
	(void)arg;
	event_base_loop(app.base, EVLOOP_NO_EXIT_ON_EMPTY);
	sub_free(app.sub);
	app.sub = NULL;
	return NULL;
}

static int start_backend(char *err, size_t errlen)
{
	struct hub_limits lim = {
		.send_queue_max = (size_t)app.conf.send_queue_max,
		.max_connections = (unsigned)app.conf.max_connections,
		.max_per_user = (unsigned)app.conf.max_connections_per_user,
		.history_limit = app.conf.history_max > HISTORY_LIMIT_MAX
					 ? HISTORY_LIMIT_MAX
					 : (unsigned)app.conf.history_max,
	};

	evthread_use_pthreads();
	if (hub_new(&app.hub, &lim, NULL) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	app.base = event_base_new();
	if (app.base == NULL) {
		snprintf(err, errlen, "event_base_new failed");
		return -1;
	}
	app.reap_ev = event_new(app.base, -1, 0, on_reap, NULL);
	if (app.reap_ev == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (sub_new(&app.sub, app.base, &app.conf, app.hub, 0, err, errlen) != 0)
		return -1;
	sub_set_event_cb(app.sub, on_sub_event, NULL);
	if (pthread_create(&app.loop_thread, NULL, loop_main, NULL) != 0) {
		snprintf(err, errlen, "pthread_create failed");
		return -1;
	}
	return 0;
}

/* --- main --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS]\n"
		"Herald's FastCGI responder: SSE streams and polling behind nginx, or one\n"
		"CGI request when run by a CGI server.\n\n"
		"  -c, --config PATH      configuration file (default $HERALD_CONFIG)\n"
		"  -l, --listen ADDR      unix:/path or host:port (default: inherited socket\n"
		"                         on fd 0, else " DEFAULT_LISTEN ")\n"
		"  -L, --log-level LEVEL  error, warn, info or debug\n"
		"      --check-config     validate the configuration and exit\n"
		"  -h, --help             this text\n"
		"  -V, --version          version\n\n"
		"Every configuration key can also be set as HERALD_<KEY> in the environment.\n"
		"Signals: TERM/INT end every stream and exit; HUP reopens the log and\n"
		"reloads the JWT key.  See herald-fcgi(1).\n");
}

static void wait_zero(atomic_long *v, int ms)
{
	while (atomic_load(v) > 0 && ms > 0) {
		usleep(10000);
		ms -= 10;
	}
}

static void reload(void)
{
	char err[256];
	auth_t *na = NULL, *old;

	if (log_reopen() != 0)
		log_warn("log_reopen failed: %s", strerror(errno));
	if (auth_new(&na, &app.conf, err, sizeof err) != 0) {
		log_error("SIGHUP: reloading the JWT key failed: %s; keeping the old one", err);
		return;
	}
	pthread_rwlock_wrlock(&app.auth_lock);
	old = app.auth;
	app.auth = na;
	pthread_rwlock_unlock(&app.auth_lock);
	auth_free(old);
	log_info("SIGHUP: log reopened, JWT key reloaded");
}

static int serve(void)
{
	sigset_t set;
	pthread_t *tids;
	pthread_attr_t attr;
	long started = 0;
	int sig;

	tids = calloc((size_t)app.threads, sizeof *tids);
	if (tids == NULL)
		return 1;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, ACCEPTOR_STACK);
	for (long i = 0; i < app.threads; i++) {
		if (pthread_create(&tids[i], &attr, acceptor_main, NULL) == 0)
			started++;
	}
	pthread_attr_destroy(&attr);
	app.threads = started;
	log_info("serving with %ld acceptor threads", started);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload();
			continue;
		}
		break;
	}
	log_info("signal %d: ending %ld streams and exiting", sig, atomic_load(&app.streams));
	atomic_store(&app.stopping, 1);
	FCGX_ShutdownPending();
	/* wakes acceptors blocked in accept(); kept-alive ones are not waited for */
	shutdown(app.listen_fd, SHUT_RDWR);
	if (app.unix_path[0] != '\0')
		unlink(app.unix_path);
	wait_zero(&app.busy, 5000);
	hub_close_all(app.hub);
	wait_zero(&app.held, 10000);
	event_base_loopbreak(app.base);
	pthread_join(app.loop_thread, NULL);
	held_reap();
	if (atomic_load(&app.held) == 0 && atomic_load(&app.busy) == 0) {
		hub_free(app.hub);
		app.hub = NULL;
	}
	free(tids);
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"listen", required_argument, NULL, 'l'},
		{"log-level", required_argument, NULL, 'L'},
		{"check-config", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *listen_flag = NULL, *level_flag = NULL;
	int check_only = 0, opt, cgi = 0, rc = 1;
	char err[512];
	sigset_t set;

	while ((opt = getopt_long(argc, argv, "c:l:L:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': app.conf_path = optarg; break;
		case 'l': listen_flag = optarg; break;
		case 'L': level_flag = optarg; break;
		case 'C': check_only = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " " PACKAGE_VERSION "\n"); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (conf_load(&app.conf, app.conf_path, err, sizeof err) != 0 ||
	    (listen_flag && conf_set(&app.conf, "listen", listen_flag, "command line", err,
				     sizeof err) != 0) ||
	    (level_flag && conf_set(&app.conf, "log_level", level_flag, "command line", err,
				    sizeof err) != 0) ||
	    conf_validate(&app.conf, err, sizeof err) != 0 ||
	    redis_url_parse(app.conf.redis_url, &app.raddr, err, sizeof err) != 0 ||
	    auth_new(&app.auth, &app.conf, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (check_only) {
		printf(PROG ": configuration OK\n");
		rc = 0;
		goto out;
	}
	app.start_ms = clock_wall_ms();
	app.threads = app.conf.threads > 0 ? app.conf.threads : 1;
	pthread_rwlock_init(&app.auth_lock, NULL);
	pthread_mutex_init(&app.done_mu, NULL);
	redis_scripts_init();
	log_open(PROG, app.conf.log_level, app.conf.log_format == CONF_LOG_JSON,
		 app.conf.log_file);

	/* FCGX_Init installs its SIGPIPE and SIGTERM handlers: override both after it. */
	if (FCGX_Init() != 0) {
		log_error("FCGX_Init failed");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (waiter_setup() != 0) {
		log_error("cannot install the wake-up signal: %s", strerror(errno));
		goto out;
	}

	if (getenv("GATEWAY_INTERFACE") != NULL && FCGX_IsCGI()) {
		/* run by a CGI server: a configured listen address is not for us */
		cgi = 1;
	} else if (app.conf.listen != NULL) {
		app.listen_fd = open_listener(app.conf.listen, err, sizeof err);
		if (app.listen_fd < 0) {
			log_error("%s", err);
			goto out;
		}
		log_info("listening on %s", app.conf.listen);
	} else if (!FCGX_IsCGI()) {
		app.listen_fd = 0;
		log_info("serving the socket inherited on fd 0");
	} else {
		app.listen_fd = open_listener(DEFAULT_LISTEN, err, sizeof err);
		if (app.listen_fd < 0) {
			log_error("%s", err);
			goto out;
		}
		log_info("listening on " DEFAULT_LISTEN);
	}

	if (cgi) {
		struct io io = {NULL, -1, 0};
		redisContext *rcx = NULL;

		handle(&io, &rcx);
		redisFree(rcx);
		rc = 0;
		goto out;
	}
	if (start_backend(err, sizeof err) != 0) {
		log_error("%s", err);
		goto out;
	}
	rc = serve();
out:
	if (app.listen_fd > 0)
		close(app.listen_fd);
	auth_free(app.auth);
	conf_free(&app.conf);
	if (app.reap_ev != NULL)
		event_free(app.reap_ev);
	if (app.base != NULL && app.sub == NULL)
		event_base_free(app.base);
	log_close();
	return rc;
}
