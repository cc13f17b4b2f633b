/* InitProducerId: hands out producer ids for idempotent producers (KIP-98) and bumps epochs
 * (KIP-360). Ids and epochs come from the metadata seam (pipeline/sl_backend.h; locally the
 * broker's allocator, src/producer/sl_pstore.h); with a transactional id, from the transaction
 * coordinator (sl_h_txn.c). */
#include "acl/sl_acl.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

void sl_h_init_producer_id(sl_req *rq) {
    sl_init_producer_id_req req = *(const sl_init_producer_id_req *)rq->req;
    sl_init_producer_id_resp resp;
    sl_init_producer_id_resp_init(&resp);
    resp.producer_id = -1;
    resp.producer_epoch = -1;
    if (req.transactional_id.len >= 0 &&
        !sl_req_allowed(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TRANSACTIONAL_ID, req.transactional_id)) {
        resp.error_code = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len < 0 &&
               !sl_req_allowed_cluster(rq, SL_ACL_OP_IDEMPOTENT_WRITE) &&
               !sl_req_allowed_any(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC)) {
        /* Kafka 3.x: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic. */
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    } else if (req.transactional_id.len >= 0) {
        int64_t id;
        int16_t epoch;
        resp.error_code =
            sl_txn_coord_init_producer_id(rq, req.transactional_id, req.transaction_timeout_ms,
                                          req.producer_id, req.producer_epoch, &id, &epoch);
        if (!resp.error_code) {
            resp.producer_id = id;
            resp.producer_epoch = epoch;
        }
    } else if ((req.producer_id < 0) != (req.producer_epoch < 0)) {
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
    } else {
        int64_t id;
        int16_t epoch;
        resp.error_code = sl_meta_init_producer_id(&rq->b->meta, req.producer_id,
                                                   req.producer_epoch, &id, &epoch);
        if (!resp.error_code) {
            resp.producer_id = id;
            resp.producer_epoch = epoch;
        }
    }
    SL_RESPOND(rq, init_producer_id, &resp);
}
