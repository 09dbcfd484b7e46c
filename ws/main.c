#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "err.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "redis.h"
#include "server.h"

#define DEFAULT_LISTEN "127.0.0.1:8000"
#define WORKERS_MAX 64

static const char usage[] =
	"Usage: herald-ws [OPTION]...\n"
	"The WebSocket helper of Herald: serves GET /api/v1/ws/notifications behind\n"
	"nginx, and the health and metrics paths, on one event loop.\n"
	"\n"
	"  -c, --config PATH          configuration file (else $HERALD_CONFIG)\n"
	"      --check-config         validate the configuration and exit\n"
	"  -l, --listen ADDR          host:port or unix:/path (default " DEFAULT_LISTEN ")\n"
	"      --log-level LEVEL      error, warn, info or debug\n"
	"  -w, --workers N            N processes sharing the port (SO_REUSEPORT)\n"
	"      --handshake-timeout S  seconds for the whole HTTP request (default 10)\n"
	"  -h, --help                 this text\n"
	"  -V, --version              the version\n"
	"\n"
	"Every configuration key can also be set as HERALD_<KEY> in the environment.\n"
	"Signals: TERM closes every connection with 1001 and exits; HUP reopens the\n"
	"log file and reloads the JWT key; USR1 reopens the log file (as nginx does).\n";

static struct event_base *loop_base;

/* This process is the service's main process and tells systemd its state
 * (notify.h; a no-op outside systemd).  Workers of --workers leave it to
 * their parent. */
static int notify_here;

static void notify_log(int rc, const char *what)
{
	if (rc < 0)
		log_warn("sd_notify(%s) to $NOTIFY_SOCKET failed: %s, continuing", what,
			 rc == HERR_IO ? strerror(errno) : herr_str(rc));
}

struct worker_ctx {
	struct wss *srv;
	const struct conf *conf;
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct worker_ctx *w = arg;
	char err[256];

	if (sig == SIGUSR1) {
		log_reopen();
		log_info("SIGUSR1: log reopened");
		return;
	}
	if (sig == SIGHUP) {
		if (notify_here)
			notify_log(notify_reloading(), "RELOADING=1");
		log_reopen();
		if (wss_reload(w->srv, err, sizeof err) != 0)
			log_error("reload on SIGHUP failed: %s, keeping the previous key", err);
		else
			log_info("SIGHUP: log reopened, JWT key reloaded");
		if (notify_here)
			notify_log(notify_ready(NULL), "READY=1");
		return;
	}
	if (notify_here)
		notify_log(notify_stopping(), "STOPPING=1");
	log_info("%s received, closing connections", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	wss_shutdown(w->srv);
}

/* One event loop serving lfd until SIGTERM.  Returns the exit status. */
static int run_worker(const struct conf *c, int lfd, unsigned hs_ms, const char *addr)
{
	struct wss_opts o = {hs_ms, 0, 0};
	struct worker_ctx w = {NULL, c};
	static const int signums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
	struct event *sigs[sizeof signums / sizeof signums[0]] = {NULL};
	const int nsigs = (int)(sizeof signums / sizeof signums[0]);
	char err[512];
	int i, rc;

	signal(SIGPIPE, SIG_IGN);
	loop_base = event_base_new();
	if (loop_base == NULL) {
		log_error("event_base_new() failed, exiting");
		return EXIT_FAILURE;
	}
	rc = wss_new(&w.srv, loop_base, c, &o, lfd, err, sizeof err);
	if (rc != 0) {
		log_error("%s, exiting", err);
		event_base_free(loop_base);
		return EXIT_FAILURE;
	}
	for (i = 0; i < nsigs; i++) {
		sigs[i] = evsignal_new(loop_base, signums[i], on_signal, &w);
		if (sigs[i] != NULL)
			evsignal_add(sigs[i], NULL);
	}
	log_info("listening on %s (pid %d)", addr, (int)getpid());
	if (notify_here)
		notify_log(notify_ready(addr), "READY=1");
	event_base_dispatch(loop_base);
	wss_free(w.srv);
	for (i = 0; i < nsigs; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	event_base_free(loop_base);
	log_info("stopped");
	return EXIT_SUCCESS;
}

static volatile sig_atomic_t got_term, got_hup, got_usr1, got_chld;

static void parent_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGUSR1)
		got_usr1 = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
	else
		got_term = 1;
}

static pid_t spawn(const struct conf *c, int *fds, int n, int k, unsigned hs_ms, const char *addr)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	notify_here = 0;
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGUSR1, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	{
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	for (int i = 0; i < n; i++)
		if (i != k && fds[i] != fds[k])
			close(fds[i]);
	_exit(run_worker(c, fds[k], hs_ms, addr));
}

/*
 * --workers N: N processes, each with its own SO_REUSEPORT socket (a unix
 * socket is shared).  The parent forwards TERM, HUP and USR1, restarts a worker
 * that dies, and exits when all have stopped after TERM.
 */
static int run_workers(const struct conf *c, const char *addr, int n, unsigned hs_ms)
{
	int fds[WORKERS_MAX];
	pid_t pids[WORKERS_MAX];
	int unix_sock = listen_unix_path(addr) != NULL, i, alive = n;
	const struct listen_opts lo = {.nonblock = 1, .reuseport = 1, .mode = c->socket_mode,
				       .owner = c->socket_owner};
	struct sigaction sa;
	sigset_t block, old;
	char err[512];

	for (i = 0; i < n; i++) {
		if (unix_sock && i > 0) {
			fds[i] = fds[0];
			continue;
		}
		fds[i] = listen_open(addr, &lo, err, sizeof err);
		if (fds[i] < 0) {
			log_error("%s, exiting", err);
			return EXIT_FAILURE;
		}
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = parent_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < n; i++)
		pids[i] = spawn(c, fds, n, i, hs_ms, addr);
	log_info("%d workers started on %s", n, addr);
	notify_log(notify_ready(addr), "READY=1");
	while (alive > 0) {
		pid_t pid;
		int st;

		while (!got_term && !got_hup && !got_usr1 && !got_chld)
			sigsuspend(&old);
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
			for (i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGUSR1);
		}
		if (got_hup) {
			got_hup = 0;
			notify_log(notify_reloading(), "RELOADING=1");
			log_reopen();
			for (i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGHUP);
			notify_log(notify_ready(NULL), "READY=1");
		}
		if (got_term == 1) {
			got_term = 2;
			notify_log(notify_stopping(), "STOPPING=1");
			for (i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGTERM);
		}
		got_chld = 0;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (i = 0; i < n; i++) {
				if (pids[i] != pid)
					continue;
				pids[i] = 0;
				if (got_term) {
					alive--;
					break;
				}
				log_error("worker %d (pid %d) died (status %d), restarting it", i,
					  (int)pid, st);
				sleep(1);
				pids[i] = spawn(c, fds, n, i, hs_ms, addr);
			}
		}
	}
	for (i = 0; i < n; i++)
		if (!unix_sock || i == 0)
			close(fds[i]);
	log_info("all workers stopped");
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"listen", required_argument, NULL, 'l'},
		{"log-level", required_argument, NULL, 'L'},
		{"workers", required_argument, NULL, 'w'},
		{"handshake-timeout", required_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct {
		const char *key, *value;
	} flags[16];
	int nflags = 0, check = 0, opt, rc, lfd;
	const char *config = NULL, *addr;
	long hs = 10;
	struct conf c;
	char err[512];

	while ((opt = getopt_long(argc, argv, "c:l:w:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'C':
			check = 1;
			break;
		case 'l':
			flags[nflags].key = "listen";
			flags[nflags++].value = optarg;
			break;
		case 'L':
			flags[nflags].key = "log_level";
			flags[nflags++].value = optarg;
			break;
		case 'w':
			flags[nflags].key = "workers";
			flags[nflags++].value = optarg;
			break;
		case 'T':
			if (conf_parse_duration(optarg, &hs) != 0 || hs <= 0 || hs > 3600) {
				fprintf(stderr, "herald-ws: --handshake-timeout %s: expected 1..3600 s\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("herald-ws %s\n", PACKAGE_VERSION);
			return 0;
		default:
			fputs("Try 'herald-ws --help'.\n", stderr);
			return 2;
		}
		if (nflags == (int)(sizeof flags / sizeof flags[0])) {
			fputs("herald-ws: too many options\n", stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "herald-ws: unexpected argument '%s'\nTry 'herald-ws --help'.\n",
			argv[optind]);
		return 2;
	}
	rc = conf_load(&c, config, err, sizeof err);
	for (int i = 0; rc == 0 && i < nflags; i++)
		rc = conf_set(&c, flags[i].key, flags[i].value, "command line", err, sizeof err);
	if (rc == 0)
		rc = conf_validate(&c, err, sizeof err);
	if (rc == 0 && (c.workers < 1 || c.workers > WORKERS_MAX)) {
		snprintf(err, sizeof err, "workers: %ld is not in 1..%d", c.workers, WORKERS_MAX);
		rc = HERR_INVAL;
	}
	if (rc != 0) {
		fprintf(stderr, "herald-ws: %s\n", err);
		conf_free(&c);
		return check ? 1 : 2;
	}
	redis_set_cluster((int)c.redis_cluster);
	if (check && c.redis_cluster) {
		printf("herald-ws: configuration ok (Redis Cluster, keys %s:{USER}:history)\n",
		       c.channel_prefix);
		conf_free(&c);
		return 0;
	}
	if (check) {
		struct redis_addr ra;

		if (redis_addr_from_conf(&c, &ra, err, sizeof err) != 0) {
			fprintf(stderr, "herald-ws: %s\n", err);
			conf_free(&c);
			return 1;
		}
		if (ra.nsentinels > 0)
			printf("herald-ws: configuration ok (%s)\n",
			       redis_addr_describe(&ra, err, sizeof err));
		else
			printf("herald-ws: configuration ok\n");
		conf_free(&c);
		return 0;
	}
	if (log_open("herald-ws", c.log_level, c.log_format == CONF_LOG_JSON, c.log_file) != 0)
		log_warn("cannot open log file %s: %s, logging to stderr", c.log_file,
			 strerror(errno));
	addr = c.listen != NULL ? c.listen : DEFAULT_LISTEN;
	notify_here = 1;
	if (c.workers > 1) {
		rc = run_workers(&c, addr, (int)c.workers, (unsigned)hs * 1000);
	} else {
		const struct listen_opts lo = {.nonblock = 1, .mode = c.socket_mode,
					       .owner = c.socket_owner};

		lfd = listen_open(addr, &lo, err, sizeof err);
		if (lfd < 0) {
			log_error("%s, exiting", err);
			rc = EXIT_FAILURE;
		} else {
			rc = run_worker(&c, lfd, (unsigned)hs * 1000, addr);
		}
	}
	log_close();
	conf_free(&c);
	return rc;
}
