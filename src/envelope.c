#include "config.h"

#include "envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jsonv.h"
#include "text.h"

/*
 * The publish script writes `{"id":"ID","channel":"...` byte for byte, and
 * envelope_wrap_raw() writes `{"id":null,"channel":"...`.  Requiring the
 * `,"channel":"` that follows the id, not only the id, keeps a plain
 * PUBLISH of a payload such as {"id":"123","title":"x"} from passing for an
 * envelope and reaching browsers unwrapped.
 */
#define ENV_OPEN    "{\"id\":"
#define ENV_NULL    "null"
#define ENV_CHANNEL ",\"channel\":\""
#define ENV_TS	    "\",\"ts\":"
#define ENV_DATA    ",\"data\":"
#define ENV_CLOSE   "}"

#define LIT_LEN(lit) (sizeof(lit) - 1)

static int has_at(const char *msg, size_t len, size_t pos, const char *lit, size_t litlen)
{
	return pos <= len && len - pos >= litlen && memcmp(msg + pos, lit, litlen) == 0;
}

/* envelope_id() with an optional id, so envelope_is_scripted() can share it. */
static int read_id(const char *msg, size_t len, struct cursor *id)
{
	size_t pos = LIT_LEN(ENV_OPEN);
	size_t room;
	const char *end;
	struct cursor c;

	if (msg == NULL || !has_at(msg, len, 0, ENV_OPEN, LIT_LEN(ENV_OPEN)))
		return HERR_INVAL;
	if (has_at(msg, len, pos, ENV_NULL, LIT_LEN(ENV_NULL)))
		return has_at(msg, len, pos + LIT_LEN(ENV_NULL), ENV_CHANNEL, LIT_LEN(ENV_CHANNEL))
			   ? HERR_NOTFOUND
			   : HERR_INVAL;
	if (pos >= len || msg[pos] != '"')
		return HERR_INVAL;
	pos++;
	/* The closing quote lies within a cursor's maximum length. */
	room = len - pos < CURSOR_STR_MAX ? len - pos : CURSOR_STR_MAX;
	end = memchr(msg + pos, '"', room);
	if (end == NULL || cursor_parse(msg + pos, (size_t)(end - (msg + pos)), &c) != 0)
		return HERR_INVAL;
	pos = (size_t)(end - msg) + 1;
	if (!has_at(msg, len, pos, ENV_CHANNEL, LIT_LEN(ENV_CHANNEL)))
		return HERR_INVAL;
	if (id != NULL)
		*id = c;
	return 0;
}

int envelope_id(const char *msg, size_t len, struct cursor *id)
{
	return read_id(msg, len, id);
}

int envelope_is_scripted(const char *msg, size_t len)
{
	return read_id(msg, len, NULL) == 0;
}

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

int envelope_wrap_raw(const char *channel, const char *payload, size_t len, long long ts_ms,
		      char **out, size_t *outlen)
{
	char ts[24];
	size_t chlen, chesc, datalen, total;
	int tslen, valid;
	char *buf, *p;

	if (out == NULL || channel == NULL || (payload == NULL && len > 0))
		return HERR_INVAL;
	*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	chlen = strlen(channel);
	if (len > SIZE_MAX / 8 || chlen > SIZE_MAX / 8)
		return HERR_NOMEM;
	tslen = snprintf(ts, sizeof ts, "%lld", ts_ms);
	if (tslen < 0 || (size_t)tslen >= sizeof ts)
		return HERR_INVAL;

	/* The channel is trusted, but escaping it costs nothing and keeps a
	 * configured prefix with a '"' from breaking the JSON. */
	chesc = text_json_escape(NULL, channel, chlen);
	valid = payload != NULL && jsonv_validate(payload, len, 0, NULL) == 0;
	datalen = valid ? len : text_json_escape(NULL, payload, len) + 2;
	total = LIT_LEN(ENV_OPEN) + LIT_LEN(ENV_NULL) + LIT_LEN(ENV_CHANNEL) + chesc +
		LIT_LEN(ENV_TS) + (size_t)tslen + LIT_LEN(ENV_DATA) + datalen + LIT_LEN(ENV_CLOSE);

	buf = malloc(total + 1);
	if (buf == NULL)
		return HERR_NOMEM;
	p = put(buf, ENV_OPEN ENV_NULL ENV_CHANNEL, LIT_LEN(ENV_OPEN ENV_NULL ENV_CHANNEL));
	p += text_json_escape(p, channel, chlen);
	p = put(p, ENV_TS, LIT_LEN(ENV_TS));
	p = put(p, ts, (size_t)tslen);
	p = put(p, ENV_DATA, LIT_LEN(ENV_DATA));
	if (valid) {
		p = put(p, payload, len);
	} else {
		*p++ = '"';
		if (len > 0)
			p += text_json_escape(p, payload, len);
		*p++ = '"';
	}
	p = put(p, ENV_CLOSE, LIT_LEN(ENV_CLOSE));
	*p = '\0';

	*out = buf;
	if (outlen != NULL)
		*outlen = total;
	return 0;
}

int envelope_from_channel(const char *channel, const char *msg, size_t len, long long now_ms,
			  char **out, size_t *outlen)
{
	if (out == NULL)
		return HERR_INVAL;
	if (msg != NULL && envelope_is_scripted(msg, len)) {
		*out = NULL;
		if (outlen != NULL)
			*outlen = 0;
		return 0;
	}
	return envelope_wrap_raw(channel, msg, len, now_ms, out, outlen);
}
