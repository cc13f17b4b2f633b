/* Produce: run each partition's record set through the produce transform chain (legacy
 * up-conversion, validation of headers + CRC, never per record), hand it to the backend's
 * append (sl_backend.h: the local one checks producer id/epoch/sequence, answers a retried batch
 * with its original offset, appends as received and tells parked fetches), and answer per acks:
 * 0 never, 1 after the append, -1 once the backend reports every touched partition durable (the
 * local one: group commit shared with every other request in flight). */
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
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

/* True (error set) when the partition is unavailable (its stored data could not be opened). */
static bool partition_error(const sl_storage *st, sl_spart *p, sl_produce_resp_partition *o) {
    sl_spart_offsets off;
    sl_storage_offsets(st, p, &off);
    o->error_code = off.error;
    return off.error != 0;
}

/* The durability callback of one partition's append. Each holds the request: if it failed
 * meanwhile (out of memory), the callback still finds its context, and only the last one lets
 * the arena go. */
static void durable(void *ctx, int16_t err) {
    flush_ctx *fc = ctx;
    produce_op *op = fc->op;
    sl_req *rq = op->rq;
    if (err) {
        fc->part->error_code = err;
        fc->part->base_offset = -1;
    }
    if (--op->outstanding == 0 && op->queued_all && !sl_req_finished(rq)) finish(op);
    sl_req_release(rq);
}

/* Transactional batches (attributes bit 4) may only go to a partition the coordinator added to
 * that producer's ongoing transaction, under the request's transactional id: otherwise any
 * writer could open a "transaction" no coordinator will ever end, holding the last stable
 * offset (and every read_committed consumer) back for good. Control batches (bit 5) come only
 * from the coordinator's markers. SL_KAFKA_NONE when the set may be appended. */
static int16_t txn_check(sl_req *rq, sl_str tid, sl_str topic, int32_t partition,
                         sl_bytes records) {
    const uint8_t *d = records.p;
    size_t len = (size_t)records.len;
    while (len > 0) {
        sl_batch_info bi;
        if (!sl_batch_parse(d, len, &bi)) return SL_KAFKA_CORRUPT_MESSAGE;
        d += bi.size;
        len -= bi.size;
        if (bi.attributes & 0x20) return SL_KAFKA_INVALID_RECORD;
        if (!(bi.attributes & 0x10)) continue;
        if (tid.len < 0 || bi.producer_id < 0) return SL_KAFKA_INVALID_RECORD;
        int16_t e =
            sl_txn_coord_verify(rq->b, tid, bi.producer_id, bi.producer_epoch, topic, partition);
        if (e) return e;
    }
    return SL_KAFKA_NONE;
}

void sl_h_produce(sl_req *rq) {
    sl_produce_req req = *(const sl_produce_req *)rq->req;
    int16_t v = rq->h.api_version;
    const sl_storage *st = &rq->b->storage;
    produce_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    op->rq = rq;
    sl_produce_resp_init(&op->resp);
    if (!SL_RESP_MIRROR(rq, req.topic_data, req.topic_data_count, partition_data_count,
                        op->resp.responses, op->resp.responses_count, partition_responses,
                        partition_responses_count))
        return sl_req_fail(rq, "out of memory");
    int32_t nt = op->resp.responses_count;
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
        int32_t np = ot->partition_responses_count;
        /* Checked before existence, as Kafka: a denied caller learns nothing about the topic. */
        bool write_ok = sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, rt->name);
        sl_stopic *t = sl_storage_topic(st, rt->name, NULL);
        for (int32_t j = 0; j < np; j++) {
            sl_produce_req_partition *rp = &rt->partition_data[j];
            sl_produce_resp_partition *o = &ot->partition_responses[j];
            sl_produce_resp_partition_init(o);
            o->index = rp->index;
            /* Kafka's "no offset" until the append succeeds; the schema default is 0. */
            o->base_offset = -1;
            sl_spart *p = t ? sl_storage_partition(st, t, rp->index) : NULL;
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
            } else if (partition_error(st, p, o)) {
                /* unavailable: answered for this partition, the others are appended */
            } else {
                sl_spart_info pi;
                sl_storage_info(st, p, &pi);
                /* Legacy up-conversion, validation, registered transforms (sl_xform.h):
                 * everything after this line sees only valid magic-2 batches. */
                sl_xform_ctx xc = {.a = rq->a,
                                   .api_version = v,
                                   .now_ms = sl_wall_ms(),
                                   .max_bytes = pi.max_message_bytes,
                                   .topic = rt->name,
                                   .partition = rp->index,
                                   .rq = rq};
                char why[256] = "";
                xc.why = why;
                xc.whylen = sizeof why;
                o->error_code = sl_xform_produce(pi.xform, &xc, &rp->records, NULL);
                if (!o->error_code)
                    o->error_code =
                        txn_check(rq, req.transactional_id, rt->name, rp->index, rp->records);
                /* A set a transform refused (field protection): the producer is told why. */
                if (o->error_code && why[0] && v >= 8) {
                    size_t wn = strlen(why);
                    const char *wp = sl_arena_dup(rq->a, why, wn);
                    if (wp) o->error_message = (sl_str){wp, (int32_t)wn};
                }
                if (o->error_code) {
                    sl_spart_offsets off;
                    sl_storage_offsets(st, p, &off);
                    o->log_start_offset = off.log_start;
                } else {
                    /* acks=-1: the durability callback is counted (and holds the request)
                     * before the append, which may run it inline. */
                    flush_ctx *fc = NULL;
                    if (req.acks == -1) {
                        if (!(fc = sl_arena_alloc(rq->a, sizeof *fc)))
                            return sl_req_fail(rq, "out of memory");
                        fc->op = op;
                        fc->part = o;
                        op->outstanding++;
                        sl_req_hold(rq);
                    }
                    /* The frame lives in this request's arena, which we own: batches are
                     * stamped in place and appended without a copy. */
                    sl_append_result ar;
                    o->error_code =
                        sl_storage_append(st, p, (uint8_t *)rp->records.p, (size_t)rp->records.len,
                                          rq->a, &ar, fc ? durable : NULL, fc);
                    rq->records_in += ar.records;
                    o->base_offset = ar.base_offset;
                    o->log_start_offset = ar.log_start;
                    if (o->error_code && fc) { /* no callback comes */
                        op->outstanding--;
                        sl_req_release(rq);
                    }
                    if (!o->error_code && ar.duplicate)
                        SL_DEBUG("produce", "duplicate batch answered with its original offset",
                                 "topic=%s partition=%d offset=%lld", pi.topic, rp->index,
                                 (long long)ar.base_offset);
                }
            }
            if (o->error_code) {
                any_error = true;
                if (o->error_code == SL_KAFKA_CORRUPT_MESSAGE)
                    SL_WARN("produce", "rejected corrupt batch", "topic=%.*s partition=%d",
                            t ? (int)rt->name.len : 1, t ? rt->name.p : "?", rp->index);
                continue;
            }
        }
    }
    if (req.acks == 0) {
        /* No answer is encoded, but the lifecycle still records what was appended. */
        sl_api_outcomes(rq, &op->resp);
        /* No response exists to carry an error, so Kafka closes the connection instead. */
        if (any_error) return sl_req_fail(rq, "acks=0 produce failed");
        return sl_req_noreply(rq);
    }
    op->queued_all = true;
    if (op->outstanding == 0) finish(op);
}
