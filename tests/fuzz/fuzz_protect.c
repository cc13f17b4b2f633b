/* libFuzzer target for the field-protection engine's set path (src/protect/sl_protect.h): the
 * broker runs sl_protect_set over every produce to a protected topic, on records whose contents
 * (after decompression) nobody has checked. Keyless rules (mask, redact, redact remove) on the
 * value, the key and a header, JSON paths and whole targets, so no key service is needed. Whatever
 * the bytes: an error or a result; a rewritten set is whole magic-2 batches with good CRCs whose
 * records all read back, and the input is never written to (an exact-size heap copy, so ASan sees
 * reads past it). The same bytes also go through sl_protect_record as one value. Seeds:
 * tests/fuzz/corpus/protect (record sets of every codec). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "protect/sl_policy.h"
#include "protect/sl_protect.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_policy[] = "topic t\n"
                               "  value.card mask keep-last=4\n"
                               "  value.items[*].pan mask\n"
                               "  value.secret redact\n"
                               "  value.gone redact remove\n"
                               "  key.id mask\n"
                               "  header:meta.ssn redact\n"
                               "  header:raw mask\n"
                               "topic lenient\n"
                               "  on-error pass\n"
                               "  value.card mask\n";

static sl_policy *g_pol;

/* The set the engine returned: batches it passed through are the input's bytes (checked by the
 * broker before, not here); the ones it rebuilt have good CRCs and records that read back. */
static void check_set(const uint8_t *p, size_t n, const uint8_t *in, size_t inlen, sl_arena *a) {
    while (n) {
        sl_batch_info bi;
        /* Header fields are kept as they came (the broker validated them before). */
        if (!sl_batch_parse(p, n, &bi) || bi.magic != 2) abort();
        if (!sl_batch_crc_ok(p, bi.size) && !memmem(in, inlen, p, bi.size)) abort();
        if (!(bi.attributes & 0x20)) {
            sl_rec_iter it;
            if (sl_rec_iter_init(&it, p, bi.size, a, 1 << 24)) abort();
            sl_record r;
            int32_t k = 0;
            while (sl_rec_iter_next(&it, &r)) k++;
            if (sl_rec_iter_err(&it) || k != bi.record_count) abort();
        }
        p += bi.size;
        n -= bi.size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_pol) {
        char err[256];
        if (sl_policy_parse(k_policy, strlen(k_policy), "fuzz", NULL, NULL, &g_pol, err,
                            sizeof err))
            abort();
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        free(buf);
        return 0;
    }
    if (size) memcpy(copy, data, size);
    sl_arena *a = sl_arena_new(1 << 16);
    for (int strict = 0; strict < 2 && a; strict++) {
        const sl_ptopic *t = sl_policy_topic(g_pol, strict ? "t" : "lenient", strict ? 1 : 7);
        uint8_t *d = buf;
        size_t n = size;
        bool rw = false;
        char why[128];
        sl_err e = sl_protect_set(t, NULL, a, 1 << 20, &d, &n, &rw, NULL, why, sizeof why);
        if (e && (d != buf || n != size || rw)) abort(); /* a failed set is left alone */
        if (!e && rw) check_set(d, n, copy, size, a);
        if (!e && !rw && (d != buf || n != size)) abort();
        if (size && memcmp(buf, copy, size) != 0) abort();

        sl_rec_header h[2] = {{{(const uint8_t *)"meta", 4}, {buf, (int32_t)size}},
                              {{(const uint8_t *)"raw", 3}, {buf, (int32_t)size}}};
        sl_prec r = {.key = {buf, (int32_t)size}, .value = {buf, (int32_t)size}, h, 2};
        (void)sl_protect_record(t, NULL, a, &r, NULL, why, sizeof why);
        if (size && memcmp(buf, copy, size) != 0) abort();
    }
    sl_arena_free(a);
    free(copy);
    free(buf);
    return 0;
}
