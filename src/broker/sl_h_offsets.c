/* Offsets: ListOffsets, OffsetForLeaderEpoch, DeleteRecords, over the backend's data path
 * (sl_backend.h). One leader epoch (0) everywhere. */
#include <string.h>

#include "acl/sl_acl.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

enum {
    TS_LATEST = -1,
    TS_EARLIEST = -2,
    TS_MAX = -3,
    TS_EARLIEST_LOCAL = -4,
    TS_LATEST_TIERED = -5
};

/* Partition `idx` of `t` (NULL: no such topic), or NULL with *err set to the Kafka code to
 * answer. */
static sl_spart *find_part(const sl_storage *st, sl_stopic *t, int32_t idx, int16_t *err) {
    sl_spart *p = t ? sl_storage_partition(st, t, idx) : NULL;
    *err = p ? 0 : SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    if (p) { /* an unavailable partition answers its error to every offsets request */
        sl_spart_offsets so;
        sl_storage_offsets(st, p, &so);
        if ((*err = so.error) != 0) return NULL;
    }
    return p;
}

static int16_t leader_epoch_check(int32_t current) {
    return current > 0 ? SL_KAFKA_UNKNOWN_LEADER_EPOCH : 0;
}

void sl_h_list_offsets(sl_req *rq) {
    sl_list_offsets_req req = *(const sl_list_offsets_req *)rq->req;
    const sl_storage *st = &rq->b->storage;
    sl_list_offsets_resp resp;
    sl_list_offsets_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp.topics,
                        resp.topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.topics_count; i++) {
        sl_list_offsets_req_topic *rt = &req.topics[i];
        sl_list_offsets_resp_topic *ot = &resp.topics[i];
        ot->name = rt->name;
        int32_t np = ot->partitions_count;
        int64_t *olds = sl_arena_calloc(rq->a, (size_t)(np ? np : 1), sizeof *olds);
        if (!olds) return sl_req_fail(rq, "out of memory");
        bool ok = sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, rt->name);
        sl_stopic *t = sl_storage_topic(st, rt->name, NULL);
        for (int32_t j = 0; j < np; j++) {
            sl_list_offsets_req_partition *rp = &rt->partitions[j];
            sl_list_offsets_resp_partition *o = &ot->partitions[j];
            sl_list_offsets_resp_partition_init(o);
            o->partition_index = rp->partition_index;
            o->old_style_offsets = &olds[j];
            o->old_style_offsets_count = 0;
            if (!ok) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            sl_spart *p = find_part(st, t, rp->partition_index, &o->error_code);
            if (!p) continue;
            if ((o->error_code = leader_epoch_check(rp->current_leader_epoch))) continue;
            int64_t off = -1, ts = -1;
            sl_spart_offsets so;
            switch (rp->timestamp) {
            case TS_LATEST:
            case TS_LATEST_TIERED:
                sl_storage_offsets(st, p, &so);
                /* read_committed sees the log up to its last stable offset (KIP-98). */
                off = req.isolation_level == 1 ? so.last_stable : so.log_end;
                break;
            case TS_EARLIEST:
            case TS_EARLIEST_LOCAL:
                sl_storage_offsets(st, p, &so);
                off = so.log_start;
                break;
            case TS_MAX:
                o->error_code = sl_storage_max_timestamp(st, p, &off, &ts);
                break;
            default:
                if (rp->timestamp < 0)
                    o->error_code = SL_KAFKA_INVALID_REQUEST;
                else
                    o->error_code = sl_storage_offset_for_time(st, p, rp->timestamp, &off, &ts);
            }
            if (o->error_code) continue;
            o->offset = off;
            o->timestamp = ts;
            o->leader_epoch = off >= 0 ? 0 : -1;
            if (off >= 0 && rp->max_num_offsets > 0) {
                olds[j] = off;
                o->old_style_offsets_count = 1;
            }
        }
    }
    SL_RESPOND(rq, list_offsets, &resp);
}

void sl_h_offset_for_leader_epoch(sl_req *rq) {
    sl_offset_for_leader_epoch_req req = *(const sl_offset_for_leader_epoch_req *)rq->req;
    const sl_storage *st = &rq->b->storage;
    sl_offset_for_leader_epoch_resp resp;
    sl_offset_for_leader_epoch_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp.topics,
                        resp.topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.topics_count; i++) {
        sl_offset_for_leader_epoch_req_topic *rt = &req.topics[i];
        sl_offset_for_leader_epoch_resp_topic *ot = &resp.topics[i];
        ot->topic = rt->topic;
        int32_t np = ot->partitions_count;
        bool ok = sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, rt->topic);
        sl_stopic *t = sl_storage_topic(st, rt->topic, NULL);
        for (int32_t j = 0; j < np; j++) {
            sl_offset_for_leader_epoch_req_partition *rp = &rt->partitions[j];
            sl_offset_for_leader_epoch_resp_partition *o = &ot->partitions[j];
            sl_offset_for_leader_epoch_resp_partition_init(o);
            o->partition = rp->partition;
            if (!ok) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            sl_spart *p = find_part(st, t, rp->partition, &o->error_code);
            if (!p) continue;
            if ((o->error_code = leader_epoch_check(rp->current_leader_epoch))) continue;
            /* Epoch 0 is the only epoch there has ever been: it ends at the log end. A later
             * epoch is unknown (undefined offsets, as Kafka answers). */
            if (rp->leader_epoch <= 0) {
                sl_spart_offsets so;
                sl_storage_offsets(st, p, &so);
                o->leader_epoch = 0;
                o->end_offset = so.log_end;
            }
        }
    }
    SL_RESPOND(rq, offset_for_leader_epoch, &resp);
}

void sl_h_delete_records(sl_req *rq) {
    sl_delete_records_req req = *(const sl_delete_records_req *)rq->req;
    const sl_storage *st = &rq->b->storage;
    sl_delete_records_resp resp;
    sl_delete_records_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req.topics, req.topics_count, partitions_count, resp.topics,
                        resp.topics_count, partitions, partitions_count))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < resp.topics_count; i++) {
        sl_delete_records_req_topic *rt = &req.topics[i];
        sl_delete_records_resp_topic *ot = &resp.topics[i];
        ot->name = rt->name;
        int32_t np = ot->partitions_count;
        bool ok = sl_req_allowed(rq, SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, rt->name);
        sl_stopic *t = sl_storage_topic(st, rt->name, NULL);
        for (int32_t j = 0; j < np; j++) {
            sl_delete_records_req_partition *rp = &rt->partitions[j];
            sl_delete_records_resp_partition *o = &ot->partitions[j];
            sl_delete_records_resp_partition_init(o);
            o->partition_index = rp->partition_index;
            /* Kafka's "no low watermark" for an untrimmed partition; the schema default is 0. */
            o->low_watermark = -1;
            if (!ok) {
                o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                continue;
            }
            sl_spart *p = find_part(st, t, rp->partition_index, &o->error_code);
            if (!p) continue;
            sl_spart_offsets so;
            sl_storage_offsets(st, p, &so);
            int64_t target = rp->offset == -1 ? so.log_end : rp->offset;
            if (target < 0 || target > so.log_end) {
                o->error_code = SL_KAFKA_OFFSET_OUT_OF_RANGE;
                continue;
            }
            int64_t low = -1;
            if ((o->error_code = sl_storage_delete_records(st, p, target, &low))) continue;
            o->low_watermark = low;
        }
    }
    SL_RESPOND(rq, delete_records, &resp);
}
