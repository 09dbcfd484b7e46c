# net.sh - local TCP ports for the scripts and tests that start servers.
# Sourced (bash) through tests/integration/nginx.sh and tests/integration/lib.sh.
#
#   port_pick            print a port on 127.0.0.1 nothing listens on now
#   port_wait PORT [PID] wait (at most 10 s) until something accepts on
#                        127.0.0.1:PORT; 1 when it does not, or PID exits first
#   tcp_links PID PORT   how many TCP connections PID has open to remote
#                        port PORT (a server's links to its Redis)

port_pick() {
	# the kernel's pick when python3 is there, else a random high port that
	# no socket in /proc/net/tcp{,6} uses
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	local p
	while :; do
		p=$(($(od -An -N2 -tu2 /dev/urandom) % 20000 + 30000))
		grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null || {
			echo "$p"
			return
		}
	done
}

port_wait() {
	local i
	for i in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		[ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

tcp_links() {
	# PID's socket inodes that /proc/net/tcp lists with PORT as the remote one
	awk -v p="$(printf ':%04X' "$2")" -v mine=" $(ls -l "/proc/$1/fd" 2>/dev/null |
		sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')" \
		'NR > 1 && substr($3, length($3) - 4) == p && index(mine, " " $10 " ") { n++ }
		END { print n + 0 }' /proc/net/tcp
}
