#!/usr/bin/env bash
# The package's service files (issue 15): the systemd units pass
# `systemd-analyze verify` and keep the hardening they promise
# (`systemd-analyze security --offline=yes`, exposure recorded), and the
# nginx files debian/nginx-examples.sh makes from the tested configs pass
# `nginx -t`.  Building the .deb itself is `make deb` (scripts/deb.sh).

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"

top=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/herald-test.XXXXXX") || skip_all "mktemp failed"
trap 'rm -rf "$T"' EXIT
command -v systemd-analyze >/dev/null 2>&1 || skip_all "systemd-analyze not installed"

for p in ws fcgi; do
	unit=herald-$p.service
	# The unit as installed, but for the binary: the one of this build.
	bin=$HERALD_BUILDDIR/herald-$p
	[ -x "$bin" ] || bin=/bin/true
	sed "s#/usr/bin/herald-$p#$bin#" "$top/systemd/$unit" >"$T/$unit"
	out=$(cd "$T" && systemd-analyze verify --man=no "./$unit" 2>&1)
	ok $? "$unit: systemd-analyze verify"
	[ -z "$out" ] || diag "$out"

	for want in Type=notify Restart=on-failure 'ExecReload=/bin/kill -HUP $MAINPID' \
		RuntimeDirectory=herald NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
		PrivateTmp=yes SystemCallFilter=@system-service LimitNOFILE=65536 \
		HERALD_SOCKET_OWNER=:www-data "--listen unix:/run/herald/$p.sock"; do
		grep -qF -- "$want" "$T/$unit"
		ok $? "$unit has $want"
	done

	out=$(cd "$T" && systemd-analyze security --offline=yes --no-pager "./$unit" 2>&1)
	score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$score" ]; then
		ok 1 "$unit: systemd-analyze security gives an exposure score"
		diag "$(printf '%s\n' "$out" | tail -5)"
	else
		# 0 (locked down) .. 10 (exposed); the units measure 1.6 with systemd 252.
		awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
		ok $? "$unit: exposure $score <= 2.0 (systemd-analyze security --offline=yes)"
	fi
done

if command -v logrotate >/dev/null 2>&1; then
	# The herald user exists where the package is installed, maybe not here.
	if getent passwd herald >/dev/null; then
		cp "$top/systemd/herald.logrotate" "$T/herald.logrotate"
	else
		sed 's/create 0640 herald /create 0640 root /' "$top/systemd/herald.logrotate" >"$T/herald.logrotate"
	fi
	chmod 644 "$T/herald.logrotate"
	logrotate -d -s "$T/logrotate.state" "$T/herald.logrotate" >"$T/logrotate.out" 2>&1
	! grep -q '^error' "$T/logrotate.out"
	ok $? "logrotate -d accepts systemd/herald.logrotate"
	grep '^error' "$T/logrotate.out" | sed 's/^/# /'
else
	diag "logrotate not installed: its config is not checked"
fi
grep -q 'signal=USR1' "$top/systemd/herald.logrotate"
ok $? "logrotate sends the programs' reopen signal (USR1)"

# The nginx files of the package, from the tested configs.
sh "$top/debian/nginx-examples.sh" "$top/nginx" "$T/nginx-share"
ok $? "debian/nginx-examples.sh makes the nginx files"
for f in herald.conf herald-legacy.conf herald-stream.conf herald-nodes.conf snippets/herald-http.conf snippets/herald-ws.conf \
	snippets/herald-fcgi.conf snippets/herald-web.conf; do
	[ -s "$T/nginx-share/$f" ]
	ok $? "nginx/$f is made"
done
if command -v "$nginx_bin" >/dev/null 2>&1; then
	for flavour in herald herald-legacy herald-stream herald-nodes; do
		[ "$flavour" = herald-stream ] && [ ! -f "$NGINX_STREAM_MODULE" ] && continue
		nginx_test "$T/nginx-share/$flavour.conf" "$T/ngx-$flavour" "$(port_pick)" \
			unix:/run/herald/ws.sock unix:/run/herald/fcgi.sock 2>"$T/ngx-$flavour.err"
		ok $? "nginx -t accepts the packaged $flavour.conf"
	done
	# The snippets in a site of one's own.
	d=$T/ngx-snippets
	mkdir -p "$d/logs" "$d/tmp"
	cat >"$d/nginx.conf" <<NGINX
pid $d/nginx.pid;
error_log $d/logs/error.log;
events {}
http {
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	access_log off;
	include $T/nginx-share/snippets/herald-http.conf;
	server {
		listen 127.0.0.1:$(port_pick);
		include $T/nginx-share/snippets/herald-ws.conf;
		include $T/nginx-share/snippets/herald-fcgi.conf;
		include $T/nginx-share/snippets/herald-web.conf;
	}
}
NGINX
	sed -i "s#/var/log/nginx/herald.access.log#$d/logs/access.log#" "$T/nginx-share/snippets/"*.conf
	"$nginx_bin" -t -q -p "$d" -c "$d/nginx.conf" 2>"$d/err"
	rc=$?
	ok $rc "nginx -t accepts the snippets included in a server of one's own"
	[ $rc = 0 ] || diag "$(cat "$d/err")"
else
	diag "nginx not installed: the nginx files are not tested"
fi

done_testing
