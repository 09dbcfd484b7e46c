#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "notify.h"
#include "suites.h"

/* A datagram socket bound to path (or, path[0] == '@', the abstract name). */
static int bind_dgram(const char *path)
{
	struct sockaddr_un sa;
	struct timeval tv = {2, 0};
	size_t len = strlen(path);
	socklen_t salen;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	ck_assert_uint_lt(len, sizeof sa.sun_path);
	memcpy(sa.sun_path, path, len);
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen++;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, salen), 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
	return fd;
}

static void expect(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(test_path)
{
	char dir[256], path[300];
	int fd;

	snprintf(dir, sizeof dir, "%s/herald-notify-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/notify", dir);
	fd = bind_dgram(path);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
	ck_assert_int_eq(notify_ready(NULL), 1);
	expect(fd, "READY=1");
	ck_assert_int_eq(notify_ready("listening on 127.0.0.1:8000"), 1);
	expect(fd, "READY=1\nSTATUS=listening on 127.0.0.1:8000");
	ck_assert_int_eq(notify_stopping(), 1);
	expect(fd, "STOPPING=1");
	close(fd);
	/* nobody bound there any more: the error is reported, not raised */
	unlink(path);
	ck_assert_int_eq(notify_send("READY=1"), HERR_IO);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_abstract)
{
	char name[64], buf[256];
	ssize_t n;
	int fd;

	snprintf(name, sizeof name, "@herald-notify-test-%d", (int)getpid());
	fd = bind_dgram(name);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
	ck_assert_int_eq(notify_reloading(), 1);
	n = recv(fd, buf, sizeof buf - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_msg(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "got '%s'", buf);
	ck_assert_int_gt(atoll(buf + 27), 0);
	ck_assert_int_eq(notify_send("READY=1"), 1);
	expect(fd, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_unset_and_bad)
{
	char longname[200];

	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(notify_ready(NULL), 0);
	ck_assert_int_eq(notify_stopping(), 0);
	ck_assert_int_eq(notify_send_to("", "READY=1"), 0);
	ck_assert_int_eq(notify_send_to(NULL, "READY=1"), 0);
	/* neither an absolute path nor an abstract name */
	ck_assert_int_eq(notify_send_to("run/notify", "READY=1"), HERR_INVAL);
	ck_assert_int_eq(notify_send_to("/run/notify", NULL), HERR_INVAL);
	/* longer than sun_path */
	memset(longname, 'x', sizeof longname - 1);
	longname[0] = '/';
	longname[sizeof longname - 1] = '\0';
	ck_assert_int_eq(notify_send_to(longname, "READY=1"), HERR_INVAL);
	longname[0] = '@';
	ck_assert_int_eq(notify_send_to(longname, "READY=1"), HERR_INVAL);
}
END_TEST

Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_path);
	tcase_add_test(tc, test_abstract);
	tcase_add_test(tc, test_unset_and_bad);
	suite_add_tcase(s, tc);
	return s;
}
