/* Key-encryption-key providers (`sluice.kms.provider`): local, pkcs11, kmip, aws-kms. Each is a
 * small module behind this one interface; the key service (sl_keysvc.c) is the only caller.
 *
 * A provider holds KEKs: keys that never leave it (the local provider's are wrapped by its master
 * key in its own file). Sluice only ever asks it to wrap or unwrap a topic key (32 bytes), to
 * generate a new KEK version, to describe one and to destroy one. Calls block (network, HSM) and
 * are made on the key service's worker thread, never on the event loop; a provider is used by
 * one thread at a time (the key service serializes calls).
 *
 * Errors a provider returns, distinguished because the broker reacts differently:
 *   SL_EKMS_UNAVAILABLE  cannot reach it now (network, timeout, throttling, 5xx, device error):
 *                        retriable; produce/fetch needing that key get a retriable error
 *   SL_EKMS_DENIED       it answered no (permissions, disabled or unknown key): loud, not retried
 *   SL_ETAMPER           unwrap failed its integrity check (wrong key or context, edited bytes)
 * and `err` (when not NULL) gets a one-line reason for the log, never key material. */
#ifndef SL_KMS_H
#define SL_KMS_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"

/* A KEK: provider-specific id (key label, KMIP unique identifier, AWS key ARN/id, local
 * "local:<n>") and Sluice's version number for it (1, 2, ... as `sluice keys rotate` adds them).
 * Stored in the keyring next to each topic key it wraps. */
typedef struct sl_kms_keyref {
    char id[256];
    uint32_t version;
} sl_kms_keyref;

#define SL_KMS_WRAPPED_MAX                                                                         \
    512 /* largest wrapped form any provider returns (AWS ciphertext blob)                         \
         */

typedef struct sl_kms sl_kms;
typedef struct sl_kms_ops {
    const char *name; /* "local", "pkcs11", "kmip", "aws-kms" */
    /* Wraps `plain` (n bytes, a topic key) under `kek`, bound to `ctx` (ctxlen bytes: AAD for
     * GCM, the EncryptionContext for AWS, the HKDF context for KWP). out[cap] gets the wrapped
     * form. */
    sl_err (*wrap)(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                   const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                   char *err, size_t errlen);
    sl_err (*unwrap)(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                     const uint8_t *wrapped, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                     char *err, size_t errlen);
    /* Creates (or, for providers whose key is configured, e.g. aws-kms, resolves) the KEK for
     * `version`; `out->id` gets its provider id. */
    sl_err (*generate)(sl_kms *k, uint32_t version, sl_kms_keyref *out, char *err, size_t errlen);
    /* One line about `kek` (state, algorithm, creation) for `sluice keys status`. */
    sl_err (*describe)(sl_kms *k, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                       size_t errlen);
    /* Destroys `kek` in the provider (retiring an old version after rewrap). Providers that
     * cannot destroy (aws-kms schedules deletion) do what is closest and say so in `err`. */
    sl_err (*destroy)(sl_kms *k, const sl_kms_keyref *kek, char *err, size_t errlen);
    void (*free)(sl_kms *k);
} sl_kms_ops;

struct sl_kms {
    const sl_kms_ops *ops;
};

/* Opens the provider `cfg->sluice_kms_provider` names. Providers read their own
 * sluice.kms.<provider>.* keys; a bad or missing one fails here naming the key (in err). Caller
 * owns *out (out->ops->free). The local provider may create its master key and key file (first
 * start); the others only connect lazily, so a start with the KMS down still succeeds. */
sl_err sl_kms_open(const sl_config *cfg, sl_kms **out, char *err, size_t errlen);

/* Per-provider constructors behind sl_kms_open (each in its own file, sl_kms_<name>.c). */
sl_err sl_kms_local_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen);
sl_err sl_kms_pkcs11_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen);
sl_err sl_kms_kmip_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen);
sl_err sl_kms_aws_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen);

#endif
