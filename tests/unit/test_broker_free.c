/* sl_broker_free() on a broker that still has parked requests: a JoinGroup waiting for the rest
 * of its group and a Fetch waiting for data are finished (each observer sees them once, the
 * arena goes) instead of being dropped with the coordinator or the topic that parked them. A
 * dropped one is its own arena's only owner: LeakSanitizer reports it (indirectly) at exit.
 * Found by fuzz_handlers, which frees its brokers without stopping them first. A real broker
 * over loopback, as the fuzz target drives it. */
#include "loop_broker.h"
#include "sl_test.h"

typedef struct seen {
    int joins, fetches; /* finished requests the observer saw, per API */
} seen;

static void observe(void *ctx, const sl_req *rq) {
    seen *s = ctx;
    if (rq->h.api_key == SL_API_JOIN_GROUP) s->joins++;
    if (rq->h.api_key == SL_API_FETCH) s->fetches++;
}

static sl_broker *broker_new(char *dir, seen *s) {
    static const char *const kv[][2] = {{"group.initial.rebalance.delay.ms", "0"}};
    sl_broker *b = loop_broker_new(dir, "sl_bfree", kv, 1);
    if (b && !sl_req_observers_add(&b->observers, observe, s)) {
        loop_broker_free(b);
        return NULL;
    }
    return b;
}

static sl_join_group_req join_req(void) {
    static sl_join_group_req_protocol proto;
    sl_join_group_req_protocol_init(&proto);
    proto.name = sl_str_c("range");
    proto.metadata = (sl_bytes){(const uint8_t *)"", 0};
    sl_join_group_req r;
    sl_join_group_req_init(&r);
    r.group_id = sl_str_c("g");
    r.session_timeout_ms = 30000;
    r.rebalance_timeout_ms = 60000; /* far beyond the test: only the broker's end answers it */
    r.member_id = sl_str_c("");
    r.protocol_type = sl_str_c("consumer");
    r.protocols = &proto;
    r.protocols_count = 1;
    return r;
}

/* Closes the client sockets and runs the loop until the broker has dropped the connections
 * (what fuzz_handlers does after every input). */
static bool close_all(sl_broker *b, int *fds, int n) {
    for (int i = 0; i < n; i++) close(fds[i]);
    int64_t deadline = sl_mono_ms() + 2000;
    while (sl_server_conn_count(b->srv) > 0 && sl_mono_ms() < deadline)
        sl_loop_run_once(b->loop, 1);
    return sl_server_conn_count(b->srv) == 0;
}

/* A JoinGroup parked on a rebalance (the first member has not rejoined), its connection
 * already closed, when the broker is freed. */
SL_TEST(broker_free_answers_parked_join) {
    char dir[64];
    seen s = {0};
    sl_broker *b = broker_new(dir, &s);
    CHECK(b);
    int port = b->listeners[0].port;
    static uint8_t buf[65536];
    int fds[2] = {loop_broker_connect(port), loop_broker_connect(port)};
    bool ok = fds[0] >= 0 && fds[1] >= 0;
    /* The first member forms generation 1 alone and leads it. */
    sl_join_group_req r = join_req();
    ok = ok && loop_broker_send(b, fds[0], SL_API_JOIN_GROUP, 1, 1, &r);
    ok = ok && loop_broker_recv(b, fds[0], buf, sizeof buf, 2000) > 0;
    int joins_before = s.joins;
    /* A second member starts a rebalance that waits for the first for rebalance_timeout_ms. */
    ok = ok && loop_broker_send(b, fds[1], SL_API_JOIN_GROUP, 1, 2, &r);
    bool answered = ok && loop_broker_recv(b, fds[1], buf, sizeof buf, 200) > 0;
    ok = ok && close_all(b, fds, 2);
    int joins_parked = s.joins;
    loop_broker_free(b);
    loop_broker_rmdir(dir);
    CHECK(ok);
    CHECK_EQ(joins_before, 1);
    CHECK(!answered);
    CHECK_EQ(joins_parked, 1);
    CHECK_EQ(s.joins, 2); /* finished by sl_broker_free, not dropped with the coordinator */
}

/* A Fetch parked for data (min_bytes 1 on an empty partition, a long max_wait_ms), its
 * connection still open, when the broker is freed. */
SL_TEST(broker_free_answers_parked_fetch) {
    char dir[64];
    seen s = {0};
    sl_broker *b = broker_new(dir, &s);
    CHECK(b);
    static uint8_t buf[65536];
    int fd = loop_broker_connect(b->listeners[0].port);
    sl_fetch_req_partition p;
    sl_fetch_req_partition_init(&p);
    p.partition = 0;
    p.fetch_offset = 0;
    p.partition_max_bytes = 1 << 20;
    sl_fetch_req_topic t;
    sl_fetch_req_topic_init(&t);
    t.topic = sl_str_c("t");
    t.partitions = &p;
    t.partitions_count = 1;
    sl_fetch_req r;
    sl_fetch_req_init(&r);
    r.replica_id = -1;
    r.max_wait_ms = 60000;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.topics = &t;
    r.topics_count = 1;
    bool ok = fd >= 0 && loop_broker_send(b, fd, SL_API_FETCH, 4, 1, &r);
    bool answered = ok && loop_broker_recv(b, fd, buf, sizeof buf, 200) > 0;
    int fetches_parked = s.fetches;
    loop_broker_free(b);
    if (fd >= 0) close(fd);
    loop_broker_rmdir(dir);
    CHECK(ok);
    CHECK(!answered);
    CHECK_EQ(fetches_parked, 0);
    CHECK_EQ(s.fetches, 1);
}
