/* Minimal unit test framework: tests register themselves; the runner prints
 * "N passed, N failed, N skipped" as its last line. */
#ifndef SL_TEST_H
#define SL_TEST_H
#include <stdio.h>
#include <stdlib.h>

typedef void (*sl_test_fn)(int *failed);
void sl_test_register(const char *name, sl_test_fn fn);

#define SL_TEST(name)                                                                              \
    static void name(int *sl_failed_);                                                             \
    __attribute__((constructor)) static void name##_register(void) {                               \
        sl_test_register(#name, name);                                                             \
    }                                                                                              \
    static void name(int *sl_failed_)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            *sl_failed_ = 1;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)
/* Skips the rest of the test, saying why; the runner lists it as "SKIP name: reason", and with
 * CI=true tests/run_all.sh fails on it unless tests/skip-allowlist.txt names it. */
#define SKIP(reason)                                                                               \
    do {                                                                                           \
        printf("SKIP-REASON %s\n", reason);                                                        \
        *sl_failed_ = -1;                                                                          \
        return;                                                                                    \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  %s:%d: %s == %s failed (%lld vs %lld)\n", __FILE__, __LINE__, #a,   \
                    #b, a_, b_);                                                                   \
            *sl_failed_ = 1;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#endif
