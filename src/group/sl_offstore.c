/* The offsets log; see sl_offstore.h. Each flush is one uncompressed v2 record batch (CRC-32C
 * over attributes..end, as Kafka's), so the storage engine's recovery (torn tail truncation,
 * checksum checks) applies unchanged.
 *
 * Offset key:   int16 1 | string group | string topic | int32 partition
 * Offset value: int16 0 | int64 offset | int32 leader epoch | nullable string metadata |
 *               int64 commit time (ms)           — or a null value: the offset was removed.
 * Group key:    int16 2 | string group
 * Group value:  int16 0 | nullable string protocol type | int32 generation |
 *               nullable string protocol name | nullable string leader | int8 state (0 Empty,
 *               1 Stable) | int64 state time (ms) | int32 member count, then per member:
 *               string member id | nullable string instance id | string client id |
 *               string client host | int32 rebalance timeout | int32 session timeout |
 *               int32 protocol count, per protocol: string name | bytes metadata; then
 *               bytes assignment                 — or a null value: the group was deleted.
 * Strings are int16 length + bytes (-1: null); bytes are int32 length + bytes. The layout is
 * documented in docs/on-disk-format.md. */
#include "sl_offstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "kms/sl_keysvc.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"

#define KEY_VERSION_OFFSET 1
#define KEY_VERSION_GROUP  2
#define REC_STATE_EMPTY    0
#define REC_STATE_STABLE   1

struct sl_offstore {
    char dir[4096];
    sl_log *log;
    sl_keysvc *ks;       /* borrowed; not NULL: the log is sealed under the system key */
    sl_arena *pend_a;    /* holds the records waiting for a flush; NULL: none */
    sl_rec_builder pend; /* those records */
    int64_t replayed, live;
};

/* ---- a tiny growable byte buffer ---- */

typedef struct bbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} bbuf;

static void bb_put(bbuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->len + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void bb_i16(bbuf *b, int16_t v) {
    uint8_t d[2];
    sl_be16(d, (uint16_t)v);
    bb_put(b, d, 2);
}
static void bb_i32(bbuf *b, int32_t v) {
    uint8_t d[4];
    sl_be32(d, (uint32_t)v);
    bb_put(b, d, 4);
}
static void bb_i64(bbuf *b, int64_t v) {
    uint8_t d[8];
    sl_be64(d, (uint64_t)v);
    bb_put(b, d, 8);
}
static void bb_str(bbuf *b, sl_str s) {
    if (s.len < 0) {
        bb_i16(b, -1);
        return;
    }
    if (s.len > INT16_MAX) {
        b->oom = true; /* cannot be stored in this layout; treated as a failed append */
        return;
    }
    bb_i16(b, (int16_t)s.len);
    bb_put(b, s.p, (size_t)s.len);
}

static void bb_bytes(bbuf *b, sl_bytes v) {
    int32_t n = v.len > 0 ? v.len : 0;
    bb_i32(b, n);
    bb_put(b, v.p, (size_t)n);
}

/* Appends key kv.p[0..klen) and value kv.p[klen..) (null when `has_value` is false) as the
 * next record of `b` (offset delta = its position in the batch); frees kv. */
static sl_err add_kv(sl_rec_builder *b, bbuf kv, size_t klen, bool has_value) {
    sl_err e = SL_ENOMEM;
    if (!kv.oom) {
        sl_rec_in r = {.offset_delta = b->count,
                       .key = {kv.p, (int32_t)klen},
                       .value = has_value ? (sl_bytes){kv.p + klen, (int32_t)(kv.len - klen)}
                                          : SL_BYTES_NULL};
        e = sl_rec_builder_add(b, &r);
    }
    free(kv.p);
    return e;
}

/* Appends one offset record to `b`. */
static sl_err add_offset(sl_rec_builder *b, sl_str group, sl_str topic, int32_t part,
                         const sl_gc_offset *v) {
    bbuf kv = {0};
    bb_i16(&kv, KEY_VERSION_OFFSET);
    bb_str(&kv, group);
    bb_str(&kv, topic);
    bb_i32(&kv, part);
    size_t klen = kv.len;
    if (v) {
        bb_i16(&kv, 0);
        bb_i64(&kv, v->offset);
        bb_i32(&kv, v->leader_epoch);
        bb_str(&kv, v->metadata);
        bb_i64(&kv, v->commit_ms);
    }
    return add_kv(b, kv, klen, v != NULL);
}

/* Appends one group record (g NULL: tombstone) to `b`. */
static sl_err add_group(sl_rec_builder *b, sl_str group, const sl_gc_group_view *g) {
    bbuf kv = {0};
    bb_i16(&kv, KEY_VERSION_GROUP);
    bb_str(&kv, group);
    size_t klen = kv.len;
    if (g) {
        bb_i16(&kv, 0);
        bb_str(&kv, g->protocol_type);
        bb_i32(&kv, g->generation);
        bb_str(&kv, g->protocol_name);
        bb_str(&kv, g->leader);
        uint8_t st = g->state == SL_GS_STABLE ? REC_STATE_STABLE : REC_STATE_EMPTY;
        bb_put(&kv, &st, 1);
        bb_i64(&kv, g->state_ms);
        bb_i32(&kv, g->nmembers);
        for (int32_t i = 0; i < g->nmembers; i++) {
            const sl_gc_member_view *m = &g->members[i];
            bb_str(&kv, m->member_id);
            bb_str(&kv, m->instance_id);
            bb_str(&kv, m->client_id);
            bb_str(&kv, m->client_host);
            bb_i32(&kv, m->rebalance_timeout_ms);
            bb_i32(&kv, m->session_timeout_ms);
            bb_i32(&kv, m->nprotocols);
            for (int32_t k = 0; k < m->nprotocols; k++) {
                bb_str(&kv, m->protocols[k].name);
                bb_bytes(&kv, m->protocols[k].metadata);
            }
            bb_bytes(&kv, m->assignment);
        }
    }
    return add_kv(b, kv, klen, g != NULL);
}

/* Seals the records of `b` (at least one) into one batch stamped now and appends it. */
static sl_err append_batch(sl_log *log, sl_rec_builder *b) {
    int64_t now = sl_wall_ms();
    uint8_t *batch;
    size_t blen;
    int32_t n = b->count;
    sl_err e = sl_rec_builder_seal(b, 0, now, now, &batch, &blen);
    if (e) return e;
    int64_t base = 0;
    return sl_log_append(log, batch, blen, n, sl_wall_ms(), &base);
}

/* ---- replay ---- */

static sl_str rd_str16(sl_rd *r) {
    int16_t n = sl_rd_i16(r);
    if (n < 0) return SL_STR_NULL;
    const uint8_t *p = sl_rd_take(r, (size_t)n);
    return r->err ? SL_STR_NULL : (sl_str){(const char *)p, n};
}

/* Restores one group record. Members and their protocols are decoded into one malloc'd block
 * of views into `val`. */
static void apply_group(sl_gc *gc, sl_str group, const uint8_t *val, int32_t vlen) {
    if (vlen < 0) {
        sl_gc_group_unload(gc, group);
        return;
    }
    sl_rd v = sl_rd_init(val, (size_t)vlen);
    if (sl_rd_i16(&v) != 0) return;
    sl_gc_group_view g = {.group_id = group};
    g.protocol_type = rd_str16(&v);
    g.generation = sl_rd_i32(&v);
    g.protocol_name = rd_str16(&v);
    g.leader = rd_str16(&v);
    int8_t st = sl_rd_i8(&v);
    g.state = st == REC_STATE_STABLE ? SL_GS_STABLE : SL_GS_EMPTY;
    g.state_ms = sl_rd_i64(&v);
    /* a member is at least 4 strings, 3 int32s and an assignment length */
    int32_t n = sl_rd_check_count(&v, sl_rd_i32(&v), 8 + 12 + 4);
    if (v.err || n < 0 || (st != REC_STATE_STABLE && st != REC_STATE_EMPTY)) return;
    sl_gc_member_view *ms = calloc((size_t)(n ? n : 1), sizeof *ms);
    sl_gc_protocol **ps = calloc((size_t)(n ? n : 1), sizeof *ps);
    int32_t i = 0;
    for (; ms && ps && i < n && !v.err; i++) {
        sl_gc_member_view *m = &ms[i];
        m->member_id = rd_str16(&v);
        m->instance_id = rd_str16(&v);
        m->client_id = rd_str16(&v);
        m->client_host = rd_str16(&v);
        m->rebalance_timeout_ms = sl_rd_i32(&v);
        m->session_timeout_ms = sl_rd_i32(&v);
        int32_t np = sl_rd_check_count(&v, sl_rd_i32(&v), 2 + 4);
        if (v.err || np < 0 || m->member_id.len <= 0) {
            v.err = v.err ? v.err : SL_ECORRUPT;
            break;
        }
        if (!(ps[i] = calloc((size_t)(np ? np : 1), sizeof *ps[i]))) break;
        for (int32_t k = 0; k < np; k++) {
            ps[i][k].name = rd_str16(&v);
            ps[i][k].metadata = sl_rd_bytes(&v);
        }
        m->protocols = ps[i];
        m->nprotocols = np;
        m->assignment = sl_rd_bytes(&v);
    }
    if (ms && ps && i == n && !v.err) {
        g.members = ms;
        g.nmembers = n;
        sl_err e = sl_gc_group_load(gc, &g);
        if (e)
            SL_WARN("groups", "group record not restored", "generation=%d err=%s",
                    (int)g.generation, sl_errname(e));
    }
    for (int32_t k = 0; ps && k < n; k++) free(ps[k]);
    free(ps);
    free(ms);
}

/* Applies one record; malformed or unknown ones are skipped (a newer version wrote them). */
static void apply_record(sl_gc *gc, const uint8_t *key, int32_t klen, const uint8_t *val,
                         int32_t vlen) {
    if (klen < 0) return;
    sl_rd k = sl_rd_init(key, (size_t)klen);
    int16_t kind = sl_rd_i16(&k);
    if (kind == KEY_VERSION_GROUP) {
        sl_str g = rd_str16(&k);
        if (!k.err && g.len > 0) apply_group(gc, g, val, vlen);
        return;
    }
    if (kind != KEY_VERSION_OFFSET) return;
    sl_str g = rd_str16(&k), t = rd_str16(&k);
    int32_t part = sl_rd_i32(&k);
    if (k.err || g.len <= 0 || t.len < 0) return;
    if (vlen < 0) {
        sl_gc_offset_unload(gc, g, t, part);
        return;
    }
    sl_rd v = sl_rd_init(val, (size_t)vlen);
    if (sl_rd_i16(&v) != 0) return;
    sl_gc_offset o;
    o.offset = sl_rd_i64(&v);
    o.leader_epoch = sl_rd_i32(&v);
    o.metadata = rd_str16(&v);
    o.commit_ms = sl_rd_i64(&v);
    if (v.err) return;
    sl_gc_offset_load(gc, g, t, part, &o);
}

static int64_t replay_batch(sl_gc *gc, const uint8_t *p, size_t len) {
    sl_batch_info h;
    if (sl_batch_parse_exact(p, len, &h) || !sl_batch_crc_ok(p, len)) return 0;
    if (h.attributes & 0x7) return 0; /* we never compress; not ours */
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, p, len, NULL, 0)) return 0; /* uncompressed: no arena needed */
    int64_t n = 0;
    sl_record rec;
    while (sl_rec_iter_next(&it, &rec)) {
        apply_record(gc, rec.key.p, rec.key.len, rec.value.p, rec.value.len);
        n++;
    }
    return n;
}

static sl_err replay(sl_log *log, sl_gc *gc, int64_t *count) {
    int64_t off = sl_log_start_offset(log), end = sl_log_end_offset(log);
    *count = 0;
    while (off < end) {
        sl_arena *a = sl_arena_new(1 << 20);
        if (!a) return SL_ENOMEM;
        uint8_t *data = NULL;
        size_t len = 0;
        sl_err e = sl_log_read(log, off, 1 << 20, a, &data, &len);
        if (e || len == 0) {
            sl_arena_free(a);
            return e;
        }
        size_t pos = 0;
        int64_t next = off;
        while (len - pos >= SL_BATCH_HEADER_SIZE) {
            size_t blen = 12 + (size_t)sl_get_be32(data + pos + SL_BATCH_LENGTH);
            if (blen > len - pos || blen < SL_BATCH_HEADER_SIZE) break;
            int64_t base = (int64_t)sl_get_be64(data + pos);
            int32_t last = (int32_t)sl_get_be32(data + pos + SL_BATCH_LAST_OFFSET_DELTA);
            *count += replay_batch(gc, data + pos, blen);
            next = base + last + 1;
            pos += blen;
        }
        sl_arena_free(a);
        if (next <= off) return SL_ECORRUPT;
        off = next;
    }
    return SL_OK;
}

/* Opens the log in `dir` with the system key when encryption is on (before anything reads or
 * appends). */
static sl_err open_log(sl_keysvc *ks, const char *dir, const sl_log_config *lc, sl_log **out) {
    sl_err e = sl_log_open(dir, lc, out);
    if (e || !ks) return e;
    static const uint8_t system_id[16] = {0};
    sl_log_keys k;
    memset(&k, 0, sizeof k);
    e = sl_keysvc_log_keys(ks, system_id, 0, sl_log_end_offset(*out), &k);
    if (e) {
        sl_log_close(*out);
        *out = NULL;
        return e;
    }
    sl_log_set_keys(*out, &k);
    return SL_OK;
}

/* ---- recovery of the old hand compaction ---- */

static sl_err destroy_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return SL_OK;
    sl_log_config lc;
    sl_log_config_default(&lc);
    sl_log *l = NULL;
    sl_err e = sl_log_open(dir, &lc, &l);
    if (e) return e;
    return sl_log_destroy(l);
}

/* Brokers before the cleaner compacted this log at open by writing the live state to
 * `<dir>.compact` and swapping directories through `<dir>.old`. One upgrading with such a swap
 * interrupted on disk: the old log is authoritative until the new one was renamed in place, and
 * the new one, once renamed, is complete. Nothing writes these directories any more. */
static sl_err recover_old_compaction(const char *dir, char *err, size_t elen) {
    char tmp[4200], old[4200];
    snprintf(tmp, sizeof tmp, "%s.compact", dir);
    snprintf(old, sizeof old, "%s.old", dir);
    struct stat st;
    if (stat(old, &st) == 0) {
        if (stat(dir, &st) == 0)
            destroy_dir(old);
        else if (rename(old, dir) != 0) {
            snprintf(err, elen, "cannot restore %s: %s", old, strerror(errno));
            return SL_EIO;
        }
    }
    (void)destroy_dir(tmp); /* incomplete by construction; a failure leaves an unused directory */
    return SL_OK;
}

/* ---- public ---- */

typedef struct live_ctx {
    sl_gc *gc;
    int64_t n;
} live_ctx;
static void count_one(void *ctx, const sl_gc_group_view *g) { ((live_ctx *)ctx)->n++; }
static void count_live(void *ctx, const sl_gc_group_view *g) {
    live_ctx *c = ctx;
    c->n += sl_gc_offset_count(c->gc, g->group_id);
    sl_gc_group_record(c->gc, g->group_id, count_one, c);
}

sl_err sl_offstore_open(const char *log_dirs, sl_gc *gc, sl_offstore **out, char *err,
                        size_t elen) {
    return sl_offstore_open_keys(log_dirs, NULL, 0, gc, out, err, elen);
}

sl_err sl_offstore_open_keys(const char *log_dirs, sl_keysvc *ks, int64_t segment_bytes, sl_gc *gc,
                             sl_offstore **out, char *err, size_t elen) {
    sl_offstore *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    s->ks = ks;
    snprintf(s->dir, sizeof s->dir, "%s/%s", log_dirs, SL_OFFSTORE_DIR);
    if (recover_old_compaction(s->dir, err, elen) != SL_OK) {
        free(s);
        return SL_EIO;
    }
    sl_log_config lc;
    sl_log_config_default(&lc);
    lc.segment_bytes = segment_bytes > 0 ? segment_bytes : SL_OFFSTORE_SEGMENT_BYTES;
    sl_err e = open_log(ks, s->dir, &lc, &s->log);
    if (!e) e = replay(s->log, gc, &s->replayed);
    if (e) {
        snprintf(err, elen, "group offsets log %s: %s", s->dir, sl_strerror(e));
        sl_offstore_close(s);
        return e;
    }
    live_ctx lc2 = {gc, 0};
    sl_gc_list(gc, count_live, &lc2);
    s->live = lc2.n;
    *out = s;
    return SL_OK;
}

void sl_offstore_close(sl_offstore *s) {
    if (!s) return;
    if (s->log) {
        sl_err e = sl_log_sync(s->log);
        if (e) SL_ERROR("groups", "offsets log sync failed", "err=%s", sl_errname(e));
        sl_log_close(s->log);
    }
    sl_arena_free(s->pend_a);
    free(s);
}

/* The builder the next record goes to (started on first use after a flush), or NULL. */
static sl_rec_builder *pending(sl_offstore *s) {
    if (!s->pend_a) {
        if (!(s->pend_a = sl_arena_new(64 * 1024))) return NULL;
        sl_rec_builder_init(&s->pend, s->pend_a, 4096);
    }
    return &s->pend;
}

/* A failed add leaves the records buffered before it (the builder drops the partial one). */
sl_err sl_offstore_add(sl_offstore *s, sl_str group, sl_str topic, int32_t partition,
                       const sl_gc_offset *val) {
    sl_rec_builder *b = pending(s);
    return b ? add_offset(b, group, topic, partition, val) : SL_ENOMEM;
}

sl_err sl_offstore_add_group(sl_offstore *s, sl_str group, const sl_gc_group_view *g) {
    sl_rec_builder *b = pending(s);
    return b ? add_group(b, group, g) : SL_ENOMEM;
}

sl_err sl_offstore_flush(sl_offstore *s) {
    if (!s->pend_a || !s->pend.count) return SL_OK;
    sl_err e = append_batch(s->log, &s->pend);
    sl_arena_free(s->pend_a);
    s->pend_a = NULL;
    return e;
}

sl_log *sl_offstore_log(sl_offstore *s) { return s->log; }

const char *sl_offstore_dir(const sl_offstore *s) { return s->dir; }

void sl_offstore_stats(const sl_offstore *s, int64_t *replayed, int64_t *live) {
    *replayed = s->replayed;
    *live = s->live;
}
