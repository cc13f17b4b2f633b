/* Rate-limited log lines (issue 10): a flood from one address writes a bounded number of
 * lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "sl_test.h"

static int count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle)) n++;
    if (f) fclose(f);
    return n;
}

SL_TEST(attacker_log_lines_limited_per_address) {
    char path[] = "/tmp/sl_loglim_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(dup2(fd, 2) == 2);
    unsigned long long before = sl_log_suppressed_total();
    for (int i = 0; i < 500; i++)
        sl_log_limited(SL_LOG_WARN, "test", "unit flood", "192.0.2.1", "i=%d", i);
    for (int i = 0; i < 3; i++)
        sl_log_limited(SL_LOG_WARN, "test", "unit flood", "192.0.2.2", "i=%d", i);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    CHECK_EQ(count_lines(path, "msg=\"unit flood\" i="), SL_LOG_LIMIT_BURST + 3);
    CHECK_EQ(sl_log_suppressed_total() - before, 500ULL - SL_LOG_LIMIT_BURST);
    unlink(path);
    char a[64];
    CHECK(strcmp(sl_log_peer_addr("127.0.0.2:5555", a, sizeof a), "127.0.0.2") == 0);
    CHECK(strcmp(sl_log_peer_addr("[::1]:80", a, sizeof a), "::1") == 0);
    CHECK(strcmp(sl_log_peer_addr("unknown", a, sizeof a), "unknown") == 0);
}

SL_TEST(attacker_log_lines_bounded_across_many_addresses) {
    char path[] = "/tmp/sl_loglim_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(dup2(fd, 2) == 2);
    char addr[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(addr, sizeof addr, "2001:db8::%x", i);
        for (int k = 0; k < 5; k++)
            sl_log_limited(SL_LOG_WARN, "test", "many addresses", addr, "i=%d", i);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    /* 10 000 calls: at most the global budget is written, whatever the addresses. */
    int n = count_lines(path, "msg=\"many addresses\" i=");
    CHECK(n > 0 && n <= SL_LOG_LIMIT_GLOBAL);
    unlink(path);
}
