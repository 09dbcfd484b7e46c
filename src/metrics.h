/*
 * metrics.h - the health JSON and the Prometheus text of both servers.
 *
 * herald-fcgi and herald-ws answer GET .../health and GET .../metrics with
 * the same shared part, built here from a struct hub_stats and a struct
 * sub_status, plus lines of their own (streams held, polls, threads busy,
 * WebSocket frames...) appended with metrics_counter()/metrics_gauge() and
 * passed to the health JSON as extra members.
 *
 * Output goes to a struct metrics_buf that grows as needed.  An allocation
 * failure is sticky: later appends do nothing and b->err is HERR_NOMEM, so a
 * caller checks once at the end.  Nothing here locks or prints; the snapshot
 * structs are taken by the caller (hub_get_stats, sub_get_status).
 *
 * Names (Prometheus text format 0.0.4), every one prefixed "herald_":
 *   herald_build_info{program,version}          gauge 1
 *   herald_connections, herald_users            gauges (hub)
 *   herald_queued_bytes                         gauge (hub)
 *   herald_messages_in_total, herald_delivered_total,
 *   herald_duplicates_dropped_total, herald_replays_total,
 *   herald_replay_pages_total, herald_replayed_total,
 *   herald_held_dropped_total,
 *   herald_resets_total, herald_slow_closed_total   counters (hub)
 *   herald_disconnected_total{reason}           counter (hub_close_user)
 *   herald_redis_up, herald_redis_healthy       gauges 0/1 (subscriber)
 *   herald_redis_subscribed_channels            gauge
 *   herald_redis_reconnects_total, herald_redis_messages_total,
 *   herald_redis_failovers_total (Sentinel +switch-master),
 *   herald_redis_history_reads_total            counters
 *   herald_redis_history_retries_total,
 *   herald_redis_history_failures_total         counters
 *   herald_redis_control_messages_total,
 *   herald_redis_control_invalid_total          counters (control channel)
 *   herald_redis_canary_rtt_seconds             gauge
 *   herald_process_resident_memory_bytes, herald_process_open_fds,
 *   herald_process_threads, herald_process_uptime_seconds   gauges (/proc)
 */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"
#include "sub.h"

struct metrics_buf {
	char *data; /* NUL-terminated while len > 0; malloc()ed */
	size_t len;
	size_t cap;
	int err;    /* 0, or HERR_NOMEM once an append failed */
};

/* An empty buffer (no allocation yet). */
void metrics_buf_init(struct metrics_buf *b);
/* Free the data; b may then be reused after metrics_buf_init.  NULL is fine. */
void metrics_buf_free(struct metrics_buf *b);

/* Append formatted text. */
void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append s as a JSON string, quotes included, escaped by text_json_char. */
void metrics_json_string(struct metrics_buf *b, const char *s);

/*
 * One metric with its # HELP and # TYPE lines.  name is the full name
 * ("herald_fcgi_polls_total"); help is one line without newlines.
 */
void metrics_counter(struct metrics_buf *b, const char *name, const char *help, uint64_t v);
void metrics_gauge(struct metrics_buf *b, const char *name, const char *help, double v);

/*
 * The shared Prometheus lines: build info for program (e.g. "herald-fcgi"),
 * the hub, the subscriber (sub may be NULL: no Redis lines), and the
 * process (RSS, fds, threads from /proc/self; uptime from start_ms, the
 * wall-clock start in ms).  The program appends its own lines after.
 */
void metrics_prometheus(struct metrics_buf *b, const char *program, const struct hub_stats *hub,
			const struct sub_status *sub, long long start_ms, long long now_ms);

/*
 * The health JSON object, one line, and the HTTP status to send with it:
 * 200 when the subscriber is connected and healthy, else 503.
 *
 *   {"status":"ok","program":"herald-fcgi","version":"0.1.0","uptime":12,
 *    "redis":{"state":"connected","healthy":true,"subscribed":3,"reconnects":0,
 *             "canary_rtt_ms":0.41,"last_error":""},
 *    "connections":5,"users":3,EXTRA}
 *
 * status is "ok" or "unavailable".  extra, when non-NULL and not empty, is
 * inserted verbatim before the closing brace: members the program formats
 * itself ("\"streams\":4,\"threads_busy\":2"), without a leading comma.
 * Returns 200 or 503.
 */
int metrics_health_json(struct metrics_buf *b, const char *program, const struct hub_stats *hub,
			const struct sub_status *sub, long long start_ms, long long now_ms,
			const char *extra);

/*
 * Probes for orchestrators (Kubernetes, systemd, load balancers), beside
 * the health document: HEALTH "/live" and HEALTH "/ready", where HEALTH is
 * the configured path_health.
 *
 *   live   200 while the process answers at all; the body says nothing
 *          else, so a Redis outage never gets a healthy process restarted.
 *   ready  200 when Redis is connected, the canary came back in time (the
 *          subscriber's own judgement: within three canary intervals, see
 *          sub.h) and the program is not shutting down; else 503, which
 *          takes the process out of rotation until it recovers.
 */
enum metrics_probe {
	METRICS_PROBE_NONE = 0,
	METRICS_PROBE_LIVE,
	METRICS_PROBE_READY,
};

/*
 * Which probe path (len bytes, not NUL-terminated) names under health_path
 * (NUL-terminated, e.g. "/api/v1/notifications/health"): LIVE, READY or
 * NONE.  Exact matches only: no trailing slash, no query.
 */
int metrics_probe_of(const char *health_path, const char *path, size_t len);

/*
 * The readiness decision.  ss is the subscriber's snapshot (NULL: none,
 * not ready); stopping is non-zero once the program began shutting down.
 * Returns 1 ready, 0 not; why (len bytes, may be NULL) gets a short reason
 * for the body and the log: "", "shutting down", "redis connecting",
 * "redis disconnected: LAST_ERROR", "canary not received in time".
 */
int metrics_ready(const struct sub_status *ss, int stopping, char *why, size_t len);

/*
 * The body of a probe answer, one line with its newline, and the status to
 * send: {"status":"ok","probe":"live"} (200) for live;
 * {"status":"ok","probe":"ready"} (200) or
 * {"status":"unavailable","probe":"ready","reason":"..."} (503) for ready,
 * decided by metrics_ready().  The caller sends a 503 with Retry-After, as
 * for the health document.  Returns 200 or 503; on an
 * allocation failure b->err is set and the caller answers 500.
 */
int metrics_probe_json(struct metrics_buf *b, int probe, const struct sub_status *ss,
		       int stopping);

/* "disconnected", "connecting", "connected" for an enum sub_state. */
const char *metrics_sub_state_name(int state);

#endif
