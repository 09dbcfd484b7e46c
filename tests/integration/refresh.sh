#!/usr/bin/env bash
# Refresh without reconnect (issue 12): a WebSocket client sends
# {"type":"refresh","token":JWT} on the open connection; herald-ws moves the
# connection's expiry for a valid token of the same user and answers
# {"type":"refreshed","expires_at":EXP}, and closes with 4401 for anything
# else.  A connection that does not refresh is warned with
# {"type":"expiring","expires_in":N} before its 4401.  Through real nginx
# (nginx/herald.conf) and a real redis-server; TAP on stdout.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/stack.sh"

lib_init
WS="$HERALD_BUILDDIR/herald-ws"
PUB="$HERALD_BUILDDIR/herald-publish"
CLI="$HERALD_BUILDDIR/tests/integration/ws_client"
CONF="$(cd "$(dirname "$0")/../.." && pwd)/nginx/herald.conf"
for f in "$WS" "$PUB" "$CLI"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
lib_clean_env
start_redis || skip_all "cannot start redis-server"

SECRET=refresh-secret-$$
WS_PID=
cleanup_refresh() {
	nginx_stop
	[ -n "$WS_PID" ] && kill "$WS_PID" 2>/dev/null && wait "$WS_PID" 2>/dev/null
	_lib_cleanup
}
trap cleanup_refresh EXIT

# wait_for FILE PATTERN [TENTHS]: until a line of FILE matches
wait_for() {
	local i=0
	while [ $i -lt "${3:-50}" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
publish() { HERALD_REDIS_URL=$REDIS_URL "$PUB" "$@"; }
refresh_msg() { printf '{"type":"refresh","token":"%s"}' "$1"; }
jwt_exp() { # TOKEN: its exp claim
	local p
	p=$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')
	while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
	printf '%s' "$p" | base64 -d | sed -n 's/.*"exp":\([0-9]*\).*/\1/p'
}
close_of() { grep -m1 '^close\|^status [^1]\|^eof\|^timeout' "$1"; }
metric() {
	curl -s --max-time 5 "http://127.0.0.1:$WS_PORT/api/v1/notifications/metrics" |
		awk -v k="$1" '$1 == k { print $2 }'
}

WS_PORT=$(port_pick)
HTTP_PORT=$(port_pick)
# Leeway 1 s: a token of 5 s closes its connection 6 s after it was made.
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_JWT_LEEWAY=1 \
	"$WS" --listen "127.0.0.1:$WS_PORT" --log-level debug >>"$T/ws.log" 2>&1 &
WS_PID=$!
port_wait "$WS_PORT" "$WS_PID"
ok $? "herald-ws starts on 127.0.0.1:$WS_PORT"
nginx_start "$CONF" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS_PORT" "unix:$T/fcgi.sock"
ok $? "nginx starts with nginx/herald.conf on 127.0.0.1:$HTTP_PORT"
NG=127.0.0.1:$HTTP_PORT
path() { printf '/api/v1/ws/notifications?token=%s' "$1"; }

# --- refreshed: open past the old expiry, and delivering ------------------------
short=$(herald_token "$SECRET" r1 5)
long=$(herald_token "$SECRET" r1 120)
long_exp=$(jwt_exp "$long")
start=$(date +%s%N)
"$CLI" -t 20 -n 2 -D 2000 -S "$(refresh_msg "$long")" "$NG" "$(path "$short")" >"$T/a" &
a=$!
wait_for "$T/a" '^text {"type":"refreshed"' 60
is "$(grep '^text {"type"' "$T/a")" "text {\"type\":\"refreshed\",\"expires_at\":$long_exp}" \
	"a refresh with a valid token of the same user is answered refreshed, with its exp"
# Past the first token's end (5 s + 1 s leeway), with a margin.
sleep "$(awk -v s="$start" -v n="$(date +%s%N)" 'BEGIN { d = 8 - (n - s) / 1e9; print (d > 0 ? d : 0) }')"
kill -0 $a 2>/dev/null && ! grep -q '^close' "$T/a"
ok $? "the connection is still open 8 s after it was made with a 5 s token"
id=$(publish r1 '{"after":"expiry"}')
wait $a
grep -q "^text {\"id\":\"$id\",.*\"data\":{\"after\":\"expiry\"}}$" "$T/a"
ok $? "it receives a notification published after the old expiry"
is "$(grep -c '^close 4401' "$T/a")" 0 "and was never closed with 4401"
is "$(metric 'herald_ws_refresh_total{result="ok"}')" 1 'herald_ws_refresh_total{result="ok"} counts it'

# --- refused: 4401 -----------------------------------------------------------------
refused() { # DESCRIPTION MESSAGE WANT
	"$CLI" -t 10 -D 300 -S "$2" "$NG" "$(path "$(herald_token "$SECRET" r2 60)")" >"$T/o"
	is "$(close_of "$T/o")" "$3" "$1"
}
refused "a refresh with another user's token: 4401" \
	"$(refresh_msg "$(herald_token "$SECRET" someone-else 60)")" "close 4401 other_user"
refused "a refresh with an expired token: 4401" \
	"$(refresh_msg "$(herald_token "$SECRET" r2 -100)")" "close 4401 expired"
refused "a refresh with a forged token: 4401" \
	"$(refresh_msg "$(herald_token wrong-secret r2 60)")" "close 4401 bad_signature"
refused "a malformed message (not JSON): 4401" "hello" "close 4401 bad_message"
refused "a message of another type: 4401" '{"type":"subscribe","channel":"x"}' \
	"close 4401 unknown_type"
refused "a refresh without a token: 4401" '{"type":"refresh"}' "close 4401 missing"
is "$(metric 'herald_ws_refresh_total{result="refused"}')" 6 \
	'herald_ws_refresh_total{result="refused"} counts the six'

# A refresh with a revoked token (jti): accepted, then closed once Redis
# has answered the same check as at connect.
exp=$(($(date +%s) + 3600))
publish --revoke-jti r2 gone-1 "$exp" >/dev/null
ok $? "herald-publish --revoke-jti r2 gone-1"
refused "a refresh with a revoked token (jti): 4401 revoked" \
	"$(refresh_msg "$(herald_token "$SECRET" r2 60 ',"jti":"gone-1"')")" "close 4401 revoked"
is "$(metric 'herald_ws_refresh_total{result="revoked"}')" 1 \
	'herald_ws_refresh_total{result="revoked"} counts it'

# A binary message is still ignored; a text message over the limit is 1009.
"$CLI" -t 3 -s 828300000000686969 "$NG" "$(path "$(herald_token "$SECRET" r2 60)")" >"$T/o"
is "$(close_of "$T/o")" "timeout" "a binary message is ignored"
"$CLI" -t 3 -s 81fe210000000000 "$NG" "$(path "$(herald_token "$SECRET" r2 60)")" >"$T/o"
is "$(close_of "$T/o")" "close 1009 message too big" "a text message over 8256 bytes: 1009"
# The longest token herald accepts (8 KiB) fits a refresh: refused for its
# signature, not its size.
pad=$(head -c 6000 /dev/zero | tr '\0' a)
bigtok="$(herald_token "$SECRET" r2 60 ",\"pad\":\"$pad\"")"
hp=${bigtok%.*}
bigtok="$hp.$(head -c $((8192 - ${#hp} - 1)) /dev/zero | tr '\0' A)"
"$CLI" -t 5 -S "$(refresh_msg "$bigtok")" "$NG" "$(path "$(herald_token "$SECRET" r2 60)")" >"$T/o"
is "${#bigtok}:$(close_of "$T/o" | sed 's/bad_signature\|malformed/REFUSED/')" "8192:close 4401 REFUSED" \
	"a refresh carrying an 8 KiB token is read whole (4401 for its signature)"

# --- the warning before expiry -------------------------------------------------------
# 6 s + 1 s of leeway: warned a quarter of the time left before the end
# (1.75 s), then closed.
"$CLI" -t 12 "$NG" "$(path "$(herald_token "$SECRET" r3 6)")" >"$T/w"
is "$(grep -o '^text {"type":"expiring","expires_in":[0-9]*}' "$T/w")" \
	'text {"type":"expiring","expires_in":2}' "a connection that does not refresh is warned: expiring, expires_in 2"
is "$(close_of "$T/w")" "close 4401 expired" "then closed with 4401 at its token's end"
is "$(metric herald_ws_expiry_warnings_total)" 1 "herald_ws_expiry_warnings_total counts the warning"

# Warned, then refreshed in time (10 s + 1 s: warned at 7.5-8.25 s, refreshed
# at 9 s): open past the end, until the client's own timeout.
"$CLI" -t 14 -D 9000 -S "$(refresh_msg "$(herald_token "$SECRET" r3 120)")" "$NG" \
	"$(path "$(herald_token "$SECRET" r3 10)")" >"$T/w2"
is "$(grep '^text\|^close\|^timeout\|^sent' "$T/w2" | sed 's/[0-9]\{6,\}/N/' | tr '\n' ' ')" \
	'text {"type":"expiring","expires_in":3} sent text {"type":"refreshed","expires_at":N} timeout ' \
	"warned, refreshed after the warning: open until the client's own timeout"

grep -q 'segfault\|Sanitizer\|runtime error' "$T/ws.log"
ok $((!$?)) "no sanitizer report in herald-ws's log"
done_testing
