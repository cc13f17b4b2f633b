/* The field-protection policy parser and its lookup (sl_policy.h). One pass over the lines with
 * per-line checks (length, bytes, words), then the topic table is built and the digest taken.
 * The parser never echoes input beyond one short printable word, so a message can go to logs and
 * events without leaking a field value an operator pasted into the file. */
#include "protect/sl_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/sl_file.h"
#include "base/sl_text.h"

#define LINE_MAX_BYTES 4096
#define TOPIC_MAX      249 /* Kafka's limit on a topic name */
#define SHOW_MAX       40  /* longest word quoted back in a message */
#define MAX_WORDS      16  /* a rule has at most a target, an action and four options */

/* One slot of the open-addressing topic table: `h` is the full hash, so a probe compares
 * patterns only when the hashes are equal. */
typedef struct slot {
    uint64_t h;
    int topic; /* index into topics, -1: empty */
} slot;

typedef struct policy_impl {
    sl_policy pub; /* first: sl_policy * and policy_impl * convert both ways */
    slot *tab;
    size_t mask;
    bool plen[TOPIC_MAX + 1]; /* a prefix block of this length exists */
    int maxplen;              /* -1: no prefix block */
    const char **keys;        /* distinct key names (pointing into the rules), sorted */
    int nkeys;
} policy_impl;

/* ---- hashing: FNV-1a over the pattern, so the hashes of every prefix of a topic name come out
 * of one pass over it; a finalizer spreads them over the table. ---- */
#define FNV_OFF   14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * FNV_PRIME; }

static uint64_t fin(uint64_t h, bool prefix) {
    h ^= prefix ? 0x9E3779B97F4A7C15ull : 0;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_of(const char *s, size_t n, bool prefix) {
    uint64_t h = FNV_OFF;
    for (size_t i = 0; i < n; i++) h = fnv_step(h, (unsigned char)s[i]);
    return fin(h, prefix);
}

static bool same_pattern(const sl_ptopic *t, const char *s, size_t n, bool prefix) {
    return t->prefix == prefix && !memcmp(t->pattern, s, n) && t->pattern[n] == 0;
}

/* The index of the block with this pattern, or -1. */
static int probe(const policy_impl *p, uint64_t h, const char *s, size_t n, bool prefix) {
    if (!p->tab) return -1;
    for (size_t i = h & p->mask;; i = (i + 1) & p->mask) {
        const slot *sl = &p->tab[i];
        if (sl->topic < 0) return -1;
        if (sl->h == h && same_pattern(&p->pub.topics[sl->topic], s, n, prefix)) return sl->topic;
    }
}

/* ---- characters ---- */
static bool topic_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool header_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool word_eq(const char *w, size_t n, const char *lit) {
    return strlen(lit) == n && !memcmp(w, lit, n);
}

static bool starts(const char *w, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n >= l && !memcmp(w, lit, l);
}

/* ---- targets ---- */
sl_err sl_ptarget_parse(const char *s, size_t n, sl_ptarget *out, const char **why) {
    static const char *const shape = "must be value, key or header:NAME, then an optional path";
    memset(out, 0, sizeof *out);
    if (n >= SL_POLICY_TEXT_MAX) {
        *why = "target too long (at most 299 bytes)";
        return SL_EINVAL;
    }
    size_t i;
    if (starts(s, n, "value")) {
        out->part = SL_PP_VALUE;
        i = 5;
    } else if (starts(s, n, "key")) {
        out->part = SL_PP_KEY;
        i = 3;
    } else if (starts(s, n, "header:")) {
        out->part = SL_PP_HEADER;
        i = 7;
        while (i < n && header_char(s[i])) i++;
        size_t hl = i - 7;
        if (hl == 0) {
            *why = "empty header name";
            return SL_EINVAL;
        }
        if (hl > SL_JPATH_NAME_MAX) {
            *why = "header name too long (at most 128 bytes)";
            return SL_EINVAL;
        }
        if (i < n && s[i] != '.' && s[i] != '[') {
            *why = "unsupported character in header name";
            return SL_EINVAL;
        }
        memcpy(out->header, s + 7, hl);
    } else {
        *why = shape;
        return SL_EINVAL;
    }
    if (i == n) {
        out->whole = true;
    } else if (s[i] == '.' || s[i] == '[') {
        /* "value[*].x" hands the brackets to the path parser, "value.x" only what follows. */
        size_t from = s[i] == '.' ? i + 1 : i;
        if (sl_jpath_parse(s + from, n - from, &out->path, why) != SL_OK) return SL_EINVAL;
    } else {
        *why = shape;
        return SL_EINVAL;
    }
    memcpy(out->text, s, n);
    out->text[n] = 0;
    return SL_OK;
}

/* ---- the parser ---- */
typedef struct word {
    const char *p;
    size_t n;
} word;

typedef struct pctx {
    const char *fname;
    int line;
    char *err;
    size_t errlen;
    sl_policy_key_ok_fn key_ok;
    void *arg;
    policy_impl *p;
    int tcap, rcap; /* capacity of topics and of the last topic's rules */
    int nrules;     /* in all blocks */
    bool any_directive;
    int on_error_line; /* of the current block, 0: none yet */
    int subject_line;
} pctx;

__attribute__((format(printf, 3, 4))) static sl_err fail(pctx *c, sl_err e, const char *fmt, ...) {
    if (c->err && c->errlen) {
        int k = snprintf(c->err, c->errlen, "%s:%d: ", c->fname, c->line);
        if (k >= 0 && (size_t)k < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return e;
}

/* " 'word'" for a message (cut at SHOW_MAX bytes), or "" when the word is not printable ASCII:
 * a message never carries arbitrary input. */
static const char *show(char buf[SHOW_MAX + 8], const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)w[i] < 0x20 || (unsigned char)w[i] > 0x7e) return "";
    size_t k = n > SHOW_MAX ? SHOW_MAX : n;
    buf[0] = ' ';
    buf[1] = '\'';
    memcpy(buf + 2, w, k);
    memcpy(buf + 2 + k, n > SHOW_MAX ? "...'" : "'", n > SHOW_MAX ? 5 : 2);
    return buf;
}

static sl_ptopic *cur(pctx *c) {
    return c->p->pub.ntopics ? &c->p->pub.topics[c->p->pub.ntopics - 1] : NULL;
}

/* A number 0..64 ("0", "4", "64"). */
static bool small_num(const char *s, size_t n, int *out) {
    if (n < 1 || n > 2) return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 64) return false;
    *out = v;
    return true;
}

static sl_err take_key(pctx *c, const char *v, size_t n, char dst[SL_FC_KEYNAME_MAX + 1]) {
    char b[SHOW_MAX + 8];
    if (n > SL_FC_KEYNAME_MAX || !sl_fc_keyname_ok(v, n))
        return fail(c, SL_ECONFIG, "bad key name%s ([A-Za-z0-9_-], 1..64 characters)",
                    show(b, v, n));
    memcpy(dst, v, n);
    dst[n] = 0;
    if (c->key_ok && !c->key_ok(c->arg, dst))
        return fail(c, SL_ECONFIG, "unknown key%s", show(b, v, n));
    return SL_OK;
}

/* The options an action (or the subject line) takes. */
enum {
    O_KEEP_FIRST = 1 << 0,
    O_KEEP_LAST = 1 << 1,
    O_CHAR = 1 << 2,
    O_REMOVE = 1 << 3,
    O_KEY = 1 << 4,
    O_ALG = 1 << 5,
    O_VIEW_MASK = 1 << 6,
    O_VIEW_TOKEN = 1 << 7,
    O_TOKEN_KEY = 1 << 8,
};

static const struct {
    const char *name;
    int bit;
    bool flag; /* no "=value" */
} k_opts[] = {
    {"keep-first", O_KEEP_FIRST, false},
    {"keep-last", O_KEEP_LAST, false},
    {"char", O_CHAR, false},
    {"remove", O_REMOVE, true},
    {"key", O_KEY, false},
    {"alg", O_ALG, false},
    {"view-mask", O_VIEW_MASK, false},
    {"view-token", O_VIEW_TOKEN, false},
    {"token-key", O_TOKEN_KEY, false},
};

/* Applies option words w[0..nw) to rule r (or, with subject_key, to a subject line). `allowed`
 * is the set the action takes; *seen gets the ones given. */
static sl_err options(pctx *c, const word *w, int nw, int allowed, const char *what, sl_prule *r,
                      char *subject_key, int *seen) {
    char b[SHOW_MAX + 8];
    *seen = 0;
    for (int i = 0; i < nw; i++) {
        const char *eq = memchr(w[i].p, '=', w[i].n);
        size_t nl = eq ? (size_t)(eq - w[i].p) : w[i].n;
        const char *v = eq ? eq + 1 : NULL;
        size_t vn = eq ? w[i].n - nl - 1 : 0;
        int bit = 0;
        bool flag = false;
        for (size_t k = 0; k < sizeof k_opts / sizeof k_opts[0]; k++)
            if (word_eq(w[i].p, nl, k_opts[k].name)) {
                bit = k_opts[k].bit;
                flag = k_opts[k].flag;
            }
        if (!(bit & allowed))
            return fail(c, SL_ECONFIG, "unknown option%s for %s", show(b, w[i].p, nl), what);
        if (*seen & bit) return fail(c, SL_ECONFIG, "duplicate option%s", show(b, w[i].p, nl));
        *seen |= bit;
        if (flag && v) return fail(c, SL_ECONFIG, "option%s takes no value", show(b, w[i].p, nl));
        if (!flag && !v) return fail(c, SL_ECONFIG, "option%s needs a value", show(b, w[i].p, nl));
        sl_err e = SL_OK;
        switch (bit) {
        case O_KEEP_FIRST:
        case O_KEEP_LAST:
            if (!small_num(v, vn, bit == O_KEEP_FIRST ? &r->mask.keep_first : &r->mask.keep_last))
                return fail(c, SL_ECONFIG, "bad number%s for %s (0..64)", show(b, v, vn),
                            bit == O_KEEP_FIRST ? "keep-first" : "keep-last");
            break;
        case O_CHAR:
            if (vn != 1 || v[0] < 0x21 || v[0] > 0x7e || v[0] == '"' || v[0] == '\\')
                return fail(c, SL_ECONFIG,
                            "bad mask character%s (one printable ASCII character, not \" or \\)",
                            show(b, v, vn));
            r->mask.ch = v[0];
            break;
        case O_REMOVE:
            r->remove = true;
            break;
        case O_KEY:
            e = take_key(c, v, vn, r->key);
            break;
        case O_ALG:
            if (word_eq(v, vn, "gcm"))
                r->alg = SL_FC_GCM;
            else if (word_eq(v, vn, "siv"))
                r->alg = SL_FC_SIV;
            else
                return fail(c, SL_ECONFIG, "bad alg%s (gcm or siv)", show(b, v, vn));
            break;
        case O_VIEW_MASK: {
            const char *comma = memchr(v, ',', vn);
            size_t fl = comma ? (size_t)(comma - v) : 0;
            if (!comma || !small_num(v, fl, &r->view_mask.keep_first) ||
                !small_num(comma + 1, vn - fl - 1, &r->view_mask.keep_last))
                return fail(c, SL_ECONFIG, "bad view-mask%s (F,L: two numbers 0..64)",
                            show(b, v, vn));
            r->has_view_mask = true;
            r->view_mask.ch = '*';
            break;
        }
        case O_VIEW_TOKEN:
            e = take_key(c, v, vn, r->view_token);
            break;
        case O_TOKEN_KEY:
            e = take_key(c, v, vn, subject_key);
            break;
        }
        if (e) return e;
    }
    return SL_OK;
}

static bool looks_like_target(const word *w) {
    return word_eq(w->p, w->n, "value") || word_eq(w->p, w->n, "key") ||
           starts(w->p, w->n, "value.") || starts(w->p, w->n, "value[") ||
           starts(w->p, w->n, "key.") || starts(w->p, w->n, "key[") ||
           starts(w->p, w->n, "header:");
}

static sl_err target(pctx *c, const word *w, sl_ptarget *t) {
    char b[SHOW_MAX + 8];
    const char *why = "bad target";
    if (sl_ptarget_parse(w->p, w->n, t, &why) != SL_OK)
        return fail(c, SL_ECONFIG, "bad target%s: %s", show(b, w->p, w->n), why);
    return SL_OK;
}

static sl_err d_topic(pctx *c, const word *w, int nw) {
    char b[SHOW_MAX + 8];
    if (nw < 2) return fail(c, SL_ECONFIG, "topic needs a name or a PREFIX*");
    if (nw > 2) return fail(c, SL_ECONFIG, "unexpected word%s", show(b, w[2].p, w[2].n));
    bool prefix = w[1].p[w[1].n - 1] == '*';
    size_t n = w[1].n - prefix;
    if (n > TOPIC_MAX)
        return fail(c, SL_ECONFIG, "topic name too long%s (at most 249)", show(b, w[1].p, w[1].n));
    for (size_t i = 0; i < n; i++)
        if (!topic_char(w[1].p[i]))
            return fail(c, SL_ECONFIG, "bad topic name%s (characters A-Z a-z 0-9 . _ -)",
                        show(b, w[1].p, w[1].n));
    if (!prefix && (word_eq(w[1].p, n, ".") || word_eq(w[1].p, n, "..")))
        return fail(c, SL_ECONFIG, "bad topic name%s", show(b, w[1].p, w[1].n));
    sl_policy *p = &c->p->pub;
    if (p->ntopics == SL_POLICY_MAX_TOPICS)
        return fail(c, SL_ECONFIG, "too many topic blocks (at most %d)", SL_POLICY_MAX_TOPICS);
    if (p->ntopics == c->tcap) {
        int ncap = c->tcap ? c->tcap * 2 : 8;
        sl_ptopic *nt = realloc(p->topics, (size_t)ncap * sizeof *nt);
        if (!nt) return fail(c, SL_ENOMEM, "out of memory");
        p->topics = nt;
        c->tcap = ncap;
    }
    sl_ptopic *t = &p->topics[p->ntopics++];
    memset(t, 0, sizeof *t);
    t->line = c->line;
    memcpy(t->pattern, w[1].p, n);
    t->prefix = prefix;
    c->rcap = 0;
    c->on_error_line = 0;
    return SL_OK;
}

static sl_err d_on_error(pctx *c, const word *w, int nw) {
    char b[SHOW_MAX + 8];
    sl_ptopic *t = cur(c);
    if (!t) return fail(c, SL_ECONFIG, "on-error outside a topic block");
    if (nw != 2) return fail(c, SL_ECONFIG, "on-error needs one word: reject or pass");
    if (c->on_error_line)
        return fail(c, SL_ECONFIG, "two on-error lines in one block (first on line %d)",
                    c->on_error_line);
    if (word_eq(w[1].p, w[1].n, "pass"))
        t->pass_on_error = true;
    else if (!word_eq(w[1].p, w[1].n, "reject"))
        return fail(c, SL_ECONFIG, "bad on-error%s (reject or pass)", show(b, w[1].p, w[1].n));
    c->on_error_line = c->line;
    return SL_OK;
}

static sl_err d_subject(pctx *c, const word *w, int nw) {
    sl_ptopic *t = cur(c);
    if (!t) return fail(c, SL_ECONFIG, "subject outside a topic block");
    if (t->has_subject)
        return fail(c, SL_ECONFIG, "two subject lines in one block (first on line %d)",
                    c->subject_line);
    if (nw < 2) return fail(c, SL_ECONFIG, "subject needs a target and token-key=KEY");
    sl_err e = target(c, &w[1], &t->subject);
    if (e) return e;
    sl_prule scratch;
    memset(&scratch, 0, sizeof scratch);
    int seen;
    e = options(c, w + 2, nw - 2, O_TOKEN_KEY, "subject", &scratch, t->subject_key, &seen);
    if (e) return e;
    if (!(seen & O_TOKEN_KEY)) return fail(c, SL_ECONFIG, "subject needs token-key=KEY");
    t->has_subject = true;
    t->needs_keys = true;
    c->subject_line = c->line;
    return SL_OK;
}

static sl_err d_rule(pctx *c, const word *w, int nw) {
    char b[SHOW_MAX + 8];
    sl_ptopic *t = cur(c);
    if (!t) return fail(c, SL_ECONFIG, "rule outside a topic block");
    if (t->nrules == SL_POLICY_MAX_RULES)
        return fail(c, SL_ECONFIG, "too many rules in one block (at most %d)", SL_POLICY_MAX_RULES);
    /* A rule is a few KiB (its path is inline): the file size alone would let 60k one-line
     * rules cost hundreds of MiB. */
    if (c->nrules == SL_POLICY_MAX_TOTAL_RULES)
        return fail(c, SL_ECONFIG, "too many rules (at most %d in all)", SL_POLICY_MAX_TOTAL_RULES);
    c->nrules++;
    if (t->nrules == c->rcap) {
        int ncap = c->rcap ? c->rcap * 2 : 4;
        sl_prule *nr = realloc(t->rules, (size_t)ncap * sizeof *nr);
        if (!nr) return fail(c, SL_ENOMEM, "out of memory");
        t->rules = nr;
        c->rcap = ncap;
    }
    sl_prule *r = &t->rules[t->nrules];
    memset(r, 0, sizeof *r);
    r->line = c->line;
    sl_err e = target(c, &w[0], &r->target);
    if (e) return e;
    for (int i = 0; i < t->nrules; i++)
        if (!strcmp(t->rules[i].target.text, r->target.text))
            return fail(c, SL_ECONFIG, "duplicate target%s in this block (first on line %d)",
                        show(b, w[0].p, w[0].n), t->rules[i].line);
    if (nw < 2) return fail(c, SL_ECONFIG, "rule needs an action (mask, redact, token or encrypt)");
    int allowed;
    const char *what;
    if (word_eq(w[1].p, w[1].n, "mask")) {
        r->action = SL_PA_MASK;
        r->mask = (sl_fc_mask){.keep_first = 0, .keep_last = 4, .ch = '*'};
        allowed = O_KEEP_FIRST | O_KEEP_LAST | O_CHAR;
        what = "mask";
    } else if (word_eq(w[1].p, w[1].n, "redact")) {
        r->action = SL_PA_REDACT;
        allowed = O_REMOVE;
        what = "redact";
    } else if (word_eq(w[1].p, w[1].n, "token")) {
        r->action = SL_PA_TOKEN;
        allowed = O_KEY;
        what = "token";
    } else if (word_eq(w[1].p, w[1].n, "encrypt")) {
        r->action = SL_PA_ENCRYPT;
        r->alg = SL_FC_GCM;
        allowed = O_KEY | O_ALG | O_VIEW_MASK | O_VIEW_TOKEN;
        what = "encrypt";
    } else {
        return fail(c, SL_ECONFIG, "unknown action%s", show(b, w[1].p, w[1].n));
    }
    int seen;
    e = options(c, w + 2, nw - 2, allowed, what, r, NULL, &seen);
    if (e) return e;
    if ((r->action == SL_PA_TOKEN || r->action == SL_PA_ENCRYPT) && !(seen & O_KEY))
        return fail(c, SL_ECONFIG, "%s needs key=KEY", what);
    if (r->action == SL_PA_TOKEN || r->action == SL_PA_ENCRYPT) t->needs_keys = true;
    t->nrules++;
    return SL_OK;
}

/* One line s[0..n) without its "\n". */
static sl_err do_line(pctx *c, const char *s, size_t n) {
    char b[SHOW_MAX + 8];
    if (n > LINE_MAX_BYTES)
        return fail(c, SL_ECONFIG, "line too long (at most %d bytes)", LINE_MAX_BYTES);
    if (n && s[n - 1] == '\r') n--; /* a file saved with CRLF line ends */
    for (size_t i = 0; i < n;) {
        unsigned char u = (unsigned char)s[i];
        if (u >= 0x80) {
            size_t l = sl_utf8_len((const unsigned char *)s + i, n - i);
            if (!l) return fail(c, SL_ECONFIG, "invalid UTF-8");
            i += l;
            continue;
        }
        if ((u < 0x20 && u != '\t') || u == 0x7f)
            return fail(c, SL_ECONFIG, "control character (byte 0x%02x)", u);
        i++;
    }
    const char *hash = memchr(s, '#', n);
    if (hash) n = (size_t)(hash - s);
    word w[MAX_WORDS];
    int nw = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == n) break;
        size_t st = i;
        while (i < n && s[i] != ' ' && s[i] != '\t') i++;
        if (nw == MAX_WORDS)
            return fail(c, SL_ECONFIG, "too many words on one line (at most %d)", MAX_WORDS);
        w[nw++] = (word){s + st, i - st};
    }
    if (!nw) return SL_OK;
    bool first = !c->any_directive;
    c->any_directive = true;
    if (word_eq(w[0].p, w[0].n, "version")) {
        if (!first) return fail(c, SL_ECONFIG, "version must be the first directive");
        if (nw != 2) return fail(c, SL_ECONFIG, "version needs one number");
        if (!word_eq(w[1].p, w[1].n, "1"))
            return fail(c, SL_ECONFIG, "unsupported version%s (only 1)", show(b, w[1].p, w[1].n));
        return SL_OK;
    }
    if (word_eq(w[0].p, w[0].n, "topic")) return d_topic(c, w, nw);
    if (word_eq(w[0].p, w[0].n, "on-error")) return d_on_error(c, w, nw);
    if (word_eq(w[0].p, w[0].n, "subject")) return d_subject(c, w, nw);
    if (looks_like_target(&w[0])) return d_rule(c, w, nw);
    return fail(c, SL_ECONFIG, "unknown directive%s", show(b, w[0].p, w[0].n));
}

static void impl_free(policy_impl *p) {
    for (int i = 0; i < p->pub.ntopics; i++) free(p->pub.topics[i].rules);
    free(p->pub.topics);
    free(p->tab);
    free(p->keys);
    free(p);
}

/* Builds the topic table; a second block with a pattern already there is an error on its line. */
static sl_err build_table(pctx *c) {
    policy_impl *p = c->p;
    p->maxplen = -1;
    size_t sz = 8;
    while (sz < (size_t)p->pub.ntopics * 2) sz *= 2;
    p->tab = malloc(sz * sizeof *p->tab);
    if (!p->tab) return fail(c, SL_ENOMEM, "out of memory");
    p->mask = sz - 1;
    for (size_t i = 0; i < sz; i++) p->tab[i].topic = -1;
    for (int k = 0; k < p->pub.ntopics; k++) {
        const sl_ptopic *t = &p->pub.topics[k];
        size_t n = strlen(t->pattern);
        uint64_t h = hash_of(t->pattern, n, t->prefix);
        int dup = probe(p, h, t->pattern, n, t->prefix);
        if (dup >= 0) {
            char b[SHOW_MAX + 8];
            c->line = t->line;
            return fail(c, SL_ECONFIG, "duplicate topic%s%s (first on line %d)",
                        show(b, t->pattern, n), t->prefix ? " prefix" : "",
                        p->pub.topics[dup].line);
        }
        size_t i = h & p->mask;
        while (p->tab[i].topic >= 0) i = (i + 1) & p->mask;
        p->tab[i] = (slot){h, k};
        if (t->prefix) {
            p->plen[n] = true;
            if ((int)n > p->maxplen) p->maxplen = (int)n;
        }
    }
    return SL_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static sl_err build_keys(pctx *c) {
    policy_impl *p = c->p;
    size_t cap = 0;
    for (int k = 0; k < p->pub.ntopics; k++) cap += 1 + 2 * (size_t)p->pub.topics[k].nrules;
    p->keys = malloc((cap ? cap : 1) * sizeof *p->keys);
    if (!p->keys) return fail(c, SL_ENOMEM, "out of memory");
    size_t n = 0;
    for (int k = 0; k < p->pub.ntopics; k++) {
        const sl_ptopic *t = &p->pub.topics[k];
        if (t->has_subject) p->keys[n++] = t->subject_key;
        for (int i = 0; i < t->nrules; i++) {
            const sl_prule *r = &t->rules[i];
            if (r->key[0]) p->keys[n++] = r->key;
            if (r->view_token[0]) p->keys[n++] = r->view_token;
        }
    }
    if (n) qsort(p->keys, n, sizeof *p->keys, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || strcmp(p->keys[u - 1], p->keys[i])) p->keys[u++] = p->keys[i];
    p->nkeys = (int)u;
    return SL_OK;
}

sl_err sl_policy_parse(const char *text, size_t n, const char *fname, sl_policy_key_ok_fn key_ok,
                       void *arg, sl_policy **out, char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = 0;
    if (!fname) fname = "policy";
    if (n > SL_POLICY_MAX_BYTES) {
        if (err && errlen)
            snprintf(err, errlen, "%s: file too large (at most %u bytes)", fname,
                     SL_POLICY_MAX_BYTES);
        return SL_ECONFIG;
    }
    policy_impl *p = calloc(1, sizeof *p);
    if (!p) {
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", fname);
        return SL_ENOMEM;
    }
    p->pub.refs = 1;
    pctx c = {.fname = fname, .err = err, .errlen = errlen, .key_ok = key_ok, .arg = arg, .p = p};
    sl_err e = SL_OK;
    for (size_t pos = 0; pos < n && !e;) {
        c.line++;
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - text) : n;
        e = do_line(&c, text + pos, end - pos);
        pos = nl ? end + 1 : n;
    }
    if (!e) e = build_table(&c);
    if (!e) e = build_keys(&c);
    unsigned char md[32];
    unsigned mdlen = 0;
    if (!e && (EVP_Digest(text, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32))
        e = fail(&c, SL_ENOMEM, "SHA-256 failed");
    if (e) {
        impl_free(p);
        return e;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        p->pub.digest[2 * i] = hex[md[i] >> 4];
        p->pub.digest[2 * i + 1] = hex[md[i] & 15];
    }
    p->pub.digest[64] = 0;
    *out = &p->pub;
    return SL_OK;
}

sl_err sl_policy_load(const char *path, sl_policy_key_ok_fn key_ok, void *arg, sl_policy **out,
                      char *err, size_t errlen) {
    *out = NULL;
    char *buf;
    size_t len;
    sl_err e = sl_file_read(path, SL_POLICY_MAX_BYTES, &buf, &len);
    if (e == SL_ETOOLARGE) /* the parser's own words for it */
        return sl_policy_parse(NULL, SL_POLICY_MAX_BYTES + 1, path, key_ok, arg, out, err, errlen);
    if (e) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path,
                     e == SL_ENOMEM ? "out of memory"
                                    : strerror(e == SL_ENOTFOUND ? ENOENT : errno));
        return e == SL_ENOMEM ? e : SL_EIO;
    }
    if (!e) e = sl_policy_parse(buf, len, path, key_ok, arg, out, err, errlen);
    free(buf);
    return e;
}

sl_policy *sl_policy_ref(sl_policy *p) {
    if (p) __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void sl_policy_unref(sl_policy *p) {
    if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) impl_free((policy_impl *)p);
}

const sl_ptopic *sl_policy_topic(const sl_policy *pub, const char *name, size_t n) {
    if (!pub) return NULL;
    const policy_impl *p = (const policy_impl *)pub;
    if (!name) {
        name = "";
        n = 0;
    }
    if (n <= TOPIC_MAX) {
        int k = probe(p, hash_of(name, n, false), name, n, false);
        if (k >= 0) return &pub->topics[k];
    }
    if (p->maxplen < 0) return NULL;
    /* The hash of every prefix up to the longest prefix block, in one pass; then probe only
     * the lengths some prefix block has, longest first. */
    size_t m = n < (size_t)p->maxplen ? n : (size_t)p->maxplen;
    uint64_t h[TOPIC_MAX + 1];
    h[0] = FNV_OFF;
    for (size_t i = 0; i < m; i++) h[i + 1] = fnv_step(h[i], (unsigned char)name[i]);
    for (size_t l = m + 1; l-- > 0;) {
        if (!p->plen[l]) continue;
        int k = probe(p, fin(h[l], true), name, l, true);
        if (k >= 0) return &pub->topics[k];
    }
    return NULL;
}

int sl_policy_keys(const sl_policy *pub, const char **names, int cap) {
    if (!pub) return 0;
    const policy_impl *p = (const policy_impl *)pub;
    int n = p->nkeys < cap ? p->nkeys : cap;
    for (int i = 0; i < n; i++) names[i] = p->keys[i];
    return n;
}
