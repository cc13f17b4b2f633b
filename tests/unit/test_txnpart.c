/* Per-partition transaction state (broker/sl_txnpart.h): transactions opened by transactional
 * batches, closed by markers; the LSO; the durable aborted index and its range query; recovery
 * at open (including a transaction whose marker never came, a torn or damaged index, an entry
 * whose marker never became durable); and read_committed Fetch/ListOffsets through a real
 * broker over loopback (stops at the LSO, lists the aborted transaction, a parked fetch wakes
 * on the marker). Transactional batches are appended the way the produce path does (log append,
 * producer state, sl_txnpart_on_append): until the coordinator lands, the idempotent check
 * refuses them from clients. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "local_broker.h"
#include "loop_broker.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_cleaner.h"
#include "storage/sl_log_internal.h"
#include "storage/sl_storage_hooks.h"
#include "txn_append.h"

static sl_partition *part0(sl_broker *b) {
    return sl_topics_partition(b->topics, sl_str_c("t"), 0);
}

/* A fresh broker (`dir`, 64 bytes; `b` need not be zeroed) with topic "t" of one partition:
 * that partition, or NULL. */
static sl_partition *open_broker(char *dir, sl_broker *b) {
    memset(b, 0, sizeof *b);
    return local_broker_open(dir, "sl_txnpart", b, 1) ? part0(b) : NULL;
}

static bool reopen(sl_broker *b) {
    char err[256];
    sl_topics_close(b->topics);
    b->topics = NULL;
    return sl_topics_open(&b->cfg, &b->topics, err, sizeof err) == SL_OK;
}

static void path_in(sl_broker *b, const char *name, char *out, size_t cap) {
    sl_topic *t = sl_topics_find(b->topics, sl_str_c("t"));
    char dir[512];
    sl_topics_partition_dir(b->topics, t, 0, dir, sizeof dir);
    snprintf(out, cap, "%s/%s", dir, name);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* One aborted.idx record as the format says (docs/on-disk-format.md). */
static void idx_record(uint8_t *b, int64_t pid, int64_t first, int64_t last) {
    sl_be32(b, 0x534c5441u);
    sl_be64(b + 4, (uint64_t)pid);
    sl_be64(b + 12, (uint64_t)first);
    sl_be64(b + 20, (uint64_t)last);
    sl_be32(b + 28, sl_crc32c(0, b, 28));
}

static bool append_bytes(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0) return false;
    bool ok = write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok;
}

/* The log as the tests below build it:
 *   0-1 plain | 2-3 A (txn) | 4-5 B (txn) | 6 plain | 7-8 A | 9 COMMIT A | 10 ABORT B
 * and, with `open_d`, 11-12 D (txn) left open. */
static bool build_log(sl_partition *p, bool open_d) {
    bool ok = append(p, -1, 0, 0, 2, false) == 0;
    ok = ok && append(p, 100, 3, 0, 2, true) == 2;
    ok = ok && append(p, 200, 1, 0, 2, true) == 4;
    ok = ok && append(p, -1, 0, 0, 1, false) == 6;
    ok = ok && append(p, 100, 3, 2, 2, true) == 7;
    ok = ok && sl_txnpart_write_marker(p, 100, 3, true, 5) == SL_OK;
    ok = ok && sl_txnpart_write_marker(p, 200, 1, false, 5) == SL_OK;
    if (open_d) ok = ok && append(p, 300, 0, 0, 2, true) == 11;
    return ok;
}

SL_TEST(txnpart_lso_markers_aborted_index) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_lso(p), 0);
    CHECK_EQ(append(p, -1, 0, 0, 2, false), 0);
    CHECK_EQ(sl_txnpart_lso(p), 2); /* nothing open: LSO = high watermark */
    CHECK_EQ(append(p, 100, 3, 0, 2, true), 2);
    CHECK(sl_txnpart_is_open(p, 100));
    CHECK_EQ(sl_txnpart_lso(p), 2);
    CHECK_EQ(append(p, 200, 1, 0, 2, true), 4);
    CHECK_EQ(append(p, -1, 0, 0, 1, false), 6);
    CHECK_EQ(append(p, 100, 3, 2, 2, true), 7); /* A again: its first offset stays 2 */
    CHECK_EQ(sl_txnpart_lso(p), 2);
    CHECK(!sl_txnpart_is_open(p, 300));
    int32_t seq_before;
    int nb_before;
    CHECK(sl_pstate_get(p->pstate, 100, NULL, &seq_before, &nb_before));

    /* COMMIT A: the LSO moves to the oldest still open, B's first offset. */
    CHECK_EQ(sl_txnpart_write_marker(p, 100, 3, true, 5), SL_OK);
    CHECK(!sl_txnpart_is_open(p, 100));
    CHECK_EQ(sl_txnpart_lso(p), 4);
    CHECK_EQ(sl_log_end_offset(p->log), 10);
    CHECK(sl_log_durable_offset(p->log) >= 10); /* synced before returning */
    /* The marker leaves the idempotent sequence history alone. */
    int32_t seq_after;
    int nb_after;
    int16_t ep;
    CHECK(sl_pstate_get(p->pstate, 100, &ep, &seq_after, &nb_after));
    CHECK_EQ(seq_after, seq_before);
    CHECK_EQ(nb_after, nb_before);

    /* The control batch: transactional + control, pid/epoch, no sequence, one record. */
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    uint8_t *data;
    size_t n;
    CHECK_EQ(sl_log_read(p->log, 9, 1 << 20, a, &data, &n), SL_OK);
    sl_batch_info bi;
    CHECK(sl_batch_parse(data, n, &bi));
    CHECK_EQ(bi.base_offset, 9);
    CHECK_EQ(bi.attributes & 0x30, 0x30);
    CHECK_EQ(bi.producer_id, 100);
    CHECK_EQ(bi.producer_epoch, 3);
    CHECK_EQ(bi.base_sequence, -1);
    CHECK_EQ(bi.record_count, 1);
    CHECK(sl_batch_crc_ok(data, bi.size));
    sl_rec_iter it;
    CHECK_EQ(sl_rec_iter_init(&it, data, bi.size, a, 1 << 20), SL_OK);
    sl_record r;
    CHECK(sl_rec_iter_next(&it, &r));
    CHECK_EQ(r.key.len, 4);
    CHECK_EQ(sl_get_be32(r.key.p), 1); /* version 0, type 1 COMMIT */
    CHECK_EQ(r.value.len, 6);
    CHECK_EQ(sl_get_be32(r.value.p + 2), 5); /* coordinator epoch */

    /* ABORT B: nothing open, LSO = HW; B is in the aborted index with its marker's offset. */
    CHECK_EQ(sl_txnpart_write_marker(p, 200, 1, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 11);
    CHECK_EQ(sl_log_end_offset(p->log), 11);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, 11, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);
    CHECK_EQ(ab[0].first_offset, 4);
    CHECK_EQ(sl_txnpart_aborted(p, 10, 11, a, &ab), 1); /* marker at 10: still relevant */
    CHECK_EQ(sl_txnpart_aborted(p, 11, 20, a, &ab), 0); /* after its marker */
    CHECK_EQ(sl_txnpart_aborted(p, 0, 4, a, &ab), 0);   /* before its first offset */
    CHECK_EQ(sl_txnpart_aborted(p, 0, 5, a, &ab), 1);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);

    /* Markers with nothing open are written and harmless: no entry, LSO = HW. */
    CHECK_EQ(sl_txnpart_write_marker(p, 300, 0, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_write_marker(p, 100, 3, true, 5), SL_OK);
    CHECK_EQ(sl_log_end_offset(p->log), 13);
    CHECK_EQ(sl_txnpart_lso(p), 13);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 13, a, &ab), 1);
    CHECK_EQ(file_size(idx), 32);

    /* Two producers interleaved again, the younger one ending first. */
    CHECK_EQ(append(p, 400, 0, 0, 1, true), 13);
    CHECK_EQ(append(p, 500, 0, 0, 1, true), 14);
    CHECK_EQ(sl_txnpart_write_marker(p, 500, 0, false, 5), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 13); /* 400 still open */
    CHECK_EQ(sl_txnpart_aborted(p, 13, 16, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 500);
    CHECK_EQ(ab[0].first_offset, 14);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 16, a, &ab), 2);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* Close + reopen rebuilds the same state, with or without the checkpoint (the scan from the log
 * start finds the same): the aborted entry, the open transaction without its marker. */
SL_TEST(txnpart_reopen_rebuilds_state) {
    char dir[64];
    sl_broker b;
    CHECK(open_broker(dir, &b));
    CHECK(build_log(part0(&b), true));
    CHECK_EQ(sl_txnpart_lso(part0(&b)), 11);
    CHECK_EQ(sl_log_sync(part0(&b)->log), SL_OK);
    char ckpt[600];
    path_in(&b, "txn.ckpt", ckpt, sizeof ckpt);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    for (int round = 0; round < 3; round++) {
        CHECK(reopen(&b));
        sl_partition *p = part0(&b);
        CHECK(p && p->txn && !p->unavailable);
        CHECK(sl_txnpart_is_open(p, 300));
        CHECK(!sl_txnpart_is_open(p, 100));
        CHECK(!sl_txnpart_is_open(p, 200));
        CHECK_EQ(sl_txnpart_lso(p), 11);
        sl_txn_aborted *ab;
        CHECK_EQ(sl_txnpart_aborted(p, 0, 13, a, &ab), 1);
        CHECK_EQ(ab[0].producer_id, 200);
        CHECK_EQ(ab[0].first_offset, 4);
        /* The idempotent state rebuilt from the log skips the markers too. */
        int32_t seq;
        CHECK(sl_pstate_get(p->pstate, 100, NULL, &seq, NULL));
        CHECK_EQ(seq, 3);
        /* Round 1 reopens without the checkpoint (a crash before it was ever written): the
         * scan from the log start gives the same. */
        if (round == 0) CHECK_EQ(unlink(ckpt), 0);
        /* Round 2: an older checkpoint (the newer one lost): the scan starts earlier. */
        if (round == 1) {
            uint8_t c[20];
            sl_be32(c, 0x534c5443u);
            sl_be32(c + 4, 1);
            sl_be64(c + 8, 0);
            sl_be32(c + 16, sl_crc32c(0, c, 16));
            FILE *f = fopen(ckpt, "wb");
            CHECK(f && fwrite(c, 1, sizeof c, f) == sizeof c);
            fclose(f);
        }
    }
    /* The open transaction ends after the restart like any other. */
    sl_partition *p = part0(&b);
    CHECK_EQ(sl_txnpart_write_marker(p, 300, 0, false, 6), SL_OK);
    CHECK_EQ(sl_txnpart_lso(p), 14);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, 14, a, &ab), 2);
    CHECK_EQ(ab[1].producer_id, 300);
    CHECK_EQ(ab[1].first_offset, 11);
    /* DeleteRecords past B's marker: B's entry is no longer answered, and the next open drops
     * it from the file. */
    CHECK_EQ(sl_log_delete_records(p->log, 11), SL_OK);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 14, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 300);
    CHECK_EQ(sl_log_sync(p->log), SL_OK);
    CHECK(reopen(&b));
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 14, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 300);
    CHECK_EQ(sl_txnpart_lso(part0(&b)), 14);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* A torn tail of aborted.idx is cut; an entry whose marker never reached the log (written, then
 * the crash) is dropped; a damaged record followed by good ones keeps the partition closed. */
SL_TEST(txnpart_index_torn_tail_stale_entry_damage) {
    char dir[64];
    sl_broker b;
    CHECK(open_broker(dir, &b));
    CHECK(build_log(part0(&b), false));
    CHECK_EQ(append(part0(&b), -1, 0, 0, 1, false), 11);
    CHECK_EQ(sl_log_sync(part0(&b)->log), SL_OK);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 32);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;

    /* Torn: half a record after the good one. */
    uint8_t rec[32];
    idx_record(rec, 700, 3, 11);
    CHECK(append_bytes(idx, rec, 17));
    CHECK(reopen(&b));
    CHECK(!part0(&b)->unavailable);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 11, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);

    /* Stale: a whole entry whose marker offset is the log end (the append never happened),
     * then one pointing at a batch that is not that producer's marker (the plain batch at 11). */
    idx_record(rec, 700, 3, 12);
    CHECK(append_bytes(idx, rec, sizeof rec));
    CHECK(reopen(&b));
    CHECK(!part0(&b)->unavailable);
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 12, a, &ab), 1);
    idx_record(rec, 700, 6, 11);
    CHECK(append_bytes(idx, rec, sizeof rec));
    CHECK(reopen(&b));
    CHECK_EQ(file_size(idx), 32);
    CHECK_EQ(sl_txnpart_aborted(part0(&b), 0, 12, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 200);

    /* Damage in the middle: a flipped byte in the first record, a good record after it. */
    idx_record(rec, 700, 6, 11);
    CHECK(append_bytes(idx, rec, sizeof rec));
    int fd = open(idx, O_RDWR);
    CHECK(fd >= 0);
    uint8_t x = 0xff;
    CHECK(pwrite(fd, &x, 1, 10) == 1);
    close(fd);
    CHECK(reopen(&b));
    CHECK_EQ(part0(&b)->unavailable, SL_ECORRUPT);
    CHECK(part0(&b)->txn == NULL);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* ---- a marker whose sync fails (R4) ---- */

static atomic_int g_fsync_fail;
static int failing_fsync(int fd) {
    if (atomic_load(&g_fsync_fail)) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

static void fsync_fails(bool on) {
    atomic_store(&g_fsync_fail, on ? 1 : 0);
    sl_storage_fsync = on ? failing_fsync : fsync;
}

/* stderr into `path` (mkstemp template) until stderr_back(); returns the saved descriptor. */
static int stderr_to(char *path) {
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    return saved;
}

static void stderr_back(int saved) {
    fflush(stderr);
    if (saved >= 0) dup2(saved, 2), close(saved);
}

static int count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle)) n++;
    if (f) fclose(f);
    return n;
}

#define MARKER_ERR "transaction marker not durable"

/* The storage fails the fsync of a marker (real fault injection below sl_log): the call fails
 * and the transaction stays open (the LSO waits: the marker may still be lost), one ERROR for
 * the partition however often the coordinator retries, and a retry never appends the marker or
 * indexes the abort a second time. A marker of another producer on the failed log is refused
 * before anything is written. Once the log syncs again (simulated: the sticky flag cleared, as
 * after a failure to open a file for its fsync, which leaves the log writable) the retry ends the
 * transaction. After a sticky failure the retries fail until the restart; then the recovery
 * finds the marker and the coordinator's retry adds nothing to the index. */
SL_TEST(txnpart_marker_sync_failure) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    /* 0-1 A | 2 COMMIT A | 3-4 B (open) */
    CHECK_EQ(append(p, 100, 0, 0, 2, true), 0);
    CHECK_EQ(sl_txnpart_write_marker(p, 100, 0, true, 1), SL_OK);
    CHECK_EQ(append(p, 200, 0, 0, 2, true), 3);
    CHECK_EQ(sl_txnpart_lso(p), 3);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;
    char logf[] = "/tmp/sl_txnerr_XXXXXX";
    int saved = stderr_to(logf);
    CHECK(saved >= 0);

    fsync_fails(true);
    sl_err e1 = sl_txnpart_write_marker(p, 200, 0, false, 1);
    bool failing = sl_txnpart_failing(p);
    int64_t end1 = sl_log_end_offset(p->log), lso1 = sl_txnpart_lso(p);
    bool open1 = sl_txnpart_is_open(p, 200);
    long size1 = file_size(idx);
    int n1 = sl_txnpart_aborted(p, 0, 100, a, &ab);
    /* The coordinator retries every second: nothing more is appended, indexed or logged. */
    sl_err e2 = SL_OK;
    for (int i = 0; i < 5 && !e2; i++) e2 = sl_txnpart_write_marker(p, 200, 0, false, 1);
    sl_err e3 = sl_txnpart_write_marker(p, 300, 0, true, 1); /* another producer's */
    int64_t end2 = sl_log_end_offset(p->log);
    long size2 = file_size(idx);
    int n2 = sl_txnpart_aborted(p, 0, 100, a, &ab);
    int errs1 = count_lines(logf, MARKER_ERR);

    /* The log syncs again: the retry only syncs, and B ends. */
    fsync_fails(false);
    atomic_store(&p->log->sync_failed, 0);
    sl_err e4 = sl_txnpart_write_marker(p, 200, 0, false, 1);
    int64_t end3 = sl_log_end_offset(p->log), lso3 = sl_txnpart_lso(p);
    bool open3 = sl_txnpart_is_open(p, 200), failing3 = sl_txnpart_failing(p);
    long size3 = file_size(idx);
    int n3 = sl_txnpart_aborted(p, 0, 100, a, &ab);

    /* A sticky failure: 6-7 C, its abort marker fails; retries fail until the restart. */
    bool c_ok = append(p, 400, 0, 0, 2, true) == 6;
    fsync_fails(true);
    sl_err e5 = sl_txnpart_write_marker(p, 400, 0, false, 1);
    fsync_fails(false);
    sl_err e6 = sl_txnpart_write_marker(p, 400, 0, false, 1);
    int64_t lso5 = sl_txnpart_lso(p);
    int errs2 = count_lines(logf, MARKER_ERR);
    stderr_back(saved);
    unlink(logf);

    CHECK_EQ(e1, SL_EIO);
    CHECK(failing);
    CHECK_EQ(end1, 6); /* the marker was appended at 5 */
    CHECK_EQ(lso1, 3); /* but B is not over until it is durable */
    CHECK(open1);
    CHECK_EQ(size1, 32);
    CHECK_EQ(n1, 1);
    CHECK_EQ(e2, SL_EIO);
    CHECK_EQ(e3, SL_EIO);
    CHECK_EQ(end2, 6);
    CHECK_EQ(size2, 32);
    CHECK_EQ(n2, 1);
    CHECK_EQ(errs1, 1);
    CHECK_EQ(e4, SL_OK);
    CHECK_EQ(end3, 6);
    CHECK_EQ(lso3, 6);
    CHECK(!open3);
    CHECK(!failing3);
    CHECK_EQ(size3, 32);
    CHECK_EQ(n3, 1);
    CHECK(c_ok);
    CHECK_EQ(e5, SL_EIO);
    CHECK_EQ(e6, SL_EIO);
    CHECK_EQ(lso5, 6);
    CHECK_EQ(errs2, 2); /* one more: a new failure after the partition had recovered */

    /* The restart: the marker at 8 is in the log, C is over; the coordinator's retry writes a
     * harmless second marker and no second entry. */
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn && !p->unavailable);
    CHECK(!sl_txnpart_is_open(p, 400));
    CHECK_EQ(sl_txnpart_lso(p), 9);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 100, a, &ab), 2);
    CHECK_EQ(ab[1].producer_id, 400);
    CHECK_EQ(ab[1].first_offset, 6);
    CHECK_EQ(sl_txnpart_write_marker(p, 400, 0, false, 1), SL_OK);
    CHECK_EQ(sl_log_end_offset(p->log), 10);
    CHECK_EQ(sl_txnpart_aborted(p, 0, 100, a, &ab), 2);
    CHECK_EQ(file_size(idx), 64);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* ---- markers synced off the loop (the two halves) ---- */

typedef struct synced_ctx {
    sl_partition *p;
    int calls;
    sl_err result, txn_result;
} synced_ctx;

static void on_synced(void *ctx, sl_err e) {
    synced_ctx *c = ctx;
    c->calls++;
    c->result = e;
    c->txn_result = sl_txnpart_markers_synced(c->p, e);
}

/* Runs the flusher's completions until the callback ran (or 20 s passed). */
static bool flushed(sl_flusher *f, synced_ctx *c) {
    int64_t deadline = sl_mono_ms() + 20000;
    while (!c->calls && sl_mono_ms() < deadline) {
        struct pollfd pfd = {sl_flusher_fd(f), POLLIN, 0};
        if (poll(&pfd, 1, 10) > 0) sl_flusher_dispatch(f);
    }
    return c->calls == 1;
}

/* append_marker + the flusher's sync + markers_synced: the transactions stay open (LSO) until
 * the sync completes, then end; a marker asked for twice is appended once. A failed sync keeps
 * the transaction open and is reported; after the restart the recovery finds the marker. */
SL_TEST(txnpart_markers_synced_by_flusher) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    CHECK_EQ(append(p, 100, 0, 0, 2, true), 0);
    CHECK_EQ(append(p, 200, 0, 0, 2, true), 2);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    sl_flusher *f;
    CHECK_EQ(sl_flusher_new(&f), SL_OK);
    CHECK_EQ(sl_txnpart_append_marker(p, 100, 0, true, 1), SL_OK);  /* at 4 */
    CHECK_EQ(sl_txnpart_append_marker(p, 100, 0, true, 1), SL_OK);  /* the same: not again */
    CHECK_EQ(sl_txnpart_append_marker(p, 200, 0, false, 1), SL_OK); /* at 5, indexed */
    CHECK_EQ(sl_log_end_offset(p->log), 6);
    CHECK(sl_txnpart_is_open(p, 100) && sl_txnpart_is_open(p, 200));
    CHECK_EQ(sl_txnpart_lso(p), 0);
    CHECK_EQ(sl_txnpart_aborted_count(p), 1);
    CHECK_EQ(file_size(idx), 32);
    synced_ctx c = {.p = p};
    sl_flusher_request(f, p->log, on_synced, &c);
    CHECK(flushed(f, &c));
    CHECK_EQ(c.result, SL_OK);
    CHECK_EQ(c.txn_result, SL_OK);
    CHECK(!sl_txnpart_is_open(p, 100) && !sl_txnpart_is_open(p, 200));
    CHECK_EQ(sl_txnpart_lso(p), 6);

    /* 6-7 C; its marker's sync fails (real fault below sl_log). */
    CHECK_EQ(append(p, 300, 0, 0, 2, true), 6);
    CHECK_EQ(sl_txnpart_append_marker(p, 300, 0, false, 1), SL_OK); /* at 8 */
    char logf[] = "/tmp/sl_txnerr_XXXXXX";
    int saved = stderr_to(logf);
    fsync_fails(true);
    synced_ctx c2 = {.p = p};
    sl_flusher_request(f, p->log, on_synced, &c2);
    bool done = flushed(f, &c2);
    fsync_fails(false);
    stderr_back(saved);
    int errs = count_lines(logf, MARKER_ERR);
    unlink(logf);
    sl_flusher_free(f);
    CHECK(done);
    CHECK_EQ(c2.result, SL_EIO);
    CHECK_EQ(c2.txn_result, SL_EIO);
    CHECK_EQ(errs, 1);
    CHECK(sl_txnpart_failing(p));
    CHECK(sl_txnpart_is_open(p, 300));
    CHECK_EQ(sl_txnpart_lso(p), 6);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn && !p->unavailable);
    CHECK(!sl_txnpart_is_open(p, 300));
    CHECK_EQ(sl_txnpart_lso(p), 9);
    CHECK_EQ(sl_txnpart_aborted_count(p), 2);
    local_broker_close(dir, &b);
}

/* Markers synced off the loop can leave several index entries whose marker a crash lost: every
 * entry at or past the log end is dropped at open, not only the last. */
SL_TEST(txnpart_open_drops_every_entry_past_the_log_end) {
    char dir[64];
    sl_broker b;
    CHECK(open_broker(dir, &b));
    CHECK(build_log(part0(&b), false)); /* ABORT B at 10, end 11 */
    CHECK_EQ(sl_log_sync(part0(&b)->log), SL_OK);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    uint8_t rec[64];
    idx_record(rec, 700, 11, 11);
    idx_record(rec + 32, 701, 11, 12);
    CHECK(append_bytes(idx, rec, sizeof rec));
    CHECK(reopen(&b));
    CHECK(!part0(&b)->unavailable);
    CHECK_EQ(sl_txnpart_aborted_count(part0(&b)), 1);
    CHECK_EQ(file_size(idx), 32);
    local_broker_close(dir, &b);
}

/* ---- aborted.idx follows the log start (R2) ---- */

/* `n` aborted transactions of one record each: data at base + 2k, ABORT marker at base + 2k + 1. */
static bool aborts(sl_partition *p, int64_t base, int n) {
    for (int k = 0; k < n; k++)
        if (append(p, 1000 + k, 0, 0, 1, true) != base + 2 * k ||
            sl_txnpart_write_marker(p, 1000 + k, 0, false, 1) != SL_OK)
            return false;
    return true;
}

/* DeleteRecords moves the log start: the entries whose marker is below it leave memory and the
 * file at once, and stay gone after a reopen; one whose data starts below the start but whose
 * marker is at it stays (a read_committed fetch from the start still needs it). */
SL_TEST(txnpart_index_trimmed_when_log_start_moves) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    CHECK(aborts(p, 0, 10));
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(sl_txnpart_aborted_count(p), 10);
    CHECK_EQ(file_size(idx), 320);
    sl_txnpart_log_start_moved(p); /* nothing below the start: nothing changes */
    CHECK_EQ(sl_txnpart_aborted_count(p), 10);
    CHECK_EQ(sl_log_delete_records(p->log, 7), SL_OK);
    sl_txnpart_log_start_moved(p);
    CHECK_EQ(sl_txnpart_aborted_count(p), 7); /* markers 1, 3, 5 gone; 7 stays */
    CHECK_EQ(file_size(idx), 224);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 7, 8, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 1003);
    CHECK_EQ(ab[0].first_offset, 6);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_aborted_count(p), 7);
    CHECK_EQ(file_size(idx), 224);
    CHECK_EQ(sl_log_delete_records(p->log, 20), SL_OK);
    sl_txnpart_log_start_moved(p);
    CHECK_EQ(sl_txnpart_aborted_count(p), 0);
    CHECK_EQ(file_size(idx), 0);
    CHECK(reopen(&b));
    CHECK_EQ(sl_txnpart_aborted_count(part0(&b)), 0);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* A large aborted.idx opens: it is read in chunks, the entries below the log start are never
 * kept (65536 of them here, many chunks), and the size has no cap. 300 MiB of zeros after the
 * good records (a sparse tail, nothing written) is a torn tail: cut, and the partition opens
 * (it did not open with the old 256 MiB cap). */
SL_TEST(txnpart_large_index_opens) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    enum { OLD = 65536 };
    CHECK_EQ(append(p, -1, 0, 0, OLD + 2, false), 0);
    CHECK_EQ(sl_log_delete_records(p->log, OLD + 2), SL_OK);
    CHECK(aborts(p, OLD + 2, 1)); /* data at OLD + 2, marker at OLD + 3 */
    CHECK_EQ(sl_log_sync(p->log), SL_OK);
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    uint8_t *buf = malloc((size_t)(OLD + 1) * 32);
    CHECK(buf);
    for (int i = 0; i < OLD; i++) idx_record(buf + (size_t)i * 32, 5, i, i);
    idx_record(buf + (size_t)OLD * 32, 1000, OLD + 2, OLD + 3);
    FILE *f = fopen(idx, "wb");
    CHECK(f && fwrite(buf, 32, OLD + 1, f) == OLD + 1);
    fclose(f);
    free(buf);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn && !p->unavailable);
    CHECK_EQ(sl_txnpart_aborted_count(p), 1);
    CHECK_EQ(file_size(idx), 32);

    CHECK_EQ(truncate(idx, 32 + ((off_t)300 << 20)), 0);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn && !p->unavailable);
    CHECK_EQ(sl_txnpart_aborted_count(p), 1);
    CHECK_EQ(file_size(idx), 32);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, OLD + 4, a, &ab), 1);
    CHECK_EQ(ab[0].producer_id, 1000);
    sl_arena_free(a);
    local_broker_close(dir, &b);
}

/* ---- read_committed through a real broker over loopback ---- */

#define FETCH_V 11 /* isolation level since v4; not flexible up to v11 */

/* Sends `req` (API `key`, version `v`, non-flexible) and decodes its answer, waited for up to `ms`,
 * into `out` (a struct of that API; what it points to is in `a` or in a buffer the next call
 * reuses). */
static bool call(sl_broker *b, int fd, sl_arena *a, int16_t key, int16_t v, int32_t corr,
                 const void *req, void *out, int ms) {
    static uint8_t buf[1 << 16];
    size_t len = loop_broker_send(b, fd, key, v, corr, req)
                     ? loop_broker_recv(b, fd, buf, sizeof buf, ms)
                     : 0;
    sl_rd r = sl_rd_init(buf + 8, len - 4);
    return len > 4 && sl_msg_codec_get(key, true)->decode(&r, a, v, out) == SL_OK;
}

static bool send_fetch(sl_broker *b, int fd, int32_t corr, int8_t isolation, int64_t offset,
                       int32_t max_wait_ms) {
    sl_fetch_req_partition p;
    sl_fetch_req_partition_init(&p);
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    sl_fetch_req_topic t;
    sl_fetch_req_topic_init(&t);
    t.topic = sl_str_c("t");
    t.partitions = &p;
    t.partitions_count = 1;
    sl_fetch_req r;
    sl_fetch_req_init(&r);
    r.replica_id = -1;
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.isolation_level = isolation;
    r.topics = &t;
    r.topics_count = 1;
    return loop_broker_send(b, fd, SL_API_FETCH, FETCH_V, corr, &r);
}

/* Decodes a Fetch response (after the length prefix and the correlation id). */
static const sl_fetch_resp_partition *fetch_part(sl_arena *a, const uint8_t *buf, size_t len) {
    sl_fetch_resp *resp = sl_arena_calloc(a, 1, sizeof *resp);
    sl_rd r = sl_rd_init(buf + 8, len - 4);
    if (!resp || sl_msg_codec_get(SL_API_FETCH, true)->decode(&r, a, FETCH_V, resp) != SL_OK ||
        resp->responses_count != 1 || resp->responses[0].partitions_count != 1)
        return NULL;
    return &resp->responses[0].partitions[0];
}

/* Base offsets of the batches in a record set (up to 16); returns how many. */
static int batch_bases(const sl_fetch_resp_partition *o, int64_t *bases) {
    const uint8_t *d = o->records.p;
    size_t len = o->records.len > 0 ? (size_t)o->records.len : 0;
    int n = 0;
    sl_batch_info bi;
    while (len && n < 16 && sl_batch_parse(d, len, &bi) && bi.size <= len) {
        bases[n++] = bi.base_offset;
        d += bi.size;
        len -= bi.size;
    }
    return n;
}

static int64_t list_latest(sl_broker *b, int fd, int32_t corr, int8_t isolation, sl_arena *a) {
    sl_list_offsets_req_partition p;
    sl_list_offsets_req_partition_init(&p);
    p.partition_index = 0;
    p.timestamp = -1;
    sl_list_offsets_req_topic t;
    sl_list_offsets_req_topic_init(&t);
    t.name = sl_str_c("t");
    t.partitions = &p;
    t.partitions_count = 1;
    sl_list_offsets_req r;
    sl_list_offsets_req_init(&r);
    r.replica_id = -1;
    r.isolation_level = isolation;
    r.topics = &t;
    r.topics_count = 1;
    sl_list_offsets_resp *resp = sl_arena_calloc(a, 1, sizeof *resp);
    if (!resp || !call(b, fd, a, SL_API_LIST_OFFSETS, 5, corr, &r, resp, 2000) ||
        resp->topics_count != 1 || resp->topics[0].partitions_count != 1 ||
        resp->topics[0].partitions[0].error_code)
        return -2;
    return resp->topics[0].partitions[0].offset;
}

SL_TEST(txnpart_fetch_read_committed) {
    char dir[64];
    sl_broker *b = loop_broker_new(dir, "sl_txnfetch", NULL, 0);
    CHECK(b);
    sl_partition *p = part0(b);
    static uint8_t buf[1 << 16];
    sl_arena *a = sl_arena_new(1 << 16);
    int fd = loop_broker_connect(b->listeners[0].port);
    /* 0-1 plain | 2-3 A | 4-5 B | 6 ABORT A: LSO 4 (B open), HW 7. */
    bool ok = a && fd >= 0 && p && append(p, -1, 0, 0, 2, false) == 0;
    ok = ok && append(p, 100, 0, 0, 2, true) == 2 && append(p, 200, 0, 0, 2, true) == 4;
    ok = ok && sl_txnpart_write_marker(p, 100, 0, false, 1) == SL_OK;
    const sl_fetch_resp_partition *o = NULL;
    int64_t bases[16];
    int nb = -1, nb_unc = -1;
    int64_t lso = -1, hw = -1, lso_unc = -1, latest_rc = -1, latest_ru = -1;
    int32_t naborted = -2, naborted_unc = -2;
    int64_t ab_pid = -1, ab_first = -1;
    size_t len;
    if (ok && send_fetch(b, fd, 1, 1, 0, 0) &&
        (len = loop_broker_recv(b, fd, buf, sizeof buf, 2000)) && (o = fetch_part(a, buf, len)) &&
        !o->error_code) {
        nb = batch_bases(o, bases);
        lso = o->last_stable_offset;
        hw = o->high_watermark;
        naborted = o->aborted_transactions_count;
        if (naborted > 0) {
            ab_pid = o->aborted_transactions[0].producer_id;
            ab_first = o->aborted_transactions[0].first_offset;
        }
    }
    int64_t last_base = nb > 0 ? bases[nb - 1] : -1;
    if (ok && send_fetch(b, fd, 2, 0, 0, 0) &&
        (len = loop_broker_recv(b, fd, buf, sizeof buf, 2000)) && (o = fetch_part(a, buf, len)) &&
        !o->error_code) {
        nb_unc = batch_bases(o, bases);
        lso_unc = o->last_stable_offset;
        naborted_unc = o->aborted_transactions_count;
    }
    if (ok) {
        latest_rc = list_latest(b, fd, 3, 1, a);
        latest_ru = list_latest(b, fd, 4, 0, a);
    }

    /* A read_committed fetch at the LSO parks; B's further data does not wake it (still not
     * stable); B's commit marker does, and it gets B's batches and the marker. */
    bool parked = false, still = false, woke = false;
    int nb_after = -1;
    int64_t lso_after = -1;
    if (ok && send_fetch(b, fd, 5, 1, 4, 10000)) {
        parked = loop_broker_recv(b, fd, buf, sizeof buf, 300) == 0;
        ok = ok && append(p, 200, 0, 2, 1, true) == 7;
        still = parked && loop_broker_recv(b, fd, buf, sizeof buf, 300) == 0;
        int64_t t0 = sl_mono_ms();
        ok = ok && sl_txnpart_write_marker(p, 200, 0, true, 1) == SL_OK;
        len = loop_broker_recv(b, fd, buf, sizeof buf, 5000);
        woke = len > 0 && sl_mono_ms() - t0 < 5000;
        if (woke && (o = fetch_part(a, buf, len)) && !o->error_code) {
            nb_after = batch_bases(o, bases);
            lso_after = o->last_stable_offset;
        }
    }
    if (fd >= 0) close(fd);
    loop_broker_free(b);
    sl_arena_free(a);
    loop_broker_rmdir(dir);
    CHECK(ok);
    CHECK_EQ(lso, 4);
    CHECK_EQ(hw, 7);
    CHECK_EQ(nb, 2); /* batches at 0 and 2: nothing at or past the LSO */
    CHECK_EQ(last_base, 2);
    CHECK_EQ(naborted, 1);
    CHECK_EQ(ab_pid, 100);
    CHECK_EQ(ab_first, 2);
    CHECK_EQ(nb_unc, 4); /* read_uncommitted: everything up to the high watermark */
    CHECK_EQ(lso_unc, 4);
    CHECK_EQ(naborted_unc, -1);
    CHECK_EQ(latest_rc, 4);
    CHECK_EQ(latest_ru, 7);
    CHECK(parked);
    CHECK(still);
    CHECK(woke);
    CHECK_EQ(nb_after, 4); /* 4-5 B, 6 ABORT A, 7 B, 8 COMMIT B */
    CHECK_EQ(lso_after, 9);
}

/* The broker tells txnpart when the log start moves: a retention pass that deletes segments
 * holding abort markers, then a DeleteRecords request, each shrink aborted.idx at once. */
SL_TEST(txnpart_index_follows_retention_and_delete_records) {
    char dir[64];
    static const char *const kv[][2] = {
        {"log.segment.bytes", "1024"},
        {"log.retention.bytes", "1"}, /* every closed segment goes at the next pass */
        {"log.retention.check.interval.ms", "20"},
    };
    sl_broker *b = loop_broker_new(dir, "sl_txnret", kv, sizeof kv / sizeof kv[0]);
    CHECK(b);
    sl_partition *p = part0(b);
    static uint8_t buf[4096];
    int fd = loop_broker_connect(b->listeners[0].port);
    char idx[600];
    sl_topic *t = sl_topics_find(b->topics, sl_str_c("t"));
    char pdir[512];
    sl_topics_partition_dir(b->topics, t, 0, pdir, sizeof pdir);
    snprintf(idx, sizeof idx, "%s/aborted.idx", pdir);
    /* Aborted transactions of 40 records each (a few hundred bytes): several segments. */
    bool ok = fd >= 0 && p;
    int64_t off = 0;
    for (int k = 0; ok && k < 8; k++) {
        ok = append(p, 1000 + k, 0, 0, 40, true) == off;
        ok = ok && sl_txnpart_write_marker(p, 1000 + k, 0, false, 1) == SL_OK;
        off += 41;
    }
    size_t before = ok ? sl_txnpart_aborted_count(p) : 0;
    long size_before = file_size(idx);
    /* The retention pass runs on the loop's timer. */
    int64_t deadline = sl_mono_ms() + 5000;
    while (ok && sl_log_start_offset(p->log) == 0 && sl_mono_ms() < deadline)
        sl_loop_run_once(b->loop, 10);
    int64_t start = ok ? sl_log_start_offset(p->log) : -1;
    size_t after_ret = ok ? sl_txnpart_aborted_count(p) : 0;
    long size_ret = file_size(idx);
    size_t expect_ret = 0; /* markers at 40, 81, ...: those at or after the start stay */
    for (int k = 0; k < 8; k++) expect_ret += 41 * k + 40 >= start;

    /* DeleteRecords to the log end, as a client sends it. */
    sl_delete_records_req_partition rp;
    sl_delete_records_req_partition_init(&rp);
    rp.partition_index = 0;
    rp.offset = off;
    sl_delete_records_req_topic rt;
    sl_delete_records_req_topic_init(&rt);
    rt.name = sl_str_c("t");
    rt.partitions = &rp;
    rt.partitions_count = 1;
    sl_delete_records_req r;
    sl_delete_records_req_init(&r);
    r.topics = &rt;
    r.topics_count = 1;
    r.timeout_ms = 1000;
    bool answered = ok && loop_broker_send(b, fd, SL_API_DELETE_RECORDS, 1, 1, &r) &&
                    loop_broker_recv(b, fd, buf, sizeof buf, 2000) > 0;
    int64_t start_del = ok ? sl_log_start_offset(p->log) : -1;
    size_t after_del = ok ? sl_txnpart_aborted_count(p) : 99;
    long size_del = file_size(idx);
    if (fd >= 0) close(fd);
    loop_broker_free(b);
    loop_broker_rmdir(dir);
    CHECK(ok);
    CHECK_EQ(before, 8);
    CHECK_EQ(size_before, 8 * 32);
    CHECK(start > 0);
    CHECK(expect_ret < 8);
    CHECK_EQ(after_ret, expect_ret);
    CHECK_EQ(size_ret, (long)expect_ret * 32);
    CHECK(answered);
    CHECK_EQ(start_del, off);
    CHECK_EQ(after_del, 0);
    CHECK_EQ(size_del, 0);
}

/* ---- EndTxn: markers synced by the flusher ---- */

/* An EndTxn over two partitions through a real broker: the answer comes only once both markers
 * are durable (the flusher synced them; both LSOs are past their markers when the client reads
 * it). Then a marker whose fsync fails (fault injected below sl_log): EndTxn answers
 * COORDINATOR_NOT_AVAILABLE, the transaction stays open on the partition (the LSO waits), and
 * the decision stays pending: a retried EndTxn appends no second marker. */
SL_TEST(txnpart_end_txn_answers_after_markers_durable) {
    char dir[64];
    sl_broker *b = loop_broker_new(dir, "sl_txnend", NULL, 0);
    CHECK(b);
    bool ok = sl_topics_create(b->topics, sl_str_c("u"), 1, NULL, false, NULL) == SL_OK;
    sl_partition *pt = part0(b), *pu = sl_topics_partition(b->topics, sl_str_c("u"), 0);
    int fd = loop_broker_connect(b->listeners[0].port);
    sl_arena *a = sl_arena_new(1 << 16);
    ok = ok && a && fd >= 0 && pt && pu;

    sl_init_producer_id_req ip;
    sl_init_producer_id_req_init(&ip);
    ip.transactional_id = sl_str_c("x");
    ip.transaction_timeout_ms = 60000;
    sl_init_producer_id_resp ipr;
    sl_init_producer_id_resp_init(&ipr);
    ok = ok && call(b, fd, a, SL_API_INIT_PRODUCER_ID, 1, 1, &ip, &ipr, 5000);
    ok = ok && ipr.error_code == 0;
    int64_t pid = ipr.producer_id;
    int16_t epoch = ipr.producer_epoch;

    /* One transaction over t-0 and u-0: AddPartitionsToTxn, then its batches (as produce). */
    int32_t zero = 0;
    sl_add_partitions_to_txn_req_topic tp[2] = {{sl_str_c("t"), &zero, 1},
                                                {sl_str_c("u"), &zero, 1}};
    sl_add_partitions_to_txn_req ap = {.transactional_id = sl_str_c("x"),
                                       .producer_id = pid,
                                       .producer_epoch = epoch,
                                       .topics = tp,
                                       .topics_count = 2};
    sl_end_txn_req et = {sl_str_c("x"), pid, epoch, true};
    sl_end_txn_resp etr;
    sl_add_partitions_to_txn_resp apr;
    int16_t add1 = -1, end1 = -1, add2 = -1, end2 = -1, end3 = -1;
    if (ok && call(b, fd, a, SL_API_ADD_PARTITIONS_TO_TXN, 1, 2, &ap, &apr, 5000) &&
        apr.results_count == 2)
        add1 = apr.results[0].results[0].error_code | apr.results[1].results[0].error_code;
    ok = ok && append(pt, pid, epoch, 0, 2, true) == 0 && append(pu, pid, epoch, 0, 3, true) == 0;
    int64_t lso_t0 = sl_txnpart_lso(pt), lso_u0 = sl_txnpart_lso(pu);
    if (ok && call(b, fd, a, SL_API_END_TXN, 1, 3, &et, &etr, 10000)) end1 = etr.error_code;
    /* Read right after the answer, without running the loop again. */
    int64_t lso_t1 = sl_txnpart_lso(pt), lso_u1 = sl_txnpart_lso(pu);
    int64_t dur_t1 = sl_log_durable_offset(pt->log), dur_u1 = sl_log_durable_offset(pu->log);

    /* A second transaction (an abort) whose marker on t-0 cannot be made durable. */
    if (ok && call(b, fd, a, SL_API_ADD_PARTITIONS_TO_TXN, 1, 4, &ap, &apr, 5000) &&
        apr.results_count == 2)
        add2 = apr.results[0].results[0].error_code | apr.results[1].results[0].error_code;
    ok = ok && append(pt, pid, epoch, 2, 2, true) == 3;
    et.committed = false;
    fsync_fails(true);
    if (ok && call(b, fd, a, SL_API_END_TXN, 1, 5, &et, &etr, 10000)) end2 = etr.error_code;
    int64_t end_t2 = sl_log_end_offset(pt->log), lso_t2 = sl_txnpart_lso(pt);
    bool open2 = sl_txnpart_is_open(pt, pid);
    /* The client retries: the decision is pending, nothing more is appended. */
    if (ok && call(b, fd, a, SL_API_END_TXN, 1, 6, &et, &etr, 10000)) end3 = etr.error_code;
    int64_t end_t3 = sl_log_end_offset(pt->log);
    fsync_fails(false);

    if (fd >= 0) close(fd);
    loop_broker_free(b);
    sl_arena_free(a);
    loop_broker_rmdir(dir);
    CHECK(ok);
    CHECK_EQ(add1, 0);
    CHECK_EQ(lso_t0, 0);
    CHECK_EQ(lso_u0, 0);
    CHECK_EQ(end1, 0);
    CHECK_EQ(lso_t1, 3); /* 0-1 records, 2 COMMIT */
    CHECK_EQ(lso_u1, 4); /* 0-2 records, 3 COMMIT */
    CHECK(dur_t1 >= 3);
    CHECK(dur_u1 >= 4);
    CHECK_EQ(add2, 0);
    CHECK_EQ(end2, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    CHECK_EQ(end_t2, 6); /* 3-4 records, 5 ABORT appended */
    CHECK_EQ(lso_t2, 3); /* but not durable: the transaction is not over here */
    CHECK(open2);
    CHECK(end3 != 0); /* still finishing (CONCURRENT_TRANSACTIONS) or not available */
    CHECK_EQ(end_t3, 6);
}

/* ---- the cleaner removes aborted data and markers (issue 16 piece 2) ---- */

/* One clean of p as the compactor runs it (aborted entries below the end, bounded by the LSO),
 * `forget`: and the compactor's finish (the removed ABORT markers' entries go). */
static bool clean_part(sl_partition *p, int64_t now, bool forget, sl_cleaner_result *res) {
    sl_cleaner_config cc;
    sl_cleaner_config_default(&cc);
    cc.delete_retention_ms = 1000;
    sl_cleaner_txn txn = {.stable_end = sl_txnpart_lso(p)};
    sl_cleaner_aborted *ab = NULL;
    if (sl_txnpart_aborted_below(p, INT64_MAX, &ab, &txn.nab)) return false;
    txn.ab = ab;
    sl_cleaner_job *j = NULL;
    memset(res, 0, sizeof *res);
    sl_err e = sl_cleaner_prepare_txn(p->log, &cc, NULL, &txn, now, &j);
    free(ab);
    if (e || !j) return false;
    if (sl_cleaner_commit(j, sl_cleaner_run(j), res)) return false;
    if (forget) sl_txnpart_forget_aborted(p, res->removed_abort_markers, res->nremoved_abort);
    return true;
}

static void small_segments(sl_partition *p) {
    sl_log_config lc = p->log->cfg;
    lc.segment_bytes = 400;
    sl_log_set_config(p->log, &lc);
}

/* Three aborted transactions (data 0, 2, 4; ABORT markers 1, 3, 5) in small segments, then plain
 * records that close their segments. */
static bool three_aborts_closed(sl_partition *p) {
    small_segments(p);
    if (!aborts(p, 0, 3)) return false;
    for (int i = 0; i < 16; i++)
        if (append(p, -1, 0, 0, 1, false) < 0) return false;
    return true;
}

/* three_aborts_closed, then a first clean removes the data and stamps the markers (the entries
 * stay: the markers do); a clean after the horizon removes the markers and reports them, and the
 * compactor's forget drops their entries, from memory and aborted.idx: Fetch's aborted list for
 * the range is empty. */
SL_TEST(txnpart_cleaner_forgets_removed_markers) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    CHECK(three_aborts_closed(p));
    char idx[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    CHECK_EQ(file_size(idx), 96);
    int64_t now = sl_wall_ms();
    sl_cleaner_result res;
    CHECK(clean_part(p, now, true, &res));
    CHECK_EQ(res.aborted_batches_dropped, 3);
    CHECK_EQ(res.markers_stamped, 3);
    CHECK_EQ(res.nremoved_abort, 0);
    CHECK_EQ(sl_txnpart_aborted_count(p), 3);
    sl_cleaner_result_free(&res);
    CHECK(clean_part(p, now + 1000, true, &res));
    CHECK_EQ(res.markers_removed, 3);
    CHECK_EQ(res.nremoved_abort, 3);
    sl_cleaner_result_free(&res);
    CHECK_EQ(sl_txnpart_aborted_count(p), 0);
    CHECK_EQ(file_size(idx), 0);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_txn_aborted *ab;
    CHECK_EQ(sl_txnpart_aborted(p, 0, sl_log_end_offset(p->log), a, &ab), 0);
    sl_arena_free(a);
    CHECK_EQ(sl_txnpart_lso(p), sl_log_end_offset(p->log));
    local_broker_close(dir, &b);
}

/* A crash after the clean's swap and before the compactor's forget: the entries of the removed
 * markers are still in aborted.idx; open finds their markers gone (below the cleaner checkpoint)
 * and drops them, while an entry whose marker is only stamped stays. With txn.ckpt gone too,
 * recovery scans the whole cleaned log: no transactional batch is left without its marker, so
 * the LSO is the log end (no phantom open transaction). */
SL_TEST(txnpart_open_drops_entries_of_cleaned_markers) {
    char dir[64];
    sl_broker b;
    sl_partition *p = open_broker(dir, &b);
    CHECK(p);
    CHECK(three_aborts_closed(p));
    int64_t now = sl_wall_ms();
    sl_cleaner_result res;
    CHECK(clean_part(p, now, false, &res)); /* stamped only */
    sl_cleaner_result_free(&res);
    CHECK_EQ(sl_log_sync(p->log), SL_OK);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_aborted_count(p), 3); /* their markers are still there */
    small_segments(p);
    CHECK(clean_part(p, now + 1000, false, &res)); /* removed; "crash" before the forget */
    CHECK_EQ(res.nremoved_abort, 3);
    sl_cleaner_result_free(&res);
    CHECK_EQ(sl_txnpart_aborted_count(p), 3);
    CHECK_EQ(sl_log_sync(p->log), SL_OK);
    char idx[600], ck[600];
    path_in(&b, "aborted.idx", idx, sizeof idx);
    path_in(&b, "txn.ckpt", ck, sizeof ck);
    CHECK_EQ(file_size(idx), 96);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_aborted_count(p), 0);
    CHECK_EQ(file_size(idx), 0);
    CHECK_EQ(unlink(ck), 0);
    CHECK(reopen(&b));
    p = part0(&b);
    CHECK(p && p->txn);
    CHECK_EQ(sl_txnpart_lso(p), sl_log_end_offset(p->log));
    local_broker_close(dir, &b);
}
