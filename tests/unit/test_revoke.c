#include "config.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "auth.h"
#include "err.h"
#include "hub.h"
#include "revoke.h"
#include "suites.h"
#include "ticket.h"

static int parse(const char *msg, struct revoke_cmd *c)
{
	return revoke_parse(msg, strlen(msg), c);
}

START_TEST(parse_good)
{
	struct revoke_cmd c;
	char buf[REVOKE_MSG_MAX + 1];

	ck_assert_int_eq(parse("disconnect 42", &c), 0);
	ck_assert_int_eq(c.kind, REVOKE_DISCONNECT);
	ck_assert_str_eq(c.user, "42");
	ck_assert_int_eq(parse("nbf alice.b 1732550000", &c), 0);
	ck_assert_int_eq(c.kind, REVOKE_BEFORE);
	ck_assert_str_eq(c.user, "alice.b");
	ck_assert_int_eq(c.before, 1732550000);
	ck_assert_int_eq(parse("nbf a 0", &c), 0);
	ck_assert_int_eq(c.before, 0);
	ck_assert_int_eq(parse("jti u_1 3f2c:a/b-\"x\"", &c), 0);
	ck_assert_int_eq(c.kind, REVOKE_JTI);
	ck_assert_str_eq(c.jti, "3f2c:a/b-\"x\"");
	/* format and parse agree */
	ck_assert_int_eq(revoke_format(&c, buf, sizeof buf), (int)strlen("jti u_1 3f2c:a/b-\"x\""));
	ck_assert_str_eq(buf, "jti u_1 3f2c:a/b-\"x\"");
	c.kind = REVOKE_BEFORE;
	c.before = 99;
	ck_assert_int_gt(revoke_format(&c, buf, sizeof buf), 0);
	ck_assert_str_eq(buf, "nbf u_1 99");
	c.kind = REVOKE_DISCONNECT;
	ck_assert_int_gt(revoke_format(&c, buf, sizeof buf), 0);
	ck_assert_str_eq(buf, "disconnect u_1");
	ck_assert_int_eq(revoke_format(&c, buf, 5), HERR_TOOBIG);
	c.kind = 9;
	ck_assert_int_eq(revoke_format(&c, buf, sizeof buf), HERR_INVAL);
}
END_TEST

START_TEST(parse_bad)
{
	static const char *const bad[] = {
	    "", "disconnect", "disconnect ", "disconnect  42", " disconnect 42", "disconnect 42 ",
	    "disconnect 42 x", "Disconnect 42", "disconnect a:b", "disconnect a b",
	    "nbf 42", "nbf 42 ", "nbf 42 -1", "nbf 42 1.5", "nbf 42 12x", "nbf 42 999999999999999",
	    "nbf 42 1 2", "jti 42", "jti 42 ", "jti 42 a b", "jti 42 \x01", "jti 42 \xc3\xa9",
	    "revoke 42", "disconnect\t42",
	};
	struct revoke_cmd c;
	char longuser[80];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(parse(bad[i], &c) == HERR_INVAL, "accepted \"%s\"", bad[i]);
	/* NUL inside the length */
	ck_assert_int_eq(revoke_parse("disconnect 4\0002", 13, &c), HERR_INVAL);
	memset(longuser, 'u', sizeof longuser);
	memcpy(longuser, "disconnect ", 11);
	longuser[sizeof longuser - 1] = '\0';
	ck_assert_int_eq(parse(longuser, &c), HERR_INVAL); /* user of 68 bytes */
	ck_assert_int_eq(revoke_parse(NULL, 0, &c), HERR_INVAL);
}
END_TEST

START_TEST(names)
{
	char buf[REDIS_KEY_MAX];

	ck_assert_int_eq(revoke_channel(buf, sizeof buf, "notifications"), 30);
	ck_assert_str_eq(buf, "notifications:__herald:control");
	ck_assert_int_gt(revoke_nbf_key(buf, sizeof buf, "n", "42"), 0);
	ck_assert_str_eq(buf, "n:42:nbf");
	ck_assert_int_gt(revoke_jti_key(buf, sizeof buf, "n", "42", "j-1"), 0);
	ck_assert_str_eq(buf, "n:42:revoked:j-1");
	ck_assert_int_eq(revoke_jti_key(buf, sizeof buf, "n", "42", "a b"), HERR_INVAL);
	ck_assert_int_eq(revoke_nbf_key(buf, sizeof buf, "n", "a:b"), HERR_INVAL);
	ck_assert_int_eq(revoke_channel(buf, sizeof buf, ""), HERR_INVAL);
	ck_assert_int_eq(revoke_nbf_key(buf, 6, "n", "42"), HERR_TOOBIG);
}
END_TEST

START_TEST(match)
{
	struct revoke_cmd c = {.kind = REVOKE_DISCONNECT};

	ck_assert_int_eq(revoke_match(&c, 0, NULL), 1);
	c.kind = REVOKE_BEFORE;
	c.before = 100;
	ck_assert_int_eq(revoke_match(&c, 99, "x"), 1);
	ck_assert_int_eq(revoke_match(&c, 0, NULL), 1); /* no iat: issued at 0 */
	ck_assert_int_eq(revoke_match(&c, 100, NULL), 0);
	c.kind = REVOKE_JTI;
	snprintf(c.jti, sizeof c.jti, "j1");
	ck_assert_int_eq(revoke_match(&c, 0, "j1"), 1);
	ck_assert_int_eq(revoke_match(&c, 0, "j10"), 0);
	ck_assert_int_eq(revoke_match(&c, 0, ""), 0);
	ck_assert_int_eq(revoke_match(&c, 0, NULL), 0);
}
END_TEST

/* Replies built by hand, as hiredis would hand them over. */
static redisReply str_reply(const char *s)
{
	redisReply r = {.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};

	return r;
}

START_TEST(check_reply)
{
	struct auth_identity id = {.user = "u", .iat = 1000};
	redisReply nil = {.type = REDIS_REPLY_NIL}, err = {.type = REDIS_REPLY_ERROR, .str = "ERR"};
	redisReply nbf_old = str_reply("999"), nbf_new = str_reply("1001"), junk = str_reply("x");
	redisReply *e2[2], arr = {.type = REDIS_REPLY_ARRAY, .element = e2};
	struct revoke_argv ra;

	ck_assert_int_eq(revoke_check_argv(&ra, "n", &id), 2);
	ck_assert_str_eq(ra.argv[0], "MGET");
	ck_assert_str_eq(ra.argv[1], "n:u:nbf");
	arr.elements = 1;
	e2[0] = &nil;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_OK);
	e2[0] = &nbf_old;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_OK);
	e2[0] = &nbf_new;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_REVOKED);
	e2[0] = &junk;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_OK);
	e2[0] = &err;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), HERR_REDIS);
	ck_assert_int_eq(revoke_check_reply(&err, &id), HERR_REDIS);
	ck_assert_int_eq(revoke_check_reply(NULL, &id), HERR_REDIS);
	/* with a jti: two keys */
	snprintf(id.jti, sizeof id.jti, "j");
	ck_assert_int_eq(revoke_check_argv(&ra, "n", &id), 3);
	ck_assert_str_eq(ra.argv[2], "n:u:revoked:j");
	ck_assert_int_eq(revoke_check_reply(&arr, &id), HERR_REDIS); /* one element */
	arr.elements = 2;
	e2[0] = &nil;
	e2[1] = &nil;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_OK);
	e2[1] = &junk;
	ck_assert_int_eq(revoke_check_reply(&arr, &id), AUTH_REVOKED);
}
END_TEST

START_TEST(ticket_values)
{
	struct auth_identity id = {.user = "alice", .exp = 2000000000, .iat = 1999990000}, got;
	char t[TICKET_LEN + 1], t2[TICKET_LEN + 1], key[REDIS_KEY_MAX], val[300];
	redisReply r, nil = {.type = REDIS_REPLY_NIL}, err = {.type = REDIS_REPLY_ERROR, .str = "E"};
	int n;

	ck_assert_int_eq(ticket_new(t), 0);
	ck_assert_int_eq(ticket_new(t2), 0);
	ck_assert_int_eq(strlen(t), TICKET_LEN);
	ck_assert_int_eq(ticket_valid(t, strlen(t)), 1);
	ck_assert_str_ne(t, t2);
	ck_assert_int_eq(ticket_valid(t, TICKET_LEN - 1), 0);
	t2[5] = '+';
	ck_assert_int_eq(ticket_valid(t2, TICKET_LEN), 0);
	ck_assert_int_gt(ticket_key(key, sizeof key, "notifications", t), 0);
	ck_assert_int_eq(strncmp(key, "notifications:__herald:ticket:", 30), 0);
	ck_assert_str_eq(key + 30, t);
	ck_assert_int_eq(ticket_key(key, sizeof key, "n", "short"), HERR_INVAL);

	n = ticket_value(val, sizeof val, &id);
	ck_assert_str_eq(val, "alice 2000000000 1999990000");
	r = str_reply(val);
	ck_assert_int_eq(n, (int)r.len);
	ck_assert_int_eq(ticket_redeem_reply(&r, 1999999999, 0, &got), AUTH_OK);
	ck_assert_str_eq(got.user, "alice");
	ck_assert_int_eq(got.exp, 2000000000);
	ck_assert_int_eq(got.iat, 1999990000);
	ck_assert_str_eq(got.jti, "");
	ck_assert_int_eq(ticket_redeem_reply(&r, 2000000031, 30, &got), AUTH_EXPIRED);
	snprintf(id.jti, sizeof id.jti, "tok-1");
	ticket_value(val, sizeof val, &id);
	r = str_reply(val);
	ck_assert_int_eq(ticket_redeem_reply(&r, 1999999999, 0, &got), AUTH_OK);
	ck_assert_str_eq(got.jti, "tok-1");
	ck_assert_int_eq(ticket_redeem_reply(&nil, 0, 0, &got), AUTH_BAD_TICKET);
	ck_assert_int_eq(ticket_redeem_reply(&err, 0, 0, &got), HERR_REDIS);
	ck_assert_int_eq(ticket_redeem_reply(NULL, 0, 0, &got), HERR_REDIS);
	{
		static const char *const bad[] = {"", "alice", "alice 1", "alice 1 x", "a:b 1 2",
						  "alice 1 2 j k", "alice 1 2 ", "alice  1 2"};

		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			r = str_reply(bad[i]);
			ck_assert_msg(ticket_redeem_reply(&r, 0, 0, &got) == AUTH_BAD_TICKET,
				      "accepted \"%s\"", bad[i]);
		}
	}
}
END_TEST

/* hub_close_user closes the matching connections of the user only. */
struct fake {
	struct hub_conn hc;
	int closed;
};

static void f_wake(struct hub_conn *c)
{
	(void)c;
}

static void f_close(struct hub_conn *c, int reason)
{
	((struct fake *)(void *)c)->closed = reason;
}

static const struct hub_conn_ops fops = {f_wake, f_close};

static int cmd_match(void *arg, long long iat, const char *jti)
{
	return revoke_match(arg, iat, jti);
}

START_TEST(hub_close)
{
	struct hub_limits lim = {.send_queue_max = 65536, .page_entries = 10};
	struct hub *h;
	struct fake a1 = {{.ops = &fops, .iat = 10, .jti = "j1"}, 0};
	struct fake a2 = {{.ops = &fops, .iat = 20, .jti = "j2"}, 0};
	struct fake b1 = {{.ops = &fops, .iat = 5, .jti = "j1"}, 0};
	struct revoke_cmd c = {.kind = REVOKE_JTI, .user = "a", .jti = "j1"};
	struct hub_stats st;

	ck_assert_int_eq(hub_new(&h, &lim, NULL), 0);
	ck_assert_int_eq(hub_attach(h, &a1.hc, "a", NULL), 0);
	ck_assert_int_eq(hub_attach(h, &a2.hc, "a", NULL), 0);
	ck_assert_int_eq(hub_attach(h, &b1.hc, "b", NULL), 0);
	ck_assert_int_eq(a1.hc.iat, 10); /* kept by hub_attach */
	ck_assert_str_eq(a2.hc.jti, "j2");
	ck_assert_uint_eq(hub_close_user(h, "a", cmd_match, &c, HUB_CLOSE_REVOKED), 1);
	ck_assert_int_eq(a1.closed, HUB_CLOSE_REVOKED);
	ck_assert_int_eq(a2.closed, 0);
	ck_assert_int_eq(b1.closed, 0);
	c.kind = REVOKE_BEFORE;
	c.before = 21;
	ck_assert_uint_eq(hub_close_user(h, "a", cmd_match, &c, HUB_CLOSE_REVOKED), 1); /* a1 closing */
	ck_assert_int_eq(a2.closed, HUB_CLOSE_REVOKED);
	ck_assert_uint_eq(hub_close_user(h, "nobody", NULL, NULL, HUB_CLOSE_DISCONNECT), 0);
	ck_assert_uint_eq(hub_close_user(h, "b", NULL, NULL, HUB_CLOSE_DISCONNECT), 1);
	ck_assert_int_eq(b1.closed, HUB_CLOSE_DISCONNECT);
	hub_get_stats(h, &st);
	ck_assert_uint_eq(st.revoked, 2);
	ck_assert_uint_eq(st.disconnected, 1);
	hub_detach(h, &a1.hc);
	hub_detach(h, &a2.hc);
	hub_detach(h, &b1.hc);
	hub_free(h);
}
END_TEST

Suite *revoke_suite(void)
{
	Suite *s = suite_create("revoke");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, parse_good);
	tcase_add_test(tc, parse_bad);
	tcase_add_test(tc, names);
	tcase_add_test(tc, match);
	tcase_add_test(tc, check_reply);
	tcase_add_test(tc, ticket_values);
	tcase_add_test(tc, hub_close);
	suite_add_tcase(s, tc);
	return s;
}
