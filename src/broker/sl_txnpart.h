/* Per-partition transaction state (issue 16; docs/transactions.md): which producers have a
 * transaction open on this partition (from their first transactional batch to its marker), the
 * last stable offset (LSO: the first offset of the oldest open transaction, else the high
 * watermark), and the aborted-transactions index that read_committed fetches return (KIP-98).
 *
 * Split: the coordinator (src/txn/sl_txn.h, wired in src/broker/sl_h_txn.c) decides commit or
 * abort and calls sl_txnpart_write_marker on every partition of the transaction; the produce
 * path (sl_storage_local.c) reports each appended transactional batch; Fetch and ListOffsets
 * read the LSO and the index. The state is owned by the partition (sl_partition.txn), rebuilt at
 * open from what is on disk, so a kill -9 at any point leaves it consistent with the log.
 *
 * Everything here runs on the broker's loop thread. */
#ifndef SL_BROKER_TXNPART_H
#define SL_BROKER_TXNPART_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"
#include "storage/sl_cleaner.h"

struct sl_partition;
typedef struct sl_txnpart sl_txnpart;

/* Opens the state of partition `p` (its log open): the aborted index file in the partition's
 * directory and the open transactions found in the log after the last marker of each producer.
 * SL_OK: p->txn is set (owned by p; sl_txnpart_free). */
sl_err sl_txnpart_open(struct sl_partition *p);
void sl_txnpart_free(sl_txnpart *t);

/* The produce path, after a transactional batch (attributes bit 4, not a control batch) of
 * producer pid/epoch was appended at [base_offset, last_offset]: opens pid's transaction here if
 * it had none. */
void sl_txnpart_on_append(struct sl_partition *p, int64_t pid, int16_t epoch, int64_t base_offset,
                          int64_t last_offset);

/* True when pid has a transaction open on p (the produce path refuses a transactional batch for
 * a partition the coordinator did not add; this answers the partition side). */
bool sl_txnpart_is_open(const struct sl_partition *p, int64_t pid);
/* The first offset of pid's open transaction on p, -1 when none is open (DescribeProducers). */
int64_t sl_txnpart_open_first(const struct sl_partition *p, int64_t pid);

/* Appends the control batch ending pid's transaction (COMMIT or ABORT, with the coordinator's
 * epoch) and makes it durable before returning; pid's open transaction here ends; an abort adds
 * (pid, first offset) to the aborted index (durable too). Idempotent: a marker for a producer
 * with nothing open is still written (harmless, as Kafka), so recovery may repeat markers.
 * SL_OK or a storage error (the coordinator retries: the decision is already durable).
 * A marker appended whose sync failed is remembered: the transaction stays open here (the LSO
 * waits) and a retry of the same (pid, epoch, type) only syncs again, never appends or indexes
 * it twice. After a failed fsync the log refuses writes until a restart (sl_log_sync), so the
 * retries fail until then; the failure is logged at ERROR once per partition. */
sl_err sl_txnpart_write_marker(struct sl_partition *p, int64_t pid, int16_t epoch, bool commit,
                               int32_t coordinator_epoch);

/* The same in two halves, so the sync need not run on the loop: append_marker appends the
 * marker (and indexes an abort) without syncing; once p's log was synced past it (for example
 * by sl_flusher_request, whose callback runs on the loop), markers_synced(p, the sync's result)
 * ends the transactions whose markers are durable now, or reports the failure as above. A
 * marker already appended and not yet synced is not appended again: SL_OK. Until the sync the
 * transaction stays open here (the LSO waits). The caller keeps p valid across the sync (a hold
 * on its topic); a partition deleted meanwhile (no log) answers SL_ESTATE. */
sl_err sl_txnpart_append_marker(struct sl_partition *p, int64_t pid, int16_t epoch, bool commit,
                                int32_t coordinator_epoch);
sl_err sl_txnpart_markers_synced(struct sl_partition *p, sl_err result);

/* True when a marker write on p failed and was logged at ERROR (a marker waits for its sync,
 * or the log refuses writes): a caller retrying need not log every attempt again. */
bool sl_txnpart_failing(const struct sl_partition *p);

/* The aborted entries p holds (in memory and in aborted.idx once written). */
size_t sl_txnpart_aborted_count(const struct sl_partition *p);

/* After the log start of p moved (retention deleted segments, DeleteRecords): drops the aborted
 * entries whose marker is now below it, from memory and from aborted.idx (the partition
 * directory is synced first, so the segments' removal is durable before the entries'). A
 * failure to rewrite the file is warned; the next open drops them. */
void sl_txnpart_log_start_moved(struct sl_partition *p);

/* For a cleaner job (which outlives the call): a malloc'd copy (*out, free()) of the aborted
 * entries whose first offset is below `to`, in marker order. *n = 0 and *out = NULL when none. */
sl_err sl_txnpart_aborted_below(const struct sl_partition *p, int64_t to, sl_cleaner_aborted **out,
                                size_t *n);

/* A clean removed these ABORT markers (ascending offsets; their data was removed by the same or
 * an earlier clean): drops their entries, which must not outlive their markers (a read_committed
 * fetch would skip the producer's later committed data looking for an abort marker that is
 * gone), and rewrites aborted.idx (atomic, durable). A failed rewrite is warned: open drops the
 * entries of markers that are gone (sl_txnpart_open). */
void sl_txnpart_forget_aborted(struct sl_partition *p, const int64_t *marker_offsets, size_t n);

/* The last stable offset of p. */
int64_t sl_txnpart_lso(const struct sl_partition *p);

typedef struct sl_txn_aborted {
    int64_t producer_id;
    int64_t first_offset;
} sl_txn_aborted;

/* The aborted transactions whose data may lie in [from, to) (first_offset < to and their abort
 * marker at or after `from`), for Fetch's aborted_transactions; *out in arena `a`. Returns the
 * count, or -1 (out of memory). */
int sl_txnpart_aborted(const struct sl_partition *p, int64_t from, int64_t to, sl_arena *a,
                       sl_txn_aborted **out);

#endif
