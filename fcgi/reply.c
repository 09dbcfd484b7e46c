#include "config.h"

#include "reply.h"

#include <stdio.h>
#include <string.h>

#include "app.h"
#include "http.h"

#define STR_(x) #x
#define STRINGIFY(x) STR_(x)

const char reply_sse_head[] = "Status: 200 OK\r\n"
			      "Content-Type: text/event-stream\r\n"
			      "Cache-Control: no-cache\r\n"
			      "X-Accel-Buffering: no\r\n\r\n";

void reply_append(struct metrics_buf *b, int status, const char *ctype, const char *extra,
		  const char *body, size_t len)
{
	metrics_printf(b, "Status: %d %s\r\nContent-Type: %s\r\n%s\r\n", status,
		       http_status_text(status), ctype, extra ? extra : "");
	if (len > 0)
		metrics_printf(b, "%.*s", (int)len, body);
}

void reply_json(struct metrics_buf *b, int status, const char *extra, const char *body)
{
	char h[256];

	snprintf(h, sizeof h, "Cache-Control: no-store\r\n%s", extra ? extra : "");
	reply_append(b, status, "application/json", h, body, strlen(body));
}

void reply_error(struct metrics_buf *b, const struct route *rt)
{
	char body[256], extra[128] = "";

	router_error_json(rt, body, sizeof body);
	if (rt->status == 401 && rt->kind == ROUTE_PUBLISH)
		snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer\r\n");
	else if (rt->status == 401)
		snprintf(extra, sizeof extra,
			 "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
	else if (rt->status == 405)
		snprintf(extra, sizeof extra, "Allow: %s\r\n", rt->allow);
	else if (rt->status == 503 || rt->status == 429)
		snprintf(extra, sizeof extra, "Retry-After: " STRINGIFY(RETRY_AFTER_S) "\r\n");
	reply_json(b, rt->status, extra, body);
}

void reply_unavailable(struct metrics_buf *b, const char *detail)
{
	struct route rt = {.status = 503, .error = "unavailable"};

	snprintf(rt.detail, sizeof rt.detail, "%s", detail);
	reply_error(b, &rt);
}

void poll_doc_init(struct poll_doc *p, int has_since, const struct cursor *since)
{
	metrics_buf_init(&p->body);
	metrics_printf(&p->body, "{\"notifications\":[");
	p->n = 0;
	p->has_cursor = has_since;
	p->cursor = *since;
	p->truncated = 0;
	p->more = 0;
}

void poll_doc_add(struct poll_doc *p, const char *env, size_t len, const struct cursor *id)
{
	metrics_printf(&p->body, "%s%.*s", p->n ? "," : "", (int)len, env);
	p->n++;
	if (id != NULL) {
		p->has_cursor = 1;
		p->cursor = *id;
	}
}

void poll_doc_reply(struct poll_doc *p, long poll_interval, struct metrics_buf *out)
{
	char cur[CURSOR_STR_MAX];

	if (p->has_cursor)
		cursor_format(&p->cursor, cur, sizeof cur);
	metrics_printf(&p->body,
		       "],\"cursor\":%s%s%s,\"truncated\":%s,\"more\":%s,\"poll_interval\":%ld}",
		       p->has_cursor ? "\"" : "", p->has_cursor ? cur : "null",
		       p->has_cursor ? "\"" : "", p->truncated ? "true" : "false",
		       p->more ? "true" : "false", poll_interval);
	if (p->body.err)
		reply_unavailable(out, "out of memory");
	else
		reply_append(out, 200, "application/json", "Cache-Control: no-store\r\n",
			     p->body.data, p->body.len);
	poll_doc_free(p);
}

void poll_doc_free(struct poll_doc *p)
{
	metrics_buf_free(&p->body);
}
