/* DescribeProducers (KIP-664; `kafka-transactions.sh describe-producers`): the active producers
 * of each partition asked for, as the partition's leader knows them. Everything comes from the
 * partition's own state: the idempotent-producer table (sl_pstate: epoch, last sequence, time of
 * the last append) and the transaction state (sl_txnpart: the first offset of the producer's
 * open transaction there). docs/transactions.md.
 *
 * Differences from Kafka, said in the docs: last_timestamp is the broker's wall-clock time of the
 * producer's last append (Kafka: the batch's max timestamp; Sluice keeps the former for
 * expiry); coordinator_epoch is 0 for a producer id the transaction coordinator holds (the
 * epoch Sluice's single coordinator writes into its markers) and -1 for the others (Kafka: -1
 * until the producer's first marker).
 *
 * READ on the topic, per partition (denied: TOPIC_AUTHORIZATION_FAILED), decided by the
 * pipeline's stage (pipeline/sl_api.c names the topics). Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "proto/gen/sl_msgs.h"

/* One producer of a partition being described. */
typedef struct prod {
    sl_describe_producers_resp_producer *out;
} prod;

typedef struct collect_ctx {
    prod *v;
    int32_t n, cap;
    sl_describe_producers_resp_producer *outs;
} collect_ctx;

static void collect(void *arg, const sl_pstate_producer *p) {
    collect_ctx *c = arg;
    if (c->n >= c->cap || p->n == 0) return;
    sl_describe_producers_resp_producer *o = &c->outs[c->n];
    sl_describe_producers_resp_producer_init(o);
    o->producer_id = p->pid;
    o->producer_epoch = p->epoch;
    o->last_sequence = p->b[p->n - 1].last_seq;
    o->last_timestamp = p->last_ms;
    o->coordinator_epoch = -1;
    c->v[c->n++] = (prod){o};
}

/* Fills `o` with partition `p`'s active producers (arrays in the request arena). */
static bool describe_partition(sl_req *rq, sl_partition *p,
                               sl_describe_producers_resp_partition *o) {
    size_t n = sl_pstate_count(p->pstate);
    if (n > INT32_MAX / 2) n = INT32_MAX / 2;
    if (!SL_RESP_ARRAY(rq, o->active_producers, o->active_producers_count, (int32_t)n))
        return false;
    collect_ctx c = {sl_arena_calloc(rq->a, n ? n : 1, sizeof(prod)), 0, (int32_t)n,
                     o->active_producers};
    if (!c.v) return false;
    sl_pstate_foreach(p->pstate, collect, &c);
    o->active_producers_count = c.n;
    for (int32_t k = 0; k < c.n; k++) {
        sl_describe_producers_resp_producer *out = c.v[k].out;
        /* From the partition's own state: no log read on the loop per request. */
        out->current_txn_start_offset = sl_txnpart_open_first(p, out->producer_id);
        if (sl_txn_coord_has_pid(rq->b, out->producer_id)) out->coordinator_epoch = 0;
    }
    return true;
}

void sl_h_describe_producers(sl_req *rq) {
    sl_describe_producers_req req = *(const sl_describe_producers_req *)rq->req;
    sl_describe_producers_resp resp;
    sl_describe_producers_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partition_indexes_count, resp.topics,
                        resp.topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.topics_count; i++) {
        const sl_describe_producers_req_topic *rt = &req.topics[i];
        sl_describe_producers_resp_topic *ot = &resp.topics[i];
        ot->name = rt->name;
        bool ok = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, rt->name);
        sl_topic *t = ok ? sl_topics_find(rq->b->topics, rt->name) : NULL;
        for (int32_t j = 0; j < ot->partitions_count; j++) {
            int32_t idx = rt->partition_indexes[j];
            sl_describe_producers_resp_partition *o = &ot->partitions[j];
            sl_describe_producers_resp_partition_init(o);
            o->partition_index = idx;
            o->active_producers_count = 0;
            sl_partition *p = t && idx >= 0 && idx < t->npart ? t->parts[idx] : NULL;
            if (!ok)
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            else if (!p)
                o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            else if (p->unavailable || !p->log || !p->pstate)
                o->error_code = SL_KAFKA_KAFKA_STORAGE_ERROR;
            else if (!describe_partition(rq, p, o))
                return sl_req_fail(rq, "out of memory");
        }
    }
    SL_RESPOND(rq, describe_producers, &resp);
}
