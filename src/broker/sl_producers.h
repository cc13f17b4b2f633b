/* The idempotent producer: producer-id allocation (persisted so ids are never reused) and, per
 * partition, what each producer id last appended (epoch and its last five batches' sequence
 * ranges and offsets), so retries are answered as duplicates and gaps are refused.
 *
 * Per-partition state (sl_pstate) is malloc'd and owned by its sl_partition; it is rebuilt on
 * open from the newest durable snapshot in the partition directory plus a header-only scan of the
 * batches after it. Everything here runs on the broker's loop thread. See docs/idempotence.md. */
#ifndef SL_BROKER_PRODUCERS_H
#define SL_BROKER_PRODUCERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "proto/sl_batch.h"
#include "storage/sl_log.h"

/* Batches remembered per producer per partition: the most a producer keeps in flight. */
#define SL_PSTATE_BATCHES 5
/* Ids reserved on disk per write of the high-water-mark file. */
#define SL_PID_BLOCK 1000

typedef struct sl_pstate sl_pstate;

/* Opens the producer state of the partition whose directory is `dir` and whose (already
 * recovered) log is `log`: loads the newest snapshot at or below the log end (deleting any above
 * it, which a crash made stale), then scans the batch headers after it. Producers seen only in
 * the scan get `now_ms` as their last-append time. Caller owns *out (sl_pstate_close). */
sl_err sl_pstate_open(const char *dir, sl_log *log, int64_t now_ms, sl_pstate **out);
/* Writes a final snapshot if `log` (may be NULL: partition deleted) is durable to its end, then
 * frees. NULL is allowed. */
void sl_pstate_close(sl_pstate *ps, sl_log *log);

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
/* Call after appending to `log`: captures a snapshot when the log rolled a segment, and writes
 * a captured snapshot once the log is durable past its offset (never earlier, so no snapshot on
 * disk can describe batches a crash took away). */
void sl_pstate_after_append(sl_pstate *ps, sl_log *log);
/* Periodic work: drops producers whose last append is `expiration_ms` or more before `now_ms`,
 * captures a snapshot if anything changed, writes it if the log is durable. Returns the number
 * of producers dropped. */
int sl_pstate_tick(sl_pstate *ps, sl_log *log, int64_t now_ms, int64_t expiration_ms);
/* Captures the state now as a snapshot at the log end (replacing one not yet written). */
sl_err sl_pstate_capture(sl_pstate *ps, sl_log *log);

size_t sl_pstate_count(const sl_pstate *ps);
int64_t sl_pstate_max_pid(const sl_pstate *ps); /* -1 when empty */
/* Offset of the newest snapshot written to disk by this instance or loaded at open, or -1. */
int64_t sl_pstate_snapshot_offset(const sl_pstate *ps);
/* Looks a producer up (tests, diagnostics): its epoch, last sequence and number of batches. */
bool sl_pstate_get(const sl_pstate *ps, int64_t pid, int16_t *epoch, int32_t *last_seq,
                   int *nbatches);

/* Kafka's sequence arithmetic: the sequence after `seq` plus `delta`, wrapping at INT32_MAX. */
int32_t sl_seq_add(int32_t seq, int32_t delta);

/* ---- producer ids ---- */
typedef struct sl_pid_alloc sl_pid_alloc;
/* Reads `<dir>/sluice-producer-ids`; ids handed out start at max(file's mark, floor). SL_ECORRUPT
 * when the file exists but cannot be parsed (never guess: a guess could reuse ids). Caller owns
 * *out (sl_pid_alloc_free). */
sl_err sl_pid_alloc_open(const char *dir, int64_t floor, sl_pid_alloc **out);
/* A fresh id. Before handing out an id of a new block, the end of that block is written to the
 * file atomically (so after any crash the next id is above every id ever handed out). */
sl_err sl_pid_alloc_next(sl_pid_alloc *pa, int64_t *out);
/* True when `pid` is below the next id (was or could have been handed out by this broker). */
bool sl_pid_alloc_issued(const sl_pid_alloc *pa, int64_t pid);
void sl_pid_alloc_free(sl_pid_alloc *pa);

/* ---- broker glue ---- */
struct sl_broker;
typedef struct sl_producers sl_producers;
/* Creates the broker's producer-id allocator (ids above every id found in the partitions'
 * state) and starts the expiry/snapshot timer. Call after the topics are open and the loop
 * exists. Caller owns *out; free it with sl_producers_free before the topics and the loop. */
sl_err sl_producers_new(struct sl_broker *b, sl_producers **out, char *err, size_t err_len);
void sl_producers_free(sl_producers *pr);

#endif
