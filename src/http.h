/*
 * http.h - small HTTP text helpers shared by herald-fcgi and herald-ws:
 * query strings (percent-decoded by text_pct_decode), cookies, status
 * texts.  Pure functions over buffers.
 */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include <stddef.h>

/*
 * Find parameter name in query (the part after '?', without it; may be NULL)
 * and copy its percent-decoded value ('+' is a space) to out, NUL-terminated.
 * Returns the decoded length, HERR_NOTFOUND when absent, HERR_INVAL when the
 * encoding is bad (a stray '%' or a decoded NUL), HERR_TOOBIG when it does
 * not fit in outlen.  The first occurrence wins.
 */
int http_query_get(const char *query, const char *name, char *out, size_t outlen);

/* The same for a cookie of a `Cookie:` header value ("a=1; b=2"); values
 * are not percent-decoded (RFC 6265). */
int http_cookie_get(const char *cookie_header, const char *name, char *out, size_t outlen);

/* Reason phrase for an HTTP status: 200 "OK", 404 "Not Found", ... */
const char *http_status_text(int status);

#endif
