/* Principal mapping rules (see sl_principal.h). Kafka evaluates Java regular expressions; we
 * use POSIX EREs and translate the few Java-isms its documented examples use (lazy quantifiers,
 * \d), so the common rules behave the same. Differences are listed in docs/tls.md. */
#include "crypto/sl_principal.h"

#include <ctype.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_RULES_MAX 64

typedef struct rule {
    bool is_default;
    char caseop; /* 0, 'L' or 'U' */
    regex_t re;
    char *repl; /* raw replacement: \x escapes and $n references resolved when applied */
} rule;

struct sl_principal_rules {
    rule v[SL_RULES_MAX];
    int n;
};

void sl_principal_rules_free(sl_principal_rules *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        if (r->v[i].is_default) continue;
        regfree(&r->v[i].re);
        free(r->v[i].repl);
    }
    free(r);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Reads a '/'-terminated field starting at *pp into a malloc'd string. `translate` turns the
 * pattern's Java-only syntax into POSIX. Leaves *pp after the '/'. NULL if unterminated. */
static char *read_field(const char **pp, bool translate) {
    const char *p = *pp;
    size_t cap = strlen(p) * 5 + 1; /* \d grows to [0-9] */
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    bool prev_quant = false, in_bracket = false;
    while (*p && *p != '/') {
        if (*p == '\\' && p[1]) {
            if (p[1] == '/') {
                *o++ = '/';
            } else if (translate && p[1] == 'd' && !in_bracket) {
                memcpy(o, "[0-9]", 5);
                o += 5;
            } else {
                *o++ = p[0];
                *o++ = p[1];
            }
            p += 2;
            prev_quant = false;
            continue;
        }
        char c = *p++;
        if (translate) {
            if (in_bracket) {
                if (c == ']') in_bracket = false;
            } else if (c == '[') {
                in_bracket = true;
                *o++ = c;
                if (*p == '^') *o++ = *p++;
                if (*p == ']') *o++ = *p++; /* a leading ] is a member, not the end */
                prev_quant = false;
                continue;
            } else if (c == '?' && prev_quant) {
                prev_quant = false; /* lazy marker: POSIX has only greedy matching */
                continue;
            }
            prev_quant = !in_bracket && (c == '*' || c == '+' || c == '?' || c == '}');
        }
        *o++ = c;
    }
    if (*p != '/') {
        free(out);
        return NULL;
    }
    *o = 0;
    *pp = p + 1;
    return out;
}

sl_err sl_principal_rules_parse(const char *spec, sl_principal_rules **out, char *err,
                                size_t elen) {
    *out = NULL;
    sl_principal_rules *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    const char *p = spec ? spec : "";
    for (;;) {
        while (is_space(*p) || *p == ',') p++;
        if (!*p) break;
        if (r->n == SL_RULES_MAX) {
            snprintf(err, elen, "ssl.principal.mapping.rules: more than %d rules", SL_RULES_MAX);
            goto fail;
        }
        const char *start = p;
        rule *ru = &r->v[r->n];
        if (!strncmp(p, "DEFAULT", 7)) {
            ru->is_default = true;
            p += 7;
            r->n++;
        } else if (!strncmp(p, "RULE:", 5)) {
            p += 5;
            char *pat = read_field(&p, true);
            char *repl = pat ? read_field(&p, false) : NULL;
            if (!repl) {
                free(pat);
                snprintf(err, elen,
                         "ssl.principal.mapping.rules: rule at \"%.40s\" is not "
                         "RULE:pattern/replacement/[LU]",
                         start);
                goto fail;
            }
            int rc = regcomp(&ru->re, pat, REG_EXTENDED);
            free(pat);
            if (rc != 0) {
                char msg[128];
                regerror(rc, &ru->re, msg, sizeof msg);
                free(repl);
                snprintf(err, elen, "ssl.principal.mapping.rules: bad pattern in \"%.40s\": %s",
                         start, msg);
                goto fail;
            }
            ru->repl = repl;
            r->n++;
            if (*p == 'L' || *p == 'U') ru->caseop = *p++;
        } else {
            snprintf(err, elen, "ssl.principal.mapping.rules: invalid rule at \"%.40s\"", start);
            goto fail;
        }
        while (*p == ' ' || *p == '\t') p++;
        if (*p && *p != ',' && *p != '\n' && *p != '\r') {
            snprintf(err, elen, "ssl.principal.mapping.rules: unexpected text after rule \"%.40s\"",
                     start);
            goto fail;
        }
    }
    if (r->n == 0) {
        r->v[0].is_default = true;
        r->n = 1;
    }
    *out = r;
    return SL_OK;
fail:
    sl_principal_rules_free(r);
    return SL_ECONFIG;
}

static bool put(char *out, size_t outlen, size_t *o, const char *s, size_t n) {
    if (*o + n >= outlen) return false;
    memcpy(out + *o, s, n);
    *o += n;
    return true;
}

static bool apply_rule(const rule *ru, const char *dn, char *out, size_t outlen) {
    regmatch_t m[10];
    size_t dl = strlen(dn);
    if (regexec(&ru->re, dn, 10, m, 0) != 0 || m[0].rm_so != 0 || (size_t)m[0].rm_eo != dl)
        return false;
    size_t o = 0;
    for (const char *s = ru->repl; *s; s++) {
        if (*s == '\\' && s[1]) {
            if (!put(out, outlen, &o, ++s, 1)) return false;
        } else if (*s == '$' && isdigit((unsigned char)s[1])) {
            int g = *++s - '0';
            if (g > (int)ru->re.re_nsub) return false; /* Java: no such group */
            if (m[g].rm_so >= 0 &&
                !put(out, outlen, &o, dn + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so)))
                return false;
        } else if (!put(out, outlen, &o, s, 1)) {
            return false;
        }
    }
    out[o] = 0;
    for (size_t i = 0; i < o && ru->caseop; i++)
        out[i] = (char)(ru->caseop == 'L' ? tolower((unsigned char)out[i])
                                          : toupper((unsigned char)out[i]));
    return true;
}

bool sl_principal_map(const sl_principal_rules *r, const char *dn, char *out, size_t outlen) {
    if (!outlen) return false;
    for (int i = 0; i < r->n; i++) {
        const rule *ru = &r->v[i];
        if (ru->is_default) {
            size_t n = strlen(dn);
            if (n == 0 || n >= outlen) return false;
            memcpy(out, dn, n + 1);
            return true;
        }
        if (apply_rule(ru, dn, out, outlen)) return out[0] != 0;
    }
    return false;
}

bool sl_x509_subject_rfc2253(const void *x509, char *out, size_t outlen) {
    X509_NAME *nm = X509_get_subject_name((const X509 *)x509);
    BIO *b = BIO_new(BIO_s_mem());
    if (!nm || !b || !outlen) {
        BIO_free(b);
        return false;
    }
    /* RFC 2253 order and escaping as Java's X500Principal.getName(); UTF-8 kept, not \XX. */
    bool ok = X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0;
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    ok = ok && n >= 0 && (size_t)n < outlen && memchr(data, 0, (size_t)n) == NULL;
    if (ok) {
        memcpy(out, data, (size_t)n);
        out[n] = 0;
    }
    BIO_free(b);
    return ok;
}
