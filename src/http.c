#include "config.h"

#include "http.h"

#include <limits.h>
#include <string.h>

#include "err.h"
#include "text.h"

/*
 * Non-zero when the encoded name src (len bytes) decodes to exactly name.
 * A name that does not decode cleanly names nothing we look for.
 */
static int pct_name_equal(const char *src, size_t len, const char *name)
{
	size_t i = 0, n = 0;

	while (i < len) {
		int c = text_pct_next(src, len, &i, 1);

		if (c < 0 || name[n] == '\0' || (unsigned char)name[n] != c)
			return 0;
		n++;
	}
	return name[n] == '\0';
}

int http_query_get(const char *query, const char *name, char *out, size_t outlen)
{
	const char *p = query;

	if (query == NULL || name == NULL)
		return HERR_NOTFOUND;
	while (*p != '\0') {
		size_t plen = strcspn(p, "&");
		const char *eq = memchr(p, '=', plen);
		size_t nlen = eq != NULL ? (size_t)(eq - p) : plen;

		if (pct_name_equal(p, nlen, name)) {
			if (eq == NULL)
				return text_pct_decode("", 0, out, outlen, 1);
			return text_pct_decode(eq + 1, plen - nlen - 1, out, outlen, 1);
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return HERR_NOTFOUND;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int http_cookie_get(const char *cookie_header, const char *name, char *out, size_t outlen)
{
	const char *p = cookie_header;
	size_t want;

	if (cookie_header == NULL || name == NULL)
		return HERR_NOTFOUND;
	want = strlen(name);
	while (*p != '\0') {
		size_t plen = strcspn(p, ";");
		const char *end = p + plen;
		const char *eq;

		while (p < end && is_ows(*p))
			p++;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *nend = eq;
			const char *v = eq + 1, *vend = end;

			while (nend > p && is_ows(nend[-1]))
				nend--;
			if ((size_t)(nend - p) == want && want > 0 && memcmp(p, name, want) == 0) {
				size_t vlen;

				while (v < vend && is_ows(*v))
					v++;
				while (vend > v && is_ows(vend[-1]))
					vend--;
				vlen = (size_t)(vend - v);
				if (vlen >= outlen || vlen > INT_MAX)
					return HERR_TOOBIG;
				memcpy(out, v, vlen);
				out[vlen] = '\0';
				return (int)vlen;
			}
		}
		p = end;
		if (*p == ';')
			p++;
	}
	return HERR_NOTFOUND;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 426:
		return "Upgrade Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}
