/* The key service (sl_keysvc.h, docs/encryption-at-rest.md).
 *
 * Three locks, always taken in this order: kms_mu serializes provider calls and keyring file
 * writes (the worker, the _sync functions); kr_mu guards the in-memory keyring (short, never
 * held across a KMS call or an fsync, so the loop never waits for the KMS); mu guards the job
 * queues. Caches are the loop's alone, except the system keys (any thread: blobs), which are
 * never evicted and published with an atomic count.
 *
 * The worker posts every KMS call as an event job, then the job's completion, to one done list:
 * the loop emits them in order from sl_keysvc_dispatch. */
#include "kms/sl_keysvc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_dek.h"
#include "crypto/sl_secmem.h"
#include "kms/sl_keyring.h"
#include "storage/sl_envelope.h"

#define SECMEM_SLOTS 8192
#define NBUCKETS     1024
#define MAX_SYS      64 /* system key versions kept */
#define MAX_PENDING  256
/* Each cached DEK holds two EVP contexts (~1.5 KiB): beyond this many, new DEKs are still
 * handed out, just not remembered (their segments hold their own references). */
#define MAX_DEKS 65536

/* ---- process-wide metrics ---- */

const char *const sl_kms_op_names[SL_KMS_NOPS] = {"wrap", "unwrap", "generate", "describe",
                                                  "destroy"};
const double sl_kms_bucket_le[SL_KMS_NBUCKETS] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                  0.025,  0.05,   0.1,   0.25,   1,     5};
enum { OP_WRAP, OP_UNWRAP, OP_GENERATE, OP_DESCRIBE, OP_DESTROY };
static _Atomic uint64_t g_calls[SL_KMS_NOPS][2];
static _Atomic uint64_t g_bucket[SL_KMS_NBUCKETS + 1], g_sum_ns, g_tamper;
static _Atomic int64_t g_cached;
static char g_provider[16];

void sl_keysvc_stats_get(sl_keysvc_stats *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->provider, sizeof out->provider, "%s", g_provider);
    for (int i = 0; i < SL_KMS_NOPS; i++)
        for (int j = 0; j < 2; j++) out->calls[i][j] = atomic_load(&g_calls[i][j]);
    for (int i = 0; i <= SL_KMS_NBUCKETS; i++) out->bucket[i] = atomic_load(&g_bucket[i]);
    out->sum_ns = atomic_load(&g_sum_ns);
    out->tamper = atomic_load(&g_tamper);
    out->keys_cached = atomic_load(&g_cached);
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- jobs ---- */

typedef enum { J_EVENT, J_LOAD, J_OP, J_SAVE, J_CACHE, J_RELOAD } job_kind;

typedef struct job {
    struct job *next;
    job_kind kind;
    /* request */
    sl_keyop op;
    uint8_t topic[16];
    uint32_t version; /* LOAD: topic-key version (0: current, creating v1 when none) */
    char reason[32];
    sl_keysvc_cb cb;
    void *ctx;
    /* result */
    sl_err result;
    char msg[512];
    uint8_t *tk; /* a secmem slot: the topic key unwrapped or created (loop caches it) */
    uint32_t tk_version;
    /* J_EVENT */
    struct {
        char op[16], key_id[256], topic[33], reason[32], detail[200];
        uint32_t key_version;
        int32_t partition;
        bool success;
        int64_t latency_ms;
    } ev;
} job;

/* ---- caches (loop thread) ---- */

typedef struct centry {
    struct centry *next;
    uint8_t key[32];
    uint8_t *tk; /* TK cache: secmem slot */
    sl_dek *dek; /* DEK cache: one reference; NULL with neg set */
    sl_err neg;  /* DEK cache: a remembered failure (tamper), so a bad segment is not re-tried
                  * (and re-audited) on every fetch */
    int64_t used_ms;
} centry;

typedef struct cache {
    centry *b[NBUCKETS];
    int n;
} cache;

typedef struct sys_key {
    uint32_t version;
    uint8_t *tk;
} sys_key;

struct sl_keysvc {
    sl_kms *kms;
    const char *provider;
    sl_events *hub;
    int64_t ttl_ms, timeout_ms;
    char kr_path[4096], kr_dir[4096], kr_name[4096];

    pthread_mutex_t kms_mu, kr_mu, mu;
    pthread_cond_t cv;
    pthread_cond_t done_cv; /* mu: something was posted to the done list (local-provider waits) */
    sl_keyring kr;          /* kr_mu */
    bool save_queued;       /* mu */
    /* The keyring file as this process last read or wrote it (kms_mu): several processes
     * (gateways) may share the file; see sync_disk. */
    sl_keyring base;
    struct {
        bool valid;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
    } disk;
    char lock_path[4200];
    int lock_fd, lock_depth; /* kms_mu: the cross-process lock (flock on lock_path) */
    int64_t reload_ms;       /* loop: when a reread was last asked for */
    bool reload_pending;     /* loop */

    pthread_t thread;
    bool started;
    job *queue, **queue_tail; /* mu */
    job *done, **done_tail;   /* mu */
    bool stop;                /* mu */
    int efd;

    cache tkc, dekc; /* loop */
    struct {
        uint8_t topic[16];
        uint32_t version;
    } pending[MAX_PENDING]; /* loop: loads in flight */
    int npending;

    sys_key sys[MAX_SYS];
    _Atomic int nsys;
    pthread_mutex_t sys_mu; /* writers of sys (readers use nsys) */

    void (*on_shred)(void *ctx, const uint8_t topic_id[16]);
    void *on_shred_ctx;
};

static const uint8_t k_zero[16];

static bool is_sys(const uint8_t id[16]) { return !memcmp(id, k_zero, 16); }
/* A field key's id (sl_fkeys_id in protect/sl_fkeys.h: byte 0 forced to 0xFF) or a gateway topic
 * key's (sl_gwcrypt_key_id in gateway/sl_gwcrypt.h: 0xFE). Only these leave the service as raw
 * bytes (sl_keysvc_key_get): topic keys and the system key never do. */
static bool is_field(const uint8_t id[16]) { return id[0] == 0xFF || id[0] == 0xFE; }

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static void be64(uint8_t *p, uint64_t v) {
    be32(p, (uint32_t)(v >> 32));
    be32(p + 4, (uint32_t)v);
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t tk_context(uint8_t out[SL_KEYRING_TKCTX_MAX], const uint8_t topic[16],
                         uint32_t version) {
    return sl_keyring_tk_context(out, topic, version);
}

static size_t dek_context(uint8_t out[64], const uint8_t topic[16], int32_t partition,
                          int64_t seg_base, uint32_t dek_id) {
    static const char pfx[] = "sluice/dek/v1";
    size_t n = sizeof pfx - 1;
    memcpy(out, pfx, n);
    memcpy(out + n, topic, 16);
    be32(out + n + 16, (uint32_t)partition);
    be64(out + n + 20, (uint64_t)seg_base);
    be32(out + n + 28, dek_id);
    return n + 32;
}

/* ---- cache helpers ---- */

static uint32_t hkey(const uint8_t k[32]) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 32; i++) h = (h ^ k[i]) * 16777619u;
    return h % NBUCKETS;
}

static centry *cache_get(cache *c, const uint8_t k[32]) {
    for (centry *e = c->b[hkey(k)]; e; e = e->next)
        if (!memcmp(e->key, k, 32)) return e;
    return NULL;
}

static centry *cache_put(cache *c, const uint8_t k[32]) {
    centry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    memcpy(e->key, k, 32);
    uint32_t h = hkey(k);
    e->next = c->b[h];
    c->b[h] = e;
    c->n++;
    atomic_fetch_add(&g_cached, 1);
    return e;
}

static void centry_free(centry *e) {
    sl_secmem_free_key(e->tk);
    sl_dek_unref(e->dek);
    free(e);
    atomic_fetch_sub(&g_cached, 1);
}

/* Removes entries for which `drop` says so (all when NULL). */
static void cache_sweep(cache *c, bool (*drop)(const centry *, const void *), const void *arg) {
    for (int i = 0; i < NBUCKETS; i++) {
        centry **pp = &c->b[i];
        while (*pp) {
            centry *e = *pp;
            if (!drop || drop(e, arg)) {
                *pp = e->next;
                centry_free(e);
                c->n--;
            } else
                pp = &e->next;
        }
    }
}

static bool drop_topic(const centry *e, const void *topic) { return !memcmp(e->key, topic, 16); }
static bool drop_old(const centry *e, const void *cut) {
    return e->used_ms < *(const int64_t *)cut;
}

static void tk_key(uint8_t k[32], const uint8_t topic[16], uint32_t version) {
    memset(k, 0, 32);
    memcpy(k, topic, 16);
    be32(k + 16, version);
}
static void dek_key(uint8_t k[32], const uint8_t topic[16], int32_t part, int64_t base,
                    uint32_t id) {
    memcpy(k, topic, 16);
    be32(k + 16, (uint32_t)part);
    be64(k + 20, (uint64_t)base);
    be32(k + 28, id);
}

/* ---- the done list, events ---- */

static void post_done(sl_keysvc *ks, job *j) {
    j->next = NULL;
    pthread_mutex_lock(&ks->mu);
    *ks->done_tail = j;
    ks->done_tail = &j->next;
    pthread_cond_broadcast(&ks->done_cv);
    pthread_mutex_unlock(&ks->mu);
    uint64_t one = 1;
    while (write(ks->efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* Queues one SL_EV_KEY (emitted on the loop by dispatch). Any thread. */
static void post_event(sl_keysvc *ks, const char *op, const sl_kms_keyref *kek,
                       const uint8_t *topic, const char *reason, sl_err e, const char *detail,
                       int64_t latency_ns) {
    job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->kind = J_EVENT;
    snprintf(j->ev.op, sizeof j->ev.op, "%s", op);
    if (kek) {
        snprintf(j->ev.key_id, sizeof j->ev.key_id, "%s", kek->id);
        j->ev.key_version = kek->version;
    }
    if (topic) sl_uuid_hex(topic, j->ev.topic);
    j->ev.partition = -1;
    snprintf(j->ev.reason, sizeof j->ev.reason, "%s", reason ? reason : "");
    j->ev.success = e == SL_OK;
    if (e)
        snprintf(j->ev.detail, sizeof j->ev.detail, "%s",
                 detail && detail[0] ? detail : sl_strerror(e));
    j->ev.latency_ms = latency_ns / 1000000;
    post_done(ks, j);
}

static void emit_job_event(sl_keysvc *ks, const job *j) {
    if (!ks->hub) return;
    sl_event ev = {.kind = SL_EV_KEY};
    ev.key = (sl_ev_key){.op = j->ev.op,
                         .provider = ks->provider,
                         .key_id = j->ev.key_id[0] ? j->ev.key_id : NULL,
                         .key_version = j->ev.key_version,
                         .topic = j->ev.topic[0] ? j->ev.topic : NULL,
                         .partition = j->ev.partition,
                         .reason = j->ev.reason,
                         .success = j->ev.success,
                         .detail = j->ev.detail[0] ? j->ev.detail : NULL,
                         .latency_ms = j->ev.latency_ms};
    sl_events_emit(ks->hub, &ev);
}

/* ---- provider calls (kms_mu held): timed, counted, one event each ---- */

static void observe(int op, sl_err e, int64_t ns) {
    atomic_fetch_add(&g_calls[op][e ? 1 : 0], 1);
    int i = 0;
    while (i < SL_KMS_NBUCKETS && (double)ns > sl_kms_bucket_le[i] * 1e9) i++;
    atomic_fetch_add(&g_bucket[i], 1);
    atomic_fetch_add(&g_sum_ns, (uint64_t)(ns > 0 ? ns : 0));
}

static sl_err kms_wrap(sl_keysvc *ks, const sl_kms_keyref *kek, const uint8_t topic[16],
                       uint32_t tkver, const uint8_t *tk, uint8_t *out, size_t *outlen,
                       const char *reason) {
    uint8_t ctx[SL_KEYRING_TKCTX_MAX];
    size_t cl = tk_context(ctx, topic, tkver);
    char err[200] = "";
    int64_t t0 = mono_ns();
    sl_err e = ks->kms->ops->wrap(ks->kms, kek, ctx, cl, tk, 32, out, SL_KMS_WRAPPED_MAX, outlen,
                                  err, sizeof err);
    int64_t dt = mono_ns() - t0;
    if (!e && (*outlen == 0 || *outlen > SL_KMS_WRAPPED_MAX)) e = SL_EKMS_DENIED;
    observe(OP_WRAP, e, dt);
    post_event(ks, "wrap", kek, topic, reason, e, err, dt);
    return e;
}

static sl_err kms_unwrap(sl_keysvc *ks, const sl_kms_keyref *kek, const uint8_t topic[16],
                         const sl_kr_tk *w, uint8_t *tk, const char *reason) {
    uint8_t ctx[SL_KEYRING_TKCTX_MAX];
    size_t cl = tk_context(ctx, topic, w->version);
    char err[200] = "";
    size_t ol = 0;
    int64_t t0 = mono_ns();
    sl_err e = ks->kms->ops->unwrap(ks->kms, kek, ctx, cl, w->wrapped, w->wlen, tk, 32, &ol, err,
                                    sizeof err);
    int64_t dt = mono_ns() - t0;
    if (!e && ol != 32) {
        OPENSSL_cleanse(tk, 32);
        e = SL_ETAMPER;
    }
    observe(OP_UNWRAP, e, dt);
    if (e == SL_ETAMPER) atomic_fetch_add(&g_tamper, 1);
    post_event(ks, "unwrap", kek, topic, reason, e, err, dt);
    return e;
}

static sl_err kms_generate(sl_keysvc *ks, uint32_t version, sl_kms_keyref *out,
                           const char *reason) {
    char err[200] = "";
    int64_t t0 = mono_ns();
    sl_err e = ks->kms->ops->generate(ks->kms, version, out, err, sizeof err);
    int64_t dt = mono_ns() - t0;
    out->version = version;
    observe(OP_GENERATE, e, dt);
    post_event(ks, "generate", out, NULL, reason, e, err, dt);
    return e;
}

static sl_err kms_describe(sl_keysvc *ks, uint32_t version, const char *reason) {
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_kek *k = sl_keyring_kek(&ks->kr, version);
    sl_kms_keyref ref = k ? k->ref : (sl_kms_keyref){{0}, 0};
    pthread_mutex_unlock(&ks->kr_mu);
    if (!ref.version) return SL_ENOTFOUND;
    char line[256] = "", err[200] = "";
    int64_t t0 = mono_ns();
    sl_err e = ks->kms->ops->describe(ks->kms, &ref, line, sizeof line, err, sizeof err);
    int64_t dt = mono_ns() - t0;
    observe(OP_DESCRIBE, e, dt);
    post_event(ks, "describe", &ref, NULL, reason, e, err, dt);
    pthread_mutex_lock(&ks->kr_mu);
    k = sl_keyring_kek(&ks->kr, version);
    if (k) snprintf(k->describe, sizeof k->describe, "%s", e ? err : line);
    pthread_mutex_unlock(&ks->kr_mu);
    return e;
}

static sl_err kms_destroy(sl_keysvc *ks, const sl_kms_keyref *kek, const char *reason, char *msg,
                          size_t msglen) {
    char err[200] = "";
    int64_t t0 = mono_ns();
    sl_err e = ks->kms->ops->destroy(ks->kms, kek, err, sizeof err);
    int64_t dt = mono_ns() - t0;
    observe(OP_DESTROY, e, dt);
    post_event(ks, "destroy", kek, NULL, reason, e, err, dt);
    if (e) snprintf(msg, msglen, "%s", err[0] ? err : sl_strerror(e));
    return e;
}

/* ---- keyring file (kms_mu held) ----
 *
 * Several processes may share one keyring file (gateways behind a load balancer, the file on a
 * shared volume). Every writer takes an exclusive flock on <keyring>.lock (the keyring itself is
 * replaced by rename, so it cannot carry the lock), rereads the file if it changed since this
 * process last read or wrote it and merges it (sl_keyring_merge: the file wins except for what
 * this process changed since), then writes. A creation of a first version rereads under the
 * lock first, and uses a version another process made meanwhile. Readers need no lock: the file
 * is always replaced whole. */

#define RECHECK_MS 200 /* a miss looks at the file at most this often (as sl_keyreader) */

static void kr_lock(sl_keysvc *ks) {
    if (ks->lock_depth++) return;
    ks->lock_fd = open(ks->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (ks->lock_fd < 0) {
        SL_WARN("kms", "cannot open the keyring lock file; writing without it", "file=%s err=%s",
                ks->lock_path, strerror(errno));
        return;
    }
    while (flock(ks->lock_fd, LOCK_EX) != 0 && errno == EINTR) {
    }
}

static void kr_unlock(sl_keysvc *ks) {
    if (--ks->lock_depth) return;
    if (ks->lock_fd >= 0) close(ks->lock_fd); /* releases the flock */
    ks->lock_fd = -1;
}

static bool same_disk(const sl_keysvc *ks, const struct stat *st) {
    return ks->disk.valid && ks->disk.dev == st->st_dev && ks->disk.ino == st->st_ino &&
           ks->disk.size == st->st_size && ks->disk.mtime.tv_sec == st->st_mtim.tv_sec &&
           ks->disk.mtime.tv_nsec == st->st_mtim.tv_nsec &&
           ks->disk.ctime.tv_sec == st->st_ctim.tv_sec &&
           ks->disk.ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static void note_disk(sl_keysvc *ks, const struct stat *st) {
    ks->disk.valid = true;
    ks->disk.dev = st->st_dev;
    ks->disk.ino = st->st_ino;
    ks->disk.size = st->st_size;
    ks->disk.mtime = st->st_mtim;
    ks->disk.ctime = st->st_ctim;
}

/* Rereads the keyring file when it changed since this process last read or wrote it and merges
 * it into memory (kms_mu held; the worker, or a _sync function). An unreadable file (torn,
 * truncated, edited) keeps every key in memory and is logged once per change of the file: SL_OK
 * still (the caller goes on with what it has), *changed false. */
static sl_err sync_disk(sl_keysvc *ks, bool *changed) {
    if (changed) *changed = false;
    int fd = open(ks->kr_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SL_OK; /* gone: the next save writes it again */
    struct stat st;
    if (fstat(fd, &st) != 0 || same_disk(ks, &st)) {
        close(fd);
        return SL_OK;
    }
    char why[160] = "not a regular file or too large";
    sl_keyring f = {0};
    sl_err e = SL_ECORRUPT;
    if (S_ISREG(st.st_mode) && st.st_size <= SL_KEYRING_MAX) {
        size_t n = (size_t)st.st_size;
        uint8_t *b = malloc(n ? n : 1);
        if (!b) {
            close(fd);
            return SL_ENOMEM;
        }
        size_t got = sl_read_full(fd, b, n);
        if (got != n) snprintf(why, sizeof why, "short read");
        e = got == n ? sl_keyring_decode(b, n, &f, why, sizeof why) : SL_EIO;
        free(b);
    }
    close(fd);
    if (e) {
        note_disk(ks, &st); /* logged once per change of the file */
        SL_WARN("kms", "the keyring file changed but cannot be read; keeping the keys in memory",
                "file=%s why=\"%s\"", ks->kr_path, why);
        return SL_OK;
    }
    sl_keyring merged;
    int conflicts = 0;
    pthread_mutex_lock(&ks->kr_mu);
    e = sl_keyring_merge(&ks->kr, &ks->base, &f, &merged, &conflicts);
    if (!e) {
        sl_keyring_free(&ks->kr);
        ks->kr = merged;
    }
    int ntopics = ks->kr.ntopics;
    pthread_mutex_unlock(&ks->kr_mu);
    if (e) {
        sl_keyring_free(&f);
        return e;
    }
    sl_keyring_free(&ks->base);
    ks->base = f;
    note_disk(ks, &st);
    if (changed) *changed = true;
    if (conflicts)
        SL_ERROR("kms", "keyring: a key version was created here and by another process",
                 "file=%s conflicts=%d kept=file", ks->kr_path, conflicts);
    SL_INFO("kms", "keyring reread (changed on disk)", "file=%s topics=%d", ks->kr_path, ntopics);
    return SL_OK;
}

static sl_err save_keyring(sl_keysvc *ks) {
    uint8_t *b = NULL;
    size_t n = 0;
    kr_lock(ks);
    sl_err e = sync_disk(ks, NULL);
    if (!e) {
        pthread_mutex_lock(&ks->kr_mu);
        e = sl_keyring_encode(&ks->kr, &b, &n);
        pthread_mutex_unlock(&ks->kr_mu);
    }
    if (!e) e = sl_keyring_replace_file(ks->kr_dir, ks->kr_name, b, n);
    if (!e) {
        struct stat st;
        sl_keyring nb = {0};
        char why[160];
        if (stat(ks->kr_path, &st) == 0) note_disk(ks, &st);
        if (sl_keyring_decode(b, n, &nb, why, sizeof why) == SL_OK) {
            sl_keyring_free(&ks->base);
            ks->base = nb;
        }
    }
    kr_unlock(ks);
    free(b);
    if (e)
        SL_ERROR("kms", "cannot write the keyring", "file=%s err=%s", ks->kr_path, sl_strerror(e));
    return e;
}

/* ---- system keys (any thread reads; writers hold kms_mu) ---- */

static const uint8_t *sys_get(sl_keysvc *ks, uint32_t version) {
    int n = atomic_load_explicit(&ks->nsys, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (ks->sys[i].version == version) return ks->sys[i].tk;
    return NULL;
}

/* Takes the slot. */
static void sys_put(sl_keysvc *ks, uint32_t version, uint8_t *tk) {
    pthread_mutex_lock(&ks->sys_mu);
    int n = atomic_load(&ks->nsys);
    if (sys_get(ks, version) || n >= MAX_SYS) {
        sl_secmem_free_key(tk);
    } else {
        ks->sys[n].version = version;
        ks->sys[n].tk = tk;
        atomic_store_explicit(&ks->nsys, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&ks->sys_mu);
}

static uint32_t current_tk_locked(sl_keyring *kr, const uint8_t topic[16]) {
    sl_kr_topic *t = sl_keyring_topic(kr, topic);
    return t && t->ntks ? t->tks[t->ntks - 1].version : 0;
}

/* Creates the next topic-key version of `topic` under the current KEK and stores it (kms_mu
 * held). *tk gets its secmem slot (the caller's). */
static sl_err load_tk(sl_keysvc *ks, const uint8_t topic[16], uint32_t v, const char *reason,
                      uint8_t **tk, char *msg, size_t msglen);
static sl_err create_tk_locked(sl_keysvc *ks, const uint8_t topic[16], bool first,
                               const char *reason, uint8_t **tk, uint32_t *version, char *msg,
                               size_t msglen);

/* `first`: only when the topic has no version yet (first use); when another process created one
 * meanwhile (found by rereading the file under the lock), that one is loaded instead. */
static sl_err create_tk(sl_keysvc *ks, const uint8_t topic[16], bool first, const char *reason,
                        uint8_t **tk, uint32_t *version, char *msg, size_t msglen) {
    kr_lock(ks);
    sl_err e = sync_disk(ks, NULL);
    if (!e) e = create_tk_locked(ks, topic, first, reason, tk, version, msg, msglen);
    kr_unlock(ks);
    return e;
}

static sl_err create_tk_locked(sl_keysvc *ks, const uint8_t topic[16], bool first,
                               const char *reason, uint8_t **tk, uint32_t *version, char *msg,
                               size_t msglen) {
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic(&ks->kr, topic);
    bool shredded = t && (t->shredded || t->shred_pending);
    uint32_t v = (t && t->ntks ? t->tks[t->ntks - 1].version : 0) + 1;
    sl_kr_kek *kk = sl_keyring_kek(&ks->kr, ks->kr.current);
    sl_kms_keyref kek = kk ? kk->ref : (sl_kms_keyref){{0}, 0};
    pthread_mutex_unlock(&ks->kr_mu);
    if (shredded) {
        snprintf(msg, msglen, "the topic's keys were shredded");
        return SL_EKEY_DESTROYED;
    }
    if (first && v > 1) { /* another process made it: use theirs */
        sl_err e = load_tk(ks, topic, v - 1, reason, tk, msg, msglen);
        if (!e) {
            *version = v - 1;
            snprintf(msg, msglen, "topic key version %u (created by another process)", v - 1);
        }
        return e;
    }
    if (!kek.version) {
        snprintf(msg, msglen, "no current KEK version");
        return SL_ESTATE;
    }
    uint8_t *k = sl_secmem_alloc_key();
    if (!k) {
        snprintf(msg, msglen, "locked key memory is full");
        return SL_ENOMEM;
    }
    sl_kr_tk w = {.version = v, .kek_version = kek.version};
    size_t wl = 0;
    sl_err e = sl_random_key(k, 32);
    if (!e) e = kms_wrap(ks, &kek, topic, v, k, w.wrapped, &wl, reason);
    if (e) {
        sl_secmem_free_key(k);
        snprintf(msg, msglen, "wrapping a new topic key under %s failed: %s", kek.id,
                 sl_strerror(e));
        return e;
    }
    w.wlen = (uint16_t)wl;
    pthread_mutex_lock(&ks->kr_mu);
    t = sl_keyring_topic_add(&ks->kr, topic);
    sl_kr_tk *slot = t ? sl_keyring_tk_add(t) : NULL;
    if (slot) *slot = w;
    pthread_mutex_unlock(&ks->kr_mu);
    e = slot ? save_keyring(ks) : SL_ENOMEM;
    if (e) {
        pthread_mutex_lock(&ks->kr_mu);
        t = sl_keyring_topic(&ks->kr, topic);
        if (t && slot) t->ntks--;
        pthread_mutex_unlock(&ks->kr_mu);
        sl_secmem_free_key(k);
        snprintf(msg, msglen, "cannot store the new topic key in the keyring: %s", sl_strerror(e));
        return e;
    }
    *tk = k;
    *version = v;
    snprintf(msg, msglen, "topic key version %u under %s", v, kek.id);
    return SL_OK;
}

/* Unwraps version `v` of `topic` (kms_mu held). */
static sl_err load_tk(sl_keysvc *ks, const uint8_t topic[16], uint32_t v, const char *reason,
                      uint8_t **tk, char *msg, size_t msglen) {
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic(&ks->kr, topic);
    sl_kr_tk *w = sl_keyring_tk(t, v);
    sl_kr_tk copy = w ? *w : (sl_kr_tk){0};
    sl_kr_kek *kk = w ? sl_keyring_kek(&ks->kr, w->kek_version) : NULL;
    sl_kms_keyref kek = kk ? kk->ref : (sl_kms_keyref){{0}, 0};
    bool shredded = t && (t->shredded || t->shred_pending);
    pthread_mutex_unlock(&ks->kr_mu);
    if (shredded) {
        snprintf(msg, msglen, "the topic's keys were shredded");
        return SL_EKEY_DESTROYED;
    }
    if (!w || !kek.version) {
        snprintf(msg, msglen, "the keyring has no topic key version %u", v);
        return SL_ETAMPER;
    }
    uint8_t *k = sl_secmem_alloc_key();
    if (!k) return SL_ENOMEM;
    sl_err e = kms_unwrap(ks, &kek, topic, &copy, k, reason);
    if (e) {
        sl_secmem_free_key(k);
        snprintf(msg, msglen, "unwrapping topic key version %u under %s failed: %s", v, kek.id,
                 sl_strerror(e));
        return e;
    }
    *tk = k;
    return SL_OK;
}

/* ---- worker ---- */

static void run_op(sl_keysvc *ks, job *j);

static void run_load(sl_keysvc *ks, job *j) {
    pthread_mutex_lock(&ks->kms_mu);
    uint32_t v = j->version;
    if (is_sys(j->topic) && v && sys_get(ks, v)) { /* asked twice (blobs): have it */
        pthread_mutex_unlock(&ks->kms_mu);
        return;
    }
    if (!v) {
        pthread_mutex_lock(&ks->kr_mu);
        v = current_tk_locked(&ks->kr, j->topic);
        pthread_mutex_unlock(&ks->kr_mu);
    }
    if (!v) {
        j->result = create_tk(ks, j->topic, true, "new topic", &j->tk, &j->tk_version, j->msg,
                              sizeof j->msg);
    } else {
        j->tk_version = v;
        j->result = load_tk(ks, j->topic, v, j->reason, &j->tk, j->msg, sizeof j->msg);
    }
    if (!j->result && is_sys(j->topic)) {
        sys_put(ks, j->tk_version, j->tk);
        j->tk = NULL;
    }
    pthread_mutex_unlock(&ks->kms_mu);
    if (j->result && j->result != SL_EKEY_DESTROYED) {
        char hex[33];
        sl_uuid_hex(j->topic, hex);
        SL_WARN("kms", "topic key not available", "topic_id=%s version=%u err=%s detail=\"%s\"",
                hex, v, sl_strerror(j->result), j->msg);
    }
}

static void *worker_main(void *arg) {
    sl_keysvc *ks = arg;
    for (;;) {
        pthread_mutex_lock(&ks->mu);
        while (!ks->queue && !ks->stop) pthread_cond_wait(&ks->cv, &ks->mu);
        job *j = ks->queue;
        if (j) {
            ks->queue = j->next;
            if (!ks->queue) ks->queue_tail = &ks->queue;
            if (j->kind == J_SAVE) ks->save_queued = false;
        }
        bool stop = ks->stop;
        pthread_mutex_unlock(&ks->mu);
        if (!j) {
            if (stop) break;
            continue;
        }
        switch (j->kind) {
        case J_LOAD:
            run_load(ks, j);
            break;
        case J_OP:
            run_op(ks, j);
            break;
        case J_SAVE:
            pthread_mutex_lock(&ks->kms_mu);
            j->result = save_keyring(ks);
            pthread_mutex_unlock(&ks->kms_mu);
            break;
        case J_RELOAD:
            pthread_mutex_lock(&ks->kms_mu);
            j->result = sync_disk(ks, NULL);
            pthread_mutex_unlock(&ks->kms_mu);
            break;
        default:
            break;
        }
        post_done(ks, j);
    }
    return NULL;
}

static void enqueue(sl_keysvc *ks, job *j) {
    j->next = NULL;
    pthread_mutex_lock(&ks->mu);
    *ks->queue_tail = j;
    ks->queue_tail = &j->next;
    pthread_cond_signal(&ks->cv);
    pthread_mutex_unlock(&ks->mu);
}

/* Loop: starts loading (topic, version) unless a load is in flight already. False when none is
 * (the pending table is full, or out of memory): a later miss retries. */
static bool queue_load(sl_keysvc *ks, const uint8_t topic[16], uint32_t version,
                       const char *reason) {
    for (int i = 0; i < ks->npending; i++)
        if (!memcmp(ks->pending[i].topic, topic, 16) &&
            (ks->pending[i].version == version || !ks->pending[i].version || !version))
            return true;
    if (ks->npending >= MAX_PENDING) return false; /* retried on a later miss */
    job *j = calloc(1, sizeof *j);
    if (!j) return false;
    j->kind = J_LOAD;
    memcpy(j->topic, topic, 16);
    j->version = version;
    snprintf(j->reason, sizeof j->reason, "%s", reason);
    memcpy(ks->pending[ks->npending].topic, topic, 16);
    ks->pending[ks->npending].version = version;
    ks->npending++;
    enqueue(ks, j);
    return true;
}

static void pending_done(sl_keysvc *ks, const uint8_t topic[16], uint32_t version) {
    for (int i = 0; i < ks->npending; i++)
        if (!memcmp(ks->pending[i].topic, topic, 16) && ks->pending[i].version == version) {
            ks->pending[i] = ks->pending[--ks->npending];
            return;
        }
}

/* Loop: puts an unwrapped topic key in the TK cache (takes the slot). */
static void tk_cache_put(sl_keysvc *ks, const uint8_t topic[16], uint32_t version, uint8_t *tk) {
    if (is_sys(topic)) {
        sys_put(ks, version, tk); /* only reached at open, before the worker runs */
        return;
    }
    uint8_t k[32];
    tk_key(k, topic, version);
    centry *e = cache_get(&ks->tkc, k);
    if (e) {
        sl_secmem_free_key(tk);
        e->used_ms = sl_mono_ms();
        return;
    }
    e = cache_put(&ks->tkc, k);
    if (!e) {
        sl_secmem_free_key(tk);
        return;
    }
    e->tk = tk;
    e->used_ms = sl_mono_ms();
}

/* Loop: the topic key (topic, version) from the caches, NULL when not loaded. */
/* Loop: a topic key the worker (or a creation on another thread) has just made or unwrapped
 * waits in the done queue until the next dispatch; a request arriving first (the produce that
 * auto-created its topic) takes it from there instead of failing. Only the key moves; the job
 * and its events stay for dispatch. */
static void tk_adopt_done(sl_keysvc *ks, const uint8_t topic[16], uint32_t version) {
    pthread_mutex_lock(&ks->mu);
    for (job *j = ks->done; j; j = j->next)
        if ((j->kind == J_CACHE || j->kind == J_LOAD) && j->tk && j->tk_version == version &&
            !memcmp(j->topic, topic, 16)) {
            tk_cache_put(ks, j->topic, j->tk_version, j->tk);
            j->tk = NULL;
            break;
        }
    pthread_mutex_unlock(&ks->mu);
}

static const uint8_t *tk_lookup(sl_keysvc *ks, const uint8_t topic[16], uint32_t version) {
    if (is_sys(topic)) return sys_get(ks, version);
    uint8_t k[32];
    tk_key(k, topic, version);
    centry *e = cache_get(&ks->tkc, k);
    if (!e) {
        tk_adopt_done(ks, topic, version);
        e = cache_get(&ks->tkc, k);
    }
    if (!e) return NULL;
    e->used_ms = sl_mono_ms();
    return e->tk;
}

/* ---- open / close ---- */

static sl_err read_keyring(sl_keysvc *ks, bool *found, char *err, size_t errlen) {
    *found = false;
    int fd = open(ks->kr_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return SL_OK;
        snprintf(err, errlen, "sluice.kms.keyring.file: cannot open %s: %s", ks->kr_path,
                 strerror(errno));
        return SL_ECONFIG;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SL_KEYRING_MAX) {
        close(fd);
        snprintf(err, errlen, "sluice.kms.keyring.file: %s is not a keyring file", ks->kr_path);
        return SL_ECONFIG;
    }
    if (st.st_mode & 077)
        SL_WARN("kms", "keyring readable by others", "file=%s mode=%03o", ks->kr_path,
                (unsigned)(st.st_mode & 0777));
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return SL_ENOMEM;
    }
    got = sl_read_full(fd, b, n);
    close(fd);
    char why[160];
    sl_err e = got == n ? sl_keyring_decode(b, n, &ks->kr, why, sizeof why) : SL_EIO;
    if (!e && sl_keyring_decode(b, n, &ks->base, why, sizeof why) == SL_OK) note_disk(ks, &st);
    free(b);
    if (e) {
        snprintf(err, errlen,
                 "sluice.kms.keyring.file: %s is unreadable (%s); refusing to start: a new "
                 "keyring would make every encrypted byte unreadable (restore it from a backup)",
                 ks->kr_path, e == SL_EIO ? "short read" : why);
        return SL_ECONFIG;
    }
    *found = true;
    return SL_OK;
}

static void split_path(const char *path, char *dir, size_t dn, char *name, size_t nn) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dn, ".");
        snprintf(name, nn, "%s", path);
    } else {
        snprintf(dir, dn, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        snprintf(name, nn, "%s", slash + 1);
    }
}

sl_err sl_keysvc_open(const sl_config *cfg, sl_events *hub, sl_keysvc **out, char *err,
                      size_t errlen) {
    *out = NULL;
    if (!cfg->sluice_encryption_enable) return SL_OK;
    sl_kms *kms = NULL;
    sl_secmem_init(SECMEM_SLOTS);
    /* Key schedules live in OpenSSL's ordinary heap: with encryption on, no core dump at all. */
    sl_secmem_no_core_dumps();
    sl_err e = sl_kms_open(cfg, &kms, err, errlen);
    if (e) return e;
    return sl_keysvc_open_with(cfg, hub, kms, out, err, errlen);
}

sl_err sl_keysvc_open_with(const sl_config *cfg, sl_events *hub, sl_kms *kms, sl_keysvc **out,
                           char *err, size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = 0;
    sl_secmem_init(SECMEM_SLOTS);
    sl_keysvc *ks = calloc(1, sizeof *ks);
    if (!ks) {
        kms->ops->free(kms);
        return SL_ENOMEM;
    }
    ks->kms = kms;
    ks->provider = kms->ops->name;
    snprintf(g_provider, sizeof g_provider, "%s", kms->ops->name);
    ks->hub = hub;
    ks->ttl_ms = cfg->sluice_kms_cache_ttl_ms;
    ks->timeout_ms = cfg->sluice_kms_timeout_ms;
    ks->queue_tail = &ks->queue;
    ks->done_tail = &ks->done;
    pthread_mutex_init(&ks->kms_mu, NULL);
    pthread_mutex_init(&ks->kr_mu, NULL);
    pthread_mutex_init(&ks->mu, NULL);
    pthread_mutex_init(&ks->sys_mu, NULL);
    pthread_cond_init(&ks->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ks->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    ks->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ks->lock_fd = -1;
    sl_keyring_path(cfg, ks->kr_path, sizeof ks->kr_path);
    split_path(ks->kr_path, ks->kr_dir, sizeof ks->kr_dir, ks->kr_name, sizeof ks->kr_name);
    snprintf(ks->lock_path, sizeof ks->lock_path, "%s.lock", ks->kr_path);
    bool found = false;
    sl_err e = ks->efd < 0 ? SL_EIO : SL_OK;
    if (!e) e = sl_mkdir_p(ks->kr_dir, 0700);
    if (e) snprintf(err, errlen, "sluice.kms.keyring.file: cannot create %s", ks->kr_dir);
    pthread_mutex_lock(&ks->kms_mu); /* no other thread yet: for the helpers' contract */
    /* Under the file lock until the system key exists: processes starting together on one new
     * keyring file make one KEK version 1 and one system key. */
    if (!e) kr_lock(ks);
    bool locked = !e;
    if (!e) e = read_keyring(ks, &found, err, errlen);
    bool dirty = !found;
    if (!e && !ks->kr.current) {
        sl_kms_keyref ref;
        e = kms_generate(ks, 1, &ref, "start");
        if (!e && !sl_keyring_kek_add(&ks->kr, &ref)) e = SL_ENOMEM;
        if (e)
            snprintf(err, errlen, "sluice.kms.provider: %s cannot create KEK version 1: %s",
                     ks->provider, sl_strerror(e));
        else
            ks->kr.current = 1, dirty = true;
    }
    if (!e && dirty) {
        e = save_keyring(ks);
        if (e) snprintf(err, errlen, "sluice.kms.keyring.file: cannot write %s", ks->kr_path);
    }
    bool kms_down = false; /* after one "unreachable", start asks the KMS nothing more */
    for (int i = 0; !e && !kms_down && i < ks->kr.nkeks; i++)
        kms_down = kms_describe(ks, ks->kr.keks[i].ref.version, "start") == SL_EKMS_UNAVAILABLE;
    /* The system key first: without it the groups log and snapshots cannot be read. */
    if (!e && !current_tk_locked(&ks->kr, k_zero)) {
        uint8_t *tk = NULL;
        uint32_t v = 0;
        char msg[256];
        e = create_tk_locked(ks, k_zero, true, "new topic", &tk, &v, msg, sizeof msg);
        if (e)
            snprintf(err, errlen, "encryption at rest: cannot create the system key: %s", msg);
        else
            sys_put(ks, v, tk);
    }
    if (locked) kr_unlock(ks);
    /* The current version of every topic key (every version of the system key), as many as
     * the timeout allows; older versions and the rest load on first use. A KMS that does not
     * answer stops the loading at once: the broker starts, and those topics wait for it. */
    int64_t deadline = sl_mono_ms() + ks->timeout_ms;
    bool stop_loading = kms_down;
    for (int i = 0; !e && !stop_loading && i < ks->kr.ntopics; i++) {
        sl_kr_topic *t = &ks->kr.topics[i];
        bool sys = is_sys(t->id);
        for (int j = sys ? 0 : t->ntks - 1; j >= 0 && j < t->ntks; j++) {
            if (sys && sys_get(ks, t->tks[j].version)) continue;
            if (sl_mono_ms() > deadline) {
                SL_WARN("kms", "start: KMS timeout reached; the other topic keys load on use",
                        "loaded_topics=%d topics=%d", i, ks->kr.ntopics);
                stop_loading = true;
                break;
            }
            uint8_t *tk = NULL;
            char msg[512];
            uint8_t id[16];
            memcpy(id, t->id, 16);
            uint32_t v = t->tks[j].version;
            sl_err le = load_tk(ks, id, v, "start", &tk, msg, sizeof msg);
            t = &ks->kr.topics[i];
            if (le) {
                char hex[33];
                sl_uuid_hex(id, hex);
                SL_WARN("kms", "topic key not available at start (retried on use)",
                        "topic_id=%s version=%u detail=\"%s\"", hex, v, msg);
                stop_loading = le == SL_EKMS_UNAVAILABLE;
                break;
            }
            tk_cache_put(ks, id, v, tk);
        }
    }
    pthread_mutex_unlock(&ks->kms_mu);
    if (!e && pthread_create(&ks->thread, NULL, worker_main, ks) != 0) e = SL_ENOMEM;
    if (e) {
        if (!err[0]) snprintf(err, errlen, "encryption at rest: %s", sl_strerror(e));
        sl_keysvc_close(ks);
        return e;
    }
    ks->started = true;
    if (!sl_secmem_locked())
        SL_WARN("kms", "key memory is not locked (mlock refused)", "%s", "keys=unlocked");
    SL_INFO("kms", "key service ready", "provider=%s keyring=%s kek_version=%u topics=%d",
            ks->provider, ks->kr_path, ks->kr.current, ks->kr.ntopics);
    *out = ks;
    return SL_OK;
}

void sl_keysvc_close(sl_keysvc *ks) {
    if (!ks) return;
    if (ks->started) {
        pthread_mutex_lock(&ks->mu);
        ks->stop = true;
        pthread_cond_signal(&ks->cv);
        pthread_mutex_unlock(&ks->mu);
        pthread_join(ks->thread, NULL);
    }
    /* Queued work never ran: its callbacks still run, once, with an error. */
    for (job *j = ks->queue; j; j = j->next) j->result = SL_ECLOSED;
    if (ks->queue) {
        pthread_mutex_lock(&ks->mu);
        *ks->done_tail = ks->queue;
        ks->done_tail = ks->queue_tail;
        ks->queue = NULL;
        pthread_mutex_unlock(&ks->mu);
    }
    if (ks->efd >= 0) sl_keysvc_dispatch(ks);
    cache_sweep(&ks->tkc, NULL, NULL);
    cache_sweep(&ks->dekc, NULL, NULL);
    for (int i = 0; i < atomic_load(&ks->nsys); i++) sl_secmem_free_key(ks->sys[i].tk);
    if (ks->kms) ks->kms->ops->free(ks->kms);
    sl_keyring_free(&ks->kr);
    sl_keyring_free(&ks->base);
    if (ks->lock_fd >= 0) close(ks->lock_fd);
    if (ks->efd >= 0) close(ks->efd);
    pthread_mutex_destroy(&ks->kms_mu);
    pthread_mutex_destroy(&ks->kr_mu);
    pthread_mutex_destroy(&ks->mu);
    pthread_mutex_destroy(&ks->sys_mu);
    pthread_cond_destroy(&ks->cv);
    pthread_cond_destroy(&ks->done_cv);
    free(ks);
}

int sl_keysvc_fd(const sl_keysvc *ks) { return ks ? ks->efd : -1; }

static void finish_op(sl_keysvc *ks, job *j);

void sl_keysvc_dispatch(sl_keysvc *ks) {
    if (!ks) return;
    uint64_t n;
    while (read(ks->efd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&ks->mu);
    job *list = ks->done;
    ks->done = NULL;
    ks->done_tail = &ks->done;
    pthread_mutex_unlock(&ks->mu);
    while (list) {
        job *j = list;
        list = j->next;
        switch (j->kind) {
        case J_EVENT:
            emit_job_event(ks, j);
            break;
        case J_LOAD:
            pending_done(ks, j->topic, j->version);
            if (j->tk) tk_cache_put(ks, j->topic, j->tk_version, j->tk);
            j->tk = NULL;
            break;
        case J_CACHE:
            if (j->tk) tk_cache_put(ks, j->topic, j->tk_version, j->tk);
            j->tk = NULL;
            break;
        case J_OP:
            finish_op(ks, j);
            break;
        case J_SAVE:
            break;
        case J_RELOAD:
            ks->reload_pending = false;
            break;
        }
        sl_secmem_free_key(j->tk);
        free(j);
    }
}

void sl_keysvc_tick(sl_keysvc *ks, int64_t now_ms) {
    if (!ks) return;
    int64_t cut = now_ms - ks->ttl_ms;
    cache_sweep(&ks->tkc, drop_old, &cut);
    cache_sweep(&ks->dekc, drop_old, &cut);
}

/* ---- topics ---- */

sl_err sl_keysvc_topic_ensure_sync(sl_keysvc *ks, const uint8_t topic_id[16], const char *name,
                                   char *err, size_t errlen) {
    if (!ks) return SL_OK;
    pthread_mutex_lock(&ks->kms_mu);
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic(&ks->kr, topic_id);
    bool have = t && t->ntks, shredded = t && t->shredded;
    pthread_mutex_unlock(&ks->kr_mu);
    sl_err e = SL_OK;
    if (shredded) {
        snprintf(err, errlen, "topic %s: its keys were shredded", name ? name : "?");
        e = SL_EKEY_DESTROYED;
    } else if (!have) {
        job *j = calloc(1, sizeof *j);
        char msg[256];
        e = j ? create_tk(ks, topic_id, true, "new topic", &j->tk, &j->tk_version, msg, sizeof msg)
              : SL_ENOMEM;
        if (e) {
            snprintf(err, errlen, "topic %s: %s", name ? name : "?", j ? msg : "out of memory");
            free(j);
        } else {
            char hex[33];
            sl_uuid_hex(topic_id, hex);
            SL_INFO("kms", "topic key created", "topic=%s topic_id=%s version=%u", name ? name : "",
                    hex, j->tk_version);
            j->kind = J_CACHE;
            memcpy(j->topic, topic_id, 16);
            post_done(ks, j);
        }
    }
    pthread_mutex_unlock(&ks->kms_mu);
    return e;
}

uint32_t sl_keysvc_topic_version(sl_keysvc *ks, const uint8_t topic_id[16]) {
    if (!ks) return 0;
    pthread_mutex_lock(&ks->kr_mu);
    uint32_t v = current_tk_locked(&ks->kr, topic_id);
    pthread_mutex_unlock(&ks->kr_mu);
    return v;
}

static sl_err ks_dek_new(void *ctx, const sl_log_keys *k, int64_t seg_base, sl_envelope *env,
                         sl_dek **dek);
static sl_err ks_dek_open(void *ctx, const sl_log_keys *k, const sl_envelope *env, sl_dek **dek);
static const sl_log_keys_ops k_log_ops = {.dek_new = ks_dek_new, .dek_open = ks_dek_open};

sl_err sl_keysvc_log_keys(sl_keysvc *ks, const uint8_t topic_id[16], int32_t partition,
                          int64_t log_end, sl_log_keys *out) {
    if (!ks) return SL_ESTATE;
    if (partition < 0) return SL_EINVAL;
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic_add(&ks->kr, topic_id);
    sl_kr_part *p = t ? sl_keyring_part(t, partition, false) : NULL;
    bool added = false;
    if (t && !p) {
        p = sl_keyring_part(t, partition, true);
        if (p) p->plain_below = log_end > 0 ? log_end : 0;
        added = p != NULL;
    }
    int64_t below = p ? p->plain_below : 0;
    pthread_mutex_unlock(&ks->kr_mu);
    if (!p) return SL_ENOMEM;
    if (added) {
        /* Written by the worker, once for any number of marks made meanwhile. */
        pthread_mutex_lock(&ks->mu);
        bool queued = ks->save_queued;
        ks->save_queued = true;
        pthread_mutex_unlock(&ks->mu);
        job *j = queued ? NULL : calloc(1, sizeof *j);
        if (j) {
            j->kind = J_SAVE;
            enqueue(ks, j);
        } else if (!queued) {
            pthread_mutex_lock(&ks->mu);
            ks->save_queued = false;
            pthread_mutex_unlock(&ks->mu);
        }
    }
    *out =
        (sl_log_keys){.ops = &k_log_ops, .ctx = ks, .partition = partition, .plain_below = below};
    memcpy(out->topic_id, topic_id, 16);
    return SL_OK;
}

/* Loop: shredded (or being shredded) topics refuse everything, whatever the caches hold. */
static bool topic_shredded(sl_keysvc *ks, const uint8_t topic[16]) {
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic(&ks->kr, topic);
    bool s = t && (t->shredded || t->shred_pending);
    pthread_mutex_unlock(&ks->kr_mu);
    return s;
}

bool sl_keysvc_provider_is_local(const sl_keysvc *ks) {
    return ks && !strcmp(ks->provider, "local");
}

static sl_err ks_dek_new(void *ctx, const sl_log_keys *k, int64_t seg_base, sl_envelope *env,
                         sl_dek **dek) {
    sl_keysvc *ks = ctx;
    if (topic_shredded(ks, k->topic_id)) return SL_EKEY_DESTROYED;
    uint32_t v = sl_keysvc_topic_version(ks, k->topic_id);
    const uint8_t *tk = v ? tk_lookup(ks, k->topic_id, v) : NULL;
    if (!tk) {
        queue_load(ks, k->topic_id, v, v ? "cache miss" : "new topic");
        return SL_EKEY_UNAVAILABLE;
    }
    uint32_t id = 0;
    while (!id)
        if (sl_random_key((uint8_t *)&id, sizeof id)) return SL_ENOMEM;
    uint8_t *raw = sl_secmem_alloc_key();
    if (!raw) return SL_ENOMEM;
    uint8_t dctx[64];
    size_t cl = dek_context(dctx, k->topic_id, k->partition, seg_base, id);
    size_t wl = 0;
    sl_err e = sl_random_key(raw, 32);
    if (!e) e = sl_kwp_wrap(tk, dctx, cl, raw, 32, env->wrapped, sizeof env->wrapped, &wl);
    sl_dek *d = NULL;
    if (!e) e = sl_dek_new(id, raw, &d);
    sl_secmem_free_key(raw);
    if (e) return e;
    env->alg = SL_ENV_ALG_AES256GCM;
    env->dek_id = id;
    memcpy(env->topic_id, k->topic_id, 16);
    env->partition = k->partition;
    env->seg_base = seg_base;
    env->tk_version = v;
    env->wrapped_len = (uint8_t)wl;
    uint8_t ck[32];
    dek_key(ck, k->topic_id, k->partition, seg_base, id);
    centry *c = ks->dekc.n < MAX_DEKS ? cache_put(&ks->dekc, ck) : NULL;
    if (c) {
        c->dek = sl_dek_ref(d);
        c->used_ms = sl_mono_ms();
    }
    *dek = d;
    return SL_OK;
}

void sl_keysvc_tamper(sl_keysvc *ks, const uint8_t topic_id[16], int32_t partition,
                      const char *what) {
    if (!ks) return;
    atomic_fetch_add(&g_tamper, 1);
    char hex[33];
    sl_uuid_hex(topic_id, hex);
    SL_ERROR("kms", "stored data failed authentication", "topic_id=%s partition=%d what=\"%s\"",
             hex, partition, what ? what : "");
    if (!ks->hub) return;
    sl_event ev = {.kind = SL_EV_KEY};
    ev.key = (sl_ev_key){.op = "tamper",
                         .provider = ks->provider,
                         .topic = hex,
                         .partition = partition,
                         .reason = what ? what : "authentication failed",
                         .success = false,
                         .detail = "stored data failed authentication"};
    sl_events_emit(ks->hub, &ev);
}

static sl_err ks_dek_open(void *ctx, const sl_log_keys *k, const sl_envelope *env, sl_dek **dek) {
    sl_keysvc *ks = ctx;
    if (topic_shredded(ks, k->topic_id)) return SL_EKEY_DESTROYED;
    uint8_t ck[32];
    dek_key(ck, k->topic_id, k->partition, env->seg_base, env->dek_id);
    centry *c = cache_get(&ks->dekc, ck);
    if (c) {
        c->used_ms = sl_mono_ms();
        if (c->neg) return c->neg;
        *dek = sl_dek_ref(c->dek);
        return SL_OK;
    }
    /* A segment copied from another topic or partition names it; it would fail below anyway,
     * but saying so is clearer than a failed unwrap. */
    bool foreign = memcmp(env->topic_id, k->topic_id, 16) || env->partition != k->partition;
    pthread_mutex_lock(&ks->kr_mu);
    bool known = sl_keyring_tk(sl_keyring_topic(&ks->kr, k->topic_id), env->tk_version) != NULL;
    pthread_mutex_unlock(&ks->kr_mu);
    sl_err e = SL_OK;
    const char *what = NULL;
    uint8_t *raw = NULL;
    if (foreign) {
        e = SL_ETAMPER, what = "segment envelope names another topic or partition";
    } else if (!known) {
        e = SL_ETAMPER, what = "segment names a topic key version the keyring does not have";
    } else {
        const uint8_t *tk = tk_lookup(ks, k->topic_id, env->tk_version);
        if (!tk) {
            queue_load(ks, k->topic_id, env->tk_version, "cache miss");
            return SL_EKEY_UNAVAILABLE;
        }
        raw = sl_secmem_alloc_key();
        if (!raw) return SL_ENOMEM;
        uint8_t dctx[64];
        size_t cl = dek_context(dctx, k->topic_id, k->partition, env->seg_base, env->dek_id);
        size_t ol = 0;
        e = env->wrapped_len <= sizeof env->wrapped
                ? sl_kwp_unwrap(tk, dctx, cl, env->wrapped, env->wrapped_len, raw, 32, &ol)
                : SL_ETAMPER;
        if (e == SL_EINVAL || (!e && ol != 32)) e = SL_ETAMPER;
        if (e == SL_ETAMPER) what = "wrapped DEK does not unwrap under the topic key";
    }
    sl_dek *d = NULL;
    if (!e) e = sl_dek_new(env->dek_id, raw, &d);
    sl_secmem_free_key(raw);
    if (e == SL_ETAMPER) {
        sl_keysvc_tamper(ks, k->topic_id, k->partition, what);
        c = ks->dekc.n < MAX_DEKS ? cache_put(&ks->dekc, ck) : NULL;
        if (c) {
            c->neg = SL_ETAMPER;
            c->used_ms = sl_mono_ms();
        }
        return e;
    }
    if (e) return e;
    c = ks->dekc.n < MAX_DEKS ? cache_put(&ks->dekc, ck) : NULL;
    if (c) {
        c->dek = sl_dek_ref(d);
        c->used_ms = sl_mono_ms();
    }
    *dek = d;
    return SL_OK;
}

/* ---- blobs under the system key ----
 * magic "SLBLOB01" | u32 system key version | u8 wlen | wrapped DEK | nonce[12] | ciphertext |
 * tag[16]. The DEK is wrapped under the system key with context "sluice/blob/v1"|name, and
 * the header bytes plus the name are the GCM associated data: a blob renamed or with an edited
 * header does not open. A random nonce is safe: each blob DEK seals exactly one message. */
#define BLOB_MAGIC "SLBLOB01"
#define BLOB_HDR   (8 + 4 + 1 + SL_KWP_WRAPPED_32 + SL_AEAD_NONCE)

bool sl_keysvc_is_sealed_blob(const uint8_t *p, size_t n) {
    return n >= 8 && !memcmp(p, BLOB_MAGIC, 8);
}

static size_t blob_context(uint8_t *out, size_t cap, const char *name) {
    static const char pfx[] = "sluice/blob/v1|";
    size_t nl = strlen(name);
    if (nl > cap - sizeof pfx) nl = cap - sizeof pfx;
    memcpy(out, pfx, sizeof pfx - 1);
    memcpy(out + sizeof pfx - 1, name, nl);
    return sizeof pfx - 1 + nl;
}

static void want_sys_key(sl_keysvc *ks, uint32_t version) {
    /* Not from the loop's pending table (any thread may call): the worker skips a key it
     * already has, so a few duplicate requests cost nothing but a queue entry. */
    job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->kind = J_LOAD;
    j->version = version;
    snprintf(j->reason, sizeof j->reason, "cache miss");
    enqueue(ks, j);
}

sl_err sl_keysvc_seal_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen) {
    if (!ks || !name) return SL_ESTATE;
    if (n > (size_t)1 << 30) return SL_ETOOLARGE;
    uint32_t v = sl_keysvc_topic_version(ks, k_zero);
    const uint8_t *tk = sys_get(ks, v);
    if (!tk) {
        want_sys_key(ks, v);
        return SL_EKEY_UNAVAILABLE;
    }
    uint8_t *b = malloc(BLOB_HDR + n + SL_AEAD_TAG);
    uint8_t *raw = sl_secmem_alloc_key();
    if (!b || !raw) {
        free(b);
        sl_secmem_free_key(raw);
        return SL_ENOMEM;
    }
    memcpy(b, BLOB_MAGIC, 8);
    be32(b + 8, v);
    b[12] = SL_KWP_WRAPPED_32;
    uint8_t ctx[300];
    size_t cl = blob_context(ctx, sizeof ctx, name), wl = 0;
    sl_aead *a = NULL;
    sl_err e = sl_random_key(raw, 32);
    if (!e) e = sl_kwp_wrap(tk, ctx, cl, raw, 32, b + 13, SL_KWP_WRAPPED_32, &wl);
    if (!e) e = sl_random_key(b + 13 + SL_KWP_WRAPPED_32, SL_AEAD_NONCE);
    if (!e) e = sl_aead_new(raw, &a);
    sl_secmem_free_key(raw);
    if (!e) {
        memcpy(b + BLOB_HDR, in, n);
        /* AAD: the header, then the name (so a blob renamed fails). */
        size_t al = BLOB_HDR + strlen(name);
        uint8_t *aad = malloc(al);
        if (!aad) e = SL_ENOMEM;
        if (aad) {
            memcpy(aad, b, BLOB_HDR);
            memcpy(aad + BLOB_HDR, name, strlen(name));
            sl_aead_part part = {b + BLOB_HDR, n};
            e = sl_aead_seal(a, b + 13 + SL_KWP_WRAPPED_32, aad, al, &part, 1, b + BLOB_HDR + n);
            free(aad);
        }
    }
    sl_aead_free(a);
    if (e) {
        free(b);
        return e;
    }
    *out = b;
    *outlen = BLOB_HDR + n + SL_AEAD_TAG;
    return SL_OK;
}

sl_err sl_keysvc_open_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen) {
    if (!ks || !name) return SL_ESTATE;
    if (n < BLOB_HDR + SL_AEAD_TAG || !sl_keysvc_is_sealed_blob(in, n) ||
        in[12] != SL_KWP_WRAPPED_32)
        return SL_ETAMPER;
    uint32_t v = rd32(in + 8);
    const uint8_t *tk = sys_get(ks, v);
    if (!tk) {
        pthread_mutex_lock(&ks->kr_mu);
        bool known = sl_keyring_tk(sl_keyring_topic(&ks->kr, k_zero), v) != NULL;
        pthread_mutex_unlock(&ks->kr_mu);
        if (!known) return SL_ETAMPER;
        want_sys_key(ks, v);
        return SL_EKEY_UNAVAILABLE;
    }
    uint8_t *raw = sl_secmem_alloc_key();
    size_t cn = n - BLOB_HDR - SL_AEAD_TAG;
    uint8_t *b = malloc(cn ? cn : 1);
    size_t al = BLOB_HDR + strlen(name);
    uint8_t *aad = malloc(al);
    if (!raw || !b || !aad) {
        sl_secmem_free_key(raw);
        free(b);
        free(aad);
        return SL_ENOMEM;
    }
    uint8_t ctx[300];
    size_t cl = blob_context(ctx, sizeof ctx, name), ol = 0;
    sl_aead *a = NULL;
    sl_err e = sl_kwp_unwrap(tk, ctx, cl, in + 13, SL_KWP_WRAPPED_32, raw, 32, &ol);
    if (e == SL_EINVAL || (!e && ol != 32)) e = SL_ETAMPER;
    if (!e) e = sl_aead_new(raw, &a);
    sl_secmem_free_key(raw);
    if (!e) {
        memcpy(b, in + BLOB_HDR, cn);
        memcpy(aad, in, BLOB_HDR);
        memcpy(aad + BLOB_HDR, name, strlen(name));
        sl_aead_part part = {b, cn};
        e = sl_aead_open(a, in + 13 + SL_KWP_WRAPPED_32, aad, al, &part, 1, in + BLOB_HDR + cn);
    }
    sl_aead_free(a);
    free(aad);
    if (e) {
        OPENSSL_cleanse(b, cn);
        free(b);
        if (e == SL_ETAMPER) atomic_fetch_add(&g_tamper, 1);
        return e;
    }
    *out = b;
    *outlen = cn;
    return SL_OK;
}

/* ---- lifecycle ---- */

static const char *op_name(sl_keyop op) {
    switch (op) {
    case SL_KEYOP_ROTATE:
        return "rotate";
    case SL_KEYOP_REWRAP:
        return "rewrap";
    case SL_KEYOP_RETIRE:
        return "retire";
    case SL_KEYOP_SHRED:
        return "shred";
    case SL_KEYOP_TK_ROTATE:
        return "tk_rotate";
    }
    return "?";
}

static void op_rotate(sl_keysvc *ks, job *j) {
    pthread_mutex_lock(&ks->kr_mu);
    uint32_t v = 0;
    for (int i = 0; i < ks->kr.nkeks; i++)
        if (ks->kr.keks[i].ref.version > v) v = ks->kr.keks[i].ref.version;
    if (ks->kr.current > v) v = ks->kr.current;
    v++;
    pthread_mutex_unlock(&ks->kr_mu);
    sl_kms_keyref ref;
    j->result = kms_generate(ks, v, &ref, j->reason);
    if (j->result) {
        snprintf(j->msg, sizeof j->msg, "the provider could not create KEK version %u: %s", v,
                 sl_strerror(j->result));
        return;
    }
    pthread_mutex_lock(&ks->kr_mu);
    uint32_t old = ks->kr.current;
    bool ok = sl_keyring_kek_add(&ks->kr, &ref) != NULL;
    if (ok) ks->kr.current = v;
    pthread_mutex_unlock(&ks->kr_mu);
    j->result = ok ? save_keyring(ks) : SL_ENOMEM;
    if (j->result) {
        pthread_mutex_lock(&ks->kr_mu);
        ks->kr.current = old;
        sl_keyring_kek_remove(&ks->kr, v);
        pthread_mutex_unlock(&ks->kr_mu);
        snprintf(j->msg, sizeof j->msg, "cannot write the keyring: %s", sl_strerror(j->result));
        return;
    }
    kms_describe(ks, v, j->reason);
    snprintf(j->msg, sizeof j->msg,
             "KEK version %u (%s) is current; new topic keys use it (run rewrap to move the "
             "existing ones)",
             v, ref.id);
}

typedef struct rw_item {
    uint8_t topic[16];
    sl_kr_tk tk;
} rw_item;

static void op_rewrap(sl_keysvc *ks, job *j) {
    pthread_mutex_lock(&ks->kr_mu);
    uint32_t cur = ks->kr.current;
    sl_kr_kek *ck = sl_keyring_kek(&ks->kr, cur);
    sl_kms_keyref curref = ck ? ck->ref : (sl_kms_keyref){{0}, 0};
    int n = 0;
    for (int i = 0; i < ks->kr.ntopics; i++)
        for (int k = 0; k < ks->kr.topics[i].ntks; k++)
            if (ks->kr.topics[i].tks[k].kek_version != cur) n++;
    rw_item *items = n ? calloc((size_t)n, sizeof *items) : NULL;
    int m = 0;
    for (int i = 0; items && i < ks->kr.ntopics; i++)
        for (int k = 0; k < ks->kr.topics[i].ntks; k++)
            if (ks->kr.topics[i].tks[k].kek_version != cur) {
                memcpy(items[m].topic, ks->kr.topics[i].id, 16);
                items[m++].tk = ks->kr.topics[i].tks[k];
            }
    pthread_mutex_unlock(&ks->kr_mu);
    if (n && !items) {
        j->result = SL_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "out of memory");
        return;
    }
    int done = 0, failed = 0;
    sl_err first = SL_OK;
    uint8_t *raw = sl_secmem_alloc_key();
    for (int i = 0; raw && i < m; i++) {
        pthread_mutex_lock(&ks->kr_mu);
        sl_kr_kek *ok_ = sl_keyring_kek(&ks->kr, items[i].tk.kek_version);
        sl_kms_keyref oldref = ok_ ? ok_->ref : (sl_kms_keyref){{0}, 0};
        pthread_mutex_unlock(&ks->kr_mu);
        sl_kr_tk nw = items[i].tk;
        size_t wl = 0;
        sl_err e = kms_unwrap(ks, &oldref, items[i].topic, &items[i].tk, raw, j->reason);
        if (!e)
            e = kms_wrap(ks, &curref, items[i].topic, nw.version, raw, nw.wrapped, &wl, j->reason);
        OPENSSL_cleanse(raw, 32);
        if (!e) {
            nw.wlen = (uint16_t)wl;
            nw.kek_version = cur;
            pthread_mutex_lock(&ks->kr_mu);
            sl_kr_tk *live = sl_keyring_tk(sl_keyring_topic(&ks->kr, items[i].topic), nw.version);
            if (live && live->kek_version == items[i].tk.kek_version) *live = nw;
            pthread_mutex_unlock(&ks->kr_mu);
            done++;
        } else {
            if (!first) first = e;
            failed++;
        }
    }
    sl_secmem_free_key(raw);
    if (!raw && m) first = SL_ENOMEM, failed = m;
    free(items);
    sl_err se = done ? save_keyring(ks) : SL_OK;
    j->result = se ? se : first;
    if (se)
        snprintf(j->msg, sizeof j->msg, "cannot write the keyring: %s", sl_strerror(se));
    else
        snprintf(j->msg, sizeof j->msg, "re-wrapped %d topic key version(s) under KEK version %u%s",
                 done, cur, failed ? " (some failed: see the log; run rewrap again)" : "");
    if (failed)
        SL_WARN("kms", "rewrap incomplete", "done=%d failed=%d err=%s", done, failed,
                sl_strerror(first));
}

static void op_retire(sl_keysvc *ks, job *j) {
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_kek *k = sl_keyring_kek(&ks->kr, j->version);
    sl_kms_keyref ref = k ? k->ref : (sl_kms_keyref){{0}, 0};
    int users = 0;
    for (int i = 0; i < ks->kr.ntopics; i++)
        for (int t = 0; t < ks->kr.topics[i].ntks; t++)
            users += ks->kr.topics[i].tks[t].kek_version == j->version;
    uint32_t cur = ks->kr.current;
    pthread_mutex_unlock(&ks->kr_mu);
    if (!k) {
        j->result = SL_ENOTFOUND;
        snprintf(j->msg, sizeof j->msg, "no KEK version %u", j->version);
    } else if (j->version == cur) {
        j->result = SL_ESTATE;
        snprintf(j->msg, sizeof j->msg, "KEK version %u is current: rotate first", j->version);
    } else if (users) {
        j->result = SL_ESTATE;
        snprintf(j->msg, sizeof j->msg,
                 "KEK version %u still wraps %d topic key version(s): run rewrap first", j->version,
                 users);
    } else {
        j->result = kms_destroy(ks, &ref, j->reason, j->msg, sizeof j->msg);
        if (!j->result) {
            pthread_mutex_lock(&ks->kr_mu);
            sl_keyring_kek_remove(&ks->kr, j->version);
            pthread_mutex_unlock(&ks->kr_mu);
            j->result = save_keyring(ks);
            if (j->result)
                snprintf(j->msg, sizeof j->msg, "destroyed %s but cannot write the keyring",
                         ref.id);
            else
                snprintf(j->msg, sizeof j->msg, "KEK version %u (%s) destroyed", j->version,
                         ref.id);
        }
    }
}

static void op_shred(sl_keysvc *ks, job *j) {
    if (is_sys(j->topic)) {
        j->result = SL_EINVAL;
        snprintf(j->msg, sizeof j->msg, "the system key cannot be shredded");
        return;
    }
    pthread_mutex_lock(&ks->kr_mu);
    /* A topic that never had keys (created with encryption off) is marked too: nothing may
     * ever be encrypted under it again. */
    sl_kr_topic *t = sl_keyring_topic_add(&ks->kr, j->topic);
    sl_kr_tk *old = NULL;
    int nold = 0;
    bool was = t && t->shredded;
    if (t) {
        old = t->tks;
        nold = t->ntks;
        t->tks = NULL;
        t->ntks = 0;
        t->shredded = true;
    }
    pthread_mutex_unlock(&ks->kr_mu);
    if (!t) {
        j->result = SL_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "out of memory");
        return;
    }
    j->result = save_keyring(ks);
    if (j->result) { /* nothing destroyed: memory must say what the file says */
        pthread_mutex_lock(&ks->kr_mu);
        t = sl_keyring_topic(&ks->kr, j->topic);
        t->tks = old;
        t->ntks = nold;
        t->shredded = was;
        pthread_mutex_unlock(&ks->kr_mu);
        snprintf(j->msg, sizeof j->msg, "cannot write the keyring: %s", sl_strerror(j->result));
        return;
    }
    if (old) OPENSSL_cleanse(old, sizeof *old * (size_t)nold);
    free(old);
    snprintf(j->msg, sizeof j->msg,
             "destroyed %d topic key version(s): every copy of the topic's data is unreadable "
             "(older copies of the keyring excepted)",
             nold);
}

static void run_op(sl_keysvc *ks, job *j) {
    pthread_mutex_lock(&ks->kms_mu);
    /* Every lifecycle step under the keyring's cross-process lock, on the file as it is now:
     * another process sharing it may have rotated, rewrapped, retired or shredded meanwhile
     * (and the local provider's KEK file, written by generate and destroy, is serialized by
     * the same lock). */
    kr_lock(ks);
    (void)sync_disk(ks, NULL);
    switch (j->op) {
    case SL_KEYOP_ROTATE:
        op_rotate(ks, j);
        break;
    case SL_KEYOP_REWRAP:
        op_rewrap(ks, j);
        break;
    case SL_KEYOP_RETIRE:
        op_retire(ks, j);
        break;
    case SL_KEYOP_SHRED:
        op_shred(ks, j);
        break;
    case SL_KEYOP_TK_ROTATE:
        j->result = create_tk(ks, j->topic, j->version == 1, j->reason, &j->tk, &j->tk_version,
                              j->msg, sizeof j->msg);
        if (!j->result && is_sys(j->topic)) {
            sys_put(ks, j->tk_version, j->tk);
            j->tk = NULL;
        }
        break;
    }
    /* The lifecycle step itself, after the provider calls it made. */
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_kek *ck = sl_keyring_kek(&ks->kr, j->op == SL_KEYOP_RETIRE ? 0 : ks->kr.current);
    sl_kms_keyref ref = ck ? ck->ref : (sl_kms_keyref){{0}, 0};
    pthread_mutex_unlock(&ks->kr_mu);
    if (j->op == SL_KEYOP_RETIRE) {
        snprintf(ref.id, sizeof ref.id, "%s:%u", ks->provider, j->version);
        ref.version = j->version;
    }
    bool per_topic = j->op == SL_KEYOP_SHRED || j->op == SL_KEYOP_TK_ROTATE;
    post_event(ks, op_name(j->op), ref.version ? &ref : NULL, per_topic ? j->topic : NULL,
               j->reason, j->result, j->msg, 0);
    kr_unlock(ks);
    pthread_mutex_unlock(&ks->kms_mu);
}

static void finish_op(sl_keysvc *ks, job *j) {
    if (j->op == SL_KEYOP_SHRED) {
        /* Again after the durable removal: nothing loaded meanwhile survives. */
        cache_sweep(&ks->tkc, drop_topic, j->topic);
        cache_sweep(&ks->dekc, drop_topic, j->topic);
        pthread_mutex_lock(&ks->kr_mu);
        sl_kr_topic *t = sl_keyring_topic(&ks->kr, j->topic);
        if (t) t->shred_pending = false;
        pthread_mutex_unlock(&ks->kr_mu);
        if (!j->result && ks->on_shred) ks->on_shred(ks->on_shred_ctx, j->topic);
    }
    if (j->op == SL_KEYOP_TK_ROTATE && j->tk) {
        tk_cache_put(ks, j->topic, j->tk_version, j->tk);
        j->tk = NULL;
    }
    if (j->cb) j->cb(j->ctx, j->result, j->msg);
}

void sl_keysvc_op(sl_keysvc *ks, sl_keyop op, const uint8_t topic_id[16], uint32_t version,
                  const char *reason, sl_keysvc_cb cb, void *ctx) {
    if (!ks) {
        if (cb) cb(ctx, SL_ESTATE, "encryption at rest is off");
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        if (cb) cb(ctx, SL_ENOMEM, "out of memory");
        return;
    }
    j->kind = J_OP;
    j->op = op;
    if (topic_id) memcpy(j->topic, topic_id, 16);
    j->version = version;
    snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : op_name(op));
    j->cb = cb;
    j->ctx = ctx;
    if (op == SL_KEYOP_SHRED && topic_id && !is_sys(topic_id)) {
        /* From now on the topic's keys are refused, before the worker even starts: no read in
         * flight finishes with a key that is about to be destroyed. */
        pthread_mutex_lock(&ks->kr_mu);
        sl_kr_topic *t = sl_keyring_topic(&ks->kr, topic_id);
        if (t) t->shred_pending = true;
        pthread_mutex_unlock(&ks->kr_mu);
        cache_sweep(&ks->tkc, drop_topic, topic_id);
        cache_sweep(&ks->dekc, drop_topic, topic_id);
    }
    enqueue(ks, j);
}

/* ---- status ---- */

static void jstr(sl_text *b, const char *s) {
    sl_text_put(b, "\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sl_text_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sl_text_printf(b, "\\u%04x", c);
        else
            sl_text_put(b, (const char *)&c, 1);
    }
    sl_text_put(b, "\"", 1);
}

void sl_keysvc_status_json(sl_keysvc *ks, sl_text *out) {
    if (!ks) {
        sl_text_puts(out, "{\"enabled\":false}");
        return;
    }
    sl_text_puts(out, "{\"enabled\":true,\"provider\":");
    jstr(out, ks->provider);
    sl_text_puts(out, ",\"keyring\":");
    jstr(out, ks->kr_path);
    pthread_mutex_lock(&ks->kr_mu);
    sl_text_printf(out, ",\"current_kek_version\":%u,\"keks\":[", ks->kr.current);
    for (int i = 0; i < ks->kr.nkeks; i++) {
        const sl_kr_kek *k = &ks->kr.keks[i];
        sl_text_puts(out, i ? ",{\"id\":" : "{\"id\":");
        jstr(out, k->ref.id);
        sl_text_printf(out, ",\"version\":%u,\"current\":%s,\"describe\":", k->ref.version,
                       k->ref.version == ks->kr.current ? "true" : "false");
        jstr(out, k->describe);
        sl_text_puts(out, "}");
    }
    sl_text_puts(out, "],\"topics\":[");
    for (int i = 0; i < ks->kr.ntopics; i++) {
        const sl_kr_topic *t = &ks->kr.topics[i];
        char hex[33];
        sl_uuid_hex(t->id, hex);
        /* "field": a field key (protect/sl_fkeys.h), not a topic: readers of this status must
         * not report it as a topic missing from the registry. "kind" names every entry: a
         * gateway's record-encryption key of a topic (gateway/sl_gwcrypt.h, 0xFE) is neither a
         * broker topic's key nor a field key. */
        const char *kind = is_sys(t->id)      ? "system"
                           : t->id[0] == 0xFF ? "field"
                           : t->id[0] == 0xFE ? "gateway-topic"
                                              : "topic";
        sl_text_printf(out,
                       "%s{\"id\":\"%s\",\"system\":%s,\"field\":%s,\"kind\":\"%s\","
                       "\"shredded\":%s,\"versions\":[",
                       i ? "," : "", hex, is_sys(t->id) ? "true" : "false",
                       t->id[0] == 0xFF ? "true" : "false", kind,
                       t->shredded || t->shred_pending ? "true" : "false");
        for (int k = 0; k < t->ntks; k++) {
            uint8_t ck[32];
            tk_key(ck, t->id, t->tks[k].version);
            bool loaded = is_sys(t->id) ? sys_get(ks, t->tks[k].version) != NULL
                                        : cache_get(&ks->tkc, ck) != NULL;
            sl_text_printf(out, "%s{\"version\":%u,\"kek_version\":%u,\"loaded\":%s}", k ? "," : "",
                           t->tks[k].version, t->tks[k].kek_version, loaded ? "true" : "false");
        }
        sl_text_printf(out, "],\"partitions\":%d}", t->nparts);
    }
    pthread_mutex_unlock(&ks->kr_mu);
    sl_text_printf(out,
                   "],\"cache\":{\"topic_keys\":%d,\"system_keys\":%d,\"deks\":%d,"
                   "\"ttl_ms\":%lld,\"loads_in_flight\":%d},\"secmem_locked\":%s}",
                   ks->tkc.n, atomic_load(&ks->nsys), ks->dekc.n, (long long)ks->ttl_ms,
                   ks->npending, sl_secmem_locked() ? "true" : "false");
}

void sl_keysvc_on_shred(sl_keysvc *ks, void (*fn)(void *ctx, const uint8_t topic_id[16]),
                        void *ctx) {
    if (!ks) return;
    ks->on_shred = fn;
    ks->on_shred_ctx = ctx;
}

/* ---- field keys (other keys of the keyring) ---- */

/* Loop, local provider only: waits (at most sluice.kms.timeout.ms) for the worker to post the
 * load of (id, version) that queue_load asked for, as the topics module waits for a topic key
 * the loop needs (ensure_blocking): the loop itself makes no provider call. The key is then
 * adopted from the done list by tk_lookup. The load's result, SL_OK when it was not found. */
static sl_err wait_job(sl_keysvc *ks, job_kind kind, const uint8_t id[16], uint32_t version) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    int64_t ns = dl.tv_nsec + (ks->timeout_ms > 0 ? ks->timeout_ms : 1000) * 1000000;
    dl.tv_sec += ns / 1000000000;
    dl.tv_nsec = ns % 1000000000;
    sl_err r = SL_EKEY_UNAVAILABLE;
    pthread_mutex_lock(&ks->mu);
    for (;;) {
        bool found = false;
        for (job *j = ks->done; j && !found; j = j->next)
            if (j->kind == kind &&
                (kind == J_RELOAD || (j->version == version && !memcmp(j->topic, id, 16)))) {
                found = true;
                r = j->result;
            }
        if (found || pthread_cond_timedwait(&ks->done_cv, &ks->mu, &dl) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&ks->mu);
    return r;
}

/* Loop: asks the worker to reread the keyring file if it changed on disk (another process
 * sharing it created, rotated, rewrapped or shredded a key), at most every RECHECK_MS. With
 * `wait` and the local provider, waits for it as for a load. True when a reread has run. */
static bool reload(sl_keysvc *ks, bool wait) {
    if (!ks->reload_pending) {
        int64_t now = sl_mono_ms();
        if (ks->reload_ms && now - ks->reload_ms < RECHECK_MS) return false;
        job *j = calloc(1, sizeof *j);
        if (!j) return false;
        j->kind = J_RELOAD;
        ks->reload_ms = now;
        ks->reload_pending = true;
        enqueue(ks, j);
    }
    if (!wait || !sl_keysvc_provider_is_local(ks)) return false;
    return wait_job(ks, J_RELOAD, NULL, 0) != SL_EKEY_UNAVAILABLE;
}

sl_err sl_keysvc_key_get(sl_keysvc *ks, const uint8_t id[16], uint32_t version, uint8_t out[32],
                         uint32_t *outv) {
    if (!ks || !is_field(id)) return SL_ENOTFOUND;
    uint32_t v = 0;
    for (int pass = 0;; pass++) {
        pthread_mutex_lock(&ks->kr_mu);
        sl_kr_topic *t = sl_keyring_topic(&ks->kr, id);
        bool shredded = t && (t->shredded || t->shred_pending);
        v = version ? version : current_tk_locked(&ks->kr, id);
        bool have = v && sl_keyring_tk(t, v) != NULL;
        pthread_mutex_unlock(&ks->kr_mu);
        if (shredded) return SL_EKEY_DESTROYED;
        if (have) break;
        /* A miss: the file may have changed (another gateway made the key or a new version).
         * Never queue_load(..., 0): that would create version 1. */
        if (pass) return SL_ENOTFOUND; /* not in the file either */
        if (!reload(ks, true)) return ks->reload_pending ? SL_EKEY_UNAVAILABLE : SL_ENOTFOUND;
    }
    /* The current version: a rotation made by another process is noticed within RECHECK_MS. */
    if (!version) reload(ks, false);
    const uint8_t *tk = tk_lookup(ks, id, v);
    if (!tk) {
        if (!queue_load(ks, id, v, "cache miss")) return SL_EKEY_UNAVAILABLE;
        if (!sl_keysvc_provider_is_local(ks)) return SL_EKEY_UNAVAILABLE;
        sl_err e = wait_job(ks, J_LOAD, id, v);
        if (e == SL_EKEY_DESTROYED) return e;
        tk = tk_lookup(ks, id, v);
        if (!tk) return SL_EKEY_UNAVAILABLE;
    }
    memcpy(out, tk, 32);
    if (outv) *outv = v;
    return SL_OK;
}

int sl_keysvc_key_versions(sl_keysvc *ks, const uint8_t id[16], uint32_t *versions, int cap) {
    if (!ks || !is_field(id)) return 0;
    int n = 0;
    pthread_mutex_lock(&ks->kr_mu);
    sl_kr_topic *t = sl_keyring_topic(&ks->kr, id);
    if (t && !t->shredded && !t->shred_pending)
        for (int i = 0; i < t->ntks && n < cap; i++) versions[n++] = t->tks[i].version;
    pthread_mutex_unlock(&ks->kr_mu);
    return n;
}
