/*
 * envelope.h - the message envelope of DESIGN.md section 6.
 *
 *   {"id":"1732550000000-0","channel":"notifications:42","ts":1732550000000,"data":PAYLOAD}
 *
 * The publish script writes it once; Herald forwards those bytes and reads
 * the id from the fixed prefix `{"id":"` without parsing JSON.  A message
 * published with a plain PUBLISH (no script) is wrapped here as
 * {"id":null,"channel":...,"ts":NOW,"data":PAYLOAD}, with the payload as a
 * JSON string when it is not valid JSON.
 */
#ifndef HERALD_ENVELOPE_H
#define HERALD_ENVELOPE_H

#include <stddef.h>

#include "cursor.h"

/*
 * Read the id of an envelope.  Returns 0 and sets *id, HERR_NOTFOUND for
 * an envelope with "id":null, HERR_INVAL when msg does not start with the
 * envelope prefix or the id is not a valid cursor.  The prefix is the exact
 * bytes `{"id":"CURSOR","channel":"` (or `{"id":null,"channel":"`): a payload
 * such as {"id":"123"} is not an envelope.
 */
int envelope_id(const char *msg, size_t len, struct cursor *id);

/*
 * Non-zero when msg starts as an envelope written by the publish script
 * (`{"id":"` followed by a valid cursor and `","channel":"`).
 */
int envelope_is_scripted(const char *msg, size_t len);

/*
 * Wrap a raw payload received on channel (channel is trusted: prefix and a
 * valid user id) into a malloc()ed, NUL-terminated envelope with "id":null;
 * the caller frees *out, and *outlen (when not NULL) gets its length without
 * the NUL.  Valid JSON (jsonv_validate) goes in verbatim; anything else as a
 * JSON string, with ill-formed UTF-8 replaced by U+FFFD, so the envelope is
 * always valid JSON and UTF-8.  Returns 0, HERR_NOMEM, or HERR_INVAL for a
 * NULL out or channel.
 */
int envelope_wrap_raw(const char *channel, const char *payload, size_t len, long long ts_ms,
		      char **out, size_t *outlen);

/*
 * What a subscriber does with each channel message: if it is a scripted
 * envelope, *out = NULL and *outlen = 0 (use msg as it is); else wrap it as
 * above into *out.  Returns as envelope_wrap_raw().
 */
int envelope_from_channel(const char *channel, const char *msg, size_t len, long long now_ms,
			  char **out, size_t *outlen);

#endif
