# herald-bench and the Nchan comparison (issue 6).  Included by Makefile.am.
bin_PROGRAMS += herald-bench
herald_bench_SOURCES = bench/herald-bench.c bench/hist.c bench/hist.h
herald_bench_LDADD = $(HERALD_LIBS) -lm

dist_man_MANS += docs/herald-bench.1
EXTRA_DIST += bench/compare bench/nchan.conf docs/BENCHMARKS.md tests/integration/bench.sh
TESTS += tests/integration/bench.sh
