/* src/umap.c: the per-user hash table of the hub and the subscriber. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "umap.h"

struct ent {
	int payload;
	struct umap_node node;
	char key[16];
};

#define ENT(n) container_of(n, struct ent, node)

static struct ent *ent_new(struct umap *m, int i)
{
	struct ent *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	e->payload = i;
	snprintf(e->key, sizeof e->key, "user%d", i);
	umap_add(m, &e->node, e->key);
	return e;
}

START_TEST(add_find_remove)
{
	struct umap m;
	struct ent *a, *b;

	ck_assert_int_eq(umap_init(&m, 4), 0);
	ck_assert_ptr_null(umap_first(&m));
	ck_assert_ptr_null(umap_find(&m, "user1"));
	a = ent_new(&m, 1);
	b = ent_new(&m, 2);
	ck_assert_uint_eq(m.count, 2);
	ck_assert_ptr_eq(umap_find(&m, "user1"), &a->node);
	ck_assert_int_eq(ENT(umap_find(&m, "user2"))->payload, 2);
	ck_assert_ptr_null(umap_find(&m, "user"));
	ck_assert_ptr_null(umap_find(&m, "user12"));
	umap_remove(&m, &a->node);
	ck_assert_ptr_null(umap_find(&m, "user1"));
	ck_assert_ptr_eq(umap_find(&m, "user2"), &b->node);
	ck_assert_uint_eq(m.count, 1);
	umap_remove(&m, &b->node);
	ck_assert_ptr_null(umap_first(&m));
	free(a);
	free(b);
	umap_free(&m);
	umap_free(&m); /* a freed map is fine */
}
END_TEST

/* Many entries: the table doubles, every entry stays findable, and an
 * iteration that frees as it goes sees each entry once. */
START_TEST(grow_and_iterate)
{
	enum { N = 5000 };
	static unsigned char seen[N];
	struct umap m;
	struct umap_node *n, *next;
	size_t count = 0;

	memset(seen, 0, sizeof seen);
	ck_assert_int_eq(umap_init(&m, 0), 0);
	for (int i = 0; i < N; i++)
		ent_new(&m, i);
	ck_assert_uint_eq(m.count, N);
	ck_assert_uint_ge(m.cap, N);
	ck_assert_uint_eq(m.cap & (m.cap - 1), 0);
	for (int i = 0; i < N; i += 97) {
		char key[16];

		snprintf(key, sizeof key, "user%d", i);
		ck_assert_int_eq(ENT(umap_find(&m, key))->payload, i);
	}
	/* remove the odd ones while iterating */
	for (n = umap_first(&m); n != NULL; n = next) {
		next = umap_next(&m, n);
		if (ENT(n)->payload % 2) {
			umap_remove(&m, n);
			free(ENT(n));
		}
	}
	ck_assert_uint_eq(m.count, N / 2);
	for (n = umap_first(&m); n != NULL; n = next) {
		next = umap_next(&m, n);
		ck_assert_int_eq(seen[ENT(n)->payload], 0);
		seen[ENT(n)->payload] = 1;
		count++;
		umap_remove(&m, n);
		free(ENT(n));
	}
	ck_assert_uint_eq(count, N / 2);
	ck_assert_uint_eq(m.count, 0);
	umap_free(&m);
}
END_TEST

START_TEST(hash_is_fnv1a)
{
	/* the published FNV-1a test vectors */
	ck_assert_uint_eq(umap_hash(""), 0x811c9dc5u);
	ck_assert_uint_eq(umap_hash("a"), 0xe40c292cu);
	ck_assert_uint_eq(umap_hash("foobar"), 0xbf9cf968u);
}
END_TEST

Suite *umap_suite(void)
{
	Suite *s = suite_create("umap");
	TCase *tc = tcase_create("umap");

	tcase_add_test(tc, add_find_remove);
	tcase_add_test(tc, grow_and_iterate);
	tcase_add_test(tc, hash_is_fnv1a);
	suite_add_tcase(s, tc);
	return s;
}
