/* Log cleaner and transactions (docs/compaction.md, "Transactions"): the cleanable range stops
 * at the last stable offset; aborted data never becomes a key's latest value and is removed;
 * markers get a delete horizon once their transaction has no data left and go after it; every
 * crash point of such a clean leaves the old log or the new one. The broker's side (the aborted
 * index follows the removed markers) is in test_txnpart.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "cleaner_crash.h"
#include "log_keys_fake.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_cleaner.h"
#include "storage/sl_log.h"

#define NOW       1000000000LL
#define RETENTION 1000
#define A_TXN     0x10
#define A_CONTROL 0x20
#define A_HORIZON 0x40

static void log_cfg(sl_log_config *c) {
    sl_log_config_default(c);
    c->segment_bytes = 400; /* a few batches per segment */
    c->segment_ms = -1;
    c->index_interval_bytes = 100;
    c->retention_ms = -1;
}

/* A log in a fresh directory (`dir`, 64 bytes) with log_cfg's small segments (`lc`, for reopening
 * it), sealed under `k` when given; NULL when either fails. */
static sl_log *new_log(char *dir, sl_log_config *lc, const sl_log_keys *k) {
    log_cfg(lc);
    return cleaner_new_log(dir, "sl_ctxn", lc, k);
}

/* The cleans' segment_bytes (merging); 0 but in the merging tests. */
static int64_t g_merge_bytes;

static void clean_cfg(sl_cleaner_config *c) {
    sl_cleaner_config_default(c);
    c->segment_bytes = g_merge_bytes;
    c->io_buffer_bytes = 4096;
    c->offset_map_bytes = 1 << 20;
    c->delete_retention_ms = RETENTION;
}

/* One batch of one record: producer pid (-1: none), transactional when txn. Base offset or -1. */
static int64_t put(sl_log *log, int64_t pid, bool txn, const char *key, const char *val) {
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 128);
    sl_rec_in in = {.key = {(const uint8_t *)key, (int32_t)strlen(key)},
                    .value = val ? (sl_bytes){(const uint8_t *)val, (int32_t)strlen(val)}
                                 : SL_BYTES_NULL};
    uint8_t *batch;
    size_t len;
    int64_t base = -1;
    sl_batch_info bi;
    if (!sl_rec_builder_add(&b, &in) &&
        !sl_rec_builder_seal(&b, txn ? A_TXN : 0, NOW - 5000, NOW - 5000, &batch, &len) &&
        sl_batch_parse(batch, len, &bi)) {
        bi.producer_id = pid;
        bi.producer_epoch = pid >= 0 ? 0 : -1;
        bi.base_sequence = pid >= 0 ? 0 : -1;
        sl_batch_reseal_like(batch, len, &bi);
        if (sl_log_append(log, batch, len, 1, bi.max_timestamp, &base)) base = -1;
    }
    sl_arena_free(a);
    return base;
}

/* A COMMIT or ABORT marker of pid, as sl_txnpart writes it. */
static int64_t marker(sl_log *log, int64_t pid, bool commit) {
    sl_arena *a = sl_arena_new(4096);
    uint8_t key[4], val[6];
    sl_be16(key, 0);
    sl_be16(key + 2, commit ? 1 : 0);
    sl_be16(val, 0);
    sl_be32(val + 2, 1);
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 64);
    uint8_t *batch;
    size_t len;
    int64_t base = -1;
    sl_batch_info bi;
    if (!sl_rec_builder_add(&b, &(sl_rec_in){.key = {key, 4}, .value = {val, 6}}) &&
        !sl_rec_builder_seal(&b, A_TXN | A_CONTROL, NOW - 5000, NOW - 5000, &batch, &len) &&
        sl_batch_parse(batch, len, &bi)) {
        bi.producer_id = pid;
        bi.producer_epoch = 0;
        bi.base_sequence = -1;
        sl_batch_reseal_like(batch, len, &bi);
        if (sl_log_append(log, batch, len, 1, bi.max_timestamp, &base)) base = -1;
    }
    sl_arena_free(a);
    return base;
}

/* Plain filler records of distinct keys, so that what precedes them is in closed segments. */
static bool filler(sl_log *log, int n, const char *tag) {
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "fill-%s-%d", tag, i);
        if (put(log, -1, false, k, "f") < 0) return false;
    }
    return true;
}

/* What the log holds now, read through sl_log_read (what a fetch of either isolation gets). */
typedef struct seen {
    char data[64][48]; /* "key=value" of each data record, in offset order */
    int ndata;
    int64_t ctl_off[16]; /* control batches: offset, horizon bit */
    bool ctl_horizon[16];
    int nctl;
} seen;

static bool scan(sl_log *log, seen *s) {
    memset(s, 0, sizeof *s);
    int64_t off = sl_log_start_offset(log), end = sl_log_end_offset(log);
    while (off < end) {
        sl_arena *a = sl_arena_new(1 << 16);
        uint8_t *p;
        size_t len;
        if (sl_log_read(log, off, 1 << 16, a, &p, &len) || len == 0) {
            sl_arena_free(a);
            return false;
        }
        for (size_t at = 0; at < len;) {
            sl_batch_info bi;
            if (!sl_batch_parse(p + at, len - at, &bi) || !sl_batch_crc_ok(p + at, bi.size)) {
                sl_arena_free(a);
                return false;
            }
            int64_t next = bi.base_offset + bi.last_offset_delta + 1;
            if (next <= off) {
                at += bi.size;
                continue;
            }
            if (bi.attributes & A_CONTROL) {
                if (s->nctl < 16) {
                    s->ctl_off[s->nctl] = bi.base_offset;
                    s->ctl_horizon[s->nctl++] = bi.attributes & A_HORIZON;
                }
            } else {
                sl_rec_iter it;
                sl_record r;
                if (sl_rec_iter_init(&it, p + at, bi.size, a, 1 << 20)) {
                    sl_arena_free(a);
                    return false;
                }
                while (sl_rec_iter_next(&it, &r))
                    if (s->ndata < 64)
                        snprintf(s->data[s->ndata++], sizeof s->data[0], "%.*s=%.*s",
                                 (int)r.key.len, (const char *)r.key.p,
                                 r.value.len < 0 ? 4 : (int)r.value.len,
                                 r.value.len < 0 ? "NULL" : (const char *)r.value.p);
            }
            off = next;
            at += bi.size;
        }
        sl_arena_free(a);
    }
    return true;
}

static bool has(const seen *s, const char *kv) {
    for (int i = 0; i < s->ndata; i++)
        if (!strcmp(s->data[i], kv)) return true;
    return false;
}

static int key_count(const seen *s, const char *key) {
    int n = 0;
    size_t kl = strlen(key);
    for (int i = 0; i < s->ndata; i++) n += !strncmp(s->data[i], key, kl) && s->data[i][kl] == '=';
    return n;
}

static int horizon_of(const seen *s, int64_t off) { /* -1 gone, 0 unstamped, 1 stamped */
    for (int i = 0; i < s->nctl; i++)
        if (s->ctl_off[i] == off) return s->ctl_horizon[i] ? 1 : 0;
    return -1;
}

static sl_err clean_txn(sl_log *log, const sl_cleaner_txn *txn, int64_t now,
                        sl_cleaner_result *res) {
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_job *j = NULL;
    memset(res, 0, sizeof *res);
    sl_err e = sl_cleaner_prepare_txn(log, &cc, NULL, txn, now, &j);
    if (e || !j) return e;
    return sl_cleaner_commit(j, sl_cleaner_run(j), res);
}

/* The scenario of the first tests: P1 commits K=v1, P2 aborts K=v2 (a later offset), then
 * filler closes their segments. ab[0] is P2's aborted entry. */
typedef struct scen {
    int64_t v1, c1, v2, a2;
    sl_cleaner_aborted ab[1];
    sl_cleaner_txn txn;
} scen;

static bool build(sl_log *log, scen *s) {
    s->v1 = put(log, 1, true, "K", "v1");
    s->c1 = marker(log, 1, true);
    s->v2 = put(log, 2, true, "K", "v2");
    s->a2 = marker(log, 2, false);
    s->ab[0] = (sl_cleaner_aborted){2, s->v2, s->a2};
    s->txn = (sl_cleaner_txn){.stable_end = INT64_MAX, .ab = s->ab, .nab = 1};
    return s->v1 >= 0 && s->c1 >= 0 && s->v2 >= 0 && s->a2 >= 0 && filler(log, 12, "a");
}

/* ---- tests ------------------------------------------------------------------------------- */

/* An aborted value at a later offset never takes the committed value's place: after a clean the
 * log (read_uncommitted too: this is what sl_log_read serves) holds K=v1 only; the aborted batch
 * joined a gap; its ABORT marker is kept with a delete horizon, the COMMIT of a transaction whose
 * record stays is kept as it is. Without the aborted list (a cleaner blind to transactions) the
 * same clean keeps v2 and drops v1: the test can fail. Plaintext and encrypted. */
static void aborted_never_replaces_committed(int *sl_failed_, bool enc) {
    tkeys t;
    tkeys_init(&t);
    sl_log_keys k = mkkeys(&t, 0x51, 0, 0);
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, enc ? &k : NULL);
    CHECK(log);
    scen s;
    CHECK(build(log, &s));
    seen before;
    CHECK(scan(log, &before));
    CHECK(has(&before, "K=v1") && has(&before, "K=v2"));

    sl_cleaner_result res;
    CHECK_EQ(clean_txn(log, &s.txn, NOW, &res), SL_OK);
    CHECK_EQ(res.aborted_batches_dropped, 1);
    CHECK_EQ(res.markers_stamped, 1); /* the ABORT; the COMMIT's record stays */
    CHECK_EQ(res.markers_removed, 0);
    CHECK_EQ(res.checkpoint.horizon_ms, NOW + RETENTION); /* wakes the assessor then */
    seen after;
    CHECK(scan(log, &after));
    CHECK(has(&after, "K=v1"));
    CHECK(!has(&after, "K=v2"));
    CHECK_EQ(key_count(&after, "K"), 1);
    CHECK_EQ(horizon_of(&after, s.c1), 0);
    CHECK_EQ(horizon_of(&after, s.a2), 1);
    sl_cleaner_result_free(&res);
    /* Reopened: the same. */
    sl_log_close(log);
    CHECK_EQ(cleaner_open_log(dir, &lc, enc ? &k : NULL, &log), SL_OK);
    CHECK(scan(log, &after));
    CHECK(has(&after, "K=v1") && !has(&after, "K=v2"));
    sl_log_close(log);
    cleaner_rm_rf(dir);

    /* The contrast: blind to the abort, v2 is K's latest. */
    k = mkkeys(&t, 0x52, 0, 0);
    log = new_log(dir, &lc, enc ? &k : NULL);
    CHECK(log);
    CHECK(build(log, &s));
    CHECK_EQ(clean_txn(log, NULL, NOW, &res), SL_OK);
    CHECK(scan(log, &after));
    CHECK(has(&after, "K=v2") && !has(&after, "K=v1"));
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

SL_TEST(cleaner_txn_aborted_never_replaces_committed) {
    aborted_never_replaces_committed(sl_failed_, false);
}
SL_TEST(cleaner_txn_aborted_never_replaces_committed_encrypted) {
    aborted_never_replaces_committed(sl_failed_, true);
}

/* A stamped marker stays until its horizon, then goes; an ABORT's offset is reported (the
 * broker drops its index entry). The COMMIT of a transaction whose record stays is kept across
 * any number of cleans; once a later plain K=v3 supersedes the record, the COMMIT is stamped,
 * and removed after its horizon. */
SL_TEST(cleaner_txn_markers_removed_after_horizon) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    scen s;
    CHECK(build(log, &s));
    sl_cleaner_result res;
    seen v;
    CHECK_EQ(clean_txn(log, &s.txn, NOW, &res), SL_OK);
    CHECK_EQ(res.markers_stamped, 1);
    sl_cleaner_result_free(&res);
    /* Before the horizon: kept (and still stamped), the horizon still reported. */
    CHECK_EQ(clean_txn(log, &s.txn, NOW + RETENTION - 1, &res), SL_OK);
    CHECK_EQ(res.markers_removed, 0);
    CHECK_EQ(res.markers_stamped, 0);
    CHECK_EQ(res.checkpoint.horizon_ms, NOW + RETENTION);
    CHECK(scan(log, &v));
    CHECK_EQ(horizon_of(&v, s.a2), 1);
    sl_cleaner_result_free(&res);
    /* At the horizon: the ABORT goes, reported; the COMMIT stays unstamped. */
    CHECK_EQ(clean_txn(log, &s.txn, NOW + RETENTION, &res), SL_OK);
    CHECK_EQ(res.markers_removed, 1);
    CHECK_EQ(res.nremoved_abort, 1);
    CHECK(res.removed_abort_markers && res.removed_abort_markers[0] == s.a2);
    CHECK_EQ(res.checkpoint.horizon_ms, -1);
    CHECK(scan(log, &v));
    CHECK_EQ(horizon_of(&v, s.a2), -1);
    CHECK_EQ(horizon_of(&v, s.c1), 0);
    CHECK(has(&v, "K=v1") && !has(&v, "K=v2"));
    sl_cleaner_result_free(&res);
    /* The broker forgot the entry: the next clean gets none; nothing changes. */
    CHECK_EQ(clean_txn(log, &(sl_cleaner_txn){.stable_end = INT64_MAX}, NOW + 5 * RETENTION, &res),
             SL_OK);
    CHECK_EQ(res.markers_removed + res.markers_stamped, 0);
    CHECK(scan(log, &v));
    CHECK_EQ(horizon_of(&v, s.c1), 0);
    sl_cleaner_result_free(&res);

    /* K=v3 (plain) supersedes v1: P1 has no data left, its COMMIT is stamped, then removed. */
    CHECK(put(log, -1, false, "K", "v3") >= 0);
    CHECK(filler(log, 12, "b"));
    sl_cleaner_txn none = {.stable_end = INT64_MAX};
    CHECK_EQ(clean_txn(log, &none, NOW + 10 * RETENTION, &res), SL_OK);
    CHECK_EQ(res.markers_stamped, 1);
    CHECK(scan(log, &v));
    CHECK(has(&v, "K=v3") && !has(&v, "K=v1"));
    CHECK_EQ(horizon_of(&v, s.c1), 1);
    sl_cleaner_result_free(&res);
    CHECK_EQ(clean_txn(log, &none, NOW + 11 * RETENTION, &res), SL_OK);
    CHECK_EQ(res.markers_removed, 1);
    CHECK_EQ(res.nremoved_abort, 0); /* a COMMIT has no index entry */
    CHECK(scan(log, &v));
    CHECK_EQ(v.nctl, 0);
    CHECK_EQ(key_count(&v, "K"), 1);
    sl_cleaner_result_free(&res);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* An open transaction bounds the clean: the cleanable end is the base of the segment holding the
 * last stable offset, and duplicates at or after it survive. Once the bound moves (the
 * transaction committed), they are cleaned. */
SL_TEST(cleaner_txn_bounded_by_lso) {
    char dir[64];
    sl_log_config lc;
    sl_log *log = new_log(dir, &lc, NULL);
    CHECK(log);
    CHECK(filler(log, 10, "x"));
    int64_t open_first = put(log, 7, true, "T", "t1"); /* P7's transaction, open */
    CHECK(open_first >= 0);
    CHECK(filler(log, 10, "x")); /* the same keys again: duplicates above the LSO */
    CHECK(filler(log, 10, "y"));
    CHECK(sl_log_segment_count(log) >= 4);
    sl_cleaner_config cc;
    clean_cfg(&cc);
    sl_cleaner_checkpoint ck = {0, -1};
    sl_cleaner_assessment as, unbounded;
    sl_cleaner_assess_txn(log, &cc, &ck, open_first, NOW, &as);
    sl_cleaner_assess(log, &cc, &ck, NOW, &unbounded);
    CHECK(as.cleanable_end <= open_first);
    CHECK(as.cleanable_end < unbounded.cleanable_end);
    /* It is a segment boundary: the segment holding open_first starts there. */
    bool boundary = false;
    for (int i = 0; i < sl_log_segment_count(log); i++) {
        int64_t b;
        uint32_t tv;
        CHECK(sl_log_segment_info(log, i, &b, &tv));
        int64_t nb = INT64_MAX;
        if (i + 1 < sl_log_segment_count(log)) CHECK(sl_log_segment_info(log, i + 1, &nb, &tv));
        if (b == as.cleanable_end && open_first < nb) boundary = true;
    }
    CHECK(boundary);
    sl_cleaner_result res;
    sl_cleaner_txn txn = {.stable_end = open_first};
    CHECK_EQ(clean_txn(log, &txn, NOW, &res), SL_OK);
    CHECK_EQ(res.checkpoint.offset, as.cleanable_end);
    seen v;
    CHECK(scan(log, &v));
    CHECK_EQ(key_count(&v, "fill-x-3"), 2); /* its later copy is above the bound */
    CHECK(has(&v, "T=t1"));
    sl_cleaner_result_free(&res);
    /* Committed: the bound goes, the duplicates are cleaned, the transaction's record stays. */
    CHECK(marker(log, 7, true) >= 0);
    CHECK(filler(log, 8, "z"));
    txn.stable_end = INT64_MAX;
    CHECK_EQ(clean_txn(log, &txn, NOW, &res), SL_OK);
    CHECK(scan(log, &v));
    CHECK_EQ(key_count(&v, "fill-x-3"), 1);
    CHECK(has(&v, "T=t1"));
    sl_cleaner_result_free(&res);
    sl_log_close(log);
    cleaner_rm_rf(dir);
}

/* A kill -9 after each durable step of a clean that removes aborted data (in one segment) and
 * stamps its ABORT marker (in a later one): reopened, the log is the old one (v2 and the marker
 * unstamped) or the new one (no v2, the marker stamped), never aborted data without its marker;
 * K=v1 is always there; a clean afterwards gives the new one. */
typedef struct crash_txn {
    int64_t a2; /* P2's ABORT marker */
    sl_cleaner_aborted ab;
    sl_cleaner_txn txn;
    int nall; /* segments as built */
} crash_txn;

/* P1 commits K=v1; P2's aborted K=v2 and its ABORT marker are in different segments. */
static void crash_build(int *sl_failed_, void *ctx, const char *dir, sl_log *log) {
    crash_txn *x = ctx;
    (void)dir;
    int64_t v1 = put(log, 1, true, "K", "v1");
    CHECK(v1 >= 0 && marker(log, 1, true) >= 0);
    int64_t v2 = put(log, 2, true, "K", "v2");
    CHECK(v2 >= 0 && filler(log, 6, "m"));
    x->a2 = marker(log, 2, false);
    CHECK(x->a2 >= 0 && filler(log, 12, "a"));
    x->ab = (sl_cleaner_aborted){2, v2, x->a2};
    x->txn = (sl_cleaner_txn){.stable_end = INT64_MAX, .ab = &x->ab, .nab = 1};
    x->nall = sl_log_segment_count(log);
}

static sl_err crash_clean(void *ctx, sl_log *log) {
    sl_cleaner_result res;
    sl_err e = clean_txn(log, &((crash_txn *)ctx)->txn, NOW, &res);
    if (e == SL_OK) sl_cleaner_result_free(&res);
    return e;
}

/* The old log (v2 there, its marker unstamped) or the new one (no v2, the marker stamped). */
static void crash_check(int *sl_failed_, void *ctx, const char *dir, sl_log *log, bool finished) {
    crash_txn *x = ctx;
    (void)dir;
    seen v;
    CHECK(scan(log, &v));
    CHECK(has(&v, "K=v1"));
    bool old = has(&v, "K=v2") && horizon_of(&v, x->a2) == 0;
    bool cleaned = !has(&v, "K=v2") && horizon_of(&v, x->a2) == 1;
    CHECK(old || cleaned);
    CHECK(!finished || cleaned);
}

static void crash_check_cleaned(int *sl_failed_, void *ctx, sl_log *log) {
    crash_txn *x = ctx;
    seen v;
    CHECK(scan(log, &v));
    CHECK(has(&v, "K=v1") && !has(&v, "K=v2") && horizon_of(&v, x->a2) == 1);
    if (g_merge_bytes) CHECK(sl_log_segment_count(log) <= x->nall / 2);
}

/* The crash harness over crash_build..crash_check_cleaned; `merge` segments at a time merged
 * (g_merge_bytes), or none when 0. */
static void txn_crash_every_step(int *failed, int merge) {
    crash_txn x;
    cleaner_crash c = {.tag = "sl_ctxn",
                       .ctx = &x,
                       .build = crash_build,
                       .clean = crash_clean,
                       .check = crash_check,
                       .check_cleaned = crash_check_cleaned};
    log_cfg(&c.lc);
    g_merge_bytes = merge * c.lc.segment_bytes;
    cleaner_crash_every_step(failed, &c);
    g_merge_bytes = 0;
}

SL_TEST(cleaner_txn_crash_at_every_step) { txn_crash_every_step(sl_failed_, 0); }

/* The same with segments merged four at a time: the aborted data, its marker and the data
 * kept end up in merged segments; every crash leaves the old log or the new one. */
SL_TEST(cleaner_txn_merging_crash_at_every_step) { txn_crash_every_step(sl_failed_, 4); }
