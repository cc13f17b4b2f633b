/* IAM principals in the authorization stage (src/pipeline/sl_authorize.c with
 * src/iam/sl_iam_authz.c): a request whose rq->iam is set is decided by the identity's attached
 * policies from the store, never by ACLs or super.users; the denial's reason (what the audit
 * trail records) names the action, the ARN and the deciding statement; an ACL principal on the
 * same broker keeps its ACL decisions; without the broker's IAM context everything is denied. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "broker/sl_broker.h"
#include "iam/sl_iam.h"
#include "iam/sl_iam_int.h"
#include "iam/sl_iamstore.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "sl_test.h"

#define ACCT  "123456789012"
#define ARN_T "arn:aws:kafka:us-east-1:" ACCT ":topic/payments/abcd1234-0123-abcd-5678-1234abcd-1/"

/* ---- fixture: a store with user alice (one key), a broker whose IAM context uses it ---- */

typedef struct fx {
    char dir[64], path[128], key[128];
    sl_iamstore *store;
    sl_iam *iam;
    sl_broker *b;
    sl_iam_identity alice;
    char principal[400];
} fx;

static void fx_done(fx *f) {
    if (f->store) sl_iamstore_free(f->store);
    free(f->iam);
    free(f->b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd)) {
    }
}

static bool fx_init(fx *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sl_iam_authz_XXXXXX");
    if (!mkdtemp(f->dir)) return false;
    snprintf(f->path, sizeof f->path, "%s/sluice-iam", f->dir);
    snprintf(f->key, sizeof f->key, "%s/sluice-iam.key", f->dir);
    char err[512], akid[SL_IAM_AKID_LEN + 1], secret[SL_IAM_SECRET_LEN + 1];
    if (sl_iamstore_open(f->path, f->key, true, &f->store, err, sizeof err)) {
        fprintf(stderr, "  open: %s\n", err);
        return false;
    }
    sl_iam_tag tags[] = {{"team", "payments"}};
    if (sl_iamstore_lock(f->store) || sl_iamstore_user_add(f->store, "alice", tags, 1, 1) ||
        sl_iamstore_key_create(f->store, "alice", 1, akid, secret) || sl_iamstore_save(f->store))
        return false;
    sl_iamstore_unlock(f->store);
    if (sl_iamstore_identity(f->store, akid, NULL, ACCT, &f->alice)) return false;
    snprintf(f->principal, sizeof f->principal, "User:%s", f->alice.arn);
    f->iam = calloc(1, sizeof *f->iam);
    f->b = calloc(1, sizeof *f->b);
    if (!f->iam || !f->b) return false;
    f->iam->store = f->store;
    f->iam->arns =
        (sl_iam_arn_cfg){"us-east-1", ACCT, "payments", "abcd1234-0123-abcd-5678-1234abcd-1"};
    f->b->iam = f->iam;
    return true;
}

/* ---- requests ---- */

static bool c_topic_name(void *ctx, const sl_uuid *id, sl_arena *a, sl_str *name) { return false; }
static bool c_topic_exists(void *ctx, sl_str name) { return true; }
static bool c_auto_create(void *ctx) { return false; }
static void c_each_topic(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    fn(arg, sl_str_c("t"));
    fn(arg, sl_str_c("__sluice_audit"));
}
static void c_each_group(void *ctx, void (*fn)(void *, sl_str), void *arg) {
    fn(arg, sl_str_c("g"));
}
static void c_each_committed(void *ctx, sl_str group, void (*fn)(void *, sl_str), void *arg) {}
static const sl_catalog k_cat = {NULL,         c_topic_name, c_topic_exists,   c_auto_create,
                                 c_each_topic, c_each_group, c_each_committed, NULL};

static sl_produce_req_topic produce_topics[] = {{.name = {"t", 1}}};
static sl_produce_req r_produce = {.transactional_id = {NULL, -1},
                                   .acks = -1,
                                   .topic_data = produce_topics,
                                   .topic_data_count = 1};
static sl_metadata_req r_metadata_all = {.topics_count = -1,
                                         .include_topic_authorized_operations = true};
static sl_init_producer_id_req r_init_pid = {.transactional_id = {NULL, -1}, .producer_id = -1};

/* A request of API `key` by `principal` (IAM when id is set), named by its descriptor. */
static sl_req *make_req(sl_arena *a, sl_broker *b, int16_t key, int16_t version, const void *req,
                        const char *principal, const sl_iam_identity *id) {
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    rq->a = a;
    rq->b = b;
    rq->h.api_key = key;
    rq->h.api_version = version;
    rq->req = (void *)req;
    rq->principal = principal;
    rq->iam = id;
    rq->tls = true;
    rq->peer = "10.1.2.3:5000";
    sl_api_desc_for(key)->resources(rq, &k_cat);
    return rq;
}

static const sl_req_res *find(const sl_req *rq, int op, int rtype, const char *name) {
    for (int32_t i = 0; i < rq->nres; i++) {
        const sl_req_res *r = &rq->res[i];
        if (r->op == op && r->rtype == rtype && sl_str_eqc(r->name, name)) return r;
    }
    return NULL;
}

/* ---- tests ---- */

/* With no policy attached, an IAM principal is denied, and the reason names the action, the
 * ARN and "implicit deny"; super.users and ACLs that name the principal do not apply. */
SL_TEST(iam_authz_no_policy_is_implicit_deny_and_acls_do_not_apply) {
    fx f;
    CHECK(fx_init(&f));
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/acls", f.dir);
    sl_authorizer *az = NULL;
    /* the IAM principal is a super user and holds every ACL: neither counts for it */
    CHECK_EQ(sl_authorizer_new(path, f.principal, true, &az, err, sizeof err), SL_OK);
    sl_acl all = {SL_ACL_RES_TOPIC,
                  SL_ACL_PAT_LITERAL,
                  SL_ACL_OP_ALL,
                  SL_ACL_PERM_ALLOW,
                  "*",
                  f.principal,
                  "*"};
    sl_acl_set *set = NULL;
    CHECK_EQ(sl_acl_set_build(&all, 1, &set), SL_OK);
    CHECK_EQ(sl_authorizer_replace(az, set), SL_OK);
    f.b->authz = az;

    sl_arena *a = sl_arena_new(4096);
    sl_req *rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, f.principal, &f.alice);
    sl_authorize_stage(rq, az);
    const sl_req_res *r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t");
    CHECK(r && !r->allowed);
    CHECK_EQ(r->error, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK(r->decided_by);
    CHECK(!strcmp(r->decided_by,
                  "kafka-cluster:WriteData on " ARN_T "t: no statement allows it (implicit deny)"));
    sl_arena_free(a);

    /* the same broker's ACL principals keep ACLs: the same name without an IAM identity is a
     * super user here; bob is not */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, f.principal, NULL);
    sl_authorize_stage(rq, az);
    CHECK(find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t")->allowed);
    sl_arena_free(a);
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, "User:bob", NULL);
    sl_authorize_stage(rq, az);
    r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t");
    /* an ACL binds topic "*", so allow.everyone.if.no.acl.found does not apply: bob is denied
     * by the ACLs, and the reason is the authorizer's, not IAM's */
    CHECK(r && !r->allowed && r->decided_by && !strstr(r->decided_by, "kafka-cluster:"));
    sl_arena_free(a);
    sl_authorizer_free(az);
    fx_done(&f);
}

/* rq->iam set on a broker without an IAM context (or without a broker): everything denied,
 * authorized operations empty, listings empty. */
SL_TEST(iam_authz_without_iam_context_denies_everything) {
    fx f;
    CHECK(fx_init(&f));
    f.b->iam = NULL;
    for (int mode = 0; mode < 2; mode++) {
        sl_broker *b = mode == 0 ? f.b : NULL;
        sl_arena *a = sl_arena_new(4096);
        sl_req *rq = make_req(a, b, SL_API_PRODUCE, 9, &r_produce, f.principal, &f.alice);
        sl_authorize_stage(rq, NULL); /* no authorizer: an ACL principal would be allowed */
        const sl_req_res *r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t");
        CHECK(r && !r->allowed && r->decided_by && strstr(r->decided_by, "without IAM"));
        sl_arena_free(a);
        a = sl_arena_new(4096);
        rq = make_req(a, b, SL_API_METADATA, 12, &r_metadata_all, f.principal, &f.alice);
        sl_authorize_stage(rq, NULL);
        for (int32_t i = 0; i < rq->nres; i++) CHECK(!rq->res[i].allowed && !rq->res[i].ops);
        sl_arena_free(a);
        a = sl_arena_new(4096);
        rq = make_req(a, b, SL_API_INIT_PRODUCER_ID, 4, &r_init_pid, f.principal, &f.alice);
        sl_authorize_stage(rq, NULL);
        for (int32_t i = 0; i < rq->nres; i++) CHECK(!rq->res[i].allowed);
        /* late decisions (the gateway) take the same path */
        CHECK(!sl_authorize_late(rq, NULL, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, sl_str_c("g"), 0));
        sl_arena_free(a);
    }
    fx_done(&f);
}

/* ---- with policies ---- */

#define UUID        "abcd1234-0123-abcd-5678-1234abcd-1"
#define CLUSTER_ARN "arn:aws:kafka:us-east-1:" ACCT ":cluster/payments/" UUID
#define TOPICS      "arn:aws:kafka:us-east-1:" ACCT ":topic/payments/" UUID "/"
#define GROUPS      "arn:aws:kafka:us-east-1:" ACCT ":group/payments/" UUID "/"

static const char k_writer[] =
    "{\"Version\": \"2012-10-17\", \"Statement\": ["
    " {\"Sid\": \"Write\", \"Effect\": \"Allow\","
    "  \"Action\": [\"kafka-cluster:WriteData\", \"kafka-cluster:DescribeTopic\"],"
    "  \"Resource\": \"" TOPICS "*\"},"
    " {\"Effect\": \"Allow\", \"Action\": \"kafka-cluster:WriteDataIdempotently\","
    "  \"Resource\": \"" CLUSTER_ARN "\"},"
    " {\"Sid\": \"TeamGroups\", \"Effect\": \"Allow\","
    "  \"Action\": [\"kafka-cluster:AlterGroup\", \"kafka-cluster:DescribeGroup\"],"
    "  \"Resource\": \"" GROUPS "${aws:PrincipalTag/team}-*\","
    "  \"Condition\": {\"IpAddress\": {\"aws:SourceIp\": \"10.0.0.0/8\"},"
    "                  \"Bool\": {\"aws:SecureTransport\": \"true\"}}}]}";
static const char k_guard[] = "{\"Version\": \"2012-10-17\", \"Statement\": ["
                              " {\"Effect\": \"Allow\", \"Action\": \"kafka-cluster:Describe*\","
                              "  \"Resource\": \"*\"},"
                              " {\"Sid\": \"NoSecrets\", \"Effect\": \"Deny\","
                              "  \"Action\": \"kafka-cluster:*\","
                              "  \"Resource\": \"" TOPICS "secret*\"}]}";

static bool put_attach(fx *f, const char *name, const char *doc) {
    char err[512];
    if (sl_iamstore_lock(f->store)) return false;
    sl_err e = sl_iamstore_policy_put(f->store, name, doc, strlen(doc), err, sizeof err);
    if (e) fprintf(stderr, "  policy %s: %s\n", name, err);
    if (!e) e = sl_iamstore_attach(f->store, name, false, "alice");
    if (!e) e = sl_iamstore_save(f->store);
    sl_iamstore_unlock(f->store);
    return e == SL_OK;
}

static sl_produce_req_topic secret_topics[] = {{.name = {"secret1", 7}}};
static sl_produce_req r_produce_secret = {
    .transactional_id = {NULL, -1}, .acks = -1, .topic_data = secret_topics, .topic_data_count = 1};
static sl_join_group_req r_join_team = {.group_id = {"payments-app", 12}};
static sl_join_group_req r_join_other = {.group_id = {"fraud-app", 9}};

/* Allowed, implicit deny and explicit deny, each with the reason the audit trail records;
 * the request's context reaches the conditions (source address, TLS, principal tags). */
SL_TEST(iam_authz_policies_decide) {
    fx f;
    CHECK(fx_init(&f));
    CHECK(put_attach(&f, "writer", k_writer));
    CHECK(put_attach(&f, "guard", k_guard));

    sl_arena *a = sl_arena_new(4096);
    sl_req *rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    const sl_req_res *r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t");
    CHECK(r && r->allowed && !r->decided_by && !r->error);
    sl_arena_free(a);

    /* explicit deny: the statement is named, whichever action it refused */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce_secret, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "secret1");
    CHECK(r && !r->allowed && r->decided_by);
    CHECK_EQ(r->error, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    CHECK(!strcmp(r->decided_by, "kafka-cluster:WriteData on " TOPICS
                                 "secret1: explicit deny by policy guard statement 1 (Sid "
                                 "NoSecrets)"));
    sl_arena_free(a);

    /* a group named by the principal's tag, from 10/8 over TLS: allowed */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_JOIN_GROUP, 9, &r_join_team, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    CHECK(find(rq, SL_ACL_OP_READ, SL_ACL_RES_GROUP, "payments-app")->allowed);
    sl_arena_free(a);
    /* ... not over plaintext, not from elsewhere, not another team's group: implicit deny */
    for (int mode = 0; mode < 3; mode++) {
        a = sl_arena_new(4096);
        rq = make_req(a, f.b, SL_API_JOIN_GROUP, 9, mode == 2 ? &r_join_other : &r_join_team,
                      f.principal, &f.alice);
        if (mode == 0) rq->tls = false;
        if (mode == 1) rq->peer = "192.168.1.1:5000";
        sl_authorize_stage(rq, NULL);
        r = &rq->res[0];
        CHECK(!r->allowed && r->decided_by);
        CHECK_EQ(r->error, SL_KAFKA_GROUP_AUTHORIZATION_FAILED);
        char want[512];
        snprintf(want, sizeof want,
                 "kafka-cluster:AlterGroup on " GROUPS "%s: no statement allows it (implicit "
                 "deny)",
                 mode == 2 ? "fraud-app" : "payments-app");
        if (strcmp(r->decided_by, want)) fprintf(stderr, "  mode %d: %s\n", mode, r->decided_by);
        CHECK(!strcmp(r->decided_by, want));
        sl_arena_free(a);
    }

    /* a listing: authorized operations by policy; the audit topic is never an IAM principal's */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_METADATA, 12, &r_metadata_all, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    CHECK(find(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, "t")->allowed);
    int32_t ops = sl_req_ops(rq, SL_ACL_RES_TOPIC, sl_str_c("t"));
    CHECK_EQ(ops, 1 << SL_ACL_OP_WRITE | 1 << SL_ACL_OP_DESCRIBE | 1 << SL_ACL_OP_DESCRIBE_CONFIGS);
    CHECK(!find(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, "__sluice_audit")->allowed);
    CHECK_EQ(sl_req_ops(rq, SL_ACL_RES_TOPIC, sl_str_c("__sluice_audit")), 0);
    sl_arena_free(a);

    /* idempotent producer: WriteDataIdempotently on the cluster */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_INIT_PRODUCER_ID, 4, &r_init_pid, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    CHECK(sl_req_allowed_cluster(rq, SL_ACL_OP_IDEMPOTENT_WRITE));
    sl_arena_free(a);
    fx_done(&f);
}

/* A policy change made by another writer (the CLI) applies once the store is looked at again
 * (at most once a second); a refresh error keeps what was loaded. */
SL_TEST(iam_authz_policy_change_applies) {
    fx f;
    CHECK(fx_init(&f));
    CHECK(put_attach(&f, "writer", k_writer));
    sl_arena *a = sl_arena_new(4096);
    sl_req *rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    CHECK(find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t")->allowed);
    sl_arena_free(a);

    sl_iamstore *cli = NULL;
    char err[512];
    CHECK_EQ(sl_iamstore_open(f.path, f.key, false, &cli, err, sizeof err), SL_OK);
    CHECK_EQ(sl_iamstore_lock(cli), SL_OK);
    CHECK_EQ(sl_iamstore_detach(cli, "writer", false, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_save(cli), SL_OK);
    sl_iamstore_unlock(cli);
    sl_iamstore_free(cli);

    f.iam->last_refresh_ms -= 1001; /* a second has passed */
    a = sl_arena_new(4096);
    rq = make_req(a, f.b, SL_API_PRODUCE, 9, &r_produce, f.principal, &f.alice);
    sl_authorize_stage(rq, NULL);
    const sl_req_res *r = find(rq, SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "t");
    CHECK(r && !r->allowed && strstr(r->decided_by, "implicit deny"));
    sl_arena_free(a);
    fx_done(&f);
}
