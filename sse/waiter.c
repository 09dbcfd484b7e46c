#include "config.h"

#include "waiter.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "err.h"

#define WAITER_OF(c) ((struct waiter *)((char *)(c) - offsetof(struct waiter, conn)))

static void poke(struct waiter *w)
{
	uint64_t one = 1;

	/* The counter only grows; a full counter (never in practice) still wakes. */
	while (write(w->efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static void on_wake(struct hub_conn *c)
{
	poke(WAITER_OF(c));
}

static void on_close(struct hub_conn *c, int reason)
{
	struct waiter *w = WAITER_OF(c);

	atomic_store(&w->closed, reason);
	poke(w);
}

static const struct hub_conn_ops waiter_ops = {
	.wake = on_wake,
	.close = on_close,
};

int waiter_init(struct waiter *w, struct hub *h)
{
	w->hub = h;
	w->conn.ops = &waiter_ops;
	atomic_init(&w->closed, 0);
	w->attached = 0;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return w->efd < 0 ? HERR_IO : 0;
}

int waiter_attach(struct waiter *w, const char *user, const struct cursor *since)
{
	int rc = hub_attach(w->hub, &w->conn, user, since);

	if (rc == 0)
		w->attached = 1;
	return rc;
}

int waiter_wait(struct waiter *w, int fd, int timeout_ms)
{
	struct pollfd p[2] = {
		{.fd = w->efd, .events = POLLIN},
		{.fd = fd, .events = POLLIN | POLLRDHUP},
	};
	int n;

	if (atomic_load(&w->closed))
		return WAITER_CLOSED;
	do
		n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return HERR_IO;
	if (fd >= 0 && p[1].revents)
		return WAITER_HANGUP;
	if (p[0].revents & POLLIN) {
		uint64_t v;

		while (read(w->efd, &v, sizeof v) < 0 && errno == EINTR)
			;
		return atomic_load(&w->closed) ? WAITER_CLOSED : WAITER_READY;
	}
	return WAITER_TIMEOUT;
}

struct hub_msg *waiter_pop(struct waiter *w)
{
	return w->attached ? hub_pop(w->hub, &w->conn) : NULL;
}

void waiter_fini(struct waiter *w)
{
	if (w->attached)
		hub_detach(w->hub, &w->conn);
	w->attached = 0;
	if (w->efd >= 0)
		close(w->efd);
	w->efd = -1;
}
