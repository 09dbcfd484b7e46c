/* src/jitter.h: the random spread of retry delays and stream ends. */
#include "config.h"

#include "jitter.h"
#include "suites.h"

/* Every draw within [0, max]; over many, both ends of the range and its
 * middle are reached (a spread, not a constant or one half). */
START_TEST(upto_range)
{
	struct jitter j;
	uint64_t lo = UINT64_MAX, hi = 0;
	int below = 0;

	jitter_seed(&j, &j);
	for (int i = 0; i < 10000; i++) {
		uint64_t v = jitter_upto(&j, 1000);

		ck_assert_uint_le(v, 1000);
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
		below += v < 500;
	}
	ck_assert_uint_le(lo, 10);
	ck_assert_uint_ge(hi, 990);
	ck_assert_int_gt(below, 4500);
	ck_assert_int_lt(below, 5500);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(jitter_upto(&j, 0), 0);
}
END_TEST

/* Two owners seeded apart draw apart: what restarts together spreads. */
START_TEST(owners_differ)
{
	struct jitter a, b;
	int same = 0;

	jitter_seed(&a, &a);
	jitter_seed(&b, &b);
	for (int i = 0; i < 100; i++)
		same += jitter_upto(&a, 1u << 30) == jitter_upto(&b, 1u << 30);
	ck_assert_int_lt(same, 3);
}
END_TEST

Suite *jitter_suite(void)
{
	Suite *s = suite_create("jitter");
	TCase *tc = tcase_create("jitter");

	tcase_add_test(tc, upto_range);
	tcase_add_test(tc, owners_differ);
	suite_add_tcase(s, tc);
	return s;
}
