#!/usr/bin/env bash
# The stream (L4) flavour (issue 16): nginx/herald-stream.conf in a real
# nginx (Debian's stream module) in front of herald-ws with
# proxy_protocol = on, a real redis-server, plain and TLS listeners; the
# PROXY protocol header (v1 and v2) straight to herald-ws: the real address
# in the log, the metrics and max_connections_per_address; a forged header
# refused where proxy_protocol is off; missing, malformed, truncated and
# oversized headers closed without harm.  TAP on stdout, 127.0.0.1 only,
# every wait bounded.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/stack.sh"

lib_init
WS="$HERALD_BUILDDIR/herald-ws"
PUB="$HERALD_BUILDDIR/herald-publish"
CLI="$HERALD_BUILDDIR/tests/integration/ws_client"
TOP="$(cd "$(dirname "$0")/../.." && pwd)"
CONF="$TOP/nginx/herald-stream.conf"
for f in "$WS" "$PUB" "$CLI"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
[ -f "$NGINX_STREAM_MODULE" ] || skip_all "no $NGINX_STREAM_MODULE (apt-get install libnginx-mod-stream)"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
lib_clean_env
start_redis || skip_all "cannot start redis-server"

SECRET=test-secret-$$
WS_PID=
WS2_PID=
cleanup_stream() {
	nginx_stop
	for p in $WS_PID $WS2_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	_lib_cleanup
}
trap cleanup_stream EXIT

# WS_TEST_WRAP: e.g. valgrind (as make check-valgrind gives ws.sh).
WS_TEST_WRAP=${WS_TEST_WRAP:-}
path() { printf '/api/v1/ws/notifications?token=%s%s' "$(herald_token "$SECRET" "$1" 3600)" "${2:-}"; }
publish() { HERALD_REDIS_URL=$REDIS_URL "$PUB" "$@"; }
hex() { printf '%b' "$1" | od -An -tx1 -v | tr -d ' \n'; }
close_of() { grep -m1 '^close\|^status [^1]\|^eof' "$1"; }
wait_for() {
	local i=0
	while [ $i -lt "${3:-50}" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
metric() { # PORT NAME{LABELS}: its value, asking with a PROXY header when $3 is set
	curl -s --max-time 3 ${3:+--haproxy-protocol} \
		"http://127.0.0.1:$1/api/v1/notifications/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}

# herald-ws with proxy_protocol = on (behind nginx's stream listeners), and
# a second one with it off (the HTTP flavour's, for the forged header).
WS_PORT=$(port_pick)
WS2_PORT=$(port_pick)
HTTP_PORT=$(port_pick)
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_PROXY_PROTOCOL=on \
HERALD_MAX_CONNECTIONS_PER_ADDRESS=2 HERALD_ALLOWED_ORIGINS=https://app.example \
	$WS_TEST_WRAP "$WS" --listen "127.0.0.1:$WS_PORT" --handshake-timeout 2 --log-level debug >"$T/ws.log" 2>&1 &
WS_PID=$!
port_wait "$WS_PORT" "$WS_PID"
ok $? "herald-ws with proxy_protocol = on starts"
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET \
	$WS_TEST_WRAP "$WS" --listen "127.0.0.1:$WS2_PORT" --handshake-timeout 2 --log-level debug >"$T/ws2.log" 2>&1 &
WS2_PID=$!
port_wait "$WS2_PORT" "$WS2_PID"
ok $? "herald-ws with proxy_protocol off starts"
out=$(HERALD_JWT_SECRET=x HERALD_PROXY_PROTOCOL=v2 "$WS" --check-config 2>&1)
is "$?:$out" "1:herald-ws: environment: proxy_protocol: expected on or off, got 'v2'" \
	"proxy_protocol takes on or off"

# --- nginx -t on every shipped flavour ------------------------------------------
for f in herald.conf herald-legacy.conf herald-stream.conf herald-nodes.conf; do
	nginx_test "$TOP/nginx/$f" "$T/nginx-t-$f" "$HTTP_PORT" "127.0.0.1:$WS_PORT" "unix:$T/fcgi.sock" \
		2>"$T/nginx-t-$f.log"
	ok $? "nginx -t accepts nginx/$f"
	[ -s "$T/nginx-t-$f.log" ] && sed 's/^/# /' "$T/nginx-t-$f.log"
done
nginx_start "$CONF" "$T/nginx" "$HTTP_PORT" "127.0.0.1:$WS_PORT" "unix:$T/fcgi.sock"
ok $? "nginx starts with nginx/herald-stream.conf (ws:// on $NGINX_STREAM_PORT, wss:// on $NGINX_STREAM_TLS_PORT)"
port_wait "$NGINX_STREAM_PORT" && port_wait "$NGINX_STREAM_TLS_PORT"
ok $? "both stream listeners accept"
NS=127.0.0.1:$NGINX_STREAM_PORT

# --- WebSocket through the stream listener ---------------------------------------
"$CLI" -n 1 -t 5 "$NS" "$(path 42)" >"$T/c1" &
c=$!
wait_for "$T/c1" "^status 101"
id=$(publish 42 '{"title":"hi"}')
wait $c
is "$(sed -n 2p "$T/c1")" "text {\"id\":\"$id\",\"channel\":\"notifications:42\",\"ts\":${id%-*},\"data\":{\"title\":\"hi\"}}" \
	"ws:// through nginx's stream listener: the client gets the envelope"

# The address herald-ws logs is the client's (nginx's stream log has its
# port), not nginx's own connection to herald-ws.
wait_for "$T/ws.log" "user 42 connected from" 20
cport=$(sed -n 's/.*user 42 connected from 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/ws.log" | head -1)
wait_for "$T/nginx/logs/stream.log" "^127\.0\.0\.1:$cport " 30
ok $? "herald-ws logs the client's address and port from nginx's PROXY header (127.0.0.1:$cport)"
[ "$(metric "$WS_PORT" 'herald_ws_proxy_headers_total{version="1"}' 1)" -ge 1 ] 2>/dev/null
ok $? "metrics count the PROXY v1 headers nginx sent"

# Resume and the close codes, through the stream listener.
first=$(publish 43 '{"n":1}')
publish 43 '{"n":2}' >/dev/null
publish 43 '{"n":3}' >/dev/null
"$CLI" -n 2 -t 5 "$NS" "$(path 43 "&since=$first")" >"$T/resume"
is "$(grep -o '"n":[0-9]' "$T/resume" | tr '\n' ' ')" '"n":2 "n":3 ' "resume with since through the stream listener"
"$CLI" -t 3 "$NS" /api/v1/ws/notifications >"$T/o"
is "$(close_of "$T/o")" "close 4401 missing" "no token through the stream listener: 101 then 4401"
"$CLI" -t 3 -H "Origin: https://evil.example" "$NS" "$(path 44)" >"$T/o"
is "$(close_of "$T/o")" "status 403" "an Origin not allowed: 403 through the stream listener"
"$CLI" -t 3 -s 8105414243444546 "$NS" "$(path 44)" >"$T/o"
is "$(close_of "$T/o")" "close 1002 protocol error" "an unmasked frame: 1002 through the stream listener"

# A slow consumer behind the stream listener: caught up from the history
# (not closed) while another client's message still arrives (nginx's 1k
# buffers hold nothing back).
"$CLI" -q -p 4 -t 14 "$NS" "$(path slow)" >"$T/slow" &
sl=$!
"$CLI" -L -n 1 -t 20 "$NS" "$(path fast)" >"$T/fast" &
f=$!
wait_for "$T/slow" "^status 101" && wait_for "$T/fast" "^status 101"
pl=$(head -c 4000 /dev/zero | tr '\0' x)
for i in $(seq 10000); do printf '{"p":"%s"}\n' "$pl"; done >"$T/flood"
publish slow - <"$T/flood" >/dev/null
publish fast '{"fast":1}' >/dev/null
wait $f
grep -q '^lag ' "$T/fast"
ok $? "through the stream listener, another client's message arrives during a 40 MB flood"
wait $sl
is "$(close_of "$T/slow")" "" "the client that paused during the flood is not closed (caught up from the history, no 4408)"
texts=$(sed -n 's/^texts //p' "$T/slow")
[ "${texts:-0}" -ge 1000 ] && tail -1 "$T/slow" | grep -q '^timeout'
ok $? "... it reads the reset and the kept ones ($texts messages) and stays open until it leaves"

# Redis killed and restarted: the connection through nginx stays, nothing lost.
"$CLI" -t 20 "$NS" "$(path erin)" >"$T/erin" &
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
is "$(grep -o '"n":[0-9]*' "$T/erin" | tr '\n' ' ')" '"n":1 "n":2 "n":3 "n":4 "n":5 "n":6 ' \
	"Redis killed and restarted: every message once, in order, through the stream listener"

# --- wss:// : TLS at nginx -----------------------------------------------------------
hs="GET $(path 45) HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
{ printf '%b' "$hs"; sleep 2; } | timeout 3 openssl s_client -quiet -verify_return_error \
	-CAfile "$T/nginx/tls.crt" -servername localhost -connect "127.0.0.1:$NGINX_STREAM_TLS_PORT" \
	>"$T/tls.out" 2>"$T/tls.err" &
c=$!
wait_subscribed 45
id=$(publish 45 '{"over":"tls"}')
wait $c
head -1 "$T/tls.out" | grep -q '^HTTP/1.1 101'
ok $? "wss:// through the TLS stream listener: 101 (certificate verified)"
grep -aq "{\"id\":\"$id\",\"channel\":\"notifications:45\",\"ts\":${id%-*},\"data\":{\"over\":\"tls\"}}" "$T/tls.out"
ok $? "wss:// : the notification arrives over TLS"
curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$T/nginx/tls.crt" \
	-H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
	-H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
	"https://localhost:$NGINX_STREAM_TLS_PORT/api/v1/notifications/nope" \
	--resolve "localhost:$NGINX_STREAM_TLS_PORT:127.0.0.1" >"$T/o" 2>/dev/null
is "$(cat "$T/o")" "404" "curl over TLS: herald-ws routes by path behind the stream listener (404)"

# --- the HTTP side stays: SSE and polling locations are there ---------------------
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$HTTP_PORT/herald.js")
is "$code" "200" "the HTTP server of the stream flavour serves herald.js"

# --- PROXY protocol straight to herald-ws -------------------------------------------
V1=$(hex 'PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n')
"$CLI" -x "$V1" -n 1 -t 5 "127.0.0.1:$WS_PORT" "$(path 46)" >"$T/v1" &
c=$!
wait_for "$T/v1" "^status 101"
publish 46 '{"v":1}' >/dev/null
wait $c
grep -q '"v":1' "$T/v1" && grep -q "user 46 connected from 192.0.2.7:56324\$" "$T/ws.log"
ok $? "PROXY v1: accepted, the header's address (192.0.2.7:56324) in the log"
# v2, INET, 203.0.113.5:4242 -> 10.0.0.1:443, and a TLV after the addresses
V2=0d0a0d0a000d0a515549540a21110011cb0071050a000001109201bb0100026869
"$CLI" -x "$V2" -t 3 "127.0.0.1:$WS_PORT" "$(path 47)" >"$T/v2"
grep -q '^status 101' "$T/v2" && grep -q "user 47 connected from 203.0.113.5:4242\$" "$T/ws.log"
ok $? "PROXY v2 (with a TLV): accepted, the header's address (203.0.113.5:4242) in the log"
"$CLI" -x "$V1" -H "X-Forwarded-For: 198.51.100.1" -t 3 "127.0.0.1:$WS_PORT" "$(path 48)" >"$T/o"
grep -q "user 48 connected from 192.0.2.7:56324\$" "$T/ws.log"
ok $? "X-Forwarded-For is ignored where proxy_protocol is on"

# max_connections_per_address = 2: by the real address, not nginx's.
A=$(hex 'PROXY TCP4 198.51.100.9 10.0.0.1 1000 443\r\n')
B=$(hex 'PROXY TCP4 198.51.100.10 10.0.0.1 1000 443\r\n')
"$CLI" -x "$A" -t 6 "127.0.0.1:$WS_PORT" "$(path u1)" >"$T/l1" &
l1=$!
"$CLI" -x "$A" -t 6 "127.0.0.1:$WS_PORT" "$(path u2)" >"$T/l2" &
l2=$!
wait_for "$T/l1" "^status 101" && wait_for "$T/l2" "^status 101"
"$CLI" -x "$A" -t 3 "127.0.0.1:$WS_PORT" "$(path u3)" >"$T/l3"
is "$(close_of "$T/l3")" "close 4429 too many connections from this address" \
	"a 3rd connection from 198.51.100.9 (max_connections_per_address = 2): 4429"
"$CLI" -x "$B" -n 1 -t 3 "127.0.0.1:$WS_PORT" "$(path u4)" >"$T/l4" &
l4=$!
wait_for "$T/l4" "^status 101"
publish u4 '{"other":"address"}' >/dev/null
wait $l4
grep -q '"other":"address"' "$T/l4"
ok $? "another address is not limited meanwhile"
is "$(metric "$WS_PORT" herald_ws_address_limit_refused_total 1)" "1" "metrics: one handshake refused for its address"
kill $l1 $l2 2>/dev/null
wait $l1 $l2 2>/dev/null

# Refused: no header, malformed, truncated, oversized.  Each is closed at once
# (or at the handshake timeout) without an HTTP answer, and the server serves on.
"$CLI" -t 3 "127.0.0.1:$WS_PORT" "$(path 49)" >"$T/o"
is "$(close_of "$T/o")" "eof" "no PROXY header where proxy_protocol is on: closed"
grep -q "no PROXY protocol header (proxy_protocol is on), closing" "$T/ws.log"
ok $? "... and the log says why"
bad() { # DESC HEX
	"$CLI" -x "$2" -t 4 "127.0.0.1:$WS_PORT" "$(path 50)" >"$T/o"
	is "$(close_of "$T/o")" "eof" "$1: closed"
}
bad "v1 with a port over 65535" "$(hex 'PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n')"
bad "v1 with an IPv6 address in TCP4" "$(hex 'PROXY TCP4 ::1 ::1 1 2\r\n')"
bad "v1 with LF and no CR" "$(hex 'PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n')"
bad "v1 without CRLF in 107 bytes" "$(hex "PROXY UNKNOWN $(head -c 150 /dev/zero | tr '\0' x)")"
bad "v2 with version 3" 0d0a0d0a000d0a515549540a3111000c0000000000000000000000000
bad "v2 DGRAM" 0d0a0d0a000d0a515549540a2112000c000000000000000000000000
bad "v2 claiming 65535 bytes" 0d0a0d0a000d0a515549540a2111ffff
bad "v2 too short for its family" 0d0a0d0a000d0a515549540a21210004000000000
# Truncated: half a header, then nothing: closed by the handshake timeout
# (2 s), without the 408 a partial HTTP request gets.
"$CLI" -r "$(hex 'PROXY TCP4 192.0.2.7 10.0')" -t 5 "127.0.0.1:$WS_PORT" / >"$T/o"
is "$(close_of "$T/o")" "eof" "a truncated v1 header: closed at the handshake timeout, no HTTP answer"
"$CLI" -r 0d0a0d0a000d0a5155 -t 5 "127.0.0.1:$WS_PORT" / >"$T/o"
is "$(close_of "$T/o")" "eof" "a truncated v2 signature: closed at the handshake timeout"
[ "$(metric "$WS_PORT" 'herald_ws_proxy_refused_total{reason="invalid"}' 1)" -ge 11 ] 2>/dev/null
ok $? "metrics count the refused headers"
kill -0 "$WS_PID" 2>/dev/null && "$CLI" -x "$V1" -t 3 "127.0.0.1:$WS_PORT" "$(path 51)" | grep -q '^status 101'
ok $? "herald-ws still serves after every bad header"

# --- proxy_protocol off: a client cannot forge its address -----------------------
"$CLI" -x "$V1" -t 3 "127.0.0.1:$WS2_PORT" "$(path 52)" >"$T/o"
is "$(close_of "$T/o")" "status 400" "a forged PROXY v1 header where proxy_protocol is off: 400"
"$CLI" -x "$V2" -t 3 "127.0.0.1:$WS2_PORT" "$(path 52)" >"$T/o"
is "$(close_of "$T/o")" "status 400" "a forged PROXY v2 header where proxy_protocol is off: 400"
! grep -q "192.0.2.7\|203.0.113.5" "$T/ws2.log" && grep -q "a PROXY protocol header where proxy_protocol is off" "$T/ws2.log"
ok $? "... and the forged address is nowhere in its log"
is "$(metric "$WS2_PORT" 'herald_ws_proxy_refused_total{reason="forged"}')" "2" "metrics count the forged headers"
# The HTTP flavour: the last X-Forwarded-For entry (nginx's $remote_addr),
# believed from a proxy on this host.
"$CLI" -H "X-Forwarded-For: 10.9.9.9, 198.51.100.77" -t 3 "127.0.0.1:$WS2_PORT" "$(path 53)" >"$T/o"
grep -q "user 53 connected from 198.51.100.77\$" "$T/ws2.log"
ok $? "proxy_protocol off, a local proxy: the last X-Forwarded-For entry is the client's address"

done_testing
