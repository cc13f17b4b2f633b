#include "kms/sl_ttlv.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_buf.h"

/* Requests are small (a topic key and its context); this bounds a runaway builder. */
#define ENC_MAX ((size_t)1 << 20)

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

void sl_ttlv_enc_init(sl_ttlv_enc *e) { memset(e, 0, sizeof *e); }

void sl_ttlv_enc_free(sl_ttlv_enc *e) {
    if (e->buf) {
        OPENSSL_cleanse(e->buf, e->cap);
        free(e->buf);
    }
    memset(e, 0, sizeof *e);
}

sl_err sl_ttlv_enc_finish(const sl_ttlv_enc *e) {
    if (e->err) return e->err;
    return e->depth ? SL_EINVAL : SL_OK;
}

static void enc_fail(sl_ttlv_enc *e, sl_err err) {
    if (!e->err) e->err = err;
}

/* Room for `n` more bytes, zeroed (so padding is zero). Grows by copying into a new buffer and
 * cleansing the old one: realloc could leave key bytes behind in freed memory. */
static uint8_t *enc_reserve(sl_ttlv_enc *e, size_t n) {
    if (e->err) return NULL;
    if (n > ENC_MAX || e->len > ENC_MAX - n) {
        enc_fail(e, SL_ETOOLARGE);
        return NULL;
    }
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 256;
        while (cap < e->len + n) cap *= 2;
        uint8_t *nb = calloc(1, cap);
        if (!nb) {
            enc_fail(e, SL_ENOMEM);
            return NULL;
        }
        if (e->buf) {
            memcpy(nb, e->buf, e->len);
            OPENSSL_cleanse(e->buf, e->cap);
            free(e->buf);
        }
        e->buf = nb;
        e->cap = cap;
    }
    uint8_t *d = e->buf + e->len;
    memset(d, 0, n);
    e->len += n;
    return d;
}

static uint8_t *enc_item(sl_ttlv_enc *e, uint32_t tag, uint8_t type, size_t len) {
    if (len > UINT32_MAX) {
        enc_fail(e, SL_ETOOLARGE);
        return NULL;
    }
    uint8_t *d = enc_reserve(e, SL_TTLV_HEADER + pad8(len));
    if (!d) return NULL;
    d[0] = (uint8_t)(tag >> 16);
    d[1] = (uint8_t)(tag >> 8);
    d[2] = (uint8_t)tag;
    d[3] = type;
    sl_be32(d + 4, (uint32_t)len);
    return d + SL_TTLV_HEADER;
}

void sl_ttlv_begin(sl_ttlv_enc *e, uint32_t tag) {
    if (e->err) return;
    if (e->depth == SL_TTLV_MAX_DEPTH) {
        enc_fail(e, SL_EINVAL);
        return;
    }
    size_t at = e->len;
    if (!enc_item(e, tag, SL_TTLV_STRUCT, 0)) return;
    e->open[e->depth++] = at;
}

void sl_ttlv_end(sl_ttlv_enc *e) {
    if (e->err) return;
    if (!e->depth) {
        enc_fail(e, SL_EINVAL);
        return;
    }
    size_t at = e->open[--e->depth];
    size_t len = e->len - at - SL_TTLV_HEADER;
    if (len > UINT32_MAX) {
        enc_fail(e, SL_ETOOLARGE);
        return;
    }
    sl_be32(e->buf + at + 4, (uint32_t)len);
}

void sl_ttlv_int(sl_ttlv_enc *e, uint32_t tag, int32_t v) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_INT, 4);
    if (d) sl_be32(d, (uint32_t)v);
}

void sl_ttlv_enum(sl_ttlv_enc *e, uint32_t tag, uint32_t v) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_ENUM, 4);
    if (d) sl_be32(d, v);
}

void sl_ttlv_long(sl_ttlv_enc *e, uint32_t tag, int64_t v) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_LONG, 8);
    if (d) sl_be64(d, (uint64_t)v);
}

void sl_ttlv_datetime(sl_ttlv_enc *e, uint32_t tag, int64_t secs) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_DATETIME, 8);
    if (d) sl_be64(d, (uint64_t)secs);
}

void sl_ttlv_bool(sl_ttlv_enc *e, uint32_t tag, bool v) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_BOOL, 8);
    if (d) sl_be64(d, v ? 1 : 0);
}

void sl_ttlv_text(sl_ttlv_enc *e, uint32_t tag, const char *s, size_t n) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_TEXT, n);
    if (d && n) memcpy(d, s, n);
}

void sl_ttlv_bytes(sl_ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t n) {
    uint8_t *d = enc_item(e, tag, SL_TTLV_BYTES, n);
    if (d && n) memcpy(d, p, n);
}

/* ---- Decoder ---- */

static bool zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* The value's shape for its type: fixed sizes, booleans 0 or 1, structures and big integers in
 * whole 8-byte units. Text is not checked for UTF-8 here; the provider prints only printable
 * ASCII from it. */
static bool shape_ok(uint8_t type, const uint8_t *v, uint32_t len) {
    switch (type) {
    case SL_TTLV_STRUCT:
        return len % 8 == 0;
    case SL_TTLV_INT:
    case SL_TTLV_ENUM:
    case SL_TTLV_INTERVAL:
        return len == 4;
    case SL_TTLV_LONG:
    case SL_TTLV_DATETIME:
        return len == 8;
    case SL_TTLV_BOOL:
        return len == 8 && zero(v, 7) && v[7] <= 1;
    case SL_TTLV_BIGINT:
        return len > 0 && len % 8 == 0;
    case SL_TTLV_TEXT:
    case SL_TTLV_BYTES:
        return true;
    default:
        return false;
    }
}

sl_err sl_ttlv_decode(const uint8_t *p, size_t n, sl_ttlv_item *items, uint32_t cap,
                      sl_ttlv_doc *doc) {
    /* ends[d]: where the structure open at depth d stops (ends[0]: the input's end);
     * owner[d]: its item index, whose `end` is set when it closes. */
    const uint8_t *ends[SL_TTLV_MAX_DEPTH + 1];
    uint32_t owner[SL_TTLV_MAX_DEPTH + 1];
    const uint8_t *cur = p;
    uint32_t cnt = 0;
    int depth = 0;
    doc->items = items;
    doc->n = 0;
    ends[0] = p + n;
    owner[0] = 0;
    for (;;) {
        while (depth > 0 && cur == ends[depth]) items[owner[depth--]].end = cnt;
        if (depth == 0 && cur == ends[0]) break;
        size_t left = (size_t)(ends[depth] - cur);
        if (left < SL_TTLV_HEADER) return SL_EPROTO;
        uint32_t tag = (uint32_t)cur[0] << 16 | (uint32_t)cur[1] << 8 | cur[2];
        uint8_t type = cur[3];
        uint32_t len = sl_get_be32(cur + 4);
        /* 0x42: the spec's tags; 0x54: vendor extensions (walked past, never used). */
        if (cur[0] != 0x42 && cur[0] != 0x54) return SL_EPROTO;
        uint64_t padded = ((uint64_t)len + 7) & ~(uint64_t)7;
        if (padded > left - SL_TTLV_HEADER) return SL_EPROTO;
        const uint8_t *val = cur + SL_TTLV_HEADER;
        if (!shape_ok(type, val, len)) return SL_EPROTO;
        if (!zero(val + len, (size_t)(padded - len))) return SL_EPROTO;
        if (cnt == cap) return SL_EPROTO;
        items[cnt] = (sl_ttlv_item){.tag = tag,
                                    .type = type,
                                    .depth = (uint8_t)depth,
                                    .len = len,
                                    .val = val,
                                    .end = cnt + 1};
        if (type == SL_TTLV_STRUCT) {
            if (depth == SL_TTLV_MAX_DEPTH) return SL_EPROTO;
            ends[++depth] = val + len;
            owner[depth] = cnt;
            cur = val;
        } else {
            cur = val + padded;
        }
        cnt++;
    }
    if (!cnt) return SL_EPROTO;
    doc->n = cnt;
    return SL_OK;
}

static int scan(const sl_ttlv_doc *d, int parent, uint32_t from, uint32_t tag) {
    uint32_t stop = parent < 0 ? d->n : d->items[parent].end;
    for (uint32_t i = from; i < stop; i = d->items[i].end)
        if (d->items[i].tag == tag) return (int)i;
    return -1;
}

int sl_ttlv_child(const sl_ttlv_doc *d, int parent, uint32_t tag) {
    if (parent >= (int)d->n) return -1;
    if (parent >= 0 && d->items[parent].type != SL_TTLV_STRUCT) return -1;
    return scan(d, parent, parent < 0 ? 0 : (uint32_t)parent + 1, tag);
}

int sl_ttlv_next(const sl_ttlv_doc *d, int parent, int prev, uint32_t tag) {
    if (prev < 0 || prev >= (int)d->n || parent >= (int)d->n) return -1;
    return scan(d, parent, d->items[prev].end, tag);
}

bool sl_ttlv_get_u32(const sl_ttlv_doc *d, int i, uint8_t type, uint32_t *v) {
    if (i < 0 || i >= (int)d->n || d->items[i].type != type || d->items[i].len != 4) return false;
    *v = sl_get_be32(d->items[i].val);
    return true;
}

bool sl_ttlv_get_i64(const sl_ttlv_doc *d, int i, uint8_t type, int64_t *v) {
    if (i < 0 || i >= (int)d->n || d->items[i].type != type || d->items[i].len != 8) return false;
    *v = (int64_t)sl_get_be64(d->items[i].val);
    return true;
}

bool sl_ttlv_get_bytes(const sl_ttlv_doc *d, int i, uint8_t type, const uint8_t **p, size_t *n) {
    if (i < 0 || i >= (int)d->n || d->items[i].type != type) return false;
    *p = d->items[i].val;
    *n = d->items[i].len;
    return true;
}

/* ---- KMIP messages ---- */

static void req_begin(sl_ttlv_enc *e, uint32_t op) {
    sl_ttlv_begin(e, SL_KMIP_TAG_REQUEST_MESSAGE);
    sl_ttlv_begin(e, SL_KMIP_TAG_REQUEST_HEADER);
    sl_ttlv_begin(e, SL_KMIP_TAG_PROTOCOL_VERSION);
    sl_ttlv_int(e, SL_KMIP_TAG_PROTOCOL_MAJOR, 1);
    sl_ttlv_int(e, SL_KMIP_TAG_PROTOCOL_MINOR, 4);
    sl_ttlv_end(e);
    sl_ttlv_int(e, SL_KMIP_TAG_BATCH_COUNT, 1);
    sl_ttlv_end(e);
    sl_ttlv_begin(e, SL_KMIP_TAG_BATCH_ITEM);
    sl_ttlv_enum(e, SL_KMIP_TAG_OPERATION, op);
    sl_ttlv_begin(e, SL_KMIP_TAG_REQUEST_PAYLOAD);
}

static void req_end(sl_ttlv_enc *e) {
    sl_ttlv_end(e); /* payload */
    sl_ttlv_end(e); /* batch item */
    sl_ttlv_end(e); /* message */
}

static void text_c(sl_ttlv_enc *e, uint32_t tag, const char *s) {
    sl_ttlv_text(e, tag, s, strlen(s));
}

static void attr_begin(sl_ttlv_enc *e, const char *name) {
    sl_ttlv_begin(e, SL_KMIP_TAG_ATTRIBUTE);
    text_c(e, SL_KMIP_TAG_ATTRIBUTE_NAME, name);
}

void sl_kmip_req_create(sl_ttlv_enc *e, const char *name) {
    enum {
        OBJ_SYMMETRIC_KEY = 2,
        ALG_AES = 3,
        USAGE_ENCRYPT = 4,
        USAGE_DECRYPT = 8,
        NAME_TEXT = 1
    };
    req_begin(e, SL_KMIP_OP_CREATE);
    sl_ttlv_enum(e, SL_KMIP_TAG_OBJECT_TYPE, OBJ_SYMMETRIC_KEY);
    sl_ttlv_begin(e, SL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    attr_begin(e, "Cryptographic Algorithm");
    sl_ttlv_enum(e, SL_KMIP_TAG_ATTRIBUTE_VALUE, ALG_AES);
    sl_ttlv_end(e);
    attr_begin(e, "Cryptographic Length");
    sl_ttlv_int(e, SL_KMIP_TAG_ATTRIBUTE_VALUE, 256);
    sl_ttlv_end(e);
    attr_begin(e, "Cryptographic Usage Mask");
    sl_ttlv_int(e, SL_KMIP_TAG_ATTRIBUTE_VALUE, USAGE_ENCRYPT | USAGE_DECRYPT);
    sl_ttlv_end(e);
    if (name && *name) {
        attr_begin(e, "Name");
        sl_ttlv_begin(e, SL_KMIP_TAG_ATTRIBUTE_VALUE);
        text_c(e, SL_KMIP_TAG_NAME_VALUE, name);
        sl_ttlv_enum(e, SL_KMIP_TAG_NAME_TYPE, NAME_TEXT);
        sl_ttlv_end(e);
        sl_ttlv_end(e);
    }
    sl_ttlv_end(e);
    req_end(e);
}

void sl_kmip_req_uid(sl_ttlv_enc *e, uint32_t op, const char *uid) {
    req_begin(e, op);
    text_c(e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    req_end(e);
}

void sl_kmip_req_get_attributes(sl_ttlv_enc *e, const char *uid) {
    req_begin(e, SL_KMIP_OP_GET_ATTRIBUTES);
    text_c(e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    text_c(e, SL_KMIP_TAG_ATTRIBUTE_NAME, "State");
    text_c(e, SL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Algorithm");
    text_c(e, SL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Length");
    req_end(e);
}

void sl_kmip_req_revoke(sl_ttlv_enc *e, const char *uid) {
    enum { CESSATION_OF_OPERATION = 6 };
    req_begin(e, SL_KMIP_OP_REVOKE);
    text_c(e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    sl_ttlv_begin(e, SL_KMIP_TAG_REVOCATION_REASON);
    sl_ttlv_enum(e, SL_KMIP_TAG_REVOCATION_REASON_CODE, CESSATION_OF_OPERATION);
    sl_ttlv_end(e);
    req_end(e);
}

/* Cryptographic Parameters: the spec orders Block Cipher Mode before Cryptographic Algorithm
 * before Tag Length, and servers parse in that order. */
static void gcm_params(sl_ttlv_enc *e) {
    enum { MODE_GCM = 9, ALG_AES = 3 };
    sl_ttlv_begin(e, SL_KMIP_TAG_CRYPTO_PARAMETERS);
    sl_ttlv_enum(e, SL_KMIP_TAG_BLOCK_CIPHER_MODE, MODE_GCM);
    sl_ttlv_enum(e, SL_KMIP_TAG_CRYPTO_ALGORITHM, ALG_AES);
    sl_ttlv_int(e, SL_KMIP_TAG_TAG_LENGTH, 16);
    sl_ttlv_end(e);
}

void sl_kmip_req_encrypt(sl_ttlv_enc *e, const char *uid, const uint8_t *plain, size_t n,
                         const uint8_t iv[12], const uint8_t *aad, size_t aadlen) {
    req_begin(e, SL_KMIP_OP_ENCRYPT);
    text_c(e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    gcm_params(e);
    sl_ttlv_bytes(e, SL_KMIP_TAG_DATA, plain, n);
    sl_ttlv_bytes(e, SL_KMIP_TAG_IV_COUNTER_NONCE, iv, 12);
    sl_ttlv_bytes(e, SL_KMIP_TAG_AE_ADDITIONAL_DATA, aad, aadlen);
    req_end(e);
}

void sl_kmip_req_decrypt(sl_ttlv_enc *e, const char *uid, const uint8_t *ct, size_t n,
                         const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                         const uint8_t tag[16]) {
    req_begin(e, SL_KMIP_OP_DECRYPT);
    text_c(e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    gcm_params(e);
    sl_ttlv_bytes(e, SL_KMIP_TAG_DATA, ct, n);
    sl_ttlv_bytes(e, SL_KMIP_TAG_IV_COUNTER_NONCE, iv, 12);
    sl_ttlv_bytes(e, SL_KMIP_TAG_AE_ADDITIONAL_DATA, aad, aadlen);
    sl_ttlv_bytes(e, SL_KMIP_TAG_AE_TAG, tag, 16);
    req_end(e);
}

sl_err sl_kmip_resp_decode(const uint8_t *p, size_t n, sl_ttlv_item *items, uint32_t cap,
                           sl_kmip_resp *out) {
    memset(out, 0, sizeof *out);
    out->payload = -1;
    sl_ttlv_doc *d = &out->doc;
    if (sl_ttlv_decode(p, n, items, cap, d)) return SL_EPROTO;
    /* Exactly one top-level Response Message. */
    if (d->items[0].tag != SL_KMIP_TAG_RESPONSE_MESSAGE || d->items[0].type != SL_TTLV_STRUCT ||
        d->items[0].end != d->n)
        return SL_EPROTO;
    int hdr = sl_ttlv_child(d, 0, SL_KMIP_TAG_RESPONSE_HEADER);
    int bi = sl_ttlv_child(d, 0, SL_KMIP_TAG_BATCH_ITEM);
    if (hdr < 0 || bi < 0 || sl_ttlv_next(d, 0, bi, SL_KMIP_TAG_BATCH_ITEM) >= 0) return SL_EPROTO;
    uint32_t count = 0;
    if (!sl_ttlv_get_u32(d, sl_ttlv_child(d, hdr, SL_KMIP_TAG_BATCH_COUNT), SL_TTLV_INT, &count) ||
        count != 1)
        return SL_EPROTO;
    if (!sl_ttlv_get_u32(d, sl_ttlv_child(d, bi, SL_KMIP_TAG_RESULT_STATUS), SL_TTLV_ENUM,
                         &out->status))
        return SL_EPROTO;
    /* A server answering a message it could not parse may leave the operation out. */
    sl_ttlv_get_u32(d, sl_ttlv_child(d, bi, SL_KMIP_TAG_OPERATION), SL_TTLV_ENUM, &out->operation);
    sl_ttlv_get_u32(d, sl_ttlv_child(d, bi, SL_KMIP_TAG_RESULT_REASON), SL_TTLV_ENUM, &out->reason);
    if (!sl_ttlv_get_bytes(d, sl_ttlv_child(d, bi, SL_KMIP_TAG_RESULT_MESSAGE), SL_TTLV_TEXT,
                           &out->message, &out->message_len)) {
        out->message = NULL;
        out->message_len = 0;
    }
    out->payload = sl_ttlv_child(d, bi, SL_KMIP_TAG_RESPONSE_PAYLOAD);
    if (out->payload >= 0 && d->items[out->payload].type != SL_TTLV_STRUCT) return SL_EPROTO;
    return SL_OK;
}

static bool name_is(const sl_ttlv_doc *d, int attr, const char *want) {
    const uint8_t *p;
    size_t n;
    return sl_ttlv_get_bytes(d, sl_ttlv_child(d, attr, SL_KMIP_TAG_ATTRIBUTE_NAME), SL_TTLV_TEXT,
                             &p, &n) &&
           n == strlen(want) && !memcmp(p, want, n);
}

void sl_kmip_resp_attributes(const sl_kmip_resp *r, uint32_t *state, uint32_t *algorithm,
                             uint32_t *length) {
    *state = *algorithm = *length = 0;
    const sl_ttlv_doc *d = &r->doc;
    if (r->payload < 0) return;
    for (int a = sl_ttlv_child(d, r->payload, SL_KMIP_TAG_ATTRIBUTE); a >= 0;
         a = sl_ttlv_next(d, r->payload, a, SL_KMIP_TAG_ATTRIBUTE)) {
        int v = sl_ttlv_child(d, a, SL_KMIP_TAG_ATTRIBUTE_VALUE);
        if (name_is(d, a, "State"))
            sl_ttlv_get_u32(d, v, SL_TTLV_ENUM, state);
        else if (name_is(d, a, "Cryptographic Algorithm"))
            sl_ttlv_get_u32(d, v, SL_TTLV_ENUM, algorithm);
        else if (name_is(d, a, "Cryptographic Length"))
            sl_ttlv_get_u32(d, v, SL_TTLV_INT, length);
    }
}
