/* ACL model, index and stored format (sl_acl.h).
 *
 * Index: open-addressing hash tables keyed by (resource type, pattern type, name), and by that
 * plus the principal. A LITERAL lookup is one probe for the name and one for "*". PREFIXED
 * patterns live in the same tables; a lookup probes each prefix length that some PREFIXED
 * pattern of that resource type has, hashing the name incrementally, so it costs O(name length
 * + distinct prefix lengths) however many bindings there are. This is a prefix tree flattened
 * into the hash table: a node exists only where a pattern ends. A decision then reads only the
 * caller's and User:*'s bindings of each matching resource. */
#include "acl/sl_acl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_res[] = {
    "UNKNOWN", "ANY", "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN", "USER"};
static const char *const k_pat[] = {"UNKNOWN", "ANY", "MATCH", "LITERAL", "PREFIXED"};
static const char *const k_op[] = {"UNKNOWN",
                                   "ANY",
                                   "ALL",
                                   "READ",
                                   "WRITE",
                                   "CREATE",
                                   "DELETE",
                                   "ALTER",
                                   "DESCRIBE",
                                   "CLUSTER_ACTION",
                                   "DESCRIBE_CONFIGS",
                                   "ALTER_CONFIGS",
                                   "IDEMPOTENT_WRITE",
                                   "CREATE_TOKENS",
                                   "DESCRIBE_TOKENS"};
static const char *const k_perm[] = {"UNKNOWN", "ANY", "DENY", "ALLOW"};

#define NELEM(a) ((int)(sizeof a / sizeof a[0]))

static const char *name_of(const char *const *tab, int n, int v) {
    return v >= 0 && v < n ? tab[v] : "UNKNOWN";
}
const char *sl_acl_res_name(int v) { return name_of(k_res, NELEM(k_res), v); }
const char *sl_acl_pat_name(int v) { return name_of(k_pat, NELEM(k_pat), v); }
const char *sl_acl_op_name(int v) { return name_of(k_op, NELEM(k_op), v); }
const char *sl_acl_perm_name(int v) { return name_of(k_perm, NELEM(k_perm), v); }

/* Compares ignoring case, '_' and '-', so "IdempotentWrite", "idempotent-write" and
 * "IDEMPOTENT_WRITE" are one name. */
static bool loose_eq(const char *a, const char *b) {
    for (;;) {
        while (*a == '_' || *a == '-') a++;
        while (*b == '_' || *b == '-') b++;
        if (!*a || !*b) return !*a && !*b;
        if (toupper((unsigned char)*a) != toupper((unsigned char)*b)) return false;
        a++, b++;
    }
}

static int parse_of(const char *const *tab, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (loose_eq(s, tab[i])) return i;
    return -1;
}
int sl_acl_res_parse(const char *s) { return parse_of(k_res, NELEM(k_res), s); }
int sl_acl_pat_parse(const char *s) { return parse_of(k_pat, NELEM(k_pat), s); }
int sl_acl_op_parse(const char *s) { return parse_of(k_op, NELEM(k_op), s); }
int sl_acl_perm_parse(const char *s) { return parse_of(k_perm, NELEM(k_perm), s); }

static bool str_ok(const char *s) { return s && *s && strlen(s) <= SL_ACL_STR_MAX; }

const char *sl_acl_invalid(const sl_acl *a) {
    if (a->rtype <= SL_ACL_RES_ANY || a->rtype >= SL_ACL_RES__COUNT) return "Invalid resourceType";
    if (a->pattern != SL_ACL_PAT_LITERAL && a->pattern != SL_ACL_PAT_PREFIXED)
        return "Invalid patternType";
    if (a->op <= SL_ACL_OP_ANY || a->op > SL_ACL_OP_DESCRIBE_TOKENS) return "Invalid operation";
    if (a->perm != SL_ACL_PERM_DENY && a->perm != SL_ACL_PERM_ALLOW)
        return "Invalid permissionType";
    if (!str_ok(a->name)) return "Invalid empty resource name";
    if (a->rtype == SL_ACL_RES_CLUSTER &&
        (a->pattern != SL_ACL_PAT_LITERAL || strcmp(a->name, SL_ACL_CLUSTER_NAME)))
        return "The only valid name for the CLUSTER resource is kafka-cluster";
    if (!str_ok(a->principal)) return "Invalid null principal";
    const char *colon = strchr(a->principal, ':');
    if (!colon || colon == a->principal || !colon[1])
        return "Could not parse principal: expected Type:name";
    if (!str_ok(a->host)) return "Invalid null host";
    return NULL;
}

const char *sl_acl_filter_invalid(const sl_acl_filter *f) {
    if (f->rtype < SL_ACL_RES_ANY || f->rtype >= SL_ACL_RES__COUNT || f->pattern < SL_ACL_PAT_ANY ||
        f->pattern > SL_ACL_PAT_PREFIXED || f->op < SL_ACL_OP_ANY ||
        f->op > SL_ACL_OP_DESCRIBE_TOKENS || f->perm < SL_ACL_PERM_ANY ||
        f->perm > SL_ACL_PERM_ALLOW)
        return "The filter contains UNKNOWN elements";
    return NULL;
}

static bool eq_opt(const char *a, const char *b) { return !a || !strcmp(a, b); }

bool sl_acl_filter_matches(const sl_acl_filter *f, const sl_acl *a) {
    if (f->rtype != SL_ACL_RES_ANY && f->rtype != a->rtype) return false;
    if (f->pattern != SL_ACL_PAT_ANY && f->pattern != SL_ACL_PAT_MATCH && f->pattern != a->pattern)
        return false;
    if (f->name) {
        if (f->pattern == SL_ACL_PAT_ANY || f->pattern == a->pattern) {
            if (strcmp(f->name, a->name)) return false;
        } else if (a->pattern == SL_ACL_PAT_LITERAL) {
            if (strcmp(f->name, a->name) && strcmp(a->name, "*")) return false;
        } else if (strncmp(f->name, a->name, strlen(a->name))) {
            return false;
        }
    }
    return eq_opt(f->principal, a->principal) && eq_opt(f->host, a->host) &&
           (f->op == SL_ACL_OP_ANY || f->op == a->op) &&
           (f->perm == SL_ACL_PERM_ANY || f->perm == a->perm);
}

bool sl_acl_equal(const sl_acl *a, const sl_acl *b) {
    return a->rtype == b->rtype && a->pattern == b->pattern && a->op == b->op &&
           a->perm == b->perm && !strcmp(a->name, b->name) && !strcmp(a->principal, b->principal) &&
           !strcmp(a->host, b->host);
}

void sl_acl_format(const sl_acl *a, char *buf, size_t len) {
    snprintf(buf, len, "%s %s from %s %s on %s %s:%s", sl_acl_perm_name(a->perm), a->principal,
             a->host, sl_acl_op_name(a->op), sl_acl_res_name(a->rtype), sl_acl_pat_name(a->pattern),
             a->name);
}

/* ---- the set and its index ---- */

/* One table maps a resource (type, pattern type, name) to its bindings; a second maps the
 * resource plus a principal to that principal's bindings, so a decision reads only the caller's
 * and User:*'s bindings however many other principals share the resource. */
typedef struct bucket {
    uint64_t h;
    const char *name;      /* NULL: empty slot; points into an entry */
    const char *principal; /* NULL in the resource table */
    size_t nlen;
    int8_t rtype, pattern;
    uint32_t *ids, n, cap;
} bucket;

typedef struct table {
    bucket *b;
    size_t mask;
} table;

struct sl_acl_set {
    sl_acl *e;
    size_t n;
    table res, pr;
    size_t *plen[SL_ACL_RES__COUNT]; /* distinct PREFIXED name lengths, ascending */
    size_t nplen[SL_ACL_RES__COUNT];
};

#define FNV_OFF   14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static inline uint64_t fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * FNV_PRIME; }

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* Mixes the resource and pattern type into a name hash so one table serves every kind. */
static inline uint64_t key_hash(uint64_t h, int rtype, int pattern) {
    return mix(h ^ (uint64_t)(rtype * 8 + pattern) * 0x9E3779B97F4A7C15ull);
}

static uint64_t principal_hash(uint64_t kh, const char *p) {
    uint64_t h = kh ^ 0x6A09E667F3BCC909ull;
    for (; *p; p++) h = fnv_step(h, (unsigned char)*p);
    return mix(h);
}

static bucket *probe(const table *t, uint64_t h, int rtype, int pattern, const char *name,
                     size_t nlen, const char *principal) {
    if (!t->b) return NULL;
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        bucket *b = &t->b[i];
        if (!b->name) return b;
        if (b->h == h && b->rtype == rtype && b->pattern == pattern && b->nlen == nlen &&
            !memcmp(b->name, name, nlen) &&
            (principal ? b->principal && !strcmp(b->principal, principal) : !b->principal))
            return b;
    }
}

static void table_free(table *t) {
    if (t->b)
        for (size_t i = 0; i <= t->mask; i++) free(t->b[i].ids);
    free(t->b);
}

void sl_acl_set_free(sl_acl_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free((char *)s->e[i].name);
        free((char *)s->e[i].principal);
        free((char *)s->e[i].host);
    }
    table_free(&s->res);
    table_free(&s->pr);
    for (int r = 0; r < SL_ACL_RES__COUNT; r++) free(s->plen[r]);
    free(s->e);
    free(s);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static bool bucket_push(bucket *b, uint32_t id) {
    if (b->n == b->cap) {
        uint32_t nc = b->cap ? b->cap * 2 : 2;
        uint32_t *ni = realloc(b->ids, nc * sizeof *ni);
        if (!ni) return false;
        b->ids = ni;
        b->cap = nc;
    }
    b->ids[b->n++] = id;
    return true;
}

static bucket *claim(const table *t, uint64_t h, const sl_acl *a, size_t nlen, bool by_principal) {
    const char *pr = by_principal ? a->principal : NULL;
    bucket *b = probe(t, h, a->rtype, a->pattern, a->name, nlen, pr);
    if (!b->name) {
        b->name = a->name;
        b->principal = pr;
        b->nlen = nlen;
        b->h = h;
        b->rtype = a->rtype;
        b->pattern = a->pattern;
    }
    return b;
}

/* Adds entry `id` (already copied into s->e) to both tables; false if it duplicates one
 * already there, or on exhausted memory (*oom set). */
static bool index_add(sl_acl_set *s, uint32_t id, bool *oom) {
    const sl_acl *a = &s->e[id];
    size_t nlen = strlen(a->name);
    uint64_t h = FNV_OFF;
    for (size_t i = 0; i < nlen; i++) h = fnv_step(h, (unsigned char)a->name[i]);
    h = key_hash(h, a->rtype, a->pattern);
    bucket *pb = claim(&s->pr, principal_hash(h, a->principal), a, nlen, true);
    for (uint32_t i = 0; i < pb->n; i++)
        if (sl_acl_equal(&s->e[pb->ids[i]], a)) return false;
    bucket *rb = claim(&s->res, h, a, nlen, false);
    if (!bucket_push(pb, id) || !bucket_push(rb, id)) {
        *oom = true;
        return false;
    }
    return true;
}

static char *dupz(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

sl_err sl_acl_set_build(const sl_acl *acls, size_t n, sl_acl_set **out) {
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (sl_acl_invalid(&acls[i])) return SL_EINVAL;
    if (n > UINT32_MAX / 4) return SL_ENOMEM;
    sl_acl_set *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    s->res.b = calloc(cap, sizeof *s->res.b);
    s->pr.b = calloc(cap, sizeof *s->pr.b);
    s->res.mask = s->pr.mask = cap - 1;
    s->e = n ? calloc(n, sizeof *s->e) : NULL;
    if (!s->res.b || !s->pr.b || (n && !s->e)) goto oom;
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        sl_acl *d = &s->e[s->n];
        *d = acls[i];
        d->name = dupz(acls[i].name);
        d->principal = dupz(acls[i].principal);
        d->host = dupz(acls[i].host);
        s->n++; /* owned from here on, freed with the set */
        if (!d->name || !d->principal || !d->host) goto oom;
        if (!index_add(s, (uint32_t)(s->n - 1), &oom)) {
            if (oom) goto oom;
            /* A duplicate: drop the copy. No bucket points at its strings (a bucket's key
             * points into the first entry that made it, and a duplicate never makes one). */
            s->n--;
            free((char *)d->name);
            free((char *)d->principal);
            free((char *)d->host);
            continue;
        }
        if (d->pattern == SL_ACL_PAT_PREFIXED) {
            size_t len = strlen(d->name), r = (size_t)d->rtype, k;
            for (k = 0; k < s->nplen[r] && s->plen[r][k] != len; k++) {
            }
            if (k == s->nplen[r]) {
                size_t *np = realloc(s->plen[r], (s->nplen[r] + 1) * sizeof *np);
                if (!np) goto oom;
                s->plen[r] = np;
                np[s->nplen[r]++] = len;
            }
        }
    }
    for (int r = 0; r < SL_ACL_RES__COUNT; r++)
        if (s->nplen[r] > 1) qsort(s->plen[r], s->nplen[r], sizeof(size_t), cmp_size);
    *out = s;
    return SL_OK;
oom:
    sl_acl_set_free(s);
    return SL_ENOMEM;
}

size_t sl_acl_set_count(const sl_acl_set *s) { return s ? s->n : 0; }
const sl_acl *sl_acl_set_at(const sl_acl_set *s, size_t i) {
    return s && i < s->n ? &s->e[i] : NULL;
}

static bool visit_bucket(const sl_acl_set *s, const bucket *b, sl_acl_visit_fn fn, void *ctx) {
    if (!b || !b->name) return true;
    for (uint32_t i = 0; i < b->n; i++)
        if (!fn(ctx, &s->e[b->ids[i]])) return false;
    return true;
}

typedef struct walk {
    const sl_acl_set *s;
    const char *principal; /* NULL: every binding of the resource */
    sl_acl_visit_fn fn;
    void *ctx;
    bool found;
} walk;

/* One candidate resource key: its bindings (or the principal's and User:*'s). */
static bool walk_key(walk *w, uint64_t kh, int rtype, int pattern, const char *name, size_t len) {
    const bucket *rb = probe(&w->s->res, kh, rtype, pattern, name, len, NULL);
    if (!rb || !rb->name) return true;
    w->found = true;
    if (!w->principal) return visit_bucket(w->s, rb, w->fn, w->ctx);
    if (!visit_bucket(w->s,
                      probe(&w->s->pr, principal_hash(kh, w->principal), rtype, pattern, name, len,
                            w->principal),
                      w->fn, w->ctx))
        return false;
    if (!strcmp(w->principal, "User:*")) return true;
    return visit_bucket(
        w->s, probe(&w->s->pr, principal_hash(kh, "User:*"), rtype, pattern, name, len, "User:*"),
        w->fn, w->ctx);
}

static void walk_resource(walk *w, int rtype, const char *name, size_t name_len) {
    const sl_acl_set *s = w->s;
    if (!s || !s->n || rtype <= SL_ACL_RES_ANY || rtype >= SL_ACL_RES__COUNT) return;
    uint64_t h = FNV_OFF;
    size_t done = 0;
    /* PREFIXED first: walk the name once, probing where some pattern ends. */
    for (size_t k = 0; k < s->nplen[rtype]; k++) {
        size_t len = s->plen[rtype][k];
        if (len > name_len) break;
        for (; done < len; done++) h = fnv_step(h, (unsigned char)name[done]);
        if (!walk_key(w, key_hash(h, rtype, SL_ACL_PAT_PREFIXED), rtype, SL_ACL_PAT_PREFIXED, name,
                      len))
            return;
    }
    for (; done < name_len; done++) h = fnv_step(h, (unsigned char)name[done]);
    if (!walk_key(w, key_hash(h, rtype, SL_ACL_PAT_LITERAL), rtype, SL_ACL_PAT_LITERAL, name,
                  name_len))
        return;
    if (name_len == 1 && name[0] == '*') return;
    walk_key(w, key_hash(fnv_step(FNV_OFF, '*'), rtype, SL_ACL_PAT_LITERAL), rtype,
             SL_ACL_PAT_LITERAL, "*", 1);
}

void sl_acl_set_visit(const sl_acl_set *s, int rtype, const char *name, size_t name_len,
                      sl_acl_visit_fn fn, void *ctx) {
    walk w = {s, NULL, fn, ctx, false};
    walk_resource(&w, rtype, name, name_len);
}

bool sl_acl_set_visit_principal(const sl_acl_set *s, int rtype, const char *name, size_t name_len,
                                const char *principal, sl_acl_visit_fn fn, void *ctx) {
    walk w = {s, principal, fn, ctx, false};
    walk_resource(&w, rtype, name, name_len);
    return w.found;
}

/* ---- stored format ---- */

#define HEADER "sluice-acls 1\n"

static bool must_escape(unsigned char c) { return c <= 0x20 || c >= 0x7f || c == '%'; }

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_esc(sbuf *b, const char *s) {
    static const char hx[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (must_escape(c)) {
            char e[3] = {'%', hx[c >> 4], hx[c & 15]};
            sb_put(b, e, 3);
        } else {
            sb_put(b, s, 1);
        }
    }
}

sl_err sl_acl_set_serialize(const sl_acl_set *s, char **out, size_t *out_len) {
    sbuf b = {0};
    sb_put(&b, HEADER, strlen(HEADER));
    for (size_t i = 0; s && i < s->n; i++) {
        const sl_acl *a = &s->e[i];
        const char *f[4] = {sl_acl_perm_name(a->perm), sl_acl_op_name(a->op),
                            sl_acl_res_name(a->rtype), sl_acl_pat_name(a->pattern)};
        for (int k = 0; k < 4; k++) {
            sb_put(&b, f[k], strlen(f[k]));
            sb_put(&b, "\t", 1);
        }
        sb_esc(&b, a->name);
        sb_put(&b, "\t", 1);
        sb_esc(&b, a->principal);
        sb_put(&b, "\t", 1);
        sb_esc(&b, a->host);
        sb_put(&b, "\n", 1);
    }
    if (b.oom) {
        free(b.p);
        return SL_ENOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return SL_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes one escaped field [p, p+n) into a malloc'd string; NULL if malformed (raw bytes that
 * must be escaped, a bad escape, an escaped NUL, empty or too long). */
static char *unescape(const char *p, size_t n) {
    if (n == 0 || n > 3 * SL_ACL_STR_MAX) return NULL;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            bool room = i + 2 < n;
            int a = room ? hexval(p[i + 1]) : -1, b = room ? hexval(p[i + 2]) : -1;
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(o);
                return NULL;
            }
            o[k++] = (char)(a * 16 + b);
            i += 2;
        } else if (must_escape(c)) {
            free(o);
            return NULL;
        } else {
            o[k++] = (char)c;
        }
    }
    o[k] = 0;
    if (k > SL_ACL_STR_MAX) {
        free(o);
        return NULL;
    }
    return o;
}

static int exact_of(const char *const *tab, int n, const char *p, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(tab[i]) == len && !memcmp(tab[i], p, len)) return i;
    return -1;
}

sl_err sl_acl_set_parse(const char *data, size_t len, sl_acl_set **out, char *err, size_t err_len) {
    *out = NULL;
    size_t hl = strlen(HEADER);
    if (len < hl || memcmp(data, HEADER, hl)) {
        snprintf(err, err_len, "line 1: expected \"sluice-acls 1\"");
        return SL_ECORRUPT;
    }
    sl_acl *v = NULL;
    size_t n = 0, cap = 0;
    sl_err e = SL_OK;
    const char *p = data + hl, *end = data + len;
    int line = 1;
    while (p < end && !e) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            snprintf(err, err_len, "line %d: missing newline (truncated file)", line);
            e = SL_ECORRUPT;
            break;
        }
        const char *f[7];
        size_t fl[7];
        int nf = 0;
        for (const char *q = p;;) {
            const char *t = memchr(q, '\t', (size_t)(nl - q));
            if (nf < 7) {
                f[nf] = q;
                fl[nf] = (size_t)((t ? t : nl) - q);
            }
            nf++;
            if (!t) break;
            q = t + 1;
        }
        if (nf != 7) {
            snprintf(err, err_len, "line %d: expected 7 tab-separated fields", line);
            e = SL_ECORRUPT;
            break;
        }
        /* The file holds canonical names only: what we write is what we read back. */
        int code[4] = {
            exact_of(k_perm, NELEM(k_perm), f[0], fl[0]), exact_of(k_op, NELEM(k_op), f[1], fl[1]),
            exact_of(k_res, NELEM(k_res), f[2], fl[2]), exact_of(k_pat, NELEM(k_pat), f[3], fl[3])};
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            sl_acl *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                e = SL_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        sl_acl *a = &v[n];
        a->perm = (int8_t)code[0];
        a->op = (int8_t)code[1];
        a->rtype = (int8_t)code[2];
        a->pattern = (int8_t)code[3];
        a->name = unescape(f[4], fl[4]);
        a->principal = unescape(f[5], fl[5]);
        a->host = unescape(f[6], fl[6]);
        n++;
        const char *why = NULL;
        if (code[0] < 0 || code[1] < 0 || code[2] < 0 || code[3] < 0)
            why = "unknown permission, operation, resource or pattern type";
        else if (!a->name || !a->principal || !a->host)
            why = "bad escape, empty or oversized field";
        else
            why = sl_acl_invalid(a);
        if (why) {
            snprintf(err, err_len, "line %d: %s", line, why);
            e = SL_ECORRUPT;
        }
        p = nl + 1;
    }
    if (!e) {
        e = sl_acl_set_build(v, n, out);
        if (e) snprintf(err, err_len, "%s", sl_strerror(e));
    }
    for (size_t i = 0; i < n; i++) {
        free((char *)v[i].name);
        free((char *)v[i].principal);
        free((char *)v[i].host);
    }
    free(v);
    return e;
}
