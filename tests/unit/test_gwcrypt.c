/* The gateway's record encryption (src/gateway/sl_gwcrypt.h) over a local-provider key service
 * in a temporary directory: the topic key made on first use (the first produce is told to retry),
 * round trips of batches in every codec with every batch header field kept and the CRC right,
 * control batches and other topics untouched, tombstones kept, deterministic record keys (equal
 * per topic, different across topics), headers inside the envelope or clear, tampering refused
 * with CORRUPT_MESSAGE and a "tamper" event, records written around the gateway reported (once
 * a minute per partition) or refused, and a fetch's cut-short last batch passed as it is. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_config.h"
#include "base/sl_crc32c.h"
#include "base/sl_time.h"
#include "events/sl_events.h"
#include "gateway/sl_gwcrypt.h"
#include "keys_env.h"
#include "kms/sl_keysvc.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "sl_test.h"

typedef struct env {
    char *dir;
    sl_config *cfg;
    sl_keysvc *ks;
    sl_events hub;
    sl_gwcrypt *g;
    sl_arena *a;
    int tamper, unencrypted;
} env;

static void on_event(void *ctx, const sl_event *ev) {
    env *e = ctx;
    if (ev->kind != SL_EV_KEY) return;
    if (!strcmp(ev->key.op, "tamper")) e->tamper++;
    if (!strcmp(ev->key.op, "unencrypted")) e->unencrypted++;
}

/* keys: "clear" or "deterministic"; headers: "encrypt" or "clear"; policy: "report"/"reject". */
static bool env_open(env *e, const char *keys, const char *headers, const char *policy) {
    memset(e, 0, sizeof *e);
    if (!(e->dir = sl_t_tmpdir("sl_gwcrypt_"))) return false;
    e->cfg = sl_t_keys_cfg(e->dir);
    char err[512];
    if (sl_config_set(e->cfg, "sluice.gateway.encrypt.enable", "true", err, sizeof err) ||
        sl_config_set(e->cfg, "sluice.gateway.encrypt.topics", "secret, enc.*", err, sizeof err) ||
        sl_config_set(e->cfg, "sluice.gateway.encrypt.keys", keys, err, sizeof err) ||
        sl_config_set(e->cfg, "sluice.gateway.encrypt.headers", headers, err, sizeof err) ||
        sl_config_set(e->cfg, "sluice.gateway.unencrypted.policy", policy, err, sizeof err))
        return false;
    if (sl_keysvc_open(e->cfg, NULL, &e->ks, err, sizeof err) || !e->ks) {
        fprintf(stderr, "  keysvc: %s\n", err);
        return false;
    }
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* the key service turned core dumps off */
    sl_events_subscribe(&e->hub, on_event, e);
    if (sl_gwcrypt_new(e->cfg, e->ks, &e->hub, &e->g, err, sizeof err) || !e->g) {
        fprintf(stderr, "  gwcrypt: %s\n", err);
        return false;
    }
    e->a = sl_arena_new(1 << 16);
    return e->a != NULL;
}

static void env_close(env *e) {
    sl_gwcrypt_free(e->g);
    sl_keysvc_close(e->ks);
    sl_arena_free(e->a);
    free(e->cfg);
    if (e->dir) sl_t_rm_rf(e->dir);
    free(e->dir);
}

static int16_t run(env *e, sl_xform x, const char *topic, int32_t partition, uint8_t **d, size_t *n,
                   bool *rw) {
    sl_xform_ctx c = {
        .a = e->a, .api_version = 9, .topic = sl_str_c(topic), .partition = partition};
    *rw = false;
    return x.fn(x.arg, &c, d, n, rw);
}

/* Seals, letting the key service make the topic key first: the first try is told to retry. */
static int16_t seal_ready(env *e, const char *topic, uint8_t **d, size_t *n, bool *rw,
                          int *retries) {
    int64_t deadline = sl_mono_ms() + 10000;
    for (;;) {
        uint8_t *dd = *d;
        size_t nn = *n;
        int16_t ec = run(e, sl_gwcrypt_seal(e->g), topic, 0, &dd, &nn, rw);
        if (ec != SL_KAFKA_KAFKA_STORAGE_ERROR || sl_mono_ms() > deadline) {
            *d = dd;
            *n = nn;
            return ec;
        }
        if (retries) (*retries)++;
        struct pollfd p = {.fd = sl_keysvc_fd(e->ks), .events = POLLIN};
        if (poll(&p, 1, 20) > 0) sl_keysvc_dispatch(e->ks);
    }
}

#define NREC 4
static const char *const VALS[NREC] = {"{\"card\":\"4111-1111-1111-1111\"}", "SECRET-VALUE-2", "",
                                       NULL};
static const char *const KEYS[NREC] = {"user-1", "user-2", NULL, "user-1"};

/* A producer's batch: header fields a real (idempotent, transactional) producer sets. Record 1
 * has two headers; record 3 is a tombstone with one header (of its own). */
static uint8_t *make_batch(sl_arena *a, int codec, int16_t extra_attr, size_t *len) {
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 512);
    sl_rec_header h[2] = {{{(const uint8_t *)"trace", 5}, {(const uint8_t *)"HDR-SECRET", 10}},
                          {{(const uint8_t *)"n", 1}, SL_BYTES_NULL}};
    sl_rec_header th = {{(const uint8_t *)"tomb", 4}, {(const uint8_t *)"TOMB-CLEAR", 10}};
    for (int i = 0; i < NREC; i++) {
        sl_rec_in in = {
            .timestamp_delta = i * 5,
            .offset_delta = i,
            .key = KEYS[i] ? (sl_bytes){(const uint8_t *)KEYS[i], (int32_t)strlen(KEYS[i])}
                           : SL_BYTES_NULL,
            .value = VALS[i] ? (sl_bytes){(const uint8_t *)VALS[i], (int32_t)strlen(VALS[i])}
                             : SL_BYTES_NULL,
            .headers = i == 3 ? &th : h,
            .nheaders = i == 1   ? 2
                        : i == 3 ? 1
                                 : 0};
        if (sl_rec_builder_add(&b, &in)) return NULL;
    }
    uint8_t *out;
    if (sl_rec_builder_seal(&b, (int16_t)codec, 1700000000000, 1700000000015, &out, len))
        return NULL;
    sl_be64(out + SL_BATCH_BASE_OFFSET, 4242);
    sl_be32(out + SL_BATCH_LEADER_EPOCH, 7);
    sl_be16(out + SL_BATCH_ATTRIBUTES, (uint16_t)(codec | extra_attr));
    sl_be64(out + SL_BATCH_PRODUCER_ID, 99);
    sl_be16(out + SL_BATCH_PRODUCER_EPOCH, 3);
    sl_be32(out + SL_BATCH_BASE_SEQUENCE, 17);
    sl_be32(out + SL_BATCH_CRC,
            sl_crc32c(0, out + SL_BATCH_ATTRIBUTES, *len - SL_BATCH_ATTRIBUTES));
    return out;
}

/* make_batch(codec) sealed for `topic` into *d, *len. */
static bool made_and_sealed(env *e, int codec, const char *topic, uint8_t **d, size_t *len) {
    uint8_t *b = make_batch(e->a, codec, 0, len);
    bool rw;
    *d = b;
    return b && seal_ready(e, topic, d, len, &rw, NULL) == 0 && rw;
}

static bool bytes_eq(sl_bytes b, const char *s) {
    if (!s) return b.len == -1;
    return b.len == (int32_t)strlen(s) && (b.len == 0 || !memcmp(b.p, s, (size_t)b.len));
}

static bool has(const uint8_t *p, size_t n, const char *s) {
    return memmem(p, n, s, strlen(s)) != NULL;
}

/* The records of an uncompressed copy of batch b (decompressed by the iterator). */
static bool recs_of(sl_arena *a, const uint8_t *b, size_t n, const uint8_t **p, size_t *len) {
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, b, n, a, 1 << 20)) return false;
    *p = it.r.p;
    *len = sl_rd_left(&it.r);
    return true;
}

/* Checks `d` holds the records make_batch wrote, as they were. */
static bool same_as_made(sl_arena *a, const uint8_t *d, size_t n) {
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, d, n, a, 1 << 20)) return false;
    sl_record r;
    int i = 0;
    while (sl_rec_iter_next(&it, &r)) {
        if (r.offset_delta != i || r.timestamp_delta != i * 5) return false;
        if (!bytes_eq(r.key, KEYS[i]) || !bytes_eq(r.value, VALS[i])) return false;
        if (r.nheaders != (i == 1 ? 2 : i == 3 ? 1 : 0)) return false;
        sl_bytes hk, hv;
        if (i == 3) {
            if (!sl_record_header_next(&r, &hk, &hv) || !bytes_eq(hk, "tomb") ||
                !bytes_eq(hv, "TOMB-CLEAR"))
                return false;
            i++;
            continue;
        }
        if (r.nheaders && (!sl_record_header_next(&r, &hk, &hv) || !bytes_eq(hk, "trace") ||
                           !bytes_eq(hv, "HDR-SECRET")))
            return false;
        if (r.nheaders &&
            (!sl_record_header_next(&r, &hk, &hv) || !bytes_eq(hk, "n") || hv.len != -1))
            return false;
        i++;
    }
    return !sl_rec_iter_err(&it) && i == NREC;
}

static bool header_like(const uint8_t *orig, size_t on, const uint8_t *d, size_t n) {
    sl_batch_info a, b;
    if (sl_batch_parse_exact(orig, on, &a) || sl_batch_parse_exact(d, n, &b)) return false;
    return sl_batch_crc_ok(d, n) && b.base_offset == a.base_offset &&
           b.leader_epoch == a.leader_epoch && b.attributes == a.attributes &&
           b.last_offset_delta == a.last_offset_delta && b.base_timestamp == a.base_timestamp &&
           b.max_timestamp == a.max_timestamp && b.producer_id == a.producer_id &&
           b.producer_epoch == a.producer_epoch && b.base_sequence == a.base_sequence &&
           b.record_count == a.record_count;
}

SL_TEST(gwcrypt_roundtrip_every_codec) {
    env e;
    CHECK(env_open(&e, "clear", "encrypt", "report"));
    for (int codec = 0; codec <= SL_COMPRESSION_ZSTD; codec++) {
        size_t n;
        uint8_t *orig = make_batch(e.a, codec, 0x10 /* transactional */, &n);
        CHECK(orig);
        uint8_t *copy = sl_arena_dup(e.a, orig, n);
        uint8_t *d = orig;
        size_t len = n;
        bool rw;
        int retries = 0;
        CHECK_EQ(seal_ready(&e, "secret", &d, &len, &rw, &retries), 0);
        /* The key is made on first use: the very first produce is told to retry. */
        CHECK(codec == 0 ? retries > 0 : retries == 0);
        CHECK(rw && d != orig);
        CHECK(!memcmp(orig, copy, n));
        CHECK(header_like(orig, n, d, len));
        CHECK_EQ(d[SL_BATCH_ATTRIBUTES + 1] & 7, codec);
        const uint8_t *rp;
        size_t rl;
        CHECK(recs_of(e.a, d, len, &rp, &rl));
        /* Nothing clear upstream: values, header names and values; the marker is there. */
        CHECK(!has(rp, rl, "4111") && !has(rp, rl, "SECRET-VALUE") && !has(rp, rl, "HDR-SECRET") &&
              !has(rp, rl, "trace"));
        CHECK(has(rp, rl, "sluice.enc"));
        CHECK(has(rp, rl, "TOMB-CLEAR")); /* a tombstone's headers stay clear */
        CHECK(has(rp, rl, "user-1"));     /* keys=clear */
        sl_rec_iter it;
        CHECK_EQ(sl_rec_iter_init(&it, d, len, e.a, 1 << 20), SL_OK);
        sl_record r;
        for (int i = 0; sl_rec_iter_next(&it, &r); i++) {
            sl_bytes hk, hv;
            CHECK_EQ(r.nheaders, i == 3 ? 2 : 1); /* the tombstone keeps its header clear */
            CHECK(sl_record_header_next(&r, &hk, &hv) && bytes_eq(hk, "sluice.enc") &&
                  hv.len == 1 && hv.p[0] == 1);
            CHECK(i == 3 ? r.value.len == -1 : r.value.len >= 49);
        }
        sl_gwcrypt_stats st;
        sl_gwcrypt_stats_get(e.g, &st);
        CHECK_EQ(st.sealed_records, NREC * (codec + 1));

        uint8_t *f = d;
        size_t fl = len;
        CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 3, &f, &fl, &rw), 0);
        CHECK(rw);
        CHECK(header_like(orig, n, f, fl));
        CHECK(same_as_made(e.a, f, fl));
        sl_gwcrypt_stats_get(e.g, &st);
        CHECK_EQ(st.opened_records, NREC * (codec + 1));
        CHECK_EQ(st.unencrypted_records, 0);
    }
    CHECK_EQ(e.tamper + e.unencrypted, 0);
    env_close(&e);
}

SL_TEST(gwcrypt_control_other_topics_cut_short) {
    env e;
    CHECK(env_open(&e, "clear", "encrypt", "reject"));
    CHECK(sl_gwcrypt_applies(e.g, sl_str_c("secret")) &&
          sl_gwcrypt_applies(e.g, sl_str_c("enc.x")));
    CHECK(!sl_gwcrypt_applies(e.g, sl_str_c("secret2")) &&
          !sl_gwcrypt_applies(e.g, sl_str_c("enc")) && !sl_gwcrypt_applies(e.g, sl_str_c("plain")));
    size_t n;
    uint8_t *b = make_batch(e.a, SL_COMPRESSION_LZ4, 0, &n);
    CHECK(b);
    bool rw;
    /* A topic that does not match: no rewrite, either way (even under policy reject). */
    uint8_t *d = b;
    size_t len = n;
    CHECK_EQ(run(&e, sl_gwcrypt_seal(e.g), "plain", 0, &d, &len, &rw), 0);
    CHECK(!rw && d == b && len == n);
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "plain", 0, &d, &len, &rw), 0);
    CHECK(!rw && d == b && len == n);
    /* A control batch alone goes through as it is; beside a data batch, byte for byte. */
    size_t cn;
    uint8_t *ctl = make_batch(e.a, SL_COMPRESSION_NONE, 0x30, &cn);
    d = ctl;
    len = cn;
    CHECK_EQ(seal_ready(&e, "enc.x", &d, &len, &rw, NULL), 0);
    CHECK(!rw && d == ctl);
    uint8_t *set = sl_arena_alloc(e.a, cn + n);
    memcpy(set, ctl, cn);
    memcpy(set + cn, b, n);
    d = set;
    len = cn + n;
    CHECK_EQ(seal_ready(&e, "enc.x", &d, &len, &rw, NULL), 0);
    CHECK(rw && !memcmp(d, ctl, cn) && header_like(b, n, d + cn, len - cn));
    /* Fetch: control batch kept, the sealed one opened, the cut-short copy after it as it was. */
    size_t sl = len - cn;
    uint8_t *fetched = sl_arena_alloc(e.a, len + sl / 2);
    memcpy(fetched, d, len);
    memcpy(fetched + len, d + cn, sl / 2);
    uint8_t *f = fetched;
    size_t fl = len + sl / 2;
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "enc.x", 0, &f, &fl, &rw), 0);
    CHECK(rw && !memcmp(f, ctl, cn));
    sl_batch_info bi;
    CHECK(sl_batch_parse(f + cn, fl - cn, &bi));
    CHECK(same_as_made(e.a, f + cn, bi.size));
    CHECK_EQ(fl - cn - bi.size, sl / 2);
    CHECK(!memcmp(f + cn + bi.size, d + cn, sl / 2));
    CHECK_EQ(e.unencrypted, 0); /* control records are not "unencrypted" */
    env_close(&e);
}

/* Flips one byte of the n-th record's key or value in an uncompressed batch, CRC fixed. */
static bool flip(uint8_t *d, size_t len, int rec, bool key) {
    sl_rec_iter it;
    if (sl_rec_iter_init(&it, d, len, NULL, 0)) return false;
    sl_record r;
    for (int i = 0; sl_rec_iter_next(&it, &r); i++) {
        if (i != rec) continue;
        sl_bytes b = key ? r.key : r.value;
        if (b.len < 1) return false;
        d[(size_t)(b.p - d) + (size_t)b.len / 2] ^= 0x01;
        sl_be32(d + SL_BATCH_CRC, sl_crc32c(0, d + SL_BATCH_ATTRIBUTES, len - SL_BATCH_ATTRIBUTES));
        return true;
    }
    return false;
}

SL_TEST(gwcrypt_deterministic_keys) {
    env e;
    CHECK(env_open(&e, "deterministic", "encrypt", "report"));
    size_t n;
    uint8_t *b = make_batch(e.a, SL_COMPRESSION_NONE, 0, &n);
    CHECK(b);
    bool rw;
    sl_bytes k[2][NREC];
    const char *topics[2] = {"secret", "enc.other"};
    for (int t = 0; t < 2; t++) {
        uint8_t *d = b;
        size_t len = n;
        CHECK_EQ(seal_ready(&e, topics[t], &d, &len, &rw, NULL), 0);
        CHECK(!has(d, len, "user-"));
        sl_rec_iter it;
        CHECK_EQ(sl_rec_iter_init(&it, d, len, e.a, 1 << 20), SL_OK);
        sl_record r;
        for (int i = 0; sl_rec_iter_next(&it, &r); i++) {
            k[t][i] = r.key;
            sl_bytes hk, hv;
            CHECK(sl_record_header_next(&r, &hk, &hv) && hv.len == 1);
            CHECK_EQ(hv.p[0], KEYS[i] ? 0x81 : 0x01);
        }
        uint8_t *f = d;
        size_t fl = len;
        CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), topics[t], 0, &f, &fl, &rw), 0);
        CHECK(rw && same_as_made(e.a, f, fl));
    }
    /* Equal keys seal equal within a topic (records 0 and 3, the tombstone too), differ across
     * topics and from other keys; a null key stays null. */
    for (int t = 0; t < 2; t++) {
        CHECK(k[t][0].len > 6 && k[t][0].len == k[t][3].len &&
              !memcmp(k[t][0].p, k[t][3].p, (size_t)k[t][0].len));
        CHECK(k[t][1].len == k[t][0].len && memcmp(k[t][1].p, k[t][0].p, (size_t)k[t][0].len));
        CHECK_EQ(k[t][2].len, -1);
    }
    CHECK(memcmp(k[0][0].p, k[1][0].p, (size_t)k[0][0].len));
    /* The same again in a later batch: the same bytes (compaction sees equal keys). */
    uint8_t *d = b;
    size_t len = n;
    CHECK_EQ(seal_ready(&e, "secret", &d, &len, &rw, NULL), 0);
    CHECK(memmem(d, len, k[0][0].p, (size_t)k[0][0].len));
    /* The tombstone's sealed key (no value envelope binds it) flipped: refused. */
    CHECK(flip(d, len, 3, true));
    uint8_t *f = d;
    size_t fl = len;
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 0, &f, &fl, &rw), SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(e.tamper, 1);
    env_close(&e);
}

SL_TEST(gwcrypt_headers_clear) {
    env e;
    CHECK(env_open(&e, "clear", "clear", "report"));
    uint8_t *d;
    size_t len;
    bool rw;
    CHECK(made_and_sealed(&e, SL_COMPRESSION_GZIP, "secret", &d, &len));
    const uint8_t *rp;
    size_t rl;
    CHECK(recs_of(e.a, d, len, &rp, &rl));
    CHECK(has(rp, rl, "HDR-SECRET") && !has(rp, rl, "SECRET-VALUE") && !has(rp, rl, "4111"));
    sl_rec_iter it;
    CHECK_EQ(sl_rec_iter_init(&it, d, len, e.a, 1 << 20), SL_OK);
    sl_record r;
    for (int i = 0; sl_rec_iter_next(&it, &r); i++) {
        CHECK_EQ(r.nheaders, 1 + (i == 1 ? 2 : i == 3 ? 1 : 0)); /* the marker in front */
        sl_bytes hk, hv;
        CHECK(sl_record_header_next(&r, &hk, &hv) && bytes_eq(hk, "sluice.enc"));
    }
    uint8_t *f = d;
    size_t fl = len;
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 0, &f, &fl, &rw), 0);
    CHECK(rw && same_as_made(e.a, f, fl));
    env_close(&e);
}

SL_TEST(gwcrypt_tamper_refused) {
    env e;
    CHECK(env_open(&e, "clear", "encrypt", "report"));
    uint8_t *d;
    size_t len;
    bool rw;
    CHECK(made_and_sealed(&e, SL_COMPRESSION_NONE, "secret", &d, &len));
    /* untouched: opens */
    uint8_t *f = d;
    size_t fl = len;
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 0, &f, &fl, &rw), 0);
    /* ciphertext, then the record key (bound as AAD): CORRUPT_MESSAGE, a tamper event each */
    for (int k = 0; k < 2; k++) {
        uint8_t *x = sl_arena_dup(e.a, d, len);
        CHECK(flip(x, len, 1, k == 1));
        f = x;
        fl = len;
        CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 0, &f, &fl, &rw),
                 SL_KAFKA_CORRUPT_MESSAGE);
        CHECK(!rw && f == x && fl == len);
        CHECK_EQ(e.tamper, k + 1);
    }
    /* another topic (bound as AAD, and another key): refused too */
    f = d;
    fl = len;
    uint8_t *o;
    size_t on;
    CHECK(made_and_sealed(&e, SL_COMPRESSION_NONE, "enc.moved", &o, &on));
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "enc.moved", 0, &f, &fl, &rw),
             SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(e.tamper, 3);
    sl_gwcrypt_stats st;
    sl_gwcrypt_stats_get(e.g, &st);
    CHECK_EQ(st.failed_records, 3);
    env_close(&e);
}

SL_TEST(gwcrypt_unencrypted_report_and_reject) {
    for (int reject = 0; reject < 2; reject++) {
        env e;
        CHECK(env_open(&e, "clear", "encrypt", reject ? "reject" : "report"));
        size_t n;
        uint8_t *b = make_batch(e.a, SL_COMPRESSION_SNAPPY, 0, &n);
        CHECK(b);
        bool rw;
        for (int pass = 0; pass < 3; pass++) {
            uint8_t *f = b;
            size_t fl = n;
            int32_t partition = pass == 2 ? 1 : 0;
            int16_t ec = run(&e, sl_gwcrypt_unseal(e.g), "secret", partition, &f, &fl, &rw);
            CHECK_EQ(ec, reject ? SL_KAFKA_INVALID_RECORD : 0);
            CHECK(!rw && f == b && fl == n);
            /* once per partition per minute */
            CHECK_EQ(e.unencrypted, pass == 2 ? 2 : 1);
        }
        /* A legacy (magic 0) message, shorter than a v2 batch header, before a plain batch:
         * both seen (not taken for a cut-short tail that would hide what follows). */
        uint8_t *lg = sl_arena_alloc(e.a, 29 + n);
        memset(lg, 0, 29);
        sl_be32(lg + 8, 17); /* crc, magic 0, attributes, key -1, value "abc" */
        sl_be32(lg + 18, 0xFFFFFFFFu);
        sl_be32(lg + 22, 3);
        memcpy(lg + 26, "abc", 3);
        memcpy(lg + 29, b, n);
        uint8_t *f = lg;
        size_t fl = 29 + n;
        CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 2, &f, &fl, &rw),
                 reject ? SL_KAFKA_INVALID_RECORD : 0);
        CHECK(!rw && f == lg && fl == 29 + n);
        sl_gwcrypt_stats st;
        sl_gwcrypt_stats_get(e.g, &st);
        CHECK_EQ(st.unencrypted_records, 4 * NREC + 1);
        CHECK_EQ(e.unencrypted, 3);
        CHECK_EQ(e.tamper, 0);
        env_close(&e);
    }
}

SL_TEST(gwcrypt_disabled_and_key_ids) {
    sl_config c;
    sl_config_defaults(&c);
    sl_gwcrypt *g = (sl_gwcrypt *)&c;
    char err[128];
    CHECK_EQ(sl_gwcrypt_new(&c, NULL, NULL, &g, err, sizeof err), SL_OK);
    CHECK(g == NULL);
    CHECK(!sl_gwcrypt_applies(NULL, sl_str_c("x")));
    CHECK(sl_gwcrypt_seal(NULL).fn == NULL && sl_gwcrypt_unseal(NULL).fn == NULL);
    char e2[256];
    CHECK_EQ(sl_config_set(&c, "sluice.gateway.encrypt.enable", "true", e2, sizeof e2), SL_OK);
    CHECK_EQ(sl_gwcrypt_new(&c, NULL, NULL, &g, err, sizeof err), SL_ECONFIG);
    uint8_t a[16], b[16];
    sl_gwcrypt_key_id(sl_str_c("t1"), a);
    sl_gwcrypt_key_id(sl_str_c("t2"), b);
    CHECK(a[0] == 0xFE && b[0] == 0xFE && memcmp(a, b, 16));
    sl_gwcrypt_key_id(sl_str_c("t1"), b);
    CHECK(!memcmp(a, b, 16));
}

/* Version of the value envelope's key (bytes 1..4 of the first record's value). */
static uint32_t env_version(sl_arena *a, const uint8_t *d, size_t n) {
    sl_rec_iter it;
    sl_record r;
    if (sl_rec_iter_init(&it, d, n, a, 1 << 20) || !sl_rec_iter_next(&it, &r) || r.value.len < 5)
        return 0;
    return sl_get_be32(r.value.p + 1);
}

SL_TEST(gwcrypt_rotation_and_mixed_sets) {
    env e;
    CHECK(env_open(&e, "deterministic", "encrypt", "report"));
    size_t n;
    uint8_t *b = make_batch(e.a, SL_COMPRESSION_ZSTD, 0, &n);
    CHECK(b);
    bool rw;
    uint8_t *v1 = b;
    size_t v1n = n;
    CHECK_EQ(seal_ready(&e, "secret", &v1, &v1n, &rw, NULL), 0);
    CHECK_EQ(env_version(e.a, v1, v1n), 1);
    uint8_t id[16];
    sl_gwcrypt_key_id(sl_str_c("secret"), id);
    CHECK_EQ(sl_t_keyop(e.ks, SL_KEYOP_TK_ROTATE, id), SL_OK);
    uint8_t *v2 = b;
    size_t v2n = n;
    CHECK_EQ(seal_ready(&e, "secret", &v2, &v2n, &rw, NULL), 0);
    CHECK_EQ(env_version(e.a, v2, v2n), 2);
    /* Sealed keys do not change with the rotation (the first version derives them). */
    sl_rec_iter i1, i2;
    sl_record r1, r2;
    CHECK_EQ(sl_rec_iter_init(&i1, v1, v1n, e.a, 1 << 20), SL_OK);
    CHECK_EQ(sl_rec_iter_init(&i2, v2, v2n, e.a, 1 << 20), SL_OK);
    CHECK(sl_rec_iter_next(&i1, &r1) && sl_rec_iter_next(&i2, &r2));
    CHECK(r1.key.len > 0 && r1.key.len == r2.key.len &&
          !memcmp(r1.key.p, r2.key.p, (size_t)r1.key.len));
    /* A fetch of both versions and a batch written around the gateway: the sealed ones opened,
     * the plain one passed and reported (policy report). */
    uint8_t *set = sl_arena_alloc(e.a, v1n + n + v2n);
    memcpy(set, v1, v1n);
    memcpy(set + v1n, b, n);
    memcpy(set + v1n + n, v2, v2n);
    uint8_t *f = set;
    size_t fl = v1n + n + v2n;
    CHECK_EQ(run(&e, sl_gwcrypt_unseal(e.g), "secret", 0, &f, &fl, &rw), 0);
    CHECK(rw);
    size_t off = 0;
    for (int k = 0; k < 3; k++) {
        sl_batch_info bi;
        CHECK(sl_batch_parse(f + off, fl - off, &bi));
        CHECK(same_as_made(e.a, f + off, bi.size));
        if (k == 1) CHECK(!memcmp(f + off, b, n)); /* the plain batch byte for byte */
        off += bi.size;
    }
    CHECK_EQ(off, fl);
    CHECK_EQ(e.unencrypted, 1);
    sl_gwcrypt_stats st;
    sl_gwcrypt_stats_get(e.g, &st);
    CHECK_EQ(st.opened_records, 2 * NREC);
    CHECK_EQ(st.unencrypted_records, NREC);
    env_close(&e);
}
