/* Idempotent producer state: Kafka's sequence/epoch rules, duplicates, wrap, expiry, rebuild
 * from the log and from snapshots, producer-id allocation. Each test that touches disk runs in
 * its own mkdtemp directory under /tmp. */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "broker/sl_producers.h"
#include "proto/sl_batch.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_log.h"

enum { OOO = SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER, STALE = SL_KAFKA_INVALID_PRODUCER_EPOCH };

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *tmpdir(void) {
    static char buf[8][64];
    static int n;
    char *t = buf[n++ % 8];
    strcpy(t, "/tmp/sl_producers_XXXXXX");
    return mkdtemp(t);
}

/* A valid batch of `count` records from producer (pid, epoch) starting at sequence `seq`. */
static uint8_t *pbatch(sl_arena *a, int64_t pid, int16_t epoch, int32_t seq, int32_t count,
                       size_t *len) {
    uint8_t *b = sl_batch_build(a, 1000, count, "v", 1, len);
    if (!b) return NULL;
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)pid);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, (uint16_t)epoch);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, (uint32_t)seq);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, *len - SL_BATCH_ATTRIBUTES));
    return b;
}

/* In-memory model of a partition: offsets assigned as the log would. */
typedef struct part {
    sl_pstate *ps;
    sl_log *log; /* NULL: offsets from next_off */
    int64_t next_off;
} part;

/* Produces like the handler: check, then append+record unless duplicate. Returns the error code;
 * *off is the base offset answered. */
static int produce(part *p, sl_arena *a, int64_t pid, int16_t epoch, int32_t seq, int32_t count,
                   int64_t *off, int64_t now) {
    size_t len;
    uint8_t *b = pbatch(a, pid, epoch, seq, count, &len);
    int64_t dup = -1;
    int16_t ec = sl_pstate_check_set(p->ps, b, len, &dup);
    if (ec) return ec;
    if (dup >= 0) {
        *off = dup;
        return 0;
    }
    sl_batch_info bi;
    if (!sl_batch_parse(b, len, &bi)) return -100;
    int64_t base = p->next_off;
    if (p->log) {
        if (sl_log_append(p->log, b, len, bi.record_count, bi.max_timestamp, &base)) return -101;
    } else {
        p->next_off += count;
    }
    if (sl_pstate_record(p->ps, &bi, base, now)) return -102;
    if (p->log) sl_pstate_after_append(p->ps, p->log);
    *off = base;
    return 0;
}

static sl_log *open_log(const char *dir, int64_t seg_bytes) {
    sl_log_config c;
    sl_log_config_default(&c);
    c.segment_bytes = seg_bytes;
    c.retention_ms = -1;
    sl_log *log = NULL;
    return sl_log_open(dir, &c, &log) ? NULL : log;
}

/* A state over an empty log in a fresh directory (pstate needs one to open). */
static part mem_part(char **dir_out) {
    part p = {0};
    char *dir = tmpdir();
    sl_log *log = open_log(dir, 1 << 20);
    if (log && sl_pstate_open(dir, log, 0, &p.ps)) p.ps = NULL;
    sl_log_close(log);
    *dir_out = dir;
    return p;
}

static int count_snapshots(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".snapshot") && de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

SL_TEST(producers_duplicate_gap_and_stale_epoch) {
    char *dir;
    part p = mem_part(&dir);
    CHECK(p.ps != NULL);
    sl_arena *a = sl_arena_new(1 << 16);
    int64_t off = -1, off2 = -1;
    CHECK_EQ(produce(&p, a, 7, 0, 0, 3, &off, 1), 0); /* seq 0..2 at offsets 0..2 */
    CHECK_EQ(off, 0);
    CHECK_EQ(produce(&p, a, 7, 0, 3, 2, &off, 1), 0); /* seq 3..4 at 3..4 */
    CHECK_EQ(off, 3);
    /* Retries of either batch: the original offsets, nothing appended. */
    CHECK_EQ(produce(&p, a, 7, 0, 0, 3, &off2, 1), 0);
    CHECK_EQ(off2, 0);
    CHECK_EQ(produce(&p, a, 7, 0, 3, 2, &off2, 1), 0);
    CHECK_EQ(off2, 3);
    CHECK_EQ(p.next_off, 5);
    /* A gap, a sequence already used but with another range, a stale epoch. */
    CHECK_EQ(produce(&p, a, 7, 0, 6, 1, &off2, 1), OOO);
    CHECK_EQ(produce(&p, a, 7, 0, 3, 1, &off2, 1), OOO);
    CHECK_EQ(produce(&p, a, 7, 0, 4, 1, &off2, 1), OOO);
    /* Other producers are independent. */
    CHECK_EQ(produce(&p, a, 8, 0, 0, 1, &off, 1), 0);
    CHECK_EQ(off, 5);
    /* Epoch bump: must restart at 0; afterwards the old epoch is fenced, even for retries. */
    CHECK_EQ(produce(&p, a, 7, 1, 5, 1, &off2, 1), OOO);
    CHECK_EQ(produce(&p, a, 7, 1, 0, 1, &off, 1), 0);
    CHECK_EQ(off, 6);
    CHECK_EQ(produce(&p, a, 7, 0, 5, 1, &off2, 1), STALE);
    CHECK_EQ(produce(&p, a, 7, 0, 0, 3, &off2, 1), STALE);
    CHECK_EQ(produce(&p, a, 7, 1, 1, 1, &off, 1), 0);
    int16_t ep;
    int32_t last;
    int nb;
    CHECK(sl_pstate_get(p.ps, 7, &ep, &last, &nb));
    CHECK_EQ(ep, 1);
    CHECK_EQ(last, 1);
    CHECK_EQ(nb, 2);
    /* Invalid producer fields in a batch that has a producer id. */
    CHECK_EQ(produce(&p, a, 9, 0, -1, 1, &off2, 1), SL_KAFKA_INVALID_RECORD);
    CHECK_EQ(produce(&p, a, 9, -1, 0, 1, &off2, 1), SL_KAFKA_INVALID_RECORD);
    /* No producer id: never checked. */
    CHECK_EQ(produce(&p, a, -1, -1, -1, 1, &off, 1), 0);
    CHECK_EQ(produce(&p, a, -1, -1, -1, 1, &off2, 1), 0);
    CHECK(off2 == off + 1);
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    rm_rf(dir);
}

SL_TEST(producers_unknown_producer_any_sequence_and_only_last_five) {
    char *dir;
    part p = mem_part(&dir);
    CHECK(p.ps != NULL);
    sl_arena *a = sl_arena_new(1 << 16);
    int64_t off, first = -1;
    /* Kafka >= 2.5: state lost (retention, expiry) so any sequence starts a known producer. */
    CHECK_EQ(produce(&p, a, 3, 2, 1000, 10, &first, 1), 0);
    for (int i = 1; i <= 5; i++) CHECK_EQ(produce(&p, a, 3, 2, 1000 + 10 * i, 10, &off, 1), 0);
    /* Six batches appended: the first is no longer remembered, so its retry is out of order. */
    CHECK_EQ(produce(&p, a, 3, 2, 1000, 10, &off, 1), OOO);
    CHECK_EQ(produce(&p, a, 3, 2, 1010, 10, &off, 1), 0);
    CHECK_EQ(off, first + 10);
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    rm_rf(dir);
}

SL_TEST(producers_sequence_wraps_at_int32_max) {
    CHECK_EQ(sl_seq_add(5, 3), 8);
    CHECK_EQ(sl_seq_add(INT32_MAX, 1), 0);
    CHECK_EQ(sl_seq_add(INT32_MAX - 1, 3), 1);
    char *dir;
    part p = mem_part(&dir);
    CHECK(p.ps != NULL);
    sl_arena *a = sl_arena_new(1 << 16);
    int64_t off, wrap_off;
    CHECK_EQ(produce(&p, a, 1, 0, INT32_MAX - 4, 3, &off, 1), 0);      /* ..MAX-2 */
    CHECK_EQ(produce(&p, a, 1, 0, INT32_MAX - 1, 4, &wrap_off, 1), 0); /* MAX-1, MAX, 0, 1 */
    int32_t last;
    CHECK(sl_pstate_get(p.ps, 1, NULL, &last, NULL));
    CHECK_EQ(last, 1);
    CHECK_EQ(produce(&p, a, 1, 0, INT32_MAX - 1, 4, &off, 1), 0); /* retry across the wrap */
    CHECK_EQ(off, wrap_off);
    CHECK_EQ(produce(&p, a, 1, 0, 3, 1, &off, 1), OOO);
    CHECK_EQ(produce(&p, a, 1, 0, 2, 1, &off, 1), 0);
    /* A batch ending exactly at INT32_MAX is followed by 0. */
    CHECK_EQ(produce(&p, a, 2, 0, INT32_MAX - 1, 2, &off, 1), 0);
    CHECK_EQ(produce(&p, a, 2, 0, 0, 1, &off, 1), 0);
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    rm_rf(dir);
}

SL_TEST(producers_record_set_with_several_batches) {
    char *dir;
    part p = mem_part(&dir);
    CHECK(p.ps != NULL);
    sl_arena *a = sl_arena_new(1 << 16);
    size_t l1, l2, l3;
    uint8_t *b1 = pbatch(a, 4, 0, 0, 2, &l1), *b2 = pbatch(a, 4, 0, 2, 2, &l2),
            *b3 = pbatch(a, 4, 0, 5, 1, &l3);
    uint8_t *set = sl_arena_alloc(a, l1 + l2 + l3);
    /* A new producer may start anywhere, gaps included (nothing known to check against). */
    memcpy(set, b1, l1);
    memcpy(set + l1, b3, l3);
    int64_t d0;
    CHECK_EQ(sl_pstate_check_set(p.ps, set, l1 + l3, &d0), 0);
    int64_t off;
    CHECK_EQ(produce(&p, a, 4, 0, 0, 1, &off, 1), 0); /* now known, last sequence 0 */
    b1 = pbatch(a, 4, 0, 1, 1, &l1);
    b2 = pbatch(a, 4, 0, 2, 2, &l2);
    memcpy(set, b1, l1);
    memcpy(set + l1, b2, l2);
    int64_t dup;
    CHECK_EQ(sl_pstate_check_set(p.ps, set, l1 + l2, &dup), 0); /* consecutive in one set */
    CHECK_EQ(dup, -1);
    memcpy(set + l1, b3, l3);
    CHECK_EQ(sl_pstate_check_set(p.ps, set, l1 + l3, &dup), OOO); /* gap inside the set */
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    rm_rf(dir);
}

SL_TEST(producers_expire_after_inactivity) {
    char *dir;
    part p = mem_part(&dir);
    CHECK(p.ps != NULL);
    sl_arena *a = sl_arena_new(1 << 16);
    int64_t off;
    CHECK_EQ(produce(&p, a, 1, 0, 0, 1, &off, 1000), 0);
    CHECK_EQ(produce(&p, a, 2, 0, 0, 1, &off, 5000), 0);
    CHECK_EQ(sl_pstate_tick(p.ps, NULL, 1000 + 9999, 10000), 0);
    CHECK_EQ(sl_pstate_tick(p.ps, NULL, 1000 + 10000, 10000), 1); /* producer 1 only */
    CHECK(!sl_pstate_get(p.ps, 1, NULL, NULL, NULL));
    CHECK(sl_pstate_get(p.ps, 2, NULL, NULL, NULL));
    CHECK_EQ(sl_pstate_count(p.ps), 1);
    /* Forgotten: its retry is no longer recognised, and any sequence is accepted again. */
    CHECK_EQ(produce(&p, a, 1, 0, 7, 1, &off, 20000), 0);
    CHECK_EQ(sl_pstate_tick(p.ps, NULL, 25000, 10000), 1); /* producer 2 */
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    rm_rf(dir);
}

SL_TEST(producers_rebuilt_from_log_after_restart) {
    char *dir = tmpdir();
    sl_log *log = open_log(dir, 1 << 20);
    CHECK(log != NULL);
    part p = {.log = log};
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    sl_arena *a = sl_arena_new(1 << 16);
    int64_t offs[8], off;
    for (int i = 0; i < 8; i++) CHECK_EQ(produce(&p, a, 11, 0, 3 * i, 3, &offs[i], 1), 0);
    CHECK_EQ(produce(&p, a, 12, 4, 0, 1, &off, 1), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    /* A crash: no snapshot is written (the state is simply dropped). */
    sl_pstate_close(p.ps, NULL);
    sl_log_close(log);
    CHECK_EQ(count_snapshots(dir), 0);
    p.log = log = open_log(dir, 1 << 20);
    CHECK(log != NULL);
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    CHECK_EQ(sl_pstate_count(p.ps), 2);
    CHECK_EQ(sl_pstate_max_pid(p.ps), 12);
    int64_t end = sl_log_end_offset(log);
    /* Retries of the last five batches are duplicates with their original offsets. */
    for (int i = 3; i < 8; i++) {
        CHECK_EQ(produce(&p, a, 11, 0, 3 * i, 3, &off, 1), 0);
        CHECK_EQ(off, offs[i]);
    }
    CHECK_EQ(produce(&p, a, 11, 0, 3 * 2, 3, &off, 1), OOO);
    CHECK_EQ(produce(&p, a, 12, 3, 1, 1, &off, 1), STALE);
    CHECK_EQ(sl_log_end_offset(log), end);
    CHECK_EQ(produce(&p, a, 11, 0, 24, 1, &off, 1), 0);
    CHECK_EQ(off, end);
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    sl_log_close(log);
    rm_rf(dir);
}

SL_TEST(producers_snapshots_written_when_durable_and_used_on_open) {
    char *dir = tmpdir();
    sl_log *log = open_log(dir, 4096); /* small segments: rolls capture snapshots */
    CHECK(log != NULL);
    part p = {.log = log};
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    sl_arena *a = sl_arena_new(1 << 20);
    int64_t off, last_off = -1;
    int32_t seq = 0;
    for (int i = 0; i < 200; i++, seq += 2)
        CHECK_EQ(produce(&p, a, 21, 0, seq, 2, &last_off, 1), 0);
    CHECK(sl_log_segment_count(log) > 2);
    /* Captured at rolls, but nothing is durable yet: nothing may be on disk. */
    CHECK_EQ(count_snapshots(dir), 0);
    CHECK_EQ(sl_pstate_snapshot_offset(p.ps), -1);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    CHECK_EQ(produce(&p, a, 21, 0, seq, 2, &off, 1), 0); /* the next append writes it */
    seq += 2;
    int64_t snap = sl_pstate_snapshot_offset(p.ps);
    CHECK(snap > 0);
    CHECK(count_snapshots(dir) >= 1);
    for (int i = 0; i < 5; i++, seq += 2) CHECK_EQ(produce(&p, a, 21, 0, seq, 2, &last_off, 1), 0);
    CHECK_EQ(sl_log_sync(log), SL_OK);
    /* Crash without a final snapshot: rebuilt from the snapshot plus the batches after it. */
    sl_pstate_close(p.ps, NULL);
    sl_log_close(log);
    p.log = log = open_log(dir, 4096);
    CHECK(log != NULL);
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    CHECK_EQ(sl_pstate_snapshot_offset(p.ps), snap);
    CHECK_EQ(produce(&p, a, 21, 0, seq - 2, 2, &off, 1), 0);
    CHECK_EQ(off, last_off);
    /* A clean close snapshots at the end; a snapshot beyond the log end is discarded on open. */
    CHECK_EQ(sl_log_sync(log), SL_OK);
    int64_t end = sl_log_end_offset(log);
    sl_pstate_close(p.ps, log);
    sl_log_close(log);
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/%020lld.snapshot", dir, (long long)end);
    snprintf(to, sizeof to, "%s/%020lld.snapshot", dir, (long long)end + 1000);
    CHECK(access(from, F_OK) == 0);
    CHECK(rename(from, to) == 0);
    p.log = log = open_log(dir, 4096);
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    CHECK(access(to, F_OK) != 0);
    CHECK(sl_pstate_snapshot_offset(p.ps) < end);
    CHECK_EQ(produce(&p, a, 21, 0, seq - 2, 2, &off, 1), 0);
    CHECK_EQ(off, last_off);
    /* A damaged snapshot is ignored: the older one or a full scan takes over. */
    sl_pstate_close(p.ps, NULL);
    sl_log_close(log);
    snprintf(from, sizeof from, "%s/%020lld.snapshot", dir, (long long)snap);
    FILE *f = fopen(from, "r+b");
    if (f) {
        fseek(f, 30, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
    }
    p.log = log = open_log(dir, 4096);
    CHECK_EQ(sl_pstate_open(dir, log, 0, &p.ps), SL_OK);
    CHECK_EQ(produce(&p, a, 21, 0, seq - 2, 2, &off, 1), 0);
    CHECK_EQ(off, last_off);
    sl_arena_free(a);
    sl_pstate_close(p.ps, NULL);
    sl_log_close(log);
    rm_rf(dir);
}

SL_TEST(producers_ids_never_reused_across_restarts) {
    char *dir = tmpdir();
    sl_pid_alloc *pa;
    int64_t id;
    CHECK_EQ(sl_pid_alloc_open(dir, 0, &pa), SL_OK);
    CHECK_EQ(sl_pid_alloc_next(pa, &id), SL_OK);
    CHECK_EQ(id, 0);
    CHECK_EQ(sl_pid_alloc_next(pa, &id), SL_OK);
    CHECK_EQ(id, 1);
    CHECK(sl_pid_alloc_issued(pa, 1));
    CHECK(!sl_pid_alloc_issued(pa, 2));
    sl_pid_alloc_free(pa); /* like a crash: the rest of the block is skipped */
    CHECK_EQ(sl_pid_alloc_open(dir, 0, &pa), SL_OK);
    CHECK_EQ(sl_pid_alloc_next(pa, &id), SL_OK);
    CHECK_EQ(id, SL_PID_BLOCK);
    sl_pid_alloc_free(pa);
    /* Ids found in partition state raise the floor (the file lost or older). */
    CHECK_EQ(sl_pid_alloc_open(dir, 5000, &pa), SL_OK);
    CHECK_EQ(sl_pid_alloc_next(pa, &id), SL_OK);
    CHECK_EQ(id, 5000);
    sl_pid_alloc_free(pa);
    /* A damaged file refuses to start rather than guess. */
    char path[600];
    snprintf(path, sizeof path, "%s/sluice-producer-ids", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("garbage\n", f);
    fclose(f);
    CHECK_EQ(sl_pid_alloc_open(dir, 0, &pa), SL_ECORRUPT);
    rm_rf(dir);
}
