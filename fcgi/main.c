/*
 * herald-fcgi: the FastCGI responder for SSE streams and polling, and the
 * plain-CGI answer to one polling or health request.
 *
 * This file: the command line, configuration, signals, the threads'
 * start and the shutdown.  app.h says which thread owns what: the event
 * loop (held.c) holds held requests, `threads` workers take the requests of
 * kept-alive connections themselves and answer requests (handlers.c), the
 * main thread waits in sigwait(): TERM/INT end every stream and exit 0, HUP reopens the log and
 * reloads the JWT key, USR1 reopens the log.
 */
#include "config.h"

#include <errno.h>
#include <fcgiapp.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "app.h"
#include "auth.h"
#include "clock.h"
#include "conf.h"
#include "err.h"
#include "handlers.h"
#include "held.h"
#include "hub.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "redis.h"
#include "sub.h"

#define WORKER_STACK (256 * 1024)
#define SHUTDOWN_TIMEOUT_MS 10000
#define DEFAULT_LISTEN "unix:/run/herald/fcgi.sock"
#define NOFILE_RECLAIM 4 /* idle connections closed for a Redis link (on_nofile) */

struct app app;

static struct event_base *base;
static pthread_t loop_thread;
static int listen_fd = -1;
static char unix_path[108];

/* --- workers -------------------------------------------------------------------- */

/* One request a worker took: its connection's libfcgi request and route. */
struct work {
	FCGX_Request own;	/* the slot's libfcgi request, for a request it reads */
	struct held_req *q;	/* the loop read the request: its libfcgi parts, route */
	FCGX_Request *r;	/* &own or &q->r */
	struct route rt_own, *rt;
	struct io io;
	int nonblocking;	/* HELD_NONBLOCKING, until io_blocking */
};

/*
 * Take a connection with a request from the loop into w (wait: block for
 * one, as held_next), let libfcgi read the request unless the loop did,
 * and read its route.  1 when w holds a request; 0 when its read failed
 * (libfcgi closed the connection); -1 when there is none (wait 0) or the
 * queue is stopped.
 */
static int work_take(struct work *w, int wait)
{
	unsigned flags;
	int fd = held_next(app.loop, wait, &w->q, &flags);

	if (fd < 0)
		return -1;
	w->nonblocking = (flags & HELD_NONBLOCKING) != 0;
	w->io.r = w->r = w->q != NULL ? &w->q->r : &w->own;
	w->io.nonblocking = &w->nonblocking;
	w->rt = w->q != NULL ? &w->q->rt : &w->rt_own;
	if (w->q != NULL)
		return 1; /* the loop read the route */
	/* a peer still writing may keep it up to SO_RCVTIMEO: another worker
	 * waits for the next requests meanwhile */
	if (held_read(&w->own, fd) != 0)
		return 0;
	handle_route(&w->io, w->rt);
	return 1;
}

/* Give w's connection back (kept alive) or to the loop with its request
 * (res HANDLE_HOLD). */
static void work_finish(struct work *w, int res)
{
	if (res == HANDLE_HOLD) {
		unsigned reqid;
		int fd = held_release(w->r, &reqid);

		held_hold(app.loop, fd, w->nonblocking, reqid, w->rt);
	} else {
		io_blocking(&w->io); /* the end records, then kept alive */
		FCGX_Finish_r(w->r);
		if (w->r->ipcFd >= 0) {
			int fd = w->r->ipcFd;

			w->r->ipcFd = -1;
			held_keep(app.loop, fd);
		}
	}
	free(w->q); /* its libfcgi parts are freed above */
	w->q = NULL;
}

/*
 * Take a connection with a request (waiting for one: held_next), and
 * while they are polls the others taken in the same wait or queued behind
 * it, up to HELD_BATCH (without waiting; the rest go back to the queue
 * for other workers: held_unstash);
 * answer them (handle_batch: the polls among them share a round trip to
 * Redis), and give each connection back (kept alive) or to the loop with
 * its request (held).  A slot's libfcgi request starts without a listening
 * socket: it never accepts, it reads the descriptor it is given.
 */
static void *worker_main(void *arg)
{
	struct work *w = calloc(HELD_BATCH, sizeof *w);
	struct handle_item items[HELD_BATCH];
	redisContext *rc = NULL;
	size_t inited = 0;

	(void)arg;
	while (w != NULL && inited < HELD_BATCH && FCGX_InitRequest(&w[inited].own, -1, 0) == 0)
		inited++;
	if (inited < HELD_BATCH) {
		log_error("worker: out of memory for its requests: the thread ends");
		goto out;
	}
	for (;;) {
		size_t n = 0;
		int got = work_take(&w[0], 1);

		if (got < 0)
			break;
		n = (size_t)got;
		/* more while they are polls: a stream gains nothing from a
		 * batch, and each request taken holds libfcgi's buffers */
		while (n > 0 && n < HELD_BATCH && handle_batchable(w[n - 1].rt) &&
		       (got = work_take(&w[n], 0)) >= 0)
			n += (size_t)got;
		held_unstash(app.loop); /* what the batch did not take: to others */
		if (n == 0)
			continue;
		atomic_fetch_add(&app.busy, 1);
		for (size_t i = 0; i < n; i++)
			items[i] = (struct handle_item){&w[i].io, w[i].rt, HANDLE_DONE};
		if (atomic_load(&app.stopping)) {
			for (size_t i = 0; i < n; i++)
				handle_unavailable(&w[i].io, "shutting down");
		} else {
			handle_batch(items, n, &rc);
		}
		for (size_t i = 0; i < n; i++)
			work_finish(&w[i], items[i].res);
		atomic_fetch_sub(&app.busy, 1);
	}
out:
	for (size_t i = 0; i < inited; i++)
		FCGX_Free(&w[i].own, 1);
	free(w);
	redisFree(rc);
	return NULL;
}

/* --- listening ------------------------------------------------------------------- */

/* Our own listener: FCGX_OpenSocket exits on failure and ignores modes.
 * The backlog is listen_open's default (4096, or somaxconn if lower): nginx
 * opens one upstream connection per request, and when a burst of SSE
 * streams outruns the loop's accept a full unix-socket backlog makes
 * nginx's connect() fail at once (EAGAIN, a 502 for the client). */
static int open_listener(const char *spec, char *err, size_t errlen)
{
	const struct listen_opts lo = {.mode = app.conf.socket_mode,
				       .owner = app.conf.socket_owner, .backlog = 0};
	const char *path = listen_unix_path(spec);
	int fd = listen_open(spec, &lo, err, errlen);

	if (fd >= 0 && path != NULL)
		snprintf(unix_path, sizeof unix_path, "%s", path);
	return fd;
}

/* --- the loop thread ------------------------------------------------------------- */

static void on_sub_event(void *ud, int level, const char *msg)
{
	(void)ud;
	log_at(level, "%s", msg);
}

/*
 * Sentinel events of the workers' own connections (redis_connect): every
 * thread opens one, so the master's address is logged once per change and
 * at debug level when it repeats; failures always.
 */
static void redis_note(void *ud, int level, const char *msg)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char last[512];
	int same;

	(void)ud;
	if (level <= LOG_LEVEL_WARN) {
		log_at(level, "%s", msg);
		return;
	}
	pthread_mutex_lock(&lock);
	same = strcmp(last, msg) == 0;
	if (!same)
		snprintf(last, sizeof last, "%s", msg);
	pthread_mutex_unlock(&lock);
	log_at(same ? LOG_LEVEL_DEBUG : level, "%s", msg);
}

static void *loop_main(void *arg)
{
	(void)arg;
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/*
 * max_connections 0: a cap from the open-files limit, so that past it a
 * stream or long-poll gets 503 with Retry-After (counted) rather than
 * accept failing with EMFILE for everything, polls and health included.
 * Each held request is one descriptor; kept back: two per worker (its
 * connection, its Redis link), 256 for the kept-alive connections nginx
 * may hold (past those, the oldest idle ones make way when accept runs
 * out: held.c, accept_pause), the listener, Redis and the log.
 */
static unsigned default_max_connections(void)
{
	return listen_nofile_cap(2ULL * (unsigned long long)app.threads + 256);
}

/*
 * A Redis link (a worker's, or the subscriber's) that finds no descriptor
 * (redis_set_nofile_hook): a few idle kept-alive connections make way, as
 * for accept, and the connect is tried again.  Without it, idle
 * connections nginx keeps could hold every descriptor once the held
 * requests reach the open-files limit, and each poll would get 503 until
 * they time out.
 */
static long on_nofile(void)
{
	return app.loop != NULL ? held_reclaim(app.loop, NOFILE_RECLAIM) : 0;
}

static int start_backend(char *err, size_t errlen)
{
	struct hub_limits lim;

	hub_limits_conf(&lim, &app.conf);
	if (lim.max_connections == 0) {
		lim.max_connections = default_max_connections();
		log_info("max_connections: %u held requests (from the open-files limit; set "
			 "max_connections to choose)",
			 lim.max_connections);
	}
	app.max_held = lim.max_connections;
	evthread_use_pthreads();
	if (hub_new(&app.hub, &lim, NULL) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	base = event_base_new();
	if (base == NULL) {
		snprintf(err, errlen, "event_base_new failed");
		return -1;
	}
	if (sub_new(&app.sub, base, &app.conf, app.hub, 0, err, errlen) != 0)
		return -1;
	sub_set_event_cb(app.sub, on_sub_event, NULL);
	if (held_loop_new(&app.loop, base, listen_fd) != 0) {
		snprintf(err, errlen, "cannot set up the event loop");
		return -1;
	}
	redis_set_nofile_hook(on_nofile); /* before the loop and the workers run */
	if (pthread_create(&loop_thread, NULL, loop_main, NULL) != 0) {
		snprintf(err, errlen, "pthread_create failed");
		return -1;
	}
	return 0;
}

/* --- main --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS]\n"
		"Herald's FastCGI responder: SSE streams and polling behind nginx, or one\n"
		"CGI request when run by a CGI server.\n\n"
		"  -c, --config PATH      configuration file (default $HERALD_CONFIG)\n"
		"  -l, --listen ADDR      unix:/path or host:port (default: inherited socket\n"
		"                         on fd 0, else " DEFAULT_LISTEN ")\n"
		"  -L, --log-level LEVEL  error, warn, info or debug\n"
		"      --check-config     validate the configuration and exit\n"
		"  -h, --help             this text\n"
		"  -V, --version          version\n\n"
		"Every configuration key can also be set as HERALD_<KEY> in the environment.\n"
		"Signals: TERM/INT end every stream and exit; HUP reopens the log and\n"
		"reloads the JWT key; USR1 reopens the log (as nginx does).\n"
		"See herald-fcgi(1).\n");
}

static void notify_log(int rc, const char *what)
{
	if (rc < 0)
		log_warn("sd_notify(%s) to $NOTIFY_SOCKET failed: %s, continuing", what,
			 rc == HERR_IO ? strerror(errno) : herr_str(rc));
}

static void reload(void)
{
	char err[256];
	auth_t *na = NULL, *old;

	notify_log(notify_reloading(), "RELOADING=1");
	if (log_reopen() != 0)
		log_warn("log_reopen failed: %s", strerror(errno));
	if (auth_new(&na, &app.conf, err, sizeof err) != 0) {
		log_error("SIGHUP: reloading the JWT key failed: %s; keeping the old one", err);
	} else {
		pthread_rwlock_wrlock(&app.auth_lock);
		old = app.auth;
		app.auth = na;
		pthread_rwlock_unlock(&app.auth_lock);
		auth_free(old);
		log_info("SIGHUP: log reopened, JWT key reloaded");
	}
	notify_log(notify_ready(NULL), "READY=1");
}

static int serve(void)
{
	sigset_t set;
	pthread_t *tids;
	pthread_attr_t attr;
	struct held_stats st;
	long started = 0;
	int sig;
	char status[128];

	tids = calloc((size_t)app.threads, sizeof *tids);
	if (tids == NULL)
		return 1;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WORKER_STACK);
	for (long i = 0; i < app.threads; i++) {
		if (pthread_create(&tids[started], &attr, worker_main, NULL) == 0)
			started++;
	}
	pthread_attr_destroy(&attr);
	app.threads = started;
	log_info("serving with %ld worker threads", started);
	snprintf(status, sizeof status, "%ld workers, listening on %s", started,
		 app.conf.listen != NULL ? app.conf.listen : "the inherited socket");
	notify_log(notify_ready(status), "READY=1");

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload();
			continue;
		}
		if (sig == SIGUSR1) {
			if (log_reopen() != 0)
				log_warn("log_reopen failed: %s", strerror(errno));
			log_info("SIGUSR1: log reopened");
			continue;
		}
		break;
	}
	notify_log(notify_stopping(), "STOPPING=1");
	held_get_stats(app.loop, &st);
	log_info("signal %d: ending %ld streams and %ld long-polls, exiting", sig, st.streams,
		 st.polls);
	atomic_store(&app.stopping, 1);
	if (unix_path[0] != '\0')
		unlink(unix_path);
	held_stop(app.loop, SHUTDOWN_TIMEOUT_MS);
	for (long i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	event_base_loopbreak(base);
	pthread_join(loop_thread, NULL);
	redis_set_nofile_hook(NULL);
	held_loop_free(app.loop);
	app.loop = NULL;
	sub_free(app.sub);
	app.sub = NULL;
	hub_free(app.hub);
	app.hub = NULL;
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"listen", required_argument, NULL, 'l'},
		{"log-level", required_argument, NULL, 'L'},
		{"check-config", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *listen_flag = NULL, *level_flag = NULL;
	int check_only = 0, opt, cgi = 0, rc = 1;

	char err[512];
	sigset_t set;

#ifdef M_MMAP_THRESHOLD
	/*
	 * A fixed threshold: large blocks (the Redis reader's buffer and the
	 * history pages of 5,000 streams catching up at once) are mapped and
	 * given back when freed.  glibc's sliding threshold would move them
	 * into the heap, where they stay resident: 13 MiB against 9 after
	 * 5,000 streams came, caught up after a Redis restart and left
	 * (tests/integration/fcgi-held.sh, started at 6.5).
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
#ifdef M_ARENA_MAX
	/*
	 * Two malloc arenas, not glibc's eight per core (one per worker
	 * thread here): each arena kept its own free memory between bursts.
	 * bench/soak, the same load: 16.7 MiB after 7 cycles and 17.8 after
	 * 42 (19.0 after 59, in steps) with them; 13.9, 15.0 and flat from
	 * the 20th to the 44th with two (docs/RELIABILITY.md).  The workers'
	 * allocations are few and short (a request's parameters, a Redis
	 * reply): 1,000 pollers in a closed loop, 29,679 polls/s p99 64 ms
	 * against 30,009 and 61 (medians of 5, within the machine's spread).
	 * MALLOC_ARENA_MAX in the environment still decides when set.
	 */
	if (getenv("MALLOC_ARENA_MAX") == NULL)
		mallopt(M_ARENA_MAX, 2);
#endif
	while ((opt = getopt_long(argc, argv, "c:l:L:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': app.conf_path = optarg; break;
		case 'l': listen_flag = optarg; break;
		case 'L': level_flag = optarg; break;
		case 'C': check_only = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf(PROG " " PACKAGE_VERSION "\n"); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (conf_load(&app.conf, app.conf_path, err, sizeof err) != 0 ||
	    (listen_flag && conf_set(&app.conf, "listen", listen_flag, "command line", err,
				     sizeof err) != 0) ||
	    (level_flag && conf_set(&app.conf, "log_level", level_flag, "command line", err,
				    sizeof err) != 0) ||
	    conf_validate(&app.conf, err, sizeof err) != 0 ||
	    redis_addr_from_conf(&app.conf, &app.raddr, err, sizeof err) != 0 ||
	    auth_new(&app.auth, &app.conf, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	app.raddr.note = redis_note;
	redis_set_cluster((int)app.conf.redis_cluster);
	if (check_only && app.conf.redis_cluster) {
		printf(PROG ": configuration OK (Redis Cluster, keys %s:{USER}:history)\n",
		       app.conf.channel_prefix);
		rc = 0;
		goto out;
	}
	if (check_only) {
		if (app.raddr.nsentinels > 0)
			printf(PROG ": configuration OK (%s)\n",
			       redis_addr_describe(&app.raddr, err, sizeof err));
		else
			printf(PROG ": configuration OK\n");
		rc = 0;
		goto out;
	}
	app.start_ms = clock_wall_ms();
	app.threads = app.conf.threads > 0 ? app.conf.threads : 1;
	pthread_rwlock_init(&app.auth_lock, NULL);
	redis_scripts_init();
	log_open(PROG, app.conf.log_level, app.conf.log_format == CONF_LOG_JSON,
		 app.conf.log_file);

	/* FCGX_Init installs its SIGPIPE and SIGTERM handlers: override both after it. */
	if (FCGX_Init() != 0) {
		log_error("FCGX_Init failed");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1); /* libfcgi's handler would stop every accept */
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (getenv("GATEWAY_INTERFACE") != NULL && FCGX_IsCGI()) {
		/* run by a CGI server: a configured listen address is not for us */
		cgi = 1;
	} else if (app.conf.listen != NULL) {
		listen_fd = open_listener(app.conf.listen, err, sizeof err);
		if (listen_fd < 0) {
			log_error("%s", err);
			goto out;
		}
		log_info("listening on %s", app.conf.listen);
	} else if (!FCGX_IsCGI()) {
		listen_fd = 0;
		log_info("serving the socket inherited on fd 0");
	} else {
		listen_fd = open_listener(DEFAULT_LISTEN, err, sizeof err);
		if (listen_fd < 0) {
			log_error("%s", err);
			goto out;
		}
		log_info("listening on " DEFAULT_LISTEN);
	}

	if (cgi) {
		struct io io = {NULL};
		struct route rt;
		redisContext *rcx = NULL;

		handle(&io, &rcx, &rt);
		redisFree(rcx);
		rc = 0;
		goto out;
	}
	if (start_backend(err, sizeof err) != 0) {
		log_error("%s", err);
		goto out;
	}
	rc = serve();
out:
	if (listen_fd > 0)
		close(listen_fd);
	auth_free(app.auth);
	conf_free(&app.conf);
	redis_set_nofile_hook(NULL);
	if (app.loop != NULL) /* start-up failed after the loop was set up */
		held_loop_free(app.loop);
	sub_free(app.sub);
	hub_free(app.hub);
	if (base != NULL)
		event_base_free(base);
	log_close();
	return rc;
}
