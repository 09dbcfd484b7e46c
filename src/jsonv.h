/*
 * jsonv.h - a strict RFC 8259 validator.
 *
 * Payloads reach browsers' JSON.parse verbatim, and json-c's strict mode
 * accepts what JSON.parse refuses (NaN, single quotes, raw control
 * characters; NOTES.md), so publishing validates with this instead.  One pass,
 * no allocation, an explicit depth limit instead of recursion.  The text must
 * also be valid UTF-8 (WebSocket text frames require it); escaped lone
 * surrogates (\uD800) are accepted, as JSON.parse does.  Whitespace around the
 * value is allowed; a NUL byte anywhere is refused.
 */
#ifndef HERALD_JSONV_H
#define HERALD_JSONV_H

#include <stddef.h>

#define JSONV_DEPTH_MAX 64

struct jsonv_error {
	size_t offset;	  /* byte offset of the problem */
	const char *what; /* constant: "unexpected character", "too deep", ... */
};
/*
 * The texts of what: "empty input", "unexpected end", "unexpected character",
 * "trailing characters", "too deep", "expected a string key", "expected ':'",
 * "expected ',' or ']'", "expected ',' or '}'", "unterminated string",
 * "control character in string", "invalid escape", "invalid \\u escape",
 * "invalid UTF-8", "invalid number", "leading zero", "invalid literal",
 * "no text" (s NULL).  The offset of "empty input", "unexpected end" and
 * "unterminated string" is len.
 */

/*
 * Validate len bytes of s.  max_depth bounds nesting of arrays/objects
 * (0 means JSONV_DEPTH_MAX).  Returns 0, or HERR_INVAL and fills *e when e
 * is non-NULL.
 */
int jsonv_validate(const char *s, size_t len, unsigned max_depth, struct jsonv_error *e);

#endif
