/* DescribeProducers (sl_h_producers.c) and AddPartitionsToTxn v4 / EndTxn v5 (sl_h_txn.c)
 * through a real broker over loopback, with the ACL authorizer on: the connection is
 * User:ANONYMOUS, a super user in one broker and granted nothing in the other. Producer state
 * is made the way the produce path makes it (log append, producer state, sl_txnpart_on_append)
 * so every shape the answer reports can be set up exactly: an idempotent producer, a
 * transaction open since before the LSO's owner, one reopened after its marker. */
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "loop_broker.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "txn_append.h"

/* ---- a broker and a client ---- */

/* A loopback broker with the authorizer on and topic "t2" (2 partitions); `super`: ANONYMOUS
 * may do everything, else nothing. */
static sl_broker *broker_new(char *dir, bool super) {
    const char *const extra[][2] = {
        {"sluice.authorizer.enable", "true"},
        {"super.users", super ? "User:ANONYMOUS" : "User:nobody"},
    };
    sl_broker *b = loop_broker_new(dir, "sl_txnapis", extra, 2);
    if (b && sl_topics_create(b->topics, sl_str_c("t2"), 2, NULL, false, NULL) != SL_OK) {
        loop_broker_free(b);
        return NULL;
    }
    return b;
}

static void broker_done(sl_broker *b, const char *dir) {
    if (b) loop_broker_free(b);
    loop_broker_rmdir(dir);
}

/* ---- DescribeProducers ---- */

static sl_describe_producers_req dp_req(sl_describe_producers_req_topic *ts, int32_t *t_parts,
                                        int32_t *n_parts) {
    ts[0] = (sl_describe_producers_req_topic){
        .name = sl_str_c("t2"), .partition_indexes = t_parts, .partition_indexes_count = 3};
    ts[1] = (sl_describe_producers_req_topic){
        .name = sl_str_c("nope"), .partition_indexes = n_parts, .partition_indexes_count = 1};
    return (sl_describe_producers_req){.topics = ts, .topics_count = 2};
}

static const sl_describe_producers_resp_producer *
find_producer(const sl_describe_producers_resp_partition *p, int64_t pid) {
    for (int32_t i = 0; i < p->active_producers_count; i++)
        if (p->active_producers[i].producer_id == pid) return &p->active_producers[i];
    return NULL;
}

/* Partition t2-0, as built below:
 *   0-1 plain | 2-4 idempotent 100 (epoch 2, seq 0-2) | 5-6 txn 300 (open) | 7-8 txn 200 |
 *   9 COMMIT 200 | 10-11 txn 200 again (open, seq 2-3)
 * The LSO is 5 (300's): 200's current transaction starts at 10, not at its first batch after
 * the LSO (7, whose transaction the marker at 9 ended). Partition t2-1 has no producer; t2-7 and
 * topic "nope" do not exist. */
SL_TEST(txnapi_describe_producers_reports_partition_state) {
    char dir[64] = "";
    sl_broker *b = broker_new(dir, true);
    CHECK(b);
    sl_arena *a = sl_arena_new(1 << 16);
    int fd = loop_broker_connect(b->listeners[0].port);
    sl_partition *p = sl_topics_partition(b->topics, sl_str_c("t2"), 0);
    int64_t before = sl_wall_ms();
    bool built = a && fd >= 0 && p && append(p, -1, 0, 0, 2, false) == 0 &&
                 append(p, 100, 2, 0, 3, false) == 2 && append(p, 300, 0, 0, 2, true) == 5 &&
                 append(p, 200, 1, 0, 2, true) == 7 &&
                 sl_txnpart_write_marker(p, 200, 1, true, 0) == SL_OK &&
                 append(p, 200, 1, 2, 2, true) == 10;
    int64_t lso = p ? sl_txnpart_lso(p) : -1;
    sl_describe_producers_req_topic ts[2];
    int32_t t_parts[] = {0, 1, 7}, n_parts[] = {0};
    sl_describe_producers_req q = dp_req(ts, t_parts, n_parts);
    sl_describe_producers_resp r;
    bool answered = built && loop_broker_call(b, fd, SL_API_DESCRIBE_PRODUCERS, 0, &q, a, &r);
    if (fd >= 0) close(fd);
    broker_done(b, dir);
    CHECK(built);
    CHECK_EQ(lso, 5);
    CHECK(answered);
    CHECK_EQ(r.topics_count, 2);
    CHECK(sl_str_eqc(r.topics[0].name, "t2") && sl_str_eqc(r.topics[1].name, "nope"));
    CHECK_EQ(r.topics[0].partitions_count, 3);
    const sl_describe_producers_resp_partition *p0 = &r.topics[0].partitions[0];
    CHECK_EQ(p0->partition_index, 0);
    CHECK_EQ(p0->error_code, 0);
    CHECK_EQ(p0->active_producers_count, 3);
    const sl_describe_producers_resp_producer *idem = find_producer(p0, 100),
                                              *t200 = find_producer(p0, 200),
                                              *t300 = find_producer(p0, 300);
    CHECK(idem && t200 && t300);
    CHECK_EQ(idem->producer_epoch, 2);
    CHECK_EQ(idem->last_sequence, 2);
    CHECK_EQ(idem->current_txn_start_offset, -1);
    CHECK_EQ(idem->coordinator_epoch, -1); /* no transactional id holds it */
    CHECK(idem->last_timestamp >= before && idem->last_timestamp <= sl_wall_ms());
    CHECK_EQ(t300->producer_epoch, 0);
    CHECK_EQ(t300->last_sequence, 1);
    CHECK_EQ(t300->current_txn_start_offset, 5);
    CHECK_EQ(t200->producer_epoch, 1);
    CHECK_EQ(t200->last_sequence, 3);
    CHECK_EQ(t200->current_txn_start_offset, 10);
    const sl_describe_producers_resp_partition *p1 = &r.topics[0].partitions[1];
    CHECK_EQ(p1->partition_index, 1);
    CHECK_EQ(p1->error_code, 0);
    CHECK_EQ(p1->active_producers_count, 0);
    CHECK_EQ(r.topics[0].partitions[2].partition_index, 7);
    CHECK_EQ(r.topics[0].partitions[2].error_code, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(r.topics[1].partitions_count, 1);
    CHECK_EQ(r.topics[1].partitions[0].error_code, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    sl_arena_free(a);
}

/* Without READ on the topic every partition answers TOPIC_AUTHORIZATION_FAILED, with no
 * producers, whether or not it exists (a denied caller learns nothing). */
SL_TEST(txnapi_describe_producers_needs_read) {
    char dir[64] = "";
    sl_broker *b = broker_new(dir, false);
    CHECK(b);
    sl_arena *a = sl_arena_new(1 << 16);
    int fd = loop_broker_connect(b->listeners[0].port);
    sl_partition *p = sl_topics_partition(b->topics, sl_str_c("t2"), 0);
    bool built = a && fd >= 0 && p && append(p, 100, 0, 0, 1, false) == 0;
    sl_describe_producers_req_topic ts[2];
    int32_t t_parts[] = {0, 1, 7}, n_parts[] = {0};
    sl_describe_producers_req q = dp_req(ts, t_parts, n_parts);
    sl_describe_producers_resp r;
    bool answered = built && loop_broker_call(b, fd, SL_API_DESCRIBE_PRODUCERS, 0, &q, a, &r);
    if (fd >= 0) close(fd);
    broker_done(b, dir);
    CHECK(built && answered);
    CHECK_EQ(r.topics_count, 2);
    int n = 0;
    for (int32_t i = 0; i < r.topics_count; i++)
        for (int32_t j = 0; j < r.topics[i].partitions_count; j++, n++) {
            CHECK_EQ(r.topics[i].partitions[j].error_code, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
            CHECK_EQ(r.topics[i].partitions[j].active_producers_count, 0);
        }
    CHECK_EQ(n, 4);
    sl_arena_free(a);
}

/* ---- AddPartitionsToTxn v4, EndTxn v5 ---- */

typedef struct txn_id {
    int64_t pid;
    int16_t epoch;
} txn_id;

static bool init_txn(sl_broker *b, int fd, sl_arena *a, const char *tid, txn_id *out) {
    sl_init_producer_id_req q;
    sl_init_producer_id_req_init(&q);
    q.transactional_id = sl_str_c(tid);
    q.transaction_timeout_ms = 60000;
    sl_init_producer_id_resp r;
    if (!loop_broker_call(b, fd, SL_API_INIT_PRODUCER_ID, 4, &q, a, &r) || r.error_code)
        return false;
    *out = (txn_id){r.producer_id, r.producer_epoch};
    return true;
}

/* One v4 transaction entry over topic "t2". */
static sl_add_partitions_to_txn_req_transaction
v4_txn(sl_arena *a, const char *tid, txn_id id, bool verify, const int32_t *parts, int32_t n) {
    sl_add_partitions_to_txn_req_txn_topic *t = sl_arena_calloc(a, 1, sizeof *t);
    int32_t *pp = sl_arena_calloc(a, (size_t)n, sizeof *pp);
    memcpy(pp, parts, (size_t)n * sizeof *pp);
    *t = (sl_add_partitions_to_txn_req_txn_topic){sl_str_c("t2"), pp, n};
    return (sl_add_partitions_to_txn_req_transaction){.transactional_id = sl_str_c(tid),
                                                      .producer_id = id.pid,
                                                      .producer_epoch = id.epoch,
                                                      .verify_only = verify,
                                                      .topics = t,
                                                      .topics_count = 1};
}

static bool v4_call(sl_broker *b, int fd, sl_arena *a, sl_add_partitions_to_txn_req_transaction *x,
                    int32_t n, sl_add_partitions_to_txn_resp *r) {
    sl_add_partitions_to_txn_req q;
    sl_add_partitions_to_txn_req_init(&q);
    q.transactions = x;
    q.transactions_count = n;
    return loop_broker_call(b, fd, SL_API_ADD_PARTITIONS_TO_TXN, 4, &q, a, r);
}

/* Partition `part` of topic "t2" in transaction `i` of a v4 answer: its error, or -999 when the
 * answer does not name it. */
static int err_of(const sl_add_partitions_to_txn_resp *r, int32_t i, int32_t part) {
    if (i >= r->results_by_transaction_count) return -999;
    const sl_add_partitions_to_txn_resp_txn_result *x = &r->results_by_transaction[i];
    for (int32_t t = 0; t < x->topic_results_count; t++) {
        if (!sl_str_eqc(x->topic_results[t].name, "t2")) continue;
        for (int32_t j = 0; j < x->topic_results[t].results_by_partition_count; j++)
            if (x->topic_results[t].results_by_partition[j].partition_index == part)
                return x->topic_results[t].results_by_partition[j].partition_error_code;
    }
    return -999;
}

/* A failed step of a scenario run against a live broker: its line, so the test can free the
 * broker (and put the process state back) before it reports. */
#define STEP(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) return __LINE__;                                                              \
    } while (0)

/* The batched form: per-transaction answers; verify_only adds nothing and tells which
 * partitions are in the ongoing transaction; an unknown partition fails its transaction (the
 * rest OPERATION_NOT_ATTEMPTED); a stale epoch or an unknown id fails every partition of its
 * own transaction only. EndTxn v5 answers the producer id and epoch (unchanged: no bump). A
 * transactional producer's batch then shows in DescribeProducers with the coordinator's epoch.
 * Returns 0, or the line of the step that failed. */
static int v4_scenario(sl_broker *b, sl_arena *a, int fd) {
    txn_id id = {-1, -1};
    bool ok = init_txn(b, fd, a, "tx", &id);
    /* t2-0 added the client's way (v3). */
    int32_t p0[] = {0}, p1[] = {1}, p01[] = {0, 1}, p09[] = {0, 9};
    sl_add_partitions_to_txn_req_topic t3 = {sl_str_c("t2"), p0, 1};
    sl_add_partitions_to_txn_req q3;
    sl_add_partitions_to_txn_req_init(&q3);
    q3.transactional_id = sl_str_c("tx");
    q3.producer_id = id.pid;
    q3.producer_epoch = id.epoch;
    q3.topics = &t3;
    q3.topics_count = 1;
    sl_add_partitions_to_txn_resp r3;
    ok = ok && loop_broker_call(b, fd, SL_API_ADD_PARTITIONS_TO_TXN, 3, &q3, a, &r3) &&
         r3.results_count == 1 && r3.results[0].results[0].error_code == 0;
    STEP(ok);

    sl_add_partitions_to_txn_req_transaction x[2];
    sl_add_partitions_to_txn_resp r;
    /* verify: t2-0 is in, t2-1 is not; an unknown id fails alone. */
    x[0] = v4_txn(a, "tx", id, true, p01, 2);
    x[1] = v4_txn(a, "other", (txn_id){id.pid + 1000, 0}, true, p0, 1);
    STEP(v4_call(b, fd, a, x, 2, &r));
    STEP(r.error_code == 0);
    STEP(r.results_by_transaction_count == 2);
    STEP(sl_str_eqc(r.results_by_transaction[0].transactional_id, "tx"));
    STEP(err_of(&r, 0, 0) == 0);
    STEP(err_of(&r, 0, 1) == SL_KAFKA_INVALID_TXN_STATE);
    STEP(sl_str_eqc(r.results_by_transaction[1].transactional_id, "other"));
    STEP(err_of(&r, 1, 0) == SL_KAFKA_INVALID_PRODUCER_ID_MAPPING);
    /* verify_only wrote nothing: t2-1 is still not in. */
    x[0] = v4_txn(a, "tx", id, true, p1, 1);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 1) == SL_KAFKA_INVALID_TXN_STATE);
    /* add t2-1 (not verify), then both verify. */
    x[0] = v4_txn(a, "tx", id, false, p1, 1);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 1) == 0);
    x[0] = v4_txn(a, "tx", id, true, p01, 2);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 0) == 0);
    STEP(err_of(&r, 0, 1) == 0);
    /* an unknown partition: its own error, the other not attempted. */
    x[0] = v4_txn(a, "tx", id, false, p09, 2);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 9) == SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    STEP(err_of(&r, 0, 0) == SL_KAFKA_OPERATION_NOT_ATTEMPTED);
    /* a stale epoch: fenced, every partition of that transaction. */
    x[0] = v4_txn(a, "tx", (txn_id){id.pid, (int16_t)(id.epoch + 1)}, true, p01, 2);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 0) == SL_KAFKA_PRODUCER_FENCED);
    STEP(err_of(&r, 0, 1) == SL_KAFKA_PRODUCER_FENCED);

    /* The producer's batch on t2-0: described with the coordinator's epoch and its start. */
    sl_partition *p = sl_topics_partition(b->topics, sl_str_c("t2"), 0);
    STEP(p);
    int64_t base = append(p, id.pid, id.epoch, 0, 3, true);
    STEP(base >= 0);
    sl_describe_producers_req_topic dt = {sl_str_c("t2"), p0, 1};
    sl_describe_producers_req dq = {.topics = &dt, .topics_count = 1};
    sl_describe_producers_resp dr;
    STEP(loop_broker_call(b, fd, SL_API_DESCRIBE_PRODUCERS, 0, &dq, a, &dr));
    STEP(dr.topics_count == 1 && dr.topics[0].partitions_count == 1);
    const sl_describe_producers_resp_producer *me =
        find_producer(&dr.topics[0].partitions[0], id.pid);
    STEP(me);
    STEP(me->producer_epoch == id.epoch);
    STEP(me->last_sequence == 2);
    STEP(me->coordinator_epoch == 0);
    STEP(me->current_txn_start_offset == base);

    /* EndTxn v5: committed; the answer carries the pair to go on with. */
    sl_end_txn_req eq;
    sl_end_txn_req_init(&eq);
    eq.transactional_id = sl_str_c("tx");
    eq.producer_id = id.pid;
    eq.producer_epoch = id.epoch;
    eq.committed = true;
    sl_end_txn_resp er;
    STEP(loop_broker_call(b, fd, SL_API_END_TXN, 5, &eq, a, &er));
    STEP(er.error_code == 0);
    STEP(er.producer_id == id.pid);
    STEP(er.producer_epoch == id.epoch);
    /* Complete: nothing is in a transaction any more; the marker closed it on t2-0. */
    x[0] = v4_txn(a, "tx", id, true, p0, 1);
    STEP(v4_call(b, fd, a, x, 1, &r));
    STEP(err_of(&r, 0, 0) == SL_KAFKA_INVALID_TXN_STATE);
    STEP(loop_broker_call(b, fd, SL_API_DESCRIBE_PRODUCERS, 0, &dq, a, &dr));
    me = find_producer(&dr.topics[0].partitions[0], id.pid);
    STEP(me);
    STEP(me->current_txn_start_offset == -1);
    /* EndTxn v5 refused: the pair is not given. */
    eq.producer_epoch = (int16_t)(id.epoch + 1);
    STEP(loop_broker_call(b, fd, SL_API_END_TXN, 5, &eq, a, &er));
    STEP(er.error_code != 0);
    STEP(er.producer_id == -1);
    STEP(er.producer_epoch == -1);
    return 0;
}

SL_TEST(txnapi_add_partitions_v4_verify_and_add) {
    char dir[64] = "";
    sl_broker *b = broker_new(dir, true);
    CHECK(b);
    sl_arena *a = sl_arena_new(1 << 18);
    int fd = loop_broker_connect(b->listeners[0].port);
    int failed_at = a && fd >= 0 ? v4_scenario(b, a, fd) : -1;
    if (fd >= 0) close(fd);
    broker_done(b, dir);
    sl_arena_free(a);
    if (failed_at) fprintf(stderr, "  %s:%d: this step failed\n", __FILE__, failed_at);
    CHECK_EQ(failed_at, 0);
}

/* v4 is for brokers: without CLUSTER_ACTION the answer is the top-level
 * CLUSTER_AUTHORIZATION_FAILED and no transaction is looked at. */
SL_TEST(txnapi_add_partitions_v4_needs_cluster_action) {
    char dir[64] = "";
    sl_broker *b = broker_new(dir, false);
    CHECK(b);
    sl_arena *a = sl_arena_new(1 << 16);
    int fd = loop_broker_connect(b->listeners[0].port);
    int32_t p0[] = {0};
    sl_add_partitions_to_txn_req_transaction x = a ? v4_txn(a, "tx", (txn_id){1, 0}, false, p0, 1)
                                                   : (sl_add_partitions_to_txn_req_transaction){0};
    sl_add_partitions_to_txn_resp r;
    bool answered = a && fd >= 0 && v4_call(b, fd, a, &x, 1, &r);
    if (fd >= 0) close(fd);
    broker_done(b, dir);
    CHECK(answered);
    CHECK_EQ(r.error_code, SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    CHECK_EQ(r.results_by_transaction_count, 0);
    sl_arena_free(a);
}

/* ---- OffsetFetch require_stable (KIP-447) ---- */

static int16_t fetch_offset(sl_broker *b, int fd, sl_arena *a, bool stable, int64_t *off) {
    int32_t parts[1] = {0};
    sl_offset_fetch_req_topic ft = {sl_str_c("t2"), parts, 1};
    sl_offset_fetch_req rq = {
        .group_id = sl_str_c("g"), .topics = &ft, .topics_count = 1, .require_stable = stable};
    sl_offset_fetch_resp r;
    sl_offset_fetch_resp_init(&r);
    if (!loop_broker_call(b, fd, SL_API_OFFSET_FETCH, 7, &rq, a, &r) || r.topics_count != 1 ||
        r.topics[0].partitions_count != 1)
        return -2;
    *off = r.topics[0].partitions[0].committed_offset;
    return r.topics[0].partitions[0].error_code;
}

/* An offset sent to a transaction (TxnOffsetCommit) and not yet committed is unstable: an
 * OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for that partition (librdkafka's
 * read_committed consumers ask so, and retry), one without it the committed offset before the
 * transaction; once EndTxn commits, both get the transaction's offset. */
SL_TEST(txnapi_offset_fetch_require_stable) {
    char dir[64];
    sl_broker *b = broker_new(dir, true);
    CHECK(b);
    int fd = loop_broker_connect(b->listeners[0].port);
    sl_arena *a = sl_arena_new(1 << 16);
    bool ok = fd >= 0 && a;
    sl_init_producer_id_req ip = {.transactional_id = sl_str_c("x"),
                                  .transaction_timeout_ms = 60000,
                                  .producer_id = -1,
                                  .producer_epoch = -1};
    sl_init_producer_id_resp ipr;
    sl_init_producer_id_resp_init(&ipr);
    ok = ok && loop_broker_call(b, fd, SL_API_INIT_PRODUCER_ID, 1, &ip, a, &ipr) && !ipr.error_code;
    sl_add_offsets_to_txn_req ao = {sl_str_c("x"), ipr.producer_id, ipr.producer_epoch,
                                    sl_str_c("g")};
    sl_add_offsets_to_txn_resp aor;
    ok = ok && loop_broker_call(b, fd, SL_API_ADD_OFFSETS_TO_TXN, 1, &ao, a, &aor) &&
         !aor.error_code;
    sl_txn_offset_commit_req_partition tp = {0, 42, -1, sl_str_c("")};
    sl_txn_offset_commit_req_topic tt = {sl_str_c("t2"), &tp, 1};
    sl_txn_offset_commit_req tc = {.transactional_id = sl_str_c("x"),
                                   .group_id = sl_str_c("g"),
                                   .producer_id = ipr.producer_id,
                                   .producer_epoch = ipr.producer_epoch,
                                   .generation_id = -1,
                                   .member_id = sl_str_c(""),
                                   .topics = &tt,
                                   .topics_count = 1};
    sl_txn_offset_commit_resp tcr;
    ok = ok && loop_broker_call(b, fd, SL_API_TXN_OFFSET_COMMIT, 1, &tc, a, &tcr) &&
         tcr.topics_count == 1 && !tcr.topics[0].partitions[0].error_code;
    int64_t off_s = 0, off_u = 0, off_s2 = 0, off_u2 = 0;
    int16_t err_s = ok ? fetch_offset(b, fd, a, true, &off_s) : -3;
    int16_t err_u = ok ? fetch_offset(b, fd, a, false, &off_u) : -3;
    sl_end_txn_req et = {sl_str_c("x"), ipr.producer_id, ipr.producer_epoch, true};
    sl_end_txn_resp etr;
    ok = ok && loop_broker_call(b, fd, SL_API_END_TXN, 1, &et, a, &etr) && !etr.error_code;
    int16_t err_s2 = ok ? fetch_offset(b, fd, a, true, &off_s2) : -3;
    int16_t err_u2 = ok ? fetch_offset(b, fd, a, false, &off_u2) : -3;
    if (fd >= 0) close(fd);
    sl_arena_free(a);
    broker_done(b, dir);
    CHECK(ok);
    CHECK_EQ(err_s, SL_KAFKA_UNSTABLE_OFFSET_COMMIT);
    CHECK_EQ(off_s, -1);
    CHECK_EQ(err_u, 0);
    CHECK_EQ(off_u, -1); /* nothing committed before the transaction */
    CHECK_EQ(err_s2, 0);
    CHECK_EQ(off_s2, 42);
    CHECK_EQ(err_u2, 0);
    CHECK_EQ(off_u2, 42);
}
