#!/usr/bin/env bash
# Redis Sentinel (issue 14): failover under publishing, nothing acknowledged
# lost.  TAP on stdout.
#
# A master and two replicas (redis-server --replicaof), three sentinels
# (quorum 2, down-after 2 s: at 1 s a sentinel that has just switched may
# take the new master for down, see bench/chaos), and herald-ws + herald-fcgi behind
# nginx/herald.conf (scripts/stack.sh) configured with the sentinels only:
# their redis_url points at a port where nothing listens, so every address
# they use comes from the sentinels.  The masters refuse writes without a
# replica (min-replicas-to-write 1, as docs/operations.md advises), and
# publishes wait for one replica (publish_wait_replicas 1).
#
# A WebSocket and an SSE client of user alice stay connected throughout,
# while a publisher sends {"n":K} for K = 1, 2, ... (odd K with
# herald-publish, even K with POST /publish through nginx), each with an
# idempotency key, retried until acknowledged.  Meanwhile:
#   1. SENTINEL FAILOVER mymaster (manual failover)
#   2. kill -9 of the new master (automatic failover)
# Then: every acknowledged id arrived exactly once and in order on both
# transports (ids not acknowledged may arrive too: printed, not failed),
# the new masters are former replicas, /health/ready was 503 while the
# killed master was down and is 200 after, and herald_redis_failovers_total
# counts the switches.  No timed assertion: bounded waits only.
#
# Before that: herald-ws and herald-fcgi start while no sentinel runs yet
# (they start, answer /health/ready 503, retry with their backoff without
# spinning, and connect once the sentinels come up; herald-publish fails with
# a clear error), and herald-doctor checks the sentinels: healthy, a master
# without min-replicas-to-write, one sentinel down.
# KEEP_TEST_DIR=1 keeps the logs.

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
PUB=$B/herald-publish
WSC=$B/tests/integration/ws_client
lib_need "$B/herald-ws" "$B/herald-fcgi" "$PUB" "$WSC"
PATH=$PATH:/usr/sbin
lib_need "$nginx_bin" openssl curl
lib_clean_env
lib_init
chmod 755 "$T"

NODE_PIDS=()
SENT_PIDS=()
PUB_PID=
MON_PID=
WS_PID=
SSE_PID=
_sentinel_cleanup() {
	local p
	touch "$T/stop" 2>/dev/null
	for p in $PUB_PID $MON_PID $WS_PID $SSE_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	stack_stop
	for p in "${SENT_PIDS[@]}" "${NODE_PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	_lib_cleanup
}
trap _sentinel_cleanup EXIT

cli() { "$REDIS_CLI" -h 127.0.0.1 -p "$@"; }
# until_true SECONDS CMD...: run CMD every 0.1 s until it succeeds (0) or
# SECONDS pass (1)
until_true() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

# --- Redis: a master and two replicas -------------------------------------------
declare -A NODE_PID
start_node() { # NAME PORT [ARGS...]
	local name=$1 port=$2
	shift 2
	mkdir -p "$T/$name"
	"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$T/$name" --save '' \
		--appendonly no --daemonize no --loglevel notice --logfile "$T/$name/log" \
		--min-replicas-to-write 1 --min-replicas-max-lag 10 --repl-diskless-sync-delay 0 "$@" &
	NODE_PID[$port]=$!
	NODE_PIDS+=($!)
	until_true 10 pong "$port"
}
pong() { [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; }
PM=$(port_pick)
PR1=$(port_pick)
PR2=$(port_pick)
start_node m "$PM" && start_node r1 "$PR1" --replicaof 127.0.0.1 "$PM" &&
	start_node r2 "$PR2" --replicaof 127.0.0.1 "$PM" || skip_all "redis-server would not start"
replicas_up() { cli "$1" INFO replication | grep -q "^connected_slaves:$2"; }
until_true 20 replicas_up "$PM" 2
ok $? "a master ($PM) and two replicas ($PR1, $PR2) in sync"

# --- three sentinels, configured (started below) ------------------------------------
SPORTS=()
for i in 1 2 3; do
	p=$(port_pick)
	mkdir -p "$T/s$i"
	cat >"$T/s$i/sentinel.conf" <<EOF
port $p
bind 127.0.0.1
protected-mode no
daemonize no
dir $T/s$i
logfile $T/s$i/log
sentinel monitor mymaster 127.0.0.1 $PM 2
sentinel down-after-milliseconds mymaster 2000
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 2
EOF
	SPORTS+=("$p")
done
declare -A SENT_PID
# start_sentinel I: sentinel I (1..3) from its configuration (which it
# rewrites with what it learns, so a restart knows the others)
start_sentinel() {
	"$REDIS_SERVER" "$T/s$1/sentinel.conf" --sentinel &
	SENT_PIDS+=($!)
	SENT_PID[$1]=$!
}
sentinels_ready() {
	local p
	for p in "${SPORTS[@]}"; do
		[ "$(cli "$p" SENTINEL sentinels mymaster 2>/dev/null | grep -c '^name$')" = 2 ] || return 1
		[ "$(cli "$p" SENTINEL replicas mymaster 2>/dev/null | grep -c '^name$')" = 2 ] || return 1
	done
}
# master_port: the master's port all three sentinels agree on, or nothing
master_port() {
	local p a=
	for p in "${SPORTS[@]}"; do
		b=$(cli "$p" SENTINEL get-master-addr-by-name mymaster 2>/dev/null | sed -n 2p)
		[ -n "$a" ] && [ "$a" != "$b" ] && return
		a=$b
	done
	echo "$a"
}
master_is() { [ "$(master_port)" = "$1" ]; }
master_not() { local m; m=$(master_port); [ -n "$m" ] && [ "$m" != "$1" ]; }

# --- Herald, configured through the sentinels only --------------------------------
SECRET=test-secret-$$
PKEY=pubkey-$$-0123456789abcdef
SLIST="127.0.0.1:${SPORTS[0]}, 127.0.0.1:${SPORTS[1]},127.0.0.1:${SPORTS[2]}"
DEAD=$(port_pick) # redis_url's host and port are not used: nothing listens there
export HERALD_REDIS_URL=redis://127.0.0.1:$DEAD/0 HERALD_REDIS_SENTINELS=$SLIST
export HERALD_REDIS_SENTINEL_MASTER=mymaster HERALD_PUBLISH_WAIT_REPLICAS=1
export HERALD_PUBLISH_WAIT_TIMEOUT=1000 HERALD_JWT_SECRET=$SECRET HERALD_PUBLISH_KEY=$PKEY
export HERALD_LOG_LEVEL=info

out=$("$B/herald-ws" --check-config 2>&1)
case $out in *"master mymaster through 3 sentinels"*"host and port are not used"*) r=0 ;; *) r=1 ;; esac
ok $r "herald-ws --check-config names the sentinels and that redis_url's host is unused ($out)"

# --- every sentinel down at start ---------------------------------------------------
HTTP_PORT=$(port_pick)
stack_start "$T/run" "$B" "$HTTP_PORT" full 2>"$T/stack.err"
ok $? "herald-ws, herald-fcgi and nginx start while no sentinel runs"
NG=127.0.0.1:$HTTP_PORT
ws_ready() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/health/ready; }
fcgi_ready() { curl -s -o /dev/null -w '%{http_code}' "http://$NG/api/v1/notifications/health/ready"; }
both_ready() { [ "$(ws_ready)" = 200 ] && [ "$(fcgi_ready)" = 200 ]; }
# cpu_ticks PID: its user + system time so far, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
attempts() { grep -c 'connect failed: no sentinel answered for master mymaster' "$T/run/$1.log"; }
ws0=$(cpu_ticks "$STACK_WS_PID") fcgi0=$(cpu_ticks "$STACK_FCGI_PID")
wa0=$(attempts ws) fa0=$(attempts fcgi)
codes=
for _ in 1 2 3 4 5 6 7 8; do
	codes="$codes $(ws_ready)/$(fcgi_ready)"
	sleep 0.5
done
ws1=$(cpu_ticks "$STACK_WS_PID") fcgi1=$(cpu_ticks "$STACK_FCGI_PID")
wa1=$(attempts ws) fa1=$(attempts fcgi)
[ "$(echo $codes | tr ' ' '\n' | sort -u)" = 503/503 ]
ok $? "/health/ready is 503 on both while no sentinel answers ($codes)"
kill -0 "$STACK_WS_PID" && kill -0 "$STACK_FCGI_PID"
ok $? "herald-ws and herald-fcgi keep running"
grep -q 'redis master mymaster (via sentinels): connect failed: no sentinel answered for master mymaster (last: sentinel 127.0.0.1:[0-9]*: .*), retrying in' "$T/run/ws.log"
ok $? "herald-ws logs why it cannot connect and when it retries ($(grep -m1 'no sentinel answered' "$T/run/ws.log"))"
grep -q 'no sentinel answered for master mymaster' "$T/run/fcgi.log"
ok $? "herald-fcgi logs it too"
# A backoff from 100 ms doubling, full jitter: a handful of attempts in 4 s
# (a loop without one makes thousands).
[ $((wa1 - wa0)) -le 30 ] && [ $((fa1 - fa0)) -le 30 ]
ok $? "they retry with a backoff: $((wa1 - wa0)) and $((fa1 - fa0)) attempts in 4 s"
tck=$(getconf CLK_TCK)
[ $((ws1 - ws0)) -lt $((tck * 2)) ] && [ $((fcgi1 - fcgi0)) -lt $((tck * 2)) ]
ok $? "... without spinning: $((ws1 - ws0)) and $((fcgi1 - fcgi0)) ticks of CPU in 4 s ($tck a second)"
"$PUB" alice '{"n":0}' >"$T/pub0.out" 2>"$T/pub0.err"
is $? 3 "herald-publish exits 3 while no sentinel answers"
grep -q "no sentinel gave a reachable master mymaster: .*127.0.0.1:${SPORTS[2]}.*refused" "$T/pub0.err"
ok $? "... naming the sentinels ($(head -c 300 "$T/pub0.err"))"

for i in 1 2 3; do start_sentinel "$i"; done
until_true 30 sentinels_ready
ok $? "three sentinels see each other and both replicas"
until_true 30 both_ready
ok $? "/health/ready is 200 on herald-ws and herald-fcgi once the sentinels are up"
grep -q "sentinel 127.0.0.1:[0-9]* says master mymaster is 127.0.0.1:$PM" "$T/run/ws.log"
ok $? "herald-ws logs the sentinel's answer (master 127.0.0.1:$PM)"
# --- herald-doctor: the sentinels and their master -----------------------------------
DOC=$B/herald-doctor
# doctor OUT [ARGS...]: the doctor against this stack; output in $T/OUT
doctor() {
	local out=$1
	shift
	"$DOC" --config /nonexistent --url "http://$NG" --ws "unix:$T/run/ws.sock" \
		--fcgi "unix:$T/run/fcgi.sock" --nginx-conf "$T/run/nginx/nginx.conf" \
		--nginx-error-log "$T/run/nginx/logs/error.log" "$@" >"$T/$out" 2>&1
}
show() { sed 's/^/# /' "$T/$1"; }
has() { # OUT REGEX DESCRIPTION
	if grep -Eq -- "$2" "$T/$1"; then ok 0 "$3"; else ok 1 "$3"; show "$1"; fi
}
if [ -x "$DOC" ]; then
	doctor doc-healthy
	r=$?
	is "$r" 0 "herald-doctor: exit 0 on the healthy sentinels"
	[ "$r" = 0 ] || show doc-healthy
	has doc-healthy "^PASS sentinel +all 3 sentinels answer PING" "doctor: every sentinel answers"
	has doc-healthy "^PASS sentinel +the sentinels agree: master mymaster is 127.0.0.1:$PM" "doctor: the sentinels agree on the master"
	has doc-healthy "^PASS sentinel +master 127.0.0.1:$PM answers, ROLE master" "doctor: the master answers ROLE master"
	has doc-healthy "^PASS sentinel +quorum: OK" "doctor: SENTINEL ckquorum"
	has doc-healthy "^PASS sentinel +the sentinels see 2 replica" "doctor: the replicas the sentinels see, in sync"
	has doc-healthy "^PASS sentinel +publish_wait_replicas 1: master 127.0.0.1:$PM has 2 connected" "doctor: enough replicas for publish_wait_replicas"
	has doc-healthy "^PASS sentinel +min-replicas-to-write is set" "doctor: min-replicas-to-write on every server"
	has doc-healthy "^PASS redis +PING answered by Redis .* at redis://127.0.0.1:$PM/0" "doctor: the Redis checks go to the master"
	has doc-healthy "^PASS websocket .*notification published" "doctor: a notification arrives through nginx"
	grep -Eq '^(FAIL|WARN)' "$T/doc-healthy"
	is $? 1 "doctor: no FAIL or WARN line"

	doctor doc-json --json --no-publish
	r=$?
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["failed"] == 0 and any(c["check"] == "sentinel" and c["status"] == "PASS" for c in d["checks"])' "$T/doc-json"
		ok $? "doctor --json: one JSON document with the sentinel checks (exit $r)"
	fi

	cli "$PM" CONFIG SET min-replicas-to-write 0 >/dev/null
	doctor doc-minrep --no-publish
	is $? 0 "doctor: warnings only without min-replicas-to-write"
	has doc-minrep "^WARN sentinel +publish_wait_replicas 1 but min-replicas-to-write is 0 on: 127.0.0.1:$PM\$" "doctor: WARN names the master without min-replicas-to-write"
	has doc-minrep "fix: +min-replicas-to-write 1 and min-replicas-max-lag 10" "doctor: ... and gives the fix"
	cli "$PM" CONFIG SET min-replicas-to-write 1 >/dev/null

	cli "$PR1" CONFIG SET repl-diskless-sync-delay 5 >/dev/null
	doctor doc-delay --no-publish
	is $? 0 "doctor: warnings only with repl-diskless-sync-delay 5 on a replica"
	has doc-delay "^WARN sentinel +publish_wait_replicas 1 and repl-diskless-sync-delay above 0 on: 127.0.0.1:$PR1\\(5 s\\)\$" \
		"doctor: WARN names the replica whose full resync would wait 5 s"
	has doc-delay "fix: +repl-diskless-sync-delay 0" "doctor: ... and gives the fix"
	cli "$PR1" CONFIG SET repl-diskless-sync-delay 0 >/dev/null

	{ kill -9 "${SENT_PID[3]}"; wait "${SENT_PID[3]}"; } 2>/dev/null
	doctor doc-sdown --no-publish
	is $? 0 "doctor: warnings only with one sentinel of three down"
	has doc-sdown "^WARN sentinel +sentinel 127.0.0.1:${SPORTS[2]}: " "doctor: WARN names the sentinel that is down"
	has doc-sdown "fix: +start it \\(systemctl start redis-sentinel" "doctor: ... and how to bring it back"
	has doc-sdown "^PASS sentinel +quorum: OK" "doctor: the quorum is still reached"
	start_sentinel 3
	until_true 30 sentinels_ready
	ok $? "the third sentinel is back"
fi

metric() { # NAME: its value on herald-ws / herald-fcgi
	printf '%s/%s' \
		"$(curl -s --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/metrics | sed -n "s/^$1 //p")" \
		"$(curl -s "http://$NG/api/v1/notifications/metrics" | sed -n "s/^$1 //p")"
}

# --- clients and the publisher ---------------------------------------------------
TOK=$(herald_token "$SECRET" alice 3600)
"$WSC" -t 300 "$NG" "/api/v1/ws/notifications?token=$TOK" >"$T/ws.out" 2>&1 &
WS_PID=$!
curl -sN -m 300 "http://$NG/api/v1/sse/notifications?token=$TOK" >"$T/sse.out" 2>&1 &
SSE_PID=$!
subscribed() { [ "$(cli "$(master_port)" PUBSUB NUMSUB notifications:alice | sed -n 2p)" -ge 2 ] 2>/dev/null; }
until_true 20 subscribed
ok $? "a WebSocket and an SSE client of alice are subscribed"

# publish_one N: 0 with "N ID" appended to $T/acked once acknowledged
publish_one() {
	local n=$1 id body
	if [ $((n % 2)) -eq 1 ]; then
		id=$("$PUB" -k "seq-$n" alice "{\"n\":$n}" 2>>"$T/pub.err") || return 1
	else
		body=$(curl -s -m 10 -H "Authorization: Bearer $PKEY" -H "Idempotency-Key: seq-$n" \
			--data-binary "{\"n\":$n}" "http://$NG/api/v1/notifications/publish?user=alice")
		id=$(printf '%s' "$body" | sed -n 's/^{"id":"\([0-9]*-[0-9]*\)".*/\1/p')
		[ -n "$id" ] || { echo "POST $n: $body" >>"$T/pub.err"; return 1; }
	fi
	echo "$n $id" >>"$T/acked"
}
publisher() {
	local n=1 tries
	while [ ! -e "$T/stop" ]; do
		tries=0
		until publish_one "$n"; do
			tries=$((tries + 1))
			[ "$tries" -ge 300 ] && { echo "gave up on $n" >>"$T/pub.err"; return 1; }
			sleep 0.1
		done
		n=$((n + 1))
		sleep 0.05
	done
}
: >"$T/acked"
publisher &
PUB_PID=$!
acked() { wc -l <"$T/acked"; }
acked_past() { [ "$(acked)" -ge "$1" ]; }
# ready monitor: one line "ws fcgi" of status codes every 0.1 s
monitor() { while [ ! -e "$T/stop" ]; do echo "$(ws_ready) $(fcgi_ready)"; sleep 0.1; done; }
monitor >"$T/ready.log" &
MON_PID=$!

until_true 30 acked_past 10
ok $? "publishing through the sentinels: 10 acknowledged"

# --- 1. manual failover --------------------------------------------------------
before=$(acked)
out=$(cli "${SPORTS[0]}" SENTINEL FAILOVER mymaster)
is "$out" OK "SENTINEL FAILOVER mymaster"
until_true 30 master_not "$PM"
ok $? "the sentinels agree on a new master"
M1=$(master_port)
[ "$M1" = "$PR1" ] || [ "$M1" = "$PR2" ]
ok $? "the new master ($M1) was a replica"
until_true 30 acked_past $((before + 20))
ok $? "publishing goes on after the failover ($(acked) acknowledged)"
until_true 20 both_ready
ok $? "/health/ready is 200 again on both"
switched() { grep -q "+switch-master: master mymaster is now 127.0.0.1:$M1" "$T/run/$1.log"; }
until_true 10 switched ws && until_true 10 switched fcgi
ok $? "herald-ws and herald-fcgi followed +switch-master to $M1"

# The old master becomes a replica of the new one (Sentinel would do it
# itself some 10 s later); then it can stand in for the next failover.
cli "$PM" REPLICAOF 127.0.0.1 "$M1" >/dev/null
until_true 20 replicas_up "$M1" 2
ok $? "the old master replicates from $M1"

# --- 2. kill -9 of the master: automatic failover ---------------------------------
before=$(acked)
mark=$(wc -l <"$T/ready.log")
{ kill -9 "${NODE_PID[$M1]}"; wait "${NODE_PID[$M1]}"; } 2>/dev/null
until_true 40 master_not "$M1"
ok $? "the sentinels fail over automatically after kill -9 of $M1"
M2=$(master_port)
[ "$M2" != "$M1" ] && { [ "$M2" = "$PM" ] || [ "$M2" = "$PR1" ] || [ "$M2" = "$PR2" ]; }
ok $? "the new master ($M2) was a replica"
until_true 30 acked_past $((before + 20))
ok $? "publishing goes on after the automatic failover ($(acked) acknowledged)"
until_true 20 both_ready
ok $? "/health/ready is 200 again on both"
tail -n +"$mark" "$T/ready.log" | grep -q '^503 503'
ok $? "/health/ready was 503 on both while the master was down"
ws_down=$(tail -n +"$mark" "$T/ready.log" | grep -c '^503')
diag "ready probes answered 503 by herald-ws during the automatic failover: $ws_down (every 0.1 s)"

# --- the end: everything acknowledged, once, in order -------------------------------
touch "$T/stop"
wait "$PUB_PID"
ok $? "the publisher never gave up"
PUB_PID=
kill "$MON_PID" 2>/dev/null
wait "$MON_PID" 2>/dev/null
MON_PID=
last=$(tail -1 "$T/acked" | cut -d' ' -f2)
got_last() { grep -q "$last" "$T/ws.out" && grep -q "^id: $last" "$T/sse.out"; }
until_true 30 got_last
ok $? "the last acknowledged id ($last) reached both clients"
kill "$WS_PID" "$SSE_PID" 2>/dev/null
wait "$WS_PID" "$SSE_PID" 2>/dev/null
WS_PID= SSE_PID=

sed -n 's/^text {"id":"\([0-9]*-[0-9]*\)".*/\1/p' "$T/ws.out" >"$T/ws.ids"
sed -n 's/^id: \([0-9]*-[0-9]*\).*/\1/p' "$T/sse.out" >"$T/sse.ids"
# check IDS: "missing=M dup=D ooo=O extra=E" against $T/acked
check() {
	awk 'NR == FNR { want[++n] = $2; pos[$2] = n; next }
	     !($1 in pos) { extra++; next }
	     { seen[$1]++; if (seen[$1] > 1) dup++; else if (pos[$1] < last) ooo++; else last = pos[$1] }
	     END { for (i = 1; i <= n; i++) if (!(want[i] in seen)) missing++
		   printf "missing=%d dup=%d ooo=%d extra=%d\n", missing, dup, ooo, extra }' "$T/acked" "$1"
}
N=$(acked)
for t in ws sse; do
	res=$(check "$T/$t.ids")
	case $res in "missing=0 dup=0 ooo=0 "*) r=0 ;; *) r=1 ;; esac
	ok $r "$t: all $N acknowledged notifications arrived once, in order ($res)"
done
f=$(metric herald_redis_failovers_total)
case $f in [2-9]/[2-9]) r=0 ;; *) r=1 ;; esac
ok $r "herald_redis_failovers_total counts both switches on herald-ws/herald-fcgi ($f)"

# --- a publish too few replicas acknowledge: reported, stored, safe to retry ------
# min-replicas-to-write 1: the new master takes writes once the sentinels
# have pointed the other replica at it (slow on a loaded machine).
until_true 60 replicas_up "$(master_port)" 1
ok $? "the new master has a replica again"
out=$(HERALD_PUBLISH_WAIT_REPLICAS=3 HERALD_PUBLISH_WAIT_TIMEOUT=100 "$PUB" -k bob-1 bob '{"n":1}' 2>"$T/bob.err")
r=$?
is "$r" 4 "herald-publish exits 4 when WAIT 3 sees fewer replicas"
grep -q 'not acknowledged: 1 of 3 replicas had it after 100 ms' "$T/bob.err"
ok $? "... and says so ($(cat "$T/bob.err"))"
again=$("$PUB" -k bob-1 bob '{"n":1}' 2>&1)
is "$again" "$out" "a retry with the same key (WAIT 1) stores nothing new: the same id"
stack_stop_fcgi
HERALD_PUBLISH_WAIT_REPLICAS=3 HERALD_PUBLISH_WAIT_TIMEOUT=100 stack_start_fcgi
body=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $PKEY" -H "Idempotency-Key: bob-2" \
	--data-binary '{"n":2}' "http://$NG/api/v1/notifications/publish?user=bob")
case $body in '{"error":"not_replicated",'*'"id":"'*'"} 503') r=0 ;; *) r=1 ;; esac
ok $r "POST publish answers 503 not_replicated with the id ($body)"
n=$(cli "$(master_port)" XLEN notifications:bob:history)
is "$n" 2 "both were stored on the master"
f=$(curl -s "http://$NG/api/v1/notifications/metrics" | sed -n 's/^herald_fcgi_publish_unacknowledged_total //p')
is "$f" 1 "herald_fcgi_publish_unacknowledged_total counts it"

pa=$(grep -c 'not acknowledged' "$T/pub.err" 2>/dev/null)
pn=$(grep -c 'not_replicated' "$T/pub.err" 2>/dev/null)
diag "retries: herald-publish not acknowledged $pa, POST not_replicated $pn, other $(($(wc -l <"$T/pub.err") - pa - pn))"
if [ -n "${KEEP_TEST_DIR:-}" ]; then cp "$T/acked" "$T/acked.kept"; fi
done_testing
