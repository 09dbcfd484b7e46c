#!/usr/bin/env bash
# herald-ws through real nginx (the shipped nginx/herald.conf) and a real
# redis-server: the checks of issue 4.  TAP on stdout.  Clients are
# tests/integration/ws_client; publishing is herald-publish or redis-cli.
#
# Bounded on purpose: the half-open test holds HALF_OPEN connections
# (default 10000, straight to herald-ws: the harness's nginx has 4096
# worker connections) and the slow-consumer flood is 40 MB.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/stack.sh"

lib_init
WS="$HERALD_BUILDDIR/herald-ws"
PUB="$HERALD_BUILDDIR/herald-publish"
CLI="$HERALD_BUILDDIR/tests/integration/ws_client"
CONF="$(cd "$(dirname "$0")/../.." && pwd)/nginx/herald.conf"
HALF_OPEN=${HALF_OPEN:-10000}
for f in "$WS" "$PUB" "$CLI"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
# The caller's configuration keys (HERALD_CONFIG, HERALD_JWT_SECRET ...) would
# change what the servers below do: each gets exactly the keys its checks need.
lib_clean_env
start_redis || skip_all "cannot start redis-server"


SECRET=test-secret-$$
WS_PID=
WS2_PID=
cleanup_ws() {
	nginx_stop
	for p in $WS_PID $WS2_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	_lib_cleanup
}
trap cleanup_ws EXIT

path() { printf '/api/v1/ws/notifications?token=%s%s' "$(herald_token "$SECRET" "$1" 3600)" "${2:-}"; }
publish() { HERALD_REDIS_URL=$REDIS_URL "$PUB" "$@"; }
# WS_TEST_WRAP: e.g. "valgrind --error-exitcode=99 --leak-check=full" (make check-valgrind).
WS_TEST_WRAP=${WS_TEST_WRAP:-}
mem_checks_for "$WS" "$WS_TEST_WRAP"
# Client time-outs (not assertions) stretched under valgrind.
S=1
[ -n "$WS_TEST_WRAP" ] && S=5

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

WS_PORT=$(port_pick)
HTTP_PORT=$(port_pick)
# The variables Kubernetes injects for Services named herald and herald-ws
# (issue 12): not keys, and they must not stop the program.
start_ws() {
	HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_JWT_LEEWAY=1 \
	HERALD_ALLOWED_ORIGINS=https://app.example HERALD_MAX_CONNECTIONS_PER_USER=3 \
	HERALD_PORT=tcp://10.0.0.1:80 HERALD_SERVICE_HOST=10.0.0.1 HERALD_SERVICE_PORT=80 \
	HERALD_PORT_80_TCP=tcp://10.0.0.1:80 HERALD_WS_SERVICE_PORT=8000 \
	HERALD_WS_SERVICE_HOST=10.0.0.2 \
		$WS_TEST_WRAP "$WS" --listen "127.0.0.1:$WS_PORT" --handshake-timeout 2 --log-level debug \
		>>"$T/ws.log" 2>&1 &
	WS_PID=$!
	port_wait "$WS_PORT" "$WS_PID"
}
start_ws
ok $? "herald-ws starts on 127.0.0.1:$WS_PORT (with Kubernetes' HERALD_PORT, HERALD_SERVICE_HOST ... set)"
out=$(HERALD_JWT_SECRET=x HERALD_JWT_SECRTE=y "$WS" --check-config 2>&1)
is "$?:$out" "1:herald-ws: environment: unknown key HERALD_JWT_SECRTE: did you mean HERALD_JWT_SECRET?" \
	"a near miss of a key in the environment is refused with the key it misses"
out=$(HERALD_JWT_SECRET=x HERALD_PORT=tcp://10.0.0.1:80 HERALD_OF_ANOTHER_TOOL=1 "$WS" --check-config 2>&1)
is "$?:$out" "0:herald-ws: configuration ok" "--check-config: unknown HERALD_ variables are not errors"

nginx_test "$CONF" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS_PORT" "unix:$T/fcgi.sock" 2>"$T/nginx-t.log"
ok $? "nginx -t accepts nginx/herald.conf"
nginx_start "$CONF" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS_PORT" "unix:$T/fcgi.sock"
ok $? "nginx starts with nginx/herald.conf on 127.0.0.1:$HTTP_PORT"
NG=127.0.0.1:$HTTP_PORT

# --- the first user's own check --------------------------------------------
curl -s -i -N --max-time $S -H "Connection: Upgrade" -H "Upgrade: websocket" \
	-H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
	"http://$NG$(path 1)" >"$T/curl.out" 2>&1
head -1 "$T/curl.out" | grep -q '^HTTP/1.1 101'
ok $? "curl through nginx answers 101"
grep -qi '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=' "$T/curl.out"
ok $? "Sec-WebSocket-Accept is RFC 6455's"

# --- delivery ------------------------------------------------------------------
"$CLI" -n 1 -t 5 "$NG" "$(path 42)" >"$T/c1" &
c=$!
wait_for "$T/c1" "^status 101"
id=$(publish 42 '{"title":"hi"}')
wait $c
is "$(sed -n 2p "$T/c1")" "text {\"id\":\"$id\",\"channel\":\"notifications:42\",\"ts\":${id%-*},\"data\":{\"title\":\"hi\"}}" \
	"herald-publish -> the client gets the envelope through nginx"

# nginx relays frames through 512-byte buffers: a 60 KiB notification
# crosses in pieces and arrives whole, byte for byte.
"$CLI" -n 1 -t 5 "$NG" "$(path 43)" >"$T/c2" &
c=$!
wait_for "$T/c2" "^status 101"
bigdata="{\"blob\":\"$(head -c 45000 /dev/urandom | base64 -w0 | head -c 60000)\"}"
printf '%s' "$bigdata" >"$T/bigdata"
id=$(publish 43 - <"$T/bigdata")
wait $c
is "$(sed -n 2p "$T/c2" | md5sum)" "$(printf 'text {"id":"%s","channel":"notifications:43","ts":%s,"data":%s}\n' \
	"$id" "${id%-*}" "$bigdata" | md5sum)" "a 60 KiB notification arrives whole through nginx"

"$CLI" -n 2 -t 5 "$NG" "$(path alice)" >"$T/a" &
a=$!
"$CLI" -n 1 -t 5 "$NG" "$(path bob)" >"$T/b" &
b=$!
wait_for "$T/a" "^status 101" && wait_for "$T/b" "^status 101"
publish alice '{"to":"alice","n":1}' >/dev/null
publish bob '{"to":"bob"}' >/dev/null
publish alice '{"to":"alice","n":2}' >/dev/null
wait $a $b
is "$(grep -c '"to":"alice"' "$T/a"),$(grep -c '"to":"bob"' "$T/a")" "2,0" "alice gets her two, none of bob's"
is "$(grep -c '"to":"bob"' "$T/b"),$(grep -c '"to":"alice"' "$T/b")" "1,0" "bob gets his one, none of alice's"

"$CLI" -n 1 -t 5 "$NG" "$(path carol)" >"$T/raw" &
c=$!
wait_for "$T/raw" "^status 101"
rcli PUBLISH notifications:carol '{"plain":true}' >/dev/null
wait $c
grep -q '^text {"id":null,"channel":"notifications:carol","ts":[0-9]*,"data":{"plain":true}}$' "$T/raw"
ok $? 'a raw PUBLISH arrives live with "id":null'

# --- resume ----------------------------------------------------------------------
last=$(publish dave '{"n":0}')
for n in 1 2 3; do publish dave "{\"n\":$n}" >/dev/null; done
"$CLI" -n 4 -t 5 "$NG" "$(path dave "&since=$last")" >"$T/resume" &
c=$!
wait_for "$T/resume" '"n":3'
publish dave '{"n":4}' >/dev/null
wait $c
is "$(grep -o '"n":[0-9]*' "$T/resume" | tr '\n' ' ')" '"n":1 "n":2 "n":3 "n":4 ' \
	"resume with since: exactly the missed ones, in order, then live"

# --- bad input --------------------------------------------------------------------
close_of() { grep -m1 '^close\|^status [^1]\|^eof' "$1"; }
"$CLI" -t 3 "$NG" /api/v1/ws/notifications >"$T/o"
is "$(close_of "$T/o")" "close 4401 missing" "no token: 101 then close 4401"
"$CLI" -t 3 "$NG" "/api/v1/ws/notifications?token=$(herald_token "$SECRET" 42 -100)" >"$T/o"
is "$(close_of "$T/o")" "close 4401 expired" "expired token: 4401"
"$CLI" -t 3 "$NG" "/api/v1/ws/notifications?token=$(herald_token wrong-secret 42 3600)" >"$T/o"
is "$(close_of "$T/o")" "close 4401 bad_signature" "forged token: 4401"
"$CLI" -t 3 -H "Authorization: Bearer $(herald_token "$SECRET" 42 3600)" "$NG" /api/v1/ws/notifications >"$T/o" -n 0
grep -q '^status 101' "$T/o" && ! grep -q '^close 4401' "$T/o"
ok $? "a token in Authorization: Bearer is accepted"
"$CLI" -t $((3 * S)) -n 1 -H "Cookie: x=1; herald_token=$(herald_token "$SECRET" 42 3600)" -s 828300000000686969 \
	-H "Origin: https://app.example" "$NG" /api/v1/ws/notifications >"$T/o" &
c=$!
wait_for "$T/o" "^status 101" && wait_subscribed 42
publish 42 '{"cookie":1}' >/dev/null
wait $c
grep -q '"cookie":1' "$T/o"
ok $? "a token in the herald_token cookie is accepted with an allowed Origin (and a client binary frame ignored)"
# Cross-site WebSocket hijacking: any page can make the browser send the cookie.
ck="Cookie: herald_token=$(herald_token "$SECRET" 42 3600)"
"$CLI" -t 3 -H "$ck" "$NG" /api/v1/ws/notifications >"$T/o"
is "$(head -1 "$T/o")" "status 403" "a token from a cookie without an Origin: 403"
"$CLI" -t 3 -H "$ck" -H "Origin: https://evil.example" "$NG" /api/v1/ws/notifications >"$T/o"
is "$(head -1 "$T/o")" "status 403" "a token from a cookie with another site's Origin: 403"
"$CLI" -t 3 -n 0 -H "$ck" -H "Authorization: Bearer $(herald_token "$SECRET" 42 3600)" "$NG" \
	/api/v1/ws/notifications >"$T/o"
grep -q '^status 101' "$T/o" && ! grep -q '^close 4401' "$T/o"
ok $? "a cookie beside a token in Authorization: the header's token, no Origin needed"
"$CLI" -t 3 -H "Origin: https://evil.example" "$NG" "$(path 42)" >"$T/o"
is "$(head -1 "$T/o")" "status 403" "bad Origin: 403 before the upgrade"
"$CLI" -t 3 -H "Origin: https://app.example" -n 0 "$NG" "$(path 42)" >"$T/o"
is "$(head -1 "$T/o")" "status 101" "allowed Origin: 101"
"$CLI" -t 3 -v 8 -h "$NG" "$(path 42)" >"$T/o"
grep -q '^status 426' "$T/o" && grep -qi '^header Sec-WebSocket-Version: 13' "$T/o"
ok $? "Sec-WebSocket-Version 8: 426 with Sec-WebSocket-Version: 13"

"$CLI" -t 3 "$NG" "$(path 42 "&since=not-a-cursor")" >"$T/o"
is "$(close_of "$T/o")" "close 1008 bad since" "a garbage since cursor: 101 then close 1008"

frame_case() { # DESCRIPTION HEX WANT
	"$CLI" -t 3 -s "$2" "$NG" "$(path frames)" >"$T/o"
	is "$(close_of "$T/o")" "$3" "$1"
}
frame_case "unmasked frame: 1002" 8105414243444546 "close 1002 protocol error"
frame_case "reserved bit: 1002" c1850000000041424344 "close 1002 protocol error"
frame_case "unknown opcode 3: 1002" 83800000000 "close 1002 protocol error"
frame_case "fragmented ping: 1002" 0980000000000 "close 1002 protocol error"
frame_case "ping over 125 bytes: 1002" 89fe007e00000000 "close 1002 protocol error"
frame_case "text frame over 8256 bytes: 1009" 81fe210000000000 "close 1009 message too big"
frame_case "invalid UTF-8: 1007" 818200000000c0af "close 1007 invalid UTF-8"
frame_case "close with a bad code: 1002" 888200000000000a "close 1002 protocol error"
frame_case "client close 1000 is echoed" 88820000000003e8 "close 1000 "
"$CLI" -t 3 -s 898400000000706f6e67 "$NG" "$(path frames)" >"$T/o" &
c=$!
wait_for "$T/o" '^pong'
ok $? "a ping is answered with a pong"
kill $c 2>/dev/null; wait $c 2>/dev/null

# The upgrade request and 337 bytes of frames in one write: three binary
# frames, a ping and a close, all read (the first 256 bytes only, once).
req=$(printf 'GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' \
	"$(path frames)" | od -An -tx1 | tr -d ' \n')
bin=82e400000000$(printf '61%.0s' $(seq 100)) # binary: a text message is a command (refresh.sh)
"$CLI" -t 3 -r "$req$bin$bin$bin"898700000000706f6e672d6d65"88820000000003e8" "127.0.0.1:$WS_PORT" x >"$T/o"
is "$(tr '\n' ' ' <"$T/o")" "status 101 pong close 1000  " \
	"frames pipelined behind the handshake (337 bytes): every one is read, the ping answered, the close echoed"

"$CLI" -t 3 -r 160301020001000001fc0303 "127.0.0.1:$WS_PORT" x >"$T/o"
is "$(head -1 "$T/o")" "status 400" "garbage before the handshake: 400 (direct)"
"$CLI" -t 3 -r 160301020001000001fc0303 "$NG" x >"$T/o"
is "$(head -1 "$T/o")" "status 400" "garbage before the handshake: 400 (through nginx)"
"$CLI" -t 3 -r 474554202f6170692f76312f77732f6e6f74696669636174696f6e7320485454502f312e310d0a "127.0.0.1:$WS_PORT" x >"$T/o"
is "$(head -1 "$T/o")" "status 408" "a handshake that never finishes: 408 after the timeout"
big=$(head -c 9000 /dev/zero | tr '\0' a)
"$CLI" -t 3 -H "X-Big: $big" "127.0.0.1:$WS_PORT" "$(path 42)" >"$T/o"
is "$(head -1 "$T/o")" "status 431" "headers over 8 KiB: 431"
for n in 1 2 3 4; do
	"$CLI" -t 4 -n 1 "$NG" "$(path limited)" >"$T/lim$n" &
	eval "l$n=\$!"
	wait_for "$T/lim$n" "^status 101"
done
wait_for "$T/lim4" "^close"
is "$(close_of "$T/lim4")" "close 4429 too many connections" "4th connection of a user past max_connections_per_user: 4429"
publish limited '{"n":1}' >/dev/null
wait $l1 $l2 $l3 $l4
is "$(cat "$T/lim1" "$T/lim2" "$T/lim3" | grep -c '^text')" 3 "the first three still get their message"

"$CLI" -t 4 "$NG" "/api/v1/ws/notifications?token=$(herald_token "$SECRET" 42 2)" >"$T/o"
is "$(close_of "$T/o")" "close 4401 expired" "a live connection whose token expires: 4401"

rss0=$(rss_kb "$WS_PID")
"$CLI" -o "$HALF_OPEN" -t 6 "127.0.0.1:$WS_PORT" x >"$T/half" 2>&1
is "$(tail -1 "$T/half")" "closed $HALF_OPEN of $HALF_OPEN" "$HALF_OPEN half-open connections are all closed by the handshake timeout"
kill -0 "$WS_PID"
ok $? "herald-ws is still running"
"$CLI" -n 1 -t 5 "$NG" "$(path 42)" >"$T/after" &
c=$!
wait_for "$T/after" "^status 101"
publish 42 '{"after":1}' >/dev/null
wait $c
grep -q '"after":1' "$T/after"
ok $? "delivery works after the bad input"
curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/health" >"$T/o"
grep -q '"status":"ok"' "$T/o"
ok $? "health answers ok on herald-ws's port"
curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/metrics" >"$T/m"
grep -q '^herald_ws_connections [0-9]' "$T/m" && grep -q '^herald_redis_up 1' "$T/m" &&
	grep -q '^herald_ws_messages_delivered_total [1-9]' "$T/m" &&
	grep -q '^herald_ws_publish_to_write_seconds_count [1-9]' "$T/m"
ok $? "metrics: Prometheus text with connections, deliveries, Redis state, lag"
curl -s -D "$T/mh" -o "$T/m" "http://127.0.0.1:$WS_PORT/api/v1/notifications/metrics"
len=$(tr -d '\r' <"$T/mh" | sed -n 's/^Content-Length: //p')
diag "herald-ws metrics: ${len:-?} bytes"
[ -n "$len" ] && [ "$len" = "$(wc -c <"$T/m")" ] && head -1 "$T/mh" | grep -q ' 200 ' &&
	tail -1 "$T/m" | grep -q '^herald_ws_publish_to_write_seconds_count [0-9]'
ok $? "metrics: the whole text, Content-Length right, up to the last metric"
sleep 2.5
rss_half=$(rss_kb "$WS_PID")
diag "RSS before the half-open test ${rss0} KiB, after ${rss_half} KiB"
# The connections live in herald-ws's slab (src/slab.c) and go back to the
# kernel with them; what stays is libevent's per-descriptor table (~90 bytes
# a descriptor; 9.6 MiB stayed when they came from the heap).
[ $(((rss_half - rss0) * 1024 / HALF_OPEN)) -lt 256 ]
ok_mem $? "memory after the half-open connections: under 256 bytes per connection of the peak (libevent keeps its fd table)"

# --- a slow consumer ----------------------------------------------------------------
# It pauses longer than the flood takes to publish (a few seconds; 9.6 s
# seen under ASan beside another test), and less than the 30 s write stall
# timeout: with a 4 s pause, a flood published that slowly was all received
# live (the sockets on the way, nginx's included, hold megabytes), and the
# queue never passed send_queue_max, so nothing was caught up.
"$CLI" -q -p 12 -t 14 "$NG" "$(path slow)" >"$T/slow" &
s=$!
"$CLI" -L -n 1 -t 20 "$NG" "$(path fast)" >"$T/fast" &
f=$!
wait_for "$T/slow" "^status 101" && wait_for "$T/fast" "^status 101"
rss1=$(rss_kb "$WS_PID")
pl=$(head -c 4000 /dev/zero | tr '\0' x)
for i in $(seq 10000); do printf '{"p":"%s"}\n' "$pl"; done >"$T/flood"
start=$(date +%s%N)
publish slow - <"$T/flood" >/dev/null
diag "published 10000 x 4 KiB in $((($(date +%s%N) - start) / 1000000)) ms"
publish fast '{"fast":1}' >/dev/null
wait $f
lag=$(sed -n 's/^lag //p' "$T/fast")
diag "publish-to-receive of the other client's message during the flood: ${lag:-?} ms"
[ -n "$lag" ]
ok $? "another client's message arrives during the flood"
wait $s
sleep 2.5
# Its queue passes send_queue_max while it does not read: every message is
# in the history, so herald-ws drops the queue and catches it up from there
# (a reset: the flood is longer than history_max, then the kept ones),
# instead of closing it with 4408.
is "$(close_of "$T/slow")" "" "the client that paused during the flood is not closed (no 4408)"
tail -1 "$T/slow" | grep -q '^timeout'
ok $? "... it stays open until it leaves itself"
texts=$(sed -n 's/^texts //p' "$T/slow")
[ "${texts:-0}" -ge 1000 ]
ok $? "... it is caught up from the history once it reads again ($texts messages: a reset and the kept ones)"
# Once, or more on a loaded machine: a catch-up whose pages the client reads
# slower than the flood goes on may overflow and be caught up again.
cu=$(curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/metrics" | sed -n 's/^herald_slow_caught_up_total //p')
[ "${cu:-0}" -ge 1 ]
ok $? "herald_slow_caught_up_total counts the catch-up ($cu)"
rss2=$(rss_kb "$WS_PID")
diag "RSS with two clients ${rss1} KiB, after the slow one left ${rss2} KiB"
[ $((rss2 - rss1)) -lt 4096 ]
ok_mem $? "memory returns (within 4 MiB of before the flood)"
grep -q '^herald_ws_queue_drops_total 0' <(curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/metrics")
ok $? "metrics: no queue dropped with its connection (herald_ws_queue_drops_total 0)"

# --- Redis killed and restarted mid-stream -------------------------------------------
"$CLI" -t 20 "$NG" "$(path erin)" >"$T/erin" &
c=$!
wait_for "$T/erin" "^status 101"
for n in 1 2 3; do publish erin "{\"n\":$n}" >/dev/null; done
wait_for "$T/erin" '"n":3'
kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" --save '' --appendonly no \
	--daemonize no --loglevel warning >>"$T/redis/log" 2>&1 &
REDIS_PID=$!
for i in $(seq 100); do [ "$(rcli PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
for n in 4 5 6; do publish erin "{\"n\":$n}" >/dev/null; done
wait_for "$T/erin" '"n":6' 100
sleep 0.3
kill $c; wait $c 2>/dev/null
grep -q '^text {"reset":true}' "$T/erin" && diag "the client was told {\"reset\":true}: the restarted Redis lost the history"
is "$(grep -o '"n":[0-9]*' "$T/erin" | tr '\n' ' ')" '"n":1 "n":2 "n":3 "n":4 "n":5 "n":6 ' \
	"Redis killed and restarted: every message once, in order"
for i in $(seq 50); do
	curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/health" | grep -q '"status":"ok"' && break
	sleep 0.2
done
curl -s "http://127.0.0.1:$WS_PORT/api/v1/notifications/health" | grep -q '"status":"ok"'
ok $? "health is ok again after Redis came back"

# --- live / ready: the orchestrators' probes (issue 15) ------------------------------
# live: 200 while the process runs.  ready: 503 with Retry-After while Redis
# is down or the canary is late (sub.h: three canary intervals of 2 s), 200
# again once it is back.  probe PATH prints "STATUS BODY".
HP="http://127.0.0.1:$WS_PORT/api/v1/notifications/health"
probe() {
	local st
	st=$(curl -s -o "$T/pb" --max-time 2 -w '%{http_code}' "$HP/$1")
	printf '%s %s' "$st" "$(cat "$T/pb")"
}
# until_ready WANT TENTHS: until ready answers WANT; prints the tenths waited
until_ready() {
	local i=0
	while [ $i -lt "$2" ]; do
		[ "$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$HP/ready")" = "$1" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	echo $i
}
is "$(probe live)" '200 {"status":"ok","probe":"live"}' "live: 200"
is "$(probe ready)" '200 {"status":"ok","probe":"ready"}' "ready: 200 with Redis up"
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$HP/ready")" 405 "ready: POST is 405"
is "$(curl -s -o /dev/null -w '%{http_code}' "$HP/ready/")" 404 "ready/: 404 (exact paths only)"
kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
t=$(until_ready 503 20)
[ "$t" -lt 20 ]
ok $? "Redis stopped: ready answers 503 within the canary interval ($t/10 s)"
curl -s -D "$T/rh" -o "$T/rb" "$HP/ready"
grep -qi '^Retry-After: 5' "$T/rh" && grep -q '"status":"unavailable","probe":"ready","reason":"redis' "$T/rb"
ok $? "ready's 503 has Retry-After and says why: $(cat "$T/rb")"
is "$(probe live)" '200 {"status":"ok","probe":"live"}' "Redis stopped: live stays 200"
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" --save '' --appendonly no \
	--daemonize no --loglevel warning >>"$T/redis/log" 2>&1 &
REDIS_PID=$!
t=$(until_ready 200 150)
[ "$t" -lt 150 ]
ok $? "Redis back: ready answers 200 again ($t/10 s)"
# A Redis that holds the connections but answers nothing (SIGSTOP): no
# socket error, only the canary tells.
kill -STOP "$REDIS_PID"
t=$(until_ready 503 120)
[ "$t" -lt 120 ]
ok $? "Redis frozen (SIGSTOP): ready answers 503 once the canary is late ($t/10 s)"
is "$(probe live)" '200 {"status":"ok","probe":"live"}' "Redis frozen: live stays 200"
kill -CONT "$REDIS_PID"
t=$(until_ready 200 150)
[ "$t" -lt 150 ]
ok $? "Redis thawed: ready answers 200 again ($t/10 s)"

# --- ping / pong timeout (a second instance with 1 s intervals) ----------------------
WS2_PORT=$(port_pick)
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_WS_PING_INTERVAL=1 \
HERALD_WS_PONG_TIMEOUT=1 $WS_TEST_WRAP "$WS" --listen "127.0.0.1:$WS2_PORT" >>"$T/ws2.log" 2>&1 &
WS2_PID=$!
port_wait "$WS2_PORT"
"$CLI" -t 6 -P "127.0.0.1:$WS2_PORT" "$(path 42)" >"$T/o"
grep -q '^ping' "$T/o" && [ "$(close_of "$T/o")" = "close 1001 no pong" ]
ok $? "a client that never answers pings is closed (1001 no pong)"
"$CLI" -t 4 "127.0.0.1:$WS2_PORT" "$(path 42)" >"$T/o"
[ "$(grep -c '^ping' "$T/o")" -ge 2 ] && grep -q '^timeout' "$T/o"
ok $? "a client that answers pings stays connected"
# No allowed_origins here: any Origin for a token in the URL, none for a cookie's.
"$CLI" -t 3 -H "$ck" -H "Origin: https://app.example" "127.0.0.1:$WS2_PORT" /api/v1/ws/notifications >"$T/o"
is "$(head -1 "$T/o")" "status 403" "allowed_origins empty: a token from a cookie is refused (403)"
"$CLI" -t 3 -H "$ck" "127.0.0.1:$WS2_PORT" /api/v1/ws/notifications >"$T/o"
is "$(head -1 "$T/o")" "status 403" "allowed_origins empty: a token from a cookie without Origin is refused (403)"
"$CLI" -t 1 -n 0 -H "Origin: https://elsewhere.example" "127.0.0.1:$WS2_PORT" "$(path 42)" >"$T/o"
grep -q '^status 101' "$T/o" && ! grep -q '^close 4401' "$T/o"
ok $? "allowed_origins empty: a token in ?token= with any Origin is accepted, as before"
kill "$WS2_PID"; wait "$WS2_PID"; WS2_PID=

# --- a peer that pings and never reads: no busy loop (issue 12) -----------------------
# A backlog fills the socket (the client reads nothing, with a small receive
# buffer); then its pings fill the control buffer with pongs that cannot go
# out, so herald-ws's own ping cannot be queued when due.  The timer must
# not re-arm in the past: CPU stays low, and the write stall drops the peer.
WS5_PORT=$(port_pick)
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_WS_PING_INTERVAL=2 \
HERALD_WS_PONG_TIMEOUT=8 "$WS" --listen "127.0.0.1:$WS5_PORT" >>"$T/ws5.log" 2>&1 &
WS5_PID=$!
WS2_PID=$WS5_PID
port_wait "$WS5_PORT"
# 8 MB: more than the kernel's largest send buffer (tcp_wmem 4 MB) holds.
pl=$(head -c 8000 /dev/zero | tr '\0' s)
for i in $(seq 1000); do printf '{"p":"%s"}\n' "$pl"; done | publish spin - >/dev/null
cat >"$T/pingflood.pl" <<'PERL'
use strict;
use Socket;
$| = 1;
my ($port, $path, $delay, $n) = @ARGV;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096);
connect($s, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "connect: $!";
syswrite($s, "GET $path HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
my $head = "";
while ($head !~ /\r\n\r\n/) { sysread($s, $head, 1, length $head) or die "eof"; }
print "status ", ($head =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0), "\n";
select(undef, undef, undef, $delay);
# masked pings of 83 bytes: three pongs (85 bytes each) fill the 256-byte buffer
syswrite($s, ("\x89" . chr(0x80 | 83) . "\0\0\0\0" . ("p" x 83)) x $n);
print "pinged\n";
sleep 60;
PERL
perl "$T/pingflood.pl" "$WS5_PORT" "$(path spin "&since=0-0")" 0.5 30 >"$T/flood.out" 2>&1 &
pf=$!
wait_for "$T/flood.out" "^pinged"
sleep 2
tck=$(getconf CLK_TCK)
cpu0=$(awk '{ print $14 + $15 }' "/proc/$WS5_PID/stat")
sleep 3
cpu1=$(awk '{ print $14 + $15 }' "/proc/$WS5_PID/stat")
diag "herald-ws used $((cpu1 - cpu0)) of $((3 * tck)) ticks in 3 s with a ping-flooding peer that does not read"
[ "$(head -1 "$T/flood.out")" = "status 101" ] && [ $((cpu1 - cpu0)) -lt $((3 * tck / 2)) ]
ok $? "a peer that pings and never reads: herald-ws does not spin (under half a core over 3 s)"
for _i in $(seq 100); do
	curl -s "http://127.0.0.1:$WS5_PORT/api/v1/notifications/metrics" | grep -q '^herald_ws_connections 0' && break
	sleep 0.1
done
curl -s "http://127.0.0.1:$WS5_PORT/api/v1/notifications/metrics" | grep -q '^herald_ws_connections 0'
ok $? "and it is dropped when its writes stall for ws_pong_timeout"
kill $pf 2>/dev/null; wait $pf 2>/dev/null
kill "$WS5_PID"; wait "$WS5_PID"; WS2_PID=

# --- a unix socket, a key file, SIGHUP, and running out of descriptors ---------------
# A third instance: unix socket (the nginx upstream of scripts/dev.sh), the
# secret in a file, a log file, and an open-files limit of 64.
printf 'first-key\n' >"$T/jwt.key"
(ulimit -n 64 && HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_KEY_FILE=$T/jwt.key \
	HERALD_LOG_FILE=$T/ws3-file.log exec "$WS" --listen "unix:$T/ws3.sock" --handshake-timeout 30) \
	>>"$T/ws3.log" 2>&1 &
WS3_PID=$!
WS2_PID=$WS3_PID # stopped by cleanup_ws if a check below fails
for _i in $(seq 100); do [ -S "$T/ws3.sock" ] && break; sleep 0.05; done
"$CLI" -t 1 "unix:$T/ws3.sock" "/api/v1/ws/notifications?token=$(herald_token first-key 42 600)" >"$T/o"
is "$(head -1 "$T/o")" "status 101" "herald-ws on a unix socket: 101"
"$CLI" -t 1 "unix:$T/ws3.sock" "/api/v1/ws/notifications?token=$(herald_token second-key 42 600)" >"$T/o"
is "$(close_of "$T/o")" "close 4401 bad_signature" "before SIGHUP: a token of the next key is refused"
printf 'second-key\n' >"$T/jwt.key"
mv "$T/ws3-file.log" "$T/ws3-file.log.1"
kill -HUP "$WS3_PID"
wait_for "$T/ws3-file.log" "SIGHUP" 50
ok $? "SIGHUP opens the log file anew (logrotate's move-and-signal)"
"$CLI" -t 1 "unix:$T/ws3.sock" "/api/v1/ws/notifications?token=$(herald_token second-key 42 600)" >"$T/o"
grep -q '^close 4401' "$T/o"
ok $((!$?)) "after SIGHUP: the new key is the key"
"$CLI" -t 1 "unix:$T/ws3.sock" "/api/v1/ws/notifications?token=$(herald_token first-key 42 600)" >"$T/o"
is "$(close_of "$T/o")" "close 4401 bad_signature" "after SIGHUP: the old key is refused"
# SIGUSR1, nginx's reopen signal: the log anew, nothing else.
mv "$T/ws3-file.log" "$T/ws3-file.log.2"
kill -USR1 "$WS3_PID"
wait_for "$T/ws3-file.log" "SIGUSR1: log reopened" 50
ok $? "SIGUSR1 reopens the log file: herald-ws writes to the re-created file"
"$CLI" -t 1 "unix:$T/ws3.sock" "/api/v1/ws/notifications?token=$(herald_token second-key 42 600)" >"$T/o"
kill -0 "$WS3_PID" 2>/dev/null && [ "$(head -1 "$T/o")" = "status 101" ] && ! grep -q '^close 4401' "$T/o"
ok $? "after SIGUSR1: herald-ws still runs and serves, with the same key"

# Hold more connections than the 64 descriptors allow.  herald-ws accepts
# up to the open-files limit less 256 kept for Redis and the log (here
# half of 64: 32 sockets), then stops accepting until one closes; the
# rest wait in the backlog.  The listener must not spin on them.
grep -q 'accepting up to 32 sockets (the open-files limit less 256' "$T"/ws3-file.log*
ok $? "64 open files: herald-ws accepts up to 32 sockets (logged)"
"$CLI" -o 80 -t 4 "unix:$T/ws3.sock" / >"$T/emfile.out" 2>&1 &
hold=$!
sleep 1.5
cpu0=$(awk '{ print $14 + $15 }' "/proc/$WS3_PID/stat")
sleep 2
cpu1=$(awk '{ print $14 + $15 }' "/proc/$WS3_PID/stat")
diag "herald-ws used $((cpu1 - cpu0)) ticks in 2 s at its socket limit, $(nfds_of "$WS3_PID") descriptors open"
[ $((cpu1 - cpu0)) -lt 50 ]
ok $? "at the socket limit: the listener pauses instead of spinning"
grep -q 'sockets open, the most herald-ws accepts' "$T/ws3-file.log"
ok $? "... (logged)"
wait $hold
# ws3_get PATH: GET PATH from the third instance into $T/o, retried while
# it has no descriptor for the connection (at most 4 s)
ws3_get() {
	for _i in $(seq 40); do
		curl -s --max-time 1 --unix-socket "$T/ws3.sock" "http://x$1" >"$T/o" && [ -s "$T/o" ] && return 0
		sleep 0.1
	done
	return 1
}
ws3_get /api/v1/notifications/health
grep -q '"status"' "$T/o"
ok $? "when they close, connections are accepted again"
ws3_get /api/v1/notifications/metrics
grep -q '^herald_ws_socket_limit 32$' "$T/o" && grep -q '^herald_ws_full_pauses_total [1-9]' "$T/o"
ok $? "metrics: herald_ws_socket_limit 32 and the pause counted"

# What the descriptors kept back are for: Redis restarts while 100
# clients crowd the 32 sockets (each holds its connection; the others
# wait in the backlog).  A client held through it gets what is published
# after.  Before, the connections took every descriptor, the subscriber
# retried with EMFILE until clients left, and nothing was delivered.
hold_ws() { # NAME USER: a client waiting for one message, subscribed
	"$CLI" -n 1 -t 40 "unix:$T/ws3.sock" \
		"/api/v1/ws/notifications?token=$(herald_token second-key "$2" 600)" >"$T/$1" 2>&1 &
	wait_for "$T/$1" "^status 101" && wait_subscribed "$2"
}
hold_ws fdw fdw
fdw=$!
# -m holds its connections until its input ends: a fifo whose one writer
# is a sleep, killed to end them
mkfifo "$T/fdf.in"
"$CLI" -m 100 -t 30 "unix:$T/ws3.sock" \
	"/api/v1/ws/notifications?token=$(herald_token second-key fdf 600)" <"$T/fdf.in" >"$T/fdf" 2>&1 &
fdf=$!
sleep 120 >"$T/fdf.in" &
fdf_in=$!
for _i in $(seq 100); do [ "$(nfds_of "$WS3_PID")" -ge 40 ] && break; sleep 0.05; done
sleep 0.5
diag "herald-ws holds $(nfds_of "$WS3_PID") of 64 descriptors"
port=$REDIS_PORT
stop_redis
sleep 1.5 # down long enough for the clients waiting to take what its links left
restart_redis "$port"
wait_subscribed fdw || wait_subscribed fdw
ok $? "Redis restarted while 100 clients crowd herald-ws's 64 descriptors: the subscriber is back"
publish fdw '{"fd":1}' >/dev/null
wait "$fdw"
grep -q '^text .*"data":{"fd":1}' "$T/fdw"
ok $? "... and a client held through it gets what is published after"
kill "$fdf_in"
wait "$fdf"
wait "$fdf_in" 2>/dev/null
# When a Redis link finds no descriptor all the same (the limit lowered
# while running, the system's file table full), connections on their way
# out make way: closing ones, handshakes not yet answered, as nginx reuses
# its idle ones.  Here the open-files limit is lowered (prlimit) to a few
# more than are open, Redis stops, half-open handshakes take the rest
# (accept fails with EMFILE: the listener pauses for a second at a time),
# and Redis comes back.
if command -v prlimit >/dev/null; then
	hold_ws fdh fdh
	fdh=$!
	prlimit --pid "$WS3_PID" --nofile="$(($(fd_lowest_free "$WS3_PID") + 8)):"
	stop_redis
	"$CLI" -o 40 -t 30 "unix:$T/ws3.sock" / >"$T/fdh.half" 2>&1 &
	half=$!
	wait_for "$T/ws3-file.log" "accept() failed: Too many open files" 100
	restart_redis "$port"
	wait_subscribed fdh || wait_subscribed fdh
	ok $? "Redis back while half-open handshakes hold every descriptor: the subscriber is back"
	publish fdh '{"fd":2}' >/dev/null
	wait "$fdh"
	grep -q '^text .*"data":{"fd":2}' "$T/fdh"
	ok $? "... and a client held through it gets what is published after"
	grep -q 'out of descriptors for a Redis connection: closed [1-9]' "$T/ws3-file.log"
	ok $? "... through handshakes closed to make way (logged)"
	kill "$half"
	wait "$half"
	prlimit --pid "$WS3_PID" --nofile=64:
	ws3_get /api/v1/notifications/metrics
	grep -q '^herald_ws_nofile_reclaimed_total [1-9]' "$T/o" && grep -q '^herald_ws_emfile_pauses_total [1-9]' "$T/o"
	ok $? "metrics: the connections closed for Redis, the accept pauses"
else
	diag "prlimit (util-linux) not installed: a Redis link out of descriptors is not tested"
fi
kill "$WS3_PID"; wait "$WS3_PID"; WS2_PID=

# --- --workers: processes sharing the port (SO_REUSEPORT) ----------------------------
WS4_PORT=$(port_pick)
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET "$WS" --listen "127.0.0.1:$WS4_PORT" \
	--workers 2 >>"$T/ws4.log" 2>&1 &
WS4_PID=$!
WS2_PID=$WS4_PID
port_wait "$WS4_PORT"
for _i in $(seq 50); do [ "$(pgrep -P "$WS4_PID" -c)" = 2 ] && break; sleep 0.1; done
is "$(pgrep -P "$WS4_PID" -c)" 2 "--workers 2: two worker processes"
for n in 1 2 3 4; do
	"$CLI" -t $((5 * S)) -n 1 "127.0.0.1:$WS4_PORT" "$(path "wk$n")" >"$T/wk$n" &
	eval "w$n=\$!"
done
for n in 1 2 3 4; do wait_for "$T/wk$n" "^status 101" && wait_subscribed "wk$n"; done
for n in 1 2 3 4; do publish "wk$n" "{\"wk\":$n}" >/dev/null; done
wait $w1 $w2 $w3 $w4
is "$(cat "$T/wk1" "$T/wk2" "$T/wk3" "$T/wk4" | grep -c '"wk":')" 4 "--workers 2: every client is served and gets its message"
kill -USR1 "$WS4_PID"
sleep 0.5
kill -0 "$WS4_PID" 2>/dev/null && [ "$(pgrep -P "$WS4_PID" -c)" = 2 ] &&
	[ "$(grep -c 'SIGUSR1: log reopened' "$T/ws4.log")" = 2 ]
ok $? "--workers: SIGUSR1 is passed to the workers, which reopen their log and keep running"
kill -TERM "$WS4_PID"
wait "$WS4_PID"
is "$?,$(pgrep -P "$WS4_PID" -c)" "0,0" "--workers: SIGTERM stops the workers and the parent exits 0"
WS2_PID=

# --- SIGTERM ---------------------------------------------------------------------------
for n in 1 2 3; do
	"$CLI" -t 10 "$NG" "$(path "term$n")" >"$T/term$n" &
	eval "t$n=\$!"
	wait_for "$T/term$n" "^status 101"
done
"$CLI" -t 10 "127.0.0.1:$WS_PORT" "$(path term4)" >"$T/term4" &
t4=$!
wait_for "$T/term4" "^status 101"
kill -TERM "$WS_PID"
wait "$WS_PID"
st=$?
WS_PID=
wait $t1 $t2 $t3 $t4
is "$(cat "$T/term1" "$T/term2" "$T/term3" "$T/term4" | grep -c '^close 1001 shutting down')" 4 \
	"SIGTERM: every client gets 1001 (through nginx and direct)"
is "$st" 0 "herald-ws exits 0 after SIGTERM"
cat "$T/ws.log" "$T/ws2.log" | grep -q 'segfault\|Sanitizer\|runtime error'
ok $((!$?)) "no sanitizer report in herald-ws's logs"

done_testing
