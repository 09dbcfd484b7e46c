#include "config.h"

#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "err.h"
#include "http.h"
#include "jsonv.h"

/* A key file is a PEM public key or a secret: anything larger is a mistake. */
#define AUTH_KEY_FILE_MAX (1024 * 1024)
/* Header and claims are flat objects; deeper nesting is refused early. */
#define AUTH_JSON_DEPTH 16
#define AUTH_KNOWN_HDRS 3
#define AUTH_HDR_ENC_MAX 48 /* base64url of the longest known header (27 bytes: 36) */

struct auth {
	enum conf_alg alg;
	const char *alg_name; /* "HS256"...: what the header's alg must say */
	const EVP_MD *md;     /* HS*: the HMAC digest; NULL for RS256/ES256 */
	EVP_MAC_CTX *hmac;    /* HS*: keyed once; each check works on a copy */
	EVP_PKEY *pkey;	      /* RS256/ES256: the parsed public key; else NULL */
	unsigned char *key;   /* HS*: the secret; RS256/ES256: the PEM text */
	size_t keylen;
	char *user_claim;
	char *issuer;	/* NULL: not checked */
	char *audience; /* NULL: not checked */
	long long leeway;
	/* The header segments most issuers write, base64url-encoded
	 * ({"alg":A,"typ":"JWT"}, {"typ":"JWT","alg":A}, {"alg":A}): a token
	 * whose header is byte for byte one of these passes the header check
	 * without a decode and a JSON parse (the full check would accept the
	 * same bytes). */
	char known_hdr[AUTH_KNOWN_HDRS][AUTH_HDR_ENC_MAX];
	size_t known_hdr_len[AUTH_KNOWN_HDRS];
};

/* ---- base64url ------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url (RFC 7515 section 2): no '=', no whitespace, and
 * the unused low bits of the last character must be zero, so that one byte
 * string has exactly one encoding.  out needs room for len * 3 / 4 bytes.
 * Returns the decoded length or -1.
 */
static long b64url_decode(const char *s, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, n = 0;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)n;
}

size_t auth_b64url_encode(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
		out[o++] = abc[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* ---- helpers ---------------------------------------------------------- */

static const char *errno_text(int e, char *buf, size_t len)
{
	/* GNU strerror_r (_GNU_SOURCE): returns the text, maybe not in buf. */
	return strerror_r(e, buf, len);
}

static int read_file(const char *path, unsigned char **out, size_t *outlen, char *err,
		     size_t errlen)
{
	char ebuf[128];
	unsigned char *buf = NULL;
	size_t n = 0, cap = 0;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "jwt_key_file %s: %s", path,
			 errno_text(e, ebuf, sizeof ebuf));
		return HERR_IO;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			unsigned char *nb;

			if (cap > AUTH_KEY_FILE_MAX) {
				snprintf(err, errlen, "jwt_key_file %s: larger than %d bytes", path,
					 AUTH_KEY_FILE_MAX);
				free(buf);
				close(fd);
				return HERR_INVAL;
			}
			cap = cap == 0 ? 4096 : cap * 2;
			nb = realloc(buf, cap + 1);
			if (nb == NULL) {
				snprintf(err, errlen, "jwt_key_file %s: out of memory", path);
				free(buf);
				close(fd);
				return HERR_NOMEM;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			snprintf(err, errlen, "jwt_key_file %s: %s", path,
				 errno_text(e, ebuf, sizeof ebuf));
			free(buf);
			close(fd);
			return HERR_IO;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return 0;
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	*dst = strdup(src);
	return *dst == NULL ? HERR_NOMEM : 0;
}

/* Parse the PEM now so a bad key fails at start-up, not on every request. */
static int load_public_key(auth_t *a, const char *path, char *err, size_t errlen)
{
	BIO *bio = BIO_new_mem_buf(a->key, (int)a->keylen);
	EVP_PKEY *pkey;
	int rc = 0;

	if (bio == NULL) {
		snprintf(err, errlen, "jwt_key_file %s: out of memory", path);
		return HERR_NOMEM;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		snprintf(err, errlen, "jwt_key_file %s: not a PEM public key", path);
		rc = HERR_INVAL;
	} else if (a->alg == CONF_ALG_RS256 && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "jwt_key_file %s: not an RSA public key (jwt_alg RS256)",
			 path);
		rc = HERR_INVAL;
	} else if (a->alg == CONF_ALG_ES256 &&
		   (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC || EVP_PKEY_get_bits(pkey) != 256)) {
		snprintf(err, errlen, "jwt_key_file %s: not an EC P-256 public key (jwt_alg ES256)",
			 path);
		rc = HERR_INVAL;
	}
	if (rc == 0)
		a->pkey = pkey;
	else
		EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

/* ---- auth_new --------------------------------------------------------- */

/*
 * Key the HMAC once: OpenSSL's one-shot HMAC() fetches the algorithm and
 * hashes the key's pads on every call, a third of a token check.  A copy
 * of the keyed context starts where the pads left off.
 */
static int hmac_prepare(auth_t *a)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	OSSL_PARAM params[2];
	int ok;

	if (mac == NULL)
		return HERR_NOMEM;
	a->hmac = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac); /* the context holds its own reference */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)EVP_MD_get0_name(a->md), 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = a->hmac != NULL && EVP_MAC_init(a->hmac, a->key, a->keylen, params) == 1;
	ERR_clear_error();
	return ok ? 0 : HERR_INVAL;
}

/* a->known_hdr: the header segments of the common header forms for a->alg_name. */
static void known_headers(struct auth *a)
{
	static const char *const form[AUTH_KNOWN_HDRS][2] = {
	    {"{\"alg\":\"", "\",\"typ\":\"JWT\"}"},
	    {"{\"typ\":\"JWT\",\"alg\":\"", "\"}"},
	    {"{\"alg\":\"", "\"}"},
	};

	for (size_t k = 0; k < AUTH_KNOWN_HDRS; k++) {
		char json[(AUTH_HDR_ENC_MAX / 4) * 3];
		int n = snprintf(json, sizeof json, "%s%s%s", form[k][0], a->alg_name, form[k][1]);

		a->known_hdr_len[k] = n > 0 && (size_t)n < sizeof json
					      ? auth_b64url_encode((const unsigned char *)json,
								   (size_t)n, a->known_hdr[k])
					      : 0;
	}
}

int auth_new(auth_t **out, const struct conf *c, char *err, size_t errlen)
{
	const char *source;
	auth_t *a;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	a = calloc(1, sizeof *a);
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return HERR_NOMEM;
	}
	a->alg = c->jwt_alg;
	switch (c->jwt_alg) {
	case CONF_ALG_HS256:
		a->alg_name = "HS256", a->md = EVP_sha256();
		break;
	case CONF_ALG_HS384:
		a->alg_name = "HS384", a->md = EVP_sha384();
		break;
	case CONF_ALG_HS512:
		a->alg_name = "HS512", a->md = EVP_sha512();
		break;
	case CONF_ALG_RS256:
		a->alg_name = "RS256";
		break;
	case CONF_ALG_ES256:
		a->alg_name = "ES256";
		break;
	default:
		snprintf(err, errlen, "jwt_alg: unsupported algorithm");
		rc = HERR_INVAL;
		goto fail;
	}
	known_headers(a);
	/* Bounded so that now + leeway cannot overflow. */
	a->leeway = c->jwt_leeway < 0 ? 0 : c->jwt_leeway > INT32_MAX ? INT32_MAX : c->jwt_leeway;

	if (a->md != NULL && c->jwt_secret != NULL) {
		source = "jwt_secret";
		a->keylen = strlen(c->jwt_secret);
		a->key = (unsigned char *)strdup(c->jwt_secret);
		if (a->key == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = HERR_NOMEM;
			goto fail;
		}
	} else if (c->jwt_key_file != NULL) {
		source = c->jwt_key_file;
		rc = read_file(c->jwt_key_file, &a->key, &a->keylen, err, errlen);
		if (rc != 0)
			goto fail;
		/* Secret files are written by editors and echo: the final
		 * newline is not part of the secret. */
		while (a->md != NULL && a->keylen > 0 &&
		       (a->key[a->keylen - 1] == '\n' || a->key[a->keylen - 1] == '\r'))
			a->key[--a->keylen] = '\0';
	} else {
		snprintf(err, errlen,
			 a->md != NULL ? "jwt_secret or jwt_key_file is required for %s"
				       : "jwt_key_file is required for %s",
			 a->alg_name);
		rc = HERR_INVAL;
		goto fail;
	}
	if (a->keylen == 0) {
		snprintf(err, errlen, "%s%s: empty",
			 source == c->jwt_key_file ? "jwt_key_file " : "", source);
		rc = HERR_INVAL;
		goto fail;
	}
	if (a->keylen > INT_MAX) {
		snprintf(err, errlen, "jwt key too large");
		rc = HERR_INVAL;
		goto fail;
	}
	if (a->md == NULL) {
		rc = load_public_key(a, c->jwt_key_file, err, errlen);
		if (rc != 0)
			goto fail;
	} else if ((rc = hmac_prepare(a)) != 0) {
		snprintf(err, errlen, "OpenSSL cannot set up HMAC-%s", EVP_MD_get0_name(a->md));
		goto fail;
	}
	if (dup_opt(&a->user_claim, c->jwt_user_claim != NULL ? c->jwt_user_claim : "sub") ||
	    dup_opt(&a->issuer, c->jwt_issuer) || dup_opt(&a->audience, c->jwt_audience)) {
		snprintf(err, errlen, "out of memory");
		rc = HERR_NOMEM;
		goto fail;
	}
	*out = a;
	return 0;
fail:
	auth_free(a);
	return rc;
}

void auth_free(auth_t *a)
{
	if (a == NULL)
		return;
	if (a->key != NULL) {
		OPENSSL_cleanse(a->key, a->keylen);
		free(a->key);
	}
	EVP_PKEY_free(a->pkey);
	EVP_MAC_CTX_free(a->hmac);
	free(a->user_claim);
	free(a->issuer);
	free(a->audience);
	free(a);
}

/* ---- auth_verify ------------------------------------------------------ */

/*
 * Parse len bytes as one JSON object and nothing after it: RFC 8259 and
 * UTF-8 first (jsonv: json-c's strict mode takes NaN, single quotes, raw
 * control characters), then json-c for the values.  Returns AUTH_OK,
 * AUTH_MALFORMED or AUTH_INTERNAL.
 */
static int parse_object(const unsigned char *s, size_t len, json_object **out)
{
	json_tokener *tok;
	json_object *obj;
	int rc = AUTH_OK;

	*out = NULL;
	if (len == 0 || len > INT_MAX)
		return AUTH_MALFORMED;
	if (jsonv_validate((const char *)s, len, AUTH_JSON_DEPTH, NULL) != 0)
		return AUTH_MALFORMED;
	tok = json_tokener_new_ex(AUTH_JSON_DEPTH);
	if (tok == NULL)
		return AUTH_INTERNAL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, (const char *)s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		obj = NULL;
		rc = AUTH_MALFORMED;
	}
	json_tokener_free(tok);
	*out = obj;
	return rc;
}

static int json_string_equal(json_object *v, const char *want)
{
	size_t n = strlen(want);

	return json_object_is_type(v, json_type_string) &&
	       (size_t)json_object_get_string_len(v) == n &&
	       memcmp(json_object_get_string(v), want, n) == 0;
}

static int check_audience(const auth_t *a, json_object *claims)
{
	json_object *aud;
	size_t i, n;

	if (!json_object_object_get_ex(claims, "aud", &aud))
		return AUTH_BAD_AUDIENCE;
	if (json_string_equal(aud, a->audience))
		return AUTH_OK;
	if (!json_object_is_type(aud, json_type_array))
		return AUTH_BAD_AUDIENCE;
	n = json_object_array_length(aud);
	for (i = 0; i < n; i++)
		if (json_string_equal(json_object_array_get_idx(aud, i), a->audience))
			return AUTH_OK;
	return AUTH_BAD_AUDIENCE;
}

static int check_claims(const auth_t *a, json_object *claims, time_t now, struct auth_identity *id)
{
	long long t = (long long)now;
	json_object *v;
	int64_t exp;

	if (!json_object_object_get_ex(claims, "exp", &v) || !json_object_is_type(v, json_type_int))
		return AUTH_MISSING_EXP;
	exp = json_object_get_int64(v);
	/* now - leeway, not exp + leeway: exp is the attacker's number. */
	if (t - a->leeway > exp)
		return AUTH_EXPIRED;
	/* Valid "forever": clamped, so exp * 1000 (ms) cannot overflow anywhere. */
	if (exp > AUTH_EXP_MAX)
		exp = AUTH_EXP_MAX;
	if (json_object_object_get_ex(claims, "nbf", &v)) {
		if (!json_object_is_type(v, json_type_int))
			return AUTH_MALFORMED;
		if (t + a->leeway < json_object_get_int64(v))
			return AUTH_NOT_YET_VALID;
	}
	if (a->issuer != NULL &&
	    (!json_object_object_get_ex(claims, "iss", &v) || !json_string_equal(v, a->issuer)))
		return AUTH_BAD_ISSUER;
	if (a->audience != NULL && check_audience(a, claims) != AUTH_OK)
		return AUTH_BAD_AUDIENCE;

	if (!json_object_object_get_ex(claims, a->user_claim, &v) || v == NULL)
		return AUTH_MISSING_USER;
	if (json_object_is_type(v, json_type_int)) {
		snprintf(id->user, sizeof id->user, "%" PRId64, json_object_get_int64(v));
	} else if (json_object_is_type(v, json_type_string)) {
		size_t n = (size_t)json_object_get_string_len(v);

		if (!auth_user_valid(json_object_get_string(v), n))
			return AUTH_BAD_USER;
		memcpy(id->user, json_object_get_string(v), n);
		id->user[n] = '\0';
	} else {
		return AUTH_BAD_USER;
	}
	id->exp = exp;
	/* iat and jti only serve revocation: a bad one is not a bad token. */
	id->iat = 0;
	if (json_object_object_get_ex(claims, "iat", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) > 0)
		id->iat = json_object_get_int64(v);
	id->jti[0] = '\0';
	if (json_object_object_get_ex(claims, "jti", &v) && json_object_is_type(v, json_type_string)) {
		size_t n = (size_t)json_object_get_string_len(v);

		if (auth_jti_valid(json_object_get_string(v), n)) {
			memcpy(id->jti, json_object_get_string(v), n);
			id->jti[n] = '\0';
		}
	}
	return AUTH_OK;
}

/*
 * Recompute the HMAC of "header.payload" and compare it, encoded, with the
 * signature part in constant time.
 */
static int check_hmac(const auth_t *a, const char *token, size_t signed_len, const char *sig,
		      size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	char enc[(EVP_MAX_MD_SIZE + 2) / 3 * 4 + 1];
	size_t maclen = 0, enclen;
	/* a copy: the keyed context is shared by every thread, read only */
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(a->hmac);
	int ok = ctx != NULL &&
		 EVP_MAC_update(ctx, (const unsigned char *)token, signed_len) == 1 &&
		 EVP_MAC_final(ctx, mac, &maclen, sizeof mac) == 1;

	EVP_MAC_CTX_free(ctx);
	if (!ok) {
		ERR_clear_error();
		return AUTH_INTERNAL;
	}
	enclen = auth_b64url_encode(mac, maclen, enc);
	OPENSSL_cleanse(mac, sizeof mac);
	/* The length of an HMAC is public; only the bytes need constant time. */
	if (enclen != siglen || CRYPTO_memcmp(enc, sig, siglen) != 0)
		return AUTH_BAD_SIGNATURE;
	return AUTH_OK;
}

/*
 * Verify an RS256 or ES256 signature (sig, siglen base64url characters)
 * over data with the key parsed at start-up.  buf has room for the decoded
 * signature.  ES256 signatures are raw r || s (RFC 7518 section 3.4):
 * OpenSSL wants DER.
 */
static int check_pkey_sig(const auth_t *a, const char *data, size_t datalen, const char *sig,
			  size_t siglen, unsigned char *buf)
{
	unsigned char der[16 + 2 * 33];
	const unsigned char *s = buf;
	EVP_MD_CTX *ctx = NULL;
	long n;
	size_t slen;
	int rc = AUTH_BAD_SIGNATURE;

	n = b64url_decode(sig, siglen, buf);
	if (n < 0)
		return AUTH_BAD_SIGNATURE;
	slen = (size_t)n;
	if (a->alg == CONF_ALG_ES256) {
		ECDSA_SIG *es;
		BIGNUM *r, *sv;
		unsigned char *p = der;
		int dl;

		if (slen != 64)
			return AUTH_BAD_SIGNATURE;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(buf, 32, NULL);
		sv = BN_bin2bn(buf + 32, 32, NULL);
		if (es == NULL || r == NULL || sv == NULL) {
			ECDSA_SIG_free(es);
			BN_free(r);
			BN_free(sv);
			return AUTH_INTERNAL;
		}
		ECDSA_SIG_set0(es, r, sv);
		dl = i2d_ECDSA_SIG(es, &p);
		ECDSA_SIG_free(es);
		if (dl <= 0 || (size_t)dl > sizeof der)
			return AUTH_INTERNAL;
		s = der;
		slen = (size_t)dl;
	} else if (slen != (size_t)EVP_PKEY_get_size(a->pkey)) {
		return AUTH_BAD_SIGNATURE;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return AUTH_INTERNAL;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, a->pkey) != 1)
		rc = AUTH_INTERNAL;
	else if (EVP_DigestVerify(ctx, s, slen, (const unsigned char *)data, datalen) == 1)
		rc = AUTH_OK;
	EVP_MD_CTX_free(ctx);
	return rc;
}

/*
 * The header segment hdr (hlen bytes, base64url): alg must be a's, typ when
 * present "JWT" (any case), as libjwt and most issuers' libraries require.
 * One of a->known_hdr passes as it is; any other is decoded into dec and
 * parsed.  AUTH_OK, AUTH_BAD_ALG, AUTH_MALFORMED or AUTH_INTERNAL.
 */
static int check_header(const auth_t *a, const char *hdr, size_t hlen, unsigned char *dec)
{
	json_object *obj = NULL, *alg, *typ;
	long n;
	int rc;

	for (size_t k = 0; k < AUTH_KNOWN_HDRS; k++)
		if (a->known_hdr_len[k] == hlen && memcmp(a->known_hdr[k], hdr, hlen) == 0)
			return AUTH_OK;
	n = b64url_decode(hdr, hlen, dec);
	rc = n < 0 ? AUTH_MALFORMED : parse_object(dec, (size_t)n, &obj);
	if (rc != AUTH_OK)
		return rc;
	if (!json_object_object_get_ex(obj, "alg", &alg) || !json_string_equal(alg, a->alg_name))
		rc = AUTH_BAD_ALG;
	else if (json_object_object_get_ex(obj, "typ", &typ) &&
		 (!json_object_is_type(typ, json_type_string) ||
		  json_object_get_string_len(typ) != 3 ||
		  strncasecmp(json_object_get_string(typ), "JWT", 3) != 0))
		rc = AUTH_MALFORMED;
	json_object_put(obj);
	return rc;
}

int auth_verify(const auth_t *a, const char *token, size_t len, time_t now,
		struct auth_identity *id)
{
	const char *dot1, *dot2;
	unsigned char *dec = NULL;
	struct auth_identity scratch;
	json_object *obj = NULL;
	size_t i, hlen, plen;
	long n;
	int rc;

	if (token == NULL || len == 0)
		return AUTH_MISSING;
	if (len > AUTH_TOKEN_MAX)
		return AUTH_TOO_LONG;

	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return AUTH_MALFORMED;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL)
		return AUTH_MALFORMED;
	/* Only the alphabet and the two dots: a third dot fails here too. */
	for (i = 0; i < len; i++) {
		if (token + i == dot1 || token + i == dot2)
			continue;
		if (b64url_value((unsigned char)token[i]) < 0)
			return AUTH_MALFORMED;
	}
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);

	dec = malloc(len / 4 * 3 + 3);
	if (dec == NULL)
		return AUTH_INTERNAL;

	/* The header first: the algorithm is settled before any key is used. */
	rc = check_header(a, token, hlen, dec);
	if (rc != AUTH_OK)
		goto done;

	n = b64url_decode(dot1 + 1, plen, dec);
	rc = n < 0 ? AUTH_MALFORMED : parse_object(dec, (size_t)n, &obj);
	if (rc != AUTH_OK)
		goto done;

	if (a->md != NULL)
		rc = check_hmac(a, token, (size_t)(dot2 - token), dot2 + 1,
				len - (size_t)(dot2 + 1 - token));
	else
		rc = check_pkey_sig(a, token, (size_t)(dot2 - token), dot2 + 1,
				    len - (size_t)(dot2 + 1 - token), dec);
	if (rc != AUTH_OK)
		goto done;

	/* The claims come from our parse of the payload bytes the signature
	 * covers. */
	rc = check_claims(a, obj, now, id != NULL ? id : &scratch);
done:
	ERR_clear_error();
	json_object_put(obj);
	free(dec);
	return rc;
}

const char *auth_reason(int result)
{
	switch (result) {
	case AUTH_OK:
		return "ok";
	case AUTH_MISSING:
		return "missing";
	case AUTH_TOO_LONG:
		return "too_long";
	case AUTH_MALFORMED:
		return "malformed";
	case AUTH_BAD_ALG:
		return "bad_algorithm";
	case AUTH_BAD_SIGNATURE:
		return "bad_signature";
	case AUTH_EXPIRED:
		return "expired";
	case AUTH_NOT_YET_VALID:
		return "not_yet_valid";
	case AUTH_MISSING_EXP:
		return "missing_exp";
	case AUTH_BAD_ISSUER:
		return "bad_issuer";
	case AUTH_BAD_AUDIENCE:
		return "bad_audience";
	case AUTH_MISSING_USER:
		return "missing_user";
	case AUTH_BAD_USER:
		return "bad_user";
	case AUTH_REVOKED:
		return "revoked";
	case AUTH_BAD_TICKET:
		return "bad_ticket";
	default: /* AUTH_INTERNAL, and any code this version does not know */
		return "internal";
	}
}

/* ---- auth_find_token -------------------------------------------------- */

static int copy_token(const char *s, size_t n, char *out, size_t outlen)
{
	if (n >= outlen)
		return AUTH_TOO_LONG;
	memcpy(out, s, n);
	out[n] = '\0';
	return AUTH_OK;
}

/* The credentials of "Bearer <token>" (RFC 6750 section 2.1), or NULL. */
static const char *bearer_value(const char *h, size_t *n)
{
	const char *end;

	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "Bearer", 6) != 0 || h[6] != ' ')
		return NULL;
	h += 6;
	while (*h == ' ')
		h++;
	end = h + strlen(h);
	while (end > h && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*n = (size_t)(end - h);
	return *n > 0 ? h : NULL;
}

int auth_find_token_from(const char *authorization, const char *query, const char *cookie_header,
			 const char *cookie_name, char *out, size_t outlen, enum auth_source *from)
{
	enum auth_source unused;
	const char *v;
	size_t n;
	int rc;

	if (from == NULL)
		from = &unused;
	*from = AUTH_FROM_NONE;
	if (outlen > 0)
		out[0] = '\0';
	if (authorization != NULL && (v = bearer_value(authorization, &n)) != NULL) {
		*from = AUTH_FROM_HEADER;
		return copy_token(v, n, out, outlen);
	}
	if (query != NULL) {
		rc = http_query_get(query, "token", out, outlen);
		if (rc > 0 || rc == HERR_TOOBIG || rc == HERR_INVAL)
			*from = AUTH_FROM_QUERY;
		if (rc > 0)
			return AUTH_OK;
		if (rc == HERR_TOOBIG)
			return AUTH_TOO_LONG;
		if (rc == HERR_INVAL)
			return AUTH_MALFORMED;
	}
	if (cookie_header != NULL && cookie_name != NULL) {
		rc = http_cookie_get(cookie_header, cookie_name, out, outlen);
		if (rc > 0 || rc == HERR_TOOBIG)
			*from = AUTH_FROM_COOKIE;
		if (rc > 0)
			return AUTH_OK;
		if (rc == HERR_TOOBIG)
			return AUTH_TOO_LONG;
	}
	if (outlen > 0)
		out[0] = '\0';
	return AUTH_MISSING;
}

int auth_find_token(const char *authorization, const char *query, const char *cookie_header,
		    const char *cookie_name, char *out, size_t outlen)
{
	return auth_find_token_from(authorization, query, cookie_header, cookie_name, out, outlen,
				    NULL);
}

int auth_user_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len == 0 || len > AUTH_USER_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

int auth_jti_valid(const char *s, size_t len)
{
	if (s == NULL || len == 0 || len > AUTH_JTI_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '!' || s[i] > '~')
			return 0;
	return 1;
}
