/* Internals shared by sl_log.c, sl_flusher.c and sl_cleaner.c. Not for use outside src/storage. */
#ifndef SL_STORAGE_LOG_INTERNAL_H
#define SL_STORAGE_LOG_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "sl_envelope.h"
#include "sl_log.h"

typedef struct sl_idx_ent {
    uint32_t rel; /* offset - segment base */
    uint32_t pos; /* file position of the frame */
} sl_idx_ent;
typedef struct sl_tidx_ent {
    int64_t ts;   /* largest batch max timestamp up to and including the indexed frame */
    uint32_t rel; /* relative last offset of the batch holding ts */
} sl_tidx_ent;

/* The files of a segment. */
enum { SL_SEG_LOG, SL_SEG_INDEX, SL_SEG_TIMEINDEX, SL_SEG_NFILES };

/* A segment file's slot in the process-wide descriptor cache (sl_log.c): the descriptor is open
 * on demand and may be closed whenever no one has it pinned. All fields are guarded by the
 * cache's mutex. */
typedef struct sl_fslot {
    int fd;   /* -1: not open */
    int pins; /* users between seg_fd() and seg_fd_put(); a pinned fd is never closed */
    struct sl_fslot *prev, *next; /* least-recently-used list of open slots */
} sl_fslot;

/* One segment. Fields are owned by the loop thread, except: file slots belong to the descriptor
 * cache; data_dirty/idx_dirty/sealed are guarded by the owning log's mu (the flusher reads
 * them); refs and gone are atomic. The segment is freed (descriptors closed) when refs drops to
 * 0, so the flusher can keep fsyncing a segment that retention already unlinked (`gone` tells it
 * that a file it cannot reopen was deleted, not lost). */
typedef struct sl_seg {
    int64_t base, next, size; /* size: logical end of the data file, header included */
    int64_t max_ts, max_ts_off;
    int64_t created_ms;
    int64_t bytes_since_idx;
    const char *dir; /* the owning log's directory (outlives every reference to the segment) */
    sl_fslot f[SL_SEG_NFILES];
    atomic_bool gone; /* files unlinked (retention, DeleteRecords, log destroyed) */
    sl_idx_ent *idx;
    uint32_t nidx, cidx;
    sl_tidx_ent *tidx;
    uint32_t ntidx, ctidx;
    atomic_int refs;
    bool data_dirty, idx_dirty, sealed;
    /* Encryption at rest (loop thread). */
    uint32_t hdr_len;   /* file header length; frames start here (64, or 64 + envelope) */
    bool enc;           /* header version 2: every frame must be sealed under env's DEK */
    bool hdr_torn;      /* rewriting the header of the empty active segment failed: redo first */
    bool reenc_busy;    /* a re-encryption job holds it */
    sl_err bad;         /* SL_OK, or what every read of it fails with (a damaged envelope) */
    sl_envelope env;    /* enc: the decoded envelope */
    sl_dek *wdek;       /* the DEK this process appends under (active segment only) */
    uint64_t nonce_ctr; /* last nonce counter used under wdek (advanced before each write) */
    int64_t warned_pos; /* file position + 1 of the last refused frame logged (no repeats) */
} sl_seg;

struct sl_log {
    char *dir;
    sl_log_config cfg;
    sl_seg **segs; /* sorted by base; last is active. Mutated under mu, read freely on loop */
    int nsegs, csegs;
    int64_t start_offset;
    int64_t durable_offset;
    int64_t appended_records, synced_records;
    int64_t oldest_unsynced_ms; /* wall ms of the first append not yet durable; 0: none */
    pthread_mutex_t mu;
    bool dir_dirty; /* guarded by mu */
    bool closed;
    atomic_int refs;
    atomic_int sync_failed; /* sticky: after a failed fsync the page cache state is unknown */
    atomic_bool destroyed;  /* directory removed (sl_log_destroy): nothing left to make durable */
    /* Encryption at rest (loop thread): keys set by sl_log_set_keys; keys_fresh makes the next
     * append start a new segment under a fresh DEK. */
    sl_log_keys keys;
    bool has_keys, keys_fresh;
    /* Flusher-thread scratch for deduplicating logs within one round. */
    uint64_t flush_round;
    sl_err flush_result;
};

void sl_log__ref(sl_log *log);
/* Drops a reference; the last one frees the log (loop thread only). */
void sl_log__unref(sl_log *log);
/* Fsyncs every segment file written since its last sync, sealed segments' indexes, and the
 * directory if segments were created. Safe on any thread while the log is referenced. */
sl_err sl_log__fsync_dirty(sl_log *log);
/* Records that everything below `target` and the first `rec_mark` appended records are durable.
 * Loop thread. */
void sl_log__mark_durable(sl_log *log, int64_t target, int64_t rec_mark);

/* Cleaner (sl_cleaner.c). Replaces closed segment `i` by `ns` (whose files are already in place
 * under the segment's name and durable; the log takes ownership of ns) and drops the log's
 * reference to the old one (the flusher may still hold it). Loop thread. */
void sl_log__swap_segment(sl_log *log, int i, sl_seg *ns);
/* Called by sl_log_open before it lists segments: completes a decided clean (its manifest is in
 * place) or removes the leftovers of an undecided one. */
sl_err sl_cleaner__recover(const char *dir);

#endif
