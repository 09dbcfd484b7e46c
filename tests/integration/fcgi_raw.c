/*
 * fcgi_raw: one FastCGI request straight to herald-fcgi's unix socket,
 * written in two parts with a pause between them, the way a slow or busy
 * web server may write it.
 *
 *   fcgi_raw SOCKET URI QUERY SPLIT PAUSE_MS SECONDS [IDLE_S]
 *
 * Sends BEGIN_REQUEST (keep the connection), the parameters of a GET of
 * URI?QUERY, the empty PARAMS and the empty STDIN.  The first SPLIT bytes
 * go first (0: everything in one write), the rest PAUSE_MS later.  Prints
 * the response's STDOUT content as it arrives, until END_REQUEST (exit 0)
 * or SECONDS pass (exit 1), or the connection closes (exit 2, also when
 * the server closed it during the pause).  With IDLE_S, after END_REQUEST
 * it keeps the connection (as nginx keeps one alive) and waits for the
 * server to close it: exit 0 when it does within IDLE_S seconds (the wait
 * printed on stderr), 3 when it is still open then.  A negative IDLE_S
 * first writes the first SPLIT bytes of the same request again on the
 * kept-alive connection (half a second request, then silence: a peer that
 * hangs mid-request between requests) and then waits -IDLE_S seconds so.
 * IDLE_S gN writes an HTTP request line instead (not FastCGI) on the
 * kept-alive connection and waits N seconds so.  IDLE_S aN URI2 QUERY2
 * waits N seconds on the kept-alive connection (or less: until SIGUSR1,
 * so a test sends the second request when it has set the stage, not after
 * a guess at how long that takes), then sends a GET of URI2?QUERY2 on it
 * (in one write) and prints its answer the same way: exit 0 at its
 * END_REQUEST.
 *
 *   fcgi_raw SOCKET URI QUERY SPLIT PAUSE_MS SECONDS aN URI2 QUERY2
 */
#include "config.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* After END_REQUEST: wait up to idle_s for the server to close fd. */
static int wait_closed(int fd, double idle_s)
{
	struct timespec t0, t1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char b[256];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		double waited;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (waited >= idle_s)
			return 3;
		if (poll(&p, 1, 100) <= 0)
			continue;
		if (read(fd, b, sizeof b) <= 0) {
			fprintf(stderr, "fcgi_raw: closed by the server after %.1f s idle\n", waited);
			return 0;
		}
	}
}

#include "fcgi_record.h"

static volatile sig_atomic_t go; /* SIGUSR1: send the second request now */

static void on_go(int sig)
{
	(void)sig;
	go = 1;
}

/* Sleep wait_s seconds, or until SIGUSR1 came (also before the call). */
static void wait_or_go(double wait_s)
{
	struct timespec t0, t1, tick = {0, 10 * 1000000L};

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!go) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 >= wait_s)
			return;
		nanosleep(&tick, NULL);
	}
}

/* A name's or value's length: one byte below 128, else four (FastCGI 3.4). */
static size_t put_len(unsigned char *out, size_t n)
{
	if (n < 128) {
		out[0] = (unsigned char)n;
		return 1;
	}
	out[0] = (unsigned char)(0x80 | (n >> 24));
	out[1] = (unsigned char)(n >> 16);
	out[2] = (unsigned char)(n >> 8);
	out[3] = (unsigned char)n;
	return 4;
}

/* One name-value pair. */
static size_t pair(unsigned char *out, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value), k = 0;

	k += put_len(out + k, nl);
	k += put_len(out + k, vl);
	memcpy(out + k, name, nl);
	memcpy(out + k + nl, value, vl);
	return k + nl + vl;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A keep-alive GET of uri?query as nginx sends it, into req (8 KiB): its length. */
static size_t build(unsigned char *req, const char *uri, const char *query)
{
	unsigned char params[4096];
	size_t n = 0, pl = 0;

	pl += pair(params + pl, "REQUEST_METHOD", "GET");
	pl += pair(params + pl, "SCRIPT_NAME", uri);
	pl += pair(params + pl, "DOCUMENT_URI", uri);
	pl += pair(params + pl, "REQUEST_URI", uri);
	pl += pair(params + pl, "QUERY_STRING", query);
	fcgi_header_put(req + n, FCGI_T_BEGIN_REQUEST, 1, 8, 0);
	n += FCGI_HEADER_LEN;
	memset(req + n, 0, 8);
	req[n + 1] = 1; /* responder */
	req[n + 2] = 1; /* FCGI_KEEP_CONN */
	n += 8;
	fcgi_header_put(req + n, FCGI_T_PARAMS, 1, pl, 0);
	n += FCGI_HEADER_LEN;
	memcpy(req + n, params, pl);
	n += pl;
	fcgi_header_put(req + n, FCGI_T_PARAMS, 1, 0, 0);
	n += FCGI_HEADER_LEN;
	fcgi_header_put(req + n, FCGI_T_STDIN, 1, 0, 0);
	n += FCGI_HEADER_LEN;
	return n;
}

int main(int argc, char **argv)
{
	unsigned char req[8192], in[65536 + 8];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n, split, have = 0;
	struct timespec pause;
	double deadline;
	int fd, again = 0;

	if (argc != 7 && argc != 8 && !(argc == 10 && argv[7][0] == 'a')) {
		fprintf(stderr, "usage: fcgi_raw SOCKET URI QUERY SPLIT PAUSE_MS SECONDS [IDLE_S]\n"
				"       fcgi_raw SOCKET URI QUERY SPLIT PAUSE_MS SECONDS aN URI2 QUERY2\n");
		return 2;
	}
	if (strlen(argv[2]) + strlen(argv[3]) > 2048 ||
	    (argc == 10 && strlen(argv[8]) + strlen(argv[9]) > 2048)) {
		fprintf(stderr, "fcgi_raw: URI and QUERY too long\n");
		return 2;
	}
	split = (size_t)atol(argv[4]);
	pause.tv_sec = atol(argv[5]) / 1000;
	pause.tv_nsec = atol(argv[5]) % 1000 * 1000000L;
	deadline = (double)time(NULL) + atof(argv[6]);
	n = build(req, argv[2], argv[3]);
	if (split > n)
		split = n;

	signal(SIGPIPE, SIG_IGN); /* a write after the server closed: exit 2 */
	signal(SIGUSR1, on_go);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		perror("fcgi_raw: connect");
		return 2;
	}
	if (split > 0) {
		if (write_all(fd, req, split) != 0)
			return 2;
		nanosleep(&pause, NULL);
	}
	if (write_all(fd, req + split, n - split) != 0)
		return 2;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct fcgi_header h;
		ssize_t r;

		while (have >= FCGI_HEADER_LEN) {
			if (fcgi_header_get(in, &h) != 0)
				return 2;
			if (have < FCGI_HEADER_LEN + h.clen + h.plen)
				break;
			if (h.type == FCGI_T_STDOUT)
				fwrite(in + FCGI_HEADER_LEN, 1, h.clen, stdout);
			fflush(stdout);
			if (h.type == FCGI_T_END_REQUEST && argc == 10 && !again) {
				double wait_s = atof(argv[7] + 1);
				size_t n2;

				wait_or_go(wait_s);
				deadline += wait_s;
				n2 = build(req, argv[8], argv[9]);
				if (write_all(fd, req, n2) != 0)
					return 2;
				again = 1;
				have -= FCGI_HEADER_LEN + h.clen + h.plen;
				memmove(in, in + FCGI_HEADER_LEN + h.clen + h.plen, have);
				continue;
			}
			if (h.type == FCGI_T_END_REQUEST && argc == 10)
				return 0;
			if (h.type == FCGI_T_END_REQUEST && argc == 8 && argv[7][0] == 'g') {
				static const char http[] = "GET / HTTP/1.0\r\n\r\n";

				return write_all(fd, (const unsigned char *)http, sizeof http - 1) != 0
					       ? 2
					       : wait_closed(fd, atof(argv[7] + 1));
			}
			if (h.type == FCGI_T_END_REQUEST && argc == 8 && atof(argv[7]) < 0)
				return write_all(fd, req, split > 0 ? split : n / 2) != 0
					       ? 2
					       : wait_closed(fd, -atof(argv[7]));
			if (h.type == FCGI_T_END_REQUEST)
				return argc == 8 ? wait_closed(fd, atof(argv[7])) : 0;
			have -= FCGI_HEADER_LEN + h.clen + h.plen;
			memmove(in, in + FCGI_HEADER_LEN + h.clen + h.plen, have);
		}
		if ((double)time(NULL) >= deadline)
			return 1;
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(fd, in + have, sizeof in - have);
		if (r <= 0)
			return 2;
		have += (size_t)r;
	}
}
