/* IAM identity-policy documents: a strict parse into a compiled, immutable form (actions
 * lower-cased, wildcard patterns split into pieces, CIDRs, dates and numbers parsed), and an
 * evaluation that reads only that form and the caller's context: no allocation, no I/O.
 *
 * Patterns are arrays of pieces (literal text, '*', '?', a policy variable), so a literal '*'
 * coming from ${*} or from a substituted value never acts as a wildcard, and a variable is
 * resolved while matching instead of being substituted into a buffer. */
#include "iam/sl_iampolicy.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_json.h"
#include "base/sl_arena.h"

/* Policy documents nest 6 deep (document, Statement array, statement, Condition, operator,
 * key's value array); a little room, then refused. */
#define MAX_DEPTH 8
/* Bytes of the input one quote in an error message may hold (a message holds at most 64). */
#define QUOTE_MAX 40

/* ---- compiled form ---------------------------------------------------------------------- */

enum { PK_LIT, PK_STAR, PK_ONE, PK_VAR };

/* Condition keys (and policy variables). */
enum {
    K_UNKNOWN,
    K_SOURCEIP,
    K_SECURE,
    K_CURTIME,
    K_EPOCH,
    K_TAG,
    K_USERNAME,
    K_PARN,
    K_PTYPE,
};

typedef struct piece {
    uint8_t kind;
    uint8_t key;   /* PK_VAR */
    const char *s; /* PK_LIT text; PK_VAR with K_TAG: the tag key */
    size_t len;
} piece;

typedef struct pat {
    const char *raw; /* as written (NUL-terminated arena copy) */
    piece *pc;
    uint32_t npc;
    bool has_var;
} pat;

/* Operator classes. */
enum { C_STR, C_STRI, C_LIKE, C_IP, C_BOOL, C_DATE, C_NUM, C_NULL, C_ARN };
/* An ARN's components (arn:partition:service:region:account:resource), matched one by one. */
#define ARN_PARTS 6
/* Comparisons of the ordered classes. */
enum { CMP_EQ, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

typedef struct ipnet {
    uint8_t fam; /* 4 or 6 */
    uint8_t bits;
    uint8_t addr[16];
} ipnet;

typedef struct cval {
    pat p;    /* string classes */
    pat *arn; /* C_ARN: ARN_PARTS patterns */
    int64_t ms;
    double num;
    bool b;
    ipnet ip;
} cval;

typedef struct cond {
    uint8_t cls, cmp, key;
    bool neg, ifexists;
    const char *tag; /* K_TAG */
    size_t taglen;
    cval *v;
    uint32_t nv;
} cond;

typedef struct stmt {
    bool deny, not_action, not_resource;
    const char *sid;
    pat *act;
    uint32_t nact;
    pat *res;
    uint32_t nres;
    cond *c;
    uint32_t nc;
} stmt;

struct sl_iam_policy {
    sl_arena *a;
    const char *name;
    stmt *st;
    int nst;
};

static const struct {
    const char *name;
    uint8_t cls, cmp;
    bool neg;
} k_ops[] = {
    {"StringEquals", C_STR, CMP_EQ, false},
    {"StringNotEquals", C_STR, CMP_EQ, true},
    {"StringEqualsIgnoreCase", C_STRI, CMP_EQ, false},
    {"StringNotEqualsIgnoreCase", C_STRI, CMP_EQ, true},
    {"StringLike", C_LIKE, CMP_EQ, false},
    {"StringNotLike", C_LIKE, CMP_EQ, true},
    {"IpAddress", C_IP, CMP_EQ, false},
    {"NotIpAddress", C_IP, CMP_EQ, true},
    {"Bool", C_BOOL, CMP_EQ, false},
    {"DateEquals", C_DATE, CMP_EQ, false},
    {"DateNotEquals", C_DATE, CMP_EQ, true},
    {"DateLessThan", C_DATE, CMP_LT, false},
    {"DateLessThanEquals", C_DATE, CMP_LE, false},
    {"DateGreaterThan", C_DATE, CMP_GT, false},
    {"DateGreaterThanEquals", C_DATE, CMP_GE, false},
    {"NumericEquals", C_NUM, CMP_EQ, false},
    {"NumericNotEquals", C_NUM, CMP_EQ, true},
    {"NumericLessThan", C_NUM, CMP_LT, false},
    {"NumericLessThanEquals", C_NUM, CMP_LE, false},
    {"NumericGreaterThan", C_NUM, CMP_GT, false},
    {"NumericGreaterThanEquals", C_NUM, CMP_GE, false},
    {"Null", C_NULL, CMP_EQ, false},
    /* Not in the header's list, but IAM has them and policies use them on aws:PrincipalArn. */
    {"ArnEquals", C_ARN, CMP_EQ, false},
    {"ArnLike", C_ARN, CMP_EQ, false},
    {"ArnNotEquals", C_ARN, CMP_EQ, true},
    {"ArnNotLike", C_ARN, CMP_EQ, true},
};

static const struct {
    const char *name;
    uint8_t key;
} k_keys[] = {
    {"aws:SourceIp", K_SOURCEIP},   {"aws:SecureTransport", K_SECURE},
    {"aws:CurrentTime", K_CURTIME}, {"aws:EpochTime", K_EPOCH},
    {"aws:username", K_USERNAME},   {"aws:PrincipalArn", K_PARN},
    {"aws:PrincipalType", K_PTYPE},
};
#define TAG_PREFIX "aws:PrincipalTag/"

/* ---- small helpers ---------------------------------------------------------------------- */

static char lc(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool ieq(const char *a, size_t an, const char *b, size_t bn) {
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (lc(a[i]) != lc(b[i])) return false;
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A printable, bounded rendering of input for error messages. */
static const char *quote(char *buf, size_t cap, const char *s, size_t n) {
    size_t o = 0, max = cap - 4 < QUOTE_MAX ? cap - 4 : QUOTE_MAX;
    for (size_t i = 0; i < n && o < max; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    if (n > max) buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
    buf[o] = 0;
    return buf;
}

typedef struct pctx {
    sl_arena *a;
    char *err;
    size_t elen;
    bool vars; /* Version 2012-10-17: policy variables are substituted */
    bool nomem;
} pctx;

__attribute__((format(printf, 2, 3))) static bool perr(pctx *pc, const char *fmt, ...) {
    if (pc->err && pc->elen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pc->err, pc->elen, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void *palloc(pctx *pc, size_t n, size_t size) {
    void *p = sl_arena_calloc(pc->a, n ? n : 1, size);
    if (!p) pc->nomem = true;
    return p;
}

/* ---- dates and numbers ------------------------------------------------------------------ */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool digits(const char *s, size_t n, size_t at, size_t cnt, unsigned *out) {
    if (at + cnt > n) return false;
    unsigned v = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (!is_digit(s[at + i])) return false;
        v = v * 10 + (unsigned)(s[at + i] - '0');
    }
    *out = v;
    return true;
}

/* ISO 8601 as IAM takes it (YYYY-MM-DD, optionally Thh:mm[:ss[.fff]] and Z or ±hh[:]mm, no
 * zone meaning UTC) or epoch seconds (digits only). Milliseconds since the epoch. */
static bool parse_date(const char *s, size_t n, int64_t *ms) {
    if (n == 0 || n > 40) return false;
    size_t i = 0;
    while (i < n && is_digit(s[i])) i++;
    if (i == n) {
        if (n > 12) return false;
        int64_t v = 0;
        for (size_t k = 0; k < n; k++) v = v * 10 + (s[k] - '0');
        *ms = v * 1000;
        return true;
    }
    unsigned y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (!digits(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || !digits(s, n, 5, 2, &mo) ||
        s[7] != '-' || !digits(s, n, 8, 2, &d))
        return false;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1]) return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return false;
    i = 10;
    int64_t off_s = 0;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't') return false;
        if (!digits(s, n, i + 1, 2, &h) || i + 3 >= n || s[i + 3] != ':' ||
            !digits(s, n, i + 4, 2, &mi))
            return false;
        i += 6;
        if (i < n && s[i] == ':') {
            if (!digits(s, n, i + 1, 2, &sec)) return false;
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                size_t k = i + 1;
                unsigned scale = 100;
                while (k < n && is_digit(s[k])) {
                    frac += (unsigned)(s[k] - '0') * scale;
                    scale /= 10;
                    k++;
                }
                if (k == i + 1) return false;
                i = k;
            }
        }
        if (h > 23 || mi > 59 || sec > 60) return false;
        if (sec == 60) sec = 59; /* a leap second: the last representable instant */
        if (i < n) {
            if (s[i] == 'Z' || s[i] == 'z') {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                unsigned oh, om;
                int sign = s[i] == '-' ? -1 : 1;
                if (!digits(s, n, i + 1, 2, &oh)) return false;
                size_t k = i + 3;
                if (k < n && s[k] == ':') k++;
                if (!digits(s, n, k, 2, &om) || oh > 23 || om > 59) return false;
                off_s = sign * (int64_t)(oh * 3600 + om * 60);
                i = k + 2;
            } else {
                return false;
            }
        }
        if (i != n) return false;
    }
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    *ms = t * 1000 + frac;
    return true;
}

/* [-]digits[.digits]: IAM's numeric values; no exponents, no hex, no inf/nan. */
static bool parse_num(const char *s, size_t n, double *out) {
    if (n == 0 || n > 40) return false;
    char buf[48];
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+') i++;
    size_t d0 = i;
    while (i < n && is_digit(s[i])) i++;
    if (i == d0) return false;
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        while (i < n && is_digit(s[i])) i++;
        if (i == f0) return false;
    }
    if (i != n) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = strtod(buf, NULL);
    return isfinite(*out);
}

static bool parse_bool(const char *s, size_t n, bool *b) {
    if (ieq(s, n, "true", 4)) return *b = true, true;
    if (ieq(s, n, "false", 5)) return *b = false, true;
    return false;
}

/* "a.b.c.d[/n]" or an IPv6 address "[/n]"; IPv4-mapped IPv6 addresses count as IPv4. */
static bool parse_ip(const char *s, size_t n, bool cidr, ipnet *ip) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash) {
        if (!cidr) return false;
        *slash = 0;
        const char *b = slash + 1;
        if (!*b || strlen(b) > 3) return false;
        bits = 0;
        for (; *b; b++) {
            if (!is_digit(*b)) return false;
            bits = bits * 10 + (*b - '0');
        }
    }
    memset(ip, 0, sizeof *ip);
    if (inet_pton(AF_INET, buf, ip->addr) == 1) {
        ip->fam = 4;
        if (bits > 32) return false;
        ip->bits = (uint8_t)(bits < 0 ? 32 : bits);
        return true;
    }
    if (inet_pton(AF_INET6, buf, ip->addr) != 1) return false;
    if (bits > 128) return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(ip->addr, mapped, 12) && (bits < 0 || bits >= 96)) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->fam = 4;
        ip->bits = (uint8_t)(bits < 0 ? 32 : bits - 96);
        return true;
    }
    ip->fam = 6;
    ip->bits = (uint8_t)(bits < 0 ? 128 : bits);
    return true;
}

static bool ip_in(const ipnet *net, const ipnet *a) {
    if (net->fam != a->fam) return false;
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, a->addr, full)) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (a->addr[full] & mask);
}

/* ---- patterns --------------------------------------------------------------------------- */

static uint8_t key_of(const char *s, size_t n, const char **tag, size_t *taglen) {
    *tag = NULL;
    *taglen = 0;
    size_t tp = sizeof TAG_PREFIX - 1;
    if (n > tp && ieq(s, tp, TAG_PREFIX, tp)) {
        *tag = s + tp;
        *taglen = n - tp;
        return K_TAG;
    }
    for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++)
        if (ieq(s, n, k_keys[i].name, strlen(k_keys[i].name))) return k_keys[i].key;
    return K_UNKNOWN;
}

/* Splits s[0..n) (an arena copy, NUL-terminated) into pieces; with out NULL only counts. */
static uint32_t compile(const char *s, size_t n, bool glob, bool vars, piece *out) {
    uint32_t np = 0;
    size_t i = 0;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        if (out) out[np] = (piece){__VA_ARGS__};                                                   \
        np++;                                                                                      \
    } while (0)
    while (i < n) {
        if (glob && s[i] == '*') {
            EMIT(PK_STAR, 0, NULL, 0);
            while (i < n && s[i] == '*') i++;
            continue;
        }
        if (glob && s[i] == '?') {
            EMIT(PK_ONE, 0, NULL, 0);
            i++;
            continue;
        }
        if (vars && s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', n - i - 2);
            if (close) {
                const char *v = s + i + 2;
                size_t vn = (size_t)(close - v);
                if (vn == 1 && (*v == '*' || *v == '?' || *v == '$'))
                    EMIT(PK_LIT, 0, *v == '*' ? "*" : *v == '?' ? "?" : "$", 1);
                else {
                    const char *tag;
                    size_t tl;
                    uint8_t k = key_of(v, vn, &tag, &tl);
                    EMIT(PK_VAR, k, tag, tl);
                }
                i = (size_t)(close - s) + 1;
                continue;
            }
        }
        size_t j = i + 1;
        while (j < n && !(glob && (s[j] == '*' || s[j] == '?')) &&
               !(vars && s[j] == '$' && j + 1 < n && s[j + 1] == '{'))
            j++;
        EMIT(PK_LIT, 0, s + i, j - i);
        i = j;
    }
#undef EMIT
    return np;
}

/* Copies and compiles one string; false on out of memory. */
static bool pat_make(pctx *pc, const char *s, size_t n, bool glob, bool lower, pat *p) {
    char *raw = sl_arena_alloc(pc->a, n + 1);
    if (!raw) return pc->nomem = true, false;
    for (size_t i = 0; i < n; i++) raw[i] = lower ? lc(s[i]) : s[i];
    raw[n] = 0;
    p->raw = raw;
    uint32_t np = compile(raw, n, glob, pc->vars, NULL);
    p->pc = palloc(pc, np, sizeof(piece));
    if (!p->pc) return false;
    p->npc = compile(raw, n, glob, pc->vars, p->pc);
    p->has_var = false;
    for (uint32_t i = 0; i < p->npc; i++)
        if (p->pc[i].kind == PK_VAR) p->has_var = true;
    return true;
}

static const sl_iam_ctx k_empty_ctx;

static const char *tag_value(const sl_iam_ctx *c, const char *k, size_t kn) {
    for (size_t i = 0; c->tags && i < c->ntags; i++)
        if (c->tags[i].key && c->tags[i].value &&
            ieq(c->tags[i].key, strlen(c->tags[i].key), k, kn))
            return c->tags[i].value;
    return NULL;
}

/* The string value of a key used as a policy variable; NULL when unset. */
static const char *var_value(const sl_iam_ctx *c, uint8_t key, const char *tag, size_t taglen) {
    switch (key) {
    case K_SOURCEIP:
        return c->source_ip;
    case K_SECURE:
        return c->secure_transport ? "true" : "false";
    case K_TAG:
        return tag_value(c, tag, taglen);
    case K_USERNAME:
        return c->username;
    case K_PARN:
        return c->principal_arn;
    case K_PTYPE:
        return c->principal_type;
    default:
        return NULL;
    }
}

static bool piece_text(const piece *pc, const sl_iam_ctx *c, const char **t, size_t *tn) {
    if (pc->kind == PK_LIT) {
        *t = pc->s;
        *tn = pc->len;
        return true;
    }
    const char *v = var_value(c, pc->key, pc->s, pc->len);
    if (!v) return false;
    *t = v;
    *tn = strlen(v);
    return true;
}

static size_t utf8_step(const char *s, size_t n, size_t i) {
    i++;
    while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
    return i;
}

/* Glob match of pattern p against s[0..n) ('*' any run, '?' one character), literals compared
 * case-insensitively when icase (the pattern is then lower-case already). With `prefix`, true
 * when s is a prefix of some string p matches. A variable without a value matches nothing.
 * Greedy with one backtrack point (the last '*'): linear in practice, O(|p|*|s|) at worst. */
static bool pat_match(const pat *p, const char *s, size_t n, bool icase, bool prefix,
                      const sl_iam_ctx *c) {
    if (p->has_var) {
        for (uint32_t i = 0; i < p->npc; i++) {
            const char *t;
            size_t tn;
            if (p->pc[i].kind == PK_VAR && !piece_text(&p->pc[i], c, &t, &tn)) return false;
        }
    }
    uint32_t pi = 0, spi = 0;
    size_t off = 0, si = 0, ssi = 0;
    bool star = false;
    const char *t = NULL; /* the text of piece tpi (a variable is looked up once per piece) */
    size_t tn = 0;
    uint32_t tpi = UINT32_MAX;
    for (;;) {
        int kind = -1;
        while (pi < p->npc) {
            const piece *pc = &p->pc[pi];
            if (pc->kind == PK_STAR || pc->kind == PK_ONE) {
                kind = pc->kind;
                break;
            }
            if (tpi != pi && !piece_text(pc, c, &t, &tn)) return false;
            tpi = pi;
            if (off < tn) {
                kind = PK_LIT;
                break;
            }
            pi++;
            off = 0;
        }
        if (si == n) {
            if (prefix) return true;
            while (pi < p->npc) {
                const piece *pc = &p->pc[pi];
                if (pc->kind == PK_ONE) return false;
                if (pc->kind != PK_STAR) {
                    if (tpi != pi && !piece_text(pc, c, &t, &tn)) return false;
                    tpi = pi;
                    if (off < tn) return false;
                }
                pi++;
                off = 0;
            }
            return true;
        }
        if (kind == PK_STAR) {
            star = true;
            spi = ++pi;
            off = 0;
            ssi = si;
            continue;
        }
        if (kind == PK_ONE) {
            pi++;
            off = 0;
            si = utf8_step(s, n, si);
            continue;
        }
        if (kind == PK_LIT) {
            /* The run of equal characters at once: no wildcard inside a literal. */
            size_t k = 0, m = tn - off < n - si ? tn - off : n - si;
            if (icase)
                while (k < m && lc(s[si + k]) == lc(t[off + k])) k++;
            else
                while (k < m && s[si + k] == t[off + k]) k++;
            if (k) {
                off += k;
                si += k;
                continue;
            }
        }
        if (!star) return false;
        si = ++ssi;
        pi = spi;
        off = 0;
    }
}

/* Splits an ARN at its first five ':' into the six components. */
static bool arn_split(const char *s, size_t n, const char **part, size_t *plen) {
    size_t at = 0;
    for (int i = 0; i < ARN_PARTS - 1; i++) {
        const char *colon = memchr(s + at, ':', n - at);
        if (!colon) return false;
        part[i] = s + at;
        plen[i] = (size_t)(colon - (s + at));
        at = (size_t)(colon - s) + 1;
    }
    part[ARN_PARTS - 1] = s + at;
    plen[ARN_PARTS - 1] = n - at;
    return plen[0] == 3 && !memcmp(s, "arn", 3);
}

/* ---- parse ------------------------------------------------------------------------------ */

static bool has_nul(const sl_json *v) { return memchr(v->s, 0, v->slen) != NULL; }

/* A string or a non-empty array of strings; the count in *n. */
static bool str_list(pctx *pc, const sl_json *v, const char *path, const char *el, uint32_t *n) {
    if (v->type == SL_JSON_STR) {
        *n = 1;
    } else if (v->type == SL_JSON_ARR) {
        if (v->n == 0) return perr(pc, "%s.%s: empty list", path, el);
        if (v->n > SL_IAM_POLICY_MAX_VALUES)
            return perr(pc, "%s.%s: %zu values, over the limit of %d", path, el, v->n,
                        SL_IAM_POLICY_MAX_VALUES);
        *n = (uint32_t)v->n;
        int i = 0;
        for (const sl_json *e = v->child; e; e = e->next, i++)
            if (e->type != SL_JSON_STR) return perr(pc, "%s.%s[%d]: not a string", path, el, i);
    } else {
        return perr(pc, "%s.%s: not a string or an array of strings", path, el);
    }
    const sl_json *e = v->type == SL_JSON_STR ? v : v->child;
    for (int i = 0; e; e = v->type == SL_JSON_STR ? NULL : e->next, i++) {
        if (e->slen == 0) return perr(pc, "%s.%s[%d]: empty string", path, el, i);
        if (has_nul(e)) return perr(pc, "%s.%s[%d]: NUL character", path, el, i);
    }
    return true;
}

static bool valid_action(const char *s, size_t n) {
    bool all_star = true;
    for (size_t i = 0; i < n; i++) all_star &= s[i] == '*';
    if (all_star) return true;
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s || colon == s + n - 1) return false;
    for (const char *p = s; p < s + n; p++) {
        char c = lc(*p);
        bool ok = (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '*' || c == '?';
        if (p > colon) ok = ok || c == '_';
        if (!ok && p != colon) return false;
    }
    return true;
}

static bool parse_actions(pctx *pc, const sl_json *v, const char *path, const char *el, stmt *st) {
    uint32_t n;
    if (!str_list(pc, v, path, el, &n)) return false;
    st->act = palloc(pc, n, sizeof(pat));
    if (!st->act) return false;
    st->nact = n;
    const sl_json *e = v->type == SL_JSON_STR ? v : v->child;
    for (uint32_t i = 0; i < n; i++, e = e->next) {
        char q[64];
        if (!valid_action(e->s, e->slen))
            return perr(pc, "%s.%s[%u]: \"%s\" is not \"*\" or \"service:action\"", path, el, i,
                        quote(q, sizeof q, e->s, e->slen));
        /* Actions never hold policy variables. */
        bool vars = pc->vars;
        pc->vars = false;
        bool ok = pat_make(pc, e->s, e->slen, true, true, &st->act[i]);
        pc->vars = vars;
        if (!ok) return false;
    }
    return true;
}

static bool parse_resources(pctx *pc, const sl_json *v, const char *path, const char *el,
                            stmt *st) {
    uint32_t n;
    if (!str_list(pc, v, path, el, &n)) return false;
    st->res = palloc(pc, n, sizeof(pat));
    if (!st->res) return false;
    st->nres = n;
    const sl_json *e = v->type == SL_JSON_STR ? v : v->child;
    for (uint32_t i = 0; i < n; i++, e = e->next) {
        char q[64];
        bool stars = true;
        for (size_t k = 0; k < e->slen; k++) stars &= e->s[k] == '*';
        if (!stars && (e->slen < 4 || memcmp(e->s, "arn:", 4)))
            return perr(pc, "%s.%s[%u]: \"%s\" is not \"*\" or an ARN", path, el, i,
                        quote(q, sizeof q, e->s, e->slen));
        if (!pat_make(pc, e->s, e->slen, true, false, &st->res[i])) return false;
    }
    return true;
}

/* One condition value, converted for the operator's class. */
static bool parse_cval(pctx *pc, cond *k, const sl_json *e, cval *out, const char *path) {
    char q[64];
    const char *s = e->s;
    size_t n = e->slen;
    if (e->type == SL_JSON_BOOL) {
        s = e->b ? "true" : "false";
        n = strlen(s);
    } else if (e->type == SL_JSON_NUM) {
        if (k->cls == C_NUM) {
            if (!isfinite(e->num)) return perr(pc, "%s: not a number", path);
            out->num = e->num;
            return true;
        }
        if (k->cls == C_DATE && e->is_int && fabs(e->num) < 1e12) {
            out->ms = (int64_t)e->num * 1000;
            return true;
        }
        return perr(pc, "%s: a number where the operator needs a string", path);
    } else if (e->type != SL_JSON_STR) {
        return perr(pc, "%s: not a string, number or boolean", path);
    } else if (has_nul(e)) {
        return perr(pc, "%s: NUL character", path);
    }
    switch (k->cls) {
    case C_STR:
        return pat_make(pc, s, n, false, false, &out->p);
    case C_STRI:
        return pat_make(pc, s, n, false, true, &out->p);
    case C_LIKE:
        return pat_make(pc, s, n, true, false, &out->p);
    case C_IP:
        if (!parse_ip(s, n, true, &out->ip))
            return perr(pc, "%s: \"%s\" is not an IPv4 or IPv6 address or CIDR", path,
                        quote(q, sizeof q, s, n));
        return true;
    case C_BOOL:
    case C_NULL:
        if (!parse_bool(s, n, &out->b))
            return perr(pc, "%s: \"%s\" is not \"true\" or \"false\"", path,
                        quote(q, sizeof q, s, n));
        return true;
    case C_DATE:
        if (!parse_date(s, n, &out->ms))
            return perr(pc, "%s: \"%s\" is not an ISO 8601 date or epoch seconds", path,
                        quote(q, sizeof q, s, n));
        return true;
    case C_ARN: {
        const char *part[ARN_PARTS];
        size_t plen[ARN_PARTS];
        if (!arn_split(s, n, part, plen))
            return perr(pc,
                        "%s: \"%s\" is not an ARN (arn:partition:service:region:account:resource)",
                        path, quote(q, sizeof q, s, n));
        out->arn = palloc(pc, ARN_PARTS, sizeof(pat));
        if (!out->arn) return false;
        for (int i = 0; i < ARN_PARTS; i++)
            if (!pat_make(pc, part[i], plen[i], true, false, &out->arn[i])) return false;
        return true;
    }
    case C_NUM:
        if (!parse_num(s, n, &out->num))
            return perr(pc, "%s: \"%s\" is not a number", path, quote(q, sizeof q, s, n));
        return true;
    }
    return false;
}

static bool parse_condition(pctx *pc, const sl_json *v, const char *spath, stmt *st) {
    char q[64], path[160];
    if (v->type != SL_JSON_OBJ) return perr(pc, "%s.Condition: not an object", spath);
    size_t total = 0;
    for (const sl_json *o = v->child; o; o = o->next) {
        if (o->type != SL_JSON_OBJ)
            return perr(pc, "%s.Condition.%s: not an object", spath,
                        quote(q, sizeof q, o->key, o->klen));
        if (o->n == 0)
            return perr(pc, "%s.Condition.%s: no condition keys", spath,
                        quote(q, sizeof q, o->key, o->klen));
        total += o->n;
    }
    if (total > SL_IAM_POLICY_MAX_VALUES)
        return perr(pc, "%s.Condition: %zu condition keys, over the limit of %d", spath, total,
                    SL_IAM_POLICY_MAX_VALUES);
    st->c = palloc(pc, total, sizeof(cond));
    if (!st->c) return false;
    for (const sl_json *o = v->child; o; o = o->next) {
        /* Operator: a known name, optionally with IfExists (not for Null). */
        size_t on = o->klen;
        bool ifx = false;
        static const char sfx[] = "IfExists";
        if (on > sizeof sfx - 1 && !memcmp(o->key + on - (sizeof sfx - 1), sfx, sizeof sfx - 1)) {
            ifx = true;
            on -= sizeof sfx - 1;
        }
        int op = -1;
        for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
            if (strlen(k_ops[i].name) == on && !memcmp(k_ops[i].name, o->key, on)) op = (int)i;
        if (op < 0 || (ifx && k_ops[op].cls == C_NULL))
            return perr(pc, "%s.Condition: unknown condition operator \"%s\"", spath,
                        quote(q, sizeof q, o->key, o->klen));
        for (const sl_json *kv = o->child; kv; kv = kv->next) {
            /* The operator by its own name, the key cut short: with a value quoted after it,
             * an error echoes at most 64 bytes of the input. */
            char qk[28];
            snprintf(path, sizeof path, "%s.Condition.%s%s.%s", spath, k_ops[op].name,
                     ifx ? "IfExists" : "", quote(qk, sizeof qk, kv->key, kv->klen));
            cond *k = &st->c[st->nc];
            k->cls = k_ops[op].cls;
            k->cmp = k_ops[op].cmp;
            k->neg = k_ops[op].neg;
            k->ifexists = ifx;
            if (memchr(kv->key, 0, kv->klen)) return perr(pc, "%s: NUL character", path);
            const char *tag;
            size_t tl;
            k->key = key_of(kv->key, kv->klen, &tag, &tl);
            if (tag) {
                char *t = sl_arena_dup(pc->a, tag, tl);
                if (!t) return pc->nomem = true, false;
                k->tag = t;
                k->taglen = tl;
            }
            size_t nv = 1;
            const sl_json *e = kv;
            if (kv->type == SL_JSON_ARR) {
                nv = kv->n;
                e = kv->child;
                if (nv == 0) return perr(pc, "%s: empty list", path);
                if (nv > SL_IAM_POLICY_MAX_VALUES)
                    return perr(pc, "%s: %zu values, over the limit of %d", path, nv,
                                SL_IAM_POLICY_MAX_VALUES);
            }
            k->v = palloc(pc, nv, sizeof(cval));
            if (!k->v) return false;
            for (size_t i = 0; i < nv; i++, e = e->next) {
                char vpath[200];
                snprintf(vpath, sizeof vpath, "%s[%zu]", path, i);
                if (!parse_cval(pc, k, e, &k->v[i], kv->type == SL_JSON_ARR ? vpath : path))
                    return false;
            }
            k->nv = (uint32_t)nv;
            st->nc++;
        }
    }
    return true;
}

static bool parse_stmt(pctx *pc, const sl_json *v, const char *path, stmt *st) {
    char q[64];
    if (v->type != SL_JSON_OBJ) return perr(pc, "%s: not an object", path);
    const sl_json *effect = NULL, *act = NULL, *nact = NULL, *res = NULL, *nres = NULL, *cnd = NULL,
                  *sid = NULL;
    for (const sl_json *m = v->child; m; m = m->next) {
#define IS(name) (m->klen == sizeof name - 1 && !memcmp(m->key, name, sizeof name - 1))
        if (IS("Sid"))
            sid = m;
        else if (IS("Effect"))
            effect = m;
        else if (IS("Action"))
            act = m;
        else if (IS("NotAction"))
            nact = m;
        else if (IS("Resource"))
            res = m;
        else if (IS("NotResource"))
            nres = m;
        else if (IS("Condition"))
            cnd = m;
        else if (IS("Principal") || IS("NotPrincipal"))
            return perr(pc,
                        "%s.%s: not allowed in an identity policy (attach the policy to users "
                        "and roles instead)",
                        path, m->key);
        else
            return perr(pc, "%s: unknown element \"%s\"", path,
                        quote(q, sizeof q, m->key, m->klen));
#undef IS
    }
    st->sid = "";
    if (sid) {
        if (sid->type != SL_JSON_STR) return perr(pc, "%s.Sid: not a string", path);
        for (size_t i = 0; i < sid->slen; i++) {
            char c = sid->s[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c)))
                return perr(pc, "%s.Sid: \"%s\" is not alphanumeric", path,
                            quote(q, sizeof q, sid->s, sid->slen));
        }
        char *s = sl_arena_dup(pc->a, sid->s, sid->slen + 1);
        if (!s) return pc->nomem = true, false;
        st->sid = s;
    }
    if (!effect) return perr(pc, "%s.Effect: missing", path);
    if (sl_json_str_eq(effect, "Deny", 4))
        st->deny = true;
    else if (!sl_json_str_eq(effect, "Allow", 5))
        return perr(pc, "%s.Effect: must be \"Allow\" or \"Deny\"", path);
    if (act && nact) return perr(pc, "%s: both Action and NotAction", path);
    if (!act && !nact) return perr(pc, "%s: neither Action nor NotAction", path);
    if (res && nres) return perr(pc, "%s: both Resource and NotResource", path);
    if (!res && !nres) return perr(pc, "%s: neither Resource nor NotResource", path);
    st->not_action = nact != NULL;
    st->not_resource = nres != NULL;
    if (!parse_actions(pc, act ? act : nact, path, act ? "Action" : "NotAction", st)) return false;
    if (!parse_resources(pc, res ? res : nres, path, res ? "Resource" : "NotResource", st))
        return false;
    if (cnd && !parse_condition(pc, cnd, path, st)) return false;
    return true;
}

void sl_iam_policy_free(sl_iam_policy *p) {
    if (!p) return;
    sl_arena_free(p->a);
    free(p);
}

sl_err sl_iam_policy_parse(const char *name, const char *json, size_t len, sl_iam_policy **out,
                           char *err, size_t elen) {
    if (err && elen) err[0] = 0;
    if (!out) return SL_EINVAL;
    *out = NULL;
    pctx pc = {.err = err, .elen = elen};
    if (!json && len) return perr(&pc, "document: NULL"), SL_EINVAL;
    if (len > SL_IAM_POLICY_MAX_BYTES)
        return perr(&pc, "document: %zu bytes, over the limit of %d", len, SL_IAM_POLICY_MAX_BYTES),
               SL_EINVAL;
    sl_arena *ja = sl_arena_new(len * 2 + 1024);
    if (!ja) return SL_ENOMEM;
    char jerr[96] = "";
    const sl_json *root = sl_json_parse(ja, json ? json : "", len, MAX_DEPTH, jerr, sizeof jerr);
    if (!root) {
        sl_arena_free(ja);
        if (!strcmp(jerr, "out of memory")) return SL_ENOMEM;
        return perr(&pc, "document: invalid JSON: %s", jerr), SL_EINVAL;
    }
    sl_err rc = SL_EINVAL;
    sl_iam_policy *p = NULL;
    char q[64];
    if (root->type != SL_JSON_OBJ) {
        perr(&pc, "document: not a JSON object");
        goto out;
    }
    const sl_json *ver = NULL, *sts = NULL;
    for (const sl_json *m = root->child; m; m = m->next) {
        if (m->klen == 7 && !memcmp(m->key, "Version", 7))
            ver = m;
        else if (m->klen == 9 && !memcmp(m->key, "Statement", 9))
            sts = m;
        else if (m->klen == 2 && !memcmp(m->key, "Id", 2)) {
            if (m->type != SL_JSON_STR) {
                perr(&pc, "Id: not a string");
                goto out;
            }
        } else {
            perr(&pc, "document: unknown element \"%s\"", quote(q, sizeof q, m->key, m->klen));
            goto out;
        }
    }
    if (!ver) {
        perr(&pc, "Version: missing (\"2012-10-17\")");
        goto out;
    }
    if (sl_json_str_eq(ver, "2012-10-17", 10))
        pc.vars = true;
    else if (!sl_json_str_eq(ver, "2008-10-17", 10)) {
        perr(&pc, "Version: must be \"2012-10-17\" (or the older \"2008-10-17\")");
        goto out;
    }
    if (!sts) {
        perr(&pc, "Statement: missing");
        goto out;
    }
    if (sts->type != SL_JSON_ARR && sts->type != SL_JSON_OBJ) {
        perr(&pc, "Statement: not an array or an object");
        goto out;
    }
    size_t nst = sts->type == SL_JSON_ARR ? sts->n : 1;
    if (nst == 0) {
        perr(&pc, "Statement: no statements");
        goto out;
    }
    if (nst > SL_IAM_POLICY_MAX_STATEMENTS) {
        perr(&pc, "Statement: %zu statements, over the limit of %d", nst,
             SL_IAM_POLICY_MAX_STATEMENTS);
        goto out;
    }
    rc = SL_ENOMEM;
    p = calloc(1, sizeof *p);
    if (!p || !(p->a = sl_arena_new(4096))) goto out;
    pc.a = p->a;
    const char *nm = name ? name : "";
    if (!(p->name = sl_arena_dup(p->a, nm, strlen(nm) + 1))) goto out;
    if (!(p->st = palloc(&pc, nst, sizeof(stmt)))) goto out;
    const sl_json *e = sts->type == SL_JSON_ARR ? sts->child : sts;
    for (size_t i = 0; i < nst; i++, e = e->next) {
        char path[32];
        if (sts->type == SL_JSON_ARR)
            snprintf(path, sizeof path, "Statement[%zu]", i);
        else
            snprintf(path, sizeof path, "Statement");
        if (!parse_stmt(&pc, e, path, &p->st[i])) {
            rc = pc.nomem ? SL_ENOMEM : SL_EINVAL;
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (p->st[i].sid[0] && !strcmp(p->st[i].sid, p->st[j].sid)) {
                perr(&pc, "%s.Sid: \"%s\" also names Statement[%zu]", path,
                     quote(q, sizeof q, p->st[i].sid, strlen(p->st[i].sid)), j);
                rc = SL_EINVAL;
                goto out;
            }
    }
    p->nst = (int)nst;
    *out = p;
    p = NULL;
    rc = SL_OK;
out:
    if (rc == SL_ENOMEM) perr(&pc, "out of memory");
    sl_iam_policy_free(p);
    sl_arena_free(ja);
    return rc;
}

const char *sl_iam_policy_name(const sl_iam_policy *p) { return p ? p->name : ""; }
int sl_iam_policy_statements(const sl_iam_policy *p) { return p ? p->nst : 0; }

bool sl_iam_name_valid(const char *name) {
    if (!name) return false;
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || strchr("+=,.@_-", c);
        if (!ok || n >= SL_IAM_NAME_MAX) return false;
    }
    return n > 0;
}

/* ---- evaluate --------------------------------------------------------------------------- */

/* A context key's value: its string form, and its typed form where it has one. */
typedef struct kval {
    bool present;
    const char *s;
    size_t n;
    bool has_ms, has_num, has_bool;
    int64_t ms;
    double num;
    bool b;
    char buf[80]; /* room for any int64 year: -Wformat-truncation */
} kval;

/* Seconds kept where milliseconds and civil dates cannot overflow (±300,000 years). */
#define NOW_LIMIT 10000000000000LL

/* The string forms of aws:CurrentTime and aws:EpochTime are written only for the string
 * operators (`str`): the date and numeric ones read the number. */
static void key_value(const sl_iam_ctx *c, const cond *k, bool str, kval *v) {
    memset(v, 0, offsetof(kval, buf));
    int64_t now = c->now_s > NOW_LIMIT ? NOW_LIMIT : c->now_s < -NOW_LIMIT ? -NOW_LIMIT : c->now_s;
    switch (k->key) {
    case K_CURTIME:
        v->present = v->has_ms = true;
        v->ms = now * 1000;
        v->s = "";
        if (str) {
            int64_t y, days = now >= 0 ? now / 86400 : -((-now + 86399) / 86400);
            int64_t sod = now - days * 86400;
            unsigned mo, d;
            civil_from_days(days, &y, &mo, &d);
            snprintf(v->buf, sizeof v->buf, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, mo, d,
                     (unsigned)(sod / 3600), (unsigned)(sod / 60 % 60), (unsigned)(sod % 60));
            v->s = v->buf;
        }
        break;
    case K_EPOCH:
        v->present = v->has_num = true;
        v->num = (double)now;
        v->s = "";
        if (str) {
            snprintf(v->buf, sizeof v->buf, "%lld", (long long)now);
            v->s = v->buf;
        }
        break;
    case K_SECURE:
        v->present = v->has_bool = true;
        v->b = c->secure_transport;
        v->s = c->secure_transport ? "true" : "false";
        break;
    default:
        v->s = var_value(c, k->key, k->tag, k->taglen);
        v->present = v->s != NULL;
        break;
    }
    if (v->s) v->n = strlen(v->s);
}

/* `cmp` on the order of two values: o < 0, 0 or > 0 as the context value is below, equal to
 * or above the policy's (one switch for numbers and dates). */
static bool ordered(uint8_t cmp, int o) {
    switch (cmp) {
    case CMP_LT:
        return o < 0;
    case CMP_LE:
        return o <= 0;
    case CMP_GT:
        return o > 0;
    case CMP_GE:
        return o >= 0;
    default:
        return o == 0;
    }
}

/* Every key of the condition (the caller ANDs them); values OR'ed, negated operators NOR'ed;
 * a context value that cannot be read as the operator's type makes the condition false. */
static bool cond_holds(const cond *k, const sl_iam_ctx *c) {
    kval v;
    key_value(c, k, k->cls == C_STR || k->cls == C_STRI || k->cls == C_LIKE, &v);
    if (k->cls == C_NULL) {
        for (uint32_t i = 0; i < k->nv; i++)
            if (k->v[i].b == !v.present) return true;
        return false;
    }
    if (!v.present) return k->ifexists || k->neg;
    ipnet ip;
    switch (k->cls) {
    case C_IP:
        if (!parse_ip(v.s, v.n, false, &ip)) return false;
        break;
    case C_BOOL:
        if (!v.has_bool && !parse_bool(v.s, v.n, &v.b)) return false;
        break;
    case C_DATE:
        if (v.has_num)
            v.ms = (int64_t)v.num * 1000;
        else if (!v.has_ms && !parse_date(v.s, v.n, &v.ms))
            return false;
        break;
    case C_NUM:
        if (!v.has_num && !parse_num(v.s, v.n, &v.num)) return false;
        break;
    }
    bool any = false;
    for (uint32_t i = 0; i < k->nv && !any; i++) {
        const cval *cv = &k->v[i];
        switch (k->cls) {
        case C_STR:
        case C_LIKE:
            any = pat_match(&cv->p, v.s, v.n, false, false, c);
            break;
        case C_STRI:
            any = pat_match(&cv->p, v.s, v.n, true, false, c);
            break;
        case C_IP:
            any = ip_in(&cv->ip, &ip);
            break;
        case C_ARN: {
            const char *part[ARN_PARTS];
            size_t plen[ARN_PARTS];
            any = arn_split(v.s, v.n, part, plen);
            for (int j = 0; j < ARN_PARTS && any; j++)
                any = pat_match(&cv->arn[j], part[j], plen[j], false, false, c);
            break;
        }
        case C_BOOL:
            any = cv->b == v.b;
            break;
        case C_DATE:
            any = ordered(k->cmp, (v.ms > cv->ms) - (v.ms < cv->ms));
            break;
        case C_NUM:
            any = ordered(k->cmp, (v.num > cv->num) - (v.num < cv->num));
            break;
        }
    }
    return k->neg ? !any : any;
}

static bool conds_hold(const stmt *st, const sl_iam_ctx *c) {
    for (uint32_t i = 0; i < st->nc; i++)
        if (!cond_holds(&st->c[i], c)) return false;
    return true;
}

static bool action_matches(const stmt *st, const char *action, size_t an, const sl_iam_ctx *c) {
    bool any = false;
    for (uint32_t i = 0; i < st->nact && !any; i++)
        any = pat_match(&st->act[i], action, an, true, false, c);
    return any != st->not_action;
}

static bool resource_matches(const stmt *st, const char *res, size_t rn, const sl_iam_ctx *c) {
    bool any = false;
    for (uint32_t i = 0; i < st->nres && !any; i++)
        any = pat_match(&st->res[i], res, rn, false, false, c);
    return any != st->not_resource;
}

sl_iam_effect sl_iam_evaluate(const sl_iam_policy *const *pols, size_t n, const char *action,
                              const char *resource, const sl_iam_ctx *ctx, sl_iam_why *why) {
    if (why) *why = (sl_iam_why){NULL, -1, ""};
    if (!action || !resource || !pols) return SL_IAM_IMPLICIT_DENY;
    const sl_iam_ctx *c = ctx ? ctx : &k_empty_ctx;
    size_t an = strlen(action), rn = strlen(resource);
    const sl_iam_policy *ap = NULL;
    int ai = -1;
    for (size_t pi = 0; pi < n; pi++) {
        const sl_iam_policy *p = pols[pi];
        if (!p) continue;
        for (int i = 0; i < p->nst; i++) {
            const stmt *st = &p->st[i];
            if (!st->deny && ap) continue; /* an Allow already decided unless a Deny follows */
            if (!action_matches(st, action, an, c) || !resource_matches(st, resource, rn, c) ||
                !conds_hold(st, c))
                continue;
            if (st->deny) {
                if (why) *why = (sl_iam_why){p->name, i, st->sid};
                return SL_IAM_EXPLICIT_DENY;
            }
            ap = p;
            ai = i;
        }
    }
    if (!ap) return SL_IAM_IMPLICIT_DENY;
    if (why) *why = (sl_iam_why){ap->name, ai, ap->st[ai].sid};
    return SL_IAM_ALLOW;
}

/* True when pattern p matches every string that starts with q[0..qn): p ends with '*' and
 * matches q itself (the part before that '*' then matches a prefix of q, and the '*' takes
 * anything after). Sufficient, not necessary (callers use it where answering false is the
 * conservative side). */
static bool pat_covers(const pat *p, const char *q, size_t qn, const sl_iam_ctx *c) {
    return p->npc && p->pc[p->npc - 1].kind == PK_STAR && pat_match(p, q, qn, false, false, c);
}

bool sl_iam_allows_any(const sl_iam_policy *const *pols, size_t n, const char *action,
                       const char *resource_pattern, const sl_iam_ctx *ctx) {
    if (!action || !resource_pattern || !pols) return false;
    const char *star = strchr(resource_pattern, '*');
    if (!star) return sl_iam_evaluate(pols, n, action, resource_pattern, ctx, NULL) == SL_IAM_ALLOW;
    const sl_iam_ctx *c = ctx ? ctx : &k_empty_ctx;
    size_t an = strlen(action), qn = (size_t)(star - resource_pattern);
    const char *q = resource_pattern;
    bool allowed = false;
    for (size_t pi = 0; pi < n; pi++) {
        const sl_iam_policy *p = pols[pi];
        if (!p) continue;
        for (int i = 0; i < p->nst; i++) {
            const stmt *st = &p->st[i];
            if (!st->deny && allowed) continue;
            if (!action_matches(st, action, an, c) || !conds_hold(st, c)) continue;
            bool hit = false;
            if (st->deny) {
                /* Covers the whole pattern: some Resource covers it, or no NotResource can
                 * match anything under it. */
                for (uint32_t r = 0; r < st->nres && !hit; r++)
                    hit = st->not_resource ? pat_match(&st->res[r], q, qn, false, true, c)
                                           : pat_covers(&st->res[r], q, qn, c);
                if (st->not_resource) hit = !hit;
                if (hit) return false;
            } else {
                /* Intersects: some Resource could match something under it, or not every
                 * resource under it is excluded by a NotResource. */
                for (uint32_t r = 0; r < st->nres && !hit; r++)
                    hit = st->not_resource ? pat_covers(&st->res[r], q, qn, c)
                                           : pat_match(&st->res[r], q, qn, false, true, c);
                if (st->not_resource) hit = !hit;
                if (hit) allowed = true;
            }
        }
    }
    return allowed;
}
