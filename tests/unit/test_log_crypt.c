/* Encryption at rest in the partition log (src/storage/sl_log.h, "Encryption at rest" and
 * "Re-encryption"): round trips across restarts and migrations, every kind of tampering an
 * attacker with write access to the data directory can do (with the CRCs fixed up, as an
 * attacker would), nonces across failed appends, and re-encryption with simulated crashes.
 * The key service is an in-test one (log_keys_fake.h): topic keys in memory, DEKs wrapped with
 * sl_kwp_wrap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_dek.h"
#include "log_keys_fake.h"
#include "proto/sl_batch.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_envelope.h"
#include "storage/sl_log.h"
#include "storage/sl_storage_hooks.h"

/* ---- files -------------------------------------------------------------------------------- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *tmpdir(void) {
    static char buf[16][64];
    static int n;
    char *t = buf[n++ % 16];
    strcpy(t, "/tmp/sl_crypt_XXXXXX");
    return mkdtemp(t);
}

static uint8_t *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    uint8_t *b = malloc((size_t)st.st_size + 1);
    ssize_t r = b ? read(fd, b, (size_t)st.st_size) : -1;
    close(fd);
    if (r != st.st_size) {
        free(b);
        return NULL;
    }
    *len = (size_t)st.st_size;
    return b;
}

static int write_file(const char *path, const uint8_t *b, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    ssize_t w = write(fd, b, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static void seg_file(char *out, size_t cap, const char *dir, int64_t base) {
    snprintf(out, cap, "%s/%020lld.log", dir, (long long)base);
}

/* True when `marker` occurs in any file of `dir`. */
static bool marker_in_dir(const char *dir, const char *marker) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *de;
    size_t ml = strlen(marker);
    while (!found && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        size_t n = 0;
        uint8_t *b = read_file(p, &n);
        for (size_t i = 0; b && i + ml <= n && !found; i++) found = !memcmp(b + i, marker, ml);
        free(b);
    }
    closedir(d);
    return found;
}

static void copy_dir(const char *from, const char *to) {
    DIR *d = opendir(from);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        size_t n = 0;
        uint8_t *buf = read_file(a, &n);
        if (buf) write_file(b, buf, n);
        free(buf);
    }
    if (d) closedir(d);
}

/* ---- batches ------------------------------------------------------------------------------ */

#define MARKER "MARKER-7d1f3c-secret-record-value"

typedef struct model {
    sl_arena *a;
    int n;
    int64_t base[256];
    uint8_t *bytes[256]; /* the plaintext batch as stored (base offset filled in) */
    size_t len[256];
} model;

static model *model_new(void) {
    model *m = calloc(1, sizeof *m);
    m->a = sl_arena_new(1 << 20);
    return m;
}
static void model_free(model *m) {
    sl_arena_free(m->a);
    free(m);
}

/* Appends a 3-record batch whose values carry MARKER; the model keeps the plaintext. */
static sl_err append_one(sl_log *log, model *m) {
    char val[200];
    snprintf(val, sizeof val, "%s-%04d-%040d", MARKER, m->n, 0);
    size_t len;
    uint8_t *b = sl_batch_build(m->a, 1000 + m->n * 10, 3, val, strlen(val), &len);
    uint8_t *copy = sl_arena_alloc(m->a, len);
    if (!b || !copy) return SL_ENOMEM;
    memcpy(copy, b, len);
    int64_t base = -1;
    sl_err e = sl_log_append(log, b, len, 3, 1000 + m->n * 10 + 2, &base);
    if (e) {
        /* A failed append gives the caller's batch back as it was. */
        if (memcmp(b + 8, copy + 8, len - 8) != 0) return SL_ESTATE;
        return e;
    }
    sl_be64(copy, (uint64_t)base);
    m->base[m->n] = base;
    m->bytes[m->n] = copy;
    m->len[m->n] = len;
    m->n++;
    return SL_OK;
}

/* Reads batch i of the model alone (max_bytes 1) and compares. */
static sl_err read_check(sl_log *log, const model *m, int i) {
    sl_arena *a = sl_arena_new(1 << 16);
    uint8_t *out;
    size_t len;
    sl_err e = sl_log_read(log, m->base[i], 1, a, &out, &len);
    if (!e && (len != m->len[i] || memcmp(out, m->bytes[i], len) != 0)) e = SL_ESTATE;
    sl_arena_free(a);
    return e;
}

/* Reads everything from the start in large reads and compares batch by batch. */
static sl_err read_all_check(sl_log *log, const model *m, int from) {
    sl_arena *a = sl_arena_new(1 << 20);
    int i = from;
    sl_err e = SL_OK;
    while (!e && i < m->n) {
        uint8_t *out;
        size_t len;
        e = sl_log_read(log, m->base[i], 1 << 20, a, &out, &len);
        if (!e && len == 0) e = SL_ESTATE;
        while (!e && len > 0 && i < m->n) {
            if (len < m->len[i] || memcmp(out, m->bytes[i], m->len[i]) != 0) e = SL_ESTATE;
            out += m->len[i];
            len -= m->len[i];
            i++;
        }
    }
    sl_arena_free(a);
    return e;
}

/* Reads every batch header from batch `from` on with sl_log_read_headers and compares them with
 * the model's (CRC field zeroed). */
static sl_err headers_check(sl_log *log, const model *m, int from) {
    sl_err e = SL_OK;
    int i = from;
    while (!e && i < m->n) {
        sl_arena *a = sl_arena_new(4096);
        uint8_t *out;
        int n = 0;
        e = sl_log_read_headers(log, m->base[i], 2, a, &out, &n);
        if (!e && n == 0) e = SL_ESTATE;
        for (int k = 0; !e && k < n; k++, i++) {
            uint8_t want[SL_BATCH_HEADER_SIZE];
            memcpy(want, m->bytes[i], sizeof want);
            memset(want + SL_BATCH_CRC, 0, 4);
            if (memcmp(out + (size_t)k * SL_BATCH_HEADER_SIZE, want, sizeof want) != 0)
                e = SL_ESTATE;
        }
        sl_arena_free(a);
    }
    return e;
}

static void crypt_cfg(sl_log_config *c) {
    sl_log_config_default(c);
    c->segment_bytes = 1400; /* 3 batches per segment */
    c->index_interval_bytes = 256;
    c->retention_ms = -1;
}

/* Segment file header fields. */
static int seg_version(const char *dir, int64_t base) {
    char p[512];
    seg_file(p, sizeof p, dir, base);
    size_t n = 0;
    uint8_t *b = read_file(p, &n);
    int v = b && n >= 64 ? sl_get_be16(b + 4) : -1;
    free(b);
    return v;
}

/* ---- round trips -------------------------------------------------------------------------- */

SL_TEST(crypt_roundtrip_restart_and_marker_absent) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x11, 3, 0);
    model *m = model_new();
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    for (int i = 0; i < 10; i++) CHECK_EQ(append_one(log, m), SL_OK);
    CHECK(sl_log_segment_count(log) >= 3);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    for (int i = 0; i < m->n; i++) CHECK_EQ(read_check(log, m, i), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    /* Every segment is version 2 and no record byte is on disk in clear. */
    for (int i = 0; i < sl_log_segment_count(log); i++) {
        int64_t base;
        uint32_t v;
        CHECK(sl_log_segment_info(log, i, &base, &v));
        CHECK_EQ(v, 1);
        CHECK_EQ(seg_version(dir, base), 2);
    }
    CHECK(!marker_in_dir(dir, MARKER));
    CHECK(!marker_in_dir(dir, "MARKER-7d1f3c"));
    int segs = sl_log_segment_count(log);
    sl_log_close(log);

    /* Reopened without keys: frames and indexes recover, reads need the key. */
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), m->base[m->n - 1] + 3);
    CHECK_EQ(read_check(log, m, 0), SL_EKEY_UNAVAILABLE);
    CHECK_EQ(read_check(log, m, m->n - 1), SL_EKEY_UNAVAILABLE);
    /* ... but the clear batch headers (producer state) read without any key. */
    CHECK_EQ(headers_check(log, m, 0), SL_OK);
    CHECK_EQ(headers_check(log, m, 5), SL_OK);
    sl_log_set_keys(log, &k);
    t.n_open = 0;
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK(t.n_open > 0); /* the old segments' DEKs come from their envelopes */
    /* The first append after a restart goes to a new segment under a new DEK: the old active
     * segment's DEK is never written under again. */
    int news = t.n_new;
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(t.n_new, news + 1);
    CHECK_EQ(sl_log_segment_count(log), segs + 1);
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK(!marker_in_dir(dir, "MARKER-7d1f3c"));
    /* set_keys again (e.g. the key service reloaded): a new segment again. */
    sl_log_set_keys(log, &k);
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(sl_log_segment_count(log), segs + 2);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    /* Record-level ListOffsets by time sees inside sealed batches. */
    int64_t off, ts;
    CHECK_EQ(sl_log_offset_for_time(log, 1000 + 4 * 10 + 1, &off, &ts), SL_OK);
    CHECK_EQ(off, m->base[4] + 1);
    CHECK_EQ(ts, 1000 + 4 * 10 + 1);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* A log written in clear, then encryption turned on: old segments stay readable (below the
 * watermark), new ones are sealed; a restart keeps both readable. */
SL_TEST(crypt_mixed_plaintext_then_encrypted) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    model *m = model_new();
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(log, m), SL_OK);
    int plain_segs = sl_log_segment_count(log);
    sl_log_keys k = mkkeys(&t, 0x22, 0, sl_log_end_offset(log));
    sl_log_set_keys(log, &k);
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK(sl_log_segment_count(log) > plain_segs);
    int64_t base;
    uint32_t v;
    CHECK(sl_log_segment_info(log, 0, &base, &v));
    CHECK_EQ(v, 0);
    CHECK(sl_log_segment_info(log, sl_log_segment_count(log) - 1, &base, &v));
    CHECK_EQ(v, 1);
    CHECK(!sl_log_segment_info(log, sl_log_segment_count(log), &base, &v));
    CHECK_EQ(sl_log_segments_pending(log, 1), plain_segs);
    CHECK_EQ(sl_log_segments_pending(log, 2), sl_log_segment_count(log));
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK_EQ(headers_check(log, m, 0), SL_OK);
    /* Turning keys off again: new segments are plaintext, never a clear frame in a sealed one. */
    sl_log_set_keys(log, NULL);
    int segs = sl_log_segment_count(log);
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(sl_log_segment_count(log), segs + 1);
    CHECK(sl_log_segment_info(log, segs, &base, &v));
    CHECK_EQ(v, 0);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* dek_new failing fails the append with its error and writes nothing; it works once the key
 * service has the key again. */
SL_TEST(crypt_key_unavailable_fails_append_and_writes_nothing) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x33, 1, 0);
    model *m = model_new();
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    CHECK_EQ(append_one(log, m), SL_OK); /* plaintext, before keys */
    k.plain_below = sl_log_end_offset(log);
    sl_log_set_keys(log, &k);
    t.fail_new = SL_EKEY_UNAVAILABLE;
    int64_t end = sl_log_end_offset(log), size = sl_log_size_bytes(log);
    int segs = sl_log_segment_count(log);
    CHECK_EQ(append_one(log, m), SL_EKEY_UNAVAILABLE);
    CHECK_EQ(append_one(log, m), SL_EKEY_UNAVAILABLE);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(sl_log_size_bytes(log), size);
    CHECK_EQ(sl_log_segment_count(log), segs);
    t.fail_new = SL_OK;
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(sl_log_segment_count(log), segs + 1);
    /* After drop_keys (a shred or an eviction) the next append needs a new DEK. */
    sl_log_drop_keys(log);
    t.fail_new = SL_EKEY_DESTROYED;
    CHECK_EQ(append_one(log, m), SL_EKEY_DESTROYED);
    t.fail_new = SL_OK;
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* ---- nonces ------------------------------------------------------------------------------- */

static struct {
    int calls, fail_every;
    int n;
    uint32_t key_id[256];
    uint8_t nonce[256][12];
} g_nh;

static ssize_t nonce_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    const uint8_t *h = iov[0].iov_base;
    if (iovcnt >= 2 && iov[0].iov_len == 64 && h[0] == 0xA5 && (h[3] & 1) && g_nh.n < 256) {
        g_nh.key_id[g_nh.n] = sl_get_be32(h + 12);
        memcpy(g_nh.nonce[g_nh.n], h + 48, 12);
        g_nh.n++;
        if (g_nh.fail_every && ++g_nh.calls % g_nh.fail_every == 0) {
            /* Half the frame reached the file, then the disk filled up. */
            (void)pwritev(fd, iov, 1, off);
            errno = ENOSPC;
            return -1;
        }
    }
    return pwritev(fd, iov, iovcnt, off);
}

SL_TEST(crypt_nonce_never_repeats_across_failed_appends) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    cfg.segment_bytes = 1 << 20; /* one DEK for the whole test */
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x44, 0, 0);
    model *m = model_new();
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    memset(&g_nh, 0, sizeof g_nh);
    g_nh.fail_every = 2;
    sl_storage_pwritev = nonce_pwritev;
    int ok = 0, failed = 0;
    for (int i = 0; i < 30; i++) {
        sl_err e = append_one(log, m);
        if (e == SL_OK)
            ok++;
        else if (e == SL_ENOSPC)
            failed++;
        else
            break;
    }
    sl_storage_pwritev = pwritev;
    CHECK_EQ(ok + failed, 30);
    CHECK(failed >= 10);
    CHECK_EQ(g_nh.n, 30);
    CHECK_EQ(sl_log_segment_count(log), 1);
    /* One DEK, 30 attempts, 30 distinct nonces: counters 1..30 in order. */
    for (int i = 0; i < g_nh.n; i++) {
        CHECK_EQ(g_nh.key_id[i], g_nh.key_id[0]);
        CHECK_EQ(sl_get_be32(g_nh.nonce[i]), 0);
        CHECK_EQ((int64_t)sl_get_be64(g_nh.nonce[i] + 4), i + 1);
    }
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);
    /* Recovery finds no torn frame and every batch reads back. */
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* ---- tampering ---------------------------------------------------------------------------- */

/* Writes 9 batches (3 segments of 3) into `dir` under keys k and closes. */
static sl_err make_enc_log(const char *dir, const sl_log_config *cfg, const sl_log_keys *k,
                           model *m) {
    sl_log *log;
    sl_err e = sl_log_open(dir, cfg, &log);
    if (e) return e;
    sl_log_set_keys(log, k);
    for (int i = 0; i < 9 && !e; i++) e = append_one(log, m);
    if (!e) e = sl_log_sync(log);
    if (!e && sl_log_segment_count(log) < 3) e = SL_ESTATE;
    sl_log_close(log);
    return e;
}

enum {
    T_HDR_FIELD,
    T_NONCE,
    T_RECORD,
    T_CLEAR_BATCH_HDR,
    T_TAG,
    T_PAYLOAD_RAW,
    T_ENV_WRAPPED,
    T_ENV_RAW,
    T_ENV_TOPIC,
    T_NKINDS
};
static const char *const k_tamper_names[] = {"header field",
                                             "nonce",
                                             "record byte",
                                             "clear batch header",
                                             "tag",
                                             "payload (CRC not fixed)",
                                             "wrapped DEK",
                                             "envelope (CRC not fixed)",
                                             "envelope topic id"};

/* Applies one tamper kind to frame 1 (the second) of the first segment's file image. */
static void tamper(uint8_t *f, size_t n, int kind) {
    size_t pos = frame_pos(f, n, 1), hl = sl_get_be32(f + 24);
    uint32_t plen = sl_get_be32(f + pos + 16);
    size_t payload = pos + 64;
    switch (kind) {
    case T_HDR_FIELD:
        f[pos + 43] ^= 1; /* max timestamp: only the AAD notices once the CRC is fixed */
        fix_frame_crcs(f, pos);
        break;
    case T_NONCE:
        f[pos + 59] ^= 1;
        fix_frame_crcs(f, pos);
        break;
    case T_RECORD:
        f[payload + plen - 5] ^= 0x20;
        fix_frame_crcs(f, pos);
        break;
    case T_CLEAR_BATCH_HDR:
        f[payload + SL_BATCH_PRODUCER_ID + 7] ^= 1;
        fix_frame_crcs(f, pos);
        break;
    case T_TAG:
        f[payload + plen + 3] ^= 0x80;
        fix_frame_crcs(f, pos);
        break;
    case T_PAYLOAD_RAW:
        f[payload + 70] ^= 0x04;
        break;
    case T_ENV_WRAPPED:
        f[64 + 44 + 5] ^= 1;
        fix_envelope_crc(f);
        break;
    case T_ENV_RAW:
        f[hl - 10] ^= 1;
        break;
    case T_ENV_TOPIC:
        f[64 + 12] ^= 1;
        fix_envelope_crc(f);
        break;
    }
}

SL_TEST(crypt_every_tamper_fails_that_read_only) {
    char *src = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x55, 2, 0);
    model *m = model_new();
    CHECK_EQ(make_enc_log(src, &cfg, &k, m), SL_OK);
    for (int kind = 0; kind < T_NKINDS; kind++) {
        char *dir = tmpdir();
        copy_dir(src, dir);
        char p[512];
        seg_file(p, sizeof p, dir, 0);
        size_t n = 0;
        uint8_t *f = read_file(p, &n);
        CHECK(f);
        tamper(f, n, kind);
        CHECK_EQ(write_file(p, f, n), 0);
        free(f);
        sl_log *log;
        CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK); /* no key needed, nothing fails open */
        sl_log_set_keys(log, &k);
        sl_err e = read_check(log, m, 1);
        if (e != SL_ETAMPER)
            fprintf(stderr, "  tamper '%s': %s\n", k_tamper_names[kind], sl_errname(e));
        CHECK_EQ(e, SL_ETAMPER);
        /* A read starting before it returns only what authenticated (or fails). */
        sl_arena *a = sl_arena_new(1 << 16);
        uint8_t *out;
        size_t len;
        e = sl_log_read(log, m->base[0], 1 << 20, a, &out, &len);
        CHECK(e == SL_ETAMPER ||
              (e == SL_OK && len == m->len[0] && !memcmp(out, m->bytes[0], len)));
        sl_arena_free(a);
        /* The other segments and new appends are fine. */
        CHECK_EQ(read_all_check(log, m, 3), SL_OK);
        model *m2 = model_new();
        CHECK_EQ(append_one(log, m2), SL_OK);
        CHECK_EQ(read_check(log, m2, 0), SL_OK);
        model_free(m2);
        sl_log_close(log);
        rm_rf(dir);
    }
    model_free(m);
    rm_rf(src);
}

/* Frames and whole segments moved between partitions (same topic key, identical batches, so
 * every length and offset lines up) fail authentication; the rest of the log is fine. */
SL_TEST(crypt_frames_and_segments_moved_between_logs_fail) {
    char *da = tmpdir(), *db = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys ka = mkkeys(&t, 0x66, 0, 0), kb = mkkeys(&t, 0x66, 1, 0);
    sl_log_keys kc = mkkeys(&t, 0x67, 0, 0); /* another topic, same partition number */
    model *ma = model_new(), *mb = model_new();
    CHECK_EQ(make_enc_log(da, &cfg, &ka, ma), SL_OK);
    CHECK_EQ(make_enc_log(db, &cfg, &kb, mb), SL_OK);
    char pa[512], pb[512];
    seg_file(pa, sizeof pa, da, 0);
    seg_file(pb, sizeof pb, db, 0);
    size_t na = 0, nb = 0;
    uint8_t *fa = read_file(pa, &na), *fb = read_file(pb, &nb);
    CHECK(fa && fb && na == nb);

    /* One frame of A copied over the same frame of B. */
    size_t pos = frame_pos(fa, na, 1), flen = sl_get_be32(fa + pos + 8);
    uint8_t *x = malloc(nb);
    memcpy(x, fb, nb);
    memcpy(x + pos, fa + pos, flen);
    CHECK_EQ(write_file(pb, x, nb), 0);
    sl_log *log;
    CHECK_EQ(sl_log_open(db, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &kb);
    CHECK_EQ(read_check(log, mb, 1), SL_ETAMPER);
    CHECK_EQ(read_check(log, mb, 0), SL_OK);
    CHECK_EQ(read_all_check(log, mb, 3), SL_OK);
    sl_log_close(log);

    /* The whole segment file of A in place of B's. */
    CHECK_EQ(write_file(pb, fa, na), 0);
    CHECK_EQ(sl_log_open(db, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &kb);
    for (int i = 0; i < 3; i++) CHECK_EQ(read_check(log, mb, i), SL_ETAMPER);
    CHECK_EQ(read_all_check(log, mb, 3), SL_OK);
    sl_log_close(log);

    /* ... even when its envelope is edited to name B (the DEK then does not unwrap). */
    memcpy(x, fa, na);
    sl_be32(x + 64 + 28, 1);
    fix_envelope_crc(x);
    CHECK_EQ(write_file(pb, x, na), 0);
    CHECK_EQ(sl_log_open(db, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &kb);
    CHECK_EQ(read_check(log, mb, 0), SL_ETAMPER);
    CHECK_EQ(read_all_check(log, mb, 3), SL_OK);
    sl_log_close(log);

    /* A's own directory opened as another topic's partition 0. */
    CHECK_EQ(sl_log_open(da, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &kc);
    CHECK_EQ(read_check(log, ma, 0), SL_ETAMPER);
    CHECK_EQ(read_check(log, ma, 8), SL_ETAMPER);
    sl_log_set_keys(log, &ka);
    CHECK_EQ(read_all_check(log, ma, 0), SL_OK);
    sl_log_close(log);

    /* A frame replayed at another place in the same segment (offsets rewritten to fit, CRCs
     * fixed): the frame header in the AAD no longer matches. */
    memcpy(x, fa, na);
    size_t p0 = frame_pos(x, na, 0), p1 = frame_pos(x, na, 1);
    size_t l0 = sl_get_be32(x + p0 + 8), l1 = sl_get_be32(x + p1 + 8);
    CHECK_EQ(l0, l1);
    uint8_t hdr1[64];
    memcpy(hdr1, x + p1, 64);
    memcpy(x + p1, x + p0, l0);        /* frame 0's bytes where frame 1 was */
    memcpy(x + p1 + 20, hdr1 + 20, 8); /* ... with frame 1's base offset */
    memcpy(x + p1 + 64, hdr1 + 20, 8); /* ... in the batch header too */
    fix_frame_crcs(x, p1);
    CHECK_EQ(write_file(pa, x, na), 0);
    CHECK_EQ(sl_log_open(da, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &ka);
    CHECK_EQ(read_check(log, ma, 0), SL_OK);
    CHECK_EQ(read_check(log, ma, 1), SL_ETAMPER);
    CHECK_EQ(read_check(log, ma, 2), SL_OK);
    sl_log_close(log);

    free(x);
    free(fa);
    free(fb);
    model_free(ma);
    model_free(mb);
    rm_rf(da);
    rm_rf(db);
}

/* Plaintext is served only below the watermark: clear data at or above it (a downgrade), or a
 * clear frame appended to a sealed segment, fails; an encrypted frame without keys does too. */
SL_TEST(crypt_plaintext_injection_refused) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    cfg.segment_bytes = 1 << 20;
    tkeys t;
    tkeys_init(&t);
    model *m = model_new();
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    for (int i = 0; i < 4; i++) CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);
    /* Encryption was turned on at offset 6 (batch 2): batches 2 and 3 cannot be clear. */
    sl_log_keys k = mkkeys(&t, 0x77, 0, m->base[2]);
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_check(log, m, 0), SL_OK);
    CHECK_EQ(read_check(log, m, 1), SL_OK);
    CHECK_EQ(read_check(log, m, 2), SL_ETAMPER);
    CHECK_EQ(read_check(log, m, 3), SL_ETAMPER);
    CHECK_EQ(headers_check(log, m, 2), SL_ETAMPER);
    CHECK_EQ(headers_check(log, m, 3), SL_ETAMPER);
    sl_arena *ha = sl_arena_new(4096);
    uint8_t *hout;
    int hn = 0;
    CHECK_EQ(sl_log_read_headers(log, 0, 10, ha, &hout, &hn), SL_OK);
    CHECK_EQ(hn, 2); /* stops before the injection */
    sl_arena_free(ha);
    /* A read from 0 returns what may be returned and stops before the injection. */
    sl_arena *a = sl_arena_new(1 << 16);
    uint8_t *out;
    size_t len;
    CHECK_EQ(sl_log_read(log, 0, 1 << 20, a, &out, &len), SL_OK);
    CHECK_EQ(len, m->len[0] + m->len[1]);
    sl_arena_free(a);
    /* New data goes to a sealed segment. */
    for (int i = 0; i < 2; i++) CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(read_all_check(log, m, 4), SL_OK);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int64_t seg_base, end = sl_log_end_offset(log);
    uint32_t v;
    CHECK(sl_log_segment_info(log, sl_log_segment_count(log) - 1, &seg_base, &v));
    CHECK_EQ(v, 1);
    sl_log_close(log);

    /* A clear frame appended to the sealed active segment (valid CRCs, right offset). */
    char p[512];
    seg_file(p, sizeof p, dir, seg_base);
    size_t n = 0;
    uint8_t *f = read_file(p, &n);
    CHECK(f);
    size_t blen;
    sl_arena *ba = sl_arena_new(4096);
    uint8_t *b = sl_batch_build(ba, 5000, 2, "injected", 8, &blen);
    sl_be64(b, (uint64_t)end);
    uint8_t *g = malloc(n + 52 + blen);
    memcpy(g, f, n);
    uint8_t *h = g + n;
    memset(h, 0, 52);
    h[0] = 0xA5;
    h[1] = 1;
    sl_be16(h + 4, 52);
    sl_be32(h + 8, (uint32_t)(52 + blen));
    sl_be32(h + 16, (uint32_t)blen);
    sl_be64(h + 20, (uint64_t)end);
    sl_be32(h + 28, 1);
    sl_be32(h + 32, 2);
    sl_be64(h + 36, 5001);
    sl_be32(h + 48, sl_crc32c(0, h, 48));
    memcpy(h + 52, b, blen);
    CHECK_EQ(write_file(p, g, n + 52 + blen), 0);
    free(f);
    free(g);
    sl_arena_free(ba);
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    CHECK_EQ(sl_log_end_offset(log), end + 2); /* structurally valid: recovery keeps it */
    sl_log_set_keys(log, &k);
    a = sl_arena_new(1 << 16);
    CHECK_EQ(sl_log_read(log, end, 1 << 20, a, &out, &len), SL_ETAMPER);
    /* Even with no watermark at all (plain_below far above): a clear frame in a sealed
     * segment is refused. */
    sl_log_keys k2 = k;
    k2.plain_below = INT64_MAX;
    sl_log_set_keys(log, &k2);
    CHECK_EQ(sl_log_read(log, end, 1 << 20, a, &out, &len), SL_ETAMPER);
    CHECK_EQ(read_check(log, m, 4), SL_OK);
    sl_arena_free(a);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* ---- re-encryption ------------------------------------------------------------------------ */

/* Runs re-encryption to the end; *jobs counts the segments rewritten. */
static sl_err reenc_all(sl_log *log, uint32_t v, int *jobs) {
    for (int guard = 0; guard < 1000; guard++) {
        sl_log_reenc *j = NULL;
        sl_err e = sl_log_reenc_prepare(log, v, &j);
        if (e || !j) return e;
        e = sl_log_reenc_finish(j, sl_log_reenc_run(j));
        if (e) return e;
        if (jobs) (*jobs)++;
    }
    return SL_ESTATE;
}

static bool all_segments_at(sl_log *log, const char *dir, uint32_t v) {
    for (int i = 0; i < sl_log_segment_count(log); i++) {
        int64_t base;
        uint32_t tv;
        if (!sl_log_segment_info(log, i, &base, &tv) || tv != v) return false;
        /* An empty active segment may still be the plaintext one a log starts with. */
        if (seg_version(dir, base) != 2 && !(i == sl_log_segment_count(log) - 1)) return false;
    }
    return true;
}

static bool reenc_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) found |= strstr(de->d_name, ".reenc") != NULL;
    if (d) closedir(d);
    return found;
}

/* A log of 6 plaintext batches (2 segments) then 6 sealed under topic-key version 1. */
static sl_err make_mixed_log(const char *dir, const sl_log_config *cfg, tkeys *t, sl_log_keys *k,
                             model *m) {
    sl_log *log;
    sl_err e = sl_log_open(dir, cfg, &log);
    for (int i = 0; i < 6 && !e; i++) e = append_one(log, m);
    if (e) {
        sl_log_close(log);
        return e;
    }
    k->plain_below = sl_log_end_offset(log);
    t->tk_version = 1;
    sl_log_set_keys(log, k);
    for (int i = 0; i < 6 && !e; i++) e = append_one(log, m);
    if (!e) e = sl_log_sync(log);
    sl_log_close(log);
    return e;
}

typedef struct reader_arg {
    sl_log_reenc *job;
    sl_err result;
} reader_arg;

static void *run_thread(void *p) {
    reader_arg *r = p;
    r->result = sl_log_reenc_run(r->job);
    return NULL;
}

SL_TEST(crypt_reencrypt_plaintext_and_old_version) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x88, 4, 0);
    model *m = model_new();
    CHECK_EQ(make_mixed_log(dir, &cfg, &t, &k, m), SL_OK);
    CHECK(marker_in_dir(dir, "MARKER-7d1f3c")); /* the plaintext part */
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(sl_log_segments_pending(log, 1), 2);

    /* The first job runs on another thread while this one keeps reading the same segment. */
    sl_log_reenc *j = NULL;
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK);
    CHECK(j);
    reader_arg ra = {.job = j};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, run_thread, &ra), 0);
    for (int r = 0; r < 20; r++) CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    pthread_join(th, NULL);
    CHECK_EQ(ra.result, SL_OK);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK); /* still through the old file's descriptor */
    CHECK_EQ(sl_log_reenc_finish(j, ra.result), SL_OK);
    CHECK_EQ(sl_log_segments_pending(log, 1), 1);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    int jobs = 0;
    CHECK_EQ(reenc_all(log, 1, &jobs), SL_OK);
    CHECK_EQ(jobs, 1);
    CHECK_EQ(sl_log_segments_pending(log, 1), 0);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    for (int i = 0; i < m->n; i++) CHECK_EQ(read_check(log, m, i), SL_OK);
    CHECK(!marker_in_dir(dir, "MARKER-7d1f3c"));
    CHECK(all_segments_at(log, dir, 1));

    /* A new topic-key version: every segment, the active one included (it is rolled). */
    t.tk_version = 2;
    int segs = sl_log_segment_count(log);
    CHECK_EQ(sl_log_segments_pending(log, 2), segs);
    jobs = 0;
    CHECK_EQ(reenc_all(log, 2, &jobs), SL_OK);
    CHECK_EQ(jobs, segs);
    CHECK_EQ(sl_log_segments_pending(log, 2), 0);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK_EQ(append_one(log, m), SL_OK);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    int64_t off, ts;
    CHECK_EQ(sl_log_offset_for_time(log, 1000 + 7 * 10 + 2, &off, &ts), SL_OK);
    CHECK_EQ(off, m->base[7] + 2);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);

    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK(all_segments_at(log, dir, 2));
    CHECK(!reenc_leftovers(dir));
    CHECK(!marker_in_dir(dir, "MARKER-7d1f3c"));
    /* Nothing left: prepare says so. */
    CHECK_EQ(sl_log_reenc_prepare(log, 2, &j), SL_OK);
    CHECK(j == NULL);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Clear data above the watermark is refused, not sealed (that would launder an injection). */
SL_TEST(crypt_reencrypt_refuses_to_launder_injected_plaintext) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x99, 0, 0);
    model *m = model_new();
    CHECK_EQ(make_mixed_log(dir, &cfg, &t, &k, m), SL_OK);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_keys k2 = k;
    k2.plain_below = m->base[4]; /* batches 4 and 5 (second segment) are clear but too new */
    sl_log_set_keys(log, &k2);
    sl_log_reenc *j;
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK); /* the first segment: fine */
    CHECK_EQ(sl_log_reenc_finish(j, sl_log_reenc_run(j)), SL_OK);
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK);
    CHECK(j);
    sl_err e = sl_log_reenc_run(j);
    CHECK_EQ(e, SL_ETAMPER);
    CHECK_EQ(sl_log_reenc_finish(j, e), SL_ETAMPER);
    CHECK_EQ(sl_log_segments_pending(log, 1), 1);
    CHECK(!reenc_leftovers(dir));
    CHECK_EQ(read_check(log, m, 3), SL_OK);
    CHECK_EQ(read_check(log, m, 4), SL_ETAMPER);
    CHECK_EQ(read_check(log, m, 6), SL_OK);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Crash states between the steps, and retention deleting the segment during a job. */
SL_TEST(crypt_reencrypt_interrupted_and_raced) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0xAA, 0, 0);
    model *m = model_new();
    CHECK_EQ(make_mixed_log(dir, &cfg, &t, &k, m), SL_OK);
    char p[512], q[512];

    /* Leftover temporary files (a crash while writing them): removed at open. */
    snprintf(p, sizeof p, "%s/%020d.log.reenc", dir, 0);
    CHECK_EQ(write_file(p, (const uint8_t *)"torn", 4), 0);
    snprintf(p, sizeof p, "%s/%020d.index.reenc", dir, 0);
    CHECK_EQ(write_file(p, (const uint8_t *)"torn", 4), 0);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    CHECK(!reenc_leftovers(dir));
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);

    /* Run done (files swapped), finish never ran: the process stopped. */
    snprintf(p, sizeof p, "%s/%020d.index", dir, 0);
    size_t old_idx_n = 0;
    uint8_t *old_idx = read_file(p, &old_idx_n);
    CHECK(old_idx);
    sl_log_reenc *j;
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK);
    CHECK_EQ(sl_log_reenc_run(j), SL_OK);
    sl_log_close(log);
    CHECK_EQ(sl_log_reenc_finish(j, SL_OK), SL_OK); /* after close: only frees */
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    CHECK_EQ(sl_log_segments_pending(log, 1), 1);
    CHECK_EQ(seg_version(dir, 0), 2);
    sl_log_close(log);

    /* Crashed after the data swap but before the indexes were renamed: the old indexes are next
     * to the new data, with the swapped-out file still there. */
    CHECK_EQ(write_file(p, old_idx, old_idx_n), 0);
    snprintf(q, sizeof q, "%s/%020d.log.reenc", dir, 0);
    CHECK_EQ(write_file(q, (const uint8_t *)"old data", 8), 0);
    free(old_idx);
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    CHECK(!reenc_leftovers(dir));
    sl_log_set_keys(log, &k);
    CHECK_EQ(read_all_check(log, m, 0), SL_OK);
    for (int i = 0; i < m->n; i++) CHECK_EQ(read_check(log, m, i), SL_OK);

    /* Retention deletes the segment while the job runs (before the swap): nothing comes back. */
    int64_t seg1;
    uint32_t v;
    CHECK(sl_log_segment_info(log, 1, &seg1, &v));
    CHECK_EQ(v, 0);
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK);
    CHECK(j);
    CHECK_EQ(sl_log_delete_records(log, m->base[6]), SL_OK); /* drops segments 0 and 1 */
    CHECK_EQ(sl_log_reenc_finish(j, sl_log_reenc_run(j)), SL_OK);
    seg_file(q, sizeof q, dir, seg1);
    CHECK(access(q, F_OK) != 0);
    CHECK(!reenc_leftovers(dir));
    CHECK_EQ(read_all_check(log, m, 6), SL_OK);
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK); /* nothing pending now */
    CHECK(j == NULL);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    CHECK_EQ(sl_log_start_offset(log), m->base[6]);
    CHECK_EQ(read_all_check(log, m, 6), SL_OK);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* Retention after the swap but before finish: finish discards, and the file stays deleted. */
SL_TEST(crypt_reencrypt_segment_deleted_before_finish) {
    char *dir = tmpdir();
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0xAB, 0, 0);
    model *m = model_new();
    CHECK_EQ(make_mixed_log(dir, &cfg, &t, &k, m), SL_OK);
    sl_log *log;
    CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
    sl_log_set_keys(log, &k);
    sl_log_reenc *j;
    CHECK_EQ(sl_log_reenc_prepare(log, 1, &j), SL_OK);
    CHECK_EQ(sl_log_reenc_run(j), SL_OK);
    CHECK_EQ(sl_log_delete_records(log, m->base[3]), SL_OK);
    CHECK_EQ(sl_log_reenc_finish(j, SL_OK), SL_OK);
    char p[512];
    seg_file(p, sizeof p, dir, 0);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/%020d.index", dir, 0);
    CHECK(access(p, F_OK) != 0);
    CHECK_EQ(read_all_check(log, m, 3), SL_OK);
    sl_log_close(log);
    model_free(m);
    rm_rf(dir);
}

/* kill -9 at every write and fsync of a whole re-encryption (the child dies mid-write, leaving
 * half of it): reopening always reads everything, and a rerun finishes the job. */
static int g_kill_at, g_kill_n;
static ssize_t kill_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    if (++g_kill_n == g_kill_at) {
        (void)pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
        _exit(77);
    }
    return pwritev(fd, iov, iovcnt, off);
}
static int kill_fsync(int fd) {
    if (++g_kill_n == g_kill_at) _exit(77);
    return fsync(fd);
}

SL_TEST(crypt_reencrypt_kill9_at_every_step_then_rerun) {
    char src[64]; /* tmpdir()'s names are reused after 16 calls */
    snprintf(src, sizeof src, "%s", tmpdir());
    sl_log_config cfg;
    crypt_cfg(&cfg);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0xBB, 0, 0);
    model *m = model_new();
    CHECK_EQ(make_mixed_log(src, &cfg, &t, &k, m), SL_OK);
    t.tk_version = 2;
    int crashes = 0;
    bool finished = false;
    for (int at = 1; at < 400 && !finished; at++) {
        char dir[64];
        snprintf(dir, sizeof dir, "%s", tmpdir());
        copy_dir(src, dir);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            g_kill_at = at;
            g_kill_n = 0;
            sl_storage_pwritev = kill_pwritev;
            sl_storage_fsync = kill_fsync;
            sl_log *log;
            if (sl_log_open(dir, &cfg, &log) != SL_OK) _exit(1);
            sl_log_set_keys(log, &k);
            _exit(reenc_all(log, 2, NULL) == SL_OK ? 0 : 2);
        }
        int st = 0;
        CHECK_EQ(waitpid(pid, &st, 0), pid);
        CHECK(WIFEXITED(st));
        if (WEXITSTATUS(st) == 0)
            finished = true;
        else {
            CHECK_EQ(WEXITSTATUS(st), 77);
            crashes++;
        }
        sl_log *log;
        CHECK_EQ(sl_log_open(dir, &cfg, &log), SL_OK);
        CHECK(!reenc_leftovers(dir));
        sl_log_set_keys(log, &k);
        sl_err e = read_all_check(log, m, 0);
        if (e) fprintf(stderr, "  killed at step %d: %s\n", at, sl_errname(e));
        CHECK_EQ(e, SL_OK);
        CHECK_EQ(reenc_all(log, 2, NULL), SL_OK);
        CHECK_EQ(sl_log_segments_pending(log, 2), 0);
        CHECK_EQ(read_all_check(log, m, 0), SL_OK);
        CHECK_EQ(sl_log_sync(log), SL_OK);
        sl_log_close(log);
        CHECK(!marker_in_dir(dir, "MARKER-7d1f3c"));
        rm_rf(dir);
    }
    CHECK(finished);
    CHECK(crashes >= 20);
    model_free(m);
    rm_rf(src);
}
