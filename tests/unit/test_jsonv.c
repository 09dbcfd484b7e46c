#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jsonv.h"
#include "suites.h"

/*
 * JSONTestSuite's i_ files are the ones RFC 8259 leaves to the parser.  Ours
 * does what JSON.parse does on text that is valid UTF-8, and refuses text
 * that is not (WebSocket text frames and EventSource need UTF-8):
 * - huge numbers, exponents and underflows: accepted (JSON.parse gives
 *   Infinity or 0; the grammar allows them);
 * - escaped lone or misordered surrogates ("\uD800"): accepted, as JSON.parse;
 * - any invalid UTF-8 (overlong, UTF-8-encoded surrogate ED A0 80, past
 *   U+10FFFF, truncated, Latin-1, lone continuation byte): refused;
 * - UTF-16 text, with or without a BOM, and a UTF-8 BOM: refused (the BOM is
 *   not JSON whitespace; JSON.parse refuses it too);
 * - 500 nested arrays: refused, deeper than JSONV_DEPTH_MAX (64).
 * An i_ file missing from this table fails the test, so a new one in the
 * suite gets a decision.
 */
static const struct {
	const char *name;
	int accept;
} i_decisions[] = {
    {"i_number_double_huge_neg_exp.json", 1},
    {"i_number_huge_exp.json", 1},
    {"i_number_neg_int_huge_exp.json", 1},
    {"i_number_pos_double_huge_exp.json", 1},
    {"i_number_real_neg_overflow.json", 1},
    {"i_number_real_pos_overflow.json", 1},
    {"i_number_real_underflow.json", 1},
    {"i_number_too_big_neg_int.json", 1},
    {"i_number_too_big_pos_int.json", 1},
    {"i_number_very_big_negative_int.json", 1},
    {"i_object_key_lone_2nd_surrogate.json", 1},
    {"i_string_1st_surrogate_but_2nd_missing.json", 1},
    {"i_string_1st_valid_surrogate_2nd_invalid.json", 1},
    {"i_string_incomplete_surrogate_and_escape_valid.json", 1},
    {"i_string_incomplete_surrogate_pair.json", 1},
    {"i_string_incomplete_surrogates_escape_valid.json", 1},
    {"i_string_invalid_lonely_surrogate.json", 1},
    {"i_string_invalid_surrogate.json", 1},
    {"i_string_inverted_surrogates_U+1D11E.json", 1},
    {"i_string_lone_second_surrogate.json", 1},
    {"i_string_UTF-16LE_with_BOM.json", 0},
    {"i_string_UTF-8_invalid_sequence.json", 0},
    {"i_string_UTF8_surrogate_U+D800.json", 0},
    {"i_string_invalid_utf-8.json", 0},
    {"i_string_iso_latin_1.json", 0},
    {"i_string_lone_utf8_continuation_byte.json", 0},
    {"i_string_not_in_unicode_range.json", 0},
    {"i_string_overlong_sequence_2_bytes.json", 0},
    {"i_string_overlong_sequence_6_bytes.json", 0},
    {"i_string_overlong_sequence_6_bytes_null.json", 0},
    {"i_string_truncated-utf-8.json", 0},
    {"i_string_utf16BE_no_BOM.json", 0},
    {"i_string_utf16LE_no_BOM.json", 0},
    {"i_structure_500_nested_arrays.json", 0},
    {"i_structure_UTF-8_BOM_empty_object.json", 0},
};

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long size;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size + 1);
		ck_assert_ptr_nonnull(buf);
		*len = fread(buf, 1, (size_t)size, f);
		ck_assert_msg(*len == (size_t)size, "short read of %s", path);
	}
	fclose(f);
	ck_assert_msg(buf != NULL, "cannot size %s", path);
	return buf;
}

static int i_expected(const char *name)
{
	for (size_t i = 0; i < sizeof i_decisions / sizeof i_decisions[0]; i++) {
		if (strcmp(i_decisions[i].name, name) == 0)
			return i_decisions[i].accept;
	}
	return -1;
}

START_TEST(test_json_test_suite)
{
	const char *data = getenv("HERALD_TESTDATA");
	char dir[4096], path[8192];
	unsigned y = 0, n = 0, i = 0;
	struct dirent *de;
	DIR *d;

	ck_assert_msg(data != NULL, "set HERALD_TESTDATA to tests/data");
	snprintf(dir, sizeof dir, "%s/JSONTestSuite/test_parsing", data);
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		struct jsonv_error e = {0, NULL};
		size_t len = 0;
		char *text;
		int rc, want;

		if (strlen(name) < 7 || strcmp(name + strlen(name) - 5, ".json") != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, name);
		text = read_file(path, &len);
		rc = jsonv_validate(text, len, 0, &e);
		free(text);
		if (name[0] == 'y' && name[1] == '_') {
			ck_assert_msg(rc == 0, "%s refused: %s at %zu", name, e.what, e.offset);
			y++;
		} else if (name[0] == 'n' && name[1] == '_') {
			ck_assert_msg(rc == HERR_INVAL, "%s accepted", name);
			ck_assert_msg(e.what != NULL && e.offset <= len, "%s: no error detail",
				      name);
			n++;
		} else if (name[0] == 'i' && name[1] == '_') {
			want = i_expected(name);
			ck_assert_msg(want >= 0, "%s: no decision in i_decisions", name);
			if (want)
				ck_assert_msg(rc == 0, "%s refused: %s at %zu", name, e.what,
					      e.offset);
			else
				ck_assert_msg(rc == HERR_INVAL, "%s accepted", name);
			i++;
		}
	}
	closedir(d);
	ck_assert_uint_ge(y, 95);
	ck_assert_uint_ge(n, 188);
	ck_assert_uint_eq(i, sizeof i_decisions / sizeof i_decisions[0]);
}
END_TEST

/* Inputs with their length, so that NUL bytes can be part of them. */
#define T(lit) lit, sizeof(lit) - 1

static const struct {
	const char *s;
	size_t len;
	size_t offset;
	const char *what;
} bad[] = {
    {T(""), 0, "empty input"},
    {T(" \t\r\n"), 4, "empty input"},
    {T("["), 1, "unexpected end"},
    {T("[1,"), 3, "unexpected end"},
    {T("{\"a\":"), 5, "unexpected end"},
    {T("{\"a\""), 4, "unexpected end"},
    {T("[1,]"), 3, "unexpected character"},
    {T("{\"a\":1,}"), 7, "expected a string key"},
    {T("{'a':1}"), 1, "expected a string key"},
    {T("{\"a\" 1}"), 5, "expected ':'"},
    {T("[1 2]"), 3, "expected ',' or ']'"},
    {T("{\"a\":1]"), 6, "expected ',' or '}'"},
    {T("[1]]"), 3, "trailing characters"},
    {T("1 2"), 2, "trailing characters"},
    {T("{} /* c */"), 3, "trailing characters"},
    {T("[1]\0"), 3, "trailing characters"},
    {T("\xef\xbb\xbf{}"), 0, "unexpected character"},
    {T("\f[]"), 0, "unexpected character"},
    {T("[\xa0]"), 1, "unexpected character"},
    {T("+1"), 0, "unexpected character"},
    {T(".5"), 0, "unexpected character"},
    {T("NaN"), 0, "unexpected character"},
    {T("Infinity"), 0, "unexpected character"},
    {T("-Infinity"), 1, "invalid number"},
    {T("'a'"), 0, "unexpected character"},
    {T("01"), 1, "leading zero"},
    {T("-012"), 2, "leading zero"},
    {T("1."), 2, "unexpected end"},
    {T("[1.]"), 3, "invalid number"},
    {T("1e"), 2, "unexpected end"},
    {T("1e+"), 3, "unexpected end"},
    {T("[1e+]"), 4, "invalid number"},
    {T("-"), 1, "unexpected end"},
    {T("0x10"), 1, "trailing characters"},
    {T("tru"), 3, "unexpected end"},
    {T("trUe"), 2, "invalid literal"},
    {T("nulll"), 4, "trailing characters"},
    {T("\"abc"), 4, "unterminated string"},
    {T("\"a\\"), 3, "unterminated string"},
    {T("\"\\u12"), 5, "unterminated string"},
    {T("\"\\u12G4\""), 5, "invalid \\u escape"},
    {T("\"\\x\""), 1, "invalid escape"},
    {T("\"\\'\""), 1, "invalid escape"},
    {T("\"a\tb\""), 2, "control character in string"},
    {T("\"a\nb\""), 2, "control character in string"},
    {T("\"\0\""), 1, "control character in string"},
    {T("\"\x1f\""), 1, "control character in string"},
    {T("\"\xc0\xaf\""), 1, "invalid UTF-8"},	     /* overlong '/' */
    {T("\"\xe0\x80\xaf\""), 1, "invalid UTF-8"},     /* overlong, 3 bytes */
    {T("\"\xf0\x80\x80\xaf\""), 1, "invalid UTF-8"}, /* overlong, 4 bytes */
    {T("\"\xed\xa0\x80\""), 1, "invalid UTF-8"},     /* U+D800 encoded */
    {T("\"\xed\xbf\xbf\""), 1, "invalid UTF-8"},     /* U+DFFF encoded */
    {T("\"\xf4\x90\x80\x80\""), 1, "invalid UTF-8"}, /* U+110000 */
    {T("\"\xf5\x80\x80\x80\""), 1, "invalid UTF-8"},
    {T("\"\xff\""), 1, "invalid UTF-8"},
    {T("\"\x80\""), 1, "invalid UTF-8"},
    {T("\"ab\xe2\x82\""), 3, "invalid UTF-8"}, /* truncated euro sign */
    {T("\"\xe2\x82"), 1, "invalid UTF-8"},
};

START_TEST(test_bad_offsets)
{
	struct jsonv_error e = {0, NULL};

	e.what = NULL;
	e.offset = 9999;
	ck_assert_int_eq(jsonv_validate(bad[_i].s, bad[_i].len, 0, &e), HERR_INVAL);
	ck_assert_msg(e.what != NULL && strcmp(e.what, bad[_i].what) == 0,
		      "case %d: what \"%s\", expected \"%s\"", _i, e.what, bad[_i].what);
	ck_assert_msg(e.offset == bad[_i].offset, "case %d (%s): offset %zu, expected %zu", _i,
		      bad[_i].what, e.offset, bad[_i].offset);
	/* The error detail is optional. */
	ck_assert_int_eq(jsonv_validate(bad[_i].s, bad[_i].len, 0, NULL), HERR_INVAL);
}
END_TEST

static const struct {
	const char *s;
	size_t len;
} good[] = {
    {T("0")},
    {T("-0")},
    {T("-0.0e-0")},
    {T("1E+10")},
    {T("123.456e789")},
    {T("true")},
    {T(" false ")},
    {T("\r\n\tnull\r\n\t")},
    {T("\"\"")},
    {T("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD834\\uDD1E\"")},
    {T("\"\\uD800\"")},
    {T("\"\\uDC00\\uD800\"")},
    {T("\"\x7f\"")},
    {T("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\"")},
    {T("\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xf3\xbf\xbf\xbf\"")},
    {T("[]")},
    {T("{}")},
    {T("[[],{},[{}]]")},
    {T("{\"a\":[1,{\"b\":null}],\"a\":2}")},
    {T("{\"\\u0000\":\"\\u0000\"}")},
    {T("{\"id\":\"1-0\",\"channel\":\"notifications:42\",\"ts\":1,\"data\":{\"x\":[true]}}")},
};

START_TEST(test_good)
{
	struct jsonv_error e = {0, NULL};

	ck_assert_msg(jsonv_validate(good[_i].s, good[_i].len, 0, &e) == 0,
		      "case %d refused: %s at %zu", _i, e.what, e.offset);
}
END_TEST

START_TEST(test_null_text)
{
	struct jsonv_error e = {0, NULL};

	ck_assert_int_eq(jsonv_validate(NULL, 0, 0, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "empty input");
	ck_assert_int_eq(jsonv_validate(NULL, 3, 0, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "no text");
}
END_TEST

/* n '[' then n ']'. */
static char *nested(size_t n, size_t *len)
{
	char *s = malloc(2 * n);

	ck_assert_ptr_nonnull(s);
	memset(s, '[', n);
	memset(s + n, ']', n);
	*len = 2 * n;
	return s;
}

START_TEST(test_deep_nesting)
{
	struct jsonv_error e = {0, NULL};
	size_t len;
	char *s;

	s = malloc(100000);
	ck_assert_ptr_nonnull(s);
	memset(s, '[', 100000);
	ck_assert_int_eq(jsonv_validate(s, 100000, 0, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "too deep");
	ck_assert_uint_eq(e.offset, JSONV_DEPTH_MAX);
	memset(s, '{', 100000);
	ck_assert_int_eq(jsonv_validate(s, 100000, 0, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "expected a string key");
	ck_assert_uint_eq(e.offset, 1);
	free(s);

	s = nested(JSONV_DEPTH_MAX, &len);
	ck_assert_int_eq(jsonv_validate(s, len, 0, NULL), 0);
	/* A limit past the cap is the cap. */
	ck_assert_int_eq(jsonv_validate(s, len, 1000, NULL), 0);
	free(s);
	s = nested(JSONV_DEPTH_MAX + 1, &len);
	ck_assert_int_eq(jsonv_validate(s, len, 0, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "too deep");
	ck_assert_uint_eq(e.offset, JSONV_DEPTH_MAX);
	ck_assert_int_eq(jsonv_validate(s, len, 1000, NULL), HERR_INVAL);
	free(s);
}
END_TEST

START_TEST(test_max_depth)
{
	struct jsonv_error e = {0, NULL};
	const char *s = "{\"a\":[{\"b\":[]}]}";

	ck_assert_int_eq(jsonv_validate(s, strlen(s), 4, NULL), 0);
	ck_assert_int_eq(jsonv_validate(s, strlen(s), 3, &e), HERR_INVAL);
	ck_assert_str_eq(e.what, "too deep");
	ck_assert_uint_eq(e.offset, 11);
	ck_assert_int_eq(jsonv_validate("[]", 2, 1, NULL), 0);
	ck_assert_int_eq(jsonv_validate("[[]]", 4, 1, NULL), HERR_INVAL);
	ck_assert_int_eq(jsonv_validate("1", 1, 1, NULL), 0);
}
END_TEST

Suite *jsonv_suite(void)
{
	Suite *s = suite_create("jsonv");
	TCase *tc = tcase_create("jsonv");

	tcase_add_test(tc, test_json_test_suite);
	tcase_add_loop_test(tc, test_bad_offsets, 0, (int)(sizeof bad / sizeof bad[0]));
	tcase_add_loop_test(tc, test_good, 0, (int)(sizeof good / sizeof good[0]));
	tcase_add_test(tc, test_null_text);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_max_depth);
	suite_add_tcase(s, tc);
	return s;
}
