/* Idempotent producer state: sequence/epoch rules per (producer id, partition), snapshots,
 * rebuild after restart, expiry, producer-id allocation and the InitProducerId handler.
 * Rules follow Kafka 3.x's ProducerStateManager/ProducerAppendInfo; docs/idempotence.md. */
#include "sl_producers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

#define SUB "producers"

/* ---- files ---- */

/* ---- per-partition state ---- */

typedef struct pbatch {
    int32_t first_seq, last_seq;
    int64_t base_offset;
    int32_t last_offset_delta;
} pbatch;

typedef struct pentry {
    int64_t pid;
    int64_t last_ms; /* broker wall time of the last append (expiry) */
    int16_t epoch;
    uint8_t n; /* batches held, oldest first */
    pbatch b[SL_PSTATE_BATCHES];
    struct pentry *next;
} pentry;

struct sl_pstate {
    char *dir;
    pentry **buckets;
    size_t nbuckets, count;
    int64_t max_pid;
    bool dirty;       /* changed since the last capture */
    int last_segs;    /* segment count after the last append: an increase means a roll */
    uint8_t *pending; /* captured snapshot waiting for the log to be durable past pending_off */
    size_t pending_len;
    int64_t pending_off;
    int64_t snap_off; /* newest snapshot on disk, -1 none */
};

int32_t sl_seq_add(int32_t seq, int32_t delta) {
    if (seq > INT32_MAX - delta) return delta - (INT32_MAX - seq) - 1;
    return seq + delta;
}

static bool in_sequence(int32_t last, int32_t next) {
    return (int64_t)next == (int64_t)last + 1 || (next == 0 && last == INT32_MAX);
}

static size_t hash_pid(int64_t pid, size_t n) {
    uint64_t x = (uint64_t)pid * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (n - 1);
}

static pentry *find(const sl_pstate *ps, int64_t pid) {
    for (pentry *e = ps->buckets[hash_pid(pid, ps->nbuckets)]; e; e = e->next)
        if (e->pid == pid) return e;
    return NULL;
}

static sl_err grow(sl_pstate *ps) {
    size_t n = ps->nbuckets * 2;
    pentry **nb = calloc(n, sizeof *nb);
    if (!nb) return SL_ENOMEM;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (pentry *e = ps->buckets[i], *nx; e; e = nx) {
            nx = e->next;
            size_t h = hash_pid(e->pid, n);
            e->next = nb[h];
            nb[h] = e;
        }
    free(ps->buckets);
    ps->buckets = nb;
    ps->nbuckets = n;
    return SL_OK;
}

static pentry *find_or_add(sl_pstate *ps, int64_t pid) {
    pentry *e = find(ps, pid);
    if (e) return e;
    if (ps->count >= ps->nbuckets && grow(ps)) return NULL;
    e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->pid = pid;
    e->epoch = -1;
    size_t h = hash_pid(pid, ps->nbuckets);
    e->next = ps->buckets[h];
    ps->buckets[h] = e;
    ps->count++;
    if (pid > ps->max_pid) ps->max_pid = pid;
    return e;
}

static void entry_push(pentry *e, int16_t epoch, const pbatch *b, int64_t now_ms) {
    if (e->epoch != epoch) { /* a new epoch starts a new sequence space */
        e->epoch = epoch;
        e->n = 0;
    }
    if (e->n == SL_PSTATE_BATCHES) {
        memmove(&e->b[0], &e->b[1], (SL_PSTATE_BATCHES - 1) * sizeof e->b[0]);
        e->n--;
    }
    e->b[e->n++] = *b;
    e->last_ms = now_ms;
}

sl_err sl_pstate_record(sl_pstate *ps, const sl_batch_info *bi, int64_t base_offset,
                        int64_t now_ms) {
    if (bi->producer_id < 0) return SL_OK;
    pentry *e = find_or_add(ps, bi->producer_id);
    if (!e) return SL_ENOMEM;
    pbatch b = {.first_seq = bi->base_sequence,
                .last_seq = sl_seq_add(bi->base_sequence, bi->last_offset_delta),
                .base_offset = base_offset,
                .last_offset_delta = bi->last_offset_delta};
    entry_push(e, bi->producer_epoch, &b, now_ms);
    ps->dirty = true;
    return SL_OK;
}

/* What earlier batches of the same record set would have changed, for checking later ones. */
typedef struct pending_upd {
    int64_t pid;
    int16_t epoch;
    int32_t last_seq;
} pending_upd;

int16_t sl_pstate_check_set(const sl_pstate *ps, const uint8_t *data, size_t len,
                            int64_t *dup_base) {
    *dup_base = -1;
    pending_upd upd[8];
    int nupd = 0;
    while (len > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(data, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        data += bi.size;
        len -= bi.size;
        if (bi.producer_id < 0) continue;
        /* Transactions are not supported: no client can hold a transactional producer id. */
        if (bi.attributes & 0x10) return SL_KAFKA_INVALID_RECORD;
        if (bi.base_sequence < 0 || bi.producer_epoch < 0) return SL_KAFKA_INVALID_RECORD;
        int32_t last_seq = sl_seq_add(bi.base_sequence, bi.last_offset_delta);
        const pentry *cur = find(ps, bi.producer_id);
        if (cur && cur->epoch == bi.producer_epoch)
            for (int i = 0; i < cur->n; i++)
                if (cur->b[i].first_seq == bi.base_sequence && cur->b[i].last_seq == last_seq) {
                    *dup_base = cur->b[i].base_offset;
                    return SL_KAFKA_NONE;
                }
        pending_upd *u = NULL;
        for (int i = nupd - 1; i >= 0 && !u; i--)
            if (upd[i].pid == bi.producer_id) u = &upd[i];
        int16_t epoch = u ? u->epoch : cur ? cur->epoch : -1;
        if (epoch >= 0 && bi.producer_epoch < epoch) return SL_KAFKA_INVALID_PRODUCER_EPOCH;
        if (bi.producer_epoch != epoch) {
            /* A bumped epoch restarts at 0; a producer we know nothing of (new, expired, or
             * its batches removed by retention) may continue anywhere, as Kafka >= 2.5. */
            if (bi.base_sequence != 0 && epoch != -1) return SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        } else {
            int32_t prev = u ? u->last_seq : cur->b[cur->n - 1].last_seq;
            if (cur && !in_sequence(prev, bi.base_sequence))
                return SL_KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        }
        if (!u) {
            /* More producers in one record set than this is hardly a produce request. */
            if (nupd == (int)(sizeof upd / sizeof upd[0])) return SL_KAFKA_INVALID_RECORD;
            u = &upd[nupd++];
            u->pid = bi.producer_id;
        }
        u->epoch = bi.producer_epoch;
        u->last_seq = last_seq;
    }
    return SL_KAFKA_NONE;
}

static void entry_remove(sl_pstate *ps, pentry **pp) {
    pentry *e = *pp;
    *pp = e->next;
    free(e);
    ps->count--;
}

/* ---- snapshots ----
 * File `<20-digit offset>.snapshot` (format in docs/on-disk-format.md), all big-endian:
 *   "SLPS" | u16 version=1 | u16 0 | i64 offset | u32 count | entries | u32 crc32c(all before)
 *   entry: i64 pid | i64 last_ms | i16 epoch | u8 n | u8 0 | n * (i32 first_seq | i32 last_seq
 *          | i64 base_offset | i32 last_offset_delta) */
#define SNAP_MAGIC     "SLPS"
#define SNAP_HDR       20
#define SNAP_ENTRY_HDR 20
#define SNAP_BATCH     20

static uint8_t *serialize(const sl_pstate *ps, int64_t offset, size_t *out_len) {
    size_t cap = SNAP_HDR + 4 + ps->count * (SNAP_ENTRY_HDR + SL_PSTATE_BATCHES * SNAP_BATCH);
    uint8_t *buf = malloc(cap), *p = buf;
    if (!buf) return NULL;
    memcpy(p, SNAP_MAGIC, 4);
    sl_be16(p + 4, 1);
    sl_be16(p + 6, 0);
    sl_be64(p + 8, (uint64_t)offset);
    sl_be32(p + 16, (uint32_t)ps->count);
    p += SNAP_HDR;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (const pentry *e = ps->buckets[i]; e; e = e->next) {
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
        }
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
        int64_t pid = (int64_t)sl_get_be64(q);
        int64_t last_ms = (int64_t)sl_get_be64(q + 8);
        int16_t epoch = (int16_t)sl_get_be16(q + 16);
        uint8_t n = q[18];
        q += SNAP_ENTRY_HDR;
        if (pid < 0 || epoch < 0 || n < 1 || n > SL_PSTATE_BATCHES || find(ps, pid) ||
            end - q < (ptrdiff_t)n * SNAP_BATCH)
            return SL_ECORRUPT;
        pentry *e = find_or_add(ps, pid);
        if (!e) return SL_ENOMEM;
        e->epoch = epoch;
        e->last_ms = last_ms;
        for (int j = 0; j < n; j++) {
            e->b[j].first_seq = (int32_t)sl_get_be32(q);
            e->b[j].last_seq = (int32_t)sl_get_be32(q + 4);
            e->b[j].base_offset = (int64_t)sl_get_be64(q + 8);
            e->b[j].last_offset_delta = (int32_t)sl_get_be32(q + 16);
            q += SNAP_BATCH;
        }
        e->n = n;
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
static void prune_snapshots(const sl_pstate *ps) {
    int64_t *v = NULL;
    int n = 0;
    if (list_snapshots(ps->dir, &v, &n)) return;
    for (int i = 2; i < n; i++) {
        char name[64], path[PATH_MAX];
        snap_name(name, sizeof name, v[i]);
        snprintf(path, sizeof path, "%s/%s", ps->dir, name);
        (void)unlink(path);
    }
    free(v);
}

static sl_err write_snapshot(sl_pstate *ps, const uint8_t *buf, size_t len, int64_t off) {
    char name[64];
    snap_name(name, sizeof name, off);
    sl_err e = sl_file_write_atomic(ps->dir, name, buf, len, 0600);
    if (e) {
        SL_WARN(SUB, "cannot write producer state snapshot", "dir=%s offset=%" PRId64 " err=%s",
                ps->dir, off, sl_errname(e));
        return e;
    }
    ps->snap_off = off;
    prune_snapshots(ps);
    return SL_OK;
}

sl_err sl_pstate_capture(sl_pstate *ps, sl_log *log) {
    size_t len;
    uint8_t *buf = serialize(ps, sl_log_end_offset(log), &len);
    if (!buf) return SL_ENOMEM;
    free(ps->pending);
    ps->pending = buf;
    ps->pending_len = len;
    ps->pending_off = sl_log_end_offset(log);
    ps->dirty = false;
    return SL_OK;
}

static void write_pending_if_durable(sl_pstate *ps, sl_log *log) {
    if (!ps->pending || sl_log_durable_offset(log) < ps->pending_off) return;
    if (ps->pending_off != ps->snap_off)
        (void)write_snapshot(ps, ps->pending, ps->pending_len, ps->pending_off);
    free(ps->pending);
    ps->pending = NULL;
}

void sl_pstate_after_append(sl_pstate *ps, sl_log *log) {
    int segs = sl_log_segment_count(log);
    /* Even with no producer state a snapshot saves the next start from scanning this segment. */
    if (segs > ps->last_segs) (void)sl_pstate_capture(ps, log);
    ps->last_segs = segs;
    write_pending_if_durable(ps, log);
}

int sl_pstate_tick(sl_pstate *ps, sl_log *log, int64_t now_ms, int64_t expiration_ms) {
    int dropped = 0;
    for (size_t i = 0; i < ps->nbuckets; i++)
        for (pentry **pp = &ps->buckets[i]; *pp;) {
            if (now_ms - (*pp)->last_ms >= expiration_ms) {
                entry_remove(ps, pp);
                dropped++;
            } else {
                pp = &(*pp)->next;
            }
        }
    if (dropped) ps->dirty = true;
    if (log) {
        int64_t end = sl_log_end_offset(log);
        bool behind = !ps->pending && ps->snap_off != end;
        if (ps->dirty || behind) (void)sl_pstate_capture(ps, log);
        write_pending_if_durable(ps, log);
    }
    return dropped;
}

/* Applies the batches at and after `from` (header only, no per-record work). */
static sl_err scan_log(sl_pstate *ps, sl_log *log, int64_t from, int64_t now_ms,
                       int64_t *nbatches) {
    int64_t off = from, end = sl_log_end_offset(log);
    while (off < end) {
        sl_arena *a = sl_arena_new(1 << 20);
        if (!a) return SL_ENOMEM;
        uint8_t *p;
        size_t len;
        sl_err e = sl_log_read(log, off, 1 << 20, a, &p, &len);
        if (!e && len == 0) e = SL_ECORRUPT; /* below the end there must be a batch */
        int64_t next = off;
        while (!e && len > 0) {
            sl_batch_info bi;
            if (!sl_batch_parse(p, len, &bi)) break; /* a read may end mid-batch */
            int64_t base = (int64_t)sl_get_be64(p + SL_BATCH_BASE_OFFSET);
            /* The first batch may start below `off` when `off` is inside it. */
            if (base >= off || base + bi.last_offset_delta >= off) {
                e = sl_pstate_record(ps, &bi, base, now_ms);
                (*nbatches)++;
            }
            if (base + bi.last_offset_delta + 1 > next) next = base + bi.last_offset_delta + 1;
            p += bi.size;
            len -= bi.size;
        }
        sl_arena_free(a);
        if (e) return e;
        if (next <= off) return SL_ECORRUPT;
        off = next;
    }
    return SL_OK;
}

sl_err sl_pstate_open(const char *dir, sl_log *log, int64_t now_ms, sl_pstate **out) {
    sl_pstate *ps = calloc(1, sizeof *ps);
    if (!ps) return SL_ENOMEM;
    ps->nbuckets = 16;
    ps->buckets = calloc(ps->nbuckets, sizeof *ps->buckets);
    ps->dir = strdup(dir);
    ps->max_pid = -1;
    ps->snap_off = -1;
    if (!ps->buckets || !ps->dir) {
        sl_pstate_close(ps, NULL);
        return SL_ENOMEM;
    }
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
        if (ps->snap_off >= 0) continue;
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        long sz = -1;
        if (f && !fseek(f, 0, SEEK_END) && (sz = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
            (buf = malloc((size_t)sz + 1)) && fread(buf, 1, (size_t)sz, f) == (size_t)sz) {
            int64_t off = -1;
            e = deserialize(ps, buf, (size_t)sz, &off);
            if (!e && off == snaps[i]) {
                ps->snap_off = off;
            } else {
                SL_WARN(SUB, "ignoring damaged producer state snapshot", "dir=%s file=%s", dir,
                        name);
                for (size_t b = 0; b < ps->nbuckets; b++)
                    while (ps->buckets[b]) entry_remove(ps, &ps->buckets[b]);
                ps->max_pid = -1;
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
    if (ps->snap_off > from) from = ps->snap_off;
    int64_t nb = 0;
    e = scan_log(ps, log, from, now_ms, &nb);
    if (e) {
        sl_pstate_close(ps, NULL);
        return e;
    }
    ps->dirty = nb > 0;
    ps->last_segs = sl_log_segment_count(log);
    if (nb || ps->count)
        SL_INFO(SUB, "producer state rebuilt",
                "dir=%s producers=%zu snapshot=%" PRId64 " scanned_from=%" PRId64
                " batches=%" PRId64,
                dir, ps->count, ps->snap_off, from, nb);
    *out = ps;
    return SL_OK;
}

void sl_pstate_close(sl_pstate *ps, sl_log *log) {
    if (!ps) return;
    /* Only a log durable to its end may be described by a snapshot at its end. */
    if (log && ps->buckets && sl_log_durable_offset(log) >= sl_log_end_offset(log)) {
        if (ps->dirty || ps->pending || ps->snap_off != sl_log_end_offset(log)) {
            size_t len;
            uint8_t *buf = serialize(ps, sl_log_end_offset(log), &len);
            if (buf) (void)write_snapshot(ps, buf, len, sl_log_end_offset(log));
            free(buf);
        }
    }
    if (ps->buckets)
        for (size_t b = 0; b < ps->nbuckets; b++)
            while (ps->buckets[b]) entry_remove(ps, &ps->buckets[b]);
    free(ps->buckets);
    free(ps->pending);
    free(ps->dir);
    free(ps);
}

size_t sl_pstate_count(const sl_pstate *ps) { return ps->count; }
int64_t sl_pstate_max_pid(const sl_pstate *ps) { return ps->max_pid; }
int64_t sl_pstate_snapshot_offset(const sl_pstate *ps) { return ps->snap_off; }

bool sl_pstate_get(const sl_pstate *ps, int64_t pid, int16_t *epoch, int32_t *last_seq,
                   int *nbatches) {
    const pentry *e = find(ps, pid);
    if (!e) return false;
    if (epoch) *epoch = e->epoch;
    if (last_seq) *last_seq = e->n ? e->b[e->n - 1].last_seq : -1;
    if (nbatches) *nbatches = e->n;
    return true;
}

/* ---- producer ids ---- */

#define PID_FILE "sluice-producer-ids"

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
    snprintf(path, sizeof path, "%s/%s", dir, PID_FILE);
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
        sl_err e = sl_file_write_atomic(pa->dir, PID_FILE, body, (size_t)n, 0600);
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

/* ---- broker glue ---- */

struct sl_producers {
    sl_broker *b;
    sl_pid_alloc *pids;
    sl_timer *timer;
};

static void producers_tick(void *ctx) {
    sl_producers *pr = ctx;
    sl_broker *b = pr->b;
    int64_t now = sl_wall_ms();
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++) {
            sl_partition *p = t->parts[i];
            if (!p->pstate) continue;
            int n = sl_pstate_tick(p->pstate, p->log, now, b->cfg.producer_id_expiration_ms);
            if (n)
                SL_INFO(SUB, "expired producer ids", "topic=%s partition=%d expired=%d", t->name, i,
                        n);
        }
    pr->timer = sl_timer_start(b->loop, b->cfg.producer_id_expiration_check_interval_ms,
                               producers_tick, pr);
}

sl_err sl_producers_new(sl_broker *b, sl_producers **out, char *err, size_t elen) {
    sl_producers *pr = calloc(1, sizeof *pr);
    if (!pr) return SL_ENOMEM;
    pr->b = b;
    int64_t floor = 0;
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++)
            if (t->parts[i]->pstate) {
                int64_t m = sl_pstate_max_pid(t->parts[i]->pstate);
                if (m >= floor) floor = m + 1;
            }
    sl_err e = sl_pid_alloc_open(b->cfg.log_dirs, floor, &pr->pids);
    if (e) {
        snprintf(err, elen, "%s/%s: cannot read the producer-id mark: %s", b->cfg.log_dirs,
                 PID_FILE, sl_strerror(e));
        free(pr);
        return e;
    }
    pr->timer = sl_timer_start(b->loop, b->cfg.producer_id_expiration_check_interval_ms,
                               producers_tick, pr);
    *out = pr;
    return SL_OK;
}

void sl_producers_free(sl_producers *pr) {
    if (!pr) return;
    if (pr->timer) sl_timer_cancel(pr->b->loop, pr->timer);
    sl_pid_alloc_free(pr->pids);
    free(pr);
}

void sl_h_init_producer_id(sl_req *rq) {
    sl_init_producer_id_req req = *(const sl_init_producer_id_req *)rq->req;
    sl_init_producer_id_resp resp;
    sl_init_producer_id_resp_init(&resp);
    resp.producer_id = -1;
    resp.producer_epoch = -1;
    sl_producers *pr = rq->b->producers;
    if (req.transactional_id.len >= 0 &&
        !sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id)) {
        resp.error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len < 0 &&
               !sl_req_allowed(rq, SL_ACL_OP_IDEMPOTENT_WRITE, SL_ACL_RES_CLUSTER,
                               sl_str_c(SL_ACL_CLUSTER_NAME)) &&
               !sl_req_allowed_any(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC)) {
        /* Kafka 3.x: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic. */
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len >= 0) {
        /* Transactions are not implemented: a non-retriable answer makes clients fail at
         * start-up instead of retrying until a timeout. */
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
    } else if ((req.producer_id < 0) != (req.producer_epoch < 0)) {
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
    } else if (req.producer_id >= 0 && sl_pid_alloc_issued(pr->pids, req.producer_id) &&
               req.producer_epoch < INT16_MAX - 1) {
        /* KIP-360: an idempotent producer bumps its epoch to reset its sequences after an
         * error; the state per partition then accepts sequence 0 at the new epoch. */
        resp.producer_id = req.producer_id;
        resp.producer_epoch = (int16_t)(req.producer_epoch + 1);
    } else {
        /* A new producer, an exhausted epoch, or an id this broker never issued. */
        int64_t id;
        sl_err e = sl_pid_alloc_next(pr->pids, &id);
        if (e) {
            SL_ERROR(SUB, "cannot allocate a producer id", "err=%s", sl_errname(e));
            resp.error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE; /* retriable */
        } else {
            resp.producer_id = id;
            resp.producer_epoch = 0;
        }
    }
    SL_RESPOND(rq, init_producer_id, &resp);
}
