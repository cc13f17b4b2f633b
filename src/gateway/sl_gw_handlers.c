/* The execute stage in gateway mode (sl_gateway.h, docs/gateway.md): what each API does once the
 * pipeline has authenticated the client, decoded its request and decided every resource it
 * names.
 *
 *  - Answered here, never forwarded: ApiVersions (the intersection of our descriptors and the
 *    upstream's ranges), SASL (terminated at the gateway), the ACL APIs and the SCRAM credential
 *    APIs (the gateway's own stores): the local broker's handlers.
 *  - Forwarded as received when every resource named is allowed (the plain pass-through), with
 *    the answer rewritten where it names broker addresses (Metadata, FindCoordinator,
 *    DescribeCluster) or was computed for the gateway's identity (authorized operations,
 *    listings that Kafka filters by the caller's ACLs: Metadata of every topic, ListGroups,
 *    ListTransactions, OffsetFetch of every topic, the topics of DescribeTransactions).
 *  - Partly denied: single-resource APIs are answered here with the denial; multi-resource ones
 *    forward what is allowed (re-encoded) and merge the denials into the upstream's answer.
 *  - The data path (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords) is
 *    sl_gw_data.c's (sl_gw_int.h).
 * APIs without a descriptor or gateway handler (inter-broker, controller, WriteTxnMarkers) are
 * refused by the pipeline before they get here: nothing is forwarded that the gateway cannot
 * authorize. The client-side transaction APIs (FindCoordinator for a transactional id,
 * InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit), the operators'
 * ones (DescribeTransactions, ListTransactions: DESCRIBE on each transactional id) and
 * DescribeProducers (a partition leader's producer state, READ on the topic) are forwarded after
 * their authorization like the rest. */
#include "gateway/sl_gw_handlers.h"

#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "gateway/sl_gateway.h"
#include "gateway/sl_gw_int.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "proto/sl_proto.h"

#define CLUSTER_NAME sl_str_c(SL_ACL_CLUSTER_NAME)

static sl_gateway *GW(sl_req *rq) { return rq->b->gw; }

/* ---- decisions ---- */

/* The decision for (op, rtype, name): the stage's when the descriptor named it, else decided
 * now (sl_authorize_late: resources only the upstream's answer names). `quiet`: a listing,
 * whose denials are not logged. */
static bool allowed(sl_req *rq, int op, int rtype, sl_str name, bool quiet) {
    return sl_authorize_late(rq, rq->b->authz, op, rtype, name, quiet ? SL_AZ_QUIET : 0);
}

/* Every resource the stage decided (listings and alternatives aside: they are quiet, and each
 * API that names them reads them itself) is allowed. */
static bool all_allowed(const sl_req *rq) {
    for (int32_t i = 0; i < rq->nres; i++) {
        const sl_req_res *r = &rq->res[i];
        if (r->flags & (SL_AZ_QUIET | SL_AZ_OPS)) continue;
        if (!r->allowed) return false;
    }
    return true;
}

/* Naming ran out of memory (sl_authorize.c leaves the resource unnamed and sets the request's
 * error): nothing can be decided, so nothing is forwarded. */
static bool naming_failed(sl_req *rq) {
    if (rq->error != SL_KAFKA_UNKNOWN_SERVER_ERROR) return false;
    sl_req_fail(rq, "out of memory");
    return true;
}

typedef struct late_ctx {
    sl_req *rq;
    int op, rtype;
} late_ctx;

static int16_t late_deny(void *ctx, sl_str name) {
    late_ctx *c = ctx;
    return allowed(c->rq, c->op, c->rtype, name, true) ? 0 : sl_authorize_denial_code(c->rtype);
}

static int32_t late_ops(void *ctx, sl_str name) {
    late_ctx *c = ctx;
    (void)sl_authorize_late(c->rq, c->rq->b->authz, SL_ACL_OP_ALL, c->rtype, name, SL_AZ_OPS);
    return sl_req_ops(c->rq, c->rtype, name);
}

/* ---- forwarding ---- */

/* The upstream serves this request's version (what ApiVersions advertised is inside it; a
 * client that did not ask, or asked another gateway, gets its connection closed rather than
 * the upstream's reaction to a version it does not know). */
static bool version_served(sl_req *rq) {
    int16_t lo, hi;
    if (!sl_gwcluster_api_range(GW(rq)->cluster, rq->h.api_key, &lo, &hi)) return false;
    return rq->h.api_version >= lo && rq->h.api_version <= hi;
}

/* The upstream's answer decoded into the API's response struct (its strings point into the
 * upstream's buffer: valid during the call only, so `fn` finishes the request before it
 * returns). */
typedef void (*gw_answer_fn)(sl_req *rq, void *resp, void *arg);
typedef struct gw_call {
    gw_answer_fn fn;
    void *arg;
} gw_call;

static void on_answer(sl_req *rq, void *arg, sl_up_status st, const uint8_t *body, size_t len) {
    if (st != SL_UP_OK) return; /* the client connection is closed already */
    gw_call *c = arg;
    const sl_msg_codec *codec = sl_msg_codec_get(rq->h.api_key, true);
    void *m = codec ? sl_arena_calloc(rq->a, 1, codec->size) : NULL;
    if (!m) return sl_req_fail(rq, "out of memory");
    codec->init(m);
    sl_rd r = sl_rd_init(body, len);
    if (sl_api_flexible(rq->h.api_key, rq->h.api_version)) sl_pr_skip_tags(&r);
    if (r.err || codec->decode(&r, rq->a, rq->h.api_version, m) != SL_OK) {
        SL_WARN("gateway", "malformed upstream answer", "api=%d version=%d bytes=%zu",
                rq->h.api_key, rq->h.api_version, len);
        return sl_req_fail(rq, "malformed upstream answer");
    }
    c->fn(rq, m, c->arg);
}

/* Forwards `req` (the API's request struct, re-encoded at the request's version) or, with req
 * NULL, the frame as received. fn NULL: the answer is relayed unchanged; otherwise fn gets it
 * decoded. */
static void gw_send(sl_req *rq, const void *req, gw_answer_fn fn, void *arg) {
    if (!version_served(rq)) return sl_req_fail(rq, "api version not served by the upstream");
    const uint8_t *frame = rq->frame;
    size_t len = rq->frame_len;
    if (req) {
        sl_wr w;
        sl_gw_req_begin(rq, &w);
        sl_msg_codec_get(rq->h.api_key, false)->encode(&w, rq->h.api_version, req);
        if (w.err) return sl_req_fail(rq, "out of memory");
        frame = w.buf;
        len = w.len;
    }
    if (!fn) return sl_gw_forward(rq, frame, len, true, NULL, NULL);
    gw_call *c = sl_arena_alloc(rq->a, sizeof *c);
    if (!c) return sl_req_fail(rq, "out of memory");
    *c = (gw_call){fn, arg};
    sl_gw_forward(rq, frame, len, true, on_answer, c);
}

/* The plain pass-through: every resource allowed, the answer names no address. */
static void gw_pass(sl_req *rq) { gw_send(rq, NULL, NULL, NULL); }

static void count_local(sl_req *rq) { GW(rq)->stats.answered_locally++; }
static void count_rewritten(sl_req *rq) { GW(rq)->stats.rewritten++; }

/* A rewrite found a node without a gateway address (sl_gwaddr.h): closing the connection says
 * so more plainly than an answer naming a dead address or an error clients retry forever. */
static void no_address(sl_req *rq) {
    const sl_config *cfg = &rq->b->cfg;
    SL_ERROR("gateway", "upstream names a broker without a gateway address",
             "api=%d sluice.gateway.node.id.min=%d sluice.gateway.node.port.count=%d "
             "(nodes outside [id.min, id.min+count) have no port; raise the count)",
             rq->h.api_key, cfg->sluice_gateway_node_id_min, cfg->sluice_gateway_node_port_count);
    sl_req_fail(rq, "upstream broker outside the gateway's node port range");
}

/* Grows response array `arr` (n elements) by `extra`, in the arena. */
static void *grow(sl_arena *a, const void *arr, int32_t n, int32_t extra, size_t size) {
    if (n < 0) n = 0;
    size_t total = (size_t)n + (size_t)(extra > 0 ? extra : 0);
    void *out = sl_arena_calloc(a, total ? total : 1, size);
    if (out && n) memcpy(out, arr, (size_t)n * size);
    return out;
}

/* ---- ApiVersions ---- */

static bool is_local(int16_t key) {
    switch (key) {
    case SL_API_API_VERSIONS:
    case SL_API_SASL_HANDSHAKE:
    case SL_API_SASL_AUTHENTICATE:
    case SL_API_DESCRIBE_ACLS:
    case SL_API_CREATE_ACLS:
    case SL_API_DELETE_ACLS:
    case SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS:
    case SL_API_ALTER_USER_SCRAM_CREDENTIALS:
        return true;
    default:
        return false;
    }
}

int32_t sl_gw_advertised(bool known, sl_gw_range_fn range, void *ctx,
                         sl_api_versions_resp_api_key *out) {
    int32_t n = 0;
    for (int i = 0; sl_api_desc_at(i); i++) {
        const sl_api_desc *d = sl_api_desc_at(i);
        if (!sl_gw_exec(d->key)) continue;
        const sl_api_info *in = sl_api_desc_info(d);
        int16_t lo = in->min_version, hi = in->max_version;
        if (!known && !(d->flags & SL_API_PREAUTH)) continue;
        if (!is_local(d->key)) {
            int16_t ulo, uhi;
            if (!range(ctx, d->key, &ulo, &uhi)) continue;
            if (ulo > lo) lo = ulo;
            if (uhi < hi) hi = uhi;
        }
        if (d->key == SL_API_PRODUCE && lo < 3) lo = 3;
        if (d->key == SL_API_FETCH && lo < 4) lo = 4;
        /* v4+ is broker to broker (KIP-890): clients of a gateway have no use for it. */
        if (d->key == SL_API_ADD_PARTITIONS_TO_TXN && hi > 3) hi = 3;
        if (lo > hi) continue;
        out[n++] = (sl_api_versions_resp_api_key){d->key, lo, hi};
    }
    return n;
}

static bool cluster_range(void *ctx, int16_t key, int16_t *min, int16_t *max) {
    return sl_gwcluster_api_range(ctx, key, min, max);
}

/* As the local broker's (sl_h_api_versions): a version above our range is answered in v0 with
 * UNSUPPORTED_VERSION and the list, so the client retries lower. */
static void gw_api_versions(sl_req *rq) {
    sl_api_versions_resp resp;
    sl_api_versions_resp_init(&resp);
    const sl_api_info *self = sl_api_lookup(SL_API_API_VERSIONS);
    if (rq->h.api_version > self->max_version || rq->h.api_version < 0) {
        resp.error_code = SL_KAFKA_UNSUPPORTED_VERSION;
        rq->h.api_version = 0;
    } else {
        sl_api_versions_req req;
        if (sl_api_versions_req_decode(&rq->body, rq->a, rq->h.api_version, &req))
            resp.error_code = SL_KAFKA_INVALID_REQUEST;
    }
    int n = 0;
    while (sl_api_desc_at(n)) n++;
    resp.api_keys = sl_arena_calloc(rq->a, (size_t)n, sizeof *resp.api_keys);
    if (!resp.api_keys) return sl_req_fail(rq, "out of memory");
    sl_gwcluster *c = GW(rq)->cluster;
    resp.api_keys_count =
        sl_gw_advertised(sl_gwcluster_versions_known(c), cluster_range, c, resp.api_keys);
    count_local(rq);
    SL_RESPOND(rq, api_versions, &resp);
}

/* ---- Metadata ---- */

static const sl_metadata_req_topic *asked_topic(const sl_metadata_req *req, sl_str name,
                                                const sl_uuid *id) {
    for (int32_t i = 0; i < req->topics_count; i++) {
        const sl_metadata_req_topic *t = &req->topics[i];
        if (t->name.len >= 0 ? (name.len >= 0 && sl_str_eq(t->name, name))
                             : !memcmp(t->topic_id.b, id->b, sizeof id->b))
            return t;
    }
    return NULL;
}

static void error_topic(sl_metadata_resp_topic *o, sl_str name, const sl_uuid *id, int16_t err) {
    sl_metadata_resp_topic_init(o);
    o->error_code = err;
    o->name = name;
    if (id) o->topic_id = *id;
    o->partitions_count = 0;
    o->topic_authorized_operations = INT32_MIN;
}

bool sl_gw_metadata_merge(sl_arena *a, const sl_metadata_req *req, bool all, bool want_ops,
                          const sl_gw_local_topic *local, int32_t nlocal, const sl_gw_authz *az,
                          sl_metadata_resp *m) {
    int32_t nup = m->topics_count > 0 ? m->topics_count : 0;
    sl_metadata_resp_topic *out =
        sl_arena_calloc(a, (size_t)(nup + nlocal > 0 ? nup + nlocal : 1), sizeof *out);
    if (!out) return false;
    int32_t n = 0;
    for (int32_t i = 0; i < nup; i++) {
        sl_metadata_resp_topic *t = &m->topics[i];
        const sl_metadata_req_topic *q = all ? NULL : asked_topic(req, t->name, &t->topic_id);
        if (!all && !q) continue; /* not asked for */
        int16_t err = t->name.len >= 0 ? az->deny(az->ctx, t->name) : 0;
        if (err) {
            if (all) continue; /* a listing leaves it out */
            error_topic(&out[n++], q->name, q->name.len < 0 ? &q->topic_id : NULL, err);
            continue;
        }
        out[n] = *t;
        out[n].topic_authorized_operations =
            want_ops && !t->error_code && t->name.len >= 0 ? az->ops(az->ctx, t->name) : INT32_MIN;
        n++;
    }
    for (int32_t i = 0; i < nlocal; i++)
        error_topic(&out[n++], local[i].name, local[i].name.len < 0 ? &local[i].id : NULL,
                    local[i].error);
    m->topics = out;
    m->topics_count = n;
    return true;
}

typedef struct md_ctx {
    bool all, want_ops;
    sl_gw_local_topic *local;
    int32_t nlocal;
} md_ctx;

static void md_finish(sl_req *rq, sl_metadata_resp *m, md_ctx *c) {
    const sl_metadata_req *q = rq->req;
    int16_t v = rq->h.api_version;
    if (!sl_gwaddr_rewrite_metadata(&GW(rq)->addr, rq->a, m)) return no_address(rq);
    late_ctx lc = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC};
    sl_gw_authz az = {&lc, late_deny, late_ops};
    if (!sl_gw_metadata_merge(rq->a, q, c->all, c->want_ops, c->local, c->nlocal, &az, m))
        return sl_req_fail(rq, "out of memory");
    m->cluster_authorized_operations = v >= 8 && v <= 10 && q->include_cluster_authorized_operations
                                           ? sl_req_ops(rq, SL_ACL_RES_CLUSTER, CLUSTER_NAME)
                                           : INT32_MIN;
    SL_RESPOND(rq, metadata, m);
}

static void md_answer(sl_req *rq, void *resp, void *arg) {
    sl_metadata_resp *m = resp;
    /* The cluster view learns from the whole answer, before the client's filter. */
    sl_gwcluster_learn(GW(rq)->cluster, rq->h.api_version, m);
    count_rewritten(rq);
    md_finish(rq, m, arg);
}

/* v0 cannot ask for no topics (an empty list is all of them): with every topic denied, the
 * answer is built from the cluster view. */
static void md_local(sl_req *rq, md_ctx *c) {
    sl_gwcluster *cl = GW(rq)->cluster;
    const sl_gw_node *nodes;
    int n = sl_gwcluster_nodes(cl, &nodes);
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    if (!SL_RESP_ARRAY(rq, m.brokers, m.brokers_count, n)) return sl_req_fail(rq, "out of memory");
    for (int i = 0; i < n; i++) {
        sl_metadata_resp_broker_init(&m.brokers[i]);
        m.brokers[i].node_id = nodes[i].id;
        m.brokers[i].host = sl_str_c(nodes[i].host);
        m.brokers[i].port = nodes[i].port;
        m.brokers[i].rack = nodes[i].rack[0] ? sl_str_c(nodes[i].rack) : SL_STR_NULL;
    }
    m.cluster_id = sl_str_c(sl_gwcluster_cluster_id(cl));
    m.controller_id = sl_gwcluster_controller(cl);
    m.topics_count = 0;
    count_local(rq);
    md_finish(rq, &m, c);
}

/* CREATE on the cluster, or else on the topic (decided quietly: only asked about). */
static bool may_create(sl_req *rq, sl_str topic) {
    return allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER, CLUSTER_NAME, true) ||
           allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, topic, true);
}

/* Kafka's rules: a named topic the client may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED; one
 * that does not exist, when the request would auto-create it and the client may not CREATE it
 * (on the cluster or the topic), too. Those are answered here; the rest is forwarded, with
 * AllowAutoTopicCreation forced false (v4+) unless the client may create every topic left, so a
 * topic is never auto-created upstream on the gateway's authority (v0-3, which have no such
 * flag: see below). */
static void gw_metadata(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_metadata_req *q = rq->req;
    const sl_catalog *cat = &rq->b->catalog;
    int16_t v = rq->h.api_version;
    md_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!c) return sl_req_fail(rq, "out of memory");
    c->all = q->topics_count < 0 || (v == 0 && q->topics_count == 0);
    c->want_ops = v >= 8 && q->include_topic_authorized_operations;
    if (c->all) return gw_send(rq, NULL, md_answer, c);
    sl_metadata_req f = *q;
    int32_t nq = q->topics_count;
    f.topics = sl_arena_calloc(rq->a, (size_t)(nq ? nq : 1), sizeof *f.topics);
    c->local = sl_arena_calloc(rq->a, (size_t)(nq ? nq : 1), sizeof *c->local);
    if (!f.topics || !c->local) return sl_req_fail(rq, "out of memory");
    f.topics_count = 0;
    bool changed = false;
    bool wants_create = v < 4 || q->allow_auto_topic_creation;
    bool auto_create = wants_create && cat->auto_create(cat->ctx);
    for (int32_t i = 0; i < nq; i++) {
        const sl_metadata_req_topic *t = &q->topics[i];
        sl_str name = t->name;
        /* An id the catalog does not know goes up unauthorized: the upstream answers it as
         * unknown, or the answer's filter decides on the name it gives. */
        if (name.len < 0 && !cat->topic_name(cat->ctx, &t->topic_id, rq->a, &name)) {
            f.topics[f.topics_count++] = *t;
            continue;
        }
        int16_t err = 0;
        if (!allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, name, false))
            err = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        else if (t->name.len >= 0 && auto_create && !cat->topic_exists(cat->ctx, name) &&
                 !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, name))
            err = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED; /* named by res_metadata, with its alt */
        else if (v < 4 && t->name.len >= 0 && !cat->topic_exists(cat->ctx, name) &&
                 !may_create(rq, name))
            /* v0-3 cannot say "do not create": a topic the cluster view does not know, which
             * the client may not create, is not asked for (the upstream might auto-create it).
             * Retriable: a topic created meanwhile is found after the next refresh. */
            err = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        if (err) {
            c->local[c->nlocal++] = (sl_gw_local_topic){t->name, t->topic_id, err};
            changed = true;
            continue;
        }
        f.topics[f.topics_count++] = *t;
    }
    if (v >= 4 && f.allow_auto_topic_creation) {
        for (int32_t i = 0; i < f.topics_count && f.allow_auto_topic_creation; i++)
            if (f.topics[i].name.len >= 0 && !may_create(rq, f.topics[i].name)) {
                f.allow_auto_topic_creation = false;
                changed = true;
            }
    }
    if (v == 0 && f.topics_count == 0) return md_local(rq, c);
    gw_send(rq, changed ? &f : NULL, md_answer, c);
}

/* ---- FindCoordinator ---- */

static void fc_answer(sl_req *rq, void *resp, void *arg) {
    sl_find_coordinator_resp *m = resp;
    const sl_find_coordinator_req *q = rq->req;
    int16_t v = rq->h.api_version;
    if (!sl_gwaddr_rewrite_find_coordinator(&GW(rq)->addr, rq->a, v, m)) return no_address(rq);
    if (v >= 4) {
        /* The denied keys, answered here. */
        int rtype = q->key_type == 0 ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID;
        int32_t nd = 0, nup = m->coordinators_count > 0 ? m->coordinators_count : 0;
        for (int32_t i = 0; i < q->coordinator_keys_count; i++)
            if (!allowed(rq, SL_ACL_OP_DESCRIBE, rtype, q->coordinator_keys[i], false)) nd++;
        sl_find_coordinator_resp_coordinator *o =
            grow(rq->a, m->coordinators, nup, nd, sizeof *m->coordinators);
        if (!o) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < q->coordinator_keys_count; i++) {
            if (allowed(rq, SL_ACL_OP_DESCRIBE, rtype, q->coordinator_keys[i], false)) continue;
            o[nup++] = (sl_find_coordinator_resp_coordinator){
                q->coordinator_keys[i],          -1,         sl_str_c(""), -1,
                sl_authorize_denial_code(rtype), SL_STR_NULL};
        }
        m->coordinators = o;
        m->coordinators_count = nup;
    }
    count_rewritten(rq);
    SL_RESPOND(rq, find_coordinator, m);
}

/* DESCRIBE on the group or transactional id (res_find_coordinator). Other key types (share
 * groups) have no authorization rule here: the local handler answers them INVALID_REQUEST, as
 * it answers denials, without touching local state. */
static void gw_find_coordinator(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_find_coordinator_req *q = rq->req;
    if (q->key_type != 0 && q->key_type != 1) {
        count_local(rq);
        return sl_h_find_coordinator(rq);
    }
    int rtype = q->key_type == 0 ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID;
    if (rq->h.api_version < 4) {
        if (allowed(rq, SL_ACL_OP_DESCRIBE, rtype, q->key, false))
            return gw_send(rq, NULL, fc_answer, NULL);
        count_local(rq);
        return sl_h_find_coordinator(rq);
    }
    sl_find_coordinator_req f = *q;
    int32_t n = q->coordinator_keys_count > 0 ? q->coordinator_keys_count : 0;
    f.coordinator_keys = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.coordinator_keys);
    if (!f.coordinator_keys) return sl_req_fail(rq, "out of memory");
    f.coordinator_keys_count = 0;
    for (int32_t i = 0; i < n; i++)
        if (allowed(rq, SL_ACL_OP_DESCRIBE, rtype, q->coordinator_keys[i], false))
            f.coordinator_keys[f.coordinator_keys_count++] = q->coordinator_keys[i];
    if (n > 0 && f.coordinator_keys_count == 0) {
        count_local(rq);
        return sl_h_find_coordinator(rq); /* every key denied */
    }
    gw_send(rq, f.coordinator_keys_count == n ? NULL : &f, fc_answer, NULL);
}

/* ---- DescribeCluster ---- */

static void dc_answer(sl_req *rq, void *resp, void *arg) {
    sl_describe_cluster_resp *m = resp;
    const sl_describe_cluster_req *q = rq->req;
    if (!sl_gwaddr_rewrite_describe_cluster(&GW(rq)->addr, rq->a, m)) return no_address(rq);
    m->cluster_authorized_operations = q->include_cluster_authorized_operations
                                           ? sl_req_ops(rq, SL_ACL_RES_CLUSTER, CLUSTER_NAME)
                                           : INT32_MIN;
    count_rewritten(rq);
    SL_RESPOND(rq, describe_cluster, m);
}

/* Controllers are not proxied: v1's EndpointType 2 is refused as a broker refuses it. */
static void gw_describe_cluster(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_describe_cluster_req *q = rq->req;
    if (rq->h.api_version >= 1 && q->endpoint_type != 1) {
        sl_describe_cluster_resp resp;
        sl_describe_cluster_resp_init(&resp);
        resp.error_code = SL_KAFKA_UNSUPPORTED_ENDPOINT_TYPE;
        resp.endpoint_type = q->endpoint_type;
        resp.cluster_id = sl_str_c("");
        resp.controller_id = -1;
        resp.brokers_count = 0;
        resp.cluster_authorized_operations = INT32_MIN;
        count_local(rq);
        SL_RESPOND(rq, describe_cluster, &resp);
        return;
    }
    gw_send(rq, NULL, dc_answer, NULL);
}

/* ---- single-resource APIs: forwarded, or the local handler's denial ----
 *
 * Checked per handler: sl_h_join_group, sl_h_sync_group, sl_h_heartbeat, sl_h_leave_group and
 * sl_h_init_producer_id answer a denial before any call into the group or producer-id seams, so
 * in gateway mode they touch no local state. */
#define GW_SINGLE(api)                                                                             \
    static void gw_##api(sl_req *rq) {                                                             \
        if (naming_failed(rq)) return;                                                             \
        if (all_allowed(rq)) return gw_pass(rq);                                                   \
        count_local(rq);                                                                           \
        sl_h_##api(rq);                                                                            \
    }
GW_SINGLE(join_group)
GW_SINGLE(sync_group)
GW_SINGLE(heartbeat)
GW_SINGLE(leave_group)
GW_SINGLE(init_producer_id)

/* ---- per-item APIs: the allowed items forwarded, the denied ones merged into the answer ----
 *
 * GW_ITEMS(tag, api, qarr, rarr, VERDICT, FILL) defines gw_<tag>: for each item `it_` of the
 * request array `qarr`, VERDICT (an expression with `rq` and `it_`) gives 0 to forward it or the
 * error it is answered with here; FILL fills the answer entry `o_` (zeroed) of a local item from
 * `it_` and its error `e_`. Nothing denied: the frame goes as received. Everything denied: the
 * answer is built here. Otherwise the request is re-encoded without the denied items and their
 * entries are appended to the upstream's answer array `rarr`. */
#define GW_ITEMS(tag, api, qarr, rarr, VERDICT, FILL)                                              \
    typedef __typeof__(*((sl_##api##_req *)0)->qarr) tag##_item;                                   \
    static int16_t tag##_verdict(sl_req *rq, const tag##_item *it_) { return (VERDICT); }          \
    static bool tag##_append(sl_req *rq, const int16_t *err, sl_##api##_resp *m) {                 \
        const sl_##api##_req *q = rq->req;                                                         \
        int32_t nloc = 0, base = m->rarr##_count > 0 ? m->rarr##_count : 0;                        \
        for (int32_t i = 0; i < q->qarr##_count; i++) nloc += err[i] != 0;                         \
        __typeof__(m->rarr) out = grow(rq->a, m->rarr, base, nloc, sizeof *m->rarr);               \
        if (!out) return false;                                                                    \
        for (int32_t i = 0; i < q->qarr##_count; i++) {                                            \
            if (!err[i]) continue;                                                                 \
            const tag##_item *it_ = &q->qarr[i];                                                   \
            __typeof__(out) o_ = &out[base++];                                                     \
            int16_t e_ = err[i];                                                                   \
            (void)it_;                                                                             \
            FILL;                                                                                  \
        }                                                                                          \
        m->rarr = out;                                                                             \
        m->rarr##_count = base;                                                                    \
        return true;                                                                               \
    }                                                                                              \
    static void tag##_answer(sl_req *rq, void *resp, void *arg) {                                  \
        sl_##api##_resp *m = resp;                                                                 \
        if (!tag##_append(rq, arg, m)) return sl_req_fail(rq, "out of memory");                    \
        count_rewritten(rq);                                                                       \
        SL_RESPOND(rq, api, m);                                                                    \
    }                                                                                              \
    static void gw_##tag(sl_req *rq) {                                                             \
        if (naming_failed(rq)) return;                                                             \
        const sl_##api##_req *q = rq->req;                                                         \
        int32_t n = q->qarr##_count > 0 ? q->qarr##_count : 0;                                     \
        sl_##api##_req f = *q;                                                                     \
        int16_t *err = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *err);                   \
        f.qarr = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.qarr);                      \
        if (!err || !f.qarr) return sl_req_fail(rq, "out of memory");                              \
        f.qarr##_count = 0;                                                                        \
        for (int32_t i = 0; i < n; i++)                                                            \
            if (!(err[i] = tag##_verdict(rq, &q->qarr[i]))) f.qarr[f.qarr##_count++] = q->qarr[i]; \
        if (f.qarr##_count == n) return gw_pass(rq);                                               \
        if (f.qarr##_count == 0) {                                                                 \
            sl_##api##_resp m;                                                                     \
            sl_##api##_resp_init(&m);                                                              \
            m.rarr##_count = 0;                                                                    \
            if (!tag##_append(rq, err, &m)) return sl_req_fail(rq, "out of memory");               \
            count_local(rq);                                                                       \
            SL_RESPOND(rq, api, &m);                                                               \
            return;                                                                                \
        }                                                                                          \
        gw_send(rq, &f, tag##_answer, err);                                                        \
    }

/* Config resources: topics by name, the broker as the cluster (res_describe_configs); other
 * types (broker loggers, client metrics, groups) have no rule here and are refused. */
enum { CFG_RES_TOPIC = 2, CFG_RES_BROKER = 4 };
static int16_t config_verdict(sl_req *rq, int8_t type, sl_str name, int op) {
    if (type == CFG_RES_TOPIC)
        return allowed(rq, op, SL_ACL_RES_TOPIC, name, false) ? 0
                                                              : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    if (type == CFG_RES_BROKER)
        return allowed(rq, op, SL_ACL_RES_CLUSTER, CLUSTER_NAME, false)
                   ? 0
                   : SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    return SL_KAFKA_INVALID_REQUEST;
}

/* CreateTopics: CREATE on the cluster or the topic (the descriptor's alternative). */
GW_ITEMS(create_topics, create_topics, topics, topics,
         allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, it_->name, false)
             ? 0
             : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED,
         {
             sl_create_topics_resp_topic_init(o_);
             o_->name = it_->name;
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
             o_->num_partitions = -1;
             o_->replication_factor = -1;
             o_->configs_count = -1;
         })

/* DeleteTopics v0-5: by name. */
GW_ITEMS(delete_topic_names, delete_topics, topic_names, responses,
         allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, *it_, false)
             ? 0
             : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED,
         {
             sl_delete_topics_resp_result_init(o_);
             o_->name = *it_;
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
         })

/* DeleteTopics v6+: by name or id. An id the catalog does not know cannot be authorized, so it
 * is answered UNKNOWN_TOPIC_ID here (Kafka's answer for an unknown id); a topic denied by id
 * keeps its name to itself. */
static int16_t delete_topic_verdict(sl_req *rq, const sl_delete_topics_req_topic *t) {
    sl_str name = t->name;
    if (name.len < 0 && !rq->b->catalog.topic_name(rq->b->catalog.ctx, &t->topic_id, rq->a, &name))
        return SL_KAFKA_UNKNOWN_TOPIC_ID;
    return allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, name, false)
               ? 0
               : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
}
GW_ITEMS(delete_topics_v6, delete_topics, topics, responses, delete_topic_verdict(rq, it_), {
    sl_delete_topics_resp_result_init(o_);
    o_->name = it_->name;
    o_->topic_id = it_->topic_id;
    o_->error_code = e_;
    o_->error_message = SL_STR_NULL;
})

static void gw_delete_topics(sl_req *rq) {
    if (rq->h.api_version >= 6) return gw_delete_topics_v6(rq);
    gw_delete_topic_names(rq);
}

/* DescribeProducers: READ on each topic; a denied topic answers every partition asked for. */
GW_ITEMS(describe_producers, describe_producers, topics, topics,
         allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, it_->name, false)
             ? 0
             : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED,
         {
             o_->name = it_->name;
             if (!SL_RESP_ARRAY(rq, o_->partitions, o_->partitions_count,
                                it_->partition_indexes_count))
                 return false;
             for (int32_t j = 0; j < o_->partitions_count; j++) {
                 sl_describe_producers_resp_partition_init(&o_->partitions[j]);
                 o_->partitions[j].partition_index = it_->partition_indexes[j];
                 o_->partitions[j].error_code = e_;
                 o_->partitions[j].active_producers_count = 0;
             }
         })

GW_ITEMS(create_partitions, create_partitions, topics, results,
         allowed(rq, SL_ACL_OP_ALTER, SL_ACL_RES_TOPIC, it_->name, false)
             ? 0
             : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED,
         {
             o_->name = it_->name;
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
         })

GW_ITEMS(describe_configs, describe_configs, resources, results,
         config_verdict(rq, it_->resource_type, it_->resource_name, SL_ACL_OP_DESCRIBE_CONFIGS), {
             sl_describe_configs_resp_result_init(o_);
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
             o_->resource_type = it_->resource_type;
             o_->resource_name = it_->resource_name;
             o_->configs_count = 0;
         })

GW_ITEMS(alter_configs, alter_configs, resources, responses,
         config_verdict(rq, it_->resource_type, it_->resource_name, SL_ACL_OP_ALTER_CONFIGS), {
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
             o_->resource_type = it_->resource_type;
             o_->resource_name = it_->resource_name;
         })

GW_ITEMS(incremental_alter_configs, incremental_alter_configs, resources, responses,
         config_verdict(rq, it_->resource_type, it_->resource_name, SL_ACL_OP_ALTER_CONFIGS), {
             o_->error_code = e_;
             o_->error_message = SL_STR_NULL;
             o_->resource_type = it_->resource_type;
             o_->resource_name = it_->resource_name;
         })

GW_ITEMS(delete_groups, delete_groups, groups_names, results,
         allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_GROUP, *it_, false)
             ? 0
             : SL_KAFKA_GROUP_AUTHORIZATION_FAILED,
         {
             o_->group_id = *it_;
             o_->error_code = e_;
         })

/* ---- DescribeGroups ---- */

bool sl_gw_describe_groups_merge(sl_arena *a, const sl_describe_groups_req *req, bool want_ops,
                                 const sl_gw_authz *az, sl_describe_groups_resp *m) {
    int32_t n = req->groups_count > 0 ? req->groups_count : 0;
    sl_describe_groups_resp_group *out = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *out);
    if (!out) return false;
    for (int32_t i = 0; i < n; i++) {
        sl_str id = req->groups[i];
        sl_describe_groups_resp_group *o = &out[i];
        int16_t err = az->deny(az->ctx, id);
        const sl_describe_groups_resp_group *up = NULL;
        for (int32_t j = 0; !err && j < m->groups_count && !up; j++)
            if (sl_str_eq(m->groups[j].group_id, id)) up = &m->groups[j];
        if (up) {
            *o = *up;
            o->authorized_operations =
                want_ops && !up->error_code ? az->ops(az->ctx, id) : INT32_MIN;
            continue;
        }
        sl_describe_groups_resp_group_init(o);
        o->error_code = err ? err : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        o->group_id = id;
        o->group_state = sl_str_c("");
        o->protocol_type = sl_str_c("");
        o->protocol_data = sl_str_c("");
        o->members_count = 0;
        o->authorized_operations = INT32_MIN;
    }
    m->groups = out;
    m->groups_count = n;
    return true;
}

static void dg_answer(sl_req *rq, void *resp, void *arg) {
    sl_describe_groups_resp *m = resp;
    const sl_describe_groups_req *q = rq->req;
    late_ctx lc = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP};
    sl_gw_authz az = {&lc, late_deny, late_ops};
    if (!sl_gw_describe_groups_merge(rq->a, q, q->include_authorized_operations, &az, m))
        return sl_req_fail(rq, "out of memory");
    count_rewritten(rq);
    SL_RESPOND(rq, describe_groups, m);
}

/* The answer is always decoded: its AuthorizedOperations were the gateway identity's. */
static void gw_describe_groups(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_describe_groups_req *q = rq->req;
    int32_t n = q->groups_count > 0 ? q->groups_count : 0;
    sl_describe_groups_req f = *q;
    f.groups = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.groups);
    if (!f.groups) return sl_req_fail(rq, "out of memory");
    f.groups_count = 0;
    for (int32_t i = 0; i < n; i++)
        if (allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, q->groups[i], false))
            f.groups[f.groups_count++] = q->groups[i];
    if (n > 0 && f.groups_count == 0) {
        sl_describe_groups_resp m;
        sl_describe_groups_resp_init(&m);
        m.groups_count = 0;
        count_local(rq);
        dg_answer(rq, &m, NULL);
        return;
    }
    gw_send(rq, f.groups_count == n ? NULL : &f, dg_answer, NULL);
}

/* ---- ListGroups ---- */

void sl_gw_list_groups_filter(sl_list_groups_resp *m, const sl_gw_authz *az) {
    int32_t k = 0;
    for (int32_t i = 0; i < m->groups_count; i++)
        if (!az->deny(az->ctx, m->groups[i].group_id)) m->groups[k++] = m->groups[i];
    if (m->groups_count > 0) m->groups_count = k;
}

/* DESCRIBE on the cluster lists every group (res_list_groups); otherwise the describable ones,
 * decided as the answer names them. */
static void lg_answer(sl_req *rq, void *resp, void *arg) {
    sl_list_groups_resp *m = resp;
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_DESCRIBE)) {
        late_ctx lc = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP};
        sl_gw_authz az = {&lc, late_deny, late_ops};
        sl_gw_list_groups_filter(m, &az);
    }
    count_rewritten(rq);
    SL_RESPOND(rq, list_groups, m);
}

static void gw_list_groups(sl_req *rq) {
    if (naming_failed(rq)) return;
    gw_send(rq, NULL, lg_answer, NULL);
}

/* ---- OffsetCommit ---- */

/* Every partition of the topics whose error `err[i]` is set (all of them with `all`), in the
 * answer `m`. */
static bool oc_append(sl_req *rq, const int16_t *err, int16_t all, sl_offset_commit_resp *m) {
    const sl_offset_commit_req *q = rq->req;
    int32_t nloc = 0, base = m->topics_count > 0 ? m->topics_count : 0;
    for (int32_t i = 0; i < q->topics_count; i++) nloc += all || err[i];
    sl_offset_commit_resp_topic *out = grow(rq->a, m->topics, base, nloc, sizeof *out);
    if (!out) return false;
    for (int32_t i = 0; i < q->topics_count; i++) {
        int16_t e = all ? all : err[i];
        if (!e) continue;
        const sl_offset_commit_req_topic *t = &q->topics[i];
        sl_offset_commit_resp_topic *o = &out[base++];
        o->name = t->name;
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        if (!SL_RESP_ARRAY(rq, o->partitions, o->partitions_count, np)) return false;
        for (int32_t j = 0; j < np; j++)
            o->partitions[j] =
                (sl_offset_commit_resp_partition){t->partitions[j].partition_index, e};
    }
    m->topics = out;
    m->topics_count = base;
    return true;
}

static void oc_answer(sl_req *rq, void *resp, void *arg) {
    if (!oc_append(rq, arg, 0, resp)) return sl_req_fail(rq, "out of memory");
    count_rewritten(rq);
    SL_RESPOND(rq, offset_commit, (sl_offset_commit_resp *)resp);
}

static void oc_local(sl_req *rq, const int16_t *err, int16_t all) {
    sl_offset_commit_resp m;
    sl_offset_commit_resp_init(&m);
    m.topics_count = 0;
    if (!oc_append(rq, err, all, &m)) return sl_req_fail(rq, "out of memory");
    count_local(rq);
    SL_RESPOND(rq, offset_commit, &m);
}

/* READ on the group (denied: every partition GROUP_AUTHORIZATION_FAILED, nothing forwarded),
 * READ on each topic (denied: stripped, TOPIC_AUTHORIZATION_FAILED). */
static void gw_offset_commit(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_offset_commit_req *q = rq->req;
    int32_t n = q->topics_count > 0 ? q->topics_count : 0;
    int16_t *err = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *err);
    sl_offset_commit_req f = *q;
    f.topics = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.topics);
    if (!err || !f.topics) return sl_req_fail(rq, "out of memory");
    if (!allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, q->group_id, false))
        return oc_local(rq, err, SL_KAFKA_GROUP_AUTHORIZATION_FAILED);
    f.topics_count = 0;
    for (int32_t i = 0; i < n; i++) {
        if (allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, q->topics[i].name, false))
            f.topics[f.topics_count++] = q->topics[i];
        else
            err[i] = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    }
    if (f.topics_count == n) return gw_pass(rq);
    if (f.topics_count == 0) return oc_local(rq, err, 0);
    gw_send(rq, &f, oc_answer, err);
}

/* ---- OffsetDelete ---- */

static bool od_append(sl_req *rq, const int16_t *err, sl_offset_delete_resp *m) {
    const sl_offset_delete_req *q = rq->req;
    int32_t nloc = 0, base = m->topics_count > 0 ? m->topics_count : 0;
    for (int32_t i = 0; i < q->topics_count; i++) nloc += err[i] != 0;
    sl_offset_delete_resp_topic *out = grow(rq->a, m->topics, base, nloc, sizeof *out);
    if (!out) return false;
    for (int32_t i = 0; i < q->topics_count; i++) {
        if (!err[i]) continue;
        const sl_offset_delete_req_topic *t = &q->topics[i];
        sl_offset_delete_resp_topic *o = &out[base++];
        o->name = t->name;
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        if (!SL_RESP_ARRAY(rq, o->partitions, o->partitions_count, np)) return false;
        for (int32_t j = 0; j < np; j++)
            o->partitions[j] =
                (sl_offset_delete_resp_partition){t->partitions[j].partition_index, err[i]};
    }
    m->topics = out;
    m->topics_count = base;
    return true;
}

static void od_answer(sl_req *rq, void *resp, void *arg) {
    sl_offset_delete_resp *m = resp;
    /* A group-level error answers no topics (as the local broker does). */
    if (!m->error_code && !od_append(rq, arg, m)) return sl_req_fail(rq, "out of memory");
    count_rewritten(rq);
    SL_RESPOND(rq, offset_delete, m);
}

/* DELETE on the group (denied: the group-level error, no topics), READ on each topic. */
static void gw_offset_delete(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_offset_delete_req *q = rq->req;
    int32_t n = q->topics_count > 0 ? q->topics_count : 0;
    int16_t *err = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *err);
    sl_offset_delete_req f = *q;
    f.topics = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.topics);
    if (!err || !f.topics) return sl_req_fail(rq, "out of memory");
    sl_offset_delete_resp m;
    sl_offset_delete_resp_init(&m);
    m.topics_count = 0;
    if (!allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_GROUP, q->group_id, false)) {
        m.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        count_local(rq);
        SL_RESPOND(rq, offset_delete, &m);
        return;
    }
    f.topics_count = 0;
    for (int32_t i = 0; i < n; i++) {
        if (allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, q->topics[i].name, false))
            f.topics[f.topics_count++] = q->topics[i];
        else
            err[i] = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    }
    if (f.topics_count == n) return gw_pass(rq);
    if (f.topics_count == 0) {
        if (!od_append(rq, err, &m)) return sl_req_fail(rq, "out of memory");
        count_local(rq);
        SL_RESPOND(rq, offset_delete, &m);
        return;
    }
    gw_send(rq, &f, od_answer, err);
}

/* ---- Transactions ----
 *
 * Kafka's order (KafkaApis): WRITE on the transactional id first (denied:
 * TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request), then the group, then the
 * topics. Nothing denied: the frame goes as received to the transaction (or group) coordinator
 * the client connection addresses. */

/* The transactional id's verdict, then (group not NULL) the group's. */
static int16_t txn_verdict(sl_req *rq, sl_str txn, const sl_str *group) {
    if (!allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, txn, false))
        return SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    if (group && !allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, *group, false))
        return SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    return 0;
}

/* EndTxn, AddOffsetsToTxn: one error for the request, forwarded or answered here. */
#define GW_TXN_ONE(api, GROUP)                                                                     \
    static void gw_##api(sl_req *rq) {                                                             \
        if (naming_failed(rq)) return;                                                             \
        const sl_##api##_req *q = rq->req;                                                         \
        int16_t e = txn_verdict(rq, q->transactional_id, GROUP);                                   \
        if (!e) return gw_pass(rq);                                                                \
        sl_##api##_resp m;                                                                         \
        sl_##api##_resp_init(&m);                                                                  \
        m.error_code = e;                                                                          \
        count_local(rq);                                                                           \
        SL_RESPOND(rq, api, &m);                                                                   \
    }
GW_TXN_ONE(end_txn, NULL)
GW_TXN_ONE(add_offsets_to_txn, &q->group_id)

int sl_gw_add_partitions_to_txn_local(sl_arena *a, const sl_add_partitions_to_txn_req *q,
                                      int16_t txn_err, const sl_gw_authz *az,
                                      sl_add_partitions_to_txn_resp *m) {
    int32_t n = q->topics_count > 0 ? q->topics_count : 0, ndenied = 0;
    int16_t *err = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *err);
    if (!err) return -1;
    for (int32_t i = 0; i < n; i++) {
        err[i] = txn_err ? txn_err : az->deny(az->ctx, q->topics[i].name);
        ndenied += err[i] != 0;
    }
    if (!txn_err && !ndenied) return 1;
    m->results = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *m->results);
    if (!m->results) return -1;
    m->results_count = n;
    for (int32_t i = 0; i < n; i++) {
        const sl_add_partitions_to_txn_req_topic *t = &q->topics[i];
        sl_add_partitions_to_txn_resp_result *o = &m->results[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        o->name = t->name;
        o->results = sl_arena_calloc(a, (size_t)(np ? np : 1), sizeof *o->results);
        if (!o->results) return -1;
        o->results_count = np;
        for (int32_t j = 0; j < np; j++) {
            o->results[j].partition_index = t->partitions[j];
            o->results[j].error_code = err[i] ? err[i] : SL_KAFKA_OPERATION_NOT_ATTEMPTED;
        }
    }
    return 0;
}

/* AddPartitionsToTxn: WRITE on the transactional id, then on each topic; all or nothing. v4+
 * (broker to broker, not advertised here): CLUSTER_ACTION on the cluster, forwarded only when
 * allowed, else answered here as Kafka does (the top-level error, no transactions). */
static void gw_add_partitions_to_txn(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_add_partitions_to_txn_req *q = rq->req;
    if (rq->h.api_version >= 4) {
        if (all_allowed(rq)) return gw_pass(rq);
        sl_add_partitions_to_txn_resp d;
        sl_add_partitions_to_txn_resp_init(&d);
        d.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        count_local(rq);
        SL_RESPOND(rq, add_partitions_to_txn, &d);
        return;
    }
    late_ctx lc = {rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC};
    sl_gw_authz az = {&lc, late_deny, NULL};
    sl_add_partitions_to_txn_resp m;
    sl_add_partitions_to_txn_resp_init(&m);
    int got = sl_gw_add_partitions_to_txn_local(
        rq->a, q, txn_verdict(rq, q->transactional_id, NULL), &az, &m);
    if (got < 0) return sl_req_fail(rq, "out of memory");
    if (got > 0) return gw_pass(rq);
    count_local(rq);
    SL_RESPOND(rq, add_partitions_to_txn, &m);
}

/* TxnOffsetCommit: the transactional id and the group fail every partition (nothing forwarded);
 * topics without READ are stripped and answered TOPIC_AUTHORIZATION_FAILED, merged into the
 * upstream's answer. */
static int16_t toc_topic_verdict(sl_req *rq, const sl_txn_offset_commit_req_topic *t) {
    const sl_txn_offset_commit_req *q = rq->req;
    int16_t e = txn_verdict(rq, q->transactional_id, &q->group_id);
    if (e) return e;
    return allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name, false)
               ? 0
               : SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
}
GW_ITEMS(toc, txn_offset_commit, topics, topics, toc_topic_verdict(rq, it_), {
    int32_t np_ = it_->partitions_count > 0 ? it_->partitions_count : 0;
    o_->name = it_->name;
    if (!SL_RESP_ARRAY(rq, o_->partitions, o_->partitions_count, np_)) return false;
    for (int32_t j = 0; j < np_; j++) {
        o_->partitions[j].partition_index = it_->partitions[j].partition_index;
        o_->partitions[j].error_code = e_;
    }
})

/* Without topics there is nothing to strip: a denial still keeps it from the upstream. */
static void gw_txn_offset_commit(sl_req *rq) {
    const sl_txn_offset_commit_req *q = rq->req;
    if (naming_failed(rq)) return;
    if (q->topics_count > 0 || !txn_verdict(rq, q->transactional_id, &q->group_id))
        return gw_toc(rq);
    sl_txn_offset_commit_resp m;
    sl_txn_offset_commit_resp_init(&m);
    m.topics_count = 0;
    count_local(rq);
    SL_RESPOND(rq, txn_offset_commit, &m);
}

/* ---- DescribeTransactions, ListTransactions ----
 *
 * Operators' views of the transaction coordinator (kafka-transactions.sh describe / list). As
 * Kafka's KafkaApis: DESCRIBE on each transactional id (a denied one is answered here with
 * TRANSACTIONAL_ID_AUTHORIZATION_FAILED and not forwarded), and, quietly, on each topic a
 * described transaction holds partitions of (left out when denied); a listing keeps the ids the
 * client may DESCRIBE. The answers are always decoded: the upstream filtered them for the
 * gateway's identity. */

bool sl_gw_describe_transactions_merge(sl_arena *a, const sl_describe_transactions_req *req,
                                       const sl_gw_authz *txn, const sl_gw_authz *topic,
                                       sl_describe_transactions_resp *m) {
    int32_t n = req->transactional_ids_count > 0 ? req->transactional_ids_count : 0;
    sl_describe_transactions_resp_state *out = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *out);
    if (!out) return false;
    for (int32_t i = 0; i < n; i++) {
        sl_str id = req->transactional_ids[i];
        sl_describe_transactions_resp_state *o = &out[i];
        int16_t err = txn->deny(txn->ctx, id);
        const sl_describe_transactions_resp_state *up = NULL;
        for (int32_t j = 0; !err && j < m->transaction_states_count && !up; j++)
            if (sl_str_eq(m->transaction_states[j].transactional_id, id))
                up = &m->transaction_states[j];
        if (up) {
            *o = *up;
            /* A new array: two asks for one id share the upstream's entry. */
            int32_t nt = up->topics_count > 0 ? up->topics_count : 0;
            o->topics = sl_arena_calloc(a, (size_t)(nt ? nt : 1), sizeof *o->topics);
            if (!o->topics) return false;
            o->topics_count = 0;
            for (int32_t t = 0; t < nt; t++)
                if (!topic->deny(topic->ctx, up->topics[t].topic))
                    o->topics[o->topics_count++] = up->topics[t];
            continue;
        }
        /* As the local broker answers an id it does not describe (sl_h_describe_transactions). */
        sl_describe_transactions_resp_state_init(o);
        o->error_code = err ? err : SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        o->transactional_id = id;
        o->transaction_state = sl_str_c("");
        o->producer_id = -1;
        o->producer_epoch = -1;
        o->transaction_start_time_ms = -1;
        o->topics_count = 0;
    }
    m->transaction_states = out;
    m->transaction_states_count = n;
    return true;
}

static void dt_finish(sl_req *rq, sl_describe_transactions_resp *m) {
    const sl_describe_transactions_req *q = rq->req;
    late_ctx lt = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID};
    late_ctx lp = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC};
    sl_gw_authz txn = {&lt, late_deny, NULL}, topic = {&lp, late_deny, NULL};
    if (!sl_gw_describe_transactions_merge(rq->a, q, &txn, &topic, m))
        return sl_req_fail(rq, "out of memory");
    SL_RESPOND(rq, describe_transactions, m);
}

static void dt_answer(sl_req *rq, void *resp, void *arg) {
    count_rewritten(rq);
    dt_finish(rq, resp);
}

static void gw_describe_transactions(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_describe_transactions_req *q = rq->req;
    int32_t n = q->transactional_ids_count > 0 ? q->transactional_ids_count : 0;
    sl_describe_transactions_req f = *q;
    f.transactional_ids = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *f.transactional_ids);
    if (!f.transactional_ids) return sl_req_fail(rq, "out of memory");
    f.transactional_ids_count = 0;
    for (int32_t i = 0; i < n; i++)
        if (allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, q->transactional_ids[i],
                    false))
            f.transactional_ids[f.transactional_ids_count++] = q->transactional_ids[i];
    if (n > 0 && f.transactional_ids_count == 0) {
        sl_describe_transactions_resp m;
        sl_describe_transactions_resp_init(&m);
        m.transaction_states_count = 0;
        count_local(rq);
        dt_finish(rq, &m);
        return;
    }
    gw_send(rq, f.transactional_ids_count == n ? NULL : &f, dt_answer, NULL);
}

void sl_gw_list_transactions_filter(sl_list_transactions_resp *m, const sl_gw_authz *az) {
    int32_t k = 0;
    for (int32_t i = 0; i < m->transaction_states_count; i++)
        if (!az->deny(az->ctx, m->transaction_states[i].transactional_id))
            m->transaction_states[k++] = m->transaction_states[i];
    if (m->transaction_states_count > 0) m->transaction_states_count = k;
}

static void lt_answer(sl_req *rq, void *resp, void *arg) {
    sl_list_transactions_resp *m = resp;
    late_ctx lc = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID};
    sl_gw_authz az = {&lc, late_deny, NULL};
    sl_gw_list_transactions_filter(m, &az);
    count_rewritten(rq);
    SL_RESPOND(rq, list_transactions, m);
}

static void gw_list_transactions(sl_req *rq) {
    if (naming_failed(rq)) return;
    gw_send(rq, NULL, lt_answer, NULL);
}

/* ---- OffsetFetch ----
 *
 * One group at a time in the v8+ shape (v0-7 requests and answers are copied into it and
 * back; the topic and partition structs have the same fields). Per group: DESCRIBE on it
 * (denied: GROUP_AUTHORIZATION_FAILED, not forwarded); asked for named topics, DESCRIBE on each
 * (denied: stripped, answered per partition with TOPIC_AUTHORIZATION_FAILED and no offset);
 * asked for every topic, the answer's topics the client may not DESCRIBE are left out. */

typedef struct of_group {
    sl_str id;
    const sl_offset_fetch_req_group_topic *topics; /* as asked */
    int32_t ntopics;                               /* -1: every topic */
    int16_t gerr;                                  /* denied group */
    int16_t *terr;                                 /* per asked topic */
    int32_t nkept;                                 /* topics forwarded */
    bool forward;
} of_group;

typedef struct of_ctx {
    of_group *g;
    int32_t n;
} of_ctx;

static bool of_plan(sl_req *rq, of_group *g, sl_offset_fetch_req_group_topic **kept) {
    g->gerr = allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, g->id, false)
                  ? 0
                  : SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    int32_t n = g->ntopics > 0 ? g->ntopics : 0;
    g->terr = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *g->terr);
    *kept = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof **kept);
    if (!g->terr || !*kept) return false;
    g->nkept = 0;
    for (int32_t i = 0; !g->gerr && i < n; i++) {
        if (allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, g->topics[i].name, false))
            (*kept)[g->nkept++] = g->topics[i];
        else
            g->terr[i] = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    }
    /* Nothing left to ask (every named topic denied): answered here. */
    g->forward = !g->gerr && (g->ntopics <= 0 || g->nkept > 0);
    return true;
}

/* The client's entry for group `g` from the upstream's (`up`, NULL when not forwarded). */
static bool of_merge(sl_req *rq, const of_group *g, const sl_offset_fetch_resp_group *up,
                     sl_offset_fetch_resp_group *o) {
    sl_offset_fetch_resp_group_init(o);
    o->group_id = g->id;
    o->topics_count = 0;
    if (g->gerr) {
        o->error_code = g->gerr;
        /* v0-1 have no group-level error: Kafka puts it on every partition asked for. */
        if (rq->h.api_version >= 2 || g->ntopics <= 0) return true;
    }
    if (up) *o = *up;
    if (g->ntopics < 0) {
        int32_t k = 0;
        for (int32_t i = 0; i < o->topics_count; i++)
            if (allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, o->topics[i].name, true))
                o->topics[k++] = o->topics[i];
        if (o->topics_count > 0) o->topics_count = k;
        return true;
    }
    int32_t base = o->topics_count > 0 ? o->topics_count : 0, nloc = 0;
    for (int32_t i = 0; i < g->ntopics; i++) nloc += g->gerr || g->terr[i];
    sl_offset_fetch_resp_group_topic *out = grow(rq->a, o->topics, base, nloc, sizeof *out);
    if (!out) return false;
    for (int32_t i = 0; i < g->ntopics; i++) {
        int16_t e = g->gerr ? g->gerr : g->terr[i];
        if (!e) continue;
        const sl_offset_fetch_req_group_topic *t = &g->topics[i];
        sl_offset_fetch_resp_group_topic *d = &out[base++];
        d->name = t->name;
        int32_t np = t->partition_indexes_count > 0 ? t->partition_indexes_count : 0;
        if (!SL_RESP_ARRAY(rq, d->partitions, d->partitions_count, np)) return false;
        for (int32_t j = 0; j < np; j++) {
            sl_offset_fetch_resp_group_partition *p = &d->partitions[j];
            sl_offset_fetch_resp_group_partition_init(p);
            p->partition_index = t->partition_indexes[j];
            p->committed_offset = -1; /* Kafka's "no committed offset" */
            p->committed_leader_epoch = -1;
            p->metadata = sl_str_c("");
            p->error_code = e;
        }
    }
    o->topics = out;
    o->topics_count = base;
    return true;
}

/* v0-7: the single group's answer in the old shape. */
static bool of_to_old(sl_req *rq, const sl_offset_fetch_resp_group *g, sl_offset_fetch_resp *m) {
    int16_t v = rq->h.api_version;
    int32_t nt = g->topics_count > 0 ? g->topics_count : 0;
    m->error_code = g->error_code;
    if (!SL_RESP_ARRAY(rq, m->topics, m->topics_count, nt)) return false;
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_fetch_resp_topic *t = &m->topics[i];
        t->name = g->topics[i].name;
        int32_t np = g->topics[i].partitions_count > 0 ? g->topics[i].partitions_count : 0;
        if (!SL_RESP_ARRAY(rq, t->partitions, t->partitions_count, np)) return false;
        for (int32_t j = 0; j < np; j++) {
            const sl_offset_fetch_resp_group_partition *s = &g->topics[i].partitions[j];
            t->partitions[j] = (sl_offset_fetch_resp_partition){
                s->partition_index, s->committed_offset, s->committed_leader_epoch, s->metadata,
                /* v0-1 have no top-level error: the group's goes on every partition */
                v < 2 && g->error_code ? g->error_code : s->error_code};
        }
    }
    return true;
}

/* v0-7: the upstream's answer as the v8 group entry. */
static bool of_from_old(sl_req *rq, const sl_offset_fetch_resp *m, sl_offset_fetch_resp_group *g) {
    sl_offset_fetch_resp_group_init(g);
    g->error_code = m->error_code;
    int32_t nt = m->topics_count > 0 ? m->topics_count : 0;
    if (!SL_RESP_ARRAY(rq, g->topics, g->topics_count, nt)) return false;
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_fetch_resp_group_topic *t = &g->topics[i];
        t->name = m->topics[i].name;
        int32_t np = m->topics[i].partitions_count > 0 ? m->topics[i].partitions_count : 0;
        if (!SL_RESP_ARRAY(rq, t->partitions, t->partitions_count, np)) return false;
        for (int32_t j = 0; j < np; j++) {
            const sl_offset_fetch_resp_partition *s = &m->topics[i].partitions[j];
            t->partitions[j] = (sl_offset_fetch_resp_group_partition){
                s->partition_index, s->committed_offset, s->committed_leader_epoch, s->metadata,
                s->error_code};
        }
    }
    return true;
}

/* Builds the client's answer from the upstream's (`m`: NULL when nothing was forwarded). */
static void of_finish(sl_req *rq, sl_offset_fetch_resp *m, of_ctx *c, bool forwarded) {
    sl_offset_fetch_resp local;
    if (!m) {
        sl_offset_fetch_resp_init(&local);
        m = &local;
    }
    if (rq->h.api_version < 8) {
        sl_offset_fetch_resp_group up, o;
        if ((forwarded && !of_from_old(rq, m, &up)) ||
            !of_merge(rq, &c->g[0], forwarded ? &up : NULL, &o) || !of_to_old(rq, &o, m))
            return sl_req_fail(rq, "out of memory");
    } else {
        sl_offset_fetch_resp_group *out =
            sl_arena_calloc(rq->a, (size_t)(c->n ? c->n : 1), sizeof *out);
        if (!out) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < c->n; i++) {
            const sl_offset_fetch_resp_group *up = NULL;
            for (int32_t j = 0; c->g[i].forward && j < m->groups_count && !up; j++)
                if (sl_str_eq(m->groups[j].group_id, c->g[i].id)) up = &m->groups[j];
            if (c->g[i].forward && !up) {
                /* Not answered for: retriable. */
                sl_offset_fetch_resp_group_init(&out[i]);
                out[i].group_id = c->g[i].id;
                out[i].topics_count = 0;
                out[i].error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
                continue;
            }
            if (!of_merge(rq, &c->g[i], up, &out[i])) return sl_req_fail(rq, "out of memory");
        }
        m->groups = out;
        m->groups_count = c->n;
    }
    if (forwarded)
        count_rewritten(rq);
    else
        count_local(rq);
    SL_RESPOND(rq, offset_fetch, m);
}

static void of_answer(sl_req *rq, void *resp, void *arg) { of_finish(rq, resp, arg, true); }

static void gw_offset_fetch(sl_req *rq) {
    if (naming_failed(rq)) return;
    const sl_offset_fetch_req *q = rq->req;
    int16_t v = rq->h.api_version;
    of_ctx *c = sl_arena_calloc(rq->a, 1, sizeof *c);
    if (!c) return sl_req_fail(rq, "out of memory");
    sl_offset_fetch_req f = *q;
    bool changed = false, any = false;
    if (v < 8) {
        /* The old topic struct has the group topic's fields: copied into that shape. */
        int32_t nt = q->topics_count;
        sl_offset_fetch_req_group_topic *ts =
            sl_arena_calloc(rq->a, (size_t)(nt > 0 ? nt : 1), sizeof *ts);
        c->g = sl_arena_calloc(rq->a, 1, sizeof *c->g);
        if (!ts || !c->g) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < nt; i++)
            ts[i] =
                (sl_offset_fetch_req_group_topic){q->topics[i].name, q->topics[i].partition_indexes,
                                                  q->topics[i].partition_indexes_count};
        c->n = 1;
        c->g[0] = (of_group){.id = q->group_id, .topics = ts, .ntopics = nt};
        sl_offset_fetch_req_group_topic *kept;
        if (!of_plan(rq, &c->g[0], &kept)) return sl_req_fail(rq, "out of memory");
        any = c->g[0].forward;
        if (nt > 0 && c->g[0].nkept != nt) {
            changed = true;
            f.topics = sl_arena_calloc(rq->a, (size_t)(c->g[0].nkept ? c->g[0].nkept : 1),
                                       sizeof *f.topics);
            if (!f.topics) return sl_req_fail(rq, "out of memory");
            f.topics_count = c->g[0].nkept;
            for (int32_t i = 0; i < c->g[0].nkept; i++)
                f.topics[i] = (sl_offset_fetch_req_topic){kept[i].name, kept[i].partition_indexes,
                                                          kept[i].partition_indexes_count};
        }
    } else {
        int32_t ng = q->groups_count > 0 ? q->groups_count : 0;
        c->g = sl_arena_calloc(rq->a, (size_t)(ng ? ng : 1), sizeof *c->g);
        f.groups = sl_arena_calloc(rq->a, (size_t)(ng ? ng : 1), sizeof *f.groups);
        if (!c->g || !f.groups) return sl_req_fail(rq, "out of memory");
        c->n = ng;
        f.groups_count = 0;
        for (int32_t i = 0; i < ng; i++) {
            const sl_offset_fetch_req_group *rg = &q->groups[i];
            c->g[i] =
                (of_group){.id = rg->group_id, .topics = rg->topics, .ntopics = rg->topics_count};
            sl_offset_fetch_req_group_topic *kept;
            if (!of_plan(rq, &c->g[i], &kept)) return sl_req_fail(rq, "out of memory");
            if (!c->g[i].forward) {
                changed = true;
                continue;
            }
            any = true;
            sl_offset_fetch_req_group *fg = &f.groups[f.groups_count++];
            *fg = *rg;
            if (rg->topics_count > 0 && c->g[i].nkept != rg->topics_count) {
                changed = true;
                fg->topics = kept;
                fg->topics_count = c->g[i].nkept;
            }
        }
    }
    if (!any) return of_finish(rq, NULL, c, false);
    gw_send(rq, changed ? &f : NULL, of_answer, c);
}

/* ---- the table ---- */

sl_gw_exec_fn sl_gw_exec(int16_t key) {
    switch (key) {
    /* answered here, on the gateway's own stores */
    case SL_API_API_VERSIONS:
        return gw_api_versions;
    case SL_API_SASL_HANDSHAKE:
        return sl_h_sasl_handshake;
    case SL_API_SASL_AUTHENTICATE:
        return sl_h_sasl_authenticate;
    case SL_API_DESCRIBE_ACLS:
        return sl_h_describe_acls;
    case SL_API_CREATE_ACLS:
        return sl_h_create_acls;
    case SL_API_DELETE_ACLS:
        return sl_h_delete_acls;
    case SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS:
        return sl_h_describe_user_scram_credentials;
    case SL_API_ALTER_USER_SCRAM_CREDENTIALS:
        return sl_h_alter_user_scram_credentials;
    /* the data path (sl_gw_data.c) */
    case SL_API_PRODUCE:
        return sl_gw_produce;
    case SL_API_FETCH:
        return sl_gw_fetch;
    case SL_API_LIST_OFFSETS:
        return sl_gw_list_offsets;
    case SL_API_OFFSET_FOR_LEADER_EPOCH:
        return sl_gw_offset_for_leader_epoch;
    case SL_API_DELETE_RECORDS:
        return sl_gw_delete_records;
    /* forwarded, answers rewritten */
    case SL_API_METADATA:
        return gw_metadata;
    case SL_API_FIND_COORDINATOR:
        return gw_find_coordinator;
    case SL_API_DESCRIBE_CLUSTER:
        return gw_describe_cluster;
    case SL_API_LIST_GROUPS:
        return gw_list_groups;
    case SL_API_LIST_TRANSACTIONS:
        return gw_list_transactions;
    case SL_API_DESCRIBE_GROUPS:
        return gw_describe_groups;
    /* one resource: forwarded or denied here */
    case SL_API_JOIN_GROUP:
        return gw_join_group;
    case SL_API_SYNC_GROUP:
        return gw_sync_group;
    case SL_API_HEARTBEAT:
        return gw_heartbeat;
    case SL_API_LEAVE_GROUP:
        return gw_leave_group;
    case SL_API_INIT_PRODUCER_ID:
        return gw_init_producer_id;
    /* many resources: the allowed ones forwarded, the denials merged */
    case SL_API_OFFSET_COMMIT:
        return gw_offset_commit;
    case SL_API_OFFSET_FETCH:
        return gw_offset_fetch;
    case SL_API_OFFSET_DELETE:
        return gw_offset_delete;
    case SL_API_DELETE_GROUPS:
        return gw_delete_groups;
    case SL_API_CREATE_TOPICS:
        return gw_create_topics;
    case SL_API_DELETE_TOPICS:
        return gw_delete_topics;
    case SL_API_CREATE_PARTITIONS:
        return gw_create_partitions;
    case SL_API_DESCRIBE_CONFIGS:
        return gw_describe_configs;
    case SL_API_ALTER_CONFIGS:
        return gw_alter_configs;
    case SL_API_INCREMENTAL_ALTER_CONFIGS:
        return gw_incremental_alter_configs;
    case SL_API_DESCRIBE_PRODUCERS:
        return gw_describe_producers;
    case SL_API_DESCRIBE_TRANSACTIONS:
        return gw_describe_transactions;
    /* transactions: denied here, forwarded otherwise */
    case SL_API_END_TXN:
        return gw_end_txn;
    case SL_API_ADD_OFFSETS_TO_TXN:
        return gw_add_offsets_to_txn;
    case SL_API_ADD_PARTITIONS_TO_TXN:
        return gw_add_partitions_to_txn;
    case SL_API_TXN_OFFSET_COMMIT:
        return gw_txn_offset_commit;
    /* no descriptor, so never reached: inter-broker and controller APIs */
    default:
        return NULL;
    }
}
