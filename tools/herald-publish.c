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

#include "auth.h"
#include "conf.h"
#include "cursor.h"
#include "err.h"
#include "publish.h"
#include "redis.h"

#define PROG	       "herald-publish"
#define LINE_MAX_BYTES (1024 * 1024)
#define BATCH_MAX      1000
#define TIMEOUT_MS     10000

enum {
	EXIT_OK = 0,
	EXIT_INPUT = 1,
	EXIT_USAGE = 2,
	EXIT_REDIS = 3,
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
	      "Options:\n"
	      "  -c, --config FILE      read the configuration FILE (default: $HERALD_CONFIG)\n"
	      "  -u, --redis-url URL    redis://[:password@]host[:port][/db] or\n"
	      "                         unix:///path[?db=N]; overrides redis_url\n"
	      "      --check-config     check the configuration (file, environment, flags)\n"
	      "                         and exit: 0 when it is valid, 2 when not\n"
	      "  -h, --help             show this help and exit\n"
	      "  -V, --version          show the version and exit\n"
	      "\n"
	      "Configuration keys used: redis_url, channel_prefix, history_max, history_ttl.\n"
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
	      "\n"
	      "Exit status:\n"
	      "  0  published\n"
	      "  1  bad input: user id, payload or input line (nothing published)\n"
	      "  2  usage or configuration error\n"
	      "  3  Redis error (unreachable, or it refused the script)\n",
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

/* Publish n payloads in pipelines, printing ids; returns an exit status. */
static int publish_all(redisContext *rc, const struct conf *c, const char *user,
		       const char *const *payloads, const size_t *lens, size_t n)
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
		int rv =
		    publish_batch(rc, c, user, payloads + off, lens + off, m, ids, err, sizeof err);

		/* Print what was published even when a later payload failed. */
		for (size_t i = 0; i < m; i++) {
			if (ids[i].ms == 0 && ids[i].seq == 0)
				continue;
			cursor_format(&ids[i], buf, sizeof buf);
			puts(buf);
		}
		/* Payloads were checked already: what fails now is Redis. */
		if (rv != 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = EXIT_REDIS;
		}
		if (fflush(stdout) != 0) {
			fprintf(stderr, PROG ": writing standard output: %s\n", strerror(errno));
			status = EXIT_REDIS;
		}
	}
	free(ids);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"redis-url", required_argument, NULL, 'u'},
	    {"check-config", no_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *config = NULL, *url = NULL, *user, *payload = "-";
	struct conf c;
	struct redis_addr addr;
	struct lines l = {NULL, NULL, 0, 0};
	redisContext *rc = NULL;
	char err[512], key[REDIS_KEY_MAX];
	int opt, status, check_only = 0;

	/* A Redis that goes away mid-pipeline is an error message and exit 3,
	 * not death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt_long(argc, argv, "c:u:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'C':
			check_only = 1;
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
	if (!check_only && (argc - optind < 1 || argc - optind > 2)) {
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
	if (redis_url_parse(c.redis_url != NULL ? c.redis_url : "redis://127.0.0.1:6379", &addr,
			    err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		conf_free(&c);
		return EXIT_USAGE;
	}
	if (check_only) {
		printf(PROG ": configuration OK (redis_url %s, channel_prefix %s)\n", c.redis_url,
		       c.channel_prefix);
		conf_free(&c);
		return EXIT_OK;
	}

	/* Check everything before connecting: bad input never reaches Redis. */
	if (!auth_user_valid(user, strlen(user))) {
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
		if (redis_connect(&addr, TIMEOUT_MS, &rc, err, sizeof err) != 0) {
			fprintf(stderr, PROG ": %s\n", err);
			status = EXIT_REDIS;
		} else if (strcmp(payload, "-") == 0) {
			status = publish_all(rc, &c, user, (const char *const *)l.v, l.len, l.n);
		} else {
			size_t len = strlen(payload);

			status = publish_all(rc, &c, user, &payload, &len, 1);
		}
	}
	redisFree(rc);
	lines_free(&l);
	conf_free(&c);
	return status;
}
