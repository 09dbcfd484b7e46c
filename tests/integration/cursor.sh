#!/usr/bin/env bash
# A first connection without a cursor (issue 14): herald-ws and herald-fcgi
# behind nginx/herald.conf, on a real redis-server, tell a WebSocket or SSE
# client that connects without since= / Last-Event-ID where the user's
# history ends, before anything else: {"type":"cursor","cursor":"ID"} on
# the WebSocket, `id: ID` / `event: cursor` on SSE, "0-0" for an empty
# history.  A client whose connection breaks before its first message
# resumes from that cursor and gets what was published meanwhile, once, in
# order.  A connection that gives a cursor gets no cursor message.  TAP.
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
PUB=$B/herald-publish
CLI=$B/tests/integration/ws_client
lib_need "$B/herald-ws" "$B/herald-fcgi" "$PUB" "$CLI" curl openssl
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
lib_clean_env
lib_init
chmod 755 "$T" # nginx's workers run as another user and must reach the sockets
start_redis || skip_all "cannot start redis-server"

SECRET=test-secret-$$
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=debug
trap 'stack_stop; _lib_cleanup' EXIT
HTTP_PORT=$(port_pick)
stack_start "$T/run" "$B" "$HTTP_PORT" full || exit 1
NG=127.0.0.1:$HTTP_PORT
ok 0 "herald-ws, herald-fcgi and nginx (nginx/herald.conf) are up"

tok() { herald_token "$SECRET" "$1" 3600; }
wspath() { printf '/api/v1/ws/notifications?token=%s%s' "$(tok "$1")" "${2:-}"; }
publish() { "$PUB" "$1" "$2"; }
# publish3 USER: three notifications; their ids on one line
publish3() {
	local i ids=
	for i in 1 2 3; do ids="$ids$(publish "$1" "{\"n\":$i}") "; done
	echo "$ids"
}
# until_true TENTHS CMD...: poll CMD every 0.1 s
until_true() {
	local n=$1 i
	shift
	for i in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
	return 1
}
subscribers() { rcli PUBSUB NUMSUB "notifications:$1" | sed -n 2p; }
subscribed() { [ "$(subscribers "$1")" -ge 1 ] 2>/dev/null; }
unsubscribed() { [ "$(subscribers "$1")" = 0 ]; }
# ws_ids FILE: the ids of the envelopes a ws_client printed, in order
ws_ids() { sed -n 's/^text {"id":"\([0-9]*-[0-9]*\)".*/\1/p' "$1" | tr '\n' ' '; }
# sse_ids FILE: the ids of the notification events of an SSE stream, in order
sse_ids() {
	tr -d '\r' <"$1" | awk '/^id: /{ id = substr($0, 5); next }
		/^event: notification/{ if (id != "") printf "%s ", id }
		/^$/{ id = "" }'
}

# --- WebSocket ---------------------------------------------------------------
# ws_case DESC USER: the first connection is told the tail; closed before
# any message, three are published, the reconnect from that cursor gets them.
ws_case() {
	local desc=$1 u=$2 want=$3 cur got ids
	"$CLI" -C -t 5 -n 1 "$NG" "$(wspath "$u")" >"$T/$u.1" &
	local pid=$!
	until_true 50 grep -qs '^cursor ' "$T/$u.1"
	cur=$(sed -n 's/^cursor //p' "$T/$u.1")
	is "$cur" "$want" "WS, $desc: the first message is the cursor $want"
	# the only text before it: none (ws_client prints the cursor apart)
	is "$(head -2 "$T/$u.1" | tail -1)" "cursor $want" "WS, $desc: nothing comes before the cursor"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	until_true 50 unsubscribed "$u"
	ok $? "WS, $desc: the connection is gone (no subscriber left)"
	ids=$(publish3 "$u")
	"$CLI" -C -t 3 "$NG" "$(wspath "$u" "&since=$cur")" >"$T/$u.2"
	got=$(ws_ids "$T/$u.2")
	is "$got" "$ids" "WS, $desc: the reconnect from the cursor gets the 3 published meanwhile, once, in order"
	! grep -q '^cursor \|reset' "$T/$u.2"
	ok $? "WS, $desc: a connection with since= gets no cursor message and no reset"
}

ws_case "empty history" wsa 0-0
publish wsb '{"n":0}' >/dev/null
newest=$(publish wsb '{"n":0}')
ws_case "history with entries" wsb "$newest"

# The cursor, then what is published live after it.
"$CLI" -C -t 5 -n 1 "$NG" "$(wspath wsc)" >"$T/wsc" &
pid=$!
until_true 50 grep -qs '^cursor ' "$T/wsc"
id=$(publish wsc '{"n":7}')
wait "$pid"
is "$(sed -n 's/^cursor //p' "$T/wsc"):$(ws_ids "$T/wsc")" "0-0:$id " \
	"WS: the cursor first, then the live notification"

# --- SSE (herald-fcgi) ---------------------------------------------------------
sse_case() {
	local desc=$1 u=$2 want=$3 cur got ids
	curl -s -N --max-time 10 -H "Authorization: Bearer $(tok "$u")" \
		"http://$NG/api/v1/sse/notifications" >"$T/$u.1" &
	local pid=$!
	until_true 50 grep -qs '^event: cursor' "$T/$u.1"
	tr -d '\r' <"$T/$u.1" >"$T/$u.1n"
	# retry, a blank line, then the cursor event: id, event, data
	is "$(sed -n '3,5p' "$T/$u.1n" | tr '\n' '|')" \
		"id: $want|event: cursor|data: {\"type\":\"cursor\",\"cursor\":\"$want\"}|" \
		"SSE, $desc: the first event is the cursor $want (id: and event: cursor)"
	cur=$(sed -n 's/^id: //p' "$T/$u.1n" | head -1)
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	until_true 50 unsubscribed "$u"
	ok $? "SSE, $desc: the stream is gone (no subscriber left)"
	ids=$(publish3 "$u")
	curl -s -N --max-time 2 -H "Authorization: Bearer $(tok "$u")" -H "Last-Event-ID: $cur" \
		"http://$NG/api/v1/sse/notifications" >"$T/$u.2"
	got=$(sse_ids "$T/$u.2")
	is "$got" "$ids" "SSE, $desc: Last-Event-ID: the cursor gets the 3 published meanwhile, once, in order"
	! grep -q '^event: cursor\|^event: reset' "$T/$u.2"
	ok $? "SSE, $desc: a stream with Last-Event-ID gets no cursor event and no reset"
}

sse_case "empty history" ssea 0-0
publish sseb '{"n":0}' >/dev/null
newest=$(publish sseb '{"n":0}')
sse_case "history with entries" sseb "$newest"

# last_event_id= (herald.js's own reconnect) resumes the same way from 0-0.
curl -s -N --max-time 3 "http://$NG/api/v1/sse/notifications?token=$(tok ssec)" >"$T/ssec.1" &
pid=$!
until_true 50 grep -qs '^event: cursor' "$T/ssec.1"
ok $? "SSE: a stream with ?token= gets the cursor too"
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
until_true 50 unsubscribed ssec
ids=$(publish3 ssec)
curl -s -N --max-time 2 "http://$NG/api/v1/sse/notifications?token=$(tok ssec)&last_event_id=0-0" >"$T/ssec.2"
is "$(sse_ids "$T/ssec.2")" "$ids" "SSE: last_event_id=0-0 gets everything published since"

# --- SSE: the head comes with the cursor, so open means live ---------------------
# herald-fcgi holds a stream's head until its cursor is known (subscription
# confirmed, tail read): a notification published the moment the response
# head reaches the client is delivered.  10 streams, one user each.
lost=
for i in $(seq 10); do
	u=live$i
	curl -s -N --max-time 5 -D "$T/$u.h" -H "Authorization: Bearer $(tok "$u")" \
		"http://$NG/api/v1/sse/notifications" >"$T/$u.b" &
	pid=$!
	until_true 50 grep -qs '^HTTP/1.1 200' "$T/$u.h"
	id=$(publish "$u" '{"n":1}')
	until_true 20 grep -qs '^event: notification' "$T/$u.b"
	grep -qs "^id: $id" "$T/$u.b" || lost="$lost $u"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
done
is "${lost:-none}" none "SSE: a notification published as the head arrives is delivered (10 streams)"
# Redis frozen: the head does not wait for it past HEAD_WAIT_MS (herald.js
# gives an attempt 15 s to open); the cursor follows once Redis answers.
kill -STOP "$REDIS_PID"
curl -s -N --max-time 15 -D "$T/frozen.h" -H "Authorization: Bearer $(tok frozen)" \
	"http://$NG/api/v1/sse/notifications" >"$T/frozen.b" &
pid=$!
until_true 100 grep -qs '^HTTP/1.1 200' "$T/frozen.h"
r=$?
! grep -qs '^event: cursor' "$T/frozen.b"
ok $((r || $?)) "SSE with Redis frozen: the head arrives alone, without a cursor"
kill -CONT "$REDIS_PID"
until_true 100 grep -qs '^event: cursor' "$T/frozen.b"
ok $? "SSE: the cursor follows once Redis answers"
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null

# --- the cursor 0-0 on a history that still does not exist ----------------------
# (nothing was published after the cursor: no reset on any transport)
"$CLI" -C -t 2 "$NG" "$(wspath empty1 "&since=0-0")" >"$T/empty.ws"
! grep -q 'reset\|^text \|^cursor ' "$T/empty.ws" && grep -q '^status 101' "$T/empty.ws"
ok $? "WS since=0-0 on an empty history: no reset, nothing"
curl -s -N --max-time 2 -H "Last-Event-ID: 0-0" -H "Authorization: Bearer $(tok empty2)" \
	"http://$NG/api/v1/sse/notifications" >"$T/empty.sse"
grep -q '^retry:' "$T/empty.sse" && ! grep -q '^event: reset\|^event: cursor' "$T/empty.sse"
ok $? "SSE Last-Event-ID: 0-0 on an empty history: no reset event"
body=$(curl -s -H "Authorization: Bearer $(tok empty3)" \
	"http://$NG/api/v1/notifications/poll?since=0-0")
case $body in *'"truncated":false'*'"cursor":"0-0"'* | *'"cursor":"0-0"'*'"truncated":false'*) r=0 ;; *) r=1 ;; esac
ok $r "poll since=0-0 on an empty history: truncated false, cursor 0-0"
[ $r = 0 ] || diag "$body"
# A trimmed history still reports the cut to a client at 0-0.
for i in $(seq 12); do publish trim "{\"n\":$i}" >/dev/null; done
rcli XTRIM notifications:trim:history MAXLEN 5 >/dev/null
body=$(curl -s -H "Authorization: Bearer $(tok trim)" "http://$NG/api/v1/notifications/poll?since=0-0")
case $body in *'"truncated":true'*) r=0 ;; *) r=1 ;; esac
ok $r "poll since=0-0 on a trimmed history: truncated true"

# --- what it costs: history reads per connection without a cursor ---------------
# One read per connection without a cursor: the tail, read once the user's
# subscription is confirmed (what comes after it arrives live).
reads() { curl -s --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/metrics |
	sed -n 's/^herald_redis_history_reads_total //p'; }
before=$(reads)
"$CLI" -C -t 5 "$NG" "$(wspath wsd)" >"$T/wsd1" &
p1=$!
until_true 50 grep -qs '^cursor ' "$T/wsd1"
publish wsd '{"n":1}' >/dev/null
until_true 50 grep -qs '^text ' "$T/wsd1" # live: its replay is over
mid=$(reads)
"$CLI" -C -t 5 "$NG" "$(wspath wsd)" >"$T/wsd2" &
p2=$!
until_true 50 grep -qs '^cursor ' "$T/wsd2"
publish wsd '{"n":2}' >/dev/null
until_true 50 grep -qs '^text ' "$T/wsd2"
after=$(reads)
kill "$p1" "$p2" 2>/dev/null
wait "$p1" "$p2" 2>/dev/null
is "$((mid - before)):$((after - mid))" "1:1" \
	"herald-ws: 1 history read for a user's first connection without a cursor, 1 for the next"

grep -q 'ERROR\|AddressSanitizer\|runtime error' "$T/run/ws.log" "$T/run/fcgi.log"
ok $((!$?)) "no errors in the servers' logs"
done_testing
