/*
 * libFuzzer target for the HTTP text helpers: the input is used as a query
 * string, a Cookie header and raw percent-encoded text.  The first byte
 * picks the output size, so the "too big" paths are reached too.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result(int rc, const char *out, size_t outlen)
{
	if (rc >= 0 && ((size_t)rc >= outlen || strlen(out) != (size_t)rc))
		abort();
	if (rc < 0 && rc != HERR_INVAL && rc != HERR_NOTFOUND && rc != HERR_TOOBIG)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"token", "since", "herald_token", "a b", ""};
	size_t outlen;
	char *in, *out;
	int rc;

	if (size == 0)
		return 0;
	outlen = data[0] % 64;
	data++;
	size--;
	in = malloc(size + 1);
	out = malloc(outlen + 1);
	if (in == NULL || out == NULL)
		goto done;
	memcpy(in, data, size);
	in[size] = '\0';

	rc = text_pct_decode(in, size, out, outlen, 1);
	check_result(rc, out, outlen);
	rc = text_pct_decode(in, size, out, outlen, 0);
	check_result(rc, out, outlen);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		rc = http_query_get(in, names[i], out, outlen);
		check_result(rc, out, outlen);
		rc = http_cookie_get(in, names[i], out, outlen);
		check_result(rc, out, outlen);
	}
done:
	free(in);
	free(out);
	return 0;
}
