#include "config.h"

#include "suites.h"

Suite *envelope_suite(void)
{
	Suite *s = suite_create("envelope");
	return s;
}
