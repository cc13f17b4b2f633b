#ifndef SL_TIME_H
#define SL_TIME_H
#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds, for timers and timeouts. */
static inline int64_t sl_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
/* Wall-clock milliseconds since the epoch, for record timestamps and retention. */
static inline int64_t sl_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#endif
