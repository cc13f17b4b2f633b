/* `sluice gateway`: the gateway object, the per-client upstream connections and the forwarding
 * step every gateway handler ends in (sl_gateway.h). */
#include "gateway/sl_gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_fprot.h"
#include "net/sl_tls.h"
#include "proto/sl_proto.h"

/* One client connection's upstream side. Keyed by the connection id: a request can outlive its
 * connection, and then finds nothing here (and fails) instead of a freed pointer. */
typedef struct gw_conn {
    uint64_t conn_id;
    sl_conn *c; /* valid while this exists: dropped when the connection closes */
    sl_upconn *up;
    int32_t node;
    int fetches; /* forwarded fetches not answered yet (at most one, see hold_input) */
    struct gw_conn *next;
} gw_conn;

#define GW_BUCKETS 1024
/* The gateway's private state (sl_gateway.conns). */
struct gw_conns {
    gw_conn *b[GW_BUCKETS];
    uint8_t *bound;           /* port mode: node ports bound so far (one byte per reserved port) */
    sl_xform_chain prot_only; /* field protection's slots without seal/unseal */
    sl_gwcluster_hooks hooks; /* borrowed by the cluster view */
    sl_upconn_events ev;      /* borrowed by every client's upstream connection */
};

static gw_conn **slot(sl_gateway *g, uint64_t id) { return &g->conns->b[id % GW_BUCKETS]; }

static gw_conn *conn_find(sl_gateway *g, uint64_t id) {
    for (gw_conn *c = *slot(g, id); c; c = c->next)
        if (c->conn_id == id) return c;
    return NULL;
}

static void conn_drop(sl_gateway *g, gw_conn *gc) {
    for (gw_conn **pp = slot(g, gc->conn_id); *pp; pp = &(*pp)->next)
        if (*pp == gc) {
            *pp = gc->next;
            break;
        }
    if (gc->up) {
        sl_upconn_when_below(gc->up, 0, NULL, NULL);
        sl_upconn_close(gc->up);
        sl_upconn_unref(gc->up);
        g->stats.upstream_conns--;
    }
    free(gc);
}

/* ---- upstream connection events: metrics, audit, health ---- */

static void emit_upstream(sl_gateway *g, const char *op, int32_t node, const char *addr, bool ok,
                          const char *why) {
    sl_events_emit(
        &g->b->events,
        &(sl_event){
            .kind = SL_EV_UPSTREAM,
            .upstream = {.op = op, .node = node, .address = addr, .success = ok, .detail = why}});
}

static void on_connected(void *ctx, int32_t node, const char *addr, bool ok, sl_up_status st,
                         const char *why) {
    sl_gateway *g = ctx;
    (void)st;
    if (ok) {
        g->stats.upstream_connects++;
    } else {
        g->stats.upstream_connect_failures++;
        if (g->cluster) sl_gwcluster_count_failure(g->cluster);
        SL_WARN("gateway", "upstream connection failed", "node=%d address=%s reason=\"%s\"",
                (int)node, addr ? addr : "?", why ? why : "?");
    }
    emit_upstream(g, "connect", node, addr, ok, ok ? NULL : why);
}

static void on_lost(void *ctx, int32_t node, const char *addr, const char *why) {
    sl_gateway *g = ctx;
    g->stats.upstream_lost++;
    emit_upstream(g, "lost", node, addr, false, why);
}

static size_t gate_held(void *ctx) {
    sl_gateway *g = ctx;
    return g->b->srv ? sl_server_unsent(g->b->srv) : 0;
}

/* ---- address map: a port for every upstream node before any client hears of it ---- */

static bool bind_node(sl_gateway *g, int32_t node) {
    sl_broker *b = g->b;
    if (g->addr.mode != SL_GWADDR_PORT) return true;
    char host[256];
    int32_t port = 0;
    if (!sl_gwaddr_for(&g->addr, node, host, sizeof host, &port)) {
        SL_ERROR("gateway", "upstream node has no gateway port",
                 "node=%d range=%d..%d hint=\"widen sluice.gateway.node.port.count or set "
                 "sluice.gateway.node.id.min\"",
                 (int)node, (int)g->addr.id_min, (int)(g->addr.id_min + g->addr.count - 1));
        return false;
    }
    int32_t i = node - g->addr.id_min;
    if (g->conns->bound[i]) return true;
    /* Node ports carry the first listener's name, security and TLS endpoint: everything keyed
     * by listener name (SASL, TLS, limits) applies unchanged; the local port tells the node. */
    int bound = 0;
    sl_err e = sl_server_listen_with(b->srv, b->listeners[0].name, b->listeners[0].host, port,
                                     &bound, b->tls[0] ? sl_tls_transport_new : NULL, b->tls[0]);
    if (e) {
        SL_ERROR("gateway", "cannot bind node port", "node=%d port=%d err=%s", (int)node, (int)port,
                 sl_strerror(e));
        return false;
    }
    g->conns->bound[i] = 1;
    SL_INFO("gateway", "node port bound", "node=%d port=%d", (int)node, (int)bound);
    return true;
}

static bool nodes_changed(void *ctx, const sl_gw_node *nodes, int n) {
    sl_gateway *g = ctx;
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= bind_node(g, nodes[i].id);
    return ok;
}

/* ---- lifecycle ---- */

sl_err sl_gateway_attach(sl_broker *b, char *err, size_t elen) {
    if (b->mode != SL_BROKER_GATEWAY) { /* a serve broker's coordinators and storage are open */
        snprintf(err, elen, "the gateway needs a broker built with SL_BROKER_GATEWAY");
        return SL_EINVAL;
    }
    if (b->nlisteners <= 0) {
        snprintf(err, elen, "listeners: the gateway needs a client listener");
        return SL_ECONFIG;
    }
    sl_gateway *g = calloc(1, sizeof *g);
    if (!g || !(g->conns = calloc(1, sizeof *g->conns))) {
        free(g);
        return SL_ENOMEM;
    }
    g->b = b;
    b->gw = g; /* from here sl_broker_free frees it */
    if (!(g->up = sl_upstream_cfg_new(&b->cfg, err, elen))) return SL_ECONFIG;
    sl_err e = sl_gwaddr_init(&g->addr, &b->cfg, b->adv[0].host, b->listeners[0].port, err, elen);
    if (e) return e;
    if (g->addr.mode == SL_GWADDR_PORT && !(g->conns->bound = calloc((size_t)g->addr.count, 1)))
        return SL_ENOMEM;
    if ((e = sl_gwcrypt_new(&b->cfg, b->keysvc, &b->events, &g->crypt, err, elen))) return e;
    const sl_xform_chain *fp = sl_fprot_chain(b->fprot);
    if (fp) g->chain = *fp;
    if (g->crypt) {
        g->chain.seal = sl_gwcrypt_seal(g->crypt);
        g->chain.unseal = sl_gwcrypt_unseal(g->crypt);
    }
    g->conns->prot_only =
        (sl_xform_chain){.protect = g->chain.protect, .unprotect = g->chain.unprotect};
    /* Answers held for clients (read from the upstream, not yet taken by the client's socket)
     * share the budget a local broker gives fetch answers: clients that pipeline fetches over
     * many connections and read nothing cannot make the gateway hold more. */
    g->gate = sl_upgate_new(b->loop, (size_t)b->cfg.sluice_fetch_memory_max_bytes, gate_held, g);
    if (!g->gate) return SL_ENOMEM;
    g->conns->ev = (sl_upconn_events){.ctx = g, .connected = on_connected, .lost = on_lost};
    g->conns->hooks =
        (sl_gwcluster_hooks){.ctx = g, .nodes_changed = nodes_changed, .up = g->conns->ev};
    g->cluster = sl_gwcluster_new(b->loop, g->up, b->cfg.sluice_gateway_metadata_refresh_ms,
                                  &g->conns->hooks);
    if (!g->cluster) return SL_ENOMEM;
    b->catalog = sl_gwcluster_catalog(g->cluster);
    /* Bind every known node's port before the first client arrives: clients that cached node
     * addresses before a restart reconnect straight to them. An unreachable upstream does not
     * stop the start: /readyz says not ready until it answers. */
    if (!sl_gwcluster_wait_ready(g->cluster, b->cfg.sluice_gateway_upstream_connect_timeout_ms))
        SL_WARN("gateway", "upstream not reachable yet; serving once it is", "bootstrap=%s",
                b->cfg.sluice_gateway_upstream_bootstrap_servers);
    SL_INFO("gateway", "started", "upstream=%s mode=%s encrypt=%s",
            b->cfg.sluice_gateway_upstream_bootstrap_servers, b->cfg.sluice_gateway_address_mode,
            g->crypt ? "on" : "off");
    return SL_OK;
}

void sl_gateway_free(sl_gateway *g) {
    if (!g) return;
    if (g->conns) {
        for (int i = 0; i < GW_BUCKETS; i++)
            while (g->conns->b[i]) conn_drop(g, g->conns->b[i]);
        free(g->conns->bound);
        free(g->conns);
    }
    sl_upgate_free(g->gate);
    sl_gwcluster_free(g->cluster);
    sl_gwcrypt_free(g->crypt);
    sl_upstream_cfg_free(g->up);
    free(g);
}

bool sl_gateway_ready(const sl_gateway *g) {
    sl_gw_health h;
    sl_gwcluster_health(g->cluster, &h);
    return h.reachable;
}

void sl_gateway_conn_closed(sl_gateway *g, sl_conn *c) {
    gw_conn *gc = conn_find(g, sl_conn_id(c));
    if (gc) conn_drop(g, gc);
}

/* ---- forwarding ---- */

/* The upstream node a client connection addresses: its node port (or SNI name); bootstrap
 * connections go to any broker and stay with it. */
static int32_t target_node(sl_gateway *g, sl_conn *c) {
    int32_t node = -1;
    if (g->addr.mode == SL_GWADDR_PORT) {
        node = sl_gwaddr_node_for_port(&g->addr, sl_conn_local_port(c));
    } else {
        const char *sni = sl_conn_tls_server_name(c);
        node = sni ? sl_gwaddr_node_for_sni(&g->addr, sni) : -1;
    }
    if (node < 0) {
        const sl_gw_node *any = sl_gwcluster_any_node(g->cluster);
        node = any ? any->id : -1;
    }
    return node;
}

static gw_conn *conn_for(sl_gateway *g, sl_conn *c, const char *principal) {
    uint64_t id = sl_conn_id(c);
    gw_conn *gc = conn_find(g, id);
    if (gc) return gc;
    int32_t node = target_node(g, c);
    const sl_gw_node *n = node >= 0 ? sl_gwcluster_node(g->cluster, node) : NULL;
    if (!n) return NULL;
    if (!(gc = calloc(1, sizeof *gc))) return NULL;
    /* A mapped principal goes upstream as itself (its own ACLs and quotas there); everyone
     * else as the gateway. The principal cannot change on a connection (re-authentication
     * must keep it), so the choice holds for the connection's life. */
    const sl_upstream_cfg *uc = sl_upstream_cfg_for_principal(g->up, principal);
    gc->up = sl_upconn_new(g->b->loop, uc ? uc : g->up, &g->conns->ev, n->id, n->host, n->port);
    if (!gc->up) {
        free(gc);
        return NULL;
    }
    sl_upconn_set_gate(gc->up, g->gate);
    gc->conn_id = id;
    gc->c = c;
    gc->node = n->id;
    gc->next = *slot(g, id);
    *slot(g, id) = gc;
    g->stats.upstream_conns++;
    return gc;
}

typedef struct fwd {
    sl_req *rq;
    sl_gw_resp_fn fn;
    void *arg;
    bool fetch; /* counted in its gw_conn's fetches */
} fwd;

static void hold_input(gw_conn *gc);

static const char *status_why(sl_up_status st) {
    switch (st) {
    case SL_UP_CONNECT:
        return "upstream connection failed";
    case SL_UP_AUTH:
        return "upstream authentication failed";
    case SL_UP_TIMEOUT:
        return "upstream request timed out";
    case SL_UP_PROTOCOL:
        return "upstream protocol error";
    case SL_UP_CLOSED:
        return "upstream connection closed";
    default:
        return "upstream error";
    }
}

static void on_upstream_answer(void *ctx, sl_up_status st, const uint8_t *body, size_t len) {
    fwd *f = ctx;
    sl_req *rq = f->rq;
    if (st != SL_UP_OK) {
        /* The client's view of the upstream is this one connection: it closes too, and the
         * client reconnects (refreshing Metadata) like after a broker failure. */
        if (!sl_req_finished(rq)) {
            if (sl_pending_conn(rq->p))
                sl_req_fail(rq, status_why(st));
            else /* the client left first (its close closed ours): nothing to report */
                sl_req_noreply(rq);
        }
        if (f->fn) f->fn(rq, f->arg, st, NULL, 0);
    } else if (!sl_req_finished(rq)) {
        if (f->fn)
            f->fn(rq, f->arg, st, body, len);
        else
            sl_gw_respond_body(rq, body, len);
    }
    /* After the answer is queued: the connection's next request is read only once what it has
     * not read of it is under the server's output mark. */
    sl_conn *c = f->fetch ? sl_pending_conn(rq->p) : NULL;
    gw_conn *gc = c ? conn_find(rq->b->gw, sl_conn_id(c)) : NULL;
    if (gc) {
        gc->fetches--;
        hold_input(gc);
    }
    sl_req_release(rq);
}

static void on_upstream_caught_up(void *ctx) { hold_input(ctx); }

/* Backpressure: while the client's upstream connection has more than this many request bytes
 * unwritten or unanswered, the client's next request stays unread (in the kernel, where TCP
 * slows the client) instead of being read and kept here. A client pipelining megabyte produce
 * requests would otherwise have up to sluice.max.inflight.requests of them in the gateway's
 * memory, waiting their turn at the upstream anyway; and the heap growing and shrinking under
 * them cost page faults on every request (a fifth of the gateway's CPU at max rate). A megabyte
 * still lets a megabyte produce request wait at the upstream while the next is sent, and keeps
 * a cross-zone upstream (1 ms round trip) above 1 GB/s per connection. */
#define GW_BACKLOG_MAX ((size_t)1 << 20)

/* The client's input is also held while one of its fetches is at the upstream, as a Kafka
 * broker mutes a connection while it serves a request. A fetch parks at the upstream until data
 * comes, then carries up to the upstream's fetch.max.bytes; a client pipelining fetches without
 * reading them would otherwise have one such answer per pipelined fetch (up to
 * sluice.max.inflight.requests) read into this process at once. */
static void hold_input(gw_conn *gc) {
    bool backlogged = sl_upconn_backlog(gc->up) > GW_BACKLOG_MAX;
    if (backlogged) sl_upconn_when_below(gc->up, GW_BACKLOG_MAX, on_upstream_caught_up, gc);
    sl_conn_hold_input(gc->c, backlogged || gc->fetches > 0);
}

void sl_gw_forward(sl_req *rq, const uint8_t *frame, size_t len, bool expect_response,
                   sl_gw_resp_fn fn, void *arg) {
    sl_gateway *g = rq->b->gw;
    sl_conn *c = sl_pending_conn(rq->p);
    if (!c) { /* the client has gone: nothing to forward for */
        sl_req_noreply(rq);
        return;
    }
    gw_conn *gc = conn_for(g, c, rq->principal);
    if (!gc || sl_upconn_dead(gc->up)) {
        sl_req_fail(rq, gc ? "upstream connection lost" : "no upstream broker for this address");
        return;
    }
    g->stats.forwarded++;
    if (!expect_response) {
        sl_upconn_send(gc->up, frame, len, NULL, NULL);
        hold_input(gc);
        sl_req_noreply(rq);
        return;
    }
    fwd *f = sl_arena_alloc(rq->a, sizeof *f);
    if (!f) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    *f = (fwd){rq, fn, arg, rq->h.api_key == SL_API_FETCH};
    if (f->fetch) gc->fetches++;
    sl_req_hold(rq);
    /* The answer is read into (or copied to) the request's arena, which the hold keeps: handlers
     * decode it into views and may answer pointing into it (sl_gw_respond_body, re-encoded
     * record sets), so it must outlive the upstream's read buffer. */
    sl_upconn_send_kept(gc->up, frame, len, rq->a, on_upstream_answer, f);
    hold_input(gc);
}

void sl_gw_respond_body(sl_req *rq, const uint8_t *body, size_t len) {
    sl_wr w;
    sl_wr_init(&w, rq->a, len < SL_RESP_REF_MIN ? len + 4 : 64);
    sl_wr_enable_refs(&w, SL_RESP_REF_MIN);
    sl_wr_i32(&w, rq->h.correlation_id);
    sl_wr_raw_ref(&w, body, len);
    sl_req_respond(rq, &w);
}

void sl_gw_req_begin(sl_req *rq, sl_wr *w) {
    sl_wr_init(w, rq->a, 1024);
    sl_req_header_encode(w, &rq->h);
}

const sl_xform_chain *sl_gw_chain(sl_gateway *g, sl_str topic) {
    bool seal = g->crypt && sl_gwcrypt_applies(g->crypt, topic);
    /* Only topics the policy names: the others keep the relay of the upstream's bytes. */
    bool prot =
        (g->chain.protect.fn || g->chain.unprotect.fn) && sl_fprot_covers(g->b->fprot, topic);
    if (seal) return &g->chain;
    return prot ? &g->conns->prot_only : NULL;
}
