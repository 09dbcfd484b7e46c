# herald-ws: the WebSocket helper (issue 4).  Included by Makefile.am.
# Its codecs (frames, the opening handshake) live in codec/ with their unit
# tests and fuzz targets; here is only the server: one libevent loop.
EXTRA_DIST += docs/websocket.md

bin_PROGRAMS += herald-ws
herald_ws_SOURCES = ws/main.c ws/server.c ws/server.h
herald_ws_LDADD = $(HERALD_LIBS)

# Integration: a small C client and shell tests through real nginx and Redis.
check_PROGRAMS += tests/integration/ws_client
tests_integration_ws_client_SOURCES = tests/integration/ws_client.c \
	tests/integration/client.c tests/integration/client.h
tests_integration_ws_client_LDADD = $(HERALD_LIBS)
TESTS += tests/integration/ws.sh
EXTRA_DIST += tests/integration/ws.sh
# The stream (L4) flavour and the PROXY protocol (issue 16).
TESTS += tests/integration/stream.sh
EXTRA_DIST += tests/integration/stream.sh
dist_man_MANS += docs/herald-ws.1
