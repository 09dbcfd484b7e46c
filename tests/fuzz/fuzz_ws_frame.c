/*
 * libFuzzer target for herald-ws's frame parser: the input is split at a
 * point chosen by its first byte and fed in two calls, then byte by byte,
 * and both runs must report the same events.  Pool chunks must all come
 * back.  The client's reader (wsf_frame_read) walks a copy of the same
 * input: every frame it returns lies inside the buffer, and a prefix of a
 * frame is never taken for a whole one.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

static size_t run(const uint8_t *d, size_t n, size_t step, int *log, size_t cap)
{
	struct wsf_pool pool;
	struct wsf_parser p;
	size_t off = 0, k = 0;

	wsf_pool_init(&pool, 2);
	wsf_parser_init(&p, &pool);
	while (off < n) {
		size_t len = step == 0 || n - off < step ? n - off : step, pos = 0;

		while (pos < len) {
			struct wsf_event ev;
			size_t used;
			int rc = wsf_parse(&p, d + off + pos, len - pos, &used, &ev);

			if (used > len - pos)
				abort();
			pos += used;
			if (rc <= 0) {
				if (rc < 0 && k < cap)
					log[k++] = rc;
				if (rc < 0)
					goto out;
				break;
			}
			if (k < cap)
				log[k++] = ev.type * 100000 + (int)ev.len * 8 + ev.opcode;
			if (ev.type == WSF_EV_CLOSE && k < cap)
				log[k++] = ev.code;
			if (ev.data != NULL && ev.len > 0)
				(void)*(volatile const uint8_t *)(ev.data + ev.len - 1);
		}
		if (p.closed)
			break;
		off += len;
	}
out:
	wsf_parser_release(&p);
	if (pool.in_use != 0)
		abort();
	wsf_pool_clear(&pool);
	return k;
}

/* The client's reader over a copy of d: frames stay in bounds, prefixes wait. */
static void run_reader(const uint8_t *d, size_t n)
{
	uint8_t *buf = malloc(n + 1);
	size_t off = 0;

	if (buf == NULL)
		return;
	memcpy(buf, d, n);
	while (off < n) {
		struct wsf_frame f;
		long used = wsf_frame_read(buf + off, n - off, 4096, &f);

		if (used <= 0)
			break;
		if ((size_t)used > n - off || f.payload < buf + off ||
		    f.payload + f.len != buf + off + (size_t)used)
			abort();
		if (used > 1 && wsf_frame_read(buf + off, (size_t)used - 1, 4096, &f) != 0)
			abort();
		off += (size_t)used;
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int a[4096], b[4096];
	size_t na, nb;

	if (size < 1)
		return 0;
	na = run(data + 1, size - 1, 0, a, 4096);
	nb = run(data + 1, size - 1, (size_t)data[0] % 16 + 1, b, 4096);
	if (na != nb || memcmp(a, b, na * sizeof a[0]) != 0)
		abort();
	run_reader(data + 1, size - 1);
	return 0;
}
