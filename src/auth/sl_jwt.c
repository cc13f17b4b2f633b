#include "sl_jwt.h"

#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/sl_b64.h"
#include "auth/sl_json.h"
#include "auth/sl_jwks.h"
#include "base/sl_arena.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"

enum { MAX_AUD = 16, MAX_AUD_LEN = 256 };
/* NumericDate bound (seconds): year ~2286 * 10; keeps the ms conversion far from overflow. */
#define MAX_NUMERIC_DATE 1e11

struct sl_jwt_validator {
    sl_jwt_config cfg;
    char aud[MAX_AUD][MAX_AUD_LEN];
    int naud;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    /* Guarded by mu. */
    sl_jwks *keys;
    uint64_t generation;
    bool stop, want_fetch;
    int64_t last_kid_fetch_ms; /* monotonic; rate limit of unknown-kid refetches */
    pthread_t thread;
};

void sl_jwt_config_defaults(sl_jwt_config *o) {
    memset(o, 0, sizeof *o);
    o->refresh_ms = 3600000;
    o->min_refetch_ms = 10000;
    o->fetch_timeout_ms = 10000;
    o->clock_skew_s = 30;
    memcpy(o->sub_claim, "sub", 4);
    memcpy(o->scope_claim, "scope", 6);
}

void sl_jwt_config_from(sl_jwt_config *o, const sl_config *c) {
    sl_jwt_config_defaults(o);
    memcpy(o->jwks_url, c->sasl_oauthbearer_jwks_endpoint_url, sizeof o->jwks_url);
    memcpy(o->jwks_truststore, c->sluice_sasl_oauthbearer_jwks_endpoint_truststore,
           sizeof o->jwks_truststore);
    o->refresh_ms = c->sasl_oauthbearer_jwks_endpoint_refresh_ms;
    memcpy(o->expected_issuer, c->sasl_oauthbearer_expected_issuer, sizeof o->expected_issuer);
    memcpy(o->expected_audience, c->sasl_oauthbearer_expected_audience,
           sizeof o->expected_audience);
    o->clock_skew_s = c->sasl_oauthbearer_clock_skew_seconds;
    memcpy(o->sub_claim, c->sasl_oauthbearer_sub_claim_name, sizeof o->sub_claim);
    memcpy(o->scope_claim, c->sasl_oauthbearer_scope_claim_name, sizeof o->scope_claim);
}

/* Fetches and parses the key set (no lock held: may block on the network). */
static sl_jwks *load_keys(const sl_jwt_config *cfg, char *err, size_t elen) {
    char *body = NULL;
    size_t blen = 0;
    if (sl_jwks_fetch(cfg->jwks_url, cfg->jwks_truststore, cfg->fetch_timeout_ms, &body, &blen, err,
                      elen) != SL_OK)
        return NULL;
    sl_jwks *ks = sl_jwks_parse(body, blen, err, elen);
    free(body);
    return ks;
}

static struct timespec mono_abs(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    return ts;
}

static void *refresh_main(void *arg) {
    sl_jwt_validator *v = arg;
    pthread_mutex_lock(&v->mu);
    int64_t next = sl_mono_ms() + v->cfg.refresh_ms;
    while (!v->stop) {
        if (!v->want_fetch && sl_mono_ms() < next) {
            struct timespec ts = mono_abs(next);
            pthread_cond_timedwait(&v->cv, &v->mu, &ts);
            continue;
        }
        v->want_fetch = false;
        pthread_mutex_unlock(&v->mu);
        char err[256] = "";
        sl_jwks *ks = load_keys(&v->cfg, err, sizeof err);
        if (!ks)
            SL_WARN("oauth", "JWKS refresh failed; keeping the current keys", "reason=\"%s\"", err);
        pthread_mutex_lock(&v->mu);
        if (ks) {
            sl_jwks *old = v->keys;
            v->keys = ks;
            v->generation++;
            ks = old;
        }
        next = sl_mono_ms() + v->cfg.refresh_ms;
        pthread_mutex_unlock(&v->mu);
        sl_jwks_free(ks); /* the replaced set: nobody holds pointers into it (keys are up-ref'd) */
        pthread_mutex_lock(&v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

sl_jwt_validator *sl_jwt_validator_new(const sl_jwt_config *cfg, char *err, size_t elen) {
    if (!cfg->jwks_url[0]) {
        snprintf(err, elen, "sasl.oauthbearer.jwks.endpoint.url: required for OAUTHBEARER");
        return NULL;
    }
    if (strncmp(cfg->jwks_url, "file://", 7) && strncmp(cfg->jwks_url, "https://", 8)) {
        snprintf(err, elen,
                 "sasl.oauthbearer.jwks.endpoint.url: must be a file:// or https:// URL");
        return NULL;
    }
    if (!cfg->expected_issuer[0]) {
        snprintf(err, elen,
                 "sasl.oauthbearer.expected.issuer: required when "
                 "sasl.oauthbearer.jwks.endpoint.url is set");
        return NULL;
    }
    if (cfg->refresh_ms <= 0 || cfg->clock_skew_s < 0 || cfg->min_refetch_ms < 0 ||
        cfg->fetch_timeout_ms <= 0 || !cfg->sub_claim[0]) {
        snprintf(err, elen, "sasl.oauthbearer.*: invalid refresh, skew or claim name");
        return NULL;
    }
    sl_jwt_validator *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, elen, "out of memory");
        return NULL;
    }
    v->cfg = *cfg;
    for (const char *p = cfg->expected_audience; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && p[t - 1] == ' ') t--;
        if (t) {
            if (v->naud == MAX_AUD || t >= MAX_AUD_LEN) {
                snprintf(err, elen,
                         "sasl.oauthbearer.expected.audience: at most %d audiences "
                         "of under %d bytes",
                         MAX_AUD, MAX_AUD_LEN);
                free(v);
                return NULL;
            }
            memcpy(v->aud[v->naud], p, t);
            v->aud[v->naud++][t] = 0;
        }
        p += n;
    }
    if (!v->naud) {
        snprintf(err, elen,
                 "sasl.oauthbearer.expected.audience: required when "
                 "sasl.oauthbearer.jwks.endpoint.url is set");
        free(v);
        return NULL;
    }
    char lerr[256] = "";
    v->keys = load_keys(cfg, lerr, sizeof lerr);
    if (!v->keys) {
        snprintf(err, elen, "sasl.oauthbearer.jwks.endpoint.url: %s", lerr);
        free(v);
        return NULL;
    }
    v->generation = 1;
    v->last_kid_fetch_ms = sl_mono_ms();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&v->mu, NULL);
    if (pthread_create(&v->thread, NULL, refresh_main, v) != 0) {
        snprintf(err, elen, "cannot start the JWKS refresh thread");
        pthread_cond_destroy(&v->cv);
        pthread_mutex_destroy(&v->mu);
        sl_jwks_free(v->keys);
        free(v);
        return NULL;
    }
    return v;
}

void sl_jwt_validator_free(sl_jwt_validator *v) {
    if (!v) return;
    pthread_mutex_lock(&v->mu);
    v->stop = true;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    /* A fetch in progress finishes first: bounded by fetch_timeout_ms. */
    pthread_join(v->thread, NULL);
    pthread_cond_destroy(&v->cv);
    pthread_mutex_destroy(&v->mu);
    sl_jwks_free(v->keys);
    free(v);
}

uint64_t sl_jwt_validator_generation(sl_jwt_validator *v) {
    pthread_mutex_lock(&v->mu);
    uint64_t g = v->generation;
    pthread_mutex_unlock(&v->mu);
    return g;
}

void sl_jwt_validator_refresh(sl_jwt_validator *v) {
    pthread_mutex_lock(&v->mu);
    v->want_fetch = true;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

static sl_err deny(char *why, size_t wlen, const char *reason) {
    if (wlen) snprintf(why, wlen, "%s", reason);
    return SL_EAUTH;
}

/* Decodes one base64url part into the arena (NUL-terminated for the JSON parts). */
static uint8_t *part(sl_arena *a, const char *s, size_t n, size_t *out) {
    size_t cap = sl_b64_dec_max(n) + 1;
    uint8_t *b = sl_arena_alloc(a, cap);
    if (!b || !sl_b64url_decode(s, n, b, cap - 1, out)) return NULL;
    b[*out] = 0;
    return b;
}

/* JWS ES256 signatures are r||s (RFC 7518 §3.4); OpenSSL verifies DER ECDSA-Sig-Value. */
static int es256_to_der(const uint8_t *sig, uint8_t *der, size_t cap) {
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    int n = -1;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        if (i2d_ECDSA_SIG(es, NULL) <= (int)cap) {
            uint8_t *p = der;
            n = i2d_ECDSA_SIG(es, &p);
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

static bool verify_sig(EVP_PKEY *pk, bool ec, const char *input, size_t ilen, const uint8_t *sig,
                       size_t slen) {
    uint8_t der[80];
    if (ec) {
        int n = slen == 64 ? es256_to_der(sig, der, sizeof der) : -1;
        if (n <= 0) return false;
        sig = der;
        slen = (size_t)n;
    }
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, pk) == 1 &&
              EVP_DigestVerify(mc, sig, slen, (const unsigned char *)input, ilen) == 1;
    EVP_MD_CTX_free(mc);
    ERR_clear_error();
    return ok;
}

/* NumericDate claim in ms; false when present but not a sane number. */
static bool date_ms(const sl_json *c, int64_t *ms) {
    if (c->type != SL_JSON_NUM || !(c->num >= 0 && c->num <= MAX_NUMERIC_DATE)) return false;
    *ms = (int64_t)(c->num * 1000.0);
    return true;
}

static bool aud_ok(const sl_jwt_validator *v, const sl_json *aud) {
    if (!aud) return false;
    const sl_json *one = aud->type == SL_JSON_STR ? aud : NULL;
    const sl_json *e = aud->type == SL_JSON_ARR ? aud->child : one;
    for (; e; e = one ? NULL : e->next) {
        if (e->type != SL_JSON_STR) continue;
        for (int i = 0; i < v->naud; i++)
            if (sl_json_str_eq(e, v->aud[i], strlen(v->aud[i]))) return true;
    }
    return false;
}

/* Kafka accepts a string or a list of strings; anything else is a malformed token. */
static bool scope_ok(const sl_json *sc) {
    if (!sc || sc->type == SL_JSON_STR) return true;
    if (sc->type != SL_JSON_ARR) return false;
    for (const sl_json *e = sc->child; e; e = e->next)
        if (e->type != SL_JSON_STR) return false;
    return true;
}

static sl_err check_claims(sl_jwt_validator *v, const sl_json *cl, int64_t now_ms, char *principal,
                           size_t plen, int64_t *expiry_ms, char *why, size_t wlen) {
    int64_t skew = (int64_t)v->cfg.clock_skew_s * 1000, exp_ms, t;
    if (!cl || cl->type != SL_JSON_OBJ) return deny(why, wlen, "claims are not a JSON object");
    const sl_json *exp = sl_json_get(cl, "exp"), *nbf = sl_json_get(cl, "nbf"),
                  *iat = sl_json_get(cl, "iat"), *iss = sl_json_get(cl, "iss");
    if (!exp || !date_ms(exp, &exp_ms)) return deny(why, wlen, "missing or invalid exp claim");
    if (now_ms >= exp_ms + skew) return deny(why, wlen, "token expired");
    if (nbf && (!date_ms(nbf, &t) || t > now_ms + skew))
        return deny(why, wlen, "token not yet valid (nbf)");
    if (iat && (!date_ms(iat, &t) || t > now_ms + skew))
        return deny(why, wlen, "token issued in the future (iat)");
    if (!sl_json_str_eq(iss, v->cfg.expected_issuer, strlen(v->cfg.expected_issuer)))
        return deny(why, wlen, "unexpected issuer");
    if (!aud_ok(v, sl_json_get(cl, "aud"))) return deny(why, wlen, "unexpected audience");
    if (!scope_ok(sl_json_get(cl, v->cfg.scope_claim)))
        return deny(why, wlen, "invalid scope claim");
    const sl_json *sub = sl_json_get(cl, v->cfg.sub_claim);
    if (!sub || sub->type != SL_JSON_STR || !sub->slen || sub->slen > SL_JWT_MAX_PRINCIPAL ||
        sub->slen >= plen)
        return deny(why, wlen, "missing or invalid subject claim");
    /* Principals end up in logs, ACLs and super.users: printable ASCII without spaces only. */
    for (size_t i = 0; i < sub->slen; i++)
        if ((unsigned char)sub->s[i] <= 0x20 || (unsigned char)sub->s[i] >= 0x7f)
            return deny(why, wlen, "subject claim has unprintable characters");
    memcpy(principal, sub->s, sub->slen + 1);
    *expiry_ms = exp_ms;
    return SL_OK;
}

sl_err sl_jwt_validate(sl_jwt_validator *v, const char *token, size_t len, int64_t now_ms,
                       char *principal, size_t plen, int64_t *expiry_ms, char *why, size_t wlen) {
    if (plen) principal[0] = 0;
    if (len > SL_JWT_MAX_TOKEN) return deny(why, wlen, "token too large");
    const char *dot1 = NULL, *dot2 = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = token[i];
        if (c == '.') {
            if (dot2) return deny(why, wlen, "malformed token (not a compact JWS)");
            *(dot1 ? &dot2 : &dot1) = token + i;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_')) {
            return deny(why, wlen, "malformed token (bad character)");
        }
    }
    if (!dot2) return deny(why, wlen, "malformed token (not a compact JWS)");
    sl_arena *a = sl_arena_new(4 * SL_JWT_MAX_TOKEN);
    if (!a) return deny(why, wlen, "out of memory");
    sl_err rc = SL_EAUTH;
    EVP_PKEY *pk = NULL;
    size_t hl, pl, sl;
    const char *end = token + len;
    uint8_t *hdr = part(a, token, (size_t)(dot1 - token), &hl);
    uint8_t *pay = part(a, dot1 + 1, (size_t)(dot2 - dot1 - 1), &pl);
    uint8_t *sig = part(a, dot2 + 1, (size_t)(end - dot2 - 1), &sl);
    if (!hdr || !pay || !sig) {
        deny(why, wlen, "malformed token (bad base64url)");
        goto out;
    }
    const sl_json *h = sl_json_parse(a, (const char *)hdr, hl, SL_JSON_MAX_DEPTH, NULL, 0);
    if (!h || h->type != SL_JSON_OBJ) {
        deny(why, wlen, "malformed token header (JSON)");
        goto out;
    }
    const sl_json *alg = sl_json_get(h, "alg"), *kid = sl_json_get(h, "kid");
    bool rs = sl_json_str_eq(alg, "RS256", 5), es = sl_json_str_eq(alg, "ES256", 5);
    if (!rs && !es) {
        deny(why, wlen,
             alg && alg->type == SL_JSON_STR && alg->slen == 4 && !strncasecmp(alg->s, "none", 4)
                 ? "unsigned token (alg none) refused"
                 : "unsupported alg (RS256 or ES256 required)");
        goto out;
    }
    /* We implement no JWS extensions, so a critical one must fail (RFC 7515 §4.1.11). */
    if (sl_json_get(h, "crit")) {
        deny(why, wlen, "unsupported critical header");
        goto out;
    }
    if (!kid || kid->type != SL_JSON_STR || !kid->slen) {
        deny(why, wlen, "token header has no kid");
        goto out;
    }
    const char *ktype_err = NULL;
    pthread_mutex_lock(&v->mu);
    const sl_jwk *k = sl_jwks_find(v->keys, kid->s, kid->slen);
    if (!k) {
        int64_t m = sl_mono_ms();
        if (m - v->last_kid_fetch_ms >= v->cfg.min_refetch_ms) {
            v->last_kid_fetch_ms = m;
            v->want_fetch = true;
            pthread_cond_signal(&v->cv);
        }
    } else if ((rs && k->type != SL_JWK_RSA) || (es && k->type != SL_JWK_EC_P256) ||
               (k->alg[0] && strcmp(k->alg, rs ? "RS256" : "ES256"))) {
        ktype_err = "alg does not match the key";
    } else if (EVP_PKEY_up_ref(k->pkey) == 1) {
        pk = k->pkey;
    }
    pthread_mutex_unlock(&v->mu);
    if (!k || !pk) {
        deny(why, wlen,
             !k          ? "unknown kid (key set refresh requested)"
             : ktype_err ? ktype_err
                         : "out of memory");
        goto out;
    }
    if (!verify_sig(pk, es, token, (size_t)(dot2 - token), sig, sl)) {
        deny(why, wlen, "bad signature");
        goto out;
    }
    const sl_json *cl = sl_json_parse(a, (const char *)pay, pl, SL_JSON_MAX_DEPTH, NULL, 0);
    rc = check_claims(v, cl, now_ms, principal, plen, expiry_ms, why, wlen);
out:
    EVP_PKEY_free(pk);
    sl_arena_free(a);
    return rc;
}

sl_err sl_oauthbearer_parse_client_msg(const char *msg, size_t len, const char **token,
                                       size_t *tlen, const char **authzid, size_t *alen) {
    const char *p = msg, *end = msg + len;
    *token = *authzid = NULL;
    *tlen = *alen = 0;
    /* gs2-header: "n," then an optional "a=<authzid>", then ",". Channel binding ("y"/"p") is
     * not defined for OAUTHBEARER over Kafka. */
    if (len < 3 || p[0] != 'n' || p[1] != ',') return SL_EAUTH;
    p += 2;
    if (end - p >= 2 && p[0] == 'a' && p[1] == '=') {
        p += 2;
        const char *s = p;
        while (p < end && *p != ',' && *p != '\x01') p++;
        *authzid = s;
        *alen = (size_t)(p - s);
    }
    if (p >= end || *p++ != ',') return SL_EAUTH;
    if (p >= end || *p++ != '\x01') return SL_EAUTH;
    bool have_auth = false;
    while (p < end && *p != '\x01') {
        const char *k = p;
        while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) p++;
        if (p == k || p >= end || *p != '=') return SL_EAUTH;
        size_t kl = (size_t)(p - k);
        const char *val = ++p;
        while (p < end && *p != '\x01') {
            unsigned char c = (unsigned char)*p;
            if (!((c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t' || c == '\r' || c == '\n'))
                return SL_EAUTH;
            p++;
        }
        if (p >= end) return SL_EAUTH;
        size_t vl = (size_t)(p - val);
        p++; /* the \x01 ending this pair */
        if (kl == 4 && !memcmp(k, "auth", 4)) {
            if (have_auth || vl < 7 || strncasecmp(val, "bearer", 6) || val[6] != ' ')
                return SL_EAUTH;
            have_auth = true;
            const char *t = val + 6;
            while (t < val + vl && *t == ' ') t++;
            *token = t;
            *tlen = (size_t)(val + vl - t);
            for (size_t i = 0; i < *tlen; i++) {
                char c = t[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                    return SL_EAUTH;
            }
        }
    }
    /* The message ends with the lone \x01 and nothing after it. */
    if (p + 1 != end || *p != '\x01' || !have_auth || !*tlen) return SL_EAUTH;
    return SL_OK;
}
