# stack.sh - start Herald's processes behind the project's nginx config, and
# mint tokens.  Sourced (bash) by scripts/dev.sh run, the browser tests and
# bench/compare, so the whole stack is started one way everywhere.
#
#   herald_jwt HEADER_JSON PAYLOAD_JSON SECRET    print an HS* JWT (HS256 by
#                                                 the header's alg; HS256 default)
#   herald_token SECRET USER TTL [EXTRA_CLAIMS]   an HS256 token for USER valid
#                                                 TTL s (negative: expired);
#                                                 EXTRA_CLAIMS: ',"iss":"x"'
#
#   stack_start RUN BUILD HTTP_PORT [full|legacy|stream]
#       Starts herald-ws on unix:RUN/ws.sock, herald-fcgi on
#       unix:RUN/fcgi.sock, and nginx (nginx/herald.conf, herald-legacy.conf,
#       or herald-stream.conf) on 127.0.0.1:HTTP_PORT with its scratch dir
#       RUN/nginx.  stream: herald-ws runs with proxy_protocol = on, and the
#       WebSocket is on 127.0.0.1:$NGINX_STREAM_PORT (ws://) and
#       $NGINX_STREAM_TLS_PORT (wss://, certificate RUN/nginx/tls.crt), picked
#       when unset (tests/integration/nginx.sh).  Logs:
#       RUN/ws.log, RUN/fcgi.log, RUN/nginx/logs/.  Redis and the JWT secret
#       come from the environment (HERALD_REDIS_URL, HERALD_JWT_SECRET or
#       HERALD_JWT_KEY_FILE), as for the programs themselves.
#       Sets STACK_WS_PID, STACK_FCGI_PID, NGINX_PID.  Returns non-zero, with
#       the failing log on stderr, when something does not come up.
#   stack_start_ws / stack_start_fcgi   (re)start one server alone, after
#   stack_stop_ws / stack_stop_fcgi     stack_start set RUN and BUILD
#   stack_stop                          stops everything stack_start started
#
# STACK_WS_ARGS / STACK_FCGI_ARGS (arrays or strings) add flags.  Only the
# processes started here are stopped, by pid.

_stack_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/integration/nginx.sh
. "$_stack_top/tests/integration/nginx.sh"

_b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

herald_jwt() {
	local h p s bits
	bits=$(printf '%s' "$1" | sed -n 's/.*"alg":"HS\(256\|384\|512\)".*/\1/p')
	h=$(printf '%s' "$1" | _b64url)
	p=$(printf '%s' "$2" | _b64url)
	s=$(printf '%s.%s' "$h" "$p" | openssl dgst "-sha${bits:-256}" -hmac "$3" -binary | _b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$s"
}

herald_token() {
	local now
	now=$(date +%s)
	herald_jwt '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$2\",\"iat\":$now,\"exp\":$((now + $3))${4:-}}" "$1"
}

STACK_RUN=
STACK_BUILD=
STACK_FLAVOUR=full
STACK_WS_PID=
STACK_FCGI_PID=

# _stack_wait_sock PATH PID LOG: until PATH is a socket, or PID died.
_stack_wait_sock() {
	local i
	for i in $(seq 200); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	echo "stack: $(basename "$1") did not appear; last lines of $3:" >&2
	tail -5 "$3" >&2
	return 1
}

# _stack_server NAME [ARGS...]: herald-NAME on unix:RUN/NAME.sock, log RUN/NAME.log;
# its pid in _stack_pid.  The socket is 0666: nginx's workers may run as
# another user (nobody, www-data).
_stack_server() {
	local name=$1
	shift
	rm -f "$STACK_RUN/$name.sock"
	local pp=${HERALD_PROXY_PROTOCOL:-off}
	[ "$name" = ws ] && [ "$STACK_FLAVOUR" = stream ] && pp=on
	HERALD_PROXY_PROTOCOL=$pp HERALD_SOCKET_MODE=0666 "$STACK_BUILD/herald-$name" --listen "unix:$STACK_RUN/$name.sock" "$@" \
		>>"$STACK_RUN/$name.log" 2>&1 &
	_stack_pid=$!
	_stack_wait_sock "$STACK_RUN/$name.sock" "$_stack_pid" "$STACK_RUN/$name.log"
}

# shellcheck disable=SC2068,SC2086
stack_start_ws() {
	_stack_server ws ${STACK_WS_ARGS[@]:-}
	local rc=$?
	STACK_WS_PID=$_stack_pid
	return $rc
}

# shellcheck disable=SC2068,SC2086
stack_start_fcgi() {
	_stack_server fcgi ${STACK_FCGI_ARGS[@]:-}
	local rc=$?
	STACK_FCGI_PID=$_stack_pid
	return $rc
}

_stack_kill() {
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

stack_stop_ws() { _stack_kill "$STACK_WS_PID"; STACK_WS_PID=; }
stack_stop_fcgi() { _stack_kill "$STACK_FCGI_PID"; STACK_FCGI_PID=; }

stack_start() {
	local conf=$_stack_top/nginx/herald.conf
	STACK_RUN=$1 STACK_BUILD=$2 STACK_FLAVOUR=${4:-full}
	[ "$STACK_FLAVOUR" = legacy ] && conf=$_stack_top/nginx/herald-legacy.conf
	[ "$STACK_FLAVOUR" = stream ] && conf=$_stack_top/nginx/herald-stream.conf
	mkdir -p "$STACK_RUN"
	# nginx workers (nobody when the master is root) must reach the sockets:
	# RUN and every directory above it must be searchable by others.
	chmod 755 "$STACK_RUN"
	local d
	d=$(cd "$STACK_RUN" && pwd)
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		case $(stat -L -c %A "$d") in
		*x | *t) ;;
		*)
			echo "stack: nginx's workers cannot reach $STACK_RUN: $d is not searchable by others (chmod o+x $d, or pick another directory)" >&2
			return 1
			;;
		esac
	done
	stack_start_ws || return 1
	stack_start_fcgi || return 1
	nginx_start "$conf" "$STACK_RUN/nginx" "$3" "unix:$STACK_RUN/ws.sock" \
		"unix:$STACK_RUN/fcgi.sock"
}

stack_stop() {
	nginx_stop
	stack_stop_ws
	stack_stop_fcgi
}
