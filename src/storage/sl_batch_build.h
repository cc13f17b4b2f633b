/* Kafka record batch v2 (magic 2): header parsing for the storage engine and the broker, and a
 * builder of valid batches for tests and benchmarks. */
#ifndef SL_STORAGE_BATCH_BUILD_H
#define SL_STORAGE_BATCH_BUILD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"

/* Byte positions in the v2 batch header. The CRC covers [SL_BATCH_ATTRIBUTES, end). */
enum {
    SL_BATCH_BASE_OFFSET = 0,
    SL_BATCH_LENGTH = 8,
    SL_BATCH_LEADER_EPOCH = 12,
    SL_BATCH_MAGIC = 16,
    SL_BATCH_CRC = 17,
    SL_BATCH_ATTRIBUTES = 21,
    SL_BATCH_LAST_OFFSET_DELTA = 23,
    SL_BATCH_BASE_TIMESTAMP = 27,
    SL_BATCH_MAX_TIMESTAMP = 35,
    SL_BATCH_PRODUCER_ID = 43,
    SL_BATCH_PRODUCER_EPOCH = 51,
    SL_BATCH_BASE_SEQUENCE = 53,
    SL_BATCH_RECORDS_COUNT = 57,
    SL_BATCH_V2_HDR_SIZE = 61,
};

typedef struct sl_batch_hdr {
    int64_t base_offset;
    int32_t batch_length; /* bytes after the length field; total size is 12 + batch_length */
    int32_t leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp, max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
} sl_batch_hdr;

/* Parses the fixed header of the batch occupying exactly `len` bytes at `p`. SL_ECORRUPT when
 * the length field disagrees with `len`, the magic is not 2, or counts are negative. Does not
 * check the CRC (sl_batch_crc_ok does). Borrows `p`. */
sl_err sl_batch_parse_header(const uint8_t *p, size_t len, sl_batch_hdr *h);
/* True when the stored CRC matches CRC-32C over the attributes field to the end. */
bool sl_batch_crc_ok(const uint8_t *p, size_t len);

/* Builds a valid uncompressed v2 batch of `count` records (count >= 1), base offset 0, record i
 * with timestamp base_ts + i, no key, no headers, and a value of `value_len` bytes copied from
 * `value` (or zero bytes when `value` is NULL). The batch is allocated in `a` and owned by it.
 * Returns NULL when out of memory. */
uint8_t *sl_batch_build(sl_arena *a, int64_t base_ts, int32_t count, const void *value,
                        size_t value_len, size_t *out_len);

#endif
