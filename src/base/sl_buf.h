/* Bounded reader with a sticky error, and an arena-backed growable writer, for Kafka's wire
 * primitives (big-endian fixed ints, zigzag varints, classic and compact strings/bytes/arrays).
 * Every read checks the bytes left; after the first failure all reads return zero values and the
 * caller checks r->err once at the end, so generated decoders stay straight-line. */
#ifndef SL_BUF_H
#define SL_BUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "sl_arena.h"
#include "sl_err.h"

/* A view, never owned: len == -1 means null. */
typedef struct sl_str {
    const char *p;
    int32_t len;
} sl_str;
typedef struct sl_bytes {
    const uint8_t *p;
    int32_t len;
} sl_bytes;
typedef struct sl_uuid {
    uint8_t b[16];
} sl_uuid;

#define SL_STR_NULL   ((sl_str){NULL, -1})
#define SL_BYTES_NULL ((sl_bytes){NULL, -1})
static inline sl_str sl_str_c(const char *s) { return (sl_str){s, (int32_t)strlen(s)}; }
static inline bool sl_str_eq(sl_str a, sl_str b) {
    return a.len == b.len && (a.len <= 0 || memcmp(a.p, b.p, (size_t)a.len) == 0);
}
static inline bool sl_str_eqc(sl_str a, const char *c) { return sl_str_eq(a, sl_str_c(c)); }
/* A formatted string (NUL-terminated, at most 255 characters: error messages) allocated in `a`,
 * which owns it; SL_STR_NULL when `a` is exhausted. */
__attribute__((format(printf, 2, 3))) sl_str sl_str_printf(sl_arena *a, const char *fmt, ...);
static inline bool sl_uuid_is_zero(const sl_uuid *u) {
    static const sl_uuid z;
    return memcmp(u->b, z.b, 16) == 0;
}
/* Lowercase hex of a 16-byte id (topic ids in the registry, directory names, the keyring's
 * logs and status): out holds 33 bytes with the NUL. */
static inline void sl_uuid_hex(const uint8_t id[16], char out[33]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[32] = 0;
}

typedef struct sl_rd {
    const uint8_t *p, *end;
    sl_err err;
} sl_rd;

static inline sl_rd sl_rd_init(const void *p, size_t n) {
    return (sl_rd){(const uint8_t *)p, (const uint8_t *)p + n, SL_OK};
}
static inline size_t sl_rd_left(const sl_rd *r) { return (size_t)(r->end - r->p); }
static inline bool sl_rd_need(sl_rd *r, size_t n) {
    if (r->err) return false;
    if ((size_t)(r->end - r->p) < n) {
        r->err = SL_EPROTO;
        return false;
    }
    return true;
}
static inline void sl_rd_fail(sl_rd *r) {
    if (!r->err) r->err = SL_EPROTO;
}
static inline int8_t sl_rd_i8(sl_rd *r) {
    if (!sl_rd_need(r, 1)) return 0;
    return (int8_t)*r->p++;
}
static inline bool sl_rd_bool(sl_rd *r) { return sl_rd_i8(r) != 0; }
static inline uint16_t sl_rd_u16(sl_rd *r) {
    if (!sl_rd_need(r, 2)) return 0;
    uint16_t v = (uint16_t)((unsigned)r->p[0] << 8 | r->p[1]);
    r->p += 2;
    return v;
}
static inline int16_t sl_rd_i16(sl_rd *r) { return (int16_t)sl_rd_u16(r); }
static inline uint32_t sl_rd_u32(sl_rd *r) {
    if (!sl_rd_need(r, 4)) return 0;
    uint32_t v =
        (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    return v;
}
static inline int32_t sl_rd_i32(sl_rd *r) { return (int32_t)sl_rd_u32(r); }
static inline uint64_t sl_rd_u64(sl_rd *r) {
    uint64_t hi = sl_rd_u32(r);
    return hi << 32 | sl_rd_u32(r);
}
static inline int64_t sl_rd_i64(sl_rd *r) { return (int64_t)sl_rd_u64(r); }
static inline double sl_rd_f64(sl_rd *r) {
    uint64_t u = sl_rd_u64(r);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static inline uint64_t sl_rd_uvarlong(sl_rd *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (!sl_rd_need(r, 1)) return 0;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    sl_rd_fail(r);
    return 0;
}
static inline uint32_t sl_rd_uvarint(sl_rd *r) {
    uint64_t v = sl_rd_uvarlong(r);
    if (v > UINT32_MAX) {
        sl_rd_fail(r);
        return 0;
    }
    return (uint32_t)v;
}
static inline int32_t sl_rd_varint(sl_rd *r) {
    uint32_t u = sl_rd_uvarint(r);
    return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}
static inline int64_t sl_rd_varlong(sl_rd *r) {
    uint64_t u = sl_rd_uvarlong(r);
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}
static inline sl_uuid sl_rd_uuid(sl_rd *r) {
    sl_uuid u = {{0}};
    if (sl_rd_need(r, 16)) {
        memcpy(u.b, r->p, 16);
        r->p += 16;
    }
    return u;
}
/* Returns a view of `n` bytes, or NULL (and the error set) when fewer are left. */
static inline const uint8_t *sl_rd_take(sl_rd *r, size_t n) {
    if (!sl_rd_need(r, n)) return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}
static inline void sl_rd_skip(sl_rd *r, size_t n) { (void)sl_rd_take(r, n); }

/* Length-prefixed views. A length of -1 is null; anything else negative is malformed. */
static inline sl_bytes sl_rd_bytes_n(sl_rd *r, int64_t n) {
    if (r->err) return SL_BYTES_NULL;
    if (n == -1) return SL_BYTES_NULL;
    if (n < -1 || n > INT32_MAX) {
        sl_rd_fail(r);
        return SL_BYTES_NULL;
    }
    const uint8_t *p = sl_rd_take(r, (size_t)n);
    return p ? (sl_bytes){p, (int32_t)n} : SL_BYTES_NULL;
}
static inline sl_str sl_rd_string(sl_rd *r) {
    sl_bytes b = sl_rd_bytes_n(r, sl_rd_i16(r));
    return (sl_str){(const char *)b.p, b.len};
}
static inline sl_str sl_rd_compact_string(sl_rd *r) {
    sl_bytes b = sl_rd_bytes_n(r, (int64_t)sl_rd_uvarint(r) - 1);
    return (sl_str){(const char *)b.p, b.len};
}
static inline sl_bytes sl_rd_bytes(sl_rd *r) { return sl_rd_bytes_n(r, sl_rd_i32(r)); }
static inline sl_bytes sl_rd_compact_bytes(sl_rd *r) {
    return sl_rd_bytes_n(r, (int64_t)sl_rd_uvarint(r) - 1);
}
/* An array count is believed only if that many minimal elements could fit in what is left.
 * Returns -1 for null, 0..n otherwise (0 after an error). */
static inline int32_t sl_rd_check_count(sl_rd *r, int64_t n, size_t min_elem) {
    if (r->err) return 0;
    if (n == -1) return -1;
    if (n < -1 || n > INT32_MAX ||
        (n > 0 && (uint64_t)n > sl_rd_left(r) / (min_elem ? min_elem : 1))) {
        sl_rd_fail(r);
        return 0;
    }
    return (int32_t)n;
}
static inline int32_t sl_rd_count(sl_rd *r, size_t min_elem) {
    return sl_rd_check_count(r, sl_rd_i32(r), min_elem);
}
static inline int32_t sl_rd_compact_count(sl_rd *r, size_t min_elem) {
    return sl_rd_check_count(r, (int64_t)sl_rd_uvarint(r) - 1, min_elem);
}

/* A byte range the writer's output references instead of copying: it goes out right before
 * buf[at]. */
typedef struct sl_wr_ref {
    size_t at;
    const uint8_t *p;
    size_t n;
} sl_wr_ref;

/* Writer: appends into a buffer that grows inside the arena. On allocation failure `err` is set
 * and later writes are dropped; the caller checks once.
 *
 * A writer with references enabled (sl_wr_enable_refs) keeps large byte ranges written with
 * sl_wr_raw_ref() out of `buf`: the output is then buf interleaved with those ranges
 * (sl_wr_iov), so record data read for a Fetch goes to the socket without another copy. */
typedef struct sl_wr {
    uint8_t *buf;
    size_t len, cap;
    sl_arena *a;
    sl_err err;
    size_t ref_min; /* 0: references disabled */
    sl_wr_ref *refs;
    int nrefs, refcap;
} sl_wr;

/* Starts an empty writer whose buffer is owned by `a`. */
void sl_wr_init(sl_wr *w, sl_arena *a, size_t initial);
/* Ensures `n` more bytes fit; returns a pointer to them (not yet counted in len) or NULL. */
uint8_t *sl_wr_reserve(sl_wr *w, size_t n);
/* From now on sl_wr_raw_ref() references ranges of at least `min` bytes (min >= 1) instead of
 * copying them. Only for writers whose output is consumed through sl_wr_iov(). */
void sl_wr_enable_refs(sl_wr *w, size_t min);
/* Appends `n` bytes from `p`: by reference when enabled and n >= ref_min (then `p` is borrowed
 * and must outlive every use of the output), else copied as sl_wr_raw(). */
void sl_wr_raw_ref(sl_wr *w, const void *p, size_t n);
/* Output size: the buffer plus the referenced ranges. */
static inline size_t sl_wr_total(const sl_wr *w) {
    size_t n = w->len;
    for (int i = 0; i < w->nrefs; i++) n += w->refs[i].n;
    return n;
}
/* The output as iovecs, allocated in the writer's arena (owned by it); returns the count
 * (2 * nrefs + 1 at most) or -1 when out of memory or the writer failed. */
int sl_wr_iov(sl_wr *w, struct iovec **out);

static inline void sl_wr_raw(sl_wr *w, const void *p, size_t n) {
    uint8_t *d = sl_wr_reserve(w, n);
    if (!d) return;
    if (n) memcpy(d, p, n);
    w->len += n;
}
static inline void sl_wr_i8(sl_wr *w, int8_t v) {
    uint8_t *d = sl_wr_reserve(w, 1);
    if (!d) return;
    d[0] = (uint8_t)v;
    w->len += 1;
}
static inline void sl_wr_bool(sl_wr *w, bool v) { sl_wr_i8(w, v ? 1 : 0); }
static inline void sl_be16(uint8_t *d, uint16_t v) {
    d[0] = (uint8_t)(v >> 8);
    d[1] = (uint8_t)v;
}
static inline void sl_be32(uint8_t *d, uint32_t v) {
    d[0] = (uint8_t)(v >> 24);
    d[1] = (uint8_t)(v >> 16);
    d[2] = (uint8_t)(v >> 8);
    d[3] = (uint8_t)v;
}
static inline void sl_be64(uint8_t *d, uint64_t v) {
    sl_be32(d, (uint32_t)(v >> 32));
    sl_be32(d + 4, (uint32_t)v);
}
static inline uint32_t sl_get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t sl_get_be64(const uint8_t *p) {
    return (uint64_t)sl_get_be32(p) << 32 | sl_get_be32(p + 4);
}
static inline uint16_t sl_get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void sl_wr_u16(sl_wr *w, uint16_t v) {
    uint8_t *d = sl_wr_reserve(w, 2);
    if (!d) return;
    sl_be16(d, v);
    w->len += 2;
}
static inline void sl_wr_i16(sl_wr *w, int16_t v) { sl_wr_u16(w, (uint16_t)v); }
static inline void sl_wr_u32(sl_wr *w, uint32_t v) {
    uint8_t *d = sl_wr_reserve(w, 4);
    if (!d) return;
    sl_be32(d, v);
    w->len += 4;
}
static inline void sl_wr_i32(sl_wr *w, int32_t v) { sl_wr_u32(w, (uint32_t)v); }
static inline void sl_wr_i64(sl_wr *w, int64_t v) {
    uint8_t *d = sl_wr_reserve(w, 8);
    if (!d) return;
    sl_be64(d, (uint64_t)v);
    w->len += 8;
}
static inline void sl_wr_f64(sl_wr *w, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    sl_wr_i64(w, (int64_t)u);
}
static inline void sl_wr_uvarlong(sl_wr *w, uint64_t v) {
    uint8_t *d = sl_wr_reserve(w, 10);
    if (!d) return;
    size_t i = 0;
    while (v >= 0x80) {
        d[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    d[i++] = (uint8_t)v;
    w->len += i;
}
static inline void sl_wr_uvarint(sl_wr *w, uint32_t v) { sl_wr_uvarlong(w, v); }
static inline void sl_wr_varint(sl_wr *w, int32_t v) {
    sl_wr_uvarlong(w, (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)));
}
static inline void sl_wr_varlong(sl_wr *w, int64_t v) {
    sl_wr_uvarlong(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}
static inline void sl_wr_uuid(sl_wr *w, const sl_uuid *u) { sl_wr_raw(w, u->b, 16); }
static inline void sl_wr_string(sl_wr *w, sl_str s) {
    sl_wr_i16(w, (int16_t)(s.len < 0 ? -1 : s.len));
    if (s.len > 0) sl_wr_raw(w, s.p, (size_t)s.len);
}
static inline void sl_wr_compact_string(sl_wr *w, sl_str s) {
    sl_wr_uvarint(w, s.len < 0 ? 0 : (uint32_t)s.len + 1);
    if (s.len > 0) sl_wr_raw(w, s.p, (size_t)s.len);
}
/* The length prefix of a bytes field (negative: null); the caller writes the bytes. */
static inline void sl_wr_bytes_len(sl_wr *w, int32_t len) { sl_wr_i32(w, len < 0 ? -1 : len); }
static inline void sl_wr_compact_bytes_len(sl_wr *w, int32_t len) {
    sl_wr_uvarint(w, len < 0 ? 0 : (uint32_t)len + 1);
}
static inline void sl_wr_bytes(sl_wr *w, sl_bytes b) {
    sl_wr_bytes_len(w, b.len);
    if (b.len > 0) sl_wr_raw(w, b.p, (size_t)b.len);
}
static inline void sl_wr_compact_bytes(sl_wr *w, sl_bytes b) {
    sl_wr_compact_bytes_len(w, b.len);
    if (b.len > 0) sl_wr_raw(w, b.p, (size_t)b.len);
}
static inline void sl_wr_count(sl_wr *w, int32_t n) { sl_wr_i32(w, n); }
static inline void sl_wr_compact_count(sl_wr *w, int32_t n) {
    sl_wr_uvarint(w, n < 0 ? 0 : (uint32_t)n + 1);
}
static inline size_t sl_uvarint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

#endif
