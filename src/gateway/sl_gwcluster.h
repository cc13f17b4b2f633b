/* The gateway's view of the upstream cluster: brokers (node id → upstream host:port, rack),
 * which APIs and versions the upstream serves, topic names and ids, and partition health.
 *
 * It keeps one control connection (sl_upconn, as the gateway's own identity) to a bootstrap
 * broker, then to any known broker, and rereads Metadata every sluice.gateway.metadata.refresh.ms
 * (sooner after a failure, with backoff), plus ApiVersions on each new control connection. Every
 * Metadata answer that passes through the gateway for a client is also fed in
 * (sl_gwcluster_learn), so leader changes and new brokers are seen as soon as a client sees
 * them.
 *
 * The node list only grows while a broker is named by the upstream; a node that disappears from
 * Metadata is dropped at the next refresh (its gateway address stays bound, see sl_gwaddr.h).
 * Loop thread only. */
#ifndef SL_GATEWAY_CLUSTER_H
#define SL_GATEWAY_CLUSTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/sl_upstream.h"
#include "net/sl_loop.h"
#include "pipeline/sl_api.h"
#include "proto/gen/sl_msgs.h"

typedef struct sl_gwcluster sl_gwcluster;

typedef struct sl_gw_node {
    int32_t id;
    char host[256];
    int32_t port;
    char rack[64]; /* "" when none */
} sl_gw_node;

/* Partition health from the last Metadata (as MSK's CloudWatch shows it). */
typedef struct sl_gw_health {
    int64_t partitions;
    int64_t under_replicated; /* ISR smaller than the replica list */
    int64_t offline;          /* no leader (-1) */
    int64_t brokers;
    bool reachable;       /* the control connection is set up and answered its last request */
    int64_t refreshed_ms; /* wall clock of the last successful Metadata; 0: never */
    int64_t failures;     /* upstream connection failures so far (control and client ones) */
} sl_gw_health;

typedef struct sl_gwcluster_hooks {
    void *ctx;
    /* The broker list changed (a node added, removed or moved): the address map binds ports
     * for new nodes before any client is told of them. Returns false when a node cannot be
     * given an address (port range exhausted: the reason is logged by the callee). */
    bool (*nodes_changed)(void *ctx, const sl_gw_node *nodes, int n);
    /* Connection outcomes of the control connection (same shape as sl_upconn_events). */
    sl_upconn_events up;
} sl_gwcluster_hooks;

/* Starts the view: connects to the bootstrap servers of `cfg` and keeps refreshing. `cfg` and
 * `hooks` must outlive it. NULL when out of memory. */
sl_gwcluster *sl_gwcluster_new(sl_loop *loop, const sl_upstream_cfg *cfg, int64_t refresh_ms,
                               const sl_gwcluster_hooks *hooks);
void sl_gwcluster_free(sl_gwcluster *c);

/* Runs the loop until the first Metadata arrived or `timeout_ms` passed (start-up binds every
 * node's address before clients come, so clients that cached addresses can reconnect). True
 * when the topology is known. */
bool sl_gwcluster_wait_ready(sl_gwcluster *c, int64_t timeout_ms);

/* Asks for a refresh soon (e.g. a client got NOT_LEADER_OR_FOLLOWER); coalesced (at most one
 * Metadata per 100 ms). While retrying after a failure it does nothing: the retry comes on its
 * backoff. */
void sl_gwcluster_refresh_soon(sl_gwcluster *c);

/* Feeds a Metadata answer a client received (decoded at `version`), as the upstream sent it
 * (before the address rewrite). Brokers named are added or updated, topics named are updated
 * (or dropped when UNKNOWN_TOPIC_OR_PARTITION); nothing it does not name is dropped. */
void sl_gwcluster_learn(sl_gwcluster *c, int16_t version, const sl_metadata_resp *m);

/* The known brokers (valid until the next loop callback); count returned. */
int sl_gwcluster_nodes(const sl_gwcluster *c, const sl_gw_node **out);
/* Node `id`, or NULL when unknown. */
const sl_gw_node *sl_gwcluster_node(const sl_gwcluster *c, int32_t id);
/* Any reachable-looking broker for bootstrap connections: round-robin over the known ones;
 * NULL before the first Metadata. */
const sl_gw_node *sl_gwcluster_any_node(sl_gwcluster *c);
/* The leader of `topic` partition `partition` from the last Metadata (-1: leaderless or
 * unknown). */
int32_t sl_gwcluster_leader(const sl_gwcluster *c, sl_str topic, int32_t partition);
/* The upstream controller id from the last Metadata (-1 unknown). */
int32_t sl_gwcluster_controller(const sl_gwcluster *c);
/* The upstream cluster id ("" unknown). */
const char *sl_gwcluster_cluster_id(const sl_gwcluster *c);

/* The upstream's supported range of `key` (from the control connection's ApiVersions); false
 * when the upstream does not serve it or ApiVersions has not been answered yet. */
bool sl_gwcluster_api_range(const sl_gwcluster *c, int16_t key, int16_t *min, int16_t *max);
/* True once ApiVersions has been answered. */
bool sl_gwcluster_versions_known(const sl_gwcluster *c);

/* Topic catalog for the authorization stage (sl_api.h): names and ids from upstream Metadata.
 * each_group lists nothing (group listings are filtered from the upstream's answers instead). */
sl_catalog sl_gwcluster_catalog(sl_gwcluster *c);

void sl_gwcluster_health(const sl_gwcluster *c, sl_gw_health *out);
/* Counts an upstream connection failure of a client connection into the health figures. */
void sl_gwcluster_count_failure(sl_gwcluster *c);

#endif
