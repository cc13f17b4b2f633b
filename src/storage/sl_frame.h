/* Segment frame codec: the header that wraps each record batch in a segment file
 * (docs/on-disk-format.md, "Frames"). Pure byte work, no I/O: the log (sl_log.c) reads and
 * writes files and calls this to build, parse and check frames.
 *
 * A frame is `header (fixed 48 bytes | nonce | header CRC) | payload | tag`. Plaintext frames
 * have key id 0, no nonce, no tag. Encrypted frames (flag bit 0, AES-256-GCM) have a 12-byte
 * nonce, a 16-byte tag and the DEK's id, and their reserved word holds the CRC-32C of payload ||
 * tag, so a torn or damaged encrypted frame is found without any key (the batch CRC is inside
 * the ciphertext). Sealing and opening are the log's job (sl_log.c); this codec only checks
 * that the slots are the ones this build supports. */
#ifndef SL_STORAGE_FRAME_H
#define SL_STORAGE_FRAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_FRAME_MAGIC       0xA5
#define SL_FRAME_TYPE_BATCH  1
#define SL_FRAME_FLAG_ENC    0x0001 /* payload encrypted (AES-256-GCM) */
#define SL_FRAME_FIXED       48     /* fixed part of the header, before the nonce */
#define SL_FRAME_HDR_MIN     (SL_FRAME_FIXED + 4)
#define SL_FRAME_NONCE_MAX   32
#define SL_FRAME_TAG_MAX     32
#define SL_FRAME_HDR_MAX     (SL_FRAME_HDR_MIN + SL_FRAME_NONCE_MAX)
#define SL_FRAME_PAYLOAD_MAX 0x7fffff00u
#define SL_FRAME_ENC_NONCE   12 /* the only nonce length an encrypted frame may have */
#define SL_FRAME_ENC_TAG     16 /* the only tag length (truncated GCM tags are weaker) */

/* A decoded (or to-be-encoded) frame header. Lengths: hlen = 52 + nlen, flen = hlen + plen +
 * tlen. `nonce` points into the decoded bytes (borrowed) or at the caller's nonce to encode. */
typedef struct sl_frame {
    uint16_t flags, hlen;
    uint8_t nlen, tlen;
    uint32_t flen, key_id, plen;
    int64_t base;       /* first offset of the batch */
    int32_t lod, count; /* last offset delta, record count */
    int64_t max_ts;
    uint32_t ct_crc; /* encrypted: CRC-32C of payload || tag (the reserved word); else 0 */
    const uint8_t *nonce;
} sl_frame;

typedef enum {
    SL_FRAME_OK = 0,
    SL_FRAME_SHORT = 1,    /* more bytes are needed to decide */
    SL_FRAME_CORRUPT = -1, /* not a frame this build accepts */
} sl_frame_status;

/* Describes a plaintext frame for a record batch of `plen` bytes and writes its header into `h`
 * (at least SL_FRAME_HDR_MAX bytes, caller's). Returns the header length; *f (optional) gets
 * the header as sl_frame_decode would return it, so the caller's view and the bytes agree. */
size_t sl_frame_encode_batch(uint8_t *h, int64_t base, int32_t lod, int32_t count, int64_t max_ts,
                             uint32_t plen, sl_frame *f);

/* Writes the header described by *f into `h` (SL_FRAME_HDR_MAX bytes, caller's): magic, type,
 * the key id / nonce / tag slots, ct_crc (written only for encrypted frames) and the header CRC.
 * Fills f->hlen and f->flen from the other lengths. Returns the header length, or 0 when f's
 * lengths are out of range. The general form behind sl_frame_encode_batch, for writers that fill
 * the encryption slots. */
size_t sl_frame_encode(uint8_t *h, sl_frame *f);

/* Decodes and validates a frame header from `avail` bytes at `p` (borrowed; f->nonce points
 * into it). Plaintext (flags 0, key id 0, no nonce, no tag, reserved 0) and encrypted (flag bit 0
 * only, nonce 12, tag 16, key id != 0) frames are accepted; anything else is corrupt.
 * SL_FRAME_SHORT only when avail < SL_FRAME_HDR_MAX and the header may be longer than avail. Every
 * length is checked against the others; the caller checks flen against the bytes left in the file.
 */
sl_frame_status sl_frame_decode(const uint8_t *p, size_t avail, sl_frame *f);

/* True when the plen bytes at `payload` (borrowed) are the batch the header describes: a v2
 * batch of exactly that length, same base offset and last offset delta, CRC-32C correct. For an
 * encrypted frame `payload` must be followed by its tag (plen + tlen bytes, as in the file): the
 * clear batch header fields are checked the same way, and instead of the batch CRC (sealed)
 * ct_crc over payload || tag. No key is needed; the tag itself is checked when the frame is
 * opened. */
bool sl_frame_payload_ok(const sl_frame *f, const uint8_t *payload);

#endif
