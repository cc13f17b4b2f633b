/* Field keys and data-subject keys (protect/sl_fkeys.h).
 *
 * Field keys live in the key service's keyring: broker mode asks the running service (loop
 * thread), direct mode an sl_keyreader. Every lookup asks which versions exist before the cache
 * answers, so a shredded field key stops working at once even for contexts already made.
 *
 * The subject store is one file appended by several processes under flock(LOCK_EX). Each handle
 * keeps the records it has read (file order, plus an open-addressing index by id) and the offset
 * it has read up to; a miss rereads what was appended since. A forget replaces the file (rename)
 * and zeroes the old one: a handle notices the replacement (the path names another inode than
 * its descriptor) on its next miss, append, forget or tick, reloads, and drops the subject
 * contexts it had cached, so a subject forgotten elsewhere stays usable here at most until the
 * next tick. Writers check the same after taking the lock, so nobody appends to a replaced file.
 */
#include "protect/sl_fkeys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "kms/sl_keyring.h"
#include "kms/sl_keysvc.h"
#include "protect/sl_fkeys_store.h"

#define MAGIC_LEN   8
#define STORE_MAX   ((size_t)1 << 30) /* 16M subjects; a larger file is not a store */
#define MAX_VERS    4096
#define SUBJ_CTX    "sluice/subject/v1"
#define SUBJ_CTXLEN (sizeof SUBJ_CTX - 1)

/* ---- ids ---- */

void sl_fkeys_id(const char *name, uint8_t id[16]) {
    static const char pfx[] = "sluice/field-key/v1"; /* hashed with its NUL */
    uint8_t md[32];
    unsigned int ml = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(c, pfx, sizeof pfx) &&
              EVP_DigestUpdate(c, name, name ? strlen(name) : 0) &&
              EVP_DigestFinal_ex(c, md, &ml) && ml == 32;
    EVP_MD_CTX_free(c);
    if (!ok) abort(); /* SHA-256 missing from OpenSSL: nothing can work */
    memcpy(id, md, 16);
    id[0] = 0xFF;
}

bool sl_fkeys_is_field_id(const uint8_t id[16]) { return id[0] == 0xFF; }

/* ---- record codec ---- */

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void sl_fkeys_rec_encode(const sl_fkeys_rec *r, uint8_t out[SL_FKEYS_REC]) {
    memcpy(out, r->id, 16);
    put32(out + 16, r->version);
    memcpy(out + 20, r->wrapped, SL_KWP_WRAPPED_32);
    put32(out + 60, sl_crc32c(0, out, 60));
}

sl_err sl_fkeys_store_decode(const uint8_t *p, size_t n, sl_fkeys_rec_fn each, void *ctx,
                             size_t *used, int *bad) {
    *used = 0;
    *bad = 0;
    int pending_bad = 0; /* bad records since the last good one: torn tail unless one follows */
    for (size_t off = 0; n - off >= SL_FKEYS_REC; off += SL_FKEYS_REC) {
        const uint8_t *q = p + off;
        sl_fkeys_rec r;
        memcpy(r.id, q, 16);
        r.version = get32(q + 16);
        memcpy(r.wrapped, q + 20, SL_KWP_WRAPPED_32);
        if (get32(q + 60) != sl_crc32c(0, q, 60) || r.version == 0) {
            pending_bad++;
            continue;
        }
        *bad += pending_bad;
        pending_bad = 0;
        sl_err e = each(ctx, &r);
        OPENSSL_cleanse(&r, sizeof r);
        if (e) return e;
        *used = off + SL_FKEYS_REC;
    }
    return SL_OK;
}

/* ---- the handle ---- */

typedef struct fentry {
    struct fentry *next;
    uint32_t h;
    char name[SL_FC_KEYNAME_MAX + 1];
    uint32_t version;
    bool has_subj;
    uint8_t subj[16];
    sl_fc_key *key;
    int64_t used_ms;
} fentry;

struct sl_fkeys {
    bool direct;
    struct sl_keysvc *ks; /* broker (NULL: encryption at rest off) */
    sl_keyreader *kr;     /* direct */
    uint8_t subj_kid[16]; /* sl_fkeys_id("_subjects") */

    char path[PATH_MAX], dir[PATH_MAX], fname[PATH_MAX];
    int fd;          /* the store (-1: not opened, or none yet in direct mode) */
    size_t read_off; /* bytes consumed: 0 (no magic yet), else 8 + whole records */
    int bad;         /* corrupt records skipped (logged once per reload) */
    bool dirty;      /* appended since the last sl_fkeys_sync */
    sl_fkeys_rec *recs;
    size_t nrecs, caprecs;
    int32_t *tab; /* index into recs, -1 empty; tabcap a power of two, >= 2 * nrecs */
    size_t tabcap;

    fentry **b; /* key contexts; nb a power of two */
    size_t nb, n;
};

/* ---- subject index ---- */

static size_t id_slot(const uint8_t id[16], size_t cap) {
    /* Subject ids are MACs under a secret key: uniform, and not chosen by anyone. */
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int32_t rec_find(const sl_fkeys *k, const uint8_t id[16]) {
    if (!k->tabcap) return -1;
    for (size_t i = id_slot(id, k->tabcap);; i = (i + 1) & (k->tabcap - 1)) {
        int32_t x = k->tab[i];
        if (x < 0) return -1;
        if (!memcmp(k->recs[x].id, id, 16)) return x;
    }
}

static sl_err tab_rebuild(sl_fkeys *k, size_t cap) {
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return SL_ENOMEM;
    for (size_t i = 0; i < cap; i++) t[i] = -1;
    for (size_t r = 0; r < k->nrecs; r++) {
        size_t i = id_slot(k->recs[r].id, cap);
        while (t[i] >= 0) i = (i + 1) & (cap - 1);
        t[i] = (int32_t)r;
    }
    free(k->tab);
    k->tab = t;
    k->tabcap = cap;
    return SL_OK;
}

/* Adds a record read or written (the first record of an id wins: every reader agrees). */
static sl_err rec_add(void *ctx, const sl_fkeys_rec *r) {
    sl_fkeys *k = ctx;
    if (rec_find(k, r->id) >= 0) return SL_OK;
    if (k->nrecs >= (size_t)INT32_MAX / 2) return SL_ETOOLARGE;
    if (k->nrecs == k->caprecs) {
        size_t nc = k->caprecs ? k->caprecs * 2 : 64;
        sl_fkeys_rec *nr = malloc(nc * sizeof *nr);
        if (!nr) return SL_ENOMEM;
        if (k->nrecs) memcpy(nr, k->recs, k->nrecs * sizeof *nr);
        if (k->recs) OPENSSL_cleanse(k->recs, k->caprecs * sizeof *k->recs);
        free(k->recs);
        k->recs = nr;
        k->caprecs = nc;
    }
    if ((k->nrecs + 1) * 2 > k->tabcap) {
        sl_err e = tab_rebuild(k, k->tabcap ? k->tabcap * 2 : 128);
        if (e) return e;
    }
    k->recs[k->nrecs] = *r;
    size_t i = id_slot(r->id, k->tabcap);
    while (k->tab[i] >= 0) i = (i + 1) & (k->tabcap - 1);
    k->tab[i] = (int32_t)k->nrecs++;
    return SL_OK;
}

static void recs_clear(sl_fkeys *k) {
    if (k->recs) OPENSSL_cleanse(k->recs, k->caprecs * sizeof *k->recs);
    free(k->recs);
    free(k->tab);
    k->recs = NULL;
    k->tab = NULL;
    k->nrecs = k->caprecs = k->tabcap = 0;
    k->read_off = 0;
    k->bad = 0;
}

/* ---- key-context cache ---- */

static uint32_t fe_hash(const char *name, uint32_t version, const uint8_t *subj) {
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    for (int i = 0; i < 4; i++) h = (h ^ (uint8_t)(version >> (8 * i))) * 16777619u;
    for (int i = 0; subj && i < 16; i++) h = (h ^ subj[i]) * 16777619u;
    return h;
}

static fentry *fe_find(sl_fkeys *k, const char *name, uint32_t version, const uint8_t *subj) {
    if (!k->nb) return NULL;
    uint32_t h = fe_hash(name, version, subj);
    for (fentry *e = k->b[h & (k->nb - 1)]; e; e = e->next)
        if (e->h == h && e->version == version && e->has_subj == (subj != NULL) &&
            (!subj || !memcmp(e->subj, subj, 16)) && !strcmp(e->name, name))
            return e;
    return NULL;
}

static void fe_free(fentry *e) {
    sl_fc_key_free(e->key);
    OPENSSL_cleanse(e, sizeof *e);
    free(e);
}

static void fe_insert(sl_fkeys *k, fentry *e) {
    if (k->n + 1 > k->nb * 2) { /* grow; on failure chains just get longer */
        size_t nb = k->nb ? k->nb * 2 : 256;
        fentry **b = calloc(nb, sizeof *b);
        if (b) {
            for (size_t i = 0; i < k->nb; i++)
                for (fentry *x = k->b[i], *nx; x; x = nx) {
                    nx = x->next;
                    x->next = b[x->h & (nb - 1)];
                    b[x->h & (nb - 1)] = x;
                }
            free(k->b);
            k->b = b;
            k->nb = nb;
        }
    }
    e->next = k->b[e->h & (k->nb - 1)];
    k->b[e->h & (k->nb - 1)] = e;
    k->n++;
}

typedef enum { DROP_ALL, DROP_OLD, DROP_SUBJECT, DROP_ANY_SUBJECT } drop_kind;

static void fe_sweep(sl_fkeys *k, drop_kind how, int64_t cut, const uint8_t *subj) {
    for (size_t i = 0; i < k->nb; i++) {
        fentry **pp = &k->b[i];
        while (*pp) {
            fentry *e = *pp;
            bool drop = how == DROP_ALL || (how == DROP_OLD && e->used_ms < cut) ||
                        (how == DROP_ANY_SUBJECT && e->has_subj) ||
                        (how == DROP_SUBJECT && e->has_subj && !memcmp(e->subj, subj, 16));
            if (drop) {
                *pp = e->next;
                fe_free(e);
                k->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* ---- field keys ---- */

static int key_versions(sl_fkeys *k, const uint8_t id[16], uint32_t *vs, int cap) {
    if (k->direct) return sl_keyreader_versions(k->kr, id, vs, cap);
    return k->ks ? sl_keysvc_key_versions(k->ks, id, vs, cap) : 0;
}

/* The raw 32 bytes of a field key version (the caller cleanses them). */
static sl_err raw_key(sl_fkeys *k, const uint8_t id[16], uint32_t version, uint8_t out[32],
                      uint32_t *outv) {
    if (k->direct) {
        char err[256] = "";
        sl_err e = sl_keyreader_get(k->kr, id, version, out, outv, err, sizeof err);
        if (e && e != SL_ENOTFOUND && e != SL_EKEY_DESTROYED)
            SL_WARN("protect", "field key not available", "err=%s detail=\"%s\"", sl_strerror(e),
                    err);
        return e;
    }
    return k->ks ? sl_keysvc_key_get(k->ks, id, version, out, outv) : SL_ENOTFOUND;
}

/* Resolves `*v` (0: the current version) and checks it still exists: SL_ENOTFOUND,
 * SL_EKEY_DESTROYED (shredded since a context was cached), SL_EKMS_* in direct mode. */
static sl_err key_alive(sl_fkeys *k, const uint8_t id[16], uint32_t *v) {
    uint32_t vs[MAX_VERS];
    int n = key_versions(k, id, vs, MAX_VERS);
    if (n <= 0) {
        /* None: ask for the key itself, for the precise reason (shredded or unknown). */
        uint8_t tmp[32];
        sl_err e = raw_key(k, id, *v, tmp, NULL);
        OPENSSL_cleanse(tmp, sizeof tmp);
        return e ? e : SL_ENOTFOUND;
    }
    if (!*v) {
        *v = vs[n - 1];
        return SL_OK;
    }
    for (int i = 0; i < n; i++)
        if (vs[i] == *v) return SL_OK;
    return n == MAX_VERS ? SL_OK : SL_ENOTFOUND; /* beyond the list: raw_key decides */
}

bool sl_fkeys_exists(sl_fkeys *k, const char *name) {
    if (!k || !name || !sl_fc_keyname_ok(name, strlen(name))) return false;
    uint8_t id[16];
    uint32_t v[1];
    sl_fkeys_id(name, id);
    return key_versions(k, id, v, 1) > 0;
}

int sl_fkeys_versions(sl_fkeys *k, const char *name, uint32_t *versions, int cap) {
    if (!k || !name || !sl_fc_keyname_ok(name, strlen(name)) || cap <= 0) return 0;
    uint8_t id[16];
    sl_fkeys_id(name, id);
    return key_versions(k, id, versions, cap);
}

/* ---- the store file ---- */

static sl_err load_tail(sl_fkeys *k);

/* Opens the store (creating an empty file with `create`) and reads it. SL_ENOTFOUND: none. */
static sl_err store_open(sl_fkeys *k, bool create) {
    if (k->fd >= 0) return SL_OK;
    if (create) {
        sl_err e = sl_mkdir_parent(k->path, 0700);
        if (e) return e;
    }
    int fd = open(k->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return SL_ECORRUPT;
    }
    recs_clear(k);
    k->fd = fd;
    sl_err e = load_tail(k);
    if (e) {
        close(k->fd);
        k->fd = -1;
        recs_clear(k);
    }
    return e;
}

static void store_close(sl_fkeys *k) {
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    recs_clear(k);
}

/* Reads what was appended since read_off (records only: the magic first when not read yet). */
static sl_err load_tail(sl_fkeys *k) {
    struct stat st;
    if (fstat(k->fd, &st) != 0) return SL_EIO;
    size_t size = (size_t)st.st_size;
    if (size > STORE_MAX + MAGIC_LEN) return SL_ETOOLARGE;
    if (!k->read_off) {
        uint8_t m[MAGIC_LEN];
        size_t want = size < MAGIC_LEN ? size : MAGIC_LEN;
        if (want && pread(k->fd, m, want, 0) != (ssize_t)want) return SL_EIO;
        /* Shorter than the magic: a creation not finished (or torn); the next append writes it. */
        if (memcmp(m, SL_FKEYS_MAGIC, want)) {
            SL_ERROR("protect", "subject store has a bad header", "file=%s", k->path);
            return SL_ECORRUPT;
        }
        if (want < MAGIC_LEN) return SL_OK;
        k->read_off = MAGIC_LEN;
    }
    if (size <= k->read_off) return SL_OK;
    size_t n = size - k->read_off, got = 0;
    uint8_t *b = malloc(n);
    if (!b) return SL_ENOMEM;
    while (got < n) {
        ssize_t r = pread(k->fd, b + got, n - got, (off_t)(k->read_off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* shrunk meanwhile (a torn tail cut): read what is there */
        got += (size_t)r;
    }
    size_t used = 0;
    int bad = 0;
    sl_err e = sl_fkeys_store_decode(b, got, rec_add, k, &used, &bad);
    OPENSSL_cleanse(b, got);
    free(b);
    if (bad) {
        SL_ERROR("protect", "subject store: corrupt records skipped (those subjects are lost)",
                 "file=%s records=%d", k->path, bad);
        k->bad += bad;
    }
    k->read_off += used;
    return e;
}

/* True when the path no longer names the file k->fd has open (a forget replaced it). */
static bool store_replaced(const sl_fkeys *k) {
    struct stat a, b;
    if (fstat(k->fd, &a) != 0) return true;
    if (stat(k->path, &b) != 0) return true;
    return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/* Follows a replacement of the store: reload, and forget every subject context (the subject
 * may be the one forgotten). */
static sl_err store_follow(sl_fkeys *k) {
    if (k->fd < 0 || !store_replaced(k)) return SL_OK;
    store_close(k);
    fe_sweep(k, DROP_ANY_SUBJECT, 0, NULL);
    sl_err e = store_open(k, false);
    return e == SL_ENOTFOUND ? SL_OK : e;
}

/* Takes the store's lock (creating the store with `create`), on the file the path names now,
 * and reads what was appended before it. Holds the lock only on success. */
static sl_err store_lock(sl_fkeys *k, bool create) {
    for (int tries = 0; tries < 100; tries++) {
        sl_err e = store_open(k, create);
        if (e) return e;
        while (flock(k->fd, LOCK_EX) != 0)
            if (errno != EINTR) return SL_EIO;
        if (!store_replaced(k)) {
            e = load_tail(k);
            if (e) flock(k->fd, LOCK_UN);
            return e;
        }
        flock(k->fd, LOCK_UN);
        store_close(k);
        fe_sweep(k, DROP_ANY_SUBJECT, 0, NULL);
    }
    return SL_EIO;
}

static void store_unlock(sl_fkeys *k) {
    if (k->fd >= 0) flock(k->fd, LOCK_UN);
}

/* With the lock: writes the magic of a store not initialized yet (first creation: the file,
 * then its directory, made durable). */
static sl_err store_init_locked(sl_fkeys *k) {
    if (k->read_off) return SL_OK;
    if (ftruncate(k->fd, 0) != 0 || pwrite(k->fd, SL_FKEYS_MAGIC, MAGIC_LEN, 0) != MAGIC_LEN ||
        fsync(k->fd) != 0)
        return errno == ENOSPC ? SL_ENOSPC : SL_EIO;
    sl_err e = sl_fsync_dir(k->dir);
    if (e) return e;
    k->read_off = MAGIC_LEN;
    return SL_OK;
}

/* With the lock: appends one record after the last good one (a torn tail is cut first). */
static sl_err store_append_locked(sl_fkeys *k, const sl_fkeys_rec *r) {
    sl_err e = store_init_locked(k);
    if (e) return e;
    struct stat st;
    if (fstat(k->fd, &st) != 0) return SL_EIO;
    if ((size_t)st.st_size > k->read_off && ftruncate(k->fd, (off_t)k->read_off) != 0)
        return SL_EIO;
    uint8_t b[SL_FKEYS_REC];
    sl_fkeys_rec_encode(r, b);
    ssize_t w = pwrite(k->fd, b, sizeof b, (off_t)k->read_off);
    OPENSSL_cleanse(b, sizeof b);
    if (w != (ssize_t)sizeof b) {
        e = w < 0 && errno == ENOSPC ? SL_ENOSPC : SL_EIO;
        if (ftruncate(k->fd, (off_t)k->read_off) != 0) { /* cut again on the next append */
        }
        return e;
    }
    e = rec_add(k, r);
    if (e) return e;
    k->read_off += SL_FKEYS_REC;
    k->dirty = true;
    return SL_OK;
}

/* ---- subject keys ---- */

static size_t subj_ctx(uint8_t out[SUBJ_CTXLEN + 16], const uint8_t id[16]) {
    memcpy(out, SUBJ_CTX, SUBJ_CTXLEN);
    memcpy(out + SUBJ_CTXLEN, id, 16);
    return SUBJ_CTXLEN + 16;
}

static sl_err subject_unwrap(sl_fkeys *k, const sl_fkeys_rec *r, uint8_t s[32]) {
    uint8_t ks[32], ctx[SUBJ_CTXLEN + 16];
    sl_err e = raw_key(k, k->subj_kid, r->version, ks, NULL);
    if (e) return e;
    size_t ol = 0;
    e = sl_kwp_unwrap(ks, ctx, subj_ctx(ctx, r->id), r->wrapped, SL_KWP_WRAPPED_32, s, 32, &ol);
    OPENSSL_cleanse(ks, sizeof ks);
    if (e == SL_EINVAL || (!e && ol != 32)) e = SL_ETAMPER;
    if (e) OPENSSL_cleanse(s, 32);
    return e;
}

/* Subject `id`'s key into s[32]: from the records read, else after rereading the store, else
 * (with `create`) a new one appended. */
static sl_err subject_key(sl_fkeys *k, const uint8_t id[16], bool create, uint8_t s[32]) {
    int32_t i = rec_find(k, id);
    if (i < 0) {
        sl_err e = k->fd >= 0 ? store_follow(k) : store_open(k, false);
        if (!e && k->fd >= 0) e = load_tail(k);
        if (e && e != SL_ENOTFOUND) return e;
        i = rec_find(k, id);
    }
    if (i >= 0) {
        sl_fkeys_rec r = k->recs[i];
        sl_err e = subject_unwrap(k, &r, s);
        OPENSSL_cleanse(&r, sizeof r);
        return e;
    }
    if (!create) return SL_ENOTFOUND;
    /* A new subject: wrapped under the current "_subjects" version, made before the lock is
     * taken (the key service may answer "being loaded"), appended unless another process
     * created the same subject meanwhile (then theirs is the key). */
    uint8_t ks[32], ctx[SUBJ_CTXLEN + 16];
    sl_fkeys_rec r = {0};
    memcpy(r.id, id, 16);
    sl_err e = raw_key(k, k->subj_kid, 0, ks, &r.version);
    if (e) return e;
    size_t wl = 0;
    e = sl_random_key(s, 32);
    if (!e) e = sl_kwp_wrap(ks, ctx, subj_ctx(ctx, id), s, 32, r.wrapped, sizeof r.wrapped, &wl);
    OPENSSL_cleanse(ks, sizeof ks);
    if (!e && wl != SL_KWP_WRAPPED_32) e = SL_EINVAL;
    if (!e) e = store_lock(k, true);
    if (e) {
        OPENSSL_cleanse(s, 32);
        OPENSSL_cleanse(&r, sizeof r);
        return e;
    }
    i = rec_find(k, id);
    if (i < 0) e = store_append_locked(k, &r);
    store_unlock(k);
    OPENSSL_cleanse(&r, sizeof r);
    if (e) {
        OPENSSL_cleanse(s, 32);
        return e;
    }
    if (i >= 0) {
        OPENSSL_cleanse(s, 32);
        sl_fkeys_rec theirs = k->recs[i];
        e = subject_unwrap(k, &theirs, s);
        OPENSSL_cleanse(&theirs, sizeof theirs);
    }
    return e;
}

/* ---- open / close ---- */

static sl_err fk_new(const sl_config *cfg, sl_fkeys **out) {
    sl_fkeys *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    k->fd = -1;
    if (cfg->sluice_protect_subject_keys_file[0])
        snprintf(k->path, sizeof k->path, "%s", cfg->sluice_protect_subject_keys_file);
    else
        snprintf(k->path, sizeof k->path, "%s/sluice-subject-keys", cfg->log_dirs);
    sl_parent_dir(k->path, k->dir, sizeof k->dir);
    const char *slash = strrchr(k->path, '/');
    snprintf(k->fname, sizeof k->fname, "%s", slash ? slash + 1 : k->path);
    sl_fkeys_id(SL_FKEYS_SUBJECTS, k->subj_kid);
    *out = k;
    return SL_OK;
}

sl_err sl_fkeys_open_broker(const sl_config *cfg, struct sl_keysvc *ks, sl_fkeys **out, char *err,
                            size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = 0;
    sl_fkeys *k = NULL;
    sl_err e = fk_new(cfg, &k);
    if (e) return e;
    k->ks = ks;
    if (ks) { /* without encryption at rest no subject key can be made: no store */
        e = store_lock(k, true);
        if (!e) {
            e = store_init_locked(k);
            store_unlock(k);
        }
        if (e) {
            snprintf(err, errlen, "sluice.protect.subject.keys.file: cannot open %s: %s", k->path,
                     sl_strerror(e));
            sl_fkeys_close(k);
            return e;
        }
    }
    *out = k;
    return SL_OK;
}

sl_err sl_fkeys_open_direct(const sl_config *cfg, sl_fkeys **out, char *err, size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = 0;
    sl_fkeys *k = NULL;
    sl_err e = fk_new(cfg, &k);
    if (e) return e;
    k->direct = true;
    e = sl_keyreader_open(cfg, &k->kr, err, errlen);
    if (!e) {
        e = store_open(k, false);
        if (e == SL_ENOTFOUND) e = SL_OK; /* created with the first subject */
        if (e)
            snprintf(err, errlen, "sluice.protect.subject.keys.file: cannot read %s: %s", k->path,
                     sl_strerror(e));
    }
    if (e) {
        sl_fkeys_close(k);
        return e;
    }
    *out = k;
    return SL_OK;
}

void sl_fkeys_close(sl_fkeys *k) {
    if (!k) return;
    fe_sweep(k, DROP_ALL, 0, NULL);
    free(k->b);
    store_close(k);
    sl_keyreader_close(k->kr);
    free(k);
}

/* ---- lookups ---- */

sl_err sl_fkeys_get(sl_fkeys *k, const char *name, uint32_t version, const uint8_t *subject_id,
                    bool create, const sl_fc_key **out, uint32_t *outv) {
    *out = NULL;
    if (!k || !name || !sl_fc_keyname_ok(name, strlen(name))) return SL_ENOTFOUND;
    uint8_t id[16];
    sl_fkeys_id(name, id);
    uint32_t v = version;
    sl_err e = key_alive(k, id, &v);
    if (e) return e;
    fentry *f = fe_find(k, name, v, subject_id);
    if (f) {
        f->used_ms = sl_mono_ms();
        *out = f->key;
        if (outv) *outv = v;
        return SL_OK;
    }
    uint8_t key[32], s[32];
    e = raw_key(k, id, v, key, NULL);
    if (!e && subject_id) e = subject_key(k, subject_id, create, s);
    sl_fc_key *fk = NULL;
    if (!e) e = sl_fc_key_new(key, name, v, subject_id ? s : NULL, subject_id, &fk);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(s, sizeof s);
    if (e) return e;
    f = calloc(1, sizeof *f);
    if (!f) {
        sl_fc_key_free(fk);
        return SL_ENOMEM;
    }
    snprintf(f->name, sizeof f->name, "%s", name);
    f->version = v;
    f->has_subj = subject_id != NULL;
    if (subject_id) memcpy(f->subj, subject_id, 16);
    f->h = fe_hash(name, v, subject_id);
    f->key = fk;
    f->used_ms = sl_mono_ms();
    fe_insert(k, f);
    *out = fk;
    if (outv) *outv = v;
    return SL_OK;
}

sl_err sl_fkeys_sync(sl_fkeys *k) {
    if (!k || !k->dirty || k->fd < 0) return SL_OK;
    if (fdatasync(k->fd) != 0) return SL_EIO;
    k->dirty = false;
    return SL_OK;
}

sl_err sl_fkeys_forget(sl_fkeys *k, const uint8_t subject_id[16], bool *found) {
    *found = false;
    if (!k) return SL_OK;
    /* Whatever the store says: no context made with that subject survives here. */
    fe_sweep(k, DROP_SUBJECT, 0, subject_id);
    sl_err e = store_lock(k, false);
    if (e == SL_ENOTFOUND) return SL_OK; /* no store, no subject */
    if (e) return e;
    int32_t i = rec_find(k, subject_id);
    if (i < 0) {
        store_unlock(k);
        return SL_OK;
    }
    size_t n = MAGIC_LEN + (k->nrecs - 1) * SL_FKEYS_REC, off = MAGIC_LEN;
    uint8_t *b = malloc(n);
    if (!b) {
        store_unlock(k);
        return SL_ENOMEM;
    }
    memcpy(b, SL_FKEYS_MAGIC, MAGIC_LEN);
    for (size_t r = 0; r < k->nrecs; r++)
        if (r != (size_t)i) {
            sl_fkeys_rec_encode(&k->recs[r], b + off);
            off += SL_FKEYS_REC;
        }
    /* Zeroes the old file's blocks once the new one is durable: the wrapped key is gone from
     * the disk (best effort: docs/encryption-at-rest.md on copy-on-write and SSDs). */
    e = sl_keyring_replace_file(k->dir, k->fname, b, n);
    OPENSSL_cleanse(b, n);
    free(b);
    if (e) {
        store_unlock(k);
        return e;
    }
    /* Our descriptor (and lock) name the old file: reopen the new one. Appends made here before
     * are in it, and durable. */
    store_close(k);
    k->dirty = false;
    *found = true;
    e = store_open(k, false);
    return e == SL_ENOTFOUND ? SL_OK : e;
}

void sl_fkeys_tick(sl_fkeys *k, int64_t now_ms, int64_t ttl_ms) {
    if (!k) return;
    fe_sweep(k, DROP_OLD, now_ms - ttl_ms, NULL);
    if (k->fd >= 0 && store_follow(k))
        SL_WARN("protect", "subject store could not be reread", "file=%s", k->path);
}

int64_t sl_fkeys_subjects(const sl_fkeys *k) { return k ? (int64_t)k->nrecs : 0; }
