#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth.h"
#include "err.h"
#include "jwt_keys.h"
#include "suites.h"

/* Every token is verified at this instant; exp/nbf are set around it. */
#define NOW 1700000000L

static char secret256[] = "0123456789abcdef0123456789abcdef";
static char claim_sub[] = "sub";

/* A zeroed conf with only what auth reads: conf_* are not used here. */
static void conf_for(struct conf *c, enum conf_alg alg)
{
	memset(c, 0, sizeof *c);
	c->jwt_alg = alg;
	c->jwt_user_claim = claim_sub;
	c->jwt_leeway = 30;
	if (alg <= CONF_ALG_HS512)
		c->jwt_secret = secret256;
}

static auth_t *auth_or_die(const struct conf *c)
{
	char err[256];
	auth_t *a = NULL;
	int rc = auth_new(&a, c, err, sizeof err);

	ck_assert_msg(rc == 0, "auth_new: %d %s", rc, err);
	return a;
}

/* A temporary file holding text; the caller unlinks path. */
static void write_temp(char *path, size_t len, const char *text)
{
	int fd;

	snprintf(path, len, "/tmp/herald-auth-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Key files for RS256/ES256: written once per test by the fixture. */
static char rsa_pub_path[64], rsa2_pub_path[64], ec_pub_path[64];

static void keys_setup(void)
{
	write_temp(rsa_pub_path, sizeof rsa_pub_path, TEST_RSA_PUB);
	write_temp(rsa2_pub_path, sizeof rsa2_pub_path, TEST_RSA2_PUB);
	write_temp(ec_pub_path, sizeof ec_pub_path, TEST_EC_PUB);
}

static void keys_teardown(void)
{
	unlink(rsa_pub_path);
	unlink(rsa2_pub_path);
	unlink(ec_pub_path);
}

static auth_t *auth_for(enum conf_alg alg)
{
	struct conf c;

	conf_for(&c, alg);
	if (alg == CONF_ALG_RS256)
		c.jwt_key_file = rsa_pub_path;
	else if (alg == CONF_ALG_ES256)
		c.jwt_key_file = ec_pub_path;
	return auth_or_die(&c);
}

/* Sign grants (a JSON object) with libjwt; free() the result. */
static char *sign(jwt_alg_t alg, const char *key, const char *grants)
{
	jwt_t *j = NULL;
	char *tok;

	ck_assert_int_eq(jwt_new(&j), 0);
	ck_assert_int_eq(jwt_add_grants_json(j, grants), 0);
	ck_assert_int_eq(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
	tok = jwt_encode_str(j);
	ck_assert_ptr_nonnull(tok);
	jwt_free(j);
	return tok;
}

static char *sign_hs256(const char *grants)
{
	return sign(JWT_ALG_HS256, secret256, grants);
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p != '\0'; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/*
 * A token built by hand: header and payload as given (raw JSON text), then
 * the signature: HMAC with md and key when md is set, else sig verbatim
 * (NULL: no signature part, two parts only).
 */
static char *craft(const char *header, const char *payload, const EVP_MD *md, const char *key,
		   const char *sig)
{
	size_t cap = 4 * (strlen(header) + strlen(payload)) + 1024;
	char *tok = malloc(cap);
	size_t n;

	ck_assert_ptr_nonnull(tok);
	b64url((const unsigned char *)header, strlen(header), tok);
	strcat(tok, ".");
	n = strlen(tok);
	b64url((const unsigned char *)payload, strlen(payload), tok + n);
	if (md != NULL) {
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned int maclen;

		ck_assert_ptr_nonnull(HMAC(md, key, (int)strlen(key), (unsigned char *)tok,
					   strlen(tok), mac, &maclen));
		strcat(tok, ".");
		b64url(mac, maclen, tok + strlen(tok));
	} else if (sig != NULL) {
		strcat(tok, ".");
		strcat(tok, sig);
	}
	return tok;
}

/*
 * A token signed by hand with a private key PEM: RS256 (PKCS#1 v1.5) or
 * ES256 (raw r || s, as RFC 7518 wants), whatever header and payload say.
 */
static char *craft_pkey(const char *header, const char *payload, const char *priv_pem, int es)
{
	char *tok = craft(header, payload, NULL, NULL, NULL);
	BIO *bio = BIO_new_mem_buf(priv_pem, -1);
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[1024], raw[64];
	size_t siglen = sizeof sig;
	char *out;

	ck_assert_ptr_nonnull(pk);
	ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk), 1);
	ck_assert_int_eq(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, strlen(tok)), 1);
	out = malloc(strlen(tok) + 2 * sizeof sig);
	strcpy(out, tok);
	strcat(out, ".");
	if (es) {
		const unsigned char *p = sig;
		ECDSA_SIG *es_sig = d2i_ECDSA_SIG(NULL, &p, (long)siglen);

		ck_assert_ptr_nonnull(es_sig);
		BN_bn2binpad(ECDSA_SIG_get0_r(es_sig), raw, 32);
		BN_bn2binpad(ECDSA_SIG_get0_s(es_sig), raw + 32, 32);
		ECDSA_SIG_free(es_sig);
		b64url(raw, sizeof raw, out + strlen(out));
	} else {
		b64url(sig, siglen, out + strlen(out));
	}
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	free(tok);
	return out;
}

static int verify(const auth_t *a, const char *tok, struct auth_identity *id)
{
	return auth_verify(a, tok, strlen(tok), NOW, id);
}

/* Sign grants with HS256 and verify with the default HS256 auth. */
static int hs_result(const char *grants, struct auth_identity *id)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	char *tok = sign_hs256(grants);
	int rc = verify(a, tok, id);

	free(tok);
	auth_free(a);
	return rc;
}

#define GOOD_CLAIMS "{\"sub\":\"alice\",\"exp\":1700000100}"

/* ---- every algorithm ------------------------------------------------- */

START_TEST(accept_hmac)
{
	static const struct {
		enum conf_alg alg;
		jwt_alg_t jalg;
	} cases[] = {
	    {CONF_ALG_HS256, JWT_ALG_HS256},
	    {CONF_ALG_HS384, JWT_ALG_HS384},
	    {CONF_ALG_HS512, JWT_ALG_HS512},
	};
	struct auth_identity id;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		auth_t *a = auth_for(cases[i].alg);
		char *tok = sign(cases[i].jalg, secret256, GOOD_CLAIMS);

		memset(&id, 0, sizeof id);
		ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
		ck_assert_str_eq(id.user, "alice");
		ck_assert_int_eq(id.exp, 1700000100LL);
		free(tok);
		auth_free(a);
	}
}
END_TEST

START_TEST(accept_rs256)
{
	auth_t *a = auth_for(CONF_ALG_RS256);
	char *tok = sign(JWT_ALG_RS256, TEST_RSA_PRIV, GOOD_CLAIMS);
	struct auth_identity id;

	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	ck_assert_str_eq(id.user, "alice");
	ck_assert_int_eq(id.exp, 1700000100LL);
	/* the identity is optional */
	ck_assert_int_eq(verify(a, tok, NULL), AUTH_OK);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(accept_es256)
{
	auth_t *a = auth_for(CONF_ALG_ES256);
	char *tok = sign(JWT_ALG_ES256, TEST_EC_PRIV, GOOD_CLAIMS);
	struct auth_identity id;

	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	ck_assert_str_eq(id.user, "alice");
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(accept_hand_crafted)
{
	/* our own encoder and libjwt agree; extra headers are ignored */
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	static const char *const headers[] = {
	    "{\"alg\":\"HS256\"}",
	    "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
	    "{\"typ\":\"jwt\",\"alg\":\"HS256\"}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = craft(headers[i], GOOD_CLAIMS, EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(a, tok, &id) == AUTH_OK, "%s", headers[i]);
		free(tok);
	}
	auth_free(a);
}
END_TEST

/* Header form f (0-2 the ones auth.c knows byte for byte) for alg. */
static void header_form(char *out, size_t len, size_t f, const char *alg)
{
	static const char *const form[][2] = {
	    {"{\"alg\":\"", "\",\"typ\":\"JWT\"}"},
	    {"{\"typ\":\"JWT\",\"alg\":\"", "\"}"},
	    {"{\"alg\":\"", "\"}"},
	    {"{ \"alg\" : \"", "\" }"},
	    {"{\"alg\":\"", "\",\"typ\":\"JWT\",\"kid\":\"1\"}"},
	};

	snprintf(out, len, "%s%s%s", form[f][0], alg, form[f][1]);
}

/* The header forms checked byte for byte (no parse) give what the parse
 * gives: accepted for the configured algorithm only, signature still
 * checked; any other spelling takes the parse. */
START_TEST(known_headers)
{
	static const struct {
		enum conf_alg alg;
		const char *name;
		const EVP_MD *(*md)(void);
	} algs[] = {
	    {CONF_ALG_HS256, "HS256", EVP_sha256},
	    {CONF_ALG_HS384, "HS384", EVP_sha384},
	    {CONF_ALG_HS512, "HS512", EVP_sha512},
	};
	struct auth_identity id;

	for (size_t k = 0; k < sizeof algs / sizeof algs[0]; k++) {
		auth_t *a = auth_for(algs[k].alg);

		for (size_t f = 0; f < 5; f++) {
			for (size_t o = 0; o < sizeof algs / sizeof algs[0]; o++) {
				char hdr[128], *tok;
				size_t n;

				header_form(hdr, sizeof hdr, f, algs[o].name);
				tok = craft(hdr, GOOD_CLAIMS, algs[o].md(), secret256, NULL);
				ck_assert_msg(verify(a, tok, &id) == (o == k ? AUTH_OK : AUTH_BAD_ALG),
					      "%s under %s", hdr, algs[k].name);
				if (o == k) {
					/* the last signature character changed */
					n = strlen(tok);
					tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
					ck_assert_msg(verify(a, tok, &id) == AUTH_BAD_SIGNATURE,
						      "%s, tampered", hdr);
				}
				free(tok);
			}
		}
		auth_free(a);
	}
}
END_TEST

START_TEST(typ_not_jwt)
{
	/* libjwt 1.10 refuses any typ but "JWT": refused up front, as malformed */
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	static const char *const headers[] = {
	    "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}",
	    "{\"alg\":\"HS256\",\"typ\":1}",
	    "{\"alg\":\"HS256\",\"typ\":\"JWT\\u0000x\"}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = craft(headers[i], GOOD_CLAIMS, EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(a, tok, &id) == AUTH_MALFORMED, "%s", headers[i]);
		free(tok);
	}
	auth_free(a);
}
END_TEST

START_TEST(claims_not_json)
{
	/*
	 * Signed correctly, but the claims are not RFC 8259 JSON in UTF-8
	 * (json-c's strict mode would take all but the last): malformed,
	 * whichever the algorithm, never "bad signature".
	 */
	static const char *const claims[] = {
	    "{\"sub\":\"a\",\"exp\":1700000100,\"x\":NaN}",
	    "{\"sub\":\"a\",\"exp\":1700000100,'x':1}",
	    "{\"sub\":\"a\",\"exp\":1700000100,\"x\":\"\x01\"}",
	    "{\"sub\":\"a\",\"exp\":1700000100,\"x\":\"\xed\xa0\x80\"}",
	    "{\"sub\":\"a\",\"exp\":1700000100,\"x\":\"\xc3\"}",
	    "{\"sub\":\"a\",\"exp\":1700000100}   x",
	};
	auth_t *hs = auth_for(CONF_ALG_HS256);
	auth_t *rs = auth_for(CONF_ALG_RS256);
	auth_t *es = auth_for(CONF_ALG_ES256);
	struct auth_identity id;

	for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
		char *tok = craft("{\"alg\":\"HS256\"}", claims[i], EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(hs, tok, &id) == AUTH_MALFORMED, "%s", claims[i]);
		free(tok);
	}
	for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
		char *tok = craft_pkey("{\"alg\":\"RS256\"}", claims[i], TEST_RSA_PRIV, 0);

		ck_assert_msg(verify(rs, tok, &id) == AUTH_MALFORMED, "%s", claims[i]);
		free(tok);
	}
	for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
		char *tok = craft_pkey("{\"alg\":\"ES256\"}", claims[i], TEST_EC_PRIV, 1);

		ck_assert_msg(verify(es, tok, &id) == AUTH_MALFORMED, "%s", claims[i]);
		free(tok);
	}
	auth_free(hs);
	auth_free(rs);
	auth_free(es);
}
END_TEST

START_TEST(claims_json_unusual)
{
	/*
	 * JSON that JSON.parse takes (libjwt's jansson refused these; auth no
	 * longer runs it): a claim we do not read may hold an escaped lone
	 * surrogate or an integer past 64 bits; a NUL escaped in the user is
	 * not a valid user.
	 */
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	char *tok;

	tok = craft("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000100,\"x\":\"\\ud800\"}",
		    EVP_sha256(), secret256, NULL);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	ck_assert_str_eq(id.user, "a");
	free(tok);
	tok = craft("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000100,\"x\":99999999999999999999}",
		    EVP_sha256(), secret256, NULL);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	free(tok);
	tok = craft("{\"alg\":\"HS256\"}", "{\"sub\":\"a\\u0000b\",\"exp\":1700000100}", EVP_sha256(),
		    secret256, NULL);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_USER);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(pkey_hand_crafted)
{
	auth_t *rs = auth_for(CONF_ALG_RS256);
	auth_t *es = auth_for(CONF_ALG_ES256);
	struct auth_identity id;
	char *trs = craft_pkey("{\"alg\":\"RS256\"}", GOOD_CLAIMS, TEST_RSA_PRIV, 0);
	char *tes = craft_pkey("{\"alg\":\"ES256\"}", GOOD_CLAIMS, TEST_EC_PRIV, 1);
	char *d2 = strrchr(tes, '.');
	char *t2 = craft_pkey("{\"alg\":\"RS256\"}", GOOD_CLAIMS, TEST_RSA2_PRIV, 0);

	ck_assert_int_eq(verify(rs, trs, &id), AUTH_OK);
	ck_assert_int_eq(verify(es, tes, &id), AUTH_OK);
	ck_assert_int_eq(verify(rs, t2, &id), AUTH_BAD_SIGNATURE);
	/* an ES256 signature of the wrong length (63 bytes) */
	strcpy(
	    d2 + 1,
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	ck_assert_int_eq(verify(es, tes, &id), AUTH_BAD_SIGNATURE);
	/* an all-zero one of the right length (r = s = 0) */
	strcpy(d2 + 1, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		       "AAAAAAAAAAA");
	ck_assert_int_eq(verify(es, tes, &id), AUTH_BAD_SIGNATURE);
	free(trs);
	free(tes);
	free(t2);
	auth_free(rs);
	auth_free(es);
}
END_TEST

START_TEST(token_not_nul_terminated)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	char *tok = sign_hs256(GOOD_CLAIMS);
	size_t n = strlen(tok);
	char *buf = malloc(n + 5);
	struct auth_identity id;

	memcpy(buf, tok, n);
	memcpy(buf + n, "XXXX", 5);
	ck_assert_int_eq(auth_verify(a, buf, n, NOW, &id), AUTH_OK);
	ck_assert_int_eq(auth_verify(a, buf, n + 4, NOW, &id), AUTH_BAD_SIGNATURE);
	free(buf);
	free(tok);
	auth_free(a);
}
END_TEST

/* ---- algorithm attacks ----------------------------------------------- */

START_TEST(alg_none)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	static const char *const headers[] = {
	    "{\"alg\":\"none\",\"typ\":\"JWT\"}",
	    "{\"alg\":\"None\"}",
	    "{\"alg\":\"NONE\"}",
	    "{\"alg\":\"\"}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *empty_sig = craft(headers[i], GOOD_CLAIMS, NULL, NULL, "");
		char *some_sig = craft(headers[i], GOOD_CLAIMS, NULL, NULL, "c2ln");
		char *two_parts = craft(headers[i], GOOD_CLAIMS, NULL, NULL, NULL);

		ck_assert_int_eq(verify(a, empty_sig, &id), AUTH_BAD_ALG);
		ck_assert_int_eq(verify(a, some_sig, &id), AUTH_BAD_ALG);
		ck_assert_int_eq(verify(a, two_parts, &id), AUTH_MALFORMED);
		free(empty_sig);
		free(some_sig);
		free(two_parts);
	}
	auth_free(a);
}
END_TEST

START_TEST(alg_missing_or_not_string)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	static const char *const headers[] = {
	    "{\"typ\":\"JWT\"}",     "{\"alg\":null}",	    "{\"alg\":256}",
	    "{\"alg\":[\"HS256\"]}", "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = craft(headers[i], GOOD_CLAIMS, EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(a, tok, &id) == AUTH_BAD_ALG, "%s", headers[i]);
		free(tok);
	}
	auth_free(a);
}
END_TEST

START_TEST(hs_rs_confusion)
{
	/* An HS256 token whose HMAC key is the server's RSA public key PEM. */
	auth_t *a = auth_for(CONF_ALG_RS256);
	struct auth_identity id;
	char *tok = sign(JWT_ALG_HS256, TEST_RSA_PUB, GOOD_CLAIMS);
	jwt_t *j = NULL;

	/* libjwt alone accepts it (NOTES.md): the hole this module closes */
	ck_assert_int_eq(
	    jwt_decode(&j, tok, (const unsigned char *)TEST_RSA_PUB, (int)strlen(TEST_RSA_PUB)), 0);
	ck_assert_int_eq(jwt_get_alg(j), JWT_ALG_HS256);
	jwt_free(j);

	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_ALG);
	free(tok);
	tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", GOOD_CLAIMS, EVP_sha256(), TEST_RSA_PUB,
		    NULL);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_ALG);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(wrong_alg)
{
	struct auth_identity id;
	auth_t *hs256 = auth_for(CONF_ALG_HS256);
	auth_t *hs512 = auth_for(CONF_ALG_HS512);
	auth_t *es = auth_for(CONF_ALG_ES256);
	auth_t *rs = auth_for(CONF_ALG_RS256);
	char *t384 = sign(JWT_ALG_HS384, secret256, GOOD_CLAIMS);
	char *t256 = sign(JWT_ALG_HS256, secret256, GOOD_CLAIMS);
	char *trs = sign(JWT_ALG_RS256, TEST_RSA_PRIV, GOOD_CLAIMS);
	char *tes = sign(JWT_ALG_ES256, TEST_EC_PRIV, GOOD_CLAIMS);

	ck_assert_int_eq(verify(hs256, t384, &id), AUTH_BAD_ALG);
	ck_assert_int_eq(verify(hs512, t256, &id), AUTH_BAD_ALG);
	ck_assert_int_eq(verify(hs256, trs, &id), AUTH_BAD_ALG);
	ck_assert_int_eq(verify(es, trs, &id), AUTH_BAD_ALG);
	ck_assert_int_eq(verify(rs, tes, &id), AUTH_BAD_ALG);
	ck_assert_int_eq(verify(rs, t256, &id), AUTH_BAD_ALG);
	free(t384);
	free(t256);
	free(trs);
	free(tes);
	auth_free(hs256);
	auth_free(hs512);
	auth_free(es);
	auth_free(rs);
}
END_TEST

/* ---- signatures ------------------------------------------------------ */

START_TEST(wrong_key_hmac)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	char *tok = sign(JWT_ALG_HS256, "another secret, 32 bytes long...", GOOD_CLAIMS);

	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_SIGNATURE);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(wrong_key_rsa)
{
	auth_t *a = auth_for(CONF_ALG_RS256);
	struct auth_identity id;
	char *tok = sign(JWT_ALG_RS256, TEST_RSA2_PRIV, GOOD_CLAIMS);

	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_SIGNATURE);
	free(tok);
	auth_free(a);
}
END_TEST

/* Replace the payload of tok with another one, keeping header and signature. */
static char *swap_payload(const char *tok, const char *payload)
{
	const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char *out = malloc(strlen(tok) + 4 * strlen(payload) + 8);

	memcpy(out, tok, (size_t)(d1 - tok) + 1);
	b64url((const unsigned char *)payload, strlen(payload), out + (d1 - tok) + 1);
	strcat(out, d2);
	return out;
}

START_TEST(tampered)
{
	static const struct {
		enum conf_alg alg;
		jwt_alg_t jalg;
		const char *key;
	} cases[] = {
	    {CONF_ALG_HS256, JWT_ALG_HS256, secret256},
	    {CONF_ALG_RS256, JWT_ALG_RS256, TEST_RSA_PRIV},
	    {CONF_ALG_ES256, JWT_ALG_ES256, TEST_EC_PRIV},
	};
	struct auth_identity id;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		auth_t *a = auth_for(cases[i].alg);
		char *tok = sign(cases[i].jalg, cases[i].key, GOOD_CLAIMS);
		char *evil = swap_payload(tok, "{\"sub\":\"admin\",\"exp\":1700000100}");
		size_t n = strlen(tok);

		ck_assert_int_eq(verify(a, evil, &id), AUTH_BAD_SIGNATURE);
		/* flip one signature character */
		tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
		ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_SIGNATURE);
		/* drop the signature */
		*strrchr(tok, '.') = '\0';
		strcat(tok, ".");
		ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_SIGNATURE);
		free(evil);
		free(tok);
		auth_free(a);
	}
}
END_TEST

START_TEST(hmac_signature_lengths)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	char *tok = sign_hs256(GOOD_CLAIMS);
	char *longer = malloc(strlen(tok) + 8);

	/* a valid signature with bytes after it is not a valid signature */
	strcpy(longer, tok);
	strcat(longer, "AAAA");
	ck_assert_int_eq(verify(a, longer, &id), AUTH_BAD_SIGNATURE);
	/* a prefix of the signature neither */
	tok[strlen(tok) - 4] = '\0';
	ck_assert_int_eq(verify(a, tok, &id), AUTH_BAD_SIGNATURE);
	free(longer);
	free(tok);
	auth_free(a);
}
END_TEST

/* ---- structure ------------------------------------------------------- */

START_TEST(empty_and_missing)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;

	ck_assert_int_eq(auth_verify(a, "", 0, NOW, &id), AUTH_MISSING);
	ck_assert_int_eq(auth_verify(a, NULL, 0, NOW, &id), AUTH_MISSING);
	auth_free(a);
}
END_TEST

START_TEST(too_long)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	size_t big = 64 * 1024;
	char *tok = malloc(big + 1);
	char *good = sign_hs256(GOOD_CLAIMS);

	/* well-formed-looking parts, so only the length can refuse it */
	memset(tok, 'A', big);
	tok[100] = '.';
	tok[200] = '.';
	tok[big] = '\0';
	ck_assert_int_eq(auth_verify(a, tok, big, NOW, &id), AUTH_TOO_LONG);
	ck_assert_int_eq(auth_verify(a, tok, AUTH_TOKEN_MAX + 1, NOW, &id), AUTH_TOO_LONG);
	/* exactly the maximum is decoded (and fails for other reasons) */
	ck_assert_int_ne(auth_verify(a, tok, AUTH_TOKEN_MAX, NOW, &id), AUTH_TOO_LONG);
	ck_assert_int_eq(verify(a, good, &id), AUTH_OK);
	free(good);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(wrong_number_of_parts)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	char *tok = sign_hs256(GOOD_CLAIMS);
	char *four = malloc(strlen(tok) + 8);
	char *two = strdup(tok);

	*strrchr(two, '.') = '\0';
	ck_assert_int_eq(verify(a, two, &id), AUTH_MALFORMED);
	strcpy(four, tok);
	strcat(four, ".AAAA");
	ck_assert_int_eq(verify(a, four, &id), AUTH_MALFORMED);
	ck_assert_int_eq(verify(a, "abc", &id), AUTH_MALFORMED);
	ck_assert_int_eq(verify(a, "..", &id), AUTH_MALFORMED);
	ck_assert_int_eq(verify(a, "...", &id), AUTH_MALFORMED);
	free(two);
	free(four);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(malformed_base64)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	char *tok = sign_hs256(GOOD_CLAIMS);
	char *bad = malloc(strlen(tok) + 8);

	ck_assert_int_eq(verify(a, "!!!!.e30.AAAA", &id), AUTH_MALFORMED);
	/* standard base64 characters, padding, whitespace are not base64url */
	ck_assert_int_eq(verify(a, "eyJhbGciOiJIUzI1NiJ9.e30+.AAAA", &id), AUTH_MALFORMED);
	ck_assert_int_eq(verify(a, "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA", &id), AUTH_MALFORMED);
	ck_assert_int_eq(verify(a, "eyJhbGciOiJIUzI1NiJ9 .e30.AAAA", &id), AUTH_MALFORMED);
	/* a length that no encoding has (4n + 1) */
	ck_assert_int_eq(verify(a, "eyJhbGciOiJIUzI1NiJ9A.e30.AAAA", &id), AUTH_MALFORMED);
	/* non-zero unused bits: "e31" is not the canonical encoding of "{}" */
	ck_assert_int_eq(verify(a, "eyJhbGciOiJIUzI1NiJ9.e31.AAAA", &id), AUTH_MALFORMED);
	/* a NUL byte inside the given length */
	strcpy(bad, tok);
	bad[3] = '\0';
	ck_assert_int_eq(auth_verify(a, bad, strlen(tok), NOW, &id), AUTH_MALFORMED);
	free(bad);
	free(tok);
	auth_free(a);
}
END_TEST

START_TEST(malformed_json)
{
	auth_t *a = auth_for(CONF_ALG_HS256);
	struct auth_identity id;
	static const char *const headers[] = {
	    "{\"alg\":\"HS256\"",
	    "not json",
	    "[\"HS256\"]",
	    "\"HS256\"",
	    "",
	    "{\"alg\":\"HS256\"} x",
	    "{\"alg\":\"HS256\"}{}",
	};
	static const char *const payloads[] = {
	    "{\"sub\":\"alice\",\"exp\":1700000100", "[1,2]", "42", "", "{\"sub\":\"a\"}}",
	    "{\"sub\":'alice',\"exp\":1700000100}",
	};

	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *tok = craft(headers[i], GOOD_CLAIMS, EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(a, tok, &id) == AUTH_MALFORMED, "header %s", headers[i]);
		free(tok);
	}
	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
		char *tok =
		    craft("{\"alg\":\"HS256\"}", payloads[i], EVP_sha256(), secret256, NULL);

		ck_assert_msg(verify(a, tok, &id) == AUTH_MALFORMED, "payload %s", payloads[i]);
		free(tok);
	}
	auth_free(a);
}
END_TEST

/* ---- time claims ----------------------------------------------------- */

START_TEST(expired)
{
	struct auth_identity id;

	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1699999000}", &id), AUTH_EXPIRED);
	/* leeway 30 s: 31 s late is expired, 30 s late and 20 s late are not */
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1699999969}", &id), AUTH_EXPIRED);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1699999970}", &id), AUTH_OK);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1699999980}", &id), AUTH_OK);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":-1}", &id), AUTH_EXPIRED);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":0}", &id), AUTH_EXPIRED);
}
END_TEST

START_TEST(expired_no_leeway)
{
	struct conf c;
	struct auth_identity id;
	auth_t *a;
	char *tok = sign_hs256("{\"sub\":\"a\",\"exp\":1699999999}");

	conf_for(&c, CONF_ALG_HS256);
	c.jwt_leeway = 0;
	a = auth_or_die(&c);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_EXPIRED);
	ck_assert_int_eq(auth_verify(a, tok, strlen(tok), NOW - 1, &id), AUTH_OK);
	auth_free(a);
	free(tok);
}
END_TEST

/*
 * An absurd exp is accepted but clamped to the end of year 9999, so every
 * user of id.exp may compute (exp + leeway) * 1000 in milliseconds without
 * overflow (herald-fcgi's SSE deadline, herald-ws's expiry timer).
 */
START_TEST(exp_far_future)
{
	static const char *const huge[] = {
	    "{\"sub\":\"a\",\"exp\":9223372036854775807}",
	    "{\"sub\":\"a\",\"exp\":9223372036854776}",     /* * 1000 overflows */
	    "{\"sub\":\"a\",\"exp\":253402300800}",         /* year 10000 */
	};
	struct auth_identity id;

	for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		ck_assert_int_eq(hs_result(huge[i], &id), AUTH_OK);
		ck_assert_int_eq(id.exp, AUTH_EXP_MAX);
		ck_assert(id.exp <= (LLONG_MAX - 1000LL * 86400 * 365) / 1000);
	}
	ck_assert_int_eq(AUTH_EXP_MAX, 253402300799LL); /* 9999-12-31T23:59:59Z */
	/* at the bound and below: kept as sent */
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":253402300799}", &id), AUTH_OK);
	ck_assert_int_eq(id.exp, 253402300799LL);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":4102444800}", &id), AUTH_OK);
	ck_assert_int_eq(id.exp, 4102444800LL);
}
END_TEST

START_TEST(exp_missing_or_not_integer)
{
	struct auth_identity id;
	static const char *const claims[] = {
	    "{\"sub\":\"a\"}",
	    "{\"sub\":\"a\",\"exp\":1700000100.5}",
	    "{\"sub\":\"a\",\"exp\":1700000100.0}",
	    "{\"sub\":\"a\",\"exp\":1.7e9}",
	    "{\"sub\":\"a\",\"exp\":\"1700000100\"}",
	    "{\"sub\":\"a\",\"exp\":null}",
	    "{\"sub\":\"a\",\"exp\":true}",
	    "{\"sub\":\"a\",\"exp\":[1700000100]}",
	    "{\"sub\":\"a\",\"EXP\":1700000100}",
	};

	for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++)
		ck_assert_msg(hs_result(claims[i], &id) == AUTH_MISSING_EXP, "%s", claims[i]);
}
END_TEST

START_TEST(not_yet_valid)
{
	struct auth_identity id;

	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000031}", &id),
			 AUTH_NOT_YET_VALID);
	/* within the leeway */
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000030}", &id),
			 AUTH_OK);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000020}", &id),
			 AUTH_OK);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1600000000}", &id),
			 AUTH_OK);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1.5}", &id),
			 AUTH_MALFORMED);
	ck_assert_int_eq(hs_result("{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":\"0\"}", &id),
			 AUTH_MALFORMED);
}
END_TEST

/* ---- iss and aud ----------------------------------------------------- */

static int iss_aud_result(const char *iss, const char *aud, const char *grants)
{
	struct conf c;
	struct auth_identity id;
	char issbuf[64], audbuf[64];
	auth_t *a;
	char *tok = sign_hs256(grants);
	int rc;

	conf_for(&c, CONF_ALG_HS256);
	if (iss != NULL)
		c.jwt_issuer = strcpy(issbuf, iss);
	if (aud != NULL)
		c.jwt_audience = strcpy(audbuf, aud);
	a = auth_or_die(&c);
	rc = verify(a, tok, &id);
	auth_free(a);
	free(tok);
	return rc;
}

START_TEST(issuer)
{
	const char *iss = "https://app.example";

	ck_assert_int_eq(iss_aud_result(iss, NULL,
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"iss\":\"https://app.example\"}"),
			 AUTH_OK);
	ck_assert_int_eq(iss_aud_result(iss, NULL, "{\"sub\":\"a\",\"exp\":1700000100}"),
			 AUTH_BAD_ISSUER);
	ck_assert_int_eq(iss_aud_result(iss, NULL,
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"iss\":\"https://evil.example\"}"),
			 AUTH_BAD_ISSUER);
	ck_assert_int_eq(iss_aud_result(iss, NULL,
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"iss\":\"https://app.example/\"}"),
			 AUTH_BAD_ISSUER);
	ck_assert_int_eq(iss_aud_result(iss, NULL,
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"iss\":[\"https://app.example\"]}"),
			 AUTH_BAD_ISSUER);
	/* not configured: not checked */
	ck_assert_int_eq(
	    iss_aud_result(NULL, NULL, "{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"anyone\"}"),
	    AUTH_OK);
}
END_TEST

START_TEST(audience)
{
	ck_assert_int_eq(
	    iss_aud_result(NULL, "herald", "{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"herald\"}"),
	    AUTH_OK);
	ck_assert_int_eq(
	    iss_aud_result(NULL, "herald", "{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"other\"}"),
	    AUTH_BAD_AUDIENCE);
	ck_assert_int_eq(iss_aud_result(NULL, "herald", "{\"sub\":\"a\",\"exp\":1700000100}"),
			 AUTH_BAD_AUDIENCE);
	ck_assert_int_eq(iss_aud_result(NULL, "herald",
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"aud\":[\"api\",\"herald\"]}"),
			 AUTH_OK);
	ck_assert_int_eq(iss_aud_result(NULL, "herald",
					"{\"sub\":\"a\",\"exp\":1700000100,"
					"\"aud\":[\"api\",\"heraldx\",1]}"),
			 AUTH_BAD_AUDIENCE);
	ck_assert_int_eq(
	    iss_aud_result(NULL, "herald", "{\"sub\":\"a\",\"exp\":1700000100,\"aud\":[]}"),
	    AUTH_BAD_AUDIENCE);
	ck_assert_int_eq(
	    iss_aud_result(NULL, NULL, "{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"x\"}"),
	    AUTH_OK);
	ck_assert_int_eq(iss_aud_result("i", "herald",
					"{\"sub\":\"a\",\"exp\":1700000100,\"iss\":\"i\","
					"\"aud\":[\"herald\"]}"),
			 AUTH_OK);
}
END_TEST

/* ---- the user claim -------------------------------------------------- */

START_TEST(user_string_and_integer)
{
	struct auth_identity id;

	ck_assert_int_eq(hs_result("{\"sub\":\"user_1.a-B\",\"exp\":1700000100}", &id), AUTH_OK);
	ck_assert_str_eq(id.user, "user_1.a-B");
	ck_assert_int_eq(hs_result("{\"sub\":42,\"exp\":1700000100}", &id), AUTH_OK);
	ck_assert_str_eq(id.user, "42");
	ck_assert_int_eq(hs_result("{\"sub\":9007199254740993,\"exp\":1700000100}", &id), AUTH_OK);
	ck_assert_str_eq(id.user, "9007199254740993");
	ck_assert_int_eq(hs_result("{\"sub\":\"42\",\"exp\":1700000100}", &id), AUTH_OK);
	ck_assert_str_eq(id.user, "42");
}
END_TEST

START_TEST(user_missing)
{
	struct auth_identity id;

	ck_assert_int_eq(hs_result("{\"exp\":1700000100}", &id), AUTH_MISSING_USER);
	ck_assert_int_eq(hs_result("{\"user_id\":\"a\",\"exp\":1700000100}", &id),
			 AUTH_MISSING_USER);
	ck_assert_int_eq(hs_result("{\"sub\":null,\"exp\":1700000100}", &id), AUTH_MISSING_USER);
}
END_TEST

START_TEST(user_bad)
{
	struct auth_identity id;
	static const char *const claims[] = {
	    "{\"sub\":\"\",\"exp\":1700000100}",
	    "{\"sub\":\"a:b\",\"exp\":1700000100}",
	    "{\"sub\":\"a b\",\"exp\":1700000100}",
	    "{\"sub\":\"../x\",\"exp\":1700000100}",
	    "{\"sub\":\"a/b\",\"exp\":1700000100}",
	    "{\"sub\":\"caf\xc3\xa9\",\"exp\":1700000100}",
	    "{\"sub\":\"caf\\u00e9\",\"exp\":1700000100}",
	    "{\"sub\":\"a*\",\"exp\":1700000100}",
	    "{\"sub\":\"a\\nb\",\"exp\":1700000100}",
	    "{\"sub\":1.5,\"exp\":1700000100}",
	    "{\"sub\":true,\"exp\":1700000100}",
	    "{\"sub\":[\"a\"],\"exp\":1700000100}",
	    "{\"sub\":{\"id\":\"a\"},\"exp\":1700000100}",
	    "{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
	    "\"exp\":1700000100}",
	};

	for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
		char *tok = craft("{\"alg\":\"HS256\"}", claims[i], EVP_sha256(), secret256, NULL);
		auth_t *a = auth_for(CONF_ALG_HS256);

		ck_assert_msg(verify(a, tok, &id) == AUTH_BAD_USER, "%s", claims[i]);
		auth_free(a);
		free(tok);
	}
}
END_TEST

START_TEST(user_64_chars)
{
	struct auth_identity id;
	const char *u64 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

	ck_assert_int_eq(strlen(u64), 64);
	ck_assert_int_eq(hs_result("{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				   "aaaaaaaaaaaaaaaa\",\"exp\":1700000100}",
				   &id),
			 AUTH_OK);
	ck_assert_str_eq(id.user, u64);
}
END_TEST

START_TEST(user_custom_claim)
{
	struct conf c;
	struct auth_identity id;
	char claim[] = "user_id";
	auth_t *a;
	char *tok = sign_hs256("{\"sub\":\"x\",\"user_id\":7,\"exp\":1700000100}");
	char *nosub = sign_hs256("{\"sub\":\"x\",\"exp\":1700000100}");

	conf_for(&c, CONF_ALG_HS256);
	c.jwt_user_claim = claim;
	a = auth_or_die(&c);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	ck_assert_str_eq(id.user, "7");
	ck_assert_int_eq(verify(a, nosub, &id), AUTH_MISSING_USER);
	auth_free(a);
	/* NULL claim means "sub" */
	c.jwt_user_claim = NULL;
	a = auth_or_die(&c);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	ck_assert_str_eq(id.user, "x");
	auth_free(a);
	free(tok);
	free(nosub);
}
END_TEST

START_TEST(user_valid)
{
	ck_assert_int_eq(auth_user_valid("abc", 3), 1);
	ck_assert_int_eq(auth_user_valid("A-Z_a.z-09", 10), 1);
	ck_assert_int_eq(auth_user_valid("", 0), 0);
	ck_assert_int_eq(auth_user_valid(NULL, 0), 0);
	ck_assert_int_eq(auth_user_valid("a:b", 3), 0);
	ck_assert_int_eq(auth_user_valid("a\0b", 3), 0);
	ck_assert_int_eq(auth_user_valid("ab", 1), 1);
	ck_assert_int_eq(auth_user_valid("{x}", 3), 0);
}
END_TEST

/* ---- reasons --------------------------------------------------------- */

START_TEST(reasons)
{
	ck_assert_str_eq(auth_reason(AUTH_OK), "ok");
	ck_assert_str_eq(auth_reason(AUTH_MISSING), "missing");
	ck_assert_str_eq(auth_reason(AUTH_TOO_LONG), "too_long");
	ck_assert_str_eq(auth_reason(AUTH_MALFORMED), "malformed");
	ck_assert_str_eq(auth_reason(AUTH_BAD_ALG), "bad_algorithm");
	ck_assert_str_eq(auth_reason(AUTH_BAD_SIGNATURE), "bad_signature");
	ck_assert_str_eq(auth_reason(AUTH_EXPIRED), "expired");
	ck_assert_str_eq(auth_reason(AUTH_NOT_YET_VALID), "not_yet_valid");
	ck_assert_str_eq(auth_reason(AUTH_MISSING_EXP), "missing_exp");
	ck_assert_str_eq(auth_reason(AUTH_BAD_ISSUER), "bad_issuer");
	ck_assert_str_eq(auth_reason(AUTH_BAD_AUDIENCE), "bad_audience");
	ck_assert_str_eq(auth_reason(AUTH_MISSING_USER), "missing_user");
	ck_assert_str_eq(auth_reason(AUTH_BAD_USER), "bad_user");
	ck_assert_str_eq(auth_reason(AUTH_INTERNAL), "internal");
	ck_assert_str_eq(auth_reason(-999), "internal");
}
END_TEST

/* ---- auth_new -------------------------------------------------------- */

static int new_result(const struct conf *c, char *err, size_t errlen)
{
	auth_t *a = NULL;
	int rc = auth_new(&a, c, err, errlen);

	ck_assert(rc == 0 ? a != NULL : a == NULL);
	auth_free(a);
	return rc;
}

START_TEST(new_missing_key_file)
{
	struct conf c;
	char err[256];
	char path[] = "/nonexistent/herald/key.pem";

	conf_for(&c, CONF_ALG_RS256);
	c.jwt_key_file = path;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_IO);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
	/* the same for a secret file */
	conf_for(&c, CONF_ALG_HS256);
	c.jwt_secret = NULL;
	c.jwt_key_file = path;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_IO);
	ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(new_bad_pem)
{
	struct conf c;
	char err[256];
	char path[64];
	static const char *const bad[] = {
	    "garbage\n", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	    TEST_RSA_PRIV, /* a private key is not what we verify with */
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_temp(path, sizeof path, bad[i]);
		conf_for(&c, CONF_ALG_RS256);
		c.jwt_key_file = path;
		ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
		ck_assert_ptr_nonnull(strstr(err, path));
		unlink(path);
	}
	/* an empty key file */
	write_temp(path, sizeof path, "");
	c.jwt_key_file = path;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	unlink(path);
}
END_TEST

START_TEST(new_key_type_mismatch)
{
	struct conf c;
	char err[256];

	conf_for(&c, CONF_ALG_RS256);
	c.jwt_key_file = ec_pub_path;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "RSA"));
	conf_for(&c, CONF_ALG_ES256);
	c.jwt_key_file = rsa_pub_path;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "EC"));
	/* no key file at all */
	c.jwt_key_file = NULL;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "jwt_key_file"));
}
END_TEST

START_TEST(new_empty_secret)
{
	struct conf c;
	char err[256];
	char empty[] = "";

	conf_for(&c, CONF_ALG_HS256);
	c.jwt_secret = empty;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "jwt_secret"));
	c.jwt_secret = NULL;
	ck_assert_int_eq(new_result(&c, err, sizeof err), HERR_INVAL);
	ck_assert_ptr_nonnull(strstr(err, "jwt_secret"));
	/* a short secret is allowed (refusing it is conf_validate's business) */
	c.jwt_secret = claim_sub;
	ck_assert_int_eq(new_result(&c, err, sizeof err), 0);
	/* a tiny errlen still gives a NUL-terminated message */
	c.jwt_secret = empty;
	ck_assert_int_eq(new_result(&c, err, 4), HERR_INVAL);
	ck_assert_int_eq(strlen(err), 3);
}
END_TEST

START_TEST(new_secret_file)
{
	struct conf c;
	struct auth_identity id;
	char path[64], text[64];
	auth_t *a;
	char *tok = sign_hs256(GOOD_CLAIMS);

	/* the trailing newline is not part of the secret */
	snprintf(text, sizeof text, "%s\n", secret256);
	write_temp(path, sizeof path, text);
	conf_for(&c, CONF_ALG_HS256);
	c.jwt_secret = NULL;
	c.jwt_key_file = path;
	a = auth_or_die(&c);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	auth_free(a);
	unlink(path);
	/* jwt_secret wins over the file */
	write_temp(path, sizeof path, "some other secret");
	c.jwt_secret = secret256;
	a = auth_or_die(&c);
	ck_assert_int_eq(verify(a, tok, &id), AUTH_OK);
	auth_free(a);
	unlink(path);
	/* a file holding only a newline is an empty secret */
	write_temp(path, sizeof path, "\n");
	c.jwt_secret = NULL;
	ck_assert_int_eq(new_result(&c, text, sizeof text), HERR_INVAL);
	unlink(path);
	free(tok);
}
END_TEST

/* ---- concurrency ----------------------------------------------------- */

struct worker {
	const auth_t *a;
	const char *tok;
	int failures;
};

static void *verify_many(void *arg)
{
	struct worker *w = arg;
	struct auth_identity id;

	for (int i = 0; i < 200; i++)
		if (verify(w->a, w->tok, &id) != AUTH_OK || strcmp(id.user, "alice") != 0)
			w->failures++;
	return NULL;
}

START_TEST(threads_share_one_auth)
{
	auth_t *hs = auth_for(CONF_ALG_HS256);
	auth_t *rs = auth_for(CONF_ALG_RS256);
	char *ths = sign_hs256(GOOD_CLAIMS);
	char *trs = sign(JWT_ALG_RS256, TEST_RSA_PRIV, GOOD_CLAIMS);
	struct worker w[4];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		w[i].a = i % 2 ? hs : rs;
		w[i].tok = i % 2 ? ths : trs;
		w[i].failures = 0;
		ck_assert_int_eq(pthread_create(&t[i], NULL, verify_many, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(w[i].failures, 0);
	}
	free(ths);
	free(trs);
	auth_free(hs);
	auth_free(rs);
}
END_TEST

/* ---- auth_find_token ------------------------------------------------- */

/* Which source the token came from: herald-ws holds a cookie's to its Origin. */
START_TEST(find_source)
{
	enum auth_source from = AUTH_FROM_QUERY;
	char out[64], small[3];

	ck_assert_int_eq(auth_find_token_from("Bearer hdr", "token=q", "t=ck", "t", out, sizeof out,
					      &from),
			 AUTH_OK);
	ck_assert_int_eq(from, AUTH_FROM_HEADER);
	ck_assert_int_eq(auth_find_token_from(NULL, "token=q", "t=ck", "t", out, sizeof out, &from),
			 AUTH_OK);
	ck_assert_int_eq(from, AUTH_FROM_QUERY);
	ck_assert_int_eq(auth_find_token_from(NULL, "a=1", "t=ck", "t", out, sizeof out, &from),
			 AUTH_OK);
	ck_assert_int_eq(from, AUTH_FROM_COOKIE);
	ck_assert_str_eq(out, "ck");
	ck_assert_int_eq(auth_find_token_from(NULL, NULL, "t=long", "t", small, sizeof small, &from),
			 AUTH_TOO_LONG);
	ck_assert_int_eq(from, AUTH_FROM_COOKIE);
	ck_assert_int_eq(auth_find_token_from(NULL, "token=a%zz", "t=ck", "t", out, sizeof out,
					      &from),
			 AUTH_MALFORMED);
	ck_assert_int_eq(from, AUTH_FROM_QUERY);
	ck_assert_int_eq(auth_find_token_from(NULL, "a=1", "x=1", "t", out, sizeof out, &from),
			 AUTH_MISSING);
	ck_assert_int_eq(from, AUTH_FROM_NONE);
	ck_assert_int_eq(auth_find_token_from(NULL, NULL, "t=ck", "t", out, sizeof out, NULL),
			 AUTH_OK);
}
END_TEST

START_TEST(find_order)
{
	char out[64];

	ck_assert_int_eq(auth_find_token("Bearer hdr", "token=qry", "herald_token=ck",
					 "herald_token", out, sizeof out),
			 AUTH_OK);
	ck_assert_str_eq(out, "hdr");
	ck_assert_int_eq(
	    auth_find_token(NULL, "token=qry", "herald_token=ck", "herald_token", out, sizeof out),
	    AUTH_OK);
	ck_assert_str_eq(out, "qry");
	ck_assert_int_eq(
	    auth_find_token(NULL, "a=1", "herald_token=ck", "herald_token", out, sizeof out),
	    AUTH_OK);
	ck_assert_str_eq(out, "ck");
	ck_assert_int_eq(auth_find_token(NULL, NULL, NULL, NULL, out, sizeof out), AUTH_MISSING);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(auth_find_token(NULL, "a=1", "x=1", "herald_token", out, sizeof out),
			 AUTH_MISSING);
	/* no cookie name: the cookie is not looked at */
	ck_assert_int_eq(auth_find_token(NULL, NULL, "herald_token=ck", NULL, out, sizeof out),
			 AUTH_MISSING);
}
END_TEST

START_TEST(find_bearer_forms)
{
	char out[64];

	ck_assert_int_eq(auth_find_token("bearer abc", NULL, NULL, NULL, out, sizeof out), AUTH_OK);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(auth_find_token("BEARER    abc  ", NULL, NULL, NULL, out, sizeof out),
			 AUTH_OK);
	ck_assert_str_eq(out, "abc");
	/* no space, another scheme, empty credentials: as if absent */
	ck_assert_int_eq(auth_find_token("Bearerabc", "token=q", NULL, NULL, out, sizeof out),
			 AUTH_OK);
	ck_assert_str_eq(out, "q");
	ck_assert_int_eq(auth_find_token("Basic YTpi", "token=q", NULL, NULL, out, sizeof out),
			 AUTH_OK);
	ck_assert_str_eq(out, "q");
	ck_assert_int_eq(auth_find_token("Bearer ", "token=q", NULL, NULL, out, sizeof out),
			 AUTH_OK);
	ck_assert_str_eq(out, "q");
	ck_assert_int_eq(auth_find_token("Bearer", NULL, NULL, NULL, out, sizeof out),
			 AUTH_MISSING);
	ck_assert_int_eq(auth_find_token("", NULL, NULL, NULL, out, sizeof out), AUTH_MISSING);
}
END_TEST

START_TEST(find_empty_values)
{
	char out[64];

	ck_assert_int_eq(auth_find_token(NULL, "token=", "t=ck", "t", out, sizeof out), AUTH_OK);
	ck_assert_str_eq(out, "ck");
	ck_assert_int_eq(auth_find_token(NULL, "token", "t=", "t", out, sizeof out), AUTH_MISSING);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(find_query_decoding)
{
	char out[64];

	ck_assert_int_eq(
	    auth_find_token(NULL, "since=1&token=a%2Eb.c", NULL, NULL, out, sizeof out), AUTH_OK);
	ck_assert_str_eq(out, "a.b.c");
	ck_assert_int_eq(auth_find_token(NULL, "token=a%zz", "t=ck", "t", out, sizeof out),
			 AUTH_MALFORMED);
}
END_TEST

START_TEST(find_too_long)
{
	char out[4];

	ck_assert_int_eq(auth_find_token("Bearer abc", NULL, NULL, NULL, out, sizeof out), AUTH_OK);
	ck_assert_int_eq(auth_find_token("Bearer abcd", "token=a", NULL, NULL, out, sizeof out),
			 AUTH_TOO_LONG);
	ck_assert_int_eq(auth_find_token(NULL, "token=abcd", "t=a", "t", out, sizeof out),
			 AUTH_TOO_LONG);
	ck_assert_int_eq(auth_find_token(NULL, NULL, "t=abcd", "t", out, sizeof out),
			 AUTH_TOO_LONG);
}
END_TEST

/* iat and jti, kept for revocation (src/revoke.h); a bad one is no error. */
START_TEST(identity_iat_jti)
{
	struct auth_identity id;
	char long_jti[AUTH_JTI_MAX + 40], grants[AUTH_JTI_MAX + 120];

	ck_assert_int_eq(hs_result("{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":1699990000,"
				   "\"jti\":\"3f2c-a1:b/x\"}",
				   &id),
			 AUTH_OK);
	ck_assert_int_eq(id.iat, 1699990000);
	ck_assert_str_eq(id.jti, "3f2c-a1:b/x");
	/* absent */
	memset(&id, 0x55, sizeof id);
	ck_assert_int_eq(hs_result(GOOD_CLAIMS, &id), AUTH_OK);
	ck_assert_int_eq(id.iat, 0);
	ck_assert_str_eq(id.jti, "");
	/* of another type, or a jti Herald cannot keep: the token is still good */
	ck_assert_int_eq(hs_result("{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":\"x\","
				   "\"jti\":7}",
				   &id),
			 AUTH_OK);
	ck_assert_int_eq(id.iat, 0);
	ck_assert_str_eq(id.jti, "");
	ck_assert_int_eq(hs_result("{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":1.5,"
				   "\"jti\":\"has space\"}",
				   &id),
			 AUTH_OK);
	ck_assert_int_eq(id.iat, 0);
	ck_assert_str_eq(id.jti, "");
	ck_assert_int_eq(hs_result("{\"sub\":\"alice\",\"exp\":1700000100,\"jti\":\"\\u00e9\"}", &id),
			 AUTH_OK);
	ck_assert_str_eq(id.jti, "");
	memset(long_jti, 'j', sizeof long_jti - 1);
	long_jti[AUTH_JTI_MAX + 1] = '\0';
	snprintf(grants, sizeof grants, "{\"sub\":\"a\",\"exp\":1700000100,\"jti\":\"%s\"}",
		 long_jti);
	ck_assert_int_eq(hs_result(grants, &id), AUTH_OK);
	ck_assert_str_eq(id.jti, "");
	long_jti[AUTH_JTI_MAX] = '\0';
	snprintf(grants, sizeof grants, "{\"sub\":\"a\",\"exp\":1700000100,\"jti\":\"%s\"}",
		 long_jti);
	ck_assert_int_eq(hs_result(grants, &id), AUTH_OK);
	ck_assert_str_eq(id.jti, long_jti);
	ck_assert_int_eq(auth_jti_valid("a", 1), 1);
	ck_assert_int_eq(auth_jti_valid("", 0), 0);
	ck_assert_int_eq(auth_jti_valid("a\x7f", 2), 0);
	ck_assert_str_eq(auth_reason(AUTH_REVOKED), "revoked");
	ck_assert_str_eq(auth_reason(AUTH_BAD_TICKET), "bad_ticket");
}
END_TEST

Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("verify");
	TCase *tn = tcase_create("new");
	TCase *tf = tcase_create("find");

	tcase_add_checked_fixture(tc, keys_setup, keys_teardown);
	tcase_add_test(tc, accept_hmac);
	tcase_add_test(tc, identity_iat_jti);
	tcase_add_test(tc, accept_rs256);
	tcase_add_test(tc, accept_es256);
	tcase_add_test(tc, accept_hand_crafted);
	tcase_add_test(tc, known_headers);
	tcase_add_test(tc, typ_not_jwt);
	tcase_add_test(tc, pkey_hand_crafted);
	tcase_add_test(tc, claims_not_json);
	tcase_add_test(tc, claims_json_unusual);
	tcase_add_test(tc, token_not_nul_terminated);
	tcase_add_test(tc, alg_none);
	tcase_add_test(tc, alg_missing_or_not_string);
	tcase_add_test(tc, hs_rs_confusion);
	tcase_add_test(tc, wrong_alg);
	tcase_add_test(tc, wrong_key_hmac);
	tcase_add_test(tc, wrong_key_rsa);
	tcase_add_test(tc, tampered);
	tcase_add_test(tc, hmac_signature_lengths);
	tcase_add_test(tc, empty_and_missing);
	tcase_add_test(tc, too_long);
	tcase_add_test(tc, wrong_number_of_parts);
	tcase_add_test(tc, malformed_base64);
	tcase_add_test(tc, malformed_json);
	tcase_add_test(tc, expired);
	tcase_add_test(tc, expired_no_leeway);
	tcase_add_test(tc, exp_far_future);
	tcase_add_test(tc, exp_missing_or_not_integer);
	tcase_add_test(tc, not_yet_valid);
	tcase_add_test(tc, issuer);
	tcase_add_test(tc, audience);
	tcase_add_test(tc, user_string_and_integer);
	tcase_add_test(tc, user_missing);
	tcase_add_test(tc, user_bad);
	tcase_add_test(tc, user_64_chars);
	tcase_add_test(tc, user_custom_claim);
	tcase_add_test(tc, user_valid);
	tcase_add_test(tc, reasons);
	tcase_add_test(tc, threads_share_one_auth);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tn, keys_setup, keys_teardown);
	tcase_add_test(tn, new_missing_key_file);
	tcase_add_test(tn, new_bad_pem);
	tcase_add_test(tn, new_key_type_mismatch);
	tcase_add_test(tn, new_empty_secret);
	tcase_add_test(tn, new_secret_file);
	suite_add_tcase(s, tn);

	tcase_add_test(tf, find_order);
	tcase_add_test(tf, find_source);
	tcase_add_test(tf, find_bearer_forms);
	tcase_add_test(tf, find_empty_values);
	tcase_add_test(tf, find_query_decoding);
	tcase_add_test(tf, find_too_long);
	suite_add_tcase(s, tf);
	return s;
}
