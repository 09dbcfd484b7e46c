#include "config.h"

#include "jsonv.h"

#include "err.h"
#include "text.h"

/*
 * The grammar is driven by a small state machine; nesting is remembered in a
 * fixed array of open brackets, so hostile input ("[[[[...") costs no C stack
 * and no memory, and is refused at the first bracket past the limit.
 */
enum state {
	S_VALUE,	/* a value must come: top level, after ':' or after ',' in an array */
	S_ARRAY_FIRST,	/* after '[': a value or ']' */
	S_OBJECT_FIRST, /* after '{': a key or '}' */
	S_KEY,		/* after ',' in an object: a key */
	S_COLON,	/* after a key */
	S_AFTER,	/* after a value: ',', a closing bracket, or the end of the text */
};

static int fail(struct jsonv_error *e, size_t offset, const char *what)
{
	if (e != NULL) {
		e->offset = offset;
		e->what = what;
	}
	return HERR_INVAL;
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static size_t skip_ws(const unsigned char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/*
 * Each scanner starts at s[*pos], the first byte of its token, and leaves
 * *pos just past the token, or at the offending byte with *what set.
 */
static int scan_string(const unsigned char *s, size_t len, size_t *pos, const char **what)
{
	size_t i = *pos + 1;
	int ok;

	for (;;) {
		unsigned char c;

		if (i >= len) {
			*what = "unterminated string";
			break;
		}
		c = s[i];
		if (c == '"') {
			*pos = i + 1;
			return 0;
		}
		if (c >= 0x20 && c < 0x80 && c != '\\') {
			i++;
			continue;
		}
		if (c < 0x20) {
			*what = "control character in string";
			break;
		}
		if (c >= 0x80) {
			size_t n = text_utf8_next((const char *)s + i, len - i, &ok);

			if (!ok) {
				*what = "invalid UTF-8";
				break;
			}
			i += n;
			continue;
		}
		/* A backslash.  \u escapes of lone surrogates are accepted, as
		 * JSON.parse accepts them. */
		if (i + 1 >= len) {
			i++;
			*what = "unterminated string";
			break;
		}
		c = s[i + 1];
		if (c == 'u') {
			size_t k;

			for (k = i + 2; k < i + 6; k++) {
				if (k >= len || !is_hex(s[k]))
					break;
			}
			if (k < i + 6) {
				i = k;
				*what = k >= len ? "unterminated string" : "invalid \\u escape";
				break;
			}
			i += 6;
		} else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
			   c == 'r' || c == 't') {
			i += 2;
		} else {
			*what = "invalid escape";
			break;
		}
	}
	*pos = i;
	return HERR_INVAL;
}

static int scan_digits(const unsigned char *s, size_t len, size_t *pos, const char **what)
{
	size_t i = *pos;

	if (i >= len || !is_digit(s[i])) {
		*what = i >= len ? "unexpected end" : "invalid number";
		return HERR_INVAL;
	}
	while (i < len && is_digit(s[i]))
		i++;
	*pos = i;
	return 0;
}

static int scan_number(const unsigned char *s, size_t len, size_t *pos, const char **what)
{
	size_t i = *pos;

	if (s[i] == '-')
		i++;
	if (i < len && s[i] == '0') {
		i++;
		if (i < len && is_digit(s[i])) {
			*pos = i;
			*what = "leading zero";
			return HERR_INVAL;
		}
	} else if (scan_digits(s, len, &i, what) != 0) {
		*pos = i;
		return HERR_INVAL;
	}
	if (i < len && s[i] == '.') {
		i++;
		if (scan_digits(s, len, &i, what) != 0) {
			*pos = i;
			return HERR_INVAL;
		}
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (scan_digits(s, len, &i, what) != 0) {
			*pos = i;
			return HERR_INVAL;
		}
	}
	*pos = i;
	return 0;
}

static int scan_literal(const unsigned char *s, size_t len, size_t *pos, const char *word,
			const char **what)
{
	size_t i = *pos;

	for (; *word != '\0'; word++, i++) {
		if (i >= len || s[i] != (unsigned char)*word) {
			*pos = i;
			*what = i >= len ? "unexpected end" : "invalid literal";
			return HERR_INVAL;
		}
	}
	*pos = i;
	return 0;
}

static int scan_scalar(const unsigned char *s, size_t len, size_t *pos, const char **what)
{
	unsigned char c = s[*pos];

	if (c == '"')
		return scan_string(s, len, pos, what);
	if (c == '-' || is_digit(c))
		return scan_number(s, len, pos, what);
	if (c == 't')
		return scan_literal(s, len, pos, "true", what);
	if (c == 'f')
		return scan_literal(s, len, pos, "false", what);
	if (c == 'n')
		return scan_literal(s, len, pos, "null", what);
	*what = "unexpected character";
	return HERR_INVAL;
}

int jsonv_validate(const char *text, size_t len, unsigned max_depth, struct jsonv_error *e)
{
	const unsigned char *s = (const unsigned char *)text;
	unsigned char open[JSONV_DEPTH_MAX]; /* '[' or '{' per open level */
	unsigned depth = 0;
	enum state st = S_VALUE;
	const char *what = NULL;
	size_t i = 0;

	if (s == NULL && len > 0)
		return fail(e, 0, "no text");
	if (max_depth == 0 || max_depth > JSONV_DEPTH_MAX)
		max_depth = JSONV_DEPTH_MAX;

	for (;;) {
		unsigned char c;

		i = skip_ws(s, len, i);
		if (i >= len)
			break;
		c = s[i];
		switch (st) {
		case S_ARRAY_FIRST:
			if (c == ']') {
				depth--;
				i++;
				st = S_AFTER;
				break;
			}
			/* fall through */
		case S_VALUE:
			if (c == '[' || c == '{') {
				if (depth >= max_depth)
					return fail(e, i, "too deep");
				open[depth++] = c;
				st = c == '[' ? S_ARRAY_FIRST : S_OBJECT_FIRST;
				i++;
				break;
			}
			if (scan_scalar(s, len, &i, &what) != 0)
				return fail(e, i, what);
			st = S_AFTER;
			break;
		case S_OBJECT_FIRST:
			if (c == '}') {
				depth--;
				i++;
				st = S_AFTER;
				break;
			}
			/* fall through */
		case S_KEY:
			if (c != '"')
				return fail(e, i, "expected a string key");
			if (scan_string(s, len, &i, &what) != 0)
				return fail(e, i, what);
			st = S_COLON;
			break;
		case S_COLON:
			if (c != ':')
				return fail(e, i, "expected ':'");
			i++;
			st = S_VALUE;
			break;
		case S_AFTER:
			if (depth == 0)
				return fail(e, i, "trailing characters");
			if (c == ',') {
				st = open[depth - 1] == '[' ? S_VALUE : S_KEY;
				i++;
			} else if (c == (open[depth - 1] == '[' ? ']' : '}')) {
				depth--;
				i++;
			} else {
				return fail(e, i,
					    open[depth - 1] == '[' ? "expected ',' or ']'"
								   : "expected ',' or '}'");
			}
			break;
		}
	}
	if (st == S_VALUE && depth == 0)
		return fail(e, len, "empty input");
	if (st != S_AFTER || depth != 0)
		return fail(e, len, "unexpected end");
	return 0;
}
