/*
 * reply.h - the text of herald-fcgi's answers, built into a buffer: the CGI
 * status head, JSON documents, error bodies, the poll document.  The
 * workers write a built answer through libfcgi or stdio (handlers.c), the
 * event loop as FastCGI records (held.c).  Pure functions over buffers; any
 * thread.
 */
#ifndef HERALD_FCGI_REPLY_H
#define HERALD_FCGI_REPLY_H

#include "cursor.h"
#include "metrics.h"
#include "router.h"

/*
 * Append "Status: ...\r\nContent-Type: ...\r\n" extra "\r\n" and len bytes
 * of body.  extra is NULL or complete "Name: value\r\n" lines.
 */
void reply_append(struct metrics_buf *b, int status, const char *ctype, const char *extra,
		  const char *body, size_t len);

/* A JSON answer, never cached. */
void reply_json(struct metrics_buf *b, int status, const char *extra, const char *body);

/* The error rt->status describes, with its headers (WWW-Authenticate, Allow,
 * Retry-After). */
void reply_error(struct metrics_buf *b, const struct route *rt);

/* 503 {"error":"unavailable","detail":detail} with Retry-After. */
void reply_unavailable(struct metrics_buf *b, const char *detail);

/* The poll document, built as entries come. */
struct poll_doc {
	struct metrics_buf body;
	unsigned n;
	int has_cursor;
	struct cursor cursor;
	int truncated;
	int more; /* entries wait after cursor: the client polls again at once */
};

/* The poll's cursor stays since (when has_since) until an entry moves it. */
void poll_doc_init(struct poll_doc *p, int has_since, const struct cursor *since);
/* One envelope; id is NULL for "id":null ones (the cursor stays). */
void poll_doc_add(struct poll_doc *p, const char *env, size_t len, const struct cursor *id);
/* The whole answer (head and document) into out; frees p's body. */
void poll_doc_reply(struct poll_doc *p, long poll_interval, struct metrics_buf *out);
void poll_doc_free(struct poll_doc *p);

/* The head of an SSE stream, and its first line (retry). */
extern const char reply_sse_head[];

#endif
