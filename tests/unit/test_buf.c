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
