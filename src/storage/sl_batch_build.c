#include "sl_batch_build.h"

#include <string.h>

#include "base/sl_buf.h"
#include "sl_crc32c.h"

sl_err sl_batch_parse_header(const uint8_t *p, size_t len, sl_batch_hdr *h) {
    if (len < SL_BATCH_V2_HDR_SIZE) return SL_ECORRUPT;
    h->base_offset = (int64_t)sl_get_be64(p + SL_BATCH_BASE_OFFSET);
    h->batch_length = (int32_t)sl_get_be32(p + SL_BATCH_LENGTH);
    h->leader_epoch = (int32_t)sl_get_be32(p + SL_BATCH_LEADER_EPOCH);
    h->magic = (int8_t)p[SL_BATCH_MAGIC];
    h->crc = sl_get_be32(p + SL_BATCH_CRC);
    h->attributes = (int16_t)sl_get_be16(p + SL_BATCH_ATTRIBUTES);
    h->last_offset_delta = (int32_t)sl_get_be32(p + SL_BATCH_LAST_OFFSET_DELTA);
    h->base_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_BASE_TIMESTAMP);
    h->max_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_MAX_TIMESTAMP);
    h->producer_id = (int64_t)sl_get_be64(p + SL_BATCH_PRODUCER_ID);
    h->producer_epoch = (int16_t)sl_get_be16(p + SL_BATCH_PRODUCER_EPOCH);
    h->base_sequence = (int32_t)sl_get_be32(p + SL_BATCH_BASE_SEQUENCE);
    h->records_count = (int32_t)sl_get_be32(p + SL_BATCH_RECORDS_COUNT);
    if (h->batch_length < SL_BATCH_V2_HDR_SIZE - 12 || (size_t)h->batch_length + 12 != len)
        return SL_ECORRUPT;
    if (h->magic != 2 || h->last_offset_delta < 0 || h->records_count < 0) return SL_ECORRUPT;
    return SL_OK;
}

bool sl_batch_crc_ok(const uint8_t *p, size_t len) {
    if (len < SL_BATCH_V2_HDR_SIZE) return false;
    return sl_crc32c(0, p + SL_BATCH_ATTRIBUTES, len - SL_BATCH_ATTRIBUTES) ==
           sl_get_be32(p + SL_BATCH_CRC);
}

uint8_t *sl_batch_build(sl_arena *a, int64_t base_ts, int32_t count, const void *value,
                        size_t value_len, size_t *out_len) {
    if (count < 1 || value_len > INT32_MAX / 2) return NULL;
    sl_wr w;
    sl_wr_init(&w, a, SL_BATCH_V2_HDR_SIZE + (size_t)count * (value_len + 16));
    uint8_t *hdr = sl_wr_reserve(&w, SL_BATCH_V2_HDR_SIZE);
    if (!hdr) return NULL;
    memset(hdr, 0, SL_BATCH_V2_HDR_SIZE);
    w.len = SL_BATCH_V2_HDR_SIZE;
    for (int32_t i = 0; i < count; i++) {
        /* Body first into a scratch spot so its length prefix can be written before it. */
        size_t body = 1 + sl_uvarint_size((uint64_t)i << 1) + sl_uvarint_size((uint64_t)i << 1) +
                      1 + sl_uvarint_size((uint64_t)value_len << 1) + value_len + 1;
        sl_wr_varint(&w, (int32_t)body);
        sl_wr_i8(&w, 0);      /* attributes */
        sl_wr_varlong(&w, i); /* timestamp delta */
        sl_wr_varint(&w, i);  /* offset delta */
        sl_wr_varint(&w, -1); /* null key */
        sl_wr_varint(&w, (int32_t)value_len);
        uint8_t *v = sl_wr_reserve(&w, value_len);
        if (!v) return NULL;
        if (value)
            memcpy(v, value, value_len);
        else
            memset(v, 0, value_len);
        w.len += value_len;
        sl_wr_varint(&w, 0); /* no headers */
    }
    if (w.err) return NULL;
    uint8_t *b = w.buf;
    sl_be64(b + SL_BATCH_BASE_OFFSET, 0);
    sl_be32(b + SL_BATCH_LENGTH, (uint32_t)(w.len - 12));
    sl_be32(b + SL_BATCH_LEADER_EPOCH, 0);
    b[SL_BATCH_MAGIC] = 2;
    sl_be16(b + SL_BATCH_ATTRIBUTES, 0);
    sl_be32(b + SL_BATCH_LAST_OFFSET_DELTA, (uint32_t)(count - 1));
    sl_be64(b + SL_BATCH_BASE_TIMESTAMP, (uint64_t)base_ts);
    sl_be64(b + SL_BATCH_MAX_TIMESTAMP, (uint64_t)(base_ts + count - 1));
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)-1);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, (uint16_t)-1);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, (uint32_t)-1);
    sl_be32(b + SL_BATCH_RECORDS_COUNT, (uint32_t)count);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, w.len - SL_BATCH_ATTRIBUTES));
    *out_len = w.len;
    return b;
}
