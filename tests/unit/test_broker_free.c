/* sl_broker_free() on a broker that still has parked requests: a JoinGroup waiting for the rest
 * of its group and a Fetch waiting for data are finished (each observer sees them once, the
 * arena goes) instead of being dropped with the coordinator or the topic that parked them. A
 * dropped one is its own arena's only owner: LeakSanitizer reports it (indirectly) at exit.
 * Found by fuzz_handlers, which frees its brokers without stopping them first. A real broker
 * over loopback, as the fuzz target drives it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"
#include "sl_test.h"

typedef struct seen {
    int joins, fetches; /* finished requests the observer saw, per API */
} seen;

static void observe(void *ctx, const sl_req *rq) {
    seen *s = ctx;
    if (rq->h.api_key == SL_API_JOIN_GROUP) s->joins++;
    if (rq->h.api_key == SL_API_FETCH) s->fetches++;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Process state a broker changes, put back by broker_free for the tests that follow: the loop
 * blocks SIGTERM, SIGINT and SIGHUP on this thread for its signalfd and leaves them blocked
 * (sl_loop_free), which children of later tests (kmsd) would inherit and never stop; the log
 * level is lowered while the broker runs (later tests count log lines). */
static sigset_t g_sigmask;
static sl_log_level g_level;

static void state_restore(void) {
    pthread_sigmask(SIG_SETMASK, &g_sigmask, NULL);
    sl_log_set_level(g_level);
}

static void broker_free(sl_broker *b) {
    sl_broker_free(b);
    state_restore();
}

static sl_broker *broker_new(char *dir, seen *s) {
    pthread_sigmask(SIG_SETMASK, NULL, &g_sigmask);
    g_level = sl_log_get_level();
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(dir, 64, "/tmp/sl_bfree_XXXXXX");
    if (!mkdtemp(dir)) {
        state_restore();
        return NULL;
    }
    sl_config c;
    sl_config_defaults(&c);
    const char *kv[][2] = {
        {"log.dirs", dir},
        {"sluice.secrets.dir", dir},
        {"listeners", "PLAINTEXT://127.0.0.1:0"},
        {"group.initial.rebalance.delay.ms", "0"},
        {"sluice.metrics.listener", "http://127.0.0.1:0"},
    };
    char err[512];
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        if (sl_config_set(&c, kv[k][0], kv[k][1], err, sizeof err) != SL_OK) {
            state_restore();
            return NULL;
        }
    sl_broker *b = NULL;
    if (sl_config_finish(&c, err, sizeof err) != SL_OK ||
        sl_broker_new(&c, &b, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  broker: %s\n", err);
        state_restore();
        return NULL;
    }
    if (!sl_req_observers_add(&b->observers, observe, s) ||
        sl_topics_create(b->topics, sl_str_c("t"), 1, NULL, false, NULL) != SL_OK) {
        broker_free(b);
        return NULL;
    }
    return b;
}

static int client_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one request frame (the broker's loop runs while the socket is full). */
static bool send_req(sl_broker *b, int fd, int16_t key, int16_t v, int32_t corr, const void *m) {
    sl_arena *a = sl_arena_new(1024);
    if (!a) return false;
    sl_wr w;
    sl_wr_init(&w, a, 256);
    sl_wr_u32(&w, 0);
    sl_req_header_encode(&w, &(sl_req_header){key, v, corr, sl_str_c("test")});
    sl_msg_codec_get(key, false)->encode(&w, v, m);
    bool ok = !w.err;
    if (ok) sl_be32(w.buf, (uint32_t)(w.len - 4));
    size_t off = 0;
    int64_t deadline = sl_mono_ms() + 2000;
    while (ok && off < w.len && sl_mono_ms() < deadline) {
        ssize_t n = send(fd, w.buf + off, w.len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            ok = false;
        else
            sl_loop_run_once(b->loop, 1);
    }
    ok = ok && off == w.len;
    sl_arena_free(a);
    return ok;
}

/* Runs the loop for up to `ms` until one whole response is in `buf`; returns its size (after
 * the length prefix), 0 if none came. */
static size_t recv_resp(sl_broker *b, int fd, uint8_t *buf, size_t cap, int ms) {
    size_t got = 0;
    int64_t deadline = sl_mono_ms() + ms;
    while (sl_mono_ms() < deadline) {
        sl_loop_run_once(b->loop, 1);
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n > 0) got += (size_t)n;
        if (got >= 4) {
            uint32_t len = sl_get_be32(buf);
            if (len <= cap - 4 && got >= 4 + len) return len;
        }
    }
    return 0;
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
    int fds[2] = {client_connect(port), client_connect(port)};
    bool ok = fds[0] >= 0 && fds[1] >= 0;
    /* The first member forms generation 1 alone and leads it. */
    sl_join_group_req r = join_req();
    ok = ok && send_req(b, fds[0], SL_API_JOIN_GROUP, 1, 1, &r);
    ok = ok && recv_resp(b, fds[0], buf, sizeof buf, 2000) > 0;
    int joins_before = s.joins;
    /* A second member starts a rebalance that waits for the first for rebalance_timeout_ms. */
    ok = ok && send_req(b, fds[1], SL_API_JOIN_GROUP, 1, 2, &r);
    bool answered = ok && recv_resp(b, fds[1], buf, sizeof buf, 200) > 0;
    ok = ok && close_all(b, fds, 2);
    int joins_parked = s.joins;
    broker_free(b);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
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
    int fd = client_connect(b->listeners[0].port);
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
    bool ok = fd >= 0 && send_req(b, fd, SL_API_FETCH, 4, 1, &r);
    bool answered = ok && recv_resp(b, fd, buf, sizeof buf, 200) > 0;
    int fetches_parked = s.fetches;
    broker_free(b);
    if (fd >= 0) close(fd);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    CHECK(ok);
    CHECK(!answered);
    CHECK_EQ(fetches_parked, 0);
    CHECK_EQ(s.fetches, 1);
}
