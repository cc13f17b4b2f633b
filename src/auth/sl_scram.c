#include "sl_scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

const char *sl_scram_mech_name(int mech) {
    return mech == SL_SCRAM_SHA_256   ? "SCRAM-SHA-256"
           : mech == SL_SCRAM_SHA_512 ? "SCRAM-SHA-512"
                                      : NULL;
}

int sl_scram_mech_from_name(const char *name, size_t len) {
    if (len == 13 && !memcmp(name, "SCRAM-SHA-256", 13)) return SL_SCRAM_SHA_256;
    if (len == 13 && !memcmp(name, "SCRAM-SHA-512", 13)) return SL_SCRAM_SHA_512;
    return 0;
}

size_t sl_scram_hash_len(int mech) {
    return mech == SL_SCRAM_SHA_256 ? 32 : mech == SL_SCRAM_SHA_512 ? 64 : 0;
}

static const EVP_MD *md_of(int mech) {
    return mech == SL_SCRAM_SHA_256 ? EVP_sha256() : mech == SL_SCRAM_SHA_512 ? EVP_sha512() : NULL;
}

static bool hmac(int mech, const uint8_t *key, size_t klen, const void *d, size_t n, uint8_t *out) {
    unsigned int olen = 0;
    return HMAC(md_of(mech), key, (int)klen, d, n, out, &olen) != NULL &&
           olen == sl_scram_hash_len(mech);
}

static bool digest(int mech, const uint8_t *d, size_t n, uint8_t *out) {
    unsigned int olen = 0;
    return EVP_Digest(d, n, out, &olen, md_of(mech), NULL) == 1 && olen == sl_scram_hash_len(mech);
}

sl_err sl_scram_salted_password(int mech, const void *pw, size_t pw_len, const uint8_t *salt,
                                size_t salt_len, int32_t iterations, uint8_t *out) {
    size_t hl = sl_scram_hash_len(mech);
    if (!hl || iterations < 1 || pw_len > INT32_MAX || salt_len > INT32_MAX) return SL_EINVAL;
    if (PKCS5_PBKDF2_HMAC(pw, (int)pw_len, salt, (int)salt_len, iterations, md_of(mech), (int)hl,
                          out) != 1)
        return SL_ENOMEM;
    return SL_OK;
}

sl_err sl_scram_cred_from_salted(int mech, const uint8_t *salted, const uint8_t *salt,
                                 size_t salt_len, int32_t iterations, sl_scram_cred *out) {
    size_t hl = sl_scram_hash_len(mech);
    if (!hl || salt_len == 0 || salt_len > SL_SCRAM_MAX_SALT) return SL_EINVAL;
    uint8_t client_key[SL_SCRAM_MAX_HASH];
    memset(out, 0, sizeof *out);
    out->mech = mech;
    out->iterations = iterations;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    bool ok = hmac(mech, salted, hl, "Client Key", 10, client_key) &&
              digest(mech, client_key, hl, out->stored_key) &&
              hmac(mech, salted, hl, "Server Key", 10, out->server_key);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return ok ? SL_OK : SL_ENOMEM;
}

sl_err sl_scram_cred_from_password(int mech, const void *pw, size_t pw_len, int32_t iterations,
                                   sl_scram_cred *out) {
    uint8_t salt[SL_SCRAM_SALT_LEN], salted[SL_SCRAM_MAX_HASH];
    if (RAND_bytes(salt, sizeof salt) != 1) return SL_ENOMEM;
    sl_err e = sl_scram_salted_password(mech, pw, pw_len, salt, sizeof salt, iterations, salted);
    if (!e) e = sl_scram_cred_from_salted(mech, salted, salt, sizeof salt, iterations, out);
    OPENSSL_cleanse(salted, sizeof salted);
    return e;
}

bool sl_scram_check_password(const sl_scram_cred *c, const void *pw, size_t pw_len) {
    size_t hl = sl_scram_hash_len(c->mech);
    uint8_t salted[SL_SCRAM_MAX_HASH], ck[SL_SCRAM_MAX_HASH], sk[SL_SCRAM_MAX_HASH];
    bool ok = hl &&
              !sl_scram_salted_password(c->mech, pw, pw_len, c->salt, c->salt_len, c->iterations,
                                        salted) &&
              hmac(c->mech, salted, hl, "Client Key", 10, ck) && digest(c->mech, ck, hl, sk);
    ok = ok && CRYPTO_memcmp(sk, c->stored_key, hl) == 0;
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(ck, sizeof ck);
    return ok;
}

/* ---- base64 ---- */

size_t sl_b64_encode(const uint8_t *in, size_t n, char *out) {
    if (n == 0) {
        out[0] = 0;
        return 0;
    }
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64v(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

long sl_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)in[i + k];
            if (ch == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1; /* data after padding */
            if ((v[k] = b64v(ch)) < 0) return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t take = 3 - (size_t)pad;
        /* Non-canonical trailing bits would let two encodings mean one value. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -1;
        if (o + take > cap) return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (take > 1) out[o++] = (uint8_t)(w >> 8);
        if (take > 2) out[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* ---- parsers ---- */

/* The next comma-separated attribute starting at *pos; returns false at the end. */
static bool next_attr(const uint8_t *m, size_t len, size_t *pos, sl_str *attr) {
    if (*pos > len) return false;
    size_t s = *pos, e = s;
    while (e < len && m[e] != ',') e++;
    attr->p = (const char *)m + s;
    attr->len = (int32_t)(e - s);
    *pos = e + 1; /* past the comma (or past the end) */
    return true;
}

/* saslname: value-safe chars with "=2C" and "=3D" escapes; no NUL or control bytes. */
static bool unescape_name(sl_str v, char *out, size_t cap, size_t *out_len) {
    size_t o = 0;
    if (v.len <= 0) return false;
    for (int32_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch == '=') {
            if (i + 2 >= v.len) return false;
            if (v.p[i + 1] == '2' && v.p[i + 2] == 'C')
                ch = ',';
            else if (v.p[i + 1] == '3' && v.p[i + 2] == 'D')
                ch = '=';
            else
                return false;
            i += 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
        if (o + 1 >= cap) return false;
        out[o++] = (char)ch;
    }
    out[o] = 0;
    *out_len = o;
    return true;
}

static bool valid_nonce(sl_str n) {
    if (n.len <= 0) return false;
    for (int32_t i = 0; i < n.len; i++) {
        unsigned char ch = (unsigned char)n.p[i];
        if (ch < 0x21 || ch > 0x7e || ch == ',') return false;
    }
    return true;
}

/* An extension: key=value with an alphanumeric key; the key must not collide with the
 * attributes RFC 5802 defines positions for. */
static bool valid_ext(sl_str a) {
    int32_t k = 0;
    while (k < a.len && ((a.p[k] >= 'a' && a.p[k] <= 'z') || (a.p[k] >= 'A' && a.p[k] <= 'Z') ||
                         (a.p[k] >= '0' && a.p[k] <= '9')))
        k++;
    if (k == 0 || k >= a.len || a.p[k] != '=') return false;
    if (k == 1 && strchr("nrcpmsiaev", a.p[0])) return false;
    for (int32_t i = k + 1; i < a.len; i++)
        if ((unsigned char)a.p[i] < 0x20) return false;
    return true;
}

static bool attr_is(sl_str a, char name) { return a.len >= 2 && a.p[0] == name && a.p[1] == '='; }
static sl_str attr_val(sl_str a) { return (sl_str){a.p + 2, a.len - 2}; }

sl_err sl_scram_parse_client_first(const uint8_t *m, size_t len, sl_scram_client_first *out) {
    memset(out, 0, sizeof *out);
    if (len == 0 || len > SL_SCRAM_MAX_MSG || memchr(m, 0, len)) return SL_EPROTO;
    size_t pos = 0;
    sl_str a;
    /* gs2-cbind-flag: only "n" (client does not support binding) or "y" (client thinks we do
     * not); "p=" asks for channel binding, which needs -PLUS mechanisms we do not offer. */
    if (!next_attr(m, len, &pos, &a) || a.len != 1 || (a.p[0] != 'n' && a.p[0] != 'y'))
        return a.len > 1 && a.p[0] == 'p' ? SL_EAUTH : SL_EPROTO;
    if (pos >= len || !next_attr(m, len, &pos, &a)) return SL_EPROTO;
    if (a.len > 0) {
        if (!attr_is(a, 'a') ||
            !unescape_name(attr_val(a), out->authzid_buf, sizeof out->authzid_buf, &out->user_len))
            return SL_EPROTO;
        out->authzid = (sl_str){out->authzid_buf, (int32_t)out->user_len};
    }
    out->gs2_header = (sl_str){(const char *)m, (int32_t)pos};
    if (pos >= len) return SL_EPROTO;
    out->bare = (sl_str){(const char *)m + pos, (int32_t)(len - pos)};
    if (!next_attr(m, len, &pos, &a) || !attr_is(a, 'n') ||
        !unescape_name(attr_val(a), out->user, sizeof out->user, &out->user_len))
        return SL_EPROTO;
    if (!next_attr(m, len, &pos, &a) || !attr_is(a, 'r') || !valid_nonce(attr_val(a)))
        return SL_EPROTO;
    out->nonce = attr_val(a);
    while (pos <= len && next_attr(m, len, &pos, &a)) {
        if (!valid_ext(a)) return SL_EPROTO;
        if (a.len >= 10 && !memcmp(a.p, "tokenauth=", 10))
            out->token_auth = a.len == 14 && !memcmp(a.p + 10, "true", 4);
    }
    if (m[len - 1] == ',') return SL_EPROTO;
    return SL_OK;
}

sl_err sl_scram_parse_client_final(const uint8_t *m, size_t len, sl_scram_client_final *out) {
    memset(out, 0, sizeof *out);
    if (len == 0 || len > SL_SCRAM_MAX_MSG || memchr(m, 0, len) || m[len - 1] == ',')
        return SL_EPROTO;
    size_t pos = 0, last_start = 0;
    sl_str a;
    if (!next_attr(m, len, &pos, &a) || !attr_is(a, 'c') || a.len < 3) return SL_EPROTO;
    out->channel_binding = attr_val(a);
    if (!next_attr(m, len, &pos, &a) || !attr_is(a, 'r') || !valid_nonce(attr_val(a)))
        return SL_EPROTO;
    out->nonce = attr_val(a);
    bool have_proof = false;
    while (pos <= len) {
        size_t start = pos;
        if (!next_attr(m, len, &pos, &a)) break;
        if (have_proof) return SL_EPROTO; /* the proof must be the last attribute */
        if (attr_is(a, 'p')) {
            have_proof = true;
            last_start = start;
            sl_str v = attr_val(a);
            long n = sl_b64_decode(v.p, (size_t)v.len, out->proof, sizeof out->proof);
            if (n <= 0) return SL_EPROTO;
            out->proof_len = (size_t)n;
        } else if (!valid_ext(a)) {
            return SL_EPROTO;
        }
    }
    if (!have_proof) return SL_EPROTO;
    out->without_proof = (sl_str){(const char *)m, (int32_t)(last_start - 1)};
    return SL_OK;
}

/* ---- the exchange ---- */

void sl_scram_server_clear(sl_scram_server *s) { OPENSSL_cleanse(s, sizeof *s); }

sl_err sl_scram_server_first_nonce(sl_scram_server *s, int mech, const uint8_t *msg, size_t len,
                                   sl_scram_lookup_fn lookup, void *ctx, char *out, size_t cap,
                                   size_t *out_len, const char *fixed_nonce) {
    sl_scram_server_clear(s);
    s->mech = mech;
    s->step = 2; /* any failure leaves the exchange finished */
    sl_scram_client_first cf;
    sl_err e = sl_scram_parse_client_first(msg, len, &cf);
    if (e) return e;
    if (cf.token_auth) return SL_EAUTH; /* delegation tokens are not supported */
    if (cf.authzid.len > 0 && strcmp(cf.authzid_buf, cf.user) != 0) return SL_EAUTH;
    if ((size_t)cf.nonce.len >= sizeof s->client_nonce) return SL_EPROTO;
    memcpy(s->user, cf.user, strlen(cf.user) + 1);
    sl_b64_encode((const uint8_t *)cf.gs2_header.p, (size_t)cf.gs2_header.len, s->gs2_b64);
    memcpy(s->client_nonce, cf.nonce.p, (size_t)cf.nonce.len);
    s->client_nonce_len = (size_t)cf.nonce.len;
    memcpy(s->first_bare, cf.bare.p, (size_t)cf.bare.len);
    s->first_bare_len = (size_t)cf.bare.len;
    s->known = lookup(ctx, s->user, strlen(s->user), mech, &s->cred);

    uint8_t rnd[SL_SCRAM_NONCE_LEN * 3 / 4];
    char snonce[SL_SCRAM_NONCE_LEN + 1], salt64[(SL_SCRAM_MAX_SALT / 3 + 1) * 4 + 1];
    if (fixed_nonce) {
        snprintf(snonce, sizeof snonce, "%s", fixed_nonce);
    } else {
        if (RAND_bytes(rnd, sizeof rnd) != 1) return SL_ENOMEM;
        sl_b64_encode(rnd, sizeof rnd, snonce);
    }
    sl_b64_encode(s->cred.salt, s->cred.salt_len, salt64);
    int n = snprintf(s->server_first, sizeof s->server_first, "r=%.*s%s,s=%s,i=%d",
                     (int)s->client_nonce_len, s->client_nonce, snonce, salt64,
                     (int)s->cred.iterations);
    if (n < 0 || (size_t)n >= sizeof s->server_first || (size_t)n > cap) return SL_EPROTO;
    s->server_first_len = (size_t)n;
    memcpy(out, s->server_first, (size_t)n);
    *out_len = (size_t)n;
    s->step = 1;
    return SL_OK;
}

sl_err sl_scram_server_first(sl_scram_server *s, int mech, const uint8_t *msg, size_t len,
                             sl_scram_lookup_fn lookup, void *ctx, char *out, size_t cap,
                             size_t *out_len) {
    return sl_scram_server_first_nonce(s, mech, msg, len, lookup, ctx, out, cap, out_len, NULL);
}

/* The nonce the client must echo: client nonce + server part, or (librdkafka <= 2.6, which
 * prefixes the whole server nonce with its own nonce again) client nonce twice + server part. */
static bool nonce_ok(const sl_scram_server *s, sl_str got) {
    const char *full = s->server_first + 2; /* after "r=" */
    size_t full_len = (size_t)(strchr(full, ',') - full);
    if ((size_t)got.len == full_len) return memcmp(got.p, full, full_len) == 0;
    if ((size_t)got.len == full_len + s->client_nonce_len)
        return memcmp(got.p, s->client_nonce, s->client_nonce_len) == 0 &&
               memcmp(got.p + s->client_nonce_len, full, full_len) == 0;
    return false;
}

sl_err sl_scram_server_final(sl_scram_server *s, const uint8_t *msg, size_t len, char *out,
                             size_t cap, size_t *out_len) {
    if (s->step != 1) return SL_EAUTH;
    s->step = 2;
    size_t hl = sl_scram_hash_len(s->mech);
    sl_scram_client_final cf;
    if (sl_scram_parse_client_final(msg, len, &cf)) return SL_EAUTH;
    if ((size_t)cf.channel_binding.len != strlen(s->gs2_b64) ||
        memcmp(cf.channel_binding.p, s->gs2_b64, strlen(s->gs2_b64)) != 0 ||
        !nonce_ok(s, cf.nonce) || cf.proof_len != hl)
        return SL_EAUTH;
    /* AuthMessage := client-first-bare "," server-first "," client-final-without-proof */
    size_t am_len = s->first_bare_len + 1 + s->server_first_len + 1 + (size_t)cf.without_proof.len;
    char am[SL_SCRAM_MAX_MSG * 3 + 512];
    if (am_len > sizeof am) return SL_EAUTH;
    char *p = am;
    memcpy(p, s->first_bare, s->first_bare_len);
    p += s->first_bare_len;
    *p++ = ',';
    memcpy(p, s->server_first, s->server_first_len);
    p += s->server_first_len;
    *p++ = ',';
    memcpy(p, cf.without_proof.p, (size_t)cf.without_proof.len);

    uint8_t sig[SL_SCRAM_MAX_HASH], ck[SL_SCRAM_MAX_HASH], sk[SL_SCRAM_MAX_HASH];
    uint8_t ssig[SL_SCRAM_MAX_HASH];
    bool ok = hmac(s->mech, s->cred.stored_key, hl, am, am_len, sig);
    for (size_t i = 0; i < hl; i++) ck[i] = cf.proof[i] ^ sig[i];
    ok = ok && digest(s->mech, ck, hl, sk);
    ok = ok && hmac(s->mech, s->cred.server_key, hl, am, am_len, ssig);
    /* Same work for known and mock users; `known` only enters after the comparison. */
    int diff = CRYPTO_memcmp(sk, s->cred.stored_key, hl);
    ok = ok && diff == 0 && s->known;
    OPENSSL_cleanse(ck, sizeof ck);
    OPENSSL_cleanse(sig, sizeof sig);
    if (!ok) return SL_EAUTH;
    char v[(SL_SCRAM_MAX_HASH / 3 + 1) * 4 + 1];
    sl_b64_encode(ssig, hl, v);
    int n = snprintf(out, cap, "v=%s", v);
    if (n < 0 || (size_t)n >= cap) return SL_EAUTH;
    *out_len = (size_t)n;
    return SL_OK;
}
