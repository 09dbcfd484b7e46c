#!/usr/bin/env bash
# rolling-restart.sh - restart Herald's processes one at a time, so that the
# service never runs without a herald-ws or a herald-fcgi (docs/operations.md,
# "Several nodes").
#
#   rolling-restart.sh [-r COMMAND] [-p URL] [-t SECONDS] NODE...
#
# NODE is KIND-N: ws-1, ws-2, fcgi-1 ... as nginx/herald-nodes.conf numbers
# the processes.  For each NODE, in the order given:
#   1. another NODE of the same kind must answer ready (else stop: restarting
#      this one would leave its kind without a process);
#   2. COMMAND restarts it: it must stop the process with SIGTERM, wait for
#      it to exit (the process closes its WebSocket connections with 1001,
#      ends its SSE streams and answers waiting long-polls first; the
#      browsers resume on the other processes), then start it again;
#   3. URL must answer 200 (the process is connected to Redis and ready),
#      within SECONDS; then the next NODE.
# In COMMAND and URL, %k is the kind (ws, fcgi) and %i the number.
#
#   -r COMMAND  default 'systemctl restart herald-%k@%i' (template units made
#               as docs/operations.md shows; systemctl stops with SIGTERM,
#               waits for the exit, starts and waits for READY=1).  Another
#               process manager: 'supervisorctl restart herald-%k-%i'.
#   -p URL      default http://127.0.0.1:8081/%k-%i/api/v1/notifications/health/ready,
#               the loopback server of nginx/herald-nodes.conf, which reaches
#               each process by its number
#   -t SECONDS  how long to wait for each to be ready (default 60)
#
# Exit status 0 when every NODE was restarted and is ready; 1 at the first
# that is not (the remaining ones are left alone), 2 on a usage error.
set -u

prog=rolling-restart.sh
cmd='systemctl restart herald-%k@%i'
url='http://127.0.0.1:8081/%k-%i/api/v1/notifications/health/ready'
timeout=60

usage() {
	echo "usage: $prog [-r COMMAND] [-p URL] [-t SECONDS] NODE... (NODE: ws-1, fcgi-2, ...)" >&2
	exit 2
}

while getopts r:p:t:h opt; do
	case $opt in
	r) cmd=$OPTARG ;;
	p) url=$OPTARG ;;
	t) timeout=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
case $timeout in '' | *[!0-9]*) usage ;; esac
for node in "$@"; do
	case $node in
	ws-[0-9]* | fcgi-[0-9]*) case ${node#*-} in *[!0-9]*) usage ;; esac ;;
	*) usage ;;
	esac
done
command -v curl >/dev/null 2>&1 || {
	echo "$prog: curl not found" >&2
	exit 2
}

# fill TEMPLATE NODE: TEMPLATE with %k and %i of NODE
fill() {
	local s=${1//%k/${2%%-*}}
	printf '%s' "${s//%i/${2#*-}}"
}

# ready NODE: 0 when its probe answers 200
ready() {
	[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$(fill "$url" "$1")")" = 200 ]
}

now_ms() { date +%s%3N; }

for node in "$@"; do
	kind=${node%%-*}
	other=
	for o in "$@"; do
		[ "$o" != "$node" ] && [ "${o%%-*}" = "$kind" ] && ready "$o" && {
			other=$o
			break
		}
	done
	if [ -z "$other" ]; then
		echo "$prog: $node: no other herald-$kind of the list is ready; restarting it would leave none" >&2
		exit 1
	fi
	t0=$(now_ms)
	run=$(fill "$cmd" "$node")
	if ! sh -c "$run"; then
		echo "$prog: $node: '$run' failed" >&2
		exit 1
	fi
	deadline=$(($(date +%s) + timeout))
	until ready "$node"; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "$prog: $node: not ready within ${timeout} s of '$run' ($(fill "$url" "$node"))" >&2
			exit 1
		fi
		sleep 0.2
	done
	t1=$(now_ms)
	echo "$node: restarted, ready after $(((t1 - t0) / 1000)).$(printf '%03d' $(((t1 - t0) % 1000))) s ($other served meanwhile)"
done
