#include "auth/sl_msk_iam.h"

#include "auth/sl_b64.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "base/sl_text.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SERVICE      "kafka-cluster"
#define ACTION       "kafka-cluster:Connect"
#define ALGORITHM    "AWS4-HMAC-SHA256"

/* The fields of one presign, raw (decoded) values; NULL when absent. */
typedef struct fields {
    const char *action, *algorithm, *credential, *date, *expires, *signedheaders, *token,
        *signature;
} fields;

/* ---- building ---- */

/* JSON string body: quotes, backslashes and control characters escaped; other bytes as given
 * (the values are ASCII in practice; user-agent is free text). */
static void json_str(sl_text *b, const char *s) {
    sl_text_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sl_text_put(b, e, 2);
        } else if (c < 0x20) {
            char e[7];
            snprintf(e, sizeof e, "\\u%04x", c);
            sl_text_put(b, e, 6);
        } else {
            sl_text_put(b, s, 1);
        }
    }
    sl_text_put(b, "\"", 1);
}

static void json_member(sl_text *b, const char *k, const char *v, bool first) {
    if (!first) sl_text_put(b, ",", 1);
    json_str(b, k);
    sl_text_put(b, ":", 1);
    json_str(b, v);
}

sl_err sl_msk_iam_payload(const sl_sigv4_creds *c, const char *region, const char *host,
                          int64_t now_s, const char *user_agent, char **out, size_t *outlen) {
    *out = NULL;
    if (!c || !host || !user_agent || strchr(host, ':')) return SL_EINVAL;
    char date[17];
    sl_sigv4_amz_date(now_s, date);
    sl_sigv4_param act = {"Action", ACTION};
    sl_sigv4_presign_req r = {.method = "GET",
                              .path = "/",
                              .host = host,
                              .params = &act,
                              .nparams = 1,
                              .expires = SL_MSK_IAM_EXPIRES};
    char sig[65];
    sl_err e = sl_sigv4_presign(&r, c, region, SERVICE, date, sig, NULL, NULL);
    if (e) return e;
    char cred[400], exp[16];
    snprintf(cred, sizeof cred, "%s/%.8s/%s/" SERVICE "/aws4_request", c->akid, date, region);
    snprintf(exp, sizeof exp, "%u", (unsigned)SL_MSK_IAM_EXPIRES);
    sl_text b = {0};
    sl_text_put(&b, "{", 1);
    json_member(&b, "version", SL_MSK_IAM_VERSION, true);
    json_member(&b, "host", host, false);
    json_member(&b, "user-agent", user_agent, false);
    json_member(&b, "action", ACTION, false);
    json_member(&b, "x-amz-algorithm", ALGORITHM, false);
    json_member(&b, "x-amz-credential", cred, false);
    json_member(&b, "x-amz-date", date, false);
    json_member(&b, "x-amz-expires", exp, false);
    json_member(&b, "x-amz-signedheaders", "host", false);
    if (c->token && *c->token) json_member(&b, "x-amz-security-token", c->token, false);
    json_member(&b, "x-amz-signature", sig, false);
    sl_text_put(&b, "}", 1);
    if (b.oom) {
        free(b.p);
        return SL_ENOMEM;
    }
    *out = b.p;
    if (outlen) *outlen = b.len;
    return SL_OK;
}

sl_err sl_msk_iam_token(const sl_sigv4_creds *c, const char *region, int64_t now_s,
                        const char *user_agent, char **out) {
    *out = NULL;
    if (!c || !region || !user_agent || strlen(region) > 64) return SL_EINVAL;
    char host[128], date[17];
    snprintf(host, sizeof host, "kafka.%s.amazonaws.com", region);
    sl_sigv4_amz_date(now_s, date);
    sl_sigv4_param act = {"Action", ACTION};
    sl_sigv4_presign_req r = {.method = "GET",
                              .path = "/",
                              .host = host,
                              .params = &act,
                              .nparams = 1,
                              .expires = SL_MSK_IAM_EXPIRES};
    char *q = NULL;
    sl_err e = sl_sigv4_presign(&r, c, region, SERVICE, date, NULL, &q, NULL);
    if (e) return e;
    /* User-Agent goes after the signature, unsigned, as the signer libraries put it. */
    sl_sigv4_param ua = {"User-Agent", user_agent};
    char *uaq = sl_sigv4_query_canonical(&ua, 1);
    sl_text u = {0};
    sl_text_put(&u, "https://", 8);
    sl_text_put(&u, host, strlen(host));
    sl_text_put(&u, "/?", 2);
    sl_text_put(&u, q, strlen(q));
    sl_text_put(&u, "&", 1);
    if (uaq) sl_text_put(&u, uaq, strlen(uaq));
    free(q);
    char *tok = NULL;
    if (uaq && !u.oom) {
        size_t cap = sl_b64_enc_len(u.len);
        tok = malloc(cap);
        if (tok && !sl_b64url_encode((const uint8_t *)u.p, u.len, tok, cap)) {
            free(tok);
            tok = NULL;
        }
    }
    free(uaq);
    free(u.p);
    if (!tok) return SL_ENOMEM;
    *out = tok;
    return SL_OK;
}

/* ---- verifying ---- */

static bool digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool parse_date(const char *d, int64_t *out) {
    if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z' || !digits(d, 8) || !digits(d + 9, 6))
        return false;
    struct tm tm = {0};
    tm.tm_year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0') - 1900;
    tm.tm_mon = (d[4] - '0') * 10 + (d[5] - '0') - 1;
    tm.tm_mday = (d[6] - '0') * 10 + (d[7] - '0');
    tm.tm_hour = (d[9] - '0') * 10 + (d[10] - '0');
    tm.tm_min = (d[11] - '0') * 10 + (d[12] - '0');
    tm.tm_sec = (d[13] - '0') * 10 + (d[14] - '0');
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

static bool is_lower_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

#define FAIL(why)                                                                                  \
    do {                                                                                           \
        *reason = (why);                                                                           \
        return SL_EAUTH;                                                                           \
    } while (0)

/* Checks "<akid>/<day>/<region>/<service>/aws4_request" against the request's date, the
 * configured region and `service`; akid[129] gets the key id. */
static sl_err check_scope(const sl_msk_iam_verify_cfg *cfg, const char *credential,
                          const char *date, const char *service, char akid[129],
                          const char **reason) {
    const char *part[5];
    size_t plen[5], np = 0;
    for (const char *p = credential;; p++) {
        const char *e = strchr(p, '/');
        if (np == 5) FAIL("malformed credential");
        part[np] = p;
        plen[np++] = e ? (size_t)(e - p) : strlen(p);
        if (!e) break;
        p = e;
    }
    if (np != 5 || !plen[0] || plen[0] >= 129) FAIL("malformed credential");
    for (size_t i = 0; i < plen[0]; i++)
        if ((unsigned char)part[0][i] <= ' ' || part[0][i] == 0x7f || part[0][i] == ',')
            FAIL("malformed credential");
    if (plen[1] != 8 || strncmp(part[1], date, 8)) FAIL("credential day is not the date's");
    if (!cfg->region || plen[2] != strlen(cfg->region) || memcmp(part[2], cfg->region, plen[2]))
        FAIL("wrong region");
    if (plen[3] != strlen(service) || memcmp(part[3], service, plen[3])) FAIL("wrong service");
    if (plen[4] != 12 || memcmp(part[4], "aws4_request", 12)) FAIL("malformed credential");
    memcpy(akid, part[0], plen[0]);
    akid[plen[0]] = 0;
    return SL_OK;
}

/* Signs the canonical request `creq` with akid's secret and compares with sig_hex in constant
 * time. An unknown key is signed for with a fixed dummy secret, so it costs the same as a known
 * one and ends in the same refusal. */
static sl_err check_signature(const sl_msk_iam_verify_cfg *cfg, const char *creq, const char *akid,
                              const char *token, const char *service, const char *date,
                              const char *sig_hex, const char **reason) {
    char secret[SL_MSK_IAM_MAX_SECRET + 1];
    bool known = cfg->lookup && cfg->lookup(cfg->ud, akid, token, secret, sizeof secret);
    if (!known || !memchr(secret, 0, sizeof secret) || !secret[0]) {
        known = false;
        snprintf(secret, sizeof secret, "%s", "sluice-msk-iam-unknown-key-dummy-secret");
    }
    char sig[65];
    sl_err e = sl_sigv4_signature(creq, secret, cfg->region, service, date, sig, NULL, 0);
    OPENSSL_cleanse(secret, sizeof secret);
    bool same = e == SL_OK && CRYPTO_memcmp(sig, sig_hex, 64) == 0;
    OPENSSL_cleanse(sig, sizeof sig);
    if (!same || !known) FAIL("signature does not match");
    return SL_OK;
}

/* Checks one presign of GET https://<host>/ and fills *id. */
static sl_err verify_fields(const sl_msk_iam_verify_cfg *cfg, const fields *f, const char *host,
                            sl_msk_iam_id *id, const char **reason) {
    if (!f->action || !f->algorithm || !f->credential || !f->date || !f->expires ||
        !f->signedheaders || !f->signature)
        FAIL("missing field");
    if (strcmp(f->action, ACTION)) FAIL("action is not kafka-cluster:Connect");
    if (strcmp(f->algorithm, ALGORITHM)) FAIL("unsupported algorithm");
    if (strcmp(f->signedheaders, "host")) FAIL("signed headers are not host");
    if (!is_lower_hex64(f->signature)) FAIL("malformed signature");
    char akid[sizeof id->akid];
    sl_err e = check_scope(cfg, f->credential, f->date, SERVICE, akid, reason);
    if (e) return e;
    int64_t t;
    if (!parse_date(f->date, &t)) FAIL("malformed date");
    size_t el = strlen(f->expires);
    unsigned maxe = cfg->max_expires ? cfg->max_expires : SL_MSK_IAM_EXPIRES;
    if (!el || el > 6 || !digits(f->expires, el) || f->expires[0] == '0') FAIL("malformed expires");
    unsigned exp = (unsigned)atoi(f->expires);
    if (exp > maxe) FAIL("expires too long");
    if (t > cfg->now_s + cfg->skew_s) FAIL("date in the future");
    if (cfg->now_s > t + (int64_t)exp) FAIL("expired");

    sl_sigv4_param p[7] = {{"Action", f->action},
                           {"X-Amz-Algorithm", f->algorithm},
                           {"X-Amz-Credential", f->credential},
                           {"X-Amz-Date", f->date},
                           {"X-Amz-Expires", f->expires},
                           {"X-Amz-SignedHeaders", f->signedheaders},
                           {"X-Amz-Security-Token", f->token}};
    char *q = sl_sigv4_query_canonical(p, f->token ? 7 : 6);
    if (!q) {
        *reason = "out of memory";
        return SL_ENOMEM;
    }
    sl_text b = {0};
    sl_text_put(&b, "GET\n/\n", 6);
    sl_text_put(&b, q, strlen(q));
    sl_text_put(&b, "\nhost:", 6);
    sl_text_put(&b, host, strlen(host));
    sl_text_put(&b, "\n\nhost\n" EMPTY_SHA256, 7 + 64);
    free(q);
    if (b.oom) {
        free(b.p);
        *reason = "out of memory";
        return SL_ENOMEM;
    }
    e = check_signature(cfg, b.p, akid, f->token, SERVICE, f->date, f->signature, reason);
    free(b.p);
    if (e) return e;
    memcpy(id->akid, akid, strlen(akid) + 1);
    id->expiry_s = t + (int64_t)exp;
    id->temporary = f->token != NULL;
    return SL_OK;
}

static bool valid_host(const char *h) {
    if (!*h || strlen(h) > 255) return false;
    for (; *h; h++)
        if ((unsigned char)*h <= ' ' || *h == 0x7f || *h == ':') return false;
    return true;
}

sl_err sl_msk_iam_verify_payload(const sl_msk_iam_verify_cfg *cfg, const uint8_t *p, size_t n,
                                 sl_msk_iam_id *id, const char **reason) {
    const char *dummy;
    if (!reason) reason = &dummy;
    *reason = NULL;
    memset(id, 0, sizeof *id);
    if (n == 0 || n > SL_MSK_IAM_MAX_INPUT) FAIL("payload size");
    sl_arena *a = sl_arena_new(4096);
    if (!a) {
        *reason = "out of memory";
        return SL_ENOMEM;
    }
    char err[64];
    sl_json *o = sl_json_parse(a, (const char *)p, n, 2, err, sizeof err);
    sl_err rc = SL_EAUTH;
    fields f = {0};
    const char *version = NULL, *host = NULL;
    if (!o || o->type != SL_JSON_OBJ) {
        *reason = "payload is not a JSON object";
        goto out;
    }
    static const char *const keys[] = {"version",
                                       "host",
                                       "user-agent",
                                       "action",
                                       "x-amz-algorithm",
                                       "x-amz-credential",
                                       "x-amz-date",
                                       "x-amz-expires",
                                       "x-amz-signedheaders",
                                       "x-amz-security-token",
                                       "x-amz-signature"};
    const char **slot[] = {&version,         &host,         NULL,        &f.action,
                           &f.algorithm,     &f.credential, &f.date,     &f.expires,
                           &f.signedheaders, &f.token,      &f.signature};
    for (const sl_json *m = o->child; m; m = m->next) {
        size_t k = 0;
        while (k < sizeof keys / sizeof *keys &&
               (m->klen != strlen(keys[k]) || memcmp(m->key, keys[k], m->klen)))
            k++;
        if (k == sizeof keys / sizeof *keys) {
            *reason = "unknown key";
            goto out;
        }
        /* Values are signed as C strings: an embedded NUL would make two payloads one. */
        if (m->type != SL_JSON_STR || strlen(m->s) != m->slen) {
            *reason = "value is not a string";
            goto out;
        }
        if (slot[k]) *slot[k] = m->s;
    }
    if (!version || strcmp(version, SL_MSK_IAM_VERSION)) {
        *reason = "unsupported version";
        goto out;
    }
    if (!host || !valid_host(host)) {
        *reason = "missing or malformed host";
        goto out;
    }
    bool ours = false;
    for (size_t i = 0; i < cfg->nhosts && !ours; i++)
        ours = cfg->hosts[i] && !strcasecmp(cfg->hosts[i], host);
    if (!ours) {
        *reason = "host is not this broker";
        goto out;
    }
    if (f.token && !*f.token) {
        *reason = "empty security token";
        goto out;
    }
    rc = verify_fields(cfg, &f, host, id, reason);
out:
    sl_arena_free(a);
    return rc;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (at least n+1 bytes); '+' stays '+' (every producer encodes a
 * literal plus as %2B). False for a malformed escape or a NUL byte. */
static bool pct_decode(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) return false;
            c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        }
        if (!c) return false;
        out[o++] = c;
    }
    out[o] = 0;
    return true;
}

/* Decodes the token into a malloc'd NUL-terminated URL, or NULL. */
static char *token_url(const char *tok, size_t n) {
    if (!tok || n == 0 || n > SL_MSK_IAM_MAX_INPUT) return NULL;
    while (n && tok[n - 1] == '=') n--; /* padding is optional (Java pads, others don't) */
    size_t cap = sl_b64_dec_max(n) + 1, ul = 0;
    char *u = malloc(cap);
    if (!u) return NULL;
    if (!sl_b64url_decode(tok, n, (uint8_t *)u, cap - 1, &ul) || memchr(u, 0, ul)) {
        free(u);
        return NULL;
    }
    u[ul] = 0;
    return u;
}

bool sl_msk_iam_is_token(const char *tok, size_t n) {
    char *u = token_url(tok, n);
    bool yes = u && !strncmp(u, "https://kafka.", 14) && strstr(u, ".amazonaws.com/?");
    free(u);
    return yes;
}

sl_err sl_msk_iam_verify_token(const sl_msk_iam_verify_cfg *cfg, const char *tok, size_t n,
                               sl_msk_iam_id *id, const char **reason) {
    const char *dummy;
    if (!reason) reason = &dummy;
    *reason = NULL;
    memset(id, 0, sizeof *id);
    if (!cfg->region || strlen(cfg->region) > 64) FAIL("no region configured");
    char *u = token_url(tok, n);
    if (!u) FAIL("token is not base64url");
    char host[128], prefix[160];
    snprintf(host, sizeof host, "kafka.%s.amazonaws.com", cfg->region);
    snprintf(prefix, sizeof prefix, "https://%s/?", host);
    size_t pl = strlen(prefix);
    sl_err rc = SL_EAUTH;
    char *dec = NULL;
    fields f = {0};
    if (strncmp(u, prefix, pl) || strchr(u, '#')) {
        *reason = "not an MSK IAM URL for this region";
        goto out;
    }
    const char *q = u + pl;
    dec = malloc(strlen(q) + 16);
    if (!dec) {
        *reason = "out of memory";
        rc = SL_ENOMEM;
        goto out;
    }
    static const char *const names[] = {
        "Action",        "X-Amz-Algorithm",     "X-Amz-Credential",     "X-Amz-Date",
        "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature",
        "User-Agent"};
    const char **slot[] = {&f.action,        &f.algorithm, &f.credential, &f.date, &f.expires,
                           &f.signedheaders, &f.token,     &f.signature,  NULL};
    bool seen[9] = {0};
    char *w = dec;
    for (const char *p = q;;) {
        const char *e = p + strcspn(p, "&");
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq) {
            *reason = "malformed query";
            goto out;
        }
        char name[32];
        size_t nl = (size_t)(eq - p);
        if (nl >= sizeof name || !pct_decode(p, nl, name)) {
            *reason = "unknown parameter";
            goto out;
        }
        size_t k = 0;
        while (k < 9 && strcmp(name, names[k])) k++;
        if (k == 9) {
            *reason = "unknown parameter";
            goto out;
        }
        if (seen[k]) {
            *reason = "duplicate parameter";
            goto out;
        }
        seen[k] = true;
        if (!pct_decode(eq + 1, (size_t)(e - eq - 1), w)) {
            *reason = "malformed query";
            goto out;
        }
        if (slot[k]) *slot[k] = w;
        w += strlen(w) + 1;
        if (!*e) break;
        p = e + 1;
    }
    if (f.token && !*f.token) {
        *reason = "empty security token";
        goto out;
    }
    rc = verify_fields(cfg, &f, host, id, reason);
out:
    free(dec);
    free(u);
    return rc;
}

/* ---- header form (an AWS API request over HTTP: the STS endpoint) ---- */

/* The value of header `name` (already lower-case) among r's, or NULL; *dup set when it occurs
 * more than once. */
static const char *http_header(const sl_msk_iam_http *r, const char *name, bool *dup) {
    const char *v = NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!strcasecmp(r->headers[i].name, name)) {
            if (v && dup) *dup = true;
            if (!v) v = r->headers[i].value;
        }
    return v;
}

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." into its three parts
 * (copied into the caller's buffers). */
static bool parse_authorization(const char *a, char *cred, size_t cl, char *sh, size_t shl,
                                char *sig, size_t sgl) {
    size_t al = strlen(ALGORITHM);
    if (strncmp(a, ALGORITHM, al) || a[al] != ' ') return false;
    const char *p = a + al;
    bool have[3] = {false, false, false};
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *eq = strchr(p, '=');
        if (!eq) return false;
        const char *end = eq + 1;
        while (*end && *end != ',' && *end != ' ') end++;
        size_t kl = (size_t)(eq - p), vl = (size_t)(end - eq - 1);
        char *dst = NULL;
        size_t cap = 0;
        int k = -1;
        if (kl == 10 && !memcmp(p, "Credential", 10))
            k = 0, dst = cred, cap = cl;
        else if (kl == 13 && !memcmp(p, "SignedHeaders", 13))
            k = 1, dst = sh, cap = shl;
        else if (kl == 9 && !memcmp(p, "Signature", 9))
            k = 2, dst = sig, cap = sgl;
        if (k < 0 || have[k] || !vl || vl >= cap) return false;
        memcpy(dst, eq + 1, vl);
        dst[vl] = 0;
        have[k] = true;
        p = end;
    }
    return have[0] && have[1] && have[2];
}

/* The host part of a Host header value ("h", "h:port", "[v6]:port") into out[cap]. */
static bool host_part(const char *v, char *out, size_t cap) {
    const char *e;
    if (*v == '[') {
        e = strchr(v, ']');
        if (!e) return false;
        v++;
    } else {
        e = strchr(v, ':');
        if (!e) e = v + strlen(v);
    }
    size_t n = (size_t)(e - v);
    if (!n || n >= cap) return false;
    memcpy(out, v, n);
    out[n] = 0;
    return valid_host(out) || strchr(out, ':'); /* an IPv6 address has colons */
}

sl_err sl_msk_iam_verify_http(const sl_msk_iam_verify_cfg *cfg, const sl_msk_iam_http *r,
                              sl_msk_iam_id *id, const char **reason) {
    const char *dummy;
    if (!reason) reason = &dummy;
    *reason = NULL;
    memset(id, 0, sizeof *id);
    if (!r->service || !r->method || !r->path || r->nheaders > SL_SIGV4_MAX_HEADERS)
        FAIL("malformed request");
    bool dup = false;
    const char *authz = http_header(r, "authorization", &dup);
    const char *date = http_header(r, "x-amz-date", &dup);
    const char *host = http_header(r, "host", &dup);
    const char *token = http_header(r, "x-amz-security-token", &dup);
    if (dup) FAIL("a signing header is repeated");
    if (!authz) FAIL("missing authorization");
    if (!date) FAIL("missing x-amz-date");
    if (!host) FAIL("missing host");
    if (token && !*token) FAIL("empty security token");
    char cred[256], sh[512], sig[80];
    if (!parse_authorization(authz, cred, sizeof cred, sh, sizeof sh, sig, sizeof sig))
        FAIL("malformed authorization");
    if (!is_lower_hex64(sig)) FAIL("malformed signature");
    char akid[sizeof id->akid];
    sl_err e = check_scope(cfg, cred, date, r->service, akid, reason);
    if (e) return e;
    int64_t t;
    if (!parse_date(date, &t)) FAIL("malformed date");
    /* As AWS: the request's time must be within the skew of the verifier's, both ways, so a
     * captured request cannot be replayed later than that. */
    if (t > cfg->now_s + cfg->skew_s) FAIL("date in the future");
    if (t < cfg->now_s - cfg->skew_s) FAIL("expired");
    char hp[256];
    bool ours = false;
    if (host_part(host, hp, sizeof hp))
        for (size_t i = 0; i < cfg->nhosts && !ours; i++)
            ours = cfg->hosts[i] && !strcasecmp(cfg->hosts[i], hp);
    if (!ours) FAIL("host is not this broker");
    /* The headers the signature covers, in the client's list: it must name host and
     * x-amz-date, and the token when one is sent (else a token could be swapped). */
    sl_sigv4_header sel[SL_SIGV4_MAX_HEADERS];
    size_t ns = 0;
    bool s_host = false, s_date = false, s_token = false;
    for (char *save = NULL, *h = strtok_r(sh, ";", &save); h; h = strtok_r(NULL, ";", &save)) {
        for (char *c = h; *c; c++)
            if (*c >= 'A' && *c <= 'Z') FAIL("signed headers are not lower-case");
        if (!strcmp(h, "authorization")) FAIL("authorization cannot be signed");
        s_host |= !strcmp(h, "host");
        s_date |= !strcmp(h, "x-amz-date");
        s_token |= !strcmp(h, "x-amz-security-token");
        size_t before = ns;
        for (size_t i = 0; i < r->nheaders; i++)
            if (!strcasecmp(r->headers[i].name, h)) {
                if (ns == SL_SIGV4_MAX_HEADERS) FAIL("too many signed headers");
                sel[ns++] = r->headers[i];
            }
        if (ns == before) FAIL("a signed header is missing");
    }
    if (!s_host || !s_date) FAIL("host and x-amz-date must be signed");
    if (token && !s_token) FAIL("the security token must be signed");
    sl_sigv4_request sr = {.method = r->method,
                           .path = r->path,
                           .query = r->query,
                           .headers = sel,
                           .nheaders = ns,
                           .body = r->body,
                           .blen = r->blen};
    char *creq = sl_sigv4_canonical_request(&sr);
    if (!creq) FAIL("malformed request");
    e = check_signature(cfg, creq, akid, token, r->service, date, sig, reason);
    free(creq);
    if (e) return e;
    memcpy(id->akid, akid, strlen(akid) + 1);
    id->expiry_s = t + cfg->skew_s;
    id->temporary = token != NULL;
    return SL_OK;
}
