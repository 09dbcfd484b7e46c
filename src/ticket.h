/*
 * ticket.h - single-use tickets that keep the JWT out of URLs (DESIGN.md
 * section 4).
 *
 * POST .../ticket with the JWT in Authorization mints one: 32 random bytes
 * (getrandom), unpadded base64url (43 characters), stored as
 *   P:__herald:ticket:TICKET = "USER EXP IAT[ JTI]"   SET ... EX ticket_ttl NX
 * (the same name in Redis Cluster mode: no hash tag, tickets spread over the slots)
 * A WebSocket or SSE request with ?ticket=TICKET redeems it with GETDEL, so
 * it works once, on any Herald process sharing the Redis, within its
 * lifetime; the connection gets the token's user, expiry, iat and jti (so
 * revocation applies to it too).  A ticket that is unknown, used, expired,
 * forged, or met while Redis is down is refused like a bad token
 * (AUTH_BAD_TICKET); logs never show a ticket's value.
 */
#ifndef HERALD_TICKET_H
#define HERALD_TICKET_H

#include <stddef.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "auth.h"

#define TICKET_BYTES 32
#define TICKET_LEN 43 /* base64url of 32 bytes, unpadded */

/* 1 when t (len bytes) has a ticket's shape: 43 base64url characters. */
int ticket_valid(const char *t, size_t len);

/* A new ticket into out (TICKET_LEN + 1).  0, or HERR_IO when getrandom fails. */
int ticket_new(char *out);

/* P:__herald:ticket:TICKET into buf (REDIS_KEY_MAX).  Length, HERR_INVAL
 * (bad prefix or ticket), HERR_TOOBIG. */
int ticket_key(char *buf, size_t len, const char *prefix, const char *ticket);

/* The stored value for id into buf; length or HERR_TOOBIG. */
int ticket_value(char *buf, size_t len, const struct auth_identity *id);

/*
 * Read a GETDEL answer: a value that ticket_value wrote and whose exp has
 * not passed at now (with leeway) fills *id and gives AUTH_OK; nil or a
 * malformed value AUTH_BAD_TICKET; a passed exp AUTH_EXPIRED; an error
 * reply or one of another type HERR_REDIS.
 */
int ticket_redeem_reply(const redisReply *r, time_t now, long leeway, struct auth_identity *id);

/*
 * Blocking: store a ticket for id for ttl seconds.  out (TICKET_LEN + 1)
 * holds one ticket_new made, or "" to mint one here; it holds the ticket
 * on return.  (A caller that must know the key first, to route it in a
 * Redis Cluster, mints it itself.)  0, HERR_IO (getrandom), HERR_REDIS
 * with err.
 */
int ticket_store_sync(redisContext *rc, const char *prefix, const struct auth_identity *id,
		      long ttl, char *out, char *err, size_t errlen);

/* Blocking redeem of ticket: as ticket_redeem_reply, HERR_REDIS with err. */
int ticket_redeem_sync(redisContext *rc, const char *prefix, const char *ticket, time_t now,
		       long leeway, struct auth_identity *id, char *err, size_t errlen);

#endif
