#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "log.h"
#include "suites.h"

#define ERRLEN 512

/* A temporary file holding text; the caller unlinks it and frees the path. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/herald-conf-XXXXXX");
	int fd;
	size_t n = strlen(text);

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	return path;
}

/* Load text as a file into c (already initialised); returns the result, err filled. */
static int load_text(struct conf *c, const char *text, char *err, char **pathp)
{
	char *path = write_temp(text);
	int rc = conf_load_file(c, path, err, ERRLEN);

	unlink(path);
	if (pathp != NULL)
		*pathp = path;
	else
		free(path);
	return rc;
}

/* The error conf_load_file gives for text, with the temp path replaced by "F". */
static int file_error(const char *text, char *out)
{
	struct conf c;
	char err[ERRLEN];
	char *path;
	int rc;
	size_t plen;

	ck_assert_int_eq(conf_init(&c), 0);
	rc = load_text(&c, text, err, &path);
	conf_free(&c);
	plen = strlen(path);
	ck_assert_msg(strncmp(err, path, plen) == 0, "error '%s' does not name the file", err);
	snprintf(out, ERRLEN, "F%s", err + plen);
	free(path);
	return rc;
}

/* The line "key = value" of the dump of c, as "value"; "" if absent. */
static const char *dump_value(const struct conf *c, const char *key, char *out, size_t len)
{
	char dump[8192 + 1];
	char needle[128];
	const char *p, *end;

	dump[0] = '\n';
	ck_assert_int_gt(conf_dump(c, dump + 1, sizeof dump - 1), 0);
	snprintf(needle, sizeof needle, "\n%s = ", key);
	p = strstr(dump, needle);
	ck_assert_msg(p != NULL, "no %s in dump", key);
	p += strlen(needle);
	end = strchr(p, '\n');
	snprintf(out, len, "%.*s", (int)(end - p), p);
	return out;
}

START_TEST(test_defaults)
{
	struct conf c;

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_str_eq(c.redis_url, "redis://127.0.0.1:6379/0");
	ck_assert_int_eq(c.jwt_alg, CONF_ALG_HS256);
	ck_assert_ptr_null(c.jwt_secret);
	ck_assert_ptr_null(c.jwt_key_file);
	ck_assert_str_eq(c.jwt_user_claim, "sub");
	ck_assert_ptr_null(c.jwt_issuer);
	ck_assert_ptr_null(c.jwt_audience);
	ck_assert_int_eq(c.jwt_leeway, 30);
	ck_assert_str_eq(c.jwt_cookie, "herald_token");
	ck_assert_str_eq(c.channel_prefix, "notifications");
	ck_assert_int_eq(c.history_max, 1000);
	ck_assert_int_eq(c.history_ttl, 7 * 86400);
	ck_assert_int_eq(c.idempotency_window, 600);
	ck_assert_ptr_null(c.redis_sentinels);
	ck_assert_str_eq(c.redis_sentinel_master, "mymaster");
	ck_assert_ptr_null(c.redis_sentinel_password);
	ck_assert_int_eq(c.publish_wait_replicas, 0);
	ck_assert_int_eq(c.publish_wait_timeout, 1000);
	ck_assert_int_eq(c.heartbeat, 15);
	ck_assert_int_eq(c.sse_max_lifetime, 3600);
	ck_assert_int_eq(c.poll_interval, 60);
	ck_assert_int_eq(c.poll_wait_max, 55);
	ck_assert_int_eq(c.ws_ping_interval, 30);
	ck_assert_int_eq(c.ws_pong_timeout, 30);
	ck_assert_int_eq(c.max_connections, 0);
	ck_assert_int_eq(c.max_connections_per_user, 64);
	ck_assert_int_eq(c.send_queue_max, 256 * 1024);
	ck_assert_ptr_null(c.allowed_origins);
	ck_assert_ptr_null(c.listen);
	ck_assert_int_eq(c.socket_mode, 0660);
	ck_assert_ptr_null(c.socket_owner);
	ck_assert_int_eq(c.threads, 16);
	ck_assert_int_eq(c.workers, 1);
	ck_assert_ptr_null(c.publish_key);
	ck_assert_str_eq(c.path_ws, "/api/v1/ws/notifications");
	ck_assert_str_eq(c.path_sse, "/api/v1/sse/notifications");
	ck_assert_str_eq(c.path_poll, "/api/v1/notifications/poll");
	ck_assert_str_eq(c.path_health, "/api/v1/notifications/health");
	ck_assert_str_eq(c.path_metrics, "/api/v1/notifications/metrics");
	ck_assert_str_eq(c.path_publish, "/api/v1/notifications/publish");
	ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
	ck_assert_int_eq(c.log_format, CONF_LOG_TEXT);
	ck_assert_ptr_null(c.log_file);
	conf_free(&c);
	ck_assert_ptr_null(c.redis_url);
	conf_free(&c);
	conf_free(NULL);
}
END_TEST

/* Every key, a valid value for it, and how conf_dump writes it back. */
static const struct {
	const char *key, *value, *dumped;
} every_key[] = {
    {"redis_url", "unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"},
    {"redis_sentinels", "10.0.0.1:26379 10.0.0.2:26379,[::1]:26380",
     "10.0.0.1:26379, 10.0.0.2:26379, [::1]:26380"},
    {"redis_sentinel_master", "herald-master", "herald-master"},
    {"redis_sentinel_password", "s3nt", "(set)"},
    {"jwt_alg", "rs256", "RS256"},
    {"jwt_secret", "s3cret", "(set)"},
    {"jwt_key_file", "/etc/herald/key.pem", "/etc/herald/key.pem"},
    {"jwt_user_claim", "user_id", "user_id"},
    {"jwt_issuer", "https://issuer.example", "https://issuer.example"},
    {"jwt_audience", "planner", "planner"},
    {"jwt_leeway", "1m", "60"},
    {"jwt_cookie", "sess.token", "sess.token"},
    {"channel_prefix", "app.notif-1_x", "app.notif-1_x"},
    {"history_max", "500", "500"},
    {"history_ttl", "2d", "172800"},
    {"idempotency_window", "1h", "3600"},
    {"publish_wait_replicas", "2", "2"},
    {"publish_wait_timeout", "250", "250"},
    {"heartbeat", "20s", "20"},
    {"sse_max_lifetime", "2h", "7200"},
    {"poll_interval", "90", "90"},
    {"poll_wait_max", "0", "0"},
    {"ws_ping_interval", "10", "10"},
    {"ws_pong_timeout", "5", "5"},
    {"max_connections", "50000", "50000"},
    {"max_connections_per_user", "0", "0"},
    {"max_connections_per_address", "100", "100"},
    {"send_queue_max", "1m", "1048576"},
    {"allowed_origins", "https://a.example, https://b.example",
     "https://a.example, https://b.example"},
    {"listen", "unix:/run/herald/ws.sock", "unix:/run/herald/ws.sock"},
    {"socket_mode", "0600", "0600"},
    {"socket_owner", "www-data:herald", "www-data:herald"},
    {"threads", "128", "128"},
    {"workers", "4", "4"},
    {"proxy_protocol", "On", "on"},
    {"publish_key", "k3y", "(set)"},
    {"path_ws", "/ws", "/ws"},
    {"path_sse", "/sse", "/sse"},
    {"path_poll", "/poll", "/poll"},
    {"path_health", "/health", "/health"},
    {"path_metrics", "/metrics", "/metrics"},
    {"path_publish", "/publish", "/publish"},
    {"log_level", "DEBUG", "debug"},
    {"log_format", "json", "json"},
    {"log_file", "/var/log/herald.log", "/var/log/herald.log"},
};

#define NEVERY (sizeof every_key / sizeof every_key[0])

START_TEST(test_every_key_from_file)
{
	struct conf c;
	char text[256], err[ERRLEN], got[256];

	ck_assert_int_eq(conf_init(&c), 0);
	snprintf(text, sizeof text, "%s = %s\n", every_key[_i].key, every_key[_i].value);
	ck_assert_msg(load_text(&c, text, err, NULL) == 0, "%s", err);
	ck_assert_str_eq(dump_value(&c, every_key[_i].key, got, sizeof got), every_key[_i].dumped);
	conf_free(&c);
}
END_TEST

START_TEST(test_every_key_from_env)
{
	struct conf c;
	char var[256], err[ERRLEN], got[256];
	char *envp[] = {var, NULL};
	size_t i;

	ck_assert_int_eq(conf_init(&c), 0);
	i = (size_t)snprintf(var, sizeof var, "HERALD_");
	for (const char *k = every_key[_i].key; *k != '\0'; k++)
		var[i++] = *k >= 'a' && *k <= 'z' ? (char)(*k - 'a' + 'A') : *k;
	snprintf(var + i, sizeof var - i, "=%s", every_key[_i].value);
	ck_assert_msg(conf_load_env(&c, envp, NULL, err, ERRLEN) == 0, "%s", err);
	ck_assert_str_eq(dump_value(&c, every_key[_i].key, got, sizeof got), every_key[_i].dumped);
	conf_free(&c);
}
END_TEST

START_TEST(test_every_key_from_flag)
{
	struct conf c;
	char err[ERRLEN], got[256];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_msg(
	    conf_set(&c, every_key[_i].key, every_key[_i].value, "command line", err, ERRLEN) == 0,
	    "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(dump_value(&c, every_key[_i].key, got, sizeof got), every_key[_i].dumped);
	conf_free(&c);
}
END_TEST

START_TEST(test_fields_set)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(load_text(&c,
				   "jwt_alg = es256\n"
				   "socket_mode = 660\n"
				   "log_level = warn\n"
				   "log_format = json\n"
				   "history_ttl = 1h\n"
				   "send_queue_max = 1g\n",
				   err, NULL),
			 0);
	ck_assert_int_eq(c.jwt_alg, CONF_ALG_ES256);
	ck_assert_int_eq(c.socket_mode, 0660);
	ck_assert_int_eq(c.log_level, LOG_LEVEL_WARN);
	ck_assert_int_eq(c.log_format, CONF_LOG_JSON);
	ck_assert_int_eq(c.history_ttl, 3600);
	ck_assert_int_eq(c.send_queue_max, 1L << 30);
	conf_free(&c);
}
END_TEST

START_TEST(test_precedence)
{
	struct conf c;
	char err[ERRLEN];
	char *envp[] = {"HERALD_HISTORY_MAX=20", "HERALD_HEARTBEAT=25", NULL};

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(load_text(&c, "history_max = 10\nheartbeat = 5\nthreads = 8\n", err, NULL),
			 0);
	ck_assert_int_eq(c.history_max, 10);
	ck_assert_int_eq(conf_load_env(&c, envp, NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.history_max, 20);
	ck_assert_int_eq(c.heartbeat, 25);
	ck_assert_int_eq(c.threads, 8);
	ck_assert_int_eq(conf_set(&c, "history_max", "30", "command line", err, ERRLEN), 0);
	ck_assert_int_eq(c.history_max, 30);
	ck_assert_int_eq(c.heartbeat, 25);
	conf_free(&c);
}
END_TEST

START_TEST(test_conf_load)
{
	struct conf c;
	char err[ERRLEN];
	char *path = write_temp("history_max = 10\nworkers = 3\n");

	setenv("HERALD_WORKERS", "5", 1);
	ck_assert_msg(conf_load(&c, path, err, ERRLEN) == 0, "%s", err);
	ck_assert_int_eq(c.history_max, 10);
	ck_assert_int_eq(c.workers, 5);
	conf_free(&c);

	/* No path: $HERALD_CONFIG names the file, and is not itself a key. */
	unsetenv("HERALD_WORKERS");
	setenv("HERALD_CONFIG", path, 1);
	ck_assert_msg(conf_load(&c, NULL, err, ERRLEN) == 0, "%s", err);
	ck_assert_int_eq(c.workers, 3);
	conf_free(&c);

	/* Kubernetes' service links and other tools' HERALD_ variables do not
	 * stop the programs, with no list of their names in the library. */
	setenv("HERALD_PORT", "tcp://10.0.0.1:80", 1);
	setenv("HERALD_SERVICE_HOST", "10.0.0.1", 1);
	setenv("HERALD_WS_SERVICE_PORT", "8000", 1);
	setenv("HERALD_SOMETHING_OF_MINE", "1", 1);
	ck_assert_msg(conf_load(&c, NULL, err, ERRLEN) == 0, "%s", err);
	ck_assert_int_eq(c.workers, 3);
	conf_free(&c);
	unsetenv("HERALD_PORT");
	unsetenv("HERALD_SERVICE_HOST");
	unsetenv("HERALD_WS_SERVICE_PORT");
	unsetenv("HERALD_SOMETHING_OF_MINE");

	setenv("HERALD_HISTROY_MAX", "1", 1);
	ck_assert_int_eq(conf_load(&c, NULL, err, ERRLEN), HERR_NOTFOUND);
	ck_assert_str_eq(err, "environment: unknown key HERALD_HISTROY_MAX: did you mean "
			      "HERALD_HISTORY_MAX?");
	conf_free(&c);
	unsetenv("HERALD_HISTROY_MAX");

	unlink(path);
	ck_assert_int_eq(conf_load(&c, NULL, err, ERRLEN), HERR_IO);
	conf_free(&c);
	unsetenv("HERALD_CONFIG");
	free(path);
}
END_TEST

START_TEST(test_env)
{
	struct conf c;
	char err[ERRLEN];
	char *envp[] = {"PATH=/bin",
			"HERALD_CONFIG=/nonexistent",
			"HERALD_MINE=1",
			"HERALDX=1",
			"HERALD_JWT_SECRET=\"quoted\"",
			"HERALD_NOEQUALS",
			"HERALD_LISTEN= 127.0.0.1:9000 ",
			NULL};
	const char *ignore[] = {"HERALD_JWT_SECRE", NULL};
	char *ignored_near[] = {"HERALD_JWT_SECRE=1", NULL};
	char *typo[] = {"HERALD_PORT=tcp://10.0.0.1:80", "HERALD_JWT_SECRTE=s", NULL};
	char *lower[] = {"HERALD_history_max=5", NULL};
	char *kube[] = {"HERALD_PORT=tcp://10.0.0.1:80",
			"HERALD_PORT_8000_TCP=tcp://10.0.0.1:8000",
			"HERALD_PORT_8000_TCP_PROTO=tcp",
			"HERALD_PORT_8000_TCP_PORT=8000",
			"HERALD_PORT_8000_TCP_ADDR=10.0.0.1",
			"HERALD_SERVICE_HOST=10.0.0.1",
			"HERALD_SERVICE_PORT=8000",
			"HERALD_WS_PORT=tcp://10.0.0.2:8000",
			"HERALD_WS_SERVICE_HOST=10.0.0.2",
			"HERALD_WS_SERVICE_PORT=8000",
			"HERALD_FCGI_SERVICE_HOST=10.0.0.3",
			"HERALD_BUILDDIR=/b",
			"HERALD_TESTDATA=/t",
			"HERALD_BROWSER_NODE_DIR=/n",
			"HERALD_A_VERY_LONG_NAME_THAT_IS_LONGER_THAN_ANY_KEY_OF_HERALD_AT_ALL_X=1",
			"HERALD_HEARTBEAT=7",
			NULL};
	char *bad_value[] = {"HERALD_HISTORY_MAX=abc", NULL};
	char *empty[] = {"HERALD_PUBLISH_KEY=", NULL};

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_msg(conf_load_env(&c, envp, ignore, err, ERRLEN) == 0, "%s", err);
	ck_assert_str_eq(c.jwt_secret, "quoted");
	ck_assert_str_eq(c.listen, "127.0.0.1:9000");

	/* Unknown names are skipped, whoever set them; the keys among them apply. */
	ck_assert_msg(conf_load_env(&c, kube, NULL, err, ERRLEN) == 0, "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(c.heartbeat, 7);
	/* A near miss of a key is a typo: refused, with the key it misses. */
	ck_assert_int_eq(conf_load_env(&c, typo, NULL, err, ERRLEN), HERR_NOTFOUND);
	ck_assert_str_eq(err, "environment: unknown key HERALD_JWT_SECRTE: did you mean "
			      "HERALD_JWT_SECRET?");
	ck_assert_int_eq(conf_load_env(&c, lower, NULL, err, ERRLEN), HERR_NOTFOUND);
	ck_assert_str_eq(err, "environment: unknown key HERALD_history_max: did you mean "
			      "HERALD_HISTORY_MAX?");
	ck_assert_int_eq(conf_load_env(&c, ignored_near, NULL, err, ERRLEN), HERR_NOTFOUND);
	ck_assert_int_eq(conf_load_env(&c, ignored_near, ignore, err, ERRLEN), 0);
	{
		char *confg[] = {"HERALD_CONFG=/etc/herald.conf", NULL};
		char *swapped[] = {"HERALD_JWT_LEEWYA=5", NULL};
		char *two[] = {"HERALD_WROKER=2", NULL};

		ck_assert_int_eq(conf_load_env(&c, confg, NULL, err, ERRLEN), HERR_NOTFOUND);
		ck_assert_str_eq(err, "environment: unknown key HERALD_CONFG: did you mean "
				      "HERALD_CONFIG?");
		ck_assert_int_eq(conf_load_env(&c, swapped, NULL, err, ERRLEN), HERR_NOTFOUND);
		ck_assert_ptr_nonnull(strstr(err, "did you mean HERALD_JWT_LEEWAY?"));
		ck_assert_int_eq(conf_load_env(&c, two, NULL, err, ERRLEN), HERR_NOTFOUND);
		ck_assert_ptr_nonnull(strstr(err, "did you mean HERALD_WORKERS?"));
	}
	ck_assert_int_eq(conf_load_env(&c, bad_value, NULL, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "environment: history_max: expected a positive integer, got 'abc'");
	ck_assert_int_eq(c.history_max, 1000);

	ck_assert_int_eq(conf_set(&c, "publish_key", "x", NULL, err, ERRLEN), 0);
	ck_assert_str_eq(c.publish_key, "x");
	ck_assert_int_eq(conf_load_env(&c, empty, NULL, err, ERRLEN), 0);
	ck_assert_ptr_null(c.publish_key);
	ck_assert_int_eq(conf_load_env(&c, NULL, NULL, err, ERRLEN), 0);
	conf_free(&c);
}
END_TEST

START_TEST(test_file_syntax)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_msg(load_text(&c,
				"\xef\xbb\xbf# a comment\n"
				"\n"
				"   # an indented comment\n"
				"\t  history_max\t=\t42   \r\n"
				"jwt_secret = abc#def\n"
				"jwt_issuer = iss # trailing comment\n"
				"jwt_audience = \"a #b \"  # quoted, then a comment\n"
				"jwt_user_claim=\"user_id\"\n"
				"socket_owner = \"\"\n"
				"jwt_cookie = x\t# tab before the comment\n"
				"log_file = /var/log/x.log",
				err, NULL) == 0,
		      "%s", err);
	ck_assert_int_eq(c.history_max, 42);
	ck_assert_str_eq(c.jwt_secret, "abc#def");
	ck_assert_str_eq(c.jwt_issuer, "iss");
	ck_assert_str_eq(c.jwt_audience, "a #b ");
	ck_assert_str_eq(c.jwt_user_claim, "user_id");
	ck_assert_ptr_null(c.socket_owner);
	ck_assert_str_eq(c.jwt_cookie, "x");
	ck_assert_str_eq(c.log_file, "/var/log/x.log");
	conf_free(&c);
}
END_TEST

START_TEST(test_string_replaced)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(load_text(&c,
				   "jwt_secret = one\njwt_secret = two\n"
				   "redis_url = redis://h:1/0\nredis_url = redis://h:2/0\n"
				   "allowed_origins = a b\nallowed_origins = c\n",
				   err, NULL),
			 0);
	ck_assert_str_eq(c.jwt_secret, "two");
	ck_assert_str_eq(c.redis_url, "redis://h:2/0");
	ck_assert_str_eq(c.allowed_origins[0], "c");
	ck_assert_ptr_null(c.allowed_origins[1]);
	/* A failed set keeps the old value. */
	ck_assert_int_eq(conf_set(&c, "redis_url", "http://x", "t", err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(c.redis_url, "redis://h:2/0");
	conf_free(&c);
}
END_TEST

static const struct {
	const char *text, *err;
	int rc;
} file_errors[] = {
    {"# one\n# two\nhistroy_max = 5\n", "F:3: unknown key 'histroy_max'", HERR_NOTFOUND},
    {"#\n#\n#\n#\n#\n#\n#\n#\n#\n#\n#\nhistory_max = abc\n",
     "F:12: history_max: expected a positive integer, got 'abc'", HERR_INVAL},
    {"history_max = -5\n", "F:1: history_max: expected a positive integer, got '-5'", HERR_INVAL},
    {"history_max = 1.5\n", "F:1: history_max: expected a positive integer, got '1.5'", HERR_INVAL},
    {"history_max = \n", "F:1: history_max: expected a positive integer, got ''", HERR_INVAL},
    {"history_max = 0\n", "F:1: history_max: 0 is out of range 1..1000000", HERR_INVAL},
    {"history_max = 1000001\n", "F:1: history_max: 1000001 is out of range 1..1000000", HERR_INVAL},
    {"history_max = 99999999999999999999\n",
     "F:1: history_max: expected a positive integer, got '99999999999999999999'", HERR_INVAL},
    {"max_connections = x\n", "F:1: max_connections: expected a non-negative integer, got 'x'",
     HERR_INVAL},
    {"heartbeat = 0\n", "F:1: heartbeat: 0 is out of range 1..3600 seconds", HERR_INVAL},
    {"heartbeat = 2h\n", "F:1: heartbeat: 2h is out of range 1..3600 seconds", HERR_INVAL},
    {"heartbeat = 5x\n",
     "F:1: heartbeat: expected a duration (seconds, or a number with unit s, m, h or d), got "
     "'5x'",
     HERR_INVAL},
    {"poll_wait_max = 3601\n", "F:1: poll_wait_max: 3601 is out of range 0..3600 seconds",
     HERR_INVAL},
    {"idempotency_window = 0\n", "F:1: idempotency_window: 0 is out of range 1..604800 seconds",
     HERR_INVAL},
    {"idempotency_window = 8d\n", "F:1: idempotency_window: 8d is out of range 1..604800 seconds",
     HERR_INVAL},
    {"threads = 0\n", "F:1: threads: 0 is out of range 1..4096", HERR_INVAL},
    {"threads = 4097\n", "F:1: threads: 4097 is out of range 1..4096", HERR_INVAL},
    {"workers = 257\n", "F:1: workers: 257 is out of range 1..256", HERR_INVAL},
    {"proxy_protocol = v2\n", "F:1: proxy_protocol: expected on or off, got 'v2'", HERR_INVAL},
    {"send_queue_max = 1023\n", "F:1: send_queue_max: 1023 is out of range 1k..1g", HERR_INVAL},
    {"send_queue_max = 2g\n", "F:1: send_queue_max: 2g is out of range 1k..1g", HERR_INVAL},
    {"send_queue_max = 1t\n",
     "F:1: send_queue_max: expected a size (bytes, or a number with unit k, m or g), got '1t'",
     HERR_INVAL},
    {"socket_mode = 0968\n", "F:1: socket_mode: expected an octal mode such as 0660, got '0968'",
     HERR_INVAL},
    {"socket_mode = 17777\n", "F:1: socket_mode: 17777 is out of range 0..4095", HERR_INVAL},
    {"jwt_alg = none\n",
     "F:1: jwt_alg: expected one of HS256, HS384, HS512, RS256, ES256, got 'none'", HERR_INVAL},
    {"log_level = verbose\n",
     "F:1: log_level: expected one of error, warn, info, debug, got 'verbose'", HERR_INVAL},
    {"log_format = xml\n", "F:1: log_format: expected text or json, got 'xml'", HERR_INVAL},
    {"channel_prefix = a b\n",
     "F:1: channel_prefix: expected 1 to 64 of A-Z a-z 0-9 _ . -, got 'a b'", HERR_INVAL},
    {"channel_prefix = a:b\n",
     "F:1: channel_prefix: expected 1 to 64 of A-Z a-z 0-9 _ . -, got 'a:b'", HERR_INVAL},
    {"channel_prefix = \"\"\n",
     "F:1: channel_prefix: expected 1 to 64 of A-Z a-z 0-9 _ . -, got ''", HERR_INVAL},
    {"path_sse = api/sse\n", "F:1: path_sse: expected a path starting with '/', got 'api/sse'",
     HERR_INVAL},
    {"redis_url = http://x\n",
     "F:1: redis_url: expected redis://host:port/db or unix:///path, got 'http://x'", HERR_INVAL},
    {"listen = localhost\n", "F:1: listen: expected host:port or unix:/path, got 'localhost'",
     HERR_INVAL},
    {"listen = h:0\n", "F:1: listen: expected host:port or unix:/path, got 'h:0'", HERR_INVAL},
    {"listen = unix:rel\n", "F:1: listen: expected host:port or unix:/path, got 'unix:rel'",
     HERR_INVAL},
    {"jwt_cookie = a;b\n",
     "F:1: jwt_cookie: expected a cookie name (letters, digits, !#$%&'*+-.^_`|~), got 'a;b'",
     HERR_INVAL},
    {"jwt_user_claim = \"\"\n", "F:1: jwt_user_claim: must not be empty, got ''", HERR_INVAL},
    {"history_max 5\n", "F:1: expected key = value", HERR_INVAL},
    {"= 5\n", "F:1: expected key = value", HERR_INVAL},
    {"jwt_secret = \"abc\n", "F:1: unterminated quote", HERR_INVAL},
    {"jwt_secret = \"abc\" def\n", "F:1: text after the closing quote", HERR_INVAL},
    {"\n\nhistory_max = 1\0002\n", "F:3: NUL byte in line", HERR_INVAL},
};

#define NFILE_ERRORS (sizeof file_errors / sizeof file_errors[0])

START_TEST(test_file_errors)
{
	char err[ERRLEN];
	const char *text = file_errors[_i].text;
	char buf[256];

	/* The NUL case: the text runs past its first NUL to the final newline. */
	if (strstr(file_errors[_i].err, "NUL") != NULL) {
		size_t n = strlen(text) + 1;

		n += strlen(text + n);
		ck_assert_uint_lt(n, sizeof buf);
		memcpy(buf, text, n);
		buf[n] = '\0';
		{
			char *path = strdup("/tmp/herald-conf-XXXXXX");
			struct conf c;
			int fd = mkstemp(path);
			int rc;

			ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
			close(fd);
			ck_assert_int_eq(conf_init(&c), 0);
			rc = conf_load_file(&c, path, err, ERRLEN);
			conf_free(&c);
			unlink(path);
			ck_assert_int_eq(rc, file_errors[_i].rc);
			ck_assert_str_eq(err + strlen(path), file_errors[_i].err + 1);
			free(path);
		}
		return;
	}
	ck_assert_int_eq(file_error(text, err), file_errors[_i].rc);
	ck_assert_str_eq(err, file_errors[_i].err);
}
END_TEST

START_TEST(test_long_line)
{
	size_t n = 4096 + 64;
	char *text = malloc(n + 1);
	char err[ERRLEN];
	struct conf c;

	/* Exactly 4096 bytes is fine. */
	memset(text, ' ', n);
	memcpy(text, "jwt_secret = ", 13);
	memset(text + 13, 'a', 4096 - 13);
	text[4096] = '\n';
	text[4097] = '\0';
	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_msg(load_text(&c, text, err, NULL) == 0, "%s", err);
	ck_assert_uint_eq(strlen(c.jwt_secret), 4096 - 13);
	conf_free(&c);

	/* One more byte on line 2 is an error naming that line. */
	memcpy(text, "# x\n", 4);
	memcpy(text + 4, "jwt_secret = ", 13);
	memset(text + 17, 'a', 4097 - 13);
	strcpy(text + 4 + 4097, "\nhistory_max = 5\n");
	ck_assert_int_eq(file_error(text, err), HERR_INVAL);
	ck_assert_str_eq(err, "F:2: line longer than 4096 bytes");
	free(text);
}
END_TEST

START_TEST(test_missing_file)
{
	struct conf c;
	char err[ERRLEN];
	char expect[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_load_file(&c, "/nonexistent/herald.conf", err, ERRLEN), HERR_IO);
	snprintf(expect, sizeof expect, "/nonexistent/herald.conf: cannot open: %s",
		 strerror(ENOENT));
	ck_assert_str_eq(err, expect);
	conf_free(&c);
}
END_TEST

/* A redis_url that is refused is echoed with its password as ***. */
START_TEST(test_url_redacted)
{
	static const struct {
		const char *url, *shown;
	} cases[] = {
	    {"rediss://:S3cretPW@cache.example:6380/1", "rediss://:***@cache.example:6380/1"},
	    {"redis:/:S3cretPW@h", "redis:***@h"},
	    {"http://default:S3cretPW@h", "http://default:***@h"},
	    {"tcp://S3cretPW@h", "tcp://***@h"},
	    {"unix:/run/r.sock?db=1&password=S3cretPW&x=1", "unix:/run/r.sock?db=1&password=***&x=1"},
	    {"S3cretPW@host", "***@host"},
	    {"localhost:6379", "localhost:6379"},
	};
	struct conf c;
	char err[ERRLEN], buf[256];

	ck_assert_int_eq(conf_init(&c), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_str_eq(conf_redact_url(cases[i].url, buf, sizeof buf), cases[i].shown);
		ck_assert_int_eq(conf_set(&c, "redis_url", cases[i].url, "environment", err, ERRLEN),
				 HERR_INVAL);
		ck_assert_msg(strstr(err, "S3cret") == NULL, "%s", err);
		ck_assert_msg(strstr(err, cases[i].shown) != NULL, "%s", err);
	}
	ck_assert_str_eq(c.redis_url, "redis://127.0.0.1:6379/0");
	ck_assert_str_eq(conf_redact_url("unix:///r.sock?password=x", buf, 12), "unix:///r.s");
	conf_free(&c);
}
END_TEST

START_TEST(test_conf_set_errors)
{
	struct conf c;
	char err[ERRLEN];
	char small[16];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "histroy_max", "5", "command line", err, ERRLEN),
			 HERR_NOTFOUND);
	ck_assert_str_eq(err, "command line: unknown key 'histroy_max'");
	ck_assert_int_eq(conf_set(&c, "threads", "many", NULL, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "command line: threads: expected a positive integer, got 'many'");
	ck_assert_int_eq(conf_set(&c, "threads", NULL, NULL, err, ERRLEN), HERR_INVAL);
	/* The message is cut, and NUL-terminated, when err is short. */
	ck_assert_int_eq(conf_set(&c, "threads", "many", NULL, small, sizeof small), HERR_INVAL);
	ck_assert_uint_eq(strlen(small), sizeof small - 1);
	ck_assert_int_eq(conf_set(&c, "threads", "many", NULL, NULL, 0), HERR_INVAL);
	conf_free(&c);
}
END_TEST

START_TEST(test_values)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "jwt_alg", "hs384", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.jwt_alg, CONF_ALG_HS384);
	ck_assert_int_eq(conf_set(&c, "jwt_alg", "HS512", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.jwt_alg, CONF_ALG_HS512);
	ck_assert_int_eq(conf_set(&c, "socket_mode", "0", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.socket_mode, 0);
	ck_assert_int_eq(conf_set(&c, "socket_mode", "7777", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.socket_mode, 07777);
	ck_assert_int_eq(
	    conf_set(&c, "channel_prefix",
		     "a123456789b123456789c123456789d123456789e123456789f123456789abcd", NULL, err,
		     ERRLEN),
	    0);
	ck_assert_int_eq(
	    conf_set(&c, "channel_prefix",
		     "a123456789b123456789c123456789d123456789e123456789f123456789abcde", NULL, err,
		     ERRLEN),
	    HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "listen", "[::1]:8000", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "listen", ":8000", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "listen", "h:65536", NULL, err, ERRLEN), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "listen", "", NULL, err, ERRLEN), 0);
	ck_assert_ptr_null(c.listen);
	ck_assert_int_eq(conf_set(&c, "redis_url", "", NULL, err, ERRLEN), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "send_queue_max", "1k", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.send_queue_max, 1024);
	ck_assert_int_eq(conf_set(&c, "poll_wait_max", "1h", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.poll_wait_max, 3600);
	ck_assert_int_eq(conf_set(&c, "heartbeat", "  \"1m\"  ", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(c.heartbeat, 60);
	conf_free(&c);
}
END_TEST

static const struct {
	const char *text;
	long value; /* -1: HERR_INVAL */
} durations[] = {
    {"15", 15},
    {"15s", 15},
    {"2m", 120},
    {"1h", 3600},
    {"7d", 604800},
    {"0", 0},
    {"3H", 10800},
    {"-1", -1},
    {"1x", -1},
    {"", -1},
    {"s", -1},
    {"1 s", -1},
    {" 1", -1},
    {"+1", -1},
    {"1ss", -1},
    {"1.5h", -1},
    {"9223372036854775807", 9223372036854775807L},
    {"9223372036854775808", -1},
    {"106751991167301d", -1},
    {"106751991167d", 106751991167L * 86400},
};

START_TEST(test_durations)
{
	long v = 12345;
	int rc = conf_parse_duration(durations[_i].text, &v);

	if (durations[_i].value < 0) {
		ck_assert_msg(rc == HERR_INVAL, "'%s' accepted", durations[_i].text);
		ck_assert_int_eq(v, 12345);
	} else {
		ck_assert_msg(rc == 0, "'%s' refused", durations[_i].text);
		ck_assert_int_eq(v, durations[_i].value);
	}
}
END_TEST

static const struct {
	const char *text;
	long value;
} sizes[] = {
    {"256k", 262144},
    {"1m", 1048576},
    {"1g", 1073741824},
    {"512", 512},
    {"2K", 2048},
    {"1G", 1L << 30},
    {"0", 0},
    {"1kb", -1},
    {"k", -1},
    {"", -1},
    {"-1k", -1},
    {"1t", -1},
    {"1.5m", -1},
    {"99999999999999999g", -1},
    {"8589934591g", 8589934591L << 30},
};

START_TEST(test_sizes)
{
	long v = 12345;
	int rc = conf_parse_size(sizes[_i].text, &v);

	if (sizes[_i].value < 0) {
		ck_assert_msg(rc == HERR_INVAL, "'%s' accepted", sizes[_i].text);
		ck_assert_int_eq(v, 12345);
	} else {
		ck_assert_msg(rc == 0, "'%s' refused", sizes[_i].text);
		ck_assert_int_eq(v, sizes[_i].value);
	}
	ck_assert_int_eq(conf_parse_size(NULL, &v), HERR_INVAL);
	ck_assert_int_eq(conf_parse_duration(NULL, &v), HERR_INVAL);
}
END_TEST

START_TEST(test_origins)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "allowed_origins", "https://a.example", NULL, err, ERRLEN),
			 0);
	ck_assert_str_eq(c.allowed_origins[0], "https://a.example");
	ck_assert_ptr_null(c.allowed_origins[1]);

	ck_assert_int_eq(conf_set(&c, "allowed_origins", " a,b  c ,, d\te,", NULL, err, ERRLEN), 0);
	ck_assert_str_eq(c.allowed_origins[0], "a");
	ck_assert_str_eq(c.allowed_origins[1], "b");
	ck_assert_str_eq(c.allowed_origins[2], "c");
	ck_assert_str_eq(c.allowed_origins[3], "d");
	ck_assert_str_eq(c.allowed_origins[4], "e");
	ck_assert_ptr_null(c.allowed_origins[5]);

	ck_assert_int_eq(conf_set(&c, "allowed_origins", " , ", NULL, err, ERRLEN), 0);
	ck_assert_ptr_null(c.allowed_origins);
	ck_assert_int_eq(conf_set(&c, "allowed_origins", "", NULL, err, ERRLEN), 0);
	ck_assert_ptr_null(c.allowed_origins);
	conf_free(&c);
}
END_TEST

/* Redis Sentinel and publish_wait_*: lists of host:port, ranges, unset. */
START_TEST(test_sentinel_keys)
{
	static const char *const bad[] = {
	    "10.0.0.1",	  "10.0.0.1:",	   ":26379",	    "h:0",	   "h:65536",
	    "h:26379x",	  "unix:/run/s",   "::1:26379",	    "[::1]26379",  "[]:26379",
	    "h:1 nope",
	};
	char *envp[] = {"HERALD_REDIS_SENTINELS=127.0.0.1:26379, 127.0.0.1:26380",
			"HERALD_REDIS_SENTINEL_MASTER=m1", "HERALD_PUBLISH_WAIT_REPLICAS=1",
			"HERALD_PUBLISH_WAIT_TIMEOUT=500", NULL};
	struct conf c;
	char err[ERRLEN], want[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_load_env(&c, envp, NULL, err, ERRLEN), 0);
	ck_assert_str_eq(c.redis_sentinels[0], "127.0.0.1:26379");
	ck_assert_str_eq(c.redis_sentinels[1], "127.0.0.1:26380");
	ck_assert_ptr_null(c.redis_sentinels[2]);
	ck_assert_str_eq(c.redis_sentinel_master, "m1");
	ck_assert_int_eq(c.publish_wait_replicas, 1);
	ck_assert_int_eq(c.publish_wait_timeout, 500);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(conf_set(&c, "redis_sentinels", bad[i], "t", err, ERRLEN) ==
				  HERR_INVAL,
			      "%s accepted", bad[i]);
		ck_assert_msg(strncmp(err, "t: redis_sentinels: expected host:port", 38) == 0, "%s",
			      err);
		/* A refused value leaves the list as it was. */
		ck_assert_str_eq(c.redis_sentinels[1], "127.0.0.1:26380");
	}
	ck_assert_int_eq(conf_set(&c, "redis_sentinels", "h:1 nope", "t", err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "t: redis_sentinels: expected host:port[,host:port...], got 'nope'");
	/* Empty turns Sentinel off. */
	ck_assert_int_eq(conf_set(&c, "redis_sentinels", "", "t", err, ERRLEN), 0);
	ck_assert_ptr_null(c.redis_sentinels);
	ck_assert_int_eq(conf_set(&c, "redis_sentinel_master", "", "t", err, ERRLEN), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "publish_wait_replicas", "101", "t", err, ERRLEN),
			 HERR_INVAL);
	ck_assert_str_eq(err, "t: publish_wait_replicas: 101 is out of range 0..100");
	ck_assert_int_eq(conf_set(&c, "publish_wait_timeout", "0", "t", err, ERRLEN), HERR_INVAL);
	snprintf(want, sizeof want, "t: publish_wait_timeout: 0 is out of range 1..600000");
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(conf_set(&c, "publish_wait_timeout", "1s", "t", err, ERRLEN), HERR_INVAL);
	conf_free(&c);
	ck_assert_ptr_null(c.redis_sentinels);
}
END_TEST

START_TEST(test_validate)
{
	struct conf c;
	char err[ERRLEN];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "jwt_alg HS256 needs a shared secret: set jwt_secret, or "
			      "jwt_key_file to a file holding it");
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "s", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(conf_set(&c, "jwt_key_file", "/k", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "jwt_secret and jwt_key_file are both set: set only one of them");
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), 0);

	ck_assert_int_eq(conf_set(&c, "jwt_alg", "RS256", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "jwt_key_file", "", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "jwt_alg RS256 needs a public key: set jwt_key_file to its PEM file");
	ck_assert_int_eq(conf_set(&c, "jwt_alg", "ES256", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_str_eq(err, "jwt_alg ES256 needs a public key: set jwt_key_file to its PEM file");
	/* A secret is no public key. */
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "s", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "jwt_alg", "HS512", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), 0);
	conf_free(&c);
}
END_TEST

/* A publish key shorter than 16 bytes (or absurdly long) is refused, unechoed. */
START_TEST(test_validate_publish_key)
{
	struct conf c;
	char err[ERRLEN], big[CONF_PUBLISH_KEY_MAX + 2];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "s", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "publish_key", "short-k3y", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "publish_key: 9 bytes, expected 16 to 1024"));
	ck_assert_ptr_null(strstr(err, "short-k3y"));
	ck_assert_int_eq(conf_set(&c, "publish_key", "0123456789abcde", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "publish_key", "0123456789abcdef", NULL, err, ERRLEN), 0);
	ck_assert_msg(conf_validate(&c, err, ERRLEN) == 0, "%s", err);
	memset(big, 'k', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ck_assert_int_eq(conf_set(&c, "publish_key", big, NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), HERR_INVAL);
	big[sizeof big - 2] = '\0';
	ck_assert_int_eq(conf_set(&c, "publish_key", big, NULL, err, ERRLEN), 0);
	ck_assert_msg(conf_validate(&c, err, ERRLEN) == 0, "%s", err);
	/* Unset: the endpoint is off, nothing to check. */
	ck_assert_int_eq(conf_set(&c, "publish_key", "", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_validate(&c, err, ERRLEN), 0);
	conf_free(&c);
}
END_TEST

START_TEST(test_dump)
{
	struct conf c, back;
	char dump[8192], again[8192], err[ERRLEN], small[64];
	char *path;
	int n;

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "topsecret", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "publish_key", "apikey42", NULL, err, ERRLEN), 0);
	n = conf_dump(&c, dump, sizeof dump);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(dump), (size_t)n);
	ck_assert_ptr_null(strstr(dump, "topsecret"));
	ck_assert_ptr_null(strstr(dump, "apikey42"));
	ck_assert_ptr_nonnull(strstr(dump, "\njwt_secret = (set)\n"));
	ck_assert_ptr_nonnull(strstr(dump, "\npublish_key = (set)\n"));
	ck_assert_ptr_nonnull(strstr(dump, "\nsocket_mode = 0660\n"));
	ck_assert_ptr_nonnull(strstr(dump, "\njwt_issuer = \n"));
	ck_assert_int_eq(strncmp(dump, "redis_url = redis://127.0.0.1:6379/0\n", 37), 0);

	/* What conf_dump writes reads back as the same configuration. */
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "publish_key", "", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "jwt_issuer", "\" a #b \"", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "allowed_origins", "x y", NULL, err, ERRLEN), 0);
	ck_assert_int_eq(conf_set(&c, "socket_mode", "0007", NULL, err, ERRLEN), 0);
	ck_assert_int_gt(conf_dump(&c, dump, sizeof dump), 0);
	ck_assert_int_eq(conf_init(&back), 0);
	ck_assert_msg(load_text(&back, dump, err, &path) == 0, "%s", err);
	free(path);
	ck_assert_str_eq(back.jwt_issuer, " a #b ");
	ck_assert_int_gt(conf_dump(&back, again, sizeof again), 0);
	ck_assert_str_eq(dump, again);

	ck_assert_int_eq(conf_dump(&c, small, sizeof small), HERR_TOOBIG);
	ck_assert_uint_lt(strlen(small), sizeof small);
	conf_free(&back);
	conf_free(&c);
}
END_TEST

START_TEST(test_alg_name)
{
	ck_assert_str_eq(conf_alg_name(CONF_ALG_HS256), "HS256");
	ck_assert_str_eq(conf_alg_name(CONF_ALG_HS384), "HS384");
	ck_assert_str_eq(conf_alg_name(CONF_ALG_HS512), "HS512");
	ck_assert_str_eq(conf_alg_name(CONF_ALG_RS256), "RS256");
	ck_assert_str_eq(conf_alg_name(CONF_ALG_ES256), "ES256");
	ck_assert_str_eq(conf_alg_name((enum conf_alg)99), "unknown");
}
END_TEST

/* herald.conf.example loads as the defaults and names every key. */
START_TEST(test_example_file)
{
	const char *data = getenv("HERALD_TESTDATA");
	char path[4096], err[ERRLEN], dump[8192], defaults[8192];
	struct conf c;
	FILE *f;
	char *text;
	long size;

	ck_assert_msg(data != NULL, "set HERALD_TESTDATA to tests/data");
	snprintf(path, sizeof path, "%s/../../herald.conf.example", data);
	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_gt(conf_dump(&c, defaults, sizeof defaults), 0);
	ck_assert_msg(conf_load_file(&c, path, err, ERRLEN) == 0, "%s", err);
	ck_assert_int_gt(conf_dump(&c, dump, sizeof dump), 0);
	ck_assert_str_eq(dump, defaults);
	conf_free(&c);

	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)size + 2);
	text[0] = '\n';
	ck_assert_int_eq(fread(text + 1, 1, (size_t)size, f), size);
	fclose(f);
	for (char *line = defaults; *line != '\0';) {
		char *eq = strstr(line, " = ");
		char needle[128];

		snprintf(needle, sizeof needle, "\n# %.*s =", (int)(eq - line), line);
		ck_assert_msg(strstr(text, needle) != NULL, "the example has no '%s'", needle + 1);
		line = strchr(line, '\n') + 1;
	}
	free(text);
}
END_TEST

Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");

	tcase_add_test(tc, test_defaults);
	tcase_add_loop_test(tc, test_every_key_from_file, 0, NEVERY);
	tcase_add_loop_test(tc, test_every_key_from_env, 0, NEVERY);
	tcase_add_loop_test(tc, test_every_key_from_flag, 0, NEVERY);
	tcase_add_test(tc, test_fields_set);
	tcase_add_test(tc, test_precedence);
	tcase_add_test(tc, test_conf_load);
	tcase_add_test(tc, test_env);
	tcase_add_test(tc, test_file_syntax);
	tcase_add_test(tc, test_string_replaced);
	tcase_add_loop_test(tc, test_file_errors, 0, NFILE_ERRORS);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_conf_set_errors);
	tcase_add_test(tc, test_url_redacted);
	tcase_add_test(tc, test_values);
	tcase_add_loop_test(tc, test_durations, 0, sizeof durations / sizeof durations[0]);
	tcase_add_loop_test(tc, test_sizes, 0, sizeof sizes / sizeof sizes[0]);
	tcase_add_test(tc, test_origins);
	tcase_add_test(tc, test_sentinel_keys);
	tcase_add_test(tc, test_validate);
	tcase_add_test(tc, test_validate_publish_key);
	tcase_add_test(tc, test_dump);
	tcase_add_test(tc, test_alg_name);
	tcase_add_test(tc, test_example_file);
	suite_add_tcase(s, tc);
	return s;
}
