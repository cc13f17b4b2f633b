/* libFuzzer target for the gateway's data-path steps (src/gateway/sl_gw_data_int.h): a client
 * request and an upstream answer, both attacker-controlled, through plan and merge. Input:
 *   byte 0: the API (0 Produce, 1 Fetch, 2 ListOffsets, 3 OffsetForLeaderEpoch, 4 DeleteRecords)
 *   byte 1: the version (modulo the API's range)
 *   byte 2: which topics are denied / have a chain (by the first byte of their name)
 *   bytes 3-4: the request's length n (big-endian); then n bytes of request body, then the
 *   upstream's answer body.
 * Invariants: the planned request and the merged answer encode, and decode again; a mirrored
 * answer has the request's shape; denied topics are never forwarded and never carry records. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_kerr.h"
#include "gateway/sl_gw_data_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t g_mask;

static bool denied(sl_str t) { return t.len > 0 && (((uint8_t)t.p[0] * 7u) & g_mask & 0x0f); }
static bool f_allowed(void *ctx, sl_str t) { return !denied(t); }
static void f_extra(void *ctx, const sl_str *names, int32_t n, bool *ok) {
    for (int32_t i = 0; i < n; i++) ok[i] = !denied(names[i]);
}
static bool f_topic_name(void *ctx, const sl_uuid *id, sl_str *name) {
    if (id->b[0] & 1) return false;
    *name = (sl_str){(const char *)&id->b[1], 4};
    return true;
}
static int16_t f_copy(void *arg, const sl_xform_ctx *c, uint8_t **d, size_t *len, bool *rw) {
    uint8_t *n = sl_arena_dup(c->a, *d, *len ? *len : 1);
    if (!n) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *d = n;
    *rw = true;
    return (*len & 0x3f) == 0x3f ? SL_KAFKA_CORRUPT_MESSAGE : 0;
}
static sl_xform_chain g_chain = {.seal = {f_copy, NULL}, .unseal = {f_copy, NULL}};
static const sl_xform_chain *f_chain(void *ctx, sl_str t) {
    return t.len > 0 && ((uint8_t)t.p[0] & g_mask & 0x30) ? &g_chain : NULL;
}

#define ROUNDTRIP(kind, api, v, m)                                                                 \
    do {                                                                                           \
        sl_wr w_;                                                                                  \
        sl_wr_init(&w_, a, 256);                                                                   \
        sl_##api##_##kind##_encode(&w_, (v), (m));                                                 \
        if (w_.err) break;                                                                         \
        sl_rd r_ = sl_rd_init(w_.buf, w_.len);                                                     \
        sl_##api##_##kind back_;                                                                   \
        if (sl_##api##_##kind##_decode(&r_, a, (v), &back_) != SL_OK) abort();                     \
    } while (0)

#define OFFSETS(api, lo, hi, TNAME)                                                                \
    do {                                                                                           \
        int16_t v = (int16_t)((lo) + ver % ((hi) - (lo) + 1));                                     \
        sl_##api##_req req;                                                                        \
        if (sl_##api##_req_decode(&rq, a, v, &req) != SL_OK) break;                                \
        sl_##api##_req fwd;                                                                        \
        sl_##api##_resp m, up;                                                                     \
        int32_t nlocal;                                                                            \
        if (!sl_gw_##api##_plan(&e, &req, 0, &fwd, &m, &nlocal)) break;                            \
        for (int32_t i = 0; i < fwd.topics_count; i++)                                             \
            if (denied(fwd.topics[i].TNAME)) abort();                                              \
        ROUNDTRIP(req, api, v, &fwd);                                                              \
        if (sl_##api##_resp_decode(&rs, a, v, &up) != SL_OK) break;                                \
        sl_gw_##api##_merge(&m, &up);                                                              \
        if (m.topics_count != (req.topics_count > 0 ? req.topics_count : 0)) abort();              \
        ROUNDTRIP(resp, api, v, &m);                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5 || size > 1 << 20) return 0;
    uint8_t api = data[0] % 5, ver = data[1];
    g_mask = data[2];
    size_t n = (size_t)data[3] << 8 | data[4];
    if (n > size - 5) return 0;
    /* exact-size copies, so reads past either end are caught */
    uint8_t *qb = malloc(n ? n : 1), *ab = malloc(size - 5 - n ? size - 5 - n : 1);
    sl_arena *a = sl_arena_new(1 << 16);
    if (!qb || !ab || !a) goto out;
    memcpy(qb, data + 5, n);
    memcpy(ab, data + 5 + n, size - 5 - n);
    sl_rd rq = sl_rd_init(qb, n), rs = sl_rd_init(ab, size - 5 - n);
    sl_gw_env e = {.allowed = f_allowed,
                   .decide_extra = f_extra,
                   .topic_name = f_topic_name,
                   .chain = f_chain,
                   .a = a,
                   .now_ms = 1,
                   .max_bytes = 1 << 20};
    switch (api) {
    case 0: {
        int16_t v = (int16_t)(3 + ver % 9);
        sl_produce_req req;
        if (sl_produce_req_decode(&rq, a, v, &req) != SL_OK) break;
        sl_gw_produce_plan pl;
        if (!sl_gw_produce_plan_build(&e, &req, v, 0, &pl)) break;
        for (int32_t i = 0; i < pl.fwd.topic_data_count; i++)
            if (denied(pl.fwd.topic_data[i].name) && pl.fwd.topic_data[i].partition_data_count)
                abort();
        ROUNDTRIP(req, produce, v, &pl.fwd);
        sl_produce_resp up;
        if (sl_produce_resp_decode(&rs, a, v, &up) != SL_OK) break;
        sl_gw_produce_merge(&pl, &up);
        if (pl.mirror.responses_count != (req.topic_data_count > 0 ? req.topic_data_count : 0))
            abort();
        for (int32_t i = 0; i < pl.mirror.responses_count; i++)
            if (pl.mirror.responses[i].partition_responses_count !=
                (req.topic_data[i].partition_data_count > 0 ? req.topic_data[i].partition_data_count
                                                            : 0))
                abort();
        ROUNDTRIP(resp, produce, v, &pl.mirror);
        break;
    }
    case 1: {
        int16_t v = (int16_t)(4 + ver % 14);
        sl_fetch_req req;
        if (sl_fetch_req_decode(&rq, a, v, &req) != SL_OK) break;
        sl_gw_fetch_plan pl;
        if (!sl_gw_fetch_plan_build(&e, &req, v, 0, &pl)) break;
        if (pl.nlocal && v >= 7 && (req.session_id || req.session_epoch != -1) &&
            (pl.fwd.session_id || pl.fwd.session_epoch != -1))
            abort();
        ROUNDTRIP(req, fetch, v, &pl.fwd);
        sl_fetch_resp up, out;
        if (sl_fetch_resp_decode(&rs, a, v, &up) != SL_OK) break;
        bool changed;
        if (!sl_gw_fetch_merge(&e, &req, v, &pl, &up, &out, &changed)) break;
        for (int32_t i = 0; i < out.responses_count; i++) {
            /* v13+: the merge names every topic it could resolve (the others lose records) */
            if (!denied(out.responses[i].topic)) continue;
            for (int32_t j = 0; j < out.responses[i].partitions_count; j++)
                if (out.responses[i].partitions[j].records.len > 0) abort();
        }
        ROUNDTRIP(resp, fetch, v, &out);
        break;
    }
    case 2:
        OFFSETS(list_offsets, 1, 10, name);
        break;
    case 3:
        OFFSETS(offset_for_leader_epoch, 2, 4, topic);
        break;
    default:
        OFFSETS(delete_records, 0, 2, name);
        break;
    }
out:
    free(qb);
    free(ab);
    sl_arena_free(a);
    return 0;
}
