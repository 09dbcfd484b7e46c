/* notify.c - the sd_notify protocol in one datagram (see notify.h). */
#include "config.h"

#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

int notify_send_to(const char *addr, const char *state)
{
	struct sockaddr_un sa;
	socklen_t salen;
	size_t len;
	ssize_t n;
	int fd, saved;

	if (addr == NULL || addr[0] == '\0')
		return 0;
	if (state == NULL || (addr[0] != '/' && addr[0] != '@'))
		return HERR_INVAL;
	len = strlen(addr);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	/* A path needs its terminating NUL to fit; an abstract name does not
	 * (its length is the address length), its '@' becomes the NUL. */
	if (addr[0] == '/' ? len >= sizeof sa.sun_path : len > sizeof sa.sun_path)
		return HERR_INVAL;
	memcpy(sa.sun_path, addr, len);
	if (addr[0] == '@') {
		sa.sun_path[0] = '\0';
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return HERR_IO;
	n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	saved = errno;
	close(fd);
	if (n < 0) {
		errno = saved;
		return HERR_IO;
	}
	return 1;
}

int notify_send(const char *state)
{
	return notify_send_to(getenv("NOTIFY_SOCKET"), state);
}

int notify_ready(const char *status)
{
	char buf[512];

	if (status == NULL)
		return notify_send("READY=1");
	snprintf(buf, sizeof buf, "READY=1\nSTATUS=%s", status);
	return notify_send(buf);
}

int notify_reloading(void)
{
	struct timespec ts;
	char buf[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	return notify_send(buf);
}

int notify_stopping(void)
{
	return notify_send("STOPPING=1");
}
