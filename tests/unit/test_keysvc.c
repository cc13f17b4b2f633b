/* Key service tests: locked memory, the local provider and its master-key sources, the keyring
 * file, the caches, KMS outages (a fake provider), the lifecycle ops, events and blobs. Each test
 * runs in its own mkdtemp directory. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit/sl_audit.h"
#include "base/sl_config.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_dek.h"
#include "crypto/sl_secmem.h"
#include "events/sl_events.h"
#include "gateway/sl_gwcrypt.h"
#include "kms/sl_keyring.h"
#include "kms/sl_keysvc.h"
#include "kms/sl_kms.h"
#include "net/sl_loop.h"
#include "sl_test.h"
#include "storage/sl_envelope.h"

static char *kv_tmpdir(void) {
    char *t = malloc(64);
    snprintf(t, 64, "/tmp/sl_keysvc_XXXXXX");
    return mkdtemp(t);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* A config whose data directory is <dir>/data (so the default master key is <dir>/...). */
static sl_config *kv_cfg(const char *dir) {
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    char p[512], err[256];
    snprintf(p, sizeof p, "%s/data", dir);
    mkdir(p, 0700);
    if (sl_config_set(c, "log.dirs", p, err, sizeof err)) abort();
    if (sl_config_set(c, "sluice.kms.local.master.key.env", "SLUICE_TEST_NO_SUCH_VAR", err,
                      sizeof err))
        abort();
    return c;
}

/* ---- events ---- */

typedef struct evlog {
    int n, failed, tamper;
    char last_op[32], last_reason[32];
} evlog;

static void on_ev(void *ctx, const sl_event *e) {
    evlog *l = ctx;
    if (e->kind != SL_EV_KEY) return;
    l->n++;
    if (!e->key.success) l->failed++;
    if (!strcmp(e->key.op, "tamper")) l->tamper++;
    snprintf(l->last_op, sizeof l->last_op, "%s", e->key.op);
    snprintf(l->last_reason, sizeof l->last_reason, "%s", e->key.reason ? e->key.reason : "");
}

/* Runs completions until `done` (or, NULL, until the queue has been quiet for 50 ms). */
static bool pump(sl_keysvc *ks, volatile bool *done) {
    int64_t deadline = sl_mono_ms() + 10000;
    while (sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        int r = poll(&p, 1, done ? 20 : 50);
        if (r > 0) sl_keysvc_dispatch(ks);
        if (done ? *done : r == 0) return true;
    }
    return false;
}

/* A key the worker loaded is usable at once, but its event is delivered when the loop
 * dispatches the completion: waits (with a deadline) until the log holds `want` events. */
static void await_events(sl_keysvc *ks, const evlog *ev, int want) {
    int64_t deadline = sl_mono_ms() + 10000;
    while (ev->n < want && sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        if (poll(&p, 1, 20) > 0) sl_keysvc_dispatch(ks);
    }
}

typedef struct opres {
    bool done;
    sl_err e;
    char msg[512];
} opres;

static void op_cb(void *ctx, sl_err e, const char *msg) {
    opres *r = ctx;
    r->e = e;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
    r->done = true;
}

static sl_err run_op(sl_keysvc *ks, sl_keyop op, const uint8_t *topic, uint32_t v, char *msg) {
    opres r = {0};
    sl_keysvc_op(ks, op, topic, v, NULL, op_cb, &r);
    if (!pump(ks, &r.done)) return SL_ETIMEOUT;
    if (msg) snprintf(msg, 512, "%s", r.msg);
    return r.e;
}

/* ---- a fake provider: KWP under a key per version; can go down; counts calls ---- */

typedef struct fake_kms {
    sl_kms base;
    volatile bool down;
    int calls;
    bool gone[16];
} fake_kms;

static void fake_key(uint32_t v, uint8_t k[32]) { memset(k, (int)(0x40 + v), 32); }

static sl_err f_wrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                     const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                     char *err, size_t errlen) {
    fake_kms *f = (fake_kms *)k;
    f->calls++;
    if (f->down) return SL_EKMS_UNAVAILABLE;
    if (kek->version >= 16 || f->gone[kek->version]) return SL_EKMS_DENIED;
    uint8_t key[32];
    fake_key(kek->version, key);
    return sl_kwp_wrap(key, ctx, ctxlen, plain, n, out, cap, outlen);
}
static sl_err f_unwrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                       const uint8_t *w, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                       char *err, size_t errlen) {
    fake_kms *f = (fake_kms *)k;
    f->calls++;
    if (f->down) {
        snprintf(err, errlen, "fake: down");
        return SL_EKMS_UNAVAILABLE;
    }
    if (kek->version >= 16 || f->gone[kek->version]) return SL_EKMS_DENIED;
    uint8_t key[32];
    fake_key(kek->version, key);
    return sl_kwp_unwrap(key, ctx, ctxlen, w, n, out, cap, outlen);
}
static sl_err f_generate(sl_kms *k, uint32_t version, sl_kms_keyref *out, char *err,
                         size_t errlen) {
    fake_kms *f = (fake_kms *)k;
    f->calls++;
    if (f->down) return SL_EKMS_UNAVAILABLE;
    snprintf(out->id, sizeof out->id, "fake:%u", version);
    out->version = version;
    return version < 16 ? SL_OK : SL_EKMS_DENIED;
}
static sl_err f_describe(sl_kms *k, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                         size_t errlen) {
    fake_kms *f = (fake_kms *)k;
    f->calls++;
    if (f->down) return SL_EKMS_UNAVAILABLE;
    snprintf(out, cap, "fake %s", kek->id);
    return SL_OK;
}
static sl_err f_destroy(sl_kms *k, const sl_kms_keyref *kek, char *err, size_t errlen) {
    fake_kms *f = (fake_kms *)k;
    f->calls++;
    if (f->down) return SL_EKMS_UNAVAILABLE;
    if (kek->version < 16) f->gone[kek->version] = true;
    return SL_OK;
}
static void f_free(sl_kms *k) { (void)k; /* the test owns it */ }
static const sl_kms_ops k_fake_ops = {"fake",     f_wrap,    f_unwrap, f_generate,
                                      f_describe, f_destroy, f_free};

/* ---- helpers over sl_log_keys ---- */

static const uint8_t T1[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t T2[16] = {0xaa, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SYS[16];

static sl_err dek_new(sl_keysvc *ks, const uint8_t *topic, int64_t base, sl_envelope *env) {
    sl_log_keys k;
    sl_err e = sl_keysvc_log_keys(ks, topic, 0, 0, &k);
    if (e) return e;
    sl_dek *d = NULL;
    memset(env, 0, sizeof *env);
    e = k.ops->dek_new(k.ctx, &k, base, env, &d);
    sl_dek_unref(d);
    return e;
}

static sl_err dek_open(sl_keysvc *ks, const uint8_t *topic, const sl_envelope *env) {
    sl_log_keys k;
    sl_err e = sl_keysvc_log_keys(ks, topic, 0, 0, &k);
    if (e) return e;
    sl_dek *d = NULL;
    e = k.ops->dek_open(k.ctx, &k, env, &d);
    sl_dek_unref(d);
    return e;
}

/* dek_open with the (topic, base, env) signature eventually() wants. */
static sl_err dek_open3(sl_keysvc *ks, const uint8_t *topic, int64_t base, sl_envelope *env) {
    (void)base;
    return dek_open(ks, topic, env);
}

/* Retries an operation that answers SL_EKEY_UNAVAILABLE while the key loads. */
static sl_err eventually(sl_keysvc *ks,
                         sl_err (*fn)(sl_keysvc *, const uint8_t *, int64_t, sl_envelope *),
                         const uint8_t *topic, int64_t base, sl_envelope *env) {
    sl_err e = SL_EKEY_UNAVAILABLE;
    for (int i = 0; i < 200 && e == SL_EKEY_UNAVAILABLE; i++) {
        e = fn(ks, topic, base, env);
        if (e == SL_EKEY_UNAVAILABLE) pump(ks, NULL);
    }
    return e;
}

static sl_err open_with_fake(sl_config *c, sl_events *hub, fake_kms *f, sl_keysvc **ks) {
    f->base.ops = &k_fake_ops;
    char err[512];
    sl_err e = sl_keysvc_open_with(c, hub, &f->base, ks, err, sizeof err);
    if (e) fprintf(stderr, "  open: %s\n", err);
    if (!e) pump(*ks, NULL);
    return e;
}

/* ---- tests ---- */

SL_TEST(keysvc_secmem_slots) {
    CHECK(sl_secmem_init(8192)); /* the key service's size: the first call fixes it */
    uint8_t *a = sl_secmem_alloc_key(), *b = sl_secmem_alloc_key();
    CHECK(a && b && a != b);
    for (int i = 0; i < 32; i++) CHECK_EQ(a[i], 0);
    memset(a, 0x5a, 32);
    /* A forked child sees zeros (MADV_WIPEONFORK). */
    pid_t pid = fork();
    if (pid == 0) _exit(a[0] == 0 ? 0 : 1);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(a[0], 0x5a);
    sl_secmem_free_key(a);
    uint8_t *c = sl_secmem_alloc_key(); /* the slot just freed comes back cleansed */
    CHECK(c == a);
    for (int i = 0; i < 32; i++) CHECK_EQ(c[i], 0);
    sl_secmem_free_key(b);
    sl_secmem_free_key(c);
    sl_secmem_free_key(NULL);
}

SL_TEST(keysvc_local_provider_round_trip) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    char err[512] = "", mk[600];
    sl_kms *k = NULL;
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_OK);
    /* The master key was created in the secrets directory beside the data, owner-only. */
    snprintf(mk, sizeof mk, "%s/sluice-secrets/sluice-master.key", dir);
    struct stat st;
    CHECK(stat(mk, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(st.st_size, 32);
    sl_kms_keyref ref;
    CHECK(k->ops->generate(k, 1, &ref, err, sizeof err) == SL_OK);
    CHECK(!strcmp(ref.id, "local:1") && ref.version == 1);
    uint8_t key[32], w[SL_KMS_WRAPPED_MAX], back[64];
    memset(key, 7, sizeof key);
    size_t wl = 0, bl = 0;
    const uint8_t ctx[] = "ctx-a", ctx2[] = "ctx-b";
    CHECK(k->ops->wrap(k, &ref, ctx, 5, key, 32, w, sizeof w, &wl, err, sizeof err) == SL_OK);
    CHECK(k->ops->unwrap(k, &ref, ctx, 5, w, wl, back, sizeof back, &bl, err, sizeof err) == SL_OK);
    CHECK(bl == 32 && !memcmp(back, key, 32));
    CHECK(k->ops->unwrap(k, &ref, ctx2, 5, w, wl, back, sizeof back, &bl, err, sizeof err) ==
          SL_ETAMPER);
    char line[256];
    CHECK(k->ops->describe(k, &ref, line, sizeof line, err, sizeof err) == SL_OK);
    CHECK(strstr(line, "local:1"));
    k->ops->free(k);
    /* A second instance reads the KEK file. */
    k = NULL;
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_OK);
    CHECK(k->ops->unwrap(k, &ref, ctx, 5, w, wl, back, sizeof back, &bl, err, sizeof err) == SL_OK);
    CHECK(k->ops->destroy(k, &ref, err, sizeof err) == SL_OK);
    CHECK(k->ops->unwrap(k, &ref, ctx, 5, w, wl, back, sizeof back, &bl, err, sizeof err) ==
          SL_EKMS_DENIED);
    k->ops->free(k);
    char kf[700];
    snprintf(kf, sizeof kf, "%s/data/sluice-keyring.local-keks", dir);
    CHECK(stat(kf, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    /* The master key lost while KEKs exist: no new one is made, the start fails saying so. */
    CHECK(unlink(mk) == 0);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "missing") && strstr(err, "sluice.kms.local.master.key.file"));
    CHECK(access(mk, F_OK) != 0);
    free(c);
    rm_rf(dir);
    free(dir);
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, p, n) != (ssize_t)n) abort();
    fchmod(fd, mode);
    close(fd);
}

SL_TEST(keysvc_master_key_sources) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    char err[512] = "", p[700];
    sl_kms *k = NULL;
    sl_kms_keyref ref;
    /* Environment variable: no file is created. */
    char err2[256];
    CHECK(sl_config_set(c, "sluice.kms.local.master.key.env", "SLUICE_TEST_MK", err2,
                        sizeof err2) == SL_OK);
    setenv("SLUICE_TEST_MK", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_OK);
    CHECK(k->ops->generate(k, 1, &ref, err, sizeof err) == SL_OK);
    k->ops->free(k);
    snprintf(p, sizeof p, "%s/sluice-secrets/sluice-master.key", dir);
    CHECK(access(p, F_OK) != 0);
    /* Another master key does not open the KEK file, and says why. */
    setenv("SLUICE_TEST_MK", "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
    CHECK(sl_kms_open(c, &k, err, sizeof err) != SL_OK);
    CHECK(strstr(err, "master key"));
    setenv("SLUICE_TEST_MK", "not hex", 1);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.local.master.key.env"));
    unsetenv("SLUICE_TEST_MK");
    /* A systemd credential takes precedence; 64 hex digits accepted there. */
    char cred[600];
    snprintf(cred, sizeof cred, "%s/cred", dir);
    mkdir(cred, 0700);
    snprintf(p, sizeof p, "%s/sluice-master-key", cred);
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    write_file(p, hex, strlen(hex), 0600);
    setenv("CREDENTIALS_DIRECTORY", cred, 1);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_OK); /* same key as the env above */
    uint8_t w[64], key[32] = {1}, back[32];
    size_t wl, bl;
    CHECK(k->ops->wrap(k, &ref, (const uint8_t *)"x", 1, key, 32, w, sizeof w, &wl, err,
                       sizeof err) == SL_OK);
    k->ops->free(k);
    unsetenv("CREDENTIALS_DIRECTORY");
    /* A file: wrong mode and wrong size fail naming the key. */
    snprintf(p, sizeof p, "%s/mk", dir);
    CHECK(sl_config_set(c, "sluice.kms.local.master.key.file", p, err2, sizeof err2) == SL_OK);
    uint8_t raw[32];
    for (int i = 0; i < 32; i++) raw[i] = (uint8_t)(i * 0x11);
    write_file(p, raw, 32, 0644);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.local.master.key.file") && strstr(err, "0600"));
    write_file(p, raw, 31, 0600);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "32 bytes"));
    /* The right 32 raw bytes: the same key as the hex above (0x00,0x11,...,0xff,0x00,...). */
    static const uint8_t same[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
                                     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    write_file(p, same, 32, 0600);
    CHECK(sl_kms_open(c, &k, err, sizeof err) == SL_OK);
    CHECK(k->ops->unwrap(k, &ref, (const uint8_t *)"x", 1, w, wl, back, sizeof back, &bl, err,
                         sizeof err) == SL_OK);
    CHECK(!memcmp(back, key, 32));
    k->ops->free(k);
    free(c);
    rm_rf(dir);
    free(dir);
}

SL_TEST(keysvc_keyring_file_and_reopen) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    char err[512] = "", kr[600];
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK);
    CHECK(ks);
    CHECK_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0); /* no core dumps with keys in the heap */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);              /* (the other tests' business) */
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "orders", err, sizeof err) == SL_OK);
    CHECK_EQ(sl_keysvc_topic_version(ks, T1), 1);
    pump(ks, NULL);
    sl_envelope env;
    CHECK(dek_new(ks, T1, 100, &env) == SL_OK);
    CHECK(env.dek_id != 0 && env.tk_version == 1 && env.wrapped_len == SL_KWP_WRAPPED_32);
    CHECK(env.seg_base == 100 && !memcmp(env.topic_id, T1, 16));
    sl_envelope sys;
    CHECK(dek_new(ks, SYS, 0, &sys) == SL_OK);
    sl_keysvc_close(ks);
    snprintf(kr, sizeof kr, "%s/data/sluice-keyring", dir);
    struct stat st;
    CHECK(stat(kr, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    /* The keyring names topic ids, never names. */
    FILE *f = fopen(kr, "rb");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(n > 0 && !memmem(buf, n, "orders", 6));
    /* Reopen: the same keys open the segments written before. */
    ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK);
    CHECK_EQ(sl_keysvc_topic_version(ks, T1), 1);
    CHECK(dek_open(ks, T1, &env) == SL_OK);
    CHECK(dek_open(ks, SYS, &sys) == SL_OK);
    /* Another segment base in the context: the wrapped DEK does not unwrap (tamper). */
    sl_envelope moved = env;
    moved.seg_base = 200;
    CHECK(dek_open(ks, T1, &moved) == SL_ETAMPER);
    sl_keysvc_close(ks);
    /* A corrupt keyring fails the start, naming the file. */
    f = fopen(kr, "r+b");
    fseek(f, 20, SEEK_SET);
    fputc(0x7e ^ buf[20], f);
    fclose(f);
    ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_ECONFIG);
    CHECK(!ks && strstr(err, kr));
    /* So does a truncated one. */
    CHECK(truncate(kr, 10) == 0);
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_ECONFIG);
    /* Encryption off: no service, no error. */
    char e2[128];
    CHECK(sl_config_set(c, "sluice.encryption.enable", "false", e2, sizeof e2) == SL_OK);
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && !ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

SL_TEST(keysvc_cache_ttl_and_outage) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    sl_events hub = {0};
    evlog ev = {0};
    sl_events_subscribe(&hub, on_ev, &ev);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, &hub, &f, &ks) == SL_OK);
    char err[512];
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T2, "b", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    CHECK_EQ(ev.n, f.calls); /* one event per provider call, start included */
    sl_envelope e1, e2;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    CHECK(dek_new(ks, T2, 0, &e2) == SL_OK);
    /* Cache hits call nothing and say nothing. */
    int calls = f.calls, events = ev.n;
    for (int i = 0; i < 5; i++) CHECK(dek_open(ks, T1, &e1) == SL_OK);
    sl_envelope tmp;
    CHECK(dek_new(ks, T1, 10, &tmp) == SL_OK);
    pump(ks, NULL);
    CHECK_EQ(f.calls, calls);
    CHECK_EQ(ev.n, events);
    /* TTL: everything unused for the TTL goes; the next use loads (one unwrap, one event). */
    sl_keysvc_stats s0, s1;
    sl_keysvc_stats_get(&s0);
    CHECK(s0.keys_cached >= 3 && !strcmp(s0.provider, "fake"));
    sl_keysvc_tick(ks, sl_mono_ms() + c->sluice_kms_cache_ttl_ms + 1000);
    sl_keysvc_stats_get(&s1);
    CHECK(s1.keys_cached < s0.keys_cached);
    CHECK(dek_open(ks, T1, &e1) == SL_EKEY_UNAVAILABLE);
    CHECK(eventually(ks, dek_new, T1, 20, &tmp) == SL_OK);
    CHECK_EQ(f.calls, calls + 1);
    await_events(ks, &ev, events + 1);
    CHECK_EQ(ev.n, events + 1);
    CHECK(!strcmp(ev.last_op, "unwrap") && !strcmp(ev.last_reason, "cache miss"));
    sl_keysvc_stats_get(&s1);
    CHECK_EQ(s1.calls[1][0], s0.calls[1][0] + 1); /* one unwrap, counted ok */
    uint64_t nb0 = 0, nb1 = 0;
    for (int i = 0; i <= SL_KMS_NBUCKETS; i++) nb0 += s0.bucket[i], nb1 += s1.bucket[i];
    CHECK_EQ(nb1, nb0 + 1);
    CHECK(dek_open(ks, T1, &e1) == SL_OK);
    /* Outage: T1 (cached) keeps working, T2 (evicted) is unavailable, never plaintext. */
    f.down = true;
    CHECK(dek_open(ks, T2, &e2) == SL_EKEY_UNAVAILABLE);
    for (int64_t until = sl_mono_ms() + 10000; !ev.failed && sl_mono_ms() < until;)
        pump(ks, NULL); /* the failed unwrap's event, however slow the worker is scheduled */
    CHECK(ev.failed >= 1);
    sl_keysvc_stats_get(&s1);
    CHECK(s1.calls[1][1] > s0.calls[1][1]); /* the failed unwrap, counted as an error */
    CHECK(dek_open(ks, T2, &e2) == SL_EKEY_UNAVAILABLE);
    pump(ks, NULL);
    CHECK(dek_new(ks, T2, 30, &tmp) == SL_EKEY_UNAVAILABLE);
    CHECK(dek_open(ks, T1, &e1) == SL_OK);
    CHECK(dek_new(ks, T1, 40, &tmp) == SL_OK);
    /* Recovery without a restart. */
    f.down = false;
    sl_envelope e2b = e2;
    CHECK(eventually(ks, dek_open3, T2, 0, &e2b) == SL_OK);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

static int count_str(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* A key the gateway's loop asks for: a miss with this (non-local) provider is loaded on the
 * worker, so ask again after the completions ran. */
static sl_err gw_key_get(sl_keysvc *ks, const uint8_t id[16], uint32_t v, uint8_t out[32],
                         uint32_t *outv) {
    sl_err e = SL_EKEY_UNAVAILABLE;
    for (int i = 0; i < 100 && e == SL_EKEY_UNAVAILABLE; i++) {
        e = sl_keysvc_key_get(ks, id, v, out, outv);
        if (e == SL_EKEY_UNAVAILABLE) pump(ks, NULL);
    }
    return e;
}

/* A gateway's record-encryption key of a topic (gateway/sl_gwcrypt.h, id byte 0 = 0xFE), as
 * `sluice keys` on a gateway drives it: rotated per topic, covered by KEK rotate, rewrap and
 * retire like every keyring entry (retire of the old KEK succeeds only if rewrap moved it too),
 * shown in status as "gateway-topic" (not a field key), and shredded for good. */
SL_TEST(keysvc_gateway_topic_key_lifecycle) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, NULL, &f, &ks) == SL_OK);
    char msg[512];
    uint8_t id[16], k1[32], k2[32], k[32];
    uint32_t v = 0, vs[8];
    sl_gwcrypt_key_id(sl_str_c("enc-orders"), id);
    CHECK(id[0] == 0xFE);
    CHECK(gw_key_get(ks, id, 0, k, &v) == SL_ENOTFOUND);        /* after a reread of the file */
    CHECK(run_op(ks, SL_KEYOP_TK_ROTATE, id, 0, msg) == SL_OK); /* first use */
    CHECK(gw_key_get(ks, id, 0, k1, &v) == SL_OK && v == 1);
    /* `sluice keys rotate --topic enc-orders` on the gateway. */
    CHECK(run_op(ks, SL_KEYOP_TK_ROTATE, id, 0, msg) == SL_OK);
    CHECK(gw_key_get(ks, id, 0, k2, &v) == SL_OK && v == 2);
    CHECK(memcmp(k1, k2, 32) != 0);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 2);
    sl_text s = {0};
    sl_keysvc_status_json(ks, &s);
    char hex[33];
    sl_uuid_hex(id, hex);
    char *at = s.p ? strstr(s.p, hex) : NULL;
    CHECK(at &&
          !strncmp(at + 32, "\",\"system\":false,\"field\":false,\"kind\":\"gateway-topic\"", 53));
    CHECK(strstr(s.p, "\"kind\":\"system\""));
    sl_text_free(&s);
    /* KEK v2, rewrap: the gateway key moves too, or retiring v1 would be refused. */
    CHECK(run_op(ks, SL_KEYOP_ROTATE, NULL, 0, msg) == SL_OK);
    CHECK(run_op(ks, SL_KEYOP_REWRAP, NULL, 0, msg) == SL_OK);
    s = (sl_text){0};
    sl_keysvc_status_json(ks, &s);
    CHECK_EQ(count_str(s.p, "\"kek_version\":1"), 0);
    sl_text_free(&s);
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 1, msg) == SL_OK);
    CHECK(f.gone[1]);
    /* Both versions still open after the caches go, through KEK v2 only, and after a restart. */
    sl_keysvc_tick(ks, sl_mono_ms() + c->sluice_kms_cache_ttl_ms + 1000);
    CHECK(gw_key_get(ks, id, 1, k, &v) == SL_OK && v == 1 && !memcmp(k, k1, 32));
    CHECK(gw_key_get(ks, id, 0, k, &v) == SL_OK && v == 2 && !memcmp(k, k2, 32));
    sl_keysvc_close(ks);
    fake_kms f2 = {0};
    f2.gone[1] = true;
    ks = NULL;
    CHECK(open_with_fake(c, NULL, &f2, &ks) == SL_OK);
    CHECK(gw_key_get(ks, id, 1, k, &v) == SL_OK && !memcmp(k, k1, 32));
    /* `sluice keys shred --topic enc-orders`: every version refused, none listed. */
    CHECK(run_op(ks, SL_KEYOP_SHRED, id, 0, msg) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k, &v) == SL_EKEY_DESTROYED);
    CHECK(sl_keysvc_key_get(ks, id, 1, k, &v) == SL_EKEY_DESTROYED);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 0);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

SL_TEST(keysvc_rotate_rewrap_retire) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    sl_events hub = {0};
    evlog ev = {0};
    sl_events_subscribe(&hub, on_ev, &ev);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, &hub, &f, &ks) == SL_OK);
    char err[512], msg[512];
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_envelope e1;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    CHECK(run_op(ks, SL_KEYOP_ROTATE, NULL, 0, msg) == SL_OK);
    CHECK(!strcmp(ev.last_op, "rotate"));
    CHECK(sl_keysvc_topic_ensure_sync(ks, T2, "b", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_text s = {0};
    sl_keysvc_status_json(ks, &s);
    CHECK(strstr(s.p, "\"current_kek_version\":2"));
    /* T2 is new: under v2; T1 and the system key still under v1. */
    CHECK_EQ(count_str(s.p, "\"kek_version\":2"), 1);
    CHECK_EQ(count_str(s.p, "\"kek_version\":1"), 2);
    sl_text_free(&s);
    /* Retire v1 is refused while topic keys use it. */
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 1, msg) == SL_ESTATE);
    CHECK(strstr(msg, "rewrap"));
    CHECK(!f.gone[1]);
    CHECK(run_op(ks, SL_KEYOP_REWRAP, NULL, 0, msg) == SL_OK);
    s = (sl_text){0};
    sl_keysvc_status_json(ks, &s);
    CHECK_EQ(count_str(s.p, "\"kek_version\":1"), 0);
    CHECK_EQ(count_str(s.p, "\"kek_version\":2"), 3);
    sl_text_free(&s);
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 2, msg) == SL_ESTATE); /* current */
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 1, msg) == SL_OK);
    CHECK(f.gone[1]);
    CHECK(!strcmp(ev.last_op, "retire"));
    /* Everything still reads after the caches go, through KEK v2 only. */
    sl_keysvc_tick(ks, sl_mono_ms() + c->sluice_kms_cache_ttl_ms + 1000);
    CHECK(eventually(ks, dek_open3, T1, 0, &e1) == SL_OK);
    await_events(ks, &ev, f.calls + 5);
    CHECK_EQ(ev.n, f.calls + 5); /* + one per lifecycle op (rotate, rewrap, 3 retires) */
    sl_keysvc_close(ks);
    /* And across a restart (the keyring says v2). */
    fake_kms f2 = {0};
    f2.gone[1] = true;
    ks = NULL;
    CHECK(open_with_fake(c, NULL, &f2, &ks) == SL_OK);
    CHECK(dek_open(ks, T1, &e1) == SL_OK);
    /* A new topic-key version for reencrypt: new segments use it, old ones still open. */
    CHECK(run_op(ks, SL_KEYOP_TK_ROTATE, T1, 0, msg) == SL_OK);
    CHECK_EQ(sl_keysvc_topic_version(ks, T1), 2);
    sl_envelope e3;
    CHECK(dek_new(ks, T1, 50, &e3) == SL_OK);
    CHECK_EQ(e3.tk_version, 2);
    CHECK(dek_open(ks, T1, &e1) == SL_OK);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

static int g_shred_calls;
static void on_shred(void *ctx, const uint8_t id[16]) {
    (void)ctx;
    if (!memcmp(id, T1, 16)) g_shred_calls++;
}

SL_TEST(keysvc_shred) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    sl_events hub = {0};
    evlog ev = {0};
    sl_events_subscribe(&hub, on_ev, &ev);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, &hub, &f, &ks) == SL_OK);
    sl_keysvc_on_shred(ks, on_shred, NULL);
    char err[512], msg[512];
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T2, "b", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_envelope e1, e2;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    CHECK(dek_new(ks, T2, 0, &e2) == SL_OK);
    g_shred_calls = 0;
    /* A second name for the keyring's inode: the bytes the shred replaces must be zeroed, not
     * left in the old file's blocks. */
    char kr[700], old[720];
    snprintf(kr, sizeof kr, "%s/data/sluice-keyring", dir);
    snprintf(old, sizeof old, "%s/old-inode", dir);
    CHECK(link(kr, old) == 0);
    CHECK(run_op(ks, SL_KEYOP_SHRED, T1, 0, msg) == SL_OK);
    FILE *of = fopen(old, "rb");
    uint8_t ob[4096];
    size_t on = of ? fread(ob, 1, sizeof ob, of) : 0;
    if (of) fclose(of);
    CHECK(on > 100);
    for (size_t i = 0; i < on; i++) CHECK_EQ(ob[i], 0);
    CHECK_EQ(g_shred_calls, 1);
    CHECK(!strcmp(ev.last_op, "shred") && ev.last_reason[0]);
    CHECK(dek_open(ks, T1, &e1) == SL_EKEY_DESTROYED);
    sl_envelope t;
    CHECK(dek_new(ks, T1, 10, &t) == SL_EKEY_DESTROYED);
    CHECK(dek_open(ks, T2, &e2) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_EKEY_DESTROYED);
    CHECK(run_op(ks, SL_KEYOP_SHRED, SYS, 0, msg) == SL_EINVAL);
    /* A topic that never had keys (created with encryption off) is marked shredded too. */
    static const uint8_t T3[16] = {3, 3, 3};
    CHECK(run_op(ks, SL_KEYOP_SHRED, T3, 0, msg) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T3, "c", err, sizeof err) == SL_EKEY_DESTROYED);
    sl_keysvc_close(ks);
    /* Durable: after a restart the topic is still gone, the other still readable. */
    fake_kms f2 = {0};
    ks = NULL;
    CHECK(open_with_fake(c, NULL, &f2, &ks) == SL_OK);
    CHECK(dek_open(ks, T1, &e1) == SL_EKEY_DESTROYED);
    CHECK(dek_open(ks, T2, &e2) == SL_OK);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

SL_TEST(keysvc_tamper_and_blobs) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    sl_events hub = {0};
    evlog ev = {0};
    sl_events_subscribe(&hub, on_ev, &ev);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, &hub, &f, &ks) == SL_OK);
    char err[512];
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_envelope e1;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    sl_keysvc_stats st0, st1;
    sl_keysvc_stats_get(&st0);
    sl_envelope bad = e1;
    bad.wrapped[5] ^= 1;
    bad.dek_id ^= 0x100; /* another cache key, as a different segment would be */
    CHECK(dek_open(ks, T1, &bad) == SL_ETAMPER);
    CHECK_EQ(ev.tamper, 1);
    CHECK(dek_open(ks, T1, &bad) == SL_ETAMPER); /* remembered: not audited twice */
    CHECK_EQ(ev.tamper, 1);
    sl_keysvc_stats_get(&st1);
    CHECK_EQ(st1.tamper, st0.tamper + 1);
    /* A segment of T1 offered as T2's. */
    CHECK(dek_open(ks, T2, &e1) == SL_ETAMPER);
    /* Blobs. */
    const char *msg = "producer snapshot bytes";
    uint8_t *b = NULL, *o = NULL;
    size_t bn = 0, on = 0;
    CHECK(sl_keysvc_seal_blob(ks, "snap-1", (const uint8_t *)msg, strlen(msg), &b, &bn) == SL_OK);
    CHECK(sl_keysvc_is_sealed_blob(b, bn));
    CHECK(!sl_keysvc_is_sealed_blob((const uint8_t *)msg, strlen(msg)));
    CHECK(!memmem(b, bn, "snapshot", 8));
    CHECK(sl_keysvc_open_blob(ks, "snap-1", b, bn, &o, &on) == SL_OK);
    CHECK(on == strlen(msg) && !memcmp(o, msg, on));
    free(o);
    CHECK(sl_keysvc_open_blob(ks, "snap-2", b, bn, &o, &on) == SL_ETAMPER);
    for (size_t i = 0; i < bn; i += 7) {
        b[i] ^= 0x20;
        sl_err e = sl_keysvc_open_blob(ks, "snap-1", b, bn, &o, &on);
        CHECK(e == SL_ETAMPER || e == SL_EKEY_UNAVAILABLE);
        b[i] ^= 0x20;
    }
    CHECK(sl_keysvc_open_blob(ks, "snap-1", b, bn - 1, &o, &on) == SL_ETAMPER);
    free(b);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

/* Every KMS call and lifecycle step reaches the audit trail as one OCSF API Activity line
 * (tests/interop/test_key_audit.py validates these lines against tests/interop/ocsf: with
 * SL_KEYSVC_TRAIL_OUT set, the trail is copied there). */
SL_TEST(keysvc_audit_trail) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    sl_loop *loop = sl_loop_new();
    sl_events hub = {0};
    evlog ev = {0};
    sl_events_subscribe(&hub, on_ev, &ev);
    sl_audit_env env = {.loop = loop, .hub = &hub, .cluster_id = "c1", .node_id = 1};
    sl_audit *a = NULL;
    char err[512], msg[512];
    CHECK(loop && sl_audit_new(c, &env, &a, err, sizeof err) == SL_OK && a);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, &hub, &f, &ks) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    CHECK(run_op(ks, SL_KEYOP_ROTATE, NULL, 0, msg) == SL_OK);
    f.down = true;
    CHECK(run_op(ks, SL_KEYOP_REWRAP, NULL, 0, msg) != SL_OK); /* failures are recorded too */
    f.down = false;
    sl_keysvc_tamper(ks, T1, 3, "batch failed authentication");
    pump(ks, NULL);
    int events = ev.n;
    CHECK(events >= 8);
    sl_text st = {0};
    sl_keysvc_status_json(ks, &st);
    CHECK(st.p && !st.oom);
    const char *out = getenv("SL_KEYSVC_TRAIL_OUT");
    if (out) { /* `sluice keys status`'s JSON, checked by the same interop test */
        char sp[600];
        snprintf(sp, sizeof sp, "%s/status.json", out);
        FILE *sf = fopen(sp, "w");
        CHECK(sf);
        fputs(st.p, sf);
        fclose(sf);
    }
    sl_text_free(&st);
    sl_keysvc_close(ks);
    sl_audit_free(a);
    sl_loop_free(loop);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "test $(cat %s/data/audit/* | grep -c '\"operation\":\"kms:') -eq %d",
             dir, events);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd,
             "cat %s/data/audit/* | grep '\"kms:tamper\"' | grep -q '\"severity_id\":4' && "
             "cat %s/data/audit/* | grep '\"kms:unwrap\"' | grep '\"status\":\"Failure\"' | "
             "grep -q '\"name\":\"fake\"' && "
             "! grep -q '\"name\":\"a\"' %s/data/audit/*",
             dir, dir, dir);
    CHECK(system(cmd) == 0);
    if (out) {
        snprintf(cmd, sizeof cmd,
                 "cp %s/data/audit/* %s/ && cp %s/sluice-secrets/sluice-audit-key.pem.pub %s/", dir,
                 out, dir, out);
        CHECK(system(cmd) == 0);
    }
    free(c);
    rm_rf(dir);
    free(dir);
}

/* A start with the KMS down: an existing keyring opens (its topics wait for the KMS, then load
 * without a restart); a first start, which must create KEK version 1, fails and says so. */
SL_TEST(keysvc_start_with_kms_down) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    f.down = true;
    char err[512];
    f.base.ops = &k_fake_ops;
    CHECK(sl_keysvc_open_with(c, NULL, &f.base, &ks, err, sizeof err) != SL_OK && !ks);
    CHECK(strstr(err, "KEK version 1"));
    f.down = false;
    CHECK(open_with_fake(c, NULL, &f, &ks) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_envelope e1;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    sl_keysvc_close(ks);
    f.down = true;
    ks = NULL;
    int calls = f.calls;
    CHECK(open_with_fake(c, NULL, &f, &ks) == SL_OK);
    CHECK_EQ(f.calls, calls + 1); /* one "unreachable" answer and start asks nothing more */
    CHECK(dek_open(ks, T1, &e1) == SL_EKEY_UNAVAILABLE);
    pump(ks, NULL);
    CHECK(dek_open(ks, T1, &e1) == SL_EKEY_UNAVAILABLE);
    uint8_t *b = NULL;
    size_t bn = 0;
    CHECK(sl_keysvc_seal_blob(ks, "x", (const uint8_t *)"y", 1, &b, &bn) == SL_EKEY_UNAVAILABLE);
    f.down = false;
    CHECK(eventually(ks, dek_open3, T1, 0, &e1) == SL_OK);
    sl_err e = SL_EKEY_UNAVAILABLE;
    for (int i = 0; i < 200 && e == SL_EKEY_UNAVAILABLE; i++) {
        e = sl_keysvc_seal_blob(ks, "x", (const uint8_t *)"y", 1, &b, &bn);
        if (e) pump(ks, NULL);
    }
    CHECK(e == SL_OK);
    free(b);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

/* Topic keys created from another thread (the topics file worker) while the loop hands out and
 * opens DEKs: no lost keys, every DEK opens. */
typedef struct ensure_arg {
    sl_keysvc *ks;
    int n;
    int failed;
} ensure_arg;

static void topic_id_n(uint8_t id[16], int i) {
    memset(id, 0x33, 16);
    id[0] = (uint8_t)i;
    id[1] = (uint8_t)(i >> 8);
}

static void *ensure_thread(void *p) {
    ensure_arg *a = p;
    char err[256];
    for (int i = 0; i < a->n; i++) {
        uint8_t id[16];
        topic_id_n(id, i);
        if (sl_keysvc_topic_ensure_sync(a->ks, id, "t", err, sizeof err) != SL_OK) a->failed++;
    }
    return NULL;
}

SL_TEST(keysvc_ensure_from_another_thread) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    CHECK(open_with_fake(c, NULL, &f, &ks) == SL_OK);
    ensure_arg a = {ks, 40, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ensure_thread, &a) == 0);
    sl_envelope env[40];
    int ok = 0;
    int64_t deadline = sl_mono_ms() + 20000;
    bool have[40] = {0};
    while (ok < 40 && sl_mono_ms() < deadline) {
        for (int i = 0; i < 40; i++) {
            if (have[i]) continue;
            uint8_t id[16];
            topic_id_n(id, i);
            if (sl_keysvc_topic_version(ks, id) == 0) continue;
            sl_err e = dek_new(ks, id, i, &env[i]);
            if (e == SL_OK) have[i] = true, ok++;
        }
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        if (poll(&p, 1, 5) > 0) sl_keysvc_dispatch(ks);
    }
    pthread_join(th, NULL);
    CHECK_EQ(a.failed, 0);
    CHECK_EQ(ok, 40);
    sl_keysvc_close(ks);
    fake_kms f2 = {0};
    ks = NULL;
    CHECK(open_with_fake(c, NULL, &f2, &ks) == SL_OK);
    for (int i = 0; i < 40; i++) {
        uint8_t id[16];
        topic_id_n(id, i);
        CHECK_EQ(dek_open(ks, id, &env[i]), SL_OK);
    }
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

/* A topic created on the loop (auto-creation) is written to at once, before the loop has run
 * the key service's completions: the new topic key must be usable right away, not answer
 * SL_EKEY_UNAVAILABLE (an acks=0 produce that auto-created its topic would be lost). */
SL_TEST(keysvc_new_topic_key_usable_before_dispatch) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    fake_kms f = {0};
    sl_keysvc *ks = NULL;
    char err[256];
    CHECK(open_with_fake(c, NULL, &f, &ks) == SL_OK);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "auto", err, sizeof err) == SL_OK);
    sl_envelope env;
    CHECK_EQ(dek_new(ks, T1, 0, &env), SL_OK); /* no dispatch in between */
    CHECK_EQ(env.tk_version, 1);
    pump(ks, NULL); /* the completion finds the key already cached */
    CHECK_EQ(dek_new(ks, T1, 10, &env), SL_OK);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}

/* The keyring decoder: every flipped byte and every truncation is an error, never a crash, and
 * a valid keyring round-trips. */
SL_TEST(keysvc_keyring_codec) {
    sl_keyring kr = {0};
    sl_kms_keyref r1 = {"kek-a", 1}, r2 = {"kek-b", 2};
    CHECK(sl_keyring_kek_add(&kr, &r1) && sl_keyring_kek_add(&kr, &r2));
    kr.current = 2;
    sl_kr_topic *t = sl_keyring_topic_add(&kr, T1);
    CHECK(t);
    sl_kr_tk *k = sl_keyring_tk_add(t);
    k->kek_version = 1;
    k->wlen = 40;
    memset(k->wrapped, 9, 40);
    k = sl_keyring_tk_add(t);
    k->kek_version = 2;
    k->wlen = 3;
    CHECK(sl_keyring_part(t, 4, true));
    t->parts[0].plain_below = 77;
    t = sl_keyring_topic_add(&kr, T2);
    t->shredded = true;
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK(sl_keyring_encode(&kr, &b, &n) == SL_OK);
    sl_keyring back = {0};
    char why[160];
    CHECK(sl_keyring_decode(b, n, &back, why, sizeof why) == SL_OK);
    CHECK_EQ(back.current, 2);
    CHECK_EQ(back.nkeks, 2);
    CHECK_EQ(back.ntopics, 2);
    sl_kr_topic *bt = sl_keyring_topic(&back, T1);
    CHECK(bt && bt->ntks == 2 && bt->tks[1].version == 2 && bt->tks[1].kek_version == 2);
    CHECK(bt->nparts == 1 && bt->parts[0].partition == 4 && bt->parts[0].plain_below == 77);
    CHECK(sl_keyring_topic(&back, T2)->shredded);
    sl_keyring_free(&back);
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            b[i] ^= (uint8_t)(1 << bit);
            CHECK(sl_keyring_decode(b, n, &back, why, sizeof why) == SL_ECORRUPT);
            b[i] ^= (uint8_t)(1 << bit);
        }
    for (size_t l = 0; l < n; l++)
        CHECK(sl_keyring_decode(b, l, &back, why, sizeof why) == SL_ECORRUPT);
    free(b);
    sl_keyring_free(&kr);
}

/* The lifecycle with the real local provider: after rotate, rewrap and retire of version 1, the
 * KEK file holds only version 2 and everything still opens across a restart. */
SL_TEST(keysvc_local_lifecycle) {
    char *dir = kv_tmpdir();
    sl_config *c = kv_cfg(dir);
    char err[512], msg[512];
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    CHECK(sl_keysvc_topic_ensure_sync(ks, T1, "a", err, sizeof err) == SL_OK);
    pump(ks, NULL);
    sl_envelope e1;
    CHECK(dek_new(ks, T1, 0, &e1) == SL_OK);
    CHECK(run_op(ks, SL_KEYOP_ROTATE, NULL, 0, msg) == SL_OK);
    CHECK(strstr(msg, "local:2"));
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 1, msg) == SL_ESTATE);
    CHECK(run_op(ks, SL_KEYOP_REWRAP, NULL, 0, msg) == SL_OK);
    CHECK(run_op(ks, SL_KEYOP_RETIRE, NULL, 1, msg) == SL_OK);
    sl_text s = {0};
    sl_keysvc_status_json(ks, &s);
    CHECK(strstr(s.p, "\"id\":\"local:2\"") && !strstr(s.p, "\"id\":\"local:1\""));
    CHECK(strstr(s.p, "wrapped by the master key from file"));
    sl_text_free(&s);
    sl_keysvc_close(ks);
    /* The KEK file has one entry (magic 8 + count 4 + 53 + MAC 32). */
    char kf[700];
    snprintf(kf, sizeof kf, "%s/data/sluice-keyring.local-keks", dir);
    struct stat st;
    CHECK(stat(kf, &st) == 0 && st.st_size == 8 + 4 + 53 + 32);
    ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    CHECK(dek_open(ks, T1, &e1) == SL_OK);
    sl_keysvc_close(ks);
    free(c);
    rm_rf(dir);
    free(dir);
}
