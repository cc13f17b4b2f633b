/* Appending to a partition the way the produce path does (log append, producer state,
 * sl_txnpart_on_append, wake-ups), so a test can set up exactly the transactional, idempotent
 * or plain batches it needs. Shared by test_txnpart.c and test_txn_apis.c. */
#ifndef SL_TESTS_TXN_APPEND_H
#define SL_TESTS_TXN_APPEND_H
#include "base/sl_arena.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "proto/sl_records.h"
#include "storage/sl_batch_build.h"

/* Appends `count` records: a transactional batch of pid (txn), an idempotent one (pid >= 0,
 * !txn) or a plain one (pid -1). Returns the base offset or -1. */
static inline int64_t append(sl_partition *p, int64_t pid, int16_t epoch, int32_t seq,
                             int32_t count, bool txn) {
    sl_arena *a = sl_arena_new(4096);
    size_t len = 0;
    uint8_t *batch = a ? sl_batch_build(a, 1000, count, "v", 1, &len) : NULL;
    int64_t base = -1;
    sl_batch_info bi;
    if (batch && sl_batch_parse(batch, len, &bi)) {
        bi.producer_id = pid;
        bi.producer_epoch = pid >= 0 ? epoch : -1;
        bi.base_sequence = pid >= 0 ? seq : -1;
        if (txn) bi.attributes |= 0x10;
        sl_batch_reseal_like(batch, len, &bi);
        if (sl_log_append(p->log, batch, len, count, bi.max_timestamp, &base)) base = -1;
        if (base >= 0) {
            (void)sl_pstate_record(p->pstate, &bi, base, sl_wall_ms());
            if (txn) sl_txnpart_on_append(p, pid, epoch, base, base + count - 1);
            sl_storage_local_notify(p, (int64_t)len);
        }
    }
    sl_arena_free(a);
    return base;
}

#endif
