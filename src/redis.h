/*
 * redis.h - what every Redis user in Herald shares: the redis_url, key and
 * channel names, blocking connections, and Lua scripts called by EVALSHA.
 *
 * Names (DESIGN.md section 7), with P the channel prefix and U the user:
 *   channel  P:U          live delivery
 *   history  P:U:history  stream of envelopes (field "e")
 */
#ifndef HERALD_REDIS_H
#define HERALD_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define REDIS_KEY_MAX 256

struct redis_addr {
	char host[256]; /* empty for a unix socket */
	int port;
	char path[256]; /* unix socket path, empty for TCP */
	int db;
	char password[128]; /* redis://:password@host, or "" */
};

/* Parse redis://[:password@]host[:port][/db] or unix:///path[?db=N].
 * Returns 0 or HERR_INVAL with a reason in err. */
int redis_url_parse(const char *url, struct redis_addr *out, char *err, size_t errlen);

/* "host:port" or the socket path, for log lines. */
const char *redis_addr_str(const struct redis_addr *a, char *buf, size_t len);

/*
 * Blocking connection with a connect/command timeout (ms; 0 = none), AUTH
 * and SELECT done.  Returns 0 and *out, or HERR_REDIS with "connect(ADDR)
 * failed: why" in err.  Free with redisFree().  hiredis writes with write():
 * a program must ignore SIGPIPE, or a server that goes away kills it.
 */
int redis_connect(const struct redis_addr *a, int timeout_ms, redisContext **out, char *err,
		  size_t errlen);

/*
 * Write "P:U" / "P:U:history" into buf (REDIS_KEY_MAX); returns the length,
 * HERR_TOOBIG, or HERR_INVAL when user is not a valid user id or the prefix
 * is empty or holds '"', '\\' or a control character (it is written into the
 * envelope's "channel" string unescaped).
 */
int redis_channel(char *buf, size_t len, const char *prefix, const char *user);
int redis_history_key(char *buf, size_t len, const char *prefix, const char *user);

/*
 * If channel is "P:U" for this prefix and U is a valid user id, copy U into
 * user (AUTH_USER_MAX + 1 bytes) and return 0; else HERR_INVAL.
 */
int redis_channel_user(const char *channel, size_t len, const char *prefix, char *user);

/* A Lua script and its SHA1 (computed locally, so EVALSHA needs no LOAD first). */
struct redis_script {
	const char *name;
	const char *source;
	char sha[41];
};

/* The two scripts of Herald; see redis.c for their text and contract. */
extern struct redis_script redis_script_publish;
extern struct redis_script redis_script_history;

/* Compute the SHA1s once at start-up.  Returns 0 (idempotent, thread-safe),
 * or HERR_NOMEM when OpenSSL cannot digest.  The functions below call it. */
int redis_scripts_init(void);

/*
 * Build the argv of `EVALSHA sha numkeys keys... args...` into argv/argvlen
 * (caller's arrays of at least 3 + nkeys + nargs).  kv holds the keys then
 * the arguments; kvlen may be NULL for NUL-terminated strings.  The strings
 * are borrowed, not copied.  Returns the count, or HERR_INVAL (nkeys not 0..9).
 */
int redis_evalsha_argv(const struct redis_script *s, int nkeys, int nargs, const char *const *kv,
		       const size_t *kvlen, const char **argv, size_t *argvlen);

/* Non-zero when reply is the NOSCRIPT error. */
int redis_reply_is_noscript(const redisReply *r);

/*
 * SCRIPT LOAD s (after a NOSCRIPT: Redis restarted or SCRIPT FLUSH) and check
 * the server's SHA1 equals ours.  0, or HERR_REDIS with the reason in err.
 */
int redis_script_load(redisContext *rc, const struct redis_script *s, char *err, size_t errlen);

/*
 * Blocking EVALSHA (nkeys + nargs at most 16); on NOSCRIPT runs SCRIPT LOAD
 * and retries once.  Returns the reply (caller frees; an error reply from
 * the script is returned as a reply) or NULL, when the connection failed,
 * with the reason in err.  After NULL the context is unusable: redisFree it.
 */
redisReply *redis_eval_sync(redisContext *rc, const struct redis_script *s, int nkeys, int nargs,
			    const char *const *kv, const size_t *kvlen, char *err, size_t errlen);

#endif
