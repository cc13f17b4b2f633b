/* The encryption envelope of a segment: what a reader needs, besides the key service, to open
 * the segment's frames (docs/on-disk-format.md, "Encryption"). It lives in the segment file's
 * header extension (format version 2); pure byte work, no I/O, fuzzed (fuzz_envelope).
 *
 * The topic key itself is never here: only the DEK wrapped under it and which topic-key version
 * wrapped it. Destroying the topic key (shredding) makes this envelope, and every copy of the
 * segment, undecryptable. */
#ifndef SL_STORAGE_ENVELOPE_H
#define SL_STORAGE_ENVELOPE_H
#include <stddef.h>
#include <stdint.h>

#include "storage/sl_frame.h"

#define SL_ENV_ALG_AES256GCM 1
#define SL_ENV_WRAPPED_MAX   64
#define SL_ENV_MAX           256 /* largest encoded envelope */

typedef struct sl_envelope {
    uint8_t alg;          /* SL_ENV_ALG_AES256GCM */
    uint32_t dek_id;      /* random, never 0; every frame of the segment carries it as key id */
    uint8_t topic_id[16]; /* the topic the segment was written for (a swapped segment fails) */
    int32_t partition;
    int64_t seg_base;    /* the segment's base offset (also in the file header) */
    uint32_t tk_version; /* topic key version that wrapped the DEK */
    uint8_t wrapped_len; /* <= SL_ENV_WRAPPED_MAX */
    uint8_t wrapped[SL_ENV_WRAPPED_MAX];
} sl_envelope;

/* Encodes `e` into out[cap]; returns the length, or 0 when it does not fit or e is invalid. */
size_t sl_envelope_encode(const sl_envelope *e, uint8_t *out, size_t cap);
/* Decodes `n` bytes at `p` (borrowed); every length is checked before use. SL_FRAME_CORRUPT for
 * anything malformed (bad lengths, unknown alg, dek_id 0, CRC mismatch). */
sl_frame_status sl_envelope_decode(const uint8_t *p, size_t n, sl_envelope *e);

#endif
