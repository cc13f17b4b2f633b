/* Address mapping: clients must only ever see gateway addresses (docs/gateway.md).
 *
 * Node ids are kept as the upstream has them; only host and port are rewritten, always for the
 * same node id (a hint whose id and address disagree sends clients in circles).
 *   - port mode: node n is reached at advertised.host : base + (n - id.min). The mapping is a
 *     pure function of configuration and node id, so every gateway behind a load balancer gives
 *     a node the same port, and clients that cached it reconnect after a restart. A node id
 *     outside [id.min, id.min + count) has no address: it is logged, and answers that would
 *     name it fail instead of naming a dead address.
 *   - sni mode: one TLS port; node n is broker-$(nodeId).domain per sluice.gateway.sni.pattern,
 *     and a client's ClientHello server name selects the node.
 * Pure functions over decoded responses; no I/O. */
#ifndef SL_GATEWAY_ADDR_H
#define SL_GATEWAY_ADDR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "proto/gen/sl_msgs.h"

typedef enum { SL_GWADDR_PORT, SL_GWADDR_SNI } sl_gwaddr_mode;

typedef struct sl_gwaddr {
    sl_gwaddr_mode mode;
    char host[256]; /* advertised host (port mode) */
    int32_t port;   /* sni mode: the advertised port of every broker name; port mode: the
                     * bootstrap (first listener) port */
    int32_t base;   /* port mode: port of node id_min */
    int32_t count;  /* port mode: node ports reserved */
    int32_t id_min; /* port mode */
    char sni_prefix[128], sni_suffix[256]; /* sni mode: the pattern around $(nodeId) */
} sl_gwaddr;

/* From the sluice.gateway.* keys; `listener_host`/`listener_port` are the first client
 * listener's (the defaults for the advertised host and the port base). SL_ECONFIG with `err`
 * naming the key on a bad pattern or range (a port range past 65535, sni without a pattern). */
sl_err sl_gwaddr_init(sl_gwaddr *a, const sl_config *cfg, const char *listener_host,
                      int32_t listener_port, char *err, size_t elen);

/* The address clients are given for `node`: false when it has none (outside the port range).
 * `host` gets at most hcap bytes, NUL-terminated. */
bool sl_gwaddr_for(const sl_gwaddr *a, int32_t node, char *host, size_t hcap, int32_t *port);
/* Port mode: the node a gateway port serves, or -1 (the bootstrap port, or not a node port). */
int32_t sl_gwaddr_node_for_port(const sl_gwaddr *a, int32_t port);
/* SNI mode: the node a server name selects, or -1 (bootstrap or no match). */
int32_t sl_gwaddr_node_for_sni(const sl_gwaddr *a, const char *server_name);

/* Response rewrites (in place; new strings in `a`). Each returns false when some node named has
 * no gateway address (the caller then answers an error rather than a dead address). */
/* Metadata: Brokers[].Host/Port; a controller id that is not among the brokers (the librdkafka
 * mock says 0) becomes the lowest broker id, so clients that send to the controller find it. */
bool sl_gwaddr_rewrite_metadata(const sl_gwaddr *a, sl_arena *ar, sl_metadata_resp *m);
/* FindCoordinator: v0-3 top-level NodeId/Host/Port, v4+ each Coordinators[] entry (entries with
 * NodeId -1 are left alone). */
bool sl_gwaddr_rewrite_find_coordinator(const sl_gwaddr *a, sl_arena *ar, int16_t version,
                                        sl_find_coordinator_resp *m);
/* DescribeCluster: Brokers[].Host/Port. */
bool sl_gwaddr_rewrite_describe_cluster(const sl_gwaddr *a, sl_arena *ar,
                                        sl_describe_cluster_resp *m);

/* Produce v10+ / Fetch v16+ NodeEndpoints hints (KIP-951): rewritten for the same node id;
 * an endpoint without a gateway address is dropped (the hints are optional). */
void sl_gwaddr_rewrite_produce(const sl_gwaddr *a, sl_arena *ar, sl_produce_resp *m);
void sl_gwaddr_rewrite_fetch(const sl_gwaddr *a, sl_arena *ar, sl_fetch_resp *m);

#endif
