/*
 * proxy.h - the PROXY protocol header (HAProxy's "PROXY protocol", versions
 * 1 and 2), which an L4 proxy (nginx `stream` with `proxy_protocol on`,
 * HAProxy `send-proxy[-v2]`, a cloud load balancer) writes in front of the
 * client's bytes to say who the client is.
 *
 * A parser over a buffer, with no I/O: herald-ws feeds it the first bytes of
 * a connection on a listener configured for the header, the unit tests and
 * the fuzz target feed it byte strings.  A header is at most PROXY_MAX
 * bytes; one that claims more is refused, so a connection that sends an
 * endless header costs nothing.
 *
 * Who may send it is the caller's business: a listener that accepts the
 * header must be reachable only by the proxy (a client could claim any
 * address), and one that does not must refuse it (proxy_sniff).
 */
#ifndef HERALD_PROXY_H
#define HERALD_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_V1_MAX	  107  /* the spec's bound: v1 with two full IPv6 addresses */
#define PROXY_V2_FIXED	  16   /* signature, version/command, family, length */
#define PROXY_MAX	  1024 /* the longest header accepted (v2 with TLVs) */
#define PROXY_ADDR_STRLEN 48   /* "[ffff:...:ffff]:65535" and a NUL */

enum proxy_family {
	PROXY_AF_NONE = 0, /* no address: v1 UNKNOWN, v2 LOCAL, UNSPEC or UNIX */
	PROXY_AF_INET = 4,
	PROXY_AF_INET6 = 6,
};

/* An address as the header gives it, compact enough to keep per connection. */
struct proxy_addr {
	uint8_t family;	  /* enum proxy_family */
	uint8_t addr[16]; /* network order: 4 bytes for INET, 16 for INET6 */
	uint16_t port;	  /* host order */
};

struct proxy_hdr {
	int version;	       /* 1 or 2 */
	struct proxy_addr src; /* the client, as the proxy saw it */
	struct proxy_addr dst; /* the address the client connected to */
};

/*
 * Parse the header at the start of buf (len bytes received so far; the
 * bytes after the header belong to the client and are not looked at).
 * Returns the header's length (> 0) with *h filled; 0 when what arrived is
 * a valid beginning of a header and more is needed; HERR_INVAL when it is
 * not a PROXY header or is malformed (bad signature, version, command,
 * family, address or port; v2 DGRAM, v1 without CRLF where it must end);
 * HERR_TOOBIG when a v2 header claims more than PROXY_MAX bytes or a v1
 * line passes PROXY_V1_MAX without its CRLF.  A header that names no
 * address (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC or UNIX) is valid with both
 * families PROXY_AF_NONE: the caller uses the connection's own address.
 */
long proxy_parse(const uint8_t *buf, size_t len, struct proxy_hdr *h);

/*
 * Non-zero when buf (len bytes, len >= 1) starts like a PROXY header of
 * either version: for a listener that must refuse one, and to tell that
 * case apart in its log.
 */
int proxy_sniff(const uint8_t *buf, size_t len);

/*
 * a as text: "192.0.2.1:5678", "[2001:db8::1]:5678", the address alone
 * when the port is 0 (not known: X-Forwarded-For), or "-" for no address.
 * out gets at most outlen bytes, NUL-terminated.  Returns out.
 */
char *proxy_addr_str(const struct proxy_addr *a, char *out, size_t outlen);

/*
 * Fill a from a socket address (struct sockaddr_in or sockaddr_in6; an
 * IPv4-mapped IPv6 address becomes INET; anything else PROXY_AF_NONE), for
 * the connection's own peer when there is no header.  sa may be NULL.
 */
void proxy_addr_from_sockaddr(struct proxy_addr *a, const void *sa, size_t salen);

/* Non-zero when a is a loopback address (127.0.0.0/8, ::1). */
int proxy_addr_is_loopback(const struct proxy_addr *a);

/*
 * Parse an address without a port ("192.0.2.1", "2001:db8::1") of length
 * len into a (port 0), e.g. the last entry of X-Forwarded-For.  Returns 0 or
 * HERR_INVAL.
 */
int proxy_addr_parse(const char *s, size_t len, struct proxy_addr *a);

#endif
