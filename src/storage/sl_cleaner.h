/* Log cleaner: compaction of one partition's log (cleanup.policy=compact), Kafka's semantics.
 * The rules it applies (what is kept, tombstones, control batches, gaps, the swap protocol and
 * what a concurrent Fetch sees) are in docs/compaction.md, "How the cleaner works (internal)".
 *
 * A clean is three calls:
 *   sl_cleaner_prepare  loop thread: snapshots the closed segments it may clean (never the active
 *                       one, none newer than min.compaction.lag.ms, none reaching past the last
 *                       stable offset) and reserves them;
 *   sl_cleaner_run      any thread (a worker): pass 1 builds the bounded offset map over the dirty
 *                       range, pass 2 rewrites each group of consecutive segments (one segment,
 *                       or several small ones with cfg.segment_bytes) into one
 *                       `<first base>.log.cleaned` (+ indexes), fsyncs them and writes the swap
 *                       manifest (the decision and the groups, durable);
 *   sl_cleaner_commit   loop thread: renames the cleaned files over the groups' first segments
 *                       (oldest first), deletes the groups' other segments, swaps the in-memory
 *                       segments, fsyncs the directory and turns the manifest into the
 *                       partition's cleaner checkpoint. Frees the job.
 * A crash anywhere leaves either the old files (no manifest: sl_log_open removes the leftovers)
 * or a decided swap that sl_log_open completes.
 *
 * Encrypted segments (the default): prepare fetches, on the loop, a private copy of each reserved
 * segment's DEK and a fresh DEK for its rewrite; run opens every frame it reads (a frame that
 * fails its tag or the clear-frame rules fails the run: nothing is laundered into a new file)
 * and seals every frame it writes under the fresh DEK, which seals only that one file, once (a
 * merged group's file is sealed under its first segment's fresh DEK).
 * Segments left unchanged keep their file and DEK. No key is needed to recover a swap.
 *
 * Nothing here reads topic configs; the caller (wiring) passes an sl_cleaner_config, keeps the
 * checkpoint it gets back and decides when to clean with sl_cleaner_assess. */
#ifndef SL_STORAGE_CLEANER_H
#define SL_STORAGE_CLEANER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "storage/sl_log.h"

typedef struct sl_cleaner_config {
    int64_t delete_retention_ms;      /* tombstones live this long after first cleaned (86400000) */
    int64_t min_compaction_lag_ms;    /* segments with a record newer than now - this stay (0) */
    int64_t max_compaction_lag_ms;    /* dirty data older than this is due regardless (INT64_MAX) */
    double min_cleanable_dirty_ratio; /* dirty / cleanable bytes that makes a clean due (0.5) */
    size_t offset_map_bytes;          /* memory budget of the offset map (128 MiB) */
    size_t io_buffer_bytes;           /* read and write buffer each (1 MiB); a larger batch
                                       * is read whole (one batch, never a whole segment) */
    size_t max_inflate_bytes;         /* largest decompressed batch accepted (64 MiB) */
    int max_dirty_segments;           /* with a checkpoint (sl_cleaner_prepare_txn): dirty
                                       * segments one clean takes at most, the next clean
                                       * starting after them; 0: all (the default) */
    int64_t segment_bytes;            /* the log's segment.bytes: consecutive rewritten segments
                                       * whose sizes sum to at most this are merged into one
                                       * (Kafka's groupSegmentsBySize); 0: no merging (default) */
} sl_cleaner_config;

void sl_cleaner_config_default(sl_cleaner_config *c);

/* What the cleaner remembers per partition (file `cleaner-checkpoint` in the log directory). */
typedef struct sl_cleaner_checkpoint {
    int64_t offset;     /* first dirty offset: everything below was cleaned at least once */
    int64_t horizon_ms; /* earliest delete horizon of a tombstone still kept; -1: none */
} sl_cleaner_checkpoint;

/* Reads the checkpoint of log directory `dir` (offset 0 / horizon -1 when there is none).
 * SL_ECORRUPT for a damaged file. Small file read: call it off the loop, once per partition. */
sl_err sl_cleaner_read_checkpoint(const char *dir, sl_cleaner_checkpoint *out);

/* Segment-granular assessment, no I/O (loop thread): the cleanable range ends at the active
 * segment or at the first closed segment holding a record newer than now - min lag (or damaged,
 * reserved, encrypted while the log has no keys, or reaching past the stable end: see
 * sl_cleaner_assess_txn). Dirty bytes are those of segments at or after
 * the checkpoint's segment. */
typedef struct sl_cleaner_assessment {
    int64_t first_dirty;   /* checkpoint clamped to the log */
    int64_t cleanable_end; /* segment boundary */
    int64_t clean_bytes, dirty_bytes;
    double dirty_ratio;      /* dirty / (clean + dirty); 0 when nothing is cleanable */
    bool lag_exceeded;       /* the oldest dirty segment is older than max.compaction.lag.ms */
    bool tombstones_expired; /* ck.horizon_ms has passed: a clean would remove tombstones */
    bool due;                /* ratio >= min ratio, or lag exceeded, or tombstones expired */
} sl_cleaner_assessment;

void sl_cleaner_assess(const sl_log *log, const sl_cleaner_config *cfg,
                       const sl_cleaner_checkpoint *ck, int64_t now_ms, sl_cleaner_assessment *out);

/* Transactions (plain data the broker fills from its per-partition state; storage knows no
 * broker types). The cleanable range lies wholly below `stable_end` (the last stable offset), so
 * every transaction with data in it has its marker in the log. `ab` lists the aborted
 * transactions (producer, first offset, abort marker offset) whose first offset is below the
 * cleanable end, in any order; their transactional data batches are removed and never count as
 * a key's latest value. Markers whose transaction has no data left get a delete horizon (KIP-534)
 * and go once it has passed (docs/compaction.md, "Transactions"). */
typedef struct sl_cleaner_aborted {
    int64_t producer_id, first_offset, marker_offset;
} sl_cleaner_aborted;

typedef struct sl_cleaner_txn {
    int64_t stable_end;           /* the LSO; INT64_MAX: no transaction state */
    const sl_cleaner_aborted *ab; /* borrowed; prepare copies what it needs */
    size_t nab;
} sl_cleaner_txn;

/* sl_cleaner_assess bounded by the last stable offset (sl_cleaner_assess: INT64_MAX). */
void sl_cleaner_assess_txn(const sl_log *log, const sl_cleaner_config *cfg,
                           const sl_cleaner_checkpoint *ck, int64_t stable_end, int64_t now_ms,
                           sl_cleaner_assessment *out);

/* What a finished clean did (filled by sl_cleaner_commit). */
typedef struct sl_cleaner_result {
    sl_cleaner_checkpoint checkpoint; /* the new one, as written */
    int segments_rewritten;
    int64_t records_read, records_dropped, tombstones_dropped;
    int64_t bytes_before, bytes_after; /* of the rewritten segments */
    bool map_full;    /* the offset map filled: a prefix of the dirty range was cleaned */
    int64_t bad_base; /* failed run: base of the segment whose frame failed authentication or its
                       * checks (SL_ETAMPER / SL_ECORRUPT), else -1 */
    /* Transactions: aborted data batches removed, markers given a delete horizon, markers
     * removed (their horizon passed). The offsets of the ABORT markers removed are malloc'd and
     * owned by the result (sl_cleaner_result_free): the broker drops their aborted-index entries,
     * which must not outlive their markers (a read_committed fetch would skip committed data). */
    int64_t aborted_batches_dropped, markers_stamped, markers_removed;
    int64_t *removed_abort_markers; /* ascending */
    size_t nremoved_abort;
} sl_cleaner_result;

/* Frees what a result owns (removed_abort_markers); the struct itself is the caller's. */
void sl_cleaner_result_free(sl_cleaner_result *res);

typedef struct sl_cleaner_job sl_cleaner_job;

/* Loop thread. Reserves the closed segments below the cleanable end (re-encryption skips them
 * meanwhile) and copies what run needs, keys included (sl_log__rewrite_keys: one unwrap and one
 * wrap per segment, in software while the topic key is cached). `now_ms` is the cleaning time
 * (tombstone horizons and the min lag are measured from it; tests inject it). *job = NULL when
 * nothing is cleanable. The caller owns *job until sl_cleaner_commit. `cfg` is copied. SL_EIO after
 * a failed fsync of the log. Key errors reserve nothing: SL_EKEY_UNAVAILABLE (the topic key is
 * loading: retry soon), SL_EKEY_DESTROYED (shredded), SL_ETAMPER (a segment's envelope is not this
 * partition's or its DEK does not unwrap). */
sl_err sl_cleaner_prepare(sl_log *log, const sl_cleaner_config *cfg, int64_t now_ms,
                          sl_cleaner_job **job);

/* sl_cleaner_prepare for a partition with transaction state: the cleanable end is also bounded
 * by txn->stable_end (and lowered so that at most offset_map_bytes / 64 aborted entries are
 * copied), and run removes aborted data and expired markers. txn NULL: no transaction state.
 * ck (optional: NULL is no cap) is the partition's checkpoint, as the last clean left it: with
 * cfg->max_dirty_segments > 0 the cleanable end is lowered so that at most that many segments
 * at or after the checkpoint's are dirty in this clean. Its checkpoint then ends there, so the
 * next clean takes the next ones (the rewrite pass still starts at the log's first segment). */
sl_err sl_cleaner_prepare_txn(sl_log *log, const sl_cleaner_config *cfg,
                              const sl_cleaner_checkpoint *ck, const sl_cleaner_txn *txn,
                              int64_t now_ms, sl_cleaner_job **job);

/* Any thread; touches only files and the job (never the log's memory). Reads each reserved
 * segment through its own descriptor in io_buffer_bytes chunks. On failure every file it wrote is
 * removed and the log is as before. SL_ETAMPER for a frame that fails authentication, an
 * out-of-place clear frame or a data file replaced since prepare, SL_ECORRUPT for a frame or batch
 * that fails its checks (nothing is rewritten), SL_ETOOLARGE when the offset map cannot hold the
 * dirty range's first batch (or a rewritten plaintext segment would pass 2 GiB once sealed),
 * SL_ESTATE when a previous commit's manifest is still in place (reopen the log),
 * SL_EKEY_DESTROYED after sl_cleaner_cancel. */
sl_err sl_cleaner_run(sl_cleaner_job *job);

/* Any thread, while the job is between prepare and commit: run stops at the next frame and fails
 * with SL_EKEY_DESTROYED (the topic was shredded: its key copies should go now). */
void sl_cleaner_cancel(sl_cleaner_job *job);

/* Loop thread. Applies the run (run_result SL_OK) or discards it; frees the job. Segments that
 * retention deleted meanwhile stay deleted; a merged group whose first segment went is not
 * applied (its other segments stay, and the checkpoint goes back to the first of them). On success
 * *res (optional) says what was done; on failure only res->bad_base is set (and nothing is owned).
 * A failure after the first rename leaves the manifest in place: the swap completes at the next
 * sl_log_open (reopen the log). */
sl_err sl_cleaner_commit(sl_cleaner_job *job, sl_err run_result, sl_cleaner_result *res);

/* Test only: a simulated crash. When > 0, the protocol stops after that many durable steps
 * (file writes, renames, fsyncs; see sl_cleaner.c) and returns SL_ESTATE, leaving the files as a
 * kill -9 would; commit then frees the job without touching the log. */
extern int sl_cleaner__crash_after;

#endif
