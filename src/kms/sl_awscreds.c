#include "kms/sl_awscreds.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_https.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"

enum {
    MAX_FILE = 1 << 20,      /* credential/config files, web identity tokens */
    MAX_ANSWER = 64 * 1024,  /* IMDS and STS answers */
    IMDS_TIMEOUT_MS = 2000,  /* a host off EC2 must fail fast (botocore: 1 s) */
    ADVISORY_S = 15 * 60,    /* refresh this long before expiry */
    MANDATORY_S = 10 * 60,   /* stop using them this long before expiry */
    IMDS_TOKEN_TTL_S = 21600 /* botocore's value */
};

void sl_awscreds_clear(sl_awscreds *c) { OPENSSL_cleanse(c, sizeof *c); }

bool sl_awscreds_stale(const sl_awscreds *c, int64_t now) {
    return c->expires && now >= c->expires - ADVISORY_S;
}

bool sl_awscreds_usable(const sl_awscreds *c, int64_t now) {
    return c->akid[0] && (!c->expires || now < c->expires - MANDATORY_S);
}

/* Copies n bytes as a NUL-terminated string; refuses what does not fit and control bytes (a
 * credential is printable ASCII; a newline would let it inject HTTP headers). */
static bool put(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    memcpy(dst, s, n);
    dst[n] = 0;
    return true;
}

int64_t sl_awscreds_parse_time(const char *s, size_t n) {
    /* YYYY-MM-DDTHH:MM:SS then optional .fraction, then Z (or +00:00) */
    if (n < 20) return -1;
    static const char pat[] = "dddd-dd-ddTdd:dd:dd";
    for (int i = 0; i < 19; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]) return -1;
    }
    size_t i = 19;
    if (s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (!((n - i == 1 && s[i] == 'Z') || (n - i == 6 && !memcmp(s + i, "+00:00", 6)))) return -1;
    struct tm tm = {0};
    char b[20];
    memcpy(b, s, 19);
    b[19] = 0;
    b[4] = b[7] = b[10] = b[13] = b[16] = 0;
    tm.tm_year = atoi(b) - 1900;
    tm.tm_mon = atoi(b + 5) - 1;
    tm.tm_mday = atoi(b + 8);
    tm.tm_hour = atoi(b + 11);
    tm.tm_min = atoi(b + 14);
    tm.tm_sec = atoi(b + 17);
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    return (int64_t)timegm(&tm);
}

/* ---- INI files ---- */

static const char *trim(const char *s, const char *e, const char **end) {
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    *end = e;
    return s;
}

static bool section_is(const char *s, const char *e, const char *profile, bool config_style) {
    size_t pl = strlen(profile);
    if (config_style && (size_t)(e - s) > 7 && !memcmp(s, "profile", 7) &&
        (s[7] == ' ' || s[7] == '\t')) {
        const char *ne;
        const char *n = trim(s + 7, e, &ne);
        return (size_t)(ne - n) == pl && !memcmp(n, profile, pl);
    }
    /* the credentials file names sections plainly; the config file only "default" */
    if (config_style && strcmp(profile, "default")) return false;
    return (size_t)(e - s) == pl && !memcmp(s, profile, pl);
}

/* The value of `key` in the profile's section(s) (a later duplicate wins). */
static bool ini_lookup(const char *text, size_t n, const char *profile, bool config_style,
                       const char *key, const char **val, size_t *vlen) {
    const char *p = text, *end = text + n;
    bool in = false, found = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *e;
        const char *l = trim(p, le, &e);
        p = nl ? nl + 1 : end;
        if (l == e || *l == '#' || *l == ';') continue;
        if (*l == '[') {
            if (e[-1] != ']' || e - l < 2) {
                in = false;
                continue;
            }
            const char *se;
            const char *s = trim(l + 1, e - 1, &se);
            in = section_is(s, se, profile, config_style);
            continue;
        }
        if (!in) continue;
        const char *eq = memchr(l, '=', (size_t)(e - l));
        if (!eq) continue;
        const char *ke, *ve;
        const char *k = trim(l, eq, &ke);
        const char *v = trim(eq + 1, e, &ve);
        if ((size_t)(ke - k) == strlen(key) && !strncasecmp(k, key, strlen(key))) {
            *val = v;
            *vlen = (size_t)(ve - v);
            found = true;
        }
    }
    return found;
}

bool sl_awscreds_ini_value(const char *text, size_t n, const char *profile, bool config_style,
                           const char *key, char *out, size_t cap) {
    const char *v;
    size_t vl;
    if (!ini_lookup(text, n, profile, config_style, key, &v, &vl)) return false;
    return put(out, cap, v, vl);
}

sl_err sl_awscreds_parse_ini(const char *text, size_t n, const char *profile, bool config_style,
                             sl_awscreds *out) {
    const char *a, *s, *t;
    size_t al, sl, tl;
    bool ha = ini_lookup(text, n, profile, config_style, "aws_access_key_id", &a, &al);
    bool hs = ini_lookup(text, n, profile, config_style, "aws_secret_access_key", &s, &sl);
    if (!ha && !hs) return SL_ENOTFOUND;
    if (!ha || !hs) return SL_EKMS_DENIED;
    sl_awscreds c = {0};
    bool ok =
        put(c.akid, sizeof c.akid, a, al) && put(c.secret, sizeof c.secret, s, sl) && al && sl;
    if (ok && ini_lookup(text, n, profile, config_style, "aws_session_token", &t, &tl))
        ok = put(c.token, sizeof c.token, t, tl);
    if (!ok) {
        sl_awscreds_clear(&c);
        return SL_EKMS_DENIED;
    }
    c.source = "shared file";
    *out = c;
    sl_awscreds_clear(&c);
    return SL_OK;
}

/* ---- IMDS JSON ---- */

static void cleanse_json_str(const sl_json *v) {
    if (v && v->type == SL_JSON_STR && v->s) OPENSSL_cleanse((void *)v->s, v->slen);
}

sl_err sl_awscreds_parse_imds(const char *json, size_t n, sl_awscreds *out) {
    sl_arena *a = sl_arena_new(n * 2 + 1024);
    if (!a) return SL_ENOMEM;
    char e[64];
    sl_json *j = sl_json_parse(a, json, n, 4, e, sizeof e);
    sl_err rc = SL_EKMS_DENIED;
    sl_awscreds c = {0};
    const sl_json *code = j ? sl_json_get(j, "Code") : NULL, *ak = NULL, *sk = NULL, *tk = NULL,
                  *ex = NULL;
    if (!j || j->type != SL_JSON_OBJ) goto out;
    ak = sl_json_get(j, "AccessKeyId");
    sk = sl_json_get(j, "SecretAccessKey");
    tk = sl_json_get(j, "Token");
    ex = sl_json_get(j, "Expiration");
    if (code && !sl_json_str_eq(code, "Success", 7)) goto out;
    if (!ak || ak->type != SL_JSON_STR || !sk || sk->type != SL_JSON_STR || !tk ||
        tk->type != SL_JSON_STR || !ex || ex->type != SL_JSON_STR)
        goto out;
    if (!ak->slen || !sk->slen || !put(c.akid, sizeof c.akid, ak->s, ak->slen) ||
        !put(c.secret, sizeof c.secret, sk->s, sk->slen) ||
        !put(c.token, sizeof c.token, tk->s, tk->slen))
        goto out;
    c.expires = sl_awscreds_parse_time(ex->s, ex->slen);
    if (c.expires <= 0) goto out;
    c.source = "instance metadata";
    *out = c;
    rc = SL_OK;
out:
    if (j && j->type == SL_JSON_OBJ) {
        cleanse_json_str(sk);
        cleanse_json_str(tk);
    }
    sl_awscreds_clear(&c);
    sl_arena_free(a);
    return rc;
}

/* ---- STS XML ---- */

/* The text of the first <tag>...</tag> within [s, e), entities not decoded. */
static bool xml_elem(const char *s, const char *e, const char *tag, const char **vs,
                     const char **ve) {
    char open[64], close[64];
    int ol = snprintf(open, sizeof open, "<%s>", tag);
    int cl = snprintf(close, sizeof close, "</%s>", tag);
    for (const char *p = s; p + ol <= e; p++) {
        if (memcmp(p, open, (size_t)ol)) continue;
        const char *v = p + ol;
        for (const char *q = v; q + cl <= e; q++)
            if (!memcmp(q, close, (size_t)cl)) {
                *vs = v;
                *ve = q;
                return true;
            }
        return false;
    }
    return false;
}

/* Decodes the five predefined XML entities into dst; false if it does not fit or is bad. */
static bool xml_text(char *dst, size_t cap, const char *s, const char *e) {
    static const struct {
        const char *ent;
        char c;
    } k_ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    /* whitespace around the value is formatting */
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
    size_t o = 0;
    for (const char *p = s; p < e;) {
        char c = *p;
        if (c == '&') {
            size_t i = 0, nents = sizeof k_ents / sizeof *k_ents;
            for (; i < nents; i++) {
                size_t l = strlen(k_ents[i].ent);
                if ((size_t)(e - p) >= l && !memcmp(p, k_ents[i].ent, l)) {
                    c = k_ents[i].c;
                    p += l;
                    break;
                }
            }
            if (i == nents) return false;
        } else {
            p++;
        }
        if (o + 1 >= cap || (unsigned char)c < 0x21 || (unsigned char)c > 0x7e) return false;
        dst[o++] = c;
    }
    dst[o] = 0;
    return true;
}

sl_err sl_awscreds_parse_sts(const char *xml, size_t n, sl_awscreds *out, char *err,
                             size_t errlen) {
    const char *s = xml, *e = xml + n, *vs, *ve;
    if (xml_elem(s, e, "Error", &vs, &ve)) {
        const char *cs, *ce;
        char code[96] = "unknown";
        if (xml_elem(vs, ve, "Code", &cs, &ce) && !xml_text(code, sizeof code, cs, ce))
            snprintf(code, sizeof code, "unreadable");
        snprintf(err, errlen, "STS refused AssumeRoleWithWebIdentity: %s", code);
        return SL_EKMS_DENIED;
    }
    const char *rs, *re;
    if (!xml_elem(s, e, "AssumeRoleWithWebIdentityResult", &rs, &re) ||
        !xml_elem(rs, re, "Credentials", &vs, &ve)) {
        snprintf(err, errlen, "STS answer without credentials");
        return SL_EKMS_DENIED;
    }
    sl_awscreds c = {0};
    const char *a, *ae, *k, *ke, *t, *te, *x, *xe;
    char exp[64];
    bool ok =
        xml_elem(vs, ve, "AccessKeyId", &a, &ae) && xml_elem(vs, ve, "SecretAccessKey", &k, &ke) &&
        xml_elem(vs, ve, "SessionToken", &t, &te) && xml_elem(vs, ve, "Expiration", &x, &xe) &&
        xml_text(c.akid, sizeof c.akid, a, ae) && xml_text(c.secret, sizeof c.secret, k, ke) &&
        xml_text(c.token, sizeof c.token, t, te) && xml_text(exp, sizeof exp, x, xe) && c.akid[0] &&
        c.secret[0];
    if (ok) c.expires = sl_awscreds_parse_time(exp, strlen(exp));
    if (!ok || c.expires <= 0) {
        sl_awscreds_clear(&c);
        snprintf(err, errlen, "malformed STS credentials");
        return SL_EKMS_DENIED;
    }
    c.source = "web identity";
    *out = c;
    sl_awscreds_clear(&c);
    return SL_OK;
}

/* ---- sources ---- */

/* Reads a whole small file (malloc'd, NUL-terminated; caller cleanses and frees). SL_ENOTFOUND
 * when it does not exist. */
static sl_err read_small(const char *path, char **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? SL_ENOTFOUND : SL_EIO;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
        close(fd);
        return SL_EIO;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *b = malloc(cap);
    if (!b) {
        close(fd);
        return SL_ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    close(fd);
    b[n] = 0;
    *out = b;
    *len = n;
    return SL_OK;
}

static void free_secret(char *p, size_t n) {
    if (!p) return;
    OPENSSL_cleanse(p, n);
    free(p);
}

static const char *profile_name(const sl_awscreds_cfg *cfg) {
    if (cfg->profile && *cfg->profile) return cfg->profile;
    const char *p = getenv("AWS_PROFILE");
    return p && *p ? p : "default";
}

static void home_path(char *out, size_t cap, const char *env, const char *rel) {
    const char *e = getenv(env);
    if (e && *e) {
        snprintf(out, cap, "%s", e);
        return;
    }
    const char *h = getenv("HOME");
    snprintf(out, cap, "%s/%s", h && *h ? h : "/", rel);
}

bool sl_awscreds_region(const char *profile, char *out, size_t cap) {
    const char *r = getenv("AWS_REGION");
    if (!r || !*r) r = getenv("AWS_DEFAULT_REGION");
    if (r && *r) return put(out, cap, r, strlen(r));
    if (!profile || !*profile) {
        profile = getenv("AWS_PROFILE");
        if (!profile || !*profile) profile = "default";
    }
    char path[4096];
    home_path(path, sizeof path, "AWS_CONFIG_FILE", ".aws/config");
    char *t;
    size_t n;
    if (read_small(path, &t, &n) != SL_OK) return false;
    bool ok = sl_awscreds_ini_value(t, n, profile, true, "region", out, cap) && out[0];
    free_secret(t, n);
    return ok;
}

static sl_err from_env(sl_awscreds *out, char *err, size_t errlen) {
    const char *a = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY"),
               *t = getenv("AWS_SESSION_TOKEN");
    bool ha = a && *a, hs = s && *s;
    if (!ha && !hs) return SL_ENOTFOUND;
    sl_awscreds c = {0};
    if (!ha || !hs || !put(c.akid, sizeof c.akid, a, strlen(a)) ||
        !put(c.secret, sizeof c.secret, s, strlen(s)) ||
        (t && *t && !put(c.token, sizeof c.token, t, strlen(t)))) {
        sl_awscreds_clear(&c);
        snprintf(err, errlen, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: incomplete or malformed");
        return SL_EKMS_DENIED;
    }
    c.source = "environment";
    *out = c;
    sl_awscreds_clear(&c);
    return SL_OK;
}

static bool form_add(char *dst, size_t cap, size_t *o, const char *k, const char *v, size_t vl) {
    static const char hex[] = "0123456789ABCDEF";
    int w = snprintf(dst + *o, cap - *o, "%s%s=", *o ? "&" : "", k);
    if (w < 0 || (size_t)w >= cap - *o) return false;
    *o += (size_t)w;
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)v[i];
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~';
        if (*o + 4 >= cap) return false;
        if (keep) {
            dst[(*o)++] = (char)c;
        } else {
            dst[(*o)++] = '%';
            dst[(*o)++] = hex[c >> 4];
            dst[(*o)++] = hex[c & 15];
        }
    }
    dst[*o] = 0;
    return true;
}

static sl_err from_web_identity(const sl_awscreds_cfg *cfg, int64_t now, sl_awscreds *out,
                                char *err, size_t errlen) {
    const char *tf = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
    if (!tf || !*tf || !role || !*role) return SL_ENOTFOUND;
    const char *sess = getenv("AWS_ROLE_SESSION_NAME");
    char sessbuf[64];
    if (!sess || !*sess) {
        snprintf(sessbuf, sizeof sessbuf, "sluice-%lld", (long long)now);
        sess = sessbuf;
    }
    char *tok = NULL;
    size_t tl = 0;
    sl_err rc = read_small(tf, &tok, &tl);
    if (rc != SL_OK) {
        snprintf(err, errlen, "web identity: cannot read AWS_WEB_IDENTITY_TOKEN_FILE %s", tf);
        return SL_EKMS_DENIED;
    }
    while (tl && (tok[tl - 1] == '\n' || tok[tl - 1] == '\r' || tok[tl - 1] == ' ')) tl--;
    char url[1024];
    const char *ep = getenv("AWS_ENDPOINT_URL_STS");
    if (ep && *ep)
        snprintf(url, sizeof url, "%s", ep);
    else if (cfg->region && *cfg->region)
        snprintf(url, sizeof url, "https://sts.%s.amazonaws.com/", cfg->region);
    else
        snprintf(url, sizeof url, "https://sts.amazonaws.com/");
    size_t cap = tl * 3 + strlen(role) * 3 + strlen(sess) * 3 + 256, o = 0;
    char *form = malloc(cap);
    if (!form) {
        free_secret(tok, tl);
        return SL_ENOMEM;
    }
    bool ok = form_add(form, cap, &o, "Action", "AssumeRoleWithWebIdentity", 25) &&
              form_add(form, cap, &o, "Version", "2011-06-15", 10) &&
              form_add(form, cap, &o, "RoleArn", role, strlen(role)) &&
              form_add(form, cap, &o, "RoleSessionName", sess, strlen(sess)) &&
              form_add(form, cap, &o, "WebIdentityToken", tok, tl);
    free_secret(tok, tl);
    if (!ok) {
        free_secret(form, cap);
        snprintf(err, errlen, "web identity: request too large");
        return SL_EKMS_DENIED;
    }
    /* Unsigned, as botocore sends it: the web identity token is the credential. */
    sl_https_header h[] = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                           {"Accept", "text/xml"},
                           {"User-Agent", "sluice"}};
    sl_https_req rq = {.method = "POST",
                       .url = url,
                       .ca_file = cfg->ca_file,
                       .headers = h,
                       .nheaders = sizeof h / sizeof *h,
                       .body = form,
                       .blen = o,
                       .timeout_ms = cfg->timeout_ms,
                       .max_body = MAX_ANSWER};
    sl_https_resp resp;
    char herr[160];
    rc = sl_https_request(&rq, &resp, herr, sizeof herr);
    free_secret(form, cap);
    if (rc != SL_OK) {
        snprintf(err, errlen, "web identity: STS %s: %s", url, herr);
        return rc == SL_ECONFIG || rc == SL_EINVAL ? SL_EKMS_DENIED : SL_EKMS_UNAVAILABLE;
    }
    char perr[160];
    rc = sl_awscreds_parse_sts(resp.body, resp.blen, out, perr, sizeof perr);
    if (rc != SL_OK && resp.status >= 500) rc = SL_EKMS_UNAVAILABLE;
    if (rc != SL_OK) snprintf(err, errlen, "web identity: HTTP %d: %s", resp.status, perr);
    free_secret(resp.body, resp.blen);
    return rc;
}

static sl_err from_files(const sl_awscreds_cfg *cfg, sl_awscreds *out, char *err, size_t errlen) {
    const char *prof = profile_name(cfg);
    static const struct {
        const char *env, *rel;
        bool config_style;
    } k_files[] = {{"AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", false},
                   {"AWS_CONFIG_FILE", ".aws/config", true}};
    for (size_t i = 0; i < 2; i++) {
        char path[4096];
        home_path(path, sizeof path, k_files[i].env, k_files[i].rel);
        char *t;
        size_t n;
        sl_err rc = read_small(path, &t, &n);
        if (rc == SL_ENOTFOUND) continue;
        if (rc != SL_OK) {
            snprintf(err, errlen, "shared credentials: cannot read %s", path);
            return SL_EKMS_DENIED;
        }
        rc = sl_awscreds_parse_ini(t, n, prof, k_files[i].config_style, out);
        free_secret(t, n);
        if (rc == SL_ENOTFOUND) continue;
        if (rc != SL_OK)
            snprintf(err, errlen, "shared credentials: profile %s in %s is incomplete", prof, path);
        return rc;
    }
    return SL_ENOTFOUND;
}

static sl_err imds_call(const sl_awscreds_cfg *cfg, const char *method, const char *path,
                        const sl_https_header *h, size_t nh, sl_https_resp *resp, char *err,
                        size_t errlen) {
    char url[1024];
    size_t el = strlen(cfg->imds_endpoint);
    while (el && cfg->imds_endpoint[el - 1] == '/') el--;
    snprintf(url, sizeof url, "%.*s%s", (int)el, cfg->imds_endpoint, path);
    int64_t t = cfg->timeout_ms < IMDS_TIMEOUT_MS ? cfg->timeout_ms : IMDS_TIMEOUT_MS;
    sl_https_req rq = {.method = method,
                       .url = url,
                       .headers = h,
                       .nheaders = nh,
                       .timeout_ms = t,
                       .max_body = MAX_ANSWER,
                       .allow_http = true};
    char herr[160];
    sl_err rc = sl_https_request(&rq, resp, herr, sizeof herr);
    if (rc != SL_OK) {
        snprintf(err, errlen, "instance metadata %s: %s", cfg->imds_endpoint, herr);
        return rc == SL_ECONFIG || rc == SL_EINVAL ? SL_EKMS_DENIED : SL_EKMS_UNAVAILABLE;
    }
    if (resp->status != 200) {
        snprintf(err, errlen, "instance metadata %s: HTTP %d for %s", cfg->imds_endpoint,
                 resp->status, method);
        free_secret(resp->body, resp->blen);
        resp->body = NULL;
        return resp->status >= 500 ? SL_EKMS_UNAVAILABLE : SL_EKMS_DENIED;
    }
    return SL_OK;
}

static sl_err from_imds(const sl_awscreds_cfg *cfg, sl_awscreds *out, char *err, size_t errlen) {
    const char *dis = getenv("AWS_EC2_METADATA_DISABLED");
    if (!cfg->imds_endpoint || !*cfg->imds_endpoint || (dis && !strcasecmp(dis, "true")))
        return SL_ENOTFOUND;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", IMDS_TOKEN_TTL_S);
    sl_https_header th[] = {{"X-aws-ec2-metadata-token-ttl-seconds", ttl}};
    sl_https_resp r;
    sl_err rc = imds_call(cfg, "PUT", "/latest/api/token", th, 1, &r, err, errlen);
    if (rc != SL_OK) return rc;
    char token[256];
    bool ok = put(token, sizeof token, r.body, r.blen) && token[0];
    free_secret(r.body, r.blen);
    if (!ok) {
        snprintf(err, errlen, "instance metadata: malformed session token");
        return SL_EKMS_DENIED;
    }
    sl_https_header ah[] = {{"X-aws-ec2-metadata-token", token}};
    rc = imds_call(cfg, "GET", "/latest/meta-data/iam/security-credentials/", ah, 1, &r, err,
                   errlen);
    if (rc != SL_OK) {
        OPENSSL_cleanse(token, sizeof token);
        return rc;
    }
    /* first line: the instance profile's role name */
    size_t rl = strcspn(r.body, "\r\n");
    char role[129];
    ok = rl > 0 && put(role, sizeof role, r.body, rl);
    for (size_t i = 0; ok && role[i]; i++)
        ok = strchr("+=,.@_-", role[i]) || (role[i] >= '0' && role[i] <= '9') ||
             (role[i] >= 'A' && role[i] <= 'Z') || (role[i] >= 'a' && role[i] <= 'z');
    free(r.body);
    if (!ok) {
        OPENSSL_cleanse(token, sizeof token);
        snprintf(err, errlen, "instance metadata: no instance role");
        return SL_EKMS_DENIED;
    }
    char path[200];
    snprintf(path, sizeof path, "/latest/meta-data/iam/security-credentials/%s", role);
    rc = imds_call(cfg, "GET", path, ah, 1, &r, err, errlen);
    OPENSSL_cleanse(token, sizeof token);
    if (rc != SL_OK) return rc;
    rc = sl_awscreds_parse_imds(r.body, r.blen, out);
    free_secret(r.body, r.blen);
    if (rc != SL_OK) snprintf(err, errlen, "instance metadata: malformed role credentials");
    return rc;
}

sl_err sl_awscreds_resolve(const sl_awscreds_cfg *cfg, int64_t now, sl_awscreds *out, char *err,
                           size_t errlen) {
    if (errlen) err[0] = 0;
    sl_err rc = from_env(out, err, errlen);
    if (rc != SL_ENOTFOUND) return rc;
    rc = from_web_identity(cfg, now, out, err, errlen);
    if (rc != SL_ENOTFOUND) return rc;
    rc = from_files(cfg, out, err, errlen);
    if (rc != SL_ENOTFOUND) return rc;
    rc = from_imds(cfg, out, err, errlen);
    /* Retriable (an EC2 metadata blip must not look like a configuration error), but say that
     * it was the last source: off EC2 the fix is credentials, or an empty imds.endpoint. */
    if (rc == SL_EKMS_UNAVAILABLE && strlen(err) + 80 < errlen)
        snprintf(err + strlen(err), errlen - strlen(err),
                 " (no credentials in the environment, web identity or shared files either)");
    if (rc != SL_ENOTFOUND) return rc;
    snprintf(err, errlen,
             "no AWS credentials: none in the environment, no web identity, no profile \"%s\" in "
             "the shared files, instance metadata disabled",
             profile_name(cfg));
    return SL_EKMS_DENIED;
}
