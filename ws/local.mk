# herald-ws: the WebSocket helper (issue 4).  Included by Makefile.am.
# The codec and the handshake are pure functions over buffers, so the unit
# tests and the fuzz targets link them without the server.
WS_CORE = ws/frame.c ws/frame.h ws/handshake.c ws/handshake.h

tests_unit_unit_SOURCES += $(WS_CORE) tests/unit/test_ws_frame.c tests/unit/test_ws_handshake.c
tests_unit_unit_CFLAGS += -I$(top_srcdir)/ws

EXTRA_DIST += docs/websocket.md

bin_PROGRAMS += herald-ws
herald_ws_SOURCES = ws/main.c ws/server.c ws/server.h $(WS_CORE)
herald_ws_LDADD = $(HERALD_LIBS)

# Integration: a small C client and shell tests through real nginx and Redis.
check_PROGRAMS += tests/integration/ws_client
tests_integration_ws_client_SOURCES = tests/integration/ws_client.c ws/frame.c ws/frame.h
TESTS += tests/integration/ws.sh
EXTRA_DIST += tests/integration/ws.sh
dist_man_MANS += docs/herald-ws.1
