/*
 * publish.h - publishing a notification through the publish script.
 *
 * The script (redis.c) appends the envelope to P:U:history (XADD MAXLEN ~ N,
 * EXPIRE ttl) and PUBLISHes the same bytes to P:U, atomically, returning the
 * id.  Callers validate first: a payload that is not RFC 8259 JSON or a bad
 * user id is refused here before anything is sent.
 */
#ifndef HERALD_PUBLISH_H
#define HERALD_PUBLISH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "conf.h"
#include "cursor.h"

#define PUBLISH_PAYLOAD_MAX (64 * 1024)

/*
 * Check user and payload without talking to Redis.  Returns 0, or
 * HERR_INVAL/HERR_TOOBIG with a message ("payload: unexpected character at
 * byte 12", "user: must match [A-Za-z0-9_.-]{1,64}") in err.
 */
int publish_check(const char *user, const char *payload, size_t len, char *err, size_t errlen);

/*
 * Publish one payload, blocking.  Fills *id.  Returns 0, HERR_INVAL (refused
 * before sending), or HERR_REDIS with the reason in err.
 */
int publish_one(redisContext *rc, const struct conf *c, const char *user,
		const char *payload, size_t len, struct cursor *id, char *err, size_t errlen);

/*
 * Publish n payloads for user, pipelined (all sent, then all replies read).
 * Every payload is checked before anything is sent: one bad payload and
 * nothing is published (HERR_INVAL, err names its index: "payloads[2]: ...").
 * ids receives n cursors, in order.  Returns 0, HERR_INVAL, HERR_NOMEM or
 * HERR_REDIS.  On HERR_REDIS the ids of the payloads that were published are
 * filled and the others are {0,0}; when rc->err is set the connection is
 * broken (redisFree it): payloads without an id may or may not have been
 * published.  A NOSCRIPT reply loads the script and resends, in order.
 */
int publish_batch(redisContext *rc, const struct conf *c, const char *user,
		  const char *const *payloads, const size_t *lens, size_t n,
		  struct cursor *ids, char *err, size_t errlen);

/* Parse the publish script's reply (a status or bulk "MS-SEQ") into *id. */
int publish_parse_reply(const redisReply *r, struct cursor *id, char *err, size_t errlen);

#endif
