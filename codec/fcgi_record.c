#include "config.h"

#include "fcgi_record.h"

#include <string.h>

void fcgi_header_put(unsigned char out[FCGI_HEADER_LEN], unsigned type, unsigned reqid,
		     size_t clen, unsigned plen)
{
	out[0] = 1;
	out[1] = (unsigned char)type;
	out[2] = (unsigned char)(reqid >> 8);
	out[3] = (unsigned char)reqid;
	out[4] = (unsigned char)(clen >> 8);
	out[5] = (unsigned char)clen;
	out[6] = (unsigned char)plen;
	out[7] = 0;
}

int fcgi_header_get(const unsigned char in[FCGI_HEADER_LEN], struct fcgi_header *h)
{
	if (in[0] != 1)
		return -1;
	h->type = in[1];
	h->reqid = (unsigned)in[2] << 8 | in[3];
	h->clen = (size_t)in[4] << 8 | in[5];
	h->plen = in[6];
	return 0;
}

int fcgi_request_complete(const unsigned char *buf, size_t len)
{
	struct fcgi_header h;
	size_t off = 0;

	while (len - off >= FCGI_HEADER_LEN) {
		if (fcgi_header_get(buf + off, &h) != 0 ||
		    (off == 0 && h.type != FCGI_T_BEGIN_REQUEST))
			return -1;
		off += FCGI_HEADER_LEN + h.clen + h.plen;
		if (off > len)
			return 0;
		if (h.type == FCGI_T_STDIN && h.clen == 0)
			return 1;
	}
	return 0;
}

size_t fcgi_stdout_size(size_t len)
{
	size_t records = (len + FCGI_CONTENT_MAX - 1) / FCGI_CONTENT_MAX;

	return len + records * FCGI_HEADER_LEN;
}

size_t fcgi_stdout_put(unsigned char *out, unsigned reqid, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t w = 0;

	while (len > 0) {
		size_t n = len > FCGI_CONTENT_MAX ? FCGI_CONTENT_MAX : len;

		fcgi_header_put(out + w, FCGI_T_STDOUT, reqid, n, 0);
		memcpy(out + w + FCGI_HEADER_LEN, p, n);
		w += FCGI_HEADER_LEN + n;
		p += n;
		len -= n;
	}
	return w;
}

size_t fcgi_end_put(unsigned char out[FCGI_END_LEN], unsigned reqid, unsigned app_status)
{
	unsigned char *body = out + 2 * FCGI_HEADER_LEN;

	fcgi_header_put(out, FCGI_T_STDOUT, reqid, 0, 0);
	fcgi_header_put(out + FCGI_HEADER_LEN, FCGI_T_END_REQUEST, reqid, 8, 0);
	body[0] = (unsigned char)(app_status >> 24);
	body[1] = (unsigned char)(app_status >> 16);
	body[2] = (unsigned char)(app_status >> 8);
	body[3] = (unsigned char)app_status;
	memset(body + 4, 0, 4); /* protocolStatus FCGI_REQUEST_COMPLETE, reserved */
	return FCGI_END_LEN;
}
