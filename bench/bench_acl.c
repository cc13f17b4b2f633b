/* Authorization decisions per second with 10, 1 000 and 10 000 ACLs (src/acl). The set mixes
 * LITERAL topics, PREFIXED topic prefixes of several lengths, PREFIXED groups, a LITERAL "*",
 * DENY bindings and per-principal hosts, as a real deployment would; the queries mix allowed
 * and denied decisions, and the denied ones include resources no ACL names (the slowest path:
 * every probe misses). Two shapes: each ACL on its own resource, and many principals' ACLs
 * sharing a few topics and prefixes. An indexed evaluator should show about the same rate at
 * every size.
 *
 * Beside them, IAM decisions (src/iam, issue 15): sl_iam_authorize, what the authorization stage
 * runs for an IAM principal, on a realistic 3-statement policy (the sasl_ssl_iam row's:
 * bench/conf/sasl_ssl_iam.policy.json), with the queries a producer and a consumer make (WRITE,
 * READ and DESCRIBE on topics, READ on the group) and the denied ones an implicit deny decides
 * (every statement scanned, the reason formatted).
 *
 *   make build/bench/bench_acl && ./build/bench/bench_acl [--quick]
 *
 * Prints one human line and one JSON line ('{'-prefixed) per size, then per IAM query kind. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "iam/sl_iamaction.h"
#include "iam/sl_iampolicy.h"

static volatile uint64_t g_sink;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct query {
    char principal[32], name[64];
    int op, rtype;
} query;

static void run(int n, bool shared, double seconds) {
    sl_acl *v = calloc((size_t)n, sizeof *v);
    char(*names)[64] = calloc((size_t)n, 64);
    char(*prs)[32] = calloc((size_t)n, 32);
    if (!v || !names || !prs) exit(1);
    for (int i = 0; i < n; i++) {
        int kind = i % 5;
        snprintf(prs[i], 32, "User:app-%d", i / 2);
        if (kind == 0)
            snprintf(names[i], 64, "orders-%d", shared ? i % 16 : i);
        else if (kind == 1 && shared)
            snprintf(names[i], 64, "%.*s", 4 + i % 9, "team-prefix-xyz");
        else if (kind == 1)
            snprintf(names[i], 64, "team-%d-", i);
        else if (kind == 2)
            snprintf(names[i], 64, "svc-%d-", i);
        else if (kind == 3)
            snprintf(names[i], 64, "payments-%d", i);
        else
            snprintf(names[i], 64, "grp-%d-", i);
        v[i] = (sl_acl){.rtype = kind == 4 ? SL_ACL_RES_GROUP : SL_ACL_RES_TOPIC,
                        .pattern = kind == 1 || kind == 2 || kind == 4 ? SL_ACL_PAT_PREFIXED
                                                                       : SL_ACL_PAT_LITERAL,
                        .op = kind == 3 ? SL_ACL_OP_WRITE : SL_ACL_OP_READ,
                        .perm = i % 7 == 6 ? SL_ACL_PERM_DENY : SL_ACL_PERM_ALLOW,
                        .name = names[i],
                        .principal = prs[i],
                        .host = i % 3 ? "*" : "10.0.0.1"};
    }
    if (n >= 10) {
        v[n - 1] = (sl_acl){SL_ACL_RES_TOPIC,
                            SL_ACL_PAT_LITERAL,
                            SL_ACL_OP_DESCRIBE,
                            SL_ACL_PERM_ALLOW,
                            "*",
                            "User:viewer",
                            "*"};
    }
    sl_acl_set *s = NULL;
    if (sl_acl_set_build(v, (size_t)n, &s)) exit(1);
    char dir[] = "/tmp/sl_bench_acl_XXXXXX", path[64];
    if (!mkdtemp(dir)) exit(1);
    snprintf(path, sizeof path, "%s/acls", dir);
    sl_authorizer *az = NULL;
    char err[256];
    if (sl_authorizer_new(path, "User:admin", false, &az, err, sizeof err) ||
        sl_authorizer_replace(az, s))
        exit(1);
    enum { NQ = 1024 };
    query *q = calloc(NQ, sizeof *q);
    if (!q) exit(1);
    for (int i = 0; i < NQ; i++) {
        int k = (int)(((unsigned)i * 2654435761u) % (unsigned)n);
        snprintf(q[i].principal, sizeof q[i].principal, "%s", prs[k]);
        switch (i % 4) {
        case 0: /* the binding's own resource (mostly allowed) */
            snprintf(q[i].name, sizeof q[i].name, "%s%s", names[k],
                     v[k].pattern == SL_ACL_PAT_PREFIXED ? "tail-of-a-name" : "");
            q[i].op = v[k].op;
            q[i].rtype = v[k].rtype;
            break;
        case 1: /* an implied DESCRIBE */
            snprintf(q[i].name, sizeof q[i].name, "%s", names[k]);
            q[i].op = SL_ACL_OP_DESCRIBE;
            q[i].rtype = v[k].rtype;
            break;
        case 2: /* a resource nobody named: every probe misses */
            snprintf(q[i].name, sizeof q[i].name, "unnamed-topic-%d-with-a-longer-name", i);
            q[i].op = SL_ACL_OP_WRITE;
            q[i].rtype = SL_ACL_RES_TOPIC;
            break;
        default: /* someone else's resource */
            snprintf(q[i].name, sizeof q[i].name, "%s", names[(k + 1) % n]);
            q[i].op = SL_ACL_OP_READ;
            q[i].rtype = SL_ACL_RES_TOPIC;
        }
    }
    uint64_t done = 0, allowed = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < NQ; i++)
            allowed += sl_authorizer_allows(az, q[i].principal, "127.0.0.1", q[i].op, q[i].rtype,
                                            q[i].name, strlen(q[i].name));
        done += NQ;
        t = now_s() - t0;
    } while (t < seconds);
    g_sink += allowed;
    double rate = (double)done / t;
    const char *kind = shared ? "shared" : "distinct";
    printf("acl decisions, %5d ACLs, %-8s resources: %11.0f decisions/s %7.1f ns/decision "
           "(%.0f%% allowed)\n",
           n, kind, rate, 1e9 / rate, 100.0 * (double)allowed / (double)done);
    printf("{\"bench\":\"acl_decisions\",\"acls\":%d,\"resources\":\"%s\","
           "\"decisions_per_s\":%.0f,\"ns_per_decision\":%.1f}\n",
           n, kind, rate, 1e9 / rate);
    sl_authorizer_free(az);
    unlink(path);
    rmdir(dir);
    free(q);
    free(v);
    free(names);
    free(prs);
}

/* The sasl_ssl_iam row's policy (bench/conf/sasl_ssl_iam.policy.json), as `sluice iam policy put`
 * would store it. */
static const char IAM_POLICY[] =
    "{\"Version\": \"2012-10-17\", \"Statement\": ["
    "{\"Sid\": \"Connect\", \"Effect\": \"Allow\", \"Action\": \"kafka-cluster:Connect\","
    " \"Resource\": \"arn:aws:kafka:us-east-1:000000000000:cluster/sluice/*\"},"
    "{\"Sid\": \"BenchTopics\", \"Effect\": \"Allow\", \"Action\": "
    "[\"kafka-cluster:DescribeTopic\","
    " \"kafka-cluster:CreateTopic\", \"kafka-cluster:WriteData\", \"kafka-cluster:ReadData\"],"
    " \"Resource\": \"arn:aws:kafka:us-east-1:000000000000:topic/sluice/*/bench-*\"},"
    "{\"Sid\": \"BenchGroups\", \"Effect\": \"Allow\", \"Action\": [\"kafka-cluster:AlterGroup\","
    " \"kafka-cluster:DescribeGroup\"],"
    " \"Resource\": \"arn:aws:kafka:us-east-1:000000000000:group/sluice/*/sl-bench-*\"}]}";

static void run_iam(double seconds) {
    sl_iam_policy *pol = NULL;
    char err[256];
    if (sl_iam_policy_parse("bench", IAM_POLICY, sizeof IAM_POLICY - 1, &pol, err, sizeof err)) {
        fprintf(stderr, "bench_acl: IAM policy: %s\n", err);
        exit(1);
    }
    const sl_iam_policy *pols[1] = {pol};
    /* A broker's: its cluster id as the UUID (sluice.iam.cluster.uuid unset). */
    sl_iam_arn_cfg arns = {"us-east-1", "000000000000", "sluice", "q0Gf3yXbTnWzL8aKc1dE2w"};
    sl_iam_ctx ctx = {.source_ip = "127.0.0.1",
                      .secure_transport = true,
                      .now_s = (int64_t)time(NULL),
                      .username = "bench",
                      .principal_arn = "arn:aws:iam::000000000000:user/bench",
                      .principal_type = "User"};
    static const struct {
        const char *kind, *name;
        int op, rtype;
        bool allowed;
    } qs[] = {
        {"write topic (produce)", "bench-sasl_ssl_iam-p8", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, true},
        {"read topic (fetch)", "bench-sasl_ssl_iam-p8", SL_ACL_OP_READ, SL_ACL_RES_TOPIC, true},
        {"describe topic", "bench-sasl_ssl_iam-p8", SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, true},
        {"read group", "sl-bench-12345", SL_ACL_OP_READ, SL_ACL_RES_GROUP, true},
        {"write topic, denied", "payments-settlements-eu", SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC,
         false},
    };
    enum { NQ = 1024 };
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        size_t nlen = strlen(qs[k].name);
        char why[768];
        uint64_t done = 0, allowed = 0;
        double t0 = now_s(), t;
        do {
            for (int i = 0; i < NQ; i++)
                allowed += sl_iam_authorize(pols, 1, &arns, &ctx, qs[k].op, qs[k].rtype, qs[k].name,
                                            nlen, why, sizeof why);
            done += NQ;
            t = now_s() - t0;
        } while (t < seconds);
        if ((allowed == done) != qs[k].allowed) {
            fprintf(stderr, "bench_acl: IAM %s: unexpected decision (%s)\n", qs[k].kind, why);
            exit(1);
        }
        g_sink += allowed;
        double rate = (double)done / t;
        printf("iam decisions, 3-statement policy, %-22s: %11.0f decisions/s %7.1f ns/decision\n",
               qs[k].kind, rate, 1e9 / rate);
        printf("{\"bench\":\"iam_decisions\",\"statements\":3,\"query\":\"%s\","
               "\"decisions_per_s\":%.0f,\"ns_per_decision\":%.1f}\n",
               qs[k].kind, rate, 1e9 / rate);
    }
    sl_iam_policy_free(pol);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 && !strcmp(argv[1], "--quick") ? 0.2 : 1.0;
    /* distinct: every ACL names its own resource; shared: many principals' ACLs on a few
     * topics and prefixes (the case an index by resource alone degrades on). */
    for (int shared = 0; shared < 2; shared++) {
        run(10, shared, seconds);
        run(1000, shared, seconds);
        run(10000, shared, seconds);
    }
    run_iam(seconds);
    return 0;
}
