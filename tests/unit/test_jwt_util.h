/* Test helpers for the JWT validator tests: keys generated with OpenSSL in-process, JWKs,
 * signed compact JWS tokens and a scratch directory. Everything returned is malloc'd or static
 * as stated; tests run single-threaded. */
#ifndef TEST_JWT_UTIL_H
#define TEST_JWT_UTIL_H
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* Cached per process (RSA generation is slow under ASan); `which` picks one of several. */
EVP_PKEY *tj_rsa_key(int which);
EVP_PKEY *tj_ec_key(int which);
/* One JWK object for the public half of pk, appended to out (cap bytes). alg may be NULL. */
void tj_jwk(EVP_PKEY *pk, const char *kid, const char *alg, char *out, size_t cap);
/* Compact JWS with the given raw header and claims JSON, signed by pk (RS256 or ES256 chosen
 * from the key type; pk NULL leaves the signature empty). Returns a malloc'd string. */
char *tj_sign_raw(EVP_PKEY *pk, const char *header_json, const char *claims_json);
/* Header {"alg":<alg>,"typ":"JWT","kid":<kid>} signed by pk. */
char *tj_sign(EVP_PKEY *pk, const char *alg, const char *kid, const char *claims_json);
/* A fresh directory under TMPDIR (static buffer per call: copy it). */
const char *tj_tmpdir(void);
/* Writes text to path atomically (rename), so a concurrent reader never sees half a file. */
bool tj_write_file(const char *path, const char *text);

#endif
