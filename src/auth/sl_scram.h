/* SCRAM-SHA-256/512 (RFC 5802, RFC 7677), server side, on OpenSSL 3.
 *
 * Credentials hold salt, StoredKey, ServerKey and the iteration count, never a password. The
 * parsers are bounded and strict (attribute order, base64, saslname escaping); the exchange
 * computes AuthMessage over the bytes exactly as the client sent them. Nothing here allocates:
 * the exchange state is a fixed-size struct the caller owns. */
#ifndef SL_AUTH_SCRAM_H
#define SL_AUTH_SCRAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_err.h"

/* Kafka's ScramMechanism codes (AlterUserScramCredentials/Describe use them on the wire). */
enum { SL_SCRAM_SHA_256 = 1, SL_SCRAM_SHA_512 = 2 };

#define SL_SCRAM_MAX_HASH  64
#define SL_SCRAM_MAX_SALT  64
#define SL_SCRAM_SALT_LEN  32 /* salts we generate, and the mock salt */
#define SL_SCRAM_MIN_ITER  4096
#define SL_SCRAM_MAX_ITER  16384
#define SL_SCRAM_DEF_ITER  4096
#define SL_SCRAM_MAX_USER  255
#define SL_SCRAM_MAX_MSG   1024 /* longest client message accepted */
#define SL_SCRAM_NONCE_LEN 32   /* base64 characters of the server's nonce part */

/* "SCRAM-SHA-256"/"SCRAM-SHA-512" or NULL. */
const char *sl_scram_mech_name(int mech);
/* Mechanism code for a SASL mechanism name, or 0. */
int sl_scram_mech_from_name(const char *name, size_t len);
/* Digest length of the mechanism's hash (32 or 64), or 0 for an unknown mechanism. */
size_t sl_scram_hash_len(int mech);

typedef struct sl_scram_cred {
    int mech;
    int32_t iterations;
    uint8_t salt[SL_SCRAM_MAX_SALT];
    size_t salt_len;
    uint8_t stored_key[SL_SCRAM_MAX_HASH];
    uint8_t server_key[SL_SCRAM_MAX_HASH];
} sl_scram_cred;

/* SaltedPassword := Hi(password, salt, i) into out (hash_len(mech) bytes). */
sl_err sl_scram_salted_password(int mech, const void *pw, size_t pw_len, const uint8_t *salt,
                                size_t salt_len, int32_t iterations, uint8_t *out);
/* Derives StoredKey and ServerKey from a SaltedPassword (what AlterUserScramCredentials sends).
 * `salted` has hash_len(mech) bytes. SL_EINVAL for bad sizes. */
sl_err sl_scram_cred_from_salted(int mech, const uint8_t *salted, const uint8_t *salt,
                                 size_t salt_len, int32_t iterations, sl_scram_cred *out);
/* New credential from a password with a fresh random salt. */
sl_err sl_scram_cred_from_password(int mech, const void *pw, size_t pw_len, int32_t iterations,
                                   sl_scram_cred *out);
/* Recomputes SaltedPassword with the credential's salt and iterations and compares StoredKey in
 * constant time (used by PLAIN). */
bool sl_scram_check_password(const sl_scram_cred *c, const void *pw, size_t pw_len);

/* Standard base64 with padding. encode: returns the length written (out needs 4*ceil(n/3)+1,
 * NUL-terminated). decode: strict (alphabet, padding, length); returns bytes or -1. */
size_t sl_b64_encode(const uint8_t *in, size_t n, char *out);
long sl_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap);

/* client-first-message. Views point into the message. */
typedef struct sl_scram_client_first {
    sl_str gs2_header; /* "n,," or "y,," (or with a=authzid) including the trailing comma */
    sl_str authzid;    /* unescaped into authzid_buf; len 0 if absent */
    sl_str bare;       /* client-first-message-bare */
    sl_str nonce;
    char user[SL_SCRAM_MAX_USER + 1]; /* unescaped, NUL-terminated */
    size_t user_len;
    char authzid_buf[SL_SCRAM_MAX_USER + 1];
    bool token_auth; /* tokenauth=true extension (delegation tokens) */
} sl_scram_client_first;
sl_err sl_scram_parse_client_first(const uint8_t *msg, size_t len, sl_scram_client_first *out);

typedef struct sl_scram_client_final {
    sl_str channel_binding; /* base64 of the gs2 header, as sent */
    sl_str nonce;
    sl_str without_proof; /* client-final-message-without-proof */
    uint8_t proof[SL_SCRAM_MAX_HASH];
    size_t proof_len;
} sl_scram_client_final;
sl_err sl_scram_parse_client_final(const uint8_t *msg, size_t len, sl_scram_client_final *out);

/* One server-side exchange. */
typedef struct sl_scram_server {
    int mech;
    int step;   /* 0: expects client-first; 1: expects client-final; 2: done */
    bool known; /* false: mock exchange for an unknown user, which always fails */
    sl_scram_cred cred;
    char user[SL_SCRAM_MAX_USER + 1];
    char gs2_b64[(SL_SCRAM_MAX_MSG / 3 + 1) * 4 + 1];
    char client_nonce[SL_SCRAM_MAX_MSG];
    size_t client_nonce_len;
    char first_bare[SL_SCRAM_MAX_MSG];
    size_t first_bare_len;
    char server_first[SL_SCRAM_MAX_MSG + 256];
    size_t server_first_len;
} sl_scram_server;

/* Resolves a user's credential for the exchange. Fills *out and returns true for a known user;
 * for an unknown one fills *out with a deterministic mock (same salt length and iteration count
 * every time) and returns false. */
typedef bool (*sl_scram_lookup_fn)(void *ctx, const char *user, size_t user_len, int mech,
                                   sl_scram_cred *out);

/* Processes client-first and writes server-first into out (cap bytes; *out_len). SL_EPROTO for a
 * malformed message, SL_EAUTH for something refused by policy (channel binding requested,
 * authzid differing from the user, token auth). */
sl_err sl_scram_server_first(sl_scram_server *s, int mech, const uint8_t *msg, size_t len,
                             sl_scram_lookup_fn lookup, void *ctx, char *out, size_t cap,
                             size_t *out_len);
/* As above with a fixed server nonce part (printable, no ',', at most SL_SCRAM_NONCE_LEN
 * characters): for test vectors only. */
sl_err sl_scram_server_first_nonce(sl_scram_server *s, int mech, const uint8_t *msg, size_t len,
                                   sl_scram_lookup_fn lookup, void *ctx, char *out, size_t cap,
                                   size_t *out_len, const char *fixed_nonce);
/* Processes client-final; on a valid proof writes server-final ("v=...") and returns SL_OK. A
 * wrong proof, an unknown user and a malformed message all return SL_EAUTH. The comparison is
 * constant time and an unknown user runs the same computations. */
sl_err sl_scram_server_final(sl_scram_server *s, const uint8_t *msg, size_t len, char *out,
                             size_t cap, size_t *out_len);
/* Wipes the exchange (keys and salts included). */
void sl_scram_server_clear(sl_scram_server *s);

#endif
