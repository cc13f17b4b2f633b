/* A whole broker (sl_broker_new) on loopback for unit tests that talk to it the way a client
 * does: a fresh data directory, a PLAINTEXT listener and a metrics listener on ephemeral ports,
 * a topic "t" with one partition; the test's own thread runs the loop while it sends and waits
 * (loop_broker_send, loop_broker_recv). Shared by test_broker_free.c and test_txnpart.c.
 *
 * Process state a broker changes is put back by loop_broker_free for the tests that follow:
 * the loop blocks SIGTERM, SIGINT and SIGHUP on this thread for its signalfd and leaves them
 * blocked (sl_loop_free), which children of later tests (kmsd) would inherit and never stop;
 * the log level is lowered while the broker runs (later tests count log lines). */
#ifndef SL_TESTS_LOOP_BROKER_H
#define SL_TESTS_LOOP_BROKER_H
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

static sigset_t loop_broker_sigmask;
static sl_log_level loop_broker_level;

static inline void loop_broker_restore(void) {
    pthread_sigmask(SIG_SETMASK, &loop_broker_sigmask, NULL);
    sl_log_set_level(loop_broker_level);
}

static inline int loop_broker_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Removes the broker's directory (after loop_broker_free). */
static inline void loop_broker_rmdir(const char *dir) {
    if (dir[0]) nftw(dir, loop_broker_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* `dir` (64 bytes) gets the directory's name, /tmp/<tag>_XXXXXX. `extra` (n pairs, may be NULL)
 * adds or overrides configuration keys. A broker built for `mode`, without topics. NULL on
 * failure (the state is put back). */
static inline sl_broker *loop_broker_open(char *dir, const char *tag, const char *const (*extra)[2],
                                          size_t n, sl_broker_mode mode) {
    pthread_sigmask(SIG_SETMASK, NULL, &loop_broker_sigmask);
    loop_broker_level = sl_log_get_level();
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(dir, 64, "/tmp/%s_XXXXXX", tag);
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        loop_broker_restore();
        return NULL;
    }
    sl_config c;
    sl_config_defaults(&c);
    const char *const base[][2] = {
        {"log.dirs", dir},
        {"sluice.secrets.dir", dir},
        {"listeners", "PLAINTEXT://127.0.0.1:0"},
        {"sluice.metrics.listener", "http://127.0.0.1:0"},
    };
    char err[512];
    bool ok = true;
    for (size_t k = 0; ok && k < sizeof base / sizeof base[0]; k++)
        ok = sl_config_set(&c, base[k][0], base[k][1], err, sizeof err) == SL_OK;
    for (size_t k = 0; ok && k < n; k++)
        ok = sl_config_set(&c, extra[k][0], extra[k][1], err, sizeof err) == SL_OK;
    sl_broker *b = NULL;
    ok = ok && sl_config_finish(&c, err, sizeof err) == SL_OK &&
         sl_broker_new(&c, mode, &b, err, sizeof err) == SL_OK;
    if (!ok) {
        fprintf(stderr, "  broker: %s\n", err);
        loop_broker_restore();
        return NULL;
    }
    return b;
}

/* loop_broker_open for `sluice serve`, with topic "t" (one partition). */
static inline sl_broker *loop_broker_new(char *dir, const char *tag, const char *const (*extra)[2],
                                         size_t n) {
    sl_broker *b = loop_broker_open(dir, tag, extra, n, SL_BROKER_SERVE);
    if (b && sl_topics_create(b->topics, sl_str_c("t"), 1, NULL, false, NULL) != SL_OK) {
        sl_broker_free(b);
        loop_broker_restore();
        return NULL;
    }
    return b;
}

/* Frees the broker (it answers what is parked) and puts the process state back. */
static inline void loop_broker_free(sl_broker *b) {
    sl_broker_free(b);
    loop_broker_restore();
}

/* A non-blocking client socket connected to the broker's listener port; -1 on failure. */
static inline int loop_broker_connect(int port) {
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
static inline bool loop_broker_send(sl_broker *b, int fd, int16_t key, int16_t v, int32_t corr,
                                    const void *m) {
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
static inline size_t loop_broker_recv(sl_broker *b, int fd, uint8_t *buf, size_t cap, int ms) {
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

/* Sends request `m` (API `key`, version `v`) and decodes its answer into *out (arena `a`);
 * false when either way fails or the answer is not exactly one whole response. */
static inline bool loop_broker_call(sl_broker *b, int fd, int16_t key, int16_t v, const void *m,
                                    sl_arena *a, void *out) {
    static int32_t corr;
    static uint8_t buf[1 << 16];
    corr++;
    size_t len = loop_broker_send(b, fd, key, v, corr, m)
                     ? loop_broker_recv(b, fd, buf, sizeof buf, 2000)
                     : 0;
    if (len < 4 || (int32_t)sl_get_be32(buf + 4) != corr) return false;
    sl_rd r = sl_rd_init(buf + 8, len - 4);
    if (sl_api_flexible(key, v)) sl_pr_skip_tags(&r);
    const sl_msg_codec *c = sl_msg_codec_get(key, true);
    return !r.err && c->decode(&r, a, v, out) == SL_OK && r.p == r.end;
}

#endif
