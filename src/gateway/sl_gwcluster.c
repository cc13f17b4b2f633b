/* The gateway's view of the upstream cluster (sl_gwcluster.h).
 *
 * One control connection at a time. On each new one: ApiVersions v0 (every Kafka and the
 * librdkafka 2.0.2 mock answer it; the mock closes the connection on versions it does not know),
 * then Metadata for all topics at the highest version both sides speak, repeated every
 * refresh_ms on the same connection. Any failure drops the connection and retries after a
 * backoff (100 ms doubling to 5 s) at the next address: the bootstrap servers in order, then the
 * known nodes.
 *
 * Lifetimes: sl_upconn callbacks may run after sl_gwcluster_free (sl_upconn_close posts them),
 * and a connection may report events for as long as it lives. So every request carries a small
 * heap record that the callback frees, whose cluster pointer free() clears; and the events
 * table the connections were given lives in a block that free() detaches and parks on a
 * process-wide list instead of freeing (a handful per process; reachable, so not a leak). */
#include "gateway/sl_gwcluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "proto/sl_proto.h"

#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define SOON_SPACING_MS 100 /* refresh_soon refreshes at most this often */
#define CLIENT_ID       "sluice-gateway"

typedef struct gw_part {
    int32_t index;
    int32_t leader;
    int32_t leader_epoch;
    int32_t nreplicas, nisr;
} gw_part;

typedef struct gw_topic {
    char *name; /* malloc'd, NUL-terminated */
    int32_t name_len;
    sl_uuid id; /* zero before Metadata v10 */
    bool internal;
    gw_part *parts; /* by partition index */
    int32_t nparts;
} gw_topic;

typedef struct gw_range {
    int16_t key, min, max;
} gw_range;

/* The events table handed to control connections, outliving the cluster (see the top). */
typedef struct gw_link {
    sl_upconn_events ev;
    sl_gwcluster *c; /* NULL once the cluster is freed */
    struct gw_link *next;
} gw_link;

enum { REQ_VERSIONS, REQ_METADATA };

/* One request in flight on the control connection. */
typedef struct gw_req {
    sl_gwcluster *c; /* NULL once the cluster is freed */
    sl_upconn *conn; /* the connection it went out on (not a reference) */
    int kind;
    int16_t version;
    struct gw_req *next;
} gw_req;

struct sl_gwcluster {
    sl_loop *loop;
    const sl_upstream_cfg *cfg;
    int64_t refresh_ms;
    const sl_gwcluster_hooks *hooks;
    gw_link *link;

    sl_upconn *ctl;     /* control connection; NULL: none */
    bool ctl_failed;    /* ctl's failure has been counted (it is being dropped) */
    char ctl_addr[300]; /* host:port of ctl, for the log */
    int addr_next;      /* next address to try (bootstrap list, then nodes) */
    gw_req *reqs;       /* outstanding requests */
    bool inflight;      /* a request of the refresh cycle is outstanding */
    bool want_soon;     /* refresh again as soon as the one in flight ends */
    bool in_backoff;    /* waiting after a failure */
    sl_timer *timer;    /* next refresh or retry */
    sl_post post;       /* refresh_soon */
    int64_t backoff_ms;
    int64_t last_md_mono; /* loop time of the last Metadata answer */

    gw_range *ranges;
    int nranges;
    bool versions_known;
    int16_t md_version;

    sl_gw_node *nodes; /* by id */
    int nnodes;
    unsigned rr;
    int32_t controller;
    char cluster_id[128];
    bool have_md;

    gw_topic *topics;
    int ntopics, captopics;
    int32_t *by_name; /* open addressing: topic index + 1, 0 empty */
    int32_t *by_id;
    size_t index_cap; /* power of two */

    sl_gw_health health;
};

/* ---- the parked events tables ---- */

static pthread_mutex_t g_links_mu = PTHREAD_MUTEX_INITIALIZER;
static gw_link *g_links; /* detached ones, kept for connections that may still call */

static void link_park(gw_link *l) {
    pthread_mutex_lock(&g_links_mu);
    l->next = g_links;
    g_links = l;
    pthread_mutex_unlock(&g_links_mu);
}

/* ---- topics and their indexes ---- */

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static void topic_clear(gw_topic *t) {
    free(t->name);
    free(t->parts);
    memset(t, 0, sizeof *t);
}

/* Rebuilds both indexes; false when out of memory (then lookups fall back to a scan). */
static bool index_rebuild(sl_gwcluster *c) {
    size_t cap = 16;
    while (cap < (size_t)c->ntopics * 2 + 1) cap <<= 1;
    if (cap != c->index_cap) {
        int32_t *n = calloc(cap, sizeof *n), *i = calloc(cap, sizeof *i);
        if (!n || !i) {
            free(n);
            free(i);
            free(c->by_name);
            free(c->by_id);
            c->by_name = c->by_id = NULL;
            c->index_cap = 0;
            return false;
        }
        free(c->by_name);
        free(c->by_id);
        c->by_name = n;
        c->by_id = i;
        c->index_cap = cap;
    } else {
        memset(c->by_name, 0, cap * sizeof *c->by_name);
        memset(c->by_id, 0, cap * sizeof *c->by_id);
    }
    for (int k = 0; k < c->ntopics; k++) {
        const gw_topic *t = &c->topics[k];
        size_t s = hash_bytes(t->name, (size_t)t->name_len) & (cap - 1);
        while (c->by_name[s]) s = (s + 1) & (cap - 1);
        c->by_name[s] = k + 1;
        if (sl_uuid_is_zero(&t->id)) continue;
        s = hash_bytes(t->id.b, sizeof t->id.b) & (cap - 1);
        while (c->by_id[s]) s = (s + 1) & (cap - 1);
        c->by_id[s] = k + 1;
    }
    return true;
}

/* Indexes topic `k`, just appended: in place while the table stays at most half full. */
static void index_add(sl_gwcluster *c, int k) {
    size_t cap = c->index_cap;
    if (!cap || (size_t)c->ntopics * 2 + 1 > cap) {
        index_rebuild(c);
        return;
    }
    const gw_topic *t = &c->topics[k];
    size_t s = hash_bytes(t->name, (size_t)t->name_len) & (cap - 1);
    while (c->by_name[s]) s = (s + 1) & (cap - 1);
    c->by_name[s] = k + 1;
    if (sl_uuid_is_zero(&t->id)) return;
    s = hash_bytes(t->id.b, sizeof t->id.b) & (cap - 1);
    while (c->by_id[s]) s = (s + 1) & (cap - 1);
    c->by_id[s] = k + 1;
}

static int topic_find(const sl_gwcluster *c, const char *name, size_t len) {
    if (!c->index_cap) {
        for (int k = 0; k < c->ntopics; k++)
            if ((size_t)c->topics[k].name_len == len && !memcmp(c->topics[k].name, name, len))
                return k;
        return -1;
    }
    size_t s = hash_bytes(name, len) & (c->index_cap - 1);
    for (int32_t v; (v = c->by_name[s]); s = (s + 1) & (c->index_cap - 1)) {
        const gw_topic *t = &c->topics[v - 1];
        if ((size_t)t->name_len == len && !memcmp(t->name, name, len)) return v - 1;
    }
    return -1;
}

static int topic_find_id(const sl_gwcluster *c, const sl_uuid *id) {
    if (sl_uuid_is_zero(id)) return -1;
    if (!c->index_cap) {
        for (int k = 0; k < c->ntopics; k++)
            if (!memcmp(c->topics[k].id.b, id->b, sizeof id->b)) return k;
        return -1;
    }
    size_t s = hash_bytes(id->b, sizeof id->b) & (c->index_cap - 1);
    for (int32_t v; (v = c->by_id[s]); s = (s + 1) & (c->index_cap - 1))
        if (!memcmp(c->topics[v - 1].id.b, id->b, sizeof id->b)) return v - 1;
    return -1;
}

static int cmp_part(const void *a, const void *b) {
    int32_t x = ((const gw_part *)a)->index, y = ((const gw_part *)b)->index;
    return (x > y) - (x < y);
}

/* Fills `t` (zeroed) from a Metadata topic; false when out of memory. */
static bool topic_from(gw_topic *t, const sl_metadata_resp_topic *m, int16_t version) {
    t->name = malloc((size_t)m->name.len + 1);
    if (!t->name) return false;
    if (m->name.len) memcpy(t->name, m->name.p, (size_t)m->name.len);
    t->name[m->name.len] = 0;
    t->name_len = m->name.len;
    if (version >= 10) t->id = m->topic_id;
    t->internal = m->is_internal;
    int32_t n = m->partitions_count > 0 ? m->partitions_count : 0;
    if (n) {
        t->parts = calloc((size_t)n, sizeof *t->parts);
        if (!t->parts) {
            topic_clear(t);
            return false;
        }
    }
    for (int32_t i = 0; i < n; i++) {
        const sl_metadata_resp_partition *p = &m->partitions[i];
        t->parts[i] =
            (gw_part){.index = p->partition_index,
                      .leader = p->leader_id,
                      .leader_epoch = p->leader_epoch,
                      .nreplicas = p->replica_nodes_count > 0 ? p->replica_nodes_count : 0,
                      .nisr = p->isr_nodes_count > 0 ? p->isr_nodes_count : 0};
    }
    qsort(t->parts, (size_t)n, sizeof *t->parts, cmp_part);
    t->nparts = n;
    return true;
}

static bool topics_reserve(sl_gwcluster *c, int n) {
    if (n <= c->captopics) return true;
    int cap = c->captopics ? c->captopics : 16;
    while (cap < n) cap *= 2;
    gw_topic *t = realloc(c->topics, (size_t)cap * sizeof *t);
    if (!t) return false;
    c->topics = t;
    c->captopics = cap;
    return true;
}

static void topic_remove(sl_gwcluster *c, int k) {
    topic_clear(&c->topics[k]);
    c->topics[k] = c->topics[--c->ntopics];
}

/* What a Metadata topic entry says about the topic's existence. */
enum { T_KEEP, T_UPSERT, T_GONE };
static int topic_verdict(const sl_metadata_resp_topic *m) {
    if (m->name.len <= 0) return T_KEEP; /* by id only, unknown: nothing to name */
    switch (m->error_code) {
    case 0:
    case SL_KAFKA_LEADER_NOT_AVAILABLE: /* exists, being created or electing */
        return T_UPSERT;
    case SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION:
        return T_GONE;
    default: /* not authorized, invalid name...: says nothing about the topic */
        return T_KEEP;
    }
}

static void health_recount(sl_gwcluster *c) {
    int64_t parts = 0, under = 0, offline = 0;
    for (int k = 0; k < c->ntopics; k++)
        for (int32_t i = 0; i < c->topics[k].nparts; i++) {
            const gw_part *p = &c->topics[k].parts[i];
            parts++;
            if (p->nisr < p->nreplicas) under++;
            if (p->leader < 0) offline++;
        }
    c->health.partitions = parts;
    c->health.under_replicated = under;
    c->health.offline = offline;
    c->health.brokers = c->nnodes;
}

/* ---- nodes ---- */

static int cmp_node(const void *a, const void *b) {
    int32_t x = ((const sl_gw_node *)a)->id, y = ((const sl_gw_node *)b)->id;
    return (x > y) - (x < y);
}

static void node_from(sl_gw_node *n, const sl_metadata_resp_broker *b) {
    memset(n, 0, sizeof *n);
    n->id = b->node_id;
    n->port = b->port;
    int32_t hl = b->host.len > 0 ? b->host.len : 0;
    if ((size_t)hl >= sizeof n->host) hl = (int32_t)sizeof n->host - 1;
    if (hl) memcpy(n->host, b->host.p, (size_t)hl);
    int32_t rl = b->rack.len > 0 ? b->rack.len : 0;
    if ((size_t)rl >= sizeof n->rack) rl = (int32_t)sizeof n->rack - 1;
    if (rl) memcpy(n->rack, b->rack.p, (size_t)rl);
}

/* Installs `nodes` (malloc'd, sorted by id; taken over) when it differs from the current list,
 * telling the hook first. */
static void nodes_install(sl_gwcluster *c, sl_gw_node *nodes, int n) {
    bool same = n == c->nnodes && (!n || !memcmp(nodes, c->nodes, (size_t)n * sizeof *nodes));
    if (same) {
        free(nodes);
        return;
    }
    if (c->hooks && c->hooks->nodes_changed && !c->hooks->nodes_changed(c->hooks->ctx, nodes, n))
        SL_WARN("gateway", "upstream brokers without a gateway address", "brokers=%d", n);
    free(c->nodes);
    c->nodes = nodes;
    c->nnodes = n;
    c->health.brokers = n;
    SL_INFO("gateway", "upstream brokers", "count=%d", n);
}

/* The brokers of `m`: replacing the list (a full refresh) or merged into it (a client's answer,
 * which may come from a broker with a stale view: it adds and updates, never removes). */
static void nodes_apply(sl_gwcluster *c, const sl_metadata_resp *m, bool replace) {
    int nb = m->brokers_count > 0 ? m->brokers_count : 0;
    int base = replace ? 0 : c->nnodes;
    sl_gw_node *nodes = malloc(((size_t)base + (size_t)nb + 1) * sizeof *nodes);
    if (!nodes) return;
    if (base) memcpy(nodes, c->nodes, (size_t)base * sizeof *nodes);
    int n = base;
    for (int i = 0; i < nb; i++) {
        sl_gw_node nd;
        node_from(&nd, &m->brokers[i]);
        int j = 0;
        while (j < n && nodes[j].id != nd.id) j++;
        nodes[j] = nd; /* a duplicate id: the last entry wins */
        if (j == n) n++;
    }
    qsort(nodes, (size_t)n, sizeof *nodes, cmp_node);
    nodes_install(c, nodes, n);
}

/* ---- applying Metadata ---- */

/* Everything a full all-topics answer says; the topic set is replaced. */
static void apply_full(sl_gwcluster *c, int16_t version, const sl_metadata_resp *m) {
    /* No broker at all is a cluster in trouble, not one to forget: keep the last list. */
    if (m->brokers_count > 0) nodes_apply(c, m, true);
    c->controller = version >= 1 ? m->controller_id : -1;
    if (version >= 2 && m->cluster_id.len > 0) {
        size_t l = (size_t)m->cluster_id.len;
        if (l >= sizeof c->cluster_id) l = sizeof c->cluster_id - 1;
        memcpy(c->cluster_id, m->cluster_id.p, l);
        c->cluster_id[l] = 0;
    }
    int nt = m->topics_count > 0 ? m->topics_count : 0;
    gw_topic *nts = calloc((size_t)(nt ? nt : 1), sizeof *nts);
    if (!nts) return; /* keep the old set */
    int n = 0;
    for (int i = 0; i < nt; i++) {
        if (topic_verdict(&m->topics[i]) != T_UPSERT) continue;
        if (!topic_from(&nts[n], &m->topics[i], version)) {
            for (int k = 0; k < n; k++) topic_clear(&nts[k]);
            free(nts);
            return;
        }
        n++;
    }
    for (int k = 0; k < c->ntopics; k++) topic_clear(&c->topics[k]);
    free(c->topics);
    c->topics = nts;
    c->ntopics = n;
    c->captopics = nt ? nt : 1;
    index_rebuild(c);
    health_recount(c);
}

void sl_gwcluster_learn(sl_gwcluster *c, int16_t version, const sl_metadata_resp *m) {
    if (!c || !m) return;
    nodes_apply(c, m, false);
    if (version >= 1 && m->controller_id >= 0) c->controller = m->controller_id;
    if (version >= 2 && m->cluster_id.len > 0 && !c->cluster_id[0]) {
        size_t l = (size_t)m->cluster_id.len;
        if (l >= sizeof c->cluster_id) l = sizeof c->cluster_id - 1;
        memcpy(c->cluster_id, m->cluster_id.p, l);
        c->cluster_id[l] = 0;
    }
    int nt = m->topics_count > 0 ? m->topics_count : 0;
    for (int i = 0; i < nt; i++) {
        const sl_metadata_resp_topic *mt = &m->topics[i];
        int v = topic_verdict(mt);
        if (v == T_KEEP) continue;
        int k = topic_find(c, mt->name.p, (size_t)mt->name.len);
        if (v == T_GONE) {
            if (k >= 0) {
                topic_remove(c, k);
                index_rebuild(c);
            }
            continue;
        }
        gw_topic t = {0};
        if (!topic_from(&t, mt, version)) continue;
        if (k >= 0) {
            if (version < 10) t.id = c->topics[k].id; /* an old version does not carry it */
            bool id_moved = memcmp(t.id.b, c->topics[k].id.b, sizeof t.id.b) != 0;
            topic_clear(&c->topics[k]);
            c->topics[k] = t;
            if (id_moved) index_rebuild(c); /* recreated under the same name */
        } else {
            if (!topics_reserve(c, c->ntopics + 1)) {
                topic_clear(&t);
                continue;
            }
            c->topics[c->ntopics++] = t;
            index_add(c, c->ntopics - 1);
        }
    }
    health_recount(c);
}

/* ---- the control connection ---- */

static void schedule(sl_gwcluster *c, int64_t delay_ms);
static void refresh(sl_gwcluster *c);

static int naddrs(const sl_gwcluster *c, int *nboot) {
    char host[256];
    int port, n = 0;
    while (sl_upstream_cfg_bootstrap(c->cfg, n, host, sizeof host, &port)) n++;
    *nboot = n;
    return n + c->nnodes;
}

/* The address `i` of the bootstrap servers followed by the known nodes. */
static bool addr_at(const sl_gwcluster *c, int i, int nboot, char *host, size_t hcap, int *port,
                    int32_t *node) {
    if (i < nboot) {
        *node = -1;
        return sl_upstream_cfg_bootstrap(c->cfg, i, host, hcap, port);
    }
    i -= nboot;
    if (i >= c->nnodes) return false;
    snprintf(host, hcap, "%s", c->nodes[i].host);
    *port = c->nodes[i].port;
    *node = c->nodes[i].id;
    return true;
}

static void ctl_drop(sl_gwcluster *c) {
    if (!c->ctl) return;
    sl_upconn_close(c->ctl);
    sl_upconn_unref(c->ctl);
    c->ctl = NULL;
}

/* The control connection failed (counted once), is dropped, and the cycle retries after the
 * backoff at the next address. */
static void ctl_fail(sl_gwcluster *c, const char *why) {
    if (!c->ctl_failed) {
        c->health.failures++;
        c->ctl_failed = true;
    }
    c->health.reachable = false;
    SL_WARN("gateway", "upstream control connection failed", "addr=%s why=\"%s\" retry_ms=%lld",
            c->ctl_addr, why, (long long)c->backoff_ms);
    ctl_drop(c);
    c->inflight = false;
    c->want_soon = false;
    c->in_backoff = true;
    c->addr_next++;
    schedule(c, c->backoff_ms);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void on_connected(void *ctx, int32_t node, const char *addr, bool ok, sl_up_status st,
                         const char *why) {
    gw_link *l = ctx;
    sl_gwcluster *c = l->c;
    if (!c) return;
    if (c->hooks && c->hooks->up.connected)
        c->hooks->up.connected(c->hooks->up.ctx, node, addr, ok, st, why);
    if (!ok && c->ctl && sl_upconn_dead(c->ctl) && !c->ctl_failed) {
        /* Count it now; the queued request's callback drops the connection. */
        c->health.failures++;
        c->ctl_failed = true;
        c->health.reachable = false;
    }
}

static void on_lost(void *ctx, int32_t node, const char *addr, const char *why) {
    gw_link *l = ctx;
    sl_gwcluster *c = l->c;
    if (!c) return;
    if (c->hooks && c->hooks->up.lost) c->hooks->up.lost(c->hooks->up.ctx, node, addr, why);
    /* Lost while idle between refreshes: no callback will tell. Handled after this callback
     * (refresh() drops a dead connection and retries after the backoff), not inside it. */
    if (c->ctl && sl_upconn_dead(c->ctl) && !c->inflight) sl_loop_post(c->loop, &c->post);
}

static void on_response(void *ctx, sl_up_status st, const uint8_t *body, size_t len);

static bool send_req(sl_gwcluster *c, int kind, int16_t version) {
    gw_req *q = calloc(1, sizeof *q);
    sl_arena *a = sl_arena_new(1024);
    if (!q || !a) {
        free(q);
        sl_arena_free(a);
        return false;
    }
    sl_wr w;
    sl_wr_init(&w, a, 256);
    int16_t key = kind == REQ_VERSIONS ? SL_API_API_VERSIONS : SL_API_METADATA;
    sl_req_header h = {.api_key = key,
                       .api_version = version,
                       .correlation_id = 0,
                       .client_id = sl_str_c(CLIENT_ID)};
    sl_req_header_encode(&w, &h);
    if (kind == REQ_VERSIONS) {
        sl_api_versions_req r;
        sl_api_versions_req_init(&r);
        r.client_software_name = sl_str_c("sluice");
        r.client_software_version = sl_str_c("gateway");
        sl_api_versions_req_encode(&w, version, &r);
    } else {
        sl_metadata_req r;
        sl_metadata_req_init(&r);
        /* All topics: null from v1 on, an empty list in v0. Never auto-create. */
        r.topics = NULL;
        r.topics_count = version >= 1 ? -1 : 0;
        r.allow_auto_topic_creation = false;
        sl_metadata_req_encode(&w, version, &r);
    }
    if (w.err) {
        free(q);
        sl_arena_free(a);
        return false;
    }
    q->c = c;
    q->conn = c->ctl;
    q->kind = kind;
    q->version = version;
    q->next = c->reqs;
    c->reqs = q;
    c->inflight = true;
    sl_upconn_send(c->ctl, w.buf, w.len, on_response, q);
    sl_arena_free(a);
    return true;
}

static void req_unlink(sl_gwcluster *c, gw_req *q) {
    for (gw_req **p = &c->reqs; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            return;
        }
}

/* The ranges of an ApiVersions answer; false when it is not one or names no Metadata we speak. */
static bool take_versions(sl_gwcluster *c, int16_t version, const uint8_t *body, size_t len,
                          const char **why) {
    sl_arena *a = sl_arena_new(4096);
    if (!a) {
        *why = "out of memory";
        return false;
    }
    sl_rd r = sl_rd_init(body, len);
    sl_api_versions_resp m;
    sl_api_versions_resp_init(&m);
    bool ok = false;
    if (sl_api_versions_resp_decode(&r, a, version, &m) != SL_OK) {
        *why = "malformed ApiVersions answer";
    } else if (m.error_code) {
        *why = "ApiVersions refused";
    } else {
        int n = m.api_keys_count > 0 ? m.api_keys_count : 0;
        gw_range *rs = malloc((size_t)(n ? n : 1) * sizeof *rs);
        if (!rs) {
            *why = "out of memory";
        } else {
            for (int i = 0; i < n; i++)
                rs[i] = (gw_range){m.api_keys[i].api_key, m.api_keys[i].min_version,
                                   m.api_keys[i].max_version};
            free(c->ranges);
            c->ranges = rs;
            c->nranges = n;
            c->versions_known = true;
            int16_t lo, hi;
            const sl_api_info *our = sl_api_lookup(SL_API_METADATA);
            if (!sl_gwcluster_api_range(c, SL_API_METADATA, &lo, &hi) || !our ||
                lo > our->max_version || hi < our->min_version) {
                *why = "upstream serves no Metadata version the gateway speaks";
            } else {
                c->md_version = hi < our->max_version ? hi : our->max_version;
                ok = true;
            }
        }
    }
    sl_arena_free(a);
    return ok;
}

static bool take_metadata(sl_gwcluster *c, int16_t version, const uint8_t *body, size_t len,
                          const char **why) {
    sl_arena *a = sl_arena_new(16 * 1024);
    if (!a) {
        *why = "out of memory";
        return false;
    }
    sl_rd r = sl_rd_init(body, len);
    if (sl_api_flexible(SL_API_METADATA, version)) sl_pr_skip_tags(&r);
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    bool ok = !r.err && sl_metadata_resp_decode(&r, a, version, &m) == SL_OK;
    if (!ok)
        *why = "malformed Metadata answer";
    else
        apply_full(c, version, &m);
    sl_arena_free(a);
    return ok;
}

static void on_response(void *ctx, sl_up_status st, const uint8_t *body, size_t len) {
    gw_req *q = ctx;
    sl_gwcluster *c = q->c;
    int kind = q->kind;
    int16_t version = q->version;
    bool current = c && q->conn == c->ctl && c->ctl;
    if (c) req_unlink(c, q);
    free(q);
    if (!current) return; /* freed, or an old connection's answer */
    const char *why = NULL;
    if (st != SL_UP_OK) {
        why = st == SL_UP_AUTH       ? "authentication refused"
              : st == SL_UP_TIMEOUT  ? "request timed out"
              : st == SL_UP_PROTOCOL ? "not a Kafka response"
              : st == SL_UP_CLOSED   ? "closed"
                                     : "connection failed";
        ctl_fail(c, why);
        return;
    }
    c->inflight = false;
    if (kind == REQ_VERSIONS) {
        if (!take_versions(c, version, body, len, &why)) {
            ctl_fail(c, why);
            return;
        }
        if (!send_req(c, REQ_METADATA, c->md_version)) ctl_fail(c, "out of memory");
        return;
    }
    if (!take_metadata(c, version, body, len, &why)) {
        ctl_fail(c, why);
        return;
    }
    c->health.reachable = true;
    c->health.refreshed_ms = sl_wall_ms();
    c->last_md_mono = sl_loop_now(c->loop);
    c->backoff_ms = BACKOFF_MIN_MS;
    c->have_md = true;
    if (c->want_soon) {
        c->want_soon = false;
        schedule(c, SOON_SPACING_MS);
    } else {
        schedule(c, c->refresh_ms);
    }
}

/* Opens a control connection at the next address and starts with ApiVersions. */
static void ctl_open(sl_gwcluster *c) {
    int nboot, n = naddrs(c, &nboot);
    char host[256];
    int port = 0;
    int32_t node = -1;
    if (n == 0 || !addr_at(c, c->addr_next % n, nboot, host, sizeof host, &port, &node)) {
        snprintf(c->ctl_addr, sizeof c->ctl_addr, "(none)");
        c->ctl_failed = true; /* nothing to count: no address at all */
        ctl_fail(c, "no upstream address");
        return;
    }
    c->addr_next %= n;
    snprintf(c->ctl_addr, sizeof c->ctl_addr, "%s:%d", host, port);
    c->ctl_failed = false;
    c->ctl = sl_upconn_new(c->loop, c->cfg, &c->link->ev, node, host, port);
    if (!c->ctl) {
        ctl_fail(c, "out of memory");
        return;
    }
    /* v0: answered by every broker, also those that close the connection on newer ones. */
    if (!send_req(c, REQ_VERSIONS, 0)) ctl_fail(c, "out of memory");
}

static void refresh(sl_gwcluster *c) {
    if (c->inflight) {
        c->want_soon = true;
        return;
    }
    c->in_backoff = false;
    if (c->ctl && sl_upconn_dead(c->ctl)) ctl_fail(c, "connection gone");
    if (c->in_backoff) return;
    if (!c->ctl) {
        ctl_open(c);
        return;
    }
    if (!send_req(c, REQ_METADATA, c->md_version)) ctl_fail(c, "out of memory");
}

static void on_timer(void *ctx) {
    sl_gwcluster *c = ctx;
    c->timer = NULL;
    refresh(c);
}

static void on_post(void *ctx) {
    sl_gwcluster *c = ctx;
    if (c->timer) {
        sl_timer_cancel(c->loop, c->timer);
        c->timer = NULL;
    }
    refresh(c);
}

static void schedule(sl_gwcluster *c, int64_t delay_ms) {
    if (c->timer) sl_timer_cancel(c->loop, c->timer);
    c->timer = sl_timer_start(c->loop, delay_ms, on_timer, c);
}

/* ---- public ---- */

sl_gwcluster *sl_gwcluster_new(sl_loop *loop, const sl_upstream_cfg *cfg, int64_t refresh_ms,
                               const sl_gwcluster_hooks *hooks) {
    sl_gwcluster *c = calloc(1, sizeof *c);
    gw_link *l = calloc(1, sizeof *l);
    if (!c || !l) {
        free(c);
        free(l);
        return NULL;
    }
    l->c = c;
    l->ev = (sl_upconn_events){.ctx = l, .connected = on_connected, .lost = on_lost};
    c->link = l;
    c->loop = loop;
    c->cfg = cfg;
    c->refresh_ms = refresh_ms > 0 ? refresh_ms : 30000;
    c->hooks = hooks;
    c->controller = -1;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->post = (sl_post){.cb = on_post, .ctx = c};
    c->timer = sl_timer_start(loop, 0, on_timer, c);
    if (!c->timer) {
        free(l);
        free(c);
        return NULL;
    }
    return c;
}

void sl_gwcluster_free(sl_gwcluster *c) {
    if (!c) return;
    if (c->timer) sl_timer_cancel(c->loop, c->timer);
    sl_loop_unpost(c->loop, &c->post);
    for (gw_req *q = c->reqs; q; q = q->next) q->c = NULL;
    c->link->c = NULL;
    ctl_drop(c);
    link_park(c->link);
    for (int k = 0; k < c->ntopics; k++) topic_clear(&c->topics[k]);
    free(c->topics);
    free(c->by_name);
    free(c->by_id);
    free(c->nodes);
    free(c->ranges);
    free(c);
}

bool sl_gwcluster_wait_ready(sl_gwcluster *c, int64_t timeout_ms) {
    int64_t deadline = sl_mono_ms() + timeout_ms;
    while (!c->have_md) {
        int64_t left = deadline - sl_mono_ms();
        if (left <= 0) break;
        if (sl_loop_run_once(c->loop, (int)(left < 50 ? left : 50)) < 0) break;
    }
    return c->have_md;
}

void sl_gwcluster_refresh_soon(sl_gwcluster *c) {
    /* A failing upstream is retried on its backoff, not by every client that notices. */
    if (!c || c->in_backoff) return;
    if (c->inflight) {
        c->want_soon = true;
        return;
    }
    int64_t since = sl_loop_now(c->loop) - c->last_md_mono;
    if (c->have_md && since < SOON_SPACING_MS) {
        schedule(c, SOON_SPACING_MS - since);
        return;
    }
    sl_loop_post(c->loop, &c->post);
}

int sl_gwcluster_nodes(const sl_gwcluster *c, const sl_gw_node **out) {
    *out = c->nodes;
    return c->nnodes;
}

const sl_gw_node *sl_gwcluster_node(const sl_gwcluster *c, int32_t id) {
    int lo = 0, hi = c->nnodes - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c->nodes[mid].id == id) return &c->nodes[mid];
        if (c->nodes[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const sl_gw_node *sl_gwcluster_any_node(sl_gwcluster *c) {
    if (!c->have_md || c->nnodes == 0) return NULL;
    return &c->nodes[c->rr++ % (unsigned)c->nnodes];
}

int32_t sl_gwcluster_controller(const sl_gwcluster *c) { return c->controller; }

const char *sl_gwcluster_cluster_id(const sl_gwcluster *c) { return c->cluster_id; }

bool sl_gwcluster_api_range(const sl_gwcluster *c, int16_t key, int16_t *min, int16_t *max) {
    if (!c->versions_known) return false;
    for (int i = 0; i < c->nranges; i++)
        if (c->ranges[i].key == key) {
            if (c->ranges[i].min > c->ranges[i].max) return false;
            *min = c->ranges[i].min;
            *max = c->ranges[i].max;
            return true;
        }
    return false;
}

bool sl_gwcluster_versions_known(const sl_gwcluster *c) { return c->versions_known; }

int32_t sl_gwcluster_leader(const sl_gwcluster *c, sl_str topic, int32_t partition) {
    if (topic.len < 0) return -1;
    int k = topic_find(c, topic.p, (size_t)topic.len);
    if (k < 0) return -1;
    const gw_topic *t = &c->topics[k];
    gw_part key = {.index = partition};
    const gw_part *p = bsearch(&key, t->parts, (size_t)t->nparts, sizeof *t->parts, cmp_part);
    return p ? p->leader : -1;
}

/* ---- catalog ---- */

static bool cat_topic_name(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name) {
    sl_gwcluster *c = ctx;
    int k = topic_find_id(c, id);
    if (k < 0) return false;
    /* A copy: the next Metadata refresh frees the entry while the request is upstream. */
    char *p = sl_arena_dup(a, c->topics[k].name, (size_t)c->topics[k].name_len);
    if (!p) return false;
    *name = (sl_str){p, c->topics[k].name_len};
    return true;
}

static bool cat_topic_exists(void *ctx, sl_str name) {
    sl_gwcluster *c = ctx;
    return name.len >= 0 && topic_find(c, name.p, (size_t)name.len) >= 0;
}

/* The gateway never asks the upstream to create a topic on a client's behalf: a Metadata
 * request forwarded upstream carries the client's own allow_auto_topic_creation. */
static bool cat_auto_create(void *ctx) { return false; }

static void cat_each_topic(void *ctx, void (*fn)(void *arg, sl_str name), void *arg) {
    sl_gwcluster *c = ctx;
    for (int k = 0; k < c->ntopics; k++)
        fn(arg, (sl_str){c->topics[k].name, c->topics[k].name_len});
}

static void cat_each_group(void *ctx, void (*fn)(void *arg, sl_str group), void *arg) {}

static void cat_each_committed_topic(void *ctx, sl_str group, void (*fn)(void *arg, sl_str topic),
                                     void *arg) {}

sl_catalog sl_gwcluster_catalog(sl_gwcluster *c) {
    return (sl_catalog){.ctx = c,
                        .topic_name = cat_topic_name,
                        .topic_exists = cat_topic_exists,
                        .auto_create = cat_auto_create,
                        .each_topic = cat_each_topic,
                        .each_group = cat_each_group,
                        .each_committed_topic = cat_each_committed_topic};
}

void sl_gwcluster_health(const sl_gwcluster *c, sl_gw_health *out) { *out = c->health; }

void sl_gwcluster_count_failure(sl_gwcluster *c) { c->health.failures++; }
