/*
 * libFuzzer target for the JSON validator: any input gives 0 or HERR_INVAL
 * with an offset inside the text, and the answers agree with each other.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jsonv.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct jsonv_error e = {0, NULL};
	size_t i;
	char *wrapped;
	int rc, ok;

	rc = jsonv_validate(s, size, 0, &e);
	if (rc != 0 && (rc != HERR_INVAL || e.what == NULL || e.offset > size))
		abort();
	if (rc == 0 && memchr(s, '\0', size) != NULL)
		abort();
	if ((jsonv_validate(s, size, JSONV_DEPTH_MAX, NULL) == 0) != (rc == 0))
		abort();

	/* A text valid one level below the cap stays valid inside an array. */
	if (jsonv_validate(s, size, JSONV_DEPTH_MAX - 1, NULL) == 0) {
		wrapped = malloc(size + 2);
		if (wrapped == NULL)
			return 0;
		wrapped[0] = '[';
		if (size > 0)
			memcpy(wrapped + 1, s, size);
		wrapped[size + 1] = ']';
		if (jsonv_validate(wrapped, size + 2, 0, NULL) != 0)
			abort();
		free(wrapped);
	}

	/* The UTF-8 walker always advances and never runs past the end. */
	for (i = 0; i < size;) {
		size_t n = text_utf8_next(s + i, size - i, &ok);

		if (n == 0 || n > 4 || n > size - i || (!ok && n > 3))
			abort();
		i += n;
	}
	return 0;
}
