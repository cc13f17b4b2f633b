/* Keyring encoding (docs/encryption-at-rest.md, "Keyring format"). All integers big-endian:
 *
 *   magic "SLKEYRNG" | u16 format version (1) | u16 flags (0)
 *   u32 current KEK version
 *   u32 nkeks   { u32 version | u16 idlen | id bytes }
 *   u32 ntopics { topic id[16] | u8 flags (bit 0 shredded)
 *                 u32 ntks   { u32 tk version | u32 KEK version | u16 wlen | wrapped bytes }
 *                 u32 nparts { i32 partition | i64 plain_below } }
 *   u32 CRC-32C of every byte before it
 *
 * The CRC catches a torn or bit-rotted file; it is not what protects the keys: each wrapped topic
 * key is bound by the provider to the context "sluice/tk/v1"|topic id|TK version, so an entry
 * edited or moved to another topic fails to unwrap. */
#include "kms/sl_keyring.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_crc32c.h"
#include "base/sl_file.h"

void sl_keyring_path(const sl_config *cfg, char *out, size_t n) {
    if (cfg->sluice_kms_keyring_file[0])
        snprintf(out, n, "%s", cfg->sluice_kms_keyring_file);
    else
        snprintf(out, n, "%s/sluice-keyring", cfg->log_dirs);
}

size_t sl_keyring_tk_context(uint8_t out[SL_KEYRING_TKCTX_MAX], const uint8_t id[16],
                             uint32_t version) {
    static const char pfx[] = "sluice/tk/v1";
    size_t n = sizeof pfx - 1;
    memcpy(out, pfx, n);
    memcpy(out + n, id, 16);
    out[n + 16] = (uint8_t)(version >> 24);
    out[n + 17] = (uint8_t)(version >> 16);
    out[n + 18] = (uint8_t)(version >> 8);
    out[n + 19] = (uint8_t)version;
    return n + 20;
}

/* The old file is open while its replacement is renamed over it; its blocks are then zeroed
 * through that descriptor, after the new file is durable, so a crash never loses both. */
sl_err sl_keyring_replace_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return SL_EINVAL;
    int old = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    sl_err e = sl_file_write_atomic(dir, name, p, n, 0600);
    if (old < 0) return e;
    struct stat st;
    if (!e && fstat(old, &st) == 0 && S_ISREG(st.st_mode)) {
        static const uint8_t zero[4096];
        for (off_t off = 0; off < st.st_size;) {
            size_t k =
                (size_t)(st.st_size - off) < sizeof zero ? (size_t)(st.st_size - off) : sizeof zero;
            ssize_t w = pwrite(old, zero, k, off);
            if (w <= 0) break;
            off += w;
        }
        (void)fdatasync(old);
    }
    close(old);
    return e;
}

void sl_keyring_free(sl_keyring *kr) {
    for (int i = 0; i < kr->ntopics; i++) {
        sl_kr_topic *t = &kr->topics[i];
        /* Wrapped keys are not secret, but nothing of a keyring lingers in freed heap. */
        if (t->tks) memset(t->tks, 0, sizeof *t->tks * (size_t)t->ntks);
        free(t->tks);
        free(t->parts);
    }
    free(kr->topics);
    free(kr->keks);
    memset(kr, 0, sizeof *kr);
}

/* ---- encoding ---- */

typedef struct wr {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} wr;

static void put(wr *w, const void *s, size_t n) {
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t c = w->cap ? w->cap * 2 : 1024;
        while (c < w->len + n) c *= 2;
        uint8_t *q = realloc(w->p, c);
        if (!q) {
            w->oom = true;
            return;
        }
        w->p = q;
        w->cap = c;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}
static void put_u16(wr *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}
static void put_u32(wr *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}
static void put_u64(wr *w, uint64_t v) {
    put_u32(w, (uint32_t)(v >> 32));
    put_u32(w, (uint32_t)v);
}

sl_err sl_keyring_encode(const sl_keyring *kr, uint8_t **out, size_t *outlen) {
    wr w = {0};
    put(&w, SL_KEYRING_MAGIC, 8);
    put_u16(&w, SL_KEYRING_VERSION);
    put_u16(&w, 0);
    put_u32(&w, kr->current);
    put_u32(&w, (uint32_t)kr->nkeks);
    for (int i = 0; i < kr->nkeks; i++) {
        size_t idl = strnlen(kr->keks[i].ref.id, sizeof kr->keks[i].ref.id);
        put_u32(&w, kr->keks[i].ref.version);
        put_u16(&w, (uint16_t)idl);
        put(&w, kr->keks[i].ref.id, idl);
    }
    put_u32(&w, (uint32_t)kr->ntopics);
    for (int i = 0; i < kr->ntopics; i++) {
        const sl_kr_topic *t = &kr->topics[i];
        put(&w, t->id, 16);
        uint8_t fl = t->shredded ? 1 : 0;
        put(&w, &fl, 1);
        put_u32(&w, (uint32_t)t->ntks);
        for (int j = 0; j < t->ntks; j++) {
            put_u32(&w, t->tks[j].version);
            put_u32(&w, t->tks[j].kek_version);
            put_u16(&w, t->tks[j].wlen);
            put(&w, t->tks[j].wrapped, t->tks[j].wlen);
        }
        put_u32(&w, (uint32_t)t->nparts);
        for (int j = 0; j < t->nparts; j++) {
            put_u32(&w, (uint32_t)t->parts[j].partition);
            put_u64(&w, (uint64_t)t->parts[j].plain_below);
        }
    }
    if (!w.oom) put_u32(&w, sl_crc32c(0, w.p, w.len));
    if (w.oom) {
        free(w.p);
        return SL_ENOMEM;
    }
    *out = w.p;
    *outlen = w.len;
    return SL_OK;
}

/* ---- decoding: a bounded reader with a sticky error ---- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static bool need(rd *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}
static uint32_t get_u32(rd *r) {
    if (!need(r, 4)) return 0;
    uint32_t v =
        (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    return v;
}
static uint16_t get_u16(rd *r) {
    if (!need(r, 2)) return 0;
    uint16_t v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    return v;
}
static uint64_t get_u64(rd *r) {
    uint64_t hi = get_u32(r);
    return hi << 32 | get_u32(r);
}
static void get(rd *r, void *out, size_t n) {
    if (!need(r, n)) {
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
}
/* A count is believed only if that many minimal elements could fit in what is left. */
static uint32_t get_count(rd *r, size_t min_elem) {
    uint32_t n = get_u32(r);
    if (!r->bad && n > (size_t)(r->end - r->p) / min_elem) r->bad = true;
    return r->bad ? 0 : n;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        sl_keyring_free(kr);                                                                       \
        return SL_ECORRUPT;                                                                        \
    } while (0)

sl_err sl_keyring_decode(const uint8_t *p, size_t n, sl_keyring *kr, char *why, size_t whylen) {
    memset(kr, 0, sizeof *kr);
    if (n < 8 + 4 + 4 + 4 + 4 + 4 || memcmp(p, SL_KEYRING_MAGIC, 8)) FAIL("not a keyring");
    uint32_t crc =
        (uint32_t)p[n - 4] << 24 | (uint32_t)p[n - 3] << 16 | (uint32_t)p[n - 2] << 8 | p[n - 1];
    if (sl_crc32c(0, p, n - 4) != crc) FAIL("checksum mismatch (torn or edited)");
    rd r = {p + 8, p + n - 4, false};
    uint16_t ver = get_u16(&r), flags = get_u16(&r);
    if (ver != SL_KEYRING_VERSION) FAIL("unsupported keyring format version %u", ver);
    if (flags) FAIL("unknown keyring flags %#x", flags);
    kr->current = get_u32(&r);
    uint32_t nk = get_count(&r, 6);
    if (r.bad) FAIL("truncated KEK list");
    kr->keks = nk ? calloc(nk, sizeof *kr->keks) : NULL;
    if (nk && !kr->keks) FAIL("out of memory");
    for (uint32_t i = 0; i < nk && !r.bad; i++) {
        sl_kr_kek *k = &kr->keks[i];
        k->ref.version = get_u32(&r);
        uint16_t idl = get_u16(&r);
        if (idl >= sizeof k->ref.id) FAIL("KEK id too long");
        get(&r, k->ref.id, idl);
        if (k->ref.version == 0 || !k->ref.id[0] || memchr(k->ref.id, 0, idl))
            FAIL("bad KEK entry %u", i);
        for (uint32_t j = 0; j < i; j++)
            if (kr->keks[j].ref.version == k->ref.version)
                FAIL("KEK version %u twice", k->ref.version);
        kr->nkeks++;
    }
    if (!r.bad && kr->current && !sl_keyring_kek(kr, kr->current))
        FAIL("current KEK version %u not in the list", kr->current);
    uint32_t nt = get_count(&r, 16 + 1 + 4 + 4);
    if (r.bad) FAIL("truncated topic list");
    kr->topics = nt ? calloc(nt, sizeof *kr->topics) : NULL;
    if (nt && !kr->topics) FAIL("out of memory");
    for (uint32_t i = 0; i < nt && !r.bad; i++) {
        sl_kr_topic *t = &kr->topics[i];
        kr->ntopics++;
        get(&r, t->id, 16);
        uint8_t fl = 0;
        get(&r, &fl, 1);
        if (fl & ~1u) FAIL("unknown topic flags");
        t->shredded = fl & 1;
        for (uint32_t j = 0; j < i; j++)
            if (!memcmp(kr->topics[j].id, t->id, 16)) FAIL("topic listed twice");
        uint32_t ntk = get_count(&r, 10);
        if (r.bad) break;
        t->tks = ntk ? calloc(ntk, sizeof *t->tks) : NULL;
        if (ntk && !t->tks) FAIL("out of memory");
        for (uint32_t j = 0; j < ntk && !r.bad; j++) {
            sl_kr_tk *k = &t->tks[j];
            k->version = get_u32(&r);
            k->kek_version = get_u32(&r);
            k->wlen = get_u16(&r);
            if (k->wlen == 0 || k->wlen > SL_KMS_WRAPPED_MAX) FAIL("bad wrapped key length");
            get(&r, k->wrapped, k->wlen);
            if (r.bad) break;
            if (k->version == 0 || (j > 0 && k->version <= t->tks[j - 1].version))
                FAIL("topic key versions out of order");
            if (!sl_keyring_kek(kr, k->kek_version))
                FAIL("topic key wrapped by unknown KEK version %u", k->kek_version);
            t->ntks++;
        }
        if (t->shredded && t->ntks) FAIL("shredded topic still has keys");
        uint32_t np = get_count(&r, 12);
        if (r.bad) break;
        t->parts = np ? calloc(np, sizeof *t->parts) : NULL;
        if (np && !t->parts) FAIL("out of memory");
        for (uint32_t j = 0; j < np && !r.bad; j++) {
            t->parts[j].partition = (int32_t)get_u32(&r);
            t->parts[j].plain_below = (int64_t)get_u64(&r);
            if (!r.bad && (t->parts[j].partition < 0 || t->parts[j].plain_below < 0))
                FAIL("bad partition mark");
            t->nparts++;
        }
    }
    if (r.bad) FAIL("truncated");
    if (r.p != r.end) FAIL("trailing bytes");
    return SL_OK;
}

/* ---- lookups ---- */

sl_kr_topic *sl_keyring_topic(sl_keyring *kr, const uint8_t id[16]) {
    for (int i = 0; i < kr->ntopics; i++)
        if (!memcmp(kr->topics[i].id, id, 16)) return &kr->topics[i];
    return NULL;
}

sl_kr_topic *sl_keyring_topic_add(sl_keyring *kr, const uint8_t id[16]) {
    sl_kr_topic *t = sl_keyring_topic(kr, id);
    if (t) return t;
    sl_kr_topic *nt = realloc(kr->topics, sizeof *nt * (size_t)(kr->ntopics + 1));
    if (!nt) return NULL;
    kr->topics = nt;
    t = &nt[kr->ntopics++];
    memset(t, 0, sizeof *t);
    memcpy(t->id, id, 16);
    return t;
}

sl_kr_tk *sl_keyring_tk(sl_kr_topic *t, uint32_t version) {
    for (int i = 0; t && i < t->ntks; i++)
        if (t->tks[i].version == version) return &t->tks[i];
    return NULL;
}

sl_kr_tk *sl_keyring_tk_add(sl_kr_topic *t) {
    sl_kr_tk *n = realloc(t->tks, sizeof *n * (size_t)(t->ntks + 1));
    if (!n) return NULL;
    t->tks = n;
    sl_kr_tk *k = &n[t->ntks];
    memset(k, 0, sizeof *k);
    k->version = t->ntks ? n[t->ntks - 1].version + 1 : 1;
    t->ntks++;
    return k;
}

sl_kr_kek *sl_keyring_kek(sl_keyring *kr, uint32_t version) {
    for (int i = 0; i < kr->nkeks; i++)
        if (kr->keks[i].ref.version == version) return &kr->keks[i];
    return NULL;
}

sl_kr_kek *sl_keyring_kek_add(sl_keyring *kr, const sl_kms_keyref *ref) {
    sl_kr_kek *k = sl_keyring_kek(kr, ref->version);
    if (k) {
        k->ref = *ref;
        return k;
    }
    sl_kr_kek *n = realloc(kr->keks, sizeof *n * (size_t)(kr->nkeks + 1));
    if (!n) return NULL;
    kr->keks = n;
    k = &n[kr->nkeks++];
    memset(k, 0, sizeof *k);
    k->ref = *ref;
    return k;
}

void sl_keyring_kek_remove(sl_keyring *kr, uint32_t version) {
    for (int i = 0; i < kr->nkeks; i++)
        if (kr->keks[i].ref.version == version) {
            memmove(&kr->keks[i], &kr->keks[i + 1], sizeof *kr->keks * (size_t)(kr->nkeks - i - 1));
            kr->nkeks--;
            return;
        }
}

sl_kr_part *sl_keyring_part(sl_kr_topic *t, int32_t partition, bool add) {
    for (int i = 0; i < t->nparts; i++)
        if (t->parts[i].partition == partition) return &t->parts[i];
    if (!add) return NULL;
    sl_kr_part *n = realloc(t->parts, sizeof *n * (size_t)(t->nparts + 1));
    if (!n) return NULL;
    t->parts = n;
    sl_kr_part *p = &n[t->nparts++];
    p->partition = partition;
    p->plain_below = 0;
    return p;
}

/* ---- three-way merge (several processes sharing one keyring file) ---- */

static bool tk_eq(const sl_kr_tk *a, const sl_kr_tk *b) {
    return a->version == b->version && a->kek_version == b->kek_version && a->wlen == b->wlen &&
           !memcmp(a->wrapped, b->wrapped, a->wlen);
}

/* Inserts a copy of *k keeping versions ascending (NULL when out of memory). */
static sl_kr_tk *tk_insert(sl_kr_topic *t, const sl_kr_tk *k) {
    sl_kr_tk *n = realloc(t->tks, sizeof *n * (size_t)(t->ntks + 1));
    if (!n) return NULL;
    t->tks = n;
    int i = t->ntks;
    while (i > 0 && n[i - 1].version > k->version) i--;
    memmove(&n[i + 1], &n[i], sizeof *n * (size_t)(t->ntks - i));
    n[i] = *k;
    t->ntks++;
    return &n[i];
}

sl_err sl_keyring_merge(const sl_keyring *mem_, const sl_keyring *base_, const sl_keyring *file_,
                        sl_keyring *out, int *conflicts) {
    /* The lookups take non-const pointers; nothing here writes through them. */
    sl_keyring *mem = (sl_keyring *)mem_, *base = (sl_keyring *)base_, *file = (sl_keyring *)file_;
    memset(out, 0, sizeof *out);
    if (conflicts) *conflicts = 0;
    out->current = mem->current != base->current ? mem->current : file->current;
    for (int i = 0; i < file->nkeks; i++) {
        uint32_t v = file->keks[i].ref.version;
        if (sl_keyring_kek(base, v) && !sl_keyring_kek(mem, v)) continue; /* retired here */
        sl_kr_kek *mk = sl_keyring_kek(mem, v);
        sl_kr_kek *k = sl_keyring_kek_add(out, &file->keks[i].ref);
        if (!k) goto oom;
        if (mk && !strcmp(mk->ref.id, k->ref.id))
            memcpy(k->describe, mk->describe, sizeof k->describe);
    }
    for (int i = 0; i < mem->nkeks; i++) {
        uint32_t v = mem->keks[i].ref.version;
        if (sl_keyring_kek(base, v) || sl_keyring_kek(out, v)) continue;
        sl_kr_kek *k = sl_keyring_kek_add(out, &mem->keks[i].ref); /* added here */
        if (!k) goto oom;
        memcpy(k->describe, mem->keks[i].describe, sizeof k->describe);
    }
    for (int pass = 0; pass < 2; pass++) {
        sl_keyring *src = pass ? mem : file;
        for (int i = 0; i < src->ntopics; i++) {
            const uint8_t *id = src->topics[i].id;
            if (sl_keyring_topic(out, id)) continue;
            sl_kr_topic *tf = sl_keyring_topic(file, id), *tb = sl_keyring_topic(base, id),
                        *tm = sl_keyring_topic(mem, id);
            sl_kr_topic *t = sl_keyring_topic_add(out, id);
            if (!t) goto oom;
            t->shred_pending = tm && tm->shred_pending;
            t->shredded = (tf && tf->shredded) || (tm && tm->shredded && !(tb && tb->shredded));
            for (int j = 0; !t->shredded && tf && j < tf->ntks; j++) {
                uint32_t v = tf->tks[j].version;
                if (sl_keyring_tk(tb, v) && !sl_keyring_tk(tm, v)) continue;
                if (!tk_insert(t, &tf->tks[j])) goto oom;
            }
            for (int j = 0; !t->shredded && tm && j < tm->ntks; j++) {
                const sl_kr_tk *mk = &tm->tks[j];
                sl_kr_tk *bk = sl_keyring_tk(tb, mk->version), *ok = sl_keyring_tk(t, mk->version);
                if (ok) {
                    /* Made here and by another process under one version: the file's stays (other
                     * processes may already use it); a rewrap here (same version, base had it)
                     * wins over a file unchanged since. */
                    if (!tk_eq(ok, mk)) {
                        sl_kr_tk *fk = sl_keyring_tk(tf, mk->version);
                        if (bk && fk && tk_eq(bk, fk))
                            *ok = *mk;
                        else if (!bk && conflicts)
                            (*conflicts)++;
                    }
                    continue;
                }
                if (bk) continue; /* removed by another process (the file is authoritative) */
                if (!tk_insert(t, mk)) goto oom;
            }
            for (int j = 0; tf && j < tf->nparts; j++) {
                sl_kr_part *p = sl_keyring_part(t, tf->parts[j].partition, true);
                if (!p) goto oom;
                p->plain_below = tf->parts[j].plain_below;
            }
            for (int j = 0; tm && j < tm->nparts; j++) {
                if (sl_keyring_part(t, tm->parts[j].partition, false)) continue;
                sl_kr_part *p = sl_keyring_part(t, tm->parts[j].partition, true);
                if (!p) goto oom;
                p->plain_below = tm->parts[j].plain_below;
            }
        }
    }
    /* Every topic key keeps the KEK version wrapping it, and the current one exists. */
    for (int i = 0; i < out->ntopics; i++)
        for (int j = 0; j < out->topics[i].ntks; j++) {
            uint32_t kv = out->topics[i].tks[j].kek_version;
            if (sl_keyring_kek(out, kv)) continue;
            sl_kr_kek *src = sl_keyring_kek(file, kv);
            if (!src) src = sl_keyring_kek(mem, kv);
            if (!src) src = sl_keyring_kek(base, kv);
            if (src && !sl_keyring_kek_add(out, &src->ref)) goto oom;
        }
    if (out->current && !sl_keyring_kek(out, out->current)) {
        out->current = 0;
        for (int i = 0; i < out->nkeks; i++)
            if (out->keks[i].ref.version > out->current) out->current = out->keks[i].ref.version;
    }
    return SL_OK;
oom:
    sl_keyring_free(out);
    return SL_ENOMEM;
}
