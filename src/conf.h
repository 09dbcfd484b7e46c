/*
 * conf.h - Herald's configuration: one file, the environment, flags.
 *
 * Precedence, lowest first: built-in defaults, the file (`key = value`, `#`
 * comments, blank lines), the environment (HERALD_<KEY>, upper case), then
 * command-line flags through conf_set().  Every key of DESIGN.md section 9 is
 * here; an unknown key in the file or a flag, a near miss of a key in the
 * environment (conf_load_env), or a bad value is an error that names its
 * source ("FILE:LINE", "environment" or "command line") and the key.
 *
 * Values: durations take an optional unit (s, m, h, d; "90" is seconds),
 * sizes one of k, m, g (powers of 1024), lists are comma- or space-separated.
 */
#ifndef HERALD_CONF_H
#define HERALD_CONF_H

#include <stddef.h>

enum conf_alg {
	CONF_ALG_HS256,
	CONF_ALG_HS384,
	CONF_ALG_HS512,
	CONF_ALG_RS256,
	CONF_ALG_ES256,
};

enum conf_log_format {
	CONF_LOG_TEXT,
	CONF_LOG_JSON,
};

/*
 * All strings are owned by the struct (heap copies) and freed by conf_free().
 * A NULL string means "not set".  Durations are in seconds, sizes in bytes.
 */
struct conf {
	char *redis_url;          /* redis://host:port/db or unix:///path[?db=N] */
	char **redis_sentinels;   /* NULL-terminated "host:port" of each sentinel; NULL =
				   * no Sentinel: redis_url names the server.  When set,
				   * redis_url gives only the password and db. */
	char *redis_sentinel_master;   /* the master's name at the sentinels: "mymaster" */
	char *redis_sentinel_password; /* AUTH to the sentinels; NULL = none */
	long redis_cluster;       /* 1: Redis Cluster mode (cluster.h): the user's hash tag in
				   * every key, P:{U}:history; 0: one server, P:U:history */
	char **redis_cluster_nodes; /* NULL-terminated "host:port" seeds of the cluster;
				     * NULL = redis_url's host:port */
	enum conf_alg jwt_alg;
	char *jwt_secret;         /* HS*: the shared secret */
	char *jwt_key_file;       /* RS256/ES256: PEM public key; HS*: file holding the secret */
	char *jwt_user_claim;     /* "sub" */
	char *jwt_issuer;         /* required and compared when set */
	char *jwt_audience;       /* required and compared when set */
	long jwt_leeway;          /* seconds of clock skew allowed on exp/nbf: 30 */
	char *jwt_cookie;         /* cookie name looked at last: "herald_token" */
	long token_max_age;       /* longest token lifetime issued: a user's not-before
				   * key (revocation) expires after it: 1 d */
	long ticket_ttl;          /* a ticket's lifetime: 30 s */
	char *channel_prefix;     /* "notifications" */
	long history_max;         /* XADD MAXLEN ~: 1000 */
	long history_ttl;         /* EXPIRE on publish: 7 d */
	long idempotency_window;  /* a publish's idempotency record lives: 600 s */
	long publish_wait_replicas; /* WAIT for this many replicas after a publish; 0 = off */
	long publish_wait_timeout;  /* WAIT's timeout, in milliseconds: 1000 */
	long replay_page;         /* entries per history read of a replay: 500 */
	long heartbeat;           /* SSE comment interval: 15 s */
	long sse_max_lifetime;    /* 1 h */
	long poll_interval;       /* advertised to polling clients: 60 s */
	long poll_wait_max;       /* longest long-poll `wait`: 55 s */
	long fcgi_idle_timeout;   /* herald-fcgi closes a FastCGI connection idle this long: 300 s */
	long ws_ping_interval;    /* 30 s */
	long ws_pong_timeout;     /* 30 s */
	long max_connections;     /* per process; 0 = unlimited */
	long max_connections_per_user; /* 0 = unlimited */
	long max_connections_per_address; /* herald-ws, per client address; 0 = unlimited */
	long send_queue_max;      /* bytes queued per connection: 256 KiB */
	char **allowed_origins;   /* NULL-terminated; NULL or empty = any origin */
	char *listen;             /* "host:port", "unix:/path"; NULL = program default */
	long socket_mode;         /* mode of a unix listening socket: 0660 */
	char *socket_owner;       /* "user[:group]" of a unix listening socket */
	long threads;             /* herald-fcgi worker threads: 16 */
	long workers;             /* herald-ws processes: 1 */
	long proxy_protocol;      /* herald-ws: 1 = every connection starts with a PROXY header (v1 or v2), 0 = one is refused */
	char *publish_key;        /* API key for POST .../publish (16..1024 bytes); NULL = endpoint off */
	char *path_ws;            /* "/api/v1/ws/notifications" */
	char *path_sse;           /* "/api/v1/sse/notifications" */
	char *path_poll;          /* "/api/v1/notifications/poll" */
	char *path_health;        /* "/api/v1/notifications/health" */
	char *path_metrics;       /* "/api/v1/notifications/metrics" */
	char *path_publish;       /* "/api/v1/notifications/publish" */
	char *path_ticket;        /* "/api/v1/notifications/ticket" */
	int log_level;            /* enum log_level from log.h: info */
	enum conf_log_format log_format;
	char *log_file;           /* NULL = stderr; reopened on SIGHUP */
};

/* Fill c with the defaults.  Returns 0 or HERR_NOMEM. */
int conf_init(struct conf *c);

/* Free every string of c; c may then be conf_init()ed again.  NULL is fine. */
void conf_free(struct conf *c);

/*
 * Set one key from text.  source names where the value came from and is
 * used in the error ("herald.conf:12", "environment", "command line").
 * Returns 0, or HERR_INVAL / HERR_NOTFOUND (unknown key) with a message of
 * the form "SOURCE: KEY: why" in err (always NUL-terminated).
 */
int conf_set(struct conf *c, const char *key, const char *value,
	     const char *source, char *err, size_t errlen);

/* Read a file of `key = value` lines.  Errors name "PATH:LINE: KEY: why". */
int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen);

/*
 * Apply every HERALD_<KEY> variable of envp (NULL-terminated, e.g. environ).
 * Other HERALD_ variables are skipped: Kubernetes sets HERALD_PORT,
 * HERALD_SERVICE_HOST ... in every pod of a namespace with a Service named
 * herald, and scripts keep settings of their own there.  A near miss of a
 * key (at most two edits, or a key in lower case: HERALD_JWT_SECRTE,
 * HERALD_history_max) is a typo whose value would be lost: HERR_NOTFOUND,
 * with "did you mean HERALD_JWT_SECRET?" in err.  HERALD_CONFIG (the file's
 * path) and names in `ignore` (NULL-terminated, may be NULL) are skipped
 * without that check.
 */
int conf_load_env(struct conf *c, char *const *envp, const char *const *ignore,
		  char *err, size_t errlen);

/* The lengths of a publish_key that conf_validate() accepts, in bytes. */
#define CONF_PUBLISH_KEY_MIN 16
#define CONF_PUBLISH_KEY_MAX 1024

/*
 * Cross-key checks: HS* needs exactly one of jwt_secret and jwt_key_file,
 * RS256/ES256 need jwt_key_file; a publish_key, when set, holds
 * CONF_PUBLISH_KEY_MIN to CONF_PUBLISH_KEY_MAX bytes.  HERR_INVAL with a
 * message naming the key to set (never its value).
 */
int conf_validate(const struct conf *c, char *err, size_t errlen);

/*
 * The usual sequence: conf_init, conf_load_file(path) when path is non-NULL
 * (else $HERALD_CONFIG when set), conf_load_env(environ).  The caller then
 * applies its flags with conf_set() and calls conf_validate().  c needs no
 * conf_init() first; call conf_free(c) afterwards, on error too.
 */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen);

/*
 * Write the effective configuration as `key = value` lines, every key, in the
 * order of herald.conf.example; secrets show as "(set)", unset strings as
 * nothing.  Without secrets the text reads back as the same configuration.
 * Returns the length written, or HERR_TOOBIG when buf is too small (buf then
 * holds a NUL-terminated prefix).
 */
int conf_dump(const struct conf *c, char *buf, size_t len);

/* Parsers shared with flag handling; 0 or HERR_INVAL. */
int conf_parse_duration(const char *s, long *out);
int conf_parse_size(const char *s, long *out);

/*
 * url with its password shown as *** ("redis://:***@host:6379/0",
 * "unix:///run/redis.sock?password=***"), for messages: buf (len bytes)
 * gets the text, truncated if need be.  Returns buf.
 */
const char *conf_redact_url(const char *url, char *buf, size_t len);

/* "HS256" ... for an enum conf_alg. */
const char *conf_alg_name(enum conf_alg alg);

#endif
