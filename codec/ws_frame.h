/*
 * ws_frame.h - the WebSocket frame codec (RFC 6455 section 5), as functions
 * over buffers: no I/O, no threads, any thread (a wsf_pool belongs to one).
 * herald-ws parses its clients' frames with wsf_parse and writes its own
 * with wsf_write_header; herald-bench, the test clients and the fuzz target
 * read a server's frames with wsf_frame_read and write theirs with
 * wsf_write_frame.
 *
 * The server's parser (wsf_parse) is incremental: feed it whatever bytes
 * the socket gave (any split, down to one byte at a time) and it reports one
 * event at a time.
 * By default it keeps no data payload: their bytes are unmasked, checked
 * (UTF-8 for text, the size limit) and dropped as they pass.  A parser told
 * wsf_parser_keep_text() gathers a text message's payload in a buffer
 * allocated for that message, grown as its bytes arrive and freed once the
 * message was reported (herald-ws reads its clients' refresh messages so);
 * binary messages are still dropped.  A control frame's payload (at most
 * 125 bytes) lives in a chunk taken from a wsf_pool while that frame is in
 * flight and given back on the next call: an idle connection holds the
 * parser state (72 bytes) and no buffer.
 *
 * Errors are close codes, sticky once reported:
 *   1002 protocol error (unmasked frame, RSV bits, unknown opcode, control
 *        frame fragmented or over 125 bytes, continuation without a message,
 *        a new message inside a fragmented one, bad close payload, a 64-bit
 *        length with the top bit set);
 *   1007 invalid UTF-8 in a text message or a close reason;
 *   1009 a data message over the limit (WSF_MSG_MAX).
 */
#ifndef HERALD_WS_FRAME_H
#define HERALD_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Bytes of a client data message: room for a refresh message
 * ({"type":"refresh","token":"..."}) with the longest token herald accepts
 * (AUTH_TOKEN_MAX, 8 KiB, plus 64 for the rest).
 */
#define WSF_MSG_MAX 8256
#define WSF_CTRL_MAX 125    /* bytes of a control frame's payload */
#define WSF_HDR_MAX 14      /* longest frame header (with a mask key) */

enum wsf_opcode {
	WSF_OP_CONT = 0x0,
	WSF_OP_TEXT = 0x1,
	WSF_OP_BINARY = 0x2,
	WSF_OP_CLOSE = 0x8,
	WSF_OP_PING = 0x9,
	WSF_OP_PONG = 0xA,
};

enum wsf_close_code {
	WSF_CLOSE_NORMAL = 1000,
	WSF_CLOSE_GOING_AWAY = 1001,
	WSF_CLOSE_PROTOCOL = 1002,
	WSF_CLOSE_NO_STATUS = 1005, /* never on the wire: a close frame without a code */
	WSF_CLOSE_BAD_DATA = 1007,
	WSF_CLOSE_POLICY = 1008,
	WSF_CLOSE_TOO_BIG = 1009,
	WSF_CLOSE_INTERNAL = 1011,
};

/*
 * A free list of WSF_CTRL_MAX-byte chunks shared by every parser of a loop
 * (single-threaded).  Chunks are kept for reuse up to `keep`, then freed.
 */
struct wsf_pool {
	void *free;
	size_t nfree, keep;
	size_t in_use;   /* chunks held by parsers now (for tests and metrics) */
};

void wsf_pool_init(struct wsf_pool *pool, size_t keep);
void wsf_pool_clear(struct wsf_pool *pool); /* frees the kept chunks */

struct wsf_parser {
	struct wsf_pool *pool;
	uint8_t *ctrl;        /* control payload chunk, only while in flight */
	uint8_t *text;        /* keep_text: the text message's payload (malloc), only while in flight */
	uint32_t len;         /* payload length of the current frame (<= WSF_MSG_MAX) */
	uint32_t pos;         /* payload bytes consumed */
	uint32_t msg_len;     /* bytes of the data message so far */
	uint32_t utf8;        /* text_utf8_feed state (0 = between characters) */
	uint8_t hdr[WSF_HDR_MAX];
	uint8_t hlen;         /* header bytes gathered */
	uint8_t state;        /* private */
	uint8_t opcode;       /* of the current frame */
	uint8_t fin;
	uint8_t msg_op;       /* TEXT/BINARY while a fragmented message is open, else 0 */
	uint8_t mask[4];
	uint16_t error;       /* sticky close code, 0 when fine */
	uint8_t closed;       /* a close frame was received: nothing more is parsed */
	uint8_t keep_text;    /* wsf_parser_keep_text() */
	uint16_t text_cap;    /* bytes allocated at text */
};

enum wsf_event_type {
	WSF_EV_NONE = 0,
	WSF_EV_MESSAGE = 1,  /* a data message completed (its bytes are gone, unless kept text) */
	WSF_EV_PING = 2,
	WSF_EV_PONG = 3,
	WSF_EV_CLOSE = 4,
};

struct wsf_event {
	int type;             /* enum wsf_event_type */
	int opcode;           /* MESSAGE: WSF_OP_TEXT or WSF_OP_BINARY */
	size_t len;           /* MESSAGE: total bytes; control: payload bytes */
	/* Control payload (unmasked), or a text MESSAGE's payload with
	 * keep_text (NULL when empty); valid until the next wsf_parse(),
	 * wsf_parser_trim() or wsf_parser_release(). */
	const uint8_t *data;
	int code;             /* CLOSE: the status code, WSF_CLOSE_NO_STATUS if none */
	const char *reason;   /* CLOSE: the reason (len - 2 bytes), not NUL-terminated */
	size_t reason_len;
};

/* Start (or restart) a parser drawing control chunks from pool. */
void wsf_parser_init(struct wsf_parser *p, struct wsf_pool *pool);

/*
 * From now on, gather each text message's payload (unmasked and UTF-8
 * checked, at most WSF_MSG_MAX bytes) in a buffer allocated for it, so that
 * its MESSAGE event carries the bytes in data.  The buffer grows as bytes
 * arrive (a peer holds only as much as it sent) and is freed when the next
 * call begins.  Binary messages are still dropped.  Out of memory for it is
 * the error -1011.
 */
void wsf_parser_keep_text(struct wsf_parser *p);

/* Give back a chunk still held and free a text message's buffer (after an
 * error or on close).  The parser may be init'ed again afterwards. */
void wsf_parser_release(struct wsf_parser *p);

/* Give back the chunk of a control frame already reported, and the buffer
 * of a text message already reported (between frames only; a fragmented
 * message's bytes stay): call when the bytes at hand are consumed, so an
 * idle connection holds nothing. */
void wsf_parser_trim(struct wsf_parser *p);

/*
 * Consume bytes of buf (len) up to and including the next event.  *used is
 * set to the bytes consumed.  Returns 1 with *ev filled, 0 when all of buf
 * was consumed without completing an event, or a negative close code
 * (-1002, -1007, -1009 on a protocol violation, -1011 out of memory), after
 * which every call returns the same code.  After a CLOSE event the parser
 * consumes nothing more (returns 0, *used 0).  Call again with the rest of
 * the buffer.
 */
int wsf_parse(struct wsf_parser *p, const uint8_t *buf, size_t len, size_t *used,
	      struct wsf_event *ev);

/*
 * Write one frame: header, then payload masked with mask (client frames) or
 * as is (mask NULL: server frames).  Returns the bytes written, or -1 when
 * out (outlen) is too small.
 */
long wsf_write_frame(uint8_t *out, size_t outlen, int fin, int opcode, const uint8_t *mask,
		     const void *payload, size_t len);

/* Only the header of a server frame (no mask) for len payload bytes: 2-10 bytes. */
size_t wsf_write_header(uint8_t out[10], int fin, int opcode, uint64_t len);

/*
 * A close payload: the code in network order, then reason (truncated to fit
 * in WSF_CTRL_MAX).  Returns its length.
 */
size_t wsf_close_payload(uint8_t out[WSF_CTRL_MAX], int code, const char *reason);

/* Non-zero when code may be sent by a peer in a close frame (RFC 6455 7.4). */
int wsf_close_code_valid(int code);

/* --- reading whole frames (clients) --------------------------------------- */

/*
 * A client's view of one frame: herald-bench and the test clients keep the
 * bytes a server sent in a buffer and read whole frames from it, payloads
 * included (wsf_parse, the server's side, drops data payloads).
 */
struct wsf_frame {
	int fin;
	int opcode;       /* enum wsf_opcode */
	uint8_t *payload; /* in the caller's buffer, unmasked in place */
	size_t len;
	int masked;       /* the frame had a mask (a server must not send one) */
};

/*
 * Read the frame at the start of buf (len bytes).  Returns the bytes it
 * spans, with *f filled and a masked payload unmasked in place; 0 when buf
 * does not hold all of it yet; -WSF_CLOSE_PROTOCOL (RSV bits set, a 64-bit
 * length with the top bit set) or -WSF_CLOSE_TOO_BIG (a payload over max
 * bytes, which the caller could never buffer).  Opcodes and fragmentation
 * are the caller's to check.  Consume the frame's bytes before the next
 * call: a masked payload is unmasked once.
 */
long wsf_frame_read(uint8_t *buf, size_t len, size_t max, struct wsf_frame *f);

/* The code of a close payload (len bytes): WSF_CLOSE_NO_STATUS when empty. */
int wsf_close_code(const uint8_t *payload, size_t len);

#endif
