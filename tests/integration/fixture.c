#include "config.h"

#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

/* Ask the kernel for a free port: bind to 0, read it back, close. */
static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int wait_ready(const struct redis_fixture *f)
{
	struct timeval tv = {0, 200000};

	for (int i = 0; i < 200; i++) {
		redisContext *rc = redisConnectWithTimeout("127.0.0.1", f->port, tv);

		if (rc != NULL && !rc->err) {
			redisReply *r = redisCommand(rc, "PING");
			int ok = r != NULL && r->type == REDIS_REPLY_STATUS;

			freeReplyObject(r);
			redisFree(rc);
			if (ok)
				return 0;
		} else {
			redisFree(rc);
		}
		nanosleep(&(struct timespec){0, 25 * 1000 * 1000}, NULL);
	}
	fprintf(stderr, "fixture: redis-server on port %d did not answer PING\n", f->port);
	return -1;
}

static int spawn(struct redis_fixture *f)
{
	const char *bin = getenv("REDIS_SERVER");
	char port[16];
	pid_t pid;

	if (bin == NULL || *bin == '\0')
		bin = "redis-server";
	snprintf(port, sizeof port, "%d", f->port);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			close(null);
		}
		execlp(bin, bin, "--port", port, "--bind", "127.0.0.1", "--dir", f->dir,
		       "--save", "", "--appendonly", "no", "--daemonize", "no",
		       "--loglevel", "warning", (char *)NULL);
		fprintf(stderr, "fixture: exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	f->pid = pid;
	if (wait_ready(f) != 0) {
		fixture_redis_kill(f);
		return -1;
	}
	return 0;
}

int fixture_redis_start(struct redis_fixture *f)
{
	const char *tmp = getenv("TMPDIR");

	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "%s/herald-redis-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		fprintf(stderr, "fixture: mkdtemp(%s): %s\n", f->dir, strerror(errno));
		return -1;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		f->port = free_port();
		if (f->port <= 0)
			continue;
		snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d/0", f->port);
		if (spawn(f) == 0)
			return 0;
	}
	return -1;
}

void fixture_redis_kill(struct redis_fixture *f)
{
	if (f->pid <= 0)
		return;
	kill(f->pid, SIGKILL);
	while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR)
		;
	f->pid = 0;
}

int fixture_redis_restart(struct redis_fixture *f)
{
	fixture_redis_kill(f);
	return spawn(f);
}

void fixture_redis_destroy(struct redis_fixture *f)
{
	char cmd[300];

	fixture_redis_kill(f);
	if (f->dir[0] != '\0') {
		/* The directory holds at most a dump file Redis may have written. */
		snprintf(cmd, sizeof cmd, "%s/dump.rdb", f->dir);
		unlink(cmd);
		rmdir(f->dir);
		f->dir[0] = '\0';
	}
}
