#!/usr/bin/env bash
# Redis Cluster mode (issue 14): herald-ws and herald-publish with
# redis_cluster = yes against a real cluster of three masters and a replica
# each (redis-server --cluster-enabled yes, redis-cli --cluster create), on
# free ports in a scratch directory.  TAP on stdout.
#   1. the cluster forms (cluster_state:ok on every node); --check-config
#      names the cluster mode
#   2. users whose slots land on all three masters; each user's history key
#      P:{U}:history is on the master of the user's slot (herald-publish
#      went there)
#   3. herald-ws (seeded with one node) resumes every user from a cursor
#      (history read on the user's master) and delivers the live ones
#      published after (classic PUBLISH reaches the node it subscribes on)
#      and herald-fcgi (as CGI) answers each user's poll from the cursor
#   4. CLUSTER FAILOVER on the replica of one master while notifications are
#      published for its users: every id herald-publish printed is delivered
#      once, in order, and a resume afterwards (a history read that meets
#      the new master: MOVED) gets them all, as does a poll
#   5. herald-doctor against herald-ws, herald-fcgi and nginx in cluster
#      mode: every check passes once each replica has synced; then a seed
#      that is down, a master left without a replica and a replica whose
#      first sync has not finished (master_link_status down: it could not
#      fail over) are each named in a WARN
# No timed assertion; bounded waits only.  KEEP_TEST_DIR=1 keeps the logs.

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
CHK=$B/tests/integration/replay_check
PUB=$B/herald-publish
WS=$B/herald-ws
FCGI=$B/herald-fcgi
for f in "$WS" "$FCGI" "$PUB" "$CHK"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
lib_clean_env
lib_init

NODES=()  # ports: 0..2 masters at creation, 3..5 replicas
PIDS=()
WS_PID=
CHK_PIDS=()
_cluster_cleanup() {
	local p
	for p in "${CHK_PIDS[@]}" $WS_PID "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	stack_stop
	_lib_cleanup
}
trap _cluster_cleanup EXIT

cli() { local p=$1; shift; "$REDIS_CLI" -h 127.0.0.1 -p "$p" "$@"; }

# --- 1. the cluster -----------------------------------------------------------
for i in 0 1 2 3 4 5; do
	p=$(port_pick)
	mkdir -p "$T/n$i"
	# the bus port picked too: the default, port + 10000, may not exist
	"$REDIS_SERVER" --port "$p" --cluster-port "$(port_pick)" --bind 127.0.0.1 --dir "$T/n$i" \
		--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save '' \
		--appendonly no --daemonize no --loglevel warning >"$T/n$i/log" 2>&1 &
	PIDS+=($!)
	NODES+=("$p")
done
up=0
for i in 0 1 2 3 4 5; do
	for _ in $(seq 100); do
		[ "$(cli "${NODES[$i]}" PING 2>/dev/null)" = PONG ] && { up=$((up + 1)); break; }
		sleep 0.05
	done
done
[ "$up" -eq 6 ] || skip_all "6 redis-server in cluster mode would not start: $(tail -2 "$T/n0/log")"
addrs=()
for p in "${NODES[@]}"; do addrs+=("127.0.0.1:$p"); done
"$REDIS_CLI" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$T/create.log" 2>&1
ok $? "redis-cli --cluster create: 3 masters, a replica each"

# cluster_ok PORT...: every node says cluster_state:ok and knows 3 masters
cluster_ok() {
	local p
	for p in "$@"; do
		cli "$p" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' || return 1
		[ "$(cli "$p" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8' | wc -l)" = 3 ] || return 1
	done
}
st=1
for _ in $(seq 200); do cluster_ok "${NODES[@]}" && { st=0; break; }; sleep 0.1; done
ok $st "cluster_state:ok on all six nodes"
[ $st -eq 0 ] || { sed 's/^/# /' "$T/create.log"; done_testing; }

# master_of SLOT: the port of the master serving SLOT (from node 0's view)
master_of() {
	cli "${NODES[0]}" CLUSTER NODES | awk -v s="$1" '$3 ~ /master/ && $3 !~ /fail/ {
		for (i = 9; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = n > 1 ? r[2] : r[1]
			if (s >= lo && s <= hi) { split($2, a, "[:@]"); print a[2]; exit } } }'
}
# replica_of PORT: a replica's port of the master on PORT
replica_of() {
	local id
	id=$(cli "$1" CLUSTER MYID)
	cli "$1" CLUSTER NODES | awk -v m="$id" '$4 == m { split($2, a, "[:@]"); print a[2]; exit }'
}

SECRET=test-secret-$$
export HERALD_JWT_SECRET=$SECRET HERALD_REDIS_CLUSTER=yes HERALD_LOG_LEVEL=debug
export HERALD_REDIS_URL=redis://127.0.0.1:${NODES[0]}/0
"$WS" --check-config >"$T/check.out" 2>&1
grep -q "Redis Cluster" "$T/check.out"
ok $? "herald-ws --check-config names the cluster mode"
HERALD_REDIS_URL=redis://127.0.0.1:${NODES[0]}/3 "$WS" --check-config >"$T/check3.out" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "database 0 only" "$T/check3.out"
ok $? "a database other than 0 is refused in cluster mode"

# --- 2. users on every master ----------------------------------------------------
USERS=()
declare -A MASTER
declare -A COUNT
for n in $(seq 1 60); do
	u=u$n
	m=$(master_of "$(cli "${NODES[0]}" CLUSTER KEYSLOT "$u")")
	[ -n "$m" ] || continue
	[ "${COUNT[$m]:-0}" -ge 3 ] && continue
	COUNT[$m]=$((${COUNT[$m]:-0} + 1))
	MASTER[$u]=$m
	USERS+=("$u")
done
is "${#COUNT[@]}" 3 "the users' slots land on all 3 masters (${#USERS[@]} users)"

declare -A FIRST
pubfail=0
for u in "${USERS[@]}"; do
	for k in 1 2 3; do
		id=$("$PUB" "$u" "{\"n\":$k}" 2>>"$T/pub.err") || pubfail=1
		[ $k -eq 1 ] && FIRST[$u]=$id
	done
done
ok $pubfail "herald-publish stores 3 notifications for each user"
misplaced=0
for u in "${USERS[@]}"; do
	# without -c: the key must be on that very master
	[ "$(cli "${MASTER[$u]}" XLEN "notifications:{$u}:history")" = 3 ] || misplaced=$((misplaced + 1))
done
is $misplaced 0 "each history key notifications:{U}:history is on its user's master"

# --- 3. resume and live through herald-ws -------------------------------------------
WS_PORT=$(port_pick)
"$WS" --listen "127.0.0.1:$WS_PORT" >"$T/ws.log" 2>&1 &
WS_PID=$!
ready=1
for _ in $(seq 150); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WS_PORT/api/v1/notifications/health/ready")" = 200 ] && { ready=0; break; }
	sleep 0.1
done
ok $ready "herald-ws (seeded with one node) is ready in cluster mode"
grep -q "slot map read from .*: 3 masters" "$T/ws.log"
ok $? "herald-ws logs the slot map: 3 masters"

# check_start USER A B CURSOR [M]: a WebSocket client for USER expecting
# n = A..B after CURSOR; it prints "reached" when n = M (default B) arrives
check_start() {
	"$CHK" -T ws -u "{$1}" -a "$2" -b "$3" -m "${5:-$3}" -s "$4" -t 40 "127.0.0.1:$WS_PORT" \
		"/api/v1/ws/notifications?token=$(herald_token "$SECRET" "$1" 3600)" \
		>"$T/chk.$1" 2>&1 &
	CHK_PIDS+=($!)
}
# check_wait: every client finished; PASSED says how many passed (not in a
# subshell: only this shell can wait for its children)
check_wait() {
	local p
	PASSED=0
	for p in "${CHK_PIDS[@]}"; do wait "$p" && PASSED=$((PASSED + 1)); done
	CHK_PIDS=()
}
# subscribed_all: herald-ws subscribed every user (a node's PUBSUB NUMSUB)
subscribed_all() {
	local u p
	for u in "${USERS[@]}"; do
		for p in "${NODES[@]}"; do
			[ "$(cli "$p" PUBSUB NUMSUB "notifications:{$u}" | sed -n 2p)" -ge 1 ] 2>/dev/null && continue 2
		done
		return 1
	done
}

for u in "${USERS[@]}"; do check_start "$u" 2 5 "${FIRST[$u]}" 3; done
st=1
for _ in $(seq 200); do subscribed_all && { st=0; break; }; sleep 0.1; done
ok $st "herald-ws subscribed every user's channel notifications:{U}"
for u in "${USERS[@]}"; do
	for _ in $(seq 100); do grep -q '^reached' "$T/chk.$u" 2>/dev/null && break; sleep 0.1; done
done
for u in "${USERS[@]}"; do
	for k in 4 5; do "$PUB" "$u" "{\"n\":$k}" >/dev/null 2>>"$T/pub.err"; done
done
check_wait
is "$PASSED" "${#USERS[@]}" "every user resumed from a cursor (2, 3 from history) and got 4, 5 live"
for u in "${USERS[@]}"; do grep -q '^ok' "$T/chk.$u" || sed "s/^/# $u: /" "$T/chk.$u"; done

# cgi_poll USER CURSOR: herald-fcgi as CGI; prints the n of each notification
cgi_poll() {
	env GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_NAME=/api/v1/notifications/poll \
		QUERY_STRING="token=$(herald_token "$SECRET" "$1" 3600)&since=$2&limit=100" \
		"$FCGI" </dev/null 2>>"$T/cgi.err" | grep -o '"n":[0-9]*' | cut -d: -f2 | tr '\n' ' '
}
bad=0
for u in "${USERS[@]}"; do
	got=$(cgi_poll "$u" "${FIRST[$u]}")
	[ "$got" = "2 3 4 5 " ] || { bad=$((bad + 1)); diag "poll $u: $got"; }
done
is $bad 0 "herald-fcgi (CGI) polls every user from the cursor: 2 3 4 5"

# --- 4. a failover while publishing -------------------------------------------------------
FM=${MASTER[${USERS[0]}]}
FR=$(replica_of "$FM")
VICTIMS=()
for u in "${USERS[@]}"; do [ "${MASTER[$u]}" = "$FM" ] && VICTIMS+=("$u"); done
# live clients for the users of that master, expecting n = 6..25
for u in "${VICTIMS[@]}"; do check_start "$u" 6 25 "$(cli "$FM" XREVRANGE "notifications:{$u}:history" + - COUNT 1 | head -1)"; done
sleep 1
acked=0
for k in $(seq 6 25); do
	[ "$k" = 12 ] && { cli "$FR" CLUSTER FAILOVER >"$T/failover.out" 2>&1; }
	for u in "${VICTIMS[@]}"; do
		# retried until acknowledged, with an idempotency key: stored once
		for _ in $(seq 50); do
			"$PUB" -k "n$k" "$u" "{\"n\":$k}" >>"$T/acked.$u" 2>>"$T/pub.err" && { acked=$((acked + 1)); break; }
			sleep 0.2
		done
	done
done
is "$acked" $((20 * ${#VICTIMS[@]})) "every publish acknowledged across CLUSTER FAILOVER of $FM to $FR"
st=1
for _ in $(seq 100); do
	[ "$(master_of "$(cli "${NODES[0]}" CLUSTER KEYSLOT "${VICTIMS[0]}")")" = "$FR" ] && { st=0; break; }
	sleep 0.1
done
ok $st "the replica $FR serves the slot now"
check_wait
is "$PASSED" "${#VICTIMS[@]}" "the live clients got 6..25 once each, in order"
for u in "${VICTIMS[@]}"; do grep -q '^ok' "$T/chk.$u" || sed "s/^/# $u: /" "$T/chk.$u"; done
lost=0
for u in "${VICTIMS[@]}"; do
	while read -r id; do
		[ "$(cli "$FR" XRANGE "notifications:{$u}:history" "$id" "$id" | head -1)" = "$id" ] || lost=$((lost + 1))
	done <"$T/acked.$u"
done
is $lost 0 "every acknowledged id is in the history on the new master"
# a resume now reads history from the new master: herald-ws met MOVED
for u in "${VICTIMS[@]}"; do check_start "$u" 2 25 "${FIRST[$u]}"; done
check_wait
is "$PASSED" "${#VICTIMS[@]}" "a resume after the failover replays 2..25 (history read follows the slot)"
for u in "${VICTIMS[@]}"; do grep -q '^ok' "$T/chk.$u" || sed "s/^/# $u: /" "$T/chk.$u"; done
bad=0
for u in "${VICTIMS[@]}"; do
	[ "$(cgi_poll "$u" "${FIRST[$u]}")" = "$(seq -s ' ' 2 25) " ] || bad=$((bad + 1))
done
is $bad 0 "a poll after the failover returns 2..25"
kill -0 "$WS_PID" 2>/dev/null
ok $? "herald-ws is still running"
# SIGTERM: a clean exit (under AddressSanitizer, its leak check runs too)
kill "$WS_PID"
wait "$WS_PID"
ok $? "herald-ws exits 0 on SIGTERM"
WS_PID=
! grep -q "Sanitizer" "$T/ws.log" "$T/cgi.err" "$T/pub.err"
ok $? "no sanitizer report from herald-ws, herald-fcgi or herald-publish"
[ -s "$T/pub.err" ] && sed 's/^/# herald-publish: /' "$T/pub.err" | sort | uniq -c | head -5

# --- 5. herald-doctor -----------------------------------------------------------------
DOC=$B/herald-doctor
PATH=$PATH:/usr/sbin
if [ ! -x "$DOC" ] || ! command -v "$nginx_bin" >/dev/null 2>&1; then
	diag "herald-doctor not built or nginx not installed: no doctor checks"
	done_testing
fi
# links_up: every replica's master_link_status is up (the first sync done)
links_up() {
	local p
	for p in "${NODES[@]}"; do
		cli "$p" INFO replication | grep -q '^role:slave' || continue
		cli "$p" INFO replication | grep -q '^master_link_status:up' || return 1
	done
}
st=1
for _ in $(seq 300); do cluster_ok "${NODES[@]}" && links_up && { st=0; break; }; sleep 0.1; done
ok $st "every replica has synced with its master (master_link_status:up)"
chmod 755 "$T"
HTTP_PORT=$(port_pick)
stack_start "$T/run" "$B" "$HTTP_PORT" full 2>"$T/stack.err"
ok $? "herald-ws, herald-fcgi and nginx start in cluster mode"
ready_all() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/run/ws.sock" http://x/api/v1/notifications/health/ready)" = 200 ] &&
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/api/v1/notifications/health/ready")" = 200 ]
}
st=1
for _ in $(seq 200); do ready_all && { st=0; break; }; sleep 0.1; done
ok $st "both are ready"
# doctor OUT [ARGS...]: the doctor against that stack; output in $T/OUT
doctor() {
	local out=$1
	shift
	"$DOC" --config /nonexistent --url "http://127.0.0.1:$HTTP_PORT" --ws "unix:$T/run/ws.sock" \
		--fcgi "unix:$T/run/fcgi.sock" --nginx-conf "$T/run/nginx/nginx.conf" \
		--nginx-error-log "$T/run/nginx/logs/error.log" --publish-script "$src/docs/publish.lua" \
		"$@" >"$T/$out" 2>&1
}
show() { sed 's/^/# /' "$T/$1"; }
has() { # OUT REGEX DESCRIPTION
	if grep -Eq -- "$2" "$T/$1"; then ok 0 "$3"; else ok 1 "$3"; show "$1"; fi
}
doctor doc-healthy
r=$?
is "$r" 0 "herald-doctor: exit 0 on the healthy cluster"
has doc-healthy "^PASS cluster +cluster_state ok on the seeds: 127.0.0.1:${NODES[0]}\$" "doctor: cluster_state ok on the seed"
has doc-healthy "^PASS cluster +every slot is served: cluster_slots_ok 16384" "doctor: every slot served"
has doc-healthy "^PASS cluster +3 masters, each with a replica in sync \\(3 replicas" "doctor: each master has a replica in sync"
has doc-healthy "^PASS cluster +the publish script loads on every master:( 127.0.0.1:[0-9]+){3}\$" "doctor: the publish script loads on the 3 masters"
has doc-healthy "^PASS websocket .*notification published" "doctor: a notification published in cluster mode arrives through nginx"
grep -Eq '^(FAIL|WARN)' "$T/doc-healthy"
is $? 1 "doctor: no FAIL or WARN line"
[ "$r" = 0 ] || show doc-healthy

# A master A loses its replica R to master B, whose sync waits 60 s: A has
# no replica, and R has not finished its first sync with B.
cli "${NODES[0]}" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "[:@]"); print $1, a[2] }' >"$T/masters"
read -r _ AP < <(sed -n 1p "$T/masters")
read -r BID BP < <(sed -n 2p "$T/masters")
R=$(replica_of "$AP")
cli "$BP" CONFIG SET repl-diskless-sync yes >/dev/null
cli "$BP" CONFIG SET repl-diskless-sync-delay 60 >/dev/null
out=$(cli "$R" CLUSTER REPLICATE "$BID")
is "$out" OK "CLUSTER REPLICATE: $R leaves master $AP for master $BP"
moved() { cli "${NODES[0]}" CLUSTER NODES | awk -v p=":$R@" -v b="$BID" 'index($2, p) && $4 == b { f = 1 } END { exit !f }'; }
st=1
for _ in $(seq 100); do moved && { st=0; break; }; sleep 0.1; done
ok $st "the seed sees $R as a replica of $BP"
DEAD=$(port_pick)
HERALD_REDIS_CLUSTER_NODES="127.0.0.1:$DEAD,127.0.0.1:${NODES[0]}" doctor doc-broken --no-publish
is $? 0 "doctor: warnings only (exit 0)"
has doc-broken "^WARN cluster +seed 127.0.0.1:$DEAD: " "doctor: WARN names the seed that does not answer"
has doc-broken "^WARN cluster +master 127.0.0.1:$AP \\(slots [^)]+\\) has no replica" "doctor: WARN names the master without a replica"
has doc-broken "^WARN cluster +replica 127.0.0.1:$R of master 127.0.0.1:$BP: master_link_status down" "doctor: WARN names the replica that has not synced"
has doc-broken "cause: .*Disconnected from master for longer than allowed" "doctor: ... and why it matters"
grep -q '^FAIL' "$T/doc-broken"
is $? 1 "doctor: no FAIL line"
done_testing
