#include "config.h"

#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "err.h"
#include "evredis.h"
#include "text.h"

/* --- slots ------------------------------------------------------------------ */

uint16_t cluster_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	/* Bit by bit: keys are short, and the table would be 512 bytes of data. */
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc =
			    (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned cluster_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = memchr(open + 1, '}', rest);

		/* "{}" or "{" alone: the whole key counts. */
		if (close != NULL && close > open + 1)
			return cluster_crc16(open + 1, (size_t)(close - open - 1)) &
			       (CLUSTER_SLOTS - 1);
	}
	return cluster_crc16(key, len) & (CLUSTER_SLOTS - 1);
}

/* --- redirections ------------------------------------------------------------ */

/* The address of a redirection, len bytes: host:port, [v6]:port, or :port
 * (Redis 7 leaves the host out when the node does not know it: the caller
 * uses the one it asked). */
static int parse_target(const char *s, size_t len, struct cluster_redirect *out)
{
	struct redis_node node;
	char buf[300];
	uint64_t v;

	if (len > 0 && s[0] == ':') {
		if (text_parse_uint(s + 1, len - 1, 65535, &v) != 0 || v == 0)
			return HERR_INVAL;
		out->host[0] = '\0';
		out->port = (int)v;
		return 0;
	}
	if (len >= sizeof buf || memchr(s, '\0', len) != NULL)
		return HERR_INVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (redis_node_parse(buf, &node) != 0)
		return HERR_INVAL;
	memcpy(out->host, node.host, sizeof out->host);
	out->port = node.port;
	return 0;
}

/* Where "MOVED " or "ASK " starts a word in msg, the last such place; NULL if none. */
static const char *find_redirect(const char *msg, size_t len, int *ask)
{
	const char *found = NULL;

	for (size_t i = 0; i < len; i++) {
		if (i > 0 && msg[i - 1] != ' ')
			continue;
		if (len - i > 6 && memcmp(msg + i, "MOVED ", 6) == 0) {
			found = msg + i;
			*ask = 0;
		} else if (len - i > 4 && memcmp(msg + i, "ASK ", 4) == 0) {
			found = msg + i;
			*ask = 1;
		}
	}
	return found;
}

int cluster_redirect_parse(const char *msg, size_t len, struct cluster_redirect *out)
{
	const char *p, *end, *sp;
	uint64_t slot;
	int ask = 0;

	memset(out, 0, sizeof *out);
	if (msg == NULL || (p = find_redirect(msg, len, &ask)) == NULL)
		return HERR_NOTFOUND;
	end = msg + len;
	p += ask ? 4 : 6;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL || text_parse_uint(p, (size_t)(sp - p), CLUSTER_SLOTS - 1, &slot) != 0)
		return HERR_INVAL;
	p = sp + 1;
	/* The address ends the message, or a blank does. */
	sp = memchr(p, ' ', (size_t)(end - p));
	if (parse_target(p, (size_t)((sp != NULL ? sp : end) - p), out) != 0) {
		memset(out, 0, sizeof *out);
		return HERR_INVAL;
	}
	out->ask = ask;
	out->slot = (unsigned)slot;
	return 0;
}

/* --- the slot map -------------------------------------------------------------- */

void cluster_map_init(struct cluster_map *m)
{
	m->n = 0;
	for (size_t i = 0; i < CLUSTER_SLOTS; i++)
		m->slot[i] = -1;
}

int cluster_map_node(struct cluster_map *m, const char *host, int port)
{
	size_t hlen = strlen(host);

	for (size_t i = 0; i < m->n; i++)
		if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
			return (int)i;
	if (m->n == CLUSTER_NODES_MAX || hlen >= sizeof m->nodes[0].host)
		return HERR_TOOBIG;
	memcpy(m->nodes[m->n].host, host, hlen + 1);
	m->nodes[m->n].port = port;
	return (int)m->n++;
}

int cluster_map_parse(const redisReply *r, const char *from_host, struct cluster_map *m, char *err,
		      size_t errlen)
{
	cluster_map_init(m);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return herr_set(HERR_INVAL, err, errlen, "CLUSTER SLOTS: %s",
				r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
									  : "expected an array");
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *node, *host, *port;
		const char *h;
		int idx;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
			goto bad;
		node = e->element[2];
		host = node->element[0];
		port = node->element[1];
		if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
		    port->integer < 1 || port->integer > 65535 || e->element[0]->integer < 0 ||
		    e->element[1]->integer >= CLUSTER_SLOTS ||
		    e->element[0]->integer > e->element[1]->integer)
			goto bad;
		h = host->str;
		if (host->len == 0 || strcmp(h, "?") == 0)
			h = from_host != NULL ? from_host : "";
		idx = cluster_map_node(m, h, (int)port->integer);
		if (idx < 0) {
			cluster_map_init(m);
			return herr_set(idx, err, errlen,
					"CLUSTER SLOTS: more than %d masters, or a host name over "
					"255 bytes",
					CLUSTER_NODES_MAX);
		}
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			m->slot[s] = (int16_t)idx;
	}
	return 0;
bad:
	cluster_map_init(m);
	return herr_set(
	    HERR_INVAL, err, errlen,
	    "CLUSTER SLOTS: unexpected reply (expected [start, end, [host, port, id]])");
}

/* --- seeds --------------------------------------------------------------------- */

int cluster_seeds(const struct conf *c, struct redis_addr *out, size_t max, char *err,
		  size_t errlen)
{
	struct redis_addr url;
	int n;

	if (max == 0 || redis_url_parse(c->redis_url, &url, err, errlen) != 0)
		return HERR_INVAL;
	if (url.db != 0)
		return herr_set(HERR_INVAL, err, errlen,
				"redis_cluster: a cluster has database 0 only, but redis_url names "
				"database %d",
				url.db);
	if (c->redis_cluster_nodes != NULL && c->redis_cluster_nodes[0] != NULL) {
		for (n = 0; c->redis_cluster_nodes[n] != NULL; n++) {
			const char *s = c->redis_cluster_nodes[n];
			struct redis_node node;

			if ((size_t)n == max)
				return herr_set(HERR_INVAL, err, errlen,
						"redis_cluster_nodes: more than %zu nodes; a few "
						"seeds are enough, the others are found from them",
						max);
			if (redis_node_parse(s, &node) != 0)
				return herr_set(
				    HERR_INVAL, err, errlen,
				    "redis_cluster_nodes: expected host:port, got '%.300s'", s);
			memset(&out[n], 0, sizeof out[n]);
			memcpy(out[n].host, node.host, sizeof out[n].host);
			out[n].port = node.port;
		}
	} else if (url.path[0] != '\0') {
		return herr_set(HERR_INVAL, err, errlen,
				"redis_cluster: redis_url is a unix socket; set "
				"redis_cluster_nodes = host:port[,host:port...]");
	} else {
		out[0] = url;
		n = 1;
	}
	for (int i = 0; i < n; i++)
		memcpy(out[i].password, url.password, sizeof url.password);
	return n;
}

/* --- the blocking client ---------------------------------------------------------- */

struct cluster {
	struct redis_addr seeds[CLUSTER_SEEDS_MAX];
	size_t nseeds;
	char password[sizeof((struct redis_addr *)0)->password];
	int timeout_ms;
	int have_map; /* map was read and no connection failed since */
	int stale;    /* a MOVED patched the map: read it again before the next call */
	struct cluster_map *map;
	redisContext *conn[CLUSTER_NODES_MAX]; /* by index into map->nodes */
};

int cluster_new(struct cluster **out, const struct conf *c, int timeout_ms, char *err,
		size_t errlen)
{
	struct cluster *cl;
	int n;

	*out = NULL;
	cl = calloc(1, sizeof *cl);
	if (cl == NULL)
		return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	n = cluster_seeds(c, cl->seeds, CLUSTER_SEEDS_MAX, err, errlen);
	cl->map = calloc(1, sizeof *cl->map);
	if (n < 0 || cl->map == NULL) {
		free(cl->map);
		free(cl);
		return n < 0 ? n : herr_set(HERR_NOMEM, err, errlen, "out of memory");
	}
	cl->nseeds = (size_t)n;
	memcpy(cl->password, cl->seeds[0].password, sizeof cl->password);
	cl->timeout_ms = timeout_ms;
	cluster_map_init(cl->map);
	*out = cl;
	return 0;
}

static void drop_conn(struct cluster *cl, size_t i)
{
	redisFree(cl->conn[i]);
	cl->conn[i] = NULL;
}

static void drop_all(struct cluster *cl)
{
	for (size_t i = 0; i < CLUSTER_NODES_MAX; i++)
		if (cl->conn[i] != NULL)
			drop_conn(cl, i);
}

void cluster_free(struct cluster *cl)
{
	if (cl == NULL)
		return;
	drop_all(cl);
	free(cl->map);
	free(cl);
}

const struct cluster_map *cluster_get_map(const struct cluster *cl)
{
	return cl->map;
}

/* Ask one node for the map; 0 and m filled, or HERR_REDIS with err. */
static int read_map(const struct cluster *cl, const struct redis_addr *a, struct cluster_map *m,
		    char *err, size_t errlen)
{
	char addr[300], why[200];
	redisContext *rc;
	redisReply *r;
	int rv;

	if (redis_connect(a, cl->timeout_ms, &rc, err, errlen) != 0)
		return HERR_REDIS;
	r = redisCommand(rc, "CLUSTER SLOTS");
	if (r == NULL) {
		rv = herr_set(HERR_REDIS, err, errlen, "CLUSTER SLOTS on %s: %s",
			      redis_addr_str(a, addr, sizeof addr),
			      rc->errstr[0] != '\0' ? rc->errstr : "no reply");
	} else if (cluster_map_parse(r, a->host, m, why, sizeof why) != 0) {
		rv = herr_set(HERR_REDIS, err, errlen, "%s: %s",
			      redis_addr_str(a, addr, sizeof addr), why);
	} else {
		rv = 0;
	}
	freeReplyObject(r);
	redisFree(rc);
	return rv;
}

int cluster_refresh(struct cluster *cl, char *err, size_t errlen)
{
	struct cluster_map *m = calloc(1, sizeof *m);
	size_t known = cl->map->n;
	int rv = HERR_REDIS;

	if (m == NULL)
		return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	/* The masters we knew first (they are the cluster now), then the seeds. */
	for (size_t i = 0; i < known + cl->nseeds && rv != 0; i++) {
		struct redis_addr a;

		if (i < known) {
			memset(&a, 0, sizeof a);
			memcpy(a.host, cl->map->nodes[i].host, sizeof a.host);
			a.port = cl->map->nodes[i].port;
			memcpy(a.password, cl->password, sizeof a.password);
		} else {
			a = cl->seeds[i - known];
		}
		rv = read_map(cl, &a, m, err, errlen);
	}
	if (rv != 0) {
		free(m);
		return rv;
	}
	/* Indices change with the map: connections are opened again as needed. */
	drop_all(cl);
	free(cl->map);
	cl->map = m;
	cl->have_map = 1;
	cl->stale = 0;
	return 0;
}

/* The connection to node i, opened when needed; NULL with err. */
static redisContext *node_conn(struct cluster *cl, int i, char *err, size_t errlen)
{
	struct redis_addr a;

	if (cl->conn[i] != NULL)
		return cl->conn[i];
	memset(&a, 0, sizeof a);
	memcpy(a.host, cl->map->nodes[i].host, sizeof a.host);
	a.port = cl->map->nodes[i].port;
	memcpy(a.password, cl->password, sizeof a.password);
	if (redis_connect(&a, cl->timeout_ms, &cl->conn[i], err, errlen) != 0)
		return NULL;
	return cl->conn[i];
}

/* The node serving slot, the map read first when it must be; index or -1 with err. */
static int slot_node(struct cluster *cl, unsigned slot, char *err, size_t errlen)
{
	if (!cl->have_map && cluster_refresh(cl, err, errlen) != 0)
		return -1;
	if (cl->map->slot[slot] < 0) {
		/* Perhaps a failover is under way: read the map next time. */
		cl->have_map = 0;
		herr_set(HERR_REDIS, err, errlen,
			 "redis cluster: no master serves slot %u (is cluster_state ok?)", slot);
		return -1;
	}
	return cl->map->slot[slot];
}

/* A MOVED patched one slot of the map in an earlier call: read it whole now. */
static void refresh_if_stale(struct cluster *cl)
{
	if (cl->stale) {
		cl->stale = 0;
		cl->have_map = 0;
	}
}

redisContext *cluster_conn(struct cluster *cl, const char *key, size_t keylen, char *err,
			   size_t errlen)
{
	redisContext *rc;
	int i;

	refresh_if_stale(cl);
	i = slot_node(cl, cluster_keyslot(key, keylen), err, errlen);
	if (i < 0)
		return NULL;
	rc = node_conn(cl, i, err, errlen);
	if (rc == NULL)
		cl->have_map = 0;
	return rc;
}

/* ASKING before the command an ASK redirection names; 0 or HERR_REDIS. */
static int asking(redisContext *rc, char *err, size_t errlen)
{
	redisReply *r = redisCommand(rc, "ASKING");
	int rv = 0;

	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		rv = herr_set(HERR_REDIS, err, errlen, "ASKING: %s",
			      r != NULL		      ? r->str
			      : rc->errstr[0] != '\0' ? rc->errstr
						      : "no reply");
	freeReplyObject(r);
	return rv;
}

int cluster_run(struct cluster *cl, const char *key, size_t keylen, cluster_fn fn, void *arg,
		char *err, size_t errlen)
{
	unsigned slot = cluster_keyslot(key, keylen);
	struct cluster_redirect rd;
	int rv = HERR_REDIS, ask = -1;

	refresh_if_stale(cl);
	for (int t = 0; t < CLUSTER_TRIES; t++) {
		int i = ask >= 0 ? ask : slot_node(cl, slot, err, errlen);
		redisContext *rc;

		if (i < 0)
			return HERR_REDIS;
		rc = node_conn(cl, i, err, errlen);
		if (rc == NULL || (ask >= 0 && asking(rc, err, errlen) != 0)) {
			/* A master gone: the map names its successor once the
			 * cluster has failed over. */
			if (rc != NULL)
				drop_conn(cl, (size_t)i);
			cl->have_map = 0;
			ask = -1;
			rv = HERR_REDIS;
			continue;
		}
		ask = -1;
		rv = fn(rc, arg, err, errlen);
		if (rv == 0)
			return 0;
		if (rc->err) {
			drop_conn(cl, (size_t)i);
			cl->have_map = 0;
			continue;
		}
		if (cluster_redirect_parse(err, strlen(err), &rd) != 0 || rd.slot != slot)
			return rv;
		if (rd.host[0] == '\0')
			memcpy(rd.host, cl->map->nodes[i].host, sizeof rd.host);
		i = cluster_map_node(cl->map, rd.host, rd.port);
		if (i < 0)
			return rv;
		if (rd.ask) {
			ask = i;
		} else {
			/* Follow it now; the whole map is read before the next call. */
			cl->map->slot[slot] = (int16_t)i;
			cl->stale = 1;
		}
	}
	return rv;
}

/* --- the asynchronous side ---------------------------------------------------------- */

struct cluster_async {
	struct event_base *base;
	struct redis_addr seeds[CLUSTER_SEEDS_MAX];
	size_t nseeds;
	char password[sizeof((struct redis_addr *)0)->password];
	unsigned next;		 /* cluster_async_next_node's turn */
	struct cluster_map *map; /* the last map read; its masters outlive a stop */
	redisAsyncContext *q;	 /* the map query, while it runs */
	char qhost[256];	 /* the host q went to, for masters shown without one */
	int qport;
	redisAsyncContext *node[CLUSTER_NODES_MAX]; /* by index into map->nodes */
	size_t pending;				    /* masters whose PING is unanswered */
	int ready;
	cluster_async_fn fn;
	void *ud;
};

int cluster_async_new(struct cluster_async **out, struct event_base *base, const struct conf *c,
		      cluster_async_fn fn, void *ud, char *err, size_t errlen)
{
	struct cluster_async *ca;
	int n;

	*out = NULL;
	ca = calloc(1, sizeof *ca);
	if (ca == NULL)
		return herr_set(HERR_NOMEM, err, errlen, "out of memory");
	n = cluster_seeds(c, ca->seeds, CLUSTER_SEEDS_MAX, err, errlen);
	ca->map = calloc(1, sizeof *ca->map);
	if (n < 0 || ca->map == NULL) {
		free(ca->map);
		free(ca);
		return n < 0 ? n : herr_set(HERR_NOMEM, err, errlen, "out of memory");
	}
	ca->nseeds = (size_t)n;
	memcpy(ca->password, ca->seeds[0].password, sizeof ca->password);
	cluster_map_init(ca->map);
	ca->base = base;
	ca->fn = fn;
	ca->ud = ud;
	*out = ca;
	return 0;
}

/* Detach then free: callbacks that run during the free see no data and return. */
static void async_close(redisAsyncContext **acp)
{
	redisAsyncContext *ac = *acp;

	*acp = NULL;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

void cluster_async_stop(struct cluster_async *ca)
{
	if (ca == NULL)
		return;
	ca->ready = 0;
	ca->pending = 0;
	async_close(&ca->q);
	for (size_t i = 0; i < CLUSTER_NODES_MAX; i++)
		async_close(&ca->node[i]);
}

void cluster_async_free(struct cluster_async *ca)
{
	if (ca == NULL)
		return;
	cluster_async_stop(ca);
	free(ca->map);
	free(ca);
}

int cluster_async_ready(const struct cluster_async *ca)
{
	return ca->ready;
}

void cluster_async_next_node(struct cluster_async *ca, struct redis_addr *out)
{
	size_t n = ca->nseeds + ca->map->n, i = ca->next++ % n;

	if (i < ca->nseeds) {
		*out = ca->seeds[i];
		return;
	}
	memset(out, 0, sizeof *out);
	memcpy(out->host, ca->map->nodes[i - ca->nseeds].host, sizeof out->host);
	out->port = ca->map->nodes[i - ca->nseeds].port;
	memcpy(out->password, ca->password, sizeof out->password);
}

/*
 * A start failed or a connection was lost: close everything and say so.
 * gone is the context hiredis is freeing now (not to be freed again), or NULL.
 */
static void async_lost(struct cluster_async *ca, const redisAsyncContext *gone, const char *why)
{
	char msg[700];

	snprintf(msg, sizeof msg, "%s", why); /* why may live in a context freed below */
	if (ca->q == gone)
		ca->q = NULL;
	for (size_t i = 0; i < CLUSTER_NODES_MAX; i++)
		if (ca->node[i] == gone)
			ca->node[i] = NULL;
	cluster_async_stop(ca);
	ca->fn(ca->ud, 0, msg);
}

/* The address of the node behind ac, for messages. */
static const char *async_addr(const redisAsyncContext *ac, char *buf, size_t len)
{
	if (ac->c.tcp.host != NULL)
		snprintf(buf, len, "%s:%d", ac->c.tcp.host, ac->c.tcp.port);
	else
		snprintf(buf, len, "a cluster node");
	return buf;
}

static void async_on_connect(const redisAsyncContext *ac, int status)
{
	struct cluster_async *ca = ac->data;
	char why[700], addr[300];

	if (ca == NULL || status == REDIS_OK)
		return;
	/* hiredis frees this context when we return. */
	snprintf(why, sizeof why, "redis cluster: connect(%s) failed: %s",
		 async_addr(ac, addr, sizeof addr), ac->errstr[0] != '\0' ? ac->errstr : "error");
	((redisAsyncContext *)ac)->data = NULL;
	async_lost(ca, ac, why);
}

static void async_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct cluster_async *ca = ac->data;
	char why[700], addr[300];

	if (ca == NULL)
		return;
	snprintf(why, sizeof why, "redis cluster: connection to %s lost: %s",
		 async_addr(ac, addr, sizeof addr),
		 status != REDIS_OK && ac->errstr[0] != '\0' ? ac->errstr : "closed");
	((redisAsyncContext *)ac)->data = NULL;
	async_lost(ca, ac, why);
}

/* AUTH on any of our connections: only an error matters. */
static void async_auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cluster_async *ca = ac->data;
	const redisReply *reply = r;
	char why[700], addr[300];

	(void)privdata;
	if (ca == NULL || reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	snprintf(why, sizeof why, "redis cluster: AUTH on %s failed: %s",
		 async_addr(ac, addr, sizeof addr), reply->str);
	async_lost(ca, NULL, why);
}

/* A connection to host:port with AUTH queued; NULL with why. */
static redisAsyncContext *async_open(struct cluster_async *ca, const char *host, int port,
				     char *why, size_t whylen)
{
	redisAsyncContext *ac = redis_async_connect(NULL, host, port);

	if (ac == NULL) {
		snprintf(why, whylen, "redis cluster: connect(%s:%d) failed: out of memory", host,
			 port);
		return NULL;
	}
	/* The subscriber's adapter (evredis.h): every link reads alike. */
	if (ac->err || evredis_attach(ac, ca->base) != 0) {
		snprintf(why, whylen, "redis cluster: connect(%s:%d) failed: %s", host, port,
			 ac->err ? ac->errstr : "cannot attach to the event loop");
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = ca;
	redisAsyncSetConnectCallback(ac, async_on_connect);
	redisAsyncSetDisconnectCallback(ac, async_on_disconnect);
	if (ca->password[0] != '\0')
		redisAsyncCommand(ac, async_auth_cb, NULL, "AUTH %s", ca->password);
	return ac;
}

static void async_ping_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cluster_async *ca = ac->data;
	const redisReply *reply = r;
	char msg[700], addr[300];

	(void)privdata;
	if (ca == NULL || reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		snprintf(msg, sizeof msg, "redis cluster: PING on %s: %s",
			 async_addr(ac, addr, sizeof addr), reply->str);
		async_lost(ca, NULL, msg);
		return;
	}
	if (ca->pending == 0 || --ca->pending > 0)
		return;
	ca->ready = 1;
	snprintf(msg, sizeof msg, "redis cluster: slot map read from %s:%d: %zu masters, connected",
		 ca->qhost, ca->qport, ca->map->n);
	ca->fn(ca->ud, 1, msg);
}

static void async_slots_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cluster_async *ca = ac->data;
	char why[700], addr[300], perr[200];
	size_t unserved = 0;

	(void)privdata;
	if (ca == NULL || r == NULL)
		return;
	async_addr(ac, addr, sizeof addr);
	if (cluster_map_parse(r, ca->qhost, ca->map, perr, sizeof perr) != 0) {
		snprintf(why, sizeof why, "redis cluster: %s: %s", addr, perr);
		async_lost(ca, NULL, why);
		return;
	}
	for (size_t i = 0; i < CLUSTER_SLOTS; i++)
		unserved += ca->map->slot[i] < 0;
	if (unserved > 0 || ca->map->n == 0) {
		/* A failover under way: the next attempt reads the map again. */
		snprintf(why, sizeof why,
			 "redis cluster: %s: %zu of %d slots have no master (cluster_state "
			 "not ok?)",
			 addr, unserved, CLUSTER_SLOTS);
		async_lost(ca, NULL, why);
		return;
	}
	async_close(&ca->q);
	ca->pending = ca->map->n;
	for (size_t i = 0; i < ca->map->n; i++) {
		ca->node[i] =
		    async_open(ca, ca->map->nodes[i].host, ca->map->nodes[i].port, why, sizeof why);
		if (ca->node[i] == NULL ||
		    redisAsyncCommand(ca->node[i], async_ping_cb, NULL, "PING") != REDIS_OK) {
			async_lost(ca, NULL,
				   ca->node[i] == NULL ? why : "redis cluster: PING failed");
			return;
		}
	}
}

int cluster_async_start(struct cluster_async *ca, const struct redis_addr *a)
{
	char why[700];

	cluster_async_stop(ca);
	snprintf(ca->qhost, sizeof ca->qhost, "%s", a->host);
	ca->qport = a->port;
	ca->q = async_open(ca, a->host, a->port, why, sizeof why);
	if (ca->q == NULL)
		return HERR_REDIS;
	if (redisAsyncCommand(ca->q, async_slots_cb, NULL, "CLUSTER SLOTS") != REDIS_OK) {
		async_close(&ca->q);
		return HERR_REDIS;
	}
	return 0;
}

redisAsyncContext *cluster_async_route(struct cluster_async *ca, const char *key, size_t keylen)
{
	int i;

	if (!ca->ready)
		return NULL;
	i = ca->map->slot[cluster_keyslot(key, keylen)];
	return i >= 0 ? ca->node[i] : NULL;
}

redisAsyncContext *cluster_async_redirect(struct cluster_async *ca, const char *msg, size_t len)
{
	struct cluster_redirect rd;
	char why[700];
	int i, from;

	if (!ca->ready || cluster_redirect_parse(msg, len, &rd) != 0)
		return NULL;
	from = ca->map->slot[rd.slot];
	if (rd.host[0] == '\0' && from >= 0)
		memcpy(rd.host, ca->map->nodes[from].host, sizeof rd.host);
	for (i = 0; i < (int)ca->map->n; i++)
		if (ca->map->nodes[i].port == rd.port &&
		    strcmp(ca->map->nodes[i].host, rd.host) == 0)
			break;
	if (i == (int)ca->map->n || ca->node[i] == NULL) {
		snprintf(why, sizeof why,
			 "redis cluster: slot %u %s %s:%d, a node outside the slot map; reading "
			 "the map again",
			 rd.slot, rd.ask ? "is migrating to" : "moved to", rd.host, rd.port);
		async_lost(ca, NULL, why);
		return NULL;
	}
	if (rd.ask) {
		if (redisAsyncCommand(ca->node[i], NULL, NULL, "ASKING") != REDIS_OK)
			return NULL;
	} else {
		ca->map->slot[rd.slot] = (int16_t)i;
	}
	return ca->node[i];
}
