/* The transaction coordinator's durable log (issue 16): one record per state change of a
 * transactional id, each record the WHOLE state of that id after the change, so replay is "last
 * record per id wins" and a rewrite is simply the live records again. The coordinator
 * (sl_txn.h) owns the state; this file only encodes, decodes, appends, replays and rewrites.
 * Loop thread only. docs/transactions.md, "Transaction log (internal)".
 *
 * File `<dir>/sluice-txn.log`, all integers big-endian:
 *   header  "SLTX" | u16 file version = 1 | u16 0 | u32 crc32c(first 8 bytes)      (12 bytes)
 *   record  u32 len | u32 crc32c(len field || body) | body[len]
 *   body    u8 body version = 1 | u8 state (sl_txn_state) | u16 flags = 0 |
 *           i64 producer id | i64 last producer id (-1) | i16 epoch | i16 last epoch (-1) |
 *           i32 timeout ms | i64 start ms (-1: no transaction) | i64 last update ms |
 *           u16 id length | id bytes (1..SL_TXN_ID_MAX) |
 *           u32 topic count, per topic (names strictly ascending, bytewise):
 *               u16 name length | name (1..SL_TXN_TOPIC_MAX) | u32 partition count (>= 1) |
 *               i32 partitions (>= 0, strictly ascending)
 *           u32 group count, per group (strictly ascending): u16 length | group id (>= 1 byte)
 *   The body must be consumed exactly. A record is written with one write() and fdatasync()ed
 *   before the caller answers anything that depends on it.
 *
 * Recovery (sl_txnlog_scan): a record that runs past the end of the file (with no good record
 * anywhere after its start), a complete last record whose CRC fails, or a tail of zero bytes is
 * a torn tail (a crash during an append, which leaves a prefix of one record): it is cut off
 * (ftruncate + fsync) when the file is opened. Any other bad record (CRC,
 * length, a body that does not decode) is corruption in the middle: the open fails naming the
 * file and the byte offset, since dropping it could forget a commit decision. A record of an
 * unknown body version fails the same way (SL_EVERSION: written by a newer Sluice).
 *
 * Rewrite: the live records are written to a temporary file, fsynced, renamed over the log and
 * the directory fsynced (sl_file_write_atomic), so a crash leaves the old or the new log. */
#ifndef SL_TXN_TXNLOG_H
#define SL_TXN_TXNLOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

#define SL_TXNLOG_FILE        "sluice-txn.log"
#define SL_TXNLOG_HDR         12
#define SL_TXNLOG_FRAME       8                   /* len + crc before each body */
#define SL_TXNLOG_BODY_MIN    55                  /* fixed fields + a 1-byte id + two counts */
#define SL_TXNLOG_BODY_MAX    (32u * 1024 * 1024) /* what the limits below can produce, rounded */
#define SL_TXN_ID_MAX         32767               /* a Kafka (non-compact) string's maximum */
#define SL_TXN_TOPIC_MAX      249                 /* Kafka's topic name limit */
#define SL_TXN_PARTITIONS_MAX 100000              /* partitions per transaction */
#define SL_TXN_GROUPS_MAX     100                 /* AddOffsetsToTxn groups per transaction */
#define SL_TXN_GROUP_MAX      32767

/* On-disk values; do not renumber. Kafka's PrepareEpochFence is never written (Kafka does not
 * write it either): the fence is recorded as the PrepareAbort that carries the bumped epoch. */
typedef enum sl_txn_state {
    SL_TXN_EMPTY = 0,
    SL_TXN_ONGOING = 1,
    SL_TXN_PREPARE_COMMIT = 2,
    SL_TXN_PREPARE_ABORT = 3,
    SL_TXN_COMPLETE_COMMIT = 4,
    SL_TXN_COMPLETE_ABORT = 5,
    SL_TXN_DEAD = 6, /* the id expired: replay forgets it */
} sl_txn_state;
#define SL_TXN_NSTATES 7

typedef struct sl_txn_topic {
    char *name;     /* NUL-terminated, owned */
    int32_t *parts; /* ascending, owned */
    int32_t nparts;
} sl_txn_topic;

/* The state of one transactional id; every pointer owned by the record (sl_txn_rec_free). */
typedef struct sl_txn_rec {
    char *tid; /* NUL-terminated; tid_len bytes (an id holds no NUL: Kafka strings are UTF-8) */
    uint16_t tid_len;
    uint8_t state; /* sl_txn_state */
    int16_t epoch, last_epoch;
    int64_t pid, last_pid;
    int32_t timeout_ms;
    int64_t start_ms, update_ms;
    sl_txn_topic *topics; /* ascending by name */
    int32_t ntopics;
    int32_t nparts_total;
    char **groups; /* ascending, NUL-terminated, owned */
    int32_t ngroups;
} sl_txn_rec;

/* Frees what `r` owns and zeroes it; the struct itself is the caller's. */
void sl_txn_rec_free(sl_txn_rec *r);
/* Deep copy of `src` into *dst (overwritten, not freed). SL_ENOMEM leaves *dst zeroed. */
sl_err sl_txn_rec_copy(sl_txn_rec *dst, const sl_txn_rec *src);
/* True when `r` keeps the format's rules (lengths, counts, order, ranges) and can be encoded. */
bool sl_txn_rec_valid(const sl_txn_rec *r);

/* Encodes `r` as one framed record (len | crc | body) into a malloc'd buffer the caller frees.
 * SL_EINVAL when !sl_txn_rec_valid(r), SL_ENOMEM. */
sl_err sl_txnlog_encode(const sl_txn_rec *r, uint8_t **out, size_t *len);
/* Decodes one body (no frame) of `n` bytes at `p` (borrowed) into *r, which the caller frees
 * with sl_txn_rec_free on success (zeroed on failure). Every count is checked against the bytes
 * left and the limits above before anything is allocated. SL_ECORRUPT for anything malformed,
 * SL_EVERSION for an unknown body version, SL_ENOMEM. */
sl_err sl_txnlog_decode(const uint8_t *p, size_t n, sl_txn_rec *r);

/* Called with each good record in file order; `r` is borrowed for the call (copy to keep).
 * Returning an error stops the scan with it. */
typedef sl_err (*sl_txnlog_each_fn)(void *ctx, const sl_txn_rec *r);

/* Scans a whole log file image of `n` bytes at `p` (borrowed), pure. Returns SL_OK with
 * *good_end = the offset just past the last good record (a torn tail after it is to be cut), or
 * an error (SL_ECORRUPT, SL_EVERSION, or the callback's) with *bad_off = the offset of the
 * offending record (0: the file header). */
sl_err sl_txnlog_scan(const uint8_t *p, size_t n, sl_txnlog_each_fn each, void *ctx,
                      size_t *good_end, size_t *bad_off);

typedef struct sl_txnlog sl_txnlog;

/* Opens (creating with an empty header, mode 0600) `<dir>/sluice-txn.log`, replays it through
 * `each`, cuts a torn tail, and leaves it open for appends. On failure err names the file (and
 * the offset for corruption). Caller owns *out (sl_txnlog_close). */
sl_err sl_txnlog_open(const char *dir, sl_txnlog_each_fn each, void *ctx, sl_txnlog **out,
                      char *err, size_t elen);
void sl_txnlog_close(sl_txnlog *l);
/* Appends `r` and fdatasyncs; SL_OK only once the record is durable. On any failure the file is
 * cut back to its previous end if possible and the log refuses every later append (SL_EIO;
 * after a failed fsync the page cache cannot be trusted): reopen to continue, which replays
 * whatever did reach the disk. */
sl_err sl_txnlog_append(sl_txnlog *l, const sl_txn_rec *r);
/* Replaces the file with the `n` records `recs` (the live state; borrowed) atomically and
 * continues appending to the new file. On failure the old file stays in use. */
sl_err sl_txnlog_rewrite(sl_txnlog *l, const sl_txn_rec *const *recs, size_t n);
/* Records in the file now (replayed or appended since open or the last rewrite), and its size. */
int64_t sl_txnlog_records(const sl_txnlog *l);
int64_t sl_txnlog_bytes(const sl_txnlog *l);
/* True after a failed append (see sl_txnlog_append). */
bool sl_txnlog_failed(const sl_txnlog *l);
const char *sl_txnlog_path(const sl_txnlog *l);

#endif
