# codec/: the wire formats (FastCGI records, SSE, WebSocket frames and
# handshake) as functions over buffers, with no I/O, no threads and no
# state outside their arguments; linked by both servers, the unit tests,
# the fuzz targets and herald-bench.  Included by Makefile.am.
noinst_LIBRARIES += codec/libcodec.a
codec_libcodec_a_SOURCES = codec/fcgi_record.c codec/fcgi_record.h codec/sse.c codec/sse.h \
	codec/ws_frame.c codec/ws_frame.h codec/ws_handshake.c codec/ws_handshake.h \
	codec/ws_message.c codec/ws_message.h codec/proxy.c codec/proxy.h
CODEC_LIBS = codec/libcodec.a

tests_unit_unit_SOURCES += tests/unit/test_fcgi_record.c tests/unit/test_ws_frame.c \
	tests/unit/test_ws_handshake.c tests/unit/test_ws_message.c tests/unit/test_proxy.c
