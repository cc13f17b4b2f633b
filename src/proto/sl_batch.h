/* Kafka record batches (magic 2) as they arrive in Produce: validated per batch, never per
 * record, and stored exactly as received (compressed or not). */
#ifndef SL_PROTO_BATCH_H
#define SL_PROTO_BATCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    SL_BATCH_HEADER_SIZE = 61,
};
enum {
    SL_COMPRESSION_NONE,
    SL_COMPRESSION_GZIP,
    SL_COMPRESSION_SNAPPY,
    SL_COMPRESSION_LZ4,
    SL_COMPRESSION_ZSTD
};

typedef struct sl_batch_info {
    size_t size; /* whole batch, 12 + batchLength */
    int64_t base_offset;
    int32_t leader_epoch;
    uint32_t crc;
    int32_t record_count;
    int32_t last_offset_delta;
    int64_t base_timestamp, max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int16_t attributes;
    int8_t magic;
} sl_batch_info;

/* Parses the header of the batch at p[0..len) without checking the CRC. Returns false when the
 * bytes cannot be a whole batch (too short, length field out of range). */
bool sl_batch_parse(const uint8_t *p, size_t len, sl_batch_info *out);

/* Parses the batch occupying exactly `len` bytes at `p` (storage frames, internal logs):
 * SL_ECORRUPT when the length field disagrees with `len`, the magic is not 2 or counts are
 * negative. Does not check the CRC (sl_batch_crc_ok does). Borrows `p`. */
sl_err sl_batch_parse_exact(const uint8_t *p, size_t len, sl_batch_info *out);
/* True when the stored CRC matches CRC-32C over the attributes field to the end. */
bool sl_batch_crc_ok(const uint8_t *p, size_t len);
/* Completes the header of a batch built in place (records already after the header): base
 * offset 0, leader epoch -1, no producer id/epoch/sequence, then the CRC. */
void sl_batch_seal(uint8_t *b, size_t total, int16_t attributes, int32_t count, int64_t base_ts,
                   int64_t max_ts);

/* Gives the batch b[0..total) (just sealed, e.g. by sl_rec_builder_seal, with the same records
 * count) every header field of `like` but its length, CRC and record count: base offset, leader
 * epoch, attributes (all bits), last offset delta, timestamps, producer id, epoch and base
 * sequence; then recomputes the CRC. Field protection rebuilds a producer's batch this way so
 * idempotence and transactions see the batch they sent. */
void sl_batch_reseal_like(uint8_t *b, size_t total, const sl_batch_info *like);

/* Validates the record set of one produce partition: a sequence of whole magic-2 batches.
 * Returns a Kafka error code (0 when every batch is acceptable): CORRUPT_MESSAGE for bad
 * framing or CRC, UNSUPPORTED_COMPRESSION_TYPE for zstd below Produce v7 or an unknown codec,
 * UNSUPPORTED_FOR_MESSAGE_FORMAT for magic < 2, MESSAGE_TOO_LARGE above max_batch_bytes,
 * INVALID_RECORD for empty or inconsistent batches. Reads only batch headers plus the CRC pass. */
int16_t sl_batch_validate_set(const uint8_t *p, size_t len, int16_t produce_version,
                              int64_t max_batch_bytes, int *nbatches);

/* sl_batch_validate_set without the CRC pass, for bytes that go on unread and unchanged to a
 * backend that checks each batch's CRC itself (the gateway's upstream): the headers are still
 * checked, since the gateway counts records and reports codecs from them. */
int16_t sl_batch_validate_set_shape(const uint8_t *p, size_t len, int16_t produce_version,
                                    int64_t max_batch_bytes, int *nbatches);

/* Fetch below v10 predates zstd: returns UNSUPPORTED_COMPRESSION_TYPE when the first stored
 * batch is zstd-compressed, else shortens *len to stop before the first zstd batch (the client
 * gets it as an error on its next fetch). Batch headers only. */
int16_t sl_batch_fetch_codec_check(const uint8_t *p, size_t *len, int16_t fetch_version);

#endif
