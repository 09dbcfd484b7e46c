/*
 * server.c - herald-ws's connections, in the order a connection lives:
 * accept (pausing the listener on EMFILE), the handshake read into a pooled
 * buffer and answered (101, an error, health, probes, metrics), the open
 * session (frames in through wsf_parse, messages out from the hub with
 * writev, pings and deadlines on one timer per connection), then the close
 * handshake and the drop.  One transport behind struct hub_conn_ops: the hub
 * calls hub_wake / hub_close under its lock, and they only make the
 * connection's write event active; the loop does the rest.  Single thread:
 * see server.h.
 */
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
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_message.h"
#include "http.h"
#include "hub.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "redis.h"
#include "revoke.h"
#include "slab.h"
#include "sub.h"
#include "ticket.h"
#include "clock.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define CTL_MAX 256          /* pending control frames: a pong and a close */
#define READ_BUF 16384       /* the loop's one read buffer */
#define ACCEPT_BATCH 64
#define EMFILE_PAUSE_MS 1000
/*
 * Sockets accepted at most: the open-files limit less this
 * (listen_nofile_cap), kept for the Redis links (the subscriber's, one per
 * cluster node, each opened again after Redis comes back), the listener
 * and the log.  Without it, connections took every descriptor and Redis
 * could not be reached again until some left.
 */
#define NOFILE_KEEP 256
#define FULL_WARN_MS 10000   /* the "not accepting" warning, at most this often */
#define NOFILE_RECLAIM 4     /* connections on their way out closed for a Redis link */
#define POOL_KEEP 64         /* handshake buffers kept for reuse */
#define EXPIRY_WARN_MS 30000 /* "expiring" this long before the 4401 at most (a quarter of the time left) */

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
	uint8_t want_proxy;         /* the PROXY header has not arrived yet (proxy_protocol on) */
	uint8_t addr_counted;       /* counted in the per-address table */
	uint8_t texted;             /* a text frame went out since the last ping: no heartbeat due */
	uint16_t code;              /* close code sent, for the log */
	uint16_t hlen;              /* bytes of the request in hbuf */
	uint32_t hout, hoff;        /* response in hbuf to write, and written so far */
	uint16_t ctl_len, ctl_off;
	uint8_t ohlen;
	uint8_t ohdr[10];           /* header of the message being written */
	char *hbuf;                 /* a partial request, then the response: exact size, only until sent */
	uint8_t *ctl;               /* pending control frames (malloc), only while pending */
	struct wsf_parser wp;
	struct hub_msg *out;        /* message being written (a reference), or NULL */
	const char *odata;
	size_t olen, ooff;          /* ooff counts header and payload bytes written */
	union {                     /* monotonic ms deadlines; 0 = none */
		long long due_hs;   /* CS_HANDSHAKE: the request (and its admission) */
		long long due_warn; /* CS_OPEN: the "expiring" message; one field, two phases */
	};
	long long due_ping, due_pong, due_exp, due_close, due_stall;
	long long armed;            /* deadline the timer is set to */
	struct proxy_addr peer;     /* the client: PROXY header, X-Forwarded-For or the socket's */
	struct admit *adm;          /* the ticket or revocation lookup in flight, or NULL */
	char *jti;                  /* the token's jti (malloc), or NULL: hc.jti */
	char user[AUTH_USER_MAX + 1];
};

/*
 * A handshake whose answer waits for Redis (the ticket's GETDEL, then the
 * revocation check): what the 101 needs, kept off struct conn, which every
 * open connection pays for.  Reading stops meanwhile; the handshake
 * timeout still runs.
 */
struct admit {
	struct conn *c;
	struct sub_call *call;
	int step;                   /* ADMIT_TICKET, then ADMIT_REVOKE */
	int has_since;
	struct cursor since;
	struct auth_identity id;
	char ticket[TICKET_LEN + 1];
	char accept[WSH_ACCEPT_LEN + 1];
	char since_s[CURSOR_STR_MAX + 8];
	size_t extra_len;           /* frames the client sent right behind the request */
	uint8_t extra[];
};

enum { ADMIT_TICKET = 1, ADMIT_REVOKE = 2, ADMIT_RECHECK = 3 /* after a refresh */ };

/* Close codes counted in the metrics, each in its slot. */
static const int close_codes[] = {1000, 1001, 1002, 1007, 1008, 1009, 1011,
				  4401, 4403, 4408, 4429};
#define CLOSE_CODES (sizeof close_codes / sizeof close_codes[0])

/*
 * Open connections per client address, for max_connections_per_address: a
 * chained hash of the addresses that have one (the port is not part of the
 * key), an entry freed with its last connection.  Kept only when the limit
 * is set.
 */
struct addr_ent {
	struct addr_ent *next;
	struct proxy_addr a;        /* port 0 */
	uint32_t n;
};

struct addr_tab {
	struct addr_ent **b;
	size_t nb, n;               /* buckets (a power of two), entries */
};

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
	unsigned sock_cap;          /* sockets accepted at most (listen_nofile_cap); 0 = none */
	long long full_warn_ms;     /* last "not accepting" warning */
	int stopping;
	struct event stop_timer;
	struct conn *conns;
	struct slab conn_slab;      /* the conns: mapped chunks, given back as they empty */
	struct wsf_pool fpool;
	struct event trim_ev;
	int trim_due;               /* much was freed: give it back to the system */
	uint64_t trim_peak;         /* most sockets open since the last trim */
	uint8_t rbuf[READ_BUF];
	/* metrics */
	uint64_t n_conns, n_open, accepted, upgraded, refused_auth, refused_limit, refused_origin;
	uint64_t http_errors;
	/* revocation: refused at connect (4401 revoked), checks that could
	 * not be made (Redis down: let in, fail open); tickets refused */
	uint64_t refused_revoked, revoke_check_errors, refused_ticket;
	long long revoke_warn_ms;   /* last fail-open warning, to keep the log quiet */
	/* PROXY headers accepted by version (1, 2); refused: missing or
	 * malformed where required, sent where not accepted */
	uint64_t proxy_ok[2], proxy_bad, proxy_forged, refused_addr;
	struct addr_tab addrs;      /* connections per client address (max_connections_per_address) */
	uint64_t frames_out, bytes_out, protocol_errors, pings, pongs_missed, emfile_pauses;
	uint64_t nofile_reclaimed;  /* closed early for a Redis link (on_nofile) */
	uint64_t full_pauses;       /* accepting stopped at sock_cap */
	uint64_t refresh_ok, refresh_refused, refresh_revoked, expiry_warnings, heartbeats;
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

/* --- connections per address --------------------------------------------- */

static size_t addr_hash(const struct proxy_addr *a)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	h = (h ^ a->family) * 16777619u;
	for (size_t i = 0; i < sizeof a->addr; i++)
		h = (h ^ a->addr[i]) * 16777619u;
	return h;
}

static struct addr_ent **addr_slot(struct addr_tab *t, const struct proxy_addr *a)
{
	struct addr_ent **pp = &t->b[addr_hash(a) & (t->nb - 1)];

	while (*pp != NULL &&
	       ((*pp)->a.family != a->family || memcmp((*pp)->a.addr, a->addr, sizeof a->addr) != 0))
		pp = &(*pp)->next;
	return pp;
}

/* Double the buckets when entries pass them; a failed malloc keeps the old ones. */
static void addr_grow(struct addr_tab *t)
{
	size_t nb = t->nb != 0 ? t->nb * 2 : 64, i;
	struct addr_ent **b = calloc(nb, sizeof *b);

	if (b == NULL)
		return;
	for (i = 0; i < t->nb; i++) {
		struct addr_ent *e = t->b[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[addr_hash(&e->a) & (nb - 1)];
			b[addr_hash(&e->a) & (nb - 1)] = e;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

/*
 * Count one more connection from c's address unless it has max already.
 * Returns 0 (counted, or no address to count), HERR_AGAIN (at the limit)
 * or HERR_NOMEM.
 */
static int addr_take(struct wss *s, struct conn *c, long max)
{
	struct addr_tab *t = &s->addrs;
	struct proxy_addr key = c->peer;
	struct addr_ent **pp;

	if (key.family == PROXY_AF_NONE)
		return 0;
	key.port = 0;
	if (t->n >= t->nb)
		addr_grow(t);
	if (t->nb == 0)
		return HERR_NOMEM;
	pp = addr_slot(t, &key);
	if (*pp == NULL) {
		*pp = calloc(1, sizeof **pp);
		if (*pp == NULL)
			return HERR_NOMEM;
		(*pp)->a = key;
		t->n++;
	}
	if ((long)(*pp)->n >= max)
		return HERR_AGAIN;
	(*pp)->n++;
	c->addr_counted = 1;
	return 0;
}

static void addr_release(struct wss *s, struct conn *c)
{
	struct proxy_addr key = c->peer;
	struct addr_ent **pp, *e;

	if (!c->addr_counted || s->addrs.nb == 0)
		return;
	c->addr_counted = 0;
	key.port = 0;
	pp = addr_slot(&s->addrs, &key);
	e = *pp;
	if (e == NULL || --e->n > 0)
		return;
	*pp = e->next;
	free(e);
	s->addrs.n--;
}

static void addr_tab_free(struct addr_tab *t)
{
	for (size_t i = 0; i < t->nb; i++) {
		struct addr_ent *e = t->b[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
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
	if (c->adm != NULL) {
		sub_call_cancel(c->adm->call);
		free(c->adm);
		c->adm = NULL;
	}
	free(c->jti);
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
		char a[PROXY_ADDR_STRLEN];

		log_debug("fd %d: user %s from %s disconnected (close code %d)", c->fd,
			  c->user[0] != '\0' ? c->user : "-", proxy_addr_str(&c->peer, a, sizeof a),
			  c->code);
		s->n_open--;
	}
	addr_release(s, c);
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
	slab_free(&s->conn_slab, c);
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

/*
 * A plain HTTP response, then close.  Used before the upgrade.  The buffer
 * has the response's exact size: /metrics grows with every metric added.
 */
static void conn_http(struct conn *c, int status, const char *extra, const char *ctype,
		      const char *body, size_t blen)
{
	size_t n = 0;

	free(c->hbuf);
	c->hbuf = wsh_response_new(status, extra, ctype, body, blen, &n);
	if (c->hbuf != NULL && n > UINT32_MAX) {
		free(c->hbuf);
		c->hbuf = NULL;
	}
	if (c->hbuf == NULL) {
		log_warn("fd %d: no memory for a %zu-byte response, closing", c->fd, blen);
		conn_free(c);
		return;
	}
	c->hout = (uint32_t)n;
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

/*
 * The next deadline that on_timer acts on in the connection's state.  Only
 * those: a deadline that on_timer would not consume (an expiry already
 * passed while closing) would re-arm the timer at zero, a busy loop.
 */
static long long conn_deadline(const struct conn *c)
{
	long long d = 0;
	long long v[4] = {0, 0, 0, 0};
	int i;

	if (c->state == CS_HANDSHAKE) {
		v[0] = c->due_hs;
	} else if (c->state == CS_CLOSING) {
		v[0] = c->due_close;
	} else {
		v[0] = c->ping_out ? c->due_pong : c->due_ping;
		v[1] = c->due_exp;
		v[2] = c->due_stall;
		v[3] = c->due_warn;
	}
	for (i = 0; i < 4; i++)
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

/*
 * The token's exp (plus the leeway) becomes the connection's end: at
 * connect and at each refresh.  The "expiring" message is due a quarter of
 * the time left before it, EXPIRY_WARN_MS at most, none when under a
 * second: a client that did not refresh on its own schedule (a clock that
 * is off, a token it cannot read) is told in time.
 */
static void conn_set_expiry(struct conn *c, long long exp)
{
	long long now = clock_mono_ms();
	long long left = (exp + c->srv->conf->jwt_leeway) * 1000 - clock_wall_ms();
	long long warn;

	if (left < 0)
		left = 0;
	warn = left / 4 < EXPIRY_WARN_MS ? left / 4 : EXPIRY_WARN_MS;
	c->due_exp = now + left;
	c->due_warn = warn >= 1000 ? c->due_exp - warn : 0;
}

/*
 * One text frame of the server's own (ws_message.h) among the control
 * frames: written between two envelopes, never inside one.  Dropped when
 * the control buffer is full (a peer that floods pings and does not read,
 * which the stall timer drops): these messages are advice.  Returns 0, or
 * HERR_AGAIN when it was dropped.
 */
static int conn_send_text(struct conn *c, const char *text, size_t len)
{
	if (ctl_push(c, WSF_OP_TEXT, text, len) != 0) {
		log_debug("fd %d user %s: no room for %.*s, not sent", c->fd, c->user, (int)len,
			  text);
		return HERR_AGAIN;
	}
	c->texted = 1;
	want_write(c);
	return 0;
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
			if (c->want_proxy) {
				char a[PROXY_ADDR_STRLEN];

				s->proxy_bad++;
				log_info("fd %d from %s: no complete PROXY protocol header in %u ms, "
					 "closing",
					 c->fd, proxy_addr_str(&c->peer, a, sizeof a),
					 s->o.handshake_timeout_ms);
			}
			if (c->hlen > 0 && !c->want_proxy) {
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
		if (c->due_warn != 0 && now >= c->due_warn) {
			char m[WSM_OUT_MAX];

			c->due_warn = 0;
			s->expiry_warnings++;
			conn_send_text(c, m, wsm_expiring(m, (c->due_exp - now + 999) / 1000));
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
				/*
				 * A page's script never sees pings: a quiet interval
				 * ends with a text frame it can see, so that it can
				 * tell an open but dead connection by silence
				 * (protocol.md, section 11).
				 */
				if (!c->texted) {
					char m[WSM_OUT_MAX];

					if (conn_send_text(c, m, wsm_heartbeat(m)) == 0)
						s->heartbeats++;
				}
				c->texted = 0;
				want_write(c);
			} else {
				/*
				 * No room: pongs for a peer that pings and does not
				 * read fill the control buffer.  Try again next
				 * interval; the write stall timer drops the peer.
				 */
				c->due_ping = now + s->conf->ws_ping_interval * 1000;
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
	int progress = 0; /* a byte went out in this call */
	ssize_t n;

	for (;;) {
		if (c->hout > 0) {
			n = send(c->fd, c->hbuf + c->hoff, c->hout - c->hoff, MSG_NOSIGNAL);
			if (n < 0)
				goto wouldblock;
			progress = 1;
			c->hoff += (uint32_t)n;
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
			progress = 1;
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
			progress = 1;
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
		c->texted = 1;
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
		/* The stall clock starts at the first block and restarts only
		 * when bytes move: a wake-up that writes nothing (a new message,
		 * a ping from a peer that does not read) does not extend it. */
		if (c->state == CS_OPEN && (c->due_stall == 0 || progress)) {
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
		else if (why == HUB_CLOSE_DISCONNECT)
			conn_close(c, 4403, "disconnected");
		else if (why == HUB_CLOSE_REVOKED)
			conn_close(c, 4401, "revoked");
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

/* The orchestrators' probes (metrics.h): live always 200, ready by
 * metrics_ready() on the subscriber's snapshot and the shutdown flag. */
static void serve_probe(struct conn *c, int probe)
{
	struct wss *s = c->srv;
	struct sub_status st;
	struct metrics_buf b;
	int status;

	sub_get_status(s->sub, &st);
	metrics_buf_init(&b);
	status = metrics_probe_json(&b, probe, &st, s->stopping);
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
	metrics_gauge(&b, "herald_ws_socket_limit",
		      "Sockets accepted at most: the open-files limit less 256 kept for Redis and the "
		      "log; 0 = no limit.",
		      (double)s->sock_cap);
	metrics_counter(&b, "herald_ws_accepted_total", "TCP connections accepted.", s->accepted);
	metrics_counter(&b, "herald_ws_upgrades_total", "Completed WebSocket handshakes.",
			s->upgraded);
	metrics_counter(&b, "herald_ws_auth_refused_total", "Handshakes closed with 4401.",
			s->refused_auth);
	metrics_counter(&b, "herald_ws_limit_refused_total", "Handshakes closed with 4429.",
			s->refused_limit);
	metrics_counter(&b, "herald_ws_revoked_refused_total",
			"Handshakes closed with 4401 because the token was revoked.",
			s->refused_revoked);
	metrics_counter(&b, "herald_ws_ticket_refused_total",
			"Handshakes closed with 4401 for a ticket unknown, used, expired or "
			"forged, or met while Redis was down.",
			s->refused_ticket);
	metrics_counter(&b, "herald_ws_revocation_check_errors_total",
			"Revocation checks at connect that Redis could not answer: the "
			"connection was let in (fail open).",
			s->revoke_check_errors);
	metrics_counter(&b, "herald_ws_origin_refused_total",
			"Handshakes refused with 403 for their Origin (or a cookie's token "
			"without an allowed one).",
			s->refused_origin);
	metrics_counter(&b, "herald_ws_http_errors_total", "Requests answered with an HTTP error.",
			s->http_errors);
	metrics_counter(&b, "herald_ws_protocol_errors_total",
			"Connections closed for a bad frame.", s->protocol_errors);
	metrics_counter(&b, "herald_ws_messages_delivered_total", "Messages written to sockets.",
			s->frames_out);
	metrics_counter(&b, "herald_ws_bytes_written_total", "Bytes of messages written.",
			s->bytes_out);
	metrics_counter(&b, "herald_ws_queue_drops_total",
			"Connections closed because their queue passed send_queue_max and could "
			"not be caught up from the history (4408).",
			hs.slow_closed);
	metrics_counter(&b, "herald_ws_pongs_missed_total", "Connections closed for a missing pong.",
			s->pongs_missed);
	metrics_printf(&b,
		       "# HELP herald_ws_refresh_total Refresh messages: accepted (the expiry moved), "
		       "refused (closed with 4401), revoked (accepted, then closed with 4401: "
		       "Redis says its token is revoked).\n"
		       "# TYPE herald_ws_refresh_total counter\n"
		       "herald_ws_refresh_total{result=\"ok\"} %llu\n"
		       "herald_ws_refresh_total{result=\"refused\"} %llu\n"
		       "herald_ws_refresh_total{result=\"revoked\"} %llu\n",
		       (unsigned long long)s->refresh_ok, (unsigned long long)s->refresh_refused,
		       (unsigned long long)s->refresh_revoked);
	metrics_counter(&b, "herald_ws_expiry_warnings_total",
			"\"expiring\" messages sent before a token's expiry.", s->expiry_warnings);
	metrics_counter(&b, "herald_ws_heartbeats_total",
			"Heartbeat messages sent at the end of a ping interval without another "
			"text frame.",
			s->heartbeats);
	metrics_counter(&b, "herald_ws_emfile_pauses_total",
			"Times accept() ran out of descriptors.", s->emfile_pauses);
	metrics_counter(&b, "herald_ws_full_pauses_total",
			"Times accepting stopped at herald_ws_socket_limit (until a connection closed).",
			s->full_pauses);
	metrics_counter(&b, "herald_ws_nofile_reclaimed_total",
			"Connections on their way out (closing, or handshaking) closed early because "
			"a Redis connection found no descriptor.",
			s->nofile_reclaimed);
	metrics_printf(&b,
		       "# HELP herald_ws_proxy_headers_total PROXY protocol headers accepted, by "
		       "version.\n"
		       "# TYPE herald_ws_proxy_headers_total counter\n"
		       "herald_ws_proxy_headers_total{version=\"1\"} %llu\n"
		       "herald_ws_proxy_headers_total{version=\"2\"} %llu\n",
		       (unsigned long long)s->proxy_ok[0], (unsigned long long)s->proxy_ok[1]);
	metrics_printf(&b,
		       "# HELP herald_ws_proxy_refused_total Connections closed for their PROXY "
		       "protocol header: missing, malformed or too long where proxy_protocol is on "
		       "(invalid), present where it is off (forged).\n"
		       "# TYPE herald_ws_proxy_refused_total counter\n"
		       "herald_ws_proxy_refused_total{reason=\"invalid\"} %llu\n"
		       "herald_ws_proxy_refused_total{reason=\"forged\"} %llu\n",
		       (unsigned long long)s->proxy_bad, (unsigned long long)s->proxy_forged);
	metrics_counter(&b, "herald_ws_address_limit_refused_total",
			"Handshakes closed with 4429 for max_connections_per_address.",
			s->refused_addr);
	metrics_gauge(&b, "herald_ws_client_addresses",
		      "Client addresses with a connection now (counted when "
		      "max_connections_per_address is set).",
		      (double)s->addrs.n);
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

/*
 * The HTTP flavour: nginx's HTTP proxy appends the address it saw to
 * X-Forwarded-For ($proxy_add_x_forwarded_for), so the last entry is the
 * client and the entries before it are the client's own claims.  Believed
 * only from a proxy on this host (a unix socket or loopback peer) and never
 * on a proxy_protocol listener, where the PROXY header said it and a client
 * could add the header itself.
 */
static void peer_from_xff(struct conn *c, const char *xff)
{
	const char *last, *end;
	struct proxy_addr a;

	if (xff == NULL || c->srv->conf->proxy_protocol ||
	    (c->peer.family != PROXY_AF_NONE && !proxy_addr_is_loopback(&c->peer)))
		return;
	last = strrchr(xff, ',');
	last = last != NULL ? last + 1 : xff;
	while (*last == ' ' || *last == '\t')
		last++;
	end = last + strlen(last);
	while (end > last && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (proxy_addr_parse(last, (size_t)(end - last), &a) == 0)
		c->peer = a;
}

static void upgrade(struct conn *c, int code, const char *errstr, const struct auth_identity *idp,
		    const char *accept, const struct cursor *sincep, const char *since_s,
		    const uint8_t *extra_buf, size_t extra);
static void admit_reply(void *ud, const redisReply *r);

/* Send the admission's next lookup: 0, or HERR_REDIS / HERR_NOMEM. */
static int admit_send(struct admit *a)
{
	struct wss *s = a->c->srv;
	char key[REDIS_KEY_MAX];
	struct revoke_argv ra;
	int n;

	if (a->step == ADMIT_TICKET) {
		const char *argv[2] = {"GETDEL", key};
		size_t argvlen[2] = {6, 0};

		n = ticket_key(key, sizeof key, s->conf->channel_prefix, a->ticket);
		if (n < 0)
			return HERR_REDIS;
		argvlen[1] = (size_t)n;
		return sub_command(s->sub, 2, argv, argvlen, admit_reply, a, &a->call);
	}
	if (revoke_check_argv(&ra, s->conf->channel_prefix, &a->id) < 0)
		return HERR_REDIS;
	return sub_command(s->sub, ra.argc, ra.argv, ra.argvlen, admit_reply, a, &a->call);
}

/* Fail open: a revocation check Redis could not answer lets the client in. */
static void admit_fail_open(struct wss *s, const char *user, const char *why)
{
	long long now = clock_mono_ms();

	s->revoke_check_errors++;
	if (s->revoke_warn_ms == 0 || now - s->revoke_warn_ms >= 10000) {
		s->revoke_warn_ms = now;
		log_warn("revocation check for user %s failed: %s; letting it in (fail open; "
			 "the control channel still closes it; warned once per 10 s)",
			 user, why);
	}
}

/*
 * After the token (or ticket's shape) and the cursor are good: look the
 * ticket up and/or check revocation in Redis before answering.  0: the
 * handshake completes from admit_reply.  Otherwise the caller upgrades now:
 * HERR_REDIS / HERR_NOMEM without a ticket (fail open, counted); with a
 * ticket the connection was answered here (refused).
 */
static int admit_start(struct conn *c, const char *ticket, const struct auth_identity *id,
		       const char *accept, const struct cursor *since, const char *since_s,
		       const uint8_t *extra, size_t extra_len)
{
	struct wss *s = c->srv;
	struct admit *a = calloc(1, sizeof *a + extra_len);
	int rc = HERR_NOMEM;

	if (a != NULL) {
		a->c = c;
		a->step = ticket != NULL ? ADMIT_TICKET : ADMIT_REVOKE;
		a->id = *id;
		if (ticket != NULL) /* ticket_valid: TICKET_LEN characters */
			memcpy(a->ticket, ticket, TICKET_LEN);
		memcpy(a->accept, accept, sizeof a->accept);
		if (since != NULL) {
			a->has_since = 1;
			a->since = *since;
			snprintf(a->since_s, sizeof a->since_s, "%s", since_s);
		}
		a->extra_len = extra_len;
		if (extra_len > 0)
			memcpy(a->extra, extra, extra_len);
		rc = admit_send(a);
	}
	if (rc != 0) {
		free(a);
		if (ticket == NULL) {
			admit_fail_open(s, id->user, herr_str(rc));
			return rc;
		}
		/* A ticket cannot be checked without Redis: refused like a bad token. */
		log_info("fd %d: ticket not redeemed: Redis %s, refusing with 4401", c->fd,
			 herr_str(rc));
		s->refused_ticket++;
		s->refused_auth++;
		upgrade(c, 4401, auth_reason(AUTH_BAD_TICKET), id, accept, since, since_s, extra,
			extra_len);
		return 0;
	}
	c->adm = a;
	/* No reading until answered; the handshake timeout bounds the wait. */
	event_del(&c->rev);
	free(c->hbuf);
	c->hbuf = NULL;
	c->hlen = 0;
	c->due_hs = clock_mono_ms() + s->o.handshake_timeout_ms;
	conn_arm(c);
	return 0;
}

static void admit_reply(void *ud, const redisReply *r)
{
	struct admit *a = ud;
	struct conn *c = a->c;
	struct wss *s = c->srv;
	const char *errstr = NULL;
	int res, code = 0;

	a->call = NULL;
	if (a->step == ADMIT_RECHECK) {
		res = revoke_check_reply(r, &a->id);
		c->adm = NULL;
		if (res == AUTH_REVOKED) {
			s->refresh_revoked++;
			log_info("fd %d user %s: the refreshed token is revoked, closing with 4401",
				 c->fd, c->user);
			conn_close(c, 4401, auth_reason(res));
		} else if (res != AUTH_OK) {
			admit_fail_open(s, a->id.user,
					r == NULL ? "Redis connection lost"
					: r->type == REDIS_REPLY_ERROR ? r->str
								       : "unexpected reply");
		}
		free(a);
		return;
	}
	if (a->step == ADMIT_TICKET) {
		res = ticket_redeem_reply(r, time(NULL), s->conf->jwt_leeway, &a->id);
		if (res == AUTH_OK) {
			memcpy(c->user, a->id.user, sizeof c->user);
			a->step = ADMIT_REVOKE;
			res = admit_send(a);
			if (res == 0)
				return;
			admit_fail_open(s, a->id.user, herr_str(res));
		} else {
			if (res == HERR_REDIS)
				log_info("fd %d: ticket not redeemed: %s, refusing with 4401", c->fd,
					 r == NULL ? "Redis connection lost" : "Redis error");
			code = 4401;
			errstr = auth_reason(res == HERR_REDIS ? AUTH_BAD_TICKET : res);
			s->refused_ticket++;
			s->refused_auth++;
		}
	} else {
		res = revoke_check_reply(r, &a->id);
		if (res == AUTH_REVOKED) {
			code = 4401;
			errstr = auth_reason(res);
			s->refused_revoked++;
			s->refused_auth++;
		} else if (res != AUTH_OK) {
			admit_fail_open(s, a->id.user,
					r == NULL ? "Redis connection lost"
					: r->type == REDIS_REPLY_ERROR ? r->str
								       : "unexpected reply");
		}
	}
	c->adm = NULL;
	c->due_hs = 0;
	event_add(&c->rev, NULL);
	upgrade(c, code, errstr, &a->id, a->accept, a->has_since ? &a->since : NULL, a->since_s,
		a->extra, a->extra_len);
	free(a);
}

/* The request is complete: route it, and for the WebSocket path upgrade. */
static void on_request(struct conn *c, char *buf, size_t len, struct wsh_req *r, size_t reqlen)
{
	struct wss *s = c->srv;
	const struct conf *cf = s->conf;
	char accept[WSH_ACCEPT_LEN + 1], token[AUTH_TOKEN_MAX + 1], since_s[CURSOR_STR_MAX + 8];
	char ticket[64];
	struct auth_identity id;
	struct cursor since;
	enum auth_source from;
	int has_since = 0, rc, auth_rc, probe, trc;
	const char *errstr = NULL;
	int code = 0;
	size_t extra = len - reqlen;

	memset(&id, 0, sizeof id);
	c->due_hs = 0;
	peer_from_xff(c, r->x_forwarded_for);
	probe = metrics_probe_of(cf->path_health, r->path, strlen(r->path));
	if (probe != METRICS_PROBE_NONE) {
		if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
			conn_http_error(c, 405, "GET only");
			return;
		}
		serve_probe(c, probe);
		return;
	}
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
		s->refused_origin++;
		conn_http_error(c, 403, "origin not allowed");
		return;
	}
	if (wsh_accept(r->key, accept) != 0) {
		conn_http_error(c, 500, "SHA-1 failed");
		return;
	}
	/* Auth and cursor problems are told after the upgrade (DESIGN 4): a
	 * browser sees the close code, not an HTTP status. */
	auth_rc = auth_find_token_from(r->authorization, r->query, r->cookie, cf->jwt_cookie, token,
				       sizeof token, &from);
	/* A ticket (?ticket=) stands for the token: redeemed in Redis below. */
	trc = http_query_get(r->query, "ticket", ticket, sizeof ticket);
	if (trc == HERR_NOTFOUND)
		trc = 0;
	/*
	 * Cross-site WebSocket hijacking: a page of any site can open a
	 * WebSocket to us and the browser adds our cookie (no CORS here).  A
	 * token from a cookie counts only with an Origin named in the list.
	 */
	if (trc == 0 && from == AUTH_FROM_COOKIE &&
	    !wsh_origin_listed(r->origin, cf->allowed_origins)) {
		s->refused_origin++;
		conn_http_error(c, 403,
				cf->allowed_origins == NULL
				    ? "a token from a cookie needs allowed_origins"
				    : "a token from a cookie needs an allowed Origin");
		return;
	}
	if (trc != 0) {
		auth_rc = trc > 0 && ticket_valid(ticket, (size_t)trc) ? AUTH_OK : AUTH_BAD_TICKET;
		if (auth_rc != AUTH_OK)
			s->refused_ticket++;
	} else if (auth_rc == AUTH_OK) {
		auth_rc = auth_verify(s->auth, token, strlen(token), time(NULL), &id);
	}
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
	/* Valid so far: Redis has the last word (the ticket, then revocation). */
	if (code == 0 &&
	    admit_start(c, trc > 0 ? ticket : NULL, &id, accept, has_since ? &since : NULL,
			since_s, (const uint8_t *)buf + reqlen, extra) == 0)
		return;
	upgrade(c, code, errstr, &id, accept, has_since ? &since : NULL, since_s,
		(const uint8_t *)buf + reqlen, extra);
}

/*
 * Answer 101 and either close at once with code (4401, 4429...) or attach
 * to the hub and go live.  extra: frames the client sent right behind the
 * request.
 */
static void upgrade(struct conn *c, int code, const char *errstr, const struct auth_identity *idp,
		    const char *accept, const struct cursor *sincep, const char *since_s,
		    const uint8_t *extra_buf, size_t extra)
{
	struct wss *s = c->srv;
	const struct conf *cf = s->conf;
	struct auth_identity id = *idp;
	int has_since = sincep != NULL, rc, n;
	struct cursor since;

	if (sincep != NULL)
		since = *sincep;
	free(c->hbuf);
	c->hbuf = malloc(160);
	if (c->hbuf == NULL) {
		conn_free(c);
		return;
	}
	n = wsh_response_101(c->hbuf, 160, accept);
	c->hout = (uint32_t)n;
	c->hoff = 0;
	c->hlen = 0;
	c->state = CS_OPEN;
	s->upgraded++;
	s->n_open++;
	c->upgraded = 1;
	wsf_parser_init(&c->wp, &s->fpool);
	wsf_parser_keep_text(&c->wp); /* refresh messages */
	if (code == 0 && cf->max_connections_per_address > 0) {
		rc = addr_take(s, c, cf->max_connections_per_address);
		if (rc == HERR_AGAIN) {
			code = 4429;
			errstr = "too many connections from this address";
			s->refused_addr++;
		} else if (rc != 0) {
			code = WSF_CLOSE_INTERNAL;
			errstr = herr_str(rc);
		}
	}
	if (code == 0 && id.jti[0] != '\0' && (c->jti = strdup(id.jti)) == NULL) {
		code = WSF_CLOSE_INTERNAL;
		errstr = herr_str(HERR_NOMEM);
	}
	if (code == 0) {
		c->hc.ops = &ws_ops;
		c->hc.iat = id.iat;
		c->hc.jti = c->jti;
		/* Without a cursor it starts from the history's tail and is
		 * told it first ({"type":"cursor",...}): a reconnect then
		 * resumes from there instead of starting live again. */
		rc = has_since ? hub_attach(s->hub, &c->hc, c->user, &since)
			       : hub_attach_tail(s->hub, &c->hc, c->user);
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
		char a[PROXY_ADDR_STRLEN];

		log_debug("fd %d from %s: upgraded and closed with %d (%s)", c->fd,
			  proxy_addr_str(&c->peer, a, sizeof a), code, errstr);
		conn_close(c, code, errstr);
		write_some(c);
		return;
	}
	conn_set_expiry(c, id.exp);
	c->due_ping = clock_mono_ms() + cf->ws_ping_interval * 1000;
	{
		char a[PROXY_ADDR_STRLEN];

		log_debug("fd %d: user %s connected from %s%s%s", c->fd, c->user,
			  proxy_addr_str(&c->peer, a, sizeof a), has_since ? " since " : "",
			  has_since ? since_s : "");
	}
	conn_arm(c);
	/*
	 * Frames the client sent right behind the request, all of them: buf is
	 * the loop's read buffer (handshake_in parses there), and nothing in
	 * between reads into it.
	 */
	if (write_some(c) && extra > 0)
		frames_in(c, extra_buf, extra);
}

/* --- reading --------------------------------------------------------------- */

/*
 * A refreshed token is checked against the revocation keys as at connect
 * (revoke.h), after it took effect: a revoked one closes the connection
 * (4401 revoked) when Redis answers; Redis down lets it stand (fail open,
 * counted), as at connect.  A newer refresh replaces a check in flight.
 */
static void refresh_recheck(struct conn *c, const struct auth_identity *id)
{
	struct wss *s = c->srv;
	struct admit *a;
	int rc = HERR_NOMEM;

	if (c->adm != NULL) {
		sub_call_cancel(c->adm->call);
		free(c->adm);
		c->adm = NULL;
	}
	a = calloc(1, sizeof *a);
	if (a != NULL) {
		a->c = c;
		a->step = ADMIT_RECHECK;
		a->id = *id;
		rc = admit_send(a);
	}
	if (rc != 0) {
		free(a);
		admit_fail_open(s, id->user, herr_str(rc));
		return;
	}
	c->adm = a;
}

/*
 * A client's text message (ws_message.h): a refresh whose token is valid
 * for this connection's user moves its expiry (and the iat and jti that
 * revocation matches) and is answered "refreshed"; anything else closes
 * the connection with 4401, as an expired token does, with the reason's
 * word (auth_reason's, wsm_reason's, or "other_user").
 */
static void on_text(struct conn *c, const uint8_t *data, size_t len)
{
	struct wss *s = c->srv;
	char token[AUTH_TOKEN_MAX + 1], m[WSM_OUT_MAX];
	struct auth_identity id;
	const char *why;
	int code = 4401;
	int rc = wsm_parse(data, len, token, sizeof token);

	if (rc != WSM_REFRESH) {
		why = wsm_reason(rc);
		if (rc == WSM_INTERNAL)
			code = WSF_CLOSE_INTERNAL;
		goto refused;
	}
	rc = auth_verify(s->auth, token, strlen(token), time(NULL), &id);
	if (rc != AUTH_OK) {
		why = auth_reason(rc);
		goto refused;
	}
	if (strcmp(id.user, c->user) != 0) {
		why = "other_user";
		goto refused;
	}
	if (strcmp(id.jti, c->jti != NULL ? c->jti : "") != 0) {
		char *jti = NULL;

		if (id.jti[0] != '\0' && (jti = strdup(id.jti)) == NULL) {
			why = "internal";
			code = WSF_CLOSE_INTERNAL;
			goto refused;
		}
		free(c->jti);
		c->jti = jti;
	}
	c->hc.iat = id.iat;
	c->hc.jti = c->jti;
	conn_set_expiry(c, id.exp);
	conn_arm(c);
	s->refresh_ok++;
	log_debug("fd %d user %s: token refreshed, expires at %lld", c->fd, c->user, id.exp);
	conn_send_text(c, m, wsm_refreshed(m, id.exp));
	refresh_recheck(c, &id);
	return;
refused:
	s->refresh_refused++;
	log_debug("fd %d user %s: refresh refused (%s), closing with %d", c->fd, c->user, why, code);
	conn_close(c, code, why);
}

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
				   : rc == -WSF_CLOSE_TOO_BIG ? "message too big"
				   : rc == -WSF_CLOSE_INTERNAL ? "out of memory"
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
		case WSF_EV_MESSAGE:
			/* Text: a command (a refresh).  Binary: ignored (DESIGN 5). */
			if (ev.opcode == WSF_OP_TEXT)
				on_text(c, ev.data, ev.len);
			break;
		default:
			break;
		}
	}
	wsf_parser_trim(&c->wp);
}

/*
 * proxy_protocol on: the first len bytes of the connection are in the
 * loop's read buffer (a partial header from earlier reads included).  A
 * complete header sets the client's address and is cut from the buffer,
 * the request's bytes moved to its start; what was kept of an earlier read
 * goes.  Returns the header's length, 0 when more is needed (kept in
 * hbuf), or -1 after the connection was closed (no header, a malformed or
 * oversized one: closed without a word, since nothing proved the peer is
 * the proxy).
 */
static int proxy_in(struct conn *c, size_t len)
{
	struct wss *s = c->srv;
	struct proxy_hdr h;
	char a[PROXY_ADDR_STRLEN];
	long n = proxy_parse(s->rbuf, len, &h);

	if (n < 0) {
		s->proxy_bad++;
		log_info("fd %d from %s: %s, closing", c->fd, proxy_addr_str(&c->peer, a, sizeof a),
			 n == HERR_TOOBIG    ? "PROXY protocol header too long"
			 : proxy_sniff(s->rbuf, len) ? "malformed PROXY protocol header"
						    : "no PROXY protocol header (proxy_protocol is on)");
		conn_free(c);
		return -1;
	}
	if (n == 0) {
		if (c->hlen == 0) {
			c->hbuf = malloc(len);
			if (c->hbuf == NULL) {
				conn_free(c);
				return -1;
			}
			memcpy(c->hbuf, s->rbuf, len);
		}
		c->hlen = (uint16_t)len;
		return 0;
	}
	c->want_proxy = 0;
	s->proxy_ok[h.version - 1]++;
	/* LOCAL or UNKNOWN: the proxy's own connection, its socket address stays. */
	if (h.src.family != PROXY_AF_NONE)
		c->peer = h.src;
	free(c->hbuf);
	c->hbuf = NULL;
	c->hlen = 0;
	memmove(s->rbuf, s->rbuf + n, len - (size_t)n);
	return (int)n;
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
	if (c->want_proxy) {
		rc = proxy_in(c, len);
		if (rc <= 0)
			return;
		len -= (size_t)rc;
		if (len == 0)
			return;
	} else if (proxy_sniff(s->rbuf, len) && len >= (buf[0] == 'P' ? 6 : 12)) {
		char a[PROXY_ADDR_STRLEN];

		s->proxy_forged++;
		log_info("fd %d from %s: a PROXY protocol header where proxy_protocol is off, "
			 "refused with 400",
			 c->fd, proxy_addr_str(&c->peer, a, sizeof a));
		conn_http_error(c, 400, "PROXY protocol header on a listener without proxy_protocol");
		return;
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

static void conn_new(struct wss *s, int fd, const struct sockaddr_storage *sa, socklen_t salen)
{
	struct conn *c = slab_alloc(&s->conn_slab);
	int one = 1;

	if (c == NULL) {
		log_error("out of memory (%zu bytes) for a connection, closing fd %d", sizeof *c, fd);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->srv = s;
	c->fd = fd;
	c->want_proxy = s->conf->proxy_protocol != 0;
	proxy_addr_from_sockaddr(&c->peer, sa, salen);
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

/*
 * The process's server, for the Redis links' out-of-descriptors hook (a
 * process-wide function without an argument; one server per process).
 */
static struct wss *nofile_srv;

/*
 * A Redis link found no descriptor (redis_set_nofile_hook; on the loop
 * thread, where sub.c connects), though sock_cap keeps some back: the
 * open-files limit lowered while running, or the system's file table
 * full.  Up to NOFILE_RECLAIM connections on their way out give theirs,
 * oldest first: those closing (the close frame sent, the peer's awaited)
 * and handshakes neither answered nor waiting on Redis.  Attached
 * connections and lookups in flight are left alone.  Without it, the
 * subscriber could not come back after a Redis restart until such
 * connections timed out, and nothing was delivered meanwhile.
 */
static long on_nofile(void)
{
	struct wss *s = nofile_srv;
	struct conn *c, *prev;
	long n = 0;

	if (s == NULL || s->conns == NULL)
		return 0;
	for (c = s->conns; c->next != NULL; c = c->next)
		;
	for (; c != NULL && n < NOFILE_RECLAIM; c = prev) {
		prev = c->prev; /* NULL at the head (slab memory starts zeroed) */
		if (c->attached || c->adm != NULL ||
		    (c->state != CS_CLOSING && c->state != CS_HANDSHAKE))
			continue;
		conn_free(c);
		n++;
	}
	if (n > 0) {
		s->nofile_reclaimed += (uint64_t)n;
		log_warn("out of descriptors for a Redis connection: closed %ld connection%s on "
			 "their way out (closing or handshaking; %llu sockets open)",
			 n, n == 1 ? "" : "s", (unsigned long long)s->n_conns);
	}
	return n;
}

/* The hook off again, if s set it. */
static void nofile_unset(const struct wss *s)
{
	if (nofile_srv == s) {
		redis_set_nofile_hook(NULL);
		nofile_srv = NULL;
	}
}

/* No more accepts until listener_resume: 1, or 0 when already paused. */
static int listener_stop(struct wss *s)
{
	if (s->paused)
		return 0;
	s->paused = 1;
	event_del(&s->lev);
	return 1;
}

static void listener_pause(struct wss *s)
{
	struct timeval tv = {EMFILE_PAUSE_MS / 1000, EMFILE_PAUSE_MS % 1000 * 1000};

	if (!listener_stop(s))
		return;
	s->emfile_pauses++;
	evtimer_add(&s->lresume, &tv);
	log_warn("accept() failed: %s, pausing the listener for %d ms (%llu sockets open)",
		 strerror(errno), EMFILE_PAUSE_MS, (unsigned long long)s->n_conns);
}

/*
 * At sock_cap: no more accepts until a connection closes (conn_free
 * resumes), so the descriptors kept back stay free for Redis.  New
 * connections wait in the backlog, or a sibling worker sharing the
 * listener takes them, as when accept ran out of descriptors.
 */
static void listener_full(struct wss *s)
{
	long long now = clock_mono_ms();

	if (!listener_stop(s))
		return;
	s->full_pauses++;
	if (s->full_warn_ms == 0 || now - s->full_warn_ms >= FULL_WARN_MS) {
		s->full_warn_ms = now;
		log_warn("%llu sockets open, the most herald-ws accepts (the open-files limit less "
			 "%d kept for Redis): not accepting until one closes (warned once per %d s)",
			 (unsigned long long)s->n_conns, NOFILE_KEEP, FULL_WARN_MS / 1000);
	}
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
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd;

		if (s->sock_cap != 0 && s->n_conns >= s->sock_cap) {
			listener_full(s);
			break;
		}
		fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_new(s, fd, &sa, salen);
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

/* The subscriber's lines name Redis themselves ("redis 10.0.0.7:6379: ...",
 * "redis: sentinel ..."), as herald-fcgi logs them. */
static void on_sub_event(void *ud, int level, const char *msg)
{
	log_at(level, "%s", msg);
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
	slab_init(&s->conn_slab, sizeof(struct conn));
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
	hub_limits_conf(&lim, c);
	s->sock_cap = listen_nofile_cap(NOFILE_KEEP);
	if (s->sock_cap != 0)
		log_info("accepting up to %u sockets (the open-files limit less %d kept for Redis "
			 "and the log)",
			 s->sock_cap, NOFILE_KEEP);
	nofile_srv = s;
	redis_set_nofile_hook(on_nofile); /* before sub_new connects */
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
	nofile_unset(s);
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
	nofile_unset(s);
	hub_free(s->hub);
	auth_free(s->auth);
	if (s->lfd >= 0)
		close(s->lfd);
	event_del(&s->trim_ev);
	wsf_pool_clear(&s->fpool);
	addr_tab_free(&s->addrs);
	slab_destroy(&s->conn_slab);
	free(s);
}
