#include "config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "listen.h"
#include "suites.h"

START_TEST(test_split)
{
	static const struct {
		const char *addr, *host, *port;
	} ok[] = {
	    {"127.0.0.1:8000", "127.0.0.1", "8000"},
	    {"[::1]:8000", "::1", "8000"},
	    {":8000", "", "8000"},
	    {"localhost:0", "localhost", "0"},
	};
	static const char *const bad[] = {"8000", "127.0.0.1:", "", "[::1]"};
	char host[64];
	const char *port;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		ck_assert_int_eq(listen_split(ok[i].addr, host, sizeof host, &port), 0);
		ck_assert_str_eq(host, ok[i].host);
		ck_assert_str_eq(port, ok[i].port);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_int_eq(listen_split(bad[i], host, sizeof host, &port), HERR_INVAL);
	/* a host longer than the buffer is refused, not cut */
	ck_assert_int_eq(listen_split("abcdefgh:1", host, 8, &port), HERR_INVAL);
	ck_assert_ptr_null(listen_unix_path("127.0.0.1:1"));
	ck_assert_str_eq(listen_unix_path("unix:/run/x.sock"), "/run/x.sock");
}
END_TEST

/* A scratch directory for socket files, removed by the test. */
static void scratch(char *dir, size_t len)
{
	snprintf(dir, len, "%s/herald-listen-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

START_TEST(test_unix)
{
	const struct listen_opts o = {.mode = 0640, .nonblock = 1};
	char dir[256], addr[300], err[256];
	struct stat st;
	int fd, fd2;

	scratch(dir, sizeof dir);
	snprintf(addr, sizeof addr, "unix:%s/s.sock", dir);
	fd = listen_open(addr, &o, err, sizeof err);
	ck_assert_msg(fd >= 0, "%s", err);
	ck_assert_int_eq(stat(addr + 5, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* a socket file left behind is replaced (its process is gone) */
	close(fd);
	fd2 = listen_open(addr, &o, err, sizeof err);
	ck_assert_msg(fd2 >= 0, "%s", err);
	close(fd2);
	unlink(addr + 5);

	/* any other file at the path is never deleted */
	fd = open(addr + 5, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(listen_open(addr, &o, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	ck_assert_int_eq(stat(addr + 5, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	unlink(addr + 5);
	rmdir(dir);
}
END_TEST

START_TEST(test_errors)
{
	const struct listen_opts o = {0};
	const struct listen_opts owner = {.owner = "no-such-user-herald"};
	char err[256], addr[300];
	int fd;

	ck_assert_int_eq(listen_open("unix:", &o, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "path must be"));
	memset(addr, 'a', sizeof addr - 1);
	memcpy(addr, "unix:/", 6);
	addr[sizeof addr - 1] = '\0';
	ck_assert_int_eq(listen_open(addr, &o, err, sizeof err), -1);
	ck_assert_int_eq(listen_open("nonsense", &o, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "expected host:port or unix:/path"));
	ck_assert_int_eq(listen_open("unix:/tmp/herald-owner-test.sock", &owner, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no such user or group"));
	ck_assert_int_eq(listen_open("256.1.1.1:80", &o, err, sizeof err), -1);

	/* TCP: a kernel-chosen port; a second bind without SO_REUSEPORT fails */
	fd = listen_open("127.0.0.1:0", &o, err, sizeof err);
	ck_assert_msg(fd >= 0, "%s", err);
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		char again[64];
		int port;

		ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(again, sizeof again, "127.0.0.1:%d", port);
		ck_assert_int_eq(listen_open(again, &o, err, sizeof err), -1);
		ck_assert_ptr_nonnull(strstr(err, "bind"));
	}
	close(fd);
}
END_TEST

/* The cap from the open-files limit: the limit less keep, half of it when
 * keep would take more, the soft limit read at the call. */
START_TEST(test_nofile_cap)
{
	struct rlimit rl, was;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
	rl = was;
	rl.rlim_cur = 1000;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_uint_eq(listen_nofile_cap(256), 744);
	ck_assert_uint_eq(listen_nofile_cap(0), 1000);
	ck_assert_uint_eq(listen_nofile_cap(499), 501);
	ck_assert_uint_eq(listen_nofile_cap(500), 500); /* 2 x keep is not below the limit */
	ck_assert_uint_eq(listen_nofile_cap(4096), 500);
	rl.rlim_cur = 64;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_uint_eq(listen_nofile_cap(256), 32);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
}
END_TEST

Suite *listen_suite(void)
{
	Suite *s = suite_create("listen");
	TCase *tc = tcase_create("listen");

	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_unix);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_nofile_cap);
	suite_add_tcase(s, tc);
	return s;
}
