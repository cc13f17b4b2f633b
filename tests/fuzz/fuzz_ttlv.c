/* libFuzzer target for the KMIP TTLV decoder (src/kms/sl_ttlv.h), which reads what a KMIP server
 * (or anything pretending to be one) sends the kmip KMS provider. Whatever the bytes: no read
 * outside the input (an exact-size heap copy, so ASan sees one), and an accepted document is
 * coherent: every value inside the input, every subtree index in range and properly nested,
 * depth within SL_TTLV_MAX_DEPTH, fixed-size types their size. A decoded document re-encodes to
 * the same bytes (the codec has one encoding per document: zero padding, exact lengths), and the
 * response reader and attribute walker run on it too. Seeds: PyKMIP-encoded messages
 * (tests/unit/fixtures/gen_ttlv_fixtures.py --corpus). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/sl_ttlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_ttlv_item g_items[1024];

/* Re-encodes items [i, end) into e; returns the index after them. */
static uint32_t reencode(sl_ttlv_enc *e, const sl_ttlv_doc *d, uint32_t i, uint32_t end) {
    while (i < end) {
        const sl_ttlv_item *it = &d->items[i];
        if (it->type == SL_TTLV_STRUCT) {
            sl_ttlv_begin(e, it->tag);
            reencode(e, d, i + 1, it->end);
            sl_ttlv_end(e);
            i = it->end;
            continue;
        }
        uint32_t u;
        int64_t l;
        switch (it->type) {
        case SL_TTLV_INT:
            sl_ttlv_get_u32(d, (int)i, it->type, &u);
            sl_ttlv_int(e, it->tag, (int32_t)u);
            break;
        case SL_TTLV_ENUM:
            sl_ttlv_get_u32(d, (int)i, it->type, &u);
            sl_ttlv_enum(e, it->tag, u);
            break;
        case SL_TTLV_LONG:
            sl_ttlv_get_i64(d, (int)i, it->type, &l);
            sl_ttlv_long(e, it->tag, l);
            break;
        case SL_TTLV_DATETIME:
            sl_ttlv_get_i64(d, (int)i, it->type, &l);
            sl_ttlv_datetime(e, it->tag, l);
            break;
        case SL_TTLV_BOOL:
            sl_ttlv_bool(e, it->tag, it->val[7] != 0);
            break;
        case SL_TTLV_TEXT:
            sl_ttlv_text(e, it->tag, (const char *)it->val, it->len);
            break;
        default: /* bytes, big integer, interval: written as raw items below */
            sl_ttlv_bytes(e, it->tag, it->val, it->len);
            e->buf[e->len - ((it->len + 7u) & ~7u) - 5] = it->type;
            break;
        }
        i++;
    }
    return i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sl_ttlv_doc d;
    if (sl_ttlv_decode(buf, size, g_items, 1024, &d) == SL_OK) {
        if (d.n == 0 || d.n > 1024) abort();
        for (uint32_t i = 0; i < d.n; i++) {
            const sl_ttlv_item *it = &d.items[i];
            if (it->val < buf + 8 || it->len > size || it->val + it->len > buf + size) abort();
            if (it->end <= i || it->end > d.n || it->depth > SL_TTLV_MAX_DEPTH) abort();
            if (it->type != SL_TTLV_STRUCT && it->end != i + 1) abort();
            /* A subtree lies within its parent's. */
            for (uint32_t k = i + 1; k < it->end; k++)
                if (d.items[k].end > it->end || d.items[k].depth <= it->depth) abort();
            if ((it->type == SL_TTLV_INT || it->type == SL_TTLV_ENUM) && it->len != 4) abort();
        }
        sl_ttlv_enc e;
        sl_ttlv_enc_init(&e);
        reencode(&e, &d, 0, d.n);
        if (sl_ttlv_enc_finish(&e) != SL_OK || e.len != size || memcmp(e.buf, buf, size)) abort();
        sl_ttlv_enc_free(&e);
    }
    sl_kmip_resp r;
    if (sl_kmip_resp_decode(buf, size, g_items, 1024, &r) == SL_OK) {
        if (r.message && (r.message < buf || r.message + r.message_len > buf + size)) abort();
        uint32_t s, a, l;
        sl_kmip_resp_attributes(&r, &s, &a, &l);
        const uint8_t *p;
        size_t n;
        if (sl_ttlv_get_bytes(&r.doc, sl_ttlv_child(&r.doc, r.payload, SL_KMIP_TAG_DATA),
                              SL_TTLV_BYTES, &p, &n) &&
            (p < buf || p + n > buf + size))
            abort();
    }
    free(buf);
    return 0;
}
