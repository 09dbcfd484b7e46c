/*
 * libFuzzer target for herald-ws's HTTP request parser and upgrade checks:
 * any bytes, parsed whole and as a prefix; a parsed request's fields must lie
 * inside the buffer and the checks must not crash.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

static void inside(const char *buf, size_t n, const char *p)
{
	if (p != NULL && (p < buf || p >= buf + n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *allowed[] = {"https://app.example", NULL};
	char *buf;
	struct wsh_req r;
	int rc;

	if (size > WSH_MAX + 16)
		size = WSH_MAX + 16;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = wsh_parse(buf, size / 2, &r);
	memcpy(buf, data, size);
	rc = wsh_parse(buf, size, &r);
	if (rc > 0) {
		char acc[WSH_ACCEPT_LEN + 1];

		if ((size_t)rc > size)
			abort();
		inside(buf, size, r.method);
		inside(buf, size, r.path);
		inside(buf, size, r.query);
		inside(buf, size, r.key);
		inside(buf, size, r.origin);
		inside(buf, size, r.cookie);
		inside(buf, size, r.authorization);
		if (wsh_check_upgrade(&r) == 0 && wsh_accept(r.key, acc) != 0)
			abort();
		(void)wsh_origin_allowed(r.origin, allowed);
	} else if (rc != 0 && rc != -400 && rc != -431 && rc != -505) {
		abort();
	}
	free(buf);
	return 0;
}
