#include "config.h"

#include "suites.h"

Suite *cursor_suite(void)
{
	Suite *s = suite_create("cursor");
	return s;
}
