/* A broker built for `sluice gateway` (SL_BROKER_GATEWAY) opens none of the local broker's Kafka
 * state: no group or transaction coordinator, producer-id store, flusher or log cleaner, and
 * nothing of theirs on disk. The local group and producer-id paths, should a request reach them
 * (here: no gateway attached, so the local handlers run), answer COORDINATOR_NOT_AVAILABLE
 * instead of dereferencing what is not there. The trail's topic sink, which needs a local
 * topic, is refused at start; a gateway is attached only to a broker built for it. */
#include <sys/stat.h>

#include "gateway/sl_gateway.h"
#include "loop_broker.h"
#include "sl_test.h"

static bool exists_in(const char *dir, const char *name) {
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

#define NOT_AVAILABLE SL_KAFKA_COORDINATOR_NOT_AVAILABLE

SL_TEST(broker_gw_mode_opens_no_kafka_state) {
    char dir[64];
    sl_broker *b = loop_broker_open(dir, "sl_bgw", NULL, 0, SL_BROKER_GATEWAY);
    CHECK(b);
    CHECK(!b->groups && !b->txn && !b->producers && !b->compactor && !b->flusher);
    CHECK(!b->retention_timer && !b->flush_timer);
    sl_arena *a = sl_arena_new(4096);
    int fd = loop_broker_connect(b->listeners[0].port);
    bool ok = a && fd >= 0;

    sl_find_coordinator_req fc;
    sl_find_coordinator_req_init(&fc);
    fc.key = sl_str_c("g");
    sl_find_coordinator_resp fcr = {0};
    ok = ok && loop_broker_call(b, fd, SL_API_FIND_COORDINATOR, 1, &fc, a, &fcr);
    int16_t fc_err = fcr.error_code;

    sl_join_group_req_protocol proto;
    sl_join_group_req_protocol_init(&proto);
    proto.name = sl_str_c("range");
    proto.metadata = (sl_bytes){(const uint8_t *)"", 0};
    sl_join_group_req jg;
    sl_join_group_req_init(&jg);
    jg.group_id = sl_str_c("g");
    jg.session_timeout_ms = 30000;
    jg.rebalance_timeout_ms = 30000;
    jg.member_id = sl_str_c("");
    jg.protocol_type = sl_str_c("consumer");
    jg.protocols = &proto;
    jg.protocols_count = 1;
    sl_join_group_resp jgr = {0};
    ok = ok && loop_broker_call(b, fd, SL_API_JOIN_GROUP, 1, &jg, a, &jgr);

    sl_heartbeat_req hb;
    sl_heartbeat_req_init(&hb);
    hb.group_id = sl_str_c("g");
    hb.generation_id = 1;
    hb.member_id = sl_str_c("m");
    sl_heartbeat_resp hbr = {0};
    ok = ok && loop_broker_call(b, fd, SL_API_HEARTBEAT, 1, &hb, a, &hbr);

    /* An idempotent producer's id, then a transactional one. */
    sl_init_producer_id_req ip;
    sl_init_producer_id_req_init(&ip);
    ip.transactional_id = SL_STR_NULL;
    ip.transaction_timeout_ms = 60000;
    sl_init_producer_id_resp ipr = {0}, tpr = {0};
    ok = ok && loop_broker_call(b, fd, SL_API_INIT_PRODUCER_ID, 1, &ip, a, &ipr);
    ip.transactional_id = sl_str_c("tx");
    ok = ok && loop_broker_call(b, fd, SL_API_INIT_PRODUCER_ID, 1, &ip, a, &tpr);

    if (fd >= 0) close(fd);
    loop_broker_free(b);
    bool groups_log = exists_in(dir, "__sluice_groups-0"),
         txn_log = exists_in(dir, "sluice-txn.log"),
         txn_offsets = exists_in(dir, "sluice-txn-offsets"),
         pids = exists_in(dir, "sluice-producer-ids");
    loop_broker_rmdir(dir);
    sl_arena_free(a);
    CHECK(ok);
    CHECK_EQ(fc_err, NOT_AVAILABLE);
    CHECK_EQ(jgr.error_code, NOT_AVAILABLE);
    CHECK_EQ(hbr.error_code, NOT_AVAILABLE);
    CHECK_EQ(ipr.error_code, NOT_AVAILABLE);
    CHECK_EQ(tpr.error_code, NOT_AVAILABLE);
    CHECK(!groups_log && !txn_log && !txn_offsets && !pids);
}

SL_TEST(broker_gw_mode_refuses_the_audit_topic_sink) {
    char dir[] = "/tmp/sl_bgwa_XXXXXX";
    CHECK(mkdtemp(dir));
    sl_log_level level = sl_log_get_level();
    sl_log_set_level(SL_LOG_ERROR);
    sl_config c;
    sl_config_defaults(&c);
    char err[512] = "";
    const char *const kv[][2] = {
        {"log.dirs", dir},
        {"sluice.secrets.dir", dir},
        {"listeners", "PLAINTEXT://127.0.0.1:0"},
        {"sluice.audit.sinks", "file,topic"},
    };
    bool ok = true;
    for (size_t k = 0; ok && k < sizeof kv / sizeof kv[0]; k++)
        ok = sl_config_set(&c, kv[k][0], kv[k][1], err, sizeof err) == SL_OK;
    ok = ok && sl_config_finish(&c, err, sizeof err) == SL_OK;
    sl_broker *b = NULL;
    sl_err e = ok ? sl_broker_new(&c, SL_BROKER_GATEWAY, &b, err, sizeof err) : SL_OK;
    sl_log_set_level(level);
    nftw(dir, loop_broker_rm, 16, FTW_DEPTH | FTW_PHYS);
    CHECK(ok);
    CHECK_EQ(e, SL_ECONFIG);
    CHECK(!b);
    CHECK(strstr(err, "sluice.audit.sinks") != NULL);
}

/* A serve broker has its coordinators and storage open: no gateway goes on top of it. */
SL_TEST(broker_gw_attach_needs_a_gateway_broker) {
    char dir[64];
    sl_broker *b = loop_broker_new(dir, "sl_bgws", NULL, 0);
    CHECK(b);
    char err[256] = "";
    sl_err e = sl_gateway_attach(b, err, sizeof err);
    bool attached = b->gw != NULL;
    loop_broker_free(b);
    loop_broker_rmdir(dir);
    CHECK_EQ(e, SL_EINVAL);
    CHECK(!attached);
}

static void count_done(void *ctx, int16_t err) {
    int *n = ctx;
    *n += err ? 100 : 1; /* an error for the whole call would show in the count */
}

/* The seam a gateway's broker gets: every operation answers at once, nothing is stored, and an
 * item already refused (say, by authorization) keeps its own error. */
SL_TEST(groups_none_answers_coordinator_not_available_to_every_operation) {
    sl_groups g = sl_groups_none();
    sl_str grp = sl_str_c("g1"), t = sl_str_c("t");
    CHECK_EQ(g.ops->check_group(g.ctx, grp), 0);
    CHECK_EQ(g.ops->heartbeat(g.ctx, grp, 1, sl_str_c("m"), SL_STR_NULL), NOT_AVAILABLE);
    CHECK_EQ(g.ops->commit_check(g.ctx, grp, 1, sl_str_c("m"), SL_STR_NULL), NOT_AVAILABLE);
    CHECK_EQ(g.ops->offset_delete_check(g.ctx, grp), NOT_AVAILABLE);
    int done = 0;
    sl_group_offset o[2] = {
        {.topic = t, .partition = 0, .offset = 5},
        {.topic = t, .partition = 1, .error = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED}};
    CHECK_EQ(g.ops->commit(g.ctx, grp, o, 2, NULL, count_done, &done), 0);
    CHECK_EQ(o[0].error, NOT_AVAILABLE);
    CHECK_EQ(o[1].error, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED);
    o[0].error = 0;
    CHECK_EQ(g.ops->offset_delete(g.ctx, grp, o, 1, NULL, count_done, &done), 0);
    CHECK_EQ(o[0].error, NOT_AVAILABLE);
    sl_group_leaver m = {.member_id = sl_str_c("m")};
    CHECK_EQ(g.ops->leave(g.ctx, grp, &m, 1, NULL, count_done, &done), 0);
    CHECK_EQ(m.error, NOT_AVAILABLE);
    int16_t errs[2] = {0, SL_KAFKA_GROUP_AUTHORIZATION_FAILED};
    sl_str groups[2] = {grp, sl_str_c("g2")};
    CHECK_EQ(g.ops->delete_groups(g.ctx, groups, errs, 2, NULL, count_done, &done), 0);
    CHECK_EQ(errs[0], NOT_AVAILABLE);
    CHECK_EQ(errs[1], SL_KAFKA_GROUP_AUTHORIZATION_FAILED);
    CHECK_EQ(done, 4);
    sl_group_committed c;
    g.ops->committed(g.ctx, grp, t, 0, &c);
    CHECK_EQ(c.offset, -1);
    CHECK(!g.ops->describe(g.ctx, grp, NULL, NULL));
}
