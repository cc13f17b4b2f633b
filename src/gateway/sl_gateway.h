/* `sluice gateway`: the same pipeline as `sluice serve` (listeners, TLS, SASL, ACLs, audit,
 * metrics, field protection), with the execute stage forwarding to an upstream Kafka cluster
 * instead of local storage (docs/gateway.md, docs/ARCHITECTURE.md "Two backends").
 *
 * The gateway is attached to a broker object (b->gw) that owns the loop, listeners,
 * authentication, authorizer, audit and metrics exactly as in serve mode; its local storage
 * holds nothing but Sluice's own state (credentials, ACLs, keyring, audit). The split happens at
 * execute: sl_pipeline calls sl_gw_exec(key) instead of sl_broker_exec(key).
 *
 * Connection model: each client connection gets its own upstream connection to the one upstream
 * broker it addresses (its gateway port or SNI name; a bootstrap connection goes to any broker),
 * opened on its first forwarded request. Requests keep their order on it; upstream correlation
 * ids are the upstream connection's own. Losing the upstream connection closes the client's
 * (clients reconnect and refresh Metadata). Nothing is multiplexed across clients, so upstream
 * muting, throttling (KIP-219) and fetch sessions stay per client. */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "gateway/sl_gwaddr.h"
#include "gateway/sl_gwcluster.h"
#include "gateway/sl_gwcrypt.h"
#include "gateway/sl_upstream.h"
#include "pipeline/sl_req.h"
#include "proto/sl_xform.h"

struct sl_broker;

typedef struct sl_gateway_stats {
    int64_t upstream_connects, upstream_connect_failures, upstream_lost;
    int64_t forwarded, rewritten, answered_locally;
    int64_t upstream_conns; /* open now */
} sl_gateway_stats;

typedef struct sl_gateway {
    struct sl_broker *b;
    sl_upstream_cfg *up;
    sl_gwcluster *cluster;
    sl_gwaddr addr;
    sl_gwcrypt *crypt;      /* NULL: records go upstream as the client sent them */
    sl_xform_chain chain;   /* field protection's slots + the gateway's seal/unseal */
    struct gw_conns *conns; /* per client connection state (sl_gateway.c) */
    sl_upgate *gate;        /* memory for upstream answers (sluice.fetch.memory.max.bytes) */
    sl_gateway_stats stats;
} sl_gateway;

/* Attaches the gateway to `b`, built with SL_BROKER_GATEWAY (after the broker's own set-up,
 * before its listeners accept): parses the upstream keys, starts the cluster view, waits
 * (bounded) for the first Metadata and binds a port for every upstream node. SL_ECONFIG /
 * SL_ENET with `err` explained (SL_EINVAL: `b` was built for serve). Sets b->gw; b owns it
 * (sl_gateway_free from sl_broker_free). */
sl_err sl_gateway_attach(struct sl_broker *b, char *err, size_t elen);
void sl_gateway_free(sl_gateway *g);

/* The execution function of `key` in gateway mode (sl_gw_handlers.c), or NULL when the gateway
 * neither answers nor forwards it (controller and inter-broker APIs). */
typedef void (*sl_gw_exec_fn)(sl_req *rq);
sl_gw_exec_fn sl_gw_exec(int16_t key);

/* /readyz: false while no upstream broker is reachable. */
bool sl_gateway_ready(const sl_gateway *g);

/* ---- for the handlers (sl_gw_handlers.c, sl_gw_data.c) ---- */

/* Called with the upstream's answer to a forwarded request: `body` is what follows the
 * correlation id (sl_upconn_fn), in rq's arena: views decoded from it stay valid as long as the
 * request, so a re-encoded answer may reference its record sets. With st != SL_UP_OK the client
 * connection has already been failed (closed) and `rq` finished: only release what you hold. */
typedef void (*sl_gw_resp_fn)(sl_req *rq, void *arg, sl_up_status st, const uint8_t *body,
                              size_t len);

/* Sends `frame` (a whole request, header then body, e.g. rq->frame or a re-encoded one in the
 * arena) to the upstream broker the request's connection addresses. The request is held
 * (sl_req_hold) until `fn` has run. fn NULL: the upstream answer is relayed to the client
 * unchanged (correlation id restored), the plain pass-through. `expect_response` false
 * (acks=0): nothing comes back; the request is finished with sl_req_noreply at once. */
void sl_gw_forward(sl_req *rq, const uint8_t *frame, size_t len, bool expect_response,
                   sl_gw_resp_fn fn, void *arg);

/* Answers the client with `body` (response header tagged fields if flexible, then the body:
 * exactly what sl_upconn_fn gives) after restoring its correlation id. A large body is sent from
 * where it is, not copied: it must live as long as rq's arena, as sl_gw_forward's answers do. */
void sl_gw_respond_body(sl_req *rq, const uint8_t *body, size_t len);

/* The transform chain for `topic` (sl_xform.h): field protection's slots when the policy names
 * it, the gateway's seal/unseal when sl_gwcrypt_applies; NULL when neither. */
const sl_xform_chain *sl_gw_chain(sl_gateway *g, sl_str topic);

/* Starts a writer in the request arena holding rq's request header (rq->h, at its header
 * version): append the re-encoded body with the generated sl_<api>_req_encode, then hand
 * w.buf/w.len to sl_gw_forward (w.err set: out of memory, fail the request). */
void sl_gw_req_begin(sl_req *rq, sl_wr *w);

/* Client-connection hooks (from the broker's on_close). */
void sl_gateway_conn_closed(sl_gateway *g, sl_conn *c);

#endif
