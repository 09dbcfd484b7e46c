#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "suites.h"

START_TEST(test_buf_grows)
{
	struct metrics_buf b;
	int i;

	metrics_buf_init(&b);
	for (i = 0; i < 1000; i++)
		metrics_printf(&b, "%04d\n", i);
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(b.len, 5000);
	ck_assert_uint_eq(strlen(b.data), 5000);
	ck_assert(strncmp(b.data + 4995, "0999\n", 5) == 0);
	metrics_buf_free(&b);
	ck_assert_ptr_null(b.data);
	metrics_buf_free(NULL);
}
END_TEST

START_TEST(test_json_string)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	metrics_json_string(&b, "a\"b\\c\n\x01/\xc3\xa9");
	ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\u000a\\u0001/\xc3\xa9\"");
	metrics_buf_free(&b);
}
END_TEST

START_TEST(test_counter_gauge)
{
	struct metrics_buf b;

	metrics_buf_init(&b);
	metrics_counter(&b, "herald_x_total", "X things.", 18446744073709551615ULL);
	metrics_gauge(&b, "herald_y", "Y.", 0.25);
	ck_assert_str_eq(b.data, "# HELP herald_x_total X things.\n"
				 "# TYPE herald_x_total counter\n"
				 "herald_x_total 18446744073709551615\n"
				 "# HELP herald_y Y.\n"
				 "# TYPE herald_y gauge\n"
				 "herald_y 0.25\n");
	metrics_buf_free(&b);
}
END_TEST

START_TEST(test_prometheus)
{
	struct metrics_buf b;
	struct hub_stats hs = {.conns = 7, .users = 3, .delivered = 42};
	struct sub_status ss = {.state = SUB_CONNECTED, .healthy = 1, .canary_rtt_us = 1500};

	metrics_buf_init(&b);
	metrics_prometheus(&b, "herald-fcgi", &hs, &ss, 1000, 3500);
	ck_assert_int_eq(b.err, 0);
	ck_assert_ptr_nonnull(strstr(b.data, "herald_build_info{program=\"herald-fcgi\",version=\"" PACKAGE_VERSION "\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_connections 7\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_users 3\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_delivered_total 42\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_redis_up 1\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_redis_canary_rtt_seconds 0.0015"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_process_uptime_seconds 2.5\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nherald_process_resident_memory_bytes "));
	ck_assert_ptr_null(strstr(b.data, "herald_process_threads -1"));
	/* every line a comment or "name value" */
	for (const char *p = b.data; *p; p = strchr(p, '\n') + 1)
		ck_assert(*p == '#' || *p == 'h');
	metrics_buf_free(&b);

	metrics_buf_init(&b);
	metrics_prometheus(&b, "herald-ws", &hs, NULL, 0, 0);
	ck_assert_ptr_null(strstr(b.data, "herald_redis_up"));
	metrics_buf_free(&b);
}
END_TEST

START_TEST(test_health)
{
	struct metrics_buf b;
	struct hub_stats hs = {.conns = 2, .users = 1};
	struct sub_status ss = {.state = SUB_CONNECTED, .healthy = 1, .subscribed = 1,
				.canary_rtt_us = 410};

	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_health_json(&b, "herald-fcgi", &hs, &ss, 0, 12000,
					     "\"streams\":4"), 200);
	ck_assert_str_eq(b.data, "{\"status\":\"ok\",\"program\":\"herald-fcgi\",\"version\":\"" PACKAGE_VERSION
				 "\",\"uptime\":12,\"redis\":{\"state\":\"connected\",\"healthy\":true,"
				 "\"subscribed\":1,\"reconnects\":0,\"canary_rtt_ms\":0.410,"
				 "\"last_error\":\"\"},\"connections\":2,\"users\":1,\"streams\":4}");
	metrics_buf_free(&b);

	ss.state = SUB_DISCONNECTED;
	ss.healthy = 0;
	strcpy(ss.last_error, "connect(127.0.0.1:1) failed: \"refused\"");
	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_health_json(&b, "herald-fcgi", &hs, &ss, 0, 0, NULL), 503);
	ck_assert_ptr_nonnull(strstr(b.data, "\"status\":\"unavailable\""));
	ck_assert_ptr_nonnull(strstr(b.data, "\"last_error\":\"connect(127.0.0.1:1) failed: \\\"refused\\\"\""));
	ck_assert_ptr_nonnull(strstr(b.data, "\"users\":1}"));
	metrics_buf_free(&b);

	/* connected but the canary is late: still unavailable */
	ss.state = SUB_CONNECTED;
	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_health_json(&b, "x", &hs, &ss, 0, 0, ""), 503);
	metrics_buf_free(&b);
	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_health_json(&b, "x", &hs, NULL, 0, 0, ""), 503);
	metrics_buf_free(&b);
}
END_TEST

START_TEST(test_probe_of)
{
	const char *h = "/api/v1/notifications/health";
	const char *live = "/api/v1/notifications/health/live";

	ck_assert_int_eq(metrics_probe_of(h, live, strlen(live)), METRICS_PROBE_LIVE);
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/health/ready", 34),
			 METRICS_PROBE_READY);
	/* a path given with its length: the query after it is not looked at */
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/health/live?x=1", strlen(live)),
			 METRICS_PROBE_LIVE);
	ck_assert_int_eq(metrics_probe_of(h, h, strlen(h)), METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/health/", 29), METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/health/live/", 34),
			 METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/health/lives", 34),
			 METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, "/api/v1/notifications/healthy/live", 34),
			 METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, "/live", 5), METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of("/h", "/h/ready", 8), METRICS_PROBE_READY);
	ck_assert_int_eq(metrics_probe_of(NULL, "/live", 5), METRICS_PROBE_NONE);
	ck_assert_int_eq(metrics_probe_of(h, NULL, 0), METRICS_PROBE_NONE);
}
END_TEST

START_TEST(test_ready)
{
	struct sub_status ss = {.state = SUB_CONNECTED, .healthy = 1};
	char why[64];

	strcpy(why, "x");
	ck_assert_int_eq(metrics_ready(&ss, 0, why, sizeof why), 1);
	ck_assert_str_eq(why, "");
	ck_assert_int_eq(metrics_ready(&ss, 1, why, sizeof why), 0);
	ck_assert_str_eq(why, "shutting down");
	ck_assert_int_eq(metrics_ready(NULL, 0, why, sizeof why), 0);
	ck_assert_str_eq(why, "no redis subscriber");

	ss.healthy = 0;
	ck_assert_int_eq(metrics_ready(&ss, 0, why, sizeof why), 0);
	ck_assert_str_eq(why, "canary not received in time");
	ck_assert_int_eq(metrics_ready(&ss, 0, NULL, 0), 0);

	ss.state = SUB_CONNECTING;
	ck_assert_int_eq(metrics_ready(&ss, 0, why, sizeof why), 0);
	ck_assert_str_eq(why, "redis connecting");

	ss.state = SUB_DISCONNECTED;
	ck_assert_int_eq(metrics_ready(&ss, 0, why, sizeof why), 0);
	ck_assert_str_eq(why, "redis disconnected");
	strcpy(ss.last_error, "connect(127.0.0.1:1) failed: Connection refused");
	ck_assert_int_eq(metrics_ready(&ss, 0, why, sizeof why), 0);
	ck_assert_str_eq(why, "redis disconnected: connect(127.0.0.1:1) failed: Connection ref");
	/* shutting down wins over everything else */
	ck_assert_int_eq(metrics_ready(&ss, 1, why, sizeof why), 0);
	ck_assert_str_eq(why, "shutting down");
}
END_TEST

START_TEST(test_probe_json)
{
	struct metrics_buf b;
	struct sub_status ss = {.state = SUB_CONNECTED, .healthy = 1};

	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_probe_json(&b, METRICS_PROBE_LIVE, NULL, 1), 200);
	ck_assert_str_eq(b.data, "{\"status\":\"ok\",\"probe\":\"live\"}\n");
	metrics_buf_free(&b);

	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_probe_json(&b, METRICS_PROBE_READY, &ss, 0), 200);
	ck_assert_str_eq(b.data, "{\"status\":\"ok\",\"probe\":\"ready\"}\n");
	metrics_buf_free(&b);

	ss.state = SUB_DISCONNECTED;
	ss.healthy = 0;
	strcpy(ss.last_error, "read: \"EOF\"");
	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_probe_json(&b, METRICS_PROBE_READY, &ss, 0), 503);
	ck_assert_str_eq(b.data, "{\"status\":\"unavailable\",\"probe\":\"ready\","
				 "\"reason\":\"redis disconnected: read: \\\"EOF\\\"\"}\n");
	metrics_buf_free(&b);

	ss.state = SUB_CONNECTED;
	ss.healthy = 1;
	metrics_buf_init(&b);
	ck_assert_int_eq(metrics_probe_json(&b, METRICS_PROBE_READY, &ss, 1), 503);
	ck_assert_str_eq(b.data, "{\"status\":\"unavailable\",\"probe\":\"ready\","
				 "\"reason\":\"shutting down\"}\n");
	metrics_buf_free(&b);
}
END_TEST

Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_buf_grows);
	tcase_add_test(tc, test_json_string);
	tcase_add_test(tc, test_counter_gauge);
	tcase_add_test(tc, test_prometheus);
	tcase_add_test(tc, test_health);
	tcase_add_test(tc, test_probe_of);
	tcase_add_test(tc, test_ready);
	tcase_add_test(tc, test_probe_json);
	suite_add_tcase(s, tc);
	return s;
}
