/*
 * herald-bench - the load generator of Herald and its peers (issue 6).
 *
 * Opens N subscriber connections (WebSocket, SSE, polling, or SUBSCRIBE
 * straight to Redis: the floor), publishes at a steady rate through the
 * Herald publish script or an HTTP publisher URL, and prints one JSON line:
 * connections, connect rate, sent/received/lost/duplicated/out-of-order and
 * the publish-to-receive latency percentiles.
 *
 * Shape: the parent forks --procs children and only coordinates.  Child p
 * owns a slice of the users and every connection of those users, and
 * publishes for them itself, so each child knows what each of its
 * connections must receive.  A child runs one epoll loop over non-blocking
 * sockets.  Phases: connect (bounded concurrency) -> tell the parent
 * "ready" -> wait for "go" (sent when every child is ready) -> settle ->
 * publish for --duration -> drain -> send the counters and histograms to
 * the parent, which merges them (histograms add exactly) and prints.
 *
 * Each payload is {"b":1,"u":USER,"seq":N,"t":NS}: t is CLOCK_MONOTONIC at
 * the write() of the publish (one clock for every process of the machine),
 * seq counts per user from 1.  A receiver keeps the highest seq and a
 * 64-bit window below it per connection: a seq seen again is a duplicate,
 * one below the highest not seen yet is out of order.
 *
 * --replay N (issue 11): before the run the parent publishes a seed message
 * (seq 0) and N more (seq 1..N) to one extra user, R (index --users, "P<U>"),
 * keeping the seed's id as the resume cursor.  --replay-at seconds into the
 * run, the process owning user 0 opens one connection for R with that cursor
 * (WS since=, SSE Last-Event-ID, or {since} in --replay-url) and times it
 * from connect() to the moment every backlog message arrived, checking each
 * seq arrives once and in order; R joins the publishing rotation then, so
 * live messages published during the replay must follow it.  The other
 * users' latency is also kept apart for the messages received inside that
 * window (a shared page tells every process when it opens and closes).
 *
 * --reconnect (issue 14): a subscriber whose connection closes or breaks
 * after it was open connects again after herald.js's backoff (full jitter:
 * uniform in [0, min(max, base * 2^attempt)), the exponent back to 0 once a
 * connection stayed open --healthy-after s) and resumes from the last id
 * it got: WS since=, SSE Last-Event-ID, poll since= (the last "cursor").
 * Each client keeps a bitmap of the seqs it received, so loss, duplicates
 * and order are counted over all of its connections.  The publisher
 * reconnects too, and a message counts as sent once Redis acknowledged it
 * (the EVALSHA reply, and WAIT's with --wait-replicas); one whose reply
 * never came is "unacked": neither lost when missing nor a duplicate when
 * it arrives.  The recovery time runs from the first failure any process
 * saw to the last moment a client was receiving again (see usage()).
 */
#include "config.h"
#include "hist.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "auth.h"
#include "redis.h"
#include "sse.h"
#include "text.h"
#include "ws_frame.h"

#define PROCS_MAX 64
#define IN_MAX (1024 * 1024)   /* a connection's unparsed input, beyond it: protocol error */
#define SCRATCH (64 * 1024)
#define CLOSE_CODES 8
#define REDIS_INFLIGHT_MAX 20000 /* publishes awaiting a reply before the publisher waits */
#define BACKLOG_MAX 100000       /* due publishes not yet sent: beyond, they are skipped */

enum transport { TR_WS, TR_SSE, TR_POLL, TR_REDIS };
static const char *const transport_names[] = {"ws", "sse", "poll", "redis"};

enum kind { K_SUB, K_PUB_REDIS, K_PUB_HTTP, K_CTRL, K_TIMER };

enum state { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_READY, S_CLOSED, S_FAILED };

/* How the bytes after the connect are read. */
enum rstate { R_HDRS, R_BODY, R_WS, R_SSE, R_RESP };

enum phase { P_CONNECT, P_WAIT_GO, P_SETTLE, P_RUN, P_DRAIN, P_DONE };

/* Chunked decoding: besides a positive count of data bytes left. */
#define CH_SIZE (-1)
#define CH_CRLF (-2)
#define CH_END (-3)

struct target {
	char host[64];
	int port;
	char path[2048]; /* a template: {user} and {token} are replaced */
};

struct opts {
	enum transport tr;
	struct target url;
	int have_url;
	struct target pub;
	int have_pub;
	struct redis_addr redis; /* --redis, parsed by redis_url_parse */
	char prefix[64];
	char user_prefix[64];
	long connections;
	long users;
	int procs;
	double rate;
	double duration;
	double settle;
	double drain;
	double connect_timeout;
	double poll_interval;
	int concurrency;
	int src_addrs;
	int pub_conns;
	int payload_bytes;
	long token_ttl;
	const char *secret;
	const char *ready_file;
	const char *samples;
	const char *label;
	long history_max;        /* ARGV[2] of the publish script (entries kept), 0: its default */
	long replay;             /* --replay N: backlog entries for the resume connection */
	int replay_bytes;        /* pad the backlog's payloads to about this */
	double replay_at;        /* open the resume connection this far into the run */
	enum transport rtr;      /* the resume connection's transport (ws or sse) */
	int have_rtr;
	struct target rurl;      /* its URL template ({user} {token} {since}) */
	int have_rurl;
	char since[128];         /* the resume cursor: the seed's id (set by the parent) */
	int reconnect;           /* --reconnect: clients and publisher come back */
	double backoff_base;     /* ms: the first retry within [0, base) */
	double backoff_max;      /* ms: the longest retry window */
	double healthy_after;    /* s open before the backoff starts again from 0 */
	double late;             /* ms: a message slower than this delays the recovery */
	int wait_replicas;       /* WAIT N after each publish (0: none) */
	long wait_timeout;       /* WAIT's timeout, ms */
	struct target furl;      /* --fallback-url: SSE, after fall_after failures in a row */
	int have_furl;
	int fall_after;
	char pub_auth[600];      /* --publish-auth: the HTTP publisher's Authorization line */
	char initial_id[64];     /* --initial-id: the cursor before any message arrived */
};

/* A growable set of small integers (seqs): bit i is i. */
struct bits {
	uint8_t *b;
	size_t cap; /* bits */
};

struct conn {
	int fd;
	uint8_t kind;
	uint8_t state;
	uint8_t rstate;
	uint8_t conn_close; /* the response said Connection: close */
	uint8_t chunked;
	uint8_t counted;    /* counted in opened */
	uint8_t busy;       /* HTTP publisher: a request in flight */
	uint8_t replay;     /* the resume connection (--replay) */
	uint32_t gidx;      /* global connection index: picks the source address */
	uint32_t user;      /* global user index */
	int status;
	int32_t chunk_left;
	int64_t clen; /* body bytes left, -1: unknown */
	char *in;
	uint32_t len, cap, dlen;
	redisReader *rr;          /* R_RESP: hiredis's reply reader, made on first use */
	struct sse_parser *sse;   /* R_SSE: the project's SSE parser, made on first use */
	uint64_t t0;      /* connect() or the current request's write */
	uint64_t due;     /* --poll-interval: when the next poll is due */
	uint64_t max_seq; /* highest seq received */
	uint64_t window;  /* bit k: seq max_seq - k was received */
	uint64_t unique;  /* distinct seqs received */
	/* --reconnect: a subscriber, or an HTTP publisher's request in flight */
	uint8_t down;       /* lost its connection, not receiving again yet */
	uint8_t attempt;    /* backoff exponent: closes since a healthy connection */
	uint16_t close_code; /* the last WebSocket close code */
	uint8_t fails;      /* failures in a row (herald.js's ladder) */
	uint8_t fell;       /* on the fallback (SSE) since */
	uint32_t nrecon;    /* connections opened again after a loss */
	uint32_t pseq;      /* HTTP publisher: the seq of the request in flight */
	uint64_t retry_at;  /* connect again then (0: not waiting) */
	uint64_t ready_at;  /* the current connection became ready */
	struct bits seen;   /* seqs received, over every connection */
	char last_id[64];   /* the last id received: the resume cursor */
};

struct user {
	uint32_t sent;  /* seq of the last publish to this user */
	uint32_t nconn; /* connections of this user ready at the start */
	uint32_t nacked;   /* --reconnect: publishes Redis acknowledged */
	struct bits acked; /* their seqs */
	char *token;       /* its clients' token (cached_token) */
	long token_renew;  /* minted again from then on */
};

/* A publish awaiting Redis's reply (or two, with WAIT), in send order. */
struct pubrec {
	uint32_t user, seq;
	int8_t stage; /* 0: EVALSHA's reply due; 1 / -1: it said ok / error, WAIT's due */
};

#define RECON_HIST 64 /* clients by reconnects: 0..62, and 63 or more */

/* What a child sends its parent at the end; summed over children. */
struct result {
	uint64_t planned, opened, failed, closed_early, reconnects;
	uint64_t sent, pub_errors, pub_skipped, expected, received, unique, lost, dup, ooo;
	uint64_t wrong_user, unparsed, polls, poll_errors;
	uint64_t connect_ns; /* this child's connect phase */
	uint64_t run_ns;     /* publishing (or polling) time */
	int64_t steal_ms;    /* the machine's steal time over the run, -1: unknown */
	uint64_t close_code[CLOSE_CODES], close_count[CLOSE_CODES];
	char pub_error[160];
	char sub_error[160]; /* the first subscriber failure */
	/* --replay: the resume connection (only the process owning it fills these) */
	uint64_t r_opened, r_received, r_unique, r_backlog, r_dup, r_ooo, r_lost, r_unparsed;
	uint64_t r_wrong_user, r_live_sent, r_live_received, r_wire_bytes, r_close;
	int64_t r_first_ns, r_done_ns; /* from connect(): first message, whole backlog; -1: not */
	int64_t r_steal_ms;            /* steal over the replay window, -1: unknown */
	char r_error[160];
	struct hist lat, connect, poll;
	struct hist lat_rw;            /* the other users' latency inside the replay window */
	/* --reconnect */
	uint64_t acked, unacked, unacked_delivered, pub_reconnects;
	uint64_t sub_reconnects, clients_reconnected, unrecovered, failures, late, fallbacks;
	uint64_t heartbeats, resets;
	uint64_t pub_unrecovered; /* publishers without an acknowledged publish since a failure */
	uint64_t fail_ns; /* CLOCK_MONOTONIC of the first failure seen, 0: none */
	uint64_t ok_ns;   /* the last moment a client or the publisher was back */
	uint64_t recon_hist[RECON_HIST];
	char first_failure[120];
};

static struct opts O = {
	.tr = TR_WS,
	.redis = {.host = "127.0.0.1", .port = 6379},
	.prefix = "notifications",
	.user_prefix = "bench",
	.connections = 100,
	.procs = 1,
	.rate = 0,
	.duration = 5,
	.settle = 1,
	.drain = 3,
	.connect_timeout = 60,
	.concurrency = 256,
	.src_addrs = 64,
	.pub_conns = 8,
	.token_ttl = 86400,
	.replay_at = 1,
	.replay_bytes = -1,
	.backoff_base = 1000,
	.backoff_max = 30000,
	.healthy_after = 30,
	.late = 500,
	.wait_timeout = 1000,
	.fall_after = 2,
};

/*
 * The replay window, shared by every load process (a MAP_SHARED page made
 * before the fork): CLOCK_MONOTONIC ns of the resume connection's connect()
 * and of its last backlog message (0: not yet).
 */
static struct window {
	volatile uint64_t w0, w1;
} *W;

/* One child's state. */
static struct {
	int ep;
	struct conn ctrl;
	struct conn timer; /* timerfd: wakes the publisher when the next message is due */
	uint64_t timer_due;
	struct conn *conns;
	long nconns;
	uint32_t u0, u1;
	struct user *users;
	uint32_t *active;
	uint32_t nactive, rr;
	struct conn redis;
	struct pubrec *fifo; /* publishes awaiting a reply: a ring */
	size_t fifo_head, fifo_len, fifo_cap;
	uint64_t pub_retry_at; /* --reconnect: the publisher connects again then */
	unsigned pub_attempt;
	int pub_down;          /* failed, no acknowledged publish since */
	long nretry;           /* subscribers waiting to connect again */
	uint64_t next_retry;   /* the earliest of their retry_at */
	char *rout; /* Redis publisher's unsent bytes */
	size_t rout_len, rout_cap;
	uint64_t inflight;
	struct conn *hpub;
	uint64_t backlog; /* due publishes waiting for a free HTTP publisher */
	enum phase phase;
	long next_open, pending;
	uint64_t t_start, t_phase, t_run_end;
	int64_t steal0; /* steal_now_ms() when the run began */
	struct result r;
	FILE *samples; /* --samples: one line per received message */
	struct conn rc;  /* --replay: the resume connection (owner: the process of user 0) */
	int rc_owner, rc_started;
	uint64_t rc_t0;      /* its connect() */
	int64_t rc_steal0;
	struct bits rc_seen; /* the seqs it received */
	char scratch[SCRATCH];
} B;

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/*
 * All CPUs' steal time so far in ms (/proc/stat, USER_HZ ticks), -1 when it
 * cannot be read.  On a virtual machine, time the hypervisor gave our vCPUs
 * to others: a message whose path crosses a stolen vCPU waits for it, so a
 * run's tail latency follows this figure.
 */
static int64_t steal_now_ms(void)
{
	unsigned long long v[8];
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (f == NULL)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8 || hz <= 0)
		return -1;
	return (int64_t)(v[7] * 1000ULL / (unsigned long long)hz);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("herald-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* --- small helpers ---------------------------------------------------------------- */

static void user_name(uint32_t u, char *out, size_t len)
{
	snprintf(out, len, "%s%" PRIu32, O.user_prefix, u);
}

/* A user's publishing state: users [u0, u1) of this process, and the replay
 * user R (index O.users) in the extra slot after them. */
static struct user *uslot(uint32_t u)
{
	return u == (uint32_t)O.users ? &B.users[B.u1 - B.u0] : &B.users[u - B.u0];
}

/* The transport of c: the resume connection has its own, a client that fell back SSE. */
static enum transport ctr(const struct conn *c)
{
	return c->replay ? O.rtr : c->fell ? TR_SSE : O.tr;
}

/* The URL template of c. */
static const struct target *ctarget(const struct conn *c)
{
	return c->replay ? &O.rurl : c->fell ? &O.furl : &O.url;
}

/* An HS256 JWT for user: {"sub":USER,"iat":NOW,"exp":NOW+ttl}. */
static void make_token(const char *user, char *out, size_t len)
{
	static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char claims[256], h64[64], c64[400], s64[64], signing[512];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	long now = (long)time(NULL);
	int n;

	if (!O.secret) {
		snprintf(out, len, "none");
		return;
	}
	n = snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"iat\":%ld,\"exp\":%ld}", user, now,
		     now + O.token_ttl);
	auth_b64url_encode((const unsigned char *)hdr, sizeof hdr - 1, h64);
	auth_b64url_encode((const unsigned char *)claims, (size_t)n, c64);
	n = snprintf(signing, sizeof signing, "%s.%s", h64, c64);
	HMAC(EVP_sha256(), O.secret, (int)strlen(O.secret), (const unsigned char *)signing,
	     (size_t)n, mac, &maclen);
	auth_b64url_encode(mac, maclen, s64);
	snprintf(out, len, "%s.%s", signing, s64);
}

/* Tokens minted by the parent before the clock starts (premint), user u at
 * [u]: each child takes its users' ones as they are first needed. */
static char **premint_tok;
static long premint_at;

/*
 * User u's token, as its clients send it: minted once and kept, as a page
 * keeps the token it was given, and minted again once half its lifetime has
 * passed.  So a poll or a connect costs herald-bench no HMAC: a load
 * generator minting one per request took a share of the two cores from the
 * server it measured (Herald only: Nchan's URLs carry none).  NULL when it
 * cannot be kept: the caller mints one for the request.
 */
static const char *cached_token(uint32_t u, const char *name)
{
	struct user *us;
	char token[600];
	long now = (long)time(NULL);

	if (B.users == NULL || ((u < B.u0 || u >= B.u1) && u != (uint32_t)O.users))
		return NULL;
	us = uslot(u);
	if (us->token == NULL && premint_tok != NULL && premint_tok[u] != NULL) {
		us->token = premint_tok[u];
		premint_tok[u] = NULL;
		us->token_renew = premint_at + (O.token_ttl + 1) / 2;
	}
	if (us->token == NULL || now >= us->token_renew) {
		make_token(name, token, sizeof token);
		free(us->token);
		if ((us->token = strdup(token)) == NULL)
			return NULL;
		us->token_renew = now + (O.token_ttl + 1) / 2;
	}
	return us->token;
}

/*
 * Every user's token, minted before the connect phase is timed: a page has
 * its token before it connects (the application server minted it), so
 * signing 10,000 of them is not part of connecting 10,000 clients; on a
 * shared machine it took the gateway's CPU (Herald only: Nchan's URLs carry
 * none).  Nothing to do when no template holds {token}.
 */
static void premint(void)
{
	char name[96], token[600];

	if (strstr(O.url.path, "{token}") == NULL &&
	    !(O.have_furl && strstr(O.furl.path, "{token}") != NULL) &&
	    !(O.have_rurl && strstr(O.rurl.path, "{token}") != NULL))
		return;
	premint_tok = calloc((size_t)O.users + 1, sizeof *premint_tok);
	if (premint_tok == NULL)
		return; /* minted as needed instead */
	premint_at = (long)time(NULL);
	for (uint32_t u = 0; u <= (uint32_t)O.users; u++) {
		user_name(u, name, sizeof name);
		make_token(name, token, sizeof token);
		premint_tok[u] = strdup(token); /* NULL: minted when needed */
	}
}

/* Replace {user}, {token} and {since} (the resume cursor) in tmpl.  Returns the
 * length, or -1 when too long. */
static int expand(const char *tmpl, uint32_t u, char *out, size_t len)
{
	char name[96], token[600];
	size_t o = 0;
	const char *tok = NULL;

	user_name(u, name, sizeof name);
	for (const char *p = tmpl; *p; p++) {
		const char *rep = NULL;

		if (strncmp(p, "{user}", 6) == 0) {
			rep = name;
			p += 5;
		} else if (strncmp(p, "{token}", 7) == 0) {
			if (tok == NULL && (tok = cached_token(u, name)) == NULL) {
				make_token(name, token, sizeof token);
				tok = token;
			}
			rep = tok;
			p += 6;
		} else if (strncmp(p, "{since}", 7) == 0) {
			rep = O.since;
			p += 6;
		}
		if (rep) {
			size_t n = strlen(rep);
			if (o + n >= len)
				return -1;
			memcpy(out + o, rep, n);
			o += n;
		} else {
			if (o + 1 >= len)
				return -1;
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return (int)o;
}

/* http://host:port/path (ws:// too).  Returns 0 or -1. */
static int parse_url(const char *url, struct target *t)
{
	const char *p, *slash, *colon;
	size_t hl;

	if (strncmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncmp(url, "ws://", 5) == 0)
		p = url + 5;
	else
		return -1;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	colon = memchr(p, ':', (size_t)(slash - p));
	hl = (size_t)((colon ? colon : slash) - p);
	if (hl == 0 || hl >= sizeof t->host)
		return -1;
	memcpy(t->host, p, hl);
	t->host[hl] = '\0';
	t->port = 80;
	if (colon) {
		uint64_t port;

		if (text_parse_uint(colon + 1, (size_t)(slash - colon - 1), 65535, &port) != 0 ||
		    port == 0)
			return -1;
		t->port = (int)port;
	}
	snprintf(t->path, sizeof t->path, "%s", *slash ? slash : "/");
	return 0;
}

static void sub_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sub_fail(const char *fmt, ...)
{
	va_list ap;

	if (B.r.sub_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(B.r.sub_error, sizeof B.r.sub_error, fmt, ap);
	va_end(ap);
}

static void record_close(uint64_t code)
{
	for (int i = 0; i < CLOSE_CODES; i++) {
		if (B.r.close_count[i] == 0 || B.r.close_code[i] == code) {
			B.r.close_code[i] = code;
			B.r.close_count[i]++;
			return;
		}
	}
}

static uint64_t sec_ns(double s);
static void pub_lost(const char *why);

/* --- sets of seqs, backoff, failures (--reconnect) ----------------------------------------- */

/* Set bit i.  Returns its previous value (0 or 1), or -1 when out of memory. */
static int bits_set(struct bits *s, uint64_t i)
{
	if (i >= s->cap) {
		size_t cap = s->cap ? s->cap : 1024;
		uint8_t *q;

		while (cap <= i)
			cap *= 2;
		if (cap > ((size_t)1 << 34) || !(q = realloc(s->b, cap / 8)))
			return -1;
		memset(q + s->cap / 8, 0, (cap - s->cap) / 8);
		s->b = q;
		s->cap = cap;
	}
	if (s->b[i / 8] >> (i % 8) & 1)
		return 1;
	s->b[i / 8] |= (uint8_t)(1u << (i % 8));
	return 0;
}

static int bits_get(const struct bits *s, uint64_t i)
{
	return i < s->cap && (s->b[i / 8] >> (i % 8) & 1);
}

/* xorshift64*: the backoff's jitter (seeded per process in child_main). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double rnd01(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

/* herald.js's backoff(): full jitter, uniform in [0, min(max, base * 2^attempt)) ms. */
static uint64_t backoff_ns(double base_ms, double max_ms, unsigned attempt)
{
	double w = base_ms * (double)(1u << (attempt < 20 ? attempt : 20));

	if (w > max_ms)
		w = max_ms;
	return (uint64_t)(w * 1e6 * rnd01());
}

/* A failure seen now (what: for the report): the first starts the recovery clock. */
static void fail_note(uint64_t now, const char *what)
{
	B.r.failures++;
	if (B.r.fail_ns == 0) {
		B.r.fail_ns = now;
		snprintf(B.r.first_failure, sizeof B.r.first_failure, "%s", what);
	}
}

/* Something was back at now: a client receiving, the publisher acknowledged, a late message. */
static void ok_note(uint64_t now)
{
	if (now > B.r.ok_ns)
		B.r.ok_ns = now;
}

/*
 * Subscriber c lost its connection, or a new one failed: it connects again
 * after the backoff (retry_due).  herald.js's rules: the exponent starts
 * again from 0 when the connection had been open --healthy-after s, and
 * the first retry after a 4408 (too slow: resume) on a healthy connection
 * is at once.  The first loss of an outage is a failure.
 */
static void sub_lost(struct conn *c)
{
	uint64_t now = now_ns(), delay;
	int at_once = c->close_code == 4408;

	if (!c->down) {
		char what[80];

		c->down = 1;
		if (c->close_code)
			snprintf(what, sizeof what, "%s closed with %u", transport_names[ctr(c)],
				 (unsigned)c->close_code);
		else
			snprintf(what, sizeof what, "%s connection lost", transport_names[ctr(c)]);
		fail_note(now, what);
	}
	if (c->ready_at != 0 && now - c->ready_at >= sec_ns(O.healthy_after))
		c->attempt = 0;
	/* herald.js's ladder: an attempt that did not open, or a connection that
	 * broke without an orderly close, is a failure; fall_after in a row and
	 * it goes on over SSE (at once, the backoff from 0) */
	if (c->state != S_READY ||
	    (c->close_code != 1000 && c->close_code != 1001 && c->close_code != 4408))
		c->fails++;
	if (O.have_furl && !c->fell && c->fails >= O.fall_after) {
		c->fell = 1;
		c->fails = 0;
		c->attempt = 0;
		B.r.fallbacks++;
		at_once = 1;
	}
	delay = c->attempt == 0 && at_once ? 0
					   : backoff_ns(O.backoff_base, O.backoff_max, c->attempt);
	if (c->attempt < UINT8_MAX)
		c->attempt++;
	c->ready_at = 0;
	c->close_code = 0;
	c->state = S_CLOSED;
	c->retry_at = now + delay + 1;
	B.nretry++;
	if (c->retry_at < B.next_retry)
		B.next_retry = c->retry_at;
}

/* Subscriber c is receiving again (a 101, an SSE 200, a poll answered). */
static void sub_back(struct conn *c, uint64_t now)
{
	c->ready_at = now;
	c->fails = 0;
	if (c->down) {
		c->down = 0;
		ok_note(now);
	}
}

/* --- connections ---------------------------------------------------------------------- */

static void conn_free_in(struct conn *c)
{
	free(c->in);
	c->in = NULL;
	c->len = c->cap = c->dlen = 0;
}

/* The parsers' state: a connection keeps it from its first byte to its close. */
static void conn_free_parsers(struct conn *c)
{
	if (c->rr != NULL) {
		redisReaderFree(c->rr);
		c->rr = NULL;
	}
	if (c->sse != NULL) {
		sse_parser_free(c->sse);
		free(c->sse);
		c->sse = NULL;
	}
}

static void conn_close(struct conn *c, int failed)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	conn_free_in(c);
	conn_free_parsers(c);
	if (c->kind == K_PUB_REDIS)
		pub_lost(failed > 0 ? "redis publisher: connection lost" : "redis publisher: closed");
	if (c->kind == K_PUB_HTTP && c->busy) {
		/* a request whose answer never came */
		c->busy = 0;
		B.r.unacked++;
		if (O.reconnect)
			fail_note(now_ns(), "HTTP publisher: connection lost");
	}
	if (c->kind != K_SUB) {
		c->state = S_CLOSED;
		return;
	}
	if (c->replay) {
		if ((c->state == S_CONNECTING || c->state == S_HANDSHAKE) && !B.r.r_error[0])
			snprintf(B.r.r_error, sizeof B.r.r_error, "%s",
				 B.r.sub_error[0] ? B.r.sub_error : "could not connect");
		else if (c->state == S_READY && B.phase != P_DONE && !B.r.r_error[0])
			snprintf(B.r.r_error, sizeof B.r.r_error,
				 "closed by the server after %" PRIu64 " messages", B.r.r_received);
		if (W->w1 == 0)
			W->w1 = now_ns();
		c->state = failed > 0 ? S_FAILED : S_CLOSED;
		return;
	}
	if (O.reconnect && c->counted && B.phase != P_DONE) {
		sub_lost(c);
		return;
	}
	if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) {
		if (!c->counted) {
			B.pending--;
			B.r.failed++;
		} else {
			B.r.closed_early++;
		}
		c->state = S_FAILED;
		return;
	}
	if (c->state == S_READY && failed >= 0 && B.phase != P_DONE)
		B.r.closed_early++;
	c->state = failed > 0 ? S_FAILED : S_CLOSED;
}

/* A non-blocking connect to host:port from source address number gidx. */
static int open_socket(const char *host, int port, uint32_t gidx, int spread)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (spread && O.src_addrs > 0) {
		/* 127.1.0.1, 127.1.0.2, ...: each source address has its own
		 * ~28k ephemeral ports towards the one server port. */
		struct sockaddr_in src;

		memset(&src, 0, sizeof src);
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f010001u + gidx % (uint32_t)O.src_addrs);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
			close(fd);
			return -1;
		}
	}
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host,
		      &sa.sin_addr) != 1) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A non-blocking connect to --redis (TCP from source address gidx, or its unix socket). */
static int open_redis_socket(uint32_t gidx)
{
	struct sockaddr_un sun;
	int fd;

	if (O.redis.path[0] == '\0')
		return open_socket(O.redis.host, O.redis.port, gidx, 1);
	if (strlen(O.redis.path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, O.redis.path, strlen(O.redis.path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static int ep_add(struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	return epoll_ctl(B.ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void ep_mod(struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	epoll_ctl(B.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void sub_open(struct conn *c)
{
	const struct target *t = ctarget(c);
	int counts = !c->counted && !c->replay; /* in B.pending until it opens or fails */

	c->fd = ctr(c) == TR_REDIS ? open_redis_socket(c->gidx)
				   : open_socket(t->host, t->port, c->gidx, 1);
	c->rstate = ctr(c) == TR_REDIS ? R_RESP : R_HDRS;
	c->chunked = 0;
	c->conn_close = 0;
	if (c->fd < 0 || ep_add(c, EPOLLOUT | EPOLLIN) < 0) {
		sub_fail("socket/bind/connect: %s", strerror(errno));
		if (counts)
			B.pending++;
		c->state = S_CONNECTING;
		conn_close(c, 1);
		return;
	}
	if (counts)
		B.pending++;
	c->state = S_CONNECTING;
	c->t0 = now_ns();
}

/* Write a whole small request; a short write on a fresh socket is a failure. */
static int send_all(struct conn *c, const char *buf, size_t n)
{
	ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);

	return w == (ssize_t)n ? 0 : -1;
}

static int sub_request(struct conn *c)
{
	const struct target *t = ctarget(c);
	char path[4096], req[5000], extra[200] = "";
	int n;

	if (ctr(c) == TR_REDIS) {
		char name[96], ch[REDIS_KEY_MAX];
		const char *auth[] = {"AUTH", O.redis.password}, *sub[] = {"SUBSCRIBE", ch};
		char *cmd = NULL;
		int rc = 0;

		user_name(c->user, name, sizeof name);
		snprintf(ch, sizeof ch, "%s:%s", O.prefix, name);
		/* AUTH first when --redis has a password (its +OK is skipped);
		 * pub/sub ignores the database. */
		if (O.redis.password[0] != '\0') {
			n = redisFormatCommandArgv(&cmd, 2, auth, NULL);
			rc = n < 0 ? -1 : send_all(c, cmd, (size_t)n);
			redisFreeCommand(cmd);
			cmd = NULL;
		}
		n = rc < 0 ? -1 : redisFormatCommandArgv(&cmd, 2, sub, NULL);
		rc = n < 0 ? -1 : send_all(c, cmd, (size_t)n);
		redisFreeCommand(cmd);
		return rc;
	}
	if ((n = expand(t->path, c->user, path, sizeof path)) < 0)
		return -1;
	/* a browser's EventSource resumes with the header; a URL with {since} says it */
	if (c->replay && ctr(c) == TR_SSE && !strstr(t->path, "{since}"))
		snprintf(extra, sizeof extra, "Last-Event-ID: %s\r\n", O.since);
	/* --reconnect: from the last id this client got, as herald.js does (or
	 * --initial-id, where its user's history stood when it first connected) */
	if (!c->replay && (c->last_id[0] != '\0' || (c->counted && O.initial_id[0] != '\0'))) {
		const char *id = c->last_id[0] != '\0' ? c->last_id : O.initial_id;

		if (ctr(c) == TR_SSE)
			snprintf(extra, sizeof extra, "Last-Event-ID: %s\r\n", id);
		else if (snprintf(path + n, sizeof path - (size_t)n, "%ssince=%s",
				  strchr(path, '?') ? "&" : "?", id) >= (int)(sizeof path) - n)
			return -1;
	}
	if (ctr(c) == TR_WS)
		n = snprintf(req, sizeof req,
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
			     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n\r\n",
			     path, t->host, t->port);
	else if (ctr(c) == TR_SSE)
		n = snprintf(req, sizeof req,
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
			     "Cache-Control: no-cache\r\n%s\r\n",
			     path, t->host, t->port, extra);
	else
		n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
			     t->host, t->port);
	if (n < 0 || (size_t)n >= sizeof req)
		return -1;
	c->t0 = now_ns();
	return send_all(c, req, (size_t)n);
}

static void sub_ready(struct conn *c)
{
	c->state = S_READY;
	if (c->replay) {
		B.r.r_opened = 1;
		return;
	}
	if (O.reconnect)
		sub_back(c, now_ns());
	if (!c->counted) {
		c->counted = 1;
		B.pending--;
		B.r.opened++;
		hist_add(&B.r.connect, now_ns() - c->t0);
	}
}

/* --- received messages --------------------------------------------------------------- */

static int find_u64(const char *p, size_t n, const char *key, uint64_t *v)
{
	const char *k = memmem(p, n, key, strlen(key));

	if (!k)
		return -1;
	k += strlen(key);
	while (k < p + n && *k == ' ')
		k++;
	return text_uint_prefix(k, (size_t)(p + n - k), UINT64_MAX, v) > 0 ? 0 : -1;
}

/* The end of the replay window: every backlog message arrived (or the run ended). */
static void replay_window_end(uint64_t now)
{
	if (W->w1 != 0)
		return;
	W->w1 = now;
	{
		int64_t st = steal_now_ms();

		B.r.r_steal_ms = st >= 0 && B.rc_steal0 >= 0 ? st - B.rc_steal0 : -1;
	}
}

/*
 * A message on the resume connection: seq 0 is the cursor itself (must not
 * come back), 1..N the backlog, above N live messages published to R since the
 * connection opened.  Each seq once; one below the highest seen is out of order.
 */
static void replay_message(struct conn *c, uint64_t seq, uint64_t u, uint64_t now)
{
	int was;

	B.r.r_received++;
	if (u != c->user) {
		B.r.r_wrong_user++;
		return;
	}
	if (B.r.r_first_ns < 0)
		B.r.r_first_ns = (int64_t)(now - B.rc_t0);
	was = bits_set(&B.rc_seen, seq);
	if (was < 0) {
		B.r.r_unparsed++;
		return;
	}
	if (seq == 0 || was) {
		B.r.r_dup++;
		return;
	}
	B.r.r_unique++;
	if (seq < c->max_seq)
		B.r.r_ooo++;
	else
		c->max_seq = seq;
	if (seq > (uint64_t)O.replay) {
		B.r.r_live_received++;
	} else if (++B.r.r_backlog == (uint64_t)O.replay) {
		B.r.r_done_ns = (int64_t)(now - B.rc_t0);
		replay_window_end(now);
	}
}

/* --reconnect: copy the id of an envelope ({"id":"ID",...}) as c's cursor. */
static void envelope_id(struct conn *c, const char *p, size_t n)
{
	const char *e;

	if (n < 8 || memcmp(p, "{\"id\":\"", 7) != 0)
		return;
	e = memchr(p + 7, '"', n - 7);
	if (e != NULL && (size_t)(e - p - 7) < sizeof c->last_id) {
		memcpy(c->last_id, p + 7, (size_t)(e - p - 7));
		c->last_id[e - p - 7] = '\0';
	}
}

/*
 * The cursor Herald sends first on a connection made without one
 * ({"type":"cursor","cursor":"ID"}, SSE `event: cursor` with `id: ID`):
 * where the user's history ended when it connected.  With --reconnect a
 * client that has no id yet keeps it, so a reconnect before its first
 * message resumes from there instead of starting live.
 */
static void cursor_msg(struct conn *c, const char *id, size_t n)
{
	if (!O.reconnect || c->replay || c->last_id[0] != '\0' || n == 0 ||
	    n >= sizeof c->last_id || memchr(id, '"', n) != NULL)
		return;
	memcpy(c->last_id, id, n);
	c->last_id[n] = '\0';
}

/* --reconnect: message seq of c's user, counted over all of c's connections. */
static void reconnect_message(struct conn *c, uint64_t seq, uint64_t lat, uint64_t now)
{
	int was = bits_set(&c->seen, seq);

	if (was > 0) {
		B.r.dup++;
	} else {
		if (was == 0)
			c->unique++;
		if (seq < c->max_seq)
			B.r.ooo++;
		else
			c->max_seq = seq;
	}
	if (lat > (uint64_t)(O.late * 1e6)) {
		B.r.late++;
		ok_note(now);
	}
}

/*
 * A message (a WS text frame, an SSE event's data, a poll's envelope).
 * Frames without a payload seq are not messages: the server's heartbeats
 * ({"type":"heartbeat"...}) and reset signal ({"reset":true}) are counted
 * apart, its cursor ({"type":"cursor"...}) is kept (cursor_msg), anything
 * else counts as unparsed.
 */
static void on_message(struct conn *c, const char *p, size_t n)
{
	static const char cur[] = "{\"type\":\"cursor\",\"cursor\":\"";
	uint64_t seq, t, u, now = now_ns();

	if (n >= 19 && memcmp(p, "{\"type\":\"heartbeat\"", 19) == 0) {
		B.r.heartbeats++;
		return;
	}
	if (n >= sizeof cur - 1 && memcmp(p, cur, sizeof cur - 1) == 0) {
		const char *id = p + sizeof cur - 1, *e = memchr(id, '"', n - (sizeof cur - 1));

		if (e != NULL)
			cursor_msg(c, id, (size_t)(e - id));
		return;
	}
	if (n >= 9 && memcmp(p, "{\"reset\":", 9) == 0) {
		B.r.resets++;
		return;
	}
	if (O.reconnect && !c->replay)
		envelope_id(c, p, n);
	if (find_u64(p, n, "\"seq\":", &seq) < 0 || find_u64(p, n, "\"t\":", &t) < 0 ||
	    find_u64(p, n, "\"u\":", &u) < 0) {
		if (c->replay)
			B.r.r_unparsed++;
		else
			B.r.unparsed++;
		return;
	}
	if (c->replay) {
		replay_message(c, seq, u, now);
		return;
	}
	B.r.received++;
	if (u != c->user) {
		B.r.wrong_user++;
		return;
	}
	hist_add(&B.r.lat, now > t ? now - t : 0);
	if (W != NULL && W->w0 != 0 && now >= W->w0 && (W->w1 == 0 || now <= W->w1))
		hist_add(&B.r.lat_rw, now > t ? now - t : 0);
	if (B.samples)
		fprintf(B.samples, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", t, now, u, seq);
	if (O.reconnect) {
		reconnect_message(c, seq, now > t ? now - t : 0, now);
		return;
	}
	if (seq > c->max_seq) {
		uint64_t shift = seq - c->max_seq;
		c->window = shift >= 64 ? 1 : (c->window << shift) | 1;
		c->max_seq = seq;
		c->unique++;
	} else {
		uint64_t d = c->max_seq - seq;
		if (d < 64 && (c->window >> d & 1)) {
			B.r.dup++;
		} else {
			if (d < 64)
				c->window |= (uint64_t)1 << d;
			B.r.ooo++;
			c->unique++;
		}
	}
}

/* --- input buffers and HTTP ---------------------------------------------------------- */

static int in_append(struct conn *c, const char *p, size_t n)
{
	if (c->len + n > IN_MAX)
		return -1;
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : 1024;
		char *q;

		while (cap < c->len + n)
			cap *= 2;
		q = realloc(c->in, cap);
		if (!q)
			return -1;
		c->in = q;
		c->cap = (uint32_t)cap;
	}
	memcpy(c->in + c->len, p, n);
	c->len += (uint32_t)n;
	return 0;
}

static void in_consume(struct conn *c, size_t n)
{
	if (n >= c->len) {
		c->len = 0;
		c->dlen = 0;
		return;
	}
	memmove(c->in, c->in + n, c->len - n);
	c->len -= (uint32_t)n;
	c->dlen = c->dlen > n ? c->dlen - (uint32_t)n : 0;
}

/* Parse the status line and headers ending at hdr_end.  Returns 0 or -1. */
static int parse_headers(struct conn *c, size_t hdr_end)
{
	const char *p = c->in, *end = c->in + hdr_end;

	if (hdr_end < 12 || strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	c->status = atoi(p + 9);
	c->clen = -1;
	c->chunked = 0;
	c->conn_close = 0;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t ll;

		if (!eol)
			break;
		ll = (size_t)(eol - p);
		if (ll > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
			c->clen = strtoll(p + 15, NULL, 10);
		else if (ll > 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0 &&
			 memmem(p, ll, "chunked", 7))
			c->chunked = 1;
		else if (ll > 11 && strncasecmp(p, "Connection:", 11) == 0 &&
			 (memmem(p, ll, "close", 5) || memmem(p, ll, "Close", 5)))
			c->conn_close = 1;
		p = eol + 1;
	}
	if (c->chunked) {
		c->chunk_left = CH_SIZE;
		c->clen = -1;
	}
	return 0;
}

/*
 * Decode chunked framing in place: the raw bytes [dlen, len) become data
 * bytes appended at dlen.  Returns 1 after the last chunk, 0 when more is
 * needed, -1 on bad framing.
 */
static int dechunk(struct conn *c)
{
	size_t r = c->dlen;
	int done = 0;

	while (r < c->len && !done) {
		if (c->chunk_left > 0) {
			size_t n = c->len - r < (size_t)c->chunk_left ? c->len - r
								     : (size_t)c->chunk_left;
			memmove(c->in + c->dlen, c->in + r, n);
			c->dlen += (uint32_t)n;
			r += n;
			c->chunk_left -= (int32_t)n;
			if (c->chunk_left == 0)
				c->chunk_left = CH_CRLF;
			continue;
		}
		const char *nl = memchr(c->in + r, '\n', c->len - r);
		if (!nl)
			break;
		size_t ll = (size_t)(nl - (c->in + r)) + 1;
		if (c->chunk_left == CH_CRLF) {
			c->chunk_left = CH_SIZE;
		} else if (c->chunk_left == CH_SIZE) {
			char *e;
			unsigned long sz = strtoul(c->in + r, &e, 16);
			if (e == c->in + r || sz > IN_MAX)
				return -1;
			c->chunk_left = sz ? (int32_t)sz : CH_END;
		} else if (c->chunk_left == CH_END) {
			/* trailers end at an empty line */
			if (ll <= 2)
				done = 1;
		}
		r += ll;
	}
	memmove(c->in + c->dlen, c->in + r, c->len - r);
	c->len = c->dlen + (uint32_t)(c->len - r);
	return done;
}

/* SSE: an event's data is one message (the envelope). */
static void sse_event_cb(void *ud, const char *type, const char *data, size_t len,
			 const char *last_id)
{
	struct conn *c = ud;

	if (strcmp(type, "heartbeat") == 0) {
		B.r.heartbeats++;
		return;
	}
	if (strcmp(type, "reset") == 0) {
		B.r.resets++;
		return;
	}
	if (strcmp(type, "cursor") == 0) {
		cursor_msg(c, last_id, strlen(last_id));
		return;
	}
	/* the stream's last id, as the browser keeps it for Last-Event-ID */
	if (O.reconnect && !c->replay && last_id[0] != '\0')
		snprintf(c->last_id, sizeof c->last_id, "%s", last_id);
	on_message(c, data, len);
}

/* SSE: the decoded bytes [0, dlen) through the connection's sse_parser.  0 or -1. */
static int sse_feed(struct conn *c)
{
	int rc;

	if (c->dlen == 0)
		return 0;
	if (c->sse == NULL) {
		c->sse = malloc(sizeof *c->sse);
		if (c->sse == NULL)
			return -1;
		sse_parser_init(c->sse, sse_event_cb, c);
		c->sse->max_line = IN_MAX;
	}
	rc = sse_parser_feed(c->sse, c->in, c->dlen);
	in_consume(c, c->dlen);
	return rc == 0 ? 0 : -1;
}

static void send_ws_frame(struct conn *c, int opcode, const void *p, size_t n)
{
	static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	uint8_t f[WSF_HDR_MAX + WSF_CTRL_MAX];
	long w = wsf_write_frame(f, sizeof f, 1, opcode, mask, p, n > WSF_CTRL_MAX ? WSF_CTRL_MAX : n);

	if (w > 0)
		send(c->fd, f, (size_t)w, MSG_NOSIGNAL);
}

/* Server frames (each message in one frame).  Returns 0, or -1 when the connection ends. */
static int ws_frames(struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	if (c->in == NULL)
		return 0;
	for (;;) {
		struct wsf_frame f;
		long used = wsf_frame_read((uint8_t *)c->in + off, c->len - off, IN_MAX, &f);

		if (used <= 0) {
			rc = used < 0 ? -1 : 0;
			break;
		}
		off += (size_t)used;
		if (f.opcode == WSF_OP_TEXT || f.opcode == WSF_OP_BINARY || f.opcode == WSF_OP_CONT) {
			on_message(c, (const char *)f.payload, f.len);
		} else if (f.opcode == WSF_OP_PING) {
			send_ws_frame(c, WSF_OP_PONG, f.payload, f.len);
		} else if (f.opcode == WSF_OP_CLOSE) {
			int code = wsf_close_code(f.payload, f.len);

			record_close((uint64_t)code);
			c->close_code = (uint16_t)code;
			if (c->replay)
				B.r.r_close = (uint64_t)code;
			send_ws_frame(c, WSF_OP_CLOSE, f.payload, f.len >= 2 ? 2 : 0);
			rc = -1;
			break;
		}
	}
	in_consume(c, off);
	return rc;
}

/*
 * Hand each complete reply in the len bytes at p (the connection's input) to
 * fn, through the connection's hiredis reader (partial replies stay in it).
 * -1 when the input is not RESP or fn returned -1.
 */
typedef int (*reply_fn)(struct conn *c, const redisReply *r);

static int resp_feed(struct conn *c, const char *p, size_t len, reply_fn fn)
{
	void *r;
	int rc = 0;

	if (c->rr == NULL && (c->rr = redisReaderCreate()) == NULL)
		return -1;
	if (redisReaderFeed(c->rr, p, len) != REDIS_OK)
		return -1;
	while (rc == 0) {
		if (redisReaderGetReply(c->rr, &r) != REDIS_OK)
			return -1;
		if (r == NULL)
			break;
		rc = fn(c, r);
		freeReplyObject(r);
	}
	return rc;
}

/* The floor's subscriber connections: AUTH's +OK, subscribe confirmations and messages. */
static int redis_sub_reply(struct conn *c, const redisReply *r)
{
	const redisReply *kind;

	if (r->type == REDIS_REPLY_ERROR) {
		sub_fail("redis: %.120s", r->str);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    (kind = r->element[0])->type != REDIS_REPLY_STRING)
		return 0;
	if (strcmp(kind->str, "subscribe") == 0)
		sub_ready(c);
	else if (strcmp(kind->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING)
		on_message(c, r->element[2]->str, r->element[2]->len);
	return 0;
}

static void poll_next(struct conn *c);
static int polling(void);
static void hpub_done(struct conn *c);
static void pub_ack(uint32_t u, uint32_t seq);
static void pub_refused(const char *why);

/*
 * --reconnect: a poll's answer is read, {"notifications":[ENVELOPE,...],
 * "cursor":"ID","truncated":...}: each envelope is a message, and the
 * cursor is where the next poll continues.
 */
static void poll_parse(struct conn *c, const char *p, size_t n)
{
	const char *end = p + n, *k, *arr = memmem(p, n, "\"notifications\":[", 17);

	if (arr != NULL) {
		p = arr + 17;
		while ((k = memmem(p, (size_t)(end - p), "{\"id\":", 6)) != NULL) {
			const char *next = memmem(k + 6, (size_t)(end - k - 6), "{\"id\":", 6);

			p = next != NULL ? next : end;
			on_message(c, k, (size_t)(p - k));
		}
		p = arr;
	}
	if (memmem(p, (size_t)(end - p), "\"truncated\":true", 16) != NULL)
		B.r.resets++;
	k = memmem(p, (size_t)(end - p), "\"cursor\":\"", 10);
	if (k != NULL) {
		const char *e = memchr(k + 10, '"', (size_t)(end - k - 10));

		if (e != NULL && (size_t)(e - k - 10) < sizeof c->last_id) {
			memcpy(c->last_id, k + 10, (size_t)(e - k - 10));
			c->last_id[e - k - 10] = '\0';
		}
	}
}

/* --reconnect: a poll's body, kept until it is whole, then read.  1 when
 * it was (and is consumed), 0 when more is needed, -1 on bad framing. */
static int poll_body(struct conn *c)
{
	size_t bl;

	if (c->chunked) {
		int d = dechunk(c);

		if (d <= 0)
			return d;
		bl = c->dlen;
	} else if (c->clen > 0) {
		if (c->len < (uint64_t)c->clen)
			return 0;
		bl = (size_t)c->clen;
		c->clen = 0;
	} else {
		bl = 0; /* 204, 304: no body */
	}
	if (c->status >= 200 && c->status < 300)
		poll_parse(c, c->in, bl);
	in_consume(c, bl);
	return 1;
}

/* A complete HTTP response on a poll subscriber or an HTTP publisher. */
static int response_done(struct conn *c)
{
	int ok = (c->status >= 200 && c->status < 300) || c->status == 304;
	uint64_t now = now_ns();

	c->rstate = R_HDRS;
	if (c->kind == K_PUB_HTTP) {
		if (!ok) {
			char why[40];

			snprintf(why, sizeof why, "HTTP status %d", c->status);
			pub_refused(why);
		} else if (c->busy) {
			pub_ack(c->user, c->pseq);
		}
		c->busy = 0;
		if (c->conn_close)
			return -1;
		hpub_done(c);
		return 0;
	}
	if (!ok) {
		sub_fail("poll: HTTP status %d", c->status);
		if (c->state == S_READY)
			B.r.poll_errors++;
		return -1;
	}
	if (c->state != S_READY) {
		sub_ready(c);
	} else {
		if (O.reconnect)
			sub_back(c, now);
		if (B.phase == P_RUN) {
			B.r.polls++;
			hist_add(&B.r.poll, now - c->t0);
		}
	}
	if (c->conn_close)
		return -1;
	if (polling() && O.poll_interval > 0)
		c->due = c->t0 + sec_ns(O.poll_interval); /* poll_due sends it */
	else if (polling())
		poll_next(c);
	return 0;
}

/* Parse what c->in holds.  Returns 0, or -1 when the connection must close. */
static int feed(struct conn *c)
{
	for (;;) {
		if (c->rstate == R_HDRS) {
			const char *e = memmem(c->in, c->len, "\r\n\r\n", 4);
			size_t hl;

			if (!e)
				return c->len > 65536 ? -1 : 0;
			hl = (size_t)(e - c->in) + 4;
			if (parse_headers(c, hl) < 0)
				return -1;
			in_consume(c, hl);
			c->dlen = 0;
			if (c->kind == K_SUB && ctr(c) == TR_WS) {
				if (c->status != 101) {
					sub_fail("handshake: HTTP status %d", c->status);
					record_close((uint64_t)c->status);
					return -1;
				}
				sub_ready(c);
				c->rstate = R_WS;
			} else if (c->kind == K_SUB && ctr(c) == TR_SSE) {
				if (c->status != 200) {
					sub_fail("SSE: HTTP status %d", c->status);
					record_close((uint64_t)c->status);
					return -1;
				}
				sub_ready(c);
				c->rstate = R_SSE;
			} else {
				c->rstate = R_BODY;
			}
		}
		switch (c->rstate) {
		case R_WS:
			return ws_frames(c);
		case R_SSE:
			if (c->chunked) {
				if (dechunk(c) != 0)
					return -1;
			} else {
				c->dlen = c->len;
			}
			return sse_feed(c);
		case R_BODY:
			if (c->kind == K_SUB && O.reconnect) {
				int d = poll_body(c);

				if (d <= 0)
					return d;
			} else if (c->chunked) {
				int d = dechunk(c);
				if (d < 0)
					return -1;
				in_consume(c, c->dlen);
				if (d == 0)
					return 0;
			} else if (c->clen > 0) {
				size_t n = (size_t)c->clen < c->len ? (size_t)c->clen : c->len;
				in_consume(c, n);
				c->clen -= (int64_t)n;
				if (c->clen > 0)
					return 0;
			}
			if (response_done(c) < 0)
				return -1;
			if (c->len == 0)
				return 0;
			break;
		default:
			return 0;
		}
	}
}

/* --- publishers ----------------------------------------------------------------------- */

/* Redis (or the HTTP publisher) acknowledged user u's message seq. */
static void pub_ack(uint32_t u, uint32_t seq)
{
	struct user *us = uslot(u);

	B.r.acked++;
	if (O.reconnect && bits_set(&us->acked, seq) == 0)
		us->nacked++;
	if (B.pub_down) {
		B.pub_down = 0;
		ok_note(now_ns());
	}
}

/* A publish refused (an error reply, an HTTP error status): not acknowledged. */
static void pub_refused(const char *why)
{
	B.r.pub_errors++;
	if (!B.r.pub_error[0])
		snprintf(B.r.pub_error, sizeof B.r.pub_error, "%.150s", why);
	if (O.reconnect && B.phase != P_DONE) {
		char what[120];

		snprintf(what, sizeof what, "publish refused: %.90s", why);
		fail_note(now_ns(), what);
		B.pub_down = 1;
	}
}

/* Remember a publish written to Redis until its reply comes.  0 or -1. */
static int fifo_push(uint32_t u, uint32_t seq)
{
	if (B.fifo_len == B.fifo_cap) {
		size_t cap = B.fifo_cap ? B.fifo_cap * 2 : 1024;
		struct pubrec *q = malloc(cap * sizeof *q);

		if (q == NULL)
			return -1;
		for (size_t i = 0; i < B.fifo_len; i++)
			q[i] = B.fifo[(B.fifo_head + i) % B.fifo_cap];
		free(B.fifo);
		B.fifo = q;
		B.fifo_cap = cap;
		B.fifo_head = 0;
	}
	B.fifo[(B.fifo_head + B.fifo_len) % B.fifo_cap] = (struct pubrec){.user = u, .seq = seq};
	B.fifo_len++;
	return 0;
}

/*
 * The Redis publisher's connection is gone: what it wrote without a reply
 * is unacknowledged (executed or not, nobody knows); with --reconnect it
 * connects again after a backoff (100 ms doubling up to 2 s, jittered: a
 * job's retry, not a browser's).
 */
static void pub_lost(const char *why)
{
	uint64_t now = now_ns();

	B.r.unacked += B.fifo_len;
	B.fifo_len = B.fifo_head = 0;
	B.inflight = 0;
	B.rout_len = 0;
	if (!O.reconnect || B.phase == P_DONE)
		return;
	fail_note(now, why);
	B.pub_down = 1;
	B.pub_retry_at = now + backoff_ns(100, 2000, B.pub_attempt) + 1;
	if (B.pub_attempt < 20)
		B.pub_attempt++;
}

/* The payload of user u's message seq, padded to about pad bytes. */
static int make_payload_pad(uint32_t u, uint32_t seq, int pad, char *out, size_t len)
{
	int n = snprintf(out, len, "{\"b\":1,\"u\":%" PRIu32 ",\"seq\":%" PRIu32 ",\"t\":%" PRIu64,
			 u, seq, now_ns());

	if (pad > n + 9 && (size_t)pad < len - 2) {
		n += snprintf(out + n, len - (size_t)n, ",\"p\":\"");
		while (n < pad - 2)
			out[n++] = 'x';
		out[n++] = '"';
	}
	out[n++] = '}';
	out[n] = '\0';
	return n;
}

static int make_payload(uint32_t u, uint32_t seq, char *out, size_t len)
{
	return make_payload_pad(u, seq, O.payload_bytes, out, len);
}

/*
 * EVALSHA publish 1 P:U:history PAYLOAD [MAXLEN] for user u's message seq, in
 * RESP: *cmd is the command (free with redisFreeCommand).  Returns its length or -1.
 */
static int redis_publish_cmd(uint32_t u, uint32_t seq, int pad, char **cmd)
{
	char name[96], key[REDIS_KEY_MAX], payload[8192], maxlen[24];
	const char *kv[3] = {key, payload, maxlen}, *argv[6];
	size_t kvlen[3], argvlen[6];
	int n, nargs = 1;

	*cmd = NULL;
	user_name(u, name, sizeof name);
	/* Not redis_history_key: a prefix Herald refuses must reach the script,
	 * whose refusal bench.sh checks. */
	kvlen[0] = (size_t)snprintf(key, sizeof key, "%s:%s:history", O.prefix, name);
	kvlen[1] = (size_t)make_payload_pad(u, seq, pad, payload, sizeof payload);
	if (O.history_max > 0) {
		kvlen[2] = (size_t)snprintf(maxlen, sizeof maxlen, "%ld", O.history_max);
		nargs = 2;
	}
	n = redis_evalsha_argv(&redis_script_publish, 1, nargs, kv, kvlen, argv, argvlen);
	return n < 0 ? -1 : redisFormatCommandArgv(cmd, n, argv, argvlen);
}

static uint32_t next_user(void)
{
	uint32_t u = B.active[B.rr];

	B.rr = (B.rr + 1) % B.nactive;
	return u;
}

static int rout_add(const char *p, size_t n)
{
	if (B.rout_len + n > B.rout_cap) {
		size_t cap = B.rout_cap ? B.rout_cap * 2 : 65536;
		char *q;

		while (cap < B.rout_len + n)
			cap *= 2;
		q = realloc(B.rout, cap);
		if (!q)
			return -1;
		B.rout = q;
		B.rout_cap = cap;
	}
	memcpy(B.rout + B.rout_len, p, n);
	B.rout_len += n;
	return 0;
}

static void redis_flush(void)
{
	while (B.rout_len > 0) {
		ssize_t w = send(B.redis.fd, B.rout, B.rout_len, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN)
				ep_mod(&B.redis, EPOLLIN | EPOLLOUT);
			else if (!B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "send to redis: %s",
					 strerror(errno));
			return;
		}
		memmove(B.rout, B.rout + w, B.rout_len - (size_t)w);
		B.rout_len -= (size_t)w;
	}
	ep_mod(&B.redis, EPOLLIN);
}

static void redis_publish(uint32_t u)
{
	char *cmd;
	struct user *us = uslot(u);
	int n;

	n = redis_publish_cmd(u, us->sent + 1, O.payload_bytes, &cmd);
	if (n < 0 || fifo_push(u, us->sent + 1) < 0) {
		redisFreeCommand(cmd);
		B.r.pub_errors++;
		return;
	}
	if (rout_add(cmd, (size_t)n) < 0) {
		B.fifo_len--; /* never written: no reply will come */
		redisFreeCommand(cmd);
		B.r.pub_errors++;
		return;
	}
	redisFreeCommand(cmd);
	if (O.wait_replicas > 0) {
		/* acknowledged once that many replicas have it too */
		n = redisFormatCommand(&cmd, "WAIT %d %ld", O.wait_replicas, O.wait_timeout);
		if (n > 0)
			rout_add(cmd, (size_t)n);
		redisFreeCommand(cmd);
	}
	us->sent++;
	B.r.sent++;
	B.inflight++;
}

/*
 * The publisher's connection: one reply per EVALSHA in flight (the id, or
 * an error), and WAIT's (the replicas that have it) after each with
 * --wait-replicas.  A READONLY error (a master demoted by a failover) or a
 * WAIT short of replicas closes the connection, so the next one asks the
 * sentinels again.
 */
static int redis_pub_reply(struct conn *c, const redisReply *r)
{
	struct pubrec *p = B.fifo_len > 0 ? &B.fifo[B.fifo_head] : NULL;
	int ok, again = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0;

	(void)c;
	if (p != NULL && O.wait_replicas > 0 && p->stage == 0) {
		p->stage = r->type == REDIS_REPLY_ERROR ? -1 : 1;
		if (p->stage < 0)
			pub_refused(r->str);
		return again ? -1 : 0;
	}
	if (p != NULL && O.wait_replicas > 0) {
		ok = p->stage > 0 && r->type == REDIS_REPLY_INTEGER && r->integer >= O.wait_replicas;
		if (p->stage > 0 && !ok) {
			/* stored, but on fewer replicas than asked: a master cut off
			 * from its replicas (a failover under way).  Connect again:
			 * the sentinels may name another master by now. */
			B.r.unacked++;
			again = 1;
			if (!B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error,
					 "WAIT: fewer than %d replicas", O.wait_replicas);
			if (O.reconnect)
				fail_note(now_ns(), "redis publisher: WAIT short of replicas");
		}
	} else {
		ok = r->type != REDIS_REPLY_ERROR;
		if (!ok)
			pub_refused(r->str);
	}
	if (p != NULL) {
		if (ok)
			pub_ack(p->user, p->seq);
		B.fifo_head = (B.fifo_head + 1) % B.fifo_cap;
		B.fifo_len--;
	}
	if (B.inflight)
		B.inflight--;
	return again ? -1 : 0;
}

static int hpub_open(struct conn *c)
{
	c->fd = open_socket(O.pub.host, O.pub.port, 0, 0);
	c->kind = K_PUB_HTTP;
	c->rstate = R_HDRS;
	c->busy = 0;
	if (c->fd < 0 || ep_add(c, EPOLLIN | EPOLLOUT) < 0) {
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		c->state = S_FAILED;
		return -1;
	}
	c->state = S_CONNECTING;
	return 0;
}

static void hpub_send(struct conn *c)
{
	char path[4096], payload[8192], req[14000];
	uint32_t u = next_user();
	struct user *us = uslot(u);
	int pl, n;

	if (expand(O.pub.path, u, path, sizeof path) < 0) {
		B.r.pub_errors++;
		return;
	}
	pl = make_payload(u, us->sent + 1, payload, sizeof payload);
	n = snprintf(req, sizeof req,
		     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
		     "%sContent-Length: %d\r\n\r\n%s",
		     path, O.pub.host, O.pub.port, O.pub_auth, pl, payload);
	if (send_all(c, req, (size_t)n) < 0) {
		B.r.pub_errors++;
		return;
	}
	us->sent++;
	B.r.sent++;
	c->busy = 1;
	c->user = u;
	c->pseq = us->sent;
}

/* An HTTP publisher is free: send the next due message. */
static void hpub_done(struct conn *c)
{
	if (B.backlog > 0 && B.phase == P_RUN) {
		B.backlog--;
		hpub_send(c);
	}
}

static void publish_tick(uint64_t now)
{
	uint64_t due, owed;

	if (O.rate <= 0 || B.nactive == 0)
		return;
	due = (uint64_t)((double)(now - B.t_phase) / 1e9 * O.rate / O.procs);
	owed = due > B.r.sent + B.r.pub_skipped + B.backlog ?
		       due - B.r.sent - B.r.pub_skipped - B.backlog : 0;
	if (O.have_pub) {
		B.backlog += owed;
		if (B.backlog > BACKLOG_MAX) {
			B.r.pub_skipped += B.backlog - BACKLOG_MAX;
			B.backlog = BACKLOG_MAX;
		}
		for (int i = 0; i < O.pub_conns && B.backlog > 0; i++) {
			struct conn *c = &B.hpub[i];
			if (c->state == S_CLOSED || c->state == S_FAILED)
				hpub_open(c);
			else if (c->state == S_READY && !c->busy)
				hpub_done(c);
		}
		return;
	}
	if (B.redis.fd < 0) {
		if (O.reconnect) /* due while the publisher has no Redis */
			B.r.pub_skipped += owed;
		return;
	}
	while (owed > 0) {
		if (B.inflight >= REDIS_INFLIGHT_MAX) {
			B.r.pub_skipped += owed;
			break;
		}
		redis_publish(next_user());
		owed--;
	}
	redis_flush();
}

/*
 * Arm the timer for the next due publish.  The loop's epoll timeout has
 * millisecond granularity and sleeps at least that long, so publishing from it
 * alone sent the messages of a 1,000/s run in pairs every ~2 ms (and bursts after
 * a stall), and the second of a pair queued behind the first all the way to
 * the receiver: measured as latency of the gateway.  Each message is sent at
 * its own time instead.
 */
static void publish_arm(void)
{
	struct itimerspec its;
	uint64_t k, t;

	if (O.rate <= 0 || B.timer.fd < 0 || B.phase != P_RUN)
		return;
	k = B.r.sent + B.r.pub_skipped + B.backlog + 1;
	t = B.t_phase + (uint64_t)((double)k * 1e9 * O.procs / O.rate);
	if (t == B.timer_due)
		return;
	B.timer_due = t;
	memset(&its, 0, sizeof its);
	its.it_value.tv_sec = (time_t)(t / 1000000000u);
	its.it_value.tv_nsec = (long)(t % 1000000000u);
	timerfd_settime(B.timer.fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* --- polling ---------------------------------------------------------------------------- */

/* Pollers poll during the run, and with --reconnect on through the drain
 * (a client back from a failure catches up there). */
static int polling(void)
{
	return B.phase == P_RUN || (O.reconnect && B.phase == P_DRAIN);
}

static void poll_next(struct conn *c)
{
	if (c->fd < 0 || !polling())
		return;
	c->due = UINT64_MAX; /* in flight */
	if (sub_request(c) < 0)
		conn_close(c, 1);
}

/*
 * --poll-interval: every ready poller whose time has come polls once.  The
 * first polls are spread evenly over one interval (connection i at i/N of
 * it), as clients that loaded their pages at random times would; then each
 * polls one interval after its last poll was sent.  A scan per loop turn:
 * cheap next to the requests at the sizes this runs (10,000 pollers).
 */
static void poll_due(uint64_t now)
{
	static uint64_t last;

	if (now - last < 2000000) /* every 2 ms at most: the loop turns each 1 ms */
		return;
	last = now;
	for (long i = 0; i < B.nconns; i++) {
		struct conn *c = &B.conns[i];

		if (c->kind == K_SUB && c->state == S_READY && c->due <= now)
			poll_next(c);
	}
}

/* --- the loop --------------------------------------------------------------------------- */

static void on_event(struct conn *c, uint32_t ev)
{
	if (c->kind == K_TIMER) {
		uint64_t expirations;

		if (read(c->fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
			die("timerfd: %s", strerror(errno));
		if (B.phase == P_RUN) {
			B.timer_due = 0; /* it fired: arm it again even for the same time */
			publish_tick(now_ns());
			publish_arm();
		}
		return;
	}
	if (c->kind == K_CTRL) {
		char b;
		if (read(c->fd, &b, 1) == 1 && b == 'G' && B.phase == P_WAIT_GO) {
			B.phase = P_SETTLE;
			B.t_phase = now_ns();
		} else if (B.phase != P_DONE) {
			/* the parent went away */
			B.phase = P_DONE;
		}
		return;
	}
	if (c->fd < 0)
		return;
	if (c->state == S_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof err;

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			if (c->kind == K_PUB_HTTP && !B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "connect: %s",
					 strerror(err));
			if (c->kind == K_SUB)
				sub_fail("connect: %s", strerror(err));
			conn_close(c, 1);
			return;
		}
		if (c->kind == K_PUB_HTTP) {
			c->state = S_READY;
			ep_mod(c, EPOLLIN);
			hpub_done(c);
			return;
		}
		if (c->counted && O.tr == TR_POLL) {
			/* a poll connection reopened after Connection: close */
			c->state = S_READY;
			ep_mod(c, EPOLLIN);
			poll_next(c);
			return;
		}
		c->state = S_HANDSHAKE;
		ep_mod(c, EPOLLIN);
		if (sub_request(c) < 0)
			conn_close(c, 1);
		return;
	}
	if (c->kind == K_PUB_REDIS && (ev & EPOLLOUT))
		redis_flush();
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = recv(c->fd, B.scratch, sizeof B.scratch, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->kind == K_PUB_REDIS) {
			if (!B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "redis closed");
			conn_close(c, 1);
			return;
		}
		if (c->kind == K_PUB_HTTP) {
			conn_close(c, 0);
			return;
		}
		if (c->kind == K_SUB && ctr(c) == TR_POLL && c->state == S_READY &&
		    B.phase != P_DONE) {
			/* keepalive_requests reached: reconnect and go on */
			close(c->fd);
			c->fd = -1;
			conn_free_in(c);
			B.r.reconnects++;
			sub_open(c);
			return;
		}
		if (ctr(c) == TR_WS && c->state == S_READY)
			record_close(1006);
		conn_close(c, 1);
		return;
	}
	if (c->replay && B.r.r_done_ns < 0)
		B.r.r_wire_bytes += (uint64_t)n;
	if (c->kind == K_PUB_REDIS || c->rstate == R_RESP) {
		int pub = c->kind == K_PUB_REDIS;

		if (resp_feed(c, B.scratch, (size_t)n, pub ? redis_pub_reply : redis_sub_reply) < 0) {
			if (pub && !B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "redis: not RESP");
			conn_close(c, 1);
		}
		return;
	}
	if (in_append(c, B.scratch, (size_t)n) < 0) {
		conn_close(c, 1);
		return;
	}
	if (feed(c) < 0) {
		if (c->kind == K_SUB && ctr(c) == TR_POLL && c->state == S_READY &&
		    B.phase != P_DONE && c->status < 400) {
			close(c->fd);
			c->fd = -1;
			conn_free_in(c);
			B.r.reconnects++;
			sub_open(c);
			return;
		}
		conn_close(c, 1);
		return;
	}
	if (c->len == 0)
		conn_free_in(c);
}

/* The users of this child with a ready connection: the ones published to. */
static void collect_active(void)
{
	uint32_t nu = B.u1 - B.u0;

	for (long i = 0; i < B.nconns; i++)
		if (B.conns[i].state == S_READY || (O.reconnect && B.conns[i].counted))
			B.users[B.conns[i].user - B.u0].nconn++;
	B.active = calloc(nu + 1, sizeof *B.active); /* + the replay user */
	if (!B.active)
		die("out of memory");
	for (uint32_t u = 0; u < nu; u++)
		if (B.users[u].nconn)
			B.active[B.nactive++] = B.u0 + u;
}

/*
 * A blocking connection to --redis (AUTH and SELECT done; the master the
 * sentinels name with --sentinels) with the publish script loaded, handed
 * over as a bare descriptor in blocking mode.
 */
static int redis_connect_fd(int timeout_ms, char *err, size_t errlen)
{
	redisContext *rc;

	if (redis_connect(&O.redis, timeout_ms, &rc, err, errlen) != 0)
		return -1;
	if (redis_script_load(rc, &redis_script_publish, err, errlen) != 0) {
		redisFree(rc);
		return -1;
	}
	return redisFreeKeepFd(rc);
}

static void child_setup(int idx)
{
	long U = O.users, N = O.connections;
	uint32_t u;

	B.u0 = (uint32_t)(U * idx / O.procs);
	B.u1 = (uint32_t)(U * (idx + 1) / O.procs);
	B.users = calloc(B.u1 - B.u0 + 1, sizeof *B.users);
	/* connection i is user i % U: this child owns users [u0, u1) */
	for (long k = 0; k * U < N; k++)
		for (u = B.u0; u < B.u1; u++)
			if (k * U + u < N)
				B.nconns++;
	B.conns = calloc((size_t)B.nconns + 1, sizeof *B.conns);
	if (!B.users || !B.conns)
		die("out of memory");
	long j = 0;
	for (long k = 0; k * U < N; k++)
		for (u = B.u0; u < B.u1; u++)
			if (k * U + u < N) {
				struct conn *c = &B.conns[j++];
				c->fd = -1;
				c->kind = K_SUB;
				c->gidx = (uint32_t)(k * U + u);
				c->user = u;
				c->window = 1;
			}
	B.r.planned = (uint64_t)B.nconns;
	B.r.steal_ms = -1;
	B.r.r_first_ns = B.r.r_done_ns = -1;
	B.r.r_steal_ms = -1;
	if (O.replay > 0 && idx == 0) {
		/* the replay user R: its backlog (seq 1..N) is published already */
		B.rc_owner = 1;
		B.users[B.u1 - B.u0].sent = (uint32_t)O.replay;
		B.rc.fd = -1;
		B.rc.kind = K_SUB;
		B.rc.replay = 1;
		B.rc.user = (uint32_t)O.users;
		B.rc.gidx = (uint32_t)O.connections;
	}
	if (O.samples) {
		char path[4096];

		if (O.procs == 1)
			snprintf(path, sizeof path, "%s", O.samples);
		else
			snprintf(path, sizeof path, "%s.%d", O.samples, idx);
		B.samples = fopen(path, "w");
		if (!B.samples)
			die("--samples %s: %s", path, strerror(errno));
	}
	B.redis.fd = -1;
	B.redis.kind = K_PUB_REDIS;
	B.next_retry = UINT64_MAX;
	rng_state ^= now_ns() ^ ((uint64_t)getpid() << 32);
}

/* The Redis publisher's connection, non-blocking in the loop.  0 or -1. */
static int pub_connect(int timeout_ms, char *err, size_t errlen)
{
	B.redis.fd = redis_connect_fd(timeout_ms, err, errlen);
	if (B.redis.fd < 0)
		return -1;
	fcntl(B.redis.fd, F_SETFL, fcntl(B.redis.fd, F_GETFL) | O_NONBLOCK);
	B.redis.state = S_READY;
	if (ep_add(&B.redis, EPOLLIN) < 0) {
		close(B.redis.fd);
		B.redis.fd = -1;
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void child_publishers(void)
{
	if (O.rate <= 0)
		return;
	if (O.have_pub) {
		B.hpub = calloc((size_t)O.pub_conns, sizeof *B.hpub);
		if (!B.hpub)
			die("out of memory");
		for (int i = 0; i < O.pub_conns; i++) {
			B.hpub[i].fd = -1;
			if (hpub_open(&B.hpub[i]) < 0 && !B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "connect %s:%d: %s",
					 O.pub.host, O.pub.port, strerror(errno));
		}
		return;
	}
	if (pub_connect(5000, B.r.pub_error, sizeof B.r.pub_error) < 0 && O.reconnect)
		B.pub_retry_at = now_ns(); /* and again, in the loop */
}

/* --reconnect: the publisher's backoff is over: connect again (blocking,
 * at most 1 s: a refused connect returns at once). */
static void pub_reconnect(void)
{
	char err[160];

	B.pub_retry_at = 0;
	if (pub_connect(1000, err, sizeof err) < 0) {
		B.pub_retry_at = now_ns() + backoff_ns(100, 2000, B.pub_attempt) + 1;
		if (B.pub_attempt < 20)
			B.pub_attempt++;
		return;
	}
	B.r.pub_reconnects++;
	B.pub_attempt = 0;
}

/* --reconnect: connect the subscribers whose backoff is over. */
static void retry_due(uint64_t now)
{
	if (B.nretry == 0 || now < B.next_retry)
		return;
	B.next_retry = UINT64_MAX;
	for (long i = 0; i < B.nconns; i++) {
		struct conn *c = &B.conns[i];

		if (c->retry_at == 0)
			continue;
		if (c->retry_at <= now) {
			c->retry_at = 0;
			B.nretry--;
			c->nrecon++;
			B.r.sub_reconnects++;
			sub_open(c); /* a failure schedules the next try (sub_lost) */
		} else if (c->retry_at < B.next_retry) {
			B.next_retry = c->retry_at;
		}
	}
}

static uint64_t sec_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* --reconnect: user u's acknowledged messages that c did not get. */
static uint64_t missing(const struct conn *c, const struct user *us)
{
	uint64_t n = 0;

	for (uint64_t s = 1; s <= us->sent; s++)
		if (bits_get(&us->acked, s) && !bits_get(&c->seen, s))
			n++;
	return n;
}

/* --reconnect: every client is back and has every acknowledged message. */
static int drained_reconnect(void)
{
	static uint64_t last;
	uint64_t now = now_ns();

	if (B.nretry > 0)
		return 0;
	for (long i = 0; i < B.nconns; i++) {
		const struct conn *c = &B.conns[i];

		if (c->counted && (c->down || c->state != S_READY ||
				   c->unique < B.users[c->user - B.u0].nacked))
			return 0;
	}
	/* the counts agree (messages not acknowledged may stand in for missing ones): check */
	if (now - last < 20000000)
		return 0;
	last = now;
	for (long i = 0; i < B.nconns; i++)
		if (B.conns[i].counted && missing(&B.conns[i], &B.users[B.conns[i].user - B.u0]))
			return 0;
	return 1;
}

/* All expected messages are in: the drain can end early. */
static int drained(void)
{
	uint64_t want = 0, have = 0;

	if (B.inflight > 0 || B.backlog > 0)
		return 0;
	for (long i = 0; i < B.nconns; i++) {
		const struct conn *c = &B.conns[i];
		if (c->state != S_READY)
			continue;
		want += B.users[c->user - B.u0].sent;
		have += c->unique;
	}
	if (B.hpub)
		for (int i = 0; i < O.pub_conns; i++)
			if (B.hpub[i].busy)
				return 0;
	if (B.rc_started && B.rc.state == S_READY && B.r.r_unique < uslot((uint32_t)O.users)->sent)
		return 0;
	if (O.reconnect)
		return drained_reconnect();
	return have >= want;
}

/*
 * --reconnect: client c's figures over all its connections.  Expected: what
 * Redis acknowledged for its user; lost: acknowledged and never received;
 * what it got without an acknowledgement is neither.
 */
static void reconnect_finish(const struct conn *c)
{
	const struct user *us = &B.users[c->user - B.u0];
	uint64_t lost = missing(c, us);

	B.r.expected += us->nacked;
	B.r.unique += c->unique;
	B.r.lost += lost;
	B.r.unacked_delivered += c->unique - (us->nacked - lost);
	B.r.recon_hist[c->nrecon < RECON_HIST ? c->nrecon : RECON_HIST - 1]++;
	if (c->nrecon > 0)
		B.r.clients_reconnected++;
	if (c->down)
		B.r.unrecovered++;
}

/*
 * --reconnect: the run does not end while the publisher is down (a job
 * retries until Redis is back), up to --drain s past --duration, so a
 * failure late in a short run still shows whether publishing came back.
 */
static int pub_still_down(uint64_t now)
{
	return O.reconnect && B.pub_down &&
	       now - B.t_phase < sec_ns(O.duration) + sec_ns(O.drain);
}

static void child_finish(void)
{
	if (O.reconnect && B.pub_down)
		B.r.pub_unrecovered = 1;
	if (B.samples && fclose(B.samples) != 0)
		snprintf(B.r.pub_error, sizeof B.r.pub_error, "--samples: %s", strerror(errno));
	B.samples = NULL;
	for (long i = 0; i < B.nconns; i++) {
		struct conn *c = &B.conns[i];
		uint64_t want;

		if (O.reconnect && c->counted) {
			reconnect_finish(c);
			continue;
		}
		if (c->state != S_READY || O.reconnect)
			continue;
		want = B.users[c->user - B.u0].sent;
		B.r.expected += want;
		B.r.unique += c->unique;
		if (want > c->unique)
			B.r.lost += want - c->unique;
	}
	if (B.rc_owner) {
		uint64_t want = uslot((uint32_t)O.users)->sent;

		/* what the resume connection should have had: the backlog and every
		 * live message to R since it opened (all of it when it never opened) */
		B.r.r_live_sent = want - (uint64_t)O.replay;
		B.r.r_lost = want > B.r.r_unique ? want - B.r.r_unique : 0;
		if (!B.rc_started && !B.r.r_error[0])
			snprintf(B.r.r_error, sizeof B.r.r_error,
				 "the run ended before --replay-at");
		if (B.rc_started)
			replay_window_end(now_ns());
	}
}

/* Open the resume connection; R joins the publishing rotation. */
static void replay_open(uint64_t now)
{
	B.rc_started = 1;
	B.rc_t0 = now;
	B.rc_steal0 = steal_now_ms();
	W->w0 = now;
	sub_open(&B.rc);
	if (O.rate > 0 && B.active != NULL)
		B.active[B.nactive++] = (uint32_t)O.users;
}

static int child_main(int idx, int ctrl_in, int ctrl_out)
{
	struct epoll_event evs[512];
	uint64_t t_deadline;

	signal(SIGPIPE, SIG_IGN);
	child_setup(idx);
	B.ep = epoll_create1(EPOLL_CLOEXEC);
	if (B.ep < 0)
		die("epoll_create1: %s", strerror(errno));
	B.ctrl.fd = ctrl_in;
	B.ctrl.kind = K_CTRL;
	ep_add(&B.ctrl, EPOLLIN);
	B.timer.fd = -1;
	B.timer.kind = K_TIMER;
	if (O.rate > 0) {
		/* a load generator's timers should fire when asked (default slack 50 us) */
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
		B.timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (B.timer.fd < 0)
			die("timerfd_create: %s", strerror(errno));
		ep_add(&B.timer, EPOLLIN);
	}
	child_publishers();
	B.phase = P_CONNECT;
	B.t_start = now_ns();
	t_deadline = B.t_start + sec_ns(O.connect_timeout);
	for (;;) {
		uint64_t now = now_ns();
		int timeout = 1, n;

		if (B.phase == P_CONNECT) {
			while (B.next_open < B.nconns && B.pending < O.concurrency)
				sub_open(&B.conns[B.next_open++]);
			if ((B.next_open == B.nconns && B.pending == 0) || now >= t_deadline) {
				for (long i = 0; i < B.nconns; i++)
					if (B.conns[i].state == S_CONNECTING ||
					    B.conns[i].state == S_HANDSHAKE)
						conn_close(&B.conns[i], 1);
				B.r.failed += (uint64_t)(B.nconns - B.next_open);
				B.r.connect_ns = now - B.t_start;
				collect_active();
				B.phase = P_WAIT_GO;
				if (write(ctrl_out, "R", 1) != 1)
					return 1;
			}
			timeout = 10;
		} else if (B.phase == P_WAIT_GO) {
			timeout = 100;
		} else if (B.phase == P_SETTLE) {
			if (now - B.t_phase >= sec_ns(O.settle)) {
				B.phase = P_RUN;
				B.t_phase = now;
				B.steal0 = steal_now_ms();
				publish_arm();
				if (O.tr == TR_POLL)
					for (long i = 0; i < B.nconns; i++) {
						struct conn *c = &B.conns[i];

						if (c->state != S_READY)
							continue;
						if (O.poll_interval > 0)
							c->due = now + (uint64_t)((double)sec_ns(O.poll_interval) *
										  (double)c->gidx /
										  (double)O.connections);
						else
							poll_next(c);
					}
			}
		} else if (B.phase == P_RUN) {
			/* publishing is the timer's (publish_arm) */
			if (O.tr == TR_POLL && O.poll_interval > 0)
				poll_due(now);
			if (B.rc_owner && !B.rc_started && now - B.t_phase >= sec_ns(O.replay_at))
				replay_open(now);
			if (now - B.t_phase >= sec_ns(O.duration) && !pub_still_down(now)) {
				B.r.run_ns = now - B.t_phase;
				{
					int64_t st = steal_now_ms();

					B.r.steal_ms = st >= 0 && B.steal0 >= 0 ? st - B.steal0 : -1;
				}
				B.phase = P_DRAIN;
				B.t_run_end = now;
			}
		} else if (B.phase == P_DRAIN) {
			if (O.rate > 0 && B.backlog > 0) {
				/* what the HTTP publishers could not send in time */
				B.r.pub_skipped += B.backlog;
				B.backlog = 0;
			}
			if (O.reconnect && O.tr == TR_POLL && O.poll_interval > 0)
				poll_due(now);
			if (now - B.t_run_end >= sec_ns(O.drain) ||
			    ((O.tr != TR_POLL || O.reconnect) && drained()))
				break;
		} else {
			break;
		}
		if (O.reconnect) {
			retry_due(now);
			if (B.phase == P_RUN && B.redis.fd < 0 && B.pub_retry_at != 0 &&
			    now >= B.pub_retry_at)
				pub_reconnect();
		}
		if (got_signal)
			break;
		n = epoll_wait(B.ep, evs, 512, timeout);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	child_finish();
	B.phase = P_DONE;
	{
		const char *p = (const char *)&B.r;
		size_t left = sizeof B.r;
		while (left > 0) {
			ssize_t w = write(ctrl_out, p, left);
			if (w <= 0)
				return 1;
			p += w;
			left -= (size_t)w;
		}
	}
	return 0;
}

/* --- the parent ------------------------------------------------------------------------- */

static void merge(struct result *d, const struct result *s)
{
	d->planned += s->planned;
	d->opened += s->opened;
	d->failed += s->failed;
	d->closed_early += s->closed_early;
	d->reconnects += s->reconnects;
	d->sent += s->sent;
	d->pub_errors += s->pub_errors;
	d->pub_skipped += s->pub_skipped;
	d->expected += s->expected;
	d->received += s->received;
	d->unique += s->unique;
	d->lost += s->lost;
	d->dup += s->dup;
	d->ooo += s->ooo;
	d->wrong_user += s->wrong_user;
	d->unparsed += s->unparsed;
	d->polls += s->polls;
	d->poll_errors += s->poll_errors;
	d->acked += s->acked;
	d->unacked += s->unacked;
	d->unacked_delivered += s->unacked_delivered;
	d->pub_reconnects += s->pub_reconnects;
	d->sub_reconnects += s->sub_reconnects;
	d->clients_reconnected += s->clients_reconnected;
	d->unrecovered += s->unrecovered;
	d->failures += s->failures;
	d->late += s->late;
	d->fallbacks += s->fallbacks;
	d->heartbeats += s->heartbeats;
	d->resets += s->resets;
	d->pub_unrecovered += s->pub_unrecovered;
	for (int i = 0; i < RECON_HIST; i++)
		d->recon_hist[i] += s->recon_hist[i];
	/* the recovery: from the first failure of any process to the last return */
	if (s->fail_ns != 0 && (d->fail_ns == 0 || s->fail_ns < d->fail_ns)) {
		d->fail_ns = s->fail_ns;
		memcpy(d->first_failure, s->first_failure, sizeof d->first_failure);
	}
	if (s->ok_ns > d->ok_ns)
		d->ok_ns = s->ok_ns;
	if (s->run_ns > d->run_ns)
		d->run_ns = s->run_ns;
	if (s->connect_ns > d->connect_ns)
		d->connect_ns = s->connect_ns;
	/* the children's runs overlap: the machine's figure, not a sum */
	if (s->steal_ms > d->steal_ms)
		d->steal_ms = s->steal_ms;
	for (int i = 0; i < CLOSE_CODES; i++) {
		if (!s->close_count[i])
			continue;
		for (int j = 0; j < CLOSE_CODES; j++) {
			if (d->close_count[j] == 0 || d->close_code[j] == s->close_code[i]) {
				d->close_code[j] = s->close_code[i];
				d->close_count[j] += s->close_count[i];
				break;
			}
		}
	}
	if (!d->sub_error[0] && s->sub_error[0])
		memcpy(d->sub_error, s->sub_error, sizeof d->sub_error);
	if (!d->pub_error[0] && s->pub_error[0])
		memcpy(d->pub_error, s->pub_error, sizeof d->pub_error);
	hist_merge(&d->lat, &s->lat);
	hist_merge(&d->connect, &s->connect);
	hist_merge(&d->poll, &s->poll);
	/* the resume connection is one process's: take its figures */
	d->r_opened += s->r_opened;
	d->r_received += s->r_received;
	d->r_unique += s->r_unique;
	d->r_backlog += s->r_backlog;
	d->r_dup += s->r_dup;
	d->r_ooo += s->r_ooo;
	d->r_lost += s->r_lost;
	d->r_unparsed += s->r_unparsed;
	d->r_wrong_user += s->r_wrong_user;
	d->r_live_sent += s->r_live_sent;
	d->r_live_received += s->r_live_received;
	d->r_wire_bytes += s->r_wire_bytes;
	if (s->r_close)
		d->r_close = s->r_close;
	if (s->r_first_ns > d->r_first_ns)
		d->r_first_ns = s->r_first_ns;
	if (s->r_done_ns > d->r_done_ns)
		d->r_done_ns = s->r_done_ns;
	if (s->r_steal_ms > d->r_steal_ms)
		d->r_steal_ms = s->r_steal_ms;
	if (!d->r_error[0] && s->r_error[0])
		memcpy(d->r_error, s->r_error, sizeof d->r_error);
	hist_merge(&d->lat_rw, &s->lat_rw);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static uint64_t replay_seed_ns; /* the parent's publishing of the backlog */

static void json_str(FILE *f, const char *s)
{
	size_t len = strlen(s);
	char *esc = malloc(len * TEXT_JSON_CHAR_MAX + 1);

	if (esc == NULL)
		die("out of memory");
	fprintf(f, "\"%.*s\"", (int)text_json_escape(esc, s, len), esc);
	free(esc);
}

/*
 * --reconnect: the recovery in ms (-1: a client never came back; 0: nothing
 * failed), and the clients' reconnects: the most, and the median of those
 * that reconnected.
 */
static void print_reconnect(FILE *f, const struct result *r)
{
	uint64_t max = 0, p50 = 0, seen = 0, nrec = r->clients_reconnected;
	double rec = -1;

	for (int i = 1; i < RECON_HIST; i++) {
		if (r->recon_hist[i] == 0)
			continue;
		max = (uint64_t)i;
		if (seen < (nrec + 1) / 2 && seen + r->recon_hist[i] >= (nrec + 1) / 2)
			p50 = (uint64_t)i;
		seen += r->recon_hist[i];
	}
	if (r->unrecovered == 0 && r->pub_unrecovered == 0)
		rec = r->fail_ns == 0 || r->ok_ns <= r->fail_ns ? 0.0 : ms(r->ok_ns - r->fail_ns);
	fprintf(f,
		",\"reconnect\":true,\"written\":%" PRIu64 ",\"acked\":%" PRIu64
		",\"unacked\":%" PRIu64 ",\"unacked_delivered\":%" PRIu64
		",\"pub_reconnects\":%" PRIu64,
		r->sent, r->acked, r->unacked, r->unacked_delivered, r->pub_reconnects);
	fprintf(f,
		",\"reconnect_total\":%" PRIu64 ",\"reconnect_clients\":%" PRIu64
		",\"reconnect_max\":%" PRIu64 "%s,\"reconnect_p50\":%" PRIu64,
		r->sub_reconnects, nrec, max, max == RECON_HIST - 1 ? ",\"reconnect_max_capped\":true" : "",
		p50);
	fprintf(f,
		",\"failures\":%" PRIu64 ",\"recovery_ms\":%.1f,\"unrecovered\":%" PRIu64
		",\"late\":%" PRIu64 ",\"late_ms\":%.0f,\"heartbeats\":%" PRIu64
		",\"resets\":%" PRIu64 ",\"fallbacks\":%" PRIu64 ",\"pub_unrecovered\":%" PRIu64,
		r->failures, rec, r->unrecovered, r->late, O.late, r->heartbeats, r->resets,
		r->fallbacks, r->pub_unrecovered);
	fputs(",\"first_failure\":", f);
	json_str(f, r->first_failure);
}

static void print_result(const struct result *r, double connect_s, int children_lost)
{
	double run_s = (double)r->run_ns / 1e9;
	uint64_t sent = O.reconnect ? r->acked : r->sent; /* --reconnect: acknowledged */
	FILE *f = stdout;

	fputs("{\"tool\":\"herald-bench\",\"label\":", f);
	json_str(f, O.label ? O.label : "");
	fprintf(f, ",\"transport\":\"%s\",\"target\":", transport_names[O.tr]);
	if (O.tr == TR_REDIS) {
		char a[300], t[320];
		snprintf(t, sizeof t, "%s://%s", O.redis.path[0] ? "unix" : "redis",
			 redis_addr_str(&O.redis, a, sizeof a));
		json_str(f, t);
	} else {
		char t[2200];
		snprintf(t, sizeof t, "http://%s:%d%s", O.url.host, O.url.port, O.url.path);
		json_str(f, t);
	}
	fprintf(f, ",\"publisher\":");
	if (O.have_pub) {
		char t[2200];
		snprintf(t, sizeof t, "http://%s:%d%s", O.pub.host, O.pub.port, O.pub.path);
		json_str(f, t);
	} else {
		fprintf(f, "\"redis-script\"");
	}
	fprintf(f, ",\"procs\":%d,\"connections\":%ld,\"users\":%ld", O.procs, O.connections,
		O.users);
	fprintf(f, ",\"opened\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"closed_early\":%" PRIu64,
		r->opened, r->failed, r->closed_early);
	fprintf(f, ",\"connect_s\":%.3f,\"connect_rate\":%.0f", connect_s,
		connect_s > 0 ? (double)r->opened / connect_s : 0.0);
	fprintf(f, ",\"connect_p50_ms\":%.3f,\"connect_p99_ms\":%.3f,\"connect_max_ms\":%.3f",
		ms(hist_quantile(&r->connect, 0.5)), ms(hist_quantile(&r->connect, 0.99)),
		ms(r->connect.max));
	fprintf(f, ",\"rate\":%.0f,\"duration_s\":%.3f", O.rate, run_s);
	fprintf(f,
		",\"sent\":%" PRIu64 ",\"pub_errors\":%" PRIu64 ",\"pub_skipped\":%" PRIu64
		",\"expected\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
		",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64 ",\"wrong_user\":%" PRIu64
		",\"unparsed\":%" PRIu64,
		sent, r->pub_errors, r->pub_skipped, r->expected, r->received, r->lost, r->dup,
		r->ooo, r->wrong_user, r->unparsed);
	fprintf(f,
		",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
		"\"mean_ms\":%.3f",
		ms(hist_quantile(&r->lat, 0.5)), ms(hist_quantile(&r->lat, 0.9)),
		ms(hist_quantile(&r->lat, 0.99)), ms(hist_quantile(&r->lat, 0.999)),
		ms(r->lat.max), r->lat.n ? ms(r->lat.sum / r->lat.n) : 0.0);
	fprintf(f, ",\"steal_ms\":%" PRId64, r->steal_ms);
	fprintf(f, ",\"sent_per_s\":%.0f,\"delivered_per_s\":%.0f",
		run_s > 0 ? (double)sent / run_s : 0.0,
		run_s > 0 ? (double)r->received / run_s : 0.0);
	if (O.tr == TR_POLL)
		fprintf(f,
			",\"polls\":%" PRIu64 ",\"polls_per_s\":%.0f,\"poll_errors\":%" PRIu64
			",\"reconnects\":%" PRIu64 ",\"poll_p50_ms\":%.3f,\"poll_p99_ms\":%.3f"
			",\"poll_max_ms\":%.3f",
			r->polls, run_s > 0 ? (double)r->polls / run_s : 0.0, r->poll_errors,
			r->reconnects, ms(hist_quantile(&r->poll, 0.5)),
			ms(hist_quantile(&r->poll, 0.99)), ms(r->poll.max));
	if (O.replay > 0) {
		double rs = r->r_done_ns > 0 ? (double)r->r_done_ns / 1e9 : 0.0;

		fprintf(f, ",\"replay\":%ld,\"replay_bytes\":%d,\"replay_transport\":\"%s\"",
			O.replay, O.replay_bytes, transport_names[O.rtr]);
		fputs(",\"replay_cursor\":", f);
		json_str(f, O.since);
		fprintf(f, ",\"replay_seed_s\":%.3f,\"replay_opened\":%" PRIu64,
			(double)replay_seed_ns / 1e9, r->r_opened);
		fprintf(f, ",\"replay_ms\":%.3f,\"replay_first_ms\":%.3f",
			r->r_done_ns >= 0 ? ms((uint64_t)r->r_done_ns) : -1.0,
			r->r_first_ns >= 0 ? ms((uint64_t)r->r_first_ns) : -1.0);
		fprintf(f,
			",\"replay_received\":%" PRIu64 ",\"replay_backlog\":%" PRIu64
			",\"replay_lost\":%" PRIu64 ",\"replay_dup\":%" PRIu64
			",\"replay_ooo\":%" PRIu64 ",\"replay_unparsed\":%" PRIu64
			",\"replay_wrong_user\":%" PRIu64 ",\"replay_live_sent\":%" PRIu64
			",\"replay_live_received\":%" PRIu64,
			r->r_received, r->r_backlog, r->r_lost, r->r_dup, r->r_ooo, r->r_unparsed,
			r->r_wrong_user, r->r_live_sent, r->r_live_received);
		fprintf(f,
			",\"replay_wire_bytes\":%" PRIu64 ",\"replay_msgs_per_s\":%.0f"
			",\"replay_mib_per_s\":%.2f,\"replay_close\":%" PRIu64,
			r->r_wire_bytes, rs > 0 ? (double)O.replay / rs : 0.0,
			rs > 0 ? (double)r->r_wire_bytes / rs / 1048576.0 : 0.0, r->r_close);
		fprintf(f,
			",\"during_replay_n\":%" PRIu64 ",\"during_replay_p50_ms\":%.3f"
			",\"during_replay_p99_ms\":%.3f,\"during_replay_p999_ms\":%.3f"
			",\"during_replay_max_ms\":%.3f,\"during_replay_steal_ms\":%" PRId64,
			r->lat_rw.n, ms(hist_quantile(&r->lat_rw, 0.5)),
			ms(hist_quantile(&r->lat_rw, 0.99)), ms(hist_quantile(&r->lat_rw, 0.999)),
			ms(r->lat_rw.max), r->r_steal_ms);
		fputs(",\"replay_error\":", f);
		json_str(f, r->r_error);
	}
	if (O.reconnect)
		print_reconnect(f, r);
	fputs(",\"close_codes\":{", f);
	for (int i = 0, first = 1; i < CLOSE_CODES; i++) {
		if (!r->close_count[i])
			continue;
		fprintf(f, "%s\"%" PRIu64 "\":%" PRIu64, first ? "" : ",", r->close_code[i],
			r->close_count[i]);
		first = 0;
	}
	fputs("},\"pub_error\":", f);
	json_str(f, r->pub_error);
	fputs(",\"sub_error\":", f);
	json_str(f, r->sub_error);
	fprintf(f, ",\"children_lost\":%d}\n", children_lost);
	fflush(f);
}

static void usage(FILE *f)
{
	fputs("Usage: herald-bench [OPTION]...\n"
	      "Load generator for Herald and its peers: opens N subscriber connections,\n"
	      "publishes at a steady rate, and prints one JSON line of results.\n"
	      "\n"
	      "Subscribers:\n"
	      "  -t, --transport T        ws, sse, poll or redis (SUBSCRIBE straight to Redis:\n"
	      "                           the floor) (default ws)\n"
	      "  -u, --url URL            subscriber URL template, http://HOST:PORT/PATH; {user}\n"
	      "                           and {token} are replaced per connection (ws, sse, poll)\n"
	      "  -n, --connections N      connections in all (default 100)\n"
	      "  -U, --users U            distinct users; connection i is user i %% U\n"
	      "                           (default: one user per connection)\n"
	      "      --user-prefix P      user ids are P0, P1, ... (default bench)\n"
	      "      --secret S           HS256 secret for {token} (default $HERALD_JWT_SECRET);\n"
	      "                           claims sub=user, iat, exp; minted before the\n"
	      "                           connect phase is timed, a user's clients keep\n"
	      "                           theirs, minted again after half its lifetime\n"
	      "      --token-ttl S        token lifetime in seconds (default 86400)\n"
	      "  -c, --concurrency K      connects in flight per process (default 256)\n"
	      "      --source-addrs K     spread source addresses over 127.1.0.1.. (K of them,\n"
	      "                           0 = let the kernel pick) (default 64)\n"
	      "      --connect-timeout S  the connect phase ends after S s (default 60)\n"
	      "\n"
	      "Publishing:\n"
	      "  -r, --rate R             messages per second over all users (default 0: idle)\n"
	      "  -R, --redis URL          redis://[:PASSWORD@]HOST[:PORT][/DB] or\n"
	      "                           unix:///PATH[?db=N&password=P], as herald.conf's\n"
	      "                           redis_url: the publish script (EVALSHA) and the floor's\n"
	      "                           subscriptions (default redis://127.0.0.1:6379)\n"
	      "      --prefix P           channel prefix (default notifications)\n"
	      "      --publish-url URL    publish by HTTP POST to this template instead ({user}:\n"
	      "                           e.g. Nchan's http://HOST:PORT/pub/{user})\n"
	      "      --pub-conns K        keep-alive HTTP publisher connections (default 8)\n"
	      "      --payload-bytes B    pad each payload to about B bytes\n"
	      "      --history-max N      entries the publish script keeps per user (its\n"
	      "                           ARGV[2], XADD MAXLEN ~; default: the script's 1000,\n"
	      "                           with --replay N at least N + 1000)\n"
	      "\n"
	      "Replay (a resume after a backlog, while the run goes on):\n"
	      "      --replay N           before the run, publish a seed and N messages to one\n"
	      "                           more user (P<users>); --replay-at S into the run open\n"
	      "                           one connection for it resuming after the seed, and\n"
	      "                           time it from connect to the last backlog message;\n"
	      "                           each seq once and in order; the others' latency is\n"
	      "                           also reported inside that window (during_replay_*)\n"
	      "      --replay-bytes B     pad the backlog's payloads (default --payload-bytes)\n"
	      "      --replay-at S        seconds into the run (default 1)\n"
	      "      --replay-transport T ws or sse (default: -t)\n"
	      "      --replay-url URL     its URL template; {since} is the cursor (default: -u,\n"
	      "                           with since={since} added for ws; sse sends the\n"
	      "                           Last-Event-ID header when the URL has no {since})\n"
	      "\n"
	      "Timing (the run always ends by itself):\n"
	      "  -d, --duration S         publish (or poll) for S s (default 5); with rate 0 the\n"
	      "                           connections are held idle this long\n"
	      "      --settle S           wait after all connected, before publishing (default 1)\n"
	      "      --drain S            wait at most S s for the last messages (default 3)\n"
	      "      --poll-interval S    poll: each client polls every S s (the first polls\n"
	      "                           spread over one interval) instead of again at once\n"
	      "                           (default 0: a closed loop)\n"
	      "\n"
	      "Failures (--reconnect: clients come back as herald.js does):\n"
	      "      --reconnect          a client whose connection closes or breaks connects\n"
	      "                           again after a jittered backoff and resumes from the\n"
	      "                           last id it got (ws since=, sse Last-Event-ID, poll\n"
	      "                           since=cursor); the publisher reconnects too, and a\n"
	      "                           message counts as sent once Redis acknowledged it\n"
	      "      --backoff-base MS    first retry within [0, MS) (default 1000)\n"
	      "      --backoff-max MS     retries within [0, MS) at most (default 30000)\n"
	      "      --healthy-after S    open this long: the backoff starts again (default 30)\n"
	      "      --late MS            a message slower than this delays the recovery\n"
	      "                           (default 500; poll adds --poll-interval)\n"
	      "      --wait-replicas N    WAIT N after each publish: acknowledged once N\n"
	      "                           replicas have it (default 0: the EVALSHA reply)\n"
	      "      --wait-timeout MS    WAIT's timeout (default 1000)\n"
	      "      --sentinels LIST     host:port,...: ask these sentinels for the master\n"
	      "                           (each time the publisher connects) instead of -R's\n"
	      "                           host; -R still gives the password and database\n"
	      "      --sentinel-master N  the master's name (default mymaster)\n"
	      "      --fallback-url URL   an SSE URL template: a WebSocket client falls to it\n"
	      "                           after --fall-after failures in a row (default 2)\n"
	      "                           and resumes there, as herald.js's ladder does\n"
	      "      --initial-id ID      the cursor of a client that reconnects before it got\n"
	      "                           a message or the server's cursor (Herald sends one\n"
	      "                           first on a WS/SSE connection made without a cursor,\n"
	      "                           which the client keeps); default: none\n"
	      "      --publish-auth KEY   HTTP publisher: Authorization: Bearer KEY (Herald's\n"
	      "                           POST .../publish?user={user} with publish_key)\n"
	      "\n"
	      "Processes:\n"
	      "  -p, --procs N            fork N load processes (open files are limited per\n"
	      "                           process); users are split between them (default 1)\n"
	      "      --samples PATH       write one line per received message to PATH (PATH.I\n"
	      "                           for process I with --procs): the publish time and\n"
	      "                           the receive time (CLOCK_MONOTONIC ns), user, seq\n"
	      "      --ready-file PATH    write PATH once every connection is open (for memory\n"
	      "                           samplers), before the settle time\n"
	      "  -l, --label TEXT         copied into the JSON\n"
	      "  -h, --help               this text\n"
	      "\n"
	      "Payloads are {\"b\":1,\"u\":USER,\"seq\":N,\"t\":NS}: t is CLOCK_MONOTONIC at the write\n"
	      "of the publish, seq counts per user.  Receivers take \"data:\" lines (SSE), text\n"
	      "frames (ws) or pub/sub messages (redis).  Output: one JSON line with opened,\n"
	      "failed, connect_rate, sent, expected, received, lost, dup, ooo, p50_ms..max_ms,\n"
	      "delivered_per_s, steal_ms (the VM's steal time over the run: tails follow it)\n"
	      "(and polls_per_s for poll; replay_ms, replay_lost, during_replay_p99_ms...\n"
	      "with --replay).  --reconnect adds written, acked, unacked, reconnect_total,\n"
	      "reconnect_max, reconnect_p50, failures, first_failure, recovery_ms (from the\n"
	      "first failure any process saw to the last of: a dropped client ready again,\n"
	      "the publisher acknowledged again, a message slower than --late arrived; -1\n"
	      "when a client or the publisher never came back), unrecovered (clients) and\n"
	      "pub_unrecovered (publishers); a run whose publisher is down at --duration\n"
	      "goes on until it is back, for at most --drain s more; sent is then what Redis\n"
	      "acknowledged, and lost counts acknowledged messages a client never got.\n"
	      "Exit status 0, 1 when a connection failed, a message was lost or\n"
	      "duplicated, a client did not come back (--reconnect), or a replay did not\n"
	      "arrive whole and in order, 2 on bad usage.\n",
	      f);
}

static double num(const char *s, const char *what)
{
	char *e;
	double v = strtod(s, &e);

	if (e == s || *e || v < 0)
		die("%s: bad number '%s'", what, s);
	return v;
}

/* --sentinels host:port,...: into O.redis (as redis_sentinels in herald.conf). */
static void parse_sentinels(const char *list)
{
	char buf[4096], *save = NULL;

	snprintf(buf, sizeof buf, "%s", list);
	O.redis.nsentinels = 0;
	for (char *s = strtok_r(buf, ",", &save); s != NULL; s = strtok_r(NULL, ",", &save)) {
		if (O.redis.nsentinels == REDIS_SENTINELS_MAX)
			die("--sentinels: at most %d", REDIS_SENTINELS_MAX);
		if (redis_node_parse(s, &O.redis.sentinel[O.redis.nsentinels]) != 0)
			die("--sentinels: expected host:port, not '%s'", s);
		O.redis.nsentinels++;
	}
	if (O.redis.nsentinels == 0)
		die("--sentinels: expected host:port[,host:port...]");
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{"transport", required_argument, NULL, 't'},
		{"url", required_argument, NULL, 'u'},
		{"connections", required_argument, NULL, 'n'},
		{"users", required_argument, NULL, 'U'},
		{"user-prefix", required_argument, NULL, 1},
		{"secret", required_argument, NULL, 2},
		{"token-ttl", required_argument, NULL, 3},
		{"concurrency", required_argument, NULL, 'c'},
		{"source-addrs", required_argument, NULL, 4},
		{"connect-timeout", required_argument, NULL, 5},
		{"rate", required_argument, NULL, 'r'},
		{"redis", required_argument, NULL, 'R'},
		{"prefix", required_argument, NULL, 6},
		{"publish-url", required_argument, NULL, 7},
		{"pub-conns", required_argument, NULL, 8},
		{"payload-bytes", required_argument, NULL, 9},
		{"duration", required_argument, NULL, 'd'},
		{"settle", required_argument, NULL, 10},
		{"drain", required_argument, NULL, 11},
		{"procs", required_argument, NULL, 'p'},
		{"ready-file", required_argument, NULL, 12},
		{"samples", required_argument, NULL, 13},
		{"label", required_argument, NULL, 'l'},
		{"history-max", required_argument, NULL, 14},
		{"replay", required_argument, NULL, 15},
		{"replay-bytes", required_argument, NULL, 16},
		{"replay-at", required_argument, NULL, 17},
		{"replay-transport", required_argument, NULL, 18},
		{"replay-url", required_argument, NULL, 19},
		{"poll-interval", required_argument, NULL, 20},
		{"reconnect", no_argument, NULL, 21},
		{"backoff-base", required_argument, NULL, 22},
		{"backoff-max", required_argument, NULL, 23},
		{"healthy-after", required_argument, NULL, 24},
		{"late", required_argument, NULL, 25},
		{"wait-replicas", required_argument, NULL, 26},
		{"wait-timeout", required_argument, NULL, 27},
		{"sentinels", required_argument, NULL, 28},
		{"sentinel-master", required_argument, NULL, 29},
		{"fallback-url", required_argument, NULL, 30},
		{"fall-after", required_argument, NULL, 31},
		{"publish-auth", required_argument, NULL, 32},
		{"initial-id", required_argument, NULL, 33},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch, i;
	const char *sentinels = NULL, *master = NULL;

	O.secret = getenv("HERALD_JWT_SECRET");
	while ((ch = getopt_long(argc, argv, "t:u:n:U:c:r:R:d:p:l:h", lo, NULL)) != -1) {
		switch (ch) {
		case 't':
			for (i = 0; i < 4; i++)
				if (strcmp(optarg, transport_names[i]) == 0)
					break;
			if (i == 4)
				die("--transport: ws, sse, poll or redis, not '%s'", optarg);
			O.tr = (enum transport)i;
			break;
		case 'u':
			if (parse_url(optarg, &O.url) < 0)
				die("--url: expected http://HOST:PORT/PATH, not '%s'", optarg);
			O.have_url = 1;
			break;
		case 'n':
			O.connections = (long)num(optarg, "--connections");
			break;
		case 'U':
			O.users = (long)num(optarg, "--users");
			break;
		case 1:
			snprintf(O.user_prefix, sizeof O.user_prefix, "%s", optarg);
			break;
		case 2:
			O.secret = optarg;
			break;
		case 3:
			O.token_ttl = (long)num(optarg, "--token-ttl");
			break;
		case 'c':
			O.concurrency = (int)num(optarg, "--concurrency");
			break;
		case 4:
			O.src_addrs = (int)num(optarg, "--source-addrs");
			break;
		case 5:
			O.connect_timeout = num(optarg, "--connect-timeout");
			break;
		case 'r':
			O.rate = num(optarg, "--rate");
			break;
		case 'R': {
			char err[200];

			if (redis_url_parse(optarg, &O.redis, err, sizeof err) != 0)
				die("--redis: %s", err);
			break;
		}
		case 6:
			snprintf(O.prefix, sizeof O.prefix, "%s", optarg);
			break;
		case 7:
			if (parse_url(optarg, &O.pub) < 0)
				die("--publish-url: expected http://HOST:PORT/PATH, not '%s'",
				    optarg);
			O.have_pub = 1;
			break;
		case 8:
			O.pub_conns = (int)num(optarg, "--pub-conns");
			break;
		case 9:
			O.payload_bytes = (int)num(optarg, "--payload-bytes");
			break;
		case 'd':
			O.duration = num(optarg, "--duration");
			break;
		case 10:
			O.settle = num(optarg, "--settle");
			break;
		case 11:
			O.drain = num(optarg, "--drain");
			break;
		case 20:
			O.poll_interval = num(optarg, "--poll-interval");
			break;
		case 21:
			O.reconnect = 1;
			break;
		case 22:
			O.backoff_base = num(optarg, "--backoff-base");
			break;
		case 23:
			O.backoff_max = num(optarg, "--backoff-max");
			break;
		case 24:
			O.healthy_after = num(optarg, "--healthy-after");
			break;
		case 25:
			O.late = num(optarg, "--late");
			break;
		case 26:
			O.wait_replicas = (int)num(optarg, "--wait-replicas");
			break;
		case 27:
			O.wait_timeout = (long)num(optarg, "--wait-timeout");
			break;
		case 28:
			sentinels = optarg; /* after the loop: -R would clear them */
			break;
		case 29:
			master = optarg;
			break;
		case 30:
			if (parse_url(optarg, &O.furl) < 0)
				die("--fallback-url: expected http://HOST:PORT/PATH, not '%s'",
				    optarg);
			O.have_furl = 1;
			break;
		case 31:
			O.fall_after = (int)num(optarg, "--fall-after");
			break;
		case 33:
			if (strlen(optarg) >= sizeof O.initial_id || strpbrk(optarg, "\r\n&? ") != NULL)
				die("--initial-id: an id, at most %zu characters", sizeof O.initial_id - 1);
			snprintf(O.initial_id, sizeof O.initial_id, "%s", optarg);
			break;
		case 32:
			if (strlen(optarg) > 500 || strpbrk(optarg, "\r\n") != NULL)
				die("--publish-auth: at most 500 characters, one line");
			snprintf(O.pub_auth, sizeof O.pub_auth, "Authorization: Bearer %s\r\n", optarg);
			break;
		case 'p':
			O.procs = (int)num(optarg, "--procs");
			break;
		case 12:
			O.ready_file = optarg;
			break;
		case 13:
			O.samples = optarg;
			break;
		case 'l':
			O.label = optarg;
			break;
		case 14:
			O.history_max = (long)num(optarg, "--history-max");
			break;
		case 15:
			O.replay = (long)num(optarg, "--replay");
			break;
		case 16:
			O.replay_bytes = (int)num(optarg, "--replay-bytes");
			break;
		case 17:
			O.replay_at = num(optarg, "--replay-at");
			break;
		case 18:
			for (i = 0; i < 2; i++)
				if (strcmp(optarg, transport_names[i]) == 0)
					break;
			if (i == 2)
				die("--replay-transport: ws or sse, not '%s'", optarg);
			O.rtr = (enum transport)i;
			O.have_rtr = 1;
			break;
		case 19:
			if (parse_url(optarg, &O.rurl) < 0)
				die("--replay-url: expected http://HOST:PORT/PATH, not '%s'",
				    optarg);
			O.have_rurl = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (O.reconnect && O.tr == TR_REDIS)
		die("--reconnect: ws, sse or poll (the floor has no resume)");
	if (O.have_furl && (!O.reconnect || O.tr != TR_WS))
		die("--fallback-url: with --reconnect and -t ws");
	if (O.fall_after < 1)
		O.fall_after = 1;
	if (O.reconnect && O.tr == TR_POLL)
		O.late += O.poll_interval * 1000; /* a poll's answer waits that long by design */
	if (sentinels != NULL) {
		parse_sentinels(sentinels);
		snprintf(O.redis.master_name, sizeof O.redis.master_name, "%s",
			 master != NULL ? master : "mymaster");
	}
	if (O.backoff_max < O.backoff_base)
		O.backoff_max = O.backoff_base;
	if (O.tr != TR_REDIS && !O.have_url)
		die("--url is required for --transport %s", transport_names[O.tr]);
	if (O.connections < 1 || O.connections > 1000000)
		die("--connections: 1..1000000");
	if (O.users <= 0 || O.users > O.connections)
		O.users = O.connections;
	if (O.procs < 1 || O.procs > PROCS_MAX)
		die("--procs: 1..%d", PROCS_MAX);
	if (O.procs > O.users)
		O.procs = (int)O.users;
	if (O.concurrency < 1)
		O.concurrency = 1;
	if (O.pub_conns < 1 || O.pub_conns > 256)
		die("--pub-conns: 1..256");
	if (O.payload_bytes > 4000)
		die("--payload-bytes: at most 4000");
	if (O.duration > 86400 || O.settle > 3600 || O.drain > 3600 || O.connect_timeout > 3600)
		die("durations are bounded: --duration 86400, the others 3600");
	if (O.replay > 0) {
		if (O.replay > 10000000)
			die("--replay: at most 10000000");
		if (!O.have_rtr)
			O.rtr = O.tr;
		if (O.rtr != TR_WS && O.rtr != TR_SSE)
			die("--replay: the resume connection is ws or sse (--replay-transport)");
		if (O.replay_at >= O.duration)
			die("--replay-at must come before the end of --duration");
		if (O.replay_bytes < 0)
			O.replay_bytes = O.payload_bytes;
		if (O.replay_bytes > 4000)
			die("--replay-bytes: at most 4000");
		if (O.history_max == 0)
			O.history_max = O.replay + 1000 > 1000 ? O.replay + 1000 : 1000;
		if (!O.have_rurl) {
			if (!O.have_url)
				die("--replay needs --replay-url (or -u)");
			O.rurl = O.url;
			if (O.rtr == TR_WS) {
				size_t l = strlen(O.rurl.path);
				snprintf(O.rurl.path + l, sizeof O.rurl.path - l, "%ssince={since}",
					 strchr(O.rurl.path, '?') ? "&" : "?");
			}
		}
	}
}

/* --- --replay: publishing the backlog (the parent, before the run) ----------------- */

/* Write all of buf to a blocking fd.  0 or -1. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A blocking socket to host:port (5 s for the connect, 30 s per read). */
static int connect_blocking(const char *host, int port)
{
	struct timeval tv = {.tv_sec = 30};
	struct pollfd p;
	int err = 0, fd = open_socket(host, port, 0, 0);
	socklen_t el = sizeof err;

	if (fd < 0)
		return -1;
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* Read more of a blocking socket into c->in.  0, or -1 at EOF/error/timeout. */
static int read_more(int fd, struct conn *c)
{
	ssize_t n = recv(fd, B.scratch, sizeof B.scratch, 0);

	if (n <= 0)
		return -1;
	return in_append(c, B.scratch, (size_t)n);
}

#define SEED_BATCH 200

/*
 * Herald and the floor: the seed (seq 0) and seq 1..N through the publish
 * script, pipelined SEED_BATCH at a time on one connection (Redis runs them
 * in order); the seed's reply is its id, the cursor.
 */
static int seed_redis(uint32_t ru, char *err, size_t errlen)
{
	redisContext *rc = NULL;
	redisReply *r = NULL;
	long seq = 0;

	if (redis_connect(&O.redis, 30000, &rc, err, errlen) != 0 ||
	    redis_script_load(rc, &redis_script_publish, err, errlen) != 0)
		goto fail;
	while (seq <= O.replay) {
		long k, first = seq;

		for (k = 0; k < SEED_BATCH && seq <= O.replay; k++, seq++) {
			char *cmd;
			int n = redis_publish_cmd(ru, (uint32_t)seq, O.replay_bytes, &cmd);

			if (n < 0 || redisAppendFormattedCommand(rc, cmd, (size_t)n) != REDIS_OK) {
				redisFreeCommand(cmd);
				goto fail;
			}
			redisFreeCommand(cmd);
		}
		for (long got = 0; got < k; got++) {
			if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL) {
				snprintf(err, errlen, "redis: no reply (%s)", rc->errstr);
				goto fail;
			}
			if (r->type != REDIS_REPLY_STRING) {
				snprintf(err, errlen, "publish refused: %.150s",
					 r->type == REDIS_REPLY_ERROR ? r->str : "not an id");
				goto fail;
			}
			if (first + got == 0) {
				if (r->len == 0 || r->len >= sizeof O.since)
					goto fail;
				memcpy(O.since, r->str, r->len);
				O.since[r->len] = '\0';
			}
			freeReplyObject(r);
			r = NULL;
		}
	}
	redisFree(rc);
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "cannot publish the backlog");
	freeReplyObject(r);
	if (rc != NULL)
		redisFree(rc);
	return -1;
}

/*
 * An HTTP publisher (Nchan's POST /pub/USER): the same messages, SEED_BATCH
 * requests pipelined on one keep-alive connection (answered in order); the
 * seed's answer (Accept: text/json) names the channel's last message id, the
 * seed's: the cursor.
 */
static int seed_http(uint32_t ru, char *err, size_t errlen)
{
	struct conn c;
	char path[4096], payload[8192], req[13000];
	int fd = connect_blocking(O.pub.host, O.pub.port);
	long seq = 0;

	if (fd < 0) {
		snprintf(err, errlen, "connect %s:%d: %s", O.pub.host, O.pub.port, strerror(errno));
		return -1;
	}
	if (expand(O.pub.path, ru, path, sizeof path) < 0) {
		close(fd);
		snprintf(err, errlen, "--publish-url too long");
		return -1;
	}
	memset(&c, 0, sizeof c);
	while (seq <= O.replay) {
		long k, first = seq;

		for (k = 0; k < SEED_BATCH && seq <= O.replay; k++, seq++) {
			int pl = make_payload_pad(ru, (uint32_t)seq, O.replay_bytes, payload,
						  sizeof payload);
			int n = snprintf(req, sizeof req,
					 "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/json\r\n"
					 "Content-Type: application/json\r\n"
					 "Content-Length: %d\r\n\r\n%s",
					 path, O.pub.host, O.pub.port, pl, payload);

			if (write_all(fd, req, (size_t)n) < 0) {
				snprintf(err, errlen, "send to the publisher: %s", strerror(errno));
				goto fail;
			}
		}
		for (long got = 0; got < k;) {
			const char *e = c.len ? memmem(c.in, c.len, "\r\n\r\n", 4) : NULL;
			size_t hl = 0, bl = 0;

			if (e) {
				hl = (size_t)(e - c.in) + 4;
				if (parse_headers(&c, hl) < 0) {
					snprintf(err, errlen, "publisher: not an HTTP answer");
					goto fail;
				}
				if (c.chunked || (c.clen < 0 && c.status != 204)) {
					snprintf(err, errlen,
						 "publisher: an answer without Content-Length");
					goto fail;
				}
				bl = c.clen > 0 ? (size_t)c.clen : 0;
			}
			if (!e || c.len < hl + bl) {
				if (read_more(fd, &c) < 0) {
					snprintf(err, errlen, "publisher: no answer (%s)",
						 errno ? strerror(errno) : "closed");
					goto fail;
				}
				continue;
			}
			if (c.status < 200 || c.status >= 300) {
				snprintf(err, errlen, "publisher: HTTP status %d", c.status);
				goto fail;
			}
			if (first + got == 0) {
				/* {"messages": 1, ..., "last_message_id": "1450755280:0" } */
				const char *body = c.in + hl, *k0, *k1 = NULL;

				k0 = memmem(body, bl, "\"last_message_id\"", 17);
				if (k0)
					k0 = memchr(k0 + 17, '"', bl - (size_t)(k0 + 17 - body));
				if (k0)
					k1 = memchr(k0 + 1, '"', bl - (size_t)(k0 + 1 - body));
				if (!k1 || k1 == k0 + 1 ||
				    (size_t)(k1 - k0 - 1) >= sizeof O.since) {
					snprintf(err, errlen,
						 "publisher: no last_message_id in its answer");
					goto fail;
				}
				memcpy(O.since, k0 + 1, (size_t)(k1 - k0 - 1));
				O.since[k1 - k0 - 1] = '\0';
			}
			in_consume(&c, hl + bl);
			got++;
		}
	}
	conn_free_in(&c);
	close(fd);
	return 0;
fail:
	conn_free_in(&c);
	close(fd);
	return -1;
}

/* Publish the replay user's backlog; sets O.since.  Exits (1) when it cannot. */
static void seed_backlog(void)
{
	char err[200] = "";
	uint64_t t = now_ns();
	int rc;

	errno = 0;
	rc = O.have_pub ? seed_http((uint32_t)O.users, err, sizeof err)
			: seed_redis((uint32_t)O.users, err, sizeof err);
	if (rc < 0 || !O.since[0]) {
		fprintf(stderr, "herald-bench: --replay: %s\n", err[0] ? err : "no cursor");
		exit(1);
	}
	replay_seed_ns = now_ns() - t;
}

int main(int argc, char **argv)
{
	int to_child[PROCS_MAX][2], from_child[PROCS_MAX][2];
	pid_t pids[PROCS_MAX];
	struct result *res, total;
	size_t got[PROCS_MAX];
	int ready[PROCS_MAX], done[PROCS_MAX], nready = 0, ndone = 0, lost_children = 0;
	uint64_t t0, t_ready = 0, deadline;
	struct rlimit rl;
	struct sigaction sa;
	long per_proc;

	parse_args(argc, argv);
	if (redis_scripts_init() < 0)
		die("cannot compute the publish script's SHA1");
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	per_proc = (O.connections + O.procs - 1) / O.procs + 1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)per_proc + (rlim_t)O.pub_conns + 32 > rl.rlim_cur)
		die("%ld connections per process pass the open-files limit %lu: raise --procs",
		    per_proc, (unsigned long)rl.rlim_cur);
	W = mmap(NULL, sizeof *W, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (W == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	W->w0 = W->w1 = 0;
	signal(SIGPIPE, SIG_IGN);
	if (O.replay > 0)
		seed_backlog();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	res = calloc((size_t)O.procs, sizeof *res);
	if (!res)
		die("out of memory");
	if (O.ready_file)
		unlink(O.ready_file);
	premint();
	t0 = now_ns();
	fflush(stdout);
	for (int i = 0; i < O.procs; i++) {
		if (pipe2(to_child[i], O_CLOEXEC) < 0 || pipe2(from_child[i], O_CLOEXEC) < 0)
			die("pipe: %s", strerror(errno));
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			for (int j = 0; j < i; j++) {
				close(to_child[j][1]);
				close(from_child[j][0]);
			}
			close(to_child[i][1]);
			close(from_child[i][0]);
			free(res);
			_exit(child_main(i, to_child[i][0], from_child[i][1]));
		}
		close(to_child[i][0]);
		close(from_child[i][1]);
		got[i] = 0;
		ready[i] = done[i] = 0;
	}
	/* --drain twice: a --reconnect run may go on for it (pub_still_down) */
	deadline = t0 + sec_ns(O.connect_timeout + O.settle + O.duration + 2 * O.drain + 30);
	while (ndone < O.procs) {
		struct pollfd pf[PROCS_MAX];
		int idx[PROCS_MAX], np = 0;
		uint64_t now = now_ns();

		if (now >= deadline || got_signal)
			break;
		for (int i = 0; i < O.procs; i++) {
			if (done[i])
				continue;
			pf[np].fd = from_child[i][0];
			pf[np].events = POLLIN;
			idx[np++] = i;
		}
		if (poll(pf, (nfds_t)np, 200) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			int i = idx[k];
			ssize_t r;

			if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!ready[i]) {
				char b;
				r = read(pf[k].fd, &b, 1);
				if (r == 1 && b == 'R') {
					ready[i] = 1;
					if (++nready == O.procs) {
						t_ready = now_ns();
						if (O.ready_file) {
							FILE *f = fopen(O.ready_file, "w");
							if (f) {
								fprintf(f, "ready\n");
								fclose(f);
							}
						}
						for (int j = 0; j < O.procs; j++)
							if (write(to_child[j][1], "G", 1) != 1)
								lost_children++;
					}
				} else {
					done[i] = 1;
					ndone++;
					lost_children++;
				}
				continue;
			}
			r = read(pf[k].fd, (char *)&res[i] + got[i], sizeof res[i] - got[i]);
			if (r <= 0) {
				done[i] = 1;
				ndone++;
				lost_children++;
				continue;
			}
			got[i] += (size_t)r;
			if (got[i] == sizeof res[i]) {
				done[i] = 1;
				ndone++;
			}
		}
	}
	for (int i = 0; i < O.procs; i++) {
		if (!done[i]) {
			kill(pids[i], SIGKILL);
			lost_children++;
		}
		waitpid(pids[i], NULL, 0);
	}
	memset(&total, 0, sizeof total);
	total.steal_ms = -1;
	total.r_first_ns = total.r_done_ns = total.r_steal_ms = -1;
	for (int i = 0; i < O.procs; i++)
		if (got[i] == sizeof res[i])
			merge(&total, &res[i]);
	print_result(&total, t_ready ? (double)(t_ready - t0) / 1e9 : 0.0, lost_children);
	free(res);
	if (O.replay > 0 && (total.r_done_ns < 0 || total.r_lost || total.r_dup || total.r_ooo ||
			     total.r_wrong_user))
		return 1;
	if (O.reconnect) /* closed connections are the point: they must come back */
		return total.failed || total.lost || total.dup || total.unrecovered ||
		       total.pub_unrecovered || lost_children;
	return total.failed || total.lost || total.dup || total.closed_early || lost_children ? 1
											     : 0;
}
