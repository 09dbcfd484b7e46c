#!/usr/bin/env bash
# herald-bench against a real herald-ws and a real redis-server (issue 6):
# ~50 WebSocket connections and the Redis-direct floor for ~2 s each; the
# JSON line must carry every field, and nothing may be lost or duplicated.
# --replay (issue 11): a 1,500-entry backlog (past the old 1,000-entry and
# one-page limits) resumed over WS while 10 users get live messages.
# --reconnect (issue 14): herald-ws killed and restarted under 20 clients.
# No timing assertions.  TAP on stdout.

. "$(dirname "$0")/lib.sh"

lib_init
WS="$HERALD_BUILDDIR/herald-ws"
BENCH="$HERALD_BUILDDIR/herald-bench"
for f in "$WS" "$BENCH"; do [ -x "$f" ] || skip_all "$f not built"; done
lib_clean_env
start_redis || skip_all "cannot start redis-server"

plan 40

SECRET=bench-secret-$$
WS_PID=
cleanup_bench() {
	if [ -n "$WS_PID" ]; then kill "$WS_PID" 2>/dev/null; wait "$WS_PID" 2>/dev/null; fi
	_lib_cleanup
}
trap cleanup_bench EXIT

# field JSON NAME: the number (or string) after "NAME": in the one-line JSON
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

WS_PORT=$(port_pick)
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=warn \
	"$WS" --listen "127.0.0.1:$WS_PORT" >"$T/ws.log" 2>&1 &
WS_PID=$!
port_wait "$WS_PORT" "$WS_PID"
ok $? "herald-ws starts on 127.0.0.1:$WS_PORT"

# --- herald-ws, 50 connections for 25 users, 200 msg/s for 2 s -------------------
out=$("$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret "$SECRET" -R "redis://127.0.0.1:$REDIS_PORT" -n 50 -U 25 -r 200 -d 2 \
	--settle 0.5 --drain 3 --label test-ws)
rc=$?
diag "$out"
is "$rc" 0 "herald-bench ws exits 0"
is "$(printf '%s\n' "$out" | wc -l | tr -d ' ')" 1 "one JSON line"
for f in opened failed connect_rate sent received lost dup ooo p50_ms p90_ms p99_ms p999_ms \
	max_ms delivered_per_s; do
	[ -n "$(field "$out" $f)" ] || { missing="$missing $f"; }
done
is "${missing:-}" "" "every field is present"
is "$(field "$out" opened),$(field "$out" failed)" "50,0" "50 connections opened, none failed"
sent=$(field "$out" sent)
ok "$([ "${sent:-0}" -gt 0 ]; echo $?)" "messages were sent ($sent)"
# two connections per user: each message is expected twice
is "$(field "$out" expected)" "$((sent * 2))" "expected is sent x connections per user"
is "$(field "$out" received)" "$((sent * 2))" "every expected message received"
is "$(field "$out" lost),$(field "$out" dup),$(field "$out" wrong_user)" "0,0,0" \
	"nothing lost, duplicated or misrouted"
is "$(field "$out" label)" "test-ws" "the label is copied"

# --- the floor: SUBSCRIBE straight to Redis (protected mode: default source address) --
out=$("$BENCH" -t redis -R "redis://127.0.0.1:$REDIS_PORT" --source-addrs 0 -n 50 -r 200 -d 2 \
	--settle 0.5 --drain 3 --samples "$T/samples")
rc=$?
diag "$out"
is "$rc" 0 "herald-bench redis exits 0"
is "$(field "$out" opened)" 50 "50 subscribers"
sent=$(field "$out" sent)
is "$(field "$out" received)" "$sent" "the floor receives every message ($sent)"
is "$(field "$out" lost),$(field "$out" dup)" "0,0" "the floor loses and duplicates nothing"
is "$(awk 'NF == 4 && $2 >= $1' "$T/samples" | wc -l | tr -d ' ')" "$(field "$out" received)" \
	"--samples: one line per received message (sent <= received time, user, seq)"
"$BENCH" -t redis -R "redis://127.0.0.1:$REDIS_PORT" --source-addrs 0 -n 1 -d 0.2 --settle 0 \
	--drain 0 --samples "$T/no/such/dir/s" >/dev/null 2>"$T/samples.err"
rc=$?
[ "$rc" = 1 ] && grep -q -- "--samples $T/no/such/dir/s: No such file or directory" "$T/samples.err"
ok $? "--samples to a path that cannot be written: exit status 1 and the reason"

# --- procs: two processes merge their counts ------------------------------------
out=$("$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret "$SECRET" -R "redis://127.0.0.1:$REDIS_PORT" -n 40 -p 2 -r 100 -d 1 \
	--settle 0.5 --drain 3)
diag "$out"
is "$(field "$out" opened),$(field "$out" procs)" "40,2" "--procs 2: 40 connections from 2 processes"
sent=$(field "$out" sent)
is "$(field "$out" received),$(field "$out" lost),$(field "$out" dup)" "$sent,0,0" \
	"--procs 2: merged counts, nothing lost"

# --- a bad token is a failure, reported, and the exit status says so -------------------
out=$("$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret wrong-secret -R "redis://127.0.0.1:$REDIS_PORT" -n 5 -d 0.5 --settle 0 --drain 0)
rc=$?
diag "$out"
is "$rc" 1 "a wrong secret: exit status 1"
printf '%s\n' "$out" | grep -q '"close_codes":{"4401":5}'
ok $? "the 4401 closes are counted"

# Redis refuses the publish (the script rejects a quote in the channel): counted, and
# Redis's words reported without the RESP framing.
out=$("$BENCH" -t redis -R "redis://127.0.0.1:$REDIS_PORT" --source-addrs 0 --prefix 'a"b' \
	-n 2 -r 20 -d 0.5 --settle 0.2 --drain 0.5)
diag "$out"
is "$(field "$out" pub_errors)" "$(field "$out" sent)" "every refused publish is counted"
printf '%s\n' "$out" | grep -q '"pub_error":"ERR herald: channel must not hold quotes[^"\\]*"'
ok $? "pub_error holds Redis's message, no '-' or CR"
printf '%s\n' "$out" | grep -q '"steal_ms":-\{0,1\}[0-9]'
ok $? "steal_ms is reported"

# --- --replay: one resume after a 1,500-entry backlog, 10 live users ------------------------
out=$("$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret "$SECRET" -R "redis://127.0.0.1:$REDIS_PORT" -n 10 -r 50 -d 2 --settle 0.3 \
	--drain 10 --replay 1500 --replay-bytes 120 --replay-at 0.5 --user-prefix rp)
rc=$?
diag "$out"
is "$rc" 0 "herald-bench --replay exits 0"
missing=
for f in replay_ms replay_first_ms replay_backlog replay_lost replay_dup replay_ooo \
	replay_live_sent replay_live_received during_replay_n during_replay_p99_ms replay_cursor; do
	[ -n "$(field "$out" $f)" ] || missing="$missing $f"
done
is "${missing:-}" "" "every replay field is present"
is "$(field "$out" replay_backlog)" 1500 "the whole backlog arrived (1500)"
is "$(field "$out" replay_lost),$(field "$out" replay_dup),$(field "$out" replay_ooo)" "0,0,0" \
	"the replay: nothing lost, duplicated or out of order"
is "$(field "$out" replay_live_received)" "$(field "$out" replay_live_sent)" \
	"the replay user's live messages followed the backlog ($(field "$out" replay_live_sent))"
ok "$(awk -v v="$(field "$out" replay_ms)" 'BEGIN { exit !(v > 0) }'; echo $?)" \
	"replay_ms is timed ($(field "$out" replay_ms) ms)"
is "$(field "$out" lost),$(field "$out" dup)" "0,0" "the other users lose nothing meanwhile"
# the cursor is the seed's stream id; the backlog is in the user's history
cursor=$(field "$out" replay_cursor)
ok "$(printf '%s' "$cursor" | grep -Eq '^[0-9]+-[0-9]+$'; echo $?)" "the cursor is a stream id ($cursor)"
is "$(redis-cli -p "$REDIS_PORT" XLEN "notifications:rp10:history")" \
	"$((1501 + $(field "$out" replay_live_sent)))" \
	"the seed, the backlog and the live messages are in the replay user's history"

# A history trimmed under the cursor (--history-max 100): the resume cannot be
# whole, and herald-bench must say so (it is the check the row relies on).
out=$("$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret "$SECRET" -R "redis://127.0.0.1:$REDIS_PORT" -n 2 -d 1 --settle 0 --drain 2 \
	--replay 1000 --replay-at 0.2 --history-max 100 --user-prefix rt)
rc=$?
diag "$out"
ok "$([ "$rc" = 1 ] && [ "$(field "$out" replay_lost)" -gt 0 ]; echo $?)" \
	"a trimmed history: exit status 1, replay_lost $(field "$out" replay_lost)"
"$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/x" -d 1 --replay 10 --replay-at 1 >/dev/null 2>&1
is "$?" 2 "--replay-at past --duration: exit status 2"

# --- --reconnect (issue 14): herald-ws killed (SIGKILL) and started again mid-run;
# every client comes back with since= and gets every acknowledged message once
out_f=$T/reconnect.json
"$BENCH" -t ws -u "http://127.0.0.1:$WS_PORT/api/v1/ws/notifications?token={token}" \
	--secret "$SECRET" -R "redis://127.0.0.1:$REDIS_PORT" -n 20 -r 40 -d 4 --settle 0.2 \
	--drain 15 --reconnect --initial-id 0-0 --backoff-base 300 --user-prefix rc \
	--ready-file "$T/rc.ready" >"$out_f" &
bench_pid=$!
for _ in $(seq 200); do [ -f "$T/rc.ready" ] && break; sleep 0.05; done
sleep 1.5
kill -9 "$WS_PID"
wait "$WS_PID" 2>/dev/null
sleep 0.5
HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_LOG_LEVEL=warn \
	"$WS" --listen "127.0.0.1:$WS_PORT" >>"$T/ws.log" 2>&1 &
WS_PID=$!
wait "$bench_pid"
rc=$?
out=$(cat "$out_f")
diag "$out"
is "$rc" 0 "--reconnect, herald-ws killed and restarted: exit status 0"
is "$(field "$out" lost),$(field "$out" dup),$(field "$out" unrecovered),$(field "$out" reconnect_clients)" \
	"0,0,0,20" "every client reconnected, nothing lost or doubled"
ok "$([ "$(field "$out" sent)" -gt 0 ] && [ "$(field "$out" expected)" = "$(field "$out" sent)" ] &&
	[ "$(field "$out" first_failure)" = "ws connection lost" ]; echo $?)" \
	"sent is what Redis acknowledged ($(field "$out" sent)), the first failure the lost connections; recovery $(field "$out" recovery_ms) ms"

# --- usage -------------------------------------------------------------------------------
"$BENCH" --help | grep -q -- '--publish-url'
ok $? "--help describes the options"
"$BENCH" -t nope >/dev/null 2>&1
is "$?" 2 "a bad transport: exit status 2"
"$BENCH" -t redis --reconnect >/dev/null 2>&1
is "$?" 2 "--reconnect with the floor: exit status 2"

done_testing
