#!/usr/bin/env bash
# bench/soak --quick: a minute of the soak's traffic on a small scale, so
# that the script cannot rot and what it checks holds on every build (under
# the sanitizers too).  200 clients held the whole minute (the SSE streams
# end every 10 s and resume from Last-Event-ID), a wave of 350 new clients
# (WebSocket, SSE, pollers) every 5 s.  Checked: nothing lost, doubled or
# out of order anywhere; every held client back after each end; the held
# SSE clients really resumed (reconnects); every process alive at each
# sample; with every client gone, herald-ws and herald-fcgi hold the
# descriptors they held at the start, but for their Redis links (herald-fcgi's
# workers connect theirs when first needed) and nginx's idle kept-alive
# connections to herald-fcgi.  Memory growth is printed, not checked (a minute
# under a sanitizer says nothing about it).  TAP on stdout.

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"

lib_stack_init

TMPDIR=$T "$src/bench/soak" --quick --builddir "$B" --json "$T/soak.jsonl" \
	>"$T/report.md" 2>"$T/soak.log"
rc=$?
sed 's/^/# /' "$T/report.md"
[ -s "$T/soak.jsonl" ]
ok $? "bench/soak --quick ran and wrote its samples and results"
[ -s "$T/soak.jsonl" ] || { sed 's/^/# /' "$T/soak.log"; done_testing; }

J=$T/soak.jsonl
waves=$(jq -s '[.[] | select(.soak != null and (.soak | test("^w[0-9]+-ws$")))] | length' "$J")
[ "$waves" -ge 5 ]
ok $? "at least 5 waves came and went ($waves)"
bad=$(jq -c 'select(.soak != null and (.soak | startswith("w"))) |
	select(.opened == 0 or .failed != 0 or .lost != 0 or .dup != 0 or .ooo != 0 or (.closed_early // 0) != 0
		or (.poll_errors // 0) != 0) | {soak, opened, failed, lost, dup, ooo, closed_early, poll_errors}' "$J")
[ -z "$bad" ]
ok $? "every wave: its clients opened, nothing lost, doubled or out of order, none closed early"
[ -z "$bad" ] || diag "$bad"
polls=$(jq -s '[.[] | select(.soak != null and (.soak | endswith("-poll"))) | .polls] | add // 0' "$J")
[ "$polls" -gt 0 ]
ok $? "the pollers polled ($polls polls)"

for k in ws sse; do
	row=$(jq -c --arg s "hold-$k" 'select(.soak == $s)' "$J")
	[ -n "$row" ] && jq -e '.opened > 0 and .lost == 0 and .dup == 0 and .ooo == 0 and .unrecovered == 0
		and .pub_unrecovered == 0 and .received > 0' <<<"$row" >/dev/null
	ok $? "held $k clients: the whole minute, nothing lost or doubled, every client back ($(jq -r '"\(.received) of \(.sent), reconnects \(.reconnect_total)"' <<<"$row" 2>/dev/null))"
	[ -n "$row" ] || diag "$(tail -5 "$T/soak.log")"
done
r=$(jq -s '[.[] | select(.soak == "hold-sse") | .reconnect_total] | add // 0' "$J")
[ "$r" -ge 100 ]
ok $? "the held SSE streams ended at sse_max_lifetime and resumed ($r reconnects of 100 clients)"

n=$(jq -s '[.[] | select(.at != null)] | length' "$J")
gone=$(grep -c 'process .* is gone' "$T/soak.log")
[ "$n" -ge 7 ] && [ "$gone" = 0 ]
ok $? "every process alive at each of the $n samples"
first=$(jq -s -c '[.[] | select(.at != null)] | first' "$J")
last=$(jq -s -c '[.[] | select(.at != null)] | last' "$J")
jq -e -n --argjson a "$first" --argjson z "$last" '$z.at == "end" and $z.ws_other <= $a.ws_other' >/dev/null
ok $? "herald-ws: its descriptors at the start once every client left, but for its Redis links ($(jq -r '"\(.ws_fds) (\(.ws_redis) Redis)"' <<<"$first") -> $(jq -r '"\(.ws_fds) (\(.ws_redis) Redis)"' <<<"$last"))"
jq -e -n --argjson a "$first" --argjson z "$last" '$z.fcgi_other <= $a.fcgi_other' >/dev/null
ok $? "herald-fcgi: the same, but for its Redis links and nginx's idle kept-alive connections ($(jq -r '"\(.fcgi_fds) (\(.fcgi_redis) Redis, \(.fcgi_idle) idle)"' <<<"$first") -> $(jq -r '"\(.fcgi_fds) (\(.fcgi_redis) Redis, \(.fcgi_idle) idle)"' <<<"$last"))"
is "$rc" 0 "bench/soak --quick exits 0"
[ "$rc" = 0 ] || sed 's/^/# /' "$T/soak.log" | tail -20
done_testing
