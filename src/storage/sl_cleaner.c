/* Log cleaner (compaction). The rules and the swap protocol are documented in docs/compaction.md,
 * "How the cleaner works (internal)"; keep them in sync. Segment and frame layouts are those of
 * docs/on-disk-format.md: sl_log.c owns them, and its internal API (sl_log_internal.h) gives the
 * cleaner the file header, the frame open/seal and the index bookkeeping of a segment. */
#include "sl_cleaner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "sl_frame.h"
#include "sl_log_internal.h"
#include "sl_storage_hooks.h"

#define SUB "cleaner"

#define CLEANED_EXT ".cleaned"
#define CKPT_FILE   "cleaner-checkpoint"
#define SWAP_FILE   "cleaner-swap"
#define SWAP_TMP    "cleaner-swap.tmp"
#define CKPT_TMP    "cleaner-checkpoint.tmp"
#define CK_MAGIC    0x534C434Bu /* "SLCK" */
#define CK_SIZE     28          /* magic, version, flags, offset, horizon, CRC */
#define CK_GROUPS   0x0001      /* flag: the merged groups follow (manifest) */
#define GROUPS_MAX  (1 << 20)   /* more groups than segments a log may hold: damaged */

/* v2 batch attribute bits (KIP-98, KIP-534). */
#define ATTR_TXN            0x10
#define ATTR_CONTROL        0x20
#define ATTR_DELETE_HORIZON 0x40

int sl_cleaner__crash_after;

static const char *const k_ext[3] = {".log", ".index", ".timeindex"};

/* ---- small I/O helpers ------------------------------------------------------------------- */

static sl_err errno_err(int e) {
    switch (e) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return SL_ENOSPC;
    case ENOMEM:
        return SL_ENOMEM;
    default:
        return SL_EIO;
    }
}

static sl_err pwrite_all(int fd, const uint8_t *p, size_t n, int64_t off) {
    while (n) {
        struct iovec iov = {(void *)(uintptr_t)p, n};
        ssize_t w = sl_storage_pwritev(fd, &iov, 1, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_err(errno);
        if (w == 0) return SL_EIO;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return SL_OK;
}

static sl_err pread_all(int fd, uint8_t *p, size_t n, int64_t off) {
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno_err(errno);
        if (r == 0) return SL_ECORRUPT; /* shorter than the segment said */
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return SL_OK;
}

static sl_err fsync_fd(int fd) { return sl_storage_fsync(fd) == 0 ? SL_OK : errno_err(errno); }

static sl_err fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_err(errno);
    sl_err e = fsync_fd(fd);
    close(fd);
    return e;
}

static void seg_file(char *out, size_t cap, const char *dir, int64_t base, int k, bool cleaned) {
    snprintf(out, cap, "%s/%020" PRId64 "%s%s", dir, base, k_ext[k], cleaned ? CLEANED_EXT : "");
}

static void unlink_cleaned(const char *dir, int64_t base) {
    for (int k = 0; k < 3; k++) {
        char p[4096];
        seg_file(p, sizeof p, dir, base, k, true);
        (void)unlink(p);
    }
}

/* "<20 digits><ext>" exactly (sl_log.c names segments so). */
static bool parse_seg_name(const char *name, size_t len, int *k, int64_t *base) {
    for (int i = 0; i < 3; i++) {
        size_t el = strlen(k_ext[i]);
        if (len != 20 + el || memcmp(name + 20, k_ext[i], el) != 0) continue;
        int64_t v = 0;
        for (int d = 0; d < 20; d++) {
            if (name[d] < '0' || name[d] > '9') return false;
            if (v > (INT64_MAX - (name[d] - '0')) / 10) return false;
            v = v * 10 + (name[d] - '0');
        }
        *k = i;
        *base = v;
        return true;
    }
    return false;
}

/* ---- checkpoint and swap manifest (one format) -------------------------------------------- */

static void ck_encode(uint8_t b[CK_SIZE], const sl_cleaner_checkpoint *ck, uint16_t flags) {
    sl_be32(b, CK_MAGIC);
    sl_be16(b + 4, 1);
    sl_be16(b + 6, flags);
    sl_be64(b + 8, (uint64_t)ck->offset);
    sl_be64(b + 16, (uint64_t)ck->horizon_ms);
    sl_be32(b + 24, sl_crc32c(0, b, 24));
}

static sl_err ck_read_file(const char *path, sl_cleaner_checkpoint *out, bool *found) {
    *found = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_OK : errno_err(errno);
    *found = true;
    uint8_t b[CK_SIZE + 1];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    /* A manifest that merged segments names its groups after the record (CK_GROUPS); it
     * becomes the checkpoint as it is, and the checkpoint's reader ignores them. */
    bool groups = n > 0 && (size_t)n >= CK_SIZE && (sl_get_be16(b + 6) & CK_GROUPS);
    if ((n != CK_SIZE && !(groups && n > CK_SIZE)) || sl_get_be32(b) != CK_MAGIC ||
        sl_get_be16(b + 4) != 1 || sl_get_be32(b + 24) != sl_crc32c(0, b, 24) ||
        (int64_t)sl_get_be64(b + 8) < 0)
        return SL_ECORRUPT;
    out->offset = (int64_t)sl_get_be64(b + 8);
    out->horizon_ms = (int64_t)sl_get_be64(b + 16);
    return SL_OK;
}

sl_err sl_cleaner_read_checkpoint(const char *dir, sl_cleaner_checkpoint *out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/" CKPT_FILE, dir);
    sl_cleaner_checkpoint ck = {0, -1};
    bool found;
    sl_err e = ck_read_file(p, &ck, &found);
    if (e) {
        SL_ERROR(SUB, "cleaner checkpoint unreadable", "file=%s err=%s", p, sl_errname(e));
        return e;
    }
    *out = ck;
    return SL_OK;
}

/* ---- recovery (sl_log_open) --------------------------------------------------------------- */

/* The manifest is written (fsynced, renamed into place, directory fsynced) only after every
 * `.cleaned` file of its run is whole and durable, and a run refuses to start while one is in
 * place, so: manifest present = every `.cleaned` file belongs to the decided swap (roll forward);
 * no manifest = they are an undecided run's (remove them). A `.cleaned` file whose segment was
 * deleted meanwhile (retention) is removed either way: a deleted segment never comes back. */
/* The merged groups a manifest names: (first base, end offset) pairs, malloc'd into *g (NULL and
 * 0 when it names none). SL_ECORRUPT when the list fails its checks. */
static sl_err read_groups(const char *path, int64_t **g, size_t *ng) {
    *g = NULL;
    *ng = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_err(errno);
    uint8_t h[CK_SIZE + 4];
    sl_err e = pread_all(fd, h, CK_SIZE, 0);
    if (e || !(sl_get_be16(h + 6) & CK_GROUPS)) {
        close(fd);
        return e == SL_ECORRUPT ? SL_OK : e; /* a short file: ck_read_file judges it */
    }
    uint8_t *b = NULL;
    uint32_t n = 0;
    if (!(e = pread_all(fd, h + CK_SIZE, 4, CK_SIZE))) {
        n = sl_get_be32(h + CK_SIZE);
        if (n == 0 || n > GROUPS_MAX) e = SL_ECORRUPT;
    }
    size_t len = 4 + (size_t)n * 16 + 4;
    if (!e && !(b = malloc(len))) e = SL_ENOMEM;
    if (!e) e = pread_all(fd, b, len, CK_SIZE);
    close(fd);
    if (!e && sl_get_be32(b + len - 4) != sl_crc32c(0, b, len - 4)) e = SL_ECORRUPT;
    if (!e && !(*g = malloc((size_t)n * 2 * sizeof **g))) e = SL_ENOMEM;
    for (uint32_t i = 0; !e && i < n; i++) {
        (*g)[2 * i] = (int64_t)sl_get_be64(b + 4 + i * 16);
        (*g)[2 * i + 1] = (int64_t)sl_get_be64(b + 12 + i * 16);
        if ((*g)[2 * i] < 0 || (*g)[2 * i + 1] <= (*g)[2 * i]) e = SL_ECORRUPT;
    }
    free(b);
    if (e) {
        free(*g);
        *g = NULL;
    } else {
        *ng = n;
    }
    return e;
}

/* Deletes the files (data, indexes, and `.cleaned` ones) of every segment with a base in
 * (first, end): the members a merged group replaced. Returns how many went. */
static int unlink_members(DIR *d, int64_t first, int64_t end) {
    rewinddir(d);
    struct dirent *de;
    int n = 0;
    size_t el = strlen(CLEANED_EXT);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > el && strcmp(de->d_name + len - el, CLEANED_EXT) == 0) len -= el;
        int k;
        int64_t base;
        if (!parse_seg_name(de->d_name, len, &k, &base) || base <= first || base >= end) continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) n++;
    }
    return n;
}

/* The lowest base of a segment data file in (first, end); INT64_MAX when there is none. */
static int64_t lowest_member(DIR *d, int64_t first, int64_t end) {
    rewinddir(d);
    struct dirent *de;
    int64_t low = INT64_MAX;
    while ((de = readdir(d)) != NULL) {
        int k;
        int64_t base;
        if (parse_seg_name(de->d_name, strlen(de->d_name), &k, &base) && k == 0 && base > first &&
            base < end && base < low)
            low = base;
    }
    return low;
}

static sl_err write_file(const char *path, const uint8_t *b, size_t n);

/* Replaces the checkpoint by `ck` (fsynced file, renamed into place) and removes the manifest;
 * the caller fsyncs the directory. Instead of renaming a manifest that names merged groups (the
 * checkpoint stays the 28-byte record older builds read), or when the swap left a group
 * unapplied: its members are not cleaned, so the checkpoint must not pass them (a later clean
 * would never drop their older values, and one of them could outlive its key's tombstone). */
static sl_err put_checkpoint(const char *dir, const sl_cleaner_checkpoint *ck) {
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/" CKPT_TMP, dir);
    snprintf(path, sizeof path, "%s/" CKPT_FILE, dir);
    uint8_t b[CK_SIZE];
    ck_encode(b, ck, 0);
    sl_err e = write_file(tmp, b, sizeof b);
    if (!e && rename(tmp, path) != 0) e = errno_err(errno);
    snprintf(path, sizeof path, "%s/" SWAP_FILE, dir);
    if (!e && unlink(path) != 0) e = errno_err(errno);
    return e;
}

sl_err sl_cleaner__recover(const char *dir) {
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/" SWAP_TMP, dir);
    bool changed = unlink(p) == 0;
    snprintf(p, sizeof p, "%s/" CKPT_TMP, dir);
    changed |= unlink(p) == 0;
    snprintf(p, sizeof p, "%s/" SWAP_FILE, dir);
    struct stat st;
    bool decided = stat(p, &st) == 0;
    int64_t *groups = NULL;
    size_t ngroups = 0;
    if (decided) {
        /* Before anything moves: a merged survivor next to its old members would overlap them. */
        sl_err ge = read_groups(p, &groups, &ngroups);
        if (ge) {
            SL_ERROR(SUB, "damaged compaction manifest; cannot complete its swap", "file=%s err=%s",
                     p, sl_errname(ge));
            return ge;
        }
    }
    DIR *d = opendir(dir);
    if (!d) {
        free(groups);
        return errno_err(errno);
    }
    sl_err e = SL_OK;
    struct dirent *de;
    int moved = 0, removed = 0;
    while (!e && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name), el = strlen(CLEANED_EXT);
        if (n <= el || strcmp(de->d_name + n - el, CLEANED_EXT) != 0) continue;
        int k;
        int64_t base;
        if (!parse_seg_name(de->d_name, n - el, &k, &base)) continue;
        char data[64];
        snprintf(data, sizeof data, "%020" PRId64 ".log", base);
        bool live = fstatat(dirfd(d), data, &st, 0) == 0;
        if (decided && live) {
            char to[64];
            memcpy(to, de->d_name, n - el);
            to[n - el] = 0;
            if (renameat(dirfd(d), de->d_name, dirfd(d), to) != 0) {
                e = errno_err(errno);
                SL_ERROR(SUB, "cannot complete an interrupted compaction swap",
                         "dir=%s file=%s reason=%s", dir, de->d_name, strerror(errno));
            }
            moved++;
        } else {
            (void)unlinkat(dirfd(d), de->d_name, 0);
            removed++;
        }
        changed = true;
    }
    /* A group whose first segment is in place (its cleaned file renamed over it, now or before
     * the crash) replaces its other members, some of which may be gone already. One whose first
     * segment retention deleted was never applied: its members stay as they were, uncleaned,
     * and the checkpoint goes back to the first of them. */
    int64_t low = INT64_MAX;
    for (size_t i = 0; !e && i < ngroups; i++) {
        char data[64];
        snprintf(data, sizeof data, "%020" PRId64 ".log", groups[2 * i]);
        if (fstatat(dirfd(d), data, &st, 0) != 0) {
            int64_t l = lowest_member(d, groups[2 * i], groups[2 * i + 1]);
            if (l < low) low = l;
            continue;
        }
        int n = unlink_members(d, groups[2 * i], groups[2 * i + 1]);
        removed += n;
        changed |= n > 0;
    }
    free(groups);
    closedir(d);
    if (e) return e;
    if (changed && (e = fsync_dir(dir)) != SL_OK) return e;
    if (decided) {
        sl_cleaner_checkpoint ck;
        bool found;
        snprintf(q, sizeof q, "%s/" CKPT_FILE, dir);
        if (ck_read_file(p, &ck, &found) == SL_OK) {
            if (low < ck.offset) ck.offset = low;
            if (ngroups > 0) {
                if ((e = put_checkpoint(dir, &ck)) != SL_OK) return e;
            } else if (rename(p, q) != 0) {
                return errno_err(errno);
            }
        } else {
            /* Cannot happen short of disk damage (it was fsynced before being named): the swap
             * is complete anyway; an older checkpoint only means more work next time. */
            SL_ERROR(SUB, "damaged compaction manifest; keeping the previous checkpoint", "file=%s",
                     p);
            (void)unlink(p);
        }
        if ((e = fsync_dir(dir)) != SL_OK) return e;
    }
    if (moved || removed)
        SL_WARN(SUB,
                decided ? "completed an interrupted compaction swap"
                        : "removed the files of an interrupted compaction",
                "dir=%s renamed=%d removed=%d", dir, moved, removed);
    return SL_OK;
}

/* ---- the job ------------------------------------------------------------------------------ */

/* One reserved segment: the loop's snapshot, then what run wrote for it. */
typedef struct jseg {
    int64_t base, next, size, created_ms;
    /* Output (run). */
    bool cleaned;      /* `.cleaned` files written, durable, and different from the old ones */
    bool gone;         /* deleted before run opened it */
    int nmerged;       /* cleaned: how many following segments its file also holds (merged) */
    int64_t group_end; /* cleaned: next offset of the group (its last member's) */
    sl_seg *out;       /* the rewritten segment as sl_log keeps it (next, size, indexes); commit
                        * hands it to the log */
    /* Keys (prepare, on the loop): private AEAD copies only, no sl_dek reference. The sealer's
     * DEK is fresh and seals this one segment's `.cleaned` file, once. */
    sl_seg_opener opener;
    sl_seg_sealer sealer;
} jseg;

struct sl_cleaner_job {
    sl_log *log; /* referenced; the loop's, touched only by prepare and commit */
    char *dir;
    sl_cleaner_config cfg;
    int64_t now_ms;
    int32_t index_interval;
    jseg *segs;
    int nsegs;
    sl_cleaner_aborted *ab; /* aborted transactions below the cleanable end, by first offset */
    size_t nab;
    size_t nremoved_cap; /* of res.removed_abort_markers */
    atomic_bool cancel;  /* sl_cleaner_cancel: stop between frames */
    int steps;           /* durable steps taken (simulated crashes) */
    bool crashed;        /* a simulated crash stopped it */
    bool decided;        /* the manifest is in place */
    sl_cleaner_result res;
};

/* Test hook: true when the simulated crash happens now. */
static bool crash_now(sl_cleaner_job *j) {
    if (sl_cleaner__crash_after > 0 && ++j->steps >= sl_cleaner__crash_after) {
        j->crashed = true;
        return true;
    }
    return false;
}

void sl_cleaner_config_default(sl_cleaner_config *c) {
    c->delete_retention_ms = 24LL * 3600 * 1000;
    c->min_compaction_lag_ms = 0;
    c->max_compaction_lag_ms = INT64_MAX;
    c->min_cleanable_dirty_ratio = 0.5;
    c->offset_map_bytes = 128u << 20;
    c->io_buffer_bytes = 1u << 20;
    c->max_inflate_bytes = 64u << 20;
    c->max_dirty_segments = 0;
    c->segment_bytes = 0;
}

/* Index of the first segment the cleaner may not touch: the active one, or the first closed one
 * that is damaged, reserved, encrypted while the log has no keys, holds a record newer than
 * now - min lag, or reaches past the last stable offset (an open transaction's data must not be
 * judged before its outcome). */
static int first_uncleanable(const sl_log *log, const sl_cleaner_config *c, int64_t now_ms,
                             int64_t stable_end) {
    for (int i = 0; i < log->nsegs - 1; i++) {
        const sl_seg *s = log->segs[i];
        if (s->bad || s->reenc_busy || (s->enc && !log->has_keys)) return i;
        if (s->next > stable_end) return i;
        if (c->min_compaction_lag_ms > 0 && s->max_ts > now_ms - c->min_compaction_lag_ms) return i;
    }
    return log->nsegs - 1;
}

void sl_cleaner_assess(const sl_log *log, const sl_cleaner_config *cfg,
                       const sl_cleaner_checkpoint *ck, int64_t now_ms,
                       sl_cleaner_assessment *out) {
    sl_cleaner_assess_txn(log, cfg, ck, INT64_MAX, now_ms, out);
}

void sl_cleaner_assess_txn(const sl_log *log, const sl_cleaner_config *cfg,
                           const sl_cleaner_checkpoint *ck, int64_t stable_end, int64_t now_ms,
                           sl_cleaner_assessment *out) {
    memset(out, 0, sizeof *out);
    int u = first_uncleanable(log, cfg, now_ms, stable_end);
    int64_t end = log->segs[u]->base, first = ck->offset;
    if (first < log->segs[0]->base) first = log->segs[0]->base;
    if (first > end) first = end;
    out->first_dirty = first;
    out->cleanable_end = end;
    int64_t oldest_dirty = -1;
    for (int i = 0; i < u; i++) {
        const sl_seg *s = log->segs[i];
        if (s->next <= first) {
            out->clean_bytes += s->size;
        } else {
            out->dirty_bytes += s->size;
            if (oldest_dirty < 0) oldest_dirty = s->created_ms;
        }
    }
    int64_t total = out->clean_bytes + out->dirty_bytes;
    out->dirty_ratio = total ? (double)out->dirty_bytes / (double)total : 0;
    out->lag_exceeded = out->dirty_bytes > 0 && cfg->max_compaction_lag_ms != INT64_MAX &&
                        now_ms - oldest_dirty >= cfg->max_compaction_lag_ms;
    out->tombstones_expired = total > 0 && ck->horizon_ms >= 0 && now_ms >= ck->horizon_ms;
    out->due = (out->dirty_bytes > 0 && out->dirty_ratio >= cfg->min_cleanable_dirty_ratio) ||
               out->lag_exceeded || out->tombstones_expired;
}

static void job_free(sl_cleaner_job *j) {
    if (!j) return;
    for (int i = 0; i < j->nsegs; i++) {
        sl_log__seg_unref(j->segs[i].out);
        sl_seg_opener_clear(&j->segs[i].opener);
        sl_seg_sealer_clear(&j->segs[i].sealer);
    }
    free(j->segs);
    free(j->dir);
    free(j->ab);
    sl_cleaner_result_free(&j->res);
    free(j);
}

void sl_cleaner_result_free(sl_cleaner_result *res) {
    if (!res) return;
    free(res->removed_abort_markers);
    res->removed_abort_markers = NULL;
    res->nremoved_abort = 0;
}

static int cmp_first(const void *a, const void *b) {
    const sl_cleaner_aborted *x = a, *y = b;
    if (x->first_offset != y->first_offset) return x->first_offset < y->first_offset ? -1 : 1;
    return x->marker_offset < y->marker_offset ? -1 : x->marker_offset > y->marker_offset;
}

/* The aborted entries run needs (first offset below the cleanable end), sorted by first offset.
 * More than `cap` lowers the end to the first entry left out: a segment wholly below it holds no
 * data of that transaction. *n is lowered with it. */
static sl_err copy_aborted(sl_cleaner_job *j, const sl_log *log, const sl_cleaner_txn *txn,
                           int *n) {
    int64_t end = log->segs[*n]->base;
    size_t k = 0, cap = j->cfg.offset_map_bytes / 64;
    if (cap < 16) cap = 16;
    for (size_t i = 0; i < txn->nab; i++) k += txn->ab[i].first_offset < end;
    if (!k) return SL_OK;
    if (!(j->ab = malloc(k * sizeof *j->ab))) return SL_ENOMEM;
    for (size_t i = 0; i < txn->nab; i++)
        if (txn->ab[i].first_offset < end) j->ab[j->nab++] = txn->ab[i];
    qsort(j->ab, j->nab, sizeof *j->ab, cmp_first);
    if (j->nab > cap) {
        end = j->ab[cap].first_offset;
        j->nab = cap;
        while (*n > 0 && log->segs[*n - 1]->next > end) (*n)--;
    }
    return SL_OK;
}

sl_err sl_cleaner_prepare(sl_log *log, const sl_cleaner_config *cfg, int64_t now_ms,
                          sl_cleaner_job **job) {
    return sl_cleaner_prepare_txn(log, cfg, NULL, NULL, now_ms, job);
}

sl_err sl_cleaner_prepare_txn(sl_log *log, const sl_cleaner_config *cfg,
                              const sl_cleaner_checkpoint *ck, const sl_cleaner_txn *txn,
                              int64_t now_ms, sl_cleaner_job **job) {
    *job = NULL;
    if (log->closed || atomic_load_explicit(&log->sync_failed, memory_order_acquire)) return SL_EIO;
    int n = first_uncleanable(log, cfg, now_ms, txn ? txn->stable_end : INT64_MAX);
    if (ck && cfg->max_dirty_segments > 0) {
        /* The window starts at the first dirty segment, where the last clean stopped: a cap
         * counted from the log's start would take the same clean segments every time. */
        int d = 0;
        while (d < n && log->segs[d]->next <= ck->offset) d++;
        if (n - d > cfg->max_dirty_segments) n = d + cfg->max_dirty_segments;
    }
    if (n <= 0) return SL_OK;
    sl_cleaner_job *j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(log->dir))) {
        job_free(j);
        return SL_ENOMEM;
    }
    j->cfg = *cfg;
    if (j->cfg.io_buffer_bytes < 4096) j->cfg.io_buffer_bytes = 4096;
    if (j->cfg.offset_map_bytes < 1024) j->cfg.offset_map_bytes = 1024;
    if (txn && copy_aborted(j, log, txn, &n) != SL_OK) {
        job_free(j);
        return SL_ENOMEM;
    }
    if (n <= 0) {
        job_free(j);
        return SL_OK;
    }
    if (!(j->segs = calloc((size_t)n, sizeof *j->segs))) {
        job_free(j);
        return SL_ENOMEM;
    }
    j->now_ms = now_ms;
    j->index_interval = log->cfg.index_interval_bytes;
    j->nsegs = n;
    j->res.bad_base = -1;
    atomic_init(&j->cancel, false);
    for (int i = 0; i < n; i++) {
        sl_seg *s = log->segs[i];
        j->segs[i] =
            (jseg){.base = s->base, .next = s->next, .size = s->size, .created_ms = s->created_ms};
        sl_err e = sl_log__rewrite_keys(log, i, &j->segs[i].opener, &j->segs[i].sealer);
        if (e) {
            SL_WARN(SUB, "no keys to clean a segment", "dir=%s base=%" PRId64 " err=%s", log->dir,
                    s->base, sl_errname(e));
            job_free(j); /* nothing reserved yet */
            return e;
        }
    }
    /* Re-encryption must not rewrite what the cleaner is rewriting (and vice versa). */
    for (int i = 0; i < n; i++) log->segs[i]->reenc_busy = true;
    j->log = log;
    sl_log__ref(log);
    *job = j;
    return SL_OK;
}

/* ---- offset map --------------------------------------------------------------------------- */

/* Key → latest offset over the dirty range, in a fixed table sized by the budget. Keys are
 * hashed with SHA-256 under a random per-run salt, truncated to 128 bits: no one can choose two
 * keys that collide (a collision would drop the older key's latest record). */
typedef struct omap_ent {
    uint8_t h[16];
    int64_t off1; /* offset + 1; 0: empty slot */
} omap_ent;

typedef struct omap {
    omap_ent *t;
    size_t slots, n, max;
    EVP_MD_CTX *salted, *tmp;
} omap;

static void omap_free(omap *m) {
    free(m->t);
    EVP_MD_CTX_free(m->salted);
    EVP_MD_CTX_free(m->tmp);
    memset(m, 0, sizeof *m);
}

static sl_err omap_init(omap *m, size_t budget) {
    memset(m, 0, sizeof *m);
    m->slots = budget / sizeof(omap_ent);
    if (m->slots < 4) m->slots = 4;
    m->max = m->slots * 3 / 4; /* linear probing stays short below this load */
    uint8_t salt[32];
    if (!(m->t = calloc(m->slots, sizeof *m->t)) || !(m->salted = EVP_MD_CTX_new()) ||
        !(m->tmp = EVP_MD_CTX_new())) {
        omap_free(m);
        return SL_ENOMEM;
    }
    if (RAND_bytes(salt, sizeof salt) != 1 || !EVP_DigestInit_ex(m->salted, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(m->salted, salt, sizeof salt)) {
        omap_free(m);
        return SL_EIO;
    }
    return SL_OK;
}

static bool omap_hash(omap *m, sl_bytes key, uint8_t h[16]) {
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    if (!EVP_MD_CTX_copy_ex(m->tmp, m->salted) ||
        (key.len > 0 && !EVP_DigestUpdate(m->tmp, key.p, (size_t)key.len)) ||
        !EVP_DigestFinal_ex(m->tmp, md, &ml) || ml < 16)
        return false;
    memcpy(h, md, 16);
    return true;
}

static omap_ent *omap_slot(omap *m, const uint8_t h[16]) {
    size_t i = (size_t)(sl_get_be64(h) % m->slots);
    while (m->t[i].off1 && memcmp(m->t[i].h, h, 16) != 0) i = (i + 1) % m->slots;
    return &m->t[i];
}

static void omap_put(omap *m, const uint8_t h[16], int64_t off) {
    omap_ent *e = omap_slot(m, h);
    if (!e->off1) {
        memcpy(e->h, h, 16);
        m->n++;
    }
    if (off + 1 > e->off1) e->off1 = off + 1;
}

static int64_t omap_get(omap *m, const uint8_t h[16]) {
    if (!m->t) return -1;
    omap_ent *e = omap_slot(m, h);
    return e->off1 ? e->off1 - 1 : -1;
}

/* ---- transactions: the walk both passes share ------------------------------------------- */

/* Kafka's CleanedTransactionMetadata, walked in offset order over the batches a pass reads. Per
 * producer: the abort marker of its aborted transaction in force (data batches of that producer
 * below it are aborted), and what was traversed since its last control batch. */
typedef struct tw_ent {
    int64_t pid1;     /* producer id + 1; 0: empty slot */
    int64_t marker;   /* abort marker offset of the aborted transaction in force; -1: none */
    bool seen_abort;  /* an aborted data batch was dropped since the last marker */
    bool kept_commit; /* a non-aborted transactional batch kept records since the last marker */
} tw_ent;

typedef struct txn_walk {
    const sl_cleaner_aborted *ab; /* the job's, by first offset */
    size_t nab, next;
    tw_ent *t;
    size_t cap, n;
} txn_walk;

enum { TW_KEEP, TW_DISCARDABLE };

static void tw_init(txn_walk *w, const sl_cleaner_job *j) {
    memset(w, 0, sizeof *w);
    w->ab = j->ab;
    w->nab = j->nab;
}

static void tw_free(txn_walk *w) {
    free(w->t);
    memset(w, 0, sizeof *w);
}

static size_t tw_hash(int64_t pid, size_t cap) {
    uint64_t v = (uint64_t)pid * 0x9E3779B97F4A7C15ull;
    return (size_t)(v >> 17) & (cap - 1);
}

/* pid's entry; created when `add` (NULL only then, for want of memory). */
static tw_ent *tw_get(txn_walk *w, int64_t pid, bool add) {
    if (w->cap) {
        for (size_t i = tw_hash(pid, w->cap);; i = (i + 1) & (w->cap - 1)) {
            if (w->t[i].pid1 == pid + 1) return &w->t[i];
            if (!w->t[i].pid1) break;
        }
    }
    if (!add) return NULL;
    if ((w->n + 1) * 2 > w->cap) { /* grow (power of two, at most half full) */
        size_t cap = w->cap ? w->cap * 2 : 64;
        tw_ent *t = calloc(cap, sizeof *t);
        if (!t) return NULL;
        for (size_t i = 0; i < w->cap; i++) {
            if (!w->t[i].pid1) continue;
            size_t k = tw_hash(w->t[i].pid1 - 1, cap);
            while (t[k].pid1) k = (k + 1) & (cap - 1);
            t[k] = w->t[i];
        }
        free(w->t);
        w->t = t;
        w->cap = cap;
    }
    size_t i = tw_hash(pid, w->cap);
    while (w->t[i].pid1) i = (i + 1) & (w->cap - 1);
    w->t[i] = (tw_ent){.pid1 = pid + 1, .marker = -1};
    w->n++;
    return &w->t[i];
}

/* Puts in force every aborted transaction that started at or before `off`. */
static sl_err tw_advance(txn_walk *w, int64_t off) {
    for (; w->next < w->nab && w->ab[w->next].first_offset <= off; w->next++) {
        const sl_cleaner_aborted *a = &w->ab[w->next];
        if (a->producer_id < 0) continue;
        tw_ent *e = tw_get(w, a->producer_id, true);
        if (!e) return SL_ENOMEM;
        e->marker = a->marker_offset;
    }
    return SL_OK;
}

/* A data batch: *aborted when it is transactional and its producer's aborted transaction is in
 * force at its offset (the bound on the marker offset also ignores an entry whose marker an
 * earlier clean removed, should it still be listed). */
static sl_err tw_data(txn_walk *w, const sl_batch_info *bi, bool *aborted) {
    *aborted = false;
    sl_err e = tw_advance(w, bi->base_offset);
    if (e || !(bi->attributes & ATTR_TXN) || bi->producer_id < 0) return e;
    tw_ent *t = tw_get(w, bi->producer_id, false);
    if (t && t->marker > bi->base_offset) {
        *aborted = true;
        t->seen_abort = true;
    }
    return SL_OK;
}

/* A committed (not aborted) transactional batch kept records: its COMMIT marker stays. */
static sl_err tw_kept(txn_walk *w, const sl_batch_info *bi) {
    if (!(bi->attributes & ATTR_TXN) || bi->producer_id < 0) return SL_OK;
    tw_ent *t = tw_get(w, bi->producer_id, true);
    if (!t) return SL_ENOMEM;
    t->kept_commit = true;
    return SL_OK;
}

/* A marker of type `type` (0 ABORT, 1 COMMIT, else unknown): TW_DISCARDABLE when no data of its
 * transaction is left after this pass. *data_now: its data was dropped by this very pass (the
 * marker may be stamped now, never removed now). The producer's transaction ends here. */
static sl_err tw_control(txn_walk *w, const sl_batch_info *bi, int type, int *verdict,
                         bool *data_now) {
    *verdict = TW_KEEP;
    *data_now = false;
    sl_err e = tw_advance(w, bi->base_offset);
    if (e || bi->producer_id < 0) return e;
    tw_ent *t = tw_get(w, bi->producer_id, false);
    if (type == 0) {
        *verdict = TW_DISCARDABLE;
        *data_now = t && t->seen_abort;
    } else if (type == 1) {
        *verdict = t && t->kept_commit ? TW_KEEP : TW_DISCARDABLE;
    }
    if (t) {
        t->seen_abort = t->kept_commit = false;
        if (t->marker <= bi->base_offset) t->marker = -1;
    }
    return SL_OK;
}

/* The type of a control batch (the key of its one record: version, type), -1 when unreadable. */
static int marker_type(const sl_cleaner_job *j, const uint8_t *batch, size_t len, sl_arena *a) {
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, batch, len, a, j->cfg.max_inflate_bytes)) return -1;
    sl_record r;
    if (!sl_rec_iter_next(&it, &r) || r.key.len < 4) return -1;
    return (int)sl_get_be16(r.key.p + 2);
}

/* ---- chunked frame reader and buffered writer --------------------------------------------- */

typedef struct rdr {
    int fd;
    int64_t pos, end;
    uint8_t *buf;
    size_t cap, have, chunk;
    int64_t off; /* file position of buf[0]; -1: empty */
} rdr;

static sl_err rdr_ensure(rdr *r, size_t n, const uint8_t **out) {
    if (r->off >= 0 && r->pos >= r->off && r->pos + (int64_t)n <= r->off + (int64_t)r->have) {
        *out = r->buf + (r->pos - r->off);
        return SL_OK;
    }
    size_t want = n > r->chunk ? n : r->chunk;
    if ((int64_t)want > r->end - r->pos) want = (size_t)(r->end - r->pos);
    if (want > r->cap) {
        /* Not realloc: the old buffer held decrypted records and is wiped first. */
        uint8_t *nb = malloc(want);
        if (!nb) return SL_ENOMEM;
        if (r->buf) OPENSSL_cleanse(r->buf, r->cap);
        free(r->buf);
        r->buf = nb;
        r->cap = want;
    }
    r->off = -1;
    sl_err e = pread_all(r->fd, r->buf, want, r->pos);
    if (e) return e;
    r->off = r->pos;
    r->have = want;
    *out = r->buf;
    return SL_OK;
}

/* The next whole frame (header checked, batch CRC checked) at *frame, valid until the next call.
 * SL_ERANGE at the end. */
static sl_err rdr_next(rdr *r, sl_frame *f, uint8_t **frame) {
    if (r->pos >= r->end) return SL_ERANGE;
    int64_t rem = r->end - r->pos;
    if (rem < SL_FRAME_HDR_MIN) return SL_ECORRUPT;
    size_t hn = rem < SL_FRAME_HDR_MAX ? (size_t)rem : SL_FRAME_HDR_MAX;
    const uint8_t *p;
    sl_err e = rdr_ensure(r, hn, &p);
    if (e) return e;
    if (sl_frame_decode(p, hn, f) != SL_FRAME_OK || (int64_t)f->flen > rem) return SL_ECORRUPT;
    if ((e = rdr_ensure(r, f->flen, &p)) != SL_OK) return e;
    if (sl_frame_decode(p, f->flen, f) != SL_FRAME_OK || !sl_frame_payload_ok(f, p + f->hlen))
        return SL_ECORRUPT;
    r->pos += f->flen;
    *frame = (uint8_t *)(uintptr_t)p; /* in r->buf: the caller opens the payload in place */
    return SL_OK;
}

typedef struct wtr {
    int fd;
    int64_t pos; /* file position of buf[0] */
    uint8_t *buf;
    size_t len, cap;
} wtr;

static sl_err wtr_flush(wtr *w) {
    sl_err e = pwrite_all(w->fd, w->buf, w->len, w->pos);
    w->pos += (int64_t)w->len;
    w->len = 0;
    return e;
}

static sl_err wtr_put(wtr *w, const uint8_t *p, size_t n) {
    if (w->len + n > w->cap) {
        sl_err e = wtr_flush(w);
        if (e) return e;
    }
    if (n > w->cap) {
        sl_err e = pwrite_all(w->fd, p, n, w->pos);
        w->pos += (int64_t)n;
        return e;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return SL_OK;
}

static int64_t wtr_at(const wtr *w) { return w->pos + (int64_t)w->len; }

/* ---- pass 1: the offset map --------------------------------------------------------------- */

/* Frees a buffer that held decrypted records. */
static void free_cleansed(uint8_t *p, size_t n) {
    if (p) OPENSSL_cleanse(p, n);
    free(p);
}

/* The envelope the file has now is the one prepare fetched keys for. */
static bool env_same(const sl_envelope *a, const sl_envelope *b) {
    return a->alg == b->alg && a->dek_id == b->dek_id && !memcmp(a->topic_id, b->topic_id, 16) &&
           a->partition == b->partition && a->seg_base == b->seg_base &&
           a->tk_version == b->tk_version && a->wrapped_len == b->wrapped_len &&
           !memcmp(a->wrapped, b->wrapped, a->wrapped_len);
}

/* Opens the reserved segment's data file; *hdr_len is where its frames start. */
static sl_err open_segment(const sl_cleaner_job *j, const jseg *js, int *fd, uint32_t *hdr_len) {
    char p[4096];
    seg_file(p, sizeof p, j->dir, js->base, 0, false);
    *fd = open(p, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return errno == ENOENT ? SL_ENOTFOUND : errno_err(errno);
    bool enc;
    sl_envelope env;
    int64_t created;
    sl_err e = sl_log__read_file_header(*fd, js->base, hdr_len, &enc, &env, &created);
    /* Replaced since prepare (it is reserved, so by no one of ours): its keys are not these. */
    if (!e && (enc != js->opener.enc || (enc && !env_same(&env, &js->opener.env)))) e = SL_ETAMPER;
    if (e) {
        close(*fd);
        *fd = -1;
    }
    return e;
}

/* Fills the map from first_dirty on; *map_end is where it stopped (a batch boundary). Aborted
 * data is not put in it: an aborted value must never become a key's latest. */
static sl_err build_map(sl_cleaner_job *j, omap *m, int64_t first_dirty, int64_t *map_end) {
    txn_walk tw;
    tw_init(&tw, j);
    sl_err e = SL_OK;
    sl_arena *a = sl_arena_new(64 * 1024);
    if (!a) return SL_ENOMEM;
    sl_arena_set_cleanse(a); /* inflated records */
    *map_end = first_dirty;
    bool full = false;
    for (int i = 0; i < j->nsegs && !e && !full; i++) {
        jseg *js = &j->segs[i];
        if (js->next <= first_dirty) continue;
        int fd;
        uint32_t hl;
        if ((e = open_segment(j, js, &fd, &hl)) != SL_OK) {
            if (e == SL_ENOTFOUND) e = SL_ESTATE; /* deleted under us: try again later */
            break;
        }
        rdr r = {.fd = fd, .pos = hl, .end = js->size, .chunk = j->cfg.io_buffer_bytes, .off = -1};
        int64_t expect = js->base;
        sl_frame f;
        uint8_t *fr;
        while ((e = rdr_next(&r, &f, &fr)) == SL_OK) {
            if (f.base != expect) {
                e = SL_ECORRUPT;
                break;
            }
            expect = f.base + f.lod + 1;
            if (expect <= first_dirty) continue;
            if (atomic_load_explicit(&j->cancel, memory_order_relaxed)) {
                e = SL_EKEY_DESTROYED;
                break;
            }
            if ((e = sl_log__frame_open(&js->opener, &f, fr, fr + f.hlen)) != SL_OK) break;
            sl_batch_info bi;
            if ((e = sl_batch_parse_exact(fr + f.hlen, f.plen, &bi)) != SL_OK) break;
            bool aborted = false;
            if (!(bi.attributes & ATTR_CONTROL) && (e = tw_data(&tw, &bi, &aborted)) != SL_OK)
                break;
            if ((bi.attributes & ATTR_CONTROL) || aborted) {
                *map_end = expect;
                continue;
            }
            if (m->n + (size_t)bi.record_count > m->max) {
                full = true; /* Kafka's rule: clean up to here, the rest next time */
                break;
            }
            sl_arena_reset(a);
            sl_rec_iter it;
            if ((e = sl_rec_iter_init(&it, fr + f.hlen, f.plen, a, j->cfg.max_inflate_bytes)))
                break;
            sl_record rec;
            while (sl_rec_iter_next(&it, &rec)) {
                if (rec.key.len < 0 || rec.offset < first_dirty) continue;
                uint8_t h[16];
                if (!omap_hash(m, rec.key, h)) {
                    e = SL_ENOMEM;
                    break;
                }
                omap_put(m, h, rec.offset);
            }
            if (!e) e = sl_rec_iter_err(&it);
            if (e) break;
            *map_end = expect;
        }
        if (e == SL_ERANGE) e = expect == js->next ? SL_OK : SL_ECORRUPT;
        if (e == SL_ETAMPER || e == SL_ECORRUPT) j->res.bad_base = js->base;
        free_cleansed(r.buf, r.cap);
        close(fd);
    }
    sl_arena_free(a);
    tw_free(&tw);
    j->res.map_full = full;
    if (!e && *map_end == first_dirty && full) {
        SL_ERROR(SUB, "offset map too small for one batch", "dir=%s budget=%zu", j->dir,
                 j->cfg.offset_map_bytes);
        e = SL_ETOOLARGE;
    }
    return e;
}

/* ---- pass 2: rewriting a segment ---------------------------------------------------------- */

/* Writes the clear batch[0, plen) as the segment's next frame, sealed under the segment's fresh
 * DEK when the log has keys (in place: batch is ciphertext afterwards). Every kept frame goes
 * through here, those kept whole too: none may stay under the old DEK in the new file. */
static sl_err put_frame(sl_cleaner_job *j, jseg *js, wtr *w, int64_t base, int32_t lod,
                        int32_t count, int64_t max_ts, uint8_t *batch, uint32_t plen) {
    int64_t pos = wtr_at(w);
    uint8_t h[SL_FRAME_HDR_MAX], tag[SL_FRAME_ENC_TAG];
    sl_frame f;
    sl_err e = sl_log__frame_seal(&js->sealer, base, lod, count, max_ts, batch, plen, h, tag, &f);
    if (e) return e;
    /* A plaintext migration segment grows by the nonce, tag and envelope; positions are u32. */
    if ((uint64_t)pos + f.flen > (uint64_t)INT32_MAX) return SL_ETOOLARGE;
    e = wtr_put(w, h, f.hlen);
    if (!e) e = wtr_put(w, batch, plen);
    if (!e) e = wtr_put(w, tag, f.tlen);
    if (!e) (void)sl_log__seg_note_frame(js->out, j->index_interval, pos, &f, false);
    return e;
}

/* A run of dropped batches [base, last] becomes one empty batch (no records, no producer): frames
 * in a segment must stay contiguous (sl_log checks it at open), and a Fetch inside the run gets
 * this batch and moves on to last + 1, as with Kafka's empty batches. */
typedef struct gap {
    int64_t base, last, max_ts;
    int32_t epoch;
} gap;

static sl_err flush_gap(sl_cleaner_job *j, jseg *js, wtr *w, gap *g) {
    while (g->base >= 0) {
        int64_t last = g->last - g->base > INT32_MAX ? g->base + INT32_MAX : g->last;
        uint8_t b[SL_BATCH_HEADER_SIZE] = {0};
        sl_batch_seal(b, sizeof b, 0, 0, g->max_ts, g->max_ts);
        sl_batch_info like = {.base_offset = g->base,
                              .leader_epoch = g->epoch,
                              .attributes = 0,
                              .last_offset_delta = (int32_t)(last - g->base),
                              .base_timestamp = g->max_ts,
                              .max_timestamp = g->max_ts,
                              .producer_id = -1,
                              .producer_epoch = -1,
                              .base_sequence = -1};
        sl_batch_reseal_like(b, sizeof b, &like);
        sl_err e = put_frame(j, js, w, g->base, like.last_offset_delta, 0, g->max_ts, b, sizeof b);
        if (e) return e;
        g->base = last < g->last ? last + 1 : -1;
    }
    return SL_OK;
}

/* Record decisions of one batch. */
enum { KEEP_ALL, KEEP_SOME, KEEP_NONE };

/* Decides each record of a data batch: dropped when a later record has its key (per the map),
 * or when it is a tombstone whose delete horizon has passed. *stamp: a kept tombstone has no
 * horizon yet (the batch gets one). Bit i of `keep` (the caller's, record_count bits) says
 * whether record i stays. */
static sl_err decide(sl_cleaner_job *j, omap *m, const sl_batch_info *bi, const uint8_t *batch,
                     size_t len, sl_arena *a, uint8_t *keep, int *outcome, bool *stamp,
                     int64_t *horizon) {
    *stamp = false;
    if (bi->record_count == 0 && bi->producer_id < 0) {
        *outcome = KEEP_NONE; /* an earlier clean's gap: merged into this one's */
        return SL_OK;
    }
    sl_rec_iter it;
    sl_err e = sl_rec_iter_init(&it, batch, len, a, j->cfg.max_inflate_bytes);
    if (e) return e;
    bool has_horizon = bi->attributes & ATTR_DELETE_HORIZON;
    int32_t i = 0, kept = 0;
    sl_record rec;
    while (sl_rec_iter_next(&it, &rec)) {
        bool k = true;
        j->res.records_read++;
        if (rec.key.len >= 0) {
            uint8_t h[16];
            if (m->t && !omap_hash(m, rec.key, h)) return SL_ENOMEM;
            int64_t latest = m->t ? omap_get(m, h) : -1;
            if (latest >= 0 && rec.offset < latest) {
                k = false;
            } else if (rec.value.len < 0) {
                if (!has_horizon) {
                    *stamp = true;
                } else if (j->now_ms >= bi->base_timestamp) {
                    k = false;
                    j->res.tombstones_dropped++;
                } else if (*horizon < 0 || bi->base_timestamp < *horizon) {
                    *horizon = bi->base_timestamp;
                }
            }
        }
        if (k) {
            keep[i / 8] |= (uint8_t)(1u << (i % 8));
            kept++;
        } else {
            j->res.records_dropped++;
        }
        i++;
    }
    if ((e = sl_rec_iter_err(&it)) != SL_OK) return e;
    *outcome = kept == i && !*stamp ? KEEP_ALL : kept == 0 ? KEEP_NONE : KEEP_SOME;
    return SL_OK;
}

/* Re-encodes the kept records of `batch` into a new batch with every header field of the old one
 * (base offset, last offset delta, producer, codec: offsets and sequences are unchanged), and,
 * with `stamp_at` >= 0, Kafka's delete horizon: attribute bit 6 with the horizon as base
 * timestamp, record timestamp deltas rebased on it (KIP-534). */
static sl_err rebuild(sl_cleaner_job *j, const sl_batch_info *bi, const uint8_t *batch, size_t len,
                      sl_arena *a, const uint8_t *keep, int64_t stamp_at, uint8_t **out,
                      size_t *out_len) {
    sl_rec_iter it;
    sl_err e = sl_rec_iter_init(&it, batch, len, a, j->cfg.max_inflate_bytes);
    if (e) return e;
    sl_batch_info like = *bi;
    if (stamp_at >= 0) {
        like.attributes |= ATTR_DELETE_HORIZON;
        like.base_timestamp = stamp_at;
    }
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, len);
    sl_record rec;
    int32_t i = 0;
    while (!e && sl_rec_iter_next(&it, &rec)) {
        if (keep[i / 8] & (1u << (i % 8))) {
            sl_rec_header *hs = NULL;
            if (rec.nheaders > 0 && !(hs = sl_arena_alloc(a, (size_t)rec.nheaders * sizeof *hs))) {
                e = SL_ENOMEM;
                break;
            }
            /* sl_record_header_next counts rec.nheaders down as it goes. */
            int32_t nh = 0, total = rec.nheaders;
            sl_bytes hk, hv;
            while (nh < total && sl_record_header_next(&rec, &hk, &hv))
                hs[nh++] = (sl_rec_header){hk, hv};
            if (nh != total) {
                e = SL_ECORRUPT; /* the iterator checked them: cannot happen */
                break;
            }
            sl_rec_in in = {.attributes = rec.attributes,
                            .timestamp_delta = (int64_t)((uint64_t)bi->base_timestamp +
                                                         (uint64_t)rec.timestamp_delta -
                                                         (uint64_t)like.base_timestamp),
                            .offset_delta = rec.offset_delta,
                            .key = rec.key,
                            .value = rec.value,
                            .headers = hs,
                            .nheaders = nh};
            e = sl_rec_builder_add(&b, &in);
        }
        i++;
    }
    if (!e) e = sl_rec_iter_err(&it);
    if (!e) e = sl_rec_builder_seal_like(&b, &like, out, out_len);
    return e;
}

static sl_err write_file(const char *path, const uint8_t *b, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_err(errno);
    sl_err e = pwrite_all(fd, b, n, 0);
    if (!e) e = fsync_fd(fd);
    close(fd);
    return e;
}

static sl_err write_indexes(const sl_cleaner_job *j, const jseg *js) {
    const sl_seg *o = js->out;
    size_t n = (size_t)o->nidx * 8, m = (size_t)o->ntidx * 12;
    uint8_t *b = malloc((n > m ? n : m) + 1);
    if (!b) return SL_ENOMEM;
    for (uint32_t i = 0; i < o->nidx; i++) {
        sl_be32(b + i * 8, o->idx[i].rel);
        sl_be32(b + i * 8 + 4, o->idx[i].pos);
    }
    char p[4096];
    seg_file(p, sizeof p, j->dir, js->base, 1, true);
    sl_err e = write_file(p, b, n);
    for (uint32_t i = 0; !e && i < o->ntidx; i++) {
        sl_be64(b + i * 12, (uint64_t)o->tidx[i].ts);
        sl_be32(b + i * 12 + 8, o->tidx[i].rel);
    }
    seg_file(p, sizeof p, j->dir, js->base, 2, true);
    if (!e) e = write_file(p, b, m);
    free(b);
    return e;
}

/* What pass 2 does with a control batch (KIP-98 markers, KIP-534 horizons): kept whole while
 * its transaction still has data in the log (a COMMIT whose batches kept records); otherwise
 * stamped with a delete horizon the first time (KEEP_SOME, *stamp_at), kept until the horizon
 * passes, then removed (KEEP_NONE; an ABORT's offset is reported so the broker drops its index
 * entry). A marker whose data this pass removes is stamped, never removed, in the same pass:
 * a consumer that read the data before the clean still gets the marker until the horizon. An
 * empty control batch goes; a control type other than COMMIT/ABORT is kept. */
static sl_err control_outcome(sl_cleaner_job *j, txn_walk *tw, const sl_batch_info *bi,
                              const uint8_t *batch, size_t len, sl_arena *a, int *outcome,
                              int64_t *stamp_at, int64_t *horizon) {
    *outcome = KEEP_ALL;
    *stamp_at = -1;
    if (bi->record_count == 0) {
        *outcome = KEEP_NONE;
        return SL_OK;
    }
    int type = marker_type(j, batch, len, a), verdict;
    bool data_now;
    sl_err e = tw_control(tw, bi, type, &verdict, &data_now);
    if (e || verdict == TW_KEEP) return e;
    if (!(bi->attributes & ATTR_DELETE_HORIZON)) {
        int64_t d = j->cfg.delete_retention_ms < 0 ? 0 : j->cfg.delete_retention_ms;
        *stamp_at = j->now_ms > INT64_MAX - d ? INT64_MAX : j->now_ms + d;
        if (*horizon < 0 || *stamp_at < *horizon) *horizon = *stamp_at;
        *outcome = KEEP_SOME;
        j->res.markers_stamped++;
        return SL_OK;
    }
    if (j->now_ms < bi->base_timestamp || data_now) {
        int64_t h = bi->base_timestamp;
        if (*horizon < 0 || h < *horizon) *horizon = h;
        return SL_OK;
    }
    *outcome = KEEP_NONE;
    j->res.markers_removed++;
    j->res.records_dropped += bi->record_count;
    if (type == 0) {
        if (j->res.nremoved_abort == j->nremoved_cap) {
            size_t cap = j->nremoved_cap ? j->nremoved_cap * 2 : 16;
            int64_t *n = realloc(j->res.removed_abort_markers, cap * sizeof *n);
            if (!n) return SL_ENOMEM;
            j->res.removed_abort_markers = n;
            j->nremoved_cap = cap;
        }
        j->res.removed_abort_markers[j->res.nremoved_abort++] = bi->base_offset;
    }
    return SL_OK;
}

/* Rewrites the group of consecutive segments [g0, g1) into one set of `.cleaned` files named by
 * its first segment, under that segment's fresh DEK; they are kept (js->cleaned) only if
 * something changed (a group of several always does). */
static sl_err clean_group(sl_cleaner_job *j, omap *m, int g0, int g1, int64_t *horizon,
                          txn_walk *tw) {
    int in;
    uint32_t hl;
    sl_err e;
    /* Retention deletes from the front: the group starts at its first member still there. */
    while ((e = open_segment(j, &j->segs[g0], &in, &hl)) == SL_ENOTFOUND) {
        j->segs[g0].gone = true; /* nothing to clean */
        if (++g0 == g1) return SL_OK;
    }
    if (e) return e;
    jseg *js = &j->segs[g0];
    /* The oldest member's creation time: max.compaction.lag.ms is measured from it. Time
     * retention goes by the largest record timestamp, which the frames carry over. */
    int64_t created = js->created_ms, group_end = j->segs[g1 - 1].next;
    for (int i = g0 + 1; i < g1; i++)
        if (j->segs[i].created_ms < created) created = j->segs[i].created_ms;
    /* Each sealer seals one file once: a second use would repeat its nonces. */
    if (js->out || js->sealer.ctr != 0) {
        close(in);
        return SL_ESTATE;
    }
    char path[4096];
    seg_file(path, sizeof path, j->dir, js->base, 0, true);
    int out = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return errno_err(errno);
    }
    sl_arena *a = sl_arena_new(64 * 1024);
    wtr w = {.fd = out, .cap = j->cfg.io_buffer_bytes};
    rdr r = {.fd = in, .pos = hl, .end = js->size, .chunk = j->cfg.io_buffer_bytes, .off = -1};
    uint8_t *keep = NULL, hdr[SL_LOG_HDR_MAX];
    bool seal = js->sealer.aead != NULL;
    size_t keep_cap = 0,
           ohl = sl_log__encode_file_header(hdr, js->base, created, seal ? &js->sealer.env : NULL);
    if (!ohl) e = SL_EINVAL;
    if (!e && (!a || !(w.buf = malloc(w.cap)) || !(js->out = sl_log__seg_alloc(j->dir, js->base))))
        e = SL_ENOMEM;
    if (!e) {
        sl_arena_set_cleanse(a); /* inflated and rebuilt records */
        js->out->hdr_len = (uint32_t)ohl;
        js->out->size = (int64_t)ohl;
        js->out->enc = seal;
        if (seal) js->out->env = js->sealer.env;
        e = wtr_put(&w, hdr, ohl);
    }
    bool changed = g1 - g0 > 1;
    gap g = {.base = -1, .max_ts = -1};
    int64_t expect = js->base;
    sl_frame f;
    uint8_t *fr;
    for (int cur = g0; !e && cur < g1; cur++) {
        jseg *ms = &j->segs[cur]; /* the member read */
        if (cur > g0) {
            close(in);
            /* Deleted under us after the group's first member was read: try again later. */
            if ((e = open_segment(j, ms, &in, &hl)) == SL_ENOTFOUND) e = SL_ESTATE;
            if (e) {
                in = -1;
                if (e == SL_ETAMPER || e == SL_ECORRUPT) j->res.bad_base = ms->base;
                break;
            }
            r.fd = in;
            r.pos = hl;
            r.end = ms->size;
            r.off = -1;
            if (expect != ms->base) e = SL_ECORRUPT; /* grouping took contiguous segments only */
        }
        while (!e && (e = rdr_next(&r, &f, &fr)) == SL_OK) {
            if (f.base != expect) {
                e = SL_ECORRUPT;
                break;
            }
            expect = f.base + f.lod + 1;
            if (atomic_load_explicit(&j->cancel, memory_order_relaxed)) {
                e = SL_EKEY_DESTROYED;
                break;
            }
            /* After the CRCs (rdr_next): a torn or damaged frame is found without the key. */
            if ((e = sl_log__frame_open(&ms->opener, &f, fr, fr + f.hlen)) != SL_OK) break;
            uint8_t *batch = fr + f.hlen;
            sl_batch_info bi;
            if ((e = sl_batch_parse_exact(batch, f.plen, &bi)) != SL_OK) break;
            int outcome = KEEP_ALL;
            bool stamp = false;
            uint8_t *nb = NULL;
            size_t nlen = 0;
            sl_arena_reset(a);
            /* A count its (inflated) bytes cannot hold fails the iterator anyway: refuse it before
             * sizing anything by it. */
            if ((size_t)bi.record_count > j->cfg.max_inflate_bytes / SL_RECORD_MIN_SIZE) {
                e = SL_ECORRUPT;
                break;
            }
            size_t kb = (size_t)bi.record_count / 8 + 1;
            if (kb > keep_cap) {
                free_cleansed(keep, keep_cap);
                if (!(keep = malloc(kb))) {
                    keep_cap = 0;
                    e = SL_ENOMEM;
                    break;
                }
                keep_cap = kb;
            }
            memset(keep, 0, kb);
            int64_t at = -1; /* a delete horizon to stamp */
            if (bi.attributes & ATTR_CONTROL) {
                if ((e = control_outcome(j, tw, &bi, batch, f.plen, a, &outcome, &at, horizon)))
                    break;
                if (outcome == KEEP_SOME) memset(keep, 0xff, kb); /* stamped, every record kept */
            } else {
                bool aborted;
                if ((e = tw_data(tw, &bi, &aborted)) != SL_OK) break;
                if (aborted) {
                    outcome = KEEP_NONE;
                    j->res.aborted_batches_dropped++;
                    j->res.records_read += bi.record_count;
                    j->res.records_dropped += bi.record_count;
                } else {
                    e = decide(j, m, &bi, batch, f.plen, a, keep, &outcome, &stamp, horizon);
                    if (e) break;
                    if (outcome != KEEP_NONE && (e = tw_kept(tw, &bi)) != SL_OK) break;
                    if (outcome == KEEP_SOME && stamp) {
                        int64_t d = j->cfg.delete_retention_ms < 0 ? 0 : j->cfg.delete_retention_ms;
                        at = j->now_ms > INT64_MAX - d ? INT64_MAX : j->now_ms + d;
                        if (*horizon < 0 || at < *horizon) *horizon = at;
                    }
                }
            }
            if (outcome == KEEP_SOME) {
                sl_arena_reset(a);
                if ((e = rebuild(j, &bi, batch, f.plen, a, keep, at, &nb, &nlen)) != SL_OK) break;
            }
            if (outcome == KEEP_NONE) {
                if (g.base < 0) g.base = f.base;
                g.last = expect - 1;
                if (bi.max_timestamp > g.max_ts) g.max_ts = bi.max_timestamp;
                g.epoch = bi.leader_epoch;
                if (bi.record_count > 0) changed = true;
                continue;
            }
            if ((e = flush_gap(j, js, &w, &g)) != SL_OK) break;
            if (outcome == KEEP_ALL) {
                e = put_frame(j, js, &w, f.base, f.lod, f.count, f.max_ts, batch, f.plen);
            } else {
                e = put_frame(j, js, &w, f.base, f.lod,
                              (int32_t)sl_get_be32(nb + SL_BATCH_RECORDS_COUNT), f.max_ts, nb,
                              (uint32_t)nlen);
                changed = true;
            }
        }
        if (e == SL_ERANGE) e = expect == ms->next ? SL_OK : SL_ECORRUPT;
        if (e == SL_ETAMPER || e == SL_ECORRUPT) j->res.bad_base = ms->base;
    }
    /* Gaps run on across members: the group is one segment now. */
    if (!e) e = flush_gap(j, js, &w, &g);
    if (!e) (void)sl_log__seg_time_point(js->out, false); /* as a roll leaves a segment */
    if (!e) e = wtr_flush(&w);
    if (!e && js->out->next != group_end) e = SL_ECORRUPT;
    if (!e && changed) e = fsync_fd(out);
    free_cleansed(keep, keep_cap);
    free_cleansed(w.buf, w.cap);
    free_cleansed(r.buf, r.cap);
    sl_arena_free(a);
    if (in >= 0) close(in);
    close(out);
    if (!e && changed) e = write_indexes(j, js);
    if (e || !changed) {
        unlink_cleaned(j->dir, js->base);
        return e;
    }
    js->cleaned = true;
    js->nmerged = g1 - g0 - 1;
    js->group_end = group_end;
    js->created_ms = created;
    for (int i = g0; i < g1; i++) {
        j->res.segments_rewritten++;
        j->res.bytes_before += j->segs[i].size;
    }
    j->res.bytes_after += js->out->size;
    return SL_OK;
}

/* ---- run ---------------------------------------------------------------------------------- */

/* Kafka's groupSegmentsBySize: from segment i on, the consecutive segments below `limit` whose
 * sizes sum to at most segment_bytes and whose offsets stay within one segment's relative range
 * (index entries are 32-bit). Returns the end of the group (i + 1 at least). */
static int group_end(const sl_cleaner_job *j, int i, int64_t limit) {
    int g = i + 1;
    if (j->cfg.segment_bytes <= 0) return g;
    int64_t sum = j->segs[i].size;
    while (g < j->nsegs && j->segs[g].base < limit && j->segs[g].base == j->segs[g - 1].next &&
           j->segs[g].size <= j->cfg.segment_bytes - sum &&
           j->segs[g].next - 1 - j->segs[i].base <= INT32_MAX) {
        sum += j->segs[g].size;
        g++;
    }
    return g;
}

/* Removes `*.cleaned` files and a manifest temporary left by a failed run. */
static void remove_strays(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    size_t el = strlen(CLEANED_EXT);
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if ((n > el && strcmp(de->d_name + n - el, CLEANED_EXT) == 0) ||
            strcmp(de->d_name, SWAP_TMP) == 0 || strcmp(de->d_name, CKPT_TMP) == 0)
            (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* The checkpoint record, then, when segments were merged, the groups: count, (first base, end
 * offset) each, CRC-32C of the list (docs/on-disk-format.md). Recovery needs the groups to
 * delete the members a renamed survivor replaced. */
static sl_err write_manifest(sl_cleaner_job *j) {
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/" SWAP_TMP, j->dir);
    snprintf(path, sizeof path, "%s/" SWAP_FILE, j->dir);
    uint32_t ng = 0;
    for (int i = 0; i < j->nsegs; i++) ng += j->segs[i].cleaned && j->segs[i].nmerged > 0;
    size_t len = CK_SIZE + (ng ? 4 + (size_t)ng * 16 + 4 : 0);
    uint8_t *b = malloc(len);
    if (!b) return SL_ENOMEM;
    ck_encode(b, &j->res.checkpoint, ng ? CK_GROUPS : 0);
    if (ng) {
        uint8_t *q = b + CK_SIZE;
        sl_be32(q, ng);
        q += 4;
        for (int i = 0; i < j->nsegs; i++) {
            if (!j->segs[i].cleaned || j->segs[i].nmerged == 0) continue;
            sl_be64(q, (uint64_t)j->segs[i].base);
            sl_be64(q + 8, (uint64_t)j->segs[i].group_end);
            q += 16;
        }
        sl_be32(q, sl_crc32c(0, b + CK_SIZE, (size_t)(q - (b + CK_SIZE))));
    }
    sl_err e = write_file(tmp, b, len);
    free(b);
    if (e) return e;
    if (crash_now(j)) return SL_ESTATE;
    if (rename(tmp, path) != 0) return errno_err(errno);
    j->decided = true; /* maybe not durable yet; recovery would complete it */
    if (crash_now(j)) return SL_ESTATE;
    if ((e = fsync_dir(j->dir)) != SL_OK) return e;
    if (crash_now(j)) return SL_ESTATE;
    return SL_OK;
}

sl_err sl_cleaner_run(sl_cleaner_job *j) {
    char p[4096];
    snprintf(p, sizeof p, "%s/" SWAP_FILE, j->dir);
    struct stat st;
    if (stat(p, &st) == 0) {
        SL_ERROR(SUB, "a previous compaction swap is not finished; reopen the log", "dir=%s",
                 j->dir);
        return SL_ESTATE;
    }
    /* No `.cleaned` file may exist when a manifest is decided but its run's: strays (a failed
     * run that could not undo its decision durably) go first. The fsync makes that, and the
     * previous commit's last rename, durable before any new `.cleaned` file exists: a manifest
     * that came back after a crash would adopt them. */
    remove_strays(j->dir);
    sl_err e = fsync_dir(j->dir);
    sl_cleaner_checkpoint ck;
    if (!e) e = sl_cleaner_read_checkpoint(j->dir, &ck);
    if (e) return e;
    int64_t end = j->segs[j->nsegs - 1].next, first = ck.offset;
    if (first < j->segs[0].base) first = j->segs[0].base;
    if (first > end) first = end;
    omap m = {0};
    int64_t limit = end; /* pass 2 rewrites the segments starting below this */
    if (first < end) {
        if ((e = omap_init(&m, j->cfg.offset_map_bytes)) != SL_OK) return e;
        e = build_map(j, &m, first, &limit);
    }
    /* One walk over every segment pass 2 reads, from the log's first: "no data of this
     * transaction is left" is judged over all of it. */
    int64_t horizon = -1;
    txn_walk tw;
    tw_init(&tw, j);
    for (int i = 0; !e && i < j->nsegs && j->segs[i].base < limit;) {
        int g1 = group_end(j, i, limit);
        e = clean_group(j, &m, i, g1, &horizon, &tw);
        i = g1;
    }
    tw_free(&tw);
    omap_free(&m);
    j->res.checkpoint.offset = ck.offset > limit ? ck.offset : limit;
    j->res.checkpoint.horizon_ms = horizon;
    if (!e && crash_now(j)) return SL_ESTATE;
    if (!e) e = write_manifest(j);
    if (e && j->crashed) return e;
    if (e) {
        SL_WARN(SUB, "compaction failed; the log is unchanged", "dir=%s err=%s", j->dir,
                sl_errname(e));
        /* Undecided again (durably) before any file goes; if that fails the decision stands
         * (its files are whole and durable) and the next open completes it. */
        if (j->decided && unlink(p) == 0 && fsync_dir(j->dir) == SL_OK) j->decided = false;
        if (!j->decided) {
            snprintf(p, sizeof p, "%s/" SWAP_TMP, j->dir);
            (void)unlink(p);
            for (int i = 0; i < j->nsegs; i++)
                if (j->segs[i].cleaned) unlink_cleaned(j->dir, j->segs[i].base);
        }
    }
    return e;
}

void sl_cleaner_cancel(sl_cleaner_job *j) {
    if (j) atomic_store_explicit(&j->cancel, true, memory_order_relaxed);
}

/* ---- commit ------------------------------------------------------------------------------- */

static int find_closed(const sl_log *log, int64_t base) {
    for (int i = 0; i < log->nsegs - 1; i++)
        if (log->segs[i]->base == base) return i;
    return -1;
}

/* The log's segment for a cleaned one (the job gives up its copy). */
static sl_seg *new_seg(sl_log *log, jseg *js) {
    sl_seg *s = js->out;
    js->out = NULL;
    s->dir = log->dir;
    s->created_ms = js->created_ms;
    s->sealed = true; /* run fsynced its files; commit fsyncs the directory */
    return s;
}

sl_err sl_cleaner_commit(sl_cleaner_job *j, sl_err run_result, sl_cleaner_result *res) {
    if (!j) return SL_OK;
    sl_log *log = j->log;
    for (int i = 0; i < j->nsegs; i++) {
        int k = find_closed(log, j->segs[i].base);
        if (k >= 0) log->segs[k]->reenc_busy = false;
    }
    sl_err e = run_result;
    if (j->crashed) {
        e = SL_ESTATE;
        goto out;
    }
    if (!e && log->closed) e = SL_ESTATE; /* the manifest stays: the next open completes it */
    if (e) {
        if (!j->decided)
            for (int i = 0; i < j->nsegs; i++)
                if (j->segs[i].cleaned) unlink_cleaned(j->dir, j->segs[i].base);
        goto out;
    }
    /* The first member of a group not applied (retention deleted its first one meanwhile). */
    int64_t low = INT64_MAX;
    /* Everything that can fail for want of memory happens before the first rename. */
    sl_seg **ns = calloc((size_t)j->nsegs, sizeof *ns);
    if (!ns) e = SL_ENOMEM;
    for (int i = 0; !e && i < j->nsegs; i++)
        if (j->segs[i].cleaned) ns[i] = new_seg(log, &j->segs[i]);
    if (e) {
        /* Decided on disk but not applied in memory: undo the decision while nothing moved. */
        char p[4096];
        snprintf(p, sizeof p, "%s/" SWAP_FILE, j->dir);
        if (unlink(p) == 0 && fsync_dir(j->dir) == SL_OK)
            for (int i = 0; i < j->nsegs; i++)
                if (j->segs[i].cleaned) unlink_cleaned(j->dir, j->segs[i].base);
    }
    /* Oldest first: a crash part-way leaves a prefix swapped, and the manifest completes it. */
    for (int i = 0; !e && i < j->nsegs; i++) {
        jseg *js = &j->segs[i];
        if (!js->cleaned) continue;
        int k = find_closed(log, js->base);
        if (k < 0) {
            /* Deleted meanwhile: stays deleted. Retention deletes from the front, so a group's
             * first member goes first; its other members stay as they were (recovery agrees:
             * no survivor, no deletion). */
            unlink_cleaned(j->dir, js->base);
            for (int q = 0; q < log->nsegs - 1; q++) {
                int64_t b = log->segs[q]->base;
                if (b > js->base && b < js->group_end && b < low) low = b;
            }
            continue;
        }
        for (int f = 0; f < 3 && !e; f++) {
            char from[4096], to[4096];
            seg_file(from, sizeof from, j->dir, js->base, f, true);
            seg_file(to, sizeof to, j->dir, js->base, f, false);
            if (rename(from, to) != 0) {
                e = errno_err(errno);
                /* Its files may be part old, part new until the next open completes the swap. */
                log->segs[k]->bad = e;
                SL_ERROR(SUB, "compaction swap failed; reopen the log to complete it",
                         "file=%s reason=%s", to, strerror(errno));
            } else if (crash_now(j)) {
                e = SL_ESTATE;
            }
        }
        if (e) break;
        /* The group's other members: the segments up to its end (none was rolled in between:
         * they are closed and older than the active one). */
        int n = 1;
        while (k + n < log->nsegs - 1 && log->segs[k + n]->base < js->group_end) {
            for (int f = 0; f < 3 && !e; f++) {
                char p[4096];
                seg_file(p, sizeof p, j->dir, log->segs[k + n]->base, f, false);
                if (unlink(p) != 0 && errno != ENOENT) {
                    e = errno_err(errno);
                    log->segs[k]->bad = e; /* overlaps its members until the next open */
                    SL_ERROR(SUB, "compaction swap failed; reopen the log to complete it",
                             "file=%s reason=%s", p, strerror(errno));
                }
            }
            if (!e && crash_now(j)) e = SL_ESTATE;
            if (e) break;
            n++;
        }
        if (e) break;
        sl_log__swap_segments(log, k, n, ns[i]);
        ns[i] = NULL;
    }
    if (ns)
        for (int i = 0; i < j->nsegs; i++) sl_log__seg_unref(ns[i]);
    free(ns);
    if (!e) e = fsync_dir(j->dir);
    if (!e && crash_now(j)) e = SL_ESTATE;
    if (!e) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/" SWAP_FILE, j->dir);
        snprintf(to, sizeof to, "%s/" CKPT_FILE, j->dir);
        /* Durable with the next directory fsync (the next run starts with one); until then a
         * crash brings the manifest back and open completes an already complete swap (and
         * lowers the checkpoint as below). */
        bool merged = false;
        for (int i = 0; i < j->nsegs; i++) merged |= j->segs[i].cleaned && j->segs[i].nmerged > 0;
        if (low < j->res.checkpoint.offset) j->res.checkpoint.offset = low;
        if (merged || low != INT64_MAX) {
            e = put_checkpoint(j->dir, &j->res.checkpoint);
        } else if (rename(from, to) != 0) {
            e = errno_err(errno);
        }
    }
    if (!e && crash_now(j)) e = SL_ESTATE;
    if (!e) {
        SL_INFO(SUB, "partition compacted",
                "dir=%s segments=%d records_read=%" PRId64 " dropped=%" PRId64
                " tombstones_dropped=%" PRId64 " aborted_batches_dropped=%" PRId64
                " markers_stamped=%" PRId64 " markers_removed=%" PRId64 " bytes_before=%" PRId64
                " bytes_after=%" PRId64 " checkpoint=%" PRId64 " map_full=%d",
                j->dir, j->res.segments_rewritten, j->res.records_read, j->res.records_dropped,
                j->res.tombstones_dropped, j->res.aborted_batches_dropped, j->res.markers_stamped,
                j->res.markers_removed, j->res.bytes_before, j->res.bytes_after,
                j->res.checkpoint.offset, j->res.map_full);
        if (res) {
            *res = j->res; /* the removed markers' offsets go with it */
            j->res.removed_abort_markers = NULL;
            j->res.nremoved_abort = 0;
        }
    }
out:
    if (res && e) {
        memset(res, 0, sizeof *res);
        res->bad_base = j->res.bad_base;
    }
    j->log = NULL;
    job_free(j);
    sl_log__unref(log);
    return e;
}
