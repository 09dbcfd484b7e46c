/*
 * fcgi_record.h - the FastCGI record layer (FastCGI 1.0, section 3.3), as
 * pure functions over buffers.
 *
 * libfcgi parses requests and writes short answers; herald-fcgi's event
 * loop writes the records of held requests (SSE streams, long-polls)
 * itself, from these.  Test clients and herald-bench read records with
 * fcgi_header_get.  No allocation, no I/O, any thread.
 */
#ifndef HERALD_FCGI_RECORD_H
#define HERALD_FCGI_RECORD_H

#include <stddef.h>

#define FCGI_HEADER_LEN 8
#define FCGI_CONTENT_MAX 65535 /* content bytes in one record */
#define FCGI_END_LEN (FCGI_HEADER_LEN + FCGI_HEADER_LEN + 8) /* fcgi_end_put's output */

enum fcgi_type {
	FCGI_T_BEGIN_REQUEST = 1,
	FCGI_T_ABORT_REQUEST = 2,
	FCGI_T_END_REQUEST = 3,
	FCGI_T_PARAMS = 4,
	FCGI_T_STDIN = 5,
	FCGI_T_STDOUT = 6,
	FCGI_T_STDERR = 7,
};

struct fcgi_header {
	unsigned type;
	unsigned reqid;
	size_t clen; /* content length */
	size_t plen; /* padding length */
};

/* Write an 8-byte version-1 header.  clen must be <= FCGI_CONTENT_MAX. */
void fcgi_header_put(unsigned char out[FCGI_HEADER_LEN], unsigned type, unsigned reqid,
		     size_t clen, unsigned plen);

/* Read a header: 0, or -1 when its version is not 1. */
int fcgi_header_get(const unsigned char in[FCGI_HEADER_LEN], struct fcgi_header *h);

/*
 * Has the whole request arrived?  Walks the record headers of the first len
 * bytes a connection received (no content is read): 1 when they hold a
 * request up to its empty FCGI_STDIN record, 0 when that end is not there
 * yet, -1 when they do not start with FCGI_BEGIN_REQUEST or a header is not
 * version 1 (libfcgi's to judge).  herald-fcgi's loop lets libfcgi read a
 * request only when it is whole, so the read never blocks the loop.
 */
int fcgi_request_complete(const unsigned char *buf, size_t len);

/* Bytes fcgi_stdout_put writes for len bytes of content (len > 0). */
size_t fcgi_stdout_size(size_t len);

/*
 * len bytes of content as FCGI_STDOUT records of at most FCGI_CONTENT_MAX
 * bytes each, no padding; out holds fcgi_stdout_size(len) bytes.  Returns
 * the bytes written.  len 0 writes nothing (an empty STDOUT record ends the
 * stream: fcgi_end_put).
 */
size_t fcgi_stdout_put(unsigned char *out, unsigned reqid, const void *data, size_t len);

/*
 * The end of a response: the empty FCGI_STDOUT record, then FCGI_END_REQUEST
 * with app_status and FCGI_REQUEST_COMPLETE.  Writes FCGI_END_LEN bytes.
 */
size_t fcgi_end_put(unsigned char out[FCGI_END_LEN], unsigned reqid, unsigned app_status);

#endif
