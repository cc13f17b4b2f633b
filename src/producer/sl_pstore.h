/* Persistence of the idempotent-producer state (sl_pstate.h): per-partition snapshots in the
 * partition directory (format in docs/on-disk-format.md), the rebuild on open from the newest
 * durable snapshot plus a header-only scan of the batches after it, and the producer-id
 * high-water-mark file. Everything here runs on the broker's loop thread. See
 * docs/idempotence.md. */
#ifndef SL_PRODUCER_PSTORE_H
#define SL_PRODUCER_PSTORE_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "producer/sl_pstate.h"
#include "storage/sl_log.h"

/* Ids reserved on disk per write of the high-water-mark file. */
#define SL_PID_BLOCK 1000

/* Opens the producer state of the partition whose directory is `dir` and whose (already
 * recovered) log is `log`: loads the newest snapshot at or below the log end (deleting any above
 * it, which a crash made stale), then scans the batch headers after it. Producers seen only in
 * the scan get `now_ms` as their last-append time. Caller owns *out (sl_pstate_close). */
sl_err sl_pstate_open(const char *dir, sl_log *log, int64_t now_ms, sl_pstate **out);
/* The same with encryption at rest when `ks` is not NULL (borrowed; must outlive the state):
 * snapshots are written sealed (sl_keysvc_seal_blob, named by their file name); sealed and older
 * plaintext snapshots are both read, and one that cannot be opened (key unavailable, tampered)
 * is ignored with a warning: the state is rebuilt from the log, snapshots being an
 * optimisation. */
struct sl_keysvc;
sl_err sl_pstate_open_keys(const char *dir, sl_log *log, int64_t now_ms, struct sl_keysvc *ks,
                           sl_pstate **out);
/* Writes a final snapshot if `log` (may be NULL: partition deleted) is durable to its end, then
 * frees the state and its store. NULL is allowed. */
void sl_pstate_close(sl_pstate *ps, sl_log *log);
/* Call after appending to `log`: captures a snapshot when the log rolled a segment, and writes
 * a captured snapshot once the log is durable past its offset (never earlier, so no snapshot on
 * disk can describe batches a crash took away). */
void sl_pstate_after_append(sl_pstate *ps, sl_log *log);
/* Periodic work: drops producers whose last append is `expiration_ms` or more before `now_ms`,
 * captures a snapshot if anything changed, writes it if the log is durable (`log` NULL: expiry
 * only). Returns the number of producers dropped. */
int sl_pstate_tick(sl_pstate *ps, sl_log *log, int64_t now_ms, int64_t expiration_ms);
/* Captures the state now as a snapshot at the log end (replacing one not yet written). */
sl_err sl_pstate_capture(sl_pstate *ps, sl_log *log);
/* Offset of the newest snapshot written to disk by this instance or loaded at open, or -1. */
int64_t sl_pstate_snapshot_offset(const sl_pstate *ps);

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
/* Name of the mark file inside the directory given to sl_pid_alloc_open (for messages). */
#define SL_PID_FILE "sluice-producer-ids"

#endif
