/* What the event sources copy from answers: the batch-header walk (sl_batch_walk_set) over v2
 * batches, legacy message sets (as down-conversion makes them, plain and compressed), cut-off
 * and hostile input; and the descriptors' outcomes filling per-partition data (Produce from the
 * request's batches and the answer's base offset, Fetch from the returned batches, by name or
 * by topic id) and the management APIs' entries (ACL bindings as text, SCRAM users by name). */
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_arena.h"
#include "broker/sl_broker.h"
#include "local_broker.h"
#include "pipeline/sl_api.h"
#include "pipeline/sl_authorize.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_batch.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"
#include "sl_test.h"

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* One v2 batch of `n` records "v0".. at `base`. */
static uint8_t *batch(sl_arena *a, int64_t base, int n, int codec, size_t *len) {
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 256);
    char val[32];
    for (int i = 0; i < n; i++) {
        int vl = snprintf(val, sizeof val, "value %d", i);
        sl_rec_in r = {.offset_delta = i, .key = {NULL, -1}, .value = {(uint8_t *)val, vl}};
        if (sl_rec_builder_add(&rb, &r)) return NULL;
    }
    uint8_t *b = NULL;
    if (sl_rec_builder_seal(&rb, (int16_t)codec, 1000, 1000 + n, &b, len)) return NULL;
    put_be64(b, (uint64_t)base);
    return b;
}

/* Two batches back to back: offsets 5-7 and 8-9. */
static uint8_t *two_batches(sl_arena *a, int codec, size_t *len) {
    size_t l1, l2;
    uint8_t *b1 = batch(a, 5, 3, codec, &l1), *b2 = batch(a, 8, 2, codec, &l2);
    if (!b1 || !b2) return NULL;
    uint8_t *out = sl_arena_alloc(a, l1 + l2);
    memcpy(out, b1, l1);
    memcpy(out + l1, b2, l2);
    *len = l1 + l2;
    return out;
}

SL_TEST(walk_v2_batches) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *set = two_batches(a, 0, &len);
    CHECK(set);
    sl_batch_walk w;
    sl_batch_walk_set(set, len, &w);
    CHECK_EQ(w.batches, 2);
    CHECK_EQ(w.first_offset, 5);
    CHECK_EQ(w.last_offset, 9);
    CHECK_EQ(w.records, 5);
    CHECK_EQ(w.bytes, (int64_t)len);
    CHECK(!w.partial && !w.inexact);
    /* A fetch may cut its last batch: the whole ones count, the rest is flagged. */
    sl_batch_walk_set(set, len - 3, &w);
    CHECK_EQ(w.batches, 1);
    CHECK_EQ(w.last_offset, 7);
    CHECK_EQ(w.records, 3);
    CHECK(w.partial);
    /* Compressed batches: counts from the header, no decompression. */
    set = two_batches(a, SL_COMPRESSION_GZIP, &len);
    sl_batch_walk_set(set, len, &w);
    CHECK_EQ(w.records, 5);
    CHECK_EQ(w.last_offset, 9);
    sl_batch_walk_set(NULL, 0, &w);
    CHECK_EQ(w.batches, 0);
    CHECK_EQ(w.first_offset, -1);
    CHECK_EQ(w.last_offset, -1);
    CHECK(!w.partial);
    sl_arena_free(a);
}

SL_TEST(walk_legacy_message_sets) {
    sl_arena *a = sl_arena_new(4096);
    for (int magic = 0; magic <= 1; magic++) {
        size_t len, llen;
        uint8_t *set = two_batches(a, 0, &len), *legacy = NULL;
        CHECK(set);
        CHECK_EQ(sl_v2_to_legacy(set, len, (int8_t)magic, a, &legacy, &llen), 0);
        sl_batch_walk w;
        sl_batch_walk_set(legacy, llen, &w);
        CHECK_EQ(w.batches, 5);
        CHECK_EQ(w.records, 5);
        CHECK_EQ(w.first_offset, 5);
        CHECK_EQ(w.last_offset, 9);
        CHECK_EQ(w.bytes, (int64_t)llen);
        CHECK(!w.partial && !w.inexact);
        /* Compressed: one wrapper per batch, carrying its last offset; counted, flagged. */
        set = two_batches(a, SL_COMPRESSION_GZIP, &len);
        CHECK_EQ(sl_v2_to_legacy(set, len, (int8_t)magic, a, &legacy, &llen), 0);
        sl_batch_walk_set(legacy, llen, &w);
        CHECK_EQ(w.batches, 2);
        CHECK_EQ(w.last_offset, 9);
        CHECK(w.inexact && !w.partial);
    }
    sl_arena_free(a);
}

/* Every prefix of a valid set, and lies in its length fields, stay inside the input. */
SL_TEST(walk_hostile_input) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *set = two_batches(a, 0, &len);
    CHECK(set);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, set, n);
        sl_batch_walk w;
        sl_batch_walk_set(copy, n, &w);
        CHECK(w.bytes <= (int64_t)n);
        CHECK(w.partial == (w.bytes != (int64_t)n));
        free(copy);
    }
    srand(7);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % 200);
        uint8_t *buf = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rand();
        /* Valid-looking magic and lengths half the time, so the walk gets past the first check. */
        if (n > 17 && round % 2) {
            buf[16] = (uint8_t)(round % 3);
            buf[8] = buf[9] = 0;
        }
        sl_batch_walk w;
        sl_batch_walk_set(buf, n, &w);
        CHECK(w.bytes >= 0 && w.bytes <= (int64_t)n);
        free(buf);
    }
    sl_arena_free(a);
}

/* ---- outcomes ---- */

static sl_req *req_for(sl_arena *a, int16_t key, int16_t version, void *body) {
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    rq->a = a;
    rq->h.api_key = key;
    rq->h.api_version = version;
    rq->req = body;
    rq->api = sl_api_desc_for(key);
    return rq;
}

SL_TEST(outcomes_produce_data) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *set = two_batches(a, 0, &len);
    CHECK(set);
    sl_produce_req_partition qp[] = {{.index = 0, .records = {set, (int32_t)len}},
                                     {.index = 1, .records = {set, (int32_t)len}}};
    sl_produce_req_topic qt[] = {
        {.name = {"orders", 6}, .partition_data = qp, .partition_data_count = 2}};
    sl_produce_req q = {.acks = 1, .topic_data = qt, .topic_data_count = 1};
    sl_produce_resp_partition op[] = {{.index = 0, .base_offset = 100},
                                      {.index = 1, .base_offset = -1, .error_code = 87}};
    sl_produce_resp_topic ot[] = {
        {.name = {"orders", 6}, .partition_responses = op, .partition_responses_count = 2}};
    sl_produce_resp o = {.responses = ot, .responses_count = 1};
    sl_req *rq = req_for(a, SL_API_PRODUCE, 9, &q);
    sl_api_outcomes(rq, &o);
    CHECK_EQ(rq->ndata, 2);
    const sl_req_data *d = &rq->data[0];
    CHECK(sl_str_eqc(d->topic, "orders") && d->partition == 0 && d->write && !d->error);
    /* The answer's base offset, the batches' span and count. */
    CHECK_EQ(d->first_offset, 100);
    CHECK_EQ(d->last_offset, 104);
    CHECK_EQ(d->records, 5);
    CHECK_EQ(d->bytes, (int64_t)len);
    d = &rq->data[1];
    CHECK(d->partition == 1 && d->error == 87);
    CHECK(d->first_offset == -1 && d->last_offset == -1 && d->records == 0 && d->bytes == 0);
    sl_arena_free(a);
}

SL_TEST(outcomes_fetch_data) {
    sl_arena *a = sl_arena_new(4096);
    size_t len;
    uint8_t *set = two_batches(a, 0, &len);
    CHECK(set);
    sl_fetch_resp_partition op[] = {
        {.partition_index = 0, .records = {set, (int32_t)len}},
        {.partition_index = 1, .records = {(const uint8_t *)"", 0}}, /* nothing read: no entry */
        {.partition_index = 2, .error_code = 1, .records = {(const uint8_t *)"", 0}}};
    sl_fetch_resp_topic ot[] = {{.topic = {"orders", 6}, .partitions = op, .partitions_count = 3}};
    sl_fetch_resp o = {.responses = ot, .responses_count = 1};
    sl_fetch_req q = {0};
    sl_req *rq = req_for(a, SL_API_FETCH, 12, &q);
    sl_api_outcomes(rq, &o);
    CHECK_EQ(rq->ndata, 2);
    const sl_req_data *d = &rq->data[0];
    CHECK(sl_str_eqc(d->topic, "orders") && d->partition == 0 && !d->write);
    CHECK(d->first_offset == 5 && d->last_offset == 9 && d->records == 5);
    CHECK_EQ(d->bytes, (int64_t)len);
    CHECK(rq->data[1].partition == 2 && rq->data[1].error == 1 && rq->data[1].records == 0);

    /* By topic id (v13): the name is the one the descriptor named; an unknown id has none. */
    sl_fetch_resp_partition unknown[] = {
        {.partition_index = 0, .error_code = SL_KAFKA_UNKNOWN_TOPIC_ID}};
    sl_fetch_resp_topic ids[] = {{.topic = {"", 0}, .partitions = unknown, .partitions_count = 1},
                                 {.topic = {"", 0}, .partitions = op, .partitions_count = 1}};
    sl_fetch_resp o13 = {.responses = ids, .responses_count = 2};
    rq = req_for(a, SL_API_FETCH, 13, &q);
    sl_req_need(rq, SL_ACL_OP_READ, SL_ACL_RES_TOPIC, sl_str_c("payments"), 0);
    sl_api_outcomes(rq, &o13);
    CHECK_EQ(rq->ndata, 2);
    CHECK(rq->data[0].topic.len == 0 && rq->data[0].error == SL_KAFKA_UNKNOWN_TOPIC_ID);
    CHECK(sl_str_eqc(rq->data[1].topic, "payments") && rq->data[1].records == 5);
    sl_arena_free(a);
}

SL_TEST(outcomes_acl_and_scram_entries) {
    sl_arena *a = sl_arena_new(4096);
    sl_create_acls_req_creation cr[] = {{.resource_type = SL_ACL_RES_TOPIC,
                                         .resource_name = {"orders", 6},
                                         .resource_pattern_type = SL_ACL_PAT_LITERAL,
                                         .principal = {"User:bob", 8},
                                         .host = {"*", 1},
                                         .operation = SL_ACL_OP_READ,
                                         .permission_type = SL_ACL_PERM_ALLOW},
                                        {.resource_type = SL_ACL_RES_TRANSACTIONAL_ID,
                                         .resource_name = {"tx-", 3},
                                         .resource_pattern_type = SL_ACL_PAT_PREFIXED,
                                         .principal = {"User:eve", 8},
                                         .host = {"10.0.0.1", 8},
                                         .operation = SL_ACL_OP_WRITE,
                                         .permission_type = SL_ACL_PERM_DENY}};
    sl_create_acls_req q = {.creations = cr, .creations_count = 2};
    sl_create_acls_resp_result res[] = {{0}, {.error_code = 42}};
    sl_create_acls_resp o = {.results = res, .results_count = 2};
    sl_req *rq = req_for(a, SL_API_CREATE_ACLS, 2, &q);
    int32_t cl = sl_req_need_cluster(rq, SL_ACL_OP_ALTER, 0);
    rq->res[cl].allowed = true;
    sl_api_outcomes(rq, &o);
    CHECK_EQ(rq->nres, 3);
    CHECK(sl_str_eqc(rq->res[1].name, "Topic:LITERAL:orders User:bob Read Allow"));
    CHECK(rq->res[1].allowed && rq->res[1].by_alt && rq->res[1].error == 0);
    CHECK(sl_str_eqc(rq->res[2].name,
                     "TransactionalId:PREFIXED:tx- User:eve Write Deny from 10.0.0.1"));
    CHECK_EQ(rq->res[2].error, 42);

    /* DeleteAcls: each binding the answer says it removed. */
    sl_delete_acls_resp_matching_acl m[] = {{.resource_type = SL_ACL_RES_GROUP,
                                             .resource_name = {"fraud-", 6},
                                             .pattern_type = SL_ACL_PAT_PREFIXED,
                                             .principal = {"User:*", 6},
                                             .host = {"*", 1},
                                             .operation = SL_ACL_OP_ALL,
                                             .permission_type = SL_ACL_PERM_ALLOW}};
    sl_delete_acls_resp_filter_result fr[] = {{.matching_acls = m, .matching_acls_count = 1}};
    sl_delete_acls_resp dout = {.filter_results = fr, .filter_results_count = 1};
    sl_delete_acls_req dq = {0};
    rq = req_for(a, SL_API_DELETE_ACLS, 2, &dq);
    cl = sl_req_need_cluster(rq, SL_ACL_OP_ALTER, 0);
    rq->res[cl].allowed = true;
    sl_api_outcomes(rq, &dout);
    CHECK_EQ(rq->nres, 2);
    CHECK(sl_str_eqc(rq->res[1].name, "Group:PREFIXED:fraud- User:* All Allow"));
    CHECK(rq->res[1].op == SL_ACL_OP_DELETE && rq->res[1].allowed);

    /* SCRAM: the user's name only, whatever the request carried. */
    static const uint8_t salt[] = "salty", pw[] = "salted-password";
    sl_alter_user_scram_credentials_req_upsertion up[] = {{.name = {"carol", 5},
                                                           .mechanism = 1,
                                                           .iterations = 4096,
                                                           .salt = {salt, 5},
                                                           .salted_password = {pw, 15}}};
    sl_alter_user_scram_credentials_req aq = {
        .upsertions = up, .upsertions_count = 1, .deletions_count = 0};
    sl_alter_user_scram_credentials_resp_result ar[] = {{.user = {"carol", 5}}};
    sl_alter_user_scram_credentials_resp ao = {.results = ar, .results_count = 1};
    rq = req_for(a, SL_API_ALTER_USER_SCRAM_CREDENTIALS, 0, &aq);
    cl = sl_req_need_cluster(rq, SL_ACL_OP_ALTER, 0);
    rq->res[cl].allowed = false; /* denied: the entry is not shown as allowed */
    sl_api_outcomes(rq, &ao);
    CHECK_EQ(rq->nres, 2);
    CHECK(sl_str_eqc(rq->res[1].name, "carol") && rq->res[1].rtype == SL_ACL_RES_USER);
    CHECK(!rq->res[1].allowed);
    sl_arena_free(a);
}

/* ---- the audit topic's append (sl_broker_audit_topic_append) ---- */

SL_TEST(audit_topic_append_one_batch) {
    char dir[64] = "";
    sl_broker *b = calloc(1, sizeof *b);
    CHECK(b);
    CHECK(local_broker_open(dir, "sl_audtopic", b, 0));
    b->storage = sl_storage_local(b);
    const char *vals[] = {"{\"class_uid\":3002}", "{\"class_uid\":6003}"};
    size_t lens[] = {strlen(vals[0]), strlen(vals[1])};
    /* No topic yet: refused, nothing made. */
    CHECK_EQ(sl_broker_audit_topic_append(b, vals, lens, 2), SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK(!sl_topics_find(b->topics, sl_str_c(SL_AUDIT_TOPIC)));
    CHECK(!sl_topics_create(b->topics, sl_str_c(SL_AUDIT_TOPIC), 1, NULL, false, NULL));
    CHECK_EQ(sl_broker_audit_topic_append(b, vals, lens, 2), 0);
    CHECK_EQ(sl_broker_audit_topic_append(b, vals, lens, 1), 0);
    CHECK_EQ(sl_broker_audit_topic_append(b, vals, lens, 0), 0); /* nothing to do */

    sl_stopic *t = sl_storage_topic(&b->storage, sl_str_c(SL_AUDIT_TOPIC), NULL);
    sl_spart *p = t ? sl_storage_partition(&b->storage, t, 0) : NULL;
    CHECK(p);
    sl_arena *a = sl_arena_new(4096);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ(sl_storage_read(&b->storage, p, 0, 1 << 20, a, &data, &len), 0);
    sl_batch_walk w;
    sl_batch_walk_set(data, len, &w);
    CHECK_EQ(w.batches, 2); /* one batch per call */
    CHECK_EQ(w.records, 3);
    CHECK(w.first_offset == 0 && w.last_offset == 2 && !w.partial);
    sl_rec_iter it;
    sl_batch_info bi;
    CHECK(sl_batch_parse(data, len, &bi));
    CHECK(sl_batch_crc_ok(data, bi.size));
    CHECK_EQ(sl_rec_iter_init(&it, data, bi.size, a, 1 << 20), SL_OK);
    sl_record r;
    for (int i = 0; i < 2; i++) {
        CHECK(sl_rec_iter_next(&it, &r));
        CHECK_EQ(r.key.len, -1);
        CHECK(r.value.len == (int32_t)lens[i] && !memcmp(r.value.p, vals[i], lens[i]));
    }
    CHECK(!sl_rec_iter_next(&it, &r) && sl_rec_iter_err(&it) == SL_OK);
    sl_arena_free(a);
    local_broker_close(dir, b);
    free(b);
}
