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
 *   herald_resets_total, herald_slow_closed_total   counters (hub)
 *   herald_redis_up, herald_redis_healthy       gauges 0/1 (subscriber)
 *   herald_redis_subscribed_channels            gauge
 *   herald_redis_reconnects_total, herald_redis_messages_total,
 *   herald_redis_history_reads_total            counters
 *   herald_redis_history_retries_total,
 *   herald_redis_history_failures_total         counters
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

/* Append s as a JSON string, quotes included, escaping what RFC 8259 requires. */
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

/* "disconnected", "connecting", "connected" for an enum sub_state. */
const char *metrics_sub_state_name(int state);

#endif
