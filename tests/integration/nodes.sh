#!/usr/bin/env bash
# Several Herald processes behind one nginx (issue 14): two herald-ws and two
# herald-fcgi on unix sockets, one redis-server, nginx with the shipped
# nginx/herald-nodes.conf and herald.conf composed as docs/operations.md
# ("Several nodes") says.  TAP on stdout.
#   1. nginx -t; the loopback server reaches each process by its number
#   2. WebSocket and SSE clients (replay_check -c: on a close they come back
#      with their cursor, since= / Last-Event-ID, as herald.js does) spread
#      over both processes of each kind; one herald-ws and one herald-fcgi
#      killed with SIGKILL mid-sequence: the clients land on the survivors,
#      every notification arrives once, in order, per client
#   3. contrib/rolling-restart.sh restarts all four one at a time (SIGTERM,
#      wait for the exit, start, wait ready) while notifications are
#      published: nothing lost or doubled, and through nginx a herald-fcgi
#      answers /health/ready and a herald-ws the upgrade at every moment
#      (never 502 or 504)
# No timed assertion: every wait is bounded and only fails a test that hangs.
# NODES_CLIENTS (per user and transport, default 4) and NODES_STEPS (default
# 120, the sequence published in part 2; part 3 publishes twice as many)
# change the sizes.

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
lib_init
chmod 755 "$T" # nginx's workers may run as another user and must reach the sockets
start_redis || skip_all "cannot start redis-server"

PER=${NODES_CLIENTS:-4}
STEPS=${NODES_STEPS:-120}
STEPS2=$((STEPS * 2))
TMO=180 # replay_check's safety net, seconds: it ends once it has 1..STEPS; publishing
# spawns two herald-publish per step, 0.2 s a step under ASan alone, more on a
# loaded machine (240 steps took over 45 s with cluster.sh beside it)

SECRET=test-secret-$$
RUN=$T/run
mkdir -p "$RUN"
chmod 755 "$RUN"
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_SOCKET_MODE=0666
export HERALD_THREADS=8 NODES_RUN=$RUN NODES_BIN=$B

# scripts/nodectl is the process manager: nodectl start|restart KIND N
# does for process KIND-N what `systemctl restart herald-KIND@N` does
# (SIGTERM, wait for the exit, start, wait until it listens).  The
# processes it starts are not this shell's children; their pids are in
# RUN/KIND-N.pid, and cleanup stops exactly those.
CTL=$src/scripts/nodectl
[ -x "$CTL" ] || skip_all "$CTL missing"

NODES="ws-1 ws-2 fcgi-1 fcgi-2"
pid_of() { cat "$RUN/$1.pid" 2>/dev/null; }
cleanup() {
	local n p
	nginx_stop
	for n in $NODES; do
		p=$(pid_of "$n")
		[ -n "$p" ] && kill "$p" 2>/dev/null
	done
	for n in $NODES; do
		p=$(pid_of "$n")
		for _ in $(seq 200); do
			[ -n "$p" ] && [ -r "/proc/$p/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" ||
				break
			sleep 0.05
		done
	done
	_lib_cleanup
}
trap cleanup EXIT

# --- 1. the composed site, nginx -t, the loopback server -------------------------
HTTP_PORT=$(port_pick)
PROBE_PORT=$(port_pick)
N=127.0.0.1:$HTTP_PORT
P=http://127.0.0.1:$PROBE_PORT
mkdir -p "$T/site"
# As docs/operations.md composes it: herald-nodes.conf beside herald.conf
# without its two upstream blocks; here with the sockets in RUN.
{
	sed -e "s#/run/herald/#$RUN/#g" -e "s#listen 127.0.0.1:8081;#listen 127.0.0.1:$PROBE_PORT;#" \
		"$src/nginx/herald-nodes.conf"
	sed -e '/# --- herald:upstreams begin ---/,/# --- herald:upstreams end ---/d' \
		-e "s#/usr/share/herald/web#$src/web#" "$src/nginx/herald.conf"
} >"$T/site/herald.conf"
! grep -q "server 127.0.0.1:8000;\|server unix:/run/herald/fcgi.sock;" "$T/site/herald.conf"
ok $? "herald.conf without its upstream blocks keeps no single-process address"
nginx_test "$src/nginx/herald-nodes.conf" "$T/nginx-t" "$HTTP_PORT" x x 2>"$T/nginx-t.log"
ok $? "nginx -t accepts nginx/herald-nodes.conf as shipped (/run/herald sockets)"
[ -s "$T/nginx-t.log" ] && sed 's/^/# /' "$T/nginx-t.log"

# The template units of docs/operations.md, made with its command from the
# package's units (the binary: this build's, as package.sh does).
if command -v systemd-analyze >/dev/null 2>&1; then
	for k in ws fcgi; do
		sed -e "s#/run/herald/$k.sock#/run/herald/$k-%i.sock#" \
			-e 's#^Description=.*#& instance %i#' "$src/systemd/herald-$k.service" |
			sed "s#/usr/bin/herald-$k#$B/herald-$k#" >"$T/herald-$k@.service"
		out=$(cd "$T" && systemd-analyze verify --man=no "./herald-$k@.service" 2>&1)
		ok $? "herald-$k@.service (docs/operations.md's sed): systemd-analyze verify"
		[ -z "$out" ] || diag "$out"
		grep -q "^ExecStart=.* --listen unix:/run/herald/$k-%i.sock$" "$T/herald-$k@.service"
		ok $? "herald-$k@N.service listens on unix:/run/herald/$k-N.sock"
	done
else
	diag "systemd-analyze not installed: the template units are not checked"
fi

for n in $NODES; do
	"$CTL" start "${n%-*}" "${n#*-}" || break
done
ok $? "two herald-ws and two herald-fcgi listen on $RUN/{ws,fcgi}-{1,2}.sock"
nginx_start "$T/site/herald.conf" "$T/nginx" "$HTTP_PORT" x x
ok $? "nginx starts with herald.conf and herald-nodes.conf"

code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1"; }
# ready_all: every process answers ready through the loopback server
ready_all() {
	local n
	for n in $NODES; do
		[ "$(code "$P/$n/api/v1/notifications/health/ready")" = 200 ] || return 1
	done
}
for _ in $(seq 100); do ready_all && break; sleep 0.1; done
ready_all
ok $? "the loopback server reaches each of the four by number: /ws-1 ... /fcgi-2 /api/v1/notifications/health/ready 200"
[ "$(curl -s -m 5 "$P/fcgi-2/api/v1/notifications/health" | sed -n 's/.*"program":"\([^"]*\)".*/\1/p')" = herald-fcgi ] &&
	[ "$(curl -s -m 5 "$P/ws-1/api/v1/notifications/health" | sed -n 's/.*"program":"\([^"]*\)".*/\1/p')" = herald-ws ]
ok $? "/fcgi-2 is a herald-fcgi, /ws-1 a herald-ws"
is "$(code "$P/ws-3/api/v1/notifications/health/ready"):$(code "$P/ws-1/api/v1/other")" "502:404" \
	"a process that does not exist: 502; another path: 404"

# connections NODE: the hub's connections of one process (its metrics)
connections() {
	curl -s -m 5 "$P/$1/api/v1/notifications/metrics" | awk '$1 == "herald_connections" { print $2 }'
}
# total KIND: the connections of every process of KIND still running
total() {
	local n s=0 c
	for n in $NODES; do
		[ "${n%-*}" = "$1" ] || continue
		c=$(connections "$n")
		s=$((s + ${c:-0}))
	done
	echo $s
}
# clients PREFIX: the connection files of replay_check -f, PER per user and
# transport, users PREFIX1 and PREFIX2
clients() {
	local u k
	: >"$T/$1.ws"
	: >"$T/$1.sse"
	for u in "${1}1" "${1}2"; do
		t=$(herald_token "$SECRET" "$u" 3600)
		for k in $(seq "$PER"); do
			echo "/api/v1/ws/notifications?token=$t" >>"$T/$1.ws"
			echo "/api/v1/sse/notifications?token=$t" >>"$T/$1.sse"
		done
	done
}
# publisher PREFIX STEPS GATE: {"n":K} for K = 1..STEPS to both users, K in
# T/PREFIX.progress after each; 30 ms apart until file GATE exists
publisher() {
	local k
	for k in $(seq "$2"); do
		"$PUB" "${1}1" "{\"n\":$k}" >/dev/null && "$PUB" "${1}2" "{\"n\":$k}" >/dev/null ||
			echo "publish $k failed" >>"$T/$1.puberr"
		# written whole then renamed: a reader never sees the file empty
		echo "$k" >"$T/$1.progress.new" && mv -f "$T/$1.progress.new" "$T/$1.progress"
		[ -e "$3" ] || sleep 0.03
	done
}
progress() { cat "$T/$1.progress" 2>/dev/null || echo 0; }
# checkers PREFIX STEPS: replay_check over PREFIX's WebSocket and SSE
# clients, expecting 1..STEPS, reconnecting with their cursor (-c)
checkers() {
	clients "$1"
	"$CHK" -T ws -c -a 1 -b "$2" -t $TMO -f "$T/$1.ws" "$N" >"$T/$1.ws.out" 2>&1 &
	cw=$!
	"$CHK" -T sse -c -a 1 -b "$2" -t $TMO -f "$T/$1.sse" "$N" >"$T/$1.sse.out" 2>&1 &
	cs=$!
}
# verdicts PREFIX STEPS WHAT: the publisher (pid pp) and both checkers' results
verdicts() {
	local rw rs
	wait "$pp"
	ok "$([ ! -e "$T/$1.puberr" ] && echo 0 || echo 1)" "$2 notifications published to each user"
	wait "$cw"
	rw=$?
	wait "$cs"
	rs=$?
	sed 's/^/# ws:  /' "$T/$1.ws.out"
	sed 's/^/# sse: /' "$T/$1.sse.out"
	ok $rw "WebSocket: each of $want clients got 1..$2 once, in order, $3"
	ok $rs "SSE: each of $want clients got 1..$2 once, in order, $3"
}

# --- 2. SIGKILL one of each kind under load -------------------------------------
want=$((PER * 2))
checkers a "$STEPS"
for _ in $(seq 100); do [ "$(total ws)" = $want ] && [ "$(total fcgi)" = $want ] && break; sleep 0.1; done
w1=$(connections ws-1) w2=$(connections ws-2) f1=$(connections fcgi-1) f2=$(connections fcgi-2)
[ "$((w1 + w2)):$((f1 + f2))" = "$want:$want" ] && [ "$w1" -ge 1 ] && [ "$w2" -ge 1 ] &&
	[ "$f1" -ge 1 ] && [ "$f2" -ge 1 ]
ok $? "$want WebSocket clients spread over ws-1 ($w1) and ws-2 ($w2), $want SSE over fcgi-1 ($f1) and fcgi-2 ($f2)"

publisher a "$STEPS" "$T/none" &
pp=$!
for _ in $(seq 300); do [ "$(progress a)" -ge $((STEPS / 3)) ] && break; sleep 0.05; done
"$CTL" kill ws 1 && "$CTL" kill fcgi 1
ok $? "SIGKILL to ws-1 and fcgi-1 after notification $(progress a) of $STEPS"
for _ in $(seq 150); do
	[ "$(connections ws-2)" = $want ] && [ "$(connections fcgi-2)" = $want ] && break
	sleep 0.1
done
is "$(connections ws-2):$(connections fcgi-2)" "$want:$want" \
	"every client came back through nginx on the survivors, ws-2 and fcgi-2 (at notification $(progress a))"
verdicts a "$STEPS" "across the kill"
[ "$(grep -c '"GET /api/v1/ws/notifications HTTP/1.1" 101' "$T/nginx/logs/access.log")" -gt $want ] &&
	[ "$(grep -c '"GET /api/v1/sse/notifications HTTP/1.1" 200' "$T/nginx/logs/access.log")" -gt $want ]
ok $? "nginx's access log shows the reconnections (101 and 200 beyond the first $want of each)"

# --- 3. rolling restart while publishing ------------------------------------------
"$CTL" start ws 1 && "$CTL" start fcgi 1
ok $? "ws-1 and fcgi-1 started again"
for _ in $(seq 100); do ready_all && break; sleep 0.1; done
checkers b "$STEPS2"
for _ in $(seq 100); do [ "$(total ws)" = $want ] && [ "$(total fcgi)" = $want ] && break; sleep 0.1; done
is "$(total ws):$(total fcgi)" "$want:$want" "$want WebSocket and $want SSE clients of two more users connected"

# Through nginx's public port, every 50 ms: herald-fcgi's readiness (the
# pool) and a WebSocket upgrade without a token (101, then herald-ws closes
# it with 4401 at once), until the restart is over.
probe() {
	while [ ! -e "$T/restart-done" ]; do
		code "http://$N/api/v1/notifications/health/ready" >>"$T/probe.fcgi"
		echo >>"$T/probe.fcgi"
		curl -s -o /dev/null -m 5 -w '%{http_code}\n' -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
			-H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
			"http://$N/api/v1/ws/notifications" >>"$T/probe.ws"
		sleep 0.05
	done
}
probe &
pr=$!
publisher b "$STEPS2" "$T/restart-done" &
pp=$!
for _ in $(seq 100); do [ "$(progress b)" -ge 20 ] && break; sleep 0.05; done
declare -A before
for n in $NODES; do before[$n]=$(pid_of "$n"); done
# shellcheck disable=SC2086 # NODES: one word per process
"$src/contrib/rolling-restart.sh" -t 30 -r "$CTL restart %k %i" \
	-p "$P/%k-%i/api/v1/notifications/health/ready" $NODES >"$T/rolling.out" 2>&1
rc=$?
at=$(progress b)
touch "$T/restart-done"
sed 's/^/# /' "$T/rolling.out"
ok $rc "contrib/rolling-restart.sh restarted ws-1 ws-2 fcgi-1 fcgi-2 one at a time (notifications 20..$at of $STEPS2 meanwhile)"
after=$(for n in $NODES; do pid_of "$n"; done | tr '\n' ' ')
clean=0
for n in $NODES; do
	old=${before[$n]}
	[ "$old" != "$(pid_of "$n")" ] && grep -q "herald-${n%-*}\[$old\] info: stopped" "$RUN/$n.log" &&
		clean=$((clean + 1))
done
is "$clean" 4 "each of the four exited cleanly after SIGTERM (its log: stopped) and runs with a new pid"
[ "$at" -lt "$STEPS2" ]
ok $? "the restart was over before the publishing ($at < $STEPS2)"
diag "pids before: ${before[*]} after: $after"
wait $pr
verdicts b "$STEPS2" "across the rolling restart"
for k in fcgi ws; do
	diag "probes through nginx during the restart ($k): $(sort "$T/probe.$k" | uniq -c | tr -s ' \n' ' ')"
done
! grep -qv '^200$' "$T/probe.fcgi" && [ -s "$T/probe.fcgi" ]
ok $? "/health/ready through nginx answered 200 throughout ($(wc -l <"$T/probe.fcgi") probes; never 502, 503 or 504)"
! grep -qv '^101$' "$T/probe.ws" && [ -s "$T/probe.ws" ]
ok $? "the WebSocket upgrade through nginx answered 101 throughout ($(wc -l <"$T/probe.ws") probes)"
grep -h 'stopped\|shutting down' "$RUN"/*.log | sed 's/^/# /' | head -8
ready_all
ok $? "all four ready after the restart"
pid=$(pid_of ws-1)
"$src/contrib/rolling-restart.sh" -t 5 -r "$CTL restart %k %i" \
	-p "$P/%k-%i/api/v1/notifications/health/ready" ws-1 fcgi-1 >"$T/refuse.out" 2>&1
rc=$?
is "$rc:$(pid_of ws-1):$(cat "$T/refuse.out")" \
	"1:$pid:rolling-restart.sh: ws-1: no other herald-ws of the list is ready; restarting it would leave none" \
	"rolling-restart.sh refuses to stop a process when no other of its kind on its list is ready"
nginx_stop
grep -c 'connect() to unix:.* failed' "$T/nginx/logs/error.log" | sed 's/^/# nginx connect() failures skipped to the next process: /'

done_testing
