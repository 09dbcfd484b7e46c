#!/bin/sh
# contrib/grafana/herald.json, the Grafana dashboard (issue 15): well-formed
# JSON, a dashboard Grafana can import (panels with unique ids, queries on
# the data source variable), and every herald_* metric its queries name is
# one the programs export (a name in src/metrics.c, ws/server.c or fcgi/):
# a renamed metric breaks this test, not a dashboard in production.  TAP.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/integration/lib.sh"

D=$top/contrib/grafana/herald.json
command -v python3 >/dev/null 2>&1 || skip_all "python3 not installed"
[ -f "$D" ] || skip_all "$D missing"
T=$(mktemp -d "${TMPDIR:-/tmp}/herald-test.XXXXXX") || skip_all "mktemp failed"
trap 'rm -rf "$T"' EXIT

python3 -m json.tool "$D" >/dev/null 2>"$T/err"
ok $? "python3 -m json.tool: well-formed JSON"
[ -s "$T/err" ] && diag "$(cat "$T/err")"

# The queries, one a line, and the shape Grafana needs.
python3 - "$D" >"$T/exprs" 2>"$T/shape" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
errs = []
for k in ("title", "uid", "panels", "templating", "schemaVersion"):
    if k not in d:
        errs.append("no " + k)
ids = []
def walk(ps):
    for p in ps:
        ids.append(p.get("id"))
        if "gridPos" not in p:
            errs.append("panel %s: no gridPos" % p.get("id"))
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errs.append("panel %s: a query not on ${datasource}" % p.get("id"))
            print(t["expr"])
        walk(p.get("panels", []))
walk(d.get("panels", []))
if len(ids) != len(set(ids)) or None in ids:
    errs.append("panel ids not unique")
names = [v["name"] for v in d.get("templating", {}).get("list", [])]
for v in ("datasource", "job", "instance"):
    if v not in names:
        errs.append("no $" + v + " variable")
for e in errs:
    print(e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
r=$?
[ -s "$T/shape" ] && diag "$(cat "$T/shape")"
ok $r "a dashboard: title, uid, unique panel ids, queries on \$datasource, \$job and \$instance"
n=$(wc -l <"$T/exprs")
[ "$n" -ge 20 ]
ok $? "it has queries ($n)"

# Every metric name the queries use, against the programs' sources.
grep -o 'herald_[a-z0-9_]*' "$T/exprs" | sort -u >"$T/names"
missing=
for m in $(cat "$T/names"); do
	grep -qw "$m" "$top/src/metrics.c" "$top/ws/server.c" "$top"/fcgi/*.c 2>/dev/null ||
		missing="$missing $m"
done
is "${missing:-none}" none "every metric it names is exported ($(wc -l <"$T/names") names)"

# The panels the issue asks for, by the metrics they show.
for m in herald_ws_connections herald_fcgi_streams herald_delivered_total herald_queued_bytes \
	herald_slow_closed_total herald_slow_caught_up_total herald_redis_up herald_redis_canary_rtt_seconds \
	herald_replays_total herald_resets_total; do
	grep -qx "$m" "$T/names"
	ok $? "shows $m"
done
done_testing
