#include "config.h"

#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "text.h"

void metrics_buf_init(struct metrics_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->err = 0;
}

void metrics_buf_free(struct metrics_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	metrics_buf_init(b);
}

/* Make room for need more bytes plus the NUL. */
static int reserve(struct metrics_buf *b, size_t need)
{
	size_t cap;
	char *p;

	if (b->err)
		return -1;
	if (b->len + need + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 1024;
	while (cap < b->len + need + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->err = HERR_NOMEM;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

static void append(struct metrics_buf *b, const char *s, size_t n)
{
	if (reserve(b, n) < 0)
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || reserve(b, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void metrics_json_string(struct metrics_buf *b, const char *s)
{
	size_t len = strlen(s);

	append(b, "\"", 1);
	for (size_t i = 0; i < len;) {
		char esc[TEXT_JSON_CHAR_MAX];
		size_t used, n = text_json_char(s + i, len - i, esc, &used);

		append(b, esc, n);
		i += used;
	}
	append(b, "\"", 1);
}

void metrics_counter(struct metrics_buf *b, const char *name, const char *help, uint64_t v)
{
	metrics_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
		       (unsigned long long)v);
}

void metrics_gauge(struct metrics_buf *b, const char *name, const char *help, double v)
{
	metrics_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

const char *metrics_sub_state_name(int state)
{
	switch (state) {
	case SUB_DISCONNECTED: return "disconnected";
	case SUB_CONNECTING: return "connecting";
	case SUB_CONNECTED: return "connected";
	default: return "unknown";
	}
}

/* Resident set size in bytes from /proc/self/statm, or -1. */
static double proc_rss(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "re");
	int n;

	if (f == NULL)
		return -1;
	n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	if (n != 2)
		return -1;
	return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

/* Entries of /proc/self/fd (the directory's own fd not counted), or -1. */
static double proc_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	const struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return (double)(n - 1);
}

/* "Threads:" of /proc/self/status, or -1. */
static double proc_threads(void)
{
	char line[128];
	long n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "Threads:", 8) == 0) {
			n = strtol(line + 8, NULL, 10);
			break;
		}
	}
	fclose(f);
	return (double)n;
}

void metrics_prometheus(struct metrics_buf *b, const char *program, const struct hub_stats *hub,
			const struct sub_status *sub, long long start_ms, long long now_ms)
{
	metrics_printf(b,
		       "# HELP herald_build_info Program and version.\n"
		       "# TYPE herald_build_info gauge\n"
		       "herald_build_info{program=\"%s\",version=\"%s\"} 1\n",
		       program, PACKAGE_VERSION);
	metrics_gauge(b, "herald_connections", "Connections attached to the hub now.",
		      (double)hub->conns);
	metrics_gauge(b, "herald_users", "Users with at least one connection now.",
		      (double)hub->users);
	metrics_gauge(b, "herald_queued_bytes", "Bytes waiting in connection queues.",
		      (double)hub->queued_bytes);
	metrics_counter(b, "herald_messages_in_total", "Live messages received from Redis.",
			hub->messages_in);
	metrics_counter(b, "herald_delivered_total", "Messages queued to connections.",
			hub->delivered);
	metrics_counter(b, "herald_duplicates_dropped_total",
			"Messages not queued because the connection had them already.",
			hub->duplicates_dropped);
	metrics_counter(b, "herald_replays_total",
			"Replays started: resumes, and catch-ups after Redis came back.",
			hub->replays);
	metrics_counter(b, "herald_replay_pages_total", "History pages read for replays.",
			hub->replay_pages);
	metrics_counter(b, "herald_replayed_total", "Messages queued from history pages.",
			hub->replayed);
	metrics_counter(b, "herald_held_dropped_total",
			"Live messages held during a replay past send_queue_max, dropped "
			"and read back from the history.",
			hub->held_dropped);
	metrics_counter(b, "herald_resets_total",
			"Resets sent: the resume cursor was older than the history kept.",
			hub->resets);
	metrics_counter(b, "herald_slow_closed_total",
			"Connections closed because their queue was full (and it could not be "
			"caught up from the history).",
			hub->slow_closed);
	metrics_counter(b, "herald_slow_caught_up_total",
			"Full queues dropped and their connection caught up from the history "
			"instead of closed.",
			hub->slow_caught_up);
	metrics_printf(b,
		       "# HELP herald_disconnected_total Connections closed by the control "
		       "channel, by reason: disconnect (the user was disconnected everywhere) or "
		       "revoked (the token was revoked).\n"
		       "# TYPE herald_disconnected_total counter\n"
		       "herald_disconnected_total{reason=\"disconnect\"} %llu\n"
		       "herald_disconnected_total{reason=\"revoked\"} %llu\n",
		       (unsigned long long)hub->disconnected, (unsigned long long)hub->revoked);
	if (sub != NULL) {
		metrics_gauge(b, "herald_redis_up", "1 when both Redis connections are up.",
			      sub->state == SUB_CONNECTED ? 1 : 0);
		metrics_gauge(b, "herald_redis_healthy",
			      "1 when the canary message came back in time.", sub->healthy ? 1 : 0);
		metrics_gauge(b, "herald_redis_subscribed_channels",
			      "User channels subscribed now.", (double)sub->subscribed);
		metrics_counter(b, "herald_redis_reconnects_total",
				"Reconnections to Redis after a loss.", sub->reconnects);
		metrics_counter(b, "herald_redis_failovers_total",
				"Redis Sentinel: master switches (+switch-master) seen for our "
				"master.",
				sub->failovers);
		metrics_counter(b, "herald_redis_messages_total",
				"Pub/sub messages received from Redis.", sub->messages);
		metrics_counter(b, "herald_redis_history_reads_total",
				"History reads sent by the subscriber.", sub->history_reads);
		metrics_counter(b, "herald_redis_history_retries_total",
				"History reads retried after a Redis error reply.",
				sub->history_retries);
		metrics_counter(b, "herald_redis_history_failures_total",
				"History reads given up (connection closed to resume).",
				sub->history_failures);
		metrics_counter(b, "herald_redis_control_messages_total",
				"Messages received on the control channel (disconnect, revocation).",
				sub->control_messages);
		metrics_counter(b, "herald_redis_control_invalid_total",
				"Control channel messages ignored as malformed.", sub->control_invalid);
		metrics_gauge(b, "herald_redis_canary_rtt_seconds",
			      "Round trip of the last canary message.",
			      (double)sub->canary_rtt_us / 1e6);
	}
	metrics_gauge(b, "herald_process_resident_memory_bytes", "Resident memory.", proc_rss());
	metrics_gauge(b, "herald_process_open_fds", "Open file descriptors.", proc_fds());
	metrics_gauge(b, "herald_process_threads", "Threads of the process.", proc_threads());
	metrics_gauge(b, "herald_process_uptime_seconds", "Seconds since the process started.",
		      (double)(now_ms - start_ms) / 1000.0);
}

int metrics_health_json(struct metrics_buf *b, const char *program, const struct hub_stats *hub,
			const struct sub_status *sub, long long start_ms, long long now_ms,
			const char *extra)
{
	int ok = sub != NULL && sub->state == SUB_CONNECTED && sub->healthy;

	metrics_printf(b, "{\"status\":\"%s\",\"program\":", ok ? "ok" : "unavailable");
	metrics_json_string(b, program);
	metrics_printf(b, ",\"version\":\"%s\",\"uptime\":%lld", PACKAGE_VERSION,
		       (now_ms - start_ms) / 1000);
	if (sub != NULL) {
		metrics_printf(b,
			       ",\"redis\":{\"state\":\"%s\",\"healthy\":%s,\"subscribed\":%llu,"
			       "\"reconnects\":%llu,\"canary_rtt_ms\":%.3f,\"last_error\":",
			       metrics_sub_state_name(sub->state), sub->healthy ? "true" : "false",
			       (unsigned long long)sub->subscribed,
			       (unsigned long long)sub->reconnects,
			       (double)sub->canary_rtt_us / 1000.0);
		metrics_json_string(b, sub->last_error);
		metrics_printf(b, "}");
	}
	metrics_printf(b, ",\"connections\":%llu,\"users\":%llu",
		       (unsigned long long)hub->conns, (unsigned long long)hub->users);
	if (extra != NULL && extra[0] != '\0')
		metrics_printf(b, ",%s", extra);
	metrics_printf(b, "}");
	return ok ? 200 : 503;
}

int metrics_probe_of(const char *health_path, const char *path, size_t len)
{
	size_t hl;

	if (health_path == NULL || path == NULL)
		return METRICS_PROBE_NONE;
	hl = strlen(health_path);
	if (len <= hl || memcmp(path, health_path, hl) != 0)
		return METRICS_PROBE_NONE;
	path += hl;
	len -= hl;
	if (len == 5 && memcmp(path, "/live", 5) == 0)
		return METRICS_PROBE_LIVE;
	if (len == 6 && memcmp(path, "/ready", 6) == 0)
		return METRICS_PROBE_READY;
	return METRICS_PROBE_NONE;
}

int metrics_ready(const struct sub_status *ss, int stopping, char *why, size_t len)
{
	char buf[sizeof ss->last_error + 32];

	buf[0] = '\0';
	if (stopping)
		snprintf(buf, sizeof buf, "shutting down");
	else if (ss == NULL)
		snprintf(buf, sizeof buf, "no redis subscriber");
	else if (ss->state == SUB_CONNECTING)
		snprintf(buf, sizeof buf, "redis connecting");
	else if (ss->state != SUB_CONNECTED)
		snprintf(buf, sizeof buf, "redis disconnected%s%s", ss->last_error[0] ? ": " : "",
			 ss->last_error);
	else if (!ss->healthy)
		snprintf(buf, sizeof buf, "canary not received in time");
	if (why != NULL && len > 0)
		snprintf(why, len, "%s", buf);
	return buf[0] == '\0';
}

int metrics_probe_json(struct metrics_buf *b, int probe, const struct sub_status *ss,
		       int stopping)
{
	char why[sizeof ss->last_error + 32];

	if (probe != METRICS_PROBE_READY) {
		metrics_printf(b, "{\"status\":\"ok\",\"probe\":\"live\"}\n");
		return 200;
	}
	if (metrics_ready(ss, stopping, why, sizeof why)) {
		metrics_printf(b, "{\"status\":\"ok\",\"probe\":\"ready\"}\n");
		return 200;
	}
	metrics_printf(b, "{\"status\":\"unavailable\",\"probe\":\"ready\",\"reason\":");
	metrics_json_string(b, why);
	metrics_printf(b, "}\n");
	return 503;
}
