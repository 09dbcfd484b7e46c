#include "config.h"

#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int client_dial(const char *prog, const char *addr, int rcvbuf)
{
	int fd = -1;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s", addr + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
			goto fail;
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		struct addrinfo hints, *res;
		int one = 1, rc;

		if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
			errno = EINVAL;
			goto fail;
		}
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		memset(&hints, 0, sizeof hints);
		hints.ai_socktype = SOCK_STREAM;
		rc = getaddrinfo(host, colon + 1, &hints, &res);
		if (rc != 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, addr, gai_strerror(rc));
			return -1;
		}
		fd = socket(res->ai_family, SOCK_STREAM, 0);
		if (fd >= 0 && rcvbuf > 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
		if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
			freeaddrinfo(res);
			goto fail;
		}
		freeaddrinfo(res);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
fail:
	fprintf(stderr, "%s: connect %s: %s\n", prog, addr, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int client_write_all(int fd, const void *b, size_t n)
{
	const char *p = b;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pfd = {fd, POLLOUT, 0};

				poll(&pfd, 1, 1000);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}
