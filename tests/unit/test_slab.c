/* src/slab.c: herald-ws's connections in mapped chunks. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "slab.h"
#include "suites.h"

#define N 10000
#define SIZE 1300

static void *objs[N];
static const unsigned char zero[SIZE];

START_TEST(bad_sizes)
{
	struct slab s;

	ck_assert_int_eq(slab_init(&s, 0), HERR_INVAL);
	ck_assert_ptr_null(slab_alloc(&s));
	ck_assert_int_eq(slab_init(&s, SLAB_OBJ_MAX + 1), HERR_INVAL);
	ck_assert_int_eq(slab_init(&s, SLAB_OBJ_MAX), 0);
	slab_free(&s, NULL);
	slab_destroy(&s);
}
END_TEST

/* 10,000 distinct, zeroed, aligned objects; all freed, one chunk stays. */
START_TEST(flood_and_back)
{
	struct slab s;

	ck_assert_int_eq(slab_init(&s, SIZE), 0);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			unsigned char *p = slab_alloc(&s);

			ck_assert_ptr_nonnull(p);
			ck_assert_uint_eq((uintptr_t)p % 16, 0);
			ck_assert_int_eq(memcmp(p, zero, SIZE), 0);
			memset(p, 0xa5, SIZE); /* overlaps would break the check below */
			memcpy(p, &i, sizeof i);
			objs[i] = p;
		}
		ck_assert_uint_eq(s.objects, N);
		ck_assert_uint_ge(s.chunks, (size_t)N * SIZE / SLAB_CHUNK);
		ck_assert_uint_le(s.chunks, (size_t)N * SIZE / SLAB_CHUNK * 11 / 10 + 1);
		for (int i = 0; i < N; i++) {
			int v;

			memcpy(&v, objs[i], sizeof v);
			ck_assert_int_eq(v, i);
		}
		/* Free in a scattered order. */
		for (int i = 0; i < N; i++) {
			int k = (int)(((unsigned)i * 7919u) % N);

			slab_free(&s, objs[k]);
		}
		ck_assert_uint_eq(s.objects, 0);
		ck_assert_uint_eq(s.chunks, 1);
	}
	slab_destroy(&s);
	ck_assert_uint_eq(s.chunks, 0);
}
END_TEST

/* Churn around a chunk boundary neither leaks chunks nor hands one out twice. */
START_TEST(churn)
{
	struct slab s;
	void *keep[64];

	ck_assert_int_eq(slab_init(&s, 100), 0);
	for (int i = 0; i < 64; i++)
		keep[i] = slab_alloc(&s);
	for (int i = 0; i < 100000; i++) {
		int k = i % 64;

		slab_free(&s, keep[k]);
		keep[k] = slab_alloc(&s);
		ck_assert_ptr_nonnull(keep[k]);
	}
	ck_assert_uint_eq(s.chunks, 1);
	for (int i = 0; i < 64; i++)
		for (int j = i + 1; j < 64; j++)
			ck_assert_ptr_ne(keep[i], keep[j]);
	slab_destroy(&s);
}
END_TEST

Suite *slab_suite(void)
{
	Suite *s = suite_create("slab");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, bad_sizes);
	tcase_add_test(tc, flood_and_back);
	tcase_add_test(tc, churn);
	suite_add_tcase(s, tc);
	return s;
}
