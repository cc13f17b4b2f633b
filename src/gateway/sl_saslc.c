/* SASL client messages for the gateway's upstream connections (see sl_saslc.h). */
#include "gateway/sl_saslc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static const EVP_MD *md_of(int mech) {
    return mech == SL_SCRAM_SHA_256 ? EVP_sha256() : mech == SL_SCRAM_SHA_512 ? EVP_sha512() : NULL;
}

static bool hmac(int mech, const uint8_t *key, size_t klen, const void *d, size_t n, uint8_t *out) {
    unsigned int olen = 0;
    return HMAC(md_of(mech), key, (int)klen, d, n, out, &olen) != NULL &&
           olen == sl_scram_hash_len(mech);
}

/* Printable ASCII except ',' (RFC 5802 "printable"). */
static bool nonce_char(unsigned char c) { return c >= 0x21 && c <= 0x7e && c != ','; }

/* Next comma-separated attribute of m[len] from *pos. */
static bool next_attr(const uint8_t *m, size_t len, size_t *pos, const char **a, size_t *alen) {
    if (*pos > len) return false;
    size_t s = *pos, e = s;
    while (e < len && m[e] != ',') e++;
    *a = (const char *)m + s;
    *alen = e - s;
    *pos = e + 1;
    return true;
}

sl_err sl_saslc_parse_server_first(const uint8_t *m, size_t len, const char *cnonce,
                                   size_t cnonce_len, sl_saslc_server_first *out) {
    memset(out, 0, sizeof *out);
    if (!m || len == 0 || len > SL_SASLC_MAX_MSG) return SL_EPROTO;
    for (size_t i = 0; i < len; i++)
        if (m[i] < 0x20 || m[i] > 0x7e) return SL_EPROTO;
    if (len >= 2 && m[0] == 'e' && m[1] == '=') return SL_EAUTH;
    if (len >= 2 && m[0] == 'm' && m[1] == '=') return SL_EAUTH; /* mandatory extension */
    size_t pos = 0, alen;
    const char *a;
    /* r=<nonce> */
    if (!next_attr(m, len, &pos, &a, &alen) || alen < 3 || a[0] != 'r' || a[1] != '=')
        return SL_EPROTO;
    out->nonce = a + 2;
    out->nonce_len = alen - 2;
    for (size_t i = 0; i < out->nonce_len; i++)
        if (!nonce_char((unsigned char)out->nonce[i])) return SL_EPROTO;
    if (out->nonce_len <= cnonce_len || memcmp(out->nonce, cnonce, cnonce_len) != 0)
        return SL_EAUTH;
    /* s=<base64 salt> */
    if (!next_attr(m, len, &pos, &a, &alen) || alen < 3 || a[0] != 's' || a[1] != '=')
        return SL_EPROTO;
    long sl = sl_b64_decode(a + 2, alen - 2, out->salt, sizeof out->salt);
    if (sl <= 0) return SL_EPROTO;
    out->salt_len = (size_t)sl;
    /* i=<iterations> */
    if (!next_attr(m, len, &pos, &a, &alen) || alen < 3 || a[0] != 'i' || a[1] != '=')
        return SL_EPROTO;
    int64_t it = 0;
    for (size_t i = 2; i < alen; i++) {
        if (a[i] < '0' || a[i] > '9' || (i == 2 && a[i] == '0' && alen > 3)) return SL_EPROTO;
        it = it * 10 + (a[i] - '0');
        if (it > SL_SASLC_MAX_ITER) return SL_EAUTH;
    }
    if (it < SL_SASLC_MIN_ITER) return SL_EAUTH;
    out->iterations = (int32_t)it;
    /* Optional extensions: "x=..." each; nothing empty. */
    while (pos <= len) {
        if (!next_attr(m, len, &pos, &a, &alen)) break;
        if (alen < 2 || a[1] != '=' ||
            !((a[0] >= 'a' && a[0] <= 'z') || (a[0] >= 'A' && a[0] <= 'Z')))
            return SL_EPROTO;
    }
    return SL_OK;
}

sl_err sl_saslc_scram_first(sl_saslc_scram *s, int mech, const char *user, const char *fixed_nonce,
                            char *out, size_t cap, size_t *out_len) {
    memset(s, 0, sizeof *s);
    size_t ul = user ? strlen(user) : 0;
    if (!md_of(mech) || ul == 0 || ul > SL_SCRAM_MAX_USER) return SL_EINVAL;
    s->mech = mech;
    if (fixed_nonce) {
        size_t n = strlen(fixed_nonce);
        if (n == 0 || n >= sizeof s->nonce) return SL_EINVAL;
        for (size_t i = 0; i < n; i++)
            if (!nonce_char((unsigned char)fixed_nonce[i])) return SL_EINVAL;
        memcpy(s->nonce, fixed_nonce, n + 1);
        s->nonce_len = n;
    } else {
        uint8_t rnd[SL_SASLC_NONCE_BYTES];
        if (RAND_bytes(rnd, sizeof rnd) != 1) return SL_ENOMEM;
        s->nonce_len = sl_b64_encode(rnd, sizeof rnd, s->nonce);
    }
    /* client-first-message-bare: n=<saslname>,r=<nonce> */
    size_t o = 0;
    char *b = s->first_bare;
    b[o++] = 'n';
    b[o++] = '=';
    for (size_t i = 0; i < ul; i++) {
        unsigned char c = (unsigned char)user[i];
        if (c == 0) return SL_EINVAL;
        if (c == ',') {
            memcpy(b + o, "=2C", 3);
            o += 3;
        } else if (c == '=') {
            memcpy(b + o, "=3D", 3);
            o += 3;
        } else {
            b[o++] = (char)c;
        }
    }
    memcpy(b + o, ",r=", 3);
    o += 3;
    memcpy(b + o, s->nonce, s->nonce_len);
    o += s->nonce_len;
    b[o] = 0;
    s->first_bare_len = o;
    if (cap < o + 4) return SL_EINVAL;
    memcpy(out, "n,,", 3);
    memcpy(out + 3, b, o);
    out[3 + o] = 0;
    *out_len = o + 3;
    s->step = 1;
    return SL_OK;
}

sl_err sl_saslc_scram_final(sl_saslc_scram *s, const char *pw, size_t pw_len, const uint8_t *msg,
                            size_t len, char *out, size_t cap, size_t *out_len) {
    if (s->step != 1) return SL_ESTATE;
    s->step = 3; /* any failure ends the exchange */
    sl_saslc_server_first sf;
    sl_err e = sl_saslc_parse_server_first(msg, len, s->nonce, s->nonce_len, &sf);
    if (e) return e;
    size_t hl = sl_scram_hash_len(s->mech);
    /* client-final-message-without-proof: c=biws,r=<nonce> ("biws" = base64 of "n,,") */
    char wp[SL_SASLC_MAX_MSG + 16];
    size_t wpl = 0;
    memcpy(wp, "c=biws,r=", 9);
    wpl = 9;
    memcpy(wp + wpl, sf.nonce, sf.nonce_len);
    wpl += sf.nonce_len;
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t aml = s->first_bare_len + 1 + len + 1 + wpl;
    char am[sizeof s->first_bare + SL_SASLC_MAX_MSG + sizeof wp + 2];
    if (aml > sizeof am) return SL_EPROTO;
    memcpy(am, s->first_bare, s->first_bare_len);
    am[s->first_bare_len] = ',';
    memcpy(am + s->first_bare_len + 1, msg, len);
    am[s->first_bare_len + 1 + len] = ',';
    memcpy(am + s->first_bare_len + 2 + len, wp, wpl);
    uint8_t salted[SL_SCRAM_MAX_HASH], ck[SL_SCRAM_MAX_HASH], stored[SL_SCRAM_MAX_HASH],
        csig[SL_SCRAM_MAX_HASH], sk[SL_SCRAM_MAX_HASH], proof[SL_SCRAM_MAX_HASH];
    unsigned int dl = 0;
    bool ok = !sl_scram_salted_password(s->mech, pw, pw_len, sf.salt, sf.salt_len, sf.iterations,
                                        salted) &&
              hmac(s->mech, salted, hl, "Client Key", 10, ck) &&
              EVP_Digest(ck, hl, stored, &dl, md_of(s->mech), NULL) == 1 && dl == hl &&
              hmac(s->mech, stored, hl, am, aml, csig) &&
              hmac(s->mech, salted, hl, "Server Key", 10, sk) &&
              hmac(s->mech, sk, hl, am, aml, s->server_sig);
    if (ok) {
        for (size_t i = 0; i < hl; i++) proof[i] = ck[i] ^ csig[i];
        char p64[(SL_SCRAM_MAX_HASH / 3 + 1) * 4 + 1];
        size_t pl = sl_b64_encode(proof, hl, p64);
        if (wpl + 3 + pl + 1 > cap) {
            ok = false;
            e = SL_EINVAL;
        } else {
            memcpy(out, wp, wpl);
            memcpy(out + wpl, ",p=", 3);
            memcpy(out + wpl + 3, p64, pl);
            out[wpl + 3 + pl] = 0;
            *out_len = wpl + 3 + pl;
        }
        OPENSSL_cleanse(p64, sizeof p64);
    } else {
        e = SL_ENOMEM;
    }
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(ck, sizeof ck);
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(csig, sizeof csig);
    OPENSSL_cleanse(sk, sizeof sk);
    OPENSSL_cleanse(proof, sizeof proof);
    if (!ok) return e;
    s->step = 2;
    return SL_OK;
}

sl_err sl_saslc_scram_verify(sl_saslc_scram *s, const uint8_t *m, size_t len) {
    if (s->step != 2) return SL_ESTATE;
    s->step = 3;
    if (!m || len < 2 || len > SL_SASLC_MAX_MSG) return SL_EPROTO;
    if (m[0] == 'e' && m[1] == '=') return SL_EAUTH;
    if (m[0] != 'v' || m[1] != '=') return SL_EPROTO;
    size_t end = 2;
    while (end < len && m[end] != ',') end++; /* extensions after the signature are ignored */
    size_t hl = sl_scram_hash_len(s->mech);
    uint8_t sig[SL_SCRAM_MAX_HASH + 3];
    long n = sl_b64_decode((const char *)m + 2, end - 2, sig, sizeof sig);
    if (n < 0) return SL_EPROTO;
    if ((size_t)n != hl) return SL_EAUTH;
    return CRYPTO_memcmp(sig, s->server_sig, hl) == 0 ? SL_OK : SL_EAUTH;
}

void sl_saslc_scram_clear(sl_saslc_scram *s) { OPENSSL_cleanse(s, sizeof *s); }

sl_err sl_saslc_plain(const char *user, const char *pw, size_t pw_len, uint8_t *out, size_t cap,
                      size_t *out_len) {
    size_t ul = user ? strlen(user) : 0;
    if (ul == 0 || memchr(pw, 0, pw_len) || 2 + ul + pw_len > cap) return SL_EINVAL;
    out[0] = 0;
    memcpy(out + 1, user, ul);
    out[1 + ul] = 0;
    memcpy(out + 2 + ul, pw, pw_len);
    *out_len = 2 + ul + pw_len;
    return SL_OK;
}

sl_err sl_saslc_oauthbearer(const char *token, size_t tl, uint8_t *out, size_t cap,
                            size_t *out_len) {
    static const char pre[] = "n,,\x01"
                              "auth=Bearer ";
    size_t pl = sizeof pre - 1;
    if (tl == 0 || pl + tl + 2 > cap) return SL_EINVAL;
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] > 0x7e) return SL_EINVAL;
    memcpy(out, pre, pl);
    memcpy(out + pl, token, tl);
    out[pl + tl] = 1;
    out[pl + tl + 1] = 1;
    *out_len = pl + tl + 2;
    return SL_OK;
}
