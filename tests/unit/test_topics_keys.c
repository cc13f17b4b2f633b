/* The topic registry with encryption at rest (sl_topics_open_keys) over the real key service and
 * a fake key manager that can go down: the registry file is sealed, partitions whose key cannot
 * be loaded at start are unavailable and open again once the key manager answers, without a
 * restart, and a shred drops the logs' keys. Each test runs in its own mkdtemp directory. */
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_time.h"
#include "broker/sl_topics.h"
#include "crypto/sl_aead.h"
#include "kms/sl_keysvc.h"
#include "kms/sl_kms.h"
#include "proto/sl_records.h"
#include "sl_test.h"

/* ---- a key manager that can go down (KWP under one fixed key per version) ---- */

typedef struct tk_fake {
    sl_kms base;
    volatile bool down;
} tk_fake;

static void tk_fake_key(uint32_t v, uint8_t k[32]) { memset(k, (int)(0x60 + v), 32); }

static sl_err tf_wrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                      const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                      char *err, size_t errlen) {
    if (((tk_fake *)k)->down) return SL_EKMS_UNAVAILABLE;
    uint8_t key[32];
    tk_fake_key(kek->version, key);
    return sl_kwp_wrap(key, ctx, ctxlen, plain, n, out, cap, outlen);
}
static sl_err tf_unwrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                        const uint8_t *w, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                        char *err, size_t errlen) {
    if (((tk_fake *)k)->down) {
        snprintf(err, errlen, "fake: down");
        return SL_EKMS_UNAVAILABLE;
    }
    uint8_t key[32];
    tk_fake_key(kek->version, key);
    return sl_kwp_unwrap(key, ctx, ctxlen, w, n, out, cap, outlen);
}
static sl_err tf_generate(sl_kms *k, uint32_t version, sl_kms_keyref *out, char *err,
                          size_t errlen) {
    if (((tk_fake *)k)->down) return SL_EKMS_UNAVAILABLE;
    snprintf(out->id, sizeof out->id, "tkfake:%u", version);
    out->version = version;
    return SL_OK;
}
static sl_err tf_describe(sl_kms *k, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                          size_t errlen) {
    snprintf(out, cap, "tkfake %s", kek->id);
    return ((tk_fake *)k)->down ? SL_EKMS_UNAVAILABLE : SL_OK;
}
static sl_err tf_destroy(sl_kms *k, const sl_kms_keyref *kek, char *err, size_t errlen) {
    return ((tk_fake *)k)->down ? SL_EKMS_UNAVAILABLE : SL_OK;
}
static void tf_free(sl_kms *k) { (void)k; /* the test owns it */ }
static const sl_kms_ops k_tf_ops = {"tkfake",    tf_wrap,    tf_unwrap, tf_generate,
                                    tf_describe, tf_destroy, tf_free};

/* ---- helpers ---- */

static void tk_rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* Runs the key service's completions until it has been quiet for 50 ms. */
static void tk_pump(sl_keysvc *ks) {
    int64_t deadline = sl_mono_ms() + 10000;
    while (sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r > 0) sl_keysvc_dispatch(ks);
        if (r == 0) return;
    }
}

static sl_keysvc *tk_keysvc(const sl_config *c, tk_fake *f) {
    f->base.ops = &k_tf_ops;
    char err[512];
    sl_keysvc *ks = NULL;
    if (sl_keysvc_open_with(c, NULL, &f->base, &ks, err, sizeof err)) {
        fprintf(stderr, "  keysvc: %s\n", err);
        return NULL;
    }
    tk_pump(ks);
    return ks;
}

/* Appends one batch of one record holding `text` to `log`. */
static sl_err tk_append(sl_log *log, const char *text) {
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 256);
    sl_rec_in r = {.key = {NULL, -1}, .value = {(const uint8_t *)text, (int32_t)strlen(text)}};
    uint8_t *batch = NULL;
    size_t blen = 0;
    sl_err e = sl_rec_builder_add(&rb, &r) ? SL_ENOMEM : SL_OK;
    if (!e && sl_rec_builder_seal(&rb, 0, 1700000000000, 1700000000000, &batch, &blen))
        e = SL_ENOMEM;
    int64_t base;
    if (!e) e = sl_log_append(log, batch, blen, 1, 1700000000000, &base);
    sl_arena_free(a);
    return e;
}

/* True when the log holds `text` from offset 0 (decrypted). */
static bool tk_reads(sl_log *log, const char *text) {
    sl_arena *a = sl_arena_new(1 << 16);
    uint8_t *p = NULL;
    size_t n = 0;
    sl_err e = sl_log_read(log, 0, 1 << 16, a, &p, &n);
    bool ok = !e && n > 0 && memmem(p, n, text, strlen(text)) != NULL;
    sl_arena_free(a);
    return ok;
}

static bool tk_file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* ---- tests ---- */

/* Runs the registry's completions (its file worker's) until none are pending. */
static void tk_topics_pump(sl_topics *t) {
    int64_t deadline = sl_mono_ms() + 10000;
    while (sl_topics_pending(t) > 0 && sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_topics_fd(t), .events = POLLIN};
        if (poll(&p, 1, 20) > 0) sl_topics_dispatch(t);
    }
}

SL_TEST(topics_keys_partition_reopens_after_kms_outage) {
    char dir[64] = "/tmp/sl_topics_keys_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/data", dir);
    CHECK(!sl_config_set(c, "log.dirs", p, err, sizeof err));
    /* A topic written before encryption was turned on: it has no topic key yet. */
    sl_topics *t = NULL;
    CHECK_EQ(sl_topics_open(c, &t, err, sizeof err), SL_OK);
    sl_topic *tp = NULL;
    CHECK_EQ(sl_topics_create(t, sl_str_c("secret-topic"), 2, NULL, false, &tp), SL_OK);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(tk_append(tp->parts[i]->log, "old record of secret-topic"), SL_OK);
        CHECK_EQ(sl_log_sync(tp->parts[i]->log), SL_OK);
    }
    sl_topics_close(t);
    /* Encryption on, and the key manager goes down right after the key service started: the
     * topic key cannot be made, so the broker starts with the topic's partitions unavailable
     * (never appending in clear). */
    tk_fake f = {0};
    sl_keysvc *ks = tk_keysvc(c, &f);
    CHECK(ks != NULL);
    f.down = true;
    t = NULL;
    CHECK_EQ(sl_topics_open_keys(c, ks, &t, err, sizeof err), SL_OK);
    char reg[600];
    snprintf(reg, sizeof reg, "%s/sluice-topics.meta", p);
    CHECK(!tk_file_has(reg, "secret-topic")); /* sealed at once (the system key is cached) */
    tp = sl_topics_find(t, sl_str_c("secret-topic"));
    CHECK(tp != NULL && tp->key_missing);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(tp->parts[i]->unavailable, SL_EKMS_UNAVAILABLE);
        CHECK(tp->parts[i]->log == NULL);
    }
    /* Still down: retries change nothing. */
    int64_t now = sl_mono_ms();
    for (int k = 0; k < 3; k++) {
        now += 10000;
        sl_topics_retry_unavailable(t, now);
        tk_topics_pump(t);
        tk_pump(ks);
    }
    CHECK(tp->key_missing && tp->parts[0]->unavailable == SL_EKMS_UNAVAILABLE);
    /* Back: the key is made off the loop, then the partitions open, without a restart. */
    f.down = false;
    for (int k = 0; k < 20 && (tp->parts[0]->unavailable || tp->parts[1]->unavailable); k++) {
        now += 10000;
        sl_topics_retry_unavailable(t, now);
        tk_topics_pump(t);
        tk_pump(ks);
    }
    CHECK(!tp->key_missing);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(tp->parts[i]->unavailable, SL_OK);
        CHECK(tp->parts[i]->log != NULL && tp->parts[i]->pstate != NULL);
        CHECK(tk_reads(tp->parts[i]->log, "old record of secret-topic"));
        /* New appends are sealed. */
        sl_err e = SL_EKEY_UNAVAILABLE;
        for (int k = 0; k < 100 && e == SL_EKEY_UNAVAILABLE; k++) {
            e = tk_append(tp->parts[i]->log, "new record of secret-topic");
            if (e == SL_EKEY_UNAVAILABLE) tk_pump(ks);
        }
        CHECK_EQ(e, SL_OK);
        CHECK_EQ(sl_log_sync(tp->parts[i]->log), SL_OK);
    }
    sl_topics_close(t);
    char seg[800];
    snprintf(seg, sizeof seg, "%s/secret-topic-0/00000000000000000000.log", p);
    CHECK(tk_file_has(seg, "old record of secret-topic"));
    for (int i = 0; i < 2; i++) {
        char pdir[700];
        snprintf(pdir, sizeof pdir, "%s/secret-topic-%d", p, i);
        DIR *d = opendir(pdir);
        CHECK(d != NULL);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (!strstr(de->d_name, ".log")) continue;
            char path[1000];
            snprintf(path, sizeof path, "%s/%s", pdir, de->d_name);
            CHECK(!tk_file_has(path, "new record of secret-topic"));
        }
        if (d) closedir(d);
    }
    sl_keysvc_close(ks);
    free(c);
    tk_rm_rf(dir);
}

SL_TEST(topics_keys_id_dirs_and_plaintext_registry_migration) {
    char dir[64] = "/tmp/sl_topics_keys_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/data", dir);
    CHECK(!sl_config_set(c, "log.dirs", p, err, sizeof err));
    /* Written without encryption: a plaintext registry and name directories. */
    sl_topics *t = NULL;
    CHECK_EQ(sl_topics_open(c, &t, err, sizeof err), SL_OK);
    CHECK_EQ(sl_topics_create(t, sl_str_c("old-named"), 1, NULL, false, NULL), SL_OK);
    sl_topics_close(t);
    char reg[600], pdir[700];
    snprintf(reg, sizeof reg, "%s/sluice-topics.meta", p);
    CHECK(tk_file_has(reg, "old-named"));
    /* With encryption and id directories: the old topic keeps its directory, a new one is
     * named by id, and the registry is sealed at once. */
    CHECK(!sl_config_set(c, "sluice.encryption.dir.names", "id", err, sizeof err));
    tk_fake f = {0};
    sl_keysvc *ks = tk_keysvc(c, &f);
    CHECK(ks != NULL);
    t = NULL;
    CHECK_EQ(sl_topics_open_keys(c, ks, &t, err, sizeof err), SL_OK);
    CHECK(!tk_file_has(reg, "old-named"));
    sl_topic *old = sl_topics_find(t, sl_str_c("old-named"));
    CHECK(old != NULL && old->parts[0]->log != NULL && !old->parts[0]->unavailable);
    sl_topics_partition_dir(t, old, 0, pdir, sizeof pdir);
    CHECK(strstr(pdir, "old-named-0") != NULL);
    sl_topic *fresh = NULL;
    CHECK_EQ(sl_topics_create(t, sl_str_c("new-secret"), 1, NULL, false, &fresh), SL_OK);
    sl_topics_partition_dir(t, fresh, 0, pdir, sizeof pdir);
    CHECK(strstr(pdir, "new-secret") == NULL);
    struct stat st;
    CHECK(stat(pdir, &st) == 0 && S_ISDIR(st.st_mode));
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", fresh->id.b[i]);
    CHECK(strstr(pdir, hex) != NULL);
    sl_topics_close(t);
    /* Reopened: both found where they are. */
    t = NULL;
    CHECK_EQ(sl_topics_open_keys(c, ks, &t, err, sizeof err), SL_OK);
    fresh = sl_topics_find(t, sl_str_c("new-secret"));
    old = sl_topics_find(t, sl_str_c("old-named"));
    CHECK(fresh && old && fresh->parts[0]->log && old->parts[0]->log);
    sl_topics_close(t);
    /* Encryption off again: a sealed registry is refused, never guessed at. */
    t = NULL;
    CHECK_EQ(sl_topics_open(c, &t, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "encrypted") != NULL);
    sl_keysvc_close(ks);
    free(c);
    tk_rm_rf(dir);
}
