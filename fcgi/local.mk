# herald-fcgi: the FastCGI/CGI process (issue 3; its threads: fcgi/app.h).  Included by Makefile.am.

FCGI_CORE = fcgi/app.h fcgi/router.c fcgi/router.h fcgi/reply.c fcgi/reply.h

bin_PROGRAMS += herald-fcgi
herald_fcgi_SOURCES = fcgi/main.c fcgi/handlers.c fcgi/handlers.h fcgi/held.c fcgi/held.h \
	$(FCGI_CORE)
herald_fcgi_LDADD = $(HERALD_LIBS) $(FCGI_LIBS)

dist_man_MANS += docs/herald-fcgi.1

tests_unit_unit_SOURCES += tests/unit/test_metrics.c tests/unit/test_sse.c \
	tests/unit/test_fcgi.c fcgi/router.c fcgi/router.h

TESTS += tests/integration/fcgi.sh tests/integration/fcgi-held.sh
EXTRA_DIST += tests/integration/fcgi.sh tests/integration/fcgi-held.sh \
	nginx/lighttpd-herald.conf docs/operations.md

FUZZ_TARGETS += sse fcgi_record
FUZZ_SRC += codec/sse.c codec/fcgi_record.c

check_PROGRAMS += tests/integration/fcgi_streams
tests_integration_fcgi_streams_SOURCES = tests/integration/fcgi_streams.c
check_PROGRAMS += tests/integration/fcgi_raw
tests_integration_fcgi_raw_SOURCES = tests/integration/fcgi_raw.c
tests_integration_fcgi_raw_LDADD = codec/libcodec.a
