/* Append/read throughput of the partition log.
 * Build: cc -std=c11 -D_GNU_SOURCE -O2 -Isrc src/base/sl_[a-z]*.c src/storage/sl_[a-z]*.c \
 *        -o /tmp/bench_log -lpthread
 * Usage: /tmp/bench_log [dir-parent (default /tmp)] [total MiB (default 256)] */
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/sl_arena.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_log.h"

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int g_pending;
static void on_done(void *ctx, sl_err e) {
    (void)ctx;
    if (e) fprintf(stderr, "flush failed: %s\n", sl_strerror(e));
    g_pending--;
}

enum { MODE_NONE, MODE_SYNC_EACH, MODE_GROUP };

static void run(const char *parent, int mode, size_t total, uint8_t *batch, size_t len,
                int32_t count, int inflight) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sl_bench_XXXXXX", parent);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    sl_log_config c;
    sl_log_config_default(&c);
    c.segment_bytes = 256 << 20;
    sl_log *log;
    if (sl_log_open(dir, &c, &log)) exit(1);
    sl_flusher *f = NULL;
    if (mode == MODE_GROUP && sl_flusher_new(&f)) exit(1);
    size_t n = total / len, done = 0;
    if (mode == MODE_SYNC_EACH && n > 2000) n = 2000;
    double t0 = now_s();
    int64_t base;
    for (size_t i = 0; i < n; i++) {
        if (sl_log_append(log, batch, len, count, 0, &base)) exit(1);
        done += len;
        if (mode == MODE_SYNC_EACH && sl_log_sync(log)) exit(1);
        if (mode == MODE_GROUP) {
            /* Like a broker with `inflight` producers waiting on acks=all. */
            g_pending++;
            sl_flusher_request(f, log, on_done, NULL);
            while (g_pending >= inflight) {
                struct pollfd p = {sl_flusher_fd(f), POLLIN, 0};
                poll(&p, 1, -1);
                sl_flusher_dispatch(f);
            }
        }
    }
    if (mode == MODE_GROUP) {
        while (g_pending) {
            struct pollfd p = {sl_flusher_fd(f), POLLIN, 0};
            poll(&p, 1, -1);
            sl_flusher_dispatch(f);
        }
        sl_flusher_free(f);
    }
    double t = now_s() - t0;
    static const char *names[] = {"append, no fsync", "append + fsync each batch",
                                  "append + group commit"};
    printf("%-28s %8.1f MB/s  %9.0f batches/s  (%zu x %zu B)\n", names[mode],
           (double)done / t / 1e6, (double)n / t, n, len);
    if (mode == MODE_NONE) {
        sl_arena *a = sl_arena_new(1 << 20);
        double r0 = now_s();
        size_t got = 0;
        int64_t off = 0, end = sl_log_end_offset(log);
        while (off < end) {
            uint8_t *out;
            size_t olen;
            if (sl_log_read(log, off, 1 << 20, a, &out, &olen) || !olen) exit(1);
            got += olen;
            off += (int64_t)(olen / len) * count;
            sl_arena_free(a);
            a = sl_arena_new(1 << 20);
        }
        double rt = now_s() - r0;
        printf("%-28s %8.1f MB/s  (1 MiB fetches, page cache)\n", "read", (double)got / rt / 1e6);
        sl_arena_free(a);
    }
    sl_log_close(log);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
    const char *parent = argc > 1 ? argv[1] : "/tmp";
    size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 256;
    sl_arena *a = sl_arena_new(1 << 20);
    size_t len;
    int32_t count = 100;
    uint8_t *batch = sl_batch_build(a, 1700000000000, count, NULL, 150, &len); /* ~16 KiB */
    if (!batch) return 1;
    run(parent, MODE_NONE, mib << 20, batch, len, count, 0);
    run(parent, MODE_SYNC_EACH, mib << 20, batch, len, count, 0);
    run(parent, MODE_GROUP, (mib / 4) << 20, batch, len, count, 64);
    sl_arena_free(a);
    return 0;
}
