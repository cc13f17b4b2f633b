#include "sl_batch.h"

#include "base/sl_buf.h"
#include "base/sl_err.h"
#include "storage/sl_crc32c.h"

bool sl_batch_parse(const uint8_t *p, size_t len, sl_batch_info *out) {
    if (len < SL_BATCH_HEADER_SIZE) return false;
    int32_t blen = (int32_t)sl_get_be32(p + SL_BATCH_OFF_LENGTH);
    if (blen < SL_BATCH_HEADER_SIZE - 12 || (size_t)blen > len - 12) return false;
    out->size = 12 + (size_t)blen;
    out->magic = (int8_t)p[SL_BATCH_OFF_MAGIC];
    out->attributes = (int16_t)sl_get_be16(p + SL_BATCH_OFF_ATTRIBUTES);
    out->last_offset_delta = (int32_t)sl_get_be32(p + SL_BATCH_OFF_LAST_OFFSET_DELTA);
    out->base_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_OFF_BASE_TIMESTAMP);
    out->max_timestamp = (int64_t)sl_get_be64(p + SL_BATCH_OFF_MAX_TIMESTAMP);
    out->producer_id = (int64_t)sl_get_be64(p + SL_BATCH_OFF_PRODUCER_ID);
    out->producer_epoch = (int16_t)sl_get_be16(p + SL_BATCH_OFF_PRODUCER_EPOCH);
    out->base_sequence = (int32_t)sl_get_be32(p + SL_BATCH_OFF_BASE_SEQUENCE);
    out->record_count = (int32_t)sl_get_be32(p + SL_BATCH_OFF_RECORD_COUNT);
    return true;
}

int16_t sl_batch_validate_set(const uint8_t *p, size_t len, int16_t produce_version,
                              int64_t max_batch_bytes, int *nbatches) {
    int n = 0;
    if (len == 0) return SL_KAFKA_INVALID_RECORD;
    while (len > 0) {
        /* Old message formats carry the magic byte at the same offset (16) of their header. */
        if (len > SL_BATCH_OFF_MAGIC && p[SL_BATCH_OFF_MAGIC] < 2)
            return SL_KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT;
        sl_batch_info bi;
        if (!sl_batch_parse(p, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        if (bi.magic != 2) return SL_KAFKA_CORRUPT_MESSAGE;
        if ((int64_t)bi.size > max_batch_bytes) return SL_KAFKA_MESSAGE_TOO_LARGE;
        uint32_t crc = sl_get_be32(p + SL_BATCH_OFF_CRC);
        if (sl_crc32c(0, p + SL_BATCH_OFF_ATTRIBUTES, bi.size - SL_BATCH_OFF_ATTRIBUTES) != crc)
            return SL_KAFKA_CORRUPT_MESSAGE;
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
