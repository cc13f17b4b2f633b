#include "crypto/sl_aead.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>

#include "crypto/sl_dek.h"

struct sl_aead {
    EVP_CIPHER_CTX *enc, *dec;
};

/* Fetched once: the implicit EVP_aes_256_gcm() costs a provider lookup on every init. */
static EVP_CIPHER *gcm_cipher(void) {
    static EVP_CIPHER *c;
    static int once;
    if (!__atomic_load_n(&once, __ATOMIC_ACQUIRE)) {
        EVP_CIPHER *f = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        EVP_CIPHER *expected = NULL;
        if (f && !__atomic_compare_exchange_n(&c, &expected, f, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_ACQUIRE))
            EVP_CIPHER_free(f);
        __atomic_store_n(&once, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&c, __ATOMIC_ACQUIRE);
}

sl_err sl_aead_new(const uint8_t key[SL_AEAD_KEY], sl_aead **out) {
    EVP_CIPHER *c = gcm_cipher();
    if (!c) return SL_ENOMEM;
    sl_aead *a = calloc(1, sizeof *a);
    if (!a) return SL_ENOMEM;
    a->enc = EVP_CIPHER_CTX_new();
    a->dec = EVP_CIPHER_CTX_new();
    if (!a->enc || !a->dec || !EVP_EncryptInit_ex2(a->enc, c, key, NULL, NULL) ||
        !EVP_DecryptInit_ex2(a->dec, c, key, NULL, NULL)) {
        sl_aead_free(a);
        return SL_ENOMEM;
    }
    *out = a;
    return SL_OK;
}

sl_err sl_aead_dup(const sl_aead *a, sl_aead **out) {
    sl_aead *d = calloc(1, sizeof *d);
    if (!d) return SL_ENOMEM;
    d->enc = EVP_CIPHER_CTX_new();
    d->dec = EVP_CIPHER_CTX_new();
    if (!d->enc || !d->dec || !EVP_CIPHER_CTX_copy(d->enc, a->enc) ||
        !EVP_CIPHER_CTX_copy(d->dec, a->dec)) {
        sl_aead_free(d);
        return SL_ENOMEM;
    }
    *out = d;
    return SL_OK;
}

void sl_aead_free(sl_aead *a) {
    if (!a) return;
    EVP_CIPHER_CTX_free(a->enc); /* frees cleanse the key schedule */
    EVP_CIPHER_CTX_free(a->dec);
    free(a);
}

/* GCM's per-call length limits are ints; a batch is at most SL_FRAME_PAYLOAD_MAX < INT_MAX. */
static bool parts_fit(const sl_aead_part *parts, int nparts) {
    for (int i = 0; i < nparts; i++)
        if (parts[i].n > 0x7fffff00u) return false;
    return true;
}

sl_err sl_aead_seal(sl_aead *a, const uint8_t nonce[SL_AEAD_NONCE], const uint8_t *aad,
                    size_t aadlen, const sl_aead_part *parts, int nparts,
                    uint8_t tag[SL_AEAD_TAG]) {
    int n;
    if (!parts_fit(parts, nparts) || aadlen > 0x7fffff00u) return SL_EINVAL;
    if (!EVP_EncryptInit_ex2(a->enc, NULL, NULL, nonce, NULL)) return SL_ENOMEM;
    if (aadlen && !EVP_EncryptUpdate(a->enc, NULL, &n, aad, (int)aadlen)) return SL_ENOMEM;
    for (int i = 0; i < nparts; i++)
        if (parts[i].n && !EVP_EncryptUpdate(a->enc, parts[i].p, &n, parts[i].p, (int)parts[i].n))
            return SL_ENOMEM;
    uint8_t fin[16];
    if (!EVP_EncryptFinal_ex(a->enc, fin, &n) ||
        !EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG, SL_AEAD_TAG, tag))
        return SL_ENOMEM;
    return SL_OK;
}

sl_err sl_aead_open(sl_aead *a, const uint8_t nonce[SL_AEAD_NONCE], const uint8_t *aad,
                    size_t aadlen, const sl_aead_part *parts, int nparts,
                    const uint8_t tag[SL_AEAD_TAG]) {
    int n;
    if (!parts_fit(parts, nparts) || aadlen > 0x7fffff00u) return SL_EINVAL;
    if (!EVP_DecryptInit_ex2(a->dec, NULL, NULL, nonce, NULL)) return SL_ENOMEM;
    if (aadlen && !EVP_DecryptUpdate(a->dec, NULL, &n, aad, (int)aadlen)) return SL_ENOMEM;
    for (int i = 0; i < nparts; i++)
        if (parts[i].n && !EVP_DecryptUpdate(a->dec, parts[i].p, &n, parts[i].p, (int)parts[i].n))
            return SL_ENOMEM;
    uint8_t t[SL_AEAD_TAG], fin[16];
    memcpy(t, tag, sizeof t);
    if (!EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG, SL_AEAD_TAG, t)) return SL_ENOMEM;
    return EVP_DecryptFinal_ex(a->dec, fin, &n) > 0 ? SL_OK : SL_ETAMPER;
}

sl_err sl_hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *info, size_t infolen, uint8_t *out,
               size_t n) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!kdf) return SL_ENOMEM;
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (!kc) return SL_ENOMEM;
    OSSL_PARAM ps[4];
    ps[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    ps[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    ps[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    ps[3] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kc, out, n, ps);
    EVP_KDF_CTX_free(kc);
    return ok > 0 ? SL_OK : SL_ENOMEM;
}

static sl_err kwp(bool wrap, const uint8_t kek[SL_AEAD_KEY], const uint8_t *context, size_t ctxlen,
                  const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
    if (wrap ? (n == 0 || n > 64 || cap < ((n + 7) / 8) * 8 + 8)
             : (n < 16 || n > 72 || n % 8 || cap < n - 8))
        return SL_EINVAL;
    uint8_t k[SL_AEAD_KEY];
    sl_err e = sl_hkdf(kek, SL_AEAD_KEY, context, ctxlen, k, sizeof k);
    if (e) return e;
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok = c && cx;
    if (ok) EVP_CIPHER_CTX_set_flags(cx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ok = ok && EVP_CipherInit_ex2(cx, c, k, NULL, wrap ? 1 : 0, NULL);
    ok = ok && EVP_CipherUpdate(cx, out, &l1, in, (int)n) > 0;
    ok = ok && EVP_CipherFinal_ex(cx, out + l1, &l2) > 0;
    OPENSSL_cleanse(k, sizeof k);
    EVP_CIPHER_CTX_free(cx);
    EVP_CIPHER_free(c);
    if (!ok) {
        if (!wrap) OPENSSL_cleanse(out, cap < n ? cap : n);
        return wrap ? SL_ENOMEM : SL_ETAMPER;
    }
    *outlen = (size_t)(l1 + l2);
    return SL_OK;
}

sl_err sl_kwp_wrap(const uint8_t kek[SL_AEAD_KEY], const uint8_t *context, size_t ctxlen,
                   const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
    return kwp(true, kek, context, ctxlen, in, n, out, cap, outlen);
}

sl_err sl_kwp_unwrap(const uint8_t kek[SL_AEAD_KEY], const uint8_t *context, size_t ctxlen,
                     const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
    return kwp(false, kek, context, ctxlen, in, n, out, cap, outlen);
}

sl_err sl_random_key(uint8_t *out, size_t n) {
    return RAND_priv_bytes(out, (int)n) == 1 ? SL_OK : SL_ENOMEM;
}

sl_err sl_dek_new(uint32_t id, const uint8_t key[SL_AEAD_KEY], sl_dek **out) {
    sl_dek *d = calloc(1, sizeof *d);
    if (!d) return SL_ENOMEM;
    sl_err e = sl_aead_new(key, &d->aead);
    if (e) {
        free(d);
        return e;
    }
    d->refs = 1;
    d->id = id;
    *out = d;
    return SL_OK;
}

sl_dek *sl_dek_ref(sl_dek *d) {
    if (d) d->refs++;
    return d;
}

void sl_dek_unref(sl_dek *d) {
    if (!d || --d->refs > 0) return;
    sl_aead_free(d->aead);
    free(d);
}
