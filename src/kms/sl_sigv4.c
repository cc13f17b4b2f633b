#include "kms/sl_sigv4.h"

#include "base/sl_text.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Canonical forms are built in a growable text (sl_text: a failed allocation is sticky and
 * checked once at the end). */
typedef sl_text sb;

static void sb_add(sb *b, const char *s, size_t n) { sl_text_put(b, s, n); }
static void sb_str(sb *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_ch(sb *b, char c) { sb_add(b, &c, 1); }

static bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void sb_uri_encode(sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            sb_ch(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) then encodes it canonically, so "%e1%88%b4", "%E1%88%B4" and the raw
 * UTF-8 all give one form; a '%' not followed by two hex digits stands for itself. */
static void sb_query_component(sb *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        }
        sb_uri_encode(b, &c, 1);
    }
}

/* Canonical URI: dot segments resolved, empty segments dropped, each segment encoded; a
 * trailing slash is kept when the path had one and anything is left. */
static bool canonical_uri(sb *b, const char *path) {
    if (!path || path[0] != '/') return false;
    enum { MAX_SEGS = 256 };
    const char *seg[MAX_SEGS];
    size_t len[MAX_SEGS], ns = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = p + strcspn(p, "/");
        size_t l = (size_t)(e - p);
        if (l == 1 && p[0] == '.') {
            /* nothing */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (ns) ns--;
        } else {
            if (ns == MAX_SEGS) return false;
            seg[ns] = p;
            len[ns++] = l;
        }
        p = e;
    }
    size_t pl = strlen(path);
    for (size_t i = 0; i < ns; i++) {
        sb_ch(b, '/');
        sb_uri_encode(b, seg[i], len[i]);
    }
    if (ns == 0 || path[pl - 1] == '/') sb_ch(b, '/');
    return true;
}

typedef struct qpair {
    char *kv; /* "name=value", canonical */
    size_t klen;
} qpair;

static int qpair_cmp(const void *a, const void *b) {
    const qpair *x = a, *y = b;
    size_t m = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->kv, y->kv, m);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return strcmp(x->kv + x->klen, y->kv + y->klen);
}

static bool canonical_query(sb *b, const char *q) {
    if (!q || !*q) return true;
    size_t cnt = 1;
    for (const char *p = q; *p; p++) cnt += *p == '&';
    qpair *v = calloc(cnt, sizeof *v);
    if (!v) return false;
    size_t n = 0;
    bool ok = true;
    for (const char *p = q; ok;) {
        const char *e = p + strcspn(p, "&");
        if (e > p) {
            const char *eq = memchr(p, '=', (size_t)(e - p));
            sb one = {0};
            sb_query_component(&one, p, (size_t)((eq ? eq : e) - p));
            size_t kl = one.len;
            sb_ch(&one, '=');
            if (eq) sb_query_component(&one, eq + 1, (size_t)(e - eq - 1));
            if (one.oom) {
                free(one.p);
                ok = false;
                break;
            }
            v[n].kv = one.p;
            v[n++].klen = kl;
        }
        if (!*e) break;
        p = e + 1;
    }
    if (ok) {
        qsort(v, n, sizeof *v, qpair_cmp);
        for (size_t i = 0; i < n; i++) {
            if (i) sb_ch(b, '&');
            sb_str(b, v[i].kv);
        }
    }
    for (size_t i = 0; i < n; i++) free(v[i].kv);
    free(v);
    return ok;
}

static bool tchar(unsigned char c) { return unreserved(c) || (c && strchr("!#$%&'*+^`|", c)); }

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Appends the value trimmed, with inner runs of whitespace as one space. */
static void sb_header_value(sb *b, const char *v) {
    while (is_ws(*v)) v++;
    bool pending = false;
    for (; *v; v++) {
        if (is_ws(*v)) {
            pending = true;
            continue;
        }
        if (pending) sb_ch(b, ' ');
        pending = false;
        sb_ch(b, *v);
    }
}

typedef struct hdr {
    char name[64];
    const char *value;
} hdr;

/* Lower-cased names in a stable order (duplicates keep their sending order, which is how their
 * values are joined). Returns the count, or -1 for a bad name. */
static int sorted_headers(const sl_sigv4_request *r, hdr *h) {
    if (r->nheaders > SL_SIGV4_MAX_HEADERS) return -1;
    int n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *nm = r->headers[i].name;
        size_t l = nm ? strlen(nm) : 0;
        if (!l || l >= sizeof h[0].name || !r->headers[i].value) return -1;
        hdr x;
        for (size_t j = 0; j < l; j++) {
            if (!tchar((unsigned char)nm[j])) return -1;
            x.name[j] = (char)(nm[j] >= 'A' && nm[j] <= 'Z' ? nm[j] + 32 : nm[j]);
        }
        x.name[l] = 0;
        x.value = r->headers[i].value;
        int k = n;
        while (k > 0 && strcmp(h[k - 1].name, x.name) > 0) {
            h[k] = h[k - 1];
            k--;
        }
        h[k] = x;
        n++;
    }
    return n;
}

static bool has_header(const hdr *h, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(h[i].name, name)) return true;
    return false;
}

void sl_sigv4_sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Builds the canonical request; *signed_out (malloc'd) gets the SignedHeaders list. */
static char *canonical(const sl_sigv4_request *r, char **signed_out) {
    hdr h[SL_SIGV4_MAX_HEADERS];
    if (!r->method || !*r->method) return NULL;
    int n = sorted_headers(r, h);
    if (n < 0 || !has_header(h, n, "host")) return NULL;
    sb b = {0}, sh = {0};
    bool ok = true;
    sb_str(&b, r->method);
    sb_ch(&b, '\n');
    ok = ok && canonical_uri(&b, r->path);
    sb_ch(&b, '\n');
    ok = ok && canonical_query(&b, r->query);
    sb_ch(&b, '\n');
    for (int i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(h[i - 1].name, h[i].name);
        if (first) {
            if (i) {
                sb_ch(&b, '\n');
                sb_ch(&sh, ';');
            }
            sb_str(&b, h[i].name);
            sb_ch(&b, ':');
            sb_str(&sh, h[i].name);
        } else {
            sb_ch(&b, ',');
        }
        sb_header_value(&b, h[i].value);
    }
    sb_str(&b, "\n\n");
    sb_str(&b, sh.p ? sh.p : "");
    sb_ch(&b, '\n');
    char ph[65];
    sl_sigv4_sha256_hex(r->body ? (const void *)r->body : "", r->body ? r->blen : 0, ph);
    sb_str(&b, ph);
    if (!ok || b.oom || sh.oom) {
        free(b.p);
        free(sh.p);
        return NULL;
    }
    if (signed_out)
        *signed_out = sh.p;
    else
        free(sh.p);
    return b.p;
}

char *sl_sigv4_canonical_request(const sl_sigv4_request *r) { return canonical(r, NULL); }

void sl_sigv4_amz_date(int64_t unix_s, char out[17]) {
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static bool hmac(const void *key, size_t kl, const char *msg, unsigned char out[32]) {
    unsigned int ol = 0;
    return HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, strlen(msg), out, &ol) &&
           ol == 32;
}

static bool valid_date(const char *d) {
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z') return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9')) return false;
    return true;
}

static bool valid_scope_part(const char *s) {
    if (!s || !*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!unreserved((unsigned char)*s)) return false;
    return true;
}

sl_err sl_sigv4_sign(const sl_sigv4_request *r, const sl_sigv4_creds *c, const char *region,
                     const char *service, const char *amz_date, char *authz, size_t cap, char *sts,
                     size_t stscap) {
    if (!c || !c->akid || !*c->akid || !c->secret || !*c->secret || !valid_date(amz_date) ||
        !valid_scope_part(region) || !valid_scope_part(service) || strlen(c->secret) > 256 ||
        strpbrk(c->akid, " ,/\r\n"))
        return SL_EINVAL;
    /* The date the request says it was made must be the one signed. */
    bool date_ok = false, token_ok = !c->token || !*c->token;
    for (size_t i = 0; i < r->nheaders && r->headers[i].name; i++) {
        if (!strcasecmp(r->headers[i].name, "x-amz-date"))
            date_ok = r->headers[i].value && !strcmp(r->headers[i].value, amz_date);
        if (!token_ok && !strcasecmp(r->headers[i].name, "x-amz-security-token"))
            token_ok = r->headers[i].value && !strcmp(r->headers[i].value, c->token);
    }
    if (!date_ok || !token_ok) return SL_EINVAL;
    char *signed_headers = NULL;
    char *creq = canonical(r, &signed_headers);
    if (!creq) return SL_EINVAL;
    char sighex[65];
    sl_err e = sl_sigv4_signature(creq, c->secret, region, service, amz_date, sighex, sts, stscap);
    free(creq);
    if (e) {
        free(signed_headers);
        return e;
    }
    char scope[160];
    snprintf(scope, sizeof scope, "%.8s/%s/%s/aws4_request", amz_date, region, service);
    int w =
        snprintf(authz, cap, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                 c->akid, scope, signed_headers, sighex);
    free(signed_headers);
    return w < 0 || (size_t)w >= cap ? SL_ETOOLARGE : SL_OK;
}

sl_err sl_sigv4_signature(const char *creq, const char *secret, const char *region,
                          const char *service, const char *amz_date, char sig_hex[65], char *sts,
                          size_t stscap) {
    if (!creq || !secret || !*secret || strlen(secret) > 256 || !valid_date(amz_date) ||
        !valid_scope_part(region) || !valid_scope_part(service))
        return SL_EINVAL;
    char ch[65];
    sl_sigv4_sha256_hex(creq, strlen(creq), ch);
    char day[9];
    memcpy(day, amz_date, 8);
    day[8] = 0;
    char scope[160], tosign[400];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", day, region, service);
    snprintf(tosign, sizeof tosign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, ch);
    if (sts && stscap) snprintf(sts, stscap, "%s", tosign);

    char k0[4 + 257];
    size_t k0l = (size_t)snprintf(k0, sizeof k0, "AWS4%s", secret);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    bool ok = hmac(k0, k0l, day, k1) && hmac(k1, 32, region, k2) && hmac(k2, 32, service, k3) &&
              hmac(k3, 32, "aws4_request", k4) && hmac(k4, 32, tosign, sig);
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    OPENSSL_cleanse(k4, sizeof k4);
    if (!ok) return SL_EINVAL;
    for (int i = 0; i < 32; i++) snprintf(sig_hex + 2 * i, 3, "%02x", sig[i]);
    return SL_OK;
}

char *sl_sigv4_query_canonical(const sl_sigv4_param *p, size_t n) {
    if (n > SL_SIGV4_MAX_PARAMS) return NULL;
    qpair v[SL_SIGV4_MAX_PARAMS];
    size_t k = 0;
    bool ok = true;
    for (; k < n; k++) {
        if (!p[k].name || !p[k].value) {
            ok = false;
            break;
        }
        sb one = {0};
        sb_uri_encode(&one, p[k].name, strlen(p[k].name));
        size_t kl = one.len;
        sb_ch(&one, '=');
        sb_uri_encode(&one, p[k].value, strlen(p[k].value));
        if (one.oom) {
            free(one.p);
            ok = false;
            break;
        }
        v[k].kv = one.p;
        v[k].klen = kl;
    }
    sb b = {0};
    if (ok) {
        qsort(v, k, sizeof *v, qpair_cmp);
        for (size_t i = 0; i < k; i++) {
            if (i) sb_ch(&b, '&');
            sb_str(&b, v[i].kv);
        }
        /* An empty query is "" (not NULL), so the caller can tell it from a failure. */
        sb_add(&b, "", 0);
        if (!b.p) {
            b.p = calloc(1, 1);
            if (!b.p) b.oom = true;
        }
    }
    for (size_t i = 0; i < k; i++) free(v[i].kv);
    if (!ok || b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static bool valid_host(const char *h) {
    if (!h || !*h || strlen(h) > 255) return false;
    for (; *h; h++)
        if ((unsigned char)*h <= ' ' || *h == 0x7f) return false;
    return true;
}

sl_err sl_sigv4_presign(const sl_sigv4_presign_req *r, const sl_sigv4_creds *c, const char *region,
                        const char *service, const char *amz_date, char *sig_hex, char **query_out,
                        char **creq_out) {
    if (query_out) *query_out = NULL;
    if (creq_out) *creq_out = NULL;
    if (!r || !c || !c->akid || !*c->akid || !c->secret || !*c->secret || !valid_date(amz_date) ||
        !valid_scope_part(region) || !valid_scope_part(service) || strpbrk(c->akid, " ,/\r\n") ||
        !r->method || !*r->method || !valid_host(r->host) || r->expires < 1 ||
        r->expires > 604800 || r->nparams > SL_SIGV4_MAX_PARAMS - 6 || (r->nparams && !r->params))
        return SL_EINVAL;
    sl_sigv4_param p[SL_SIGV4_MAX_PARAMS];
    size_t n = 0;
    for (size_t i = 0; i < r->nparams; i++) p[n++] = r->params[i];
    char cred[400], exp[16];
    int w = snprintf(cred, sizeof cred, "%s/%.8s/%s/%s/aws4_request", c->akid, amz_date, region,
                     service);
    if (w < 0 || (size_t)w >= sizeof cred) return SL_EINVAL;
    snprintf(exp, sizeof exp, "%u", r->expires);
    p[n++] = (sl_sigv4_param){"X-Amz-Algorithm", "AWS4-HMAC-SHA256"};
    p[n++] = (sl_sigv4_param){"X-Amz-Credential", cred};
    p[n++] = (sl_sigv4_param){"X-Amz-Date", amz_date};
    p[n++] = (sl_sigv4_param){"X-Amz-Expires", exp};
    p[n++] = (sl_sigv4_param){"X-Amz-SignedHeaders", "host"};
    if (c->token && *c->token) p[n++] = (sl_sigv4_param){"X-Amz-Security-Token", c->token};
    char *q = sl_sigv4_query_canonical(p, n);
    if (!q) return SL_EINVAL;
    sb b = {0};
    sb_str(&b, r->method);
    sb_ch(&b, '\n');
    bool ok = canonical_uri(&b, r->path);
    sb_ch(&b, '\n');
    sb_str(&b, q);
    sb_str(&b, "\nhost:");
    sb_str(&b, r->host);
    sb_str(&b, "\n\nhost\n");
    char ph[65];
    if (!r->payload_hash) sl_sigv4_sha256_hex("", 0, ph);
    sb_str(&b, r->payload_hash ? r->payload_hash : ph);
    if (!ok || b.oom) {
        free(q);
        free(b.p);
        return ok ? SL_ENOMEM : SL_EINVAL;
    }
    char sig[65];
    sl_err e = sl_sigv4_signature(b.p, c->secret, region, service, amz_date, sig, NULL, 0);
    if (e) {
        free(q);
        free(b.p);
        return e;
    }
    if (sig_hex) memcpy(sig_hex, sig, 65);
    if (query_out) {
        sb o = {0};
        sb_str(&o, q);
        sb_str(&o, "&X-Amz-Signature=");
        sb_str(&o, sig);
        if (o.oom) {
            free(o.p);
            free(q);
            free(b.p);
            return SL_ENOMEM;
        }
        *query_out = o.p;
    }
    free(q);
    if (creq_out)
        *creq_out = b.p;
    else
        free(b.p);
    return SL_OK;
}
