/* libFuzzer target for the gateway's response address rewrites (src/gateway/sl_gwaddr.c). The
 * upstream's answers are untrusted input. Input: [selector][version][response body]:
 *   selector % 5 picks the API (Metadata, FindCoordinator, DescribeCluster, Produce, Fetch),
 *   selector bit 3 the address mode (port: ids 0..15 at gw.example.com:9093..; sni:
 *   broker-$(nodeId).kafka.example.com:9443); the version byte is taken modulo the generated
 *   codec's version range (probed, not restated here). Selector bit 7 instead takes the rest as
 *   a client's server name (and its first bytes as a port) to map back to a node.
 * The body is decoded as that response; whatever decodes is rewritten, re-encoded and decoded
 * again, which must succeed and consume every byte. Checked on the result:
 *   - a rewrite that succeeds leaves only gateway addresses, each the one of its own node id;
 *   - a rewrite that fails does so only because some named node has no gateway address;
 *   - Metadata/DescribeCluster: the controller id names a listed broker when there is one;
 *   - NodeEndpoints: only endpoints with a gateway address remain, in their order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/sl_gwaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ARENA_CAP = 1 << 20, NAPI = 5, VMAX_PROBE = 64 };

static const int16_t g_keys[NAPI] = {SL_API_METADATA, SL_API_FIND_COORDINATOR,
                                     SL_API_DESCRIBE_CLUSTER, SL_API_PRODUCE, SL_API_FETCH};
static int16_t g_lo[NAPI], g_hi[NAPI];
static sl_gwaddr g_port, g_sni;
static bool g_ready;

/* A version is in the codec's range when decoding nothing fails for want of bytes, not with
 * SL_EVERSION. */
static void probe_versions(void) {
    for (int i = 0; i < NAPI; i++) {
        const sl_msg_codec *c = sl_msg_codec_get(g_keys[i], true);
        if (!c) abort();
        g_lo[i] = -1;
        for (int16_t v = 0; v < VMAX_PROBE; v++) {
            sl_arena *a = sl_arena_new(1024);
            void *m = a ? sl_arena_calloc(a, 1, c->size) : NULL;
            if (!m) abort();
            sl_rd r = sl_rd_init("", 0);
            bool ok = c->decode(&r, a, v, m) != SL_EVERSION;
            sl_arena_free(a);
            if (ok) {
                if (g_lo[i] < 0) g_lo[i] = v;
                g_hi[i] = v;
            }
        }
        if (g_lo[i] < 0) abort();
    }
}

static void setup(void) {
    static sl_config cfg;
    char err[256];
    sl_config_defaults(&cfg);
    if (sl_config_set(&cfg, "sluice.gateway.advertised.host", "gw.example.com", err, sizeof err) ||
        sl_gwaddr_init(&g_port, &cfg, "0.0.0.0", 9092, err, sizeof err))
        abort();
    sl_config_defaults(&cfg);
    if (sl_config_set(&cfg, "sluice.gateway.address.mode", "sni", err, sizeof err) ||
        sl_config_set(&cfg, "sluice.gateway.sni.pattern", "broker-$(nodeId).kafka.example.com", err,
                      sizeof err) ||
        sl_gwaddr_init(&g_sni, &cfg, "0.0.0.0", 9443, err, sizeof err))
        abort();
    probe_versions();
    g_ready = true;
}

static bool has_addr(const sl_gwaddr *a, int32_t node) {
    char h[256];
    int32_t p;
    return sl_gwaddr_for(a, node, h, sizeof h, &p);
}

/* host:port is exactly the gateway address of `node`. */
static void want_addr(const sl_gwaddr *a, int32_t node, sl_str host, int32_t port) {
    char h[256];
    int32_t p;
    if (!sl_gwaddr_for(a, node, h, sizeof h, &p) || !sl_str_eqc(host, h) || port != p) abort();
}

/* Re-encodes `m`, decodes the bytes again into a new struct (NULL on the arena cap). */
static void *again(sl_arena *ar, const sl_msg_codec *c, int16_t v, const void *m) {
    sl_wr w;
    sl_wr_init(&w, ar, 256);
    c->encode(&w, v, m);
    if (w.err) {
        if (w.err != SL_ENOMEM) abort();
        return NULL;
    }
    void *d = sl_arena_calloc(ar, 1, c->size);
    if (!d) return NULL;
    sl_rd r = sl_rd_init(w.buf, w.len);
    if (c->decode(&r, ar, v, d) != SL_OK || sl_rd_left(&r) != 0) abort();
    return d;
}

static void metadata(const sl_gwaddr *a, sl_arena *ar, const sl_msg_codec *c, int16_t v,
                     sl_metadata_resp *m) {
    if (!sl_gwaddr_rewrite_metadata(a, ar, m)) {
        bool missing = false;
        for (int32_t i = 0; i < m->brokers_count; i++)
            missing = missing || !has_addr(a, m->brokers[i].node_id);
        if (!missing && sl_arena_used(ar) < ARENA_CAP) abort();
        return;
    }
    sl_metadata_resp *d = again(ar, c, v, m);
    if (!d) return;
    if (d->brokers_count != m->brokers_count) abort();
    bool ctl = d->brokers_count <= 0 || v < 1;
    for (int32_t i = 0; i < d->brokers_count; i++) {
        want_addr(a, d->brokers[i].node_id, d->brokers[i].host, d->brokers[i].port);
        ctl = ctl || d->brokers[i].node_id == d->controller_id;
    }
    if (!ctl) abort();
}

static void find_coordinator(const sl_gwaddr *a, sl_arena *ar, const sl_msg_codec *c, int16_t v,
                             sl_find_coordinator_resp *m) {
    if (!sl_gwaddr_rewrite_find_coordinator(a, ar, v, m)) {
        bool missing = v < 4 && m->error_code == 0 && m->node_id >= 0 && !has_addr(a, m->node_id);
        for (int32_t i = 0; v >= 4 && i < m->coordinators_count; i++)
            missing = missing ||
                      (m->coordinators[i].node_id >= 0 && !has_addr(a, m->coordinators[i].node_id));
        if (!missing && sl_arena_used(ar) < ARENA_CAP) abort();
        return;
    }
    sl_find_coordinator_resp *d = again(ar, c, v, m);
    if (!d) return;
    if (v < 4 && d->error_code == 0 && d->node_id >= 0) want_addr(a, d->node_id, d->host, d->port);
    for (int32_t i = 0; v >= 4 && i < d->coordinators_count; i++) {
        const sl_find_coordinator_resp_coordinator *k = &d->coordinators[i];
        if (k->node_id >= 0) want_addr(a, k->node_id, k->host, k->port);
    }
}

static void describe_cluster(const sl_gwaddr *a, sl_arena *ar, const sl_msg_codec *c, int16_t v,
                             sl_describe_cluster_resp *m) {
    if (!sl_gwaddr_rewrite_describe_cluster(a, ar, m)) {
        bool missing = m->endpoint_type == 2 && m->brokers_count > 0;
        for (int32_t i = 0; i < m->brokers_count; i++)
            missing = missing || !has_addr(a, m->brokers[i].broker_id);
        if (!missing && sl_arena_used(ar) < ARENA_CAP) abort();
        return;
    }
    sl_describe_cluster_resp *d = again(ar, c, v, m);
    if (!d) return;
    bool ctl = d->brokers_count <= 0;
    for (int32_t i = 0; i < d->brokers_count; i++) {
        want_addr(a, d->brokers[i].broker_id, d->brokers[i].host, d->brokers[i].port);
        ctl = ctl || d->brokers[i].broker_id == d->controller_id;
    }
    if (!ctl) abort();
}

/* The endpoints that remain are those of `before` with an address, in order, rewritten. */
#define CHECK_ENDPOINTS(a, before, nbefore, d)                                                     \
    do {                                                                                           \
        int32_t j_ = 0;                                                                            \
        for (int32_t i_ = 0; i_ < (nbefore); i_++) {                                               \
            if (!has_addr(a, (before)[i_])) continue;                                              \
            if (j_ >= (d)->node_endpoints_count ||                                                 \
                (d)->node_endpoints[j_].node_id != (before)[i_])                                   \
                abort();                                                                           \
            want_addr(a, (before)[i_], (d)->node_endpoints[j_].host,                               \
                      (d)->node_endpoints[j_].port);                                               \
            j_++;                                                                                  \
        }                                                                                          \
        if ((nbefore) >= 0 && j_ != (d)->node_endpoints_count) abort();                            \
    } while (0)

/* Node ids of the endpoints before the rewrite (it compacts the array in place). */
static int32_t *ids_of(sl_arena *ar, const void *eps, size_t stride, int32_t n) {
    if (n <= 0) return NULL;
    int32_t *ids = sl_arena_calloc(ar, (size_t)n, sizeof *ids);
    if (!ids) return NULL;
    for (int32_t i = 0; i < n; i++)
        memcpy(&ids[i], (const uint8_t *)eps + (size_t)i * stride, sizeof(int32_t));
    return ids;
}

static void produce(const sl_gwaddr *a, sl_arena *ar, const sl_msg_codec *c, int16_t v,
                    sl_produce_resp *m) {
    int32_t n = m->node_endpoints_count;
    int32_t *ids = ids_of(ar, m->node_endpoints, sizeof *m->node_endpoints, n);
    if (n > 0 && !ids) return;
    sl_gwaddr_rewrite_produce(a, ar, m);
    sl_produce_resp *d = again(ar, c, v, m);
    if (!d) return;
    if (v >= 10) CHECK_ENDPOINTS(a, ids, n, d);
}

static void fetch(const sl_gwaddr *a, sl_arena *ar, const sl_msg_codec *c, int16_t v,
                  sl_fetch_resp *m) {
    int32_t n = m->node_endpoints_count;
    int32_t *ids = ids_of(ar, m->node_endpoints, sizeof *m->node_endpoints, n);
    if (n > 0 && !ids) return;
    sl_gwaddr_rewrite_fetch(a, ar, m);
    sl_fetch_resp *d = again(ar, c, v, m);
    if (!d) return;
    if (v >= 16) CHECK_ENDPOINTS(a, ids, n, d);
}

/* A client's server name (untrusted, from its ClientHello) or a port: a node is found only for
 * the very name or port that node is given. */
static void names(const uint8_t *p, size_t n) {
    char name[1024];
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, p, n);
    name[n] = 0;
    char h[256];
    int32_t port, node = sl_gwaddr_node_for_sni(&g_sni, name);
    if (node < -1) abort(); /* a node, or -1 */
    if (node >= 0 && (!sl_gwaddr_for(&g_sni, node, h, sizeof h, &port) || strcasecmp(h, name)))
        abort();
    if (sl_gwaddr_node_for_sni(&g_port, name) != -1) abort();
    int32_t q = 0;
    memcpy(&q, p, n < 4 ? n : 4);
    node = sl_gwaddr_node_for_port(&g_port, q);
    if (node < -1) abort();
    if (node >= 0 && (!sl_gwaddr_for(&g_port, node, h, sizeof h, &port) || port != q)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 256 * 1024) return 0;
    if (!g_ready) setup();
    if (data[0] & 0x80) {
        names(data + 2, size - 2);
        return 0;
    }
    int api = data[0] % NAPI;
    const sl_gwaddr *a = (data[0] & 8) ? &g_sni : &g_port;
    int16_t v = (int16_t)(g_lo[api] + data[1] % (g_hi[api] - g_lo[api] + 1));
    const sl_msg_codec *c = sl_msg_codec_get(g_keys[api], true);
    sl_arena *ar = sl_arena_new(4096);
    if (!ar) return 0;
    void *m = sl_arena_calloc(ar, 1, c->size);
    sl_rd r = sl_rd_init(data + 2, size - 2);
    if (m && c->decode(&r, ar, v, m) == SL_OK && sl_arena_used(ar) < ARENA_CAP) {
        switch (api) {
        case 0:
            metadata(a, ar, c, v, m);
            break;
        case 1:
            find_coordinator(a, ar, c, v, m);
            break;
        case 2:
            describe_cluster(a, ar, c, v, m);
            break;
        case 3:
            produce(a, ar, c, v, m);
            break;
        default:
            fetch(a, ar, c, v, m);
            break;
        }
    }
    sl_arena_free(ar);
    return 0;
}
