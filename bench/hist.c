#include "config.h"
#include "hist.h"

#include <math.h>

static unsigned bucket_of(uint64_t v)
{
	unsigned msb, shift;

	if (v < 128)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - 6;
	return 128u + (shift - 1) * 64u + (unsigned)((v >> shift) - 64);
}

/* The lowest value and the width of bucket i. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
	unsigned shift;

	if (i < 128) {
		*lo = i;
		*width = 1;
		return;
	}
	shift = (i - 128) / 64 + 1;
	*lo = (uint64_t)(64 + (i - 128) % 64) << shift;
	*width = (uint64_t)1 << shift;
}

void hist_add(struct hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, lo, width, v;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen < rank)
			continue;
		bucket_range(i, &lo, &width);
		v = lo + width / 2;
		return v > h->max ? h->max : v;
	}
	return h->max;
}
