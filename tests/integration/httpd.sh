# httpd.sh - run the project's Apache httpd site (nginx/apache-herald.conf)
# in a scratch directory, as nginx.sh does for nginx.  Sourced (bash) by
# tests/integration/apache.sh and tests/browser/browser.sh.  Nothing outside
# the scratch directory is read or written but Apache's binary and modules:
# the site is copied with its addresses replaced by the test's and wrapped
# in a minimal httpd.conf that loads what Debian's apache2.conf and the
# site's a2enmod line would.
#
#   apache_start SITE DIR PORT RUN WEB [APACHE_ARGS...]
#     SITE  nginx/apache-herald.conf (path)
#     DIR   scratch directory (created); logs DIR/error.log, DIR/herald.*.log
#     PORT  port to listen on, 127.0.0.1 only
#     RUN   directory of herald-ws's and herald-fcgi's sockets (ws.sock, fcgi.sock)
#     WEB   the web/ directory (herald.js, the demo page)
#     APACHE_ARGS  e.g. -DHERALD_CGI
#   With -DHERALD_CGI set APACHE_CGI_BIN (herald-fcgi) and APACHE_CGI_CONFIG
#   (its configuration file, readable by Apache's user) first.
#   Sets APACHE_PID.  Returns non-zero (and prints the error log) on failure.
#   apache_test SITE DIR PORT RUN WEB   only `apache2 -t`.
#   apache_reload SITE DIR PORT RUN WEB  the running Apache (same DIR and
#     PORT) takes SITE instead, by a graceful restart: no moment without a
#     listener; requests in flight (an SSE stream) finish on the old site.
#     Returns once apache2 -t accepts it and the signal is sent.
#   apache_stop                         stops the Apache apache_start started.
#   APACHE2 (default /usr/sbin/apache2), APACHE2_MODULES
#   (/usr/lib/apache2/modules) name another build.

# shellcheck source=../../scripts/net.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/net.sh"

apache_bin=${APACHE2:-/usr/sbin/apache2}
apache_mods=${APACHE2_MODULES:-/usr/lib/apache2/modules}
APACHE_PID=

# apache_available: the binary and the modules the site needs are there.
apache_available() {
	local m
	[ -x "$apache_bin" ] || return 1
	for m in mpm_event proxy proxy_fcgi proxy_wstunnel headers env alias mime cgid; do
		[ -f "$apache_mods/mod_$m.so" ] || return 1
	done
}

apache_prepare() {
	local site=$1 dir=$2 port=$3 run=$4 web=$5 user_lines='' m mods=''
	mkdir -p "$dir"
	sed -e "s#<VirtualHost \*:8080>#<VirtualHost 127.0.0.1:$port>#" \
	    -e "s#/run/herald/#$run/#g" \
	    -e "s#/usr/share/herald/web#$web#g" \
	    -e "s#\"/usr/bin/herald-fcgi\"#\"${APACHE_CGI_BIN:-/usr/bin/herald-fcgi}\"#g" \
	    -e "s#<Directory \"/usr/bin\">#<Directory \"$(dirname "${APACHE_CGI_BIN:-/usr/bin/x}")\">#" \
	    -e "s#/etc/herald/herald.conf#${APACHE_CGI_CONFIG:-/etc/herald/herald.conf}#g" \
	    "$site" >"$dir/site.conf"
	# Apache started by root runs its children as another user.
	[ "$(id -u)" = 0 ] && user_lines="User nobody
Group $(id -gn nobody 2>/dev/null || echo nogroup)"
	for m in mpm_event authz_core authz_host alias mime env headers deflate filter \
		proxy proxy_fcgi proxy_wstunnel cgid; do
		mods="${mods}LoadModule ${m}_module $apache_mods/mod_$m.so
"
	done
	cat >"$dir/httpd.conf" <<EOF
ServerRoot "$dir"
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
Mutex file:$dir default
ErrorLog "$dir/error.log"
LogLevel warn
Listen 127.0.0.1:$port
ServerName 127.0.0.1
Define APACHE_LOG_DIR $dir
$user_lines
$mods
ScriptSock "$dir/cgid.sock"
# The site names its types (AddType): no /etc/mime.types needed.
TypesConfig /dev/null
# Debian's deflate.conf, and text/event-stream besides: the site must keep
# gzip off its streams.
AddOutputFilterByType DEFLATE text/html text/plain text/css text/javascript application/json text/event-stream
<Directory />
	AllowOverride None
	Require all denied
</Directory>
Include "$dir/site.conf"
EOF
	chmod -R a+rX "$dir"
}

apache_test() {
	apache_prepare "$@" || return 1
	"$apache_bin" -t -f "$2/httpd.conf" >"$2/t.log" 2>&1 || {
		cat "$2/t.log" >&2
		return 1
	}
}

apache_start() {
	local dir=$2 port=$3
	apache_prepare "$1" "$2" "$3" "$4" "$5" || return 1
	shift 5
	"$apache_bin" -f "$dir/httpd.conf" -DFOREGROUND "$@" >>"$dir/stdout.log" 2>&1 &
	APACHE_PID=$!
	port_wait "$port" "$APACHE_PID" && return 0
	echo "# apache2 did not start:" >&2
	tail -5 "$dir/stdout.log" "$dir/error.log" >&2 2>/dev/null
	apache_stop
	return 1
}

apache_reload() {
	[ -n "$APACHE_PID" ] || return 1
	apache_prepare "$@" || return 1
	"$apache_bin" -t -f "$2/httpd.conf" >"$2/t.log" 2>&1 || {
		cat "$2/t.log" >&2
		return 1
	}
	kill -USR1 "$APACHE_PID"
}

apache_stop() {
	local i
	[ -n "$APACHE_PID" ] || return 0
	kill "$APACHE_PID" 2>/dev/null
	for i in $(seq 100); do
		kill -0 "$APACHE_PID" 2>/dev/null || break
		sleep 0.05
	done
	wait "$APACHE_PID" 2>/dev/null
	APACHE_PID=
}
