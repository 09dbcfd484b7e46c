/*
 * fuzz_sse: whatever a publisher sends, the SSE frame parses back (as a
 * browser parses it) into exactly one event with the same id and type, and
 * data equal to the payload with CR and CRLF turned into LF.  The raw input
 * is also fed to the parser in two pieces.
 *
 * Input: first byte picks the split; the rest is the payload.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

struct got {
	int n;
	char *data;
	size_t len;
	int type_ok;
	int id_ok;
};

static void on_event(void *ud, const char *type, const char *data, size_t len, const char *id)
{
	struct got *g = ud;

	g->n++;
	free(g->data);
	g->data = malloc(len + 1);
	if (g->data == NULL)
		abort();
	memcpy(g->data, data, len);
	g->len = len;
	g->type_ok = strcmp(type, "notification") == 0;
	g->id_ok = strcmp(id, "1732550000000-7") == 0;
}

static void drop(void *ud, const char *type, const char *data, size_t len, const char *id)
{
	(void)ud, (void)type, (void)data, (void)len, (void)id;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	const char *payload = (const char *)in + (size ? 1 : 0);
	size_t len = size ? size - 1 : 0;
	struct sse_parser p;
	struct got g = {0};
	char *frame, *want;
	size_t wl = 0, cut;
	long n;

	n = sse_event(NULL, 0, "1732550000000-7", "notification", payload, len);
	if (n <= 0)
		abort();
	frame = malloc((size_t)n + 1);
	want = malloc(len + 1);
	if (frame == NULL || want == NULL)
		abort();
	if (sse_event(frame, (size_t)n + 1, "1732550000000-7", "notification", payload, len) != n)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (payload[i] == '\r') {
			want[wl++] = '\n';
			if (i + 1 < len && payload[i + 1] == '\n')
				i++;
		} else {
			want[wl++] = payload[i];
		}
	}
	cut = size ? in[0] % ((size_t)n + 1) : 0;
	sse_parser_init(&p, on_event, &g);
	if (sse_parser_feed(&p, frame, cut) != 0 ||
	    sse_parser_feed(&p, frame + cut, (size_t)n - cut) != 0)
		abort();
	if (g.n != 1 || !g.type_ok || !g.id_ok || g.len != wl || memcmp(g.data, want, wl) != 0)
		abort();
	sse_parser_free(&p);

	sse_parser_init(&p, drop, NULL);
	p.max_line = 1024;
	cut = size ? in[0] % (size + 1) : 0;
	if (sse_parser_feed(&p, (const char *)in, cut) == 0)
		(void)sse_parser_feed(&p, (const char *)in + cut, size - cut);
	sse_parser_free(&p);
	free(g.data);
	free(frame);
	free(want);
	return 0;
}
