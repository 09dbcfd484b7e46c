/*
 * libFuzzer target for the envelope: a channel message is either forwarded
 * as a scripted envelope with a readable id, or wrapped into valid JSON
 * whose id is null.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "err.h"
#include "jsonv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct cursor c;
	char *out = NULL;
	size_t outlen = 0;
	int rc, id_rc;

	id_rc = envelope_id(msg, size, &c);
	if (id_rc != 0 && id_rc != HERR_NOTFOUND && id_rc != HERR_INVAL)
		abort();
	if ((id_rc == 0) != (envelope_is_scripted(msg, size) != 0))
		abort();

	rc = envelope_from_channel("notifications:42", msg, size, 1732550000000LL, &out, &outlen);
	if (rc == HERR_NOMEM)
		return 0;
	if (rc != 0)
		abort();
	if (out == NULL) {
		if (id_rc != 0 || outlen != 0)
			abort();
		return 0;
	}
	if (id_rc == 0 || outlen != strlen(out))
		abort();
	if (jsonv_validate(out, outlen, 0, NULL) != 0)
		abort();
	if (envelope_id(out, outlen, &c) != HERR_NOTFOUND)
		abort();
	free(out);
	return 0;
}
