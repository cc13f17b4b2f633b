/* Segment frame codec (src/storage/sl_frame.h): what the log writes decodes to the same header,
 * every header byte is covered by the checks, and the encryption slots are refused by this
 * build rather than misread. */
#include <stdint.h>
#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_frame.h"

SL_TEST(frame_encode_decode_roundtrip) {
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame enc, dec;
    size_t n = sl_frame_encode_batch(h, 1234567, 9, 10, 1700000000123, 500, &enc);
    CHECK_EQ(n, SL_FRAME_HDR_MIN);
    CHECK_EQ(enc.hlen, SL_FRAME_HDR_MIN);
    CHECK_EQ(enc.flen, SL_FRAME_HDR_MIN + 500);
    CHECK_EQ(sl_frame_decode(h, n, &dec), SL_FRAME_OK);
    CHECK_EQ(dec.flags, 0);
    CHECK_EQ(dec.hlen, enc.hlen);
    CHECK_EQ(dec.flen, enc.flen);
    CHECK_EQ(dec.plen, 500);
    CHECK_EQ(dec.key_id, 0);
    CHECK_EQ(dec.nlen, 0);
    CHECK_EQ(dec.tlen, 0);
    CHECK_EQ(dec.base, 1234567);
    CHECK_EQ(dec.lod, 9);
    CHECK_EQ(dec.count, 10);
    CHECK_EQ(dec.max_ts, 1700000000123);
    CHECK(dec.nonce == NULL);
    /* The layout is the documented one (docs/on-disk-format.md). */
    CHECK_EQ(h[0], 0xA5);
    CHECK_EQ(h[1], 1);
    CHECK_EQ(sl_get_be32(h + 8), SL_FRAME_HDR_MIN + 500);
    CHECK_EQ((int64_t)sl_get_be64(h + 20), 1234567);
    CHECK_EQ(sl_get_be32(h + 48), sl_crc32c(0, h, 48));
}

SL_TEST(frame_decode_short_input_asks_for_more) {
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame f;
    sl_frame_encode_batch(h, 0, 0, 1, 0, 100, NULL);
    for (size_t avail = 0; avail < SL_FRAME_HDR_MIN; avail++)
        CHECK_EQ(sl_frame_decode(h, avail, &f), SL_FRAME_SHORT);
    CHECK_EQ(sl_frame_decode(h, SL_FRAME_HDR_MIN, &f), SL_FRAME_OK);
}

/* Every bit of the header is either checked directly or covered by the header CRC. */
SL_TEST(frame_decode_rejects_every_header_bit_flip) {
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame f;
    sl_frame_encode_batch(h, 77, 3, 4, 5, 200, NULL);
    for (int i = 0; i < SL_FRAME_HDR_MIN * 8; i++) {
        h[i / 8] ^= (uint8_t)(1u << (i % 8));
        sl_frame_status r = sl_frame_decode(h, SL_FRAME_HDR_MAX, &f);
        h[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (r == SL_FRAME_OK) {
            fprintf(stderr, "  bit %d flipped still decodes\n", i);
            CHECK(r != SL_FRAME_OK);
        }
    }
    CHECK_EQ(sl_frame_decode(h, SL_FRAME_HDR_MAX, &f), SL_FRAME_OK);
}

/* Re-encodes a header with one field changed and a valid CRC, so only the semantic checks can
 * refuse it. */
static sl_frame_status decode_with(sl_frame g) {
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame f;
    if (!sl_frame_encode(h, &g)) return SL_FRAME_CORRUPT;
    return sl_frame_decode(h, SL_FRAME_HDR_MAX, &f);
}

SL_TEST(frame_decode_checks_fields_behind_a_valid_crc) {
    sl_frame ok = {.base = 10, .lod = 2, .count = 3, .max_ts = 4, .plen = 100};
    CHECK_EQ(decode_with(ok), SL_FRAME_OK);
    sl_frame g = ok;
    g.plen = SL_BATCH_HEADER_SIZE - 1; /* smaller than any v2 batch */
    CHECK_EQ(decode_with(g), SL_FRAME_CORRUPT);
    g = ok;
    g.plen = SL_BATCH_HEADER_SIZE;
    CHECK_EQ(decode_with(g), SL_FRAME_OK);
    g = ok;
    g.lod = -1;
    CHECK_EQ(decode_with(g), SL_FRAME_CORRUPT);
    g = ok;
    g.count = -1;
    CHECK_EQ(decode_with(g), SL_FRAME_CORRUPT);
    g = ok;
    g.base = -1;
    CHECK_EQ(decode_with(g), SL_FRAME_CORRUPT);
    g = ok;
    g.base = INT64_MAX - 2; /* last offset + 1 would overflow */
    CHECK_EQ(decode_with(g), SL_FRAME_CORRUPT);

    /* A frame length that disagrees with H + P + T, with the CRC recomputed. */
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame f;
    sl_frame_encode_batch(h, 0, 0, 1, 0, 100, NULL);
    sl_be32(h + 8, SL_FRAME_HDR_MIN + 101);
    sl_be32(h + 48, sl_crc32c(0, h, 48));
    CHECK_EQ(sl_frame_decode(h, sizeof h, &f), SL_FRAME_CORRUPT);
    /* Reserved bytes must stay zero. */
    sl_frame_encode_batch(h, 0, 0, 1, 0, 100, NULL);
    sl_be32(h + 44, 1);
    sl_be32(h + 48, sl_crc32c(0, h, 48));
    CHECK_EQ(sl_frame_decode(h, sizeof h, &f), SL_FRAME_CORRUPT);
}

/* The encryption slots are encoded where the format puts them, and this (plaintext-only) build
 * refuses such a frame instead of handing ciphertext on as a batch. */
SL_TEST(frame_encryption_slots_encoded_and_refused) {
    uint8_t nonce[12];
    for (int i = 0; i < 12; i++) nonce[i] = (uint8_t)(0x10 + i);
    sl_frame g = {.flags = SL_FRAME_FLAG_ENC,
                  .key_id = 42,
                  .nlen = sizeof nonce,
                  .tlen = 16,
                  .nonce = nonce,
                  .base = 5,
                  .lod = 0,
                  .count = 1,
                  .max_ts = 0,
                  .plen = 100};
    uint8_t h[SL_FRAME_HDR_MAX];
    size_t n = sl_frame_encode(h, &g);
    CHECK_EQ(n, SL_FRAME_HDR_MIN + sizeof nonce);
    CHECK_EQ(g.hlen, n);
    CHECK_EQ(g.flen, n + 100 + 16);
    CHECK_EQ(sl_get_be16(h + 2), SL_FRAME_FLAG_ENC);
    CHECK_EQ(sl_get_be16(h + 4), n);
    CHECK_EQ(h[6], sizeof nonce);
    CHECK_EQ(h[7], 16);
    CHECK_EQ(sl_get_be32(h + 12), 42);
    CHECK(memcmp(h + SL_FRAME_FIXED, nonce, sizeof nonce) == 0);
    CHECK_EQ(sl_get_be32(h + n - 4), sl_crc32c(0, h, n - 4)); /* CRC covers the nonce */
    sl_frame f;
    CHECK_EQ(sl_frame_decode(h, n - 1, &f), SL_FRAME_SHORT);
    CHECK_EQ(sl_frame_decode(h, n, &f), SL_FRAME_CORRUPT);
    /* Out-of-range slots cannot be encoded. */
    g.nlen = SL_FRAME_NONCE_MAX + 1;
    CHECK_EQ(sl_frame_encode(h, &g), 0);
    g.nlen = 0;
    g.tlen = SL_FRAME_TAG_MAX + 1;
    CHECK_EQ(sl_frame_encode(h, &g), 0);
}

SL_TEST(frame_payload_must_be_the_described_batch) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = sl_batch_build(a, 1000, 3, "xyz", 3, &len);
    CHECK(b);
    sl_be64(b, 40); /* base offset as the log assigns it (outside the CRC) */
    uint8_t h[SL_FRAME_HDR_MAX];
    sl_frame f;
    sl_frame_encode_batch(h, 40, 2, 3, 1002, (uint32_t)len, &f);
    CHECK(sl_frame_payload_ok(&f, b));
    sl_frame g = f;
    g.base = 41;
    CHECK(!sl_frame_payload_ok(&g, b));
    g = f;
    g.lod = 1;
    CHECK(!sl_frame_payload_ok(&g, b));
    g = f;
    g.plen = (uint32_t)len - 1;
    CHECK(!sl_frame_payload_ok(&g, b));
    b[len - 1] ^= 1; /* a record byte: only the batch CRC notices */
    CHECK(!sl_frame_payload_ok(&f, b));
    sl_arena_free(a);
}
