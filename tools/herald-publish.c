/*
 * herald-publish - publish JSON notifications to a user through the Herald
 * publish script (history + live delivery), from the command line or a
 * stream of lines on stdin.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cluster.h"
#include "conf.h"
#include "cursor.h"
#include "err.h"
#include "log.h"
#include "publish.h"
#include "redis.h"
#include "revoke.h"
#include "text.h"

#define PROG	       "herald-publish"
#define LINE_MAX_BYTES (1024 * 1024)
#define BATCH_MAX      1000
#define TIMEOUT_MS     10000
/* After "not acknowledged" without --idempotency-key: a plain retry may store twice. */
#define NOKEY " (this publish had no --idempotency-key: give one to retry safely)"

enum {
	EXIT_OK = 0,
	EXIT_INPUT = 1,
	EXIT_USAGE = 2,
	EXIT_REDIS = 3,
	EXIT_NOTACK = 4,
};

/* The payloads read from stdin, all held until every one has been checked. */
struct lines {
	char **v;
	size_t *len;
	size_t n, cap;
};

static void usage(FILE *f)
{
	fputs("Usage: " PROG " [OPTIONS] USER [PAYLOAD | -]\n"
	      "       " PROG " [OPTIONS] --disconnect USER\n"
	      "       " PROG " [OPTIONS] --revoke-before USER [UNIX_TIME]\n"
	      "       " PROG " [OPTIONS] --revoke-jti USER JTI [EXPIRES_UNIX_TIME]\n"
	      "\n"
	      "Publish a JSON notification to user USER through the Herald publish script:\n"
	      "it is appended to the user's history (PREFIX:USER:history) and delivered live\n"
	      "on channel PREFIX:USER.  Prints each new message id on its own line.\n"
	      "\n"
	      "With PAYLOAD, publish that one JSON text.  With '-' (or no PAYLOAD), read one\n"
	      "JSON payload per line from standard input: blank lines are skipped, lines may\n"
	      "be up to 1 MiB, payloads up to 64 KiB.  Every line is checked before anything\n"
	      "is published; then they go out in pipelines of up to 1000, in order.\n"
	      "\n"
	      "Log a user out everywhere: every herald-ws and herald-fcgi process sharing the\n"
	      "Redis is told on the control channel PREFIX:__herald:control and closes the\n"
	      "user's connections at once (WebSocket close 4403 or 4401, SSE `event:\n"
	      "disconnect`):\n"
	      "  --disconnect       close every connection of USER now (herald.js stops);\n"
	      "                     new connections are not refused\n"
	      "  --revoke-before    refuse tokens of USER issued (iat) before UNIX_TIME\n"
	      "                     (default: now), and close the connections that use one;\n"
	      "                     kept in PREFIX:USER:nbf until UNIX_TIME + token_max_age\n"
	      "  --revoke-jti       refuse the token of USER whose jti is JTI, and close its\n"
	      "                     connections; kept in PREFIX:USER:revoked:JTI until\n"
	      "                     EXPIRES_UNIX_TIME (the token's exp; default: now +\n"
	      "                     token_max_age)\n"
	      "Each prints how many Herald processes got the command.\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE      read the configuration FILE (default: $HERALD_CONFIG)\n"
	      "  -u, --redis-url URL    redis://[:password@]host[:port][/db] or\n"
	      "                         unix:///path[?db=N]; overrides redis_url\n"
	      "  -k, --idempotency-key KEY\n"
	      "                         name this publish, so that running the same command\n"
	      "                         again within idempotency_window stores nothing and\n"
	      "                         prints the same ids; KEY is [A-Za-z0-9_.:-]{1,128};\n"
	      "                         with stdin, payload N (from 0) is recorded as KEY:N\n"
	      "      --check-config     check the configuration (file, environment, flags)\n"
	      "                         and exit: 0 when it is valid, 2 when not\n"
	      "  -h, --help             show this help and exit\n"
	      "  -V, --version          show the version and exit\n"
	      "\n"
	      "Configuration keys used: redis_url, redis_sentinels, redis_sentinel_master,\n"
	      "redis_sentinel_password, redis_cluster, redis_cluster_nodes, channel_prefix,\n"
	      "history_max, history_ttl, idempotency_window, publish_wait_replicas,\n"
	      "publish_wait_timeout, token_max_age.\n"
	      "\n"
	      "Environment:\n"
	      "  HERALD_CONFIG          the configuration file when --config is not given\n"
	      "  HERALD_<KEY>           any configuration key, e.g. HERALD_REDIS_URL;\n"
	      "                         overrides the file, --redis-url overrides both\n"
	      "\n"
	      "Examples:\n"
	      "  " PROG " 42 '{\"title\":\"Meeting moved\",\"at\":\"10:30\"}'\n"
	      "  printf '%s\\n' '{\"n\":1}' '{\"n\":2}' | " PROG
	      " -u redis://127.0.0.1:6379/0 42 -\n"
	      "  " PROG " -k invoice-81-paid 42 '{\"title\":\"Invoice paid\"}'   # safe to retry\n"
	      "  " PROG " --revoke-before 42      # password changed: old tokens out everywhere\n"
	      "  seq 5000 | sed 's/.*/{\"n\":&}/' | " PROG " 42 -   # 5,000 test notifications\n"
	      "\n"
	      "Exit status:\n"
	      "  0  published\n"
	      "  1  bad input: user id, payload, input line, time or jti (nothing published)\n"
	      "  2  usage or configuration error\n"
	      "  3  Redis error (unreachable, or it refused the script)\n"
	      "  4  published on the master but not acknowledged by publish_wait_replicas\n"
	      "     replicas within publish_wait_timeout (the ids are printed): running\n"
	      "     the same command again with the same --idempotency-key is safe\n",
	      f);
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->len);
}

static int lines_push(struct lines *l, char *s, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? 2 * l->cap : 256;
		char **v = realloc(l->v, cap * sizeof *v);
		size_t *lens;

		if (v == NULL)
			return HERR_NOMEM;
		l->v = v;
		lens = realloc(l->len, cap * sizeof *lens);
		if (lens == NULL)
			return HERR_NOMEM;
		l->len = lens;
		l->cap = cap;
	}
	l->v[l->n] = s;
	l->len[l->n] = len;
	l->n++;
	return 0;
}

static int is_blank_line(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

/* Read and check every line of stdin; returns an exit status. */
static int read_lines(const char *user, struct lines *l)
{
	char *line = NULL, why[256];
	size_t cap = 0;
	unsigned long lineno = 0;
	ssize_t got;
	int status = EXIT_OK;

	while ((got = getline(&line, &cap, stdin)) >= 0) {
		size_t len = (size_t)got;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > LINE_MAX_BYTES) {
			fprintf(stderr, PROG ": line %lu: longer than 1 MiB\n", lineno);
			status = EXIT_INPUT;
			break;
		}
		if (is_blank_line(line, len))
			continue;
		if (publish_check(user, line, len, why, sizeof why) != 0) {
			fprintf(stderr, PROG ": line %lu: %s\n", lineno, why);
			status = EXIT_INPUT;
			break;
		}
		line[len] = '\0';
		if (lines_push(l, line, len) != 0) {
			fprintf(stderr, PROG ": out of memory after %lu lines\n", lineno);
			status = EXIT_INPUT;
			break;
		}
		line = NULL;
		cap = 0;
	}
	if (status == EXIT_OK && ferror(stdin)) {
		fprintf(stderr, PROG ": reading standard input: %s\n", strerror(errno));
		status = EXIT_INPUT;
	}
	free(line);
	return status;
}

/*
 * Publish n payloads in pipelines, printing ids; returns an exit status.
 * With key (stdin), payload N of the input is recorded as KEY:N across the
 * pipelines, so the same input published again stores nothing.
 */
static int publish_all(redisContext *rc, const struct conf *c, const char *user,
		       const char *const *payloads, const size_t *lens, size_t n, const char *key)
{
	char err[512], buf[CURSOR_STR_MAX];
	struct cursor *ids;
	int status = EXIT_OK;

	if (n == 0)
		return EXIT_OK;
	ids = malloc((n < BATCH_MAX ? n : BATCH_MAX) * sizeof *ids);
	if (ids == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return EXIT_REDIS;
	}
	for (size_t off = 0; off < n && status == EXIT_OK; off += BATCH_MAX) {
		size_t m = n - off < BATCH_MAX ? n - off : BATCH_MAX;
		int rv = publish_batch_idem(rc, c, user, payloads + off, lens + off, m, key, off,
					    ids, NULL, err, sizeof err);

		/* Print what was published even when a later payload failed. */
		for (size_t i = 0; i < m; i++) {
			if (ids[i].ms == 0 && ids[i].seq == 0)
				continue;
			cursor_format(&ids[i], buf, sizeof buf);
			puts(buf);
		}
		/* Payloads were checked already: what fails now is Redis. */
		if (rv != 0) {
			fprintf(stderr, PROG ": %s%s\n", err, rv == HERR_AGAIN && key == NULL ? NOKEY : "");
			status = rv == HERR_AGAIN ? EXIT_NOTACK : EXIT_REDIS;
		}
		if (fflush(stdout) != 0) {
			fprintf(stderr, PROG ": writing standard output: %s\n", strerror(errno));
			status = EXIT_REDIS;
		}
	}
	free(ids);
	return status;
}

/* Publish the one PAYLOAD argument; with key, recorded as KEY itself. */
static int publish_arg(redisContext *rc, const struct conf *c, const char *user,
		       const char *payload, const char *key)
{
	char err[512], buf[CURSOR_STR_MAX];
	struct cursor id;
	int rv = publish_one_idem(rc, c, user, payload, strlen(payload), key, &id, NULL, err,
				  sizeof err);

	if (rv != 0 && rv != HERR_AGAIN) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_REDIS;
	}
	cursor_format(&id, buf, sizeof buf);
	if (puts(buf) == EOF || fflush(stdout) != 0) {
		fprintf(stderr, PROG ": writing standard output: %s\n", strerror(errno));
		return EXIT_REDIS;
	}
	if (rv == HERR_AGAIN) {
		fprintf(stderr, PROG ": %s%s\n", err, key == NULL ? NOKEY : "");
		return EXIT_NOTACK;
	}
	return EXIT_OK;
}

/*
 * --disconnect, --revoke-before, --revoke-jti: the key (if any) and the
 * control message in one MULTI/EXEC, so no process sees the message
 * without the key being there for the connections that come after.
 */
static int revoke_run(redisContext *rc, const struct conf *c, const struct revoke_cmd *cmd,
		      long long expires)
{
	char chan[REDIS_KEY_MAX], key[REDIS_KEY_MAX], msg[REVOKE_MSG_MAX + 1], val[24], exat[24];
	const char *argv[5];
	size_t argvlen[5];
	int cn, kn = 0, mn, nreplies = 1, status = EXIT_OK;
	redisReply *r = NULL;
	long long receivers = -1;

	cn = revoke_channel(chan, sizeof chan, c->channel_prefix);
	mn = revoke_format(cmd, msg, sizeof msg);
	if (cmd->kind == REVOKE_BEFORE)
		kn = revoke_nbf_key(key, sizeof key, c->channel_prefix, cmd->user);
	else if (cmd->kind == REVOKE_JTI)
		kn = revoke_jti_key(key, sizeof key, c->channel_prefix, cmd->user, cmd->jti);
	if (cn < 0 || mn < 0 || kn < 0) {
		fprintf(stderr, PROG ": channel_prefix: empty, too long, or holds '\"', '\\' "
				"or a control character\n");
		return EXIT_USAGE;
	}
	if (cmd->kind != REVOKE_DISCONNECT) {
		snprintf(val, sizeof val, "%lld", cmd->kind == REVOKE_BEFORE ? cmd->before : 1LL);
		snprintf(exat, sizeof exat, "%lld", expires);
		redisAppendCommand(rc, "MULTI");
		argv[0] = "SET";
		argv[1] = key;
		argv[2] = val;
		argv[3] = "EXAT";
		argv[4] = exat;
		for (int i = 0; i < 5; i++)
			argvlen[i] = strlen(argv[i]);
		redisAppendCommandArgv(rc, 5, argv, argvlen);
		nreplies = 4;
	}
	argv[0] = "PUBLISH";
	argv[1] = chan;
	argv[2] = msg;
	argvlen[0] = 7;
	argvlen[1] = (size_t)cn;
	argvlen[2] = (size_t)mn;
	redisAppendCommandArgv(rc, 3, argv, argvlen);
	if (nreplies > 1)
		redisAppendCommand(rc, "EXEC");
	for (int i = 0; i < nreplies; i++) {
		if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL) {
			fprintf(stderr, PROG ": redis: %s\n", rc->errstr[0] ? rc->errstr : "no reply");
			return EXIT_REDIS;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, PROG ": redis: %s\n", r->str);
			status = EXIT_REDIS;
		} else if (i == nreplies - 1) {
			/* PUBLISH's count, alone or last of EXEC's array */
			const redisReply *p = r;

			if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
				p = r->element[1];
			if (p->type == REDIS_REPLY_INTEGER)
				receivers = p->integer;
			else if (status == EXIT_OK) {
				fprintf(stderr, PROG ": redis: the transaction was not executed\n");
				status = EXIT_REDIS;
			}
		}
		freeReplyObject(r);
	}
	if (status == EXIT_OK)
		printf("%s: %s sent to %lld Herald process%s\n", cmd->user, msg, receivers,
		       receivers == 1 ? "" : "es");
	return status;
}

/* Sentinel events of redis_connect: only the failures are worth a line here. */
static void note_warn(void *ud, int level, const char *msg)
{
	(void)ud;
	if (level <= LOG_LEVEL_WARN)
		fprintf(stderr, PROG ": %s\n", msg);
}

/*
 * The connection for user: redis_url's server (the caller frees it), or in
 * Redis Cluster mode the master serving the user's slot, borrowed from cl
 * (every key of a user carries the user's hash tag: one slot).
 */
static int connect_for(const struct redis_addr *addr, struct cluster *cl, const struct conf *c,
		       const char *user, redisContext **rc, char *err, size_t errlen)
{
	char key[REDIS_KEY_MAX];
	int n;

	if (cl == NULL)
		return redis_connect(addr, TIMEOUT_MS, rc, err, errlen);
	n = redis_channel(key, sizeof key, c->channel_prefix, user);
	if (n < 0)
		return herr_set(HERR_INVAL, err, errlen, "channel_prefix or user: invalid");
	*rc = cluster_conn(cl, key, (size_t)n, err, errlen);
	return *rc != NULL ? 0 : HERR_REDIS;
}

/* A unix time argument: digits, at most AUTH_EXP_MAX.  0 or -1. */
static int parse_time(const char *s, long long *out)
{
	uint64_t v;

	if (text_parse_uint(s, strlen(s), (uint64_t)AUTH_EXP_MAX, &v) != 0)
		return -1;
	*out = (long long)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"redis-url", required_argument, NULL, 'u'},
	    {"idempotency-key", required_argument, NULL, 'k'},
	    {"check-config", no_argument, NULL, 'C'},
	    {"disconnect", no_argument, NULL, 'D'},
	    {"revoke-before", no_argument, NULL, 'B'},
	    {"revoke-jti", no_argument, NULL, 'J'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *config = NULL, *url = NULL, *user, *payload = "-", *idem = NULL;
	struct conf c;
	struct redis_addr addr;
	struct lines l = {NULL, NULL, 0, 0};
	redisContext *rc = NULL;
	struct cluster *cl = NULL;
	char err[512], key[REDIS_KEY_MAX];
	int opt, status, check_only = 0, revoke = 0;
	struct revoke_cmd rcmd;
	long long expires = 0;

	/* A Redis that goes away mid-pipeline is an error message and exit 3,
	 * not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt_long(argc, argv, "c:u:k:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'k':
			idem = optarg;
			break;
		case 'C':
			check_only = 1;
			break;
		case 'D':
			revoke = REVOKE_DISCONNECT;
			break;
		case 'B':
			revoke = REVOKE_BEFORE;
			break;
		case 'J':
			revoke = REVOKE_JTI;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			puts(PROG " " PACKAGE_VERSION);
			return EXIT_OK;
		default:
			fputs("Try '" PROG " --help'.\n", stderr);
			return EXIT_USAGE;
		}
	}
	if (revoke != 0 && !check_only) {
		int nargs = argc - optind, max = revoke == REVOKE_DISCONNECT ? 1
						 : revoke == REVOKE_BEFORE    ? 2
									      : 3;
		int min = revoke == REVOKE_JTI ? 2 : 1;
		long long now = (long long)time(NULL);

		if (nargs < min || nargs > max) {
			fprintf(stderr, PROG ": expected %s\nTry '" PROG " --help'.\n",
				revoke == REVOKE_DISCONNECT ? "--disconnect USER"
				: revoke == REVOKE_BEFORE   ? "--revoke-before USER [UNIX_TIME]"
							    : "--revoke-jti USER JTI [EXPIRES_UNIX_TIME]");
			return EXIT_USAGE;
		}
		memset(&rcmd, 0, sizeof rcmd);
		rcmd.kind = revoke;
		user = argv[optind];
		if (!auth_user_valid(user, strlen(user))) {
			fprintf(stderr, PROG ": user \"%s\": must match [A-Za-z0-9_.-]{1,64}\n", user);
			return EXIT_INPUT;
		}
		memcpy(rcmd.user, user, strlen(user) + 1);
		if (revoke == REVOKE_BEFORE) {
			rcmd.before = now;
			if (nargs == 2 && parse_time(argv[optind + 1], &rcmd.before) != 0) {
				fprintf(stderr, PROG ": UNIX_TIME \"%s\": seconds since the epoch\n",
					argv[optind + 1]);
				return EXIT_INPUT;
			}
		} else if (revoke == REVOKE_JTI) {
			const char *jti = argv[optind + 1];

			if (!auth_jti_valid(jti, strlen(jti))) {
				fprintf(stderr, PROG ": jti \"%s\": 1 to %d printable ASCII characters "
						"without spaces\n", jti, AUTH_JTI_MAX);
				return EXIT_INPUT;
			}
			memcpy(rcmd.jti, jti, strlen(jti) + 1);
			if (nargs == 3 && parse_time(argv[optind + 2], &expires) != 0) {
				fprintf(stderr, PROG ": EXPIRES_UNIX_TIME \"%s\": seconds since the "
						"epoch\n", argv[optind + 2]);
				return EXIT_INPUT;
			}
		}
	} else if (!check_only && (argc - optind < 1 || argc - optind > 2)) {
		fprintf(stderr, PROG ": expected USER [PAYLOAD | -]\nTry '" PROG " --help'.\n");
		return EXIT_USAGE;
	}
	user = check_only ? NULL : argv[optind];
	if (!check_only && argc - optind == 2)
		payload = argv[optind + 1];

	if (conf_load(&c, config, err, sizeof err) != 0 ||
	    (url != NULL && conf_set(&c, "redis_url", url, "command line", err, sizeof err) != 0)) {
		fprintf(stderr, PROG ": %s\n", err);
		conf_free(&c);
		return EXIT_USAGE;
	}
	if (redis_addr_from_conf(&c, &addr, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		conf_free(&c);
		return EXIT_USAGE;
	}
	addr.note = note_warn;
	redis_set_cluster((int)c.redis_cluster);
	if (c.redis_cluster && cluster_new(&cl, &c, TIMEOUT_MS, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		conf_free(&c);
		return EXIT_USAGE;
	}
	if (check_only && cl != NULL) {
		printf(PROG ": configuration OK (Redis Cluster, keys P:{USER}:history; channel_prefix "
			    "%s)\n",
		       c.channel_prefix);
		cluster_free(cl);
		conf_free(&c);
		return EXIT_OK;
	}
	if (check_only && addr.nsentinels > 0) {
		printf(PROG ": configuration OK (%s; channel_prefix %s)\n",
		       redis_addr_describe(&addr, err, sizeof err), c.channel_prefix);
		conf_free(&c);
		return EXIT_OK;
	}
	if (check_only) {
		printf(PROG ": configuration OK (redis_url %s, channel_prefix %s)\n", c.redis_url,
		       c.channel_prefix);
		conf_free(&c);
		return EXIT_OK;
	}

	if (revoke != 0) {
		/* Kept until every token it can refuse has expired anyway. */
		if (revoke == REVOKE_BEFORE)
			expires = rcmd.before + c.token_max_age;
		else if (revoke == REVOKE_JTI && expires == 0)
			expires = (long long)time(NULL) + c.token_max_age;
		if (connect_for(&addr, cl, &c, user, &rc, err, sizeof err) != 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = EXIT_REDIS;
		} else {
			status = revoke_run(rc, &c, &rcmd, expires);
		}
		if (cl == NULL)
			redisFree(rc);
		cluster_free(cl);
		conf_free(&c);
		return status;
	}
	/* Check everything before connecting: bad input never reaches Redis. */
	if (idem != NULL && publish_idem_check(idem, strlen(idem), err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = EXIT_USAGE;
	} else if (!auth_user_valid(user, strlen(user))) {
		fprintf(stderr, PROG ": user \"%s\": must match [A-Za-z0-9_.-]{1,64}\n", user);
		status = EXIT_INPUT;
	} else if (redis_history_key(key, sizeof key, c.channel_prefix, user) < 0) {
		fprintf(stderr, PROG ": channel_prefix: empty, too long, or holds '\"', '\\' "
				     "or a control character\n");
		status = EXIT_USAGE;
	} else if (strcmp(payload, "-") == 0) {
		status = read_lines(user, &l);
	} else if (publish_check(user, payload, strlen(payload), err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = EXIT_INPUT;
	} else {
		status = EXIT_OK;
	}
	if (status == EXIT_OK) {
		if (connect_for(&addr, cl, &c, user, &rc, err, sizeof err) != 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = EXIT_REDIS;
		} else if (strcmp(payload, "-") == 0) {
			status =
			    publish_all(rc, &c, user, (const char *const *)l.v, l.len, l.n, idem);
		} else {
			status = publish_arg(rc, &c, user, payload, idem);
		}
	}
	if (cl == NULL)
		redisFree(rc);
	cluster_free(cl);
	lines_free(&l);
	conf_free(&c);
	return status;
}
