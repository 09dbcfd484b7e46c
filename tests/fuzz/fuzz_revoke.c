/*
 * fuzz_revoke: a control-channel message (disconnect, nbf, jti) on any
 * bytes.  It never reads past the input, and an accepted command formats
 * to a message that parses back to the same command.
 *
 * Input: the payload of a message on P:__herald:control.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "revoke.h"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	struct revoke_cmd cmd, back;
	char buf[REVOKE_MSG_MAX + 1];
	char *copy = malloc(size ? size : 1);
	int n;

	if (copy == NULL)
		abort();
	memcpy(copy, in, size);
	if (revoke_parse(copy, size, &cmd) == 0) {
		n = revoke_format(&cmd, buf, sizeof buf);
		if (n < 0 || revoke_parse(buf, (size_t)n, &back) != 0 ||
		    memcmp(&cmd, &back, sizeof cmd) != 0)
			abort();
		(void)revoke_match(&cmd, 0, "");
	}
	free(copy);
	return 0;
}
