/* Metrics endpoint: the exposition format's escaping and numbers, the HTTP request parser's
 * accept/refuse decisions, and the endpoint itself on a real loop (token, health, limits). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "http/sl_http.h"
#include "local_broker.h"
#include "metrics/sl_metrics.h"
#include "metrics/sl_prom.h"
#include "pipeline/sl_api.h"
#include "sl_test.h"

static bool text_is(sl_text *t, const char *want) {
    bool ok = !t->oom && t->p && !strcmp(t->p, want);
    if (!ok) fprintf(stderr, "  got  [%s]\n  want [%s]\n", t->p ? t->p : "(null)", want);
    sl_text_free(t);
    return ok;
}

SL_TEST(metrics_label_value_escaping) {
    sl_text t = {0};
    const char *v = "a\\b\"c\nd";
    sl_prom_label_value(&t, v, strlen(v));
    CHECK(text_is(&t, "a\\\\b\\\"c\\nd"));
    /* Valid UTF-8 passes; a lone continuation byte, an overlong and a surrogate do not. */
    const char *u = "caf\xc3\xa9 \x80 \xc0\xaf \xed\xa0\x80";
    sl_prom_label_value(&t, u, strlen(u));
    CHECK(text_is(&t, "caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    sl_prom_help_text(&t, "x\\y\nz\"");
    CHECK(text_is(&t, "x\\\\y\\nz\""));
}

SL_TEST(metrics_values_and_samples) {
    sl_text t = {0};
    sl_prom_value(&t, 42);
    sl_text_puts(&t, " ");
    sl_prom_value(&t, 0.25);
    sl_text_puts(&t, " ");
    sl_prom_value(&t, 1.0 / 0.0);
    sl_text_puts(&t, " ");
    sl_prom_value(&t, -1.0 / 0.0);
    sl_text_puts(&t, " ");
    sl_prom_value(&t, 0.0 / 0.0);
    CHECK(text_is(&t, "42 0.25 +Inf -Inf NaN"));
    const char *labels[] = {"topic", "o\"rders", "partition", "3", NULL};
    sl_prom_family(&t, "kafka_log_log_size", "gauge", "Bytes.");
    sl_prom_sample(&t, "kafka_log_log_size", labels, 1267);
    sl_prom_sample_u64(&t, "x_total", NULL, 18446744073709551615ull);
    CHECK(text_is(&t, "# HELP kafka_log_log_size Bytes.\n# TYPE kafka_log_log_size gauge\n"
                      "kafka_log_log_size{topic=\"o\\\"rders\",partition=\"3\"} 1267\n"
                      "x_total 18446744073709551615\n"));
    sl_text_markup(&t, "<a href='x'>&\"</a>");
    CHECK(text_is(&t, "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"));
}

static int parse(const char *s, sl_http_req *r) { return sl_http_parse(s, strlen(s), r); }

SL_TEST(metrics_http_parse_accepts) {
    sl_http_req r;
    const char *g = "GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization:  Bearer t0k \r\n\r\n";
    CHECK_EQ(parse(g, &r), (int)strlen(g));
    CHECK(!strcmp(r.path, "/metrics") && !r.head && r.keep_alive);
    CHECK(r.has_auth && !strcmp(r.auth, "Bearer t0k"));
    CHECK_EQ(parse("HEAD / HTTP/1.0\r\n\r\n", &r), 19);
    CHECK(r.head && !r.keep_alive && !strcmp(r.path, "/"));
    CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r) > 0 && r.keep_alive);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\n\r\n", &r) > 0 &&
          !r.keep_alive);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    /* Pipelined: only the first head is consumed. */
    const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_EQ(parse(two, &r), (int)strlen(two) / 2);
    CHECK(!strcmp(r.path, "/a"));
    /* Incomplete until CRLFCRLF. */
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\n", &r), 0);
    CHECK_EQ(sl_http_parse("", 0, &r), 0);
}

SL_TEST(metrics_http_parse_refuses) {
    sl_http_req r;
    CHECK_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\n\r\n", &r), -405);
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", &r), -400);
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -400);
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", &r), -400);
    CHECK_EQ(parse("GET / HTTP/1.1\r\n\r\n", &r), -400); /* 1.1 without Host */
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &r), -400);
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", &r),
             -400);
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", &r), -400); /* bare LF */
    CHECK_EQ(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
    CHECK_EQ(parse("GET metrics HTTP/1.0\r\n\r\n", &r), -400);
    CHECK_EQ(parse("GET /\x01 HTTP/1.0\r\n\r\n", &r), -400);
    CHECK_EQ(parse("G(T / HTTP/1.0\r\n\r\n", &r), -400);
    char big[SL_HTTP_MAX_TARGET + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    snprintf(big + SL_HTTP_MAX_TARGET + 6, 40, " HTTP/1.0\r\n\r\n");
    CHECK_EQ(parse(big, &r), -414);
    /* A head that never ends is refused once it reaches the limit, not buffered forever. */
    static char flood[SL_HTTP_MAX_HEAD + 1];
    memset(flood, 'x', sizeof flood - 1);
    memcpy(flood, "GET / HTTP/1.1\r\nX: ", 19);
    CHECK_EQ(sl_http_parse(flood, SL_HTTP_MAX_HEAD - 1, &r), 0);
    CHECK_EQ(sl_http_parse(flood, SL_HTTP_MAX_HEAD, &r), -431);
}

/* ---- the endpoint on a loop ---- */

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `req` and runs the loop until the server closes: the whole answer into out. */
static size_t exchange(sl_broker *b, int port, const char *req, char *out, size_t cap) {
    int fd = connect_to(port);
    if (fd < 0) return 0;
    if (send(fd, req, strlen(req), 0) < 0) {
        close(fd);
        return 0;
    }
    size_t n = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        sl_loop_run_once(b->loop, 20);
        ssize_t r = recv(fd, out + n, cap - 1 - n, MSG_DONTWAIT);
        if (r == 0) break;
        if (r > 0) n += (size_t)r;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 20 || n >= cap - 1) break;
    }
    out[n] = 0;
    close(fd);
    return n;
}

/* One step of an exchange: on failure, the answer that failed it. */
#define STEP(cond) ((cond) ? true : (fprintf(stderr, "  step failed: %s\n%s\n", #cond, out), false))

SL_TEST(metrics_endpoint_token_and_health) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_metrics", &b, 1));
    b.loop = sl_loop_new();
    char tok[128], err[256];
    snprintf(tok, sizeof tok, "%s/token", dir);
    FILE *f = fopen(tok, "w");
    CHECK(f);
    fputs("s3cret-token\n", f);
    fclose(f);
    CHECK(!sl_config_set(&b.cfg, "sluice.metrics.listener", "http://127.0.0.1:0", err, sizeof err));
    CHECK(!sl_config_set(&b.cfg, "sluice.metrics.bearer.token.file", tok, err, sizeof err));
    snprintf(b.listeners[0].name, sizeof b.listeners[0].name, "PLAINTEXT");
    b.nlisteners = 1;
    sl_metrics *m = NULL;
    CHECK(sl_metrics_new(&b, &m, err, sizeof err) == SL_OK && m);
    int port = sl_metrics_port(m);
    CHECK(port > 0);
    static char out[65536];
    const char *close_hdr = "Host: x\r\nConnection: close\r\n";
    char req[512];
    snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\n%s\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    bool ok = true;
    ok = ok && STEP(strstr(out, "HTTP/1.1 401 ") && strstr(out, "WWW-Authenticate: Bearer"));
    snprintf(req, sizeof req,
             "GET /metrics HTTP/1.1\r\n%sAuthorization: Bearer s3cret-tokeX\r\n\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 401 "));
    snprintf(req, sizeof req,
             "GET /metrics HTTP/1.1\r\n%sAuthorization: bearer s3cret-token\r\n\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    ok =
        ok &&
        STEP(strstr(out, "HTTP/1.1 200 ") &&
             strstr(out, "kafka_server_replicamanager_partitioncount 1\n") &&
             strstr(out, "kafka_log_log_size{topic=\"t\",partition=\"0\"} ") &&
             strstr(out, "kafka_server_socketservermetrics_connections{listener=\"PLAINTEXT\"} 0"));
    snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\n%s\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 200 ") && strstr(out, "\r\n\r\nok\n"));
    snprintf(req, sizeof req, "GET /readyz HTTP/1.1\r\n%s\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 200 "));
    b.stopping = true;
    exchange(&b, port, req, out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 503 ") && strstr(out, "stopping"));
    b.stopping = false;
    exchange(&b, port, "POST / HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 405 "));
    snprintf(req, sizeof req, "HEAD / HTTP/1.1\r\n%sAuthorization: Bearer s3cret-token\r\n\r\n",
             close_hdr);
    exchange(&b, port, req, out, sizeof out);
    /* HEAD: the headers only. */
    ok = ok &&
         STEP(strstr(out, "HTTP/1.1 200 ") && strstr(out, "text/html") && !strstr(out, "<html"));
    snprintf(req, sizeof req, "GET /nope HTTP/1.1\r\n%s\r\n", close_hdr);
    exchange(&b, port, req, out, sizeof out);
    ok = ok && STEP(strstr(out, "HTTP/1.1 404 "));
    sl_metrics_free(m);
    sl_loop_free(b.loop);
    b.loop = NULL;
    local_broker_close(dir, &b);
    CHECK(ok);
}

SL_TEST(metrics_endpoint_counts_events_and_limits_connections) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_metrics", &b, 0));
    b.loop = sl_loop_new();
    char err[256];
    CHECK(!sl_config_set(&b.cfg, "sluice.metrics.listener", "http://127.0.0.1:0", err, sizeof err));
    snprintf(b.listeners[0].name, sizeof b.listeners[0].name, "PLAINTEXT");
    b.nlisteners = 1;
    sl_metrics *m = NULL;
    CHECK(sl_metrics_new(&b, &m, err, sizeof err) == SL_OK && m);
    int port = sl_metrics_port(m);
    sl_events_emit(&b.events, &(sl_event){.kind = SL_EV_NET,
                                          .conn_id = 7,
                                          .listener = "PLAINTEXT",
                                          .net = {.activity = SL_NET_OPEN}});
    sl_events_emit(&b.events, &(sl_event){.kind = SL_EV_AUTH,
                                          .listener = "PLAINTEXT",
                                          .auth = {.activity = SL_AUTH_LOGON,
                                                   .mechanism = "PLAIN",
                                                   .reason = "bad \"pw\"\n"}});
    sl_events_emit(&b.events,
                   &(sl_event){.kind = SL_EV_NET,
                               .listener = "PLAINTEXT",
                               .net = {.activity = SL_NET_REFUSED, .reason = "max.connections"}});
    sl_events_emit(&b.events,
                   &(sl_event){.kind = SL_EV_DETECTION, .det = {.rule = "denial_spike"}});
    /* A Produce that was denied one topic and wrote another: the bytes of its per-partition
     * data go to the topic written. Then a Fetch with per-partition data, one partition failed. */
    sl_req_data pdata[1] = {
        {.topic = sl_str_c("orders"), .write = true, .bytes = 1000, .records = 10}};
    sl_req_res res[2] = {
        {.name = sl_str_c("secret"), .rtype = SL_ACL_RES_TOPIC, .op = SL_ACL_OP_WRITE},
        {.name = sl_str_c("orders"),
         .rtype = SL_ACL_RES_TOPIC,
         .op = SL_ACL_OP_WRITE,
         .allowed = true}};
    sl_req rq = {.api = sl_api_desc_for(SL_API_PRODUCE),
                 .h = {.api_key = SL_API_PRODUCE},
                 .principal = "User:eve",
                 .res = res,
                 .nres = 2,
                 .data = pdata,
                 .ndata = 1,
                 .bytes_in = 1234,
                 .records_in = 10,
                 .start_ns = 1000000,
                 .end_ns = 3000000};
    sl_events_emit(&b.events, &(sl_event){.kind = SL_EV_REQUEST, .rq = &rq});
    sl_req_data data[2] = {{.topic = sl_str_c("orders"), .bytes = 700, .records = 7},
                           {.topic = sl_str_c("orders"), .bytes = 5, .error = 1}};
    sl_req fq = {.api = sl_api_desc_for(SL_API_FETCH),
                 .h = {.api_key = SL_API_FETCH},
                 .data = data,
                 .ndata = 2,
                 .bytes_out = 9999};
    sl_events_emit(&b.events, &(sl_event){.kind = SL_EV_REQUEST, .rq = &fq});
    static char out[65536];
    exchange(&b, port, "GET /metrics HTTP/1.0\r\n\r\n", out, sizeof out);
    bool ok =
        strstr(out, "kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders\"} 1000\n") &&
        strstr(out, "kafka_server_brokertopicmetrics_messagesin_total{topic=\"orders\"} 10\n") &&
        strstr(out, "kafka_server_brokertopicmetrics_bytesout_total{topic=\"orders\"} 700\n") &&
        !strstr(out, "{topic=\"secret\"}") &&
        strstr(out, "sluice_authorization_denials_total{principal=\"User:eve\",operation=\"WRITE\","
                    "resource_type=\"TOPIC\"} 1\n") &&
        strstr(out,
               "sluice_request_latency_seconds_bucket{request=\"Produce\",le=\"0.001\"} 0\n") &&
        strstr(out,
               "sluice_request_latency_seconds_bucket{request=\"Produce\",le=\"0.0025\"} 1\n") &&
        strstr(out, "sluice_requests_total{request=\"Fetch\"} 1\n");
    ok = ok &&
         strstr(out, "kafka_server_socketservermetrics_connections{listener=\"PLAINTEXT\"} 1\n") &&
         strstr(out,
                "sluice_authentication_failures_total{mechanism=\"PLAIN\",listener=\"PLAINTEXT\","
                "reason=\"bad \\\"pw\\\"\\n\"} 1\n") &&
         strstr(out, "sluice_connections_refused_total{listener=\"PLAINTEXT\",reason=\"max."
                     "connections\"} 1\n") &&
         strstr(out, "sluice_detections_total{rule=\"denial_spike\"} 1\n");
    if (!ok) fprintf(stderr, "%s\n", out);
    /* Connections beyond the limit are closed at accept; the ones inside it still work. */
    int fds[70];
    int nf = 0;
    /* In batches, with the loop accepting between them, so no connect waits on a full
     * backlog. */
    for (; nf < 70; nf++) {
        if ((fds[nf] = connect_to(port)) < 0) break;
        if (nf % 10 == 9)
            for (int i = 0; i < 5; i++) sl_loop_run_once(b.loop, 10);
    }
    for (int i = 0; i < 20; i++) sl_loop_run_once(b.loop, 10);
    exchange(&b, port, "GET /healthz HTTP/1.0\r\n\r\n", out, sizeof out);
    /* The 65th and later were refused; closing the held ones frees their slots. */
    for (int i = 0; i < nf; i++) close(fds[i]);
    for (int i = 0; i < 20; i++) sl_loop_run_once(b.loop, 10);
    exchange(&b, port, "GET /metrics HTTP/1.0\r\n\r\n", out, sizeof out);
    ok = ok && nf == 70 && strstr(out, "sluice_metrics_connections_refused_total 7\n");
    if (!ok) fprintf(stderr, "%s\n", out);
    sl_metrics_free(m);
    sl_loop_free(b.loop);
    b.loop = NULL;
    local_broker_close(dir, &b);
    CHECK(ok);
}

SL_TEST(metrics_default_port_taken_runs_without_endpoint) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_metrics", &b, 0));
    b.loop = sl_loop_new();
    char err[256] = "";
    /* Occupy a port and make it the listener's value without setting the key (as if it were
     * the default, 127.0.0.1:9404, which another program may hold on a shared machine). */
    int hold = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    CHECK(!bind(hold, (struct sockaddr *)&a, sizeof a) && !listen(hold, 1) &&
          !getsockname(hold, (struct sockaddr *)&a, &al));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(b.cfg.sluice_metrics_listener, sizeof b.cfg.sluice_metrics_listener, "%s", url);
    sl_metrics *m = (sl_metrics *)1;
    sl_err e = sl_metrics_new(&b, &m, err, sizeof err);
    bool ok_default = e == SL_OK && m == NULL;
    /* Set explicitly: the same port fails the start, naming the key. */
    CHECK(!sl_config_set(&b.cfg, "sluice.metrics.listener", url, err, sizeof err));
    e = sl_metrics_new(&b, &m, err, sizeof err);
    bool ok_explicit = e != SL_OK && m == NULL && strstr(err, "sluice.metrics.listener");
    close(hold);
    sl_loop_free(b.loop);
    b.loop = NULL;
    local_broker_close(dir, &b);
    CHECK(ok_default);
    CHECK(ok_explicit);
}
