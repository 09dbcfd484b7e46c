#include "config.h"

#include "waiter.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "err.h"

#define WAITER_OF(c) ((struct waiter *)((char *)(c) - offsetof(struct waiter, conn)))

/* A real-time signal nothing else in the process uses. */
#define WAKE_SIGNAL (SIGRTMIN + 4)

static sigset_t wait_mask; /* the blocked mask, less WAKE_SIGNAL: for ppoll */

static void on_wake_signal(int sig)
{
	(void)sig; /* it only interrupts ppoll() */
}

int waiter_setup(void)
{
	struct sigaction sa;
	sigset_t wake;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_wake_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(WAKE_SIGNAL, &sa, NULL) != 0) /* no SA_RESTART: EINTR */
		return HERR_IO;
	sigemptyset(&wake);
	sigaddset(&wake, WAKE_SIGNAL);
	if (pthread_sigmask(SIG_BLOCK, &wake, &wait_mask) != 0)
		return HERR_IO;
	sigdelset(&wait_mask, WAKE_SIGNAL);
	return 0;
}

/*
 * Called by the hub under its lock while w is attached; the thread cannot
 * have exited then (it detaches first), so pthread_kill() is safe.  The
 * flag is set before the signal: a signal that lands outside ppoll() stays
 * pending (blocked) and ends the next ppoll() at once, and the flag is read
 * before every ppoll(), so no wake-up is lost.
 */
static void poke(struct waiter *w)
{
	atomic_store(&w->pending, 1);
	pthread_kill(w->thread, WAKE_SIGNAL);
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
	w->thread = pthread_self();
	atomic_init(&w->pending, 0);
	atomic_init(&w->closed, 0);
	w->attached = 0;
	return 0;
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
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000};
	int n;

	if (atomic_load(&w->closed))
		return WAITER_CLOSED;
	if (atomic_exchange(&w->pending, 0))
		return WAITER_READY;
	n = ppoll(&p, fd >= 0 ? 1 : 0, timeout_ms >= 0 ? &ts : NULL, &wait_mask);
	if (n < 0 && errno == EINTR) {
		/* the hub's signal (or another): the callers re-check their clocks */
		if (atomic_load(&w->closed))
			return WAITER_CLOSED;
		atomic_store(&w->pending, 0);
		return WAITER_READY;
	}
	if (n < 0)
		return HERR_IO;
	if (n > 0)
		return WAITER_HANGUP;
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
}
