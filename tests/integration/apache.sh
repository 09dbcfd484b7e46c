#!/usr/bin/env bash
# The legacy hosts (issue 15): the shipped nginx/apache-herald.conf in a real
# Apache httpd 2.4 (Debian's apache2: mod_proxy_fcgi, mod_proxy_wstunnel,
# mod_cgid) and nginx/lighttpd-herald-fastcgi.conf in a real lighttpd
# (mod_fastcgi), with a real redis-server, herald-ws and herald-fcgi.  Each
# server runs from a scratch directory of its own on a port picked here,
# 127.0.0.1 only; no system configuration is read or touched.  TAP.
#
# Checked through each host: an SSE event arrives unbuffered (its first
# bytes within a second, an event within a second of its publish, the
# heartbeats), a poll and a long-poll answer, health and the probes;
# through Apache also the WebSocket upgrade (101, a notification arrives)
# and polls under plain CGI (-D HERALD_CGI).
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/tests/integration/lib.sh"
. "$src/scripts/stack.sh"
. "$src/tests/integration/httpd.sh"

B=$HERALD_BUILDDIR
FCGI=$B/herald-fcgi
WS=$B/herald-ws
PUB=$B/herald-publish
CLI=$B/tests/integration/ws_client
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
for f in "$FCGI" "$WS" "$PUB" "$CLI"; do [ -x "$f" ] || skip_all "$f not built"; done
command -v curl >/dev/null 2>&1 || skip_all "curl not installed"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
have_apache=0
apache_available && have_apache=1
have_lighttpd=0
[ -x "$LIGHTTPD" ] && have_lighttpd=1
[ $have_apache = 1 ] || [ $have_lighttpd = 1 ] ||
	skip_all "neither apache2 (apt-get install apache2) nor lighttpd installed"
# The caller's configuration keys would change what the servers do.
lib_clean_env
lib_init
chmod 755 "$T" # the hosts' workers may run as another user

SECRET=test-secret-$$
FCGI_PID=
WS_PID=
LT_PID=
_host_cleanup() {
	apache_stop
	for p in $LT_PID $FCGI_PID $WS_PID; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	_lib_cleanup
}
trap _host_cleanup EXIT

start_redis || skip_all "cannot start redis-server"
export HERALD_REDIS_URL=$REDIS_URL HERALD_JWT_SECRET=$SECRET HERALD_SOCKET_MODE=0666
export HERALD_HEARTBEAT=1 HERALD_LOG_LEVEL=info HERALD_PUBLISH_KEY=pubkey-$$-0123456789abcdef
printf 'redis_url = %s\njwt_secret = %s\n' "$REDIS_URL" "$SECRET" >"$T/herald.conf"
chmod 644 "$T/herald.conf" # read by the CGI program, as the host's user

"$FCGI" --listen "unix:$T/fcgi.sock" >>"$T/fcgi.log" 2>&1 &
FCGI_PID=$!
for _i in $(seq 200); do [ -S "$T/fcgi.sock" ] && break; sleep 0.05; done
[ -S "$T/fcgi.sock" ]
ok $? "herald-fcgi listens on unix:$T/fcgi.sock"
"$WS" --listen "unix:$T/ws.sock" >>"$T/ws.log" 2>&1 &
WS_PID=$!
for _i in $(seq 200); do [ -S "$T/ws.sock" ] && break; sleep 0.05; done
[ -S "$T/ws.sock" ]
ok $? "herald-ws listens on unix:$T/ws.sock"

pub() { "$PUB" "$@"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for FILE PATTERN [TENTHS]: until a line of FILE matches
wait_for() {
	local i=0
	while [ $i -lt "${3:-50}" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
# wait_ms FILE PATTERN LIMIT_MS: until FILE matches; prints the ms waited
wait_ms() {
	local t0 t
	t0=$(now_ms)
	while :; do
		t=$(now_ms)
		grep -q "$2" "$1" 2>/dev/null && break
		[ $((t - t0)) -ge "$3" ] && break
		sleep 0.01
	done
	echo $((t - t0))
}

# transports NAME BASE_URL USER: SSE (unbuffered), poll, long-poll, health
# and the probes through one host.
transports() {
	local name=$1 u=$2 user=$3 tok c id ms body st t
	tok=$(herald_token "$SECRET" "$user" 3600)
	# SSE, the token in Authorization (the host must pass it on).
	: >"$T/$name.sse"
	t0=$(now_ms)
	# Accept-Encoding as browsers send it: a gzip filter would hold events back.
	curl -s -N --max-time 20 -H "Authorization: Bearer $tok" -H 'Accept-Encoding: gzip' \
		-D "$T/$name.sse.h" \
		"$u/api/v1/sse/notifications" >"$T/$name.sse" &
	c=$!
	# Buffered, the first bytes would come only when the 20 s stream ends:
	# a bound of 8 s tells the two apart on a busy machine too.
	ms=$(wait_ms "$T/$name.sse" "^retry: 3000" 8000)
	[ "$ms" -lt 8000 ]
	ok $? "$name: SSE stream's first bytes while it is open ($ms ms): not buffered"
	grep -qi '^content-type: text/event-stream' "$T/$name.sse.h"
	ok $? "$name: SSE answers text/event-stream"
	wait_subscribed "$user"
	t0=$(now_ms)
	id=$(pub "$user" '{"via":"'"$name"'"}')
	ms=$(wait_ms "$T/$name.sse" "^id: $id" 8000)
	grep -q "^data: {\"id\":\"$id\",\"channel\":\"notifications:$user\"" "$T/$name.sse"
	ok $? "$name: a published event arrives on the SSE stream"
	[ "$ms" -lt 8000 ]
	ok $? "$name: ... while the stream is open ($ms ms after its publish): each event is flushed"
	wait_for "$T/$name.sse" "^: heartbeat" 40
	ok $? "$name: SSE heartbeats arrive (heartbeat = 1 s)"
	kill $c 2>/dev/null
	wait $c 2>/dev/null
	# Poll, the token in the query and in Authorization.
	body=$(curl -s --max-time 5 "$u/api/v1/notifications/poll?token=$tok&limit=5")
	case $body in *"\"id\":\"$id\""*'"cursor":"'*) r=0 ;; *) r=1; diag "$body" ;; esac
	ok $r "$name: poll with ?token= answers the notification"
	body=$(curl -s --max-time 5 -H "Authorization: Bearer $tok" "$u/api/v1/notifications/poll")
	case $body in *"\"id\":\"$id\""*) r=0 ;; *) r=1; diag "$body" ;; esac
	ok $r "$name: poll with Authorization: Bearer answers"
	is "$(code "$u/api/v1/notifications/poll")" 401 "$name: poll without a token: 401"
	# A ticket (POST, the token in Authorization, an empty body as
	# browsers send it: lighttpd answers 411 without a Content-Length), then
	# SSE with ?ticket=.
	body=$(curl -s --max-time 5 -X POST -H 'Content-Length: 0' -H "Authorization: Bearer $tok" \
		"$u/api/v1/notifications/ticket")
	t=$(printf '%s\n' "$body" | sed -n 's/^{"ticket":"\([A-Za-z0-9_-]*\)","expires_in":[0-9]*}$/\1/p')
	[ -n "$t" ] || diag "$body"
	[ -n "$t" ]
	ok $? "$name: POST /api/v1/notifications/ticket with Authorization answers a ticket"
	curl -s -N --max-time 1 "$u/api/v1/sse/notifications?ticket=$t" >"$T/$name.tk"
	grep -q '^retry: 3000' "$T/$name.tk"
	ok $? "$name: SSE with ?ticket= opens the stream"
	# Long-poll: waits, and answers as soon as something is published.
	curl -s --max-time 10 "$u/api/v1/notifications/poll?token=$tok&since=$id&wait=8" >"$T/$name.lp" &
	c=$!
	wait_subscribed "$user"
	sleep 0.3
	t0=$(now_ms)
	id=$(pub "$user" '{"long":"poll"}')
	wait $c
	ms=$(($(now_ms) - t0))
	# The notification in the answer: the poll did not wait out its 8 s
	# (that answer is empty).  No bound on ms: the machine may be busy.
	grep -q "\"id\":\"$id\"" "$T/$name.lp"
	ok $? "$name: a long-poll answers when a notification is published ($ms ms)"
	is "$(code "$u/api/v1/notifications/health")" 200 "$name: health 200"
	# The probes, once herald-fcgi's handler answers them.
	st=$(curl -s -o "$T/$name.live" -w '%{http_code}' --max-time 5 "$u/api/v1/notifications/health/live")
	if grep -q '"probe":"live"' "$T/$name.live"; then
		is "$st $(code "$u/api/v1/notifications/health/ready") $(curl -s "$u/api/v1/notifications/health/ready")" \
			'200 200 {"status":"ok","probe":"ready"}' "$name: live 200, ready 200"
	else
		ok 0 "# SKIP $name: herald-fcgi does not answer health/live yet ($st)"
	fi
}

# --- Apache httpd 2.4 ---------------------------------------------------------------
if [ $have_apache = 1 ]; then
	A=$T/apache
	AP=$(port_pick)
	export APACHE_CGI_BIN=$FCGI APACHE_CGI_CONFIG=$T/herald.conf
	apache_test "$src/nginx/apache-herald.conf" "$A" "$AP" "$T" "$src/web"
	ok $? "apache2 -t accepts nginx/apache-herald.conf"
	apache_start "$src/nginx/apache-herald.conf" "$A" "$AP" "$T" "$src/web"
	ok $? "apache2 starts on 127.0.0.1:$AP"
	AU=http://127.0.0.1:$AP
	transports apache "$AU" ap1

	# WebSocket through mod_proxy_wstunnel.
	curl -s -i -N --max-time 2 -H "Connection: Upgrade" -H "Upgrade: websocket" \
		-H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
		"$AU/api/v1/ws/notifications?token=$(herald_token "$SECRET" ap2 3600)" >"$T/ap.up" 2>&1
	head -1 "$T/ap.up" | grep -q '^HTTP/1.1 101'
	ok $? "apache: the WebSocket upgrade answers 101"
	grep -qi '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=' "$T/ap.up"
	ok $? "apache: Sec-WebSocket-Accept is herald-ws's"
	"$CLI" -n 1 -t 10 "127.0.0.1:$AP" \
		"/api/v1/ws/notifications?token=$(herald_token "$SECRET" ap2 3600)" >"$T/ap.ws" &
	c=$!
	wait_for "$T/ap.ws" "^status 101"
	wait_subscribed ap2
	id=$(pub ap2 '{"over":"wstunnel"}')
	wait $c
	is "$(sed -n 2p "$T/ap.ws")" \
		"text {\"id\":\"$id\",\"channel\":\"notifications:ap2\",\"ts\":${id%-*},\"data\":{\"over\":\"wstunnel\"}}" \
		"apache: a notification arrives over the WebSocket"

	is "$(code "$AU/api/v1/notifications/metrics")" 200 "apache: metrics answer from this host"
	body=$(curl -s --max-time 5 -H "Authorization: Bearer $HERALD_PUBLISH_KEY" \
		--data-binary '{"via":"post"}' "$AU/api/v1/notifications/publish?user=ap3")
	case $body in '{"id":"'*) r=0 ;; *) r=1; diag "$body" ;; esac
	ok $r "apache: POST publish from this host answers the id"
	is "$(curl -s --max-time 5 "$AU/herald.js" -o /dev/null -w '%{http_code} %{content_type}')" \
		"200 text/javascript; charset=utf-8" "apache: herald.js is served as JavaScript"
	apache_stop
	! grep -q 'token=' "$A/herald.access.log"
	ok $? "apache: no token in the access log"

	# Polls and health through plain CGI (mod_cgid).
	apache_start "$src/nginx/apache-herald.conf" "$A" "$AP" "$T" "$src/web" -DHERALD_CGI
	ok $? "apache2 starts with -D HERALD_CGI"
	tok=$(herald_token "$SECRET" ap1 3600)
	body=$(curl -s --max-time 10 "$AU/api/v1/notifications/poll?token=$tok&limit=1")
	case $body in *'"notifications":[{'*) r=0 ;; *) r=1; diag "$body"; diag "$(tail -5 "$A/error.log")" ;; esac
	ok $r "apache mod_cgid runs herald-fcgi as CGI: poll"
	body=$(curl -s --max-time 10 -H "Authorization: Bearer $tok" "$AU/api/v1/notifications/poll?limit=1")
	case $body in *'"notifications":[{'*) r=0 ;; *) r=1; diag "$body" ;; esac
	ok $r "apache mod_cgid: poll with Authorization: Bearer (CGIPassAuth)"
	body=$(curl -s --max-time 10 "$AU/api/v1/notifications/health")
	case $body in *'"status":"ok"'*'"mode":"cgi"'*) r=0 ;; *) r=1; diag "$body" ;; esac
	ok $r "apache mod_cgid: health answered by the CGI program"
	apache_stop
else
	ok 0 "# SKIP apache2 not installed (apt-get install apache2)"
fi

# --- lighttpd, mod_fastcgi ---------------------------------------------------------------
if [ $have_lighttpd = 1 ]; then
	L=$T/lighttpd
	mkdir -p "$L"
	LP=$(port_pick)
	sed -e "s#server.port = 8081#server.port = $LP#" -e "s#/var/www/html#$L#" \
		-e "s#/var/log/lighttpd/herald-error.log#$L/error.log#" \
		-e "s#/run/herald/fcgi.sock#$T/fcgi.sock#g" \
		"$src/nginx/lighttpd-herald-fastcgi.conf" >"$L/lighttpd.conf"
	"$LIGHTTPD" -tt -f "$L/lighttpd.conf" >"$L/t.log" 2>&1
	r=$?
	[ $r = 0 ] || diag "$(cat "$L/t.log")"
	ok $r "lighttpd -tt accepts nginx/lighttpd-herald-fastcgi.conf"
	"$LIGHTTPD" -D -f "$L/lighttpd.conf" >"$L/stdout.log" 2>&1 &
	LT_PID=$!
	port_wait "$LP" "$LT_PID"
	ok $? "lighttpd starts on 127.0.0.1:$LP"
	transports lighttpd "http://127.0.0.1:$LP" lt1
	is "$(code "http://127.0.0.1:$LP/api/v1/notifications/metrics")" 404 \
		"lighttpd: metrics are not exposed"
	kill "$LT_PID"
	wait "$LT_PID" 2>/dev/null
	LT_PID=
else
	ok 0 "# SKIP lighttpd not installed"
fi
done_testing
