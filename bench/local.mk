# herald-bench and the Nchan comparison (issue 6).  Included by Makefile.am.
bin_PROGRAMS += herald-bench
herald_bench_SOURCES = bench/herald-bench.c bench/hist.c bench/hist.h
herald_bench_LDADD = $(HERALD_LIBS) -lm

dist_man_MANS += docs/herald-bench.1
EXTRA_DIST += bench/compare bench/nchan.conf docs/BENCHMARKS.md tests/integration/bench.sh
TESTS += tests/integration/bench.sh

# Failures under load (issue 14): bench/chaos (its shell shared through
# bench/lib.sh; scripts/nodectl starts the numbered Herald processes), and
# tests/integration/chaos.sh, which runs its --quick form.
EXTRA_DIST += bench/chaos bench/lib.sh scripts/nodectl docs/RELIABILITY.md \
	tests/integration/chaos.sh
TESTS += tests/integration/chaos.sh

# Hours under churn (bench/soak): memory, descriptors and threads sampled
# after each wave of clients; tests/integration/soak.sh runs its --quick form.
EXTRA_DIST += bench/soak tests/integration/soak.sh
TESTS += tests/integration/soak.sh

# What a classic PUBLISH costs in a Redis Cluster (issue 14, docs/operations.md).
EXTRA_DIST += bench/cluster-publish
