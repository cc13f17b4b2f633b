/* Partition log. The on-disk format is specified in docs/on-disk-format.md; keep them in sync. */
#include "sl_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_dek.h"
#include "proto/sl_records.h"
#include "sl_batch_build.h"
#include "sl_frame.h"
#include "sl_log_internal.h"
#include "sl_storage_hooks.h"

ssize_t (*sl_storage_pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off) = pwritev;
int (*sl_storage_fsync)(int fd) = fsync;

#define SUB "storage"

/* File header. Version 1: plaintext segment, 64 bytes. Version 2: encrypted segment, flags bit
 * 0 set, the 64 bytes followed by the segment's envelope (header length 64 + envelope). */
#define FILE_MAGIC       0x534C5347u /* "SLSG" */
#define FILE_VERSION     1
#define FILE_VERSION_ENC 2
#define FILE_FLAG_ENC    0x0001
#define FILE_HDR         64
#define FILE_HDR_CRC     60
#define FILE_HDR_MAX     (FILE_HDR + SL_ENV_MAX)

#define CKPT_NAME  "log-start-offset"
#define CKPT_MAGIC 0x534C534Fu /* "SLSO" */
#define CKPT_SIZE  20

/* Positions are u32 in the index, so a segment never grows past 2 GiB. */
#define SEGMENT_BYTES_MAX ((int64_t)INT32_MAX)

/* Encrypted frames: nonce = 4 zero bytes || 64-bit big-endian counter per DEK, and one DEK per
 * segment. NIST SP 800-38D caps a key at 2^32 GCM invocations; a 2 GiB segment holds far fewer
 * frames than that, so the cap is never reached (and the append path rolls before it anyway). */
#define ENC_OVERHEAD  (SL_FRAME_ENC_NONCE + SL_FRAME_ENC_TAG)
#define ENC_FRAME_MIN (SL_FRAME_HDR_MIN + ENC_OVERHEAD + SL_BATCH_HEADER_SIZE)
#define NONCE_CTR_MAX ((uint64_t)UINT32_MAX)
_Static_assert(SEGMENT_BYTES_MAX / ENC_FRAME_MIN < (int64_t)NONCE_CTR_MAX,
               "a segment could hold more GCM invocations than one DEK may make");

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

/* Writes all of iov at `off` through the hook, retrying short writes. */
static sl_err write_all(int fd, struct iovec *iov, int n, off_t off) {
    while (n > 0 && iov->iov_len == 0) iov++, n--;
    while (n > 0) {
        ssize_t w = sl_storage_pwritev(fd, iov, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno_err(errno);
        }
        if (w == 0) return SL_EIO;
        off += w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        while (n > 0 && w == 0 && iov->iov_len == 0) iov++, n--;
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return SL_OK;
}

static sl_err pwrite_all(int fd, const void *p, size_t len, off_t off) {
    struct iovec iov = {(void *)(uintptr_t)p, len};
    return write_all(fd, &iov, 1, off);
}

static sl_err pread_all(int fd, void *p, size_t len, off_t off) {
    uint8_t *d = p;
    while (len) {
        ssize_t r = pread(fd, d, len, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno_err(errno);
        }
        if (r == 0) return SL_ECORRUPT; /* file shorter than we were told: treat as torn */
        d += r;
        len -= (size_t)r;
        off += r;
    }
    return SL_OK;
}

static sl_err do_fsync(int fd) {
    if (sl_storage_fsync(fd) != 0) return errno_err(errno);
    return SL_OK;
}

static void seg_path(char *out, size_t cap, const char *dir, int64_t base, const char *ext) {
    snprintf(out, cap, "%s/%020" PRId64 "%s", dir, base, ext);
}

/* ---- buffered frame scanner over one segment file ---------------------------------------- */

typedef struct scan {
    int fd;
    int64_t pos, end; /* next frame position; logical end of data */
    uint8_t *buf;
    size_t cap, have;
    int64_t buf_off; /* file position of buf[0] */
} scan;

#define SCAN_CHUNK (1u << 20)

static void scan_init(scan *s, int fd, int64_t pos, int64_t end) {
    *s = (scan){.fd = fd, .pos = pos, .end = end, .buf_off = -1};
}
static void scan_done(scan *s) { free(s->buf); }

/* Makes [pos, pos + n) available in the buffer; n <= end - pos. */
static sl_err scan_ensure(scan *s, size_t n, const uint8_t **out) {
    if (s->buf_off >= 0 && s->pos >= s->buf_off &&
        s->pos + (int64_t)n <= s->buf_off + (int64_t)s->have) {
        *out = s->buf + (s->pos - s->buf_off);
        return SL_OK;
    }
    size_t want = n > SCAN_CHUNK ? n : SCAN_CHUNK;
    if ((int64_t)want > s->end - s->pos) want = (size_t)(s->end - s->pos);
    if (want > s->cap) {
        uint8_t *nb = realloc(s->buf, want);
        if (!nb) return SL_ENOMEM;
        s->buf = nb;
        s->cap = want;
    }
    sl_err e = pread_all(s->fd, s->buf, want, s->pos);
    if (e) {
        s->buf_off = -1;
        return e;
    }
    s->buf_off = s->pos;
    s->have = want;
    *out = s->buf;
    return SL_OK;
}

/* Reads the frame at s->pos and advances past it. SL_ERANGE at the clean end, SL_ECORRUPT for a
 * torn or invalid frame (s->pos stays on it), other errors for I/O. With `check_payload` the
 * batch inside is validated too (CRC included). */
static sl_err scan_next(scan *s, sl_frame *f, bool check_payload) {
    if (s->pos >= s->end) return SL_ERANGE;
    int64_t rem = s->end - s->pos;
    if (rem < SL_FRAME_HDR_MIN) return SL_ECORRUPT;
    const uint8_t *p;
    size_t hn = rem < SL_FRAME_HDR_MAX ? (size_t)rem : SL_FRAME_HDR_MAX;
    sl_err e = scan_ensure(s, hn, &p);
    if (e) return e;
    if (sl_frame_decode(p, hn, f) != SL_FRAME_OK) return SL_ECORRUPT;
    if ((int64_t)f->flen > rem) return SL_ECORRUPT;
    if (check_payload) {
        e = scan_ensure(s, f->flen, &p);
        if (e) return e;
        if (!sl_frame_payload_ok(f, p + f->hlen)) return SL_ECORRUPT;
    }
    s->pos += f->flen;
    return SL_OK;
}

/* ---- descriptor cache -------------------------------------------------------------------- */

#define FD_CACHE_MIN 8

static const char *const k_seg_ext[SL_SEG_NFILES] = {".log", ".index", ".timeindex"};

/* One process-wide cache: the file limit is per process, and the flusher thread and the loop
 * share the files. `lru` is a circular list of open slots, most recently used first. */
static struct {
    pthread_mutex_t mu;
    sl_fslot lru;
    int open, cap; /* cap 0: not set yet, derived from the file limit on first use */
} g_fc = {.mu = PTHREAD_MUTEX_INITIALIZER, .lru = {.fd = -1, .prev = &g_fc.lru, .next = &g_fc.lru}};

static void fc_unlink(sl_fslot *f) {
    f->prev->next = f->next;
    f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void fc_push_front(sl_fslot *f) {
    f->next = g_fc.lru.next;
    f->prev = &g_fc.lru;
    g_fc.lru.next->prev = f;
    g_fc.lru.next = f;
}

static int fc_cap_locked(void) {
    if (!g_fc.cap) {
        struct rlimit rl;
        long long lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                            ? (long long)rl.rlim_cur
                            : 1024;
        g_fc.cap = lim / 2 > FD_CACHE_MIN ? (int)(lim / 2 < INT32_MAX ? lim / 2 : INT32_MAX)
                                          : FD_CACHE_MIN;
    }
    return g_fc.cap;
}

/* Closes the least recently used unpinned descriptor; false when every open one is pinned. */
static bool fc_evict_one_locked(void) {
    for (sl_fslot *f = g_fc.lru.prev; f != &g_fc.lru; f = f->prev) {
        if (f->pins) continue;
        close(f->fd);
        f->fd = -1;
        fc_unlink(f);
        g_fc.open--;
        return true;
    }
    return false;
}

void sl_log_fd_cache_set_capacity(int n) {
    pthread_mutex_lock(&g_fc.mu);
    g_fc.cap = n < FD_CACHE_MIN ? FD_CACHE_MIN : n;
    while (g_fc.open > g_fc.cap && fc_evict_one_locked()) {
    }
    pthread_mutex_unlock(&g_fc.mu);
}

int sl_log_fd_cache_capacity(void) {
    pthread_mutex_lock(&g_fc.mu);
    int n = fc_cap_locked();
    pthread_mutex_unlock(&g_fc.mu);
    return n;
}

int sl_log_fd_cache_open_count(void) {
    pthread_mutex_lock(&g_fc.mu);
    int n = g_fc.open;
    pthread_mutex_unlock(&g_fc.mu);
    return n;
}

/* open(2) that, when the process is out of descriptors (connections and the broker's own files
 * may have taken the room the cache counted on), closes unpinned cached ones and retries rather
 * than fail. Called with the cache's mutex held. */
static int open_evicting_locked(const char *path, int flags) {
    int fd;
    while ((fd = open(path, flags | O_CLOEXEC, 0600)) < 0 && (errno == EMFILE || errno == ENFILE) &&
           fc_evict_one_locked()) {
    }
    return fd;
}

/* A pinned descriptor for file `k` of segment `s`, opened (with `oflags` added to O_RDWR) when
 * not cached; -1 with errno set on failure. Every success is paired with seg_fd_put(). Opening
 * under the mutex keeps two threads from opening the same slot; open() of an existing file is
 * cheap next to what the caller then does with it. */
static int seg_fd(sl_seg *s, int k, int oflags) {
    sl_fslot *f = &s->f[k];
    pthread_mutex_lock(&g_fc.mu);
    if (f->fd >= 0) {
        f->pins++;
        fc_unlink(f);
        fc_push_front(f);
        pthread_mutex_unlock(&g_fc.mu);
        return f->fd;
    }
    int cap = fc_cap_locked();
    while (g_fc.open >= cap && fc_evict_one_locked()) {
    }
    char path[4096];
    seg_path(path, sizeof path, s->dir, s->base, k_seg_ext[k]);
    int fd = open_evicting_locked(path, oflags | O_RDWR);
    if (fd >= 0) {
        f->fd = fd;
        f->pins = 1;
        fc_push_front(f);
        g_fc.open++;
    }
    int en = errno;
    pthread_mutex_unlock(&g_fc.mu);
    errno = en;
    return fd;
}

static void seg_fd_put(sl_seg *s, int k) {
    pthread_mutex_lock(&g_fc.mu);
    s->f[k].pins--;
    pthread_mutex_unlock(&g_fc.mu);
}

static void seg_fd_close_all(sl_seg *s) {
    pthread_mutex_lock(&g_fc.mu);
    for (int k = 0; k < SL_SEG_NFILES; k++)
        if (s->f[k].fd >= 0) {
            close(s->f[k].fd);
            s->f[k].fd = -1;
            fc_unlink(&s->f[k]);
            g_fc.open--;
        }
    pthread_mutex_unlock(&g_fc.mu);
}

/* I/O through the cache: each pins the descriptor for the one call. */
static sl_err seg_pwrite(sl_seg *s, int k, const void *p, size_t len, off_t off) {
    int fd = seg_fd(s, k, 0);
    if (fd < 0) return errno_err(errno);
    sl_err e = pwrite_all(fd, p, len, off);
    seg_fd_put(s, k);
    return e;
}

static sl_err seg_pread(sl_seg *s, int k, void *p, size_t len, off_t off) {
    int fd = seg_fd(s, k, 0);
    if (fd < 0) return errno_err(errno);
    sl_err e = pread_all(fd, p, len, off);
    seg_fd_put(s, k);
    return e;
}

static sl_err seg_truncate(sl_seg *s, int k, off_t len) {
    int fd = seg_fd(s, k, 0);
    if (fd < 0) return errno_err(errno);
    sl_err e = ftruncate(fd, len) != 0 ? errno_err(errno) : SL_OK;
    seg_fd_put(s, k);
    return e;
}

/* Size of file `k`, or -1 with errno set. */
static int64_t seg_file_size(sl_seg *s, int k) {
    int fd = seg_fd(s, k, 0);
    if (fd < 0) return -1;
    struct stat st;
    int64_t n = fstat(fd, &st) == 0 ? (int64_t)st.st_size : -1;
    int en = errno;
    seg_fd_put(s, k);
    errno = en;
    return n;
}

/* fsync of file `k`. A file retention or deletion unlinked meanwhile has nothing to make
 * durable; any other failure to reopen is an error. */
static sl_err seg_fsync(sl_seg *s, int k, bool *opened) {
    int fd = seg_fd(s, k, 0);
    *opened = fd >= 0;
    if (fd < 0) {
        if (errno == ENOENT && atomic_load_explicit(&s->gone, memory_order_acquire)) return SL_OK;
        return errno_err(errno);
    }
    sl_err e = do_fsync(fd);
    seg_fd_put(s, k);
    return e;
}

/* fsync of a directory through a short-lived descriptor (logs keep none open); *opened tells a
 * failure to open it from a failed fsync. */
static sl_err fsync_dir_opened(const char *dir, bool *opened) {
    pthread_mutex_lock(&g_fc.mu);
    int fd = open_evicting_locked(dir, O_RDONLY | O_DIRECTORY);
    int en = errno;
    pthread_mutex_unlock(&g_fc.mu);
    *opened = fd >= 0;
    if (fd < 0) return errno_err(en);
    sl_err e = do_fsync(fd);
    close(fd);
    return e;
}

static sl_err fsync_dir(const char *dir) {
    bool opened;
    return fsync_dir_opened(dir, &opened);
}

/* ---- segments ---------------------------------------------------------------------------- */

static void seg_unref(sl_seg *s) {
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    seg_fd_close_all(s);
    sl_dek_unref(s->wdek); /* normally released on the loop thread already (roll, close) */
    free(s->idx);
    free(s->tidx);
    free(s);
}

static sl_seg *seg_alloc(const char *dir, int64_t base) {
    sl_seg *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->dir = dir;
    s->base = s->next = base;
    s->size = s->hdr_len = FILE_HDR;
    s->max_ts = -1;
    s->max_ts_off = -1;
    for (int k = 0; k < SL_SEG_NFILES; k++) s->f[k].fd = -1;
    atomic_init(&s->refs, 1);
    atomic_init(&s->gone, false);
    return s;
}

static bool idx_push(sl_seg *s, uint32_t rel, uint32_t pos) {
    if (s->nidx == s->cidx) {
        uint32_t nc = s->cidx ? s->cidx * 2 : 64;
        sl_idx_ent *n = realloc(s->idx, (size_t)nc * sizeof *n);
        if (!n) return false;
        s->idx = n;
        s->cidx = nc;
    }
    s->idx[s->nidx++] = (sl_idx_ent){rel, pos};
    return true;
}

static bool tidx_push(sl_seg *s, int64_t ts, uint32_t rel) {
    if (s->ntidx == s->ctidx) {
        uint32_t nc = s->ctidx ? s->ctidx * 2 : 64;
        sl_tidx_ent *n = realloc(s->tidx, (size_t)nc * sizeof *n);
        if (!n) return false;
        s->tidx = n;
        s->ctidx = nc;
    }
    s->tidx[s->ntidx++] = (sl_tidx_ent){ts, rel};
    return true;
}

/* Appends a time index entry for the segment's current max timestamp if it grew. Index files
 * are hints (rebuilt when missing or bad), so a failed write only skips the entry. */
static bool seg_time_point(sl_seg *s, bool write) {
    if (s->max_ts < 0 || (s->ntidx && s->tidx[s->ntidx - 1].ts >= s->max_ts)) return false;
    uint32_t rel = (uint32_t)(s->max_ts_off - s->base);
    if (write) {
        uint8_t e[12];
        sl_be64(e, (uint64_t)s->max_ts);
        sl_be32(e + 8, rel);
        if (seg_pwrite(s, SL_SEG_TIMEINDEX, e, 12, (off_t)s->ntidx * 12) != SL_OK) return false;
    }
    return tidx_push(s, s->max_ts, rel);
}

/* Accounts for the frame just written (or found by a scan) at `pos`. Returns true when index
 * files were written (the caller marks them dirty under the log's mutex). */
static bool seg_note_frame(sl_seg *s, const sl_log_config *cfg, int64_t pos, const sl_frame *f,
                           bool write) {
    return sl_log__seg_note_frame(s, cfg->index_interval_bytes, pos, f, write);
}

bool sl_log__seg_note_frame(sl_seg *s, int32_t index_interval_bytes, int64_t pos, const sl_frame *f,
                            bool write) {
    bool wrote = false;
    s->next = f->base + f->lod + 1;
    if (f->max_ts > s->max_ts) {
        s->max_ts = f->max_ts;
        s->max_ts_off = s->next - 1;
    }
    if (s->bytes_since_idx >= index_interval_bytes) {
        uint32_t rel = (uint32_t)(f->base - s->base);
        bool ok = true;
        if (write) {
            uint8_t e[8];
            sl_be32(e, rel);
            sl_be32(e + 4, (uint32_t)pos);
            ok = seg_pwrite(s, SL_SEG_INDEX, e, 8, (off_t)s->nidx * 8) == SL_OK;
        }
        if (ok && idx_push(s, rel, (uint32_t)pos)) {
            s->bytes_since_idx = 0;
            (void)seg_time_point(s, write);
            wrote = write;
        }
    }
    s->bytes_since_idx += f->flen;
    s->size = pos + f->flen;
    return wrote;
}

sl_seg *sl_log__seg_alloc(const char *dir, int64_t base) { return seg_alloc(dir, base); }
void sl_log__seg_unref(sl_seg *s) { seg_unref(s); }
bool sl_log__seg_time_point(sl_seg *s, bool write) { return seg_time_point(s, write); }

/* Position of the frame to start scanning from for `offset`: the last indexed frame whose base
 * is <= offset, else the first frame. */
static int64_t seg_lookup(const sl_seg *s, int64_t offset) {
    uint32_t lo = 0, hi = s->nidx;
    int64_t rel = offset - s->base;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((int64_t)s->idx[mid].rel <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? (int64_t)s->idx[lo - 1].pos : (int64_t)s->hdr_len;
}

/* Writes the file header (and, for an encrypted segment, its envelope after it) into h
 * (FILE_HDR_MAX bytes). Returns the header length, 0 when env does not encode. */
static size_t encode_file_header(uint8_t *h, int64_t base, int64_t created_ms,
                                 const sl_envelope *env) {
    memset(h, 0, FILE_HDR);
    size_t n = FILE_HDR;
    if (env) {
        size_t el = sl_envelope_encode(env, h + FILE_HDR, SL_ENV_MAX);
        if (!el) return 0;
        n += el;
    }
    sl_be32(h, FILE_MAGIC);
    sl_be16(h + 4, env ? FILE_VERSION_ENC : FILE_VERSION);
    sl_be16(h + 6, env ? FILE_FLAG_ENC : 0);
    sl_be64(h + 8, (uint64_t)base);
    sl_be64(h + 16, (uint64_t)created_ms);
    sl_be32(h + 24, (uint32_t)n);
    sl_be32(h + FILE_HDR_CRC, sl_crc32c(0, h, FILE_HDR_CRC));
    return n;
}

/* Decodes the fixed 64 bytes: version 1 (plaintext, length 64) or 2 (encrypted, flags bit 0,
 * length 64 + an envelope of plausible size). The envelope is decoded separately. */
static bool decode_file_header(const uint8_t *h, int64_t *base, int64_t *created_ms, uint32_t *hlen,
                               bool *enc) {
    if (sl_get_be32(h) != FILE_MAGIC) return false;
    if (sl_get_be32(h + FILE_HDR_CRC) != sl_crc32c(0, h, FILE_HDR_CRC)) return false;
    uint16_t v = sl_get_be16(h + 4), flags = sl_get_be16(h + 6);
    uint32_t n = sl_get_be32(h + 24);
    if (v == FILE_VERSION) {
        if (flags != 0 || n != FILE_HDR) return false;
    } else if (v == FILE_VERSION_ENC) {
        if (flags != FILE_FLAG_ENC || n <= FILE_HDR || n > FILE_HDR_MAX) return false;
    } else {
        return false;
    }
    *base = (int64_t)sl_get_be64(h + 8);
    *created_ms = (int64_t)sl_get_be64(h + 16);
    *hlen = n;
    *enc = v == FILE_VERSION_ENC;
    return true;
}

_Static_assert(SL_LOG_HDR_MAX == FILE_HDR_MAX, "sl_log_internal.h's header size");

size_t sl_log__encode_file_header(uint8_t *h, int64_t base, int64_t created_ms,
                                  const sl_envelope *env) {
    return encode_file_header(h, base, created_ms, env);
}

sl_err sl_log__read_file_header(int fd, int64_t expect_base, uint32_t *hdr_len, bool *enc,
                                sl_envelope *env, int64_t *created_ms) {
    uint8_t h[FILE_HDR_MAX];
    int64_t base;
    memset(env, 0, sizeof *env);
    sl_err e = pread_all(fd, h, FILE_HDR, 0);
    if (e) return e;
    if (!decode_file_header(h, &base, created_ms, hdr_len, enc) || base != expect_base)
        return SL_ECORRUPT;
    if (!*enc) return SL_OK;
    if ((e = pread_all(fd, h + FILE_HDR, *hdr_len - FILE_HDR, FILE_HDR)) != SL_OK) return e;
    if (sl_envelope_decode(h + FILE_HDR, *hdr_len - FILE_HDR, env) != SL_FRAME_OK ||
        env->seg_base != expect_base)
        return SL_ECORRUPT;
    return SL_OK;
}

static void unlink_seg_files(const char *dir, int64_t base) {
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    for (size_t i = 0; i < 3; i++) {
        char path[4096];
        seg_path(path, sizeof path, dir, base, exts[i]);
        (void)unlink(path);
    }
}

/* Creates segment files at `base`: plaintext when env is NULL, else encrypted under `dek` (the
 * reference passes to the segment on success; the caller keeps it on failure). */
static sl_err seg_create(sl_log *log, int64_t base, const sl_envelope *env, sl_dek *dek,
                         sl_seg **out) {
    sl_seg *s = seg_alloc(log->dir, base);
    if (!s) return SL_ENOMEM;
    sl_err e = SL_OK;
    s->created_ms = sl_wall_ms();
    uint8_t h[FILE_HDR_MAX];
    size_t hl = encode_file_header(h, base, s->created_ms, env);
    if (!hl) {
        seg_unref(s);
        return SL_EINVAL;
    }
    int en = 0;
    for (int k = 0; k < SL_SEG_NFILES && !e; k++) {
        int fd = seg_fd(s, k, O_CREAT | O_TRUNC);
        if (fd < 0) {
            en = errno;
            e = errno_err(en);
            break;
        }
        if (k == SL_SEG_LOG) {
            e = pwrite_all(fd, h, hl, 0);
            en = errno;
        }
        seg_fd_put(s, k);
    }
    if (e) {
        /* The errno is the reason an operator can act on (EMFILE, ENOSPC, EACCES...). */
        SL_ERROR(SUB, "segment create failed", "dir=%s base=%" PRId64 " err=%s reason=%s", log->dir,
                 base, sl_errname(e), strerror(en));
        seg_unref(s);
        unlink_seg_files(log->dir, base);
        return e;
    }
    s->data_dirty = true;
    s->size = s->hdr_len = (uint32_t)hl;
    if (env) {
        s->enc = true;
        s->env = *env;
        s->wdek = dek;
    }
    *out = s;
    return SL_OK;
}

/* Rewrites both index files from the in-memory arrays. */
static sl_err seg_write_indexes(sl_seg *s) {
    size_t n = (size_t)s->nidx * 8, m = (size_t)s->ntidx * 12;
    uint8_t *b = malloc((n > m ? n : m) + 1);
    if (!b) return SL_ENOMEM;
    for (uint32_t i = 0; i < s->nidx; i++) {
        sl_be32(b + i * 8, s->idx[i].rel);
        sl_be32(b + i * 8 + 4, s->idx[i].pos);
    }
    sl_err e = seg_truncate(s, SL_SEG_INDEX, 0);
    if (!e) e = seg_pwrite(s, SL_SEG_INDEX, b, n, 0);
    for (uint32_t i = 0; !e && i < s->ntidx; i++) {
        sl_be64(b + i * 12, (uint64_t)s->tidx[i].ts);
        sl_be32(b + i * 12 + 8, s->tidx[i].rel);
    }
    if (!e) e = seg_truncate(s, SL_SEG_TIMEINDEX, 0);
    if (!e) e = seg_pwrite(s, SL_SEG_TIMEINDEX, b, m, 0);
    free(b);
    s->idx_dirty = true;
    return e;
}

static void seg_reset_indexes(sl_seg *s) {
    s->nidx = s->ntidx = 0;
    s->next = s->base;
    s->size = s->hdr_len;
    s->max_ts = s->max_ts_off = -1;
    s->bytes_since_idx = 0;
}

/* Scans every frame of the segment rebuilding its in-memory state and indexes. With
 * `truncate_bad` a torn or corrupt frame ends the segment (the file is cut there); otherwise it
 * is an error. */
static sl_err seg_rebuild(sl_log *log, sl_seg *s, int64_t file_size, bool truncate_bad) {
    seg_reset_indexes(s);
    int fd = seg_fd(s, SL_SEG_LOG, 0);
    if (fd < 0) return errno_err(errno);
    scan sc;
    scan_init(&sc, fd, s->hdr_len, file_size);
    sl_frame f;
    sl_err e;
    while ((e = scan_next(&sc, &f, true)) == SL_OK) {
        if (f.base != s->next) {
            e = SL_ECORRUPT;
            sc.pos -= f.flen;
            break;
        }
        (void)seg_note_frame(s, &log->cfg, sc.pos - f.flen, &f, false);
    }
    int64_t good = sc.pos;
    scan_done(&sc);
    seg_fd_put(s, SL_SEG_LOG);
    if (e == SL_ERANGE) e = SL_OK;
    if (e == SL_ECORRUPT) {
        char path[4096];
        seg_path(path, sizeof path, log->dir, s->base, ".log");
        if (!truncate_bad) {
            SL_ERROR(SUB, "corrupt frame in sealed segment", "file=%s pos=%" PRId64, path, good);
            return SL_ECORRUPT;
        }
        SL_WARN(SUB, "truncating torn or corrupt tail", "file=%s pos=%" PRId64 " dropped=%" PRId64,
                path, good, file_size - good);
        if ((e = seg_truncate(s, SL_SEG_LOG, good)) != SL_OK) return e;
        s->data_dirty = true;
        e = SL_OK;
    }
    if (e) return e;
    s->size = good;
    return seg_write_indexes(s);
}

/* Loads the index files of a sealed segment and checks them against the data: entries must be
 * strictly increasing and inside the file, and a scan from the last entry must land exactly on
 * the end of the file. Fills next/max_ts. Returns false if anything is off (caller rebuilds). */
static bool seg_load_indexes(sl_log *log, sl_seg *s, int64_t file_size) {
    int64_t isz = seg_file_size(s, SL_SEG_INDEX);
    if (isz < 0 || isz % 8 || isz / 8 > file_size / SL_FRAME_HDR_MIN) return false;
    uint32_t n = (uint32_t)(isz / 8);
    uint8_t *b = malloc((size_t)n * 8 + 1);
    if (!b || seg_pread(s, SL_SEG_INDEX, b, (size_t)n * 8, 0) != SL_OK) {
        free(b);
        return false;
    }
    bool ok = true;
    for (uint32_t i = 0; ok && i < n; i++) {
        uint32_t rel = sl_get_be32(b + i * 8), pos = sl_get_be32(b + i * 8 + 4);
        if (pos < s->hdr_len || pos >= file_size ||
            (i && (rel <= s->idx[i - 1].rel || pos <= s->idx[i - 1].pos)))
            ok = false;
        else
            ok = idx_push(s, rel, pos);
    }
    free(b);
    if (!ok) return false;

    int64_t tsz = seg_file_size(s, SL_SEG_TIMEINDEX);
    if (tsz < 0 || tsz % 12 || tsz / 12 > file_size / SL_FRAME_HDR_MIN) return false;
    n = (uint32_t)(tsz / 12);
    b = malloc((size_t)n * 12 + 1);
    if (!b || seg_pread(s, SL_SEG_TIMEINDEX, b, (size_t)n * 12, 0) != SL_OK) {
        free(b);
        return false;
    }
    for (uint32_t i = 0; ok && i < n; i++) {
        int64_t ts = (int64_t)sl_get_be64(b + i * 12);
        uint32_t rel = sl_get_be32(b + i * 12 + 8);
        if (ts < 0 || (i && ts < s->tidx[i - 1].ts))
            ok = false;
        else
            ok = tidx_push(s, ts, rel);
    }
    free(b);
    if (!ok) return false;

    /* Walk the tail after the last index entry to learn the end offset and verify the entry. */
    int64_t pos = s->nidx ? s->idx[s->nidx - 1].pos : (int64_t)s->hdr_len;
    int64_t expect = s->nidx ? s->base + s->idx[s->nidx - 1].rel : s->base;
    int fd = seg_fd(s, SL_SEG_LOG, 0);
    if (fd < 0) return false;
    scan sc;
    scan_init(&sc, fd, pos, file_size);
    sl_frame f;
    sl_err e;
    s->max_ts = s->ntidx ? s->tidx[s->ntidx - 1].ts : -1;
    s->max_ts_off = s->ntidx ? s->base + s->tidx[s->ntidx - 1].rel : -1;
    s->next = expect;
    int64_t since = 0;
    while ((e = scan_next(&sc, &f, false)) == SL_OK) {
        /* An entry the append path would have written is missing: the index is stale. */
        if (f.base != s->next || since >= log->cfg.index_interval_bytes) {
            e = SL_ECORRUPT;
            break;
        }
        since += f.flen;
        s->next = f.base + f.lod + 1;
        if (f.max_ts > s->max_ts) {
            s->max_ts = f.max_ts;
            s->max_ts_off = s->next - 1;
        }
    }
    scan_done(&sc);
    seg_fd_put(s, SL_SEG_LOG);
    if (e != SL_ERANGE) return false;
    if (s->ntidx && s->tidx[s->ntidx - 1].rel >= (uint64_t)(s->next - s->base)) return false;
    s->size = file_size;
    return true;
}

/* Opens an existing segment. The last segment is fully validated (batch CRCs) and its torn or
 * corrupt tail cut; sealed ones trust their indexes when they check out. */
static sl_err seg_open(sl_log *log, int64_t base, bool is_last, sl_seg **out) {
    char path[4096];
    seg_path(path, sizeof path, log->dir, base, ".log");
    sl_seg *s = seg_alloc(log->dir, base);
    if (!s) return SL_ENOMEM;
    sl_err e = SL_OK;
    /* Missing index files are created empty (then rebuilt). */
    for (int k = SL_SEG_INDEX; k <= SL_SEG_TIMEINDEX; k++) {
        int fd = seg_fd(s, k, O_CREAT);
        if (fd < 0) {
            e = errno_err(errno);
            SL_ERROR(SUB, "cannot open segment index", "dir=%s base=%" PRId64 " reason=%s",
                     log->dir, base, strerror(errno));
            goto fail;
        }
        seg_fd_put(s, k);
    }
    int64_t size = seg_file_size(s, SL_SEG_LOG), hbase = -1;
    if (size < 0) {
        e = errno_err(errno);
        SL_ERROR(SUB, "cannot open segment", "file=%s reason=%s", path, strerror(errno));
        goto fail;
    }
    uint8_t h[FILE_HDR_MAX];
    uint32_t hlen = FILE_HDR;
    bool enc = false;
    bool hdr_ok = size >= FILE_HDR && seg_pread(s, SL_SEG_LOG, h, FILE_HDR, 0) == SL_OK &&
                  decode_file_header(h, &hbase, &s->created_ms, &hlen, &enc);
    bool env_ok = true;
    if (hdr_ok && enc) {
        /* No key is needed here: the envelope is checked against the log's keys on read. */
        sl_envelope env;
        env_ok = size >= hlen &&
                 seg_pread(s, SL_SEG_LOG, h + FILE_HDR, hlen - FILE_HDR, FILE_HDR) == SL_OK &&
                 sl_envelope_decode(h + FILE_HDR, hlen - FILE_HDR, &env) == SL_FRAME_OK &&
                 env.seg_base == base;
        if (env_ok) s->env = env;
    }
    bool empty = size <= (hdr_ok ? (int64_t)hlen : FILE_HDR);
    if ((!hdr_ok || !env_ok) && is_last && empty) {
        /* Crashed while creating the segment (or rewriting its header): nothing was in it yet.
         * It becomes plaintext and empty; an append with keys starts it over under a new DEK. */
        SL_WARN(SUB, "rewriting torn segment header", "file=%s", path);
        s->created_ms = sl_wall_ms();
        hlen = (uint32_t)encode_file_header(h, base, s->created_ms, NULL);
        enc = false;
        if ((e = seg_truncate(s, SL_SEG_LOG, 0)) != SL_OK) goto fail;
        if ((e = seg_pwrite(s, SL_SEG_LOG, h, FILE_HDR, 0)) != SL_OK) goto fail;
        size = FILE_HDR;
        s->data_dirty = true;
    } else if (!hdr_ok || size < hlen) {
        SL_ERROR(SUB, "corrupt segment header", "file=%s", path);
        e = SL_ECORRUPT;
        goto fail;
    } else if (hbase != base) {
        SL_ERROR(SUB, "segment header base offset does not match its name", "file=%s", path);
        e = SL_ECORRUPT;
        goto fail;
    } else if (!env_ok) {
        /* Its frames still validate without a key, so the log opens; only reads of this
         * segment fail (the broker keeps serving the partition's other segments). */
        SL_WARN(SUB, "segment envelope damaged; reads of the segment will fail", "file=%s", path);
        s->bad = SL_ETAMPER;
    }
    s->hdr_len = hlen;
    s->size = hlen;
    s->enc = enc;
    if (size > SEGMENT_BYTES_MAX) {
        SL_ERROR(SUB, "segment larger than the format allows", "file=%s", path);
        e = SL_ECORRUPT;
        goto fail;
    }
    if (is_last) {
        e = seg_rebuild(log, s, size, true);
    } else if (!seg_load_indexes(log, s, size)) {
        SL_WARN(SUB, "rebuilding segment indexes", "file=%s", path);
        e = seg_rebuild(log, s, size, false);
    }
    if (e) goto fail;
    *out = s;
    return SL_OK;
fail:
    seg_unref(s);
    return e;
}

/* ---- start offset checkpoint ------------------------------------------------------------- */

static sl_err ckpt_write(sl_log *log, int64_t start) {
    uint8_t b[CKPT_SIZE];
    sl_be32(b, CKPT_MAGIC);
    sl_be16(b + 4, 1);
    sl_be16(b + 6, 0);
    sl_be64(b + 8, (uint64_t)start);
    sl_be32(b + 16, sl_crc32c(0, b, 16));
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/" CKPT_NAME ".tmp", log->dir);
    snprintf(path, sizeof path, "%s/" CKPT_NAME, log->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_err(errno);
    sl_err e = pwrite_all(fd, b, sizeof b, 0);
    if (!e) e = do_fsync(fd);
    close(fd);
    if (!e && rename(tmp, path) != 0) e = errno_err(errno);
    if (!e) e = fsync_dir(log->dir);
    if (e) {
        (void)unlink(tmp);
        SL_ERROR(SUB, "start offset checkpoint write failed", "dir=%s err=%s", log->dir,
                 sl_errname(e));
    }
    return e;
}

/* *start = -1 when there is no checkpoint. */
static sl_err ckpt_read(sl_log *log, int64_t *start) {
    char path[4096];
    snprintf(path, sizeof path, "%s/" CKPT_NAME ".tmp", log->dir);
    (void)unlink(path); /* a leftover from a crash mid-write; the old file is still whole */
    snprintf(path, sizeof path, "%s/" CKPT_NAME, log->dir);
    *start = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_OK : errno_err(errno);
    uint8_t b[CKPT_SIZE + 1];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != CKPT_SIZE || sl_get_be32(b) != CKPT_MAGIC || sl_get_be16(b + 4) != 1 ||
        sl_get_be32(b + 16) != sl_crc32c(0, b, 16) || (int64_t)sl_get_be64(b + 8) < 0) {
        /* Failing beats guessing: a lost start offset could resurrect deleted records. */
        SL_ERROR(SUB, "corrupt start offset checkpoint", "file=%s", path);
        return SL_ECORRUPT;
    }
    *start = (int64_t)sl_get_be64(b + 8);
    return SL_OK;
}

/* ---- log --------------------------------------------------------------------------------- */

void sl_log_config_default(sl_log_config *cfg) {
    cfg->segment_bytes = 1024 * 1024 * 1024;
    cfg->segment_ms = 7LL * 24 * 3600 * 1000;
    cfg->retention_ms = 7LL * 24 * 3600 * 1000;
    cfg->retention_bytes = -1;
    cfg->flush_interval_messages = INT64_MAX;
    cfg->flush_interval_ms = INT64_MAX;
    cfg->index_interval_bytes = 4096;
    cfg->max_index_bytes = 10 * 1024 * 1024;
}

static void config_sanitize(sl_log_config *c) {
    if (c->segment_bytes < FILE_HDR + 1 || c->segment_bytes > SEGMENT_BYTES_MAX)
        c->segment_bytes = c->segment_bytes < FILE_HDR + 1 ? FILE_HDR + 1 : SEGMENT_BYTES_MAX;
    if (c->index_interval_bytes < 0) c->index_interval_bytes = 0;
    if (c->max_index_bytes < 8) c->max_index_bytes = 8;
}

static sl_err segs_push(sl_log *log, sl_seg *s) {
    /* Under the mutex: the flusher walks this array and realloc may move it. */
    pthread_mutex_lock(&log->mu);
    if (log->nsegs == log->csegs) {
        int nc = log->csegs ? log->csegs * 2 : 8;
        sl_seg **n = realloc(log->segs, (size_t)nc * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&log->mu);
            return SL_ENOMEM;
        }
        log->segs = n;
        log->csegs = nc;
    }
    log->segs[log->nsegs++] = s;
    pthread_mutex_unlock(&log->mu);
    return SL_OK;
}

/* Releases the writing DEKs (loop thread: DEK references are not atomic). */
static void release_wdeks(sl_log *log) {
    for (int i = 0; i < log->nsegs; i++) {
        sl_dek_unref(log->segs[i]->wdek);
        log->segs[i]->wdek = NULL;
    }
}

static void log_free(sl_log *log) {
    release_wdeks(log);
    for (int i = 0; i < log->nsegs; i++) seg_unref(log->segs[i]);
    free(log->segs);
    pthread_mutex_destroy(&log->mu);
    free(log->dir);
    free(log);
}

void sl_log__ref(sl_log *log) { atomic_fetch_add_explicit(&log->refs, 1, memory_order_relaxed); }
void sl_log__unref(sl_log *log) {
    if (atomic_fetch_sub_explicit(&log->refs, 1, memory_order_acq_rel) == 1) log_free(log);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Parses "<20 digits><ext>" exactly. */
static bool parse_seg_name(const char *name, const char *ext, int64_t *base) {
    size_t el = strlen(ext);
    if (strlen(name) != 20 + el || strcmp(name + 20, ext) != 0) return false;
    int64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        if (v > (INT64_MAX - (name[i] - '0')) / 10) return false;
        v = v * 10 + (name[i] - '0');
    }
    *base = v;
    return true;
}

static sl_err mkdir_p(const char *dir) {
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) return SL_EINVAL;
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return errno_err(errno);
            tmp[i] = c;
        }
    }
    return SL_OK;
}

/* Lists segment bases (sorted) and removes index files whose data file is gone (a crash during
 * segment deletion). */
static sl_err list_segments(sl_log *log, int64_t **out, int *count) {
    DIR *d = opendir(log->dir);
    if (!d) return errno_err(errno);
    int64_t *bases = NULL;
    int n = 0, cap = 0;
    sl_err e = SL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t b;
        if (!parse_seg_name(de->d_name, ".log", &b)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nb = realloc(bases, (size_t)cap * sizeof *nb);
            if (!nb) {
                e = SL_ENOMEM;
                break;
            }
            bases = nb;
        }
        bases[n++] = b;
    }
    rewinddir(d);
    while (!e && (de = readdir(d)) != NULL) {
        int64_t b;
        if (!parse_seg_name(de->d_name, ".index", &b) &&
            !parse_seg_name(de->d_name, ".timeindex", &b))
            continue;
        bool found = false;
        for (int i = 0; i < n && !found; i++) found = bases[i] == b;
        if (!found) (void)unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    if (e) {
        free(bases);
        return e;
    }
    if (n) qsort(bases, (size_t)n, sizeof *bases, cmp_i64);
    *out = bases;
    *count = n;
    return SL_OK;
}

static sl_err log_open(const char *dir, const sl_log_config *cfg, bool synced, sl_log **out);
static void reenc_cleanup(const char *dir);

sl_err sl_log_open(const char *dir, const sl_log_config *cfg, sl_log **out) {
    return log_open(dir, cfg, false, out);
}

sl_err sl_log_open_synced(const char *dir, const sl_log_config *cfg, sl_log **out) {
    return log_open(dir, cfg, true, out);
}

static sl_err log_open(const char *dir, const sl_log_config *cfg, bool synced, sl_log **out) {
    sl_log *log = calloc(1, sizeof *log);
    if (!log) return SL_ENOMEM;
    log->cfg = *cfg;
    config_sanitize(&log->cfg);
    atomic_init(&log->refs, 1);
    atomic_init(&log->sync_failed, 0);
    atomic_init(&log->destroyed, false);
    pthread_mutex_init(&log->mu, NULL);
    int64_t *bases = NULL;
    int nb = 0;
    int64_t ckpt = -1;
    sl_err e = SL_OK;
    if (!(log->dir = strdup(dir))) {
        e = SL_ENOMEM;
        goto fail;
    }
    if ((e = mkdir_p(dir)) != SL_OK) {
        SL_ERROR(SUB, "cannot create partition directory", "dir=%s reason=%s", dir,
                 strerror(errno));
        goto fail;
    }
    /* Held by no one after this check: a log keeps no descriptor of its own (see the
     * descriptor cache), so the directory is opened again only to fsync it. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        e = errno_err(errno);
        SL_ERROR(SUB, "cannot open partition directory", "dir=%s reason=%s", dir, strerror(errno));
        goto fail;
    }
    close(dfd);
    if ((e = ckpt_read(log, &ckpt)) != SL_OK) goto fail;
    reenc_cleanup(dir);
    /* An interrupted compaction swap: finish it or roll it back (sl_cleaner.c). */
    if ((e = sl_cleaner__recover(dir)) != SL_OK) goto fail;
    if ((e = list_segments(log, &bases, &nb)) != SL_OK) goto fail;
    for (int i = 0; i < nb; i++) {
        sl_seg *s = NULL;
        if ((e = seg_open(log, bases[i], i == nb - 1, &s)) != SL_OK) goto fail;
        if ((e = segs_push(log, s)) != SL_OK) {
            seg_unref(s);
            goto fail;
        }
        if (i > 0 && log->segs[i - 1]->next != s->base) {
            char path[4096];
            seg_path(path, sizeof path, dir, log->segs[i - 1]->base, ".log");
            SL_ERROR(SUB, "segment does not end where the next begins",
                     "file=%s end=%" PRId64 " next_base=%" PRId64, path, log->segs[i - 1]->next,
                     s->base);
            e = SL_ECORRUPT;
            goto fail;
        }
    }
    if (nb == 0) {
        sl_seg *s = NULL;
        if ((e = seg_create(log, ckpt > 0 ? ckpt : 0, NULL, NULL, &s)) != SL_OK) goto fail;
        if ((e = segs_push(log, s)) != SL_OK) {
            seg_unref(s);
            goto fail;
        }
        log->dir_dirty = true;
    }
    log->start_offset = log->segs[0]->base;
    if (ckpt > log->start_offset) log->start_offset = ckpt;
    int64_t end = log->segs[log->nsegs - 1]->next;
    if (log->start_offset > end) {
        SL_WARN(SUB, "start offset beyond recovered end", "dir=%s start=%" PRId64 " end=%" PRId64,
                dir, log->start_offset, end);
        log->start_offset = end;
    }
    /* What survived recovery may still sit only in the page cache (the process, not the machine,
     * crashed); make it durable so durable_offset can start at the end. Unless the files are
     * known synced (a clean stop) and recovery changed no data (it cut no tail, rewrote no
     * header): then there is nothing to make durable. */
    bool changed = false;
    for (int i = 0; i < log->nsegs; i++) changed |= log->segs[i]->data_dirty;
    bool sync_all = !synced || changed;
    for (int i = 0; i < log->nsegs; i++) {
        sl_seg *s = log->segs[i];
        if (sync_all) {
            s->data_dirty = true;
            s->idx_dirty = true;
        }
        s->sealed = i < log->nsegs - 1;
    }
    if (sync_all) log->dir_dirty = true;
    /* A log created just now holds no record: losing its files in a crash loses nothing, since
     * opening recreates them (a torn header is rewritten, a missing index rebuilt). Its first
     * flush makes them durable with the first records; creating thousands of partitions then
     * costs no fsync each. */
    if (nb > 0 && sync_all && (e = sl_log__fsync_dirty(log)) != SL_OK) goto fail;
    log->durable_offset = end;
    free(bases);
    *out = log;
    return SL_OK;
fail:
    free(bases);
    log_free(log);
    return e;
}

void sl_log_set_config(sl_log *log, const sl_log_config *cfg) {
    log->cfg = *cfg;
    config_sanitize(&log->cfg);
}

void sl_log_close(sl_log *log) {
    if (!log) return;
    log->closed = true;
    release_wdeks(log);
    sl_log__unref(log);
}

sl_err sl_log_destroy(sl_log *log) {
    if (!log) return SL_OK;
    sl_err e = sl_log_remove_files(log);
    sl_log_close(log);
    return e;
}

sl_err sl_log_remove_files(sl_log *log) {
    sl_err e = SL_OK;
    /* A flush in progress must not take the vanished files for lost ones. */
    atomic_store_explicit(&log->destroyed, true, memory_order_release);
    pthread_mutex_lock(&log->mu);
    for (int i = 0; i < log->nsegs; i++)
        atomic_store_explicit(&log->segs[i]->gone, true, memory_order_release);
    pthread_mutex_unlock(&log->mu);
    DIR *d = opendir(log->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            if (unlinkat(dirfd(d), de->d_name, 0) != 0 && !e) e = errno_err(errno);
        }
        closedir(d);
    } else {
        e = errno_err(errno);
    }
    if (rmdir(log->dir) != 0 && !e) e = errno_err(errno);
    return e;
}

static sl_seg *active(const sl_log *log) { return log->segs[log->nsegs - 1]; }

/* A fresh DEK from the key service for a new segment at `base`, with the envelope the log
 * completes (topic, partition, base, alg). Nothing is written. */
static sl_err new_dek(sl_log *log, int64_t base, sl_envelope *env, sl_dek **dek) {
    memset(env, 0, sizeof *env);
    *dek = NULL;
    sl_err e = log->keys.ops->dek_new(log->keys.ctx, &log->keys, base, env, dek);
    if (e) {
        sl_dek_unref(*dek);
        *dek = NULL;
        SL_WARN(SUB, "no data key for a new segment", "dir=%s base=%" PRId64 " err=%s", log->dir,
                base, sl_errname(e));
        return e;
    }
    env->alg = SL_ENV_ALG_AES256GCM;
    memcpy(env->topic_id, log->keys.topic_id, 16);
    env->partition = log->keys.partition;
    env->seg_base = base;
    if (!*dek || !(*dek)->aead || (*dek)->id != env->dek_id || env->dek_id == 0) {
        sl_dek_unref(*dek);
        *dek = NULL;
        SL_ERROR(SUB, "key service returned an unusable data key", "dir=%s", log->dir);
        return SL_EINVAL;
    }
    return SL_OK;
}

/* Starts the empty active segment `s` over in place with a new header (env NULL: plaintext).
 * It holds no frame, so nothing is lost; the file is cut first so that a crash leaves a torn
 * header on an empty segment, which open rewrites. `dek` passes to the segment on success. */
static sl_err seg_reinit(sl_log *log, sl_seg *s, const sl_envelope *env, sl_dek *dek) {
    uint8_t h[FILE_HDR_MAX];
    size_t hl = encode_file_header(h, s->base, s->created_ms, env);
    if (!hl) return SL_EINVAL;
    sl_dek_unref(s->wdek);
    s->wdek = NULL;
    s->hdr_torn = true;
    sl_err e = seg_truncate(s, SL_SEG_LOG, 0);
    if (!e) e = seg_pwrite(s, SL_SEG_LOG, h, hl, 0);
    pthread_mutex_lock(&log->mu);
    s->data_dirty = true;
    pthread_mutex_unlock(&log->mu);
    if (e) {
        SL_WARN(SUB, "rewriting the empty active segment's header failed", "dir=%s err=%s",
                log->dir, sl_errname(e));
        return e;
    }
    s->hdr_torn = false;
    s->hdr_len = (uint32_t)hl;
    s->bad = SL_OK;
    seg_reset_indexes(s);
    s->enc = env != NULL;
    memset(&s->env, 0, sizeof s->env);
    if (env) s->env = *env;
    s->wdek = dek;
    s->nonce_ctr = 0;
    return SL_OK;
}

/* Seals the active segment and starts a new one at the end offset: encrypted under a fresh DEK
 * when the log has keys (dek_new failing fails the roll, nothing written), else plaintext. An
 * empty active segment is started over in place instead (the new one would have its name). */
static sl_err roll(sl_log *log) {
    sl_seg *old = active(log);
    sl_envelope env;
    sl_dek *dek = NULL;
    sl_err e;
    if (log->has_keys && (e = new_dek(log, old->next, &env, &dek)) != SL_OK) return e;
    const sl_envelope *penv = log->has_keys ? &env : NULL;
    if (old->size <= old->hdr_len) {
        e = seg_reinit(log, old, penv, dek);
        if (e) sl_dek_unref(dek);
        return e;
    }
    bool idx = seg_time_point(old, true); /* Kafka: the final max timestamp goes in on roll */
    sl_seg *s = NULL;
    e = seg_create(log, old->next, penv, dek, &s);
    if (e) {
        sl_dek_unref(dek);
        return e;
    }
    if ((e = segs_push(log, s)) != SL_OK) {
        seg_unref(s); /* releases dek */
        unlink_seg_files(log->dir, old->next);
        return e;
    }
    /* The old DEK never writes again (sealed); reads get it from the key service. */
    sl_dek_unref(old->wdek);
    old->wdek = NULL;
    pthread_mutex_lock(&log->mu);
    old->sealed = true;
    if (idx) old->idx_dirty = true;
    log->dir_dirty = true;
    pthread_mutex_unlock(&log->mu);
    SL_DEBUG(SUB, "rolled segment", "dir=%s base=%" PRId64 " encrypted=%d", log->dir, s->base,
             s->enc);
    return SL_OK;
}

/* Associated data of a sealed batch: what binds it to its place (docs/on-disk-format.md). */
#define AAD_LEN (4 + 16 + 4 + 8 + 44 + SL_BATCH_CRC + (SL_BATCH_HEADER_SIZE - SL_BATCH_ATTRIBUTES))
static void batch_aad(uint8_t *out, const sl_envelope *env, const uint8_t *fh,
                      const uint8_t *batch) {
    memcpy(out, "SLE1", 4);
    memcpy(out + 4, env->topic_id, 16);
    sl_be32(out + 20, (uint32_t)env->partition);
    sl_be64(out + 24, (uint64_t)env->seg_base);
    memcpy(out + 32, fh, 44);
    memcpy(out + 76, batch, SL_BATCH_CRC);
    memcpy(out + 76 + SL_BATCH_CRC, batch + SL_BATCH_ATTRIBUTES,
           SL_BATCH_HEADER_SIZE - SL_BATCH_ATTRIBUTES);
}

/* The two encrypted parts of a batch: its CRC field (which would otherwise let anyone confirm
 * guesses of the records) and the records. The rest of the header stays readable. */
static void batch_parts(uint8_t *batch, size_t len, sl_aead_part parts[2]) {
    parts[0] = (sl_aead_part){batch + SL_BATCH_CRC, 4};
    parts[1] = (sl_aead_part){batch + SL_BATCH_HEADER_SIZE, len - SL_BATCH_HEADER_SIZE};
}

static void make_nonce(uint8_t nonce[SL_FRAME_ENC_NONCE], uint64_t ctr) {
    memset(nonce, 0, 4);
    sl_be64(nonce + 4, ctr);
}

/* The clear-frame rule of every reader: GCM only authenticates what it sealed, so a clear frame is
 * refused where it cannot be the migration's old data (a downgrade or an injection). */
static const char *clear_frame_refused(bool seg_enc, bool has_keys, int64_t plain_below,
                                       const sl_frame *f) {
    if (seg_enc) return "plaintext frame in an encrypted segment";
    if (has_keys && f->base + f->lod >= plain_below)
        return "plaintext frame at or above the plaintext watermark";
    return NULL;
}

sl_err sl_log__frame_open(const sl_seg_opener *o, const sl_frame *f, const uint8_t *fh,
                          uint8_t *payload) {
    if (!(f->flags & SL_FRAME_FLAG_ENC))
        return clear_frame_refused(o->enc, o->has_keys, o->plain_below, f) ? SL_ETAMPER : SL_OK;
    if (!o->enc || !o->aead || f->key_id != o->env.dek_id) return SL_ETAMPER;
    uint8_t aad[AAD_LEN];
    sl_aead_part parts[2];
    batch_aad(aad, &o->env, fh, payload);
    batch_parts(payload, f->plen, parts);
    sl_err e = sl_aead_open(o->aead, f->nonce, aad, sizeof aad, parts, 2, payload + f->plen);
    if (e) {
        OPENSSL_cleanse(payload, f->plen);
        return e == SL_ENOMEM ? e : SL_ETAMPER;
    }
    return SL_OK;
}

sl_err sl_log__frame_seal(sl_seg_sealer *s, int64_t base, int32_t lod, int32_t count,
                          int64_t max_ts, uint8_t *batch, uint32_t plen, uint8_t *hdr,
                          uint8_t tag[SL_FRAME_ENC_TAG], sl_frame *f) {
    if (!s->aead) {
        sl_frame_encode_batch(hdr, base, lod, count, max_ts, plen, f);
        return SL_OK;
    }
    if (s->ctr >= NONCE_CTR_MAX) return SL_ERANGE;
    make_nonce(s->nonce, ++s->ctr);
    *f = (sl_frame){.flags = SL_FRAME_FLAG_ENC,
                    .key_id = s->env.dek_id,
                    .nlen = SL_FRAME_ENC_NONCE,
                    .tlen = SL_FRAME_ENC_TAG,
                    .nonce = s->nonce,
                    .base = base,
                    .lod = lod,
                    .count = count,
                    .max_ts = max_ts,
                    .plen = plen};
    if (!sl_frame_encode(hdr, f)) return SL_EINVAL;
    uint8_t aad[AAD_LEN];
    sl_aead_part parts[2];
    batch_aad(aad, &s->env, hdr, batch);
    batch_parts(batch, plen, parts);
    sl_err e = sl_aead_seal(s->aead, s->nonce, aad, sizeof aad, parts, 2, tag);
    if (e) return e;
    f->ct_crc = sl_crc32c(sl_crc32c(0, batch, plen), tag, SL_FRAME_ENC_TAG);
    sl_frame_encode(hdr, f);
    return SL_OK;
}

void sl_seg_opener_clear(sl_seg_opener *o) {
    sl_aead_free(o->aead);
    memset(o, 0, sizeof *o);
}

void sl_seg_sealer_clear(sl_seg_sealer *s) {
    sl_aead_free(s->aead);
    memset(s, 0, sizeof *s);
}

sl_err sl_log_append(sl_log *log, uint8_t *batch, size_t len, int32_t record_count,
                     int64_t max_timestamp, int64_t *base_offset) {
    if (atomic_load_explicit(&log->sync_failed, memory_order_relaxed)) return SL_EIO;
    if (len < SL_BATCH_HEADER_SIZE || len > SL_FRAME_PAYLOAD_MAX || batch[SL_BATCH_MAGIC] != 2)
        return SL_EINVAL;
    int32_t lod = (int32_t)sl_get_be32(batch + SL_BATCH_LAST_OFFSET_DELTA);
    if (lod < 0 || record_count < 0) return SL_EINVAL;
    bool seal = log->has_keys;
    uint64_t flen = SL_FRAME_HDR_MIN + (uint64_t)len + (seal ? ENC_OVERHEAD : 0);
    sl_seg *s = active(log);
    /* A new segment under a fresh DEK: after open or set_keys (a DEK is written under by one
     * process only, so no nonce can repeat after a crash or a restored copy), after the DEK was
     * dropped, or when the active segment is of the other kind (no frame ever goes into a
     * segment of the other kind). */
    bool renew = s->hdr_torn || (seal ? log->keys_fresh || !s->wdek || !s->enc : s->enc);
    if (!renew && s->size > s->hdr_len) {
        const sl_log_config *c = &log->cfg;
        bool full = (uint64_t)s->size + flen > (uint64_t)c->segment_bytes;
        bool old = c->segment_ms >= 0 && sl_wall_ms() - s->created_ms >= c->segment_ms;
        bool idx_full = (int64_t)(s->nidx + 1) * 8 > c->max_index_bytes ||
                        (int64_t)(s->ntidx + 1) * 12 > c->max_index_bytes;
        bool rel_full = s->next + lod - s->base >= (int64_t)UINT32_MAX;
        bool nonce_full = seal && s->nonce_ctr >= NONCE_CTR_MAX;
        renew = full || old || idx_full || rel_full || nonce_full;
    }
    if (renew) {
        sl_err e = roll(log);
        if (e) return e;
        s = active(log);
        log->keys_fresh = false;
    }
    if ((uint64_t)s->size + flen > (uint64_t)SEGMENT_BYTES_MAX) return SL_ETOOLARGE;
    int64_t base = s->next;
    sl_be64(batch + SL_BATCH_BASE_OFFSET, (uint64_t)base);
    uint8_t h[SL_FRAME_HDR_MAX], nonce[SL_FRAME_ENC_NONCE], tag[SL_FRAME_ENC_TAG];
    uint8_t aad[AAD_LEN];
    sl_aead_part parts[2];
    sl_frame f;
    size_t hlen;
    if (seal) {
        /* Advanced before the write: a failed or torn append never gives its nonce back. */
        make_nonce(nonce, ++s->nonce_ctr);
        f = (sl_frame){.flags = SL_FRAME_FLAG_ENC,
                       .key_id = s->wdek->id,
                       .nlen = SL_FRAME_ENC_NONCE,
                       .tlen = SL_FRAME_ENC_TAG,
                       .nonce = nonce,
                       .base = base,
                       .lod = lod,
                       .count = record_count,
                       .max_ts = max_timestamp,
                       .plen = (uint32_t)len};
        if (!sl_frame_encode(h, &f)) return SL_EINVAL;
        batch_aad(aad, &s->env, h, batch);
        batch_parts(batch, len, parts);
        sl_err e = sl_aead_seal(s->wdek->aead, nonce, aad, sizeof aad, parts, 2, tag);
        if (e) return e;
        f.ct_crc = sl_crc32c(sl_crc32c(0, batch, len), tag, sizeof tag);
        hlen = sl_frame_encode(h, &f);
    } else {
        hlen = sl_frame_encode_batch(h, base, lod, record_count, max_timestamp, (uint32_t)len, &f);
    }
    struct iovec iov[3] = {{h, hlen}, {batch, len}, {tag, seal ? sizeof tag : 0}};
    int fd = seg_fd(s, SL_SEG_LOG, 0);
    sl_err e = fd < 0 ? errno_err(errno) : write_all(fd, iov, 3, s->size);
    if (fd < 0)
        SL_WARN(SUB, "append failed: cannot open the active segment", "dir=%s reason=%s", log->dir,
                strerror(errno));
    if (e) {
        /* Cut whatever part of the frame reached the file so no torn frame stays behind; if
         * even that fails the next append overwrites it and recovery would cut it. */
        if (fd >= 0 && ftruncate(fd, s->size) != 0)
            SL_ERROR(SUB, "truncate after failed append failed", "dir=%s errno=%d", log->dir,
                     errno);
        if (fd >= 0) {
            seg_fd_put(s, SL_SEG_LOG);
            SL_WARN(SUB, "append failed", "dir=%s err=%s", log->dir, sl_errname(e));
        }
        /* The caller's batch is given back as it was (same nonce, data and tag: opening
         * restores it). The nonce stays used. */
        if (seal) (void)sl_aead_open(s->wdek->aead, nonce, aad, sizeof aad, parts, 2, tag);
        return e;
    }
    seg_fd_put(s, SL_SEG_LOG);
    bool idx = seg_note_frame(s, &log->cfg, s->size, &f, true);
    pthread_mutex_lock(&log->mu);
    s->data_dirty = true;
    if (idx) s->idx_dirty = true;
    pthread_mutex_unlock(&log->mu);
    log->appended_records += record_count;
    if (!log->oldest_unsynced_ms) log->oldest_unsynced_ms = sl_wall_ms();
    *base_offset = base;
    return SL_OK;
}

/* Index of the segment holding `offset` (start <= offset < end). */
static int find_seg(const sl_log *log, int64_t offset) {
    int lo = 0, hi = log->nsegs;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->base <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

/* Admits the frames of one segment during one read: plaintext frames only where they may be,
 * encrypted ones opened in place under the segment's DEK (fetched once per read). */
typedef struct opener {
    sl_log *log;
    sl_seg *s;
    sl_dek *dek; /* a reference, released by opener_done */
    bool env_checked;
} opener;

static void opener_done(opener *o) {
    sl_dek_unref(o->dek);
    o->dek = NULL;
}

/* Decides frame f of o->s (header at fh; payload at `payload`, followed by its tag) before it is
 * returned. SL_OK: the payload is now the plaintext batch. Otherwise *why says what was wrong
 * and nothing of the payload may be used (a failed open leaves it wiped). */
static sl_err frame_admit(opener *o, const sl_frame *f, const uint8_t *fh, uint8_t *payload,
                          const char **why) {
    sl_log *log = o->log;
    sl_seg *s = o->s;
    if (s->bad) {
        *why = "segment envelope damaged";
        return s->bad;
    }
    if (!(f->flags & SL_FRAME_FLAG_ENC)) {
        *why = clear_frame_refused(s->enc, log->has_keys, log->keys.plain_below, f);
        return *why ? SL_ETAMPER : SL_OK;
    }
    if (!log->has_keys) {
        *why = "encrypted frame and the log has no keys";
        return SL_EKEY_UNAVAILABLE;
    }
    if (!s->enc) {
        *why = "encrypted frame in a plaintext segment";
        return SL_ETAMPER;
    }
    if (!o->env_checked) {
        if (CRYPTO_memcmp(s->env.topic_id, log->keys.topic_id, 16) != 0 ||
            s->env.partition != log->keys.partition || s->env.seg_base != s->base) {
            *why = "segment envelope names another topic, partition or segment";
            return SL_ETAMPER;
        }
        o->env_checked = true;
    }
    if (f->key_id != s->env.dek_id) {
        *why = "frame key id is not the segment's";
        return SL_ETAMPER;
    }
    if (!o->dek) {
        sl_dek *d = NULL;
        if (s->wdek) {
            d = sl_dek_ref(s->wdek);
        } else {
            sl_err e = log->keys.ops->dek_open(log->keys.ctx, &log->keys, &s->env, &d);
            if (e || !d || !d->aead) {
                sl_dek_unref(d);
                *why = "data key not available";
                return e ? e : SL_EKEY_UNAVAILABLE;
            }
        }
        o->dek = d;
    }
    if (o->dek->id != s->env.dek_id) {
        *why = "data key id is not the segment's";
        return SL_ETAMPER;
    }
    uint8_t aad[AAD_LEN];
    sl_aead_part parts[2];
    batch_aad(aad, &s->env, fh, payload);
    batch_parts(payload, f->plen, parts);
    sl_err e = sl_aead_open(o->dek->aead, f->nonce, aad, sizeof aad, parts, 2, payload + f->plen);
    if (e) {
        OPENSSL_cleanse(payload, f->plen);
        *why = "authentication failed";
        return e == SL_ENOMEM ? e : SL_ETAMPER;
    }
    return SL_OK;
}

/* One warning per refused frame, not one per fetch retrying it (a consumer stuck on it would
 * otherwise flood the log). */
static void warn_refused(const sl_log *log, sl_seg *s, int64_t pos, const sl_frame *f,
                         const char *why, sl_err e) {
    if (s->warned_pos == pos + 1) return;
    s->warned_pos = pos + 1;
    char path[4096];
    seg_path(path, sizeof path, log->dir, s->base, ".log");
    SL_WARN(SUB, "stored batch refused",
            "file=%s pos=%" PRId64 " offset=%" PRId64 " reason=%s err=%s", path, pos, f->base, why,
            sl_errname(e));
}

sl_err sl_log_read(sl_log *log, int64_t offset, int32_t max_bytes, sl_arena *a, uint8_t **out,
                   size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    int64_t end = active(log)->next;
    if (offset < log->start_offset || offset > end) return SL_ERANGE;
    if (offset == end) return SL_OK;
    int si = find_seg(log, offset);
    while (si < log->nsegs - 1 && log->segs[si]->next <= offset) si++;
    sl_seg *s = log->segs[si];
    opener o = {.log = log, .s = s};
    size_t limit = max_bytes > 0 ? (size_t)max_bytes : 0;
    /* One pread covers the frames between the index entry and the target (at most about
     * index_interval_bytes) plus max_bytes of frames to return; the frame headers are then
     * squeezed out in place, one memmove per batch. Encrypted frames are opened in place
     * first (once per batch), so what is returned is always authenticated plaintext. */
    size_t slack = (size_t)log->cfg.index_interval_bytes + 2 * SL_FRAME_HDR_MAX;
    int64_t pos = seg_lookup(s, offset);
    size_t want = limit + slack;
    for (;;) {
        if ((int64_t)want > s->size - pos) want = (size_t)(s->size - pos);
        uint8_t *buf = sl_arena_alloc(a, want ? want : 1);
        if (!buf) {
            opener_done(&o);
            return SL_ENOMEM;
        }
        sl_err e = seg_pread(s, SL_SEG_LOG, buf, want, pos);
        if (e) {
            opener_done(&o);
            return e;
        }
        size_t p = 0, emitted = 0;
        for (;;) {
            sl_frame f;
            sl_frame_status r = sl_frame_decode(buf + p, want - p, &f);
            if (r == SL_FRAME_CORRUPT) goto corrupt;
            if (r == SL_FRAME_SHORT) {
                if (pos + (int64_t)p + SL_FRAME_HDR_MIN > s->size) goto corrupt;
                break; /* header cut by the window */
            }
            if ((int64_t)f.flen > s->size - pos - (int64_t)p) goto corrupt;
            if (f.flen > want - p) break;  /* frame cut by the window */
            if (f.base + f.lod < offset) { /* before the target */
                p += f.flen;
                continue;
            }
            if (emitted && emitted + f.plen > limit) break;
            const char *why = "";
            sl_err ae = frame_admit(&o, &f, buf + p, buf + p + f.hlen, &why);
            if (ae) {
                warn_refused(log, s, pos + (int64_t)p, &f, why, ae);
                if (emitted) break; /* what was admitted before it is returned */
                opener_done(&o);
                return ae;
            }
            memmove(buf + emitted, buf + p + f.hlen, f.plen);
            emitted += f.plen;
            p += f.flen;
            if (emitted >= limit || p == want) break;
        }
        if (emitted) {
            opener_done(&o);
            *out = buf;
            *out_len = emitted;
            return SL_OK;
        }
        /* Nothing whole in the window yet: restart at the frame it stopped on, with room for
         * that frame (its header tells its length when we have it). */
        pos += (int64_t)p;
        if (pos >= s->size) goto corrupt; /* offset < next but no frame holds it */
        sl_frame f;
        size_t need = SL_FRAME_HDR_MAX;
        if (want - p >= SL_FRAME_HDR_MIN && sl_frame_decode(buf + p, want - p, &f) == SL_FRAME_OK)
            need = f.flen;
        want = (need > limit ? need : limit) + slack;
    }
corrupt:
    opener_done(&o);
    SL_ERROR(SUB, "corrupt frame on read", "dir=%s segment=%" PRId64 " offset=%" PRId64, log->dir,
             s->base, offset);
    return SL_ECORRUPT;
}

sl_err sl_log_read_headers(sl_log *log, int64_t offset, int max_batches, sl_arena *a, uint8_t **out,
                           int *count) {
    *out = NULL;
    *count = 0;
    int64_t end = active(log)->next;
    if (offset < log->start_offset || offset > end) return SL_ERANGE;
    if (offset == end || max_batches <= 0) return SL_OK;
    int si = find_seg(log, offset);
    while (si < log->nsegs - 1 && log->segs[si]->next <= offset) si++;
    sl_seg *s = log->segs[si];
    if (s->bad) return s->bad;
    uint8_t *buf = sl_arena_alloc(a, (size_t)max_batches * SL_BATCH_HEADER_SIZE);
    if (!buf) return SL_ENOMEM;
    int fd = seg_fd(s, SL_SEG_LOG, 0);
    if (fd < 0) return errno_err(errno);
    scan sc;
    scan_init(&sc, fd, seg_lookup(s, offset), s->size);
    sl_frame f;
    sl_err e;
    int n = 0;
    while (n < max_batches) {
        int64_t at = sc.pos;
        if ((e = scan_next(&sc, &f, false)) != SL_OK) break;
        if (f.base + f.lod < offset) continue;
        /* Whole frame: its CRCs and clear header fields are checked (no key needed). */
        const uint8_t *p;
        sc.pos = at;
        if ((e = scan_ensure(&sc, f.flen, &p)) != SL_OK) break;
        sc.pos = at + f.flen;
        if (!sl_frame_payload_ok(&f, p + f.hlen)) {
            e = SL_ECORRUPT;
            break;
        }
        bool clear = !(f.flags & SL_FRAME_FLAG_ENC);
        if (clear && (s->enc || (log->has_keys && f.base + f.lod >= log->keys.plain_below))) {
            warn_refused(log, s, at, &f, "plaintext frame where only sealed ones may be",
                         SL_ETAMPER);
            e = SL_ETAMPER;
            break;
        }
        if (!clear && !s->enc) {
            warn_refused(log, s, at, &f, "encrypted frame in a plaintext segment", SL_ETAMPER);
            e = SL_ETAMPER;
            break;
        }
        uint8_t *h = buf + (size_t)n * SL_BATCH_HEADER_SIZE;
        memcpy(h, p + f.hlen, SL_BATCH_HEADER_SIZE);
        memset(h + SL_BATCH_CRC, 0, 4);
        n++;
    }
    scan_done(&sc);
    seg_fd_put(s, SL_SEG_LOG);
    if (e == SL_ERANGE || e == SL_OK) {
        if (n == 0) return SL_ECORRUPT; /* offset < next, yet no frame holds it */
        *out = buf;
        *count = n;
        return SL_OK;
    }
    /* Headers before a refused frame are returned; the next call starting there fails. */
    if (n > 0 && e == SL_ETAMPER) {
        *out = buf;
        *count = n;
        return SL_OK;
    }
    if (e == SL_ECORRUPT)
        SL_ERROR(SUB, "corrupt frame on header read", "dir=%s segment=%" PRId64 " offset=%" PRId64,
                 log->dir, s->base, offset);
    return e;
}

int64_t sl_log_start_offset(const sl_log *log) { return log->start_offset; }
int64_t sl_log_end_offset(const sl_log *log) { return active(log)->next; }
int64_t sl_log_durable_offset(const sl_log *log) { return log->durable_offset; }
int64_t sl_log_size_bytes(const sl_log *log) {
    int64_t n = 0;
    for (int i = 0; i < log->nsegs; i++) n += log->segs[i]->size;
    return n;
}
int sl_log_segment_count(const sl_log *log) { return log->nsegs; }

/* The first record of the stored batch at p[0..len) with offset >= low and timestamp >= ts:
 * 1 with *offset and *ts set, 0 when there is none, -1 when the records do not read. The
 * records are decompressed into a scratch arena (bounded), never into the log's memory. */
#define OFFSET_FOR_TIME_MAX_INFLATE (256u << 20)
static int first_record_at(const uint8_t *p, size_t len, int64_t low, int64_t ts, int64_t *offset,
                           int64_t *found_ts) {
    sl_arena *a = sl_arena_new(64 * 1024);
    if (!a) return -1;
    sl_rec_iter it;
    sl_record rec;
    int found = 0;
    if (sl_rec_iter_init(&it, p, len, a, OFFSET_FOR_TIME_MAX_INFLATE) == SL_OK)
        while (sl_rec_iter_next(&it, &rec))
            if (rec.offset >= low && rec.timestamp >= ts) {
                *offset = rec.offset;
                *found_ts = rec.timestamp;
                found = 1;
                break;
            }
    if (!found && sl_rec_iter_err(&it) != SL_OK) found = -1;
    sl_arena_free(a);
    return found;
}

sl_err sl_log_offset_for_time(sl_log *log, int64_t ts, int64_t *offset, int64_t *found_ts) {
    *offset = -1;
    *found_ts = -1;
    for (int i = 0; i < log->nsegs; i++) {
        sl_seg *s = log->segs[i];
        if (s->next <= log->start_offset || s->max_ts < ts) continue;
        /* Entries are (max ts so far, offset holding it): everything up to the last entry below
         * ts is older than ts, so the scan can start after it. */
        int64_t from = s->base;
        uint32_t lo = 0, hi = s->ntidx;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (s->tidx[mid].ts < ts)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo) from = s->base + s->tidx[lo - 1].rel + 1;
        if (from < log->start_offset) from = log->start_offset;
        int fd = seg_fd(s, SL_SEG_LOG, 0);
        if (fd < 0) return errno_err(errno);
        opener o = {.log = log, .s = s};
        scan sc;
        scan_init(&sc, fd, seg_lookup(s, from), s->size);
        sl_frame f;
        sl_err e;
        int64_t at = sc.pos;
        while ((e = scan_next(&sc, &f, false)) == SL_OK) {
            int64_t next = sc.pos;
            if (f.base + f.lod < from || f.max_ts < ts) {
                at = next;
                continue;
            }
            /* The batch holds a record at or after ts: Kafka answers that record's offset, so
             * look inside (a batch-level answer is the fallback if its records do not read). */
            int64_t low = from > log->start_offset ? from : log->start_offset;
            sc.pos = at;
            const uint8_t *p;
            if ((e = scan_ensure(&sc, f.flen, &p)) != SL_OK) break;
            /* Records are looked at only once admitted like a read's (a sealed batch is opened
             * in a private copy); without keys the batch-level answer stands. */
            const uint8_t *rec = p + f.hlen;
            uint8_t *clear = NULL;
            const char *why = "";
            sl_err ae;
            if (f.flags & SL_FRAME_FLAG_ENC) {
                if (!(clear = malloc((size_t)f.plen + f.tlen))) {
                    e = SL_ENOMEM;
                    break;
                }
                memcpy(clear, rec, (size_t)f.plen + f.tlen);
                ae = frame_admit(&o, &f, p, clear, &why);
                rec = clear;
            } else {
                ae = frame_admit(&o, &f, p, NULL, &why);
            }
            int found = ae ? -1 : first_record_at(rec, f.plen, low, ts, offset, found_ts);
            if (clear) {
                OPENSSL_cleanse(clear, (size_t)f.plen + f.tlen);
                free(clear);
            }
            if (ae && ae != SL_EKEY_UNAVAILABLE) {
                warn_refused(log, s, at, &f, why, ae);
                e = ae;
                break;
            }
            sc.pos = at = next;
            if (found == 0) continue; /* every such record is below the log start */
            if (found < 0) {
                if (!ae)
                    SL_WARN("storage", "records of a stored batch do not read; answering its base",
                            "dir=%s offset=%lld", log->dir, (long long)f.base);
                *offset = f.base > low ? f.base : low;
                *found_ts = f.max_ts;
            }
            e = SL_OK;
            break;
        }
        scan_done(&sc);
        seg_fd_put(s, SL_SEG_LOG);
        opener_done(&o);
        if (e == SL_OK) return SL_OK;
        if (e != SL_ERANGE) return e;
    }
    return SL_OK;
}

sl_err sl_log_max_timestamp(sl_log *log, int64_t *offset, int64_t *ts) {
    *offset = -1;
    *ts = -1;
    for (int i = 0; i < log->nsegs; i++) {
        sl_seg *s = log->segs[i];
        if (s->max_ts > *ts && s->max_ts_off >= log->start_offset) {
            *ts = s->max_ts;
            *offset = s->max_ts_off;
        }
    }
    return SL_OK;
}

/* Removes the oldest segment (never the active one). The flusher may still hold it; its fds
 * close when the last reference goes. */
static void drop_oldest(sl_log *log) {
    sl_seg *s = log->segs[0];
    atomic_store_explicit(&s->gone, true, memory_order_release);
    unlink_seg_files(log->dir, s->base);
    pthread_mutex_lock(&log->mu);
    memmove(log->segs, log->segs + 1, (size_t)(log->nsegs - 1) * sizeof *log->segs);
    log->nsegs--;
    pthread_mutex_unlock(&log->mu);
    if (log->start_offset < log->segs[0]->base) log->start_offset = log->segs[0]->base;
    SL_INFO(SUB, "deleted segment", "dir=%s base=%" PRId64 " start=%" PRId64, log->dir, s->base,
            log->start_offset);
    seg_unref(s);
}

/* The cleaner's swap: files first (sl_cleaner_commit renamed them), then memory. The old
 * files are gone (replaced): a flusher still holding the old segment must not take a failure to
 * reopen them for a lost file. */
void sl_log__swap_segments(sl_log *log, int i, int n, sl_seg *ns) {
    sl_seg *old = log->segs[i];
    atomic_store_explicit(&old->gone, true, memory_order_release);
    pthread_mutex_lock(&log->mu);
    log->segs[i] = ns;
    pthread_mutex_unlock(&log->mu);
    seg_unref(old);
    /* Merged members, one at a time: seg_unref is not called under mu. */
    for (int q = 1; q < n; q++) {
        old = log->segs[i + 1];
        atomic_store_explicit(&old->gone, true, memory_order_release);
        pthread_mutex_lock(&log->mu);
        memmove(log->segs + i + 1, log->segs + i + 2,
                (size_t)(log->nsegs - i - 2) * sizeof *log->segs);
        log->nsegs--;
        pthread_mutex_unlock(&log->mu);
        seg_unref(old);
    }
}

sl_err sl_log_delete_records(sl_log *log, int64_t offset) {
    if (offset > active(log)->next || offset < 0) return SL_ERANGE;
    if (offset <= log->start_offset) return SL_OK;
    /* Persist first: if we crash after, reopening must not show the deleted records again. */
    sl_err e = ckpt_write(log, offset);
    if (e) return e;
    log->start_offset = offset;
    while (log->nsegs > 1 && log->segs[0]->next <= offset) drop_oldest(log);
    return SL_OK;
}

sl_err sl_log_enforce_retention(sl_log *log, int64_t now_ms, int *deleted) {
    *deleted = 0;
    const sl_log_config *c = &log->cfg;
    int64_t total = sl_log_size_bytes(log);
    while (log->nsegs > 1) {
        sl_seg *s = log->segs[0];
        bool expired = c->retention_ms >= 0 && s->max_ts < now_ms - c->retention_ms;
        bool over = c->retention_bytes >= 0 && total - s->size >= c->retention_bytes;
        if (!expired && !over) break;
        total -= s->size;
        drop_oldest(log);
        (*deleted)++;
    }
    return SL_OK;
}

bool sl_log_flush_due(const sl_log *log, int64_t now_ms) {
    int64_t pending = log->appended_records - log->synced_records;
    if (active(log)->next <= log->durable_offset) return false;
    const sl_log_config *c = &log->cfg;
    if (c->flush_interval_messages != INT64_MAX && pending >= c->flush_interval_messages)
        return true;
    if (c->flush_interval_ms != INT64_MAX && log->oldest_unsynced_ms &&
        now_ms - log->oldest_unsynced_ms >= c->flush_interval_ms)
        return true;
    return false;
}

sl_err sl_log__fsync_dirty(sl_log *log) {
    if (atomic_load_explicit(&log->sync_failed, memory_order_acquire)) return SL_EIO;
    enum { MAXFD = 64 };
    sl_err e = SL_OK;
    bool more = true;
    while (more && !e) {
        sl_seg *held[MAXFD];
        struct {
            sl_seg *s;
            int k;
        } files[MAXFD * 3];
        int nh = 0, nf = 0;
        bool dir = false;
        more = false;
        pthread_mutex_lock(&log->mu);
        for (int i = 0; i < log->nsegs; i++) {
            sl_seg *s = log->segs[i];
            bool d = s->data_dirty, x = s->sealed && s->idx_dirty;
            if (!d && !x) continue;
            if (nh == MAXFD) {
                more = true;
                break;
            }
            atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
            held[nh++] = s;
            if (d) files[nf].s = s, files[nf++].k = SL_SEG_LOG;
            if (x) {
                files[nf].s = s, files[nf++].k = SL_SEG_INDEX;
                files[nf].s = s, files[nf++].k = SL_SEG_TIMEINDEX;
            }
            s->data_dirty = false;
            if (x) s->idx_dirty = false;
        }
        if (!more && log->dir_dirty) {
            dir = true;
            log->dir_dirty = false;
        }
        pthread_mutex_unlock(&log->mu);
        /* Data before directory: a new segment's name must not become durable before its
         * header is. */
        bool opened = true;
        int i = 0;
        for (; i < nf && !e; i++) e = seg_fsync(files[i].s, files[i].k, &opened);
        if (!e && dir) {
            e = fsync_dir_opened(log->dir, &opened);
            if (e && atomic_load_explicit(&log->destroyed, memory_order_acquire)) e = SL_OK;
        }
        if (e && !opened) {
            /* Not an fsync failure: a file could not be opened to sync it (out of descriptors,
             * say). Nothing was lost from the page cache, so what this round took stays dirty
             * for the next one and the log stays writable. */
            pthread_mutex_lock(&log->mu);
            for (int k = i > 0 ? i - 1 : 0; k < nf; k++) {
                if (files[k].k == SL_SEG_LOG)
                    files[k].s->data_dirty = true;
                else
                    files[k].s->idx_dirty = true;
            }
            if (dir) log->dir_dirty = true;
            pthread_mutex_unlock(&log->mu);
        }
        for (int h = 0; h < nh; h++) seg_unref(held[h]);
        if (e && !opened) {
            SL_ERROR(SUB, "cannot open a file to fsync it; will retry", "dir=%s err=%s", log->dir,
                     sl_errname(e));
            return e;
        }
    }
    if (e) {
        /* After a failed fsync the kernel may have dropped the dirty pages and cleared the
         * error; a retry could "succeed" without the data. Refuse further writes instead. */
        atomic_store_explicit(&log->sync_failed, 1, memory_order_release);
        SL_ERROR(SUB, "fsync failed; log is now read-only", "dir=%s err=%s", log->dir,
                 sl_errname(e));
    }
    return e;
}

void sl_log__mark_durable(sl_log *log, int64_t target, int64_t rec_mark) {
    if (target > log->durable_offset) log->durable_offset = target;
    if (rec_mark > log->synced_records) log->synced_records = rec_mark;
    if (log->durable_offset >= active(log)->next) log->oldest_unsynced_ms = 0;
}

sl_err sl_log_sync(sl_log *log) {
    int64_t target = active(log)->next, mark = log->appended_records;
    if (atomic_load_explicit(&log->sync_failed, memory_order_acquire)) return SL_EIO;
    /* Every record is durable already (what is left dirty is at most the empty files of a log
     * created without records): a clean stop of many idle partitions costs no fsync. */
    if (target <= log->durable_offset && mark <= log->synced_records) return SL_OK;
    sl_err e = sl_log__fsync_dirty(log);
    if (!e) sl_log__mark_durable(log, target, mark);
    return e;
}

/* ---- encryption at rest ------------------------------------------------------------------ */

void sl_log_set_keys(sl_log *log, const sl_log_keys *keys) {
    if (keys && !keys->ops) keys = NULL;
    memset(&log->keys, 0, sizeof log->keys);
    log->has_keys = keys != NULL;
    if (keys) log->keys = *keys;
    log->keys_fresh = true;
}

void sl_log_drop_keys(sl_log *log) { release_wdeks(log); }

/* The topic-key version a segment is sealed under; 0 for plaintext. */
static uint32_t seg_tk_version(const sl_seg *s) { return s->enc ? s->env.tk_version : 0; }

int sl_log_segments_pending(sl_log *log, uint32_t tk_version) {
    int n = 0;
    for (int i = 0; i < log->nsegs; i++) {
        sl_seg *s = log->segs[i];
        /* An empty active segment holds nothing to re-encrypt. */
        if (i == log->nsegs - 1 && s->size <= s->hdr_len) continue;
        if (s->bad || seg_tk_version(s) != tk_version) n++;
    }
    return n;
}

bool sl_log_segment_info(sl_log *log, int i, int64_t *base, uint32_t *tk_version) {
    if (i < 0 || i >= log->nsegs) return false;
    *base = log->segs[i]->base;
    *tk_version = seg_tk_version(log->segs[i]);
    return true;
}

/* ---- re-encryption ------------------------------------------------------------------------
 * A job rewrites one sealed segment into `<base>.log.reenc` (+ `.index.reenc`,
 * `.timeindex.reenc`), fsyncs them, swaps the data file in with renameat2(RENAME_EXCHANGE) (which
 * fails when retention deleted the segment meanwhile, so a deleted segment never comes back),
 * renames the indexes in, fsyncs the directory, then unlinks the swapped-out old file and fsyncs
 * again. Whatever the crash point, `<base>.log` is a whole file (old or new); a leftover
 * `*.reenc` file at open means the indexes may not match it, so they are deleted (rebuilt) with
 * the leftovers, and a rerun picks the segment again if it is still the old one. */

#define REENC_EXT ".reenc"

struct sl_log_reenc {
    /* Loop side (prepare, finish). */
    sl_log *log; /* referenced */
    sl_seg *seg; /* referenced; its data descriptor pinned until finish */
    /* Copies for run (any thread). */
    int old_fd;
    char *dir;
    int64_t base, old_size, old_next, created_ms;
    uint32_t old_hdr_len;
    sl_seg_opener opener; /* the old segment's frames */
    sl_seg_sealer sealer; /* the new file's, under a fresh DEK */
    sl_log_config cfg;
    /* Results of run. */
    sl_seg *out; /* the new segment's in-memory state */
    bool gone;   /* the segment was deleted meanwhile: nothing to apply */
};

/* Removes leftovers of an interrupted re-encryption, and the indexes of their segment (they may
 * describe the other version of its data file; open rebuilds them). */
static void reenc_cleanup(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    bool removed = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name), el = strlen(REENC_EXT);
        if (n < 20 + el || strcmp(de->d_name + n - el, REENC_EXT) != 0) continue;
        char name[64];
        if (n - el >= sizeof name) continue;
        memcpy(name, de->d_name, n - el);
        name[n - el] = 0;
        int64_t base;
        if (parse_seg_name(name, ".log", &base) || parse_seg_name(name, ".index", &base) ||
            parse_seg_name(name, ".timeindex", &base)) {
            char p[4096];
            seg_path(p, sizeof p, dir, base, ".index");
            (void)unlink(p);
            seg_path(p, sizeof p, dir, base, ".timeindex");
            (void)unlink(p);
        }
        SL_WARN(SUB, "removing leftover of an interrupted re-encryption", "dir=%s file=%s", dir,
                de->d_name);
        (void)unlinkat(dirfd(d), de->d_name, 0);
        removed = true;
    }
    closedir(d);
    if (removed) (void)fsync_dir(dir);
}

static bool seg_pending(const sl_seg *s, uint32_t tk_version) {
    return seg_tk_version(s) != tk_version;
}

static bool seg_env_matches(const sl_log *log, const sl_seg *s) {
    return !s->enc || (CRYPTO_memcmp(s->env.topic_id, log->keys.topic_id, 16) == 0 &&
                       s->env.partition == log->keys.partition && s->env.seg_base == s->base);
}

sl_err sl_log__rewrite_keys(sl_log *log, int i, sl_seg_opener *in, sl_seg_sealer *out) {
    sl_seg *s = log->segs[i];
    memset(in, 0, sizeof *in);
    memset(out, 0, sizeof *out);
    if (s->bad) return s->bad;
    if (s->enc && !log->has_keys) return SL_EKEY_UNAVAILABLE;
    if (log->has_keys && !seg_env_matches(log, s)) return SL_ETAMPER;
    in->enc = s->enc;
    in->env = s->env;
    in->has_keys = log->has_keys;
    in->plain_below = log->keys.plain_below;
    if (!log->has_keys) return SL_OK; /* plaintext in, plaintext out */
    sl_dek *nd = NULL, *od = NULL;
    sl_err e = new_dek(log, s->base, &out->env, &nd);
    if (!e) e = sl_aead_dup(nd->aead, &out->aead);
    if (!e && s->enc) {
        e = log->keys.ops->dek_open(log->keys.ctx, &log->keys, &s->env, &od);
        if (!e && (!od || !od->aead || od->id != s->env.dek_id)) e = SL_ETAMPER;
        if (!e) e = sl_aead_dup(od->aead, &in->aead);
    }
    /* Only the loop may hold a DEK reference (sl_dek.refs is not atomic). */
    sl_dek_unref(nd);
    sl_dek_unref(od);
    if (e) {
        sl_seg_opener_clear(in);
        sl_seg_sealer_clear(out);
    }
    return e;
}

static void reenc_free(sl_log_reenc *j) {
    if (!j) return;
    sl_seg_opener_clear(&j->opener);
    sl_seg_sealer_clear(&j->sealer);
    if (j->out) seg_unref(j->out);
    free(j->dir);
    free(j);
}

/* The sealed segment to rewrite next, or -1. */
static int reenc_pick(sl_log *log, uint32_t tk_version) {
    for (int i = 0; i < log->nsegs - 1; i++) {
        sl_seg *s = log->segs[i];
        if (s->reenc_busy || !seg_pending(s, tk_version) || s->size <= s->hdr_len) continue;
        if (s->bad || !seg_env_matches(log, s)) {
            /* Damaged or not this partition's: it stays pending and its reads keep failing;
             * re-sealing it would launder whatever is in it. */
            SL_WARN(SUB, "not re-encrypting a segment that fails its checks",
                    "dir=%s base=%" PRId64, log->dir, s->base);
            continue;
        }
        return i;
    }
    return -1;
}

sl_err sl_log_reenc_prepare(sl_log *log, uint32_t tk_version, sl_log_reenc **job) {
    *job = NULL;
    if (!log->has_keys) return SL_EKEY_UNAVAILABLE;
    if (atomic_load_explicit(&log->sync_failed, memory_order_acquire)) return SL_EIO;
    int i = reenc_pick(log, tk_version);
    sl_seg *act = active(log);
    if (i < 0 && act->size > act->hdr_len && !act->reenc_busy && seg_pending(act, tk_version)) {
        sl_err e = roll(log); /* seals it; new appends go under a fresh DEK */
        if (e) return e;
        log->keys_fresh = false;
        i = reenc_pick(log, tk_version);
    }
    if (i < 0) return SL_OK;
    sl_seg *s = log->segs[i];
    sl_log_reenc *j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(log->dir))) {
        free(j);
        return SL_ENOMEM;
    }
    j->old_fd = -1;
    sl_err e = sl_log__rewrite_keys(log, i, &j->opener, &j->sealer);
    if (!e && j->sealer.env.tk_version != tk_version) {
        SL_ERROR(SUB, "key service wraps new data keys under another topic-key version",
                 "dir=%s want=%u got=%u", log->dir, tk_version, j->sealer.env.tk_version);
        e = SL_ESTATE;
    }
    if (!e) {
        j->old_fd = seg_fd(s, SL_SEG_LOG, 0);
        if (j->old_fd < 0) e = errno_err(errno);
    }
    if (e) {
        reenc_free(j);
        return e;
    }
    j->log = log;
    sl_log__ref(log);
    j->seg = s;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    s->reenc_busy = true;
    j->base = s->base;
    j->old_size = s->size;
    j->old_next = s->next;
    j->created_ms = s->created_ms;
    j->old_hdr_len = s->hdr_len;
    j->cfg = log->cfg;
    *job = j;
    return SL_OK;
}

static sl_err write_file_fsync(const char *path, const uint8_t *b, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_err(errno);
    sl_err e = pwrite_all(fd, b, n, 0);
    if (!e) e = do_fsync(fd);
    close(fd);
    return e;
}

/* Writes the new data file: every old frame checked and opened (or, plaintext, allowed), sealed
 * again under the new DEK. Fills j->out. */
static sl_err reenc_write(sl_log_reenc *j, int fd) {
    uint8_t h[FILE_HDR_MAX];
    size_t hl = encode_file_header(h, j->base, j->created_ms, &j->sealer.env);
    if (!hl) return SL_EINVAL;
    sl_err e = pwrite_all(fd, h, hl, 0);
    if (e) return e;
    sl_seg *o = j->out;
    o->hdr_len = (uint32_t)hl;
    o->size = (int64_t)hl;
    scan sc;
    scan_init(&sc, j->old_fd, j->old_hdr_len, j->old_size);
    uint8_t *buf = NULL;
    size_t cap = 0;
    sl_frame f;
    for (;;) {
        int64_t at = sc.pos;
        if ((e = scan_next(&sc, &f, true)) != SL_OK) break;
        const uint8_t *p;
        sc.pos = at;
        if ((e = scan_ensure(&sc, f.flen, &p)) != SL_OK) break;
        sc.pos = at + f.flen;
        if (f.base != o->next) {
            e = SL_ECORRUPT;
            break;
        }
        size_t need = (size_t)f.plen + SL_FRAME_ENC_TAG;
        if (need > cap) {
            if (buf) OPENSSL_cleanse(buf, cap);
            free(buf);
            if (!(buf = malloc(need))) {
                cap = 0;
                e = SL_ENOMEM;
                break;
            }
            cap = need;
        }
        /* The tag is opened from the copy too (sl_log__frame_open reads it after the payload). */
        memcpy(buf, p + f.hlen, (size_t)f.plen + f.tlen);
        if ((e = sl_log__frame_open(&j->opener, &f, p, buf)) != SL_OK) break;
        uint8_t nh[SL_FRAME_HDR_MAX], tag[SL_FRAME_ENC_TAG];
        sl_frame nf;
        e = sl_log__frame_seal(&j->sealer, f.base, f.lod, f.count, f.max_ts, buf, f.plen, nh, tag,
                               &nf);
        if (e) break;
        struct iovec iov[3] = {{nh, nf.hlen}, {buf, f.plen}, {tag, nf.tlen}};
        if ((e = write_all(fd, iov, 3, o->size)) != SL_OK) break;
        (void)seg_note_frame(o, &j->cfg, o->size, &nf, false);
    }
    if (buf) OPENSSL_cleanse(buf, cap);
    free(buf);
    scan_done(&sc);
    if (e == SL_ERANGE) e = o->next == j->old_next ? SL_OK : SL_ECORRUPT;
    if (!e) (void)seg_time_point(o, false); /* as a roll leaves it */
    if (!e) e = do_fsync(fd);
    return e;
}

/* Index files of j->out into `<name>.reenc`. */
static sl_err reenc_write_indexes(sl_log_reenc *j, const char *ipath, const char *tpath) {
    sl_seg *o = j->out;
    size_t n = (size_t)o->nidx * 8, m = (size_t)o->ntidx * 12;
    uint8_t *b = malloc((n > m ? n : m) + 1);
    if (!b) return SL_ENOMEM;
    for (uint32_t i = 0; i < o->nidx; i++) {
        sl_be32(b + i * 8, o->idx[i].rel);
        sl_be32(b + i * 8 + 4, o->idx[i].pos);
    }
    sl_err e = write_file_fsync(ipath, b, n);
    for (uint32_t i = 0; !e && i < o->ntidx; i++) {
        sl_be64(b + i * 12, (uint64_t)o->tidx[i].ts);
        sl_be32(b + i * 12 + 8, o->tidx[i].rel);
    }
    if (!e) e = write_file_fsync(tpath, b, m);
    free(b);
    return e;
}

sl_err sl_log_reenc_run(sl_log_reenc *j) {
    char tl[4096 + 8], ti[4096 + 8], tt[4096 + 8], dl[4096], di[4096], dt[4096];
    seg_path(dl, sizeof dl, j->dir, j->base, ".log");
    seg_path(di, sizeof di, j->dir, j->base, ".index");
    seg_path(dt, sizeof dt, j->dir, j->base, ".timeindex");
    snprintf(tl, sizeof tl, "%s" REENC_EXT, dl);
    snprintf(ti, sizeof ti, "%s" REENC_EXT, di);
    snprintf(tt, sizeof tt, "%s" REENC_EXT, dt);
    if (!(j->out = seg_alloc(j->dir, j->base))) return SL_ENOMEM;
    int fd = open(tl, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_err(errno);
    sl_err e = reenc_write(j, fd);
    close(fd);
    if (!e) e = reenc_write_indexes(j, ti, tt);
    if (e) {
        (void)unlink(tl);
        (void)unlink(ti);
        (void)unlink(tt);
        SL_WARN(SUB, "re-encryption of a segment failed", "file=%s err=%s", dl, sl_errname(e));
        return e;
    }
    /* Exchange, not rename: if retention deleted the segment meanwhile there is nothing to
     * exchange with, and a deleted segment must not come back. */
    bool exchanged = renameat2(AT_FDCWD, tl, AT_FDCWD, dl, RENAME_EXCHANGE) == 0;
    if (!exchanged && (errno == EINVAL || errno == ENOSYS)) {
        /* A file system without RENAME_EXCHANGE: rename, unless the segment is known gone
         * (the window between the check and the rename is the one left). */
        if (!atomic_load_explicit(&j->seg->gone, memory_order_acquire) && rename(tl, dl) == 0)
            exchanged = true;
        else
            errno = ENOENT;
    }
    if (!exchanged) {
        int en = errno;
        (void)unlink(tl);
        (void)unlink(ti);
        (void)unlink(tt);
        if (en == ENOENT) {
            j->gone = true;
            return SL_OK;
        }
        return errno_err(en);
    }
    if (rename(ti, di) != 0 || rename(tt, dt) != 0) {
        /* The data file is the new one; its stale indexes go (rebuilt at open). */
        e = errno_err(errno);
        (void)unlink(di);
        (void)unlink(dt);
    }
    sl_err e2 = fsync_dir(j->dir);
    (void)unlink(tl); /* the old data file, now under the temporary name (or nothing) */
    (void)unlink(ti);
    (void)unlink(tt);
    sl_err e3 = fsync_dir(j->dir);
    if (!e) e = e2 ? e2 : e3;
    if (e)
        SL_WARN(SUB, "re-encryption: finishing the swap failed", "file=%s err=%s", dl,
                sl_errname(e));
    return e;
}

sl_err sl_log_reenc_finish(sl_log_reenc *j, sl_err run_result) {
    if (!j) return SL_OK;
    sl_log *log = j->log;
    sl_seg *old = j->seg;
    seg_fd_put(old, SL_SEG_LOG);
    old->reenc_busy = false;
    bool gone = j->gone || atomic_load_explicit(&old->gone, memory_order_acquire);
    sl_err e = run_result;
    int i = -1;
    for (int k = 0; k < log->nsegs && !gone; k++)
        if (log->segs[k] == old) i = k;
    if (!run_result && !gone && i >= 0 && !log->closed) {
        sl_seg *ns = j->out;
        j->out = NULL;
        ns->dir = log->dir;
        ns->created_ms = old->created_ms;
        ns->enc = true;
        ns->env = j->sealer.env;
        ns->sealed = true; /* run fsynced the files and the directory */
        pthread_mutex_lock(&log->mu);
        log->segs[i] = ns;
        pthread_mutex_unlock(&log->mu);
        seg_unref(old); /* the log's reference; the flusher may still hold one */
        SL_INFO(SUB, "segment re-encrypted", "dir=%s base=%" PRId64 " tk_version=%u", log->dir,
                ns->base, ns->env.tk_version);
    } else if (!run_result && gone) {
        /* Retention won the race: clear away whatever the swap may have recreated. */
        unlink_seg_files(log->dir, j->base);
    }
    seg_unref(old); /* the job's reference */
    j->log = NULL;
    reenc_free(j);
    sl_log__unref(log);
    return e;
}
