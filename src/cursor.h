/*
 * cursor.h - Redis stream ids ("1732550000000-0") as resume cursors.
 *
 * Cursors come from clients (Last-Event-ID, since=) and are parsed strictly:
 * MS "-" SEQ, both decimal without sign or leading '+', each fitting in 64
 * bits; a bare MS (as Redis accepts) means MS-0.  Anything else is HERR_INVAL.
 */
#ifndef HERALD_CURSOR_H
#define HERALD_CURSOR_H

#include <stddef.h>
#include <stdint.h>

/* "18446744073709551615-18446744073709551615" plus NUL */
#define CURSOR_STR_MAX 42

struct cursor {
	uint64_t ms;
	uint64_t seq;
};

/*
 * Parse len bytes of s (at most CURSOR_STR_MAX - 1; leading zeros allowed).
 * Returns 0, or HERR_INVAL and leaves *out alone.  out may be NULL to only
 * check s.
 */
int cursor_parse(const char *s, size_t len, struct cursor *out);

/*
 * Write "MS-SEQ" and a NUL into buf (len bytes; CURSOR_STR_MAX always fits).
 * Returns the length written, or HERR_INVAL when it does not fit.
 */
int cursor_format(const struct cursor *c, char *buf, size_t len);

/* <0, 0, >0 as a is before, equal to, after b. */
int cursor_cmp(const struct cursor *a, const struct cursor *b);

#endif
