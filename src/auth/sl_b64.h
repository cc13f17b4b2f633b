/* Base64 (RFC 4648 §4) and base64url (§5), strict: decoders refuse characters outside the
 * alphabet, whitespace, impossible lengths and non-zero padding bits, so one encoded form maps
 * to one byte string (no malleability of signed JWT parts). Pure functions; no allocation. */
#ifndef SL_B64_H
#define SL_B64_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode n bytes (with padding for base64, without for base64url), plus NUL. */
size_t sl_b64_enc_len(size_t n);
/* Upper bound of decoded bytes for n encoded characters. */
size_t sl_b64_dec_max(size_t n);

/* Encode into out (cap bytes, NUL-terminated); returns the length, or 0 if cap is too small. */
size_t sl_b64std_encode(const uint8_t *in, size_t n, char *out, size_t cap);
size_t sl_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);

/* Decode: base64 requires '=' padding to a multiple of 4; base64url forbids padding (JWS form).
 * Returns false on any malformed input or if out (cap bytes) is too small. */
bool sl_b64std_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);
bool sl_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif
