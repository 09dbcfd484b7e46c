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
#
#   The stream flavour: CONF nginx/herald-stream.conf goes in the main
#   context (with load_module of Debian's stream module), its HTTP side is
#   herald-legacy.conf from the same directory, in http {}.  Its listeners
#   are 127.0.0.1:$NGINX_STREAM_PORT (ws://) and $NGINX_STREAM_TLS_PORT
#   (wss://), picked when unset; the certificate is DIR/tls.crt and key
#   DIR/tls.key, a self-signed one for localhost made with openssl when
#   missing.

# shellcheck source=../../scripts/net.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/net.sh"

nginx_bin=${NGINX:-nginx}

NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}

# _nginx_stream DIR WS_ADDR: the stream part of the stream flavour.
_nginx_stream() {
	local conf=$1 dir=$2 ws=$3
	[ -f "$NGINX_STREAM_MODULE" ] || {
		echo "# $NGINX_STREAM_MODULE missing (apt-get install libnginx-mod-stream)" >&2
		return 1
	}
	NGINX_STREAM_PORT=${NGINX_STREAM_PORT:-$(port_pick)}
	NGINX_STREAM_TLS_PORT=${NGINX_STREAM_TLS_PORT:-$(port_pick)}
	if [ ! -s "$dir/tls.crt" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
			-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
			-keyout "$dir/tls.key" -out "$dir/tls.crt" >/dev/null 2>&1 || {
			echo "# openssl could not make a test certificate" >&2
			return 1
		}
	fi
	sed -e "s#listen 8443 ssl;#listen 127.0.0.1:$NGINX_STREAM_TLS_PORT ssl;#" \
	    -e "s#listen 8001;#listen 127.0.0.1:$NGINX_STREAM_PORT;#" \
	    -e "s#server 127.0.0.1:8000;#server $ws;#" \
	    -e "s#/etc/herald/tls/herald.crt#$dir/tls.crt#" \
	    -e "s#/etc/herald/tls/herald.key#$dir/tls.key#" \
	    -e "s#/var/log/nginx/herald-stream.access.log#$dir/logs/stream.log#" \
	    "$conf" >"$dir/herald-stream.conf"
}

# nginx_main_conf DIR INCLUDE [TOP] [END] [CONNECTIONS]: DIR/nginx.conf, a
# main configuration that keeps everything in DIR (pid, logs, temp paths)
# and includes INCLUDE in http {}; TOP and END are main-level lines before
# and after (load_module, user, stream {}).
nginx_main_conf() {
	local dir=$1
	mkdir -p "$dir/tmp" "$dir/logs"
	cat >"$dir/nginx.conf" <<NGINX
${3:-}
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections ${5:-4096}; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	access_log $dir/logs/access.log;
	include $2;
}
${4:-}
NGINX
}

nginx_prepare() {
	local conf=$1 dir=$2 port=$3 ws=$4 fcgi=$5 web main_top='' main_end=''
	web=$(cd "$(dirname "$conf")/.." && pwd)/web
	mkdir -p "$dir/tmp" "$dir/logs"
	if [ "$(basename "$conf")" = herald-stream.conf ]; then
		_nginx_stream "$conf" "$dir" "$ws" || return 1
		main_top="load_module $NGINX_STREAM_MODULE;"
		main_end="include $dir/herald-stream.conf;"
		conf=$(dirname "$conf")/herald-legacy.conf
	fi
	sed -e "s#listen 8080;#listen 127.0.0.1:$port;#" \
	    -e "s#server 127.0.0.1:8000;#server $ws;#" \
	    -e "s#server unix:/run/herald/fcgi.sock;#server $fcgi;#" \
	    -e "s#/var/log/nginx/herald.access.log#$dir/logs/access.log#" \
	    -e "s#/usr/share/herald/web#$web#" \
	    "$conf" >"$dir/herald.conf"
	nginx_main_conf "$dir" "$dir/herald.conf" "$main_top" "$main_end"
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
