/* Internals shared by sl_log.c, sl_flusher.c and sl_cleaner.c. Not for use outside src/storage. */
#ifndef SL_STORAGE_LOG_INTERNAL_H
#define SL_STORAGE_LOG_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "crypto/sl_aead.h"
#include "sl_envelope.h"
#include "sl_frame.h"
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

/* Cleaner (sl_cleaner.c). Replaces the n closed segments from `i` on by `ns` (whose files are
 * already in place under the first one's name and durable, the others' files deleted; the log
 * takes ownership of ns) and drops the log's references to the old ones (the flusher may still
 * hold them). Loop thread. */
void sl_log__swap_segments(sl_log *log, int i, int n, sl_seg *ns);
/* A segment in memory for a file written off the loop (the cleaner's output): plaintext header
 * length, no descriptors open, one reference. Any thread. */
sl_seg *sl_log__seg_alloc(const char *dir, int64_t base);
/* Drops a reference; the last one closes its descriptors and frees it. */
void sl_log__seg_unref(sl_seg *s);
/* Accounts for frame f written (or found) at file position `pos` of s: next offset, max timestamp,
 * and the offset and time index entries the append path makes every index_interval_bytes. With
 * `write` the entries also go into s's index files (loop thread); without, they stay in memory
 * (any thread, for a segment no one else sees). Returns true when index files were written. */
bool sl_log__seg_note_frame(sl_seg *s, int32_t index_interval_bytes, int64_t pos, const sl_frame *f,
                            bool write);
/* The final time index entry a roll adds (the segment's max timestamp, if it grew). Returns true
 * when an entry was added. */
bool sl_log__seg_time_point(sl_seg *s, bool write);

/* ---- encrypted segment rewriting (re-encryption and the cleaner) ------------------------------
 * A DEK seals exactly one file, once, in one process: a rewritten segment always gets a fresh
 * DEK (docs/on-disk-format.md). Keys are fetched on the loop thread (sl_log__rewrite_keys); the
 * worker that rewrites only gets private AEAD contexts (sl_aead_dup) and envelopes. */

#define SL_LOG_HDR_MAX (64 + SL_ENV_MAX)

/* Writes a segment file header into h (SL_LOG_HDR_MAX bytes): version 1 (plaintext) when env is
 * NULL, else version 2 followed by the envelope. Returns its length, 0 when env does not encode. */
size_t sl_log__encode_file_header(uint8_t *h, int64_t base, int64_t created_ms,
                                  const sl_envelope *env);
/* Reads and checks the header of an open data file: version 1 or 2, CRC, base == expect_base,
 * and for version 2 an envelope that decodes and names expect_base. *hdr_len: where frames
 * start; *env is zeroed for a plaintext file. SL_ECORRUPT for anything else. Any thread. */
sl_err sl_log__read_file_header(int fd, int64_t expect_base, uint32_t *hdr_len, bool *enc,
                                sl_envelope *env, int64_t *created_ms);

/* Reading the frames of one segment off the loop. Owns aead (sl_seg_opener_clear). */
typedef struct sl_seg_opener {
    bool enc;            /* segment header v2 */
    sl_envelope env;     /* enc: its envelope */
    sl_aead *aead;       /* enc: private context of the segment's DEK; NULL for plaintext */
    bool has_keys;       /* the log's, at prepare */
    int64_t plain_below; /* the log's plaintext watermark */
} sl_seg_opener;

/* Admits frame f (header at fh; payload at `payload`, followed by its tag; both already checked
 * with sl_frame_payload_ok) under the rules a read applies: a clear frame in an encrypted segment,
 * or at or above plain_below when the log has keys, is SL_ETAMPER (sealing it would launder an
 * injected frame); an encrypted frame must be in an encrypted segment under its DEK id; then it
 * is opened in place. SL_OK: payload[0, plen) is the clear batch. A failed open cleanses the
 * payload (SL_ETAMPER, or SL_ENOMEM). */
sl_err sl_log__frame_open(const sl_seg_opener *o, const sl_frame *f, const uint8_t *fh,
                          uint8_t *payload);

/* Writing one new segment under one fresh DEK. Owns aead (sl_seg_sealer_clear). */
typedef struct sl_seg_sealer {
    sl_envelope env; /* topic, partition, seg_base = the segment's base, dek_id, tk_version */
    sl_aead *aead;   /* private; NULL: plaintext frames (a log without keys) */
    uint64_t ctr;    /* last nonce counter used; starts at 0, advanced before each seal */
    uint8_t nonce[SL_FRAME_ENC_NONCE]; /* the last frame's (its sl_frame points here) */
} sl_seg_sealer;

/* Builds the frame for the clear batch[0, plen) at `base` (lod, count, max_ts as in the batch),
 * sealing the batch in place when s->aead (nonce from ++ctr, AAD binding it to the envelope and
 * the frame header). The header goes into hdr (SL_FRAME_HDR_MAX bytes), the tag into tag; *f
 * describes the frame (f->flen for indexes; f->nonce points into s). SL_ERANGE past the counter
 * limit (a 2 GiB segment cannot reach it). */
sl_err sl_log__frame_seal(sl_seg_sealer *s, int64_t base, int32_t lod, int32_t count,
                          int64_t max_ts, uint8_t *batch, uint32_t plen, uint8_t *hdr,
                          uint8_t tag[SL_FRAME_ENC_TAG], sl_frame *f);

/* Loop thread. The keys for rewriting closed segment i: *in opens its frames (the DEK unwrapped
 * through the key service, copied with sl_aead_dup, the sl_dek reference dropped before
 * returning), *out seals under a fresh DEK at the same base (plaintext when the log has no keys).
 * SL_EKEY_UNAVAILABLE (topic key loading: retry soon), SL_EKEY_DESTROYED (shredded), SL_ETAMPER
 * (the envelope names another topic, partition or segment, or the DEK does not unwrap), the
 * segment's own error when it is damaged. On failure both are cleared. */
sl_err sl_log__rewrite_keys(sl_log *log, int i, sl_seg_opener *in, sl_seg_sealer *out);
/* Free (and cleanse) the contexts; the structs may be cleared twice. */
void sl_seg_opener_clear(sl_seg_opener *o);
void sl_seg_sealer_clear(sl_seg_sealer *s);

/* Called by sl_log_open before it lists segments: completes a decided clean (its manifest is in
 * place) or removes the leftovers of an undecided one. */
sl_err sl_cleaner__recover(const char *dir);

#endif
