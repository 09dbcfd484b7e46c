#!/bin/sh
# nginx-examples.sh SRC DEST: the nginx files of the package, from the
# project's tested configs in SRC (nginx/):
#   DEST/herald.conf, DEST/herald-legacy.conf   example sites (full; no WebSocket)
#   DEST/herald-stream.conf                     the WebSocket at L4 (main context,
#                                               beside http {}; with herald-legacy.conf)
#   DEST/herald-nodes.conf                      several processes of each (http {};
#                                               with herald.conf minus its upstreams)
#   DEST/snippets/herald-http.conf              map, log_format, upstreams (http {})
#   DEST/snippets/herald-ws.conf                the WebSocket location  (server {})
#   DEST/snippets/herald-fcgi.conf              SSE, poll, health, ...  (server {})
#   DEST/snippets/herald-web.conf               herald.js and the demo  (server {})
# Both servers listen on unix sockets in /run/herald, as the units start them.
set -eu
src=$1
dest=$2
mkdir -p "$dest/snippets"

site() {
	sed -e 's#server 127.0.0.1:8000;#server unix:/run/herald/ws.sock;#' \
	    -e 's#^\(\# herald-ws listens on \)127.0.0.1:8000#\1unix:/run/herald/ws.sock#' "$1"
}
site "$src/herald.conf" >"$dest/herald.conf"
site "$src/herald-legacy.conf" >"$dest/herald-legacy.conf"
site "$src/herald-stream.conf" >"$dest/herald-stream.conf"
site "$src/herald-nodes.conf" >"$dest/herald-nodes.conf"

# Everything before the server block, then each marked part.
{
	echo "# Herald: include in http {} (the upstreams the location snippets use)."
	echo "# Generated from herald.conf; herald-ws and herald-fcgi on /run/herald."
	echo
	sed -n '/^server {/q;p' "$dest/herald.conf"
} >"$dest/snippets/herald-http.conf"
for part in ws fcgi web; do
	{
		echo "# Herald: include in the server {} that serves your site; needs"
		echo "# snippets/herald-http.conf in http {}.  Generated from herald.conf."
		echo
		sed -n "/# --- herald:$part begin ---/,/# --- herald:$part end ---/p" \
			"$dest/herald.conf" | sed 's/^\t//'
	} >"$dest/snippets/herald-$part.conf"
	grep -q "herald:$part end" "$dest/snippets/herald-$part.conf" ||
		{ echo "nginx-examples.sh: no herald:$part markers in $src/herald.conf" >&2; exit 1; }
done
