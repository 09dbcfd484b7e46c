/*
 * The request handlers: short answers written at once (health, metrics,
 * polls with something to return, publish, errors); SSE streams and
 * long-polls with nothing to return yet are left to the caller to hold.
 * See app.h for the threads.
 */
#include "config.h"

#include "handlers.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "clock.h"
#include "cluster.h"
#include "cursor.h"
#include "err.h"
#include "held.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "redis.h"
#include "reply.h"
#include "revoke.h"
#include "ticket.h"

#define STR_(x) #x
#define STRINGIFY(x) STR_(x)

/* --- output ------------------------------------------------------------------ */

static const char *io_param(const struct io *io, const char *name)
{
	return io->r != NULL ? FCGX_GetParam(name, io->r->envp) : getenv(name);
}

static long io_read(const struct io *io, char *buf, size_t len)
{
	if (io->r == NULL)
		return (long)fread(buf, 1, len, stdin);
	return FCGX_GetStr(buf, len > INT_MAX ? INT_MAX : (int)len, io->r->in);
}

void io_blocking(const struct io *io)
{
	if (io->nonblocking == NULL || !*io->nonblocking || io->r == NULL || io->r->ipcFd < 0)
		return;
	if (held_fd_blocking(io->r->ipcFd) != 0)
		log_warn("a worker's connection: cannot make it blocking: %s", strerror(errno));
	*io->nonblocking = 0;
}

/*
 * Write a built answer whole (blocking writes, bounded by SO_SNDTIMEO).
 * libfcgi sends what its buffer holds when the request finishes, the end
 * records with it: an answer that fits its 8 KiB goes in one write, which
 * nginx reads at once, instead of one for the body and one for the end.
 */
static void io_send(const struct io *io, struct metrics_buf *b)
{
	if (b->err) {
		metrics_buf_free(b);
		metrics_buf_init(b);
		reply_unavailable(b, "out of memory");
	}
	if (b->len >= 14 && b->data[8] >= '4')
		atomic_fetch_add(&app.n_errors, 1); /* "Status: 4xx" or 5xx */
	if (io->r == NULL) {
		fwrite(b->data, 1, b->len, stdout);
		fflush(stdout);
	} else if (b->len <= INT_MAX) {
		io_blocking(io);
		FCGX_PutStr(b->data, (int)b->len, io->r->out);
	}
	metrics_buf_free(b);
}

static void send_error(const struct io *io, const struct route *rt)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	reply_error(&b, rt);
	io_send(io, &b);
}

void handle_unavailable(const struct io *io, const char *detail)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	reply_unavailable(&b, detail);
	io_send(io, &b);
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

static void snapshot(struct hub_stats *hs, struct sub_status *ss, struct held_stats *hd)
{
	memset(hs, 0, sizeof *hs);
	memset(hd, 0, sizeof *hd);
	if (app.hub != NULL)
		hub_get_stats(app.hub, hs);
	if (app.sub != NULL)
		sub_get_status(app.sub, ss);
	else
		cgi_sub_status(ss);
	if (app.loop != NULL)
		held_get_stats(app.loop, hd);
}

static void do_health(const struct io *io)
{
	struct hub_stats hs;
	struct sub_status ss;
	struct held_stats hd;
	struct metrics_buf b, out;
	char extra[256];
	int status;

	snapshot(&hs, &ss, &hd);
	snprintf(extra, sizeof extra,
		 "\"streams\":%ld,\"polls_waiting\":%ld,\"threads\":%ld,\"threads_busy\":%ld,"
		 "\"idle_connections\":%ld,\"mode\":\"%s\"",
		 hd.streams, hd.polls, app.threads, atomic_load(&app.busy), hd.idle,
		 io->r == NULL ? "cgi" : "fastcgi");
	metrics_buf_init(&b);
	metrics_buf_init(&out);
	status = metrics_health_json(&b, PROG, &hs, &ss, app.start_ms, clock_wall_ms(), extra);
	if (b.err)
		reply_unavailable(&out, "out of memory");
	else
		reply_json(&out, status,
			   status == 503 ? "Retry-After: " STRINGIFY(RETRY_AFTER_S) "\r\n" : "",
			   b.data);
	metrics_buf_free(&b);
	io_send(io, &out);
}

/* The orchestrators' probes (metrics.h): live always 200, ready decided by
 * metrics_ready() on the subscriber (under CGI, a PING) and the shutdown flag. */
static void do_probe(const struct io *io, int kind)
{
	struct sub_status ss;
	struct metrics_buf b, out;
	int status;

	memset(&ss, 0, sizeof ss);
	if (app.sub != NULL)
		sub_get_status(app.sub, &ss);
	else if (kind == ROUTE_READY)
		cgi_sub_status(&ss);
	metrics_buf_init(&b);
	metrics_buf_init(&out);
	status = metrics_probe_json(&b, kind == ROUTE_READY ? METRICS_PROBE_READY : METRICS_PROBE_LIVE,
				    &ss, atomic_load(&app.stopping));
	if (b.err)
		reply_unavailable(&out, "out of memory");
	else
		reply_json(&out, status,
			   status == 503 ? "Retry-After: " STRINGIFY(RETRY_AFTER_S) "\r\n" : "",
			   b.data);
	metrics_buf_free(&b);
	io_send(io, &out);
}

static void do_metrics(const struct io *io)
{
	struct hub_stats hs;
	struct sub_status ss;
	struct held_stats hd;
	struct metrics_buf b, out;

	snapshot(&hs, &ss, &hd);
	metrics_buf_init(&b);
	metrics_buf_init(&out);
	metrics_prometheus(&b, PROG, &hs, &ss, app.start_ms, clock_wall_ms());
	metrics_gauge(&b, "herald_fcgi_streams", "SSE streams held now.", (double)hd.streams);
	metrics_gauge(&b, "herald_fcgi_polls_waiting", "Long-polls waiting now.",
		      (double)hd.polls);
	metrics_gauge(&b, "herald_fcgi_idle_connections",
		      "Kept-alive FastCGI connections waiting for a request.", (double)hd.idle);
	metrics_gauge(&b, "herald_fcgi_requests_queued",
		      "Connections with a request waiting for a worker.", (double)hd.queued);
	metrics_gauge(&b, "herald_fcgi_threads", "Worker threads.", (double)app.threads);
	metrics_gauge(&b, "herald_fcgi_threads_busy", "Worker threads inside a request.",
		      (double)atomic_load(&app.busy));
	metrics_counter(&b, "herald_fcgi_polls_total", "Poll requests answered.",
			atomic_load(&app.n_polls));
	metrics_counter(&b, "herald_fcgi_poll_batches_total",
			"Round trips to Redis that carried the reads of several polls at once "
			"(a worker's batch).",
			atomic_load(&app.n_poll_batches));
	metrics_counter(&b, "herald_fcgi_polls_batched_total",
			"Polls whose read went in such a shared round trip.",
			atomic_load(&app.n_polls_batched));
	metrics_counter(&b, "herald_fcgi_streams_total", "SSE streams started.",
			atomic_load(&app.n_streams));
	metrics_counter(&b, "herald_fcgi_sse_events_total", "SSE events written.", hd.events);
	metrics_counter(&b, "herald_fcgi_sse_heartbeats_total", "SSE heartbeats written.",
			hd.heartbeats);
	metrics_counter(&b, "herald_fcgi_idle_reclaimed_total",
			"Idle kept-alive connections closed because descriptors ran out, "
			"so that new connections or Redis links could be opened.",
			hd.reclaimed);
	metrics_counter(&b, "herald_fcgi_stalled_total",
			"Held requests dropped because the client stopped reading.", hd.stalled);
	metrics_counter(&b, "herald_fcgi_publishes_total", "Messages published over HTTP.",
			atomic_load(&app.n_publishes));
	metrics_counter(&b, "herald_fcgi_publish_unacknowledged_total",
			"Publishes stored on the master but acknowledged by fewer than "
			"publish_wait_replicas replicas (answered 503 not_replicated).",
			atomic_load(&app.n_publish_unacked));
	metrics_counter(&b, "herald_fcgi_errors_total", "Responses with a 4xx or 5xx status.",
			atomic_load(&app.n_errors));
	metrics_counter(&b, "herald_fcgi_refused_full_total",
			"Streams and long-polls refused with 503 and Retry-After: max_connections "
			"(or the per-user cap) reached.",
			atomic_load(&app.n_full));
	metrics_gauge(&b, "herald_fcgi_max_connections",
		      "Held requests allowed (max_connections, or derived from the open-files "
		      "limit; 0: no cap).",
		      (double)app.max_held);
	metrics_counter(&b, "herald_fcgi_tickets_total", "Tickets issued.",
			atomic_load(&app.n_tickets));
	metrics_counter(&b, "herald_fcgi_ticket_refused_total",
			"Requests refused with 401 for a ticket unknown, used, expired or forged, "
			"or met while Redis was down.",
			atomic_load(&app.n_ticket_refused));
	metrics_counter(&b, "herald_fcgi_revoked_refused_total",
			"Requests refused with 401 because the token was revoked.",
			atomic_load(&app.n_revoked_refused));
	metrics_counter(&b, "herald_fcgi_revocation_check_errors_total",
			"Revocation checks that Redis could not answer: the request was let "
			"in (fail open).",
			atomic_load(&app.n_revoke_check_errors));
	if (b.err)
		reply_unavailable(&out, "out of memory");
	else
		reply_append(&out, 200, "text/plain; version=0.0.4", "Cache-Control: no-store\r\n",
			     b.data, b.len);
	metrics_buf_free(&b);
	io_send(io, &out);
}

/* --- Redis Cluster ----------------------------------------------------------- */

/*
 * In Redis Cluster mode (redis_cluster) each worker has a cluster client
 * (cluster.h), made at its first request and freed with its thread, instead
 * of the one connection *rcp: each call goes to the master of its key's
 * slot, redirections followed.
 */
static pthread_key_t cl_key;
static pthread_once_t cl_once = PTHREAD_ONCE_INIT;

static void cl_free(void *p)
{
	cluster_free(p);
}

static void cl_key_init(void)
{
	pthread_key_create(&cl_key, cl_free);
}

/* Run fn on the master of key's slot; as cluster_run. */
static int cluster_call(const char *key, size_t keylen, cluster_fn fn, void *arg, char *err,
			size_t errlen)
{
	struct cluster *cl;

	pthread_once(&cl_once, cl_key_init);
	cl = pthread_getspecific(cl_key);
	if (cl == NULL) {
		if (cluster_new(&cl, &app.conf, REDIS_TIMEOUT_MS, err, errlen) != 0)
			return HERR_REDIS;
		pthread_setspecific(cl_key, cl);
	}
	return cluster_run(cl, key, keylen, fn, arg, err, errlen);
}

/* cluster_call for a user's keys: they all share the slot of the user's tag. */
static int cluster_call_user(const char *user, cluster_fn fn, void *arg, char *err, size_t errlen)
{
	char key[REDIS_KEY_MAX];
	int n = redis_channel(key, sizeof key, app.conf.channel_prefix, user);

	if (n < 0)
		return herr_set(HERR_INVAL, err, errlen, "bad user or channel_prefix");
	return cluster_call(key, (size_t)n, fn, arg, err, errlen);
}

/* --- polling ---------------------------------------------------------------- */

static int worker_run(redisContext **rcp, const char *key, size_t keylen, cluster_fn fn, void *arg,
		      char *err, size_t errlen);
static int revoke_verdict(const struct io *io, const struct route *rt, int rc, const char *err);

struct poll_call {
	const struct route *rt;
	struct history_result *res;
	int check;		/* the revocation check goes with the read */
	int check_rc;		/* its verdict (revoke_check_reply) */
	char check_err[256];	/* its reason when HERR_REDIS */
};

/* Where rt's read starts: its cursor, or NULL for the newest. */
static const struct cursor *poll_since(const struct route *rt)
{
	return rt->has_since ? &rt->since : NULL;
}

/* rt's revocation check as the command sent ahead of its read (pointing
 * into *ra): 0, or HERR_REDIS with the reason. */
static int poll_check_cmd(const struct route *rt, struct revoke_argv *ra,
			  struct redis_cmd *before, char *err, size_t errlen)
{
	if (revoke_check_argv(ra, app.conf.channel_prefix, &rt->id) < 0)
		return herr_set(HERR_REDIS, err, errlen, "revocation check: bad key names");
	*before = (struct redis_cmd){ra->argc, ra->argv, ra->argvlen};
	return 0;
}

/* The history read, and with it in one round trip the revocation check. */
static int poll_fn(redisContext *rc, void *arg, char *err, size_t errlen)
{
	struct poll_call *p = arg;
	const struct route *rt = p->rt;
	struct redis_cmd before = {0};
	struct revoke_argv ra;
	redisReply *first = NULL;
	int rv;

	if (p->check)
		p->check_rc = poll_check_cmd(rt, &ra, &before, p->check_err, sizeof p->check_err);
	rv = history_read_after(rc, &before, &first, &app.conf, rt->id.user, poll_since(rt),
				rt->limit, (size_t)app.conf.send_queue_max, p->res, err, errlen);
	if (before.argc > 0) {
		p->check_rc = revoke_check_result(first, &ra, &rt->id, rc->errstr, p->check_err,
						  sizeof p->check_err);
		freeReplyObject(first);
	}
	return rv;
}

/*
 * A poll's read came back: rc (err its reason; *res filled when 0), and
 * when checked its revocation check's verdict check_rc (check_err).  0 to
 * answer from *res, or <0 after answering 401 (revoked; *res freed) or 503
 * (the read failed: *drop set, the worker's link is not to be reused).
 */
static int poll_verdict(const struct io *io, const struct route *rt, int rc, const char *err,
			int checked, int check_rc, const char *check_err,
			struct history_result *res, int *drop)
{
	if (checked && check_rc == AUTH_REVOKED) {
		history_result_free(res);
		return revoke_verdict(io, rt, check_rc, check_err);
	}
	if (rc != 0) {
		log_warn("history_read(%s) failed: %s, answering 503", rt->id.user, err);
		*drop = 1;
		handle_unavailable(io, "redis");
		return rc;
	}
	if (checked)
		revoke_verdict(io, rt, check_rc, check_err);
	return 0;
}

/*
 * Read history (with the revocation check when rt->revoke_with_read and
 * check); 0 with *res filled, or <0 after answering 401 (revoked) or 503.
 */
static int poll_read(const struct io *io, redisContext **rcp, const struct route *rt,
		     struct history_result *res, int check)
{
	struct poll_call pc = {.rt = rt, .res = res, .check = check && rt->revoke_with_read};
	char err[256], key[REDIS_KEY_MAX];
	int rc, kn, drop = 0;

	kn = redis_channel(key, sizeof key, app.conf.channel_prefix, rt->id.user);
	rc = kn < 0 ? herr_set(HERR_INVAL, err, sizeof err, "bad user or channel_prefix")
		    : worker_run(rcp, key, (size_t)kn, poll_fn, &pc, err, sizeof err);
	rc = poll_verdict(io, rt, rc, err, pc.check, pc.check_rc, pc.check_err, res, &drop);
	if (drop) {
		redisFree(*rcp);
		*rcp = NULL;
	}
	return rc;
}

static void poll_send_result(const struct io *io, const struct route *rt,
			     const struct history_result *res)
{
	struct poll_doc p;
	struct metrics_buf out;

	poll_doc_init(&p, rt->has_since, &rt->since);
	for (size_t i = 0; i < res->n; i++)
		poll_doc_add(&p, res->entries[i].env, res->entries[i].len, &res->entries[i].id);
	/* Past entries the page skipped, so the next poll does not read them again. */
	if (res->page_end.ms != 0 || res->page_end.seq != 0) {
		p.has_cursor = 1;
		p.cursor = res->page_end;
	}
	p.truncated = res->truncated;
	p.more = res->more;
	metrics_buf_init(&out);
	poll_doc_reply(&p, app.conf.poll_interval, &out);
	atomic_fetch_add(&app.n_polls, 1);
	io_send(io, &out);
}

/* CGI has no hub: read again each second until the wait is over. */
static void cgi_poll_wait(const struct io *io, redisContext **rcp, const struct route *rt)
{
	long long deadline = clock_mono_ms() + rt->wait * 1000;
	struct history_result res = {0};

	for (;;) {
		struct timespec ts = {1, 0};

		nanosleep(&ts, NULL);
		if (poll_read(io, rcp, rt, &res, 0) != 0)
			return;
		if (res.n > 0 || res.truncated || res.more || clock_mono_ms() >= deadline)
			break;
		history_result_free(&res);
	}
	poll_send_result(io, rt, &res);
	history_result_free(&res);
}

/* A poll whose read came back as *res (freed here): its answer, or the
 * wait (HANDLE_HOLD). */
static int poll_answer_read(const struct io *io, redisContext **rcp, const struct route *rt,
			    struct history_result *res)
{
	if (res->n > 0 || res->truncated || res->more || rt->wait == 0) {
		poll_send_result(io, rt, res);
		history_result_free(res);
		return HANDLE_DONE;
	}
	history_result_free(res);
	if (io->r == NULL) {
		cgi_poll_wait(io, rcp, rt);
		return HANDLE_DONE;
	}
	if (app.sub != NULL) {
		struct sub_status ss;

		sub_get_status(app.sub, &ss);
		if (ss.state != SUB_CONNECTED) {
			handle_unavailable(io, "redis");
			return HANDLE_DONE;
		}
	}
	return HANDLE_HOLD;
}

static int do_poll(const struct io *io, redisContext **rcp, const struct route *rt)
{
	struct history_result res = {0};

	if (poll_read(io, rcp, rt, &res, 1) != 0)
		return HANDLE_DONE;
	return poll_answer_read(io, rcp, rt, &res);
}

/* --- publish ------------------------------------------------------------------- */

struct publish_call {
	const char *user, *payload, *key;
	size_t len;
	struct cursor *id;
	int *dup;
};

static int publish_fn(redisContext *rc, void *arg, char *err, size_t errlen)
{
	const struct publish_call *p = arg;

	return publish_one_idem(rc, &app.conf, p->user, p->payload, p->len, p->key, p->id, p->dup,
				err, errlen);
}

/*
 * A publish is stored once (DESIGN 8).  The request's Idempotency-Key, or one
 * made here when it brings none, names the publish: the retry on a fresh
 * connection below may follow a command that did reach Redis (a timeout
 * cannot tell; a busy Redis runs it when it gets to it), and then finds its
 * record and stores nothing.  "duplicate":true tells the caller that an
 * earlier request with its key had stored the notification.
 */
static void do_publish(const struct io *io, redisContext **rcp, const struct route *rt)
{
	char err[512], body[320], id[CURSOR_STR_MAX], key[PUBLISH_IDEM_KEY_MAX + 1];
	struct publish_call pc;
	struct cursor cur;
	struct metrics_buf out;
	size_t got = 0;
	char *buf = malloc((size_t)rt->content_length + 1);
	int rc, dup = 0;

	if (buf == NULL) {
		handle_unavailable(io, "out of memory");
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

		send_error(io, &e);
		goto out;
	}
	if (publish_check(rt->user, buf, got, err, sizeof err) != 0) {
		struct route e = {.status = 400, .error = "bad_request"};

		snprintf(e.detail, sizeof e.detail, "%.150s", err);
		send_error(io, &e);
		goto out;
	}
	if (rt->idem_key[0] != '\0') {
		snprintf(key, sizeof key, "%s", rt->idem_key);
	} else if (publish_idem_new(key, sizeof key) != 0) {
		log_error("publish for %s: getrandom failed: %s, answering 503", rt->user,
			  strerror(errno));
		handle_unavailable(io, "no idempotency key");
		goto out;
	}
	pc.user = rt->user;
	pc.payload = buf;
	pc.len = got;
	pc.key = key;
	pc.id = &cur;
	pc.dup = &dup;
	if (app.conf.redis_cluster) {
		/* A retry after a redirection or a lost master runs the same key. */
		rc = cluster_call_user(rt->user, publish_fn, &pc, err, sizeof err);
	} else if (*rcp == NULL &&
		   redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, sizeof err) != 0) {
		log_warn("publish for %s: %s, answering 503", rt->user, err);
		handle_unavailable(io, "redis");
		goto out;
	} else {
		rc = publish_fn(*rcp, &pc, err, sizeof err);
	}
	if (rc != 0 && *rcp != NULL &&
	    ((*rcp)->err != 0 || (rc == HERR_REDIS && strstr(err, "READONLY") != NULL))) {
		/* A kept connection Redis closed, a timeout, or a master demoted
		 * by a failover (READONLY): one fresh try, through the sentinels
		 * when there are.  Its replay of our own first try is no
		 * duplicate for the caller. */
		log_info("publish for %s: %s, trying once more on a new connection", rt->user,
			 err);
		redisFree(*rcp);
		*rcp = NULL;
		pc.dup = NULL;
		if (redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, sizeof err) == 0)
			rc = publish_fn(*rcp, &pc, err, sizeof err);
	}
	if (rc == HERR_INVAL) {
		/* the caller's key names another payload: a bug to report, not retry */
		struct route e = {.status = 409, .error = "idempotency_key_reused"};

		snprintf(e.detail, sizeof e.detail, "Idempotency-Key: %.120s",
			 strncmp(err, "idempotency key: ", 17) == 0 ? err + 17 : err);
		send_error(io, &e);
		goto out;
	}
	if (rc == HERR_AGAIN) {
		/* Stored on the master, too few replicas: the next request
		 * connects afresh, in case this master was just replaced. */
		log_warn("publish for %s: %s", rt->user, err);
		redisFree(*rcp);
		*rcp = NULL;
		atomic_fetch_add(&app.n_publish_unacked, 1);
		cursor_format(&cur, id, sizeof id);
		snprintf(body, sizeof body,
			 "{\"error\":\"not_replicated\",\"detail\":\"stored on the master, "
			 "acknowledged by fewer than %ld replicas within %ld ms: retry with the "
			 "same Idempotency-Key\",\"id\":\"%s\"}",
			 app.conf.publish_wait_replicas, app.conf.publish_wait_timeout, id);
		metrics_buf_init(&out);
		reply_json(&out, 503, "Retry-After: 1\r\n", body);
		io_send(io, &out);
		goto out;
	}
	if (rc != 0) {
		log_warn("publish for %s failed: %s", rt->user, err);
		redisFree(*rcp);
		*rcp = NULL;
		handle_unavailable(io, "redis");
		goto out;
	}
	atomic_fetch_add(&app.n_publishes, 1);
	cursor_format(&cur, id, sizeof id);
	snprintf(body, sizeof body, "{\"id\":\"%s\"%s}", id, dup ? ",\"duplicate\":true" : "");
	metrics_buf_init(&out);
	reply_json(&out, 200, NULL, body);
	io_send(io, &out);
out:
	free(buf);
}

/* --- tickets and revocation ----------------------------------------------------- */

/*
 * Open *rcp when needed.  0, or HERR_REDIS with err.  again: a kept
 * connection failed; drop it and open a fresh one.
 */
static int redis_ready(redisContext **rcp, int again, char *err, size_t errlen)
{
	if (again && *rcp != NULL) {
		redisFree(*rcp);
		*rcp = NULL;
	}
	if (*rcp != NULL)
		return 0;
	return redis_connect(&app.raddr, REDIS_TIMEOUT_MS, rcp, err, errlen) != 0 ? HERR_REDIS : 0;
}

/*
 * Run fn on the worker's connection *rcp, opened when needed (a kept one
 * that fails is opened again, once), or in cluster mode on the master of
 * key's slot.  fn's result.
 */
static int worker_run(redisContext **rcp, const char *key, size_t keylen, cluster_fn fn, void *arg,
		      char *err, size_t errlen)
{
	int rc = HERR_REDIS;

	if (app.conf.redis_cluster)
		return cluster_call(key, keylen, fn, arg, err, errlen);
	for (int again = 0; again < 2 && rc == HERR_REDIS; again++) {
		rc = redis_ready(rcp, again, err, errlen);
		if (rc == 0)
			rc = fn(*rcp, arg, err, errlen);
		if (rc == HERR_REDIS && *rcp != NULL && (*rcp)->err == 0)
			break; /* Redis answered: an error reply, not a stale connection */
	}
	return rc;
}

struct ticket_call {
	const struct auth_identity *id;
	char *ticket;
};

static int ticket_store_fn(redisContext *rc, void *arg, char *err, size_t errlen)
{
	const struct ticket_call *t = arg;

	return ticket_store_sync(rc, app.conf.channel_prefix, t->id, app.conf.ticket_ttl, t->ticket,
				 err, errlen);
}

/* arg: the route; its identity is filled from the ticket. */
static int ticket_redeem_fn(redisContext *rc, void *arg, char *err, size_t errlen)
{
	struct route *rt = arg;

	return ticket_redeem_sync(rc, app.conf.channel_prefix, rt->ticket, time(NULL),
				  app.conf.jwt_leeway, &rt->id, err, errlen);
}

static int revoke_fn(redisContext *rc, void *arg, char *err, size_t errlen)
{
	const struct route *rt = arg;

	return revoke_check_sync(rc, app.conf.channel_prefix, &rt->id, err, errlen);
}

/* POST path_ticket: a single-use ticket for the verified token. */
static void do_ticket(const struct io *io, redisContext **rcp, const struct route *rt)
{
	char err[256], ticket[TICKET_LEN + 1], body[128], key[REDIS_KEY_MAX];
	struct ticket_call tc = {&rt->id, ticket};
	struct metrics_buf out;
	int rc, kn;

	/* Minted first: its key names the master in a cluster, and a retry
	 * stores the same ticket. */
	if (ticket_new(ticket) != 0) {
		log_error("ticket for %s: getrandom failed: %s, answering 503", rt->id.user,
			  strerror(errno));
		handle_unavailable(io, "no ticket");
		return;
	}
	kn = ticket_key(key, sizeof key, app.conf.channel_prefix, ticket);
	rc = kn < 0 ? herr_set(HERR_INVAL, err, sizeof err, "ticket: bad key")
		    : worker_run(rcp, key, (size_t)kn, ticket_store_fn, &tc, err, sizeof err);
	if (rc != 0) {
		log_warn("ticket for %s: %s, answering 503", rt->id.user, err);
		handle_unavailable(io, "redis");
		return;
	}
	atomic_fetch_add(&app.n_tickets, 1);
	snprintf(body, sizeof body, "{\"ticket\":\"%s\",\"expires_in\":%ld}", ticket,
		 app.conf.ticket_ttl);
	metrics_buf_init(&out);
	reply_json(&out, 200, NULL, body);
	io_send(io, &out);
}

/*
 * The verdict of a revocation check that returned rc (err: its reason):
 * 0 to go on, or -1 after answering 401.  A check Redis cannot answer lets
 * the request in (fail open: the control channel still closes it once
 * Redis is back and a command comes).
 */
static int revoke_verdict(const struct io *io, const struct route *rt, int rc, const char *err)
{
	if (rc == AUTH_REVOKED) {
		struct route e = {.status = 401, .error = "invalid_token", .kind = rt->kind};

		snprintf(e.detail, sizeof e.detail, "%s", auth_reason(rc));
		atomic_fetch_add(&app.n_revoked_refused, 1);
		send_error(io, &e);
		return -1;
	}
	if (rc != AUTH_OK) {
		atomic_fetch_add(&app.n_revoke_check_errors, 1);
		log_warn("revocation check for %s failed: %s; letting it in (fail open)",
			 rt->id.user, err);
	}
	return 0;
}

/*
 * SSE and poll: redeem a ticket (the identity comes from it), then refuse a
 * revoked token.  0 to go on, or -1 after answering 401 (or 503).  A
 * ticket cannot be redeemed without Redis: refused like a bad token.
 * The revocation check waits for no round trip of its own where it can
 * go with another: a stream's is the loop's (rt->revoke_on_loop), pipelined
 * with the others on the subscriber's link; a poll's goes in the same
 * write as its history read (rt->revoke_with_read; not in cluster mode,
 * where a redirect may come between the two).
 */
static int admit(const struct io *io, redisContext **rcp, struct route *rt)
{
	char err[256], key[REDIS_KEY_MAX];
	int rc, kn;

	if (rt->ticket[0] != '\0') {
		kn = ticket_key(key, sizeof key, app.conf.channel_prefix, rt->ticket);
		rc = kn < 0 ? AUTH_BAD_TICKET
			    : worker_run(rcp, key, (size_t)kn, ticket_redeem_fn, rt, err, sizeof err);
		if (rc != AUTH_OK) {
			struct route e = {.status = 401, .error = "invalid_token", .kind = rt->kind};

			if (rc == HERR_REDIS)
				log_info("ticket not redeemed: %s, answering 401", err);
			snprintf(e.detail, sizeof e.detail, "%s",
				 auth_reason(rc == AUTH_EXPIRED ? rc : AUTH_BAD_TICKET));
			atomic_fetch_add(&app.n_ticket_refused, 1);
			send_error(io, &e);
			return -1;
		}
	}
	if (rt->kind == ROUTE_SSE && app.sub != NULL) {
		rt->revoke_on_loop = 1;
		return 0;
	}
	if (rt->kind == ROUTE_POLL && !app.conf.redis_cluster) {
		rt->revoke_with_read = 1;
		return 0;
	}
	kn = revoke_nbf_key(key, sizeof key, app.conf.channel_prefix, rt->id.user);
	rc = kn < 0 ? herr_set(HERR_REDIS, err, sizeof err, "revocation check: bad key names")
		    : worker_run(rcp, key, (size_t)kn, revoke_fn, rt, err, sizeof err);
	return revoke_verdict(io, rt, rc, err);
}

/* --- one request --------------------------------------------------------------- */

void handle_route(const struct io *io, struct route *rt)
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
	in.idempotency_key = io_param(io, "HTTP_IDEMPOTENCY_KEY");
	pthread_rwlock_rdlock(&app.auth_lock);
	router_route(&app.conf, app.auth, time(NULL), &in, rt);
	pthread_rwlock_unlock(&app.auth_lock);
}

/* rt's handler, rt read and valid. */
static int dispatch(const struct io *io, redisContext **rcp, struct route *rt)
{
	switch (rt->kind) {
	case ROUTE_HEALTH:
		do_health(io);
		return HANDLE_DONE;
	case ROUTE_METRICS:
		do_metrics(io);
		return HANDLE_DONE;
	case ROUTE_LIVE:
	case ROUTE_READY:
		do_probe(io, rt->kind);
		return HANDLE_DONE;
	case ROUTE_PUBLISH:
		do_publish(io, rcp, rt);
		return HANDLE_DONE;
	case ROUTE_TICKET:
		do_ticket(io, rcp, rt);
		return HANDLE_DONE;
	case ROUTE_SSE:
		if (io->r == NULL) {
			struct route e = {.status = 501, .error = "not_implemented",
					  .detail = "SSE needs herald-fcgi as a FastCGI server"};

			send_error(io, &e);
			return HANDLE_DONE;
		}
		return admit(io, rcp, rt) != 0 ? HANDLE_DONE : HANDLE_HOLD;
	case ROUTE_POLL:
		return admit(io, rcp, rt) != 0 ? HANDLE_DONE : do_poll(io, rcp, rt);
	default:
		return HANDLE_DONE;
	}
}

/* Does rt's handler wait for Redis on this worker?  A stream's does only
 * to redeem a ticket, or without the subscriber's link (admit). */
static int waits_for_redis(const struct route *rt)
{
	switch (rt->kind) {
	case ROUTE_PUBLISH:
	case ROUTE_TICKET:
	case ROUTE_POLL:
		return 1;
	case ROUTE_SSE:
		return rt->ticket[0] != '\0' || app.sub == NULL;
	default:
		return 0;
	}
}

int handle_on_loop(const struct route *rt)
{
	return rt->status == 0 && rt->kind == ROUTE_SSE && !waits_for_redis(rt);
}

int handle_routed(const struct io *io, redisContext **rcp, struct route *rt)
{
	if (rt->status != 0) {
		send_error(io, rt);
		return HANDLE_DONE;
	}
	return dispatch(io, rcp, rt);
}

/* --- a worker's batch ------------------------------------------------------------- */

/* A poll of a batch: its check and read, pipelined with the others'. */
struct batch_poll {
	struct handle_item *it;
	struct revoke_argv ra;
	struct history_argv h;
	struct history_result res;
	redisReply *first;	/* the check's reply */
	int alone;		/* answered on its own after the batch (handle_routed) */
	int rc;			/* history_collect's result */
	char err[256];
};

/* A poll with a ticket redeems it first, on its own; in cluster mode each
 * key has its master. */
int handle_batchable(const struct route *rt)
{
	return rt->status == 0 && rt->kind == ROUTE_POLL && rt->ticket[0] == '\0' &&
	       !app.conf.redis_cluster && !atomic_load(&app.stopping);
}

/* Append p's check and read to *rcp's output.  0, 1 when p goes alone
 * (its names do not make commands: handle_routed answers it), or
 * HERR_REDIS (the link broke). */
static int batch_append(redisContext *rc, struct batch_poll *p)
{
	const struct route *rt = p->it->rt;
	struct redis_cmd before;

	if (poll_check_cmd(rt, &p->ra, &before, p->err, sizeof p->err) != 0 ||
	    history_argv(&p->h, &app.conf, rt->id.user, poll_since(rt), rt->limit,
			 (size_t)app.conf.send_queue_max) != 0)
		return 1;
	return history_append(rc, &before, &p->h, p->err, sizeof p->err);
}

/*
 * Answer the polls b[0..n) (n >= 2): every check and read in one write,
 * the replies in order from as few reads, then each answer as poll_read
 * and do_poll give it.  A poll whose read needs another round trip (its
 * script gone: NOSCRIPT), or that the link's failure left unanswered, is
 * then answered on its own, which loads the script or connects again.
 */
static void poll_batch(struct batch_poll *b, size_t n, redisContext **rcp)
{
	char err[256];
	size_t sent = 0;
	int broken, drop = 0;

	broken = redis_ready(rcp, 0, err, sizeof err) != 0;
	for (; !broken && sent < n; sent++) {
		int rv = batch_append(*rcp, &b[sent]);

		b[sent].alone = rv != 0;
		broken = rv < 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct batch_poll *p = &b[i];

		if (i >= sent || broken) {
			p->alone = 1;
			continue;
		}
		if (p->alone)
			continue;
		p->rc = history_collect(*rcp, 1, &p->first, &p->h, poll_since(p->it->rt), 0,
					&p->res, p->err, sizeof p->err);
		if (p->rc == HERR_AGAIN || (p->rc != 0 && (*rcp)->err != 0)) {
			broken = p->rc != HERR_AGAIN;
			p->alone = 1;
			freeReplyObject(p->first);
			p->first = NULL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct batch_poll *p = &b[i];
		const struct io *io = p->it->io;
		struct route *rt = p->it->rt;
		char cerr[256];
		int check;

		if (p->alone)
			continue;
		rt->revoke_with_read = 1;
		check = revoke_check_result(p->first, &p->ra, &rt->id, "", cerr, sizeof cerr);
		freeReplyObject(p->first);
		p->first = NULL;
		p->it->res = poll_verdict(io, rt, p->rc, p->err, 1, check, cerr, &p->res, &drop) != 0
				     ? HANDLE_DONE
				     : poll_answer_read(io, rcp, rt, &p->res);
	}
	if (broken || drop) {
		redisFree(*rcp);
		*rcp = NULL;
	}
	atomic_fetch_add(&app.n_poll_batches, 1);
	for (size_t i = 0; i < n; i++) {
		if (b[i].alone)
			b[i].it->res = handle_routed(b[i].it->io, rcp, b[i].it->rt);
		else
			atomic_fetch_add(&app.n_polls_batched, 1);
	}
}

void handle_batch(struct handle_item *items, size_t n, redisContext **rcp)
{
	struct batch_poll *b = NULL;
	size_t np = 0;

	for (size_t i = 0; i < n; i++)
		np += handle_batchable(items[i].rt) != 0;
	if (np >= 2)
		b = calloc(np, sizeof *b);
	np = 0;
	for (size_t i = 0; i < n; i++) {
		if (b != NULL && handle_batchable(items[i].rt))
			b[np++].it = &items[i];
		else
			items[i].res = handle_routed(items[i].io, rcp, items[i].rt);
	}
	if (b != NULL)
		poll_batch(b, np, rcp);
	free(b);
}

int handle(const struct io *io, redisContext **rcp, struct route *rt)
{
	handle_route(io, rt);
	return handle_routed(io, rcp, rt);
}
