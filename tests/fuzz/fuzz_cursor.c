/*
 * libFuzzer target for cursors: whatever parses formats back to a string
 * that parses to the same cursor.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c, back;
	char buf[CURSOR_STR_MAX];
	int rc, n;

	rc = cursor_parse((const char *)data, size, &c);
	if (rc != 0) {
		if (rc != HERR_INVAL)
			abort();
		return 0;
	}
	if (size == 0 || size >= CURSOR_STR_MAX)
		abort();
	n = cursor_format(&c, buf, sizeof buf);
	if (n <= 0 || n >= CURSOR_STR_MAX || (size_t)n != strlen(buf))
		abort();
	if (cursor_parse(buf, (size_t)n, &back) != 0 || cursor_cmp(&c, &back) != 0)
		abort();
	return 0;
}
