/* Kafka's pre-0.11 message formats (magic 0 and 1 "message sets") for old clients: Produce v0-2
 * sets are up-converted to one magic-2 batch before validation, so storage only ever holds magic
 * 2; Fetch v0-3 responses are down-converted from the stored batches. See docs/legacy-formats.md
 * for the decisions (timestamps, codecs, limits). */
#ifndef SL_PROTO_LEGACY_H
#define SL_PROTO_LEGACY_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"

/* Bytes of decompressed data one conversion may produce in total (legacy_to_v2) or per stored
 * batch (v2_to_legacy); beyond it the input is treated as a decompression bomb. */
#define SL_LEGACY_MAX_INFLATE ((size_t)64 << 20)

/* Converts the magic 0/1 message set msgset[0..len) into ONE magic-2 batch allocated in `a`.
 * Every legacy CRC32 is verified; compressed wrappers are opened (one level; their inner
 * messages must share the wrapper's magic) and the batch is re-compressed with the codec of the
 * first compressed wrapper, or left uncompressed if none was. Records get offset deltas
 * 0..n-1, no headers, and timestamps: magic 1 keeps the client's (the wrapper's when it says
 * LogAppendTime), magic 0 gets `now_ms` as CreateTime. The batch has base offset 0, producer id
 * -1 and leader epoch -1, as a non-idempotent producer would send it.
 * Returns a Kafka error code: 0, CORRUPT_MESSAGE (framing, CRC, nesting, magic >= 2),
 * UNSUPPORTED_COMPRESSION_TYPE (codec > lz4), MESSAGE_TOO_LARGE (batch > max_bytes or more
 * than SL_LEGACY_MAX_INFLATE decompressed), UNKNOWN_SERVER_ERROR (out of memory). */
int16_t sl_legacy_to_v2(const uint8_t *msgset, size_t len, sl_arena *a, int64_t now_ms,
                        int64_t max_bytes, uint8_t **out, size_t *out_len);

/* Down-converts concatenated stored magic-2 batches (as sl_log_read returns them) to a magic 0
 * or 1 message set with absolute offsets, allocated in `a`. A compressed batch becomes one
 * wrapper message compressed with the same codec (LZ4 with the pre-0.10 header checksum for
 * magic 0); headers are dropped; control batches are skipped; a trailing partial batch is
 * ignored. Returns a Kafka error code: 0, CORRUPT_MESSAGE, UNSUPPORTED_COMPRESSION_TYPE (zstd
 * cannot be expressed below magic 2; returned only when it is the first batch, otherwise the
 * output stops before it), MESSAGE_TOO_LARGE (decompression bound), UNKNOWN_SERVER_ERROR. */
int16_t sl_v2_to_legacy(const uint8_t *batches, size_t len, int8_t magic, sl_arena *a,
                        uint8_t **out, size_t *out_len);
/* As sl_v2_to_legacy, but drops records below `min_offset` and stops at the batch boundary
 * before the output would exceed `max_bytes` (the first converted batch is always whole, so a
 * consumer can always make progress). *out is only written on success. */
int16_t sl_v2_to_legacy_ex(const uint8_t *batches, size_t len, int8_t magic, int64_t min_offset,
                           int64_t max_bytes, sl_arena *a, uint8_t **out, size_t *out_len);

/* Broker integration, one call per partition in each handler. */

/* Produce: when `produce_version` <= 2 and the records hold a magic 0/1 set, replaces *records
 * with the up-converted batch (in `a`). Otherwise leaves them for sl_batch_validate_set (which
 * rejects magic < 2 in v3+ as Kafka does). Returns a Kafka error code. */
int16_t sl_legacy_produce_hook(int16_t produce_version, sl_bytes *records, sl_arena *a,
                               int64_t now_ms, int64_t max_bytes);
/* Fetch: for `fetch_version` <= 3, replaces *data and *len (stored batches from sl_log_read) with
 * a magic 0 (v0-1) or magic 1 (v2-3) message set, starting at fetch_offset and within
 * max_bytes as sl_v2_to_legacy_ex. No-op for v4+. Returns a Kafka error code. */
int16_t sl_legacy_fetch_hook(int16_t fetch_version, int64_t fetch_offset, int64_t max_bytes,
                             sl_arena *a, uint8_t **data, size_t *len);

#endif
