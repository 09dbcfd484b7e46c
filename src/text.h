/*
 * text.h - the byte-level text primitives every parser and writer of Herald
 * shares: UTF-8 checking, JSON string escaping, unsigned decimal numbers and
 * percent-decoding.  Pure functions over buffers: no allocation, no I/O, no
 * state outside their arguments, any thread.
 */
#ifndef HERALD_TEXT_H
#define HERALD_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* --- UTF-8 (Unicode 3.9, table 3-7) -------------------------------------- */

/*
 * Streaming check: feed len bytes of s with the state of the previous call
 * (start at 0).  Returns the new state, or TEXT_UTF8_BAD once the text is
 * ill-formed (an overlong form, a surrogate, a code point past U+10FFFF, a
 * stray or missing continuation byte); TEXT_UTF8_BAD stays.  A complete text
 * ends in state 0; another state means it stops inside a character.
 */
#define TEXT_UTF8_BAD 0xffffffffu
uint32_t text_utf8_feed(uint32_t state, const void *s, size_t len);

/*
 * The sequence at the start of s (n bytes available).  When it is
 * well-formed, sets *ok to 1 and returns its length (1 to 4).  Otherwise sets
 * *ok to 0 and returns the length of its maximal ill-formed subpart (1 to 3):
 * the bytes a decoder replaces by one U+FFFD, as browsers' TextDecoder does.
 * n 0 returns 0.
 */
size_t text_utf8_next(const char *s, size_t n, int *ok);

/* --- JSON strings (RFC 8259) --------------------------------------------- */

/* The most bytes text_json_char writes for one character. */
#define TEXT_JSON_CHAR_MAX 6

/*
 * Escape the character at the start of s (n > 0 bytes available) for the
 * inside of a JSON string: '"' and '\' get a backslash, control characters
 * become \u00XX, valid UTF-8 is copied, an ill-formed subpart becomes U+FFFD
 * (so the result is always valid UTF-8).  Writes into out
 * (TEXT_JSON_CHAR_MAX bytes, not NUL-terminated), sets *used to the bytes of
 * s consumed and returns the bytes written.  For writers that must cut a
 * string at a character boundary (log lines).
 */
size_t text_json_char(const char *s, size_t n, char out[TEXT_JSON_CHAR_MAX], size_t *used);

/*
 * The body of a JSON string (no quotes) for len bytes of s, escaped as
 * text_json_char does.  Writes into dst when it is not NULL (not
 * NUL-terminated); returns the length either way, so one call sizes the
 * buffer and a second fills it.  At most TEXT_JSON_CHAR_MAX bytes per byte of s.
 */
size_t text_json_escape(char *dst, const char *s, size_t len);

/* --- unsigned decimal numbers --------------------------------------------- */

/*
 * The decimal digits at the start of s (len bytes): at least one, no sign,
 * no blank, a value of at most max.  Returns the digits read with *out set,
 * or 0 (no digit, or a value past max: never wraps).
 */
size_t text_uint_prefix(const char *s, size_t len, uint64_t max, uint64_t *out);

/* All of s (len bytes) is such a number.  Returns 0 with *out set, or -1. */
int text_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);

/* --- percent-encoding (RFC 3986 section 2.1) ------------------------------ */

/* 0-15 for a hexadecimal digit, else -1. */
int text_hex_value(int c);

/*
 * Decode the byte at src[*i] (i < len), advancing *i past it.  Returns the
 * byte (0-255), or HERR_INVAL for a stray or truncated '%' and for a NUL,
 * raw or decoded: a value with a NUL in it would be cut short by every C
 * string function after us.  plus_is_space: '+' decodes to ' '
 * (application/x-www-form-urlencoded).
 */
int text_pct_next(const char *src, size_t len, size_t *i, int plus_is_space);

/*
 * Decode len bytes of src into out (outlen bytes), NUL-terminated.  Returns
 * the decoded length, HERR_INVAL (see text_pct_next), or HERR_TOOBIG when it
 * does not fit.
 */
int text_pct_decode(const char *src, size_t len, char *out, size_t outlen, int plus_is_space);

#endif
