/* ApiVersions and Metadata: what a client asks before anything else. Topics come from the
 * metadata seam (pipeline/sl_backend.h); brokers, endpoints and node ids are the serving
 * process's own (one node leads every partition). */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

/* Kafka's AclOperation bit positions, for authorized-operations bitfields. */
enum {
    OP_READ = 3,
    OP_WRITE,
    OP_CREATE,
    OP_DELETE,
    OP_ALTER,
    OP_DESCRIBE,
    OP_CLUSTER_ACTION,
    OP_DESCRIBE_CONFIGS,
    OP_ALTER_CONFIGS,
    OP_IDEMPOTENT_WRITE
};

/* The APIs advertised are the descriptors the local broker executes, each with its protocol
 * definition's version range: what the codec accepts (test_proto.c checks it). */
void sl_h_api_versions(sl_req *rq) {
    sl_api_versions_resp resp;
    sl_api_versions_resp_init(&resp);
    const sl_api_info *self = sl_api_lookup(SL_API_API_VERSIONS);
    if (rq->h.api_version > self->max_version || rq->h.api_version < 0) {
        /* Answer in v0 so any client can read the supported range and retry lower. */
        resp.error_code = SL_KAFKA_UNSUPPORTED_VERSION;
        rq->h.api_version = 0;
    } else {
        sl_api_versions_req req;
        if (sl_api_versions_req_decode(&rq->body, rq->a, rq->h.api_version, &req)) {
            resp.error_code = SL_KAFKA_INVALID_REQUEST;
        }
    }
    int n = 0;
    while (sl_api_desc_at(n)) n++;
    resp.api_keys = sl_arena_calloc(rq->a, (size_t)n, sizeof *resp.api_keys);
    if (!resp.api_keys) return sl_req_fail(rq, "out of memory");
    resp.api_keys_count = 0;
    for (int i = 0; i < n; i++) {
        const sl_api_desc *d = sl_api_desc_at(i);
        if (!sl_broker_exec(d->key)) continue;
        const sl_api_info *in = sl_api_desc_info(d);
        sl_api_versions_resp_api_key *k = &resp.api_keys[resp.api_keys_count++];
        k->api_key = d->key;
        k->min_version = in->min_version;
        k->max_version = in->max_version;
    }
    SL_RESPOND(rq, api_versions, &resp);
}

/* The advertised endpoint for the listener the request came in on. */
static const sl_listener_spec *endpoint_for(sl_req *rq) {
    const char *ln = rq->conn ? sl_conn_listener(rq->conn) : NULL;
    for (int i = 0; ln && i < rq->b->nadv; i++)
        if (!strcmp(rq->b->adv[i].name, ln)) return &rq->b->adv[i];
    return &rq->b->adv[0];
}

/* The response is encoded before the handler returns, so the backend's views do not need
 * copying. */
static bool fill_topic(sl_req *rq, sl_metadata_resp_topic *out, const sl_topic_desc *t,
                       bool want_ops) {
    int32_t node = rq->b->cfg.node_id;
    sl_metadata_resp_topic_init(out);
    out->name = t->name;
    out->topic_id = t->id;
    out->topic_authorized_operations =
        want_ops ? sl_req_ops(rq, SL_ACL_RES_TOPIC, t->name) : INT32_MIN;
    out->partitions = sl_arena_calloc(rq->a, (size_t)t->partitions, sizeof *out->partitions);
    int32_t *one = sl_arena_alloc(rq->a, sizeof *one);
    if (!out->partitions || !one) return false;
    *one = node;
    out->partitions_count = t->partitions;
    for (int32_t i = 0; i < t->partitions; i++) {
        sl_metadata_resp_partition *p = &out->partitions[i];
        sl_metadata_resp_partition_init(p);
        p->partition_index = i;
        p->leader_id = node;
        p->leader_epoch = 0;
        p->replica_nodes = one;
        p->replica_nodes_count = 1;
        p->isr_nodes = one;
        p->isr_nodes_count = 1;
    }
    return true;
}

static void fill_missing(sl_metadata_resp_topic *out, sl_str name, int16_t err) {
    sl_metadata_resp_topic_init(out);
    out->error_code = err;
    out->name = name;
}

/* Every topic the caller may DESCRIBE (a first pass only counts them all). */
typedef struct all_ctx {
    sl_req *rq;
    sl_metadata_resp *resp;
    int32_t n;
    bool counting, want_ops, oom;
} all_ctx;

static void all_one(void *arg, const sl_topic_desc *t) {
    all_ctx *c = arg;
    if (c->counting) {
        c->n++;
        return;
    }
    if (c->oom || c->resp->topics_count >= c->n) return;
    /* The others are not mentioned at all. */
    if (!sl_req_allowed(c->rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, t->name)) return;
    if (!fill_topic(c->rq, &c->resp->topics[c->resp->topics_count++], t, c->want_ops))
        c->oom = true;
}

void sl_h_metadata(sl_req *rq) {
    sl_metadata_req req = *(const sl_metadata_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_broker *b = rq->b;
    const sl_topics_meta *M = &b->meta;
    sl_metadata_resp resp;
    sl_metadata_resp_init(&resp);
    const sl_listener_spec *ep = endpoint_for(rq);
    resp.brokers = sl_arena_calloc(rq->a, 1, sizeof *resp.brokers);
    if (!resp.brokers) return sl_req_fail(rq, "out of memory");
    resp.brokers_count = 1;
    sl_metadata_resp_broker_init(&resp.brokers[0]);
    resp.brokers[0].node_id = b->cfg.node_id;
    resp.brokers[0].host = sl_str_c(ep->host);
    resp.brokers[0].port = ep->port;
    resp.cluster_id = sl_str_c(sl_meta_cluster_id(M));
    resp.controller_id = b->cfg.node_id;
    bool want_ops = v >= 8 && req.include_topic_authorized_operations;
    if (v >= 8 && v <= 10 && req.include_cluster_authorized_operations)
        resp.cluster_authorized_operations =
            sl_req_ops(rq, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    /* v0: an empty list means all topics; v1+: null means all, empty means none. */
    bool all = req.topics_count < 0 || (v == 0 && req.topics_count == 0);
    if (all) {
        all_ctx c = {rq, &resp, 0, true, want_ops, false};
        sl_meta_each_topic(M, all_one, &c);
        resp.topics = sl_arena_calloc(rq->a, (size_t)(c.n ? c.n : 1), sizeof *resp.topics);
        if (!resp.topics) return sl_req_fail(rq, "out of memory");
        resp.topics_count = 0;
        c.counting = false;
        sl_meta_each_topic(M, all_one, &c);
        if (c.oom) return sl_req_fail(rq, "out of memory");
    } else {
        resp.topics = sl_arena_calloc(rq->a, (size_t)(req.topics_count ? req.topics_count : 1),
                                      sizeof *resp.topics);
        if (!resp.topics) return sl_req_fail(rq, "out of memory");
        resp.topics_count = req.topics_count;
        bool allow_create = v < 4 || req.allow_auto_topic_creation;
        for (int32_t i = 0; i < req.topics_count; i++) {
            sl_metadata_req_topic *rt = &req.topics[i];
            sl_metadata_resp_topic *out = &resp.topics[i];
            sl_topic_desc t;
            if (rt->name.len < 0) {
                if (sl_meta_describe_topic(M, SL_STR_NULL, &rt->topic_id, &t)) {
                    fill_missing(out, SL_STR_NULL, SL_KAFKA_UNKNOWN_TOPIC_ID);
                    out->topic_id = rt->topic_id;
                    continue;
                }
                if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, t.name)) {
                    fill_missing(out, SL_STR_NULL, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
                    out->topic_id = rt->topic_id;
                    continue;
                }
            } else {
                /* DESCRIBE first, as Kafka: a denied caller cannot tell whether it exists. */
                if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, rt->name)) {
                    fill_missing(out, rt->name, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
                    continue;
                }
                bool found = sl_meta_describe_topic(M, rt->name, NULL, &t) == 0;
                /* Kafka's topic name rules, whatever the backend. */
                if (!found && !sl_topic_name_valid(rt->name)) {
                    fill_missing(out, rt->name, SL_KAFKA_INVALID_TOPIC_EXCEPTION);
                    continue;
                }
                bool auto_create = sl_meta_auto_create_enabled(M);
                /* Auto-creation needs CREATE on the cluster or on the topic. */
                if (!found && allow_create && auto_create &&
                    !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER,
                                    sl_str_c(SL_ACL_CLUSTER_NAME)) &&
                    !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, rt->name)) {
                    fill_missing(out, rt->name, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
                    continue;
                }
                if (!found && allow_create && auto_create)
                    found = sl_meta_auto_create(M, rt->name, &t) == 0;
                if (!found) {
                    fill_missing(out, rt->name, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
                    continue;
                }
            }
            if (!fill_topic(rq, out, &t, want_ops)) return sl_req_fail(rq, "out of memory");
        }
    }
    SL_RESPOND(rq, metadata, &resp);
}
