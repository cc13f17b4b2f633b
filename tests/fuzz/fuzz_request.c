/* libFuzzer target: the input is a request frame (without the 4-byte size). The header is
 * decoded, then the body is decoded with the request decoder of every defined API and version
 * (the header's own pair first). When the header is unusable, the first input bytes pick the
 * API and version. Every decode runs in a fresh, capped arena; a successful decode is
 * re-encoded and decoded again, and the two must agree byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/gen/sl_msgs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ARENA_CAP = 1 << 20 };

static void decode_one(const sl_msg_codec *c, int16_t v, const uint8_t *p, size_t n) {
    sl_arena *a = sl_arena_new(4096);
    if (!a) return;
    void *m = sl_arena_calloc(a, 1, c->size);
    sl_rd r = sl_rd_init(p, n);
    if (m && c->decode(&r, a, v, m) == SL_OK && sl_arena_used(a) < ARENA_CAP) {
        /* Anything we accept must survive a round trip (decode views stay valid: same input). */
        sl_wr w1, w2;
        sl_wr_init(&w1, a, 256);
        c->encode(&w1, v, m);
        void *m2 = sl_arena_calloc(a, 1, c->size);
        if (!w1.err && m2) {
            sl_rd r2 = sl_rd_init(w1.buf, w1.len);
            if (c->decode(&r2, a, v, m2) != SL_OK || sl_rd_left(&r2) != 0) abort();
            sl_wr_init(&w2, a, 256);
            c->encode(&w2, v, m2);
            if (!w2.err && (w2.len != w1.len || memcmp(w1.buf, w2.buf, w1.len) != 0)) abort();
        }
    }
    sl_arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64 * 1024) return 0; /* the broker caps pre-auth frames well below this */
    sl_rd r = sl_rd_init(data, size);
    sl_req_header h;
    size_t napis;
    const sl_api_info *apis = sl_api_all(&napis);
    if (sl_req_header_decode(&r, &h) == SL_OK) {
        const sl_msg_codec *c = sl_msg_codec_get(h.api_key, false);
        const sl_api_info *ai = sl_api_lookup(h.api_key);
        if (c && ai && h.api_version >= ai->min_version && h.api_version <= ai->max_version)
            decode_one(c, h.api_version, r.p, sl_rd_left(&r));
        /* The same body under every other decoder finds bugs the header would hide. */
        for (size_t i = 0; i < napis; i++) {
            const sl_msg_codec *o = sl_msg_codec_get(apis[i].key, false);
            for (int16_t v = apis[i].min_version; v <= apis[i].max_version; v++)
                decode_one(o, v, r.p, sl_rd_left(&r));
        }
    } else if (size >= 2) {
        const sl_api_info *ai = &apis[data[0] % napis];
        int16_t v = (int16_t)(ai->min_version + data[1] % (ai->max_version - ai->min_version + 1));
        decode_one(sl_msg_codec_get(ai->key, data[0] & 0x80), v, data + 2, size - 2);
    }
    return 0;
}
