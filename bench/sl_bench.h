/* Pieces shared by the load generators (sl_loadgen, sl_natsgen): clocks, the payload format, a
 * log-linear latency histogram and the result line. Header-only so each generator stays one
 * translation unit with no link-time coupling to the broker sources. */
#ifndef SL_BENCH_H
#define SL_BENCH_H
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* CLOCK_MONOTONIC is one clock for every process on the host, so a timestamp written by a
 * producer process is comparable with the consumer's clock in another process. */
static inline int64_t sb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps until an absolute CLOCK_MONOTONIC time; absolute so that oversleeping once does not
 * shift every later intended send time. */
static inline void sb_sleep_until(int64_t t_ns) {
    struct timespec ts = {(time_t)(t_ns / 1000000000), (long)(t_ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static inline void sb_sleep_ns(int64_t ns) { sb_sleep_until(sb_now_ns() + ns); }

/* ---- Payload ---------------------------------------------------------------------------------
 * Bytes 0..7: intended send time (ns, CLOCK_MONOTONIC, little-endian); 8..15: sequence number;
 * 16..19: magic. The rest is fresh pseudo-random bytes per message: a shared random pool sliced
 * at offsets would repeat inside a batch and let lz4/zstd compress it, which a real incompressible
 * payload would not allow. */
#define SB_HDR_LEN 20
#define SB_MAGIC   0x534c4245u /* "SLBE" */

typedef struct sb_rng {
    uint64_t s;
} sb_rng;

static inline uint64_t sb_rng_next(sb_rng *r) { /* splitmix64: fast and good enough for noise */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void sb_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t sb_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Fills `len` (>= SB_HDR_LEN) bytes of `buf` as message `seq` intended for time `ts_ns`. */
static inline void sb_payload_fill(uint8_t *buf, size_t len, sb_rng *r, int64_t ts_ns,
                                   uint64_t seq) {
    size_t i = SB_HDR_LEN;
    for (; i + 8 <= len; i += 8) sb_put_u64(buf + i, sb_rng_next(r));
    if (i < len) {
        uint64_t v = sb_rng_next(r);
        for (; i < len; i++, v >>= 8) buf[i] = (uint8_t)v;
    }
    sb_put_u64(buf, (uint64_t)ts_ns);
    sb_put_u64(buf + 8, seq);
    buf[16] = (uint8_t)(SB_MAGIC >> 24), buf[17] = (uint8_t)(SB_MAGIC >> 16);
    buf[18] = (uint8_t)(SB_MAGIC >> 8), buf[19] = (uint8_t)SB_MAGIC;
}

/* Returns the intended send time carried by a payload, or -1 if it is not one of ours. */
static inline int64_t sb_payload_ts(const void *data, size_t len) {
    const uint8_t *p = data;
    if (len < SB_HDR_LEN || p[16] != (uint8_t)(SB_MAGIC >> 24) ||
        p[17] != (uint8_t)(SB_MAGIC >> 16) || p[18] != (uint8_t)(SB_MAGIC >> 8) ||
        p[19] != (uint8_t)SB_MAGIC)
        return -1;
    return (int64_t)sb_get_u64(p);
}

/* ---- Histogram -------------------------------------------------------------------------------
 * HDR-style log-linear buckets over nanoseconds: exact below 128 ns, then 64 linear sub-buckets
 * per power of two (relative error under 1.6 %). Fixed size, so recording never allocates and a
 * histogram can live in static storage. */
#define SB_HIST_SUB     64
#define SB_HIST_BUCKETS ((64 - 6) * SB_HIST_SUB + SB_HIST_SUB)

typedef struct sb_hist {
    uint64_t n[SB_HIST_BUCKETS];
    uint64_t count;
    int64_t max;
    double sum;
} sb_hist;

static inline int sb_hist_index(uint64_t v) {
    if (v < 2 * SB_HIST_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    return (shift + 1) * SB_HIST_SUB + (int)(v >> shift) - SB_HIST_SUB;
}

/* Midpoint of the values that share bucket `i`. */
static inline double sb_hist_value(int i) {
    if (i < 2 * SB_HIST_SUB) return i;
    int shift = i / SB_HIST_SUB - 1;
    uint64_t m = (uint64_t)(i % SB_HIST_SUB + SB_HIST_SUB);
    return (double)(m << shift) + (double)((1ull << shift) - 1) / 2.0;
}

static inline void sb_hist_record(sb_hist *h, int64_t v) {
    if (v < 0) v = 0; /* a timestamp from the future can only be clock noise */
    h->n[sb_hist_index((uint64_t)v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

static inline void sb_hist_merge(sb_hist *dst, const sb_hist *src) {
    for (int i = 0; i < SB_HIST_BUCKETS; i++) dst->n[i] += src->n[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max) dst->max = src->max;
}

/* Value at quantile q (0..1) in ns; 0 for an empty histogram. */
static inline double sb_hist_quantile(const sb_hist *h, double q) {
    if (!h->count) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->count);
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < SB_HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= want) {
            double v = sb_hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* Appends `"name":{"p50":..,"p99":..,"p999":..,"max":..,"mean":..,"n":..}` in microseconds. */
static inline void sb_hist_json(FILE *f, const char *name, const sb_hist *h) {
    fprintf(
        f, "\"%s\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f,\"n\":%llu}",
        name, sb_hist_quantile(h, 0.50) / 1e3, sb_hist_quantile(h, 0.99) / 1e3,
        sb_hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
        h->count ? h->sum / (double)h->count / 1e3 : 0.0, (unsigned long long)h->count);
}

static inline void sb_hist_human(FILE *f, const char *name, const sb_hist *h) {
    if (!h->count) return;
    fprintf(f, "  %s p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n", name,
            sb_hist_quantile(h, 0.50) / 1e6, sb_hist_quantile(h, 0.99) / 1e6,
            sb_hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6);
}

#endif
