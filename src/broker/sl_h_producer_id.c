/* InitProducerId: hands out producer ids for idempotent producers (KIP-98) and bumps epochs
 * (KIP-360). Ids come from the broker's allocator (src/producer/sl_pstore.h). */
#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "proto/gen/sl_msgs.h"

#define SUB "producers"

void sl_h_init_producer_id(sl_req *rq) {
    sl_init_producer_id_req req = *(const sl_init_producer_id_req *)rq->req;
    sl_init_producer_id_resp resp;
    sl_init_producer_id_resp_init(&resp);
    resp.producer_id = -1;
    resp.producer_epoch = -1;
    sl_producers *pr = rq->b->producers;
    if (req.transactional_id.len >= 0 &&
        !sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id)) {
        resp.error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len < 0 &&
               !sl_req_allowed_cluster(rq, SL_ACL_OP_IDEMPOTENT_WRITE) &&
               !sl_req_allowed_any(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC)) {
        /* Kafka 3.x: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic. */
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len >= 0) {
        /* Transactions are not implemented: a non-retriable answer makes clients fail at
         * start-up instead of retrying until a timeout. */
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
    } else if ((req.producer_id < 0) != (req.producer_epoch < 0)) {
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
    } else if (req.producer_id >= 0 && sl_pid_alloc_issued(pr->pids, req.producer_id) &&
               req.producer_epoch < INT16_MAX - 1) {
        /* KIP-360: an idempotent producer bumps its epoch to reset its sequences after an
         * error; the state per partition then accepts sequence 0 at the new epoch. */
        resp.producer_id = req.producer_id;
        resp.producer_epoch = (int16_t)(req.producer_epoch + 1);
    } else {
        /* A new producer, an exhausted epoch, or an id this broker never issued. */
        int64_t id;
        sl_err e = sl_pid_alloc_next(pr->pids, &id);
        if (e) {
            SL_ERROR(SUB, "cannot allocate a producer id", "err=%s", sl_errname(e));
            resp.error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE; /* retriable */
        } else {
            resp.producer_id = id;
            resp.producer_epoch = 0;
        }
    }
    SL_RESPOND(rq, init_producer_id, &resp);
}
