/* The pure idempotent-producer state (src/producer/sl_pstate.h) on its own: no directory, no
 * log, no snapshot file. Shows the rules work without the store, and that what the store reads
 * back through sl_pstate_foreach/sl_pstate_restore is the same state. */
#include <stdint.h>
#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "producer/sl_pstate.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"

static uint8_t *idem_batch(sl_arena *a, int64_t pid, int16_t epoch, int32_t seq, int32_t count,
                           size_t *len, sl_batch_info *bi) {
    uint8_t *b = sl_batch_build(a, 1000, count, "v", 1, len);
    if (!b) return NULL;
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)pid);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, (uint16_t)epoch);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, (uint32_t)seq);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, *len - SL_BATCH_ATTRIBUTES));
    if (!sl_batch_parse(b, *len, bi)) return NULL;
    return b;
}

SL_TEST(pstate_pure_rules_without_store) {
    sl_arena *a = sl_arena_new(1 << 16);
    sl_pstate *ps = sl_pstate_new();
    CHECK(ps);
    CHECK(sl_pstate_store(ps) == NULL);
    CHECK(!sl_pstate_changed(ps));
    CHECK_EQ(sl_pstate_max_pid(ps), -1);
    size_t len;
    sl_batch_info bi;
    int64_t dup;
    uint8_t *b = idem_batch(a, 9, 0, 0, 3, &len, &bi);
    CHECK(b);
    CHECK_EQ(sl_pstate_check_set(ps, b, len, &dup), 0);
    CHECK_EQ(dup, -1);
    CHECK_EQ(sl_pstate_record(ps, &bi, 100, 5000), SL_OK);
    CHECK(sl_pstate_changed(ps));
    /* The same batch again is a duplicate answered with its first offset. */
    CHECK_EQ(sl_pstate_check_set(ps, b, len, &dup), 0);
    CHECK_EQ(dup, 100);
    /* A gap and a stale epoch are refused. */
    b = idem_batch(a, 9, 0, 4, 1, &len, &bi);
    CHECK_EQ(sl_pstate_check_set(ps, b, len, &dup), SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    sl_pstate_mark_changed(ps, false);
    b = idem_batch(a, 9, 1, 0, 1, &len, &bi);
    CHECK_EQ(sl_pstate_check_set(ps, b, len, &dup), 0);
    CHECK_EQ(sl_pstate_record(ps, &bi, 103, 6000), SL_OK);
    b = idem_batch(a, 9, 0, 3, 1, &len, &bi);
    CHECK_EQ(sl_pstate_check_set(ps, b, len, &dup), SL_KAFKA_INVALID_PRODUCER_EPOCH);
    int16_t ep;
    int32_t last;
    int nb;
    CHECK(sl_pstate_get(ps, 9, &ep, &last, &nb));
    CHECK_EQ(ep, 1);
    CHECK_EQ(last, 0);
    CHECK_EQ(nb, 1);
    /* Expiry is pure too, and marks the state changed. */
    sl_pstate_mark_changed(ps, false);
    CHECK_EQ(sl_pstate_expire(ps, 6000 + 999, 1000), 0);
    CHECK(!sl_pstate_changed(ps));
    CHECK_EQ(sl_pstate_expire(ps, 6000 + 1000, 1000), 1);
    CHECK(sl_pstate_changed(ps));
    CHECK_EQ(sl_pstate_count(ps), 0);
    sl_pstate_free(ps);
    sl_arena_free(a);
}

static void copy_out(void *ctx, const sl_pstate_producer *p) {
    sl_pstate *dst = ctx;
    (void)sl_pstate_restore(dst, p);
}

SL_TEST(pstate_foreach_restore_roundtrip) {
    sl_arena *a = sl_arena_new(1 << 16);
    sl_pstate *src = sl_pstate_new(), *dst = sl_pstate_new();
    CHECK(src && dst);
    /* Enough producers to grow the table, each with more batches than are kept. */
    for (int64_t pid = 0; pid < 40; pid++)
        for (int32_t i = 0; i < SL_PSTATE_BATCHES + 2; i++) {
            size_t len;
            sl_batch_info bi;
            CHECK(idem_batch(a, pid, 2, i * 2, 2, &len, &bi));
            CHECK_EQ(sl_pstate_record(src, &bi, pid * 1000 + i * 2, 77), SL_OK);
        }
    sl_pstate_foreach(src, copy_out, dst);
    CHECK_EQ(sl_pstate_count(dst), 40);
    CHECK_EQ(sl_pstate_max_pid(dst), 39);
    CHECK(!sl_pstate_changed(dst)); /* restoring is loading, not a change */
    for (int64_t pid = 0; pid < 40; pid++) {
        int16_t e1, e2;
        int32_t l1, l2;
        int n1, n2;
        CHECK(sl_pstate_get(src, pid, &e1, &l1, &n1));
        CHECK(sl_pstate_get(dst, pid, &e2, &l2, &n2));
        CHECK_EQ(e1, e2);
        CHECK_EQ(l1, l2);
        CHECK_EQ(n2, SL_PSTATE_BATCHES);
        CHECK_EQ(n1, n2);
    }
    /* Invalid or duplicate entries are refused. */
    sl_pstate_producer p = {.pid = 5, .epoch = 0, .n = 1};
    CHECK_EQ(sl_pstate_restore(dst, &p), SL_ECORRUPT); /* already there */
    p.pid = 100;
    p.n = 0;
    CHECK_EQ(sl_pstate_restore(dst, &p), SL_ECORRUPT);
    p.n = SL_PSTATE_BATCHES + 1;
    CHECK_EQ(sl_pstate_restore(dst, &p), SL_ECORRUPT);
    p.n = 1;
    p.epoch = -1;
    CHECK_EQ(sl_pstate_restore(dst, &p), SL_ECORRUPT);
    p.epoch = 0;
    p.pid = -1;
    CHECK_EQ(sl_pstate_restore(dst, &p), SL_ECORRUPT);
    sl_pstate_clear(dst);
    CHECK_EQ(sl_pstate_count(dst), 0);
    CHECK_EQ(sl_pstate_max_pid(dst), -1);
    sl_pstate_free(src);
    sl_pstate_free(dst);
    sl_arena_free(a);
}
