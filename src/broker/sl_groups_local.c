/* The local broker's group coordination (pipeline/sl_backend.h): the state machine
 * (src/group/sl_group.h) with its offsets log (src/group/sl_offstore.h) made durable by the
 * flusher (group commit). Commits, group deletions and offset deletions complete once the
 * offsets log has been fsynced. So do the completions a group record causes (the leader's
 * SyncGroup completing a generation and the followers' answers with it, the LeaveGroup that
 * empties a group, a static member's new id): they are held until the record is durable. One
 * loop timer is kept armed at the state machine's next deadline.
 *
 * Ownership: the coordinator (sl_group_coord) is owned by the broker; a waiting join or sync,
 * and a held completion, live in the caller's arena until they complete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "broker/sl_compactor.h"
#include "group/sl_group.h"
#include "group/sl_offstore.h"

#define OFFSET_METADATA_MAX 4096 /* Kafka's offset.metadata.max.bytes default */

struct sl_group_coord {
    sl_broker *b;
    sl_gc *gc;
    sl_offstore *store;
    sl_timer *timer;
    int64_t timer_at;
    sl_err persist_err; /* first failure buffering records since the last flush */
    bool meta_dirty;    /* a group record was buffered in the current entry point */
    struct held *held;  /* completions waiting for that record to be durable */
};

/* A join or sync waiting for the state machine; the state machine's opaque waiter. */
typedef struct waiter {
    sl_arena *a;
    void *fn; /* sl_group_join_fn or sl_group_sync_fn */
    void *ctx;
} waiter;

typedef enum { H_DONE, H_JOIN, H_SYNC } held_kind;

/* A completion held until the groups log is fsynced; lives in its caller's arena. A join or
 * sync result is copied there, since the state machine's views die with its callback. */
typedef struct held {
    held_kind kind;
    sl_group_done_fn done; /* H_DONE */
    void *dctx;
    waiter *w; /* H_JOIN, H_SYNC */
    sl_group_join_result jr;
    sl_group_sync_result sr;
    struct held *next;
} held;

static sl_str adup(sl_arena *a, sl_str s, bool *oom) {
    if (s.len < 0) return s;
    char *p = sl_arena_dup(a, s.len ? s.p : "", (size_t)s.len + 1);
    if (!p) *oom = true;
    return p ? (sl_str){p, s.len} : sl_str_c("");
}

static sl_bytes bdup(sl_arena *a, sl_bytes b, bool *oom) {
    if (b.len <= 0) return (sl_bytes){(const uint8_t *)"", 0};
    uint8_t *p = sl_arena_dup(a, b.p, (size_t)b.len);
    if (!p) *oom = true;
    return p ? (sl_bytes){p, b.len} : (sl_bytes){(const uint8_t *)"", 0};
}

static void hold(sl_group_coord *g, held *h) {
    h->next = g->held;
    g->held = h;
}

/* ---- state machine callbacks ---- */

static int64_t clock_now(void *ctx) { return sl_wall_ms(); }

static void join_answer(waiter *w, const sl_group_join_result *r) {
    ((sl_group_join_fn)w->fn)(w->ctx, r);
}
static void sync_answer(waiter *w, const sl_group_sync_result *r) {
    ((sl_group_sync_fn)w->fn)(w->ctx, r);
}

static void on_join_done(void *ctx, void *wv, const sl_gc_join_result *gr) {
    sl_group_coord *g = ctx;
    waiter *w = wv;
    sl_group_join_result r = {
        .error = gr->error,
        .generation = gr->generation,
        .protocol_type = gr->protocol_type,
        .protocol_name = gr->protocol_name,
        .leader = gr->leader,
        .member_id = gr->member_id,
        .skip_assignment = gr->skip_assignment,
    };
    sl_group_member *ms = NULL;
    if (gr->nmembers > 0) {
        ms = sl_arena_calloc(w->a, (size_t)gr->nmembers, sizeof *ms);
        if (!ms) {
            /* Out of memory: the member hears of an error and rejoins. */
            join_answer(w, &(sl_group_join_result){.error = SL_KAFKA_UNKNOWN_SERVER_ERROR,
                                                   .generation = -1,
                                                   .protocol_type = SL_STR_NULL,
                                                   .protocol_name = SL_STR_NULL,
                                                   .leader = sl_str_c(""),
                                                   .member_id = gr->member_id});
            return;
        }
        for (int32_t i = 0; i < gr->nmembers; i++) {
            ms[i].member_id = gr->members[i].member_id;
            ms[i].instance_id = gr->members[i].instance_id;
            ms[i].metadata = gr->members[i].metadata;
        }
        r.members = ms;
        r.nmembers = gr->nmembers;
    }
    if (!g->meta_dirty) return join_answer(w, &r);
    /* The views die with this callback; the held answer is completed after the fsync. */
    held *h = sl_arena_calloc(w->a, 1, sizeof *h);
    bool oom = !h;
    if (h) {
        h->kind = H_JOIN;
        h->w = w;
        h->jr = r;
        h->jr.protocol_type = adup(w->a, r.protocol_type, &oom);
        h->jr.protocol_name = adup(w->a, r.protocol_name, &oom);
        h->jr.leader = adup(w->a, r.leader, &oom);
        h->jr.member_id = adup(w->a, r.member_id, &oom);
        for (int32_t i = 0; i < r.nmembers; i++) {
            ms[i].member_id = adup(w->a, ms[i].member_id, &oom);
            ms[i].instance_id = adup(w->a, ms[i].instance_id, &oom);
            ms[i].metadata = bdup(w->a, ms[i].metadata, &oom);
        }
    }
    if (oom) {
        r.error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        r.nmembers = 0;
        return join_answer(w, &r);
    }
    hold(g, h);
}

static void on_sync_done(void *ctx, void *wv, const sl_gc_sync_result *gr) {
    sl_group_coord *g = ctx;
    waiter *w = wv;
    sl_group_sync_result r = {gr->error, gr->protocol_type, gr->protocol_name, gr->assignment};
    if (!g->meta_dirty) return sync_answer(w, &r);
    held *h = sl_arena_calloc(w->a, 1, sizeof *h);
    bool oom = !h;
    if (h) {
        h->kind = H_SYNC;
        h->w = w;
        h->sr.error = r.error;
        h->sr.protocol_type = adup(w->a, r.protocol_type, &oom);
        h->sr.protocol_name = adup(w->a, r.protocol_name, &oom);
        h->sr.assignment = bdup(w->a, r.assignment, &oom);
    }
    if (oom) {
        r.error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        r.assignment = (sl_bytes){(const uint8_t *)"", 0};
        return sync_answer(w, &r);
    }
    hold(g, h);
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
static void settle(sl_group_coord *g, held *op);

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
    if (sl_offstore_open_keys(b->cfg.log_dirs, b->keysvc, b->cfg.offsets_topic_segment_bytes, g->gc,
                              &g->store, err, elen) != SL_OK) {
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

sl_err sl_group_coord_clean_with(sl_group_coord *g, sl_compactor *c) {
    if (!g) return SL_OK;
    return sl_compactor_add_internal(c, SL_OFFSTORE_DIR, sl_offstore_log(g->store),
                                     sl_offstore_dir(g->store));
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

/* ---- held completions ---- */

/* Completes a list of held ops; each completion may free its arena, the node with it. A failed
 * sync leaves the generation in memory only: members rediscover the coordinator and rejoin,
 * which the in-memory group answers. */
static void complete_all(held *h, sl_err e) {
    while (h) {
        held *next = h->next;
        switch (h->kind) {
        case H_DONE:
            h->done(h->dctx, e ? SL_KAFKA_KAFKA_STORAGE_ERROR : 0);
            break;
        case H_JOIN:
            if (e && !h->jr.error) h->jr.error = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
            join_answer(h->w, &h->jr);
            break;
        case H_SYNC:
            if (e && !h->sr.error) {
                h->sr.error = SL_KAFKA_COORDINATOR_NOT_AVAILABLE;
                h->sr.assignment = (sl_bytes){(const uint8_t *)"", 0};
            }
            sync_answer(h->w, &h->sr);
            break;
        }
        h = next;
    }
}

static void persist_done(void *ctx, sl_err e) {
    if (e) SL_ERROR("groups", "offsets log sync failed", "err=%s", sl_errname(e));
    complete_all(ctx, e);
}

/* Ends an entry point into the state machine: appends what it persisted and completes the held
 * ops (plus `op`, if any) once that is durable. (The in-memory state already has the change; a
 * failed append or sync reports the error.) */
static void settle(sl_group_coord *g, held *op) {
    held *ops = g->held;
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
    if (e) return complete_all(ops, e);
    sl_flusher_request(g->b->flusher, sl_offstore_log(g->store),
                       ops ? persist_done : flushed_quietly, ops);
}

static held *done_node(sl_arena *a, sl_group_done_fn done, void *dctx) {
    held *h = sl_arena_calloc(a, 1, sizeof *h);
    if (h) *h = (held){.kind = H_DONE, .done = done, .dctx = dctx};
    return h;
}

/* ---- the interface ---- */

static sl_group_coord *G(void *ctx) { return ((sl_broker *)ctx)->groups; }

static int16_t local_check_group(void *ctx, sl_str group) { return sl_gc_check_group_id(group); }

static int16_t local_join(void *ctx, const sl_group_join_args *j, sl_arena *a,
                          sl_group_join_fn done, void *dctx) {
    sl_group_coord *g = G(ctx);
    waiter *w = sl_arena_calloc(a, 1, sizeof *w);
    int32_t n = j->nprotocols > 0 ? j->nprotocols : 0;
    sl_gc_protocol *ps = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *ps);
    if (!w || !ps) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *w = (waiter){a, (void *)done, dctx};
    for (int32_t i = 0; i < n; i++)
        ps[i] = (sl_gc_protocol){j->protocols[i].name, j->protocols[i].metadata};
    sl_gc_join_req jr = {
        .group_id = j->group_id,
        .member_id = j->member_id,
        .instance_id = j->instance_id,
        .client_id = j->client_id,
        .client_host = j->client_host,
        .protocol_type = j->protocol_type,
        .reason = j->reason,
        .session_timeout_ms = j->session_timeout_ms,
        .rebalance_timeout_ms = j->rebalance_timeout_ms,
        .protocols = ps,
        .nprotocols = n,
        .require_known_member_id = j->require_known_member_id,
        .supports_skip_assignment = j->supports_skip_assignment,
    };
    sl_gc_join(g->gc, &jr, w);
    settle(g, NULL);
    return 0;
}

static int16_t local_sync(void *ctx, const sl_group_sync_args *s, sl_arena *a,
                          sl_group_sync_fn done, void *dctx) {
    sl_group_coord *g = G(ctx);
    waiter *w = sl_arena_calloc(a, 1, sizeof *w);
    int32_t n = s->nassignments > 0 ? s->nassignments : 0;
    sl_gc_assignment *as = sl_arena_calloc(a, (size_t)(n ? n : 1), sizeof *as);
    if (!w || !as) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *w = (waiter){a, (void *)done, dctx};
    for (int32_t i = 0; i < n; i++)
        as[i] = (sl_gc_assignment){s->assignments[i].member_id, s->assignments[i].assignment};
    sl_gc_sync(g->gc, s->group_id, s->generation, s->member_id, s->instance_id, s->protocol_type,
               s->protocol_name, as, n, w);
    settle(g, NULL);
    return 0;
}

static int16_t local_heartbeat(void *ctx, sl_str group, int32_t generation, sl_str member_id,
                               sl_str instance_id) {
    sl_group_coord *g = G(ctx);
    int16_t err = sl_gc_heartbeat(g->gc, group, generation, member_id, instance_id);
    rearm(g);
    return err;
}

static int16_t local_leave(void *ctx, sl_str group, sl_group_leaver *m, int32_t n, sl_arena *a,
                           sl_group_done_fn done, void *dctx) {
    sl_group_coord *g = G(ctx);
    held *h = done_node(a, done, dctx);
    if (!h) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    for (int32_t i = 0; i < n; i++)
        m[i].error = sl_gc_leave(g->gc, group, m[i].member_id, m[i].instance_id);
    /* Emptying the group wrote a record: the leaver hears once it is durable. */
    if (g->meta_dirty || g->held) {
        settle(g, h);
        return 0;
    }
    rearm(g);
    done(dctx, 0);
    return 0;
}

static int16_t local_commit_check(void *ctx, sl_str group, int32_t generation, sl_str member_id,
                                  sl_str instance_id) {
    return sl_gc_commit_check(G(ctx)->gc, group, generation, member_id, instance_id);
}

static bool partition_exists(sl_broker *b, sl_str topic, int32_t partition) {
    sl_topic *t = sl_topics_find(b->topics, topic);
    return t && partition >= 0 && partition < t->npart;
}

static int16_t local_commit(void *ctx, sl_str group, sl_group_offset *o, int32_t n, sl_arena *a,
                            sl_group_done_fn done, void *dctx) {
    sl_broker *b = ctx;
    sl_group_coord *g = b->groups;
    held *h = done_node(a, done, dctx);
    if (!h) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    bool stored = false;
    for (int32_t i = 0; i < n; i++) {
        if (o[i].error) continue;
        if (!partition_exists(b, o[i].topic, o[i].partition))
            o[i].error = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        else if (o[i].metadata.len > OFFSET_METADATA_MAX)
            o[i].error = SL_KAFKA_OFFSET_METADATA_TOO_LARGE;
        else if (sl_gc_offset_commit(g->gc, group, o[i].topic, o[i].partition, o[i].offset,
                                     o[i].leader_epoch, o[i].metadata) != SL_OK)
            o[i].error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        else
            stored = true;
    }
    if (!stored) {
        rearm(g);
        done(dctx, 0);
        return 0;
    }
    settle(g, h);
    return 0;
}

static void local_committed(void *ctx, sl_str group, sl_str topic, int32_t partition,
                            sl_group_committed *out) {
    sl_gc_offset o;
    if (sl_gc_offset_get(G(ctx)->gc, group, topic, partition, &o))
        *out = (sl_group_committed){o.offset, o.leader_epoch, o.metadata};
    else
        *out = (sl_group_committed){-1, -1, SL_STR_NULL};
}

static void local_each_committed(void *ctx, sl_str group,
                                 void (*fn)(void *arg, sl_str topic, int32_t partition,
                                            const sl_group_committed *c),
                                 void *arg) {
    sl_gc *gc = G(ctx)->gc;
    int32_t n = sl_gc_offset_count(gc, group);
    for (int32_t i = 0; i < n; i++) {
        sl_str topic;
        int32_t part;
        sl_gc_offset o;
        if (!sl_gc_offset_at(gc, group, i, &topic, &part, &o)) break;
        fn(arg, topic, part, &(sl_group_committed){o.offset, o.leader_epoch, o.metadata});
    }
}

typedef struct list_ctx {
    void (*fn)(void *arg, const sl_group_summary *s);
    void *arg;
} list_ctx;

static void list_one(void *ctx, const sl_gc_group_view *g) {
    list_ctx *c = ctx;
    if (g->state == SL_GS_DEAD) return;
    c->fn(c->arg,
          &(sl_group_summary){g->group_id, g->protocol_type, sl_group_state_name(g->state)});
}

static void local_list(void *ctx, void (*fn)(void *arg, const sl_group_summary *s), void *arg) {
    list_ctx c = {fn, arg};
    sl_gc_list(G(ctx)->gc, list_one, &c);
}

typedef struct describe_ctx {
    void (*fn)(void *arg, const sl_group_description *d);
    void *arg;
} describe_ctx;

static void describe_one(void *ctx, const sl_gc_group_view *g) {
    describe_ctx *c = ctx;
    /* A small group's members fit on the stack; a larger one's take one allocation for the call
     * (the seam hands out its own member struct, not the state machine's view). */
    sl_group_member stack[16];
    sl_group_member *ms = stack;
    if (g->nmembers > 16 && !(ms = calloc((size_t)g->nmembers, sizeof *ms))) {
        c->fn(c->arg, &(sl_group_description){sl_group_state_name(g->state), g->protocol_type,
                                              g->protocol_name, NULL, -1});
        return;
    }
    for (int32_t i = 0; i < g->nmembers; i++) {
        const sl_gc_member_view *m = &g->members[i];
        ms[i] = (sl_group_member){m->member_id,   m->instance_id, m->client_id,
                                  m->client_host, m->metadata,    m->assignment};
    }
    c->fn(c->arg, &(sl_group_description){sl_group_state_name(g->state), g->protocol_type,
                                          g->protocol_name, ms, g->nmembers});
    if (ms != stack) free(ms);
}

static bool local_describe(void *ctx, sl_str group,
                           void (*fn)(void *arg, const sl_group_description *d), void *arg) {
    describe_ctx c = {fn, arg};
    return sl_gc_describe(G(ctx)->gc, group, describe_one, &c);
}

static int16_t local_delete_groups(void *ctx, const sl_str *groups, int16_t *errors, int32_t n,
                                   sl_arena *a, sl_group_done_fn done, void *dctx) {
    sl_group_coord *g = G(ctx);
    held *h = done_node(a, done, dctx);
    if (!h) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    for (int32_t i = 0; i < n; i++)
        if (!errors[i]) errors[i] = sl_gc_delete_group(g->gc, groups[i]);
    settle(g, h);
    return 0;
}

static int16_t local_offset_delete_check(void *ctx, sl_str group) {
    return sl_gc_offset_delete_check(G(ctx)->gc, group);
}

static int16_t local_offset_delete(void *ctx, sl_str group, sl_group_offset *o, int32_t n,
                                   sl_arena *a, sl_group_done_fn done, void *dctx) {
    sl_broker *b = ctx;
    sl_group_coord *g = b->groups;
    held *h = done_node(a, done, dctx);
    if (!h) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    for (int32_t i = 0; i < n; i++) {
        if (o[i].error) continue;
        o[i].error = partition_exists(b, o[i].topic, o[i].partition)
                         ? sl_gc_offset_delete(g->gc, group, o[i].topic, o[i].partition)
                         : SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    }
    settle(g, h);
    return 0;
}

static const sl_groups_ops k_local_groups_ops = {
    .check_group = local_check_group,
    .join = local_join,
    .sync = local_sync,
    .heartbeat = local_heartbeat,
    .leave = local_leave,
    .commit_check = local_commit_check,
    .commit = local_commit,
    .committed = local_committed,
    .each_committed = local_each_committed,
    .list = local_list,
    .describe = local_describe,
    .delete_groups = local_delete_groups,
    .offset_delete_check = local_offset_delete_check,
    .offset_delete = local_offset_delete,
};

sl_groups sl_groups_local(sl_broker *b) {
    return (sl_groups){.ops = &k_local_groups_ops, .ctx = b};
}

/* ---- no coordinator (a gateway's broker: its group APIs go upstream) ---- */

/* Should a local handler reach the seam anyway, every operation answers
 * COORDINATOR_NOT_AVAILABLE and nothing is stored. */
#define NO_COORD SL_KAFKA_COORDINATOR_NOT_AVAILABLE

static void no_coord_items(sl_group_offset *o, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        if (!o[i].error) o[i].error = NO_COORD;
}

static int16_t none_join(void *ctx, const sl_group_join_args *j, sl_arena *a, sl_group_join_fn done,
                         void *dctx) {
    done(dctx, &(sl_group_join_result){.error = NO_COORD,
                                       .generation = -1,
                                       .leader = sl_str_c(""),
                                       .member_id = j->member_id});
    return 0;
}

static int16_t none_sync(void *ctx, const sl_group_sync_args *s, sl_arena *a, sl_group_sync_fn done,
                         void *dctx) {
    done(dctx, &(sl_group_sync_result){.error = NO_COORD, .assignment = {(const uint8_t *)"", 0}});
    return 0;
}

/* Heartbeat and the commit check (the same arguments). */
static int16_t none_member(void *ctx, sl_str group, int32_t generation, sl_str member_id,
                           sl_str instance_id) {
    return NO_COORD;
}

static int16_t none_leave(void *ctx, sl_str group, sl_group_leaver *m, int32_t n, sl_arena *a,
                          sl_group_done_fn done, void *dctx) {
    for (int32_t i = 0; i < n; i++) m[i].error = NO_COORD;
    done(dctx, 0);
    return 0;
}

/* Commit and OffsetDelete: every item not already refused. */
static int16_t none_offsets(void *ctx, sl_str group, sl_group_offset *o, int32_t n, sl_arena *a,
                            sl_group_done_fn done, void *dctx) {
    no_coord_items(o, n);
    done(dctx, 0);
    return 0;
}

static void none_committed(void *ctx, sl_str group, sl_str topic, int32_t partition,
                           sl_group_committed *out) {
    *out = (sl_group_committed){-1, -1, SL_STR_NULL};
}

static void none_each_committed(void *ctx, sl_str group,
                                void (*fn)(void *arg, sl_str topic, int32_t partition,
                                           const sl_group_committed *c),
                                void *arg) {}

static void none_list(void *ctx, void (*fn)(void *arg, const sl_group_summary *s), void *arg) {}

static bool none_describe(void *ctx, sl_str group,
                          void (*fn)(void *arg, const sl_group_description *d), void *arg) {
    return false;
}

static int16_t none_delete_groups(void *ctx, const sl_str *groups, int16_t *errors, int32_t n,
                                  sl_arena *a, sl_group_done_fn done, void *dctx) {
    for (int32_t i = 0; i < n; i++)
        if (!errors[i]) errors[i] = NO_COORD;
    done(dctx, 0);
    return 0;
}

static int16_t none_offset_delete_check(void *ctx, sl_str group) { return NO_COORD; }

static const sl_groups_ops k_no_groups_ops = {
    .check_group = local_check_group,
    .join = none_join,
    .sync = none_sync,
    .heartbeat = none_member,
    .leave = none_leave,
    .commit_check = none_member,
    .commit = none_offsets,
    .committed = none_committed,
    .each_committed = none_each_committed,
    .list = none_list,
    .describe = none_describe,
    .delete_groups = none_delete_groups,
    .offset_delete_check = none_offset_delete_check,
    .offset_delete = none_offsets,
};

sl_groups sl_groups_none(void) { return (sl_groups){.ops = &k_no_groups_ops, .ctx = NULL}; }

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
    if (b->groups) sl_gc_list(b->groups->gc, each_group_one, &c);
}

void sl_group_coord_each_committed_topic(void *ctx, sl_str group,
                                         void (*fn)(void *arg, sl_str topic), void *arg) {
    sl_broker *b = ctx;
    if (!b->groups) return;
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
