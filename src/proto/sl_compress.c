/* Kafka's codecs. Decompression grows a malloc'd scratch buffer (never past max_out) and copies
 * the result into the caller's arena once, so a refused bomb leaves nothing behind in the arena. */
#include "sl_compress.h"

#include <limits.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "base/sl_buf.h"
#include "proto/sl_batch.h"

/* ---- XXH32 ---- */

#define XXH_P1 2654435761u
#define XXH_P2 2246822519u
#define XXH_P3 3266489917u
#define XXH_P4 668265263u
#define XXH_P5 374761393u

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t xxh_round(uint32_t v, uint32_t in) { return rotl32(v + in * XXH_P2, 13) * XXH_P1; }

uint32_t sl_xxh32(const void *data, size_t len, uint32_t seed) {
    const uint8_t *p = data, *end = p + len;
    uint32_t h;
    if (len >= 16) {
        uint32_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
        while (end - p >= 16) {
            v1 = xxh_round(v1, le32(p));
            v2 = xxh_round(v2, le32(p + 4));
            v3 = xxh_round(v3, le32(p + 8));
            v4 = xxh_round(v4, le32(p + 12));
            p += 16;
        }
        h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
    } else {
        h = seed + XXH_P5;
    }
    h += (uint32_t)len;
    while (end - p >= 4) {
        h = rotl32(h + le32(p) * XXH_P3, 17) * XXH_P4;
        p += 4;
    }
    while (p < end) h = rotl32(h + (*p++) * XXH_P5, 11) * XXH_P1;
    h ^= h >> 15;
    h *= XXH_P2;
    h ^= h >> 13;
    h *= XXH_P3;
    h ^= h >> 16;
    return h;
}

/* ---- bounded output ---- */

typedef struct gbuf {
    uint8_t *p;
    size_t len, cap, max;
} gbuf;

/* Makes room for `need` more bytes (at least; doubling), never beyond max. */
static sl_err gb_reserve(gbuf *g, size_t need) {
    if (need > g->max - g->len) return SL_ETOOLARGE;
    if (g->cap - g->len >= need && g->p) return SL_OK;
    size_t nc = g->cap < 4096 ? 4096 : g->cap * 2;
    if (nc < g->len + need) nc = g->len + need;
    if (nc > g->max) nc = g->max;
    uint8_t *np = realloc(g->p, nc ? nc : 1);
    if (!np) return SL_ENOMEM;
    g->p = np;
    g->cap = nc;
    return SL_OK;
}

/* Grows by at least one byte; SL_ETOOLARGE when already at max. */
static sl_err gb_grow(gbuf *g) { return gb_reserve(g, g->cap - g->len + 1); }

static sl_err gb_finish(gbuf *g, sl_err e, sl_arena *a, uint8_t **out, size_t *out_len) {
    if (!e) {
        uint8_t *d = sl_arena_alloc(a, g->len ? g->len : 1);
        if (!d) {
            e = SL_ENOMEM;
        } else {
            if (g->len) memcpy(d, g->p, g->len);
            *out = d;
            *out_len = g->len;
        }
    }
    free(g->p);
    return e;
}

/* ---- gzip ---- */

static sl_err gzip_dec(const uint8_t *in, size_t len, gbuf *g) {
    if (len > UINT_MAX) return SL_ETOOLARGE;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 15 + 32: accept both gzip and zlib wrappers, as Java's readers are lenient about it. */
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return SL_ENOMEM;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    sl_err e = gb_reserve(g, len * 2 < 4096 ? 4096 : len * 2);
    if (e == SL_ETOOLARGE) e = gb_reserve(g, g->max - g->len);
    while (!e) {
        size_t room = g->cap - g->len;
        if (room > UINT_MAX) room = UINT_MAX;
        zs.next_out = g->p + g->len;
        zs.avail_out = (uInt)room;
        uInt in_before = zs.avail_in;
        int r = inflate(&zs, Z_NO_FLUSH);
        g->len += room - zs.avail_out;
        bool progress = zs.avail_out != room || zs.avail_in != in_before;
        if (r == Z_STREAM_END) {
            if (zs.avail_in == 0) break;
            /* Another gzip member follows; anything else after the end is garbage. */
            if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b &&
                inflateReset(&zs) == Z_OK)
                continue;
            e = SL_ECORRUPT;
        } else if (r == Z_MEM_ERROR) {
            e = SL_ENOMEM;
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            e = SL_ECORRUPT;
        } else if (g->len == g->cap) {
            e = gb_grow(g);
        } else if (!progress || zs.avail_in == 0) {
            e = SL_ECORRUPT; /* truncated */
        }
    }
    inflateEnd(&zs);
    return e;
}

static sl_err gzip_enc(const uint8_t *in, size_t len, sl_arena *a, uint8_t **out, size_t *olen) {
    if (len > UINT_MAX / 2) return SL_ETOOLARGE;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 15 + 16: the gzip wrapper, which is what Kafka's GZIPOutputStream writes. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return SL_ENOMEM;
    uLong bound = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *d = sl_arena_alloc(a, bound);
    sl_err e = SL_OK;
    if (!d) {
        e = SL_ENOMEM;
    } else {
        zs.next_in = (Bytef *)(uintptr_t)in;
        zs.avail_in = (uInt)len;
        zs.next_out = d;
        zs.avail_out = (uInt)bound;
        if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
            e = SL_ENOMEM;
        } else {
            *out = d;
            *olen = bound - zs.avail_out;
        }
    }
    deflateEnd(&zs);
    return e;
}

/* ---- snappy ---- */

static const uint8_t k_xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HDR   16
#define XERIAL_BLOCK (32 * 1024)

static sl_err snappy_block_dec(const uint8_t *in, size_t len, gbuf *g) {
    size_t ulen;
    if (snappy_uncompressed_length((const char *)in, len, &ulen) != SNAPPY_OK) return SL_ECORRUPT;
    sl_err e = gb_reserve(g, ulen);
    if (e) return e;
    size_t got = ulen;
    if (snappy_uncompress((const char *)in, len, (char *)g->p + g->len, &got) != SNAPPY_OK ||
        got != ulen)
        return SL_ECORRUPT;
    g->len += got;
    return SL_OK;
}

static sl_err snappy_dec(const uint8_t *in, size_t len, gbuf *g) {
    if (len < XERIAL_HDR || memcmp(in, k_xerial_magic, sizeof k_xerial_magic) != 0)
        return snappy_block_dec(in, len, g);
    /* The version and compatible-version words are not checked: every writer uses 1/1. */
    sl_rd r = sl_rd_init(in + XERIAL_HDR, len - XERIAL_HDR);
    while (sl_rd_left(&r) > 0) {
        uint32_t blen = sl_rd_u32(&r);
        const uint8_t *blk = sl_rd_take(&r, blen);
        if (r.err) return SL_ECORRUPT;
        sl_err e = snappy_block_dec(blk, blen, g);
        if (e) return e;
    }
    return SL_OK;
}

static sl_err snappy_enc(const uint8_t *in, size_t len, sl_arena *a, uint8_t **out, size_t *olen) {
    size_t nblocks = len / XERIAL_BLOCK + 1;
    size_t per = 4 + snappy_max_compressed_length(XERIAL_BLOCK);
    if (nblocks > (SIZE_MAX - XERIAL_HDR) / per) return SL_ETOOLARGE;
    uint8_t *d = sl_arena_alloc(a, XERIAL_HDR + nblocks * per);
    if (!d) return SL_ENOMEM;
    memcpy(d, k_xerial_magic, sizeof k_xerial_magic);
    sl_be32(d + 8, 1);  /* version */
    sl_be32(d + 12, 1); /* minimum compatible version */
    size_t pos = XERIAL_HDR;
    for (size_t off = 0; off < len; off += XERIAL_BLOCK) {
        size_t n = len - off < XERIAL_BLOCK ? len - off : XERIAL_BLOCK;
        size_t clen = per - 4;
        if (snappy_compress((const char *)in + off, n, (char *)d + pos + 4, &clen) != SNAPPY_OK)
            return SL_ENOMEM;
        sl_be32(d + pos, (uint32_t)clen);
        pos += 4 + clen;
    }
    *out = d;
    *olen = pos;
    return SL_OK;
}

/* ---- lz4 ---- */

#define LZ4_FRAME_MAGIC 0x184D2204u

/* Length of the frame descriptor (magic..BD plus optional fields), without the HC byte, or 0. */
static size_t lz4_desc_len(const uint8_t *in, size_t len) {
    if (len < 7 || le32(in) != LZ4_FRAME_MAGIC) return 0;
    uint8_t flg = in[4];
    if ((flg >> 6) != 1) return 0;
    size_t n = 6 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0);
    return n < len ? n : 0;
}

static sl_err lz4_dec(const uint8_t *in, size_t len, gbuf *g) {
    size_t dl = lz4_desc_len(in, len);
    if (!dl) return SL_ECORRUPT;
    uint8_t hdr[19];
    memcpy(hdr, in, dl + 1);
    uint8_t good = (uint8_t)(sl_xxh32(in + 4, dl - 4, 0) >> 8);
    uint8_t broken = (uint8_t)(sl_xxh32(in, dl, 0) >> 8);
    if (hdr[dl] != good) {
        if (hdr[dl] != broken) return SL_ECORRUPT;
        hdr[dl] = good; /* a pre-0.10 Kafka writer: repair so liblz4 accepts the frame */
    }
    LZ4F_dctx *dctx;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) return SL_ENOMEM;
    const uint8_t *src = hdr;
    size_t left = dl + 1;
    bool body = false;
    sl_err e = gb_reserve(g, len * 2 < 4096 ? 4096 : len * 2);
    if (e == SL_ETOOLARGE) e = gb_reserve(g, g->max - g->len);
    while (!e) {
        size_t dsz = g->cap - g->len, ssz = left;
        size_t r = LZ4F_decompress(dctx, g->p + g->len, &dsz, src, &ssz, NULL);
        if (LZ4F_isError(r)) {
            e = SL_ECORRUPT;
            break;
        }
        g->len += dsz;
        src += ssz;
        left -= ssz;
        if (r == 0) {
            if (!body || left != 0) e = SL_ECORRUPT; /* one frame, nothing after it */
            break;
        }
        if (!body && left == 0) {
            body = true;
            src = in + dl + 1;
            left = len - dl - 1;
            continue;
        }
        if (g->len == g->cap)
            e = gb_grow(g);
        else if (!(dsz || ssz) || left == 0)
            e = SL_ECORRUPT; /* truncated */
    }
    LZ4F_freeDecompressionContext(dctx);
    return e;
}

static sl_err lz4_enc(const uint8_t *in, size_t len, sl_arena *a, unsigned flags, uint8_t **out,
                      size_t *olen) {
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    size_t bound = LZ4F_compressFrameBound(len, &prefs);
    uint8_t *d = sl_arena_alloc(a, bound);
    if (!d) return SL_ENOMEM;
    size_t n = LZ4F_compressFrame(d, bound, in, len, &prefs);
    if (LZ4F_isError(n)) return SL_ENOMEM;
    size_t dl = lz4_desc_len(d, n);
    if (!dl) return SL_ENOMEM;
    if (flags & SL_COMPRESS_LZ4_BROKEN_HC) d[dl] = (uint8_t)(sl_xxh32(d, dl, 0) >> 8);
    *out = d;
    *olen = n;
    return SL_OK;
}

/* ---- zstd ---- */

/* Frames asking for a larger window are refused rather than given that much memory; Kafka's
 * producers use level 3, whose window is at most 2 MiB. */
#define ZSTD_WINDOW_LOG_MAX 24

static sl_err zstd_dec(const uint8_t *in, size_t len, gbuf *g) {
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) return SL_ENOMEM;
    sl_err e = SL_OK;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
        e = SL_ENOMEM;
    if (!e) e = gb_reserve(g, len * 4 < 4096 ? 4096 : len * 4);
    if (e == SL_ETOOLARGE) e = gb_reserve(g, g->max - g->len);
    ZSTD_inBuffer ib = {in, len, 0};
    size_t r = 1;
    while (!e) {
        ZSTD_outBuffer ob = {g->p, g->cap, g->len};
        size_t in_before = ib.pos, out_before = ob.pos;
        r = ZSTD_decompressStream(dctx, &ob, &ib);
        if (ZSTD_isError(r)) {
            e = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? SL_ENOMEM : SL_ECORRUPT;
            break;
        }
        g->len = ob.pos;
        bool progress = ib.pos != in_before || ob.pos != out_before;
        if (r == 0 && ib.pos == ib.size) break; /* last frame complete and flushed */
        if (r == 0) continue;                   /* another frame follows */
        if (g->len == g->cap)
            e = gb_grow(g);
        else if (!progress || ib.pos == ib.size)
            e = SL_ECORRUPT; /* truncated */
    }
    if (!e && len == 0) e = SL_ECORRUPT;
    ZSTD_freeDCtx(dctx);
    return e;
}

static sl_err zstd_enc(const uint8_t *in, size_t len, sl_arena *a, uint8_t **out, size_t *olen) {
    size_t bound = ZSTD_compressBound(len);
    uint8_t *d = sl_arena_alloc(a, bound);
    if (!d) return SL_ENOMEM;
    /* Level 3 is what Kafka's producers default to. */
    size_t n = ZSTD_compress(d, bound, in, len, 3);
    if (ZSTD_isError(n)) return SL_ENOMEM;
    *out = d;
    *olen = n;
    return SL_OK;
}

/* ---- entry points ---- */

sl_err sl_decompress(int codec, const uint8_t *in, size_t len, sl_arena *a, size_t max_out,
                     uint8_t **out, size_t *out_len) {
    gbuf g = {NULL, 0, 0, max_out};
    sl_err e;
    switch (codec) {
    case SL_COMPRESSION_NONE:
        e = gb_reserve(&g, len);
        if (!e && len) {
            memcpy(g.p, in, len);
            g.len = len;
        }
        break;
    case SL_COMPRESSION_GZIP:
        e = gzip_dec(in, len, &g);
        break;
    case SL_COMPRESSION_SNAPPY:
        e = snappy_dec(in, len, &g);
        break;
    case SL_COMPRESSION_LZ4:
        e = lz4_dec(in, len, &g);
        break;
    case SL_COMPRESSION_ZSTD:
        e = zstd_dec(in, len, &g);
        break;
    default:
        e = SL_ECOMPRESSION;
        break;
    }
    return gb_finish(&g, e, a, out, out_len);
}

sl_err sl_compress(int codec, const uint8_t *in, size_t len, sl_arena *a, unsigned flags,
                   uint8_t **out, size_t *out_len) {
    switch (codec) {
    case SL_COMPRESSION_NONE: {
        uint8_t *d = sl_arena_alloc(a, len ? len : 1);
        if (!d) return SL_ENOMEM;
        if (len) memcpy(d, in, len);
        *out = d;
        *out_len = len;
        return SL_OK;
    }
    case SL_COMPRESSION_GZIP:
        return gzip_enc(in, len, a, out, out_len);
    case SL_COMPRESSION_SNAPPY:
        return snappy_enc(in, len, a, out, out_len);
    case SL_COMPRESSION_LZ4:
        return lz4_enc(in, len, a, flags, out, out_len);
    case SL_COMPRESSION_ZSTD:
        return zstd_enc(in, len, a, out, out_len);
    default:
        return SL_ECOMPRESSION;
    }
}
