#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fcgi_record.h"
#include "suites.h"

START_TEST(test_header_roundtrip)
{
	unsigned char hd[FCGI_HEADER_LEN];
	struct fcgi_header h;

	fcgi_header_put(hd, FCGI_T_STDOUT, 0x1234, 65535, 7);
	ck_assert_int_eq(hd[0], 1);
	ck_assert_int_eq(fcgi_header_get(hd, &h), 0);
	ck_assert_uint_eq(h.type, FCGI_T_STDOUT);
	ck_assert_uint_eq(h.reqid, 0x1234);
	ck_assert_uint_eq(h.clen, 65535);
	ck_assert_uint_eq(h.plen, 7);
	hd[0] = 2;
	ck_assert_int_eq(fcgi_header_get(hd, &h), -1);
}
END_TEST

/* Content at, below and past the record limit: split, and read back whole. */
START_TEST(test_stdout_split)
{
	static const size_t sizes[] = {1, 100, 65535, 65536, 65535 * 2 + 3};
	size_t len = sizes[_i];
	unsigned char *in = malloc(len), *out = malloc(fcgi_stdout_size(len)), *back = malloc(len);
	size_t w, off = 0, got = 0, records = 0;

	for (size_t i = 0; i < len; i++)
		in[i] = (unsigned char)(i * 7);
	w = fcgi_stdout_put(out, 3, in, len);
	ck_assert_uint_eq(w, fcgi_stdout_size(len));
	while (off < w) {
		struct fcgi_header h;

		ck_assert_int_eq(fcgi_header_get(out + off, &h), 0);
		ck_assert_uint_eq(h.type, FCGI_T_STDOUT);
		ck_assert_uint_eq(h.reqid, 3);
		ck_assert_uint_gt(h.clen, 0);
		ck_assert_uint_le(h.clen, FCGI_CONTENT_MAX);
		memcpy(back + got, out + off + FCGI_HEADER_LEN, h.clen);
		got += h.clen;
		off += FCGI_HEADER_LEN + h.clen + h.plen;
		records++;
	}
	ck_assert_uint_eq(off, w);
	ck_assert_uint_eq(got, len);
	ck_assert_uint_eq(records, (len + 65534) / 65535);
	ck_assert_mem_eq(back, in, len);
	free(in);
	free(out);
	free(back);
}
END_TEST

START_TEST(test_end)
{
	unsigned char out[FCGI_END_LEN];
	struct fcgi_header h;

	ck_assert_uint_eq(fcgi_end_put(out, 65535, 0x01020304), FCGI_END_LEN);
	ck_assert_int_eq(fcgi_header_get(out, &h), 0);
	ck_assert_uint_eq(h.type, FCGI_T_STDOUT);
	ck_assert_uint_eq(h.clen, 0);
	ck_assert_uint_eq(h.reqid, 65535);
	ck_assert_int_eq(fcgi_header_get(out + 8, &h), 0);
	ck_assert_uint_eq(h.type, FCGI_T_END_REQUEST);
	ck_assert_uint_eq(h.clen, 8);
	ck_assert_int_eq(out[16], 1);
	ck_assert_int_eq(out[19], 4);
	ck_assert_int_eq(out[20], 0); /* FCGI_REQUEST_COMPLETE */
}
END_TEST

/* A request as nginx writes it: BEGIN_REQUEST, PARAMS (padded), the empty
 * PARAMS, a body in STDIN, the empty STDIN. */
static size_t request(unsigned char *out)
{
	size_t n = 0;

	fcgi_header_put(out + n, FCGI_T_BEGIN_REQUEST, 1, 8, 0);
	n += FCGI_HEADER_LEN;
	memset(out + n, 0, 8);
	out[n + 1] = 1; /* responder */
	n += 8;
	fcgi_header_put(out + n, FCGI_T_PARAMS, 1, 13, 3);
	n += FCGI_HEADER_LEN;
	memcpy(out + n, "\x0b\x00SCRIPT_NAME\0\0\0", 16);
	n += 16;
	fcgi_header_put(out + n, FCGI_T_PARAMS, 1, 0, 0);
	n += FCGI_HEADER_LEN;
	fcgi_header_put(out + n, FCGI_T_STDIN, 1, 2, 0);
	n += FCGI_HEADER_LEN;
	memcpy(out + n, "{}", 2);
	n += 2;
	fcgi_header_put(out + n, FCGI_T_STDIN, 1, 0, 0);
	return n + FCGI_HEADER_LEN;
}

START_TEST(test_request_complete)
{
	unsigned char req[128];
	size_t n = request(req);

	/* every prefix is incomplete, the whole is complete, and bytes after
	 * it (a next request) change nothing */
	for (size_t k = 0; k < n; k++)
		ck_assert_msg(fcgi_request_complete(req, k) == 0, "prefix %zu", k);
	ck_assert_int_eq(fcgi_request_complete(req, n), 1);
	memcpy(req + n, req, 8);
	ck_assert_int_eq(fcgi_request_complete(req, n + 8), 1);
	/* not a request's start, or not version 1: libfcgi's to judge */
	req[1] = FCGI_T_PARAMS;
	ck_assert_int_eq(fcgi_request_complete(req, n), -1);
	req[1] = FCGI_T_BEGIN_REQUEST;
	req[16] = 2;
	ck_assert_int_eq(fcgi_request_complete(req, n), -1);
}
END_TEST

Suite *fcgi_record_suite(void)
{
	Suite *s = suite_create("fcgi_record");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_header_roundtrip);
	tcase_add_loop_test(tc, test_stdout_split, 0, 5);
	tcase_add_test(tc, test_end);
	tcase_add_test(tc, test_request_complete);
	suite_add_tcase(s, tc);
	return s;
}
