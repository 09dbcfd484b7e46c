#include "config.h"

#include <stdint.h>
#include <string.h>

#include "cursor.h"
#include "err.h"
#include "suites.h"

#define T(lit) lit, sizeof(lit) - 1

static const struct {
	const char *s;
	size_t len;
	uint64_t ms, seq;
} good[] = {
    {T("1732550000000-0"), 1732550000000ULL, 0},
    {T("1732550000000-17"), 1732550000000ULL, 17},
    {T("0-0"), 0, 0},
    {T("0-1"), 0, 1},
    {T("1732550000000"), 1732550000000ULL, 0},
    {T("0"), 0, 0},
    {T("007-1"), 7, 1},
    {T("1-007"), 1, 7},
    {T("18446744073709551615-18446744073709551615"), UINT64_MAX, UINT64_MAX},
    {T("18446744073709551615"), UINT64_MAX, 0},
    {T("18446744073709551614-0"), UINT64_MAX - 1, 0},
    {T("0-18446744073709551615"), 0, UINT64_MAX},
    {T("00000000000000000000000000000000000000001"), 1, 0}, /* 41 bytes */
};

START_TEST(test_parse_good)
{
	struct cursor c = {99, 99};

	ck_assert_msg(cursor_parse(good[_i].s, good[_i].len, &c) == 0, "case %d (%s) refused", _i,
		      good[_i].s);
	ck_assert_msg(c.ms == good[_i].ms && c.seq == good[_i].seq, "case %d (%s) misread", _i,
		      good[_i].s);
	ck_assert_int_eq(cursor_parse(good[_i].s, good[_i].len, NULL), 0);
}
END_TEST

static const struct {
	const char *s;
	size_t len;
} bad[] = {
    {T("")},
    {T("-")},
    {T("+")},
    {T("$")},
    {T(">")},
    {T("*")},
    {T("1-")},
    {T("-1")},
    {T("1--1")},
    {T("1-1-1")},
    {T("+1-1")},
    {T("1-+1")},
    {T("-1-1")},
    {T("1-0-")},
    {T(" 1-1")},
    {T("1-1 ")},
    {T("1 -1")},
    {T("1-1\n")},
    {T("1-1\0")},
    {T("\0"
       "1-1")},
    {T("1.5-1")},
    {T("1e3-1")},
    {T("0x10-1")},
    {T("abc")},
    {T("1-abc")},
    {T("\xff\xfe")},
    {T("1\xc2\xb2-1")},
    {T("18446744073709551616-0")}, /* UINT64_MAX + 1 */
    {T("0-18446744073709551616")},
    {T("18446744073709551616")},
    {T("99999999999999999999-0")},
    {T("184467440737095516150-0")},
    {T("000000000000000000000000000000000000000001")}, /* 42 bytes */
    {T("18446744073709551615-018446744073709551615")},
};

START_TEST(test_parse_bad)
{
	struct cursor c = {99, 98};

	ck_assert_msg(cursor_parse(bad[_i].s, bad[_i].len, &c) == HERR_INVAL, "case %d accepted",
		      _i);
	/* A refused cursor leaves the output alone. */
	ck_assert(c.ms == 99 && c.seq == 98);
}
END_TEST

START_TEST(test_parse_length_bound)
{
	struct cursor c;

	/* The length counts, not the NUL: a valid prefix with len past it fails. */
	ck_assert_int_eq(cursor_parse("12-3", 4, &c), 0);
	ck_assert_int_eq(cursor_parse("12-3", 2, &c), 0);
	ck_assert(c.ms == 12 && c.seq == 0);
	ck_assert_int_eq(cursor_parse("12-3", 3, &c), HERR_INVAL);
	ck_assert_int_eq(cursor_parse(NULL, 0, &c), HERR_INVAL);
	ck_assert_int_eq(cursor_parse(NULL, 3, &c), HERR_INVAL);
}
END_TEST

START_TEST(test_format)
{
	struct cursor c = {UINT64_MAX, UINT64_MAX};
	char buf[CURSOR_STR_MAX];
	struct cursor back;
	int n;

	n = cursor_format(&c, buf, sizeof buf);
	ck_assert_int_eq(n, CURSOR_STR_MAX - 1);
	ck_assert_str_eq(buf, "18446744073709551615-18446744073709551615");
	ck_assert_int_eq(cursor_parse(buf, (size_t)n, &back), 0);
	ck_assert_int_eq(cursor_cmp(&c, &back), 0);

	c.ms = 1732550000000ULL;
	c.seq = 0;
	n = cursor_format(&c, buf, sizeof buf);
	ck_assert_int_eq(n, 15);
	ck_assert_str_eq(buf, "1732550000000-0");

	c.ms = 0;
	ck_assert_int_eq(cursor_format(&c, buf, sizeof buf), 3);
	ck_assert_str_eq(buf, "0-0");
	/* Too small a buffer is an error, never a silently cut cursor. */
	ck_assert_int_eq(cursor_format(&c, buf, 3), HERR_INVAL);
	ck_assert_int_eq(cursor_format(&c, buf, 4), 3);
	ck_assert_int_eq(cursor_format(&c, buf, 0), HERR_INVAL);
	ck_assert_int_eq(cursor_format(NULL, buf, sizeof buf), HERR_INVAL);
}
END_TEST

START_TEST(test_cmp)
{
	const struct cursor order[] = {
	    {0, 0},
	    {0, 1},
	    {0, UINT64_MAX},
	    {1, 0},
	    {1732550000000ULL, 0},
	    {1732550000000ULL, 5},
	    {UINT64_MAX, 0},
	    {UINT64_MAX, UINT64_MAX},
	};
	const size_t n = sizeof order / sizeof order[0];

	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			int r = cursor_cmp(&order[i], &order[j]);

			if (i < j)
				ck_assert_msg(r < 0, "%zu vs %zu", i, j);
			else if (i > j)
				ck_assert_msg(r > 0, "%zu vs %zu", i, j);
			else
				ck_assert_int_eq(r, 0);
		}
	}
}
END_TEST

Suite *cursor_suite(void)
{
	Suite *s = suite_create("cursor");
	TCase *tc = tcase_create("cursor");

	tcase_add_loop_test(tc, test_parse_good, 0, (int)(sizeof good / sizeof good[0]));
	tcase_add_loop_test(tc, test_parse_bad, 0, (int)(sizeof bad / sizeof bad[0]));
	tcase_add_test(tc, test_parse_length_bound);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_cmp);
	suite_add_tcase(s, tc);
	return s;
}
