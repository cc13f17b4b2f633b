/* The client side of the SASL mechanisms the gateway speaks to its upstream (sl_upstream.c):
 * SCRAM-SHA-256/512 (RFC 5802, RFC 7677), PLAIN (RFC 4616) and OAUTHBEARER's initial response
 * (RFC 7628). Pure message building and parsing; the Kafka framing is the caller's. The parsers
 * take untrusted input (the upstream's messages) and are bounded and strict; the server
 * signature is compared in constant time. Nothing allocates; the state is a fixed-size struct the
 * caller owns and wipes (sl_saslc_scram_clear). */
#ifndef SL_GATEWAY_SASLC_H
#define SL_GATEWAY_SASLC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sl_scram.h"
#include "base/sl_err.h"

#define SL_SASLC_NONCE_BYTES 24      /* random bytes of our nonce (32 base64 characters) */
#define SL_SASLC_MIN_ITER    4096    /* RFC 7677: at least 4096 */
#define SL_SASLC_MAX_ITER    1000000 /* an upstream asking for more is refused (CPU sink) */
#define SL_SASLC_MAX_MSG     2048    /* longest server message accepted */

typedef struct sl_saslc_scram {
    int mech; /* SL_SCRAM_SHA_256 / SL_SCRAM_SHA_512 */
    int step; /* 0: first to build; 1: server-first expected; 2: server-final expected; 3: done */
    char nonce[64];
    size_t nonce_len;
    char first_bare[3 * SL_SCRAM_MAX_USER + 96];
    size_t first_bare_len;
    uint8_t server_sig[SL_SCRAM_MAX_HASH];
} sl_saslc_scram;

/* The parts of a server-first-message ("r=...,s=...,i=...[,ext]"). Views into the message. */
typedef struct sl_saslc_server_first {
    const char *nonce;
    size_t nonce_len;
    uint8_t salt[SL_SCRAM_MAX_SALT];
    size_t salt_len;
    int32_t iterations;
} sl_saslc_server_first;

/* Parses server-first for an exchange whose client nonce is `cnonce`: the server nonce must
 * extend it with at least one printable character, the salt must be 1..64 bytes of strict
 * base64, the iteration count within SL_SASLC_MIN_ITER..SL_SASLC_MAX_ITER, and no mandatory
 * extension (m=). SL_EPROTO for a malformed message, SL_EAUTH for one refused by policy (nonce,
 * iterations, "e=" error). */
sl_err sl_saslc_parse_server_first(const uint8_t *msg, size_t len, const char *cnonce,
                                   size_t cnonce_len, sl_saslc_server_first *out);

/* client-first-message "n,,n=<user>,r=<nonce>" (user escaped per RFC 5802) into out[cap];
 * `fixed_nonce` NULL: SL_SASLC_NONCE_BYTES random bytes in base64 (tests and fuzzing pass one). */
sl_err sl_saslc_scram_first(sl_saslc_scram *s, int mech, const char *user, const char *fixed_nonce,
                            char *out, size_t cap, size_t *out_len);
/* Takes server-first, derives the keys from the password and writes client-final (with the
 * proof) into out[cap]; remembers the expected server signature. */
sl_err sl_saslc_scram_final(sl_saslc_scram *s, const char *pw, size_t pw_len, const uint8_t *msg,
                            size_t len, char *out, size_t cap, size_t *out_len);
/* Checks server-final ("v=<signature>"): SL_OK when the upstream proved it knows the
 * credential; SL_EAUTH for a wrong signature or an "e=" error, SL_EPROTO for a malformed one. */
sl_err sl_saslc_scram_verify(sl_saslc_scram *s, const uint8_t *msg, size_t len);
void sl_saslc_scram_clear(sl_saslc_scram *s);

/* PLAIN: "\0user\0password" into out[cap]. */
sl_err sl_saslc_plain(const char *user, const char *pw, size_t pw_len, uint8_t *out, size_t cap,
                      size_t *out_len);
/* OAUTHBEARER initial response "n,,\x01auth=Bearer <token>\x01\x01" into out[cap]; the token
 * must be non-empty printable ASCII without spaces. */
sl_err sl_saslc_oauthbearer(const char *token, size_t token_len, uint8_t *out, size_t cap,
                            size_t *out_len);

#endif
