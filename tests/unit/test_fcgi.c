#include "config.h"

#include <check.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../fcgi/router.h"
#include "err.h"
#include "suites.h"

static struct conf conf;
static auth_t *auth;
static char token[1024];
static time_t now = 1800000000;

static void setup(void)
{
	char err[256];
	jwt_t *j = NULL;
	char *s;

	ck_assert_int_eq(conf_init(&conf), 0);
	ck_assert_int_eq(conf_set(&conf, "jwt_secret", "unit-secret", "test", err, sizeof err), 0);
	ck_assert_int_eq(conf_set(&conf, "publish_key", "pk-0123456789abcdef", "test", err, sizeof err), 0);
	ck_assert_int_eq(auth_new(&auth, &conf, err, sizeof err), 0);
	ck_assert_int_eq(jwt_new(&j), 0);
	jwt_add_grant(j, "sub", "alice");
	jwt_add_grant_int(j, "exp", now + 600);
	jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)"unit-secret", 11);
	s = jwt_encode_str(j);
	ck_assert_ptr_nonnull(s);
	snprintf(token, sizeof token, "%s", s);
	free(s);
	jwt_free(j);
}

static void teardown(void)
{
	auth_free(auth);
	conf_free(&conf);
}

static int route(const char *method, const char *path, const char *query, struct route *r)
{
	char q[8192];
	struct route_in in = {.method = method, .path = path, .query = q};

	const char *at = strstr(query, "%s"); /* where the token goes */

	if (at == NULL)
		snprintf(q, sizeof q, "%s", query);
	else
		snprintf(q, sizeof q, "%.*s%s%s", (int)(at - query), query, token, at + 2);
	return router_route(&conf, auth, now, &in, r);
}

/* Tickets: ?ticket= on SSE stands for the token; POST path_ticket takes
 * the token from Authorization only. */
START_TEST(test_tickets)
{
	static const char tk[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJK-_0123";
	char auth_h[1100], q[1100];
	struct route r;
	struct route_in in = {.method = "POST", .path = "/api/v1/notifications/ticket"};

	snprintf(q, sizeof q, "ticket=%s", tk);
	ck_assert_int_eq(route("GET", "/api/v1/sse/notifications", q, &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_SSE);
	ck_assert_str_eq(r.ticket, tk);
	ck_assert_str_eq(r.id.user, "");
	ck_assert_int_eq(route("GET", "/api/v1/sse/notifications", "ticket=short&token=%s", &r), 401);
	ck_assert_str_eq(r.detail, "bad_ticket");
	ck_assert_int_eq(route("GET", "/api/v1/sse/notifications", "token=%s", &r), 0);
	ck_assert_str_eq(r.ticket, "");
	ck_assert_str_eq(r.id.user, "alice");
	/* the ticket endpoint */
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	snprintf(auth_h, sizeof auth_h, "Bearer %s", token);
	in.authorization = auth_h;
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_TICKET);
	ck_assert_str_eq(r.id.user, "alice");
	snprintf(q, sizeof q, "token=%s", token);
	in.authorization = NULL;
	in.query = q;
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401); /* not from the URL */
	in.method = "GET";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 405);
}
END_TEST

START_TEST(test_paths_methods)
{
	struct route r;

	ck_assert_int_eq(route("GET", "/nope", "", &r), 404);
	ck_assert_int_eq(route("GET", NULL, "", &r), 404);
	ck_assert_int_eq(route("POST", "/api/v1/notifications/poll", "", &r), 405);
	ck_assert_str_eq(r.allow, "GET");
	ck_assert_int_eq(route(NULL, "/api/v1/notifications/poll", "", &r), 405);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/publish", "", &r), 405);
	ck_assert_str_eq(r.allow, "POST");
	ck_assert_int_eq(route("GET", "/api/v1/notifications/health", "", &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_HEALTH);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/metrics", "", &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_METRICS);
}
END_TEST

/* The orchestrators' probes: no token, GET only, exact paths under health. */
START_TEST(test_probes)
{
	struct route r;
	size_t len;
	const char *p;

	ck_assert_int_eq(route("GET", "/api/v1/notifications/health/live", "", &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_LIVE);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/health/ready", "", &r), 0);
	ck_assert_int_eq(r.kind, ROUTE_READY);
	ck_assert_int_eq(route("POST", "/api/v1/notifications/health/ready", "", &r), 405);
	ck_assert_str_eq(r.allow, "GET");
	ck_assert_int_eq(route("GET", "/api/v1/notifications/health/", "", &r), 404);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/health/readyz", "", &r), 404);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/health/live/", "", &r), 404);
	/* under CGI the path may come in PATH_INFO */
	p = router_path(&conf, NULL, "/api/v1/notifications/health/ready", "/cgi-bin/herald", NULL,
			&len);
	ck_assert(len == 34 && strncmp(p, "/api/v1/notifications/health/ready", len) == 0);
}
END_TEST

START_TEST(test_poll_params)
{
	struct route r;

	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "", &r), 401);
	ck_assert_str_eq(r.detail, "missing");
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s", &r), 0);
	ck_assert_str_eq(r.id.user, "alice");
	ck_assert_int_eq(r.has_since, 0);
	ck_assert_uint_eq(r.limit, 100);
	ck_assert_int_eq(r.wait, 0);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll",
			       "token=%s&since=5-2&limit=7&wait=55", &r), 0);
	ck_assert(r.has_since && r.since.ms == 5 && r.since.seq == 2);
	ck_assert_uint_eq(r.limit, 7);
	ck_assert_int_eq(r.wait, 55);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&since=", &r), 0);
	ck_assert_int_eq(r.has_since, 0);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&since=x", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&since=1-2-3", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&since=%zz", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&limit=0", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&limit=101", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&limit=-1", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&limit=1e2", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll", "token=%s&wait=56", &r), 400);
	ck_assert_int_eq(route("GET", "/api/v1/notifications/poll",
			       "token=%s&wait=99999999999999999999", &r), 400);
}
END_TEST

START_TEST(test_sse_cursor)
{
	struct route r;
	struct route_in in = {.method = "GET", .path = "/api/v1/sse/notifications"};
	char q[2048];

	snprintf(q, sizeof q, "token=%s&last_event_id=3-0", token);
	in.query = q;
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 0);
	ck_assert(r.has_since && r.since.ms == 3);
	in.last_event_id = "9-1"; /* the header wins over the URL */
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 0);
	ck_assert(r.since.ms == 9 && r.since.seq == 1);
	in.last_event_id = "9-1\nid: 1";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 400);
	in.last_event_id = NULL;
	snprintf(q, sizeof q, "token=%s&last_event_id=abc", token);
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 400);
	/* the token expired: 401 expired */
	ck_assert_int_eq(router_route(&conf, auth, now + 3600, &in, &r), 401);
	ck_assert_str_eq(r.detail, "expired");
}
END_TEST

START_TEST(test_long_query)
{
	struct route r;
	char *q = malloc(ROUTER_QUERY_MAX + 2);
	struct route_in in = {.method = "GET", .path = "/api/v1/notifications/poll", .query = q};

	memset(q, 'a', ROUTER_QUERY_MAX + 1);
	q[ROUTER_QUERY_MAX + 1] = '\0';
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 414);
	free(q);
}
END_TEST

START_TEST(test_publish)
{
	struct route r;
	struct route_in in = {.method = "POST", .path = "/api/v1/notifications/publish",
			      .query = "user=bob", .content_length = "12"};

	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	/* a prefix, an extension, the key with a NUL and more: all refused */
	in.authorization = "Bearer pk-0123456789abcde";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	in.authorization = "Bearer pk-0123456789abcdef0";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	in.authorization = "Bearer ";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	in.authorization = "Bearer pk-0123456789abcdeg";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 401);
	in.authorization = "Bearer pk-0123456789abcdef";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 0);
	ck_assert_str_eq(r.user, "bob");
	ck_assert_int_eq(r.content_length, 12);
	in.content_length = "70000";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 413);
	in.content_length = NULL;
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 411);
	in.content_length = "1";
	in.query = "user=a:b";
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 400);
	free(conf.publish_key);
	conf.publish_key = NULL; /* no key: the endpoint does not exist */
	ck_assert_int_eq(router_route(&conf, auth, now, &in, &r), 404);
}
END_TEST

/*
 * The key comparison works on fixed-size digests: equal only for the same
 * bytes, whatever the lengths (the length check that leaked the key's
 * length is gone; timing itself is not measured here).
 */
START_TEST(test_key_equal)
{
	static const char key[] = "0123456789abcdef";

	ck_assert(router_key_equal(key, 16, key));
	ck_assert(!router_key_equal(key, 15, key));
	ck_assert(!router_key_equal("0123456789abcdef0", 17, key));
	ck_assert(!router_key_equal("0123456789abcdeF", 16, key));
	ck_assert(!router_key_equal("0123456789abcdef\0x", 18, key));
	ck_assert(!router_key_equal("", 0, key));
	ck_assert(router_key_equal("", 0, ""));
	ck_assert(!router_key_equal(NULL, 0, key));
	ck_assert(!router_key_equal(key, 16, NULL));
}
END_TEST

START_TEST(test_path_and_json)
{
	struct route r = {.status = 400, .error = "bad_request", .detail = "a\"b\\c\n"};
	char buf[128];
	size_t len;
	const char *p;

	router_error_json(&r, buf, sizeof buf);
	ck_assert_str_eq(buf, "{\"error\":\"bad_request\",\"detail\":\"a\\\"b\\\\c\\u000a\"}");
	/* a buffer too small for the whole detail cuts it, never the JSON */
	router_error_json(&r, buf, 40);
	ck_assert_str_eq(buf, "{\"error\":\"bad_request\",\"detail\":\"a\\\"b\"}");
	p = router_path(&conf, "/x", "/api/v1/notifications/poll", "/cgi", NULL, &len);
	ck_assert(len == 2 && strncmp(p, "/x", 2) == 0);
	p = router_path(&conf, NULL, "/api/v1/notifications/poll", "/cgi", NULL, &len);
	ck_assert(strncmp(p, "/api/v1/notifications/poll", len) == 0);
	p = router_path(&conf, "", "/other", "/cgi", NULL, &len);
	ck_assert(len == 4 && strncmp(p, "/cgi", 4) == 0);
	p = router_path(&conf, NULL, NULL, NULL, "/a/b?c=d", &len);
	ck_assert(len == 4 && strncmp(p, "/a/b", 4) == 0);
	ck_assert_ptr_null(router_path(&conf, NULL, NULL, NULL, NULL, &len));
}
END_TEST

Suite *fcgi_suite(void)
{
	Suite *s = suite_create("fcgi");
	TCase *tc = tcase_create("router");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_paths_methods);
	tcase_add_test(tc, test_tickets);
	tcase_add_test(tc, test_probes);
	tcase_add_test(tc, test_poll_params);
	tcase_add_test(tc, test_sse_cursor);
	tcase_add_test(tc, test_long_query);
	tcase_add_test(tc, test_publish);
	tcase_add_test(tc, test_key_equal);
	tcase_add_test(tc, test_path_and_json);
	suite_add_tcase(s, tc);
	return s;
}
