/* The subject store's record codec (format in protect/sl_fkeys.h), apart from the I/O so that
 * it can be fuzzed (tests/fuzz/fuzz_subjstore.c). Internal to sl_fkeys.c and its tests. */
#ifndef SL_PROTECT_FKEYS_STORE_H
#define SL_PROTECT_FKEYS_STORE_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "crypto/sl_aead.h"
#include "protect/sl_fkeys.h"

typedef struct sl_fkeys_rec {
    uint8_t id[16];
    uint32_t version; /* the "_subjects" field key version that wraps it (>= 1) */
    uint8_t wrapped[SL_KWP_WRAPPED_32];
} sl_fkeys_rec;

/* out[SL_FKEYS_REC]: the record with its CRC-32C. */
void sl_fkeys_rec_encode(const sl_fkeys_rec *r, uint8_t out[SL_FKEYS_REC]);

typedef sl_err (*sl_fkeys_rec_fn)(void *ctx, const sl_fkeys_rec *r);

/* Decodes records from p[0..n) (bytes after the magic, starting at a record boundary); p is
 * borrowed. Calls `each` for every record whose CRC is right and whose version is not 0, in
 * order. A bad record followed by a good one is corruption in the middle: skipped and counted in
 * *bad. Bad or partial records after the last good one are a torn tail (a crash, or an append
 * being written right now): not consumed. *used gets the offset just past the last good record
 * (a multiple of SL_FKEYS_REC). Stops with the first error `each` returns. Pure. */
sl_err sl_fkeys_store_decode(const uint8_t *p, size_t n, sl_fkeys_rec_fn each, void *ctx,
                             size_t *used, int *bad);

#endif
