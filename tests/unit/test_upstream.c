/* The gateway's upstream connections (gateway/sl_upstream.h) against an in-process Sluice broker
 * with PLAINTEXT, SASL_PLAINTEXT (SCRAM-SHA-512, PLAIN) and SSL listeners: set-up on the worker
 * and hand-off to the loop, request/response order, the acks=0 path, failures (refused port,
 * wrong password, close with requests outstanding) reaching every callback exactly once, and
 * the configuration's checks naming the key. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/sl_credstore.h"
#include "auth/sl_scram.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "crypto/sl_certgen.h"
#include "gateway/sl_saslc.h"
#include "gateway/sl_upstream.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_proto.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"
#include "test_jwt_util.h"

#define GW_USER "gateway"
#define GW_PASS "gw-secret-1"
#define GW_ISS  "https://issuer.test"

typedef struct ubroker {
    char dir[64];
    sl_broker *b;
    int plain_port, sasl_port, ssl_port;
} ubroker;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static bool ub_start(ubroker *x) {
    memset(x, 0, sizeof *x);
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(x->dir, sizeof x->dir, "/tmp/sl_upstream_XXXXXX");
    if (!mkdtemp(x->dir)) return false;
    char err[512], path[256], ks[256];
    if (sl_tls_bootstrap(x->dir, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  bootstrap: %s\n", err);
        return false;
    }
    snprintf(ks, sizeof ks, "%s/broker.pem", x->dir);
    snprintf(path, sizeof path, "%s/sluice-users", x->dir);
    sl_credstore *st;
    sl_scram_cred cred;
    if (sl_credstore_open(path, true, &st, err, sizeof err) ||
        sl_scram_cred_from_password(SL_SCRAM_SHA_512, GW_PASS, strlen(GW_PASS), SL_SCRAM_MIN_ITER,
                                    &cred) ||
        sl_credstore_put(st, GW_USER, strlen(GW_USER), &cred) || sl_credstore_save(st))
        return false;
    sl_credstore_free(st);
    /* OAUTHBEARER: tokens signed by EC key 0 ("e1") are valid. */
    char jwks[4096] = "{\"keys\":[", jurl[300];
    tj_jwk(tj_ec_key(0), "e1", NULL, jwks + strlen(jwks), sizeof jwks - strlen(jwks));
    strcat(jwks, "]}");
    snprintf(path, sizeof path, "%s/jwks.json", x->dir);
    if (!tj_write_file(path, jwks)) return false;
    snprintf(jurl, sizeof jurl, "file://%s", path);
    sl_config c;
    sl_config_defaults(&c);
    const char *kv[][2] = {
        {"log.dirs", x->dir},
        {"sluice.secrets.dir", x->dir},
        {"listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"},
        {"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512,OAUTHBEARER"},
        {"sasl.oauthbearer.jwks.endpoint.url", jurl},
        {"sasl.oauthbearer.expected.issuer", GW_ISS},
        {"sasl.oauthbearer.expected.audience", "kafka"},
        {"sluice.sasl.plain.allow.insecure", "true"},
        {"connection.failed.authentication.delay.ms", "0"},
        {"ssl.keystore.location", ks},
        {"sluice.provision.enable", "false"},
        {"sluice.metrics.listener", "http://127.0.0.1:0"},
    };
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        if (sl_config_set(&c, kv[k][0], kv[k][1], err, sizeof err) != SL_OK) {
            fprintf(stderr, "  %s\n", err);
            return false;
        }
    if (sl_config_finish(&c, err, sizeof err) != SL_OK ||
        sl_broker_new(&c, SL_BROKER_SERVE, &x->b, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  broker: %s\n", err);
        return false;
    }
    x->plain_port = x->b->listeners[0].port;
    x->sasl_port = x->b->listeners[1].port;
    x->ssl_port = x->b->listeners[2].port;
    return x->plain_port > 0 && x->sasl_port > 0 && x->ssl_port > 0;
}

static void ub_stop(ubroker *x) {
    if (x->b) sl_broker_free(x->b);
    x->b = NULL;
    if (x->dir[0]) nftw(x->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* The gateway's upstream keys for one listener. NULL with the error printed. */
static sl_upstream_cfg *up_cfg(int port, const char *proto, const char *mech, const char *pass,
                               const char *ca) {
    sl_config c;
    sl_config_defaults(&c);
    char err[512], boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
    if (sl_config_set(&c, "sluice.gateway.upstream.bootstrap.servers", boot, err, sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.security.protocol", proto, err, sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.connect.timeout.ms", "5000", err, sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.request.timeout.ms", "10000", err, sizeof err))
        goto bad;
    if (mech &&
        (sl_config_set(&c, "sluice.gateway.upstream.sasl.mechanism", mech, err, sizeof err) ||
         sl_config_set(&c, "sluice.gateway.upstream.sasl.username", GW_USER, err, sizeof err) ||
         sl_config_set(&c, "sluice.gateway.upstream.sasl.password", pass, err, sizeof err)))
        goto bad;
    if (ca && sl_config_set(&c, "sluice.gateway.upstream.ssl.ca.location", ca, err, sizeof err))
        goto bad;
    sl_upstream_cfg *u = sl_upstream_cfg_new(&c, err, sizeof err);
    if (u) return u;
bad:
    fprintf(stderr, "  upstream cfg: %s\n", err);
    return NULL;
}

typedef struct seen_ev {
    int connected, ok, lost;
    sl_up_status st;
    char why[256];
} seen_ev;

static void ev_connected(void *ctx, int32_t node, const char *addr, bool ok, sl_up_status st,
                         const char *why) {
    seen_ev *s = ctx;
    s->connected++;
    s->ok = ok;
    s->st = st;
    snprintf(s->why, sizeof s->why, "%s", why);
}

static void ev_lost(void *ctx, int32_t node, const char *addr, const char *why) {
    seen_ev *s = ctx;
    s->lost++;
    snprintf(s->why, sizeof s->why, "%s", why);
}

/* One response seen by a callback. */
typedef struct got {
    int calls;
    sl_up_status st;
    int16_t key, version;
    int16_t error; /* decoded top-level error (ApiVersions) */
    int32_t count; /* api keys (ApiVersions) or brokers (Metadata) */
    bool decoded;
    int order; /* position among answers */
} got;

static int g_order;

static void on_resp(void *ctx, sl_up_status st, const uint8_t *body, size_t len) {
    got *g = ctx;
    g->calls++;
    g->st = st;
    g->order = g_order++;
    if (st != SL_UP_OK) {
        g->decoded = body == NULL && len == 0;
        return;
    }
    sl_arena *a = sl_arena_new(4096);
    sl_rd r = sl_rd_init(body, len);
    if (g->key == 18) {
        sl_api_versions_resp m;
        g->decoded = sl_api_versions_resp_decode(&r, a, g->version, &m) == SL_OK;
        g->error = m.error_code;
        g->count = m.api_keys_count;
    } else if (g->key == 3) {
        sl_metadata_resp m;
        g->decoded = sl_metadata_resp_decode(&r, a, g->version, &m) == SL_OK;
        g->count = m.brokers_count;
    }
    sl_arena_free(a);
}

/* A request frame (header + body, no size) in `a`. */
static sl_bytes frame(sl_arena *a, int16_t key, int16_t v) {
    sl_wr w;
    sl_wr_init(&w, a, 128);
    sl_req_header h = {key, v, 12345, sl_str_c("test")};
    sl_req_header_encode(&w, &h);
    if (key == 18) {
        sl_api_versions_req m;
        sl_api_versions_req_init(&m);
        sl_api_versions_req_encode(&w, v, &m);
    } else if (key == 3) {
        sl_metadata_req m;
        sl_metadata_req_init(&m);
        m.topics_count = -1; /* every topic */
        sl_metadata_req_encode(&w, v, &m);
    } else if (key == 0) {
        sl_produce_req m;
        sl_produce_req_init(&m);
        m.transactional_id = SL_STR_NULL;
        m.acks = 0;
        m.timeout_ms = 1000;
        m.topic_data_count = 0; /* nothing to append: nothing to fail, and no answer */
        sl_produce_req_encode(&w, v, &m);
    }
    return (sl_bytes){w.buf, (int32_t)w.len};
}

static void send_req(sl_upconn *u, sl_arena *a, got *g, int16_t key, int16_t v) {
    g->key = key;
    g->version = v;
    sl_bytes f = frame(a, key, v);
    sl_upconn_send(u, f.p, (size_t)f.len, g ? on_resp : NULL, g);
}

#define WAIT(loop, cond, ms)                                                                       \
    do {                                                                                           \
        int64_t d_ = sl_mono_ms() + (ms);                                                          \
        while (!(cond) && sl_mono_ms() < d_) sl_loop_run_once((loop), 10);                         \
    } while (0)

static const sl_upconn_events *events(seen_ev *s) {
    static sl_upconn_events ev;
    ev = (sl_upconn_events){s, ev_connected, ev_lost};
    return &ev;
}

/* Connects with `cfg`, then ApiVersions v0 and Metadata v1 answer and decode. */
static bool connect_and_query(ubroker *x, sl_upstream_cfg *cfg, int port, int64_t *lifetime) {
    seen_ev s = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u = sl_upconn_new(x->b->loop, cfg, events(&s), -1, "127.0.0.1", port);
    bool ok = u != NULL;
    got g1 = {0}, g2 = {0};
    if (ok) {
        /* Sent before the connection is ready: they queue. */
        send_req(u, a, &g1, 18, 0);
        send_req(u, a, &g2, 3, 1);
        ok = !sl_upconn_ready(u) && sl_upconn_outstanding(u) == 2;
        WAIT(x->b->loop, g2.calls, 10000);
        ok = ok && s.connected == 1 && s.ok && s.lost == 0;
        ok = ok && g1.calls == 1 && g1.st == SL_UP_OK && g1.decoded && g1.error == 0 &&
             g1.count > 10;
        ok = ok && g2.calls == 1 && g2.st == SL_UP_OK && g2.decoded && g2.count == 1;
        ok = ok && g1.order < g2.order && sl_upconn_ready(u) && sl_upconn_outstanding(u) == 0;
        if (lifetime) *lifetime = sl_upconn_session_lifetime_ms(u);
        if (!ok)
            fprintf(stderr, "  connected=%d ok=%d why=%s g1=%d/%d g2=%d/%d\n", s.connected, s.ok,
                    s.why, g1.calls, g1.st, g2.calls, g2.st);
        sl_upconn_close(u);
        sl_upconn_unref(u);
    }
    sl_arena_free(a);
    return ok;
}

SL_TEST(upstream_plaintext_apiversions_and_metadata) {
    ubroker x;
    CHECK(ub_start(&x));
    sl_upstream_cfg *cfg = up_cfg(x.plain_port, "PLAINTEXT", NULL, NULL, NULL);
    bool ok = cfg && connect_and_query(&x, cfg, x.plain_port, NULL);
    sl_upstream_cfg_free(cfg);
    ub_stop(&x);
    CHECK(ok);
}

SL_TEST(upstream_sasl_scram_sha512_and_plain) {
    ubroker x;
    CHECK(ub_start(&x));
    sl_upstream_cfg *scram = up_cfg(x.sasl_port, "SASL_PLAINTEXT", "SCRAM-SHA-512", GW_PASS, NULL);
    sl_upstream_cfg *plain = up_cfg(x.sasl_port, "SASL_PLAINTEXT", "PLAIN", GW_PASS, NULL);
    int64_t life = -1;
    bool ok1 = scram && connect_and_query(&x, scram, x.sasl_port, &life);
    bool ok2 = plain && connect_and_query(&x, plain, x.sasl_port, NULL);
    sl_upstream_cfg_free(scram);
    sl_upstream_cfg_free(plain);
    ub_stop(&x);
    CHECK(ok1);
    CHECK(ok2);
    CHECK(life >= 0); /* recorded from SaslAuthenticate v1 (0: the broker sets none) */
}

SL_TEST(upstream_ssl_verifies_the_broker_certificate) {
    ubroker x;
    CHECK(ub_start(&x));
    char ca[256];
    snprintf(ca, sizeof ca, "%s/ca.pem", x.dir);
    sl_upstream_cfg *good = up_cfg(x.ssl_port, "SSL", NULL, NULL, ca);
    bool ok = good && connect_and_query(&x, good, x.ssl_port, NULL);
    /* Against the system store the test CA is unknown: the handshake fails, as a connect
     * failure, and a queued request learns it. */
    sl_upstream_cfg *sys = up_cfg(x.ssl_port, "SSL", NULL, NULL, NULL);
    seen_ev s = {0};
    got g = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u =
        sys ? sl_upconn_new(x.b->loop, sys, events(&s), -1, "127.0.0.1", x.ssl_port) : NULL;
    if (u) {
        send_req(u, a, &g, 18, 0);
        WAIT(x.b->loop, g.calls && s.connected, 10000);
    }
    bool refused = u && s.connected == 1 && !s.ok && s.st == SL_UP_CONNECT &&
                   strstr(s.why, "TLS") && g.calls == 1 && g.st == SL_UP_CONNECT &&
                   sl_upconn_dead(u);
    if (u) sl_upconn_unref(u);
    sl_arena_free(a);
    sl_upstream_cfg_free(good);
    sl_upstream_cfg_free(sys);
    ub_stop(&x);
    CHECK(ok);
    CHECK(refused);
}

SL_TEST(upstream_wrong_password_is_auth_failure) {
    ubroker x;
    CHECK(ub_start(&x));
    const char *mechs[] = {"SCRAM-SHA-512", "PLAIN"};
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        sl_upstream_cfg *cfg = up_cfg(x.sasl_port, "SASL_PLAINTEXT", mechs[i], "wrong", NULL);
        seen_ev s = {0};
        got g1 = {0}, g2 = {0};
        sl_arena *a = sl_arena_new(4096);
        sl_upconn *u =
            cfg ? sl_upconn_new(x.b->loop, cfg, events(&s), 7, "127.0.0.1", x.sasl_port) : NULL;
        ok = u != NULL;
        if (ok) {
            send_req(u, a, &g1, 18, 0);
            WAIT(x.b->loop, g1.calls && s.connected, 10000);
            ok = s.connected == 1 && !s.ok && s.st == SL_UP_AUTH && g1.calls == 1 &&
                 g1.st == SL_UP_AUTH && g1.decoded && sl_upconn_dead(u);
            ok = ok && !strstr(s.why, "wrong") && s.lost == 0; /* the password is never told */
            /* Later sends fail too, asynchronously. */
            send_req(u, a, &g2, 18, 0);
            ok = ok && g2.calls == 0;
            WAIT(x.b->loop, g2.calls, 5000);
            ok = ok && g2.calls == 1 && g2.st == SL_UP_AUTH;
            if (!ok) fprintf(stderr, "  %s: st=%d why=%s\n", mechs[i], s.st, s.why);
            sl_upconn_unref(u);
        }
        sl_arena_free(a);
        sl_upstream_cfg_free(cfg);
    }
    ub_stop(&x);
    CHECK(ok);
}

/* A loop and a PLAINTEXT connection to 127.0.0.1:`port` as node `node`, with its events, one
 * request's answer and an arena: the set-up of the tests against a scripted or absent upstream.
 * `p` must stay where it is (the connection reports into p->s). */
typedef struct plain_up {
    sl_loop *l;
    sl_upstream_cfg *cfg;
    seen_ev s;
    got g;
    sl_arena *a;
    sl_upconn *u;
} plain_up;

static bool plain_up_open(plain_up *p, int port, int32_t node) {
    memset(p, 0, sizeof *p);
    p->l = sl_loop_new();
    p->cfg = up_cfg(port, "PLAINTEXT", NULL, NULL, NULL);
    p->a = sl_arena_new(4096);
    if (p->l && p->cfg && p->a)
        p->u = sl_upconn_new(p->l, p->cfg, events(&p->s), node, "127.0.0.1", port);
    return p->u != NULL;
}

static void plain_up_close(plain_up *p) {
    if (p->u) sl_upconn_unref(p->u);
    sl_arena_free(p->a);
    sl_upstream_cfg_free(p->cfg);
    sl_loop_free(p->l);
}

SL_TEST(upstream_refused_port_is_connect_failure) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    int port = ntohs(sa.sin_port);
    close(fd); /* nothing listens there now */
    plain_up p;
    bool ok = plain_up_open(&p, port, 1);
    if (ok) {
        send_req(p.u, p.a, &p.g, 18, 0);
        WAIT(p.l, p.g.calls && p.s.connected, 10000);
    }
    ok = ok && p.s.connected == 1 && !p.s.ok && p.s.st == SL_UP_CONNECT && p.g.calls == 1 &&
         p.g.st == SL_UP_CONNECT && sl_upconn_dead(p.u) && !sl_upconn_ready(p.u) &&
         strstr(p.s.why, "cannot connect");
    plain_up_close(&p);
    CHECK(ok);
}

/* Closes and releases what a test over an in-process broker made. */
static void up_teardown(sl_upconn *u, sl_arena *a, sl_upstream_cfg *cfg, ubroker *x) {
    if (u) {
        sl_upconn_close(u);
        sl_upconn_unref(u);
    }
    sl_arena_free(a);
    sl_upstream_cfg_free(cfg);
    ub_stop(x);
}

SL_TEST(upstream_pipelined_answers_in_order) {
    ubroker x;
    CHECK(ub_start(&x));
    sl_upstream_cfg *cfg = up_cfg(x.sasl_port, "SASL_PLAINTEXT", "SCRAM-SHA-512", GW_PASS, NULL);
    CHECK(cfg != NULL);
    seen_ev s = {0};
    sl_upconn *u = sl_upconn_new(x.b->loop, cfg, events(&s), -1, "127.0.0.1", x.sasl_port);
    CHECK(u != NULL);
    WAIT(x.b->loop, s.connected, 10000);
    bool ok = s.connected == 1 && s.ok && sl_upconn_ready(u);
    enum { N = 100 };
    static got g[N];
    memset(g, 0, sizeof g);
    g_order = 0;
    sl_arena *a = sl_arena_new(65536);
    for (int i = 0; ok && i < N; i++) send_req(u, a, &g[i], i % 2 ? 3 : 18, i % 2 ? 1 : 0);
    ok = ok && sl_upconn_outstanding(u) == N;
    WAIT(x.b->loop, g[N - 1].calls, 20000);
    for (int i = 0; ok && i < N; i++)
        ok = g[i].calls == 1 && g[i].st == SL_UP_OK && g[i].decoded && g[i].order == i;
    ok = ok && sl_upconn_outstanding(u) == 0 && s.lost == 0;
    up_teardown(u, a, cfg, &x);
    CHECK(ok);
}

/* Produce answers: the base offset of partition 0 of the first topic, -1 if absent. */
typedef struct pgot {
    int calls;
    sl_up_status st;
    int16_t error;
    int64_t base;
} pgot;

static void on_produce(void *ctx, sl_up_status st, const uint8_t *body, size_t len) {
    pgot *g = ctx;
    g->calls++;
    g->st = st;
    g->base = -1;
    sl_arena *a = sl_arena_new(4096);
    sl_rd r = sl_rd_init(body, len);
    sl_produce_resp m;
    if (st == SL_UP_OK && sl_produce_resp_decode(&r, a, 7, &m) == SL_OK && m.responses_count == 1 &&
        m.responses[0].partition_responses_count == 1) {
        g->error = m.responses[0].partition_responses[0].error_code;
        g->base = m.responses[0].partition_responses[0].base_offset;
    }
    sl_arena_free(a);
}

static void count_call(void *ctx) { ++*(int *)ctx; }

/* Requests far larger than the socket buffers, sent back to back before the broker reads any:
 * the first goes to the socket in part straight from the caller's frame, the rest of it and the
 * ones after it wait in the connection's queue: copied (sl_upconn_send), or still in the
 * caller's frames (`kept`: sl_upconn_send_kept). The broker checks each batch's CRC and answers
 * each with the next offsets, so a byte lost, repeated or reordered fails this. The backlog
 * counts every byte until its answer, and the drained callback runs once, when it is zero. */
static bool big_requests_arrive_intact(bool kept) {
    ubroker x;
    if (!ub_start(&x)) return false;
    sl_upstream_cfg *cfg = up_cfg(x.plain_port, "PLAINTEXT", NULL, NULL, NULL);
    seen_ev s = {0};
    sl_upconn *u =
        cfg ? sl_upconn_new(x.b->loop, cfg, events(&s), -1, "127.0.0.1", x.plain_port) : NULL;
    bool ok = u && sl_topics_create(x.b->topics, sl_str_c("big"), 1, NULL, false, NULL) == SL_OK;
    if (ok) WAIT(x.b->loop, s.connected, 10000);
    ok = ok && s.connected == 1 && s.ok && sl_upconn_ready(u);
    enum { N = 8, RECS = 1000, VLEN = 900 }; /* ~0.9 MB per request, ~7 MB in all */
    size_t sent = 0;
    int drained = 0;
    static pgot g[N];
    memset(g, 0, sizeof g);
    sl_arena *a = sl_arena_new(1 << 20);
    static uint8_t val[VLEN];
    for (int i = 0; ok && i < N; i++) {
        memset(val, 'a' + i, sizeof val);
        size_t bl = 0;
        uint8_t *batch = sl_batch_build(a, 1000 + i, RECS, val, sizeof val, &bl);
        sl_produce_req_partition part;
        sl_produce_req_partition_init(&part);
        part.index = 0;
        part.records = (sl_bytes){batch, (int32_t)bl};
        sl_produce_req_topic t;
        sl_produce_req_topic_init(&t);
        t.name = sl_str_c("big");
        t.partition_data = &part;
        t.partition_data_count = 1;
        sl_produce_req m;
        sl_produce_req_init(&m);
        m.transactional_id = SL_STR_NULL;
        m.acks = 1;
        m.timeout_ms = 10000;
        m.topic_data = &t;
        m.topic_data_count = 1;
        sl_wr w;
        sl_wr_init(&w, a, bl + 256);
        sl_req_header h = {0, 7, 1, sl_str_c("test")};
        sl_req_header_encode(&w, &h);
        sl_produce_req_encode(&w, 7, &m);
        ok = batch && !w.err;
        if (ok && kept)
            sl_upconn_send_kept(u, w.buf, w.len, a, on_produce, &g[i]);
        else if (ok)
            sl_upconn_send(u, w.buf, w.len, on_produce, &g[i]);
        sent += w.len + 4;
    }
    ok = ok && sl_upconn_backlog(u) == sent;
    if (ok) sl_upconn_when_below(u, 0, count_call, &drained);
    WAIT(x.b->loop, g[N - 1].calls, 30000);
    for (int i = 0; ok && i < N; i++) {
        ok = g[i].calls == 1 && g[i].st == SL_UP_OK && g[i].error == 0 &&
             g[i].base == (int64_t)i * RECS;
        if (!ok)
            fprintf(stderr, "  request %d: calls=%d st=%d error=%d base=%lld\n", i, g[i].calls,
                    (int)g[i].st, (int)g[i].error, (long long)g[i].base);
    }
    ok = ok && sl_upconn_outstanding(u) == 0 && s.lost == 0 && sl_upconn_backlog(u) == 0 &&
         drained == 1;
    if (!ok) fprintf(stderr, "  kept=%d drained=%d\n", kept, drained);
    up_teardown(u, a, cfg, &x);
    return ok;
}

SL_TEST(upstream_requests_larger_than_the_socket_buffer_arrive_intact) {
    CHECK(big_requests_arrive_intact(false));
}

SL_TEST(upstream_kept_requests_wait_in_the_callers_frame_and_arrive_intact) {
    CHECK(big_requests_arrive_intact(true));
}

SL_TEST(upstream_no_response_send_then_normal_request) {
    ubroker x;
    CHECK(ub_start(&x));
    sl_upstream_cfg *cfg = up_cfg(x.plain_port, "PLAINTEXT", NULL, NULL, NULL);
    CHECK(cfg != NULL);
    seen_ev s = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u = sl_upconn_new(x.b->loop, cfg, events(&s), -1, "127.0.0.1", x.plain_port);
    CHECK(u != NULL);
    got p = {0}, m = {0};
    p.key = 0;
    sl_bytes f = frame(a, 0, 3); /* Produce v3, acks=0: the broker sends nothing back */
    sl_upconn_send(u, f.p, (size_t)f.len, NULL, NULL);
    bool ok = sl_upconn_outstanding(u) == 0;
    send_req(u, a, &m, 3, 1);
    ok = ok && sl_upconn_outstanding(u) == 1;
    WAIT(x.b->loop, m.calls, 10000);
    ok = ok && m.calls == 1 && m.st == SL_UP_OK && m.decoded && m.count == 1 && p.calls == 0;
    /* Once more on the ready connection. */
    got m2 = {0};
    sl_upconn_send(u, f.p, (size_t)f.len, NULL, NULL);
    send_req(u, a, &m2, 18, 0);
    WAIT(x.b->loop, m2.calls, 10000);
    ok = ok && m2.calls == 1 && m2.st == SL_UP_OK && m2.decoded && s.lost == 0;
    up_teardown(u, a, cfg, &x);
    CHECK(ok);
}

SL_TEST(upstream_close_with_outstanding_runs_each_callback_once) {
    ubroker x;
    CHECK(ub_start(&x));
    sl_upstream_cfg *cfg = up_cfg(x.plain_port, "PLAINTEXT", NULL, NULL, NULL);
    CHECK(cfg != NULL);
    seen_ev s = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u = sl_upconn_new(x.b->loop, cfg, events(&s), -1, "127.0.0.1", x.plain_port);
    CHECK(u != NULL);
    WAIT(x.b->loop, s.connected, 10000);
    bool ok = s.ok && sl_upconn_ready(u);
    got g[5] = {{0}};
    for (int i = 0; i < 5; i++) send_req(u, a, &g[i], 3, 1);
    ok = ok && sl_upconn_outstanding(u) == 5;
    sl_upconn_close(u);
    /* Not inside close: posted. */
    for (int i = 0; i < 5; i++) ok = ok && g[i].calls == 0;
    ok = ok && sl_upconn_dead(u);
    sl_upconn_close(u); /* idempotent */
    sl_upconn_unref(u); /* the callbacks still hold the connection */
    for (int i = 0; i < 20; i++) sl_loop_run_once(x.b->loop, 10);
    for (int i = 0; i < 5; i++)
        ok = ok && g[i].calls == 1 && g[i].st == SL_UP_CLOSED && g[i].decoded;
    ok = ok && s.lost == 0; /* closing is the caller's doing, not a loss */
    sl_arena_free(a);
    sl_upstream_cfg_free(cfg);
    ub_stop(&x);
    CHECK(ok);
}

SL_TEST(upstream_cfg_errors_name_the_key) {
    struct {
        const char *k[4][2];
        const char *want;
    } cases[] = {
        {{{"sluice.gateway.upstream.bootstrap.servers", ""}},
         "sluice.gateway.upstream.bootstrap.servers"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "host-without-port"}},
         "sluice.gateway.upstream.bootstrap.servers"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1,::1:9092"}},
         "sluice.gateway.upstream.bootstrap.servers"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:99999"}},
         "sluice.gateway.upstream.bootstrap.servers"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT"},
          {"sluice.gateway.upstream.sasl.mechanism", "SCRAM-SHA-256"}},
         "sluice.gateway.upstream.sasl.username"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT"},
          {"sluice.gateway.upstream.sasl.mechanism", "PLAIN"},
          {"sluice.gateway.upstream.sasl.username", "u"}},
         "sluice.gateway.upstream.sasl.password"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT"},
          {"sluice.gateway.upstream.sasl.username", "u"},
          {"sluice.gateway.upstream.sasl.password.file", "/nonexistent/pw"}},
         "sluice.gateway.upstream.sasl.password.file"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT"},
          {"sluice.gateway.upstream.sasl.mechanism", "OAUTHBEARER"}},
         "sluice.gateway.upstream.sasl.oauthbearer.token"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SSL"},
          {"sluice.gateway.upstream.ssl.ca.location", "/nonexistent/ca.pem"}},
         "sluice.gateway.upstream.ssl.ca.location"},
        {{{"sluice.gateway.upstream.bootstrap.servers", "a:1"},
          {"sluice.gateway.upstream.security.protocol", "SSL"},
          {"sluice.gateway.upstream.ssl.certificate.location", "/nonexistent/c.pem"}},
         "sluice.gateway.upstream.ssl.key.location"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_config c;
        sl_config_defaults(&c);
        char err[512] = "";
        for (int k = 0; k < 4 && cases[i].k[k][0]; k++)
            CHECK(sl_config_set(&c, cases[i].k[k][0], cases[i].k[k][1], err, sizeof err) == SL_OK);
        sl_upstream_cfg *u = sl_upstream_cfg_new(&c, err, sizeof err);
        if (u || !strstr(err, cases[i].want)) fprintf(stderr, "  case %zu: %s\n", i, err);
        CHECK(u == NULL);
        CHECK(strstr(err, cases[i].want) != NULL);
    }
}

SL_TEST(upstream_cfg_bootstrap_list_and_password_file) {
    char dir[] = "/tmp/sl_upcfg_XXXXXX", pw[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(pw, sizeof pw, "%s/pw", dir);
    FILE *f = fopen(pw, "w");
    CHECK(f != NULL);
    fputs("s3cret\nignored second line\n", f);
    fclose(f);
    sl_config c;
    sl_config_defaults(&c);
    char err[512] = "";
    CHECK(sl_config_set(&c, "sluice.gateway.upstream.bootstrap.servers",
                        " kafka-1:9092, [::1]:9093,10.0.0.7:19092 ", err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT", err,
                        sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "sluice.gateway.upstream.sasl.username", "gw", err, sizeof err) ==
          SL_OK);
    CHECK(sl_config_set(&c, "sluice.gateway.upstream.sasl.password.file", pw, err, sizeof err) ==
          SL_OK);
    sl_upstream_cfg *u = sl_upstream_cfg_new(&c, err, sizeof err);
    unlink(pw);
    rmdir(dir);
    if (!u) fprintf(stderr, "  %s\n", err);
    CHECK(u != NULL);
    char host[256];
    int port = 0;
    bool ok = sl_upstream_cfg_bootstrap(u, 0, host, sizeof host, &port) &&
              !strcmp(host, "kafka-1") && port == 9092;
    ok = ok && sl_upstream_cfg_bootstrap(u, 1, host, sizeof host, &port) && !strcmp(host, "::1") &&
         port == 9093;
    ok = ok && sl_upstream_cfg_bootstrap(u, 2, host, sizeof host, &port) &&
         !strcmp(host, "10.0.0.7") && port == 19092;
    ok = ok && !sl_upstream_cfg_bootstrap(u, 3, host, sizeof host, &port);
    ok = ok && sl_upstream_cfg_for_principal(u, "User:alice") == NULL;
    sl_upstream_cfg_free(u);
    CHECK(ok);
}

/* sluice.gateway.principal.mapping: a mapped principal goes upstream with its own identity
 * (here alice with a wrong password, so the upstream refuses her; carol with PLAIN, accepted),
 * anyone else as the gateway; a bad line fails the start naming FILE:LINE. */
static sl_upstream_cfg *mapped_cfg(int port, const char *map_text, char *err, size_t elen) {
    char path[] = "/tmp/sl_upmap_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    if (write(fd, map_text, strlen(map_text)) != (ssize_t)strlen(map_text)) {
        close(fd);
        return NULL;
    }
    close(fd);
    sl_config c;
    sl_config_defaults(&c);
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
    sl_upstream_cfg *u = NULL;
    if (!sl_config_set(&c, "sluice.gateway.upstream.bootstrap.servers", boot, err, elen) &&
        !sl_config_set(&c, "sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT", err,
                       elen) &&
        !sl_config_set(&c, "sluice.gateway.upstream.sasl.mechanism", "SCRAM-SHA-512", err, elen) &&
        !sl_config_set(&c, "sluice.gateway.upstream.sasl.username", GW_USER, err, elen) &&
        !sl_config_set(&c, "sluice.gateway.upstream.sasl.password", GW_PASS, err, elen) &&
        !sl_config_set(&c, "sluice.gateway.principal.mapping", path, err, elen))
        u = sl_upstream_cfg_new(&c, err, elen);
    unlink(path);
    return u;
}

SL_TEST(upstream_principal_mapping_uses_the_mapped_identity) {
    ubroker x;
    CHECK(ub_start(&x));
    char err[512] = "";
    sl_upstream_cfg *u = mapped_cfg(x.sasl_port,
                                    "# client principal -> its own upstream identity\n"
                                    "User:alice sasl.password=wrong\n"
                                    "User:carol   sasl.mechanism=PLAIN  # same user, PLAIN\n",
                                    err, sizeof err);
    if (!u) fprintf(stderr, "  %s\n", err);
    bool built = u != NULL;
    const sl_upstream_cfg *alice = sl_upstream_cfg_for_principal(u, "User:alice");
    const sl_upstream_cfg *carol = sl_upstream_cfg_for_principal(u, "User:carol");
    bool unmapped = sl_upstream_cfg_for_principal(u, "User:bob") == NULL &&
                    sl_upstream_cfg_for_principal(u, NULL) == NULL;
    bool gw_ok = built && connect_and_query(&x, u, x.sasl_port, NULL);
    bool carol_ok = carol && connect_and_query(&x, (sl_upstream_cfg *)carol, x.sasl_port, NULL);
    bool alice_refused = false;
    if (alice) {
        seen_ev s = {0};
        got g = {0};
        sl_arena *a = sl_arena_new(4096);
        sl_upconn *c = sl_upconn_new(x.b->loop, alice, events(&s), 1, "127.0.0.1", x.sasl_port);
        if (c) {
            send_req(c, a, &g, 18, 0);
            WAIT(x.b->loop, g.calls && s.connected, 10000);
            alice_refused = !s.ok && s.st == SL_UP_AUTH && g.st == SL_UP_AUTH;
            sl_upconn_unref(c);
        }
        sl_arena_free(a);
    }
    sl_upstream_cfg_free(u);
    /* Bad files: each error names the key, the file and the line. */
    const char *bad[] = {"User:alice\n", "alice sasl.password=x\n",
                         "User:a sasl.password=x\nUser:a sasl.password=y\n",
                         "User:a ssl.ca.location=/x\n", "User:a sasl.mechanism=NOPE\n"};
    bool bad_ok = true;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        sl_upstream_cfg *b = mapped_cfg(x.sasl_port, bad[i], err, sizeof err);
        if (b || !strstr(err, "sluice.gateway.principal.mapping") ||
            !strstr(err, i == 2 ? ":2:" : ":1:")) {
            fprintf(stderr, "  bad mapping %zu accepted or unclear: %s\n", i, err);
            bad_ok = false;
        }
        sl_upstream_cfg_free(b);
    }
    ub_stop(&x);
    CHECK(built);
    CHECK(alice != NULL && carol != NULL && alice != u && carol != alice);
    CHECK(unmapped);
    CHECK(gw_ok);
    CHECK(carol_ok);
    CHECK(alice_refused);
    CHECK(bad_ok);
}

/* The SCRAM client against the server side of sl_scram (RFC 7677's SHA-256 vector shape). */
static bool lookup_gw(void *ctx, const char *user, size_t ul, int mech, sl_scram_cred *out) {
    *out = *(const sl_scram_cred *)ctx;
    return ul == strlen(GW_USER) && !memcmp(user, GW_USER, ul);
}

SL_TEST(upstream_scram_client_against_server) {
    for (int mech = SL_SCRAM_SHA_256; mech <= SL_SCRAM_SHA_512; mech++) {
        sl_scram_cred cred;
        CHECK(sl_scram_cred_from_password(mech, GW_PASS, strlen(GW_PASS), 4096, &cred) == SL_OK);
        sl_saslc_scram c;
        sl_scram_server s;
        memset(&s, 0, sizeof s);
        char m1[1024], m2[2048], m3[1024], m4[1024];
        size_t l1, l2, l3, l4;
        CHECK(sl_saslc_scram_first(&c, mech, GW_USER, NULL, m1, sizeof m1, &l1) == SL_OK);
        CHECK(c.nonce_len >= 32);
        CHECK(sl_scram_server_first(&s, mech, (uint8_t *)m1, l1, lookup_gw, &cred, m2, sizeof m2,
                                    &l2) == SL_OK);
        CHECK(sl_saslc_scram_final(&c, GW_PASS, strlen(GW_PASS), (uint8_t *)m2, l2, m3, sizeof m3,
                                   &l3) == SL_OK);
        CHECK(sl_scram_server_final(&s, (uint8_t *)m3, l3, m4, sizeof m4, &l4) == SL_OK);
        sl_saslc_scram c2 = c;
        CHECK(sl_saslc_scram_verify(&c, (uint8_t *)m4, l4) == SL_OK);
        /* A server that does not know the credential cannot forge v=. */
        m4[3] ^= 1;
        if (m4[3] == ',' || m4[3] == '=') m4[3] ^= 3;
        sl_err e = sl_saslc_scram_verify(&c2, (uint8_t *)m4, l4);
        CHECK(e == SL_EAUTH || e == SL_EPROTO);
        sl_scram_server_clear(&s);
        sl_saslc_scram_clear(&c);
    }
    /* Server-first checks: nonce prefix, iteration floor and ceiling, mandatory extension. */
    sl_saslc_server_first sf;
    const char *cn = "abc";
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abcXYZ,s=c2FsdA==,i=4096", 26, cn, 3,
                                      &sf) == SL_OK);
    CHECK(sf.iterations == 4096 && sf.salt_len == 4);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abXYZ,s=c2FsdA==,i=4096", 25, cn, 3,
                                      &sf) == SL_EAUTH);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abc,s=c2FsdA==,i=4096", 23, cn, 3, &sf) ==
          SL_EAUTH);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abcX,s=c2FsdA==,i=4095", 24, cn, 3,
                                      &sf) == SL_EAUTH);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abcX,s=c2FsdA==,i=1000001", 27, cn, 3,
                                      &sf) == SL_EAUTH);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"m=x,r=abcX,s=c2FsdA==,i=4096", 28, cn, 3,
                                      &sf) == SL_EAUTH);
    CHECK(sl_saslc_parse_server_first((const uint8_t *)"r=abcX,s=c2Fsd,i=4096", 21, cn, 3, &sf) ==
          SL_EPROTO);
    uint8_t out[128];
    size_t n;
    CHECK(sl_saslc_oauthbearer("tok.en", 6, out, sizeof out, &n) == SL_OK);
    CHECK(n == 24 && !memcmp(out,
                             "n,,\x01"
                             "auth=Bearer tok.en\x01\x01",
                             n));
    CHECK(sl_saslc_oauthbearer("has space", 9, out, sizeof out, &n) != SL_OK);
    CHECK(sl_saslc_plain("u", "p", 1, out, sizeof out, &n) == SL_OK);
    CHECK(n == 4 && !memcmp(out, "\0u\0p", 4));
}

/* ---- a scripted upstream: a plain socket the test answers by hand ---- */

static int fake_listen(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4) ||
        getsockname(fd, (struct sockaddr *)&sa, &sl))
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Accepts the connection and reads one request frame; its correlation id in *corr. */
static int fake_accept_read(int lfd, int32_t *corr) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t b[4096];
    size_t have = 0;
    while (have < 4 || have < 4 + sl_get_be32(b)) {
        ssize_t n = recv(fd, b + have, sizeof b - have, 0);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        have += (size_t)n;
    }
    *corr = (int32_t)sl_get_be32(b + 8);
    return fd;
}

typedef enum { FAKE_WRONG_CORR, FAKE_HUGE_FRAME, FAKE_CLOSE, FAKE_SILENT } fake_mode;

static bool fake_case(fake_mode mode, sl_up_status want, const char *why_part) {
    int port = 0, lfd = fake_listen(&port);
    if (lfd < 0) return false;
    plain_up p;
    bool ok = plain_up_open(&p, port, 3);
    int fd = -1;
    if (ok) {
        WAIT(p.l, p.s.connected, 10000);
        send_req(p.u, p.a, &p.g, 18, 0);
        int32_t corr = 0;
        fd = fake_accept_read(lfd, &corr);
        ok = p.s.ok && fd >= 0 && corr != 12345; /* the connection's own id, not the caller's */
        uint8_t resp[16];
        sl_be32(resp, 8);
        sl_be32(resp + 4, (uint32_t)corr + 1);
        memset(resp + 8, 0, 8);
        if (ok && mode == FAKE_WRONG_CORR) ok = write(fd, resp, 12) == 12;
        sl_be32(resp, 0x7fffffff);
        if (ok && mode == FAKE_HUGE_FRAME) ok = write(fd, resp, 8) == 8;
        if (ok && mode == FAKE_CLOSE) {
            close(fd);
            fd = -1;
        }
        WAIT(p.l, p.g.calls && p.s.lost, 5000);
        ok = ok && p.g.calls == 1 && p.g.st == want && p.s.lost == 1 && strstr(p.s.why, why_part) &&
             sl_upconn_dead(p.u);
        if (!ok)
            fprintf(stderr, "  mode %d: calls=%d st=%d why=%s\n", mode, p.g.calls, p.g.st, p.s.why);
    }
    if (fd >= 0) close(fd);
    close(lfd);
    plain_up_close(&p);
    return ok;
}

SL_TEST(upstream_wrong_correlation_id_is_protocol_error) {
    CHECK(fake_case(FAKE_WRONG_CORR, SL_UP_PROTOCOL, "correlation id"));
}

SL_TEST(upstream_oversized_frame_is_protocol_error) {
    CHECK(fake_case(FAKE_HUGE_FRAME, SL_UP_PROTOCOL, "frame"));
}

SL_TEST(upstream_closed_by_upstream_fails_outstanding) {
    CHECK(fake_case(FAKE_CLOSE, SL_UP_CONNECT, "closed by upstream"));
}

/* An upstream that answers a kept request before taking all of it: the rest would still be
 * sent from the caller's frame, which the answer's callback lets go (ASan: a use after free).
 * It is a protocol error; the connection fails, the callback runs once. */
SL_TEST(upstream_answer_before_the_whole_request_is_protocol_error) {
    int port = 0, lfd = fake_listen(&port);
    CHECK(lfd >= 0);
    plain_up p;
    bool ok = plain_up_open(&p, port, 3);
    /* 16 MB: more than the socket buffers take while the peer reads only the header. */
    size_t len = 16u << 20;
    uint8_t *frame = ok ? sl_arena_calloc(p.a, 1, len) : NULL;
    int fd = -1;
    if (frame) {
        WAIT(p.l, p.s.connected, 10000);
        sl_be16(frame, 18);
        sl_be32(frame + 4, 12345);
        sl_upconn_send_kept(p.u, frame, len, p.a, on_resp, &p.g);
        ok = sl_upconn_backlog(p.u) == len + 4;
        fd = accept(lfd, NULL, NULL);
    }
    uint8_t hdr[12];
    size_t have = 0;
    while (fd >= 0 && have < sizeof hdr) {
        sl_loop_run_once(p.l, 10); /* the connection writes as the socket takes it */
        ssize_t n = recv(fd, hdr + have, sizeof hdr - have, MSG_DONTWAIT);
        if (n > 0) have += (size_t)n;
        if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    }
    ok = ok && have == sizeof hdr;
    uint8_t resp[12];
    sl_be32(resp, 8);
    memcpy(resp + 4, hdr + 8, 4);
    memset(resp + 8, 0, 4);
    ok = ok && sl_upconn_backlog(p.u) == len + 4 && write(fd, resp, sizeof resp) == sizeof resp;
    if (ok) WAIT(p.l, p.g.calls && p.s.lost, 5000);
    ok = ok && p.g.calls == 1 && p.g.st == SL_UP_PROTOCOL && p.s.lost == 1 &&
         strstr(p.s.why, "before receiving all of it") && sl_upconn_dead(p.u) &&
         sl_upconn_backlog(p.u) == 0;
    if (!ok) fprintf(stderr, "  calls=%d st=%d why=%s\n", p.g.calls, p.g.st, p.s.why);
    sl_arena_free(p.a); /* the frame goes: nothing may still send from it */
    p.a = NULL;
    for (int i = 0; i < 5; i++) sl_loop_run_once(p.l, 1);
    if (fd >= 0) close(fd);
    close(lfd);
    plain_up_close(&p);
    CHECK(ok);
}

/* A PLAINTEXT upstream at `port` with request.timeout.ms at its lowest, 1 s (up_cfg's is 10 s). */
static sl_upstream_cfg *quick_timeout_cfg(int port) {
    sl_config c;
    sl_config_defaults(&c);
    char err[512], boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
    if (sl_config_set(&c, "sluice.gateway.upstream.bootstrap.servers", boot, err, sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.security.protocol", "PLAINTEXT", err,
                      sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.request.timeout.ms", "1000", err, sizeof err))
        return NULL;
    return sl_upstream_cfg_new(&c, err, sizeof err);
}

SL_TEST(upstream_request_timeout) {
    int port = 0, lfd = fake_listen(&port);
    CHECK(lfd >= 0);
    sl_loop *l = sl_loop_new();
    sl_upstream_cfg *cfg = quick_timeout_cfg(port);
    CHECK(cfg != NULL);
    seen_ev s = {0};
    got g = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u = sl_upconn_new(l, cfg, events(&s), 3, "127.0.0.1", port);
    WAIT(l, s.connected, 10000);
    int64_t t0 = sl_mono_ms();
    send_req(u, a, &g, 18, 0);
    WAIT(l, g.calls, 5000);
    int64_t took = sl_mono_ms() - t0;
    bool ok = g.calls == 1 && g.st == SL_UP_TIMEOUT && s.lost == 1 && strstr(s.why, "timeout") &&
              took >= 900 && took < 4000;
    sl_upconn_unref(u);
    close(lfd);
    sl_arena_free(a);
    sl_upstream_cfg_free(cfg);
    sl_loop_free(l);
    CHECK(ok);
}

/* connections.max.reauth.ms on the broker: the session lifetime is recorded and the connection
 * is replaced before it ends, so requests keep being answered past it (the broker refuses
 * requests on an expired session and closes the connection). */
SL_TEST(upstream_reauthenticates_before_session_expiry) {
    ubroker x;
    CHECK(ub_start(&x));
    x.b->cfg.connections_max_reauth_ms = 1500;
    sl_upstream_cfg *cfg = up_cfg(x.sasl_port, "SASL_PLAINTEXT", "SCRAM-SHA-512", GW_PASS, NULL);
    seen_ev s = {0};
    sl_arena *a = sl_arena_new(65536);
    sl_upconn *u =
        cfg ? sl_upconn_new(x.b->loop, cfg, events(&s), -1, "127.0.0.1", x.sasl_port) : NULL;
    bool ok = u != NULL;
    if (ok) WAIT(x.b->loop, s.connected, 10000);
    ok = ok && s.ok && sl_upconn_session_lifetime_ms(u) > 0 &&
         sl_upconn_session_lifetime_ms(u) <= 1500;
    int answered = 0, queued_seen = 0;
    int64_t end = sl_mono_ms() + 4000;
    while (ok && sl_mono_ms() < end) {
        got g = {0};
        send_req(u, a, &g, 3, 1);
        if (!sl_upconn_ready(u)) queued_seen++;
        WAIT(x.b->loop, g.calls, 5000);
        ok = g.calls == 1 && g.st == SL_UP_OK && g.decoded;
        answered += ok;
        sl_arena_reset(a);
        for (int i = 0; i < 5; i++) sl_loop_run_once(x.b->loop, 10);
    }
    ok = ok && s.lost == 0 && s.connected == 1 && answered > 10 && !sl_upconn_dead(u);
    if (!ok)
        fprintf(stderr, "  answered=%d lost=%d connected=%d why=%s\n", answered, s.lost,
                s.connected, s.why);
    if (u) {
        sl_upconn_close(u);
        sl_upconn_unref(u);
    }
    sl_arena_free(a);
    sl_upstream_cfg_free(cfg);
    ub_stop(&x);
    CHECK(ok);
    (void)queued_seen;
}

/* OAUTHBEARER with a token from the command (run on the worker for each connection), and a
 * static token the broker does not accept. */
static sl_upstream_cfg *oauth_cfg(int port, const char *key, const char *val) {
    sl_config c;
    sl_config_defaults(&c);
    char err[512], boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
    if (sl_config_set(&c, "sluice.gateway.upstream.bootstrap.servers", boot, err, sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.security.protocol", "SASL_PLAINTEXT", err,
                      sizeof err) ||
        sl_config_set(&c, "sluice.gateway.upstream.sasl.mechanism", "OAUTHBEARER", err,
                      sizeof err) ||
        sl_config_set(&c, key, val, err, sizeof err)) {
        fprintf(stderr, "  %s\n", err);
        return NULL;
    }
    sl_upstream_cfg *u = sl_upstream_cfg_new(&c, err, sizeof err);
    if (!u) fprintf(stderr, "  %s\n", err);
    return u;
}

SL_TEST(upstream_oauthbearer_token_command_and_refused_token) {
    ubroker x;
    CHECK(ub_start(&x));
    char claims[512], tokpath[128], cmd[300];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" GW_ISS "\",\"aud\":\"kafka\",\"sub\":\"gw\",\"exp\":%lld}",
             (long long)(sl_wall_ms() / 1000 + 600));
    char *good = tj_sign(tj_ec_key(0), "ES256", "e1", claims);
    char *bad = tj_sign(tj_ec_key(1), "ES256", "e1", claims); /* not the JWKS key */
    snprintf(tokpath, sizeof tokpath, "%s/token", x.dir);
    bool ok = good && bad && tj_write_file(tokpath, good);
    snprintf(cmd, sizeof cmd, "cat '%s'", tokpath);
    sl_upstream_cfg *byc =
        ok ? oauth_cfg(x.sasl_port, "sluice.gateway.upstream.sasl.oauthbearer.token.command", cmd)
           : NULL;
    ok = ok && byc && connect_and_query(&x, byc, x.sasl_port, NULL);
    sl_upstream_cfg *st =
        bad ? oauth_cfg(x.sasl_port, "sluice.gateway.upstream.sasl.oauthbearer.token", bad) : NULL;
    seen_ev s = {0};
    got g = {0};
    sl_arena *a = sl_arena_new(4096);
    sl_upconn *u =
        st ? sl_upconn_new(x.b->loop, st, events(&s), -1, "127.0.0.1", x.sasl_port) : NULL;
    if (u) {
        send_req(u, a, &g, 18, 0);
        WAIT(x.b->loop, g.calls && s.connected, 10000);
    }
    bool refused = u && s.connected == 1 && !s.ok && s.st == SL_UP_AUTH && g.st == SL_UP_AUTH;
    if (!refused)
        fprintf(stderr, "  refused: connected=%d st=%d why=%s\n", s.connected, s.st, s.why);
    if (u) sl_upconn_unref(u);
    sl_arena_free(a);
    sl_upstream_cfg_free(byc);
    sl_upstream_cfg_free(st);
    free(good);
    free(bad);
    ub_stop(&x);
    CHECK(ok);
    CHECK(refused);
}

/* ---- memory for answers (sl_upgate) ---- */

typedef struct gate_seen {
    int calls, order;
    sl_up_status st;
    size_t len;
} gate_seen;

static void on_gate_answer(void *ctx, sl_up_status st, const uint8_t *body, size_t len) {
    gate_seen *s = ctx;
    s->calls++;
    s->order = g_order++;
    s->st = st;
    s->len = len;
}

static size_t g_gate_held; /* what "clients" hold unsent, as the gateway's server would say */
static size_t gate_held_fn(void *ctx) { return g_gate_held; }

/* Writes an answer whose body (after the correlation id) is `body` bytes, all of it. */
static bool fake_answer(int fd, int32_t corr, size_t body) {
    size_t n = 8 + body;
    uint8_t *b = calloc(1, n);
    if (!b) return false;
    sl_be32(b, (uint32_t)(n - 4));
    sl_be32(b + 4, (uint32_t)corr);
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, b + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(b);
    return off == n;
}

/* Three connections under one gate of 300 KiB while clients already hold 250 KiB unsent: the
 * two 200 KiB answers wait in the kernel (not read, and not timed out although the upstream
 * request timeout passes meanwhile), the 100-byte one passes. Once the clients' bytes drain,
 * the waiting answers are read one after the other (together they would pass the budget), in
 * the order they were refused. */
SL_TEST(upstream_big_answers_wait_for_memory_small_ones_pass) {
    int port = 0, lfd = fake_listen(&port);
    CHECK(lfd >= 0);
    sl_loop *l = sl_loop_new();
    sl_upstream_cfg *cfg = quick_timeout_cfg(port);
    CHECK(cfg != NULL);
    sl_upgate *gate = sl_upgate_new(l, 300 * 1024, gate_held_fn, NULL);
    CHECK(gate != NULL);
    g_gate_held = 250 * 1024;
    seen_ev s[3] = {{0}};
    gate_seen ans[3] = {{0}};
    sl_upconn *u[3];
    int fd[3];
    sl_arena *a = sl_arena_new(4096);
    const size_t body[3] = {200 * 1024, 200 * 1024, 100};
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++) {
        u[i] = sl_upconn_new(l, cfg, events(&s[i]), 3, "127.0.0.1", port);
        sl_upconn_set_gate(u[i], gate);
        WAIT(l, s[i].connected, 10000);
        sl_bytes f = frame(a, 18, 0);
        sl_upconn_send(u[i], f.p, (size_t)f.len, on_gate_answer, &ans[i]);
        int32_t corr = 0;
        fd[i] = fake_accept_read(lfd, &corr);
        ok = s[i].ok && fd[i] >= 0 && fake_answer(fd[i], corr, body[i]);
        /* Waiting in order: the first big answer is refused before the second arrives. */
        if (ok && i < 2) WAIT(l, sl_upgate_waiting(gate) == i + 1, 5000);
    }
    ok = ok && sl_upgate_waiting(gate) == 2;
    WAIT(l, ans[2].calls, 5000);
    ok = ok && ans[2].calls == 1 && ans[2].st == SL_UP_OK && ans[2].len == 100;
    /* Past the 1 s request timeout: answered upstream, so nothing times out. */
    int64_t until = sl_mono_ms() + 1500;
    while (sl_mono_ms() < until) sl_loop_run_once(l, 50);
    ok = ok && ans[0].calls == 0 && ans[1].calls == 0 && sl_upgate_waiting(gate) == 2 &&
         !sl_upconn_dead(u[0]) && !sl_upconn_dead(u[1]) && sl_upgate_reading(gate) == 0;
    g_gate_held = 0; /* the clients read; the second fits once the first is read */
    WAIT(l, ans[0].calls && ans[1].calls, 5000);
    ok = ok && ans[0].order < ans[1].order && ans[0].st == SL_UP_OK && ans[0].len == 200 * 1024 &&
         ans[1].calls == 1 && ans[1].st == SL_UP_OK && ans[1].len == 200 * 1024 &&
         sl_upgate_waiting(gate) == 0 && sl_upgate_reading(gate) == 0 &&
         sl_upgate_refusals(gate) == 2;
    if (!ok)
        fprintf(stderr, "  calls %d %d %d lens %zu %zu %zu waiting=%d reading=%zu refusals=%llu\n",
                ans[0].calls, ans[1].calls, ans[2].calls, ans[0].len, ans[1].len, ans[2].len,
                sl_upgate_waiting(gate), sl_upgate_reading(gate),
                (unsigned long long)sl_upgate_refusals(gate));
    for (int i = 0; i < 3; i++) {
        if (fd[i] >= 0) close(fd[i]);
        sl_upconn_close(u[i]);
        sl_upconn_unref(u[i]);
    }
    sl_upgate_free(gate);
    for (int i = 0; i < 5; i++) sl_loop_run_once(l, 1);
    close(lfd);
    sl_arena_free(a);
    sl_upstream_cfg_free(cfg);
    sl_loop_free(l);
    CHECK(ok);
}

/* A connection that fails while it waits for memory leaves the gate (its reference with it),
 * and the gate outliving its owner admits everything. */
SL_TEST(upstream_gate_forgets_connections_that_fail_while_waiting) {
    int port = 0, lfd = fake_listen(&port);
    CHECK(lfd >= 0);
    plain_up p;
    CHECK(plain_up_open(&p, port, 3));
    sl_upgate *gate = sl_upgate_new(p.l, 1024 * 1024, gate_held_fn, NULL);
    CHECK(gate != NULL);
    sl_upconn_set_gate(p.u, gate);
    g_gate_held = 1024 * 1024;
    WAIT(p.l, p.s.connected, 10000);
    gate_seen ans = {0};
    sl_bytes f = frame(p.a, 18, 0);
    sl_upconn_send(p.u, f.p, (size_t)f.len, on_gate_answer, &ans);
    int32_t corr = 0;
    int fd = fake_accept_read(lfd, &corr);
    bool ok = fd >= 0 && fake_answer(fd, corr, 100 * 1024);
    WAIT(p.l, sl_upgate_waiting(gate) == 1, 5000);
    ok = ok && sl_upgate_waiting(gate) == 1 && ans.calls == 0;
    sl_upconn_close(p.u);
    WAIT(p.l, ans.calls, 5000);
    for (int i = 0; i < 10 && sl_upgate_waiting(gate); i++) sl_loop_run_once(p.l, 10);
    ok = ok && ans.calls == 1 && ans.st == SL_UP_CLOSED && sl_upgate_waiting(gate) == 0 &&
         sl_upgate_reading(gate) == 0;
    sl_upgate_free(gate); /* the connection still references it */
    g_gate_held = 0;
    if (fd >= 0) close(fd);
    close(lfd);
    plain_up_close(&p);
    CHECK(ok);
}
