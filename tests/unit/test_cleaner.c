/* Log cleaner (compaction) tests: each runs in its own directory under /dev/shm (or /tmp), with
 * small segments, injected clocks and a simulated crash at every durable step of the swap. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "cleaner_crash.h"
#include "log_keys_fake.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_cleaner.h"
#include "storage/sl_envelope.h"
#include "storage/sl_frame.h"
#include "storage/sl_log.h"
#include "storage/sl_storage_hooks.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static void log_cfg(sl_log_config *c) {
    sl_log_config_default(c);
    c->segment_bytes = 1024;
    c->segment_ms = -1;
    c->index_interval_bytes = 200;
    c->retention_ms = -1;
}

/* A log in a fresh directory (`dir`, 64 bytes) with the small segments of log_cfg (`lc`, for
 * reopening it), sealed under `k` when given; NULL when either fails. */
static sl_log *new_log(char *dir, sl_log_config *lc, const sl_log_keys *k) {
    log_cfg(lc);
    return cleaner_new_log(dir, "sl_cleaner", lc, k);
}

static void clean_cfg(sl_cleaner_config *c) {
    sl_cleaner_config_default(c);
    c->io_buffer_bytes = 4096;
    c->offset_map_bytes = 1 << 20;
    c->delete_retention_ms = 1000;
}

/* What was appended: one entry per record. */
#define MAXR 4096
typedef struct rec {
    int64_t off, ts;
    char key[24], val[40];
    bool nokey, tomb;
} rec;
typedef struct model {
    rec r[MAXR];
    int n;
} model;

/* Appends one batch of `n` records: keys[i] NULL for no key, vals[i] NULL for a tombstone. */
static int append(sl_log *log, model *m, int n, const char *const *keys, const char *const *vals,
                  int codec, int64_t ts) {
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 256);
    for (int i = 0; i < n; i++) {
        sl_rec_in in = {.timestamp_delta = i, .offset_delta = i};
        in.key = keys[i] ? (sl_bytes){(const uint8_t *)keys[i], (int32_t)strlen(keys[i])}
                         : SL_BYTES_NULL;
        in.value = vals[i] ? (sl_bytes){(const uint8_t *)vals[i], (int32_t)strlen(vals[i])}
                           : SL_BYTES_NULL;
        if (sl_rec_builder_add(&b, &in)) return -1;
    }
    uint8_t *batch;
    size_t len;
    int64_t base;
    if (sl_rec_builder_seal(&b, (int16_t)codec, ts, ts + n - 1, &batch, &len) ||
        sl_log_append(log, batch, len, n, ts + n - 1, &base)) {
        sl_arena_free(a);
        return -1;
    }
    sl_arena_free(a);
    for (int i = 0; i < n && m && m->n < MAXR; i++) {
        rec *r = &m->r[m->n++];
        memset(r, 0, sizeof *r);
        r->off = base + i;
        r->ts = ts + i;
        r->nokey = !keys[i];
        r->tomb = !vals[i];
        if (keys[i]) snprintf(r->key, sizeof r->key, "%s", keys[i]);
        if (vals[i]) snprintf(r->val, sizeof r->val, "%s", vals[i]);
    }
    return 0;
}

static int append1(sl_log *log, model *m, const char *key, const char *val, int64_t ts) {
    return append(log, m, 1, &key, &val, 0, ts);
}

/* Reads the whole log back through sl_log_read. *codecs: bit c set when a batch with records
 * used codec c; *horizon_batches: batches with the delete-horizon attribute. */
static int read_all(sl_log *log, rec *out, int cap, int *codecs, int *horizon_batches) {
    int n = 0;
    if (codecs) *codecs = 0;
    if (horizon_batches) *horizon_batches = 0;
    int64_t off = sl_log_start_offset(log), end = sl_log_end_offset(log);
    while (off < end) {
        sl_arena *a = sl_arena_new(1 << 16);
        uint8_t *p;
        size_t len;
        if (sl_log_read(log, off, 1 << 16, a, &p, &len) || len == 0) {
            sl_arena_free(a);
            return -1;
        }
        size_t at = 0;
        while (at < len) {
            sl_batch_info bi;
            if (!sl_batch_parse(p + at, len - at, &bi) || !sl_batch_crc_ok(p + at, bi.size)) {
                sl_arena_free(a);
                return -1;
            }
            if (codecs && bi.record_count) *codecs |= 1 << (bi.attributes & 7);
            if (horizon_batches && (bi.attributes & 0x40)) (*horizon_batches)++;
            sl_rec_iter it;
            sl_record r;
            if (sl_rec_iter_init(&it, p + at, bi.size, a, 1 << 20)) {
                sl_arena_free(a);
                return -1;
            }
            while (sl_rec_iter_next(&it, &r)) {
                if (r.offset < off) continue;
                if (n == cap) break;
                rec *o = &out[n++];
                memset(o, 0, sizeof *o);
                o->off = r.offset;
                o->ts = r.timestamp;
                o->nokey = r.key.len < 0;
                o->tomb = r.value.len < 0;
                if (r.key.len > 0) memcpy(o->key, r.key.p, (size_t)r.key.len);
                if (r.value.len > 0) memcpy(o->val, r.value.p, (size_t)r.value.len);
            }
            if (sl_rec_iter_err(&it)) {
                sl_arena_free(a);
                return -1;
            }
            off = bi.base_offset + bi.last_offset_delta + 1;
            at += bi.size;
        }
        sl_arena_free(a);
    }
    return n;
}

/* What a complete clean at `now` must leave: records at or after `end` untouched; before it, a
 * keyed record only when no later record below `end` has its key, and a tombstone only until
 * its horizon (`tomb_gone`: its horizon has passed). */
static int expect(const model *m, int64_t end, bool tomb_gone, rec *out) {
    int n = 0;
    for (int i = 0; i < m->n; i++) {
        const rec *r = &m->r[i];
        bool keep = true;
        if (r->off < end && !r->nokey) {
            for (int k = i + 1; k < m->n && keep; k++)
                if (m->r[k].off < end && !m->r[k].nokey && !strcmp(m->r[k].key, r->key))
                    keep = false;
            if (keep && r->tomb && tomb_gone) keep = false;
        }
        if (keep) out[n++] = *r;
    }
    return n;
}

static bool same(const rec *a, int na, const rec *b, int nb) {
    if (na != nb) {
        fprintf(stderr, "  record count %d vs %d\n", na, nb);
        return false;
    }
    for (int i = 0; i < na; i++)
        if (a[i].off != b[i].off || a[i].tomb != b[i].tomb || a[i].nokey != b[i].nokey ||
            strcmp(a[i].key, b[i].key) || strcmp(a[i].val, b[i].val) || a[i].ts != b[i].ts) {
            fprintf(stderr, "  record %d differs: off %lld/%lld key %s/%s val %s/%s\n", i,
                    (long long)a[i].off, (long long)b[i].off, a[i].key, b[i].key, a[i].val,
                    b[i].val);
            return false;
        }
    return true;
}

static rec g_got[MAXR], g_want[MAXR];

/* True when the log holds what a complete clean below `end` leaves (its tombstones kept). */
static bool compacted(sl_log *log, const model *m, int64_t end) {
    int nw = expect(m, end, false, g_want);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    return same(g_got, ng, g_want, nw);
}

static sl_err clean(sl_log *log, const sl_cleaner_config *c, int64_t now, sl_cleaner_result *res) {
    sl_cleaner_job *j = NULL;
    memset(res, 0, sizeof *res);
    res->bad_base = -1;
    sl_err e = sl_cleaner_prepare(log, c, now, &j);
    if (e || !j) return e;
    return sl_cleaner_commit(j, sl_cleaner_run(j), res);
}

/* `rounds` updates of `keys` keys, one record per batch, timestamps from ts0. */
static int fill(sl_log *log, model *m, int keys, int rounds, int64_t ts0) {
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < keys; k++) {
            char key[24], val[40];
            snprintf(key, sizeof key, "key-%d", k);
            snprintf(val, sizeof val, "value-%d-round-%d", k, r);
            if (append1(log, m, key, val, ts0 + r * keys + k)) return -1;
        }
    return 0;
}

static int64_t active_base(sl_log *log) {
    int64_t b = 0;
    uint32_t v;
    sl_log_segment_info(log, sl_log_segment_count(log) - 1, &b, &v);
    return b;
}

static long file_bytes(const char *dir, int64_t base, uint8_t *buf, size_t cap) {
    char p[512];
    snprintf(p, sizeof p, "%s/%020lld.log", dir, (long long)base);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    long n = (long)fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

#define NOW 1000000000LL

/* ---- tests ------------------------------------------------------------------------------- */

/* Reads segment `i`'s offset index file into buf[0..cap): its length, -1 when it cannot be read.
 * `path` (512 bytes, optional) gets the file's name. */
static long segment_index(sl_log *log, const char *dir, int i, uint8_t *buf, size_t cap,
                          char *path) {
    int64_t b;
    uint32_t v;
    char p[512];
    if (!sl_log_segment_info(log, i, &b, &v)) return -1;
    snprintf(p, sizeof p, "%s/%020lld.index", dir, (long long)b);
    if (path) memcpy(path, p, sizeof p);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    long n = (long)fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

SL_TEST(cleaner_latest_value_per_key) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 10, 20, 1000), 0);
    const char *nk = NULL, *nv = "no key: kept";
    CHECK_EQ(append(log, &m, 1, &nk, &nv, 0, 5000), 0); /* a keyless record (policy switched) */
    CHECK_EQ(fill(log, &m, 10, 2, 6000), 0);
    CHECK(sl_log_segment_count(log) > 10);
    int64_t act = active_base(log), end = sl_log_end_offset(log), size0 = sl_log_size_bytes(log);
    static uint8_t abuf[4096], bbuf[4096];
    long alen = file_bytes(dir, act, abuf, sizeof abuf);
    CHECK(alen > 64);

    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_checkpoint ck = {0, -1};
    sl_cleaner_assessment as;
    sl_cleaner_assess(log, &cc, &ck, NOW, &as);
    CHECK(as.due && as.dirty_ratio == 1.0 && as.cleanable_end == act);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(res.segments_rewritten > 0 && res.records_dropped > 0 && !res.map_full);
    CHECK_EQ(res.checkpoint.offset, act);
    CHECK(sl_log_size_bytes(log) < size0 / 2);
    CHECK_EQ(sl_log_end_offset(log), end);
    /* The active segment is untouched, byte for byte. */
    CHECK_EQ(active_base(log), act);
    CHECK_EQ(file_bytes(dir, act, bbuf, sizeof bbuf), alen);
    CHECK(!memcmp(abuf, bbuf, (size_t)alen));

    int nw = expect(&m, act, false, g_want);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    /* Exactly one record per key below the active segment, plus the keyless one. */
    int below = 0;
    for (int i = 0; i < ng; i++) below += g_got[i].off < act;
    CHECK_EQ(below, 11);

    /* Reopened: the swapped segments load (and read) the same. */
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    CHECK_EQ(sl_cleaner_read_checkpoint(dir, &ck), SL_OK);
    CHECK_EQ(ck.offset, act);
    sl_cleaner_assess(log, &cc, &ck, NOW, &as);
    CHECK(!as.due && as.dirty_bytes == 0);
    /* Cleaning again changes nothing. */
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK_EQ(res.segments_rewritten, 0);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    /* The offset indexes the cleaner wrote are the ones open rebuilds from the data. */
    int nseg = sl_log_segment_count(log);
    static uint8_t idx[64][512];
    long ilen[64];
    CHECK(nseg <= 64);
    for (int i = 0; i < nseg - 1; i++) {
        char p[512];
        ilen[i] = segment_index(log, dir, i, idx[i], sizeof idx[i], p);
        CHECK(ilen[i] >= 0);
        CHECK(unlink(p) == 0);
    }
    long itotal = 0;
    for (int i = 0; i < nseg - 1; i++) itotal += ilen[i];
    CHECK(itotal > 0);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
    for (int i = 0; i < nseg - 1; i++) {
        uint8_t buf[512];
        long n = segment_index(log, dir, i, buf, sizeof buf, NULL);
        CHECK_EQ(n, ilen[i]);
        CHECK(!memcmp(buf, idx[i], (size_t)n));
    }
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_tombstones_kept_for_delete_retention) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(append1(log, &m, "gone", "v1", 100), 0);
    CHECK_EQ(append1(log, &m, "stays", "v1", 101), 0);
    CHECK_EQ(append1(log, &m, "gone", "v2", 102), 0);
    CHECK_EQ(append1(log, &m, "gone", NULL, 103), 0); /* tombstone */
    CHECK_EQ(fill(log, &m, 30, 1, 200), 0);           /* unique keys: rolls segments */
    int64_t act = active_base(log);
    CHECK(act > 4);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK_EQ(res.checkpoint.horizon_ms, NOW + 1000);
    int hb;
    int ng = read_all(log, g_got, MAXR, NULL, &hb);
    int nw = expect(&m, act, false, g_want);
    CHECK(same(g_got, ng, g_want, nw)); /* values before the tombstone are gone, it stays */
    CHECK_EQ(hb, 1);                    /* its batch carries the delete horizon */
    CHECK(g_got[1].tomb && !strcmp(g_got[1].key, "gone") && g_got[1].ts == 103);

    sl_cleaner_checkpoint ck = res.checkpoint;
    sl_cleaner_assessment as;
    sl_cleaner_assess(log, &cc, &ck, NOW + 999, &as);
    CHECK(!as.tombstones_expired && !as.due);
    CHECK_EQ(clean(log, &cc, NOW + 999, &res), SL_OK);
    CHECK_EQ(res.tombstones_dropped, 0);
    CHECK_EQ(res.segments_rewritten, 0);
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));

    sl_cleaner_assess(log, &cc, &ck, NOW + 1000, &as);
    CHECK(as.tombstones_expired && as.due);
    CHECK_EQ(clean(log, &cc, NOW + 1000, &res), SL_OK);
    CHECK_EQ(res.tombstones_dropped, 1);
    CHECK_EQ(res.checkpoint.horizon_ms, -1);
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    nw = expect(&m, act, true, g_want);
    CHECK(same(g_got, ng, g_want, nw));
    for (int i = 0; i < ng; i++) CHECK(strcmp(g_got[i].key, "gone") != 0);
    /* The offsets of the removed records still resolve (to the next batch). */
    sl_arena *a = sl_arena_new(4096);
    uint8_t *p;
    size_t len;
    CHECK_EQ(sl_log_read(log, 0, 100, a, &p, &len), SL_OK);
    CHECK(len >= SL_BATCH_HEADER_SIZE);
    sl_arena_free(a);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_min_compaction_lag) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 5, 8, NOW - 100000), 0); /* old */
    int64_t young = sl_log_end_offset(log);
    CHECK_EQ(fill(log, &m, 5, 8, NOW - 10), 0); /* within the lag */
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.min_compaction_lag_ms = 1000;
    sl_cleaner_checkpoint ck = {0, -1};
    sl_cleaner_assessment as;
    sl_cleaner_assess(log, &cc, &ck, NOW, &as);
    CHECK(as.cleanable_end <= young && as.cleanable_end > 0);
    int64_t end = as.cleanable_end;
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK_EQ(res.checkpoint.offset, end);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    int nw = expect(&m, end, false, g_want);
    CHECK(same(g_got, ng, g_want, nw));
    /* Every record at or after the cleanable end is still there. */
    int after = 0;
    for (int i = 0; i < ng; i++) after += g_got[i].off >= end;
    CHECK_EQ(after, (int)(sl_log_end_offset(log) - end));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_offset_map_budget_cleans_a_prefix) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 60, 3, 1000), 0);
    int64_t act = active_base(log);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.offset_map_bytes = 1024; /* 42 slots, 31 keys: fewer than the 60 keys */
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(res.map_full);
    CHECK(res.checkpoint.offset > 0 && res.checkpoint.offset < act);
    int64_t first = res.checkpoint.offset;
    int runs = 1;
    while (res.map_full && runs < 20) {
        CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
        CHECK(res.checkpoint.offset > first);
        first = res.checkpoint.offset;
        runs++;
    }
    CHECK(!res.map_full && runs >= 2);
    CHECK_EQ(res.checkpoint.offset, act);
    CHECK(compacted(log, &m, act));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_compressed_batches) {
    static const int codecs[] = {SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY, SL_COMPRESSION_LZ4,
                                 SL_COMPRESSION_ZSTD};
    for (size_t c = 0; c < sizeof codecs / sizeof *codecs; c++) {
        char dir[64];
        sl_log_config lc;
        sl_log *log = new_log(dir, &lc, NULL);
        CHECK(log);
        static model m;
        m.n = 0;
        for (int b = 0; b < 30; b++) {
            char kb[6][16], vb[6][32];
            const char *ks[6], *vs[6];
            for (int i = 0; i < 6; i++) {
                snprintf(kb[i], sizeof kb[i], "k%d", (b * 6 + i) % 9);
                snprintf(vb[i], sizeof vb[i], "v-%d-%d", b, i);
                ks[i] = kb[i];
                vs[i] = vb[i];
            }
            CHECK_EQ(append(log, &m, 6, ks, vs, codecs[c], 1000 + b * 6), 0);
        }
        int64_t act = active_base(log);
        sl_cleaner_config cc;
        clean_cfg(&cc);
        sl_cleaner_result res;
        CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
        CHECK(res.records_dropped > 0);
        int mask;
        int ng = read_all(log, g_got, MAXR, &mask, NULL);
        int nw = expect(&m, act, false, g_want);
        CHECK(same(g_got, ng, g_want, nw));
        CHECK_EQ(mask, 1 << codecs[c]); /* recompressed with the batch's own codec */
        sl_log_close(log);
        cleaner_rm_rf(dir);
    }
}

SL_TEST(cleaner_reader_before_commit_reads_old_data) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 4, 12, 1000), 0);
    int64_t act = active_base(log);
    sl_arena *a = sl_arena_new(1 << 16);
    uint8_t *before;
    size_t blen;
    CHECK_EQ(sl_log_read(log, 0, 1 << 16, a, &before, &blen), SL_OK);
    uint8_t *copy = malloc(blen);
    memcpy(copy, before, blen);

    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
    CHECK(j);
    sl_cleaner_job *j2;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j2), SL_OK);
    CHECK(!j2); /* the segments are reserved: no second clean of them */
    CHECK_EQ(sl_cleaner_run(j), SL_OK);
    /* Between run and commit the log serves the old segments, whole. */
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, m.r, m.n));
    sl_cleaner_result res;
    CHECK_EQ(sl_cleaner_commit(j, SL_OK, &res), SL_OK);
    /* What a Fetch read before the commit is its own copy, intact. */
    CHECK(!memcmp(before, copy, blen));
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    int nw = expect(&m, act, false, g_want);
    CHECK(same(g_got, ng, g_want, nw));
    free(copy);
    sl_arena_free(a);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_deleted_segment_stays_deleted) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 4, 12, 1000), 0);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
    CHECK(j);
    CHECK_EQ(sl_cleaner_run(j), SL_OK);
    int64_t b1;
    uint32_t v;
    CHECK(sl_log_segment_info(log, 1, &b1, &v));
    CHECK_EQ(sl_log_delete_records(log, b1), SL_OK); /* drops segment 0 meanwhile */
    sl_cleaner_result res;
    CHECK_EQ(sl_cleaner_commit(j, SL_OK, &res), SL_OK);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/%020d.log", dir, 0);
    CHECK(access(p, F_OK) != 0);
    CHECK_EQ(sl_log_start_offset(log), b1);
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
    CHECK_EQ(sl_log_start_offset(log), b1);
    CHECK(read_all(log, g_got, MAXR, NULL, NULL) > 0);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

static int g_fail_after;
static ssize_t fail_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    if (g_fail_after-- <= 0) {
        errno = ENOSPC;
        return -1;
    }
    return pwritev(fd, iov, n, off);
}

SL_TEST(cleaner_write_failure_leaves_log_unchanged) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 4, 12, 1000), 0);
    int64_t act = active_base(log), size0 = sl_log_size_bytes(log);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    static const int fails[] = {0, 1, 3, 8};
    for (size_t i = 0; i < sizeof fails / sizeof *fails; i++) {
        sl_cleaner_result res;
        g_fail_after = fails[i];
        sl_storage_pwritev = fail_pwritev;
        sl_err e = clean(log, &cc, NOW, &res);
        sl_storage_pwritev = pwritev;
        CHECK_EQ(e, SL_ENOSPC);
        CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
        CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
        CHECK_EQ(sl_log_size_bytes(log), size0);
        int ng = read_all(log, g_got, MAXR, NULL, NULL);
        CHECK(same(g_got, ng, m.r, m.n));
    }
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(compacted(log, &m, act));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* A stored batch that fails its CRC is never rewritten (that would launder it into a file with
 * valid checksums): the clean fails and leaves the log as it was. */
SL_TEST(cleaner_refuses_a_corrupt_segment) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    CHECK_EQ(fill(log, NULL, 4, 12, 1000), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    sl_log_close(log);
    char p[512];
    snprintf(p, sizeof p, "%s/%020d.log", dir, 0);
    FILE *f = fopen(p, "r+b");
    CHECK(f);
    uint8_t c;
    long at = 64 + 52 + SL_BATCH_HEADER_SIZE + 3; /* inside the first batch's record */
    CHECK(fseek(f, at, SEEK_SET) == 0 && fread(&c, 1, 1, f) == 1);
    c ^= 0x20;
    CHECK(fseek(f, at, SEEK_SET) == 0 && fwrite(&c, 1, 1, f) == 1);
    fclose(f);
    CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
    int64_t size0 = sl_log_size_bytes(log);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_ECORRUPT);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
    CHECK_EQ(sl_log_size_bytes(log), size0);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

static void *run_thread(void *j) {
    sl_err *e = malloc(sizeof *e);
    *e = sl_cleaner_run(j);
    return e;
}

/* Run on a worker while the loop thread keeps appending (rolling new segments) and reading:
 * run touches only the reserved segments' files, commit applies it afterwards. */
SL_TEST(cleaner_runs_on_a_worker_while_the_log_is_used) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 8, 10, 1000), 0);
    int64_t act = active_base(log);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
    CHECK(j);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_thread, j) == 0);
    int appended = fill(log, &m, 8, 5, 5000);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    void *rv;
    pthread_join(t, &rv);
    sl_err re = *(sl_err *)rv;
    free(rv);
    CHECK_EQ(appended, 0);
    CHECK(same(g_got, ng, m.r, m.n)); /* read during the run: everything */
    sl_cleaner_result res;
    CHECK_EQ(sl_cleaner_commit(j, re, &res), SL_OK);
    CHECK_EQ(res.checkpoint.offset, act); /* what was closed at prepare */
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    int nw = expect(&m, act, false, g_want);
    /* Below act: compacted against the records below act only; from act on: untouched. */
    CHECK(same(g_got, ng, g_want, nw));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* A re-encoded batch keeps its kept records whole: headers, attributes, timestamps, and the
 * batch header's producer fields and last offset delta. */
SL_TEST(cleaner_rebuilt_batch_keeps_headers_and_producer_fields) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 256);
    sl_rec_header hs[2] = {{{(const uint8_t *)"h1", 2}, {(const uint8_t *)"one", 3}},
                           {{(const uint8_t *)"h2", 2}, SL_BYTES_NULL}};
    sl_rec_in r0 = {.timestamp_delta = 0,
                    .offset_delta = 0,
                    .key = {(const uint8_t *)"k", 1},
                    .value = {(const uint8_t *)"old", 3}};
    sl_rec_in r1 = {.timestamp_delta = 7,
                    .offset_delta = 1,
                    .key = {(const uint8_t *)"other", 5},
                    .value = {(const uint8_t *)"kept", 4},
                    .headers = hs,
                    .nheaders = 2};
    sl_rec_in r2 = {.timestamp_delta = 9,
                    .offset_delta = 2,
                    .key = {(const uint8_t *)"k", 1},
                    .value = {(const uint8_t *)"new", 3}};
    CHECK_EQ(sl_rec_builder_add(&b, &r0), SL_OK);
    CHECK_EQ(sl_rec_builder_add(&b, &r1), SL_OK);
    CHECK_EQ(sl_rec_builder_add(&b, &r2), SL_OK);
    uint8_t *batch;
    size_t len;
    CHECK_EQ(sl_rec_builder_seal(&b, SL_COMPRESSION_NONE, 500, 509, &batch, &len), SL_OK);
    /* An idempotent producer's batch. */
    sl_batch_info like;
    CHECK(sl_batch_parse(batch, len, &like));
    like.producer_id = 42;
    like.producer_epoch = 3;
    like.base_sequence = 100;
    sl_batch_reseal_like(batch, len, &like);
    int64_t base;
    CHECK_EQ(sl_log_append(log, batch, len, 3, 509, &base), SL_OK);
    CHECK_EQ(fill(log, NULL, 20, 1, 1000), 0); /* closes the segment */
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.offset_map_bytes = 4096;
    /* A later "k": both "k" records of the batch go, "other" stays (the batch is rebuilt). */
    const char *k = "k", *v = "newest";
    CHECK_EQ(append(log, NULL, 1, &k, &v, 0, 2000), 0);
    CHECK_EQ(fill(log, NULL, 20, 1, 3000), 0);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    uint8_t *p;
    size_t n;
    CHECK_EQ(sl_log_read(log, 0, 1 << 16, a, &p, &n), SL_OK);
    sl_batch_info bi;
    CHECK(sl_batch_parse(p, n, &bi) && sl_batch_crc_ok(p, bi.size));
    CHECK_EQ(bi.base_offset, 0);
    CHECK_EQ(bi.last_offset_delta, 2); /* unchanged: sequences stay base_sequence + delta */
    CHECK_EQ(bi.record_count, 1);
    CHECK_EQ(bi.producer_id, 42);
    CHECK_EQ(bi.producer_epoch, 3);
    CHECK_EQ(bi.base_sequence, 100);
    sl_rec_iter it;
    sl_record sr;
    CHECK_EQ(sl_rec_iter_init(&it, p, bi.size, a, 1 << 20), SL_OK);
    CHECK(sl_rec_iter_next(&it, &sr));
    CHECK_EQ(sr.offset, 1);
    CHECK_EQ(sr.timestamp, 507);
    CHECK(sr.value.len == 4 && !memcmp(sr.value.p, "kept", 4));
    CHECK_EQ(sr.nheaders, 2);
    sl_bytes hk, hv;
    CHECK(sl_record_header_next(&sr, &hk, &hv));
    CHECK(hk.len == 2 && !memcmp(hk.p, "h1", 2) && hv.len == 3 && !memcmp(hv.p, "one", 3));
    CHECK(sl_record_header_next(&sr, &hk, &hv));
    CHECK(hk.len == 2 && !memcmp(hk.p, "h2", 2) && hv.len == -1);
    CHECK(!sl_rec_iter_next(&it, &sr) && sl_rec_iter_err(&it) == SL_OK);
    sl_arena_free(a);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* ---- encrypted segments (the default) ------------------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

static bool spit(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Header version of a segment file and, for version 2, its envelope. */
static bool seg_header(const char *dir, int64_t base, int *version, sl_envelope *env) {
    uint8_t b[64 + SL_ENV_MAX];
    long n = file_bytes(dir, base, b, sizeof b);
    memset(env, 0, sizeof *env);
    if (n < 64) return false;
    *version = sl_get_be16(b + 4);
    if (*version != 2) return true;
    uint32_t hl = sl_get_be32(b + 24);
    return hl > 64 && hl <= (uint32_t)n && sl_envelope_decode(b + 64, hl - 64, env) == SL_FRAME_OK;
}

/* True when `needle` occurs in any file of `dir`. */
static bool bytes_in_dir(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *de;
    size_t nl = strlen(needle);
    while (d && !found && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        size_t n = 0;
        uint8_t *b = slurp(p, &n);
        for (size_t i = 0; b && i + nl <= n && !found; i++) found = !memcmp(b + i, needle, nl);
        free(b);
    }
    if (d) closedir(d);
    return found;
}

/* CRC-32C over every segment data file of `dir` (names and bytes): "the log is unchanged". */
static uint32_t log_files_crc(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    uint32_t c = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);
        if (l > 4 && !strcmp(names[i]->d_name + l - 4, ".log")) {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
            size_t len = 0;
            uint8_t *b = slurp(p, &len);
            c = sl_crc32c(c, (const uint8_t *)names[i]->d_name, l);
            if (b) c = sl_crc32c(c, b, len);
            free(b);
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    return c;
}

/* Every sealed frame found on disk: the key it was sealed under, its nonce, and what it sealed
 * (the ciphertext CRC). */
typedef struct nonce_use {
    uint32_t dek;
    uint8_t nonce[SL_FRAME_ENC_NONCE];
    uint32_t ct_crc;
} nonce_use;

/* Adds the sealed frames of every `.log` and `.log.cleaned` file of `dir` to u[*n]. */
static bool collect_nonces(const char *dir, nonce_use *u, int *n, int cap) {
    DIR *d = opendir(dir);
    struct dirent *de;
    bool ok = d != NULL;
    while (ok && (de = readdir(d))) {
        if (!strstr(de->d_name, ".log")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        size_t len = 0;
        uint8_t *b = slurp(p, &len);
        ok = b && len >= 64;
        for (size_t pos = ok ? sl_get_be32(b + 24) : len; ok && pos < len;) {
            sl_frame f;
            ok = sl_frame_decode(b + pos, len - pos, &f) == SL_FRAME_OK && f.flen <= len - pos;
            if (ok && (f.flags & SL_FRAME_FLAG_ENC)) {
                ok = *n < cap;
                if (ok) {
                    u[*n].dek = f.key_id;
                    memcpy(u[*n].nonce, f.nonce, SL_FRAME_ENC_NONCE);
                    u[*n].ct_crc = f.ct_crc;
                    (*n)++;
                }
            }
            pos += f.flen;
        }
        free(b);
    }
    if (d) closedir(d);
    return ok;
}

/* No (key, nonce) pair sealed two different things. */
static bool nonces_unique(const nonce_use *u, int n) {
    for (int i = 0; i < n; i++)
        for (int k = i + 1; k < n; k++)
            if (u[i].dek == u[k].dek && !memcmp(u[i].nonce, u[k].nonce, SL_FRAME_ENC_NONCE) &&
                u[i].ct_crc != u[k].ct_crc) {
                fprintf(stderr, "  dek %08x nonce reused\n", u[i].dek);
                return false;
            }
    return true;
}

/* The closed segments' bases and DEK ids. */
static int seg_deks(sl_log *log, const char *dir, int64_t *bases, uint32_t *deks, int cap) {
    int n = sl_log_segment_count(log) - 1;
    if (n > cap) return -1;
    for (int i = 0; i < n; i++) {
        uint32_t v;
        int ver;
        sl_envelope env;
        if (!sl_log_segment_info(log, i, &bases[i], &v) || !seg_header(dir, bases[i], &ver, &env))
            return -1;
        deks[i] = ver == 2 ? env.dek_id : 0;
    }
    return n;
}

SL_TEST(cleaner_encrypted_latest_value_per_key) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x31, 0, 0);
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, &k);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 10, 20, 1000), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int64_t act = active_base(log), bases[64];
    uint32_t old[64];
    int nold = seg_deks(log, dir, bases, old, 64);
    CHECK(nold > 10);
    for (int i = 0; i < nold; i++) CHECK(old[i] != 0); /* all sealed */
    CHECK(!bytes_in_dir(dir, "-round-"));
    t.tk_version = 2; /* rotated: a rewrite is sealed under the current version */

    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(res.segments_rewritten > 0 && res.records_dropped > 0);
    int nw = expect(&m, act, false, g_want);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    int64_t nb[64];
    uint32_t now_deks[64];
    CHECK_EQ(seg_deks(log, dir, nb, now_deks, 64), nold);
    int rewritten = 0;
    for (int i = 0; i < nold; i++) {
        CHECK_EQ(nb[i], bases[i]);
        int ver;
        sl_envelope env;
        CHECK(seg_header(dir, nb[i], &ver, &env));
        CHECK_EQ(ver, 2);
        int64_t b;
        uint32_t v;
        CHECK(sl_log_segment_info(log, i, &b, &v));
        if (now_deks[i] == old[i]) { /* unchanged: its old file and DEK stay */
            CHECK_EQ(v, 1);
            continue;
        }
        for (int q = 0; q < nold; q++) CHECK(now_deks[i] != old[q]);
        CHECK_EQ(env.tk_version, 2);
        CHECK_EQ(v, 2);
        rewritten++;
    }
    CHECK_EQ(rewritten, res.segments_rewritten);
    CHECK(!bytes_in_dir(dir, "-round-"));

    /* Reopened: the rewritten segments open under their own envelopes. */
    sl_log_close(log);
    CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK_EQ(res.segments_rewritten, 0);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* Two cleans of one log, the first also crashed once with its `.cleaned` files on disk: across
 * every file ever written, no (DEK, nonce) pair seals two different frames. */
SL_TEST(cleaner_encrypted_fresh_nonces) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x32, 1, 0);
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, &k);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 6, 12, 1000), 0);
    static nonce_use u[8192];
    int n = 0;
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_result res;
    /* Crashed before the manifest: the `.cleaned` files were written (and may be in a backup). */
    sl_cleaner__crash_after = 1;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_ESTATE);
    sl_cleaner__crash_after = 0;
    CHECK(cleaner_count_files(dir, ".cleaned") > 0);
    CHECK(collect_nonces(dir, u, &n, 8192));
    sl_log_close(log);
    CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    int dek_new0 = t.n_new;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK); /* the rerun: new DEKs, same plaintext */
    CHECK(res.segments_rewritten > 0);
    CHECK(t.n_new > dek_new0);
    CHECK(collect_nonces(dir, u, &n, 8192));
    CHECK_EQ(fill(log, &m, 6, 6, 5000), 0);
    CHECK_EQ(clean(log, &cc, NOW + 1, &res), SL_OK);
    CHECK(res.segments_rewritten > 0);
    CHECK(collect_nonces(dir, u, &n, 8192));
    CHECK(n > 100);
    CHECK(nonces_unique(u, n));
    CHECK(compacted(log, &m, active_base(log)));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

enum { ET_RECORD, ET_TAG, ET_CLEAR_BATCH_HDR, ET_ENV_WRAPPED, ET_ENV_TOPIC, ET_CLEAR_FRAME, ET_N };

/* Frame 1 (offset 1) of segment 0 edited as an attacker would (CRCs fixed up). */
static bool tamper_seg0(const char *dir, int kind) {
    char p[512];
    snprintf(p, sizeof p, "%s/%020d.log", dir, 0);
    size_t n = 0;
    uint8_t *f = slurp(p, &n);
    if (!f) return false;
    size_t pos = frame_pos(f, n, 1), payload = pos + 64;
    uint32_t plen = sl_get_be32(f + pos + 16), flen = sl_get_be32(f + pos + 8);
    bool ok = true;
    switch (kind) {
    case ET_RECORD:
        f[payload + plen - 5] ^= 0x20;
        fix_frame_crcs(f, pos);
        break;
    case ET_TAG:
        f[payload + plen + 3] ^= 0x80;
        fix_frame_crcs(f, pos);
        break;
    case ET_CLEAR_BATCH_HDR:
        f[payload + SL_BATCH_PRODUCER_ID + 7] ^= 1;
        fix_frame_crcs(f, pos);
        break;
    case ET_ENV_WRAPPED:
        f[64 + 44 + 5] ^= 1;
        fix_envelope_crc(f);
        break;
    case ET_ENV_TOPIC:
        f[64 + 12] ^= 1;
        fix_envelope_crc(f);
        break;
    case ET_CLEAR_FRAME: {
        /* A plaintext frame for offset 1 in place of the sealed one. */
        sl_arena *a = sl_arena_new(4096);
        sl_rec_builder b;
        sl_rec_builder_init(&b, a, 256);
        sl_rec_in in = {.key = {(const uint8_t *)"key-1", 5},
                        .value = {(const uint8_t *)"injected", 8}};
        uint8_t *batch, h[SL_FRAME_HDR_MAX];
        size_t len;
        ok = !sl_rec_builder_add(&b, &in) && !sl_rec_builder_seal(&b, 0, 1001, 1001, &batch, &len);
        if (ok) {
            sl_be64(batch + SL_BATCH_BASE_OFFSET, 1);
            sl_frame fr;
            size_t hl = sl_frame_encode_batch(h, 1, 0, 1, 1001, (uint32_t)len, &fr);
            uint8_t *g = malloc(n + hl + len);
            memcpy(g, f, pos);
            memcpy(g + pos, h, hl);
            memcpy(g + pos + hl, batch, len);
            memcpy(g + pos + hl + len, f + pos + flen, n - pos - flen);
            n = n - flen + hl + len;
            free(f);
            f = g;
            snprintf(p, sizeof p, "%s/%020d.index", dir, 0);
            unlink(p);
            snprintf(p, sizeof p, "%s/%020d.timeindex", dir, 0);
            unlink(p);
            snprintf(p, sizeof p, "%s/%020d.log", dir, 0);
        }
        sl_arena_free(a);
        break;
    }
    }
    ok = ok && spit(p, f, n);
    free(f);
    return ok;
}

static sl_err read_at(sl_log *log, int64_t off) {
    sl_arena *a = sl_arena_new(1 << 16);
    uint8_t *p;
    size_t len;
    sl_err e = sl_log_read(log, off, 1 << 16, a, &p, &len);
    sl_arena_free(a);
    return e;
}

/* Each tamper fails the clean (in prepare for the envelope, in run for a frame), writes nothing,
 * leaves every file as it was, and the tampered read still fails: nothing was laundered. */
SL_TEST(cleaner_encrypted_tamper_detected) {
    static const char *const names[ET_N] = {
        "record byte", "tag", "clear batch header", "wrapped DEK", "envelope topic", "clear frame"};
    for (int kind = 0; kind < ET_N; kind++) {
        tkeys t;
        tkeys_init(&t);
        sl_log_keys k = mkkeys(&t, 0x33, 0, 0);
        char dir[64];
        sl_log_config lc;
        sl_log *log = new_log(dir, &lc, &k);
        CHECK(log);
        CHECK_EQ(fill(log, NULL, 4, 12, 1000), 0);
        CHECK_EQ(sl_log_sync(log), SL_OK);
        sl_log_close(log);
        CHECK(tamper_seg0(dir, kind));
        CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
        CHECK_EQ(read_at(log, 1), SL_ETAMPER);
        uint32_t crc0 = log_files_crc(dir);
        sl_cleaner_config cc;
        clean_cfg(&cc);
        sl_cleaner_result res;
        sl_err e = clean(log, &cc, NOW, &res);
        if (e != SL_ETAMPER) fprintf(stderr, "  tamper '%s': %s\n", names[kind], sl_errname(e));
        CHECK_EQ(e, SL_ETAMPER);
        bool in_run = kind != ET_ENV_WRAPPED && kind != ET_ENV_TOPIC;
        CHECK_EQ(res.bad_base, in_run ? 0 : -1);
        CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
        CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
        CHECK_EQ(log_files_crc(dir), crc0);
        CHECK_EQ(read_at(log, 1), SL_ETAMPER);
        /* Nothing stays reserved: a later clean fails the same way (not SL_OK with nothing). */
        CHECK_EQ(clean(log, &cc, NOW, &res), SL_ETAMPER);
        sl_log_close(log);
        CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
        CHECK_EQ(read_at(log, 1), SL_ETAMPER);
        sl_log_close(log);
        cleaner_rm_rf(dir);
    }
}

/* ---- crash at every step (cleaner_crash.h) ----------------------------------------------- */

/* The crash tests' log: 6 keys updated 6 times, key-0 deleted, 2 more rounds. */
typedef struct crash_log {
    bool enc;
    int64_t merge_bytes; /* the clean's segment_bytes: 0, no merging */
    model *m;
    int64_t act;
    int64_t bases[64]; /* with keys: the closed segments as built, and their DEK ids */
    uint32_t deks[64];
    int nseg;
    int nall; /* segments as built, the active one included */
} crash_log;

static void crash_build(int *sl_failed_, void *ctx, const char *dir, sl_log *log) {
    crash_log *x = ctx;
    x->m->n = 0;
    CHECK_EQ(fill(log, x->m, 6, 6, 1000), 0);
    CHECK_EQ(append1(log, x->m, "key-0", NULL, 2000), 0);
    CHECK_EQ(fill(log, x->m, 6, 2, 3000), 0);
    x->act = active_base(log);
    x->nall = sl_log_segment_count(log);
    if (x->enc) {
        x->nseg = seg_deks(log, dir, x->bases, x->deks, 64);
        CHECK(x->nseg > 2);
    }
}

static sl_err crash_clean(void *ctx, sl_log *log) {
    crash_log *x = ctx;
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.segment_bytes = x->merge_bytes;
    sl_cleaner_result res;
    sl_err e = clean(log, &cc, NOW, &res);
    sl_cleaner_result_free(&res);
    return e;
}

/* Every record the log holds is one that was appended, every key's latest record is there;
 * with keys, each segment is either its old file (its old DEK) or the new one (a DEK never seen
 * before) and every read authenticates. */
static void crash_check(int *sl_failed_, void *ctx, const char *dir, sl_log *log, bool finished) {
    crash_log *x = ctx;
    (void)finished;
    if (x->enc && x->merge_bytes) {
        /* Per group, the old segments (their old DEKs) or the merged one at the group's first
         * base (a DEK never seen before); the records below say no member is missing or left
         * overlapping. */
        int64_t nb[64];
        uint32_t now_deks[64];
        int n = seg_deks(log, dir, nb, now_deks, 64);
        CHECK(n > 0 && n <= x->nseg);
        if (finished) CHECK(n < x->nseg);
        for (int i = 0; i < n; i++) {
            int q = 0;
            while (q < x->nseg && x->bases[q] != nb[i]) q++;
            CHECK(q < x->nseg);
            CHECK(now_deks[i] != 0);
            if (now_deks[i] == x->deks[q]) continue;
            for (q = 0; q < x->nseg; q++) CHECK(now_deks[i] != x->deks[q]);
        }
    } else if (x->enc) {
        int64_t nb[64];
        uint32_t now_deks[64];
        CHECK_EQ(seg_deks(log, dir, nb, now_deks, 64), x->nseg);
        for (int i = 0; i < x->nseg; i++) {
            CHECK_EQ(nb[i], x->bases[i]);
            CHECK(now_deks[i] != 0);
            if (now_deks[i] == x->deks[i]) continue;
            for (int q = 0; q < x->nseg; q++) CHECK(now_deks[i] != x->deks[q]);
        }
    }
    const model *m = x->m;
    int ng = read_all(log, g_got, MAXR, NULL, NULL); /* fails on any frame that fails */
    CHECK(ng > 0);
    int nw = expect(m, x->act, false, g_want);
    int w = 0;
    for (int i = 0; i < ng; i++) {
        bool orig = false;
        for (int q = 0; q < m->n && !orig; q++)
            orig = m->r[q].off == g_got[i].off && !strcmp(m->r[q].val, g_got[i].val);
        CHECK(orig);
        if (w < nw && g_want[w].off == g_got[i].off) w++;
    }
    CHECK_EQ(w, nw);
}

static void crash_check_cleaned(int *sl_failed_, void *ctx, sl_log *log) {
    crash_log *x = ctx;
    CHECK(compacted(log, x->m, x->act));
    if (x->merge_bytes) CHECK(sl_log_segment_count(log) <= x->nall / 2);
}

static void crash_every_step(int *sl_failed_, const sl_log_keys *k, int64_t merge_bytes) {
    static model m;
    crash_log x = {.enc = k != NULL, .m = &m, .merge_bytes = merge_bytes};
    cleaner_crash c = {.tag = "sl_cleaner",
                       .keys = k,
                       .ctx = &x,
                       .build = crash_build,
                       .clean = crash_clean,
                       .check = crash_check,
                       .check_cleaned = crash_check_cleaned};
    log_cfg(&c.lc);
    cleaner_crash_every_step(sl_failed_, &c);
}

/* Stops the protocol after each durable step in turn (a kill -9 there), reopens the log and
 * checks it: every record it holds is one that was appended, every key's latest record is
 * there, nothing is left over; then a clean to the end gives the fully compacted log. */
SL_TEST(cleaner_crash_at_every_step) { crash_every_step(sl_failed_, NULL, 0); }

/* The same with merging (segments of 1 KiB merged up to 4 KiB): a crash anywhere, between
 * the survivor's renames or the members' deletions too, leaves per group the old segments or
 * the merged one, never both and never a part. */
SL_TEST(cleaner_merging_crash_at_every_step) { crash_every_step(sl_failed_, NULL, 4096); }

/* The same with keys: after each crash the reopened log has, per segment, either the old file
 * (its old DEK) or the new one (a DEK never seen before), and every read authenticates. */
SL_TEST(cleaner_encrypted_crash_at_every_step) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x34, 0, 0);
    crash_every_step(sl_failed_, &k, 0);
}

/* Merging with keys: a merged segment is sealed under one fresh DEK. */
SL_TEST(cleaner_encrypted_merging_crash_at_every_step) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x35, 0, 0);
    crash_every_step(sl_failed_, &k, 4096);
}

/* A key that cannot be had now fails prepare and reserves nothing; a shredded one too. */
SL_TEST(cleaner_encrypted_key_unavailable) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x35, 0, 0);
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, &k);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 4, 12, 1000), 0);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j = (sl_cleaner_job *)&j;
    t.fail_open = SL_EKEY_UNAVAILABLE;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_EKEY_UNAVAILABLE);
    CHECK(!j);
    t.fail_open = SL_OK;
    t.fail_new = SL_EKEY_DESTROYED;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_EKEY_DESTROYED);
    CHECK(!j);
    t.fail_new = SL_OK;
    /* Nothing was left reserved: re-encryption and the cleaner both still find the segments. */
    sl_log_reenc *rj = NULL;
    t.tk_version = 2;
    CHECK_EQ(sl_log_reenc_prepare(log, 2, &rj), SL_OK);
    CHECK(rj);
    CHECK_EQ(sl_log_reenc_finish(rj, SL_ESTATE), SL_ESTATE); /* abandoned, nothing applied */
    t.tk_version = 1;
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(res.segments_rewritten > 0);
    CHECK(compacted(log, &m, active_base(log)));
    /* A log without keys skips its encrypted segments (nothing cleanable), no error. */
    sl_log_close(log);
    CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
    CHECK(!j);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* A plaintext segment from before encryption was turned on comes out of a rewrite encrypted; a
 * clear frame at or above the plaintext watermark fails the run. */
SL_TEST(cleaner_plaintext_migration_segment_comes_out_encrypted) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 4, 12, 1000), 0);
    int64_t end = sl_log_end_offset(log);
    sl_log_close(log);
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x36, 0, end);
    CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
    CHECK(bytes_in_dir(dir, "-round-"));
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK(res.segments_rewritten > 0);
    int64_t bases[64];
    uint32_t deks[64];
    int n = seg_deks(log, dir, bases, deks, 64), sealed = 0;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) sealed += deks[i] != 0;
    CHECK_EQ(sealed, res.segments_rewritten);
    CHECK(compacted(log, &m, active_base(log)));
    sl_log_close(log);
    cleaner_rm_rf(dir);

    /* The same plaintext log, but the watermark says offsets >= 5 were written encrypted. */
    log = new_log(dir, &lc, NULL);
    CHECK(log);
    CHECK_EQ(fill(log, NULL, 4, 12, 1000), 0);
    sl_log_close(log);
    k = mkkeys(&t, 0x36, 0, 5);
    CHECK_EQ(cleaner_open_log(dir, &lc, &k, &log), SL_OK);
    uint32_t crc0 = log_files_crc(dir);
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_ETAMPER);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    CHECK_EQ(log_files_crc(dir), crc0);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* A shred during a run: cancel stops it, nothing is written, the log is unchanged. */
SL_TEST(cleaner_encrypted_cancel) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x37, 0, 0);
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, &k);
    CHECK(log);
    CHECK_EQ(fill(log, NULL, 4, 12, 1000), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    uint32_t crc0 = log_files_crc(dir);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j;
    CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
    CHECK(j);
    sl_cleaner_cancel(j);
    sl_err e = sl_cleaner_run(j);
    CHECK_EQ(e, SL_EKEY_DESTROYED);
    CHECK_EQ(sl_cleaner_commit(j, e, NULL), SL_EKEY_DESTROYED);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    CHECK_EQ(log_files_crc(dir), crc0);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* R9: with max_dirty_segments and the checkpoint, a backlog is cleaned in windows: each clean
 * takes at most that many dirty segments, starting where the last one stopped (a cap counted
 * from the log's start would take the same clean segments forever), so every clean moves the
 * checkpoint on and the windows together give the fully compacted log. */
SL_TEST(cleaner_capped_clean_makes_progress) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 10, 60, 1000), 0);
    int nseg = sl_log_segment_count(log), cap = 8;
    CHECK(nseg > 4 * cap);
    int64_t act = active_base(log);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.max_dirty_segments = cap;
    sl_cleaner_checkpoint ck = {0, -1};
    int cleans = 0;
    while (ck.offset < act) {
        CHECK(cleans++ < nseg); /* progress: bounded */
        /* The window's end: `cap` segments after the one holding the checkpoint. */
        int d = 0;
        int64_t b = 0, limit = act;
        uint32_t v;
        for (int i = 0; i < sl_log_segment_count(log); i++) {
            CHECK(sl_log_segment_info(log, i, &b, &v));
            if (b <= ck.offset) d = i;
        }
        if (d + cap < sl_log_segment_count(log) - 1)
            CHECK(sl_log_segment_info(log, d + cap, &limit, &v));
        sl_cleaner_job *j = NULL;
        CHECK_EQ(sl_cleaner_prepare_txn(log, &cc, &ck, NULL, NOW, &j), SL_OK);
        CHECK(j);
        sl_cleaner_result res;
        CHECK_EQ(sl_cleaner_commit(j, sl_cleaner_run(j), &res), SL_OK);
        CHECK(res.checkpoint.offset > ck.offset);
        CHECK(res.checkpoint.offset <= limit);
        ck = res.checkpoint;
    }
    CHECK(cleans >= 4);
    CHECK(compacted(log, &m, act));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* ---- merging small segments (Kafka's groupSegmentsBySize) -------------------------------- */

/* The size of a segment's data file; -1 when there is none. */
static long seg_file_size(const char *dir, int64_t base) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%020lld.log", dir, (long long)base);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Every offset from the log start to `end` is in the first batch a read at it returns: kept
 * records where they were, the removed ones in an empty batch, across the former boundaries. */
static bool every_offset_readable(sl_log *log, int64_t end) {
    for (int64_t o = sl_log_start_offset(log); o < end; o++) {
        sl_arena *a = sl_arena_new(1 << 16);
        uint8_t *p;
        size_t len;
        sl_batch_info bi;
        bool ok = !sl_log_read(log, o, 1 << 16, a, &p, &len) && len > 0 &&
                  sl_batch_parse(p, len, &bi) && bi.base_offset <= o &&
                  o <= bi.base_offset + bi.last_offset_delta;
        sl_arena_free(a);
        if (!ok) {
            fprintf(stderr, "  offset %lld not in the batch read at it\n", (long long)o);
            return false;
        }
    }
    return true;
}

/* The largest timestamp appended at offsets [from, to). */
static int64_t model_max_ts(const model *m, int64_t from, int64_t to) {
    int64_t ts = -1;
    for (int i = 0; i < m->n; i++)
        if (m->r[i].off >= from && m->r[i].off < to && m->r[i].ts > ts) ts = m->r[i].ts;
    return ts;
}

static void merge_small_segments(int *sl_failed_, const sl_log_keys *k) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, k);
    CHECK(log);
    static model m;
    m.n = 0;
    CHECK_EQ(fill(log, &m, 10, 20, 1000), 0);
    CHECK_EQ(append1(log, &m, "key-3", NULL, 5000), 0); /* a tombstone, kept */
    CHECK_EQ(fill(log, &m, 10, 1, 6000), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int n0 = sl_log_segment_count(log);
    CHECK(n0 > 10);
    int64_t act = active_base(log), end = sl_log_end_offset(log), bases[64];
    uint32_t old_deks[64];
    int nold = k ? seg_deks(log, dir, bases, old_deks, 64) : 0;
    static uint8_t abuf[4096], bbuf[4096];
    long alen = file_bytes(dir, act, abuf, sizeof abuf);
    CHECK(alen > 64);

    /* The first clean groups by the old sizes (about a segment each): little or no merging. The
     * second finds the cleaned segments small and merges them up to segment.bytes. */
    sl_cleaner_config cc;
    clean_cfg(&cc);
    cc.segment_bytes = lc.segment_bytes;
    sl_cleaner_result res;
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    int n1 = sl_log_segment_count(log);
    CHECK(n1 <= n0);
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    int n2 = sl_log_segment_count(log);
    CHECK(res.segments_rewritten >= 2);
    CHECK(n2 <= n1 / 2);
    /* Each clean merges what the last one left small, as Kafka's does, until the segments are
     * full: 11 records and a few empty batches, two or three segments of them. */
    for (int i = 0; i < 8 && res.segments_rewritten > 0; i++) {
        CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
        CHECK(sl_log_segment_count(log) <= n2);
        n2 = sl_log_segment_count(log);
    }
    CHECK_EQ(res.segments_rewritten, 0);
    CHECK(n2 <= 4);
    int64_t total = 0;
    for (int i = 0; i < n2 - 1; i++) {
        int64_t b;
        uint32_t v;
        CHECK(sl_log_segment_info(log, i, &b, &v));
        long sz = seg_file_size(dir, b);
        CHECK(sz > 0 && sz <= lc.segment_bytes);
        total += sz;
    }
    CHECK(total < 3 * lc.segment_bytes);
    CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
    CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
    CHECK_EQ(cleaner_count_files(dir, ".tmp"), 0);
    char ckp[512];
    struct stat ckst;
    snprintf(ckp, sizeof ckp, "%s/cleaner-checkpoint", dir);
    CHECK(stat(ckp, &ckst) == 0 && ckst.st_size == 28); /* the bare record, no group list */
    CHECK_EQ(cleaner_count_files(dir, ".log"), n2);
    CHECK_EQ(cleaner_count_files(dir, ".index"), n2);
    CHECK_EQ(cleaner_count_files(dir, ".timeindex"), n2);
    /* The active segment is untouched, byte for byte; no offset moved. */
    CHECK_EQ(active_base(log), act);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(file_bytes(dir, act, bbuf, sizeof bbuf), alen);
    CHECK(!memcmp(abuf, bbuf, (size_t)alen));
    int nw = expect(&m, act, false, g_want);
    int ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    CHECK(every_offset_readable(log, end));
    if (k) {
        int64_t nb[64];
        uint32_t now_deks[64];
        int n = seg_deks(log, dir, nb, now_deks, 64);
        CHECK_EQ(n, n2 - 1);
        for (int i = 0; i < n; i++) {
            int ver;
            sl_envelope env;
            CHECK(seg_header(dir, nb[i], &ver, &env));
            CHECK_EQ(ver, 2);
            CHECK_EQ(env.seg_base, nb[i]);
            CHECK(i > 0 || now_deks[i] != old_deks[0]); /* the first is a merged one */
            /* A new DEK, or the old file of a segment no clean changed. */
            for (int q = 0; q < nold; q++) CHECK(now_deks[i] != old_deks[q] || bases[q] == nb[i]);
            for (int q = 0; q < i; q++) CHECK(now_deks[i] != now_deks[q]);
        }
        CHECK(!bytes_in_dir(dir, "-round-"));
    }

    /* Reopened, its offset indexes removed: open rebuilds the ones the cleaner wrote, byte for
     * byte. */
    static uint8_t idx[4][1024];
    long ilen[4];
    CHECK(n2 - 1 <= 4);
    for (int i = 0; i < n2 - 1; i++) {
        char p[512];
        ilen[i] = segment_index(log, dir, i, idx[i], sizeof idx[i], p);
        CHECK(ilen[i] >= 0);
        CHECK(unlink(p) == 0);
    }
    sl_log_close(log);
    CHECK_EQ(cleaner_open_log(dir, &lc, k, &log), SL_OK);
    CHECK_EQ(sl_log_segment_count(log), n2);
    for (int i = 0; i < n2 - 1; i++) {
        uint8_t buf[1024];
        long n = segment_index(log, dir, i, buf, sizeof buf, NULL);
        CHECK_EQ(n, ilen[i]);
        CHECK(!memcmp(buf, idx[i], (size_t)n));
    }
    ng = read_all(log, g_got, MAXR, NULL, NULL);
    CHECK(same(g_got, ng, g_want, nw));
    CHECK(every_offset_readable(log, end));
    CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
    CHECK_EQ(res.segments_rewritten, 0); /* nothing left to merge or drop */

    /* Time retention goes by the group's largest timestamp: the merged first segment stays
     * until its newest record (or removed batch) expires, then goes whole. */
    int64_t b0, b1;
    uint32_t v;
    CHECK(sl_log_segment_info(log, 0, &b0, &v) && sl_log_segment_info(log, 1, &b1, &v));
    int64_t max_ts = model_max_ts(&m, b0, b1);
    CHECK(max_ts > model_max_ts(&m, b0, b0 + 1));
    sl_log_close(log);
    lc.retention_ms = 1000;
    CHECK_EQ(cleaner_open_log(dir, &lc, k, &log), SL_OK);
    int deleted;
    CHECK_EQ(sl_log_enforce_retention(log, max_ts + 1000, &deleted), SL_OK);
    CHECK_EQ(deleted, 0);
    CHECK_EQ(sl_log_enforce_retention(log, max_ts + 1001, &deleted), SL_OK);
    CHECK(deleted >= 1);
    CHECK_EQ(sl_log_start_offset(log), b1);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* Small segments merge: fewer segments, none beyond segment.bytes, every kept record at its
 * offset, every removed one inside an empty batch, the active segment untouched, indexes as
 * open rebuilds them, time retention by the group's largest timestamp. */
SL_TEST(cleaner_merges_small_segments) { merge_small_segments(sl_failed_, NULL); }

/* The same encrypted: each merged segment is sealed under one fresh DEK named for its base. */
SL_TEST(cleaner_encrypted_merges_small_segments) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x3a, 0, 0);
    merge_small_segments(sl_failed_, &k);
}

/* Retention (here DeleteRecords) drops the first member of a merged group between run and
 * commit, and the commit is crashed after each of its steps in turn: the group is not applied
 * (its other members stay as they were, nothing deleted comes back), the other groups are, and
 * the reopened log has no leftover and no overlap. */
SL_TEST(cleaner_merge_first_member_deleted_meanwhile) {
    bool finished = false;
    for (int stop = 1; stop < 40 && !finished; stop++) {
        char dir[64];
        sl_log_config lc;
        sl_log *log = new_log(dir, &lc, NULL);
        CHECK(log);
        static model m;
        m.n = 0;
        CHECK_EQ(fill(log, &m, 10, 10, 1000), 0);
        int64_t act = active_base(log), b1;
        uint32_t v;
        CHECK(sl_log_segment_count(log) > 6);
        CHECK(sl_log_segment_info(log, 1, &b1, &v));
        sl_cleaner_config cc;
        clean_cfg(&cc);
        cc.segment_bytes = 4096;
        sl_cleaner_job *j;
        CHECK_EQ(sl_cleaner_prepare(log, &cc, NOW, &j), SL_OK);
        CHECK(j);
        CHECK_EQ(sl_cleaner_run(j), SL_OK);
        CHECK_EQ(sl_log_delete_records(log, b1), SL_OK); /* drops segment 0 meanwhile */
        sl_cleaner_result res;
        sl_cleaner__crash_after = stop;
        sl_err e = sl_cleaner_commit(j, SL_OK, &res);
        sl_cleaner__crash_after = 0;
        if (e == SL_OK)
            finished = true;
        else
            CHECK_EQ(e, SL_ESTATE);
        char p[512];
        snprintf(p, sizeof p, "%s/%020d.log", dir, 0);
        CHECK(access(p, F_OK) != 0);
        sl_log_close(log);
        CHECK_EQ(sl_log_open(dir, &lc, &log), SL_OK);
        CHECK_EQ(cleaner_count_files(dir, ".cleaned"), 0);
        CHECK_EQ(cleaner_count_files(dir, "cleaner-swap"), 0);
        CHECK(access(p, F_OK) != 0);
        CHECK_EQ(sl_log_start_offset(log), b1);
        CHECK(every_offset_readable(log, sl_log_end_offset(log)));
        /* Every record read is one appended at or after b1; every key's latest is there. */
        int ng = read_all(log, g_got, MAXR, NULL, NULL);
        int nw = expect(&m, act, false, g_want), w = 0;
        for (int i = 0; i < ng; i++) {
            bool orig = false;
            for (int q = 0; q < m.n && !orig; q++)
                orig = m.r[q].off == g_got[i].off && !strcmp(m.r[q].val, g_got[i].val);
            CHECK(orig && g_got[i].off >= b1);
            if (w < nw && g_want[w].off == g_got[i].off) w++;
        }
        CHECK_EQ(w, nw);
        /* A clean after it merges what is left. */
        int n = sl_log_segment_count(log);
        CHECK_EQ(clean(log, &cc, NOW, &res), SL_OK);
        sl_cleaner_result_free(&res);
        CHECK(sl_log_segment_count(log) < n);
        CHECK(compacted(log, &m, act));
        sl_log_close(log);
        cleaner_rm_rf(dir);
        if (*sl_failed_) {
            fprintf(stderr, "  (in the round that crashed the commit after step %d)\n", stop);
            return;
        }
    }
    CHECK(finished);
}
