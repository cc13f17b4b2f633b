#include "sl_batch.h"

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_err.h"

bool sl_batch_parse(const uint8_t *p, size_t len, sl_batch_info *out) {
    if (len < SL_BATCH_HEADER_SIZE) return false;
    int32_t blen = (int32_t)sl_get_be32(p + SL_BATCH_LENGTH);
    if (blen < SL_BATCH_HEADER_SIZE - 12 || (size_t)blen > len - 12) return false;
    out->size = 12 + (size_t)blen;
    out->base_offset = (int64_t)sl_get_be64(p + SL_BATCH_BASE_OFFSET);
    out->leader_epoch = (int32_t)sl_get_be32(p + SL_BATCH_LEADER_EPOCH);
    out->crc = sl_get_be32(p + SL_BATCH_CRC);
    out->magic = (int8_t)p[SL_BATCH_MAGIC];
    out->attributes = (int16_t)sl_get_be16(p + SL_BATCH_ATTRIBUTES);
    out->last_offset_delta = (int32_t)sl_get_be32(p + SL_BATCH_LAST_OFFSET_DELTA);
    out->base_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_BASE_TIMESTAMP);
    out->max_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_MAX_TIMESTAMP);
    out->producer_id = (int64_t)sl_get_be64(p + SL_BATCH_PRODUCER_ID);
    out->producer_epoch = (int16_t)sl_get_be16(p + SL_BATCH_PRODUCER_EPOCH);
    out->base_sequence = (int32_t)sl_get_be32(p + SL_BATCH_BASE_SEQUENCE);
    out->record_count = (int32_t)sl_get_be32(p + SL_BATCH_RECORDS_COUNT);
    return true;
}

sl_err sl_batch_parse_exact(const uint8_t *p, size_t len, sl_batch_info *out) {
    if (!sl_batch_parse(p, len, out) || out->size != len || out->magic != 2 ||
        out->last_offset_delta < 0 || out->record_count < 0)
        return SL_ECORRUPT;
    return SL_OK;
}

bool sl_batch_crc_ok(const uint8_t *p, size_t len) {
    if (len < SL_BATCH_HEADER_SIZE) return false;
    return sl_crc32c(0, p + SL_BATCH_ATTRIBUTES, len - SL_BATCH_ATTRIBUTES) ==
           sl_get_be32(p + SL_BATCH_CRC);
}

void sl_batch_seal(uint8_t *b, size_t total, int16_t attributes, int32_t count, int64_t base_ts,
                   int64_t max_ts) {
    sl_be64(b + SL_BATCH_BASE_OFFSET, 0);
    sl_be32(b + SL_BATCH_LENGTH, (uint32_t)(total - 12));
    sl_be32(b + SL_BATCH_LEADER_EPOCH, (uint32_t)-1);
    b[SL_BATCH_MAGIC] = 2;
    sl_be16(b + SL_BATCH_ATTRIBUTES, (uint16_t)attributes);
    sl_be32(b + SL_BATCH_LAST_OFFSET_DELTA, (uint32_t)(count - 1));
    sl_be64(b + SL_BATCH_BASE_TIMESTAMP, (uint64_t)base_ts);
    sl_be64(b + SL_BATCH_MAX_TIMESTAMP, (uint64_t)max_ts);
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)-1);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, (uint16_t)-1);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, (uint32_t)-1);
    sl_be32(b + SL_BATCH_RECORDS_COUNT, (uint32_t)count);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, total - SL_BATCH_ATTRIBUTES));
}

void sl_batch_reseal_like(uint8_t *b, size_t total, const sl_batch_info *like) {
    sl_be64(b + SL_BATCH_BASE_OFFSET, (uint64_t)like->base_offset);
    sl_be32(b + SL_BATCH_LEADER_EPOCH, (uint32_t)like->leader_epoch);
    sl_be16(b + SL_BATCH_ATTRIBUTES, (uint16_t)like->attributes);
    sl_be32(b + SL_BATCH_LAST_OFFSET_DELTA, (uint32_t)like->last_offset_delta);
    sl_be64(b + SL_BATCH_BASE_TIMESTAMP, (uint64_t)like->base_timestamp);
    sl_be64(b + SL_BATCH_MAX_TIMESTAMP, (uint64_t)like->max_timestamp);
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)like->producer_id);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, (uint16_t)like->producer_epoch);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, (uint32_t)like->base_sequence);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, total - SL_BATCH_ATTRIBUTES));
}

static int16_t validate_set(const uint8_t *p, size_t len, int16_t produce_version,
                            int64_t max_batch_bytes, int *nbatches, bool crc) {
    int n = 0;
    if (len == 0) return SL_KAFKA_INVALID_RECORD;
    while (len > 0) {
        /* Old message formats carry the magic byte at the same offset (16) of their header. */
        if (len > SL_BATCH_MAGIC && p[SL_BATCH_MAGIC] < 2)
            return SL_KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT;
        sl_batch_info bi;
        if (!sl_batch_parse(p, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        if (bi.magic != 2) return SL_KAFKA_CORRUPT_MESSAGE;
        if ((int64_t)bi.size > max_batch_bytes) return SL_KAFKA_MESSAGE_TOO_LARGE;
        if (crc && !sl_batch_crc_ok(p, bi.size)) return SL_KAFKA_CORRUPT_MESSAGE;
        int codec = bi.attributes & 7;
        if (codec > SL_COMPRESSION_ZSTD) return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
        if (codec == SL_COMPRESSION_ZSTD && produce_version < 7)
            return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
        /* Control batches are written by transaction coordinators, never by producers. */
        if (bi.attributes & 0x20) return SL_KAFKA_INVALID_RECORD;
        if (bi.record_count <= 0 || bi.last_offset_delta != bi.record_count - 1)
            return SL_KAFKA_INVALID_RECORD;
        p += bi.size;
        len -= bi.size;
        n++;
    }
    if (nbatches) *nbatches = n;
    return SL_KAFKA_NONE;
}

int16_t sl_batch_validate_set(const uint8_t *p, size_t len, int16_t produce_version,
                              int64_t max_batch_bytes, int *nbatches) {
    return validate_set(p, len, produce_version, max_batch_bytes, nbatches, true);
}

int16_t sl_batch_validate_set_shape(const uint8_t *p, size_t len, int16_t produce_version,
                                    int64_t max_batch_bytes, int *nbatches) {
    return validate_set(p, len, produce_version, max_batch_bytes, nbatches, false);
}

int16_t sl_batch_fetch_codec_check(const uint8_t *p, size_t *len, int16_t fetch_version) {
    if (fetch_version >= 10) return SL_KAFKA_NONE;
    size_t off = 0;
    sl_batch_info bi;
    while (off < *len && sl_batch_parse(p + off, *len - off, &bi)) {
        if ((bi.attributes & 7) == SL_COMPRESSION_ZSTD) {
            if (off == 0) return SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE;
            *len = off;
            break;
        }
        off += bi.size;
    }
    return SL_KAFKA_NONE;
}
