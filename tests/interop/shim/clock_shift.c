/* Test shim (LD_PRELOAD): the wall clock (clock_gettime CLOCK_REALTIME and its coarse variant,
 * gettimeofday, time) of the process is moved by SLUICE_TEST_CLOCK_SHIFT_S seconds (may be
 * negative), so `sluice iam assume-role` can issue credentials that are already expired, or
 * expire seconds from now, without a test waiting out the 15-minute minimum duration
 * (tests/interop/test_iam.py). Monotonic clocks are untouched. Never part of the broker. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long shift_s(void) {
    const char *s = getenv("SLUICE_TEST_CLOCK_SHIFT_S");
    return s ? strtol(s, NULL, 10) : 0;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int (*real)(clockid_t, struct timespec *) =
        (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += shift_s();
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    int (*real)(struct timeval *, void *) =
        (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
    int rc = real(tv, tz);
    if (rc == 0) tv->tv_sec += shift_s();
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
