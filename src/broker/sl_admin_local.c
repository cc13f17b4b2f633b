/* The local broker's topic administration (pipeline/sl_backend.h) over the registry
 * (sl_topics.h): the checks run on the loop thread, the partitions' file work on the registry's
 * worker (sl_topics_*_async), so a creation, deletion or addition completes from a later loop
 * callback once its files are settled, and a refusal completes before the call returns. The
 * checks and messages are the ones a one-broker Kafka cluster answers with. */
#include <stdio.h>
#include <string.h>

#include "broker/sl_broker.h"
#include "broker/sl_compactor.h"

#define MAX_PARTITIONS 100000 /* more than a single node should be asked to open */

static sl_str adup(sl_arena *a, const char *s) {
    size_t n = strlen(s);
    char *p = sl_arena_dup(a, s, n + 1);
    return p ? (sl_str){p, (int32_t)n} : SL_STR_NULL;
}

static int16_t local_resolve(void *ctx, sl_str name, const sl_uuid *id, sl_arena *a,
                             sl_str *name_out, sl_uuid *id_out) {
    sl_broker *b = ctx;
    sl_topic *t = id ? sl_topics_find_id(b->topics, id) : sl_topics_find(b->topics, name);
    if (!t) return id ? SL_KAFKA_UNKNOWN_TOPIC_ID : SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    *name_out = adup(a, t->name);
    if (name_out->len < 0) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    *id_out = t->id;
    return 0;
}

/* Parses the overrides into `tc`; INVALID_CONFIG with *bad naming the culprit. */
static int16_t parse_configs(const sl_new_topic *nt, sl_topic_config *tc, sl_str *bad) {
    memset(tc, 0, sizeof *tc);
    for (int32_t k = 0; k < nt->nconfigs; k++) {
        const sl_config_entry *c = &nt->configs[k];
        int id = sl_tcfg_lookup(c->name);
        *bad = c->name;
        if (id < 0 || c->value.len < 0) return SL_KAFKA_INVALID_CONFIG;
        if (sl_tcfg_parse(id, c->value, &tc->v[id])) return SL_KAFKA_INVALID_CONFIG;
        tc->set_mask |= 1u << id;
    }
    return 0;
}

/* The topic's effective configs, as CreateTopics v5+ reports them. */
static bool effective_configs(sl_broker *b, sl_topic *t, sl_arena *a, sl_topic_created *r) {
    r->configs = sl_arena_calloc(a, SL_TCFG__COUNT, sizeof *r->configs);
    if (!r->configs) return false;
    r->nconfigs = SL_TCFG__COUNT;
    for (int id = 0; id < SL_TCFG__COUNT; id++) {
        char buf[64];
        bool set = sl_tcfg_effective(b->topics, t, id, buf, sizeof buf);
        r->configs[id].name = sl_str_c(sl_tcfg_name(id));
        r->configs[id].value = adup(a, buf);
        r->configs[id].is_default = !set;
        if (r->configs[id].value.len < 0) return false;
    }
    return true;
}

/* A creation, deletion or addition on the worker: what its completion needs. In the caller's
 * arena, which lives until the completion ran. */
typedef struct pending_op {
    sl_broker *b;
    sl_arena *a;
    int32_t np;
    sl_topic_created_fn created;
    sl_admin_done_fn done;
    void *dctx;
} pending_op;

static void topic_created(void *ctx, sl_err e, sl_topic *t) {
    pending_op *op = ctx;
    sl_topic_created r = {.message = SL_STR_NULL, .num_partitions = -1, .replication_factor = -1};
    if (e) {
        r.error = sl_err_to_kafka(e);
        r.message =
            sl_str_printf(op->a, "Topic creation failed, nothing was created: %s", sl_strerror(e));
    } else {
        r.num_partitions = op->np;
        r.replication_factor = 1;
        r.id = t->id;
        if (!effective_configs(op->b, t, op->a, &r)) r.configs = NULL, r.nconfigs = 0;
    }
    op->created(op->dctx, &r);
}

static pending_op *pending_new(sl_broker *b, sl_arena *a, int32_t np, void *dctx) {
    pending_op *op = sl_arena_calloc(a, 1, sizeof *op);
    if (op) *op = (pending_op){.b = b, .a = a, .np = np, .dctx = dctx};
    return op;
}

/* Answers now (into *r) unless the creation was posted to the worker: then false. */
static bool create(sl_broker *b, const sl_new_topic *nt, bool validate_only, sl_arena *a,
                   sl_topic_created *r, sl_topic_created_fn done, void *dctx) {
    int32_t np = nt->num_partitions;
    sl_topic_config tc;
    sl_str bad;
    if (!sl_topic_name_valid(nt->name)) {
        r->error = SL_KAFKA_INVALID_TOPIC_EXCEPTION;
    } else if (sl_topics_find(b->topics, nt->name)) {
        r->error = SL_KAFKA_TOPIC_ALREADY_EXISTS;
        r->message = sl_str_printf(a, "Topic '%.*s' already exists.", nt->name.len, nt->name.p);
    } else if (nt->replication_factor != -1 && nt->replication_factor != 1) {
        r->error = SL_KAFKA_INVALID_REPLICATION_FACTOR;
        r->message = sl_str_printf(a, "Replication factor: %d larger than available brokers: 1.",
                                   nt->replication_factor);
    } else if (np == 0 || np < -1) {
        r->error = SL_KAFKA_INVALID_PARTITIONS;
        r->message = sl_str_printf(a, "Number of partitions must be larger than 0 (got %d)", np);
    } else if ((r->error = parse_configs(nt, &tc, &bad))) {
        int n = bad.len > 100 ? 100 : bad.len;
        r->message = sl_str_printf(a, "invalid or unsupported topic config %.*s", n, bad.p);
    } else {
        if (np == -1) np = b->cfg.num_partitions;
        if (validate_only) {
            sl_err e = sl_topics_create(b->topics, nt->name, np, &tc, true, NULL);
            r->error = e == SL_EINVAL ? SL_KAFKA_INVALID_PARTITIONS : e ? sl_err_to_kafka(e) : 0;
            if (e) return true;
            r->num_partitions = np;
            r->replication_factor = 1;
            return true;
        }
        pending_op *op = pending_new(b, a, np, dctx);
        if (!op) {
            r->error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
            return true;
        }
        op->created = done;
        sl_err e = sl_topics_create_async(b->topics, nt->name, np, &tc, topic_created, op);
        if (!e) return false;
        r->error = e == SL_EINVAL ? SL_KAFKA_INVALID_PARTITIONS : sl_err_to_kafka(e);
        /* A name still reserved by a creation or deletion in flight. */
        if (e == SL_EEXISTS)
            r->message = sl_str_printf(a, "Topic '%.*s' already exists.", nt->name.len, nt->name.p);
    }
    return true;
}

static void local_create_topic(void *ctx, const sl_new_topic *nt, bool validate_only, sl_arena *a,
                               sl_topic_created_fn done, void *dctx) {
    sl_topic_created r = {.message = SL_STR_NULL, .num_partitions = -1, .replication_factor = -1};
    if (create(ctx, nt, validate_only, a, &r, done, dctx)) done(dctx, &r);
}

static void op_done(void *ctx, sl_err e, sl_topic *t) {
    (void)t;
    pending_op *op = ctx;
    op->done(op->dctx, e ? sl_err_to_kafka(e) : 0, SL_STR_NULL);
}

static void local_delete_topic(void *ctx, sl_str name, sl_arena *a, sl_admin_done_fn done,
                               void *dctx) {
    sl_broker *b = ctx;
    sl_topic *t = sl_topics_find(b->topics, name);
    if (!b->cfg.delete_topic_enable)
        return done(dctx, SL_KAFKA_TOPIC_DELETION_DISABLED, SL_STR_NULL);
    if (!t) return done(dctx, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION, SL_STR_NULL);
    if (t->busy) return done(dctx, SL_KAFKA_REASSIGNMENT_IN_PROGRESS, SL_STR_NULL);
    pending_op *op = pending_new(b, a, 0, dctx);
    if (!op) return done(dctx, SL_KAFKA_UNKNOWN_SERVER_ERROR, SL_STR_NULL);
    op->done = done;
    /* Parked fetches complete (and release their holds) before the logs go. */
    sl_storage_local_close_topic(b, t);
    sl_compactor_settle(b->compactor, t); /* a clean of its partitions finishes first */
    sl_err e = sl_topics_delete_async(b->topics, t, op_done, op);
    if (e)
        done(dctx, e == SL_ESTATE ? SL_KAFKA_REASSIGNMENT_IN_PROGRESS : sl_err_to_kafka(e),
             SL_STR_NULL);
}

static void partitions_added(void *ctx, sl_err e, sl_topic *t) {
    (void)t;
    pending_op *op = ctx;
    if (e) {
        sl_str m =
            sl_str_printf(op->a, "Adding partitions failed, none was added: %s", sl_strerror(e));
        return op->done(op->dctx, sl_err_to_kafka(e), m);
    }
    op->done(op->dctx, 0, SL_STR_NULL); /* the registry logs the addition */
}

static void local_add_partitions(void *ctx, sl_str name, int32_t count, int32_t nassignments,
                                 bool validate_only, sl_arena *a, sl_admin_done_fn done,
                                 void *dctx) {
    sl_broker *b = ctx;
    sl_topic *t = sl_topics_find(b->topics, name);
    if (!t) return done(dctx, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION, SL_STR_NULL);
    if (count <= t->npart)
        return done(dctx, SL_KAFKA_INVALID_PARTITIONS,
                    sl_str_printf(a, "Topic %s currently has %d partitions", t->name, t->npart));
    if (count > MAX_PARTITIONS) return done(dctx, SL_KAFKA_INVALID_PARTITIONS, SL_STR_NULL);
    if (nassignments > 0 && nassignments != count - t->npart)
        return done(dctx, SL_KAFKA_INVALID_REPLICA_ASSIGNMENT, SL_STR_NULL);
    if (t->busy)
        return done(dctx, SL_KAFKA_REASSIGNMENT_IN_PROGRESS,
                    sl_str_printf(a, "Partitions of %s are being added", t->name));
    if (validate_only) return done(dctx, 0, SL_STR_NULL);
    pending_op *op = pending_new(b, a, count, dctx);
    if (!op) return done(dctx, SL_KAFKA_UNKNOWN_SERVER_ERROR, SL_STR_NULL);
    op->done = done;
    sl_err e = sl_topics_add_partitions_async(b->topics, t, count, partitions_added, op);
    if (e) done(dctx, sl_err_to_kafka(e), SL_STR_NULL);
}

static const sl_topic_admin_ops k_local_admin_ops = {
    .resolve = local_resolve,
    .create_topic = local_create_topic,
    .delete_topic = local_delete_topic,
    .add_partitions = local_add_partitions,
};

sl_topic_admin sl_topic_admin_local(sl_broker *b) {
    return (sl_topic_admin){.ops = &k_local_admin_ops, .ctx = b};
}
