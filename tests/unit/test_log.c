#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "suites.h"

#define LINE 4096

static void reset(void)
{
	log_close();
	log_open("herald-test", LOG_LEVEL_INFO, 0, NULL);
}

static void assert_match(const char *s, const char *re)
{
	regex_t r;

	ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&r, s, 0, NULL, 0) == 0, "'%s' does not match '%s'", s, re);
	regfree(&r);
}

/* The "msg" of a JSON line, parsed by json-c: proves the line is valid JSON. */
static char *json_msg(const char *line)
{
	json_object *o = json_tokener_parse(line);
	json_object *m;
	char *out;

	ck_assert_msg(o != NULL, "not JSON: %s", line);
	ck_assert(json_object_object_get_ex(o, "msg", &m));
	out = strdup(json_object_get_string(m));
	json_object_put(o);
	return out;
}

static char *temp_path(void)
{
	char *path = strdup("/tmp/herald-log-XXXXXX");
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	return path;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	buf = calloc(1, 1 << 20);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

START_TEST(test_level_names)
{
	ck_assert_int_eq(log_level_parse("error"), LOG_LEVEL_ERROR);
	ck_assert_int_eq(log_level_parse("warn"), LOG_LEVEL_WARN);
	ck_assert_int_eq(log_level_parse("info"), LOG_LEVEL_INFO);
	ck_assert_int_eq(log_level_parse("debug"), LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_level_parse("DEBUG"), LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_level_parse("warning"), -1);
	ck_assert_int_eq(log_level_parse(""), -1);
	ck_assert_int_eq(log_level_parse(NULL), -1);
	ck_assert_str_eq(log_level_name(LOG_LEVEL_ERROR), "error");
	ck_assert_str_eq(log_level_name(LOG_LEVEL_WARN), "warn");
	ck_assert_str_eq(log_level_name(LOG_LEVEL_INFO), "info");
	ck_assert_str_eq(log_level_name(LOG_LEVEL_DEBUG), "debug");
	ck_assert_str_eq(log_level_name(4), "unknown");
	ck_assert_str_eq(log_level_name(-1), "unknown");
}
END_TEST

START_TEST(test_text_line)
{
	char buf[LINE], re[256];
	int n;

	n = log_format_line(buf, sizeof buf, LOG_LEVEL_WARN,
			    "connect(%s) failed: %s, retrying in %d s", "127.0.0.1:6379",
			    "Connection refused", 2);
	ck_assert_int_eq(n, (int)strlen(buf));
	snprintf(re, sizeof re,
		 "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z "
		 "herald-test\\[%ld\\] warn: connect\\(127\\.0\\.0\\.1:6379\\) failed: "
		 "Connection refused, retrying in 2 s\n$",
		 (long)getpid());
	assert_match(buf, re);
}
END_TEST

START_TEST(test_json_line)
{
	char buf[LINE], re[256];
	char *msg;

	log_open("herald-ws", LOG_LEVEL_INFO, 1, NULL);
	ck_assert_int_gt(log_format_line(buf, sizeof buf, LOG_LEVEL_ERROR, "user %d", 42), 0);
	snprintf(re, sizeof re,
		 "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z\","
		 "\"level\":\"error\",\"prog\":\"herald-ws\",\"pid\":%ld,\"msg\":\"user 42\"\\}\n$",
		 (long)getpid());
	assert_match(buf, re);
	msg = json_msg(buf);
	ck_assert_str_eq(msg, "user 42");
	free(msg);
}
END_TEST

#define FFFD "\xef\xbf\xbd"

START_TEST(test_json_escaping)
{
	char buf[LINE];
	char *msg;
	const char *tricky = "say \"hi\"\\ new\nline\r\ttab \x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac";

	log_open("herald-ws", LOG_LEVEL_INFO, 1, NULL);
	ck_assert_int_gt(log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "%s", tricky), 0);
	/* text_json_char's escapes: \u00XX for every control character. */
	ck_assert_ptr_nonnull(strstr(buf, "\"msg\":\"say \\\"hi\\\"\\\\ new\\u000aline\\u000d\\u0009tab "
					  "\\u0001\\u001f\x7f caf\xc3\xa9 \xe2\x82\xac\"}\n"));
	msg = json_msg(buf);
	ck_assert_str_eq(msg, tricky);
	free(msg);

	/* Invalid UTF-8 (a lone continuation byte, an overlong form, a surrogate) -> U+FFFD. */
	ck_assert_int_gt(
	    log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "a\x80 b\xc0\xaf c\xed\xa0\x80"), 0);
	ck_assert_ptr_nonnull(
	    strstr(buf, "\"msg\":\"a" FFFD " b" FFFD FFFD " c" FFFD FFFD FFFD "\"}"));
	msg = json_msg(buf);
	free(msg);

	/* A NUL given through %c is escaped, not a line end. */
	ck_assert_int_gt(log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "x%cy", 0), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\"msg\":\"x\\u0000y\"}\n"));
}
END_TEST

START_TEST(test_text_escaping)
{
	char buf[LINE];

	ck_assert_int_gt(
	    log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "a\nb\rc\td\x01 \"q\" \\ \xff"), 0);
	ck_assert_ptr_nonnull(strstr(buf, " info: a\\nb\\rc\td\\x01 \"q\" \\ \\xff\n"));
	ck_assert_int_eq(count_lines(buf), 1);
}
END_TEST

static void check_truncated(int json, char fill)
{
	char buf[LINE];
	char *big = malloc(10001);
	int n;

	memset(big, fill, 10000);
	big[10000] = '\0';
	log_open("herald-ws", LOG_LEVEL_INFO, json, NULL);
	n = log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "%s", big);
	ck_assert_int_eq(n, (int)strlen(buf));
	ck_assert_int_le(n, LINE - 1);
	ck_assert_int_ge(n, LINE - 8);
	ck_assert_int_eq(count_lines(buf), 1);
	if (json) {
		char *msg = json_msg(buf);

		ck_assert_str_eq(buf + n - 6, "...\"}\n");
		ck_assert_str_eq(msg + strlen(msg) - 3, "...");
		free(msg);
	} else {
		ck_assert_str_eq(buf + n - 4, "...\n");
	}
	free(big);
}

START_TEST(test_truncation)
{
	check_truncated(0, 'x');
	check_truncated(1, 'x');
	/* Escapes are never cut in half. */
	check_truncated(1, '"');
	check_truncated(1, '\n');
	check_truncated(0, '\n');
}
END_TEST

START_TEST(test_truncation_utf8)
{
	char buf[LINE];
	char *big = malloc(3 * 2000 + 1);
	char *msg;

	for (int i = 0; i < 2000; i++)
		memcpy(big + 3 * i, "\xe2\x82\xac", 3);
	big[6000] = '\0';
	log_open("herald-ws", LOG_LEVEL_INFO, 1, NULL);
	ck_assert_int_gt(log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "%s", big), 0);
	msg = json_msg(buf);
	/* Whole euro signs, then the ellipsis. */
	ck_assert_uint_eq((strlen(msg) - 3) % 3, 0);
	ck_assert_int_eq(memcmp(msg, big, strlen(msg) - 3), 0);
	free(msg);
	free(big);
}
END_TEST

START_TEST(test_fits_exactly)
{
	char buf[128];
	char small[16];
	int n, hdr;

	/* A message that fits the caller's buffer exactly is not cut. */
	hdr = log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "%s", "");
	ck_assert_int_gt(hdr, 0);
	n = log_format_line(buf, (size_t)hdr + 10 + 1, LOG_LEVEL_INFO, "%s", "0123456789");
	ck_assert_int_eq(n, hdr + 10);
	ck_assert_str_eq(buf + n - 11, "0123456789\n");
	n = log_format_line(buf, (size_t)hdr + 10, LOG_LEVEL_INFO, "%s", "0123456789");
	ck_assert_int_eq(n, hdr + 9);
	ck_assert_str_eq(buf + n - 10, "012345...\n");
	ck_assert_int_eq(log_format_line(small, sizeof small, LOG_LEVEL_INFO, "x"), HERR_TOOBIG);
	ck_assert_str_eq(small, "");
}
END_TEST

static int side_effects;

static int touch(void)
{
	return ++side_effects;
}

START_TEST(test_level_filter)
{
	char *path = temp_path();
	char *text;

	ck_assert_int_eq(log_open("herald-test", LOG_LEVEL_WARN, 0, path), 0);
	side_effects = 0;
	log_debug("debug %d", touch());
	log_info("info %d", touch());
	ck_assert_int_eq(side_effects, 0);
	log_warn("warn %d", touch());
	log_error("error %d", touch());
	ck_assert_int_eq(side_effects, 2);
	log_level_current = LOG_LEVEL_DEBUG;
	log_debug("debug %d", touch());
	log_level_current = LOG_LEVEL_ERROR;
	log_warn("warn %d", touch());
	ck_assert_int_eq(side_effects, 3);

	text = slurp(path);
	ck_assert_int_eq(count_lines(text), 3);
	ck_assert_ptr_nonnull(strstr(text, " warn: warn 1\n"));
	ck_assert_ptr_nonnull(strstr(text, " error: error 2\n"));
	ck_assert_ptr_nonnull(strstr(text, " debug: debug 3\n"));
	free(text);
	log_close();
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_file_and_reopen)
{
	char *path = temp_path();
	char rotated[64];
	char *text;

	ck_assert_int_eq(log_open("herald-test", LOG_LEVEL_INFO, 1, path), 0);
	errno = 1234;
	log_info("before %s", "rotation");
	ck_assert_int_eq(errno, 1234);
	snprintf(rotated, sizeof rotated, "%s.1", path);
	ck_assert_int_eq(rename(path, rotated), 0);
	log_info("still to the old file");
	ck_assert_int_eq(log_reopen(), 0);
	log_info("after rotation");

	text = slurp(rotated);
	ck_assert_int_eq(count_lines(text), 2);
	ck_assert_ptr_nonnull(strstr(text, "\"msg\":\"before rotation\"}\n"));
	free(text);
	text = slurp(path);
	ck_assert_int_eq(count_lines(text), 1);
	ck_assert_ptr_nonnull(strstr(text, "\"msg\":\"after rotation\"}\n"));
	free(text);

	/* log_open again with another file moves the same descriptor over. */
	unlink(rotated);
	ck_assert_int_eq(log_open("herald-test", LOG_LEVEL_INFO, 0, rotated), 0);
	log_info("second file");
	text = slurp(rotated);
	ck_assert_ptr_nonnull(strstr(text, " info: second file\n"));
	free(text);

	log_close();
	ck_assert_int_eq(log_reopen(), 0);
	unlink(rotated);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_open_fails)
{
	ck_assert_int_eq(log_open("herald-test", LOG_LEVEL_INFO, 0, "/nonexistent/dir/x.log"),
			 HERR_IO);
	ck_assert_int_eq(log_reopen(), 0);
	/* Names that would break a JSON line are made plain. */
	log_open("bad\"name\\x y", LOG_LEVEL_INFO, 1, NULL);
	{
		char buf[LINE];

		ck_assert_int_gt(log_format_line(buf, sizeof buf, LOG_LEVEL_INFO, "m"), 0);
		ck_assert_ptr_nonnull(strstr(buf, "\"prog\":\"bad_name_x_y\""));
		free(json_msg(buf));
	}
}
END_TEST

#define WRITERS	   4
#define PER_WRITER 500

static void *writer(void *arg)
{
	long id = (long)arg;

	for (int i = 0; i < PER_WRITER; i++)
		log_info("writer %ld line %d %s", id, i,
			 "padding padding padding padding padding padding padding padding");
	return NULL;
}

/* Writers racing with rotations: every line lands whole in some file. */
START_TEST(test_threads_and_reopen)
{
	char *path = temp_path();
	char rotated[64];
	pthread_t t[WRITERS];
	int total = 0, rotations = 20;

	ck_assert_int_eq(log_open("herald-test", LOG_LEVEL_INFO, 0, path), 0);
	for (long i = 0; i < WRITERS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer, (void *)i), 0);
	for (int r = 0; r < rotations; r++) {
		snprintf(rotated, sizeof rotated, "%s.%d", path, r);
		ck_assert_int_eq(rename(path, rotated), 0);
		ck_assert_int_eq(log_reopen(), 0);
		usleep(500);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	log_close();
	for (int r = 0; r <= rotations; r++) {
		char *text;
		char *line;

		if (r < rotations)
			snprintf(rotated, sizeof rotated, "%s.%d", path, r);
		else
			snprintf(rotated, sizeof rotated, "%s", path);
		text = slurp(rotated);
		for (line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
			assert_match(line,
				     "^[^\n]* info: writer [0-9] line [0-9]+ padding[ a-z]*\n");
			total++;
		}
		free(text);
		unlink(rotated);
	}
	ck_assert_int_eq(total, WRITERS * PER_WRITER);
	free(path);
}
END_TEST

Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_checked_fixture(tc, reset, reset);
	tcase_add_test(tc, test_level_names);
	tcase_add_test(tc, test_text_line);
	tcase_add_test(tc, test_json_line);
	tcase_add_test(tc, test_json_escaping);
	tcase_add_test(tc, test_text_escaping);
	tcase_add_test(tc, test_truncation);
	tcase_add_test(tc, test_truncation_utf8);
	tcase_add_test(tc, test_fits_exactly);
	tcase_add_test(tc, test_level_filter);
	tcase_add_test(tc, test_file_and_reopen);
	tcase_add_test(tc, test_open_fails);
	tcase_add_test(tc, test_threads_and_reopen);
	suite_add_tcase(s, tc);
	return s;
}
