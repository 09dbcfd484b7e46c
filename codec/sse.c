#include "config.h"

#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "err.h"
#include "text.h"

/* A bounded writer that counts what it could not write, as snprintf does. */
struct out {
	char *p;
	size_t cap; /* bytes usable, NUL excluded */
	size_t len; /* bytes the frame needs so far */
};

static void out_init(struct out *o, char *buf, size_t outlen)
{
	o->p = buf;
	o->cap = outlen ? outlen - 1 : 0;
	o->len = 0;
	if (outlen)
		buf[0] = '\0';
}

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len < o->cap) {
		size_t k = o->cap - o->len < n ? o->cap - o->len : n;

		memcpy(o->p + o->len, s, k);
		o->p[o->len + k] = '\0';
	}
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Every line of s (split at CR, LF, CRLF) as PREFIX LINE LF. */
static void put_lines(struct out *o, const char *prefix, const char *s, size_t len)
{
	size_t i = 0;

	for (;;) {
		size_t j = i;

		while (j < len && s[j] != '\r' && s[j] != '\n')
			j++;
		puts_(o, prefix);
		put(o, s + i, j - i);
		put(o, "\n", 1);
		if (j == len)
			break;
		if (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n')
			j++;
		/* after a final line break the loop emits the empty last line */
		i = j + 1;
	}
}

static int one_line(const char *s)
{
	return s == NULL || strpbrk(s, "\r\n") == NULL;
}

static long finish(const struct out *o)
{
	return (long)o->len;
}

long sse_event(char *out, size_t outlen, const char *id, const char *event, const char *data,
	       size_t len)
{
	struct out o;

	/* A NUL cannot reach here inside id/event (C strings); CR and LF could. */
	if (!one_line(id) || !one_line(event))
		return HERR_INVAL;
	out_init(&o, out, outlen);
	if (id != NULL) {
		puts_(&o, "id: ");
		puts_(&o, id);
		put(&o, "\n", 1);
	}
	if (event != NULL) {
		puts_(&o, "event: ");
		puts_(&o, event);
		put(&o, "\n", 1);
	}
	put_lines(&o, "data: ", data != NULL ? data : "", data != NULL ? len : 0);
	put(&o, "\n", 1);
	return finish(&o);
}

long sse_retry(char *out, size_t outlen, unsigned ms)
{
	char tmp[32];
	struct out o;

	snprintf(tmp, sizeof tmp, "retry: %u\n\n", ms);
	out_init(&o, out, outlen);
	puts_(&o, tmp);
	return finish(&o);
}

long sse_comment(char *out, size_t outlen, const char *text)
{
	struct out o;

	out_init(&o, out, outlen);
	put_lines(&o, ": ", text, strlen(text));
	return finish(&o);
}

long sse_heartbeat(char *out, size_t outlen)
{
	static const char hb[] = ": heartbeat\nevent: heartbeat\ndata: {}\n\n";
	struct out o;

	out_init(&o, out, outlen);
	put(&o, hb, sizeof hb - 1);
	return finish(&o);
}

long sse_msg(char *out, size_t outlen, const struct hub_msg *m)
{
	static const char reset[] = "{\"reason\":\"history_truncated\"}";
	char id[CURSOR_STR_MAX];

	if (m->kind == HUB_MSG_RESET)
		return sse_event(out, outlen, NULL, "reset", reset, sizeof reset - 1);
	if (!m->has_id)
		return sse_event(out, outlen, NULL, "notification", m->data, m->len);
	if (cursor_format(&m->id, id, sizeof id) < 0)
		return HERR_INVAL;
	/* A stream without Last-Event-ID starts with its cursor: the id sets
	 * the browser's Last-Event-ID, the named event reaches only "cursor"
	 * listeners (herald.js keeps it), never onmessage. */
	return sse_event(out, outlen, id, m->kind == HUB_MSG_CURSOR ? "cursor" : "notification",
			 m->data, m->len);
}

/* --- reading ------------------------------------------------------------ */

void sse_parser_init(struct sse_parser *p, sse_event_fn fn, void *ud)
{
	memset(p, 0, sizeof *p);
	p->on_event = fn;
	p->ud = ud;
	p->retry = -1;
}

void sse_parser_free(struct sse_parser *p)
{
	if (p == NULL)
		return;
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 256;
	char *n;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	n = realloc(*buf, c);
	if (n == NULL)
		return HERR_NOMEM;
	*buf = n;
	*cap = c;
	return 0;
}

static void copy_field(char *dst, size_t dstlen, const char *v, size_t vlen)
{
	if (vlen >= dstlen)
		vlen = dstlen - 1;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
}

static int dispatch(struct sse_parser *p)
{
	if (p->data_len == 0) {
		p->event[0] = '\0';
		return 0;
	}
	/* the data buffer ends with the LF of its last line: drop it */
	p->data_len--;
	p->data[p->data_len] = '\0';
	p->events++;
	if (p->on_event != NULL)
		p->on_event(p->ud, p->event[0] ? p->event : "message", p->data, p->data_len,
			    p->last_id);
	p->data_len = 0;
	p->event[0] = '\0';
	return 0;
}

/* One complete line (without its terminator). */
static int line(struct sse_parser *p, const char *s, size_t n)
{
	const char *colon, *v;
	size_t flen, vlen;

	if (n == 0)
		return dispatch(p);
	if (s[0] == ':') {
		p->comments++;
		return 0;
	}
	colon = memchr(s, ':', n);
	flen = colon ? (size_t)(colon - s) : n;
	v = colon ? colon + 1 : s + n;
	vlen = colon ? n - flen - 1 : 0;
	if (vlen > 0 && v[0] == ' ') {
		v++;
		vlen--;
	}
	if (flen == 4 && memcmp(s, "data", 4) == 0) {
		if (grow(&p->data, &p->data_cap, p->data_len + vlen + 2) < 0)
			return HERR_NOMEM;
		memcpy(p->data + p->data_len, v, vlen);
		p->data_len += vlen;
		p->data[p->data_len++] = '\n';
		p->data[p->data_len] = '\0';
	} else if (flen == 5 && memcmp(s, "event", 5) == 0) {
		copy_field(p->event, sizeof p->event, v, vlen);
	} else if (flen == 2 && memcmp(s, "id", 2) == 0) {
		if (memchr(v, '\0', vlen) == NULL)
			copy_field(p->last_id, sizeof p->last_id, v, vlen);
	} else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
		uint64_t r;

		/* digits only, else the field is ignored (as a browser does) */
		if (text_parse_uint(v, vlen, 999999999, &r) == 0)
			p->retry = (long)r;
	}
	return 0;
}

int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len)
{
	size_t max = p->max_line ? p->max_line : 1024 * 1024;
	size_t i = 0;
	int rc;

	if (!p->bom_done && len > 0) {
		/* a UTF-8 BOM may only open the stream; wait for 3 bytes to decide */
		static const char bom[] = "\xef\xbb\xbf";
		size_t have = p->line_len, k = 0;

		while (have + k < 3 && k < len && buf[k] == bom[have + k])
			k++;
		if (have + k == 3) {
			p->bom_done = 1;
			p->line_len = 0;
			i = k;
		} else if (k == len && have + k < 3) {
			if (grow(&p->line, &p->line_cap, have + k + 1) < 0)
				return HERR_NOMEM;
			memcpy(p->line + have, buf, k);
			p->line_len += k;
			return 0;
		} else {
			p->bom_done = 1;
		}
	}
	for (; i < len; i++) {
		char ch = buf[i];

		if (p->skip_lf) {
			p->skip_lf = 0;
			if (ch == '\n')
				continue;
		}
		if (ch == '\r' || ch == '\n') {
			rc = line(p, p->line ? p->line : "", p->line_len);
			p->line_len = 0;
			if (rc < 0)
				return rc;
			p->skip_lf = ch == '\r';
			continue;
		}
		if (p->line_len >= max)
			return HERR_TOOBIG;
		if (grow(&p->line, &p->line_cap, p->line_len + 2) < 0)
			return HERR_NOMEM;
		p->line[p->line_len++] = ch;
		p->line[p->line_len] = '\0';
	}
	return 0;
}
