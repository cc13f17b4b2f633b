/* Topic administration: CreateTopics, DeleteTopics, CreatePartitions over the backend's topic
 * administration (sl_topic_admin, pipeline/sl_backend.h). The handlers keep the request's
 * semantics: authorization, duplicates in one request, replica assignments against the request
 * and the serving node, response shapes; the backend validates and changes its topics. */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

/* An administrative request whose topics the backend completes asynchronously: it is answered
 * when the last of them completes. Each pending topic holds the request, so a closed connection
 * frees nothing a completion touches. */
typedef struct admin_op {
    sl_req *rq;
    void *resp; /* the API's response struct, in the arena */
    void (*finish)(struct admin_op *op);
    int outstanding;
    bool queued_all;
} admin_op;

/* One topic of an admin_op handed to the backend. */
typedef struct admin_item {
    admin_op *op;
    void *out; /* this topic's entry in the response */
    /* CreateTopics: the request's own refusal (replica assignments), answered unless the
     * backend refuses the topic for a reason checked before it (backend_first) */
    int16_t refused;
    bool refused_after_configs;
    bool validate_only;
} admin_item;

static admin_op *admin_op_new(sl_req *rq, void *resp, void (*finish)(admin_op *)) {
    admin_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (op) *op = (admin_op){.rq = rq, .resp = resp, .finish = finish};
    return op;
}

/* A topic about to be handed to the backend: counted and holding the request first, since its
 * completion may run before the backend's call returns. */
static admin_item *admin_item_post(admin_op *op, void *out) {
    admin_item *it = sl_arena_alloc(op->rq->a, sizeof *it);
    if (!it) return NULL;
    *it = (admin_item){.op = op, .out = out};
    op->outstanding++;
    sl_req_hold(op->rq);
    return it;
}

static void admin_item_done(admin_item *it) {
    admin_op *op = it->op;
    sl_req *rq = op->rq;
    if (--op->outstanding == 0 && op->queued_all && !sl_req_finished(rq)) op->finish(op);
    sl_req_release(rq);
}

/* Every topic is answered or posted: answers now unless some are still pending. */
static void admin_op_queued(admin_op *op) {
    op->queued_all = true;
    if (op->outstanding == 0) op->finish(op);
}

static void create_finish(admin_op *op) {
    SL_RESPOND(op->rq, create_topics, (sl_create_topics_resp *)op->resp);
}

/* Whether the backend's refusal `r` comes from a check made before the request's own one (the
 * order a one-broker cluster answers in: name, existence, replication factor, partitions and
 * assignments together, configs, then each assignment). An existing topic has a message; the
 * registry's reservation of a name in flight, checked last, has none. */
static bool backend_first(const sl_topic_created *r, bool refused_after_configs) {
    switch (r->error) {
    case SL_KAFKA_INVALID_TOPIC_EXCEPTION:
    case SL_KAFKA_INVALID_REPLICATION_FACTOR:
        return true;
    case SL_KAFKA_TOPIC_ALREADY_EXISTS:
        return r->message.len >= 0;
    case SL_KAFKA_INVALID_CONFIG:
        return refused_after_configs;
    default:
        return false;
    }
}

static void topic_created(void *ctx, const sl_topic_created *r) {
    admin_item *it = ctx;
    sl_req *rq = it->op->rq;
    sl_create_topics_resp_topic *o = it->out;
    if (it->refused && !backend_first(r, it->refused_after_configs)) {
        o->error_code = it->refused;
    } else if (r->error) {
        o->error_code = r->error;
        o->error_message = r->message;
    } else {
        o->num_partitions = r->num_partitions;
        o->replication_factor = r->replication_factor;
        o->topic_id = r->id;
        if (it->validate_only) {
            o->configs_count = 0;
        } else if (r->configs) {
            o->configs = sl_arena_calloc(rq->a, (size_t)r->nconfigs, sizeof *o->configs);
            if (o->configs) o->configs_count = r->nconfigs;
            for (int32_t k = 0; o->configs && k < r->nconfigs; k++) {
                o->configs[k].name = r->configs[k].name;
                o->configs[k].value = r->configs[k].value;
                o->configs[k].read_only = false;
                o->configs[k].config_source =
                    r->configs[k].is_default ? SL_CONFIG_SRC_DEFAULT : SL_CONFIG_SRC_DYNAMIC_TOPIC;
                o->configs[k].is_sensitive = false;
            }
        }
    }
    admin_item_done(it);
}

/* The request's own refusal of a topic's replica assignments (0: none): they replace the
 * partition count, and a single node holds every partition. *np becomes their count. */
static int16_t check_assignments(const sl_create_topics_req_topic *rt, int32_t node_id, int32_t *np,
                                 bool *after_configs) {
    *after_configs = false;
    if (rt->assignments_count <= 0) return 0;
    if (*np != -1) return SL_KAFKA_INVALID_REQUEST;
    *after_configs = true;
    *np = rt->assignments_count;
    for (int32_t k = 0; k < rt->assignments_count; k++) {
        const sl_create_topics_req_assignment *as = &rt->assignments[k];
        if (as->partition_index != k || as->broker_ids_count != 1 || as->broker_ids[0] != node_id)
            return SL_KAFKA_INVALID_REPLICA_ASSIGNMENT;
    }
    return 0;
}

void sl_h_create_topics(sl_req *rq) {
    sl_create_topics_req req = *(const sl_create_topics_req *)rq->req;
    sl_create_topics_resp *rp = sl_arena_calloc(rq->a, 1, sizeof *rp);
    admin_op *op = rp ? admin_op_new(rq, rp, create_finish) : NULL;
    if (!op) return sl_req_fail(rq, "out of memory");
    sl_create_topics_resp_init(rp);
    int32_t nt = req.topics_count > 0 ? req.topics_count : 0;
    if (!SL_RESP_ARRAY(rq, rp->topics, rp->topics_count, nt))
        return sl_req_fail(rq, "out of memory");
    /* Kafka: CREATE on the cluster covers every topic; otherwise CREATE on each topic. */
    bool cluster_create =
        sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    for (int32_t i = 0; i < nt; i++) {
        sl_create_topics_req_topic *rt = &req.topics[i];
        sl_create_topics_resp_topic *o = &rp->topics[i];
        sl_create_topics_resp_topic_init(o);
        o->name = rt->name;
        /* Null, as Kafka answers until there is something to say; the schema defaults are empty. */
        o->error_message = SL_STR_NULL;
        o->configs_count = -1;
        bool dup = false;
        for (int32_t k = 0; k < i; k++)
            if (sl_str_eq(req.topics[k].name, rt->name)) dup = true;
        if (dup) {
            o->error_code = SL_KAFKA_INVALID_REQUEST;
            o->error_message =
                sl_str_printf(rq->a, "topic %.*s appears more than once", rt->name.len, rt->name.p);
            continue;
        }
        if (!cluster_create && !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, rt->name)) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            o->error_message = sl_str_c("Authorization failed.");
            continue;
        }
        sl_new_topic t = {.name = rt->name,
                          .num_partitions = rt->num_partitions,
                          .replication_factor = rt->replication_factor,
                          .nconfigs = rt->configs_count > 0 ? rt->configs_count : 0};
        sl_config_entry *cfg = NULL;
        if (t.nconfigs && !(cfg = sl_arena_calloc(rq->a, (size_t)t.nconfigs, sizeof *cfg)))
            return sl_req_fail(rq, "out of memory");
        for (int32_t k = 0; k < t.nconfigs; k++)
            cfg[k] = (sl_config_entry){.name = rt->configs[k].name, .value = rt->configs[k].value};
        t.configs = cfg;
        bool after_configs;
        int16_t refused =
            check_assignments(rt, rq->b->cfg.node_id, &t.num_partitions, &after_configs);
        admin_item *it = admin_item_post(op, o);
        if (!it) return sl_req_fail(rq, "out of memory");
        it->refused = refused;
        it->refused_after_configs = after_configs;
        /* A refused topic is only validated: the backend may refuse it for an earlier reason. */
        it->validate_only = req.validate_only || refused;
        sl_admin_create_topic(&rq->b->admin, &t, it->validate_only, rq->a, topic_created, it);
    }
    admin_op_queued(op);
}

static void delete_finish(admin_op *op) {
    SL_RESPOND(op->rq, delete_topics, (sl_delete_topics_resp *)op->resp);
}

static void topic_deleted(void *ctx, int16_t err, sl_str message) {
    admin_item *it = ctx;
    sl_delete_topics_resp_result *o = it->out;
    o->error_code = err;
    if (message.len >= 0) o->error_message = message;
    admin_item_done(it);
}

void sl_h_delete_topics(sl_req *rq) {
    sl_delete_topics_req req = *(const sl_delete_topics_req *)rq->req;
    int16_t v = rq->h.api_version;
    const sl_topic_admin *ad = &rq->b->admin;
    sl_delete_topics_resp *rp = sl_arena_calloc(rq->a, 1, sizeof *rp);
    admin_op *op = rp ? admin_op_new(rq, rp, delete_finish) : NULL;
    if (!op) return sl_req_fail(rq, "out of memory");
    sl_delete_topics_resp_init(rp);
    int32_t n = v >= 6 ? req.topics_count : req.topic_names_count;
    if (n < 0) n = 0;
    if (!SL_RESP_ARRAY(rq, rp->responses, rp->responses_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_delete_topics_resp_result *o = &rp->responses[i];
        sl_delete_topics_resp_result_init(o);
        sl_str name;
        sl_uuid id;
        if (v >= 6) {
            sl_delete_topics_req_topic *rt = &req.topics[i];
            o->name = rt->name;
            o->topic_id = rt->topic_id;
            const sl_uuid *by_id = rt->name.len >= 0 ? NULL : &rt->topic_id;
            if ((o->error_code = sl_admin_resolve(ad, rt->name, by_id, rq->a, &name, &id)))
                continue;
            o->name = name;
            o->topic_id = id;
        } else {
            o->name = req.topic_names[i];
            if (!sl_req_allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, o->name)) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            if ((o->error_code = sl_admin_resolve(ad, o->name, NULL, rq->a, &name, &id))) continue;
        }
        if (!sl_req_allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, name)) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            continue;
        }
        admin_item *it = admin_item_post(op, o);
        if (!it) {
            o->error_code = SL_KAFKA_UNKNOWN_SERVER_ERROR;
            continue;
        }
        sl_admin_delete_topic(ad, name, rq->a, topic_deleted, it);
    }
    admin_op_queued(op);
}

static void partitions_finish(admin_op *op) {
    SL_RESPOND(op->rq, create_partitions, (sl_create_partitions_resp *)op->resp);
}

static void partitions_added(void *ctx, int16_t err, sl_str message) {
    admin_item *it = ctx;
    sl_create_partitions_resp_result *o = it->out;
    o->error_code = err;
    if (message.len >= 0) o->error_message = message;
    admin_item_done(it);
}

void sl_h_create_partitions(sl_req *rq) {
    sl_create_partitions_req req = *(const sl_create_partitions_req *)rq->req;
    sl_create_partitions_resp *rp = sl_arena_calloc(rq->a, 1, sizeof *rp);
    admin_op *op = rp ? admin_op_new(rq, rp, partitions_finish) : NULL;
    if (!op) return sl_req_fail(rq, "out of memory");
    sl_create_partitions_resp_init(rp);
    int32_t nt = req.topics_count > 0 ? req.topics_count : 0;
    if (!SL_RESP_ARRAY(rq, rp->results, rp->results_count, nt))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < nt; i++) {
        sl_create_partitions_req_topic *rt = &req.topics[i];
        sl_create_partitions_resp_result *o = &rp->results[i];
        sl_create_partitions_resp_result_init(o);
        o->name = rt->name;
        if (!sl_req_allowed(rq, SL_ACL_OP_ALTER, SL_ACL_RES_TOPIC, rt->name)) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            continue;
        }
        admin_item *it = admin_item_post(op, o);
        if (!it) return sl_req_fail(rq, "out of memory");
        sl_admin_add_partitions(&rq->b->admin, rt->name, rt->count,
                                rt->assignments_count > 0 ? rt->assignments_count : 0,
                                req.validate_only, rq->a, partitions_added, it);
    }
    admin_op_queued(op);
}
