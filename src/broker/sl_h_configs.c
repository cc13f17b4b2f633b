/* DescribeConfigs and IncrementalAlterConfigs for topics and the broker, plus DescribeCluster. */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

enum { RES_TOPIC = 2, RES_BROKER = 4 };
enum { SRC_DYNAMIC_TOPIC = 1, SRC_DYNAMIC_BROKER = 2, SRC_STATIC_BROKER = 4, SRC_DEFAULT = 5 };
enum { TYPE_BOOLEAN = 1, TYPE_STRING = 2, TYPE_INT = 3, TYPE_LONG = 5, TYPE_LIST = 7 };

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

static bool key_requested(const sl_describe_configs_req_resource *r, const char *name) {
    if (r->configuration_keys_count < 0) return true;
    for (int32_t i = 0; i < r->configuration_keys_count; i++)
        if (sl_str_eqc(r->configuration_keys[i], name)) return true;
    return false;
}

static sl_describe_configs_resp_config *add_config(sl_req *rq, sl_describe_configs_resp_result *o) {
    sl_describe_configs_resp_config *c = &o->configs[o->configs_count++];
    sl_describe_configs_resp_config_init(c);
    /* Null until asked for, as Kafka answers; the schema default is an empty string. */
    c->documentation = SL_STR_NULL;
    return c;
}

static void describe_topic(sl_req *rq, const sl_describe_configs_req_resource *r,
                           sl_describe_configs_resp_result *o, bool synonyms, bool docs) {
    if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_RES_TOPIC, r->resource_name)) {
        o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        return;
    }
    sl_topic *t = sl_topics_find(rq->b->topics, r->resource_name);
    if (!t) {
        o->error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    o->configs = sl_arena_calloc(rq->a, SL_TCFG__COUNT, sizeof *o->configs);
    if (!o->configs) return;
    for (int id = 0; id < SL_TCFG__COUNT; id++) {
        if (!key_requested(r, sl_tcfg_name(id))) continue;
        char buf[64];
        bool set = sl_tcfg_effective(rq->b->topics, t, id, buf, sizeof buf);
        sl_describe_configs_resp_config *c = add_config(rq, o);
        c->name = sl_str_c(sl_tcfg_name(id));
        c->value = dup_str(rq->a, buf);
        c->is_default = !set;
        c->config_source = set ? SRC_DYNAMIC_TOPIC : SRC_DEFAULT;
        c->config_type = id == SL_TCFG_CLEANUP_POLICY ? TYPE_LIST : TYPE_LONG;
        if (id == SL_TCFG_MAX_MESSAGE_BYTES) c->config_type = TYPE_INT;
        if (synonyms) {
            c->synonyms = sl_arena_calloc(rq->a, 2, sizeof *c->synonyms);
            if (!c->synonyms) continue;
            if (set) {
                c->synonyms[c->synonyms_count].name = c->name;
                c->synonyms[c->synonyms_count].value = c->value;
                c->synonyms[c->synonyms_count++].source = SRC_DYNAMIC_TOPIC;
            }
            c->synonyms[c->synonyms_count].name = sl_str_c(sl_tcfg_broker_key(id));
            int bi = sl_config_key_index(sl_tcfg_broker_key(id));
            char bv[64] = "";
            if (bi >= 0) sl_config_format(&rq->b->cfg, (size_t)bi, bv, sizeof bv);
            if (id == SL_TCFG_RETENTION_MS)
                snprintf(bv, sizeof bv, "%lld", (long long)rq->b->cfg.log_retention_ms);
            if (id == SL_TCFG_CLEANUP_POLICY) snprintf(bv, sizeof bv, "delete");
            c->synonyms[c->synonyms_count].value = dup_str(rq->a, bv);
            c->synonyms[c->synonyms_count++].source =
                bi >= 0 && sl_config_is_set(&rq->b->cfg, (size_t)bi) ? SRC_STATIC_BROKER
                                                                     : SRC_DEFAULT;
        }
        if (docs) c->documentation = SL_STR_NULL;
    }
}

static void describe_broker(sl_req *rq, const sl_describe_configs_req_resource *r,
                            sl_describe_configs_resp_result *o, bool docs) {
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_DESCRIBE_CONFIGS)) {
        o->error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        return;
    }
    char id[16];
    snprintf(id, sizeof id, "%d", rq->b->cfg.node_id);
    if (r->resource_name.len > 0 && !sl_str_eqc(r->resource_name, id)) {
        o->error_code = SL_KAFKA_INVALID_REQUEST;
        o->error_message = sl_str_c("unknown broker id");
        return;
    }
    size_t n = sl_config_key_count();
    o->configs = sl_arena_calloc(rq->a, n, sizeof *o->configs);
    if (!o->configs) return;
    for (size_t i = 0; i < n; i++) {
        const sl_config_key_info *k = sl_config_key_at(i);
        const char *name = k->name;
        if (!key_requested(r, name)) continue;
        char buf[SL_CFG_STR_MAX];
        bool has = sl_config_format(&rq->b->cfg, i, buf, sizeof buf);
        if (!strcmp(name, "log.retention.ms")) {
            snprintf(buf, sizeof buf, "%lld", (long long)rq->b->cfg.log_retention_ms);
            has = true;
        }
        sl_describe_configs_resp_config *c = add_config(rq, o);
        c->name = sl_str_c(name);
        c->value = has ? dup_str(rq->a, buf) : SL_STR_NULL;
        bool set = sl_config_is_set(&rq->b->cfg, i);
        c->is_default = !set;
        c->read_only = !broker_key_dynamic(name);
        c->is_sensitive = k->sensitive;
        c->config_source = set ? SRC_STATIC_BROKER : SRC_DEFAULT;
        c->config_type = !strcmp(k->type, "boolean") ? TYPE_BOOLEAN
                         : !strcmp(k->type, "int")   ? TYPE_INT
                         : !strcmp(k->type, "long")  ? TYPE_LONG
                         : !strcmp(k->type, "list")  ? TYPE_LIST
                                                     : TYPE_STRING;
        if (docs) c->documentation = sl_str_c(k->doc);
    }
}

void sl_h_describe_configs(sl_req *rq) {
    sl_describe_configs_req req = *(const sl_describe_configs_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_describe_configs_resp resp;
    sl_describe_configs_resp_init(&resp);
    int32_t n = req.resources_count > 0 ? req.resources_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.results, resp.results_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_describe_configs_req_resource *r = &req.resources[i];
        sl_describe_configs_resp_result *o = &resp.results[i];
        o->resource_type = r->resource_type;
        o->resource_name = r->resource_name;
        o->error_message = SL_STR_NULL;
        if (r->resource_type == RES_TOPIC)
            describe_topic(rq, r, o, v >= 1 && req.include_synonyms,
                           v >= 3 && req.include_documentation);
        else if (r->resource_type == RES_BROKER)
            describe_broker(rq, r, o, v >= 3 && req.include_documentation);
        else
            o->error_code = SL_KAFKA_INVALID_REQUEST;
    }
    SL_RESPOND(rq, describe_configs, &resp);
}

static int16_t alter_topic(sl_req *rq, const sl_incremental_alter_configs_req_resource *r,
                           bool validate_only, sl_str *msg) {
    if (!sl_req_allowed(rq, SL_ACL_OP_ALTER_CONFIGS, SL_ACL_RES_TOPIC, r->resource_name))
        return SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    sl_topic *t = sl_topics_find(rq->b->topics, r->resource_name);
    if (!t) return SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    sl_topic_config tc = t->cfg;
    for (int32_t k = 0; k < r->configs_count; k++) {
        const sl_incremental_alter_configs_req_config *c = &r->configs[k];
        int id = sl_tcfg_lookup(c->name);
        *msg = c->name;
        if (id < 0) return SL_KAFKA_INVALID_CONFIG;
        switch (c->config_operation) {
        case 0: /* SET */
            if (c->value.len < 0 || sl_tcfg_parse(id, c->value, &tc.v[id]))
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
    *msg = SL_STR_NULL;
    if (validate_only) return 0;
    sl_err e = sl_topics_set_config(rq->b->topics, t, &tc);
    if (!e) SL_INFO("admin", "topic config changed", "topic=%s", t->name);
    return e ? sl_err_to_kafka(e) : 0;
}

static int16_t alter_broker(sl_req *rq, const sl_incremental_alter_configs_req_resource *r,
                            bool validate_only, sl_str *msg) {
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_ALTER_CONFIGS))
        return SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    sl_broker *b = rq->b;
    char id[16];
    snprintf(id, sizeof id, "%d", b->cfg.node_id);
    if (r->resource_name.len > 0 && !sl_str_eqc(r->resource_name, id))
        return SL_KAFKA_INVALID_REQUEST;
    sl_config next = b->cfg, defaults;
    sl_config_defaults(&defaults);
    for (int32_t k = 0; k < r->configs_count; k++) {
        const sl_incremental_alter_configs_req_config *c = &r->configs[k];
        char name[128], val[SL_CFG_STR_MAX], err[256];
        *msg = c->name;
        if (c->name.len <= 0 || c->name.len >= (int32_t)sizeof name) return SL_KAFKA_INVALID_CONFIG;
        snprintf(name, sizeof name, "%.*s", c->name.len, c->name.p);
        int idx = sl_config_key_index(name);
        if (idx < 0 || !broker_key_dynamic(name)) return SL_KAFKA_INVALID_CONFIG;
        if (c->config_operation == 1) {
            if (!sl_config_format(&defaults, (size_t)idx, val, sizeof val)) continue;
        } else if (c->config_operation == 0 && c->value.len >= 0 &&
                   c->value.len < (int32_t)sizeof val) {
            snprintf(val, sizeof val, "%.*s", c->value.len, c->value.p);
        } else {
            return SL_KAFKA_INVALID_CONFIG;
        }
        if (sl_config_set(&next, name, val, err, sizeof err)) return SL_KAFKA_INVALID_CONFIG;
        if (!strcmp(name, "log.retention.ms")) next.log_retention_ms = next.retention_ms_raw;
    }
    *msg = SL_STR_NULL;
    if (validate_only) return 0;
    b->cfg = next;
    /* Re-derive every log's settings from the new defaults (topic overrides still win). */
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t)) {
        sl_topic_config tc = t->cfg;
        sl_topics_set_config(b->topics, t, &tc);
    }
    SL_INFO("admin", "broker config changed", "changes=%d", r->configs_count);
    return 0;
}

void sl_h_incremental_alter_configs(sl_req *rq) {
    sl_incremental_alter_configs_req req = *(const sl_incremental_alter_configs_req *)rq->req;
    sl_incremental_alter_configs_resp resp;
    sl_incremental_alter_configs_resp_init(&resp);
    int32_t n = req.resources_count > 0 ? req.resources_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.responses, resp.responses_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_incremental_alter_configs_req_resource *r = &req.resources[i];
        sl_incremental_alter_configs_resp_response *o = &resp.responses[i];
        o->resource_type = r->resource_type;
        o->resource_name = r->resource_name;
        sl_str bad = SL_STR_NULL;
        if (r->resource_type == RES_TOPIC)
            o->error_code = alter_topic(rq, r, req.validate_only, &bad);
        else if (r->resource_type == RES_BROKER)
            o->error_code = alter_broker(rq, r, req.validate_only, &bad);
        else
            o->error_code = SL_KAFKA_INVALID_REQUEST;
        o->error_message = SL_STR_NULL;
        if (o->error_code == SL_KAFKA_INVALID_CONFIG && bad.len > 0) {
            char buf[200];
            int len = snprintf(buf, sizeof buf, "invalid or unsupported config %.*s",
                               bad.len > 120 ? 120 : bad.len, bad.p);
            char *p = sl_arena_dup(rq->a, buf, (size_t)len);
            if (p) o->error_message = (sl_str){p, len};
        }
    }
    SL_RESPOND(rq, incremental_alter_configs, &resp);
}

void sl_h_describe_cluster(sl_req *rq) {
    sl_describe_cluster_req req = *(const sl_describe_cluster_req *)rq->req;
    int16_t v = rq->h.api_version;
    sl_broker *b = rq->b;
    sl_describe_cluster_resp resp;
    sl_describe_cluster_resp_init(&resp);
    if (v >= 1 && req.endpoint_type != 1) {
        /* Kafka answers a broker endpoint asked for controllers this way; we have no controller
         * endpoints. */
        resp.error_code = SL_KAFKA_MISMATCHED_ENDPOINT_TYPE;
        resp.endpoint_type = req.endpoint_type;
        SL_RESPOND(rq, describe_cluster, &resp);
        return;
    }
    resp.cluster_id = sl_str_c(sl_topics_cluster_id(b->topics));
    resp.controller_id = b->cfg.node_id;
    resp.brokers = sl_arena_calloc(rq->a, 1, sizeof *resp.brokers);
    if (!resp.brokers) return sl_req_fail(rq, "out of memory");
    resp.brokers_count = 1;
    const sl_listener_spec *ep = &b->adv[0];
    const char *ln = sl_conn_listener(rq->conn);
    for (int i = 0; i < b->nadv; i++)
        if (!strcmp(b->adv[i].name, ln)) ep = &b->adv[i];
    sl_describe_cluster_resp_broker_init(&resp.brokers[0]);
    resp.brokers[0].broker_id = b->cfg.node_id;
    resp.brokers[0].host = sl_str_c(ep->host);
    resp.brokers[0].port = ep->port;
    if (req.include_cluster_authorized_operations)
        resp.cluster_authorized_operations =
            sl_req_ops(rq, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
    SL_RESPOND(rq, describe_cluster, &resp);
}

/* AlterConfigs (non-incremental): the configs given become the resource's whole set of
 * overrides; every other override is removed, as Kafka does. */
void sl_h_alter_configs(sl_req *rq) {
    sl_alter_configs_req req = *(const sl_alter_configs_req *)rq->req;
    sl_alter_configs_resp resp;
    sl_alter_configs_resp_init(&resp);
    int32_t n = req.resources_count > 0 ? req.resources_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.responses, resp.responses_count, n))
        return sl_req_fail(rq, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        sl_alter_configs_req_resource *r = &req.resources[i];
        sl_alter_configs_resp_response *o = &resp.responses[i];
        o->resource_type = r->resource_type;
        o->resource_name = r->resource_name;
        o->error_message = SL_STR_NULL;
        /* Reuse the incremental path: DELETE every override, then SET each given key. */
        sl_incremental_alter_configs_req_resource ir = {.resource_type = r->resource_type,
                                                        .resource_name = r->resource_name};
        int32_t extra = r->resource_type == RES_TOPIC ? SL_TCFG__COUNT : 0;
        ir.configs =
            sl_arena_calloc(rq->a, (size_t)(extra + r->configs_count + 1), sizeof *ir.configs);
        if (!ir.configs) return sl_req_fail(rq, "out of memory");
        for (int32_t k = 0; k < extra; k++) {
            ir.configs[ir.configs_count].name = sl_str_c(sl_tcfg_name(k));
            ir.configs[ir.configs_count].config_operation = 1;
            ir.configs[ir.configs_count++].value = SL_STR_NULL;
        }
        for (int32_t k = 0; k < r->configs_count; k++) {
            ir.configs[ir.configs_count].name = r->configs[k].name;
            ir.configs[ir.configs_count].config_operation = 0;
            ir.configs[ir.configs_count++].value = r->configs[k].value;
        }
        sl_str bad = SL_STR_NULL;
        if (r->resource_type == RES_TOPIC)
            o->error_code = alter_topic(rq, &ir, req.validate_only, &bad);
        else if (r->resource_type == RES_BROKER)
            o->error_code = alter_broker(rq, &ir, req.validate_only, &bad);
        else
            o->error_code = SL_KAFKA_INVALID_REQUEST;
    }
    SL_RESPOND(rq, alter_configs, &resp);
}
