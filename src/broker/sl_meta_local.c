/* The local broker's topic metadata, configuration and producer ids (pipeline/sl_backend.h):
 * topics and their overrides from the registry (sl_topics.h), the broker's settings (its
 * sl_config, of which a few keys may change at run time) and the producer-id allocator
 * (sl_producers.h). */
#include <stdio.h>
#include <string.h>

#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "broker/sl_producers.h"

/* Broker keys that IncrementalAlterConfigs may change at run time (they only change defaults
 * that logs read on their next append or retention pass). */
static const char *const k_dynamic_broker[] = {
    "log.retention.ms",  "log.retention.bytes",         "log.segment.bytes",     "log.roll.ms",
    "message.max.bytes", "log.flush.interval.messages", "log.flush.interval.ms",
};

static bool broker_key_dynamic(const char *name) {
    for (size_t i = 0; i < sizeof k_dynamic_broker / sizeof *k_dynamic_broker; i++)
        if (!strcmp(k_dynamic_broker[i], name)) return true;
    return false;
}

static sl_str dup_str(sl_arena *a, const char *s) {
    size_t n = strlen(s);
    char *p = sl_arena_dup(a, s, n);
    return p ? (sl_str){p, (int32_t)n} : SL_STR_NULL;
}

static sl_topic_desc desc_of(const sl_topic *t) {
    return (sl_topic_desc){sl_str_c(t->name), t->id, t->npart};
}

static const char *local_cluster_id(void *ctx) {
    return sl_topics_cluster_id(((sl_broker *)ctx)->topics);
}

static int16_t local_describe_topic(void *ctx, sl_str name, const sl_uuid *id, sl_topic_desc *out) {
    sl_broker *b = ctx;
    sl_topic *t = id ? sl_topics_find_id(b->topics, id) : sl_topics_find(b->topics, name);
    if (!t) return id ? SL_KAFKA_UNKNOWN_TOPIC_ID : SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    *out = desc_of(t);
    return 0;
}

static void local_each_topic(void *ctx, void (*fn)(void *arg, const sl_topic_desc *t), void *arg) {
    sl_topics *ts = ((sl_broker *)ctx)->topics;
    for (sl_topic *t = sl_topics_next(ts, NULL); t; t = sl_topics_next(ts, t))
        fn(arg, &(sl_topic_desc){sl_str_c(t->name), t->id, t->npart});
}

static bool local_auto_create_enabled(void *ctx) {
    return ((sl_broker *)ctx)->cfg.auto_create_topics_enable;
}

static int16_t local_auto_create(void *ctx, sl_str name, sl_topic_desc *out) {
    if (!sl_topic_name_valid(name)) return SL_KAFKA_INVALID_TOPIC_EXCEPTION;
    sl_topic *t = sl_broker_auto_create(ctx, name);
    if (!t) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    *out = desc_of(t);
    return 0;
}

static int16_t local_topic_configs(void *ctx, sl_str topic, sl_config_want_fn want, void *arg,
                                   bool synonyms, sl_arena *a, sl_config_desc **out, int32_t *n) {
    sl_broker *b = ctx;
    sl_topic *t = sl_topics_find(b->topics, topic);
    if (!t) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    *n = 0;
    *out = sl_arena_calloc(a, SL_TCFG__COUNT, sizeof **out);
    if (!*out) return 0; /* as before the seam: an empty list when memory runs out */
    for (int id = 0; id < SL_TCFG__COUNT; id++) {
        if (want && !want(arg, sl_tcfg_name(id))) continue;
        char buf[64];
        bool set = sl_tcfg_effective(b->topics, t, id, buf, sizeof buf);
        sl_config_desc *c = &(*out)[(*n)++];
        c->name = sl_str_c(sl_tcfg_name(id));
        c->value = dup_str(a, buf);
        c->is_default = !set;
        c->source = set ? SL_CONFIG_SRC_DYNAMIC_TOPIC : SL_CONFIG_SRC_DEFAULT;
        c->type = id == SL_TCFG_CLEANUP_POLICY ? SL_CONFIG_TYPE_LIST : SL_CONFIG_TYPE_LONG;
        if (id == SL_TCFG_MAX_MESSAGE_BYTES) c->type = SL_CONFIG_TYPE_INT;
        if (id == SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO) c->type = 6; /* DOUBLE */
        if (!synonyms) continue;
        if (set)
            c->synonyms[c->nsynonyms++] =
                (sl_config_synonym){c->name, c->value, SL_CONFIG_SRC_DYNAMIC_TOPIC};
        int bi = sl_config_key_index(sl_tcfg_broker_key(id));
        char bv[64] = "";
        if (bi >= 0) sl_config_format(&b->cfg, (size_t)bi, bv, sizeof bv);
        if (id == SL_TCFG_RETENTION_MS)
            snprintf(bv, sizeof bv, "%lld", (long long)b->cfg.log_retention_ms);
        if (id == SL_TCFG_CLEANUP_POLICY || id == SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO) {
            /* the broker's resolved value, spelled as the topic's would be */
            sl_topic_config none = {0};
            sl_topic tmp = {.cfg = none};
            sl_tcfg_effective(b->topics, &tmp, id, bv, sizeof bv);
        }
        c->synonyms[c->nsynonyms++] = (sl_config_synonym){
            sl_str_c(sl_tcfg_broker_key(id)), dup_str(a, bv),
            bi >= 0 && sl_config_is_set(&b->cfg, (size_t)bi) ? SL_CONFIG_SRC_STATIC_BROKER
                                                             : SL_CONFIG_SRC_DEFAULT};
    }
    return 0;
}

static bool this_broker(sl_broker *b, sl_str name) {
    char id[16];
    snprintf(id, sizeof id, "%d", b->cfg.node_id);
    return name.len <= 0 || sl_str_eqc(name, id);
}

static int16_t local_broker_configs(void *ctx, sl_str broker, sl_config_want_fn want, void *arg,
                                    bool docs, sl_arena *a, sl_config_desc **out, int32_t *n,
                                    sl_str *message) {
    sl_broker *b = ctx;
    if (!this_broker(b, broker)) {
        *message = sl_str_c("unknown broker id");
        return SL_KAFKA_INVALID_REQUEST;
    }
    size_t nk = sl_config_key_count();
    *n = 0;
    *out = sl_arena_calloc(a, nk, sizeof **out);
    if (!*out) return 0;
    for (size_t i = 0; i < nk; i++) {
        const sl_config_key_info *k = sl_config_key_at(i);
        const char *name = k->name;
        if (want && !want(arg, name)) continue;
        char buf[SL_CFG_STR_MAX];
        bool has = sl_config_format(&b->cfg, i, buf, sizeof buf);
        if (!strcmp(name, "log.retention.ms")) {
            snprintf(buf, sizeof buf, "%lld", (long long)b->cfg.log_retention_ms);
            has = true;
        }
        sl_config_desc *c = &(*out)[(*n)++];
        c->name = sl_str_c(name);
        c->value = has ? dup_str(a, buf) : SL_STR_NULL;
        bool set = sl_config_is_set(&b->cfg, i);
        c->is_default = !set;
        c->read_only = !broker_key_dynamic(name);
        c->is_sensitive = k->sensitive;
        c->source = set ? SL_CONFIG_SRC_STATIC_BROKER : SL_CONFIG_SRC_DEFAULT;
        c->type = !strcmp(k->type, "boolean") ? SL_CONFIG_TYPE_BOOLEAN
                  : !strcmp(k->type, "int")   ? SL_CONFIG_TYPE_INT
                  : !strcmp(k->type, "long")  ? SL_CONFIG_TYPE_LONG
                  : !strcmp(k->type, "list")  ? SL_CONFIG_TYPE_LIST
                                              : SL_CONFIG_TYPE_STRING;
        c->doc = docs ? k->doc : NULL;
    }
    return 0;
}

static int16_t local_alter_topic_configs(void *ctx, sl_str topic, const sl_config_alter *c,
                                         int32_t n, bool replace, bool validate_only, sl_str *bad) {
    sl_broker *b = ctx;
    sl_topic *t = sl_topics_find(b->topics, topic);
    if (!t) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    sl_topic_config tc = t->cfg;
    if (replace) tc.set_mask = 0; /* AlterConfigs: every override not given goes */
    for (int32_t k = 0; k < n; k++) {
        int id = sl_tcfg_lookup(c[k].name);
        *bad = c[k].name;
        if (id < 0) return SL_KAFKA_INVALID_CONFIG;
        switch (c[k].op) {
        case 0: /* SET */
            if (c[k].value.len < 0 || sl_tcfg_parse(id, c[k].value, &tc.v[id]))
                return SL_KAFKA_INVALID_CONFIG;
            tc.set_mask |= 1u << id;
            break;
        case 1: /* DELETE */
            tc.set_mask &= ~(1u << id);
            break;
        default:
            return SL_KAFKA_INVALID_CONFIG; /* APPEND/SUBTRACT: no list-valued keys */
        }
    }
    *bad = SL_STR_NULL;
    if (validate_only) return 0;
    sl_err e = sl_topics_set_config(b->topics, t, &tc);
    if (!e) SL_INFO("admin", "topic config changed", "topic=%s", t->name);
    return e ? sl_err_to_kafka(e) : 0;
}

static int16_t local_alter_broker_configs(void *ctx, sl_str broker, const sl_config_alter *c,
                                          int32_t n, bool validate_only, sl_str *bad) {
    sl_broker *b = ctx;
    if (!this_broker(b, broker)) return SL_KAFKA_INVALID_REQUEST;
    sl_config next = b->cfg, defaults;
    sl_config_defaults(&defaults);
    for (int32_t k = 0; k < n; k++) {
        char name[128], val[SL_CFG_STR_MAX], err[256];
        *bad = c[k].name;
        if (c[k].name.len <= 0 || c[k].name.len >= (int32_t)sizeof name)
            return SL_KAFKA_INVALID_CONFIG;
        snprintf(name, sizeof name, "%.*s", c[k].name.len, c[k].name.p);
        int idx = sl_config_key_index(name);
        if (idx < 0 || !broker_key_dynamic(name)) return SL_KAFKA_INVALID_CONFIG;
        if (c[k].op == 1) {
            if (!sl_config_format(&defaults, (size_t)idx, val, sizeof val)) continue;
        } else if (c[k].op == 0 && c[k].value.len >= 0 && c[k].value.len < (int32_t)sizeof val) {
            snprintf(val, sizeof val, "%.*s", c[k].value.len, c[k].value.p);
        } else {
            return SL_KAFKA_INVALID_CONFIG;
        }
        if (sl_config_set(&next, name, val, err, sizeof err)) return SL_KAFKA_INVALID_CONFIG;
        if (!strcmp(name, "log.retention.ms")) next.log_retention_ms = next.retention_ms_raw;
    }
    *bad = SL_STR_NULL;
    if (validate_only) return 0;
    b->cfg = next;
    /* Re-derive every log's settings from the new defaults (topic overrides still win). */
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t)) {
        sl_topic_config tc = t->cfg;
        sl_topics_set_config(b->topics, t, &tc);
    }
    SL_INFO("admin", "broker config changed", "changes=%d", n);
    return 0;
}

static int16_t local_init_producer_id(void *ctx, int64_t pid, int16_t epoch, int64_t *pid_out,
                                      int16_t *epoch_out) {
    sl_producers *pr = ((sl_broker *)ctx)->producers;
    if (!pr) return SL_KAFKA_COORDINATOR_NOT_AVAILABLE; /* a gateway's: its producers go upstream */
    if (pid >= 0 && sl_pid_alloc_issued(pr->pids, pid) && epoch < INT16_MAX - 1) {
        /* KIP-360: an idempotent producer bumps its epoch to reset its sequences after an
         * error; the state per partition then accepts sequence 0 at the new epoch. */
        *pid_out = pid;
        *epoch_out = (int16_t)(epoch + 1);
        return 0;
    }
    /* A new producer, an exhausted epoch, or an id this broker never issued. */
    int64_t id;
    sl_err e = sl_pid_alloc_next(pr->pids, &id);
    if (e) {
        SL_ERROR("producers", "cannot allocate a producer id", "err=%s", sl_errname(e));
        return SL_KAFKA_COORDINATOR_NOT_AVAILABLE; /* retriable */
    }
    *pid_out = id;
    *epoch_out = 0;
    return 0;
}

static const sl_topics_meta_ops k_local_meta_ops = {
    .cluster_id = local_cluster_id,
    .describe_topic = local_describe_topic,
    .each_topic = local_each_topic,
    .auto_create_enabled = local_auto_create_enabled,
    .auto_create = local_auto_create,
    .topic_configs = local_topic_configs,
    .broker_configs = local_broker_configs,
    .alter_topic_configs = local_alter_topic_configs,
    .alter_broker_configs = local_alter_broker_configs,
    .init_producer_id = local_init_producer_id,
};

sl_topics_meta sl_topics_meta_local(sl_broker *b) {
    return (sl_topics_meta){.ops = &k_local_meta_ops, .ctx = b};
}
