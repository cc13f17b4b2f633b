/* Microbenchmarks of the broker's hot paths, linked against the release objects:
 * Produce/Fetch codecs, CRC-32C, partition log append (no fsync, fsync per batch, group commit),
 * SCRAM logins, TLS handshakes (the broker's own SSL_CTX from sl_tls_ctx_build).
 *
 *   sl_micro [--quick] [--dir DIR]     (DIR: where the log benchmark writes, default /tmp)
 *
 * Prints one human line and one JSON line ('{'-prefixed) per benchmark. */
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sl_scram.h"
#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "crypto/sl_certgen.h"
#include "crypto/sl_tls_ctx.h"
#include "proto/gen/sl_msgs.h"
#include "storage/sl_batch_build.h"
#include "storage/sl_log.h"

static int g_quick;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps results alive so the compiler cannot drop the measured work. */
static volatile uint64_t g_sink;

static void report(const char *name, double per_op_ns, double mb_s, const char *extra) {
    printf("%-40s %12.1f ns/op  %10.1f MB/s  %s\n", name, per_op_ns, mb_s, extra ? extra : "");
    printf("{\"bench\":\"%s\",\"ns_per_op\":%.1f,\"mb_per_s\":%.1f}\n", name, per_op_ns, mb_s);
}

/* Repeats fn until at least `min_s` elapsed (and 3 times at least); returns seconds per call. */
static double timeit(void (*fn)(void *), void *ctx, double min_s) {
    fn(ctx); /* warm-up: caches, page faults, lazy init */
    long n = 0;
    double t0 = now_s(), t;
    do {
        fn(ctx);
        n++;
        t = now_s() - t0;
    } while (t < min_s || n < 3);
    return t / (double)n;
}

/* ---- CRC-32C ----------------------------------------------------------------------------------
 */

typedef struct crc_ctx {
    uint8_t *buf;
    size_t len;
    int sw;
} crc_ctx;

static void crc_run(void *p) {
    crc_ctx *c = p;
    g_sink += c->sw ? sl_crc32c_sw(0, c->buf, c->len) : sl_crc32c(0, c->buf, c->len);
}

static void bench_crc(void) {
    crc_ctx c = {malloc(1 << 20), 1 << 20, 0};
    for (size_t i = 0; i < c.len; i++) c.buf[i] = (uint8_t)(i * 131 + 7);
    double t = timeit(crc_run, &c, g_quick ? 0.05 : 0.5);
    char extra[64];
    snprintf(extra, sizeof extra, "(%.2f GB/s, 1 MiB buffer)", (double)c.len / t / 1e9);
    report("crc32c (hardware path)", t * 1e9, (double)c.len / t / 1e6, extra);
    c.sw = 1;
    t = timeit(crc_run, &c, g_quick ? 0.05 : 0.5);
    snprintf(extra, sizeof extra, "(%.2f GB/s, 1 MiB buffer)", (double)c.len / t / 1e9);
    report("crc32c (portable table)", t * 1e9, (double)c.len / t / 1e6, extra);
    free(c.buf);
}

/* ---- Codecs -----------------------------------------------------------------------------------
 */

typedef struct codec_ctx {
    const uint8_t *wire;
    size_t wire_len;
    int16_t version;
    const void *msg;
    int kind;  /* 0 produce req, 1 fetch req, 2 fetch resp */
    bool refs; /* encode as the broker answers: records by reference, output as iovecs */
} codec_ctx;

/* Decode as the broker does: a fresh arena per request, freed in one step. */
static void decode_run(void *p) {
    codec_ctx *c = p;
    sl_arena *a = sl_arena_new(16 * 1024);
    sl_rd r = sl_rd_init(c->wire, c->wire_len);
    sl_err e;
    if (c->kind == 0) {
        sl_produce_req m;
        e = sl_produce_req_decode(&r, a, c->version, &m);
        g_sink += (uint64_t)m.topic_data_count;
    } else if (c->kind == 1) {
        sl_fetch_req m;
        e = sl_fetch_req_decode(&r, a, c->version, &m);
        g_sink += (uint64_t)m.topics_count;
    } else {
        sl_fetch_resp m;
        e = sl_fetch_resp_decode(&r, a, c->version, &m);
        g_sink += (uint64_t)m.responses_count;
    }
    if (e) {
        fprintf(stderr, "sl_micro: decode failed: %s\n", sl_strerror(e));
        exit(1);
    }
    sl_arena_free(a);
}

static void encode_run(void *p) {
    codec_ctx *c = p;
    sl_arena *a = sl_arena_new(16 * 1024);
    sl_wr w;
    sl_wr_init(&w, a, 4096);
    if (c->refs) sl_wr_enable_refs(&w, 2048);
    if (c->kind == 0)
        sl_produce_req_encode(&w, c->version, c->msg);
    else if (c->kind == 1)
        sl_fetch_req_encode(&w, c->version, c->msg);
    else
        sl_fetch_resp_encode(&w, c->version, c->msg);
    struct iovec *iov;
    if (c->refs) g_sink += (uint64_t)sl_wr_iov(&w, &iov);
    g_sink += w.len;
    sl_arena_free(a);
}

static void bench_codec(const char *name, codec_ctx *c) {
    char n1[96], n2[96], extra[64];
    snprintf(extra, sizeof extra, "(%zu-byte message, v%d)", c->wire_len, c->version);
    snprintf(n1, sizeof n1, "%s decode", name);
    double t = timeit(decode_run, c, g_quick ? 0.05 : 0.5);
    report(n1, t * 1e9, (double)c->wire_len / t / 1e6, extra);
    snprintf(n2, sizeof n2, "%s encode", name);
    t = timeit(encode_run, c, g_quick ? 0.05 : 0.5);
    report(n2, t * 1e9, (double)c->wire_len / t / 1e6, extra);
}

static void bench_codecs(void) {
    sl_arena *a = sl_arena_new(1 << 20);
    /* What librdkafka sends in the matrix: one partition, a batch of ~1 MB of 1 KiB records. */
    size_t blen;
    static uint8_t value[1024];
    for (size_t i = 0; i < sizeof value; i++) value[i] = (uint8_t)(i * 37 + 11);
    uint8_t *batch = sl_batch_build(a, 1700000000000, 960, value, sizeof value, &blen);
    if (!batch) exit(1);

    sl_produce_req pr;
    sl_produce_req_init(&pr);
    sl_produce_req_partition pp = {.index = 0, .records = {batch, (int32_t)blen}};
    sl_produce_req_topic pt = {
        .name = sl_str_c("bench-p1"), .partition_data = &pp, .partition_data_count = 1};
    pr.acks = -1;
    pr.timeout_ms = 30000;
    pr.topic_data = &pt;
    pr.topic_data_count = 1;
    sl_wr w;
    sl_wr_init(&w, a, 4096);
    sl_produce_req_encode(&w, 9, &pr);
    codec_ctx c = {w.buf, w.len, 9, &pr, 0, false};
    bench_codec("Produce request (1 x 960 KiB batch)", &c);

    /* A small batch shows the fixed cost per request rather than the memcpy-free view. */
    size_t slen;
    uint8_t *small = sl_batch_build(a, 1700000000000, 1, value, sizeof value, &slen);
    pp.records = (sl_bytes){small, (int32_t)slen};
    sl_wr_init(&w, a, 4096);
    sl_produce_req_encode(&w, 9, &pr);
    codec_ctx cs = {w.buf, w.len, 9, &pr, 0, false};
    bench_codec("Produce request (1 x 1 KiB record)", &cs);

    /* Fetch request: 8 partitions of one topic, as in the 8-partition matrix rows. */
    sl_fetch_req fr;
    sl_fetch_req_init(&fr);
    sl_fetch_req_partition fps[8];
    for (int i = 0; i < 8; i++)
        fps[i] = (sl_fetch_req_partition){.partition = i,
                                          .current_leader_epoch = -1,
                                          .fetch_offset = 123456 + i,
                                          .last_fetched_epoch = -1,
                                          .log_start_offset = -1,
                                          .partition_max_bytes = 1 << 20};
    sl_fetch_req_topic ft = {
        .topic = sl_str_c("bench-p8"), .partitions = fps, .partitions_count = 8};
    fr.replica_id = -1;
    fr.max_wait_ms = 500;
    fr.min_bytes = 1;
    fr.max_bytes = 52428800;
    fr.topics = &ft;
    fr.topics_count = 1;
    fr.forgotten_topics_data_count = 0;
    fr.rack_id = sl_str_c("");
    sl_wr_init(&w, a, 4096);
    sl_fetch_req_encode(&w, 12, &fr);
    codec_ctx cf = {w.buf, w.len, 12, &fr, 1, false};
    bench_codec("Fetch request (8 partitions)", &cf);

    /* Fetch response: 8 partitions, each carrying the ~1 MB batch. */
    sl_fetch_resp rs;
    sl_fetch_resp_init(&rs);
    sl_fetch_resp_partition rps[8];
    for (int i = 0; i < 8; i++) {
        memset(&rps[i], 0, sizeof rps[i]);
        rps[i].partition_index = i;
        rps[i].high_watermark = rps[i].last_stable_offset = 1000000;
        rps[i].diverging_epoch = (sl_fetch_resp_diverging_epoch){-1, -1};
        rps[i].current_leader = (sl_fetch_resp_current_leader){-1, -1};
        rps[i].snapshot_id = (sl_fetch_resp_snapshot_id){-1, -1};
        rps[i].aborted_transactions_count = -1;
        rps[i].preferred_read_replica = -1;
        rps[i].records = (sl_bytes){batch, (int32_t)blen};
    }
    sl_fetch_resp_topic rt = {
        .topic = sl_str_c("bench-p8"), .partitions = rps, .partitions_count = 8};
    rs.responses = &rt;
    rs.responses_count = 1;
    rs.node_endpoints_count = 0;
    sl_wr_init(&w, a, 4096);
    sl_fetch_resp_encode(&w, 12, &rs);
    codec_ctx cr = {w.buf, w.len, 12, &rs, 2, false};
    bench_codec("Fetch response (8 x 960 KiB)", &cr);
    /* What the broker does since records go out by reference: the cost no longer grows with
     * the bytes served. */
    cr.refs = true;
    char extra[64];
    snprintf(extra, sizeof extra, "(%zu-byte message, v12, 17 iovecs)", cr.wire_len);
    double t = timeit(encode_run, &cr, g_quick ? 0.05 : 0.5);
    report("Fetch response (8 x 960 KiB) encode by reference", t * 1e9,
           (double)cr.wire_len / t / 1e6, extra);
    sl_arena_free(a);
}

/* ---- Log append ----------------------------------------------------------------------------- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int g_pending;
static void on_flushed(void *ctx, sl_err e) {
    (void)ctx;
    if (e) fprintf(stderr, "sl_micro: flush failed: %s\n", sl_strerror(e));
    g_pending--;
}

enum { LOG_NONE, LOG_SYNC_EACH, LOG_GROUP };

static void bench_log_mode(const char *parent, int mode, size_t total, uint8_t *batch, size_t len,
                           int32_t count, int inflight) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sl_micro_XXXXXX", parent);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    sl_log_config cfg;
    sl_log_config_default(&cfg);
    cfg.segment_bytes = 256 << 20;
    sl_log *log;
    if (sl_log_open(dir, &cfg, &log)) exit(1);
    sl_flusher *f = NULL;
    if (mode == LOG_GROUP && sl_flusher_new(&f)) exit(1);
    size_t n = total / len;
    if (mode == LOG_SYNC_EACH && n > (g_quick ? 50u : 1000u)) n = g_quick ? 50 : 1000;
    double t0 = now_s();
    int64_t base;
    for (size_t i = 0; i < n; i++) {
        if (sl_log_append(log, batch, len, count, 0, &base)) exit(1);
        if (mode == LOG_SYNC_EACH && sl_log_sync(log)) exit(1);
        if (mode == LOG_GROUP) {
            /* Like a broker with `inflight` producers waiting on acks=all. */
            g_pending++;
            sl_flusher_request(f, log, on_flushed, NULL);
            while (g_pending >= inflight) {
                struct pollfd p = {sl_flusher_fd(f), POLLIN, 0};
                poll(&p, 1, -1);
                sl_flusher_dispatch(f);
            }
        }
    }
    if (mode == LOG_GROUP) {
        while (g_pending) {
            struct pollfd p = {sl_flusher_fd(f), POLLIN, 0};
            poll(&p, 1, -1);
            sl_flusher_dispatch(f);
        }
        sl_flusher_free(f);
    }
    double t = now_s() - t0;
    static const char *names[] = {"log append, no fsync", "log append + fsync each batch",
                                  "log append + group commit (64 waiting)"};
    char extra[96];
    snprintf(extra, sizeof extra, "(%zu batches of %zu B, %.0f batches/s)", n, len, (double)n / t);
    report(names[mode], t / (double)n * 1e9, (double)(n * len) / t / 1e6, extra);
    if (mode == LOG_NONE) {
        sl_arena *a = sl_arena_new(1 << 20);
        double r0 = now_s();
        size_t got = 0, reads = 0;
        int64_t off = 0, end = sl_log_end_offset(log);
        while (off < end) {
            uint8_t *out;
            size_t olen;
            if (sl_log_read(log, off, 1 << 20, a, &out, &olen) || !olen) exit(1);
            got += olen;
            reads++;
            off += (int64_t)(olen / len) * count;
            sl_arena_free(a);
            a = sl_arena_new(1 << 20);
        }
        double rt = now_s() - r0;
        report("log read (1 MiB reads, page cache)", rt / (double)(reads ? reads : 1) * 1e9,
               (double)got / rt / 1e6, NULL);
        sl_arena_free(a);
    }
    sl_log_close(log);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void bench_log(const char *parent) {
    sl_arena *a = sl_arena_new(1 << 20);
    size_t len;
    int32_t count = 16;
    static uint8_t value[1024];
    for (size_t i = 0; i < sizeof value; i++) value[i] = (uint8_t)(i * 37 + 11);
    uint8_t *batch =
        sl_batch_build(a, 1700000000000, count, value, sizeof value, &len); /* ~16 KiB */
    if (!batch) exit(1);
    size_t mib = g_quick ? 16 : 256;
    bench_log_mode(parent, LOG_NONE, mib << 20, batch, len, count, 0);
    bench_log_mode(parent, LOG_SYNC_EACH, mib << 20, batch, len, count, 0);
    bench_log_mode(parent, LOG_GROUP, (mib / 4) << 20, batch, len, count, 64);
    sl_arena_free(a);
}

/* ---- SCRAM ------------------------------------------------------------------------------------
 */

static sl_scram_cred g_cred;
static bool lookup(void *ctx, const char *user, size_t user_len, int mech, sl_scram_cred *out) {
    (void)ctx, (void)user, (void)user_len, (void)mech;
    *out = g_cred;
    return true;
}

/* Server-side cost of one SCRAM-SHA-512 login (both server steps). The client's proof is
 * computed outside the timed section, with its PBKDF2 done once: a client pays that per password,
 * not the broker per login. */
static void bench_scram(void) {
    const char *pw = "bench-password-not-secret";
    if (sl_scram_cred_from_password(SL_SCRAM_SHA_512, pw, strlen(pw), 4096, &g_cred)) exit(1);
    uint8_t salted[64], client_key[64], stored[64], sig[64], proof[64];
    unsigned hl = 64;
    if (sl_scram_salted_password(SL_SCRAM_SHA_512, pw, strlen(pw), g_cred.salt, g_cred.salt_len,
                                 g_cred.iterations, salted))
        exit(1);
    HMAC(EVP_sha512(), salted, 64, (const unsigned char *)"Client Key", 10, client_key, &hl);
    EVP_Digest(client_key, 64, stored, NULL, EVP_sha512(), NULL);
    long n = g_quick ? 200 : 20000;
    double server_s = 0;
    for (long i = 0; i < n; i++) {
        char cfirst[128], sfirst[SL_SCRAM_MAX_MSG + 256], cfinal[512], sfinal[256];
        uint8_t rnd[18];
        char nonce[32];
        RAND_bytes(rnd, sizeof rnd);
        sl_b64_encode(rnd, sizeof rnd, nonce);
        int cl = snprintf(cfirst, sizeof cfirst, "n,,n=bench,r=%s", nonce);
        sl_scram_server s;
        size_t sl_len = 0, fl = 0;
        double t0 = now_s();
        sl_err e = sl_scram_server_first(&s, SL_SCRAM_SHA_512, (const uint8_t *)cfirst, (size_t)cl,
                                         lookup, NULL, sfirst, sizeof sfirst, &sl_len);
        server_s += now_s() - t0;
        if (e) {
            fprintf(stderr, "sl_micro: scram first: %s\n", sl_strerror(e));
            exit(1);
        }
        /* server-first is "r=<nonce>,s=<salt>,i=<n>": the combined nonce is its first field. */
        const char *comma = memchr(sfirst, ',', sl_len);
        int rlen = comma ? (int)(comma - sfirst) - 2 : 0;
        char without[256];
        int wl = snprintf(without, sizeof without, "c=biws,r=%.*s", rlen, sfirst + 2);
        char auth[1024];
        int al =
            snprintf(auth, sizeof auth, "%s,%.*s,%s", cfirst + 3, (int)sl_len, sfirst, without);
        HMAC(EVP_sha512(), stored, 64, (const unsigned char *)auth, (size_t)al, sig, &hl);
        for (int k = 0; k < 64; k++) proof[k] = client_key[k] ^ sig[k];
        char proof_b64[100];
        sl_b64_encode(proof, 64, proof_b64);
        int fl_in = snprintf(cfinal, sizeof cfinal, "%.*s,p=%s", wl, without, proof_b64);
        t0 = now_s();
        e = sl_scram_server_final(&s, (const uint8_t *)cfinal, (size_t)fl_in, sfinal, sizeof sfinal,
                                  &fl);
        server_s += now_s() - t0;
        sl_scram_server_clear(&s);
        if (e) {
            fprintf(stderr, "sl_micro: scram final refused the proof: %s\n", sl_strerror(e));
            exit(1);
        }
    }
    char extra[64];
    snprintf(extra, sizeof extra, "(%.0f logins/s on one core, server side)", (double)n / server_s);
    report("SCRAM-SHA-512 login (server)", server_s / (double)n * 1e9, 0, extra);
}

/* ---- TLS handshakes ---------------------------------------------------------------------------
 */

/* Moves whatever one side wrote into the other side's read BIO. */
static void pump(BIO *from, BIO *to) {
    char buf[16384];
    int n;
    while ((n = BIO_read(from, buf, sizeof buf)) > 0) BIO_write(to, buf, n);
}

/* Full handshakes (no resumption) against the context the broker builds from its ssl.* keys,
 * with the certificate sl_tls_bootstrap makes (ECDSA P-256). Client and server run in this
 * thread over memory BIOs; only the server's SSL_do_handshake calls are timed. */
static void bench_tls(const char *parent) {
    char dir[4096], ks[4200], ca[4200], err[256];
    snprintf(dir, sizeof dir, "%s/sl_micro_tls_XXXXXX", parent);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    if (sl_tls_bootstrap(dir, err, sizeof err)) {
        fprintf(stderr, "sl_micro: certificates: %s\n", err);
        exit(1);
    }
    snprintf(ks, sizeof ks, "%s/broker.pem", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    sl_tls_opts o = {.keystore_location = ks,
                     .client_auth = SL_TLS_CLIENT_AUTH_NONE,
                     .session_context = "bench"};
    SSL_CTX *sctx = NULL;
    if (sl_tls_ctx_build(&o, &sctx, err, sizeof err)) {
        fprintf(stderr, "sl_micro: server context: %s\n", err);
        exit(1);
    }
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(cctx, ca, NULL);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    long n = g_quick ? 50 : 2000;
    double server_s = 0, t_all = now_s();
    for (long i = 0; i < n; i++) {
        SSL *sv = SSL_new(sctx), *cl = SSL_new(cctx);
        BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
        BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
        SSL_set_bio(sv, s_in, s_out);
        SSL_set_bio(cl, c_in, c_out);
        SSL_set_accept_state(sv);
        SSL_set_connect_state(cl);
        SSL_set_tlsext_host_name(cl, "localhost");
        SSL_set1_host(cl, "localhost");
        int cdone = 0, sdone = 0;
        for (int round = 0; round < 20 && !(cdone && sdone); round++) {
            if (!cdone) cdone = SSL_do_handshake(cl) == 1;
            pump(c_out, s_in);
            double t0 = now_s();
            if (!sdone) sdone = SSL_do_handshake(sv) == 1;
            server_s += now_s() - t0;
            pump(s_out, c_in);
        }
        if (!cdone || !sdone) {
            fprintf(stderr, "sl_micro: TLS handshake did not complete\n");
            exit(1);
        }
        if (i == 0)
            printf("%-40s %s %s\n", "TLS handshake parameters", SSL_get_version(sv),
                   SSL_get_cipher_name(sv));
        SSL_free(sv);
        SSL_free(cl);
    }
    double all = now_s() - t_all;
    char extra[96];
    snprintf(extra, sizeof extra, "(%.0f handshakes/s server side; %.0f/s client+server)",
             (double)n / server_s, (double)n / all);
    report("TLS full handshake (server)", server_s / (double)n * 1e9, 0, extra);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
    const char *dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            g_quick = 1;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: sl_micro [--quick] [--dir DIR]\n");
            return 2;
        }
    }
    bench_crc();
    bench_codecs();
    bench_scram();
    bench_tls(dir);
    bench_log(dir);
    return 0;
}
