/* libFuzzer target for the transaction log (src/txn/sl_txnlog.c) and the coordinator's replay
 * of it (src/txn/sl_txn.c). Byte 0 holds flags: bit 0 puts a valid file header in front of the
 * rest, bit 1 recomputes the CRC-32C of every whole record first (so the fuzzer reaches the
 * decoder behind the checksums). The rest is the file image.
 *
 * Invariants, aborting when broken:
 *   - sl_txnlog_scan never reads past the image; every record it delivers re-encodes to exactly
 *     its bytes, back to back from the header (the format is canonical); on success the last
 *     one ends at good_end, on failure the next one starts at bad_off;
 *   - scanning the good prefix again gives the same records and no torn tail;
 *   - the coordinator opens the image iff the scan succeeds, holds at most as many ids as
 *     records, and every operation on a replayed id (whatever odd but valid state it holds)
 *     keeps its record valid, and the state after them replays to the same state. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "txn/sl_txn.h"
#include "txn/sl_txnlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct walk {
    const uint8_t *img;
    size_t n, pos, count;
    char **tids;
} walk;

static sl_err on_rec(void *ctx, const sl_txn_rec *r) {
    walk *w = ctx;
    if (!sl_txn_rec_valid(r)) abort();
    uint8_t *b;
    size_t len;
    if (sl_txnlog_encode(r, &b, &len)) abort();
    if (w->pos + len > w->n || memcmp(w->img + w->pos, b, len)) abort();
    free(b);
    w->pos += len;
    char **nt = realloc(w->tids, (w->count + 1) * sizeof *nt);
    if (!nt) abort();
    w->tids = nt;
    if (!(w->tids[w->count++] = strdup(r->tid))) abort();
    return SL_OK;
}

static void free_walk(walk *w) {
    for (size_t i = 0; i < w->count; i++) free(w->tids[i]);
    free(w->tids);
}

static sl_err next_pid(void *ctx, int64_t *out) {
    int64_t *n = ctx;
    *out = (*n)++;
    return SL_OK;
}

static char g_dir[128];

static void dump_one(void *ctx, const sl_txn_rec *r) {
    uint32_t *h = ctx;
    if (!sl_txn_rec_valid(r)) abort();
    uint8_t *b;
    size_t len;
    if (sl_txnlog_encode(r, &b, &len)) abort();
    *h += sl_crc32c(0, b, len); /* order-independent */
    free(b);
}

/* Drives every replayed id through the requests with its own pair and checks the records stay
 * valid and replay to the same state. */
static void drive(const walk *w, const uint8_t *img, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, SL_TXNLOG_FILE);
    unlink(path);
    if (n && sl_file_write_atomic(g_dir, SL_TXNLOG_FILE, img, n, 0600)) return;
    int64_t pids = 1;
    sl_txn_config cfg = {.max_timeout_ms = 60000,
                         .id_expiration_ms = 100000,
                         .rewrite_min_records = 8,
                         .alloc_pid = next_pid,
                         .alloc_ctx = &pids};
    sl_txn *c = NULL;
    char err[512];
    if (sl_txn_open(g_dir, &cfg, &c, err, sizeof err)) abort(); /* the scan accepted it */
    if (sl_txn_count(c) > w->count) abort();
    int64_t now = 1000000;
    for (size_t i = 0; i < w->count && i < 16; i++) {
        sl_str t = sl_str_c(w->tids[i]);
        const sl_txn_rec *r;
        if (sl_txn_describe(c, t, &r)) continue;
        int64_t pid = r->pid;
        int16_t ep = r->epoch;
        sl_txn_jobs j;
        sl_txn_tp tp = {sl_str_c("topic"), (int32_t)i};
        (void)sl_txn_add_partitions(c, t, pid, ep, &tp, 1, now);
        (void)sl_txn_add_offsets(c, t, pid, ep, sl_str_c("g"), now);
        (void)sl_txn_end(c, t, pid, ep, i & 1, now, &j);
        sl_txn_jobs_free(&j);
        (void)sl_txn_init_producer_id(c, t, 1000, -1, -1, now, &pid, &ep, &j);
        for (size_t k = 0; k < j.n; k++) (void)sl_txn_complete(c, t, j.v[k].pid, j.v[k].epoch, now);
        sl_txn_jobs_free(&j);
        (void)sl_txn_init_producer_id(c, t, 1000, pid, ep, now, &pid, &ep, &j);
        sl_txn_jobs_free(&j);
    }
    sl_txn_jobs j;
    if (sl_txn_pending(c, &j) == SL_OK) {
        for (size_t k = 0; k < j.n; k++)
            (void)sl_txn_complete(c, sl_str_c(j.v[k].tid), j.v[k].pid, j.v[k].epoch, now);
        sl_txn_jobs_free(&j);
    }
    (void)sl_txn_expire(c, now + 200000, &j);
    sl_txn_jobs_free(&j);
    uint32_t h1 = 0, h2 = 0;
    sl_txn_foreach(c, dump_one, &h1);
    size_t n1 = sl_txn_count(c);
    sl_txn_close(c);
    if (sl_txn_open(g_dir, &cfg, &c, err, sizeof err)) abort();
    sl_txn_foreach(c, dump_one, &h2);
    if (sl_txn_count(c) != n1 || h1 != h2) abort();
    sl_txn_close(c);
}

static void cleanup(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s", g_dir, SL_TXNLOG_FILE);
    unlink(p);
    snprintf(p, sizeof p, "%s/.%s.tmp", g_dir, SL_TXNLOG_FILE);
    unlink(p);
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1u << 20)) return 0;
    if (!g_dir[0]) {
        atexit(cleanup);
        struct stat st;
        snprintf(g_dir, sizeof g_dir, "%s/fuzz_txnlog.%d",
                 stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        if (sl_mkdir_p(g_dir, 0700)) abort();
        sl_log_set_level(SL_LOG_ERROR);
    }
    uint8_t flags = data[0];
    size_t hdr = (flags & 1) ? SL_TXNLOG_HDR : 0;
    size_t n = hdr + size - 1;
    uint8_t *img = malloc(n ? n : 1);
    if (!img) return 0;
    if (hdr) {
        memcpy(img, "SLTX\0\1\0\0", 8);
        sl_be32(img + 8, sl_crc32c(0, img, 8));
    }
    memcpy(img + hdr, data + 1, size - 1);
    for (size_t pos = SL_TXNLOG_HDR; (flags & 2) && pos + SL_TXNLOG_FRAME <= n;) {
        uint32_t len = sl_get_be32(img + pos);
        if (len > n - pos - SL_TXNLOG_FRAME) break;
        sl_be32(img + pos + 4, sl_crc32c(sl_crc32c(0, img + pos, 4), img + pos + 8, len));
        pos += SL_TXNLOG_FRAME + len;
    }
    walk w = {.img = img, .n = n, .pos = SL_TXNLOG_HDR};
    size_t good = 0, bad = 0;
    sl_err e = sl_txnlog_scan(img, n, on_rec, &w, &good, &bad);
    if (good > n || bad > n) abort();
    if (e == SL_OK) {
        if (w.count ? w.pos != good : good != SL_TXNLOG_HDR) abort();
        walk w2 = {.img = img, .n = good, .pos = SL_TXNLOG_HDR};
        size_t good2 = 0, bad2 = 0;
        if (sl_txnlog_scan(img, good, on_rec, &w2, &good2, &bad2) || good2 != good ||
            w2.count != w.count)
            abort();
        free_walk(&w2);
        drive(&w, img, n);
    } else if (e != SL_ENOMEM && bad && w.pos != bad) {
        abort();
    }
    free_walk(&w);
    free(img);
    return 0;
}
