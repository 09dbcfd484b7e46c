/*
 * ws_client - a small WebSocket client for herald-ws's integration tests,
 * so the shell tests depend on nothing from the network.  It prints one
 * line per event on stdout (flushed at once):
 *   status CODE          the HTTP status of the handshake
 *   header NAME: VALUE   with --headers, every response header
 *   text PAYLOAD         a text message
 *   cursor ID            with -C, the server's {"type":"cursor","cursor":"ID"},
 *                        sent first on a connection without since= (never a
 *                        text message: not printed without -C, not counted
 *                        by -n and -q)
 *   ping / pong          control frames
 *   close CODE REASON    the server's close frame
 *   eof                  the server closed TCP without a close frame
 *   timeout              --timeout passed
 *
 * ws_client [options] ADDR PATH     ADDR: host:port or unix:/path
 *   -H 'Name: value'   extra request header (repeatable)
 *   -n N               exit after N text messages (sending close 1000)
 *   -t SECONDS         give up after this long (default 10)
 *   -s HEX             after the handshake, send these raw bytes
 *   -S TEXT            after the handshake, send a masked text frame
 *   -D MS              send -S's frame this long after the handshake instead, while
 *                      reading (prints "sent" then)
 *   -r HEX             send these raw bytes instead of a handshake, print the reply's status
 *   -x HEX             send these raw bytes first, then the handshake (a PROXY protocol header)
 *   -p SECONDS         pause reading this long after the handshake (slow consumer),
 *                      with a small receive buffer
 *   -q                 do not print text payloads (count them: "texts N" at the end)
 *   -C                 print the server's cursor message ("cursor ID")
 *   -P                 do not answer pings
 *   -L                 print "lag MS" per message from the envelope's ts
 *   -m N               open N connections and hold them until stdin closes (prints
 *                      "open N" when all are up, "closed K" for those the server closed)
 *   -o N               like -m but half-open: send "GET / HT" and nothing more, then
 *                      report after -t how many the server closed ("closed K of N")
 *   -v 13              Sec-WebSocket-Version to send
 *   -h                 print the response headers ("header ..." lines)
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ws_frame.h"

static const char *hdrs[16];
static int nhdrs;
static int silent; /* -m: no per-connection lines */

static long long now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static size_t unhex(const char *h, uint8_t *out, size_t max)
{
	size_t n = 0;

	while (h[0] != '\0' && h[1] != '\0' && n < max) {
		unsigned v;

		if (sscanf(h, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

/* Read until deadline into buf; returns bytes or -1 on EOF/error, 0 on timeout. */
static ssize_t read_some(int fd, void *buf, size_t n, long long deadline)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	long long left = deadline - now_ms();
	ssize_t r;

	if (left <= 0)
		return 0;
	if (poll(&pfd, 1, (int)left) <= 0)
		return 0;
	r = recv(fd, buf, n, 0);
	if (r <= 0)
		return -1;
	return r;
}

static int handshake(int fd, const char *path, const char *version)
{
	char req[12288];
	int n, i;

	n = snprintf(req, sizeof req,
		     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: %s\r\n",
		     path, version);
	for (i = 0; i < nhdrs; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", hdrs[i]);
	n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
	return client_write_all(fd, req, (size_t)n);
}

/* Read the response headers; leftover bytes (frames) go to *extra. */
static int read_response(int fd, long long deadline, uint8_t *extra, size_t *extra_len,
			 int print_headers)
{
	static char buf[16384];
	size_t len = 0;
	char *end = NULL;
	int status = 0;

	while (end == NULL) {
		ssize_t r = read_some(fd, buf + len, sizeof buf - 1 - len, deadline);

		if (r <= 0) {
			if (len > 0)
				break;
			if (!silent)
				printf(r == 0 ? "timeout\n" : "eof\n");
			return -1;
		}
		len += (size_t)r;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		status = 0;
	if (!silent)
		printf("status %d\n", status);
	if (print_headers) {
		char *line = strstr(buf, "\r\n");

		while (line != NULL && line + 2 < (end != NULL ? end : buf + len)) {
			char *next = strstr(line + 2, "\r\n");

			if (next == NULL)
				break;
			printf("header %.*s\n", (int)(next - line - 2), line + 2);
			line = next;
		}
	}
	if (end != NULL) {
		size_t hl = (size_t)(end - buf) + 4;

		*extra_len = len - hl;
		memcpy(extra, buf + hl, *extra_len);
	}
	fflush(stdout);
	return status;
}

static int send_frame(int fd, int opcode, const void *p, size_t n)
{
	static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
	uint8_t out[WSF_MSG_MAX * 2 + 16];
	long w = wsf_write_frame(out, sizeof out, 1, opcode, key, p, n);

	return w < 0 ? -1 : client_write_all(fd, out, (size_t)w);
}

/* What the server sent, read whole frames at a time. */
struct rx {
	uint8_t buf[1 << 20];
	size_t len;
};

/* The next frame of x: 1 with *f and *total (its bytes), 0 for more, -1 when
 * bad (a masked server frame among them). */
static int next_frame(struct rx *x, struct wsf_frame *f, size_t *total)
{
	long n = wsf_frame_read(x->buf, x->len, sizeof x->buf, f);

	if (n <= 0)
		return n < 0 ? -1 : 0;
	if (f->masked)
		return -1;
	*total = (size_t)n;
	return 1;
}

static int hold(const char *addr, const char *path, int n, int half, int timeout)
{
	int *fds = calloc((size_t)n, sizeof *fds);
	int i, opened = 0, closed = 0;
	struct rlimit rl;
	long long deadline;
	uint8_t extra[4096];
	size_t el;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	for (i = 0; i < n; i++) {
		fds[i] = client_dial("ws_client", addr, 0);
		if (fds[i] < 0)
			break;
		if (half) {
			if (client_write_all(fds[i], "GET / HT", 8) != 0)
				break;
		} else {
			if (handshake(fds[i], path, "13") != 0)
				break;
		}
		opened++;
	}
	if (!half) {
		silent = 1;
		for (i = 0; i < opened; i++)
			if (read_response(fds[i], now_ms() + 10000, extra, &el, 0) != 101)
				closed++;
		silent = 0;
	}
	printf("open %d\n", opened - closed);
	fflush(stdout);
	if (half) {
		/* count the sockets the server closes before the deadline */
		deadline = now_ms() + timeout * 1000LL;
		for (i = 0; i < opened; i++) {
			char b[512];
			ssize_t r;

			while ((r = read_some(fds[i], b, sizeof b, deadline)) > 0)
				;
			if (r < 0)
				closed++;
		}
		printf("closed %d of %d\n", closed, opened);
	} else {
		char b[64];

		while (read(0, b, sizeof b) > 0)
			;
		printf("closed %d\n", closed);
	}
	for (i = 0; i < opened; i++)
		close(fds[i]);
	free(fds);
	return opened == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *send_hex = NULL, *send_text = NULL, *raw = NULL, *version = "13", *pre = NULL;
	int want = -1, timeout = 10, pause_s = 0, quiet = 0, no_pong = 0, lag = 0, many = 0,
	    cursor = 0, half = 0, opt, fd, status, texts = 0, headers = 0, delay_ms = 0;
	long long send_at = 0;
	static struct rx x;
	long long deadline;
	uint8_t sb[8192];

	while ((opt = getopt(argc, argv, "H:n:t:s:S:D:r:x:p:qCPLm:o:v:h")) != -1) {
		switch (opt) {
		case 'H':
			if (nhdrs < 16)
				hdrs[nhdrs++] = optarg;
			break;
		case 'n': want = atoi(optarg); break;
		case 't': timeout = atoi(optarg); break;
		case 's': send_hex = optarg; break;
		case 'S': send_text = optarg; break;
		case 'D': delay_ms = atoi(optarg); break;
		case 'r': raw = optarg; break;
		case 'x': pre = optarg; break;
		case 'p': pause_s = atoi(optarg); break;
		case 'q': quiet = 1; break;
		case 'C': cursor = 1; break;
		case 'P': no_pong = 1; break;
		case 'L': lag = 1; break;
		case 'm': many = atoi(optarg); break;
		case 'o': many = atoi(optarg); half = 1; break;
		case 'v': version = optarg; break;
		case 'h': headers = 1; break;
		default:
			fprintf(stderr, "usage: ws_client [options] ADDR PATH (see the source)\n");
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: ws_client [options] ADDR PATH\n");
		return 2;
	}
	if (many > 0)
		return hold(argv[optind], argv[optind + 1], many, half, timeout);
	deadline = now_ms() + timeout * 1000LL;
	fd = client_dial("ws_client", argv[optind], pause_s > 0 ? 4096 : 0);
	if (fd < 0)
		return 1;
	if (pre != NULL) {
		size_t n = unhex(pre, sb, sizeof sb);

		if (client_write_all(fd, sb, n) != 0)
			return 1;
	}
	if (raw != NULL) {
		size_t n = unhex(raw, sb, sizeof sb);

		if (client_write_all(fd, sb, n) != 0)
			return 1;
	} else if (handshake(fd, argv[optind + 1], version) != 0) {
		return 1;
	}
	status = read_response(fd, deadline, x.buf, &x.len, headers);
	if (status != 101) {
		close(fd);
		return status > 0 ? 0 : 1;
	}
	if (send_hex != NULL) {
		size_t n = unhex(send_hex, sb, sizeof sb);

		if (client_write_all(fd, sb, n) != 0)
			printf("send failed\n");
	}
	if (send_text != NULL && delay_ms > 0)
		send_at = now_ms() + delay_ms;
	else if (send_text != NULL)
		send_frame(fd, WSF_OP_TEXT, send_text, strlen(send_text));
	if (pause_s > 0) {
		sleep((unsigned)pause_s);
		deadline += pause_s * 1000LL;
	}
	for (;;) {
		struct wsf_frame f;
		size_t total;
		ssize_t r;
		int rc;

		while ((rc = next_frame(&x, &f, &total)) == 1) {
			static const char cur[] = "{\"type\":\"cursor\",\"cursor\":\"";
			int op = f.opcode;
			const uint8_t *pl = f.payload;
			size_t n = f.len;

			if (op == WSF_OP_TEXT && n > sizeof cur - 1 &&
			    memcmp(pl, cur, sizeof cur - 1) == 0) {
				const uint8_t *id = pl + sizeof cur - 1;
				const uint8_t *e = memchr(id, '"', n - (sizeof cur - 1));

				if (cursor)
					printf("cursor %.*s\n", e != NULL ? (int)(e - id) : 0,
					       (const char *)id);
			} else if (op == WSF_OP_TEXT) {
				texts++;
				if (lag) {
					const char *ts = memmem(pl, n, "\"ts\":", 5);

					if (ts != NULL)
						printf("lag %lld\n", now_ms() - atoll(ts + 5));
				} else if (!quiet) {
					printf("text %.*s\n", (int)n, (const char *)pl);
				}
			} else if (op == WSF_OP_PING) {
				printf("ping\n");
				if (!no_pong)
					send_frame(fd, WSF_OP_PONG, pl, n);
			} else if (op == WSF_OP_PONG) {
				printf("pong\n");
			} else if (op == WSF_OP_CLOSE) {
				int code = wsf_close_code(pl, n);

				if (quiet)
					printf("texts %d\n", texts);
				printf("close %d %.*s\n", code, n > 2 ? (int)n - 2 : 0, pl + 2);
				fflush(stdout);
				send_frame(fd, WSF_OP_CLOSE, pl, n >= 2 ? 2 : 0);
				close(fd);
				return 0;
			} else {
				printf("frame op %d\n", op);
			}
			fflush(stdout);
			memmove(x.buf, x.buf + total, x.len - total);
			x.len -= total;
			if (want >= 0 && texts >= want) {
				uint8_t pl2[2] = {0x03, 0xe8};

				if (quiet)
					printf("texts %d\n", texts);
				send_frame(fd, WSF_OP_CLOSE, pl2, 2);
				close(fd);
				return 0;
			}
		}
		if (rc < 0) {
			printf("bad frame\n");
			return 1;
		}
		if (send_at != 0 && now_ms() >= send_at) {
			send_frame(fd, WSF_OP_TEXT, send_text, strlen(send_text));
			send_at = 0;
			printf("sent\n");
			fflush(stdout);
		}
		r = read_some(fd, x.buf + x.len, sizeof x.buf - x.len,
			      send_at != 0 && send_at < deadline ? send_at : deadline);
		if (r == 0 && now_ms() < deadline)
			continue;
		if (r == 0) {
			if (quiet)
				printf("texts %d\n", texts);
			printf("timeout\n");
			return 0;
		}
		if (r < 0) {
			if (quiet)
				printf("texts %d\n", texts);
			printf("eof\n");
			return 0;
		}
		x.len += (size_t)r;
	}
}
