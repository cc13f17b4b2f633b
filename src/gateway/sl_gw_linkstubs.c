/* TEMPORARY (branch h14-gwhandlers): weak stand-ins for the gateway functions other branches
 * implement (sl_gateway.c, sl_gw_data.c, sl_gwaddr.c, sl_gwcluster.c), so this branch links and
 * its unit tests run before they land. The real definitions override these; delete this file
 * once all four are on main. None of these is ever reached: b->gw is never set without
 * sl_gateway.c. */
#include <stdlib.h>

#include "gateway/sl_gateway.h"
#include "gateway/sl_gw_int.h"

#define WEAK __attribute__((weak))

WEAK void sl_gw_forward(sl_req *rq, const uint8_t *frame, size_t len, bool expect_response,
                        sl_gw_resp_fn fn, void *arg) {
    abort();
}
WEAK void sl_gw_req_begin(sl_req *rq, sl_wr *w) { abort(); }
WEAK void sl_gw_produce(sl_req *rq) { abort(); }
WEAK void sl_gw_fetch(sl_req *rq) { abort(); }
WEAK void sl_gw_list_offsets(sl_req *rq) { abort(); }
WEAK void sl_gw_offset_for_leader_epoch(sl_req *rq) { abort(); }
WEAK void sl_gw_delete_records(sl_req *rq) { abort(); }
WEAK bool sl_gwcluster_api_range(const sl_gwcluster *c, int16_t key, int16_t *min, int16_t *max) {
    abort();
}
WEAK bool sl_gwcluster_versions_known(const sl_gwcluster *c) { abort(); }
WEAK void sl_gwcluster_learn(sl_gwcluster *c, int16_t version, const sl_metadata_resp *m) {
    abort();
}
WEAK int sl_gwcluster_nodes(const sl_gwcluster *c, const sl_gw_node **out) { abort(); }
WEAK int32_t sl_gwcluster_controller(const sl_gwcluster *c) { abort(); }
WEAK const char *sl_gwcluster_cluster_id(const sl_gwcluster *c) { abort(); }
WEAK bool sl_gwaddr_rewrite_metadata(const sl_gwaddr *a, sl_arena *ar, sl_metadata_resp *m) {
    abort();
}
WEAK bool sl_gwaddr_rewrite_find_coordinator(const sl_gwaddr *a, sl_arena *ar, int16_t version,
                                             sl_find_coordinator_resp *m) {
    abort();
}
WEAK bool sl_gwaddr_rewrite_describe_cluster(const sl_gwaddr *a, sl_arena *ar,
                                             sl_describe_cluster_resp *m) {
    abort();
}
