/* Fetch: returns whole stored batches from the batch holding the fetch offset. A fetch that has
 * less than min_bytes parks on its partitions (no polling): it subscribes to their "appended"
 * event (sl_backend.h), a timer ends it at max_wait_ms. Parked fetches never hold on to data,
 * only to their request. Storage is reached only through the backend's data path
 * (rq->b->storage). */
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "net/sl_loop.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_batch.h"
#include "proto/sl_xform.h"

typedef struct fetch_op {
    sl_req *rq;
    sl_fetch_req req;
    sl_timer *timer;
    sl_waiter *waiters; /* subscriptions, one per partition, while parked */
    int nwaiters;
    int64_t bytes_seen; /* appended to our partitions since parking */
    int64_t bytes_have; /* what the first pass found */
    bool *denied;       /* per request topic: no READ (decided once, before parking) */
    /* read_committed, per waiter: the partition's LSO and high watermark when last looked at */
    int64_t *lso_seen, *hw_seen;
} fetch_op;

static void resp_partition_defaults(sl_fetch_resp_partition *o, int32_t index) {
    sl_fetch_resp_partition_init(o);
    o->partition_index = index;
    /* Kafka's "no high watermark" for a partition it could not read; the schema default is 0. */
    o->high_watermark = -1;
    /* Null, as Kafka answers a read-uncommitted fetch; the schema default is an empty array. */
    o->aborted_transactions_count = -1;
    /* Clients read a size even with an error (librdkafka rejects -1 before v12), so errors
     * carry an empty record set as Kafka's do. */
    o->records = (sl_bytes){(const uint8_t *)"", 0};
}

static sl_stopic *lookup(sl_req *rq, const sl_fetch_req_topic *rt) {
    return sl_storage_topic(&rq->b->storage, rt->topic,
                            rq->h.api_version >= 13 ? &rt->topic_id : NULL);
}

/* Records in whole v2 batches, from their headers (a partial batch at the end counts none). */
static int64_t count_records(const uint8_t *p, size_t len) {
    int64_t n = 0;
    sl_batch_info bi;
    while (len && sl_batch_parse(p, len, &bi) && bi.size <= len) {
        n += (int64_t)bi.last_offset_delta + 1;
        p += bi.size;
        len -= bi.size;
    }
    return n;
}

static int64_t be64_at(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return (int64_t)v;
}
static uint32_t be32_at(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* read_committed: keeps the batches below the last stable offset (a batch never straddles it:
 * the LSO is the first offset of a batch, or the high watermark) and drops a trailing fragment
 * too short to show its base offset. Returns the new length; *next is the offset after the last
 * batch kept, as far as its header shows (else `lso`). */
static size_t cut_at_lso(const uint8_t *d, size_t len, int64_t lso, int64_t *next) {
    size_t pos = 0;
    *next = lso;
    while (len - pos >= SL_BATCH_HEADER_SIZE) {
        if (be64_at(d + pos + SL_BATCH_BASE_OFFSET) >= lso) break;
        int64_t last = be64_at(d + pos + SL_BATCH_BASE_OFFSET) +
                       (int32_t)be32_at(d + pos + SL_BATCH_LAST_OFFSET_DELTA);
        size_t size = 12 + (size_t)be32_at(d + pos + SL_BATCH_LENGTH);
        *next = last + 1 < lso ? last + 1 : lso;
        if (size > len - pos) return len; /* a partial last batch, below the LSO */
        pos += size;
    }
    return pos;
}

/* Builds the response from the logs; returns the record bytes gathered or -1 on OOM. */
static int64_t build(fetch_op *op, sl_fetch_resp *resp) {
    sl_req *rq = op->rq;
    const sl_storage *st = &rq->b->storage;
    sl_fetch_req *req = &op->req;
    int16_t v = rq->h.api_version;
    sl_fetch_resp_init(resp);
    if (!SL_RESP_MIRROR(rq, req->topics, req->topics_count, partitions_count, resp->responses,
                        resp->responses_count, partitions, partitions_count))
        return -1;
    int32_t nt = resp->responses_count;
    int64_t total = 0;
    rq->records_out = 0; /* a parked fetch builds again */
    int64_t budget = req->max_bytes > 0 && v >= 3 ? req->max_bytes : INT32_MAX;
    /* fetch.max.bytes bounds what one answer holds in this process, whatever the request asks
     * (v0-2 ask nothing), and the connection's unsent answers count against it: a client that
     * pipelines fetches without reading gets empty answers, not gigabytes of memory. Over all
     * connections, sluice.fetch.memory.max.bytes does the same for many such clients. */
    sl_conn *c = sl_pending_conn(rq->p);
    int64_t room = (int64_t)rq->b->cfg.fetch_max_bytes - (c ? (int64_t)sl_conn_unsent(c) : 0);
    int64_t all = rq->b->srv ? (int64_t)sl_server_unsent(rq->b->srv) : 0;
    if (room > rq->b->cfg.sluice_fetch_memory_max_bytes - all)
        room = rq->b->cfg.sluice_fetch_memory_max_bytes - all;
    if (budget > room) budget = room;
    bool full = budget <= 0; /* not even the first batch */
    for (int32_t i = 0; i < nt; i++) {
        sl_fetch_req_topic *rt = &req->topics[i];
        sl_fetch_resp_topic *ot = &resp->responses[i];
        ot->topic = rt->topic;
        ot->topic_id = rt->topic_id;
        int32_t np = ot->partitions_count;
        sl_stopic *t = lookup(rq, rt);
        for (int32_t j = 0; j < np; j++) {
            sl_fetch_req_partition *rp = &rt->partitions[j];
            sl_fetch_resp_partition *o = &ot->partitions[j];
            resp_partition_defaults(o, rp->partition);
            if (op->denied && op->denied[i]) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            if (!t) {
                o->error_code =
                    v >= 13 ? SL_KAFKA_UNKNOWN_TOPIC_ID : SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            sl_spart *p = sl_storage_partition(st, t, rp->partition);
            if (!p) {
                o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (rp->current_leader_epoch > 0) {
                o->error_code = SL_KAFKA_UNKNOWN_LEADER_EPOCH;
                continue;
            }
            sl_spart_offsets off;
            sl_storage_offsets(st, p, &off);
            if (off.error) { /* unavailable: this partition only, the others are served */
                o->error_code = off.error;
                continue;
            }
            bool committed = req->isolation_level == 1;
            o->high_watermark = off.high_watermark;
            o->last_stable_offset = off.last_stable;
            o->log_start_offset = off.log_start;
            o->aborted_transactions_count = committed ? 0 : -1;
            if (rp->fetch_offset < off.log_start || rp->fetch_offset > off.log_end) {
                o->error_code = SL_KAFKA_OFFSET_OUT_OF_RANGE;
                continue;
            }
            if (rp->fetch_offset == off.log_end) continue;
            /* read_committed reads below the last stable offset only (KIP-98). */
            if (committed && rp->fetch_offset >= off.last_stable) continue;
            /* fetch.max.bytes binds from the first partition on; only the first batch of the
             * response may exceed it (the log returns the batch holding the offset whole,
             * whatever the limit), so a consumer can always make progress (KIP-74). */
            int64_t limit = rp->partition_max_bytes;
            if (limit > budget - total) limit = budget - total;
            if (limit <= 0) {
                if (total > 0 || full) continue;
                limit = 1;
            }
            uint8_t *data = NULL;
            size_t len = 0;
            o->error_code =
                sl_storage_read(st, p, rp->fetch_offset, (int32_t)limit, rq->a, &data, &len);
            if (o->error_code) continue;
            if (committed) {
                int64_t next;
                len = cut_at_lso(data, len, off.last_stable, &next);
                sl_spart_aborted *ab = NULL;
                int nab = len ? sl_storage_aborted(st, p, rp->fetch_offset, next, rq->a, &ab) : 0;
                if (nab < 0) return -1;
                if (nab > 0) {
                    o->aborted_transactions =
                        sl_arena_alloc(rq->a, (size_t)nab * sizeof *o->aborted_transactions);
                    if (!o->aborted_transactions) return -1;
                    for (int k = 0; k < nab; k++) {
                        sl_fetch_resp_aborted_transaction_init(&o->aborted_transactions[k]);
                        o->aborted_transactions[k].producer_id = ab[k].producer_id;
                        o->aborted_transactions[k].first_offset = ab[k].first_offset;
                    }
                    o->aborted_transactions_count = nab;
                }
                if (!len) continue;
            }
            sl_spart_info pi;
            sl_storage_info(st, p, &pi);
            /* Through the transform chain (sl_xform.h): legacy down-conversion for v0-3, codec
             * checks; untouched sets are the stored bytes, not a copy. */
            o->error_code = sl_xform_fetch(pi.xform,
                                           &(sl_xform_ctx){.a = rq->a,
                                                           .api_version = v,
                                                           .max_bytes = limit,
                                                           .fetch_offset = rp->fetch_offset,
                                                           .topic = rt->topic,
                                                           .partition = rp->partition,
                                                           .rq = rq},
                                           &data, &len, NULL);
            if (o->error_code) continue;
            o->records = (sl_bytes){data, (int32_t)len};
            total += (int64_t)len;
            if (v >= 4) rq->records_out += count_records(data, len);
        }
    }
    return total;
}

static void unpark(fetch_op *op) {
    for (int i = 0; i < op->nwaiters; i++)
        sl_storage_unsubscribe(&op->rq->b->storage, &op->waiters[i]);
    op->nwaiters = 0;
    if (op->timer) {
        sl_timer_cancel(op->rq->b->loop, op->timer);
        op->timer = NULL;
    }
}

static void respond(fetch_op *op) {
    sl_fetch_resp resp;
    if (build(op, &resp) < 0) return sl_req_fail(op->rq, "out of memory");
    SL_RESPOND(op->rq, fetch, &resp);
}

static void complete(fetch_op *op) {
    unpark(op);
    respond(op);
}

static void timed_out(void *ctx) {
    fetch_op *op = ctx;
    op->timer = NULL; /* the loop frees a fired timer */
    complete(op);
}

/* The "appended" event of a partition this fetch is parked on; negative bytes: the partition
 * is going away (topic deleted, broker stopping), so answer now with what there is. complete()
 * unsubscribes every partition of the fetch. */
static void appended(sl_waiter *w, int64_t bytes) {
    fetch_op *op = w->ctx;
    if (bytes >= 0 && op->req.isolation_level == 1) {
        /* read_committed: only what became stable counts. An append inside an open
         * transaction (LSO unchanged) is not readable yet; with nothing open the LSO follows
         * the appends and the bytes count; a marker moves the LSO over a whole transaction,
         * whose size is not known here: answer now. */
        size_t k = (size_t)(w - op->waiters);
        sl_spart_offsets off;
        sl_storage_offsets(&op->rq->b->storage, w->part, &off);
        int64_t lso0 = op->lso_seen[k], hw0 = op->hw_seen[k];
        op->lso_seen[k] = off.last_stable;
        op->hw_seen[k] = off.high_watermark;
        if (off.error || off.last_stable == lso0) return;
        if (lso0 != hw0 || off.last_stable != off.high_watermark) return complete(op);
    }
    if (bytes >= 0) op->bytes_seen += bytes;
    if (bytes < 0 || op->bytes_have + op->bytes_seen >= op->req.min_bytes) complete(op);
}

void sl_h_fetch(sl_req *rq) {
    fetch_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    op->rq = rq;
    int16_t v = rq->h.api_version;
    op->req = *(const sl_fetch_req *)rq->req;
    sl_fetch_req *req = &op->req;
    if (v >= 7 && req->session_id != 0) {
        /* Sessions are declined (session id 0 in every answer), so a client never holds one. */
        sl_fetch_resp resp;
        sl_fetch_resp_init(&resp);
        resp.error_code = SL_KAFKA_FETCH_SESSION_ID_NOT_FOUND;
        SL_RESPOND(rq, fetch, &resp);
        return;
    }
    /* READ on each topic, as the authorization stage decided it, kept per request topic: a
     * parked fetch is rebuilt later, when a topic id may no longer resolve to the name that
     * was authorized. By id (v13+) the name is the topic's, if it exists. */
    if (req->topics_count > 0) {
        op->denied = sl_arena_calloc(rq->a, (size_t)req->topics_count, sizeof *op->denied);
        if (!op->denied) return sl_req_fail(rq, "out of memory");
        const sl_catalog *cat = &rq->b->catalog;
        for (int32_t i = 0; i < req->topics_count; i++) {
            sl_str name = req->topics[i].topic;
            if (v >= 13 && !cat->topic_name(cat->ctx, &req->topics[i].topic_id, rq->a, &name))
                continue;
            op->denied[i] = !sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, name);
        }
    }
    sl_fetch_resp resp;
    int64_t have = build(op, &resp);
    if (have < 0) return sl_req_fail(rq, "out of memory");
    bool errors = false;
    int nparts = 0;
    for (int32_t i = 0; i < resp.responses_count; i++)
        for (int32_t j = 0; j < resp.responses[i].partitions_count; j++) {
            nparts++;
            if (resp.responses[i].partitions[j].error_code) errors = true;
        }
    if (have >= req->min_bytes || req->max_wait_ms <= 0 || errors || nparts == 0 ||
        rq->b->stopping) {
        SL_RESPOND(rq, fetch, &resp);
        return;
    }
    /* Park: the data gathered so far is dropped and read again on completion, so a parked fetch
     * costs its request only. The arena keeps what `build` allocated until the response. */
    op->bytes_have = have;
    op->waiters = sl_arena_calloc(rq->a, (size_t)nparts, sizeof *op->waiters);
    op->lso_seen = sl_arena_calloc(rq->a, (size_t)nparts, sizeof *op->lso_seen);
    op->hw_seen = sl_arena_calloc(rq->a, (size_t)nparts, sizeof *op->hw_seen);
    if (!op->waiters || !op->lso_seen || !op->hw_seen) return sl_req_fail(rq, "out of memory");
    /* Every partition resolved in `build` (no errors), and nothing ran since. */
    const sl_storage *st = &rq->b->storage;
    for (int32_t i = 0; i < req->topics_count; i++) {
        sl_stopic *t = lookup(rq, &req->topics[i]);
        for (int32_t j = 0; t && j < req->topics[i].partitions_count; j++) {
            sl_spart *sp = sl_storage_partition(st, t, req->topics[i].partitions[j].partition);
            sl_spart_offsets off;
            sl_storage_offsets(st, sp, &off);
            op->lso_seen[op->nwaiters] = off.last_stable;
            op->hw_seen[op->nwaiters] = off.high_watermark;
            sl_waiter *w = &op->waiters[op->nwaiters++];
            w->fn = appended;
            w->ctx = op;
            sl_storage_subscribe(st, sp, w);
        }
    }
    op->timer = sl_timer_start(rq->b->loop, req->max_wait_ms, timed_out, op);
    if (!op->timer) complete(op);
}
