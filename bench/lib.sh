# shellcheck shell=bash
# lib.sh - shell shared by the benchmark scripts (bench/compare, bench/chaos,
# bench/soak; sourced, bash).
#
#   stop_pid PID [SIGNAL]        SIGNAL (default TERM) to PID, at most 5 s for
#                                it to exit, then SIGKILL; reaps it when it is
#                                the caller's child
#   kids PID                     the pids of PID's children (nginx's workers)
#   rss_kib PID...               the sum of the PIDs' VmRSS, KiB
#   cpu_ticks PID...             the sum of their utime + stime, clock ticks
#   bench_redis DIR PORT [ARGS...]
#                                redis-server on 127.0.0.1:PORT for load
#                                (19,000 clients, from 127.1.0.x source
#                                addresses too, no snapshots, warn-level
#                                log in DIR/log), ARGS after those; its pid
#                                in RPID (also when it fails).  Waits until it answers PONG
#                                (after loading an AOF); non-zero, its log's
#                                end on stderr, when it does not.
#   bench_redis_start DIR        bench_redis on a free port, no AOF:
#                                REDIS_PORT, REDIS_PID (to stop at exit,
#                                started or not), REDIS_URL
#   nginx_scale DIR WORKERS      the nginx.conf nginx_prepare wrote in DIR
#                                (tests/integration/nginx.sh) made for load:
#                                WORKERS workers, 19,000 connections each,
#                                19,500 open files (the hard limit is 20,000
#                                per process on the bench host), warn-level
#                                error log
#   nchan_conf DIR PORT REDIS_URL WORKERS
#                                DIR/nchan.conf from bench/nchan.conf (nginx
#                                with the nchan module, Redis storage) on
#                                127.0.0.1:PORT, and DIR/tmp, DIR/logs
#   nchan_start DIR PORT REDIS_URL WORKERS
#                                nchan_conf, then that nginx in the
#                                foreground (a child); NCHAN_PID.  Non-zero,
#                                its logs on stderr, when it does not come up.
#
# Everything listens on 127.0.0.1; only the processes started here are
# stopped, by pid.

_bench_src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/net.sh
. "$_bench_src/scripts/net.sh"

stop_pid() {
	[ -n "$1" ] || return 0
	kill "-${2:-TERM}" "$1" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

kids() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }

# _proc_sum FILE AWK PID...: AWK's number from /proc/PID/FILE, summed
_proc_sum() {
	local f=$1 prog=$2 p s=0 v
	shift 2
	for p in "$@"; do
		v=$(awk "$prog" "/proc/$p/$f" 2>/dev/null)
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
rss_kib() { _proc_sum status '/^VmRSS:/ { print $2 }' "$@"; }
cpu_ticks() { _proc_sum stat '{ print $14 + $15 }' "$@"; }

bench_redis() {
	local d=$1 port=$2
	shift 2
	mkdir -p "$d"
	# protected-mode off: clients come from 127.1.0.x source addresses
	# (still loopback; Redis listens on 127.0.0.1 only)
	redis-server --port "$port" --bind 127.0.0.1 --protected-mode no --maxclients 19000 \
		--save '' --dir "$d" --loglevel warning "$@" >>"$d/log" 2>&1 &
	RPID=$!
	for _ in $(seq 400); do
		[ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ] && return 0
		kill -0 "$RPID" 2>/dev/null || break
		sleep 0.05
	done
	echo "redis-server on $port did not start: $(tail -3 "$d/log")" >&2
	return 1
}

bench_redis_start() {
	REDIS_PORT=$(port_pick)
	bench_redis "$1" "$REDIS_PORT" --appendonly no
	local rc=$?
	# shellcheck disable=SC2034 # the caller's
	REDIS_PID=$RPID
	REDIS_URL=redis://127.0.0.1:$REDIS_PORT
	return $rc
}

nginx_scale() {
	sed -i -e "s/^worker_processes 1;/worker_processes $2;\nworker_rlimit_nofile 19500;/" \
		-e 's/worker_connections [0-9]*;/worker_connections 19000; multi_accept on;/' \
		-e 's/error.log info;/error.log warn;/' "$1/nginx.conf"
}

nchan_conf() {
	mkdir -p "$1/tmp" "$1/logs"
	sed -e "s#@DIR@#$1#g" -e "s#@PORT@#$2#g" -e "s#@REDIS_URL@#$3#g" \
		-e "s#@WORKERS@#$4#g" "$_bench_src/bench/nchan.conf" >"$1/nchan.conf"
}

NCHAN_PID=
nchan_start() {
	local d=$1
	nchan_conf "$@"
	nginx -p "$d" -c "$d/nchan.conf" -g 'daemon off;' 2>>"$d/logs/stderr.log" &
	NCHAN_PID=$!
	port_wait "$2" "$NCHAN_PID" && return 0
	echo "nchan's nginx did not start:" >&2
	cat "$d/logs/"* >&2
	return 1
}
