/*
 * The frame codec against Autobahn|Testsuite's case groups: each case builds
 * the client's bytes, feeds them whole, one byte at a time and in 7-byte
 * pieces, and compares the events seen.  Case numbers name Autobahn's.
 * Each case runs twice: as herald-ws's parser did before refresh messages
 * (data dropped) and with wsf_parser_keep_text(), which must give the same
 * events, the same text bytes however the wire is split, and hold nothing
 * once a message was reported.
 *
 * Event log: T<len> / B<len> text or binary message, P<len> ping, O<len>
 * pong, C<code> close, E<code> protocol error (the parser stops there).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"
#include "suites.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

static uint8_t wire[80000];
static size_t wire_len;
static char got[4096];
static int keep;                /* run with wsf_parser_keep_text() */
static unsigned long texthash;  /* keep: FNV-1a over every text message's bytes */

static void reset(void)
{
	wire_len = 0;
}

/* Append a client frame: b0 is FIN|RSV|opcode, payload masked. */
static void frame(int b0, const void *payload, size_t len)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	long n = wsf_write_frame(wire + wire_len, sizeof wire - wire_len, b0 & 0x80,
				 b0 & 0x0f, key, payload, len);

	ck_assert_int_gt(n, 0);
	wire[wire_len] |= (uint8_t)(b0 & 0x70);
	wire_len += (size_t)n;
}

static void raw(const void *b, size_t n)
{
	memcpy(wire + wire_len, b, n);
	wire_len += n;
}

static void text(const char *s)
{
	frame(FIN | WSF_OP_TEXT, s, strlen(s));
}

static void logf_(char tag, long v)
{
	size_t n = strlen(got);

	snprintf(got + n, sizeof got - n, "%s%c%ld", n > 0 ? " " : "", tag, v);
}

/* Feed the wire in pieces of step bytes (0: all at once). */
static const char *run(size_t step)
{
	struct wsf_pool pool;
	struct wsf_parser p;
	size_t off = 0;
	int stopped = 0;

	got[0] = '\0';
	texthash = 2166136261u;
	wsf_pool_init(&pool, 4);
	wsf_parser_init(&p, &pool);
	if (keep)
		wsf_parser_keep_text(&p);
	while (off < wire_len && !stopped) {
		size_t n = step == 0 || wire_len - off < step ? wire_len - off : step;
		size_t pos = 0;

		while (pos < n) {
			struct wsf_event ev;
			size_t used;
			int rc = wsf_parse(&p, wire + off + pos, n - pos, &used, &ev);

			ck_assert_uint_le(used, n - pos);
			pos += used;
			if (rc < 0) {
				logf_('E', -rc);
				stopped = 1;
				break;
			}
			if (rc == 0) {
				if (p.closed)
					stopped = 1;
				break;
			}
			switch (ev.type) {
			case WSF_EV_MESSAGE:
				logf_(ev.opcode == WSF_OP_TEXT ? 'T' : 'B', (long)ev.len);
				if (keep && ev.opcode == WSF_OP_TEXT) {
					ck_assert(ev.len == 0 || ev.data != NULL);
					for (size_t k = 0; k < ev.len; k++)
						texthash = (texthash ^ ev.data[k]) * 16777619u;
				} else {
					ck_assert_ptr_null(ev.data);
				}
				break;
			case WSF_EV_PING:
				logf_('P', (long)ev.len);
				break;
			case WSF_EV_PONG:
				logf_('O', (long)ev.len);
				break;
			case WSF_EV_CLOSE:
				logf_('C', ev.code);
				break;
			default:
				ck_abort_msg("event %d", ev.type);
			}
		}
		off += n;
	}
	if (!stopped) {
		struct wsf_event ev;
		size_t used;

		ck_assert_int_eq(wsf_parse(&p, wire, 0, &used, &ev), 0);
		/* Between frames nothing is held; between messages no text. */
		if (p.state == 0 && p.hlen == 0)
			ck_assert_uint_eq(pool.in_use, 0);
		if (p.state == 0 && p.msg_op == 0)
			ck_assert_ptr_null(p.text);
	} else {
		wsf_parser_trim(&p);
	}
	wsf_parser_release(&p);
	ck_assert_uint_eq(pool.in_use, 0);
	ck_assert_ptr_null(p.text);
	wsf_pool_clear(&pool);
	return got;
}

static void expect(const char *want)
{
	static const size_t steps[] = {0, 1, 2, 7, 126};
	unsigned long hash = 0;
	size_t i;

	for (keep = 0; keep < 2; keep++)
		for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
			ck_assert_msg(strcmp(run(steps[i]), want) == 0,
				      "keep %d step %zu: got \"%s\", want \"%s\"", keep, steps[i], got,
				      want);
			if (keep && i == 0)
				hash = texthash;
			else if (keep)
				ck_assert_msg(texthash == hash, "step %zu: other text bytes", steps[i]);
		}
	keep = 0;
}


static uint8_t big[70000];

/* 1: framing, text and binary of every length class (4 KiB limit: 9). */
START_TEST(t1_framing)
{
	static const size_t lens[] = {0, 1, 125, 126, 127, 128, 4095, 4096};
	size_t i;
	char want[32];

	memset(big, '*', sizeof big);
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		reset();
		frame(FIN | WSF_OP_TEXT, big, lens[i]);
		snprintf(want, sizeof want, "T%zu", lens[i]);
		expect(want);
		reset();
		frame(FIN | WSF_OP_BINARY, big, lens[i]);
		snprintf(want, sizeof want, "B%zu", lens[i]);
		expect(want);
	}
	/* 1.1.8 / 1.2.8: 65535 and 65536 are over herald's limit. */
	reset();
	frame(FIN | WSF_OP_TEXT, big, 65535);
	expect("E1009");
	reset();
	frame(FIN | WSF_OP_BINARY, big, 65536);
	expect("E1009");
}
END_TEST

START_TEST(t1_unmasked)
{
	uint8_t f[] = {FIN | WSF_OP_TEXT, 0x02, 'h', 'i'};

	reset();
	raw(f, sizeof f);
	expect("E1002");
	reset();
	text("ok");
	raw(f, sizeof f);
	expect("T2 E1002");
}
END_TEST

/* 2: ping and pong. */
START_TEST(t2_ping_pong)
{
	int i;

	memset(big, 0xfe, 200);
	reset();
	frame(FIN | WSF_OP_PING, NULL, 0); /* 2.1 */
	expect("P0");
	reset();
	frame(FIN | WSF_OP_PING, "Hello, world!", 13); /* 2.2 */
	expect("P13");
	reset();
	frame(FIN | WSF_OP_PING, big, 8); /* 2.3 binary payload */
	expect("P8");
	reset();
	frame(FIN | WSF_OP_PING, big, 125); /* 2.4, 2.6 */
	expect("P125");
	reset();
	frame(FIN | WSF_OP_PING, big, 126); /* 2.5 */
	expect("E1002");
	reset();
	frame(FIN | WSF_OP_PONG, NULL, 0); /* 2.7 unsolicited pong */
	expect("O0");
	reset();
	frame(FIN | WSF_OP_PONG, "unsolicited", 11); /* 2.8 */
	expect("O11");
	reset();
	frame(FIN | WSF_OP_PONG, "x", 1); /* 2.9 */
	frame(FIN | WSF_OP_PING, "yy", 2);
	expect("O1 P2");
	reset();
	for (i = 0; i < 10; i++) /* 2.10, 2.11 */
		frame(FIN | WSF_OP_PING, "ping", 4);
	expect("P4 P4 P4 P4 P4 P4 P4 P4 P4 P4");
}
END_TEST

/* The ping payload comes back unmasked. */
START_TEST(t2_ping_payload)
{
	struct wsf_pool pool;
	struct wsf_parser p;
	struct wsf_event ev;
	size_t used;

	reset();
	frame(FIN | WSF_OP_PING, "Hello", 5);
	wsf_pool_init(&pool, 1);
	wsf_parser_init(&p, &pool);
	ck_assert_int_eq(wsf_parse(&p, wire, wire_len, &used, &ev), 1);
	ck_assert_uint_eq(used, wire_len);
	ck_assert_int_eq(ev.type, WSF_EV_PING);
	ck_assert_uint_eq(ev.len, 5);
	ck_assert(memcmp(ev.data, "Hello", 5) == 0);
	ck_assert_uint_eq(pool.in_use, 1);
	ck_assert_int_eq(wsf_parse(&p, wire, 0, &used, &ev), 0);
	ck_assert_uint_eq(pool.in_use, 0);
	ck_assert_uint_eq(pool.nfree, 1);
	wsf_parser_release(&p);
	wsf_pool_clear(&pool);
}
END_TEST

/* 3: reserved bits. */
START_TEST(t3_reserved_bits)
{
	reset();
	frame(FIN | RSV1 | WSF_OP_TEXT, "Hello", 5); /* 3.1 */
	expect("E1002");
	reset();
	text("Hello"); /* 3.2: a good message first, then RSV2 */
	frame(FIN | RSV2 | WSF_OP_TEXT, "Hello", 5);
	frame(FIN | WSF_OP_PING, NULL, 0);
	expect("T5 E1002");
	reset();
	text("Hello"); /* 3.3 */
	frame(FIN | RSV1 | RSV2 | WSF_OP_TEXT, "Hello", 5);
	expect("T5 E1002");
	reset();
	frame(FIN | RSV3 | WSF_OP_TEXT, "Hello", 5); /* 3.4 */
	expect("E1002");
	reset();
	frame(FIN | RSV1 | RSV3 | WSF_OP_BINARY, "\xff", 1); /* 3.5 */
	expect("E1002");
	reset();
	frame(FIN | RSV2 | RSV3 | WSF_OP_PING, "Hello", 5); /* 3.6 */
	expect("E1002");
	reset();
	frame(FIN | RSV1 | RSV2 | RSV3 | WSF_OP_CLOSE, NULL, 0); /* 3.7 */
	expect("E1002");
}
END_TEST

/* 4: opcodes. */
START_TEST(t4_opcodes)
{
	int op;

	for (op = 3; op <= 7; op++) { /* 4.1.x */
		reset();
		text("ok");
		frame(FIN | op, "x", 1);
		frame(FIN | WSF_OP_PING, NULL, 0);
		expect("T2 E1002");
	}
	for (op = 0xB; op <= 0xF; op++) { /* 4.2.x */
		reset();
		text("ok");
		frame(FIN | op, NULL, 0);
		expect("T2 E1002");
	}
}
END_TEST

/* 5: fragmentation. */
START_TEST(t5_fragmentation)
{
	memset(big, 'a', sizeof big);
	reset();
	frame(WSF_OP_PING, "a", 1); /* 5.1 */
	frame(FIN | WSF_OP_CONT, "b", 1);
	expect("E1002");
	reset();
	frame(WSF_OP_PONG, "a", 1); /* 5.2 */
	expect("E1002");
	reset();
	frame(WSF_OP_TEXT, "frag", 4); /* 5.3, 5.4 */
	frame(FIN | WSF_OP_CONT, "ment", 4);
	expect("T8");
	reset();
	frame(WSF_OP_TEXT, "fr", 2); /* 5.6, 5.7, 5.8 */
	frame(FIN | WSF_OP_PING, "p", 1);
	frame(WSF_OP_CONT, "ag", 2);
	frame(FIN | WSF_OP_PONG, NULL, 0);
	frame(FIN | WSF_OP_CONT, "!", 1);
	expect("P1 O0 T5");
	reset();
	frame(FIN | WSF_OP_CONT, "x", 1); /* 5.9 */
	expect("E1002");
	reset();
	frame(WSF_OP_CONT, "x", 1); /* 5.10 */
	expect("E1002");
	reset();
	text("ok"); /* 5.13: continuation after a complete message */
	frame(WSF_OP_CONT, "x", 1);
	expect("T2 E1002");
	reset();
	frame(WSF_OP_TEXT, "a", 1); /* 5.15: a new message inside one */
	frame(WSF_OP_CONT, "b", 1);
	frame(FIN | WSF_OP_CONT, "c", 1);
	frame(FIN | WSF_OP_CONT, "d", 1);
	expect("T3 E1002");
	reset();
	frame(WSF_OP_TEXT, "a", 1); /* 5.18 */
	frame(FIN | WSF_OP_TEXT, "b", 1);
	expect("E1002");
	reset();
	frame(WSF_OP_BINARY, "a", 1); /* 5.x binary with empty fragments */
	frame(WSF_OP_CONT, NULL, 0);
	frame(FIN | WSF_OP_CONT, NULL, 0);
	expect("B1");
	reset();
	frame(WSF_OP_TEXT, big, WSF_MSG_MAX - 96); /* 9: the limit counts the whole message */
	frame(FIN | WSF_OP_CONT, big, 97);
	expect("E1009");
	reset();
	frame(WSF_OP_TEXT, big, WSF_MSG_MAX - 96);
	frame(FIN | WSF_OP_CONT, big, 96);
	{
		char want[16];

		snprintf(want, sizeof want, "T%d", WSF_MSG_MAX);
		expect(want);
	}
}
END_TEST

static void utf8_case(const char *bytes, size_t n, int valid)
{
	size_t cut;

	if (!valid) {
		reset();
		frame(FIN | WSF_OP_TEXT, bytes, n);
		expect("E1007");
	}
	/* 6.2/6.3: the same, fragmented at every byte boundary */
	for (cut = 1; cut < n; cut++) {
		reset();
		frame(WSF_OP_TEXT, bytes, cut);
		frame(FIN | WSF_OP_CONT, bytes + cut, n - cut);
		if (valid) {
			char want[16];

			snprintf(want, sizeof want, "T%zu", n);
			expect(want);
		} else {
			expect("E1007");
		}
	}
}

#define UTF8_OK(s) utf8_ok_(s, sizeof(s) - 1)
#define UTF8_BAD(s) utf8_case(s, sizeof(s) - 1, 0)

static void utf8_ok_(const char *s, size_t n)
{
	char want[16];

	snprintf(want, sizeof want, "T%zu", n);
	reset();
	frame(FIN | WSF_OP_TEXT, s, n);
	expect(want);
	utf8_case(s, n, 1);
}

/* 6: UTF-8 handling. */
START_TEST(t6_utf8)
{
	UTF8_OK("");
	UTF8_OK("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"); /* 6.2 */
	UTF8_OK("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"); /* 6.5, 6.6 kosme */
	UTF8_OK("\xc2\x80"); /* 6.7 first of each length */
	UTF8_OK("\xe0\xa0\x80");
	UTF8_OK("\xf0\x90\x80\x80");
	UTF8_OK("\x7f"); /* 6.9 last of each length */
	UTF8_OK("\xdf\xbf");
	UTF8_OK("\xef\xbf\xbf");
	UTF8_OK("\xf4\x8f\xbf\xbf");
	UTF8_OK("\xed\x9f\xbf"); /* 6.11 boundaries */
	UTF8_OK("\xee\x80\x80");
	UTF8_OK("\xef\xbf\xbd");
	UTF8_OK("\xef\xbf\xbe"); /* 6.20 noncharacters are valid UTF-8 */
	UTF8_OK("\xf0\x9f\xbf\xbf");

	UTF8_BAD("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited"); /* 6.3 */
	UTF8_BAD("\xf8\x88\x80\x80\x80"); /* 6.8 five and six bytes */
	UTF8_BAD("\xfc\x84\x80\x80\x80\x80");
	UTF8_BAD("\xf7\xbf\xbf\xbf"); /* 6.10 */
	UTF8_BAD("\xf4\x90\x80\x80"); /* 6.11.5 past U+10FFFF */
	UTF8_BAD("\x80"); /* 6.12 unexpected continuation */
	UTF8_BAD("\xbf");
	UTF8_BAD("\x80\xbf\x80");
	UTF8_BAD("\xc0\x20"); /* 6.13 lonely start */
	UTF8_BAD("\xe0\x80\x20");
	UTF8_BAD("\xc2"); /* 6.14 last byte missing */
	UTF8_BAD("\xe0\xa0");
	UTF8_BAD("\xf0\x90\x80");
	UTF8_BAD("\xfe"); /* 6.16 impossible bytes */
	UTF8_BAD("\xff");
	UTF8_BAD("\xfe\xfe\xff\xff");
	UTF8_BAD("\xc0\xaf"); /* 6.17 overlong */
	UTF8_BAD("\xe0\x80\xaf");
	UTF8_BAD("\xf0\x80\x80\xaf");
	UTF8_BAD("\xc1\xbf"); /* 6.18 maximal overlong */
	UTF8_BAD("\xe0\x9f\xbf");
	UTF8_BAD("\xf0\x8f\xbf\xbf");
	UTF8_BAD("\xed\xa0\x80"); /* 6.19 surrogates */
	UTF8_BAD("\xed\xbf\xbf");
	UTF8_BAD("\xed\xa0\x80\xed\xb0\x80");
}
END_TEST

/* 6.4: fail fast, before the message (or even the frame) is complete. */
START_TEST(t6_fail_fast)
{
	struct wsf_pool pool;
	struct wsf_parser p;
	struct wsf_event ev;
	size_t used;
	static const char s[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
				"-edited-edited-edited";

	reset();
	frame(WSF_OP_TEXT, s, sizeof s - 1);
	wsf_pool_init(&pool, 0);
	wsf_parser_init(&p, &pool);
	/* header (6) + the 12 bytes up to the bad second byte of F4 90 */
	ck_assert_int_eq(wsf_parse(&p, wire, 6 + 11, &used, &ev), 0);
	ck_assert_int_eq(wsf_parse(&p, wire + 17, 2, &used, &ev), -1007);
	ck_assert_int_eq(wsf_parse(&p, wire + 19, 2, &used, &ev), -1007);
	wsf_parser_release(&p);
}
END_TEST

static void close_frame(int code, const char *reason, size_t rlen)
{
	uint8_t pl[200];

	pl[0] = (uint8_t)(code >> 8);
	pl[1] = (uint8_t)code;
	memcpy(pl + 2, reason, rlen);
	frame(FIN | WSF_OP_CLOSE, pl, 2 + rlen);
}

/* 7: close handling. */
START_TEST(t7_close)
{
	static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
				   4000, 4999};
	static const int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
				  65535};
	char want[32];
	size_t i;

	reset();
	close_frame(1000, "", 0); /* 7.1.1 */
	expect("C1000");
	reset();
	close_frame(1000, "", 0); /* 7.1.2, 7.1.3, 7.1.4: nothing after a close */
	close_frame(1000, "", 0);
	frame(FIN | WSF_OP_PING, NULL, 0);
	text("late");
	expect("C1000");
	reset();
	frame(WSF_OP_TEXT, "frag", 4); /* 7.1.5 close inside a fragmented message */
	close_frame(1000, "", 0);
	expect("C1000");
	reset();
	frame(FIN | WSF_OP_CLOSE, NULL, 0); /* 7.3.1 */
	expect("C1005");
	reset();
	frame(FIN | WSF_OP_CLOSE, "\x03", 1); /* 7.3.2 */
	expect("E1002");
	reset();
	close_frame(1000, "Hello World!", 12); /* 7.3.4 */
	expect("C1000");
	memset(big, 'r', 123);
	reset();
	close_frame(1000, (const char *)big, 123); /* 7.3.5 */
	expect("C1000");
	reset();
	close_frame(1000, (const char *)big, 124); /* 7.3.6 */
	expect("E1002");
	reset();
	close_frame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 14); /* 7.5.1 */
	expect("E1007");
	for (i = 0; i < sizeof good / sizeof good[0]; i++) { /* 7.7.x */
		reset();
		close_frame(good[i], "", 0);
		snprintf(want, sizeof want, "C%d", good[i]);
		expect(want);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) { /* 7.9.x, 7.13.x */
		reset();
		close_frame(bad[i], "", 0);
		expect("E1002");
	}
}
END_TEST

START_TEST(t7_close_reason)
{
	struct wsf_pool pool;
	struct wsf_parser p;
	struct wsf_event ev;
	size_t used;

	reset();
	close_frame(4000, "bye", 3);
	wsf_pool_init(&pool, 0);
	wsf_parser_init(&p, &pool);
	ck_assert_int_eq(wsf_parse(&p, wire, wire_len, &used, &ev), 1);
	ck_assert_int_eq(ev.type, WSF_EV_CLOSE);
	ck_assert_int_eq(ev.code, 4000);
	ck_assert_uint_eq(ev.reason_len, 3);
	ck_assert(memcmp(ev.reason, "bye", 3) == 0);
	wsf_parser_release(&p);
	ck_assert_uint_eq(pool.in_use, 0);
}
END_TEST

/* 9: limits, as far as WSF_MSG_MAX allows, and lengths Autobahn does not send. */
START_TEST(t9_limits)
{
	uint8_t f[14] = {FIN | WSF_OP_BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};

	memset(big, 'a', sizeof big);
	reset();
	frame(FIN | WSF_OP_TEXT, big, WSF_MSG_MAX + 1);
	expect("E1009");
	reset();
	frame(FIN | WSF_OP_BINARY, big, 4096);
	frame(FIN | WSF_OP_BINARY, big, 4096);
	expect("B4096 B4096");
	reset();
	raw(f, sizeof f); /* 64-bit length with the top bit set */
	expect("E1002");
	f[2] = 0;
	f[3] = 1;
	reset();
	raw(f, sizeof f); /* a huge length is refused from the header alone */
	expect("E1009");
	reset();
	for (int i = 0; i < 15; i++)
		frame(FIN | WSF_OP_TEXT, big, 4096);
	run(1000);
	ck_assert_uint_eq(strlen(got), 15 * 6 - 1);
}
END_TEST

START_TEST(t_writer)
{
	uint8_t h[10];
	uint8_t out[300];
	uint8_t pl[WSF_CTRL_MAX];

	ck_assert_uint_eq(wsf_write_header(h, 1, WSF_OP_TEXT, 0), 2);
	ck_assert_int_eq(h[0], 0x81);
	ck_assert_int_eq(h[1], 0);
	ck_assert_uint_eq(wsf_write_header(h, 1, WSF_OP_TEXT, 125), 2);
	ck_assert_int_eq(h[1], 125);
	ck_assert_uint_eq(wsf_write_header(h, 1, WSF_OP_TEXT, 126), 4);
	ck_assert_int_eq(h[1], 126);
	ck_assert_int_eq(h[2], 0);
	ck_assert_int_eq(h[3], 126);
	ck_assert_uint_eq(wsf_write_header(h, 1, WSF_OP_BINARY, 65535), 4);
	ck_assert_uint_eq(wsf_write_header(h, 0, WSF_OP_BINARY, 65536), 10);
	ck_assert_int_eq(h[0], 0x02);
	ck_assert_int_eq(h[1], 127);
	ck_assert_int_eq(h[7], 1);
	ck_assert_int_eq(wsf_write_frame(out, sizeof out, 1, WSF_OP_PONG, NULL, "abc", 3), 5);
	ck_assert(memcmp(out, "\x8a\x03" "abc", 5) == 0);
	ck_assert_int_eq(wsf_write_frame(out, 4, 1, WSF_OP_PONG, NULL, "abc", 3), -1);
	ck_assert_uint_eq(wsf_close_payload(pl, 4401, "token"), 7);
	ck_assert(memcmp(pl, "\x11\x31token", 7) == 0);
	memset(big, 'x', 200);
	big[200] = 0;
	ck_assert_uint_eq(wsf_close_payload(pl, 1000, (const char *)big), WSF_CTRL_MAX);
}
END_TEST

START_TEST(t_pool_reuse)
{
	struct wsf_pool pool;
	struct wsf_parser p[3];
	struct wsf_event ev;
	size_t used;
	int i;

	reset();
	frame(FIN | WSF_OP_PING, "abc", 3);
	wsf_pool_init(&pool, 2);
	for (i = 0; i < 3; i++) {
		wsf_parser_init(&p[i], &pool);
		ck_assert_int_eq(wsf_parse(&p[i], wire, wire_len, &used, &ev), 1);
	}
	ck_assert_uint_eq(pool.in_use, 3);
	for (i = 0; i < 3; i++)
		wsf_parser_release(&p[i]);
	ck_assert_uint_eq(pool.in_use, 0);
	ck_assert_uint_eq(pool.nfree, 2);
	wsf_pool_clear(&pool);
	ck_assert_uint_eq(pool.nfree, 0);
}
END_TEST

/* The client's reader: whole frames from a buffer, server or client made. */
START_TEST(t_frame_read)
{
	static const uint8_t key[4] = {1, 2, 3, 4};
	uint8_t buf[70000], large[66000];
	struct wsf_frame f;
	long n, k;

	/* a server frame (no mask), every split short of the whole is "need more" */
	n = wsf_write_frame(buf, sizeof buf, 1, WSF_OP_TEXT, NULL, "hello", 5);
	for (k = 0; k < n; k++)
		ck_assert_int_eq(wsf_frame_read(buf, (size_t)k, 4096, &f), 0);
	ck_assert_int_eq(wsf_frame_read(buf, sizeof buf, 4096, &f), n);
	ck_assert_int_eq(f.fin, 1);
	ck_assert_int_eq(f.opcode, WSF_OP_TEXT);
	ck_assert_int_eq(f.masked, 0);
	ck_assert_uint_eq(f.len, 5);
	ck_assert(memcmp(f.payload, "hello", 5) == 0);
	/* a client frame: unmasked in place */
	n = wsf_write_frame(buf, sizeof buf, 0, WSF_OP_BINARY, key, "abcdef", 6);
	ck_assert_int_eq(wsf_frame_read(buf, (size_t)n, 4096, &f), n);
	ck_assert_int_eq(f.masked, 1);
	ck_assert_int_eq(f.fin, 0);
	ck_assert(memcmp(f.payload, "abcdef", 6) == 0);
	/* 16- and 64-bit lengths */
	memset(large, 'x', sizeof large);
	n = wsf_write_frame(buf, sizeof buf, 1, WSF_OP_TEXT, NULL, large, 300);
	ck_assert_int_eq(n, 4 + 300);
	ck_assert_int_eq(wsf_frame_read(buf, (size_t)n, 4096, &f), n);
	ck_assert_uint_eq(f.len, 300);
	n = wsf_write_frame(buf, sizeof buf, 1, WSF_OP_TEXT, NULL, large, sizeof large);
	ck_assert_int_eq(n, 10 + (long)sizeof large);
	ck_assert_int_eq(wsf_frame_read(buf, (size_t)n - 1, sizeof large, &f), 0);
	ck_assert_int_eq(wsf_frame_read(buf, (size_t)n, sizeof large, &f), n);
	ck_assert_int_eq(wsf_frame_read(buf, (size_t)n, sizeof large - 1, &f), -WSF_CLOSE_TOO_BIG);
	/* RSV bits, a 64-bit length with the top bit set */
	buf[0] = 0x80 | 0x40 | WSF_OP_TEXT;
	buf[1] = 0;
	ck_assert_int_eq(wsf_frame_read(buf, 2, 4096, &f), -WSF_CLOSE_PROTOCOL);
	buf[0] = 0x80 | WSF_OP_TEXT;
	buf[1] = 127;
	buf[2] = 0x80;
	ck_assert_int_eq(wsf_frame_read(buf, 10, 4096, &f),
			 -WSF_CLOSE_PROTOCOL);
	/* close codes */
	ck_assert_int_eq(wsf_close_code((const uint8_t *)"\x03\xe9", 2), 1001);
	ck_assert_int_eq(wsf_close_code(NULL, 0), WSF_CLOSE_NO_STATUS);
}
END_TEST

/* keep_text: the bytes themselves, a fragmented message around a ping, the
 * buffer grown only as bytes come and freed once the message is reported. */
START_TEST(t_keep_text)
{
	static const char msg[] = "{\"type\":\"refresh\",\"token\":\"a.b.c\"}";
	struct wsf_pool pool;
	struct wsf_parser p;
	struct wsf_event ev;
	size_t used, off;

	wsf_pool_init(&pool, 0);
	wsf_parser_init(&p, &pool);
	wsf_parser_keep_text(&p);
	reset();
	frame(WSF_OP_TEXT, msg, 10);
	frame(FIN | WSF_OP_PING, "hi", 2);
	frame(WSF_OP_CONT, msg + 10, 0);
	frame(FIN | WSF_OP_CONT, msg + 10, sizeof msg - 1 - 10);
	frame(FIN | WSF_OP_BINARY, "bin", 3);
	ck_assert_int_eq(wsf_parse(&p, wire, wire_len, &used, &ev), 1);
	ck_assert_int_eq(ev.type, WSF_EV_PING);
	off = used;
	wsf_parser_trim(&p);
	ck_assert_ptr_nonnull(p.text); /* the message's first fragment stays */
	ck_assert_int_eq(wsf_parse(&p, wire + off, wire_len - off, &used, &ev), 1);
	off += used;
	ck_assert_int_eq(ev.type, WSF_EV_MESSAGE);
	ck_assert_int_eq(ev.opcode, WSF_OP_TEXT);
	ck_assert_uint_eq(ev.len, sizeof msg - 1);
	ck_assert(memcmp(ev.data, msg, ev.len) == 0);
	ck_assert_int_eq(wsf_parse(&p, wire + off, wire_len - off, &used, &ev), 1);
	ck_assert_int_eq(ev.opcode, WSF_OP_BINARY);
	ck_assert_ptr_null(ev.data);
	ck_assert_ptr_null(p.text); /* freed when the next call began */
	ck_assert_uint_eq(off + used, wire_len);

	/* A frame announcing the limit holds only what arrived of it. */
	memset(big, 'x', WSF_MSG_MAX);
	reset();
	frame(FIN | WSF_OP_TEXT, big, WSF_MSG_MAX);
	ck_assert_int_eq(wsf_parse(&p, wire, 8 + 100, &used, &ev), 0);
	ck_assert_uint_le(p.text_cap, 256);
	wsf_parser_trim(&p); /* mid-frame: nothing to give back */
	ck_assert_int_eq(wsf_parse(&p, wire + 108, wire_len - 108, &used, &ev), 1);
	ck_assert_uint_eq(ev.len, WSF_MSG_MAX);
	ck_assert(memcmp(ev.data, big, WSF_MSG_MAX) == 0);
	ck_assert_uint_eq(p.text_cap, WSF_MSG_MAX);
	wsf_parser_trim(&p);
	ck_assert_ptr_null(p.text);

	/* An error or a release frees a message in flight. */
	reset();
	frame(WSF_OP_TEXT, "abc", 3);
	ck_assert_int_eq(wsf_parse(&p, wire, wire_len, &used, &ev), 0);
	ck_assert_ptr_nonnull(p.text);
	wsf_parser_release(&p);
	ck_assert_ptr_null(p.text);
	wsf_parser_init(&p, &pool);
	wsf_parser_keep_text(&p);
	reset();
	frame(WSF_OP_TEXT, "abc", 3);
	frame(FIN | WSF_OP_TEXT, "d", 1); /* a message inside one: 1002 */
	ck_assert_int_eq(wsf_parse(&p, wire, wire_len, &used, &ev), -WSF_CLOSE_PROTOCOL);
	ck_assert_ptr_null(p.text);
	wsf_parser_release(&p);
	ck_assert_uint_eq(pool.in_use, 0);
	wsf_pool_clear(&pool);
}
END_TEST

Suite *ws_frame_suite(void)
{
	Suite *s = suite_create("ws_frame");
	TCase *tc = tcase_create("autobahn");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t1_framing);
	tcase_add_test(tc, t1_unmasked);
	tcase_add_test(tc, t2_ping_pong);
	tcase_add_test(tc, t2_ping_payload);
	tcase_add_test(tc, t3_reserved_bits);
	tcase_add_test(tc, t4_opcodes);
	tcase_add_test(tc, t5_fragmentation);
	tcase_add_test(tc, t6_utf8);
	tcase_add_test(tc, t6_fail_fast);
	tcase_add_test(tc, t7_close);
	tcase_add_test(tc, t7_close_reason);
	tcase_add_test(tc, t9_limits);
	tcase_add_test(tc, t_writer);
	tcase_add_test(tc, t_pool_reuse);
	tcase_add_test(tc, t_frame_read);
	tcase_add_test(tc, t_keep_text);
	suite_add_tcase(s, tc);
	return s;
}
