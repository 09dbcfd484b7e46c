#include "config.h"

#include "text.h"

#include <limits.h>
#include <string.h>

#include "err.h"

/* --- UTF-8 ----------------------------------------------------------------- */

/*
 * The state packs what the next byte must be: the continuation bytes still
 * needed (bits 0-7) and the inclusive range allowed for the next one (bits
 * 8-15 low, 16-23 high).  The first continuation byte's range is narrowed to
 * refuse overlong forms (E0, F0), surrogates (ED) and code points past
 * U+10FFFF (F4).
 */
#define U8(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

uint32_t text_utf8_feed(uint32_t state, const void *buf, size_t len)
{
	const uint8_t *s = buf;

	if (state == TEXT_UTF8_BAD)
		return state;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = s[i];

		if (state == 0) {
			if (b < 0x80)
				continue;
			if (b >= 0xC2 && b <= 0xDF)
				state = U8(1, 0x80, 0xBF);
			else if (b == 0xE0)
				state = U8(2, 0xA0, 0xBF);
			else if (b == 0xED)
				state = U8(2, 0x80, 0x9F);
			else if (b >= 0xE1 && b <= 0xEF)
				state = U8(2, 0x80, 0xBF);
			else if (b == 0xF0)
				state = U8(3, 0x90, 0xBF);
			else if (b >= 0xF1 && b <= 0xF3)
				state = U8(3, 0x80, 0xBF);
			else if (b == 0xF4)
				state = U8(3, 0x80, 0x8F);
			else
				return TEXT_UTF8_BAD;
			continue;
		}
		if (b < ((state >> 8) & 0xff) || b > ((state >> 16) & 0xff))
			return TEXT_UTF8_BAD;
		state = (state & 0xff) - 1;
		if (state != 0)
			state = U8(state, 0x80, 0xBF);
	}
	return state;
}

size_t text_utf8_next(const char *s, size_t n, int *ok)
{
	uint32_t state = 0;

	*ok = 0;
	for (size_t i = 0; i < n; i++) {
		state = text_utf8_feed(state, s + i, 1);
		if (state == TEXT_UTF8_BAD)
			return i > 0 ? i : 1; /* the bad byte starts the next subpart */
		if (state == 0) {
			*ok = 1;
			return i + 1;
		}
	}
	return n; /* cut short: the whole rest is one ill-formed subpart */
}

/* --- JSON strings ------------------------------------------------------------ */

size_t text_json_char(const char *s, size_t n, char out[TEXT_JSON_CHAR_MAX], size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c = (unsigned char)s[0];
	size_t len;
	int ok;

	*used = 1;
	if (c == '"' || c == '\\') {
		out[0] = '\\';
		out[1] = (char)c;
		return 2;
	}
	if (c < 0x20) {
		memcpy(out, "\\u00", 4); /* NOLINT(bugprone-not-null-terminated-result): part of a longer text */
		out[4] = hex[c >> 4];
		out[5] = hex[c & 0xf];
		return 6;
	}
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	len = text_utf8_next(s, n, &ok);
	*used = len;
	if (!ok) {
		memcpy(out, "\xef\xbf\xbd", 3); /* NOLINT(bugprone-not-null-terminated-result): U+FFFD */
		return 3;
	}
	memcpy(out, s, len);
	return len;
}

size_t text_json_escape(char *dst, const char *s, size_t len)
{
	size_t i = 0, o = 0;

	while (i < len) {
		char piece[TEXT_JSON_CHAR_MAX];
		size_t used, n;

		/* Plain ASCII, the common case, goes straight through. */
		if ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x80 && s[i] != '"' &&
		    s[i] != '\\') {
			if (dst != NULL)
				dst[o] = s[i];
			o++;
			i++;
			continue;
		}
		n = text_json_char(s + i, len - i, piece, &used);
		if (dst != NULL)
			memcpy(dst + o, piece, n);
		o += n;
		i += used;
	}
	return o;
}

/* --- unsigned decimal numbers -------------------------------------------------- */

size_t text_uint_prefix(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > max || v > (max - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	if (i > 0)
		*out = v;
	return i;
}

int text_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	if (s == NULL || len == 0 || text_uint_prefix(s, len, max, out) != len)
		return -1;
	return 0;
}

/* --- percent-encoding ----------------------------------------------------------- */

int text_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int text_pct_next(const char *src, size_t len, size_t *i, int plus_is_space)
{
	unsigned char c = (unsigned char)src[*i];
	int hi, lo;

	if (c == '%') {
		if (len - *i < 3)
			return HERR_INVAL;
		hi = text_hex_value((unsigned char)src[*i + 1]);
		lo = text_hex_value((unsigned char)src[*i + 2]);
		if (hi < 0 || lo < 0)
			return HERR_INVAL;
		c = (unsigned char)(hi << 4 | lo);
		*i += 3;
	} else {
		if (c == '+' && plus_is_space)
			c = ' ';
		*i += 1;
	}
	return c == '\0' ? HERR_INVAL : c;
}

int text_pct_decode(const char *src, size_t len, char *out, size_t outlen, int plus_is_space)
{
	size_t i = 0, n = 0;

	if (src == NULL && len > 0)
		return HERR_INVAL;
	while (i < len) {
		int c = text_pct_next(src, len, &i, plus_is_space);

		if (c < 0)
			return c;
		if (n + 1 >= outlen || n >= INT_MAX)
			return HERR_TOOBIG;
		out[n++] = (char)c;
	}
	if (outlen == 0)
		return HERR_TOOBIG;
	out[n] = '\0';
	return (int)n;
}
