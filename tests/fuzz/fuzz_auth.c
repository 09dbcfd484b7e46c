/*
 * libFuzzer target for auth_verify: one HS256 verifier built once from a
 * fixed configuration.  Each input is verified as given; an input of the
 * form "header.payload" is also signed with the fixed secret first, so the
 * fuzzer reaches the claim checks behind the signature.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

#define FUZZ_SECRET "fuzz-secret-0123456789abcdef0123"
#define FUZZ_NOW    1700000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static auth_t *auth;

static auth_t *verifier(void)
{
	static char secret[] = FUZZ_SECRET;
	static char claim[] = "sub";
	static char issuer[] = "https://app.example";
	static char audience[] = "herald";
	struct conf c;
	char err[256];

	if (auth != NULL)
		return auth;
	memset(&c, 0, sizeof c);
	c.jwt_alg = CONF_ALG_HS256;
	c.jwt_secret = secret;
	c.jwt_user_claim = claim;
	c.jwt_issuer = issuer;
	c.jwt_audience = audience;
	c.jwt_leeway = 30;
	if (auth_new(&auth, &c, err, sizeof err) != 0)
		abort();
	return auth;
}

static void check(const char *tok, size_t len)
{
	struct auth_identity id;
	int rc = auth_verify(verifier(), tok, len, FUZZ_NOW, &id);

	if (rc > 0 || rc < AUTH_INTERNAL)
		abort();
	if (rc == AUTH_OK && !auth_user_valid(id.user, strlen(id.user)))
		abort();
	if (auth_reason(rc) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tok = (const char *)data;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *signed_tok;
	int n;

	check(tok, size);
	if (size == 0 || size > AUTH_TOKEN_MAX - 64 || memchr(data, '.', size) == NULL)
		return 0;
	if (HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), data, size, mac, &maclen) ==
	    NULL)
		return 0;
	signed_tok = malloc(size + 1 + 4 * EVP_MAX_MD_SIZE / 3 + 4);
	if (signed_tok == NULL)
		return 0;
	memcpy(signed_tok, data, size);
	signed_tok[size] = '.';
	n = EVP_EncodeBlock((unsigned char *)signed_tok + size + 1, mac, (int)maclen);
	while (n > 0 && signed_tok[size + (size_t)n] == '=')
		n--;
	for (int i = 0; i < n; i++) {
		char *p = &signed_tok[size + 1 + (size_t)i];

		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	}
	check(signed_tok, size + 1 + (size_t)n);
	free(signed_tok);
	return 0;
}
