#include "sl_jwks.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_b64.h"
#include "auth/sl_https.h"
#include "auth/sl_json.h"
#include "auth/sl_jwt.h"
#include "base/sl_arena.h"
#include "base/sl_logging.h"

enum { RSA_MIN_BYTES = 256, RSA_MAX_BYTES = 1024 };

/* Decodes a base64url member into buf; returns its length or -1. */
static long b64_member(const sl_json *k, const char *name, uint8_t *buf, size_t cap) {
    const sl_json *v = sl_json_get(k, name);
    size_t n;
    if (!v || v->type != SL_JSON_STR || !sl_b64url_decode(v->s, v->slen, buf, cap, &n)) return -1;
    return (long)n;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld) {
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (!params || !pc || EVP_PKEY_fromdata_init(pc) != 1 ||
        EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *rsa_key(const sl_json *k, const char **why) {
    uint8_t n[RSA_MAX_BYTES + 8], e[16];
    long nl = b64_member(k, "n", n, sizeof n), el = b64_member(k, "e", e, sizeof e);
    if (nl < 0 || el < 0) return *why = "bad n or e", NULL;
    const uint8_t *np = n;
    while (nl > 0 && *np == 0) np++, nl--;
    if (nl < RSA_MIN_BYTES || nl > RSA_MAX_BYTES) return *why = "RSA modulus size", NULL;
    if (el < 1 || el > 8 || !(e[el - 1] & 1) || (el == 1 && e[0] < 3))
        return *why = "bad RSA exponent", NULL;
    BIGNUM *bn = BN_bin2bn(np, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    if (!pk) *why = "RSA key rejected by OpenSSL";
    return pk;
}

static EVP_PKEY *ec_key(const sl_json *k, const char **why) {
    if (!sl_json_str_eq(sl_json_get(k, "crv"), "P-256", 5)) return *why = "curve", NULL;
    uint8_t x[40], y[40], pub[65];
    if (b64_member(k, "x", x, sizeof x) != 32 || b64_member(k, "y", y, sizeof y) != 32)
        return *why = "bad x or y", NULL;
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub))
        pk = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    /* fromdata does not promise an on-curve check; an off-curve point enables invalid-curve
     * attacks on some verifiers, so check explicitly. */
    if (pk) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        if (!c || EVP_PKEY_public_check(c) != 1) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        EVP_PKEY_CTX_free(c);
    }
    if (!pk) *why = "EC point rejected";
    return pk;
}

void sl_jwks_free(sl_jwks *ks) {
    if (!ks) return;
    for (size_t i = 0; i < ks->n; i++) EVP_PKEY_free(ks->keys[i].pkey);
    free(ks->keys);
    free(ks);
}

sl_jwks *sl_jwks_parse(const char *text, size_t len, char *err, size_t elen) {
    if (len > SL_JWKS_MAX_BYTES) {
        snprintf(err, elen, "JWKS larger than %d bytes", SL_JWKS_MAX_BYTES);
        return NULL;
    }
    sl_arena *a = sl_arena_new(len * 2 + 4096);
    sl_jwks *ks = calloc(1, sizeof *ks);
    if (!a || !ks) goto fail_nomem;
    const sl_json *doc = sl_json_parse(a, text, len, SL_JSON_MAX_DEPTH, err, elen);
    if (!doc) goto fail;
    const sl_json *keys = sl_json_get(doc, "keys");
    if (!keys || keys->type != SL_JSON_ARR) {
        snprintf(err, elen, "JWKS has no \"keys\" array");
        goto fail;
    }
    ks->keys = calloc(keys->n ? keys->n : 1, sizeof *ks->keys);
    if (!ks->keys) goto fail_nomem;
    ERR_clear_error();
    for (const sl_json *k = keys->child; k; k = k->next) {
        const sl_json *kid = sl_json_get(k, "kid"), *kty = sl_json_get(k, "kty"),
                      *use = sl_json_get(k, "use"), *alg = sl_json_get(k, "alg");
        if (!kid || kid->type != SL_JSON_STR || !kid->slen || kid->slen >= sizeof ks->keys[0].kid ||
            memchr(kid->s, 0, kid->slen))
            continue;
        if (use && !sl_json_str_eq(use, "sig", 3)) continue;
        if (sl_jwks_find(ks, kid->s, kid->slen)) {
            SL_WARN("oauth", "JWKS key with a duplicate kid skipped", "kid=\"%s\"", kid->s);
            continue;
        }
        sl_jwk *j = &ks->keys[ks->n];
        const char *why = NULL;
        if (sl_json_str_eq(kty, "RSA", 3)) {
            if (alg && !sl_json_str_eq(alg, "RS256", 5)) continue;
            j->type = SL_JWK_RSA;
            j->pkey = rsa_key(k, &why);
        } else if (sl_json_str_eq(kty, "EC", 2)) {
            if (alg && !sl_json_str_eq(alg, "ES256", 5)) continue;
            j->type = SL_JWK_EC_P256;
            j->pkey = ec_key(k, &why);
        } else {
            continue;
        }
        if (!j->pkey) {
            SL_WARN("oauth", "JWKS key skipped", "kid=\"%s\" reason=\"%s\"", kid->s, why);
            ERR_clear_error();
            continue;
        }
        memcpy(j->kid, kid->s, kid->slen + 1);
        if (alg) memcpy(j->alg, alg->s, alg->slen + 1);
        ks->n++;
    }
    if (!ks->n) {
        snprintf(err, elen, "JWKS has no usable RS256/ES256 signing key with a kid");
        goto fail;
    }
    sl_arena_free(a);
    return ks;
fail_nomem:
    snprintf(err, elen, "out of memory");
fail:
    sl_arena_free(a);
    sl_jwks_free(ks);
    return NULL;
}

const sl_jwk *sl_jwks_find(const sl_jwks *ks, const char *kid, size_t kidlen) {
    for (size_t i = 0; ks && i < ks->n; i++)
        if (strlen(ks->keys[i].kid) == kidlen && !memcmp(ks->keys[i].kid, kid, kidlen))
            return &ks->keys[i];
    return NULL;
}

static sl_err read_file(const char *path, char **body, size_t *blen, char *err, size_t elen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, elen, "cannot open JWKS file %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    char *b = malloc(SL_JWKS_MAX_BYTES + 2);
    size_t n = b ? fread(b, 1, SL_JWKS_MAX_BYTES + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!b) return SL_ENOMEM;
    if (bad || n > SL_JWKS_MAX_BYTES) {
        free(b);
        snprintf(err, elen, bad ? "cannot read JWKS file %s" : "JWKS file %s too large", path);
        return bad ? SL_EIO : SL_ETOOLARGE;
    }
    b[n] = 0;
    *body = b;
    *blen = n;
    return SL_OK;
}

sl_err sl_jwks_fetch(const char *url, const char *ca_file, int64_t timeout_ms, char **body,
                     size_t *blen, char *err, size_t elen) {
    if (!strncmp(url, "file://", 7)) return read_file(url + 7, body, blen, err, elen);
    if (url[0] == '/') return read_file(url, body, blen, err, elen);
    if (!strncmp(url, "https://", 8))
        return sl_https_get(url, ca_file, timeout_ms, SL_JWKS_MAX_BYTES, body, blen, err, elen);
    snprintf(err, elen, "JWKS URL must be file:// or https://");
    return SL_ECONFIG;
}
