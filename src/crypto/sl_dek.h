/* A data key (DEK) ready for use: its id and an AES-256-GCM context with the key loaded.
 * Refcounted: the key service's cache holds one reference, a segment writing under it another,
 * a read in progress a third; the key schedule is cleansed when the last goes. Loop thread. */
#ifndef SL_CRYPTO_DEK_H
#define SL_CRYPTO_DEK_H
#include <stdint.h>

#include "crypto/sl_aead.h"

typedef struct sl_dek {
    int refs;
    uint32_t id; /* random, never 0: every frame sealed under it carries it as its key id */
    sl_aead *aead;
} sl_dek;

/* A DEK holding `key` (copied into the context; the caller zeroes its copy), refs = 1. */
sl_err sl_dek_new(uint32_t id, const uint8_t key[SL_AEAD_KEY], sl_dek **out);
/* NULL-safe. Returns d. */
sl_dek *sl_dek_ref(sl_dek *d);
/* NULL-safe; the last reference frees (sl_aead_free cleanses). */
void sl_dek_unref(sl_dek *d);

#endif
