/* src/text.c: UTF-8, JSON string escaping, unsigned numbers, percent-decoding. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "err.h"
#include "suites.h"
#include "text.h"

/* --- UTF-8 --- */

START_TEST(utf8_next)
{
	int ok = -1;

	ck_assert_uint_eq(text_utf8_next("a", 1, &ok), 1);
	ck_assert_int_eq(ok, 1);
	ck_assert_uint_eq(text_utf8_next("\xe2\x82\xac", 3, &ok), 3);
	ck_assert_int_eq(ok, 1);
	ck_assert_uint_eq(text_utf8_next("\xf0\x9f\x98\x80", 4, &ok), 4);
	ck_assert_int_eq(ok, 1);
	/* Maximal subparts: a truncated sequence is one unit, a bad lead byte one. */
	ck_assert_uint_eq(text_utf8_next("\xe2\x82"
					 "a",
					 3, &ok),
			  2);
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xe2\x82\xac", 2, &ok), 2);
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xf0\x9f\x98"
					 "a",
					 4, &ok),
			  3);
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xed\xa0\x80", 3, &ok), 1); /* surrogate */
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xc0\xaf", 2, &ok), 1); /* overlong */
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xf4\x90\x80\x80", 4, &ok), 1); /* past U+10FFFF */
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\x80", 1, &ok), 1);
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("\xff", 1, &ok), 1);
	ck_assert_int_eq(ok, 0);
	ck_assert_uint_eq(text_utf8_next("", 0, &ok), 0);
	ck_assert_int_eq(ok, 0);
}
END_TEST

START_TEST(utf8_feed)
{
	static const char text[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	size_t n = sizeof text - 1;
	uint32_t st;

	ck_assert_uint_eq(text_utf8_feed(0, text, n), 0);
	/* split anywhere, the state carries the character across */
	for (size_t cut = 1; cut < n; cut++) {
		st = text_utf8_feed(0, text, cut);
		ck_assert_uint_ne(st, TEXT_UTF8_BAD);
		ck_assert_uint_eq(text_utf8_feed(st, text + cut, n - cut), 0);
	}
	ck_assert_uint_ne(text_utf8_feed(0, "\xe2\x82", 2), 0); /* inside a character */
	ck_assert_uint_ne(text_utf8_feed(0, "\xe2\x82", 2), TEXT_UTF8_BAD);
	ck_assert_uint_eq(text_utf8_feed(0, "a\xed\xa0\x80", 4), TEXT_UTF8_BAD);
	ck_assert_uint_eq(text_utf8_feed(0, "\xe0\x80\x80", 3), TEXT_UTF8_BAD);
	ck_assert_uint_eq(text_utf8_feed(0, "\xf8\x88\x80\x80\x80", 5), TEXT_UTF8_BAD);
	/* once bad, always bad */
	ck_assert_uint_eq(text_utf8_feed(TEXT_UTF8_BAD, "a", 1), TEXT_UTF8_BAD);
	ck_assert_uint_eq(text_utf8_feed(0, "", 0), 0);
}
END_TEST

/* --- JSON strings --- */

static void check_escape(const char *in, size_t len, const char *want)
{
	char out[256];
	size_t n = text_json_escape(NULL, in, len);

	ck_assert_uint_eq(n, strlen(want));
	ck_assert_uint_lt(n, sizeof out);
	ck_assert_uint_eq(text_json_escape(out, in, len), n);
	out[n] = '\0';
	ck_assert_str_eq(out, want);
}

#define ESC(lit, want) check_escape(lit, sizeof(lit) - 1, want)
#define FFFD "\xef\xbf\xbd"

START_TEST(json_escape)
{
	ESC("", "");
	ESC("plain /text/", "plain /text/");
	ESC("say \"hi\" \\o/", "say \\\"hi\\\" \\\\o/");
	ESC("a\tb\nc\r", "a\\u0009b\\u000ac\\u000d");
	ESC("\x01\x1f\x7f", "\\u0001\\u001f\x7f");
	ESC("nul\0in", "nul\\u0000in");
	ESC("caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80");
	/* ill-formed UTF-8: one U+FFFD per maximal subpart */
	ESC("a\x80" "b", "a" FFFD "b");
	ESC("\xe2\x82" "a", FFFD "a");
	ESC("\xed\xa0\x80", FFFD FFFD FFFD);
	ESC("\xff\xfe", FFFD FFFD);
}
END_TEST

START_TEST(json_char)
{
	char out[TEXT_JSON_CHAR_MAX];
	size_t used;

	ck_assert_uint_eq(text_json_char("\"x", 2, out, &used), 2);
	ck_assert_uint_eq(used, 1);
	ck_assert(memcmp(out, "\\\"", 2) == 0);
	ck_assert_uint_eq(text_json_char("\x1b", 1, out, &used), 6);
	ck_assert(memcmp(out, "\\u001b", 6) == 0);
	ck_assert_uint_eq(text_json_char("\xe2\x82\xac!", 4, out, &used), 3);
	ck_assert_uint_eq(used, 3);
	ck_assert_uint_eq(text_json_char("\xe2\x82", 2, out, &used), 3); /* cut short */
	ck_assert_uint_eq(used, 2);
	ck_assert(memcmp(out, FFFD, 3) == 0);
}
END_TEST

/* --- unsigned numbers --- */

START_TEST(uint_parse)
{
	uint64_t v = 7;

	ck_assert_int_eq(text_parse_uint("0", 1, 10, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(text_parse_uint("65535", 5, 65535, &v), 0);
	ck_assert_uint_eq(v, 65535);
	ck_assert_int_eq(text_parse_uint("65536", 5, 65535, &v), -1);
	ck_assert_int_eq(text_parse_uint("007", 3, 10, &v), 0);
	ck_assert_uint_eq(v, 7);
	ck_assert_int_eq(text_parse_uint("18446744073709551615", 20, UINT64_MAX, &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(text_parse_uint("18446744073709551616", 20, UINT64_MAX, &v), -1);
	ck_assert_int_eq(text_parse_uint("99999999999999999999999", 23, UINT64_MAX, &v), -1);
	/* no sign, no blank, no empty string, len bounds the input */
	ck_assert_int_eq(text_parse_uint("", 0, 10, &v), -1);
	ck_assert_int_eq(text_parse_uint("-1", 2, 10, &v), -1);
	ck_assert_int_eq(text_parse_uint("+1", 2, 10, &v), -1);
	ck_assert_int_eq(text_parse_uint(" 1", 2, 10, &v), -1);
	ck_assert_int_eq(text_parse_uint("1 ", 2, 10, &v), -1);
	ck_assert_int_eq(text_parse_uint("12x", 2, 100, &v), 0);
	ck_assert_uint_eq(v, 12);
	ck_assert_int_eq(text_parse_uint("5", 1, 0, &v), -1);
	ck_assert_int_eq(text_parse_uint(NULL, 0, 10, &v), -1);
}
END_TEST

START_TEST(uint_prefix)
{
	uint64_t v = 7;

	ck_assert_uint_eq(text_uint_prefix("123-45", 6, UINT64_MAX, &v), 3);
	ck_assert_uint_eq(v, 123);
	ck_assert_uint_eq(text_uint_prefix("x1", 2, UINT64_MAX, &v), 0);
	ck_assert_uint_eq(v, 123); /* untouched on failure */
	ck_assert_uint_eq(text_uint_prefix("", 0, UINT64_MAX, &v), 0);
	ck_assert_uint_eq(text_uint_prefix("1000", 4, 999, &v), 0);
}
END_TEST

/* --- percent-decoding --- */

START_TEST(pct_decode_plain)
{
	char out[32];

	ck_assert_int_eq(text_pct_decode("abc", 3, out, sizeof out, 0), 3);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(text_pct_decode("", 0, out, sizeof out, 0), 0);
	ck_assert_str_eq(out, "");
	/* len bounds the input, not a NUL */
	ck_assert_int_eq(text_pct_decode("abcdef", 2, out, sizeof out, 0), 2);
	ck_assert_str_eq(out, "ab");
}
END_TEST

START_TEST(pct_decode_escapes)
{
	char out[32];

	ck_assert_int_eq(text_pct_decode("a%20b%2Fc%2fd", 13, out, sizeof out, 0), 7);
	ck_assert_str_eq(out, "a b/c/d");
	ck_assert_int_eq(text_pct_decode("%e2%82%AC", 9, out, sizeof out, 0), 3);
	ck_assert_str_eq(out, "\xe2\x82\xac");
	ck_assert_int_eq(text_pct_decode("%25", 3, out, sizeof out, 0), 1);
	ck_assert_str_eq(out, "%");
}
END_TEST

START_TEST(pct_decode_plus)
{
	char out[32];

	ck_assert_int_eq(text_pct_decode("a+b", 3, out, sizeof out, 1), 3);
	ck_assert_str_eq(out, "a b");
	ck_assert_int_eq(text_pct_decode("a+b", 3, out, sizeof out, 0), 3);
	ck_assert_str_eq(out, "a+b");
	ck_assert_int_eq(text_pct_decode("a%2Bb", 5, out, sizeof out, 1), 3);
	ck_assert_str_eq(out, "a+b");
}
END_TEST

START_TEST(pct_decode_bad)
{
	char out[32];

	ck_assert_int_eq(text_pct_decode("%zz", 3, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("%2", 2, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("%", 1, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("ab%", 3, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("%g0", 3, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("%0g", 3, out, sizeof out, 0), HERR_INVAL);
	ck_assert_int_eq(text_pct_decode("a%00b", 5, out, sizeof out, 0), HERR_INVAL);
	/* a '%' cut off by len is truncated, even if the bytes after exist */
	ck_assert_int_eq(text_pct_decode("a%41", 3, out, sizeof out, 0), HERR_INVAL);
	/* a raw NUL inside len */
	ck_assert_int_eq(text_pct_decode("a\0b", 3, out, sizeof out, 0), HERR_INVAL);
}
END_TEST

START_TEST(pct_decode_toobig)
{
	char out[4];

	ck_assert_int_eq(text_pct_decode("abc", 3, out, sizeof out, 0), 3);
	ck_assert_int_eq(text_pct_decode("abcd", 4, out, sizeof out, 0), HERR_TOOBIG);
	ck_assert_int_eq(text_pct_decode("%41%42%43", 9, out, sizeof out, 0), 3);
	ck_assert_str_eq(out, "ABC");
	ck_assert_int_eq(text_pct_decode("", 0, out, 0, 0), HERR_TOOBIG);
	ck_assert_int_eq(text_pct_decode("a", 1, out, 1, 0), HERR_TOOBIG);
}
END_TEST

START_TEST(pct_next)
{
	size_t i = 0;

	ck_assert_int_eq(text_pct_next("%41+b", 5, &i, 1), 'A');
	ck_assert_uint_eq(i, 3);
	ck_assert_int_eq(text_pct_next("%41+b", 5, &i, 1), ' ');
	ck_assert_uint_eq(i, 4);
	ck_assert_int_eq(text_hex_value('f'), 15);
	ck_assert_int_eq(text_hex_value('F'), 15);
	ck_assert_int_eq(text_hex_value('g'), -1);
}
END_TEST

Suite *text_suite(void)
{
	Suite *s = suite_create("text");
	TCase *tc = tcase_create("text");

	tcase_add_test(tc, utf8_next);
	tcase_add_test(tc, utf8_feed);
	tcase_add_test(tc, json_escape);
	tcase_add_test(tc, json_char);
	tcase_add_test(tc, uint_parse);
	tcase_add_test(tc, uint_prefix);
	tcase_add_test(tc, pct_decode_plain);
	tcase_add_test(tc, pct_decode_escapes);
	tcase_add_test(tc, pct_decode_plus);
	tcase_add_test(tc, pct_decode_bad);
	tcase_add_test(tc, pct_decode_toobig);
	tcase_add_test(tc, pct_next);
	suite_add_tcase(s, tc);
	return s;
}
