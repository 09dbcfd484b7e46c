/*
 * listen.h - the listening socket of herald-ws and herald-fcgi.
 *
 * One address syntax for both programs and for `listen` in the
 * configuration: "host:port" ("[::1]:8000", ":8000" for every address) or
 * "unix:/path".  A unix socket gets the configured mode and owner so that
 * nginx's user can connect; a stale socket file is replaced, but any other
 * file at the path is an error, never deleted.
 */
#ifndef HERALD_LISTEN_H
#define HERALD_LISTEN_H

#include <stddef.h>

struct listen_opts {
	int nonblock;      /* SOCK_NONBLOCK (an event loop) */
	int reuseport;     /* SO_REUSEPORT, so workers share a TCP port */
	long mode;         /* unix: chmod to this when > 0 */
	const char *owner; /* unix: "user", "user:group" or ":group"; NULL keeps ours */
	int backlog;       /* listen(2) backlog; 0 means 4096 */
};

/*
 * Opens, binds and listens on addr.  Returns the fd (close-on-exec), or -1
 * with a message naming the address and the cause in err.
 */
int listen_open(const char *addr, const struct listen_opts *o, char *err, size_t errlen);

/* The path of a "unix:/path" address, or NULL for host:port. */
const char *listen_unix_path(const char *addr);

/*
 * Splits "host:port" into host (brackets of an IPv6 literal removed; empty
 * for ":port") and port.  Returns 0, or HERR_INVAL when there is no port or
 * host does not fit.
 */
int listen_split(const char *addr, char *host, size_t hostlen, const char **port);

/*
 * How many connections a process may hold: the open-files limit
 * (RLIMIT_NOFILE, soft) less keep, the descriptors it needs for anything
 * else (its Redis links, the listener, the log, some slack), so that at
 * the cap Redis can still be reached, instead of every socket, Redis
 * links included, failing with EMFILE.  Half the limit when keep would
 * take more than half; 0 (no cap) when the limit is unknown or infinite.
 */
unsigned listen_nofile_cap(unsigned long long keep);

#endif
