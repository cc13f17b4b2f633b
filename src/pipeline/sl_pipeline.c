/* The request pipeline, one stage after another (docs/ARCHITECTURE.md):
 *
 *   frame (src/net) → start → header + version → authenticate → decode → name resources →
 *   authorize → audit gate → protect → execute (backend) → finish (sl_req.c: observers, then the
 * bytes)
 *
 * Each stage either passes the request on or finishes it (answer, error, close) through the
 * one finish path. The stages know nothing of local storage: execution is the backend's
 * (sl_broker_exec: the local broker; sl_gw_exec: `sluice gateway`, forwarding upstream). This
 * is the only place the two modes differ (docs/ARCHITECTURE.md, "Two backends"). */
#include "pipeline/sl_pipeline.h"

#include "acl/sl_authz.h"
#include "audit/sl_audit.h"
#include "auth/sl_auth.h"
#include "base/sl_kerr.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "gateway/sl_gateway.h"
#include "iam/sl_iamstore.h"
#include "net/sl_tls.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"

/* Execute: the backend's function for `key`, NULL when it serves no such API. */
static sl_exec_fn exec_for(const sl_broker *b, int16_t key) {
    return b->gw ? sl_gw_exec(key) : sl_broker_exec(key);
}

/* Header and version: a malformed header or an API or version we do not serve closes the
 * connection (Kafka does not answer what it cannot parse). ApiVersions is the exception: any
 * version is answered, in v0 when unknown, so a client can learn the range. */
static bool stage_header(sl_req *rq, const uint8_t *frame, size_t len) {
    const sl_api_desc *av = sl_api_desc_for(SL_API_API_VERSIONS);
    const sl_api_info *avi = sl_api_desc_info(av);
    /* An ApiVersions request above our range is answered from its first 8 bytes alone: its
     * header layout is whatever the newer version says, which we cannot know. */
    if (len >= 8 && sl_get_be16(frame) == SL_API_API_VERSIONS &&
        ((int16_t)sl_get_be16(frame + 2) > avi->max_version ||
         (int16_t)sl_get_be16(frame + 2) < 0)) {
        rq->api = av;
        rq->h.api_key = SL_API_API_VERSIONS;
        rq->h.api_version = (int16_t)sl_get_be16(frame + 2);
        rq->h.correlation_id = (int32_t)sl_get_be32(frame + 4);
        rq->h.client_id = SL_STR_NULL;
        return true;
    }
    if (sl_req_header_decode(&rq->body, &rq->h) != SL_OK) {
        rq->h.api_key = -1;
        sl_req_fail(rq, "malformed request header");
        return false;
    }
    const sl_api_desc *d = sl_api_desc_for(rq->h.api_key);
    if (!d || !exec_for(rq->b, d->key)) {
        sl_req_fail(rq, "unknown api key");
        return false;
    }
    const sl_api_info *in = sl_api_desc_info(d);
    rq->api = d;
    if ((rq->h.api_version < in->min_version || rq->h.api_version > in->max_version) &&
        d->key != SL_API_API_VERSIONS) {
        sl_req_fail(rq, "unsupported api version");
        return false;
    }
    return true;
}

/* Authenticate: the connection's session decides (sl_h_sasl.c); on success the principal (and
 * an IAM login's identity) is fixed for this request, copied so it outlives the connection if
 * the request does. */
static bool stage_authenticate(sl_req *rq) {
    if (!sl_sasl_authenticate_stage(rq)) return false;
    rq->tls = rq->conn && sl_conn_is_tls(rq->conn);
    const char *pr = sl_session_principal(rq->conn);
    if (pr && !(rq->principal = sl_arena_dup(rq->a, pr, strlen(pr) + 1))) {
        sl_req_fail(rq, "out of memory");
        return false;
    }
    const sl_session *s = pr ? sl_conn_data(rq->conn) : NULL;
    if (s && s->iam && !(rq->iam = sl_arena_dup(rq->a, s->iam, sizeof *s->iam))) {
        sl_req_fail(rq, "out of memory");
        return false;
    }
    return true;
}

/* Decode: the generated codec, bounded and allocation-checked; malformed bodies close. */
static bool stage_decode(sl_req *rq) {
    const sl_api_desc *d = rq->api;
    if (!d->decode) return true;
    rq->req = sl_arena_calloc(rq->a, 1, d->req_size);
    if (!rq->req) {
        sl_req_fail(rq, "out of memory");
        return false;
    }
    if (d->decode(&rq->body, rq->a, rq->h.api_version, rq->req) != SL_OK) {
        sl_req_fail(rq, "malformed request");
        return false;
    }
    return true;
}

/* Authorize: the descriptor names the request's resources, the stage decides each once. The
 * authorizer first picks up changes another writer (`sluice acl`) made to the ACL file, so
 * they apply from the next request on existing connections too. */
static void stage_authorize(sl_req *rq) {
    sl_broker *b = rq->b;
    if (rq->api->resources) rq->api->resources(rq, &b->catalog);
    if (b->authz) (void)sl_authorizer_refresh(b->authz, false);
    sl_authorize_stage(rq, b->authz);
}

/* Audit gate (docs/audit.md, "Failure policy"): with sluice.audit.failure.policy=block, while
 * the trail cannot record events, requests whose execution must be audited (Produce, Fetch,
 * the management APIs) are refused instead of executed, so nothing happens that the trail
 * would miss. The refusal is a small answer per API with KAFKA_STORAGE_ERROR (56, retriable)
 * on every partition or resource the request named: clients back off and retry, and nothing
 * in the handlers changes. (Reusing the authorization decisions instead would answer
 * *_AUTHORIZATION_FAILED, which clients do not retry.) The refusal finishes through the one
 * finish path, so the refused request still reaches the trail: recorded if the queue has room,
 * counted as dropped if not. */
#define GATE_ERR SL_KAFKA_KAFKA_STORAGE_ERROR

static void gate_produce(sl_req *rq) {
    const sl_produce_req *req = rq->req;
    if (req->acks == 0) {
        /* No answer can carry the error: as for any failed acks=0 produce, the connection is
         * closed, so the client learns its records were not stored. */
        sl_req_fail(rq, "audit trail cannot record (sluice.audit.failure.policy=block)");
        return;
    }
    sl_produce_resp resp;
    sl_produce_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req->topic_data, req->topic_data_count, partition_data_count,
                        resp.responses, resp.responses_count, partition_responses,
                        partition_responses_count)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int32_t i = 0; i < resp.responses_count; i++) {
        resp.responses[i].name = req->topic_data[i].name;
        for (int32_t j = 0; j < resp.responses[i].partition_responses_count; j++) {
            sl_produce_resp_partition *o = &resp.responses[i].partition_responses[j];
            sl_produce_resp_partition_init(o);
            o->index = req->topic_data[i].partition_data[j].index;
            o->error_code = GATE_ERR;
        }
    }
    SL_RESPOND(rq, produce, &resp);
}

static void gate_fetch(sl_req *rq) {
    const sl_fetch_req *req = rq->req;
    sl_fetch_resp resp;
    sl_fetch_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req->topics, req->topics_count, partitions_count, resp.responses,
                        resp.responses_count, partitions, partitions_count)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int32_t i = 0; i < resp.responses_count; i++) {
        resp.responses[i].topic = req->topics[i].topic;
        resp.responses[i].topic_id = req->topics[i].topic_id;
        for (int32_t j = 0; j < resp.responses[i].partitions_count; j++) {
            sl_fetch_resp_partition *o = &resp.responses[i].partitions[j];
            sl_fetch_resp_partition_init(o);
            o->partition_index = req->topics[i].partitions[j].partition;
            o->high_watermark = -1;
            o->error_code = GATE_ERR;
        }
    }
    SL_RESPOND(rq, fetch, &resp);
}

/* Management APIs answer one result per item of one request array: `items` named `field` in
 * the response, filled by `fill(out_item, in_item)`. */
#define GATE_ITEMS(rq, name, rarr, rcount, oarr, ocount, fill)                                     \
    do {                                                                                           \
        const sl_##name##_req *req_ = (rq)->req;                                                   \
        sl_##name##_resp resp_;                                                                    \
        sl_##name##_resp_init(&resp_);                                                             \
        if (!SL_RESP_ARRAY((rq), resp_.oarr, resp_.ocount, req_->rcount)) {                        \
            sl_req_fail((rq), "out of memory");                                                    \
            return;                                                                                \
        }                                                                                          \
        for (int32_t i_ = 0; i_ < resp_.ocount; i_++) {                                            \
            __typeof__(resp_.oarr) o_ = &resp_.oarr[i_];                                           \
            __typeof__(req_->rarr) r_ = &req_->rarr[i_];                                           \
            (void)r_;                                                                              \
            o_->error_code = GATE_ERR;                                                             \
            fill;                                                                                  \
        }                                                                                          \
        SL_RESPOND((rq), name, &resp_);                                                            \
    } while (0)

static void gate_create_topics(sl_req *rq) {
    GATE_ITEMS(rq, create_topics, topics, topics_count, topics, topics_count, {
        o_->name = r_->name;
        o_->num_partitions = -1;
        o_->replication_factor = -1;
        o_->configs_count = -1;
    });
}
static void gate_delete_topics(sl_req *rq) {
    const sl_delete_topics_req *req = rq->req;
    if (req->topic_names_count > 0) {
        GATE_ITEMS(rq, delete_topics, topic_names, topic_names_count, responses, responses_count,
                   o_->name = *r_);
    } else {
        GATE_ITEMS(rq, delete_topics, topics, topics_count, responses, responses_count, {
            o_->name = r_->name;
            o_->topic_id = r_->topic_id;
        });
    }
}
static void gate_create_partitions(sl_req *rq) {
    GATE_ITEMS(rq, create_partitions, topics, topics_count, results, results_count,
               o_->name = r_->name);
}
static void gate_alter_configs(sl_req *rq) {
    GATE_ITEMS(rq, alter_configs, resources, resources_count, responses, responses_count, {
        o_->resource_type = r_->resource_type;
        o_->resource_name = r_->resource_name;
    });
}
static void gate_incremental_alter_configs(sl_req *rq) {
    GATE_ITEMS(rq, incremental_alter_configs, resources, resources_count, responses,
               responses_count, {
                   o_->resource_type = r_->resource_type;
                   o_->resource_name = r_->resource_name;
               });
}
static void gate_create_acls(sl_req *rq) {
    GATE_ITEMS(rq, create_acls, creations, creations_count, results, results_count, (void)0);
}
static void gate_delete_acls(sl_req *rq) {
    GATE_ITEMS(rq, delete_acls, filters, filters_count, filter_results, filter_results_count,
               o_->matching_acls_count = 0);
}
static void gate_delete_groups(sl_req *rq) {
    GATE_ITEMS(rq, delete_groups, groups_names, groups_names_count, results, results_count,
               o_->group_id = *r_);
}
static void gate_alter_user_scram_credentials(sl_req *rq) {
    /* One result per user named, deletions then upsertions (Kafka answers per user). */
    const sl_alter_user_scram_credentials_req *req = rq->req;
    sl_alter_user_scram_credentials_resp resp;
    sl_alter_user_scram_credentials_resp_init(&resp);
    int32_t nd = req->deletions_count > 0 ? req->deletions_count : 0;
    int32_t nu = req->upsertions_count > 0 ? req->upsertions_count : 0;
    if (!SL_RESP_ARRAY(rq, resp.results, resp.results_count, nd + nu)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int32_t i = 0; i < nd + nu; i++) {
        resp.results[i].user = i < nd ? req->deletions[i].name : req->upsertions[i - nd].name;
        resp.results[i].error_code = GATE_ERR;
    }
    SL_RESPOND(rq, alter_user_scram_credentials, &resp);
}
static void gate_delete_records(sl_req *rq) {
    const sl_delete_records_req *req = rq->req;
    sl_delete_records_resp resp;
    sl_delete_records_resp_init(&resp);
    if (!SL_RESP_MIRROR(rq, req->topics, req->topics_count, partitions_count, resp.topics,
                        resp.topics_count, partitions, partitions_count)) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int32_t i = 0; i < resp.topics_count; i++) {
        resp.topics[i].name = req->topics[i].name;
        for (int32_t j = 0; j < resp.topics[i].partitions_count; j++) {
            resp.topics[i].partitions[j].partition_index =
                req->topics[i].partitions[j].partition_index;
            resp.topics[i].partitions[j].low_watermark = -1;
            resp.topics[i].partitions[j].error_code = GATE_ERR;
        }
    }
    SL_RESPOND(rq, delete_records, &resp);
}
static void gate_offset_delete(sl_req *rq) {
    /* OffsetDelete answers its group-level error first: the whole request is refused there. */
    sl_offset_delete_resp resp;
    sl_offset_delete_resp_init(&resp);
    resp.error_code = GATE_ERR;
    resp.topics_count = 0;
    SL_RESPOND(rq, offset_delete, &resp);
}

/* The refusal answer of an audited API; NULL: not audited (it executes whatever the trail's
 * state, like metadata and group coordination). */
static void (*gate_for(int16_t key))(sl_req *) {
    switch (key) {
    case SL_API_PRODUCE:
        return gate_produce;
    case SL_API_FETCH:
        return gate_fetch;
    case SL_API_CREATE_TOPICS:
        return gate_create_topics;
    case SL_API_DELETE_TOPICS:
        return gate_delete_topics;
    case SL_API_CREATE_PARTITIONS:
        return gate_create_partitions;
    case SL_API_ALTER_CONFIGS:
        return gate_alter_configs;
    case SL_API_INCREMENTAL_ALTER_CONFIGS:
        return gate_incremental_alter_configs;
    case SL_API_CREATE_ACLS:
        return gate_create_acls;
    case SL_API_DELETE_ACLS:
        return gate_delete_acls;
    case SL_API_ALTER_USER_SCRAM_CREDENTIALS:
        return gate_alter_user_scram_credentials;
    case SL_API_DELETE_GROUPS:
        return gate_delete_groups;
    case SL_API_DELETE_RECORDS:
        return gate_delete_records;
    case SL_API_OFFSET_DELETE:
        return gate_offset_delete;
    default:
        return NULL;
    }
}

/* True when the request may execute; otherwise it has been answered with the refusal. */
static bool stage_audit_gate(sl_req *rq) {
    if (sl_audit_accepting(rq->b->audit)) return true;
    void (*refuse)(sl_req *) = gate_for(rq->h.api_key);
    if (!refuse || !rq->req) return true;
    sl_audit_count_refused(rq->b->audit);
    rq->error = GATE_ERR;
    refuse(rq);
    return false;
}

void sl_pipeline_on_request(void *app, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *frame,
                            size_t len) {
    sl_broker *b = app;
    sl_req *rq = sl_req_start(b, c, p, a, frame, len);
    if (!rq) {
        sl_conn_close(c, false, "out of memory");
        sl_pending_noreply(p);
        return;
    }
    /* After SaslHandshake v0 the next frames are bare SASL tokens without a Kafka header. */
    if (sl_sasl_raw_frame(rq, frame, len)) return;
    if (!stage_header(rq, frame, len)) return;
    if (!stage_authenticate(rq)) return;
    if (!stage_decode(rq)) return;
    stage_authorize(rq);
    if (!stage_audit_gate(rq)) return;
    /* Protect: record transforms run per partition inside produce and fetch execution
     * (proto/sl_xform), where record sets are at hand. */
    exec_for(b, rq->h.api_key)(rq);
}
