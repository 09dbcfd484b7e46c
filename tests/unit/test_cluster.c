#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "conf.h"
#include "err.h"
#include "redis.h"
#include "revoke.h"
#include "suites.h"
#include "ticket.h"

static unsigned slot(const char *key)
{
	return cluster_keyslot(key, strlen(key));
}

/* The vectors of the Redis Cluster specification. */
START_TEST(keyslot_vectors)
{
	ck_assert_uint_eq(cluster_crc16("123456789", 9), 0x31C3);
	ck_assert_uint_eq(slot("foo"), 12182);
	ck_assert_uint_eq(slot("123456789"), 0x31C3 % 16384);
	ck_assert_uint_eq(slot("{user1000}.following"), slot("{user1000}.followers"));
	ck_assert_uint_eq(slot("{user1000}.following"), slot("user1000"));
	/* Only the first {...} counts; an empty one means the whole key. */
	ck_assert_uint_eq(slot("foo{bar}{zap}"), slot("bar"));
	ck_assert_uint_eq(slot("foo{{bar}}zap"), slot("{bar"));
	ck_assert_uint_eq(slot("foo{}{bar}"), cluster_crc16("foo{}{bar}", 10) % 16384);
	ck_assert_uint_eq(slot("foo{bar"), cluster_crc16("foo{bar", 7) % 16384);
	ck_assert_uint_eq(slot(""), 0);
	ck_assert_uint_lt(slot("\xff\xfe{"), 16384);
}
END_TEST

/* Herald's names in the cluster layout: one slot per user. */
START_TEST(layout)
{
	char k[REDIS_KEY_MAX], user[64 + 1], t[TICKET_LEN + 1], want[96];

	memset(t, 'a', TICKET_LEN);
	t[TICKET_LEN] = '\0';
	snprintf(want, sizeof want, "n:__herald:ticket:%s", t);

	ck_assert_int_eq(redis_get_cluster(), 0);
	ck_assert_int_eq(redis_history_key(k, sizeof k, "notifications", "42"), 24);
	ck_assert_str_eq(k, "notifications:42:history");
	redis_set_cluster(1);
	ck_assert_int_eq(redis_history_key(k, sizeof k, "notifications", "42"), 26);
	ck_assert_str_eq(k, "notifications:{42}:history");
	ck_assert_uint_eq(slot(k), slot("42"));
	ck_assert_int_eq(redis_channel(k, sizeof k, "n", "u.1"), 7);
	ck_assert_str_eq(k, "n:{u.1}");
	ck_assert_int_eq(redis_channel_user(k, strlen(k), "n", user), 0);
	ck_assert_str_eq(user, "u.1");
	ck_assert_int_eq(redis_channel_user("n:u.1", 5, "n", user), HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("n:{}", 4, "n", user), HERR_INVAL);
	ck_assert_int_eq(redis_channel_user("n:{a", 4, "n", user), HERR_INVAL);
	ck_assert_int_gt(revoke_nbf_key(k, sizeof k, "n", "7"), 0);
	ck_assert_str_eq(k, "n:{7}:nbf");
	ck_assert_int_gt(revoke_jti_key(k, sizeof k, "n", "7", "j1"), 0);
	ck_assert_str_eq(k, "n:{7}:revoked:j1");
	ck_assert_int_gt(ticket_key(k, sizeof k, "n", t), 0);
	ck_assert_str_eq(k, want);
	redis_set_cluster(0);
	ck_assert_int_eq(redis_channel_user("n:{7}", 5, "n", user), HERR_INVAL);
	ck_assert_int_gt(ticket_key(k, sizeof k, "n", t), 0);
	ck_assert_str_eq(k, want);
}
END_TEST

static int redirect(const char *msg, struct cluster_redirect *rd)
{
	return cluster_redirect_parse(msg, strlen(msg), rd);
}

START_TEST(redirects)
{
	struct cluster_redirect rd;

	ck_assert_int_eq(redirect("MOVED 3999 127.0.0.1:6381", &rd), 0);
	ck_assert_int_eq(rd.ask, 0);
	ck_assert_uint_eq(rd.slot, 3999);
	ck_assert_str_eq(rd.host, "127.0.0.1");
	ck_assert_int_eq(rd.port, 6381);
	ck_assert_int_eq(redirect("ASK 16383 redis-2.example:7002", &rd), 0);
	ck_assert_int_eq(rd.ask, 1);
	ck_assert_uint_eq(rd.slot, 16383);
	ck_assert_str_eq(rd.host, "redis-2.example");
	ck_assert_int_eq(rd.port, 7002);
	/* quoted by libherald's messages */
	ck_assert_int_eq(redirect("redis: MOVED 0 [::1]:7000", &rd), 0);
	ck_assert_str_eq(rd.host, "::1");
	ck_assert_int_eq(rd.port, 7000);
	ck_assert_int_eq(redirect("MGET n:{7}:nbf: ASK 12 10.0.0.9:1", &rd), 0);
	ck_assert_int_eq(rd.ask, 1);
	ck_assert_str_eq(rd.host, "10.0.0.9");
	/* Redis 7 with an unknown endpoint: the host is left out */
	ck_assert_int_eq(redirect("MOVED 5 :7001", &rd), 0);
	ck_assert_str_eq(rd.host, "");
	ck_assert_int_eq(rd.port, 7001);
	/* none */
	ck_assert_int_eq(redirect("ERR wrong number of arguments", &rd), HERR_NOTFOUND);
	ck_assert_int_eq(redirect("NOSCRIPT No matching script", &rd), HERR_NOTFOUND);
	ck_assert_int_eq(redirect("REMOVED 1 h:1", &rd), HERR_NOTFOUND);
	ck_assert_int_eq(redirect("", &rd), HERR_NOTFOUND);
	/* malformed */
	ck_assert_int_eq(redirect("MOVED 16384 h:1", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("MOVED x h:1", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("MOVED 1 h", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("MOVED 1 h:0", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("MOVED 1 h:65536", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("ASK 1 [::1:7000", &rd), HERR_INVAL);
	ck_assert_int_eq(redirect("MOVED 1", &rd), HERR_INVAL);
	ck_assert_int_eq(cluster_redirect_parse("MOVED 1 h:1", 9, &rd), HERR_INVAL);
}
END_TEST

/* A reply as hiredis would build it from RESP bytes. */
static redisReply *reply_of(const char *resp)
{
	redisReader *rr = redisReaderCreate();
	void *r = NULL;

	ck_assert_ptr_nonnull(rr);
	ck_assert_int_eq(redisReaderFeed(rr, resp, strlen(resp)), REDIS_OK);
	ck_assert_int_eq(redisReaderGetReply(rr, &r), REDIS_OK);
	ck_assert_ptr_nonnull(r);
	redisReaderFree(rr);
	return r;
}

START_TEST(map)
{
	/* Three masters, the third shown with no host ("" in Redis 7 for the
	 * node that answers), one replica. */
	static const char slots[] =
	    "*3\r\n"
	    "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
	    "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n"
	    "*3\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
	    "*3\r\n:10923\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n";
	struct cluster_map *m = malloc(sizeof *m);
	redisReply *r = reply_of(slots);
	char err[200];

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(cluster_map_parse(r, "10.1.1.1", m, err, sizeof err), 0);
	ck_assert_uint_eq(m->n, 3);
	ck_assert_int_eq(m->slot[0], 0);
	ck_assert_int_eq(m->slot[5460], 0);
	ck_assert_int_eq(m->slot[5461], 1);
	ck_assert_int_eq(m->slot[slot("foo")], 2);
	ck_assert_str_eq(m->nodes[2].host, "10.1.1.1");
	ck_assert_int_eq(m->nodes[2].port, 7002);
	ck_assert_int_eq(m->nodes[1].port, 7001);
	ck_assert_int_eq(cluster_map_node(m, "127.0.0.1", 7001), 1);
	ck_assert_int_eq(cluster_map_node(m, "127.0.0.1", 7009), 3);
	freeReplyObject(r);

	/* a slot no master serves stays -1 */
	r = reply_of("*1\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\nh\r\n:1\r\n");
	ck_assert_int_eq(cluster_map_parse(r, NULL, m, err, sizeof err), 0);
	ck_assert_int_eq(m->slot[99], 0);
	ck_assert_int_eq(m->slot[100], -1);
	freeReplyObject(r);

	r = reply_of("-ERR This instance has cluster support disabled\r\n");
	ck_assert_int_eq(cluster_map_parse(r, NULL, m, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "cluster support disabled"));
	ck_assert_uint_eq(m->n, 0);
	freeReplyObject(r);
	r = reply_of("*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n");
	ck_assert_int_eq(cluster_map_parse(r, NULL, m, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	r = reply_of("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n");
	ck_assert_int_eq(cluster_map_parse(r, NULL, m, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	r = reply_of("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n");
	ck_assert_int_eq(cluster_map_parse(r, NULL, m, err, sizeof err), HERR_INVAL);
	freeReplyObject(r);
	free(m);
}
END_TEST

START_TEST(seeds)
{
	struct redis_addr a[CLUSTER_SEEDS_MAX];
	struct conf c;
	char err[300];

	ck_assert_int_eq(conf_init(&c), 0);
	ck_assert_int_eq(
	    conf_set(&c, "redis_url", "redis://:pw@10.0.0.1:7000", NULL, err, sizeof err), 0);
	ck_assert_int_eq(cluster_seeds(&c, a, CLUSTER_SEEDS_MAX, err, sizeof err), 1);
	ck_assert_str_eq(a[0].host, "10.0.0.1");
	ck_assert_int_eq(a[0].port, 7000);
	ck_assert_str_eq(a[0].password, "pw");
	ck_assert_int_eq(conf_set(&c, "redis_cluster_nodes", "h1:7000, [::1]:7001 h3:7002", NULL,
				  err, sizeof err),
			 0);
	ck_assert_int_eq(cluster_seeds(&c, a, CLUSTER_SEEDS_MAX, err, sizeof err), 3);
	ck_assert_str_eq(a[1].host, "::1");
	ck_assert_int_eq(a[1].port, 7001);
	ck_assert_str_eq(a[2].password, "pw");
	ck_assert_int_eq(cluster_seeds(&c, a, 2, err, sizeof err), HERR_INVAL);
	/* a cluster has database 0 only */
	ck_assert_int_eq(
	    conf_set(&c, "redis_url", "redis://10.0.0.1:7000/2", NULL, err, sizeof err), 0);
	ck_assert_int_eq(cluster_seeds(&c, a, CLUSTER_SEEDS_MAX, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "database 0 only"));
	/* a unix socket needs seeds */
	ck_assert_int_eq(conf_set(&c, "redis_url", "unix:///run/r.sock", NULL, err, sizeof err), 0);
	ck_assert_int_eq(cluster_seeds(&c, a, CLUSTER_SEEDS_MAX, err, sizeof err), 3);
	ck_assert_int_eq(conf_set(&c, "redis_cluster_nodes", "", NULL, err, sizeof err), 0);
	ck_assert_int_eq(cluster_seeds(&c, a, CLUSTER_SEEDS_MAX, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "redis_cluster_nodes"));
	/* validation: off by default, checked when on */
	ck_assert_int_eq(conf_set(&c, "jwt_secret", "s", NULL, err, sizeof err), 0);
	ck_assert_int_eq(conf_validate(&c, err, sizeof err), 0);
	ck_assert_int_eq(conf_set(&c, "redis_cluster", "yes", NULL, err, sizeof err), 0);
	ck_assert_int_eq(c.redis_cluster, 1);
	ck_assert_int_eq(conf_validate(&c, err, sizeof err), HERR_INVAL);
	ck_assert_int_eq(conf_set(&c, "redis_cluster_nodes", "h:1", NULL, err, sizeof err), 0);
	ck_assert_int_eq(conf_validate(&c, err, sizeof err), 0);
	ck_assert_int_ne(conf_set(&c, "redis_cluster_nodes", "h", NULL, err, sizeof err), 0);
	conf_free(&c);
}
END_TEST

Suite *cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, keyslot_vectors);
	tcase_add_test(tc, layout);
	tcase_add_test(tc, redirects);
	tcase_add_test(tc, map);
	tcase_add_test(tc, seeds);
	suite_add_tcase(s, tc);
	return s;
}
