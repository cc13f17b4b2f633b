/* Gateway address mapping (src/gateway/sl_gwaddr.c): configuration, node <-> port / server name,
 * and the response rewrites over responses encoded and decoded with the generated codecs, as
 * the gateway sees them coming from the upstream.
 *
 * SL_GWREWRITE_CORPUS=<dir> makes gwaddr_write_fuzz_corpus write the seed corpus of
 * tests/fuzz/fuzz_gwrewrite.c (one valid response per API and a few versions) into <dir>. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gateway/sl_gwaddr.h"
#include "sl_test.h"

#define UP   "upstream.internal" /* no rewritten answer may still contain this */
#define GW   "gw.example.com"
#define PATT "broker-$(nodeId).kafka.example.com"

/* One configuration at a time (static: it is large, and a failed CHECK leaks nothing). */
static sl_config g_cfg;
static sl_config *cfg_new(void) {
    sl_config_defaults(&g_cfg);
    return &g_cfg;
}

static bool set(sl_config *c, const char *k, const char *v) {
    char err[256];
    return sl_config_set(c, k, v, err, sizeof err) == SL_OK;
}

/* init must fail with SL_ECONFIG and an error naming `key`. */
static bool fails_naming(const sl_config *c, const char *lhost, int32_t lport, const char *key) {
    sl_gwaddr a;
    char err[512] = "";
    sl_err e = sl_gwaddr_init(&a, c, lhost, lport, err, sizeof err);
    if (e != SL_ECONFIG || !strstr(err, key)) {
        fprintf(stderr, "  expected SL_ECONFIG naming %s, got %d: \"%s\"\n", key, (int)e, err);
        return false;
    }
    return true;
}

/* Port mode, hosts gw.example.com, bootstrap 9092, nodes 1..3 at 9093..9095. */
static bool port_addr(sl_gwaddr *a) {
    sl_config *c = cfg_new();
    char err[256];
    bool ok = c && set(c, "sluice.gateway.advertised.host", GW) &&
              set(c, "sluice.gateway.node.id.min", "1") &&
              set(c, "sluice.gateway.node.port.count", "3") &&
              sl_gwaddr_init(a, c, "0.0.0.0", 9092, err, sizeof err) == SL_OK;
    return ok;
}

static bool sni_addr(sl_gwaddr *a) {
    sl_config *c = cfg_new();
    char err[256];
    bool ok = c && set(c, "sluice.gateway.address.mode", "sni") &&
              set(c, "sluice.gateway.sni.pattern", PATT) &&
              sl_gwaddr_init(a, c, "0.0.0.0", 9443, err, sizeof err) == SL_OK;
    return ok;
}

static bool streq(sl_str s, const char *c) { return sl_str_eqc(s, c); }

SL_TEST(gwaddr_config_defaults_and_errors_name_the_key) {
    sl_config *c = cfg_new();
    CHECK(c);
    sl_gwaddr a;
    char err[256];
    /* defaults: the listener's host, base = listener port + 1, 16 ports from id 0 */
    CHECK_EQ(sl_gwaddr_init(&a, c, "10.1.2.3", 9092, err, sizeof err), SL_OK);
    CHECK(a.mode == SL_GWADDR_PORT && strcmp(a.host, "10.1.2.3") == 0);
    CHECK_EQ(a.port, 9092);
    CHECK_EQ(a.base, 9093);
    CHECK_EQ(a.count, 16);
    CHECK_EQ(a.id_min, 0);
    /* an unspecified listener host needs the advertised host */
    CHECK(fails_naming(c, "0.0.0.0", 9092, "sluice.gateway.advertised.host"));
    CHECK(fails_naming(c, "", 9092, "sluice.gateway.advertised.host"));
    CHECK(fails_naming(c, NULL, 9092, "sluice.gateway.advertised.host"));
    CHECK(fails_naming(c, "::", 9092, "sluice.gateway.advertised.host"));
    CHECK(set(c, "sluice.gateway.advertised.host", GW));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 9092, err, sizeof err), SL_OK);
    CHECK(strcmp(a.host, GW) == 0);
    /* port range: the last port may be 65535, not more */
    CHECK(set(c, "sluice.gateway.node.port.base", "65520"));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 9092, err, sizeof err), SL_OK);
    CHECK_EQ(a.base, 65520);
    CHECK(set(c, "sluice.gateway.node.port.base", "65521"));
    CHECK(fails_naming(c, "0.0.0.0", 9092, "sluice.gateway.node.port.base"));
    CHECK(set(c, "sluice.gateway.node.port.base", "0"));
    CHECK(fails_naming(c, "0.0.0.0", 65535, "sluice.gateway.node.port.base")); /* 65536.. */
    CHECK(fails_naming(c, "0.0.0.0", 65530, "sluice.gateway.node.port.base")); /* ..65546 */
    CHECK(set(c, "sluice.gateway.node.port.count", "5"));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 65530, err, sizeof err), SL_OK);
    CHECK_EQ(a.base + a.count - 1, 65535);
    /* node ports may not cover the bootstrap port */
    CHECK(set(c, "sluice.gateway.node.port.base", "9090"));
    CHECK(fails_naming(c, "0.0.0.0", 9092, "sluice.gateway.node.port.base"));
    CHECK(set(c, "sluice.gateway.node.port.base", "0"));
    /* an unknown mode (sl_config_finish normally catches it first) */
    snprintf(c->sluice_gateway_address_mode, sizeof c->sluice_gateway_address_mode, "dns");
    CHECK(fails_naming(c, "0.0.0.0", 9092, "sluice.gateway.address.mode"));
    /* sni mode: the pattern is required and checked */
    CHECK(set(c, "sluice.gateway.address.mode", "sni"));
    CHECK(fails_naming(c, "0.0.0.0", 9443, "sluice.gateway.sni.pattern"));
    static const char *const bad[] = {
        "broker.kafka.example.com",                     /* no $(nodeId) */
        "broker-$(nodeId)-$(nodeId).kafka.example.com", /* twice */
        "broker-$(nodeid).kafka.example.com",           /* case matters in the placeholder */
        "broker-$(nodeId)..example.com",                /* empty label */
        ".broker-$(nodeId).example.com",                /* empty first label */
        "broker-$(nodeId).example.com.",                /* trailing dot */
        "broker_$(nodeId).example.com",                 /* not a DNS character */
        "*.$(nodeId).example.com",                      /* wildcard */
        "broker-$(nodeId)/x.example.com",
        /* 54 + 10 digits > 63 in the placeholder's label */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa$(nodeId).example.com",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(set(c, "sluice.gateway.sni.pattern", bad[i]));
        if (!fails_naming(c, "0.0.0.0", 9443, "sluice.gateway.sni.pattern")) {
            fprintf(stderr, "  pattern accepted: %s\n", bad[i]);
            CHECK(0);
        }
    }
    /* the message says what is wrong, not only where */
    CHECK(set(c, "sluice.gateway.sni.pattern", "b$(nodeId).c$(nodeId).example.com"));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 9443, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "exactly once"));
    /* a name longer than 253 with ten digits */
    char longp[300];
    size_t n = 0;
    n += (size_t)snprintf(longp, sizeof longp, "b$(nodeId)");
    while (n < 260) /* 263: 264 with ten digits */
        n += (size_t)snprintf(longp + n, sizeof longp - n, ".abcdefghij");
    CHECK(set(c, "sluice.gateway.sni.pattern", longp));
    CHECK(fails_naming(c, "0.0.0.0", 9443, "sluice.gateway.sni.pattern"));
    longp[252] = 0; /* 253 with ten digits: the longest name allowed */
    CHECK(set(c, "sluice.gateway.sni.pattern", longp));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 9443, err, sizeof err), SL_OK);
    /* 53 + 10 = 63 fits; the placeholder may be a label's start or end, or the whole label */
    static const char *const good[] = {
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa$(nodeId).example.com",
        "$(nodeId).kafka.example.com",
        "kafka.b$(nodeId)",
        "$(nodeId)",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(set(c, "sluice.gateway.sni.pattern", good[i]));
        if (sl_gwaddr_init(&a, c, "0.0.0.0", 9443, err, sizeof err) != SL_OK) {
            fprintf(stderr, "  pattern refused: %s: %s\n", good[i], err);
            CHECK(0);
        }
    }
    CHECK(set(c, "sluice.gateway.sni.pattern", PATT));
    CHECK_EQ(sl_gwaddr_init(&a, c, "0.0.0.0", 9443, err, sizeof err), SL_OK);
    CHECK(a.mode == SL_GWADDR_SNI && strcmp(a.sni_prefix, "broker-") == 0 &&
          strcmp(a.sni_suffix, ".kafka.example.com") == 0);
    CHECK_EQ(a.port, 9443);
}

SL_TEST(gwaddr_port_mapping_both_ways) {
    sl_config *c = cfg_new();
    CHECK(c);
    CHECK(set(c, "sluice.gateway.advertised.host", GW));
    CHECK(set(c, "sluice.gateway.node.id.min", "5"));
    CHECK(set(c, "sluice.gateway.node.port.count", "3"));
    CHECK(set(c, "sluice.gateway.node.port.base", "9100"));
    sl_gwaddr a;
    char err[256], host[256];
    int32_t port = 0;
    CHECK_EQ(sl_gwaddr_init(&a, c, "127.0.0.1", 9092, err, sizeof err), SL_OK);
    for (int32_t n = 5; n <= 7; n++) {
        CHECK(sl_gwaddr_for(&a, n, host, sizeof host, &port));
        CHECK(strcmp(host, GW) == 0);
        CHECK_EQ(port, 9100 + (n - 5));
        CHECK_EQ(sl_gwaddr_node_for_port(&a, port), n);
    }
    static const int32_t no_addr[] = {4, 8, -1, 0, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof no_addr / sizeof no_addr[0]; i++)
        CHECK(!sl_gwaddr_for(&a, no_addr[i], host, sizeof host, &port));
    static const int32_t no_node[] = {9092, 9099, 9103, 0, -1, 65535, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof no_node / sizeof no_node[0]; i++)
        CHECK_EQ(sl_gwaddr_node_for_port(&a, no_node[i]), -1);
    CHECK(!sl_gwaddr_for(&a, 5, host, 5, &port)); /* does not fit: no truncated host */
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, "broker-5.kafka.example.com"), -1); /* port mode */
}

SL_TEST(gwaddr_sni_names_both_ways_and_hostile_names) {
    sl_gwaddr a;
    CHECK(sni_addr(&a));
    char host[256];
    int32_t port = 0;
    CHECK(sl_gwaddr_for(&a, 7, host, sizeof host, &port));
    CHECK(strcmp(host, "broker-7.kafka.example.com") == 0);
    CHECK_EQ(port, 9443);
    CHECK(sl_gwaddr_for(&a, INT32_MAX, host, sizeof host, &port));
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, host), INT32_MAX);
    CHECK(!sl_gwaddr_for(&a, -1, host, sizeof host, &port));
    CHECK(!sl_gwaddr_for(&a, 7, host, 10, &port));
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, "broker-7.kafka.example.com"), 7);
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, "broker-0.kafka.example.com"), 0);
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, "BROKER-12.Kafka.Example.COM"), 12);
    CHECK_EQ(sl_gwaddr_node_for_port(&a, 9443), -1); /* sni mode */
    char big[600];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char toolong[400];
    snprintf(toolong, sizeof toolong, "broker-%.300s.kafka.example.com", big);
    char nodigits[400];
    snprintf(nodigits, sizeof nodigits, "broker-7.kafka.example.com%.250s", ".a.a.a.a.a.a.a");
    static const char *const hostile[] = {
        "kafka.example.com", /* the bootstrap */
        "",
        "broker-.kafka.example.com",
        "broker-+7.kafka.example.com",
        "broker--7.kafka.example.com",
        "broker- 7.kafka.example.com",
        "broker-7a.kafka.example.com",
        "broker-0x7.kafka.example.com",
        "broker-07.kafka.example.com", /* not the name we gave out */
        "broker-2147483648.kafka.example.com",
        "broker-4294967303.kafka.example.com", /* wraps to 7 in 32 bits */
        "broker-99999999999999999999.kafka.example.com",
        "broker-7.kafka.example.com.", /* trailing dot */
        "broker-7.kafka.example.org",
        "broker-7.kafka.example.co",
        "broker-7.evil.kafka.example.com",
        "x.broker-7.kafka.example.com",
        "broker-7.kafka.example.com.evil",
        "broker-7",
        "broker-",
        ".kafka.example.com",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        if (sl_gwaddr_node_for_sni(&a, hostile[i]) != -1) {
            fprintf(stderr, "  accepted: %s\n", hostile[i]);
            CHECK(0);
        }
    }
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, toolong), -1);
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, nodigits), -1);
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, big), -1);
    CHECK_EQ(sl_gwaddr_node_for_sni(&a, NULL), -1);
}

/* ---- rewrites ---- */

typedef struct rt {
    sl_arena *ar;
    const uint8_t *out; /* the re-encoded answer */
    size_t out_len;
} rt;

/* Encodes `m` at version v with `c`, decodes it into a fresh struct (what comes from the
 * upstream), returns it. */
static void *upstream(sl_arena *ar, const sl_msg_codec *c, int16_t v, const void *m) {
    sl_wr w;
    sl_wr_init(&w, ar, 256);
    c->encode(&w, v, m);
    if (w.err) return NULL;
    void *d = sl_arena_calloc(ar, 1, c->size);
    sl_rd r = sl_rd_init(w.buf, w.len);
    if (!d || c->decode(&r, ar, v, d) != SL_OK || sl_rd_left(&r) != 0) return NULL;
    return d;
}

/* Re-encodes the rewritten `m`, decodes it again (what the client gets); the encoded bytes must
 * not mention the upstream's host names. */
static void *client(sl_arena *ar, const sl_msg_codec *c, int16_t v, const void *m) {
    sl_wr w;
    sl_wr_init(&w, ar, 256);
    c->encode(&w, v, m);
    if (w.err) return NULL;
    if (memmem(w.buf, w.len, UP, strlen(UP))) {
        fprintf(stderr, "  the upstream host leaks at v%d\n", v);
        return NULL;
    }
    void *d = sl_arena_calloc(ar, 1, c->size);
    sl_rd r = sl_rd_init(w.buf, w.len);
    if (!d || c->decode(&r, ar, v, d) != SL_OK || sl_rd_left(&r) != 0) return NULL;
    return d;
}

static sl_metadata_resp *metadata(sl_arena *ar, const int32_t *ids, int n, int32_t controller) {
    sl_metadata_resp *m = sl_arena_calloc(ar, 1, sizeof *m);
    sl_metadata_resp_init(m);
    m->brokers = sl_arena_calloc(ar, (size_t)n, sizeof *m->brokers);
    m->brokers_count = n;
    for (int i = 0; i < n; i++) {
        sl_metadata_resp_broker_init(&m->brokers[i]);
        m->brokers[i].node_id = ids[i];
        m->brokers[i].host = sl_str_printf(ar, "b-%d." UP, (int)ids[i]);
        m->brokers[i].port = 9094;
        m->brokers[i].rack = sl_str_c("use1-az1");
    }
    m->cluster_id = sl_str_c("abc");
    m->controller_id = controller;
    m->topics = sl_arena_calloc(ar, 1, sizeof *m->topics);
    m->topics_count = 1;
    sl_metadata_resp_topic *t = &m->topics[0];
    sl_metadata_resp_topic_init(t);
    t->name = sl_str_c("orders");
    t->partitions = sl_arena_calloc(ar, 1, sizeof *t->partitions);
    t->partitions_count = 1;
    sl_metadata_resp_partition_init(&t->partitions[0]);
    t->partitions[0].leader_id = ids[n - 1];
    int32_t *reps = sl_arena_calloc(ar, 1, sizeof *reps);
    reps[0] = ids[n - 1];
    t->partitions[0].replica_nodes = reps;
    t->partitions[0].replica_nodes_count = 1;
    t->partitions[0].isr_nodes = reps;
    t->partitions[0].isr_nodes_count = 1;
    return m;
}

SL_TEST(gwaddr_rewrite_metadata_round_trips) {
    sl_gwaddr a;
    CHECK(port_addr(&a));
    const sl_msg_codec *c = sl_msg_codec_get(SL_API_METADATA, true);
    CHECK(c);
    static const int16_t vs[] = {0, 1, 9, 12};
    static const int32_t ids[] = {3, 1, 2};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        int16_t v = vs[i];
        sl_arena *ar = sl_arena_new(4096);
        CHECK(ar);
        sl_metadata_resp *up = upstream(ar, c, v, metadata(ar, ids, 3, 0));
        bool ok = up && sl_gwaddr_rewrite_metadata(&a, ar, up);
        sl_metadata_resp *d = ok ? client(ar, c, v, up) : NULL;
        ok = d && d->brokers_count == 3;
        for (int b = 0; ok && b < 3; b++) {
            ok = d->brokers[b].node_id == ids[b] && streq(d->brokers[b].host, GW) &&
                 d->brokers[b].port == 9092 + ids[b] &&
                 (v < 1 || streq(d->brokers[b].rack, "use1-az1"));
        }
        /* the mock's controller 0 is not a broker: the lowest broker id instead */
        ok = ok && (v < 1 || d->controller_id == 1);
        ok = ok && d->topics_count == 1 && d->topics[0].partitions[0].leader_id == 2;
        sl_arena_free(ar);
        if (!ok) fprintf(stderr, "  metadata v%d\n", v);
        CHECK(ok);
    }
    /* a controller that is a broker stays */
    sl_arena *ar = sl_arena_new(4096);
    CHECK(ar);
    sl_metadata_resp *m = metadata(ar, ids, 3, 2);
    bool ok = sl_gwaddr_rewrite_metadata(&a, ar, m) && m->controller_id == 2;
    /* a broker outside the node id range has no address: the answer fails */
    static const int32_t outside[] = {1, 4};
    sl_metadata_resp *up = upstream(ar, c, 12, metadata(ar, outside, 2, 1));
    ok = ok && up && !sl_gwaddr_rewrite_metadata(&a, ar, up);
    static const int32_t neg[] = {-1};
    ok = ok && !sl_gwaddr_rewrite_metadata(&a, ar, metadata(ar, neg, 1, 1));
    /* sni mode: every node has a name */
    sl_gwaddr s;
    ok = ok && sni_addr(&s);
    static const int32_t far[] = {1000, 7};
    up = upstream(ar, c, 9, metadata(ar, far, 2, -1));
    ok = ok && up && sl_gwaddr_rewrite_metadata(&s, ar, up);
    sl_metadata_resp *d = ok ? client(ar, c, 9, up) : NULL;
    ok = ok && d && streq(d->brokers[0].host, "broker-1000.kafka.example.com") &&
         d->brokers[0].port == 9443 && streq(d->brokers[1].host, "broker-7.kafka.example.com") &&
         d->controller_id == 7;
    sl_arena_free(ar);
    CHECK(ok);
}

static sl_find_coordinator_resp *coordinator(sl_arena *ar, int16_t v) {
    sl_find_coordinator_resp *m = sl_arena_calloc(ar, 1, sizeof *m);
    sl_find_coordinator_resp_init(m);
    if (v < 4) {
        m->node_id = 2;
        m->host = sl_str_c("b-2." UP);
        m->port = 9094;
        return m;
    }
    m->coordinators = sl_arena_calloc(ar, 3, sizeof *m->coordinators);
    m->coordinators_count = 3;
    for (int i = 0; i < 3; i++) {
        sl_find_coordinator_resp_coordinator *k = &m->coordinators[i];
        sl_find_coordinator_resp_coordinator_init(k);
        k->key = sl_str_printf(ar, "group-%d", i);
        k->node_id = i == 1 ? -1 : i + 1; /* group-1: not available yet */
        k->host = i == 1 ? sl_str_c("") : sl_str_printf(ar, "b-%d." UP, i + 1);
        k->port = i == 1 ? -1 : 9094;
        k->error_code = i == 1 ? 15 : 0;
    }
    return m;
}

SL_TEST(gwaddr_rewrite_find_coordinator_round_trips) {
    sl_gwaddr a;
    CHECK(port_addr(&a));
    const sl_msg_codec *c = sl_msg_codec_get(SL_API_FIND_COORDINATOR, true);
    CHECK(c);
    sl_arena *ar = sl_arena_new(4096);
    CHECK(ar);
    bool ok = true;
    for (int16_t v = 0; ok && v <= 6; v++) {
        sl_find_coordinator_resp *up = upstream(ar, c, v, coordinator(ar, v));
        ok = up && sl_gwaddr_rewrite_find_coordinator(&a, ar, v, up);
        sl_find_coordinator_resp *d = ok ? client(ar, c, v, up) : NULL;
        if (v < 4) {
            ok = d && d->node_id == 2 && streq(d->host, GW) && d->port == 9094;
        } else {
            ok = d && d->coordinators_count == 3 && d->coordinators[0].node_id == 1 &&
                 streq(d->coordinators[0].host, GW) && d->coordinators[0].port == 9093 &&
                 d->coordinators[1].node_id == -1 && streq(d->coordinators[1].host, "") &&
                 d->coordinators[1].port == -1 && d->coordinators[1].error_code == 15 &&
                 d->coordinators[2].node_id == 3 && streq(d->coordinators[2].host, GW) &&
                 d->coordinators[2].port == 9095 && streq(d->coordinators[2].key, "group-2");
        }
        if (!ok) fprintf(stderr, "  find_coordinator v%d\n", v);
    }
    /* v3 error answer: left alone */
    sl_find_coordinator_resp *m = coordinator(ar, 3);
    m->error_code = 15;
    m->node_id = -1;
    m->host = sl_str_c("");
    ok = ok && sl_gwaddr_rewrite_find_coordinator(&a, ar, 3, m) && streq(m->host, "") &&
         m->node_id == -1;
    /* a coordinator without a gateway address fails the answer, in both shapes */
    m = coordinator(ar, 3);
    m->node_id = 9;
    ok = ok && !sl_gwaddr_rewrite_find_coordinator(&a, ar, 3, m);
    m = coordinator(ar, 4);
    m->coordinators[2].node_id = 9;
    ok = ok && !sl_gwaddr_rewrite_find_coordinator(&a, ar, 4, m);
    sl_arena_free(ar);
    CHECK(ok);
}

static sl_describe_cluster_resp *cluster(sl_arena *ar, int32_t controller) {
    sl_describe_cluster_resp *m = sl_arena_calloc(ar, 1, sizeof *m);
    sl_describe_cluster_resp_init(m);
    m->cluster_id = sl_str_c("abc");
    m->controller_id = controller;
    m->brokers = sl_arena_calloc(ar, 2, sizeof *m->brokers);
    m->brokers_count = 2;
    for (int i = 0; i < 2; i++) {
        sl_describe_cluster_resp_broker_init(&m->brokers[i]);
        m->brokers[i].broker_id = 3 - i;
        m->brokers[i].host = sl_str_printf(ar, "b-%d." UP, 3 - i);
        m->brokers[i].port = 9094;
    }
    return m;
}

SL_TEST(gwaddr_rewrite_describe_cluster_round_trips) {
    sl_gwaddr a;
    CHECK(port_addr(&a));
    const sl_msg_codec *c = sl_msg_codec_get(SL_API_DESCRIBE_CLUSTER, true);
    CHECK(c);
    sl_arena *ar = sl_arena_new(4096);
    CHECK(ar);
    bool ok = true;
    for (int16_t v = 0; ok && v <= 1; v++) {
        sl_describe_cluster_resp *up = upstream(ar, c, v, cluster(ar, 0));
        ok = up && sl_gwaddr_rewrite_describe_cluster(&a, ar, up);
        sl_describe_cluster_resp *d = ok ? client(ar, c, v, up) : NULL;
        ok = d && d->brokers_count == 2 && d->brokers[0].broker_id == 3 &&
             streq(d->brokers[0].host, GW) && d->brokers[0].port == 9095 &&
             d->brokers[1].broker_id == 2 && d->brokers[1].port == 9094 && d->controller_id == 2;
        if (!ok) fprintf(stderr, "  describe_cluster v%d\n", v);
    }
    sl_describe_cluster_resp *m = cluster(ar, 3);
    ok = ok && sl_gwaddr_rewrite_describe_cluster(&a, ar, m) && m->controller_id == 3;
    m = cluster(ar, 3);
    m->brokers[1].broker_id = 0; /* outside 1..3 */
    ok = ok && !sl_gwaddr_rewrite_describe_cluster(&a, ar, m);
    m = cluster(ar, 3);
    m->endpoint_type = 2; /* controllers: never proxied */
    ok = ok && !sl_gwaddr_rewrite_describe_cluster(&a, ar, m);
    sl_arena_free(ar);
    CHECK(ok);
}

/* Endpoints for nodes 1, 9 (no address) and 3. */
#define FILL_ENDPOINTS(ar, m)                                                                      \
    do {                                                                                           \
        static const int32_t ep_ids_[] = {1, 9, 3};                                                \
        (m)->node_endpoints = sl_arena_calloc(ar, 3, sizeof *(m)->node_endpoints);                 \
        (m)->node_endpoints_count = 3;                                                             \
        for (int i_ = 0; i_ < 3; i_++) {                                                           \
            (m)->node_endpoints[i_].node_id = ep_ids_[i_];                                         \
            (m)->node_endpoints[i_].host = sl_str_printf(ar, "b-%d." UP, (int)ep_ids_[i_]);        \
            (m)->node_endpoints[i_].port = 9094;                                                   \
            (m)->node_endpoints[i_].rack = i_ == 2 ? sl_str_c("r3") : SL_STR_NULL;                 \
        }                                                                                          \
    } while (0)

#define CHECK_ENDPOINTS(m)                                                                         \
    ((m)->node_endpoints_count == 2 && (m)->node_endpoints[0].node_id == 1 &&                      \
     streq((m)->node_endpoints[0].host, GW) && (m)->node_endpoints[0].port == 9093 &&              \
     (m)->node_endpoints[1].node_id == 3 && streq((m)->node_endpoints[1].host, GW) &&              \
     (m)->node_endpoints[1].port == 9095 && streq((m)->node_endpoints[1].rack, "r3"))

static sl_produce_resp *produce(sl_arena *ar) {
    sl_produce_resp *m = sl_arena_calloc(ar, 1, sizeof *m);
    sl_produce_resp_init(m);
    m->responses = sl_arena_calloc(ar, 1, sizeof *m->responses);
    m->responses_count = 1;
    sl_produce_resp_topic_init(&m->responses[0]);
    m->responses[0].name = sl_str_c("orders");
    m->responses[0].partition_responses = sl_arena_calloc(ar, 1, sizeof(sl_produce_resp_partition));
    m->responses[0].partition_responses_count = 1;
    sl_produce_resp_partition *p = &m->responses[0].partition_responses[0];
    sl_produce_resp_partition_init(p);
    p->error_code = 6; /* NOT_LEADER_OR_FOLLOWER, with the KIP-951 hint */
    p->current_leader.leader_id = 3;
    p->current_leader.leader_epoch = 4;
    FILL_ENDPOINTS(ar, m);
    return m;
}

static sl_fetch_resp *fetch(sl_arena *ar) {
    sl_fetch_resp *m = sl_arena_calloc(ar, 1, sizeof *m);
    sl_fetch_resp_init(m);
    m->responses = sl_arena_calloc(ar, 1, sizeof *m->responses);
    m->responses_count = 1;
    sl_fetch_resp_topic_init(&m->responses[0]);
    m->responses[0].topic = sl_str_c("orders");
    m->responses[0].topic_id.b[15] = 9;
    m->responses[0].partitions = sl_arena_calloc(ar, 1, sizeof(sl_fetch_resp_partition));
    m->responses[0].partitions_count = 1;
    sl_fetch_resp_partition *p = &m->responses[0].partitions[0];
    sl_fetch_resp_partition_init(p);
    p->error_code = 6;
    p->current_leader.leader_id = 3;
    p->current_leader.leader_epoch = 4;
    FILL_ENDPOINTS(ar, m);
    return m;
}

SL_TEST(gwaddr_rewrite_node_endpoints_round_trip) {
    sl_gwaddr a;
    CHECK(port_addr(&a));
    const sl_msg_codec *pc = sl_msg_codec_get(SL_API_PRODUCE, true);
    const sl_msg_codec *fc = sl_msg_codec_get(SL_API_FETCH, true);
    CHECK(pc && fc);
    sl_arena *ar = sl_arena_new(4096);
    CHECK(ar);
    bool ok = true;
    for (int16_t v = 10; ok && v <= 11; v++) {
        sl_produce_resp *up = upstream(ar, pc, v, produce(ar));
        ok = up && up->node_endpoints_count == 3;
        if (ok) sl_gwaddr_rewrite_produce(&a, ar, up);
        sl_produce_resp *d = ok ? client(ar, pc, v, up) : NULL;
        ok = d && CHECK_ENDPOINTS(d) &&
             d->responses[0].partition_responses[0].current_leader.leader_id == 3;
        if (!ok) fprintf(stderr, "  produce v%d\n", v);
    }
    for (int16_t v = 16; ok && v <= 17; v++) {
        sl_fetch_resp *up = upstream(ar, fc, v, fetch(ar));
        ok = up && up->node_endpoints_count == 3;
        if (ok) sl_gwaddr_rewrite_fetch(&a, ar, up);
        sl_fetch_resp *d = ok ? client(ar, fc, v, up) : NULL;
        ok = d && CHECK_ENDPOINTS(d) && d->responses[0].partitions[0].current_leader.leader_id == 3;
        if (!ok) fprintf(stderr, "  fetch v%d\n", v);
    }
    /* older versions carry no endpoints; the rewrite leaves an empty or null list alone */
    sl_produce_resp *up = upstream(ar, pc, 9, produce(ar));
    ok = ok && up && up->node_endpoints_count == 0;
    if (ok) sl_gwaddr_rewrite_produce(&a, ar, up);
    ok = ok && up->node_endpoints_count == 0;
    sl_fetch_resp *f = fetch(ar);
    f->node_endpoints_count = -1;
    f->node_endpoints = NULL;
    sl_gwaddr_rewrite_fetch(&a, ar, f);
    ok = ok && f->node_endpoints_count == -1;
    /* every endpoint without an address: all dropped */
    f = fetch(ar);
    for (int i = 0; i < 3; i++) f->node_endpoints[i].node_id = 40 + i;
    sl_gwaddr_rewrite_fetch(&a, ar, f);
    ok = ok && f->node_endpoints_count == 0;
    sl_arena_free(ar);
    CHECK(ok);
}

/* ---- seed corpus for tests/fuzz/fuzz_gwrewrite.c: [selector][version][response] ---- */

static bool write_seed(const char *dir, const char *name, uint8_t api, uint8_t v,
                       const sl_msg_codec *c, const void *m, sl_arena *ar) {
    sl_wr w;
    sl_wr_init(&w, ar, 256);
    c->encode(&w, (int16_t)v, m);
    if (w.err) return false;
    char path[512];
    snprintf(path, sizeof path, "%s/%s-v%u", dir, name, (unsigned)v);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    uint8_t hdr[2] = {api, v};
    bool ok = fwrite(hdr, 1, 2, f) == 2 && fwrite(w.buf, 1, w.len, f) == w.len;
    return fclose(f) == 0 && ok;
}

static bool write_raw(const char *dir, const char *name, const char *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

SL_TEST(gwaddr_write_fuzz_corpus) {
    const char *dir = getenv("SL_GWREWRITE_CORPUS");
    if (!dir || !*dir) return; /* only when asked to (re)generate the seeds */
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    sl_arena *ar = sl_arena_new(4096);
    CHECK(ar);
    static const int32_t ids[] = {1, 2, 3};
    const sl_msg_codec *c = sl_msg_codec_get(SL_API_METADATA, true);
    bool ok = true;
    static const uint8_t mv[] = {1, 9, 12};
    for (size_t i = 0; i < sizeof mv; i++)
        ok = ok && write_seed(dir, "metadata", 0, mv[i], c, metadata(ar, ids, 3, 0), ar);
    c = sl_msg_codec_get(SL_API_FIND_COORDINATOR, true);
    ok = ok && write_seed(dir, "find_coordinator", 1, 3, c, coordinator(ar, 3), ar);
    ok = ok && write_seed(dir, "find_coordinator", 1, 4, c, coordinator(ar, 4), ar);
    c = sl_msg_codec_get(SL_API_DESCRIBE_CLUSTER, true);
    ok = ok && write_seed(dir, "describe_cluster", 2, 1, c, cluster(ar, 0), ar);
    c = sl_msg_codec_get(SL_API_PRODUCE, true);
    ok = ok && write_seed(dir, "produce", 3, 10, c, produce(ar), ar);
    c = sl_msg_codec_get(SL_API_FETCH, true);
    ok = ok && write_seed(dir, "fetch", 4, 16, c, fetch(ar), ar);
    /* the same in sni mode: selector bit 3 (10 % 5 = Metadata, 9 % 5 = Fetch) */
    c = sl_msg_codec_get(SL_API_METADATA, true);
    ok = ok && write_seed(dir, "metadata-sni", 10, 12, c, metadata(ar, ids, 3, 0), ar);
    c = sl_msg_codec_get(SL_API_FETCH, true);
    ok = ok && write_seed(dir, "fetch-sni", 9, 17, c, fetch(ar), ar);
    /* selector bit 7: a server name to map back to a node */
    static const char sni[] = "\x80\x00"
                              "BROKER-7.kafka.example.com";
    static const char sni_max[] = "\x80\x00"
                                  "broker-2147483647.kafka.example.com";
    ok = ok && write_raw(dir, "sni-name", sni, sizeof sni - 1) &&
         write_raw(dir, "sni-name-max", sni_max, sizeof sni_max - 1);
    sl_arena_free(ar);
    CHECK(ok);
}
