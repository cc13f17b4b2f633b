/* Legacy message sets: hand-built magic 0/1 sets (every codec) up-convert to valid magic-2
 * batches; stored batches down-convert and come back unchanged. The legacy builders and parsers
 * here are written independently of src/proto/sl_legacy.c on purpose; v2 batches are built and
 * read with the record codec, itself checked against an independent one in test_records.c. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"
#include "sl_test.h"

typedef struct trec {
    int64_t off, ts;
    sl_bytes key, value;
    int nheaders;
} trec;

#define B(s) ((sl_bytes){(const uint8_t *)(s), (int32_t)strlen(s)})

/* ---- legacy builder / parser ---- */

static void lg_msg(sl_wr *w, int64_t off, int magic, int attr, int64_t ts, sl_bytes k, sl_bytes v) {
    sl_wr body;
    sl_wr_init(&body, w->a, 64);
    sl_wr_i8(&body, (int8_t)magic);
    sl_wr_i8(&body, (int8_t)attr);
    if (magic == 1) sl_wr_i64(&body, ts);
    sl_wr_bytes(&body, k);
    sl_wr_bytes(&body, v);
    sl_wr_i64(w, off);
    sl_wr_i32(w, (int32_t)(body.len + 4));
    sl_wr_u32(w, (uint32_t)crc32(0, body.buf, (uInt)body.len));
    sl_wr_raw(w, body.buf, body.len);
}

/* A wrapper holding `n` inner messages (relative offsets for magic 1). */
static void lg_wrapper(sl_wr *w, int64_t last_off, int magic, int codec, unsigned flags,
                       const trec *r, int n) {
    sl_wr in;
    sl_wr_init(&in, w->a, 256);
    for (int i = 0; i < n; i++)
        lg_msg(&in, magic == 1 ? i : last_off - (n - 1) + i, magic, 0, r[i].ts, r[i].key,
               r[i].value);
    uint8_t *z;
    size_t zl;
    sl_compress(codec, in.buf, in.len, w->a, flags, &z, &zl);
    int64_t maxts = -1;
    for (int i = 0; i < n; i++)
        if (r[i].ts > maxts) maxts = r[i].ts;
    lg_msg(w, last_off, magic, codec, maxts, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zl});
}

/* Parses a legacy set into absolute-offset records; returns the count or -1. Checks CRCs. */
static int lg_parse(const uint8_t *p, size_t len, sl_arena *a, trec *out, int max, int *magic_out,
                    int *codec_out) {
    sl_rd r = sl_rd_init(p, len);
    int n = 0;
    while (sl_rd_left(&r) >= 12) {
        int64_t off = sl_rd_i64(&r);
        int32_t size = sl_rd_i32(&r);
        const uint8_t *m = sl_rd_take(&r, (size_t)size);
        if (!m || size < 14) return -1;
        if (crc32(0, m + 4, (uInt)size - 4) != sl_get_be32(m)) return -1;
        sl_rd mr = sl_rd_init(m + 4, (size_t)size - 4);
        int magic = sl_rd_i8(&mr), attr = sl_rd_i8(&mr);
        int64_t ts = magic == 1 ? sl_rd_i64(&mr) : -1;
        sl_bytes k = sl_rd_bytes(&mr), v = sl_rd_bytes(&mr);
        if (mr.err || sl_rd_left(&mr)) return -1;
        *magic_out = magic;
        if ((attr & 7) == 0) {
            if (n >= max) return -1;
            out[n++] = (trec){off, ts, k, v, 0};
            continue;
        }
        *codec_out = attr & 7;
        uint8_t *d;
        size_t dl;
        if (sl_decompress(attr & 7, v.p, (size_t)v.len, a, 1 << 24, &d, &dl)) return -1;
        int dummy, first = n;
        int got = lg_parse(d, dl, a, out + n, max - n, &dummy, &dummy);
        if (got <= 0) return -1;
        n += got;
        if (magic == 1) {
            int64_t last_rel = out[n - 1].off;
            for (int i = first; i < n; i++) out[i].off = off - (last_rel - out[i].off);
        }
    }
    return r.err ? -1 : n;
}

/* ---- v2 builder / parser ----
 * Through the one record codec (src/proto/sl_records.h); tests/unit/test_records.c checks that
 * codec byte for byte against an encoder and a parser written independently of it. */

static uint8_t *v2_build(sl_arena *a, int64_t base_off, int codec, int attr_extra, const trec *r,
                         int n, size_t *len) {
    static const sl_rec_header hdr = {{(const uint8_t *)"hk", 2}, {(const uint8_t *)"hv!", 3}};
    sl_rec_header *hs = sl_arena_alloc(a, 8 * sizeof *hs);
    for (int h = 0; h < 8; h++) hs[h] = hdr;
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 256);
    int64_t maxts = r[0].ts;
    for (int i = 0; i < n; i++) {
        sl_rec_in in = {.timestamp_delta = r[i].ts - r[0].ts,
                        .offset_delta = (int32_t)((uint64_t)r[i].off - (uint64_t)base_off),
                        .key = r[i].key,
                        .value = r[i].value,
                        .headers = hs,
                        .nheaders = r[i].nheaders};
        if (r[i].nheaders > 8 || sl_rec_builder_add(&rb, &in)) return NULL;
        if (r[i].ts > maxts) maxts = r[i].ts;
    }
    uint8_t *b;
    if (sl_rec_builder_seal(&rb, (int16_t)(codec | attr_extra), r[0].ts, maxts, &b, len))
        return NULL;
    sl_be64(b, (uint64_t)base_off); /* outside the CRC, as the log assigns it */
    return b;
}

static int v2_parse(const uint8_t *b, size_t len, sl_arena *a, trec *out, int max, int *codec) {
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, b, len, a, 1 << 24)) return -1;
    if (!sl_batch_crc_ok(b, len)) return -1;
    *codec = it.bi.attributes & 7;
    sl_record rec;
    int i = 0;
    while (sl_rec_iter_next(&it, &rec)) {
        if (i >= max) return -1;
        out[i].ts = it.bi.base_timestamp + rec.timestamp_delta;
        out[i].off = rec.offset;
        out[i].key = rec.key;
        out[i].value = rec.value;
        out[i].nheaders = rec.nheaders;
        i++;
    }
    return sl_rec_iter_err(&it) ? -1 : i;
}

static int bytes_eq(sl_bytes x, sl_bytes y) {
    return x.len == y.len && (x.len <= 0 || memcmp(x.p, y.p, (size_t)x.len) == 0);
}

static const trec k_recs[] = {
    {0, 1700000000000, {(const uint8_t *)"k0", 2}, {(const uint8_t *)"value zero", 10}, 0},
    {1, 1700000000005, {NULL, -1}, {(const uint8_t *)"v1", 2}, 0},
    {2, 1699999999990, {(const uint8_t *)"", 0}, {NULL, -1}, 0},
    {3, 1700000000100, {(const uint8_t *)"key-3", 5}, {(const uint8_t *)"", 0}, 0},
};
#define NREC 4
#define NOW  1800000000000

SL_TEST(legacy_magic0_uncompressed_to_v2) {
    sl_arena *a = sl_arena_new(4096);
    sl_wr w;
    sl_wr_init(&w, a, 256);
    for (int i = 0; i < NREC; i++) lg_msg(&w, 0, 0, 0, 0, k_recs[i].key, k_recs[i].value);
    uint8_t *b;
    size_t bl;
    CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 1 << 20, &b, &bl), 0);
    int nb = 0;
    CHECK_EQ(sl_batch_validate_set(b, bl, 2, 1 << 20, &nb), 0);
    CHECK_EQ(nb, 1);
    trec got[8];
    int codec = -1;
    CHECK_EQ(v2_parse(b, bl, a, got, 8, &codec), NREC);
    CHECK_EQ(codec, 0);
    for (int i = 0; i < NREC; i++) {
        CHECK_EQ(got[i].off, i);
        CHECK_EQ(got[i].ts, NOW); /* magic 0 has no timestamp: the broker's receive time */
        CHECK(bytes_eq(got[i].key, k_recs[i].key));
        CHECK(bytes_eq(got[i].value, k_recs[i].value));
        CHECK_EQ(got[i].nheaders, 0);
    }
    sl_arena_free(a);
}

SL_TEST(legacy_magic1_uncompressed_keeps_timestamps) {
    sl_arena *a = sl_arena_new(4096);
    sl_wr w;
    sl_wr_init(&w, a, 256);
    for (int i = 0; i < NREC; i++)
        lg_msg(&w, 100 + i, 1, 0, k_recs[i].ts, k_recs[i].key, k_recs[i].value);
    uint8_t *b;
    size_t bl;
    CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 1 << 20, &b, &bl), 0);
    CHECK_EQ(sl_batch_validate_set(b, bl, 2, 1 << 20, NULL), 0);
    sl_batch_info bi;
    CHECK(sl_batch_parse(b, bl, &bi));
    CHECK_EQ(bi.max_timestamp, 1700000000100);
    CHECK_EQ(bi.base_timestamp, 1700000000000);
    trec got[8];
    int codec;
    CHECK_EQ(v2_parse(b, bl, a, got, 8, &codec), NREC);
    for (int i = 0; i < NREC; i++) {
        CHECK_EQ(got[i].ts, k_recs[i].ts);
        CHECK(bytes_eq(got[i].key, k_recs[i].key));
        CHECK(bytes_eq(got[i].value, k_recs[i].value));
    }
    sl_arena_free(a);
}

SL_TEST(legacy_compressed_wrappers_every_codec) {
    const int codecs[] = {SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY, SL_COMPRESSION_LZ4};
    for (int magic = 0; magic <= 1; magic++)
        for (int ci = 0; ci < 3; ci++)
            for (unsigned broken = 0; broken <= 1; broken++) {
                if (broken && codecs[ci] != SL_COMPRESSION_LZ4) continue;
                sl_arena *a = sl_arena_new(4096);
                sl_wr w;
                sl_wr_init(&w, a, 256);
                /* Two wrappers in one set plus an uncompressed message between them. */
                lg_wrapper(&w, 1, magic, codecs[ci], broken, k_recs, 2);
                lg_msg(&w, 2, magic, 0, k_recs[2].ts, k_recs[2].key, k_recs[2].value);
                lg_wrapper(&w, 3, magic, codecs[ci], broken, k_recs + 3, 1);
                uint8_t *b;
                size_t bl;
                CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 1 << 20, &b, &bl), 0);
                CHECK_EQ(sl_batch_validate_set(b, bl, 2, 1 << 20, NULL), 0);
                trec got[8];
                int codec;
                CHECK_EQ(v2_parse(b, bl, a, got, 8, &codec), NREC);
                CHECK_EQ(codec, codecs[ci]); /* re-compressed with the client's codec */
                for (int i = 0; i < NREC; i++) {
                    CHECK_EQ(got[i].off, i);
                    CHECK_EQ(got[i].ts, magic ? k_recs[i].ts : NOW);
                    CHECK(bytes_eq(got[i].key, k_recs[i].key));
                    CHECK(bytes_eq(got[i].value, k_recs[i].value));
                }
                sl_arena_free(a);
            }
}

SL_TEST(legacy_log_append_wrapper_timestamp_wins) {
    sl_arena *a = sl_arena_new(4096);
    sl_wr in, w;
    sl_wr_init(&in, a, 256);
    sl_wr_init(&w, a, 256);
    lg_msg(&in, 0, 1, 0, 5, B("a"), B("b"));
    lg_msg(&in, 1, 1, 0, 6, B("c"), B("d"));
    uint8_t *z;
    size_t zl;
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, in.buf, in.len, a, 0, &z, &zl), SL_OK);
    lg_msg(&w, 1, 1, SL_COMPRESSION_GZIP | 0x08, 777, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zl});
    uint8_t *b;
    size_t bl;
    CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 1 << 20, &b, &bl), 0);
    trec got[4];
    int codec;
    CHECK_EQ(v2_parse(b, bl, a, got, 4, &codec), 2);
    CHECK_EQ(got[0].ts, 777);
    CHECK_EQ(got[1].ts, 777);
    sl_arena_free(a);
}

SL_TEST(legacy_rejects_corruption) {
    sl_arena *a = sl_arena_new(4096);
    sl_wr w;
    sl_wr_init(&w, a, 256);
    for (int i = 0; i < NREC; i++)
        lg_msg(&w, i, 1, 0, k_recs[i].ts, k_recs[i].key, k_recs[i].value);
    uint8_t *b;
    size_t bl;
    uint8_t *copy = sl_arena_dup(a, w.buf, w.len);
    /* Flipped value byte: CRC32 mismatch. */
    copy[w.len - 1] ^= 1;
    CHECK_EQ(sl_legacy_to_v2(copy, w.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    copy[w.len - 1] ^= 1;
    CHECK_EQ(sl_legacy_to_v2(copy, w.len, a, NOW, 1 << 20, &b, &bl), 0);
    /* Truncated set, empty set, bad size fields, magic 2 inside. */
    CHECK_EQ(sl_legacy_to_v2(copy, w.len - 1, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(sl_legacy_to_v2(copy, 0, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(sl_legacy_to_v2(copy, 11, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    sl_be32(copy + 8, 0x7fffffff);
    CHECK_EQ(sl_legacy_to_v2(copy, w.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    sl_be32(copy + 8, 3);
    CHECK_EQ(sl_legacy_to_v2(copy, w.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    sl_wr m2;
    sl_wr_init(&m2, a, 64);
    lg_msg(&m2, 0, 2, 0, 0, B("k"), B("v"));
    CHECK_EQ(sl_legacy_to_v2(m2.buf, m2.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    /* Too large for max.message.bytes. */
    CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 70, &b, &bl), SL_KAFKA_MESSAGE_TOO_LARGE);
    sl_arena_free(a);
}

SL_TEST(legacy_rejects_bad_wrappers) {
    sl_arena *a = sl_arena_new(4096);
    uint8_t *b, *z;
    size_t bl, zl;
    /* A wrapper inside a wrapper. */
    sl_wr inner, outer;
    sl_wr_init(&inner, a, 256);
    sl_wr_init(&outer, a, 256);
    lg_wrapper(&inner, 0, 1, SL_COMPRESSION_GZIP, 0, k_recs, 1);
    CHECK_EQ(sl_compress(SL_COMPRESSION_GZIP, inner.buf, inner.len, a, 0, &z, &zl), SL_OK);
    lg_msg(&outer, 0, 1, SL_COMPRESSION_GZIP, 0, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zl});
    CHECK_EQ(sl_legacy_to_v2(outer.buf, outer.len, a, NOW, 1 << 20, &b, &bl),
             SL_KAFKA_CORRUPT_MESSAGE);
    /* zstd (and unknown codecs) cannot appear below magic 2. */
    sl_wr zw;
    sl_wr_init(&zw, a, 256);
    lg_wrapper(&zw, 0, 1, SL_COMPRESSION_ZSTD, 0, k_recs, 1);
    CHECK_EQ(sl_legacy_to_v2(zw.buf, zw.len, a, NOW, 1 << 20, &b, &bl),
             SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE);
    /* Inner magic differing from the wrapper's. */
    sl_wr mi, mw;
    sl_wr_init(&mi, a, 256);
    sl_wr_init(&mw, a, 256);
    lg_msg(&mi, 0, 0, 0, 0, B("k"), B("v"));
    CHECK_EQ(sl_compress(SL_COMPRESSION_SNAPPY, mi.buf, mi.len, a, 0, &z, &zl), SL_OK);
    lg_msg(&mw, 0, 1, SL_COMPRESSION_SNAPPY, 0, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zl});
    CHECK_EQ(sl_legacy_to_v2(mw.buf, mw.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    /* Garbage compressed payload with a valid CRC. */
    sl_wr gw;
    sl_wr_init(&gw, a, 64);
    lg_msg(&gw, 0, 1, SL_COMPRESSION_LZ4, 0, SL_BYTES_NULL, B("not lz4 at all"));
    CHECK_EQ(sl_legacy_to_v2(gw.buf, gw.len, a, NOW, 1 << 20, &b, &bl), SL_KAFKA_CORRUPT_MESSAGE);
    sl_arena_free(a);
}

SL_TEST(legacy_decompression_bomb_is_bounded) {
    sl_arena *a = sl_arena_new(4096);
    size_t big = SL_LEGACY_MAX_INFLATE + 1;
    uint8_t *zeros = calloc(1, big);
    CHECK(zeros);
    uint8_t *z, *b;
    size_t zl, bl;
    CHECK_EQ(sl_compress(SL_COMPRESSION_LZ4, zeros, big, a, 0, &z, &zl), SL_OK);
    free(zeros);
    CHECK(zl < big / 100);
    sl_wr w;
    sl_wr_init(&w, a, zl + 64);
    lg_msg(&w, 0, 1, SL_COMPRESSION_LZ4, 0, SL_BYTES_NULL, (sl_bytes){z, (int32_t)zl});
    size_t used = sl_arena_used(a);
    CHECK_EQ(sl_legacy_to_v2(w.buf, w.len, a, NOW, 1 << 30, &b, &bl), SL_KAFKA_MESSAGE_TOO_LARGE);
    CHECK(sl_arena_used(a) - used < 4096);
    sl_arena_free(a);
}

SL_TEST(legacy_v2_round_trip_every_codec_and_magic) {
    const int codecs[] = {SL_COMPRESSION_NONE, SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY,
                          SL_COMPRESSION_LZ4};
    for (int magic = 0; magic <= 1; magic++)
        for (int ci = 0; ci < 4; ci++) {
            sl_arena *a = sl_arena_new(4096);
            /* Two stored batches at offsets 40..41 and 42..43, records with headers. */
            trec r[NREC];
            for (int i = 0; i < NREC; i++) {
                r[i] = k_recs[i];
                r[i].off = 40 + i;
                r[i].nheaders = i % 2;
            }
            size_t l1, l2;
            uint8_t *b1 = v2_build(a, 40, codecs[ci], 0, r, 2, &l1);
            uint8_t *b2 = v2_build(a, 42, codecs[ci], 0, r + 2, 2, &l2);
            uint8_t *set = sl_arena_alloc(a, l1 + l2);
            memcpy(set, b1, l1);
            memcpy(set + l1, b2, l2);
            uint8_t *lg;
            size_t ll;
            CHECK_EQ(sl_v2_to_legacy(set, l1 + l2, (int8_t)magic, a, &lg, &ll), 0);
            trec got[8];
            int gm = -1, gc = 0;
            CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), NREC);
            CHECK_EQ(gm, magic);
            CHECK_EQ(gc, codecs[ci]);
            for (int i = 0; i < NREC; i++) {
                CHECK_EQ(got[i].off, 40 + i);
                if (magic) CHECK_EQ(got[i].ts, r[i].ts);
                CHECK(bytes_eq(got[i].key, r[i].key));
                CHECK(bytes_eq(got[i].value, r[i].value));
            }
            /* And back up: the same records, in one batch. */
            uint8_t *v2;
            size_t vl;
            CHECK_EQ(sl_legacy_to_v2(lg, ll, a, NOW, 1 << 20, &v2, &vl), 0);
            trec back[8];
            int bc;
            CHECK_EQ(v2_parse(v2, vl, a, back, 8, &bc), NREC);
            CHECK_EQ(bc, codecs[ci]);
            for (int i = 0; i < NREC; i++) {
                CHECK_EQ(back[i].ts, magic ? r[i].ts : NOW);
                CHECK(bytes_eq(back[i].key, r[i].key));
                CHECK(bytes_eq(back[i].value, r[i].value));
                CHECK_EQ(back[i].nheaders, 0);
            }
            sl_arena_free(a);
        }
}

SL_TEST(legacy_down_conversion_lz4_writes_correct_checksum) {
    sl_arena *a = sl_arena_new(4096);
    size_t l;
    uint8_t *b = v2_build(a, 0, SL_COMPRESSION_LZ4, 0, k_recs, NREC, &l);
    uint8_t *lg;
    size_t ll;
    for (int magic = 0; magic <= 1; magic++) {
        CHECK_EQ(sl_v2_to_legacy(b, l, (int8_t)magic, a, &lg, &ll), 0);
        /* The wrapper's value starts after offset, size, crc, magic, attr, [ts], key(-1), len. */
        const uint8_t *frame = lg + 12 + 4 + 2 + (magic ? 8 : 0) + 4 + 4;
        uint8_t want = (uint8_t)(sl_xxh32(frame + 4, 2, 0) >> 8);
        CHECK_EQ(frame[6], want);
    }
    sl_arena_free(a);
}

SL_TEST(legacy_down_conversion_limits_and_skips) {
    sl_arena *a = sl_arena_new(4096);
    trec r[NREC];
    for (int i = 0; i < NREC; i++) {
        r[i] = k_recs[i];
        r[i].off = 10 + i;
    }
    size_t l1, l2, l3, lz;
    uint8_t *b1 = v2_build(a, 10, SL_COMPRESSION_GZIP, 0, r, 2, &l1);
    uint8_t *ctl = v2_build(a, 12, 0, 0x20, r + 2, 1, &l2); /* control batch */
    uint8_t *b3 = v2_build(a, 13, 0, 0, r + 3, 1, &l3);
    trec rz = r[0];
    rz.off = 14;
    uint8_t *bz = v2_build(a, 14, SL_COMPRESSION_ZSTD, 0, &rz, 1, &lz);
    uint8_t *set = sl_arena_alloc(a, l1 + l2 + l3 + lz);
    memcpy(set, b1, l1);
    memcpy(set + l1, ctl, l2);
    memcpy(set + l1 + l2, b3, l3);
    memcpy(set + l1 + l2 + l3, bz, lz);
    size_t all = l1 + l2 + l3 + lz;
    uint8_t *lg;
    size_t ll;
    trec got[8];
    int gm, gc;
    /* Everything: control batch skipped, output stops before the zstd batch. */
    CHECK_EQ(sl_v2_to_legacy(set, all, 1, a, &lg, &ll), 0);
    CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), 3);
    CHECK_EQ(got[0].off, 10);
    CHECK_EQ(got[2].off, 13);
    /* From offset 11: record 10 dropped even inside the compressed wrapper. */
    CHECK_EQ(sl_v2_to_legacy_ex(set, all, 1, 11, 1 << 20, a, &lg, &ll), 0);
    CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), 2);
    CHECK_EQ(got[0].off, 11);
    CHECK_EQ(got[1].off, 13);
    /* A tiny limit still returns the first batch whole, and nothing more. */
    CHECK_EQ(sl_v2_to_legacy_ex(set, all, 0, 0, 1, a, &lg, &ll), 0);
    CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), 2);
    /* zstd first: the error Kafka gives old consumers. */
    CHECK_EQ(sl_v2_to_legacy(bz, lz, 1, a, &lg, &ll), SL_KAFKA_UNSUPPORTED_COMPRESSION_TYPE);
    /* A trailing partial batch is ignored; a corrupted one is not. */
    CHECK_EQ(sl_v2_to_legacy(set, l1 + 20, 1, a, &lg, &ll), 0);
    CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), 2);
    set[l1 - 1] ^= 1;
    CHECK_EQ(sl_v2_to_legacy(set, all, 1, a, &lg, &ll), SL_KAFKA_CORRUPT_MESSAGE);
    sl_arena_free(a);
}

SL_TEST(legacy_log_append_time_batches_down_convert) {
    sl_arena *a = sl_arena_new(4096);
    size_t l;
    uint8_t *b = v2_build(a, 0, 0, 0x08, k_recs, NREC, &l);
    uint8_t *lg;
    size_t ll;
    CHECK_EQ(sl_v2_to_legacy(b, l, 1, a, &lg, &ll), 0);
    trec got[8];
    int gm, gc;
    CHECK_EQ(lg_parse(lg, ll, a, got, 8, &gm, &gc), NREC);
    for (int i = 0; i < NREC; i++) CHECK_EQ(got[i].ts, 1700000000100);
    CHECK_EQ(lg[17] & 0x08, 0x08); /* attributes of the first message say LogAppendTime */
    sl_arena_free(a);
}

SL_TEST(legacy_hooks) {
    sl_arena *a = sl_arena_new(4096);
    sl_wr w;
    sl_wr_init(&w, a, 256);
    lg_msg(&w, 0, 1, 0, 5, B("k"), B("v"));
    sl_bytes rec = {w.buf, (int32_t)w.len};
    /* v3+ leaves legacy data for sl_batch_validate_set to refuse, as Kafka does. */
    CHECK_EQ(sl_legacy_produce_hook(3, &rec, a, NOW, 1 << 20), 0);
    CHECK(rec.p == w.buf);
    CHECK_EQ(sl_batch_validate_set(rec.p, (size_t)rec.len, 3, 1 << 20, NULL),
             SL_KAFKA_UNSUPPORTED_FOR_MESSAGE_FORMAT);
    CHECK_EQ(sl_legacy_produce_hook(2, &rec, a, NOW, 1 << 20), 0);
    CHECK(rec.p != w.buf);
    CHECK_EQ(sl_batch_validate_set(rec.p, (size_t)rec.len, 2, 1 << 20, NULL), 0);
    /* Already magic 2: untouched. */
    const uint8_t *v2p = rec.p;
    CHECK_EQ(sl_legacy_produce_hook(0, &rec, a, NOW, 1 << 20), 0);
    CHECK(rec.p == v2p);
    uint8_t *data = (uint8_t *)rec.p;
    size_t len = (size_t)rec.len;
    CHECK_EQ(sl_legacy_fetch_hook(4, 0, 1 << 20, a, &data, &len), 0);
    CHECK(data == rec.p);
    CHECK_EQ(sl_legacy_fetch_hook(1, 0, 1 << 20, a, &data, &len), 0);
    CHECK(data != rec.p);
    CHECK_EQ(data[16], 0); /* magic 0 for Fetch v0-1 */
    data = (uint8_t *)rec.p;
    len = (size_t)rec.len;
    CHECK_EQ(sl_legacy_fetch_hook(3, 0, 1 << 20, a, &data, &len), 0);
    CHECK_EQ(data[16], 1); /* magic 1 for Fetch v2-3 */
    sl_arena_free(a);
}

/* Found by fuzz_legacy: stored batches are not checked record by record, so a batch whose offset
 * deltas run backwards across INT64_MAX must down-convert (wrapping) rather than overflow. */
SL_TEST(legacy_down_conversion_wild_offset_deltas) {
    sl_arena *a = sl_arena_new(4096);
    trec r[2] = {k_recs[0], k_recs[1]};
    int64_t base = INT64_MAX - 1;
    r[0].off = base + 1;                                        /* delta 1: INT64_MAX */
    r[1].off = (int64_t)((uint64_t)base + (uint64_t)INT32_MAX); /* wraps negative */
    for (int magic = 0; magic <= 1; magic++) {
        size_t l;
        uint8_t *b = v2_build(a, base, SL_COMPRESSION_GZIP, 0, r, 2, &l);
        uint8_t *lg;
        size_t ll;
        CHECK_EQ(sl_v2_to_legacy(b, l, (int8_t)magic, a, &lg, &ll), 0);
        CHECK(ll > 0);
    }
    sl_arena_free(a);
}
