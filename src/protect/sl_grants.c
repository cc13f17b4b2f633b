/* Reveal grants (sl_grants.h): a flat array in the order the grants were added, plus a hash
 * index on (principal, topic, field), the key put, remove and find look up, so that filling a
 * set to SL_GRANTS_MAX (a load, or the CLI) costs O(n), not O(n^2). A view still scans the
 * array: the broker asks sl_grants_any first, so a fetch by a principal without grants costs
 * one pass over short strings. */
#include "protect/sl_grants.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_file.h"
#include "protect/sl_policy.h"

#define GRANTS_HEADER "# sluice grants v1"
#define TOPIC_MAX     249
/* The longest line the file can hold: three words at their limits, a view, spaces, newline. */
#define LINE_MAX_BYTES                                                                             \
    (sizeof(((sl_grant *)0)->principal) + sizeof(((sl_grant *)0)->topic) +                         \
     sizeof(((sl_grant *)0)->field) + 16)
#define FILE_MAX_BYTES ((size_t)SL_GRANTS_MAX * LINE_MAX_BYTES + 4096)

static const char *const k_views[] = {"stored", "reveal", "mask", "token"};

bool sl_view_parse(const char *s, sl_view *out) {
    for (int v = SL_VIEW_REVEAL; v <= SL_VIEW_TOKEN; v++)
        if (!strcmp(s, k_views[v])) {
            *out = (sl_view)v;
            return true;
        }
    return false;
}

const char *sl_view_name(sl_view v) {
    return (unsigned)v < sizeof k_views / sizeof k_views[0] ? k_views[v] : "?";
}

static bool topic_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static sl_err no(const char **why, const char *reason) {
    *why = reason;
    return SL_EINVAL;
}

sl_err sl_grant_check(const sl_grant *g, const char **why) {
    size_t pn = strnlen(g->principal, sizeof g->principal);
    size_t tn = strnlen(g->topic, sizeof g->topic);
    size_t fn = strnlen(g->field, sizeof g->field);
    if (pn == sizeof g->principal) return no(why, "principal too long");
    if (tn == sizeof g->topic) return no(why, "topic too long");
    if (fn == sizeof g->field) return no(why, "field too long");
    const char *colon = memchr(g->principal, ':', pn);
    if (!colon || colon == g->principal || colon == g->principal + pn - 1)
        return no(why, "principal must be TYPE:NAME (User:alice)");
    for (size_t i = 0; i < pn; i++)
        if ((unsigned char)g->principal[i] < 0x21 || (unsigned char)g->principal[i] > 0x7e)
            return no(why, "principal must be printable ASCII without spaces");
    bool prefix = tn && g->topic[tn - 1] == '*';
    size_t n = tn - prefix;
    if (!prefix && n == 0) return no(why, "empty topic");
    if (n > TOPIC_MAX) return no(why, "topic too long (at most 249 characters)");
    for (size_t i = 0; i < n; i++)
        if (!topic_char(g->topic[i]))
            return no(why, "topic must be a topic name or a prefix ending in '*'");
    if (!prefix && (!strcmp(g->topic, ".") || !strcmp(g->topic, "..")))
        return no(why, "bad topic name");
    if (strcmp(g->field, "*")) {
        sl_ptarget t;
        const char *w = "bad field";
        if (sl_ptarget_parse(g->field, fn, &t, &w) != SL_OK) return no(why, w);
    }
    if (g->view != SL_VIEW_REVEAL && g->view != SL_VIEW_MASK && g->view != SL_VIEW_TOKEN)
        return no(why, "view must be reveal, mask or token");
    return SL_OK;
}

void sl_grants_free(sl_grants *g) {
    free(g->v);
    free(g->slot);
    g->v = NULL;
    g->slot = NULL;
    g->n = g->cap = g->nslot = 0;
}

/* ---- the index ---- */
#define FNV_OFF   14695981039346656037ull
#define FNV_PRIME 1099511628211ull

/* FNV-1a over the three words, each with its NUL, so ("ab", "c") and ("a", "bc") differ. */
static uint64_t key_hash(const char *principal, const char *topic, const char *field) {
    const char *w[3] = {principal, topic, field};
    uint64_t h = FNV_OFF;
    for (int k = 0; k < 3; k++) {
        const unsigned char *s = (const unsigned char *)w[k];
        do h = (h ^ *s) * FNV_PRIME;
        while (*s++);
    }
    return h;
}

/* The slot holding the grant with this key, or the empty slot where it would go. The table is
 * at most half full, so a probe always ends. */
static size_t probe(const sl_grants *g, const char *principal, const char *topic,
                    const char *field) {
    size_t mask = (size_t)g->nslot - 1;
    for (size_t s = (size_t)key_hash(principal, topic, field) & mask;; s = (s + 1) & mask) {
        int i = g->slot[s];
        if (i < 0 || (!strcmp(g->v[i].principal, principal) && !strcmp(g->v[i].topic, topic) &&
                      !strcmp(g->v[i].field, field)))
            return s;
    }
}

/* Enters v[0..n) into the table, which is empty (every slot -1). */
static void index_fill(sl_grants *g) {
    for (int i = 0; i < g->n; i++)
        g->slot[probe(g, g->v[i].principal, g->v[i].topic, g->v[i].field)] = i;
}

/* Makes room in the index for `want` grants, rebuilding it larger when it would be more than
 * half full; SL_ENOMEM leaves the old index as it was. */
static sl_err index_reserve(sl_grants *g, int want) {
    if ((size_t)want * 2 <= (size_t)g->nslot) return SL_OK;
    size_t n = g->nslot ? (size_t)g->nslot * 2 : 32;
    while (n < (size_t)want * 2) n *= 2;
    int *slot = malloc(n * sizeof *slot);
    if (!slot) return SL_ENOMEM;
    memset(slot, 0xff, n * sizeof *slot); /* -1 in every slot */
    free(g->slot);
    g->slot = slot;
    g->nslot = (int)n;
    index_fill(g);
    return SL_OK;
}

static int find(const sl_grants *g, const char *principal, const char *topic, const char *field) {
    return g->nslot ? g->slot[probe(g, principal, topic, field)] : -1;
}

const sl_grant *sl_grants_find(const sl_grants *g, const char *principal, const char *topic,
                               const char *field) {
    int i = find(g, principal, topic, field);
    return i < 0 ? NULL : &g->v[i];
}

/* Adds x, whose key is not in g yet. */
static sl_err append(sl_grants *g, const sl_grant *x) {
    if (g->n >= SL_GRANTS_MAX) return SL_ETOOLARGE;
    if (g->n == g->cap) {
        int ncap = g->cap ? g->cap * 2 : 16;
        if (ncap > SL_GRANTS_MAX) ncap = SL_GRANTS_MAX;
        sl_grant *nv = realloc(g->v, (size_t)ncap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        g->v = nv;
        g->cap = ncap;
    }
    sl_err e = index_reserve(g, g->n + 1);
    if (e) return e;
    g->slot[probe(g, x->principal, x->topic, x->field)] = g->n;
    g->v[g->n++] = *x;
    return SL_OK;
}

sl_err sl_grants_put(sl_grants *g, const sl_grant *x) {
    const char *why;
    if (sl_grant_check(x, &why)) return SL_EINVAL;
    int i = find(g, x->principal, x->topic, x->field);
    if (i >= 0) {
        g->v[i].view = x->view;
        return SL_OK;
    }
    return append(g, x);
}

bool sl_grants_remove(sl_grants *g, const char *principal, const char *topic, const char *field) {
    int i = find(g, principal, topic, field);
    if (i < 0) return false;
    memmove(&g->v[i], &g->v[i + 1], (size_t)(g->n - i - 1) * sizeof *g->v);
    g->n--;
    /* The grants after i moved down one, so most of the index is stale: the memmove is O(n)
     * already (the order is the file's), and a revocation is an operator's command. */
    memset(g->slot, 0xff, (size_t)g->nslot * sizeof *g->slot);
    index_fill(g);
    return true;
}

/* How specifically grant x's topic matches name[0..n): a literal above every prefix, a longer
 * prefix above a shorter; -1 when it does not match. */
static int topic_score(const sl_grant *x, const char *name, size_t n) {
    size_t tn = strlen(x->topic);
    if (tn && x->topic[tn - 1] == '*') {
        size_t pn = tn - 1;
        return pn <= n && !memcmp(x->topic, name, pn) ? (int)pn : -1;
    }
    return tn == n && !memcmp(x->topic, name, n) ? TOPIC_MAX + 1 : -1;
}

sl_view sl_grants_view(const sl_grants *g, const char *principal, const char *topic, size_t n,
                       const char *field) {
    sl_view best = SL_VIEW_STORED;
    int best_score = -1;
    for (int i = 0; i < g->n; i++) {
        const sl_grant *x = &g->v[i];
        if (strcmp(x->principal, principal)) continue;
        bool star = !strcmp(x->field, "*");
        if (!star && strcmp(x->field, field)) continue;
        int ts = topic_score(x, topic, n);
        if (ts < 0) continue;
        /* The topic decides first, the field breaks ties: two grants never tie on both. */
        int score = ts * 2 + !star;
        if (score > best_score) {
            best_score = score;
            best = x->view;
        }
    }
    return best;
}

bool sl_grants_any(const sl_grants *g, const char *principal) {
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->v[i].principal, principal)) return true;
    return false;
}

/* A JSON string of a checked word: printable ASCII, so only '"' and '\\' need escapes. */
static void jstr(sl_text *out, const char *s) {
    sl_text_put(out, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') sl_text_put(out, "\\", 1);
        sl_text_put(out, p, 1);
    }
    sl_text_put(out, "\"", 1);
}

void sl_grants_json(const sl_grants *g, sl_text *out) {
    sl_text_put(out, "[", 1);
    for (int i = 0; i < g->n; i++) {
        const sl_grant *x = &g->v[i];
        sl_text_puts(out, i ? ",{\"principal\":" : "{\"principal\":");
        jstr(out, x->principal);
        sl_text_puts(out, ",\"topic\":");
        jstr(out, x->topic);
        sl_text_puts(out, ",\"field\":");
        jstr(out, x->field);
        sl_text_puts(out, ",\"view\":");
        jstr(out, sl_view_name(x->view));
        sl_text_put(out, "}", 1);
    }
    sl_text_put(out, "]", 1);
}

/* ---- the file ---- */
static sl_err read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen) {
    sl_err e = sl_file_read(path, FILE_MAX_BYTES, buf, len);
    switch (e) {
    case SL_OK:
        return SL_OK;
    case SL_ENOTFOUND: /* no file yet: no grants */
        return SL_OK;
    case SL_ETOOLARGE:
        snprintf(err, errlen, "%s: file too large", path);
        return SL_ECORRUPT;
    case SL_ENOMEM:
        snprintf(err, errlen, "%s: out of memory", path);
        return e;
    default:
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return e;
    }
}

/* Parses one line s[0..n) "PRINCIPAL TOPIC FIELD VIEW" into *x; a static reason on failure. */
static const char *parse_line(const char *s, size_t n, sl_grant *x) {
    const char *w[4];
    size_t wn[4];
    size_t st = 0;
    int k = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ') continue;
        if (k == 4) return "more than four words";
        if (i == st) return "words must be separated by one space";
        w[k] = s + st;
        wn[k++] = i - st;
        st = i + 1;
    }
    if (k != 4) return "fewer than four words (PRINCIPAL TOPIC FIELD VIEW)";
    memset(x, 0, sizeof *x);
    if (wn[0] >= sizeof x->principal) return "principal too long";
    if (wn[1] >= sizeof x->topic) return "topic too long";
    if (wn[2] >= sizeof x->field) return "field too long";
    for (int i = 0; i < 3; i++)
        if (memchr(w[i], 0, wn[i])) return "NUL byte";
    memcpy(x->principal, w[0], wn[0]);
    memcpy(x->topic, w[1], wn[1]);
    memcpy(x->field, w[2], wn[2]);
    char view[8] = {0};
    if (wn[3] >= sizeof view) return "view must be reveal, mask or token";
    memcpy(view, w[3], wn[3]);
    if (memchr(view, 0, wn[3]) || !sl_view_parse(view, &x->view))
        return "view must be reveal, mask or token";
    const char *why = NULL;
    if (sl_grant_check(x, &why)) return why;
    return NULL;
}

sl_err sl_grants_load(const char *path, sl_grants *g, char *err, size_t errlen) {
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    char *buf;
    size_t len;
    sl_err e = read_file(path, &buf, &len, err, errlen);
    if (e || !buf) return e;
    int *lines = NULL; /* line of each grant, for the duplicate message */
    int line = 0;
    /* The first line that repeats an earlier grant's key, and that grant's line: reported once
     * the whole file has parsed, so a malformed line anywhere is reported before it. */
    int dup = 0, dup_first = 0;
    for (size_t pos = 0; pos < len && !e;) {
        line++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        const char *s = buf + pos;
        size_t n = end - pos;
        pos = nl ? end + 1 : len;
        if (line == 1) {
            if (n != strlen(GRANTS_HEADER) || memcmp(s, GRANTS_HEADER, n)) {
                snprintf(err, errlen, "%s:1: not a grants file (want '%s' first)", path,
                         GRANTS_HEADER);
                e = SL_ECORRUPT;
            }
            continue;
        }
        if (n == 0 || s[0] == '#') continue;
        sl_grant x;
        const char *why = n > LINE_MAX_BYTES ? "line too long" : parse_line(s, n, &x);
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, line, why);
            e = SL_ECORRUPT;
            break;
        }
        int prev = find(g, x.principal, x.topic, x.field);
        if (prev >= 0) {
            if (!dup) {
                dup = line;
                dup_first = lines[prev];
            }
            continue;
        }
        if (g->n >= SL_GRANTS_MAX) {
            snprintf(err, errlen, "%s:%d: too many grants (at most %d)", path, line, SL_GRANTS_MAX);
            e = SL_ECORRUPT;
            break;
        }
        if (g->n == g->cap) {
            int *nl2 = realloc(lines, (size_t)(g->cap ? g->cap * 2 : 16) * sizeof *lines);
            if (!nl2) {
                e = SL_ENOMEM;
                break;
            }
            lines = nl2;
        }
        lines[g->n] = line;
        e = append(g, &x);
    }
    free(buf);
    if (!e && dup) {
        snprintf(err, errlen, "%s:%d: duplicate grant (first on line %d)", path, dup, dup_first);
        e = SL_ECORRUPT;
    }
    free(lines);
    if (e == SL_ENOMEM) snprintf(err, errlen, "%s: out of memory", path);
    if (e) sl_grants_free(g);
    return e;
}

sl_err sl_grants_save(const char *path, const sl_grants *g) {
    sl_text t = {0};
    sl_text_puts(&t, GRANTS_HEADER "\n");
    for (int i = 0; i < g->n; i++)
        sl_text_printf(&t, "%s %s %s %s\n", g->v[i].principal, g->v[i].topic, g->v[i].field,
                       sl_view_name(g->v[i].view));
    if (t.oom) {
        sl_text_free(&t);
        return SL_ENOMEM;
    }
    char dir[4096];
    sl_parent_dir(path, dir, sizeof dir);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    sl_err e = *name ? sl_file_write_atomic(dir, name, t.p, t.len, 0600) : SL_EINVAL;
    sl_text_free(&t);
    return e;
}
