/* Field protection's primitives (sl_fcrypt.h). Everything cryptographic goes through OpenSSL 3:
 * HMAC-SHA-256 (EVP_MAC), AES-256-GCM and AES-SIV (EVP_CIPHER), HKDF (sl_hkdf).
 *
 * Cost per field: a key context is built once per field key version (and subject); a token
 * re-initialises a keyed HMAC context (no key schedule), a GCM field re-initialises a keyed
 * context with a new nonce. OpenSSL 3.0's SIV context does one operation per key set-up (its
 * state cannot be re-initialised without the key), so SIV copies a keyed template instead: a
 * copy, not a CMAC/AES key schedule nor a provider fetch.
 *
 * The derived keys exist as raw bytes only on the stack of sl_fc_key_new (cleansed before it
 * returns): the contexts hold their schedules, which OpenSSL cleanses when they are freed. No
 * raw copy is kept because nothing re-keys, and a copy per subject would compete with topic keys
 * and DEKs for sl_secmem's fixed slab (subject key contexts are many). */
#include "protect/sl_fcrypt.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/sl_aead.h"

#define GCM_NONCE 12
#define TAG       16
/* Longest prefix "sl1.A.KEY.VER.SUBJ.": 4 + 2 + 64 + 1 + 10 + 1 + 22 + 1. */
#define PREFIX_MAX (4 + 2 + SL_FC_KEYNAME_MAX + 1 + 10 + 1 + SL_FC_B64_16 + 1)
/* EVP lengths are ints; a field is far smaller than this in practice (records are bounded). */
#define FIELD_MAX ((size_t)INT_MAX - 256)

static const char INFO_TOKEN[] = "sluice/field/v1/token";
static const char INFO_GCM[] = "sluice/field/v1/gcm";
static const char INFO_SIV[] = "sluice/field/v1/siv";

struct sl_fc_key {
    EVP_MAC_CTX *hmac;                 /* keyed with Kt */
    EVP_CIPHER_CTX *gcm_enc, *gcm_dec; /* keyed with Kg; per field only the nonce is set */
    EVP_CIPHER_CTX *siv_enc, *siv_dec; /* keyed with Ks: templates, never used directly */
    EVP_CIPHER_CTX *siv_work;          /* a copy of a template per field */
    uint32_t version;
    bool has_subject;
    uint8_t subject[16];
    size_t namelen;
    char name[SL_FC_KEYNAME_MAX + 1];
    /* "sl1.g.KEY.VER.SUBJ." (the 'g' is replaced per algorithm) and "tok1.KEY.VER." */
    char prefix[PREFIX_MAX + 1];
    size_t prefixlen;
    char tprefix[SL_FC_TOKEN_STR_MAX];
    size_t tprefixlen;
};

/* ---- fetched once ---- */

/* Fetching on every use costs a provider lookup under a lock; these live for the process. */
static void *fetch_once(void **slot, void *(*fetch)(const char *), const char *name,
                        void (*release)(void *)) {
    void *c = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (c) return c;
    void *f = fetch(name);
    void *expected = NULL;
    if (!f) return NULL;
    if (!__atomic_compare_exchange_n(slot, &expected, f, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        release(f);
        return expected;
    }
    return f;
}
static void *cipher_fetch(const char *name) { return EVP_CIPHER_fetch(NULL, name, NULL); }
static void cipher_release(void *c) { EVP_CIPHER_free(c); }
static void *mac_fetch(const char *name) { return EVP_MAC_fetch(NULL, name, NULL); }
static void mac_release(void *m) { EVP_MAC_free(m); }

static EVP_CIPHER *siv_cipher(size_t klen) {
    static void *c32, *c48, *c64;
    switch (klen) {
    case 32:
        return fetch_once(&c32, cipher_fetch, "AES-128-SIV", cipher_release);
    case 48:
        return fetch_once(&c48, cipher_fetch, "AES-192-SIV", cipher_release);
    case 64:
        return fetch_once(&c64, cipher_fetch, "AES-256-SIV", cipher_release);
    default:
        return NULL;
    }
}
static EVP_CIPHER *gcm_cipher(void) {
    static void *c;
    return fetch_once(&c, cipher_fetch, "AES-256-GCM", cipher_release);
}
static EVP_MAC *hmac_mac(void) {
    static void *m;
    return fetch_once(&m, mac_fetch, "HMAC", mac_release);
}

/* ---- GCM nonces ---- */

/* Random 96-bit nonces, drawn from OpenSSL's DRBG in batches: one RAND_bytes call costs about
 * 2.5 us whatever its length (OpenSSL 3.0's CTR-DRBG re-keys itself after every call), which was
 * most of a field's encryption. The batch is per thread (a key context is used by one thread at
 * a time, but different contexts by different threads). A fork child must never hand out the
 * nonces its parent will: the atfork generation makes it discard its inherited batch. */
#define NONCE_BATCH 64
static _Thread_local struct {
    uint8_t b[NONCE_BATCH * GCM_NONCE];
    unsigned used, gen;
} t_nonces = {.used = NONCE_BATCH};
static unsigned g_fork_gen;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void nonces_forked(void) { __atomic_add_fetch(&g_fork_gen, 1, __ATOMIC_RELEASE); }
static void nonces_register(void) { (void)pthread_atfork(NULL, NULL, nonces_forked); }

static bool next_nonce(uint8_t out[GCM_NONCE]) {
    unsigned gen = __atomic_load_n(&g_fork_gen, __ATOMIC_ACQUIRE);
    if (t_nonces.used >= NONCE_BATCH || t_nonces.gen != gen) {
        if (RAND_bytes(t_nonces.b, sizeof t_nonces.b) != 1) return false;
        t_nonces.used = 0;
        t_nonces.gen = gen;
    }
    uint8_t *p = t_nonces.b + (size_t)t_nonces.used++ * GCM_NONCE;
    memcpy(out, p, GCM_NONCE);
    memset(p, 0, GCM_NONCE); /* used: nothing left to repeat */
    return true;
}

/* ---- names, numbers, base64url ---- */

static bool name_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

bool sl_fc_keyname_ok(const char *s, size_t n) {
    if (!s || n == 0 || n > SL_FC_KEYNAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i])) return false;
    return true;
}

/* Decimal 1..4294967295 without a leading zero: one spelling per version, so a header edited
 * to "01" is not the same key version under another name. */
static bool parse_version(const char *s, size_t n, uint32_t *out) {
    if (n == 0 || n > 10 || s[0] == '0') return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value of each byte as a base64url digit, 0xff for none (the parser runs over every payload). */
static uint8_t g_b64_val[256];
static pthread_once_t g_b64_once = PTHREAD_ONCE_INIT;
static void b64_table(void) {
    memset(g_b64_val, 0xff, sizeof g_b64_val);
    for (int i = 0; i < 64; i++) g_b64_val[(unsigned char)B64[i]] = (uint8_t)i;
}
static const uint8_t *b64_vals(void) {
    pthread_once(&g_b64_once, b64_table);
    return g_b64_val;
}

static size_t b64_len(size_t n) { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

size_t sl_fc_b64url_encode(const uint8_t *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        out[o++] = B64[in[i] >> 2];
        out[o++] = B64[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
        out[o++] = B64[v >> 10];
        out[o++] = B64[(v >> 4) & 63];
        out[o++] = B64[(v & 15) << 2];
    }
    return o;
}

/* Decoded length of n characters of unpadded base64url, or -1 for an impossible n. */
static long b64_decoded_len(size_t n) {
    if (n % 4 == 1 || n / 4 > (size_t)LONG_MAX / 4) return -1;
    return (long)(n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0));
}

/* Decodes canonical unpadded base64url in[0..n) into out (NULL: only checks); the decoded length
 * or -1. The unused low bits of the last character must be zero: otherwise four spellings of one
 * payload exist and an edited character could go unnoticed. */
static long b64_run(const char *in, size_t n, uint8_t *out) {
    const uint8_t *val = b64_vals();
    const unsigned char *u = (const unsigned char *)in;
    long len = b64_decoded_len(n);
    if (len < 0) return -1;
    size_t o = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        uint8_t a = val[u[i]], b = val[u[i + 1]], c = val[u[i + 2]], d = val[u[i + 3]];
        if ((a | b | c | d) & 0xc0) return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        if (out) {
            out[o] = (uint8_t)(v >> 16);
            out[o + 1] = (uint8_t)(v >> 8);
            out[o + 2] = (uint8_t)v;
        }
        o += 3;
    }
    if (n - i >= 2) {
        uint8_t a = val[u[i]], b = val[u[i + 1]], c = n - i == 3 ? val[u[i + 2]] : 0;
        if ((a | b | c) & 0xc0) return -1;
        if (n - i == 2 ? (b & 15) : (c & 3)) return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        if (out) out[o] = (uint8_t)(v >> 16);
        if (out && n - i == 3) out[o + 1] = (uint8_t)(v >> 8);
    }
    return len;
}

static long b64_check(const char *in, size_t n) { return b64_run(in, n, NULL); }

long sl_fc_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
    long len = b64_decoded_len(n);
    if (!in || !out || len < 0 || (size_t)len > cap) return -1;
    return b64_run(in, n, out);
}

/* ---- mask ---- */

/* Length of the well-formed UTF-8 sequence at s[0..n) (1 for ASCII), or 0 when s[0] starts none
 * (stray continuation, overlong form, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

static bool maskable_ascii(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

size_t sl_fc_mask_apply(const sl_fc_mask *m, const uint8_t *in, size_t n, uint8_t *out) {
    /* The policy checks the character; a bad one here still yields JSON-safe output. */
    char ch = m->ch >= 0x20 && m->ch < 0x7f && m->ch != '"' && m->ch != '\\' ? m->ch : '*';
    size_t first = m->keep_first > 0 ? (size_t)m->keep_first : 0;
    size_t last = m->keep_last > 0 ? (size_t)m->keep_last : 0;
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(in + i, n - i);
        if (l != 1 || maskable_ascii(in[i])) total++;
        i += l ? l : 1;
    }
    if (first >= total || last >= total - first) first = last = 0; /* never the input as is */
    size_t o = 0, k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(in + i, n - i);
        size_t step = l ? l : 1;
        if (l == 1 && !maskable_ascii(in[i])) {
            out[o++] = in[i];
        } else {
            if (k < first || k >= total - last) {
                memcpy(out + o, in + i, step);
                o += step;
            } else
                out[o++] = (uint8_t)ch;
            k++;
        }
        i += step;
    }
    return o;
}

/* ---- keys ---- */

void sl_fc_key_free(sl_fc_key *k) {
    if (!k) return;
    EVP_MAC_CTX_free(k->hmac); /* the frees cleanse the key schedules */
    EVP_CIPHER_CTX_free(k->gcm_enc);
    EVP_CIPHER_CTX_free(k->gcm_dec);
    EVP_CIPHER_CTX_free(k->siv_enc);
    EVP_CIPHER_CTX_free(k->siv_dec);
    EVP_CIPHER_CTX_free(k->siv_work);
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}

/* HKDF of ikm with `label` || subject id (when there is one) as info. */
static sl_err derive(const uint8_t *ikm, size_t ikmlen, const char *label, const uint8_t *sid,
                     uint8_t *out, size_t n) {
    uint8_t info[64];
    size_t ll = strlen(label);
    memcpy(info, label, ll);
    if (sid) memcpy(info + ll, sid, 16);
    return sl_hkdf(ikm, ikmlen, info, ll + (sid ? 16 : 0), out, n);
}

static sl_err make_contexts(sl_fc_key *k, const uint8_t kt[32], const uint8_t kg[32],
                            const uint8_t ks[64]) {
    EVP_MAC *mac = hmac_mac();
    EVP_CIPHER *gcm = gcm_cipher(), *siv = siv_cipher(64);
    if (!mac || !gcm || !siv) return SL_ENOMEM;
    pthread_once(&g_atfork_once, nonces_register); /* before any nonce is drawn */
    OSSL_PARAM ps[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    k->hmac = EVP_MAC_CTX_new(mac);
    k->gcm_enc = EVP_CIPHER_CTX_new();
    k->gcm_dec = EVP_CIPHER_CTX_new();
    k->siv_enc = EVP_CIPHER_CTX_new();
    k->siv_dec = EVP_CIPHER_CTX_new();
    k->siv_work = EVP_CIPHER_CTX_new();
    if (!k->hmac || !k->gcm_enc || !k->gcm_dec || !k->siv_enc || !k->siv_dec || !k->siv_work)
        return SL_ENOMEM;
    if (!EVP_MAC_init(k->hmac, kt, 32, ps) ||
        !EVP_EncryptInit_ex2(k->gcm_enc, gcm, kg, NULL, NULL) ||
        !EVP_DecryptInit_ex2(k->gcm_dec, gcm, kg, NULL, NULL) ||
        !EVP_EncryptInit_ex2(k->siv_enc, siv, ks, NULL, NULL) ||
        !EVP_DecryptInit_ex2(k->siv_dec, siv, ks, NULL, NULL))
        return SL_ENOMEM;
    return SL_OK;
}

sl_err sl_fc_key_new(const uint8_t key[32], const char *name, uint32_t version,
                     const uint8_t *subject_key, const uint8_t *subject_id, sl_fc_key **out) {
    size_t nl = name ? strlen(name) : 0;
    if (!key || !sl_fc_keyname_ok(name, nl) || version == 0 || (subject_key && !subject_id))
        return SL_EINVAL;
    sl_fc_key *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    memcpy(k->name, name, nl);
    k->namelen = nl;
    k->version = version;
    k->has_subject = subject_key != NULL;
    if (k->has_subject) memcpy(k->subject, subject_id, 16);

    uint8_t ikm[64], kt[32], kg[32], ks[64];
    memcpy(ikm, key, 32);
    if (subject_key) memcpy(ikm + 32, subject_key, 32);
    size_t il = subject_key ? 64 : 32;
    const uint8_t *sid = subject_key ? subject_id : NULL;
    sl_err e = derive(key, 32, INFO_TOKEN, NULL, kt, sizeof kt);
    if (!e) e = derive(ikm, il, INFO_GCM, sid, kg, sizeof kg);
    if (!e) e = derive(ikm, il, INFO_SIV, sid, ks, sizeof ks);
    if (!e) e = make_contexts(k, kt, kg, ks);
    OPENSSL_cleanse(ikm, sizeof ikm);
    OPENSSL_cleanse(kt, sizeof kt);
    OPENSSL_cleanse(kg, sizeof kg);
    OPENSSL_cleanse(ks, sizeof ks);
    if (e) {
        sl_fc_key_free(k);
        return e;
    }

    char subj[SL_FC_B64_16 + 1] = "-";
    size_t sl = 1;
    if (k->has_subject) sl = sl_fc_b64url_encode(k->subject, 16, subj);
    subj[sl] = 0;
    k->prefixlen = (size_t)snprintf(k->prefix, sizeof k->prefix, "sl1.g.%s.%u.%s.", k->name,
                                    (unsigned)version, subj);
    k->tprefixlen =
        (size_t)snprintf(k->tprefix, sizeof k->tprefix, "tok1.%s.%u.", k->name, (unsigned)version);
    *out = k;
    return SL_OK;
}

/* ---- tokens ---- */

void sl_fc_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *in, size_t n,
                       uint8_t out[32]) {
    static const uint8_t empty[1];
    unsigned int ol = 0;
    /* A MAC that silently differed would break joins and erasure (forget recomputes subject ids
     * from tokens): no result is better than a wrong one. HMAC only fails without memory. */
    if (!HMAC(EVP_sha256(), key ? key : empty, (int)klen, in ? in : empty, n, out, &ol) || ol != 32)
        abort();
}

void sl_fc_token_mac(const sl_fc_key *k, const uint8_t *in, size_t n, uint8_t out[16]) {
    static const uint8_t empty[1];
    uint8_t mac[32];
    size_t ml = 0;
    /* Re-initialising with no key keeps the schedule (HMAC's precomputed inner/outer state). */
    if (!EVP_MAC_init(k->hmac, NULL, 0, NULL) || !EVP_MAC_update(k->hmac, in ? in : empty, n) ||
        !EVP_MAC_final(k->hmac, mac, &ml, sizeof mac) || ml != 32)
        abort(); /* as in sl_fc_hmac_sha256: never a wrong token */
    memcpy(out, mac, 16);
    OPENSSL_cleanse(mac, sizeof mac);
}

size_t sl_fc_token(const sl_fc_key *k, const uint8_t *in, size_t n, char *out) {
    uint8_t mac[16];
    sl_fc_token_mac(k, in, n, mac);
    memcpy(out, k->tprefix, k->tprefixlen);
    size_t o = k->tprefixlen + sl_fc_b64url_encode(mac, 16, out + k->tprefixlen);
    out[o] = 0;
    return o;
}

/* Position of the first '.' in s[from..n), or n. */
static size_t next_dot(const char *s, size_t from, size_t n) {
    const char *d = from < n ? memchr(s + from, '.', n - from) : NULL;
    return d ? (size_t)(d - s) : n;
}

bool sl_fc_is_token(const char *s, size_t n) {
    if (!s || n < 5 || memcmp(s, "tok1.", 5) != 0) return false;
    size_t k0 = 5, k1 = next_dot(s, k0, n);
    if (k1 == n || !sl_fc_keyname_ok(s + k0, k1 - k0)) return false;
    size_t v1 = next_dot(s, k1 + 1, n);
    uint32_t v;
    if (v1 == n || !parse_version(s + k1 + 1, v1 - k1 - 1, &v)) return false;
    return n - v1 - 1 == SL_FC_B64_16 && b64_check(s + v1 + 1, SL_FC_B64_16) == 16;
}

/* ---- ciphertext strings ---- */

static size_t min_payload(sl_fc_alg alg) {
    /* Every plaintext has its type byte, so an empty one is impossible too. */
    return alg == SL_FC_GCM ? GCM_NONCE + TAG + 1 : TAG + 1;
}

/* Everything before the payload; the payload is left to the caller (checked or decoded). */
static sl_err parse_header(const char *s, size_t n, sl_fc_header *h) {
    sl_fc_header r;
    memset(&r, 0, sizeof r);
    if (!s || n < 6 || memcmp(s, "sl1.", 4) != 0 || s[5] != '.') return SL_ECORRUPT;
    if (s[4] != SL_FC_GCM && s[4] != SL_FC_SIV) return SL_ECORRUPT;
    r.alg = (sl_fc_alg)s[4];
    size_t k0 = 6, k1 = next_dot(s, k0, n);
    if (k1 == n || !sl_fc_keyname_ok(s + k0, k1 - k0)) return SL_ECORRUPT;
    memcpy(r.key, s + k0, k1 - k0);
    size_t v1 = next_dot(s, k1 + 1, n);
    if (v1 == n || !parse_version(s + k1 + 1, v1 - k1 - 1, &r.version)) return SL_ECORRUPT;
    size_t s1 = next_dot(s, v1 + 1, n);
    if (s1 == n) return SL_ECORRUPT;
    size_t sl = s1 - v1 - 1;
    if (sl == 1 && s[v1 + 1] == '-') {
        r.has_subject = false;
    } else if (sl == SL_FC_B64_16 &&
               sl_fc_b64url_decode(s + v1 + 1, sl, r.subject, sizeof r.subject) == 16) {
        r.has_subject = true;
    } else
        return SL_ECORRUPT;
    r.payload_off = s1 + 1;
    *h = r;
    return SL_OK;
}

sl_err sl_fc_parse(const char *s, size_t n, sl_fc_header *h) {
    sl_fc_header r;
    if (parse_header(s, n, &r) != SL_OK) return SL_ECORRUPT;
    long pl = b64_check(s + r.payload_off, n - r.payload_off);
    if (pl < 0 || (size_t)pl < min_payload(r.alg)) return SL_ECORRUPT;
    *h = r;
    return SL_OK;
}

/* One-shot SIV over a context already keyed (a template's copy, or a fresh one). */
static sl_err siv_run(EVP_CIPHER_CTX *c, bool enc, const uint8_t *ad, size_t adlen,
                      const uint8_t *in, size_t n, uint8_t *out, uint8_t v[TAG]) {
    int l;
    uint8_t fin[16];
    if (n == 0 || n > FIELD_MAX || adlen > FIELD_MAX) return SL_EINVAL;
    if (enc) {
        if ((adlen && !EVP_EncryptUpdate(c, NULL, &l, ad, (int)adlen)) ||
            !EVP_EncryptUpdate(c, out, &l, in, (int)n) || !EVP_EncryptFinal_ex(c, fin, &l) ||
            !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, v))
            return SL_ENOMEM;
        return SL_OK;
    }
    /* SIV checks V while decrypting: the expected tag goes in first. */
    if (!EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG, v) ||
        (adlen && !EVP_DecryptUpdate(c, NULL, &l, ad, (int)adlen)))
        return SL_ENOMEM;
    if (!EVP_DecryptUpdate(c, out, &l, in, (int)n) || EVP_DecryptFinal_ex(c, fin, &l) <= 0) {
        OPENSSL_cleanse(out, n); /* unauthenticated plaintext is never handed out */
        return SL_ETAMPER;
    }
    return SL_OK;
}

/* Raw SIV (test vectors): a fresh context per call. Associated data of length 0 counts as none
 * (OpenSSL skips empty updates). OpenSSL 3.0 cannot seal an empty plaintext (its SIV computes V
 * inside the one data update, which the EVP layer skips for 0 bytes): SL_EINVAL. */
static sl_err siv_raw(const uint8_t *key, size_t klen, bool enc, const uint8_t *ad, size_t adlen,
                      const uint8_t *in, size_t n, uint8_t *out) {
    EVP_CIPHER *c = siv_cipher(klen);
    if (!key || (klen != 32 && klen != 48 && klen != 64)) return SL_EINVAL;
    if (!c) return SL_ENOMEM;
    if (!enc && n < TAG) return SL_EINVAL;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x) return SL_ENOMEM;
    sl_err e = SL_ENOMEM;
    if (enc ? EVP_EncryptInit_ex2(x, c, key, NULL, NULL)
            : EVP_DecryptInit_ex2(x, c, key, NULL, NULL)) {
        if (enc)
            e = siv_run(x, true, ad, ad ? adlen : 0, in, n, out + TAG, out);
        else {
            uint8_t v[TAG];
            memcpy(v, in, TAG);
            e = siv_run(x, false, ad, ad ? adlen : 0, in + TAG, n - TAG, out, v);
        }
    }
    EVP_CIPHER_CTX_free(x);
    return e;
}

sl_err sl_fc_siv_seal(const uint8_t *key, size_t klen, const uint8_t *ad, size_t adlen,
                      const uint8_t *pt, size_t n, uint8_t *out) {
    return siv_raw(key, klen, true, ad, adlen, pt, n, out);
}

sl_err sl_fc_siv_open(const uint8_t *key, size_t klen, const uint8_t *ad, size_t adlen,
                      const uint8_t *in, size_t n, uint8_t *out) {
    return siv_raw(key, klen, false, ad, adlen, in, n, out);
}

static bool type_ok(uint8_t t) { return t == SL_FC_T_STR || t == SL_FC_T_JSON || t == SL_FC_T_RAW; }

sl_err sl_fc_encrypt(const sl_fc_key *k, sl_fc_alg alg, uint8_t type, const uint8_t *pt, size_t n,
                     sl_arena *a, char **out, size_t *outlen) {
    if (!type_ok(type) || (alg != SL_FC_GCM && alg != SL_FC_SIV) || n > FIELD_MAX || (n && !pt))
        return SL_EINVAL;
    size_t hdr = alg == SL_FC_GCM ? GCM_NONCE : TAG, trail = alg == SL_FC_GCM ? TAG : 0;
    size_t pl = hdr + 1 + n + trail;
    uint8_t *p = sl_arena_alloc(a, pl);
    char *s = sl_arena_alloc(a, k->prefixlen + b64_len(pl));
    if (!p || !s) return SL_ENOMEM;
    memcpy(s, k->prefix, k->prefixlen);
    s[4] = (char)alg;
    /* type || plaintext, encrypted in place: the arena keeps ciphertext only. */
    p[hdr] = type;
    if (n) memcpy(p + hdr + 1, pt, n);
    const uint8_t *ad = (const uint8_t *)s;
    int l;
    sl_err e = SL_OK;
    if (alg == SL_FC_GCM) {
        uint8_t fin[16];
        if (!next_nonce(p))
            e = SL_ENOMEM;
        else if (!EVP_EncryptInit_ex2(k->gcm_enc, NULL, NULL, p, NULL) ||
                 !EVP_EncryptUpdate(k->gcm_enc, NULL, &l, ad, (int)k->prefixlen) ||
                 !EVP_EncryptUpdate(k->gcm_enc, p + hdr, &l, p + hdr, (int)(n + 1)) ||
                 !EVP_EncryptFinal_ex(k->gcm_enc, fin, &l) ||
                 !EVP_CIPHER_CTX_ctrl(k->gcm_enc, EVP_CTRL_AEAD_GET_TAG, TAG, p + hdr + 1 + n))
            e = SL_ENOMEM;
    } else if (!EVP_CIPHER_CTX_copy(k->siv_work, k->siv_enc))
        e = SL_ENOMEM;
    else
        e = siv_run(k->siv_work, true, ad, k->prefixlen, p + hdr, n + 1, p + hdr, p);
    if (e) {
        OPENSSL_cleanse(p, pl);
        return e;
    }
    *outlen = k->prefixlen + sl_fc_b64url_encode(p, pl, s + k->prefixlen);
    *out = s;
    return SL_OK;
}

sl_err sl_fc_decrypt(const sl_fc_key *k, const char *s, size_t n, const sl_fc_header *h,
                     sl_arena *a, uint8_t *type, uint8_t **pt, size_t *ptlen) {
    /* Re-parsed here rather than trusting `h`: the associated data and the payload's bounds come
     * from s itself, and `h` must describe this very string. */
    sl_fc_header r;
    if (parse_header(s, n, &r) != SL_OK) return SL_ECORRUPT;
    if (h && (h->alg != r.alg || h->version != r.version || h->has_subject != r.has_subject ||
              h->payload_off != r.payload_off || strcmp(h->key, r.key) != 0 ||
              (r.has_subject && memcmp(h->subject, r.subject, 16) != 0)))
        return SL_EINVAL;
    /* A string for another key, version or subject cannot be opened with this context. */
    if (r.version != k->version || strlen(r.key) != k->namelen ||
        memcmp(r.key, k->name, k->namelen) != 0 || r.has_subject != k->has_subject ||
        (r.has_subject && CRYPTO_memcmp(r.subject, k->subject, 16) != 0))
        return SL_ETAMPER;
    size_t b64n = n - r.payload_off;
    long pl = b64_decoded_len(b64n); /* the decode below checks the payload (one pass) */
    if (pl < 0 || (size_t)pl < min_payload(r.alg) || (size_t)pl > FIELD_MAX) return SL_ECORRUPT;
    uint8_t *p = sl_arena_alloc(a, (size_t)pl);
    if (!p) return SL_ENOMEM;
    if (b64_run(s + r.payload_off, b64n, p) != pl) return SL_ECORRUPT;
    const uint8_t *ad = (const uint8_t *)s;
    size_t adlen = r.payload_off;
    uint8_t *body;
    size_t bl;
    int l;
    sl_err e;
    if (r.alg == SL_FC_GCM) {
        body = p + GCM_NONCE;
        bl = (size_t)pl - GCM_NONCE - TAG;
        uint8_t tag[TAG], fin[16];
        memcpy(tag, p + pl - TAG, TAG);
        if (!EVP_DecryptInit_ex2(k->gcm_dec, NULL, NULL, p, NULL) ||
            !EVP_DecryptUpdate(k->gcm_dec, NULL, &l, ad, (int)adlen) ||
            !EVP_DecryptUpdate(k->gcm_dec, body, &l, body, (int)bl) ||
            !EVP_CIPHER_CTX_ctrl(k->gcm_dec, EVP_CTRL_AEAD_SET_TAG, TAG, tag))
            e = SL_ENOMEM;
        else
            e = EVP_DecryptFinal_ex(k->gcm_dec, fin, &l) > 0 ? SL_OK : SL_ETAMPER;
        if (e) OPENSSL_cleanse(body, bl);
    } else {
        body = p + TAG;
        bl = (size_t)pl - TAG;
        if (!EVP_CIPHER_CTX_copy(k->siv_work, k->siv_dec)) return SL_ENOMEM;
        e = siv_run(k->siv_work, false, ad, adlen, body, bl, body, p);
    }
    if (e) return e;
    if (!type_ok(body[0])) {
        OPENSSL_cleanse(body, bl);
        return SL_ECORRUPT; /* authentic but not ours: a writer's bug, not an attack */
    }
    *type = body[0];
    *pt = body + 1;
    *ptlen = bl - 1;
    return SL_OK;
}
