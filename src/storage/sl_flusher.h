/* The flusher's fsync latency (the flusher itself is declared in sl_log.h): every fsync round
 * of a log is timed on the flusher thread into a histogram of atomics that the loop thread
 * reads when metrics are scraped (src/metrics). */
#ifndef SL_STORAGE_FLUSHER_H
#define SL_STORAGE_FLUSHER_H
#include <stdint.h>

#include "storage/sl_log.h"

#define SL_FSYNC_NBUCKETS 12
/* Upper bounds (seconds) of the buckets, ascending; a last, implicit bucket is +Inf. */
extern const double sl_fsync_bucket_le[SL_FSYNC_NBUCKETS];

typedef struct sl_fsync_hist {
    uint64_t bucket[SL_FSYNC_NBUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
    uint64_t sum_ns;
} sl_fsync_hist;

/* A snapshot of `f`'s fsync latencies so far (each field read atomically; the fields together
 * may be one fsync apart). Any thread. */
void sl_flusher_fsync_hist(const sl_flusher *f, sl_fsync_hist *out);

#endif
