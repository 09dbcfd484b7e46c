#!/usr/bin/env bash
# herald-doctor against a running stack (issue 15): herald-ws, herald-fcgi and
# nginx with the project's config, started as scripts/dev.sh run starts them.
# Healthy: every check passes, exit 0.  Broken: the failing check names the
# cause and the fix, exit 1 -- herald-ws stopped, Redis stopped, an nginx
# WebSocket location without Upgrade, SSE with fastcgi_buffering on, a
# proxy_read_timeout shorter than the ping interval, a token signed with
# another secret, an expired token, herald-fcgi's socket shut to nginx's
# worker user, herald-fcgi without Redis while nginx answers (503).

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/stack.sh"

lib_init
DOC="$HERALD_BUILDDIR/herald-doctor"
for p in herald-doctor herald-ws herald-fcgi herald-publish; do
	[ -x "$HERALD_BUILDDIR/$p" ] || skip_all "$p not built"
done
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
lib_clean_env
start_redis || skip_all "cannot start redis-server"
trap 'stack_stop; _lib_cleanup' EXIT

SECRET=doctor-test-secret-0123456789abcdef
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET
HTTP_PORT=$(port_pick)
RUN=$T/run
chmod 755 "$T" # nginx's workers (nobody) reach the sockets inside
stack_start "$RUN" "$HERALD_BUILDDIR" "$HTTP_PORT" full || skip_all "the stack did not start"

# doctor OUT [ARGS...]: the doctor against this stack; output in $T/OUT.
doctor() {
	local out=$1
	shift
	"$DOC" --config /nonexistent --url "http://127.0.0.1:$HTTP_PORT" \
		--ws "unix:$RUN/ws.sock" --fcgi "unix:$RUN/fcgi.sock" \
		--nginx-conf "$RUN/nginx/nginx.conf" --nginx-error-log "$RUN/nginx/logs/error.log" \
		"$@" >"$T/$out" 2>&1
}
show() { sed 's/^/# /' "$T/$1"; }
# has OUT REGEX DESCRIPTION
has() {
	if grep -Eq -- "$2" "$T/$1"; then ok 0 "$3"; else ok 1 "$3"; show "$1"; fi
}

"$DOC" --help | grep -q -- '--nginx-conf'
ok $? "--help describes the options"
"$DOC" --bogus >/dev/null 2>&1
is $? 2 "an unknown option exits 2"

# --- healthy ---------------------------------------------------------------
doctor healthy
rc=$?
is "$rc" 0 "healthy stack: exit 0"
[ "$rc" = 0 ] || show healthy
has healthy '^PASS websocket .*101 and a notification published' "healthy: the upgrade answers 101 and a notification arrives"
has healthy '^PASS sse .*first bytes within 1 s' "healthy: the SSE stream's first bytes arrive at once"
has healthy '^PASS poll ' "healthy: a poll answers 200"
has healthy '^PASS pubsub ' "healthy: a canary PUBLISH arrives"
has healthy '^PASS nginx-ws .*Upgrade' "healthy: the WebSocket location passes Upgrade"
grep -Eq '^(FAIL|WARN)' "$T/healthy"
is $? 1 "healthy: no FAIL or WARN line"

# --- tokens ----------------------------------------------------------------
tok=$(herald_token "$SECRET" 42 300)
doctor token-good --token "$tok" --no-publish
has token-good '^PASS token .*for user 42' "--token: a good token names its user"
tok=$(herald_token other-secret-0123456789abcdef 42 300)
doctor token-secret --token "$tok"
is $? 1 "a token signed with another secret: exit 1"
has token-secret '^FAIL token .*signature does not match' "another secret: the signature is named"
tok=$(herald_token "$SECRET" 42 -600)
doctor token-expired --token "$tok"
is $? 1 "an expired token: exit 1"
has token-expired '^FAIL token .*expired at .* UTC' "an expired token: the expiry time is named"

# --- herald-ws stopped -----------------------------------------------------
stack_stop_ws
doctor ws-down
is $? 1 "herald-ws stopped: exit 1"
has ws-down '^FAIL herald-ws .*nothing accepts connections|^FAIL herald-ws .*no socket' "herald-ws stopped: its socket check fails"
has ws-down 'fix: +systemctl start herald-ws' "herald-ws stopped: the fix starts it"
has ws-down '^FAIL websocket .*502' "herald-ws stopped: the upgrade through nginx answers 502"
has ws-down '^WARN error-log .*upstream refused' "herald-ws stopped: nginx's error log is read"
stack_start_ws || ok 1 "herald-ws restarts"

# --- a socket nginx's workers cannot reach ---------------------------------
# The permission check runs as nginx's worker user (runuser): root only.
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
	mode=$(stat -c %a "$RUN/fcgi.sock")
	chmod 0600 "$RUN/fcgi.sock"
	doctor sock-perm
	is $? 1 "herald-fcgi's socket shut to nginx's user: exit 1"
	has sock-perm "^FAIL herald-fcgi .*nginx's user [^ ]+ cannot connect to $RUN/fcgi.sock" \
		"socket shut: the check names nginx's user and the socket"
	has sock-perm 'fix: .*socket_mode = 0660' "socket shut: the fix is socket_owner and socket_mode"
	has sock-perm '^FAIL poll .*50[24]' "socket shut: a poll through nginx fails (nginx cannot reach herald-fcgi)"
	chmod "$mode" "$RUN/fcgi.sock"
else
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - a socket shut to nginx's user # SKIP the check runs as nginx's user: root only"
fi

# --- broken nginx configurations -------------------------------------------
# broken NAME SED: nginx restarted with the shipped config changed by SED.
broken() {
	nginx_stop
	sed -e "$2" "$(dirname "$0")/../../nginx/herald.conf" >"$T/$1.conf"
	rm -rf "$RUN/nginx"
	nginx_start "$T/$1.conf" "$RUN/nginx" "$HTTP_PORT" "unix:$RUN/ws.sock" "unix:$RUN/fcgi.sock"
}
broken no-upgrade '/proxy_set_header Upgrade/d; /proxy_set_header Connection/d'
doctor no-upgrade
is $? 1 "WebSocket location without Upgrade: exit 1"
has no-upgrade '^FAIL nginx-ws .*lacks: proxy_set_header Upgrade' "without Upgrade: the config check names the header"
has no-upgrade '^FAIL websocket .*not 101' "without Upgrade: the upgrade through nginx is not 101"

broken buffering 's/fastcgi_buffering off;/fastcgi_buffering on;/'
doctor buffering
is $? 1 "SSE with fastcgi_buffering on: exit 1"
has buffering '^FAIL nginx-sse .*fastcgi_buffering is not off' "buffering on: the config check names it"
has buffering 'fix: +fastcgi_buffering off;' "buffering on: the fix is the line"

broken timeout 's/proxy_read_timeout 1h;/proxy_read_timeout 10s;/'
doctor timeout
is $? 1 "proxy_read_timeout 10s with a 30 s ping: exit 1"
has timeout '^FAIL nginx-ws .*proxy_read_timeout 10s is not longer than ws_ping_interval 30s' "short read timeout: named with the ping interval"

broken healthy-again ''
# --- Redis stopped ---------------------------------------------------------
stop_redis
doctor redis-down
is $? 1 "Redis stopped: exit 1"
has redis-down '^FAIL redis .*no PONG' "Redis stopped: PING fails"
has redis-down 'fix: +systemctl start redis-server' "Redis stopped: the fix starts it"
# herald-fcgi without Redis while nginx still answers: 503, named as such
has redis-down '^FAIL poll .*503' "Redis stopped: nginx answers, a poll gets 503 and the doctor says why"
has redis-down '^FAIL herald-ws .*health 503' "Redis stopped: herald-ws's own health is 503"

done_testing
