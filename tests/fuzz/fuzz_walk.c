/* libFuzzer target for the batch-header walk (sl_batch_walk_set, proto/sl_records.h), which
 * audit and metrics run over every Produce and Fetch answer. The first input byte picks:
 *   0: walk the rest as it is (an exact-size copy, so any read past the end is caught);
 *   1: down-convert the rest with sl_v2_to_legacy (magic from the second byte) and walk what
 *      the converter produced, which must be whole messages: nothing partial, every byte
 *      counted, one record per uncompressed message.
 * Invariants for every walk: the bytes counted never exceed the input, `partial` says exactly
 * whether some were left, and no batch means no offsets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_checked(const uint8_t *p, size_t n, sl_batch_walk *w) {
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return;
    if (n) memcpy(copy, p, n);
    sl_batch_walk_set(copy, n, w);
    free(copy);
    if (w->bytes < 0 || (size_t)w->bytes > n) abort();
    if (w->partial != ((size_t)w->bytes != n)) abort();
    if (!w->batches && (w->first_offset != -1 || w->last_offset != -1 || w->records)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1 << 20) return 0;
    sl_batch_walk w;
    if (data[0] == 0 || size < 2) {
        walk_checked(data + 1, size - 1, &w);
        return 0;
    }
    int8_t magic = (int8_t)(data[1] & 1);
    sl_arena *a = sl_arena_new(1 << 16);
    if (!a) return 0;
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (sl_v2_to_legacy(data + 2, size - 2, magic, a, &out, &out_len) == 0 && out_len) {
        walk_checked(out, out_len, &w);
        if (w.partial) abort();
        if (!w.inexact && w.records != w.batches) abort();
    }
    sl_arena_free(a);
    return 0;
}
