#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub.h"
#include "sse.h"
#include "suites.h"

/* What the parser dispatched, for comparisons. */
struct seen {
	int n;
	char type[8][64];
	char data[8][512];
	size_t len[8];
	char id[8][64];
};

static void on_event(void *ud, const char *type, const char *data, size_t len, const char *id)
{
	struct seen *s = ud;

	ck_assert_int_lt(s->n, 8);
	strncpy(s->type[s->n], type, 63);
	ck_assert_uint_lt(len, 512);
	memcpy(s->data[s->n], data, len);
	s->data[s->n][len] = '\0';
	s->len[s->n] = len;
	strncpy(s->id[s->n], id, 63);
	s->n++;
}

/* Format, then parse as a browser: one event comes back, normalised. */
static void roundtrip(const char *id, const char *event, const char *data, size_t len,
		      const char *want_data, struct seen *s)
{
	struct sse_parser p;
	long n = sse_event(NULL, 0, id, event, data, len);
	char *buf;

	ck_assert_int_gt(n, 0);
	buf = malloc((size_t)n + 1);
	ck_assert_int_eq(sse_event(buf, (size_t)n + 1, id, event, data, len), n);
	if (memchr(data, 0, len) == NULL)
		ck_assert_uint_eq(strlen(buf), (size_t)n);
	memset(s, 0, sizeof *s);
	sse_parser_init(&p, on_event, s);
	ck_assert_int_eq(sse_parser_feed(&p, buf, (size_t)n), 0);
	ck_assert_int_eq(s->n, 1);
	ck_assert_str_eq(s->data[0], want_data);
	ck_assert_str_eq(s->type[0], event ? event : "message");
	ck_assert_str_eq(s->id[0], id ? id : "");
	sse_parser_free(&p);
	free(buf);
}

START_TEST(test_event_exact)
{
	char buf[256];

	ck_assert_int_eq(sse_event(buf, sizeof buf, "1-0", "notification", "{\"a\":1}", 7), 43);
	ck_assert_str_eq(buf, "id: 1-0\nevent: notification\ndata: {\"a\":1}\n\n");
	ck_assert_int_eq(sse_event(buf, sizeof buf, NULL, NULL, "x", 1), 9);
	ck_assert_str_eq(buf, "data: x\n\n");
	ck_assert_int_eq(sse_event(buf, sizeof buf, NULL, NULL, "", 0), 8);
	ck_assert_str_eq(buf, "data: \n\n");
}
END_TEST

START_TEST(test_lines_split)
{
	char buf[256];

	sse_event(buf, sizeof buf, NULL, NULL, "a\rb\nc\r\nd", 8);
	ck_assert_str_eq(buf, "data: a\ndata: b\ndata: c\ndata: d\n\n");
	sse_event(buf, sizeof buf, NULL, NULL, "a\n", 2);
	ck_assert_str_eq(buf, "data: a\ndata: \n\n");
	sse_event(buf, sizeof buf, NULL, NULL, "\r\n\r\n", 4);
	ck_assert_str_eq(buf, "data: \ndata: \ndata: \n\n");
	sse_event(buf, sizeof buf, NULL, NULL, "\n\r", 2);
	ck_assert_str_eq(buf, "data: \ndata: \ndata: \n\n");
}
END_TEST

START_TEST(test_no_injection)
{
	struct seen s;
	static const char evil[] = "x\n\nid: 666\nevent: admin\rretry: 1\r\ndata: y\n";

	roundtrip("5-1", "notification", evil, sizeof evil - 1,
		  "x\n\nid: 666\nevent: admin\nretry: 1\ndata: y\n", &s);
	ck_assert_str_eq(s.id[0], "5-1");
	ck_assert_int_eq(sse_event(NULL, 0, "1\n2", NULL, "x", 1), HERR_INVAL);
	ck_assert_int_eq(sse_event(NULL, 0, "1\r2", NULL, "x", 1), HERR_INVAL);
	ck_assert_int_eq(sse_event(NULL, 0, "1", "a\nb", "x", 1), HERR_INVAL);
}
END_TEST

START_TEST(test_roundtrip)
{
	struct seen s;

	roundtrip(NULL, NULL, "plain", 5, "plain", &s);
	roundtrip("1732550000000-0", "notification", "{\"id\":\"1732550000000-0\"}", 24,
		  "{\"id\":\"1732550000000-0\"}", &s);
	roundtrip(NULL, "reset", "a\r\nb\rc", 6, "a\nb\nc", &s);
	roundtrip("1", "e", ": not a comment", 15, ": not a comment", &s);
	roundtrip("1", "e", "with\0nul", 8, "with", &s); /* NUL survives; str compare stops */
	ck_assert_uint_eq(s.len[0], 8);
}
END_TEST

START_TEST(test_truncated_output)
{
	char buf[10];
	long n = sse_event(buf, sizeof buf, "1-0", "notification", "abc", 3);

	ck_assert_int_eq(n, 39);
	ck_assert_uint_eq(strlen(buf), 9);
	ck_assert_str_eq(buf, "id: 1-0\ne");
	ck_assert_int_eq(sse_event(buf, 1, NULL, NULL, "abc", 3), 11);
	ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_retry_comment)
{
	char buf[64];

	ck_assert_int_eq(sse_retry(buf, sizeof buf, 3000), 13);
	ck_assert_str_eq(buf, "retry: 3000\n\n");
	ck_assert_int_eq(sse_comment(buf, sizeof buf, "hb"), 5);
	ck_assert_str_eq(buf, ": hb\n");
	sse_comment(buf, sizeof buf, "a\nb");
	ck_assert_str_eq(buf, ": a\n: b\n");
}
END_TEST

/* The heartbeat: exact bytes, sized like the others, and what a browser
 * makes of it (one comment, one "heartbeat" event with data {}, no id). */
START_TEST(test_heartbeat)
{
	static const char want[] = ": heartbeat\nevent: heartbeat\ndata: {}\n\n";
	char buf[64], small[8];
	struct sse_parser p;
	struct seen s;
	long n = sse_heartbeat(NULL, 0);

	ck_assert_int_eq(n, (long)sizeof want - 1);
	ck_assert_int_eq(sse_heartbeat(buf, sizeof buf), n);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(sse_heartbeat(small, sizeof small), n);
	ck_assert_str_eq(small, ": heart");
	memset(&s, 0, sizeof s);
	sse_parser_init(&p, on_event, &s);
	ck_assert_int_eq(sse_parser_feed(&p, buf, (size_t)n), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_str_eq(s.type[0], "heartbeat");
	ck_assert_str_eq(s.data[0], "{}");
	ck_assert_str_eq(s.id[0], "");
	ck_assert_uint_eq(p.comments, 1);
	sse_parser_free(&p);
}
END_TEST

START_TEST(test_msg)
{
	static const char env[] = "{\"id\":\"7-3\",\"channel\":\"n:1\",\"ts\":7,\"data\":{}}";
	static const char raw[] = "{\"id\":null,\"channel\":\"n:1\",\"ts\":7,\"data\":1}";
	struct hub_msg *m = hub_msg_new(HUB_MSG_NOTIFY, env, sizeof env - 1);
	char buf[256];

	ck_assert_ptr_nonnull(m);
	ck_assert_int_gt(sse_msg(buf, sizeof buf, m), 0);
	ck_assert_str_eq(buf,
			 "id: 7-3\nevent: notification\ndata: {\"id\":\"7-3\",\"channel\":\"n:1\","
			 "\"ts\":7,\"data\":{}}\n\n");
	hub_msg_unref(m);
	m = hub_msg_new(HUB_MSG_NOTIFY, raw, sizeof raw - 1);
	ck_assert_int_gt(sse_msg(buf, sizeof buf, m), 0);
	ck_assert_ptr_null(strstr(buf, "id: "));
	ck_assert(strncmp(buf, "event: notification\ndata: {\"id\":null", 36) == 0);
	hub_msg_unref(m);
	m = hub_msg_new(HUB_MSG_RESET, "", 0);
	ck_assert_int_gt(sse_msg(buf, sizeof buf, m), 0);
	ck_assert_str_eq(buf, "event: reset\ndata: {\"reason\":\"history_truncated\"}\n\n");
	hub_msg_unref(m);
	m = hub_msg_new(HUB_MSG_CURSOR, "{\"type\":\"cursor\",\"cursor\":\"9-1\"}", 32);
	ck_assert_ptr_nonnull(m);
	m->has_id = 1;
	m->id = (struct cursor){9, 1};
	ck_assert_int_gt(sse_msg(buf, sizeof buf, m), 0);
	ck_assert_str_eq(
	    buf, "id: 9-1\nevent: cursor\ndata: {\"type\":\"cursor\",\"cursor\":\"9-1\"}\n\n");
	hub_msg_unref(m);
}
END_TEST

START_TEST(test_parser_chunks)
{
	static const char stream[] = "\xef\xbb\xbfretry: 3000\n\n: hb\r\nid: 1-0\r\nevent: x\r\n"
				     "data: a\r\ndata:b\r\r\ndata: c\n\nid\nevent:y\ndata\n\n";
	size_t cut;

	/* every split point gives the same events */
	for (cut = 0; cut < sizeof stream - 1; cut++) {
		struct sse_parser p;
		struct seen s;

		memset(&s, 0, sizeof s);
		sse_parser_init(&p, on_event, &s);
		ck_assert_int_eq(sse_parser_feed(&p, stream, cut), 0);
		ck_assert_int_eq(sse_parser_feed(&p, stream + cut, sizeof stream - 1 - cut), 0);
		ck_assert_int_eq(s.n, 3);
		ck_assert_str_eq(s.type[0], "x");
		ck_assert_str_eq(s.data[0], "a\nb");
		ck_assert_str_eq(s.id[0], "1-0");
		ck_assert_str_eq(s.type[1], "message");
		ck_assert_str_eq(s.data[1], "c");
		/* "data" without a colon is an empty data line: dispatched as "" */
		ck_assert_str_eq(s.type[2], "y");
		ck_assert_str_eq(s.data[2], "");
		ck_assert_str_eq(s.id[2], "");
		ck_assert_int_eq(p.retry, 3000);
		ck_assert_uint_eq(p.comments, 1);
		sse_parser_free(&p);
	}
}
END_TEST

START_TEST(test_parser_limits)
{
	struct sse_parser p;
	char big[100];

	memset(big, 'a', sizeof big);
	sse_parser_init(&p, NULL, NULL);
	p.max_line = 50;
	ck_assert_int_eq(sse_parser_feed(&p, big, sizeof big), HERR_TOOBIG);
	sse_parser_free(&p);
	sse_parser_init(&p, NULL, NULL);
	ck_assert_int_eq(sse_parser_feed(&p, "retry: 12x\n\nretry: \n", 20), 0);
	ck_assert_int_eq(p.retry, -1);
	sse_parser_free(&p);
}
END_TEST

Suite *sse_suite(void)
{
	Suite *s = suite_create("sse");
	TCase *tc = tcase_create("framing");

	tcase_add_test(tc, test_event_exact);
	tcase_add_test(tc, test_lines_split);
	tcase_add_test(tc, test_no_injection);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_truncated_output);
	tcase_add_test(tc, test_retry_comment);
	tcase_add_test(tc, test_heartbeat);
	tcase_add_test(tc, test_msg);
	tcase_add_test(tc, test_parser_chunks);
	tcase_add_test(tc, test_parser_limits);
	suite_add_tcase(s, tc);
	return s;
}
