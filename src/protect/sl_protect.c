/* The field-protection engine; see sl_protect.h.
 *
 * A "plan" is made once per call (per record set for the broker): the block's rules grouped by
 * the part they apply to (value, key, each header name), the JSON paths of one part in one array
 * so that part is scanned once by sl_jrewrite (path index -> rule, in rule order), and a cache of
 * the key contexts that do not depend on the record (each rule's current version without a
 * subject, the subject rule's token key, the view-token keys). Within one part the path rules
 * run first and the whole-target rules after them (on the result), so "value.ssn mask" and
 * "value encrypt" both apply.
 *
 * Nothing here allocates with malloc: plans, rewritten parts, ciphertexts and rebuilt batches
 * live in the caller's arena. */
#include "protect/sl_protect.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "proto/sl_batch.h"

#define ATTR_CONTROL 0x20

typedef struct rkey {
    const sl_fc_key *k;
    bool loaded;
} rkey;

/* The last key context a rule looked up by version and subject (reading ciphertexts, or writing
 * for a subject): consecutive records often share both. */
typedef struct rlast {
    const sl_fc_key *k;
    uint32_t version;
    bool has_subject;
    uint8_t subject[16];
} rlast;

typedef struct ppart {
    sl_ppart part;
    const char *header; /* SL_PP_HEADER: its name */
    int npaths;
    sl_jpath *paths; /* contiguous, for sl_jrewrite */
    int *prule;      /* rule index of each path */
    int nwhole;
    int *wrule; /* whole-target rules, rule order */
} ppart;

typedef struct plan {
    const sl_ptopic *t;
    sl_fkeys *k;
    sl_arena *a;
    bool reveal;
    const sl_view *views; /* reveal */
    ppart *parts;
    int nparts;
    rkey *cur;  /* per rule: the rule key's current version, no subject */
    rkey *vtok; /* per rule: the view-token key's current version (reveal) */
    rkey subj;  /* the subject rule's token key */
    rlast *rd;  /* per rule: reading (named version and subject) */
    rlast *wr;  /* per rule: writing for a subject */
    /* per record */
    bool has_subject, subject_seen;
    uint8_t subject[16];
    const ppart *part; /* the part being rewritten (callbacks) */
    sl_err cb_err;     /* what the callback returned, to tell it from a document error */
    int64_t fields, failed, subjects;
    sl_prule_count *rc;
    sl_prule_count *rc_save; /* per path of the part being rewritten: rc before it */
    char *why;
    size_t whylen;
    /* Set level: what one record's rewrite allocates (its new JSON, ciphertexts) lives here and
     * is dropped once the record is copied into the batch being built, so rewriting a batch
     * touches the same few pages record after record (NULL: record level, the caller's arena). */
    sl_arena *scratch;
} plan;

/* ------------------------------------------------------------------ small helpers */

static const char *jtype_name(sl_jv_type t) {
    switch (t) {
    case SL_JV_NULL:
        return "null";
    case SL_JV_BOOL:
        return "a boolean";
    case SL_JV_NUM:
        return "a number";
    case SL_JV_STR:
        return "a string";
    case SL_JV_ARR:
        return "an array";
    case SL_JV_OBJ:
        return "an object";
    }
    return "a value";
}

static void part_name(sl_ppart part, const char *header, char *out, size_t n) {
    if (part == SL_PP_VALUE)
        snprintf(out, n, "value");
    else if (part == SL_PP_KEY)
        snprintf(out, n, "key");
    else
        snprintf(out, n, "header:%s", header);
}

/* Errors that mean "try again later" or a broken process, as opposed to a value that cannot be
 * decrypted (forgotten subject, shredded key, wrong key): those fail a reveal, the others only
 * leave one value stored. */
static bool transient(sl_err e) {
    return e == SL_EKEY_UNAVAILABLE || e == SL_ENOMEM || e == SL_EKMS_UNAVAILABLE || e == SL_EIO;
}

/* Our own strings (tokens, ciphertexts) hold only [A-Za-z0-9_.-]: quoting is adding quotes. */
static sl_err quote_plain(sl_arena *a, const char *s, size_t n, uint8_t **out, size_t *outlen) {
    uint8_t *q = sl_arena_alloc(a, n + 2);
    if (!q) return SL_ENOMEM;
    q[0] = '"';
    memcpy(q + 1, s, n);
    q[n + 1] = '"';
    *out = q;
    *outlen = n + 2;
    return SL_OK;
}

/* When s[0..n) is a token string of key `key`, true (and its MAC in mac when not NULL). */
static bool token_of(const uint8_t *s, size_t n, const char *key, uint8_t *mac) {
    if (!sl_fc_is_token((const char *)s, n)) return false;
    size_t kl = strlen(key);
    if (n < 5 + kl + 1 || memcmp(s + 5, key, kl) != 0 || s[5 + kl] != '.') return false;
    if (mac && sl_fc_b64url_decode((const char *)s + n - SL_FC_B64_16, SL_FC_B64_16, mac, 16) != 16)
        return false;
    return true;
}

static bool looks_encrypted(const uint8_t *s, size_t n) {
    return n > 4 && memcmp(s, "sl1.", 4) == 0;
}

static sl_err get_key(plan *p, const char *name, uint32_t version, const uint8_t *subject,
                      bool create, const sl_fc_key **out) {
    if (!p->k) {
        if (p->why && p->whylen) snprintf(p->why, p->whylen, "field key %s: no keys", name);
        return SL_ENOTFOUND;
    }
    int64_t before = create ? sl_fkeys_subjects(p->k) : 0;
    sl_err e = sl_fkeys_get(p->k, name, version, subject, create, out, NULL);
    if (create && !e) p->subjects += sl_fkeys_subjects(p->k) - before;
    /* Key names are configuration, not data: they may appear in the reason. */
    if (e && p->why && p->whylen)
        snprintf(p->why, p->whylen, "field key %s: %s", name, sl_strerror(e));
    return e;
}

/* Rule key `name` at `version` for `subject` (NULL: none) through the rule's one-entry cache. */
static sl_err last_key(plan *p, rlast *c, const char *name, uint32_t version,
                       const uint8_t *subject, bool create, const sl_fc_key **out) {
    if (c->k && c->version == version && c->has_subject == (subject != NULL) &&
        (!subject || memcmp(c->subject, subject, 16) == 0)) {
        *out = c->k;
        return SL_OK;
    }
    sl_err e = get_key(p, name, version, subject, create, out);
    if (e) return e;
    c->k = *out;
    c->version = version;
    c->has_subject = subject != NULL;
    if (subject) memcpy(c->subject, subject, 16);
    return SL_OK;
}

/* The cached current version of `name` without a subject. */
static sl_err cached_key(plan *p, rkey *rk, const char *name, const sl_fc_key **out) {
    if (!rk->loaded) {
        sl_err e = get_key(p, name, 0, NULL, false, &rk->k);
        if (e) return e;
        rk->loaded = true;
    }
    *out = rk->k;
    return SL_OK;
}

/* The key an encrypt rule writes with: its current version, bound to the record's subject. */
static sl_err enc_key(plan *p, int ri, const sl_fc_key **out) {
    const sl_prule *r = &p->t->rules[ri];
    if (p->has_subject) return last_key(p, &p->wr[ri], r->key, 0, p->subject, true, out);
    return cached_key(p, &p->cur[ri], r->key, out);
}

/* A rule cannot apply to this value: refuse the record, or (on-error pass) skip the value. */
static sl_err cannot(plan *p, const char *what, const char *is) {
    if (p->t->pass_on_error) return SL_OK;
    if (p->why && p->whylen) snprintf(p->why, p->whylen, "%s is %s", what, is);
    return SL_EUNPROTECTABLE;
}

/* Whether s[0..n) is a ciphertext string of rule r's key that decrypts under the key and
 * subject it names (a library, or an earlier pass, protected it already). */
static sl_err already_encrypted(plan *p, int ri, const uint8_t *s, size_t n, bool *yes) {
    const sl_prule *r = &p->t->rules[ri];
    *yes = false;
    if (!looks_encrypted(s, n)) return SL_OK;
    sl_fc_header h;
    if (sl_fc_parse((const char *)s, n, &h) || strcmp(h.key, r->key) != 0) return SL_OK;
    const sl_fc_key *fk;
    sl_err e =
        last_key(p, &p->rd[ri], h.key, h.version, h.has_subject ? h.subject : NULL, false, &fk);
    if (e) return transient(e) ? e : SL_OK;
    uint8_t type, *pt;
    size_t ptlen;
    e = sl_fc_decrypt(fk, (const char *)s, n, &h, p->a, &type, &pt, &ptlen);
    if (e == SL_ENOMEM) return e;
    if (!e) OPENSSL_cleanse(pt, ptlen);
    *yes = e == SL_OK;
    return SL_OK;
}

/* The callback's answer "replace with this text as a JSON string": `escape` for arbitrary text
 * (sl_json_quote), else text that by format needs no escapes (tokens, ciphertext strings). */
static sl_err replace_with(sl_arena *a, bool escape, const void *s, size_t n, sl_jrw_out *out) {
    uint8_t *q;
    size_t ql;
    sl_err e = escape ? sl_json_quote(a, s, n, &q, &ql) : quote_plain(a, s, n, &q, &ql);
    if (e) return e;
    out->action = SL_JRW_REPLACE;
    out->json = q;
    out->len = ql;
    return SL_OK;
}

/* ------------------------------------------------------------------ plan */

static sl_err plan_init(plan *p, const sl_ptopic *t, sl_fkeys *k, sl_arena *a, bool reveal,
                        const sl_view *views) {
    memset(p, 0, sizeof *p);
    p->t = t;
    p->k = k;
    p->a = a;
    p->reveal = reveal;
    p->views = views;
    int n = t->nrules;
    if (n <= 0) return SL_OK;
    int *pidx = sl_arena_alloc(a, sizeof(int) * (size_t)n);
    p->parts = sl_arena_calloc(a, (size_t)n, sizeof *p->parts);
    p->cur = sl_arena_calloc(a, (size_t)n, sizeof *p->cur);
    p->vtok = sl_arena_calloc(a, (size_t)n, sizeof *p->vtok);
    p->rd = sl_arena_calloc(a, (size_t)n, sizeof *p->rd);
    p->wr = sl_arena_calloc(a, (size_t)n, sizeof *p->wr);
    p->rc_save = sl_arena_alloc(a, sizeof *p->rc_save * (size_t)n);
    if (!pidx || !p->parts || !p->cur || !p->vtok || !p->rd || !p->wr || !p->rc_save)
        return SL_ENOMEM;
    /* Which part each active rule goes to, and how many paths/wholes per part. */
    for (int i = 0; i < n; i++) {
        const sl_prule *r = &t->rules[i];
        pidx[i] = -1;
        if (reveal && (r->action != SL_PA_ENCRYPT || !views || views[i] == SL_VIEW_STORED))
            continue;
        int j;
        for (j = 0; j < p->nparts; j++) {
            const ppart *pp = &p->parts[j];
            if (pp->part == r->target.part &&
                (pp->part != SL_PP_HEADER || strcmp(pp->header, r->target.header) == 0))
                break;
        }
        if (j == p->nparts) {
            p->parts[j].part = r->target.part;
            p->parts[j].header = r->target.header;
            p->nparts++;
        }
        pidx[i] = j;
        if (r->target.whole)
            p->parts[j].nwhole++;
        else
            p->parts[j].npaths++;
    }
    for (int j = 0; j < p->nparts; j++) {
        ppart *pp = &p->parts[j];
        if (pp->npaths) {
            pp->paths = sl_arena_alloc(a, sizeof(sl_jpath) * (size_t)pp->npaths);
            pp->prule = sl_arena_alloc(a, sizeof(int) * (size_t)pp->npaths);
            if (!pp->paths || !pp->prule) return SL_ENOMEM;
        }
        if (pp->nwhole) {
            pp->wrule = sl_arena_alloc(a, sizeof(int) * (size_t)pp->nwhole);
            if (!pp->wrule) return SL_ENOMEM;
        }
        pp->npaths = pp->nwhole = 0;
    }
    for (int i = 0; i < n; i++) {
        if (pidx[i] < 0) continue;
        ppart *pp = &p->parts[pidx[i]];
        const sl_prule *r = &t->rules[i];
        if (r->target.whole) {
            pp->wrule[pp->nwhole++] = i;
        } else {
            pp->paths[pp->npaths] = r->target.path;
            pp->prule[pp->npaths++] = i;
        }
    }
    return SL_OK;
}

/* ------------------------------------------------------------------ subject */

static sl_err subject_from(plan *p, const uint8_t *s, size_t n) {
    if (token_of(s, n, p->t->subject_key, p->subject)) {
        p->has_subject = true;
        return SL_OK;
    }
    const sl_fc_key *fk;
    sl_err e;
    sl_fc_header h;
    /* A subject field a library encrypted already: its clear value names the subject. */
    if (looks_encrypted(s, n) && !sl_fc_parse((const char *)s, n, &h)) {
        const sl_fc_key *ck;
        uint8_t type, *pt;
        size_t ptlen;
        e = get_key(p, h.key, h.version, h.has_subject ? h.subject : NULL, false, &ck);
        if (e && transient(e)) return e;
        if (!e && !sl_fc_decrypt(ck, (const char *)s, n, &h, p->a, &type, &pt, &ptlen)) {
            if ((e = cached_key(p, &p->subj, p->t->subject_key, &fk))) return e;
            sl_fc_token_mac(fk, pt, ptlen, p->subject);
            OPENSSL_cleanse(pt, ptlen);
            p->has_subject = true;
            return SL_OK;
        }
    }
    if ((e = cached_key(p, &p->subj, p->t->subject_key, &fk))) return e;
    sl_fc_token_mac(fk, s, n, p->subject);
    p->has_subject = true;
    return SL_OK;
}

static sl_err cb_subject(void *arg, int path, const sl_jval *v, sl_jrw_out *out) {
    plan *p = arg;
    out->action = SL_JRW_KEEP;
    if (p->subject_seen) return SL_OK; /* the first one names the subject */
    p->subject_seen = true;
    sl_err e = SL_OK;
    switch (v->type) {
    case SL_JV_NULL:
        break;
    case SL_JV_STR:
        e = subject_from(p, v->str, v->slen);
        break;
    case SL_JV_NUM:
    case SL_JV_BOOL:
        e = subject_from(p, v->raw, v->rawlen);
        break;
    default:
        e = cannot(p, p->t->subject.text, jtype_name(v->type));
        break;
    }
    if (e) p->cb_err = e;
    return e;
}

static const sl_bytes *header_named(const sl_prec *rec, const char *name) {
    size_t nl = strlen(name);
    for (int32_t i = 0; i < rec->nheaders; i++) {
        const sl_bytes *k = &rec->headers[i].key;
        if (k->len == (int32_t)nl && memcmp(k->p, name, nl) == 0) return &rec->headers[i].value;
    }
    return NULL;
}

/* The record's subject id, from its clear subject value (before any rule). */
static sl_err find_subject(plan *p, const sl_prec *rec) {
    p->has_subject = p->subject_seen = false;
    const sl_ptopic *t = p->t;
    if (!t->has_subject) return SL_OK;
    const sl_bytes *b = t->subject.part == SL_PP_VALUE ? &rec->value
                        : t->subject.part == SL_PP_KEY ? &rec->key
                                                       : header_named(rec, t->subject.header);
    if (!b || b->len < 0) return SL_OK;
    if (t->subject.whole) return subject_from(p, b->p, (size_t)b->len);
    uint8_t *o;
    size_t ol;
    bool ch;
    p->cb_err = SL_OK;
    sl_err e =
        sl_jrewrite(&t->subject.path, 1, b->p, (size_t)b->len, p->a, cb_subject, p, &o, &ol, &ch);
    if (e && e == p->cb_err) return e;
    if (e == SL_ENOMEM) return e;
    if (e) {
        p->has_subject = false;
        char nm[200];
        part_name(t->subject.part, t->subject.header, nm, sizeof nm);
        return cannot(p, nm, "not JSON");
    }
    return SL_OK;
}

/* ------------------------------------------------------------------ protect */

static sl_err protect_json(plan *p, int ri, const sl_jval *v, sl_jrw_out *out) {
    const sl_prule *r = &p->t->rules[ri];
    sl_arena *a = p->a;
    sl_err e;
    switch (r->action) {
    case SL_PA_MASK: {
        if (v->type == SL_JV_NULL) return SL_OK;
        if (v->type != SL_JV_STR) return cannot(p, r->target.text, jtype_name(v->type));
        uint8_t *m = sl_arena_alloc(a, v->slen ? v->slen : 1);
        if (!m) return SL_ENOMEM;
        size_t mn = sl_fc_mask_apply(&r->mask, v->str, v->slen, m);
        if ((e = replace_with(a, true, m, mn, out))) return e;
        break;
    }
    case SL_PA_REDACT:
        if (r->remove) {
            out->action = SL_JRW_REMOVE;
        } else {
            if (v->type == SL_JV_NULL) return SL_OK;
            out->action = SL_JRW_REPLACE;
            out->json = (const uint8_t *)"null";
            out->len = 4;
        }
        break;
    case SL_PA_TOKEN: {
        const uint8_t *in = v->raw;
        size_t n = v->rawlen;
        if (v->type == SL_JV_NULL) return SL_OK;
        if (v->type == SL_JV_OBJ || v->type == SL_JV_ARR)
            return cannot(p, r->target.text, jtype_name(v->type));
        if (v->type == SL_JV_STR) {
            if (token_of(v->str, v->slen, r->key, NULL)) return SL_OK;
            in = v->str;
            n = v->slen;
        }
        const sl_fc_key *fk;
        if ((e = cached_key(p, &p->cur[ri], r->key, &fk))) return e;
        char tok[SL_FC_TOKEN_STR_MAX];
        size_t tn = sl_fc_token(fk, in, n, tok);
        if ((e = replace_with(a, false, tok, tn, out))) return e;
        break;
    }
    case SL_PA_ENCRYPT: {
        uint8_t type = SL_FC_T_JSON;
        const uint8_t *in = v->raw;
        size_t n = v->rawlen;
        if (v->type == SL_JV_STR) {
            bool done;
            if ((e = already_encrypted(p, ri, v->str, v->slen, &done))) return e;
            if (done) return SL_OK;
            type = SL_FC_T_STR;
            in = v->str;
            n = v->slen;
        }
        const sl_fc_key *fk;
        if ((e = enc_key(p, ri, &fk))) return e;
        char *ct;
        size_t cl;
        if ((e = sl_fc_encrypt(fk, r->alg, type, in, n, a, &ct, &cl))) return e;
        if ((e = replace_with(a, false, ct, cl, out))) return e;
        break;
    }
    }
    p->fields++;
    return SL_OK;
}

static sl_err cb_protect(void *arg, int path, const sl_jval *v, sl_jrw_out *out) {
    plan *p = arg;
    out->action = SL_JRW_KEEP;
    sl_err e = protect_json(p, p->part->prule[path], v, out);
    if (e) p->cb_err = e;
    return e;
}

/* A whole key, value or header value (any bytes). *drop: the header goes. */
static sl_err protect_whole(plan *p, int ri, sl_bytes *b, bool *drop, bool *changed) {
    const sl_prule *r = &p->t->rules[ri];
    if (b->len < 0) return SL_OK;
    const uint8_t *s = b->p;
    size_t n = (size_t)b->len;
    sl_err e;
    switch (r->action) {
    case SL_PA_MASK: {
        uint8_t *m = sl_arena_alloc(p->a, n ? n : 1);
        if (!m) return SL_ENOMEM;
        size_t mn = sl_fc_mask_apply(&r->mask, s, n, m);
        *b = (sl_bytes){m, (int32_t)mn};
        break;
    }
    case SL_PA_REDACT:
        /* A whole header: null, or dropped with remove (docs/field-protection.md). */
        if (r->remove && r->target.part == SL_PP_HEADER) *drop = true;
        *b = SL_BYTES_NULL;
        break;
    case SL_PA_TOKEN: {
        if (token_of(s, n, r->key, NULL)) return SL_OK;
        const sl_fc_key *fk;
        if ((e = cached_key(p, &p->cur[ri], r->key, &fk))) return e;
        char tok[SL_FC_TOKEN_STR_MAX];
        size_t tn = sl_fc_token(fk, s, n, tok);
        uint8_t *d = sl_arena_dup(p->a, tok, tn);
        if (!d) return SL_ENOMEM;
        *b = (sl_bytes){d, (int32_t)tn};
        break;
    }
    case SL_PA_ENCRYPT: {
        bool done;
        if ((e = already_encrypted(p, ri, s, n, &done))) return e;
        if (done) return SL_OK;
        const sl_fc_key *fk;
        if ((e = enc_key(p, ri, &fk))) return e;
        char *ct;
        size_t cl;
        if ((e = sl_fc_encrypt(fk, r->alg, SL_FC_T_RAW, s, n, p->a, &ct, &cl))) return e;
        if (cl > INT32_MAX) return SL_ETOOLARGE;
        *b = (sl_bytes){(const uint8_t *)ct, (int32_t)cl};
        break;
    }
    }
    p->fields++;
    *changed = true;
    return SL_OK;
}

/* ------------------------------------------------------------------ reveal */

/* Shows ciphertext string s[0..n) of rule ri in its view: *out and *outlen (JSON text when `json`,
 * else raw bytes), or *out NULL to leave it stored. */
static sl_err reveal_value(plan *p, int ri, const uint8_t *s, size_t n, bool json, uint8_t **out,
                           size_t *outlen) {
    const sl_prule *r = &p->t->rules[ri];
    sl_view view = p->views[ri];
    *out = NULL;
    if (!looks_encrypted(s, n)) return SL_OK;
    sl_fc_header h;
    if (sl_fc_parse((const char *)s, n, &h) || strcmp(h.key, r->key) != 0) return SL_OK;
    const sl_fc_key *fk;
    sl_err e =
        last_key(p, &p->rd[ri], h.key, h.version, h.has_subject ? h.subject : NULL, false, &fk);
    uint8_t type = 0, *pt = NULL;
    size_t ptlen = 0;
    if (!e) e = sl_fc_decrypt(fk, (const char *)s, n, &h, p->a, &type, &pt, &ptlen);
    if (e) {
        if (transient(e)) return e;
        goto failed;
    }
    switch (view) {
    case SL_VIEW_STORED:
        break;
    case SL_VIEW_REVEAL:
        if (!json) {
            *out = pt;
            *outlen = ptlen;
        } else if (type == SL_FC_T_STR) {
            if ((e = sl_json_quote(p->a, pt, ptlen, out, outlen))) return e;
        } else if (type == SL_FC_T_JSON && sl_json_valid(pt, ptlen)) {
            *out = pt;
            *outlen = ptlen;
        } else {
            goto failed; /* not something a JSON field can hold */
        }
        break;
    case SL_VIEW_MASK: {
        if (!r->has_view_mask || (json && type != SL_FC_T_STR)) break;
        uint8_t *m = sl_arena_alloc(p->a, ptlen ? ptlen : 1);
        if (!m) return SL_ENOMEM;
        size_t mn = sl_fc_mask_apply(&r->view_mask, pt, ptlen, m);
        if (json) {
            if ((e = sl_json_quote(p->a, m, mn, out, outlen))) return e;
        } else {
            *out = m;
            *outlen = mn;
        }
        break;
    }
    case SL_VIEW_TOKEN: {
        if (!r->view_token[0]) break;
        /* Tokens are of scalars' text: an encrypted object or array has none. */
        if (type == SL_FC_T_JSON &&
            (ptlen == 0 || pt[0] == '{' || pt[0] == '[' || pt[0] == '"' || pt[0] == 'n'))
            break;
        const sl_fc_key *tk;
        if ((e = cached_key(p, &p->vtok[ri], r->view_token, &tk))) {
            if (transient(e)) return e;
            goto failed;
        }
        char tok[SL_FC_TOKEN_STR_MAX];
        size_t tn = sl_fc_token(tk, pt, ptlen, tok);
        if (json) {
            if ((e = quote_plain(p->a, tok, tn, out, outlen))) return e;
        } else {
            if (!(*out = sl_arena_dup(p->a, tok, tn))) return SL_ENOMEM;
            *outlen = tn;
        }
        break;
    }
    }
    /* The clear text stays in the arena only where it is shown. */
    if (*out != pt) OPENSSL_cleanse(pt, ptlen);
    if (*out) {
        p->fields++;
        if (p->rc) p->rc[ri].shown++;
    }
    return SL_OK;
failed:
    if (pt) OPENSSL_cleanse(pt, ptlen);
    *out = NULL;
    p->failed++;
    if (p->rc) p->rc[ri].failed++;
    return SL_OK;
}

static sl_err cb_reveal(void *arg, int path, const sl_jval *v, sl_jrw_out *out) {
    plan *p = arg;
    out->action = SL_JRW_KEEP;
    if (v->type != SL_JV_STR) return SL_OK;
    uint8_t *o;
    size_t ol;
    sl_err e = reveal_value(p, p->part->prule[path], v->str, v->slen, true, &o, &ol);
    if (e) {
        p->cb_err = e;
        return e;
    }
    if (o) {
        out->action = SL_JRW_REPLACE;
        out->json = o;
        out->len = ol;
    }
    return SL_OK;
}

static sl_err reveal_whole(plan *p, int ri, sl_bytes *b, bool *changed) {
    if (b->len < 0) return SL_OK;
    uint8_t *o;
    size_t ol;
    sl_err e = reveal_value(p, ri, b->p, (size_t)b->len, false, &o, &ol);
    if (e) return e;
    if (o) {
        if (ol > INT32_MAX) return SL_ETOOLARGE;
        *b = (sl_bytes){o, (int32_t)ol};
        *changed = true;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------ one part, one record */

/* Applies part pp's rules to *b. *drop: a header to remove. */
static sl_err do_part(plan *p, const ppart *pp, sl_bytes *b, bool *drop, bool *changed) {
    if (b->len < 0) return SL_OK; /* null (a tombstone): nothing to protect */
    sl_err e;
    if (pp->npaths) {
        uint8_t *o;
        size_t ol;
        bool ch = false;
        int64_t fields = p->fields, failed = p->failed;
        if (p->rc)
            for (int i = 0; i < pp->npaths; i++) p->rc_save[i] = p->rc[pp->prule[i]];
        p->part = pp;
        p->cb_err = SL_OK;
        e = sl_jrewrite(pp->paths, pp->npaths, b->p, (size_t)b->len, p->a,
                        p->reveal ? cb_reveal : cb_protect, p, &o, &ol, &ch);
        if (e) {
            /* Values seen before the error was found are not rewritten after all. */
            p->fields = fields;
            p->failed = failed;
            if (p->rc)
                for (int i = 0; i < pp->npaths; i++) p->rc[pp->prule[i]] = p->rc_save[i];
            if (e == p->cb_err || e == SL_ENOMEM) return e;
            if (!p->reveal) {
                char nm[200];
                part_name(pp->part, pp->header, nm, sizeof nm);
                if ((e = cannot(p, nm, "not JSON"))) return e;
            }
            /* reveal: a stored value that is not JSON holds nothing to show */
        } else if (ch) {
            if (ol > INT32_MAX) return SL_ETOOLARGE;
            *b = (sl_bytes){o, (int32_t)ol};
            *changed = true;
        }
    }
    for (int i = 0; i < pp->nwhole && b->len >= 0; i++) {
        e = p->reveal ? reveal_whole(p, pp->wrule[i], b, changed)
                      : protect_whole(p, pp->wrule[i], b, drop, changed);
        if (e) return e;
        if (*drop) break;
    }
    return SL_OK;
}

static sl_err do_record(plan *p, sl_prec *rec, bool *changed) {
    sl_err e;
    *changed = false;
    if (!p->reveal && (e = find_subject(p, rec))) return e;
    bool drop = false;
    for (int j = 0; j < p->nparts; j++) {
        const ppart *pp = &p->parts[j];
        if (pp->part == SL_PP_VALUE) {
            if ((e = do_part(p, pp, &rec->value, &drop, changed))) return e;
        } else if (pp->part == SL_PP_KEY) {
            if ((e = do_part(p, pp, &rec->key, &drop, changed))) return e;
        } else {
            size_t nl = strlen(pp->header);
            for (int32_t i = 0; i < rec->nheaders; i++) {
                sl_rec_header *h = &rec->headers[i];
                if (h->key.len != (int32_t)nl || memcmp(h->key.p, pp->header, nl) != 0) continue;
                drop = false;
                if ((e = do_part(p, pp, &h->value, &drop, changed))) return e;
                if (drop) {
                    memmove(h, h + 1, sizeof *h * (size_t)(rec->nheaders - i - 1));
                    rec->nheaders--;
                    i--;
                }
            }
        }
    }
    return SL_OK;
}

static void count_record(plan *p, sl_pcount *cnt, bool changed) {
    if (cnt) {
        cnt->records++;
        if (changed) cnt->changed++;
        cnt->fields += p->fields;
        cnt->failed += p->failed;
        cnt->subjects += p->subjects;
    }
    p->fields = p->failed = p->subjects = 0;
}

sl_err sl_protect_record(const sl_ptopic *t, sl_fkeys *k, sl_arena *a, sl_prec *rec, sl_pcount *cnt,
                         char *why, size_t whylen) {
    plan p;
    sl_err e = plan_init(&p, t, k, a, false, NULL);
    if (e) return e;
    p.why = why;
    p.whylen = whylen;
    bool changed;
    e = do_record(&p, rec, &changed);
    if (!e) count_record(&p, cnt, changed);
    return e;
}

sl_err sl_reveal_record(const sl_ptopic *t, const sl_view *views, sl_fkeys *k, sl_arena *a,
                        sl_prec *rec, sl_pcount *cnt, sl_prule_count *rc) {
    plan p;
    sl_err e = plan_init(&p, t, k, a, true, views);
    if (e) return e;
    p.rc = rc;
    bool changed;
    e = do_record(&p, rec, &changed);
    if (!e) count_record(&p, cnt, changed);
    return e;
}

/* ------------------------------------------------------------------ record sets */

typedef struct piece {
    const uint8_t *p;
    size_t n;
} piece;

typedef struct pieces {
    piece *v;
    int n, cap;
    size_t total;
    bool changed;
} pieces;

static sl_err piece_add(sl_arena *a, pieces *ps, const uint8_t *p, size_t n, bool changed) {
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 16;
        piece *v = sl_arena_alloc(a, sizeof *v * (size_t)cap);
        if (!v) return SL_ENOMEM;
        if (ps->n) memcpy(v, ps->v, sizeof *v * (size_t)ps->n);
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n++] = (piece){p, n};
    ps->total += n;
    ps->changed |= changed;
    return SL_OK;
}

static sl_err pieces_join(sl_arena *a, const pieces *ps, uint8_t **data, size_t *len) {
    if (ps->n == 1) {
        /* The usual produce: one batch per partition, rebuilt in the arena already. */
        *data = (uint8_t *)ps->v[0].p;
        *len = ps->v[0].n;
        return SL_OK;
    }
    uint8_t *o = sl_arena_alloc(a, ps->total ? ps->total : 1);
    if (!o) return SL_ENOMEM;
    size_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        memcpy(o + off, ps->v[i].p, ps->v[i].n);
        off += ps->v[i].n;
    }
    *data = o;
    *len = off;
    return SL_OK;
}

/* A record's headers into a scratch array that grows in the arena. */
static sl_err collect_headers(sl_arena *a, sl_record *r, sl_rec_header **buf, int32_t *cap,
                              int32_t *n) {
    if (r->nheaders > *cap) {
        int32_t c = *cap * 2 > r->nheaders ? *cap * 2 : r->nheaders;
        if (c < 8) c = 8;
        sl_rec_header *v = sl_arena_alloc(a, sizeof *v * (size_t)c);
        if (!v) return SL_ENOMEM;
        *buf = v;
        *cap = c;
    }
    int32_t i = 0;
    while (i < *cap && sl_record_header_next(r, &(*buf)[i].key, &(*buf)[i].value)) i++;
    *n = i;
    return SL_OK;
}

static sl_err add_rec(sl_rec_builder *b, const sl_record *r, const sl_prec *pr) {
    sl_rec_in in = {.attributes = r->attributes,
                    .timestamp_delta = r->timestamp_delta,
                    .offset_delta = r->offset_delta,
                    .key = pr->key,
                    .value = pr->value,
                    .headers = pr->headers,
                    .nheaders = pr->nheaders};
    return sl_rec_builder_add(b, &in);
}

/* Rewrites one batch: *out NULL when no record changed. *iter: the error is the batch's own
 * (does not decompress or parse), not a record's. */
static sl_err do_batch(plan *p, const uint8_t *batch, const sl_batch_info *bi, size_t max_inflate,
                       sl_pcount *cnt, uint8_t **out, size_t *outlen, bool *iter) {
    sl_arena *a = p->a;
    sl_rec_iter it;
    *out = NULL;
    *iter = true;
    sl_err e = sl_rec_iter_init(&it, batch, bi->size, a, max_inflate);
    if (e) return e;
    sl_rec_iter start = it; /* replayed when the first changed record is found */
    size_t recs_len = sl_rd_left(&it.r);
    sl_rec_builder bld;
    bool building = false;
    int32_t idx = 0, hcap = 0, hcap2 = 0, nh;
    sl_rec_header *hdrs = NULL, *hdrs2 = NULL;
    sl_record r;
    while (sl_rec_iter_next(&it, &r)) {
        *iter = false;
        if ((e = collect_headers(a, &r, &hdrs, &hcap, &nh))) return e;
        sl_prec pr = {r.key, r.value, hdrs, nh};
        bool ch;
        if (p->scratch) p->a = p->scratch;
        e = do_record(p, &pr, &ch);
        p->a = a;
        if (e) return e;
        count_record(p, cnt, ch);
        if (ch && !building) {
            building = true;
            /* Protected fields grow (a ciphertext string is about 4/3 of its clear value plus
             * some 60 bytes): room for that, the builder grows beyond it when needed. */
            sl_rec_builder_init(&bld, a, recs_len + recs_len / 2 + 256);
            sl_rec_iter re = start;
            sl_record rr;
            for (int32_t j = 0; j < idx && sl_rec_iter_next(&re, &rr); j++) {
                int32_t nh2;
                if ((e = collect_headers(a, &rr, &hdrs2, &hcap2, &nh2))) return e;
                sl_prec same = {rr.key, rr.value, hdrs2, nh2};
                if ((e = add_rec(&bld, &rr, &same))) return e;
            }
        }
        if (building && (e = add_rec(&bld, &r, &pr))) return e;
        if (p->scratch) sl_arena_reset(p->scratch); /* the record is copied (or unchanged) */
        idx++;
        *iter = true;
    }
    if ((e = sl_rec_iter_err(&it))) return e;
    *iter = false;
    if (!building) return SL_OK;
    uint8_t *nb;
    size_t nl;
    if ((e = sl_rec_builder_seal_like(&bld, bi, &nb, &nl))) return e;
    *out = nb;
    *outlen = nl;
    return SL_OK;
}

#define SCRATCH_CHUNK (64 * 1024) /* a usual record's rewrite fits one chunk */

static sl_err protect_set(sl_arena *scratch, const sl_ptopic *t, sl_fkeys *k, sl_arena *a,
                          size_t max_inflate, uint8_t **data, size_t *len, bool *rewritten,
                          sl_pcount *cnt, char *why, size_t whylen) {
    *rewritten = false;
    plan p;
    sl_err e = plan_init(&p, t, k, a, false, NULL);
    if (e) return e;
    p.scratch = scratch;
    p.why = why;
    p.whylen = whylen;
    if (p.nparts == 0) return SL_OK;
    pieces ps = {0};
    const uint8_t *d = *data;
    size_t off = 0, n = *len;
    int64_t subjects = 0;
    while (off < n) {
        sl_batch_info bi;
        if (!sl_batch_parse(d + off, n - off, &bi) || bi.magic != 2) return SL_ECORRUPT;
        const uint8_t *b = d + off;
        uint8_t *nb = NULL;
        size_t nl = 0;
        if (!(bi.attributes & ATTR_CONTROL)) {
            bool iter;
            sl_pcount c = {0};
            e = do_batch(&p, b, &bi, max_inflate, &c, &nb, &nl, &iter);
            subjects += c.subjects;
            if (cnt) {
                cnt->records += c.records;
                cnt->changed += c.changed;
                cnt->fields += c.fields;
                cnt->subjects += c.subjects;
            }
            if (e) return e;
        }
        if ((e = nb ? piece_add(a, &ps, nb, nl, true) : piece_add(a, &ps, b, bi.size, false)))
            return e;
        off += bi.size;
    }
    /* The keys the new ciphertexts need must outlive a crash before the batch is acknowledged. */
    if (subjects && (e = sl_fkeys_sync(k))) return e;
    if (!ps.changed) return SL_OK;
    if ((e = pieces_join(a, &ps, data, len))) return e;
    *rewritten = true;
    return SL_OK;
}

sl_err sl_protect_set(const sl_ptopic *t, sl_fkeys *k, sl_arena *a, size_t max_inflate,
                      uint8_t **data, size_t *len, bool *rewritten, sl_pcount *cnt, char *why,
                      size_t whylen) {
    sl_arena *scratch = sl_arena_new(SCRATCH_CHUNK);
    if (!scratch) return SL_ENOMEM;
    sl_err e = protect_set(scratch, t, k, a, max_inflate, data, len, rewritten, cnt, why, whylen);
    sl_arena_free(scratch);
    return e;
}

static sl_err reveal_set(sl_arena *scratch, const sl_ptopic *t, const sl_view *views, sl_fkeys *k,
                         sl_arena *a, size_t max_inflate, uint8_t **data, size_t *len,
                         bool *rewritten, sl_pcount *cnt, sl_prule_count *rc) {
    *rewritten = false;
    plan p;
    sl_err e = plan_init(&p, t, k, a, true, views);
    if (e) return e;
    p.scratch = scratch;
    p.rc = rc;
    if (p.nparts == 0) return SL_OK;
    pieces ps = {0};
    const uint8_t *d = *data;
    size_t off = 0, n = *len;
    sl_err first = SL_OK;
    while (off < n) {
        sl_batch_info bi;
        const uint8_t *b = d + off;
        /* A fetch's last batch may be cut short: it goes out as it is. */
        if (!sl_batch_parse(b, n - off, &bi)) {
            if ((e = piece_add(a, &ps, b, n - off, false))) return e;
            break;
        }
        uint8_t *nb = NULL;
        size_t nl = 0;
        if (bi.magic == 2 && !(bi.attributes & ATTR_CONTROL)) {
            bool iter;
            e = do_batch(&p, b, &bi, max_inflate, cnt, &nb, &nl, &iter);
            if (e && (!iter || e == SL_ENOMEM)) return e;
            if (e) {
                /* A stored batch that does not decompress (or beyond max_inflate) or parse goes
                 * out as stored, reported as SL_ECORRUPT whatever the reason: the fetch goes on
                 * rather than stall the consumer on it. */
                nb = NULL;
                first = SL_ECORRUPT;
            }
        }
        if ((e = nb ? piece_add(a, &ps, nb, nl, true) : piece_add(a, &ps, b, bi.size, false)))
            return e;
        off += bi.size;
    }
    if (ps.changed) {
        if ((e = pieces_join(a, &ps, data, len))) return e;
        *rewritten = true;
    }
    return first;
}

sl_err sl_reveal_set(const sl_ptopic *t, const sl_view *views, sl_fkeys *k, sl_arena *a,
                     size_t max_inflate, uint8_t **data, size_t *len, bool *rewritten,
                     sl_pcount *cnt, sl_prule_count *rc) {
    sl_arena *scratch = sl_arena_new(SCRATCH_CHUNK);
    if (!scratch) return SL_ENOMEM;
    sl_err e = reveal_set(scratch, t, views, k, a, max_inflate, data, len, rewritten, cnt, rc);
    sl_arena_free(scratch);
    return e;
}

sl_err sl_protect_subject_id(sl_fkeys *k, const char *key, uint32_t version, const uint8_t *subject,
                             size_t n, uint8_t id[16]) {
    if (!k) return SL_ENOTFOUND;
    const sl_fc_key *fk;
    sl_err e = sl_fkeys_get(k, key, version, NULL, false, &fk, NULL);
    if (e) return e;
    sl_fc_token_mac(fk, subject, n, id);
    return SL_OK;
}
