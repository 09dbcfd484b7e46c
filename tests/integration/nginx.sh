# nginx.sh - run the project's own nginx configs in a scratch directory.
# Sourced by integration tests (bash).  Nothing outside the scratch dir is
# touched: the shipped config is copied with its addresses replaced by the
# test's, and wrapped in a minimal nginx.conf.
#
#   nginx_start CONF DIR HTTP_PORT WS_ADDR FCGI_ADDR
#     CONF       nginx/herald.conf or nginx/herald-legacy.conf (path)
#     DIR        scratch directory (created)
#     HTTP_PORT  port to listen on, 127.0.0.1 only
#     WS_ADDR    herald-ws address in nginx syntax (127.0.0.1:PORT or unix:/path)
#     FCGI_ADDR  herald-fcgi address in nginx syntax (unix:/path or 127.0.0.1:PORT)
#   Sets NGINX_PID.  Returns non-zero (and prints the error log) on failure.
#   nginx_test CONF DIR ...   same arguments: only `nginx -t`.
#   nginx_stop               stops the nginx started by nginx_start.
#   NGINX_TUNE=FUNCTION      called as FUNCTION DIR PORT after the files are
#                            written, before nginx starts (bench/compare
#                            raises workers and open files there).

# shellcheck source=../../scripts/net.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/net.sh"

nginx_bin=${NGINX:-nginx}

nginx_prepare() {
	local conf=$1 dir=$2 port=$3 ws=$4 fcgi=$5 web
	web=$(cd "$(dirname "$conf")/.." && pwd)/web
	mkdir -p "$dir/tmp" "$dir/logs"
	sed -e "s#listen 8080;#listen 127.0.0.1:$port;#" \
	    -e "s#server 127.0.0.1:8000;#server $ws;#" \
	    -e "s#server unix:/run/herald/fcgi.sock;#server $fcgi;#" \
	    -e "s#/var/log/nginx/herald.access.log#$dir/logs/access.log#" \
	    -e "s#/usr/share/herald/web#$web#" \
	    "$conf" >"$dir/herald.conf"
	cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 4096; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	access_log $dir/logs/access.log;
	include $dir/herald.conf;
}
NGINX
	if [ -n "${NGINX_TUNE:-}" ]; then
		"$NGINX_TUNE" "$dir" "$port" || return 1
	fi
}

nginx_test() {
	nginx_prepare "$@" || return 1
	"$nginx_bin" -t -q -p "$2" -c "$2/nginx.conf" -g 'daemon off;'
}

nginx_start() {
	local dir=$2 port=$3
	nginx_prepare "$@" || return 1
	"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/logs/stderr.log" &
	NGINX_PID=$!
	port_wait "$port" "$NGINX_PID" && return 0
	echo "# nginx did not start:" >&2
	sed 's/^/# /' "$dir/logs/error.log" "$dir/logs/stderr.log" >&2 2>/dev/null
	return 1
}

nginx_stop() {
	if [ -n "${NGINX_PID:-}" ]; then
		kill "$NGINX_PID" 2>/dev/null
		wait "$NGINX_PID" 2>/dev/null
		NGINX_PID=
	fi
}
