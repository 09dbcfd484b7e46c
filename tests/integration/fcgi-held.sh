#!/usr/bin/env bash
# herald-fcgi's event loop at the sizes users reach (issue 13), through real
# nginx (nginx/herald-legacy.conf) and a real redis-server:
#   - a client that stops reading is dropped by the write timeout (its queue
#     never passes send_queue_max) while another stream keeps delivering;
#   - 5,000 SSE streams held while polls are answered (1,000 polls, 20 at a
#     time), every poll 200;
#   - Redis killed and restarted under the 5,000 streams: every stream gets
#     the notifications published before and after;
#   - descriptors and memory back to their start once the streams left;
#   - SIGTERM with 5,000 streams held: every stream ends, exit status 0.
# HELD_STREAMS sets the count (5000).  TAP output.
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"

B=$HERALD_BUILDDIR
FCGI=$B/herald-fcgi
PUB=$B/herald-publish
STREAMS=$B/tests/integration/fcgi_streams
NS=${HELD_STREAMS:-5000}
USERS=500
PATH=$PATH:/usr/sbin
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not found"
command -v curl >/dev/null || skip_all "curl not found"
for f in "$FCGI" "$PUB" "$STREAMS"; do [ -x "$f" ] || skip_all "$f not built"; done
# the stream client holds NS descriptors, nginx twice as many
ulimit -n $((2 * NS + 2000)) 2>/dev/null || skip_all "open-files limit below $((2 * NS + 2000))"
lib_init
chmod 755 "$T"

SECRET=test-secret-$$
export HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=info HERALD_SOCKET_MODE=0666
export HERALD_HEARTBEAT=5 HERALD_SSE_MAX_LIFETIME=600 HERALD_THREADS=16
FCGI_PID=
mem_checks_for "$FCGI" ""
_held_cleanup() {
	[ -n "$FCGI_PID" ] && kill "$FCGI_PID" 2>/dev/null && wait "$FCGI_PID" 2>/dev/null
	nginx_stop
	_lib_cleanup
}
trap _held_cleanup EXIT

start_fcgi() {
	rm -f "$T/fcgi.sock"
	"$FCGI" --listen "unix:$T/fcgi.sock" "$@" >>"$T/fcgi.log" 2>&1 &
	FCGI_PID=$!
	for _i in $(seq 400); do [ -S "$T/fcgi.sock" ] && return 0; sleep 0.05; done
	return 1
}
pub() { HERALD_REDIS_URL=$REDIS_URL "$PUB" "$@"; }
# pub_round R: {"round":R,"u":i} to each user u1..uUSERS (USERS processes a
# round, about 0.1 s each under ASan, more on a loaded machine)
pub_round() { publish_many "$PUB" "$USERS" "u{}" "{\"round\":$1,\"u\":{}}"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
metric() { curl -s "$N/api/v1/notifications/metrics" | sed -n "s/^$1 \([0-9]*\).*/\1/p"; }
health_field() { health_num "$N/api/v1/notifications/health" "$1"; }
nfds() { nfds_of "$FCGI_PID"; }
# wait_for FILE PATTERN [TRIES of 0.1 s]
wait_for() {
	for _i in $(seq "${3:-100}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# nginx holds two connections per stream: raise its limits in the scratch config.
tune() {
	sed -i -e "s/^worker_processes 1;/worker_processes 1;\nworker_rlimit_nofile $((2 * NS + 1000));/" \
		-e "s/worker_connections 4096;/worker_connections $((2 * NS + 1000));/" "$1/nginx.conf"
}

start_redis || exit 1
export HERALD_REDIS_URL=$REDIS_URL
start_fcgi || { cat "$T/fcgi.log"; exit 1; }
HTTP_PORT=$(port_pick)
N="http://127.0.0.1:$HTTP_PORT"
NGINX_TUNE=tune nginx_start "$src/nginx/herald-legacy.conf" "$T/nginx" "$HTTP_PORT" 127.0.0.1:1 \
	"unix:$T/fcgi.sock" || exit 1
until_eq "code $N/api/v1/notifications/health" 200 100
ok $? "herald-fcgi healthy through nginx"

# --- a client that stops reading: the write timeout, not the queue limit -------
kill "$FCGI_PID"; wait "$FCGI_PID" 2>/dev/null
HERALD_SEND_QUEUE_MAX=64m start_fcgi || exit 1
until_eq "code $N/api/v1/notifications/health" 200 100
curl -s -N --limit-rate 1 "$N/api/v1/sse/notifications?token=$(herald_token "$SECRET" stall 600)" \
	>/dev/null &
CS=$!
curl -s -N "$N/api/v1/sse/notifications?token=$(herald_token "$SECRET" brisk 600)" >"$T/brisk" &
CB=$!
wait_subscribed stall
wait_subscribed brisk
big=$(head -c 60000 /dev/zero | tr '\0' x)
# more than nginx and the sockets between hold (several MB on loopback)
for i in $(seq 300); do echo "{\"big\":\"$big\"}"; done | pub stall - >/dev/null
a=$(pub brisk '{"brisk":1}')
wait_for "$T/brisk" "^id: $a" 50
r=$?
stalled=$(metric herald_fcgi_stalled_total)
[ $r = 0 ] && [ "${stalled:-1}" = 0 ]
ok $? "while a client reads nothing, another stream gets its notification at once"
until_eq "metric herald_fcgi_stalled_total" 1 300
ok $? "the client that reads nothing is dropped by the write timeout (18 MB published, queue limit 64 MiB)"
is "$(health_field streams)" 1 "the other stream is still held"
kill $CS $CB 2>/dev/null; wait $CS $CB 2>/dev/null
grep -q "read nothing for 10 s, dropping it" "$T/fcgi.log"
ok $? "the drop is logged"

# --- 5,000 streams while polls are answered ---------------------------------------
kill "$FCGI_PID"; wait "$FCGI_PID" 2>/dev/null
start_fcgi || exit 1
until_eq "code $N/api/v1/notifications/health" 200 100
for i in $(seq $USERS); do herald_token "$SECRET" "u$i" 3600; done >"$T/tokens"
TP=$(herald_token "$SECRET" poller 3600)
until_eq "health_field streams" 0 50
sleep 1.5 # the trim after the stalled test's streams
fds0=$(nfds)
rss0=$(rss_kb "$FCGI_PID")
# 600 s: a safety net (two rounds of USERS publisher processes); it ends
# once every stream has both
"$STREAMS" "$HTTP_PORT" "$T/tokens" "$NS" 2 600 >"$T/streams.out" 2>&1 &
CM=$!
wait_for "$T/streams.out" ready 1200
r=$?
ok $r "$NS SSE streams held through nginx"
[ $r = 0 ] ||
	diag "$(cat "$T/streams.out"); nginx's errors: $(grep -E '\[(error|crit|alert)\]' "$T/nginx/logs/error.log" |
		sed 's/^[0-9/: ]*\[[a-z]*\] [0-9#]*: \*[0-9]* //; s/, client:.*//' | sort | uniq -c | sort -rn | head -3)"
is "$(health_field streams)" "$NS" "health counts $NS streams"
fds1=$(nfds)
rss1=$(rss_kb "$FCGI_PID")
diag "herald-fcgi: $fds0 -> $fds1 descriptors, $rss0 -> $rss1 KiB with $NS streams ($(((rss1 - rss0) * 1024 / NS)) bytes each)"
[ $((fds1 - fds0)) -le $((NS + 20)) ]
ok $? "one descriptor per held stream"
for i in $(seq 1000); do printf 'url = "%s"\noutput = /dev/null\n' "$N/api/v1/notifications/poll"; done >"$T/polls.cfg"
t0=$(date +%s%N)
curl -s -Z --parallel-max 20 -K "$T/polls.cfg" -H "Authorization: Bearer $TP" \
	-w '%{http_code}\n' >"$T/polls.out" 2>/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
n200=$(grep -c '^200$' "$T/polls.out")
diag "1,000 polls, 20 at a time, took $ms ms with $NS streams held"
is "$n200" 1000 "every poll answered 200 while $NS streams are held"
[ "$n200" = 1000 ] || diag "answers: $(sort "$T/polls.out" | uniq -c | tr '\n' ' ')"

# Round 1, then Redis killed and restarted, round 2.
rss_p=$(rss_kb "$FCGI_PID")
pub_round 1
until_eq "metric herald_delivered_total" "$NS" 300
rss_r1=$(rss_kb "$FCGI_PID")
port=$REDIS_PORT
stop_redis
sleep 0.5
restart_redis "$port"
# published as soon as Redis answers: before or after herald-fcgi resubscribes
pub_round 2
wait $CM
ok $? "Redis killed and restarted under $NS streams: every stream got both rounds ($(tail -1 "$T/streams.out"))"
diag "RSS after the polls $rss_p KiB, after round 1 $rss_r1 KiB, after round 2 $(rss_kb "$FCGI_PID") KiB"

until_eq "health_field streams" 0 300
ok $? "the streams left: none held"
sleep 1.5 # the trim a second after the last one
idle2=$(health_field idle_connections)
fds2=$(($(nfds) - idle2))
rss2=$(rss_kb "$FCGI_PID")
diag "after they left: $fds2 descriptors and $idle2 kept alive by nginx (was $fds0), $rss2 KiB (was $rss0, $rss1 with them)"
# nginx keeps FastCGI connections alive (upstream keepalive; health counts
# them, and they are not counted here), and each of the 16 workers keeps
# its Redis connection once it has answered a poll
[ "$fds2" -le $((fds0 + 32)) ]
ok $? "descriptors back to the start (but nginx's kept-alive ones and the workers' Redis links)"
[ "$fds2" -le $((fds0 + 32)) ] ||
	diag "$(curl -s "$N/api/v1/notifications/health"; ls -l /proc/$FCGI_PID/fd | tail -40; ss -xp | grep -c "pid=$FCGI_PID")"
# What stays is malloc fragmentation from the catch-up after the Redis
# restart (in-use bytes return to ~1 MiB), not the streams themselves:
# their share comes back.  About 2 MiB with herald-fcgi's fixed mmap
# threshold; 6.5-8.5 MiB without it (fcgi/main.c).
[ $((rss2 - rss0)) -lt 8192 ]
ok_mem $? "memory back near the start (within 8 MiB; $NS streams took $((rss1 - rss0)) KiB)"

# --- SIGTERM with 5,000 streams held ---------------------------------------------
"$STREAMS" "$HTTP_PORT" "$T/tokens" "$NS" 1000 120 >"$T/streams2.out" 2>&1 &
CM=$!
wait_for "$T/streams2.out" ready 1200
ok $? "$NS streams held again"
held=$(health_field streams)
t0=$(date +%s%N)
kill -TERM "$FCGI_PID"
wait "$FCGI_PID"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
FCGI_PID=
is "$rc" 0 "SIGTERM with $NS streams held: exit status 0 (${ms} ms)"
t0=$(date +%s%N)
wait $CM
diag "the stream client: $(tail -1 "$T/streams2.out") after $((($(date +%s%N) - t0) / 1000000)) ms; herald-fcgi held $held before the signal: $(grep 'ending [0-9]* streams' "$T/fcgi.log" | tail -1)"
closed=$(sed -n 's/.* closed \([0-9]*\)$/\1/p' "$T/streams2.out")
is "$closed" "$NS" "every stream was ended by the server"
grep -q "ending $NS streams" "$T/fcgi.log"
ok $? "the shutdown is logged with the count"
! grep -q "AddressSanitizer\|runtime error" "$T/fcgi.log"
ok $? "no sanitizer report in herald-fcgi's log"
done_testing
