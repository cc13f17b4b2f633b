#include "sl_broker.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "audit/sl_audit.h"
#include "auth/sl_auth.h"
#include "base/sl_logging.h"
#include "base/sl_sysmem.h"
#include "base/sl_time.h"
#include "broker/sl_compactor.h"
#include "broker/sl_fprot.h"
#include "broker/sl_keyops.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "crypto/sl_tls_ctx.h"
#include "gateway/sl_gateway.h"
#include "guard/sl_guard.h"
#include "iam/sl_iam.h"
#include "iam/sl_iam_sts.h"
#include "kms/sl_keysvc.h"
#include "metrics/sl_metrics.h"
#include "net/sl_tls.h"
#include "pipeline/sl_authorize.h"
#include "pipeline/sl_pipeline.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_records.h"

/* What the local broker executes, per API; the pipeline serves exactly the APIs listed here
 * (with the versions of their protocol definitions). */
static const struct {
    int16_t key;
    sl_exec_fn fn;
} k_exec[] = {
    {SL_API_PRODUCE, sl_h_produce},
    {SL_API_FETCH, sl_h_fetch},
    {SL_API_LIST_OFFSETS, sl_h_list_offsets},
    {SL_API_METADATA, sl_h_metadata},
    {SL_API_OFFSET_FOR_LEADER_EPOCH, sl_h_offset_for_leader_epoch},
    {SL_API_API_VERSIONS, sl_h_api_versions},
    {SL_API_CREATE_TOPICS, sl_h_create_topics},
    {SL_API_DELETE_TOPICS, sl_h_delete_topics},
    {SL_API_DELETE_RECORDS, sl_h_delete_records},
    {SL_API_DESCRIBE_CONFIGS, sl_h_describe_configs},
    {SL_API_ALTER_CONFIGS, sl_h_alter_configs},
    {SL_API_CREATE_PARTITIONS, sl_h_create_partitions},
    {SL_API_INCREMENTAL_ALTER_CONFIGS, sl_h_incremental_alter_configs},
    {SL_API_DESCRIBE_CLUSTER, sl_h_describe_cluster},
    {SL_API_INIT_PRODUCER_ID, sl_h_init_producer_id},
    {SL_API_SASL_HANDSHAKE, sl_h_sasl_handshake},
    {SL_API_SASL_AUTHENTICATE, sl_h_sasl_authenticate},
    {SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS, sl_h_describe_user_scram_credentials},
    {SL_API_ALTER_USER_SCRAM_CREDENTIALS, sl_h_alter_user_scram_credentials},
    {SL_API_FIND_COORDINATOR, sl_h_find_coordinator},
    {SL_API_JOIN_GROUP, sl_h_join_group},
    {SL_API_SYNC_GROUP, sl_h_sync_group},
    {SL_API_HEARTBEAT, sl_h_heartbeat},
    {SL_API_LEAVE_GROUP, sl_h_leave_group},
    {SL_API_OFFSET_COMMIT, sl_h_offset_commit},
    {SL_API_OFFSET_FETCH, sl_h_offset_fetch},
    {SL_API_LIST_GROUPS, sl_h_list_groups},
    {SL_API_DESCRIBE_GROUPS, sl_h_describe_groups},
    {SL_API_DELETE_GROUPS, sl_h_delete_groups},
    {SL_API_OFFSET_DELETE, sl_h_offset_delete},
    {SL_API_DESCRIBE_ACLS, sl_h_describe_acls},
    {SL_API_CREATE_ACLS, sl_h_create_acls},
    {SL_API_DELETE_ACLS, sl_h_delete_acls},
    {SL_API_ADD_PARTITIONS_TO_TXN, sl_h_add_partitions_to_txn},
    {SL_API_ADD_OFFSETS_TO_TXN, sl_h_add_offsets_to_txn},
    {SL_API_END_TXN, sl_h_end_txn},
    {SL_API_TXN_OFFSET_COMMIT, sl_h_txn_offset_commit},
    {SL_API_DESCRIBE_TRANSACTIONS, sl_h_describe_transactions},
    {SL_API_LIST_TRANSACTIONS, sl_h_list_transactions},
    {SL_API_DESCRIBE_PRODUCERS, sl_h_describe_producers},
};

sl_exec_fn sl_broker_exec(int16_t key) {
    for (size_t i = 0; i < sizeof k_exec / sizeof k_exec[0]; i++)
        if (k_exec[i].key == key) return k_exec[i].fn;
    return NULL;
}

/* ---- the catalog the authorization stage names resources from ---- */

static bool cat_topic_name(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name) {
    sl_topic *t = sl_topics_find_id(((sl_broker *)ctx)->topics, id);
    if (!t) return false;
    size_t n = strlen(t->name);
    char *p = sl_arena_dup(a, t->name, n);
    if (!p) return false;
    *name = (sl_str){p, (int32_t)n};
    return true;
}

static bool cat_topic_exists(void *ctx, sl_str name) {
    return sl_topics_find(((sl_broker *)ctx)->topics, name) != NULL;
}

static bool cat_auto_create(void *ctx) { return ((sl_broker *)ctx)->cfg.auto_create_topics_enable; }

static void cat_each_topic(void *ctx, void (*fn)(void *arg, sl_str name), void *arg) {
    sl_topics *ts = ((sl_broker *)ctx)->topics;
    for (sl_topic *t = sl_topics_next(ts, NULL); t; t = sl_topics_next(ts, t))
        fn(arg, sl_str_c(t->name));
}

/* Listeners without SASL have nothing more to prove once the connection (and TLS, if any) is
 * up, so they get the full request cap from the first frame. */
static void on_open(void *app, sl_conn *c) {
    sl_broker *b = app;
    sl_events_emit(&b->events, &(sl_event){.kind = SL_EV_NET,
                                           .conn_id = sl_conn_id(c),
                                           .peer = sl_conn_peer(c),
                                           .listener = sl_conn_listener(c),
                                           .net = {.activity = SL_NET_OPEN}});
    sl_sasl_conn_open(b, c); /* the session; calls sl_conn_set_authenticated without SASL */
}

static void on_close(void *app, sl_conn *c) {
    sl_broker *b = app;
    uint64_t in = 0, out = 0;
    int64_t opened = 0;
    sl_conn_stats(c, &in, &out, &opened);
    /* A failed TLS handshake noted its reason on the listener's endpoint (sl_tls_ctx.h). */
    char tls_why[128];
    const char *tls_failure = NULL;
    for (int i = 0; i < b->nlisteners && !tls_failure; i++)
        if (b->tls[i] && !strcmp(b->listeners[i].name, sl_conn_listener(c)) &&
            sl_tls_endpoint_take_failure(b->tls[i], sl_conn_peer(c), tls_why, sizeof tls_why))
            tls_failure = tls_why;
    sl_events_emit(&b->events,
                   &(sl_event){.kind = SL_EV_NET,
                               .conn_id = sl_conn_id(c),
                               .principal = sl_session_principal(c),
                               .peer = sl_conn_peer(c),
                               .listener = sl_conn_listener(c),
                               .net = {.activity = SL_NET_CLOSE,
                                       .reason = sl_conn_close_reason(c),
                                       .bytes_in = (int64_t)in,
                                       .bytes_out = (int64_t)out,
                                       .duration_ms = opened ? sl_wall_ms() - opened : 0,
                                       .tls_failure = tls_failure}});
    if (b->gw) sl_gateway_conn_closed(b->gw, c);
    sl_sasl_conn_close(b, c);
}

/* Admission at accept, after the server's own limits: the guard's blocked addresses. */
static const char *on_admit(void *app, const char *ip) {
    return sl_guard_refuse(((sl_broker *)app)->guard, ip);
}

static void on_refused(void *app, const char *peer, const char *listener, const char *reason) {
    sl_broker *b = app;
    sl_events_emit(&b->events, &(sl_event){.kind = SL_EV_NET,
                                           .peer = peer,
                                           .listener = listener,
                                           .net = {.activity = SL_NET_REFUSED, .reason = reason}});
}

/* The guard's certificate check: every TLS listener's served certificate. */
static void each_cert(void *ctx, void (*fn)(void *arg, const char *listener, int64_t not_after),
                      void *arg) {
    sl_broker *b = ctx;
    for (int i = 0; i < b->nlisteners; i++)
        if (b->tls[i]) fn(arg, b->listeners[i].name, sl_tls_endpoint_not_after(b->tls[i]));
    sl_tls_endpoint *mt = sl_metrics_tls(b->metrics);
    if (mt) fn(arg, SL_METRICS_TLS_NAME, sl_tls_endpoint_not_after(mt));
    sl_tls_endpoint *st = sl_iam_sts_tls(b->sts);
    if (st) fn(arg, SL_STS_TLS_NAME, sl_tls_endpoint_not_after(st));
}

/* A debug line per finished request: the lifecycle as an observer sees it. */
static void log_request(void *ctx, const sl_req *rq) {
    if (sl_log_get_level() > SL_LOG_DEBUG) return;
    char res[512];
    size_t at = 0;
    res[0] = 0;
    for (int32_t i = 0; i < rq->nres && at < sizeof res - 1; i++) {
        const sl_req_res *r = &rq->res[i];
        int n = snprintf(res + at, sizeof res - at, "%s%s:%.*s:%s:%s:e%d", i ? "," : "",
                         sl_acl_res_name(r->rtype), r->name.len > 64 ? 64 : (int)r->name.len,
                         r->name.p, r->flags & SL_AZ_OPS ? "ops" : sl_acl_op_name(r->op),
                         r->allowed ? "allow" : "deny", r->error);
        if (n < 0) break;
        at += (size_t)n < sizeof res - at ? (size_t)n : sizeof res - at - 1;
    }
    static const char *const outs[] = {"none", "response", "noreply", "closed"};
    SL_DEBUG("request", "finished",
             "api=%d version=%d corr=%d principal=%s peer=%s outcome=%s error=%d bytes_in=%lld "
             "bytes_out=%lld records_in=%lld records_out=%lld latency_us=%lld resources=\"%s\"",
             rq->h.api_key, rq->h.api_version, rq->h.correlation_id,
             rq->principal ? rq->principal : "-", rq->peer, outs[rq->outcome], rq->error,
             (long long)rq->bytes_in, (long long)rq->bytes_out, (long long)rq->records_in,
             (long long)rq->records_out, (long long)((rq->end_ns - rq->start_ns) / 1000), res);
}

/* ---- periodic work ---- */

static void retention_tick(void *ctx) {
    sl_broker *b = ctx;
    int64_t now = sl_wall_ms();
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++) {
            int deleted = 0;
            if (!t->parts[i]->log) continue; /* unavailable */
            sl_err e = sl_log_enforce_retention(t->parts[i]->log, now, &deleted);
            if (e)
                SL_ERROR("retention", "retention pass failed", "topic=%s partition=%d err=%s",
                         t->name, i, sl_errname(e));
            else if (deleted) {
                SL_INFO("retention", "deleted old segments",
                        "topic=%s partition=%d segments=%d start_offset=%lld", t->name, i, deleted,
                        (long long)sl_log_start_offset(t->parts[i]->log));
                sl_txnpart_log_start_moved(t->parts[i]);
            }
        }
    b->retention_timer =
        sl_timer_start(b->loop, b->cfg.log_retention_check_interval_ms, retention_tick, b);
}

static void flush_done(void *ctx, sl_err e) {
    if (e) SL_ERROR("flush", "scheduled flush failed", "err=%s", sl_errname(e));
}

static void flush_tick(void *ctx) {
    sl_broker *b = ctx;
    int64_t now = sl_wall_ms(); /* the flush policy compares wall-clock append times */
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++)
            if (t->parts[i]->log && sl_log_flush_due(t->parts[i]->log, now))
                sl_flusher_request(b->flusher, t->parts[i]->log, flush_done, NULL);
    b->flush_timer = sl_timer_start(b->loop, b->cfg.log_flush_scheduler_interval_ms, flush_tick, b);
}

static void flusher_ready(void *ctx, uint32_t ev) {
    sl_broker *b = ctx;
    sl_flusher_dispatch(b->flusher);
}

static void topics_ready(void *ctx, uint32_t ev) {
    sl_broker *b = ctx;
    sl_topics_dispatch(b->topics);
}

static void keysvc_ready(void *ctx, uint32_t ev) {
    sl_broker *b = ctx;
    sl_keysvc_dispatch(b->keysvc);
}

#define KEYSVC_TICK_MS 1000

static void keysvc_tick(void *ctx) {
    sl_broker *b = ctx;
    sl_keysvc_tick(b->keysvc, sl_mono_ms());
    /* Partitions a missing key kept closed open once the key manager answers again. */
    sl_topics_retry_unavailable(b->topics, sl_mono_ms());
    b->keysvc_timer = sl_timer_start(b->loop, KEYSVC_TICK_MS, keysvc_tick, b);
}

/* A shredded topic's logs must not keep writing under (or reading with) DEKs they hold. */
static void on_shred(void *ctx, const uint8_t topic_id[16]) {
    sl_broker *b = ctx;
    sl_compactor_shredded(b->compactor, topic_id);
    if (b->topics) sl_topics_drop_keys(b->topics, topic_id);
}

/* Opens the key service (NULL when sluice.encryption.enable=false) and says in one line
 * whether data is encrypted at rest and how. The service itself reserves the locked slab for
 * raw keys (sl_secmem_init) and marks the process not dumpable (sl_secmem_no_core_dumps) before
 * any key exists, and logs when the slab could not be locked. */
static sl_err keysvc_open(sl_broker *b, char *err, size_t elen) {
    const sl_config *c = &b->cfg;
    sl_err e = sl_keysvc_open(c, &b->events, &b->keysvc, err, elen);
    if (e) return e;
    if (b->keysvc)
        SL_INFO("encryption", "encryption at rest on",
                "provider=%s dir_names=%s keyring=%s cache_ttl_ms=%lld", c->sluice_kms_provider,
                c->sluice_encryption_dir_names,
                c->sluice_kms_keyring_file[0] ? c->sluice_kms_keyring_file : "(default)",
                (long long)c->sluice_kms_cache_ttl_ms);
    else
        SL_INFO("encryption",
                c->sluice_encryption_enable
                    ? "encryption at rest off: the key service is not available in this build"
                    : "encryption at rest off (sluice.encryption.enable=false): records are "
                      "stored in clear",
                "provider=none dir_names=%s", c->sluice_encryption_dir_names);
    return SL_OK;
}

/* Partitions found unavailable at start because of their keys or stored data: reported now
 * that the audit trail listens. */
static void report_unavailable(sl_broker *b) {
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++) {
            sl_partition *p = t->parts[i];
            if (!p) continue;
            switch (p->unavailable) {
            case SL_ETAMPER:
            case SL_EKEY_UNAVAILABLE:
            case SL_EKEY_DESTROYED:
            case SL_EKMS_UNAVAILABLE:
            case SL_EKMS_DENIED:
                sl_storage_local_report_key_error(b, p, p->unavailable, "open");
                break;
            default:
                break;
            }
        }
}

static void drained(void *ctx) {
    sl_broker *b = ctx;
    sl_loop_stop(b->loop);
}

/* Parked requests answer now: fetches with what they have, JoinGroup and SyncGroup with
 * COORDINATOR_NOT_AVAILABLE (clients look for the coordinator again); no fetch parks after this
 * (b->stopping). Their arenas are theirs alone: a parked request never finished leaks. */
static void answer_parked(sl_broker *b) {
    b->stopping = true;
    if (b->topics)
        for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
            sl_storage_local_close_topic(b, t);
    sl_group_coord_shutdown(b->groups);
}

static void on_signal(void *ctx, int signo) {
    sl_broker *b = ctx;
    if (b->stopping) return;
    SL_INFO("broker", "stopping", "signal=%s", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    /* Rather than holding the drain up. */
    answer_parked(b);
    sl_server_drain(b->srv, b->cfg.sluice_shutdown_timeout_ms, drained, b);
}

/* Certificate rotation: SIGHUP rebuilds every TLS context; the timer rebuilds those whose
 * files changed. Either way a failed build keeps the previous context (sl_tls_ctx.h). */
/* Reloads one endpoint and reports a reload that happened (swapped or failed). */
static void tls_reload_one(sl_broker *b, sl_tls_endpoint *ep, const char *name, bool force) {
    int r = sl_tls_endpoint_reload(ep, force);
    if (!r) return;
    char res[96];
    snprintf(res, sizeof res, "listener %s", name);
    sl_events_emit(&b->events,
                   &(sl_event){.kind = SL_EV_ADMIN,
                               .listener = name,
                               .admin = {.action = "certificate reload",
                                         .resource = res,
                                         .success = r > 0,
                                         .detail = r > 0 ? NULL : sl_tls_endpoint_last_error(ep)}});
}

static void tls_reload_all(sl_broker *b, bool force) {
    for (int i = 0; i < b->nlisteners; i++)
        if (b->tls[i]) tls_reload_one(b, b->tls[i], b->listeners[i].name, force);
    sl_tls_endpoint *mt = sl_metrics_tls(b->metrics);
    if (mt) tls_reload_one(b, mt, SL_METRICS_TLS_NAME, force);
    sl_tls_endpoint *st = sl_iam_sts_tls(b->sts);
    if (st) tls_reload_one(b, st, SL_STS_TLS_NAME, force);
}

static void on_sighup(void *ctx, int signo) {
    sl_broker *b = ctx;
    SL_INFO("broker", "SIGHUP: reloading TLS certificates and the field protection policy", "%s",
            "");
    tls_reload_all(b, true);
    sl_fprot_reload(b->fprot, true);
}

static void tls_tick(void *ctx) {
    sl_broker *b = ctx;
    tls_reload_all(b, false);
    b->tls_timer = sl_timer_start(b->loop, b->cfg.sluice_ssl_reload_interval_ms, tls_tick, b);
}

sl_security_protocol sl_broker_listener_protocol(const sl_broker *b, const char *name) {
    for (int i = 0; name && i < b->nlisteners; i++)
        if (!strcmp(b->listeners[i].name, name)) return b->listener_proto[i];
    return SL_SEC_PLAINTEXT;
}

sl_topic *sl_broker_auto_create(sl_broker *b, sl_str name) {
    /* The trail's topic is the broker's alone: made at start or never (SL_AUDIT_TOPIC). */
    if (!b->cfg.auto_create_topics_enable || sl_str_eqc(name, SL_AUDIT_TOPIC)) return NULL;
    sl_topic *t = NULL;
    if (sl_topics_create(b->topics, name, b->cfg.num_partitions, NULL, false, &t) != SL_OK)
        return NULL;
    return t;
}

/* ---- lifecycle facts ---- */

static void emit_app(sl_broker *b, sl_app_activity act, const char *detail, const char *digest) {
    sl_events_emit(&b->events,
                   &(sl_event){.kind = SL_EV_APP,
                               .app = {.activity = act, .detail = detail, .digest = digest}});
}

/* ---- the audit trail's topic (SL_AUDIT_TOPIC) ---- */

static bool audit_topic_wanted(const sl_config *c) {
    if (!c->sluice_audit_enable) return false;
    const char *p = c->sluice_audit_sinks;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        size_t n = strcspn(p, ", ");
        if (n == 5 && !strncmp(p, "topic", 5)) return true;
        p += n;
    }
    return false;
}

/* The one partition the trail appends to, created at start: the authorization stage keeps
 * clients from ever creating, writing or deleting it. */
static sl_err audit_topic_ensure(sl_broker *b, char *err, size_t elen) {
    if (sl_topics_find(b->topics, sl_str_c(SL_AUDIT_TOPIC))) return SL_OK;
    sl_topic *t = NULL;
    sl_err e = sl_topics_create(b->topics, sl_str_c(SL_AUDIT_TOPIC), 1, NULL, false, &t);
    if (e && e != SL_EEXISTS) {
        snprintf(err, elen, "sluice.audit.sinks: cannot create the topic %s: %s", SL_AUDIT_TOPIC,
                 sl_strerror(e));
        return e;
    }
    SL_INFO("audit", "created the audit topic", "topic=%s partitions=1", SL_AUDIT_TOPIC);
    return SL_OK;
}

/* sl_audit_env's topic_append: the values become one uncompressed v2 batch (no keys, the
 * append time as timestamp) appended through the storage seam like a produce with acks=1
 * (the flush policy makes it durable). Loop thread. */
int16_t sl_broker_audit_topic_append(void *ctx, const char *const *values, const size_t *lens,
                                     int n) {
    sl_broker *b = ctx;
    if (n <= 0) return SL_KAFKA_NONE;
    sl_stopic *t = sl_storage_topic(&b->storage, sl_str_c(SL_AUDIT_TOPIC), NULL);
    sl_spart *p = t ? sl_storage_partition(&b->storage, t, 0) : NULL;
    if (!p) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] > INT32_MAX) return SL_KAFKA_MESSAGE_TOO_LARGE;
        total += lens[i] + 16;
    }
    sl_arena *a = sl_arena_new(total + 256 > 4096 ? total + 256 : 4096);
    if (!a) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, total);
    int16_t err = SL_KAFKA_NONE;
    for (int i = 0; i < n && !err; i++) {
        sl_rec_in r = {.offset_delta = i,
                       .key = {NULL, -1},
                       .value = {(const uint8_t *)values[i], (int32_t)lens[i]}};
        if (sl_rec_builder_add(&rb, &r)) err = SL_KAFKA_MESSAGE_TOO_LARGE;
    }
    uint8_t *batch = NULL;
    size_t blen = 0;
    int64_t now = sl_wall_ms();
    if (!err && sl_rec_builder_seal(&rb, 0, now, now, &batch, &blen))
        err = SL_KAFKA_UNKNOWN_SERVER_ERROR;
    sl_spart_info pi;
    sl_storage_info(&b->storage, p, &pi);
    if (!err && pi.max_message_bytes > 0 && blen > (size_t)pi.max_message_bytes)
        err = SL_KAFKA_MESSAGE_TOO_LARGE;
    if (!err) {
        sl_append_result ar;
        err = sl_storage_append(&b->storage, p, batch, blen, a, &ar, NULL, NULL);
    }
    sl_arena_free(a);
    return err;
}

/* The segment-file cache never goes below this; with too small a file limit for the connections
 * configured, the cache gives its descriptors back under pressure (sl_log.h). */
#define FILE_CACHE_MIN 32

/* sluice.fetch.memory.max.bytes = -1: a quarter of the memory this process may use (the
 * machine's, or its container's limit): fetch answers are read into memory, so answers held for
 * clients that do not read must not exhaust it. */
static int64_t fetch_memory_default(void) {
    uint64_t m = sl_sysmem_limit();
    if (m == 0) return (int64_t)1 << 30;
    return (int64_t)(m / 4);
}

/* The soft descriptor limit is often 1024 while the hard one is far higher: take what the
 * system allows. Partition files live in a bounded descriptor cache (sl_log.h), so the limit
 * sets how many stay open at once, not how many partitions there can be. */
static void raise_file_limit(int32_t max_connections) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
    }
    long long limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT32_MAX
                          ? INT32_MAX
                          : (long long)rl.rlim_cur;
    /* One budget: the reserve, then the connections (configured, or derived: half of the
     * rest), then the partition files' cache gets what is left. */
    long long reserve = sl_server_fd_reserve(limit);
    long long conns =
        (max_connections > 0 ? max_connections : sl_server_auto_max_connections(limit)) +
        SL_SERVER_ADMIN_CONNS;
    long long cache = limit - reserve - conns;
    sl_log_fd_cache_set_capacity(cache > FILE_CACHE_MIN ? (int)cache : FILE_CACHE_MIN);
    SL_INFO("broker", "file limit",
            "soft=%lld was=%lld hard=%lld segment_fd_cache=%d partitions=\"bounded by disk, not "
            "by the file limit: segment files share the descriptor cache\"",
            limit, was == RLIM_INFINITY ? -1LL : (long long)was,
            rl.rlim_max == RLIM_INFINITY ? -1LL : (long long)rl.rlim_max,
            sl_log_fd_cache_capacity());
}

/* The IAM context (src/iam) when some SASL listener enables AWS_MSK_IAM or OAUTHBEARER (which
 * also takes MSK IAM tokens), before the listeners are added: a payload may be signed for the
 * advertised hosts (the listeners' when none are advertised, 0.0.0.0 as 127.0.0.1). */
static sl_err iam_open(sl_broker *b, const sl_listener_spec *ls, int nl, char *err, size_t elen) {
    unsigned mechs = 0;
    for (int i = 0; i < nl; i++) {
        int proto =
            sl_listener_protocol(b->cfg.listener_security_protocol_map, ls[i].name, err, elen);
        if (proto == SL_SEC_SASL_PLAINTEXT || proto == SL_SEC_SASL_SSL)
            mechs |= sl_auth_config_mechs(&b->cfg, ls[i].name);
    }
    if (!(mechs & (SL_MECH_AWS_MSK_IAM | SL_MECH_OAUTHBEARER)) &&
        !b->cfg.sluice_iam_sts_listener[0])
        return SL_OK;
    const char *hosts[16];
    size_t nh = 0;
    for (int i = 0; i < (b->nadv ? b->nadv : nl) && nh < 16; i++) {
        const char *h = b->nadv ? b->adv[i].host : ls[i].host;
        hosts[nh++] = !h[0] || !strcmp(h, "0.0.0.0") ? "127.0.0.1" : h;
    }
    sl_err e = sl_iam_new(&b->cfg, sl_topics_cluster_id(b->topics), hosts, nh, &b->iam, err, elen);
    if (e) return e;
    sl_auth_set_iam(b->auth, b->iam);
    SL_INFO("iam", "IAM authentication on", "path=%s hosts=%zu",
            sl_iamstore_path(sl_iam_store(b->iam)), nh);
    return SL_OK;
}

sl_err sl_broker_new(const sl_config *cfg, sl_broker_mode mode, sl_broker **out, char *err,
                     size_t elen) {
    raise_file_limit(cfg->max_connections);
    sl_broker *b = calloc(1, sizeof *b);
    if (!b) return SL_ENOMEM;
    b->cfg = *cfg;
    if (b->cfg.sluice_fetch_memory_max_bytes < 0)
        b->cfg.sluice_fetch_memory_max_bytes = fetch_memory_default();
    b->mode = mode;
    /* A gateway forwards every data, group and transaction API: opening the local broker's
     * coordinators, producer ids and log cleaner would only cost memory, descriptors and files
     * in a data directory that is meant to hold none (gateways scale out, docs/gateway.md). */
    bool store = mode == SL_BROKER_SERVE;
    b->started_ms = sl_wall_ms();
    b->catalog = (sl_catalog){.ctx = b,
                              .topic_name = cat_topic_name,
                              .topic_exists = cat_topic_exists,
                              .auto_create = cat_auto_create,
                              .each_topic = cat_each_topic,
                              .each_group = sl_group_coord_each_group,
                              .each_committed_topic = sl_group_coord_each_committed_topic,
                              .each_transactional_id = sl_txn_coord_each_id};
    b->storage = sl_storage_local(b);
    b->admin = sl_topic_admin_local(b);
    /* Only `sluice serve` has a coordinator (b->groups, made below with the store). */
    b->coordinator = store ? sl_groups_local(b) : sl_groups_none();
    b->meta = sl_topics_meta_local(b);
    (void)sl_req_observers_add(&b->observers, log_request, b);
    (void)sl_req_observers_add(&b->observers, sl_events_request_observer, &b->events);
    (void)sl_events_subscribe(&b->events, sl_events_debug_subscriber, &b->events);
    sl_listener_spec ls[16];
    int nl = sl_listeners_parse(b->cfg.listeners, ls, 16, err, elen);
    const char *adv = b->cfg.advertised_listeners[0] ? b->cfg.advertised_listeners : NULL;
    b->nadv = adv ? sl_listeners_parse(adv, b->adv, 16, err, elen) : 0;
    if (nl <= 0 || b->nadv < 0) {
        free(b);
        return SL_ECONFIG;
    }
    if (!store && audit_topic_wanted(&b->cfg)) {
        snprintf(err, elen,
                 "sluice.audit.sinks: the topic sink appends to a local topic (%s), and a gateway "
                 "stores no topics; use file or syslog",
                 SL_AUDIT_TOPIC);
        free(b);
        return SL_ECONFIG;
    }
    /* Block the stop signals before any thread exists (the registry starts its file worker),
     * so every thread inherits the mask and only the loop's signalfd ever sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The key service first: the registry, every partition log and the groups log need it. */
    sl_err e = keysvc_open(b, err, elen);
    if (e) {
        free(b);
        return e;
    }
    e = sl_topics_open_keys(&b->cfg, b->keysvc, &b->topics, err, elen);
    if (e) {
        sl_keysvc_close(b->keysvc);
        free(b);
        return e;
    }
    if (b->keysvc) sl_keysvc_on_shred(b->keysvc, on_shred, b);
    if (!store && sl_topics_count(b->topics) > 0)
        SL_WARN("gateway", "log.dirs holds topics, which a gateway does not serve",
                "log_dirs=%s topics=%d hint=\"left by sluice serve or an earlier topic audit "
                "sink; remove them\"",
                b->cfg.log_dirs, sl_topics_count(b->topics));
    b->loop = sl_loop_new();
    if (!b->loop || (store && sl_flusher_new(&b->flusher) != SL_OK)) {
        snprintf(err, elen, "cannot start the event loop or flusher");
        sl_broker_free(b);
        return SL_ENOMEM;
    }
    if (store && (e = sl_txn_coord_new(b, &b->txn, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    if (store && (e = sl_producers_new(b, &b->producers, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    /* Field protection before the listeners: a policy that does not load fails the start before
     * a port accepts (its first "policy" event is emitted once the loop runs, for the trail). */
    if ((e = sl_fprot_open(b, b->keysvc, &b->fprot, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    bool any_sasl = false;
    for (int i = 0; i < nl; i++) {
        int proto =
            sl_listener_protocol(b->cfg.listener_security_protocol_map, ls[i].name, err, elen);
        any_sasl |= proto == SL_SEC_SASL_PLAINTEXT || proto == SL_SEC_SASL_SSL;
    }
    if ((e = sl_auth_new(&b->cfg, any_sasl, &b->auth, err, elen)) != SL_OK ||
        (e = iam_open(b, ls, nl, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    bool bad_authz = false;
    if (sl_authz_enabled(&b->cfg, &bad_authz, err, elen)) {
        char path[SL_CFG_STR_MAX + 32];
        sl_authz_path(&b->cfg, path, sizeof path);
        if ((e = sl_authorizer_new(path, b->cfg.super_users, b->cfg.allow_everyone_if_no_acl_found,
                                   &b->authz, err, elen))) {
            sl_broker_free(b);
            return e;
        }
        SL_INFO("acl", "authorizer on", "path=%s acls=%zu allow_everyone_if_no_acl_found=%s", path,
                sl_acl_set_count(sl_authorizer_set(b->authz)),
                b->cfg.allow_everyone_if_no_acl_found ? "true" : "false");
    } else if (bad_authz) {
        sl_broker_free(b);
        return SL_ECONFIG;
    }
    if (store && !(b->groups = sl_group_coord_new(b, err, elen))) {
        sl_broker_free(b);
        return SL_EIO;
    }
    if (store) sl_txn_coord_start(b->txn);
    /* Before the listeners: the trail's topic exists once the port accepts (making its topic
     * key can take a KMS round trip). */
    if (audit_topic_wanted(&b->cfg) && (e = audit_topic_ensure(b, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    sl_server_config sc = {
        .max_request_bytes = b->cfg.socket_request_max_bytes,
        .max_preauth_bytes = b->cfg.sluice_preauth_max_bytes,
        .idle_ms = b->cfg.connections_max_idle_ms,
        .auth_timeout_ms = b->cfg.sluice_authentication_timeout_ms,
        .max_inflight = b->cfg.sluice_max_inflight_requests,
        .max_connections = b->cfg.max_connections,
        .max_connections_per_ip = b->cfg.max_connections_per_ip,
        .handshake_rate_per_ip = b->cfg.sluice_ssl_handshake_rate_per_ip,
        .max_handshakes_per_ip = b->cfg.sluice_ssl_max_handshakes_per_ip,
    };
    sl_server_handlers h = {.app = b,
                            .on_request = sl_pipeline_on_request,
                            .on_close = on_close,
                            .on_open = on_open,
                            .admit = on_admit,
                            .on_refused = on_refused};
    b->srv = sl_server_new(b->loop, &sc, &h);
    if (!b->srv) {
        snprintf(err, elen, "cannot create the server");
        sl_broker_free(b);
        return SL_ENOMEM;
    }
    SL_INFO("net", "connection limits", "max.connections=%d max.connections.per.ip=%d",
            (int)sl_server_max_connections(b->srv), (int)b->cfg.max_connections_per_ip);
    for (int i = 0; i < nl; i++) {
        int proto =
            sl_listener_protocol(b->cfg.listener_security_protocol_map, ls[i].name, err, elen);
        if (proto < 0) {
            sl_broker_free(b);
            return SL_ECONFIG;
        }
        bool tls = proto == SL_SEC_SSL || proto == SL_SEC_SASL_SSL;
        if ((proto == SL_SEC_SASL_PLAINTEXT || proto == SL_SEC_SASL_SSL) &&
            (e = sl_auth_add_listener(b->auth, ls[i].name, tls, err, elen)) != SL_OK) {
            sl_broker_free(b);
            return e;
        }
        if (tls &&
            (e = sl_tls_endpoint_new(&b->cfg, ls[i].name, &b->tls[b->nlisteners], err, elen))) {
            sl_broker_free(b);
            return e;
        }
        int port = 0;
        e = sl_server_listen_with(b->srv, ls[i].name, ls[i].host, ls[i].port, &port,
                                  tls ? sl_tls_transport_new : NULL, b->tls[b->nlisteners]);
        if (e) {
            snprintf(err, elen, "listeners: cannot listen on %s:%d: %s", ls[i].host, ls[i].port,
                     sl_strerror(e));
            sl_broker_free(b);
            return e;
        }
        b->listeners[b->nlisteners] = ls[i];
        b->listeners[b->nlisteners].port = port;
        b->listener_proto[b->nlisteners++] = (sl_security_protocol)proto;
        if (!adv && b->nadv < 16) {
            b->adv[b->nadv] = ls[i];
            b->adv[b->nadv].port = port;
            if (!strcmp(b->adv[b->nadv].host, "0.0.0.0") || !b->adv[b->nadv].host[0])
                snprintf(b->adv[b->nadv].host, sizeof b->adv[0].host, "127.0.0.1");
            b->nadv++;
        }
        SL_INFO("broker", "listening", "listener=%s host=%s port=%d", ls[i].name, ls[i].host, port);
    }
    if ((b->flusher &&
         sl_loop_watch(b->loop, sl_flusher_fd(b->flusher), SL_EV_READ, flusher_ready, b)) ||
        sl_loop_watch(b->loop, sl_topics_fd(b->topics), SL_EV_READ, topics_ready, b) ||
        sl_loop_on_signal(b->loop, SIGTERM, on_signal, b) ||
        sl_loop_on_signal(b->loop, SIGINT, on_signal, b) ||
        sl_loop_on_signal(b->loop, SIGHUP, on_sighup, b) ||
        (b->keysvc && sl_keysvc_fd(b->keysvc) >= 0 &&
         sl_loop_watch(b->loop, sl_keysvc_fd(b->keysvc), SL_EV_READ, keysvc_ready, b))) {
        snprintf(err, elen, "cannot register loop handlers");
        sl_broker_free(b);
        return SL_EIO;
    }
    if (store && sl_compactor_new(b->loop, b->topics, &b->cfg, &b->compactor)) {
        snprintf(err, elen, "cannot start the log cleaner");
        sl_broker_free(b);
        return SL_EIO;
    }
    sl_compactor_set_keysvc(b->compactor, b->keysvc);
    if (sl_group_coord_clean_with(b->groups, b->compactor)) {
        snprintf(err, elen, "out of memory");
        sl_broker_free(b);
        return SL_ENOMEM;
    }
    if (store) {
        b->retention_timer =
            sl_timer_start(b->loop, b->cfg.log_retention_check_interval_ms, retention_tick, b);
        b->flush_timer =
            sl_timer_start(b->loop, b->cfg.log_flush_scheduler_interval_ms, flush_tick, b);
    }
    if (b->keysvc) b->keysvc_timer = sl_timer_start(b->loop, KEYSVC_TICK_MS, keysvc_tick, b);
    for (int i = 0; i < b->nlisteners && b->cfg.sluice_ssl_reload_interval_ms > 0; i++)
        if (b->tls[i]) {
            b->tls_timer =
                sl_timer_start(b->loop, b->cfg.sluice_ssl_reload_interval_ms, tls_tick, b);
            break;
        }
    /* Observability last, once listeners and certificates exist. The trail subscribes before
     * the guard: a finding the guard raises while an event is delivered is then recorded right
     * after the event that raised it. */
    sl_audit_env ae = {.loop = b->loop,
                       .hub = &b->events,
                       .cluster_id = sl_topics_cluster_id(b->topics),
                       .node_id = b->cfg.node_id};
    if (audit_topic_wanted(&b->cfg)) {
        ae.topic_append = sl_broker_audit_topic_append;
        ae.topic_ctx = b;
    }
    if ((e = sl_audit_new(&b->cfg, &ae, &b->audit, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    report_unavailable(b);
    sl_guard_env ge = {.loop = b->loop,
                       .hub = &b->events,
                       .data_dir = b->cfg.log_dirs,
                       .each_cert = each_cert,
                       .cert_ctx = b};
    b->guard = sl_guard_new(&b->cfg, &ge);
    if ((e = sl_metrics_new(b, &b->metrics, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    sl_iam_sts_env se = {.cfg = &b->cfg, .iam = b->iam, .hub = &b->events, .loop = b->loop};
    if ((e = sl_iam_sts_new(&se, &b->sts, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    /* An https metrics or STS endpoint alone also needs the certificate file check. */
    if (!b->tls_timer && (sl_metrics_tls(b->metrics) || sl_iam_sts_tls(b->sts)) &&
        b->cfg.sluice_ssl_reload_interval_ms > 0)
        b->tls_timer = sl_timer_start(b->loop, b->cfg.sluice_ssl_reload_interval_ms, tls_tick, b);
    if ((e = sl_keyops_new(b, b->keysvc, &b->keyops, err, elen)) != SL_OK) {
        sl_broker_free(b);
        return e;
    }
    sl_keyops_set_fprot(b->keyops, b->fprot);
    *out = b;
    return SL_OK;
}

int sl_broker_run(sl_broker *b) {
    SL_INFO("broker", "started", "node_id=%d cluster_id=%s log_dirs=%s topics=%d", b->cfg.node_id,
            sl_topics_cluster_id(b->topics), b->cfg.log_dirs, sl_topics_count(b->topics));
    char digest[65];
    sl_config_digest(&b->cfg, digest);
    emit_app(b, SL_APP_CONFIG, b->cfg.config_file[0] ? b->cfg.config_file : NULL, digest);
    emit_app(b, SL_APP_START, NULL, NULL);
    sl_loop_run(b->loop);
    int rc = 0;
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++)
            if (t->parts[i]->log && sl_log_sync(t->parts[i]->log)) rc = 1;
    if (!rc && sl_topics_mark_clean_stop(b->topics))
        SL_WARN("broker", "could not record the clean stop; the next start syncs every log", "%s",
                "");
    SL_INFO("broker", "stopped", "clean=%s", rc ? "false" : "true");
    emit_app(b, SL_APP_STOP, rc ? "unclean: a log could not be synced" : "clean", NULL);
    return rc;
}

void sl_broker_free(sl_broker *b) {
    if (!b) return;
    sl_keyops_free(b->keyops); /* before the logs and the key service it uses */
    /* A broker freed without a stop (sl_broker_free straight from the loop's caller: tests, the
     * fuzz targets) still has its parked requests: the registry and the coordinator would drop
     * them, arenas and all. Finished first, while the observers and connections exist. */
    if (b->loop) answer_parked(b);
    if (b->srv) sl_server_free(b->srv);
    /* After the server (closing connections drop their upstream ones), before the loop. */
    sl_gateway_free(b->gw);
    /* The upstream connections it closed posted their requests' failure callbacks; each holds
     * a reference to its connection, so they run now or connection and request records leak. */
    if (b->loop) sl_loop_run_posted(b->loop);
    sl_metrics_free(b->metrics);
    sl_iam_sts_free(b->sts); /* before the IAM context it borrows */
    sl_audit_free(b->audit); /* after the server: connections closing still report */
    sl_guard_free(b->guard);
    /* After the server: its connections' transports point at these. */
    for (int i = 0; i < 16; i++) sl_tls_endpoint_free(b->tls[i]);
    if (b->loop) sl_sasl_flush_delayed(b);
    if (b->loop && b->flusher) sl_loop_unwatch(b->loop, sl_flusher_fd(b->flusher));
    if (b->loop && b->topics) sl_loop_unwatch(b->loop, sl_topics_fd(b->topics));
    if (b->loop && b->keysvc && sl_keysvc_fd(b->keysvc) >= 0)
        sl_loop_unwatch(b->loop, sl_keysvc_fd(b->keysvc));
    /* A running clean is waited for and committed while the logs are open. */
    sl_compactor_free(b->compactor);
    b->compactor = NULL;
    /* The flusher completes queued syncs before the logs go away. */
    if (b->flusher) {
        sl_flusher_free(b->flusher);
    }
    sl_txn_coord_free(b->txn); /* before the groups and the producer-id allocator it uses */
    sl_group_coord_free(b->groups);
    sl_producers_free(b->producers);
    sl_auth_free(b->auth);
    sl_iam_free(b->iam); /* after the authentication context that borrows it */
    sl_authorizer_free(b->authz);
    sl_topics_close(b->topics);
    b->topics = NULL; /* a shred completing in sl_keysvc_close finds no registry (on_shred) */
    /* Its field keys and timers belong to the key service and the loop. */
    sl_fprot_free(b->fprot);
    /* After the registry and the groups log: their logs borrow its DEKs until closed. */
    sl_keysvc_close(b->keysvc);
    if (b->loop) sl_loop_free(b->loop);
    free(b);
}
