/* KMIP's TTLV encoding (KMIP 1.x spec section 9.1) and the few KMIP 1.4 messages the kmip KMS
 * provider (sl_kms_kmip.c) exchanges. Here rather than in the provider so the unit tests can hold
 * both against bytes produced by PyKMIP's own codec (tests/unit/fixtures).
 *
 * Every item is Tag (3 bytes, 0x42xxxx; 0x54xxxx for extensions) | Type (1) | Length (4, big
 * endian, of the value without padding) | Value, zero-padded to a multiple of 8. Structures hold
 * items. Only the types and tags the provider needs are named; the decoder accepts every type the
 * spec defines (it must walk past attributes it does not use) but checks each one's shape.
 *
 * The decoder trusts nothing: every length is checked against what is left of its enclosing
 * structure, padding must be zero, fixed-size types must have their size, nesting is capped at
 * SL_TTLV_MAX_DEPTH and the number of items at the caller's array size. It produces a flat,
 * pre-order array of item views into the input (no copies, no allocation), walked with
 * sl_ttlv_child / sl_ttlv_next. */
#ifndef SL_KMS_TTLV_H
#define SL_KMS_TTLV_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

enum {
    SL_TTLV_STRUCT = 0x01,
    SL_TTLV_INT = 0x02,
    SL_TTLV_LONG = 0x03,
    SL_TTLV_BIGINT = 0x04,
    SL_TTLV_ENUM = 0x05,
    SL_TTLV_BOOL = 0x06,
    SL_TTLV_TEXT = 0x07,
    SL_TTLV_BYTES = 0x08,
    SL_TTLV_DATETIME = 0x09,
    SL_TTLV_INTERVAL = 0x0A,
};

/* Tags (checked against PyKMIP 0.10 kmip/core/enums.py `Tags` and the KMIP 1.4 spec tables). */
enum {
    SL_KMIP_TAG_ATTRIBUTE = 0x420008,
    SL_KMIP_TAG_ATTRIBUTE_NAME = 0x42000A,
    SL_KMIP_TAG_ATTRIBUTE_VALUE = 0x42000B,
    SL_KMIP_TAG_BATCH_COUNT = 0x42000D,
    SL_KMIP_TAG_BATCH_ITEM = 0x42000F,
    SL_KMIP_TAG_BLOCK_CIPHER_MODE = 0x420011,
    SL_KMIP_TAG_CRYPTO_ALGORITHM = 0x420028,
    SL_KMIP_TAG_CRYPTO_PARAMETERS = 0x42002B,
    SL_KMIP_TAG_IV_COUNTER_NONCE = 0x42003D,
    SL_KMIP_TAG_NAME_TYPE = 0x420054,
    SL_KMIP_TAG_NAME_VALUE = 0x420055,
    SL_KMIP_TAG_OBJECT_TYPE = 0x420057,
    SL_KMIP_TAG_OPERATION = 0x42005C,
    SL_KMIP_TAG_PROTOCOL_VERSION = 0x420069,
    SL_KMIP_TAG_PROTOCOL_MAJOR = 0x42006A,
    SL_KMIP_TAG_PROTOCOL_MINOR = 0x42006B,
    SL_KMIP_TAG_REQUEST_HEADER = 0x420077,
    SL_KMIP_TAG_REQUEST_MESSAGE = 0x420078,
    SL_KMIP_TAG_REQUEST_PAYLOAD = 0x420079,
    SL_KMIP_TAG_RESPONSE_HEADER = 0x42007A,
    SL_KMIP_TAG_RESPONSE_MESSAGE = 0x42007B,
    SL_KMIP_TAG_RESPONSE_PAYLOAD = 0x42007C,
    SL_KMIP_TAG_RESULT_MESSAGE = 0x42007D,
    SL_KMIP_TAG_RESULT_REASON = 0x42007E,
    SL_KMIP_TAG_RESULT_STATUS = 0x42007F,
    SL_KMIP_TAG_REVOCATION_REASON = 0x420081,
    SL_KMIP_TAG_REVOCATION_REASON_CODE = 0x420082,
    SL_KMIP_TAG_TEMPLATE_ATTRIBUTE = 0x420091,
    SL_KMIP_TAG_TIME_STAMP = 0x420092,
    SL_KMIP_TAG_UNIQUE_IDENTIFIER = 0x420094,
    SL_KMIP_TAG_DATA = 0x4200C2,
    SL_KMIP_TAG_TAG_LENGTH = 0x4200CE,
    SL_KMIP_TAG_AE_ADDITIONAL_DATA = 0x4200FE,
    SL_KMIP_TAG_AE_TAG = 0x4200FF,
};

/* Enumeration values (same sources). */
enum {
    SL_KMIP_OP_CREATE = 0x01,
    SL_KMIP_OP_GET_ATTRIBUTES = 0x0B,
    SL_KMIP_OP_ACTIVATE = 0x12,
    SL_KMIP_OP_REVOKE = 0x13,
    SL_KMIP_OP_DESTROY = 0x14,
    SL_KMIP_OP_ENCRYPT = 0x1F,
    SL_KMIP_OP_DECRYPT = 0x20,

    SL_KMIP_STATUS_SUCCESS = 0,
    SL_KMIP_STATUS_FAILED = 1,
    SL_KMIP_STATUS_PENDING = 2,
    SL_KMIP_STATUS_UNDONE = 3,

    SL_KMIP_REASON_ITEM_NOT_FOUND = 0x01,
    SL_KMIP_REASON_RESPONSE_TOO_LARGE = 0x02,
    SL_KMIP_REASON_AUTH_NOT_SUCCESSFUL = 0x03,
    SL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE = 0x0A,
    SL_KMIP_REASON_PERMISSION_DENIED = 0x0C,
    SL_KMIP_REASON_GENERAL_FAILURE = 0x100,

    SL_KMIP_STATE_PRE_ACTIVE = 1,
    SL_KMIP_STATE_ACTIVE = 2,
    SL_KMIP_STATE_DEACTIVATED = 3,
    SL_KMIP_STATE_COMPROMISED = 4,
    SL_KMIP_STATE_DESTROYED = 5,
    SL_KMIP_STATE_DESTROYED_COMPROMISED = 6,
};

#define SL_TTLV_MAX_DEPTH 16
#define SL_TTLV_HEADER    8

/* ---- Encoder ---- */

/* Appends into a malloc'd buffer that grows; the buffer may hold key material (an Encrypt
 * request carries the topic key), so growing and freeing cleanse the old bytes. On allocation
 * failure or misuse (unbalanced structures, too deep, a value over 4 GiB) `err` is set and later
 * writes are dropped: the caller checks once, in sl_ttlv_enc_finish. */
typedef struct sl_ttlv_enc {
    uint8_t *buf;
    size_t len, cap;
    sl_err err;
    int depth;
    size_t open[SL_TTLV_MAX_DEPTH]; /* offsets of the open structures' headers */
} sl_ttlv_enc;

void sl_ttlv_enc_init(sl_ttlv_enc *e);
/* Cleanses and frees the buffer; the encoder may be initialised again. */
void sl_ttlv_enc_free(sl_ttlv_enc *e);
/* SL_OK when every structure is closed and nothing failed; the bytes are e->buf[0..len). */
sl_err sl_ttlv_enc_finish(const sl_ttlv_enc *e);
void sl_ttlv_begin(sl_ttlv_enc *e, uint32_t tag);
void sl_ttlv_end(sl_ttlv_enc *e);
void sl_ttlv_int(sl_ttlv_enc *e, uint32_t tag, int32_t v);
void sl_ttlv_long(sl_ttlv_enc *e, uint32_t tag, int64_t v);
void sl_ttlv_enum(sl_ttlv_enc *e, uint32_t tag, uint32_t v);
void sl_ttlv_bool(sl_ttlv_enc *e, uint32_t tag, bool v);
void sl_ttlv_datetime(sl_ttlv_enc *e, uint32_t tag, int64_t secs);
void sl_ttlv_text(sl_ttlv_enc *e, uint32_t tag, const char *s, size_t n);
void sl_ttlv_bytes(sl_ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t n);

/* ---- Decoder ---- */

/* One decoded item: a view into the decoder's input. `end` is the index just past this item's
 * subtree (so the next sibling), which makes child iteration cheap. */
typedef struct sl_ttlv_item {
    uint32_t tag;
    uint8_t type;
    uint8_t depth;
    uint32_t len; /* value length without padding */
    const uint8_t *val;
    uint32_t end;
} sl_ttlv_item;

typedef struct sl_ttlv_doc {
    const sl_ttlv_item *items;
    uint32_t n;
} sl_ttlv_doc;

/* Decodes `n` bytes holding one or more whole items into items[0..cap), which the caller owns
 * (as it owns `p`, which the views point into). SL_EPROTO when anything is malformed or more
 * than `cap` items are present; then *doc is empty. */
sl_err sl_ttlv_decode(const uint8_t *p, size_t n, sl_ttlv_item *items, uint32_t cap,
                      sl_ttlv_doc *doc);
/* The first child of structure `parent` (-1: the top level) with `tag`, or -1. */
int sl_ttlv_child(const sl_ttlv_doc *d, int parent, uint32_t tag);
/* The next sibling after `prev` (a child of `parent`) with `tag`, or -1. */
int sl_ttlv_next(const sl_ttlv_doc *d, int parent, int prev, uint32_t tag);
/* Typed reads of item `i` (may be -1: then false). False when the type differs. */
bool sl_ttlv_get_u32(const sl_ttlv_doc *d, int i, uint8_t type, uint32_t *v); /* int/enum */
bool sl_ttlv_get_i64(const sl_ttlv_doc *d, int i, uint8_t type, int64_t *v);  /* long/date */
bool sl_ttlv_get_bytes(const sl_ttlv_doc *d, int i, uint8_t type, const uint8_t **p,
                       size_t *n); /* text/bytes: a view */

/* ---- KMIP 1.4 messages (one batch item per request) ----
 * Each builder writes a whole Request Message into `e` (initialised, empty); check
 * sl_ttlv_enc_finish. Protocol version 1.4 because PyKMIP (and the spec) only carry the
 * authenticated-encryption fields (AAD, tag) from 1.4 on. Borrowed arguments only. */
void sl_kmip_req_create(sl_ttlv_enc *e, const char *name);          /* AES-256, encrypt|decrypt */
void sl_kmip_req_uid(sl_ttlv_enc *e, uint32_t op, const char *uid); /* Activate, Destroy */
void sl_kmip_req_get_attributes(sl_ttlv_enc *e, const char *uid);   /* state, algorithm, length */
void sl_kmip_req_revoke(sl_ttlv_enc *e, const char *uid);           /* cessation of operation */
/* AES-GCM with a 16-byte tag, `iv` 12 bytes, `aad` bound as the additional data. */
void sl_kmip_req_encrypt(sl_ttlv_enc *e, const char *uid, const uint8_t *plain, size_t n,
                         const uint8_t iv[12], const uint8_t *aad, size_t aadlen);
void sl_kmip_req_decrypt(sl_ttlv_enc *e, const char *uid, const uint8_t *ct, size_t n,
                         const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                         const uint8_t tag[16]);

/* A decoded Response Message with one batch item. Views into the decoded input. */
typedef struct sl_kmip_resp {
    sl_ttlv_doc doc;
    uint32_t operation;
    uint32_t status;        /* SL_KMIP_STATUS_* */
    uint32_t reason;        /* 0 when absent */
    const uint8_t *message; /* Result Message (not NUL-terminated; may be NULL) */
    size_t message_len;
    int payload; /* index of the Response Payload, -1 when absent */
} sl_kmip_resp;

/* Decodes a whole Response Message (p, n: the 8-byte header included) into `items` (caller's,
 * `cap` entries). SL_EPROTO unless it is a well-formed response with exactly one batch item
 * carrying an operation and a result status. */
sl_err sl_kmip_resp_decode(const uint8_t *p, size_t n, sl_ttlv_item *items, uint32_t cap,
                           sl_kmip_resp *out);
/* Reads the Cryptographic Length (bits), Algorithm and State from a Get Attributes response
 * payload; absent ones stay 0. */
void sl_kmip_resp_attributes(const sl_kmip_resp *r, uint32_t *state, uint32_t *algorithm,
                             uint32_t *length);

#endif
