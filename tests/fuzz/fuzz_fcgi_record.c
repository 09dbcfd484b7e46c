/*
 * fuzz_fcgi_record: fcgi_request_complete over any bytes (what a peer may
 * send herald-fcgi before its loop lets libfcgi read them) reads nothing
 * past len, and agrees with itself: a complete request stays complete
 * whatever follows it, and no prefix of the input is complete unless the
 * input is.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes: ASan sees any read past them */
	unsigned char *buf = malloc(size ? size : 1);
	int whole;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	whole = fcgi_request_complete(buf, size);
	if (whole < -1 || whole > 1)
		abort();
	for (size_t k = 0; k < size; k++) {
		int part = fcgi_request_complete(buf, k);

		if (part == 1 && whole != 1)
			abort(); /* complete at k: complete with more after it */
		if (part == -1 && whole != -1)
			abort(); /* a bad start stays bad */
	}
	free(buf);
	return 0;
}
