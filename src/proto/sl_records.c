/* The v2 record codec; see sl_records.h. Record layout (Kafka's DefaultRecord):
 *   length varint | attributes i8 | timestamp delta varlong | offset delta varint |
 *   key length varint | key | value length varint | value | header count varint |
 *   headers: key length varint | key | value length varint | value
 * Varints are zigzag; lengths of -1 are null. */
#include "sl_records.h"

#include <string.h>

#include "base/sl_crc32c.h"
#include "proto/sl_compress.h"

#define ATTR_CODEC_MASK 0x07
#define ATTR_LOG_APPEND 0x08

/* ------------------------------------------------------------------ iterator */

sl_err sl_rec_iter_init(sl_rec_iter *it, const uint8_t *batch, size_t len, sl_arena *a,
                        size_t max_inflate) {
    memset(it, 0, sizeof *it);
    it->err = SL_ECORRUPT;
    if (!sl_batch_parse(batch, len, &it->bi) || it->bi.size != len || it->bi.magic != 2)
        return it->err;
    const uint8_t *recs = batch + SL_BATCH_HEADER_SIZE;
    size_t recs_len = len - SL_BATCH_HEADER_SIZE;
    int codec = it->bi.attributes & ATTR_CODEC_MASK;
    if (codec != SL_COMPRESSION_NONE) {
        uint8_t *d;
        size_t dlen;
        sl_err e = sl_decompress(codec, recs, recs_len, a, max_inflate, &d, &dlen);
        if (e) return it->err = e;
        recs = d;
        recs_len = dlen;
    }
    /* A count is believed only if that many minimal records fit. */
    int32_t n = it->bi.record_count;
    if (n < 0 || (size_t)n > recs_len / SL_RECORD_MIN_SIZE) return it->err;
    it->r = sl_rd_init(recs, recs_len);
    it->left = n;
    it->err = SL_OK;
    return SL_OK;
}

bool sl_rec_iter_next(sl_rec_iter *it, sl_record *out) {
    if (it->err) return false;
    if (it->left == 0) {
        if (sl_rd_left(&it->r) != 0) it->err = SL_ECORRUPT;
        return false;
    }
    sl_rd *r = &it->r;
    int32_t rlen = sl_rd_varint(r);
    if (r->err || rlen < 0 || (size_t)rlen > sl_rd_left(r)) {
        it->err = SL_ECORRUPT;
        return false;
    }
    sl_rd rr = sl_rd_init(sl_rd_take(r, (size_t)rlen), (size_t)rlen);
    out->attributes = sl_rd_i8(&rr);
    out->timestamp_delta = sl_rd_varlong(&rr);
    out->offset_delta = sl_rd_varint(&rr);
    out->key = sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
    out->value = sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
    int32_t nh = sl_rd_varint(&rr);
    /* Each header takes at least two bytes (two length varints). */
    if (nh < 0 || (size_t)nh > sl_rd_left(&rr) / 2) sl_rd_fail(&rr);
    out->nheaders = rr.err ? 0 : nh;
    out->headers = rr;
    for (int32_t h = 0; h < nh && !rr.err; h++) {
        (void)sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
        (void)sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
    }
    if (rr.err || sl_rd_left(&rr) != 0) {
        it->err = SL_ECORRUPT;
        return false;
    }
    const sl_batch_info *bi = &it->bi;
    /* Stored batches are not checked record by record, so deltas may run backwards or wrap:
     * the sums wrap rather than overflow. */
    out->offset = (int64_t)((uint64_t)bi->base_offset + (uint64_t)(int64_t)out->offset_delta);
    out->timestamp = (bi->attributes & ATTR_LOG_APPEND)
                         ? bi->max_timestamp
                         : (int64_t)((uint64_t)bi->base_timestamp + (uint64_t)out->timestamp_delta);
    it->left--;
    return true;
}

bool sl_record_header_next(sl_record *rec, sl_bytes *key, sl_bytes *value) {
    if (rec->nheaders <= 0) return false;
    *key = sl_rd_bytes_n(&rec->headers, sl_rd_varint(&rec->headers));
    *value = sl_rd_bytes_n(&rec->headers, sl_rd_varint(&rec->headers));
    rec->nheaders--;
    return !rec->headers.err;
}

/* ------------------------------------------------------------------ builder */

static uint64_t zz32(int32_t v) { return (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)); }
static uint64_t zz64(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static uint64_t varbytes_size(sl_bytes b) {
    return b.len < 0 ? 1 : sl_uvarint_size(zz32(b.len)) + (uint64_t)b.len;
}

static void wr_varbytes(sl_wr *w, sl_bytes b) {
    sl_wr_varint(w, b.len < 0 ? -1 : b.len);
    if (b.len > 0) sl_wr_raw(w, b.p, (size_t)b.len);
}

void sl_rec_builder_init(sl_rec_builder *b, sl_arena *a, size_t hint) {
    memset(b, 0, sizeof *b);
    sl_wr_init(&b->w, a, SL_BATCH_HEADER_SIZE + hint);
    /* The header is filled in by seal; reserve it now so uncompressed batches seal in place. */
    if (sl_wr_reserve(&b->w, SL_BATCH_HEADER_SIZE)) {
        memset(b->w.buf, 0, SL_BATCH_HEADER_SIZE);
        b->w.len = SL_BATCH_HEADER_SIZE;
    }
}

sl_err sl_rec_builder_add(sl_rec_builder *b, const sl_rec_in *r) {
    if (b->w.err) return b->w.err;
    if (b->count == INT32_MAX || r->nheaders < 0) return SL_ETOOLARGE;
    /* The body's length goes first, so it is computed before anything is written. */
    uint64_t body = 1 + sl_uvarint_size(zz64(r->timestamp_delta)) +
                    sl_uvarint_size(zz32(r->offset_delta)) + varbytes_size(r->key) +
                    varbytes_size(r->value) + sl_uvarint_size(zz32(r->nheaders));
    for (int32_t h = 0; h < r->nheaders; h++)
        body += varbytes_size(r->headers[h].key) + varbytes_size(r->headers[h].value);
    if (body > INT32_MAX) return SL_ETOOLARGE;
    size_t mark = b->w.len;
    sl_wr *w = &b->w;
    sl_wr_varint(w, (int32_t)body);
    sl_wr_i8(w, r->attributes);
    sl_wr_varlong(w, r->timestamp_delta);
    sl_wr_varint(w, r->offset_delta);
    wr_varbytes(w, r->key);
    wr_varbytes(w, r->value);
    sl_wr_varint(w, r->nheaders);
    for (int32_t h = 0; h < r->nheaders; h++) {
        wr_varbytes(w, r->headers[h].key);
        wr_varbytes(w, r->headers[h].value);
    }
    if (w->err) {
        /* A failed growth leaves the buffer as it was: drop the partial record, keep going. */
        sl_err e = w->err;
        w->err = SL_OK;
        w->len = mark;
        return e;
    }
    b->count++;
    b->last_offset_delta = r->offset_delta;
    return SL_OK;
}

/* The records behind a header, compressed with `codec` when it is not none (then behind a new
 * header in the arena), for the seal functions to fill the header of. */
static sl_err seal_body(sl_rec_builder *b, int codec, uint8_t **batch, size_t *total) {
    if (b->w.err) return b->w.err;
    if (b->count < 1) return SL_EINVAL;
    *batch = b->w.buf;
    *total = b->w.len;
    if (codec != SL_COMPRESSION_NONE) {
        uint8_t *z;
        size_t zlen;
        sl_err e = sl_compress(codec, b->w.buf + SL_BATCH_HEADER_SIZE,
                               b->w.len - SL_BATCH_HEADER_SIZE, b->w.a, 0, &z, &zlen);
        if (e) return e;
        if (zlen > (size_t)INT32_MAX) return SL_ETOOLARGE;
        *total = SL_BATCH_HEADER_SIZE + zlen;
        *batch = sl_arena_alloc(b->w.a, *total);
        if (!*batch) return SL_ENOMEM;
        memcpy(*batch + SL_BATCH_HEADER_SIZE, z, zlen);
    }
    if (*total - 12 > INT32_MAX) return SL_ETOOLARGE;
    return SL_OK;
}

sl_err sl_rec_builder_seal_like(sl_rec_builder *b, const sl_batch_info *like, uint8_t **out,
                                size_t *out_len) {
    uint8_t *batch;
    size_t total;
    sl_err e = seal_body(b, like->attributes & ATTR_CODEC_MASK, &batch, &total);
    if (e) return e;
    sl_be32(batch + SL_BATCH_LENGTH, (uint32_t)(total - 12));
    batch[SL_BATCH_MAGIC] = 2;
    sl_be32(batch + SL_BATCH_RECORDS_COUNT, (uint32_t)b->count);
    sl_batch_reseal_like(batch, total, like); /* every other field, then the one CRC */
    b->w.err = SL_EINVAL;                     /* spent */
    *out = batch;
    *out_len = total;
    return SL_OK;
}

sl_err sl_rec_builder_seal(sl_rec_builder *b, int16_t attributes, int64_t base_ts, int64_t max_ts,
                           uint8_t **out, size_t *out_len) {
    uint8_t *batch;
    size_t total;
    sl_err e = seal_body(b, attributes & ATTR_CODEC_MASK, &batch, &total);
    if (e) return e;
    sl_batch_seal(batch, total, attributes, b->count, base_ts, max_ts);
    if (b->last_offset_delta != b->count - 1) {
        /* Offset gaps (a compacted batch): the header says where the last record is. */
        sl_be32(batch + SL_BATCH_LAST_OFFSET_DELTA, (uint32_t)b->last_offset_delta);
        sl_be32(batch + SL_BATCH_CRC,
                sl_crc32c(0, batch + SL_BATCH_ATTRIBUTES, total - SL_BATCH_ATTRIBUTES));
    }
    b->w.err = SL_EINVAL; /* spent */
    *out = batch;
    *out_len = total;
    return SL_OK;
}

/* ------------------------------------------------------------------ header walk */

/* Legacy message: offset i64 | size i32 | crc u32 | magic i8 | attributes i8 | [timestamp i64
 * (magic 1)] | key length i32 | key | value length i32 | value. */
#define LEGACY_LOG_OVERHEAD 12 /* offset + size */
#define LEGACY_MAGIC_AT     16
#define LEGACY_ATTR_AT      17
#define LEGACY_MIN_SIZE_V0  14 /* crc + magic + attributes + key length + value length */
#define LEGACY_MIN_SIZE_V1  22 /* and the timestamp */

void sl_batch_walk_set(const uint8_t *p, size_t len, sl_batch_walk *out) {
    memset(out, 0, sizeof *out);
    out->first_offset = out->last_offset = -1;
    while (len) {
        /* Offset, size and the magic sit at the same places in both formats. */
        if (len <= LEGACY_MAGIC_AT) break;
        int8_t magic = (int8_t)p[LEGACY_MAGIC_AT];
        int64_t first, last, records;
        size_t size;
        if (magic == 2) {
            sl_batch_info bi;
            if (!sl_batch_parse(p, len, &bi) || bi.last_offset_delta < 0 || bi.record_count < 0)
                break;
            size = bi.size;
            first = bi.base_offset;
            /* Wrapping arithmetic on hostile offsets is not undefined: done unsigned. */
            last = (int64_t)((uint64_t)bi.base_offset + (uint64_t)bi.last_offset_delta);
            records = bi.record_count;
        } else if (magic == 0 || magic == 1) {
            int32_t msize = (int32_t)sl_get_be32(p + 8);
            if (msize < (magic ? LEGACY_MIN_SIZE_V1 : LEGACY_MIN_SIZE_V0) ||
                (size_t)msize > len - LEGACY_LOG_OVERHEAD)
                break;
            size = LEGACY_LOG_OVERHEAD + (size_t)msize;
            first = last = (int64_t)sl_get_be64(p);
            records = 1;
            if (p[LEGACY_ATTR_AT] & ATTR_CODEC_MASK) out->inexact = true;
        } else {
            break;
        }
        if (out->batches == 0) out->first_offset = first;
        out->last_offset = last;
        out->records += records;
        out->bytes += (int64_t)size;
        out->batches++;
        p += size;
        len -= size;
    }
    out->partial = len != 0;
}
