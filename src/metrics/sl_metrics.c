/* Metrics, health and the status page (sl_metrics.h, docs/metrics.md).
 *
 * Two halves: counters fed by the event hub (requests, logins, connections, findings), kept
 * here in small hash tables keyed by label values, and an HTTP listener of its own (src/http,
 * sl_httpd.h) on the broker's loop that renders them, with the gauges read from the broker at
 * scrape time. The listener is deliberately separate from the Kafka server: a scrape must work
 * while Kafka listeners are saturated or refusing, and nothing that reaches it can touch the
 * Kafka path. */
#include "metrics/sl_metrics.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <time.h>

#include "acl/sl_acl.h"
#include "audit/sl_audit.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "broker/sl_fprot.h"
#include "crypto/sl_tls_ctx.h"
#include "gateway/sl_gateway.h"
#include "guard/sl_guard.h"
#include "http/sl_http.h"
#include "http/sl_httpd.h"
#include "kms/sl_keysvc.h"
#include "metrics/sl_prom.h"
#include "storage/sl_flusher.h"

/* A scraper or a browser needs a handful of connections; the rest are closed at accept. */
#define MAX_CONNS 64
/* Labelled series per family: label values come from clients (claimed user names, failure
 * reasons, topics), so a family stops growing here and counts what it dropped instead. */
#define MAX_SERIES 2048
#define NBUCKETS   256

/* ---- label-keyed counters ---------------------------------------------------------------- */

typedef struct ser {
    struct ser *next;
    uint32_t hash;
    int nlabels;
    uint64_t v[4];
    size_t klen;
    char key[]; /* label values, each NUL-terminated, one after another */
} ser;

typedef struct fam {
    ser *b[NBUCKETS];
    int n;
} fam;

static uint32_t fnv(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* The label values of `s`, into vals[0..nlabels). */
static void ser_labels(const ser *s, const char **vals) {
    const char *p = s->key;
    for (int i = 0; i < s->nlabels; i++) {
        vals[i] = p;
        p += strlen(p) + 1;
    }
}

/* Finds or adds the series of `vals` (NULL values count as ""); NULL when out of memory or the
 * family is full (counted in *dropped). */
static ser *fam_get(fam *f, const char *const *vals, int n, uint64_t *dropped) {
    char key[1024];
    size_t klen = 0;
    for (int i = 0; i < n; i++) {
        const char *v = vals[i] ? vals[i] : "";
        size_t l = strnlen(v, 255); /* a longer value is cut: the key stays bounded */
        if (klen + l + 1 > sizeof key) l = sizeof key - klen - 1;
        memcpy(key + klen, v, l);
        klen += l;
        key[klen++] = 0;
    }
    uint32_t h = fnv(key, klen);
    for (ser *s = f->b[h % NBUCKETS]; s; s = s->next)
        if (s->hash == h && s->klen == klen && !memcmp(s->key, key, klen)) return s;
    if (f->n >= MAX_SERIES) {
        (*dropped)++;
        return NULL;
    }
    ser *s = calloc(1, sizeof *s + klen);
    if (!s) {
        (*dropped)++;
        return NULL;
    }
    s->hash = h;
    s->nlabels = n;
    s->klen = klen;
    memcpy(s->key, key, klen);
    s->next = f->b[h % NBUCKETS];
    f->b[h % NBUCKETS] = s;
    f->n++;
    return s;
}

static void fam_free(fam *f) {
    for (int i = 0; i < NBUCKETS; i++)
        for (ser *s = f->b[i], *nx; s; s = nx) {
            nx = s->next;
            free(s);
        }
    memset(f, 0, sizeof *f);
}

/* ---- request latency --------------------------------------------------------------------- */

#define LAT_NB   14
#define API_SLOT 128 /* api keys 0..127; the slot past them counts requests of no known API */
static const double k_lat_le[LAT_NB] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const k_lat_le_s[LAT_NB] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                               "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                               "1",      "2.5",   "5",      "10"};

typedef struct api_stats {
    uint64_t count, bytes_in, bytes_out, errors;
    uint64_t bucket[LAT_NB + 1];
    double sum_s;
} api_stats;

struct sl_metrics {
    sl_broker *b;
    sl_httpd *httpd;
    bool https;
    sl_tls_endpoint *tls;        /* https: reloaded with the broker's listeners (sl_metrics_tls) */
    unsigned char token_sha[32]; /* SHA-256 of the bearer token; the token itself is not kept */
    bool token;
    /* event-fed */
    fam topics;   /* {topic}: bytes in, bytes out, messages in, messages out */
    fam auth_ok;  /* {mechanism,listener} */
    fam auth_bad; /* {mechanism,listener,reason} */
    fam denials;  /* {principal,operation,resource_type} */
    fam tls_bad;  /* {listener,reason} */
    fam dets;     /* {rule} */
    fam refused;  /* {listener,reason} */
    fam conns_by; /* {listener}: open now, opened in total */
    uint64_t dropped;
    api_stats api[API_SLOT + 1];
    /* status page rates */
    int64_t snap_ms[2];
    uint64_t snap[2][4];
    int64_t started_ms;
};

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fam_inc(sl_metrics *m, fam *f, const char *const *vals, int n, int idx, uint64_t by) {
    ser *s = fam_get(f, vals, n, &m->dropped);
    if (s) s->v[idx] += by;
}

static const char *api_name(int slot) {
    if (slot >= API_SLOT) return "unknown";
    const sl_api_info *i = sl_api_lookup((int16_t)slot);
    return i ? i->name : "unknown";
}

static void on_request(sl_metrics *m, const sl_event *ev) {
    const sl_req *rq = ev->rq;
    int slot = API_SLOT;
    if (rq->api)
        slot = rq->h.api_key;
    else if (rq->raw)
        slot = 36; /* a bare SASL token: SaslAuthenticate's v0 framing */
    if (slot < 0 || slot > API_SLOT) slot = API_SLOT;
    api_stats *a = &m->api[slot];
    a->count++;
    a->bytes_in += (uint64_t)(rq->bytes_in > 0 ? rq->bytes_in : 0);
    a->bytes_out += (uint64_t)(rq->bytes_out > 0 ? rq->bytes_out : 0);
    if (rq->error || rq->outcome == SL_REQ_OUT_CLOSED) a->errors++;
    double s = rq->end_ns > rq->start_ns ? (double)(rq->end_ns - rq->start_ns) / 1e9 : 0;
    int i = 0;
    while (i < LAT_NB && s > k_lat_le[i]) i++;
    a->bucket[i]++;
    a->sum_s += s;
    for (int32_t k = 0; k < rq->nres; k++) {
        const sl_req_res *r = &rq->res[k];
        /* Listings leave out what the caller may not see: those are not denials. */
        if (r->allowed || (r->flags & SL_AZ_QUIET)) continue;
        const char *v[3] = {rq->principal ? rq->principal : "User:ANONYMOUS", sl_acl_op_name(r->op),
                            sl_acl_res_name(r->rtype)};
        fam_inc(m, &m->denials, v, 3, 0, 1);
    }
    if (rq->ndata > 0) {
        for (int32_t k = 0; k < rq->ndata; k++) {
            const sl_req_data *d = &rq->data[k];
            if (d->error || d->topic.len <= 0) continue;
            char name[256];
            int32_t l = d->topic.len > 255 ? 255 : d->topic.len;
            memcpy(name, d->topic.p, (size_t)l);
            name[l] = 0;
            const char *v[1] = {name};
            ser *t = fam_get(&m->topics, v, 1, &m->dropped);
            if (!t) continue;
            uint64_t bytes = (uint64_t)(d->bytes > 0 ? d->bytes : 0);
            uint64_t recs = (uint64_t)(d->records > 0 ? d->records : 0);
            t->v[d->write ? 0 : 1] += bytes;
            t->v[d->write ? 2 : 3] += recs;
        }
    }
}

static void on_event(void *ctx, const sl_event *ev) {
    sl_metrics *m = ctx;
    const char *listener = ev->listener ? ev->listener : "";
    switch (ev->kind) {
    case SL_EV_REQUEST:
        on_request(m, ev);
        break;
    case SL_EV_AUTH: {
        if (ev->auth.activity == SL_AUTH_EXPIRED) break;
        const char *mech = ev->auth.mechanism ? ev->auth.mechanism : "unknown";
        if (ev->auth.success) {
            const char *v[2] = {mech, listener};
            fam_inc(m, &m->auth_ok, v, 2, 0, 1);
        } else {
            const char *v[3] = {mech, listener, ev->auth.reason ? ev->auth.reason : "unknown"};
            fam_inc(m, &m->auth_bad, v, 3, 0, 1);
        }
        break;
    }
    case SL_EV_NET: {
        const char *v[2] = {listener, ev->net.reason ? ev->net.reason : "unknown"};
        if (ev->net.activity == SL_NET_OPEN) {
            ser *s = fam_get(&m->conns_by, v, 1, &m->dropped);
            if (s) {
                s->v[0]++;
                s->v[1]++;
            }
        } else if (ev->net.activity == SL_NET_CLOSE) {
            ser *s = fam_get(&m->conns_by, v, 1, &m->dropped);
            if (s && s->v[0] > 0) s->v[0]--;
            /* The server reports a failed TLS handshake on the close (sl_ev_net.tls_failure). */
            if (ev->net.tls_failure) {
                v[1] = ev->net.tls_failure;
                fam_inc(m, &m->tls_bad, v, 2, 0, 1);
            }
        } else {
            fam_inc(m, &m->refused, v, 2, 0, 1);
        }
        break;
    }
    case SL_EV_DETECTION: {
        const char *v[1] = {ev->det.rule ? ev->det.rule : "unknown"};
        fam_inc(m, &m->dets, v, 1, 0, 1);
        break;
    }
    default:
        break;
    }
}

/* ---- rendering ---------------------------------------------------------------------------- */

static void render_fam(sl_text *t, const fam *f, const char *name, const char *type,
                       const char *help, const char *const *lnames, int idx) {
    sl_prom_family(t, name, type, help);
    for (int i = 0; i < NBUCKETS; i++)
        for (const ser *s = f->b[i]; s; s = s->next) {
            const char *vals[4];
            ser_labels(s, vals);
            const char *labels[9] = {0};
            for (int k = 0; k < s->nlabels && lnames[k]; k++) {
                labels[2 * k] = lnames[k];
                labels[2 * k + 1] = vals[k];
            }
            sl_prom_sample_u64(t, name, labels, s->v[idx]);
        }
}

static void scalar(sl_text *t, const char *name, const char *type, const char *help, double v) {
    sl_prom_family(t, name, type, help);
    sl_prom_sample(t, name, NULL, v);
}

typedef struct lag_ctx {
    sl_metrics *m;
    sl_text *t;
    const char *group;
} lag_ctx;

static void lag_partition(void *arg, sl_str topic, int32_t partition, const sl_group_committed *c) {
    lag_ctx *lc = arg;
    if (!c || c->offset < 0) return;
    sl_topic *tp = sl_topics_find(lc->m->b->topics, topic);
    if (!tp || tp->deleted || partition < 0 || partition >= tp->npart) return;
    sl_log *log = tp->parts[partition]->log;
    if (!log) return;
    int64_t lag = sl_log_end_offset(log) - c->offset;
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", (int)partition);
    const char *labels[] = {"group", lc->group, "topic", tp->name, "partition", pbuf, NULL};
    sl_prom_sample(lc->t, "kafka_consumergroup_lag", labels, (double)(lag > 0 ? lag : 0));
}

static void lag_group(void *arg, sl_str group) {
    lag_ctx *lc = arg;
    char g[256];
    int32_t l = group.len > 255 ? 255 : (group.len > 0 ? group.len : 0);
    if (l) memcpy(g, group.p, (size_t)l);
    g[l] = 0;
    lc->group = g;
    sl_groups_each_committed(&lc->m->b->coordinator, group, lag_partition, lc);
}

/* Sums of the topic family: bytes in, bytes out, messages in, messages out. */
static void topic_totals(const sl_metrics *m, uint64_t out[4]) {
    memset(out, 0, 4 * sizeof out[0]);
    for (int i = 0; i < NBUCKETS; i++)
        for (const ser *s = m->topics.b[i]; s; s = s->next)
            for (int k = 0; k < 4; k++) out[k] += s->v[k];
}

static void render_disk(const sl_metrics *m, sl_text *t, bool free_bytes) {
    const char *name = free_bytes ? "sluice_disk_free_bytes" : "sluice_disk_total_bytes";
    sl_prom_family(t, name, "gauge",
                   free_bytes ? "Bytes available to the broker on the file system of each log "
                                "directory."
                              : "Size of the file system of each log directory.");
    char dirs[sizeof m->b->cfg.log_dirs];
    snprintf(dirs, sizeof dirs, "%s", m->b->cfg.log_dirs);
    char *save = NULL;
    for (char *d = strtok_r(dirs, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
        while (*d == ' ') d++;
        struct statvfs sv;
        if (!*d || statvfs(d, &sv)) continue;
        double v = free_bytes ? (double)sv.f_bavail * (double)sv.f_frsize
                              : (double)sv.f_blocks * (double)sv.f_frsize;
        const char *labels[] = {"path", d, NULL};
        sl_prom_sample(t, name, labels, v);
    }
}

/* `sluice gateway`: partition health is the upstream cluster's (from its Metadata: ISR against
 * replicas, leaderless partitions), as MSK's CloudWatch shows it, plus the gateway's own
 * upstream connections. */
static void render_gateway(sl_text *t, const sl_gateway *g) {
    sl_gw_health h;
    sl_gwcluster_health(g->cluster, &h);
    scalar(t, "kafka_server_replicamanager_partitioncount", "gauge",
           "Partitions of the upstream cluster (its last Metadata).", (double)h.partitions);
    scalar(t, "kafka_server_replicamanager_underreplicatedpartitions", "gauge",
           "Upstream partitions whose in-sync replicas are fewer than their replicas.",
           (double)h.under_replicated);
    scalar(t, "kafka_controller_kafkacontroller_offlinepartitionscount", "gauge",
           "Upstream partitions without a leader.", (double)h.offline);
    scalar(t, "sluice_gateway_upstream_brokers", "gauge", "Upstream brokers in the last Metadata.",
           (double)h.brokers);
    scalar(t, "sluice_gateway_upstream_reachable", "gauge",
           "1 while the gateway's control connection to the upstream answers.",
           h.reachable ? 1.0 : 0.0);
    scalar(t, "sluice_gateway_upstream_metadata_timestamp_seconds", "gauge",
           "When upstream Metadata was last read (seconds since the epoch; 0: never).",
           (double)h.refreshed_ms / 1000.0);
    scalar(t, "sluice_gateway_upstream_connections", "gauge",
           "Upstream connections open for clients now.", (double)g->stats.upstream_conns);
    scalar(t, "sluice_gateway_answers_waiting_for_memory", "gauge",
           "Upstream connections not read now: their answer would pass "
           "sluice.fetch.memory.max.bytes.",
           g->gate ? (double)sl_upgate_waiting(g->gate) : 0);
    sl_prom_family(t, "sluice_gateway_answer_memory_waits_total", "counter",
                   "Times an upstream answer waited for memory (sluice.fetch.memory.max.bytes).");
    sl_prom_sample_u64(t, "sluice_gateway_answer_memory_waits_total", NULL,
                       g->gate ? sl_upgate_refusals(g->gate) : 0);
    sl_prom_family(t, "sluice_gateway_upstream_connects_total", "counter",
                   "Upstream connection attempts by result.");
    const char *ok[] = {"result", "ok", NULL}, *failed[] = {"result", "failed", NULL};
    sl_prom_sample_u64(t, "sluice_gateway_upstream_connects_total", ok,
                       (uint64_t)g->stats.upstream_connects);
    sl_prom_sample_u64(t, "sluice_gateway_upstream_connects_total", failed,
                       (uint64_t)g->stats.upstream_connect_failures);
    sl_prom_family(t, "sluice_gateway_upstream_lost_total", "counter",
                   "Established upstream connections that ended under a client.");
    sl_prom_sample_u64(t, "sluice_gateway_upstream_lost_total", NULL,
                       (uint64_t)g->stats.upstream_lost);
    sl_prom_family(t, "sluice_gateway_forwarded_total", "counter",
                   "Requests forwarded to the upstream cluster.");
    sl_prom_sample_u64(t, "sluice_gateway_forwarded_total", NULL, (uint64_t)g->stats.forwarded);
    if (g->crypt) {
        sl_gwcrypt_stats cs;
        sl_gwcrypt_stats_get(g->crypt, &cs);
        sl_prom_family(t, "sluice_gateway_records_total", "counter",
                       "Records sealed toward the upstream and opened on fetch, by op.");
        const char *l_seal[] = {"op", "seal", NULL}, *l_open[] = {"op", "open", NULL};
        sl_prom_sample_u64(t, "sluice_gateway_records_total", l_seal, (uint64_t)cs.sealed_records);
        sl_prom_sample_u64(t, "sluice_gateway_records_total", l_open, (uint64_t)cs.opened_records);
        sl_prom_family(t, "sluice_gateway_unencrypted_records_total", "counter",
                       "Fetched records of an encrypted topic that were written around the "
                       "gateway (no envelope).");
        sl_prom_sample_u64(t, "sluice_gateway_unencrypted_records_total", NULL,
                           (uint64_t)cs.unencrypted_records);
        sl_prom_family(t, "sluice_gateway_failed_records_total", "counter",
                       "Fetched records whose envelope failed authentication.");
        sl_prom_sample_u64(t, "sluice_gateway_failed_records_total", NULL,
                           (uint64_t)cs.failed_records);
    }
}

static void render_metrics(sl_metrics *m, sl_text *t) {
    sl_broker *b = m->b;
    static const char *const l_topic[] = {"topic", NULL};
    sl_prom_family(t, "kafka_server_brokertopicmetrics_bytesin_total", "counter",
                   "Record bytes produced to each topic (BrokerTopicMetrics BytesInPerSec).");
    for (int i = 0; i < NBUCKETS; i++)
        for (const ser *s = m->topics.b[i]; s; s = s->next) {
            const char *labels[] = {"topic", s->key, NULL};
            sl_prom_sample_u64(t, "kafka_server_brokertopicmetrics_bytesin_total", labels, s->v[0]);
        }
    render_fam(t, &m->topics, "kafka_server_brokertopicmetrics_bytesout_total", "counter",
               "Record bytes fetched from each topic (BrokerTopicMetrics BytesOutPerSec).", l_topic,
               1);
    render_fam(t, &m->topics, "kafka_server_brokertopicmetrics_messagesin_total", "counter",
               "Records produced to each topic (BrokerTopicMetrics MessagesInPerSec).", l_topic, 2);
    render_fam(t, &m->topics, "sluice_topic_messages_out_total", "counter",
               "Records fetched from each topic.", l_topic, 3);

    scalar(t, "sluice_response_bytes_unsent", "gauge",
           "Answer bytes built and not yet written to clients, over all connections "
           "(sluice.fetch.memory.max.bytes bounds what fetches add).",
           b->srv ? (double)sl_server_unsent(b->srv) : 0);
    if (b->gw) {
        render_gateway(t, b->gw);
    } else {
        int32_t npart = 0;
        for (sl_topic *tp = sl_topics_next(b->topics, NULL); tp; tp = sl_topics_next(b->topics, tp))
            if (!tp->deleted) npart += tp->npart;
        scalar(t, "kafka_server_replicamanager_partitioncount", "gauge",
               "Partitions on this broker (ReplicaManager PartitionCount).", npart);
        scalar(t, "kafka_server_replicamanager_underreplicatedpartitions", "gauge",
               "Under-replicated partitions: always 0 on a single node.", 0);
        scalar(t, "kafka_controller_kafkacontroller_offlinepartitionscount", "gauge",
               "Partitions without a leader: always 0 on a single node.", 0);
        scalar(t, "kafka_controller_kafkacontroller_activecontrollercount", "gauge",
               "1: this single node is the active controller.", 1);
    }
    sl_prom_family(t, "kafka_log_log_size", "gauge", "Bytes of each partition's log on disk.");
    for (sl_topic *tp = sl_topics_next(b->topics, NULL); tp; tp = sl_topics_next(b->topics, tp)) {
        if (tp->deleted) continue;
        for (int32_t i = 0; i < tp->npart; i++) {
            if (!tp->parts[i]->log) continue;
            char pbuf[16];
            snprintf(pbuf, sizeof pbuf, "%d", (int)i);
            const char *labels[] = {"topic", tp->name, "partition", pbuf, NULL};
            sl_prom_sample(t, "kafka_log_log_size", labels,
                           (double)sl_log_size_bytes(tp->parts[i]->log));
        }
    }
    sl_prom_family(t, "kafka_consumergroup_lag", "gauge",
                   "Log end offset minus the group's committed offset, per partition.");
    if (b->groups && b->coordinator.ops) {
        lag_ctx lc = {.m = m, .t = t};
        sl_group_coord_each_group(b, lag_group, &lc);
    }

    /* Connections: every listener, open ones counted from the hub. */
    sl_prom_family(t, "kafka_server_socketservermetrics_connections", "gauge",
                   "Open connections per listener (SocketServer connection-count).");
    for (int i = 0; i < b->nlisteners; i++) {
        const char *v[1] = {b->listeners[i].name};
        ser *s = fam_get(&m->conns_by, v, 1, &m->dropped);
        const char *labels[] = {"listener", b->listeners[i].name, NULL};
        sl_prom_sample_u64(t, "kafka_server_socketservermetrics_connections", labels,
                           s ? s->v[0] : 0);
    }
    static const char *const l_listener[] = {"listener", NULL};
    render_fam(t, &m->conns_by, "sluice_connections_opened_total", "counter",
               "Connections accepted per listener.", l_listener, 1);
    static const char *const l_lr[] = {"listener", "reason", NULL};
    render_fam(t, &m->refused, "sluice_connections_refused_total", "counter",
               "Connections refused at accept, per listener and limit (or \"blocked\").", l_lr, 0);

    static const char *const l_mlr[] = {"mechanism", "listener", "reason", NULL};
    render_fam(t, &m->auth_bad, "sluice_authentication_failures_total", "counter",
               "Failed authentications per mechanism, listener and reason.", l_mlr, 0);
    render_fam(t, &m->auth_ok, "sluice_authentication_successes_total", "counter",
               "Successful authentications per mechanism and listener.", l_mlr, 0);
    static const char *const l_por[] = {"principal", "operation", "resource_type", NULL};
    render_fam(t, &m->denials, "sluice_authorization_denials_total", "counter",
               "Resources a request was denied, per principal, operation and resource type.", l_por,
               0);
    render_fam(t, &m->tls_bad, "sluice_tls_handshake_failures_total", "counter",
               "Failed TLS handshakes on the Kafka listeners, per listener and reason.", l_lr, 0);
    sl_prom_family(t, "sluice_certificate_expiry_timestamp_seconds", "gauge",
                   "notAfter of the certificate each TLS listener (and the metrics endpoint) "
                   "serves (seconds since the epoch).");
    for (int i = 0; i <= 16; i++) { /* the Kafka listeners', then this endpoint's own */
        const sl_tls_endpoint *ep = i < 16 ? b->tls[i] : m->tls;
        int64_t na = ep ? sl_tls_endpoint_not_after(ep) : 0;
        if (!na) continue;
        const char *labels[] = {"listener", sl_tls_endpoint_listener(ep), NULL};
        sl_prom_sample(t, "sluice_certificate_expiry_timestamp_seconds", labels, (double)na);
    }
    static const char *const l_rule[] = {"rule", NULL};
    render_fam(t, &m->dets, "sluice_detections_total", "counter",
               "Findings of the built-in detection rules.", l_rule, 0);
    sl_guard_stats gs = {0};
    if (b->guard) sl_guard_stats_get(b->guard, &gs);
    scalar(t, "sluice_guard_blocked_addresses", "gauge", "Client addresses refused right now.",
           gs.blocked_addresses);

    sl_audit_stats as = {0};
    if (b->audit) sl_audit_stats_get(b->audit, &as);
    sl_prom_family(t, "sluice_audit_events_written_total", "counter",
                   "Audit events durably written.");
    sl_prom_sample_u64(t, "sluice_audit_events_written_total", NULL, as.events_written);
    sl_prom_family(t, "sluice_audit_events_dropped_total", "counter",
                   "Audit events lost under the continue failure policy.");
    sl_prom_sample_u64(t, "sluice_audit_events_dropped_total", NULL, as.events_dropped);
    sl_prom_family(t, "sluice_audit_requests_refused_total", "counter",
                   "Requests refused under the block failure policy.");
    sl_prom_sample_u64(t, "sluice_audit_requests_refused_total", NULL, as.events_refused);
    scalar(t, "sluice_audit_lag_seconds", "gauge", "Age of the oldest audit event not yet written.",
           (double)as.lag_ms / 1000.0);
    scalar(t, "sluice_audit_failing", "gauge", "1 while an audit sink cannot write.",
           as.failing ? 1 : 0);

    render_disk(m, t, true);
    render_disk(m, t, false);

    /* Requests per API. */
    sl_prom_family(t, "sluice_request_latency_seconds", "histogram",
                   "Time from a request's frame to its answer, per API.");
    for (int k = 0; k <= API_SLOT; k++) {
        const api_stats *a = &m->api[k];
        if (!a->count) continue;
        const char *name = api_name(k);
        uint64_t cum = 0;
        for (int i = 0; i <= LAT_NB; i++) {
            cum += a->bucket[i];
            const char *labels[] = {"request", name, "le", i < LAT_NB ? k_lat_le_s[i] : "+Inf",
                                    NULL};
            sl_prom_sample_u64(t, "sluice_request_latency_seconds_bucket", labels, cum);
        }
        const char *labels[] = {"request", name, NULL};
        sl_prom_sample(t, "sluice_request_latency_seconds_sum", labels, a->sum_s);
        sl_prom_sample_u64(t, "sluice_request_latency_seconds_count", labels, cum);
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } per_api[] = {
        {"sluice_requests_total", "Requests finished per API (RequestMetrics RequestsPerSec).",
         offsetof(api_stats, count)},
        {"sluice_request_errors_total",
         "Requests per API answered with an error or closed instead of answered.",
         offsetof(api_stats, errors)},
        {"sluice_request_bytes_in_total", "Request bytes received per API (frames).",
         offsetof(api_stats, bytes_in)},
        {"sluice_request_bytes_out_total", "Response bytes sent per API (frames).",
         offsetof(api_stats, bytes_out)},
    };
    for (size_t f = 0; f < sizeof per_api / sizeof per_api[0]; f++) {
        sl_prom_family(t, per_api[f].name, "counter", per_api[f].help);
        for (int k = 0; k <= API_SLOT; k++) {
            if (!m->api[k].count) continue;
            uint64_t v;
            memcpy(&v, (const char *)&m->api[k] + per_api[f].off, sizeof v);
            const char *labels[] = {"request", api_name(k), NULL};
            sl_prom_sample_u64(t, per_api[f].name, labels, v);
        }
    }

    sl_prom_family(t, "sluice_fsync_latency_seconds", "histogram",
                   "Duration of each fsync round of a log by the flusher.");
    sl_fsync_hist fh = {0};
    if (b->flusher) sl_flusher_fsync_hist(b->flusher, &fh);
    uint64_t cum = 0;
    for (int i = 0; i <= SL_FSYNC_NBUCKETS; i++) {
        cum += fh.bucket[i];
        char le[32];
        if (i < SL_FSYNC_NBUCKETS)
            snprintf(le, sizeof le, "%g", sl_fsync_bucket_le[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        const char *labels[] = {"le", le, NULL};
        sl_prom_sample_u64(t, "sluice_fsync_latency_seconds_bucket", labels, cum);
    }
    sl_prom_sample(t, "sluice_fsync_latency_seconds_sum", NULL, (double)fh.sum_ns / 1e9);
    sl_prom_sample_u64(t, "sluice_fsync_latency_seconds_count", NULL, cum);

    /* Encryption at rest: the key service's counters are process-wide (one per broker). */
    sl_keysvc_stats ks;
    sl_keysvc_stats_get(&ks);
    sl_prom_family(t, "sluice_kms_calls_total", "counter",
                   "Calls to the KMS provider per operation and result (cache hits make none).");
    for (int op = 0; ks.provider[0] && op < SL_KMS_NOPS; op++)
        for (int r = 0; r < 2; r++) {
            const char *labels[] = {"provider", ks.provider,        "op", sl_kms_op_names[op],
                                    "result",   r ? "error" : "ok", NULL};
            sl_prom_sample_u64(t, "sluice_kms_calls_total", labels, ks.calls[op][r]);
        }
    sl_prom_family(t, "sluice_kms_call_latency_seconds", "histogram",
                   "Duration of each call to the KMS provider.");
    cum = 0;
    for (int i = 0; i <= SL_KMS_NBUCKETS; i++) {
        cum += ks.bucket[i];
        char le[32];
        if (i < SL_KMS_NBUCKETS)
            snprintf(le, sizeof le, "%g", sl_kms_bucket_le[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        const char *labels[] = {"le", le, NULL};
        sl_prom_sample_u64(t, "sluice_kms_call_latency_seconds_bucket", labels, cum);
    }
    sl_prom_sample(t, "sluice_kms_call_latency_seconds_sum", NULL, (double)ks.sum_ns / 1e9);
    sl_prom_sample_u64(t, "sluice_kms_call_latency_seconds_count", NULL, cum);
    sl_prom_family(t, "sluice_encryption_tamper_total", "counter",
                   "Stored data (wrapped keys, batches, sealed files) failing authentication.");
    sl_prom_sample_u64(t, "sluice_encryption_tamper_total", NULL, ks.tamper);
    scalar(t, "sluice_keys_cached", "gauge", "Topic keys and DEKs unwrapped in the caches now.",
           (double)ks.keys_cached);

    /* Field protection: process-wide counters kept by the protect stage (sl_fprot.h). */
    sl_fprot_stats fs;
    sl_fprot_stats_get(&fs);
    static const char *const fp_ops[2] = {"protect", "reveal"};
    sl_prom_family(
        t, "sluice_protect_records_total", "counter",
        "Records rewritten by field protection: protected on produce, revealed on fetch.");
    for (int i = 0; i < 2; i++) {
        const char *labels[] = {"op", fp_ops[i], NULL};
        sl_prom_sample_u64(t, "sluice_protect_records_total", labels, fs.records[i]);
    }
    sl_prom_family(t, "sluice_protect_fields_total", "counter",
                   "Field values protected on produce, or shown in a granted view on fetch.");
    for (int i = 0; i < 2; i++) {
        const char *labels[] = {"op", fp_ops[i], NULL};
        sl_prom_sample_u64(t, "sluice_protect_fields_total", labels, fs.fields[i]);
    }
    sl_prom_family(t, "sluice_protect_rejected_total", "counter",
                   "Produced records refused (INVALID_RECORD) because a rule could not apply.");
    sl_prom_sample_u64(t, "sluice_protect_rejected_total", NULL, fs.rejected);
    sl_prom_family(t, "sluice_protect_reveal_failed_total", "counter",
                   "Encrypted values a granted consumer got as stored: they did not decrypt "
                   "(forgotten subject, destroyed key, tampered).");
    sl_prom_sample_u64(t, "sluice_protect_reveal_failed_total", NULL, fs.reveal_failed);
    sl_prom_family(t, "sluice_protect_policy_reloads_total", "counter",
                   "Field protection policy loads by result (an error keeps the previous policy).");
    for (int i = 0; i < 2; i++) {
        const char *labels[] = {"result", i ? "error" : "ok", NULL};
        sl_prom_sample_u64(t, "sluice_protect_policy_reloads_total", labels, fs.reloads[i]);
    }

    scalar(t, "sluice_start_time_seconds", "gauge",
           "When the broker started (seconds since the "
           "epoch).",
           (double)m->started_ms / 1000.0);
    sl_prom_family(t, "sluice_metrics_series_dropped_total", "counter",
                   "Label sets not counted because their family reached its series limit.");
    sl_prom_sample_u64(t, "sluice_metrics_series_dropped_total", NULL, m->dropped);
    sl_prom_family(t, "sluice_metrics_connections_refused_total", "counter",
                   "Connections to this endpoint closed at accept (its connection limit).");
    sl_prom_sample_u64(t, "sluice_metrics_connections_refused_total", NULL,
                       sl_httpd_refused(m->httpd));
}

/* ---- status page -------------------------------------------------------------------------- */

static void page_num(sl_text *t, const char *id, const char *label, double v, const char *unit) {
    sl_text_printf(t,
                   "<div class=\"card\"><div class=\"lbl\">%s</div><div class=\"num\" id=\"%s\">",
                   label, id);
    sl_prom_value(t, v);
    sl_text_printf(t, "</div><div class=\"unit\">%s</div></div>\n", unit);
}

static uint64_t fam_sum(const fam *f, int idx) {
    uint64_t s = 0;
    for (int i = 0; i < NBUCKETS; i++)
        for (const ser *x = f->b[i]; x; x = x->next) s += x->v[idx];
    return s;
}

static void render_page(sl_metrics *m, sl_text *t) {
    sl_broker *b = m->b;
    uint64_t tot[4];
    topic_totals(m, tot);
    int64_t now = wall_ms();
    /* Rates over the window from the older of two samples taken at views at least 5 s apart,
     * so a view right after another still shows a rate over at least 5 s. */
    if (!m->snap_ms[1]) m->snap_ms[0] = m->snap_ms[1] = m->started_ms;
    if (now - m->snap_ms[1] >= 5000) {
        m->snap_ms[0] = m->snap_ms[1];
        memcpy(m->snap[0], m->snap[1], sizeof m->snap[0]);
        m->snap_ms[1] = now;
        memcpy(m->snap[1], tot, sizeof tot);
    }
    double rate[4] = {0};
    double dt = (double)(now - m->snap_ms[0]) / 1000.0;
    for (int k = 0; k < 4 && dt > 0; k++) rate[k] = (double)(tot[k] - m->snap[0][k]) / dt;
    sl_text_puts(t,
                 "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width\">"
                 "<title>Sluice status</title><style>"
                 "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
                 "h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
                 ".cards{display:flex;flex-wrap:wrap;gap:.8em}"
                 ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;"
                 "min-width:9em}.lbl{font-size:.8em;color:#666}.num{font-size:1.5em;"
                 "font-variant-numeric:tabular-nums}.unit{font-size:.75em;color:#888}"
                 "table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;"
                 "padding:.3em .7em;text-align:left}.muted{color:#888}"
                 "</style></head><body>\n<h1>Sluice broker ");
    sl_text_printf(t, "%d</h1>\n<p class=\"muted\">cluster ", (int)b->cfg.node_id);
    sl_text_markup(t, b->topics ? sl_topics_cluster_id(b->topics) : "");
    sl_text_printf(t,
                   " &middot; up %lld s &middot; <span id=\"refresh\">refreshes every 5 s</span> "
                   "&middot; <a href=\"/metrics\">/metrics</a></p>\n",
                   (long long)((now - m->started_ms) / 1000));
    sl_text_puts(t, "<h2>Throughput</h2><div class=\"cards\">\n");
    page_num(t, "bytes-in-total", "Bytes in", (double)tot[0], "total");
    page_num(t, "bytes-out-total", "Bytes out", (double)tot[1], "total");
    page_num(t, "messages-in-total", "Messages in", (double)tot[2], "total");
    page_num(t, "messages-out-total", "Messages out", (double)tot[3], "total");
    page_num(t, "bytes-in-rate", "Bytes in", rate[0], "per second");
    page_num(t, "bytes-out-rate", "Bytes out", rate[1], "per second");
    page_num(t, "messages-in-rate", "Messages in", rate[2], "per second");
    page_num(t, "messages-out-rate", "Messages out", rate[3], "per second");
    sl_text_puts(t, "</div>\n<h2>Security</h2><div class=\"cards\">\n");
    page_num(t, "auth-failures-total", "Authentication failures", (double)fam_sum(&m->auth_bad, 0),
             "total");
    page_num(t, "denials-total", "Authorization denials", (double)fam_sum(&m->denials, 0), "total");
    page_num(t, "refused-total", "Connections refused", (double)fam_sum(&m->refused, 0), "total");
    page_num(t, "detections-total", "Detections", (double)fam_sum(&m->dets, 0), "total");
    sl_text_puts(t, "</div>\n<h2>Connections</h2><table id=\"connections\"><tr><th>Listener</th>"
                    "<th>Open</th><th>Accepted</th></tr>\n");
    for (int i = 0; i < b->nlisteners; i++) {
        const char *v[1] = {b->listeners[i].name};
        ser *s = fam_get(&m->conns_by, v, 1, &m->dropped);
        sl_text_puts(t, "<tr><td>");
        sl_text_markup(t, b->listeners[i].name);
        sl_text_puts(t, "</td><td id=\"connections-");
        sl_text_markup(t, b->listeners[i].name);
        sl_text_printf(t, "\">%llu</td><td>%llu</td></tr>\n", (unsigned long long)(s ? s->v[0] : 0),
                       (unsigned long long)(s ? s->v[1] : 0));
    }
    sl_text_puts(t, "</table>\n<h2>Latest detections</h2><table id=\"detections\"><tr><th>Time"
                    "</th><th>Rule</th><th>Subject</th><th>Finding</th><th>Severity</th></tr>\n");
    sl_guard_finding f[20];
    int nf = b->guard ? sl_guard_recent(b->guard, f, 20) : 0;
    if (nf <= 0) sl_text_puts(t, "<tr><td colspan=\"5\" class=\"muted\">none</td></tr>\n");
    for (int i = 0; i < nf && i < 20; i++) {
        time_t sec = (time_t)(f[i].time_ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        f[i].rule[sizeof f[i].rule - 1] = 0;
        f[i].subject[sizeof f[i].subject - 1] = 0;
        f[i].title[sizeof f[i].title - 1] = 0;
        sl_text_printf(t, "<tr><td>%s</td><td>", ts);
        sl_text_markup(t, f[i].rule);
        sl_text_puts(t, "</td><td>");
        sl_text_markup(t, f[i].subject);
        sl_text_puts(t, "</td><td>");
        sl_text_markup(t, f[i].title);
        sl_text_printf(t, "</td><td>%d</td></tr>\n", f[i].severity);
    }
    sl_text_puts(t, "</table>\n<script>\n"
                    "/* Server-rendered numbers; the page reloads itself to refresh them. */\n"
                    "setTimeout(function(){location.reload();},5000);\n"
                    "</script>\n</body></html>\n");
}

/* ---- HTTP server -------------------------------------------------------------------------- */

static bool authorized(const sl_metrics *m, const sl_http_req *r) {
    if (!m->token) return true;
    if (!r->has_auth || strncasecmp(r->auth, "Bearer ", 7)) return false;
    const char *tok = r->auth + 7;
    while (*tok == ' ') tok++;
    /* Digests of equal length, compared in constant time: neither the token's length nor its
     * prefix leaks through timing. */
    unsigned char d[32];
    unsigned int dl = 0;
    if (!EVP_Digest(tok, strlen(tok), d, &dl, EVP_sha256(), NULL) || dl != 32) return false;
    return CRYPTO_memcmp(d, m->token_sha, 32) == 0;
}

static bool ready(const sl_metrics *m, const char **why) {
    if (m->b->stopping)
        *why = "the broker is stopping";
    else if (m->b->nlisteners <= 0)
        *why = "no listener is bound";
    else if (m->b->gw && !sl_gateway_ready(m->b->gw))
        *why = "no upstream broker is reachable";
    else if (m->b->audit && !sl_audit_accepting(m->b->audit))
        *why = "the audit trail is not accepting events";
    else
        return true;
    return false;
}

/* The endpoint's handler (sl_httpd_handler): GET and HEAD only, no bodies (the listener's
 * limits are {0}); the server answers what its parser refuses. */
static void respond(void *ud, const sl_httpd_peer *peer, const sl_http_req *r, const char *body_in,
                    size_t blen, sl_httpd_resp *out) {
    sl_metrics *m = ud;
    sl_text *body = &out->body;
    const char *why = NULL;
    if (!strcmp(r->path, "/healthz")) {
        sl_text_puts(body, "ok\n");
    } else if (!strcmp(r->path, "/readyz")) {
        if (ready(m, &why))
            sl_text_puts(body, "ready\n");
        else {
            out->status = 503;
            sl_text_printf(body, "not ready: %s\n", why);
        }
    } else if (strcmp(r->path, "/metrics") && strcmp(r->path, "/")) {
        out->status = 404;
        sl_text_puts(body, "not found: /metrics, /healthz, /readyz, /\n");
    } else if (!authorized(m, r)) {
        out->status = 401;
        sl_text_puts(body, "a bearer token is required\n");
    } else if (!strcmp(r->path, "/metrics")) {
        out->content_type = "text/plain; version=0.0.4; charset=utf-8";
        render_metrics(m, body);
    } else {
        out->content_type = "text/html; charset=utf-8";
        render_page(m, body);
    }
    snprintf(out->headers, sizeof out->headers,
             "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
             "script-src 'unsafe-inline'\r\n%s",
             out->status == 401 ? "WWW-Authenticate: Bearer realm=\"sluice\"\r\n" : "");
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Reads the bearer token file: its first line, surrounding white space removed. Keeps only its
 * digest; every copy of the token is wiped before returning. */
static sl_err load_token(sl_metrics *m, const char *path, char *err, size_t elen) {
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, elen, "sluice.metrics.bearer.token.file: cannot read %s: %s", path,
                 strerror(errno));
        return SL_ECONFIG;
    }
    char buf[1025];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *s = buf;
    while (*s == ' ' || *s == '\t') s++;
    size_t l = strcspn(s, "\r\n");
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t')) l--;
    sl_err e = SL_OK;
    unsigned int dl = 0;
    if (!l || n == sizeof buf - 1) {
        snprintf(err, elen,
                 "sluice.metrics.bearer.token.file: %s holds no token (one line, at "
                 "most 1024 bytes)",
                 path);
        e = SL_ECONFIG;
    } else if (!EVP_Digest(s, l, m->token_sha, &dl, EVP_sha256(), NULL)) {
        snprintf(err, elen, "sluice.metrics.bearer.token.file: cannot hash the token");
        e = SL_ECONFIG;
    } else
        m->token = true;
    OPENSSL_cleanse(buf, sizeof buf);
    return e;
}

sl_err sl_metrics_new(struct sl_broker *b, sl_metrics **out, char *err, size_t elen) {
    *out = NULL;
    const char *url = b->cfg.sluice_metrics_listener;
    if (!url[0]) return SL_OK;
    int key = sl_config_key_index("sluice.metrics.listener");
    bool explicit_key = key >= 0 && sl_config_is_set(&b->cfg, (size_t)key);
    char host[256];
    bool https;
    int port;
    if (!sl_httpd_parse_url(url, &https, host, sizeof host, &port)) {
        snprintf(err, elen,
                 "sluice.metrics.listener: \"%s\" is not http://host:port or "
                 "https://host:port",
                 url);
        return SL_ECONFIG;
    }
    sl_metrics *m = calloc(1, sizeof *m);
    if (!m) return SL_ENOMEM;
    m->b = b;
    m->https = https;
    m->started_ms = b->started_ms ? b->started_ms : wall_ms();
    sl_err e = SL_OK;
    if (b->cfg.sluice_metrics_bearer_token_file[0] &&
        (e = load_token(m, b->cfg.sluice_metrics_bearer_token_file, err, elen)))
        goto fail;
    if (https &&
        (e = sl_httpd_tls(&b->cfg, SL_METRICS_TLS_NAME, "sluice.metrics.ssl.keystore.location",
                          b->cfg.sluice_metrics_ssl_keystore_location, &m->tls, err, elen)))
        goto fail;
    sl_httpd_opts ho = {.name = "metrics",
                        .loop = b->loop,
                        .tls = m->tls,
                        .max_conns = MAX_CONNS,
                        .handler = respond,
                        .ud = m};
    int eno = 0;
    if (sl_httpd_listen(&ho, host, port, &m->httpd, &eno) != SL_OK && eno) {
        if (!explicit_key && eno == EADDRINUSE) {
            SL_WARN("metrics", "default metrics port taken; running without the metrics endpoint",
                    "listener=%s (set sluice.metrics.listener to choose another)", url);
            sl_metrics_free(m);
            return SL_OK;
        }
        snprintf(err, elen, "sluice.metrics.listener: cannot listen on %s: %s", url,
                 strerror(eno ? eno : EINVAL));
        e = SL_ECONFIG;
        goto fail;
    }
    if (!m->httpd || !sl_events_subscribe(&b->events, on_event, m)) {
        snprintf(err, elen, "sluice.metrics.listener: cannot register the endpoint");
        e = SL_EIO;
        goto fail;
    }
    SL_INFO("metrics", "listening", "url=%s://%s:%d token=%s", https ? "https" : "http",
            host[0] ? host : "0.0.0.0", sl_httpd_port(m->httpd), m->token ? "required" : "none");
    *out = m;
    return SL_OK;
fail:
    sl_metrics_free(m);
    return e;
}

void sl_metrics_free(sl_metrics *m) {
    if (!m) return;
    sl_events_unsubscribe(&m->b->events, m);
    sl_httpd_free(m->httpd); /* before the endpoint its connections use */
    sl_tls_endpoint_free(m->tls);
    OPENSSL_cleanse(m->token_sha, sizeof m->token_sha);
    fam *fams[] = {&m->topics,  &m->auth_ok, &m->auth_bad, &m->denials,
                   &m->tls_bad, &m->dets,    &m->refused,  &m->conns_by};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) fam_free(fams[i]);
    free(m);
}

int sl_metrics_port(const sl_metrics *m) { return m ? sl_httpd_port(m->httpd) : 0; }

sl_tls_endpoint *sl_metrics_tls(const sl_metrics *m) { return m ? m->tls : NULL; }
