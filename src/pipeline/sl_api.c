/* The API descriptors (sl_api.h): decoders and the resources each request names. Kafka's
 * authorization rules are written here once, per API, as the resources and operations named;
 * handlers only read the decisions. Where Kafka accepts either of two permissions (CREATE on
 * the cluster or on the topic; IDEMPOTENT_WRITE on the cluster or WRITE on some topic), the
 * second is named as an alternative of the first: it is only asked when the first is denied. */
#include "pipeline/sl_api.h"

#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "pipeline/sl_authorize.h"
#include "proto/sl_records.h"

/* ---- naming helpers ---- */

static void need_topic(sl_req *rq, int op, sl_str name) {
    sl_req_need(rq, op, SL_ACL_RES_TOPIC, name, 0);
}

static void need_group(sl_req *rq, int op, sl_str name) {
    sl_req_need(rq, op, SL_ACL_RES_GROUP, name, 0);
}

typedef struct name_ctx {
    sl_req *rq;
    int op, rtype;
    unsigned flags;
    int32_t alt;
    bool ops;
} name_ctx;

static void name_each(void *arg, sl_str name) {
    name_ctx *c = arg;
    sl_req_need_alt(c->rq, c->op, c->rtype, name, c->flags, c->alt);
    if (c->ops) sl_req_need_ops(c->rq, c->rtype, name);
}

/* ---- per API ---- */

static void res_produce(sl_req *rq, const sl_catalog *cat) {
    const sl_produce_req *r = rq->req;
    if (rq->h.api_version >= 3 && r->transactional_id.len >= 0)
        sl_req_need(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, r->transactional_id, 0);
    for (int32_t i = 0; i < r->topic_data_count; i++)
        need_topic(rq, SL_ACL_OP_WRITE, r->topic_data[i].name);
}

static void res_fetch(sl_req *rq, const sl_catalog *cat) {
    const sl_fetch_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++) {
        sl_str name = r->topics[i].topic;
        /* By id (v13+) the name is the topic's; an unknown id is answered as such, unnamed. */
        if (rq->h.api_version >= 13 &&
            !cat->topic_name(cat->ctx, &r->topics[i].topic_id, rq->a, &name))
            continue;
        need_topic(rq, SL_ACL_OP_READ, name);
    }
}

static void res_list_offsets(sl_req *rq, const sl_catalog *cat) {
    const sl_list_offsets_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_DESCRIBE, r->topics[i].name);
}

static void res_metadata(sl_req *rq, const sl_catalog *cat) {
    const sl_metadata_req *r = rq->req;
    int16_t v = rq->h.api_version;
    bool want_ops = v >= 8 && r->include_topic_authorized_operations;
    if (v >= 8 && v <= 10 && r->include_cluster_authorized_operations)
        sl_req_need_ops(rq, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    /* v0: an empty list means all topics; v1+: null means all, empty means none. Topics the
     * caller may not DESCRIBE are left out of a full listing without a word. */
    if (r->topics_count < 0 || (v == 0 && r->topics_count == 0)) {
        name_ctx c = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, SL_AZ_QUIET, -1, want_ops};
        cat->each_topic(cat->ctx, name_each, &c);
        return;
    }
    bool allow_create = (v < 4 || r->allow_auto_topic_creation) && cat->auto_create(cat->ctx);
    for (int32_t i = 0; i < r->topics_count; i++) {
        sl_str name = r->topics[i].name;
        if (name.len < 0 && !cat->topic_name(cat->ctx, &r->topics[i].topic_id, rq->a, &name))
            continue;
        need_topic(rq, SL_ACL_OP_DESCRIBE, name);
        if (want_ops) sl_req_need_ops(rq, SL_ACL_RES_TOPIC, name);
        /* Auto-creation needs CREATE on the cluster or on the topic. */
        if (r->topics[i].name.len >= 0 && allow_create && !cat->topic_exists(cat->ctx, name)) {
            int32_t cl = sl_req_need(rq, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER,
                                     sl_str_c(SL_ACL_CLUSTER_NAME), SL_AZ_QUIET);
            sl_req_need_alt(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, name, 0, cl);
        }
    }
}

static void res_offset_commit(sl_req *rq, const sl_catalog *cat) {
    const sl_offset_commit_req *r = rq->req;
    need_group(rq, SL_ACL_OP_READ, r->group_id);
    for (int32_t i = 0; i < r->topics_count; i++) need_topic(rq, SL_ACL_OP_READ, r->topics[i].name);
}

/* One group of an OffsetFetch: DESCRIBE on it, and on each topic asked for; asked for all,
 * the topics it has offsets for, of which those not describable are left out quietly. */
static void fetch_group(sl_req *rq, const sl_catalog *cat, sl_str group,
                        const sl_offset_fetch_req_group_topic *topics, int32_t ntopics) {
    need_group(rq, SL_ACL_OP_DESCRIBE, group);
    if (ntopics < 0) {
        name_ctx c = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, SL_AZ_QUIET, -1, false};
        cat->each_committed_topic(cat->ctx, group, name_each, &c);
        return;
    }
    for (int32_t i = 0; i < ntopics; i++) need_topic(rq, SL_ACL_OP_DESCRIBE, topics[i].name);
}

static void res_offset_fetch(sl_req *rq, const sl_catalog *cat) {
    const sl_offset_fetch_req *r = rq->req;
    if (rq->h.api_version >= 8) {
        for (int32_t i = 0; i < r->groups_count; i++)
            fetch_group(rq, cat, r->groups[i].group_id, r->groups[i].topics,
                        r->groups[i].topics_count);
        return;
    }
    /* v0-7: one group; its topic struct has the v8 group topic's layout. */
    need_group(rq, SL_ACL_OP_DESCRIBE, r->group_id);
    if (r->topics_count < 0) {
        fetch_group(rq, cat, r->group_id, NULL, -1);
        return;
    }
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_DESCRIBE, r->topics[i].name);
}

/* Kafka: DESCRIBE on the group (key type 0) or transactional id (1) whose coordinator is
 * asked for. */
static void res_find_coordinator(sl_req *rq, const sl_catalog *cat) {
    const sl_find_coordinator_req *r = rq->req;
    if (r->key_type != 0 && r->key_type != 1) return;
    int rtype = r->key_type == 0 ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID;
    if (rq->h.api_version < 4) {
        sl_req_need(rq, SL_ACL_OP_DESCRIBE, rtype, r->key, 0);
        return;
    }
    for (int32_t i = 0; i < r->coordinator_keys_count; i++)
        sl_req_need(rq, SL_ACL_OP_DESCRIBE, rtype, r->coordinator_keys[i], 0);
}

static void res_join_group(sl_req *rq, const sl_catalog *cat) {
    need_group(rq, SL_ACL_OP_READ, ((const sl_join_group_req *)rq->req)->group_id);
}
static void res_sync_group(sl_req *rq, const sl_catalog *cat) {
    need_group(rq, SL_ACL_OP_READ, ((const sl_sync_group_req *)rq->req)->group_id);
}
static void res_heartbeat(sl_req *rq, const sl_catalog *cat) {
    need_group(rq, SL_ACL_OP_READ, ((const sl_heartbeat_req *)rq->req)->group_id);
}
static void res_leave_group(sl_req *rq, const sl_catalog *cat) {
    need_group(rq, SL_ACL_OP_READ, ((const sl_leave_group_req *)rq->req)->group_id);
}

static void res_describe_groups(sl_req *rq, const sl_catalog *cat) {
    const sl_describe_groups_req *r = rq->req;
    for (int32_t i = 0; i < r->groups_count; i++) {
        need_group(rq, SL_ACL_OP_DESCRIBE, r->groups[i]);
        if (r->include_authorized_operations) sl_req_need_ops(rq, SL_ACL_RES_GROUP, r->groups[i]);
    }
}

/* DESCRIBE on the cluster lists every group; otherwise the describable ones, quietly. */
static void res_list_groups(sl_req *rq, const sl_catalog *cat) {
    int32_t cl = sl_req_need(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_CLUSTER,
                             sl_str_c(SL_ACL_CLUSTER_NAME), SL_AZ_QUIET);
    name_ctx c = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, SL_AZ_QUIET, cl, false};
    cat->each_group(cat->ctx, name_each, &c);
}

/* CREATE on the cluster covers every topic; otherwise CREATE on each topic. */
static void res_create_topics(sl_req *rq, const sl_catalog *cat) {
    const sl_create_topics_req *r = rq->req;
    int32_t cl = sl_req_need(rq, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER,
                             sl_str_c(SL_ACL_CLUSTER_NAME), SL_AZ_QUIET);
    for (int32_t i = 0; i < r->topics_count; i++)
        sl_req_need_alt(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, r->topics[i].name, 0, cl);
}

static void res_delete_topics(sl_req *rq, const sl_catalog *cat) {
    const sl_delete_topics_req *r = rq->req;
    if (rq->h.api_version < 6) {
        for (int32_t i = 0; i < r->topic_names_count; i++)
            need_topic(rq, SL_ACL_OP_DELETE, r->topic_names[i]);
        return;
    }
    /* v6+: an unknown name or id is answered as unknown before any authorization. */
    for (int32_t i = 0; i < r->topics_count; i++) {
        sl_str name = r->topics[i].name;
        bool found = name.len >= 0
                         ? cat->topic_exists(cat->ctx, name)
                         : cat->topic_name(cat->ctx, &r->topics[i].topic_id, rq->a, &name);
        if (found) need_topic(rq, SL_ACL_OP_DELETE, name);
    }
}

static void res_delete_records(sl_req *rq, const sl_catalog *cat) {
    const sl_delete_records_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_DELETE, r->topics[i].name);
}

/* Kafka 3.x: WRITE on the transactional id; without one, IDEMPOTENT_WRITE on the cluster or
 * WRITE on some topic. */
static void res_init_producer_id(sl_req *rq, const sl_catalog *cat) {
    const sl_init_producer_id_req *r = rq->req;
    if (r->transactional_id.len >= 0) {
        sl_req_need(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, r->transactional_id, 0);
        return;
    }
    int32_t cl = sl_req_need(rq, SL_ACL_OP_IDEMPOTENT_WRITE, SL_ACL_RES_CLUSTER,
                             sl_str_c(SL_ACL_CLUSTER_NAME), SL_AZ_QUIET);
    sl_req_need_alt(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, (sl_str){"", 0}, SL_AZ_ANY, cl);
}

static void res_offset_for_leader_epoch(sl_req *rq, const sl_catalog *cat) {
    const sl_offset_for_leader_epoch_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_DESCRIBE, r->topics[i].topic);
}

static void res_cluster_describe(sl_req *rq, const sl_catalog *cat) {
    sl_req_need_cluster(rq, SL_ACL_OP_DESCRIBE, 0);
}
static void res_cluster_alter(sl_req *rq, const sl_catalog *cat) {
    sl_req_need_cluster(rq, SL_ACL_OP_ALTER, 0);
}

/* Config resources: topics by name, the broker as the cluster; other types are refused by the
 * handler without authorization. */
enum { CFG_RES_TOPIC = 2, CFG_RES_BROKER = 4 };
static void need_config(sl_req *rq, int8_t type, sl_str name, int op) {
    if (type == CFG_RES_TOPIC) need_topic(rq, op, name);
    if (type == CFG_RES_BROKER) sl_req_need_cluster(rq, op, 0);
}

static void res_describe_configs(sl_req *rq, const sl_catalog *cat) {
    const sl_describe_configs_req *r = rq->req;
    for (int32_t i = 0; i < r->resources_count; i++)
        need_config(rq, r->resources[i].resource_type, r->resources[i].resource_name,
                    SL_ACL_OP_DESCRIBE_CONFIGS);
}

static void res_alter_configs(sl_req *rq, const sl_catalog *cat) {
    const sl_alter_configs_req *r = rq->req;
    for (int32_t i = 0; i < r->resources_count; i++)
        need_config(rq, r->resources[i].resource_type, r->resources[i].resource_name,
                    SL_ACL_OP_ALTER_CONFIGS);
}

static void res_incremental_alter_configs(sl_req *rq, const sl_catalog *cat) {
    const sl_incremental_alter_configs_req *r = rq->req;
    for (int32_t i = 0; i < r->resources_count; i++)
        need_config(rq, r->resources[i].resource_type, r->resources[i].resource_name,
                    SL_ACL_OP_ALTER_CONFIGS);
}

static void res_create_partitions(sl_req *rq, const sl_catalog *cat) {
    const sl_create_partitions_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_ALTER, r->topics[i].name);
}

static void res_delete_groups(sl_req *rq, const sl_catalog *cat) {
    const sl_delete_groups_req *r = rq->req;
    for (int32_t i = 0; i < r->groups_names_count; i++)
        need_group(rq, SL_ACL_OP_DELETE, r->groups_names[i]);
}

static void res_offset_delete(sl_req *rq, const sl_catalog *cat) {
    const sl_offset_delete_req *r = rq->req;
    need_group(rq, SL_ACL_OP_DELETE, r->group_id);
    for (int32_t i = 0; i < r->topics_count; i++) need_topic(rq, SL_ACL_OP_READ, r->topics[i].name);
}

/* Transactions (Kafka's KafkaApis): WRITE on the transactional id first; then READ on the group
 * whose offsets join the transaction, WRITE on each topic added to it, READ on each topic whose
 * offsets are committed in it. */
static void need_txn(sl_req *rq, sl_str id) {
    sl_req_need(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, id, 0);
}

/* v4+ is sent by brokers (KIP-890): CLUSTER_ACTION on the cluster, nothing else. */
static void res_add_partitions_to_txn(sl_req *rq, const sl_catalog *cat) {
    const sl_add_partitions_to_txn_req *r = rq->req;
    if (rq->h.api_version >= 4) {
        sl_req_need_cluster(rq, SL_ACL_OP_CLUSTER_ACTION, 0);
        return;
    }
    need_txn(rq, r->transactional_id);
    for (int32_t i = 0; i < r->topics_count; i++)
        need_topic(rq, SL_ACL_OP_WRITE, r->topics[i].name);
}

static void res_add_offsets_to_txn(sl_req *rq, const sl_catalog *cat) {
    const sl_add_offsets_to_txn_req *r = rq->req;
    need_txn(rq, r->transactional_id);
    need_group(rq, SL_ACL_OP_READ, r->group_id);
}

static void res_end_txn(sl_req *rq, const sl_catalog *cat) {
    need_txn(rq, ((const sl_end_txn_req *)rq->req)->transactional_id);
}

static void res_txn_offset_commit(sl_req *rq, const sl_catalog *cat) {
    const sl_txn_offset_commit_req *r = rq->req;
    need_txn(rq, r->transactional_id);
    need_group(rq, SL_ACL_OP_READ, r->group_id);
    for (int32_t i = 0; i < r->topics_count; i++) need_topic(rq, SL_ACL_OP_READ, r->topics[i].name);
}

/* Operators' transaction APIs: DESCRIBE on each transactional id asked for; a listing names
 * every id the coordinator holds, quietly (Kafka leaves the others out). */
static void res_describe_transactions(sl_req *rq, const sl_catalog *cat) {
    const sl_describe_transactions_req *r = rq->req;
    for (int32_t i = 0; i < r->transactional_ids_count; i++)
        sl_req_need(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, r->transactional_ids[i],
                    0);
}

static void res_list_transactions(sl_req *rq, const sl_catalog *cat) {
    name_ctx c = {rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, SL_AZ_QUIET, -1, false};
    if (cat->each_transactional_id) cat->each_transactional_id(cat->ctx, name_each, &c);
}

/* DescribeProducers: READ on each topic (Kafka's KafkaApis). */
static void res_describe_producers(sl_req *rq, const sl_catalog *cat) {
    const sl_describe_producers_req *r = rq->req;
    for (int32_t i = 0; i < r->topics_count; i++) need_topic(rq, SL_ACL_OP_READ, r->topics[i].name);
}

static void res_describe_cluster(sl_req *rq, const sl_catalog *cat) {
    if (((const sl_describe_cluster_req *)rq->req)->include_cluster_authorized_operations)
        sl_req_need_ops(rq, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
}

/* ---- outcomes: what the answer said about each resource, for the observers ----
 *
 * The mirror of naming: after the handler built its answer and before it is encoded, the
 * descriptor copies each resource's error from the answer into the lifecycle (first error wins;
 * authorization denials were recorded by the stage). */

#define TOPIC_PARTS(rq, op, resp, topics, tname, parts)                                            \
    for (int32_t i_ = 0; i_ < (resp)->topics##_count; i_++)                                        \
        for (int32_t j_ = 0; j_ < (resp)->topics[i_].parts##_count; j_++)                          \
            if ((resp)->topics[i_].parts[j_].error_code)                                           \
    sl_req_res_error((rq), (op), SL_ACL_RES_TOPIC, (resp)->topics[i_].tname,                       \
                     (resp)->topics[i_].parts[j_].error_code)
#define PER_ITEM(rq, op, rtype, resp, items, iname)                                                \
    for (int32_t i_ = 0; i_ < (resp)->items##_count; i_++)                                         \
        if ((resp)->items[i_].error_code)                                                          \
    sl_req_res_error((rq), (op), (rtype), (resp)->items[i_].iname, (resp)->items[i_].error_code)

static void top_error(sl_req *rq, int16_t err) {
    if (err && !rq->error) rq->error = err;
}

/* Data access: what each partition's batches hold, from their headers (sl_batch_walk_set). */
static void data_entry(sl_req *rq, sl_str topic, int32_t partition, bool write, int16_t err,
                       const sl_batch_walk *w) {
    sl_req_data *d = sl_req_data_add(rq, topic, partition, write);
    if (!d) return;
    d->error = err;
    d->first_offset = w ? w->first_offset : -1;
    d->last_offset = w ? w->last_offset : -1;
    d->records = w ? w->records : 0;
    d->bytes = w ? w->bytes : 0;
}

/* Produce answers mirror the request (SL_RESP_MIRROR), so partition j of answer topic i is the
 * request's; an appended partition's batches (valid magic 2 by now) give the count and span,
 * the answer the real base offset (a retried duplicate keeps its original one). Also called for
 * acks=0, which has no answer to encode. */
static void out_produce(sl_req *rq, const void *r) {
    const sl_produce_resp *o = r;
    const sl_produce_req *q = rq->req;
    TOPIC_PARTS(rq, SL_ACL_OP_WRITE, o, responses, name, partition_responses);
    for (int32_t i = 0; i < o->responses_count; i++) {
        const sl_produce_resp_topic *ot = &o->responses[i];
        const sl_produce_req_topic *qt = i < q->topic_data_count ? &q->topic_data[i] : NULL;
        for (int32_t j = 0; j < ot->partition_responses_count; j++) {
            const sl_produce_resp_partition *op = &ot->partition_responses[j];
            const sl_produce_req_partition *qp =
                qt && j < qt->partition_data_count ? &qt->partition_data[j] : NULL;
            if (op->error_code || op->base_offset < 0 || !qp || qp->index != op->index ||
                qp->records.len <= 0) {
                data_entry(rq, ot->name, op->index, true, op->error_code, NULL);
                continue;
            }
            sl_batch_walk w;
            sl_batch_walk_set(qp->records.p, (size_t)qp->records.len, &w);
            if (w.batches) {
                w.last_offset = (int64_t)((uint64_t)op->base_offset +
                                          ((uint64_t)w.last_offset - (uint64_t)w.first_offset));
                w.first_offset = op->base_offset;
            }
            data_entry(rq, ot->name, op->index, true, 0, &w);
        }
    }
}

/* Fetch by topic id (v13+) answers without names: a topic's name is the one the descriptor
 * named for it (res_fetch names the known ids, in request order, as READ), unless the handler
 * set it (the gateway's answers follow the upstream's order, not the request's). */
static sl_str fetch_topic_name(sl_req *rq, const sl_fetch_resp_topic *ot, int32_t *cursor) {
    if (rq->h.api_version < 13 || ot->topic.len > 0) return ot->topic;
    bool unknown =
        ot->partitions_count > 0 && ot->partitions[0].error_code == SL_KAFKA_UNKNOWN_TOPIC_ID;
    if (unknown) return (sl_str){"", 0};
    while (*cursor < rq->nres) {
        const sl_req_res *res = &rq->res[(*cursor)++];
        if (res->rtype == SL_ACL_RES_TOPIC && res->op == SL_ACL_OP_READ) return res->name;
    }
    return (sl_str){"", 0};
}

/* A partition the answer carries batches or an error for; quiet empty partitions read
 * nothing. Down-converted answers (v0-3) hold legacy messages, which the walk reads too. */
static void out_fetch(sl_req *rq, const void *r) {
    const sl_fetch_resp *o = r;
    top_error(rq, o->error_code);
    TOPIC_PARTS(rq, SL_ACL_OP_READ, o, responses, topic, partitions);
    int32_t cursor = 0;
    for (int32_t i = 0; i < o->responses_count; i++) {
        const sl_fetch_resp_topic *ot = &o->responses[i];
        sl_str name = fetch_topic_name(rq, ot, &cursor);
        for (int32_t j = 0; j < ot->partitions_count; j++) {
            const sl_fetch_resp_partition *op = &ot->partitions[j];
            if (op->error_code) {
                data_entry(rq, name, op->partition_index, false, op->error_code, NULL);
                continue;
            }
            if (op->records.len <= 0 || !op->records.p) continue;
            sl_batch_walk w;
            sl_batch_walk_set(op->records.p, (size_t)op->records.len, &w);
            if (w.batches) data_entry(rq, name, op->partition_index, false, 0, &w);
        }
    }
}
static void out_list_offsets(sl_req *rq, const void *r) {
    const sl_list_offsets_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_DESCRIBE, o, topics, name, partitions);
}
static void out_offset_for_leader_epoch(sl_req *rq, const void *r) {
    const sl_offset_for_leader_epoch_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_DESCRIBE, o, topics, topic, partitions);
}
static void out_delete_records(sl_req *rq, const void *r) {
    const sl_delete_records_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_DELETE, o, topics, name, partitions);
}
static void out_metadata(sl_req *rq, const void *r) {
    const sl_metadata_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, o, topics, name);
}
static void out_offset_commit(sl_req *rq, const void *r) {
    const sl_offset_commit_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_READ, o, topics, name, partitions);
}
static void out_create_topics(sl_req *rq, const void *r) {
    const sl_create_topics_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, o, topics, name);
}
static void out_delete_topics(sl_req *rq, const void *r) {
    const sl_delete_topics_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, o, responses, name);
}
static void out_create_partitions(sl_req *rq, const void *r) {
    const sl_create_partitions_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_ALTER, SL_ACL_RES_TOPIC, o, results, name);
}
static void out_describe_groups(sl_req *rq, const void *r) {
    const sl_describe_groups_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, o, groups, group_id);
}
static void out_delete_groups(sl_req *rq, const void *r) {
    const sl_delete_groups_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_DELETE, SL_ACL_RES_GROUP, o, results, group_id);
}
/* Group APIs answering with one error for the request's group. */
static void group_error(sl_req *rq, int op, sl_str group, int16_t err) {
    top_error(rq, err);
    if (err) sl_req_res_error(rq, op, SL_ACL_RES_GROUP, group, err);
}
static void out_join_group(sl_req *rq, const void *r) {
    group_error(rq, SL_ACL_OP_READ, ((const sl_join_group_req *)rq->req)->group_id,
                ((const sl_join_group_resp *)r)->error_code);
}
static void out_sync_group(sl_req *rq, const void *r) {
    group_error(rq, SL_ACL_OP_READ, ((const sl_sync_group_req *)rq->req)->group_id,
                ((const sl_sync_group_resp *)r)->error_code);
}
static void out_heartbeat(sl_req *rq, const void *r) {
    group_error(rq, SL_ACL_OP_READ, ((const sl_heartbeat_req *)rq->req)->group_id,
                ((const sl_heartbeat_resp *)r)->error_code);
}
static void out_leave_group(sl_req *rq, const void *r) {
    group_error(rq, SL_ACL_OP_READ, ((const sl_leave_group_req *)rq->req)->group_id,
                ((const sl_leave_group_resp *)r)->error_code);
}
static void out_offset_delete(sl_req *rq, const void *r) {
    const sl_offset_delete_resp *o = r;
    group_error(rq, SL_ACL_OP_DELETE, ((const sl_offset_delete_req *)rq->req)->group_id,
                o->error_code);
    TOPIC_PARTS(rq, SL_ACL_OP_READ, o, topics, name, partitions);
}
static void out_init_producer_id(sl_req *rq, const void *r) {
    top_error(rq, ((const sl_init_producer_id_resp *)r)->error_code);
}
/* Transactions: a top-level error that is the transactional id's or the group's denial is
 * recorded on it (the stage recorded the denial itself; first error wins). */
static void txn_error(sl_req *rq, sl_str txn, int16_t err) {
    top_error(rq, err);
    if (err) sl_req_res_error(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, txn, err);
}
static void out_add_partitions_to_txn(sl_req *rq, const void *r) {
    const sl_add_partitions_to_txn_resp *o = r;
    if (rq->h.api_version >= 4) {
        top_error(rq, o->error_code);
        return;
    }
    TOPIC_PARTS(rq, SL_ACL_OP_WRITE, o, results, name, results);
}
static void out_add_offsets_to_txn(sl_req *rq, const void *r) {
    const sl_add_offsets_to_txn_req *q = rq->req;
    int16_t err = ((const sl_add_offsets_to_txn_resp *)r)->error_code;
    if (err == SL_KAFKA_GROUP_AUTHORIZATION_FAILED)
        return group_error(rq, SL_ACL_OP_READ, q->group_id, err);
    txn_error(rq, q->transactional_id, err);
}
static void out_end_txn(sl_req *rq, const void *r) {
    txn_error(rq, ((const sl_end_txn_req *)rq->req)->transactional_id,
              ((const sl_end_txn_resp *)r)->error_code);
}
static void out_txn_offset_commit(sl_req *rq, const void *r) {
    const sl_txn_offset_commit_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_READ, o, topics, name, partitions);
}
static void out_describe_transactions(sl_req *rq, const void *r) {
    const sl_describe_transactions_resp *o = r;
    PER_ITEM(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, o, transaction_states,
             transactional_id);
}
static void out_list_transactions(sl_req *rq, const void *r) {
    top_error(rq, ((const sl_list_transactions_resp *)r)->error_code);
}
static void out_describe_producers(sl_req *rq, const void *r) {
    const sl_describe_producers_resp *o = r;
    TOPIC_PARTS(rq, SL_ACL_OP_READ, o, topics, name, partitions);
}
/* Config resources: topics by name, the broker as the cluster. */
static void config_error(sl_req *rq, int op, int8_t type, sl_str name, int16_t err) {
    if (!err) return;
    if (type == CFG_RES_TOPIC) sl_req_res_error(rq, op, SL_ACL_RES_TOPIC, name, err);
    if (type == CFG_RES_BROKER)
        sl_req_res_error(rq, op, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME), err);
}
static void out_describe_configs(sl_req *rq, const void *r) {
    const sl_describe_configs_resp *o = r;
    for (int32_t i = 0; i < o->results_count; i++)
        config_error(rq, SL_ACL_OP_DESCRIBE_CONFIGS, o->results[i].resource_type,
                     o->results[i].resource_name, o->results[i].error_code);
}
static void out_alter_configs(sl_req *rq, const void *r) {
    const sl_alter_configs_resp *o = r;
    for (int32_t i = 0; i < o->responses_count; i++)
        config_error(rq, SL_ACL_OP_ALTER_CONFIGS, o->responses[i].resource_type,
                     o->responses[i].resource_name, o->responses[i].error_code);
}
static void out_incremental_alter_configs(sl_req *rq, const void *r) {
    const sl_incremental_alter_configs_resp *o = r;
    for (int32_t i = 0; i < o->responses_count; i++)
        config_error(rq, SL_ACL_OP_ALTER_CONFIGS, o->responses[i].resource_type,
                     o->responses[i].resource_name, o->responses[i].error_code);
}

static void out_offset_fetch(sl_req *rq, const void *r) {
    const sl_offset_fetch_resp *o = r;
    if (rq->h.api_version >= 8) {
        for (int32_t g = 0; g < o->groups_count; g++) {
            const sl_offset_fetch_resp_group *og = &o->groups[g];
            group_error(rq, SL_ACL_OP_DESCRIBE, og->group_id, og->error_code);
            TOPIC_PARTS(rq, SL_ACL_OP_DESCRIBE, og, topics, name, partitions);
        }
        return;
    }
    group_error(rq, SL_ACL_OP_DESCRIBE, ((const sl_offset_fetch_req *)rq->req)->group_id,
                o->error_code);
    TOPIC_PARTS(rq, SL_ACL_OP_DESCRIBE, o, topics, name, partitions);
}
static void out_list_groups(sl_req *rq, const void *r) {
    top_error(rq, ((const sl_list_groups_resp *)r)->error_code);
}
static void out_find_coordinator(sl_req *rq, const void *r) {
    const sl_find_coordinator_resp *o = r;
    const sl_find_coordinator_req *q = rq->req;
    if (q->key_type != 0 && q->key_type != 1) {
        top_error(rq, o->error_code);
        return;
    }
    int rtype = q->key_type == 0 ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID;
    if (rq->h.api_version < 4) {
        top_error(rq, o->error_code);
        if (o->error_code) sl_req_res_error(rq, SL_ACL_OP_DESCRIBE, rtype, q->key, o->error_code);
        return;
    }
    PER_ITEM(rq, SL_ACL_OP_DESCRIBE, rtype, o, coordinators, key);
}

/* Management APIs authorized on the cluster act on things the request names only in its body
 * (ACL bindings, SCRAM users): each becomes a resource of its own, with its outcome, allowed
 * by the cluster decision it was done under (by_alt). Their names are descriptions, never
 * secrets: a binding as "Topic:LITERAL:orders User:bob Read Allow", a user by name only. */
static void out_entry(sl_req *rq, int cluster_op, int op, int rtype, sl_str name, int16_t err) {
    int32_t cl = -1;
    for (int32_t i = 0; i < rq->nres && cl < 0; i++)
        if (rq->res[i].rtype == SL_ACL_RES_CLUSTER && rq->res[i].op == cluster_op) cl = i;
    int32_t at = sl_req_need_alt(rq, op, rtype, name, SL_AZ_QUIET, cl);
    if (at < 0) return;
    sl_req_res *e = &rq->res[at];
    e->allowed = cl >= 0 && rq->res[cl].allowed;
    e->by_alt = e->allowed;
    if (err && !e->error) e->error = err;
}

/* "TRANSACTIONAL_ID" as Kafka prints it: "TransactionalId". */
static void camel(const char *upper, char *out, size_t n) {
    size_t j = 0;
    bool start = true;
    for (; *upper && j + 1 < n; upper++) {
        if (*upper == '_') {
            start = true;
            continue;
        }
        out[j++] = start ? *upper : (char)(*upper >= 'A' && *upper <= 'Z' ? *upper + 32 : *upper);
        start = false;
    }
    out[j] = 0;
}

static sl_str acl_text(sl_req *rq, int rtype, int pattern, sl_str name, sl_str principal,
                       sl_str host, int op, int perm) {
    char t[32], o[32], p[16];
    camel(sl_acl_res_name(rtype), t, sizeof t);
    camel(sl_acl_op_name(op), o, sizeof o);
    camel(sl_acl_perm_name(perm), p, sizeof p);
    int hl = host.len > 0 ? host.len : 0;
    bool any_host = hl == 0 || (hl == 1 && host.p[0] == '*');
    return sl_str_printf(rq->a, "%s:%s:%.*s %.*s %s %s%s%.*s", t, sl_acl_pat_name(pattern),
                         name.len > 0 ? (int)name.len : 0, name.p ? name.p : "",
                         principal.len > 0 ? (int)principal.len : 0, principal.p ? principal.p : "",
                         o, p, any_host ? "" : " from ", any_host ? 0 : hl, any_host ? "" : host.p);
}

static void out_describe_acls(sl_req *rq, const void *r) {
    top_error(rq, ((const sl_describe_acls_resp *)r)->error_code);
}
static void out_create_acls(sl_req *rq, const void *r) {
    const sl_create_acls_resp *o = r;
    const sl_create_acls_req *q = rq->req;
    for (int32_t i = 0; i < o->results_count && i < q->creations_count; i++) {
        const sl_create_acls_req_creation *c = &q->creations[i];
        out_entry(rq, SL_ACL_OP_ALTER, SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER,
                  acl_text(rq, c->resource_type, c->resource_pattern_type, c->resource_name,
                           c->principal, c->host, c->operation, c->permission_type),
                  o->results[i].error_code);
    }
}
static void out_delete_acls(sl_req *rq, const void *r) {
    const sl_delete_acls_resp *o = r;
    for (int32_t i = 0; i < o->filter_results_count; i++) {
        const sl_delete_acls_resp_filter_result *f = &o->filter_results[i];
        top_error(rq, f->error_code);
        for (int32_t j = 0; j < f->matching_acls_count; j++) {
            const sl_delete_acls_resp_matching_acl *m = &f->matching_acls[j];
            out_entry(rq, SL_ACL_OP_ALTER, SL_ACL_OP_DELETE, SL_ACL_RES_CLUSTER,
                      acl_text(rq, m->resource_type, m->pattern_type, m->resource_name,
                               m->principal, m->host, m->operation, m->permission_type),
                      m->error_code);
        }
    }
}
static void out_describe_user_scram_credentials(sl_req *rq, const void *r) {
    const sl_describe_user_scram_credentials_resp *o = r;
    top_error(rq, o->error_code);
    for (int32_t i = 0; i < o->results_count; i++)
        out_entry(rq, SL_ACL_OP_DESCRIBE, SL_ACL_OP_DESCRIBE, SL_ACL_RES_USER, o->results[i].user,
                  o->results[i].error_code);
}
static void out_alter_user_scram_credentials(sl_req *rq, const void *r) {
    const sl_alter_user_scram_credentials_resp *o = r;
    for (int32_t i = 0; i < o->results_count; i++)
        out_entry(rq, SL_ACL_OP_ALTER, SL_ACL_OP_ALTER, SL_ACL_RES_USER, o->results[i].user,
                  o->results[i].error_code);
}

/* ---- the table ---- */

/* Typed decoders behind one signature (calling a function through a pointer of another type
 * is undefined behaviour, so each gets a wrapper). */
#define SL_API_DECODER(name)                                                                       \
    static sl_err dec_##name(sl_rd *r, sl_arena *a, int16_t v, void *out) {                        \
        return sl_##name##_req_decode(r, a, v, out);                                               \
    }
#define SL_APIS(X)                                                                                 \
    X(SL_API_PRODUCE, produce, res_produce, 0)                                                     \
    X(SL_API_FETCH, fetch, res_fetch, 0)                                                           \
    X(SL_API_LIST_OFFSETS, list_offsets, res_list_offsets, 0)                                      \
    X(SL_API_METADATA, metadata, res_metadata, 0)                                                  \
    X(SL_API_OFFSET_COMMIT, offset_commit, res_offset_commit, 0)                                   \
    X(SL_API_OFFSET_FETCH, offset_fetch, res_offset_fetch, 0)                                      \
    X(SL_API_FIND_COORDINATOR, find_coordinator, res_find_coordinator, 0)                          \
    X(SL_API_JOIN_GROUP, join_group, res_join_group, 0)                                            \
    X(SL_API_HEARTBEAT, heartbeat, res_heartbeat, 0)                                               \
    X(SL_API_LEAVE_GROUP, leave_group, res_leave_group, 0)                                         \
    X(SL_API_SYNC_GROUP, sync_group, res_sync_group, 0)                                            \
    X(SL_API_DESCRIBE_GROUPS, describe_groups, res_describe_groups, 0)                             \
    X(SL_API_LIST_GROUPS, list_groups, res_list_groups, 0)                                         \
    X(SL_API_SASL_HANDSHAKE, sasl_handshake, NULL, SL_API_PREAUTH)                                 \
    X(SL_API_CREATE_TOPICS, create_topics, res_create_topics, 0)                                   \
    X(SL_API_DELETE_TOPICS, delete_topics, res_delete_topics, 0)                                   \
    X(SL_API_DELETE_RECORDS, delete_records, res_delete_records, 0)                                \
    X(SL_API_INIT_PRODUCER_ID, init_producer_id, res_init_producer_id, 0)                          \
    X(SL_API_OFFSET_FOR_LEADER_EPOCH, offset_for_leader_epoch, res_offset_for_leader_epoch, 0)     \
    X(SL_API_DESCRIBE_ACLS, describe_acls, res_cluster_describe, 0)                                \
    X(SL_API_CREATE_ACLS, create_acls, res_cluster_alter, 0)                                       \
    X(SL_API_DELETE_ACLS, delete_acls, res_cluster_alter, 0)                                       \
    X(SL_API_DESCRIBE_CONFIGS, describe_configs, res_describe_configs, 0)                          \
    X(SL_API_ALTER_CONFIGS, alter_configs, res_alter_configs, 0)                                   \
    X(SL_API_SASL_AUTHENTICATE, sasl_authenticate, NULL, SL_API_PREAUTH)                           \
    X(SL_API_CREATE_PARTITIONS, create_partitions, res_create_partitions, 0)                       \
    X(SL_API_DELETE_GROUPS, delete_groups, res_delete_groups, 0)                                   \
    X(SL_API_INCREMENTAL_ALTER_CONFIGS, incremental_alter_configs, res_incremental_alter_configs,  \
      0)                                                                                           \
    X(SL_API_OFFSET_DELETE, offset_delete, res_offset_delete, 0)                                   \
    X(SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS, describe_user_scram_credentials,                     \
      res_cluster_describe, 0)                                                                     \
    X(SL_API_ALTER_USER_SCRAM_CREDENTIALS, alter_user_scram_credentials, res_cluster_alter, 0)     \
    X(SL_API_DESCRIBE_CLUSTER, describe_cluster, res_describe_cluster, 0)                          \
    X(SL_API_ADD_PARTITIONS_TO_TXN, add_partitions_to_txn, res_add_partitions_to_txn, 0)           \
    X(SL_API_ADD_OFFSETS_TO_TXN, add_offsets_to_txn, res_add_offsets_to_txn, 0)                    \
    X(SL_API_END_TXN, end_txn, res_end_txn, 0)                                                     \
    X(SL_API_TXN_OFFSET_COMMIT, txn_offset_commit, res_txn_offset_commit, 0)                       \
    X(SL_API_DESCRIBE_TRANSACTIONS, describe_transactions, res_describe_transactions, 0)           \
    X(SL_API_LIST_TRANSACTIONS, list_transactions, res_list_transactions, 0)                       \
    X(SL_API_DESCRIBE_PRODUCERS, describe_producers, res_describe_producers, 0)

#define OUT_produce                            out_produce
#define OUT_fetch                              out_fetch
#define OUT_list_offsets                       out_list_offsets
#define OUT_metadata                           out_metadata
#define OUT_offset_commit                      out_offset_commit
#define OUT_offset_fetch                       out_offset_fetch
#define OUT_find_coordinator                   out_find_coordinator
#define OUT_join_group                         out_join_group
#define OUT_heartbeat                          out_heartbeat
#define OUT_leave_group                        out_leave_group
#define OUT_sync_group                         out_sync_group
#define OUT_describe_groups                    out_describe_groups
#define OUT_list_groups                        out_list_groups
#define OUT_sasl_handshake                     NULL
#define OUT_create_topics                      out_create_topics
#define OUT_delete_topics                      out_delete_topics
#define OUT_delete_records                     out_delete_records
#define OUT_init_producer_id                   out_init_producer_id
#define OUT_offset_for_leader_epoch            out_offset_for_leader_epoch
#define OUT_describe_acls                      out_describe_acls
#define OUT_create_acls                        out_create_acls
#define OUT_delete_acls                        out_delete_acls
#define OUT_describe_configs                   out_describe_configs
#define OUT_alter_configs                      out_alter_configs
#define OUT_sasl_authenticate                  NULL
#define OUT_create_partitions                  out_create_partitions
#define OUT_delete_groups                      out_delete_groups
#define OUT_incremental_alter_configs          out_incremental_alter_configs
#define OUT_offset_delete                      out_offset_delete
#define OUT_describe_user_scram_credentials    out_describe_user_scram_credentials
#define OUT_alter_user_scram_credentials       out_alter_user_scram_credentials
#define OUT_describe_cluster                   NULL
#define OUT_add_partitions_to_txn              out_add_partitions_to_txn
#define OUT_add_offsets_to_txn                 out_add_offsets_to_txn
#define OUT_end_txn                            out_end_txn
#define OUT_txn_offset_commit                  out_txn_offset_commit
#define OUT_describe_transactions              out_describe_transactions
#define OUT_list_transactions                  out_list_transactions
#define OUT_describe_producers                 out_describe_producers
#define SL_API_DEC_ITEM(key, name, res, flags) SL_API_DECODER(name)
SL_APIS(SL_API_DEC_ITEM)
#undef SL_API_DEC_ITEM

#define SL_API_ROW(key, name, res, flags)                                                          \
    {key, flags, sizeof(sl_##name##_req), dec_##name, res, OUT_##name},
static const sl_api_desc k_descs[] = {
    /* ApiVersions reads its own body: it must answer versions newer than it can decode. */
    {SL_API_API_VERSIONS, SL_API_PREAUTH, 0, NULL, NULL, NULL},
    SL_APIS(SL_API_ROW)};
#undef SL_API_ROW
#define NDESCS ((int)(sizeof k_descs / sizeof k_descs[0]))

const sl_api_desc *sl_api_desc_for(int16_t key) {
    for (int i = 0; i < NDESCS; i++)
        if (k_descs[i].key == key) return &k_descs[i];
    return NULL;
}

const sl_api_desc *sl_api_desc_at(int i) { return i >= 0 && i < NDESCS ? &k_descs[i] : NULL; }

const sl_api_info *sl_api_desc_info(const sl_api_desc *d) { return sl_api_lookup(d->key); }

void sl_api_outcomes(sl_req *rq, const void *resp) {
    if (rq->api && rq->api->outcomes && !sl_req_finished(rq)) rq->api->outcomes(rq, resp);
}
