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
