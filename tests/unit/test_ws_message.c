/*
 * The WebSocket session's JSON messages (codec/ws_message.c): the client's
 * refresh fed as bytes, what is refused and with which word, and the
 * server's messages (the two answers and the heartbeat).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "ws_message.h"
#include "suites.h"

static char tok[64];

static int parse(const char *s)
{
	return wsm_parse(s, strlen(s), tok, sizeof tok);
}

START_TEST(t_refresh)
{
	ck_assert_int_eq(parse("{\"type\":\"refresh\",\"token\":\"a.b.c\"}"), WSM_REFRESH);
	ck_assert_str_eq(tok, "a.b.c");
	/* order, whitespace and other keys do not matter */
	ck_assert_int_eq(parse(" {\"token\" : \"x.y.z\", \"v\":[1,{}], \"type\":\"refresh\"}\n"),
			 WSM_REFRESH);
	ck_assert_str_eq(tok, "x.y.z");
	/* escapes are decoded */
	ck_assert_int_eq(parse("{\"type\":\"re\\u0066resh\",\"token\":\"a\\/b\"}"), WSM_REFRESH);
	ck_assert_str_eq(tok, "a/b");
	ck_assert_str_eq(wsm_reason(WSM_REFRESH), "refresh");
}
END_TEST

START_TEST(t_refused)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{"", WSM_MALFORMED},
		{"hello", WSM_MALFORMED},
		{"{\"type\":\"refresh\",\"token\":\"a\"", WSM_MALFORMED},
		{"{\"type\":\"refresh\",\"token\":\"a\"} x", WSM_MALFORMED},
		{"{'type':'refresh','token':'a'}", WSM_MALFORMED},
		{"{\"type\":\"refresh\",\"token\":\"a\",\"n\":NaN}", WSM_MALFORMED},
		{"{\"type\":\"refresh\",\"token\":\"a\tb\"}", WSM_MALFORMED}, /* raw control character */
		{"[\"refresh\"]", WSM_MALFORMED},
		{"\"refresh\"", WSM_MALFORMED},
		{"null", WSM_MALFORMED},
		{"{\"type\":\"refresh\",\"token\":\"a\\u0000b\"}", WSM_MALFORMED},
		{"[[[[[[[[[[]]]]]]]]]]", WSM_MALFORMED}, /* deeper than a message */
		{"{}", WSM_UNKNOWN_TYPE},
		{"{\"token\":\"a.b.c\"}", WSM_UNKNOWN_TYPE},
		{"{\"type\":\"subscribe\",\"token\":\"a.b.c\"}", WSM_UNKNOWN_TYPE},
		{"{\"type\":\"Refresh\",\"token\":\"a.b.c\"}", WSM_UNKNOWN_TYPE},
		{"{\"type\":\"refresh\\u0000\",\"token\":\"a.b.c\"}", WSM_UNKNOWN_TYPE},
		{"{\"type\":1,\"token\":\"a.b.c\"}", WSM_UNKNOWN_TYPE},
		{"{\"type\":\"refresh\"}", WSM_NO_TOKEN},
		{"{\"type\":\"refresh\",\"token\":\"\"}", WSM_NO_TOKEN},
		{"{\"type\":\"refresh\",\"token\":null}", WSM_NO_TOKEN},
		{"{\"type\":\"refresh\",\"token\":[\"a\"]}", WSM_NO_TOKEN},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		strcpy(tok, "left over");
		ck_assert_msg(parse(cases[i].in) == cases[i].want, "case %zu: %s", i, cases[i].in);
		ck_assert_str_eq(tok, "");
	}
	ck_assert_str_eq(wsm_reason(WSM_MALFORMED), "bad_message");
	ck_assert_str_eq(wsm_reason(WSM_UNKNOWN_TYPE), "unknown_type");
	ck_assert_str_eq(wsm_reason(WSM_NO_TOKEN), "missing");
	ck_assert_str_eq(wsm_reason(WSM_TOO_LONG), "too_long");
	ck_assert_str_eq(wsm_reason(WSM_INTERNAL), "internal");
}
END_TEST

START_TEST(t_bounds)
{
	char in[200], small[6];
	const char *s = "{\"type\":\"refresh\",\"token\":\"abcde\"}";

	/* the token and its NUL must fit */
	ck_assert_int_eq(wsm_parse(s, strlen(s), small, 5), WSM_TOO_LONG);
	ck_assert_int_eq(wsm_parse(s, strlen(s), small, sizeof small), WSM_REFRESH);
	ck_assert_str_eq(small, "abcde");
	/* only len bytes are read: a message cut short is not JSON */
	ck_assert_int_eq(wsm_parse(s, strlen(s) - 1, small, sizeof small), WSM_MALFORMED);
	ck_assert_int_eq(wsm_parse(NULL, 0, small, sizeof small), WSM_MALFORMED);
	/* invalid UTF-8 inside the token */
	snprintf(in, sizeof in, "{\"type\":\"refresh\",\"token\":\"a%cb\"}", 0xc0);
	ck_assert_int_eq(parse(in), WSM_MALFORMED);
}
END_TEST

START_TEST(t_server)
{
	char out[WSM_OUT_MAX];

	ck_assert_uint_eq(wsm_refreshed(out, 1732550000), strlen(out));
	ck_assert_str_eq(out, "{\"type\":\"refreshed\",\"expires_at\":1732550000}");
	ck_assert_uint_eq(wsm_refreshed(out, 253402300799LL), strlen(out));
	ck_assert_uint_eq(wsm_expiring(out, 30), strlen(out));
	ck_assert_str_eq(out, "{\"type\":\"expiring\",\"expires_in\":30}");
	ck_assert_uint_eq(wsm_expiring(out, -9223372036854775807LL - 1), strlen(out));
	ck_assert_uint_eq(wsm_heartbeat(out), strlen(out));
	ck_assert_str_eq(out, "{\"type\":\"heartbeat\"}");
	/* not a command: sent back by a confused client, it is refused */
	ck_assert_int_eq(parse(out), WSM_UNKNOWN_TYPE);
}
END_TEST

Suite *ws_message_suite(void)
{
	Suite *s = suite_create("ws_message");
	TCase *tc = tcase_create("messages");

	tcase_add_test(tc, t_refresh);
	tcase_add_test(tc, t_refused);
	tcase_add_test(tc, t_bounds);
	tcase_add_test(tc, t_server);
	suite_add_tcase(s, tc);
	return s;
}
