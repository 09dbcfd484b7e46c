#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# herald.js in real headless Chromium (Debian's chromium, driven by
# playwright-core from npm) against the whole stack: redis-server, herald-ws,
# herald-fcgi and nginx with the shipped configs.  The seven checks of issue 5
# and the backlog resume of issue 11 run in tests/browser/run.mjs; this
# script owns every process and answers the node script's requests ("CTL ..."
# lines on its stdout, one reply line on its stdin): restart the stack with
# another nginx config (or Apache httpd with nginx/apache-herald.conf, test
# 14), stop or start herald-ws or herald-fcgi, freeze and thaw herald-ws
# (SIGSTOP, SIGCONT: test 15), name nginx's log directory, publish with herald-publish
# (one at a time or a backlog), mint tokens, read herald-ws metrics.
# TAP on stdout.  Artifacts (the demo page's screenshot, the consoles, the
# server logs) go to BUILD/tests/browser/artifacts.
#
# playwright-core is installed once into BUILD/tests/browser/node (never into
# the source tree); HERALD_BROWSER_NODE_DIR names another place to keep it.
# HERALD_BROWSER_BACKLOG sets the size of test 9's backlog (default 2000).
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../integration/lib.sh
. "$src/tests/integration/lib.sh"
# shellcheck source=../../scripts/stack.sh
. "$src/scripts/stack.sh"
# shellcheck source=../integration/httpd.sh
. "$src/tests/integration/httpd.sh"

# The version whose protocol drives Debian 12's chromium 156.
PW_VERSION=1.64.1
B=$HERALD_BUILDDIR
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PATH=$PATH:/usr/sbin
ART=$B/tests/browser/artifacts
NODE_DIR=${HERALD_BROWSER_NODE_DIR:-$B/tests/browser/node}
BACKLOG=${HERALD_BROWSER_BACKLOG:-2000}

[ -x "$CHROMIUM" ] || skip_all "no $CHROMIUM (apt-get install chromium)"
command -v node >/dev/null 2>&1 || skip_all "node not installed (apt-get install nodejs)"
command -v npm >/dev/null 2>&1 || skip_all "npm not installed (apt-get install npm)"
command -v "${NGINX:-nginx}" >/dev/null 2>&1 || skip_all "nginx not installed"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
for f in herald-ws herald-fcgi herald-publish; do
	[ -x "$B/$f" ] || skip_all "$B/$f not built"
done
lib_init
mkdir -p "$ART"
rm -f "$ART"/*

if [ ! -f "$NODE_DIR/node_modules/playwright-core/package.json" ]; then
	mkdir -p "$NODE_DIR"
	if ! npm install --no-save --no-audit --no-fund --no-package-lock --loglevel=error \
		--prefix "$NODE_DIR" "playwright-core@$PW_VERSION" >"$ART/npm.log" 2>&1; then
		skip_all "npm could not install playwright-core@$PW_VERSION (see $ART/npm.log)"
	fi
fi

start_redis || skip_all "cannot start redis-server"
chmod 755 "$T" # nginx's workers run as another user and must reach the sockets

SECRET=browser-secret-$$
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET
HERALD_PUBLISH_KEY=$(openssl rand -hex 16)
export HERALD_PUBLISH_KEY HERALD_LOG_LEVEL=info
# Test 9 publishes a backlog of 2,000 to one user: the history keeps them all.
export HERALD_HISTORY_MAX=5000
# Test 12's 20 s tokens end their connections 2 s after exp, not 30.
export HERALD_JWT_LEEWAY=2
RUN=$T/run
PORT=$(port_pick)
# Test 7d authenticates the WebSocket with the herald_token cookie, which
# herald-ws takes only from an allowed Origin: the demo page's.
export HERALD_ALLOWED_ORIGINS=http://127.0.0.1:$PORT
APORT=
STACK_UP=0
SERIES_PID=
NODE_PID=
FROZEN= # herald-ws stopped with SIGSTOP (test 15): thawed before anything stops it

ws_thaw() {
	[ -n "$FROZEN" ] && kill -CONT "$FROZEN" 2>/dev/null
	FROZEN=
}

# shellcheck disable=SC2317 # run by the EXIT trap
_browser_cleanup() {
	local rc=$?
	[ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
	[ -n "$SERIES_PID" ] && kill "$SERIES_PID" 2>/dev/null && wait "$SERIES_PID" 2>/dev/null
	ws_thaw
	if [ "$STACK_UP" = 1 ]; then
		# herald-fcgi first: its exit ends the streams Apache's workers wait on
		stack_stop
		apache_stop
	fi
	if [ -d "$RUN" ]; then
		cp "$RUN"/*.log "$ART"/ 2>/dev/null
		cp "$RUN"/nginx/logs/error.log "$ART"/nginx-error.log 2>/dev/null
		cp "$RUN"/apache/error.log "$ART"/apache-error.log 2>/dev/null
		cp "$RUN"/apache/herald.error.log "$ART"/apache-herald.error.log 2>/dev/null
		cp "$RUN"/apache/herald.access.log "$ART"/apache-herald.access.log 2>/dev/null
	fi
	_lib_cleanup
}
trap _browser_cleanup EXIT

# The legacy config with its SSE location refused too: polling only.  A test
# fixture only; the web root is set here since it is copied away from web/.
nosse_conf() {
	awk '
		/location = \/api\/v1\/sse\/notifications \{/ { print; print "\t\treturn 404;"; skip = 1; next }
		skip && /^\t\}/ { skip = 0 }
		!skip { print }
	' "$src/nginx/herald-legacy.conf" | sed "s#/usr/share/herald/web#$src/web#" >"$T/herald-nosse.conf"
}

# The Apache site with its SSE route answering 404 (test 14c: polling is
# all that is left).  A test fixture only, like nosse_conf.
apache_nosse_site() {
	sed 's#^\([[:space:]]*\)ProxyPass "/api/v1/sse/notifications" .*#\1Redirect 404 "/api/v1/sse/notifications"#' \
		"$src/nginx/apache-herald.conf" >"$T/apache-nosse.conf"
	grep -q '^[[:space:]]*Redirect 404 "/api/v1/sse/notifications"' "$T/apache-nosse.conf" || {
		echo "apache-nosse: no SSE ProxyPass line in nginx/apache-herald.conf" >&2
		return 1
	}
}

# stack FLAVOUR: (re)start the whole stack, nginx with full, legacy or nosse;
# or apache: herald-ws and herald-fcgi as for nginx, and Apache httpd with
# nginx/apache-herald.conf on a port of its own ($APORT) serving the demo
# page (its origin is in HERALD_ALLOWED_ORIGINS, herald-ws started after).
stack() {
	ws_thaw
	if [ "$STACK_UP" = 1 ]; then
		stack_stop
		apache_stop
		STACK_UP=0
	fi
	STACK_UP=1
	case $1 in
	full | legacy | stream) stack_start "$RUN" "$B" "$PORT" "$1" ;;
	# the full config with 1 s heartbeats on both servers (test 15)
	full-hb) HERALD_WS_PING_INTERVAL=1 HERALD_HEARTBEAT=1 stack_start "$RUN" "$B" "$PORT" full ;;
	apache)
		STACK_RUN=$RUN STACK_BUILD=$B STACK_FLAVOUR=full
		APORT=$(port_pick)
		export HERALD_ALLOWED_ORIGINS="http://127.0.0.1:$PORT http://127.0.0.1:$APORT"
		mkdir -p "$RUN"
		chmod 755 "$RUN"
		stack_start_ws && stack_start_fcgi &&
			apache_start "$src/nginx/apache-herald.conf" "$RUN/apache" "$APORT" "$RUN" "$src/web"
		;;
	nosse)
		nosse_conf
		STACK_RUN=$RUN STACK_BUILD=$B STACK_FLAVOUR=full
		mkdir -p "$RUN"
		chmod 755 "$RUN"
		stack_start_ws && stack_start_fcgi &&
			nginx_start "$T/herald-nosse.conf" "$RUN/nginx" "$PORT" "unix:$RUN/ws.sock" "unix:$RUN/fcgi.sock"
		;;
	*) return 1 ;;
	esac
}

# ws_metric NAME: one herald-ws metric's value (NAME with its labels)
ws_metric() {
	curl -s --max-time 5 --unix-socket "$RUN/ws.sock" http://herald/api/v1/notifications/metrics |
		awk -v k="$1" '$1 == k { print $2 }'
}

ws_connections() {
	curl -s --max-time 5 --unix-socket "$RUN/ws.sock" http://herald/api/v1/notifications/metrics |
		awk '$1 == "herald_ws_connections" { print $2 }'
}

# ctl REQUEST: sets REPLY to the answer (one line); runs in this shell, so
# the processes it starts stay ours.
ctl() {
	local cmd=$1 a b c
	set -f
	# shellcheck disable=SC2086
	set -- $cmd
	set +f
	case $1 in
	# stack apache without Apache or its modules: "skip WHY" (a TAP SKIP)
	stack) if [ "$2" = apache ] && ! apache_available; then
		REPLY="skip $apache_bin or its modules (proxy_fcgi, proxy_wstunnel, ...) not installed (apt-get install apache2)"
	elif stack "$2" 2>"$T/stack.err"; then
		REPLY="ok http://127.0.0.1:$PORT"
		[ "$2" = apache ] && REPLY="ok http://127.0.0.1:$APORT"
		# the stream flavour: its ws:// and wss:// ports too
		[ "$2" = stream ] && REPLY="$REPLY $NGINX_STREAM_PORT $NGINX_STREAM_TLS_PORT"
	else REPLY="error $(tr '\n' ' ' <"$T/stack.err")"; fi ;;
	ws-stop) ws_thaw && stack_stop_ws && REPLY=ok ;;
	ws-freeze) if [ -n "$STACK_WS_PID" ] && kill -STOP "$STACK_WS_PID"; then
		FROZEN=$STACK_WS_PID REPLY=ok
	else REPLY="error no herald-ws to freeze"; fi ;;
	ws-thaw) ws_thaw && REPLY=ok ;;
	ws-start) if stack_start_ws 2>"$T/stack.err"; then REPLY=ok; else REPLY="error $(tr '\n' ' ' <"$T/stack.err")"; fi ;;
	fcgi-stop) stack_stop_fcgi && REPLY=ok ;;
	# apache-nosse: Apache takes the site without its SSE route (a graceful
	# restart); ok once a new SSE request answers 404
	apache-nosse) if apache_nosse_site 2>"$T/stack.err" &&
		apache_reload "$T/apache-nosse.conf" "$RUN/apache" "$APORT" "$RUN" "$src/web" 2>"$T/stack.err"; then
		REPLY="error the SSE route still answers after Apache's graceful restart"
		for a in $(seq 100); do
			b=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$APORT/api/v1/sse/notifications")
			[ "$b" = 404 ] && REPLY=ok && break
			sleep 0.1
		done
	else REPLY="error $(tr '\n' ' ' <"$T/stack.err")"; fi ;;
	fcgi-start) if stack_start_fcgi 2>"$T/stack.err"; then REPLY=ok; else REPLY="error $(tr '\n' ' ' <"$T/stack.err")"; fi ;;
	# nginx's logs (error.log, access.log): test 13 reads them
	nginx-logs) REPLY="ok $RUN/nginx/logs" ;;
	token) REPLY=$(herald_token "$SECRET" "$2" "$3") ;;
	badtoken) REPLY=$(herald_token "not-$SECRET" "$2" 3600) ;;
	publish)
		a=${cmd#publish "$2" }
		REPLY=$("$B/herald-publish" "$2" "$a" 2>&1 | tr '\n' ' ' | sed 's/ $//')
		;;
	series)
		# series USER N SLEEP: publish N payloads {"n":i} in the background
		a=$2 b=$3 c=$4
		: >"$T/series.ids"
		(for i in $(seq "$b"); do
			"$B/herald-publish" "$a" "{\"title\":\"series $i\",\"n\":$i}" >>"$T/series.ids"
			sleep "$c"
		done) &
		SERIES_PID=$!
		REPLY=ok
		;;
	backlog)
		# backlog USER N: publish N payloads {"title":"backlog i","n":i} with
		# one herald-publish (it pipelines); replies "COUNT FIRST_ID LAST_ID"
		if seq "$3" | awk '{ printf "{\"title\":\"backlog %d\",\"n\":%d}\n", $1, $1 }' |
			"$B/herald-publish" "$2" - >"$T/backlog.ids" 2>"$T/backlog.err"; then
			REPLY="$(wc -l <"$T/backlog.ids") $(head -1 "$T/backlog.ids") $(tail -1 "$T/backlog.ids")"
		else
			REPLY="error $(tr '\n' ' ' <"$T/backlog.err")"
		fi
		;;
	series-wait)
		wait "$SERIES_PID"
		SERIES_PID=
		REPLY=$(tr '\n' ' ' <"$T/series.ids" | sed 's/ $//')
		;;
	ws-conns) REPLY=$(ws_connections) ;;
	ws-metric) REPLY=$(ws_metric "$2") ;;
	*) REPLY="error unknown request: $cmd" ;;
	esac
}

# Bounded: the node script gives up after its own limit; timeout is the
# backstop.  Two FIFOs carry its lines here and the replies back.
mkfifo "$T/to-node" "$T/from-node"
HERALD_PW_DIR=$NODE_DIR CHROMIUM=$CHROMIUM HERALD_ART=$ART HERALD_BACKLOG=$BACKLOG \
	timeout -k 5 420 node "$src/tests/browser/run.mjs" <"$T/to-node" >"$T/from-node" \
	2>"$ART/node-stderr.log" &
NODE_PID=$!
exec 7>"$T/to-node" 8<"$T/from-node"
while IFS= read -r line <&8; do
	case $line in
	"CTL "*)
		REPLY=
		ctl "${line#CTL }"
		printf '%s\n' "$REPLY" >&7
		;;
	*) printf '%s\n' "$line" ;;
	esac
done
wait "$NODE_PID"
rc=$?
NODE_PID=
exec 7>&- 8<&-
if [ "$rc" != 0 ]; then
	diag "run.mjs exited with $rc; last lines of its stderr:"
	tail -20 "$ART/node-stderr.log" | sed 's/^/# /'
fi
exit "$rc"
