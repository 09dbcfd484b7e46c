#!/usr/bin/env bash
# Disconnect and revocation on every node (issue 12): two herald-ws and one
# herald-fcgi (behind nginx with nginx/herald.conf) on one redis-server,
# clients of users A and B on each; herald-publish --disconnect,
# --revoke-before and --revoke-jti, and the raw redis-cli commands of
# docs/protocol.md; herald-fcgi's stream check (on its loop) with Redis
# frozen and down (fail open).  TAP on stdout.
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
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=debug
export HERALD_SOCKET_MODE=0666 HERALD_HEARTBEAT=1 HERALD_THREADS=8
WS1_PID= WS2_PID= FCGI_PID=
cleanup() {
	nginx_stop
	for p in $WS1_PID $WS2_PID $FCGI_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	_lib_cleanup
}
trap cleanup EXIT

# wait_for FILE PATTERN [TENTHS]
wait_for() {
	local i=0
	while [ $i -lt "${3:-50}" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# tok USER [EXTRA_CLAIMS] [IAT_OFFSET]: a token valid 1 h issued IAT_OFFSET s from now
tok() {
	local now
	now=$(date +%s)
	herald_jwt '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":\"$1\",\"iat\":$((now + ${3:-0})),\"exp\":$((now + 3600))${2:-}}" "$SECRET"
}
wspath() { printf '/api/v1/ws/notifications?token=%s' "$1"; }

WS1_PORT=$(port_pick)
WS2_PORT=$(port_pick)
HTTP_PORT=$(port_pick)
"$WS" --listen "127.0.0.1:$WS1_PORT" >"$T/ws1.log" 2>&1 &
WS1_PID=$!
"$WS" --listen "127.0.0.1:$WS2_PORT" >"$T/ws2.log" 2>&1 &
WS2_PID=$!
"$FCGI" --listen "unix:$T/fcgi.sock" >"$T/fcgi.log" 2>&1 &
FCGI_PID=$!
port_wait "$WS1_PORT" "$WS1_PID" && port_wait "$WS2_PORT" "$WS2_PID"
ok $? "two herald-ws listen"
for _i in $(seq 100); do [ -S "$T/fcgi.sock" ] && break; sleep 0.05; done
nginx_start "$src/nginx/herald.conf" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS1_PORT" "unix:$T/fcgi.sock"
ok $? "nginx with nginx/herald.conf in front of herald-ws #1 and herald-fcgi"
N=127.0.0.1:$HTTP_PORT
for _i in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/notifications/health")" = 200 ] && break
	sleep 0.1
done
# every process subscribed to the control channel
for _i in $(seq 100); do
	[ "$(rcli PUBSUB NUMSUB notifications:__herald:control | tail -1)" = 3 ] && break
	sleep 0.1
done
is "$(rcli PUBSUB NUMSUB notifications:__herald:control | tail -1)" 3 \
	"herald-ws x2 and herald-fcgi subscribe to notifications:__herald:control"

# --- disconnect: every A connection on the three, no B connection -------------
TA=$(tok alice)
TB=$(tok bob)
"$CLI" -t 20 "$N" "$(wspath "$TA")" >"$T/a1" &
a1=$!
"$CLI" -t 20 "127.0.0.1:$WS2_PORT" "$(wspath "$TA")" >"$T/a2" &
a2=$!
curl -s -N -H "Authorization: Bearer $TA" "http://$N/api/v1/sse/notifications" >"$T/a3" &
a3=$!
"$CLI" -t 20 "$N" "$(wspath "$TB")" >"$T/b1" &
b1=$!
"$CLI" -t 20 "127.0.0.1:$WS2_PORT" "$(wspath "$TB")" >"$T/b2" &
b2=$!
curl -s -N -H "Authorization: Bearer $TB" "http://$N/api/v1/sse/notifications" >"$T/b3" &
b3=$!
wait_for "$T/a1" "^status 101" && wait_for "$T/a2" "^status 101" && wait_for "$T/a3" "^retry:" &&
	wait_for "$T/b1" "^status 101" && wait_for "$T/b2" "^status 101" && wait_for "$T/b3" "^retry:"
ok $? "alice and bob connected on ws#1 (nginx), ws#2 and SSE"
wait_subscribed alice && wait_subscribed bob
out=$("$PUB" --disconnect alice)
is "$out" "alice: disconnect alice sent to 3 Herald processes" "herald-publish --disconnect alice"
wait_for "$T/a1" "^close 4403" 10 && wait_for "$T/a2" "^close 4403" 10 &&
	wait_for "$T/a3" "^event: disconnect" 10
ok $? "within a second: alice's WebSockets get 4403 on both herald-ws, her SSE stream event: disconnect"
grep -q '^data: {"reason":"disconnect"}' "$T/a3"
ok $? 'the SSE event carries {"reason":"disconnect"}'
for _i in $(seq 20); do kill -0 $a3 2>/dev/null || break; sleep 0.1; done
! kill -0 $a3 2>/dev/null
ok $? "alice's SSE stream ended"
sleep 0.3
! grep -q "^close\|^eof" "$T/b1" "$T/b2" && ! grep -q "disconnect" "$T/b3"
ok $? "bob's three connections stay open"
id=$("$PUB" bob '{"still":"here"}')
wait_for "$T/b1" "still" && wait_for "$T/b2" "still" && wait_for "$T/b3" "still"
ok $? "bob still gets his notifications on all three"
curl -s "http://$N/api/v1/notifications/metrics" >"$T/m"
grep -q '^herald_disconnected_total{reason="disconnect"} 1$' "$T/m"
ok $? "herald-fcgi /metrics: herald_disconnected_total{reason=\"disconnect\"} 1"
curl -s "http://127.0.0.1:$WS2_PORT/api/v1/notifications/metrics" >"$T/m2"
grep -q '^herald_disconnected_total{reason="disconnect"} 1$' "$T/m2" &&
	grep -q '^herald_ws_closes_total{code="4403"} 1$' "$T/m2"
ok $? "herald-ws #2 /metrics: disconnected 1, closes{code=4403} 1"
kill $b1 $b2 $b3 2>/dev/null
wait $a1 $a2 $a3 $b1 $b2 $b3 2>/dev/null

# A disconnect refuses nothing: alice may connect again at once.
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wspath "$TA")" >"$T/a4"
grep -q "^status 101" "$T/a4" && ! grep -q "^close 44" "$T/a4"
ok $? "after --disconnect a new connection is accepted"

# --- revoke-before: old tokens refused at connect and closed live ----------------
OLD=$(tok carol "" -100)
"$CLI" -t 20 "$N" "$(wspath "$OLD")" >"$T/c1" &
c1=$!
"$CLI" -t 20 "127.0.0.1:$WS2_PORT" "$(wspath "$OLD")" >"$T/c2" &
c2=$!
curl -s -N "http://$N/api/v1/sse/notifications?token=$OLD" >"$T/c3" &
c3=$!
wait_for "$T/c1" "^status 101" && wait_for "$T/c2" "^status 101" && wait_for "$T/c3" "^retry:"
ok $? "carol connected with a token issued 100 s ago"
wait_subscribed carol
out=$("$PUB" --revoke-before carol "$(($(date +%s) - 10))")
ok $? "herald-publish --revoke-before carol NOW-10: $out"
wait_for "$T/c1" "^close 4401 revoked" 10 && wait_for "$T/c2" "^close 4401 revoked" 10 &&
	wait_for "$T/c3" '^data: {"reason":"revoked"}' 10
ok $? "carol's old-token connections close: 4401 revoked on both herald-ws, SSE disconnect revoked"
ttl=$(rcli TTL notifications:carol:nbf)
[ "$ttl" -gt 86000 ] && [ "$ttl" -le 86400 ]
ok $? "notifications:carol:nbf expires after token_max_age (TTL $ttl)"
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wspath "$OLD")" >"$T/c4"
grep -q "^close 4401 revoked" "$T/c4"
ok $? "ws: the old token is refused at connect with 4401 revoked"
"$CLI" -t 2 "$N" "$(wspath "$OLD")" >"$T/c5"
grep -q "^close 4401 revoked" "$T/c5"
ok $? "ws through nginx: refused the same"
is "$(curl -s -o "$T/c6" -w '%{http_code}' "http://$N/api/v1/sse/notifications?token=$OLD")" 401 \
	"SSE: the old token gets 401"
grep -q '"detail":"revoked"' "$T/c6"
ok $? 'the 401 says "detail":"revoked"'
# herald-fcgi subscribes (and reads the history's tail) while the check is
# out: none of it reaches a refused client
! grep -q '^event:\|^id:\|^retry:' "$T/c6"
ok $? "the 401 carries nothing of a stream (no head, cursor or event)"
"$PUB" carol '{"before":1}' >/dev/null
is "$(curl -s -o "$T/c6b" -w '%{http_code}' -H 'Last-Event-ID: 0-0' \
	"http://$N/api/v1/sse/notifications?token=$OLD")" 401 \
	"SSE with Last-Event-ID (a replay read while the check is out): still 401"
! grep -q 'before' "$T/c6b"
ok $? "... and the notification in the history does not leak into the 401"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OLD" "http://$N/api/v1/notifications/poll")" \
	401 "poll: the old token gets 401"
# a poll's check goes to Redis in one write with its history read
is "$(curl -s -o "$T/c6c" -w '%{http_code}' -H "Authorization: Bearer $OLD" \
	"http://$N/api/v1/notifications/poll?since=0-0")" 401 \
	"poll with since=0-0 (the check and the history read in one round trip): still 401"
! grep -q 'before' "$T/c6c"
ok $? "... and the history read with it does not leak into the 401"
NEW=$(tok carol)
"$CLI" -n 1 -t 5 "127.0.0.1:$WS2_PORT" "$(wspath "$NEW")" >"$T/c7" &
c7=$!
wait_for "$T/c7" "^status 101"
wait_subscribed carol
"$PUB" carol '{"fresh":1}' >/dev/null
wait $c7
grep -q '"fresh":1' "$T/c7"
ok $? "a token issued now works and gets its notification"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NEW" "http://$N/api/v1/notifications/poll")" \
	200 "poll with the new token: 200"
NOIAT=$(herald_jwt '{"alg":"HS256","typ":"JWT"}' "{\"sub\":\"carol\",\"exp\":$(($(date +%s) + 600))}" "$SECRET")
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wspath "$NOIAT")" >"$T/c8"
grep -q "^close 4401 revoked" "$T/c8"
ok $? "a token without iat is refused once the user has a not-before time"
wait $c1 $c2 $c3 2>/dev/null

# --- revoke-jti -------------------------------------------------------------------
J1=$(tok dave ',"jti":"tok-1"')
J2=$(tok dave ',"jti":"tok-2"')
"$CLI" -t 20 "127.0.0.1:$WS1_PORT" "$(wspath "$J1")" >"$T/d1" &
d1=$!
"$CLI" -t 20 "127.0.0.1:$WS2_PORT" "$(wspath "$J2")" >"$T/d2" &
d2=$!
curl -s -N "http://$N/api/v1/sse/notifications?token=$J1" >"$T/d3" &
d3=$!
wait_for "$T/d1" "^status 101" && wait_for "$T/d2" "^status 101" && wait_for "$T/d3" "^retry:"
ok $? "dave connected with two tokens (jti tok-1 and tok-2)"
wait_subscribed dave
exp=$(($(date +%s) + 3600))
out=$("$PUB" --revoke-jti dave tok-1 "$exp")
ok $? "herald-publish --revoke-jti dave tok-1 EXP: $out"
wait_for "$T/d1" "^close 4401 revoked" 10 && wait_for "$T/d3" '^data: {"reason":"revoked"}' 10
ok $? "the connections with jti tok-1 close (ws 4401 revoked, SSE disconnect revoked)"
sleep 0.3
! grep -q "^close" "$T/d2"
ok $? "the connection with jti tok-2 stays open"
ttl=$(rcli TTL notifications:dave:revoked:tok-1)
[ "$ttl" -gt 3500 ] && [ "$ttl" -le 3600 ]
ok $? "notifications:dave:revoked:tok-1 expires with the token (TTL $ttl)"
"$CLI" -t 2 "127.0.0.1:$WS1_PORT" "$(wspath "$J1")" >"$T/d4"
grep -q "^close 4401 revoked" "$T/d4"
ok $? "the revoked jti is refused at connect"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/sse/notifications?token=$J1")" 401 \
	"SSE: the revoked jti gets 401"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/notifications/poll?token=$J1")" 401 \
	"poll: the revoked jti gets 401"
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/notifications/poll?token=$J2")" 200 \
	"poll: the other jti gets 200"
kill $d2 2>/dev/null
wait $d1 $d2 $d3 2>/dev/null

# --- the raw Redis commands of docs/protocol.md -------------------------------------
TE=$(tok erin)
"$CLI" -t 20 "127.0.0.1:$WS1_PORT" "$(wspath "$TE")" >"$T/e1" &
e1=$!
wait_for "$T/e1" "^status 101"
wait_subscribed erin
rcli PUBLISH notifications:__herald:control "disconnect erin" >/dev/null
wait_for "$T/e1" "^close 4403" 10
ok $? "redis-cli PUBLISH notifications:__herald:control 'disconnect erin' closes erin with 4403"
wait $e1 2>/dev/null
rcli PUBLISH notifications:__herald:control "bogus erin" >/dev/null
sleep 0.2
grep -q "ignoring a malformed message" "$T/ws1.log"
ok $? "a malformed control message is logged and ignored"
kill -0 "$WS1_PID" && kill -0 "$WS2_PID" && kill -0 "$FCGI_PID"
ok $? "every process still runs"

# --- herald-fcgi's stream check, on its loop: Redis frozen ----------------------------
# The loop pipelines the check on the subscriber's link; no answer within
# its 2 s deadline lets the stream in, as a failed check does.
fm() { curl -s "http://$N/api/v1/notifications/metrics" | sed -n "s/^$1 //p"; }

# --- a poll's check that Redis refuses while its history read is answered --------
# The check goes to Redis in the same write as the read: an error reply to
# the MGET alone lets the poll in (fail open) and costs it none of its answer.
"$PUB" ivy '{"acl":1}' >/dev/null
ea=$(fm herald_fcgi_revocation_check_errors_total)
rcli ACL SETUSER default -mget >/dev/null
is "$(curl -s -o "$T/i1" -w '%{http_code}' "http://$N/api/v1/notifications/poll?token=$(tok ivy)&since=0-0")" \
	200 "MGET refused by Redis (ACL), the history read answered: the poll gets 200 (fail open)"
rcli ACL SETUSER default +mget >/dev/null
grep -q '"acl":1' "$T/i1"
ok $? "... with the history the read brought"
is "$(fm herald_fcgi_revocation_check_errors_total)" $((${ea:-0} + 1)) \
	"... and herald_fcgi_revocation_check_errors_total counts it"
grep -q "revocation check for ivy failed: MGET .*NOPERM" "$T/fcgi.log"
ok $? "... with the reason in herald-fcgi's log: $(grep -o 'revocation check for ivy failed: [^;]*' "$T/fcgi.log" | head -1)"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OLD" "http://$N/api/v1/notifications/poll")" \
	401 "MGET allowed again: the revoked token's poll gets 401 (the links stayed in step)"

e0=$(fm herald_fcgi_revocation_check_errors_total)
kill -STOP "$REDIS_PID"
curl -s -N --max-time 5 -o "$T/g1" "http://$N/api/v1/sse/notifications?token=$(tok gina)"
kill -CONT "$REDIS_PID"
grep -q '^retry: ' "$T/g1"
ok $? "Redis frozen: an SSE stream is let in once the check's deadline passes (fail open)"
grep -q "revocation check for gina failed" "$T/fcgi.log"
ok $? "... with a warning in herald-fcgi's log: $(grep -o 'revocation check for gina failed: [^;]*' "$T/fcgi.log" | head -1)"
for _i in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/notifications/health")" = 200 ] && break
	sleep 0.1
done
is "$(curl -s -o /dev/null -w '%{http_code}' "http://$N/api/v1/sse/notifications?token=$J1")" 401 \
	"Redis back: the revoked jti still gets 401 on SSE"

# --- Redis down: fail open ------------------------------------------------------------
stop_redis
curl -s -N --max-time 2 -o "$T/g2" "http://$N/api/v1/sse/notifications?token=$(tok hank)"
grep -q '^retry: ' "$T/g2"
ok $? "Redis down: an SSE stream with a valid token is let in (fail open)"
e1=$(fm herald_fcgi_revocation_check_errors_total)
[ "${e1:-0}" -ge $((${e0:-0} + 2)) ]
ok $? "... and herald_fcgi_revocation_check_errors_total counts both ($e0 -> $e1)"
sleep 0.5
"$CLI" -t 2 "127.0.0.1:$WS2_PORT" "$(wspath "$(tok frank)")" >"$T/f1"
grep -q "^status 101" "$T/f1" && ! grep -q "^close 4401" "$T/f1"
ok $? "Redis down: a valid token is let in (fail open)"
grep -q "revocation check for user frank failed" "$T/ws2.log"
ok $? "... with a warning in the log"
curl -s "http://127.0.0.1:$WS2_PORT/api/v1/notifications/metrics" >"$T/m3"
grep -q '^herald_ws_revocation_check_errors_total 1$' "$T/m3"
ok $? "... and herald_ws_revocation_check_errors_total 1"

done_testing
