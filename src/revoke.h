/*
 * revoke.h - disconnect and revocation on every Herald process (DESIGN.md
 * section 4): the control channel's messages, the Redis keys checked at
 * connect, and the predicate that picks the live connections to close.
 *
 * Redis layout, with P the channel prefix, U a user id, J a jti:
 *   P:__herald:control   channel every herald-ws and herald-fcgi subscribes
 *                        to; one text command per message:
 *                          "disconnect U"  close every connection of U
 *                          "nbf U T"       close those whose token has
 *                                          iat < T (T: seconds since the epoch)
 *                          "jti U J"       close those carrying jti J
 *   P:U:nbf              string T: tokens of U issued before T are refused
 *                        at connect; expires (token_max_age)
 *   P:U:revoked:J        exists: the token of U with jti J is refused at
 *                        connect; expires with the token
 * User ids never hold ':', so none of these names can be a user's channel
 * (P:U) or history (P:U:history).  A token without iat counts as issued
 * at 0: any not-before time refuses it.
 *
 * Pure except revoke_check_sync (one blocking command).
 */
#ifndef HERALD_REVOKE_H
#define HERALD_REVOKE_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "auth.h"
#include "redis.h"

enum revoke_kind {
	REVOKE_DISCONNECT = 1, /* every connection of the user */
	REVOKE_BEFORE = 2,     /* connections whose token's iat < before */
	REVOKE_JTI = 3,        /* connections whose token's jti == jti */
};

struct revoke_cmd {
	int kind;                     /* enum revoke_kind */
	char user[AUTH_USER_MAX + 1];
	long long before;             /* REVOKE_BEFORE */
	char jti[AUTH_JTI_MAX + 1];   /* REVOKE_JTI */
};

/* The longest control message: "jti " USER " " JTI. */
#define REVOKE_MSG_MAX (4 + AUTH_USER_MAX + 1 + AUTH_JTI_MAX)

/*
 * Parse one control message (len bytes, not NUL-terminated): exactly one
 * space between fields, a valid user id, T a decimal from 0 to
 * AUTH_EXP_MAX, J valid by auth_jti_valid.  Returns 0 or HERR_INVAL.
 */
int revoke_parse(const char *msg, size_t len, struct revoke_cmd *out);

/* The message for cmd into buf (REVOKE_MSG_MAX + 1 is enough); returns its
 * length, or HERR_INVAL for a bad command, HERR_TOOBIG. */
int revoke_format(const struct revoke_cmd *cmd, char *buf, size_t len);

/*
 * Names into buf (REDIS_KEY_MAX): the control channel, a user's not-before
 * key, a revoked jti's key.  Return the length, HERR_INVAL (bad prefix,
 * user or jti) or HERR_TOOBIG.
 */
int revoke_channel(char *buf, size_t len, const char *prefix);
int revoke_nbf_key(char *buf, size_t len, const char *prefix, const char *user);
int revoke_jti_key(char *buf, size_t len, const char *prefix, const char *user, const char *jti);

/*
 * Does cmd close a connection of its user whose token had iat and jti
 * ("" or NULL: none)?  1 or 0.
 */
int revoke_match(const struct revoke_cmd *cmd, long long iat, const char *jti);

/*
 * The connect-time check of id: `MGET P:U:nbf [P:U:revoked:J]` (the jti key
 * only when id has one).  revoke_check_argv fills the keys into keys
 * (2 x REDIS_KEY_MAX) and argv/argvlen (3 entries, borrowed pointers into
 * keys) and returns argc, or HERR_INVAL.  revoke_check_reply reads the
 * answer: AUTH_OK, AUTH_REVOKED, or HERR_REDIS for an error reply or one of
 * another shape.
 */
struct revoke_argv {
	char keys[2][REDIS_KEY_MAX];
	const char *argv[3];
	size_t argvlen[3];
	int argc;
};
int revoke_check_argv(struct revoke_argv *ra, const char *prefix, const struct auth_identity *id);
int revoke_check_reply(const redisReply *r, const struct auth_identity *id);

/* revoke_check_reply, with the reason in err for HERR_REDIS: the error
 * reply, or errstr (the link's error) when r is NULL. */
int revoke_check_result(const redisReply *r, const struct revoke_argv *ra,
			const struct auth_identity *id, const char *errstr, char *err, size_t errlen);

/*
 * The same check on a blocking connection.  AUTH_OK, AUTH_REVOKED, or
 * HERR_REDIS with the reason in err (the connection may then be unusable:
 * check rc->err).
 */
int revoke_check_sync(redisContext *rc, const char *prefix, const struct auth_identity *id,
		      char *err, size_t errlen);

#endif
