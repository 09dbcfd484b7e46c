/*
 * log.h - leveled log lines to stderr or a file, as text or JSON.
 *
 * The level is checked before the arguments are evaluated:
 *     log_info("connect(%s) failed: %s, retrying in %d s", addr, why, n);
 * costs one comparison when info is off.  Lines are written with one write(2)
 * so threads do not interleave.  Only the programs log: library modules
 * return errors and report events through callbacks.
 */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

extern int log_level_current;

#define log_at(lvl, ...)                                                       \
	do {                                                                   \
		if ((lvl) <= log_level_current)                                \
			log_write((lvl), __VA_ARGS__);                         \
	} while (0)
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * Set up: program name (copied), level, json (0 text, 1 JSON lines), and a
 * file path (NULL = stderr).  Returns 0 or HERR_IO (the file cannot be opened;
 * logging stays on stderr).
 */
int log_open(const char *prog, int level, int json, const char *path);

/* Reopen the file given to log_open (SIGHUP, after logrotate).  Safe to call
 * from the main loop, not from a signal handler. */
int log_reopen(void);

void log_close(void);

/* "error", "warn", "info", "debug" <-> enum log_level; -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/*
 * Format and write one line.  Text: "2026-11-25T21:42:35.123Z herald-ws[42] info: msg".
 * JSON: {"ts":"...","level":"info","prog":"herald-ws","pid":42,"msg":"..."}.
 */
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* For tests: format a line into buf as log_write would, without writing. */
int log_format_line(char *buf, size_t len, int level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
