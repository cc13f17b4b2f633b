#include <stdlib.h>
#include <string.h>

#include "base/sl_buf.h"
#include "sl_test.h"

SL_TEST(buf_varint_roundtrip) {
    sl_arena *a = sl_arena_new(1024);
    sl_wr w;
    sl_wr_init(&w, a, 8);
    int64_t vals[] = {0, 1, -1, 63, -64, 300, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) sl_wr_varlong(&w, vals[i]);
    sl_wr_compact_string(&w, sl_str_c("hello"));
    sl_wr_string(&w, SL_STR_NULL);
    sl_rd r = sl_rd_init(w.buf, w.len);
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        int64_t v = sl_rd_varlong(&r);
        if (v != vals[i]) sl_arena_free(a);
        CHECK_EQ(v, vals[i]);
    }
    sl_str s = sl_rd_compact_string(&r);
    sl_str n = sl_rd_string(&r);
    int ok = r.err == SL_OK && sl_str_eqc(s, "hello") && n.len == -1 && sl_rd_left(&r) == 0;
    sl_arena_free(a);
    CHECK(ok);
}

SL_TEST(buf_reader_sticky_error_and_counts) {
    uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    sl_rd r = sl_rd_init(huge, sizeof huge);
    CHECK_EQ(sl_rd_count(&r, 4), 0);
    CHECK(r.err == SL_EPROTO);
    CHECK_EQ(sl_rd_i32(&r), 0); /* sticky */
    uint8_t neg[] = {0xff, 0xff, 0xff, 0xfe};
    r = sl_rd_init(neg, sizeof neg);
    sl_rd_count(&r, 1);
    CHECK(r.err == SL_EPROTO);
    uint8_t nul[] = {0xff, 0xff, 0xff, 0xff};
    r = sl_rd_init(nul, sizeof nul);
    CHECK_EQ(sl_rd_count(&r, 1), -1);
    CHECK(r.err == SL_OK);
    uint8_t trunc[] = {0x00, 0x05, 'a'};
    r = sl_rd_init(trunc, sizeof trunc);
    sl_rd_string(&r);
    CHECK(r.err == SL_EPROTO);
    uint8_t longvar[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    r = sl_rd_init(longvar, sizeof longvar);
    sl_rd_uvarlong(&r);
    CHECK(r.err == SL_EPROTO);
}

/* Joins a writer's output through sl_wr_iov into `out` (cap bytes); returns the length. */
static size_t wr_join(sl_wr *w, uint8_t *out, size_t cap) {
    struct iovec *iov;
    int n = sl_wr_iov(w, &iov);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (len + iov[i].iov_len > cap) return 0;
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    return len;
}

SL_TEST(buf_writer_refs_match_copies) {
    sl_arena *a = sl_arena_new(1024);
    static uint8_t big[5000], small[10];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    memset(small, 's', sizeof small);
    /* The same writes with and without references must give the same bytes. */
    sl_wr plain, ref;
    sl_wr_init(&plain, a, 16);
    sl_wr_init(&ref, a, 16);
    sl_wr_enable_refs(&ref, 100);
    sl_wr *ws[2] = {&plain, &ref};
    for (int k = 0; k < 2; k++) {
        sl_wr *w = ws[k];
        sl_wr_raw_ref(w, big, sizeof big); /* first: a reference at offset 0 */
        sl_wr_raw_ref(w, big, 100);        /* two in a row at one position */
        sl_wr_i32(w, 42);
        sl_wr_raw_ref(w, small, sizeof small); /* below the threshold: copied */
        sl_wr_raw_ref(w, big + 1, 2000);       /* last */
    }
    CHECK_EQ(plain.nrefs, 0);
    CHECK_EQ(ref.nrefs, 3);
    CHECK_EQ(sl_wr_total(&ref), plain.len);
    CHECK_EQ(ref.len, 4 + sizeof small);
    static uint8_t joined[16384];
    size_t jl = wr_join(&ref, joined, sizeof joined);
    CHECK_EQ(jl, plain.len);
    CHECK(memcmp(joined, plain.buf, plain.len) == 0);
    /* Without references the output is one iovec over the buffer. */
    struct iovec *iov;
    CHECK_EQ(sl_wr_iov(&plain, &iov), 1);
    CHECK(iov[0].iov_base == plain.buf);
    sl_arena_free(a);
}

SL_TEST(arena_reset_keeps_one_chunk) {
    sl_arena *a = sl_arena_new(1024);
    CHECK(a != NULL);
    unsigned char *first = sl_arena_alloc(a, 100);
    CHECK(first != NULL);
    CHECK(sl_arena_alloc(a, 5000) != NULL); /* a large one behind the head */
    for (int i = 0; i < 50; i++) CHECK(sl_arena_alloc(a, 200) != NULL); /* new heads */
    CHECK(sl_arena_used(a) >= 100 + 5000 + 50 * 200);
    sl_arena_reset(a);
    CHECK_EQ(sl_arena_used(a), 0);
    /* What comes next reuses the kept chunk: allocations still work and are distinct. */
    unsigned char *p = sl_arena_alloc(a, 300), *q = sl_arena_alloc(a, 300);
    CHECK(p && q && p != q);
    memset(p, 1, 300);
    memset(q, 2, 300);
    CHECK(p[299] == 1 && q[0] == 2);
    CHECK(sl_arena_alloc(a, 8000) != NULL);
    sl_arena_reset(a);
    sl_arena_free(a);
}

/* Adopted buffers are freed with the arena, by a reset too (ASan's leak check fails this
 * otherwise), and count as used. */
SL_TEST(arena_adopt_frees_with_the_arena) {
    sl_arena *a = sl_arena_new(256);
    CHECK(a != NULL);
    sl_arena_set_cleanse(a);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 4; i++) {
            unsigned char *b = malloc(70000);
            CHECK(b != NULL);
            memset(b, 'x', 70000);
            CHECK(sl_arena_adopt(a, b, 70000));
        }
        CHECK(sl_arena_used(a) >= 4 * 70000);
        if (round == 0) sl_arena_reset(a);
        CHECK(round == 1 || sl_arena_used(a) == 0);
    }
    sl_arena_free(a);
}
