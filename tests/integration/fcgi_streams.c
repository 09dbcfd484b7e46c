/*
 * fcgi_streams: hold N SSE streams through nginx and count their events.
 *
 *   fcgi_streams PORT TOKENS N WANT SECONDS
 *
 * Opens N connections to 127.0.0.1:PORT, GET /api/v1/sse/notifications with
 * the tokens of file TOKENS (one per line, used round-robin).  Prints
 * "ready" once every stream has its `retry:` line, then waits until every
 * stream saw WANT notification events (`event: notification`; the
 * `event: cursor` a stream without Last-Event-ID starts with is not one),
 * or every stream was ended by the server (its last chunk, or the
 * connection closed), or
 * SECONDS pass; prints a summary ("streams N ready R complete C closed K")
 * and exits 0 when all got them.  Then it closes everything at once.  The
 * open-files limit must allow N descriptors.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct st {
	int fd;
	int ready;
	int ids;
	int closed;
	char tail[24];	 /* the last bytes, to find markers across reads */
	char status[48]; /* the response's status line, for the report */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Count notification events and see "retry:" in the stream, markers split
 * across reads included; a response that ended (the last chunk: nginx then
 * keeps the connection alive, for 75 s by default) counts as closed. */
static void scan(struct st *s, const char *buf, size_t n)
{
	static const char mark[] = "\nevent: notification\n";
	const size_t ml = sizeof mark - 1, keep = sizeof mark - 2;
	char tmp[sizeof s->tail + 65536];
	size_t tl = strlen(s->tail), len = tl + n;

	memcpy(tmp, s->tail, tl);
	memcpy(tmp + tl, buf, n);
	tmp[len] = '\0';
	if (s->status[0] == '\0')
		snprintf(s->status, sizeof s->status, "%.*s", (int)strcspn(tmp, "\r\n"), tmp);
	for (const char *p = tmp; (p = strstr(p, mark)) != NULL; p++) {
		if ((size_t)(p - tmp) + ml > tl) /* not already counted in the tail */
			s->ids++;
	}
	if (!s->ready && strstr(tmp, "retry: ") != NULL)
		s->ready = 1;
	if (len >= 7 && memcmp(tmp + len - 7, "\r\n0\r\n\r\n", 7) == 0)
		s->closed = 1;
	if (len >= keep) {
		memcpy(s->tail, tmp + len - keep, keep);
		s->tail[keep] = '\0';
	} else {
		memcpy(s->tail, tmp, len + 1);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char **tokens = NULL, line[4096];
	size_t ntok = 0;
	struct st *st;
	struct pollfd *pf;
	FILE *f;
	int n, want, ready = 0, all = 0;
	double end;

	if (argc != 6) {
		fprintf(stderr, "usage: fcgi_streams PORT TOKENS N WANT SECONDS\n");
		return 2;
	}
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	n = atoi(argv[3]);
	want = atoi(argv[4]);
	end = now_s() + atof(argv[5]);
	f = fopen(argv[2], "r");
	if (f == NULL)
		return 2;
	while (fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		char **nt = realloc(tokens, (ntok + 1) * sizeof *tokens);

		if (nt == NULL)
			return 2;
		tokens = nt;
		tokens[ntok++] = strdup(line);
	}
	fclose(f);
	st = calloc((size_t)n, sizeof *st);
	pf = calloc((size_t)n, sizeof *pf);
	if (ntok == 0 || st == NULL || pf == NULL)
		return 2;
	for (int i = 0; i < n; i++) {
		char req[4096 + 256];
		int len;

		st[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		if (st[i].fd < 0 || connect(st[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
			fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
			return 1;
		}
		len = snprintf(req, sizeof req,
			       "GET /api/v1/sse/notifications HTTP/1.1\r\nHost: t\r\n"
			       "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n",
			       tokens[(size_t)i % ntok]);
		if (write(st[i].fd, req, (size_t)len) != len)
			return 1;
		pf[i].fd = st[i].fd;
		pf[i].events = POLLIN;
	}
	while (now_s() < end) {
		int r = poll(pf, (nfds_t)n, 100);

		for (int i = 0; r > 0 && i < n; i++) {
			char buf[65536];
			ssize_t k;

			if (!pf[i].revents)
				continue;
			k = read(st[i].fd, buf, sizeof buf);
			if (k <= 0) {
				st[i].closed = 1;
				pf[i].fd = -1;
				continue;
			}
			scan(&st[i], buf, (size_t)k);
			if (st[i].closed)
				pf[i].fd = -1;
		}
		if (!ready) {
			int c = 0;

			for (int i = 0; i < n; i++)
				c += st[i].ready;
			if (c == n) {
				ready = 1;
				printf("ready\n");
				fflush(stdout);
			}
		}
		if (ready) {
			int c = 0, closed = 0;

			for (int i = 0; i < n; i++) {
				c += st[i].ids >= want;
				closed += st[i].closed;
			}
			if (c == n) {
				all = 1;
				break;
			}
			if (closed == n)
				break;
		}
	}
	{
		int r = 0, got = 0, closed = 0;

		for (int i = 0; i < n; i++) {
			r += st[i].ready;
			got += st[i].ids >= want;
			closed += st[i].closed;
		}
		printf("streams %d ready %d complete %d closed %d\n", n, r, got, closed);
		for (int i = 0; i < n; i++) {
			if (st[i].closed && !st[i].ready) { /* why the first of them ended early */
				printf("stream %d ended before its first event: '%s'\n", i, st[i].status);
				break;
			}
		}
	}
	for (int i = 0; i < n; i++)
		close(st[i].fd);
	for (size_t i = 0; i < ntok; i++)
		free(tokens[i]);
	free(tokens);
	free(st);
	free(pf);
	return all ? 0 : 1;
}
