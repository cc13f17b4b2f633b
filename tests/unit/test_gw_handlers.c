/* The gateway's control-path handlers (src/gateway/sl_gw_handlers.c), the parts that need no
 * upstream: the execute table against the API descriptors, the ApiVersions intersection, the
 * Metadata / ListGroups / DescribeGroups / DescribeTransactions / ListTransactions merges over
 * decoded answers, and late authorization (sl_authorize_late) for resources only an upstream
 * answer names. End-to-end behaviour through real clients is tests/interop's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "base/sl_kerr.h"
#include "gateway/sl_gateway.h"
#include "gateway/sl_gw_handlers.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "sl_test.h"

#define S(x) sl_str_c(x)

/* ---- the execute table ---- */

/* Every descriptor has a gateway handler (each API the pipeline can authorize is either
 * answered here or forwarded); every key without a descriptor (inter-broker, controller,
 * transaction markers, newer APIs) has none, so it is never forwarded. */
SL_TEST(gw_exec_covers_every_descriptor) {
    int missing = 0;
    for (int i = 0; sl_api_desc_at(i); i++) {
        const sl_api_desc *d = sl_api_desc_at(i);
        if (!sl_gw_exec(d->key)) {
            fprintf(stderr, "  api %d has a descriptor but no gateway handler\n", d->key);
            missing++;
        }
    }
    CHECK_EQ(missing, 0);
    int extra = 0;
    for (int16_t k = -1; k < 200; k++)
        if (!sl_api_desc_for(k) && sl_gw_exec(k)) {
            fprintf(stderr, "  api %d has a gateway handler but no descriptor\n", k);
            extra++;
        }
    CHECK_EQ(extra, 0);
    /* Named ones, for the reader: LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown,
     * WriteTxnMarkers, Vote, BrokerHeartbeat, DescribeQuorum. */
    static const int16_t never[] = {4, 5, 6, 7, 27, 52, 63, 55};
    for (size_t i = 0; i < sizeof never / sizeof *never; i++) CHECK(!sl_gw_exec(never[i]));
    /* The operators' transaction APIs are forwarded (after DESCRIBE on each id). */
    CHECK(sl_gw_exec(SL_API_DESCRIBE_TRANSACTIONS) && sl_gw_exec(SL_API_LIST_TRANSACTIONS));
}

/* ---- ApiVersions ---- */

typedef struct range_row {
    int16_t key, min, max;
} range_row;

/* An upstream like Kafka 2.0 in places: Metadata to v6, Produce and Fetch from v0, no
 * DescribeCluster, no SCRAM APIs, JoinGroup only above our range; DescribeTransactions (as
 * Kafka 3.0) but no ListTransactions. */
static const range_row k_upstream[] = {
    {SL_API_PRODUCE, 0, 6},       {SL_API_FETCH, 0, 8},
    {SL_API_METADATA, 0, 6},      {SL_API_API_VERSIONS, 0, 2},
    {SL_API_JOIN_GROUP, 40, 41},  {SL_API_FIND_COORDINATOR, 0, 2},
    {SL_API_OFFSET_COMMIT, 2, 4}, {SL_API_DESCRIBE_TRANSACTIONS, 0, 0},
};

static bool fake_range(void *ctx, int16_t key, int16_t *min, int16_t *max) {
    for (size_t i = 0; i < sizeof k_upstream / sizeof *k_upstream; i++)
        if (k_upstream[i].key == key) {
            *min = k_upstream[i].min;
            *max = k_upstream[i].max;
            return true;
        }
    return false;
}

static const sl_api_versions_resp_api_key *find_key(const sl_api_versions_resp_api_key *k,
                                                    int32_t n, int16_t key) {
    for (int32_t i = 0; i < n; i++)
        if (k[i].api_key == key) return &k[i];
    return NULL;
}

SL_TEST(gw_api_versions_intersection) {
    sl_api_versions_resp_api_key keys[128];
    int ndesc = 0;
    while (sl_api_desc_at(ndesc)) ndesc++;
    CHECK(ndesc <= 128);

    /* Before the upstream's versions are known: ApiVersions and SASL only. */
    int32_t n = sl_gw_advertised(false, fake_range, NULL, keys);
    CHECK_EQ(n, 3);
    CHECK(find_key(keys, n, SL_API_API_VERSIONS));
    CHECK(find_key(keys, n, SL_API_SASL_HANDSHAKE));
    CHECK(find_key(keys, n, SL_API_SASL_AUTHENTICATE));

    n = sl_gw_advertised(true, fake_range, NULL, keys);
    const sl_api_versions_resp_api_key *k;
    /* Intersections, with the magic-2 floors. */
    CHECK((k = find_key(keys, n, SL_API_METADATA)));
    CHECK_EQ(k->min_version, 0);
    CHECK_EQ(k->max_version, 6);
    CHECK((k = find_key(keys, n, SL_API_PRODUCE)));
    CHECK_EQ(k->min_version, 3);
    CHECK_EQ(k->max_version, 6);
    CHECK((k = find_key(keys, n, SL_API_FETCH)));
    CHECK_EQ(k->min_version, 4);
    CHECK_EQ(k->max_version, 8);
    CHECK((k = find_key(keys, n, SL_API_OFFSET_COMMIT)));
    CHECK_EQ(k->min_version, 2);
    CHECK_EQ(k->max_version, 4);
    CHECK((k = find_key(keys, n, SL_API_DESCRIBE_TRANSACTIONS)));
    CHECK_EQ(k->min_version, 0);
    CHECK_EQ(k->max_version, 0);
    /* The upstream lacks it, or the ranges do not meet: left out. */
    CHECK(!find_key(keys, n, SL_API_LIST_TRANSACTIONS));
    CHECK(!find_key(keys, n, SL_API_DESCRIBE_CLUSTER));
    CHECK(!find_key(keys, n, SL_API_CREATE_TOPICS));
    CHECK(!find_key(keys, n, SL_API_JOIN_GROUP));
    /* Answered by the gateway itself: our own range whatever the upstream has. */
    const sl_api_info *av = sl_api_lookup(SL_API_API_VERSIONS);
    CHECK((k = find_key(keys, n, SL_API_API_VERSIONS)));
    CHECK_EQ(k->max_version, av->max_version);
    const sl_api_info *us = sl_api_lookup(SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS);
    CHECK((k = find_key(keys, n, SL_API_DESCRIBE_USER_SCRAM_CREDENTIALS)));
    CHECK_EQ(k->min_version, us->min_version);
    CHECK_EQ(k->max_version, us->max_version);
    CHECK(find_key(keys, n, SL_API_CREATE_ACLS));
    /* Nothing the gateway does not execute, nothing twice. */
    for (int32_t i = 0; i < n; i++) {
        CHECK(sl_gw_exec(keys[i].api_key));
        CHECK(keys[i].min_version <= keys[i].max_version);
        for (int32_t j = i + 1; j < n; j++) CHECK(keys[i].api_key != keys[j].api_key);
    }
}

/* ---- the merges, with a fixed decision: names starting with "secret" are denied ---- */

static int16_t deny_secret(void *ctx, sl_str name) {
    return name.len >= 6 && !memcmp(name.p, "secret", 6) ? *(const int16_t *)ctx : 0;
}
static int32_t ops_len(void *ctx, sl_str name) { return 1000 + name.len; }

static const int16_t k_taf = 29, k_gaf = 30;

static sl_metadata_resp_topic up_topic(const char *name, uint8_t id) {
    sl_metadata_resp_topic t;
    sl_metadata_resp_topic_init(&t);
    t.name = S(name);
    t.topic_id.b[0] = id;
    t.partitions_count = 0;
    t.topic_authorized_operations = 0x7fffffff; /* the gateway identity's: must not leak */
    return t;
}

static const sl_metadata_resp_topic *md_find(const sl_metadata_resp *m, sl_str name) {
    for (int32_t i = 0; i < m->topics_count; i++)
        if (sl_str_eq(m->topics[i].name, name)) return &m->topics[i];
    return NULL;
}

/* The answer survives its own codec at `v` (no count or null left inconsistent). */
static bool md_roundtrip(sl_arena *a, int16_t v, const sl_metadata_resp *m, sl_metadata_resp *out) {
    sl_wr w;
    sl_wr_init(&w, a, 256);
    sl_metadata_resp_encode(&w, v, m);
    if (w.err) return false;
    sl_rd r = sl_rd_init(w.buf, w.len);
    return sl_metadata_resp_decode(&r, a, v, out) == SL_OK && sl_rd_left(&r) == 0;
}

/* Every topic asked for: the denied ones are left out without a word; authorized operations are
 * the client's (asked) or INT32_MIN (not asked), never the upstream's. */
SL_TEST(gw_metadata_merge_all_topics) {
    sl_arena *a = sl_arena_new(4096);
    sl_metadata_resp_topic ups[] = {up_topic("a", 1), up_topic("secret1", 2), up_topic("b", 3)};
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    m.topics = ups;
    m.topics_count = 3;
    sl_metadata_req req = {.topics_count = -1};
    sl_gw_authz az = {(void *)&k_taf, deny_secret, ops_len};
    CHECK(sl_gw_metadata_merge(a, &req, true, true, NULL, 0, &az, &m));
    CHECK_EQ(m.topics_count, 2);
    CHECK(md_find(&m, S("a")) && md_find(&m, S("b")) && !md_find(&m, S("secret1")));
    CHECK_EQ(md_find(&m, S("a"))->topic_authorized_operations, 1001);

    sl_metadata_resp_topic ups2[] = {up_topic("a", 1), up_topic("secret1", 2)};
    m.topics = ups2;
    m.topics_count = 2;
    CHECK(sl_gw_metadata_merge(a, &req, true, false, NULL, 0, &az, &m));
    CHECK_EQ(m.topics_count, 1);
    CHECK_EQ(m.topics[0].topic_authorized_operations, INT32_MIN);
    sl_metadata_resp back;
    CHECK(md_roundtrip(a, 12, &m, &back));
    CHECK_EQ(back.topics_count, 1);
    sl_arena_free(a);
}

/* Named topics: what the gateway answered itself is appended; an upstream entry the client may
 * not see becomes TOPIC_AUTHORIZATION_FAILED as the request named it (by id: no name); entries
 * the request did not ask for are dropped. */
SL_TEST(gw_metadata_merge_named_topics) {
    sl_arena *a = sl_arena_new(4096);
    sl_metadata_req_topic asked[] = {
        {.name = {"a", 1}},
        {.name = {"secret2", 7}},
        {.name = {NULL, -1}, .topic_id = {{9}}},
        {.name = {"secret3", 7}},
    };
    sl_metadata_req req = {.topics = asked, .topics_count = 4};
    /* The upstream answers a, secret2 (which a stale catalog let through), the id as a hidden
     * topic's name, and an extra topic nobody asked for. */
    sl_metadata_resp_topic ups[] = {up_topic("a", 1), up_topic("secret2", 2),
                                    up_topic("secret-by-id", 9), up_topic("extra", 4)};
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    m.topics = ups;
    m.topics_count = 4;
    m.brokers_count = 0;
    sl_gw_local_topic local[] = {{S("secret3"), {{0}}, k_taf}};
    sl_gw_authz az = {(void *)&k_taf, deny_secret, ops_len};
    CHECK(sl_gw_metadata_merge(a, &req, false, true, local, 1, &az, &m));
    CHECK_EQ(m.topics_count, 4);
    const sl_metadata_resp_topic *t;
    CHECK((t = md_find(&m, S("a"))) && t->error_code == 0 &&
          t->topic_authorized_operations == 1001);
    CHECK((t = md_find(&m, S("secret2"))) && t->error_code == k_taf);
    CHECK_EQ(t->topic_authorized_operations, INT32_MIN);
    CHECK((t = md_find(&m, S("secret3"))) && t->error_code == k_taf);
    CHECK(!md_find(&m, S("extra")) && !md_find(&m, S("secret-by-id")));
    /* The id's entry: denied, no name, the id as asked. */
    t = md_find(&m, SL_STR_NULL);
    CHECK(t && t->error_code == k_taf && t->topic_id.b[0] == 9);
    /* v12 carries null names and ids; v1 cannot carry a null name, so it is not tested there. */
    sl_metadata_resp back;
    CHECK(md_roundtrip(a, 12, &m, &back));
    CHECK_EQ(back.topics_count, 4);
    sl_arena_free(a);
}

SL_TEST(gw_list_groups_filter) {
    sl_list_groups_resp_group gs[] = {
        {.group_id = {"g1", 2}}, {.group_id = {"secret-g", 8}}, {.group_id = {"g2", 2}}};
    sl_list_groups_resp m = {.groups = gs, .groups_count = 3};
    sl_gw_authz az = {(void *)&k_gaf, deny_secret, ops_len};
    sl_gw_list_groups_filter(&m, &az);
    CHECK_EQ(m.groups_count, 2);
    CHECK(sl_str_eqc(m.groups[0].group_id, "g1") && sl_str_eqc(m.groups[1].group_id, "g2"));
}

/* AddPartitionsToTxn, all or nothing as in Kafka: nothing denied forwards as is; one denied
 * topic keeps the whole request here (its partitions TOPIC_AUTHORIZATION_FAILED, the others
 * OPERATION_NOT_ATTEMPTED, request order); a denied transactional id fails every partition. The
 * answer survives its codec at every version the gateway serves. */
SL_TEST(gw_add_partitions_to_txn_all_or_nothing) {
    sl_arena *a = sl_arena_new(4096);
    int32_t p01[] = {0, 1}, p2[] = {2};
    sl_add_partitions_to_txn_req_topic ts[] = {
        {.name = S("t"), .partitions = p01, .partitions_count = 2},
        {.name = S("secret-t"), .partitions = p2, .partitions_count = 1}};
    sl_add_partitions_to_txn_req q = {.transactional_id = S("x"), .topics = ts, .topics_count = 1};
    sl_gw_authz az = {(void *)&k_taf, deny_secret, NULL};
    sl_add_partitions_to_txn_resp m;
    sl_add_partitions_to_txn_resp_init(&m);
    CHECK_EQ(sl_gw_add_partitions_to_txn_local(a, &q, 0, &az, &m), 1);

    q.topics_count = 2;
    CHECK_EQ(sl_gw_add_partitions_to_txn_local(a, &q, 0, &az, &m), 0);
    CHECK_EQ(m.results_count, 2);
    CHECK(sl_str_eqc(m.results[0].name, "t") && sl_str_eqc(m.results[1].name, "secret-t"));
    CHECK_EQ(m.results[0].results_count, 2);
    CHECK_EQ(m.results[0].results[1].partition_index, 1);
    CHECK_EQ(m.results[0].results[0].error_code, SL_KAFKA_OPERATION_NOT_ATTEMPTED);
    CHECK_EQ(m.results[0].results[1].error_code, SL_KAFKA_OPERATION_NOT_ATTEMPTED);
    CHECK_EQ(m.results[1].results_count, 1);
    CHECK_EQ(m.results[1].results[0].partition_index, 2);
    CHECK_EQ(m.results[1].results[0].error_code, k_taf);
    /* v0-3: v4+ (broker to broker) has no per-topic answer and is answered on its own. */
    const sl_api_info *in = sl_api_lookup(SL_API_ADD_PARTITIONS_TO_TXN);
    CHECK(in->max_version >= 3);
    for (int16_t v = in->min_version; v <= 3; v++) {
        sl_wr w;
        sl_wr_init(&w, a, 256);
        sl_add_partitions_to_txn_resp_encode(&w, v, &m);
        sl_add_partitions_to_txn_resp back;
        sl_rd r = sl_rd_init(w.buf, w.len);
        CHECK(!w.err && sl_add_partitions_to_txn_resp_decode(&r, a, v, &back) == SL_OK);
        CHECK(back.results_count == 2 && back.results[1].results[0].error_code == k_taf);
    }

    sl_add_partitions_to_txn_resp_init(&m);
    q.topics_count = 1;
    CHECK_EQ(sl_gw_add_partitions_to_txn_local(
                 a, &q, SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, &az, &m),
             0);
    CHECK_EQ(m.results_count, 1);
    CHECK_EQ(m.results[0].results[0].error_code, SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    CHECK_EQ(m.results[0].results[1].error_code, SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    sl_arena_free(a);
}

/* Request order; denied groups (not forwarded) get GROUP_AUTHORIZATION_FAILED; one the upstream
 * left out gets a retriable error; authorized operations are the client's. */
SL_TEST(gw_describe_groups_merge) {
    sl_arena *a = sl_arena_new(4096);
    sl_str asked[] = {S("secret-g"), S("g1"), S("gone")};
    sl_describe_groups_req req = {
        .groups = asked, .groups_count = 3, .include_authorized_operations = true};
    sl_describe_groups_resp_group up[1];
    sl_describe_groups_resp_group_init(&up[0]);
    up[0].group_id = S("g1");
    up[0].group_state = S("Stable");
    up[0].members_count = 0;
    up[0].authorized_operations = 0x7fffffff;
    sl_describe_groups_resp m;
    sl_describe_groups_resp_init(&m);
    m.groups = up;
    m.groups_count = 1;
    sl_gw_authz az = {(void *)&k_gaf, deny_secret, ops_len};
    CHECK(sl_gw_describe_groups_merge(a, &req, true, &az, &m));
    CHECK_EQ(m.groups_count, 3);
    CHECK(sl_str_eqc(m.groups[0].group_id, "secret-g"));
    CHECK_EQ(m.groups[0].error_code, k_gaf);
    CHECK_EQ(m.groups[0].authorized_operations, INT32_MIN);
    CHECK(sl_str_eqc(m.groups[1].group_id, "g1") && sl_str_eqc(m.groups[1].group_state, "Stable"));
    CHECK_EQ(m.groups[1].error_code, 0);
    CHECK_EQ(m.groups[1].authorized_operations, 1002);
    CHECK_EQ(m.groups[2].error_code, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    /* Encodes at v5 (flexible) and v0. */
    for (int16_t v = 0; v <= 5; v += 5) {
        sl_wr w;
        sl_wr_init(&w, a, 256);
        sl_describe_groups_resp_encode(&w, v, &m);
        CHECK(!w.err);
        sl_describe_groups_resp back;
        sl_rd r = sl_rd_init(w.buf, w.len);
        CHECK(sl_describe_groups_resp_decode(&r, a, v, &back) == SL_OK);
        CHECK_EQ(back.groups_count, 3);
    }
    sl_arena_free(a);
}

/* Request order; a denied id (not forwarded) gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, one the
 * upstream left out a retriable error, one it answered without being asked is dropped; the
 * topics the client may not DESCRIBE are left out of an allowed id's partitions. */
SL_TEST(gw_describe_transactions_merge) {
    sl_arena *a = sl_arena_new(4096);
    const int16_t k_tidaf = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    sl_str asked[] = {S("secret-tx"), S("tx1"), S("gone"), S("tx1")};
    sl_describe_transactions_req req = {.transactional_ids = asked, .transactional_ids_count = 4};
    int32_t p01[] = {0, 1}, p2[] = {2};
    sl_describe_transactions_resp_topic tt[] = {
        {.topic = S("t"), .partitions = p01, .partitions_count = 2},
        {.topic = S("secret-t"), .partitions = p2, .partitions_count = 1},
        {.topic = S("u"), .partitions = p2, .partitions_count = 1}};
    sl_describe_transactions_resp_state up[2];
    for (int i = 0; i < 2; i++) sl_describe_transactions_resp_state_init(&up[i]);
    up[0].transactional_id = S("not-asked");
    up[0].transaction_state = S("Ongoing");
    up[0].topics_count = 0;
    up[1].transactional_id = S("tx1");
    up[1].transaction_state = S("Ongoing");
    up[1].producer_id = 7;
    up[1].producer_epoch = 2;
    up[1].transaction_timeout_ms = 60000;
    up[1].topics = tt;
    up[1].topics_count = 3;
    sl_describe_transactions_resp m;
    sl_describe_transactions_resp_init(&m);
    m.transaction_states = up;
    m.transaction_states_count = 2;
    sl_gw_authz txn = {(void *)&k_tidaf, deny_secret, NULL};
    sl_gw_authz topic = {(void *)&k_taf, deny_secret, NULL};
    CHECK(sl_gw_describe_transactions_merge(a, &req, &txn, &topic, &m));
    CHECK_EQ(m.transaction_states_count, 4);
    const sl_describe_transactions_resp_state *s0 = &m.transaction_states[0];
    CHECK(sl_str_eqc(s0->transactional_id, "secret-tx") && s0->error_code == k_tidaf);
    CHECK(s0->producer_id == -1 && s0->topics_count == 0);
    for (int i = 1; i <= 3; i += 2) {
        const sl_describe_transactions_resp_state *s = &m.transaction_states[i];
        CHECK(sl_str_eqc(s->transactional_id, "tx1") && s->error_code == 0);
        CHECK(sl_str_eqc(s->transaction_state, "Ongoing") && s->producer_id == 7);
        CHECK_EQ(s->topics_count, 2);
        CHECK(sl_str_eqc(s->topics[0].topic, "t") && s->topics[0].partitions_count == 2);
        CHECK(sl_str_eqc(s->topics[1].topic, "u"));
    }
    CHECK(sl_str_eqc(m.transaction_states[2].transactional_id, "gone"));
    CHECK_EQ(m.transaction_states[2].error_code, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    /* The upstream's entry itself is left as it was (its array is not filtered in place). */
    CHECK_EQ(up[1].topics_count, 3);
    sl_wr w;
    sl_wr_init(&w, a, 256);
    sl_describe_transactions_resp_encode(&w, 0, &m);
    CHECK(!w.err);
    sl_describe_transactions_resp back;
    sl_rd r = sl_rd_init(w.buf, w.len);
    CHECK(sl_describe_transactions_resp_decode(&r, a, 0, &back) == SL_OK);
    CHECK_EQ(back.transaction_states_count, 4);
    CHECK_EQ(back.transaction_states[1].topics_count, 2);

    /* Everything denied (answered here: no upstream answer at all). */
    sl_describe_transactions_resp_init(&m);
    m.transaction_states_count = 0;
    req.transactional_ids_count = 1;
    CHECK(sl_gw_describe_transactions_merge(a, &req, &txn, &topic, &m));
    CHECK_EQ(m.transaction_states_count, 1);
    CHECK_EQ(m.transaction_states[0].error_code, k_tidaf);
    sl_arena_free(a);
}

SL_TEST(gw_list_transactions_filter) {
    sl_list_transactions_resp_state ts[] = {{.transactional_id = {"secret-tx", 9}},
                                            {.transactional_id = {"tx1", 3}, .producer_id = 5},
                                            {.transactional_id = {"secret", 6}}};
    sl_list_transactions_resp m = {.transaction_states = ts, .transaction_states_count = 3};
    const int16_t k_tidaf = SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    sl_gw_authz az = {(void *)&k_tidaf, deny_secret, NULL};
    sl_gw_list_transactions_filter(&m, &az);
    CHECK_EQ(m.transaction_states_count, 1);
    CHECK(sl_str_eqc(m.transaction_states[0].transactional_id, "tx1"));
    CHECK_EQ(m.transaction_states[0].producer_id, 5);
    /* A null array stays null. */
    sl_list_transactions_resp none = {.transaction_states_count = -1};
    sl_gw_list_transactions_filter(&none, &az);
    CHECK_EQ(none.transaction_states_count, -1);
}

/* ---- late authorization ---- */

SL_TEST(gw_authorize_late) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sl_gwh_XXXXXX");
    CHECK(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/acls", dir);
    sl_authorizer *az = NULL;
    CHECK(!sl_authorizer_new(path, "User:admin", false, &az, err, sizeof err));
    static const sl_acl rules[] = {
        {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_DESCRIBE, SL_ACL_PERM_ALLOW, "a",
         "User:alice", "*"},
    };
    sl_acl_set *s = NULL;
    CHECK(!sl_acl_set_build(rules, 1, &s) && !sl_authorizer_replace(az, s));
    sl_arena *a = sl_arena_new(4096);
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    rq->a = a;
    rq->h.api_key = SL_API_METADATA;
    rq->principal = "User:alice";
    rq->peer = "127.0.0.1:5000";
    /* Named by the stage: b, denied and logged. */
    sl_req_need(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("b"), 0);
    sl_authorize_stage(rq, az);
    CHECK_EQ(rq->nres, 1);
    CHECK(!sl_authorize_late(rq, az, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("b"), SL_AZ_QUIET));
    CHECK_EQ(rq->nres, 1); /* its decision, not a new one */
    /* Only the answer names a and c: decided now, recorded like the stage's. */
    CHECK(sl_authorize_late(rq, az, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("a"), SL_AZ_QUIET));
    CHECK(!sl_authorize_late(rq, az, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("c"), SL_AZ_QUIET));
    CHECK_EQ(rq->nres, 3);
    CHECK(sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("a")));
    CHECK(!sl_req_allowed(rq, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("c")));
    CHECK_EQ(rq->res[2].error, k_taf);
    /* Asked again: the same decision, no new entry. */
    CHECK(!sl_authorize_late(rq, az, SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, S("c"), SL_AZ_QUIET));
    CHECK_EQ(rq->nres, 3);
    /* Authorized operations, decided late: DESCRIBE on a, nothing on c. */
    CHECK(sl_authorize_late(rq, az, SL_ACL_OP_ALL, SL_ACL_RES_TOPIC, S("a"), SL_AZ_OPS));
    CHECK_EQ(sl_req_ops(rq, SL_ACL_RES_TOPIC, S("a")), 1 << SL_ACL_OP_DESCRIBE);
    CHECK(!sl_authorize_late(rq, az, SL_ACL_OP_ALL, SL_ACL_RES_TOPIC, S("c"), SL_AZ_OPS));
    CHECK_EQ(sl_req_ops(rq, SL_ACL_RES_TOPIC, S("c")), 0);
    /* Without an authorizer every decision is an allow. */
    CHECK(sl_authorize_late(rq, NULL, SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, S("g"), 0));
    sl_arena_free(a);
    sl_authorizer_free(az);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}
