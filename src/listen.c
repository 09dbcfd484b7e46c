#include "config.h"

#include "listen.h"

#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"

const char *listen_unix_path(const char *addr)
{
	return strncmp(addr, "unix:", 5) == 0 ? addr + 5 : NULL;
}

int listen_split(const char *addr, char *host, size_t hostlen, const char **port)
{
	const char *colon, *h = addr;
	size_t hl;

	if (addr[0] == '[') { /* [v6]:port */
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':')
			return HERR_INVAL;
		h = addr + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return HERR_INVAL;
		hl = (size_t)(colon - addr);
	}
	if (colon[1] == '\0' || hl >= hostlen)
		return HERR_INVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = colon + 1;
	return 0;
}

/* "user", "user:group" or ":group" to ids; -1 leaves that id alone. */
static int owner_ids(const char *spec, uid_t *uid, gid_t *gid)
{
	char user[128];
	const char *colon = strchr(spec, ':');
	size_t ulen = colon != NULL ? (size_t)(colon - spec) : strlen(spec);

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (ulen >= sizeof user)
		return HERR_INVAL;
	memcpy(user, spec, ulen);
	user[ulen] = '\0';
	if (ulen > 0) {
		const struct passwd *pw = getpwnam(user);

		if (pw == NULL)
			return HERR_NOTFOUND;
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
	if (colon != NULL && colon[1] != '\0') {
		const struct group *gr = getgrnam(colon + 1);

		if (gr == NULL)
			return HERR_NOTFOUND;
		*gid = gr->gr_gid;
	}
	return 0;
}

static int open_unix(const char *path, const struct listen_opts *o, int type, char *err,
		     size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	struct stat st;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int fd;

	if (len == 0 || len >= sizeof sa.sun_path)
		return herr_set(-1, err, errlen, "listen unix:%s: the path must be 1..%zu bytes",
				path, sizeof sa.sun_path - 1);
	memcpy(sa.sun_path, path, len + 1);
	if (o->owner != NULL && owner_ids(o->owner, &uid, &gid) != 0)
		return herr_set(-1, err, errlen, "socket_owner %s: no such user or group", o->owner);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return herr_set(-1, err, errlen,
					"listen unix:%s: the path exists and is not a socket", path);
		unlink(path); /* left by a process that did not exit cleanly */
	}
	fd = socket(AF_UNIX, type, 0);
	if (fd < 0)
		return herr_set(-1, err, errlen, "socket(AF_UNIX): %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		herr_set(0, err, errlen, "bind unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (o->mode > 0 && chmod(path, (mode_t)o->mode) != 0) {
		herr_set(0, err, errlen, "chmod unix:%s %lo: %s", path, o->mode, strerror(errno));
		goto fail;
	}
	if (o->owner != NULL && chown(path, uid, gid) != 0) {
		herr_set(0, err, errlen, "chown unix:%s %s: %s", path, o->owner, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	unlink(path);
	return -1;
}

static int open_tcp(const char *addr, const struct listen_opts *o, int type, char *err,
		    size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	const char *port;
	char host[256];
	int fd, one = 1, rc;

	if (listen_split(addr, host, sizeof host, &port) != 0)
		return herr_set(-1, err, errlen, "listen %s: expected host:port or unix:/path",
				addr);
	rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai);
	if (rc != 0)
		return herr_set(-1, err, errlen, "listen %s: %s", addr, gai_strerror(rc));
	fd = socket(ai->ai_family, type, 0);
	if (fd < 0) {
		herr_set(0, err, errlen, "listen %s: socket: %s", addr, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
		herr_set(0, err, errlen, "listen %s: SO_REUSEPORT: %s", addr, strerror(errno));
		goto fail;
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		herr_set(0, err, errlen, "listen %s: bind: %s", addr, strerror(errno));
		goto fail;
	}
	freeaddrinfo(ai);
	return fd;
fail:
	freeaddrinfo(ai);
	close(fd);
	return -1;
}

int listen_open(const char *addr, const struct listen_opts *o, char *err, size_t errlen)
{
	int type = SOCK_STREAM | SOCK_CLOEXEC | (o->nonblock ? SOCK_NONBLOCK : 0);
	const char *path = listen_unix_path(addr);
	int fd;

	fd = path != NULL ? open_unix(path, o, type, err, errlen)
			  : open_tcp(addr, o, type, err, errlen);
	if (fd < 0)
		return -1;
	if (listen(fd, o->backlog > 0 ? o->backlog : 4096) != 0) {
		herr_set(0, err, errlen, "listen %s: %s", addr, strerror(errno));
		close(fd);
		if (path != NULL)
			unlink(path);
		return -1;
	}
	return fd;
}

unsigned listen_nofile_cap(unsigned long long keep)
{
	struct rlimit rl;
	unsigned long long n;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	n = rl.rlim_cur > 2 * keep ? rl.rlim_cur - keep : rl.rlim_cur / 2;
	return n > 100000000ULL ? 100000000U : (unsigned)n;
}
