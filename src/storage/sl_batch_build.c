#include "sl_batch_build.h"

#include <string.h>

#include "base/sl_buf.h"

uint8_t *sl_batch_build(sl_arena *a, int64_t base_ts, int32_t count, const void *value,
                        size_t value_len, size_t *out_len) {
    if (count < 1 || value_len > INT32_MAX / 2) return NULL;
    sl_wr w;
    sl_wr_init(&w, a, SL_BATCH_HEADER_SIZE + (size_t)count * (value_len + 16));
    uint8_t *hdr = sl_wr_reserve(&w, SL_BATCH_HEADER_SIZE);
    if (!hdr) return NULL;
    memset(hdr, 0, SL_BATCH_HEADER_SIZE);
    w.len = SL_BATCH_HEADER_SIZE;
    for (int32_t i = 0; i < count; i++) {
        /* Body first into a scratch spot so its length prefix can be written before it. */
        size_t body = 1 + sl_uvarint_size((uint64_t)i << 1) + sl_uvarint_size((uint64_t)i << 1) +
                      1 + sl_uvarint_size((uint64_t)value_len << 1) + value_len + 1;
        sl_wr_varint(&w, (int32_t)body);
        sl_wr_i8(&w, 0);      /* attributes */
        sl_wr_varlong(&w, i); /* timestamp delta */
        sl_wr_varint(&w, i);  /* offset delta */
        sl_wr_varint(&w, -1); /* null key */
        sl_wr_varint(&w, (int32_t)value_len);
        uint8_t *v = sl_wr_reserve(&w, value_len);
        if (!v) return NULL;
        if (value)
            memcpy(v, value, value_len);
        else
            memset(v, 0, value_len);
        w.len += value_len;
        sl_wr_varint(&w, 0); /* no headers */
    }
    if (w.err) return NULL;
    uint8_t *b = w.buf;
    sl_batch_seal(b, w.len, 0, count, base_ts, base_ts + count - 1);
    *out_len = w.len;
    return b;
}
