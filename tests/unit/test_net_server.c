/* Real sockets on 127.0.0.1, driven from the test thread with non-blocking client I/O
 * interleaved with loop iterations; every wait has a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_time.h"
#include "net/sl_server.h"
#include "sl_test.h"

enum { M_ECHO, M_DEFER_FIRST, M_HOLD, M_BIG, M_RANDOM, M_CROSS, M_ASYNC };

#define BIG_RESPONSE (1 << 20)

typedef struct {
    sl_pending *p;
    sl_arena *a;
    const uint8_t *f;
    size_t len;
} held_req;

typedef struct env {
    sl_loop *l;
    sl_server *s;
    int port;
    int mode;
    int requests, opens, closes, dones;
    bool open_authenticates;
    held_req held[64];
    int nheld;
    int depth;         /* on_req calls in progress: >1 means one ran inside another */
    bool nested;       /* some on_req ran nested */
    int async_done;    /* M_ASYNC completions that ran */
    bool async_intact; /* ... and found their arena memory as they left it */
    sl_conn *holder;   /* the connection whose 'H' request held its input */
} env;

#define RUN_UNTIL(e, cond, ms)                                                                     \
    do {                                                                                           \
        int64_t d_ = sl_mono_ms() + (ms);                                                          \
        while (!(cond) && sl_mono_ms() < d_) sl_loop_run_once((e)->l, 10);                         \
    } while (0)

/* Bodies of 100 bytes or more go out gathered from many segments (an empty one included), so
 * every test also covers partial writes that stop inside a segment list longer than one
 * writev takes. */
static void respond_reversed(sl_pending *p, sl_arena *a, const uint8_t *f, size_t len) {
    uint8_t *out = sl_arena_alloc(a, len ? len : 1);
    for (size_t i = 0; i < len; i++) out[i] = f[len - 1 - i];
    if (len < 100) {
        sl_pending_respond(p, out, len);
        return;
    }
    size_t step = len / 150 + 1;
    struct iovec *iov = sl_arena_alloc(a, (2 * len / step + 4) * sizeof *iov);
    int n = 0;
    iov[n++] = (struct iovec){out, 0};
    for (size_t at = 0, k = 0; at < len; k++) {
        size_t sz = step * (k % 3 + 1) / 2 + 1;
        if (sz > len - at) sz = len - at;
        iov[n++] = (struct iovec){out + at, sz};
        at += sz;
    }
    sl_pending_respond_iov(p, iov, n);
}

/* Responding may make the server read and hold more requests, so work on a copy. */
static void respond_held(void *ctx) {
    env *e = ctx;
    held_req copy[64];
    int n = e->nheld;
    memcpy(copy, e->held, (size_t)n * sizeof *copy);
    e->nheld = 0;
    for (int i = 0; i < n; i++) respond_reversed(copy[i].p, copy[i].a, copy[i].f, copy[i].len);
}

static void respond_one(void *ctx) {
    held_req h = *(held_req *)ctx; /* lives in the arena the response may free */
    respond_reversed(h.p, h.a, h.f, h.len);
}

/* An asynchronous completion (M_ASYNC) that touches its request's arena long after the
 * request was failed or its connection closed, as a flush callback or a parked fetch would. */
typedef struct async_op {
    env *e;
    sl_pending *p;
    bool respond; /* complete the request now (it was not completed before) */
    char mark[16];
} async_op;

static void async_complete(void *ctx) {
    async_op *op = ctx;
    env *e = op->e;
    e->async_intact = !strcmp(op->mark, "still mine");
    memset(op->mark, 'x', sizeof op->mark); /* ASan: a use after free if the arena went */
    if (op->respond) sl_pending_noreply(op->p);
    e->async_done++;
    sl_pending_release(op->p);
}

static void on_req_body(env *e, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *f,
                        size_t len);

static void on_req(void *app, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *f,
                   size_t len) {
    env *e = app;
    if (++e->depth > 1) e->nested = true;
    on_req_body(e, c, p, a, f, len);
    e->depth--;
}

static void on_req_body(env *e, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *f,
                        size_t len) {
    e->requests++;
    if (e->mode == M_CROSS && len > 0 && f[0] == 'h') {
        if (e->nheld < 64) e->held[e->nheld++] = (held_req){p, a, f, len};
        return;
    }
    if (e->mode == M_CROSS && len > 0 && f[0] == 'r') {
        respond_held(e); /* completes requests of another connection, inside this handler */
        respond_reversed(p, a, f, len);
        return;
    }
    if (e->mode == M_ASYNC && len > 0 && (f[0] == 'F' || f[0] == 'C')) {
        async_op *op = sl_arena_alloc(a, sizeof *op);
        *op = (async_op){.e = e, .p = p, .respond = f[0] == 'C'};
        snprintf(op->mark, sizeof op->mark, "still mine");
        sl_pending_hold(p);
        /* 'F': the request fails now (no reply); its completion still comes 30 ms later.
         * 'C': the completion answers it later, after the client has gone. */
        if (f[0] == 'F') sl_pending_noreply(p);
        sl_timer_start(e->l, 30, async_complete, op);
        return;
    }
    if (e->mode == M_HOLD || (e->mode == M_DEFER_FIRST && e->requests == 1)) {
        if (e->nheld < 64) e->held[e->nheld++] = (held_req){p, a, f, len};
        if (e->mode == M_DEFER_FIRST) sl_timer_start(e->l, 30, respond_held, e);
        return;
    }
    if (e->mode == M_BIG) {
        uint8_t *out = sl_arena_alloc(a, BIG_RESPONSE);
        memset(out, (uint8_t)e->requests, BIG_RESPONSE);
        sl_pending_respond(p, out, BIG_RESPONSE);
        return;
    }
    if (e->mode == M_RANDOM && len > 0 && f[0] == 'd') {
        /* Complete later, after a delay taken from the frame, so completion order is mixed. */
        held_req *h = sl_arena_alloc(a, sizeof *h);
        *h = (held_req){p, a, f, len};
        sl_timer_start(e->l, len > 1 ? f[1] % 16 : 0, respond_one, h);
        return;
    }
    if (len == 4 && !memcmp(f, "auth", 4)) sl_conn_set_authenticated(c);
    if (len >= 1 && f[0] == 'H') { /* a backend that cannot take more for now */
        sl_conn_hold_input(c, true);
        e->holder = c;
    }
    if (len >= 1 && f[0] == 'n') {
        sl_pending_noreply(p);
        return;
    }
    respond_reversed(p, a, f, len);
    if (len == 5 && !memcmp(f, "close", 5)) sl_conn_close(c, true, "client asked");
}

static void on_close(void *app, sl_conn *c) {
    env *e = app;
    e->closes++;
}

static void on_open(void *app, sl_conn *c) {
    env *e = app;
    e->opens++;
    if (e->open_authenticates) sl_conn_set_authenticated(c);
}

static void on_done(void *ctx) {
    env *e = ctx;
    e->dones++;
}

static bool env_init(env *e, const sl_server_config *cfg, int mode) {
    memset(e, 0, sizeof *e);
    e->mode = mode;
    e->l = sl_loop_new();
    sl_server_handlers h = {
        .app = e, .on_request = on_req, .on_close = on_close, .on_open = on_open};
    e->s = e->l ? sl_server_new(e->l, cfg, &h) : NULL;
    return e->s && sl_server_listen(e->s, "PLAINTEXT", "127.0.0.1", 0, &e->port) == SL_OK &&
           e->port > 0;
}

static void env_free(env *e) {
    sl_server_free(e->s);
    for (int i = 0; i < e->nheld; i++) sl_pending_noreply(e->held[i].p);
    sl_loop_free(e->l);
}

static int client_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static bool client_send(env *e, int fd, const void *buf, size_t len) {
    const uint8_t *b = buf;
    int64_t deadline = sl_mono_ms() + 5000;
    while (len && sl_mono_ms() < deadline) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n > 0) {
            b += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            sl_loop_run_once(e->l, 10);
        } else {
            return false;
        }
    }
    return len == 0;
}

/* Reads exactly `want` bytes unless EOF, error or the deadline comes first. */
static size_t client_recv(env *e, int fd, uint8_t *buf, size_t want) {
    size_t got = 0;
    int64_t deadline = sl_mono_ms() + 5000;
    while (got < want && sl_mono_ms() < deadline) {
        ssize_t n = recv(fd, buf + got, want - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            sl_loop_run_once(e->l, 10);
        else
            break;
    }
    return got;
}

/* True once the server closed the connection (EOF or reset); data before it is discarded. */
static bool client_wait_eof(env *e, int fd, int ms) {
    int64_t deadline = sl_mono_ms() + ms;
    uint8_t tmp[4096];
    while (sl_mono_ms() < deadline) {
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
        if (n < 0) sl_loop_run_once(e->l, 10);
    }
    return false;
}

static size_t put_frame(uint8_t *out, const void *payload, size_t len) {
    out[0] = (uint8_t)(len >> 24), out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    memcpy(out + 4, payload, len);
    return len + 4;
}

static bool send_frame(env *e, int fd, const char *s) {
    uint8_t buf[256];
    size_t n = put_frame(buf, s, strlen(s));
    return client_send(e, fd, buf, n);
}

/* Receives one response and checks it is `s` reversed. */
static bool expect_reversed(env *e, int fd, const char *s) {
    uint8_t hdr[4], body[256];
    size_t len = strlen(s);
    if (client_recv(e, fd, hdr, 4) != 4) return false;
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (n != len || client_recv(e, fd, body, n) != n) return false;
    for (size_t i = 0; i < len; i++)
        if (body[i] != (uint8_t)s[len - 1 - i]) return false;
    return true;
}

static const sl_server_config default_cfg = {
    .max_request_bytes = 1 << 20,
    .max_preauth_bytes = 1024,
    .max_inflight = 16,
};

SL_TEST(server_echo_one_frame) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    CHECK(send_frame(&e, fd, "hello"));
    bool ok = expect_reversed(&e, fd, "hello");
    RUN_UNTIL(&e, e.opens == 1, 1000);
    int conns = sl_server_conn_count(e.s);
    close(fd);
    RUN_UNTIL(&e, e.closes == 1, 2000);
    int closes = e.closes, opens = e.opens;
    env_free(&e);
    CHECK(ok);
    CHECK_EQ(conns, 1);
    CHECK_EQ(opens, 1);
    CHECK_EQ(closes, 1);
}

SL_TEST(server_1000_pipelined_frames_in_order) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    enum { N = 1000 };
    static uint8_t out[N * 16];
    size_t off = 0;
    char payload[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(payload, sizeof payload, "req-%d", i);
        off += put_frame(out + off, payload, (size_t)n);
    }
    bool sent = client_send(&e, fd, out, off);
    int good = 0;
    for (int i = 0; i < N; i++) {
        snprintf(payload, sizeof payload, "req-%d", i);
        if (!expect_reversed(&e, fd, payload)) break;
        good++;
    }
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(good, N);
}

/* sl_conn_hold_input: requests already read stay queued, unread ones stay in the kernel, while
 * the connection is held; released from outside any handler, the ones buffered are dispatched
 * (nothing makes the fd readable again for them) and the rest follow, in order. */
SL_TEST(server_hold_input_pauses_requests_until_released) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    uint8_t out[256];
    size_t off = 0;
    const char *reqs[] = {"H-first", "second", "third"};
    for (int i = 0; i < 3; i++) off += put_frame(out + off, reqs[i], strlen(reqs[i]));
    bool ok = client_send(&e, fd, out, off) && expect_reversed(&e, fd, "H-first");
    /* Bounded observation: a connection not held answers the next two within a millisecond. */
    RUN_UNTIL(&e, e.requests > 1, 200);
    int while_held = e.requests;
    bool more_sent = send_frame(&e, fd, "fourth");
    RUN_UNTIL(&e, e.requests > 1, 100);
    while_held = e.requests > while_held ? e.requests : while_held;
    if (e.holder) sl_conn_hold_input(e.holder, false);
    ok = ok && more_sent && expect_reversed(&e, fd, "second") && expect_reversed(&e, fd, "third") &&
         expect_reversed(&e, fd, "fourth");
    int total = e.requests;
    close(fd);
    env_free(&e);
    CHECK(ok);
    CHECK_EQ(while_held, 1);
    CHECK_EQ(total, 4);
}

SL_TEST(server_frame_split_byte_by_byte) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    uint8_t buf[64];
    size_t n = put_frame(buf, "split-me", 8);
    n += put_frame(buf + n, "again", 5);
    bool sent = true;
    for (size_t i = 0; i < n && sent; i++) {
        sent = client_send(&e, fd, buf + i, 1);
        sl_loop_run_once(e.l, 0);
        sl_loop_run_once(e.l, 0);
    }
    bool ok = expect_reversed(&e, fd, "split-me") && expect_reversed(&e, fd, "again");
    close(fd);
    int reqs = e.requests;
    env_free(&e);
    CHECK(sent);
    CHECK(ok);
    CHECK_EQ(reqs, 2);
}

SL_TEST(server_out_of_order_completion_answered_in_order) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_DEFER_FIRST));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent =
        send_frame(&e, fd, "first") && send_frame(&e, fd, "second") && send_frame(&e, fd, "third");
    RUN_UNTIL(&e, e.requests == 3, 2000);
    /* The later two are complete, but nothing may be written before the first. */
    uint8_t b;
    ssize_t early = recv(fd, &b, 1, 0);
    bool ok = expect_reversed(&e, fd, "first") && expect_reversed(&e, fd, "second") &&
              expect_reversed(&e, fd, "third");
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(early, -1);
    CHECK(ok);
}

SL_TEST(server_noreply_keeps_order) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "alpha") && send_frame(&e, fd, "no-answer") &&
                send_frame(&e, fd, "n2") && send_frame(&e, fd, "beta");
    bool ok = expect_reversed(&e, fd, "alpha") && expect_reversed(&e, fd, "beta");
    RUN_UNTIL(&e, false, 20);
    uint8_t b;
    ssize_t extra = recv(fd, &b, 1, 0);
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK(ok);
    CHECK_EQ(extra, -1);
}

SL_TEST(server_preauth_cap_closes_without_request) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    /* Far beyond memory: only a check before allocating survives this. */
    uint8_t hdr[4] = {0x7f, 0xff, 0xff, 0xf0};
    bool sent = client_send(&e, fd, hdr, 4);
    bool closed = client_wait_eof(&e, fd, 2000);
    RUN_UNTIL(&e, e.closes == 1, 1000);
    close(fd);
    int reqs = e.requests, closes = e.closes;
    env_free(&e);
    CHECK(sent);
    CHECK(closed);
    CHECK_EQ(reqs, 0);
    CHECK_EQ(closes, 1);
}

SL_TEST(server_just_over_preauth_cap_closes) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    uint8_t hdr[4] = {0, 0, 0x04, 0x01}; /* 1025 > 1024 */
    bool sent = client_send(&e, fd, hdr, 4);
    bool closed = client_wait_eof(&e, fd, 2000);
    close(fd);
    int reqs = e.requests;
    env_free(&e);
    CHECK(sent);
    CHECK(closed);
    CHECK_EQ(reqs, 0);
}

SL_TEST(server_negative_size_closes) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xfe};
    bool sent = client_send(&e, fd, hdr, 4);
    bool closed = client_wait_eof(&e, fd, 2000);
    close(fd);
    int reqs = e.requests;
    env_free(&e);
    CHECK(sent);
    CHECK(closed);
    CHECK_EQ(reqs, 0);
}

SL_TEST(server_authenticated_cap_applies_and_big_frames_roundtrip) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    enum { BIG = 300 * 1000 };
    uint8_t *big = malloc(BIG + 4);
    uint8_t *back = malloc(BIG + 4);
    for (size_t i = 0; i < BIG; i++) big[4 + i] = (uint8_t)(i * 7 + i / 256);
    big[0] = 0, big[1] = (uint8_t)(BIG >> 16), big[2] = (uint8_t)(BIG >> 8), big[3] = (uint8_t)BIG;
    bool ok = send_frame(&e, fd, "auth") && expect_reversed(&e, fd, "auth") &&
              client_send(&e, fd, big, BIG + 4) && client_recv(&e, fd, back, BIG + 4) == BIG + 4;
    for (size_t i = 0; ok && i < 4; i++) ok = back[i] == big[i];
    for (size_t i = 0; ok && i < BIG; i++) ok = back[4 + i] == big[4 + BIG - 1 - i];
    /* Above the authenticated cap still closes. */
    uint8_t hdr[4] = {0, 0x10, 0, 1};
    bool closed = client_send(&e, fd, hdr, 4) && client_wait_eof(&e, fd, 2000);
    close(fd);
    free(big);
    free(back);
    env_free(&e);
    CHECK(ok);
    CHECK(closed);
}

SL_TEST(server_on_open_can_authenticate) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    e.open_authenticates = true;
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    static uint8_t buf[4 + 2000];
    memset(buf + 4, 'x', 2000);
    put_frame(buf, buf + 4, 2000);
    bool sent = client_send(&e, fd, buf, sizeof buf);
    bool got = client_recv(&e, fd, buf, sizeof buf) == sizeof buf;
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK(got);
}

SL_TEST(server_idle_timeout_closes) {
    sl_server_config cfg = default_cfg;
    cfg.idle_ms = 100;
    env e;
    CHECK(env_init(&e, &cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    int64_t t0 = sl_mono_ms();
    bool ok = send_frame(&e, fd, "hi") && expect_reversed(&e, fd, "hi");
    bool closed = client_wait_eof(&e, fd, 3000);
    int64_t took = sl_mono_ms() - t0;
    RUN_UNTIL(&e, e.closes == 1, 1000);
    close(fd);
    int closes = e.closes;
    env_free(&e);
    CHECK(ok);
    CHECK(closed);
    CHECK(took >= 100);
    CHECK_EQ(closes, 1);
}

SL_TEST(server_auth_timeout_closes_unauthenticated_even_if_active) {
    sl_server_config cfg = default_cfg;
    cfg.auth_timeout_ms = 150;
    env e;
    CHECK(env_init(&e, &cfg, M_ECHO));
    int fd = client_connect(e.port), fa = client_connect(e.port);
    CHECK(fd >= 0);
    CHECK(fa >= 0);
    int64_t t0 = sl_mono_ms();
    /* fa authenticates; fd keeps talking but never does. */
    bool ok = send_frame(&e, fa, "auth") && expect_reversed(&e, fa, "auth");
    bool talk = send_frame(&e, fd, "hi") && expect_reversed(&e, fd, "hi");
    RUN_UNTIL(&e, false, 100);
    talk = talk && send_frame(&e, fd, "again") && expect_reversed(&e, fd, "again");
    bool closed = client_wait_eof(&e, fd, 3000);
    int64_t took = sl_mono_ms() - t0;
    RUN_UNTIL(&e, sl_mono_ms() - t0 > 400, 1000);
    bool alive = send_frame(&e, fa, "still") && expect_reversed(&e, fa, "still");
    int conns = sl_server_conn_count(e.s);
    close(fd);
    close(fa);
    env_free(&e);
    CHECK(ok);
    CHECK(talk);
    CHECK(closed);
    CHECK(took >= 150);
    CHECK(alive);
    CHECK_EQ(conns, 1);
}

/* A client with Nagle on that writes a request in two pieces holds the second until the first
 * is ACKed; without a quick ACK from the server each such request waits out Linux's 40 ms
 * delayed ACK. librdkafka before 2.10 does exactly this over TLS (one record per piece). */
SL_TEST(server_acks_partial_requests_at_once) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    static const char msg[] = "a request written in two pieces, as a TLS client with Nagle on does";
    uint8_t frame[128];
    size_t n = put_frame(frame, msg, strlen(msg));
    int64_t times[40];
    bool ok = true;
    for (int i = 0; i < 40 && ok; i++) { /* the first 20 warm up past Linux's initial quick ACKs */
        int64_t t0 = sl_mono_ms();
        ok = client_send(&e, fd, frame, 40) && client_send(&e, fd, frame + 40, n - 40) &&
             expect_reversed(&e, fd, msg);
        times[i] = sl_mono_ms() - t0;
    }
    close(fd);
    env_free(&e);
    CHECK(ok);
    int slow = 0;
    for (int i = 20; i < 40; i++) slow += times[i] >= 30;
    CHECK(slow <= 5); /* delayed ACKs would make all 20 slow */
}

SL_TEST(server_idle_timeout_spares_outstanding) {
    sl_server_config cfg = default_cfg;
    cfg.idle_ms = 50;
    env e;
    CHECK(env_init(&e, &cfg, M_HOLD));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "slow");
    RUN_UNTIL(&e, e.nheld == 1, 2000);
    RUN_UNTIL(&e, false, 200);
    int closes = e.closes;
    respond_held(&e);
    bool ok = expect_reversed(&e, fd, "slow");
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(closes, 0);
    CHECK(ok);
}

SL_TEST(server_drain_completes_outstanding_then_closes) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_HOLD));
    int fd = client_connect(e.port);
    int fd2 = client_connect(e.port);
    CHECK(fd >= 0 && fd2 >= 0);
    bool sent = send_frame(&e, fd, "one") && send_frame(&e, fd, "two");
    RUN_UNTIL(&e, e.nheld == 2 && e.opens == 2, 2000);
    sl_server_drain(e.s, 5000, on_done, &e);
    RUN_UNTIL(&e, e.closes == 1, 1000); /* the idle one closes at once */
    int closes_before = e.closes, dones_before = e.dones;
    bool idle_closed = client_wait_eof(&e, fd2, 1000);
    respond_held(&e);
    bool ok = expect_reversed(&e, fd, "one") && expect_reversed(&e, fd, "two");
    bool closed = client_wait_eof(&e, fd, 2000);
    RUN_UNTIL(&e, e.dones == 1, 1000);
    int refused = client_connect(e.port);
    int dones = e.dones, closes = e.closes, conns = sl_server_conn_count(e.s);
    close(fd);
    close(fd2);
    if (refused >= 0) close(refused);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(closes_before, 1);
    CHECK_EQ(dones_before, 0);
    CHECK(idle_closed);
    CHECK(ok);
    CHECK(closed);
    CHECK_EQ(dones, 1);
    CHECK_EQ(closes, 2);
    CHECK_EQ(conns, 0);
    CHECK_EQ(refused, -1);
}

SL_TEST(server_drain_deadline_closes_stuck_connections) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_HOLD));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "stuck");
    RUN_UNTIL(&e, e.nheld == 1, 2000);
    int64_t t0 = sl_mono_ms();
    sl_server_drain(e.s, 50, on_done, &e);
    RUN_UNTIL(&e, e.dones == 1, 2000);
    int64_t took = sl_mono_ms() - t0;
    bool closed = client_wait_eof(&e, fd, 1000);
    int dones = e.dones;
    /* Completing after the close only frees the arena. */
    CHECK(sl_pending_conn(e.held[0].p) == NULL);
    respond_held(&e);
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(dones, 1);
    CHECK(took >= 50);
    CHECK(closed);
}

SL_TEST(server_pending_completed_after_close) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_HOLD));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "orphan") && send_frame(&e, fd, "n-orphan");
    RUN_UNTIL(&e, e.nheld == 2, 2000);
    bool attached = sl_pending_conn(e.held[0].p) != NULL;
    close(fd);
    RUN_UNTIL(&e, e.closes == 1, 2000);
    bool detached = sl_pending_conn(e.held[0].p) == NULL && sl_pending_conn(e.held[1].p) == NULL;
    /* One answered, one dropped, both after the connection (and later its struct) is gone. */
    RUN_UNTIL(&e, false, 20);
    respond_reversed(e.held[0].p, e.held[0].a, e.held[0].f, e.held[0].len);
    sl_pending_noreply(e.held[1].p);
    e.nheld = 0;
    int closes = e.closes;
    env_free(&e);
    CHECK(sent);
    CHECK(attached);
    CHECK(detached);
    CHECK_EQ(closes, 1);
}

SL_TEST(server_close_with_flush_delivers_response) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "close") && send_frame(&e, fd, "ignored");
    bool ok = expect_reversed(&e, fd, "close");
    bool closed = client_wait_eof(&e, fd, 2000);
    close(fd);
    int reqs = e.requests;
    env_free(&e);
    CHECK(sent);
    CHECK(ok);
    CHECK(closed);
    CHECK_EQ(reqs, 1);
}

/* A flush-close behind a parked request (a JoinGroup waiting out its rebalance) must still
 * notice the client leaving: the slot goes at once, not at the flush deadline. */
SL_TEST(server_flush_close_notices_peer_gone) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_CROSS));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "hold") && send_frame(&e, fd, "close");
    RUN_UNTIL(&e, e.nheld == 1 && e.requests == 2, 2000);
    int before = sl_server_conn_count(e.s);
    close(fd);
    int64_t t0 = sl_mono_ms();
    RUN_UNTIL(&e, e.closes == 1, 4000);
    int64_t took = sl_mono_ms() - t0;
    int after = sl_server_conn_count(e.s);
    respond_reversed(e.held[0].p, e.held[0].a, e.held[0].f, e.held[0].len);
    e.nheld = 0;
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(before, 1);
    CHECK_EQ(after, 0);
    CHECK(took < 1000);
}

SL_TEST(server_max_connections_refuses_extra) {
    sl_server_config cfg = default_cfg;
    cfg.max_connections = 2;
    env e;
    CHECK(env_init(&e, &cfg, M_ECHO));
    int a = client_connect(e.port), b = client_connect(e.port);
    CHECK(a >= 0 && b >= 0);
    RUN_UNTIL(&e, e.opens == 2, 2000);
    int c = client_connect(e.port);
    CHECK(c >= 0);
    bool refused = client_wait_eof(&e, c, 2000);
    bool ok = send_frame(&e, a, "a") && expect_reversed(&e, a, "a") && send_frame(&e, b, "b") &&
              expect_reversed(&e, b, "b");
    int opens = e.opens;
    close(a), close(b), close(c);
    env_free(&e);
    CHECK(refused);
    CHECK(ok);
    CHECK_EQ(opens, 2);
}

/* Whether this host has an IPv6 loopback at all: a socket bound to ::1. Any other error than
 * "no such address/family" is not an excuse to skip. */
static bool host_has_ipv6_loopback(void) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return !(errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    int err = errno;
    close(fd);
    return rc == 0 || err != EADDRNOTAVAIL;
}

static char g_peer6[80];

static void on_open_peer6(void *app, sl_conn *c) {
    on_open(app, c);
    snprintf(g_peer6, sizeof g_peer6, "%s", sl_conn_peer(c));
}

/* A listener on ::1 serves a client that connects over IPv6, and logs its peer as [ip]:port.
 * A host without ::1 skips (and CI fails unless tests/skip-allowlist.txt lists this test). */
SL_TEST(server_ipv6_loopback_and_peer_format) {
    sl_loop *l = sl_loop_new();
    sl_server_handlers bh = {.on_request = on_req};
    sl_server *bs = sl_server_new(l, &default_cfg, &bh);
    sl_err bad = sl_server_listen(bs, "BAD", "no-such-host.invalid", 0, NULL);
    sl_server_free(bs);
    sl_loop_free(l);
    CHECK(bad == SL_ECONFIG);
    if (!host_has_ipv6_loopback()) SKIP("this host has no IPv6 loopback (::1)");

    env e;
    memset(&e, 0, sizeof e);
    e.mode = M_ECHO;
    e.l = sl_loop_new();
    sl_server_handlers h = {
        .app = &e, .on_request = on_req, .on_close = on_close, .on_open = on_open_peer6};
    e.s = e.l ? sl_server_new(e.l, &default_cfg, &h) : NULL;
    g_peer6[0] = 0;
    sl_err err = e.s ? sl_server_listen(e.s, "V6", "::1", 0, &e.port) : SL_ENOMEM;
    int fd = -1;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_port = htons((uint16_t)e.port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (err == SL_OK && e.port > 0) fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool connected = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    bool ok = connected && send_frame(&e, fd, "over v6") && expect_reversed(&e, fd, "over v6");
    struct sockaddr_in6 local;
    socklen_t ll = sizeof local;
    char want[80] = "";
    if (connected && getsockname(fd, (struct sockaddr *)&local, &ll) == 0)
        snprintf(want, sizeof want, "[::1]:%u", ntohs(local.sin6_port));
    if (fd >= 0) close(fd);
    RUN_UNTIL(&e, e.closes == 1, 2000);
    int opens = e.opens, closes = e.closes;
    env_free(&e);
    CHECK_EQ(err, SL_OK);
    CHECK(connected);
    CHECK(ok);
    CHECK_EQ(opens, 1);
    CHECK_EQ(closes, 1);
    CHECK(want[0] && strcmp(g_peer6, want) == 0);
}

SL_TEST(server_max_inflight_pauses_reading) {
    sl_server_config cfg = default_cfg;
    cfg.max_inflight = 4;
    env e;
    CHECK(env_init(&e, &cfg, M_HOLD));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    char names[10][16];
    bool sent = true;
    for (int i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "f%d", i);
        sent = sent && send_frame(&e, fd, names[i]);
    }
    RUN_UNTIL(&e, e.nheld == 4, 2000);
    RUN_UNTIL(&e, false, 50);
    int paused_at = e.requests;
    /* Answers free slots and reading resumes from the bytes already buffered. */
    for (int round = 0; round < 5 && e.requests < 10; round++) {
        respond_held(&e);
        RUN_UNTIL(&e, e.nheld > 0, 1000);
    }
    respond_held(&e);
    bool ok = true;
    for (int i = 0; i < 10 && ok; i++) ok = expect_reversed(&e, fd, names[i]);
    close(fd);
    int reqs = e.requests;
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(paused_at, 4);
    CHECK_EQ(reqs, 10);
    CHECK(ok);
}

SL_TEST(server_unsent_output_pauses_reading) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_BIG));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    enum { N = 40 };
    bool sent = true;
    for (int i = 0; i < N; i++) sent = sent && send_frame(&e, fd, "b");
    /* The client reads nothing: the socket buffers fill, then unsent output stops reading. */
    RUN_UNTIL(&e, false, 300);
    int paused_at = e.requests;
    static uint8_t body[BIG_RESPONSE];
    int good = 0;
    for (int i = 0; i < N; i++) {
        uint8_t hdr[4];
        if (client_recv(&e, fd, hdr, 4) != 4 || hdr[0] || hdr[1] != 0x10 || hdr[2] || hdr[3]) break;
        if (client_recv(&e, fd, body, BIG_RESPONSE) != BIG_RESPONSE) break;
        if (body[0] != (uint8_t)(i + 1) || body[BIG_RESPONSE - 1] != (uint8_t)(i + 1)) break;
        good++;
    }
    close(fd);
    env_free(&e);
    CHECK(sent);
    CHECK(paused_at < N);
    CHECK_EQ(good, N);
}

/* sl_conn_unsent / sl_server_unsent (the fetch memory budgets): answers queued and not written
 * count on their connection and in the server's total; what one client reads leaves both, and a
 * client that closes with answers unread takes its share out of the total (else the broker
 * would believe its memory full for ever). */
SL_TEST(server_unsent_totals_follow_writes_and_closes) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_BIG));
    int a = client_connect(e.port), b = client_connect(e.port);
    CHECK(a >= 0 && b >= 0);
    bool sent = true;
    for (int i = 0; i < 6; i++) sent = sent && send_frame(&e, a, "a") && send_frame(&e, b, "b");
    /* Neither reads: each has answers the kernel did not take (6 MiB against socket buffers of
     * a few hundred KiB while nobody reads). */
    RUN_UNTIL(&e, e.requests >= 8 && sl_server_unsent(e.s) > 2 * BIG_RESPONSE, 3000);
    size_t held = sl_server_unsent(e.s);
    static uint8_t body[BIG_RESPONSE + 4];
    int read_a = 0;
    for (int i = 0; i < 6; i++) {
        if (client_recv(&e, a, body, BIG_RESPONSE + 4) != BIG_RESPONSE + 4) break;
        read_a++;
    }
    RUN_UNTIL(&e, false, 50);
    size_t after_read = sl_server_unsent(e.s);
    close(b); /* with answers unread */
    close(a);
    RUN_UNTIL(&e, e.closes == 2, 3000);
    size_t after_close = sl_server_unsent(e.s);
    env_free(&e);
    CHECK(sent);
    CHECK(held > 2 * (size_t)BIG_RESPONSE);
    CHECK_EQ(read_a, 6);
    CHECK(after_read < held);
    CHECK_EQ(after_close, 0);
}

SL_TEST(server_emfile_pauses_accept_without_spinning) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ECHO));
    int fd = client_connect(e.port); /* waits in the backlog */
    CHECK(fd >= 0);
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int probe = dup(fd); /* the fd number accept would get */
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t)probe;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int iters = 0;
    int64_t t0 = sl_mono_ms();
    while (sl_mono_ms() - t0 < 250) {
        sl_loop_run_once(e.l, 50);
        iters++;
    }
    int opens_low = e.opens;
    setrlimit(RLIMIT_NOFILE, &old);
    RUN_UNTIL(&e, e.opens == 1, 2000);
    bool ok = send_frame(&e, fd, "after") && expect_reversed(&e, fd, "after");
    close(fd);
    env_free(&e);
    CHECK_EQ(opens_low, 0);
    CHECK(iters < 40);
    CHECK(ok);
}

static void listen_and_echo(const char *host, int *failed) {
    sl_loop *l = sl_loop_new();
    env e;
    memset(&e, 0, sizeof e);
    e.l = l;
    sl_server_handlers h = {.app = &e, .on_request = on_req};
    e.s = sl_server_new(l, &default_cfg, &h);
    sl_err err = sl_server_listen(e.s, "PLAINTEXT", host, 0, &e.port);
    int fd = err == SL_OK ? client_connect(e.port) : -1;
    bool ok = fd >= 0 && send_frame(&e, fd, "lo") && expect_reversed(&e, fd, "lo");
    if (fd >= 0) close(fd);
    sl_server_free(e.s);
    sl_loop_free(l);
    *failed = err != SL_OK || !ok;
}

SL_TEST(server_localhost_reachable_over_ipv4) {
    int f = 0;
    listen_and_echo("localhost", &f);
    CHECK(!f);
}

SL_TEST(server_all_interfaces_reachable_over_ipv4) {
    int f = 0;
    listen_and_echo("", &f);
    CHECK(!f);
    listen_and_echo("0.0.0.0", &f);
    CHECK(!f);
}

static uint32_t rnd(uint32_t *st) {
    *st ^= *st << 13, *st ^= *st >> 17, *st ^= *st << 5;
    return *st;
}

SL_TEST(server_randomized_pipeline_stays_in_order) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_RANDOM));
    e.open_authenticates = true;
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    enum { N = 400 };
    /* SL_NET_SEED reproduces or varies the run. */
    const char *seed = getenv("SL_NET_SEED");
    uint32_t st = seed ? (uint32_t)strtoul(seed, NULL, 10) | 1u : 0x9e3779b9u;
    size_t out_cap = 0, exp_cap = 0;
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        uint32_t r = rnd(&st) % 10;
        sizes[i] = r < 6   ? rnd(&st) % 200
                   : r < 9 ? 200 + rnd(&st) % 20000
                           : 20000 + rnd(&st) % 180000;
        out_cap += 4 + sizes[i];
    }
    uint8_t *out = malloc(out_cap), *exp = malloc(out_cap), *got = malloc(out_cap);
    size_t out_len = 0, exp_len = 0;
    for (int i = 0; i < N; i++) {
        uint8_t *f = out + out_len + 4;
        for (size_t k = 0; k < sizes[i]; k++) f[k] = (uint8_t)rnd(&st);
        uint32_t kind = rnd(&st) % 20;
        if (sizes[i] > 0) f[0] = kind < 6 ? 'd' : kind < 9 ? 'n' : 'x';
        out_len += put_frame(out + out_len, f, sizes[i]);
        if (sizes[i] > 0 && f[0] == 'n') continue;
        uint8_t *x = exp + exp_len;
        x[0] = (uint8_t)(sizes[i] >> 24), x[1] = (uint8_t)(sizes[i] >> 16);
        x[2] = (uint8_t)(sizes[i] >> 8), x[3] = (uint8_t)sizes[i];
        for (size_t k = 0; k < sizes[i]; k++) x[4 + k] = f[sizes[i] - 1 - k];
        exp_len += 4 + sizes[i];
    }
    exp_cap = exp_len;
    size_t sent = 0, recvd = 0;
    int64_t deadline = sl_mono_ms() + 20000;
    while ((sent < out_len || recvd < exp_cap) && sl_mono_ms() < deadline) {
        bool progress = false;
        if (sent < out_len) {
            size_t chunk = 1 + rnd(&st) % 65536;
            if (chunk > out_len - sent) chunk = out_len - sent;
            ssize_t n = send(fd, out + sent, chunk, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n, progress = true;
        }
        ssize_t n = recv(fd, got + recvd, exp_cap - recvd + 1, 0);
        if (n > 0) recvd += (size_t)n, progress = true;
        if (n == 0) break;
        sl_loop_run_once(e.l, progress ? 0 : 5);
    }
    bool same = recvd == exp_cap && memcmp(got, exp, exp_cap) == 0;
    close(fd);
    RUN_UNTIL(&e, e.closes == 1, 2000);
    free(out), free(exp), free(got);
    int reqs = e.requests;
    env_free(&e);
    CHECK_EQ(sent, out_len);
    CHECK_EQ(recvd, exp_cap);
    CHECK(same);
    CHECK_EQ(reqs, N);
}

/* Connection B has a request held and a second one buffered behind it (max_inflight 1 stops
 * reading); A's request completes B's inside A's handler. B's next request must run after A's
 * handler returned, from the loop, not nested inside it (where it could free what A uses). */
SL_TEST(server_cross_connection_completion_is_deferred_to_the_loop) {
    env e;
    sl_server_config cfg = default_cfg;
    cfg.max_inflight = 1;
    CHECK(env_init(&e, &cfg, M_CROSS));
    int b = client_connect(e.port), a = client_connect(e.port);
    CHECK(a >= 0 && b >= 0);
    uint8_t two[64];
    size_t n = put_frame(two, "h1", 2);
    n += put_frame(two + n, "h2", 2);
    bool sent = client_send(&e, b, two, n);
    RUN_UNTIL(&e, e.nheld == 1, 2000);
    RUN_UNTIL(&e, false, 30); /* h2 is read into B's buffer but not dispatched */
    int before = e.requests;
    sent = sent && send_frame(&e, a, "r");
    bool got_a = expect_reversed(&e, a, "r");
    bool got_b1 = expect_reversed(&e, b, "h1");
    RUN_UNTIL(&e, e.nheld == 1, 2000); /* h2 dispatched (and held) once B was pumped */
    bool nested = e.nested;
    int reqs = e.requests;
    close(a);
    close(b);
    env_free(&e);
    CHECK(sent);
    CHECK_EQ(before, 1);
    CHECK(got_a);
    CHECK(got_b1);
    CHECK_EQ(reqs, 3);
    CHECK(!nested);
}

/* A held request's arena outlives its failure and its connection: the completion that comes
 * later reads and writes it (ASan would report a use after free), then releases it. */
SL_TEST(server_hold_keeps_arena_for_late_completion) {
    env e;
    CHECK(env_init(&e, &default_cfg, M_ASYNC));
    int fd = client_connect(e.port);
    CHECK(fd >= 0);
    bool sent = send_frame(&e, fd, "F") && send_frame(&e, fd, "ok");
    bool ok = expect_reversed(&e, fd, "ok"); /* F's no-reply let the queue move on */
    RUN_UNTIL(&e, e.async_done == 1, 2000);
    bool intact1 = e.async_intact;
    sent = sent && send_frame(&e, fd, "C");
    RUN_UNTIL(&e, e.requests == 3, 2000);
    close(fd);
    RUN_UNTIL(&e, e.closes == 1, 2000);
    RUN_UNTIL(&e, e.async_done == 2, 2000);
    bool intact2 = e.async_intact;
    int done = e.async_done;
    env_free(&e);
    CHECK(sent);
    CHECK(ok);
    CHECK_EQ(done, 2);
    CHECK(intact1);
    CHECK(intact2);
}
