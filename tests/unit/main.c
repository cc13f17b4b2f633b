#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sl_test.h"

#define MAX_TESTS 4096
/* Each test's limit: every wait inside a test has its own deadline well below this, so the
 * alarm only fires for a test that hangs (a lost wake-up, a blocking call), which would
 * otherwise stall the whole run with no hint of where. Generous because fsync-heavy storage
 * tests take over a minute on a busy shared disk. SL_TEST_TIMEOUT_S overrides it. */
#define DEFAULT_TEST_TIMEOUT_S 300

static struct {
    const char *name;
    sl_test_fn fn;
} g_tests[MAX_TESTS];
static int g_count;
static const char *volatile g_current;
static unsigned g_timeout_s = DEFAULT_TEST_TIMEOUT_S;

void sl_test_register(const char *name, sl_test_fn fn) {
    if (g_count < MAX_TESTS) {
        g_tests[g_count].name = name;
        g_tests[g_count].fn = fn;
        g_count++;
    }
}

static void put(const char *s) {
    ssize_t r = write(STDOUT_FILENO, s, strlen(s));
    (void)r;
}

/* Async-signal-safe: write(2) and _exit(2) only. No summary line is printed, so the runner
 * (tests/run_all.sh) reports the binary as failed rather than counting a partial run. */
static void on_alarm(int sig) {
    (void)sig;
    char secs[16];
    int n = 0;
    unsigned t = g_timeout_s;
    char rev[16];
    do {
        rev[n++] = (char)('0' + t % 10);
        t /= 10;
    } while (t && n < 15);
    for (int i = 0; i < n; i++) secs[i] = rev[n - 1 - i];
    secs[n] = 0;
    put("FAIL ");
    put(g_current ? g_current : "(between tests)");
    put(": TIMEOUT: still running after ");
    put(secs);
    put(" s (SL_TEST_TIMEOUT_S); unit test run aborted\n");
    _exit(124);
}

int main(int argc, char **argv) {
    const char *env = getenv("SL_TEST_TIMEOUT_S");
    if (env && atoi(env) > 0) g_timeout_s = (unsigned)atoi(env);
    signal(SIGALRM, on_alarm);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0, skipped = 0;
    const char *tenv = getenv("SL_TEST_TIMES");
    bool times = tenv && tenv[0] == '1';
    for (int i = 0; i < g_count; i++) {
        if (argc > 1 && !strstr(g_tests[i].name, argv[1])) continue;
        int f = 0;
        g_current = g_tests[i].name;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        alarm(g_timeout_s);
        g_tests[i].fn(&f);
        alarm(0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* SL_TEST_TIMES=1: the slow ones, for keeping the suite in its time budget. */
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (times && ms >= 1000) printf("TIME %6ld ms %s\n", ms, g_tests[i].name);
        g_current = NULL;
        if (f < 0) {
            skipped++;
            printf("SKIP %s\n", g_tests[i].name);
        } else if (f) {
            failed++;
            printf("FAIL %s\n", g_tests[i].name);
        } else {
            passed++;
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
