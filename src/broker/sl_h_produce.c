/* Produce: validate each partition's batches (headers + CRC, never per record), check their
 * producer id/epoch/sequence against the partition's idempotent-producer state (a retried batch
 * is answered with its original offset and not appended again), append them as received, and
 * answer per acks: 0 never, 1 after the append, -1 once the flusher has made every touched log
 * durable (group commit shared with every other request in flight; a duplicate waits for the
 * same flush, since its original may not be durable yet). */
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_batch.h"
#include "proto/sl_xform.h"

typedef struct produce_op {
    sl_req *rq;
    sl_produce_resp resp;
    int outstanding; /* flush callbacks still to come */
    bool queued_all; /* every flush request has been issued */
} produce_op;

typedef struct flush_ctx {
    produce_op *op;
    sl_produce_resp_partition *part;
} flush_ctx;

static void finish(produce_op *op) { SL_RESPOND(op->rq, produce, &op->resp); }

/* Each flush request holds the request: if it failed meanwhile (out of memory), the callback
 * still finds its context, and only the last one lets the arena go. */
static void flushed(void *ctx, sl_err e) {
    flush_ctx *fc = ctx;
    produce_op *op = fc->op;
    sl_req *rq = op->rq;
    if (e) {
        SL_ERROR("produce", "flush failed", "err=%s", sl_errname(e));
        fc->part->error_code = SL_KAFKA_KAFKA_STORAGE_ERROR;
        fc->part->base_offset = -1;
    }
    if (--op->outstanding == 0 && op->queued_all && !sl_req_finished(rq)) finish(op);
    sl_req_release(rq);
}

/* Appends the validated record set batch by batch; returns a Kafka error code. */
static int16_t append_set(sl_req *rq, sl_partition *p, uint8_t *data, size_t len, int64_t *first) {
    *first = -1;
    while (len > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(data, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        /* The leader epoch is outside the CRC; one epoch (0) everywhere on a single node. */
        memset(data + SL_BATCH_LEADER_EPOCH, 0, 4);
        int64_t base;
        sl_err e = sl_log_append(p->log, data, bi.size, bi.record_count, bi.max_timestamp, &base);
        if (e) {
            SL_ERROR("produce", "append failed", "topic=%s partition=%d err=%s", p->topic->name,
                     p->index, sl_errname(e));
            return sl_err_to_kafka(e);
        }
        if (*first < 0) *first = base;
        rq->records_in += bi.record_count;
        /* Only exhausted memory fails this; the batch is in the log either way, so the answer
         * stays success (a retry of it would then not be recognised, hence the error line). */
        if (sl_pstate_record(p->pstate, &bi, base, sl_wall_ms()))
            SL_ERROR("produce", "producer state not updated", "topic=%s partition=%d err=%s",
                     p->topic->name, p->index, sl_errname(SL_ENOMEM));
        data += bi.size;
        len -= bi.size;
    }
    return SL_KAFKA_NONE;
}

void sl_h_produce(sl_req *rq) {
    sl_produce_req req = *(const sl_produce_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_broker *b = rq->b;
    produce_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    op->rq = rq;
    sl_produce_resp_init(&op->resp);
    int32_t nt = req.topic_data_count > 0 ? req.topic_data_count : 0;
    if (!SL_RESP_ARRAY(rq, op->resp.responses, op->resp.responses_count, nt))
        return sl_req_fail(rq, "out of memory");
    bool acks_ok = req.acks == -1 || req.acks == 0 || req.acks == 1;
    /* Kafka: a transactional produce needs WRITE on its transactional id, or nothing goes. */
    bool txn_ok =
        v < 3 || req.transactional_id.len < 0 ||
        sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id);
    bool any_error = false;
    for (int32_t i = 0; i < nt; i++) {
        sl_produce_req_topic *rt = &req.topic_data[i];
        sl_produce_resp_topic *ot = &op->resp.responses[i];
        ot->name = rt->name;
        int32_t np = rt->partition_data_count > 0 ? rt->partition_data_count : 0;
        ot->partition_responses =
            sl_arena_calloc(rq->a, (size_t)(np ? np : 1), sizeof *ot->partition_responses);
        if (!ot->partition_responses) return sl_req_fail(rq, "out of memory");
        ot->partition_responses_count = np;
        /* Checked before existence, as Kafka: a denied caller learns nothing about the topic. */
        bool write_ok = sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, rt->name);
        sl_topic *t = sl_topics_find(b->topics, rt->name);
        for (int32_t j = 0; j < np; j++) {
            sl_produce_req_partition *rp = &rt->partition_data[j];
            sl_produce_resp_partition *o = &ot->partition_responses[j];
            sl_produce_resp_partition_init(o);
            o->index = rp->index;
            /* Kafka's "no offset" until the append succeeds; the schema default is 0. */
            o->base_offset = -1;
            sl_partition *p =
                t && rp->index >= 0 && rp->index < t->npart ? t->parts[rp->index] : NULL;
            if (!txn_ok) {
                o->error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            } else if (!write_ok) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            } else if (!acks_ok) {
                o->error_code = SL_KAFKA_INVALID_REQUIRED_ACKS;
            } else if (!p) {
                o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (rp->records.len <= 0) {
                o->error_code = SL_KAFKA_INVALID_RECORD;
            } else {
                int64_t max_bytes = sl_tcfg_value(b->topics, t, SL_TCFG_MAX_MESSAGE_BYTES);
                /* Legacy up-conversion, validation, registered transforms (sl_xform.h):
                 * everything after this line sees only valid magic-2 batches. */
                sl_xform_ctx xc = {.a = rq->a,
                                   .api_version = v,
                                   .now_ms = sl_wall_ms(),
                                   .max_bytes = max_bytes,
                                   .topic = rt->name,
                                   .partition = rp->index};
                o->error_code = sl_xform_produce(p->xform, &xc, &rp->records, NULL);
                int64_t dup = -1;
                if (o->error_code == 0)
                    o->error_code = sl_pstate_check_set(p->pstate, rp->records.p,
                                                        (size_t)rp->records.len, &dup);
                if (o->error_code == 0 && dup >= 0) {
                    o->base_offset = dup; /* Kafka answers a retry with the original offset */
                    SL_DEBUG("produce", "duplicate batch answered with its original offset",
                             "topic=%s partition=%d offset=%lld", t->name, rp->index,
                             (long long)dup);
                } else if (o->error_code == 0) {
                    /* The frame lives in this request's arena, which we own: batches are
                     * stamped in place and appended without a copy. */
                    uint8_t *data = (uint8_t *)rp->records.p;
                    o->error_code =
                        append_set(rq, p, data, (size_t)rp->records.len, &o->base_offset);
                    if (o->base_offset >= 0) {
                        sl_fetch_wake(b, p, rp->records.len);
                        sl_pstate_after_append(p->pstate, p->log);
                    }
                }
                o->log_start_offset = sl_log_start_offset(p->log);
            }
            if (o->error_code) {
                any_error = true;
                if (o->error_code == SL_KAFKA_CORRUPT_MESSAGE)
                    SL_WARN("produce", "rejected corrupt batch", "topic=%s partition=%d",
                            t ? t->name : "?", rp->index);
                continue;
            }
            if (req.acks == -1) {
                flush_ctx *fc = sl_arena_alloc(rq->a, sizeof *fc);
                if (!fc) return sl_req_fail(rq, "out of memory");
                fc->op = op;
                fc->part = o;
                op->outstanding++;
                sl_req_hold(rq);
                sl_flusher_request(b->flusher, p->log, flushed, fc);
            }
        }
    }
    if (req.acks == 0) {
        /* No response exists to carry an error, so Kafka closes the connection instead. */
        if (any_error) return sl_req_fail(rq, "acks=0 produce failed");
        return sl_req_noreply(rq);
    }
    op->queued_all = true;
    if (op->outstanding == 0) finish(op);
}
