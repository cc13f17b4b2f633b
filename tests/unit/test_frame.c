/* Segment frame codec (src/storage/sl_frame.h): what the log writes decodes to the same header,
 * every header byte is covered by the checks, only the one supported encryption slot layout is
 * accepted, and the segment envelope codec is bounded and fully checked. */
#include <stdint.h>
#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_envelope.h"
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

/* The encryption slots are encoded where the format puts them; an AES-256-GCM frame (nonce 12,
 * tag 16, key id != 0) decodes with its ct_crc, and every other slot combination is refused
 * rather than misread (a short tag would weaken GCM; a key id on a clear frame is damage). */
SL_TEST(frame_encryption_slots_encoded_and_checked) {
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
                  .plen = 100,
                  .ct_crc = 0xdeadbeef};
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
    CHECK_EQ(sl_get_be32(h + 44), 0xdeadbeef); /* the reserved word carries ct_crc */
    CHECK(memcmp(h + SL_FRAME_FIXED, nonce, sizeof nonce) == 0);
    CHECK_EQ(sl_get_be32(h + n - 4), sl_crc32c(0, h, n - 4)); /* CRC covers the nonce */
    sl_frame f;
    CHECK_EQ(sl_frame_decode(h, n - 1, &f), SL_FRAME_SHORT);
    CHECK_EQ(sl_frame_decode(h, n, &f), SL_FRAME_OK);
    CHECK_EQ(f.flags, SL_FRAME_FLAG_ENC);
    CHECK_EQ(f.key_id, 42);
    CHECK_EQ(f.ct_crc, 0xdeadbeef);
    CHECK_EQ(f.flen, n + 116);
    CHECK(f.nonce == h + SL_FRAME_FIXED);
    /* Every bit of an encrypted header is checked too. */
    for (size_t i = 0; i < n * 8; i++) {
        h[i / 8] ^= (uint8_t)(1u << (i % 8));
        sl_frame_status r = sl_frame_decode(h, n, &f);
        h[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (r == SL_FRAME_OK) fprintf(stderr, "  bit %zu flipped still decodes\n", i);
        CHECK(r != SL_FRAME_OK);
    }
    /* Other slot sizes, key id 0, other flags, or a clear frame with a slot or ct_crc. */
    sl_frame bad = g;
    bad.tlen = 12;
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    uint8_t nonce16[16] = {0};
    bad = g;
    bad.nlen = 16;
    bad.nonce = nonce16;
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    bad = g;
    bad.key_id = 0;
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    bad = g;
    bad.flags = SL_FRAME_FLAG_ENC | 2;
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    bad = (sl_frame){.base = 5, .count = 1, .plen = 100, .key_id = 42};
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    bad = (sl_frame){.base = 5, .count = 1, .plen = 100, .tlen = 16};
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    bad = (sl_frame){.base = 5, .count = 1, .plen = 100, .nlen = 12, .nonce = nonce};
    CHECK_EQ(decode_with(bad), SL_FRAME_CORRUPT);
    /* Out-of-range slots cannot be encoded. */
    g.nlen = SL_FRAME_NONCE_MAX + 1;
    CHECK_EQ(sl_frame_encode(h, &g), 0);
    g.nlen = 0;
    g.tlen = SL_FRAME_TAG_MAX + 1;
    CHECK_EQ(sl_frame_encode(h, &g), 0);
}

/* Without any key, an encrypted frame's payload is validated by its clear batch header fields and
 * ct_crc over payload || tag; every byte of payload and tag is covered. */
SL_TEST(frame_encrypted_payload_checked_without_key) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = sl_batch_build(a, 1000, 3, "xyz", 3, &len);
    CHECK(b);
    sl_be64(b, 40);
    uint8_t *buf = sl_arena_alloc(a, len + 16);
    memcpy(buf, b, len);
    buf[SL_BATCH_CRC] ^= 0x55; /* as if sealed: the batch CRC no longer matches */
    buf[len - 1] ^= 0x55;
    for (int i = 0; i < 16; i++) buf[len + (size_t)i] = (uint8_t)i;
    uint8_t nonce[12] = {0};
    sl_frame f = {.flags = SL_FRAME_FLAG_ENC,
                  .key_id = 7,
                  .nlen = 12,
                  .tlen = 16,
                  .nonce = nonce,
                  .base = 40,
                  .lod = 2,
                  .count = 3,
                  .plen = (uint32_t)len};
    f.ct_crc = sl_crc32c(0, buf, len + 16);
    CHECK(sl_frame_payload_ok(&f, buf));
    for (size_t i = 0; i < len + 16; i++) {
        buf[i] ^= 0x01;
        bool ok = sl_frame_payload_ok(&f, buf);
        buf[i] ^= 0x01;
        CHECK(!ok);
    }
    sl_frame g = f;
    g.base = 41;
    g.ct_crc = f.ct_crc;
    CHECK(!sl_frame_payload_ok(&g, buf));
    sl_arena_free(a);
}

/* Envelope codec: round trip, every byte covered (CRC or checks), lengths bounded. */
SL_TEST(frame_envelope_roundtrip_and_damage) {
    sl_envelope e = {.alg = SL_ENV_ALG_AES256GCM,
                     .dek_id = 0x01020304,
                     .partition = 7,
                     .seg_base = 123456789,
                     .tk_version = 3,
                     .wrapped_len = 40};
    for (int i = 0; i < 16; i++) e.topic_id[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 40; i++) e.wrapped[i] = (uint8_t)(i * 7);
    uint8_t out[SL_ENV_MAX];
    size_t n = sl_envelope_encode(&e, out, sizeof out);
    CHECK_EQ(n, 44 + 40 + 4);
    CHECK_EQ(sl_envelope_encode(&e, out, n - 1), 0);
    sl_envelope d;
    CHECK_EQ(sl_envelope_decode(out, n, &d), SL_FRAME_OK);
    CHECK(d.alg == e.alg && d.dek_id == e.dek_id && d.partition == e.partition &&
          d.seg_base == e.seg_base && d.tk_version == e.tk_version &&
          d.wrapped_len == e.wrapped_len && !memcmp(d.topic_id, e.topic_id, 16) &&
          !memcmp(d.wrapped, e.wrapped, 40));
    for (size_t i = 0; i < n * 8; i++) {
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
        sl_frame_status r = sl_envelope_decode(out, n, &d);
        out[i / 8] ^= (uint8_t)(1u << (i % 8));
        CHECK_EQ(r, SL_FRAME_CORRUPT);
    }
    for (size_t k = 0; k < n; k++) CHECK_EQ(sl_envelope_decode(out, k, &d), SL_FRAME_CORRUPT);
    uint8_t big[SL_ENV_MAX + 8];
    memcpy(big, out, n);
    memset(big + n, 0, sizeof big - n);
    CHECK_EQ(sl_envelope_decode(big, n + 1, &d), SL_FRAME_CORRUPT);
    CHECK_EQ(sl_envelope_decode(big, sizeof big, &d), SL_FRAME_CORRUPT);
    /* What cannot be valid is not encoded either. */
    sl_envelope b = e;
    b.dek_id = 0;
    CHECK_EQ(sl_envelope_encode(&b, out, sizeof out), 0);
    b = e;
    b.alg = 2;
    CHECK_EQ(sl_envelope_encode(&b, out, sizeof out), 0);
    b = e;
    b.wrapped_len = SL_ENV_WRAPPED_MAX + 1;
    CHECK_EQ(sl_envelope_encode(&b, out, sizeof out), 0);
    b = e;
    b.wrapped_len = 0;
    CHECK_EQ(sl_envelope_encode(&b, out, sizeof out), 0);
    b = e;
    b.tk_version = 0;
    CHECK_EQ(sl_envelope_encode(&b, out, sizeof out), 0);
    b = e;
    b.wrapped_len = SL_ENV_WRAPPED_MAX;
    n = sl_envelope_encode(&b, out, sizeof out);
    CHECK(n > 0 && n <= SL_ENV_MAX);
    CHECK_EQ(sl_envelope_decode(out, n, &d), SL_FRAME_OK);
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
