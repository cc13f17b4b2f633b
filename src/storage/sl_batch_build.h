/* A builder of valid Kafka v2 record batches for tests and benchmarks (the layout and parsing
 * live in proto/sl_batch.h). */
#ifndef SL_STORAGE_BATCH_BUILD_H
#define SL_STORAGE_BATCH_BUILD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"
#include "proto/sl_batch.h"

/* Builds a valid uncompressed v2 batch of `count` records (count >= 1), base offset 0, record i
 * with timestamp base_ts + i, no key, no headers, and a value of `value_len` bytes copied from
 * `value` (or zero bytes when `value` is NULL). The batch is allocated in `a` and owned by it.
 * Returns NULL when out of memory. */
uint8_t *sl_batch_build(sl_arena *a, int64_t base_ts, int32_t count, const void *value,
                        size_t value_len, size_t *out_len);

#endif
