#include "config.h"

#include "suites.h"

Suite *jsonv_suite(void)
{
	Suite *s = suite_create("jsonv");
	return s;
}
