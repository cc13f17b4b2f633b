/* AES-256-GCM for stored batches and AES-256 key wrapping (RFC 5649), through OpenSSL 3 EVP.
 * No I/O and no key management: the key service (src/kms) owns keys; storage calls seal/open
 * once per batch (docs/encryption-at-rest.md).
 *
 * An sl_aead holds one EVP context with the key schedule loaded, so sealing a batch re-inits only
 * the nonce. Contexts are not thread-safe: one user at a time (the loop thread). */
#ifndef SL_CRYPTO_AEAD_H
#define SL_CRYPTO_AEAD_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

#define SL_AEAD_KEY   32
#define SL_AEAD_NONCE 12
#define SL_AEAD_TAG   16
/* RFC 5649 output for a 32-byte key: 8 bytes of integrity block + the key. */
#define SL_KWP_WRAPPED_32 40

typedef struct sl_aead sl_aead;

/* One contiguous piece of a message sealed or opened in place. The parts of one call form one
 * GCM stream in order, so non-adjacent fields (a batch's CRC and its records) are one message. */
typedef struct sl_aead_part {
    uint8_t *p;
    size_t n;
} sl_aead_part;

/* A context holding `key` (32 bytes, copied into OpenSSL's context; the caller zeroes its copy).
 * Caller owns *out (sl_aead_free, which cleanses the context). */
sl_err sl_aead_new(const uint8_t key[SL_AEAD_KEY], sl_aead **out);
void sl_aead_free(sl_aead *a);
/* A second context with the same key (EVP_CIPHER_CTX_copy), so another thread can use it while
 * `a` stays with its owner (re-encryption runs off the loop). Caller owns *out. */
sl_err sl_aead_dup(const sl_aead *a, sl_aead **out);

/* Encrypts the parts in place under `nonce`, authenticating `aad` too; writes the tag. The caller
 * guarantees the nonce is never used twice with this key (storage: a counter per DEK). */
sl_err sl_aead_seal(sl_aead *a, const uint8_t nonce[SL_AEAD_NONCE], const uint8_t *aad,
                    size_t aadlen, const sl_aead_part *parts, int nparts, uint8_t tag[SL_AEAD_TAG]);
/* Decrypts the parts in place and checks the tag. SL_ETAMPER when authentication fails; the
 * parts then hold garbage that must not be used (callers discard the buffer). */
sl_err sl_aead_open(sl_aead *a, const uint8_t nonce[SL_AEAD_NONCE], const uint8_t *aad,
                    size_t aadlen, const sl_aead_part *parts, int nparts,
                    const uint8_t tag[SL_AEAD_TAG]);

/* RFC 5649 (AES key wrap with padding) under a 32-byte wrapping key derived from `kek` and
 * `context` with HKDF-SHA-256 (so a wrapped key only unwraps in the place it was made for:
 * the context names topic, partition, segment, key ids). `in` of n bytes (1..64); `out` needs
 * n + 8 rounded up to 8 (SL_KWP_WRAPPED_32 for a 32-byte key). Deterministic: no nonce.
 * Unwrap gives SL_ETAMPER when the integrity check fails (wrong key, wrong context, edited). */
sl_err sl_kwp_wrap(const uint8_t kek[SL_AEAD_KEY], const uint8_t *context, size_t ctxlen,
                   const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);
sl_err sl_kwp_unwrap(const uint8_t kek[SL_AEAD_KEY], const uint8_t *context, size_t ctxlen,
                     const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);

/* HKDF-SHA-256 (RFC 5869) of `ikm` with `info`, no salt, into out[n]. */
sl_err sl_hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *info, size_t infolen, uint8_t *out,
               size_t n);

/* `n` random bytes from OpenSSL's private DRBG (keys). */
sl_err sl_random_key(uint8_t *out, size_t n);

#endif
