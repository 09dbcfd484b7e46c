#!/usr/bin/env bash
# Tickets keep the JWT out of URLs (issue 12): POST .../ticket on herald-fcgi,
# ?ticket= on two herald-ws and herald-fcgi's SSE behind nginx/herald.conf,
# one Redis.  Single use across processes, expiry, forgery, the user comes
# from the ticket, Redis down, and nginx's error log without the JWT.  TAP.
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
WS=$B/herald-ws
FCGI=$B/herald-fcgi
PUB=$B/herald-publish
CLI=$B/tests/integration/ws_client
PATH=$PATH:/usr/sbin
for f in "$WS" "$FCGI" "$PUB" "$CLI"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v nginx >/dev/null || skip_all "nginx not found"
command -v curl >/dev/null || skip_all "curl not found"
command -v openssl >/dev/null || skip_all "openssl not installed"
lib_clean_env
lib_init
chmod 755 "$T"
start_redis || skip_all "cannot start redis-server"

SECRET=test-secret-$$
TTL=3
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=debug
export HERALD_SOCKET_MODE=0666 HERALD_HEARTBEAT=1 HERALD_THREADS=8
WS1_PID= WS2_PID= FCGI_PID=
cleanup() {
	nginx_stop
	for p in $WS1_PID $WS2_PID $FCGI_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	_lib_cleanup
}
trap cleanup EXIT

wait_for() {
	local i=0
	while [ $i -lt "${3:-50}" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
tok() { herald_token "$SECRET" "$1" 3600 "${2:-}"; }

WS1_PORT=$(port_pick)
WS2_PORT=$(port_pick)
HTTP_PORT=$(port_pick)
start_ws1() {
	"$WS" --listen "127.0.0.1:$WS1_PORT" >>"$T/ws1.log" 2>&1 &
	WS1_PID=$!
	port_wait "$WS1_PORT" "$WS1_PID"
}
start_ws1
"$WS" --listen "127.0.0.1:$WS2_PORT" >"$T/ws2.log" 2>&1 &
WS2_PID=$!
HERALD_TICKET_TTL=$TTL "$FCGI" --listen "unix:$T/fcgi.sock" >"$T/fcgi.log" 2>&1 &
FCGI_PID=$!
port_wait "$WS2_PORT" "$WS2_PID"
for _i in $(seq 100); do [ -S "$T/fcgi.sock" ] && break; sleep 0.05; done
nginx_start "$src/nginx/herald.conf" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS1_PORT" "unix:$T/fcgi.sock"
ok $? "two herald-ws, herald-fcgi (ticket_ttl $TTL) and nginx with nginx/herald.conf"
N=127.0.0.1:$HTTP_PORT
for _i in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/notifications/health")" = 200 ] && break
	sleep 0.1
done

TA=$(tok alice)
TB=$(tok bob)
# ticket TOKEN: POST for a ticket through nginx, print it
ticket() {
	curl -s -X POST -H "Authorization: Bearer $1" "http://$N/api/v1/notifications/ticket" |
		sed -n 's/^{"ticket":"\([A-Za-z0-9_-]*\)","expires_in":[0-9]*}$/\1/p'
}
wst() { printf '/api/v1/ws/notifications?ticket=%s' "$1"; }

# --- the endpoint ----------------------------------------------------------------
curl -s -D "$T/h" -X POST -H "Authorization: Bearer $TA" "http://$N/api/v1/notifications/ticket" >"$T/t"
grep -q "^{\"ticket\":\"[A-Za-z0-9_-]\{43\}\",\"expires_in\":$TTL}$" "$T/t"
ok $? "POST /api/v1/notifications/ticket with the token answers {\"ticket\":43 chars,\"expires_in\":$TTL}"
grep -qi '^Cache-Control: no-store' "$T/h"
ok $? "... not cached"
t=$(sed -n 's/.*"ticket":"\([^"]*\)".*/\1/p' "$T/t")
is "$(rcli GET "notifications:__herald:ticket:$t" | cut -d' ' -f1)" alice "stored in Redis for alice"
ttl=$(rcli TTL "notifications:__herald:ticket:$t")
[ "$ttl" -ge 1 ] && [ "$ttl" -le $TTL ]
ok $? "with a lifetime of ticket_ttl (TTL $ttl)"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$N/api/v1/notifications/ticket")" 401 \
	"no token: 401"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$N/api/v1/notifications/ticket?token=$TA")" 401 \
	"a token in the URL does not count: 401"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TA" "http://$N/api/v1/notifications/ticket")" 405 \
	"GET: 405"

# --- single use across processes, and the user is the ticket's ---------------------
"$CLI" -n 1 -t 5 "$N" "$(wst "$t")" >"$T/w1" &
w1=$!
wait_for "$T/w1" "^status 101"
wait_subscribed alice
"$PUB" bob '{"for":"bob"}' >/dev/null
"$PUB" alice '{"for":"alice"}' >/dev/null
wait $w1
grep -q '"for":"alice"' "$T/w1" && ! grep -q '"for":"bob"' "$T/w1"
ok $? "ws#1 through nginx with alice's ticket: alice's stream (her notification, none of bob's)"
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "$t")" >"$T/w2"
grep -q "^close 4401 bad_ticket" "$T/w2"
ok $? "the same ticket on ws#2: 4401 bad_ticket"
is "$(curl -s -o "$T/s1" -w '%{http_code}' "http://$N/api/v1/sse/notifications?ticket=$t")" 401 \
	"the same ticket on SSE: 401"
grep -q '"detail":"bad_ticket"' "$T/s1"
ok $? '... with "detail":"bad_ticket"'
"$CLI" -t 2 "127.0.0.1:$WS1_PORT" "$(wst "$t")" >"$T/w3"
grep -q "^close 4401 bad_ticket" "$T/w3"
ok $? "the same ticket again on ws#1: 4401"

t2=$(ticket "$TB")
curl -s -N "http://$N/api/v1/sse/notifications?ticket=$t2" >"$T/s2" &
s2=$!
wait_for "$T/s2" "^retry:"
ok $? "SSE with bob's ticket opens"
wait_subscribed bob
"$PUB" alice '{"for":"alice","n":2}' >/dev/null
"$PUB" bob '{"for":"bob","n":2}' >/dev/null
wait_for "$T/s2" '"for":"bob","n":2'
ok $? "... and is bob's stream"
! grep -q '"for":"alice"' "$T/s2"
ok $? "... with none of alice's"
kill $s2 2>/dev/null
wait $s2 2>/dev/null
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "$t2")" >"$T/w4"
grep -q "^close 4401 bad_ticket" "$T/w4"
ok $? "a ticket used on SSE is refused on ws#2"

# --- forged, malformed, expired --------------------------------------------------
forged=$(head -c 32 /dev/urandom | openssl base64 -A | tr '+/' '-_' | tr -d '=')
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "$forged")" >"$T/w5"
grep -q "^close 4401 bad_ticket" "$T/w5"
ok $? "a forged ticket: 4401 bad_ticket"
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "not-a-ticket")" >"$T/w6"
grep -q "^close 4401 bad_ticket" "$T/w6"
ok $? "a malformed ticket: 4401 bad_ticket"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/sse/notifications?ticket=$forged")" 401 \
	"a forged ticket on SSE: 401"
t3=$(ticket "$TA")
t4=$(ticket "$TA")
sleep $((TTL + 1))
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "$t3")" >"$T/w7"
grep -q "^close 4401 bad_ticket" "$T/w7"
ok $? "an expired ticket (ttl $TTL s, used after $((TTL + 1)) s): 4401"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/sse/notifications?ticket=$t4")" 401 \
	"an expired ticket on SSE: 401"

# --- revocation applies to a ticket's connection ----------------------------------------
t5=$(curl -s -X POST -H "Authorization: Bearer $(tok carol ',"jti":"c-1"')" \
	"http://$N/api/v1/notifications/ticket" | sed -n 's/.*"ticket":"\([^"]*\)".*/\1/p')
"$CLI" -t 10 "127.0.0.1:$WS2_PORT" "$(wst "$t5")" >"$T/w8" &
w8=$!
wait_for "$T/w8" "^status 101"
wait_subscribed carol
"$PUB" --revoke-jti carol c-1 >/dev/null
wait_for "$T/w8" "^close 4401 revoked" 10
ok $? "a connection opened with a ticket carries the token's jti: --revoke-jti closes it"
wait $w8 2>/dev/null
t6=$(curl -s -X POST -H "Authorization: Bearer $(tok carol ',"jti":"c-1"')" \
	"http://$N/api/v1/notifications/ticket" | sed -n 's/.*"ticket":"\([^"]*\)".*/\1/p')
"$CLI" -t 2 "127.0.0.1:$WS1_PORT" "$(wst "$t6")" >"$T/w9"
grep -q "^close 4401 revoked" "$T/w9"
ok $? "a ticket for a revoked token is refused at connect"

# --- nginx's error log: the ticket flow keeps the JWT out --------------------------------
TC=$(tok dora)
t7=$(ticket "$TC")
kill "$WS1_PID"
wait "$WS1_PID" 2>/dev/null
WS1_PID=
"$CLI" -t 2 "$N" "$(wst "$t7")" >"$T/w10"
grep -q "^status 502" "$T/w10"
ok $? "herald-ws #1 stopped: nginx answers 502"
grep -q "ticket=$t7" "$T/nginx/logs/error.log"
ok $? "nginx's error log has the request line (with the ticket)"
! grep -q "$TC" "$T/nginx/logs/error.log"
ok $? "... and not the JWT"
! grep -q "$t" "$T/ws1.log" "$T/ws2.log" "$T/fcgi.log"
ok $? "Herald's own logs (debug level) never show a ticket"
start_ws1

# --- Redis down ------------------------------------------------------------------------
t8=$(ticket "$TA")
stop_redis
sleep 0.5
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wst "$t8")" >"$T/w11"
grep -q "^close 4401 bad_ticket" "$T/w11"
ok $? "Redis down: a ticket is refused like a bad token (4401)"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TA" "http://$N/api/v1/notifications/ticket")" 503 \
	"Redis down: POST ticket answers 503"
curl -s "http://127.0.0.1:$WS2_PORT/api/v1/notifications/metrics" >"$T/m"
grep -q '^herald_ws_ticket_refused_total [1-9]' "$T/m"
ok $? "herald_ws_ticket_refused_total counts the refusals"

done_testing
