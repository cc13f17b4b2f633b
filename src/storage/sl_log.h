/* Partition log: a directory of segments, each a data file with a versioned header and framed
 * record batches, plus a sparse offset index and a time index. One sl_log per partition.
 *
 * Threading: every function here is called on the broker's event-loop thread, except that the
 * flusher (sl_flusher) fsyncs on its own thread through the sync handles it takes. */
#ifndef SL_STORAGE_LOG_H
#define SL_STORAGE_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"

typedef struct sl_log_config {
    int64_t segment_bytes;           /* roll when the active segment would exceed this */
    int64_t segment_ms;              /* roll when the active segment is older (-1: never) */
    int64_t retention_ms;            /* -1: unlimited */
    int64_t retention_bytes;         /* -1: unlimited */
    int64_t flush_interval_messages; /* records appended since the last fsync that trigger one */
    int64_t flush_interval_ms;       /* age of the oldest unsynced append that triggers one */
    int32_t index_interval_bytes;    /* bytes between sparse index entries (Kafka: 4096) */
    int32_t max_index_bytes;         /* index size that also forces a roll (Kafka: 10 MiB) */
} sl_log_config;

/* Kafka's defaults. */
void sl_log_config_default(sl_log_config *cfg);

typedef struct sl_log sl_log;

/* Opens (creating if missing) the partition directory `dir`, recovering it: validates the tail of
 * the last segment, truncates a torn or corrupt trailing batch, rebuilds missing or bad indexes.
 * What recovery kept is fsynced before this returns; a log created here (no segment existed)
 * holds no record, and its files become durable with its first sync (a crash before that
 * reopens it empty). `cfg` is copied. On success the caller owns *out and frees it with
 * sl_log_close(). */
sl_err sl_log_open(const char *dir, const sl_log_config *cfg, sl_log **out);
/* As sl_log_open, for a directory whose every write is known durable (the broker stopped cleanly
 * after syncing every log): recovery's fsync of what it kept is skipped unless recovery itself
 * changed data (a torn tail cut, a header rewritten), so a restart of many partitions costs no
 * fsync each. */
sl_err sl_log_open_synced(const char *dir, const sl_log_config *cfg, sl_log **out);
/* Replaces the config (topic config changed). Takes effect on the next append/retention pass. */
void sl_log_set_config(sl_log *log, const sl_log_config *cfg);
/* Closes files and frees. Does not fsync; call sl_log_sync first for a clean stop. */
void sl_log_close(sl_log *log);
/* Closes the log and removes its directory and everything in it (topic deletion). */
sl_err sl_log_destroy(sl_log *log);
/* Removes the log's directory and everything in it, leaving the log open (nothing may append to
 * it any more; sl_log_close it on the loop thread). Touches only the files and atomics, so a file
 * worker thread may run it while the flusher still holds the log. */
sl_err sl_log_remove_files(sl_log *log);

/* Appends one record batch (magic 2, already validated by the caller). `batch` points at `len`
 * bytes the caller owns; the function writes the assigned base offset into the batch's first 8
 * bytes in place (baseOffset is outside the CRC, so the CRC stays valid) and appends it.
 * `record_count` and `max_timestamp` come from the batch header (the caller parsed them).
 * On success *base_offset is the first offset; bytes are in the page cache, durable once a sync
 * covering sl_log_end_offset() completes. On failure nothing becomes visible: the tail is
 * restored to its previous end (ENOSPC and EIO give SL_ENOSPC / SL_EIO). After any fsync of this
 * log failed, appends return SL_EIO for good (the page cache state is unknown; reopen to recover).
 * SL_EINVAL for a batch that is not v2 or shorter than its header.
 * With keys (sl_log_set_keys) the batch is sealed in place: after success the caller's bytes
 * hold the stored form (CRC and records encrypted); after a failure they are as they were.
 * Errors of dek_new (SL_EKEY_UNAVAILABLE, ...) are returned with nothing written. */
sl_err sl_log_append(sl_log *log, uint8_t *batch, size_t len, int32_t record_count,
                     int64_t max_timestamp, int64_t *base_offset);

/* Reads whole batches starting with the one that contains `offset`, up to `max_bytes` total but
 * always at least one whole batch when offset < end. The bytes are copied into `a` (one pread per
 * contiguous range, not per record). *out is empty (len 0) at the end of the log.
 * Returns SL_ERANGE if offset < start offset or > end offset. */
sl_err sl_log_read(sl_log *log, int64_t offset, int32_t max_bytes, sl_arena *a, uint8_t **out,
                   size_t *out_len);

/* Batch headers without any key: the first 61 bytes (the v2 batch header) of each stored batch,
 * starting with the one that contains `offset`, at most `max_batches`, back to back in `a`
 * (*out, *count of them; 0 at the end of the log). One segment per call, like sl_log_read. The
 * batch CRC field is zeroed (a sealed batch keeps it encrypted). For state rebuilt from headers
 * (producer state) while keys may be unavailable: each header is checked against its frame
 * (base offset, last offset delta, length, frame and ciphertext CRCs) and the same clear-data
 * rules as sl_log_read apply (SL_ETAMPER), but a sealed batch's header is authenticated only
 * when the batch itself is read. SL_ERANGE as sl_log_read. */
sl_err sl_log_read_headers(sl_log *log, int64_t offset, int max_batches, sl_arena *a, uint8_t **out,
                           int *count);

/* ---- Encryption at rest (docs/encryption-at-rest.md) ----------------------------------------
 * A log with keys seals every batch it appends (AES-256-GCM, one DEK per segment, nonce = a
 * counter per DEK, associated data binding topic id, partition, segment and base offset) and
 * opens encrypted frames on read. The log never talks to a KMS: the key service lends it DEKs
 * through these callbacks, synchronously, from what it has cached. Frame headers and the batch
 * header fields recovery needs stay readable, so opening and recovering a log needs no key. */
typedef struct sl_dek sl_dek;
typedef struct sl_envelope sl_envelope;
typedef struct sl_log_keys sl_log_keys;
typedef struct sl_log_keys_ops {
    /* A fresh DEK for a new segment based at `seg_base`: *dek (a reference the caller owns) and
     * env's dek_id, tk_version, wrapped DEK (the log fills topic id, partition, base, alg).
     * SL_EKEY_UNAVAILABLE when the topic key is not available now (the key service starts
     * loading it off the loop; the caller's request gets a retriable error). */
    sl_err (*dek_new)(void *ctx, const sl_log_keys *k, int64_t seg_base, sl_envelope *env,
                      sl_dek **dek);
    /* The DEK of a stored segment from its envelope (a reference the caller owns).
     * SL_EKEY_UNAVAILABLE as above; SL_ETAMPER when the wrapped DEK does not unwrap (edited,
     * another topic's); SL_EKEY_DESTROYED when the topic was shredded. */
    sl_err (*dek_open)(void *ctx, const sl_log_keys *k, const sl_envelope *env, sl_dek **dek);
} sl_log_keys_ops;

struct sl_log_keys {
    const sl_log_keys_ops *ops;
    void *ctx; /* the key service's; must outlive the log */
    uint8_t topic_id[16];
    int32_t partition;
    /* Plaintext frames are served only below this offset (data written before encryption was
     * turned on); a plaintext frame at or above it is an injection and fails like a bad tag. */
    int64_t plain_below;
};

/* Turns encryption on (`keys` copied; NULL turns it off for new segments). Appends from now on
 * go to a new segment under a fresh DEK: a DEK is never written under by two processes, so a
 * restored or crashed directory can never reuse a nonce. Loop thread. */
void sl_log_set_keys(sl_log *log, const sl_log_keys *keys);
/* Drops every DEK the log holds (the active segment's writing key): after a shred, or when the
 * key service evicts. The next append needs dek_new again. */
void sl_log_drop_keys(sl_log *log);
/* Segments not yet sealed under topic-key version `tk_version` (plaintext ones included), the
 * active one counted; for `sluice keys status` and reencrypt progress. */
int sl_log_segments_pending(sl_log *log, uint32_t tk_version);
/* Base offset and topic-key version (0: plaintext) of segment `i` (0 = oldest), for `sluice keys
 * status`. false when i is out of range. */
bool sl_log_segment_info(sl_log *log, int i, int64_t *base, uint32_t *tk_version);

/* ---- Re-encryption (`sluice keys reencrypt`) ----------------------------------------------
 * Rewrites sealed segments that are plaintext or under another topic-key version into new files
 * under fresh DEKs, without blocking the loop for a whole segment: prepare (loop) picks one
 * segment and gets its new DEK; run (any thread) reads the old file, opens each frame, seals it
 * again, writes a temporary file, fsyncs it, renames it over the old one and fsyncs the
 * directory, so a crash leaves either the old or the new file whole and a rerun continues;
 * finish (loop) swaps the segment's in-memory state. Reads meanwhile use the old file (its
 * descriptor stays valid across the rename). */
typedef struct sl_log_reenc sl_log_reenc;
/* *job = NULL when nothing is left. When only the active segment is left (and it holds
 * records) it is rolled first, so it becomes sealed. Caller owns *job until finish. */
sl_err sl_log_reenc_prepare(sl_log *log, uint32_t tk_version, sl_log_reenc **job);
sl_err sl_log_reenc_run(sl_log_reenc *job);
/* Applies (run_result SL_OK) or discards the rewrite; frees job. Loop thread. */
sl_err sl_log_reenc_finish(sl_log_reenc *job, sl_err run_result);

int64_t sl_log_start_offset(const sl_log *log);   /* log start offset (after retention/deletes) */
int64_t sl_log_end_offset(const sl_log *log);     /* next offset to assign (LEO) */
int64_t sl_log_durable_offset(const sl_log *log); /* all offsets below this are fsynced */
int64_t sl_log_size_bytes(const sl_log *log);
int sl_log_segment_count(const sl_log *log); /* segments on disk, active one included */

/* First offset whose batch max timestamp is >= ts (Kafka's ListOffsets by timestamp), with that
 * batch's timestamp; *offset = -1 when none. */
sl_err sl_log_offset_for_time(sl_log *log, int64_t ts, int64_t *offset, int64_t *found_ts);
/* Offset and timestamp of the record with the largest timestamp (ListOffsets -3). -1/-1 if empty.
 * Batch granularity: offset is the batch's last offset holding the max timestamp. */
sl_err sl_log_max_timestamp(sl_log *log, int64_t *offset, int64_t *ts);

/* Moves the log start offset to `offset` (DeleteRecords); deletes whole segments below it.
 * The new start offset is persisted (survives restart). SL_ERANGE if offset > end. */
sl_err sl_log_delete_records(sl_log *log, int64_t offset);
/* Applies retention.ms / retention.bytes: deletes whole old segments (never the active one).
 * Returns the number of segments deleted in *deleted. `now_ms` is wall-clock (sl_wall_ms()). */
sl_err sl_log_enforce_retention(sl_log *log, int64_t now_ms, int *deleted);

/* True when flush.interval.messages or flush.interval.ms say a sync is due. `now_ms` is
 * wall-clock (sl_wall_ms()). */
bool sl_log_flush_due(const sl_log *log, int64_t now_ms);

/* Synchronous fsync of everything appended so far (segments, indexes as needed, directory);
 * nothing to do (no fsync) when every record is durable already. For tests and clean shutdown;
 * the broker normally syncs through sl_flusher. */
sl_err sl_log_sync(sl_log *log);

/* ---- Descriptor cache ----------------------------------------------------------------------
 * The segment files (data, offset index, time index) of every log in the process share one
 * bounded cache of open descriptors: the least recently used is closed when the cache is full
 * and the file opened again when next needed, so the number of partitions is bounded by disk,
 * not by the file limit. A log holds no other descriptor between calls. A descriptor is never
 * closed while in use (the flusher's fsync included); closing one loses nothing, since an fsync
 * through a descriptor opened later flushes the file's dirty pages all the same. Thread-safe. */

/* Sets how many descriptors the cache may keep open (values below 8 count as 8). Lowering it
 * closes the excess as soon as they are unused. Default: half the soft file limit. */
void sl_log_fd_cache_set_capacity(int n);
int sl_log_fd_cache_capacity(void);
/* Descriptors the cache holds open now (tests, metrics). */
int sl_log_fd_cache_open_count(void);

/* ---- Group commit -------------------------------------------------------------------------
 * The flusher owns one thread. The loop thread asks for a log to be made durable up to its
 * current end; the thread fsyncs (coalescing every request that arrived meanwhile, across all
 * logs and connections) and posts completions; the loop thread runs the callbacks from
 * sl_flusher_dispatch() when sl_flusher_fd() becomes readable. */
typedef struct sl_flusher sl_flusher;
typedef void (*sl_flush_cb)(void *ctx, sl_err result);

/* Starts the flusher thread. Caller owns the result; sl_flusher_free() joins the thread after
 * completing every request already queued, then runs their callbacks itself (call it on the loop
 * thread). */
sl_err sl_flusher_new(sl_flusher **out);
void sl_flusher_free(sl_flusher *f);
/* An fd (eventfd) that becomes readable when completions are waiting. */
int sl_flusher_fd(const sl_flusher *f);
/* Requests durability of `log` up to its current end offset; `cb(ctx, err)` runs later on the
 * loop thread (from sl_flusher_dispatch), exactly once. If already durable, still runs it from
 * the next dispatch (never re-entrantly; the one exception: if `f` is NULL or the request
 * cannot be allocated the sync runs inline and cb runs before this returns). The log should stay
 * open until the callback ran; closing it earlier is safe (the free is deferred) but the durable
 * offset is not advanced. */
void sl_flusher_request(sl_flusher *f, sl_log *log, sl_flush_cb cb, void *ctx);
/* Runs completed callbacks. Call on the loop thread when sl_flusher_fd() is readable. */
void sl_flusher_dispatch(sl_flusher *f);

#endif
