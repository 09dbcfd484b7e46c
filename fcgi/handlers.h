/*
 * handlers.h - herald-fcgi's request handlers, run by the workers (one
 * request at a time per worker, blocking on libfcgi and Redis only) and,
 * under CGI, by the main thread for the one request on stdio.
 */
#ifndef HERALD_FCGI_HANDLERS_H
#define HERALD_FCGI_HANDLERS_H

#include <fcgiapp.h>
#include <hiredis/hiredis.h>

#include "router.h"

/* Where an answer goes: libfcgi's request, or stdio under CGI (r NULL). */
struct io {
	FCGX_Request *r;
};

enum handle_result {
	HANDLE_DONE = 0, /* answered */
	HANDLE_HOLD = 1, /* *rt is an SSE stream or a long-poll to wait: nothing
			  * was written; the caller hands it to the loop */
};

/*
 * Answer one request.  *rcp is the worker's Redis connection (NULL until
 * needed; replaced after errors).
 */
int handle(const struct io *io, redisContext **rcp, struct route *rt);

/* Answer 503 unavailable (e.g. shutting down). */
void handle_unavailable(const struct io *io, const char *detail);

#endif
