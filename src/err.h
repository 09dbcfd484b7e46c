/*
 * err.h - the one error enum of libherald.
 *
 * Every libherald function that can fail returns 0 or one of these negative
 * codes.  herr_fatal() tells the errors a caller cannot retry (out of memory,
 * bad arguments) from the ones that go away by themselves (Redis unreachable).
 */
#ifndef HERALD_ERR_H
#define HERALD_ERR_H

#include <stddef.h>

enum herr {
	HERR_OK = 0,
	HERR_NOMEM = -1,    /* allocation failed: fatal */
	HERR_INVAL = -2,    /* bad argument or malformed input: fatal for that input */
	HERR_IO = -3,       /* a system call failed; errno tells which */
	HERR_REDIS = -4,    /* Redis unreachable or answered an error: retry later */
	HERR_AGAIN = -5,    /* not now: retry later (queue full, not connected yet) */
	HERR_NOTFOUND = -6, /* nothing there (no id in an envelope, unknown key) */
	HERR_TOOBIG = -7,   /* input over a configured limit */
	HERR_CLOSED = -8,   /* the object is shutting down */
};

/* A stable, lower-case, constant string for code: "out of memory", ... */
const char *herr_str(int code);

/* Non-zero when retrying the same call cannot succeed. */
int herr_fatal(int code);

/*
 * Formats a message into err (errlen bytes, always terminated; err may be
 * NULL) and returns code, so a failing path is one line:
 *	return herr_set(HERR_INVAL, err, errlen, "limit: %ld is over %d", n, max);
 */
int herr_set(int code, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
