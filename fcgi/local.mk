# herald-fcgi and sse/: the FastCGI/CGI process (issue 3).  Included by Makefile.am.

SSE_SOURCES = sse/sse.c sse/sse.h sse/waiter.c sse/waiter.h sse/stream.c sse/stream.h

bin_PROGRAMS += herald-fcgi
herald_fcgi_SOURCES = fcgi/main.c fcgi/router.c fcgi/router.h $(SSE_SOURCES)
herald_fcgi_LDADD = $(HERALD_LIBS) $(FCGI_LIBS)

dist_man_MANS += docs/herald-fcgi.1

tests_unit_unit_SOURCES += tests/unit/test_metrics.c tests/unit/test_sse.c \
	tests/unit/test_fcgi.c fcgi/router.c fcgi/router.h $(SSE_SOURCES)

TESTS += tests/integration/fcgi.sh
EXTRA_DIST += tests/integration/fcgi.sh \
	nginx/lighttpd-herald.conf docs/operations.md

FUZZ_TARGETS += sse
FUZZ_SRC += sse/sse.c

check_PROGRAMS += tests/integration/fcgi_streams
tests_integration_fcgi_streams_SOURCES = tests/integration/fcgi_streams.c
