/*
 * cluster.h - a small Redis Cluster client for Herald's opt-in cluster mode
 * (redis_cluster = yes).
 *
 * Debian 12's hiredis 0.14 has no cluster support, so this module brings the
 * parts Herald needs and no more:
 *   - the key slot: CRC16 (XMODEM) of the key, or of its hash tag, the text
 *     between the first '{' and the next '}' when that is not empty, mod
 *     16384 (the Redis Cluster specification);
 *   - the slot map, read from `CLUSTER SLOTS`: which master serves which slot;
 *   - MOVED and ASK redirections: "MOVED 3999 10.0.0.2:6381" means the slot
 *     lives on that node now (refresh the map, send again), "ASK 3999 ..."
 *     that this one key is being migrated there (send ASKING, then the
 *     command, to that node, once);
 *   - a blocking client: one connection per master, opened when first needed,
 *     every call routed by its key, redirections followed at most
 *     CLUSTER_TRIES times, a connection error answered by a new map.
 * The asynchronous side (herald-ws, herald-fcgi's held streams) lives in
 * sub.c and shares the map and the parsers.
 *
 * In cluster mode every key of one user carries the user's hash tag
 * (P:{U}:history, P:{U}:nbf, ... see redis.h), so each call that Herald makes
 * touches one slot, and the publish script's keys and channel stay together.
 *
 * Scripts: Redis keeps its script cache per node, so a NOSCRIPT from one
 * master is answered by SCRIPT LOAD on that master (redis_eval_sync and
 * publish already do that on the connection they were given).
 */
#ifndef HERALD_CLUSTER_H
#define HERALD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "conf.h"
#include "redis.h"

#define CLUSTER_SLOTS 16384
/* Masters a map can name; a cluster of more is refused with a clear error. */
#define CLUSTER_NODES_MAX 128
/* Seeds in redis_cluster_nodes. */
#define CLUSTER_SEEDS_MAX 16
/* Sends of one call: the first, and redirections or reconnects after it. */
#define CLUSTER_TRIES 5

/* The slot (0..16383) of key, len bytes, honouring a hash tag. */
unsigned cluster_keyslot(const char *key, size_t len);

/* CRC16-XMODEM of buf, the checksum the slot is taken from. */
uint16_t cluster_crc16(const char *buf, size_t len);

struct cluster_redirect {
	int ask; /* 1 for ASK, 0 for MOVED */
	unsigned slot;
	char host[256];
	int port;
};

/*
 * Find a redirection in msg (len bytes): an error reply's text ("MOVED 3999
 * 127.0.0.1:6381", "ASK 3999 [::1]:6381"), alone or at the end of a message
 * that quotes it ("redis: MOVED 3999 ...", "MGET P:{7}:nbf: ASK ...").
 * Returns 0 and fills *out, or HERR_NOTFOUND when msg holds none, HERR_INVAL
 * when it holds a malformed one.
 */
int cluster_redirect_parse(const char *msg, size_t len, struct cluster_redirect *out);

struct cluster_node {
	char host[256];
	int port;
};

/* Which master serves each slot.  About 66 KiB: allocate it. */
struct cluster_map {
	size_t n;				      /* nodes */
	struct cluster_node nodes[CLUSTER_NODES_MAX]; /* masters, in order of first sight */
	int16_t slot[CLUSTER_SLOTS];		      /* index into nodes, -1 unserved */
};

/* An empty map: no node, every slot unserved. */
void cluster_map_init(struct cluster_map *m);

/* The index of host:port in m, added when absent.  Index or HERR_TOOBIG. */
int cluster_map_node(struct cluster_map *m, const char *host, int port);

/*
 * Fill m from a `CLUSTER SLOTS` reply: [[start, end, [host, port, id...],
 * replicas...]...].  A master shown with an empty host or "?" (Redis does
 * so for the node that answers when it does not know its own address) gets
 * from_host.  Returns 0, or HERR_INVAL (HERR_TOOBIG past CLUSTER_NODES_MAX
 * masters) with the reason in err; m is then empty.  Slots no master serves
 * stay -1 (the cluster is not ok: calls on them fail until a refresh).
 */
int cluster_map_parse(const redisReply *r, const char *from_host, struct cluster_map *m, char *err,
		      size_t errlen);

/*
 * The seeds of configuration c: redis_cluster_nodes (host:port or
 * [v6]:port each) when set, else redis_url's host:port; each with
 * redis_url's password, into out (max entries).  Returns the count, or
 * HERR_INVAL with err: a unix:// redis_url without redis_cluster_nodes, a
 * database other than 0 (a cluster has only 0), more than max seeds.
 */
int cluster_seeds(const struct conf *c, struct redis_addr *out, size_t max, char *err,
		  size_t errlen);

/* The blocking client. */
struct cluster;

/*
 * A client for configuration c (borrowed only during the call): the seeds
 * and password of cluster_seeds, timeout_ms on connect and on each command.
 * Connects to nothing yet.  Returns 0 and *out, HERR_INVAL (bad
 * configuration, err says why) or HERR_NOMEM.  Not thread-safe: one per
 * thread.  Free with cluster_free (NULL is fine).
 */
int cluster_new(struct cluster **out, const struct conf *c, int timeout_ms, char *err,
		size_t errlen);
void cluster_free(struct cluster *cl);

/*
 * Read the slot map again from the first seed or known master that
 * answers.  0 or HERR_REDIS with the reason of the last failure in err.
 */
int cluster_refresh(struct cluster *cl, char *err, size_t errlen);

/*
 * An operation on one connection: the caller's blocking calls on rc
 * (history_read, publish_one_idem, revoke_check_sync...).  Returns 0 or an
 * error code with its reason in err; an error reply of Redis must be quoted
 * in err, as libherald's functions do, so a redirection can be seen.
 */
typedef int (*cluster_fn)(redisContext *rc, void *arg, char *err, size_t errlen);

/*
 * Run fn on the connection of the master serving key's slot.  When it
 * fails with a redirection in err, or with its connection broken (rc->err),
 * cluster_run follows the redirection (MOVED: the map is read again; ASK:
 * ASKING first, on the named node) or reads the map again and opens the
 * connection again, and runs fn again: CLUSTER_TRIES runs in all.  fn must
 * therefore be safe to run again after such a failure: a redirected command
 * was not executed, and a broken connection is for the caller to judge
 * (Herald's publishes carry an idempotency key or report which payloads
 * went through).  Returns fn's last result, or HERR_REDIS with err when no
 * master serves the slot or none can be reached.
 */
int cluster_run(struct cluster *cl, const char *key, size_t keylen, cluster_fn fn, void *arg,
		char *err, size_t errlen);

/*
 * The connection of the master serving key's slot, connected if need be
 * (for a caller that pipelines on it itself).  Borrowed: valid until the
 * next call on cl.  NULL with err when none can be reached.
 */
redisContext *cluster_conn(struct cluster *cl, const char *key, size_t keylen, char *err,
			   size_t errlen);

/* The current map (borrowed; read-only), for logs and tests. */
const struct cluster_map *cluster_get_map(const struct cluster *cl);

/*
 * The asynchronous side, for the subscriber (sub.c) on the program's
 * libevent loop: one command connection per master, the map read with
 * CLUSTER SLOTS from one node at each start, and the routing and
 * redirections of the blocking client.
 *
 * The subscriber's pub/sub link needs none of this: a classic PUBLISH in a
 * cluster reaches every node (the cluster bus), so SUBSCRIBE works on any
 * one node; when that node goes, the subscriber reconnects to another and
 * catches up from history, as after any loss.
 */
struct cluster_async;

/*
 * What a cluster_async reports: ok 1 when every master's connection
 * answered (msg names them, for a log line), ok 0 when the start failed or
 * a connection was lost afterwards (msg says why; every connection is then
 * closed, and commands in flight are answered NULL).  Called from the loop,
 * possibly from within cluster_async_redirect.
 */
typedef void (*cluster_async_fn)(void *ud, int ok, const char *msg);

/*
 * For configuration c (the seeds, as cluster_seeds), on base.  Connects to
 * nothing yet.  0, HERR_INVAL with err, HERR_NOMEM.  Free with
 * cluster_async_free (NULL is fine), which closes without calling fn.
 */
int cluster_async_new(struct cluster_async **out, struct event_base *base, const struct conf *c,
		      cluster_async_fn fn, void *ud, char *err, size_t errlen);
void cluster_async_free(struct cluster_async *ca);

/*
 * The node to try next, in turn: the seeds, then the masters of the last
 * map (a cluster whose seeds are all gone is still found).  Written to
 * *out with the password; for the caller's own links too.
 */
void cluster_async_next_node(struct cluster_async *ca, struct redis_addr *out);

/*
 * Start: read the map from node a, then connect to every master it names.
 * fn reports the outcome.  Stops whatever ran before.  0, or HERR_REDIS /
 * HERR_NOMEM (fn is not called).
 */
int cluster_async_start(struct cluster_async *ca, const struct redis_addr *a);

/* Close every connection; fn is not called.  Idempotent. */
void cluster_async_stop(struct cluster_async *ca);

/* 1 once fn reported ok, until a loss or stop. */
int cluster_async_ready(const struct cluster_async *ca);

/* The connection of the master serving key's slot; NULL when not ready. */
struct redisAsyncContext *cluster_async_route(struct cluster_async *ca, const char *key,
					      size_t keylen);

/*
 * An error reply (msg, len bytes) to a command sent through
 * cluster_async_route: for MOVED, the map follows and the new master's
 * connection is returned; for ASK, ASKING is queued on the named master's
 * connection, which is returned: send the command there next.  NULL when
 * msg is no redirection, or names a node outside the map (the map changed:
 * the loss is reported through fn, and every connection closed).
 */
struct redisAsyncContext *cluster_async_redirect(struct cluster_async *ca, const char *msg,
						 size_t len);

#endif
