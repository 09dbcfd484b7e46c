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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "auth.h"
#include "redis.h"

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
	char redis_host[64];
	int redis_port;
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
	uint32_t gidx;      /* global connection index: picks the source address */
	uint32_t user;      /* global user index */
	int status;
	int32_t chunk_left;
	int64_t clen; /* body bytes left, -1: unknown */
	char *in;
	uint32_t len, cap, dlen;
	uint64_t t0;      /* connect() or the current request's write */
	uint64_t max_seq; /* highest seq received */
	uint64_t window;  /* bit k: seq max_seq - k was received */
	uint64_t unique;  /* distinct seqs received */
};

struct user {
	uint32_t sent;  /* seq of the last publish to this user */
	uint32_t nconn; /* connections of this user ready at the start */
};

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
	struct hist lat, connect, poll;
};

static struct opts O = {
	.tr = TR_WS,
	.redis_host = "127.0.0.1",
	.redis_port = 6379,
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
};

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

/* Replace {user} and {token} in tmpl.  Returns the length, or -1 when too long. */
static int expand(const char *tmpl, uint32_t u, char *out, size_t len)
{
	char name[96], token[600];
	size_t o = 0;
	int have_token = 0;

	user_name(u, name, sizeof name);
	for (const char *p = tmpl; *p; p++) {
		const char *rep = NULL;

		if (strncmp(p, "{user}", 6) == 0) {
			rep = name;
			p += 5;
		} else if (strncmp(p, "{token}", 7) == 0) {
			if (!have_token) {
				make_token(name, token, sizeof token);
				have_token = 1;
			}
			rep = token;
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
	t->port = colon ? atoi(colon + 1) : 80;
	if (t->port <= 0 || t->port > 65535)
		return -1;
	snprintf(t->path, sizeof t->path, "%s", *slash ? slash : "/");
	return 0;
}

static int parse_redis_url(const char *url)
{
	const char *p = url, *colon, *slash;
	size_t hl;

	if (strncmp(p, "redis://", 8) == 0)
		p += 8;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	colon = memchr(p, ':', (size_t)(slash - p));
	hl = (size_t)((colon ? colon : slash) - p);
	if (hl == 0 || hl >= sizeof O.redis_host)
		return -1;
	memcpy(O.redis_host, p, hl);
	O.redis_host[hl] = '\0';
	O.redis_port = colon ? atoi(colon + 1) : 6379;
	return O.redis_port > 0 && O.redis_port <= 65535 ? 0 : -1;
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

/* --- connections ---------------------------------------------------------------------- */

static void conn_free_in(struct conn *c)
{
	free(c->in);
	c->in = NULL;
	c->len = c->cap = c->dlen = 0;
}

static void conn_close(struct conn *c, int failed)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	conn_free_in(c);
	if (c->kind != K_SUB) {
		c->state = S_CLOSED;
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
	const char *host = O.tr == TR_REDIS ? O.redis_host : O.url.host;
	int port = O.tr == TR_REDIS ? O.redis_port : O.url.port;

	c->fd = open_socket(host, port, c->gidx, 1);
	c->rstate = O.tr == TR_REDIS ? R_RESP : R_HDRS;
	c->chunked = 0;
	c->conn_close = 0;
	if (c->fd < 0 || ep_add(c, EPOLLOUT | EPOLLIN) < 0) {
		sub_fail("socket/bind/connect: %s", strerror(errno));
		if (!c->counted)
			B.pending++;
		c->state = S_CONNECTING;
		conn_close(c, 1);
		return;
	}
	if (!c->counted)
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
	char path[4096], req[5000];
	int n;

	if (O.tr == TR_REDIS) {
		char name[96], ch[200];
		int cl;

		user_name(c->user, name, sizeof name);
		cl = snprintf(ch, sizeof ch, "%s:%s", O.prefix, name);
		n = snprintf(req, sizeof req, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", cl, ch);
		return send_all(c, req, (size_t)n);
	}
	if (expand(O.url.path, c->user, path, sizeof path) < 0)
		return -1;
	if (O.tr == TR_WS)
		n = snprintf(req, sizeof req,
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
			     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n\r\n",
			     path, O.url.host, O.url.port);
	else if (O.tr == TR_SSE)
		n = snprintf(req, sizeof req,
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
			     "Cache-Control: no-cache\r\n\r\n",
			     path, O.url.host, O.url.port);
	else
		n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
			     O.url.host, O.url.port);
	c->t0 = now_ns();
	return send_all(c, req, (size_t)n);
}

static void sub_ready(struct conn *c)
{
	c->state = S_READY;
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
	uint64_t x = 0;
	int digits = 0;

	if (!k)
		return -1;
	k += strlen(key);
	while (k < p + n && *k == ' ')
		k++;
	while (k < p + n && *k >= '0' && *k <= '9') {
		x = x * 10 + (uint64_t)(*k++ - '0');
		digits++;
	}
	if (!digits)
		return -1;
	*v = x;
	return 0;
}

static void on_message(struct conn *c, const char *p, size_t n)
{
	uint64_t seq, t, u, now = now_ns();

	if (find_u64(p, n, "\"seq\":", &seq) < 0 || find_u64(p, n, "\"t\":", &t) < 0 ||
	    find_u64(p, n, "\"u\":", &u) < 0) {
		B.r.unparsed++;
		return;
	}
	B.r.received++;
	if (u != c->user) {
		B.r.wrong_user++;
		return;
	}
	hist_add(&B.r.lat, now > t ? now - t : 0);
	if (B.samples)
		fprintf(B.samples, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", t, now, u, seq);
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

/* SSE: one message per "data:" line of the decoded bytes [0, dlen). */
static void sse_lines(struct conn *c)
{
	size_t off = 0;

	for (;;) {
		const char *nl = memchr(c->in + off, '\n', c->dlen - off);
		size_t ll;

		if (!nl)
			break;
		ll = (size_t)(nl - (c->in + off));
		if (ll >= 5 && memcmp(c->in + off, "data:", 5) == 0)
			on_message(c, c->in + off + 5, ll - 5);
		off += ll + 1;
	}
	in_consume(c, off);
}

static void send_ws_frame(struct conn *c, int opcode, const char *p, size_t n)
{
	unsigned char f[2 + 4 + 125];
	static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};

	if (n > 125)
		n = 125;
	f[0] = (unsigned char)(0x80 | opcode);
	f[1] = (unsigned char)(0x80 | n);
	memcpy(f + 2, mask, 4);
	for (size_t i = 0; i < n; i++)
		f[6 + i] = (unsigned char)p[i] ^ mask[i % 4];
	send(c->fd, f, 6 + n, MSG_NOSIGNAL);
}

/* Server frames.  Returns 0, or -1 when the connection ends. */
static int ws_frames(struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	while (c->len - off >= 2) {
		const unsigned char *h = (const unsigned char *)c->in + off;
		size_t avail = c->len - off, hl = 2;
		uint64_t plen = h[1] & 0x7f;
		int op = h[0] & 0x0f, masked = h[1] & 0x80;

		if (plen == 126) {
			if (avail < 4)
				break;
			plen = (uint64_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (plen == 127) {
			if (avail < 10)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | h[2 + i];
			hl = 10;
		}
		if (masked)
			hl += 4;
		if (plen > IN_MAX) {
			rc = -1;
			break;
		}
		if (avail < hl + plen)
			break;
		char *pl = c->in + off + hl;
		if (masked)
			for (uint64_t i = 0; i < plen; i++)
				pl[i] ^= (char)h[hl - 4 + i % 4];
		if (op == 1 || op == 2 || op == 0) {
			on_message(c, pl, (size_t)plen);
		} else if (op == 9) {
			send_ws_frame(c, 0xA, pl, (size_t)plen);
		} else if (op == 8) {
			uint64_t code = plen >= 2 ? (uint64_t)((unsigned char)pl[0] << 8 |
							       (unsigned char)pl[1])
						  : 1005;
			record_close(code);
			send_ws_frame(c, 8, pl, plen >= 2 ? 2 : 0);
			rc = -1;
			off += hl + (size_t)plen;
			break;
		}
		off += hl + (size_t)plen;
	}
	in_consume(c, off);
	return rc;
}

/*
 * One RESP reply of at most 4 elements at p (arrays of bulk strings and
 * integers, or a simple line).  Returns the bytes it spans, 0 when
 * incomplete, -1 when malformed.  el/ell get the elements' bytes.
 */
static long resp_one(const char *p, size_t n, const char **el, size_t *ell, int *nel)
{
	const char *nl = memchr(p, '\n', n), *q;
	long count, i;

	*nel = 0;
	if (!nl)
		return 0;
	if (p[0] == '+' || p[0] == '-' || p[0] == ':') {
		/* the line without its type byte and CR */
		el[0] = p + 1;
		ell[0] = (size_t)(nl - p - 1);
		if (ell[0] > 0 && el[0][ell[0] - 1] == '\r')
			ell[0]--;
		*nel = 1;
		return nl - p + 1;
	}
	if (p[0] == '$') {
		long bl = strtol(p + 1, NULL, 10);
		if (bl < 0)
			return nl - p + 1;
		if ((size_t)(nl - p + 1) + (size_t)bl + 2 > n)
			return 0;
		el[0] = nl + 1;
		ell[0] = (size_t)bl;
		*nel = 1;
		return nl - p + 1 + bl + 2;
	}
	if (p[0] != '*')
		return -1;
	count = strtol(p + 1, NULL, 10);
	q = nl + 1;
	for (i = 0; i < count; i++) {
		size_t left = n - (size_t)(q - p);
		const char *enl = memchr(q, '\n', left);
		if (!enl)
			return 0;
		if (*q == ':') {
			if (i < 4) {
				el[i] = q + 1;
				ell[i] = (size_t)(enl - q - 2);
			}
			q = enl + 1;
			continue;
		}
		if (*q != '$')
			return -1;
		long bl = strtol(q + 1, NULL, 10);
		if (bl < 0 || (size_t)(enl - q + 1) + (size_t)bl + 2 > left)
			return bl < 0 ? -1 : 0;
		if (i < 4) {
			el[i] = enl + 1;
			ell[i] = (size_t)bl;
		}
		q = enl + 1 + bl + 2;
	}
	*nel = count < 4 ? (int)count : 4;
	return q - p;
}

/*
 * Hand each complete RESP reply in c's input to fn (err: it was an error
 * reply), then drop what was handed.  -1 when the input is not RESP or fn
 * returned -1; a partial reply waits for more input.
 */
typedef int (*resp_fn)(struct conn *c, int err, const char *const *el, const size_t *ell,
		       int nel);

static int resp_feed(struct conn *c, resp_fn fn)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->len) {
		const char *el[4] = {NULL};
		size_t ell[4] = {0};
		int nel = 0, err;
		long used = resp_one(c->in + off, c->len - off, el, ell, &nel);

		if (used <= 0) {
			rc = used < 0 ? -1 : 0;
			break;
		}
		err = c->in[off] == '-';
		off += (size_t)used;
		if (fn(c, err, el, ell, nel) < 0) {
			rc = -1;
			break;
		}
	}
	in_consume(c, off);
	return rc;
}

/* The floor's subscriber connections: subscribe confirmations and messages. */
static int redis_sub_reply(struct conn *c, int err, const char *const *el, const size_t *ell,
			   int nel)
{
	if (err) {
		sub_fail("redis: %.*s", (int)(ell[0] > 120 ? 120 : ell[0]), el[0]);
		return -1;
	}
	if (nel >= 3 && ell[0] == 9 && memcmp(el[0], "subscribe", 9) == 0)
		sub_ready(c);
	else if (nel >= 3 && ell[0] == 7 && memcmp(el[0], "message", 7) == 0)
		on_message(c, el[2], ell[2]);
	return 0;
}

static int redis_sub_feed(struct conn *c)
{
	return resp_feed(c, redis_sub_reply);
}

static void poll_next(struct conn *c);
static void hpub_done(struct conn *c);

/* A complete HTTP response on a poll subscriber or an HTTP publisher. */
static int response_done(struct conn *c)
{
	int ok = (c->status >= 200 && c->status < 300) || c->status == 304;
	uint64_t now = now_ns();

	c->rstate = R_HDRS;
	if (c->kind == K_PUB_HTTP) {
		if (!ok) {
			B.r.pub_errors++;
			if (!B.r.pub_error[0])
				snprintf(B.r.pub_error, sizeof B.r.pub_error, "HTTP status %d",
					 c->status);
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
	} else if (B.phase == P_RUN) {
		B.r.polls++;
		hist_add(&B.r.poll, now - c->t0);
	}
	if (c->conn_close)
		return -1;
	if (B.phase == P_RUN)
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
			if (c->kind == K_SUB && O.tr == TR_WS) {
				if (c->status != 101) {
					sub_fail("handshake: HTTP status %d", c->status);
					record_close((uint64_t)c->status);
					return -1;
				}
				sub_ready(c);
				c->rstate = R_WS;
			} else if (c->kind == K_SUB && O.tr == TR_SSE) {
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
		case R_RESP:
			return redis_sub_feed(c);
		case R_SSE:
			if (c->chunked) {
				if (dechunk(c) != 0)
					return -1;
			} else {
				c->dlen = c->len;
			}
			sse_lines(c);
			return 0;
		case R_BODY:
			if (c->chunked) {
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

static int make_payload(uint32_t u, uint32_t seq, char *out, size_t len)
{
	int n = snprintf(out, len, "{\"b\":1,\"u\":%" PRIu32 ",\"seq\":%" PRIu32 ",\"t\":%" PRIu64,
			 u, seq, now_ns());

	if (O.payload_bytes > n + 9 && (size_t)O.payload_bytes < len - 2) {
		n += snprintf(out + n, len - (size_t)n, ",\"p\":\"");
		while (n < O.payload_bytes - 2)
			out[n++] = 'x';
		out[n++] = '"';
	}
	out[n++] = '}';
	out[n] = '\0';
	return n;
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
	char name[96], key[256], payload[8192], cmd[9000];
	struct user *us = &B.users[u - B.u0];
	int kl, pl, n;

	user_name(u, name, sizeof name);
	kl = snprintf(key, sizeof key, "%s:%s:history", O.prefix, name);
	pl = make_payload(u, us->sent + 1, payload, sizeof payload);
	n = snprintf(cmd, sizeof cmd, "*5\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
		     redis_script_publish.sha, kl, key, pl, payload);
	if (rout_add(cmd, (size_t)n) < 0) {
		B.r.pub_errors++;
		return;
	}
	us->sent++;
	B.r.sent++;
	B.inflight++;
}

/* The publisher's connection: one reply per EVALSHA in flight. */
static int redis_pub_reply(struct conn *c, int err, const char *const *el, const size_t *ell,
			   int nel)
{
	(void)c;
	if (err) {
		B.r.pub_errors++;
		if (!B.r.pub_error[0] && nel > 0 && el[0] != NULL)
			snprintf(B.r.pub_error, sizeof B.r.pub_error, "%.*s",
				 (int)(ell[0] > 150 ? 150 : ell[0]), el[0]);
	}
	if (B.inflight)
		B.inflight--;
	return 0;
}

static void redis_pub_feed(struct conn *c)
{
	resp_feed(c, redis_pub_reply);
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
	char path[4096], payload[8192], req[13000];
	uint32_t u = next_user();
	struct user *us = &B.users[u - B.u0];
	int pl, n;

	if (expand(O.pub.path, u, path, sizeof path) < 0) {
		B.r.pub_errors++;
		return;
	}
	pl = make_payload(u, us->sent + 1, payload, sizeof payload);
	n = snprintf(req, sizeof req,
		     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
		     "Content-Length: %d\r\n\r\n%s",
		     path, O.pub.host, O.pub.port, pl, payload);
	if (send_all(c, req, (size_t)n) < 0) {
		B.r.pub_errors++;
		return;
	}
	us->sent++;
	B.r.sent++;
	c->busy = 1;
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
	if (B.redis.fd < 0)
		return;
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

static void poll_next(struct conn *c)
{
	if (c->fd < 0 || B.phase != P_RUN)
		return;
	if (sub_request(c) < 0)
		conn_close(c, 1);
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
		if (O.tr == TR_POLL && c->state == S_READY && B.phase != P_DONE) {
			/* keepalive_requests reached: reconnect and go on */
			close(c->fd);
			c->fd = -1;
			conn_free_in(c);
			B.r.reconnects++;
			sub_open(c);
			return;
		}
		if (O.tr == TR_WS && c->state == S_READY)
			record_close(1006);
		conn_close(c, 1);
		return;
	}
	if (in_append(c, B.scratch, (size_t)n) < 0) {
		conn_close(c, 1);
		return;
	}
	if (c->kind == K_PUB_REDIS) {
		redis_pub_feed(c);
		return;
	}
	if (feed(c) < 0) {
		if (c->kind == K_SUB && O.tr == TR_POLL && c->state == S_READY &&
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
		if (B.conns[i].state == S_READY)
			B.users[B.conns[i].user - B.u0].nconn++;
	B.active = calloc(nu ? nu : 1, sizeof *B.active);
	if (!B.active)
		die("out of memory");
	for (uint32_t u = 0; u < nu; u++)
		if (B.users[u].nconn)
			B.active[B.nactive++] = B.u0 + u;
}

static int redis_connect_blocking(void)
{
	char buf[512], cmd[65536];
	size_t sl = strlen(redis_script_publish.source);
	ssize_t r;
	int fd, n, fl;

	fd = open_socket(O.redis_host, O.redis_port, 0, 0);
	if (fd < 0)
		return -1;
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	{
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t el = sizeof err;
		if (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
		    err) {
			close(fd);
			return -1;
		}
	}
	if (sl + 64 > sizeof cmd) {
		close(fd);
		return -1;
	}
	n = snprintf(cmd, sizeof cmd, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%zu\r\n%s\r\n", sl,
		     redis_script_publish.source);
	if (write(fd, cmd, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	r = read(fd, buf, sizeof buf - 1);
	if (r <= 0 || buf[0] != '$') {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return fd;
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
	B.redis.fd = redis_connect_blocking();
	if (B.redis.fd < 0) {
		snprintf(B.r.pub_error, sizeof B.r.pub_error, "redis %s:%d: cannot load the script",
			 O.redis_host, O.redis_port);
		return;
	}
	B.redis.state = S_READY;
	ep_add(&B.redis, EPOLLIN);
}

static uint64_t sec_ns(double s)
{
	return (uint64_t)(s * 1e9);
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
	return have >= want;
}

static void child_finish(void)
{
	if (B.samples && fclose(B.samples) != 0)
		snprintf(B.r.pub_error, sizeof B.r.pub_error, "--samples: %s", strerror(errno));
	B.samples = NULL;
	for (long i = 0; i < B.nconns; i++) {
		struct conn *c = &B.conns[i];
		uint64_t want;

		if (c->state != S_READY)
			continue;
		want = B.users[c->user - B.u0].sent;
		B.r.expected += want;
		B.r.unique += c->unique;
		if (want > c->unique)
			B.r.lost += want - c->unique;
	}
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
					for (long i = 0; i < B.nconns; i++)
						if (B.conns[i].state == S_READY)
							poll_next(&B.conns[i]);
			}
		} else if (B.phase == P_RUN) {
			/* publishing is the timer's (publish_arm) */
			if (now - B.t_phase >= sec_ns(O.duration)) {
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
			if (now - B.t_run_end >= sec_ns(O.drain) || (O.tr != TR_POLL && drained()))
				break;
		} else {
			break;
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
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void print_result(const struct result *r, double connect_s, int children_lost)
{
	double run_s = (double)r->run_ns / 1e9;
	FILE *f = stdout;

	fputs("{\"tool\":\"herald-bench\",\"label\":", f);
	json_str(f, O.label ? O.label : "");
	fprintf(f, ",\"transport\":\"%s\",\"target\":", transport_names[O.tr]);
	if (O.tr == TR_REDIS) {
		char t[128];
		snprintf(t, sizeof t, "redis://%s:%d", O.redis_host, O.redis_port);
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
		r->sent, r->pub_errors, r->pub_skipped, r->expected, r->received, r->lost, r->dup,
		r->ooo, r->wrong_user, r->unparsed);
	fprintf(f,
		",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
		"\"mean_ms\":%.3f",
		ms(hist_quantile(&r->lat, 0.5)), ms(hist_quantile(&r->lat, 0.9)),
		ms(hist_quantile(&r->lat, 0.99)), ms(hist_quantile(&r->lat, 0.999)),
		ms(r->lat.max), r->lat.n ? ms(r->lat.sum / r->lat.n) : 0.0);
	fprintf(f, ",\"steal_ms\":%" PRId64, r->steal_ms);
	fprintf(f, ",\"sent_per_s\":%.0f,\"delivered_per_s\":%.0f",
		run_s > 0 ? (double)r->sent / run_s : 0.0,
		run_s > 0 ? (double)r->received / run_s : 0.0);
	if (O.tr == TR_POLL)
		fprintf(f,
			",\"polls\":%" PRIu64 ",\"polls_per_s\":%.0f,\"poll_errors\":%" PRIu64
			",\"reconnects\":%" PRIu64 ",\"poll_p50_ms\":%.3f,\"poll_p99_ms\":%.3f"
			",\"poll_max_ms\":%.3f",
			r->polls, run_s > 0 ? (double)r->polls / run_s : 0.0, r->poll_errors,
			r->reconnects, ms(hist_quantile(&r->poll, 0.5)),
			ms(hist_quantile(&r->poll, 0.99)), ms(r->poll.max));
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
	      "                           claims sub=user, iat, exp\n"
	      "      --token-ttl S        token lifetime in seconds (default 86400)\n"
	      "  -c, --concurrency K      connects in flight per process (default 256)\n"
	      "      --source-addrs K     spread source addresses over 127.1.0.1.. (K of them,\n"
	      "                           0 = let the kernel pick) (default 64)\n"
	      "      --connect-timeout S  the connect phase ends after S s (default 60)\n"
	      "\n"
	      "Publishing:\n"
	      "  -r, --rate R             messages per second over all users (default 0: idle)\n"
	      "  -R, --redis URL          redis://HOST:PORT: the publish script (EVALSHA) and the\n"
	      "                           floor's subscriptions (default redis://127.0.0.1:6379)\n"
	      "      --prefix P           channel prefix (default notifications)\n"
	      "      --publish-url URL    publish by HTTP POST to this template instead ({user}:\n"
	      "                           e.g. Nchan's http://HOST:PORT/pub/{user})\n"
	      "      --pub-conns K        keep-alive HTTP publisher connections (default 8)\n"
	      "      --payload-bytes B    pad each payload to about B bytes\n"
	      "\n"
	      "Timing (the run always ends by itself):\n"
	      "  -d, --duration S         publish (or poll) for S s (default 5); with rate 0 the\n"
	      "                           connections are held idle this long\n"
	      "      --settle S           wait after all connected, before publishing (default 1)\n"
	      "      --drain S            wait at most S s for the last messages (default 3)\n"
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
	      "(and polls_per_s for poll).  Exit status 0, 1 when a connection\n"
	      "failed or a message was lost or duplicated, 2 on bad usage.\n",
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
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch, i;

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
		case 'R':
			if (parse_redis_url(optarg) < 0)
				die("--redis: expected redis://HOST:PORT, not '%s'", optarg);
			break;
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
	deadline = t0 + sec_ns(O.connect_timeout + O.settle + O.duration + O.drain + 30);
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
	for (int i = 0; i < O.procs; i++)
		if (got[i] == sizeof res[i])
			merge(&total, &res[i]);
	print_result(&total, t_ready ? (double)(t_ready - t0) / 1e9 : 0.0, lost_children);
	free(res);
	return total.failed || total.lost || total.dup || total.closed_early || lost_children ? 1
											     : 0;
}
