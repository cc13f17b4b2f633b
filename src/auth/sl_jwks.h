/* JSON Web Key Sets (RFC 7517) holding signature verification keys: RSA (n, e; 2048 to 8192
 * bits) and EC P-256 (x, y; point checked on the curve). Other key types, other curves, keys
 * whose "use" is not "sig", keys whose "alg" is neither RS256 nor ES256, and keys without a
 * "kid" (a token must name its key) are skipped. A set with no usable key is an error, so a
 * broken endpoint never replaces a working set with an empty one.
 *
 * A key set is immutable once parsed and freed in one step; the validator shares it between
 * threads by swapping the pointer under its mutex. */
#ifndef SL_JWKS_H
#define SL_JWKS_H
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

typedef enum { SL_JWK_RSA = 1, SL_JWK_EC_P256 = 2 } sl_jwk_type;

typedef struct sl_jwk {
    char kid[256];
    sl_jwk_type type;
    char alg[8]; /* "" when the JWK names none */
    EVP_PKEY *pkey;
} sl_jwk;

typedef struct sl_jwks {
    sl_jwk *keys;
    size_t n;
} sl_jwks;

/* Parses a JWKS document (<= SL_JWKS_MAX_BYTES). Caller owns the result. NULL with err. */
sl_jwks *sl_jwks_parse(const char *text, size_t len, char *err, size_t elen);
void sl_jwks_free(sl_jwks *ks);
/* The key named `kid`, or NULL. Points into ks. */
const sl_jwk *sl_jwks_find(const sl_jwks *ks, const char *kid, size_t kidlen);

/* Reads the document at `url`: file:///path (or a bare absolute path) or https:// (blocking;
 * background thread only). *body is malloc'd, NUL-terminated; caller frees. */
sl_err sl_jwks_fetch(const char *url, const char *ca_file, int64_t timeout_ms, char **body,
                     size_t *blen, char *err, size_t elen);

#endif
