/*
 * proxy.c - the PROXY protocol header, versions 1 (text) and 2 (binary),
 * after HAProxy's specification (doc/proxy-protocol.txt).  Every check is
 * made as soon as its bytes are there, so garbage is refused on its first
 * bytes and a partial header is never buffered past PROXY_MAX.
 */
#include "config.h"

#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address. */
static void unmap(struct proxy_addr *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a->family == PROXY_AF_INET6 && memcmp(a->addr, mapped, 12) == 0) {
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = PROXY_AF_INET;
	}
}

int proxy_addr_parse(const char *s, size_t len, struct proxy_addr *a)
{
	char tmp[INET6_ADDRSTRLEN];

	memset(a, 0, sizeof *a);
	if (len == 0 || len >= sizeof tmp)
		return HERR_INVAL;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (memchr(tmp, ':', len) == NULL) {
		if (inet_pton(AF_INET, tmp, a->addr) != 1)
			return HERR_INVAL;
		a->family = PROXY_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, tmp, a->addr) != 1)
		return HERR_INVAL;
	a->family = PROXY_AF_INET6;
	unmap(a);
	return 0;
}

/* A port of v1: 0..65535 in decimal, no sign, no leading zero. */
static int v1_port(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return HERR_INVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return HERR_INVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return HERR_INVAL;
	*out = (uint16_t)v;
	return 0;
}

/*
 * One complete v1 line (without its CRLF): "PROXY TCP4 SRC DST SPORT DPORT"
 * with single spaces, or "PROXY UNKNOWN" and anything.
 */
static int v1_line(const char *line, size_t len, struct proxy_hdr *h)
{
	const char *tok[6];
	size_t tlen[6];
	size_t i = V1_SIG_LEN, n = 0;
	int fam;

	if (len >= V1_SIG_LEN + 7 && memcmp(line + V1_SIG_LEN, "UNKNOWN", 7) == 0 &&
	    (len == V1_SIG_LEN + 7 || line[V1_SIG_LEN + 7] == ' '))
		return 0;
	while (n < 6) {
		size_t start = i;

		while (i < len && line[i] != ' ')
			i++;
		if (i == start)
			return HERR_INVAL; /* an empty field: two spaces, or a trailing one */
		tok[n] = line + start;
		tlen[n++] = i - start;
		if (i == len)
			break;
		i++; /* the space */
	}
	if (n != 5 || i != len)
		return HERR_INVAL;
	if (tlen[0] == 4 && memcmp(tok[0], "TCP4", 4) == 0)
		fam = PROXY_AF_INET;
	else if (tlen[0] == 4 && memcmp(tok[0], "TCP6", 4) == 0)
		fam = PROXY_AF_INET6;
	else
		return HERR_INVAL;
	/* TCP4 names dotted quads, TCP6 IPv6 text (which has a colon). */
	if ((memchr(tok[1], ':', tlen[1]) != NULL) != (fam == PROXY_AF_INET6) ||
	    (memchr(tok[2], ':', tlen[2]) != NULL) != (fam == PROXY_AF_INET6))
		return HERR_INVAL;
	if (proxy_addr_parse(tok[1], tlen[1], &h->src) != 0 ||
	    proxy_addr_parse(tok[2], tlen[2], &h->dst) != 0 ||
	    v1_port(tok[3], tlen[3], &h->src.port) != 0 ||
	    v1_port(tok[4], tlen[4], &h->dst.port) != 0)
		return HERR_INVAL;
	return 0;
}

static long parse_v1(const uint8_t *buf, size_t len, struct proxy_hdr *h)
{
	size_t n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX, i;

	if (memcmp(buf, v1_sig, n < V1_SIG_LEN ? n : V1_SIG_LEN) != 0)
		return HERR_INVAL;
	for (i = 0; i < n; i++) {
		if (buf[i] == '\r') {
			if (i + 1 == len)
				return 0; /* the LF is on its way */
			if (buf[i + 1] != '\n' || i < V1_SIG_LEN)
				return HERR_INVAL;
			if (i + 2 > PROXY_V1_MAX)
				return HERR_TOOBIG;
			h->version = 1;
			if (v1_line((const char *)buf, i, h) != 0)
				return HERR_INVAL;
			return (long)(i + 2);
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return HERR_INVAL; /* text only, and a LF needs its CR */
	}
	return len >= PROXY_V1_MAX ? HERR_TOOBIG : 0;
}

static long parse_v2(const uint8_t *buf, size_t len, struct proxy_hdr *h)
{
	size_t total, need = 0;
	int cmd, fam, proto;

	if (memcmp(buf, v2_sig, len < sizeof v2_sig ? len : sizeof v2_sig) != 0)
		return HERR_INVAL;
	if (len <= 12)
		return 0;
	cmd = buf[12] & 0x0f;
	if ((buf[12] >> 4) != 2 || cmd > 1)
		return HERR_INVAL;
	if (len <= 13)
		return 0;
	fam = buf[13] >> 4;
	proto = buf[13] & 0x0f;
	if (cmd == 1) {
		/* PROXY: a stream over INET, INET6 or UNIX, or UNSPEC. */
		static const size_t addr_len[4] = {0, 12, 36, 216};

		if (fam > 3 || proto != (fam == 0 ? 0 : 1))
			return HERR_INVAL;
		need = addr_len[fam];
	}
	/* LOCAL (a health check from the proxy itself): whatever follows is ignored. */
	if (len < PROXY_V2_FIXED)
		return 0;
	total = PROXY_V2_FIXED + ((size_t)buf[14] << 8 | buf[15]);
	if (total > PROXY_MAX)
		return HERR_TOOBIG;
	if (total - PROXY_V2_FIXED < need)
		return HERR_INVAL;
	if (len < total)
		return 0;
	h->version = 2;
	if (cmd == 1 && fam == 1) {
		const uint8_t *p = buf + PROXY_V2_FIXED;

		h->src.family = h->dst.family = PROXY_AF_INET;
		memcpy(h->src.addr, p, 4);
		memcpy(h->dst.addr, p + 4, 4);
		h->src.port = (uint16_t)(p[8] << 8 | p[9]);
		h->dst.port = (uint16_t)(p[10] << 8 | p[11]);
	} else if (cmd == 1 && fam == 2) {
		const uint8_t *p = buf + PROXY_V2_FIXED;

		h->src.family = h->dst.family = PROXY_AF_INET6;
		memcpy(h->src.addr, p, 16);
		memcpy(h->dst.addr, p + 16, 16);
		h->src.port = (uint16_t)(p[32] << 8 | p[33]);
		h->dst.port = (uint16_t)(p[34] << 8 | p[35]);
		unmap(&h->src);
		unmap(&h->dst);
	}
	return (long)total;
}

long proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *h)
{
	memset(h, 0, sizeof *h);
	if (len == 0)
		return 0;
	if (buf[0] == 'P')
		return parse_v1(buf, len, h);
	if (buf[0] == 0x0D)
		return parse_v2(buf, len, h);
	return HERR_INVAL;
}

int proxy_sniff(const uint8_t *buf, size_t len)
{
	if (len == 0)
		return 0;
	if (buf[0] == 'P')
		return memcmp(buf, v1_sig, len < V1_SIG_LEN ? len : V1_SIG_LEN) == 0;
	if (buf[0] == 0x0D)
		return memcmp(buf, v2_sig, len < sizeof v2_sig ? len : sizeof v2_sig) == 0;
	return 0;
}

char *proxy_addr_str(const struct proxy_addr *a, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (outlen == 0)
		return out;
	if (a->family == PROXY_AF_INET && inet_ntop(AF_INET, a->addr, ip, sizeof ip) != NULL)
		snprintf(out, outlen, a->port != 0 ? "%s:%u" : "%s", ip, (unsigned)a->port);
	else if (a->family == PROXY_AF_INET6 && inet_ntop(AF_INET6, a->addr, ip, sizeof ip) != NULL)
		snprintf(out, outlen, a->port != 0 ? "[%s]:%u" : "%s", ip, (unsigned)a->port);
	else
		snprintf(out, outlen, "-");
	return out;
}

void proxy_addr_from_sockaddr(struct proxy_addr *a, const void *sa, size_t salen)
{
	sa_family_t fam;

	memset(a, 0, sizeof *a);
	if (sa == NULL || salen < sizeof fam)
		return;
	memcpy(&fam, sa, sizeof fam);
	if (fam == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in in;

		memcpy(&in, sa, sizeof in);
		a->family = PROXY_AF_INET;
		memcpy(a->addr, &in.sin_addr, 4);
		a->port = ntohs(in.sin_port);
	} else if (fam == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6;

		memcpy(&in6, sa, sizeof in6);
		a->family = PROXY_AF_INET6;
		memcpy(a->addr, &in6.sin6_addr, 16);
		a->port = ntohs(in6.sin6_port);
		unmap(a);
	}
}

int proxy_addr_is_loopback(const struct proxy_addr *a)
{
	static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

	if (a->family == PROXY_AF_INET)
		return a->addr[0] == 127;
	if (a->family == PROXY_AF_INET6)
		return memcmp(a->addr, lo6, 16) == 0;
	return 0;
}
