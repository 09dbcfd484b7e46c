/*
 * err.h - the one error enum of libherald.
 *
 * Every libherald function that can fail returns 0 or one of these negative
 * codes.  herr_fatal() tells the errors a caller cannot retry (out of memory,
 * bad arguments) from the ones that go away by themselves (Redis unreachable).
 */
#ifndef HERALD_ERR_H
#define HERALD_ERR_H

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

#endif
