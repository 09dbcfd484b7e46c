#include "config.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>

const char *herr_str(int code)
{
	switch (code) {
	case HERR_OK: return "ok";
	case HERR_NOMEM: return "out of memory";
	case HERR_INVAL: return "invalid argument";
	case HERR_IO: return "i/o error";
	case HERR_REDIS: return "redis error";
	case HERR_AGAIN: return "try again";
	case HERR_NOTFOUND: return "not found";
	case HERR_TOOBIG: return "too big";
	case HERR_CLOSED: return "closed";
	default: return "unknown error";
	}
}

int herr_fatal(int code)
{
	return code == HERR_NOMEM || code == HERR_INVAL || code == HERR_TOOBIG;
}

int herr_set(int code, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}
