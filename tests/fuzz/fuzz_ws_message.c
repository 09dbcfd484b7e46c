/*
 * fuzz_ws_message: a WebSocket client's text message (a refresh) on any
 * bytes.  It never reads past the input; a refresh gives a non-empty,
 * NUL-terminated token that fits, anything else an error and an empty
 * token; a buffer one byte too small for the token is WSM_TOO_LONG.
 *
 * Input: the payload of a text message.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../codec/ws_message.h"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	char token[256], small[256];
	uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
	int rc;

	if (copy == NULL)
		abort();
	memcpy(copy, in, size);
	rc = wsm_parse(copy, size, token, sizeof token);
	if (rc == WSM_REFRESH) {
		size_t n = strnlen(token, sizeof token);

		if (n == 0 || n == sizeof token)
			abort();
		if (wsm_parse(copy, size, small, n) != WSM_TOO_LONG)
			abort();
		if (wsm_parse(copy, size, small, n + 1) != WSM_REFRESH || strcmp(small, token) != 0)
			abort();
	} else if (rc >= 0 || token[0] != '\0') {
		abort();
	}
	free(copy);
	return 0;
}
