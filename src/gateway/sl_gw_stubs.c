/* TEMPORARY (issue 14 in progress): weak placeholders for the gateway modules being written in
 * parallel, so main links while they land one by one. Each real module's strong definitions
 * replace these; the file is deleted once all have landed. Nothing here is reachable from
 * `sluice serve`. */
#include <stdio.h>

#include "gateway/sl_gateway.h"
#include "gateway/sl_gw_int.h"

#define W __attribute__((weak))

W sl_upstream_cfg *sl_upstream_cfg_new(const sl_config *cfg, char *err, size_t elen) {
    snprintf(err, elen, "sluice gateway: not built yet");
    return NULL;
}
W void sl_upstream_cfg_free(sl_upstream_cfg *u) {}
W bool sl_upstream_cfg_bootstrap(const sl_upstream_cfg *u, int i, char *host, size_t hcap,
                                 int *port) {
    return false;
}
W const sl_upstream_cfg *sl_upstream_cfg_for_principal(const sl_upstream_cfg *u,
                                                       const char *principal) {
    return NULL;
}
W sl_upconn *sl_upconn_new(sl_loop *loop, const sl_upstream_cfg *cfg, const sl_upconn_events *ev,
                           int32_t node, const char *host, int port) {
    return NULL;
}
W void sl_upconn_ref(sl_upconn *u) {}
W void sl_upconn_unref(sl_upconn *u) {}
W void sl_upconn_send(sl_upconn *u, const uint8_t *frame, size_t len, sl_upconn_fn fn, void *ctx) {}
W void sl_upconn_close(sl_upconn *u) {}
W bool sl_upconn_ready(const sl_upconn *u) { return false; }
W bool sl_upconn_dead(const sl_upconn *u) { return true; }
W int sl_upconn_outstanding(const sl_upconn *u) { return 0; }
W int64_t sl_upconn_session_lifetime_ms(const sl_upconn *u) { return 0; }

W sl_gwcluster *sl_gwcluster_new(sl_loop *loop, const sl_upstream_cfg *cfg, int64_t refresh_ms,
                                 const sl_gwcluster_hooks *hooks) {
    return NULL;
}
W void sl_gwcluster_free(sl_gwcluster *c) {}
W bool sl_gwcluster_wait_ready(sl_gwcluster *c, int64_t timeout_ms) { return false; }
W void sl_gwcluster_refresh_soon(sl_gwcluster *c) {}
W void sl_gwcluster_learn(sl_gwcluster *c, int16_t version, const sl_metadata_resp *m) {}
W int sl_gwcluster_nodes(const sl_gwcluster *c, const sl_gw_node **out) { return 0; }
W const sl_gw_node *sl_gwcluster_node(const sl_gwcluster *c, int32_t id) { return NULL; }
W const sl_gw_node *sl_gwcluster_any_node(sl_gwcluster *c) { return NULL; }
W int32_t sl_gwcluster_controller(const sl_gwcluster *c) { return -1; }
W const char *sl_gwcluster_cluster_id(const sl_gwcluster *c) { return ""; }
W bool sl_gwcluster_api_range(const sl_gwcluster *c, int16_t key, int16_t *min, int16_t *max) {
    return false;
}
W bool sl_gwcluster_versions_known(const sl_gwcluster *c) { return false; }
W sl_catalog sl_gwcluster_catalog(sl_gwcluster *c) { return (sl_catalog){0}; }
W void sl_gwcluster_health(const sl_gwcluster *c, sl_gw_health *out) { *out = (sl_gw_health){0}; }
W void sl_gwcluster_count_failure(sl_gwcluster *c) {}

W sl_err sl_gwaddr_init(sl_gwaddr *a, const sl_config *cfg, const char *listener_host,
                        int32_t listener_port, char *err, size_t elen) {
    snprintf(err, elen, "sluice gateway: not built yet");
    return SL_ECONFIG;
}
W bool sl_gwaddr_for(const sl_gwaddr *a, int32_t node, char *host, size_t hcap, int32_t *port) {
    return false;
}
W int32_t sl_gwaddr_node_for_port(const sl_gwaddr *a, int32_t port) { return -1; }
W int32_t sl_gwaddr_node_for_sni(const sl_gwaddr *a, const char *server_name) { return -1; }
W bool sl_gwaddr_rewrite_metadata(const sl_gwaddr *a, sl_arena *ar, sl_metadata_resp *m) {
    return false;
}
W bool sl_gwaddr_rewrite_find_coordinator(const sl_gwaddr *a, sl_arena *ar, int16_t version,
                                          sl_find_coordinator_resp *m) {
    return false;
}
W bool sl_gwaddr_rewrite_describe_cluster(const sl_gwaddr *a, sl_arena *ar,
                                          sl_describe_cluster_resp *m) {
    return false;
}
W void sl_gwaddr_rewrite_produce(const sl_gwaddr *a, sl_arena *ar, sl_produce_resp *m) {}
W void sl_gwaddr_rewrite_fetch(const sl_gwaddr *a, sl_arena *ar, sl_fetch_resp *m) {}

W sl_err sl_gwcrypt_new(const sl_config *cfg, struct sl_keysvc *ks, sl_events *hub,
                        sl_gwcrypt **out, char *err, size_t elen) {
    *out = NULL;
    return SL_OK;
}
W void sl_gwcrypt_free(sl_gwcrypt *g) {}
W bool sl_gwcrypt_applies(const sl_gwcrypt *g, sl_str topic) { return false; }
W sl_xform sl_gwcrypt_seal(sl_gwcrypt *g) { return (sl_xform){0}; }
W sl_xform sl_gwcrypt_unseal(sl_gwcrypt *g) { return (sl_xform){0}; }

static void not_yet(sl_req *rq) { sl_req_fail(rq, "not served by the gateway yet"); }
W sl_gw_exec_fn sl_gw_exec(int16_t key) { return key == SL_API_API_VERSIONS ? NULL : not_yet; }
W void sl_gw_produce(sl_req *rq) { not_yet(rq); }
W void sl_gw_fetch(sl_req *rq) { not_yet(rq); }
W void sl_gw_list_offsets(sl_req *rq) { not_yet(rq); }
W void sl_gw_offset_for_leader_epoch(sl_req *rq) { not_yet(rq); }
W void sl_gw_delete_records(sl_req *rq) { not_yet(rq); }
W void sl_gwcrypt_stats_get(const sl_gwcrypt *g, sl_gwcrypt_stats *out) {
    *out = (sl_gwcrypt_stats){0};
}
W void sl_gwcrypt_key_id(sl_str topic, uint8_t id[16]) {}
