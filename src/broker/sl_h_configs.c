/* DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and the broker, plus
 * DescribeCluster: authorization answers and response shapes here, the configs themselves from
 * the metadata seam (pipeline/sl_backend.h). */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

enum { RES_TOPIC = 2, RES_BROKER = 4 };
static bool key_requested(void *arg, const char *name) {
    const sl_describe_configs_req_resource *r = arg;
    if (r->configuration_keys_count < 0) return true;
    for (int32_t i = 0; i < r->configuration_keys_count; i++)
        if (sl_str_eqc(r->configuration_keys[i], name)) return true;
    return false;
}

/* Copies the backend's descriptions into the answer (their strings are in the request arena or
 * static already). */
static void fill_configs(sl_req *rq, sl_describe_configs_resp_result *o, const sl_config_desc *d,
                         int32_t n, bool synonyms) {
    o->configs = sl_arena_calloc(rq->a, (size_t)(n ? n : 1), sizeof *o->configs);
    if (!o->configs) return;
    for (int32_t i = 0; i < n; i++) {
        sl_describe_configs_resp_config *c = &o->configs[o->configs_count++];
        sl_describe_configs_resp_config_init(c);
        c->name = d[i].name;
        c->value = d[i].value;
        c->read_only = d[i].read_only;
        c->is_default = d[i].is_default;
        c->config_source = d[i].source;
        c->is_sensitive = d[i].is_sensitive;
        c->config_type = d[i].type;
        /* Null until asked for, as Kafka answers; the schema default is an empty string. */
        c->documentation = d[i].doc ? sl_str_c(d[i].doc) : SL_STR_NULL;
        if (!synonyms) continue;
        c->synonyms = sl_arena_calloc(rq->a, 2, sizeof *c->synonyms);
        if (!c->synonyms) continue;
        for (int32_t k = 0; k < d[i].nsynonyms && k < 2; k++) {
            c->synonyms[k].name = d[i].synonyms[k].name;
            c->synonyms[k].value = d[i].synonyms[k].value;
            c->synonyms[k].source = d[i].synonyms[k].source;
            c->synonyms_count++;
        }
    }
}

static void describe_topic(sl_req *rq, sl_describe_configs_req_resource *r,
                           sl_describe_configs_resp_result *o, bool synonyms) {
    if (!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_RES_TOPIC, r->resource_name)) {
        o->error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        return;
    }
    sl_config_desc *d = NULL;
    int32_t n = 0;
    o->error_code = sl_meta_topic_configs(&rq->b->meta, r->resource_name, key_requested, r,
                                          synonyms, rq->a, &d, &n);
    if (!o->error_code) fill_configs(rq, o, d, n, synonyms);
}

static void describe_broker(sl_req *rq, sl_describe_configs_req_resource *r,
                            sl_describe_configs_resp_result *o, bool docs) {
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_DESCRIBE_CONFIGS)) {
        o->error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        return;
    }
    sl_config_desc *d = NULL;
    int32_t n = 0;
    o->error_code = sl_meta_broker_configs(&rq->b->meta, r->resource_name, key_requested, r, docs,
                                           rq->a, &d, &n, &o->error_message);
    if (!o->error_code) fill_configs(rq, o, d, n, false);
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
            describe_topic(rq, r, o, v >= 1 && req.include_synonyms);
        else if (r->resource_type == RES_BROKER)
            describe_broker(rq, r, o, v >= 3 && req.include_documentation);
        else
            o->error_code = SL_KAFKA_INVALID_REQUEST;
    }
    SL_RESPOND(rq, describe_configs, &resp);
}

static int16_t alter_topic(sl_req *rq, sl_str name, const sl_config_alter *c, int32_t n,
                           bool replace, bool validate_only, sl_str *bad) {
    if (!sl_req_allowed(rq, SL_ACL_OP_ALTER_CONFIGS, SL_ACL_RES_TOPIC, name))
        return SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    return sl_meta_alter_topic_configs(&rq->b->meta, name, c, n, replace, validate_only, bad);
}

static int16_t alter_broker(sl_req *rq, sl_str name, const sl_config_alter *c, int32_t n,
                            bool validate_only, sl_str *bad) {
    if (!sl_req_allowed_cluster(rq, SL_ACL_OP_ALTER_CONFIGS))
        return SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    return sl_meta_alter_broker_configs(&rq->b->meta, name, c, n, validate_only, bad);
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
        int32_t nc = r->configs_count > 0 ? r->configs_count : 0;
        sl_config_alter *ca = sl_arena_calloc(rq->a, (size_t)(nc ? nc : 1), sizeof *ca);
        if (!ca) return sl_req_fail(rq, "out of memory");
        for (int32_t k = 0; k < nc; k++)
            ca[k] = (sl_config_alter){r->configs[k].name, r->configs[k].value,
                                      (int8_t)r->configs[k].config_operation};
        sl_str bad = SL_STR_NULL;
        if (r->resource_type == RES_TOPIC)
            o->error_code =
                alter_topic(rq, r->resource_name, ca, nc, false, req.validate_only, &bad);
        else if (r->resource_type == RES_BROKER)
            o->error_code = alter_broker(rq, r->resource_name, ca, nc, req.validate_only, &bad);
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
    resp.cluster_id = sl_str_c(sl_meta_cluster_id(&b->meta));
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
        /* The incremental path with every given key SET, replacing the other overrides. */
        int32_t nc = r->configs_count > 0 ? r->configs_count : 0;
        sl_config_alter *ca = sl_arena_calloc(rq->a, (size_t)(nc ? nc : 1), sizeof *ca);
        if (!ca) return sl_req_fail(rq, "out of memory");
        for (int32_t k = 0; k < nc; k++)
            ca[k] = (sl_config_alter){r->configs[k].name, r->configs[k].value, 0};
        sl_str bad = SL_STR_NULL;
        if (r->resource_type == RES_TOPIC)
            o->error_code =
                alter_topic(rq, r->resource_name, ca, nc, true, req.validate_only, &bad);
        else if (r->resource_type == RES_BROKER)
            o->error_code = alter_broker(rq, r->resource_name, ca, nc, req.validate_only, &bad);
        else
            o->error_code = SL_KAFKA_INVALID_REQUEST;
    }
    SL_RESPOND(rq, alter_configs, &resp);
}
