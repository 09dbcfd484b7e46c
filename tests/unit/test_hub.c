#include "config.h"

#include "suites.h"

Suite *hub_suite(void)
{
	Suite *s = suite_create("hub");
	return s;
}
