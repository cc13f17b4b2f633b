/* The broker: owns the loop, listeners, topic registry and flusher; the local backend that
 * executes what the request pipeline (src/pipeline) has authenticated and authorized. */
#ifndef SL_BROKER_H
#define SL_BROKER_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "broker/sl_topics.h"
#include "events/sl_events.h"
#include "net/sl_loop.h"
#include "net/sl_server.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "pipeline/sl_backend.h"
#include "pipeline/sl_req.h"
#include "proto/sl_proto.h"
#include "storage/sl_log.h"

/* What the broker object is built for. A gateway forwards every data, group and transaction API
 * upstream, so it opens none of the local broker's Kafka state (docs/gateway.md, "What a gateway
 * keeps on disk"). */
typedef enum sl_broker_mode {
    SL_BROKER_SERVE,   /* `sluice serve`: stores topics, groups, transactions */
    SL_BROKER_GATEWAY, /* `sluice gateway`: sl_gateway_attach follows sl_broker_new */
} sl_broker_mode;

typedef struct sl_broker {
    sl_config cfg;
    sl_broker_mode mode;
    sl_loop *loop;
    sl_server *srv;
    sl_flusher *flusher;      /* NULL: gateway */
    struct sl_keysvc *keysvc; /* encryption at rest (src/kms/sl_keysvc.h); NULL: off */
    sl_timer *keysvc_timer;   /* key cache expiry (sl_keysvc_tick) */
    sl_topics *topics;
    struct sl_group_coord *groups; /* group coordinator (sl_groups_local.c); NULL: gateway */
    sl_timer *retention_timer, *flush_timer; /* NULL: gateway */
    /* The log cleaner of compacted topics (sl_compactor.h); NULL with log.cleaner.enable=false
     * and in a gateway. */
    struct sl_compactor *compactor;
    struct sl_producers *producers; /* producer ids and expiry (sl_producers.c); NULL: gateway */
    struct sl_txn_coord *txn;       /* transaction coordinator (sl_h_txn.c); NULL: gateway */
    struct sl_auth *auth;           /* SASL, credential store, session rules (src/auth) */
    struct sl_authorizer *authz;    /* ACLs (src/acl); NULL: no authorizer, all allowed */
    struct sl_iam *iam;             /* IAM store and policies (src/iam); NULL: not in use */
    sl_listener_spec adv[16];       /* advertised endpoints, listener order */
    int nadv;
    sl_listener_spec listeners[16]; /* bound listeners (port resolved) */
    sl_security_protocol listener_proto[16];
    struct sl_tls_endpoint *tls[16]; /* per listener, NULL unless SSL/SASL_SSL (src/crypto) */
    sl_timer *tls_timer;             /* keystore/truststore change check */
    int nlisteners;
    bool stopping;
    int64_t started_ms;
    sl_req_observers observers;      /* see every finished request (sl_req.h) */
    sl_catalog catalog;              /* what the authorization stage may look up (sl_api.h) */
    sl_storage storage;              /* the data path handlers use (sl_backend.h) */
    sl_topic_admin admin;            /* topic administration handlers use (sl_backend.h) */
    sl_groups coordinator;           /* group coordination handlers use (sl_backend.h) */
    sl_topics_meta meta;             /* topic metadata and configs handlers use (sl_backend.h) */
    struct sl_sasl_delayed *delayed; /* failed authentications answered later (sl_h_sasl.c) */
    sl_events events;                /* where every security and health event goes */
    struct sl_audit *audit;          /* the audit trail (src/audit); NULL: off */
    struct sl_guard *guard;          /* detections (src/guard); NULL: off */
    struct sl_metrics *metrics;      /* metrics endpoint (src/metrics); NULL: off */
    struct sl_iam_sts *sts;          /* STS-compatible endpoint (src/iam/sl_iam_sts); NULL: off */
    struct sl_keyops *keyops;        /* control socket and `sluice keys` (sl_keyops.h) */
    struct sl_fprot *fprot;          /* field protection (sl_fprot.h); NULL: off */
    /* `sluice gateway` (src/gateway/sl_gateway.h): requests execute against the upstream
     * cluster instead of local storage; NULL: `sluice serve`. */
    struct sl_gateway *gw;
} sl_broker;

/* Starts the broker with `cfg` (copied): opens storage (recovering it), binds listeners.
 * SL_BROKER_GATEWAY opens only what the security layer needs (key service, topic registry for
 * the cluster id, credentials, ACLs, audit): no group or transaction coordinator, producer ids,
 * flusher or log cleaner, and refuses the audit trail's topic sink. Caller owns *out; run it
 * with sl_broker_run(). Errors are explained in `err`. */
sl_err sl_broker_new(const sl_config *cfg, sl_broker_mode mode, sl_broker **out, char *err,
                     size_t err_len);
/* Runs until SIGTERM/SIGINT, then drains in-flight requests, syncs logs and returns 0. */
int sl_broker_run(sl_broker *b);
void sl_broker_free(sl_broker *b);
/* The audit trail's topic sink (sl_audit_env.topic_append, audit/sl_audit.h): appends the `n`
 * values as one uncompressed v2 batch to partition 0 of __sluice_audit through b->storage (no
 * copies kept); a Kafka error code (UNKNOWN_TOPIC_OR_PARTITION when the topic is missing).
 * `ctx` is the broker. Loop thread. */
int16_t sl_broker_audit_topic_append(void *ctx, const char *const *values, const size_t *lens,
                                     int n);

/* Executes a request that passed every stage (sl_pipeline.c). One per served API. */
typedef void (*sl_exec_fn)(sl_req *rq);
/* The local broker's execution function for `key`, or NULL when it serves no such API (the
 * APIs served are the descriptors (pipeline/sl_api.h) that have one). */
sl_exec_fn sl_broker_exec(int16_t key);

/* Handlers (one file per area). */
void sl_h_api_versions(sl_req *rq);
void sl_h_metadata(sl_req *rq);
void sl_h_produce(sl_req *rq);
void sl_h_fetch(sl_req *rq);
void sl_h_list_offsets(sl_req *rq);
void sl_h_offset_for_leader_epoch(sl_req *rq);
void sl_h_create_topics(sl_req *rq);
void sl_h_delete_topics(sl_req *rq);
void sl_h_create_partitions(sl_req *rq);
void sl_h_delete_records(sl_req *rq);
void sl_h_describe_configs(sl_req *rq);
void sl_h_incremental_alter_configs(sl_req *rq);
void sl_h_alter_configs(sl_req *rq);
void sl_h_describe_cluster(sl_req *rq);
void sl_h_init_producer_id(sl_req *rq); /* sl_h_producer_id.c */

/* The transaction coordinator (sl_h_txn.c over src/txn/sl_txn.h; docs/transactions.md). */
typedef struct sl_txn_coord sl_txn_coord;
/* Opens the coordinator's log in log.dirs (before sl_producers_new: the producer-id allocator's
 * floor includes sl_txn_coord_max_pid). Caller owns *out (sl_txn_coord_free, before the
 * producers and the topics). */
sl_err sl_txn_coord_new(sl_broker *b, sl_txn_coord **out, char *err, size_t err_len);
/* Once the topics, producers and groups are open: finishes the decisions a crash interrupted
 * (markers, Complete*) and starts the timeout timer. */
void sl_txn_coord_start(sl_txn_coord *tc);
void sl_txn_coord_free(sl_txn_coord *tc);
int64_t sl_txn_coord_max_pid(const sl_txn_coord *tc);
/* The catalog's transactional-id listing (sl_api.h), `ctx` being the broker. */
void sl_txn_coord_each_id(void *ctx, void (*fn)(void *arg, sl_str id), void *arg);
/* InitProducerId with a transactional id (the handler has checked its authorization): a Kafka
 * error code, and on NONE *pid and *epoch. */
int16_t sl_txn_coord_init_producer_id(sl_req *rq, sl_str tid, int32_t timeout_ms,
                                      int64_t expected_pid, int16_t expected_epoch, int64_t *pid,
                                      int16_t *epoch);
/* For the produce path: NONE when (pid, epoch) own transactional id `tid` and topic-partition
 * (topic, partition) is in its ongoing transaction (sl_txn_verify_partitions); else the Kafka
 * error (INVALID_TXN_STATE, PRODUCER_FENCED, ...; COORDINATOR_NOT_AVAILABLE without one). */
int16_t sl_txn_coord_verify(sl_broker *b, sl_str tid, int64_t pid, int16_t epoch, sl_str topic,
                            int32_t partition);
void sl_h_add_partitions_to_txn(sl_req *rq);
void sl_h_add_offsets_to_txn(sl_req *rq);
void sl_h_end_txn(sl_req *rq);
void sl_h_txn_offset_commit(sl_req *rq);
void sl_h_describe_transactions(sl_req *rq);
void sl_h_list_transactions(sl_req *rq);
/* True when the transaction coordinator holds producer id `pid` for some transactional id. */
bool sl_txn_coord_has_pid(sl_broker *b, int64_t pid);
/* True while an unfinished transaction holds an offset for (group, topic, partition)
 * (TxnOffsetCommit, until its decision completes): OffsetFetch with require_stable answers
 * UNSTABLE_OFFSET_COMMIT for it (KIP-447). Borrows its arguments. */
bool sl_txn_coord_offset_pending(sl_broker *b, sl_str group, sl_str topic, int32_t partition);
void sl_h_describe_producers(sl_req *rq); /* sl_h_producers.c */

/* The local group coordinator (sl_groups_local.c): the state machine and its offsets log behind
 * the group-coordination seam; the classic group APIs (sl_h_group.c) use only the seam. */
typedef struct sl_group_coord sl_group_coord;
/* Opens the offsets log under log.dirs and loads it; NULL with `err` filled on failure. */
sl_group_coord *sl_group_coord_new(sl_broker *b, char *err, size_t err_len);
/* At SIGTERM: answers parked JoinGroup/SyncGroup requests so the drain can finish. */
/* Hands the group-offsets log to the log cleaner (an internal log; sl_compactor.h). */
struct sl_compactor;
sl_err sl_group_coord_clean_with(sl_group_coord *g, struct sl_compactor *c);
void sl_group_coord_shutdown(sl_group_coord *g);
/* Syncs the offsets log and frees; call after the flusher (its callbacks ran), before the loop. */
void sl_group_coord_free(sl_group_coord *g);
/* The catalog's group listings (sl_api.h), `ctx` being the broker. */
void sl_group_coord_each_group(void *ctx, void (*fn)(void *arg, sl_str group), void *arg);
void sl_group_coord_each_committed_topic(void *ctx, sl_str group,
                                         void (*fn)(void *arg, sl_str topic), void *arg);
/* The seam over b->groups; `b` owns it (it has no state of its own). */
sl_groups sl_groups_local(sl_broker *b);
/* The seam of a broker without a coordinator (a gateway's: its group APIs go upstream): every
 * operation answers COORDINATOR_NOT_AVAILABLE. Static; nothing to free. */
sl_groups sl_groups_none(void);
void sl_h_find_coordinator(sl_req *rq);
void sl_h_join_group(sl_req *rq);
void sl_h_sync_group(sl_req *rq);
void sl_h_heartbeat(sl_req *rq);
void sl_h_leave_group(sl_req *rq);
void sl_h_offset_commit(sl_req *rq);
void sl_h_offset_fetch(sl_req *rq);
void sl_h_list_groups(sl_req *rq);
void sl_h_describe_groups(sl_req *rq);
void sl_h_delete_groups(sl_req *rq);
void sl_h_offset_delete(sl_req *rq);

/* SASL (sl_h_sasl.c, sl_h_scram_admin.c). */
void sl_h_sasl_handshake(sl_req *rq);
void sl_h_sasl_authenticate(sl_req *rq);
void sl_h_describe_user_scram_credentials(sl_req *rq);
void sl_h_alter_user_scram_credentials(sl_req *rq);
/* Creates the connection's session (sl_conn_set_data), or closes the connection when out of
 * memory; on_open calls it first. */
void sl_sasl_conn_open(sl_broker *b, sl_conn *c);
/* Frees the session; on_close calls it. */
void sl_sasl_conn_close(sl_broker *b, sl_conn *c);
/* True if `frame` was a bare SASL token of a SaslHandshake v0 exchange (and was handled). */
bool sl_sasl_raw_frame(sl_req *rq, const uint8_t *frame, size_t len);
/* Session rules: false (connection closed) for a non-SASL request before authentication or on
 * an expired session. */
bool sl_sasl_authenticate_stage(sl_req *rq);
/* Completes failure answers still waiting out connection.failed.authentication.delay.ms. */
void sl_sasl_flush_delayed(sl_broker *b);
/* The authenticated principal of `c` ("User:alice", "User:ANONYMOUS"), or NULL before
 * authentication. Owned by the connection's session; valid until on_close. For ACLs. */
const char *sl_session_principal(const sl_conn *c);
/* True if `principal` is listed in super.users. */
bool sl_broker_is_super_user(const sl_broker *b, const char *principal);

/* ACL administration (sl_h_acl.c over src/acl); decisions come from the authorization stage
 * (src/pipeline/sl_authorize.h). */
void sl_h_describe_acls(sl_req *rq);
void sl_h_create_acls(sl_req *rq);
void sl_h_delete_acls(sl_req *rq);

/* The local storage backend (sl_storage_local.c) over the registry, logs, flusher and producer
 * state; `b` owns it (it has no state of its own). */
sl_storage sl_storage_local(sl_broker *b);
/* Tells every subscriber of the partitions of `topic` that they are going away (so every fetch
 * parked there completes): before the topic is deleted, and when the broker stops. */
void sl_storage_local_close_topic(sl_broker *b, sl_topic *topic);
/* Reports stored data of partition `p` failing authentication (SL_ETAMPER) or its key being
 * unusable (SL_EKEY_*, SL_EKMS_*): a warning line, and for SL_ETAMPER one SL_EV_KEY event (op
 * "tamper"), at most once per partition per minute (the ones held back are counted into the
 * next), so a consumer retrying cannot flood the log or the trail. Loop thread. */
void sl_storage_local_report_key_error(sl_broker *b, sl_partition *p, sl_err e, const char *what);
/* Tells the subscribers of `p` (parked fetches) that it changed by `bytes`: an append, or a
 * transaction marker moving the last stable offset (sl_txnpart.c). Loop thread. */
void sl_storage_local_notify(sl_partition *p, int64_t bytes);
/* The local topic administration (sl_admin_local.c) over the registry; `b` owns it (it has no
 * state of its own). */
sl_topic_admin sl_topic_admin_local(sl_broker *b);
/* The local topic metadata, configs and producer ids (sl_meta_local.c); `b` owns it (it has no
 * state of its own). */
sl_topics_meta sl_topics_meta_local(sl_broker *b);
/* Security protocol of the listener named `name` (PLAINTEXT if unknown). */
sl_security_protocol sl_broker_listener_protocol(const sl_broker *b, const char *name);
/* Auto-creates `name` if the config allows it; returns the topic or NULL. */
sl_topic *sl_broker_auto_create(sl_broker *b, sl_str name);

#endif
