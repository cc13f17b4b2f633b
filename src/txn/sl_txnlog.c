/* The transaction log; format and rules in sl_txnlog.h. No shared framing helper exists for a
 * flat append-only metadata file (sl_frame.c is the segment frame with its encryption slots,
 * sl_fkeys_store.c has fixed-size records), so the framing is here, in their style: CRC-32C per
 * record, torn tail cut at open, atomic rewrite through sl_file_write_atomic. */
#include "txn/sl_txnlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"

#define SUB          "txn"
#define MAGIC        "SLTX"
#define FILE_VERSION 1
#define BODY_VERSION 1

/* ---- records ---- */

void sl_txn_rec_free(sl_txn_rec *r) {
    if (!r) return;
    free(r->tid);
    for (int32_t i = 0; i < r->ntopics; i++) {
        free(r->topics[i].name);
        free(r->topics[i].parts);
    }
    free(r->topics);
    for (int32_t i = 0; i < r->ngroups; i++) free(r->groups[i]);
    free(r->groups);
    memset(r, 0, sizeof *r);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

sl_err sl_txn_rec_copy(sl_txn_rec *dst, const sl_txn_rec *src) {
    *dst = *src;
    dst->tid = NULL;
    dst->topics = NULL;
    dst->groups = NULL;
    dst->ntopics = dst->ngroups = 0;
    if (!(dst->tid = dup_n(src->tid, src->tid_len))) goto oom;
    if (src->ntopics) {
        if (!(dst->topics = calloc((size_t)src->ntopics, sizeof *dst->topics))) goto oom;
        for (int32_t i = 0; i < src->ntopics; i++) {
            const sl_txn_topic *s = &src->topics[i];
            sl_txn_topic *d = &dst->topics[i];
            dst->ntopics = i + 1;
            if (!(d->name = strdup(s->name))) goto oom;
            if (!(d->parts = malloc((size_t)s->nparts * sizeof *d->parts))) goto oom;
            memcpy(d->parts, s->parts, (size_t)s->nparts * sizeof *d->parts);
            d->nparts = s->nparts;
        }
    }
    if (src->ngroups) {
        if (!(dst->groups = calloc((size_t)src->ngroups, sizeof *dst->groups))) goto oom;
        for (int32_t i = 0; i < src->ngroups; i++) {
            dst->ngroups = i + 1;
            if (!(dst->groups[i] = strdup(src->groups[i]))) goto oom;
        }
    }
    return SL_OK;
oom:
    sl_txn_rec_free(dst);
    return SL_ENOMEM;
}

bool sl_txn_rec_valid(const sl_txn_rec *r) {
    if (!r->tid || r->tid_len < 1 || r->tid_len > SL_TXN_ID_MAX || strlen(r->tid) != r->tid_len)
        return false;
    if (r->state >= SL_TXN_NSTATES || r->epoch < -1 || r->last_epoch < -1 || r->pid < -1 ||
        r->last_pid < -1 || r->timeout_ms < 0 || r->start_ms < -1 || r->update_ms < -1)
        return false;
    if (r->ntopics < 0 || r->ngroups < 0 || r->ngroups > SL_TXN_GROUPS_MAX) return false;
    int64_t total = 0;
    for (int32_t i = 0; i < r->ntopics; i++) {
        const sl_txn_topic *t = &r->topics[i];
        size_t n = strlen(t->name);
        if (n < 1 || n > SL_TXN_TOPIC_MAX || t->nparts < 1) return false;
        if (i && strcmp(r->topics[i - 1].name, t->name) >= 0) return false;
        for (int32_t k = 0; k < t->nparts; k++)
            if (t->parts[k] < 0 || (k && t->parts[k - 1] >= t->parts[k])) return false;
        total += t->nparts;
    }
    if (total > SL_TXN_PARTITIONS_MAX || total != r->nparts_total) return false;
    for (int32_t i = 0; i < r->ngroups; i++) {
        size_t n = strlen(r->groups[i]);
        if (n < 1 || n > SL_TXN_GROUP_MAX) return false;
        if (i && strcmp(r->groups[i - 1], r->groups[i]) >= 0) return false;
    }
    return true;
}

/* ---- encoding ---- */

static uint8_t *put16(uint8_t *p, uint16_t v) {
    sl_be16(p, v);
    return p + 2;
}
static uint8_t *put32(uint8_t *p, uint32_t v) {
    sl_be32(p, v);
    return p + 4;
}
static uint8_t *put64(uint8_t *p, uint64_t v) {
    sl_be64(p, v);
    return p + 8;
}
static uint8_t *putstr(uint8_t *p, const char *s, size_t n) {
    p = put16(p, (uint16_t)n);
    memcpy(p, s, n);
    return p + n;
}

static size_t body_size(const sl_txn_rec *r) {
    size_t n = SL_TXNLOG_BODY_MIN - 1 + r->tid_len;
    for (int32_t i = 0; i < r->ntopics; i++)
        n += 2 + strlen(r->topics[i].name) + 4 + 4 * (size_t)r->topics[i].nparts;
    for (int32_t i = 0; i < r->ngroups; i++) n += 2 + strlen(r->groups[i]);
    return n;
}

sl_err sl_txnlog_encode(const sl_txn_rec *r, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (!sl_txn_rec_valid(r)) return SL_EINVAL;
    size_t blen = body_size(r);
    if (blen > SL_TXNLOG_BODY_MAX) return SL_EINVAL;
    uint8_t *buf = malloc(SL_TXNLOG_FRAME + blen);
    if (!buf) return SL_ENOMEM;
    uint8_t *p = buf + SL_TXNLOG_FRAME;
    *p++ = BODY_VERSION;
    *p++ = r->state;
    p = put16(p, 0);
    p = put64(p, (uint64_t)r->pid);
    p = put64(p, (uint64_t)r->last_pid);
    p = put16(p, (uint16_t)r->epoch);
    p = put16(p, (uint16_t)r->last_epoch);
    p = put32(p, (uint32_t)r->timeout_ms);
    p = put64(p, (uint64_t)r->start_ms);
    p = put64(p, (uint64_t)r->update_ms);
    p = putstr(p, r->tid, r->tid_len);
    p = put32(p, (uint32_t)r->ntopics);
    for (int32_t i = 0; i < r->ntopics; i++) {
        const sl_txn_topic *t = &r->topics[i];
        p = putstr(p, t->name, strlen(t->name));
        p = put32(p, (uint32_t)t->nparts);
        for (int32_t k = 0; k < t->nparts; k++) p = put32(p, (uint32_t)t->parts[k]);
    }
    p = put32(p, (uint32_t)r->ngroups);
    for (int32_t i = 0; i < r->ngroups; i++) p = putstr(p, r->groups[i], strlen(r->groups[i]));
    sl_be32(buf, (uint32_t)blen);
    sl_be32(buf + 4, sl_crc32c(sl_crc32c(0, buf, 4), buf + SL_TXNLOG_FRAME, blen));
    *out = buf;
    *len = SL_TXNLOG_FRAME + blen;
    return SL_OK;
}

/* ---- decoding ---- */

/* A string of 1..max bytes without NUL, copied; NULL (r->err set) otherwise. */
static char *rd_name(sl_rd *r, size_t max) {
    uint16_t n = sl_rd_u16(r);
    if (!r->err && (n < 1 || n > max)) sl_rd_fail(r);
    const uint8_t *p = sl_rd_take(r, n);
    if (!p) return NULL;
    if (memchr(p, 0, n)) {
        sl_rd_fail(r);
        return NULL;
    }
    char *s = dup_n((const char *)p, n);
    if (!s) r->err = SL_ENOMEM;
    return s;
}

sl_err sl_txnlog_decode(const uint8_t *p, size_t n, sl_txn_rec *out) {
    memset(out, 0, sizeof *out);
    if (n < SL_TXNLOG_BODY_MIN || n > SL_TXNLOG_BODY_MAX) return SL_ECORRUPT;
    sl_rd r = sl_rd_init(p, n);
    uint8_t ver = (uint8_t)sl_rd_i8(&r);
    if (ver != BODY_VERSION) return SL_EVERSION;
    sl_txn_rec x = {0};
    x.state = (uint8_t)sl_rd_i8(&r);
    if (sl_rd_u16(&r) != 0) sl_rd_fail(&r); /* flags: none defined in version 1 */
    x.pid = sl_rd_i64(&r);
    x.last_pid = sl_rd_i64(&r);
    x.epoch = sl_rd_i16(&r);
    x.last_epoch = sl_rd_i16(&r);
    x.timeout_ms = sl_rd_i32(&r);
    x.start_ms = sl_rd_i64(&r);
    x.update_ms = sl_rd_i64(&r);
    x.tid = rd_name(&r, SL_TXN_ID_MAX);
    x.tid_len = x.tid ? (uint16_t)strlen(x.tid) : 0;
    /* A topic is at least a 1-byte name, a count and one partition. */
    int32_t nt = sl_rd_check_count(&r, sl_rd_u32(&r), 2 + 1 + 4 + 4);
    if (!r.err && (nt < 0 || nt > SL_TXN_PARTITIONS_MAX)) sl_rd_fail(&r);
    if (!r.err && nt > 0 && !(x.topics = calloc((size_t)nt, sizeof *x.topics))) r.err = SL_ENOMEM;
    for (int32_t i = 0; !r.err && i < nt; i++) {
        sl_txn_topic *t = &x.topics[i];
        x.ntopics = i + 1;
        t->name = rd_name(&r, SL_TXN_TOPIC_MAX);
        int32_t np = sl_rd_check_count(&r, sl_rd_u32(&r), 4);
        if (r.err) break;
        if (np < 1 || np > SL_TXN_PARTITIONS_MAX - x.nparts_total) {
            sl_rd_fail(&r);
            break;
        }
        if (!(t->parts = malloc((size_t)np * sizeof *t->parts))) {
            r.err = SL_ENOMEM;
            break;
        }
        t->nparts = np;
        x.nparts_total += np;
        for (int32_t k = 0; k < np; k++) t->parts[k] = sl_rd_i32(&r);
    }
    int32_t ng = sl_rd_check_count(&r, sl_rd_u32(&r), 2 + 1);
    if (!r.err && (ng < 0 || ng > SL_TXN_GROUPS_MAX)) sl_rd_fail(&r);
    if (!r.err && ng > 0 && !(x.groups = calloc((size_t)ng, sizeof *x.groups))) r.err = SL_ENOMEM;
    for (int32_t i = 0; !r.err && i < ng; i++) {
        x.ngroups = i + 1;
        x.groups[i] = rd_name(&r, SL_TXN_GROUP_MAX);
    }
    if (!r.err && sl_rd_left(&r) != 0) sl_rd_fail(&r);
    /* Order, ranges and the state are checked once, by the same rule the encoder applies. */
    if (!r.err && !sl_txn_rec_valid(&x)) sl_rd_fail(&r);
    if (r.err) {
        sl_txn_rec_free(&x);
        return r.err == SL_ENOMEM ? SL_ENOMEM : SL_ECORRUPT;
    }
    *out = x;
    return SL_OK;
}

/* ---- scanning a file image ---- */

static void file_header(uint8_t h[SL_TXNLOG_HDR]) {
    memcpy(h, MAGIC, 4);
    sl_be16(h + 4, FILE_VERSION);
    sl_be16(h + 6, 0);
    sl_be32(h + 8, sl_crc32c(0, h, 8));
}

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* True when a whole, checksummed record starts somewhere in p[from..n). A torn append leaves a
 * prefix of ONE record, so a good record after a bad one means the bad one's length was
 * damaged: corruption in the middle, not a crash. The first body bytes are checked before the
 * CRC so that scanning arbitrary bytes stays linear in practice. */
static bool record_follows(const uint8_t *p, size_t n, size_t from) {
    for (size_t q = from;
         n >= SL_TXNLOG_FRAME + SL_TXNLOG_BODY_MIN && q <= n - SL_TXNLOG_FRAME - SL_TXNLOG_BODY_MIN;
         q++) {
        const uint8_t *b = p + q + SL_TXNLOG_FRAME;
        if (b[0] != BODY_VERSION || b[1] >= SL_TXN_NSTATES || b[2] || b[3]) continue;
        uint32_t len = sl_get_be32(p + q);
        if (len < SL_TXNLOG_BODY_MIN || len > n - q - SL_TXNLOG_FRAME) continue;
        if (sl_crc32c(sl_crc32c(0, p + q, 4), b, len) == sl_get_be32(p + q + 4)) return true;
    }
    return false;
}

sl_err sl_txnlog_scan(const uint8_t *p, size_t n, sl_txnlog_each_fn each, void *ctx,
                      size_t *good_end, size_t *bad_off) {
    *good_end = 0;
    *bad_off = 0;
    /* The header is written whole by an atomic rename: anything else is damage. */
    if (n < SL_TXNLOG_HDR || memcmp(p, MAGIC, 4) || sl_get_be32(p + 8) != sl_crc32c(0, p, 8) ||
        sl_get_be16(p + 6) != 0)
        return SL_ECORRUPT;
    if (sl_get_be16(p + 4) != FILE_VERSION) return SL_EVERSION;
    size_t pos = SL_TXNLOG_HDR;
    *good_end = pos;
    while (pos < n) {
        size_t left = n - pos;
        if (left < SL_TXNLOG_FRAME) return SL_OK; /* torn in the frame header */
        uint32_t len = sl_get_be32(p + pos);
        if (len < SL_TXNLOG_BODY_MIN || len > SL_TXNLOG_BODY_MAX) {
            /* Space the file system allocated for an append that never reached it. */
            if (all_zero(p + pos, left)) return SL_OK;
            *bad_off = pos;
            return SL_ECORRUPT;
        }
        if (len > left - SL_TXNLOG_FRAME) {
            if (!record_follows(p, n, pos + 1)) return SL_OK; /* the append did not finish */
            *bad_off = pos;
            return SL_ECORRUPT;
        }
        const uint8_t *body = p + pos + SL_TXNLOG_FRAME;
        if (sl_crc32c(sl_crc32c(0, p + pos, 4), body, len) != sl_get_be32(p + pos + 4)) {
            if (pos + SL_TXNLOG_FRAME + len == n) return SL_OK; /* last, partly written */
            *bad_off = pos;
            return SL_ECORRUPT;
        }
        sl_txn_rec r;
        sl_err e = sl_txnlog_decode(body, len, &r);
        if (!e && each) e = each(ctx, &r);
        sl_txn_rec_free(&r);
        if (e) {
            *bad_off = pos;
            return e;
        }
        pos += SL_TXNLOG_FRAME + len;
        *good_end = pos;
    }
    return SL_OK;
}

/* ---- the file ---- */

struct sl_txnlog {
    char dir[PATH_MAX];
    char path[PATH_MAX];
    int fd;
    int64_t size; /* bytes known good and durable */
    int64_t records;
    bool failed;
};

static sl_err errno_err(int e) { return e == ENOSPC || e == EDQUOT ? SL_ENOSPC : SL_EIO; }

static bool pwrite_all(int fd, const uint8_t *p, size_t n, off_t off) {
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            return false;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return true;
}

typedef struct count_ctx {
    sl_txnlog_each_fn each;
    void *ctx;
    int64_t n;
} count_ctx;

static sl_err count_each(void *ctx, const sl_txn_rec *r) {
    count_ctx *c = ctx;
    c->n++;
    return c->each ? c->each(c->ctx, r) : SL_OK;
}

sl_err sl_txnlog_open(const char *dir, sl_txnlog_each_fn each, void *ctx, sl_txnlog **out,
                      char *err, size_t elen) {
    *out = NULL;
    sl_txnlog *l = calloc(1, sizeof *l);
    if (!l) return SL_ENOMEM;
    l->fd = -1;
    if (snprintf(l->dir, sizeof l->dir, "%s", dir) >= (int)sizeof l->dir ||
        snprintf(l->path, sizeof l->path, "%s/%s", dir, SL_TXNLOG_FILE) >= (int)sizeof l->path) {
        snprintf(err, elen, "transaction log directory name too long");
        free(l);
        return SL_EINVAL;
    }
    sl_err e = sl_mkdir_p(dir, 0700);
    struct stat st;
    if (!e && stat(l->path, &st) != 0) {
        if (errno != ENOENT) {
            e = SL_EIO;
        } else {
            uint8_t h[SL_TXNLOG_HDR];
            file_header(h);
            e = sl_file_write_atomic(dir, SL_TXNLOG_FILE, h, sizeof h, 0600);
        }
    }
    if (!e && (l->fd = open(l->path, O_RDWR | O_CLOEXEC)) < 0) e = SL_EIO;
    if (!e && fstat(l->fd, &st) != 0) e = SL_EIO;
    if (e) {
        snprintf(err, elen, "transaction log %s: %s (%s)", l->path, sl_strerror(e),
                 strerror(errno));
        sl_txnlog_close(l);
        return e;
    }
    size_t n = (size_t)st.st_size, good = 0, bad = 0;
    count_ctx cc = {each, ctx, 0};
    uint8_t *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, l->fd, 0) : NULL;
    if (n && map == MAP_FAILED) {
        e = SL_EIO;
    } else {
        static const uint8_t none[1];
        e = sl_txnlog_scan(map ? map : none, n, count_each, &cc, &good, &bad);
        if (map) munmap(map, n);
    }
    if (e) {
        snprintf(err, elen, "transaction log %s: %s at byte offset %zu", l->path, sl_strerror(e),
                 bad);
        sl_txnlog_close(l);
        return e;
    }
    if (good < n) {
        SL_WARN(SUB, "cutting a torn tail of the transaction log", "file=%s offset=%zu bytes=%zu",
                l->path, good, n - good);
        if (ftruncate(l->fd, (off_t)good) != 0 || fsync(l->fd) != 0) {
            snprintf(err, elen, "transaction log %s: cannot cut the torn tail at %zu: %s", l->path,
                     good, strerror(errno));
            sl_txnlog_close(l);
            return SL_EIO;
        }
    }
    /* A temporary file left by a rewrite a crash interrupted is incomplete by definition. */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, SL_TXNLOG_FILE);
    (void)unlink(tmp);
    l->size = (int64_t)good;
    l->records = cc.n;
    *out = l;
    return SL_OK;
}

void sl_txnlog_close(sl_txnlog *l) {
    if (!l) return;
    if (l->fd >= 0) close(l->fd);
    free(l);
}

sl_err sl_txnlog_append(sl_txnlog *l, const sl_txn_rec *r) {
    if (l->failed) return SL_EIO;
    uint8_t *buf;
    size_t len;
    sl_err e = sl_txnlog_encode(r, &buf, &len);
    if (e) return e;
    if (!pwrite_all(l->fd, buf, len, (off_t)l->size)) {
        e = errno_err(errno);
        /* A partial record followed by later good ones would read as corruption in the middle:
         * cut it now; the log stays refused anyway (the failure may not be the last). */
        if (ftruncate(l->fd, (off_t)l->size) != 0) {
            SL_ERROR(SUB, "cannot cut a failed append", "file=%s err=%s", l->path, strerror(errno));
        }
        l->failed = true;
    } else if (fdatasync(l->fd) != 0) {
        e = SL_EIO;
        l->failed = true;
    }
    free(buf);
    if (e) {
        SL_ERROR(SUB, "transaction log append failed; refusing further appends until reopened",
                 "file=%s err=%s", l->path, sl_errname(e));
        return e;
    }
    l->size += (int64_t)len;
    l->records++;
    return SL_OK;
}

sl_err sl_txnlog_rewrite(sl_txnlog *l, const sl_txn_rec *const *recs, size_t n) {
    if (l->failed) return SL_EIO;
    size_t cap = SL_TXNLOG_HDR, len = SL_TXNLOG_HDR;
    uint8_t *all = malloc(cap);
    if (!all) return SL_ENOMEM;
    file_header(all);
    sl_err e = SL_OK;
    for (size_t i = 0; !e && i < n; i++) {
        uint8_t *b;
        size_t bl;
        if ((e = sl_txnlog_encode(recs[i], &b, &bl))) break;
        if (len + bl > cap) {
            size_t nc = cap * 2;
            while (nc < len + bl) nc *= 2;
            uint8_t *na = realloc(all, nc);
            if (!na) {
                free(b);
                e = SL_ENOMEM;
                break;
            }
            all = na;
            cap = nc;
        }
        memcpy(all + len, b, bl);
        len += bl;
        free(b);
    }
    if (!e) e = sl_file_write_atomic(l->dir, SL_TXNLOG_FILE, all, len, 0600);
    free(all);
    if (e) {
        SL_WARN(SUB, "transaction log rewrite failed; keeping the old file", "file=%s err=%s",
                l->path, sl_errname(e));
        return e;
    }
    /* The rename is durable: appends must go to the new file from now on. */
    int fd = open(l->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        l->failed = true;
        return SL_EIO;
    }
    close(l->fd);
    l->fd = fd;
    l->size = (int64_t)len;
    l->records = (int64_t)n;
    return SL_OK;
}

int64_t sl_txnlog_records(const sl_txnlog *l) { return l->records; }
int64_t sl_txnlog_bytes(const sl_txnlog *l) { return l->size; }
bool sl_txnlog_failed(const sl_txnlog *l) { return l->failed; }
const char *sl_txnlog_path(const sl_txnlog *l) { return l->path; }
