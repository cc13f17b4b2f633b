/* JSON paths and the one-pass rewriter (sl_jrewrite.h).
 *
 * The rewriter is a streaming scanner with an explicit stack of open containers (no recursion,
 * so depth costs a fixed 64 frames, never the C stack). It validates as it goes and copies
 * nothing while it scans: each replacement is recorded as an edit (input span -> callback text),
 * and the output is built from memcpy'd runs of the input between edits. Up to LOCAL_EDITS edits
 * (the usual record) it is built once at the end in one allocation of the exact size; past that
 * the pending edits are written out into a buffer that grows geometrically, so memory stays
 * proportional to the output whatever the number of matches. Either way the callback's
 * replacement text is read after the callback returned: that is why the header asks it to stay
 * valid until the rewrite returns. A document no edit touches is returned as the input pointer.
 *
 * Which paths are still "live" (their first d segments match the current location) is kept as
 * one bitset per open container; member names are compared against the live paths' segments in
 * place (unescaped into a small stack buffer only when they hold a backslash). */
#include "protect/sl_jrewrite.h"

#include <string.h>

#include "base/sl_text.h"

/* ---- paths ---- */

static bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c == '@' || c == ':' || c == '/' || c == '+' || c == '-';
}

static sl_err path_fail(sl_jpath *out, const char **why, const char *reason) {
    out->nseg = 0;
    if (why) *why = reason;
    return SL_EINVAL;
}

sl_err sl_jpath_parse(const char *s, size_t n, sl_jpath *out, const char **why) {
    out->nseg = 0;
    if (!s || !n) return path_fail(out, why, "empty path");
    size_t i = 0;
    bool after_dot = false; /* a "." was just read: a member name must follow */
    while (i < n) {
        if (out->nseg == SL_JPATH_MAX_SEGS) return path_fail(out, why, "too many segments");
        sl_jpath_seg *g = &out->seg[out->nseg];
        if (s[i] == '[') {
            if (after_dot) return path_fail(out, why, "'[*]' after '.'");
            if (n - i < 3 || s[i + 1] != '*' || s[i + 2] != ']')
                return path_fail(out, why, "only [*] indexes arrays");
            g->any_index = true;
            g->name[0] = 0;
            g->nlen = 0;
            i += 3;
        } else {
            size_t b = i;
            while (i < n && name_char((unsigned char)s[i])) i++;
            if (i == b) {
                bool sep = s[i] == '.' || s[i] == '[';
                return path_fail(out, why, sep ? "empty member name" : "unsupported character");
            }
            if (i - b > SL_JPATH_NAME_MAX) return path_fail(out, why, "member name too long");
            g->any_index = false;
            memcpy(g->name, s + b, i - b);
            g->name[i - b] = 0;
            g->nlen = i - b;
        }
        out->nseg++;
        after_dot = false;
        if (i == n) break;
        if (s[i] == '.') {
            after_dot = true;
            i++;
        } else if (s[i] != '[') {
            return path_fail(out, why, "unsupported character");
        }
    }
    if (after_dot) return path_fail(out, why, "empty member name");
    return SL_OK;
}

/* ---- lexical pieces (all bounded by end; never read past it) ---- */

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
    if (p<end && * p> ' ') return p; /* compact JSON: nothing to skip */
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static inline bool is_digit(uint8_t c) { return (unsigned)(c - '0') < 10u; }

static int hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c - '0' < 10)
            v |= (int)(c - '0');
        else if ((c | 0x20) - 'a' < 6)
            v |= (int)((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    return v;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when one of the 8 bytes of v needs a closer look inside a string: '"', '\\', a
 * control character or a non-ASCII byte. The zero-byte tests may flag a byte next to a real hit,
 * never miss one, so a zero answer lets the whole word through. */
static inline uint64_t special8(uint64_t v) {
    uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
    return ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) | v;
}

/* At the opening quote p: validates the string and returns the byte after its closing quote,
 * or NULL. *esc tells whether it holds a backslash. */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end, bool *esc) {
    const uint8_t *q = p + 1;
    *esc = false;
    for (;;) {
        while (end - q >= 8) {
            uint64_t v;
            memcpy(&v, q, 8);
            if (special8(v) & HIGHS) break;
            q += 8;
        }
        if (q >= end) return NULL;
        unsigned c = *q;
        if (c == '"') return q + 1;
        if (c == '\\') {
            *esc = true;
            if (end - q < 2) return NULL;
            switch (q[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                q += 2;
                continue;
            case 'u': {
                int cp = end - q >= 6 ? hex4(q + 2) : -1;
                if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff)) return NULL;
                q += 6;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    int lo = end - q >= 6 && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
                    if (lo < 0xdc00 || lo > 0xdfff) return NULL;
                    q += 6;
                }
                continue;
            }
            default:
                return NULL;
            }
        }
        if (c < 0x20) return NULL;
        if (c < 0x80) {
            q++;
            continue;
        }
        size_t n = sl_utf8_len(q, (size_t)(end - q));
        if (!n) return NULL;
        q += n;
    }
}

/* Unescapes the body s[0..n) of a string scan_string accepted into dst[0..cap); returns the
 * length, or SIZE_MAX when it does not fit. An unescaped string is never longer than its escaped
 * form, so cap = n always fits. */
static size_t unescape(const uint8_t *s, size_t n, uint8_t *dst, size_t cap) {
    const uint8_t *end = s + n;
    size_t o = 0;
    while (s < end) {
        const uint8_t *bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = (size_t)((bs ? bs : end) - s);
        if (run > cap - o) return SIZE_MAX;
        memcpy(dst + o, s, run);
        o += run;
        if (!bs) break;
        s = bs + 2;
        unsigned cp;
        switch (bs[1]) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            cp = (unsigned)hex4(s);
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)hex4(s + 2) - 0xdc00);
                s += 6;
            }
            break;
        default: /* '"', '\\', '/' */
            cp = bs[1];
            break;
        }
        if (cap - o < 4) {
            uint8_t tmp[4];
            size_t k = sl_utf8_put(tmp, cp);
            if (k > cap - o) return SIZE_MAX;
            memcpy(dst + o, tmp, k);
            o += k;
        } else {
            o += sl_utf8_put(dst + o, cp);
        }
    }
    return o;
}

/* ---- the rewriter ---- */

typedef struct edit {
    const uint8_t *from, *to; /* input span replaced */
    const uint8_t *rep;       /* by rep[0..rlen) */
    size_t rlen;
} edit;

typedef struct frame {
    const uint8_t *start; /* '{' or '[' */
    const uint8_t *comma; /* object: the ',' before the current member */
    const uint8_t *key;   /* object: the current member name's opening quote */
    bool obj;
    bool live;      /* some path may match below */
    bool kept;      /* object: a member before the current one stays in the output */
    int elem_match; /* array: the path every element matches, or -1 */
} frame;

#define LOCAL_EDITS 16

typedef struct jrw {
    const sl_jpath *paths;
    int npaths;
    size_t nw; /* 64-bit words per path set */
    const uint8_t *in, *end;
    sl_arena *a;
    sl_jrw_fn fn;
    void *arg;
    /* Path sets: lv[d] = the paths live in the container at depth d (first d segments match);
     * nm/an/fin[d] = the paths whose segment d is a name / is "[*]" / is the last one. */
    uint64_t *lv, *nm, *an, *fin;
    size_t ned;   /* pending edits in ed[] */
    size_t total; /* edits so far */
    /* The output once edits overflowed ed[]: ob[0..olen) holds the input up to cp, edited. */
    uint8_t *ob;
    size_t olen, ocap;
    const uint8_t *cp;
    edit ed[LOCAL_EDITS];
    frame st[SL_JRW_MAX_DEPTH];
} jrw;

/* Writes the pending edits to ob, growing it (geometrically) so that it can also take the rest
 * of the input unedited. */
static sl_err flush(jrw *w) {
    for (size_t i = 0; i < w->ned; i++) {
        const edit *d = &w->ed[i];
        size_t keep = (size_t)(d->from - w->cp), rest = (size_t)(w->end - d->to);
        if (keep > SIZE_MAX - w->olen || d->rlen > SIZE_MAX - w->olen - keep ||
            rest > SIZE_MAX - w->olen - keep - d->rlen)
            return SL_ETOOLARGE;
        size_t need = w->olen + keep + d->rlen + rest;
        if (need > w->ocap) {
            size_t cap =
                w->ocap && w->ocap <= SIZE_MAX / 2 && 2 * w->ocap > need ? 2 * w->ocap : need;
            if (!w->ocap && cap <= SIZE_MAX - cap / 4) cap += cap / 4;
            uint8_t *nb = sl_arena_alloc(w->a, cap);
            if (!nb) return SL_ENOMEM;
            if (w->olen) memcpy(nb, w->ob, w->olen);
            w->ob = nb;
            w->ocap = cap;
        }
        memcpy(w->ob + w->olen, w->cp, keep);
        w->olen += keep;
        if (d->rlen) memcpy(w->ob + w->olen, d->rep, d->rlen);
        w->olen += d->rlen;
        w->cp = d->to;
    }
    w->ned = 0;
    return SL_OK;
}

static sl_err add_edit(jrw *w, const uint8_t *from, const uint8_t *to, const uint8_t *rep,
                       size_t rlen) {
    if (w->ned == LOCAL_EDITS) {
        sl_err e = flush(w);
        if (e != SL_OK) return e;
    }
    w->ed[w->ned++] = (edit){from, to, rep, rlen};
    w->total++;
    return SL_OK;
}

/* Asks the callback about the value [vs, ve) matched by `path`, whose parent container is
 * `parent`, and records what it answered. *removed: the member is gone from its object. */
static sl_err on_match(jrw *w, frame *parent, int path, const uint8_t *vs, const uint8_t *ve,
                       bool esc, bool *removed) {
    sl_jval v = {.raw = vs, .rawlen = (size_t)(ve - vs)};
    switch (*vs) {
    case '{':
        v.type = SL_JV_OBJ;
        break;
    case '[':
        v.type = SL_JV_ARR;
        break;
    case '"':
        v.type = SL_JV_STR;
        v.str = vs + 1;
        v.slen = v.rawlen - 2;
        if (esc) {
            uint8_t *buf = sl_arena_alloc(w->a, v.slen ? v.slen : 1);
            if (!buf) return SL_ENOMEM;
            v.slen = unescape(vs + 1, v.slen, buf, v.slen);
            v.str = buf;
        }
        break;
    case 't':
    case 'f':
        v.type = SL_JV_BOOL;
        break;
    case 'n':
        v.type = SL_JV_NULL;
        break;
    default:
        v.type = SL_JV_NUM;
        break;
    }
    sl_jrw_out o = {.action = SL_JRW_KEEP};
    sl_err e = w->fn(w->arg, path, &v, &o);
    if (e != SL_OK) return e;
    switch (o.action) {
    case SL_JRW_KEEP:
        return SL_OK;
    case SL_JRW_REPLACE:
        if (!o.json || !o.len) return SL_EINVAL; /* empty text would leave invalid JSON */
        return add_edit(w, vs, ve, o.json, o.len);
    case SL_JRW_REMOVE:
        if (!parent->obj) return add_edit(w, vs, ve, (const uint8_t *)"null", 4);
        *removed = true;
        /* After a kept member: drop from the comma before this one, leaving the kept member
         * last. Otherwise this one is (now) the first: drop it with the comma after it and the
         * whitespace that follows, or alone when it is the last. */
        if (parent->kept) return add_edit(w, parent->comma, ve, NULL, 0);
        const uint8_t *q = skip_ws(ve, w->end);
        if (q < w->end && *q == ',')
            return add_edit(w, parent->key, skip_ws(q + 1, w->end), NULL, 0);
        return add_edit(w, parent->key, ve, NULL, 0);
    }
    return SL_EINVAL;
}

static inline bool set_any(const uint64_t *s, size_t nw) {
    for (size_t i = 0; i < nw; i++)
        if (s[i]) return true;
    return false;
}

/* The first path in s & fin, or -1. */
static inline int set_first(const uint64_t *s, const uint64_t *fin, size_t nw) {
    for (size_t i = 0; i < nw; i++) {
        uint64_t m = s[i] & fin[i];
        if (m) return (int)(i * 64 + (size_t)__builtin_ctzll(m));
    }
    return -1;
}

/* The member name (body nb[0..nlen), escaped when esc) in the container at depth d: fills
 * lv[d + 1] with the live paths whose segment d is that name; returns the first complete one,
 * or -1 (then *live says whether any is left for the value's insides). */
static int match_member(jrw *w, int d, const uint8_t *nb, size_t nlen, bool esc, bool *live) {
    size_t nw = w->nw;
    const uint64_t *cur = w->lv + (size_t)d * nw, *nm = w->nm + (size_t)d * nw;
    uint64_t *nxt = w->lv + (size_t)(d + 1) * nw;
    uint8_t ubuf[SL_JPATH_NAME_MAX];
    if (esc) {
        nlen = unescape(nb, nlen, ubuf, sizeof ubuf);
        nb = ubuf;
    }
    bool any = false;
    for (size_t i = 0; i < nw; i++) {
        uint64_t m = cur[i] & nm[i], hit = 0;
        while (m && nlen <= SL_JPATH_NAME_MAX) {
            int b = __builtin_ctzll(m);
            m &= m - 1;
            const sl_jpath_seg *g = &w->paths[i * 64 + (size_t)b].seg[d];
            if (g->nlen == nlen && !memcmp(g->name, nb, nlen)) hit |= 1ull << b;
        }
        nxt[i] = hit;
        any |= hit != 0;
    }
    *live = false;
    if (!any) return -1;
    int p = set_first(nxt, w->fin + (size_t)d * nw, nw);
    *live = p < 0;
    return p;
}

static sl_err scan(jrw *w) {
    const uint8_t *p = w->in, *end = w->end, *vs;
    int depth = 0;     /* open containers */
    int match = -1;    /* the path matching the value about to be read */
    bool live = w->nw; /* some path may match inside the value about to be read */
    int mdepth = -1;   /* depth of the open container a path matched, or -1 */
    int mpath = -1;
    bool removed, esc = false;
    frame *f = NULL; /* the innermost open container */
    sl_err e;

value:
    p = skip_ws(p, end);
    if (p == end) return SL_ECORRUPT;
    vs = p;
    removed = false;
    switch (*p) {
    case '{':
    case '[': {
        if (depth == SL_JRW_MAX_DEPTH) return SL_ETOOLARGE;
        f = &w->st[depth];
        f->start = p;
        f->obj = *p == '{';
        f->kept = false;
        f->comma = NULL;
        f->live = live && match < 0 && depth < SL_JPATH_MAX_SEGS;
        f->elem_match = -1;
        if (match >= 0) {
            mdepth = depth;
            mpath = match;
        }
        if (f->live && !f->obj) {
            /* Every element meets the same paths: decide them once. */
            size_t nw = w->nw;
            const uint64_t *cur = w->lv + (size_t)depth * nw, *an = w->an + (size_t)depth * nw;
            uint64_t *nxt = w->lv + (size_t)(depth + 1) * nw;
            for (size_t i = 0; i < nw; i++) nxt[i] = cur[i] & an[i];
            if (set_any(nxt, nw))
                f->elem_match = set_first(nxt, w->fin + (size_t)depth * nw, nw);
            else
                f->live = false;
        }
        depth++;
        p = skip_ws(p + 1, end);
        if (p == end) return SL_ECORRUPT;
        if (*p == (f->obj ? '}' : ']')) {
            p++;
            goto closed;
        }
        if (f->obj) goto member;
        goto element;
    }
    case '"':
        p = scan_string(p, end, &esc);
        if (!p) return SL_ECORRUPT;
        break;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4)) return SL_ECORRUPT;
        p += 4;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5)) return SL_ECORRUPT;
        p += 5;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4)) return SL_ECORRUPT;
        p += 4;
        break;
    default:
        if (*p == '-') p++;
        if (p == end || !is_digit(*p)) return SL_ECORRUPT;
        if (*p == '0')
            p++;
        else
            while (p < end && is_digit(*p)) p++;
        if (p < end && *p == '.') {
            p++;
            if (p == end || !is_digit(*p)) return SL_ECORRUPT;
            while (p < end && is_digit(*p)) p++;
        }
        if (p < end && (*p | 0x20) == 'e') {
            p++;
            if (p < end && (*p == '+' || *p == '-')) p++;
            if (p == end || !is_digit(*p)) return SL_ECORRUPT;
            while (p < end && is_digit(*p)) p++;
        }
        break;
    }
    if (match >= 0 && (e = on_match(w, f, match, vs, p, esc, &removed)) != SL_OK) return e;
    goto after;

closed: /* the container f (at depth - 1) ended just before p */
    depth--;
    if (mdepth == depth) {
        mdepth = -1;
        f = depth ? &w->st[depth - 1] : NULL;
        if ((e = on_match(w, f, mpath, w->st[depth].start, p, false, &removed)) != SL_OK) return e;
    }

after: /* a value ended just before p */
    if (!depth) return skip_ws(p, end) == end ? SL_OK : SL_ECORRUPT;
    f = &w->st[depth - 1];
    if (!removed) f->kept = true;
    removed = false;
    p = skip_ws(p, end);
    if (p == end) return SL_ECORRUPT;
    if (*p == ',') {
        f->comma = p++;
        if (f->obj) goto member;
        goto element;
    }
    if (*p != (f->obj ? '}' : ']')) return SL_ECORRUPT;
    p++;
    goto closed;

member: /* in the object f, before a member's name */
    p = skip_ws(p, end);
    if (p == end || *p != '"') return SL_ECORRUPT;
    f->key = p;
    {
        const uint8_t *nb = p + 1;
        p = scan_string(p, end, &esc);
        if (!p) return SL_ECORRUPT;
        match = -1;
        live = false;
        if (f->live) match = match_member(w, depth - 1, nb, (size_t)(p - 1 - nb), esc, &live);
    }
    p = skip_ws(p, end);
    if (p == end || *p != ':') return SL_ECORRUPT;
    p++;
    goto value;

element: /* in the array f, before an element */
    match = f->elem_match;
    live = f->live && match < 0;
    goto value;
}

/* Fills in everything but the stack and the edits, which are written before they are read:
 * no need to clear kilobytes per record. */
static void jrw_init(jrw *w, const sl_jpath *paths, int npaths, const uint8_t *in, size_t len,
                     sl_arena *a, sl_jrw_fn fn, void *arg) {
    w->paths = paths;
    w->npaths = npaths;
    w->in = in;
    w->end = in + len;
    w->a = a;
    w->fn = fn;
    w->arg = arg;
    w->ned = w->total = 0;
    w->ob = NULL;
    w->olen = w->ocap = 0;
    w->cp = in;
}

/* Sets up the path sets: one word per 64 paths; up to 64 paths use `local`. */
static sl_err setup(jrw *w, uint64_t *local, size_t nlocal) {
    size_t nw = ((size_t)w->npaths + 63) / 64;
    size_t words = (size_t)(SL_JRW_MAX_DEPTH + 1 + 3 * SL_JPATH_MAX_SEGS) * nw;
    uint64_t *s = local;
    if (words > nlocal) {
        s = sl_arena_alloc(w->a, words * sizeof *s);
        if (!s) return SL_ENOMEM;
    }
    w->nw = nw;
    w->lv = s;
    w->nm = s + (size_t)(SL_JRW_MAX_DEPTH + 1) * nw;
    w->an = w->nm + (size_t)SL_JPATH_MAX_SEGS * nw;
    w->fin = w->an + (size_t)SL_JPATH_MAX_SEGS * nw;
    /* The other lv[d] are written before they are read. */
    memset(w->lv, 0, nw * sizeof *s);
    memset(w->nm, 0, (size_t)(3 * SL_JPATH_MAX_SEGS) * nw * sizeof *s);
    for (int i = 0; i < w->npaths; i++) {
        const sl_jpath *pa = &w->paths[i];
        size_t wi = (size_t)i / 64;
        uint64_t bit = 1ull << (i % 64);
        if (pa->nseg < 1 || pa->nseg > SL_JPATH_MAX_SEGS) return SL_EINVAL;
        w->lv[wi] |= bit; /* the root: every path */
        for (int d = 0; d < pa->nseg; d++) {
            uint64_t *set = pa->seg[d].any_index ? w->an : w->nm;
            set[(size_t)d * nw + wi] |= bit;
        }
        w->fin[(size_t)(pa->nseg - 1) * nw + wi] |= bit;
    }
    return SL_OK;
}

sl_err sl_jrewrite(const sl_jpath *paths, int npaths, const uint8_t *in, size_t len, sl_arena *a,
                   sl_jrw_fn fn, void *arg, uint8_t **out, size_t *outlen, bool *changed) {
    *changed = false;
    *out = NULL;
    *outlen = 0;
    if (npaths < 0 || (npaths && (!paths || !fn || !a))) return SL_EINVAL;
    if (!in || !len) return SL_ECORRUPT; /* not a JSON document */
    jrw w;
    jrw_init(&w, paths, npaths, in, len, a, fn, arg);
    uint64_t local[SL_JRW_MAX_DEPTH + 1 + 3 * SL_JPATH_MAX_SEGS];
    sl_err e = setup(&w, local, sizeof local / sizeof local[0]);
    if (e == SL_OK) e = scan(&w);
    if (e != SL_OK) return e;
    if (!w.total) {
        *out = (uint8_t *)(uintptr_t)in;
        *outlen = len;
        return SL_OK;
    }
    if (w.ob) {
        if ((e = flush(&w)) != SL_OK) return e;
        memcpy(w.ob + w.olen, w.cp, (size_t)(w.end - w.cp));
        *out = w.ob;
        *outlen = w.olen + (size_t)(w.end - w.cp);
        *changed = true;
        return SL_OK;
    }
    /* The usual case: a few edits, one allocation of the exact size. */
    size_t n = len;
    for (size_t i = 0; i < w.ned; i++) {
        n -= (size_t)(w.ed[i].to - w.ed[i].from);
        if (w.ed[i].rlen > SIZE_MAX - n) return SL_ETOOLARGE;
        n += w.ed[i].rlen;
    }
    uint8_t *o = sl_arena_alloc(a, n ? n : 1), *q = o;
    if (!o) return SL_ENOMEM;
    const uint8_t *cp = in;
    for (size_t i = 0; i < w.ned; i++) {
        const edit *d = &w.ed[i];
        memcpy(q, cp, (size_t)(d->from - cp));
        q += d->from - cp;
        if (d->rlen) memcpy(q, d->rep, d->rlen);
        q += d->rlen;
        cp = d->to;
    }
    memcpy(q, cp, (size_t)(w.end - cp));
    *out = o;
    *outlen = n;
    *changed = true;
    return SL_OK;
}

bool sl_json_valid(const uint8_t *s, size_t n) {
    if (!n || !s) return false;
    jrw w;
    jrw_init(&w, NULL, 0, s, n, NULL, NULL, NULL);
    uint64_t local[1];
    return setup(&w, local, 0) == SL_OK && scan(&w) == SL_OK;
}

sl_err sl_json_quote(sl_arena *a, const uint8_t *s, size_t n, uint8_t **out, size_t *outlen) {
    static const char hex[] = "0123456789abcdef";
    if (!s && n) return SL_EINVAL;
    /* Worst case: every byte a 6-byte \u00XX escape, plus the quotes. */
    if (n > (SIZE_MAX - 2) / 6) return SL_ETOOLARGE;
    size_t cap = 2;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x80) {
            size_t k = sl_utf8_len(s + i, n - i);
            if (!k) return SL_EINVAL; /* the literal would not be JSON */
            cap += k;
            i += k - 1;
            continue;
        }
        cap += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    uint8_t *o = sl_arena_alloc(a, cap), *q = o;
    if (!o) return SL_ENOMEM;
    *q++ = '"';
    size_t run = 0; /* bytes of s before i still to copy */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        memcpy(q, s + run, i - run);
        q += i - run;
        run = i + 1;
        *q++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *q++ = c;
            break;
        case '\b':
            *q++ = 'b';
            break;
        case '\f':
            *q++ = 'f';
            break;
        case '\n':
            *q++ = 'n';
            break;
        case '\r':
            *q++ = 'r';
            break;
        case '\t':
            *q++ = 't';
            break;
        default:
            *q++ = 'u';
            *q++ = '0';
            *q++ = '0';
            *q++ = (uint8_t)hex[c >> 4];
            *q++ = (uint8_t)hex[c & 15];
            break;
        }
    }
    memcpy(q, s + run, n - run);
    q += n - run;
    *q++ = '"';
    *out = o;
    *outlen = (size_t)(q - o);
    return SL_OK;
}
