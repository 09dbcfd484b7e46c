/*
 * The unit test runner: every module's suite in one SRunner, TAP on stdout
 * (CK_TAP_LOG_FILE_NAME=-, set by `make check`).  An argument runs only the
 * suites whose name it names: `tests/unit/unit auth hub`.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "suites.h"

static const struct {
	const char *name;
	Suite *(*make)(void);
} all[] = {
	{"conf", conf_suite},         {"log", log_suite},
	{"http", http_suite},         {"auth", auth_suite},
	{"jsonv", jsonv_suite},       {"cursor", cursor_suite},
	{"envelope", envelope_suite}, {"redis", redis_suite},
	{"hub", hub_suite},
	{"ws_frame", ws_frame_suite}, {"ws_handshake", ws_handshake_suite},
	{"ws_message", ws_message_suite},
	{"metrics", metrics_suite},
	{"sse", sse_suite},
	{"fcgi", fcgi_suite},
	{"listen", listen_suite},
	{"notify", notify_suite},
	{"fcgi_record", fcgi_record_suite},
	{"proxy", proxy_suite},
	{"text", text_suite},
	{"jitter", jitter_suite},
	{"umap", umap_suite},
	{"slab", slab_suite},
	{"revoke", revoke_suite},
	{"cluster", cluster_suite},
};

int main(int argc, char **argv)
{
	SRunner *sr = NULL;
	size_t i;
	int failed;

	for (i = 0; i < sizeof all / sizeof all[0]; i++) {
		Suite *s;
		int wanted = argc < 2;

		for (int a = 1; a < argc && !wanted; a++)
			wanted = strcmp(argv[a], all[i].name) == 0;
		if (!wanted)
			continue;
		s = all[i].make();
		if (sr == NULL)
			sr = srunner_create(s);
		else
			srunner_add_suite(sr, s);
	}
	if (sr == NULL)
		return EXIT_FAILURE;
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
