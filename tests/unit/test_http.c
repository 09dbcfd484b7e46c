#include "config.h"

#include <string.h>

#include "err.h"
#include "http.h"
#include "suites.h"

START_TEST(query_basic)
{
	char out[32];

	ck_assert_int_eq(http_query_get("a=1&token=xyz&b=2", "token", out, sizeof out), 3);
	ck_assert_str_eq(out, "xyz");
	ck_assert_int_eq(http_query_get("token=xyz", "token", out, sizeof out), 3);
	ck_assert_int_eq(http_query_get("a=1&b=2", "token", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_query_get("", "token", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_query_get(NULL, "token", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_query_get("since=5-0&limit=10", "limit", out, sizeof out), 2);
	ck_assert_str_eq(out, "10");
}
END_TEST

START_TEST(query_first_wins)
{
	char out[32];

	ck_assert_int_eq(http_query_get("token=one&token=two", "token", out, sizeof out), 3);
	ck_assert_str_eq(out, "one");
	/* a bad first occurrence is an error, not a reason to look further */
	ck_assert_int_eq(http_query_get("token=%zz&token=two", "token", out, sizeof out),
			 HERR_INVAL);
}
END_TEST

START_TEST(query_names_exact)
{
	char out[32];

	/* prefixes and suffixes of the name do not match */
	ck_assert_int_eq(http_query_get("tokens=1&xtoken=2&tok=3", "token", out, sizeof out),
			 HERR_NOTFOUND);
	ck_assert_int_eq(http_query_get("Token=1", "token", out, sizeof out), HERR_NOTFOUND);
	/* the name is compared after decoding */
	ck_assert_int_eq(http_query_get("%74oken=abc", "token", out, sizeof out), 3);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(http_query_get("a+b=1", "a b", out, sizeof out), 1);
	/* a name that does not decode names nothing */
	ck_assert_int_eq(http_query_get("tok%zzen=1&token=2", "token", out, sizeof out), 1);
	ck_assert_str_eq(out, "2");
}
END_TEST

START_TEST(query_values)
{
	char out[32];

	ck_assert_int_eq(http_query_get("token", "token", out, sizeof out), 0);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(http_query_get("token=", "token", out, sizeof out), 0);
	ck_assert_int_eq(http_query_get("token=a=b", "token", out, sizeof out), 3);
	ck_assert_str_eq(out, "a=b");
	ck_assert_int_eq(http_query_get("token=a+b%20c", "token", out, sizeof out), 5);
	ck_assert_str_eq(out, "a b c");
	ck_assert_int_eq(http_query_get("&&token=x&&", "token", out, sizeof out), 1);
	ck_assert_int_eq(http_query_get("token=%", "token", out, sizeof out), HERR_INVAL);
	ck_assert_int_eq(http_query_get("token=%00", "token", out, sizeof out), HERR_INVAL);
	ck_assert_int_eq(http_query_get("token=0123456789", "token", out, 10), HERR_TOOBIG);
	ck_assert_int_eq(http_query_get("token=012345678", "token", out, 10), 9);
}
END_TEST

START_TEST(cookie_basic)
{
	char out[32];

	ck_assert_int_eq(
	    http_cookie_get("a=1; herald_token=abc; b=2", "herald_token", out, sizeof out), 3);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(http_cookie_get("herald_token=abc", "herald_token", out, sizeof out), 3);
	ck_assert_int_eq(http_cookie_get("a=1;b=2;c=3", "b", out, sizeof out), 1);
	ck_assert_str_eq(out, "2");
	ck_assert_int_eq(http_cookie_get("a=1;   b=2  ;c=3", "b", out, sizeof out), 1);
	ck_assert_str_eq(out, "2");
	ck_assert_int_eq(http_cookie_get("a=1; b=2", "c", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_cookie_get(NULL, "c", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_cookie_get("", "c", out, sizeof out), HERR_NOTFOUND);
}
END_TEST

START_TEST(cookie_edges)
{
	char out[8];

	ck_assert_int_eq(http_cookie_get("t=1; t=2", "t", out, sizeof out), 1);
	ck_assert_str_eq(out, "1");
	/* no percent-decoding for cookies */
	ck_assert_int_eq(http_cookie_get("t=a%20b", "t", out, sizeof out), 5);
	ck_assert_str_eq(out, "a%20b");
	ck_assert_int_eq(http_cookie_get("xt=1; tx=2; T=3", "t", out, sizeof out), HERR_NOTFOUND);
	ck_assert_int_eq(http_cookie_get("t; t=", "t", out, sizeof out), 0);
	ck_assert_int_eq(http_cookie_get("t=a=b", "t", out, sizeof out), 3);
	ck_assert_str_eq(out, "a=b");
	ck_assert_int_eq(http_cookie_get(";;; t=x ;", "t", out, sizeof out), 1);
	ck_assert_int_eq(http_cookie_get("t=1234567", "t", out, sizeof out), 7);
	ck_assert_int_eq(http_cookie_get("t=12345678", "t", out, sizeof out), HERR_TOOBIG);
	ck_assert_int_eq(http_cookie_get("=x; t=y", "", out, sizeof out), HERR_NOTFOUND);
}
END_TEST

START_TEST(status_text)
{
	ck_assert_str_eq(http_status_text(200), "OK");
	ck_assert_str_eq(http_status_text(101), "Switching Protocols");
	ck_assert_str_eq(http_status_text(401), "Unauthorized");
	ck_assert_str_eq(http_status_text(404), "Not Found");
	ck_assert_str_eq(http_status_text(503), "Service Unavailable");
	ck_assert_str_eq(http_status_text(999), "Unknown");
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("http");

	tcase_add_test(tc, query_basic);
	tcase_add_test(tc, query_first_wins);
	tcase_add_test(tc, query_names_exact);
	tcase_add_test(tc, query_values);
	tcase_add_test(tc, cookie_basic);
	tcase_add_test(tc, cookie_edges);
	tcase_add_test(tc, status_text);
	suite_add_tcase(s, tc);
	return s;
}
