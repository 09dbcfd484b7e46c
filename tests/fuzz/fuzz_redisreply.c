/*
 * fuzz_redisreply: Redis replies on any bytes, through hiredis's reader (as
 * they arrive from a socket), to every parser of Sentinel and Cluster
 * replies: CLUSTER SLOTS (cluster_map_parse), MOVED/ASK error texts
 * (cluster_redirect_parse), SENTINEL get-master-addr-by-name
 * (redis_resolve_answer), ROLE (redis_role_check), the +switch-master
 * watch link (redis_watch_reply, redis_switch_parse).  None may read past a
 * reply, and what each accepts must hold together: slots map to known
 * masters, ports are 1..65535, a redirection names a slot below 16384.
 *
 * Input: RESP2 bytes, one reply or several in a row (seeds/redisreply).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "err.h"
#include "redis.h"

#define MASTER "mymaster"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

static struct cluster_map map;

static void check_node(const char *host, size_t size, int port)
{
	if (memchr(host, '\0', size) == NULL || port < 1 || port > 65535)
		abort();
}

static void check_map(const redisReply *r)
{
	char err[200];
	int rc = cluster_map_parse(r, "10.0.0.1", &map, err, sizeof err);

	if (rc != 0) {
		if ((rc != HERR_INVAL && rc != HERR_TOOBIG) || map.n != 0 ||
		    memchr(err, '\0', sizeof err) == NULL)
			abort();
		for (size_t i = 0; i < CLUSTER_SLOTS; i++)
			if (map.slot[i] != -1)
				abort();
		return;
	}
	if (map.n > CLUSTER_NODES_MAX)
		abort();
	for (size_t i = 0; i < map.n; i++)
		check_node(map.nodes[i].host, sizeof map.nodes[i].host, map.nodes[i].port);
	for (size_t i = 0; i < CLUSTER_SLOTS; i++)
		if (map.slot[i] < -1 || map.slot[i] >= (int)map.n)
			abort();
}

/* Texts: an error reply's, or any string of the tree. */
static void check_text(const char *s, size_t len)
{
	struct cluster_redirect rd;
	struct redis_node to;
	int rc;

	rc = cluster_redirect_parse(s, len, &rd);
	if (rc == 0) {
		if (rd.slot >= CLUSTER_SLOTS || rd.port < 1 || rd.port > 65535 ||
		    memchr(rd.host, '\0', sizeof rd.host) == NULL)
			abort();
	} else if (rc != HERR_NOTFOUND && rc != HERR_INVAL) {
		abort();
	}
	rc = redis_switch_parse(s, len, MASTER, &to);
	if (rc == 0)
		check_node(to.host, sizeof to.host, to.port);
	else if (rc != HERR_NOTFOUND && rc != HERR_INVAL)
		abort();
	(void)cluster_keyslot(s, len);
}

static void check_strings(const redisReply *r, int depth)
{
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_ERROR ||
	    r->type == REDIS_REPLY_STATUS) {
		check_text(r->str, r->len);
	} else if (r->type == REDIS_REPLY_ARRAY && depth < 8) {
		for (size_t i = 0; i < r->elements; i++)
			check_strings(r->element[i], depth + 1);
	}
}

static void check_sentinel(const redisReply *r)
{
	struct redis_addr a;
	struct redis_resolve rs;
	struct redis_node to;
	char msg[512], err[200];
	int rc;

	memset(&a, 0, sizeof a);
	a.nsentinels = 2;
	strcpy(a.sentinel[0].host, "10.0.0.1");
	a.sentinel[0].port = 26379;
	strcpy(a.sentinel[1].host, "::1");
	a.sentinel[1].port = 26380;
	strcpy(a.master_name, MASTER);
	strcpy(a.password, "pw");
	redis_resolve_start(&rs, &a);
	if (redis_resolve_next(&rs) == NULL)
		abort();
	rc = redis_resolve_answer(&rs, r, msg, sizeof msg);
	if (memchr(msg, '\0', sizeof msg) == NULL || memchr(rs.why, '\0', sizeof rs.why) == NULL)
		abort();
	if (rc == 0) {
		if (rs.master.nsentinels != 0 || rs.master.path[0] != '\0' ||
		    strcmp(rs.master.password, "pw") != 0)
			abort();
		check_node(rs.master.host, sizeof rs.master.host, rs.master.port);
	} else if (rc != HERR_NOTFOUND && rc != HERR_REDIS) {
		abort();
	}

	rc = redis_role_check(r, "10.0.0.7:6379", err, sizeof err);
	if ((rc != 0 && rc != HERR_AGAIN) || (rc != 0 && memchr(err, '\0', sizeof err) == NULL))
		abort();

	switch (redis_watch_reply(r, MASTER, &to)) {
	case REDIS_WATCH_SWITCH:
		check_node(to.host, sizeof to.host, to.port);
		break;
	case REDIS_WATCH_ERROR:
		if (r->type != REDIS_REPLY_ERROR)
			abort();
		break;
	case REDIS_WATCH_MALFORMED:
		/* sub.c logs the payload's length: it must be a string. */
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
		    r->element[2]->type != REDIS_REPLY_STRING)
			abort();
		break;
	case REDIS_WATCH_OTHER:
	case REDIS_WATCH_SUBSCRIBED:
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;
	int n = 0;

	if (rd == NULL)
		abort();
	if (redisReaderFeed(rd, (const char *)in, size) != REDIS_OK)
		abort();
	/* Several replies in a row, as on a connection; a protocol error ends it. */
	while (n++ < 64 && redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL) {
		check_map(reply);
		check_sentinel(reply);
		check_strings(reply, 0);
		freeReplyObject(reply);
		reply = NULL;
	}
	redisReaderFree(rd);
	return 0;
}
