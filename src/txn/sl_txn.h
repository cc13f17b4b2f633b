/* The transaction coordinator's state machine (issue 16, KIP-98 semantics, one node) over its
 * durable log (sl_txnlog.h). Pure of the network: the request handlers (not wired yet) decode a
 * request, call one function here and encode its answer; marker writing is theirs too.
 *
 * Every change is appended to the log and fdatasync()ed BEFORE the in-memory state changes and
 * before the function returns, so an answer never reports a state a crash could lose. When the
 * log fails, the state is left as it was and the function returns COORDINATOR_NOT_AVAILABLE
 * (retriable), as does every later change until the coordinator is reopened (sl_txnlog_append).
 *
 * States and transitions are Kafka's (TransactionMetadata.validPreviousStates):
 *   Empty          <- Empty, CompleteCommit, CompleteAbort           (InitProducerId)
 *   Ongoing        <- Empty, Ongoing, CompleteCommit, CompleteAbort  (AddPartitions/AddOffsets)
 *   PrepareCommit  <- Ongoing                                        (EndTxn commit)
 *   PrepareAbort   <- Ongoing                          (EndTxn abort, fence at init, timeout)
 *   CompleteCommit <- PrepareCommit, CompleteAbort <- PrepareAbort   (sl_txn_complete)
 *   Dead           <- Empty, CompleteCommit, CompleteAbort           (id expiry; forgotten)
 * A Prepare* state is the durable decision: the caller then writes a marker (commit or abort,
 * the job's producer id and epoch) to every partition of the job and a marker for every group's
 * pending offsets, and calls sl_txn_complete. Markers are idempotent, so after a crash the jobs
 * of sl_txn_pending are simply written again.
 *
 * Fencing answers PRODUCER_FENCED; a handler answering a version that predates that code
 * (InitProducerId < 4, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn < 2, TxnOffsetCommit < 3)
 * sends INVALID_PRODUCER_EPOCH instead, as Kafka does. Loop thread only. */
#ifndef SL_TXN_TXN_H
#define SL_TXN_TXN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_err.h"
#include "txn/sl_txnlog.h"

typedef struct sl_txn sl_txn;

/* Hands out a producer id never handed out before (the broker's sl_pid_alloc_next). */
typedef sl_err (*sl_txn_pid_fn)(void *ctx, int64_t *pid);

typedef struct sl_txn_config {
    int32_t max_timeout_ms;      /* transaction.max.timeout.ms; 0: 900000 */
    int64_t id_expiration_ms;    /* transactional.id.expiration.ms; 0: 604800000 */
    int64_t rewrite_min_records; /* rewrite once the file holds this many and 2x the live
                                    ids; 0: 1000 */
    sl_txn_pid_fn alloc_pid;     /* required */
    void *alloc_ctx;
} sl_txn_config;

/* One topic-partition of a request (views, borrowed for the call). */
typedef struct sl_txn_tp {
    sl_str topic;
    int32_t partition;
} sl_txn_tp;

/* Marker work, owned by the caller (sl_txn_jobs_free). Each v[i] is a copy of a transaction in
 * PrepareCommit or PrepareAbort: write markers with (pid, epoch) to its topics and groups, then
 * sl_txn_complete(tid, pid, epoch). */
typedef struct sl_txn_jobs {
    sl_txn_rec *v;
    size_t n;
} sl_txn_jobs;
void sl_txn_jobs_free(sl_txn_jobs *j);

/* Opens the coordinator on `<dir>/sluice-txn.log` (sl_txnlog_open): replays it. Ongoing
 * transactions keep their start time and timeout (sl_txn_expire aborts them when due); those in
 * Prepare* are listed by sl_txn_pending. `cfg` is copied. Caller owns *out (sl_txn_close). */
sl_err sl_txn_open(const char *dir, const sl_txn_config *cfg, sl_txn **out, char *err, size_t elen);
void sl_txn_close(sl_txn *c);

/* InitProducerId with a transactional id. expected_pid/epoch: -1/-1, or the producer's current
 * pair (v3+, KIP-360). Returns the Kafka error code; on NONE, *pid and *epoch. An Ongoing
 * transaction is first fenced (epoch bumped) and aborted: the answer is then
 * CONCURRENT_TRANSACTIONS (the client retries) and *abort_job receives the abort's markers
 * (empty otherwise; always sl_txn_jobs_free it). A new producer id replaces the old one when
 * the epoch is exhausted (>= 32766: one epoch stays spare for a fence, as Kafka). */
int16_t sl_txn_init_producer_id(sl_txn *c, sl_str tid, int32_t timeout_ms, int64_t expected_pid,
                                int16_t expected_epoch, int64_t now_ms, int64_t *pid,
                                int16_t *epoch, sl_txn_jobs *abort_job);
/* AddPartitionsToTxn (v0-3 semantics; a v4 batch is one call per transaction). Returns one
 * code for the whole set: the handler gives it to every partition. Partitions already in the
 * transaction cost no write. */
int16_t sl_txn_add_partitions(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch,
                              const sl_txn_tp *tps, size_t n, int64_t now_ms);
/* AddPartitionsToTxn v4 VerifyOnly: NONE when every partition is in the ongoing transaction,
 * else INVALID_TXN_STATE (or the fencing/mapping error). No write. */
int16_t sl_txn_verify_partitions(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch,
                                 const sl_txn_tp *tps, size_t n);
/* AddOffsetsToTxn: adds `group` (its offsets get a marker at the end). */
int16_t sl_txn_add_offsets(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, sl_str group,
                           int64_t now_ms);
/* For TxnOffsetCommit: NONE when (pid, epoch) own `tid`, and `group` is in its ongoing
 * transaction; else the Kafka error. No write. */
int16_t sl_txn_check_offsets(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, sl_str group);
/* EndTxn. On NONE after a state change, *jobs holds one job (the markers to write). A retry of
 * an end already complete answers NONE with no job; one still being completed answers
 * CONCURRENT_TRANSACTIONS. */
int16_t sl_txn_end(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, bool commit, int64_t now_ms,
                   sl_txn_jobs *jobs);
/* Records that the markers of the job (tid, pid, epoch) are all written: Prepare* ->
 * Complete*. NONE also when it already is complete; INVALID_TXN_STATE when `tid` is not
 * preparing with that pid and epoch. */
int16_t sl_txn_complete(sl_txn *c, sl_str tid, int64_t pid, int16_t epoch, int64_t now_ms);
/* Timers, to be called periodically with the wall clock: every Ongoing transaction whose
 * start + timeout < now is fenced and aborted (PrepareAbort written; its job added to
 * *aborts, which this fills and the caller frees), and every id idle in Empty/Complete* for
 * id_expiration_ms is written Dead and forgotten. Returns the first log error (the rest wait
 * for the next call). */
sl_err sl_txn_expire(sl_txn *c, int64_t now_ms, sl_txn_jobs *aborts);
/* The jobs of every transaction in Prepare* (after open: the decisions whose markers a crash
 * may have interrupted). Caller frees *out. */
sl_err sl_txn_pending(sl_txn *c, sl_txn_jobs *out);

/* DescribeTransactions: NONE and *out (borrowed until the next call that changes anything) or
 * TRANSACTIONAL_ID_NOT_FOUND. */
int16_t sl_txn_describe(sl_txn *c, sl_str tid, const sl_txn_rec **out);
/* ListTransactions: calls fn for every live id (order unspecified); the record is borrowed.
 * The handler applies the state, producer id and duration filters. */
void sl_txn_foreach(sl_txn *c, void (*fn)(void *ctx, const sl_txn_rec *r), void *ctx);
size_t sl_txn_count(const sl_txn *c);
/* The highest producer id the coordinator holds (current or last), -1 if none: the floor the
 * broker's producer-id allocator must stay above. */
int64_t sl_txn_max_pid(const sl_txn *c);
/* Kafka's name of a state ("Empty", "Ongoing", "PrepareCommit", ...), as DescribeTransactions
 * and ListTransactions send it; sl_txn_state_parse is the reverse (-1: unknown). */
const char *sl_txn_state_name(int state);
int sl_txn_state_parse(sl_str name);
/* Rewrites the log to the live state now (also done by itself as the log grows). */
sl_err sl_txn_rewrite(sl_txn *c);
sl_txnlog *sl_txn_log(sl_txn *c);

#endif
