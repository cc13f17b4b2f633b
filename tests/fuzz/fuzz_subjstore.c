/* libFuzzer target for the subject store's record decoder (sl_fkeys_store_decode,
 * src/protect/sl_fkeys.c). Byte 0 is a flag: with bit 0 set, every whole record's CRC-32C is
 * recomputed first so the fuzzer reaches what lies behind the checksum (version 0, ids). The
 * rest is a store file: "SLSUBJ01" then records. Invariants: no crash or leak; what is consumed
 * is whole records and never past the input; each record delivered re-encodes to exactly its
 * bytes in the input, in order; good + skipped records fit in what was consumed; the delivered
 * records, re-encoded back to back, decode again to the same records with nothing skipped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_crc32c.h"
#include "protect/sl_fkeys_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    const uint8_t *base; /* the records decoded (NULL: the second pass, compare with recs) */
    size_t pos;          /* next offset a record may sit at */
    sl_fkeys_rec *recs;
    size_t n, cap, check;
} seen;

static sl_err on_rec(void *ctx, const sl_fkeys_rec *r) {
    seen *s = ctx;
    uint8_t enc[SL_FKEYS_REC];
    sl_fkeys_rec_encode(r, enc);
    if (r->version == 0) abort();
    if (s->base) {
        /* It must be one of the whole records at or after the previous one's end. */
        size_t off = s->pos;
        while (memcmp(s->base + off, enc, SL_FKEYS_REC)) off += SL_FKEYS_REC;
        s->pos = off + SL_FKEYS_REC;
        if (s->n == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 16;
            sl_fkeys_rec *nr = realloc(s->recs, nc * sizeof *nr);
            if (!nr) return SL_ENOMEM;
            s->recs = nr;
            s->cap = nc;
        }
        s->recs[s->n++] = *r;
    } else {
        if (s->check >= s->n || memcmp(&s->recs[s->check], r, sizeof *r)) abort();
        s->check++;
    }
    return SL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 + 8 || size > (1u << 20)) return 0;
    bool fix = data[0] & 1;
    const uint8_t *f = data + 1;
    size_t fn = size - 1;
    if (memcmp(f, SL_FKEYS_MAGIC, 8)) return 0;
    size_t n = fn - 8;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return 0;
    memcpy(b, f + 8, n);
    for (size_t off = 0; fix && n - off >= SL_FKEYS_REC; off += SL_FKEYS_REC) {
        uint32_t crc = sl_crc32c(0, b + off, 60);
        b[off + 60] = (uint8_t)(crc >> 24);
        b[off + 61] = (uint8_t)(crc >> 16);
        b[off + 62] = (uint8_t)(crc >> 8);
        b[off + 63] = (uint8_t)crc;
    }
    seen s = {.base = b};
    size_t used = 0;
    int bad = 0;
    sl_err e = sl_fkeys_store_decode(b, n, on_rec, &s, &used, &bad);
    if (e == SL_OK) {
        if (used > n || used % SL_FKEYS_REC || bad < 0) abort();
        if (s.pos != used) abort(); /* consumed ends at the last good record */
        if ((s.n + (size_t)bad) * SL_FKEYS_REC > used) abort();
        uint8_t *again = malloc(s.n ? s.n * SL_FKEYS_REC : 1);
        if (again) {
            for (size_t i = 0; i < s.n; i++)
                sl_fkeys_rec_encode(&s.recs[i], again + i * SL_FKEYS_REC);
            seen t = {.recs = s.recs, .n = s.n};
            size_t used2 = 0;
            int bad2 = 0;
            if (sl_fkeys_store_decode(again, s.n * SL_FKEYS_REC, on_rec, &t, &used2, &bad2) ||
                bad2 || used2 != s.n * SL_FKEYS_REC || t.check != s.n)
                abort();
            free(again);
        }
    }
    free(s.recs);
    free(b);
    return 0;
}
