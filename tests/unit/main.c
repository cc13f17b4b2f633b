#include <stdio.h>
#include <string.h>

#include "sl_test.h"

#define MAX_TESTS 4096
static struct {
    const char *name;
    sl_test_fn fn;
} g_tests[MAX_TESTS];
static int g_count;

void sl_test_register(const char *name, sl_test_fn fn) {
    if (g_count < MAX_TESTS) {
        g_tests[g_count].name = name;
        g_tests[g_count].fn = fn;
        g_count++;
    }
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_count; i++) {
        if (argc > 1 && !strstr(g_tests[i].name, argv[1])) continue;
        int f = 0;
        g_tests[i].fn(&f);
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
