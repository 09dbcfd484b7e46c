# Resume at the sizes users reach (issue 11): replay.sh and its checker, a
# client of every transport that checks each notification arrives once, in
# order.  Included by Makefile.am.
check_PROGRAMS += tests/integration/replay_check
tests_integration_replay_check_SOURCES = tests/integration/replay_check.c \
	tests/integration/client.c tests/integration/client.h
tests_integration_replay_check_LDADD = $(HERALD_LIBS)
TESTS += tests/integration/replay.sh
EXTRA_DIST += tests/integration/replay.sh

# The package's units and herald-doctor (issue 15): systemd-analyze on the
# units, and the doctor against a running stack, healthy and broken.
TESTS += tests/integration/package.sh tests/integration/doctor.sh
EXTRA_DIST += tests/integration/package.sh tests/integration/doctor.sh

# The .deb's contents and its installed programs behind nginx (issue 15):
# not in TESTS (it needs a package, and distcheck would build one);
# scripts/dev.sh test runs it after `make deb`.
EXTRA_DIST += tests/integration/deb.sh

# The legacy hosts (Apache httpd with nginx/apache-herald.conf, lighttpd with
# nginx/lighttpd-herald-fastcgi.conf) and the Grafana dashboard's metric names.
TESTS += tests/integration/apache.sh tests/integration/dashboard.sh
EXTRA_DIST += tests/integration/apache.sh tests/integration/dashboard.sh \
	tests/integration/httpd.sh contrib/grafana/herald.json

# Refresh without reconnect and the expiry warning on herald-ws (issue 12).
TESTS += tests/integration/refresh.sh
EXTRA_DIST += tests/integration/refresh.sh

# Disconnect, revocation and tickets across processes (issue 12): two
# herald-ws and one herald-fcgi behind nginx/herald.conf on one Redis.
TESTS += tests/integration/revoke.sh tests/integration/ticket.sh
EXTRA_DIST += tests/integration/revoke.sh tests/integration/ticket.sh

# Several Herald processes behind one nginx (issue 14): nginx/herald-nodes.conf
# in front of two herald-ws and two herald-fcgi, one of each killed with
# SIGKILL under load, then contrib/rolling-restart.sh while publishing.
TESTS += tests/integration/nodes.sh
EXTRA_DIST += tests/integration/nodes.sh contrib/rolling-restart.sh

# Redis Sentinel (issue 14): a master, two replicas and three sentinels; a
# manual and an automatic failover while herald-ws and herald-fcgi deliver.
TESTS += tests/integration/sentinel.sh
EXTRA_DIST += tests/integration/sentinel.sh

# Redis Cluster mode (issue 14): three masters and their replicas, herald-ws
# and herald-publish with redis_cluster = yes, resume and a CLUSTER FAILOVER.
TESTS += tests/integration/cluster.sh
EXTRA_DIST += tests/integration/cluster.sh

# A first connection without a cursor is told where the history ends (issue 14).
TESTS += tests/integration/cursor.sh
EXTRA_DIST += tests/integration/cursor.sh
