/* Codecs: round trips, the framings Kafka clients use, and bounded decompression. */
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/sl_arena.h"
#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "sl_test.h"

static uint8_t *sample(size_t n, int random) {
    uint8_t *p = malloc(n ? n : 1);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = random ? (uint8_t)x : (uint8_t)("sluice-kafka "[i % 13]);
    }
    return p;
}

static const int k_codecs[] = {SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY, SL_COMPRESSION_LZ4,
                               SL_COMPRESSION_ZSTD};

SL_TEST(compress_round_trip_all_codecs) {
    const size_t sizes[] = {0, 1, 100, 32 * 1024, 32 * 1024 + 1, 300000};
    for (int ci = 0; ci < 4; ci++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (int rnd = 0; rnd < 2; rnd++) {
                sl_arena *a = sl_arena_new(4096);
                uint8_t *in = sample(sizes[si], rnd);
                uint8_t *z, *back;
                size_t zlen, blen;
                CHECK_EQ(sl_compress(k_codecs[ci], in, sizes[si], a, 0, &z, &zlen), SL_OK);
                if (!rnd && sizes[si] > 1000) CHECK(zlen < sizes[si] / 2);
                CHECK_EQ(sl_decompress(k_codecs[ci], z, zlen, a, sizes[si], &back, &blen), SL_OK);
                CHECK_EQ(blen, sizes[si]);
                CHECK(sizes[si] == 0 || memcmp(back, in, blen) == 0);
                free(in);
                sl_arena_free(a);
            }
}

SL_TEST(compress_framings_kafka_clients_use) {
    sl_arena *a = sl_arena_new(4096);
    uint8_t *in = sample(100000, 0), *z, *out;
    size_t zlen, olen;
    /* gzip wrapper (magic 1f 8b) and xerial snappy header. */
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, in, 100000, a, 0, &z, &zlen), SL_OK);
    CHECK(z[0] == 0x1f && z[1] == 0x8b);
    CHECK_EQ(sl_compress(SL_COMPRESSION_SNAPPY, in, 100000, a, 0, &z, &zlen), SL_OK);
    CHECK(memcmp(z, "\x82SNAPPY\0", 8) == 0);
    /* zlib wrapper is accepted too. */
    uLongf cl = compressBound(100000);
    uint8_t *zz = sl_arena_alloc(a, cl);
    CHECK_EQ(compress(zz, &cl, in, 100000), Z_OK);
    CHECK_EQ(sl_decompress(SL_COMPRESSION_GZIP, zz, cl, a, 100000, &out, &olen), SL_OK);
    CHECK(olen == 100000 && memcmp(out, in, olen) == 0);
    /* Raw snappy (no xerial header), as some clients send. */
    size_t sl = snappy_max_compressed_length(100000);
    char *sz = sl_arena_alloc(a, sl);
    CHECK_EQ(snappy_compress((const char *)in, 100000, sz, &sl), SNAPPY_OK);
    CHECK_EQ(sl_decompress(SL_COMPRESSION_SNAPPY, (uint8_t *)sz, sl, a, 100000, &out, &olen),
             SL_OK);
    CHECK(olen == 100000 && memcmp(out, in, olen) == 0);
    /* Two concatenated gzip members decode as one stream. */
    uint8_t *g1, *g2;
    size_t l1, l2;
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, in, 500, a, 0, &g1, &l1), SL_OK);
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, in + 500, 700, a, 0, &g2, &l2), SL_OK);
    uint8_t *cat = sl_arena_alloc(a, l1 + l2);
    memcpy(cat, g1, l1);
    memcpy(cat + l1, g2, l2);
    CHECK_EQ(sl_decompress(SL_COMPRESSION_GZIP, cat, l1 + l2, a, 1200, &out, &olen), SL_OK);
    CHECK(olen == 1200 && memcmp(out, in, 1200) == 0);
    free(in);
    sl_arena_free(a);
}

SL_TEST(compress_xxh32_matches_lz4_frames) {
    CHECK_EQ(sl_xxh32("", 0, 0), 0x02CC5D05u);
    sl_arena *a = sl_arena_new(4096);
    uint8_t *in = sample(1000, 1), *z;
    size_t zlen;
    CHECK_EQ(sl_compress(SL_COMPRESSION_LZ4, in, 1000, a, 0, &z, &zlen), SL_OK);
    /* liblz4 wrote the descriptor checksum; ours must agree. */
    CHECK_EQ(z[6], (uint8_t)(sl_xxh32(z + 4, 2, 0) >> 8));
    free(in);
    sl_arena_free(a);
}

SL_TEST(compress_lz4_broken_header_checksum) {
    sl_arena *a = sl_arena_new(4096);
    uint8_t *in = sample(5000, 0), *z, *out;
    size_t zlen, olen;
    CHECK_EQ(sl_compress(SL_COMPRESSION_LZ4, in, 5000, a, SL_COMPRESS_LZ4_BROKEN_HC, &z, &zlen),
             SL_OK);
    /* The pre-0.10 checksum covers the magic number too. */
    CHECK_EQ(z[6], (uint8_t)(sl_xxh32(z, 6, 0) >> 8));
    CHECK(z[6] != (uint8_t)(sl_xxh32(z + 4, 2, 0) >> 8));
    /* liblz4 alone refuses such a frame; we accept it. */
    LZ4F_dctx *d;
    CHECK(!LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
    uint8_t tmp[8192];
    size_t dsz = sizeof tmp, ssz = zlen;
    size_t r = LZ4F_decompress(d, tmp, &dsz, z, &ssz, NULL);
    LZ4F_freeDecompressionContext(d);
    CHECK(LZ4F_isError(r));
    CHECK_EQ(sl_decompress(SL_COMPRESSION_LZ4, z, zlen, a, 5000, &out, &olen), SL_OK);
    CHECK(olen == 5000 && memcmp(out, in, 5000) == 0);
    /* A checksum that is neither is corruption. */
    z[6] ^= 0x5a;
    if (z[6] != (uint8_t)(sl_xxh32(z, 6, 0) >> 8) && z[6] != (uint8_t)(sl_xxh32(z + 4, 2, 0) >> 8))
        CHECK_EQ(sl_decompress(SL_COMPRESSION_LZ4, z, zlen, a, 5000, &out, &olen), SL_ECORRUPT);
    free(in);
    sl_arena_free(a);
}

SL_TEST(compress_bombs_are_bounded) {
    const size_t big = 8u << 20;
    uint8_t *zeros = calloc(1, big);
    CHECK(zeros);
    for (int ci = 0; ci < 4; ci++) {
        sl_arena *a = sl_arena_new(4096);
        uint8_t *z, *out = NULL;
        size_t zlen, olen = 0;
        CHECK_EQ(sl_compress(k_codecs[ci], zeros, big, a, 0, &z, &zlen), SL_OK);
        CHECK(zlen < big / 10); /* snappy manages about 1:20 on zeros */
        size_t used = sl_arena_used(a);
        CHECK_EQ(sl_decompress(k_codecs[ci], z, zlen, a, big - 1, &out, &olen), SL_ETOOLARGE);
        CHECK_EQ(sl_decompress(k_codecs[ci], z, zlen, a, 1000, &out, &olen), SL_ETOOLARGE);
        /* A refused bomb leaves nothing in the arena. */
        CHECK_EQ(sl_arena_used(a), used);
        /* Exactly the limit is fine. */
        CHECK_EQ(sl_decompress(k_codecs[ci], z, zlen, a, big, &out, &olen), SL_OK);
        CHECK_EQ(olen, big);
        sl_arena_free(a);
    }
    free(zeros);
}

SL_TEST(compress_corrupt_and_truncated_inputs) {
    uint8_t *in = sample(70000, 1);
    for (int ci = 0; ci < 4; ci++) {
        sl_arena *a = sl_arena_new(4096);
        uint8_t *z, *out;
        size_t zlen, olen;
        CHECK_EQ(sl_compress(k_codecs[ci], in, 70000, a, 0, &z, &zlen), SL_OK);
        /* Truncated anywhere: an error, never a short success. */
        const size_t cuts[] = {0, 1, 5, zlen / 2, zlen - 1};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            sl_err e = sl_decompress(k_codecs[ci], z, cuts[k], a, 1u << 20, &out, &olen);
            CHECK(e == SL_ECORRUPT);
        }
        /* Garbage. */
        uint8_t junk[64];
        memset(junk, 0xA5, sizeof junk);
        CHECK_EQ(sl_decompress(k_codecs[ci], junk, sizeof junk, a, 1u << 20, &out, &olen),
                 SL_ECORRUPT);
        sl_arena_free(a);
    }
    sl_arena *a = sl_arena_new(4096);
    uint8_t *out;
    size_t olen;
    CHECK_EQ(sl_decompress(5, in, 10, a, 100, &out, &olen), SL_ECOMPRESSION);
    uint8_t *z;
    size_t zlen;
    CHECK_EQ(sl_compress(7, in, 10, a, 0, &z, &zlen), SL_ECOMPRESSION);
    /* Trailing garbage after a gzip stream. */
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, in, 100, a, 0, &z, &zlen), SL_OK);
    uint8_t *tail = sl_arena_alloc(a, zlen + 3);
    memcpy(tail, z, zlen);
    memcpy(tail + zlen, "xyz", 3);
    CHECK_EQ(sl_decompress(SL_COMPRESSION_GZIP, tail, zlen + 3, a, 1000, &out, &olen), SL_ECORRUPT);
    sl_arena_free(a);
    free(in);
}
