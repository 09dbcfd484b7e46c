#include "config.h"

#include "suites.h"

Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	return s;
}
