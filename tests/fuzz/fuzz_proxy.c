/*
 * fuzz_proxy: the PROXY protocol header parser on any bytes.  It never reads
 * past the input, never claims more than it was given or than PROXY_MAX,
 * and gives the same answer fed whole and fed as a prefix: a prefix of an
 * accepted header asks for more (0), a prefix of a refused one is refused
 * or asks for more, never accepted.  An accepted header's addresses format.
 *
 * Input: the bytes a connection sends first.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../codec/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	struct proxy_hdr h, hp;
	char a[PROXY_ADDR_STRLEN];
	uint8_t *copy;
	long n, m;

	/* An exact-size copy, so ASan sees a read past the end. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, in, size);
	n = proxy_parse(copy, size, &h);
	if (n > 0) {
		if ((size_t)n > size || n > PROXY_MAX || (h.version != 1 && h.version != 2))
			abort();
		if (!proxy_sniff(copy, size))
			abort();
		proxy_addr_str(&h.src, a, sizeof a);
		proxy_addr_str(&h.dst, a, sizeof a);
		if (h.version == 1 && n > PROXY_V1_MAX)
			abort();
		/* The header alone parses the same; every shorter prefix asks for more. */
		if (proxy_parse(copy, (size_t)n, &hp) != n || memcmp(&h, &hp, sizeof h) != 0)
			abort();
		for (size_t i = 0; i < (size_t)n; i += 1 + i / 8)
			if (proxy_parse(copy, i, &hp) != 0)
				abort();
	} else if (n < 0) {
		for (size_t i = 0; i < size; i += 1 + i / 8) {
			m = proxy_parse(copy, i, &hp);
			if (m > 0)
				abort();
		}
	}
	free(copy);
	return 0;
}
