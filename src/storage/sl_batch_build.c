#include "sl_batch_build.h"

#include <string.h>

#include "proto/sl_records.h"

uint8_t *sl_batch_build(sl_arena *a, int64_t base_ts, int32_t count, const void *value,
                        size_t value_len, size_t *out_len) {
    if (count < 1 || value_len > INT32_MAX / 2) return NULL;
    if (!value) {
        uint8_t *z = sl_arena_calloc(a, 1, value_len ? value_len : 1);
        if (!z) return NULL;
        value = z;
    }
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, (size_t)count * (value_len + 16));
    for (int32_t i = 0; i < count; i++) {
        sl_rec_in r = {.timestamp_delta = i,
                       .offset_delta = i,
                       .key = SL_BYTES_NULL,
                       .value = {value, (int32_t)value_len}};
        if (sl_rec_builder_add(&b, &r)) return NULL;
    }
    uint8_t *batch;
    if (sl_rec_builder_seal(&b, 0, base_ts, base_ts + count - 1, &batch, out_len)) return NULL;
    return batch;
}
