#include "config.h"

#include "suites.h"

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	return s;
}
