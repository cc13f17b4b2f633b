/* Idempotent-producer state of one partition, pure: what each producer id last appended (epoch
 * and its last five batches' sequence ranges and offsets), the sequence/epoch rules that answer
 * retries as duplicates and refuse gaps, and expiry. No I/O: snapshots, the rebuild after a
 * restart and producer-id allocation are in sl_pstore.h, the InitProducerId handler in
 * src/broker/sl_h_producer_id.c (the split of src/group: state machine, store, handlers).
 * Rules follow Kafka 3.x's ProducerStateManager/ProducerAppendInfo; docs/idempotence.md.
 * Loop thread only. */
#ifndef SL_PRODUCER_PSTATE_H
#define SL_PRODUCER_PSTATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "proto/sl_batch.h"

/* Batches remembered per producer per partition: the most a producer keeps in flight. */
#define SL_PSTATE_BATCHES 5

typedef struct sl_pstate sl_pstate;

typedef struct sl_pstate_batch {
    int32_t first_seq, last_seq;
    int64_t base_offset;
    int32_t last_offset_delta;
} sl_pstate_batch;

/* One producer id's entry, as snapshots store it. */
typedef struct sl_pstate_producer {
    int64_t pid;
    int64_t last_ms; /* broker wall time of the last append (expiry) */
    int16_t epoch;
    uint8_t n; /* batches held, oldest first */
    sl_pstate_batch b[SL_PSTATE_BATCHES];
} sl_pstate_producer;

/* An empty state. Caller owns it: sl_pstate_free, or sl_pstate_close for one opened with
 * sl_pstate_open. NULL when out of memory. */
sl_pstate *sl_pstate_new(void);
/* Frees the table; the store attached by sl_pstore.c must have been detached (sl_pstate_close
 * does both). NULL is allowed. */
void sl_pstate_free(sl_pstate *ps);

/* Checks the producer fields of every batch of one produce partition's record set (already
 * validated by sl_batch_validate_set) against the state, as Kafka's ProducerAppendInfo does.
 * Returns 0 when the set may be appended; *dup_base = -1 then. Returns 0 with *dup_base >= 0
 * when a batch repeats one of the last five a producer appended: nothing must be appended and
 * the answer is that original base offset. Otherwise a Kafka error code (INVALID_RECORD,
 * SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER, SL_KAFKA_INVALID_PRODUCER_EPOCH). Borrows `data`. */
int16_t sl_pstate_check_set(const sl_pstate *ps, const uint8_t *data, size_t len,
                            int64_t *dup_base);
/* Records a batch appended at `base_offset` (no-op for batches without a producer id). */
sl_err sl_pstate_record(sl_pstate *ps, const sl_batch_info *bi, int64_t base_offset,
                        int64_t now_ms);
/* Drops producers whose last append is `expiration_ms` or more before `now_ms`. Returns the
 * number dropped. */
int sl_pstate_expire(sl_pstate *ps, int64_t now_ms, int64_t expiration_ms);

size_t sl_pstate_count(const sl_pstate *ps);
int64_t sl_pstate_max_pid(const sl_pstate *ps); /* -1 when empty */
/* Looks a producer up (tests, diagnostics): its epoch, last sequence and number of batches. */
bool sl_pstate_get(const sl_pstate *ps, int64_t pid, int16_t *epoch, int32_t *last_seq,
                   int *nbatches);

/* Kafka's sequence arithmetic: the sequence after `seq` plus `delta`, wrapping at INT32_MAX. */
int32_t sl_seq_add(int32_t seq, int32_t delta);

/* ---- for the store (snapshots) ---- */

/* Calls fn for every producer (order unspecified but stable while the state is unchanged). The
 * entry is borrowed for the call. */
void sl_pstate_foreach(const sl_pstate *ps, void (*fn)(void *ctx, const sl_pstate_producer *p),
                       void *ctx);
/* Adds a producer as a snapshot describes it. SL_ECORRUPT when the entry is invalid (negative
 * pid or epoch, n outside 1..SL_PSTATE_BATCHES) or the pid is already present. Copies *p. */
sl_err sl_pstate_restore(sl_pstate *ps, const sl_pstate_producer *p);
/* Forgets every producer (a damaged snapshot is discarded this way). */
void sl_pstate_clear(sl_pstate *ps);
/* True when the state changed since it was last marked unchanged (or since creation). */
bool sl_pstate_changed(const sl_pstate *ps);
void sl_pstate_mark_changed(sl_pstate *ps, bool changed);

/* The store's bookkeeping (snapshot files, pending snapshot) travels with the state so callers
 * hold one pointer per partition; the pure functions never look at it. Borrowed pointer. */
struct sl_pstore;
struct sl_pstore *sl_pstate_store(const sl_pstate *ps);
void sl_pstate_set_store(sl_pstate *ps, struct sl_pstore *st);

#endif
