#include "config.h"

#include "suites.h"

Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	return s;
}
