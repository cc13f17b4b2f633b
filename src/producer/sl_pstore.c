/* Persistence of the idempotent producer state: snapshots, rebuild after restart, producer-id
 * allocation. The state itself (sl_pstate.c) does no I/O; docs/idempotence.md. */
#include "sl_pstore.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "kms/sl_keysvc.h"

#define SUB "producers"

/* What the store keeps per partition, attached to its sl_pstate. */
typedef struct sl_pstore {
    char *dir;
    int last_segs;    /* segment count after the last append: an increase means a roll */
    uint8_t *pending; /* captured snapshot waiting for the log to be durable past pending_off */
    size_t pending_len;
    int64_t pending_off;
    int64_t snap_off; /* newest snapshot on disk, -1 none */
    sl_keysvc *ks;    /* borrowed; not NULL: snapshots are sealed */
} sl_pstore;

static sl_pstore *store(const sl_pstate *ps) { return sl_pstate_store(ps); }

/* ---- snapshots ----
 * File `<20-digit offset>.snapshot` (format in docs/on-disk-format.md), all big-endian:
 *   "SLPS" | u16 version=1 | u16 0 | i64 offset | u32 count | entries | u32 crc32c(all before)
 *   entry: i64 pid | i64 last_ms | i16 epoch | u8 n | u8 0 | n * (i32 first_seq | i32 last_seq
 *          | i64 base_offset | i32 last_offset_delta) */
#define SNAP_MAGIC     "SLPS"
#define SNAP_HDR       20
#define SNAP_ENTRY_HDR 20
#define SNAP_BATCH     20

typedef struct ser {
    uint8_t *p;
} ser;

static void ser_entry(void *ctx, const sl_pstate_producer *e) {
    uint8_t *p = ((ser *)ctx)->p;
    sl_be64(p, (uint64_t)e->pid);
    sl_be64(p + 8, (uint64_t)e->last_ms);
    sl_be16(p + 16, (uint16_t)e->epoch);
    p[18] = e->n;
    p[19] = 0;
    p += SNAP_ENTRY_HDR;
    for (int j = 0; j < e->n; j++) {
        sl_be32(p, (uint32_t)e->b[j].first_seq);
        sl_be32(p + 4, (uint32_t)e->b[j].last_seq);
        sl_be64(p + 8, (uint64_t)e->b[j].base_offset);
        sl_be32(p + 16, (uint32_t)e->b[j].last_offset_delta);
        p += SNAP_BATCH;
    }
    ((ser *)ctx)->p = p;
}

static uint8_t *serialize(const sl_pstate *ps, int64_t offset, size_t *out_len) {
    size_t count = sl_pstate_count(ps);
    size_t cap = SNAP_HDR + 4 + count * (SNAP_ENTRY_HDR + SL_PSTATE_BATCHES * SNAP_BATCH);
    uint8_t *buf = malloc(cap), *p = buf;
    if (!buf) return NULL;
    memcpy(p, SNAP_MAGIC, 4);
    sl_be16(p + 4, 1);
    sl_be16(p + 6, 0);
    sl_be64(p + 8, (uint64_t)offset);
    sl_be32(p + 16, (uint32_t)count);
    ser w = {p + SNAP_HDR};
    sl_pstate_foreach(ps, ser_entry, &w);
    p = w.p;
    sl_be32(p, sl_crc32c(0, buf, (size_t)(p - buf)));
    p += 4;
    *out_len = (size_t)(p - buf);
    return buf;
}

/* Loads a snapshot into the (empty) state. SL_ECORRUPT for anything that does not check out. */
static sl_err deserialize(sl_pstate *ps, const uint8_t *p, size_t len, int64_t *offset) {
    if (len < SNAP_HDR + 4 || memcmp(p, SNAP_MAGIC, 4) || sl_get_be16(p + 4) != 1)
        return SL_ECORRUPT;
    if (sl_crc32c(0, p, len - 4) != sl_get_be32(p + len - 4)) return SL_ECORRUPT;
    *offset = (int64_t)sl_get_be64(p + 8);
    uint32_t count = sl_get_be32(p + 16);
    const uint8_t *q = p + SNAP_HDR, *end = p + len - 4;
    for (uint32_t i = 0; i < count; i++) {
        if (end - q < SNAP_ENTRY_HDR) return SL_ECORRUPT;
        sl_pstate_producer e = {.pid = (int64_t)sl_get_be64(q),
                                .last_ms = (int64_t)sl_get_be64(q + 8),
                                .epoch = (int16_t)sl_get_be16(q + 16),
                                .n = q[18]};
        q += SNAP_ENTRY_HDR;
        if (e.n < 1 || e.n > SL_PSTATE_BATCHES || end - q < (ptrdiff_t)e.n * SNAP_BATCH)
            return SL_ECORRUPT;
        for (int j = 0; j < e.n; j++) {
            e.b[j].first_seq = (int32_t)sl_get_be32(q);
            e.b[j].last_seq = (int32_t)sl_get_be32(q + 4);
            e.b[j].base_offset = (int64_t)sl_get_be64(q + 8);
            e.b[j].last_offset_delta = (int32_t)sl_get_be32(q + 16);
            q += SNAP_BATCH;
        }
        sl_err err = sl_pstate_restore(ps, &e); /* checks pid, epoch, duplicates */
        if (err) return err;
    }
    return q == end ? SL_OK : SL_ECORRUPT;
}

static bool parse_snap_name(const char *name, int64_t *off) {
    size_t n = strlen(name);
    if (n != 20 + 9 || strcmp(name + 20, ".snapshot") != 0) return false;
    int64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (name[i] - '0');
    }
    *off = v;
    return true;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Snapshot offsets in the directory, newest first. Caller frees *out. */
static sl_err list_snapshots(const char *dir, int64_t **out, int *count) {
    DIR *d = opendir(dir);
    if (!d) return SL_EIO;
    int64_t *v = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t off;
        if (!parse_snap_name(de->d_name, &off)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                return SL_ENOMEM;
            }
            v = nv;
        }
        v[n++] = off;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_desc);
    *out = v;
    *count = n;
    return SL_OK;
}

static void snap_name(char *buf, size_t cap, int64_t off) {
    snprintf(buf, cap, "%020" PRId64 ".snapshot", off);
}

/* Keeps the two newest snapshots: the older one is a fallback should the newest be damaged. */
static void prune_snapshots(const sl_pstore *st) {
    int64_t *v = NULL;
    int n = 0;
    if (list_snapshots(st->dir, &v, &n)) return;
    for (int i = 2; i < n; i++) {
        char name[64], path[PATH_MAX];
        snap_name(name, sizeof name, v[i]);
        snprintf(path, sizeof path, "%s/%s", st->dir, name);
        (void)unlink(path);
    }
    free(v);
}

static sl_err write_snapshot(sl_pstore *st, const uint8_t *buf, size_t len, int64_t off) {
    char name[64];
    snap_name(name, sizeof name, off);
    uint8_t *sealed = NULL;
    size_t slen = 0;
    /* Producer ids and sequences are not secret, but nothing under log.dirs is written in
     * clear with encryption on; the name binds the snapshot to its offset. */
    sl_err e = st->ks ? sl_keysvc_seal_blob(st->ks, name, buf, len, &sealed, &slen) : SL_OK;
    if (!e)
        e = sl_file_write_atomic(st->dir, name, sealed ? sealed : buf, sealed ? slen : len, 0600);
    free(sealed);
    if (e) {
        SL_WARN(SUB, "cannot write producer state snapshot", "dir=%s offset=%" PRId64 " err=%s",
                st->dir, off, sl_errname(e));
        return e;
    }
    st->snap_off = off;
    prune_snapshots(st);
    return SL_OK;
}

sl_err sl_pstate_capture(sl_pstate *ps, sl_log *log) {
    size_t len;
    uint8_t *buf = serialize(ps, sl_log_end_offset(log), &len);
    if (!buf) return SL_ENOMEM;
    sl_pstore *st = store(ps);
    free(st->pending);
    st->pending = buf;
    st->pending_len = len;
    st->pending_off = sl_log_end_offset(log);
    sl_pstate_mark_changed(ps, false);
    return SL_OK;
}

static void write_pending_if_durable(sl_pstore *st, sl_log *log) {
    if (!st->pending || sl_log_durable_offset(log) < st->pending_off) return;
    if (st->pending_off != st->snap_off)
        (void)write_snapshot(st, st->pending, st->pending_len, st->pending_off);
    free(st->pending);
    st->pending = NULL;
}

void sl_pstate_after_append(sl_pstate *ps, sl_log *log) {
    int segs = sl_log_segment_count(log);
    /* Even with no producer state a snapshot saves the next start from scanning this segment. */
    sl_pstore *st = store(ps);
    if (segs > st->last_segs) (void)sl_pstate_capture(ps, log);
    st->last_segs = segs;
    write_pending_if_durable(st, log);
}

int sl_pstate_tick(sl_pstate *ps, sl_log *log, int64_t now_ms, int64_t expiration_ms) {
    int dropped = sl_pstate_expire(ps, now_ms, expiration_ms);
    if (log) {
        sl_pstore *st = store(ps);
        int64_t end = sl_log_end_offset(log);
        bool behind = !st->pending && st->snap_off != end;
        if (sl_pstate_changed(ps) || behind) (void)sl_pstate_capture(ps, log);
        write_pending_if_durable(st, log);
    }
    return dropped;
}

/* Applies the batches at and after `from` from their headers alone (no per-record work). The
 * headers come from sl_log_read_headers, which needs no key: the state of an encrypted
 * partition is rebuilt even while its key manager is unreachable. */
#define SCAN_BATCHES 1024

static sl_err scan_log(sl_pstate *ps, sl_log *log, int64_t from, int64_t now_ms,
                       int64_t *nbatches) {
    int64_t off = from, end = sl_log_end_offset(log);
    while (off < end) {
        sl_arena *a = sl_arena_new((size_t)SCAN_BATCHES * SL_BATCH_HEADER_SIZE + 1024);
        if (!a) return SL_ENOMEM;
        uint8_t *p = NULL;
        int n = 0;
        sl_err e = sl_log_read_headers(log, off, SCAN_BATCHES, a, &p, &n);
        if (!e && n <= 0) e = SL_ECORRUPT; /* below the end there must be a batch */
        int64_t next = off;
        for (int i = 0; !e && i < n; i++, p += SL_BATCH_HEADER_SIZE) {
            /* A header alone: sl_batch_parse reads only header fields; the length it checks
             * belongs to the whole batch, which storage already checked against its frame. */
            sl_batch_info bi;
            if (!sl_batch_parse(p, 12 + (size_t)INT32_MAX, &bi) || bi.last_offset_delta < 0) {
                e = SL_ECORRUPT;
                break;
            }
            int64_t base = bi.base_offset;
            /* The first batch may start below `off` when `off` is inside it. */
            if (base >= off || base + bi.last_offset_delta >= off) {
                e = sl_pstate_record(ps, &bi, base, now_ms);
                (*nbatches)++;
            }
            if (base + bi.last_offset_delta + 1 > next) next = base + bi.last_offset_delta + 1;
        }
        sl_arena_free(a);
        if (e) return e;
        if (next <= off) return SL_ECORRUPT;
        off = next;
    }
    return SL_OK;
}

sl_err sl_pstate_open(const char *dir, sl_log *log, int64_t now_ms, sl_pstate **out) {
    return sl_pstate_open_keys(dir, log, now_ms, NULL, out);
}

sl_err sl_pstate_open_keys(const char *dir, sl_log *log, int64_t now_ms, sl_keysvc *ks,
                           sl_pstate **out) {
    sl_pstate *ps = sl_pstate_new();
    sl_pstore *st = calloc(1, sizeof *st);
    if (!ps || !st || !(st->dir = strdup(dir))) {
        free(st);
        sl_pstate_free(ps);
        return SL_ENOMEM;
    }
    st->snap_off = -1;
    st->ks = ks;
    sl_pstate_set_store(ps, st);
    int64_t *snaps = NULL;
    int nsnaps = 0;
    sl_err e = list_snapshots(dir, &snaps, &nsnaps);
    if (e) {
        sl_pstate_close(ps, NULL);
        return e;
    }
    int64_t end = sl_log_end_offset(log), from = sl_log_start_offset(log);
    bool removed = false;
    for (int i = 0; i < nsnaps; i++) {
        char name[64], path[PATH_MAX];
        snap_name(name, sizeof name, snaps[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (snaps[i] > end) {
            /* Describes batches the log no longer has: it would answer retries of lost batches
             * as duplicates. Gone before anything new is appended at those offsets. */
            (void)unlink(path);
            removed = true;
            continue;
        }
        if (st->snap_off >= 0) continue;
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        long sz = -1;
        if (f && !fseek(f, 0, SEEK_END) && (sz = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
            (buf = malloc((size_t)sz + 1)) && fread(buf, 1, (size_t)sz, f) == (size_t)sz) {
            int64_t off = -1;
            uint8_t *plain = buf;
            size_t plen = (size_t)sz;
            sl_err oe = SL_OK;
            if (sl_keysvc_is_sealed_blob(buf, (size_t)sz)) {
                /* Without the key service (encryption turned off) a sealed snapshot is as
                 * unreadable as one whose key is gone: the log has the truth. */
                oe = ks ? sl_keysvc_open_blob(ks, name, buf, (size_t)sz, &plain, &plen)
                        : SL_EKEY_UNAVAILABLE;
            }
            e = oe ? oe : deserialize(ps, plain, plen, &off);
            if (plain != buf) free(plain);
            if (!e && off == snaps[i]) {
                st->snap_off = off;
            } else if (oe) {
                SL_WARN(SUB,
                        "ignoring producer state snapshot that cannot be decrypted; "
                        "rebuilding from the log",
                        "dir=%s file=%s err=%s (%s)", dir, name, sl_errname(oe), sl_strerror(oe));
                sl_pstate_clear(ps);
                e = SL_OK;
            } else {
                SL_WARN(SUB, "ignoring damaged producer state snapshot", "dir=%s file=%s", dir,
                        name);
                sl_pstate_clear(ps);
                e = SL_OK;
            }
        }
        free(buf);
        if (f) fclose(f);
    }
    free(snaps);
    if (removed && sl_fsync_dir(dir)) {
        sl_pstate_close(ps, NULL);
        return SL_EIO;
    }
    if (st->snap_off > from) from = st->snap_off;
    int64_t nb = 0;
    e = scan_log(ps, log, from, now_ms, &nb);
    if (e) {
        sl_pstate_close(ps, NULL);
        return e;
    }
    sl_pstate_mark_changed(ps, nb > 0);
    st->last_segs = sl_log_segment_count(log);
    if (nb || sl_pstate_count(ps))
        SL_INFO(SUB, "producer state rebuilt",
                "dir=%s producers=%zu snapshot=%" PRId64 " scanned_from=%" PRId64
                " batches=%" PRId64,
                dir, sl_pstate_count(ps), st->snap_off, from, nb);
    *out = ps;
    return SL_OK;
}

void sl_pstate_close(sl_pstate *ps, sl_log *log) {
    if (!ps) return;
    sl_pstore *st = store(ps);
    /* Only a log durable to its end may be described by a snapshot at its end. */
    if (log && st && sl_log_durable_offset(log) >= sl_log_end_offset(log)) {
        if (sl_pstate_changed(ps) || st->pending || st->snap_off != sl_log_end_offset(log)) {
            size_t len;
            uint8_t *buf = serialize(ps, sl_log_end_offset(log), &len);
            if (buf) (void)write_snapshot(st, buf, len, sl_log_end_offset(log));
            free(buf);
        }
    }
    if (st) {
        free(st->pending);
        free(st->dir);
        free(st);
    }
    sl_pstate_set_store(ps, NULL);
    sl_pstate_free(ps);
}

int64_t sl_pstate_snapshot_offset(const sl_pstate *ps) {
    const sl_pstore *st = store(ps);
    return st ? st->snap_off : -1;
}

/* ---- producer ids ---- */

struct sl_pid_alloc {
    char *dir;
    int64_t next, reserved_end; /* ids in [next, reserved_end) are on disk as used */
};

sl_err sl_pid_alloc_open(const char *dir, int64_t floor, sl_pid_alloc **out) {
    sl_pid_alloc *pa = calloc(1, sizeof *pa);
    if (!pa || !(pa->dir = strdup(dir))) {
        free(pa);
        return SL_ENOMEM;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, SL_PID_FILE);
    int64_t mark = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        char line[256];
        bool ok = false;
        while (fgets(line, sizeof line, f)) {
            long long v;
            char tail;
            if (sscanf(line, "next_producer_id %lld %c", &v, &tail) == 1 && v >= 0) {
                mark = v;
                ok = true;
            }
        }
        fclose(f);
        if (!ok) {
            sl_pid_alloc_free(pa);
            return SL_ECORRUPT;
        }
    } else if (errno != ENOENT) {
        sl_pid_alloc_free(pa);
        return SL_EIO;
    }
    pa->next = mark > floor ? mark : floor;
    pa->reserved_end = pa->next;
    *out = pa;
    return SL_OK;
}

sl_err sl_pid_alloc_next(sl_pid_alloc *pa, int64_t *out) {
    if (pa->next >= pa->reserved_end) {
        if (pa->next > INT64_MAX - SL_PID_BLOCK) return SL_ERANGE;
        int64_t end = pa->next + SL_PID_BLOCK;
        char body[160];
        int n = snprintf(body, sizeof body,
                         "# Sluice producer ids: every id below this mark may have been handed "
                         "out.\nversion 1\nnext_producer_id %" PRId64 "\n",
                         end);
        sl_err e = sl_file_write_atomic(pa->dir, SL_PID_FILE, body, (size_t)n, 0600);
        if (e) return e;
        pa->reserved_end = end;
    }
    *out = pa->next++;
    return SL_OK;
}

bool sl_pid_alloc_issued(const sl_pid_alloc *pa, int64_t pid) { return pid >= 0 && pid < pa->next; }

void sl_pid_alloc_free(sl_pid_alloc *pa) {
    if (!pa) return;
    free(pa->dir);
    free(pa);
}
