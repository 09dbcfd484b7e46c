#!/bin/sh
# herald-publish against a real redis-server started here: output, exit
# statuses, stdin batches, configuration sources.  TAP on stdout.

. "$(dirname "$0")/lib.sh"

lib_init
PUB="$HERALD_BUILDDIR/herald-publish"
[ -x "$PUB" ] || skip_all "$PUB not built"
unset HERALD_CONFIG HERALD_REDIS_URL HERALD_CHANNEL_PREFIX HERALD_HISTORY_MAX HERALD_HISTORY_TTL \
	HERALD_IDEMPOTENCY_WINDOW
start_redis || skip_all "cannot start redis-server"

plan 43

# ids_increasing FILE: each line MS-SEQ, strictly increasing.
ids_increasing() {
	awk -F- 'NR > 1 && ($1 < ms || ($1 == ms && $2 <= seq)) { bad = 1 }
		 !/^[0-9]+-[0-9]+$/ { bad = 1 }
		 { ms = $1 + 0; seq = $2 + 0 } END { exit bad }' "$1"
}

# --- usage ------------------------------------------------------------------
"$PUB" --help >"$T/out" 2>&1
ok $? "--help exits 0"
grep -q '^Usage: herald-publish' "$T/out" && grep -q '^Exit status:' "$T/out" &&
	grep -q 'HERALD_REDIS_URL' "$T/out"
ok $? "--help shows usage, environment and exit statuses"
is "$("$PUB" --version)" "herald-publish $(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' \
	"$HERALD_BUILDDIR/config.h")" "--version"
"$PUB" >/dev/null 2>"$T/err"
is $? 2 "no USER: exit 2"
"$PUB" --bogus 42 '{}' >/dev/null 2>&1
is $? 2 "unknown option: exit 2"
"$PUB" -u redis://127.0.0.1:1 a b c >/dev/null 2>&1
is $? 2 "too many arguments: exit 2"
"$PUB" -u http://127.0.0.1 42 '{}' >/dev/null 2>"$T/err"
is $? 2 "bad redis URL: exit 2"
"$PUB" -u "$REDIS_URL" --check-config >"$T/out" 2>&1
is $? 0 "--check-config: valid configuration, exit 0"
HERALD_HISTORY_MAX=abc "$PUB" --check-config >/dev/null 2>"$T/err"
is $? 2 "--check-config: bad value, exit 2"
grep -q 'history_max' "$T/err"
ok $? "--check-config: names the key ($(cat "$T/err"))"

# --- one payload --------------------------------------------------------------
id=$("$PUB" -u "$REDIS_URL" 42 '{"title":"Meeting moved","at":"10:30"}')
is $? 0 "publish one payload"
echo "$id" | grep -Eq '^[0-9]+-[0-9]+$'
ok $? "prints the id ($id)"
ms=${id%-*}
is "$(rcli XRANGE notifications:42:history - + | sed -n 3p)" \
	"{\"id\":\"$id\",\"channel\":\"notifications:42\",\"ts\":$ms,\"data\":{\"title\":\"Meeting moved\",\"at\":\"10:30\"}}" \
	"the stream holds the envelope under that id"
ttl=$(rcli TTL notifications:42:history)
[ "$ttl" -gt 604000 ]
ok $? "history expiry set ($ttl s)"

"$PUB" -u "$REDIS_URL" 42 '{"a":NaN}' >"$T/out" 2>"$T/err"
is $? 1 "invalid JSON: exit 1"
grep -q '^herald-publish: payload: ' "$T/err"
ok $? "invalid JSON: says why ($(cat "$T/err"))"
is "$(rcli XLEN notifications:42:history)" 1 "invalid JSON: nothing published"
"$PUB" -u "$REDIS_URL" 'bad:user' '{}' >/dev/null 2>"$T/err"
is $? 1 "bad user id: exit 1"

# --- stdin --------------------------------------------------------------------
printf '{"n":1}\n\n{"n":2}\r\n   \n[3]\n"four"\n5' | "$PUB" -u "$REDIS_URL" u1 - >"$T/ids"
is $? 0 "stdin: exit 0"
is "$(wc -l <"$T/ids" | tr -d ' ')" 5 "stdin: one id per payload, blank lines skipped"
ids_increasing "$T/ids"
ok $? "stdin: ids increase"
is "$(rcli XLEN notifications:u1:history)" 5 "stdin: all published"
is "$(rcli XRANGE notifications:u1:history - + | sed -n 3p | sed 's/.*"data"://')" '{"n":1}}' \
	"stdin: CR and LF stripped, payload verbatim"

printf '{"n":1}\n{"n":2}\n{"n":3\n{"n":4}\n' | "$PUB" -u "$REDIS_URL" u2 >"$T/out" 2>"$T/err"
is $? 1 "bad line: exit 1"
grep -q '^herald-publish: line 3: payload: ' "$T/err"
ok $? "bad line: named by number ($(cat "$T/err"))"
is "$(rcli EXISTS notifications:u2:history)$(wc -c <"$T/out" | tr -d ' ')" 00 \
	"bad line: nothing published, nothing printed"

{ echo '{}'; head -c 1100000 /dev/zero | tr '\0' ' '; echo; } |
	"$PUB" -u "$REDIS_URL" u3 - >/dev/null 2>"$T/err"
is "$?:$(cat "$T/err")" "1:herald-publish: line 2: longer than 1 MiB" "line over 1 MiB refused"

seq 1 2500 | sed 's/.*/{"i":&}/' | "$PUB" -u "$REDIS_URL" u4 - >"$T/ids"
is "$?:$(wc -l <"$T/ids" | tr -d ' ')" "0:2500" "2500 lines in three pipelines"
ids_increasing "$T/ids"
ok $? "2500 lines: ids increase"
is "$(rcli XREVRANGE notifications:u4:history + - COUNT 1 | sed -n 1p)" "$(tail -1 "$T/ids")" \
	"2500 lines: the last line is the newest entry"

: | "$PUB" -u "$REDIS_URL" u5 >"$T/out"
is "$?:$(wc -c <"$T/out" | tr -d ' ')" "0:0" "empty stdin: nothing to do"

# --- idempotency key: the same command run again stores nothing ----------------
id1=$("$PUB" -u "$REDIS_URL" --idempotency-key invoice-81:paid k1 '{"paid":81}')
id2=$("$PUB" -u "$REDIS_URL" -k invoice-81:paid k1 '{"paid":81}')
is "$?:$id2" "0:$id1" "--idempotency-key: run twice, the same id"
is "$(rcli XLEN notifications:k1:history)" 1 "--idempotency-key: stored once"
ttl=$(rcli TTL notifications:k1:history:idem:invoice-81:paid)
[ "$ttl" -gt 590 ] && [ "$ttl" -le 600 ]
ok $? "--idempotency-key: the record lives idempotency_window ($ttl s)"
"$PUB" -u "$REDIS_URL" -k invoice-81:paid k1 '{"paid":82}' >/dev/null 2>"$T/err"
is "$?:$(cat "$T/err")" \
	"3:herald-publish: idempotency key: already used for another payload" \
	"--idempotency-key: the same key for another payload is refused"
"$PUB" -u "$REDIS_URL" -k 'no spaces' k1 '{}' >/dev/null 2>"$T/err"
is "$?:$(cat "$T/err")" \
	"2:herald-publish: idempotency key: must match [A-Za-z0-9_.:-]{1,128}" \
	"--idempotency-key: a malformed key, exit 2"
seq 1 1500 | sed 's/.*/{"i":&}/' >"$T/in"
HERALD_HISTORY_MAX=5000 "$PUB" -u "$REDIS_URL" -k batch-1 k2 - <"$T/in" >"$T/ids1"
HERALD_HISTORY_MAX=5000 "$PUB" -u "$REDIS_URL" -k batch-1 k2 - <"$T/in" >"$T/ids2"
is "$?:$(wc -l <"$T/ids2" | tr -d ' ')" "0:1500" "stdin with a key, run twice: 1500 ids"
cmp -s "$T/ids1" "$T/ids2"
ok $? "stdin with a key, run twice: the same ids, in order"
is "$(rcli XLEN notifications:k2:history)" 1500 "stdin with a key, run twice: stored once"
is "$(rcli EXISTS notifications:k2:history:idem:batch-1:0 notifications:k2:history:idem:batch-1:1499)" \
	2 "stdin with a key: payload N (from 0) is recorded as KEY:N, across pipelines"

# --- configuration --------------------------------------------------------------
HERALD_REDIS_URL=$REDIS_URL "$PUB" envuser '{}' >/dev/null
is "$?:$(rcli XLEN notifications:envuser:history)" "0:1" "HERALD_REDIS_URL honoured"

printf 'redis_url = %s\nchannel_prefix = app\n' "$REDIS_URL" >"$T/herald.conf"
"$PUB" --config "$T/herald.conf" 7 '{}' >/dev/null
is "$?:$(rcli XLEN app:7:history)" "0:1" "--config: redis_url and channel_prefix from the file"

# --- Redis down -------------------------------------------------------------------
url=$REDIS_URL
port=$REDIS_PORT
stop_redis
"$PUB" -u "$url" 42 '{}' >/dev/null 2>"$T/err"
is "$?:$(cat "$T/err")" "3:herald-publish: connect(127.0.0.1:$port) failed: Connection refused" \
	"Redis down: exit 3 with the reason"

done_testing
