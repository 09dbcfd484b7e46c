#!/usr/bin/env bash
# deb.sh - the Debian package's contents and its installed programs (issue 15).
#
#   tests/integration/deb.sh [HERALD_DEB]
#
# HERALD_DEB: a herald_<version>_<arch>.deb (`make deb` writes it into the
# build directory).  Without it the package is built here first, with
# `scripts/deb.sh` (lintian included) and DEB_BUILD_OPTIONS="nocheck
# parallel=2", into the scratch directory (about 90 s on 2 cores).
#
# Not in `make check` (building a package there would also run inside
# distcheck): `scripts/dev.sh test` runs `make deb` and then this script with
# that .deb, after distcheck.  By hand, from a build directory:
#   make deb && HERALD_BUILDDIR=$PWD ../tests/integration/deb.sh herald_*.deb
# HERALD_BUILDDIR gives tests/integration/ws_client (the WebSocket probe).
#
# What it checks, TAP on stdout:
# - `dpkg-deb -c`: every file of the layout docs/operations.md promises is in
#   the archive, with its mode and owner (root:root in the archive; nothing
#   else, nothing world-writable); /etc/herald/herald.conf is 0640, not
#   world-readable.  Owners and modes that postinst sets at install time
#   (/etc/herald/herald.conf root:herald 0640, /etc/herald root:herald 0750,
#   the herald system user) cannot be seen after `dpkg -x`: the script
#   checks that postinst (`dpkg-deb -e`) says so.  The socket directory
#   /run/herald is not in the package: the units create it
#   (RuntimeDirectory=herald, 0755) and give the sockets herald:www-data
#   0660; the units are checked for that, and the sockets the programs
#   create here for the mode and group.
# - `dpkg-deb -e`: conffiles lists /etc/herald/herald.conf and
#   /etc/logrotate.d/herald.
# - `dpkg -x` into the scratch directory, then the extracted herald-ws and
#   herald-fcgi run as their units start them (ExecStart= and Environment=
#   of the extracted units, with /usr/bin, /etc/herald and /run/herald moved
#   into the scratch directory) with the installed herald.conf, copied with
#   redis_url (a redis-server started here on a free 127.0.0.1 port) and
#   jwt_secret filled in; nginx serves them twice, on free ports: once with
#   the installed example site (usr/share/herald/nginx/herald.conf), once
#   with the installed snippets in a server {} of its own.  When run as
#   root, nginx's workers run as www-data, as on Debian, so the sockets'
#   herald:www-data 0660 is what lets them in.  Through each: health, live
#   and ready 200, the web client, a WebSocket upgrade 101 with a token
#   that then delivers a notification published with the extracted
#   herald-publish, an SSE stream that delivers one, and a poll 200.

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../../scripts/stack.sh"

top=$(cd "$(dirname "$0")/../.." && pwd)
lib_init
chmod 755 "$T" # nginx's workers (www-data or nobody) reach the sockets inside

for t in dpkg-deb curl openssl; do
	command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
done
command -v "$nginx_bin" >/dev/null 2>&1 || skip_all "nginx not installed"
WSC=$HERALD_BUILDDIR/tests/integration/ws_client
[ -x "$WSC" ] || skip_all "$WSC not built (make tests/integration/ws_client)"
lib_clean_env

# --- the package -----------------------------------------------------------
DEB=${1:-}
if [ -z "$DEB" ]; then
	echo "# building the package: scripts/deb.sh $T/deb (log: $T/deb/dpkg-buildpackage.log)"
	DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-"nocheck parallel=2"} \
		"$top/scripts/deb.sh" "$T/deb" >"$T/deb.out" 2>&1
	rc=$?
	ok $rc "scripts/deb.sh builds the package, lintian without errors"
	[ $rc = 0 ] || { sed 's/^/# /' "$T/deb.out"; done_testing; }
	DEB=$(ls "$T"/deb/herald_*.deb 2>/dev/null | head -1)
fi
[ -f "$DEB" ] || { echo "Bail out! no package: '$DEB'"; exit 1; }
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
echo "# $DEB"
VERSION=$(dpkg-deb -f "$DEB" Version)
is "$(dpkg-deb -f "$DEB" Package)" herald "the package is herald ($VERSION, $(dpkg-deb -f "$DEB" Architecture))"
dpkg-deb -f "$DEB" Depends | grep -qw adduser
ok $? "Depends: adduser (postinst creates the herald user)"

# --- dpkg-deb -c: the layout (docs/operations.md, "Installing the package") --
dpkg-deb -c "$DEB" >"$T/contents" || { echo "Bail out! dpkg-deb -c failed"; exit 1; }
# "MODE OWNER PATH" for each entry, PATH without the leading "." and the
# trailing "/" of directories.
awk '{ p = $6; sub(/^\./, "", p); if (p != "/") sub(/\/$/, "", p); print $1, $2, p }' \
	"$T/contents" >"$T/entries"

# want MODE PATH...: each PATH is in the archive with MODE (ls -l form) and
# owner root/root.
want() {
	local mode=$1 p got
	shift
	for p in "$@"; do
		got=$(awk -v p="$p" '$3 == p { print $1, $2 }' "$T/entries")
		is "$got" "$mode root/root" "$p ($mode root/root)"
	done
}
BIN=(herald-ws herald-fcgi herald-publish herald-bench herald-doctor)
want -rwxr-xr-x "${BIN[@]/#//usr/bin/}"
# shellcheck disable=SC2046
want -rw-r--r-- $(printf '/usr/share/man/man1/%s.1.gz ' "${BIN[@]}")
want -rw-r----- /etc/herald/herald.conf
want drwxr-xr-x /etc/herald
want -rw-r--r-- /etc/logrotate.d/herald \
	/lib/systemd/system/herald-ws.service /lib/systemd/system/herald-fcgi.service \
	/usr/share/herald/nginx/herald.conf /usr/share/herald/nginx/herald-legacy.conf \
	/usr/share/herald/nginx/herald-stream.conf /usr/share/herald/nginx/herald-nodes.conf \
	/usr/share/herald/nginx/snippets/herald-http.conf /usr/share/herald/nginx/snippets/herald-ws.conf \
	/usr/share/herald/nginx/snippets/herald-fcgi.conf /usr/share/herald/nginx/snippets/herald-web.conf \
	/usr/share/herald/web/herald.js /usr/share/herald/web/herald.classic.js \
	/usr/share/herald/web/index.html /usr/share/herald/web/demo.js /usr/share/herald/web/demo.css \
	/usr/share/herald/apache/apache-herald.conf \
	/usr/share/herald/lighttpd/lighttpd-herald-fastcgi.conf /usr/share/herald/lighttpd/lighttpd-herald.conf \
	/usr/share/herald/grafana/herald.json \
	/usr/share/doc/herald/copyright /usr/share/doc/herald/changelog.gz \
	/usr/share/doc/herald/protocol.md.gz /usr/share/doc/herald/client.md.gz \
	/usr/share/doc/herald/operations.md.gz /usr/share/doc/herald/publish.lua.gz \
	/usr/share/lintian/overrides/herald

# Nothing outside the layout (documentation may grow under /usr/share/doc/herald).
layout_re='^/(usr/bin/herald-(ws|fcgi|publish|bench|doctor)|usr/share/man/man1/herald-(ws|fcgi|publish|bench|doctor)\.1\.gz|etc/herald/herald\.conf|etc/logrotate\.d/herald|lib/systemd/system/herald-(ws|fcgi)\.service|usr/share/herald/(nginx|nginx/snippets|web|apache|lighttpd|grafana)/[^/]+|usr/share/doc/herald/[^/]+|usr/share/lintian/overrides/herald)$'
extra=$(awk '$1 !~ /^d/ { print $3 }' "$T/entries" | grep -Ev "$layout_re")
is "$extra" "" "no file outside the documented layout"
bad=$(awk '$2 != "root/root" || $1 ~ /^.......?.w/ || $1 ~ /^-.*[sS]/ { print }' "$T/entries")
is "$bad" "" "every entry root/root, none world-writable, no setuid/setgid"
awk '$3 == "/etc/herald/herald.conf" { exit !($1 ~ /^.......---$/) }' "$T/entries"
ok $? "herald.conf is not world-readable in the archive (it may hold jwt_secret)"

# --- dpkg-deb -e: conffiles and what postinst does at install time ----------
dpkg-deb -e "$DEB" "$T/control"
is "$(sort "$T/control/conffiles" 2>/dev/null | tr '\n' ' ')" "/etc/herald/herald.conf /etc/logrotate.d/herald " \
	"conffiles: /etc/herald/herald.conf and /etc/logrotate.d/herald"
# Owners set by postinst are not in the archive: dpkg -x cannot show them.
PI=$T/control/postinst
# (continuation lines joined)
sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$PI" 2>/dev/null | grep -q 'adduser --system --group .* herald$'
ok $? "postinst creates the herald system user and group (adduser --system --group)"
grep -q 'chown root:herald /etc/herald/herald.conf' "$PI" && grep -q 'chmod 0640 /etc/herald/herald.conf' "$PI"
ok $? "postinst makes /etc/herald/herald.conf root:herald 0640 (not visible after dpkg -x)"
grep -q 'chown root:herald /etc/herald$' "$PI" && grep -q 'chmod 0750 /etc/herald$' "$PI"
ok $? "postinst makes /etc/herald root:herald 0750 (not visible after dpkg -x)"
grep -q 'dpkg-statoverride --list /etc/herald/herald.conf' "$PI"
ok $? "postinst leaves an admin's dpkg-statoverride alone"

# --- dpkg -x ----------------------------------------------------------------
X=$T/root
dpkg -x "$DEB" "$X"
ok $? "dpkg -x into the scratch directory"
is "$(stat -c %a "$X/etc/herald/herald.conf")" 640 "extracted herald.conf is 0640"
cmp -s "$X/etc/herald/herald.conf" "$top/herald.conf.example"
ok $? "the installed herald.conf is herald.conf.example"
for b in "${BIN[@]}"; do
	[ -x "$X/usr/bin/$b" ] || { ok 1 "$b is executable"; continue; }
	gzip -dc "$X/usr/share/man/man1/$b.1.gz" 2>/dev/null | grep -q '^\.TH'
	ok $? "man page $b.1.gz is a roff page"
done
for b in herald-ws herald-fcgi herald-publish; do
	miss=$(ldd "$X/usr/bin/$b" 2>&1 | grep 'not found')
	is "$miss" "" "$b: every shared library found"
	"$X/usr/bin/$b" --version 2>&1 | grep -qF "${VERSION%%-*}"
	ok $? "$b --version says ${VERSION%%-*}"
done
[ -s "$X/usr/share/herald/web/herald.js" ] && grep -q 'export' "$X/usr/share/herald/web/herald.js"
ok $? "web/herald.js is the ES module"

# The units: how the socket directory and the sockets are made.
for p in ws fcgi; do
	u=$X/lib/systemd/system/herald-$p.service
	for w in 'RuntimeDirectory=herald' 'RuntimeDirectoryMode=0755' 'RuntimeDirectoryPreserve=yes' \
		'User=herald' 'HERALD_SOCKET_MODE=0660' 'HERALD_SOCKET_OWNER=:www-data' \
		"ExecStart=/usr/bin/herald-$p --config /etc/herald/herald.conf --listen unix:/run/herald/$p.sock"; do
		grep -qF -- "$w" "$u"
		ok $? "herald-$p.service: $w"
	done
done

# --- the installed programs with the installed configuration ---------------
start_redis || { echo "Bail out! cannot start redis-server"; exit 1; }
SECRET=deb-test-secret-$$-0123456789abcdef
CONF=$T/etc/herald/herald.conf
mkdir -p "$T/etc/herald" "$T/run/herald" "$T/log"
chmod 755 "$T/run/herald" # RuntimeDirectoryMode=0755
cp -p "$X/etc/herald/herald.conf" "$CONF"
# As an operator would with sudoedit: the two keys the file asks for.
sed -i -e "s|^# redis_url = .*|redis_url = $REDIS_URL|" \
	-e "s|^# jwt_secret =.*|jwt_secret = $SECRET|" "$CONF"
grep -q "^redis_url = $REDIS_URL\$" "$CONF" && grep -q "^jwt_secret = $SECRET\$" "$CONF"
ok $? "the installed herald.conf has redis_url and jwt_secret lines to fill in"

# rehome: the installed paths, moved into the scratch directory.
rehome() {
	sed -e "s#/usr/bin/#$X/usr/bin/#g" -e "s#/etc/herald/#$T/etc/herald/#g" \
	    -e "s#/run/herald/#$T/run/herald/#g" -e "s#/usr/share/herald/#$X/usr/share/herald/#g" \
	    -e "s#/var/log/nginx/#$T/log/#g"
}
PIDS=()
NGX_PIDS=()
cleanup_deb() {
	local p
	for p in "${NGX_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${NGX_PIDS[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	_lib_cleanup
}
trap cleanup_deb EXIT

"$X/usr/bin/herald-ws" --config "$CONF" --check-config >"$T/check.out" 2>&1
rc=$?
ok $rc "herald-ws --check-config accepts the installed configuration"
[ $rc = 0 ] || sed 's/^/# /' "$T/check.out"

# The unit's Environment= and ExecStart=, rehomed.  Not root: nginx's
# workers cannot be www-data, so the sockets are 0666 instead.
for p in ws fcgi; do
	u=$X/lib/systemd/system/herald-$p.service
	envs=$(sed -n 's/^Environment=//p' "$u")
	cmd=$(sed -n 's/^ExecStart=//p' "$u" | rehome)
	[ "$(id -u)" = 0 ] || envs="HERALD_SOCKET_MODE=0666"
	echo "# herald-$p: $envs $cmd"
	# shellcheck disable=SC2086
	env $envs $cmd >"$T/log/$p.log" 2>&1 &
	PIDS+=($!)
	_stack_wait_sock "$T/run/herald/$p.sock" "$!" "$T/log/$p.log"
	ok $? "the installed herald-$p starts as its unit says, on unix:run/herald/$p.sock"
	if [ "$(id -u)" = 0 ]; then
		is "$(stat -c '%a %G' "$T/run/herald/$p.sock" 2>/dev/null)" "660 www-data" \
			"$p.sock is 0660, group www-data (the unit's HERALD_SOCKET_MODE/OWNER)"
	fi
done

# ngx_start NAME PORT SERVER_CONF: nginx with SERVER_CONF in http {}; as
# Debian runs it (workers as www-data) when root.
ngx_start() {
	local d=$T/ngx-$1 user=
	[ "$(id -u)" = 0 ] && user="user www-data;"
	nginx_main_conf "$d" "$3" "$user" "" 256
	"$nginx_bin" -t -q -p "$d" -c "$d/nginx.conf" 2>"$d/t.err"
	ok $? "nginx -t: $1"
	[ -s "$d/t.err" ] && sed 's/^/# /' "$d/t.err"
	"$nginx_bin" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' 2>>"$d/logs/stderr.log" &
	NGX_PIDS+=($!)
	port_wait "$2" "$!"
	ok $? "nginx ($1) listens on 127.0.0.1:$2"
}

# The example site, as /etc/nginx/sites-enabled/herald would include it.
SITE_PORT=$(port_pick)
rehome <"$X/usr/share/herald/nginx/herald.conf" |
	sed "s#listen 8080;#listen 127.0.0.1:$SITE_PORT;#" >"$T/site.conf"
grep -q "listen 8080;" "$X/usr/share/herald/nginx/herald.conf" && grep -q "listen 127.0.0.1:$SITE_PORT;" "$T/site.conf"
ok $? "the example site listens on 8080 (moved to $SITE_PORT here)"
grep -q 'server unix:/run/herald/ws.sock;' "$X/usr/share/herald/nginx/herald.conf" &&
	grep -q 'server unix:/run/herald/fcgi.sock;' "$X/usr/share/herald/nginx/herald.conf"
ok $? "the example site's upstreams are the units' sockets in /run/herald"
ngx_start site "$SITE_PORT" "$T/site.conf"

# The snippets, in a server {} of one's own.
SNIP_PORT=$(port_pick)
S=$X/usr/share/herald/nginx/snippets
for f in http ws fcgi web; do rehome <"$S/herald-$f.conf" >"$T/snippet-$f.conf"; done
cat >"$T/snippets.conf" <<NGINX
include $T/snippet-http.conf;
server {
	listen 127.0.0.1:$SNIP_PORT;
	server_name _;
	include $T/snippet-ws.conf;
	include $T/snippet-fcgi.conf;
	include $T/snippet-web.conf;
}
NGINX
ngx_start snippets "$SNIP_PORT" "$T/snippets.conf"

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
wait_for() {
	local _
	for _ in $(seq "${3:-100}"); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
publish() { "$X/usr/bin/herald-publish" --config "$CONF" "$@"; }

# probes NAME PORT: the checks of today through one nginx.
probes() {
	local name=$1 port=$2 u="http://127.0.0.1:$2" st tok id pid
	is "$(code "$u/api/v1/notifications/health")" 200 "$name: health 200"
	is "$(code "$u/api/v1/notifications/health/live")" 200 "$name: health/live 200"
	# ready once the canary is fresh (a few seconds after start)
	for _ in $(seq 100); do
		st=$(code "$u/api/v1/notifications/health/ready")
		[ "$st" = 200 ] && break
		sleep 0.1
	done
	is "$st" 200 "$name: health/ready 200"
	is "$(code "$u/herald.js")" 200 "$name: herald.js from usr/share/herald/web"
	curl -s --max-time 5 "$u/" | grep -qi '<html'
	ok $? "$name: the demo page"

	# WebSocket: 101 with a token, then a notification.
	tok=$(herald_token "$SECRET" "ws-$name" 300)
	"$WSC" -t 10 -n 1 "127.0.0.1:$port" "/api/v1/ws/notifications?token=$tok" >"$T/$name.ws" 2>&1 &
	pid=$!
	wait_for "$T/$name.ws" '^status' 100
	is "$(sed -n 's/^status //p' "$T/$name.ws")" 101 "$name: WebSocket upgrade 101 with a token"
	wait_subscribed "ws-$name"
	id=$(publish "ws-$name" '{"probe":"ws"}')
	wait_for "$T/$name.ws" "^text .*\"id\":\"$id\"" 100
	ok $? "$name: a notification published with the installed herald-publish arrives over the WebSocket"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	if [ -z "$id" ] || ! grep -q "^text .*\"id\":\"$id\"" "$T/$name.ws"; then
		sed 's/^/# /' "$T/$name.ws"
	fi

	# SSE
	tok=$(herald_token "$SECRET" "sse-$name" 300)
	curl -s -N --max-time 10 -D "$T/$name.sse.h" "$u/api/v1/sse/notifications?token=$tok" >"$T/$name.sse" &
	pid=$!
	wait_for "$T/$name.sse" '^retry:' 100
	ok $? "$name: the SSE stream opens"
	grep -qi '^content-type: text/event-stream' "$T/$name.sse.h"
	ok $? "$name: SSE Content-Type text/event-stream"
	wait_subscribed "sse-$name"
	id=$(publish "sse-$name" '{"probe":"sse"}')
	[ -n "$id" ] && wait_for "$T/$name.sse" "^id: $id\$" 100
	ok $? "$name: a notification published with the installed herald-publish arrives on the SSE stream"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null

	# Poll: the history holds it.
	st=$(curl -s -o "$T/$name.poll" -w '%{http_code}' --max-time 5 "$u/api/v1/notifications/poll?token=$tok")
	is "$st" 200 "$name: poll 200"
	grep -q "\"id\":\"$id\"" "$T/$name.poll"
	ok $? "$name: the poll returns the notification"
}
probes site "$SITE_PORT"
probes snippets "$SNIP_PORT"

for p in ws fcgi; do
	grep -E '(^| )(ERROR|error|FATAL|fatal)( |:)' "$T/log/$p.log" | sed 's/^/# /'
done
done_testing
