#include "config.h"

#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster.h"
#include "err.h"
#include "log.h"
#include "text.h"

/* The longest line conf_load_file accepts, newline excluded. */
#define CONF_LINE_MAX 4096

/* The longest key name; HERALD_ + key must fit a small buffer. */
#define CONF_KEY_MAX 64

/* An unknown HERALD_ variable this many edits from a key is a typo. */
#define CONF_NEAR_MISS 2

extern char **environ;

/*
 * How a key's text becomes its value.  The type also fixes the C type of the
 * field: char * for the string kinds, long for the numbers, char ** for the
 * list, the enums (ints) for alg, level and format.
 */
enum ktype {
	K_STR,	  /* required, non-empty */
	K_OPTSTR, /* optional: empty means unset (NULL) */
	K_SECRET, /* optional, hidden by conf_dump */
	K_PATH,	  /* URL path: starts with '/' */
	K_PREFIX, /* [A-Za-z0-9_.-]{1,64} */
	K_TOKEN,  /* an HTTP token (cookie name) */
	K_URL,	  /* redis:// or unix:// */
	K_LISTEN, /* host:port or unix:/path */
	K_INT,
	K_DUR,
	K_SIZE,
	K_MODE, /* octal */
	K_LIST,
	K_NODES, /* a list of host:port */
	K_ALG,
	K_LEVEL,
	K_FORMAT,
	K_BOOL, /* on or off (yes/no, true/false, 1/0) */
};

struct key {
	const char *name;
	enum ktype type;
	size_t off;
	long min, max; /* numbers only */
};

#define F(field) offsetof(struct conf, field)
#define DAY	 (24L * 3600)

/* Table order is the order of conf_dump and of herald.conf.example. */
static const struct key keys[] = {
    {"redis_url", K_URL, F(redis_url), 0, 0},
    {"redis_sentinels", K_NODES, F(redis_sentinels), 0, 0},
    {"redis_sentinel_master", K_STR, F(redis_sentinel_master), 0, 0},
    {"redis_sentinel_password", K_SECRET, F(redis_sentinel_password), 0, 0},
    {"redis_cluster", K_BOOL, F(redis_cluster), 0, 1},
    {"redis_cluster_nodes", K_NODES, F(redis_cluster_nodes), 0, 0},
    {"jwt_alg", K_ALG, F(jwt_alg), 0, 0},
    {"jwt_secret", K_SECRET, F(jwt_secret), 0, 0},
    {"jwt_key_file", K_OPTSTR, F(jwt_key_file), 0, 0},
    {"jwt_user_claim", K_STR, F(jwt_user_claim), 0, 0},
    {"jwt_issuer", K_OPTSTR, F(jwt_issuer), 0, 0},
    {"jwt_audience", K_OPTSTR, F(jwt_audience), 0, 0},
    {"jwt_leeway", K_DUR, F(jwt_leeway), 0, DAY},
    {"jwt_cookie", K_TOKEN, F(jwt_cookie), 0, 0},
    {"token_max_age", K_DUR, F(token_max_age), 1, 3650 * DAY},
    {"ticket_ttl", K_DUR, F(ticket_ttl), 1, 3600},
    {"channel_prefix", K_PREFIX, F(channel_prefix), 0, 0},
    {"history_max", K_INT, F(history_max), 1, 1000000},
    {"history_ttl", K_DUR, F(history_ttl), 1, 3650 * DAY},
    {"idempotency_window", K_DUR, F(idempotency_window), 1, 7 * DAY},
    {"publish_wait_replicas", K_INT, F(publish_wait_replicas), 0, 100},
    {"publish_wait_timeout", K_INT, F(publish_wait_timeout), 1, 600000},
    {"replay_page", K_INT, F(replay_page), 1, 1000},
    {"heartbeat", K_DUR, F(heartbeat), 1, 3600},
    {"sse_max_lifetime", K_DUR, F(sse_max_lifetime), 1, 7 * DAY},
    {"poll_interval", K_DUR, F(poll_interval), 1, DAY},
    {"poll_wait_max", K_DUR, F(poll_wait_max), 0, 3600},
    {"fcgi_idle_timeout", K_DUR, F(fcgi_idle_timeout), 1, DAY},
    {"ws_ping_interval", K_DUR, F(ws_ping_interval), 1, 3600},
    {"ws_pong_timeout", K_DUR, F(ws_pong_timeout), 1, 3600},
    {"max_connections", K_INT, F(max_connections), 0, 100000000},
    {"max_connections_per_user", K_INT, F(max_connections_per_user), 0, 1000000},
    {"max_connections_per_address", K_INT, F(max_connections_per_address), 0, 1000000},
    {"send_queue_max", K_SIZE, F(send_queue_max), 1024, 1024L * 1024 * 1024},
    {"allowed_origins", K_LIST, F(allowed_origins), 0, 0},
    {"listen", K_LISTEN, F(listen), 0, 0},
    {"socket_mode", K_MODE, F(socket_mode), 0, 07777},
    {"socket_owner", K_OPTSTR, F(socket_owner), 0, 0},
    {"threads", K_INT, F(threads), 1, 4096},
    {"workers", K_INT, F(workers), 1, 256},
    {"proxy_protocol", K_BOOL, F(proxy_protocol), 0, 1},
    {"publish_key", K_SECRET, F(publish_key), 0, 0},
    {"path_ws", K_PATH, F(path_ws), 0, 0},
    {"path_sse", K_PATH, F(path_sse), 0, 0},
    {"path_poll", K_PATH, F(path_poll), 0, 0},
    {"path_health", K_PATH, F(path_health), 0, 0},
    {"path_metrics", K_PATH, F(path_metrics), 0, 0},
    {"path_publish", K_PATH, F(path_publish), 0, 0},
    {"path_ticket", K_PATH, F(path_ticket), 0, 0},
    {"log_level", K_LEVEL, F(log_level), 0, 0},
    {"log_format", K_FORMAT, F(log_format), 0, 0},
    {"log_file", K_OPTSTR, F(log_file), 0, 0},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const char *const alg_names[] = {
    [CONF_ALG_HS256] = "HS256", [CONF_ALG_HS384] = "HS384", [CONF_ALG_HS512] = "HS512",
    [CONF_ALG_RS256] = "RS256", [CONF_ALG_ES256] = "ES256",
};

static char **str_field(struct conf *c, const struct key *k)
{
	return (char **)((char *)c + k->off);
}

static long *long_field(struct conf *c, const struct key *k)
{
	return (long *)((char *)c + k->off);
}

static char ***list_field(struct conf *c, const struct key *k)
{
	return (char ***)((char *)c + k->off);
}

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static void free_list(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

const char *conf_alg_name(enum conf_alg alg)
{
	if ((unsigned)alg < sizeof alg_names / sizeof alg_names[0])
		return alg_names[alg];
	return "unknown";
}

/* Digits only, no sign, no spaces; *end is left at the first non-digit. */
static int parse_digits(const char *s, long *out, const char **end)
{
	uint64_t v;
	size_t n = text_uint_prefix(s, strlen(s), LONG_MAX, &v);

	if (n == 0)
		return HERR_INVAL;
	*out = (long)v;
	*end = s + n;
	return 0;
}

static int parse_scaled(const char *s, long *out, const char *units, const long *mult)
{
	const char *end;
	const char *u;
	long v;
	long m = 1;

	if (s == NULL || parse_digits(s, &v, &end) != 0)
		return HERR_INVAL;
	if (*end != '\0') {
		u = strchr(units, *end);
		if (u == NULL || end[1] != '\0')
			return HERR_INVAL;
		m = mult[u - units];
	}
	if (v > LONG_MAX / m)
		return HERR_INVAL;
	*out = v * m;
	return 0;
}

int conf_parse_duration(const char *s, long *out)
{
	static const long mult[] = {1, 60, 3600, DAY, 1, 60, 3600, DAY};

	return parse_scaled(s, out, "smhdSMHD", mult);
}

int conf_parse_size(const char *s, long *out)
{
	static const long mult[] = {1L << 10, 1L << 20, 1L << 30, 1L << 10, 1L << 20, 1L << 30};

	return parse_scaled(s, out, "kmgKMG", mult);
}

static int parse_int(const char *s, long *out)
{
	const char *end;

	if (parse_digits(s, out, &end) != 0 || *end != '\0')
		return HERR_INVAL;
	return 0;
}

static int parse_mode(const char *s, long *out)
{
	long v = 0;

	if (*s == '\0')
		return HERR_INVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '7' || v > 07777)
			return HERR_INVAL;
		v = v * 8 + (*s - '0');
	}
	*out = v;
	return 0;
}

static int valid_prefix(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 64)
		return 0;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* RFC 7230 tchar: what a cookie name may hold. */
static int valid_token(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 256)
		return 0;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			 "!#$%&'*+-.^_`|~") == n;
}

static int valid_listen(const char *s)
{
	const char *colon;
	long port;

	if (strncmp(s, "unix:", 5) == 0)
		return s[5] == '/';
	colon = strrchr(s, ':');
	if (colon == NULL || parse_int(colon + 1, &port) != 0)
		return 0;
	return port >= 1 && port <= 65535;
}

/* host:port or [v6]:port (a sentinel), no unix socket. */
static int valid_node(const char *s)
{
	const char *colon = strrchr(s, ':');
	long port;

	if (colon == NULL || colon == s || strncmp(s, "unix:", 5) == 0 ||
	    parse_int(colon + 1, &port) != 0 || port < 1 || port > 65535)
		return 0;
	if (*s == '[')
		return colon[-1] == ']' && colon - s > 2;
	return memchr(s, ':', (size_t)(colon - s)) == NULL;
}

/* Split on commas and blanks; an empty list gives *out = NULL. */
static int parse_list(const char *s, char ***out)
{
	static const char sep[] = ", \t";
	char **list;
	size_t n = 0, i = 0;
	const char *p;

	for (p = s + strspn(s, sep); *p != '\0'; p += strspn(p, sep)) {
		n++;
		p += strcspn(p, sep);
	}
	if (n == 0) {
		*out = NULL;
		return 0;
	}
	list = calloc(n + 1, sizeof *list);
	if (list == NULL)
		return HERR_NOMEM;
	for (p = s + strspn(s, sep); *p != '\0'; p += strspn(p, sep)) {
		size_t len = strcspn(p, sep);

		list[i] = strndup(p, len);
		if (list[i] == NULL) {
			free_list(list);
			return HERR_NOMEM;
		}
		i++;
		p += len;
	}
	*out = list;
	return 0;
}

static void range_text(const struct key *k, char *buf, size_t len)
{
	switch (k->type) {
	case K_DUR:
		snprintf(buf, len, "%ld..%ld seconds", k->min, k->max);
		break;
	case K_SIZE:
		snprintf(buf, len, "%ldk..%ldg", k->min >> 10, k->max >> 30);
		break;
	default:
		snprintf(buf, len, "%ld..%ld", k->min, k->max);
		break;
	}
}

static const char *number_expect(const struct key *k)
{
	switch (k->type) {
	case K_DUR:
		return "a duration (seconds, or a number with unit s, m, h or d)";
	case K_SIZE:
		return "a size (bytes, or a number with unit k, m or g)";
	case K_MODE:
		return "an octal mode such as 0660";
	default:
		return k->min > 0 ? "a positive integer" : "a non-negative integer";
	}
}

static int set_number(struct conf *c, const struct key *k, const char *v, const char *src,
		      char *err, size_t errlen)
{
	char range[64];
	long n;
	int rc;

	switch (k->type) {
	case K_DUR:
		rc = conf_parse_duration(v, &n);
		break;
	case K_SIZE:
		rc = conf_parse_size(v, &n);
		break;
	case K_MODE:
		rc = parse_mode(v, &n);
		break;
	default:
		rc = parse_int(v, &n);
		break;
	}
	if (rc != 0) {
		herr_set(HERR_INVAL, err, errlen, "%s: %s: expected %s, got '%s'", src, k->name, number_expect(k),
		       v);
		return HERR_INVAL;
	}
	if (n < k->min || n > k->max) {
		range_text(k, range, sizeof range);
		herr_set(HERR_INVAL, err, errlen, "%s: %s: %s is out of range %s", src, k->name, v, range);
		return HERR_INVAL;
	}
	*long_field(c, k) = n;
	return 0;
}

struct out {
	char *buf;
	size_t len, pos;
	int full;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->pos < o->len ? o->len - o->pos : 0;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room > 0 ? o->buf + o->pos : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		o->full = 1;
	if (n > 0)
		o->pos += (size_t)n;
}

/* Why v is not acceptable for the string key k, or NULL when it is. */
static const char *string_problem(const struct key *k, const char *v)
{
	switch (k->type) {
	case K_STR:
		return *v == '\0' ? "must not be empty" : NULL;
	case K_PATH:
		return *v == '/' ? NULL : "expected a path starting with '/'";
	case K_PREFIX:
		return valid_prefix(v) ? NULL : "expected 1 to 64 of A-Z a-z 0-9 _ . -";
	case K_TOKEN:
		return valid_token(v) ? NULL
				      : "expected a cookie name (letters, digits, !#$%&'*+-.^_`|~)";
	case K_URL:
		if (strncmp(v, "redis://", 8) == 0 || strncmp(v, "unix://", 7) == 0)
			return NULL;
		return "expected redis://host:port/db or unix:///path";
	case K_LISTEN:
		if (*v == '\0' || valid_listen(v))
			return NULL;
		return "expected host:port or unix:/path";
	default:
		return NULL;
	}
}

const char *conf_redact_url(const char *url, char *buf, size_t len)
{
	const char *scheme = strstr(url, "://");
	const char *start = scheme != NULL ? scheme + 3 : url;
	const char *at = strrchr(start, '@');
	const char *p;
	struct out o = {buf, len, 0, 0};

	if (buf == NULL || len == 0)
		return "";
	buf[0] = '\0';
	out_printf(&o, "%.*s", (int)(start - url), url);
	if (at != NULL) {
		const char *colon = memchr(start, ':', (size_t)(at - start));

		/* a user name stays ("default"), the password goes */
		if (colon != NULL)
			out_printf(&o, "%.*s:***@", (int)(colon - start), start);
		else
			out_printf(&o, "***@");
		start = at + 1;
	}
	/* unix:///path?db=N&password=P */
	for (p = start; *p != '\0';) {
		const char *hit = strstr(p, "password=");

		if (hit == NULL || (hit != start && hit[-1] != '?' && hit[-1] != '&')) {
			size_t n = hit != NULL ? (size_t)(hit - p) + 9 : strlen(p);

			out_printf(&o, "%.*s", (int)n, p);
			p += n;
			continue;
		}
		out_printf(&o, "%.*s***", (int)(hit - p) + 9, p);
		p = hit + 9 + strcspn(hit + 9, "&#");
	}
	return buf;
}

static int set_string(struct conf *c, const struct key *k, const char *v, const char *src,
		      char *err, size_t errlen)
{
	char **field = str_field(c, k);
	const char *why = string_problem(k, v);
	char *copy = NULL;
	char shown[CONF_LINE_MAX];

	if (why != NULL) {
		/* A URL may hold a password: it is shown as ***. */
		if (k->type == K_URL)
			v = conf_redact_url(v, shown, sizeof shown);
		herr_set(HERR_INVAL, err, errlen, "%s: %s: %s, got '%s'", src, k->name, why, v);
		return HERR_INVAL;
	}
	/* Optional keys: an empty value unsets, so HERALD_PUBLISH_KEY= turns it off. */
	if (*v != '\0') {
		copy = strdup(v);
		if (copy == NULL) {
			herr_set(HERR_INVAL, err, errlen, "%s: %s: out of memory", src, k->name);
			return HERR_NOMEM;
		}
	}
	free(*field);
	*field = copy;
	return 0;
}

static int set_value(struct conf *c, const struct key *k, const char *v, const char *src, char *err,
		     size_t errlen)
{
	char **list;
	int i, rc;

	switch (k->type) {
	case K_INT:
	case K_DUR:
	case K_SIZE:
	case K_MODE:
		return set_number(c, k, v, src, err, errlen);
	case K_LIST:
	case K_NODES:
		rc = parse_list(v, &list);
		if (rc != 0) {
			herr_set(HERR_INVAL, err, errlen, "%s: %s: out of memory", src, k->name);
			return rc;
		}
		for (char **p = list; k->type == K_NODES && p != NULL && *p != NULL; p++) {
			if (!valid_node(*p)) {
				herr_set(HERR_INVAL, err, errlen,
					 "%s: %s: expected host:port[,host:port...], got '%s'", src,
					 k->name, *p);
				free_list(list);
				return HERR_INVAL;
			}
		}
		free_list(*list_field(c, k));
		*list_field(c, k) = list;
		return 0;
	case K_ALG:
		for (i = 0; i < (int)(sizeof alg_names / sizeof alg_names[0]); i++) {
			if (strcasecmp(v, alg_names[i]) == 0) {
				c->jwt_alg = (enum conf_alg)i;
				return 0;
			}
		}
		herr_set(HERR_INVAL, err, errlen,
		       "%s: %s: expected one of HS256, HS384, HS512, RS256, ES256, got '%s'", src,
		       k->name, v);
		return HERR_INVAL;
	case K_LEVEL:
		i = log_level_parse(v);
		if (i < 0) {
			herr_set(HERR_INVAL, err, errlen,
			       "%s: %s: expected one of error, warn, info, debug, got '%s'", src,
			       k->name, v);
			return HERR_INVAL;
		}
		c->log_level = i;
		return 0;
	case K_FORMAT:
		if (strcmp(v, "text") == 0) {
			c->log_format = CONF_LOG_TEXT;
		} else if (strcmp(v, "json") == 0) {
			c->log_format = CONF_LOG_JSON;
		} else {
			herr_set(HERR_INVAL, err, errlen, "%s: %s: expected text or json, got '%s'", src, k->name,
			       v);
			return HERR_INVAL;
		}
		return 0;
	case K_BOOL:
		if (strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0 ||
		    strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
			*long_field(c, k) = 1;
		} else if (strcasecmp(v, "off") == 0 || strcasecmp(v, "no") == 0 ||
			   strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
			*long_field(c, k) = 0;
		} else {
			herr_set(HERR_INVAL, err, errlen, "%s: %s: expected on or off, got '%s'", src,
				 k->name, v);
			return HERR_INVAL;
		}
		return 0;
	default:
		return set_string(c, k, v, src, err, errlen);
	}
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

int conf_set(struct conf *c, const char *key, const char *value, const char *source, char *err,
	     size_t errlen)
{
	const struct key *k;
	const char *b, *e;
	char *v;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (source == NULL)
		source = "command line";
	if (c == NULL || key == NULL || value == NULL) {
		herr_set(HERR_INVAL, err, errlen, "%s: missing key or value", source);
		return HERR_INVAL;
	}
	k = find_key(key);
	if (k == NULL) {
		herr_set(HERR_INVAL, err, errlen, "%s: unknown key '%s'", source, key);
		return HERR_NOTFOUND;
	}
	b = value;
	e = value + strlen(value);
	while (b < e && is_blank(*b))
		b++;
	while (e > b && is_blank(e[-1]))
		e--;
	if (e - b >= 2 && *b == '"' && e[-1] == '"') {
		b++;
		e--;
	}
	v = strndup(b, (size_t)(e - b));
	if (v == NULL) {
		herr_set(HERR_INVAL, err, errlen, "%s: %s: out of memory", source, k->name);
		return HERR_NOMEM;
	}
	rc = set_value(c, k, v, source, err, errlen);
	free(v);
	return rc;
}

int conf_init(struct conf *c)
{
	static const struct {
		const char *key, *value;
	} str_defaults[] = {
	    {"redis_url", "redis://127.0.0.1:6379/0"},
	    {"redis_sentinel_master", "mymaster"},
	    {"jwt_user_claim", "sub"},
	    {"jwt_cookie", "herald_token"},
	    {"channel_prefix", "notifications"},
	    {"path_ws", "/api/v1/ws/notifications"},
	    {"path_sse", "/api/v1/sse/notifications"},
	    {"path_poll", "/api/v1/notifications/poll"},
	    {"path_health", "/api/v1/notifications/health"},
	    {"path_metrics", "/api/v1/notifications/metrics"},
	    {"path_publish", "/api/v1/notifications/publish"},
	    {"path_ticket", "/api/v1/notifications/ticket"},
	};

	memset(c, 0, sizeof *c);
	c->jwt_alg = CONF_ALG_HS256;
	c->jwt_leeway = 30;
	c->token_max_age = DAY;
	c->ticket_ttl = 30;
	c->history_max = 1000;
	c->history_ttl = 7 * DAY;
	c->idempotency_window = 600;
	c->publish_wait_timeout = 1000;
	c->replay_page = 500;
	c->heartbeat = 15;
	c->sse_max_lifetime = 3600;
	c->poll_interval = 60;
	c->poll_wait_max = 55;
	c->fcgi_idle_timeout = 300;
	c->ws_ping_interval = 30;
	c->ws_pong_timeout = 30;
	c->max_connections = 0;
	c->max_connections_per_user = 64;
	c->send_queue_max = 256 * 1024;
	c->socket_mode = 0660;
	c->threads = 16;
	c->workers = 1;
	c->log_level = LOG_LEVEL_INFO;
	c->log_format = CONF_LOG_TEXT;
	for (size_t i = 0; i < sizeof str_defaults / sizeof str_defaults[0]; i++) {
		char **field = str_field(c, find_key(str_defaults[i].key));

		*field = strdup(str_defaults[i].value);
		if (*field == NULL) {
			conf_free(c);
			return HERR_NOMEM;
		}
	}
	return 0;
}

void conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		switch (keys[i].type) {
		case K_STR:
		case K_OPTSTR:
		case K_SECRET:
		case K_PATH:
		case K_PREFIX:
		case K_TOKEN:
		case K_URL:
		case K_LISTEN:
			free(*str_field(c, &keys[i]));
			*str_field(c, &keys[i]) = NULL;
			break;
		case K_LIST:
		case K_NODES:
			free_list(*list_field(c, &keys[i]));
			*list_field(c, &keys[i]) = NULL;
			break;
		default:
			break;
		}
	}
}

/*
 * Read one line into buf (NUL-terminated, newline dropped).  Returns its
 * length, -1 at end of file, -2 when longer than CONF_LINE_MAX (the rest of
 * the line is consumed), -3 when it holds a NUL byte.
 */
static int read_line(FILE *f, char *buf)
{
	size_t n = 0;
	int ch, bad = 0;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (ch == '\0')
			bad = -3;
		if (n < CONF_LINE_MAX)
			buf[n] = (char)ch;
		else if (bad == 0)
			bad = -2;
		n++;
	}
	if (ch == EOF && n == 0)
		return -1;
	if (bad != 0)
		return bad;
	buf[n] = '\0';
	return (int)n;
}

/*
 * Split "key = value  # comment" in place.  A quoted value runs to its
 * closing quote (so it may hold " #"); an unquoted one ends at a '#' that
 * follows a blank.  Returns NULL or why the line is malformed.
 */
static const char *split_line(char *line, char **key, char **value)
{
	char *eq, *p, *end;

	eq = strchr(line, '=');
	if (eq == NULL)
		return "expected key = value";
	*eq = '\0';
	*key = line;
	while (is_blank(**key))
		(*key)++;
	end = eq;
	while (end > *key && is_blank(end[-1]))
		*--end = '\0';
	if (**key == '\0')
		return "expected key = value";
	p = eq + 1;
	while (is_blank(*p))
		p++;
	*value = p;
	if (*p == '"') {
		end = strchr(p + 1, '"');
		if (end == NULL)
			return "unterminated quote";
		end++;
		for (p = end; is_blank(*p); p++)
			;
		if (*p != '\0' && *p != '#')
			return "text after the closing quote";
		*end = '\0';
		return NULL;
	}
	for (; *p != '\0'; p++) {
		if (*p == '#' && is_blank(p[-1])) {
			*p = '\0';
			break;
		}
	}
	return NULL;
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
	char line[CONF_LINE_MAX + 1];
	char src[CONF_LINE_MAX];
	FILE *f;
	int lineno = 0, n, rc = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	f = fopen(path, "re");
	if (f == NULL) {
		herr_set(HERR_INVAL, err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return HERR_IO;
	}
	while ((n = read_line(f, line)) != -1) {
		char *p = line, *key, *value;
		const char *why;

		lineno++;
		snprintf(src, sizeof src, "%s:%d", path, lineno);
		if (n == -2) {
			herr_set(HERR_INVAL, err, errlen, "%s: line longer than %d bytes", src, CONF_LINE_MAX);
			rc = HERR_INVAL;
			break;
		}
		if (n == -3) {
			herr_set(HERR_INVAL, err, errlen, "%s: NUL byte in line", src);
			rc = HERR_INVAL;
			break;
		}
		if (lineno == 1 && n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		while (is_blank(*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		why = split_line(p, &key, &value);
		if (why != NULL) {
			herr_set(HERR_INVAL, err, errlen, "%s: %s", src, why);
			rc = HERR_INVAL;
			break;
		}
		rc = conf_set(c, key, value, src, err, errlen);
		if (rc != 0)
			break;
	}
	if (rc == 0 && ferror(f)) {
		herr_set(HERR_INVAL, err, errlen, "%s: read error: %s", path, strerror(errno));
		rc = HERR_IO;
	}
	fclose(f);
	return rc;
}

static int in_list(const char *name, size_t len, const char *const *list)
{
	if (list == NULL)
		return 0;
	for (; *list != NULL; list++)
		if (strlen(*list) == len && strncmp(*list, name, len) == 0)
			return 1;
	return 0;
}

/*
 * Optimal string alignment distance between a and b (lengths at most
 * CONF_KEY_MAX), stopping early: any result above max is returned as max + 1.
 */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb, size_t max)
{
	size_t d[3][CONF_KEY_MAX + 1];
	size_t i, j;

	if (la > CONF_KEY_MAX || lb > CONF_KEY_MAX)
		return max + 1;
	if ((la > lb ? la - lb : lb - la) > max)
		return max + 1;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		size_t *row = d[i % 3], *up = d[(i - 1) % 3], *up2 = d[(i + 1) % 3];
		size_t low;

		row[0] = low = i;
		for (j = 1; j <= lb; j++) {
			size_t v = up[j - 1] + (a[i - 1] != b[j - 1]);

			if (up[j] + 1 < v)
				v = up[j] + 1;
			if (row[j - 1] + 1 < v)
				v = row[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    up2[j - 2] + 1 < v)
				v = up2[j - 2] + 1;
			row[j] = v;
			if (v < low)
				low = v;
		}
		if (low > max)
			return max + 1;
	}
	return d[la % 3][lb];
}

/* The key (or "config") that name, lower-cased, nearly spells, or NULL. */
static const char *near_key(const char *name, size_t len)
{
	char low[CONF_KEY_MAX];
	size_t i;

	if (len > CONF_KEY_MAX)
		return NULL;
	for (i = 0; i < len; i++)
		low[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] - 'A' + 'a') : name[i];
	if (edit_distance(low, len, "config", 6, CONF_NEAR_MISS) <= CONF_NEAR_MISS)
		return "config";
	for (i = 0; i < NKEYS; i++)
		if (edit_distance(low, len, keys[i].name, strlen(keys[i].name), CONF_NEAR_MISS) <=
		    CONF_NEAR_MISS)
			return keys[i].name;
	return NULL;
}

int conf_load_env(struct conf *c, char *const *envp, const char *const *ignore, char *err,
		  size_t errlen)
{
	static const char prefix[] = "HERALD_";
	const size_t plen = sizeof prefix - 1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (envp == NULL)
		return 0;
	for (; *envp != NULL; envp++) {
		const char *var = *envp;
		const char *eq = strchr(var, '=');
		const char *near;
		char key[CONF_KEY_MAX + 1], upper[CONF_KEY_MAX + 1];
		size_t nlen, i;
		int rc, exact = 1;

		if (strncmp(var, prefix, plen) != 0 || eq == NULL)
			continue;
		nlen = (size_t)(eq - var);
		if (in_list(var, nlen, (const char *const[]){"HERALD_CONFIG", NULL}) ||
		    in_list(var, nlen, ignore))
			continue;
		if (nlen - plen > CONF_KEY_MAX)
			continue; /* longer than any key: not a near miss either */
		for (i = 0; i < nlen - plen; i++) {
			char ch = var[plen + i];

			/* Only the upper-case spelling: HERALD_history_max is a near miss. */
			if (ch >= 'a' && ch <= 'z')
				exact = 0;
			key[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
		}
		key[i] = '\0';
		if (exact && find_key(key) != NULL) {
			rc = conf_set(c, key, eq + 1, "environment", err, errlen);
			if (rc != 0)
				return rc;
			continue;
		}
		/*
		 * Not a key.  Other software sets HERALD_ variables of its own
		 * (Kubernetes gives every pod HERALD_PORT, HERALD_SERVICE_HOST ...
		 * for a Service named herald), so only a near miss of a key is
		 * refused: that is a typo, and the value would be lost.
		 */
		near = near_key(var + plen, nlen - plen);
		if (near == NULL)
			continue;
		for (i = 0; near[i] != '\0'; i++)
			upper[i] = near[i] >= 'a' && near[i] <= 'z' ? (char)(near[i] - 'a' + 'A') : near[i];
		upper[i] = '\0';
		herr_set(HERR_INVAL, err, errlen,
			 "environment: unknown key %.*s: did you mean HERALD_%s?", (int)nlen, var,
			 upper);
		return HERR_NOTFOUND;
	}
	return 0;
}

int conf_validate(const struct conf *c, char *err, size_t errlen)
{
	const char *alg = conf_alg_name(c->jwt_alg);

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	switch (c->jwt_alg) {
	case CONF_ALG_HS256:
	case CONF_ALG_HS384:
	case CONF_ALG_HS512:
		if (c->jwt_secret == NULL && c->jwt_key_file == NULL) {
			herr_set(HERR_INVAL, err, errlen,
			       "jwt_alg %s needs a shared secret: set jwt_secret, or jwt_key_file "
			       "to a file holding it",
			       alg);
			return HERR_INVAL;
		}
		if (c->jwt_secret != NULL && c->jwt_key_file != NULL) {
			herr_set(HERR_INVAL, err, errlen,
			       "jwt_secret and jwt_key_file are both set: set only one of them");
			return HERR_INVAL;
		}
		break;
	case CONF_ALG_RS256:
	case CONF_ALG_ES256:
		if (c->jwt_key_file == NULL) {
			herr_set(HERR_INVAL, err, errlen,
			       "jwt_alg %s needs a public key: set jwt_key_file to its PEM file",
			       alg);
			return HERR_INVAL;
		}
		break;
	default:
		herr_set(HERR_INVAL, err, errlen, "jwt_alg: unknown algorithm %d", (int)c->jwt_alg);
		return HERR_INVAL;
	}
	if (c->redis_cluster) {
		struct redis_addr seeds[CLUSTER_SEEDS_MAX];

		if (c->redis_sentinels != NULL && c->redis_sentinels[0] != NULL) {
			herr_set(HERR_INVAL, err, errlen,
				 "redis_cluster and redis_sentinels are both set: a cluster fails "
				 "over by itself; unset redis_sentinels");
			return HERR_INVAL;
		}
		if (cluster_seeds(c, seeds, CLUSTER_SEEDS_MAX, err, errlen) < 0)
			return HERR_INVAL;
	}
	/* A short API key can be guessed; the value itself is never echoed. */
	if (c->publish_key != NULL &&
	    (strlen(c->publish_key) < CONF_PUBLISH_KEY_MIN ||
	     strlen(c->publish_key) > CONF_PUBLISH_KEY_MAX)) {
		herr_set(HERR_INVAL, err, errlen,
			 "publish_key: %zu bytes, expected %d to %d (a random key: openssl rand "
			 "-hex 16), or unset it to turn the publish endpoint off",
			 strlen(c->publish_key), CONF_PUBLISH_KEY_MIN, CONF_PUBLISH_KEY_MAX);
		return HERR_INVAL;
	}
	return 0;
}

int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
	int rc;

	rc = conf_init(c);
	if (rc != 0) {
		herr_set(HERR_INVAL, err, errlen, "configuration: out of memory");
		return rc;
	}
	if (path == NULL)
		path = getenv("HERALD_CONFIG");
	if (path != NULL && *path != '\0') {
		rc = conf_load_file(c, path, err, errlen);
		if (rc != 0)
			return rc;
	}
	return conf_load_env(c, environ, NULL, err, errlen);
}

/* Quote a value that would not read back as itself (a " #", outer blanks). */
static int needs_quotes(const char *v)
{
	size_t n = strlen(v);

	if (n == 0)
		return 0;
	if (is_blank(v[0]) || is_blank(v[n - 1]) || v[0] == '#')
		return 1;
	for (size_t i = 1; i < n; i++)
		if (v[i] == '#' && is_blank(v[i - 1]))
			return 1;
	return 0;
}

int conf_dump(const struct conf *c, char *buf, size_t len)
{
	struct out o = {buf, len, 0, 0};

	if (buf != NULL && len > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const void *field = (const char *)c + k->off;
		const char *s;

		out_printf(&o, "%s = ", k->name);
		switch (k->type) {
		case K_INT:
		case K_DUR:
		case K_SIZE:
			out_printf(&o, "%ld", *(const long *)field);
			break;
		case K_MODE:
			out_printf(&o, "%04lo", *(const long *)field);
			break;
		case K_LIST:
		case K_NODES:
			for (char *const *l = *(char **const *)field, *const *p = l;
			     p != NULL && *p != NULL; p++)
				out_printf(&o, "%s%s", p == l ? "" : ", ", *p);
			break;
		case K_ALG:
			out_printf(&o, "%s", conf_alg_name(c->jwt_alg));
			break;
		case K_LEVEL:
			out_printf(&o, "%s", log_level_name(c->log_level));
			break;
		case K_FORMAT:
			out_printf(&o, "%s", c->log_format == CONF_LOG_JSON ? "json" : "text");
			break;
		case K_BOOL:
			out_printf(&o, "%s", *(const long *)field ? "on" : "off");
			break;
		case K_SECRET:
			if (*(char *const *)field != NULL)
				out_printf(&o, "(set)");
			break;
		default:
			s = *(char *const *)field;
			if (s != NULL)
				out_printf(&o, needs_quotes(s) ? "\"%s\"" : "%s", s);
			break;
		}
		out_printf(&o, "\n");
	}
	if (o.full)
		return HERR_TOOBIG;
	return o.pos > INT_MAX ? HERR_TOOBIG : (int)o.pos;
}
