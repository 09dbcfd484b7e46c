/*
 * The HTTP/1.1 side of herald-ws: the bounded request parser, the upgrade
 * checks, Sec-WebSocket-Accept and the responses, fed from byte buffers.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"
#include "suites.h"

#define GOOD                                                                                       \
	"GET /api/v1/ws/notifications?token=abc&since=1-0 HTTP/1.1\r\n"                           \
	"Host: 127.0.0.1:8080\r\n"                                                                 \
	"Upgrade: websocket\r\n"                                                                   \
	"Connection: keep-alive, Upgrade\r\n"                                                      \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                          \
	"Sec-WebSocket-Version: 13\r\n"                                                            \
	"Origin: https://app.example\r\n"                                                          \
	"Cookie: a=1; herald_token=xyz\r\n"                                                        \
	"\r\n"

static char buf[WSH_MAX + 64];

static int parse(const char *req, struct wsh_req *r)
{
	size_t n = strlen(req);

	ck_assert_uint_le(n, sizeof buf);
	memcpy(buf, req, n);
	return wsh_parse(buf, n, r);
}

START_TEST(t_parse_good)
{
	struct wsh_req r;

	ck_assert_int_eq(parse(GOOD, &r), (int)strlen(GOOD));
	ck_assert_str_eq(r.method, "GET");
	ck_assert_str_eq(r.path, "/api/v1/ws/notifications");
	ck_assert_str_eq(r.query, "token=abc&since=1-0");
	ck_assert_int_eq(r.minor, 1);
	ck_assert_str_eq(r.host, "127.0.0.1:8080");
	ck_assert_str_eq(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
	ck_assert_str_eq(r.version, "13");
	ck_assert_str_eq(r.origin, "https://app.example");
	ck_assert_str_eq(r.cookie, "a=1; herald_token=xyz");
	ck_assert_int_eq(r.upgrade_websocket, 1);
	ck_assert_int_eq(r.connection_upgrade, 1);
	ck_assert_ptr_null(r.authorization);
	ck_assert_int_eq(wsh_check_upgrade(&r), 0);
}
END_TEST

/* Every prefix of a good request is "need more", whatever the split. */
START_TEST(t_parse_incremental)
{
	struct wsh_req r;
	size_t n = strlen(GOOD), i;

	for (i = 0; i < n; i++) {
		memcpy(buf, GOOD, i);
		ck_assert_int_eq(wsh_parse(buf, i, &r), 0);
	}
	memcpy(buf, GOOD, n);
	ck_assert_int_eq(wsh_parse(buf, n, &r), (int)n);
}
END_TEST

START_TEST(t_parse_case_and_space)
{
	struct wsh_req r;

	ck_assert_int_gt(parse("GET / HTTP/1.1\r\nhOsT:h\r\nUPGRADE:   WebSocket  \r\n"
			       "connection: UPGRADE\r\nsec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\n"
			       "SEC-WEBSOCKET-VERSION: 13\r\n\r\n",
			       &r),
			 0);
	ck_assert_str_eq(r.upgrade, "WebSocket");
	ck_assert_str_eq(r.key, "dGhlIHNhbXBsZSBub25jZQ==");
	ck_assert_int_eq(wsh_check_upgrade(&r), 0);
	ck_assert_ptr_null(r.query);
	/* Connection spread over two headers, token lists with odd spacing */
	ck_assert_int_gt(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
			       "Connection: ,  upgrade ,\r\nUpgrade: foo/2, websocket\r\n\r\n",
			       &r),
			 0);
	ck_assert_int_eq(r.connection_upgrade, 1);
	ck_assert_int_eq(r.upgrade_websocket, 1);
	ck_assert_int_gt(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgraded\r\n"
			       "Upgrade: websockets\r\n\r\n",
			       &r),
			 0);
	ck_assert_int_eq(r.connection_upgrade, 0);
	ck_assert_int_eq(r.upgrade_websocket, 0);
}
END_TEST

START_TEST(t_parse_bad)
{
	static const char *const bad[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
		"\r\n\r\n",
		" GET / HTTP/1.1\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"GET /\r\n\r\n",
		"GET x HTTP/1.1\r\n\r\n",
		"GET / FOO/1.1\r\n\r\n",
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
		"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
		"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
		"GET / HTTP/1.1\r\n: x\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nsec-websocket-key: b\r\n\r\n",
		"GET / HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"GET / HTTP/1.1\r\nOrigin: a\r\nOrigin: b\r\n\r\n",
		"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GETTINGTOOLONGMETHOD / HTTP/1.1\r\n\r\n",
	};
	struct wsh_req r;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(parse(bad[i], &r) == -400, "case %zu", i);
	ck_assert_int_eq(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
	ck_assert_int_eq(parse("GET / HTTP/3.0\r\n\r\n", &r), -505);
	ck_assert_int_gt(parse("GET / HTTP/1.2\r\n\r\n", &r), 0);
	/* garbage is refused at its first byte, without waiting for more */
	memcpy(buf, "\x16\x03", 2);
	ck_assert_int_eq(wsh_parse(buf, 1, &r), -400);
	memcpy(buf, "GET\x01", 4);
	ck_assert_int_eq(wsh_parse(buf, 4, &r), -400);
	/* a NUL inside the headers */
	memcpy(buf, "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26);
	ck_assert_int_eq(wsh_parse(buf, 26, &r), -400);
}
END_TEST

START_TEST(t_parse_limit)
{
	struct wsh_req r;
	size_t n;

	memset(buf, 0, sizeof buf);
	n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Big: ");
	memset(buf + n, 'a', WSH_MAX - n);
	ck_assert_int_eq(wsh_parse(buf, WSH_MAX - 1, &r), 0);
	ck_assert_int_eq(wsh_parse(buf, WSH_MAX, &r), -431);
	/* exactly WSH_MAX with the blank line at the end is accepted */
	memcpy(buf + WSH_MAX - 4, "\r\n\r\n", 4);
	ck_assert_int_eq(wsh_parse(buf, WSH_MAX, &r), WSH_MAX);
	/* a blank line past WSH_MAX does not count */
	n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Big: ");
	memset(buf + n, 'a', WSH_MAX - n);
	memcpy(buf + WSH_MAX - 2, "\r\n\r\n", 4);
	ck_assert_int_eq(wsh_parse(buf, WSH_MAX + 2, &r), -431);
}
END_TEST

static int check(const char *req)
{
	struct wsh_req r;

	ck_assert_int_gt(parse(req, &r), 0);
	return wsh_check_upgrade(&r);
}

START_TEST(t_check_upgrade)
{
	const char *k = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
	char req[1024];

#define REQ(line, up, conn, ver, key)                                                              \
	(snprintf(req, sizeof req, "%s\r\nHost: h\r\n%s%s%s%s\r\n", line, up, conn, ver, key), req)
#define UP "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define V13 "Sec-WebSocket-Version: 13\r\n"
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13, k)), 0);
	ck_assert_int_eq(check(REQ("POST / HTTP/1.1", UP, CONN, V13, k)), 405);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.0", UP, CONN, V13, k)), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", "", CONN, V13, k)), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", "Upgrade: h2c\r\n", CONN, V13, k)), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, "", V13, k)), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, "Connection: close\r\n", V13, k)), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, "", k)), 426);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, "Sec-WebSocket-Version: 8\r\n", k)),
			 426);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, "Sec-WebSocket-Version: 13, 8\r\n",
				   k)),
			 426);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13, "")), 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13, "Sec-WebSocket-Key: abc\r\n")),
			 400);
	/* 24 characters but 17 bytes, or not base64 */
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13,
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n")),
			 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13,
				   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n")),
			 400);
	ck_assert_int_eq(check(REQ("GET / HTTP/1.1", UP, CONN, V13,
				   "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")),
			 0);
	ck_assert_int_eq(check("GET / HTTP/1.1\r\n" UP CONN V13
			       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
			 400); /* no Host */
#undef REQ
#undef UP
#undef CONN
#undef V13
}
END_TEST

START_TEST(t_accept)
{
	char out[WSH_ACCEPT_LEN + 1];

	/* RFC 6455 section 1.3 */
	ck_assert_int_eq(wsh_accept("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(t_origin)
{
	char *list[] = {"https://app.example", "http://localhost:3000", NULL};
	char *none[] = {NULL};

	ck_assert(wsh_origin_allowed("https://app.example", list));
	ck_assert(wsh_origin_allowed("HTTPS://APP.EXAMPLE", list));
	ck_assert(wsh_origin_allowed("http://localhost:3000", list));
	ck_assert(!wsh_origin_allowed("https://evil.example", list));
	ck_assert(!wsh_origin_allowed("https://app.example.evil", list));
	ck_assert(!wsh_origin_allowed("null", list));
	ck_assert(wsh_origin_allowed(NULL, list));
	ck_assert(wsh_origin_allowed("https://any", none));
	ck_assert(wsh_origin_allowed("https://any", NULL));
}
END_TEST

/* A token from a cookie needs its Origin named in the list: never "any". */
START_TEST(t_origin_listed)
{
	char *list[] = {"https://app.example", "*", NULL};
	char *star[] = {"*", NULL};
	char *none[] = {NULL};

	ck_assert(wsh_origin_listed("https://app.example", list));
	ck_assert(wsh_origin_listed("HTTPS://APP.EXAMPLE", list));
	ck_assert(!wsh_origin_listed("https://evil.example", list));
	ck_assert(!wsh_origin_listed(NULL, list));
	ck_assert(!wsh_origin_listed("null", list));
	ck_assert(!wsh_origin_listed("https://any", star));
	ck_assert(!wsh_origin_listed("https://any", none));
	ck_assert(!wsh_origin_listed("https://any", NULL));
	ck_assert(!wsh_origin_listed(NULL, NULL));
}
END_TEST

START_TEST(t_responses)
{
	char out[512];
	int n;

	n = wsh_response_101(out, sizeof out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	ck_assert_int_gt(n, 0);
	ck_assert_str_eq(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			      "Connection: Upgrade\r\nSec-WebSocket-Accept: "
			      "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
	ck_assert_int_eq(wsh_response_101(out, 20, "x"), -1);
	n = wsh_response(out, sizeof out, 426, "Sec-WebSocket-Version: 13\r\n", NULL, "v13\n", 4);
	ck_assert_int_gt(n, 0);
	out[n] = '\0';
	ck_assert(strncmp(out, "HTTP/1.1 426 Upgrade Required\r\n", 31) == 0);
	ck_assert_ptr_nonnull(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
	ck_assert_ptr_nonnull(strstr(out, "\r\nContent-Length: 4\r\n"));
	ck_assert_ptr_nonnull(strstr(out, "\r\nConnection: close\r\n"));
	ck_assert(strcmp(out + n - 8, "\r\n\r\nv13\n") == 0);
	ck_assert_int_eq(wsh_response(out, 60, 200, NULL, NULL, "x", 1), -1);
}
END_TEST

/* Any body size (herald-ws's /metrics outgrew a fixed 8 KiB buffer once). */
START_TEST(t_response_new)
{
	static const size_t sizes[] = {0, 1, 8192, 8193, 65536, 1 << 20};
	char head[256];

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char *body = malloc(sizes[i] + 1);
		size_t len = 0;
		char *out;
		int n;

		ck_assert_ptr_nonnull(body);
		memset(body, 'm', sizes[i]);
		if (sizes[i] > 0)
			body[sizes[i] - 1] = '\n';
		out = wsh_response_new(200, "X-A: 1\r\n", "text/plain; version=0.0.4", body,
				       sizes[i], &len);
		ck_assert_ptr_nonnull(out);
		n = wsh_response(head, sizeof head, 200, "X-A: 1\r\n", "text/plain; version=0.0.4",
				 NULL, 0);
		ck_assert_int_gt(n, 0);
		snprintf(head, sizeof head, "\r\nContent-Length: %zu\r\n", sizes[i]);
		ck_assert_ptr_nonnull(memmem(out, len - sizes[i], head, strlen(head)));
		ck_assert(len > sizes[i] + 4);
		ck_assert(memcmp(out + len - sizes[i] - 4, "\r\n\r\n", 4) == 0);
		ck_assert(memcmp(out + len - sizes[i], body, sizes[i]) == 0);
		free(out);
		free(body);
	}
}
END_TEST

Suite *ws_handshake_suite(void)
{
	Suite *s = suite_create("ws_handshake");
	TCase *tc = tcase_create("http");

	tcase_add_test(tc, t_parse_good);
	tcase_add_test(tc, t_parse_incremental);
	tcase_add_test(tc, t_parse_case_and_space);
	tcase_add_test(tc, t_parse_bad);
	tcase_add_test(tc, t_parse_limit);
	tcase_add_test(tc, t_check_upgrade);
	tcase_add_test(tc, t_accept);
	tcase_add_test(tc, t_origin);
	tcase_add_test(tc, t_origin_listed);
	tcase_add_test(tc, t_responses);
	tcase_add_test(tc, t_response_new);
	suite_add_tcase(s, tc);
	return s;
}
