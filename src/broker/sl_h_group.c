/* Group coordinator glue: decodes the group APIs, drives the state machine (src/group/sl_group.h)
 * and encodes its answers. JoinGroup and SyncGroup park their sl_req as the state machine's
 * waiter and are answered from its callbacks; OffsetCommit, DeleteGroups and OffsetDelete are
 * answered once the offsets log has been fsynced by the flusher (group commit). So are the
 * answers caused by a group record (the leader's SyncGroup completing a generation and the
 * followers' answers with it, the LeaveGroup that empties a group, a static member's new id):
 * they are held until the record is durable. One loop timer is kept armed at the state
 * machine's next deadline.
 *
 * Ownership: the coordinator (sl_group_coord) is owned by the broker; parked requests own their
 * arenas until answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "group/sl_group.h"
#include "group/sl_offstore.h"
#include "proto/gen/sl_msgs.h"

#define OFFSET_METADATA_MAX 4096 /* Kafka's offset.metadata.max.bytes default */

struct sl_group_coord {
    sl_broker *b;
    sl_gc *gc;
    sl_offstore *store;
    sl_timer *timer;
    int64_t timer_at;
    sl_err persist_err;      /* first failure buffering records since the last flush */
    bool meta_dirty;         /* a group record was buffered in the current entry point */
    struct persist_op *held; /* answers waiting for that record to be durable */
};

typedef enum { P_COMMIT, P_DELETE_GROUPS, P_OFFSET_DELETE, P_JOIN, P_SYNC, P_LEAVE } persist_kind;

/* An answer held until the groups log is fsynced; lives in its request's arena. */
typedef struct persist_op {
    sl_req *rq;
    persist_kind kind;
    void *resp;
    struct persist_op *next;
} persist_op;

static sl_str adup(sl_arena *a, sl_str s, bool *oom);
static sl_bytes bdup(sl_arena *a, sl_bytes b, bool *oom) {
    if (b.len <= 0) return (sl_bytes){(const uint8_t *)"", 0};
    uint8_t *p = sl_arena_dup(a, b.p, (size_t)b.len);
    if (!p) *oom = true;
    return p ? (sl_bytes){p, b.len} : (sl_bytes){(const uint8_t *)"", 0};
}

/* Queues `resp` (already copied into the request's arena) behind the pending group record. */
static void hold(sl_group_coord *g, sl_req *rq, persist_kind kind, void *resp) {
    persist_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    *op = (persist_op){rq, kind, resp, g->held};
    g->held = op;
}

/* ---- state machine callbacks ---- */

static int64_t clock_now(void *ctx) { return sl_wall_ms(); }

static void on_join_done(void *ctx, void *waiter, const sl_gc_join_result *r) {
    sl_group_coord *g = ctx;
    sl_req *rq = waiter;
    if (g->meta_dirty) {
        /* The views die with this callback; the held answer is encoded after the fsync. */
        sl_join_group_resp *h = sl_arena_calloc(rq->a, 1, sizeof *h);
        if (!h) return sl_req_fail(rq, "out of memory");
        sl_join_group_resp_init(h);
        bool oom = false;
        h->error_code = r->error;
        h->generation_id = r->generation;
        h->protocol_type = adup(rq->a, r->protocol_type, &oom);
        h->protocol_name = adup(rq->a, r->protocol_name, &oom);
        h->leader = adup(rq->a, r->leader, &oom);
        h->member_id = adup(rq->a, r->member_id, &oom);
        h->skip_assignment = r->skip_assignment;
        h->members_count = 0;
        if (r->nmembers > 0) {
            h->members = sl_arena_calloc(rq->a, (size_t)r->nmembers, sizeof *h->members);
            if (!h->members) return sl_req_fail(rq, "out of memory");
            for (int32_t i = 0; i < r->nmembers; i++) {
                h->members[i].member_id = adup(rq->a, r->members[i].member_id, &oom);
                h->members[i].group_instance_id = adup(rq->a, r->members[i].instance_id, &oom);
                h->members[i].metadata = bdup(rq->a, r->members[i].metadata, &oom);
            }
            h->members_count = r->nmembers;
        }
        if (oom) return sl_req_fail(rq, "out of memory");
        return hold(g, rq, P_JOIN, h);
    }
    sl_join_group_resp resp;
    sl_join_group_resp_init(&resp);
    resp.error_code = r->error;
    resp.generation_id = r->generation;
    resp.protocol_type = r->protocol_type;
    resp.protocol_name = r->protocol_name;
    resp.leader = r->leader;
    resp.member_id = r->member_id;
    resp.skip_assignment = r->skip_assignment;
    resp.members_count = 0;
    if (r->nmembers > 0) {
        resp.members = sl_arena_calloc(rq->a, (size_t)r->nmembers, sizeof *resp.members);
        if (!resp.members) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < r->nmembers; i++) {
            resp.members[i].member_id = r->members[i].member_id;
            resp.members[i].group_instance_id = r->members[i].instance_id;
            resp.members[i].metadata = r->members[i].metadata;
        }
        resp.members_count = r->nmembers;
    }
    SL_RESPOND(rq, join_group, &resp); /* encodes now: the views above need not outlive this */
}

static void on_sync_done(void *ctx, void *waiter, const sl_gc_sync_result *r) {
    sl_group_coord *g = ctx;
    sl_req *rq = waiter;
    if (g->meta_dirty) {
        sl_sync_group_resp *h = sl_arena_calloc(rq->a, 1, sizeof *h);
        if (!h) return sl_req_fail(rq, "out of memory");
        sl_sync_group_resp_init(h);
        bool oom = false;
        h->error_code = r->error;
        h->protocol_type = adup(rq->a, r->protocol_type, &oom);
        h->protocol_name = adup(rq->a, r->protocol_name, &oom);
        h->assignment = bdup(rq->a, r->assignment, &oom);
        if (oom) return sl_req_fail(rq, "out of memory");
        return hold(g, rq, P_SYNC, h);
    }
    sl_sync_group_resp resp;
    sl_sync_group_resp_init(&resp);
    resp.error_code = r->error;
    resp.protocol_type = r->protocol_type;
    resp.protocol_name = r->protocol_name;
    resp.assignment = r->assignment;
    SL_RESPOND(rq, sync_group, &resp);
}

static void on_persist(void *ctx, sl_str group, sl_str topic, int32_t partition,
                       const sl_gc_offset *val) {
    sl_group_coord *gcd = ctx;
    sl_err e = sl_offstore_add(gcd->store, group, topic, partition, val);
    if (e && !gcd->persist_err) gcd->persist_err = e;
}

static void on_persist_group(void *ctx, sl_str group, const sl_gc_group_view *gv) {
    sl_group_coord *gcd = ctx;
    gcd->meta_dirty = true;
    sl_err e = sl_offstore_add_group(gcd->store, group, gv);
    if (e && !gcd->persist_err) gcd->persist_err = e;
}

/* ---- timer ---- */

static void rearm(sl_group_coord *g);
static void settle(sl_group_coord *g, persist_op *op);

static void flushed_quietly(void *ctx, sl_err e) {
    if (e) SL_ERROR("groups", "offsets log sync failed", "err=%s", sl_errname(e));
}

/* Appends buffered changes; with no waiter, asks for a sync that nobody waits for. */
static sl_err flush_store(sl_group_coord *g) {
    sl_err e = g->persist_err;
    g->persist_err = SL_OK;
    sl_err fe = sl_offstore_flush(g->store);
    if (!e) e = fe;
    if (e) SL_ERROR("groups", "offsets log append failed", "err=%s", sl_errname(e));
    return e;
}

static void on_timer(void *ctx) {
    sl_group_coord *g = ctx;
    g->timer = NULL;
    sl_gc_tick(g->gc);
    if (g->meta_dirty || g->held) return settle(g, NULL); /* re-arms */
    /* Expiry tombstones: durable eventually, no request waits for them. */
    if (flush_store(g) == SL_OK)
        sl_flusher_request(g->b->flusher, sl_offstore_log(g->store), flushed_quietly, NULL);
    rearm(g);
}

/* Keeps one timer armed no later than the state machine's next deadline. Deadlines that moved
 * later (heartbeats) leave an early timer in place: it ticks for nothing and re-arms. */
static void rearm(sl_group_coord *g) {
    if (g->b->stopping) return;
    int64_t d = sl_gc_next_deadline(g->gc);
    if (g->timer && g->timer_at <= d) return;
    if (g->timer) sl_timer_cancel(g->b->loop, g->timer);
    int64_t delay = d == INT64_MAX ? 3600 * 1000 : d - sl_wall_ms();
    if (delay < 0) delay = 0;
    g->timer_at = d;
    g->timer = sl_timer_start(g->b->loop, delay, on_timer, g);
}

/* ---- lifecycle ---- */

sl_group_coord *sl_group_coord_new(sl_broker *b, char *err, size_t elen) {
    sl_group_coord *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->b = b;
    sl_gc_env env = {.ctx = g,
                     .now = clock_now,
                     .join_done = on_join_done,
                     .sync_done = on_sync_done,
                     .persist = on_persist,
                     .persist_group = on_persist_group};
    sl_gc_config cfg = {
        .min_session_timeout_ms = b->cfg.group_min_session_timeout_ms,
        .max_session_timeout_ms = b->cfg.group_max_session_timeout_ms,
        .initial_rebalance_delay_ms = b->cfg.group_initial_rebalance_delay_ms,
        .offsets_retention_ms = b->cfg.offsets_retention_minutes * 60 * 1000,
        .offsets_retention_check_interval_ms = b->cfg.offsets_retention_check_interval_ms,
    };
    g->gc = sl_gc_new(&env, &cfg);
    if (!g->gc) {
        snprintf(err, elen, "out of memory");
        free(g);
        return NULL;
    }
    if (sl_offstore_open(b->cfg.log_dirs, g->gc, &g->store, err, elen) != SL_OK) {
        sl_gc_free(g->gc);
        free(g);
        return NULL;
    }
    int64_t replayed, live;
    sl_offstore_stats(g->store, &replayed, &live);
    SL_INFO("groups", "loaded committed offsets and group metadata",
            "groups=%d live_records=%lld records=%lld", sl_gc_group_count(g->gc), (long long)live,
            (long long)replayed);
    rearm(g);
    return g;
}

void sl_group_coord_shutdown(sl_group_coord *g) {
    if (!g) return;
    /* Parked joins and syncs answer now so the drain is not held up; clients will look for the
     * coordinator again. */
    sl_gc_abort_waiters(g->gc, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    if (g->timer) {
        sl_timer_cancel(g->b->loop, g->timer);
        g->timer = NULL;
    }
}

void sl_group_coord_free(sl_group_coord *g) {
    if (!g) return;
    if (g->timer && g->b->loop) sl_timer_cancel(g->b->loop, g->timer);
    flush_store(g);
    sl_offstore_close(g->store); /* syncs */
    sl_gc_free(g->gc);
    free(g);
}

/* ---- persisted answers ---- */

/* Marks every partition/group that succeeded as failed with `code`. */
static void fail_successes(persist_op *op, int16_t code) {
    switch (op->kind) {
    case P_COMMIT: {
        sl_offset_commit_resp *r = op->resp;
        for (int32_t i = 0; i < r->topics_count; i++)
            for (int32_t j = 0; j < r->topics[i].partitions_count; j++)
                if (!r->topics[i].partitions[j].error_code)
                    r->topics[i].partitions[j].error_code = code;
        break;
    }
    case P_DELETE_GROUPS: {
        sl_delete_groups_resp *r = op->resp;
        for (int32_t i = 0; i < r->results_count; i++)
            if (!r->results[i].error_code) r->results[i].error_code = code;
        break;
    }
    case P_OFFSET_DELETE: {
        sl_offset_delete_resp *r = op->resp;
        for (int32_t i = 0; i < r->topics_count; i++)
            for (int32_t j = 0; j < r->topics[i].partitions_count; j++)
                if (!r->topics[i].partitions[j].error_code)
                    r->topics[i].partitions[j].error_code = code;
        break;
    }
    /* The generation is in memory but would not survive a restart: members rediscover the
     * coordinator and rejoin, which the in-memory group answers. */
    case P_JOIN: {
        sl_join_group_resp *r = op->resp;
        if (!r->error_code) r->error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
        break;
    }
    case P_SYNC: {
        sl_sync_group_resp *r = op->resp;
        if (!r->error_code) {
            r->error_code = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
            r->assignment = (sl_bytes){(const uint8_t *)"", 0};
        }
        break;
    }
    case P_LEAVE: /* the members are gone either way */
        break;
    }
}

static void persist_respond(persist_op *op) {
    switch (op->kind) {
    case P_COMMIT:
        SL_RESPOND(op->rq, offset_commit, (sl_offset_commit_resp *)op->resp);
        break;
    case P_DELETE_GROUPS:
        SL_RESPOND(op->rq, delete_groups, (sl_delete_groups_resp *)op->resp);
        break;
    case P_OFFSET_DELETE:
        SL_RESPOND(op->rq, offset_delete, (sl_offset_delete_resp *)op->resp);
        break;
    case P_JOIN:
        SL_RESPOND(op->rq, join_group, (sl_join_group_resp *)op->resp);
        break;
    case P_SYNC:
        SL_RESPOND(op->rq, sync_group, (sl_sync_group_resp *)op->resp);
        break;
    case P_LEAVE:
        SL_RESPOND(op->rq, leave_group, (sl_leave_group_resp *)op->resp);
        break;
    }
}

/* Answers a list of held ops; each answer frees its arena, the node with it. */
static void respond_all(persist_op *op, sl_err e) {
    while (op) {
        persist_op *next = op->next;
        if (e) fail_successes(op, SL_KAFKA_KAFKA_STORAGE_ERROR);
        persist_respond(op);
        op = next;
    }
}

static void persist_done(void *ctx, sl_err e) {
    if (e) SL_ERROR("groups", "offsets log sync failed", "err=%s", sl_errname(e));
    respond_all(ctx, e);
}

/* Ends an entry point into the state machine: appends what it persisted and answers the held
 * ops (plus `op`, if any) once that is durable. (The in-memory state already has the change; a
 * failed append or sync reports the error.) */
static void settle(sl_group_coord *g, persist_op *op) {
    persist_op *ops = g->held;
    g->held = NULL;
    if (op) {
        op->next = ops;
        ops = op;
    }
    bool meta = g->meta_dirty;
    g->meta_dirty = false;
    if (!ops && !meta) return rearm(g);
    sl_err e = flush_store(g);
    rearm(g);
    if (e) return respond_all(ops, e);
    sl_flusher_request(g->b->flusher, sl_offstore_log(g->store),
                       ops ? persist_done : flushed_quietly, ops);
}

static void persist_and_respond(sl_req *rq, persist_kind kind, void *resp) {
    persist_op *op = sl_arena_calloc(rq->a, 1, sizeof *op);
    if (!op) return sl_req_fail(rq, "out of memory");
    *op = (persist_op){rq, kind, resp, NULL};
    settle(rq->b->groups, op);
}

/* ---- FindCoordinator ---- */

static const sl_listener_spec *endpoint_for(sl_req *rq) {
    sl_conn *c = sl_pending_conn(rq->p);
    const char *ln = c ? sl_conn_listener(c) : NULL;
    for (int i = 0; ln && i < rq->b->nadv; i++)
        if (!strcmp(rq->b->adv[i].name, ln)) return &rq->b->adv[i];
    return &rq->b->adv[0];
}

static void coordinator_for(sl_req *rq, int8_t key_type, int16_t *err, sl_str *msg, int32_t *node,
                            sl_str *host, int32_t *port) {
    const sl_listener_spec *ep = endpoint_for(rq);
    *err = SL_KAFKA_NONE;
    *msg = SL_STR_NULL;
    *node = rq->b->cfg.node_id;
    *host = sl_str_c(ep->host);
    *port = ep->port;
    if (key_type != 0) {
        /* Transactions are not implemented; type 1 is the transaction coordinator. */
        *err = key_type == 1 ? SL_KAFKA_COORDINATOR_NOT_AVAILABLE : SL_KAFKA_INVALID_REQUEST;
        *msg = sl_str_c(key_type == 1 ? "transactions are not supported" : "unknown key type");
        *node = -1;
        *host = sl_str_c("");
        *port = -1;
    }
}

/* Kafka: DESCRIBE on the group (or transactional id) whose coordinator is asked for. */
static void coordinator_authz(sl_req *rq, int8_t key_type, sl_str key, int16_t *err, sl_str *msg,
                              int32_t *node, sl_str *host, int32_t *port) {
    if (key_type != 0 && key_type != 1) return;
    bool group = key_type == 0;
    if (sl_req_allowed(rq, SL_ACL_OP_DESCRIBE,
                       group ? SL_ACL_RES_GROUP : SL_ACL_RES_TRANSACTIONAL_ID, key))
        return;
    *err = group ? SL_KAFKA_GROUP_AUTHORIZATION_FAILED
                 : SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    *msg = SL_STR_NULL;
    *node = -1;
    *host = sl_str_c("");
    *port = -1;
}

static bool group_ok(sl_req *rq, int op, sl_str group) {
    return sl_req_allowed(rq, op, SL_ACL_RES_GROUP, group);
}

void sl_h_find_coordinator(sl_req *rq) {
    sl_find_coordinator_req req = *(const sl_find_coordinator_req *)rq->req;
    sl_find_coordinator_resp resp;
    sl_find_coordinator_resp_init(&resp);
    if (rq->h.api_version < 4) {
        coordinator_for(rq, req.key_type, &resp.error_code, &resp.error_message, &resp.node_id,
                        &resp.host, &resp.port);
        coordinator_authz(rq, req.key_type, req.key, &resp.error_code, &resp.error_message,
                          &resp.node_id, &resp.host, &resp.port);
    } else {
        int32_t n = req.coordinator_keys_count > 0 ? req.coordinator_keys_count : 0;
        if (!SL_RESP_ARRAY(rq, resp.coordinators, resp.coordinators_count, n))
            return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < n; i++) {
            sl_find_coordinator_resp_coordinator *c = &resp.coordinators[i];
            c->key = req.coordinator_keys[i];
            coordinator_for(rq, req.key_type, &c->error_code, &c->error_message, &c->node_id,
                            &c->host, &c->port);
            coordinator_authz(rq, req.key_type, c->key, &c->error_code, &c->error_message,
                              &c->node_id, &c->host, &c->port);
        }
    }
    SL_RESPOND(rq, find_coordinator, &resp);
}

/* ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ---- */

/* Kafka reports the client's address as "/ip". */
static sl_str client_host(sl_req *rq) {
    sl_conn *c = sl_pending_conn(rq->p);
    const char *peer = c ? sl_conn_peer(c) : "";
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    char *h = sl_arena_alloc(rq->a, n + 2);
    if (!h) return sl_str_c("");
    h[0] = '/';
    memcpy(h + 1, peer, n);
    h[n + 1] = 0;
    return (sl_str){h, (int32_t)n + 1};
}

void sl_h_join_group(sl_req *rq) {
    sl_join_group_req req = *(const sl_join_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        sl_join_group_resp resp;
        sl_join_group_resp_init(&resp);
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        resp.protocol_name = v >= 7 ? SL_STR_NULL : sl_str_c("");
        resp.leader = sl_str_c("");
        resp.member_id = sl_str_c("");
        SL_RESPOND(rq, join_group, &resp);
        return;
    }
    int32_t n = req.protocols_count > 0 ? req.protocols_count : 0;
    sl_gc_protocol *ps = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *ps);
    if (!ps) return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        ps[i].name = req.protocols[i].name;
        ps[i].metadata = req.protocols[i].metadata;
    }
    sl_gc_join_req jr = {
        .group_id = req.group_id,
        .member_id = req.member_id,
        .instance_id = v >= 5 ? req.group_instance_id : SL_STR_NULL,
        .client_id = rq->h.client_id.len >= 0 ? rq->h.client_id : sl_str_c(""),
        .client_host = client_host(rq),
        .protocol_type = req.protocol_type,
        .reason = req.reason,
        .session_timeout_ms = req.session_timeout_ms,
        .rebalance_timeout_ms = v >= 1 ? req.rebalance_timeout_ms : -1,
        .protocols = ps,
        .nprotocols = n,
        .require_known_member_id = v >= 4,
        .supports_skip_assignment = v >= 9,
    };
    sl_gc_join(rq->b->groups->gc, &jr, rq);
    settle(rq->b->groups, NULL);
}

void sl_h_sync_group(sl_req *rq) {
    sl_sync_group_req req = *(const sl_sync_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        sl_sync_group_resp resp;
        sl_sync_group_resp_init(&resp);
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        resp.assignment = (sl_bytes){(const uint8_t *)"", 0};
        SL_RESPOND(rq, sync_group, &resp);
        return;
    }
    int32_t n = req.assignments_count > 0 ? req.assignments_count : 0;
    sl_gc_assignment *as = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *as);
    if (!as) return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        as[i].member_id = req.assignments[i].member_id;
        as[i].assignment = req.assignments[i].assignment;
    }
    sl_gc_sync(rq->b->groups->gc, req.group_id, req.generation_id, req.member_id,
               v >= 3 ? req.group_instance_id : SL_STR_NULL,
               v >= 5 ? req.protocol_type : SL_STR_NULL, v >= 5 ? req.protocol_name : SL_STR_NULL,
               as, n, rq);
    settle(rq->b->groups, NULL);
}

void sl_h_heartbeat(sl_req *rq) {
    sl_heartbeat_req req = *(const sl_heartbeat_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_heartbeat_resp resp;
    sl_heartbeat_resp_init(&resp);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        resp.error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        SL_RESPOND(rq, heartbeat, &resp);
        return;
    }
    resp.error_code = sl_gc_heartbeat(rq->b->groups->gc, req.group_id, req.generation_id,
                                      req.member_id, v >= 3 ? req.group_instance_id : SL_STR_NULL);
    rearm(rq->b->groups);
    SL_RESPOND(rq, heartbeat, &resp);
}

void sl_h_leave_group(sl_req *rq) {
    sl_leave_group_req req = *(const sl_leave_group_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_gc *gc = rq->b->groups->gc;
    sl_leave_group_resp *rp = sl_arena_calloc(rq->a, 1, sizeof *rp);
    if (!rp) return sl_req_fail(rq, "out of memory");
    sl_leave_group_resp_init(rp);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) {
        rp->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        SL_RESPOND(rq, leave_group, rp);
        return;
    }
    if (v < 3) {
        rp->error_code = sl_gc_leave(gc, req.group_id, req.member_id, SL_STR_NULL);
    } else {
        rp->error_code = sl_gc_check_group_id(req.group_id);
        int32_t n = req.members_count > 0 ? req.members_count : 0;
        rp->members = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *rp->members);
        if (!rp->members) return sl_req_fail(rq, "out of memory");
        rp->members_count = rp->error_code ? 0 : n;
        for (int32_t i = 0; i < rp->members_count; i++) {
            sl_leave_group_req_member *m = &req.members[i];
            rp->members[i].member_id = m->member_id;
            rp->members[i].group_instance_id = m->group_instance_id;
            rp->members[i].error_code =
                sl_gc_leave(gc, req.group_id, m->member_id, m->group_instance_id);
        }
    }
    sl_group_coord *g = rq->b->groups;
    /* Emptying the group wrote a record: the leaver hears once it is durable. */
    if (g->meta_dirty || g->held) return persist_and_respond(rq, P_LEAVE, rp);
    rearm(g);
    SL_RESPOND(rq, leave_group, rp);
}

/* ---- offsets ---- */

void sl_h_offset_commit(sl_req *rq) {
    sl_offset_commit_req req = *(const sl_offset_commit_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_gc *gc = rq->b->groups->gc;
    int16_t gerr = sl_gc_commit_check(
        gc, req.group_id, v >= 1 ? req.generation_id_or_member_epoch : -1,
        v >= 1 ? req.member_id : sl_str_c(""), v >= 7 ? req.group_instance_id : SL_STR_NULL);
    if (!group_ok(rq, SL_ACL_OP_READ, req.group_id)) gerr = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    sl_offset_commit_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    if (!resp) return sl_req_fail(rq, "out of memory");
    sl_offset_commit_resp_init(resp);
    int32_t nt = req.topics_count > 0 ? req.topics_count : 0;
    if (!SL_RESP_ARRAY(rq, resp->topics, resp->topics_count, nt))
        return sl_req_fail(rq, "out of memory");
    bool stored = false;
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_commit_req_topic *t = &req.topics[i];
        sl_offset_commit_resp_topic *o = &resp->topics[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        o->name = t->name;
        if (!SL_RESP_ARRAY(rq, o->partitions, o->partitions_count, np))
            return sl_req_fail(rq, "out of memory");
        sl_topic *topic = gerr ? NULL : sl_topics_find(rq->b->topics, t->name);
        bool topic_ok = gerr || sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);
        for (int32_t j = 0; j < np; j++) {
            sl_offset_commit_req_partition *p = &t->partitions[j];
            sl_offset_commit_resp_partition *op = &o->partitions[j];
            op->partition_index = p->partition_index;
            if (gerr) {
                op->error_code = gerr;
            } else if (!topic_ok) {
                op->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            } else if (!topic || p->partition_index < 0 || p->partition_index >= topic->npart) {
                op->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            } else if (p->committed_metadata.len > OFFSET_METADATA_MAX) {
                op->error_code = SL_KAFKA_OFFSET_METADATA_TOO_LARGE;
            } else if (sl_gc_offset_commit(gc, req.group_id, t->name, p->partition_index,
                                           p->committed_offset,
                                           v >= 6 ? p->committed_leader_epoch : -1,
                                           p->committed_metadata) != SL_OK) {
                op->error_code = SL_KAFKA_UNKNOWN_SERVER_ERROR;
            } else {
                stored = true;
            }
        }
    }
    if (!stored) {
        rearm(rq->b->groups);
        SL_RESPOND(rq, offset_commit, resp);
        return;
    }
    persist_and_respond(rq, P_COMMIT, resp);
}

static void fill_fetch_partition(sl_gc *gc, sl_str group, sl_str topic, int32_t part,
                                 int64_t *offset, int32_t *epoch, sl_str *meta) {
    sl_gc_offset o;
    if (sl_gc_offset_get(gc, group, topic, part, &o)) {
        *offset = o.offset;
        *epoch = o.leader_epoch;
        *meta = o.metadata.len < 0 ? sl_str_c("") : o.metadata;
    } else {
        *offset = -1;
        *epoch = -1;
        *meta = sl_str_c("");
    }
}

/* One group's answer in the v8+ shape (the v0-7 shape is copied from it). `topics` NULL: all. */
static bool fetch_group(sl_req *rq, sl_str group, const sl_offset_fetch_req_group_topic *topics,
                        int32_t ntopics, sl_offset_fetch_resp_group *out) {
    sl_gc *gc = rq->b->groups->gc;
    out->group_id = group;
    out->error_code = sl_gc_check_group_id(group);
    out->topics_count = 0;
    if (!out->error_code && !group_ok(rq, SL_ACL_OP_DESCRIBE, group))
        out->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    if (out->error_code) return true;
    if (topics) {
        out->topics = sl_arena_calloc(rq->a, (size_t)(ntopics ? ntopics : 1), sizeof *out->topics);
        if (!out->topics) return false;
        out->topics_count = ntopics;
        for (int32_t i = 0; i < ntopics; i++) {
            sl_offset_fetch_resp_group_topic *t = &out->topics[i];
            int32_t np =
                topics[i].partition_indexes_count > 0 ? topics[i].partition_indexes_count : 0;
            t->name = topics[i].name;
            t->partitions = sl_arena_calloc(rq->a, (size_t)(np ? np : 1), sizeof *t->partitions);
            if (!t->partitions) return false;
            t->partitions_count = np;
            bool topic_ok = sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, t->name);
            for (int32_t j = 0; j < np; j++) {
                sl_offset_fetch_resp_group_partition *p = &t->partitions[j];
                sl_offset_fetch_resp_group_partition_init(p);
                p->partition_index = topics[i].partition_indexes[j];
                if (!topic_ok) {
                    /* Kafka's "no committed offset"; the schema default is 0. */
                    p->committed_offset = -1;
                    p->metadata = sl_str_c("");
                    p->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
                    continue;
                }
                fill_fetch_partition(gc, group, t->name, p->partition_index, &p->committed_offset,
                                     &p->committed_leader_epoch, &p->metadata);
            }
        }
        return true;
    }
    /* Every committed partition, grouped by topic. */
    int32_t n = sl_gc_offset_count(gc, group);
    out->topics = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *out->topics);
    if (!out->topics) return false;
    for (int32_t i = 0; i < n; i++) {
        sl_str topic;
        int32_t part;
        sl_gc_offset o;
        if (!sl_gc_offset_at(gc, group, i, &topic, &part, &o)) break;
        /* Kafka leaves out the topics the caller may not DESCRIBE. */
        if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, topic)) continue;
        sl_offset_fetch_resp_group_topic *t = NULL;
        for (int32_t k = 0; k < out->topics_count && !t; k++)
            if (sl_str_eq(out->topics[k].name, topic)) t = &out->topics[k];
        if (!t) {
            t = &out->topics[out->topics_count++];
            /* copy: the view changes with the next commit, the response is encoded later */
            char *nm = sl_arena_dup(rq->a, topic.p, (size_t)topic.len + 1);
            if (!nm) return false;
            t->name = (sl_str){nm, topic.len};
            t->partitions = sl_arena_calloc(rq->a, (size_t)n, sizeof *t->partitions);
            if (!t->partitions) return false;
        }
        sl_offset_fetch_resp_group_partition *p = &t->partitions[t->partitions_count++];
        p->partition_index = part;
        p->committed_offset = o.offset;
        p->committed_leader_epoch = o.leader_epoch;
        p->metadata = o.metadata.len < 0 ? sl_str_c("") : o.metadata;
    }
    return true;
}

void sl_h_offset_fetch(sl_req *rq) {
    sl_offset_fetch_req req = *(const sl_offset_fetch_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_offset_fetch_resp resp;
    sl_offset_fetch_resp_init(&resp);
    if (v >= 8) {
        int32_t ng = req.groups_count > 0 ? req.groups_count : 0;
        if (!SL_RESP_ARRAY(rq, resp.groups, resp.groups_count, ng))
            return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < ng; i++) {
            sl_offset_fetch_req_group *g = &req.groups[i];
            if (!fetch_group(rq, g->group_id, g->topics_count >= 0 ? g->topics : NULL,
                             g->topics_count, &resp.groups[i]))
                return sl_req_fail(rq, "out of memory");
        }
        SL_RESPOND(rq, offset_fetch, &resp);
        return;
    }
    /* v0-7: the same answer for one group, in the older shape. The request's topic struct has
     * the same layout as the v8 one. */
    int32_t nt = req.topics_count;
    sl_offset_fetch_req_group_topic *ts = NULL;
    if (nt >= 0) {
        ts = sl_arena_calloc(rq->a, (size_t)(nt ? nt : 1), sizeof *ts);
        if (!ts) return sl_req_fail(rq, "out of memory");
        for (int32_t i = 0; i < nt; i++) {
            ts[i].name = req.topics[i].name;
            ts[i].partition_indexes = req.topics[i].partition_indexes;
            ts[i].partition_indexes_count = req.topics[i].partition_indexes_count;
        }
    }
    sl_offset_fetch_resp_group g;
    sl_offset_fetch_resp_group_init(&g);
    if (!fetch_group(rq, req.group_id, ts, nt > 0 ? nt : 0, &g))
        return sl_req_fail(rq, "out of memory");
    resp.error_code = g.error_code;
    resp.topics =
        sl_arena_calloc(rq->a, (size_t)(g.topics_count ? g.topics_count : 1), sizeof *resp.topics);
    if (!resp.topics) return sl_req_fail(rq, "out of memory");
    resp.topics_count = g.topics_count;
    for (int32_t i = 0; i < g.topics_count; i++) {
        sl_offset_fetch_resp_topic *t = &resp.topics[i];
        t->name = g.topics[i].name;
        int32_t np = g.topics[i].partitions_count;
        if (!SL_RESP_ARRAY(rq, t->partitions, t->partitions_count, np))
            return sl_req_fail(rq, "out of memory");
        for (int32_t j = 0; j < np; j++) {
            sl_offset_fetch_resp_group_partition *s = &g.topics[i].partitions[j];
            sl_offset_fetch_resp_partition *d = &t->partitions[j];
            d->partition_index = s->partition_index;
            d->committed_offset = s->committed_offset;
            d->committed_leader_epoch = s->committed_leader_epoch;
            d->metadata = s->metadata;
            /* v0-1 have no top-level error: the group's goes on every partition */
            d->error_code = v < 2 ? g.error_code : s->error_code;
        }
    }
    SL_RESPOND(rq, offset_fetch, &resp);
}

/* ---- ListGroups / DescribeGroups / DeleteGroups / OffsetDelete ---- */

typedef struct list_ctx {
    sl_req *rq;
    bool all; /* DESCRIBE on the cluster: every group, else the describable ones */
    const sl_list_groups_req *req;
    sl_list_groups_resp *resp;
    int32_t cap;
    bool oom;
} list_ctx;

static void list_one(void *ctx, const sl_gc_group_view *g) {
    list_ctx *c = ctx;
    if (g->state == SL_GS_DEAD) return;
    if (!c->all && !sl_req_allowed(c->rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, g->group_id))
        return;
    if (c->rq->h.api_version >= 4 && c->req->states_filter_count > 0) {
        bool ok = false;
        for (int32_t i = 0; i < c->req->states_filter_count && !ok; i++)
            ok = sl_group_state_parse(c->req->states_filter[i]) == (int)g->state;
        if (!ok) return;
    }
    if (c->resp->groups_count == c->cap) {
        int32_t nc = c->cap ? c->cap * 2 : 16;
        sl_list_groups_resp_group *ng = sl_arena_calloc(c->rq->a, (size_t)nc, sizeof *ng);
        if (!ng) {
            c->oom = true;
            return;
        }
        if (c->resp->groups_count)
            memcpy(ng, c->resp->groups, (size_t)c->resp->groups_count * sizeof *ng);
        c->resp->groups = ng;
        c->cap = nc;
    }
    sl_list_groups_resp_group *o = &c->resp->groups[c->resp->groups_count++];
    /* The views die with the callback; the response is encoded after the walk. */
    char *id = sl_arena_dup(c->rq->a, g->group_id.p, (size_t)g->group_id.len + 1);
    char *pt = sl_arena_dup(c->rq->a, g->protocol_type.p, (size_t)g->protocol_type.len + 1);
    if (!id || !pt) {
        c->oom = true;
        return;
    }
    o->group_id = (sl_str){id, g->group_id.len};
    o->protocol_type = (sl_str){pt, g->protocol_type.len};
    o->group_state = sl_str_c(sl_group_state_name(g->state));
    o->group_type = sl_str_c("classic");
}

void sl_h_list_groups(sl_req *rq) {
    sl_list_groups_req req = *(const sl_list_groups_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_list_groups_resp resp;
    sl_list_groups_resp_init(&resp);
    resp.groups_count = 0;
    bool classic = true;
    if (v >= 5 && req.types_filter_count > 0) {
        classic = false;
        for (int32_t i = 0; i < req.types_filter_count; i++)
            if (req.types_filter[i].len == 7 && !strncasecmp(req.types_filter[i].p, "classic", 7))
                classic = true;
    }
    bool all =
        sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    list_ctx c = {rq, all, &req, &resp, 0, false};
    if (classic) sl_gc_list(rq->b->groups->gc, list_one, &c);
    if (c.oom) return sl_req_fail(rq, "out of memory");
    SL_RESPOND(rq, list_groups, &resp);
}

typedef struct describe_ctx {
    sl_req *rq;
    sl_describe_groups_resp_group *out;
    bool oom;
} describe_ctx;

static sl_str adup(sl_arena *a, sl_str s, bool *oom) {
    if (s.len < 0) return s;
    char *p = sl_arena_dup(a, s.len ? s.p : "", (size_t)s.len + 1);
    if (!p) *oom = true;
    return p ? (sl_str){p, s.len} : sl_str_c("");
}

static void describe_one(void *ctx, const sl_gc_group_view *g) {
    describe_ctx *c = ctx;
    sl_arena *a = c->rq->a;
    sl_describe_groups_resp_group *o = c->out;
    o->group_state = sl_str_c(sl_group_state_name(g->state));
    o->protocol_type = adup(a, g->protocol_type, &c->oom);
    o->protocol_data = adup(a, g->protocol_name, &c->oom);
    o->members = sl_arena_calloc(a, (size_t)(g->nmembers ? g->nmembers : 1), sizeof *o->members);
    if (!o->members) {
        c->oom = true;
        return;
    }
    o->members_count = g->nmembers;
    for (int32_t i = 0; i < g->nmembers; i++) {
        const sl_gc_member_view *m = &g->members[i];
        sl_describe_groups_resp_member *d = &o->members[i];
        d->member_id = adup(a, m->member_id, &c->oom);
        d->group_instance_id = adup(a, m->instance_id, &c->oom);
        d->client_id = adup(a, m->client_id, &c->oom);
        d->client_host = adup(a, m->client_host, &c->oom);
        uint8_t *md = sl_arena_dup(a, m->metadata.len ? m->metadata.p : (const uint8_t *)"",
                                   (size_t)m->metadata.len + 1);
        uint8_t *as = sl_arena_dup(a, m->assignment.len ? m->assignment.p : (const uint8_t *)"",
                                   (size_t)m->assignment.len + 1);
        if (!md || !as) c->oom = true;
        d->member_metadata = (sl_bytes){md, md ? m->metadata.len : 0};
        d->member_assignment = (sl_bytes){as, as ? m->assignment.len : 0};
    }
}

void sl_h_describe_groups(sl_req *rq) {
    sl_describe_groups_req req = *(const sl_describe_groups_req *)rq->req;
    sl_describe_groups_resp resp;
    sl_describe_groups_resp_init(&resp);
    int32_t n = req.groups_count > 0 ? req.groups_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.groups, resp.groups_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_describe_groups_resp_group *o = &resp.groups[i];
        sl_describe_groups_resp_group_init(o);
        o->group_id = req.groups[i];
        o->group_state = sl_str_c("Dead");
        o->protocol_type = sl_str_c("");
        o->protocol_data = sl_str_c("");
        o->authorized_operations = req.include_authorized_operations
                                       ? sl_req_ops(rq, SL_ACL_RES_GROUP, req.groups[i])
                                       : INT32_MIN;
        o->error_code = sl_gc_check_group_id(req.groups[i]);
        if (!o->error_code && !group_ok(rq, SL_ACL_OP_DESCRIBE, req.groups[i]))
            o->error_code = SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
        if (o->error_code) continue;
        describe_ctx c = {rq, o, false};
        sl_gc_describe(rq->b->groups->gc, req.groups[i], describe_one, &c);
        if (c.oom) return sl_req_fail(rq, "out of memory");
    }
    SL_RESPOND(rq, describe_groups, &resp);
}

void sl_h_delete_groups(sl_req *rq) {
    sl_delete_groups_req req = *(const sl_delete_groups_req *)rq->req;
    sl_delete_groups_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    if (!resp) return sl_req_fail(rq, "out of memory");
    sl_delete_groups_resp_init(resp);
    int32_t n = req.groups_names_count > 0 ? req.groups_names_count : 0;
    if (!SL_RESP_ARRAY(rq, resp->results, resp->results_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        resp->results[i].group_id = req.groups_names[i];
        resp->results[i].error_code =
            group_ok(rq, SL_ACL_OP_DELETE, req.groups_names[i])
                ? sl_gc_delete_group(rq->b->groups->gc, req.groups_names[i])
                : SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    }
    persist_and_respond(rq, P_DELETE_GROUPS, resp);
}

void sl_h_offset_delete(sl_req *rq) {
    sl_offset_delete_req req = *(const sl_offset_delete_req *)rq->req;
    sl_gc *gc = rq->b->groups->gc;
    sl_offset_delete_resp *resp = sl_arena_calloc(rq->a, 1, sizeof *resp);
    if (!resp) return sl_req_fail(rq, "out of memory");
    sl_offset_delete_resp_init(resp);
    resp->error_code = group_ok(rq, SL_ACL_OP_DELETE, req.group_id)
                           ? sl_gc_offset_delete_check(gc, req.group_id)
                           : SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    int32_t nt = req.topics_count > 0 && !resp->error_code ? req.topics_count : 0;
    if (!SL_RESP_ARRAY(rq, resp->topics, resp->topics_count, nt))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < nt; i++) {
        sl_offset_delete_req_topic *t = &req.topics[i];
        sl_offset_delete_resp_topic *o = &resp->topics[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        o->name = t->name;
        if (!SL_RESP_ARRAY(rq, o->partitions, o->partitions_count, np))
            return sl_req_fail(rq, "out of memory");
        sl_topic *topic = sl_topics_find(rq->b->topics, t->name);
        bool topic_ok = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, t->name);
        for (int32_t j = 0; j < np; j++) {
            int32_t p = t->partitions[j].partition_index;
            o->partitions[j].partition_index = p;
            if (!topic_ok)
                o->partitions[j].error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
            else if (!topic || p < 0 || p >= topic->npart)
                o->partitions[j].error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            else
                o->partitions[j].error_code = sl_gc_offset_delete(gc, req.group_id, t->name, p);
        }
    }
    persist_and_respond(rq, P_OFFSET_DELETE, resp);
}

/* ---- the catalog's view of groups (for the authorization stage) ---- */

typedef struct each_ctx {
    void (*fn)(void *arg, sl_str name);
    void *arg;
} each_ctx;

static void each_group_one(void *ctx, const sl_gc_group_view *g) {
    each_ctx *c = ctx;
    if (g->state != SL_GS_DEAD) c->fn(c->arg, g->group_id);
}

void sl_group_coord_each_group(void *ctx, void (*fn)(void *arg, sl_str group), void *arg) {
    sl_broker *b = ctx;
    each_ctx c = {fn, arg};
    sl_gc_list(b->groups->gc, each_group_one, &c);
}

void sl_group_coord_each_committed_topic(void *ctx, sl_str group,
                                         void (*fn)(void *arg, sl_str topic), void *arg) {
    sl_broker *b = ctx;
    sl_gc *gc = b->groups->gc;
    int32_t n = sl_gc_offset_count(gc, group);
    for (int32_t i = 0; i < n; i++) {
        sl_str topic;
        int32_t part;
        sl_gc_offset o;
        if (!sl_gc_offset_at(gc, group, i, &topic, &part, &o)) break;
        fn(arg, topic);
    }
}
