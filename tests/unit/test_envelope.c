#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "envelope.h"
#include "err.h"
#include "jsonv.h"
#include "suites.h"

#define T(lit) lit, sizeof(lit) - 1

#define CH "notifications:42"
#define TS 1732550000000LL

START_TEST(test_id_parses)
{
	static const char m1[] = "{\"id\":\"1732550000000-0\",\"channel\":\"notifications:42\","
				 "\"ts\":1732550000000,\"data\":{\"a\":1}}";
	static const char m2[] = "{\"id\":\"18446744073709551615-18446744073709551615\","
				 "\"channel\":\"x\",\"ts\":1,\"data\":1}";
	static const char m3[] = "{\"id\":\"5\",\"channel\":\"x\",\"ts\":1,\"data\":1}";
	struct cursor c = {0, 0};

	ck_assert_int_eq(envelope_id(m1, strlen(m1), &c), 0);
	ck_assert(c.ms == 1732550000000ULL && c.seq == 0);
	ck_assert(envelope_is_scripted(m1, strlen(m1)));
	ck_assert_int_eq(envelope_id(m2, strlen(m2), &c), 0);
	ck_assert(c.ms == UINT64_MAX && c.seq == UINT64_MAX);
	ck_assert_int_eq(envelope_id(m3, strlen(m3), &c), 0);
	ck_assert(c.ms == 5 && c.seq == 0);
	/* Only the prefix is read: what follows "channel":" is not looked at. */
	ck_assert_int_eq(envelope_id(T("{\"id\":\"7-3\",\"channel\":\""), &c), 0);
	ck_assert(c.ms == 7 && c.seq == 3);
}
END_TEST

START_TEST(test_id_null)
{
	static const char m[] =
	    "{\"id\":null,\"channel\":\"notifications:42\",\"ts\":1,\"data\":1}";
	struct cursor c = {4, 4};

	ck_assert_int_eq(envelope_id(m, strlen(m), &c), HERR_NOTFOUND);
	ck_assert(c.ms == 4 && c.seq == 4);
	ck_assert(!envelope_is_scripted(m, strlen(m)));
}
END_TEST

static const struct {
	const char *s;
	size_t len;
} not_envelopes[] = {
    {T("")},
    {T("{")},
    {T("{\"id\"")},
    {T("{\"id\":")},
    {T("{\"id\":\"")},
    {T("{\"id\":\"1-0")},
    {T("{\"id\":\"1-0\"")},
    {T("{\"id\":\"1-0\",")},
    {T("{\"id\":\"1-0\",\"channel\":")},
    {T("{\"id\":n")},
    {T("{\"id\":null")},
    {T("{\"id\":null}")},
    {T("{\"id\":nul,\"channel\":\"x\"")},
    {T("{\"id\":\"abc\"}")},
    {T("{\"id\":\"abc\",\"channel\":\"x\",\"ts\":1,\"data\":1}")},
    {T("{\"id\":\"123\"}")},
    {T("{\"id\":\"123\",\"title\":\"x\"}")},
    {T("{\"id\":\"\",\"channel\":\"x\"")},
    {T("{\"id\":\"-\",\"channel\":\"x\"")},
    {T("{\"id\":\"$\",\"channel\":\"x\"")},
    {T("{\"id\":\"1-0 \",\"channel\":\"x\"")},
    {T("{\"id\":\"18446744073709551616-0\",\"channel\":\"x\"")},
    {T("{\"id\":\"000000000000000000000000000000000000000001\",\"channel\":\"x\"")},
    {T("{\"id\":1,\"channel\":\"x\"")},
    {T("{ \"id\":\"1-0\",\"channel\":\"x\"")},
    {T("{\"id\": \"1-0\",\"channel\":\"x\"")},
    {T("{\"id\":\"1-0\", \"channel\":\"x\"")},
    {T("{\"ID\":\"1-0\",\"channel\":\"x\"")},
    {T("[\"id\",\"1-0\"]")},
    {T("hello")},
    {T("\0\0\0\0\0\0\0\0\0\0\0\0")},
    {T("\xff\xfe{\"id\":\"1-0\",\"channel\":\"x\"")},
};

START_TEST(test_not_envelope)
{
	struct cursor c = {4, 4};

	ck_assert_msg(envelope_id(not_envelopes[_i].s, not_envelopes[_i].len, &c) == HERR_INVAL,
		      "case %d read as an envelope", _i);
	ck_assert(c.ms == 4 && c.seq == 4);
	ck_assert(!envelope_is_scripted(not_envelopes[_i].s, not_envelopes[_i].len));
}
END_TEST

START_TEST(test_truncated_prefix)
{
	static const char m[] = "{\"id\":\"1732550000000-0\",\"channel\":\"x\"";
	static const char n[] = "{\"id\":null,\"channel\":\"x\"";
	const size_t full = strlen("{\"id\":\"1732550000000-0\",\"channel\":\"");
	const size_t nfull = strlen("{\"id\":null,\"channel\":\"");
	struct cursor c;

	/* Every cut before the end of the prefix is refused, with no read past len. */
	for (size_t len = 0; len < full; len++) {
		char *copy = malloc(len + 1);

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, m, len);
		ck_assert_msg(envelope_id(copy, len, &c) == HERR_INVAL, "len %zu", len);
		free(copy);
	}
	ck_assert_int_eq(envelope_id(m, full, &c), 0);
	for (size_t len = 0; len < nfull; len++) {
		char *copy = malloc(len + 1);

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, n, len);
		ck_assert_msg(envelope_id(copy, len, &c) == HERR_INVAL, "len %zu", len);
		free(copy);
	}
	ck_assert_int_eq(envelope_id(n, nfull, &c), HERR_NOTFOUND);
	ck_assert_int_eq(envelope_id(NULL, 0, &c), HERR_INVAL);
}
END_TEST

/* Wrap payload and check the exact bytes, that the result is valid JSON, and
 * that it reads back as an envelope with a null id. */
static void check_wrap(const char *payload, size_t len, const char *want)
{
	struct jsonv_error e = {0, NULL};
	char *out = NULL;
	size_t outlen = 0;
	struct cursor c;

	ck_assert_int_eq(envelope_wrap_raw(CH, payload, len, TS, &out, &outlen), 0);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(outlen, strlen(want));
	ck_assert_msg(memcmp(out, want, outlen) == 0, "got %s", out);
	ck_assert_int_eq(out[outlen], '\0');
	ck_assert_msg(jsonv_validate(out, outlen, 0, &e) == 0, "wrapped is not JSON: %s at %zu",
		      e.what, e.offset);
	ck_assert_int_eq(envelope_id(out, outlen, &c), HERR_NOTFOUND);
	ck_assert(!envelope_is_scripted(out, outlen));
	free(out);
}

#define PRE "{\"id\":null,\"channel\":\"notifications:42\",\"ts\":1732550000000,\"data\":"

START_TEST(test_wrap_valid_json)
{
	check_wrap(T("{\"title\":\"hi\",\"n\":[1,2]}"), PRE "{\"title\":\"hi\",\"n\":[1,2]}}");
	check_wrap(T("\"text\""), PRE "\"text\"}");
	check_wrap(T("42"), PRE "42}");
	check_wrap(T("-1.5e3"), PRE "-1.5e3}");
	check_wrap(T("null"), PRE "null}");
	check_wrap(T("[]"), PRE "[]}");
	check_wrap(T(" {} "), PRE " {} }");
	check_wrap(T("\"\\uD800 \xe2\x82\xac\""), PRE "\"\\uD800 \xe2\x82\xac\"}");
	/* A payload that only starts like an envelope is a payload. */
	check_wrap(T("{\"id\":\"abc\"}"), PRE "{\"id\":\"abc\"}}");
	check_wrap(T("{\"id\":\"123\",\"title\":\"x\"}"), PRE "{\"id\":\"123\",\"title\":\"x\"}}");
}
END_TEST

START_TEST(test_wrap_invalid_json)
{
	check_wrap(T("hello"), PRE "\"hello\"}");
	check_wrap(T("{bad"), PRE "\"{bad\"}");
	check_wrap(T(""), PRE "\"\"}");
	check_wrap(T("NaN"), PRE "\"NaN\"}");
	check_wrap(T("{'a':1}"), PRE "\"{'a':1}\"}");
	check_wrap(T("say \"hi\" \\o/"), PRE "\"say \\\"hi\\\" \\\\o/\"}");
	check_wrap(T("[1,]"), PRE "\"[1,]\"}");
	check_wrap(T("\"a\tb\""), PRE "\"\\\"a\\u0009b\\\"\"}");
	check_wrap(T("caf\xc3\xa9 \xf0\x9f\x98\x80!"), PRE "\"caf\xc3\xa9 \xf0\x9f\x98\x80!\"}");
	check_wrap(T("\x7f"), PRE "\"\x7f\"}");
}
END_TEST

START_TEST(test_wrap_control_bytes)
{
	char payload[32];
	char want[sizeof(PRE) + 32 * 6 + 8];
	char *p;

	for (int i = 0; i < 32; i++)
		payload[i] = (char)i;
	p = want + strlen(PRE "\"");
	memcpy(want, PRE "\"", strlen(PRE "\""));
	for (int i = 0; i < 32; i++) {
		static const char hex[] = "0123456789abcdef";

		memcpy(p, "\\u00", 4);
		p[4] = hex[i >> 4];
		p[5] = hex[i & 0xf];
		p += 6;
	}
	memcpy(p, "\"}", 3);
	check_wrap(payload, sizeof payload, want);
	check_wrap(T("\0"), PRE "\"\\u0000\"}");
}
END_TEST

#define FFFD "\xef\xbf\xbd"

START_TEST(test_wrap_invalid_utf8)
{
	check_wrap(T("\xff"), PRE "\"" FFFD "\"}");
	check_wrap(T("a\x80"
		     "b"),
		   PRE "\"a" FFFD "b\"}");
	check_wrap(T("\xc0\xaf"), PRE "\"" FFFD FFFD "\"}");	      /* overlong: 2 subparts */
	check_wrap(T("\xed\xa0\x80"), PRE "\"" FFFD FFFD FFFD "\"}"); /* UTF-8 surrogate */
	check_wrap(T("\xf4\x90\x80\x80"), PRE "\"" FFFD FFFD FFFD FFFD "\"}"); /* > U+10FFFF */
	check_wrap(T("\xe2\x82"
		     "x"),
		   PRE "\"" FFFD "x\"}"); /* truncated: 1 subpart */
	check_wrap(T("x\xf0\x9f\x98"), PRE "\"x" FFFD "\"}");
	check_wrap(T("\xe9t\xe9"), PRE "\"" FFFD "t" FFFD "\"}"); /* Latin-1 */
	/* A JSON string holding invalid UTF-8 is not valid JSON: wrapped as text. */
	check_wrap(T("\"\xff\""), PRE "\"\\\"" FFFD "\\\"\"}");
}
END_TEST

START_TEST(test_wrap_all_bytes)
{
	unsigned char payload[512];
	struct jsonv_error e = {0, NULL};
	char *out = NULL;
	size_t outlen = 0;

	for (int i = 0; i < 512; i++)
		payload[i] = (unsigned char)(i * 7 + (i >> 8));
	ck_assert_int_eq(
	    envelope_wrap_raw(CH, (const char *)payload, sizeof payload, TS, &out, &outlen), 0);
	ck_assert_msg(jsonv_validate(out, outlen, 0, &e) == 0, "wrapped is not JSON: %s at %zu",
		      e.what, e.offset);
	ck_assert_uint_eq(strlen(out), outlen);
	free(out);
}
END_TEST

START_TEST(test_wrap_channel_and_ts)
{
	char *out = NULL;
	size_t outlen = 0;

	ck_assert_int_eq(envelope_wrap_raw("a\"b\\c", T("1"), -5, &out, &outlen), 0);
	ck_assert_str_eq(out, "{\"id\":null,\"channel\":\"a\\\"b\\\\c\",\"ts\":-5,\"data\":1}");
	ck_assert_int_eq(jsonv_validate(out, outlen, 0, NULL), 0);
	free(out);
	ck_assert_int_eq(envelope_wrap_raw("", T("1"), 0, &out, NULL), 0);
	ck_assert_str_eq(out, "{\"id\":null,\"channel\":\"\",\"ts\":0,\"data\":1}");
	free(out);
	ck_assert_int_eq(envelope_wrap_raw(CH, NULL, 0, TS, &out, &outlen), 0);
	ck_assert_str_eq(out, PRE "\"\"}");
	free(out);
	ck_assert_int_eq(envelope_wrap_raw(NULL, T("1"), TS, &out, &outlen), HERR_INVAL);
	ck_assert_int_eq(envelope_wrap_raw(CH, T("1"), TS, NULL, &outlen), HERR_INVAL);
	ck_assert_int_eq(envelope_wrap_raw(CH, NULL, 3, TS, &out, &outlen), HERR_INVAL);
}
END_TEST

START_TEST(test_from_channel)
{
	static const char scripted[] =
	    "{\"id\":\"1732550000000-3\",\"channel\":\"notifications:42\","
	    "\"ts\":1732550000000,\"data\":{\"a\":1}}";
	char *out = (char *)"untouched";
	size_t outlen = 99;
	struct cursor c;

	ck_assert_int_eq(envelope_from_channel(CH, scripted, strlen(scripted), TS, &out, &outlen),
			 0);
	ck_assert_ptr_null(out);
	ck_assert_uint_eq(outlen, 0);

	ck_assert_int_eq(envelope_from_channel(CH, T("{\"id\":\"abc\"}"), TS, &out, &outlen), 0);
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, PRE "{\"id\":\"abc\"}}");
	ck_assert_int_eq(envelope_id(out, outlen, &c), HERR_NOTFOUND);
	free(out);

	ck_assert_int_eq(envelope_from_channel(CH, T("hello"), TS, &out, &outlen), 0);
	ck_assert_str_eq(out, PRE "\"hello\"}");
	free(out);

	/* An already wrapped message (id null) is not scripted: it is wrapped again. */
	ck_assert_int_eq(envelope_from_channel(CH, T(PRE "1}"), TS, &out, &outlen), 0);
	ck_assert_str_eq(out, PRE PRE "1}}");
	free(out);

	ck_assert_int_eq(envelope_from_channel(CH, T("1"), TS, NULL, &outlen), HERR_INVAL);
}
END_TEST

Suite *envelope_suite(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("envelope");

	tcase_add_test(tc, test_id_parses);
	tcase_add_test(tc, test_id_null);
	tcase_add_loop_test(tc, test_not_envelope, 0,
			    (int)(sizeof not_envelopes / sizeof not_envelopes[0]));
	tcase_add_test(tc, test_truncated_prefix);
	tcase_add_test(tc, test_wrap_valid_json);
	tcase_add_test(tc, test_wrap_invalid_json);
	tcase_add_test(tc, test_wrap_control_bytes);
	tcase_add_test(tc, test_wrap_invalid_utf8);
	tcase_add_test(tc, test_wrap_all_bytes);
	tcase_add_test(tc, test_wrap_channel_and_ts);
	tcase_add_test(tc, test_from_channel);
	suite_add_tcase(s, tc);
	return s;
}
