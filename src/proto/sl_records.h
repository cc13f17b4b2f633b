/* The one v2 record codec: an iterator over the records of a magic-2 batch and a builder that
 * appends records and seals them into a batch (sl_batch_seal). Legacy conversion, the
 * group-offsets log, the test batch builder and the unit tests all read and write records
 * through it, so the record layout (length, attributes, timestamp delta, offset delta, key,
 * value, headers; zigzag varints) is written down once.
 *
 * Only code that needs the records uses this: per-batch paths (produce validation, fetch) look
 * at batch headers only (sl_batch.h) and never start an iterator. */
#ifndef SL_PROTO_RECORDS_H
#define SL_PROTO_RECORDS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_err.h"
#include "proto/sl_batch.h"

/* The smallest record on the wire: length varint, attributes, timestamp delta, offset delta,
 * key length, value length, header count, one byte each. A batch's record count is believed
 * only if that many such records fit in its (decompressed) bytes. */
#define SL_RECORD_MIN_SIZE 7

/* One record, as views into the batch (or into its decompressed copy in the iterator's arena).
 * Absolute offset and timestamp are derived from the batch header: offset = base offset +
 * offset delta, timestamp = base timestamp + delta (wrapping: stored batches are not checked
 * record by record), or the batch max timestamp for LogAppendTime batches. */
typedef struct sl_record {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    int64_t offset, timestamp;
    sl_bytes key, value; /* len -1: null */
    int32_t nheaders;
    sl_rd headers; /* positioned at the first header; walk with sl_record_header_next */
} sl_record;

/* Iterator over one batch's records. Bounded reader with a sticky error: after the first
 * failure next() returns false and sl_rec_iter_err() says why. */
typedef struct sl_rec_iter {
    sl_batch_info bi;
    sl_rd r;
    int32_t left; /* records not yet returned */
    sl_err err;
} sl_rec_iter;

/* Starts iterating the magic-2 batch at batch[0..len) (len = the batch's size; the CRC is the
 * caller's to check, with sl_batch_crc_ok, where it matters). Compressed records are
 * decompressed into `a`, at most `max_inflate` bytes. Errors (also kept in it->err): SL_ECORRUPT
 * (not one whole magic-2 batch, or a record count its bytes cannot hold), and sl_decompress's
 * (SL_ETOOLARGE, SL_ECOMPRESSION, SL_ENOMEM, SL_ECORRUPT). Borrows `batch`; records point into it
 * or into `a`. */
sl_err sl_rec_iter_init(sl_rec_iter *it, const uint8_t *batch, size_t len, sl_arena *a,
                        size_t max_inflate);
/* The next record into *out; false at the end or on error. Each record is checked whole
 * (lengths, header count and every header, no bytes left over) before it is returned; after
 * the last counted record, bytes left over are an error. */
bool sl_rec_iter_next(sl_rec_iter *it, sl_record *out);
/* SL_OK when the iteration ended cleanly (every counted record read, nothing left over). */
static inline sl_err sl_rec_iter_err(const sl_rec_iter *it) {
    if (it->err) return it->err;
    return it->left ? SL_ECORRUPT : SL_OK;
}
/* The next header of a record (already validated by the iterator); false after the last. */
bool sl_record_header_next(sl_record *rec, sl_bytes *key, sl_bytes *value);

/* A record header to append. */
typedef struct sl_rec_header {
    sl_bytes key, value;
} sl_rec_header;

/* A record to append. */
typedef struct sl_rec_in {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    sl_bytes key, value; /* len -1: null */
    const sl_rec_header *headers;
    int32_t nheaders;
} sl_rec_in;

/* Builds one batch in an arena: the header is reserved first, records are appended after it,
 * and sealing fills the header in place (uncompressed) or compresses the records behind a new
 * header. */
typedef struct sl_rec_builder {
    sl_wr w; /* header space + records */
    int32_t count;
    int32_t last_offset_delta;
} sl_rec_builder;

/* Starts an empty batch in `a` with room for about `hint` bytes of records. Allocation failure
 * surfaces from the first sl_rec_builder_add or sl_rec_builder_seal. */
void sl_rec_builder_init(sl_rec_builder *b, sl_arena *a, size_t hint);
/* Appends a record (copied). All or nothing: on error the batch is as it was. SL_ETOOLARGE
 * when the record or the count would not fit the format, SL_ENOMEM. */
sl_err sl_rec_builder_add(sl_rec_builder *b, const sl_rec_in *r);
/* Seals the batch (at least one record): compresses the records with the codec in the low
 * bits of `attributes` (sl_compress, Kafka's framings), then writes the header with
 * sl_batch_seal: base offset 0, leader epoch -1, no producer, last offset delta = the last
 * record's offset delta. *out (in the builder's arena) is the batch; the builder is spent.
 * Errors: SL_EINVAL (no records), SL_ETOOLARGE (batch beyond 2 GiB), sl_compress's. */
sl_err sl_rec_builder_seal(sl_rec_builder *b, int16_t attributes, int64_t base_ts, int64_t max_ts,
                           uint8_t **out, size_t *out_len);
/* Seals the batch like sl_rec_builder_seal, but with `like`'s codec (attributes & 7) and every
 * header field of `like` but the length, CRC and record count (sl_batch_reseal_like): a rebuilt
 * producer batch (field protection) in one CRC pass. Errors as sl_rec_builder_seal's. */
sl_err sl_rec_builder_seal_like(sl_rec_builder *b, const sl_batch_info *like, uint8_t **out,
                                size_t *out_len);
/* Records bytes appended so far (uncompressed), for callers that cap batch sizes. */
static inline size_t sl_rec_builder_bytes(const sl_rec_builder *b) {
    return b->w.len > SL_BATCH_HEADER_SIZE ? b->w.len - SL_BATCH_HEADER_SIZE : 0;
}

/* ---- headers only: what a record set holds, for audit and metrics ---- */

/* What sl_batch_walk found in a record set. */
typedef struct sl_batch_walk {
    int64_t first_offset, last_offset; /* of the whole batches walked; -1 when none */
    int64_t records;                   /* magic 2: the header counts; legacy: one per message */
    int64_t bytes;                     /* bytes of the whole batches walked */
    int32_t batches;
    bool partial; /* bytes left at the end that are not a whole batch (a fetch's cut-off last
                   * batch, or garbage: the walk stops there) */
    bool inexact; /* a legacy compressed wrapper was counted as one record (its inner count is
                   * only in its compressed payload) */
} sl_batch_walk;

/* Walks the batches at p[0..len): magic-2 batches and legacy (magic 0/1) messages, mixed, by
 * their headers only (no CRC check, no decompression, nothing allocated). Never trusts a length:
 * it stops at the first entry that is not whole, has an unknown magic or an impossible size, and
 * says so in out->partial. A v2 batch spans base offset .. base offset + last offset delta; a
 * legacy message has its own offset (a compressed wrapper carries its last inner offset). */
void sl_batch_walk_set(const uint8_t *p, size_t len, sl_batch_walk *out);

#endif
