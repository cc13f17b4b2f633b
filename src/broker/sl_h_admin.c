/* Topic administration: CreateTopics, DeleteTopics, CreatePartitions. A single node answers
 * replication questions the way a one-broker Kafka cluster does. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

/* Arena-owned formatted message for error_message fields. */
__attribute__((format(printf, 2, 3))) static sl_str msgf(sl_req *rq, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0) return SL_STR_NULL;
    if ((size_t)len >= sizeof buf) len = sizeof buf - 1;
    char *p = sl_arena_dup(rq->a, buf, (size_t)len);
    return p ? (sl_str){p, len} : SL_STR_NULL;
}

static sl_str arena_name(sl_req *rq, const char *s) {
    size_t n = strlen(s);
    char *p = sl_arena_dup(rq->a, s, n);
    return p ? (sl_str){p, (int32_t)n} : SL_STR_NULL;
}

/* Validates requested configs into `tc`; returns a Kafka error with *bad naming the culprit. */
static int16_t parse_configs(const sl_create_topics_req_topic *rt, sl_topic_config *tc,
                             sl_str *bad) {
    memset(tc, 0, sizeof *tc);
    for (int32_t k = 0; k < rt->configs_count; k++) {
        const sl_create_topics_req_config *c = &rt->configs[k];
        int id = sl_tcfg_lookup(c->name);
        *bad = c->name;
        if (id < 0 || c->value.len < 0) return SL_KAFKA_INVALID_CONFIG;
        if (sl_tcfg_parse(id, c->value, &tc->v[id])) return SL_KAFKA_INVALID_CONFIG;
        tc->set_mask |= 1u << id;
    }
    return 0;
}

static void fill_created_configs(sl_req *rq, sl_create_topics_resp_topic *o, sl_topic *t) {
    o->configs = sl_arena_calloc(rq->a, SL_TCFG__COUNT, sizeof *o->configs);
    if (!o->configs) return;
    o->configs_count = SL_TCFG__COUNT;
    for (int id = 0; id < SL_TCFG__COUNT; id++) {
        char buf[64];
        bool set = sl_tcfg_effective(rq->b->topics, t, id, buf, sizeof buf);
        o->configs[id].name = sl_str_c(sl_tcfg_name(id));
        o->configs[id].value = arena_name(rq, buf);
        o->configs[id].read_only = false;
        o->configs[id].config_source = set ? 1 /* DYNAMIC_TOPIC */ : 5 /* DEFAULT */;
        o->configs[id].is_sensitive = false;
    }
}

/* An administrative request whose partition file work runs on the registry's worker: it is
 * answered when the last of its topics completes. Each pending topic holds the request, so a
 * closed connection frees nothing a completion touches. */
typedef struct admin_op {
    sl_req *rq;
    void *resp; /* the API's response struct, in the arena */
    void (*finish)(struct admin_op *op);
    int outstanding;
    bool queued_all;
} admin_op;

/* One topic of an admin_op handed to the worker. */
typedef struct admin_item {
    admin_op *op;
    void *out; /* this topic's entry in the response */
    int32_t np;
} admin_item;

static admin_op *admin_op_new(sl_req *rq, void *resp, void (*finish)(admin_op *)) {
    admin_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (op) *op = (admin_op){.rq = rq, .resp = resp, .finish = finish};
    return op;
}

static admin_item *admin_item_new(admin_op *op, void *out, int32_t np) {
    admin_item *it = sl_arena_alloc(op->rq->a, sizeof *it);
    if (it) *it = (admin_item){.op = op, .out = out, .np = np};
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

static void topic_created(void *ctx, sl_err e, sl_topic *t) {
    admin_item *it = ctx;
    sl_req *rq = it->op->rq;
    sl_create_topics_resp_topic *o = it->out;
    if (e) {
        o->error_code = sl_err_to_kafka(e);
        o->error_message =
            msgf(rq, "Topic creation failed, nothing was created: %s", sl_strerror(e));
        if (rq->h.api_version >= 5) o->configs_count = -1;
    } else {
        o->num_partitions = it->np;
        o->replication_factor = 1;
        o->topic_id = t->id;
        fill_created_configs(rq, o, t);
    }
    admin_item_done(it);
}

void sl_h_create_topics(sl_req *rq) {
    sl_create_topics_req req = *(const sl_create_topics_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_broker *b = rq->b;
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
        int32_t np = rt->num_partitions;
        bool dup = false;
        for (int32_t k = 0; k < i; k++)
            if (sl_str_eq(req.topics[k].name, rt->name)) dup = true;
        sl_topic_config tc;
        sl_str bad;
        if (dup) {
            o->error_code = SL_KAFKA_INVALID_REQUEST;
            o->error_message =
                msgf(rq, "topic %.*s appears more than once", rt->name.len, rt->name.p);
        } else if (!cluster_create &&
                   !sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, rt->name)) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            o->error_message = sl_str_c("Authorization failed.");
        } else if (!sl_topic_name_valid(rt->name)) {
            o->error_code = SL_KAFKA_INVALID_TOPIC_EXCEPTION;
        } else if (sl_topics_find(b->topics, rt->name)) {
            o->error_code = SL_KAFKA_TOPIC_ALREADY_EXISTS;
            o->error_message = msgf(rq, "Topic '%.*s' already exists.", rt->name.len, rt->name.p);
        } else if (rt->replication_factor != -1 && rt->replication_factor != 1) {
            o->error_code = SL_KAFKA_INVALID_REPLICATION_FACTOR;
            o->error_message = msgf(rq, "Replication factor: %d larger than available brokers: 1.",
                                    rt->replication_factor);
        } else if (rt->assignments_count > 0 && np != -1) {
            o->error_code = SL_KAFKA_INVALID_REQUEST;
        } else if (rt->assignments_count <= 0 && (np == 0 || np < -1)) {
            o->error_code = SL_KAFKA_INVALID_PARTITIONS;
            o->error_message = msgf(rq, "Number of partitions must be larger than 0 (got %d)", np);
        } else if ((o->error_code = parse_configs(rt, &tc, &bad))) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", bad.len > 100 ? 100 : bad.len, bad.p);
            o->error_message = msgf(rq, "invalid or unsupported topic config %s", name);
        } else {
            if (rt->assignments_count > 0) {
                np = rt->assignments_count;
                for (int32_t k = 0; k < rt->assignments_count; k++) {
                    sl_create_topics_req_assignment *as = &rt->assignments[k];
                    if (as->partition_index != k || as->broker_ids_count != 1 ||
                        as->broker_ids[0] != b->cfg.node_id)
                        o->error_code = SL_KAFKA_INVALID_REPLICA_ASSIGNMENT;
                }
            }
            if (np == -1) np = b->cfg.num_partitions;
            if (!o->error_code && req.validate_only) {
                sl_err e = sl_topics_create(b->topics, rt->name, np, &tc, true, NULL);
                o->error_code = e ? sl_err_to_kafka(e) : 0;
                if (e == SL_EINVAL) o->error_code = SL_KAFKA_INVALID_PARTITIONS;
                if (!e) {
                    o->num_partitions = np;
                    o->replication_factor = 1;
                    o->configs_count = 0;
                }
            } else if (!o->error_code) {
                admin_item *it = admin_item_new(op, o, np);
                if (!it) return sl_req_fail(rq, "out of memory");
                sl_err e = sl_topics_create_async(b->topics, rt->name, np, &tc, topic_created, it);
                if (e) {
                    o->error_code = sl_err_to_kafka(e);
                    if (e == SL_EINVAL) o->error_code = SL_KAFKA_INVALID_PARTITIONS;
                    if (e == SL_EEXISTS)
                        o->error_message =
                            msgf(rq, "Topic '%.*s' already exists.", rt->name.len, rt->name.p);
                } else {
                    op->outstanding++;
                    sl_req_hold(rq);
                    continue; /* answered by topic_created */
                }
            }
        }
        if (o->error_code && v >= 5) o->configs_count = -1;
    }
    admin_op_queued(op);
}

static void delete_finish(admin_op *op) {
    SL_RESPOND(op->rq, delete_topics, (sl_delete_topics_resp *)op->resp);
}

static void topic_deleted(void *ctx, sl_err e, sl_topic *t) {
    admin_item *it = ctx;
    sl_delete_topics_resp_result *o = it->out;
    if (e) o->error_code = sl_err_to_kafka(e);
    admin_item_done(it);
}

/* Returns a Kafka error, or -1 when the deletion was posted (topic_deleted completes it). */
static int delete_one(admin_op *op, sl_delete_topics_resp_result *o, sl_topic *t) {
    sl_req *rq = op->rq;
    if (!rq->b->cfg.delete_topic_enable) return SL_KAFKA_TOPIC_DELETION_DISABLED;
    if (t->busy) return SL_KAFKA_REASSIGNMENT_IN_PROGRESS;
    admin_item *it = admin_item_new(op, o, 0);
    if (!it) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    sl_storage_local_close_topic(rq->b, t);
    sl_err e = sl_topics_delete_async(rq->b->topics, t, topic_deleted, it);
    if (e) return e == SL_ESTATE ? SL_KAFKA_REASSIGNMENT_IN_PROGRESS : sl_err_to_kafka(e);
    op->outstanding++;
    sl_req_hold(rq);
    return -1;
}

void sl_h_delete_topics(sl_req *rq) {
    sl_delete_topics_req req = *(const sl_delete_topics_req *)rq->req;
    int16_t v = rq->h.api_version;
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
        sl_topic *t;
        if (v >= 6) {
            sl_delete_topics_req_topic *rt = &req.topics[i];
            o->name = rt->name;
            o->topic_id = rt->topic_id;
            t = rt->name.len >= 0 ? sl_topics_find(rq->b->topics, rt->name)
                                  : sl_topics_find_id(rq->b->topics, &rt->topic_id);
            if (!t) {
                o->error_code = rt->name.len >= 0 ? SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION
                                                  : SL_KAFKA_UNKNOWN_TOPIC_ID;
                continue;
            }
            o->name = arena_name(rq, t->name);
            o->topic_id = t->id;
        } else {
            o->name = req.topic_names[i];
            if (!sl_req_allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, o->name)) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            t = sl_topics_find(rq->b->topics, o->name);
            if (!t) {
                o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
        }
        if (!sl_req_allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, sl_str_c(t->name))) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            continue;
        }
        int r = delete_one(op, o, t);
        if (r >= 0) o->error_code = (int16_t)r;
    }
    admin_op_queued(op);
}

static void partitions_finish(admin_op *op) {
    SL_RESPOND(op->rq, create_partitions, (sl_create_partitions_resp *)op->resp);
}

static void partitions_added(void *ctx, sl_err e, sl_topic *t) {
    admin_item *it = ctx;
    sl_create_partitions_resp_result *o = it->out;
    if (e) {
        o->error_code = sl_err_to_kafka(e);
        o->error_message =
            msgf(it->op->rq, "Adding partitions failed, none was added: %s", sl_strerror(e));
    }
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
        sl_topic *t = sl_topics_find(rq->b->topics, rt->name);
        if (!sl_req_allowed(rq, SL_ACL_OP_ALTER, SL_ACL_RES_TOPIC, rt->name)) {
            o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        } else if (!t) {
            o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        } else if (rt->count <= t->npart) {
            o->error_code = SL_KAFKA_INVALID_PARTITIONS;
            o->error_message = msgf(rq, "Topic %s currently has %d partitions", t->name, t->npart);
        } else if (rt->count > 100000) {
            o->error_code = SL_KAFKA_INVALID_PARTITIONS;
        } else if (rt->assignments_count > 0 && rt->assignments_count != rt->count - t->npart) {
            o->error_code = SL_KAFKA_INVALID_REPLICA_ASSIGNMENT;
        } else if (t->busy) {
            o->error_code = SL_KAFKA_REASSIGNMENT_IN_PROGRESS;
            o->error_message = msgf(rq, "Partitions of %s are being added", t->name);
        } else if (!req.validate_only) {
            admin_item *it = admin_item_new(op, o, rt->count);
            if (!it) return sl_req_fail(rq, "out of memory");
            sl_err e =
                sl_topics_add_partitions_async(rq->b->topics, t, rt->count, partitions_added, it);
            if (e) {
                o->error_code = sl_err_to_kafka(e);
            } else {
                op->outstanding++;
                sl_req_hold(rq);
            }
        }
    }
    admin_op_queued(op);
}
