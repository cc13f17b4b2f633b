/* The record-set transform chain (src/proto/sl_xform.h): with nothing registered the stored
 * bytes pass through untouched (same pointer); a registered transform that rewrites values on
 * produce and restores them on fetch sees what the chain promises (validated magic-2 batches,
 * also for legacy clients) and its output reaches modern and legacy consumers restored. */
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"
#include "proto/sl_xform.h"
#include "sl_test.h"

#define MASK 0x5A

static const char *k_vals[] = {"alpha", "beta", "", "gamma delta"};
#define NVALS 4

/* An idempotent producer's batch (pid 7, epoch 3, sequence 11) of k_vals, codec `codec`. */
static uint8_t *make_batch(sl_arena *a, int codec, size_t *len) {
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 64);
    for (int i = 0; i < NVALS; i++) {
        sl_rec_in in = {.timestamp_delta = i,
                        .offset_delta = i,
                        .key = {(const uint8_t *)"k", 1},
                        .value = {(const uint8_t *)k_vals[i], (int32_t)strlen(k_vals[i])}};
        if (sl_rec_builder_add(&rb, &in)) return NULL;
    }
    uint8_t *b;
    if (sl_rec_builder_seal(&rb, (int16_t)codec, 1000, 1000 + NVALS - 1, &b, len)) return NULL;
    sl_be64(b + SL_BATCH_PRODUCER_ID, 7);
    sl_be16(b + SL_BATCH_PRODUCER_EPOCH, 3);
    sl_be32(b + SL_BATCH_BASE_SEQUENCE, 11);
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, *len - SL_BATCH_ATTRIBUTES));
    return b;
}

/* The test transform: XORs every value byte with MASK, batch by batch, keeping each batch's
 * header fields (offsets, producer, timestamps, codec). Counts its calls in *arg. */
typedef struct xor_ctx {
    int calls;
    int16_t fail; /* returned instead of working, when set */
    bool saw_non_v2;
} xor_ctx;

static int16_t xor_values(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                          bool *rewritten) {
    xor_ctx *x = arg;
    x->calls++;
    if (x->fail) return x->fail;
    sl_wr out;
    sl_wr_init(&out, c->a, *len + 64);
    const uint8_t *p = *data;
    size_t left = *len;
    sl_batch_info bi;
    while (left && sl_batch_parse(p, left, &bi)) {
        if (bi.magic != 2) x->saw_non_v2 = true;
        sl_rec_iter it;
        if (sl_rec_iter_init(&it, p, bi.size, c->a, 1 << 20)) return SL_KAFKA_CORRUPT_MESSAGE;
        sl_rec_builder rb;
        sl_rec_builder_init(&rb, c->a, bi.size);
        sl_record r;
        while (sl_rec_iter_next(&it, &r)) {
            uint8_t *v = sl_arena_dup(c->a, r.value.p, r.value.len > 0 ? (size_t)r.value.len : 1);
            for (int32_t i = 0; i < r.value.len; i++) v[i] ^= MASK;
            sl_rec_in in = {.attributes = r.attributes,
                            .timestamp_delta = r.timestamp_delta,
                            .offset_delta = r.offset_delta,
                            .key = r.key,
                            .value = r.value.len < 0 ? SL_BYTES_NULL : (sl_bytes){v, r.value.len}};
            if (sl_rec_builder_add(&rb, &in)) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
        }
        if (sl_rec_iter_err(&it)) return SL_KAFKA_CORRUPT_MESSAGE;
        uint8_t *nb;
        size_t nl;
        if (sl_rec_builder_seal(&rb, bi.attributes, bi.base_timestamp, bi.max_timestamp, &nb, &nl))
            return SL_KAFKA_UNKNOWN_SERVER_ERROR;
        /* Everything before the CRC, and the producer fields, as they were. */
        memcpy(nb, p, SL_BATCH_CRC);
        sl_be32(nb + SL_BATCH_LENGTH, (uint32_t)(nl - 12));
        memcpy(nb + SL_BATCH_PRODUCER_ID, p + SL_BATCH_PRODUCER_ID,
               SL_BATCH_RECORDS_COUNT - SL_BATCH_PRODUCER_ID);
        sl_be32(nb + SL_BATCH_CRC,
                sl_crc32c(0, nb + SL_BATCH_ATTRIBUTES, nl - SL_BATCH_ATTRIBUTES));
        sl_wr_raw(&out, nb, nl);
        p += bi.size;
        left -= bi.size;
    }
    if (out.err) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *data = out.buf;
    *len = out.len;
    *rewritten = true;
    return SL_KAFKA_NONE;
}

/* Reads the values of a v2 set; returns how many matched k_vals XORed with `mask`, or -1. */
static int check_values(const uint8_t *p, size_t len, sl_arena *a, uint8_t mask) {
    int n = 0;
    sl_batch_info bi;
    while (len && sl_batch_parse(p, len, &bi)) {
        sl_rec_iter it;
        if (sl_rec_iter_init(&it, p, bi.size, a, 1 << 20)) return -1;
        sl_record r;
        while (sl_rec_iter_next(&it, &r)) {
            if (n >= NVALS || r.value.len != (int32_t)strlen(k_vals[n])) return -1;
            for (int32_t i = 0; i < r.value.len; i++)
                if ((uint8_t)(r.value.p[i] ^ mask) != (uint8_t)k_vals[n][i]) return -1;
            n++;
        }
        if (sl_rec_iter_err(&it)) return -1;
        p += bi.size;
        len -= bi.size;
    }
    return n;
}

SL_TEST(xform_untouched_sets_pass_through_as_the_same_pointer) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = make_batch(a, SL_COMPRESSION_NONE, &len);
    CHECK(b);
    xor_ctx x = {0};
    sl_xform_chain produce_only = {.protect = {xor_values, &x}};
    sl_xform_chain empty = {.protect = {NULL, NULL}};
    const sl_xform_chain *chains[] = {NULL, &empty, &produce_only};
    for (int i = 0; i < 3; i++)
        for (int16_t v = 4; v <= 13; v++) {
            uint8_t *d = b;
            size_t l = len;
            bool rw = true;
            sl_xform_ctx c = {.a = a, .api_version = v, .max_bytes = 1 << 20, .fetch_offset = 0};
            CHECK_EQ(sl_xform_fetch(chains[i], &c, &d, &l, &rw), 0);
            CHECK(d == b);
            CHECK_EQ(l, len);
            CHECK(!rw);
        }
    CHECK_EQ(x.calls, 0);
    /* Produce with nothing registered: validated, not copied. */
    sl_bytes rec = {b, (int32_t)len};
    int nb = 0;
    sl_xform_ctx pc = {.a = a, .api_version = 9, .now_ms = 1, .max_bytes = 1 << 20};
    CHECK_EQ(sl_xform_produce(NULL, &pc, &rec, &nb), 0);
    CHECK(rec.p == b);
    CHECK_EQ(nb, 1);
    /* Validation still runs: a broken CRC is refused. */
    b[len - 1] ^= 1;
    CHECK_EQ(sl_xform_produce(NULL, &pc, &rec, &nb), SL_KAFKA_CORRUPT_MESSAGE);
    sl_arena_free(a);
}

SL_TEST(xform_crc_left_downstream_only_when_no_transform_reads_the_records) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = make_batch(a, SL_COMPRESSION_NONE, &len);
    CHECK(b);
    b[len - 1] ^= 1; /* the CRC no longer matches */
    sl_xform_ctx gw = {.a = a,
                       .api_version = 9,
                       .now_ms = 1,
                       .max_bytes = 1 << 20,
                       .crc_checked_downstream = true};
    sl_bytes rec = {b, (int32_t)len};
    int nb = 0;
    /* Passthrough: the upstream checks the unchanged bytes; the headers are still read. */
    CHECK_EQ(sl_xform_produce(NULL, &gw, &rec, &nb), 0);
    CHECK(rec.p == b);
    CHECK_EQ(nb, 1);
    sl_xform_chain empty = {.protect = {NULL, NULL}};
    CHECK_EQ(sl_xform_produce(&empty, &gw, &rec, NULL), 0);
    /* A transform would re-seal whatever it read as valid: it only gets a checked set. */
    xor_ctx x = {0};
    sl_xform_chain seal = {.seal = {xor_values, &x}};
    sl_xform_chain prot = {.protect = {xor_values, &x}};
    CHECK_EQ(sl_xform_produce(&seal, &gw, &rec, NULL), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(sl_xform_produce(&prot, &gw, &rec, NULL), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(x.calls, 0);
    /* Headers that do not add up are refused before anything goes upstream. */
    sl_be32(b + 8, 3); /* batch length shorter than the batch */
    CHECK_EQ(sl_xform_produce(NULL, &gw, &rec, NULL), SL_KAFKA_CORRUPT_MESSAGE);
    sl_arena_free(a);
}

SL_TEST(xform_protect_on_produce_unprotect_on_fetch) {
    const int codecs[] = {SL_COMPRESSION_NONE, SL_COMPRESSION_GZIP, SL_COMPRESSION_LZ4};
    for (int ci = 0; ci < 3; ci++) {
        sl_arena *a = sl_arena_new(4096);
        size_t len;
        uint8_t *b = make_batch(a, codecs[ci], &len);
        CHECK(b);
        xor_ctx px = {0}, fx = {0};
        sl_xform_chain chain = {.protect = {xor_values, &px}, .unprotect = {xor_values, &fx}};
        sl_bytes rec = {b, (int32_t)len};
        sl_xform_ctx pc = {.a = a, .api_version = 9, .now_ms = 1, .max_bytes = 1 << 20};
        CHECK_EQ(sl_xform_produce(&chain, &pc, &rec, NULL), 0);
        CHECK_EQ(px.calls, 1);
        CHECK(rec.p != b);
        /* What would be stored: valid, same producer fields, values protected. */
        int nb = 0;
        CHECK_EQ(sl_batch_validate_set(rec.p, (size_t)rec.len, 9, 1 << 20, &nb), 0);
        sl_batch_info bi;
        CHECK(sl_batch_parse(rec.p, (size_t)rec.len, &bi));
        CHECK_EQ(bi.producer_id, 7);
        CHECK_EQ(bi.producer_epoch, 3);
        CHECK_EQ(bi.base_sequence, 11);
        CHECK_EQ(bi.attributes & 7, codecs[ci]);
        CHECK_EQ(check_values(rec.p, (size_t)rec.len, a, MASK), NVALS);
        CHECK_EQ(check_values(rec.p, (size_t)rec.len, a, 0), -1);
        /* Stored at offset 100 (outside the CRC, as the log does), then fetched back. */
        uint8_t *stored = sl_arena_dup(a, rec.p, (size_t)rec.len);
        sl_be64(stored, 100);
        uint8_t *d = stored;
        size_t l = (size_t)rec.len;
        bool rw = false;
        sl_xform_ctx fc = {.a = a, .api_version = 12, .max_bytes = 1 << 20, .fetch_offset = 100};
        CHECK_EQ(sl_xform_fetch(&chain, &fc, &d, &l, &rw), 0);
        CHECK_EQ(fx.calls, 1);
        CHECK(rw);
        CHECK(d != stored);
        CHECK_EQ(check_values(d, l, a, 0), NVALS);
        CHECK_EQ((int64_t)sl_get_be64(d), 100);
        /* A legacy consumer gets the restored values too: unprotect runs before the
         * down-conversion. */
        for (int16_t v = 0; v <= 3; v++) {
            d = stored;
            l = (size_t)rec.len;
            rw = false;
            fc.api_version = v;
            CHECK_EQ(sl_xform_fetch(&chain, &fc, &d, &l, &rw), 0);
            CHECK(rw);
            CHECK(d[SL_BATCH_MAGIC] == (v <= 1 ? 0 : 1)); /* a legacy message set */
            uint8_t *up;
            size_t ul;
            CHECK_EQ(sl_legacy_to_v2(d, l, a, 5, 1 << 20, &up, &ul), 0);
            CHECK_EQ(check_values(up, ul, a, 0), NVALS);
        }
        sl_arena_free(a);
    }
}

SL_TEST(xform_protect_sees_only_validated_v2_and_errors_stop_the_chain) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *b = make_batch(a, SL_COMPRESSION_NONE, &len);
    CHECK(b);
    /* A Produce v2 client's magic-1 message set: up-converted before protect sees it. */
    uint8_t *lg;
    size_t ll;
    sl_be64(b + SL_BATCH_PRODUCER_ID, (uint64_t)-1); /* legacy sets carry no producer */
    sl_be32(b + SL_BATCH_CRC, sl_crc32c(0, b + SL_BATCH_ATTRIBUTES, len - SL_BATCH_ATTRIBUTES));
    CHECK_EQ(sl_v2_to_legacy(b, len, 1, a, &lg, &ll), 0);
    xor_ctx x = {0};
    sl_xform_chain chain = {.protect = {xor_values, &x}};
    sl_bytes rec = {lg, (int32_t)ll};
    sl_xform_ctx pc = {.a = a, .api_version = 2, .now_ms = 1, .max_bytes = 1 << 20};
    CHECK_EQ(sl_xform_produce(&chain, &pc, &rec, NULL), 0);
    CHECK_EQ(x.calls, 1);
    CHECK(!x.saw_non_v2);
    CHECK_EQ(rec.p[SL_BATCH_MAGIC], 2);
    CHECK_EQ(check_values(rec.p, (size_t)rec.len, a, MASK), NVALS);
    /* An invalid set never reaches the transform. */
    uint8_t *bad = sl_arena_dup(a, b, len);
    bad[len - 1] ^= 1;
    rec = (sl_bytes){bad, (int32_t)len};
    pc.api_version = 9;
    CHECK_EQ(sl_xform_produce(&chain, &pc, &rec, NULL), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(x.calls, 1);
    /* A transform's error is the answer, and the set is left as it was. */
    x.fail = SL_KAFKA_POLICY_VIOLATION;
    rec = (sl_bytes){b, (int32_t)len};
    CHECK_EQ(sl_xform_produce(&chain, &pc, &rec, NULL), SL_KAFKA_POLICY_VIOLATION);
    CHECK(rec.p == b);
    sl_xform_chain fchain = {.unprotect = {xor_values, &x}};
    uint8_t *d = b;
    size_t l = len;
    sl_xform_ctx fc = {.a = a, .api_version = 12, .max_bytes = 1 << 20};
    CHECK_EQ(sl_xform_fetch(&fchain, &fc, &d, &l, NULL), SL_KAFKA_POLICY_VIOLATION);
    CHECK(d == b);
    CHECK_EQ(l, len);
    sl_arena_free(a);
}

/* The codec check reads v2 batch headers; after down-conversion to a magic 0/1 message set
 * there are none (the converter handles zstd itself). Read as a batch header, a legacy message
 * with a 4-byte key starting with 'd' had "zstd" in its attribute bits, so Fetch v0-1 answered
 * UNSUPPORTED_COMPRESSION_TYPE for a plain record (and magic 1 could trip on timestamp bytes). */
SL_TEST(xform_legacy_fetch_not_mistaken_for_zstd) {
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 0);
    const char *val = "0123456789012345678901234567890123456789012345678901234567890123456789";
    sl_rec_in in = {.key = {(const uint8_t *)"dddd", 4},
                    .value = {(const uint8_t *)val, (int32_t)strlen(val)}};
    CHECK_EQ(sl_rec_builder_add(&rb, &in), SL_OK);
    uint8_t *b;
    size_t len;
    CHECK_EQ(sl_rec_builder_seal(&rb, 0, 1000, 1000, &b, &len), SL_OK);
    for (int16_t v = 0; v <= 3; v++) {
        uint8_t *d = b;
        size_t l = len;
        sl_xform_ctx c = {.a = a, .api_version = v, .max_bytes = 1 << 20, .fetch_offset = 0};
        CHECK_EQ(sl_xform_fetch(NULL, &c, &d, &l, NULL), 0);
        uint8_t *up;
        size_t ul;
        CHECK_EQ(sl_legacy_to_v2(d, l, a, 5, 1 << 20, &up, &ul), 0);
        sl_rec_iter it;
        CHECK_EQ(sl_rec_iter_init(&it, up, ul, a, 1 << 20), SL_OK);
        sl_record r;
        CHECK(sl_rec_iter_next(&it, &r));
        CHECK_EQ(r.value.len, (int32_t)strlen(val));
        CHECK(memcmp(r.value.p, val, strlen(val)) == 0);
    }
    sl_arena_free(a);
}
