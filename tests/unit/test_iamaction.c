/* MSK's actions over every Kafka API the broker serves: a representative request of each API
 * names its resources through the API's descriptor (as the authorization stage sees them), and
 * every question it asks must map to MSK actions (sl_iam_actions_for), with the actions MSK's
 * guide names for the main APIs. The same walk generates docs/iam-actions.md: the test fails
 * when the committed document differs from the table; regenerate it with
 *   SL_IAM_ACTIONS_DOC=write ./build/asan/unit_tests iamaction_doc
 * Also: resource ARNs and the validation of the sluice.iam.* keys they are built from. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_config.h"
#include "iam/sl_iamaction.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "sl_test.h"

/* ---- a catalog: topics t and u (t has id 1), group g with offsets for t ---- */

static const sl_uuid k_tid = {{1}};

static bool c_topic_name(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name) {
    (void)ctx, (void)a;
    if (memcmp(id, &k_tid, sizeof *id)) return false;
    *name = sl_str_c("t");
    return true;
}
static bool c_topic_exists(void *ctx, sl_str name) {
    (void)ctx;
    return sl_str_eqc(name, "t") || sl_str_eqc(name, "u");
}
static bool c_auto_create(void *ctx) {
    (void)ctx;
    return true;
}
static void c_each_topic(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    (void)ctx;
    fn(arg, sl_str_c("t"));
}
static void c_each_group(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    (void)ctx;
    fn(arg, sl_str_c("g"));
}
static void c_each_committed(void *ctx, sl_str group, void (*fn)(void *, sl_str), void *arg) {
    (void)ctx;
    if (sl_str_eqc(group, "g")) fn(arg, sl_str_c("t"));
}
static void c_each_txn(void *ctx, void (*fn)(void *, sl_str), void *arg) { fn(arg, sl_str_c("x")); }
static const sl_catalog k_cat = {NULL,         c_topic_name, c_topic_exists,   c_auto_create,
                                 c_each_topic, c_each_group, c_each_committed, c_each_txn};

/* ---- representative requests ---- */

static sl_produce_req_topic produce_topics[] = {{.name = {"t", 1}}};
static sl_produce_req r_produce = {.transactional_id = {NULL, -1},
                                   .acks = -1,
                                   .topic_data = produce_topics,
                                   .topic_data_count = 1};
static sl_produce_req r_produce_txn = {
    .transactional_id = {"x", 1}, .acks = -1, .topic_data = produce_topics, .topic_data_count = 1};
static sl_fetch_req_topic fetch_topics[] = {{.topic = {"t", 1}}};
static sl_fetch_req r_fetch = {.topics = fetch_topics, .topics_count = 1};
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
static sl_str fc_keys[] = {{"g", 1}};
static sl_find_coordinator_req r_find_coordinator = {
    .key_type = 0, .coordinator_keys = fc_keys, .coordinator_keys_count = 1};
static sl_find_coordinator_req r_find_txn_coordinator = {.key = {"x", 1}, .key_type = 1};
static sl_join_group_req r_join = {.group_id = {"g", 1}};
static sl_heartbeat_req r_heartbeat = {.group_id = {"g", 1}};
static sl_leave_group_req r_leave = {.group_id = {"g", 1}};
static sl_sync_group_req r_sync = {.group_id = {"g", 1}};
static sl_str dg_groups[] = {{"g", 1}};
static sl_describe_groups_req r_describe_groups = {
    .groups = dg_groups, .groups_count = 1, .include_authorized_operations = true};
static sl_list_groups_req r_list_groups = {.states_filter_count = -1, .types_filter_count = -1};
static sl_create_topics_req_topic ct_topics[] = {{.name = {"new", 3}, .num_partitions = 1}};
static sl_create_topics_req r_create_topics = {.topics = ct_topics, .topics_count = 1};
static sl_str dt_names[] = {{"t", 1}};
static sl_delete_topics_req r_delete_topics = {.topic_names = dt_names, .topic_names_count = 1};
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
    {.resource_type = 2, .resource_name = {"t", 1}},
    {.resource_type = 4, .resource_name = {"1", 1}}};
static sl_incremental_alter_configs_req r_inc_alter_configs = {.resources = iac_res,
                                                               .resources_count = 2};
static sl_create_partitions_req_topic cp_topics[] = {{.name = {"t", 1}, .count = 3}};
static sl_create_partitions_req r_create_partitions = {.topics = cp_topics, .topics_count = 1};
static sl_str dgn[] = {{"g", 1}};
static sl_delete_groups_req r_delete_groups = {.groups_names = dgn, .groups_names_count = 1};
static sl_offset_delete_req_topic od_topics[] = {{.name = {"t", 1}}};
static sl_offset_delete_req r_offset_delete = {
    .group_id = {"g", 1}, .topics = od_topics, .topics_count = 1};
static sl_describe_user_scram_credentials_req r_describe_scram;
static sl_alter_user_scram_credentials_req r_alter_scram;
static sl_describe_cluster_req r_describe_cluster = {.include_cluster_authorized_operations = true};
static sl_add_partitions_to_txn_req_topic apt_topics[] = {{.name = {"t", 1}}};
static sl_add_partitions_to_txn_req r_add_partitions_to_txn = {
    .transactional_id = {"x", 1}, .topics = apt_topics, .topics_count = 1};
static sl_add_partitions_to_txn_req_txn_topic apt4_topics[] = {{.name = {"t", 1}}};
static sl_add_partitions_to_txn_req_transaction apt4_txns[] = {
    {.transactional_id = {"x", 1}, .topics = apt4_topics, .topics_count = 1}};
static sl_add_partitions_to_txn_req r_add_partitions_to_txn_v4 = {.transactions = apt4_txns,
                                                                  .transactions_count = 1};
static sl_describe_producers_req_topic dp_topics[] = {{.name = {"t", 1}}};
static sl_describe_producers_req r_describe_producers = {.topics = dp_topics, .topics_count = 1};
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

#define K(x) "kafka-cluster:" x
typedef struct sample {
    int16_t key, version;
    const char *variant; /* "" or what this request shows */
    const void *req;
    const char *expect[7]; /* actions MSK's guide names for it, all required among the mapped */
} sample;

static const sample k_samples[] = {
    {SL_API_PRODUCE, 9, "", &r_produce, {K("WriteData"), K("DescribeTopic")}},
    {SL_API_PRODUCE,
     9,
     "transactional",
     &r_produce_txn,
     {K("AlterTransactionalId"), K("DescribeTransactionalId"), K("WriteData"), K("DescribeTopic")}},
    {SL_API_FETCH, 12, "", &r_fetch, {K("ReadData"), K("DescribeTopic")}},
    {SL_API_LIST_OFFSETS, 7, "", &r_list_offsets, {K("DescribeTopic")}},
    {SL_API_METADATA, 12, "auto-creating", &r_metadata, {K("DescribeTopic"), K("CreateTopic")}},
    {SL_API_METADATA, 12, "all topics", &r_metadata_all, {K("DescribeTopic")}},
    {SL_API_OFFSET_COMMIT,
     8,
     "",
     &r_offset_commit,
     {K("AlterGroup"), K("DescribeGroup"), K("ReadData"), K("DescribeTopic")}},
    {SL_API_OFFSET_FETCH, 8, "", &r_offset_fetch, {K("DescribeGroup"), K("DescribeTopic")}},
    {SL_API_FIND_COORDINATOR, 4, "group", &r_find_coordinator, {K("DescribeGroup")}},
    {SL_API_FIND_COORDINATOR,
     3,
     "transaction",
     &r_find_txn_coordinator,
     {K("DescribeTransactionalId")}},
    {SL_API_JOIN_GROUP, 9, "", &r_join, {K("AlterGroup"), K("DescribeGroup")}},
    {SL_API_HEARTBEAT, 4, "", &r_heartbeat, {K("AlterGroup"), K("DescribeGroup")}},
    {SL_API_LEAVE_GROUP, 5, "", &r_leave, {K("AlterGroup"), K("DescribeGroup")}},
    {SL_API_SYNC_GROUP, 5, "", &r_sync, {K("AlterGroup"), K("DescribeGroup")}},
    {SL_API_DESCRIBE_GROUPS, 5, "", &r_describe_groups, {K("DescribeGroup")}},
    {SL_API_LIST_GROUPS, 4, "", &r_list_groups, {K("DescribeCluster"), K("DescribeGroup")}},
    {SL_API_CREATE_TOPICS, 7, "", &r_create_topics, {K("CreateTopic")}},
    {SL_API_DELETE_TOPICS, 5, "", &r_delete_topics, {K("DeleteTopic"), K("DescribeTopic")}},
    {SL_API_DELETE_RECORDS, 2, "", &r_delete_records, {K("DeleteTopic")}},
    {SL_API_INIT_PRODUCER_ID,
     4,
     "idempotent",
     &r_init_pid,
     {K("WriteDataIdempotently"), K("WriteData")}},
    {SL_API_INIT_PRODUCER_ID,
     4,
     "transactional",
     &r_init_pid_txn,
     {K("AlterTransactionalId"), K("DescribeTransactionalId")}},
    {SL_API_OFFSET_FOR_LEADER_EPOCH, 4, "", &r_ofle, {K("DescribeTopic")}},
    {SL_API_DESCRIBE_ACLS, 3, "", &r_describe_acls, {K("DescribeCluster")}},
    {SL_API_CREATE_ACLS, 3, "", &r_create_acls, {K("AlterCluster"), K("DescribeCluster")}},
    {SL_API_DELETE_ACLS, 3, "", &r_delete_acls, {K("AlterCluster"), K("DescribeCluster")}},
    {SL_API_DESCRIBE_CONFIGS,
     4,
     "",
     &r_describe_configs,
     {K("DescribeTopicDynamicConfiguration"), K("DescribeClusterDynamicConfiguration")}},
    {SL_API_ALTER_CONFIGS,
     2,
     "",
     &r_alter_configs,
     {K("AlterTopicDynamicConfiguration"), K("AlterClusterDynamicConfiguration")}},
    {SL_API_CREATE_PARTITIONS, 3, "", &r_create_partitions, {K("AlterTopic")}},
    {SL_API_DELETE_GROUPS, 2, "", &r_delete_groups, {K("DeleteGroup"), K("DescribeGroup")}},
    {SL_API_INCREMENTAL_ALTER_CONFIGS,
     1,
     "",
     &r_inc_alter_configs,
     {K("AlterTopicDynamicConfiguration"), K("AlterClusterDynamicConfiguration")}},
    {SL_API_OFFSET_DELETE, 0, "", &r_offset_delete, {K("DeleteGroup"), K("ReadData")}},
    {SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS, 0, "", &r_describe_scram, {K("DescribeCluster")}},
    {SL_API_ALTER_USER_SCRAM_CREDENTIALS, 0, "", &r_alter_scram, {K("AlterCluster")}},
    {SL_API_DESCRIBE_CLUSTER, 1, "", &r_describe_cluster, {K("DescribeCluster")}},
    {SL_API_ADD_PARTITIONS_TO_TXN,
     3,
     "",
     &r_add_partitions_to_txn,
     {K("AlterTransactionalId"), K("WriteData")}},
    {SL_API_ADD_PARTITIONS_TO_TXN, 4, "between brokers", &r_add_partitions_to_txn_v4, {NULL}},
    {SL_API_ADD_OFFSETS_TO_TXN,
     3,
     "",
     &r_add_offsets_to_txn,
     {K("AlterTransactionalId"), K("AlterGroup")}},
    {SL_API_END_TXN, 3, "", &r_end_txn, {K("AlterTransactionalId")}},
    {SL_API_DESCRIBE_TRANSACTIONS, 0, "", &r_describe_transactions, {K("DescribeTransactionalId")}},
    {SL_API_LIST_TRANSACTIONS, 1, "", &r_list_transactions, {K("DescribeTransactionalId")}},
    {SL_API_DESCRIBE_PRODUCERS, 0, "", &r_describe_producers, {K("ReadData")}},
    {SL_API_TXN_OFFSET_COMMIT,
     3,
     "",
     &r_txn_offset_commit,
     {K("AlterTransactionalId"), K("AlterGroup"), K("ReadData")}},
};
#define NSAMPLES (sizeof k_samples / sizeof k_samples[0])

static sl_req *sample_req(sl_arena *a, const sample *s) {
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    rq->a = a;
    rq->h.api_key = s->key;
    rq->h.api_version = s->version;
    rq->req = (void *)s->req;
    rq->principal = "User:arn:aws:iam::000000000000:user/alice";
    rq->peer = "127.0.0.1:5000";
    const sl_api_desc *d = sl_api_desc_for(s->key);
    if (d && d->resources) d->resources(rq, &k_cat);
    return rq;
}

/* The operations Kafka lists in an authorized-operations bitfield for the type. */
static int type_ops(int rtype, int *ops) {
    int n = 0;
    for (int op = SL_ACL_OP_READ; op <= SL_ACL_OP_IDEMPOTENT_WRITE; op++) {
        bool listed;
        switch (rtype) {
        case SL_ACL_RES_TOPIC:
            listed = op != SL_ACL_OP_CLUSTER_ACTION && op != SL_ACL_OP_IDEMPOTENT_WRITE;
            break;
        case SL_ACL_RES_GROUP:
            listed = op == SL_ACL_OP_READ || op == SL_ACL_OP_DESCRIBE || op == SL_ACL_OP_DELETE;
            break;
        default:
            listed = op != SL_ACL_OP_READ && op != SL_ACL_OP_WRITE && op != SL_ACL_OP_DELETE;
        }
        if (listed) ops[n++] = op;
    }
    return n;
}

/* The actions one named resource stands for: its question's, or with SL_AZ_OPS those of every
 * operation the bitfield reports on. n into *n (at most cap). */
static void res_actions(const sl_req_res *r, const char **out, int cap, int *n) {
    *n = 0;
    if (r->flags & SL_AZ_OPS) {
        int ops[16], nops = type_ops(r->rtype, ops);
        for (int i = 0; i < nops; i++) {
            const char *a[SL_IAM_MAX_ACTIONS];
            int na = sl_iam_actions_for(ops[i], r->rtype, a, SL_IAM_MAX_ACTIONS);
            for (int k = 0; k < na; k++) {
                bool dup = false;
                for (int j = 0; j < *n; j++) dup |= !strcmp(out[j], a[k]);
                if (!dup && *n < cap) out[(*n)++] = a[k];
            }
        }
        return;
    }
    *n = sl_iam_actions_for(r->op, r->rtype, out, cap < SL_IAM_MAX_ACTIONS ? cap : 3);
}

/* A question with no action of its own is allowed only as CLUSTER_ACTION (brokers only) or as
 * CREATE on the cluster whose alternative (CREATE on the topic) maps. */
static bool covered(const sl_req *rq, int32_t i) {
    const sl_req_res *r = &rq->res[i];
    const char *a[32];
    int n;
    res_actions(r, a, 32, &n);
    if (n > 0) return true;
    if (r->op == SL_ACL_OP_CLUSTER_ACTION) return true;
    if (r->op == SL_ACL_OP_CREATE && r->rtype == SL_ACL_RES_CLUSTER) {
        for (int32_t k = 0; k < rq->nres; k++)
            if (rq->res[k].alt == i && rq->res[k].op == SL_ACL_OP_CREATE &&
                rq->res[k].rtype == SL_ACL_RES_TOPIC &&
                sl_iam_actions_for(SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, a, 3) > 0)
                return true;
    }
    return false;
}

static bool req_has_action(const sl_req *rq, const char *action) {
    for (int32_t i = 0; i < rq->nres; i++) {
        const char *a[32];
        int n;
        res_actions(&rq->res[i], a, 32, &n);
        for (int k = 0; k < n; k++)
            if (!strcmp(a[k], action)) return true;
    }
    return false;
}

/* ---- the generated document ---- */

static const sl_iam_arn_cfg k_doc_arns = {"REGION", "ACCOUNT", "CLUSTER", "UUID"};

static const char *placeholder(int rtype) {
    switch (rtype) {
    case SL_ACL_RES_TOPIC:
        return "TOPIC";
    case SL_ACL_RES_GROUP:
        return "GROUP";
    case SL_ACL_RES_TRANSACTIONAL_ID:
        return "TRANSACTIONAL_ID";
    default:
        return "";
    }
}

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void tput(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tput(text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (!t->p) abort();
    }
}

static void put_actions(text *t, int op, int rtype, const char **a, int n) {
    if (!n && op == SL_ACL_OP_CREATE && rtype == SL_ACL_RES_CLUSTER)
        tput(t, "none: denied, so the CREATE on each topic (CreateTopic on its ARN) decides");
    else if (!n && op == SL_ACL_OP_CLUSTER_ACTION)
        tput(t, "none: denied (replication between brokers)");
    else if (!n)
        tput(t, "none: denied");
    for (int i = 0; i < n; i++) tput(t, "%s%s", i ? ", " : "", a[i]);
}

static void put_arn(text *t, int rtype, bool any) {
    char arn[SL_IAM_ARN_MAX];
    const char *name = any ? "*" : placeholder(rtype);
    if (sl_iam_arn(&k_doc_arns, rtype, name, strlen(name), arn, sizeof arn) < 0)
        tput(t, "-");
    else
        tput(t, "`%s`", arn);
}

static char *gen_doc(void) {
    text t = {0};
    tput(&t, "<!-- Generated by tests/unit/test_iamaction.c: do not edit. Regenerate with\n"
             "     SL_IAM_ACTIONS_DOC=write ./build/asan/unit_tests iamaction_doc -->\n"
             "# IAM actions for every Kafka API\n\n"
             "An IAM principal's request is authorized by its policies: each question the "
             "authorization stage asks (Kafka operation on a resource) needs every MSK action "
             "listed for it, on the resource's ARN. Connect is checked at authentication. See "
             "docs/iam.md.\n\n"
             "## Kafka questions and MSK actions\n\n"
             "| Kafka operation | Resource | MSK actions (all needed) | Resource ARN |\n"
             "| --- | --- | --- | --- |\n");
    static const int types[] = {SL_ACL_RES_TOPIC, SL_ACL_RES_GROUP, SL_ACL_RES_CLUSTER,
                                SL_ACL_RES_TRANSACTIONAL_ID};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int ops[16], nops = type_ops(types[k], ops);
        if (types[k] == SL_ACL_RES_TRANSACTIONAL_ID) {
            nops = 0;
            ops[nops++] = SL_ACL_OP_WRITE;
            ops[nops++] = SL_ACL_OP_DESCRIBE;
        }
        for (int i = 0; i < nops; i++) {
            const char *a[SL_IAM_MAX_ACTIONS];
            int na = sl_iam_actions_for(ops[i], types[k], a, SL_IAM_MAX_ACTIONS);
            tput(&t, "| %s | %s | ", sl_acl_op_name(ops[i]), sl_acl_res_name(types[k]));
            put_actions(&t, ops[i], types[k], a, na);
            tput(&t, " | ");
            put_arn(&t, types[k], false);
            tput(&t, " |\n");
        }
    }
    tput(&t, "\n## Per API\n\n"
             "What a representative request of each API asks. *quiet*: a listing leaves out what "
             "is denied; *any*: allowed when some resource of the type could be; *alternative*: "
             "asked when the question before it is denied; *authorized operations*: the "
             "operations reported in the answer, each by its actions.\n\n"
             "| API | Kafka question | MSK actions | Resource ARN |\n"
             "| --- | --- | --- | --- |\n");
    for (int di = 0; sl_api_desc_at(di); di++) {
        const sl_api_desc *d = sl_api_desc_at(di);
        const sl_api_info *info = sl_api_desc_info(d);
        const char *api = info ? info->name : "?";
        if (d->flags & SL_API_PREAUTH) {
            tput(&t, "| %s | none (before authentication) | - | - |\n", api);
            continue;
        }
        for (size_t s = 0; s < NSAMPLES; s++) {
            if (k_samples[s].key != d->key) continue;
            sl_arena *ar = sl_arena_new(4096);
            sl_req *rq = sample_req(ar, &k_samples[s]);
            for (int32_t i = 0; i < rq->nres; i++) {
                const sl_req_res *r = &rq->res[i];
                bool dup = false; /* Metadata names the same kind of question per topic */
                for (int32_t j = 0; j < i; j++)
                    dup |= rq->res[j].op == r->op && rq->res[j].rtype == r->rtype &&
                           rq->res[j].flags == r->flags && (rq->res[j].alt >= 0) == (r->alt >= 0);
                if (dup) continue;
                if (k_samples[s].variant[0])
                    tput(&t, "| %s (%s) | ", api, k_samples[s].variant);
                else
                    tput(&t, "| %s | ", api);
                if (r->flags & SL_AZ_OPS)
                    tput(&t, "authorized operations on %s", sl_acl_res_name(r->rtype));
                else
                    tput(&t, "%s on %s", sl_acl_op_name(r->op), sl_acl_res_name(r->rtype));
                if (r->flags & SL_AZ_ANY) tput(&t, " *any*");
                if ((r->flags & SL_AZ_QUIET) && !(r->flags & SL_AZ_OPS)) tput(&t, " *quiet*");
                if (r->alt >= 0) tput(&t, " *alternative*");
                tput(&t, " | ");
                const char *a[32];
                int na;
                res_actions(r, a, 32, &na);
                put_actions(&t, r->op, r->rtype, a, na);
                tput(&t, " | ");
                put_arn(&t, r->rtype, r->flags & SL_AZ_ANY);
                tput(&t, " |\n");
            }
            sl_arena_free(ar);
        }
    }
    return t.p;
}

/* ---- tests ---- */

/* Every API served has a representative request here, and each question it asks maps to MSK
 * actions (CLUSTER_ACTION and CREATE on the cluster aside, see covered()), including the
 * actions MSK's guide names for it. */
SL_TEST(iamaction_every_api_maps_to_msk_actions) {
    int bad = 0;
    for (int di = 0; sl_api_desc_at(di); di++) {
        const sl_api_desc *d = sl_api_desc_at(di);
        if (d->flags & SL_API_PREAUTH) continue;
        bool found = false;
        for (size_t s = 0; s < NSAMPLES; s++) found |= k_samples[s].key == d->key;
        if (!found) {
            fprintf(stderr, "  api %d has no representative request here\n", d->key);
            bad++;
        }
    }
    for (size_t s = 0; s < NSAMPLES; s++) {
        const sample *sm = &k_samples[s];
        sl_arena *a = sl_arena_new(4096);
        sl_req *rq = sample_req(a, sm);
        if (rq->nres == 0) {
            fprintf(stderr, "  api %d (%s) named no resource\n", sm->key, sm->variant);
            bad++;
        }
        for (int32_t i = 0; i < rq->nres; i++)
            if (!covered(rq, i)) {
                fprintf(stderr, "  api %d: %s on %s maps to no MSK action\n", sm->key,
                        sl_acl_op_name(rq->res[i].op), sl_acl_res_name(rq->res[i].rtype));
                bad++;
            }
        for (int k = 0; k < 7 && sm->expect[k]; k++)
            if (!req_has_action(rq, sm->expect[k])) {
                fprintf(stderr, "  api %d (%s): %s not among its actions\n", sm->key, sm->variant,
                        sm->expect[k]);
                bad++;
            }
        sl_arena_free(a);
    }
    CHECK_EQ(bad, 0);
}

/* The table itself: MSK's required actions on the same resource come with each action. */
SL_TEST(iamaction_table_required_actions) {
    const char *a[SL_IAM_MAX_ACTIONS];
#define EXPECT(op, rt, ...)                                                                        \
    do {                                                                                           \
        const char *want[] = {__VA_ARGS__};                                                        \
        int n = sl_iam_actions_for(SL_ACL_OP_##op, SL_ACL_RES_##rt, a, SL_IAM_MAX_ACTIONS);        \
        CHECK_EQ(n, (int)(sizeof want / sizeof want[0]));                                          \
        for (int i = 0; i < n; i++) CHECK(!strcmp(a[i], want[i]));                                 \
    } while (0)
    EXPECT(WRITE, TOPIC, K("WriteData"), K("DescribeTopic"));
    EXPECT(READ, TOPIC, K("ReadData"), K("DescribeTopic"));
    EXPECT(CREATE, TOPIC, K("CreateTopic"));
    EXPECT(DELETE, TOPIC, K("DeleteTopic"), K("DescribeTopic"));
    EXPECT(ALTER, TOPIC, K("AlterTopic"), K("DescribeTopic"));
    EXPECT(DESCRIBE, TOPIC, K("DescribeTopic"));
    EXPECT(DESCRIBE_CONFIGS, TOPIC, K("DescribeTopicDynamicConfiguration"));
    EXPECT(ALTER_CONFIGS, TOPIC, K("AlterTopicDynamicConfiguration"),
           K("DescribeTopicDynamicConfiguration"));
    EXPECT(READ, GROUP, K("AlterGroup"), K("DescribeGroup"));
    EXPECT(DESCRIBE, GROUP, K("DescribeGroup"));
    EXPECT(DELETE, GROUP, K("DeleteGroup"), K("DescribeGroup"));
    EXPECT(DESCRIBE, CLUSTER, K("DescribeCluster"));
    EXPECT(ALTER, CLUSTER, K("AlterCluster"), K("DescribeCluster"));
    EXPECT(DESCRIBE_CONFIGS, CLUSTER, K("DescribeClusterDynamicConfiguration"));
    EXPECT(ALTER_CONFIGS, CLUSTER, K("AlterClusterDynamicConfiguration"),
           K("DescribeClusterDynamicConfiguration"));
    EXPECT(IDEMPOTENT_WRITE, CLUSTER, K("WriteDataIdempotently"));
    EXPECT(WRITE, TRANSACTIONAL_ID, K("AlterTransactionalId"), K("DescribeTransactionalId"));
    EXPECT(DESCRIBE, TRANSACTIONAL_ID, K("DescribeTransactionalId"));
#undef EXPECT
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_CLUSTER_ACTION, SL_ACL_RES_CLUSTER, a, 3), 0);
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_CREATE, SL_ACL_RES_CLUSTER, a, 3), 0);
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_ALL, SL_ACL_RES_TOPIC, a, 3), 0);
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_WRITE, SL_ACL_RES_GROUP, a, 3), 0);
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_DESCRIBE, SL_ACL_RES_USER, a, 3), 0);
    /* max bounds what is written */
    CHECK_EQ(sl_iam_actions_for(SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, a, 1), 1);
    CHECK(!strcmp(a[0], K("WriteData")));
}

/* docs/iam-actions.md is the table as generated here. */
SL_TEST(iamaction_doc_matches_the_table) {
    char *doc = gen_doc();
    CHECK(doc);
    const char *path = "docs/iam-actions.md";
    const char *mode = getenv("SL_IAM_ACTIONS_DOC");
    bool ok = true;
    if (mode && !strcmp(mode, "write")) {
        FILE *w = fopen(path, "w");
        ok = w && fputs(doc, w) >= 0;
        if (w) ok = fclose(w) == 0 && ok;
    }
    size_t len = strlen(doc), n = 0;
    char *got = malloc(len + 2);
    FILE *f = ok && got ? fopen(path, "r") : NULL;
    if (f) {
        n = fread(got, 1, len + 2, f);
        fclose(f);
    } else {
        fprintf(stderr, "  %s: cannot open (run from the repository root)\n", path);
    }
    bool same = f && n == len && !memcmp(got, doc, n);
    if (f && !same)
        fprintf(stderr,
                "  %s differs from the generated table: regenerate it "
                "(SL_IAM_ACTIONS_DOC=write ./build/asan/unit_tests iamaction_doc)\n",
                path);
    free(got);
    free(doc);
    CHECK(same);
}

/* ---- ARNs ---- */

SL_TEST(iamaction_arns) {
    sl_iam_arn_cfg c = {"eu-west-1", "123456789012", "payments", "abcd1234-0123-abcd-5678-1"};
    char buf[SL_IAM_ARN_MAX];
    CHECK(sl_iam_arn(&c, SL_ACL_RES_CLUSTER, "ignored", 7, buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "arn:aws:kafka:eu-west-1:123456789012:cluster/payments/"
                       "abcd1234-0123-abcd-5678-1"));
    int n = sl_iam_arn(&c, SL_ACL_RES_TOPIC, "orders.v1", 9, buf, sizeof buf);
    CHECK(!strcmp(buf, "arn:aws:kafka:eu-west-1:123456789012:topic/payments/"
                       "abcd1234-0123-abcd-5678-1/orders.v1"));
    CHECK_EQ(n, (int)strlen(buf));
    /* the name is taken by length, not to its NUL */
    CHECK(sl_iam_arn(&c, SL_ACL_RES_GROUP, "fraud-readers-extra", 13, buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "arn:aws:kafka:eu-west-1:123456789012:group/payments/"
                       "abcd1234-0123-abcd-5678-1/fraud-readers"));
    CHECK(sl_iam_arn(&c, SL_ACL_RES_TRANSACTIONAL_ID, "tx-1", 4, buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "arn:aws:kafka:eu-west-1:123456789012:transactional-id/payments/"
                       "abcd1234-0123-abcd-5678-1/tx-1"));
    /* no ARN: other types, a NUL inside the name (would name another resource), too long */
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_USER, "u", 1, buf, sizeof buf), -1);
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_DELEGATION_TOKEN, "u", 1, buf, sizeof buf), -1);
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_GROUP, "a\0b", 3, buf, sizeof buf), -1);
    char big[600];
    memset(big, 'x', sizeof big);
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_TOPIC, big, sizeof big, buf, sizeof buf), -1);
    CHECK_EQ(buf[0], 0);
    /* exactly fitting, and one byte short */
    const char *base = "arn:aws:kafka:eu-west-1:123456789012:topic/payments/"
                       "abcd1234-0123-abcd-5678-1/";
    size_t room = sizeof buf - 1 - strlen(base);
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_TOPIC, big, room, buf, sizeof buf), (int)(sizeof buf - 1));
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_TOPIC, big, room + 1, buf, sizeof buf), -1);
    CHECK_EQ(sl_iam_arn(&c, SL_ACL_RES_CLUSTER, "", 0, buf, 20), -1);
    /* an empty name (a null group id) still has an ARN */
    CHECK(sl_iam_arn(&c, SL_ACL_RES_GROUP, NULL, 0, buf, sizeof buf) > 0);
}

static sl_err cfg_with(sl_config *c, const char *key, const char *value, const char *cluster_id,
                       sl_iam_arn_cfg *out, char *err, size_t elen) {
    sl_config_defaults(c);
    char e[256];
    if (key && sl_config_set(c, key, value, e, sizeof e)) return SL_EINVAL;
    return sl_iam_arn_cfg_from(c, cluster_id, out, err, elen);
}

SL_TEST(iamaction_arn_cfg_from_config) {
    sl_config *c = calloc(1, sizeof *c);
    CHECK(c);
    sl_iam_arn_cfg a;
    char err[256] = "";
    /* defaults: us-east-1, 000000000000, sluice, the broker's cluster id */
    CHECK_EQ(cfg_with(c, NULL, NULL, "Xk3_pQ-9aZ", &a, err, sizeof err), SL_OK);
    CHECK(!strcmp(a.region, "us-east-1") && !strcmp(a.account, "000000000000"));
    CHECK(!strcmp(a.cluster, "sluice") && !strcmp(a.uuid, "Xk3_pQ-9aZ"));
    /* an MSK cluster's name and UUID */
    CHECK_EQ(cfg_with(c, "sluice.iam.cluster.uuid", "abcd1234-0123-abcd-5678-1234abcd-1", "cid", &a,
                      err, sizeof err),
             SL_OK);
    CHECK(!strcmp(a.uuid, "abcd1234-0123-abcd-5678-1234abcd-1"));
    CHECK_EQ(cfg_with(c, "sluice.iam.cluster.name", "MyTestCluster", "cid", &a, err, sizeof err),
             SL_OK);
    CHECK(!strcmp(a.cluster, "MyTestCluster"));
    CHECK_EQ(cfg_with(c, "sluice.iam.region", "ap-southeast-2", "cid", &a, err, sizeof err), SL_OK);
    CHECK_EQ(cfg_with(c, "sluice.iam.account.id", "123456789012", "cid", &a, err, sizeof err),
             SL_OK);
    CHECK(!strcmp(a.account, "123456789012"));
    /* refusals name the key */
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"sluice.iam.account.id", "12345678901"},
        {"sluice.iam.account.id", "1234567890123"},
        {"sluice.iam.account.id", "12345678901a"},
        {"sluice.iam.region", "US-East-1"},
        {"sluice.iam.region", "us_east_1"},
        {"sluice.iam.region", "us-east-1/x"},
        {"sluice.iam.cluster.name", "a/b"},
        {"sluice.iam.cluster.name", "a:b"},
        {"sluice.iam.cluster.name", "my_cluster"},
        {"sluice.iam.cluster.name", "a*"},
        {"sluice.iam.cluster.uuid", "abc/def"},
        {"sluice.iam.cluster.uuid", "abc:def"},
        {"sluice.iam.cluster.uuid", "abc*"},
        {"sluice.iam.cluster.uuid", "a b"},
        {"sluice.iam.region", "averyveryverylongregionname-east-1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        sl_err e = cfg_with(c, bad[i].key, bad[i].value, "cid", &a, err, sizeof err);
        if (e != SL_ECONFIG || !strstr(err, bad[i].key)) {
            fprintf(stderr, "  %s=%s: %d \"%s\"\n", bad[i].key, bad[i].value, e, err);
            free(c);
            CHECK(false);
        }
    }
    /* no UUID configured and no cluster id, or a cluster id with a '/' */
    CHECK_EQ(cfg_with(c, NULL, NULL, NULL, &a, err, sizeof err), SL_ECONFIG);
    CHECK_EQ(cfg_with(c, NULL, NULL, "a/b", &a, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "cluster id") != NULL);
    free(c);
}

/* Without any policy everything is implicitly denied, and the reason names the action and the
 * ARN; a question without an action says so. */
SL_TEST(iamaction_no_policy_denies_with_reason) {
    sl_iam_arn_cfg c = {"us-east-1", "000000000000", "sluice", "cid"};
    sl_iam_ctx ctx = {.source_ip = "127.0.0.1", .now_s = 1800000000};
    char why[512];
    CHECK(!sl_iam_authorize(NULL, 0, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t", 1, why,
                            sizeof why));
    CHECK(!strcmp(why, "kafka-cluster:WriteData on arn:aws:kafka:us-east-1:000000000000:topic/"
                       "sluice/cid/t: no statement allows it (implicit deny)"));
    CHECK(!sl_iam_authorize(NULL, 0, &c, &ctx, SL_ACL_OP_CLUSTER_ACTION, SL_ACL_RES_CLUSTER, "", 0,
                            why, sizeof why));
    CHECK(strstr(why, "CLUSTER_ACTION") && strstr(why, "implicit deny"));
    CHECK(!sl_iam_authorize(NULL, 0, &c, &ctx, SL_ACL_OP_READ, SL_ACL_RES_GROUP, "a\0b", 3, why,
                            sizeof why));
    CHECK(strstr(why, "no ARN") != NULL);
    /* a short buffer is cut, not overrun */
    char small[16];
    CHECK(!sl_iam_authorize(NULL, 0, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t", 1, small,
                            sizeof small));
    CHECK_EQ(strlen(small), sizeof small - 1);
    CHECK(!sl_iam_authorize_any(NULL, 0, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC));
    CHECK_EQ(sl_iam_ops(NULL, 0, &c, &ctx, SL_ACL_RES_TOPIC, "t", 1), 0);
}

/* Every action of a question must be allowed; an explicit deny of any of them is what the
 * reason names, even when an earlier action was only implicitly denied. */
SL_TEST(iamaction_all_actions_needed_explicit_deny_named) {
    sl_iam_arn_cfg c = {"us-east-1", "123456789012", "sluice", "cid"};
    sl_iam_ctx ctx = {.now_s = 1800000000};
    static const char doc[] =
        "{\"Version\": \"2012-10-17\", \"Statement\": ["
        " {\"Effect\": \"Allow\", \"Action\": [\"kafka-cluster:WriteData\","
        "  \"kafka-cluster:DescribeTopic\"], \"Resource\": \"*\"},"
        " {\"Sid\": \"NoDescribe\", \"Effect\": \"Deny\", \"Action\": "
        "\"kafka-cluster:DescribeTopic\","
        "  \"Resource\": \"arn:aws:kafka:us-east-1:123456789012:topic/sluice/cid/hidden\"}]}";
    sl_iam_policy *p = NULL;
    char err[256], why[512];
    CHECK_EQ(sl_iam_policy_parse("p1", doc, strlen(doc), &p, err, sizeof err), SL_OK);
    const sl_iam_policy *pols[] = {p};
    bool ok = sl_iam_authorize(pols, 1, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t", 1, why,
                               sizeof why);
    bool hidden = sl_iam_authorize(pols, 1, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "hidden",
                                   6, why, sizeof why);
    char why_read[512];
    bool read = sl_iam_authorize(pols, 1, &c, &ctx, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "hidden", 6,
                                 why_read, sizeof why_read);
    bool any = sl_iam_authorize_any(pols, 1, &c, &ctx, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC);
    bool any_read = sl_iam_authorize_any(pols, 1, &c, &ctx, SL_ACL_OP_READ, SL_ACL_RES_TOPIC);
    int32_t ops = sl_iam_ops(pols, 1, &c, &ctx, SL_ACL_RES_TOPIC, "t", 1);
    sl_iam_policy_free(p);
    CHECK(ok);
    CHECK(!hidden);
    CHECK(!strcmp(why,
                  "kafka-cluster:DescribeTopic on arn:aws:kafka:us-east-1:123456789012:topic/"
                  "sluice/cid/hidden: explicit deny by policy p1 statement 1 (Sid NoDescribe)"));
    /* ReadData (first) only implicitly denied, DescribeTopic (second) explicitly: the latter */
    CHECK(!read);
    CHECK(strstr(why_read, "kafka-cluster:DescribeTopic") && strstr(why_read, "Sid NoDescribe"));
    CHECK(any && !any_read);
    CHECK_EQ(ops, 1 << SL_ACL_OP_WRITE | 1 << SL_ACL_OP_DESCRIBE);
}
