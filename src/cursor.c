#include "config.h"

#include "cursor.h"

#include <inttypes.h>
#include <stdio.h>

#include "err.h"
#include "text.h"

/* One decimal field of at least one digit; refuses a value past UINT64_MAX. */
static int parse_u64(const char *s, size_t len, size_t *pos, uint64_t *out)
{
	size_t n = text_uint_prefix(s + *pos, len - *pos, UINT64_MAX, out);

	if (n == 0)
		return HERR_INVAL;
	*pos += n;
	return 0;
}

int cursor_parse(const char *s, size_t len, struct cursor *out)
{
	struct cursor c = {0, 0};
	size_t i = 0;

	if (s == NULL || len == 0 || len > CURSOR_STR_MAX - 1)
		return HERR_INVAL;
	if (parse_u64(s, len, &i, &c.ms) != 0)
		return HERR_INVAL;
	if (i < len) {
		if (s[i] != '-')
			return HERR_INVAL;
		i++;
		if (parse_u64(s, len, &i, &c.seq) != 0 || i != len)
			return HERR_INVAL;
	}
	if (out != NULL)
		*out = c;
	return 0;
}

int cursor_format(const struct cursor *c, char *buf, size_t len)
{
	int n;

	if (c == NULL || buf == NULL || len == 0)
		return HERR_INVAL;
	n = snprintf(buf, len, "%" PRIu64 "-%" PRIu64, c->ms, c->seq);
	if (n < 0 || (size_t)n >= len)
		return HERR_INVAL;
	return n;
}

int cursor_cmp(const struct cursor *a, const struct cursor *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}
