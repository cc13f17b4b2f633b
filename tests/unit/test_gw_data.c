/* The gateway's data-path steps (src/gateway/sl_gw_data_int.h), over decoded structs with a fake
 * environment: denied topics are stripped in the request's order and answered locally; the
 * upstream's answer merges back into Kafka's shape (request order, local errors in place); a
 * session fetch that loses partitions goes sessionless; a session's other topics are authorized
 * on the answer; record transforms run only on allowed partitions and only where a chain
 * applies (no copy otherwise). */
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_kerr.h"
#include "gateway/sl_gw_data_int.h"
#include "proto/sl_records.h"
#include "sl_test.h"

#define S(x) ((sl_str){(x), (int32_t)(sizeof(x) - 1)})

/* ---- a fake environment ---- */

typedef struct fake {
    const char *denied[4]; /* topics the principal may not touch */
    const char *chained;   /* the topic with a transform chain */
    int16_t fail;          /* the chain's transform refuses with this */
    int calls;             /* transform calls */
    const char *calls_on[8];
    int nextra;
    const char *extra_seen[4];
    sl_xform_chain chain;
    sl_arena *a;
} fake;

static bool is_denied(const fake *f, sl_str t) {
    for (int i = 0; i < 4 && f->denied[i]; i++)
        if (sl_str_eqc(t, f->denied[i])) return true;
    return false;
}
static bool f_allowed(void *ctx, sl_str t) { return !is_denied(ctx, t); }
static void f_extra(void *ctx, const sl_str *names, int32_t n, bool *ok) {
    fake *f = ctx;
    for (int32_t i = 0; i < n; i++) {
        if (f->nextra < 4) f->extra_seen[f->nextra++] = names[i].p;
        ok[i] = !is_denied(f, names[i]);
    }
}
/* Topic ids: byte 0 is the topic's first letter; 'Z' is unknown. */
static bool f_topic_name(void *ctx, const sl_uuid *id, sl_str *name) {
    static const char *names[] = {"alpha", "beta", "gamma", "xtra"};
    for (int i = 0; i < 4; i++)
        if (id->b[0] == (uint8_t)names[i][0]) {
            *name = sl_str_c(names[i]);
            return true;
        }
    return false;
}
static const sl_xform_chain *f_chain(void *ctx, sl_str t) {
    fake *f = ctx;
    return f->chained && sl_str_eqc(t, f->chained) ? &f->chain : NULL;
}
/* The transform: returns a copy of the set (so a rewrite is visible as a new pointer). */
static int16_t f_xform(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                       bool *rewritten) {
    fake *f = arg;
    if (f->calls < 8) f->calls_on[f->calls] = c->topic.p;
    f->calls++;
    if (f->fail) {
        if (c->why) snprintf(c->why, c->whylen, "refused by the test");
        return f->fail;
    }
    uint8_t *d = sl_arena_dup(c->a, *data, *len);
    if (!d) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *data = d;
    *rewritten = true;
    return 0;
}

static sl_gw_env env_of(fake *f) {
    f->chain.seal = (sl_xform){f_xform, f};
    f->chain.unseal = (sl_xform){f_xform, f};
    return (sl_gw_env){.ctx = f,
                       .allowed = f_allowed,
                       .decide_extra = f_extra,
                       .topic_name = f_topic_name,
                       .chain = f_chain,
                       .a = f->a,
                       .now_ms = 1000,
                       .max_bytes = 1 << 20};
}

/* One valid magic-2 batch of two records. */
static sl_bytes batch(sl_arena *a) {
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 64);
    for (int i = 0; i < 2; i++) {
        sl_rec_in in = {.offset_delta = i,
                        .timestamp_delta = i,
                        .key = {(const uint8_t *)"k", 1},
                        .value = {(const uint8_t *)"value", 5}};
        if (sl_rec_builder_add(&rb, &in)) return SL_BYTES_NULL;
    }
    uint8_t *b;
    size_t len;
    if (sl_rec_builder_seal(&rb, 0, 1000, 1001, &b, &len)) return SL_BYTES_NULL;
    return (sl_bytes){b, (int32_t)len};
}

/* A produce request: topics alpha (p0), beta (p0, p1), gamma (p2), delta (p0). */
static sl_produce_req produce_req(sl_arena *a) {
    static const char *names[] = {"alpha", "beta", "gamma", "delta"};
    static const int np[] = {1, 2, 1, 1};
    sl_produce_req r;
    sl_produce_req_init(&r);
    r.acks = -1;
    r.topic_data = sl_arena_calloc(a, 4, sizeof *r.topic_data);
    r.topic_data_count = 4;
    for (int i = 0; i < 4; i++) {
        sl_produce_req_topic *t = &r.topic_data[i];
        t->name = sl_str_c(names[i]);
        t->partition_data = sl_arena_calloc(a, 2, sizeof *t->partition_data);
        t->partition_data_count = np[i];
        for (int j = 0; j < np[i]; j++) {
            t->partition_data[j].index = i == 2 ? 2 : j;
            t->partition_data[j].records = batch(a);
        }
    }
    return r;
}

SL_TEST(gw_produce_nothing_to_change_forwards_as_is) {
    fake f = {.a = sl_arena_new(4096)};
    sl_gw_env e = env_of(&f);
    sl_produce_req req = produce_req(f.a);
    sl_gw_produce_plan pl;
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK(!pl.rewrite);
    CHECK_EQ(pl.nlocal, 0);
    CHECK_EQ(pl.nfwd, 5);
    CHECK_EQ(pl.fwd.topic_data_count, 4);
    CHECK_EQ(f.calls, 0);
    sl_arena_free(f.a);
}

SL_TEST(gw_produce_strips_denied_in_order_and_merges_kafka_shape) {
    fake f = {.a = sl_arena_new(4096), .denied = {"alpha", "gamma"}};
    sl_gw_env e = env_of(&f);
    sl_produce_req req = produce_req(f.a);
    sl_gw_produce_plan pl;
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK(pl.rewrite);
    CHECK_EQ(pl.nlocal, 2);
    CHECK_EQ(pl.nfwd, 3);
    /* forwarded: beta then delta, as asked */
    CHECK_EQ(pl.fwd.topic_data_count, 2);
    CHECK(sl_str_eqc(pl.fwd.topic_data[0].name, "beta"));
    CHECK_EQ(pl.fwd.topic_data[0].partition_data_count, 2);
    CHECK(sl_str_eqc(pl.fwd.topic_data[1].name, "delta"));
    /* the re-encoded request decodes to the same */
    sl_wr w;
    sl_wr_init(&w, f.a, 256);
    sl_produce_req_encode(&w, 9, &pl.fwd);
    CHECK(!w.err);
    sl_rd r = sl_rd_init(w.buf, w.len);
    sl_produce_req back;
    CHECK(sl_produce_req_decode(&r, f.a, 9, &back) == SL_OK);
    CHECK_EQ(back.topic_data_count, 2);
    CHECK(sl_str_eqc(back.topic_data[1].name, "delta"));
    CHECK_EQ(back.topic_data[0].partition_data[1].records.len,
             req.topic_data[1].partition_data[1].records.len);

    /* The upstream answers in its own order (delta first, beta's partitions swapped) and
     * forgets beta/1. */
    sl_produce_resp up;
    sl_produce_resp_init(&up);
    up.throttle_time_ms = 7;
    sl_produce_resp_topic ut[2] = {{.name = S("delta")}, {.name = S("beta")}};
    sl_produce_resp_partition dp = {.index = 0, .base_offset = 40};
    sl_produce_resp_partition bp[1] = {{.index = 0, .base_offset = 10}};
    ut[0].partition_responses = &dp;
    ut[0].partition_responses_count = 1;
    ut[1].partition_responses = bp;
    ut[1].partition_responses_count = 1;
    up.responses = ut;
    up.responses_count = 2;
    sl_gw_produce_merge(&pl, &up);
    sl_produce_resp *m = &pl.mirror;
    CHECK_EQ(m->throttle_time_ms, 7);
    CHECK_EQ(m->responses_count, 4);
    CHECK(sl_str_eqc(m->responses[0].name, "alpha"));
    CHECK_EQ(m->responses[0].partition_responses[0].error_code,
             SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK_EQ(m->responses[0].partition_responses[0].base_offset, -1);
    CHECK(sl_str_eqc(m->responses[1].name, "beta"));
    CHECK_EQ(m->responses[1].partition_responses[0].base_offset, 10);
    CHECK_EQ(m->responses[1].partition_responses[0].error_code, 0);
    CHECK_EQ(m->responses[1].partition_responses[1].index, 1);
    CHECK_EQ(m->responses[1].partition_responses[1].error_code, SL_KAFKA_UNKNOWN_SERVER_ERROR);
    CHECK(sl_str_eqc(m->responses[2].name, "gamma"));
    CHECK_EQ(m->responses[2].partition_responses[0].index, 2);
    CHECK_EQ(m->responses[2].partition_responses[0].error_code,
             SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK_EQ(m->responses[3].partition_responses[0].base_offset, 40);
    sl_arena_free(f.a);
}

SL_TEST(gw_produce_transforms_only_allowed_partitions) {
    /* beta has a chain; alpha is denied (and would have one too if it were the chained topic) */
    fake f = {.a = sl_arena_new(4096), .denied = {"alpha"}, .chained = "beta"};
    sl_gw_env e = env_of(&f);
    sl_produce_req req = produce_req(f.a);
    sl_gw_produce_plan pl;
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(f.calls, 2); /* beta/0 and beta/1, nothing else */
    CHECK(strcmp(f.calls_on[0], "beta") == 0 && strcmp(f.calls_on[1], "beta") == 0);
    CHECK(pl.rewrite);
    CHECK(pl.fwd.topic_data[0].partition_data[0].records.p !=
          req.topic_data[1].partition_data[0].records.p);
    CHECK(pl.fwd.topic_data[1].partition_data[0].records.p ==
          req.topic_data[2].partition_data[0].records.p); /* gamma untouched */

    /* Denied topic with the chain: never transformed. */
    fake g = {.a = f.a, .denied = {"beta"}, .chained = "beta"};
    e = env_of(&g);
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(g.calls, 0);

    /* A refusing transform answers the partition locally, with its reason (v8+). */
    fake h = {.a = f.a, .chained = "delta", .fail = SL_KAFKA_INVALID_RECORD};
    e = env_of(&h);
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(pl.nlocal, 1);
    CHECK_EQ(pl.fwd.topic_data_count, 3);
    CHECK_EQ(pl.mirror.responses[3].partition_responses[0].error_code, SL_KAFKA_INVALID_RECORD);
    CHECK(sl_str_eqc(pl.mirror.responses[3].partition_responses[0].error_message,
                     "refused by the test"));

    /* A set whose CRC does not match goes on unread to the upstream, which checks it, unless a
     * transform would read it: then it is refused here. */
    uint8_t *bad = sl_arena_dup(f.a, req.topic_data[0].partition_data[0].records.p,
                                (size_t)req.topic_data[0].partition_data[0].records.len);
    bad[30] ^= 1; /* in the base timestamp: covered by the CRC */
    req.topic_data[0].partition_data[0].records.p = bad;
    fake k = {.a = f.a};
    e = env_of(&k);
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(pl.nlocal, 0);
    CHECK(pl.fwd.topic_data[0].partition_data[0].records.p == bad);
    fake k2 = {.a = f.a, .chained = "alpha"};
    e = env_of(&k2);
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(pl.nlocal, 1);
    CHECK_EQ(k2.calls, 0);
    CHECK_EQ(pl.mirror.responses[0].partition_responses[0].error_code, SL_KAFKA_CORRUPT_MESSAGE);
    CHECK(sl_str_eqc(pl.fwd.topic_data[0].name, "beta"));
    /* Headers that do not add up never go upstream. */
    sl_be32(bad + 8, 20); /* batch length: less than a batch header */
    e = env_of(&k);
    CHECK(sl_gw_produce_plan_build(&e, &req, 9, 0, &pl));
    CHECK_EQ(pl.nlocal, 1);
    CHECK_EQ(pl.mirror.responses[0].partition_responses[0].error_code, SL_KAFKA_CORRUPT_MESSAGE);
    CHECK(sl_str_eqc(pl.fwd.topic_data[0].name, "beta"));

    /* A denied transactional id answers everything locally. */
    CHECK(
        sl_gw_produce_plan_build(&e, &req, 9, SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, &pl));
    CHECK_EQ(pl.nfwd, 0);
    CHECK_EQ(pl.nlocal, 5);
    CHECK_EQ(pl.mirror.responses[1].partition_responses[1].error_code,
             SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    sl_arena_free(f.a);
}

/* ---- Fetch ---- */

/* A fetch of alpha (p0), beta (p0, p1), gamma (p0); v13+ by id. */
static sl_fetch_req fetch_req(sl_arena *a, int32_t sid, int32_t epoch) {
    static const char *names[] = {"alpha", "beta", "gamma"};
    sl_fetch_req r;
    sl_fetch_req_init(&r);
    r.session_id = sid;
    r.session_epoch = epoch;
    r.topics = sl_arena_calloc(a, 3, sizeof *r.topics);
    r.topics_count = 3;
    for (int i = 0; i < 3; i++) {
        r.topics[i].topic = sl_str_c(names[i]);
        r.topics[i].topic_id.b[0] = (uint8_t)names[i][0];
        r.topics[i].partitions_count = i == 1 ? 2 : 1;
        r.topics[i].partitions = sl_arena_calloc(a, 2, sizeof *r.topics[i].partitions);
        for (int j = 0; j < r.topics[i].partitions_count; j++) {
            r.topics[i].partitions[j].partition = j;
            r.topics[i].partitions[j].fetch_offset = 100 + j;
        }
    }
    r.forgotten_topics_data = sl_arena_calloc(a, 1, sizeof *r.forgotten_topics_data);
    r.forgotten_topics_data_count = 1;
    r.forgotten_topics_data[0].topic = S("old");
    return r;
}

SL_TEST(gw_fetch_strip_from_session_goes_sessionless) {
    fake f = {.a = sl_arena_new(4096), .denied = {"beta"}};
    sl_gw_env e = env_of(&f);
    /* incremental session fetch (id 5, epoch 3) */
    sl_fetch_req req = fetch_req(f.a, 5, 3);
    sl_gw_fetch_plan pl;
    CHECK(sl_gw_fetch_plan_build(&e, &req, 12, 0, &pl));
    CHECK_EQ(pl.nlocal, 1);
    CHECK(pl.sessionless);
    CHECK_EQ(pl.fwd.session_id, 0);
    CHECK_EQ(pl.fwd.session_epoch, -1);
    CHECK_EQ(pl.fwd.forgotten_topics_data_count, 0);
    CHECK_EQ(pl.fwd.topics_count, 2);
    CHECK(sl_str_eqc(pl.fwd.topics[0].topic, "alpha"));
    CHECK(sl_str_eqc(pl.fwd.topics[1].topic, "gamma"));
    CHECK_EQ(pl.local[1], SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);

    /* creating a session (0/0) with a denied topic: sessionless too */
    req = fetch_req(f.a, 0, 0);
    CHECK(sl_gw_fetch_plan_build(&e, &req, 12, 0, &pl));
    CHECK(pl.sessionless);
    CHECK_EQ(pl.fwd.session_epoch, -1);

    /* nothing denied: the session and forgotten topics pass as they are */
    fake g = {.a = f.a};
    e = env_of(&g);
    req = fetch_req(f.a, 5, 3);
    CHECK(sl_gw_fetch_plan_build(&e, &req, 12, 0, &pl));
    CHECK(!pl.sessionless);
    CHECK_EQ(pl.nlocal, 0);
    CHECK_EQ(pl.fwd.session_id, 5);
    CHECK_EQ(pl.fwd.session_epoch, 3);
    CHECK_EQ(pl.fwd.forgotten_topics_data_count, 1);
    CHECK(pl.fwd.topics == req.topics);

    /* a replica's fetch: everything local */
    CHECK(sl_gw_fetch_plan_build(&e, &req, 12, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED, &pl));
    CHECK_EQ(pl.nlocal, 3);
    CHECK_EQ(pl.fwd.topics_count, 0);

    /* v13+: names from the catalog; an unknown id is answered UNKNOWN_TOPIC_ID */
    req = fetch_req(f.a, 0, -1);
    req.topics[2].topic_id.b[0] = 'Z';
    CHECK(sl_gw_fetch_plan_build(&e, &req, 13, 0, &pl));
    CHECK(sl_str_eqc(pl.names[1], "beta"));
    CHECK_EQ(pl.local[2], SL_KAFKA_UNKNOWN_TOPIC_ID);
    CHECK(!pl.sessionless); /* already sessionless */
    sl_arena_free(f.a);
}

static sl_fetch_resp_topic up_topic(sl_arena *a, const char *name, int np, sl_bytes recs) {
    sl_fetch_resp_topic t = {.topic = sl_str_c(name)};
    t.topic_id.b[0] = (uint8_t)name[0];
    t.partitions = sl_arena_calloc(a, (size_t)np, sizeof *t.partitions);
    t.partitions_count = np;
    for (int j = 0; j < np; j++) {
        sl_fetch_resp_partition_init(&t.partitions[j]);
        t.partitions[j].partition_index = j;
        t.partitions[j].high_watermark = 500;
        t.partitions[j].records = recs;
    }
    return t;
}

SL_TEST(gw_fetch_merge_order_extras_and_transforms) {
    fake f = {.a = sl_arena_new(4096), .denied = {"beta", "xtra"}, .chained = "gamma"};
    sl_gw_env e = env_of(&f);
    sl_fetch_req req = fetch_req(f.a, 5, 3);
    sl_gw_fetch_plan pl;
    CHECK(sl_gw_fetch_plan_build(&e, &req, 12, 0, &pl));
    sl_bytes recs = batch(f.a);
    /* upstream: gamma, then alpha, then a topic nobody asked for */
    sl_fetch_resp up;
    sl_fetch_resp_init(&up);
    up.session_id = 0;
    sl_fetch_resp_topic ut[3] = {up_topic(f.a, "gamma", 1, recs), up_topic(f.a, "alpha", 1, recs),
                                 up_topic(f.a, "xtra", 1, recs)};
    up.responses = ut;
    up.responses_count = 3;
    sl_fetch_resp out;
    bool changed = false;
    CHECK(sl_gw_fetch_merge(&e, &req, 12, &pl, &up, &out, &changed));
    CHECK(changed);
    CHECK_EQ(out.responses_count, 4);
    CHECK(sl_str_eqc(out.responses[0].topic, "alpha"));
    CHECK(out.responses[0].partitions[0].records.p == recs.p); /* no chain: not copied */
    CHECK(sl_str_eqc(out.responses[1].topic, "beta"));
    CHECK_EQ(out.responses[1].partitions_count, 2);
    CHECK_EQ(out.responses[1].partitions[1].partition_index, 1);
    CHECK_EQ(out.responses[1].partitions[1].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK_EQ(out.responses[1].partitions[1].records.len, 0);
    CHECK(sl_str_eqc(out.responses[2].topic, "gamma"));
    CHECK_EQ(out.responses[2].partitions[0].error_code, 0);
    CHECK(out.responses[2].partitions[0].records.p != recs.p); /* transformed */
    CHECK_EQ(out.responses[2].partitions[0].records.len, recs.len);
    CHECK_EQ(f.calls, 1);
    CHECK(strcmp(f.calls_on[0], "gamma") == 0);
    /* the extra topic was asked about, denied, its records dropped */
    CHECK_EQ(f.nextra, 1);
    CHECK(strcmp(f.extra_seen[0], "xtra") == 0);
    CHECK(sl_str_eqc(out.responses[3].topic, "xtra"));
    CHECK_EQ(out.responses[3].partitions[0].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK_EQ(out.responses[3].partitions[0].records.len, 0);
    /* the encoded answer decodes */
    sl_wr w;
    sl_wr_init(&w, f.a, 256);
    sl_fetch_resp_encode(&w, 12, &out);
    CHECK(!w.err);
    sl_rd r = sl_rd_init(w.buf, w.len);
    sl_fetch_resp back;
    CHECK(sl_fetch_resp_decode(&r, f.a, 12, &back) == SL_OK);
    CHECK_EQ(back.responses_count, 4);
    sl_arena_free(f.a);
}

SL_TEST(gw_fetch_session_extras_allowed_pass_unchanged) {
    fake f = {.a = sl_arena_new(4096)};
    sl_gw_env e = env_of(&f);
    sl_fetch_req req = fetch_req(f.a, 5, 3);
    req.topics_count = 1; /* the incremental fetch lists alpha only */
    sl_gw_fetch_plan pl;
    CHECK(sl_gw_fetch_plan_build(&e, &req, 13, 0, &pl));
    sl_bytes recs = batch(f.a);
    sl_fetch_resp up;
    sl_fetch_resp_init(&up);
    up.session_id = 5;
    sl_fetch_resp_topic ut[2] = {up_topic(f.a, "alpha", 1, recs), up_topic(f.a, "beta", 2, recs)};
    ut[0].topic = ut[1].topic = (sl_str){NULL, 0}; /* v13: by id only */
    up.responses = ut;
    up.responses_count = 2;
    sl_fetch_resp out;
    bool changed = true;
    CHECK(sl_gw_fetch_merge(&e, &req, 13, &pl, &up, &out, &changed));
    CHECK(!changed);
    CHECK_EQ(out.session_id, 5);
    CHECK_EQ(f.nextra, 1);
    CHECK(strcmp(f.extra_seen[0], "beta") == 0);
    /* names set for the outcomes */
    CHECK(sl_str_eqc(out.responses[1].topic, "beta"));
    CHECK(out.responses[1].partitions[1].records.p == recs.p);

    /* revoked: the session is dropped so the client starts over with a full fetch */
    fake g = {.a = f.a, .denied = {"beta"}};
    e = env_of(&g);
    CHECK(sl_gw_fetch_plan_build(&e, &req, 13, 0, &pl));
    ut[1] = up_topic(f.a, "beta", 2, recs);
    CHECK(sl_gw_fetch_merge(&e, &req, 13, &pl, &up, &out, &changed));
    CHECK(changed);
    CHECK_EQ(out.session_id, 0);
    CHECK_EQ(out.responses[1].partitions[0].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);

    /* a failing transform fails that partition only */
    fake h = {.a = f.a, .chained = "alpha", .fail = SL_KAFKA_CORRUPT_MESSAGE};
    e = env_of(&h);
    CHECK(sl_gw_fetch_plan_build(&e, &req, 13, 0, &pl));
    ut[1] = up_topic(f.a, "beta", 2, recs);
    CHECK(sl_gw_fetch_merge(&e, &req, 13, &pl, &up, &out, &changed));
    CHECK(changed);
    CHECK_EQ(out.responses[0].partitions[0].error_code, SL_KAFKA_CORRUPT_MESSAGE);
    CHECK_EQ(out.responses[1].partitions[0].error_code, 0);

    /* all denied: answered without the upstream, local entries named for the outcomes (v13) */
    fake k = {.a = f.a, .denied = {"alpha"}};
    e = env_of(&k);
    CHECK(sl_gw_fetch_plan_build(&e, &req, 13, 0, &pl));
    CHECK_EQ(pl.fwd.topics_count, 0);
    CHECK(sl_gw_fetch_merge(&e, &req, 13, &pl, NULL, &out, &changed));
    CHECK_EQ(out.responses_count, 1);
    CHECK(sl_str_eqc(out.responses[0].topic, "alpha"));
    CHECK_EQ(out.responses[0].topic_id.b[0], 'a');
    CHECK_EQ(out.responses[0].partitions[0].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    sl_arena_free(f.a);
}

/* ---- the offsets APIs ---- */

SL_TEST(gw_list_offsets_strip_and_merge) {
    fake f = {.a = sl_arena_new(4096), .denied = {"beta"}};
    sl_gw_env e = env_of(&f);
    sl_list_offsets_req req;
    sl_list_offsets_req_init(&req);
    req.replica_id = -1;
    sl_list_offsets_req_topic rt[3] = {
        {.name = S("alpha")}, {.name = S("beta")}, {.name = S("gamma")}};
    sl_list_offsets_req_partition rp[2] = {{.partition_index = 0, .timestamp = -1},
                                           {.partition_index = 1, .timestamp = -1}};
    for (int i = 0; i < 3; i++) {
        rt[i].partitions = rp;
        rt[i].partitions_count = 2;
    }
    req.topics = rt;
    req.topics_count = 3;
    sl_list_offsets_req fwd;
    sl_list_offsets_resp m;
    int32_t nlocal;
    CHECK(sl_gw_list_offsets_plan(&e, &req, 0, &fwd, &m, &nlocal));
    CHECK_EQ(nlocal, 1);
    CHECK_EQ(fwd.topics_count, 2);
    CHECK(sl_str_eqc(fwd.topics[1].name, "gamma"));
    CHECK_EQ(m.topics[1].partitions[1].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK_EQ(m.topics[1].partitions[1].offset, -1);
    sl_list_offsets_resp up;
    sl_list_offsets_resp_init(&up);
    sl_list_offsets_resp_partition p[2] = {{.partition_index = 1, .offset = 9},
                                           {.partition_index = 0, .offset = 8}};
    sl_list_offsets_resp_topic ut[2] = {
        {.name = S("gamma"), .partitions = p, .partitions_count = 2},
        {.name = S("alpha"), .partitions = p, .partitions_count = 1}};
    up.topics = ut;
    up.topics_count = 2;
    sl_gw_list_offsets_merge(&m, &up);
    CHECK_EQ(m.topics[0].partitions[0].error_code, SL_KAFKA_UNKNOWN_SERVER_ERROR); /* alpha/0 */
    CHECK_EQ(m.topics[0].partitions[1].offset, 9);
    CHECK_EQ(m.topics[2].partitions[0].offset, 8);
    CHECK_EQ(m.topics[2].partitions[1].offset, 9);
    /* a replica: nothing forwarded */
    CHECK(sl_gw_list_offsets_plan(&e, &req, SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED, &fwd, &m,
                                  &nlocal));
    CHECK_EQ(nlocal, 3);
    CHECK_EQ(fwd.topics_count, 0);
    CHECK(!sl_gw_consumer_replica(0) && !sl_gw_consumer_replica(-3));
    CHECK(sl_gw_consumer_replica(-1) && sl_gw_consumer_replica(-2));

    /* nothing denied: the request's own topics */
    fake g = {.a = f.a};
    e = env_of(&g);
    sl_delete_records_req dreq;
    sl_delete_records_req_init(&dreq);
    sl_delete_records_req_topic dt = {.name = S("alpha")};
    dreq.topics = &dt;
    dreq.topics_count = 1;
    sl_delete_records_req dfwd;
    sl_delete_records_resp dm;
    CHECK(sl_gw_delete_records_plan(&e, &dreq, 0, &dfwd, &dm, &nlocal));
    CHECK_EQ(nlocal, 0);
    CHECK(dfwd.topics == dreq.topics);
    sl_arena_free(f.a);
}
