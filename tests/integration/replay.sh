#!/usr/bin/env bash
# Resume that never loses a notification (issue 11), at the sizes users
# reach, on every transport, through real nginx (the shipped
# nginx/herald.conf, started by scripts/stack.sh) and a real redis-server.
# TAP on stdout.  The client is tests/integration/replay_check: it resumes
# after a cursor and checks that the payloads {"n":K} arrive once each, in
# order, K from A to B, with nothing else (DESIGN.md section 8).
#
# Transports: ws (WebSocket, &since=), sse (Last-Event-ID header), sseq
# (?last_event_id=), lpoll (long-polls, wait=), poll (plain polls, limit=100,
# following the cursor while "more" is true).
#   1. resume after REPLAY_BIG (1,000) notifications of ~400 bytes (over
#      send_queue_max), then a live one
#   2. resume after REPLAY_MANY (5,000) small ones (history_max 10,000),
#      then a live one
#   3. the same (REPLAY_MANY x ~1 KiB) while 300 more (~4 KiB each) are
#      published at 100/s during a slowed replay
#   4. a cursor older than the history kept (history_max 100): the reset
#      signal first, then everything still kept, then a live one
#   5. a client that stops reading mid-replay (REPLAY_STALL x 4 KiB): dropped
#      by the write timeout, memory back; another user's live delivery
#      meanwhile printed as a diagnostic
#   6. memory: RSS after REPLAY_CLIENTS (100) clients resumed a 5,000-entry
#      backlog each, within 10% of before (herald-ws and herald-fcgi)
#   7. test 1 and test 4 again with replay_page = 7 (odd page boundaries)
#   8. test 3 (ws, sse, lpoll) while Redis drops the servers' connections
#      three times (CLIENT KILL): they reconnect and catch up
# No timed assertion: time-outs only fail a test that hangs.
#
# Sizes can be lowered for a quick run: REPLAY_BIG, REPLAY_MANY, REPLAY_STALL,
# REPLAY_CLIENTS (e.g. REPLAY_BIG=100 REPLAY_MANY=100).  REPLAY_ONLY="4 8"
# runs only those sections; KEEP_TEST_DIR=1 keeps the servers' logs.

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
CHK=$B/tests/integration/replay_check
PUB=$B/herald-publish
lib_need "$B/herald-ws" "$B/herald-fcgi" "$PUB" "$CHK"
PATH=$PATH:/usr/sbin
lib_need "$nginx_bin" openssl curl
lib_clean_env

BIG=${REPLAY_BIG:-1000}
MANY=${REPLAY_MANY:-5000}
STALL=${REPLAY_STALL:-5000}
CLIENTS=${REPLAY_CLIENTS:-100}
LIVE=300 # published during the replay in tests 3 and 8
TRANSPORTS="ws sse sseq lpoll poll"
TMO=180 # the checker's safety net, seconds

lib_init
chmod 755 "$T" # nginx's workers may run as another user and must reach the sockets
start_redis || skip_all "cannot start redis-server"

SECRET=test-secret-$$
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=debug
# herald-ws drops a connection that takes no bytes for ws_pong_timeout
# (section 5), herald-fcgi a stream after 10 s: 10 for both.  At 5 a
# checker starved that long under the sanitizer suite's -j4 on 2 cores
# was dropped mid-replay in section 3 (once, 2026-12-07).
export HERALD_HISTORY_MAX=10000 HERALD_WS_PONG_TIMEOUT=10
STACK_WS_ARGS=
STACK_FCGI_ARGS=
HOLD_FD=
_replay_cleanup() {
	[ -n "$HOLD_FD" ] && exec 7>&-
	stack_stop
	_lib_cleanup
}
trap _replay_cleanup EXIT

HTTP_PORT=$(port_pick)
stack_start "$T/run" "$B" "$HTTP_PORT" full 2>"$T/stack.err"
ok $? "herald-ws, herald-fcgi and nginx (nginx/herald.conf) start"
[ -n "$STACK_WS_PID" ] && [ -n "$STACK_FCGI_PID" ] && [ -n "$NGINX_PID" ] || {
	sed 's/^/# /' "$T/stack.err"
	done_testing
}
NG=127.0.0.1:$HTTP_PORT
_section=1
# want N: section N runs (REPLAY_ONLY unset, or lists it)
want() {
	[ -z "${REPLAY_ONLY:-}" ] && return 0
	case " $REPLAY_ONLY " in *" $1 "*) return 0 ;; esac
	return 1
}
_section_t=$(date +%s%N)
section_done() {
	local t
	t=$(date +%s%N)
	diag "section $_section took $(((t - _section_t) / 1000000)) ms"
	_section=$((_section + 1))
	_section_t=$t
}

# Tokens are minted once per user (a few processes each): mint USER, in this
# shell, before path_for USER runs in a subshell.
declare -A TOKS
mint() { [ -n "${TOKS[$1]:-}" ] || TOKS[$1]=$(herald_token "$SECRET" "$1" 3600); }
# path_for TRANSPORT USER: the endpoint with the user's token
path_for() {
	local t=${TOKS[$2]:-$(herald_token "$SECRET" "$2" 3600)}
	case $1 in
	ws) printf '/api/v1/ws/notifications?token=%s' "$t" ;;
	sse | sseq) printf '/api/v1/sse/notifications?token=%s' "$t" ;;
	*) printf '/api/v1/notifications/poll?token=%s' "$t" ;;
	esac
}
# metric NAME: its value on herald-ws and on herald-fcgi ("ws/fcgi")
metric() {
	printf '%s/%s' \
		"$(curl -s --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/metrics | sed -n "s/^$1 //p")" \
		"$(curl -s "http://$NG/api/v1/notifications/metrics" | sed -n "s/^$1 //p")"
}
pub() { "$PUB" -u "$REDIS_URL" "$@"; }
# backlog USER FROM TO PAD: publish {"n":K,"pad":"x..."} for K = FROM..TO
# (PAD x's), pipelined; the ids go to $T/ids.USER
backlog() {
	seq "$2" "$3" | awk -v pad="$4" 'BEGIN { p = sprintf("%*s", pad, ""); gsub(/ /, "x", p) }
		{ printf "{\"n\":%d,\"pad\":\"%s\"}\n", $1, p }' | pub "$1" - >>"$T/ids.$1"
}
# wait_line FILE PATTERN PID: until a line of FILE matches (0), or PID
# exits or TMO passes (1)
wait_line() {
	local i=0
	while [ $i -lt $((TMO * 10)) ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || { grep -q "$2" "$1" 2>/dev/null; return; }
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
ws_conns() {
	curl -s --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/metrics |
		sed -n 's/^herald_ws_connections \([0-9]*\).*/\1/p'
}
fcgi_streams() { health_num "http://$NG/api/v1/notifications/health" streams; }
# first_kept USER: n of the oldest entry the history still keeps
first_kept() {
	rcli XRANGE "notifications:$1:history" - + COUNT 1 | grep -o '"n":[0-9]*' | head -1 | cut -d: -f2
}

# resume_case DESC USER A N TRANSPORT CURSOR [CHECKER ARGS...]: resume
# after CURSOR; n = A..N must arrive, then a live N+1 published once the
# checker has seen N.
resume_case() {
	local desc=$1 user=$2 a=$3 n=$4 tr=$5 cur=$6 out=$T/chk.$2 strict='' pid rc
	shift 6
	case $tr in poll | lpoll) strict=-M ;; esac
	"$CHK" -T "$tr" -s "$cur" -a "$a" -b $((n + 1)) -m "$n" -u "$user" $strict -t $TMO "$@" \
		"$NG" "$(path_for "$tr" "$user")" >"$out" 2>&1 &
	pid=$!
	if wait_line "$out" "^reached $n " $pid; then
		pub "$user" "{\"n\":$((n + 1)),\"live\":true}" >/dev/null
	fi
	wait $pid
	rc=$?
	ok $rc "$desc: $(tail -1 "$out")"
	[ $rc = 0 ] || why_failed "$user" "$rc" "$out"
}
# why_failed USER RC CHECKER-OUTPUT: the diagnostics of a failed case
why_failed() {
	diag "the checker exited with $2 (over 128: killed by signal $(($2 - 128)))"
	sed -n '1,5p' "$3" | grep -v '^ok\|^FAIL' | sed 's/^/# /'
	grep -h "user $1\|for $1 " "$T/run/ws.log" "$T/run/fcgi.log" | grep -v debug | tail -5 | sed 's/^/# log: /'
	grep -h "for $1 ended\|user $1 disconnected" "$T/run/ws.log" "$T/run/fcgi.log" | tail -3 | sed 's/^/# log: /'
}

# --- 1. a backlog over send_queue_max ------------------------------------------
if want 1; then
for tr in $TRANSPORTS; do
	u=big$tr
	mint $u
	cur=$(pub $u '{"n":0}')
	backlog $u 1 "$BIG" 300
	resume_case "1. $tr: resume after $BIG x ~400 B, then live" $u 1 "$BIG" $tr "$cur"
done

fi
section_done
# --- 2. a backlog over one history page ----------------------------------------
if want 2; then
for tr in $TRANSPORTS; do
	u=many$tr
	mint $u
	cur=$(pub $u '{"n":0}')
	backlog $u 1 "$MANY" 8
	resume_case "2. $tr: resume after $MANY small ones (history_max 10000), then live" \
		$u 1 "$MANY" $tr "$cur"
done

fi
section_done
# --- 3. publishing during the replay -------------------------------------------
# The five transports at once.  Each checker reads slowly (1 ms per
# notification, 16 KiB receive buffer) through a backlog of MANY x ~1 KiB,
# more than nginx and the sockets buffer, so the servers' replay (not only
# the client's reading) lasts while 300 more of ~4 KiB each are published
# at about 100/s: more than send_queue_max arrives while the replay holds
# live messages back (the diagnostic shows how many were dropped and read
# again from the history).
if want 3; then
declare -A P3
declare -A C3
for tr in $TRANSPORTS; do
	u=during$tr
	mint $u
	C3[$tr]=$(pub $u '{"n":0}')
	backlog $u 1 "$MANY" 1000
done
for tr in $TRANSPORTS; do
	u=during$tr
	"$CHK" -T $tr -s "${C3[$tr]}" -a 1 -b $((MANY + LIVE)) -u $u -d 1000 -r 16384 -t $TMO \
		"$NG" "$(path_for $tr $u)" >"$T/chk.$u" 2>&1 &
	P3[$tr]=$!
done
for k in $(seq 0 $((LIVE / 10 - 1))); do
	pp=
	for tr in $TRANSPORTS; do
		backlog during$tr $((MANY + k * 10 + 1)) $((MANY + k * 10 + 10)) 4000 &
		pp="$pp $!"
	done
	sleep 0.1
	wait $pp
done
for tr in $TRANSPORTS; do
	wait "${P3[$tr]}"
	rc=$?
	ok $rc "3. $tr: $MANY x ~1 KiB replayed while $LIVE more are published: $(tail -1 "$T/chk.during$tr")"
	[ $rc = 0 ] || why_failed during$tr $rc "$T/chk.during$tr"
done
diag "replay pages read $(metric herald_replay_pages_total), live messages held then dropped" \
	"during a replay $(metric herald_held_dropped_total) (herald-ws/herald-fcgi)"
fi
section_done
# --- 4. a cursor the history no longer keeps ------------------------------------
if want 4; then
for tr in $TRANSPORTS; do
	u=trim$tr
	mint $u
	cur=$(HERALD_HISTORY_MAX=100 pub $u '{"n":0}')
	HERALD_HISTORY_MAX=100 backlog $u 1 1000 8
	first=$(first_kept $u)
	resume_case "4. $tr: cursor trimmed away (kept $first..1000): reset, the kept ones, live" \
		$u "${first:-1}" 1000 $tr "$cur" -R
done

fi
section_done
# --- 5. a client that stops reading in the middle of a replay ---------------------
# stall_case ws|sse: a raw client sends its request and never reads, with a
# STALL x 4 KiB backlog (more than nginx and the sockets buffer); another
# user's live notifications are timed meanwhile (diagnostic only).
if want 5; then
mkfifo "$T/hold"
stall_case() {
	local tr=$1 pid name stalled watcher u=stall$1 w=watch$1 cur i peak=0 r before after gone=1 t_stall
	if [ "$tr" = ws ]; then pid=$STACK_WS_PID name=herald-ws; else pid=$STACK_FCGI_PID name=herald-fcgi; fi
	mint $u
	mint $w
	cur=$(pub $u '{"n":0}')
	backlog $u 1 "$STALL" 4000
	# the watcher: another user, live
	"$CHK" -T $tr -a 1 -b 5 -u $w -L -t $TMO "$NG" "$(path_for $tr $w)" >"$T/watch.$tr" 2>&1 &
	watcher=$!
	sleep 0.5
	before=$(rss_kb "$pid")
	"$CHK" -S -T $tr -s "$cur" -t $TMO "$NG" "$(path_for $tr $u)" <"$T/hold" >"$T/stall.$tr" 2>&1 &
	stalled=$!
	exec 7>"$T/hold"
	HOLD_FD=1
	wait_line "$T/stall.$tr" '^stalled' $stalled
	t_stall=$(date +%s%N)
	# five live notifications to the watcher while the replay is stuck
	for i in 1 2 3 4 5; do
		sleep 0.5
		pub $w "{\"n\":$i}" >/dev/null
		r=$(rss_kb "$pid")
		[ "$r" -gt "$peak" ] && peak=$r
	done
	wait $watcher
	ok $? "5. $tr: another user's live notifications arrive during the stall: $(tail -1 "$T/watch.$tr")"
	diag "$tr: publish-to-receive of the other user's notifications during the stall (ms):" \
		$(sed -n 's/^lag \([0-9-]*\) .*/\1/p' "$T/watch.$tr")
	# until the server lets go of the stalled client
	for i in $(seq $((TMO * 2))); do
		if [ "$tr" = ws ]; then [ "$(ws_conns)" = 0 ] && gone=0; else [ "$(fcgi_streams)" = 0 ] && gone=0; fi
		[ $gone = 0 ] && diag "$tr: the stalled client was let go $((($(date +%s%N) - t_stall) / 1000000)) ms after its request" && break
		r=$(rss_kb "$pid")
		[ "$r" -gt "$peak" ] && peak=$r
		sleep 0.5
	done
	if [ "$tr" = ws ]; then
		ok $gone "5. ws: the client that stopped reading mid-replay ($STALL x 4 KiB) is dropped"
		grep -q "user $u: no write progress" "$T/run/ws.log"
		ok $? "5. ws: ... by the write timeout (ws_pong_timeout), not as a slow consumer"
		grep "user $u" "$T/run/ws.log" | tail -2 | sed 's/^/# ws.log: /'
	else
		ok $gone "5. sse: the client that stopped reading mid-replay ($STALL x 4 KiB) is dropped"
		# the loop's write timeout (no progress for 10 s), not the queue bound
		grep -q "SSE for $u: the client read nothing for" "$T/run/fcgi.log"
		ok $? "5. sse: ... by the write timeout (10 s without progress), not as a slow consumer"
		grep "SSE for $u" "$T/run/fcgi.log" | tail -1 | sed 's/^/# fcgi.log: /'
	fi
	exec 7>&-
	HOLD_FD=
	wait $stalled
	sed 's/^/# client: /' "$T/stall.$tr"
	for i in 1 2 3 4 5; do
		sleep 1
		after=$(rss_kb "$pid")
		[ $((after - before)) -lt 4096 ] && break
	done
	diag "$name RSS before the stall ${before} KiB, peak ${peak} KiB, ${i} s after the drop ${after} KiB"
	[ $((after - before)) -lt 4096 ]
	ok_mem $? "5. $tr: $name's memory comes back after the drop (within 4 MiB)"
}
mem_checks_for "$B/herald-ws"
stall_case ws
mem_checks_for "$B/herald-fcgi"
stall_case sse

fi
section_done
# --- 6. memory after many resumes -------------------------------------------------
# CLIENTS clients, ten per user, each resume a MANY-entry backlog at once.
if want 6; then
: >"$T/mem.paths.ws"
: >"$T/mem.paths.sse"
for j in $(seq 10); do
	u=mem$j
	mint $u
	cur=$(pub $u '{"n":0}')
	backlog $u 1 "$MANY" 8
	for k in $(seq $((CLIENTS / 10))); do
		echo "$(path_for ws $u) $cur" >>"$T/mem.paths.ws"
		echo "$(path_for sse $u) $cur" >>"$T/mem.paths.sse"
	done
done
# mem_case ws|sse PID NAME
mem_case() {
	local tr=$1 pid=$2 name=$3 r0 r1 r2 i within=1
	sleep 1
	r0=$(rss_kb "$pid")
	"$CHK" -T $tr -f "$T/mem.paths.$tr" -a 1 -b "$MANY" -t $TMO "$NG" >"$T/mem.$tr" 2>&1
	ok $? "6. $tr: $(wc -l <"$T/mem.paths.$tr") clients each resume $MANY: $(tail -1 "$T/mem.$tr")"
	r1=$(rss_kb "$pid")
	for i in 1 2 3 4 5; do
		sleep 1
		r2=$(rss_kb "$pid")
		[ $((r2 * 10)) -le $((r0 * 11)) ] && within=0 && break
	done
	diag "$name RSS before ${r0} KiB, right after ${r1} KiB, after ${i} s ${r2} KiB"
	ok_mem $within "6. $tr: $name's RSS returns to within 10% of before"
}
mem_checks_for "$B/herald-ws"
mem_case ws "$STACK_WS_PID" herald-ws
mem_checks_for "$B/herald-fcgi"
mem_case sse "$STACK_FCGI_PID" herald-fcgi

fi
section_done
# --- 7. odd page boundaries -----------------------------------------------------
# Both servers again with replay_page = 7 (pages that divide nothing here):
# test 1 once more, and a trimmed cursor.
if want 7; then
stack_stop_ws
stack_stop_fcgi
export HERALD_REPLAY_PAGE=7
stack_start_ws && stack_start_fcgi
ok $? "herald-ws and herald-fcgi start again with replay_page = 7"
for tr in $TRANSPORTS; do
	u=odd$tr
	mint $u
	cur=$(pub $u '{"n":0}')
	backlog $u 1 "$BIG" 300
	resume_case "7. $tr: replay_page 7: resume after $BIG x ~400 B, then live" $u 1 "$BIG" $tr "$cur"
done
for tr in ws sse; do
	u=oddtrim$tr
	mint $u
	cur=$(HERALD_HISTORY_MAX=100 pub $u '{"n":0}')
	HERALD_HISTORY_MAX=100 backlog $u 1 1000 8
	first=$(first_kept $u)
	resume_case "7. $tr: replay_page 7: cursor trimmed away (kept $first..1000)" \
		$u "${first:-1}" 1000 $tr "$cur" -R
done
diag "replay pages read $(metric herald_replay_pages_total) (herald-ws/herald-fcgi, since the restart)"
unset HERALD_REPLAY_PAGE
fi
section_done
# --- 8. the Redis link drops during a replay ----------------------------------------
# As test 3 (ws, sse, lpoll at once; the servers still at replay_page 7),
# and three times while the live ones are published Redis drops every
# connection of the servers (CLIENT KILL: the subscriber, the history
# readers, the polls' connections); they reconnect and catch up.  The
# clients come back as herald.js and EventSource do when a server ends a
# stream (-c; a reader this slow can fall behind the live ones by more
# than send_queue_max and be let go): nothing may be lost or doubled.
if want 8; then
declare -A P8
declare -A C8
for tr in ws sse lpoll; do
	u=link$tr
	mint $u
	C8[$tr]=$(pub $u '{"n":0}')
	backlog $u 1 "$MANY" 1000
done
for tr in ws sse lpoll; do
	u=link$tr
	"$CHK" -T $tr -s "${C8[$tr]}" -a 1 -b $((MANY + LIVE)) -u $u -d 1000 -r 16384 -t $TMO -c \
		"$NG" "$(path_for $tr $u)" >"$T/chk.$u" 2>&1 &
	P8[$tr]=$!
done
for k in $(seq 0 $((LIVE / 10 - 1))); do
	pp=
	for tr in ws sse lpoll; do
		backlog link$tr $((MANY + k * 10 + 1)) $((MANY + k * 10 + 10)) 4000 &
		pp="$pp $!"
	done
	sleep 0.1
	wait $pp
	case $k in 5 | 15 | 25) # no publisher is connected now
		rcli CLIENT KILL TYPE pubsub >/dev/null
		rcli CLIENT KILL TYPE normal >/dev/null
		;;
	esac
done
for tr in ws sse lpoll; do
	wait "${P8[$tr]}"
	rc=$?
	ok $rc "8. $tr: the Redis link drops 3 times during the replay: $(tail -1 "$T/chk.link$tr")"
	[ $rc = 0 ] || why_failed link$tr $rc "$T/chk.link$tr"
done
diag "Redis connections lost: herald-ws $(grep -c 'connection lost' "$T/run/ws.log")," \
	"herald-fcgi $(grep -c 'connection lost' "$T/run/fcgi.log")"
fi
section_done
kill -0 "$STACK_WS_PID" && kill -0 "$STACK_FCGI_PID"
ok $? "herald-ws and herald-fcgi are still running"
cat "$T/run/ws.log" "$T/run/fcgi.log" | grep -q 'segfault\|Sanitizer\|runtime error'
ok $((!$?)) "no sanitizer report in the servers' logs"
done_testing
