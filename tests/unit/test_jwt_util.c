#include "test_jwt_util.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sl_b64.h"

EVP_PKEY *tj_rsa_key(int which) {
    static EVP_PKEY *k[4];
    if (!k[which]) k[which] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return k[which];
}

EVP_PKEY *tj_ec_key(int which) {
    static EVP_PKEY *k[4];
    if (!k[which]) k[which] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return k[which];
}

static void b64_bn(EVP_PKEY *pk, const char *param, int pad, char *out, size_t cap) {
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    EVP_PKEY_get_bn_param(pk, param, &bn);
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    sl_b64url_encode(buf, (size_t)n, out, cap);
    BN_free(bn);
}

void tj_jwk(EVP_PKEY *pk, const char *kid, const char *alg, char *out, size_t cap) {
    char a[2048], b[2048], algm[64] = "";
    if (alg) snprintf(algm, sizeof algm, ",\"alg\":\"%s\"", alg);
    size_t l = strlen(out);
    if (EVP_PKEY_is_a(pk, "RSA")) {
        b64_bn(pk, OSSL_PKEY_PARAM_RSA_N, 0, a, sizeof a);
        b64_bn(pk, OSSL_PKEY_PARAM_RSA_E, 0, b, sizeof b);
        snprintf(out + l, cap - l,
                 "{\"kty\":\"RSA\",\"use\":\"sig\",\"kid\":\"%s\"%s,\"n\":\"%s\",\"e\":\"%s\"}",
                 kid, algm, a, b);
    } else {
        b64_bn(pk, OSSL_PKEY_PARAM_EC_PUB_X, 32, a, sizeof a);
        b64_bn(pk, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b, sizeof b);
        snprintf(out + l, cap - l,
                 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\"%s,\"x\":\"%s\",\"y\":\"%s\"}",
                 kid, algm, a, b);
    }
}

char *tj_sign_raw(EVP_PKEY *pk, const char *header_json, const char *claims_json) {
    size_t hl = strlen(header_json), cl = strlen(claims_json);
    size_t cap = sl_b64_enc_len(hl) + sl_b64_enc_len(cl) + 1024;
    char *t = malloc(cap);
    size_t n = sl_b64url_encode((const uint8_t *)header_json, hl, t, cap);
    t[n++] = '.';
    n += sl_b64url_encode((const uint8_t *)claims_json, cl, t + n, cap - n);
    size_t signed_len = n;
    t[n++] = '.';
    t[n] = 0;
    if (!pk) return t;
    unsigned char sig[1024], raw[64];
    size_t sl = sizeof sig;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, pk);
    EVP_DigestSign(mc, sig, &sl, (const unsigned char *)t, signed_len);
    EVP_MD_CTX_free(mc);
    const unsigned char *s = sig;
    if (EVP_PKEY_is_a(pk, "EC")) {
        /* DER ECDSA-Sig-Value to the JWS r||s form */
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &s, (long)sl);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        s = raw;
        sl = 64;
    }
    sl_b64url_encode(s, sl, t + n, cap - n);
    return t;
}

char *tj_sign(EVP_PKEY *pk, const char *alg, const char *kid, const char *claims_json) {
    char h[512];
    snprintf(h, sizeof h, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
    return tj_sign_raw(pk, h, claims_json);
}

const char *tj_tmpdir(void) {
    static char path[512];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/sluice-jwt.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(path);
}

bool tj_write_file(const char *path, const char *text) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0;
}
