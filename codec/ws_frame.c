#include "config.h"
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

enum { ST_HEADER = 0, ST_PAYLOAD = 1 };

struct chunk {
	struct chunk *next;
};

void wsf_pool_init(struct wsf_pool *pool, size_t keep)
{
	pool->free = NULL;
	pool->nfree = 0;
	pool->keep = keep;
	pool->in_use = 0;
}

void wsf_pool_clear(struct wsf_pool *pool)
{
	struct chunk *c = pool->free;

	while (c != NULL) {
		struct chunk *next = c->next;

		free(c);
		c = next;
	}
	pool->free = NULL;
	pool->nfree = 0;
}

static uint8_t *pool_get(struct wsf_pool *pool)
{
	struct chunk *c = pool->free;

	if (c != NULL) {
		pool->free = c->next;
		pool->nfree--;
	} else {
		c = malloc(WSF_CTRL_MAX < sizeof *c ? sizeof *c : WSF_CTRL_MAX);
		if (c == NULL)
			return NULL;
	}
	pool->in_use++;
	return (uint8_t *)c;
}

static void pool_put(struct wsf_pool *pool, uint8_t *p)
{
	struct chunk *c = (struct chunk *)(void *)p;

	pool->in_use--;
	if (pool->nfree >= pool->keep) {
		free(c);
		return;
	}
	c->next = pool->free;
	pool->free = c;
	pool->nfree++;
}

void wsf_parser_init(struct wsf_parser *p, struct wsf_pool *pool)
{
	memset(p, 0, sizeof *p);
	p->pool = pool;
}

void wsf_parser_keep_text(struct wsf_parser *p)
{
	p->keep_text = 1;
}

static void text_free(struct wsf_parser *p)
{
	free(p->text);
	p->text = NULL;
	p->text_cap = 0;
}

void wsf_parser_release(struct wsf_parser *p)
{
	if (p->ctrl != NULL) {
		pool_put(p->pool, p->ctrl);
		p->ctrl = NULL;
	}
	text_free(p);
}

/* Between frames: the control chunk goes, and a reported message's text
 * (a fragmented message's bytes gathered so far stay). */
static void between_frames(struct wsf_parser *p)
{
	if (p->ctrl != NULL) {
		pool_put(p->pool, p->ctrl);
		p->ctrl = NULL;
	}
	if (p->msg_op == 0)
		text_free(p);
}

void wsf_parser_trim(struct wsf_parser *p)
{
	if (p->state == ST_HEADER && p->hlen == 0)
		between_frames(p);
}

/* Room for need bytes of text: doubled from 256, at most WSF_MSG_MAX. */
static int text_reserve(struct wsf_parser *p, size_t need)
{
	size_t cap = p->text_cap;
	uint8_t *t;

	if (need <= cap)
		return 0;
	cap = cap < 256 ? 256 : cap * 2;
	if (cap < need)
		cap = need;
	if (cap > WSF_MSG_MAX)
		cap = WSF_MSG_MAX;
	t = realloc(p->text, cap);
	if (t == NULL)
		return WSF_CLOSE_INTERNAL;
	p->text = t;
	p->text_cap = (uint16_t)cap;
	return 0;
}

int wsf_close_code_valid(int code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

static int fail(struct wsf_parser *p, int code)
{
	p->error = (uint16_t)code;
	wsf_parser_release(p);
	return -code;
}

static int is_control(int op)
{
	return (op & 0x8) != 0;
}

/* Checks that need only the first two header bytes. */
static int check_first(struct wsf_parser *p)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
	int op = b0 & 0x0f;

	if ((b0 & 0x70) != 0)
		return WSF_CLOSE_PROTOCOL;
	if ((b1 & 0x80) == 0)
		return WSF_CLOSE_PROTOCOL;
	switch (op) {
	case WSF_OP_CONT:
		if (p->msg_op == 0)
			return WSF_CLOSE_PROTOCOL;
		break;
	case WSF_OP_TEXT:
	case WSF_OP_BINARY:
		if (p->msg_op != 0)
			return WSF_CLOSE_PROTOCOL;
		break;
	case WSF_OP_CLOSE:
	case WSF_OP_PING:
	case WSF_OP_PONG:
		if ((b0 & 0x80) == 0 || (b1 & 0x7f) > WSF_CTRL_MAX)
			return WSF_CLOSE_PROTOCOL;
		break;
	default:
		return WSF_CLOSE_PROTOCOL;
	}
	return 0;
}

static size_t header_size(const uint8_t *hdr)
{
	uint8_t l7 = hdr[1] & 0x7f;

	return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
}

/*
 * The payload length of a header whose bytes up to the mask key are in hdr
 * (2, 4 or 10 bytes, as hdr[1] says).  Sets *k to where the mask key (or the
 * payload) starts.  Returns 0, or WSF_CLOSE_PROTOCOL for a 64-bit length
 * with the top bit set.
 */
static int header_len(const uint8_t *hdr, size_t *k, uint64_t *len)
{
	uint8_t l7 = hdr[1] & 0x7f;

	*k = 2;
	*len = l7;
	if (l7 == 126) {
		*len = (uint64_t)hdr[2] << 8 | hdr[3];
		*k = 4;
	} else if (l7 == 127) {
		*len = 0;
		for (*k = 2; *k < 10; (*k)++)
			*len = *len << 8 | hdr[*k];
		if (*len >> 63)
			return WSF_CLOSE_PROTOCOL;
	}
	return 0;
}

/* The header is complete: read the length and the key, start the payload. */
static int start_payload(struct wsf_parser *p)
{
	size_t k;
	uint64_t len;

	if (header_len(p->hdr, &k, &len) != 0)
		return WSF_CLOSE_PROTOCOL;
	memcpy(p->mask, p->hdr + k, 4);
	p->fin = p->hdr[0] >> 7;
	p->opcode = p->hdr[0] & 0x0f;
	p->pos = 0;
	if (!is_control(p->opcode)) {
		if (p->opcode != WSF_OP_CONT) {
			p->msg_op = p->opcode;
			p->msg_len = 0;
			p->utf8 = 0;
		}
		if (len > WSF_MSG_MAX - p->msg_len)
			return WSF_CLOSE_TOO_BIG;
	}
	p->len = (uint32_t)len; /* at most WSF_MSG_MAX, or 125 (check_first) */
	if (is_control(p->opcode) && len > 0) {
		p->ctrl = pool_get(p->pool);
		if (p->ctrl == NULL)
			return WSF_CLOSE_INTERNAL;
	}
	p->state = ST_PAYLOAD;
	return 0;
}

static void unmask(struct wsf_parser *p, uint8_t *dst, const uint8_t *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = src[i] ^ p->mask[(p->pos + i) & 3];
}

/* The frame's payload is all in: an event, or 0 to go on with the next frame. */
static int finish_frame(struct wsf_parser *p, struct wsf_event *ev)
{
	p->state = ST_HEADER;
	p->hlen = 0;
	memset(ev, 0, sizeof *ev);
	if (!is_control(p->opcode)) {
		p->msg_len += (uint32_t)p->len;
		if (!p->fin)
			return 0;
		if (p->msg_op == WSF_OP_TEXT && p->utf8 != 0)
			return WSF_CLOSE_BAD_DATA;
		ev->type = WSF_EV_MESSAGE;
		ev->opcode = p->msg_op;
		ev->len = p->msg_len;
		if (p->msg_op == WSF_OP_TEXT)
			ev->data = p->text; /* NULL unless keep_text and bytes came */
		p->msg_op = 0;
		p->msg_len = 0;
		p->utf8 = 0;
		return 1;
	}
	ev->len = (size_t)p->len;
	ev->data = p->ctrl;
	if (p->opcode == WSF_OP_PING) {
		ev->type = WSF_EV_PING;
		return 1;
	}
	if (p->opcode == WSF_OP_PONG) {
		ev->type = WSF_EV_PONG;
		return 1;
	}
	ev->type = WSF_EV_CLOSE;
	ev->code = WSF_CLOSE_NO_STATUS;
	if (p->len == 1)
		return WSF_CLOSE_PROTOCOL;
	if (p->len >= 2) {
		ev->code = p->ctrl[0] << 8 | p->ctrl[1];
		if (!wsf_close_code_valid(ev->code))
			return WSF_CLOSE_PROTOCOL;
		ev->reason = (const char *)p->ctrl + 2;
		ev->reason_len = (size_t)p->len - 2;
		if (text_utf8_feed(0, p->ctrl + 2, ev->reason_len) != 0)
			return WSF_CLOSE_BAD_DATA;
	}
	p->closed = 1;
	return 1;
}

int wsf_parse(struct wsf_parser *p, const uint8_t *buf, size_t len, size_t *used,
	      struct wsf_event *ev)
{
	size_t i = 0;
	int rc;

	*used = 0;
	ev->type = WSF_EV_NONE;
	if (p->error != 0)
		return -(int)p->error;
	if (p->state == ST_HEADER)
		between_frames(p);
	if (p->closed)
		return 0;
	while (i < len) {
		if (p->state == ST_HEADER) {
			size_t want = p->hlen < 2 ? 2 : header_size(p->hdr);

			while (p->hlen < want && i < len)
				p->hdr[p->hlen++] = buf[i++];
			if (p->hlen < want)
				break;
			if (want == 2) {
				rc = check_first(p);
				if (rc != 0)
					goto failed;
				continue;
			}
			rc = start_payload(p);
			if (rc != 0)
				goto failed;
		}
		if (p->pos < p->len) {
			size_t n = len - i;

			if ((uint64_t)n > p->len - p->pos)
				n = (size_t)(p->len - p->pos);
			if (is_control(p->opcode)) {
				unmask(p, p->ctrl + p->pos, buf + i, n);
			} else if (p->msg_op == WSF_OP_TEXT && p->keep_text) {
				/* msg_len: bytes of the earlier fragments */
				size_t at = p->msg_len + (size_t)p->pos;

				rc = text_reserve(p, at + n);
				if (rc != 0)
					goto failed;
				unmask(p, p->text + at, buf + i, n);
				p->utf8 = text_utf8_feed(p->utf8, p->text + at, n);
				if (p->utf8 == TEXT_UTF8_BAD) {
					rc = WSF_CLOSE_BAD_DATA;
					goto failed;
				}
			} else if (p->msg_op == WSF_OP_TEXT) {
				uint8_t tmp[256];
				size_t done = 0;

				while (done < n) {
					size_t m = n - done < sizeof tmp ? n - done : sizeof tmp;

					unmask(p, tmp, buf + i + done, m);
					p->pos += (uint32_t)m;
					done += m;
					p->utf8 = text_utf8_feed(p->utf8, tmp, m);
					if (p->utf8 == TEXT_UTF8_BAD) {
						rc = WSF_CLOSE_BAD_DATA;
						i += done;
						goto failed;
					}
				}
				p->pos -= (uint32_t)n;
			}
			p->pos += (uint32_t)n;
			i += n;
			if (p->pos < p->len)
				break;
		}
		rc = finish_frame(p, ev);
		if (rc < 0 || rc > 1)
			goto failed;
		if (rc == 1) {
			*used = i;
			return 1;
		}
	}
	*used = i;
	return 0;
failed:
	*used = i;
	ev->type = WSF_EV_NONE;
	return fail(p, rc);
}

size_t wsf_write_header(uint8_t out[10], int fin, int opcode, uint64_t len)
{
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (len <= 125) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int k = 0; k < 8; k++)
		out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
	return 10;
}

long wsf_write_frame(uint8_t *out, size_t outlen, int fin, int opcode, const uint8_t *mask,
		     const void *payload, size_t len)
{
	uint8_t hdr[10];
	size_t h = wsf_write_header(hdr, fin, opcode, len);
	size_t total = h + (mask != NULL ? 4 : 0) + len;
	const uint8_t *src = payload;
	size_t i;

	if (total > outlen)
		return -1;
	memcpy(out, hdr, h);
	if (mask != NULL) {
		out[1] |= 0x80;
		memcpy(out + h, mask, 4);
		h += 4;
		for (i = 0; i < len; i++)
			out[h + i] = src[i] ^ mask[i & 3];
	} else if (len > 0) {
		memcpy(out + h, src, len);
	}
	return (long)total;
}

size_t wsf_close_payload(uint8_t out[WSF_CTRL_MAX], int code, const char *reason)
{
	size_t n = reason != NULL ? strlen(reason) : 0;

	if (n > WSF_CTRL_MAX - 2)
		n = WSF_CTRL_MAX - 2;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (n > 0) /* a close payload has a length, not a terminator */
		memcpy(out + 2, reason, n); // NOLINT(bugprone-not-null-terminated-result)
	return n + 2;
}

long wsf_frame_read(uint8_t *buf, size_t len, size_t max, struct wsf_frame *f)
{
	size_t need, k;
	uint64_t plen;

	if (len < 2)
		return 0;
	if ((buf[0] & 0x70) != 0)
		return -WSF_CLOSE_PROTOCOL;
	f->masked = (buf[1] & 0x80) != 0;
	need = 2 + ((buf[1] & 0x7f) == 126 ? 2 : (buf[1] & 0x7f) == 127 ? 8 : 0);
	if (len < need)
		return 0;
	if (header_len(buf, &k, &plen) != 0)
		return -WSF_CLOSE_PROTOCOL;
	if (plen > max)
		return -WSF_CLOSE_TOO_BIG;
	need = k + (f->masked ? 4 : 0);
	if (len < need || len - need < plen)
		return 0;
	f->fin = buf[0] >> 7;
	f->opcode = buf[0] & 0x0f;
	f->payload = buf + need;
	f->len = (size_t)plen;
	if (f->masked)
		for (size_t i = 0; i < f->len; i++)
			f->payload[i] ^= buf[k + (i & 3)];
	return (long)(need + f->len);
}

int wsf_close_code(const uint8_t *payload, size_t len)
{
	return len >= 2 ? payload[0] << 8 | payload[1] : WSF_CLOSE_NO_STATUS;
}
