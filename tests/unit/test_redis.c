/*
 * The parts of redis, publish and history that need no server: URL parsing,
 * key names, EVALSHA argv, reply parsing fed hand-built redisReply trees,
 * and a connect out of descriptors (to a socket that is not there).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "suites.h"

#include "conf.h"
#include "err.h"
#include "history.h"
#include "publish.h"
#include "redis.h"

static redisReply *mk(int type)
{
	redisReply *r = calloc(1, sizeof *r);

	ck_assert_ptr_nonnull(r);
	r->type = type;
	return r;
}

static redisReply *mk_str(int type, const char *s)
{
	redisReply *r = mk(type);

	r->len = strlen(s);
	r->str = strdup(s);
	ck_assert_ptr_nonnull(r->str);
	return r;
}

static redisReply *mk_int(long long v)
{
	redisReply *r = mk(REDIS_REPLY_INTEGER);

	r->integer = v;
	return r;
}

/* An array of n elements given as arguments (ownership passes to it). */
static redisReply *mk_arr(size_t n, ...)
{
	redisReply *r = mk(REDIS_REPLY_ARRAY);
	va_list ap;

	r->elements = n;
	r->element = calloc(n + 1, sizeof *r->element);
	ck_assert_ptr_nonnull(r->element);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

/* ---- redis_url_parse ------------------------------------------------------ */

START_TEST(url_defaults)
{
	struct redis_addr a;
	char err[256];

	ck_assert_int_eq(redis_url_parse("redis://localhost", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.host, "localhost");
	ck_assert_int_eq(a.port, 6379);
	ck_assert_int_eq(a.db, 0);
	ck_assert_str_eq(a.path, "");
	ck_assert_str_eq(a.password, "");
	ck_assert_int_eq(redis_url_parse("redis://10.0.0.7:6380/3", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.host, "10.0.0.7");
	ck_assert_int_eq(a.port, 6380);
	ck_assert_int_eq(a.db, 3);
	ck_assert_int_eq(redis_url_parse("redis://h:1/", &a, err, sizeof err), 0);
	ck_assert_int_eq(a.port, 1);
	ck_assert_int_eq(a.db, 0);
}
END_TEST

START_TEST(url_password)
{
	struct redis_addr a;
	char err[256];

	ck_assert_int_eq(redis_url_parse("redis://:s3cret@h:7000/2", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.password, "s3cret");
	ck_assert_str_eq(a.host, "h");
	ck_assert_int_eq(a.port, 7000);
	ck_assert_int_eq(a.db, 2);
	/* %-escapes, and an '@' inside the password (the last '@' ends it) */
	ck_assert_int_eq(redis_url_parse("redis://:p%40ss%2Fw@rd@h", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.password, "p@ss/w@rd");
	ck_assert_str_eq(a.host, "h");
	ck_assert_int_eq(redis_url_parse("redis://default:pw@h", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.password, "pw");
	ck_assert_int_eq(redis_url_parse("redis://alice:topsecret@h", &a, err, sizeof err),
			 HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "user names"));
	ck_assert_ptr_null(strstr(err, "topsecret"));
	ck_assert_int_eq(redis_url_parse("redis://:bad%zzpw@h", &a, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_null(strstr(err, "bad%zzpw"));
	ck_assert_int_eq(redis_url_parse("redis://:x%00y@h", &a, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(redis_url_parse("redis://nocolon@h", &a, err, sizeof err), HERR_INVAL);
}
END_TEST

/* No error about a bad redis_url shows its password, whatever it holds. */
START_TEST(url_password_never_echoed)
{
	static const char *const bad[] = {
	    "redis://default:XY/ZZY@host/x", /* '/' in the password, then a bad db */
	    "redis://default:12/XY/ZZY@host:0",
	    "redis://:XY/ZZY@host/x",
	    "redis://:XY/ZZYW0rd@host:99999",
	    "redis://:XY?ZZYW0rd@host:0",
	    "redis://:XY:ZZYW0rd@host:12ab",
	    "redis://:XY/ZZY@[::1",
	    "redis://:XY/ZZY@[::1]x",
	    "redis://:XY/ZZY@",
	    "redis://alice:XY/ZZY@host",
	    "redis://:XY%zzZZY@host",
	    "redis://:XY/ZZY@host?db=1",
	    "unix:///tmp/r.sock?password=XY%zzZZY",
	    "unix:///tmp/r.sock?password=XY/ZZY&db=x",
	    "unix:///tmp/r.sock?password=XY/ZZY&nope=1",
	};
	struct redis_addr a;
	char err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		ck_assert_msg(redis_url_parse(bad[i], &a, err, sizeof err) == HERR_INVAL,
			      "%s accepted", bad[i]);
		ck_assert_msg(strstr(err, "XY") == NULL && strstr(err, "ZZY") == NULL,
			      "%s: \"%s\" shows the password", bad[i], err);
	}
	/* A '/' or '?' in the password is the password's (the last '@' ends it). */
	ck_assert_int_eq(redis_url_parse("redis://:pa/s?s@host:7000/2", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.password, "pa/s?s");
	ck_assert_str_eq(a.host, "host");
	ck_assert_int_eq(a.port, 7000);
	ck_assert_int_eq(a.db, 2);
}
END_TEST

START_TEST(url_ipv6_unix)
{
	struct redis_addr a;
	char err[256], buf[300];

	ck_assert_int_eq(redis_url_parse("redis://[::1]:6390/1", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.host, "::1");
	ck_assert_int_eq(a.port, 6390);
	ck_assert_int_eq(a.db, 1);
	ck_assert_str_eq(redis_addr_str(&a, buf, sizeof buf), "[::1]:6390");
	ck_assert_int_eq(redis_url_parse("redis://[::1]", &a, err, sizeof err), 0);
	ck_assert_int_eq(a.port, 6379);
	ck_assert_int_eq(redis_url_parse("redis://[::1", &a, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(redis_url_parse("redis://[::1]x", &a, err, sizeof err), HERR_INVAL);

	ck_assert_int_eq(redis_url_parse("unix:///run/redis/redis.sock", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.path, "/run/redis/redis.sock");
	ck_assert_str_eq(a.host, "");
	ck_assert_int_eq(a.db, 0);
	ck_assert_str_eq(redis_addr_str(&a, buf, sizeof buf), "/run/redis/redis.sock");
	ck_assert_int_eq(redis_url_parse("unix:///tmp/r.sock?db=5", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.path, "/tmp/r.sock");
	ck_assert_int_eq(a.db, 5);
	ck_assert_int_eq(
	    redis_url_parse("unix:///tmp/r.sock?db=5&password=a%26b", &a, err, sizeof err), 0);
	ck_assert_str_eq(a.password, "a&b");
	ck_assert_int_eq(redis_url_parse("unix://tmp/r.sock", &a, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "absolute"));
	ck_assert_int_eq(redis_url_parse("unix:///tmp/r.sock?dbx=1", &a, err, sizeof err),
			 HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "dbx"));
	ck_assert_int_eq(redis_url_parse("unix:///tmp/r.sock?db=x", &a, err, sizeof err),
			 HERR_INVAL);
}
END_TEST

START_TEST(url_errors)
{
	static const struct {
		const char *url, *why;
	} bad[] = {
	    {"", "empty"},
	    {"http://h:6379", "expected"},
	    {"redis://", "no host"},
	    {"redis://:6379", "no host"},
	    {"redis://h:0", "port"},
	    {"redis://h:65536", "port"},
	    {"redis://h:12ab", "port"},
	    {"redis://h:", "port"},
	    {"redis://h/x", "database"},
	    {"redis://h/-1", "database"},
	    {"redis://h/99999999999", "database"},
	    {"redis://h?db=1", "query"},
	};
	struct redis_addr a;
	char err[256];

	ck_assert_int_eq(redis_url_parse(NULL, &a, err, sizeof err), HERR_INVAL);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		ck_assert_msg(redis_url_parse(bad[i].url, &a, err, sizeof err) == HERR_INVAL,
			      "%s accepted", bad[i].url);
		ck_assert_msg(strstr(err, bad[i].why) != NULL, "%s: \"%s\" lacks \"%s\"",
			      bad[i].url, err, bad[i].why);
	}
}
END_TEST

/* ---- Redis Sentinel --------------------------------------------------------- */

/* The configuration's address: the sentinels, the master's name, redis_url's
 * password and db; its host is not used. */
START_TEST(sentinel_addr)
{
	struct conf c;
	struct redis_addr a;
	struct redis_node n;
	char err[256], buf[300];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(redis_addr_from_conf(&c, &a, err, sizeof err), 0);
	ck_assert_int_eq(a.nsentinels, 0);
	ck_assert_str_eq(redis_addr_describe(&a, buf, sizeof buf), "redis 127.0.0.1:6379");
	ck_assert_int_eq(conf_set(&c, "redis_url", "redis://:pw@ignored:1/3", NULL, err, sizeof err),
			 0);
	ck_assert_int_eq(conf_set(&c, "redis_sentinels", "s1:26379, [::1]:26380", NULL, err,
				  sizeof err),
			 0);
	ck_assert_int_eq(conf_set(&c, "redis_sentinel_password", "spw", NULL, err, sizeof err), 0);
	ck_assert_int_eq(redis_addr_from_conf(&c, &a, err, sizeof err), 0);
	ck_assert_int_eq(a.nsentinels, 2);
	ck_assert_str_eq(a.sentinel[0].host, "s1");
	ck_assert_int_eq(a.sentinel[0].port, 26379);
	ck_assert_str_eq(a.sentinel[1].host, "::1");
	ck_assert_int_eq(a.sentinel[1].port, 26380);
	ck_assert_str_eq(a.master_name, "mymaster");
	ck_assert_str_eq(a.sentinel_password, "spw");
	ck_assert_str_eq(a.password, "pw");
	ck_assert_int_eq(a.db, 3);
	ck_assert_str_eq(a.host, "");
	ck_assert_str_eq(redis_addr_str(&a, buf, sizeof buf), "master mymaster (via sentinels)");
	ck_assert_ptr_nonnull(strstr(redis_addr_describe(&a, buf, sizeof buf),
				     "master mymaster through 2 sentinels"));
	ck_assert_ptr_nonnull(strstr(buf, "its host and port are not used"));
	conf_free(&c);

	ck_assert_int_eq(redis_node_parse("h:1", &n), 0);
	ck_assert_int_eq(redis_node_parse("[fe80::1]:65535", &n), 0);
	ck_assert_str_eq(n.host, "fe80::1");
	ck_assert_int_eq(n.port, 65535);
	ck_assert_int_eq(redis_node_parse("h", &n), HERR_INVAL);
	ck_assert_int_eq(redis_node_parse("h:0", &n), HERR_INVAL);
	ck_assert_int_eq(redis_node_parse("::1:5", &n), HERR_INVAL);
	ck_assert_int_eq(redis_node_parse("[]:5", &n), HERR_INVAL);
	ck_assert_int_eq(redis_node_parse(NULL, &n), HERR_INVAL);
}
END_TEST

/* The resolver: sentinels in order, their answers, ROLE, rounds. */
START_TEST(sentinel_resolve)
{
	struct conf c;
	struct redis_addr a;
	struct redis_resolve r;
	const struct redis_node *n;
	redisReply *rep;
	char err[256], msg[512];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(conf_set(&c, "redis_sentinels", "a:1 b:2", NULL, err, sizeof err), 0);
	ck_assert_int_eq(redis_addr_from_conf(&c, &a, err, sizeof err), 0);
	conf_free(&c);
	redis_resolve_start(&r, &a);
	n = redis_resolve_next(&r);
	ck_assert_str_eq(n->host, "a");
	rep = mk(REDIS_REPLY_NIL);
	ck_assert_int_eq(redis_resolve_answer(&r, rep, msg, sizeof msg), HERR_NOTFOUND);
	ck_assert_str_eq(r.why, "sentinel a:1 knows no master named mymaster");
	freeReplyObject(rep);
	n = redis_resolve_next(&r);
	ck_assert_str_eq(n->host, "b");
	rep = mk_arr(2, mk_str(REDIS_REPLY_STRING, "10.0.0.9"), mk_str(REDIS_REPLY_STRING, "6380"));
	ck_assert_int_eq(redis_resolve_answer(&r, rep, msg, sizeof msg), 0);
	freeReplyObject(rep);
	ck_assert_str_eq(msg, "redis: sentinel b:2 says master mymaster is 10.0.0.9:6380");
	ck_assert_str_eq(r.master.host, "10.0.0.9");
	ck_assert_int_eq(r.master.port, 6380);
	ck_assert_int_eq(r.master.nsentinels, 0);
	ck_assert_ptr_null(redis_resolve_next(&r));
	for (int round = 2; round <= REDIS_RESOLVE_ROUNDS; round++) {
		ck_assert_int_eq(redis_resolve_retry(&r), 0);
		ck_assert_str_eq(redis_resolve_next(&r)->host, "a");
	}
	ck_assert_int_eq(redis_resolve_retry(&r), HERR_AGAIN);

	rep = mk_str(REDIS_REPLY_ERROR, "NOAUTH Authentication required.");
	ck_assert_int_eq(redis_resolve_answer(&r, rep, msg, sizeof msg), HERR_REDIS);
	ck_assert_ptr_nonnull(strstr(r.why, "NOAUTH"));
	freeReplyObject(rep);
	rep = mk_arr(2, mk_str(REDIS_REPLY_STRING, "h"), mk_str(REDIS_REPLY_STRING, "0"));
	ck_assert_int_eq(redis_resolve_answer(&r, rep, msg, sizeof msg), HERR_REDIS);
	freeReplyObject(rep);

	rep = mk_arr(3, mk_str(REDIS_REPLY_STRING, "master"), mk_int(0), mk(REDIS_REPLY_ARRAY));
	ck_assert_int_eq(redis_role_check(rep, "h:1", err, sizeof err), 0);
	freeReplyObject(rep);
	rep = mk_arr(2, mk_str(REDIS_REPLY_STRING, "slave"), mk_str(REDIS_REPLY_STRING, "h"));
	ck_assert_int_eq(redis_role_check(rep, "h:1", err, sizeof err), HERR_AGAIN);
	ck_assert_str_eq(err, "h:1 answered ROLE slave, not master: the sentinel's answer is stale");
	freeReplyObject(rep);
	ck_assert_int_eq(redis_role_check(NULL, "h:1", err, sizeof err), HERR_AGAIN);
}
END_TEST

START_TEST(sentinel_switch)
{
	static const char ok[] = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
	struct redis_node to;

	ck_assert_int_eq(redis_switch_parse(ok, strlen(ok), "mymaster", &to), 0);
	ck_assert_str_eq(to.host, "127.0.0.1");
	ck_assert_int_eq(to.port, 6380);
	ck_assert_int_eq(redis_switch_parse(ok, strlen(ok), "other", &to), HERR_NOTFOUND);
	ck_assert_int_eq(redis_switch_parse(ok, strlen(ok), "mymaste", &to), HERR_NOTFOUND);
	ck_assert_int_eq(redis_switch_parse("mymaster a 1 b", 14, "mymaster", &to), HERR_INVAL);
	ck_assert_int_eq(redis_switch_parse("mymaster a 1 b x", 16, "mymaster", &to), HERR_INVAL);
	ck_assert_int_eq(redis_switch_parse("mymaster a 1 b 2 c", 18, "mymaster", &to), HERR_INVAL);
}
END_TEST

/* ---- names ---------------------------------------------------------------- */

START_TEST(key_names)
{
	char buf[REDIS_KEY_MAX], prefix[300];

	ck_assert_int_eq(redis_channel(buf, sizeof buf, "notifications", "42"), 16);
	ck_assert_str_eq(buf, "notifications:42");
	ck_assert_int_eq(redis_history_key(buf, sizeof buf, "notifications", "u.x-1_Z"), 29);
	ck_assert_str_eq(buf, "notifications:u.x-1_Z:history");
	ck_assert_int_eq(redis_history_key(buf, sizeof buf, "app:n", "7"), 15);
	ck_assert_str_eq(buf, "app:n:7:history");

	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n", ""), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n", "a:b"), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n", "a b"), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "", "1"), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n\"x", "1"), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n\\x", "1"), HERR_INVAL);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, "n\nx", "1"), HERR_INVAL);
	memset(prefix, 'p', 250);
	prefix[250] = '\0';
	ck_assert_int_eq(redis_channel(buf, sizeof buf, prefix, "1234"), 255);
	ck_assert_int_eq(redis_channel(buf, sizeof buf, prefix, "12345"), HERR_TOOBIG);
	ck_assert_int_eq(redis_history_key(buf, sizeof buf, prefix, "1"), HERR_TOOBIG);
	ck_assert_int_eq(redis_channel(buf, 5, "n", "42"), 4);
	ck_assert_int_eq(redis_channel(buf, 4, "n", "42"), HERR_TOOBIG);
}
END_TEST

START_TEST(channel_user)
{
	char user[65];
	const char *ch = "notifications:42extra";

	ck_assert_int_eq(redis_channel_user("notifications:42", 16, "notifications", user), 0);
	ck_assert_str_eq(user, "42");
	/* len bounds the channel: it need not be NUL-terminated */
	ck_assert_int_eq(redis_channel_user(ch, 16, "notifications", user), 0);
	ck_assert_str_eq(user, "42");
	ck_assert_int_eq(redis_channel_user("notifications:42:history", 24, "notifications", user),
			 HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("other:42", 8, "notifications", user), HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("notifications42", 15, "notifications", user),
			 HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("notifications:", 14, "notifications", user),
			 HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("notifications", 13, "notifications", user),
			 HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("n:a b", 5, "n", user), HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("app:n:7", 7, "app:n", user), 0);
	ck_assert_str_eq(user, "7");
}
END_TEST

/* ---- scripts -------------------------------------------------------------- */

static int is_sha(const char *s)
{
	if (strlen(s) != 40)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

START_TEST(scripts_sha)
{
	ck_assert_int_eq(redis_scripts_init(), 0);
	ck_assert_int_eq(redis_scripts_init(), 0);
	ck_assert(is_sha(redis_script_publish.sha));
	ck_assert(is_sha(redis_script_history.sha));
	ck_assert_str_ne(redis_script_publish.sha, redis_script_history.sha);
	ck_assert_str_eq(redis_script_publish.name, "publish");
	ck_assert_str_eq(redis_script_history.name, "history");
}
END_TEST

/* docs/publish.lua is what other languages load: it must be the C constant. */
START_TEST(publish_lua_file)
{
	const char *data = getenv("HERALD_TESTDATA");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	ck_assert_msg(data != NULL, "HERALD_TESTDATA is not set");
	snprintf(path, sizeof path, "%s/../../docs/publish.lua", data);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	ck_assert_msg(strcmp(buf, redis_script_publish.source) == 0,
		      "%s differs from the publish script in src/redis.c", path);
	free(buf);
}
END_TEST

START_TEST(evalsha_argv)
{
	const char *kv[] = {"n:1:history", "{\"a\":1}", "1000"};
	size_t kvlen[] = {11, 4, 4};
	const char *argv[8];
	size_t argvlen[8];

	ck_assert_int_eq(redis_evalsha_argv(&redis_script_publish, 1, 2, kv, kvlen, argv, argvlen),
			 6);
	ck_assert_str_eq(argv[0], "EVALSHA");
	ck_assert_uint_eq(argvlen[0], 7);
	ck_assert_str_eq(argv[1], redis_script_publish.sha);
	ck_assert_uint_eq(argvlen[1], 40);
	ck_assert_str_eq(argv[2], "1");
	ck_assert_uint_eq(argvlen[2], 1);
	ck_assert_ptr_eq(argv[3], kv[0]);
	ck_assert_uint_eq(argvlen[4], 4); /* kvlen is used as given */
	ck_assert_ptr_eq(argv[5], kv[2]);

	ck_assert_int_eq(redis_evalsha_argv(&redis_script_history, 2, 1, kv, NULL, argv, argvlen),
			 6);
	ck_assert_str_eq(argv[2], "2");
	ck_assert_uint_eq(argvlen[4], 7);
	ck_assert_int_eq(redis_evalsha_argv(&redis_script_history, 0, 0, kv, NULL, argv, argvlen),
			 3);
	ck_assert_int_eq(redis_evalsha_argv(&redis_script_history, 10, 0, kv, NULL, argv, argvlen),
			 HERR_INVAL);
	ck_assert_int_eq(redis_evalsha_argv(&redis_script_history, -1, 0, kv, NULL, argv, argvlen),
			 HERR_INVAL);
}
END_TEST

START_TEST(noscript)
{
	redisReply *r = mk_str(REDIS_REPLY_ERROR, "NOSCRIPT No matching script. Please use EVAL.");

	ck_assert(redis_reply_is_noscript(r));
	freeReplyObject(r);
	r = mk_str(REDIS_REPLY_ERROR, "ERR herald: payload is not JSON");
	ck_assert(!redis_reply_is_noscript(r));
	freeReplyObject(r);
	r = mk_str(REDIS_REPLY_STRING, "NOSCRIPT");
	ck_assert(!redis_reply_is_noscript(r));
	freeReplyObject(r);
	ck_assert(!redis_reply_is_noscript(NULL));
}
END_TEST

/* ---- publish -------------------------------------------------------------- */

START_TEST(publish_reply)
{
	struct cursor id = {0, 0};
	char err[256];
	redisReply *r;
	int dup = -1;

	r = mk_str(REDIS_REPLY_STRING, "1732550000000-7");
	ck_assert_int_eq(publish_parse_reply(r, &id, &dup, err, sizeof err), 0);
	ck_assert_uint_eq(id.ms, 1732550000000ULL);
	ck_assert_uint_eq(id.seq, 7);
	ck_assert_int_eq(dup, 0);
	ck_assert_int_eq(publish_parse_reply(r, &id, NULL, err, sizeof err), 0);
	freeReplyObject(r);
	/* a replay: the script answers the recorded id as a status reply */
	r = mk_str(REDIS_REPLY_STATUS, "5-0");
	ck_assert_int_eq(publish_parse_reply(r, &id, &dup, err, sizeof err), 0);
	ck_assert_uint_eq(id.ms, 5);
	ck_assert_int_eq(dup, 1);
	freeReplyObject(r);
	r = mk_str(REDIS_REPLY_ERROR, "ERR herald: payload is not JSON");
	ck_assert_int_eq(publish_parse_reply(r, &id, &dup, err, sizeof err), HERR_REDIS);
	ck_assert_str_eq(err, "redis: ERR herald: payload is not JSON");
	ck_assert_int_eq(dup, 0);
	freeReplyObject(r);
	r = mk_str(REDIS_REPLY_ERROR,
		   "ERR herald: idempotency key already used for another payload");
	ck_assert_int_eq(publish_parse_reply(r, &id, &dup, err, sizeof err), HERR_INVAL);
	ck_assert_str_eq(err, "idempotency key: already used for another payload");
	freeReplyObject(r);
	r = mk_str(REDIS_REPLY_STRING, "not-an-id");
	ck_assert_int_eq(publish_parse_reply(r, &id, NULL, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	r = mk_int(12);
	ck_assert_int_eq(publish_parse_reply(r, &id, NULL, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	r = mk(REDIS_REPLY_NIL);
	ck_assert_int_eq(publish_parse_reply(r, &id, NULL, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	ck_assert_int_eq(publish_parse_reply(NULL, &id, NULL, err, sizeof err), HERR_REDIS);
}
END_TEST

START_TEST(publish_idem_keys)
{
	char err[256], key[PUBLISH_IDEM_KEY_MAX + 2], a[33], b[33];
	const char *good[] = {"k", "8e03978e-40d5-43e8-bc93-6894a57f9324", "invoice-81:paid",
			      "A.b_C:9-", "celery-task.42"};
	const char *bad[] = {"", "a b", "a/b", "caf\xc3\xa9", "k\n", "{tag}", "\"q\"", "a*"};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(publish_idem_check(good[i], strlen(good[i]), err, sizeof err) == 0,
			      "%s refused", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		ck_assert_msg(publish_idem_check(bad[i], strlen(bad[i]), err, sizeof err) ==
				  HERR_INVAL,
			      "\"%s\" accepted", bad[i]);
		ck_assert_str_eq(err, "idempotency key: must match [A-Za-z0-9_.:-]{1,128}");
	}
	ck_assert_int_eq(publish_idem_check(NULL, 0, NULL, 0), HERR_INVAL);
	memset(key, 'k', sizeof key);
	ck_assert_int_eq(publish_idem_check(key, PUBLISH_IDEM_KEY_MAX, err, sizeof err), 0);
	ck_assert_int_eq(publish_idem_check(key, PUBLISH_IDEM_KEY_MAX + 1, err, sizeof err),
			 HERR_INVAL);
	/* the length given counts, not a NUL */
	ck_assert_int_eq(publish_idem_check("ab\0c", 4, err, sizeof err), HERR_INVAL);

	ck_assert_int_eq(publish_idem_new(a, sizeof a), 0);
	ck_assert_int_eq(publish_idem_new(b, sizeof b), 0);
	ck_assert_uint_eq(strlen(a), 32);
	ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 32);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(publish_idem_check(a, strlen(a), err, sizeof err), 0);
	ck_assert_int_eq(publish_idem_new(a, 32), HERR_INVAL);
}
END_TEST

START_TEST(publish_checks)
{
	char err[256], *big;

	ck_assert_int_eq(publish_check("42", "{\"a\":[1,2]}", 11, err, sizeof err), 0);
	ck_assert_int_eq(publish_check("42", "\"s\"", 3, err, sizeof err), 0);
	ck_assert_int_eq(publish_check("a b", "{}", 2, err, sizeof err), HERR_INVAL);
	ck_assert_str_eq(err, "user: must match [A-Za-z0-9_.-]{1,64}");
	ck_assert_int_eq(publish_check(NULL, "{}", 2, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(publish_check("42", "", 0, err, sizeof err), HERR_INVAL);
	ck_assert_str_eq(err, "payload: empty");
	ck_assert_int_eq(publish_check("42", "{\"a\":NaN}", 9, err, sizeof err), HERR_INVAL);
	ck_assert_msg(strncmp(err, "payload: ", 9) == 0 && strstr(err, "at byte 5") != NULL, "%s",
		      err);
	ck_assert_int_eq(publish_check("42", "{}x", 3, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(publish_check("42", "{\"a\":\"\x01\"}", 9, err, sizeof err), HERR_INVAL);
	big = malloc(PUBLISH_PAYLOAD_MAX + 2);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', PUBLISH_PAYLOAD_MAX + 1);
	big[0] = '1';
	ck_assert_int_eq(publish_check("42", big, PUBLISH_PAYLOAD_MAX, err, sizeof err), 0);
	ck_assert_int_eq(publish_check("42", big, PUBLISH_PAYLOAD_MAX + 1, err, sizeof err),
			 HERR_TOOBIG);
	free(big);
}
END_TEST

/* One bad payload: refused before anything is sent (rc NULL is never touched). */
START_TEST(publish_batch_refuses)
{
	const char *p[] = {"{}", "[1]", "{oops}", "2"};
	size_t len[] = {2, 3, 6, 1};
	struct cursor ids[4];
	struct conf c;
	char err[256];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(publish_batch(NULL, &c, "42", p, len, 4, ids, err, sizeof err),
			 HERR_INVAL);
	ck_assert_msg(strncmp(err, "payloads[2]: ", 13) == 0, "%s", err);
	ck_assert_int_eq(publish_batch(NULL, &c, "4 2", p, len, 2, ids, err, sizeof err),
			 HERR_INVAL);
	ck_assert_int_eq(publish_one(NULL, &c, "42", "nul\0", 4, ids, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(publish_batch(NULL, &c, "42", p, len, 0, ids, err, sizeof err), 0);
	/* a malformed idempotency key: nothing sent either */
	ck_assert_int_eq(
	    publish_batch_idem(NULL, &c, "42", p, len, 2, "a b", 0, ids, NULL, err, sizeof err),
	    HERR_INVAL);
	ck_assert_str_eq(err, "idempotency key: must match [A-Za-z0-9_.:-]{1,128}");
	ck_assert_int_eq(publish_one_idem(NULL, &c, "42", "{}", 2, "", ids, NULL, err, sizeof err),
			 HERR_INVAL);
	ck_assert_str_eq(err, "idempotency key: must match [A-Za-z0-9_.:-]{1,128}");
	ck_assert_int_eq(
	    publish_one_idem(NULL, &c, "42", "{oops}", 6, "k", ids, NULL, err, sizeof err),
	    HERR_INVAL);
	ck_assert_msg(strncmp(err, "payload", 7) == 0, "%s", err);
	conf_free(&c);
}
END_TEST

/* ---- history -------------------------------------------------------------- */

START_TEST(history_argv_build)
{
	struct history_argv h;
	struct cursor since = {1732550000000ULL, 3};
	struct conf c;

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(history_argv(&h, &c, "42", &since, 50, 131072), 0);
	ck_assert_int_eq(h.argc, 7);
	ck_assert_str_eq(h.argv[0], "EVALSHA");
	ck_assert_str_eq(h.argv[1], redis_script_history.sha);
	ck_assert_str_eq(h.argv[2], "1");
	ck_assert_str_eq(h.argv[3], "notifications:42:history");
	ck_assert_uint_eq(h.argvlen[3], 24);
	ck_assert_str_eq(h.argv[4], "1732550000000-3");
	ck_assert_uint_eq(h.argvlen[4], 15);
	ck_assert_str_eq(h.argv[5], "50");
	ck_assert_uint_eq(h.argvlen[5], 2);
	ck_assert_str_eq(h.argv[6], "131072");
	ck_assert_int_eq(history_argv(&h, &c, "42", NULL, HISTORY_LIMIT_MAX, 0), 0);
	ck_assert_str_eq(h.argv[4], "");
	ck_assert_uint_eq(h.argvlen[4], 0);
	ck_assert_str_eq(h.argv[5], "1000");
	ck_assert_str_eq(h.argv[6], "0");
	ck_assert_int_eq(history_argv(&h, &c, "42", NULL, 0, 0), HERR_INVAL);
	ck_assert_int_eq(history_argv(&h, &c, "42", NULL, HISTORY_LIMIT_MAX + 1, 0), HERR_INVAL);
	ck_assert_int_eq(history_argv(&h, &c, "4:2", NULL, 10, 0), HERR_INVAL);
	ck_assert_int_eq(history_argv(&h, &c, "", NULL, 10, 0), HERR_INVAL);
	conf_free(&c);
}
END_TEST

#define ENV1 "{\"id\":\"100-0\",\"channel\":\"n:1\",\"ts\":100,\"data\":{}}"
#define ENV2 "{\"id\":\"100-1\",\"channel\":\"n:1\",\"ts\":100,\"data\":[1]}"

START_TEST(history_reply)
{
	struct history_result hr;
	char err[256];
	redisReply *r;

	r = mk_arr(5, mk_int(1), mk_str(REDIS_REPLY_STRING, "100-1"),
		   mk_str(REDIS_REPLY_STRING, "100-1"), mk_str(REDIS_REPLY_STRING, ENV1),
		   mk_str(REDIS_REPLY_STRING, ENV2));
	ck_assert_int_eq(history_parse_reply(r, &hr, err, sizeof err), 0);
	ck_assert_int_eq(hr.truncated, 1);
	ck_assert_int_eq(hr.more, 0);
	ck_assert_uint_eq(hr.page_end.seq, 1);
	ck_assert_uint_eq(hr.n, 2);
	ck_assert_uint_eq(hr.last.ms, 100);
	ck_assert_uint_eq(hr.last.seq, 1);
	ck_assert_uint_eq(hr.entries[0].id.ms, 100);
	ck_assert_uint_eq(hr.entries[0].id.seq, 0);
	ck_assert_ptr_eq(hr.entries[0].env, r->element[3]->str);
	ck_assert_uint_eq(hr.entries[0].len, strlen(ENV1));
	ck_assert_uint_eq(hr.entries[1].id.seq, 1);
	ck_assert_ptr_null(hr.reply);
	history_result_free(&hr);
	ck_assert_ptr_null(hr.entries);
	freeReplyObject(r);

	/* A page that ends before the newest entry: more. */
	r = mk_arr(4, mk_int(0), mk_str(REDIS_REPLY_STRING, "200-0"),
		   mk_str(REDIS_REPLY_STRING, "100-0"), mk_str(REDIS_REPLY_STRING, ENV1));
	ck_assert_int_eq(history_parse_reply(r, &hr, err, sizeof err), 0);
	ck_assert_int_eq(hr.more, 1);
	ck_assert_uint_eq(hr.page_end.ms, 100);
	ck_assert_uint_eq(hr.n, 1);
	history_result_free(&hr);
	freeReplyObject(r);

	r = mk_arr(3, mk_int(0), mk_str(REDIS_REPLY_STRING, ""), mk_str(REDIS_REPLY_STRING, ""));
	ck_assert_int_eq(history_parse_reply(r, &hr, err, sizeof err), 0);
	ck_assert_int_eq(hr.truncated, 0);
	ck_assert_int_eq(hr.more, 0);
	ck_assert_uint_eq(hr.n, 0);
	ck_assert_uint_eq(hr.last.ms, 0);
	ck_assert_uint_eq(hr.last.seq, 0);
	history_result_free(&hr);
	freeReplyObject(r);
	history_result_free(NULL);
}
END_TEST

START_TEST(history_reply_bad)
{
	struct history_result hr;
	char err[256];
	redisReply *bad[] = {
	    mk_str(REDIS_REPLY_STRING, "x"),
	    mk_arr(1, mk_int(0)),
	    mk_arr(2, mk_int(0), mk_str(REDIS_REPLY_STRING, "")),
	    mk_arr(3, mk_int(2), mk_str(REDIS_REPLY_STRING, ""), mk_str(REDIS_REPLY_STRING, "")),
	    mk_arr(3, mk_str(REDIS_REPLY_STRING, "0"), mk_str(REDIS_REPLY_STRING, ""),
		   mk_str(REDIS_REPLY_STRING, "")),
	    mk_arr(3, mk_int(0), mk_str(REDIS_REPLY_STRING, "x-1"), mk_str(REDIS_REPLY_STRING, "")),
	    mk_arr(3, mk_int(0), mk(REDIS_REPLY_NIL), mk_str(REDIS_REPLY_STRING, "")),
	    mk_arr(3, mk_int(0), mk_str(REDIS_REPLY_STRING, "1-0"), mk_str(REDIS_REPLY_STRING, "x")),
	    mk_arr(3, mk_int(0), mk_str(REDIS_REPLY_STRING, "1-0"), mk_int(1)),
	    mk_arr(4, mk_int(0), mk_str(REDIS_REPLY_STRING, "1-0"), mk_str(REDIS_REPLY_STRING, "1-0"),
		   mk_str(REDIS_REPLY_STRING, "{\"a\":1}")),
	    mk_arr(5, mk_int(0), mk_str(REDIS_REPLY_STRING, "1-0"), mk_str(REDIS_REPLY_STRING, "1-0"),
		   mk_str(REDIS_REPLY_STRING, ENV1), mk_int(3)),
	};
	redisReply *e = mk_str(REDIS_REPLY_ERROR, "ERR herald: since must be MS-SEQ");

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(history_parse_reply(bad[i], &hr, err, sizeof err) == HERR_INVAL,
			      "reply %zu accepted", i);
		ck_assert_ptr_null(hr.entries);
		freeReplyObject(bad[i]);
	}
	ck_assert_int_eq(history_parse_reply(e, &hr, err, sizeof err), HERR_REDIS);
	ck_assert_str_eq(err, "redis: ERR herald: since must be MS-SEQ");
	freeReplyObject(e);
	ck_assert_int_eq(history_parse_reply(NULL, &hr, err, sizeof err), HERR_REDIS);
}
END_TEST

static int nofile_calls;
static long nofile_freed;

static long nofile_hook(void)
{
	nofile_calls++;
	return nofile_freed;
}

/* A connect out of descriptors asks the hook, and retries only when it
 * freed some; other errors never reach it. */
START_TEST(nofile_retry)
{
	redis_set_nofile_hook(NULL);
	ck_assert_int_eq(redis_nofile_retry(EMFILE), 0);
	redis_set_nofile_hook(nofile_hook);
	nofile_freed = 0;
	ck_assert_int_eq(redis_nofile_retry(EMFILE), 0);
	ck_assert_int_eq(nofile_calls, 1);
	nofile_freed = 2;
	ck_assert_int_eq(redis_nofile_retry(EMFILE), 1);
	ck_assert_int_eq(redis_nofile_retry(ENFILE), 1);
	ck_assert_int_eq(nofile_calls, 3);
	ck_assert_int_eq(redis_nofile_retry(ECONNREFUSED), 0);
	ck_assert_int_eq(redis_nofile_retry(0), 0);
	ck_assert_int_eq(nofile_calls, 3);
	redis_set_nofile_hook(NULL);
}
END_TEST

static int spare_fd = -1;

static long nofile_close_spare(void)
{
	nofile_calls++;
	if (spare_fd < 0)
		return 0;
	close(spare_fd);
	spare_fd = -1;
	return 1;
}

/* redis_connect itself, out of descriptors: the hook frees one, the
 * connect is tried again (and fails for the missing socket, not EMFILE). */
START_TEST(nofile_connect)
{
	struct redis_addr a;
	struct rlimit old, low;
	redisContext *rc = NULL;
	char err[256];
	int fds[64], n = 0;

	ck_assert_int_eq(redis_url_parse("unix:///nonexistent/herald-test.sock", &a, err, sizeof err), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 48;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < 64 && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		n++;
	ck_assert_int_lt(n, 64); /* the table is full */
	spare_fd = fds[--n];
	nofile_calls = 0;
	redis_set_nofile_hook(nofile_close_spare);
	ck_assert_int_eq(redis_connect(&a, 100, &rc, err, sizeof err), HERR_REDIS);
	redis_set_nofile_hook(NULL);
	ck_assert_ptr_null(rc);
	ck_assert_int_eq(nofile_calls, 1);
	ck_assert_ptr_null(strstr(err, "Too many open files"));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	while (n > 0)
		close(fds[--n]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}
END_TEST

Suite *redis_suite(void)
{
	Suite *s = suite_create("redis");
	TCase *tc = tcase_create("url");

	tcase_add_test(tc, url_defaults);
	tcase_add_test(tc, url_password);
	tcase_add_test(tc, url_password_never_echoed);
	tcase_add_test(tc, url_ipv6_unix);
	tcase_add_test(tc, url_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("sentinel");
	tcase_add_test(tc, sentinel_addr);
	tcase_add_test(tc, sentinel_resolve);
	tcase_add_test(tc, sentinel_switch);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_test(tc, key_names);
	tcase_add_test(tc, channel_user);
	suite_add_tcase(s, tc);

	tc = tcase_create("scripts");
	tcase_add_test(tc, scripts_sha);
	tcase_add_test(tc, publish_lua_file);
	tcase_add_test(tc, evalsha_argv);
	tcase_add_test(tc, noscript);
	suite_add_tcase(s, tc);

	tc = tcase_create("publish");
	tcase_add_test(tc, publish_reply);
	tcase_add_test(tc, publish_checks);
	tcase_add_test(tc, publish_idem_keys);
	tcase_add_test(tc, publish_batch_refuses);
	suite_add_tcase(s, tc);

	tc = tcase_create("history");
	tcase_add_test(tc, history_argv_build);
	tcase_add_test(tc, history_reply);
	tcase_add_test(tc, history_reply_bad);
	suite_add_tcase(s, tc);

	tc = tcase_create("nofile");
	tcase_add_test(tc, nofile_retry);
	tcase_add_test(tc, nofile_connect);
	suite_add_tcase(s, tc);
	return s;
}
