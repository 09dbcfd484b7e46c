# Shared helpers for Herald's shell integration tests (POSIX sh, TAP output).
#
# Source it, then:
#   lib_init                 scratch dir $T (removed at exit), finds the tools
#   start_redis              redis-server on a free 127.0.0.1 port in $T/redis;
#                            sets REDIS_PORT, REDIS_PID, REDIS_URL
#   stop_redis               SIGKILL it (Redis going away) and wait
#   rcli ARGS...             redis-cli against it
#   wait_subscribed USER     until Redis has a subscriber on notifications:USER
#   rss_kb PID, mem_checks_for BINARY [WRAP], ok_mem STATUS DESC   memory checks
#   port_pick / port_wait    scripts/net.sh: a free port, wait for a listener
#   [plan N] / ok COND DESC / is GOT WANT DESC / skip_all WHY / done_testing
#
# Only processes started here are stopped, by their pid.  $HERALD_BUILDDIR
# names the build tree (make check sets it; default: the current directory).

HERALD_BUILDDIR=${HERALD_BUILDDIR:-$(pwd)}
T=
REDIS_PID=
REDIS_PORT=
REDIS_URL=
_tap_n=0
_tap_failed=0

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

# lib_need THING...: skip the whole script unless each THING is there: a path
# must be an executable (a program of the build), a name an installed command.
lib_need() {
	local x
	for x; do
		case $x in
		*/*) [ -x "$x" ] || skip_all "$x not built" ;;
		*) command -v "$x" >/dev/null 2>&1 || skip_all "$x not installed" ;;
		esac
	done
}

# plan N: up front; without it done_testing prints the plan at the end
# (TAP allows both), so adding a test needs no count to be kept right.
_tap_planned=
plan() {
	echo "1..$1"
	_tap_planned=1
}

# ok STATUS DESCRIPTION: STATUS 0 passes.
ok() {
	_tap_n=$((_tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $_tap_n - $2"
	else
		echo "not ok $_tap_n - $2"
		_tap_failed=$((_tap_failed + 1))
	fi
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		printf '# got:  %s\n# want: %s\n' "$1" "$2"
	fi
}

diag() {
	printf '# %s\n' "$*"
}

done_testing() {
	[ -n "$_tap_planned" ] || echo "1..$_tap_n"
	[ "$_tap_failed" -eq 0 ]
	exit $?
}

# KEEP_TEST_DIR=1 keeps the scratch directory (servers' logs) for a look.
_lib_cleanup() {
	stop_redis
	if [ -n "${KEEP_TEST_DIR:-}" ]; then
		[ -n "$T" ] && echo "# kept $T" >&2
	else
		[ -n "$T" ] && rm -rf "$T"
	fi
}

# lib_clean_env: no HERALD_* variable of the caller's environment reaches the
# servers a test starts (but HERALD_BUILDDIR and HERALD_TESTDATA, make
# check's): the test sets what it means.
lib_clean_env() {
	local v
	for v in $(env | sed -n 's/^\(HERALD_[A-Z_]*\)=.*/\1/p'); do
		case $v in HERALD_BUILDDIR | HERALD_TESTDATA) ;; *) unset "$v" ;; esac
	done
}

lib_init() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/herald-test.XXXXXX") || skip_all "mktemp failed"
	trap _lib_cleanup EXIT
	trap 'exit 1' INT TERM HUP
	REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server)}
	[ -n "$REDIS_SERVER" ] && [ -x "$REDIS_SERVER" ] || skip_all "redis-server not found"
	REDIS_CLI=${REDIS_CLI:-$(dirname "$REDIS_SERVER")/redis-cli}
	[ -x "$REDIS_CLI" ] || REDIS_CLI=$(command -v redis-cli)
	[ -n "$REDIS_CLI" ] || skip_all "redis-cli not found"
}

# lib_stack_init: for a test that runs one of bench/'s scripts on its own
# whole stack (bench/chaos, bench/soak): skip unless herald-bench, herald-ws
# and herald-fcgi are built ($B, the build directory) and nginx, Redis, jq,
# curl and openssl installed; then lib_clean_env and lib_init, with $T
# searchable by nginx's workers (they may run as another user).
lib_stack_init() {
	B=$HERALD_BUILDDIR
	PATH=$PATH:/usr/sbin
	lib_need "$B/herald-bench" "$B/herald-ws" "$B/herald-fcgi" nginx redis-server redis-cli jq curl openssl
	lib_clean_env
	lib_init
	chmod 755 "$T"
}

# port_pick, port_wait (every test script lives two levels below the top)
. "$(dirname "$0")/../../scripts/net.sh"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# nfds_of PID: how many descriptors PID has open
nfds_of() { find "/proc/$1/fd" -mindepth 1 2>/dev/null | wc -l; }
# fd_lowest_free PID: the lowest descriptor number PID has free (what a
# soft open-files limit of that number leaves it: nothing more to open)
fd_lowest_free() {
	find "/proc/$1/fd" -mindepth 1 -printf '%f\n' | sort -n |
		awk 'BEGIN { n = 0 } $1 == n { n++; next } $1 > n { exit } END { print n }'
}
# health_num URL FIELD: an integer field of the health document at URL
health_num() { curl -s "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
# publish_many PUB N USER PAYLOAD: PAYLOAD to users USER, with {} in both
# standing for 1..N, four publisher processes (PUB, herald-publish) at a
# time: one after the other, hundreds of them outlast a stream's lifetime
# under ASan on a loaded machine
publish_many() {
	seq "$2" | HERALD_REDIS_URL=$REDIS_URL xargs -P 4 -I{} "$1" "$3" "$4" >/dev/null
}

# mem_checks_for BINARY [WRAP]: memory figures mean nothing under
# AddressSanitizer (its quarantine holds freed memory) or valgrind (WRAP
# set); then ok_mem STATUS DESCRIPTION reports a SKIP instead of a result.
_mem_skip=
mem_checks_for() {
	_mem_skip=
	if ldd "$1" 2>/dev/null | grep -q libasan || [ -n "${2:-}" ]; then
		_mem_skip=1
	fi
}
# until_eq CMD VALUE TRIES: poll CMD every 0.1 s until it prints VALUE
until_eq() {
	for _i in $(seq "$3"); do [ "$($1)" = "$2" ] && return 0; sleep 0.1; done
	return 1
}

ok_mem() {
	if [ -n "$_mem_skip" ]; then
		_tap_n=$((_tap_n + 1))
		echo "ok $_tap_n - $2 # SKIP AddressSanitizer or valgrind"
	else
		ok "$1" "$2"
	fi
}

rcli() {
	"$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

# wait_subscribed USER: until the Redis has a subscriber on USER's channel
# (a server subscribed for a new connection), at most 5 s.
wait_subscribed() {
	_i=0
	while [ $_i -lt 100 ]; do
		[ "$(rcli PUBSUB NUMSUB "notifications:$1" | sed -n 2p)" -ge 1 ] 2>/dev/null && return 0
		sleep 0.05
		_i=$((_i + 1))
	done
	return 1
}

start_redis() {
	mkdir -p "$T/redis"
	for _try in 1 2 3 4 5; do
		REDIS_PORT=$(port_pick)
		"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" \
			--save '' --appendonly no --daemonize no --loglevel warning \
			>"$T/redis/log" 2>&1 &
		REDIS_PID=$!
		_i=0
		while [ $_i -lt 100 ]; do
			if [ "$(rcli PING 2>/dev/null)" = PONG ]; then
				REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
				return 0
			fi
			kill -0 "$REDIS_PID" 2>/dev/null || break
			sleep 0.05
			_i=$((_i + 1))
		done
		stop_redis
	done
	echo "# redis-server would not start: $(tail -3 "$T/redis/log")"
	return 1
}

# restart_redis PORT: a Redis stopped with stop_redis started again on the
# same port (empty: nothing persisted), waited for (at most 5 s).
restart_redis() {
	"$REDIS_SERVER" --port "$1" --bind 127.0.0.1 --dir "$T/redis" --save '' --appendonly no \
		--loglevel warning >>"$T/redis/log" 2>&1 &
	REDIS_PID=$!
	REDIS_PORT=$1
	for _i in $(seq 100); do [ "$(rcli PING 2>/dev/null)" = PONG ] && return 0; sleep 0.05; done
	return 1
}

stop_redis() {
	if [ -n "$REDIS_PID" ]; then
		kill -9 "$REDIS_PID" 2>/dev/null
		wait "$REDIS_PID" 2>/dev/null
		REDIS_PID=
	fi
}
