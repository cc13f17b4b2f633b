/* libFuzzer target for the OAUTHBEARER parsing paths. The first input byte picks the subject:
 *   0: sl_json_parse(rest)          — strict JSON, depth/size bounds
 *   1: base64url/base64 decode      — anything accepted must re-encode to the same text
 *   2: sl_jwks_parse(rest)          — JWK key building through OpenSSL
 *   3: sl_jwt_validate(rest)        — a whole token against a fixed key set
 *   4: "<header>\n<claims>" signed with the key set's own EC key, then validated, so the claim
 *      checks are reached (a random token never gets past the signature)
 *   5: sl_oauthbearer_parse_client_msg(rest)
 *   6: "<header>\n<claims>\xff<edits>" signed as in 4, then changed by the edits (pairs of
 *      position byte, new byte) and validated: a tampered token must be refused
 * The validator and its key are made once per process; its JWKS file lives in TMPDIR.
 *
 * Security invariant: the key pair is generated here at start-up and its private half never
 * leaves this process, so no input can carry a valid signature. A token that validates must
 * therefore be byte-identical to one this harness's own signer produced (remembered by digest);
 * anything else validating (alg none, a key confusion, a signature check that passes tampered
 * bytes, a parser that validates one text and reads another) aborts. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sl_b64.h"
#include "auth/sl_json.h"
#include "auth/sl_jwks.h"
#include "auth/sl_jwt.h"
#include "base/sl_arena.h"
#include "base/sl_logging.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *g_key;
static sl_jwt_validator *g_v;

/* Digests of the tokens the harness signed (a ring: a later input can only repeat a token by
 * carrying its bytes, which the fuzzer sees only through comparisons). */
enum { SIGNED_MAX = 4096 };
static uint8_t g_signed[SIGNED_MAX][SHA256_DIGEST_LENGTH];
static size_t g_nsigned;

static void digest(const char *tok, size_t n, uint8_t out[SHA256_DIGEST_LENGTH]) {
    unsigned int len = 0;
    if (EVP_Digest(tok, n, out, &len, EVP_sha256(), NULL) != 1) abort();
}

static bool signed_here(const char *tok, size_t n) {
    uint8_t d[SHA256_DIGEST_LENGTH];
    digest(tok, n, d);
    size_t have = g_nsigned < SIGNED_MAX ? g_nsigned : SIGNED_MAX;
    for (size_t i = 0; i < have; i++)
        if (!memcmp(g_signed[i], d, sizeof d)) return true;
    return false;
}

static void b64_bn(const char *param, char *out, size_t cap) {
    BIGNUM *bn = NULL;
    unsigned char buf[32];
    EVP_PKEY_get_bn_param(g_key, param, &bn);
    BN_bn2binpad(bn, buf, 32);
    sl_b64url_encode(buf, 32, out, cap);
    BN_free(bn);
}

static void init(void) {
    sl_log_set_level(SL_LOG_ERROR);
    g_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char x[64], y[64], path[512], doc[512];
    b64_bn(OSSL_PKEY_PARAM_EC_PUB_X, x, sizeof x);
    b64_bn(OSSL_PKEY_PARAM_EC_PUB_Y, y, sizeof y);
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/sluice-fuzz-jwks-%d.json", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    snprintf(
        doc, sizeof doc,
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\",\"x\":\"%s\",\"y\":\"%s\"}]}",
        x, y);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(doc, f);
    fclose(f);
    sl_jwt_config c;
    sl_jwt_config_defaults(&c);
    snprintf(c.jwks_url, sizeof c.jwks_url, "file://%s", path);
    snprintf(c.expected_issuer, sizeof c.expected_issuer, "iss");
    snprintf(c.expected_audience, sizeof c.expected_audience, "aud");
    c.min_refetch_ms = INT64_MAX / 4; /* no refetch churn from random kids */
    char err[256];
    g_v = sl_jwt_validator_new(&c, err, sizeof err);
    unlink(path); /* loaded; the periodic refresh failing later just keeps the keys */
    if (!g_v) abort();
}

static void validate(const char *tok, size_t n) {
    char p[256], why[128];
    int64_t exp = 0;
    sl_err e = sl_jwt_validate(g_v, tok, n, 1700000000000LL, p, sizeof p, &exp, why, sizeof why);
    if (e != SL_OK) return;
    if (!p[0] || strlen(p) > SL_JWT_MAX_PRINCIPAL) abort();
    if (!signed_here(tok, n)) {
        fprintf(stderr, "fuzz_jwt: a token this harness did not sign validated: %.*s\n", (int)n,
                tok);
        abort();
    }
}

/* Signs "<header>\n<claims>" and validates it; with `edits` (position, byte pairs), validates
 * the token changed by them instead (validate() refuses it unless the bytes came back equal). */
static void sign_and_validate(const uint8_t *d, size_t n, const uint8_t *edits, size_t nedits) {
    const uint8_t *nl = memchr(d, '\n', n);
    if (!nl || n > 8192) return;
    size_t hl = (size_t)(nl - d), cl = n - hl - 1;
    size_t cap = sl_b64_enc_len(hl) + sl_b64_enc_len(cl) + 200;
    char *t = malloc(cap);
    size_t o = sl_b64url_encode(d, hl, t, cap);
    t[o++] = '.';
    o += sl_b64url_encode(nl + 1, cl, t + o, cap - o);
    unsigned char der[128], raw[64];
    size_t dl = sizeof der;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, g_key) == 1 &&
        EVP_DigestSign(mc, der, &dl, (const unsigned char *)t, o) == 1) {
        const unsigned char *q = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)dl);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        t[o++] = '.';
        o += sl_b64url_encode(raw, 64, t + o, cap - o);
        digest(t, o, g_signed[g_nsigned++ % SIGNED_MAX]);
        for (size_t i = 0; i + 1 < nedits; i += 2) t[edits[i] % o] = (char)edits[i + 1];
        validate(t, o);
    }
    EVP_MD_CTX_free(mc);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_v) init();
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 7) {
    case 0: {
        sl_arena *a = sl_arena_new(4096);
        (void)sl_json_parse(a, s, n, SL_JSON_MAX_DEPTH, NULL, 0);
        sl_arena_free(a);
        break;
    }
    case 1: {
        uint8_t *out = malloc(n + 4);
        char *re = malloc(sl_b64_enc_len(n) + 4);
        size_t ol;
        if (sl_b64url_decode(s, n, out, n + 3, &ol) &&
            (sl_b64url_encode(out, ol, re, sl_b64_enc_len(n) + 4) != n || memcmp(re, s, n)))
            abort();
        if (sl_b64std_decode(s, n, out, n + 3, &ol) &&
            (sl_b64std_encode(out, ol, re, sl_b64_enc_len(n) + 4) != n || memcmp(re, s, n)))
            abort();
        free(out);
        free(re);
        break;
    }
    case 2: {
        char err[256];
        sl_jwks_free(sl_jwks_parse(s, n, err, sizeof err));
        break;
    }
    case 3:
        validate(s, n);
        break;
    case 4:
        sign_and_validate((const uint8_t *)s, n, NULL, 0);
        break;
    case 6: {
        const uint8_t *ff = memchr(s, 0xff, n);
        if (!ff) break;
        size_t hl = (size_t)(ff - (const uint8_t *)s);
        sign_and_validate((const uint8_t *)s, hl, ff + 1, n - hl - 1);
        break;
    }
    case 5: {
        const char *t, *a;
        size_t tl, al;
        if (sl_oauthbearer_parse_client_msg(s, n, &t, &tl, &a, &al) == SL_OK &&
            (t < s || t + tl > s + n || !tl))
            abort();
        break;
    }
    }
    return 0;
}
