/* The shared HTTP parser's POST rules (src/http/sl_http.h: one bounded Content-Length, 411,
 * 413, no Transfer-Encoding, the header list) and the server (src/http/sl_httpd.h) on a real
 * loop: bodies split across writes arrive whole, pipelined POSTs are answered in order, an
 * oversized body is refused, a stalled body is closed by the deadline. The GET/HEAD rules are
 * in test_metrics.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/sl_http.h"
#include "http/sl_httpd.h"
#include "http/sl_httpd_testing.h"
#include "net/sl_loop.h"
#include "sl_test.h"

static const sl_http_limits k_lim = {.allow_post = true, .max_body = 16};

static int parse_lim(const char *s, sl_http_req *r) {
    return sl_http_parse_ex(s, strlen(s), &k_lim, r);
}

SL_TEST(http_post_body_limits) {
    sl_http_req r;
    const char *p = "POST /sts HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ(parse_lim(p, &r), (int)strlen(p) - 5);
    CHECK(r.method == SL_HTTP_POST && !r.head && r.content_length == 5 && r.keep_alive);
    CHECK(!strcmp(r.path, "/sts"));
    /* Exactly the limit passes; one more is 413, however it is written. */
    CHECK(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 16\r\n\r\n", &r) > 0);
    CHECK_EQ(r.content_length, 16);
    CHECK(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0016\r\n\r\n", &r) > 0);
    CHECK_EQ(r.content_length, 16);
    CHECK_EQ(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", &r), -413);
    CHECK_EQ(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
                       "184467440737095516170000\r\n\r\n",
                       &r),
             -413);
    CHECK(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    CHECK_EQ(r.content_length, 0);
    /* A POST must say how long its body is. */
    CHECK_EQ(parse_lim("POST / HTTP/1.1\r\nHost: h\r\n\r\n", &r), -411);
    CHECK_EQ(parse_lim("POST / HTTP/1.0\r\n\r\n", &r), -411);
    /* POST only where the listener takes bodies. */
    const char *p1 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n";
    CHECK_EQ(sl_http_parse(p1, strlen(p1), &r), -400); /* as before: only a length of 0 */
    const char *p2 = "POST / HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_EQ(sl_http_parse(p2, strlen(p2), &r), -405);
    sl_http_limits no_post = {.allow_post = false, .max_body = 100};
    const char *p0 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ(sl_http_parse_ex(p0, strlen(p0), &no_post, &r), -405);
    CHECK_EQ(parse_lim("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n", &r), -400);
    CHECK_EQ(parse_lim("PUT / HTTP/1.1\r\nHost: h\r\n\r\n", &r), -405);
    /* GET and HEAD keep refusing bodies on a POST listener too. */
    CHECK_EQ(parse_lim("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", &r), -400);
    CHECK(parse_lim("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    CHECK(r.method == SL_HTTP_GET && r.content_length == 0);
    CHECK(parse_lim("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", &r) > 0);
    CHECK(r.method == SL_HTTP_HEAD && r.head);
    CHECK(!strcmp(sl_http_reason(411), "Length Required"));
    CHECK(!strcmp(sl_http_reason(413), "Content Too Large"));
}

SL_TEST(http_post_refuses_ambiguous_lengths) {
    sl_http_req r;
    const char *bad[] = {
        "Content-Length: 5\r\nContent-Length: 5\r\n", /* duplicates, even equal */
        "Content-Length: 5\r\ncontent-length: 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5a\r\n",
        "Content-Length:\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: h\r\n%s\r\nhello", bad[i]);
        int n = parse_lim(req, &r);
        if (n != -400) fprintf(stderr, "  accepted (%d): %s\n", n, bad[i]);
        CHECK_EQ(n, -400);
    }
    /* Optional white space around the value is not part of it. */
    CHECK(parse_lim("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\t 5 \r\n\r\n", &r) > 0);
    CHECK_EQ(r.content_length, 5);
}

SL_TEST(http_headers_recorded_and_bounded) {
    sl_http_req r;
    const char *s = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Type:  application/x-www-form-"
                    "urlencoded \r\nX-Amz-Date: 20261206T000000Z\r\nx-amz-date: second\r\n"
                    "Content-Length: 3\r\n\r\nabc";
    int n = parse_lim(s, &r);
    CHECK(n > 0);
    CHECK_EQ(r.nheaders, 5);
    for (int i = 0; i < r.nheaders; i++) {
        /* Pointers into the buffer, inside the head. */
        CHECK(r.headers[i].name >= s && r.headers[i].name + r.headers[i].nlen <= s + n);
        CHECK(r.headers[i].value >= s && r.headers[i].value + r.headers[i].vlen <= s + n);
    }
    size_t vl = 99;
    const char *v = sl_http_header(&r, "content-type", &vl);
    CHECK(v && vl == 33 && !memcmp(v, "application/x-www-form-urlencoded", vl));
    v = sl_http_header(&r, "CONTENT-TYPE", &vl);
    CHECK(v && vl == 33);
    v = sl_http_header(&r, "X-AMZ-DATE", &vl); /* the first of two */
    CHECK(v && vl == 16 && !memcmp(v, "20261206T000000Z", vl));
    CHECK(sl_http_header(&r, "Content-Typ", &vl) == NULL && vl == 0);
    CHECK(sl_http_header(&r, "Authorization", NULL) == NULL);
    /* Up to SL_HTTP_MAX_HEADERS lines pass; one more is 431. */
    char big[4096];
    size_t o = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < SL_HTTP_MAX_HEADERS; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "X-%d: v\r\n", i);
    snprintf(big + o, sizeof big - o, "\r\n");
    CHECK(parse_lim(big, &r) > 0);
    CHECK_EQ(r.nheaders, SL_HTTP_MAX_HEADERS);
    snprintf(big + o, sizeof big - o, "X-last: v\r\n\r\n");
    CHECK_EQ(parse_lim(big, &r), -431);
    CHECK_EQ(sl_http_parse(big, strlen(big), &r), -431);
}

SL_TEST(http_pipelined_post_then_get) {
    sl_http_req r;
    const char *s = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n\r\n\r\nGET xGET /b "
                    "HTTP/1.1\r\nHost: h\r\n\r\n";
    int n = parse_lim(s, &r);
    CHECK(n > 0 && r.content_length == 9 && !strcmp(r.path, "/a"));
    /* The body (which holds a CRLFCRLF and a method name) is skipped by its length. */
    const char *next = s + n + r.content_length;
    CHECK(!strncmp(next, "GET /b", 6));
    CHECK_EQ(parse_lim(next, &r), (int)strlen(next));
    CHECK(r.method == SL_HTTP_GET && !strcmp(r.path, "/b"));
}

/* ---- the server on a loop ---- */

typedef struct echo {
    int calls;
} echo;

/* Answers "<path> <body>"; "/close" asks for the connection to be closed. */
static void echo_handler(void *ud, const sl_httpd_peer *peer, const sl_http_req *r,
                         const char *body, size_t blen, sl_httpd_resp *out) {
    echo *e = ud;
    e->calls++;
    sl_text_printf(&out->body, "%s ", r->path);
    sl_text_put(&out->body, body, blen);
    snprintf(out->headers, sizeof out->headers, "X-Peer: %s\r\n", peer->ip);
    if (!strcmp(r->path, "/close")) out->close = true;
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int client(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Sends all of s[n], running the loop while the socket is full. */
static bool send_all(sl_loop *l, int fd, const char *s, size_t n) {
    int64_t end = now_ms() + 20000;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        else
            sl_loop_run_once(l, 10);
        if (now_ms() > end) return false;
    }
    return true;
}

/* Runs the loop and reads into out[cap] until the server closes (true) or `ms` pass (false);
 * *n gets the bytes read. */
static bool read_until_close(sl_loop *l, int fd, char *out, size_t cap, size_t *n, int ms) {
    int64_t end = now_ms() + ms;
    *n = 0;
    for (;;) {
        sl_loop_run_once(l, 10);
        ssize_t r = recv(fd, out + *n, cap - 1 - *n, MSG_DONTWAIT);
        if (r > 0) *n += (size_t)r;
        out[*n] = 0;
        if (r == 0 || (r < 0 && errno == ECONNRESET)) return true;
        if (now_ms() > end || *n >= cap - 1) return false;
    }
}

/* Runs the loop for `ms`, reading what arrives; the bytes read (none expected). */
static size_t pump(sl_loop *l, int fd, int ms) {
    char b[256];
    size_t got = 0;
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        sl_loop_run_once(l, 10);
        ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (r > 0) got += (size_t)r;
        if (r == 0) break;
    }
    return got;
}

#define BIG_BODY 100000 /* over SL_HTTP_MAX_HEAD: the connection's buffer must grow */

SL_TEST(httpd_post_bodies_on_a_loop) {
    sl_loop *l = sl_loop_new();
    CHECK(l);
    echo e = {0};
    sl_httpd_opts o = {.name = "test",
                       .loop = l,
                       .limits = {.allow_post = true, .max_body = BIG_BODY},
                       .handler = echo_handler,
                       .ud = &e};
    sl_httpd *h = NULL;
    int eno = -1;
    CHECK(sl_httpd_listen(&o, "127.0.0.1", 0, &h, &eno) == SL_OK && h);
    int port = sl_httpd_port(h);
    static char out[2 * BIG_BODY];
    static char body[BIG_BODY];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (char)('a' + i % 26);
    size_t n = 0;
    bool ok = port > 0;

    /* 1. A head and a body split across several writes: the handler runs once, on the whole
     * body, which is over the initial buffer. */
    int fd = client(port);
    char head[256];
    snprintf(head, sizeof head,
             "POST /split HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
             BIG_BODY);
    ok = ok && fd >= 0 && send_all(l, fd, head, 10) && pump(l, fd, 50) == 0;
    ok = ok && send_all(l, fd, head + 10, strlen(head) - 10) && pump(l, fd, 50) == 0;
    ok = ok && send_all(l, fd, body, 3) && pump(l, fd, 50) == 0 && e.calls == 0;
    ok = ok && send_all(l, fd, body + 3, 40000) && pump(l, fd, 50) == 0 && e.calls == 0;
    ok = ok && send_all(l, fd, body + 40003, BIG_BODY - 40003);
    ok = ok && read_until_close(l, fd, out, sizeof out, &n, 20000);
    char want[128];
    snprintf(want, sizeof want, "Content-Length: %d\r\n", BIG_BODY + 7);
    ok = ok && e.calls == 1 && !strncmp(out, "HTTP/1.1 200 OK\r\n", 17) && strstr(out, want) &&
         strstr(out, "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "X-Peer: 127.0.0.1\r\nConnection: close\r\n\r\n/split ");
    const char *b = strstr(out, "\r\n\r\n");
    ok = ok && b && n == (size_t)(b + 4 - out) + 7 + BIG_BODY && !memcmp(b + 4 + 7, body, BIG_BODY);
    if (!ok) fprintf(stderr, "  split body: calls %d, %zu bytes: %.300s\n", e.calls, n, out);
    if (fd >= 0) close(fd);

    /* 2. Two POSTs and a GET in one write: answered in order, each with its own body. */
    fd = client(port);
    const char *pipe3 = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"
                        "first\r\n\r\nGET"
                        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                        "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    e.calls = 0;
    ok = ok && fd >= 0 && send_all(l, fd, pipe3, strlen(pipe3)) &&
         read_until_close(l, fd, out, sizeof out, &n, 20000);
    const char *a1 = strstr(out, "\r\n\r\n/a first\r\n\r\nGETHTTP/1.1 200 OK\r\n");
    const char *a2 = a1 ? strstr(a1, "\r\n\r\n/b secondHTTP/1.1 200 OK\r\n") : NULL;
    const char *a3 = a2 ? strstr(a2, "Connection: close\r\n\r\n/c ") : NULL;
    ok = ok && e.calls == 3 && a1 && a2 && a3 &&
         a3 + strlen("Connection: close\r\n\r\n/c ") == out + n;
    if (!ok) fprintf(stderr, "  pipelined: calls %d: %s\n", e.calls, out);
    if (fd >= 0) close(fd);

    /* 3. A body over the limit: 413 and closed, the handler never runs, nothing is read into
     * a buffer of that size. */
    fd = client(port);
    snprintf(head, sizeof head, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             BIG_BODY + 1);
    e.calls = 0;
    ok = ok && fd >= 0 && send_all(l, fd, head, strlen(head)) &&
         read_until_close(l, fd, out, sizeof out, &n, 20000);
    ok = ok && e.calls == 0 && !strncmp(out, "HTTP/1.1 413 Content Too Large\r\n", 32) &&
         strstr(out, "Connection: close\r\n");
    if (!ok) fprintf(stderr, "  oversized: %s\n", out);
    if (fd >= 0) close(fd);

    /* 4. A POST without a length: 411; a handler asking to close is obeyed. */
    fd = client(port);
    const char *nolen = "POST /x HTTP/1.1\r\nHost: x\r\n\r\n";
    ok = ok && fd >= 0 && send_all(l, fd, nolen, strlen(nolen)) &&
         read_until_close(l, fd, out, sizeof out, &n, 20000) && !strncmp(out, "HTTP/1.1 411 ", 13);
    if (fd >= 0) close(fd);
    fd = client(port);
    const char *cl = "POST /close HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz";
    ok = ok && fd >= 0 && send_all(l, fd, cl, strlen(cl)) &&
         read_until_close(l, fd, out, sizeof out, &n, 20000) &&
         strstr(out, "Connection: close\r\n\r\n/close z");
    if (!ok) fprintf(stderr, "  411/close: %s\n", out);
    if (fd >= 0) close(fd);

    sl_httpd_free(h);
    sl_loop_free(l);
    CHECK(ok);
}

SL_TEST(httpd_stalled_request_closed_by_deadline) {
    sl_loop *l = sl_loop_new();
    CHECK(l);
    echo e = {0};
    sl_httpd_opts o = {.name = "test",
                       .loop = l,
                       .limits = {.allow_post = true, .max_body = 1024},
                       .handler = echo_handler,
                       .ud = &e};
    sl_httpd *h = NULL;
    CHECK(sl_httpd_listen(&o, "127.0.0.1", 0, &h, NULL) == SL_OK);
    sl_httpd_set_deadlines(h, 300, 600);
    int port = sl_httpd_port(h);
    static char out[4096];
    size_t n = 0;
    /* A whole head, part of its body, then nothing: closed unanswered. The deadline runs from
     * the request's first byte, so the head arriving does not restart it. */
    int fd = client(port);
    const char *part = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123";
    int64_t t0 = now_ms();
    bool ok = fd >= 0 && send_all(l, fd, part, strlen(part)) &&
              read_until_close(l, fd, out, sizeof out, &n, 10000);
    int64_t took = now_ms() - t0;
    ok = ok && n == 0 && e.calls == 0 && took >= 250;
    if (!ok)
        fprintf(stderr, "  stalled body: %zu bytes after %lld ms: %s\n", n, (long long)took, out);
    if (fd >= 0) close(fd);
    /* A body trickled a byte every 100 ms (each byte well inside the 300 ms deadline) is
     * bounded by the deadline of the whole request, not one restarted per byte: closed while
     * the trickle still runs. Nine bytes of ten, so it can never complete. */
    fd = client(port);
    ok = ok && fd >= 0 && send_all(l, fd, part, strlen(part) - 4);
    int closed_at = -1;
    for (int i = 0; ok && i < 30 && closed_at < 0; i++) {
        if (i < 9) (void)send(fd, "x", 1, MSG_NOSIGNAL);
        if (read_until_close(l, fd, out, sizeof out, &n, 100) || n) closed_at = i;
    }
    ok = ok && closed_at >= 0 && closed_at < 8 && n == 0 && e.calls == 0;
    if (!ok) fprintf(stderr, "  trickle: closed at step %d, %zu bytes\n", closed_at, n);
    if (fd >= 0) close(fd);
    /* A kept-alive connection idles out after its answer. */
    fd = client(port);
    const char *one = "POST /k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nk";
    ok = ok && fd >= 0 && send_all(l, fd, one, strlen(one)) &&
         read_until_close(l, fd, out, sizeof out, &n, 10000) && strstr(out, "\r\n\r\n/k k");
    if (fd >= 0) close(fd);
    sl_httpd_free(h);
    sl_loop_free(l);
    CHECK(ok);
}
