#include "config.h"

#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "err.h"

int history_argv(struct history_argv *h, const struct conf *c, const char *user,
		 const struct cursor *since, unsigned limit, size_t max_bytes)
{
	const char *prefix = c->channel_prefix != NULL ? c->channel_prefix : "notifications";
	const char *kv[4];
	size_t kvlen[4];
	int n;

	memset(h, 0, sizeof *h);
	if (limit < 1 || limit > HISTORY_LIMIT_MAX)
		return HERR_INVAL;
	n = redis_history_key(h->key, sizeof h->key, prefix, user);
	if (n < 0)
		return HERR_INVAL;
	kvlen[0] = (size_t)n;
	kvlen[1] = 0;
	if (since != NULL) {
		n = cursor_format(since, h->since, sizeof h->since);
		if (n < 0)
			return HERR_INVAL;
		kvlen[1] = (size_t)n;
	}
	kvlen[2] = (size_t)snprintf(h->limit, sizeof h->limit, "%u", limit);
	kvlen[3] = (size_t)snprintf(h->budget, sizeof h->budget, "%zu", max_bytes);
	kv[0] = h->key;
	kv[1] = h->since;
	kv[2] = h->limit;
	kv[3] = h->budget;
	h->argc = redis_evalsha_argv(&redis_script_history, 1, 3, kv, kvlen, h->argv, h->argvlen);
	return h->argc < 0 ? HERR_INVAL : 0;
}

int history_parse_reply(redisReply *reply, struct history_result *out, char *err, size_t errlen)
{
	const redisReply *t, *last, *end;
	size_t n;

	memset(out, 0, sizeof *out);
	if (reply == NULL)
		return herr_set(HERR_REDIS, err, errlen, "redis: no reply");
	if (reply->type == REDIS_REPLY_ERROR)
		return herr_set(HERR_REDIS, err, errlen, "redis: %s",
			    reply->str != NULL ? reply->str : "error");
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return herr_set(HERR_INVAL, err, errlen,
			    "history: expected {truncated, last_id, page_end, ...}");
	t = reply->element[0];
	last = reply->element[1];
	end = reply->element[2];
	if (t->type != REDIS_REPLY_INTEGER || (t->integer != 0 && t->integer != 1))
		return herr_set(HERR_INVAL, err, errlen, "history: truncated is not 0 or 1");
	if (last->type != REDIS_REPLY_STRING ||
	    (last->len != 0 && cursor_parse(last->str, last->len, &out->last) != 0))
		return herr_set(HERR_INVAL, err, errlen, "history: last_id is not an id");
	if (end->type != REDIS_REPLY_STRING ||
	    (end->len != 0 && cursor_parse(end->str, end->len, &out->page_end) != 0))
		return herr_set(HERR_INVAL, err, errlen, "history: page_end is not an id");
	n = reply->elements - 3;
	if (n > 0) {
		out->entries = calloc(n, sizeof *out->entries);
		if (out->entries == NULL)
			return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const redisReply *e = reply->element[i + 3];
		struct history_entry *h = &out->entries[i];

		if (e->type != REDIS_REPLY_STRING || envelope_id(e->str, e->len, &h->id) != 0) {
			free(out->entries);
			memset(out, 0, sizeof *out);
			return herr_set(HERR_INVAL, err, errlen,
				    "history: entry %zu is not an envelope with an id", i);
		}
		h->env = e->str;
		h->len = e->len;
	}
	out->truncated = (int)t->integer;
	out->more = end->len != 0 && last->len != 0 && cursor_cmp(&out->page_end, &out->last) < 0;
	out->n = n;
	return 0;
}

int history_cut(const struct cursor *since, int truncated, size_t n)
{
	if (since == NULL || !truncated)
		return 0;
	return n > 0 || since->ms != 0 || since->seq != 0;
}

void history_result_free(struct history_result *r)
{
	if (r == NULL)
		return;
	free(r->entries);
	if (r->reply != NULL)
		freeReplyObject(r->reply);
	memset(r, 0, sizeof *r);
}

int history_read(redisContext *rc, const struct conf *c, const char *user,
		 const struct cursor *since, unsigned limit, size_t max_bytes,
		 struct history_result *out, char *err, size_t errlen)
{
	const struct redis_cmd none = {0};

	return history_read_after(rc, &none, NULL, c, user, since, limit, max_bytes, out, err,
				  errlen);
}

/* The link is out of step or gone: say why, and make sure it is not reused. */
static int link_broken(redisContext *rc, char *err, size_t errlen)
{
	if (rc->err == 0) {
		rc->err = REDIS_ERR_OOM;
		snprintf(rc->errstr, sizeof rc->errstr, "out of memory");
	}
	return herr_set(HERR_REDIS, err, errlen, "redis: %s", rc->errstr);
}

int history_append(redisContext *rc, const struct redis_cmd *before, struct history_argv *h,
		   char *err, size_t errlen)
{
	if (before->argc > 0 &&
	    redisAppendCommandArgv(rc, before->argc, before->argv, before->argvlen) != REDIS_OK)
		return link_broken(rc, err, errlen);
	if (redisAppendCommandArgv(rc, h->argc, h->argv, h->argvlen) != REDIS_OK)
		return link_broken(rc, err, errlen);
	return 0;
}

int history_collect(redisContext *rc, int has_before, redisReply **first,
		    const struct history_argv *h, const struct cursor *since, int reload,
		    struct history_result *out, char *err, size_t errlen)
{
	redisReply *reply;
	void *r;
	int rv;

	memset(out, 0, sizeof *out);
	if (first != NULL)
		*first = NULL;
	if (has_before) {
		if (redisGetReply(rc, &r) != REDIS_OK)
			return link_broken(rc, err, errlen);
		if (first != NULL)
			*first = r;
		else
			freeReplyObject(r);
	}
	if (redisGetReply(rc, &r) != REDIS_OK)
		return link_broken(rc, err, errlen);
	reply = r;
	if (redis_reply_is_noscript(reply)) {
		freeReplyObject(reply);
		if (!reload)
			return herr_set(HERR_AGAIN, err, errlen, "redis: NOSCRIPT");
		/* Redis restarted or flushed its scripts: load it, read again. */
		reply = redis_eval_sync(rc, &redis_script_history, 1, 3, h->argv + 3,
					h->argvlen + 3, err, errlen);
		if (reply == NULL)
			return HERR_REDIS;
	}
	rv = history_parse_reply(reply, out, err, errlen);
	if (rv != 0) {
		freeReplyObject(reply);
		return rv;
	}
	out->truncated = history_cut(since, out->truncated, out->n);
	out->reply = reply;
	return 0;
}

int history_read_after(redisContext *rc, const struct redis_cmd *before, redisReply **first,
		       const struct conf *c, const char *user, const struct cursor *since,
		       unsigned limit, size_t max_bytes, struct history_result *out, char *err,
		       size_t errlen)
{
	struct history_argv h;
	int rv;

	memset(out, 0, sizeof *out);
	if (first != NULL)
		*first = NULL;
	if (history_argv(&h, c, user, since, limit, max_bytes) != 0)
		return herr_set(HERR_INVAL, err, errlen,
			    "history: bad user, channel_prefix or limit (1..%d)",
			    HISTORY_LIMIT_MAX);
	/* Both commands in one write, both replies from one read when they fit. */
	rv = history_append(rc, before, &h, err, errlen);
	if (rv != 0)
		return rv;
	return history_collect(rc, before->argc > 0, first, &h, since, 1, out, err, errlen);
}
