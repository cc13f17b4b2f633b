/* Legacy message sets (magic 0/1) <-> magic-2 record batches. Everything lives in the caller's
 * arena; decompression is bounded by SL_LEGACY_MAX_INFLATE. Payloads are never logged. */
#include "sl_legacy.h"

#include <string.h>
#include <zlib.h>

#include "base/sl_err.h"
#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "proto/sl_records.h"

/* Legacy message layout: offset i64, size i32, then `size` bytes: crc u32 (CRC-32 IEEE of the
 * rest), magic i8, attributes i8, [timestamp i64 for magic 1], key bytes, value bytes. */
#define LEGACY_LOG_OVERHEAD 12
#define LEGACY_MIN_V0       14 /* crc, magic, attributes, key length, value length */
#define LEGACY_MIN_V1       22
#define ATTR_CODEC_MASK     0x07
#define ATTR_LOG_APPEND     0x08 /* magic 1 and 2: timestamp type LogAppendTime */
#define ATTR_CONTROL        0x20 /* magic 2: transaction marker batch */

static int16_t err_to_kafka(sl_err e) {
    switch (e) {
    case SL_OK:
        return SL_KAFKA_NONE;
    case SL_ETOOLARGE:
        return SL_KAFKA_MESSAGE_TOO_LARGE;
    case SL_ECOMPRESSION:
        return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
    case SL_ENOMEM:
        return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    default:
        return SL_KAFKA_CORRUPT_MESSAGE;
    }
}

static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

/* ------------------------------------------------------------------ up-conversion */

typedef struct up_rec {
    int64_t ts;
    sl_bytes key, value;
} up_rec;

typedef struct up_ctx {
    sl_arena *a;
    int64_t now_ms;
    up_rec *recs;
    size_t n, cap;
    size_t inflate_left;
    int codec; /* of the first compressed wrapper, -1 until one is seen */
} up_ctx;

static int16_t up_push(up_ctx *c, int64_t ts, sl_bytes key, sl_bytes value) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        up_rec *nr = sl_arena_alloc(c->a, nc * sizeof *nr);
        if (!nr) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
        if (c->n) memcpy(nr, c->recs, c->n * sizeof *nr);
        c->recs = nr;
        c->cap = nc;
    }
    c->recs[c->n++] = (up_rec){ts, key, value};
    return SL_KAFKA_NONE;
}

/* Parses a message set; `depth` 1 is the inside of a compressed wrapper whose magic, attributes
 * and timestamp are given. */
static int16_t up_parse(up_ctx *c, const uint8_t *p, size_t len, int depth, int8_t outer_magic,
                        int8_t outer_attr, int64_t outer_ts) {
    sl_rd r = sl_rd_init(p, len);
    size_t before = c->n;
    while (sl_rd_left(&r) > 0) {
        (void)sl_rd_i64(&r); /* offsets are the broker's to assign */
        int32_t size = sl_rd_i32(&r);
        if (r.err || size < LEGACY_MIN_V0 || (size_t)size > sl_rd_left(&r))
            return SL_KAFKA_CORRUPT_MESSAGE;
        const uint8_t *m = sl_rd_take(&r, (size_t)size);
        if (crc32_ieee(m + 4, (size_t)size - 4) != sl_get_be32(m)) return SL_KAFKA_CORRUPT_MESSAGE;
        sl_rd mr = sl_rd_init(m + 4, (size_t)size - 4);
        int8_t magic = sl_rd_i8(&mr);
        int8_t attr = sl_rd_i8(&mr);
        if (magic < 0 || magic > 1 || (magic == 1 && size < LEGACY_MIN_V1))
            return SL_KAFKA_CORRUPT_MESSAGE;
        if (depth > 0 && magic != outer_magic) return SL_KAFKA_CORRUPT_MESSAGE;
        int64_t ts = magic == 1 ? sl_rd_i64(&mr) : c->now_ms;
        sl_bytes key = sl_rd_bytes(&mr);
        sl_bytes value = sl_rd_bytes(&mr);
        if (mr.err || sl_rd_left(&mr) != 0) return SL_KAFKA_CORRUPT_MESSAGE;
        int codec = attr & ATTR_CODEC_MASK;
        if (codec == SL_COMPRESSION_NONE) {
            if (depth > 0 && magic == 1 && (outer_attr & ATTR_LOG_APPEND)) ts = outer_ts;
            int16_t ec = up_push(c, ts, key, value);
            if (ec) return ec;
            continue;
        }
        if (depth > 0) return SL_KAFKA_CORRUPT_MESSAGE; /* wrappers do not nest */
        if (codec > SL_COMPRESSION_LZ4) return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
        if (value.len < 0) return SL_KAFKA_CORRUPT_MESSAGE;
        uint8_t *inner;
        size_t inner_len;
        sl_err e = sl_decompress(codec, value.p, (size_t)value.len, c->a, c->inflate_left, &inner,
                                 &inner_len);
        if (e) return err_to_kafka(e);
        c->inflate_left -= inner_len;
        if (c->codec < 0) c->codec = codec;
        int16_t ec = up_parse(c, inner, inner_len, 1, magic, attr, ts);
        if (ec) return ec;
    }
    if (r.err) return SL_KAFKA_CORRUPT_MESSAGE;
    /* An empty top-level set or an empty wrapper carries nothing a batch could hold. */
    if (c->n == before) return SL_KAFKA_CORRUPT_MESSAGE;
    return SL_KAFKA_NONE;
}

int16_t sl_legacy_to_v2(const uint8_t *msgset, size_t len, sl_arena *a, int64_t now_ms,
                        int64_t max_bytes, uint8_t **out, size_t *out_len) {
    up_ctx c = {.a = a, .now_ms = now_ms, .inflate_left = SL_LEGACY_MAX_INFLATE, .codec = -1};
    int16_t ec = up_parse(&c, msgset, len, 0, 0, 0, 0);
    if (ec) return ec;
    if (c.n > INT32_MAX) return SL_KAFKA_MESSAGE_TOO_LARGE;

    int64_t base_ts = c.recs[0].ts, max_ts = c.recs[0].ts;
    for (size_t i = 1; i < c.n; i++)
        if (c.recs[i].ts > max_ts) max_ts = c.recs[i].ts;

    sl_rec_builder b;
    sl_rec_builder_init(&b, a, len + c.n * 8);
    for (size_t i = 0; i < c.n; i++) {
        const up_rec *rec = &c.recs[i];
        sl_rec_in r = {.timestamp_delta = (int64_t)((uint64_t)rec->ts - (uint64_t)base_ts),
                       .offset_delta = (int32_t)i,
                       .key = rec->key,
                       .value = rec->value};
        sl_err e = sl_rec_builder_add(&b, &r);
        if (e) return err_to_kafka(e);
    }
    int codec = c.codec < 0 ? SL_COMPRESSION_NONE : c.codec;
    uint8_t *batch;
    size_t total;
    sl_err e = sl_rec_builder_seal(&b, (int16_t)codec, base_ts, max_ts, &batch, &total);
    if (e) return err_to_kafka(e);
    if (max_bytes >= 0 && (int64_t)total > max_bytes) return SL_KAFKA_MESSAGE_TOO_LARGE;
    *out = batch;
    *out_len = total;
    return SL_KAFKA_NONE;
}

/* ------------------------------------------------------------------ down-conversion */

static void put_msg(sl_wr *w, int64_t offset, int8_t magic, int8_t attr, int64_t ts, sl_bytes key,
                    sl_bytes value) {
    size_t size = (size_t)(magic ? LEGACY_MIN_V1 : LEGACY_MIN_V0) +
                  (size_t)(key.len > 0 ? key.len : 0) + (size_t)(value.len > 0 ? value.len : 0);
    sl_wr_i64(w, offset);
    sl_wr_i32(w, (int32_t)size);
    size_t crc_at = w->len;
    sl_wr_u32(w, 0);
    sl_wr_i8(w, magic);
    sl_wr_i8(w, attr);
    if (magic) sl_wr_i64(w, ts);
    sl_wr_bytes(w, key);
    sl_wr_bytes(w, value);
    if (!w->err) sl_be32(w->buf + crc_at, crc32_ieee(w->buf + crc_at + 4, size - 4));
}

/* Converts one verified batch; appends to `w`. */
static int16_t down_batch(const uint8_t *p, const sl_batch_info *bi, int8_t magic,
                          int64_t min_offset, sl_arena *a, sl_wr *w) {
    int codec = bi->attributes & ATTR_CODEC_MASK;
    bool lat = (bi->attributes & ATTR_LOG_APPEND) != 0;
    sl_rec_iter it;
    sl_err e = sl_rec_iter_init(&it, p, bi->size, a, SL_LEGACY_MAX_INFLATE);
    if (e) return err_to_kafka(e);
    /* A compressed batch's messages go into an inner set that becomes one wrapper's value. */
    sl_wr inner;
    sl_wr *dst = w;
    if (codec != SL_COMPRESSION_NONE) {
        sl_wr_init(&inner, a, sl_rd_left(&it.r) + 64);
        dst = &inner;
    }
    int64_t first_abs = 0, last_abs = 0, wrapper_ts = -1;
    bool any = false;
    sl_record rec;
    /* Headers have no place in magic 0/1: dropped (the iterator has checked them). */
    while (sl_rec_iter_next(&it, &rec)) {
        int64_t abs = rec.offset;
        if (abs < min_offset) continue;
        int64_t ts = rec.timestamp;
        if (!any) first_abs = abs;
        any = true;
        last_abs = abs;
        if (ts > wrapper_ts) wrapper_ts = ts;
        int64_t off = abs;
        /* Magic 1 inner offsets are relative to the first; magic 0 ones are absolute. The
         * subtraction wraps rather than overflows (deltas are not checked in storage). */
        if (codec != SL_COMPRESSION_NONE && magic == 1)
            off = (int64_t)((uint64_t)abs - (uint64_t)first_abs);
        int8_t attr =
            (int8_t)(magic == 1 && lat && codec == SL_COMPRESSION_NONE ? ATTR_LOG_APPEND : 0);
        put_msg(dst, off, magic, attr, ts, rec.key, rec.value);
    }
    if (sl_rec_iter_err(&it)) return SL_KAFKA_CORRUPT_MESSAGE;
    if (dst->err) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    if (codec == SL_COMPRESSION_NONE || !any) return SL_KAFKA_NONE;
    uint8_t *z;
    size_t zlen;
    /* Kafka 0.8 wrote a wrong LZ4 frame-header checksum for magic 0; modern readers of magic 0
     * (sarama, librdkafka) verify or repair it, and sarama rejects the wrong one, so the
     * correct checksum is written. Produce still accepts both. */
    e = sl_compress(codec, inner.buf, inner.len, a, 0, &z, &zlen);
    if (e) return err_to_kafka(e);
    if (zlen > INT32_MAX - LEGACY_MIN_V1) return SL_KAFKA_MESSAGE_TOO_LARGE;
    if (lat) wrapper_ts = bi->max_timestamp;
    int8_t wattr = (int8_t)(codec | (magic == 1 && lat ? ATTR_LOG_APPEND : 0));
    put_msg(w, last_abs, magic, wattr, wrapper_ts, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zlen});
    return w->err ? SL_KAFKA_UNKNOWN_SERVER_ERROR : SL_KAFKA_NONE;
}

int16_t sl_v2_to_legacy_ex(const uint8_t *batches, size_t len, int8_t magic, int64_t min_offset,
                           int64_t max_bytes, sl_arena *a, uint8_t **out, size_t *out_len) {
    if (magic != 0 && magic != 1) return SL_KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT;
    sl_wr w;
    sl_wr_init(&w, a, len + 64);
    const uint8_t *p = batches;
    bool converted = false;
    while (len >= 12) {
        int32_t blen = (int32_t)sl_get_be32(p + SL_BATCH_LENGTH);
        if (blen < SL_BATCH_HEADER_SIZE - 12) return SL_KAFKA_CORRUPT_MESSAGE;
        if ((size_t)blen > len - 12) break; /* a partial trailing batch, as consumers ignore */
        sl_batch_info bi;
        if (!sl_batch_parse(p, len, &bi) || bi.magic != 2) return SL_KAFKA_CORRUPT_MESSAGE;
        if (!sl_batch_crc_ok(p, bi.size)) return SL_KAFKA_CORRUPT_MESSAGE;
        int codec = bi.attributes & ATTR_CODEC_MASK;
        if (codec > SL_COMPRESSION_ZSTD) return SL_KAFKA_CORRUPT_MESSAGE;
        if (codec == SL_COMPRESSION_ZSTD) {
            if (!converted) return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
            break; /* the client gets the error when it fetches from this batch */
        }
        if (!(bi.attributes & ATTR_CONTROL)) {
            size_t mark = w.len;
            int16_t ec = down_batch(p, &bi, magic, min_offset, a, &w);
            if (ec) return ec;
            if (converted && max_bytes >= 0 && (int64_t)w.len > max_bytes) {
                w.len = mark;
                break;
            }
            if (w.len > mark) converted = true;
        }
        p += bi.size;
        len -= bi.size;
    }
    if (w.err) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *out = w.buf;
    *out_len = w.len;
    return SL_KAFKA_NONE;
}

int16_t sl_v2_to_legacy(const uint8_t *batches, size_t len, int8_t magic, sl_arena *a,
                        uint8_t **out, size_t *out_len) {
    return sl_v2_to_legacy_ex(batches, len, magic, INT64_MIN, -1, a, out, out_len);
}

int16_t sl_legacy_produce_hook(int16_t produce_version, sl_bytes *records, sl_arena *a,
                               int64_t now_ms, int64_t max_bytes) {
    if (produce_version > 2 || records->len <= SL_BATCH_MAGIC || records->p[SL_BATCH_MAGIC] >= 2)
        return SL_KAFKA_NONE;
    uint8_t *out;
    size_t n;
    int16_t ec = sl_legacy_to_v2(records->p, (size_t)records->len, a, now_ms, max_bytes, &out, &n);
    if (ec) return ec;
    *records = (sl_bytes){out, (int32_t)n};
    return SL_KAFKA_NONE;
}

int16_t sl_legacy_fetch_hook(int16_t fetch_version, int64_t fetch_offset, int64_t max_bytes,
                             sl_arena *a, uint8_t **data, size_t *len) {
    if (fetch_version > 3 || *len == 0) return SL_KAFKA_NONE;
    int8_t magic = fetch_version <= 1 ? 0 : 1;
    return sl_v2_to_legacy_ex(*data, *len, magic, fetch_offset, max_bytes, a, data, len);
}
