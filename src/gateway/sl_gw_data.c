/* The gateway's data path (sl_gw_int.h): Produce, Fetch, ListOffsets, OffsetForLeaderEpoch,
 * DeleteRecords. Each handler plans with the pure steps (sl_gw_data_int.h: strip what the
 * client may not touch, answer it locally, run the record transforms), forwards the request as it
 * came whenever nothing had to change (else re-encoded), and merges the local entries into the
 * upstream's answer. The answer goes back as the upstream wrote it when nothing in it changed;
 * the descriptors' outcomes (sl_api.c) still see it, so audit and metrics record gateway traffic
 * (per-partition sl_req_data) as they do the local broker's.
 *
 * Fetch's fast path: a fetch that strips nothing, names no topic with a transform chain, carries
 * no NodeEndpoints (v < 16) and whose answer can only hold the topics it named (not an
 * incremental session fetch, unless there is nothing to authorize or transform at all) is relayed
 * without being decoded (sl_gw_forward with no callback). Incremental session fetches are
 * decoded: their answers carry the session's other partitions, whose READ is decided on this
 * request's principal before any record goes back. */
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "gateway/sl_gateway.h"
#include "gateway/sl_gw_data_int.h"
#include "gateway/sl_gw_int.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_proto.h"
#include "proto/sl_records.h"

/* ---- the environment of the pure steps, bound to a request ---- */

typedef struct gw_ctx {
    sl_req *rq;
    int op;       /* the ACL operation the API's topics were named with */
    bool counted; /* in the gateway's answered_locally / rewritten figures */
    sl_gw_env env;
} gw_ctx;

static bool env_allowed(void *ctx, sl_str topic) {
    gw_ctx *c = ctx;
    return sl_req_allowed(c->rq, c->op, SL_ACL_RES_TOPIC, topic);
}

/* Names the session's other topics as READ and runs the authorization stage again: what was
 * decided stays decided, the new names get their decision (logged and audited like the rest). */
static void env_decide_extra(void *ctx, const sl_str *names, int32_t n, bool *ok) {
    gw_ctx *c = ctx;
    sl_req *rq = c->rq;
    for (int32_t i = 0; i < n; i++) sl_req_need(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, names[i], 0);
    sl_authorize_stage(rq, rq->b->authz);
    for (int32_t i = 0; i < n; i++)
        ok[i] = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, names[i]);
}

static bool env_topic_name(void *ctx, const sl_uuid *id, sl_str *name) {
    gw_ctx *c = ctx;
    const sl_catalog *cat = &c->rq->b->catalog;
    return cat->topic_name && cat->topic_name(cat->ctx, id, c->rq->a, name);
}

static const sl_xform_chain *env_chain(void *ctx, sl_str topic) {
    gw_ctx *c = ctx;
    return c->rq->b->gw ? sl_gw_chain(c->rq->b->gw, topic) : NULL;
}

static void ctx_init(gw_ctx *c, sl_req *rq, int op) {
    c->rq = rq;
    c->op = op;
    c->env = (sl_gw_env){.ctx = c,
                         .allowed = env_allowed,
                         .decide_extra = env_decide_extra,
                         .topic_name = env_topic_name,
                         .chain = env_chain,
                         .a = rq->a,
                         .rq = rq,
                         .now_ms = sl_wall_ms(),
                         /* A set cannot be larger than its request; the upstream enforces its
                          * own max.message.bytes. */
                         .max_bytes = (int64_t)rq->frame_len};
}

/* Counts a request answered locally, or whose request or answer was re-encoded, once. */
static void count(gw_ctx *c, bool local) {
    sl_gateway *g = c->rq->b->gw;
    if (!g || c->counted) return;
    c->counted = true;
    if (local)
        g->stats.answered_locally++;
    else
        g->stats.rewritten++;
}

/* Positions `r` on the body of an upstream answer (after the response header's tagged fields). */
static void answer_reader(const sl_req *rq, const uint8_t *body, size_t len, sl_rd *r) {
    *r = sl_rd_init(body, len);
    if (sl_api_flexible(rq->h.api_key, rq->h.api_version)) sl_pr_skip_tags(r);
}

/* Records of the data entries the outcomes added since `from` (error-free ones). */
static int64_t data_records(const sl_req *rq, int32_t from) {
    int64_t n = 0;
    for (int32_t k = from; k < rq->ndata; k++)
        if (!rq->data[k].error) n += rq->data[k].records;
    return n;
}

/* Encodes `fwd` (type sl_<api>_req) behind the request's header and forwards it. */
#define FORWARD_ENCODED(rq, api, fwd, expect, fn, arg, ctx)                                        \
    do {                                                                                           \
        sl_wr w_;                                                                                  \
        sl_gw_req_begin((rq), &w_);                                                                \
        sl_##api##_req_encode(&w_, (rq)->h.api_version, (fwd));                                    \
        if (w_.err) {                                                                              \
            sl_req_fail((rq), "out of memory");                                                    \
            break;                                                                                 \
        }                                                                                          \
        count((ctx), false);                                                                       \
        sl_gw_forward((rq), w_.buf, w_.len, (expect), (fn), (arg));                                \
    } while (0)

/* ---- Produce ---- */

typedef struct produce_op {
    gw_ctx c;
    sl_gw_produce_plan pl;
} produce_op;

static void produce_respond(sl_req *rq, sl_produce_resp *resp, const uint8_t *body, size_t len) {
    int32_t d0 = rq->ndata;
    sl_api_outcomes(rq, resp);
    rq->records_in += data_records(rq, d0);
    if (body) return sl_gw_respond_body(rq, body, len);
    sl_wr w;
    sl_req_resp_begin(rq, &w);
    sl_produce_resp_encode(&w, rq->h.api_version, resp);
    sl_req_respond(rq, &w);
}

static void produce_answer(sl_req *rq, void *arg, sl_up_status st, const uint8_t *body,
                           size_t len) {
    if (st != SL_UP_OK) return;
    produce_op *op = arg;
    sl_rd r;
    sl_produce_resp up;
    answer_reader(rq, body, len, &r);
    if (r.err || sl_produce_resp_decode(&r, rq->a, rq->h.api_version, &up) != SL_OK)
        return sl_req_fail(rq, "malformed Produce answer from the upstream");
    sl_gw_produce_merge(&op->pl, &up);
    /* The upstream's own answer goes back as it is unless local entries join it or its
     * NodeEndpoints hints name upstream addresses. */
    if (op->pl.nlocal == 0 && up.node_endpoints_count <= 0)
        return produce_respond(rq, &op->pl.mirror, body, len);
    if (op->pl.mirror.node_endpoints_count > 0)
        sl_gwaddr_rewrite_produce(&rq->b->gw->addr, rq->a, &op->pl.mirror);
    count(&op->c, false);
    produce_respond(rq, &op->pl.mirror, NULL, 0);
}

void sl_gw_produce(sl_req *rq) {
    const sl_produce_req *req = rq->req;
    int16_t v = rq->h.api_version;
    produce_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    ctx_init(&op->c, rq, SL_ACL_OP_WRITE);
    /* Kafka: a transactional produce needs WRITE on its transactional id, or nothing goes.
     * Otherwise it passes through like any other (the upstream runs the transaction). */
    int16_t all = 0;
    if (req->transactional_id.len >= 0 &&
        !sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req->transactional_id))
        all = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    sl_gw_produce_plan *pl = &op->pl;
    if (!sl_gw_produce_plan_build(&op->c.env, req, v, all, pl))
        return sl_req_fail(rq, "out of memory");
    if (req->acks == 0) {
        /* No answer: the lifecycle records what was sent (offsets unknown). A partition that
         * failed here can only be reported as Kafka does, by closing the connection; then
         * nothing is forwarded. */
        sl_api_outcomes(rq, &pl->mirror);
        if (pl->nlocal) return sl_req_fail(rq, "acks=0 produce failed");
        for (int32_t i = 0; i < pl->fwd.topic_data_count; i++)
            for (int32_t j = 0; j < pl->fwd.topic_data[i].partition_data_count; j++) {
                const sl_bytes *b = &pl->fwd.topic_data[i].partition_data[j].records;
                sl_batch_walk w;
                sl_batch_walk_set(b->p, b->len > 0 ? (size_t)b->len : 0, &w);
                rq->records_in += w.records;
            }
        if (!pl->rewrite) return sl_gw_forward(rq, rq->frame, rq->frame_len, false, NULL, NULL);
        FORWARD_ENCODED(rq, produce, &pl->fwd, false, NULL, NULL, &op->c);
        return;
    }
    if (pl->nfwd == 0 && pl->nlocal > 0) {
        count(&op->c, true);
        return produce_respond(rq, &pl->mirror, NULL, 0);
    }
    if (!pl->rewrite) return sl_gw_forward(rq, rq->frame, rq->frame_len, true, produce_answer, op);
    FORWARD_ENCODED(rq, produce, &pl->fwd, true, produce_answer, op, &op->c);
}

/* ---- Fetch ---- */

typedef struct fetch_op {
    gw_ctx c;
    sl_gw_fetch_plan pl;
} fetch_op;

static void fetch_respond(sl_req *rq, sl_fetch_resp *resp, const uint8_t *body, size_t len) {
    int32_t d0 = rq->ndata;
    sl_api_outcomes(rq, resp);
    rq->records_out += data_records(rq, d0);
    if (body) return sl_gw_respond_body(rq, body, len);
    sl_wr w;
    sl_req_resp_begin(rq, &w);
    sl_fetch_resp_encode(&w, rq->h.api_version, resp);
    sl_req_respond(rq, &w);
}

static void fetch_answer(sl_req *rq, void *arg, sl_up_status st, const uint8_t *body, size_t len) {
    if (st != SL_UP_OK) return;
    fetch_op *op = arg;
    int16_t v = rq->h.api_version;
    sl_rd r;
    sl_fetch_resp up, out;
    answer_reader(rq, body, len, &r);
    if (r.err || sl_fetch_resp_decode(&r, rq->a, v, &up) != SL_OK)
        return sl_req_fail(rq, "malformed Fetch answer from the upstream");
    bool changed = false;
    if (!sl_gw_fetch_merge(&op->c.env, rq->req, v, &op->pl, &up, &out, &changed))
        return sl_req_fail(rq, "out of memory");
    if (out.node_endpoints_count > 0) {
        sl_gwaddr_rewrite_fetch(&rq->b->gw->addr, rq->a, &out);
        changed = true;
    }
    if (changed) count(&op->c, false);
    fetch_respond(rq, &out, changed ? NULL : body, len);
}

/* True when the answer to `req` may go back undecoded: see the file comment. */
static bool fetch_fast(sl_req *rq, const sl_fetch_req *req, const sl_gw_fetch_plan *pl) {
    int16_t v = rq->h.api_version;
    sl_gateway *g = rq->b->gw;
    if (pl->nlocal || v >= 16 || !g) return false;
    for (int32_t i = 0; i < req->topics_count; i++)
        if (sl_gw_chain(g, pl->names[i])) return false;
    bool incremental = v >= 7 && req->session_epoch > 0;
    if (!incremental) return true;
    return !rq->b->authz && !g->crypt && !g->chain.unseal.fn && !g->chain.unprotect.fn;
}

void sl_gw_fetch(sl_req *rq) {
    const sl_fetch_req *req = rq->req;
    int16_t v = rq->h.api_version;
    fetch_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    ctx_init(&op->c, rq, SL_ACL_OP_READ);
    /* A follower's fetch (ReplicaId, v15+ ReplicaState.ReplicaId) is never forwarded: the
     * gateway's upstream identity may hold ClusterAction. Kafka answers a follower without it
     * TOPIC_AUTHORIZATION_FAILED on every partition; so does the gateway. */
    int16_t all = 0;
    if (!sl_gw_consumer_replica(req->replica_id) ||
        !sl_gw_consumer_replica(req->replica_state.replica_id)) {
        SL_WARN("gateway", "fetch as a replica refused", "principal=%s replica_id=%d",
                rq->principal ? rq->principal : "-",
                v >= 15 ? req->replica_state.replica_id : req->replica_id);
        all = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    }
    sl_gw_fetch_plan *pl = &op->pl;
    if (!sl_gw_fetch_plan_build(&op->c.env, req, v, all, pl))
        return sl_req_fail(rq, "out of memory");
    if (pl->nlocal > 0 && pl->fwd.topics_count <= 0) {
        /* Nothing left to ask the upstream. */
        sl_fetch_resp out;
        bool changed;
        if (!sl_gw_fetch_merge(&op->c.env, req, v, pl, NULL, &out, &changed))
            return sl_req_fail(rq, "out of memory");
        out.session_id = 0;
        count(&op->c, true);
        return fetch_respond(rq, &out, NULL, 0);
    }
    bool fast = fetch_fast(rq, req, pl);
    sl_gw_resp_fn fn = fast ? NULL : fetch_answer; /* fast: the answer is relayed as it comes */
    /* fetch.max.bytes bounds what one answer brings into the gateway, as it bounds what a local
     * broker builds (Fetch v4+ only here, so max_bytes is always there to lower). */
    bool capped = req->max_bytes > rq->b->cfg.fetch_max_bytes;
    if (capped) pl->fwd.max_bytes = rq->b->cfg.fetch_max_bytes;
    if (pl->nlocal == 0 && !capped)
        return sl_gw_forward(rq, rq->frame, rq->frame_len, true, fn, fast ? NULL : op);
    FORWARD_ENCODED(rq, fetch, &pl->fwd, true, fn, fast ? NULL : op, &op->c);
}

/* ---- ListOffsets, OffsetForLeaderEpoch, DeleteRecords ---- */

#define GW_OFFSETS_HANDLER(api, OP, REPLICA_OK, NAME)                                              \
    typedef struct api##_op {                                                                      \
        gw_ctx c;                                                                                  \
        sl_##api##_req fwd;                                                                        \
        sl_##api##_resp mirror;                                                                    \
        int32_t nlocal;                                                                            \
    } api##_op;                                                                                    \
    static void api##_respond(sl_req *rq, sl_##api##_resp *resp, const uint8_t *body,              \
                              size_t len) {                                                        \
        sl_api_outcomes(rq, resp);                                                                 \
        if (body) return sl_gw_respond_body(rq, body, len);                                        \
        sl_wr w;                                                                                   \
        sl_req_resp_begin(rq, &w);                                                                 \
        sl_##api##_resp_encode(&w, rq->h.api_version, resp);                                       \
        sl_req_respond(rq, &w);                                                                    \
    }                                                                                              \
    static void api##_answer(sl_req *rq, void *arg, sl_up_status st, const uint8_t *body,          \
                             size_t len) {                                                         \
        if (st != SL_UP_OK) return;                                                                \
        api##_op *op = arg;                                                                        \
        sl_rd r;                                                                                   \
        sl_##api##_resp up;                                                                        \
        answer_reader(rq, body, len, &r);                                                          \
        if (r.err || sl_##api##_resp_decode(&r, rq->a, rq->h.api_version, &up) != SL_OK)           \
            return sl_req_fail(rq, "malformed " NAME " answer from the upstream");                 \
        if (op->nlocal == 0) return api##_respond(rq, &up, body, len);                             \
        sl_gw_##api##_merge(&op->mirror, &up);                                                     \
        count(&op->c, false);                                                                      \
        api##_respond(rq, &op->mirror, NULL, 0);                                                   \
    }                                                                                              \
    void sl_gw_##api(sl_req *rq) {                                                                 \
        const sl_##api##_req *req = rq->req;                                                       \
        api##_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);                                      \
        if (!op) return sl_req_fail(rq, "out of memory");                                          \
        ctx_init(&op->c, rq, (OP));                                                                \
        int16_t all = 0;                                                                           \
        if (!(REPLICA_OK)) {                                                                       \
            SL_WARN("gateway", NAME " as a replica refused", "principal=%s",                       \
                    rq->principal ? rq->principal : "-");                                          \
            all = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;                                           \
        }                                                                                          \
        if (!sl_gw_##api##_plan(&op->c.env, req, all, &op->fwd, &op->mirror, &op->nlocal))         \
            return sl_req_fail(rq, "out of memory");                                               \
        if (op->nlocal > 0 && op->fwd.topics_count <= 0) {                                         \
            count(&op->c, true);                                                                   \
            return api##_respond(rq, &op->mirror, NULL, 0);                                        \
        }                                                                                          \
        if (op->nlocal == 0)                                                                       \
            return sl_gw_forward(rq, rq->frame, rq->frame_len, true, api##_answer, op);            \
        FORWARD_ENCODED(rq, api, &op->fwd, true, api##_answer, op, &op->c);                        \
    }

/* ListOffsets: consumers send -1 (or -2, debugging); a follower's id reads past the high
 * watermark. OffsetForLeaderEpoch: v3+ carries ReplicaId (the decoder's default, -2, below). */
GW_OFFSETS_HANDLER(list_offsets, SL_ACL_OP_DESCRIBE, sl_gw_consumer_replica(req->replica_id),
                   "ListOffsets")
GW_OFFSETS_HANDLER(offset_for_leader_epoch, SL_ACL_OP_DESCRIBE,
                   sl_gw_consumer_replica(req->replica_id), "OffsetForLeaderEpoch")
GW_OFFSETS_HANDLER(delete_records, SL_ACL_OP_DELETE, true, "DeleteRecords")
