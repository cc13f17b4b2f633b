/* The generated init functions of nested structs set the schema defaults (src/proto/defs, checked
 * against Kafka's schemas by `gen_proto.py --check`), so handlers can rely on them. Each struct is
 * filled with garbage first: a field the init forgot would keep it. */
#include <stdint.h>
#include <string.h>

#include "proto/gen/sl_msgs.h"
#include "sl_test.h"

#define GARBAGE(x) memset(&(x), 0xA5, sizeof(x))

SL_TEST(proto_defaults_fetch_resp_partition) {
    sl_fetch_resp_partition p;
    GARBAGE(p);
    sl_fetch_resp_partition_init(&p);
    CHECK_EQ(p.partition_index, 0);
    CHECK_EQ(p.error_code, 0);
    /* Kafka's schema gives HighWatermark no default; the handler's -1 is its own choice. */
    CHECK_EQ(p.high_watermark, 0);
    CHECK_EQ(p.last_stable_offset, -1);
    CHECK_EQ(p.log_start_offset, -1);
    CHECK_EQ(p.preferred_read_replica, -1);
    CHECK_EQ(p.diverging_epoch.epoch, -1);
    CHECK_EQ(p.diverging_epoch.end_offset, -1);
    CHECK_EQ(p.current_leader.leader_id, -1);
    CHECK_EQ(p.current_leader.leader_epoch, -1);
    CHECK_EQ(p.snapshot_id.end_offset, -1);
    CHECK_EQ(p.snapshot_id.epoch, -1);
    CHECK_EQ(p.aborted_transactions_count, 0);
    CHECK(p.aborted_transactions == NULL);
    CHECK_EQ(p.records.len, 0);

    sl_fetch_resp_current_leader cl;
    GARBAGE(cl);
    sl_fetch_resp_current_leader_init(&cl);
    CHECK_EQ(cl.leader_id, -1);
    CHECK_EQ(cl.leader_epoch, -1);
}

SL_TEST(proto_defaults_fetch_req_nested) {
    sl_fetch_req_partition p;
    GARBAGE(p);
    sl_fetch_req_partition_init(&p);
    CHECK_EQ(p.current_leader_epoch, -1);
    CHECK_EQ(p.last_fetched_epoch, -1);
    CHECK_EQ(p.log_start_offset, -1);
    CHECK_EQ(p.fetch_offset, 0);
    sl_fetch_req_replica_state rs;
    GARBAGE(rs);
    sl_fetch_req_replica_state_init(&rs);
    CHECK_EQ(rs.replica_id, -1);
    CHECK_EQ(rs.replica_epoch, -1);
    sl_fetch_resp_node_endpoint ne;
    GARBAGE(ne);
    sl_fetch_resp_node_endpoint_init(&ne);
    CHECK_EQ(ne.rack.len, -1); /* default=null */
    CHECK_EQ(ne.host.len, 0);
}

SL_TEST(proto_defaults_produce_resp_partition) {
    sl_produce_resp_partition p;
    GARBAGE(p);
    sl_produce_resp_partition_init(&p);
    /* No schema default for BaseOffset; the handler's -1 "no offset" is its own choice. */
    CHECK_EQ(p.base_offset, 0);
    CHECK_EQ(p.log_append_time_ms, -1);
    CHECK_EQ(p.log_start_offset, -1);
    CHECK_EQ(p.error_message.len, -1); /* default=null */
    CHECK_EQ(p.record_errors_count, 0);
    CHECK_EQ(p.current_leader.leader_id, -1);
    CHECK_EQ(p.current_leader.leader_epoch, -1);
    sl_produce_resp_record_error re;
    GARBAGE(re);
    sl_produce_resp_record_error_init(&re);
    CHECK_EQ(re.batch_index, 0);
    CHECK_EQ(re.batch_index_error_message.len, -1);
}

SL_TEST(proto_defaults_other_nested) {
    sl_list_offsets_resp_partition lo;
    GARBAGE(lo);
    sl_list_offsets_resp_partition_init(&lo);
    CHECK_EQ(lo.timestamp, -1);
    CHECK_EQ(lo.offset, -1);
    CHECK_EQ(lo.leader_epoch, -1);
    CHECK_EQ(lo.old_style_offsets_count, 0);

    sl_offset_for_leader_epoch_resp_partition oe;
    GARBAGE(oe);
    sl_offset_for_leader_epoch_resp_partition_init(&oe);
    CHECK_EQ(oe.leader_epoch, -1);
    CHECK_EQ(oe.end_offset, -1);

    sl_metadata_resp_topic mt;
    GARBAGE(mt);
    sl_metadata_resp_topic_init(&mt);
    CHECK_EQ(mt.topic_authorized_operations, INT32_MIN);
    CHECK_EQ(mt.is_internal, false);
    CHECK_EQ(mt.partitions_count, 0);
    sl_metadata_resp_partition mp;
    GARBAGE(mp);
    sl_metadata_resp_partition_init(&mp);
    CHECK_EQ(mp.leader_epoch, -1);
    sl_metadata_resp_broker mb;
    GARBAGE(mb);
    sl_metadata_resp_broker_init(&mb);
    CHECK_EQ(mb.rack.len, -1);

    sl_create_topics_resp_topic ct;
    GARBAGE(ct);
    sl_create_topics_resp_topic_init(&ct);
    CHECK_EQ(ct.num_partitions, -1);
    CHECK_EQ(ct.replication_factor, -1);
    CHECK_EQ(ct.configs_count, 0);
    sl_create_topics_resp_config cc;
    GARBAGE(cc);
    sl_create_topics_resp_config_init(&cc);
    CHECK_EQ(cc.config_source, -1);

    sl_describe_configs_resp_config dc;
    GARBAGE(dc);
    sl_describe_configs_resp_config_init(&dc);
    CHECK_EQ(dc.config_source, -1);
    CHECK_EQ(dc.config_type, 0);

    sl_delete_topics_resp_result dt;
    GARBAGE(dt);
    sl_delete_topics_resp_result_init(&dt);
    CHECK_EQ(dt.error_message.len, -1);

    sl_describe_groups_resp_group dg;
    GARBAGE(dg);
    sl_describe_groups_resp_group_init(&dg);
    CHECK_EQ(dg.authorized_operations, INT32_MIN);
    CHECK_EQ(dg.members_count, 0);

    sl_offset_fetch_resp_group_partition op;
    GARBAGE(op);
    sl_offset_fetch_resp_group_partition_init(&op);
    CHECK_EQ(op.committed_leader_epoch, -1);
    CHECK_EQ(op.committed_offset, 0);

    sl_describe_acls_resp_resource ar;
    GARBAGE(ar);
    sl_describe_acls_resp_resource_init(&ar);
    CHECK_EQ(ar.pattern_type, 3);
}
