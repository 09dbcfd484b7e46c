/*
 * hist.h - a log-linear latency histogram for herald-bench.
 *
 * Values (nanoseconds) below 128 have a bucket each; above, every power of
 * two is split into 64 buckets, so a bucket's width is under 1.6% of its
 * value.  Histograms of several processes merge by adding their buckets,
 * which keeps p99.9 of the merged run as exact as one process's.
 */
#ifndef HERALD_BENCH_HIST_H
#define HERALD_BENCH_HIST_H

#include <stdint.h>

#define HIST_BUCKETS (128 + 57 * 64)

struct hist {
	uint64_t n;
	uint64_t max;
	uint64_t sum;
	uint64_t b[HIST_BUCKETS];
};

/* Count one value (ns). */
void hist_add(struct hist *h, uint64_t v);

/* Add src's counts to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The value at quantile q (0..1) in ns: the middle of the bucket holding
 * that rank, never above the largest value seen.  0 when h is empty.
 */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
