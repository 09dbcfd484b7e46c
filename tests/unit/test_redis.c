#include "config.h"

#include "suites.h"

Suite *redis_suite(void)
{
	Suite *s = suite_create("redis");
	return s;
}
