/* The authorization stage driven through the API descriptors: for every API the pipeline
 * serves, a representative request names exactly the resources and operations Kafka checks
 * (the table below), each allowed when the caller holds the ACL and denied when not. The rows
 * mirror what tests/interop/test_acl.py shows with real clients; the coverage check makes a new
 * API without a row (so, without authorization) fail here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "broker/sl_broker.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "sl_test.h"

/* ---- a catalog with topics t and u (t has id 1), group g with offsets for t ---- */

static const sl_uuid k_tid = {{1}};

static bool c_topic_name(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name) {
    if (memcmp(id, &k_tid, sizeof *id)) return false;
    *name = sl_str_c("t"); /* a literal outlives any arena */
    return true;
}
static bool c_topic_exists(void *ctx, sl_str name) {
    return sl_str_eqc(name, "t") || sl_str_eqc(name, "u");
}
static bool c_auto_create(void *ctx) { return true; }
static void c_each_topic(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    fn(arg, sl_str_c("t"));
    fn(arg, sl_str_c("u"));
}
static void c_each_group(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    fn(arg, sl_str_c("g"));
}
static void c_each_committed(void *ctx, sl_str group, void (*fn)(void *, sl_str), void *arg) {
    if (sl_str_eqc(group, "g")) fn(arg, sl_str_c("t"));
}
static void c_each_txn(void *ctx, void (*fn)(void *, sl_str), void *arg) { fn(arg, sl_str_c("x")); }
static const sl_catalog k_cat = {NULL,         c_topic_name, c_topic_exists,   c_auto_create,
                                 c_each_topic, c_each_group, c_each_committed, c_each_txn};

/* ---- representative requests ---- */

#define S(x) sl_str_c(x)
static sl_str k_t = {"t", 1}, k_n = {"new", 3}, k_g = {"g", 1};

static sl_produce_req_topic produce_topics[] = {{.name = {"t", 1}}};
static sl_produce_req r_produce = {
    .transactional_id = {"x", 1}, .acks = 1, .topic_data = produce_topics, .topic_data_count = 1};
static sl_produce_req r_produce_idem = {.transactional_id = {NULL, -1},
                                        .acks = -1,
                                        .topic_data = produce_topics,
                                        .topic_data_count = 1};
static sl_fetch_req_topic fetch_topics[] = {{.topic = {"t", 1}}};
static sl_fetch_req r_fetch = {.topics = fetch_topics, .topics_count = 1};
static sl_fetch_req_topic fetch_ids[] = {{.topic_id = {{1}}}, {.topic_id = {{9}}}};
static sl_fetch_req r_fetch_ids = {.topics = fetch_ids, .topics_count = 2};
static sl_list_offsets_req_topic lo_topics[] = {{.name = {"t", 1}}};
static sl_list_offsets_req r_list_offsets = {.topics = lo_topics, .topics_count = 1};
static sl_metadata_req_topic md_topics[] = {{.name = {"t", 1}}, {.name = {"new", 3}}};
static sl_metadata_req r_metadata = {
    .topics = md_topics, .topics_count = 2, .allow_auto_topic_creation = true};
static sl_metadata_req r_metadata_all = {.topics_count = -1,
                                         .include_topic_authorized_operations = true};
static sl_offset_commit_req_topic oc_topics[] = {{.name = {"t", 1}}};
static sl_offset_commit_req r_offset_commit = {
    .group_id = {"g", 1}, .topics = oc_topics, .topics_count = 1};
static sl_offset_fetch_req_group_topic of_topics[] = {{.name = {"t", 1}}};
static sl_offset_fetch_req_group of_groups[] = {
    {.group_id = {"g", 1}, .topics = of_topics, .topics_count = 1}};
static sl_offset_fetch_req r_offset_fetch = {.groups = of_groups, .groups_count = 1};
static sl_offset_fetch_req r_offset_fetch_all_v7 = {.group_id = {"g", 1}, .topics_count = -1};
static sl_str fc_keys[] = {{"g", 1}};
static sl_find_coordinator_req r_find_coordinator = {
    .key_type = 0, .coordinator_keys = fc_keys, .coordinator_keys_count = 1};
static sl_find_coordinator_req r_find_txn_coordinator = {.key = {"x", 1}, .key_type = 1};
static sl_join_group_req r_join = {.group_id = {"g", 1}};
static sl_heartbeat_req r_heartbeat = {.group_id = {"g", 1}};
static sl_leave_group_req r_leave = {.group_id = {"g", 1}};
static sl_sync_group_req r_sync = {.group_id = {"g", 1}};
static sl_str dg_groups[] = {{"g", 1}};
static sl_describe_groups_req r_describe_groups = {.groups = dg_groups, .groups_count = 1};
static sl_list_groups_req r_list_groups = {.states_filter_count = -1, .types_filter_count = -1};
static sl_create_topics_req_topic ct_topics[] = {{.name = {"new", 3}, .num_partitions = 1}};
static sl_create_topics_req r_create_topics = {.topics = ct_topics, .topics_count = 1};
static sl_delete_topics_req_topic dt_topics[] = {{.name = {NULL, -1}, .topic_id = {{1}}}};
static sl_delete_topics_req r_delete_topics = {.topics = dt_topics, .topics_count = 1};
static sl_str dt_names[] = {{"t", 1}};
static sl_delete_topics_req r_delete_topics_v5 = {.topic_names = dt_names, .topic_names_count = 1};
static sl_delete_records_req_topic dr_topics[] = {{.name = {"t", 1}}};
static sl_delete_records_req r_delete_records = {.topics = dr_topics, .topics_count = 1};
static sl_init_producer_id_req r_init_pid = {.transactional_id = {NULL, -1}, .producer_id = -1};
static sl_init_producer_id_req r_init_pid_txn = {.transactional_id = {"x", 1}};
static sl_offset_for_leader_epoch_req_topic ofle_topics[] = {{.topic = {"t", 1}}};
static sl_offset_for_leader_epoch_req r_ofle = {.topics = ofle_topics, .topics_count = 1};
static sl_describe_acls_req r_describe_acls;
static sl_create_acls_req r_create_acls;
static sl_delete_acls_req r_delete_acls;
static sl_describe_configs_req_resource dc_res[] = {
    {.resource_type = 2, .resource_name = {"t", 1}},
    {.resource_type = 4, .resource_name = {"1", 1}}};
static sl_describe_configs_req r_describe_configs = {.resources = dc_res, .resources_count = 2};
static sl_alter_configs_req_resource ac_res[] = {{.resource_type = 2, .resource_name = {"t", 1}},
                                                 {.resource_type = 4, .resource_name = {"1", 1}}};
static sl_alter_configs_req r_alter_configs = {.resources = ac_res, .resources_count = 2};
static sl_incremental_alter_configs_req_resource iac_res[] = {
    {.resource_type = 2, .resource_name = {"t", 1}}};
static sl_incremental_alter_configs_req r_inc_alter_configs = {.resources = iac_res,
                                                               .resources_count = 1};
static sl_create_partitions_req_topic cp_topics[] = {{.name = {"t", 1}, .count = 3}};
static sl_create_partitions_req r_create_partitions = {.topics = cp_topics, .topics_count = 1};
static sl_str dg_names[] = {{"g", 1}};
static sl_delete_groups_req r_delete_groups = {.groups_names = dg_names, .groups_names_count = 1};
static sl_offset_delete_req_topic od_topics[] = {{.name = {"t", 1}}};
static sl_offset_delete_req r_offset_delete = {
    .group_id = {"g", 1}, .topics = od_topics, .topics_count = 1};
static sl_describe_user_scram_credentials_req r_describe_scram;
static sl_alter_user_scram_credentials_req r_alter_scram;
static sl_describe_cluster_req r_describe_cluster = {.include_cluster_authorized_operations = true};
static int32_t apt_idx[] = {0, 1};
static sl_add_partitions_to_txn_req_topic apt_topics[] = {
    {.name = {"t", 1}, .partitions = apt_idx, .partitions_count = 2}, {.name = {"u", 1}}};
static sl_add_partitions_to_txn_req r_add_partitions_to_txn = {
    .transactional_id = {"x", 1}, .topics = apt_topics, .topics_count = 2};
static sl_add_partitions_to_txn_req_txn_topic apt4_topics[] = {{.name = {"t", 1}}};
static sl_add_partitions_to_txn_req_transaction apt4_txns[] = {
    {.transactional_id = {"x", 1}, .topics = apt4_topics, .topics_count = 1}};
static sl_add_partitions_to_txn_req r_add_partitions_to_txn_v4 = {.transactions = apt4_txns,
                                                                  .transactions_count = 1};
static sl_describe_producers_req_topic dp_topics[] = {{.name = {"t", 1}}, {.name = {"u", 1}}};
static sl_describe_producers_req r_describe_producers = {.topics = dp_topics, .topics_count = 2};
static sl_add_offsets_to_txn_req r_add_offsets_to_txn = {.transactional_id = {"x", 1},
                                                         .group_id = {"g", 1}};
static sl_end_txn_req r_end_txn = {.transactional_id = {"x", 1}, .committed = true};
static sl_str dtx_ids[] = {{"x", 1}};
static sl_describe_transactions_req r_describe_transactions = {.transactional_ids = dtx_ids,
                                                               .transactional_ids_count = 1};
static sl_list_transactions_req r_list_transactions = {
    .state_filters_count = -1, .producer_id_filters_count = -1, .duration_filter = -1};
static sl_txn_offset_commit_req_topic toc_topics[] = {{.name = {"t", 1}}};
static sl_txn_offset_commit_req r_txn_offset_commit = {
    .transactional_id = {"x", 1}, .group_id = {"g", 1}, .topics = toc_topics, .topics_count = 1};

/* ---- the table ---- */

enum {
    T = SL_ACL_RES_TOPIC,
    G = SL_ACL_RES_GROUP,
    C = SL_ACL_RES_CLUSTER,
    X = SL_ACL_RES_TRANSACTIONAL_ID
};
typedef struct want {
    int rtype, op;
    const char *name; /* NULL: the cluster; "" with any: any resource of the type */
    unsigned flags;   /* SL_AZ_QUIET / SL_AZ_ANY / SL_AZ_OPS as named */
    bool alt;         /* named as the alternative of an earlier one */
} want;
#define W(rt, op, name)                                                                            \
    { rt, SL_ACL_OP_##op, name, 0, false }
#define WQ(rt, op, name)                                                                           \
    { rt, SL_ACL_OP_##op, name, SL_AZ_QUIET, false }
#define WALT(rt, op, name, fl)                                                                     \
    { rt, SL_ACL_OP_##op, name, fl, true }
#define WOPS(rt, name)                                                                             \
    { rt, SL_ACL_OP_ALL, name, SL_AZ_OPS | SL_AZ_QUIET, false }

typedef struct row {
    int16_t key, version;
    const void *req;
    want w[4];
    int nw;
} row;

static const row k_rows[] = {
    {SL_API_PRODUCE, 9, &r_produce, {W(X, WRITE, "x"), W(T, WRITE, "t")}, 2},
    {SL_API_PRODUCE, 9, &r_produce_idem, {W(T, WRITE, "t")}, 1},
    {SL_API_FETCH, 11, &r_fetch, {W(T, READ, "t")}, 1},
    {SL_API_FETCH, 13, &r_fetch_ids, {W(T, READ, "t")}, 1}, /* unknown id: not named */
    {SL_API_LIST_OFFSETS, 7, &r_list_offsets, {W(T, DESCRIBE, "t")}, 1},
    {SL_API_METADATA,
     12,
     &r_metadata,
     {W(T, DESCRIBE, "t"), W(T, DESCRIBE, "new"), WQ(C, CREATE, NULL), WALT(T, CREATE, "new", 0)},
     4},
    {SL_API_METADATA,
     12,
     &r_metadata_all,
     {WQ(T, DESCRIBE, "t"), WOPS(T, "t"), WQ(T, DESCRIBE, "u"), WOPS(T, "u")},
     4},
    {SL_API_OFFSET_COMMIT, 8, &r_offset_commit, {W(G, READ, "g"), W(T, READ, "t")}, 2},
    {SL_API_OFFSET_FETCH, 8, &r_offset_fetch, {W(G, DESCRIBE, "g"), W(T, DESCRIBE, "t")}, 2},
    {SL_API_OFFSET_FETCH,
     7,
     &r_offset_fetch_all_v7,
     {W(G, DESCRIBE, "g"), WQ(T, DESCRIBE, "t")},
     2},
    {SL_API_FIND_COORDINATOR, 4, &r_find_coordinator, {W(G, DESCRIBE, "g")}, 1},
    {SL_API_FIND_COORDINATOR, 3, &r_find_txn_coordinator, {W(X, DESCRIBE, "x")}, 1},
    {SL_API_JOIN_GROUP, 9, &r_join, {W(G, READ, "g")}, 1},
    {SL_API_HEARTBEAT, 4, &r_heartbeat, {W(G, READ, "g")}, 1},
    {SL_API_LEAVE_GROUP, 5, &r_leave, {W(G, READ, "g")}, 1},
    {SL_API_SYNC_GROUP, 5, &r_sync, {W(G, READ, "g")}, 1},
    {SL_API_DESCRIBE_GROUPS, 5, &r_describe_groups, {W(G, DESCRIBE, "g")}, 1},
    {SL_API_LIST_GROUPS,
     4,
     &r_list_groups,
     {WQ(C, DESCRIBE, NULL), WALT(G, DESCRIBE, "g", SL_AZ_QUIET)},
     2},
    {SL_API_CREATE_TOPICS,
     7,
     &r_create_topics,
     {WQ(C, CREATE, NULL), WALT(T, CREATE, "new", 0)},
     2},
    {SL_API_DELETE_TOPICS, 6, &r_delete_topics, {W(T, DELETE, "t")}, 1},
    {SL_API_DELETE_TOPICS, 5, &r_delete_topics_v5, {W(T, DELETE, "t")}, 1},
    {SL_API_DELETE_RECORDS, 2, &r_delete_records, {W(T, DELETE, "t")}, 1},
    {SL_API_INIT_PRODUCER_ID,
     4,
     &r_init_pid,
     {WQ(C, IDEMPOTENT_WRITE, NULL), WALT(T, WRITE, "", SL_AZ_ANY)},
     2},
    {SL_API_INIT_PRODUCER_ID, 4, &r_init_pid_txn, {W(X, WRITE, "x")}, 1},
    {SL_API_OFFSET_FOR_LEADER_EPOCH, 4, &r_ofle, {W(T, DESCRIBE, "t")}, 1},
    {SL_API_DESCRIBE_ACLS, 3, &r_describe_acls, {W(C, DESCRIBE, NULL)}, 1},
    {SL_API_CREATE_ACLS, 3, &r_create_acls, {W(C, ALTER, NULL)}, 1},
    {SL_API_DELETE_ACLS, 3, &r_delete_acls, {W(C, ALTER, NULL)}, 1},
    {SL_API_DESCRIBE_CONFIGS,
     4,
     &r_describe_configs,
     {W(T, DESCRIBE_CONFIGS, "t"), W(C, DESCRIBE_CONFIGS, NULL)},
     2},
    {SL_API_ALTER_CONFIGS,
     2,
     &r_alter_configs,
     {W(T, ALTER_CONFIGS, "t"), W(C, ALTER_CONFIGS, NULL)},
     2},
    {SL_API_INCREMENTAL_ALTER_CONFIGS, 1, &r_inc_alter_configs, {W(T, ALTER_CONFIGS, "t")}, 1},
    {SL_API_CREATE_PARTITIONS, 3, &r_create_partitions, {W(T, ALTER, "t")}, 1},
    {SL_API_DELETE_GROUPS, 2, &r_delete_groups, {W(G, DELETE, "g")}, 1},
    {SL_API_OFFSET_DELETE, 0, &r_offset_delete, {W(G, DELETE, "g"), W(T, READ, "t")}, 2},
    {SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS, 0, &r_describe_scram, {W(C, DESCRIBE, NULL)}, 1},
    {SL_API_ALTER_USER_SCRAM_CREDENTIALS, 0, &r_alter_scram, {W(C, ALTER, NULL)}, 1},
    {SL_API_DESCRIBE_CLUSTER, 1, &r_describe_cluster, {WOPS(C, NULL)}, 1},
    /* Transactions (KafkaApis): WRITE on the transactional id, then the group and topics. */
    {SL_API_ADD_PARTITIONS_TO_TXN,
     3,
     &r_add_partitions_to_txn,
     {W(X, WRITE, "x"), W(T, WRITE, "t"), W(T, WRITE, "u")},
     3},
    /* v4 comes from brokers: CLUSTER_ACTION only, no transactional id or topic. */
    {SL_API_ADD_PARTITIONS_TO_TXN, 4, &r_add_partitions_to_txn_v4, {W(C, CLUSTER_ACTION, NULL)}, 1},
    {SL_API_ADD_OFFSETS_TO_TXN, 3, &r_add_offsets_to_txn, {W(X, WRITE, "x"), W(G, READ, "g")}, 2},
    {SL_API_END_TXN, 3, &r_end_txn, {W(X, WRITE, "x")}, 1},
    {SL_API_DESCRIBE_TRANSACTIONS, 0, &r_describe_transactions, {W(X, DESCRIBE, "x")}, 1},
    {SL_API_LIST_TRANSACTIONS, 1, &r_list_transactions, {WQ(X, DESCRIBE, "x")}, 1},
    {SL_API_DESCRIBE_PRODUCERS, 0, &r_describe_producers, {W(T, READ, "t"), W(T, READ, "u")}, 2},
    {SL_API_TXN_OFFSET_COMMIT,
     3,
     &r_txn_offset_commit,
     {W(X, WRITE, "x"), W(G, READ, "g"), W(T, READ, "t")},
     3},
};
#define NROWS (sizeof k_rows / sizeof k_rows[0])

/* ---- helpers ---- */

static sl_req *make_req(sl_arena *a, const row *r) {
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    rq->a = a;
    rq->h.api_key = r->key;
    rq->h.api_version = r->version;
    rq->req = (void *)r->req;
    rq->principal = "User:alice";
    rq->peer = "127.0.0.1:5000";
    const sl_api_desc *d = sl_api_desc_for(r->key);
    if (d && d->resources) d->resources(rq, &k_cat);
    return rq;
}

static sl_str want_name(const want *w) {
    return w->name ? sl_str_c(w->name) : sl_str_c(SL_ACL_CLUSTER_NAME);
}

static sl_authorizer *open_with(const char *dir, const char *file, const sl_acl *rules, size_t n) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    sl_authorizer *az = NULL;
    if (sl_authorizer_new(path, "User:admin", false, &az, err, sizeof err)) return NULL;
    sl_acl_set *s = NULL;
    if (n && (sl_acl_set_build(rules, n, &s) || sl_authorizer_replace(az, s))) {
        sl_authorizer_free(az);
        return NULL;
    }
    return az;
}

#define ALLOW_ALL(rt)                                                                              \
    {                                                                                              \
        SL_ACL_RES_##rt, SL_ACL_PAT_LITERAL, SL_ACL_OP_ALL, SL_ACL_PERM_ALLOW, "*", "User:alice",  \
            "*"                                                                                    \
    }
static const sl_acl k_allow_all[] = {
    ALLOW_ALL(TOPIC),
    ALLOW_ALL(GROUP),
    ALLOW_ALL(TRANSACTIONAL_ID),
    {SL_ACL_RES_CLUSTER, SL_ACL_PAT_LITERAL, SL_ACL_OP_ALL, SL_ACL_PERM_ALLOW, "kafka-cluster",
     "User:alice", "*"},
};
/* Someone else's grants: alice holds nothing. */
static const sl_acl k_others[] = {
    {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_ALL, SL_ACL_PERM_ALLOW, "*", "User:bob", "*"},
};

static void tmpdir(char *out, size_t len) {
    snprintf(out, len, "/tmp/sl_authorize_XXXXXX");
    if (!mkdtemp(out)) out[0] = 0;
}

/* ---- tests ---- */

/* Every API the pipeline serves either needs no authorization (ApiVersions and SASL run before
 * there is a principal) or has a row here. */
SL_TEST(authorize_every_api_has_a_row) {
    int missing = 0;
    for (int i = 0; sl_api_desc_at(i); i++) {
        const sl_api_desc *d = sl_api_desc_at(i);
        if (d->flags & SL_API_PREAUTH) {
            if (d->resources) missing++; /* pre-auth APIs cannot name resources */
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < NROWS; k++) found |= k_rows[k].key == d->key;
        if (!found || !d->resources) {
            fprintf(stderr, "  api %d has no authorization row or no resources\n", d->key);
            missing++;
        }
    }
    CHECK_EQ(missing, 0);
}

/* Each row names exactly its wants (type, operation, name, quiet/any/ops, alternative), and
 * every decision follows the ACLs: all allowed for a caller holding everything, all denied
 * (each with its Kafka error) for one holding nothing, and all allowed with no authorizer. */
SL_TEST(authorize_table_every_api_allowed_and_denied) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    CHECK(dir[0]);
    sl_authorizer *all =
        open_with(dir, "all", k_allow_all, sizeof k_allow_all / sizeof *k_allow_all);
    sl_authorizer *none = open_with(dir, "none", k_others, 1);
    CHECK(all && none);
    int bad = 0;
    for (size_t k = 0; k < NROWS; k++) {
        const row *r = &k_rows[k];
        for (int mode = 0; mode < 3; mode++) {
            sl_arena *a = sl_arena_new(4096);
            sl_req *rq = make_req(a, r);
            sl_authorize_stage(rq, mode == 0 ? all : mode == 1 ? none : NULL);
            bool ok = rq->nres == r->nw;
            for (int i = 0; ok && i < r->nw; i++) {
                const want *w = &r->w[i];
                const sl_req_res *got = &rq->res[i];
                sl_str nm = want_name(w);
                ok = got->rtype == w->rtype && got->op == w->op && got->flags == w->flags &&
                     (got->alt >= 0) == w->alt && got->name.len == nm.len &&
                     !memcmp(got->name.p, nm.p, (size_t)nm.len);
                if (!ok) break;
                bool expect = mode != 1;
                if (w->flags & SL_AZ_OPS)
                    ok = (got->ops != 0) == expect;
                else if (w->alt && mode == 0)
                    ok = got->allowed && got->by_alt; /* its alternative already allowed it */
                else
                    ok = got->allowed == expect && (expect || got->error != 0);
            }
            if (!ok) {
                fprintf(stderr, "  api %d v%d mode %d: named %d resources, want %d\n", r->key,
                        r->version, mode, rq->nres, r->nw);
                bad++;
            }
            sl_arena_free(a);
        }
    }
    sl_authorizer_free(all);
    sl_authorizer_free(none);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
    CHECK_EQ(bad, 0);
}

/* Scenarios test_acl.py shows with real clients, at the stage: CREATE on one topic only
 * creates that one; IDEMPOTENT_WRITE is implied by WRITE on some topic; READ on one topic does
 * not read another; a DENY wins over a wildcard ALLOW; a handler asking about a resource its
 * descriptor never named gets a denial. */
SL_TEST(authorize_acl_scenarios) {
    char dir[64];
    tmpdir(dir, sizeof dir);
    CHECK(dir[0]);
    static const sl_acl rules[] = {
        {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_CREATE, SL_ACL_PERM_ALLOW, "new",
         "User:alice", "*"},
        {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_WRITE, SL_ACL_PERM_ALLOW, "t",
         "User:alice", "*"},
        {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_READ, SL_ACL_PERM_ALLOW, "*", "User:alice",
         "*"},
        {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_READ, SL_ACL_PERM_DENY, "t", "User:alice",
         "*"},
        {SL_ACL_RES_GROUP, SL_ACL_PAT_LITERAL, SL_ACL_OP_READ, SL_ACL_PERM_ALLOW, "g", "User:alice",
         "*"},
    };
    sl_authorizer *az = open_with(dir, "acls", rules, sizeof rules / sizeof *rules);
    CHECK(az);
    sl_arena *a = sl_arena_new(4096);
    /* CreateTopics "new": no cluster CREATE, topic CREATE granted. */
    row ct = {SL_API_CREATE_TOPICS, 7, &r_create_topics, {{0}}, 0};
    sl_req *rq = make_req(a, &ct);
    sl_authorize_stage(rq, az);
    bool create_new = sl_req_allowed(rq, SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, k_n);
    bool cluster_create = sl_req_allowed_cluster(rq, SL_ACL_OP_CREATE);
    /* InitProducerId without a transactional id: WRITE on t stands for IDEMPOTENT_WRITE. */
    row ip = {SL_API_INIT_PRODUCER_ID, 4, &r_init_pid, {{0}}, 0};
    rq = make_req(a, &ip);
    sl_authorize_stage(rq, az);
    bool idem = sl_req_allowed_any(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC);
    /* Fetch t: READ on * but DENY on t. */
    row fe = {SL_API_FETCH, 11, &r_fetch, {{0}}, 0};
    rq = make_req(a, &fe);
    sl_authorize_stage(rq, az);
    bool read_t = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, k_t);
    int16_t read_t_err = rq->res[0].error;
    bool unnamed = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, S("u"));
    /* OffsetCommit: group READ granted, topic READ on t denied. */
    row oc = {SL_API_OFFSET_COMMIT, 8, &r_offset_commit, {{0}}, 0};
    rq = make_req(a, &oc);
    sl_authorize_stage(rq, az);
    bool group_ok = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, k_g);
    bool commit_t = sl_req_allowed(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, k_t);
    sl_arena_free(a);
    sl_authorizer_free(az);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
    CHECK(create_new);
    CHECK(!cluster_create);
    CHECK(idem);
    CHECK(!read_t);
    CHECK_EQ(read_t_err, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK(!unnamed);
    CHECK(group_ok);
    CHECK(!commit_t);
}

/* One source for versions: what each descriptor serves is its protocol definition's range, and
 * the codec accepts exactly that range (a default request encodes and decodes at every version
 * in it, and decoding refuses the version above). */
SL_TEST(authorize_descriptor_versions_are_the_codec_range) {
    int bad = 0;
    for (int i = 0; sl_api_desc_at(i); i++) {
        const sl_api_desc *d = sl_api_desc_at(i);
        const sl_api_info *in = sl_api_desc_info(d);
        if (!in || in->min_version < 0 || in->max_version < in->min_version) {
            bad++;
            continue;
        }
        if (!d->decode) continue;
        for (int v = in->min_version; v <= in->max_version + 1; v++) {
            sl_arena *a = sl_arena_new(4096);
            void *zero = sl_arena_calloc(a, 1, d->req_size);
            /* An empty body is valid for no API version here except by accident; what is
             * checked is that an out-of-range version is refused whatever the bytes. */
            uint8_t junk[64] = {0};
            sl_rd r = sl_rd_init(junk, sizeof junk);
            sl_err e = d->decode(&r, a, (int16_t)v, zero);
            if (v > in->max_version && e == SL_OK) {
                fprintf(stderr, "  api %d decodes v%d, above its range\n", d->key, v);
                bad++;
            }
            sl_arena_free(a);
        }
    }
    CHECK_EQ(bad, 0);
}

/* What is advertised, decoded and executed is one set: every descriptor has the local broker's
 * execution function, and the broker executes no API without a descriptor. */
SL_TEST(authorize_descriptors_and_execution_are_one_set) {
    int bad = 0;
    for (int16_t key = -1; key < 200; key++) {
        bool desc = sl_api_desc_for(key) != NULL, exec = sl_broker_exec(key) != NULL;
        bool defined = sl_api_lookup(key) != NULL;
        if (desc != exec || (desc && !defined)) {
            fprintf(stderr, "  api %d: descriptor %d, executed %d, defined %d\n", key, desc, exec,
                    defined);
            bad++;
        }
    }
    CHECK_EQ(bad, 0);
}

/* The topic x partition response mirrors the request: one response topic per request topic,
 * each with as many zeroed partitions as its request topic has (a null count gives none). */
SL_TEST(pipeline_resp_mirror_shapes_the_response_like_the_request) {
    sl_arena *a = sl_arena_new(4096);
    sl_req rq = {.a = a};
    sl_produce_req_partition parts[3] = {{0}};
    sl_produce_req_topic topics[3] = {{.partition_data = parts, .partition_data_count = 3},
                                      {.partition_data_count = -1},
                                      {.partition_data = parts, .partition_data_count = 1}};
    sl_produce_resp resp = {0};
    bool ok = SL_RESP_MIRROR(&rq, topics, 3, partition_data_count, resp.responses,
                             resp.responses_count, partition_responses, partition_responses_count);
    int32_t n = resp.responses_count;
    int32_t c0 = n == 3 ? resp.responses[0].partition_responses_count : -9;
    int32_t c1 = n == 3 ? resp.responses[1].partition_responses_count : -9;
    int32_t c2 = n == 3 ? resp.responses[2].partition_responses_count : -9;
    bool zeroed = n == 3 && resp.responses[0].partition_responses[2].base_offset == 0 &&
                  resp.responses[0].name.p == NULL;
    sl_produce_resp none = {0};
    bool ok2 = SL_RESP_MIRROR(&rq, topics, -1, partition_data_count, none.responses,
                              none.responses_count, partition_responses, partition_responses_count);
    sl_arena_free(a);
    CHECK(ok && ok2);
    CHECK_EQ(n, 3);
    CHECK_EQ(c0, 3);
    CHECK_EQ(c1, 0);
    CHECK_EQ(c2, 1);
    CHECK(zeroed);
    CHECK_EQ(none.responses_count, 0);
}
