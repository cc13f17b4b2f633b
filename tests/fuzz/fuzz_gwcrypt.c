/* libFuzzer target for the gateway's record encryption (src/gateway/sl_gwcrypt.h). The fetch side
 * opens whatever the upstream returns, so:
 *  1. the input as a fetched record set goes through unseal (both configurations below): an error
 *     code or a result; a rewritten set holds whole batches with good CRCs that read back (or
 *     the input's own bytes), and the input is never written to;
 *  2. the input also describes records (keys, values, headers, nulls, a codec) that are built
 *     into a batch, sealed and unsealed again: that must give back exactly those records; then
 *     one fuzz-chosen byte of the sealed set is flipped and unsealed: an error or a result, never
 *     a crash.
 * One key service on the local provider (fixed master key, a temporary directory removed at
 * exit) serves two gwcrypt instances: keys clear + headers inside, keys deterministic + headers
 * clear. Seeds: tests/fuzz/corpus/gwcrypt. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_config.h"
#include "base/sl_crc32c.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "gateway/sl_gwcrypt.h"
#include "kms/sl_keysvc.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOPIC "fz"
static char g_dir[64];
static sl_config g_cfg;
static sl_keysvc *g_ks;
static sl_gwcrypt *g_gw[2];

static void cleanup(void) {
    sl_gwcrypt_free(g_gw[0]);
    sl_gwcrypt_free(g_gw[1]);
    sl_keysvc_close(g_ks);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (g_dir[0] && system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", g_dir);
}

static int16_t run(sl_xform x, sl_arena *a, uint8_t **d, size_t *n, bool *rw) {
    sl_xform_ctx c = {.a = a, .api_version = 9, .topic = sl_str_c(TOPIC), .partition = 0};
    *rw = false;
    return x.fn(x.arg, &c, d, n, rw);
}

static void setup(void) {
    char err[512], p[128];
    setenv("SLUICE_FUZZ_GW_MASTER",
           "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
    snprintf(g_dir, sizeof g_dir, "/tmp/sl_fuzz_gw_XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    snprintf(p, sizeof p, "%s/data", g_dir);
    mkdir(p, 0700);
    sl_config_defaults(&g_cfg);
    const char *kv[][2] = {{"log.dirs", p},
                           {"sluice.log.level", "error"},
                           {"sluice.encryption.enable", "true"},
                           {"sluice.kms.provider", "local"},
                           {"sluice.kms.local.master.key.env", "SLUICE_FUZZ_GW_MASTER"},
                           {"sluice.gateway.encrypt.enable", "true"},
                           {"sluice.gateway.encrypt.topics", TOPIC}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (sl_config_set(&g_cfg, kv[i][0], kv[i][1], err, sizeof err)) abort();
    char sd[160];
    snprintf(sd, sizeof sd, "%s/secrets", g_dir);
    if (sl_config_set(&g_cfg, "sluice.secrets.dir", sd, err, sizeof err)) abort();
    sl_log_set_level(SL_LOG_ERROR);
    if (sl_keysvc_open(&g_cfg, NULL, &g_ks, err, sizeof err) || !g_ks) {
        fprintf(stderr, "keysvc: %s\n", err);
        abort();
    }
    for (int i = 0; i < 2; i++) {
        sl_config c = g_cfg;
        if (i == 1 &&
            (sl_config_set(&c, "sluice.gateway.encrypt.keys", "deterministic", err, sizeof err) ||
             sl_config_set(&c, "sluice.gateway.encrypt.headers", "clear", err, sizeof err)))
            abort();
        if (sl_gwcrypt_new(&c, g_ks, NULL, &g_gw[i], err, sizeof err) || !g_gw[i]) abort();
    }
    atexit(cleanup);
    /* The topic key is made on first use: seal until it is there. */
    sl_arena *a = sl_arena_new(4096);
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 64);
    sl_rec_in in = {.key = SL_BYTES_NULL, .value = {(const uint8_t *)"x", 1}};
    uint8_t *batch;
    size_t n;
    if (sl_rec_builder_add(&b, &in) || sl_rec_builder_seal(&b, 0, 1, 1, &batch, &n)) abort();
    int64_t deadline = sl_mono_ms() + 10000;
    for (;;) {
        uint8_t *d = batch;
        size_t l = n;
        bool rw;
        int16_t ec = run(sl_gwcrypt_seal(g_gw[0]), a, &d, &l, &rw);
        if (ec == 0) break;
        if (ec != SL_KAFKA_KAFKA_STORAGE_ERROR || sl_mono_ms() > deadline) abort();
        struct pollfd pf = {.fd = sl_keysvc_fd(g_ks), .events = POLLIN};
        if (poll(&pf, 1, 20) > 0) sl_keysvc_dispatch(g_ks);
    }
    sl_arena_free(a);
}

/* Batches the transform rebuilt have good CRCs and records that read back. */
static void check_set(const uint8_t *p, size_t n, const uint8_t *in, size_t inlen, sl_arena *a) {
    while (n) {
        sl_batch_info bi;
        if (!sl_batch_parse(p, n, &bi)) {
            if (!memmem(in, inlen, p, n)) abort(); /* a cut-short tail: the input's bytes */
            return;
        }
        if (!memmem(in, inlen, p, bi.size)) {
            if (!sl_batch_crc_ok(p, bi.size)) abort();
            sl_rec_iter it;
            if (sl_rec_iter_init(&it, p, bi.size, a, 1 << 26)) abort();
            sl_record r;
            int32_t k = 0;
            while (sl_rec_iter_next(&it, &r)) k++;
            if (sl_rec_iter_err(&it) || k != bi.record_count) abort();
        }
        p += bi.size;
        n -= bi.size;
    }
}

/* ---- records described by the input ---- */

#define MAXREC 16
#define MAXHDR 4

typedef struct frec {
    sl_bytes key, value;
    sl_rec_header h[MAXHDR];
    int32_t nh;
} frec;

static sl_bytes take(sl_rd *r) {
    uint8_t l = (uint8_t)sl_rd_i8(r);
    if (r->err) return SL_BYTES_NULL;
    if (l == 0xFF) return SL_BYTES_NULL;
    l &= 0x3F;
    size_t n = l < sl_rd_left(r) ? l : sl_rd_left(r);
    return (sl_bytes){sl_rd_take(r, n), (int32_t)n};
}

static bool eq(sl_bytes a, sl_bytes b) {
    return a.len == b.len && (a.len <= 0 || !memcmp(a.p, b.p, (size_t)a.len));
}

static void roundtrip(const uint8_t *data, size_t size, sl_arena *a) {
    sl_rd r = sl_rd_init(data, size);
    uint8_t sel = (uint8_t)sl_rd_i8(&r);
    int codec = (sel & 7) % 5;
    sl_gwcrypt *g = g_gw[(sel >> 3) & 1];
    frec recs[MAXREC];
    int n = 0;
    while (n < MAXREC && sl_rd_left(&r) && !r.err) {
        frec *f = &recs[n];
        f->key = take(&r);
        f->value = take(&r);
        f->nh = (int32_t)((uint8_t)sl_rd_i8(&r) % (MAXHDR + 1));
        for (int32_t i = 0; i < f->nh; i++) {
            f->h[i].key = take(&r);
            if (f->h[i].key.len < 0) f->h[i].key = (sl_bytes){(const uint8_t *)"", 0};
            f->h[i].value = take(&r);
        }
        n++;
    }
    if (!n) return;
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 256);
    for (int i = 0; i < n; i++) {
        sl_rec_in in = {.timestamp_delta = i,
                        .offset_delta = i,
                        .key = recs[i].key,
                        .value = recs[i].value,
                        .headers = recs[i].h,
                        .nheaders = recs[i].nh};
        if (sl_rec_builder_add(&b, &in)) abort();
    }
    uint8_t *batch;
    size_t blen;
    if (sl_rec_builder_seal(&b, (int16_t)codec, 1000, 1000 + n, &batch, &blen)) abort();
    uint8_t *d = batch;
    size_t l = blen;
    bool rw;
    if (run(sl_gwcrypt_seal(g), a, &d, &l, &rw) || !rw) abort();
    uint8_t *sealed = sl_arena_dup(a, d, l);
    size_t slen = l;
    if (run(sl_gwcrypt_unseal(g), a, &d, &l, &rw) || !rw) abort();
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, d, l, a, 1 << 26)) abort();
    sl_record rec;
    int i = 0;
    while (sl_rec_iter_next(&it, &rec)) {
        if (i >= n || !eq(rec.key, recs[i].key) || !eq(rec.value, recs[i].value) ||
            rec.nheaders != recs[i].nh)
            abort();
        for (int32_t k = 0; k < recs[i].nh; k++) {
            sl_bytes hk, hv;
            if (!sl_record_header_next(&rec, &hk, &hv) || !eq(hk, recs[i].h[k].key) ||
                !eq(hv, recs[i].h[k].value))
                abort();
        }
        i++;
    }
    if (sl_rec_iter_err(&it) || i != n) abort();
    /* One byte flipped anywhere (the CRC fixed, so the records are what is opened). */
    size_t at = (size_t)sel * 131 % slen;
    sealed[at] ^= 0x20;
    if (at >= SL_BATCH_ATTRIBUTES)
        sl_be32(sealed + SL_BATCH_CRC,
                sl_crc32c(0, sealed + SL_BATCH_ATTRIBUTES, slen - SL_BATCH_ATTRIBUTES));
    d = sealed;
    l = slen;
    (void)run(sl_gwcrypt_unseal(g), a, &d, &l, &rw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ks) setup();
    uint8_t *buf = malloc(size ? size : 1), *copy = malloc(size ? size : 1);
    sl_arena *a = sl_arena_new(1 << 16);
    if (!buf || !copy || !a) abort();
    if (size) {
        memcpy(buf, data, size);
        memcpy(copy, data, size);
    }
    for (int k = 0; k < 2; k++) {
        uint8_t *d = buf;
        size_t n = size;
        bool rw;
        int16_t ec = run(sl_gwcrypt_unseal(g_gw[k]), a, &d, &n, &rw);
        if (ec && rw) abort(); /* a refused set is left alone */
        if (!ec && rw) check_set(d, n, copy, size, a);
        if (!rw && (d != buf || n != size)) abort();
        if (size && memcmp(buf, copy, size)) abort();
    }
    roundtrip(data, size, a);
    sl_arena_free(a);
    free(copy);
    free(buf);
    return 0;
}
