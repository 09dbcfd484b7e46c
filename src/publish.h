/*
 * publish.h - publishing a notification through the publish script.
 *
 * The script (redis.c) appends the envelope to P:U:history (XADD MAXLEN ~ N,
 * EXPIRE ttl) and PUBLISHes the same bytes to P:U, atomically, returning the
 * id.  Callers validate first: a payload that is not RFC 8259 JSON or a bad
 * user id is refused here before anything is sent.
 *
 * A publish is stored once (DESIGN 8): with an idempotency key the script
 * also keeps a record PREFIX:USER:history:idem:KEY = "ID SHA1(payload)" for
 * conf->idempotency_window seconds, and a publish that finds its record
 * stores and delivers nothing and answers the recorded id.  A timeout cannot
 * tell whether a command reached Redis (a busy or paused server runs it
 * later), so only a key makes a retry safe: the caller's own, or one made
 * per request by whoever retries (herald-fcgi does).
 */
#ifndef HERALD_PUBLISH_H
#define HERALD_PUBLISH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "conf.h"
#include "cursor.h"

#define PUBLISH_PAYLOAD_MAX (64 * 1024)
/* Longest idempotency key a caller may give (a batch appends ":N" to it). */
#define PUBLISH_IDEM_KEY_MAX 128

/*
 * Check user and payload without talking to Redis.  Returns 0, or
 * HERR_INVAL/HERR_TOOBIG with a message ("payload: unexpected character at
 * byte 12", "user: must match [A-Za-z0-9_.-]{1,64}") in err.
 */
int publish_check(const char *user, const char *payload, size_t len, char *err, size_t errlen);

/*
 * Publish one payload, blocking.  Fills *id.  Returns 0, HERR_INVAL (refused
 * before sending), or HERR_REDIS with the reason in err.
 *
 * Every publish function: with conf->publish_wait_replicas N > 0, a `WAIT N
 * publish_wait_timeout` follows the scripts in the same pipeline, and when
 * it answers fewer than N replicas (or an error: a replica, or no replicas
 * configured) the call returns HERR_AGAIN with "not acknowledged: ..." in
 * err.  The ids are filled then: the master stored the notifications, but a
 * failover may lose them; a retry with the same idempotency key is safe.
 * The connection may be to a master that was replaced: reconnect (through
 * the sentinels) before the retry.
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

/*
 * Check an idempotency key: 1..128 characters of [A-Za-z0-9_.:-] (a UUID, a
 * Celery task id, "invoice-81:paid").  Returns 0, or HERR_INVAL with
 * "idempotency key: must match [A-Za-z0-9_.:-]{1,128}" in err.
 */
int publish_idem_check(const char *key, size_t len, char *err, size_t errlen);

/*
 * A new random idempotency key, 32 hex digits (128 bits from getrandom(2)),
 * for a publisher that retries on its own and got no key from its caller.
 * len must be at least 33.  Returns 0, HERR_INVAL (len too small) or HERR_IO.
 */
int publish_idem_new(char *buf, size_t len);

/*
 * publish_one with an idempotency key; key NULL is publish_one.  The record
 * is PREFIX:USER:history:idem:KEY.  Within the window, a publish with the
 * same key and payload, however it comes (a retry on a new connection,
 * another process, at the same moment) stores nothing and fills *id with
 * the first publish's id.  *dup (may be NULL) is set to 1 for such a
 * replay, to 0 for a new entry.  Returns as publish_one; HERR_INVAL also for
 * a malformed key (nothing sent) and for a key whose record was made for
 * another payload (nothing stored; err says "idempotency key: already used
 * for another payload").
 */
int publish_one_idem(redisContext *rc, const struct conf *c, const char *user, const char *payload,
		     size_t len, const char *key, struct cursor *id, int *dup, char *err,
		     size_t errlen);

/*
 * publish_batch with an idempotency key; key NULL is publish_batch.  Payload
 * i is recorded under KEY:N, N = first + i in decimal ("K:0", "K:1", ...),
 * so a batch sent again, whole or from any point, stores each payload once
 * as long as payload N is the same payload each time.  A caller that splits
 * one input into several calls passes the input index of each call's first
 * payload (herald-publish does, per pipeline of 1000).  dups (n ints, may be
 * NULL) as *dup of publish_one_idem.  Returns as publish_batch; HERR_INVAL
 * also for a malformed key (nothing sent) and for payloads whose record was
 * made for another payload: those store nothing, the others are published,
 * their ids filled, and err names the first such index.
 */
int publish_batch_idem(redisContext *rc, const struct conf *c, const char *user,
		       const char *const *payloads, const size_t *lens, size_t n, const char *key,
		       size_t first, struct cursor *ids, int *dups, char *err, size_t errlen);

/*
 * Parse the publish script's reply into *id: a bulk "MS-SEQ" for a new
 * entry, a status "MS-SEQ" for a replay (*dup = 1; dup may be NULL).
 * Returns 0, HERR_REDIS for an error reply, HERR_INVAL for the error of a
 * key used for another payload or for a reply without an id.
 */
int publish_parse_reply(const redisReply *r, struct cursor *id, int *dup, char *err, size_t errlen);

#endif
