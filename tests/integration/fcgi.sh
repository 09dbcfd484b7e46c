#!/usr/bin/env bash
# herald-fcgi through real nginx (nginx/herald.conf and herald-legacy.conf)
# and a real redis-server, driven with curl: SSE, resume, heartbeat,
# lifetime, polling, isolation, bad input, 1,000 streams, Redis restart,
# CGI by hand and under lighttpd.  TAP output.
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
FCGI=$B/herald-fcgi
PUB=$B/herald-publish
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || skip_all "nginx not found"
command -v curl >/dev/null || skip_all "curl not found"
[ -x "$FCGI" ] || skip_all "herald-fcgi not built"
PATH=$PATH:/usr/sbin
lib_init
chmod 755 "$T" # nginx's workers run as another user and must reach the socket

SECRET=test-secret-$$
export HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=info HERALD_SOCKET_MODE=0666
# sse_max_lifetime 120 s: a stream of the 1,000 below must outlive their
# connect burst and the publishing (under ASan beside replay.sh, 12 of
# 1,000 reached a 30 s lifetime before their message)
export HERALD_HEARTBEAT=1 HERALD_SSE_MAX_LIFETIME=120 HERALD_THREADS=16
FCGI_PID=
mem_checks_for "$FCGI" "${FCGI_TEST_WRAP:-}"
_fcgi_cleanup() {
	[ -n "${FCGI_TEST_LOG:-}" ] && cp "$T/fcgi.log" "$FCGI_TEST_LOG"
	[ -n "$FCGI_PID" ] && kill "$FCGI_PID" 2>/dev/null && wait "$FCGI_PID" 2>/dev/null
	nginx_stop
	_lib_cleanup
}
trap _fcgi_cleanup EXIT

# mint_token USER TTL
mint_token() { herald_token "$SECRET" "$@"; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

start_fcgi() {
	# FCGI_TEST_WRAP: e.g. "valgrind --error-exitcode=99 --leak-check=full"
	$FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/fcgi.sock" "$@" >>"$T/fcgi.log" 2>&1 &
	FCGI_PID=$!
	for _i in $(seq 400); do [ -S "$T/fcgi.sock" ] && return 0; sleep 0.05; done
	return 1
}
stop_fcgi() {
	kill "$FCGI_PID" 2>/dev/null
	wait "$FCGI_PID" 2>/dev/null
	FCGI_PID=
}
pub() { HERALD_REDIS_URL=$REDIS_URL "$PUB" "$@"; }
U="http://127.0.0.1"
# http STATUS of a curl call
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# ids_of FILE: the ids of the stream's notification events (not the
# `event: cursor` a stream without Last-Event-ID starts with)
ids_of() {
	tr -d '\r' <"$1" | awk '/^id: /{ id = substr($0, 5); next }
		/^event: notification/{ if (id != "") printf "%s ", id }
		/^$/{ id = "" }'
}
# wait_for FILE PATTERN [TRIES]: until grep finds it
wait_for() {
	for _i in $(seq "${3:-100}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}


# --- configs ------------------------------------------------------------------
nginx_test "$src/nginx/herald.conf" "$T/ngt1" 1 127.0.0.1:1 "unix:$T/fcgi.sock"
ok $? "nginx -t accepts nginx/herald.conf"
nginx_test "$src/nginx/herald-legacy.conf" "$T/ngt2" 1 127.0.0.1:1 "unix:$T/fcgi.sock"
ok $? "nginx -t accepts nginx/herald-legacy.conf"
! grep -qi 'upgrade\|herald_ws' "$src/nginx/herald-legacy.conf"
ok $? "herald-legacy.conf has no WebSocket proxying"

start_redis || exit 1
export HERALD_REDIS_URL=$REDIS_URL
HTTP_PORT=$(port_pick)
start_fcgi
ok $? "herald-fcgi listens on a unix socket"
is "$(stat -c %a "$T/fcgi.sock")" 666 "socket_mode applied to the socket"
nginx_start "$src/nginx/herald-legacy.conf" "$T/nginx" "$HTTP_PORT" 127.0.0.1:1 "unix:$T/fcgi.sock" || exit 1
N="$U:$HTTP_PORT"
for _i in $(seq 50); do
	[ "$(code "$N/api/v1/notifications/health")" = 200 ] && break
	sleep 0.1
done
is "$(code "$N/api/v1/notifications/health")" 200 "health 200 through nginx (legacy config)"

TA=$(mint_token alice 3600)
TB=$(mint_token bob 3600)

# --- SSE -----------------------------------------------------------------------
curl -s -N -H "Authorization: Bearer $TA" -D "$T/sse1.h" "$N/api/v1/sse/notifications" >"$T/sse1" &
C1=$!
wait_for "$T/sse1" "retry: 3000"
ok $? "SSE stream opens with retry: 3000"
id1=$(pub alice '{"n":1}')
wait_for "$T/sse1" "^id: $id1"
ok $? "a published event arrives on the stream"
grep -q "^data: {\"id\":\"$id1\",\"channel\":\"notifications:alice\"" "$T/sse1"
ok $? "its data is the envelope with the same id"
grep -qi '^content-type: text/event-stream' "$T/sse1.h" && grep -qi '^cache-control: no-cache' "$T/sse1.h"
ok $? "SSE headers: text/event-stream, no-cache"
wait_for "$T/sse1" "^: heartbeat" 60
ok $? "heartbeat comments arrive (heartbeat = 1 s)"
kill $C1 2>/dev/null; wait $C1 2>/dev/null

# Resume: publish while disconnected, reconnect with Last-Event-ID.
id2=$(pub alice '{"n":2}')
id3=$(pub alice '{"n":3}')
curl -s -N -H "Authorization: Bearer $TA" -H "Last-Event-ID: $id1" "$N/api/v1/sse/notifications" >"$T/sse2" &
C2=$!
wait_for "$T/sse2" "^id: $id3"
id4=$(pub alice '{"n":4}')
wait_for "$T/sse2" "^id: $id4"
is "$(ids_of "$T/sse2")" "$id2 $id3 $id4 " "Last-Event-ID: exactly the missed ones in order, then live"
kill $C2 2>/dev/null; wait $C2 2>/dev/null
curl -s -N "$N/api/v1/sse/notifications?token=$TA&last_event_id=$id2" >"$T/sse3" &
C3=$!
wait_for "$T/sse3" "^id: $id4"
id5=$(pub alice '{"n":5}')
wait_for "$T/sse3" "^id: $id5"
is "$(ids_of "$T/sse3")" "$id3 $id4 $id5 " "?last_event_id= resumes the same way"
kill $C3 2>/dev/null; wait $C3 2>/dev/null

# The token in the jwt_cookie cookie (default herald_token), among other
# cookies, and Last-Event-ID as a header: both reach herald-fcgi through the
# SSE location, which passes its headers by name.
curl -s -N -H "Cookie: theme=dark; herald_token=$TA; x=1" -H "Last-Event-ID: $id4" \
	"$N/api/v1/sse/notifications" >"$T/ssec" &
CC=$!
wait_for "$T/ssec" "^id: $id5"
is "$(ids_of "$T/ssec")" "$id5 " "SSE: a token from the herald_token cookie, resumed with Last-Event-ID"
kill $CC 2>/dev/null; wait $CC 2>/dev/null

# Isolation: bob's stream never sees alice's messages.
curl -s -N -H "Authorization: Bearer $TB" -H "Last-Event-ID: 0-1" "$N/api/v1/sse/notifications" >"$T/sseb" &
CB=$!
wait_for "$T/sseb" "retry:"
idb=$(pub bob '{"for":"bob"}')
pub alice '{"for":"alice"}' >/dev/null
wait_for "$T/sseb" "^id: $idb"
sleep 0.3
is "$(ids_of "$T/sseb")" "$idb " "isolation: bob's stream carries only bob's message"
kill $CB 2>/dev/null; wait $CB 2>/dev/null
body=$(curl -s "$N/api/v1/notifications/poll?token=$TB")
case $body in *alice*) r=1 ;; *"$idb"*) r=0 ;; *) r=1 ;; esac
ok $r "isolation: bob's poll has only bob's message"

# --- poll ----------------------------------------------------------------------
body=$(curl -s -D "$T/poll.h" "$N/api/v1/notifications/poll?token=$TA&since=$id3")
case $body in *"\"id\":\"$id2\""*|*"\"id\":\"$id3\""*) r=1 ;; *"\"id\":\"$id4\""*"\"id\":\"$id5\""*) r=0 ;; *) r=1 ;; esac
ok $r "poll since=ID returns exactly what came after"
grep -qi '^cache-control: no-store' "$T/poll.h"
ok $? "poll answers Cache-Control: no-store"
body=$(curl -s "$N/api/v1/notifications/poll?token=$TA&limit=2")
last=$(rcli XREVRANGE notifications:alice:history + - COUNT 1 | head -1)
case $body in *"\"cursor\":\"$last\""*'"poll_interval":60'*) r=0 ;; *) r=1 ;; esac
ok $r "poll without since: the newest, cursor = the newest id"
is "$(printf '%s' "$body" | grep -o '"channel"' | wc -l)" 2 "limit=2 returns two"
for i in $(seq 30); do pub trunc "{\"i\":$i}" >/dev/null; done
rcli XTRIM notifications:trunc:history MAXLEN 5 >/dev/null
first=$(rcli XRANGE notifications:trunc:history - + COUNT 1 | head -1)
body=$(curl -s "$N/api/v1/notifications/poll?token=$(mint_token trunc 600)&since=1-0")
case $body in *'"truncated":true'*) r=0 ;; *) r=1 ;; esac
ok $r "poll with a cursor older than the history: truncated true"
curl -s -N "$N/api/v1/sse/notifications?token=$(mint_token trunc 600)&last_event_id=1-0" >"$T/sset" &
CT=$!
wait_for "$T/sset" "^id: $first"
grep -q '^event: reset' "$T/sset"
ok $? "SSE with a cursor older than the history: event: reset, then the history"
kill $CT 2>/dev/null; wait $CT 2>/dev/null

t0=$(date +%s%N)
(sleep 0.5; pub alice '{"wake":1}' >/dev/null) &
body=$(curl -s "$N/api/v1/notifications/poll?token=$TA&since=$last&wait=10")
ms=$((($(date +%s%N) - t0) / 1000000))
case $body in *'"wake":1'*) r=0 ;; *) r=1 ;; esac
ok $r "wait: returns the message published while waiting"
[ $ms -lt 3000 ]
ok $? "wait: returns at once when published (${ms} ms)"
last=$(rcli XREVRANGE notifications:alice:history + - COUNT 1 | head -1)
t0=$(date +%s%N)
body=$(curl -s "$N/api/v1/notifications/poll?token=$TA&since=$last&wait=2")
ms=$((($(date +%s%N) - t0) / 1000000))
case $body in *'"notifications":[]'*) r=0 ;; *) r=1 ;; esac
[ $r = 0 ] && [ $ms -ge 1900 ] && [ $ms -lt 4000 ]
ok $? "wait: empty at the timeout (${ms} ms)"

# --- bad input -------------------------------------------------------------------
now=$(date +%s)
EXPIRED=$(mint_token alice -100)
FORGED=$(herald_jwt '{"alg":"HS256","typ":"JWT"}' "{\"sub\":\"alice\",\"exp\":$((now + 600))}" wrong-secret)
NONE="$(printf '{"alg":"none","typ":"JWT"}' | b64url).$(printf '{"sub":"alice","exp":%d}' $((now + 600)) | b64url)."
# Signed with the right secret, but HS384 where HS256 is configured.
CONF=$(herald_jwt '{"alg":"HS384","typ":"JWT"}' "{\"sub\":\"alice\",\"exp\":$((now + 600))}" "$SECRET")
POLL="$N/api/v1/notifications/poll"
is "$(code "$POLL")" 401 "no token: 401"
is "$(curl -s "$POLL?token=$EXPIRED")" '{"error":"invalid_token","detail":"expired"}' "expired token: 401 body"
is "$(code "$POLL?token=$FORGED")" 401 "forged signature: 401"
is "$(code "$POLL?token=$NONE")" 401 "alg none: 401"
is "$(code -H "Authorization: Bearer $CONF" "$POLL")" 401 "another algorithm: 401"
curl -s -D - -o /dev/null "$POLL" | grep -qi '^www-authenticate: Bearer error="invalid_token"'
ok $? "401 carries WWW-Authenticate: Bearer error=\"invalid_token\""
is "$(code "$POLL?token=$TA&since=garbage")" 400 "garbage cursor: 400"
is "$(code "$N/api/v1/sse/notifications?token=$TA&last_event_id=x-y")" 400 "garbage last_event_id: 400"
is "$(code "$POLL?token=$TA&limit=-1")" 400 "negative limit: 400"
is "$(code "$POLL?token=$TA&limit=100000000000")" 400 "huge limit: 400"
is "$(code "$POLL?token=$TA&wait=56")" 400 "wait over the maximum: 400"
is "$(code "$POLL?token=$TA&limit=abc"),$(code "$POLL?token=$TA&wait=abc"),$(code "$POLL?token=$TA&wait=-1")" \
	"400,400,400" "non-numeric limit, non-numeric or negative wait: 400"
is "$(code -H "Last-Event-ID: 12-x" "$N/api/v1/sse/notifications?token=$TA")" 400 "garbage Last-Event-ID header: 400"
is "$(code "$POLL?token=$TA&x=$(head -c 5000 /dev/zero | tr '\0' a)")" 414 "overlong query string: 414"
is "$(code -X POST "$POLL?token=$TA")" 405 "POST on poll: 405"
is "$(code -X DELETE "$N/api/v1/sse/notifications")" 405 "DELETE on sse: 405"
is "$(code "$N/api/v1/notifications/nope")" 404 "unknown path: 404"
# A client that disconnects mid-stream is seen at once (POLLRDHUP), not at
# the next heartbeat or write: its stream, thread and hub entry are released.
curl -s -N "$N/api/v1/sse/notifications?token=$(mint_token gone 600)" >"$T/ssegone" &
CG=$!
wait_for "$T/ssegone" "retry: 3000"
streams_now() { curl -s "$N/api/v1/notifications/health" | sed -n 's/.*"streams":\([0-9]*\).*/\1/p'; }
is "$(streams_now)" 1 "health counts the stream"
kill $CG; wait $CG 2>/dev/null
for _i in $(seq 100); do [ "$(streams_now)" = 0 ] && break; sleep 0.05; done
is "$(streams_now)" 0 "a client that disconnects mid-stream: its stream is released"

# A client that never reads: a stream with a tiny receive window, flooded.
# It must not hold up anything else (the poll below is answered at once).
curl -s -N --limit-rate 1 "$N/api/v1/sse/notifications?token=$(mint_token slow 600)" >/dev/null &
CS=$!
wait_subscribed slow
# The kernel's buffers on the way (the unix socket, nginx's TCP send buffer
# as it grows) hold megabytes: flood in rounds of 1.2 MB until they are
# full and herald-fcgi's queue passes send_queue_max (256 KiB) or its
# writes stall for the write timeout (10 s), at most 12 MB.
big=$(head -c 60000 /dev/zero | tr '\0' x)
for r in $(seq 10); do
	for i in $(seq 20); do pub slow "{\"big\":\"$big\"}" >/dev/null; done
	[ $r = 1 ] && is "$(code --max-time 3 "$POLL?token=$TA")" 200 "a client that never reads disturbs nothing"
	for _i in $(seq 20); do [ "$(streams_now)" = 0 ] && break; sleep 0.1; done
	[ "$(streams_now)" = 0 ] && break
done
for _i in $(seq 150); do [ "$(streams_now)" = 0 ] && break; sleep 0.1; done
is "$(streams_now)" 0 "the client that never reads is dropped (its queue past send_queue_max, or the write timeout; $r rounds of 1.2 MB)"
kill $CS 2>/dev/null; wait $CS 2>/dev/null

# --- a request written in parts, straight to the socket ----------------------------
# herald-fcgi's loop reads a request that has arrived whole itself (and holds
# a stream at once); one still arriving goes to a worker, whose libfcgi waits
# for the rest.  fcgi_raw writes the first bytes, pauses, writes the rest.
RAW=$B/tests/integration/fcgi_raw
SSEPATH=/api/v1/sse/notifications
"$RAW" "$T/fcgi.sock" $SSEPATH "token=$(mint_token rawa 600)" 0 0 2 >"$T/raw.whole"
grep -q '^event: cursor' "$T/raw.whole" && grep -q '^Content-Type: text/event-stream' "$T/raw.whole"
ok $? "a stream's request in one write: the head and the cursor"
"$RAW" "$T/fcgi.sock" $SSEPATH "token=$(mint_token rawb 600)" 40 300 2 >"$T/raw.split"
grep -q '^event: cursor' "$T/raw.split"
ok $? "a stream's request in two writes 300 ms apart: the head and the cursor"
"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 40 300 5 >"$T/raw.poll"
r=$?
grep -q '"notifications":\[' "$T/raw.poll"
ok $((r || $?)) "a poll's request in two writes: answered and ended"
"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 >"$T/raw.poll1"
r=$?
grep -q '"notifications":\[' "$T/raw.poll1"
ok $((r || $?)) "a poll's request in one write (read on the loop, answered by a worker)"
"$RAW" "$T/fcgi.sock" $SSEPATH "token=garbage" 0 0 5 >"$T/raw.bad"
r=$?
grep -q '^Status: 401' "$T/raw.bad"
ok $((r || $?)) "a stream with a bad token, read on the loop: 401 from a worker"
# Not FastCGI at all (HTTP written straight to the socket): the connection
# is closed, and the next request is answered as before.
curl -s --max-time 5 --unix-socket "$T/fcgi.sock" -o /dev/null http://x/api/v1/sse/notifications
r=$?
"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 >"$T/raw.after"
ok $(([ $r = 52 ] && grep -q '"notifications":\[' "$T/raw.after") && echo 0 || echo 1) \
	"HTTP instead of FastCGI on the socket: closed without an answer (curl $r), the next poll answered"

# Half a request, then silence (a peer that hangs mid-request): a worker waits
# for the rest at most its 10 s receive timeout, then closes the connection;
# the other workers answer meanwhile.
for i in 1 2 3 4; do
	"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 40 13000 20 >/dev/null &
	eval "half$i=\$!"
done
sleep 0.5
# (5 s: well inside the 10 s the hanging peers could hold their workers)
is "$(code --max-time 5 "$POLL?token=$TA")" 200 \
	"while 4 peers hang mid-request: a poll through nginx is answered (not queued behind them)"
curl -s -N --max-time 3 "$N/api/v1/sse/notifications?token=$(mint_token half 600)" >"$T/half.sse"
grep -q '^event: cursor' "$T/half.sse"
ok $? "... and a stream opens"
hr=
for i in 1 2 3 4; do eval "wait \$half$i"; hr="$hr$?"; done
is "$hr" 2222 "the 4 hanging connections are closed by herald-fcgi before their 13 s pause ends (fcgi_raw exit 2)"
is "$(code "$POLL?token=$TA")" 200 "... and polls are answered after"
# The same on a kept-alive connection: a poll answered, then half of the
# next request and silence.  The worker that took it waits for the rest (up
# to 10 s) while another waits for the next requests.
for i in 1 2 3 4; do
	"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 -14 >/dev/null 2>&1 &
	eval "half$i=\$!"
done
sleep 0.5
is "$(code --max-time 5 "$POLL?token=$TA")" 200 \
	"while 4 kept-alive peers hang mid-request: a poll through nginx is answered"
hr=
for i in 1 2 3 4; do eval "wait \$half$i"; hr="$hr$?"; done
is "$hr" 0000 "... and herald-fcgi closes the 4 within 14 s (its 10 s receive timeout)"
is "$(code "$POLL?token=$TA")" 200 "... and polls are answered after"
# Not FastCGI on a kept-alive connection (an HTTP request line after a
# poll), from 4 peers at once: each is closed without an answer.
for i in 1 2 3 4; do
	"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 g5 >/dev/null 2>&1 &
	eval "half$i=\$!"
done
hr=
for i in 1 2 3 4; do eval "wait \$half$i"; hr="$hr$?"; done
is "$hr" 0000 "HTTP on 4 kept-alive connections after a poll: herald-fcgi closes each (fcgi_raw exit 0)"
is "$(code "$POLL?token=$TA")" 200 "... and polls are answered after"

# --- idle kept-alive connections (fcgi_idle_timeout) --------------------------------
# A connection nginx keeps alive between requests waits in herald-fcgi's
# epoll set of idle connections, without a worker; one idle for
# fcgi_idle_timeout is closed by its idle thread (nginx forgot it).  fcgi_raw
# keeps its connection after the answer, as nginx does.
"$RAW" "$T/fcgi.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 3 >"$T/keep.out" 2>/dev/null
r=$?
is "$r$(grep -c '"notifications":\[' "$T/keep.out")" 31 \
	"a poll answered, its connection then kept open 3 s (fcgi_idle_timeout 300 s; fcgi_raw exit 3)"
rm -f "$T/idle.sock"
HERALD_FCGI_IDLE_TIMEOUT=2 $FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/idle.sock" >>"$T/fcgi.log" 2>&1 &
IDLE_PID=$!
for _i in $(seq 400); do [ -S "$T/idle.sock" ] && break; sleep 0.05; done
"$RAW" "$T/idle.sock" /api/v1/notifications/poll "token=$TA" 0 0 10 20 >"$T/idle.out" 2>"$T/idle.err"
r=$?
is "$r$(grep -c '"notifications":\[' "$T/idle.out")" 01 \
	"fcgi_idle_timeout 2 s: a poll answered, then its idle connection closed by herald-fcgi ($(cat "$T/idle.err"))"
"$RAW" "$T/idle.sock" /api/v1/notifications/poll "token=$TA" 0 0 10 >"$T/idle.out2" 2>/dev/null
r=$?
is "$r$(grep -c '"notifications":\[' "$T/idle.out2")" 01 "... and the next connection's poll is answered"
kill "$IDLE_PID"
wait "$IDLE_PID"
is $? 0 "... and that herald-fcgi exits 0 on SIGTERM"

# --- a worker's batch of polls (one round trip to Redis for several) ----------
# With one worker, the polls that queue while it answers one are taken
# together: their revocation checks and history reads go to Redis in one
# write.  Every poll still gets its own user's history; a revoked token its
# 401; after SCRIPT FLUSH the reads Redis refuses (NOSCRIPT) are read again
# on their own.  Bursts of 40 polls straight to the socket.
rm -f "$T/batch.sock"
HERALD_THREADS=1 $FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/batch.sock" >>"$T/fcgi.log" 2>&1 &
BATCH_PID=$!
for _i in $(seq 400); do [ -S "$T/batch.sock" ] && break; sleep 0.05; done
for i in $(seq 32); do
	for k in 1 2 3; do pub "bu$i" "{\"u\":\"bu$i\",\"k\":$k}" >/dev/null; done
	printf '%s\n' "$(mint_token "bu$i" 600)" >>"$T/batch.tok"
done
for i in $(seq 8); do
	pub --revoke-before "bv$i" $(($(date +%s) + 3600)) >/dev/null
	printf '%s\n' "$(mint_token "bv$i" 600)" >>"$T/batch.rev"
done
batches() {
	"$RAW" "$T/batch.sock" /api/v1/notifications/metrics "" 0 0 5 2>/dev/null |
		sed -n 's/^herald_fcgi_poll_batches_total \([0-9]*\)/\1/p'
}
# batch_burst DIR: 40 polls at once; then the count of answers that are right
batch_burst() {
	local i=0 t pids= good=0
	mkdir -p "$1"
	while read -r t; do
		i=$((i + 1))
		"$RAW" "$T/batch.sock" /api/v1/notifications/poll "token=$t" 0 0 20 >"$1/u$i" 2>&1 &
		pids="$pids $!"
	done <"$T/batch.tok"
	i=0
	while read -r t; do
		i=$((i + 1))
		"$RAW" "$T/batch.sock" /api/v1/notifications/poll "token=$t" 0 0 20 >"$1/v$i" 2>&1 &
		pids="$pids $!"
	done <"$T/batch.rev"
	for t in $pids; do wait "$t"; done
	for i in $(seq 32); do
		[ "$(grep -o "\"u\":\"bu$i\"" "$1/u$i" | wc -l)" = 3 ] &&
			[ "$(grep -o '"u":"bu' "$1/u$i" | wc -l)" = 3 ] && good=$((good + 1))
	done
	for i in $(seq 8); do
		grep -q '^Status: 401' "$1/v$i" && grep -q 'revoked' "$1/v$i" && good=$((good + 1))
	done
	echo "$good"
}
rcli SCRIPT FLUSH >/dev/null
is "$(batch_burst "$T/b0")" 40 \
	"40 polls at once after SCRIPT FLUSH, one worker: each its own 3 notifications, the 8 revoked 401"
for r in 1 2 3 4 5; do
	good=$(batch_burst "$T/b$r")
	bn=$(batches)
	[ "$good" = 40 ] || break
	[ "${bn:-0}" -gt 0 ] && break
done
is "$good" 40 "... and again ($r bursts): every answer right"
ok "$([ "${bn:-0}" -gt 0 ] && echo 0 || echo 1)" \
	"... with reads shared in batches (herald_fcgi_poll_batches_total $bn)"
# The worker's Redis link killed between batches: the next batch finds it
# broken, and each of its polls is answered on its own on a new link.
f0=$(grep -c 'history_read(.*) failed' "$T/fcgi.log")
rcli CLIENT KILL TYPE normal >/dev/null
is "$(batch_burst "$T/bk")" 40 "the worker's Redis link killed: the next 40 polls all answered right"
is "$(grep -c 'history_read(.*) failed' "$T/fcgi.log")" "$f0" "... without a 503 (none logged)"
kill "$BATCH_PID"
wait "$BATCH_PID"
is $? 0 "... and that herald-fcgi exits 0 on SIGTERM"

# --- out of descriptors: idle kept-alive connections give way ------------------
# As nginx reuses its idle kept-alive connections when it runs out, a
# herald-fcgi out of descriptors (EMFILE at accept) closes its oldest idle
# ones for new connections.  Here 100 open files, one worker (its Redis
# link opened by the first poll, before the descriptors run out), and 120
# connections that each poll and then stay open as nginx keeps them: those
# that found no descriptor would wait until the first ones leave (7 s)
# without it.
rm -f "$T/fd.sock"
(
	ulimit -n 100
	HERALD_THREADS=1 exec $FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/fd.sock" >>"$T/fd.log" 2>&1
) &
FD_PID=$!
for _i in $(seq 400); do [ -S "$T/fd.sock" ] && break; sleep 0.05; done
"$RAW" "$T/fd.sock" /api/v1/notifications/poll "token=$TA" 0 0 10 >/dev/null 2>&1
mkdir -p "$T/fd"
fdp=
for i in $(seq 120); do
	"$RAW" "$T/fd.sock" /api/v1/notifications/poll "token=$TA" 0 0 5 7 >"$T/fd/$i" 2>/dev/null &
	fdp="$fdp $!"
done
lost=0
for p in $fdp; do wait "$p" || [ $? = 3 ] || lost=$((lost + 1)); done
n=$(grep -l '"notifications":\[' "$T"/fd/* | wc -l)
# valgrind closes a connection accepted past the descriptors it leaves
# its program, and fails that accept with EMFILE: such a client sees its
# connection closed unanswered (fcgi_raw exit 2), not a lost answer
case ${FCGI_TEST_WRAP:-} in *valgrind*) [ "$lost" -gt 0 ] && diag "under valgrind: $lost closed by valgrind's accept" && n=$((n + lost)) ;; esac
is "$n" 120 \
	"100 open files: 120 connections that poll and stay open 7 s as nginx keeps them: all 120 answered within 5 s"
grep -q 'idle connections (oldest kept-alive first) for new ones' "$T/fd.log"
ok $? "... by closing the oldest idle ones when accept ran out of descriptors (logged)"
"$RAW" "$T/fd.sock" /api/v1/notifications/poll "token=$TA" 0 0 10 >"$T/fd.after" 2>/dev/null
ok $? "... and a poll after them is answered"
"$RAW" "$T/fd.sock" /api/v1/notifications/metrics "" 0 0 10 2>/dev/null >"$T/fd.metrics"
n=$(sed -n 's/^herald_fcgi_idle_reclaimed_total \([0-9]*\)/\1/p' "$T/fd.metrics")
ok "$([ "${n:-0}" -gt 0 ] && echo 0 || echo 1)" "... counted: herald_fcgi_idle_reclaimed_total $n"
kill "$FD_PID"
wait "$FD_PID"
is $? 0 "... and that herald-fcgi exits 0 on SIGTERM"

# --- out of descriptors for a Redis link: idle kept-alive connections give way -
# A worker opens its Redis link at its first request that needs one, and
# the subscriber's links are opened again after Redis comes back.  If by
# then idle kept-alive connections hold every descriptor (nginx keeps up
# to its keepalive count open, and held requests may take the rest), the
# link cannot be opened: herald-fcgi closes a few idle ones (oldest first)
# and tries again, as accept does.  Here one worker and two kept-alive
# connections that asked only /health/live (no Redis link yet); then the
# open-files limit is lowered (prlimit, soft limit) to what is open, and
# one of the two polls on its kept-alive connection.
if command -v prlimit >/dev/null; then
	rm -f "$T/nf.sock"
	HERALD_THREADS=1 $FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/nf.sock" >>"$T/nf.log" 2>&1 &
	NF_PID=$!
	for _i in $(seq 400); do [ -S "$T/nf.sock" ] && break; sleep 0.05; done
	# its subscriber's two Redis links first: one opened after the limit is
	# lowered would close the idle connection below to make way (as it
	# should), and the poll on it would find it closed (seen under valgrind)
	nf_links() { tcp_links "$NF_PID" "$REDIS_PORT"; }
	until_eq nf_links 2 300 || diag "herald-fcgi's Redis links: $(nf_links), not 2"
	LIVE=/api/v1/notifications/health/live
	# First nothing idle to close: the poll's own connection is the only
	# one, so its worker's Redis link cannot be opened.  The poll gets 503
	# with Retry-After (the client polls again; nothing is lost) and the
	# process goes on: with descriptors back, the flow below.
	# (fcgi_raw sends the poll on SIGUSR1, once the limit is lowered, not
	# after a pause that a slow machine may outlast)
	"$RAW" "$T/nf.sock" $LIVE "" 0 0 60 a30 /api/v1/notifications/poll "token=$TA" \
		>"$T/nf.none" 2>&1 &
	nf_none=$!
	wait_for "$T/nf.none" "probe" 200
	free=$(fd_lowest_free "$NF_PID")
	prlimit --pid "$NF_PID" --nofile="$free:"
	kill -USR1 "$nf_none"
	wait "$nf_none"
	tr -d '\r' <"$T/nf.none" | grep -q '^Status: 503' &&
		tr -d '\r' <"$T/nf.none" | grep -q '^Retry-After: '
	r=$?
	ok $r "open files lowered to the $free open, nothing idle to close: a poll gets 503 with Retry-After"
	[ $r = 0 ] || diag "the answers: $(tr -d '\r' <"$T/nf.none" | tr '\n' '|' | cut -c1-400); open now: $(ls "/proc/$NF_PID/fd" | sort -n | tr '\n' ' ')"
	prlimit --pid "$NF_PID" --nofile=4096:
	"$RAW" "$T/nf.sock" $LIVE "" 0 0 30 20 >"$T/nf.idle" 2>"$T/nf.idle.err" &
	nf_idle=$!
	"$RAW" "$T/nf.sock" $LIVE "" 0 0 60 a30 /api/v1/notifications/poll "token=$TA" \
		>"$T/nf.poll" 2>&1 &
	nf_poll=$!
	wait_for "$T/nf.idle" "probe" 200 && wait_for "$T/nf.poll" "probe" 200
	free=$(fd_lowest_free "$NF_PID")
	prlimit --pid "$NF_PID" --nofile="$free:"
	kill -USR1 "$nf_poll"
	wait "$nf_poll"
	ok $? "open files lowered to the $free open: a poll on a kept-alive connection is answered"
	grep -q '"notifications":\[' "$T/nf.poll"
	ok $? "... with the notifications (its worker's first Redis link found a descriptor)"
	wait "$nf_idle"
	is $? 0 "... because the other, idle, kept-alive connection was closed to make way"
	grep -q 'out of descriptors for a Redis connection: closed 1 idle kept-alive connection' \
		"$T/nf.log"
	ok $? "... (logged)"
	# The subscriber's links: Redis goes away with a stream held; two
	# idle kept-alive connections take the descriptors its links left
	# (the lowest free), the open files are lowered to what is open, and
	# Redis comes back: the stream gets what is published then.
	prlimit --pid "$NF_PID" --nofile=4096:
	"$RAW" "$T/nf.sock" /api/v1/sse/notifications "token=$(mint_token nfs 600)" 0 0 40 \
		>"$T/nf.sse" 2>&1 &
	nf_sse=$!
	wait_for "$T/nf.sse" "retry:" 200
	wait_subscribed nfs
	ok $? "a stream held"
	port=$REDIS_PORT
	stop_redis
	sleep 1
	"$RAW" "$T/nf.sock" $LIVE "" 0 0 30 25 >"$T/nf.idle2" 2>&1 &
	nf_idle=$!
	"$RAW" "$T/nf.sock" $LIVE "" 0 0 30 25 >"$T/nf.idle3" 2>&1 &
	nf_idle3=$!
	wait_for "$T/nf.idle2" "probe" 200 && wait_for "$T/nf.idle3" "probe" 200
	free=$(fd_lowest_free "$NF_PID")
	prlimit --pid "$NF_PID" --nofile="$free:"
	restart_redis "$port"
	wait_subscribed nfs
	ok $? "Redis back while two idle connections hold the last of $free open files: the subscriber is back"
	c=$(pub nfs '{"nf":1}')
	wait_for "$T/nf.sse" "^id: $c" 200
	ok $? "... and the stream gets what is published after"
	wait "$nf_idle"
	r1=$?
	wait "$nf_idle3"
	is "$r1 $?" "0 0" "... the idle connections closed to make way"
	kill "$nf_sse" 2>/dev/null
	wait "$nf_sse" 2>/dev/null
	kill "$NF_PID"
	wait "$NF_PID"
	is $? 0 "... and that herald-fcgi exits 0 on SIGTERM"
else
	diag "prlimit (util-linux) not installed: the Redis link out of descriptors is not tested"
fi

# --- Redis killed and restarted while streams are held ------------------------
curl -s -N "$N/api/v1/sse/notifications?token=$(mint_token rk 600)" >"$T/sserk" &
CR=$!
wait_for "$T/sserk" "retry:"
a=$(pub rk '{"before":1}')
wait_for "$T/sserk" "^id: $a"
port=$REDIS_PORT
stop_redis
sleep 0.5
is "$(code "$N/api/v1/notifications/health")" 503 "health 503 while Redis is down"
curl -s -D - -o /dev/null "$POLL?token=$TA" >"$T/p503"
grep -q '^HTTP/1.1 503' "$T/p503" && grep -qi '^retry-after:' "$T/p503"
ok $? "poll 503 with Retry-After while Redis is down"
restart_redis "$port"
for _i in $(seq 100); do [ "$(code "$N/api/v1/notifications/health")" = 200 ] && break; sleep 0.1; done
b=$(pub rk '{"after":1}')
wait_for "$T/sserk" "^id: $b"
kill -0 $CR 2>/dev/null
ok $? "the stream survived the Redis restart"
is "$(ids_of "$T/sserk")" "$a $b " "messages before and after the restart arrive exactly once"
kill $CR 2>/dev/null; wait $CR 2>/dev/null
bad=0
for i in $(seq 40); do [ "$(code "$POLL?token=$TA")" = 200 ] || bad=$((bad + 1)); done
is "$bad" 0 "after the restart every poll is answered (acceptors reconnect)"

# --- 1,000 streams held while polls are answered --------------------------------
for i in $(seq 100); do mint_token "m$i" 3600; done >"$T/tokens"
threads0=$(awk '/^Threads:/{print $2}' /proc/$FCGI_PID/status)
rss0=$(rss_kb "$FCGI_PID")
nfds() { nfds_of "$FCGI_PID"; }
fds0=$(nfds)
t0=$(date +%s%N)
"$B/tests/integration/fcgi_streams" "$HTTP_PORT" "$T/tokens" 1000 1 60 >"$T/streams.out" 2>&1 &
CM=$!
wait_for "$T/streams.out" ready 600
ok $? "1,000 SSE streams held through nginx"
diag "1,000 streams ready after $((($(date +%s%N) - t0) / 1000000)) ms"
streams=$(curl -s "$N/api/v1/notifications/health" | grep -o '"streams":[0-9]*')
is "$streams" '"streams":1000' "health counts 1,000 streams"
fds1=$(nfds)
diag "herald-fcgi descriptors: $fds0 before, $fds1 with 1,000 streams"
[ $((fds1 - fds0)) -le 1010 ]
ok $? "one descriptor per held stream (10,000 fit under a 20,000 limit)"
t0=$(date +%s%N)
is "$(code "$POLL?token=$TA")" 200 "a poll is answered while they are held"
ms=$((($(date +%s%N) - t0) / 1000000))
diag "poll took $ms ms with 1,000 streams held; RSS $(awk '/^VmRSS:/{print $2, $3}' /proc/$FCGI_PID/status)"
# (one after the other, 100 publishers under ASan on a loaded machine
# outlasted the streams' lifetime, then 30 s: 708 of 1,000 got theirs)
publish_many "$PUB" 100 "m{}" '{"m":{}}'
wait $CM
ok $? "all 1,000 streams received their message ($(tail -1 "$T/streams.out"))"
for _i in $(seq 100); do
	[ "$(awk '/^Threads:/{print $2}' /proc/$FCGI_PID/status)" = "$threads0" ] && break
	sleep 0.1
done
is "$(awk '/^Threads:/{print $2}' /proc/$FCGI_PID/status)" "$threads0" "threads back to the start after the clients left"
# nginx keeps FastCGI connections alive (upstream keepalive, 512 per
# worker): health counts them (idle_connections); the rest must be back.
# The loop sees each stream's end (EPOLLRDHUP) in its own time: wait for it.
idle_conns() { health_num "$N/api/v1/notifications/health" idle_connections; }
busy_fds() { echo $(($(nfds) - $(idle_conns))); }
for _i in $(seq 100); do
	[ "$(busy_fds)" -le $((fds0 + 16)) ] && break
	sleep 0.1
done
[ "$(busy_fds)" -le $((fds0 + 16)) ]
ok $? "descriptors back to the start after the clients left ($(nfds), $(idle_conns) of them kept alive by nginx, was $fds0)"
rss1=$(rss_kb "$FCGI_PID")
diag "herald-fcgi RSS before the 1,000 streams ${rss0} KiB, after they left ${rss1} KiB"
# What stays is the acceptors' stacks touched deeper by the new requests
# (16 threads x 256 KiB at most), not the streams: their stacks are unmapped.
[ $((rss1 - rss0)) -lt 4096 ]
ok_mem $? "memory returns after the 1,000 streams left (within 4 MiB)"
health=$(curl -s "$N/api/v1/notifications/health")
case $health in *'"connections":0,"users":0,"streams":0'*) r=0 ;; *) r=1; diag "$health" ;; esac
ok $r "hub entries back to zero"

# --- POST publish (publishers without Redis access) ---------------------------------
stop_fcgi
HERALD_PUBLISH_KEY=pubkey-$$-0123456789abcdef start_fcgi
PUBURL="$N/api/v1/notifications/publish"
body=$(curl -s -H "Authorization: Bearer pubkey-$$-0123456789abcdef" --data-binary '{"via":"http"}' "$PUBURL?user=carol")
pid_=$(printf '%s' "$body" | sed -n 's/^{"id":"\([0-9]*-[0-9]*\)"}$/\1/p')
ok $((${#pid_} == 0)) "POST publish with the key: answers the id ($body)"
body=$(curl -s "$POLL?token=$(mint_token carol 600)")
case $body in *"{\"id\":\"$pid_\",\"channel\":\"notifications:carol\""*'"data":{"via":"http"}'*) r=0 ;; *) r=1; diag "$body" ;; esac
ok $r "the published message is in carol's history, as an envelope"
is "$(code -H 'Authorization: Bearer wrong' --data-binary '{}' "$PUBURL?user=carol")" 401 "publish with a wrong key: 401"
is "$(code --data-binary '{}' "$PUBURL?user=carol")" 401 "publish without a key: 401"
is "$(code -H "Authorization: Bearer pubkey-$$-0123456789abcdef" --data-binary '{"a":' "$PUBURL?user=carol")" 400 "publish of invalid JSON: 400"
is "$(code -H "Authorization: Bearer pubkey-$$-0123456789abcdef" --data-binary '{}' "$PUBURL?user=a:b")" 400 "publish for a bad user id: 400"
is "$(code -H "Authorization: Bearer pubkey-$$-0123456789abcdef" "$PUBURL?user=carol")" 405 "GET on publish: 405"
head -c 70000 /dev/zero | tr '\0' 'a' | sed 's/^/"/; s/$/"/' >"$T/big.json"
is "$(code -H "Authorization: Bearer pubkey-$$-0123456789abcdef" --data-binary "@$T/big.json" "$PUBURL?user=carol")" 413 "publish over 64 KiB: 413"
is "$(curl -s "$POLL?token=$(mint_token carol 600)" | grep -o '"channel"' | wc -l)" 1 "the refused publishes stored nothing"

# --- SIGHUP: the JWT key and the log file are reloaded ------------------------------
stop_fcgi
printf 'first-key\n' >"$T/jwt.key"
HERALD_JWT_SECRET= HERALD_JWT_KEY_FILE=$T/jwt.key HERALD_LOG_FILE=$T/fcgi-file.log start_fcgi
K1=$(herald_token first-key dave 600)
K2=$(herald_token second-key dave 600)
is "$(code "$POLL?token=$K1"),$(code "$POLL?token=$K2")" "200,401" "before SIGHUP: the first key is the key"
printf 'second-key\n' >"$T/jwt.key"
mv "$T/fcgi-file.log" "$T/fcgi-file.log.1"
kill -HUP "$FCGI_PID"
for _i in $(seq 50); do [ "$(code "$POLL?token=$K2")" = 200 ] && break; sleep 0.1; done
is "$(code "$POLL?token=$K1"),$(code "$POLL?token=$K2")" "401,200" "after SIGHUP: the key file is read again"
grep -q 'SIGHUP' "$T/fcgi-file.log" 2>/dev/null
ok $? "after SIGHUP: the log file is opened anew (logrotate's move-and-signal)"
rm -f "$T/jwt.key"
kill -HUP "$FCGI_PID"
sleep 0.3
is "$(code "$POLL?token=$K2")" 200 "a SIGHUP with the key file gone keeps the previous key"
kill -0 "$FCGI_PID"
ok $? "and herald-fcgi keeps running"

# --- SIGUSR1, nginx's reopen signal: the log anew, nothing else --------------------
# (libfcgi's own USR1 handler used to stop every accept for good.)
mv "$T/fcgi-file.log" "$T/fcgi-file.log.2"
kill -USR1 "$FCGI_PID"
for _i in $(seq 50); do grep -q 'SIGUSR1: log reopened' "$T/fcgi-file.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'SIGUSR1: log reopened' "$T/fcgi-file.log" 2>/dev/null
ok $? "SIGUSR1 reopens the log file: herald-fcgi writes to the re-created file"
kill -USR1 "$FCGI_PID"
sleep 0.3
curl -s -N --max-time 3 "$N/api/v1/sse/notifications?token=$K2" >"$T/usr1.sse"
is "$(code "$POLL?token=$K2"),$(grep -c '^retry:' "$T/usr1.sse")" "200,1" \
	"after two SIGUSR1: polls are answered and a new SSE stream opens"
! grep -q 'FCGX_Accept_r failed' "$T/fcgi.log" "$T/fcgi-file.log"
ok $? "... and no accept failure is logged"

# --- RS256 and ES256: a worker reads and checks each request ----------------------
# (the loop reads only HMAC-checked requests: a public-key check costs tens of
# microseconds, too long for the thread that writes every held stream)
# pkey_token ALG KEY USER: a token signed with the private key KEY (PEM)
pkey_token() {
	local h p sig now
	now=$(date +%s)
	h=$(printf '{"alg":"%s","typ":"JWT"}' "$1" | b64url)
	p=$(printf '{"sub":"%s","iat":%d,"exp":%d}' "$3" "$now" $((now + 600)) | b64url)
	if [ "$1" = RS256 ]; then
		sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$2" -binary | b64url)
	else
		# ECDSA's DER signature as JWS wants it: r and s, 32 bytes each
		sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$2" -binary |
			openssl asn1parse -inform DER | awk -F: '/INTEGER/ {
				v = $NF; while (length(v) < 64) v = "0" v
				printf "%s", substr(v, length(v) - 63) }' |
			sed 's/../\\x&/g' | xargs -0 printf '%b' | b64url)
	fi
	printf '%s.%s.%s\n' "$h" "$p" "$sig"
}
for alg in RS256 ES256; do
	if [ $alg = RS256 ]; then
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/$alg.key" 2>/dev/null
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/$alg.other" 2>/dev/null
	else
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$alg.key" 2>/dev/null
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$alg.other" 2>/dev/null
	fi
	openssl pkey -in "$T/$alg.key" -pubout -out "$T/$alg.pub" 2>/dev/null
	stop_fcgi
	HERALD_JWT_SECRET= HERALD_JWT_ALG=$alg HERALD_JWT_KEY_FILE=$T/$alg.pub start_fcgi
	PK=$(pkey_token $alg "$T/$alg.key" pk$alg)
	curl -s -N --max-time 3 "$N/api/v1/sse/notifications?token=$PK" >"$T/pk.$alg" &
	pk=$!
	wait_for "$T/pk.$alg" '^event: cursor'
	ok $? "$alg: an SSE stream opens (head and cursor) with a token the key signed"
	pub pk$alg '{"alg":1}' >/dev/null
	wait_for "$T/pk.$alg" '"alg":1'
	ok $? "$alg: ... and delivers"
	wait $pk 2>/dev/null
	is "$(code "$POLL?token=$PK")" 200 "$alg: a poll with it: 200"
	is "$(code "$N/api/v1/sse/notifications?token=$(pkey_token $alg "$T/$alg.other" pk$alg)")" 401 \
		"$alg: a token signed by another key: 401"
	is "$(code "$N/api/v1/sse/notifications?token=$(herald_token "$SECRET" pk$alg 600)")" 401 \
		"$alg: an HS256 token: 401 (the algorithm is the server's, not the token's)"
done

# --- the cap on held requests: 503 with Retry-After past it -----------------------
stop_fcgi
HERALD_MAX_CONNECTIONS=2 start_fcgi
for i in 1 2; do
	curl -s -N --max-time 20 "$N/api/v1/sse/notifications?token=$(mint_token cap$i 600)" >"$T/cap$i" &
	eval "cap$i=\$!"
done
until_eq "streams_now" 2 100
curl -s -D "$T/cap3.h" -o "$T/cap3" --max-time 5 "$N/api/v1/sse/notifications?token=$(mint_token cap3 600)"
tr -d '\r' <"$T/cap3.h" | grep -q '^Retry-After: ' && head -1 "$T/cap3.h" | grep -q ' 503'
ok $? "max_connections 2: a third stream gets 503 with Retry-After"
fm() { curl -s "$N/api/v1/notifications/metrics" | sed -n "s/^$1 //p"; }
is "$(fm herald_fcgi_refused_full_total),$(fm herald_fcgi_max_connections)" "1,2" \
	"herald_fcgi_refused_full_total counts it; herald_fcgi_max_connections shows the cap"
kill $cap1 $cap2 2>/dev/null; wait $cap1 $cap2 2>/dev/null
stop_fcgi
# No max_connections: the cap comes from the open-files limit (1000 here,
# less 2 per worker and 256 kept back).
(ulimit -n 1000 && exec $FCGI_TEST_WRAP "$FCGI" --listen "unix:$T/fcgi.sock" >>"$T/fcgi.log" 2>&1) &
FCGI_PID=$!
for _i in $(seq 400); do [ -S "$T/fcgi.sock" ] && break; sleep 0.05; done
until_eq "code $N/api/v1/notifications/health" 200 100
# (valgrind keeps a few descriptors for itself: its client sees a lower limit)
cap=$(fm herald_fcgi_max_connections)
if [ -z "$FCGI_TEST_WRAP" ]; then [ "$cap" = 712 ]; else [ "${cap:-0}" -gt 600 ] && [ "$cap" -le 712 ]; fi
ok $? "without max_connections: 1000 open files give a cap of 712 held requests ($cap)"
grep -q "max_connections: $cap held requests (from the open-files limit" "$T/fcgi.log"
ok $? "... and the log says so"

# --- lifetime and SIGTERM -----------------------------------------------------------
stop_fcgi
HERALD_SSE_MAX_LIFETIME=2 start_fcgi
t0=$(date +%s%N)
curl -s -N --max-time 10 "$N/api/v1/sse/notifications?token=$TA" >"$T/ssel"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -ge 1800 ] && [ $ms -lt 5000 ] && grep -q 'retry:' "$T/ssel"
ok $? "the stream ends cleanly at its maximum lifetime (${ms} ms)"
# Twenty streams opened together end spread over the lifetime's last tenth
# (1.8-2 s), not all at once: each one's own duration, from curl, so their
# starts do not matter.  Without the spread they differ by what a connect
# costs; twenty draws over 200 ms all within 60 ms: about 1e-9.
lives=
for i in $(seq 20); do
	curl -s -N --max-time 10 -o /dev/null -w '%{time_total}\n' \
		"$N/api/v1/sse/notifications?token=$TA" >"$T/life.$i" &
	lives="$lives $!"
done
for pid in $lives; do wait "$pid"; done
sort -n "$T"/life.* >"$T/lives"
lo=$(head -1 "$T/lives") hi=$(tail -1 "$T/lives")
awk -v lo="$lo" -v hi="$hi" -v n="$(grep -c . "$T/lives")" \
	'BEGIN { exit !(n == 20 && lo >= 1.8 && hi - lo >= 0.06) }'
ok $? "streams opened together end at random in the lifetime's last tenth (20 streams: ${lo}-${hi} s)"
curl -s -N --max-time 10 "$N/api/v1/sse/notifications?token=$TA" >/dev/null &
CL=$!
sleep 0.3
t0=$(date +%s%N)
kill -TERM "$FCGI_PID"
wait "$FCGI_PID"
rc=$?
FCGI_PID=
wait $CL
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 0 ] && [ $ms -lt 3000 ]
ok $? "SIGTERM ends the streams and exits 0 (${ms} ms)"

# --- CGI ------------------------------------------------------------------------------
pub alice '{"cgi":1}' >/dev/null # Redis was restarted empty above
out=$(env GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_NAME=/api/v1/notifications/poll \
	QUERY_STRING="token=$TA&limit=1" "$FCGI" </dev/null)
case $out in "Status: 200 OK"*'"notifications":[{'*) r=0 ;; *) r=1 ;; esac
ok $r "CGI by hand: poll answered on stdout"
out=$(env GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET PATH_INFO=/api/v1/notifications/health \
	SCRIPT_NAME=/cgi-bin/herald "$FCGI" </dev/null)
case $out in "Status: 200 OK"*'"mode":"cgi"'*) r=0 ;; *) r=1 ;; esac
ok $r "CGI by hand: health answered"

if command -v spawn-fcgi >/dev/null; then
	rm -f "$T/fcgi.sock"
	spawn-fcgi -s "$T/fcgi.sock" -M 0666 -P "$T/spawn.pid" -- "$FCGI" >/dev/null 2>&1
	for _i in $(seq 50); do [ "$(code "$N/api/v1/notifications/health")" = 200 ] && break; sleep 0.1; done
	is "$(code "$N/api/v1/notifications/health")" 200 "under spawn-fcgi: serves the socket inherited on fd 0"
	kill "$(cat "$T/spawn.pid")" 2>/dev/null
else
	ok 0 "# SKIP spawn-fcgi not installed"
fi
if command -v lighttpd >/dev/null; then
	LP=$(port_pick)
	mkdir -p "$T/lighttpd"
	printf 'redis_url = %s\njwt_secret = %s\n' "$REDIS_URL" "$SECRET" >"$T/herald.conf"
	sed -e "s#server.port = 8081#server.port = $LP#" -e "s#/var/www/html#$T/lighttpd#" \
		-e "s#/var/log/lighttpd/herald-error.log#$T/lighttpd/error.log#" \
		-e "s#/usr/bin/herald-fcgi#$FCGI#g" -e "s#/etc/herald/herald.conf#$T/herald.conf#" \
		"$src/nginx/lighttpd-herald.conf" >"$T/lighttpd.conf"
	lighttpd -D -f "$T/lighttpd.conf" >"$T/lighttpd.log" 2>&1 &
	LPID=$!
	port_wait "$LP" "$LPID"
	body=$(curl -s "$U:$LP/api/v1/notifications/poll?token=$TA&limit=1")
	case $body in *'"notifications":[{'*) r=0 ;; *) r=1; diag "$body"; diag "$(cat "$T/lighttpd.log")" ;; esac
	ok $r "lighttpd mod_cgi runs herald-fcgi as CGI: poll"
	kill $LPID; wait $LPID 2>/dev/null
else
	ok 0 "# SKIP lighttpd not installed"
fi
# --- POST publish is stored once, even when retried (issue 11, DESIGN 8) ------------
# A timeout cannot tell whether a command reached Redis: a busy Redis runs it
# when it gets to it.  herald-fcgi retries once on a new connection, so each
# publish carries an idempotency key: the caller's Idempotency-Key, or one
# herald-fcgi makes per request.
rm -f "$T/fcgi.sock" # spawn-fcgi's, above: start_fcgi waits for the new one
HERALD_PUBLISH_KEY=pubkey-$$-0123456789abcdef start_fcgi
ok $? "idempotency: herald-fcgi started again, with a publish key"
IPUB="$N/api/v1/notifications/publish"
IAUTH="Authorization: Bearer pubkey-$$-0123456789abcdef"
ipost() { curl -s -H "$IAUTH" "$@"; }
b1=$(ipost -H 'Idempotency-Key: order-7:shipped' --data-binary '{"order":7}' "$IPUB?user=idem")
b2=$(ipost -H 'Idempotency-Key: order-7:shipped' --data-binary '{"order":7}' "$IPUB?user=idem")
iid=$(printf '%s' "$b1" | sed -n 's/^{"id":"\([0-9]*-[0-9]*\)"}$/\1/p')
ok $((${#iid} == 0)) "Idempotency-Key: the first POST answers the id ($b1)"
is "$b2" "{\"id\":\"$iid\",\"duplicate\":true}" "Idempotency-Key again: the same id, duplicate"
b3=$(ipost -H 'Idempotency-Key: "order-7:shipped"' --data-binary '{"order":7}' "$IPUB?user=idem")
is "$b3" "{\"id\":\"$iid\",\"duplicate\":true}" "Idempotency-Key as a quoted string: the same key"
is "$(rcli XLEN notifications:idem:history)" 1 "Idempotency-Key three times: one entry"
b4=$(ipost -w ' %{http_code}' -H 'Idempotency-Key: order-7:shipped' --data-binary '{"order":8}' \
	"$IPUB?user=idem")
is "$b4" '{"error":"idempotency_key_reused","detail":"Idempotency-Key: already used for another payload"} 409' \
	"the same Idempotency-Key for another payload: 409, says why"
is "$(ipost -H 'Idempotency-Key: no spaces' --data-binary '{}' "$IPUB?user=idem")" \
	'{"error":"bad_request","detail":"Idempotency-Key: must match [A-Za-z0-9_.:-]{1,128}"}' \
	"a malformed Idempotency-Key: 400, says why"
is "$(code -H "$IAUTH" -H "Idempotency-Key: $(head -c 129 /dev/zero | tr '\0' k)" \
	--data-binary '{}' "$IPUB?user=idem"),$(code -H "$IAUTH" -H 'Idempotency-Key;' \
	--data-binary '{}' "$IPUB?user=idem")" "400,400" "an Idempotency-Key over 128 bytes, or empty: 400"
is "$(rcli XLEN notifications:idem:history)" 1 "the refused POSTs stored nothing"
ipost --data-binary '{"n":1}' "$IPUB?user=idem" >/dev/null
ipost --data-binary '{"n":1}' "$IPUB?user=idem" >/dev/null
is "$(rcli XLEN notifications:idem:history)" 3 "without Idempotency-Key every POST stores (a key of its own each)"

# Redis busy past herald-fcgi's 2 s timeout: a script holds it for 5 s.  The
# first try times out, the retry on a new connection too (503); when the
# script ends Redis runs both commands, and the key makes the second a replay.
evalsha_calls() { rcli INFO commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }
calls0=$(evalsha_calls)
rcli CONFIG SET busy-reply-threshold 10000 >/dev/null
rcli EVAL "local s = redis.call('TIME')
	while true do
		local t = redis.call('TIME')
		if (t[1] - s[1]) * 1000000 + (t[2] - s[2]) > 5000000 then return 1 end
	end" 0 >/dev/null &
IBUSY=$!
sleep 0.3
st=$(ipost -o "$T/busy.out" -w '%{http_code}' --data-binary '{"busy":1}' "$IPUB?user=busy")
wait $IBUSY
rcli PING >/dev/null
diag "POST while Redis was busy for 5 s: $st $(cat "$T/busy.out")"
grep -q 'publish for busy: .*trying once more' "$T/fcgi.log"
ok $? "Redis busy: herald-fcgi retried on a new connection"
for _i in $(seq 20); do [ "$(evalsha_calls)" = $((calls0 + 2)) ] && break; sleep 0.1; done
is "$(evalsha_calls)" $((calls0 + 2)) "Redis busy: Redis ran both tries after the script"
is "$(rcli XLEN notifications:busy:history)" 1 "Redis busy: one entry stored"
is "$(rcli --scan --pattern 'notifications:busy:history:idem:*' | wc -l | tr -d ' ')" 1 \
	"Redis busy: under the one key herald-fcgi made for the request"
rcli CONFIG SET busy-reply-threshold 5000 >/dev/null

# Redis paused for writes past the timeout (CLIENT PAUSE 3000 WRITE): the first
# try times out and Redis drops it with its connection; the retry runs when
# the pause ends and answers late.
rcli CLIENT PAUSE 3000 WRITE >/dev/null
st=$(ipost -o "$T/pause.out" -w '%{http_code}' -H 'Idempotency-Key: paused-1' \
	--data-binary '{"paused":1}' "$IPUB?user=paused")
diag "POST while Redis was paused 3 s: $st $(cat "$T/pause.out")"
sleep 0.5
is "$(rcli XLEN notifications:paused:history)" 1 "Redis paused: one entry stored"
pid_=$(rcli XRANGE notifications:paused:history - + | head -1)
b5=$(ipost -H 'Idempotency-Key: paused-1' --data-binary '{"paused":1}' "$IPUB?user=paused")
is "$b5" "{\"id\":\"$pid_\",\"duplicate\":true}" \
	"Redis paused: the caller's own retry with its key answers that entry's id"
is "$(rcli XLEN notifications:paused:history)" 1 "Redis paused: still one entry after the caller's retry"
stop_fcgi

# --- live / ready: the orchestrators' probes (issue 15) ------------------------------
# live: 200 while the process runs.  ready: 503 with Retry-After while Redis
# is down or the canary is late, 200 again once it is back.  Through nginx
# (the legacy config, which exposes both).  Runs once herald-fcgi's handler
# answers the routes (ROUTE_LIVE, ROUTE_READY) with the probe's body: until
# then the router knows them but nothing answers them (nginx: 502).
rm -f "$T/fcgi.sock"
start_fcgi
HP="$N/api/v1/notifications/health"
for _i in $(seq 50); do [ "$(code "$HP")" = 200 ] && break; sleep 0.1; done
# until_ready WANT TENTHS: until ready answers WANT; prints the tenths waited
until_ready() {
	local i=0
	while [ $i -lt "$2" ]; do
		[ "$(code --max-time 1 "$HP/ready")" = "$1" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	echo $i
}
st=$(curl -s -o "$T/live" -w '%{http_code}' --max-time 2 "$HP/live")
if ! grep -q '"probe"' "$T/live"; then
	ok 0 "# SKIP herald-fcgi does not answer health/live yet ($st): handler not wired"
else
	is "$st $(cat "$T/live")" '200 {"status":"ok","probe":"live"}' "live: 200 through nginx"
	is "$(code "$HP/ready") $(curl -s "$HP/ready")" '200 {"status":"ok","probe":"ready"}' \
		"ready: 200 through nginx with Redis up"
	is "$(code -X POST "$HP/ready")" 405 "ready: POST is 405"
	out=$(env GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET PATH_INFO=/api/v1/notifications/health/ready \
		SCRIPT_NAME=/cgi-bin/herald "$FCGI" </dev/null)
	case $out in "Status: 200 OK"*'{"status":"ok","probe":"ready"}'*) r=0 ;; *) r=1; diag "$out" ;; esac
	ok $r "CGI by hand: ready answered (a PING stands for the subscriber)"
	kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
	t=$(until_ready 503 20)
	[ "$t" -lt 20 ]
	ok $? "Redis stopped: ready answers 503 within the canary interval ($t/10 s)"
	curl -s -D "$T/rh" -o "$T/rb" "$HP/ready"
	grep -qi '^Retry-After: ' "$T/rh" && grep -q '"status":"unavailable","probe":"ready","reason":"' "$T/rb"
	ok $? "ready's 503 has Retry-After and says why: $(cat "$T/rb")"
	is "$(code "$HP/live")" 200 "Redis stopped: live stays 200"
	out=$(env GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET PATH_INFO=/api/v1/notifications/health/ready \
		SCRIPT_NAME=/cgi-bin/herald "$FCGI" </dev/null)
	case $out in "Status: 503"*'"probe":"ready","reason":'*) r=0 ;; *) r=1; diag "$out" ;; esac
	ok $r "CGI by hand: ready answers 503 while Redis is down"
	"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$T/redis" --save '' \
		--appendonly no --daemonize no --loglevel warning >>"$T/redis/log" 2>&1 &
	REDIS_PID=$!
	t=$(until_ready 200 150)
	[ "$t" -lt 150 ]
	ok $? "Redis back: ready answers 200 again ($t/10 s)"
	is "$(code "$HP/live")" 200 "Redis back: live 200"
fi
stop_fcgi
done_testing
