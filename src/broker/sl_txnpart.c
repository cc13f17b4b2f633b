/* Per-partition transaction state (sl_txnpart.h): open transactions, the last stable offset,
 * the aborted-transactions index and the control batches (markers) that end transactions.
 *
 * Files in the partition directory (docs/on-disk-format.md):
 *   aborted.idx  one 32-byte record per aborted transaction, in marker order: magic, producer
 *                id, first offset, marker offset, CRC-32C. Appended and fdatasync'ed BEFORE the
 *                abort marker is appended, so a durable marker always has its entry. Entries
 *                whose marker never became durable are the last ones, and open drops them:
 *                every one whose marker offset is at or past the log end (a crash keeps a
 *                prefix of the log), then the last if the batch there is not a control batch of
 *                that producer (an append that failed). A torn tail is cut at open; a bad record
 *                followed by good ones is corruption (the partition does not open). Entries
 *                whose marker falls below the log start (retention, DeleteRecords) are dropped
 *                then (sl_txnpart_log_start_moved) and at open, so the file stays as large as
 *                the aborts still in the log; open reads it in chunks, whatever its size.
 *   txn.ckpt     the recovery point: an offset below which every transaction has its marker
 *                durable in the log (any LSO ever observed qualifies). Written without fsync:
 *                an older or missing checkpoint is still correct, only slower to recover from.
 *
 * Recovery (sl_txnpart_open) scans the batch headers (no key needed) from
 * max(checkpoint, log start) to the log end: a transactional batch opens its producer's
 * transaction if none is open, a control batch closes it. The checkpoint is moved to the LSO at
 * open, when a marker is written, when a transaction opens on a partition that had none open and
 * at a clean close, so the scan covers at most what was appended since the oldest of: the open
 * transactions' starts, the last of those events.
 *
 * A marker ends its transaction here only once it is durable: sl_txnpart_write_marker syncs the
 * log itself; sl_txnpart_append_marker leaves the sync to the caller (the flusher), which reports
 * it with sl_txnpart_markers_synced. Until then the marker is remembered as unsynced (`uns`), so
 * a retry syncs rather than appending (and indexing) it again. */
#include "broker/sl_txnpart.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "storage/sl_log_internal.h"

#define SUB          "txn"
#define IDX_FILE     "aborted.idx"
#define CKPT_FILE    "txn.ckpt"
#define IDX_MAGIC    0x534c5441u /* "SLTA" */
#define CKPT_MAGIC   0x534c5443u /* "SLTC" */
#define IDX_REC      32
#define CKPT_LEN     20
#define SCAN_BATCHES 1024
#define ATTR_TXN     0x10
#define ATTR_CONTROL 0x20

typedef struct open_txn {
    int64_t pid;
    int64_t first;
} open_txn;

typedef struct ab_ent {
    int64_t pid, first, last; /* last: the abort marker's offset */
} ab_ent;

/* A marker appended and not yet durable (its sync failed, or the caller syncs it later): its
 * transaction stays open here (the LSO does not pass a marker that may still be lost) until a
 * sync succeeds. A retry of the same marker only syncs again: appending it twice would also
 * index the abort twice. */
typedef struct unsynced {
    int64_t pid, offset;
    int64_t bytes; /* the marker batch's size, for the wake-up of parked fetches */
    int16_t epoch;
    bool commit;
} unsynced;

struct sl_txnpart {
    sl_partition *p;
    char *dir;
    open_txn *open;
    size_t nopen, capopen;
    ab_ent *ab; /* in marker order (ascending `last`) */
    size_t nab, capab;
    unsynced *uns; /* markers waiting for a successful sync, in append order */
    size_t nuns, capuns;
    int64_t ckpt;     /* the checkpoint on disk (or being written), -1: none */
    bool idx_rewrite; /* the file holds an entry memory dropped: rewrite it whole next time */
    bool reported;    /* a marker failure was logged at ERROR; cleared by the next success */
};

/* ---- encoding ---- */

static uint64_t get64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}
static uint32_t get32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void enc_ent(uint8_t *b, const ab_ent *e) {
    sl_be32(b, IDX_MAGIC);
    sl_be64(b + 4, (uint64_t)e->pid);
    sl_be64(b + 12, (uint64_t)e->first);
    sl_be64(b + 20, (uint64_t)e->last);
    sl_be32(b + 28, sl_crc32c(0, b, 28));
}

static bool dec_ent(const uint8_t *b, ab_ent *e) {
    if (get32(b) != IDX_MAGIC || get32(b + 28) != sl_crc32c(0, b, 28)) return false;
    e->pid = (int64_t)get64(b + 4);
    e->first = (int64_t)get64(b + 12);
    e->last = (int64_t)get64(b + 20);
    return e->pid >= 0 && e->first >= 0 && e->first <= e->last;
}

static void path_of(const sl_txnpart *t, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", t->dir, name);
}

/* ---- in-memory tables ---- */

static open_txn *find_open(const sl_txnpart *t, int64_t pid) {
    for (size_t i = 0; i < t->nopen; i++)
        if (t->open[i].pid == pid) return &t->open[i];
    return NULL;
}

static sl_err add_open(sl_txnpart *t, int64_t pid, int64_t first) {
    if (t->nopen == t->capopen) {
        size_t cap = t->capopen ? t->capopen * 2 : 8;
        open_txn *n = realloc(t->open, cap * sizeof *n);
        if (!n) return SL_ENOMEM;
        t->open = n;
        t->capopen = cap;
    }
    t->open[t->nopen++] = (open_txn){pid, first};
    return SL_OK;
}

static void end_open(sl_txnpart *t, int64_t pid) {
    open_txn *o = find_open(t, pid);
    if (o) *o = t->open[--t->nopen];
}

static sl_err push_ab(sl_txnpart *t, const ab_ent *e) {
    if (t->nab == t->capab) {
        size_t cap = t->capab ? t->capab * 2 : 16;
        ab_ent *n = realloc(t->ab, cap * sizeof *n);
        if (!n) return SL_ENOMEM;
        t->ab = n;
        t->capab = cap;
    }
    t->ab[t->nab++] = *e;
    return SL_OK;
}

static int64_t lso_of(const sl_txnpart *t) {
    int64_t lso = sl_log_end_offset(t->p->log);
    for (size_t i = 0; i < t->nopen; i++)
        if (t->open[i].first < lso) lso = t->open[i].first;
    return lso;
}

/* ---- files ---- */

/* Replaces aborted.idx with the entries in memory (crash-safe: old or new file whole). */
static sl_err idx_rewrite(sl_txnpart *t) {
    size_t len = t->nab * IDX_REC;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return SL_ENOMEM;
    for (size_t i = 0; i < t->nab; i++) enc_ent(buf + i * IDX_REC, &t->ab[i]);
    sl_err e = sl_file_write_atomic(t->dir, IDX_FILE, buf, len, 0600);
    free(buf);
    if (!e) t->idx_rewrite = false;
    return e;
}

/* Rewrites aborted.idx after entries were dropped because the log start passed their markers.
 * Retention unlinks segments without a directory fsync; the entries must not become durably
 * gone while the segments holding the aborted data may still come back after a crash (a
 * read_committed fetch would then return that data as committed). The segments share the
 * directory, so syncing it first settles their removal. */
static sl_err idx_rewrite_trimmed(sl_txnpart *t) {
    sl_err e = sl_fsync_dir(t->dir);
    return e ? e : idx_rewrite(t);
}

/* Appends one entry to aborted.idx and makes it durable. */
static sl_err idx_append(sl_txnpart *t, const ab_ent *ent) {
    if (t->idx_rewrite) return idx_rewrite(t);
    char path[PATH_MAX];
    path_of(t, IDX_FILE, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return errno == ENOSPC ? SL_ENOSPC : SL_EIO;
    struct stat st;
    uint8_t rec[IDX_REC];
    enc_ent(rec, ent);
    sl_err e = SL_OK;
    bool created = fstat(fd, &st) == 0 && st.st_size == 0;
    if (!sl_write_all(fd, rec, sizeof rec) || fdatasync(fd) != 0)
        e = errno == ENOSPC ? SL_ENOSPC : SL_EIO;
    close(fd);
    if (!e && created) e = sl_fsync_dir(t->dir);
    if (e) t->idx_rewrite = true; /* a partial record may be there */
    return e;
}

/* Records `off` as the recovery point. No fsync: a checkpoint that is lost leaves the older one
 * (or none), which is as correct. A failure only costs recovery time: warned, not returned. */
static void ckpt_write(sl_txnpart *t, int64_t off) {
    if (off == t->ckpt) return;
    uint8_t b[CKPT_LEN];
    sl_be32(b, CKPT_MAGIC);
    sl_be32(b + 4, 1);
    sl_be64(b + 8, (uint64_t)off);
    sl_be32(b + 16, sl_crc32c(0, b, 16));
    char tmp[PATH_MAX], path[PATH_MAX];
    path_of(t, "." CKPT_FILE ".tmp", tmp, sizeof tmp);
    path_of(t, CKPT_FILE, path, sizeof path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && sl_write_all(fd, b, sizeof b);
    if (fd >= 0) close(fd);
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        (void)unlink(tmp);
        SL_WARN(SUB, "could not write the transaction checkpoint (recovery will scan more)",
                "dir=%s err=%s", t->dir, strerror(errno));
        return;
    }
    t->ckpt = off;
}

static int64_t ckpt_read(const sl_txnpart *t) {
    char path[PATH_MAX];
    path_of(t, CKPT_FILE, path, sizeof path);
    char *buf = NULL;
    size_t len = 0;
    if (sl_file_read(path, 64, &buf, &len)) return -1;
    int64_t off = -1;
    const uint8_t *b = (const uint8_t *)buf;
    if (len == CKPT_LEN && get32(b) == CKPT_MAGIC && get32(b + 4) == 1 &&
        get32(b + 16) == sl_crc32c(0, b, 16))
        off = (int64_t)get64(b + 8);
    free(buf);
    return off;
}

/* Loads aborted.idx in chunks, so its size costs no memory beyond the entries kept: drops the
 * entries whose marker lies below `start` (retention or DeleteRecords removed it), cuts a torn
 * tail (a partial or bad record with nothing good after it); SL_ECORRUPT when a bad record is
 * followed by a good one. *dirty: the file must be rewritten. */
static sl_err idx_load(sl_txnpart *t, int64_t start, bool *dirty) {
    char path[PATH_MAX];
    path_of(t, IDX_FILE, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_OK : SL_EIO;
    enum { CHUNK = 2048 * IDX_REC };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return SL_ENOMEM;
    }
    sl_err e = SL_OK;
    size_t have = 0, good = 0, dropped = 0, total = 0;
    int64_t prev = -1; /* the last good entry's marker offset, kept or dropped */
    bool bad = false, eof = false;
    while (!e && !eof) {
        ssize_t n = read(fd, buf + have, CHUNK - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            e = SL_EIO;
            break;
        }
        eof = n == 0;
        have += (size_t)n;
        total += (size_t)n;
        size_t i = 0;
        for (; !e && i + IDX_REC <= have; i += IDX_REC) {
            ab_ent ent;
            if (!dec_ent(buf + i, &ent) || ent.last <= prev) {
                bad = true;
                continue;
            }
            if (bad) {
                e = SL_ECORRUPT;
                break;
            }
            prev = ent.last;
            good++;
            if (ent.last < start)
                dropped++;
            else
                e = push_ab(t, &ent);
        }
        memmove(buf, buf + i, have - i); /* a partial record waits for the rest */
        have -= i;
    }
    free(buf);
    close(fd);
    if (e) return e;
    if (good * IDX_REC != total) {
        SL_WARN(SUB, "cut a torn tail of the aborted-transactions index",
                "dir=%s kept=%zu bytes=%zu", t->dir, good, total);
        *dirty = true;
    }
    if (dropped) *dirty = true; /* their markers are gone: of no use any more */
    return SL_OK;
}

/* True when the batch at `off` is a control batch of `pid` starting there. */
static bool is_marker_at(sl_log *log, int64_t off, int64_t pid) {
    if (off < sl_log_start_offset(log) || off >= sl_log_end_offset(log)) return false;
    sl_arena *a = sl_arena_new(4 * SL_BATCH_HEADER_SIZE);
    if (!a) return false;
    uint8_t *h = NULL;
    int n = 0;
    bool ok = false;
    sl_batch_info bi;
    if (!sl_log_read_headers(log, off, 1, a, &h, &n) && n == 1 &&
        sl_batch_parse(h, 12 + (size_t)INT32_MAX, &bi))
        ok = bi.base_offset == off && (bi.attributes & ATTR_CONTROL) && bi.producer_id == pid;
    sl_arena_free(a);
    return ok;
}

/* The cleaner removes an ABORT marker and then, on the loop, its entry (forget_aborted); a
 * crash in between leaves the entry, which must not outlive its marker. Removed markers lie
 * below the cleaner checkpoint, where the only entries left are those whose marker waits for
 * its delete horizon: each of those is checked against the log. */
static sl_err drop_cleaned(sl_txnpart *t, bool *dirty) {
    sl_cleaner_checkpoint ck;
    if (!t->nab || sl_cleaner_read_checkpoint(t->dir, &ck) != SL_OK) return SL_OK;
    size_t keep = 0;
    for (size_t i = 0; i < t->nab; i++) {
        const ab_ent *l = &t->ab[i];
        if (l->last < ck.offset && !is_marker_at(t->p->log, l->last, l->pid)) {
            SL_INFO(SUB, "dropped the aborted-transaction entry of a marker the cleaner removed",
                    "dir=%s producer_id=%" PRId64 " marker_offset=%" PRId64, t->dir, l->pid,
                    l->last);
            *dirty = true;
            continue;
        }
        t->ab[keep++] = *l;
    }
    t->nab = keep;
    return SL_OK;
}

/* Rebuilds the open transactions from the batch headers in [from, log end). */
static sl_err scan(sl_txnpart *t, int64_t from) {
    sl_log *log = t->p->log;
    int64_t off = from, end = sl_log_end_offset(log);
    while (off < end) {
        sl_arena *a = sl_arena_new((size_t)SCAN_BATCHES * SL_BATCH_HEADER_SIZE + 1024);
        if (!a) return SL_ENOMEM;
        uint8_t *h = NULL;
        int n = 0;
        sl_err e = sl_log_read_headers(log, off, SCAN_BATCHES, a, &h, &n);
        if (!e && n <= 0) e = SL_ECORRUPT;
        int64_t next = off;
        for (int i = 0; !e && i < n; i++, h += SL_BATCH_HEADER_SIZE) {
            sl_batch_info bi;
            if (!sl_batch_parse(h, 12 + (size_t)INT32_MAX, &bi) || bi.last_offset_delta < 0) {
                e = SL_ECORRUPT;
                break;
            }
            int64_t last = bi.base_offset + bi.last_offset_delta;
            if (last >= off && bi.producer_id >= 0) {
                if (bi.attributes & ATTR_CONTROL)
                    end_open(t, bi.producer_id);
                else if ((bi.attributes & ATTR_TXN) && !find_open(t, bi.producer_id))
                    e = add_open(t, bi.producer_id, bi.base_offset);
            }
            if (last + 1 > next) next = last + 1;
        }
        sl_arena_free(a);
        if (e) return e;
        if (next <= off) return SL_ECORRUPT;
        off = next;
    }
    return SL_OK;
}

/* ---- the interface ---- */

sl_err sl_txnpart_open(sl_partition *p) {
    if (!p->log) return SL_ESTATE;
    sl_txnpart *t = calloc(1, sizeof *t);
    if (!t || !(t->dir = strdup(p->log->dir))) {
        free(t);
        return SL_ENOMEM;
    }
    t->p = p;
    t->ckpt = ckpt_read(t);
    bool dirty = false;
    sl_log *log = p->log;
    int64_t start = sl_log_start_offset(log), end = sl_log_end_offset(log);
    sl_err e = idx_load(t, start, &dirty);
    if (!e) e = drop_cleaned(t, &dirty);
    if (!e) {
        /* Entries whose marker never became durable are the last ones (a crash keeps a prefix
         * of the log; entries are in marker order): those at or past the log end (markers
         * synced off the loop can leave several), then the last one if the batch at its offset
         * is not its marker (an append that failed after the entry). */
        for (bool check = true; t->nab && check;) {
            const ab_ent *l = &t->ab[t->nab - 1];
            check = l->last >= end;
            if (!check && is_marker_at(log, l->last, l->pid)) break;
            SL_WARN(SUB, "dropped an aborted-transaction entry whose marker is not in the log",
                    "dir=%s producer_id=%" PRId64 " marker_offset=%" PRId64, t->dir, l->pid,
                    l->last);
            t->nab--;
            dirty = true;
        }
        if (dirty) e = idx_rewrite_trimmed(t);
    }
    if (!e) {
        int64_t from = t->ckpt < start ? start : t->ckpt > end ? end : t->ckpt;
        e = scan(t, from);
    }
    if (e) {
        SL_ERROR(SUB, "cannot open the transaction state", "dir=%s err=%s (%s)", t->dir,
                 sl_errname(e), sl_strerror(e));
        t->p = NULL;
        sl_txnpart_free(t);
        return e;
    }
    ckpt_write(t, lso_of(t));
    p->txn = t;
    return SL_OK;
}

void sl_txnpart_free(sl_txnpart *t) {
    if (!t) return;
    /* A clean close records the recovery point, if the log is durable to its end and still
     * there (the registry frees the state of a deleted partition after detaching its log). */
    sl_log *log = t->p ? t->p->log : NULL;
    if (log && !atomic_load(&log->destroyed) &&
        sl_log_durable_offset(log) >= sl_log_end_offset(log))
        ckpt_write(t, lso_of(t));
    if (t->p && t->p->txn == t) t->p->txn = NULL;
    free(t->uns);
    free(t->open);
    free(t->ab);
    free(t->dir);
    free(t);
}

void sl_txnpart_on_append(sl_partition *p, int64_t pid, int16_t epoch, int64_t base_offset,
                          int64_t last_offset) {
    (void)epoch;
    (void)last_offset;
    sl_txnpart *t = p->txn;
    if (!t || pid < 0 || find_open(t, pid)) return;
    bool first = t->nopen == 0;
    if (add_open(t, pid, base_offset)) {
        SL_ERROR(SUB, "transaction state not updated (read_committed may see it early)",
                 "topic=%s partition=%d producer_id=%" PRId64 " err=%s", p->topic->name, p->index,
                 pid, sl_errname(SL_ENOMEM));
        return;
    }
    /* Nothing was open: recovery after a crash may start here rather than at the last event. */
    if (first) ckpt_write(t, base_offset);
}

bool sl_txnpart_is_open(const sl_partition *p, int64_t pid) {
    return p->txn && find_open(p->txn, pid) != NULL;
}

int64_t sl_txnpart_open_first(const sl_partition *p, int64_t pid) {
    const open_txn *o = p->txn ? find_open(p->txn, pid) : NULL;
    return o ? o->first : -1;
}

int64_t sl_txnpart_lso(const sl_partition *p) {
    if (!p->log) return -1;
    return p->txn ? lso_of(p->txn) : sl_log_end_offset(p->log);
}

/* Builds the control batch: one record, key [version 0][type], value [version 0][epoch]. */
static sl_err build_marker(sl_arena *a, int64_t pid, int16_t epoch, bool commit,
                           int32_t coordinator_epoch, uint8_t **out, size_t *len) {
    uint8_t key[4], val[6];
    sl_be16(key, 0);
    sl_be16(key + 2, commit ? 1 : 0);
    sl_be16(val, 0);
    sl_be32(val + 2, (uint32_t)coordinator_epoch);
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 64);
    sl_err e = sl_rec_builder_add(&rb, &(sl_rec_in){.key = {key, 4}, .value = {val, 6}});
    int64_t now = sl_wall_ms();
    if (!e) e = sl_rec_builder_seal(&rb, ATTR_TXN | ATTR_CONTROL, now, now, out, len);
    if (e) return e;
    sl_batch_info bi;
    if (!sl_batch_parse(*out, *len, &bi)) return SL_ECORRUPT;
    bi.producer_id = pid;
    bi.producer_epoch = epoch;
    bi.base_sequence = -1; /* markers carry no sequence, as Kafka's */
    sl_batch_reseal_like(*out, *len, &bi);
    return SL_OK;
}

static const unsynced *find_unsynced(const sl_txnpart *t, int64_t pid, int16_t epoch, bool commit) {
    for (size_t i = 0; i < t->nuns; i++)
        if (t->uns[i].pid == pid && t->uns[i].epoch == epoch && t->uns[i].commit == commit)
            return &t->uns[i];
    return NULL;
}

/* Room for one more, made before the append: once appended, a marker must be tracked. */
static sl_err reserve_unsynced(sl_txnpart *t) {
    if (t->nuns < t->capuns) return SL_OK;
    size_t cap = t->capuns ? t->capuns * 2 : 4;
    unsynced *n = realloc(t->uns, cap * sizeof *n);
    if (!n) return SL_ENOMEM;
    t->uns = n;
    t->capuns = cap;
    return SL_OK;
}

static bool log_refuses_writes(sl_log *log) {
    return atomic_load_explicit(&log->sync_failed, memory_order_acquire) != 0;
}

/* One ERROR per partition for a failing marker, however often the coordinator retries (every
 * second while the decision is pending): the log layer has said why, this says what it costs. */
static void report_failure(sl_txnpart *t, int64_t pid, int16_t epoch, bool commit, sl_err e) {
    if (t->reported) return;
    t->reported = true;
    sl_partition *p = t->p;
    if (t->nuns) { /* the marker the LSO waits for, rather than the one that found it stuck */
        pid = t->uns[0].pid;
        epoch = t->uns[0].epoch;
        commit = t->uns[0].commit;
    }
    SL_ERROR(SUB,
             "transaction marker not durable; read_committed consumers of this partition wait at "
             "its last stable offset until it is (the coordinator retries; after a failed fsync "
             "the log refuses writes until the broker restarts)",
             "topic=%s partition=%d producer_id=%" PRId64 " epoch=%d type=%s lso=%" PRId64
             " err=%s",
             p->topic->name, p->index, pid, epoch, commit ? "commit" : "abort", lso_of(t),
             sl_errname(e));
}

/* After a sync of the log ended with `e`: a failure is reported; on success the transactions
 * whose marker is durable now end here. */
static sl_err synced(sl_txnpart *t, sl_err e, int64_t pid, int16_t epoch, bool commit) {
    sl_partition *p = t->p;
    if (e) {
        report_failure(t, pid, epoch, commit, e);
        return e;
    }
    int64_t durable = sl_log_durable_offset(p->log), bytes = 0;
    size_t keep = 0, ended = 0;
    for (size_t i = 0; i < t->nuns; i++) {
        const unsynced *u = &t->uns[i];
        if (u->offset >= durable) { /* appended after the sync began */
            t->uns[keep++] = *u;
            continue;
        }
        open_txn *o = find_open(t, u->pid);
        if (o && o->first < u->offset) end_open(t, u->pid); /* not a later transaction of pid */
        bytes += u->bytes;
        ended++;
        SL_DEBUG(SUB, "marker written",
                 "topic=%s partition=%d producer_id=%" PRId64 " epoch=%d type=%s offset=%" PRId64,
                 p->topic->name, p->index, u->pid, u->epoch, u->commit ? "commit" : "abort",
                 u->offset);
    }
    t->nuns = keep;
    if (!ended) return SL_OK;
    if (t->reported && !keep) {
        SL_INFO(SUB, "transaction markers durable again", "topic=%s partition=%d markers=%zu",
                p->topic->name, p->index, ended);
        t->reported = false;
    }
    ckpt_write(t, lso_of(t));
    /* The LSO moved: wake the parked fetches (read_committed ones wait for exactly this). */
    sl_storage_local_notify(p, bytes);
    return SL_OK;
}

static sl_err settle(sl_txnpart *t, int64_t pid, int16_t epoch, bool commit) {
    return synced(t, sl_log_sync(t->p->log), pid, epoch, commit);
}

/* Appends the marker, not synced: the first half of a marker. */
static sl_err append_marker(sl_txnpart *t, int64_t pid, int16_t epoch, bool commit,
                            int32_t coordinator_epoch) {
    sl_partition *p = t->p;
    sl_log *log = p->log;
    /* The append would fail: do not index (and un-index) the abort on every retry. */
    if (log_refuses_writes(log)) {
        report_failure(t, pid, epoch, commit, SL_EIO);
        return SL_EIO;
    }
    sl_arena *a = sl_arena_new(512);
    if (!a) return SL_ENOMEM;
    uint8_t *batch = NULL;
    size_t len = 0;
    sl_err e = reserve_unsynced(t);
    if (!e) e = build_marker(a, pid, epoch, commit, coordinator_epoch, &batch, &len);
    if (e) goto out;
    const open_txn *o = find_open(t, pid);
    bool indexed = false;
    int64_t expect = sl_log_end_offset(log);
    if (!commit && o) {
        /* The entry first: a durable abort marker must always find its entry at open. */
        ab_ent ent = {pid, o->first, expect};
        if ((e = push_ab(t, &ent))) goto out;
        if ((e = idx_append(t, &ent))) {
            t->nab--;
            goto out;
        }
        indexed = true;
    }
    sl_batch_info bi;
    (void)sl_batch_parse(batch, len, &bi);
    int64_t base = -1;
    e = sl_log_append(log, batch, len, 1, bi.max_timestamp, &base);
    if (e) {
        if (indexed) {
            t->nab--;
            t->idx_rewrite = true;
            if (idx_rewrite(t))
                SL_WARN(SUB, "could not remove an aborted-transaction entry (dropped at open)",
                        "topic=%s partition=%d", p->topic->name, p->index);
        }
        goto out;
    }
    t->uns[t->nuns++] = (unsynced){pid, base, (int64_t)len, epoch, commit};
    if (indexed && base != expect) { /* the log assigns its end offset; keep the index true */
        t->ab[t->nab - 1].last = base;
        (void)idx_rewrite(t);
    }
    if (p->pstate) {
        (void)sl_pstate_record(p->pstate, &bi, base, sl_wall_ms());
        sl_pstate_after_append(p->pstate, log);
    }
out:
    sl_arena_free(a);
    return e;
}

sl_err sl_txnpart_write_marker(sl_partition *p, int64_t pid, int16_t epoch, bool commit,
                               int32_t coordinator_epoch) {
    sl_txnpart *t = p->txn;
    if (p->unavailable) return p->unavailable;
    if (!t || !p->log) return SL_ESTATE;
    /* Appended before, its sync failed: syncing is all that is left to do. */
    if (!find_unsynced(t, pid, epoch, commit)) {
        /* Another marker waits for its sync: durable first, so that at most the last index
         * entry can lack its marker after a crash. */
        if (t->nuns && !log_refuses_writes(p->log)) {
            sl_err e = settle(t, pid, epoch, commit);
            if (e) return e;
        }
        sl_err e = append_marker(t, pid, epoch, commit, coordinator_epoch);
        if (e) return e;
    }
    return settle(t, pid, epoch, commit);
}

sl_err sl_txnpart_append_marker(sl_partition *p, int64_t pid, int16_t epoch, bool commit,
                                int32_t coordinator_epoch) {
    sl_txnpart *t = p->txn;
    if (p->unavailable) return p->unavailable;
    if (!t || !p->log) return SL_ESTATE;
    if (find_unsynced(t, pid, epoch, commit)) return SL_OK;
    return append_marker(t, pid, epoch, commit, coordinator_epoch);
}

sl_err sl_txnpart_markers_synced(sl_partition *p, sl_err result) {
    sl_txnpart *t = p->txn;
    if (!t || !p->log) return SL_ESTATE;
    if (!t->nuns) return result;
    return synced(t, result, t->uns[0].pid, t->uns[0].epoch, t->uns[0].commit);
}

bool sl_txnpart_failing(const sl_partition *p) { return p->txn && p->txn->reported; }

size_t sl_txnpart_aborted_count(const sl_partition *p) { return p->txn ? p->txn->nab : 0; }

void sl_txnpart_log_start_moved(sl_partition *p) {
    sl_txnpart *t = p->txn;
    if (!t || !p->log) return;
    int64_t start = sl_log_start_offset(p->log);
    size_t drop = 0;
    while (drop < t->nab && t->ab[drop].last < start) drop++;
    if (!drop) return;
    memmove(t->ab, t->ab + drop, (t->nab - drop) * sizeof *t->ab);
    t->nab -= drop;
    if (t->capab > 64 && t->nab < t->capab / 4) { /* give a burst's memory back */
        ab_ent *n = realloc(t->ab, (t->capab / 2) * sizeof *n);
        if (n) t->ab = n, t->capab /= 2;
    }
    sl_err e = idx_rewrite_trimmed(t);
    if (e) /* the file keeps them; the next open drops them */
        SL_WARN(SUB, "could not trim the aborted-transactions index",
                "topic=%s partition=%d err=%s", p->topic->name, p->index, sl_errname(e));
    else
        SL_DEBUG(SUB, "trimmed the aborted-transactions index",
                 "topic=%s partition=%d dropped=%zu kept=%zu start_offset=%" PRId64, p->topic->name,
                 p->index, drop, t->nab, start);
}

sl_err sl_txnpart_aborted_below(const sl_partition *p, int64_t to, sl_cleaner_aborted **out,
                                size_t *n) {
    *out = NULL;
    *n = 0;
    const sl_txnpart *t = p->txn;
    if (!t) return SL_OK;
    size_t k = 0;
    for (size_t i = 0; i < t->nab; i++) k += t->ab[i].first < to;
    if (!k) return SL_OK;
    sl_cleaner_aborted *r = malloc(k * sizeof *r);
    if (!r) return SL_ENOMEM;
    for (size_t i = 0; i < t->nab; i++)
        if (t->ab[i].first < to)
            r[(*n)++] = (sl_cleaner_aborted){t->ab[i].pid, t->ab[i].first, t->ab[i].last};
    *out = r;
    return SL_OK;
}

void sl_txnpart_forget_aborted(sl_partition *p, const int64_t *marker_offsets, size_t n) {
    sl_txnpart *t = p->txn;
    if (!t || !n) return;
    /* Both ascend by marker offset: one merge. */
    size_t keep = 0, k = 0, drop = 0;
    for (size_t i = 0; i < t->nab; i++) {
        while (k < n && marker_offsets[k] < t->ab[i].last) k++;
        if (k < n && marker_offsets[k] == t->ab[i].last) {
            drop++;
            continue;
        }
        t->ab[keep++] = t->ab[i];
    }
    if (!drop) return;
    t->nab = keep;
    if (t->capab > 64 && t->nab < t->capab / 4) { /* give the memory back */
        ab_ent *s = realloc(t->ab, (t->capab / 2) * sizeof *s);
        if (s) t->ab = s, t->capab /= 2;
    }
    sl_err e = idx_rewrite(t);
    if (e) {
        t->idx_rewrite = true; /* the next append rewrites it whole */
        SL_WARN(SUB, "could not drop cleaned aborted-transaction entries (dropped at open)",
                "topic=%s partition=%d err=%s", p->topic->name, p->index, sl_errname(e));
    } else {
        SL_DEBUG(SUB, "dropped the aborted-transaction entries of removed markers",
                 "topic=%s partition=%d dropped=%zu kept=%zu", p->topic->name, p->index, drop,
                 t->nab);
    }
}

int sl_txnpart_aborted(const sl_partition *p, int64_t from, int64_t to, sl_arena *a,
                       sl_txn_aborted **out) {
    *out = NULL;
    const sl_txnpart *t = p->txn;
    if (!t || !p->log || to <= from) return 0;
    int64_t start = sl_log_start_offset(p->log);
    if (from < start) from = start;
    /* First entry whose marker is at or after `from` (entries ascend by marker offset). */
    size_t lo = 0, hi = t->nab;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ab[mid].last < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = 0;
    for (size_t i = lo; i < t->nab; i++)
        if (t->ab[i].first < to) n++;
    if (!n) return 0;
    sl_txn_aborted *r = sl_arena_alloc(a, (size_t)n * sizeof *r);
    if (!r) return -1;
    int k = 0;
    for (size_t i = lo; i < t->nab; i++)
        if (t->ab[i].first < to)
            r[k++] = (sl_txn_aborted){.producer_id = t->ab[i].pid, .first_offset = t->ab[i].first};
    *out = r;
    return n;
}
