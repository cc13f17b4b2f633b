/* Kafka's compression codecs (gzip, snappy, lz4, zstd) with the framings Kafka clients actually
 * put on the wire, and decompression that is always bounded by the caller's limit so that a small
 * hostile payload cannot make the broker allocate without end. Codec numbers are the
 * SL_COMPRESSION_* values of proto/sl_batch.h (the low three attribute bits). */
#ifndef SL_PROTO_COMPRESS_H
#define SL_PROTO_COMPRESS_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"

/* sl_compress flags. Kafka before 0.10 computed the LZ4 frame header checksum over the magic
 * number too; magic-0 readers expect that broken byte, so magic-0 writers must produce it. */
#define SL_COMPRESS_LZ4_BROKEN_HC 1u

/* Decompresses `len` bytes at `in` compressed with `codec` into a buffer owned by `a`.
 * gzip accepts gzip or zlib wrappers and concatenated gzip members; snappy accepts the xerial
 * framing ("\x82SNAPPY\0" + length-prefixed blocks) or one raw snappy block; lz4 is the LZ4 frame
 * format with either the correct or Kafka's pre-0.10 header checksum; zstd accepts concatenated
 * frames. At most `max_out` bytes are ever produced or allocated: SL_ETOOLARGE when the output
 * would exceed it, SL_ECORRUPT for malformed input, SL_ECOMPRESSION for an unknown codec,
 * SL_ENOMEM when memory runs out. SL_COMPRESSION_NONE copies. Borrows `in`. */
sl_err sl_decompress(int codec, const uint8_t *in, size_t len, sl_arena *a, size_t max_out,
                     uint8_t **out, size_t *out_len);

/* Compresses `len` bytes at `in` with `codec` into a buffer owned by `a`, in the framing Kafka
 * clients produce: gzip wrapper, xerial snappy, LZ4 frame (64 KiB independent blocks, no content
 * checksum; `flags` may ask for the pre-0.10 header checksum), zstd frame (level 3). Errors:
 * SL_ECOMPRESSION for an unknown codec, SL_ETOOLARGE beyond 2 GiB, SL_ENOMEM. Borrows `in`. */
sl_err sl_compress(int codec, const uint8_t *in, size_t len, sl_arena *a, unsigned flags,
                   uint8_t **out, size_t *out_len);

/* XXH32 (the LZ4 frame's checksum), exposed for tests that build frames by hand. */
uint32_t sl_xxh32(const void *p, size_t len, uint32_t seed);

#endif
