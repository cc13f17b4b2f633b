/* The TTLV codec and the KMIP 1.4 messages of the kmip KMS provider, held against bytes PyKMIP's
 * own codec produced (fixtures/gen_ttlv_fixtures.py): the requests Sluice builds must be
 * byte-identical to PyKMIP's, and PyKMIP's responses must decode to the values it encoded.
 * Malformed input (truncation, lengths past the end, bad types, padding, nesting, counts) is
 * refused without reading outside the buffer (ASan). */
#include <stdlib.h>
#include <string.h>

#include "fixtures/ttlv_fixtures.h"
#include "kms/sl_ttlv.h"
#include "sl_test.h"

static const uint8_t k_iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static const char k_aad[] = "sluice|kek-test|v1";

static void seq(uint8_t *p, size_t n, uint8_t first) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(first + i);
}

/* 1 when the encoder's output equals `want`. */
static int same(sl_ttlv_enc *e, const uint8_t *want, size_t n) {
    int ok = sl_ttlv_enc_finish(e) == SL_OK && e->len == n && !memcmp(e->buf, want, n);
    if (!ok) {
        fprintf(stderr, "  encoder output (%zu bytes, want %zu):", e->len, n);
        for (size_t i = 0; i < e->len; i++)
            fprintf(stderr, "%s%02x", i % 8 ? "" : " ", (unsigned)e->buf[i]);
        fprintf(stderr, "\n");
    }
    sl_ttlv_enc_free(e);
    return ok;
}

SL_TEST(ttlv_requests_match_pykmip) {
    uint8_t plain[32], ct[32], tag[16];
    seq(plain, 32, 0);
    seq(ct, 32, 0x80);
    seq(tag, 16, 0xE0);
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_create(&e, "sluice-kek-v1");
    CHECK(same(&e, fx_create_req, sizeof fx_create_req));
    sl_kmip_req_uid(&e, SL_KMIP_OP_ACTIVATE, "42");
    CHECK(same(&e, fx_activate_req, sizeof fx_activate_req));
    sl_kmip_req_uid(&e, SL_KMIP_OP_DESTROY, "42");
    CHECK(same(&e, fx_destroy_req, sizeof fx_destroy_req));
    sl_kmip_req_get_attributes(&e, "42");
    CHECK(same(&e, fx_get_attributes_req, sizeof fx_get_attributes_req));
    sl_kmip_req_revoke(&e, "42");
    CHECK(same(&e, fx_revoke_req, sizeof fx_revoke_req));
    sl_kmip_req_encrypt(&e, "42", plain, 32, k_iv, (const uint8_t *)k_aad, strlen(k_aad));
    CHECK(same(&e, fx_encrypt_req, sizeof fx_encrypt_req));
    sl_kmip_req_decrypt(&e, "42", ct, 32, k_iv, (const uint8_t *)k_aad, strlen(k_aad), tag);
    CHECK(same(&e, fx_decrypt_req, sizeof fx_decrypt_req));
}

static sl_ttlv_item g_items[512];

static int bytes_eq(const sl_ttlv_doc *d, int i, uint8_t type, const void *want, size_t n) {
    const uint8_t *p;
    size_t len;
    return sl_ttlv_get_bytes(d, i, type, &p, &len) && len == n && !memcmp(p, want, n);
}

SL_TEST(ttlv_responses_from_pykmip_decode) {
    sl_kmip_resp r;
    CHECK_EQ(sl_kmip_resp_decode(fx_create_resp, sizeof fx_create_resp, g_items, 512, &r), SL_OK);
    CHECK_EQ(r.operation, SL_KMIP_OP_CREATE);
    CHECK_EQ(r.status, SL_KMIP_STATUS_SUCCESS);
    CHECK(r.payload >= 0 && !r.message);
    CHECK(bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_UNIQUE_IDENTIFIER),
                   SL_TTLV_TEXT, "42", 2));
    /* The time stamp is a Date-Time. */
    int hdr = sl_ttlv_child(&r.doc, 0, SL_KMIP_TAG_RESPONSE_HEADER);
    int64_t ts = 0;
    CHECK(sl_ttlv_get_i64(&r.doc, sl_ttlv_child(&r.doc, hdr, SL_KMIP_TAG_TIME_STAMP),
                          SL_TTLV_DATETIME, &ts));
    CHECK_EQ(ts, 1700000000);

    uint8_t plain[32], ct[32], tag[16];
    seq(plain, 32, 0);
    seq(ct, 32, 0x80);
    seq(tag, 16, 0xE0);
    CHECK_EQ(sl_kmip_resp_decode(fx_encrypt_resp, sizeof fx_encrypt_resp, g_items, 512, &r), SL_OK);
    CHECK_EQ(r.operation, SL_KMIP_OP_ENCRYPT);
    CHECK(bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_DATA), SL_TTLV_BYTES, ct,
                   32));
    CHECK(bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_IV_COUNTER_NONCE),
                   SL_TTLV_BYTES, k_iv, 12));
    CHECK(bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_AE_TAG), SL_TTLV_BYTES, tag,
                   16));
    /* Asking for the wrong type is refused, not reinterpreted. */
    CHECK(!bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_DATA), SL_TTLV_TEXT, ct,
                    32));

    CHECK_EQ(sl_kmip_resp_decode(fx_decrypt_resp, sizeof fx_decrypt_resp, g_items, 512, &r), SL_OK);
    CHECK(bytes_eq(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_DATA), SL_TTLV_BYTES, plain,
                   32));

    CHECK_EQ(sl_kmip_resp_decode(fx_get_attributes_resp, sizeof fx_get_attributes_resp, g_items,
                                 512, &r),
             SL_OK);
    uint32_t state, alg, len;
    sl_kmip_resp_attributes(&r, &state, &alg, &len);
    CHECK_EQ(state, SL_KMIP_STATE_ACTIVE);
    CHECK_EQ(alg, 3);
    CHECK_EQ(len, 256);

    CHECK_EQ(sl_kmip_resp_decode(fx_failure_resp, sizeof fx_failure_resp, g_items, 512, &r), SL_OK);
    CHECK_EQ(r.operation, SL_KMIP_OP_DECRYPT);
    CHECK_EQ(r.status, SL_KMIP_STATUS_FAILED);
    CHECK_EQ(r.reason, SL_KMIP_REASON_GENERAL_FAILURE);
    CHECK(r.payload < 0);
    CHECK(r.message_len == 10 && !memcmp(r.message, "InvalidTag", 10));
    CHECK_EQ(sl_kmip_resp_decode(fx_denied_resp, sizeof fx_denied_resp, g_items, 512, &r), SL_OK);
    CHECK_EQ(r.reason, SL_KMIP_REASON_PERMISSION_DENIED);

    /* A request is not a response. */
    CHECK_EQ(sl_kmip_resp_decode(fx_create_req, sizeof fx_create_req, g_items, 512, &r), SL_EPROTO);
}

static const struct {
    const uint8_t *p;
    size_t n;
} k_all[] = {
    {fx_create_req, sizeof fx_create_req},
    {fx_activate_req, sizeof fx_activate_req},
    {fx_encrypt_req, sizeof fx_encrypt_req},
    {fx_decrypt_req, sizeof fx_decrypt_req},
    {fx_get_attributes_req, sizeof fx_get_attributes_req},
    {fx_revoke_req, sizeof fx_revoke_req},
    {fx_destroy_req, sizeof fx_destroy_req},
    {fx_create_resp, sizeof fx_create_resp},
    {fx_encrypt_resp, sizeof fx_encrypt_resp},
    {fx_decrypt_resp, sizeof fx_decrypt_resp},
    {fx_get_attributes_resp, sizeof fx_get_attributes_resp},
    {fx_failure_resp, sizeof fx_failure_resp},
    {fx_denied_resp, sizeof fx_denied_resp},
};

/* Decodes an exact-size heap copy, so ASan sees any read past the end. */
static sl_err decode_copy(const uint8_t *p, size_t n, uint32_t cap) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, p, n);
    sl_ttlv_doc d;
    sl_err e = sl_ttlv_decode(c, n, g_items, cap, &d);
    free(c);
    return e;
}

SL_TEST(ttlv_every_truncation_refused) {
    for (size_t f = 0; f < sizeof k_all / sizeof *k_all; f++) {
        CHECK_EQ(decode_copy(k_all[f].p, k_all[f].n, 512), SL_OK);
        for (size_t cut = 0; cut < k_all[f].n; cut++) {
            if (decode_copy(k_all[f].p, cut, 512) != SL_EPROTO)
                fprintf(stderr, "  fixture %zu accepted cut at %zu\n", f, cut);
            CHECK_EQ(decode_copy(k_all[f].p, cut, 512), SL_EPROTO);
        }
    }
}

/* Every single-byte change either decodes to a consistent document or is refused: never a read
 * outside the input. A change in a header's length or type byte must never be accepted when it
 * makes a value run past its structure (checked by the decoder; here ASan is the judge). */
SL_TEST(ttlv_byte_flips_stay_in_bounds) {
    for (size_t f = 0; f < sizeof k_all / sizeof *k_all; f++) {
        uint8_t *c = malloc(k_all[f].n);
        for (size_t i = 0; i < k_all[f].n; i++) {
            static const uint8_t vals[] = {0x00, 0x01, 0x07, 0x0b, 0x7f, 0x80, 0xff};
            for (size_t v = 0; v < sizeof vals; v++) {
                memcpy(c, k_all[f].p, k_all[f].n);
                c[i] = vals[v];
                sl_ttlv_doc d;
                if (sl_ttlv_decode(c, k_all[f].n, g_items, 512, &d) == SL_OK) {
                    for (uint32_t k = 0; k < d.n; k++) {
                        CHECK(d.items[k].val >= c &&
                              d.items[k].val + d.items[k].len <= c + k_all[f].n);
                        CHECK(d.items[k].end > k && d.items[k].end <= d.n);
                    }
                }
                sl_kmip_resp r;
                (void)sl_kmip_resp_decode(c, k_all[f].n, g_items, 512, &r);
            }
        }
        free(c);
    }
}

/* Builds an item header. */
static void hdr(uint8_t *p, uint32_t tag, uint8_t type, uint32_t len) {
    p[0] = (uint8_t)(tag >> 16);
    p[1] = (uint8_t)(tag >> 8);
    p[2] = (uint8_t)tag;
    p[3] = type;
    p[4] = (uint8_t)(len >> 24);
    p[5] = (uint8_t)(len >> 16);
    p[6] = (uint8_t)(len >> 8);
    p[7] = (uint8_t)len;
}

SL_TEST(ttlv_malformed_refused) {
    uint8_t b[512];
    memset(b, 0, sizeof b);
    /* A well-formed Integer, then variations of it. */
    hdr(b, 0x42006A, SL_TTLV_INT, 4);
    b[11] = 1;
    CHECK_EQ(decode_copy(b, 16, 8), SL_OK);
    CHECK_EQ(decode_copy(b, 16, 0), SL_EPROTO); /* more items than room */
    b[13] = 1;                                  /* padding not zero */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    b[13] = 0;
    hdr(b, 0x42006A, SL_TTLV_INT, 8); /* an Integer is 4 bytes */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, 0x0B, 4); /* no such type */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, 0x00, 4);
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x43006A, SL_TTLV_INT, 4); /* not a KMIP tag */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, SL_TTLV_BYTES, 0xFFFFFFFF); /* length past the end, no wrap-around */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, SL_TTLV_BYTES, 0xFFFFFFF9);
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, SL_TTLV_BYTES, 9); /* padded to 16: past a 16-byte input */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    hdr(b, 0x42006A, SL_TTLV_BOOL, 8);
    memset(b + 8, 0, 8);
    b[15] = 2; /* a Boolean is 0 or 1 */
    CHECK_EQ(decode_copy(b, 16, 8), SL_EPROTO);
    b[15] = 1;
    CHECK_EQ(decode_copy(b, 16, 8), SL_OK);
    CHECK_EQ(decode_copy(b, 17, 8), SL_EPROTO); /* trailing bytes */
    CHECK_EQ(decode_copy(b, 0, 8), SL_EPROTO);  /* nothing */

    /* A child longer than its structure, though within the input. */
    memset(b, 0, sizeof b);
    hdr(b, 0x420078, SL_TTLV_STRUCT, 16);
    hdr(b + 8, 0x420094, SL_TTLV_TEXT, 9);
    CHECK_EQ(decode_copy(b, 48, 8), SL_EPROTO);
    hdr(b + 8, 0x420094, SL_TTLV_TEXT, 8);
    CHECK_EQ(decode_copy(b, 24, 8), SL_OK);
    hdr(b, 0x420078, SL_TTLV_STRUCT, 20); /* structures are whole 8-byte units */
    CHECK_EQ(decode_copy(b, 28, 8), SL_EPROTO);

    /* Nesting: SL_TTLV_MAX_DEPTH structures inside each other are accepted, one more is not. */
    memset(b, 0, sizeof b);
    int levels = SL_TTLV_MAX_DEPTH;
    for (int i = 0; i < levels; i++)
        hdr(b + 8 * i, 0x420078, SL_TTLV_STRUCT, (uint32_t)(8 * (levels - 1 - i)));
    CHECK_EQ(decode_copy(b, (size_t)(8 * levels), 64), SL_OK);
    levels++;
    for (int i = 0; i < levels; i++)
        hdr(b + 8 * i, 0x420078, SL_TTLV_STRUCT, (uint32_t)(8 * (levels - 1 - i)));
    CHECK_EQ(decode_copy(b, (size_t)(8 * levels), 64), SL_EPROTO);

    /* Item cap: exactly as many items as present is enough, one fewer is not. */
    sl_ttlv_doc d;
    CHECK_EQ(sl_ttlv_decode(fx_create_req, sizeof fx_create_req, g_items, 512, &d), SL_OK);
    CHECK_EQ(d.n, 25);
    CHECK_EQ(decode_copy(fx_create_req, sizeof fx_create_req, 24), SL_EPROTO);
    CHECK_EQ(decode_copy(fx_create_req, sizeof fx_create_req, 25), SL_OK);
}

SL_TEST(ttlv_response_shape_checked) {
    sl_kmip_resp r;
    uint8_t c[sizeof fx_create_resp * 2];
    /* Two messages back to back are not one response. */
    memcpy(c, fx_create_resp, sizeof fx_create_resp);
    memcpy(c + sizeof fx_create_resp, fx_create_resp, sizeof fx_create_resp);
    CHECK_EQ(sl_kmip_resp_decode(c, sizeof c, g_items, 512, &r), SL_EPROTO);
    /* A Batch Count other than 1. */
    memcpy(c, fx_create_resp, sizeof fx_create_resp);
    sl_ttlv_doc d;
    CHECK_EQ(sl_ttlv_decode(c, sizeof fx_create_resp, g_items, 512, &d), SL_OK);
    int h = sl_ttlv_child(&d, 0, SL_KMIP_TAG_RESPONSE_HEADER);
    int bc = sl_ttlv_child(&d, h, SL_KMIP_TAG_BATCH_COUNT);
    CHECK(bc > 0);
    size_t off = (size_t)(d.items[bc].val - c);
    c[off + 3] = 2;
    CHECK_EQ(sl_kmip_resp_decode(c, sizeof fx_create_resp, g_items, 512, &r), SL_EPROTO);
}

SL_TEST(ttlv_encoder_misuse_fails) {
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_ttlv_begin(&e, SL_KMIP_TAG_REQUEST_MESSAGE);
    CHECK(sl_ttlv_enc_finish(&e) != SL_OK); /* unclosed */
    sl_ttlv_end(&e);
    CHECK_EQ(sl_ttlv_enc_finish(&e), SL_OK);
    sl_ttlv_end(&e); /* one end too many: sticky */
    sl_ttlv_int(&e, SL_KMIP_TAG_BATCH_COUNT, 1);
    CHECK(sl_ttlv_enc_finish(&e) != SL_OK);
    sl_ttlv_enc_free(&e);
    for (int i = 0; i <= SL_TTLV_MAX_DEPTH; i++) sl_ttlv_begin(&e, SL_KMIP_TAG_REQUEST_MESSAGE);
    CHECK(sl_ttlv_enc_finish(&e) != SL_OK);
    sl_ttlv_enc_free(&e);
    /* What the encoder writes, the decoder reads back: every type, odd lengths padded. */
    sl_ttlv_begin(&e, SL_KMIP_TAG_REQUEST_MESSAGE);
    sl_ttlv_int(&e, SL_KMIP_TAG_BATCH_COUNT, -5);
    sl_ttlv_long(&e, 0x42006A, INT64_MIN);
    sl_ttlv_bool(&e, 0x42006B, true);
    sl_ttlv_datetime(&e, SL_KMIP_TAG_TIME_STAMP, 1700000000);
    sl_ttlv_text(&e, SL_KMIP_TAG_UNIQUE_IDENTIFIER, "abcdefghi", 9);
    sl_ttlv_bytes(&e, SL_KMIP_TAG_DATA, NULL, 0);
    sl_ttlv_end(&e);
    CHECK_EQ(sl_ttlv_enc_finish(&e), SL_OK);
    sl_ttlv_doc d;
    CHECK_EQ(sl_ttlv_decode(e.buf, e.len, g_items, 512, &d), SL_OK);
    CHECK_EQ(d.n, 7);
    uint32_t u;
    int64_t l;
    CHECK(sl_ttlv_get_u32(&d, sl_ttlv_child(&d, 0, SL_KMIP_TAG_BATCH_COUNT), SL_TTLV_INT, &u));
    CHECK_EQ((int32_t)u, -5);
    CHECK(sl_ttlv_get_i64(&d, sl_ttlv_child(&d, 0, 0x42006A), SL_TTLV_LONG, &l));
    CHECK(l == INT64_MIN);
    CHECK(bytes_eq(&d, sl_ttlv_child(&d, 0, SL_KMIP_TAG_UNIQUE_IDENTIFIER), SL_TTLV_TEXT,
                   "abcdefghi", 9));
    CHECK(bytes_eq(&d, sl_ttlv_child(&d, 0, SL_KMIP_TAG_DATA), SL_TTLV_BYTES, "", 0));
    CHECK_EQ(sl_ttlv_child(&d, 0, SL_KMIP_TAG_AE_TAG), -1);
    CHECK_EQ(sl_ttlv_next(&d, 0, sl_ttlv_child(&d, 0, SL_KMIP_TAG_DATA), SL_KMIP_TAG_DATA), -1);
    sl_ttlv_enc_free(&e);
}
