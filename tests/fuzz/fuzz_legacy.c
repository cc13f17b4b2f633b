/* libFuzzer target for the legacy-format converters and the codecs. The first input byte picks
 * the subject, the second a parameter:
 *   0: sl_legacy_to_v2(rest)         — anything accepted must be one valid magic-2 batch, and
 *                                       must down-convert and up-convert again to the same count
 *   1: sl_v2_to_legacy(rest, magic)   — anything produced must up-convert again
 *   2: sl_decompress(codec, rest)     — bounded; anything decoded must survive a re-compression
 * Every run uses a fresh arena; arena growth is capped by the converters' own bounds.
 *
 * Content invariant: conversion never changes a record. Records are decoded here, independently
 * of the converters (own framing, CRC and varint code; only decompression is shared), and
 * compared record by record:
 *   up:   legacy input = the magic-2 batch = each down-conversion (magic 0 and 1) = the
 *         up-conversion of that again, in keys and values (null stays null), timestamps where the
 *         format has them (magic 0 gets the broker's clock, LogAppendTime wrappers their own) and
 *         offsets (0..n-1 in the batch and in the down-converted sets);
 *   down: for one whole magic-2 batch, the legacy output holds its records with their absolute
 *         offsets, keys, values and (magic 1) timestamps; headers are not representable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "proto/sl_legacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_FUZZ_INPUT = 256 * 1024, MAX_OUT = 4 << 20 };

/* ---- independent decoders ---- */

enum { NO_TS = INT64_MIN, NOW_MS = 1700000000000 };

typedef struct rec {
    int64_t off, ts; /* ts NO_TS: the format has none (magic 0) */
    const uint8_t *k, *v;
    int32_t kl, vl; /* -1: null */
} rec;

typedef struct recs {
    rec *r;
    size_t n, cap;
    sl_arena *a;
} recs;

static bool push(recs *rs, rec r) {
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        rec *nr = sl_arena_alloc(rs->a, cap * sizeof *nr);
        if (!nr) return false;
        if (rs->n) memcpy(nr, rs->r, rs->n * sizeof *nr);
        rs->r = nr;
        rs->cap = cap;
    }
    rs->r[rs->n++] = r;
    return true;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Kafka bytes: i32 length (-1 null) then the bytes. */
static bool take_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **b, int32_t *bl) {
    if (end - *p < 4) return false;
    int32_t n = (int32_t)be(*p, 4);
    *p += 4;
    if (n < -1 || (n > 0 && end - *p < n)) return false;
    *b = n > 0 ? *p : (const uint8_t *)"";
    *bl = n;
    if (n > 0) *p += n;
    return true;
}

/* A magic 0/1 message set: every message's CRC checked, wrappers opened (one level). Offsets as
 * the format means them: absolute, except a magic-1 wrapper's inner ones, relative to the first
 * and anchored by the wrapper's (the last inner message's absolute offset). */
static bool legacy_decode(const uint8_t *p, size_t len, sl_arena *a, int depth, int8_t omagic,
                          int8_t oattr, int64_t ots, recs *out) {
    const uint8_t *end = p + len;
    while (p < end) {
        if (end - p < 12) return false;
        int64_t off = (int64_t)be(p, 8);
        int32_t size = (int32_t)be(p + 8, 4);
        p += 12;
        if (size < 14 || end - p < size) return false;
        const uint8_t *m = p, *mend = p + size;
        p += size;
        if ((uint32_t)be(m, 4) != (uint32_t)crc32(0, m + 4, (uInt)(size - 4))) return false;
        int8_t magic = (int8_t)m[4], attr = (int8_t)m[5];
        const uint8_t *q = m + 6;
        if (magic != 0 && magic != 1) return false;
        if (depth && magic != omagic) return false;
        int64_t ts = NO_TS;
        if (magic == 1) {
            if (mend - q < 8) return false;
            ts = (int64_t)be(q, 8);
            q += 8;
        }
        rec r = {.off = off, .ts = ts};
        if (!take_bytes(&q, mend, &r.k, &r.kl) || !take_bytes(&q, mend, &r.v, &r.vl) || q != mend)
            return false;
        int codec = attr & 7;
        if (codec == 0) {
            if (depth && magic == 1 && (oattr & 8)) r.ts = ots;
            if (!push(out, r)) return false;
            continue;
        }
        if (depth || r.vl < 0) return false;
        uint8_t *d;
        size_t dl;
        if (sl_decompress(codec, r.v, (size_t)r.vl, a, SL_LEGACY_MAX_INFLATE, &d, &dl) != SL_OK)
            return false;
        size_t first = out->n;
        if (!legacy_decode(d, dl, a, 1, magic, attr, ts, out) || out->n == first) return false;
        if (magic == 1) {
            int64_t last_rel = out->r[out->n - 1].off;
            for (size_t i = first; i < out->n; i++)
                out->r[i].off =
                    (int64_t)((uint64_t)off - (uint64_t)last_rel + (uint64_t)out->r[i].off);
        }
    }
    return true;
}

static bool varlong(const uint8_t **p, const uint8_t *end, int64_t *v) {
    uint64_t u = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            return true;
        }
    }
    return false;
}

static bool varbytes(const uint8_t **p, const uint8_t *end, const uint8_t **b, int32_t *bl) {
    int64_t n;
    if (!varlong(p, end, &n) || n < -1 || (n > 0 && end - *p < n)) return false;
    *b = n > 0 ? *p : (const uint8_t *)"";
    *bl = (int32_t)n;
    if (n > 0) *p += n;
    return true;
}

/* One magic-2 batch (exactly `len` bytes, CRC-32C checked): its records with absolute offsets
 * and timestamps. *control says it was a control batch; *nheaders counts record headers. */
static bool v2_decode(const uint8_t *b, size_t len, sl_arena *a, recs *out, bool *control,
                      size_t *nheaders) {
    if (len < 61 || be(b + 8, 4) != len - 12 || b[16] != 2) return false;
    if ((uint32_t)be(b + 17, 4) != sl_crc32c(0, b + 21, len - 21)) return false;
    int16_t attr = (int16_t)be(b + 21, 2);
    int64_t base = (int64_t)be(b, 8), base_ts = (int64_t)be(b + 27, 8),
            max_ts = (int64_t)be(b + 35, 8);
    int32_t count = (int32_t)be(b + 57, 4);
    *control = (attr & 0x20) != 0;
    const uint8_t *p = b + 61, *end = b + len;
    int codec = attr & 7;
    if (codec) {
        uint8_t *d;
        size_t dl;
        if (sl_decompress(codec, p, len - 61, a, SL_LEGACY_MAX_INFLATE, &d, &dl) != SL_OK)
            return false;
        p = d;
        end = d + dl;
    }
    for (int32_t i = 0; i < count; i++) {
        int64_t rl, dts, doff, nh;
        if (!varlong(&p, end, &rl) || rl < 0 || end - p < rl) return false;
        const uint8_t *q = p, *rend = p + rl;
        p = rend;
        if (rend - q < 1) return false;
        q++; /* record attributes */
        rec r;
        if (!varlong(&q, rend, &dts) || !varlong(&q, rend, &doff) ||
            !varbytes(&q, rend, &r.k, &r.kl) || !varbytes(&q, rend, &r.v, &r.vl) ||
            !varlong(&q, rend, &nh) || nh < 0)
            return false;
        for (int64_t h = 0; h < nh; h++) {
            const uint8_t *hk, *hv;
            int32_t hkl, hvl;
            if (!varbytes(&q, rend, &hk, &hkl) || !varbytes(&q, rend, &hv, &hvl)) return false;
        }
        if (q != rend) return false;
        *nheaders += (size_t)nh;
        r.off = (int64_t)((uint64_t)base + (uint64_t)doff);
        r.ts = (attr & 8) ? max_ts : (int64_t)((uint64_t)base_ts + (uint64_t)dts);
        if (!push(out, r)) return false;
    }
    return p == end;
}

static void same_kv(const rec *x, const rec *y, const char *what, size_t i) {
    if (x->kl != y->kl || x->vl != y->vl || (x->kl > 0 && memcmp(x->k, y->k, (size_t)x->kl)) ||
        (x->vl > 0 && memcmp(x->v, y->v, (size_t)x->vl))) {
        fprintf(stderr, "fuzz_legacy: %s: record %zu changed its key or value\n", what, i);
        abort();
    }
}

static void expect(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_legacy: %s\n", what);
        abort();
    }
}

static int32_t batch_count(const uint8_t *b, size_t len) {
    sl_batch_info bi;
    if (!sl_batch_parse(b, len, &bi) || bi.size != len) abort();
    return bi.record_count;
}

static void fuzz_up(const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *b;
    size_t bl;
    if (sl_legacy_to_v2(p, n, a, NOW_MS, INT32_MAX, &b, &bl) != 0) return;
    int nb = 0;
    if (sl_batch_validate_set(b, bl, 2, INT32_MAX, &nb) != 0 || nb != 1) abort();
    int32_t count = batch_count(b, bl);
    recs in = {.a = a}, batch = {.a = a};
    bool control = false;
    size_t nh = 0;
    expect(legacy_decode(p, n, a, 0, 0, 0, 0, &in), "accepted a set that does not decode");
    expect(v2_decode(b, bl, a, &batch, &control, &nh), "produced a batch that does not decode");
    expect(!control && nh == 0 && batch.n == in.n && batch.n == (size_t)count,
           "the batch holds a different number of records");
    for (size_t i = 0; i < in.n; i++) {
        same_kv(&in.r[i], &batch.r[i], "up-conversion", i);
        int64_t want_ts = in.r[i].ts == NO_TS ? NOW_MS : in.r[i].ts;
        expect(batch.r[i].off == (int64_t)i && batch.r[i].ts == want_ts,
               "up-conversion changed an offset or timestamp");
    }
    for (int8_t magic = 0; magic <= 1; magic++) {
        uint8_t *lg, *b2;
        size_t ll, bl2;
        if (sl_v2_to_legacy(b, bl, magic, a, &lg, &ll) != 0 || ll == 0) abort();
        recs down = {.a = a}, again = {.a = a};
        expect(legacy_decode(lg, ll, a, 0, 0, 0, 0, &down), "down-converted set does not decode");
        expect(down.n == batch.n, "down-conversion changed the number of records");
        for (size_t i = 0; i < down.n; i++) {
            same_kv(&batch.r[i], &down.r[i], "down-conversion", i);
            expect(down.r[i].off == (int64_t)i, "down-conversion changed an offset");
            expect(magic == 0 ? down.r[i].ts == NO_TS : down.r[i].ts == batch.r[i].ts,
                   "down-conversion changed a timestamp");
        }
        if (sl_legacy_to_v2(lg, ll, a, 1, INT32_MAX, &b2, &bl2) != 0) abort();
        if (batch_count(b2, bl2) != count) abort();
        expect(v2_decode(b2, bl2, a, &again, &control, &nh) && again.n == batch.n,
               "second up-conversion does not decode");
        for (size_t i = 0; i < again.n; i++) {
            same_kv(&batch.r[i], &again.r[i], "second up-conversion", i);
            expect(again.r[i].ts == (magic == 0 ? 1 : batch.r[i].ts),
                   "second up-conversion changed a timestamp");
        }
    }
}

static void fuzz_down(int8_t magic, const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *lg, *b;
    size_t ll, bl;
    if (sl_v2_to_legacy(p, n, magic, a, &lg, &ll) != 0 || ll == 0) return;
    if (sl_legacy_to_v2(lg, ll, a, 1, INT32_MAX, &b, &bl) != 0) abort();
    /* Content check for the plain case: exactly one data batch that decodes here. */
    recs in = {.a = a}, out = {.a = a};
    bool control = false;
    size_t nh = 0;
    if (!v2_decode(p, n, a, &in, &control, &nh) || control || in.n == 0) return;
    expect(legacy_decode(lg, ll, a, 0, 0, 0, 0, &out), "down-converted set does not decode");
    expect(out.n == in.n, "down-conversion changed the number of records");
    for (size_t i = 0; i < in.n; i++) {
        same_kv(&in.r[i], &out.r[i], "down-conversion", i);
        expect(out.r[i].off == in.r[i].off, "down-conversion changed an offset");
        expect(magic == 0 ? out.r[i].ts == NO_TS : out.r[i].ts == in.r[i].ts,
               "down-conversion changed a timestamp");
    }
}

static void fuzz_codec(int codec, const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *d, *z, *d2;
    size_t dl, zl, dl2;
    if (sl_decompress(codec, p, n, a, MAX_OUT, &d, &dl) != SL_OK) return;
    if (dl > MAX_OUT) abort();
    unsigned flags = (unsigned)(n & 1) ? SL_COMPRESS_LZ4_BROKEN_HC : 0;
    if (sl_compress(codec, d, dl, a, flags, &z, &zl) != SL_OK) abort();
    if (sl_decompress(codec, z, zl, a, dl, &d2, &dl2) != SL_OK) abort();
    if (dl2 != dl || (dl && memcmp(d, d2, dl) != 0)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > MAX_FUZZ_INPUT) return 0;
    sl_arena *a = sl_arena_new(4096);
    if (!a) return 0;
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    switch (data[0] % 3) {
    case 0:
        fuzz_up(p, n, a);
        break;
    case 1:
        fuzz_down((int8_t)(data[1] & 1), p, n, a);
        break;
    default:
        fuzz_codec(data[1] % 6, p, n, a);
        break;
    }
    sl_arena_free(a);
    return 0;
}
