/* The v2 record codec (src/proto/sl_records.h) against an encoder and a parser written
 * independently of it (moved here from test_legacy.c, which now builds its batches with the
 * codec): byte-identical batches for every codec, headers and offset gaps; the same records read
 * back; a hand-written known answer; and hostile input (truncations, lying counts, trailing
 * bytes, decompression bombs) failing cleanly with a sticky error. */
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "proto/sl_records.h"
#include "sl_test.h"

typedef struct trec {
    int64_t off, ts;
    sl_bytes key, value;
    int nheaders;
} trec;

/* ---- independent reference encoder / parser (no sl_records code) ---- */

static uint8_t *ref_build(sl_arena *a, int64_t base_off, int codec, int attr_extra, const trec *r,
                          int n, size_t *len) {
    sl_wr w;
    sl_wr_init(&w, a, 256);
    int64_t maxts = r[0].ts;
    for (int i = 0; i < n; i++) {
        sl_wr rec;
        sl_wr_init(&rec, a, 64);
        sl_wr_i8(&rec, 0);
        sl_wr_varlong(&rec, r[i].ts - r[0].ts);
        sl_wr_varint(&rec, (int32_t)((uint64_t)r[i].off - (uint64_t)base_off));
        sl_wr_varint(&rec, r[i].key.len);
        if (r[i].key.len > 0) sl_wr_raw(&rec, r[i].key.p, (size_t)r[i].key.len);
        sl_wr_varint(&rec, r[i].value.len);
        if (r[i].value.len > 0) sl_wr_raw(&rec, r[i].value.p, (size_t)r[i].value.len);
        sl_wr_varint(&rec, r[i].nheaders);
        for (int h = 0; h < r[i].nheaders; h++) {
            sl_wr_varint(&rec, 2);
            sl_wr_raw(&rec, "hk", 2);
            sl_wr_varint(&rec, 3);
            sl_wr_raw(&rec, "hv!", 3);
        }
        sl_wr_varint(&w, (int32_t)rec.len);
        sl_wr_raw(&w, rec.buf, rec.len);
        if (r[i].ts > maxts) maxts = r[i].ts;
    }
    uint8_t *body = w.buf;
    size_t blen = w.len;
    if (codec) sl_compress(codec, w.buf, w.len, a, 0, &body, &blen);
    size_t total = SL_BATCH_HEADER_SIZE + blen;
    uint8_t *b = sl_arena_calloc(a, 1, total);
    memcpy(b + SL_BATCH_HEADER_SIZE, body, blen);
    sl_be64(b, (uint64_t)base_off);
    sl_be32(b + 8, (uint32_t)(total - 12));
    sl_be32(b + 12, (uint32_t)-1); /* leader epoch: unknown, as producers send it */
    b[16] = 2;
    sl_be16(b + 21, (uint16_t)(codec | attr_extra));
    sl_be32(b + 23, (uint32_t)((uint64_t)r[n - 1].off - (uint64_t)base_off));
    sl_be64(b + 27, (uint64_t)r[0].ts);
    sl_be64(b + 35, (uint64_t)maxts);
    sl_be64(b + 43, (uint64_t)-1);
    sl_be16(b + 51, (uint16_t)-1);
    sl_be32(b + 53, (uint32_t)-1);
    sl_be32(b + 57, (uint32_t)n);
    sl_be32(b + 17, sl_crc32c(0, b + 21, total - 21));
    *len = total;
    return b;
}

static int ref_parse(const uint8_t *b, size_t len, sl_arena *a, trec *out, int max, int *codec) {
    sl_batch_info bi;
    if (!sl_batch_parse(b, len, &bi) || bi.size != len) return -1;
    if (sl_crc32c(0, b + 21, len - 21) != sl_get_be32(b + 17)) return -1;
    *codec = bi.attributes & 7;
    const uint8_t *recs = b + SL_BATCH_HEADER_SIZE;
    size_t rl = len - SL_BATCH_HEADER_SIZE;
    if (*codec) {
        uint8_t *d;
        if (sl_decompress(*codec, recs, rl, a, 1 << 24, &d, &rl)) return -1;
        recs = d;
    }
    sl_rd r = sl_rd_init(recs, rl);
    int64_t base = (int64_t)sl_get_be64(b);
    for (int i = 0; i < bi.record_count && i < max; i++) {
        int32_t l = sl_rd_varint(&r);
        const uint8_t *rp = sl_rd_take(&r, (size_t)l);
        if (!rp) return -1;
        sl_rd rr = sl_rd_init(rp, (size_t)l);
        sl_rd_i8(&rr);
        out[i].ts = bi.base_timestamp + sl_rd_varlong(&rr);
        out[i].off = base + sl_rd_varint(&rr);
        out[i].key = sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
        out[i].value = sl_rd_bytes_n(&rr, sl_rd_varint(&rr));
        out[i].nheaders = sl_rd_varint(&rr);
        if (rr.err) return -1;
    }
    return r.err || sl_rd_left(&r) ? -1 : bi.record_count;
}

/* ---- the codec under test ---- */

static const sl_rec_header k_hdrs[4] = {
    {{(const uint8_t *)"hk", 2}, {(const uint8_t *)"hv!", 3}},
    {{(const uint8_t *)"hk", 2}, {(const uint8_t *)"hv!", 3}},
    {{(const uint8_t *)"hk", 2}, {(const uint8_t *)"hv!", 3}},
    {{(const uint8_t *)"hk", 2}, {(const uint8_t *)"hv!", 3}},
};

static uint8_t *codec_build(sl_arena *a, int64_t base_off, int codec, int attr_extra, const trec *r,
                            int n, size_t *len) {
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 16);
    int64_t maxts = r[0].ts;
    for (int i = 0; i < n; i++) {
        sl_rec_in in = {.timestamp_delta = r[i].ts - r[0].ts,
                        .offset_delta = (int32_t)((uint64_t)r[i].off - (uint64_t)base_off),
                        .key = r[i].key,
                        .value = r[i].value,
                        .headers = k_hdrs,
                        .nheaders = r[i].nheaders};
        if (sl_rec_builder_add(&rb, &in)) return NULL;
        if (r[i].ts > maxts) maxts = r[i].ts;
    }
    uint8_t *b;
    if (sl_rec_builder_seal(&rb, (int16_t)(codec | attr_extra), r[0].ts, maxts, &b, len))
        return NULL;
    sl_be64(b, (uint64_t)base_off);
    return b;
}

static int bytes_eq(sl_bytes x, sl_bytes y) {
    return x.len == y.len && (x.len <= 0 || memcmp(x.p, y.p, (size_t)x.len) == 0);
}

#define B(s) ((sl_bytes){(const uint8_t *)(s), (int32_t)strlen(s)})

static const trec k_recs[] = {
    {100, 1700000000000, {(const uint8_t *)"k0", 2}, {(const uint8_t *)"value zero", 10}, 0},
    {101, 1700000000005, {NULL, -1}, {(const uint8_t *)"v1", 2}, 2},
    {103, 1699999999990, {(const uint8_t *)"", 0}, {NULL, -1}, 0}, /* gap, time going back */
    {104, 1700000000100, {(const uint8_t *)"key-3", 5}, {(const uint8_t *)"", 0}, 4},
};
#define NREC 4

SL_TEST(records_builder_matches_independent_encoder) {
    const int codecs[] = {SL_COMPRESSION_NONE, SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY,
                          SL_COMPRESSION_LZ4, SL_COMPRESSION_ZSTD};
    for (int ci = 0; ci < 5; ci++)
        for (int extra = 0; extra <= 0x08; extra += 0x08)
            for (int n = 1; n <= NREC; n++) {
                sl_arena *a = sl_arena_new(4096);
                size_t l1, l2;
                uint8_t *want = ref_build(a, 100, codecs[ci], extra, k_recs, n, &l1);
                uint8_t *got = codec_build(a, 100, codecs[ci], extra, k_recs, n, &l2);
                CHECK(got);
                CHECK_EQ(l2, l1);
                CHECK(memcmp(want, got, l1) == 0);
                sl_arena_free(a);
            }
}

SL_TEST(records_iterator_matches_independent_parser) {
    const int codecs[] = {SL_COMPRESSION_NONE, SL_COMPRESSION_GZIP, SL_COMPRESSION_SNAPPY,
                          SL_COMPRESSION_LZ4, SL_COMPRESSION_ZSTD};
    for (int ci = 0; ci < 5; ci++) {
        sl_arena *a = sl_arena_new(4096);
        size_t len;
        uint8_t *b = ref_build(a, 100, codecs[ci], 0, k_recs, NREC, &len);
        trec want[NREC];
        int wc;
        CHECK_EQ(ref_parse(b, len, a, want, NREC, &wc), NREC);
        sl_rec_iter it;
        CHECK_EQ(sl_rec_iter_init(&it, b, len, a, 1 << 20), SL_OK);
        CHECK_EQ(it.bi.record_count, NREC);
        sl_record rec;
        int i = 0;
        while (sl_rec_iter_next(&it, &rec)) {
            CHECK(i < NREC);
            CHECK_EQ(rec.offset, want[i].off);
            CHECK_EQ(rec.offset, k_recs[i].off);
            CHECK_EQ(rec.timestamp, want[i].ts);
            CHECK_EQ(rec.timestamp, k_recs[i].ts);
            CHECK(bytes_eq(rec.key, want[i].key));
            CHECK(bytes_eq(rec.value, want[i].value));
            CHECK_EQ(rec.nheaders, want[i].nheaders);
            sl_bytes hk, hv;
            int nh = 0;
            while (sl_record_header_next(&rec, &hk, &hv)) {
                CHECK(bytes_eq(hk, B("hk")));
                CHECK(bytes_eq(hv, B("hv!")));
                nh++;
            }
            CHECK_EQ(nh, k_recs[i].nheaders);
            i++;
        }
        CHECK_EQ(sl_rec_iter_err(&it), SL_OK);
        CHECK_EQ(i, NREC);
        /* LogAppendTime batches: every record carries the batch max timestamp. */
        b = ref_build(a, 100, codecs[ci], 0x08, k_recs, NREC, &len);
        CHECK_EQ(sl_rec_iter_init(&it, b, len, a, 1 << 20), SL_OK);
        while (sl_rec_iter_next(&it, &rec)) CHECK_EQ(rec.timestamp, 1700000000100);
        CHECK_EQ(sl_rec_iter_err(&it), SL_OK);
        sl_arena_free(a);
    }
}

/* One record written out by hand from Kafka's DefaultRecord layout. */
SL_TEST(records_known_answer) {
    static const uint8_t rec[] = {
        0x1A,           /* length 13 (zigzag) */
        0x00,           /* attributes */
        0x04,           /* timestamp delta 2 */
        0x02,           /* offset delta 1 */
        0x02, 'k',      /* key "k" */
        0x01,           /* value null (-1) */
        0x02,           /* one header */
        0x04, 'h', '1', /* header key "h1" */
        0x04, 'x', 'y', /* header value "xy" */
    };
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 0);
    sl_rec_header h = {B("h1"), B("xy")};
    /* Offset delta 1 as the only record: the batch's last offset delta must say 1. */
    sl_rec_in in = {.timestamp_delta = 2,
                    .offset_delta = 1,
                    .key = B("k"),
                    .value = SL_BYTES_NULL,
                    .headers = &h,
                    .nheaders = 1};
    CHECK_EQ(sl_rec_builder_add(&rb, &in), SL_OK);
    uint8_t *b;
    size_t len;
    CHECK_EQ(sl_rec_builder_seal(&rb, 0, 5000, 5002, &b, &len), SL_OK);
    CHECK_EQ(len, SL_BATCH_HEADER_SIZE + sizeof rec);
    CHECK(memcmp(b + SL_BATCH_HEADER_SIZE, rec, sizeof rec) == 0);
    sl_batch_info bi;
    CHECK_EQ(sl_batch_parse_exact(b, len, &bi), SL_OK);
    CHECK(sl_batch_crc_ok(b, len));
    CHECK_EQ(bi.record_count, 1);
    CHECK_EQ(bi.last_offset_delta, 1);
    CHECK_EQ(bi.base_timestamp, 5000);
    CHECK_EQ(bi.max_timestamp, 5002);
    CHECK_EQ(bi.producer_id, -1);
    /* The spent builder refuses more. */
    CHECK(sl_rec_builder_add(&rb, &in) != SL_OK);
    sl_arena_free(a);
}

SL_TEST(records_builder_refuses_cleanly) {
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 0);
    uint8_t *b;
    size_t len;
    CHECK_EQ(sl_rec_builder_seal(&rb, 0, 0, 0, &b, &len), SL_EINVAL); /* no records */
    sl_rec_builder_init(&rb, a, 0);
    sl_rec_in ok = {.value = B("v")};
    CHECK_EQ(sl_rec_builder_add(&rb, &ok), SL_OK);
    size_t before = sl_rec_builder_bytes(&rb);
    sl_rec_in bad = {.value = B("v"), .nheaders = -1};
    CHECK_EQ(sl_rec_builder_add(&rb, &bad), SL_ETOOLARGE);
    CHECK_EQ(rb.count, 1);
    CHECK_EQ(sl_rec_builder_bytes(&rb), before);
    CHECK_EQ(sl_rec_builder_add(&rb, &ok), SL_OK); /* still usable */
    CHECK_EQ(sl_rec_builder_seal(&rb, 0, 0, 0, &b, &len), SL_OK);
    CHECK_EQ(sl_batch_parse_exact(b, len, &(sl_batch_info){0}), SL_OK);
    sl_arena_free(a);
}

/* Walks a batch to the end; returns the error. Never crashes (ASan watches). */
static sl_err walk(const uint8_t *b, size_t len, sl_arena *a, size_t max_inflate, int *n) {
    sl_rec_iter it;
    *n = 0;
    sl_err e = sl_rec_iter_init(&it, b, len, a, max_inflate);
    if (e) {
        sl_record rec;
        if (sl_rec_iter_next(&it, &rec)) return SL_EINVAL; /* sticky: nothing after a failure */
        return e;
    }
    sl_record rec;
    while (sl_rec_iter_next(&it, &rec)) (*n)++;
    sl_err end = sl_rec_iter_err(&it);
    if (end && sl_rec_iter_next(&it, &rec)) return SL_EINVAL;
    return end;
}

/* Rewrites a batch's record count and CRC. */
static void set_count(uint8_t *b, size_t len, int32_t n) {
    sl_be32(b + SL_BATCH_RECORDS_COUNT, (uint32_t)n);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + 21, len - 21));
}

SL_TEST(records_iterator_hostile_input) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *good = ref_build(a, 0, 0, 0, k_recs, NREC, &len);
    int n;
    CHECK_EQ(walk(good, len, a, 1 << 20, &n), SL_OK);
    CHECK_EQ(n, NREC);
    /* Every truncation of the records, with the length field following along. */
    for (size_t cut = SL_BATCH_HEADER_SIZE; cut < len; cut++) {
        uint8_t *b = sl_arena_dup(a, good, cut);
        sl_be32(b + SL_BATCH_LENGTH, (uint32_t)(cut - 12));
        CHECK(walk(b, cut, a, 1 << 20, &n) != SL_OK);
    }
    /* A count the bytes cannot hold is refused before any record is read. */
    uint8_t *b = sl_arena_dup(a, good, len);
    set_count(b, len, 1 << 30);
    sl_rec_iter it;
    CHECK_EQ(sl_rec_iter_init(&it, b, len, a, 1 << 20), SL_ECORRUPT);
    set_count(b, len, -1);
    CHECK_EQ(sl_rec_iter_init(&it, b, len, a, 1 << 20), SL_ECORRUPT);
    /* Fewer counted records than present: the leftover bytes are an error after the last. */
    set_count(b, len, NREC - 1);
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_ECORRUPT);
    CHECK_EQ(n, NREC - 1);
    /* More counted than present (but plausible for the bytes). */
    set_count(b, len, NREC + 1);
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_ECORRUPT);
    CHECK_EQ(n, NREC);
    /* A header count beyond the record's bytes. */
    trec one = k_recs[1]; /* two headers */
    b = ref_build(a, one.off, 0, 0, &one, 1, &len);
    uint8_t *nh = b + SL_BATCH_HEADER_SIZE + 1 + 1 + 1 + 1 + 1 + 1 + 2;
    CHECK_EQ(*nh, 0x04); /* the header count, zigzag 2 */
    *nh = 0x7E;          /* 63 */
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_ECORRUPT);
    *nh = 0x03; /* -2 */
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_ECORRUPT);
    /* Not a magic-2 batch, or not exactly one. */
    b = sl_arena_dup(a, good, len);
    b[SL_BATCH_MAGIC] = 1;
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_ECORRUPT);
    CHECK_EQ(walk(good, len - 1, a, 1 << 20, &n), SL_ECORRUPT);
    CHECK_EQ(walk(good, 10, a, 1 << 20, &n), SL_ECORRUPT);
    /* Decompression is bounded by the caller. */
    static uint8_t zeros[64 * 1024];
    trec big = {0, 0, SL_BYTES_NULL, {zeros, (int32_t)sizeof zeros}, 0};
    b = ref_build(a, 0, SL_COMPRESSION_GZIP, 0, &big, 1, &len);
    CHECK_EQ(walk(b, len, a, 1024, &n), SL_ETOOLARGE);
    CHECK_EQ(walk(b, len, a, 1 << 20, &n), SL_OK);
    CHECK_EQ(n, 1);
    sl_arena_free(a);
}
