/* Field protection's primitives (docs/field-protection.md): masking, keyed tokens, field
 * encryption (AES-256-GCM, random nonce; AES-256-SIV, deterministic, RFC 5297) and the two
 * self-describing strings they write. Pure functions over bytes: keys are handed in (sl_fkeys
 * finds them). The broker and libsluice both call these, so a token or an SIV ciphertext is
 * byte-identical whichever wrote it.
 *
 * Token string (22 characters of MAC, 128 bits):
 *     "tok1." KEY "." VER "." B64URL(HMAC-SHA-256(Kt, input)[0..16))
 * Ciphertext string:
 *     "sl1." ALG "." KEY "." VER "." SUBJ "." B64URL(payload)
 *       ALG   "g": AES-256-GCM, payload = nonce(12) || ciphertext || tag(16)
 *             "s": AES-256-SIV, payload = V(16) || ciphertext
 *       KEY   the field key's name, SL_FC_KEYNAME_OK characters, 1..SL_FC_KEYNAME_MAX
 *       VER   the field key's version, decimal 1..4294967295, no leading zero
 *       SUBJ  "-" (no data subject) or B64URL of the 16-byte subject id (22 characters)
 *     B64URL is base64url without padding. The associated data is the string's prefix up to and
 *     including the "." before the payload: algorithm, key, version and subject are bound.
 *
 * What is tokenized / encrypted:
 *   token input  a scalar's text: a JSON string's unescaped UTF-8 bytes, a number's or a
 *                boolean's JSON text, or the raw bytes of a whole key/value/header. So 42 and
 *                "42" give the same token (joins across producers that disagree on the type).
 *   plaintext    one type byte then the bytes: SL_FC_T_STR ('s': a JSON string, unescaped),
 *                SL_FC_T_JSON ('j': any other JSON value, its text as written), SL_FC_T_RAW
 *                ('b': a whole non-JSON key, value or header value). Reveal restores the type.
 *
 * Keys: a field key version is 32 bytes (a "topic key" of the key service, by id). Derived with
 * HKDF-SHA-256 (sl_hkdf), so one field key never serves two algorithms:
 *   Kt  = HKDF(K,      info "sluice/field/v1/token")                        32 bytes
 *   Kg  = HKDF(K [|| S], info "sluice/field/v1/gcm" [|| subject id])         32 bytes
 *   Ks  = HKDF(K [|| S], info "sluice/field/v1/siv" [|| subject id])         64 bytes
 * where S is the data subject's own key (32 bytes) when the topic names a subject: destroying S
 * (forget) makes the field undecryptable even to holders of K. */
#ifndef SL_PROTECT_FCRYPT_H
#define SL_PROTECT_FCRYPT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"

#define SL_FC_KEYNAME_MAX 64
#define SL_FC_TOKEN_MAC   16 /* bytes of HMAC kept in a token (and a subject id's size) */
#define SL_FC_B64_16      22 /* base64url length of 16 bytes */
/* Longest token string: "tok1." + name + "." + 10 digits + "." + 22, plus NUL. */
#define SL_FC_TOKEN_STR_MAX (5 + SL_FC_KEYNAME_MAX + 1 + 10 + 1 + SL_FC_B64_16 + 1)

#define SL_FC_T_STR  's'
#define SL_FC_T_JSON 'j'
#define SL_FC_T_RAW  'b'

typedef enum { SL_FC_GCM = 'g', SL_FC_SIV = 's' } sl_fc_alg;

/* True when n bytes at s are a valid key name: [A-Za-z0-9_-], 1..SL_FC_KEYNAME_MAX. */
bool sl_fc_keyname_ok(const char *s, size_t n);

/* ---- mask ---- */
typedef struct sl_fc_mask {
    int keep_first, keep_last; /* maskable characters left as they are, at each end */
    char ch;                   /* the mask character (printable ASCII, not '"' or '\\') */
} sl_fc_mask;

/* Masks UTF-8 text in[0..n) into out (capacity >= n: never longer than the input). Letters and
 * digits (ASCII) and every non-ASCII code point are maskable and each becomes one `ch`; every
 * other ASCII character (separators, spaces, punctuation) stays, so length and layout show:
 * "4111-1111-1111-1234" with keep_last 4 -> "****-****-****-1234". When keep_first+keep_last
 * covers every maskable character, all of them are masked anyway (a mask never returns the
 * input unchanged). Returns the bytes written; invalid UTF-8 bytes are masked one each. */
size_t sl_fc_mask_apply(const sl_fc_mask *m, const uint8_t *in, size_t n, uint8_t *out);

/* ---- keys ---- */
/* The derived keys for one field key version and (optionally) one data subject, with OpenSSL
 * contexts made once so a record costs no key schedule. The derived keys live only in those
 * contexts (no raw copy: nothing re-keys), cleansed on free. Used by one thread at a time. */
typedef struct sl_fc_key sl_fc_key;

/* `key` (32 bytes), `name`/`version` (the field key's), `subject_key` (32 bytes or NULL) and
 * `subject_id` (16 bytes, with subject_key). Caller owns *out (sl_fc_key_free). */
sl_err sl_fc_key_new(const uint8_t key[32], const char *name, uint32_t version,
                     const uint8_t *subject_key, const uint8_t *subject_id, sl_fc_key **out);
void sl_fc_key_free(sl_fc_key *k); /* NULL-safe */

/* ---- tokens ---- */
/* The 16-byte MAC of input[0..n) under Kt of `k` (subject ids are the MAC of the subject's
 * value under the subject rule's token key). */
void sl_fc_token_mac(const sl_fc_key *k, const uint8_t *in, size_t n, uint8_t out[16]);
/* Writes the token string of input[0..n) (NUL-terminated) into out[SL_FC_TOKEN_STR_MAX]; returns
 * its length. */
size_t sl_fc_token(const sl_fc_key *k, const uint8_t *in, size_t n, char *out);
/* True when s[0..n) has the shape of a token string (any key). */
bool sl_fc_is_token(const char *s, size_t n);

/* ---- ciphertext strings ---- */
typedef struct sl_fc_header {
    sl_fc_alg alg;
    char key[SL_FC_KEYNAME_MAX + 1];
    uint32_t version;
    bool has_subject;
    uint8_t subject[16];
    size_t payload_off; /* parse: where the base64url payload starts */
} sl_fc_header;

/* Parses the header of a ciphertext string s[0..n): SL_OK and *h, or SL_ECORRUPT when s is not
 * one (wrong prefix, bad key name, version or subject, payload not base64url or of an impossible
 * length). Never reads past n. Pure; fuzzed (tests/fuzz/fuzz_fcstring.c). */
sl_err sl_fc_parse(const char *s, size_t n, sl_fc_header *h);

/* Encrypts type byte + pt[0..n) with `alg` under `k` into a ciphertext string allocated in `a`
 * (not NUL-terminated). SL_ENOMEM, SL_EINVAL (bad type). */
sl_err sl_fc_encrypt(const sl_fc_key *k, sl_fc_alg alg, uint8_t type, const uint8_t *pt, size_t n,
                     sl_arena *a, char **out, size_t *outlen);
/* Decrypts the ciphertext string s[0..n) whose parsed header is `h` (key name, version and
 * subject must be those `k` was made for: the caller found `k` from `h`). *type and the
 * plaintext (allocated in `a`) on success; SL_ETAMPER when it fails authentication (wrong key,
 * edited bytes, a forgotten subject's recreated key), SL_ECORRUPT when malformed. */
sl_err sl_fc_decrypt(const sl_fc_key *k, const char *s, size_t n, const sl_fc_header *h,
                     sl_arena *a, uint8_t *type, uint8_t **pt, size_t *ptlen);

/* ---- raw primitives, exposed for test vectors ---- */
/* HMAC-SHA-256 (RFC 2104; RFC 4231 vectors). */
void sl_fc_hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *in, size_t n,
                       uint8_t out[32]);
/* AES-SIV (RFC 5297) with one associated-data component (ad may be NULL for none): key of 32,
 * 48 or 64 bytes (AES-128/192/256-SIV); out[16 + n] = V || C. SL_EINVAL for a bad key length.
 * sl_fc_siv_open checks V (SL_ETAMPER) and writes n - 16 bytes. */
sl_err sl_fc_siv_seal(const uint8_t *key, size_t klen, const uint8_t *ad, size_t adlen,
                      const uint8_t *pt, size_t n, uint8_t *out);
sl_err sl_fc_siv_open(const uint8_t *key, size_t klen, const uint8_t *ad, size_t adlen,
                      const uint8_t *in, size_t n, uint8_t *out);
/* base64url without padding; sl_fc_b64url_decode returns -1 on a bad character or length. */
size_t sl_fc_b64url_encode(const uint8_t *in, size_t n, char *out);
long sl_fc_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap);

#endif
