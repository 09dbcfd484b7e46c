#include "config.h"
#include "ws_handshake.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "http.h"

#define METHOD_MAX 16

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* RFC 9110 tchar */
static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Non-zero when the token list value (comma-separated) holds token. */
static int list_has(const char *value, const char *token)
{
	size_t tl = strlen(token);
	const char *p = value;

	while (*p != '\0') {
		const char *end;
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p;
		while (*end != '\0' && *end != ',')
			end++;
		n = (size_t)(end - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(p, token, tl) == 0)
			return 1;
		p = end;
	}
	return 0;
}

/* The request line so far: -400 as soon as it cannot be one. */
static int check_prefix(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len && i <= METHOD_MAX; i++) {
		if (buf[i] == ' ')
			return i == 0 ? -400 : 0;
		if (!is_tchar((unsigned char)buf[i]))
			return -400;
	}
	return i > METHOD_MAX ? -400 : 0;
}

static int set_once(char **slot, char *value)
{
	if (*slot != NULL)
		return -400;
	*slot = value;
	return 0;
}

static int header(struct wsh_req *r, char *name, char *value)
{
	if (strcasecmp(name, "upgrade") == 0) {
		r->upgrade_websocket = list_has(value, "websocket");
		return set_once(&r->upgrade, value);
	}
	if (strcasecmp(name, "connection") == 0) {
		if (list_has(value, "upgrade"))
			r->connection_upgrade = 1;
		if (r->connection == NULL)
			r->connection = value;
		return 0;
	}
	if (strcasecmp(name, "sec-websocket-key") == 0)
		return set_once(&r->key, value);
	if (strcasecmp(name, "sec-websocket-version") == 0)
		return set_once(&r->version, value);
	if (strcasecmp(name, "origin") == 0)
		return set_once(&r->origin, value);
	if (strcasecmp(name, "authorization") == 0)
		return set_once(&r->authorization, value);
	if (strcasecmp(name, "host") == 0)
		return set_once(&r->host, value);
	if (strcasecmp(name, "cookie") == 0) {
		if (r->cookie == NULL)
			r->cookie = value;
		return 0;
	}
	if (strcasecmp(name, "x-forwarded-for") == 0) {
		if (r->x_forwarded_for == NULL)
			r->x_forwarded_for = value;
		return 0;
	}
	return 0;
}

static int request_line(struct wsh_req *r, char *line)
{
	char *sp1 = strchr(line, ' '), *sp2, *q;

	if (sp1 == NULL || sp1 == line)
		return -400;
	*sp1 = '\0';
	r->method = line;
	sp2 = strchr(sp1 + 1, ' ');
	if (sp2 == NULL || sp2 == sp1 + 1)
		return -400;
	*sp2 = '\0';
	r->path = sp1 + 1;
	if (r->path[0] != '/')
		return -400;
	for (q = r->path; *q != '\0'; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return -400;
	q = sp2 + 1;
	if (strncmp(q, "HTTP/", 5) != 0 || !isdigit((unsigned char)q[5]) || q[6] != '.' ||
	    !isdigit((unsigned char)q[7]) || q[8] != '\0')
		return -400;
	if (q[5] != '1')
		return -505;
	r->minor = q[7] - '0';
	q = strchr(r->path, '?');
	if (q != NULL) {
		*q = '\0';
		r->query = q + 1;
	}
	return 0;
}

int wsh_parse(char *buf, size_t len, struct wsh_req *r)
{
	char *end, *line, *next;
	size_t total;
	int rc;

	memset(r, 0, sizeof *r);
	rc = check_prefix(buf, len);
	if (rc != 0)
		return rc;
	end = memmem(buf, len < WSH_MAX ? len : WSH_MAX, "\r\n\r\n", 4);
	if (end == NULL)
		return len >= WSH_MAX ? -431 : 0;
	total = (size_t)(end - buf) + 4;
	if (memchr(buf, '\0', total) != NULL)
		return -400;
	end[2] = '\0';

	line = buf;
	next = strstr(line, "\r\n");
	*next = '\0';
	rc = request_line(r, line);
	if (rc != 0)
		return rc;
	for (line = next + 2; *line != '\0'; line = next + 2) {
		char *colon, *v, *e;

		next = strstr(line, "\r\n");
		*next = '\0';
		if (line[0] == ' ' || line[0] == '\t')
			return -400;
		colon = strchr(line, ':');
		if (colon == NULL || colon == line)
			return -400;
		*colon = '\0';
		for (v = line; *v != '\0'; v++)
			if (!is_tchar((unsigned char)*v))
				return -400;
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		for (e = v; *e != '\0'; e++)
			if (((unsigned char)*e < 0x20 && *e != '\t') || *e == 0x7f)
				return -400;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		rc = header(r, line, v);
		if (rc != 0)
			return rc;
	}
	return (int)total;
}

static int key_valid(const char *key)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	if (strlen(key) != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (key[i] == '\0' || strchr(b64, key[i]) == NULL)
			return 0;
	/* 16 bytes use 4 bits of the 22nd character: the rest must be zero. */
	return strchr("AQgw", key[21]) != NULL;
}

int wsh_check_upgrade(const struct wsh_req *r)
{
	if (strcmp(r->method, "GET") != 0)
		return 405;
	if (r->minor < 1 || r->host == NULL)
		return 400;
	if (!r->upgrade_websocket || !r->connection_upgrade)
		return 400;
	if (r->version == NULL || strcmp(r->version, "13") != 0)
		return 426;
	if (r->key == NULL || !key_valid(r->key))
		return 400;
	return 0;
}

int wsh_origin_allowed(const char *origin, char *const *allowed)
{
	size_t i;

	if (allowed == NULL || allowed[0] == NULL || origin == NULL)
		return 1;
	for (i = 0; allowed[i] != NULL; i++)
		if (strcasecmp(origin, allowed[i]) == 0 || strcmp(allowed[i], "*") == 0)
			return 1;
	return 0;
}

int wsh_origin_listed(const char *origin, char *const *allowed)
{
	size_t i;

	if (allowed == NULL || origin == NULL)
		return 0;
	/* "*" admits any Origin for tokens in the URL or header, never a cookie's */
	for (i = 0; allowed[i] != NULL; i++)
		if (strcasecmp(origin, allowed[i]) == 0)
			return 1;
	return 0;
}

int wsh_accept(const char *key, char out[WSH_ACCEPT_LEN + 1])
{
	unsigned char in[64 + sizeof ws_guid], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t kl = strlen(key);

	if (kl > 64)
		return -1;
	/* key || GUID, hashed by length: no terminator wanted */
	memcpy(in, key, kl); // NOLINT(bugprone-not-null-terminated-result)
	memcpy(in + kl, ws_guid, sizeof ws_guid - 1);
	if (EVP_Digest(in, kl + sizeof ws_guid - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    mdlen != 20)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != WSH_ACCEPT_LEN)
		return -1;
	return 0;
}

int wsh_response_101(char *out, size_t outlen, const char *accept)
{
	int n = snprintf(out, outlen,
			 "HTTP/1.1 101 Switching Protocols\r\n"
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: %s\r\n\r\n",
			 accept);

	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

/* The status line and headers; snprintf's result (the length they need). */
static int response_head(char *out, size_t outlen, int status, const char *extra_headers,
			 const char *content_type, const char *body, size_t body_len)
{
	return snprintf(out, outlen,
			"HTTP/1.1 %d %s\r\n"
			"Content-Type: %s\r\n"
			"Content-Length: %zu\r\n"
			"Cache-Control: no-store\r\n"
			"Connection: close\r\n"
			"%s\r\n",
			status, http_status_text(status),
			content_type != NULL ? content_type : "text/plain; charset=utf-8",
			body != NULL ? body_len : 0, extra_headers != NULL ? extra_headers : "");
}

/* Room for the fixed text of response_head (status line, headers, the
 * default content type, numbers): 150 bytes at most today. */
#define HEAD_FIXED 256

char *wsh_response_new(int status, const char *extra_headers, const char *content_type,
		       const char *body, size_t body_len, size_t *len)
{
	size_t blen = body != NULL ? body_len : 0;
	size_t room = HEAD_FIXED + (extra_headers != NULL ? strlen(extra_headers) : 0) +
		      (content_type != NULL ? strlen(content_type) : 0);
	char *out;
	int n;

	if (blen > SIZE_MAX - room)
		return NULL;
	out = malloc(room + blen);
	if (out == NULL)
		return NULL;
	n = response_head(out, room, status, extra_headers, content_type, body, body_len);
	if (n < 0 || (size_t)n >= room) {
		free(out);
		return NULL;
	}
	if (blen > 0)
		memcpy(out + n, body, blen);
	*len = (size_t)n + blen;
	return out;
}

int wsh_response(char *out, size_t outlen, int status, const char *extra_headers,
		 const char *content_type, const char *body, size_t body_len)
{
	int n = response_head(out, outlen, status, extra_headers, content_type, body, body_len);

	if (n < 0 || (size_t)n >= outlen || (size_t)n + body_len > outlen)
		return -1;
	if (body != NULL && body_len > 0)
		memcpy(out + n, body, body_len);
	return n + (int)(body != NULL ? body_len : 0);
}
