#include "config.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "auth.h"
#include "cursor.h"
#include "err.h"
#include "frame.h"
#include "handshake.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "sub.h"
#include "clock.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define CTL_MAX 256          /* pending control frames: a pong and a close */
#define READ_BUF 16384       /* the loop's one read buffer */
#define ACCEPT_BATCH 64
#define EMFILE_PAUSE_MS 1000
#define POOL_KEEP 64         /* handshake buffers kept for reuse */

enum conn_state {
	CS_HANDSHAKE = 0,
	CS_OPEN = 1,
	CS_CLOSING = 2,  /* close frame or HTTP response queued; then drain and drop */
};

/* Prometheus histogram of publish-to-write lag, in seconds. */
static const double lag_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1};
#define LAG_BUCKETS (sizeof lag_bounds / sizeof lag_bounds[0])

struct conn {
	struct hub_conn hc;
	struct wss *srv;
	struct conn *prev, *next;   /* every connection, for shutdown */
	struct event rev, wev, tev;
	int fd;
	uint8_t state;              /* enum conn_state */
	uint8_t attached;           /* hub_attach succeeded, hub_detach not yet */
	uint8_t ping_out;           /* a ping was sent; its pong is awaited */
	uint8_t close_queued;       /* nothing more is written after the close frame */
	uint8_t wr_shut;            /* shutdown(SHUT_WR) done: draining the input */
	uint8_t wev_on;             /* wev is added */
	uint8_t hub_closed;         /* enum hub_close_reason from the hub's close() */
	uint8_t upgraded;           /* counted in n_open */
	uint16_t code;              /* close code sent, for the log */
	uint16_t hlen;              /* bytes of the request in hbuf */
	uint16_t hout, hoff;        /* response in hbuf to write, and written so far */
	uint16_t ctl_len, ctl_off;
	uint8_t ohlen;
	uint8_t ohdr[10];           /* header of the message being written */
	char *hbuf;                 /* a partial request, then the response: exact size, only until sent */
	uint8_t *ctl;               /* pending control frames (malloc), only while pending */
	struct wsf_parser wp;
	struct hub_msg *out;        /* message being written (a reference), or NULL */
	const char *odata;
	size_t olen, ooff;          /* ooff counts header and payload bytes written */
	long long due_hs;           /* monotonic ms deadlines; 0 = none */
	long long due_ping, due_pong, due_exp, due_close, due_stall;
	long long armed;            /* deadline the timer is set to */
	char user[AUTH_USER_MAX + 1];
};

/* Close codes counted in the metrics, each in its slot. */
static const int close_codes[] = {1000, 1001, 1002, 1007, 1008, 1009, 1011, 4401, 4408, 4429};
#define CLOSE_CODES (sizeof close_codes / sizeof close_codes[0])

struct wss {
	struct event_base *base;
	const struct conf *conf;
	struct wss_opts o;
	auth_t *auth;
	struct hub *hub;
	struct sub *sub;
	int lfd;
	struct event lev, lresume;
	int paused;
	int stopping;
	struct event stop_timer;
	struct conn *conns;
	struct wsf_pool fpool;
	struct event trim_ev;
	int trim_due;               /* much was freed: give it back to the system */
	uint64_t trim_peak;         /* most sockets open since the last trim */
	uint8_t rbuf[READ_BUF];
	/* metrics */
	uint64_t n_conns, n_open, accepted, upgraded, refused_auth, refused_limit, http_errors;
	uint64_t frames_out, bytes_out, protocol_errors, pings, pongs_missed, emfile_pauses;
	uint64_t closes[CLOSE_CODES]; /* by close_slot() */
	long long start_ms;         /* wall clock at wss_new, for uptime */
	uint64_t lag_count, lag_bucket[LAG_BUCKETS];
	double lag_sum;
};

static int close_slot(int code)
{
	size_t i;

	for (i = 0; i < CLOSE_CODES; i++)
		if (close_codes[i] == code)
			return (int)i;
	return -1;
}

/* --- connection lifetime --------------------------------------------------- */

static void conn_flush(struct conn *c);
static void conn_arm(struct conn *c);
static void listener_resume(struct wss *s);

static void conn_free(struct conn *c)
{
	struct wss *s = c->srv;

	if (c->attached) {
		hub_detach(s->hub, &c->hc);
		c->attached = 0;
	}
	event_del(&c->rev);
	event_del(&c->wev);
	event_del(&c->tev);
	close(c->fd);
	wsf_parser_release(&c->wp);
	free(c->hbuf);
	free(c->ctl);
	hub_msg_unref(c->out);
	if (s->conns == c)
		s->conns = c->next;
	else
		c->prev->next = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->upgraded) {
		log_debug("fd %d: user %s disconnected (close code %d)", c->fd,
			  c->user[0] != '\0' ? c->user : "-", c->code);
		s->n_open--;
	}
	s->n_conns--;
	/*
	 * malloc_trim(0) walks the whole heap: 1-3 ms on a heap that churned
	 * (measured with 10,000-50,000 freed 1.4 KiB blocks), a stall for every
	 * delivery in flight.  So not after every close: after a slow consumer's
	 * queue was dropped, or once a quarter of the sockets of the peak since
	 * the last trim are gone.  Steady churn does not trim.
	 */
	if (c->code == 4408 || (s->trim_peak >= 64 && s->n_conns <= s->trim_peak / 4 * 3))
		s->trim_due = 1;
	free(c);
	if (s->paused)
		listener_resume(s);
	if (s->stopping && s->conns == NULL)
		event_base_loopexit(s->base, NULL);
}

/* Append a control frame; a pong that does not fit is dropped (ping flood). */
static int ctl_push(struct conn *c, int opcode, const void *payload, size_t len)
{
	long n;

	if (c->ctl == NULL) {
		c->ctl = malloc(CTL_MAX);
		if (c->ctl == NULL)
			return HERR_NOMEM;
		c->ctl_len = c->ctl_off = 0;
	}
	n = wsf_write_frame(c->ctl + c->ctl_len, CTL_MAX - c->ctl_len, 1, opcode, NULL, payload,
			    len);
	if (n < 0)
		return HERR_AGAIN;
	c->ctl_len = (uint16_t)(c->ctl_len + n);
	return 0;
}

static void want_write(struct conn *c)
{
	if (!c->wev_on) {
		event_add(&c->wev, NULL);
		c->wev_on = 1;
	}
}

/*
 * Queue a close frame and stop everything else: no more messages (the hub
 * forgets the connection now), and the socket is dropped once the frame is
 * written and the peer closed, or after close_timeout_ms.
 */
static void conn_close(struct conn *c, int code, const char *reason)
{
	uint8_t pl[WSF_CTRL_MAX];
	size_t n;
	int slot;

	if (c->close_queued)
		return;
	c->close_queued = 1;
	c->code = (uint16_t)code;
	if (c->attached) {
		hub_detach(c->srv->hub, &c->hc);
		c->attached = 0;
	}
	slot = close_slot(code);
	if (slot >= 0)
		c->srv->closes[slot]++;
	log_debug("closing fd %d user %s with %d %s", c->fd, c->user[0] != '\0' ? c->user : "-",
		  code, reason != NULL ? reason : "");
	n = wsf_close_payload(pl, code, reason);
	if (c->ctl != NULL && c->ctl_off == 0 && c->ctl_len + n + 2 > CTL_MAX)
		c->ctl_len = 0; /* drop an unsent pong: the close matters more */
	if (ctl_push(c, WSF_OP_CLOSE, pl, n) != 0) {
		c->state = CS_CLOSING;
		c->wr_shut = 1;
		c->due_close = clock_mono_ms();
		conn_arm(c);
		return;
	}
	c->state = CS_CLOSING;
	c->due_close = clock_mono_ms() + c->srv->o.close_timeout_ms;
	conn_arm(c);
	want_write(c);
}

/* A plain HTTP response, then close.  Used before the upgrade. */
static void conn_http(struct conn *c, int status, const char *extra, const char *ctype,
		      const char *body, size_t blen)
{
	char out[WSH_MAX];
	int n;

	n = wsh_response(out, sizeof out, status, extra, ctype, body, blen);
	if (n < 0)
		n = wsh_response(out, sizeof out, 500, NULL, NULL, NULL, 0);
	free(c->hbuf);
	c->hbuf = malloc((size_t)n);
	if (c->hbuf == NULL) {
		conn_free(c);
		return;
	}
	memcpy(c->hbuf, out, (size_t)n);
	c->hout = (uint16_t)n;
	c->hoff = 0;
	c->close_queued = 1;
	c->state = CS_CLOSING;
	c->due_hs = 0;
	c->due_close = clock_mono_ms() + c->srv->o.close_timeout_ms;
	if (status >= 400)
		c->srv->http_errors++;
	conn_arm(c);
	want_write(c);
}

static void conn_http_error(struct conn *c, int status, const char *why)
{
	char body[160];
	const char *extra = NULL;
	int n;

	if (status == 426)
		extra = "Sec-WebSocket-Version: 13\r\n";
	else if (status == 405)
		extra = "Allow: GET\r\n";
	n = snprintf(body, sizeof body, "%d %s: %s\n", status, http_status_text(status), why);
	log_debug("fd %d: HTTP %d (%s)", c->fd, status, why);
	conn_http(c, status, extra, NULL, body, (size_t)n);
}

/* --- timers ---------------------------------------------------------------- */

static long long conn_deadline(const struct conn *c)
{
	long long d = 0;
	long long v[6] = {c->due_hs, c->ping_out ? c->due_pong : c->due_ping, c->due_exp,
			  c->due_close, c->due_stall, 0};
	int i;

	for (i = 0; i < 5; i++)
		if (v[i] != 0 && (d == 0 || v[i] < d))
			d = v[i];
	return d;
}

static void conn_arm(struct conn *c)
{
	long long d = conn_deadline(c), now;
	struct timeval tv;

	if (d == c->armed)
		return;
	c->armed = d;
	if (d == 0) {
		event_del(&c->tev);
		return;
	}
	now = clock_mono_ms();
	if (d < now)
		d = now;
	tv.tv_sec = (d - now) / 1000;
	tv.tv_usec = (d - now) % 1000 * 1000;
	event_add(&c->tev, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct wss *s = c->srv;
	long long now = clock_mono_ms();

	c->armed = 0;
	if (c->state == CS_CLOSING) {
		if (c->due_close != 0 && now >= c->due_close) {
			conn_free(c);
			return;
		}
	} else if (c->state == CS_HANDSHAKE) {
		if (c->due_hs != 0 && now >= c->due_hs) {
			log_debug("fd %d: handshake not complete in %u ms, closing", c->fd,
				  s->o.handshake_timeout_ms);
			if (c->hlen > 0) {
				conn_http_error(c, 408, "request not complete in time");
			} else {
				conn_free(c);
			}
			return;
		}
	} else {
		if (c->due_exp != 0 && now >= c->due_exp) {
			conn_close(c, 4401, "expired");
			return;
		}
		if (c->due_stall != 0 && now >= c->due_stall) {
			log_debug("fd %d user %s: no write progress in %ld s, dropping", c->fd,
				  c->user, s->conf->ws_pong_timeout);
			conn_free(c);
			return;
		}
		if (c->ping_out && now >= c->due_pong) {
			s->pongs_missed++;
			conn_close(c, 1001, "no pong");
			c->due_close = now; /* the peer is gone: do not wait for it */
			conn_arm(c);
			return;
		}
		if (!c->ping_out && now >= c->due_ping) {
			if (ctl_push(c, WSF_OP_PING, NULL, 0) == 0) {
				c->ping_out = 1;
				c->due_pong = now + s->conf->ws_pong_timeout * 1000;
				s->pings++;
				want_write(c);
			}
		}
	}
	conn_arm(c);
}

/* --- writing --------------------------------------------------------------- */

static void note_lag(struct wss *s, const struct hub_msg *m)
{
	const char *p = memmem(m->data, m->len < 200 ? m->len : 200, "\"ts\":", 5);
	long long ts, lag;
	double sec;
	size_t i;

	if (p == NULL)
		return;
	ts = strtoll(p + 5, NULL, 10);
	if (ts <= 0)
		return;
	lag = clock_wall_ms() - ts;
	if (lag < 0)
		lag = 0;
	sec = (double)lag / 1000.0;
	s->lag_count++;
	s->lag_sum += sec;
	for (i = 0; i < LAG_BUCKETS; i++)
		if (sec <= lag_bounds[i])
			s->lag_bucket[i]++;
}

/* Write what can be written now: 1 when done for now, 0 after conn_free. */
static int write_some(struct conn *c)
{
	static const char reset_json[] = "{\"reset\":true}";
	struct wss *s = c->srv;
	ssize_t n;

	for (;;) {
		if (c->hout > 0) {
			n = send(c->fd, c->hbuf + c->hoff, c->hout - c->hoff, MSG_NOSIGNAL);
			if (n < 0)
				goto wouldblock;
			c->hoff = (uint16_t)(c->hoff + n);
			if (c->hoff < c->hout)
				continue;
			c->hout = c->hoff = 0;
			free(c->hbuf);
			c->hbuf = NULL;
			c->hlen = 0;
			if (c->ctl == NULL && c->close_queued)
				goto closed;
			continue;
		}
		if (c->out != NULL) {
			struct iovec iov[2];
			int k = 0;

			if (c->ooff < c->ohlen) {
				iov[k].iov_base = c->ohdr + c->ooff;
				iov[k++].iov_len = c->ohlen - c->ooff;
				iov[k].iov_base = (void *)c->odata;
				iov[k++].iov_len = c->olen;
			} else {
				iov[k].iov_base = (void *)(c->odata + c->ooff - c->ohlen);
				iov[k++].iov_len = c->olen - (c->ooff - c->ohlen);
			}
			n = writev(c->fd, iov, k);
			if (n < 0)
				goto wouldblock;
			c->ooff += (size_t)n;
			s->bytes_out += (uint64_t)n;
			if (c->ooff < c->ohlen + c->olen)
				continue;
			s->frames_out++;
			if (c->out->kind == HUB_MSG_NOTIFY)
				note_lag(s, c->out);
			hub_msg_unref(c->out);
			c->out = NULL;
			continue;
		}
		if (c->ctl != NULL && c->ctl_off < c->ctl_len) {
			n = send(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off, MSG_NOSIGNAL);
			if (n < 0)
				goto wouldblock;
			c->ctl_off = (uint16_t)(c->ctl_off + n);
			if (c->ctl_off < c->ctl_len)
				continue;
			free(c->ctl);
			c->ctl = NULL;
			c->ctl_len = c->ctl_off = 0;
			if (c->close_queued)
				goto closed;
			continue;
		}
		if (c->close_queued || !c->attached)
			break;
		c->out = hub_pop(s->hub, &c->hc);
		if (c->out == NULL)
			break;
		if (c->out->kind == HUB_MSG_RESET) {
			c->odata = reset_json;
			c->olen = sizeof reset_json - 1;
		} else {
			c->odata = c->out->data;
			c->olen = c->out->len;
		}
		c->ohlen = (uint8_t)wsf_write_header(c->ohdr, 1, WSF_OP_TEXT, c->olen);
		c->ooff = 0;
	}
	/* nothing left to write */
	if (c->wev_on) {
		event_del(&c->wev);
		c->wev_on = 0;
	}
	if (c->due_stall != 0) {
		c->due_stall = 0;
		conn_arm(c);
	}
	return 1;

wouldblock:
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		want_write(c);
		if (c->state == CS_OPEN) {
			c->due_stall = clock_mono_ms() + s->conf->ws_pong_timeout * 1000;
			conn_arm(c);
		}
		return 1;
	}
	log_debug("fd %d: write failed: %s, closing", c->fd, strerror(errno));
	conn_free(c);
	return 0;

closed:
	/* Everything up to the close is out: half-close and drain until the
	 * peer closes, so unread input does not turn our close into a reset. */
	shutdown(c->fd, SHUT_WR);
	c->wr_shut = 1;
	if (c->wev_on) {
		event_del(&c->wev);
		c->wev_on = 0;
	}
	c->due_stall = 0;
	conn_arm(c);
	return 1;
}

static void conn_flush(struct conn *c)
{
	if (c->hub_closed != 0 && !c->close_queued) {
		int why = c->hub_closed;

		c->hub_closed = 0;
		if (why == HUB_CLOSE_SLOW)
			conn_close(c, 4408, "too slow, resume with since");
		else if (why == HUB_CLOSE_ERROR)
			conn_close(c, 1011, "internal error, resume");
		else
			conn_close(c, 1001, "shutting down");
	}
	write_some(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

/* --- the hub's side -------------------------------------------------------- */

/* Both run with the hub's lock held: only schedule the loop, never call the hub. */
static void hub_wake(struct hub_conn *hc)
{
	struct conn *c = container_of(hc, struct conn, hc);

	event_active(&c->wev, EV_WRITE, 1);
}

static void hub_close(struct hub_conn *hc, int reason)
{
	struct conn *c = container_of(hc, struct conn, hc);

	c->hub_closed = (uint8_t)reason;
	event_active(&c->wev, EV_WRITE, 1);
}

static const struct hub_conn_ops ws_ops = {hub_wake, hub_close};

/* --- health and metrics ---------------------------------------------------- */

/* Health and metrics: the shared part from metrics.c, then herald-ws's own. */
static void serve_health(struct conn *c)
{
	struct wss *s = c->srv;
	struct sub_status st;
	struct hub_stats hs;
	struct metrics_buf b;
	char extra[64];
	int status;

	sub_get_status(s->sub, &st);
	hub_get_stats(s->hub, &hs);
	snprintf(extra, sizeof extra, "\"sockets\":%llu", (unsigned long long)s->n_conns);
	metrics_buf_init(&b);
	status = metrics_health_json(&b, "herald-ws", &hs, &st, s->start_ms, clock_wall_ms(),
				     extra);
	metrics_printf(&b, "\n");
	if (b.err != 0)
		conn_http_error(c, 500, "out of memory");
	else
		conn_http(c, status, status == 200 ? NULL : "Retry-After: 5\r\n",
			  "application/json", b.data, b.len);
	metrics_buf_free(&b);
}

static void serve_metrics(struct conn *c)
{
	struct wss *s = c->srv;
	struct sub_status st;
	struct hub_stats hs;
	struct metrics_buf b;
	size_t i;

	sub_get_status(s->sub, &st);
	hub_get_stats(s->hub, &hs);
	metrics_buf_init(&b);
	metrics_prometheus(&b, "herald-ws", &hs, &st, s->start_ms, clock_wall_ms());
	metrics_gauge(&b, "herald_ws_connections", "WebSocket connections open now.",
		      (double)s->n_open);
	metrics_gauge(&b, "herald_ws_sockets", "Sockets held now, handshaking ones included.",
		      (double)s->n_conns);
	metrics_counter(&b, "herald_ws_accepted_total", "TCP connections accepted.", s->accepted);
	metrics_counter(&b, "herald_ws_upgrades_total", "Completed WebSocket handshakes.",
			s->upgraded);
	metrics_counter(&b, "herald_ws_auth_refused_total", "Handshakes closed with 4401.",
			s->refused_auth);
	metrics_counter(&b, "herald_ws_limit_refused_total", "Handshakes closed with 4429.",
			s->refused_limit);
	metrics_counter(&b, "herald_ws_http_errors_total", "Requests answered with an HTTP error.",
			s->http_errors);
	metrics_counter(&b, "herald_ws_protocol_errors_total",
			"Connections closed for a bad frame.", s->protocol_errors);
	metrics_counter(&b, "herald_ws_messages_delivered_total", "Messages written to sockets.",
			s->frames_out);
	metrics_counter(&b, "herald_ws_bytes_written_total", "Bytes of messages written.",
			s->bytes_out);
	metrics_counter(&b, "herald_ws_queue_drops_total",
			"Connections closed because their queue passed send_queue_max (4408).",
			hs.slow_closed);
	metrics_counter(&b, "herald_ws_pongs_missed_total", "Connections closed for a missing pong.",
			s->pongs_missed);
	metrics_counter(&b, "herald_ws_emfile_pauses_total",
			"Times accept() ran out of descriptors.", s->emfile_pauses);
	metrics_printf(&b, "# HELP herald_ws_closes_total Close frames sent, by code.\n"
			   "# TYPE herald_ws_closes_total counter\n");
	for (i = 0; i < CLOSE_CODES; i++)
		metrics_printf(&b, "herald_ws_closes_total{code=\"%d\"} %llu\n", close_codes[i],
			       (unsigned long long)s->closes[i]);
	metrics_printf(&b, "# HELP herald_ws_publish_to_write_seconds From the envelope's ts to "
			   "the last byte written (ms resolution).\n"
			   "# TYPE herald_ws_publish_to_write_seconds histogram\n");
	for (i = 0; i < LAG_BUCKETS; i++)
		metrics_printf(&b, "herald_ws_publish_to_write_seconds_bucket{le=\"%g\"} %llu\n",
			       lag_bounds[i], (unsigned long long)s->lag_bucket[i]);
	metrics_printf(&b,
		       "herald_ws_publish_to_write_seconds_bucket{le=\"+Inf\"} %llu\n"
		       "herald_ws_publish_to_write_seconds_sum %.6f\n"
		       "herald_ws_publish_to_write_seconds_count %llu\n",
		       (unsigned long long)s->lag_count, s->lag_sum,
		       (unsigned long long)s->lag_count);
	if (b.err != 0)
		conn_http_error(c, 500, "out of memory");
	else
		conn_http(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
	metrics_buf_free(&b);
}

/* --- the upgrade ----------------------------------------------------------- */

static void frames_in(struct conn *c, const uint8_t *buf, size_t len);

/* The request is complete: route it, and for the WebSocket path upgrade. */
static void on_request(struct conn *c, char *buf, size_t len, struct wsh_req *r, size_t reqlen)
{
	struct wss *s = c->srv;
	const struct conf *cf = s->conf;
	char accept[WSH_ACCEPT_LEN + 1], token[AUTH_TOKEN_MAX + 1], since_s[CURSOR_STR_MAX + 8];
	struct auth_identity id;
	struct cursor since;
	int has_since = 0, rc, n, auth_rc;
	const char *errstr = NULL;
	int code = 0;
	size_t extra = len - reqlen;
	uint8_t early[256];

	memset(&id, 0, sizeof id);
	c->due_hs = 0;
	if (strcmp(r->path, cf->path_health) == 0 || strcmp(r->path, cf->path_metrics) == 0) {
		if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
			conn_http_error(c, 405, "GET only");
			return;
		}
		if (strcmp(r->path, cf->path_health) == 0)
			serve_health(c);
		else
			serve_metrics(c);
		return;
	}
	if (strcmp(r->path, cf->path_ws) != 0) {
		conn_http_error(c, 404, "no such path");
		return;
	}
	rc = wsh_check_upgrade(r);
	if (rc != 0) {
		conn_http_error(c, rc, rc == 426 ? "Sec-WebSocket-Version 13 only"
						 : "not a WebSocket upgrade request");
		return;
	}
	if (!wsh_origin_allowed(r->origin, cf->allowed_origins)) {
		conn_http_error(c, 403, "origin not allowed");
		return;
	}
	if (wsh_accept(r->key, accept) != 0) {
		conn_http_error(c, 500, "SHA-1 failed");
		return;
	}
	/* Auth and cursor problems are told after the upgrade (DESIGN 4): a
	 * browser sees the close code, not an HTTP status. */
	auth_rc = auth_find_token(r->authorization, r->query, r->cookie, cf->jwt_cookie, token,
				  sizeof token);
	if (auth_rc == AUTH_OK)
		auth_rc = auth_verify(s->auth, token, strlen(token), time(NULL), &id);
	if (auth_rc != AUTH_OK) {
		code = 4401;
		errstr = auth_reason(auth_rc);
		s->refused_auth++;
	} else {
		memcpy(c->user, id.user, sizeof c->user);
		rc = http_query_get(r->query, "since", since_s, sizeof since_s);
		if (rc > 0) {
			if (cursor_parse(since_s, (size_t)rc, &since) != 0) {
				code = WSF_CLOSE_POLICY;
				errstr = "bad since";
			} else {
				has_since = 1;
			}
		} else if (rc != HERR_NOTFOUND && rc != 0) {
			code = WSF_CLOSE_POLICY;
			errstr = "bad since";
		}
	}
	/* Keep frames the client sent right behind the request. */
	if (extra > sizeof early)
		extra = sizeof early;
	memcpy(early, buf + reqlen, extra);
	free(c->hbuf);
	c->hbuf = malloc(160);
	if (c->hbuf == NULL) {
		conn_free(c);
		return;
	}
	n = wsh_response_101(c->hbuf, 160, accept);
	c->hout = (uint16_t)n;
	c->hoff = 0;
	c->hlen = 0;
	c->state = CS_OPEN;
	s->upgraded++;
	s->n_open++;
	c->upgraded = 1;
	wsf_parser_init(&c->wp, &s->fpool);
	if (code == 0) {
		c->hc.ops = &ws_ops;
		rc = hub_attach(s->hub, &c->hc, c->user, has_since ? &since : NULL);
		if (rc == HERR_AGAIN) {
			code = 4429;
			errstr = "too many connections";
			s->refused_limit++;
		} else if (rc != 0) {
			code = WSF_CLOSE_INTERNAL;
			errstr = herr_str(rc);
		} else {
			c->attached = 1;
		}
	}
	if (code != 0) {
		log_debug("fd %d: upgraded and closed with %d (%s)", c->fd, code, errstr);
		conn_close(c, code, errstr);
		write_some(c);
		return;
	}
	{
		long long now = clock_mono_ms();
		long long left = ((long long)id.exp + cf->jwt_leeway) * 1000 - clock_wall_ms();

		c->due_exp = now + (left > 0 ? left : 0);
		c->due_ping = now + cf->ws_ping_interval * 1000;
	}
	log_debug("fd %d: user %s connected%s%s", c->fd, c->user, has_since ? " since " : "",
		  has_since ? since_s : "");
	conn_arm(c);
	if (write_some(c) && extra > 0)
		frames_in(c, early, extra);
}

/* --- reading --------------------------------------------------------------- */

static void frames_in(struct conn *c, const uint8_t *buf, size_t len)
{
	struct wss *s = c->srv;
	size_t off = 0;

	while (off < len && c->state == CS_OPEN) {
		struct wsf_event ev;
		size_t used;
		int rc = wsf_parse(&c->wp, buf + off, len - off, &used, &ev);

		off += used;
		if (rc < 0) {
			s->protocol_errors++;
			conn_close(c, -rc,
				   rc == -WSF_CLOSE_BAD_DATA ? "invalid UTF-8"
				   : rc == -WSF_CLOSE_TOO_BIG ? "message over 4 KiB"
							      : "protocol error");
			break;
		}
		if (rc == 0)
			break;
		switch (ev.type) {
		case WSF_EV_PING:
			if (ctl_push(c, WSF_OP_PONG, ev.data, ev.len) == 0)
				want_write(c);
			break;
		case WSF_EV_PONG:
			if (c->ping_out) {
				c->ping_out = 0;
				c->due_ping = clock_mono_ms() + s->conf->ws_ping_interval * 1000;
				conn_arm(c);
			}
			break;
		case WSF_EV_CLOSE:
			/* Echo the peer's code (RFC 6455 5.5.1). */
			conn_close(c,
				   ev.code == WSF_CLOSE_NO_STATUS ? WSF_CLOSE_NORMAL : ev.code,
				   NULL);
			break;
		default:
			break; /* client data messages are ignored (DESIGN 5) */
		}
	}
	wsf_parser_trim(&c->wp);
}

/*
 * The request usually arrives in one read: it is parsed in the loop's read
 * buffer and nothing is allocated.  Only a partial request is copied, at its
 * size, so a connection that sends half a request costs a few bytes.
 */
static void handshake_in(struct conn *c)
{
	struct wss *s = c->srv;
	struct wsh_req r;
	char *buf = (char *)s->rbuf;
	size_t len;
	ssize_t n;
	int rc;

	n = recv(c->fd, s->rbuf, WSH_MAX - c->hlen, 0);
	if (n == 0) {
		conn_free(c);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_free(c);
		return;
	}
	len = (size_t)n;
	if (c->hlen > 0) {
		char *nb = realloc(c->hbuf, c->hlen + len);

		if (nb == NULL) {
			conn_free(c);
			return;
		}
		memcpy(nb + c->hlen, s->rbuf, len);
		c->hbuf = nb;
		len += c->hlen;
		/* wsh_parse splits in place: parse a scratch copy, keep the original */
		memcpy(s->rbuf, nb, len);
	}
	rc = wsh_parse(buf, len, &r);
	if (rc == 0) {
		if (c->hlen == 0) {
			c->hbuf = malloc(len);
			if (c->hbuf == NULL) {
				conn_free(c);
				return;
			}
			memcpy(c->hbuf, s->rbuf, len);
		}
		c->hlen = (uint16_t)len;
		return;
	}
	if (rc < 0) {
		conn_http_error(c, -rc,
				rc == -431 ? "request headers over 8 KiB" : "malformed request");
		return;
	}
	on_request(c, buf, len, &r, (size_t)rc);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct wss *s = c->srv;
	ssize_t n;
	int rounds;

	if (c->state == CS_HANDSHAKE) {
		handshake_in(c);
		return;
	}
	for (rounds = 0; rounds < 4; rounds++) {
		n = recv(fd, s->rbuf, sizeof s->rbuf, 0);
		if (n == 0) {
			conn_free(c);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			conn_free(c);
			return;
		}
		/* Replies (pong, close) go out from the write event. */
		if (c->state == CS_OPEN)
			frames_in(c, s->rbuf, (size_t)n);
		if ((size_t)n < sizeof s->rbuf)
			break;
	}
}

/* --- accepting ------------------------------------------------------------- */

static void conn_new(struct wss *s, int fd)
{
	struct conn *c = calloc(1, sizeof *c);
	int one = 1;

	if (c == NULL) {
		log_error("malloc(%zu) failed for a connection, closing fd %d", sizeof *c, fd);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->srv = s;
	c->fd = fd;
	event_assign(&c->rev, s->base, fd, EV_READ | EV_PERSIST, on_read, c);
	event_assign(&c->wev, s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	evtimer_assign(&c->tev, s->base, on_timer, c);
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	if (s->n_conns > s->trim_peak)
		s->trim_peak = s->n_conns;
	s->accepted++;
	c->due_hs = clock_mono_ms() + s->o.handshake_timeout_ms;
	event_add(&c->rev, NULL);
	conn_arm(c);
}

static void listener_pause(struct wss *s)
{
	struct timeval tv = {EMFILE_PAUSE_MS / 1000, EMFILE_PAUSE_MS % 1000 * 1000};

	if (s->paused)
		return;
	s->paused = 1;
	s->emfile_pauses++;
	event_del(&s->lev);
	evtimer_add(&s->lresume, &tv);
	log_warn("accept() failed: %s, pausing the listener for %d ms (%llu sockets open)",
		 strerror(errno), EMFILE_PAUSE_MS, (unsigned long long)s->n_conns);
}

static void listener_resume(struct wss *s)
{
	if (!s->paused || s->stopping)
		return;
	s->paused = 0;
	evtimer_del(&s->lresume);
	event_add(&s->lev, NULL);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	listener_resume(arg);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct wss *s = arg;
	int i;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_new(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			listener_pause(s);
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			log_error("accept() failed: %s, retrying at the next connection",
				  strerror(errno));
		break;
	}
}

/* --- setup and teardown ---------------------------------------------------- */

static void on_sub_event(void *ud, int level, const char *msg)
{
	log_at(level, "redis: %s", msg);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct wss *s = arg;

	log_warn("%llu connections still open after %u ms, dropping them",
		 (unsigned long long)s->n_conns, s->o.close_timeout_ms);
	event_base_loopexit(s->base, NULL);
}

/*
 * Closed connections leave free memory inside the heap (a slow client's
 * queue, 10,000 half-open sockets): glibc keeps it unless asked, and the
 * process's RSS is the figure operators watch.
 */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
	struct wss *s = arg;

	if (s->trim_due) {
		s->trim_due = 0;
		s->trim_peak = s->n_conns;
		malloc_trim(0);
	}
}

int wss_new(struct wss **out, struct event_base *base, const struct conf *c,
	    const struct wss_opts *o, int lfd, char *err, size_t errlen)
{
	struct wss *s = calloc(1, sizeof *s);
	struct hub_limits lim;
	int rc;

	*out = NULL;
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		close(lfd);
		return HERR_NOMEM;
	}
	s->base = base;
	s->start_ms = clock_wall_ms();
	s->conf = c;
	s->o = *o;
	if (s->o.handshake_timeout_ms == 0)
		s->o.handshake_timeout_ms = 10000;
	if (s->o.close_timeout_ms == 0)
		s->o.close_timeout_ms = 5000;
	s->lfd = lfd;
	wsf_pool_init(&s->fpool, 64);
	rc = auth_new(&s->auth, c, err, errlen);
	if (rc != 0)
		goto fail;
	memset(&lim, 0, sizeof lim);
	lim.send_queue_max = (size_t)c->send_queue_max;
	lim.max_connections = (unsigned)c->max_connections;
	lim.max_per_user = (unsigned)c->max_connections_per_user;
	lim.history_limit = (unsigned)(c->history_max > HISTORY_LIMIT_MAX ? HISTORY_LIMIT_MAX
									   : c->history_max);
	rc = hub_new(&s->hub, &lim, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "hub_new: %s", herr_str(rc));
		goto fail;
	}
	rc = sub_new(&s->sub, base, c, s->hub, o->canary_interval_ms, err, errlen);
	if (rc != 0)
		goto fail;
	sub_set_event_cb(s->sub, on_sub_event, s);
	event_assign(&s->lev, base, lfd, EV_READ | EV_PERSIST, on_accept, s);
	evtimer_assign(&s->lresume, base, on_resume, s);
	evtimer_assign(&s->stop_timer, base, on_stop_timer, s);
	event_assign(&s->trim_ev, base, -1, EV_PERSIST, on_trim, s);
	{
		struct timeval tv = {2, 0};

		event_add(&s->trim_ev, &tv);
	}
	event_add(&s->lev, NULL);
	*out = s;
	return 0;
fail:
	sub_free(s->sub);
	hub_free(s->hub);
	auth_free(s->auth);
	close(lfd);
	free(s);
	return rc;
}

void wss_shutdown(struct wss *s)
{
	struct timeval tv = {s->o.close_timeout_ms / 1000, s->o.close_timeout_ms % 1000 * 1000};
	struct conn *c, *next;

	if (s->stopping)
		return;
	s->stopping = 1;
	event_del(&s->lev);
	evtimer_del(&s->lresume);
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
	}
	log_info("shutting down: closing %llu connections with 1001",
		 (unsigned long long)s->n_conns);
	/* The hub closes the attached ones (its close op -> 1001); the rest here. */
	hub_close_all(s->hub);
	for (c = s->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == CS_HANDSHAKE)
			conn_free(c);
		else if (c->state == CS_OPEN && !c->attached)
			conn_close(c, WSF_CLOSE_GOING_AWAY, "shutting down");
	}
	if (s->conns == NULL) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	evtimer_add(&s->stop_timer, &tv);
}

int wss_reload(struct wss *s, char *err, size_t errlen)
{
	auth_t *a;
	int rc = auth_new(&a, s->conf, err, errlen);

	if (rc != 0)
		return rc;
	auth_free(s->auth);
	s->auth = a;
	return 0;
}

void wss_free(struct wss *s)
{
	if (s == NULL)
		return;
	s->stopping = 0;
	s->paused = 0;
	for (struct conn *c = s->conns, *next; c != NULL; c = next) {
		next = c->next;
		conn_free(c);
	}
	evtimer_del(&s->stop_timer);
	event_del(&s->lev);
	evtimer_del(&s->lresume);
	sub_free(s->sub);
	hub_free(s->hub);
	auth_free(s->auth);
	if (s->lfd >= 0)
		close(s->lfd);
	event_del(&s->trim_ev);
	wsf_pool_clear(&s->fpool);
	free(s);
}
