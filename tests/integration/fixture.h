/*
 * fixture.h - a real redis-server for integration tests, on a free
 * 127.0.0.1 port in a fresh temporary directory, started and stopped by the
 * test itself (so a test can kill and restart it mid-way).
 */
#ifndef HERALD_TEST_FIXTURE_H
#define HERALD_TEST_FIXTURE_H

#include <sys/types.h>

struct redis_fixture {
	pid_t pid;        /* 0 when not running */
	int port;
	char dir[256];    /* the scratch directory (removed by fixture_redis_destroy) */
	char url[300];    /* redis://127.0.0.1:PORT/0 */
};

/* Pick a port and a directory and start redis-server ($REDIS_SERVER or PATH);
 * waits until it answers PING.  Returns 0 or -1 (with a message on stderr). */
int fixture_redis_start(struct redis_fixture *f);

/* Kill it (SIGKILL: Redis going away, not a clean shutdown) and wait. */
void fixture_redis_kill(struct redis_fixture *f);

/* Start again on the same port and directory. */
int fixture_redis_restart(struct redis_fixture *f);

/* Kill if running and remove the directory. */
void fixture_redis_destroy(struct redis_fixture *f);

#endif
