/*
 * redis.h - what every Redis user in Herald shares: the redis_url, key and
 * channel names, blocking connections, and Lua scripts called by EVALSHA.
 *
 * Names (DESIGN.md section 7), with P the channel prefix and U the user:
 *   channel  P:U          live delivery
 *   history  P:U:history  stream of envelopes (field "e")
 * In Redis Cluster mode P:{U} and P:{U}:history (redis_set_cluster).
 */
#ifndef HERALD_REDIS_H
#define HERALD_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define REDIS_KEY_MAX 256
/* The most sentinels redis_addr_from_conf() takes. */
#define REDIS_SENTINELS_MAX 16

struct conf;

/* A TCP host and port: a sentinel, or the master a sentinel names. */
struct redis_node {
	char host[256];
	int port;
};

/* Where an event of redis_connect() goes (level: enum log_level, msg: a
 * complete line, borrowed for the call).  May run on any thread. */
typedef void (*redis_note_fn)(void *ud, int level, const char *msg);

struct redis_addr {
	char host[256]; /* empty for a unix socket */
	int port;
	char path[256]; /* unix socket path, empty for TCP */
	int db;
	char password[128]; /* redis://:password@host, or "" */
	/*
	 * Redis Sentinel: with nsentinels > 0, host/port/path above are not
	 * used; the master's address is asked of the sentinels (in order) each
	 * time a connection is made, and password and db apply to the master.
	 */
	int nsentinels;
	struct redis_node sentinel[REDIS_SENTINELS_MAX];
	char master_name[128];	     /* redis_sentinel_master */
	char sentinel_password[128]; /* AUTH to the sentinels, or "" */
	redis_note_fn note;	     /* NULL: events are not reported */
	void *note_ud;
};

/* Parse redis://[:password@]host[:port][/db] or unix:///path[?db=N].
 * Returns 0 or HERR_INVAL with a reason in err. */
int redis_url_parse(const char *url, struct redis_addr *out, char *err, size_t errlen);

/* "host:port" or the socket path, for log lines ("sentinels of NAME" with
 * sentinels). */
const char *redis_addr_str(const struct redis_addr *a, char *buf, size_t len);

/*
 * The address of conf c: redis_url, and the sentinels when redis_sentinels
 * is set (redis_sentinel_master, redis_sentinel_password).  Returns 0, or
 * HERR_INVAL with the key and the reason in err.
 */
int redis_addr_from_conf(const struct conf *c, struct redis_addr *out, char *err, size_t errlen);

/*
 * For --check-config: "redis_url redis://127.0.0.1:6379/0" (password
 * hidden), or "master NAME through N sentinels; redis_url gives its password
 * and db only, its host and port are not used".  Returns buf.
 */
const char *redis_addr_describe(const struct redis_addr *a, char *buf, size_t len);

/* Parse "host:port" or "[v6]:port" into out.  0 or HERR_INVAL. */
int redis_node_parse(const char *s, struct redis_node *out);

/*
 * The Sentinel resolver, one for the blocking redis_connect() and the
 * subscriber's asynchronous links (sub.c): it says which sentinel to ask
 * next and reads their answers; the caller does the I/O.  As redis-py's
 * Sentinel client: ask each sentinel in order `SENTINEL
 * get-master-addr-by-name NAME` (after AUTH when sentinel_password is
 * set), connect to the first answer, and check that `ROLE` says master
 * there (a sentinel may not know of a failover yet); when it does not,
 * start a new round, at most REDIS_RESOLVE_ROUNDS.
 */
#define REDIS_RESOLVE_ROUNDS 3

struct redis_resolve {
	const struct redis_addr *a; /* borrowed */
	int next;		    /* index of the sentinel redis_resolve_next gives */
	int asked;		    /* sentinels given out in this round */
	int rounds;		    /* rounds started */
	int current;		    /* index of the sentinel last given out */
	struct redis_addr master;   /* a copy of *a with host and port of the answer */
	char why[200];		    /* the last failure, for the caller's message */
};

/* Start resolving a (which must have sentinels; borrowed until done). */
void redis_resolve_start(struct redis_resolve *r, const struct redis_addr *a);

/*
 * The sentinel to ask now, or NULL when every sentinel of this round
 * failed (r->why says the last reason).  redis_resolve_retry() starts
 * another round when the master's ROLE was wrong.
 */
const struct redis_node *redis_resolve_next(struct redis_resolve *r);

/* Record why the sentinel last given out did not answer (for r->why). */
void redis_resolve_failed(struct redis_resolve *r, const char *why);

/*
 * The sentinel's reply to get-master-addr-by-name: 0 with r->master set
 * and "redis: sentinel S says master NAME is H:P" in msg; HERR_NOTFOUND
 * (it knows no such master) or HERR_REDIS (an error reply), reason in
 * r->why and msg: ask the next one.
 */
int redis_resolve_answer(struct redis_resolve *r, const redisReply *reply, char *msg, size_t len);

/*
 * The master's answer to ROLE was not "master": begin another round from
 * the first sentinel.  Returns 0, or HERR_AGAIN when REDIS_RESOLVE_ROUNDS
 * rounds are used up.
 */
int redis_resolve_retry(struct redis_resolve *r);

/*
 * Check a reply to ROLE: 0 when it says master, else HERR_AGAIN with
 * "H:P answered ROLE slave" (or the error) in err.
 */
int redis_role_check(const redisReply *reply, const char *addr, char *err, size_t errlen);

/*
 * A +switch-master message of a sentinel ("NAME OLDIP OLDPORT NEWIP
 * NEWPORT"): 0 with the new master in *to when NAME is master_name,
 * HERR_NOTFOUND for another master, HERR_INVAL when malformed.
 */
int redis_switch_parse(const char *msg, size_t len, const char *master_name, struct redis_node *to);

/* What a reply on a sentinel link subscribed to +switch-master is. */
enum redis_watch_kind {
	REDIS_WATCH_OTHER = 0,	    /* nothing to act on (another shape, another master) */
	REDIS_WATCH_ERROR = 1,	    /* an error reply: the link is lost */
	REDIS_WATCH_SUBSCRIBED = 2, /* a subscribe confirmation */
	REDIS_WATCH_SWITCH = 3,	    /* +switch-master of master_name: *to is the new master */
	REDIS_WATCH_MALFORMED = 4,  /* a message that redis_switch_parse refuses */
};

/*
 * Classify reply r (a push on the SUBSCRIBE +switch-master link, or NULL)
 * for master master_name: a pure function of r, which it only reads.
 * *to is set for REDIS_WATCH_SWITCH only.  Returns enum redis_watch_kind.
 */
int redis_watch_reply(const redisReply *r, const char *master_name, struct redis_node *to);

/*
 * Blocking connection with a connect/command timeout (ms; 0 = none), AUTH
 * and SELECT done.  Returns 0 and *out, or HERR_REDIS with "connect(ADDR)
 * failed: why" in err.  Free with redisFree().  hiredis writes with write():
 * a program must ignore SIGPIPE, or a server that goes away kills it.
 * With sentinels, the master is resolved first (struct redis_resolve; each
 * sentinel and the master within timeout_ms) and its ROLE checked; the
 * answer goes to a->note at info level.
 */
int redis_connect(const struct redis_addr *a, int timeout_ms, redisContext **out, char *err,
		  size_t errlen);

/*
 * What a connect to Redis does when the process is out of descriptors
 * (socket() failing with EMFILE or ENFILE): fn frees some if it can and
 * returns how many, and the connect is tried once more when it freed any.
 * herald-fcgi closes a few of its idle kept-alive FastCGI connections, as
 * nginx does with its own when it runs out; without a hook the connect
 * fails.  Set once, before any thread connects; fn may be called from any
 * thread.  redis_connect uses it, and so does redis_async_connect (the
 * event-loop links of sub.c and cluster.c).
 */
void redis_set_nofile_hook(long (*fn)(void));

/* err (an errno saved right after a failed connect) says the process or the
 * system ran out of descriptors, and the hook freed some: 1 to try again. */
int redis_nofile_retry(int err);

/*
 * redisAsyncConnectUnix(path) when path is set, else redisAsyncConnect(host,
 * port), tried once more when it failed for want of a descriptor and the
 * hook freed some.  NULL when out of memory; else check ->err.
 */
struct redisAsyncContext *redis_async_connect(const char *path, const char *host, int port);

/*
 * Write "P:U" / "P:U:history" into buf (REDIS_KEY_MAX); returns the length,
 * HERR_TOOBIG, or HERR_INVAL when user is not a valid user id or the prefix
 * is empty or holds '"', '\\' or a control character (it is written into the
 * envelope's "channel" string unescaped).
 */
int redis_channel(char *buf, size_t len, const char *prefix, const char *user);
int redis_history_key(char *buf, size_t len, const char *prefix, const char *user);

/*
 * The key layout, for the whole process: 0 (the default) P:U and
 * P:U:history; 1, Redis Cluster (redis_cluster = yes), P:{U} and
 * P:{U}:history: the user's hash tag puts every key of a user, and the
 * channel the publish script derives from the history key, in one slot
 * (cluster.h).  Every name built from redis_channel() follows: P:{U}:nbf,
 * P:{U}:revoked:J, P:{U}:history:idem:KEY.  Call once at start-up, before
 * other threads run, with the configuration's redis_cluster.
 */
void redis_set_cluster(int on);
int redis_get_cluster(void);

/*
 * If channel is "P:U" (cluster layout: "P:{U}") for this prefix and U is a valid user id, copy U
 * into user (AUTH_USER_MAX + 1 bytes) and return 0; else HERR_INVAL.
 */
int redis_channel_user(const char *channel, size_t len, const char *prefix, char *user);

/* One command's argv, borrowed (argc 0: none). */
struct redis_cmd {
	int argc;
	const char **argv;
	const size_t *argvlen;
};

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
