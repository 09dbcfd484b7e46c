#!/usr/bin/env bash
# Herald's two commands.
#
#   scripts/dev.sh run    install what is missing, build, and run Herald on an
#                         embedded default (its own Redis in a scratch dir)
#   scripts/dev.sh test   install what is missing, build, and run every test
#
# Environment: every HERALD_<KEY> of the configuration (DESIGN.md section 9)
# is passed to the programs, so `HERALD_JWT_SECRET=... scripts/dev.sh run`
# uses your secret and `HERALD_REDIS_URL=redis://host:6379/0` your Redis
# (then no Redis is started).  These belong to this script only:
#   HERALD_HTTP_PORT     the port nginx listens on (127.0.0.1; default 8080)
#   HERALD_NGINX_CONF    full (nginx/herald.conf, the default), legacy
#                        (nginx/herald-legacy.conf: no WebSocket proxying) or
#                        stream (nginx/herald-stream.conf: WebSocket at L4 on
#                        its own ports, TLS at nginx, PROXY protocol to herald-ws)
#   HERALD_STREAM_PORT, HERALD_STREAM_TLS_PORT   stream: the ws:// and wss://
#                        ports (127.0.0.1; default 8001 and 8443; the
#                        certificate is self-signed, in the scratch directory)
#   HERALD_RUN_DIR       the scratch directory (default .run/ in the checkout)
#   HERALD_BUILD_DIR     the build directory (default build/ in the checkout)
#   HERALD_NO_INSTALL=1  do not call apt-get (report what is missing instead)
#   HERALD_TEST_QUICK=1  `test`: every test on the optimized build, without the
#                        sanitizer pass, valgrind, lint, distcheck
#                        and package (make deb + tests/integration/deb.sh) passes
# Nothing outside the checkout is written, but for apt-get installing packages.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${HERALD_BUILD_DIR:-$top/build}
jobs=$(nproc 2>/dev/null || echo 2)
# Tests in parallel: they mostly wait on sockets and timers (the whole
# suite under ASan used 3.7 min of CPU in 3.7 min of wall time at -j4 on 2
# cores, against 6 min at -j2 for the optimized build), and each picks
# its own ports and scratch directory.
tjobs=$((jobs * 2))

# Debian 12 packages, by name: build tools, libraries, the servers the
# tests and the run command start (nchan: the benchmark's peer; apache2-bin:
# Apache httpd and its modules, without a service of its own), the
# checkers `test` runs, the browser the client's tests drive, and what
# `make deb` (scripts/deb.sh) and tests/integration/package.sh use.
APT_PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	libfcgi-dev libhiredis-dev libjson-c-dev libjwt-dev check
	libevent-dev libwslay-dev libssl-dev openssl
	redis-server redis-tools nginx spawn-fcgi lighttpd libnginx-mod-nchan libnginx-mod-stream
	apache2-bin
	curl procps valgrind cppcheck clang clang-tidy
	chromium nodejs
	debhelper lintian fakeroot logrotate
)

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

install_deps() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	# npm: Debian's package, unless a node from elsewhere (NodeSource) brings
	# its own, which Debian's npm would conflict with.
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "${HERALD_NO_INSTALL:-0}" = 1 ]; then
		die "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
	fi
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	say "installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configure (once, or again when configure.ac/Makefile.am changed) and make.
# Extra arguments go to configure; the build directory is out of tree.
build_in() {
	local dir=$1
	shift
	if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ] ||
		[ "$top/Makefile.am" -nt "$top/configure" ]; then
		say "bootstrapping autotools"
		(cd "$top" && autoreconf -fi >/dev/null 2>&1) || (cd "$top" && autoreconf -fi)
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ "$top/configure" -nt "$dir/Makefile" ]; then
		say "configuring $dir $*"
		(cd "$dir" && "$top/configure" -q "$@")
	fi
	say "building in $dir"
	make -C "$dir" -s -j"$jobs"
}

# A free TCP port on 127.0.0.1, from $1 upwards.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}

. "$top/scripts/stack.sh"

pids=()
cleanup() {
	local pid
	trap - EXIT INT TERM
	stack_stop
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	say "stopped"
}

cmd_run() {
	install_deps
	build_in "$build"

	local run=${HERALD_RUN_DIR:-$top/.run}
	local http_port=${HERALD_HTTP_PORT:-8080}
	local flavour=${HERALD_NGINX_CONF:-full}
	case $flavour in full | legacy | stream) ;; *) die "HERALD_NGINX_CONF: full, legacy or stream, not '$flavour'" ;; esac
	export NGINX_STREAM_PORT=${HERALD_STREAM_PORT:-8001} NGINX_STREAM_TLS_PORT=${HERALD_STREAM_TLS_PORT:-8443}
	unset HERALD_RUN_DIR HERALD_BUILD_DIR HERALD_NO_INSTALL HERALD_TEST_QUICK HERALD_HTTP_PORT \
		HERALD_NGINX_CONF HERALD_STREAM_PORT HERALD_STREAM_TLS_PORT
	mkdir -p "$run"
	if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
		die "127.0.0.1:$http_port is in use: stop what listens there or set HERALD_HTTP_PORT"
	fi

	# A secret of this scratch directory, unless the user gave one.
	if [ -z "${HERALD_JWT_SECRET:-}" ] && [ -z "${HERALD_JWT_KEY_FILE:-}" ]; then
		[ -s "$run/jwt_secret" ] || (umask 077 && openssl rand -hex 32 >"$run/jwt_secret")
		export HERALD_JWT_KEY_FILE=$run/jwt_secret
	fi

	trap cleanup EXIT
	trap 'exit 0' INT TERM
	if [ -z "${HERALD_REDIS_URL:-}" ]; then
		local redis_port
		redis_port=$(free_port 6380)
		redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run" \
			--save '' --appendonly no --daemonize no --loglevel warning \
			--logfile "$run/redis.log" &
		pids+=($!)
		export HERALD_REDIS_URL=redis://127.0.0.1:$redis_port/0
		for _ in $(seq 50); do
			redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
		redis-cli -p "$redis_port" ping >/dev/null || die "redis-server did not start: see $run/redis.log"
		say "redis-server on 127.0.0.1:$redis_port (log: $run/redis.log)"
	fi

	# The demo page publishes through herald-fcgi's publish endpoint, which
	# the nginx config answers for 127.0.0.1 only.
	if [ -z "${HERALD_PUBLISH_KEY:-}" ]; then
		[ -s "$run/publish_key" ] || (umask 077 && openssl rand -hex 16 >"$run/publish_key")
		HERALD_PUBLISH_KEY=$(cat "$run/publish_key")
		export HERALD_PUBLISH_KEY
	fi

	local secret token user=42
	if [ -n "${HERALD_JWT_SECRET:-}" ]; then secret=$HERALD_JWT_SECRET; else secret=$(cat "$HERALD_JWT_KEY_FILE"); fi
	token=$(herald_token "$secret" "$user" 86400)
	"$build/herald-publish" --check-config >/dev/null 2>&1 ||
		"$build/herald-publish" --check-config

	stack_start "$run" "$build" "$http_port" "$flavour" ||
		die "the stack did not start (logs in $run)"
	say "herald-ws on unix:$run/ws.sock (log: $run/ws.log)"
	say "herald-fcgi on unix:$run/fcgi.sock (log: $run/fcgi.log)"
	local conf_name=herald.conf ws_url="ws://127.0.0.1:$http_port/api/v1/ws/notifications"
	[ "$flavour" = legacy ] && conf_name=herald-legacy.conf
	if [ "$flavour" = stream ]; then
		conf_name=herald-stream.conf
		ws_url="ws://127.0.0.1:$NGINX_STREAM_PORT/api/v1/ws/notifications"
		say "WebSocket at L4: ws://127.0.0.1:$NGINX_STREAM_PORT and wss://127.0.0.1:$NGINX_STREAM_TLS_PORT (certificate $run/nginx/tls.crt), herald-ws with proxy_protocol = on"
	fi
	say "nginx with nginx/$conf_name on 127.0.0.1:$http_port (logs: $run/nginx/logs)"

	cat <<EOF

Herald is running (Ctrl-C stops everything it started).
  Redis:        $HERALD_REDIS_URL
  Demo page:    http://127.0.0.1:$http_port/#token=$token&publish_key=$HERALD_PUBLISH_KEY$([ "$flavour" = stream ] && echo "&ws_url=$ws_url")
  WebSocket:    $ws_url
  Token for user $user (24 h): $token

Check the transports through nginx:
  curl -i -N -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \\
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' '${ws_url/ws:/http:}?token=$token'
  curl -N 'http://127.0.0.1:$http_port/api/v1/sse/notifications?token=$token'
  curl 'http://127.0.0.1:$http_port/api/v1/notifications/poll?token=$token'
  curl http://127.0.0.1:$http_port/api/v1/notifications/health

Publish a notification to user $user:
  HERALD_REDIS_URL=$HERALD_REDIS_URL $build/herald-publish $user '{"title":"hi"}'
or over HTTP (publish key; 127.0.0.1 only):
  curl -H 'Authorization: Bearer $HERALD_PUBLISH_KEY' --data-binary '{"title":"hi"}' \\
    'http://127.0.0.1:$http_port/api/v1/notifications/publish?user=$user'
See it in the history:
  redis-cli -u $HERALD_REDIS_URL XRANGE notifications:$user:history - +
Watch live delivery:
  redis-cli -u $HERALD_REDIS_URL SUBSCRIBE notifications:$user
EOF
	wait
}

# The optimized build: the tests without servers, and the servers' tests that
# check memory comes back (they skip that check under ASan and valgrind).
plain_tests="tests/unit/unit tests/integration/test_publish tests/integration/test_sub tests/integration/herald-publish.sh tests/integration/ws.sh tests/integration/fcgi.sh tests/integration/fcgi-held.sh tests/integration/replay.sh"
distcheck_tests="tests/unit/unit tests/integration/test_publish tests/integration/package.sh tests/integration/dashboard.sh"

cmd_test() {
	install_deps
	build_in "$build"
	if [ "${HERALD_TEST_QUICK:-0}" = 1 ]; then
		say "make check"
		make -C "$build" -s -j"$tjobs" check || { cat "$build/test-suite.log" >&2; exit 1; }
		say "quick: skipping sanitizers, valgrind, lint, distcheck and the package"
		return 0
	fi
	# Every test runs on the sanitized build below: the same checks, plus
	# every memory error and undefined behaviour they hit.  The optimized
	# build runs the tests without servers and the servers' memory checks
	# here, its programs behind nginx in valgrind's pass and in the
	# package's test (deb.sh).
	say "make check (optimized build: $(echo $plain_tests | wc -w) tests)"
	make -C "$build" -s -j"$tjobs" check TESTS="$plain_tests" || { cat "$build/test-suite.log" >&2; exit 1; }

	say "make check under AddressSanitizer + UBSan (every test)"
	build_in "$build-asan" --enable-sanitizers
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		make -C "$build-asan" -s -j"$tjobs" check || { cat "$build-asan/test-suite.log" >&2; exit 1; }

	say "make check-valgrind"
	make -C "$build" -s check-valgrind

	say "make lint (cppcheck, clang-tidy)"
	make -C "$build" -s lint

	# distcheck proves the tarball is whole: it configures, builds, installs
	# and uninstalls from it, and runs the tests that need no servers plus
	# two that read the shipped files.  The whole suite ran twice above
	# (plain and sanitized); a third run from the tarball would take this
	# command past CI's 20 minutes.
	say "make distcheck (log: $build/distcheck.log)"
	if ! make -C "$build" -s distcheck TESTS="$distcheck_tests" >"$build/distcheck.log" 2>&1; then
		tail -40 "$build/distcheck.log" >&2
		find "$build" -path '*/_build/*' -name test-suite.log -exec cat {} + >&2
		die "make distcheck failed"
	fi

	# Not in make check (distcheck would build a package too): the .deb of
	# this tree, lintian-clean, its layout and its programs behind nginx.
	say "make deb and its contents (tests/integration/deb.sh)"
	rm -f "$build"/herald_*.deb
	DEB_BUILD_OPTIONS="nocheck parallel=$jobs" make -C "$build" -s deb ||
		die "make deb failed (log: $build/dpkg-buildpackage.log, $build/lintian.txt)"
	local deb
	deb=$(ls "$build"/herald_*.deb | head -1)
	(cd "$build" && HERALD_BUILDDIR=$build "$top/tests/integration/deb.sh" "$deb") >"$build/deb-test.log" 2>&1 || {
		cat "$build/deb-test.log" >&2
		die "tests/integration/deb.sh failed"
	}
	say "deb: $(grep -c '^ok' "$build/deb-test.log") checks passed (log: $build/deb-test.log)"
	say "all tests passed"
}

case ${1:-} in
run) cmd_run ;;
test) cmd_test ;;
build) install_deps && build_in "$build" ;;
*)
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
