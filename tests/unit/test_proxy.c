#include "config.h"

#include <netinet/in.h>
#include <string.h>

#include "err.h"
#include "proxy.h"
#include "suites.h"

static long parse_str(const char *s, struct proxy_hdr *h)
{
	return proxy_parse((const uint8_t *)s, strlen(s), h);
}

/* A v2 header: ver_cmd, fam, then len bytes of addresses/TLVs. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	if (len > 0)
		memcpy(out + 16, body, len);
	return 16 + len;
}

START_TEST(test_v1_tcp4)
{
	const char *s = "PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
	struct proxy_hdr h;
	char a[PROXY_ADDR_STRLEN];

	ck_assert_int_eq(parse_str(s, &h), 41);
	ck_assert_int_eq(h.version, 1);
	ck_assert_int_eq(h.src.family, PROXY_AF_INET);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "192.0.2.7:56324");
	ck_assert_str_eq(proxy_addr_str(&h.dst, a, sizeof a), "10.0.0.1:443");
}
END_TEST

START_TEST(test_v1_tcp6)
{
	struct proxy_hdr h;
	char a[PROXY_ADDR_STRLEN];
	const char *max = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

	ck_assert_int_gt(parse_str("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", &h), 0);
	ck_assert_int_eq(h.src.family, PROXY_AF_INET6);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "[2001:db8::1]:1");
	/* An IPv4-mapped address is shown as IPv4. */
	ck_assert_int_gt(parse_str("PROXY TCP6 ::ffff:192.0.2.9 ::1 80 80\r\n", &h), 0);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "192.0.2.9:80");
	/* The spec's longest line is exactly PROXY_V1_MAX bytes. */
	ck_assert_uint_eq(strlen(max), PROXY_V1_MAX);
	ck_assert_int_eq(parse_str(max, &h), PROXY_V1_MAX);
}
END_TEST

START_TEST(test_v1_unknown)
{
	struct proxy_hdr h;

	ck_assert_int_eq(parse_str("PROXY UNKNOWN\r\n", &h), 15);
	ck_assert_int_eq(h.src.family, PROXY_AF_NONE);
	ck_assert_int_eq(parse_str("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &h), 31);
	ck_assert_int_eq(h.version, 1);
	ck_assert_int_eq(parse_str("PROXY UNKNOWNX\r\n", &h), HERR_INVAL);
}
END_TEST

/* Every prefix of a valid header asks for more; the whole parses. */
START_TEST(test_v1_partial)
{
	const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
	struct proxy_hdr h;
	size_t i;

	for (i = 0; i < strlen(s); i++)
		ck_assert_int_eq(proxy_parse((const uint8_t *)s, i, &h), 0);
	ck_assert_int_eq(proxy_parse((const uint8_t *)s, strlen(s), &h), (long)strlen(s));
}
END_TEST

START_TEST(test_v1_bad)
{
	static const char *const bad[] = {
	    "GET / HTTP/1.1\r\n",
	    "PROXY\r\n",
	    "PROXY \r\n",
	    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r",
	    "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
	    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 ::1 ::1 1 2\r\n",
	    "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
	    "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
	};
	struct proxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(parse_str(bad[i], &h) == HERR_INVAL, "accepted: %s", bad[i]);
	/* A NUL inside a header that strlen would stop at. */
	ck_assert_int_eq(proxy_parse((const uint8_t *)"PROXY TCP4\0 ", 12, &h), HERR_INVAL);
}
END_TEST

START_TEST(test_v1_too_long)
{
	char s[PROXY_V1_MAX + 20];
	struct proxy_hdr h;

	memset(s, 'x', sizeof s);
	memcpy(s, "PROXY UNKNOWN ", 14);
	ck_assert_int_eq(proxy_parse((const uint8_t *)s, PROXY_V1_MAX - 1, &h), 0);
	ck_assert_int_eq(proxy_parse((const uint8_t *)s, PROXY_V1_MAX, &h), HERR_TOOBIG);
	ck_assert_int_eq(proxy_parse((const uint8_t *)s, sizeof s, &h), HERR_TOOBIG);
	/* CRLF one byte past the bound */
	s[PROXY_V1_MAX - 1] = '\r';
	s[PROXY_V1_MAX] = '\n';
	ck_assert_int_eq(proxy_parse((const uint8_t *)s, sizeof s, &h), HERR_TOOBIG);
}
END_TEST

START_TEST(test_v2_inet)
{
	static const uint8_t body[12] = {192, 0, 2, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb};
	uint8_t b[64] = {0};
	size_t n = v2(b, 0x21, 0x11, body, sizeof body);
	struct proxy_hdr h;
	char a[PROXY_ADDR_STRLEN];
	size_t i;

	ck_assert_int_eq(proxy_parse(b, n, &h), 28);
	ck_assert_int_eq(h.version, 2);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "192.0.2.7:56324");
	ck_assert_str_eq(proxy_addr_str(&h.dst, a, sizeof a), "10.0.0.1:443");
	for (i = 0; i < n; i++)
		ck_assert_int_eq(proxy_parse(b, i, &h), 0);
	/* TLVs after the addresses are skipped with the header. */
	{
		uint8_t body2[12 + 7];

		memcpy(body2, body, 12);
		memcpy(body2 + 12,
		       "\x04\x00\x04"
		       "abcd",
		       7);
		n = v2(b, 0x21, 0x11, body2, sizeof body2);
		ck_assert_int_eq(proxy_parse(b, n + 5, &h), 35);
	}
}
END_TEST

START_TEST(test_v2_inet6_local_unspec)
{
	uint8_t body[36] = {0x20, 0x01, 0x0d, 0xb8};
	uint8_t b[300], unixbody[216] = {0};
	struct proxy_hdr h;
	char a[PROXY_ADDR_STRLEN];
	size_t n;

	body[15] = 1;
	body[31] = 1;
	body[32] = 0x30;
	body[33] = 0x39;
	n = v2(b, 0x21, 0x21, body, sizeof body);
	ck_assert_int_eq(proxy_parse(b, n, &h), 52);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "[2001:db8::1]:12345");
	ck_assert_str_eq(proxy_addr_str(&h.dst, a, sizeof a), "::1");
	/* LOCAL: the proxy's own connection (a health check); any family. */
	n = v2(b, 0x20, 0x00, NULL, 0);
	ck_assert_int_eq(proxy_parse(b, n, &h), 16);
	ck_assert_int_eq(h.src.family, PROXY_AF_NONE);
	n = v2(b, 0x20, 0x11, body, 12);
	ck_assert_int_eq(proxy_parse(b, n, &h), 28);
	ck_assert_int_eq(h.src.family, PROXY_AF_NONE);
	/* PROXY over UNSPEC or UNIX: valid, no address. */
	n = v2(b, 0x21, 0x00, NULL, 0);
	ck_assert_int_eq(proxy_parse(b, n, &h), 16);
	n = v2(b, 0x21, 0x31, unixbody, sizeof unixbody);
	ck_assert_int_eq(proxy_parse(b, n, &h), 232);
	ck_assert_str_eq(proxy_addr_str(&h.src, a, sizeof a), "-");
}
END_TEST

START_TEST(test_v2_bad)
{
	uint8_t body[36] = {0};
	uint8_t b[2048];
	struct proxy_hdr h;
	size_t n;

	n = v2(b, 0x11, 0x11, body, 12); /* version 1 in a v2 header */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	ck_assert_int_eq(proxy_parse(b, 13, &h), HERR_INVAL);
	n = v2(b, 0x22, 0x11, body, 12); /* command 2 */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	n = v2(b, 0x21, 0x12, body, 12); /* DGRAM */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	ck_assert_int_eq(proxy_parse(b, 14, &h), HERR_INVAL);
	n = v2(b, 0x21, 0x41, body, 12); /* family 4 */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	n = v2(b, 0x21, 0x11, body, 11); /* too short for INET */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	ck_assert_int_eq(proxy_parse(b, 16, &h), HERR_INVAL);
	n = v2(b, 0x21, 0x21, body, 12); /* too short for INET6 */
	ck_assert_int_eq(proxy_parse(b, n, &h), HERR_INVAL);
	b[3] = 0x0B; /* a broken signature */
	ck_assert_int_eq(proxy_parse(b, 4, &h), HERR_INVAL);
	ck_assert_int_eq(proxy_parse(b, 3, &h), 0);
	/* Past PROXY_MAX: refused at the length field, before the bytes come. */
	memset(b + 16, 0, sizeof b - 16);
	n = v2(b, 0x21, 0x11, body, 12);
	b[14] = (uint8_t)((PROXY_MAX - 15) >> 8);
	b[15] = (uint8_t)(PROXY_MAX - 15);
	ck_assert_int_eq(proxy_parse(b, 16, &h), HERR_TOOBIG);
	b[14] = 0xff;
	b[15] = 0xff;
	ck_assert_int_eq(proxy_parse(b, 16, &h), HERR_TOOBIG);
	b[14] = (uint8_t)((PROXY_MAX - 16) >> 8);
	b[15] = (uint8_t)(PROXY_MAX - 16);
	ck_assert_int_eq(proxy_parse(b, 16, &h), 0);
	ck_assert_int_eq(proxy_parse(b, PROXY_MAX, &h), PROXY_MAX);
	(void)n;
}
END_TEST

START_TEST(test_sniff_and_addr)
{
	struct proxy_addr a;
	struct sockaddr_in6 in6;
	struct sockaddr_in in;
	char s[PROXY_ADDR_STRLEN];

	ck_assert(proxy_sniff((const uint8_t *)"PRO", 3));
	ck_assert(proxy_sniff((const uint8_t *)"PROXY TCP4", 10));
	ck_assert(proxy_sniff((const uint8_t *)"\r\n\r\n\0\r\nQUIT\n", 12));
	ck_assert(!proxy_sniff((const uint8_t *)"POST / HTTP/1.1", 15));
	ck_assert(!proxy_sniff((const uint8_t *)"GET", 3));
	ck_assert(!proxy_sniff((const uint8_t *)"\r\n\r\n\0\r\nQUIT\r", 12));
	ck_assert(!proxy_sniff((const uint8_t *)"", 0));

	memset(&in, 0, sizeof in);
	in.sin_family = AF_INET;
	in.sin_port = htons(8000);
	in.sin_addr.s_addr = htonl(0x7f000001);
	proxy_addr_from_sockaddr(&a, &in, sizeof in);
	ck_assert_str_eq(proxy_addr_str(&a, s, sizeof s), "127.0.0.1:8000");
	ck_assert(proxy_addr_is_loopback(&a));
	memset(&in6, 0, sizeof in6);
	in6.sin6_family = AF_INET6;
	in6.sin6_addr.s6_addr[10] = 0xff;
	in6.sin6_addr.s6_addr[11] = 0xff;
	in6.sin6_addr.s6_addr[12] = 192;
	in6.sin6_addr.s6_addr[15] = 1;
	proxy_addr_from_sockaddr(&a, &in6, sizeof in6);
	ck_assert_str_eq(proxy_addr_str(&a, s, sizeof s), "192.0.0.1");
	ck_assert(!proxy_addr_is_loopback(&a));
	proxy_addr_from_sockaddr(&a, NULL, 0);
	ck_assert_str_eq(proxy_addr_str(&a, s, sizeof s), "-");
	ck_assert_int_eq(proxy_addr_parse("::1", 3, &a), 0);
	ck_assert(proxy_addr_is_loopback(&a));
	ck_assert_int_eq(proxy_addr_parse(" 1.2.3.4", 8, &a), HERR_INVAL);
	ck_assert_int_eq(proxy_addr_parse("", 0, &a), HERR_INVAL);
	/* a short buffer still gets a NUL */
	ck_assert_int_eq(proxy_addr_parse("203.0.113.200", 13, &a), 0);
	ck_assert_str_eq(proxy_addr_str(&a, s, 8), "203.0.1");
}
END_TEST

Suite *proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_v1_tcp4);
	tcase_add_test(tc, test_v1_tcp6);
	tcase_add_test(tc, test_v1_unknown);
	tcase_add_test(tc, test_v1_partial);
	tcase_add_test(tc, test_v1_bad);
	tcase_add_test(tc, test_v1_too_long);
	tcase_add_test(tc, test_v2_inet);
	tcase_add_test(tc, test_v2_inet6_local_unspec);
	tcase_add_test(tc, test_v2_bad);
	tcase_add_test(tc, test_sniff_and_addr);
	suite_add_tcase(s, tc);
	return s;
}
