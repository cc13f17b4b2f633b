/* Between the gateway's handler files: the data-path handlers (sl_gw_data.c) that the execute
 * table (sl_gw_handlers.c) names. */
#ifndef SL_GATEWAY_INT_H
#define SL_GATEWAY_INT_H
#include "pipeline/sl_req.h"

/* Produce: strips denied topics (answered TOPIC_AUTHORIZATION_FAILED), runs the transform chain
 * (validation, field protection, seal) per partition, re-encodes when anything changed, forwards
 * (acks=0: no answer), merges the local errors into the upstream's answer and rewrites its
 * NodeEndpoints hints. */
void sl_gw_produce(sl_req *rq);
/* Fetch: strips denied partitions (then sessionless, see docs/gateway.md), forwards, runs the
 * fetch transforms (unseal, field protection) on each returned record set, rewrites the
 * NodeEndpoints hints, merges the local errors. */
void sl_gw_fetch(sl_req *rq);
/* ListOffsets, OffsetForLeaderEpoch, DeleteRecords: strip denied, forward, merge. */
void sl_gw_list_offsets(sl_req *rq);
void sl_gw_offset_for_leader_epoch(sl_req *rq);
void sl_gw_delete_records(sl_req *rq);

#endif
