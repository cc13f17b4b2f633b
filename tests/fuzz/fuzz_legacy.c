/* libFuzzer target for the legacy-format converters and the codecs. The first input byte picks
 * the subject, the second a parameter:
 *   0: sl_legacy_to_v2(rest)         — anything accepted must be one valid magic-2 batch, and
 *                                       must down-convert and up-convert again to the same count
 *   1: sl_v2_to_legacy(rest, magic)   — anything produced must up-convert again
 *   2: sl_decompress(codec, rest)     — bounded; anything decoded must survive a re-compression
 * Every run uses a fresh arena; arena growth is capped by the converters' own bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sl_batch.h"
#include "proto/sl_compress.h"
#include "proto/sl_legacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_INPUT = 256 * 1024, MAX_OUT = 4 << 20 };

static int32_t batch_count(const uint8_t *b, size_t len) {
    sl_batch_info bi;
    if (!sl_batch_parse(b, len, &bi) || bi.size != len) abort();
    return bi.record_count;
}

static void fuzz_up(const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *b;
    size_t bl;
    if (sl_legacy_to_v2(p, n, a, 1700000000000, INT32_MAX, &b, &bl) != 0) return;
    int nb = 0;
    if (sl_batch_validate_set(b, bl, 2, INT32_MAX, &nb) != 0 || nb != 1) abort();
    int32_t count = batch_count(b, bl);
    for (int8_t magic = 0; magic <= 1; magic++) {
        uint8_t *lg, *b2;
        size_t ll, bl2;
        if (sl_v2_to_legacy(b, bl, magic, a, &lg, &ll) != 0 || ll == 0) abort();
        if (sl_legacy_to_v2(lg, ll, a, 1, INT32_MAX, &b2, &bl2) != 0) abort();
        if (batch_count(b2, bl2) != count) abort();
    }
}

static void fuzz_down(int8_t magic, const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *lg, *b;
    size_t ll, bl;
    if (sl_v2_to_legacy(p, n, magic, a, &lg, &ll) != 0 || ll == 0) return;
    if (sl_legacy_to_v2(lg, ll, a, 1, INT32_MAX, &b, &bl) != 0) abort();
}

static void fuzz_codec(int codec, const uint8_t *p, size_t n, sl_arena *a) {
    uint8_t *d, *z, *d2;
    size_t dl, zl, dl2;
    if (sl_decompress(codec, p, n, a, MAX_OUT, &d, &dl) != SL_OK) return;
    if (dl > MAX_OUT) abort();
    unsigned flags = (unsigned)(n & 1) ? SL_COMPRESS_LZ4_BROKEN_HC : 0;
    if (sl_compress(codec, d, dl, a, flags, &z, &zl) != SL_OK) abort();
    if (sl_decompress(codec, z, zl, a, dl, &d2, &dl2) != SL_OK) abort();
    if (dl2 != dl || (dl && memcmp(d, d2, dl) != 0)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > MAX_INPUT) return 0;
    sl_arena *a = sl_arena_new(4096);
    if (!a) return 0;
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    switch (data[0] % 3) {
    case 0:
        fuzz_up(p, n, a);
        break;
    case 1:
        fuzz_down((int8_t)(data[1] & 1), p, n, a);
        break;
    default:
        fuzz_codec(data[1] % 6, p, n, a);
        break;
    }
    sl_arena_free(a);
    return 0;
}
