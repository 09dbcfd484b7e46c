/*
 * history.h - reading a user's history after a cursor.
 *
 * The history script (redis.c) answers in one round trip
 * {truncated, last_id, page_end, env1, env2, ...}: whether entries after the
 * cursor may have been removed (the stream is gone, or the cursor is before
 * the stream's max-deleted-entry-id, or before the first entry of a stream
 * that was trimmed: Redis 7.0 does not count MAXLEN trimming in
 * max-deleted-entry-id), the id of the newest entry ("" when none), the id
 * of the last entry the read looked at ("" when none), then the envelopes
 * after the cursor (exclusive), oldest first: one page of at most limit
 * entries and, past the first, max_bytes bytes of envelopes.  The next page
 * starts after page_end; there is one when page_end is before last_id
 * (`more`).  Without a cursor: the newest limit envelopes, truncated and
 * more 0.  Each entry's id is read from its envelope's prefix; stream
 * entries that are not envelopes are skipped.
 * Usable blocking (herald-fcgi polls) or asynchronously: build the argv with
 * history_argv(), send it any way, parse with history_parse_reply().
 */
#ifndef HERALD_HISTORY_H
#define HERALD_HISTORY_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "conf.h"
#include "cursor.h"
#include "redis.h"

#define HISTORY_LIMIT_MAX 1000

struct history_entry {
	struct cursor id;
	const char *env; /* envelope bytes, NUL-terminated; borrowed from the reply */
	size_t len;
};

struct history_result {
	int truncated;		       /* cursor older than the kept history */
	int more;		       /* entries wait after page_end */
	size_t n;		       /* entries */
	struct history_entry *entries; /* malloc()ed array of n; strings borrowed */
	struct cursor last;	       /* id of the newest entry in the stream; {0,0} if none */
	struct cursor page_end;	       /* last entry the read looked at; {0,0} if none */
	redisReply *reply;	       /* set by history_read only: owns the strings */
};

/* Storage for history_argv's output. */
struct history_argv {
	char key[REDIS_KEY_MAX];
	char since[CURSOR_STR_MAX];
	char limit[24];
	char budget[24];
	const char *argv[9];
	size_t argvlen[9];
	int argc;
};

/*
 * Prepare `EVALSHA history 1 P:U:history SINCE LIMIT BUDGET` (SINCE "" =
 * newest).  since may be NULL.  limit 1..HISTORY_LIMIT_MAX; max_bytes 0 =
 * no byte budget.  Returns 0 or HERR_INVAL.
 */
int history_argv(struct history_argv *h, const struct conf *c, const char *user,
		 const struct cursor *since, unsigned limit, size_t max_bytes);

/*
 * Parse the script's reply.  Borrows reply: the entries point into it and are
 * valid while it is (in a hiredis async callback: until the callback returns).
 * Returns 0, or HERR_REDIS (an error reply) / HERR_INVAL (unexpected shape)
 * with a reason in err.  history_result_free() frees the entries array.
 */
int history_parse_reply(redisReply *reply, struct history_result *out, char *err, size_t errlen);

/*
 * Whether a read after since that Redis answered with truncated set (n
 * entries) lost anything.  The cursor 0-0 stands before every entry, and
 * it is what a connection without a cursor is told on an empty history
 * (hub_attach_tail): when the read then finds no entry (the stream does
 * not exist yet, or holds none), nothing after the cursor was cut.  Any
 * other answer: truncated.  since NULL: 0 (a read without a cursor is
 * never truncated).
 */
int history_cut(const struct cursor *since, int truncated, size_t n);

/* Frees entries, and the reply when history_read() made it.  NULL is fine. */
void history_result_free(struct history_result *r);

/*
 * Blocking read (EVALSHA with NOSCRIPT reload); out->truncated is
 * history_cut()'s verdict.  0, HERR_INVAL or HERR_REDIS
 * with the reason in err.  After HERR_REDIS with rc->err set the connection
 * is broken (redisFree it and connect again); without, Redis answered an
 * error and the connection is still usable.
 */
int history_read(redisContext *rc, const struct conf *c, const char *user,
		 const struct cursor *since, unsigned limit, size_t max_bytes,
		 struct history_result *out, char *err, size_t errlen);

/*
 * The two halves of a read, for reads pipelined with others (a worker's
 * batch of polls): history_append adds `before` (when its argc > 0) and h
 * to rc's output buffer, nothing sent yet; 0, or HERR_REDIS after which
 * the link is broken.  history_collect reads that pair's replies, in the
 * order the appends went: *first as history_read_after's (first may be
 * NULL), the read's into out, cut after since.  NOSCRIPT: with reload set
 * the script is loaded and the read sent again, which needs no other
 * reply to be pending on rc; without, HERR_AGAIN (the link still in step:
 * read the rest, then read this one again on its own).  Other results as
 * history_read's.  h must live until history_collect returns.
 */
int history_append(redisContext *rc, const struct redis_cmd *before, struct history_argv *h,
		   char *err, size_t errlen);
int history_collect(redisContext *rc, int has_before, redisReply **first,
		    const struct history_argv *h, const struct cursor *since, int reload,
		    struct history_result *out, char *err, size_t errlen);

/*
 * history_read with the command `before` sent ahead of it in the same write,
 * so that both cost one round trip (a poll's revocation check).  *first
 * (when first is not NULL) gets that command's reply, or NULL when none
 * came; the caller frees it.  A script Redis no longer holds (NOSCRIPT,
 * after a restart) is loaded and the read sent again.  Results as
 * history_read's; the history read fails whenever *first is NULL.
 */
int history_read_after(redisContext *rc, const struct redis_cmd *before, redisReply **first,
		       const struct conf *c, const char *user, const struct cursor *since,
		       unsigned limit, size_t max_bytes, struct history_result *out, char *err,
		       size_t errlen);

#endif
