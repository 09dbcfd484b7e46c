/*
 * libFuzzer target for the configuration parser: the input is read as a
 * config file (through a temporary file), as `key=value` lines given to
 * conf_set and as environment entries, and whole as a duration and a size.
 * The log line formatter gets it too, in both formats.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char file_path[] = "/tmp/herald-fuzz-conf-XXXXXX";
static int file_fd = -1;

static void as_file(const uint8_t *data, size_t size)
{
	struct conf c;
	char err[256];

	if (file_fd < 0) {
		file_fd = mkstemp(file_path);
		if (file_fd < 0)
			return;
		unlink(file_path);
	}
	if (ftruncate(file_fd, 0) != 0 || pwrite(file_fd, data, size, 0) != (ssize_t)size)
		return;
	/* The file was unlinked: reach it again through /proc. */
	{
		char path[64];

		snprintf(path, sizeof path, "/proc/self/fd/%d", file_fd);
		if (conf_init(&c) != 0)
			return;
		conf_load_file(&c, path, err, sizeof err);
		conf_free(&c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	char *envp[65];
	size_t nenv = 0;
	char err[256], dump[8192], line[4096];
	struct conf c;
	long v;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	conf_parse_duration(text, &v);
	conf_parse_size(text, &v);

	log_open("fuzz", LOG_LEVEL_DEBUG, 0, NULL);
	log_format_line(line, sizeof line, LOG_LEVEL_INFO, "%s", text);
	log_open("fuzz", LOG_LEVEL_DEBUG, 1, NULL);
	log_format_line(line, sizeof line, LOG_LEVEL_INFO, "%s", text);

	as_file(data, size);

	if (conf_init(&c) == 0) {
		for (char *p = text, *nl; p != NULL; p = nl) {
			char *eq;

			nl = strchr(p, '\n');
			if (nl != NULL)
				*nl++ = '\0';
			if (nenv < 64)
				envp[nenv++] = p;
			eq = strchr(p, '=');
			if (eq == NULL)
				continue;
			*eq = '\0';
			conf_set(&c, p, eq + 1, "fuzz", err, sizeof err);
			*eq = '=';
		}
		envp[nenv] = NULL;
		conf_load_env(&c, envp, NULL, err, sizeof err);
		conf_validate(&c, err, sizeof err);
		conf_dump(&c, dump, sizeof dump);
		conf_free(&c);
	}
	free(text);
	return 0;
}
