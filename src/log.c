#include "config.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "text.h"

/* One line, newline included: also the size of the stack buffers. */
#define LOG_LINE_MAX 4096

int log_level_current = LOG_LEVEL_INFO;

static char log_prog[64] = "herald";
static int log_json;
/* The file given to log_open; NULL while logging to stderr. */
static char *log_path;
/*
 * Read by every writer thread without a lock.  It changes only in log_open
 * and log_close; log_reopen keeps the number and dup2()s the new file onto
 * it, so a writer never holds a closed descriptor.
 */
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(int level)
{
	if (level >= 0 && level < (int)(sizeof level_names / sizeof level_names[0]))
		return level_names[level];
	return "unknown";
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *prog, int level, int json, const char *path)
{
	size_t i;
	char *copy;
	int fd;

	if (prog != NULL) {
		/* The name goes unescaped into JSON lines: keep it to plain characters. */
		for (i = 0; i < sizeof log_prog - 1 && prog[i] != '\0'; i++) {
			unsigned char ch = (unsigned char)prog[i];

			log_prog[i] =
			    ch > ' ' && ch < 0x7f && ch != '"' && ch != '\\' ? (char)ch : '_';
		}
		log_prog[i] = '\0';
	}
	log_level_current = level;
	log_json = json != 0;
	if (path == NULL) {
		log_close();
		return 0;
	}
	fd = open_file(path);
	if (fd < 0)
		return HERR_IO;
	copy = strdup(path);
	if (copy == NULL) {
		close(fd);
		return HERR_NOMEM;
	}
	if (log_path != NULL) {
		if (fd != log_fd) {
			dup2(fd, log_fd);
			close(fd);
		}
		free(log_path);
	} else {
		__atomic_store_n(&log_fd, fd, __ATOMIC_RELEASE);
	}
	log_path = copy;
	return 0;
}

int log_reopen(void)
{
	int fd, rc = 0;

	if (log_path == NULL)
		return 0;
	fd = open_file(log_path);
	if (fd < 0)
		return HERR_IO;
	if (fd != log_fd && dup2(fd, log_fd) < 0)
		rc = HERR_IO;
	if (fd != log_fd)
		close(fd);
	return rc;
}

void log_close(void)
{
	int old;

	if (log_path == NULL)
		return;
	old = __atomic_exchange_n(&log_fd, STDERR_FILENO, __ATOMIC_ACQ_REL);
	/* When stderr was closed at start the file got fd 2: leave it open. */
	if (old != STDERR_FILENO)
		close(old);
	free(log_path);
	log_path = NULL;
}

/*
 * Escape one character of s into out (at least 7 bytes).  Sets *used to the
 * bytes of s consumed; returns the bytes written.  JSON gets text_json_char's
 * escapes (U+FFFD for invalid UTF-8); text keeps the line one line by writing
 * control characters (tab aside) and invalid bytes as \n, \xHH.
 */
static size_t escape_one(const unsigned char *s, size_t n, int json, char *out, size_t *used)
{
	unsigned char ch = s[0];
	size_t len;
	int ok;

	if (json)
		return text_json_char((const char *)s, n, out, used);
	*used = 1;
	switch (ch) {
	case '\n':
		return (size_t)snprintf(out, 7, "\\n");
	case '\r':
		return (size_t)snprintf(out, 7, "\\r");
	case '\t':
		out[0] = '\t';
		return 1;
	default:
		break;
	}
	if (ch < 0x20 || ch == 0x7f)
		return (size_t)snprintf(out, 7, "\\x%02x", ch);
	len = text_utf8_next((const char *)s, n, &ok);
	if (!ok)
		return (size_t)snprintf(out, 7, "\\x%02x", ch);
	memcpy(out, s, len);
	*used = len;
	return len;
}

static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/*
 * The one formatter: header, escaped message, suffix, in buf of len bytes.
 * A message that does not fit is cut at a character boundary and ends in
 * "...".  Returns the line's length (newline included, NUL excluded) or
 * HERR_TOOBIG when not even the header fits.
 */
static int format_line(char *buf, size_t len, int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static int format_line(char *buf, size_t len, int level, const char *fmt, va_list ap)
{
	static const char ellipsis[] = "...";
	const char *suffix = log_json ? "\"}\n" : "\n";
	size_t slen = strlen(suffix);
	char msg[LOG_LINE_MAX];
	char ts[64];
	size_t mlen, pos, safe, limit, i;
	int n, truncated, all = 1;

	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n < 0) {
		snprintf(msg, sizeof msg, "(bad log format \"%s\")", fmt);
		n = (int)strlen(msg);
	}
	truncated = (size_t)n >= sizeof msg;
	mlen = truncated ? sizeof msg - 1 : (size_t)n;

	timestamp(ts, sizeof ts);
	if (log_json)
		n = snprintf(
		    buf, len,
		    "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\",\"pid\":%ld,\"msg\":\"", ts,
		    log_level_name(level), log_prog, (long)getpid());
	else
		n = snprintf(buf, len, "%s %s[%ld] %s: ", ts, log_prog, (long)getpid(),
			     log_level_name(level));
	if (n < 0 || (size_t)n + slen + sizeof ellipsis > len) {
		if (len > 0)
			buf[0] = '\0';
		return HERR_TOOBIG;
	}
	pos = safe = (size_t)n;
	limit = len - 1 - slen;
	for (i = 0; i < mlen;) {
		char piece[8];
		size_t used, plen;

		plen = escape_one((const unsigned char *)msg + i, mlen - i, log_json, piece, &used);
		if (pos + plen > limit) {
			all = 0;
			break;
		}
		memcpy(buf + pos, piece, plen);
		pos += plen;
		i += used;
		if (pos + sizeof ellipsis - 1 <= limit)
			safe = pos;
	}
	if (!all || truncated) {
		if (pos + sizeof ellipsis - 1 > limit)
			pos = safe;
		memcpy(buf + pos, ellipsis, sizeof ellipsis - 1);
		pos += sizeof ellipsis - 1;
	}
	memcpy(buf + pos, suffix, slen + 1);
	return (int)(pos + slen);
}

void log_vwrite(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int saved = errno;
	int fd, n;
	size_t off = 0;

	n = format_line(line, sizeof line, level, fmt, ap);
	if (n > 0) {
		fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
		/* One write per line; a second one only if a pipe took part of it. */
		while (off < (size_t)n) {
			ssize_t w = write(fd, line + off, (size_t)n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	errno = saved;
}

void log_write(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

int log_format_line(char *buf, size_t len, int level, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = format_line(buf, len, level, fmt, ap);
	va_end(ap);
	return n;
}
