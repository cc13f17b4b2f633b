/* The gateway's cluster view (src/gateway/sl_gwcluster.h) against real upstreams: the librdkafka
 * 2.0.2 mock cluster (build/tools/sl_mockcluster, old protocol versions only; driven over its
 * stdin) and an in-process `sluice serve` broker (flexible versions, topic ids). Plus what a
 * client's Metadata answer teaches it (sl_gwcluster_learn), on hand-built answers. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "base/sl_kerr.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "gateway/sl_gwcluster.h"
#include "local_broker.h"
#include "sl_test.h"

extern char **environ;

#define MOCK_BIN      "build/tools/sl_mockcluster"
#define MOCK_READY_MS 15000
#define MOCK_CMD_MS   10000
#define POLL_MS       10000

/* CHECK that leaves through `done:` (where the test releases what it started) and counts. */
#define MCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            fails++;                                                                               \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- the mock cluster process ---- */

typedef struct mock {
    pid_t pid;
    int in, out; /* its stdin (we write), its stdout (we read) */
    char rbuf[8192];
    size_t rlen;
    char bootstrap[512];
    int port[4]; /* port[id] of brokers 1..3 from the READY line */
} mock;

/* One line from the mock within `ms`; false on timeout or EOF. */
static bool mock_line(mock *m, char *line, size_t cap, int64_t ms) {
    int64_t deadline = sl_mono_ms() + ms;
    for (;;) {
        char *nl = memchr(m->rbuf, '\n', m->rlen);
        if (nl) {
            size_t n = (size_t)(nl - m->rbuf);
            snprintf(line, cap, "%.*s", (int)n, m->rbuf);
            memmove(m->rbuf, nl + 1, m->rlen - n - 1);
            m->rlen -= n + 1;
            return true;
        }
        int64_t left = deadline - sl_mono_ms();
        if (left <= 0 || m->rlen == sizeof m->rbuf) return false;
        struct pollfd p = {.fd = m->out, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) continue;
        ssize_t r = read(m->out, m->rbuf + m->rlen, sizeof m->rbuf - m->rlen);
        if (r <= 0) return false;
        m->rlen += (size_t)r;
    }
}

/* Sends one command; true when the mock answered "ok ..." (the line in `line`). */
static bool mock_query(mock *m, const char *cmd, char *line, size_t cap) {
    char buf[600];
    int n = snprintf(buf, sizeof buf, "%s\n", cmd);
    if (write(m->in, buf, (size_t)n) != n) return false;
    if (!mock_line(m, line, cap, MOCK_CMD_MS)) return false;
    if (strncmp(line, "ok", 2)) {
        fprintf(stderr, "  mock: %s -> %s\n", cmd, line);
        return false;
    }
    return true;
}

static bool mock_cmd(mock *m, const char *cmd) {
    char line[4096];
    return mock_query(m, cmd, line, sizeof line);
}

static void mock_stop(mock *m) {
    if (m->pid <= 0) return;
    close(m->in); /* it exits on stdin EOF */
    int64_t deadline = sl_mono_ms() + 5000;
    int st;
    while (waitpid(m->pid, &st, WNOHANG) == 0) {
        if (sl_mono_ms() > deadline) {
            kill(m->pid, SIGKILL); /* ours, by pid: it ignored stdin EOF */
            waitpid(m->pid, &st, 0);
            break;
        }
        poll(NULL, 0, 10);
    }
    close(m->out);
    m->pid = 0;
}

/* Starts the mock with `--topic` arguments (NULL-terminated) and reads its READY line. */
static bool mock_start(mock *m, const char *const *topics) {
    memset(m, 0, sizeof *m);
    signal(SIGPIPE, SIG_IGN);
    if (access(MOCK_BIN, X_OK)) {
        fprintf(stderr, "  %s missing: build it with `make asan`\n", MOCK_BIN);
        return false;
    }
    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC)) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    /* The mock's own diagnostics (unsupported versions...) go to the test's stderr only when
     * asked: they are noisy on purpose. */
    if (!getenv("SL_TEST_MOCK_STDERR"))
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    const char *argv[32] = {MOCK_BIN};
    int argc = 1;
    for (int i = 0; topics && topics[i] && argc < 30; i++) {
        argv[argc++] = "--topic";
        argv[argc++] = topics[i];
    }
    /* Not the test process's mask: a broker started in this process blocks SIGTERM. */
    posix_spawnattr_t sa;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_init(&sa);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK);
    int rc = posix_spawn(&m->pid, MOCK_BIN, &fa, &sa, (char *const *)argv, environ);
    posix_spawnattr_destroy(&sa);
    posix_spawn_file_actions_destroy(&fa);
    close(pin[0]);
    close(pout[1]);
    m->in = pin[1];
    m->out = pout[0];
    if (rc) {
        m->pid = 0;
        close(m->in);
        close(m->out);
        return false;
    }
    char line[4096];
    if (!mock_line(m, line, sizeof line, MOCK_READY_MS) || strncmp(line, "READY bootstrap=", 16)) {
        fprintf(stderr, "  mock did not get ready\n");
        mock_stop(m);
        return false;
    }
    char *sp = strchr(line + 16, ' ');
    if (!sp) return false;
    snprintf(m->bootstrap, sizeof m->bootstrap, "%.*s", (int)(sp - (line + 16)), line + 16);
    /* brokers=1@H:P,2@H:P,3@H:P */
    char *b = strstr(sp, "brokers=");
    for (char *t = b ? strtok(b + 8, ",") : NULL; t; t = strtok(NULL, ",")) {
        int id = atoi(t);
        char *colon = strrchr(t, ':');
        if (id >= 1 && id <= 3 && colon) m->port[id] = atoi(colon + 1);
    }
    return m->port[1] && m->port[2] && m->port[3];
}

/* ---- the cluster view under test ---- */

typedef struct hooks_rec {
    int changes;
    int last_n;
    int32_t last_ids[16];
    int connected_ok, connected_fail, lost;
    bool nodes_before_any_node; /* the hook ran before the list was visible */
    sl_gwcluster *c;
} hooks_rec;

static bool on_nodes(void *ctx, const sl_gw_node *nodes, int n) {
    hooks_rec *h = ctx;
    h->changes++;
    h->last_n = n;
    for (int i = 0; i < n && i < 16; i++) h->last_ids[i] = nodes[i].id;
    /* Before the new list is visible: the cluster still shows the old one. */
    if (h->c) {
        const sl_gw_node *cur;
        int ncur = sl_gwcluster_nodes(h->c, &cur);
        h->nodes_before_any_node = ncur != n || (n && cur == nodes);
    }
    return true;
}

static void on_conn(void *ctx, int32_t node, const char *addr, bool ok, sl_up_status st,
                    const char *why) {
    hooks_rec *h = ctx;
    if (ok)
        h->connected_ok++;
    else
        h->connected_fail++;
}

static void on_lost(void *ctx, int32_t node, const char *addr, const char *why) {
    ((hooks_rec *)ctx)->lost++;
}

typedef struct env {
    sl_loop *loop;
    bool own_loop;
    sl_config cfg;
    sl_upstream_cfg *up;
    hooks_rec rec;
    sl_gwcluster_hooks hooks;
    sl_gwcluster *c;
} env;

static bool env_open(env *e, sl_loop *loop, const char *bootstrap, int64_t refresh_ms) {
    memset(e, 0, sizeof *e);
    e->loop = loop ? loop : sl_loop_new();
    e->own_loop = !loop;
    if (!e->loop) return false;
    sl_config_defaults(&e->cfg);
    char err[256];
    if (sl_config_set(&e->cfg, "sluice.gateway.upstream.bootstrap.servers", bootstrap, err,
                      sizeof err) ||
        sl_config_set(&e->cfg, "sluice.gateway.upstream.security.protocol", "PLAINTEXT", err,
                      sizeof err) ||
        sl_config_set(&e->cfg, "sluice.gateway.upstream.connect.timeout.ms", "2000", err,
                      sizeof err) ||
        sl_config_set(&e->cfg, "sluice.gateway.upstream.request.timeout.ms", "5000", err,
                      sizeof err)) {
        fprintf(stderr, "  config: %s\n", err);
        return false;
    }
    e->up = sl_upstream_cfg_new(&e->cfg, err, sizeof err);
    if (!e->up) {
        fprintf(stderr, "  upstream cfg: %s\n", err);
        return false;
    }
    e->hooks = (sl_gwcluster_hooks){
        .ctx = &e->rec,
        .nodes_changed = on_nodes,
        .up = {.ctx = &e->rec, .connected = on_conn, .lost = on_lost},
    };
    e->c = sl_gwcluster_new(e->loop, e->up, refresh_ms, &e->hooks);
    e->rec.c = e->c;
    return e->c != NULL;
}

static void env_close(env *e) {
    sl_gwcluster_free(e->c);
    e->c = NULL;
    /* As sl_broker_free does: the closed connection's posted callbacks run (they must find
     * nothing to touch, and with them the connection and its records are freed; LeakSanitizer
     * at exit says if not). */
    if (e->loop) sl_loop_run_posted(e->loop);
    sl_upstream_cfg_free(e->up);
    if (e->own_loop) sl_loop_free(e->loop);
}

/* Runs the loop until `cond(e)` or POLL_MS. */
static bool run_until(env *e, bool (*cond)(env *e, void *arg), void *arg) {
    int64_t deadline = sl_mono_ms() + POLL_MS;
    while (!cond(e, arg)) {
        if (sl_mono_ms() > deadline) return false;
        sl_loop_run_once(e->loop, 20);
    }
    return true;
}

typedef struct leader_q {
    const char *topic;
    int32_t part, want;
} leader_q;

static bool leader_is(env *e, void *arg) {
    leader_q *q = arg;
    return sl_gwcluster_leader(e->c, sl_str_c(q->topic), q->part) == q->want;
}

static bool topic_there(env *e, void *arg) {
    sl_catalog cat = sl_gwcluster_catalog(e->c);
    return cat.topic_exists(cat.ctx, sl_str_c(arg));
}

static bool offline_is(env *e, void *arg) {
    sl_gw_health h;
    sl_gwcluster_health(e->c, &h);
    return h.offline == *(int64_t *)arg;
}

static bool failures_at_least(env *e, void *arg) {
    sl_gw_health h;
    sl_gwcluster_health(e->c, &h);
    return h.failures >= *(int64_t *)arg;
}

typedef struct names {
    char list[16][64];
    int n;
} names;

static void add_name(void *arg, sl_str name) {
    names *n = arg;
    if (n->n < 16) snprintf(n->list[n->n++], 64, "%.*s", (int)name.len, name.p);
}

static bool has_name(const names *n, const char *s) {
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->list[i], s)) return true;
    return false;
}

static void count_call(void *arg, sl_str s) { ++*(int *)arg; }

/* A port nothing listens on: bound, then closed. */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0) close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- against the librdkafka mock (old versions) ---- */

SL_TEST(gwcluster_mock_discovers_nodes_versions_topics) {
    mock m;
    const char *topics[] = {"t:4", NULL};
    CHECK(mock_start(&m, topics));
    env e;
    bool ok = env_open(&e, NULL, m.bootstrap, 60000);
    if (ok) ok = sl_gwcluster_wait_ready(e.c, 10000);
    int fails = 0;
    MCHECK(ok);
    const sl_gw_node *nodes;
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 3);
    for (int i = 0; i < 3; i++) {
        MCHECK(nodes[i].id == i + 1);
        MCHECK(nodes[i].port == m.port[i + 1]);
        MCHECK(!strcmp(nodes[i].rack, ""));
    }
    MCHECK(sl_gwcluster_node(e.c, 2) == &nodes[1]);
    MCHECK(sl_gwcluster_node(e.c, 4) == NULL);
    MCHECK(e.rec.changes == 1 && e.rec.last_n == 3 && e.rec.nodes_before_any_node);
    MCHECK(e.rec.connected_ok >= 1 && e.rec.connected_fail == 0);
    /* ApiVersions v0 answered: the mock's ranges as it states them. */
    int16_t lo, hi;
    MCHECK(sl_gwcluster_versions_known(e.c));
    MCHECK(sl_gwcluster_api_range(e.c, SL_API_METADATA, &lo, &hi) && lo == 0 && hi == 2);
    MCHECK(sl_gwcluster_api_range(e.c, SL_API_PRODUCE, &lo, &hi) && lo == 0 && hi == 7);
    MCHECK(!sl_gwcluster_api_range(e.c, SL_API_CREATE_TOPICS, &lo, &hi));
    /* Metadata v2: the mock's controller 0 kept as it is (mapping is the address map's job). */
    MCHECK(sl_gwcluster_controller(e.c) == 0);
    MCHECK(!strncmp(sl_gwcluster_cluster_id(e.c), "mockCluster", 11));
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 4 && h.offline == 0 && h.under_replicated == 0 && h.brokers == 3);
    MCHECK(h.reachable && h.failures == 0 && h.refreshed_ms > 0);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("t"), 1) == 2); /* the tool's round-robin */
    /* Catalog. */
    sl_catalog cat = sl_gwcluster_catalog(e.c);
    names n = {0};
    cat.each_topic(cat.ctx, add_name, &n);
    MCHECK(n.n == 1 && has_name(&n, "t"));
    MCHECK(cat.topic_exists(cat.ctx, sl_str_c("t")));
    MCHECK(!cat.topic_exists(cat.ctx, sl_str_c("nope")));
    MCHECK(!cat.auto_create(cat.ctx));
    int calls = 0;
    cat.each_group(cat.ctx, count_call, &calls);
    cat.each_committed_topic(cat.ctx, sl_str_c("g"), count_call, &calls);
    MCHECK(calls == 0);
    sl_uuid zero = {0};
    sl_str nm;
    MCHECK(!cat.topic_name(cat.ctx, &zero, NULL, &nm)); /* v2 has no topic ids */
    /* Round-robin over the three nodes. */
    int seen[4] = {0};
    for (int i = 0; i < 6; i++) {
        const sl_gw_node *a = sl_gwcluster_any_node(e.c);
        MCHECK(a && a->id >= 1 && a->id <= 3);
        seen[a->id]++;
    }
    MCHECK(seen[1] == 2 && seen[2] == 2 && seen[3] == 2);
    /* The view's all-topics Metadata created nothing upstream. */
    char line[4096];
    MCHECK(mock_query(&m, "metadata", line, sizeof line) && !strcmp(line, "ok t:1,2,3,1"));
done:
    env_close(&e);
    mock_stop(&m);
    CHECK_EQ(fails, 0);
}

SL_TEST(gwcluster_mock_follows_topics_leaders_offline) {
    mock m;
    const char *topics[] = {"t:3", NULL};
    CHECK(mock_start(&m, topics));
    env e;
    int fails = 0;
    /* A refresh period longer than the test: only refresh_soon explains what is seen. */
    bool ok = env_open(&e, NULL, m.bootstrap, 600000) && sl_gwcluster_wait_ready(e.c, 10000);
    MCHECK(ok);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("t"), 0) == 1);
    MCHECK(mock_cmd(&m, "create fresh 2"));
    sl_gwcluster_refresh_soon(e.c);
    MCHECK(run_until(&e, topic_there, "fresh"));
    names n = {0};
    sl_catalog cat = sl_gwcluster_catalog(e.c);
    cat.each_topic(cat.ctx, add_name, &n);
    MCHECK(n.n == 2 && has_name(&n, "t") && has_name(&n, "fresh"));

    MCHECK(mock_cmd(&m, "leader t 0 3"));
    sl_gwcluster_refresh_soon(e.c);
    sl_gwcluster_refresh_soon(e.c); /* coalesced */
    leader_q q = {"t", 0, 3};
    MCHECK(run_until(&e, leader_is, &q));

    MCHECK(mock_cmd(&m, "leader t 2 -1"));
    sl_gwcluster_refresh_soon(e.c);
    int64_t one = 1;
    MCHECK(run_until(&e, offline_is, &one));
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 5 && h.offline == 1 && h.reachable && h.failures == 0);
    MCHECK(e.rec.changes == 1); /* the brokers never changed */
done:
    env_close(&e);
    mock_stop(&m);
    CHECK_EQ(fails, 0);
}

SL_TEST(gwcluster_mock_bootstrap_order_and_failover) {
    mock m;
    CHECK(mock_start(&m, NULL));
    env e;
    int fails = 0;
    /* The first bootstrap address is dead: the second one serves. */
    char boot[600];
    snprintf(boot, sizeof boot, "127.0.0.1:%d,127.0.0.1:%d", dead_port(), m.port[2]);
    bool ok = env_open(&e, NULL, boot, 200) && sl_gwcluster_wait_ready(e.c, 10000);
    MCHECK(ok);
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.failures == 1 && h.reachable && h.brokers == 3);
    MCHECK(e.rec.connected_fail == 1);
    /* Broker 2 goes away: the view moves on to a known node and keeps refreshing. */
    MCHECK(mock_cmd(&m, "down 2"));
    int64_t two = 2;
    MCHECK(run_until(&e, failures_at_least, &two));
    int64_t before = h.refreshed_ms;
    int64_t deadline = sl_mono_ms() + POLL_MS;
    do {
        sl_loop_run_once(e.loop, 20);
        sl_gwcluster_health(e.c, &h);
    } while ((!h.reachable || h.refreshed_ms <= before + 200) && sl_mono_ms() < deadline);
    MCHECK(h.reachable && h.refreshed_ms > before + 200);
done:
    env_close(&e);
    mock_stop(&m);
    CHECK_EQ(fails, 0);
}

SL_TEST(gwcluster_bootstrap_down_counts_failures) {
    env e;
    int fails = 0;
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", dead_port());
    CHECK(env_open(&e, NULL, boot, 60000));
    MCHECK(!sl_gwcluster_wait_ready(e.c, 700));
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    /* Retries with backoff 100, 200, 400 ms: a few attempts in 700 ms, not hundreds. */
    MCHECK(!h.reachable && h.failures >= 2 && h.failures <= 6);
    MCHECK(h.refreshed_ms == 0 && h.brokers == 0);
    MCHECK(e.rec.connected_fail >= 2 && e.rec.connected_ok == 0);
    MCHECK(!sl_gwcluster_versions_known(e.c));
    MCHECK(sl_gwcluster_any_node(e.c) == NULL);
    MCHECK(sl_gwcluster_controller(e.c) == -1 && !sl_gwcluster_cluster_id(e.c)[0]);
    sl_gwcluster_count_failure(e.c);
    sl_gw_health h2;
    sl_gwcluster_health(e.c, &h2);
    MCHECK(h2.failures >= h.failures + 1);
done:
    env_close(&e);
    CHECK_EQ(fails, 0);
}

/* ---- against an in-process `sluice serve` (modern versions) ---- */

/* What the in-process broker was asked: Metadata requests of the view. */
typedef struct md_seen {
    int count;
    int16_t version;
    bool all_topics; /* null topic list */
    bool client_id_ok;
} md_seen;

static void observe(void *ctx, const sl_req *rq) {
    md_seen *s = ctx;
    if (rq->h.api_key != SL_API_METADATA || !rq->req) return;
    const sl_metadata_req *m = rq->req;
    s->count++;
    s->version = rq->h.api_version;
    s->all_topics = m->topics_count == -1 && !m->allow_auto_topic_creation;
    s->client_id_ok = sl_str_eqc(rq->h.client_id, "sluice-gateway");
}

static bool md_count_is(env *e, void *arg) { return ((md_seen *)arg)->count >= 1; }

SL_TEST(gwcluster_local_broker_modern_versions) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sl_gwcl_XXXXXX");
    CHECK(mkdtemp(dir));
    sl_config bc;
    sl_config_defaults(&bc);
    char err[256];
    CHECK_EQ(sl_config_set(&bc, "log.dirs", dir, err, sizeof err), SL_OK);
    CHECK_EQ(sl_config_set(&bc, "sluice.secrets.dir", dir, err, sizeof err), SL_OK);
    CHECK_EQ(sl_config_set(&bc, "listeners", "PLAINTEXT://127.0.0.1:0", err, sizeof err), SL_OK);
    CHECK_EQ(sl_config_set(&bc, "node.id", "7", err, sizeof err), SL_OK);
    CHECK_EQ(sl_config_set(&bc, "sluice.metrics.listener", "http://127.0.0.1:0", err, sizeof err),
             SL_OK);
    CHECK_EQ(sl_config_finish(&bc, err, sizeof err), SL_OK);
    sl_broker *b = NULL;
    if (sl_broker_new(&bc, SL_BROKER_SERVE, &b, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  broker: %s\n", err);
        CHECK(0);
    }
    int fails = 0;
    env e = {0};
    md_seen seen = {0};
    sl_arena *ar = sl_arena_new(256);
    MCHECK(sl_req_observers_add(&b->observers, observe, &seen));
    MCHECK(sl_topics_create(b->topics, sl_str_c("orders"), 3, NULL, false, NULL) == SL_OK);
    sl_topic *t = sl_topics_find(b->topics, sl_str_c("orders"));
    MCHECK(t);
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", b->listeners[0].port);
    MCHECK(env_open(&e, b->loop, boot, 60000));
    MCHECK(sl_gwcluster_wait_ready(e.c, 10000));
    int16_t lo, hi;
    const sl_api_info *our = sl_api_lookup(SL_API_METADATA);
    MCHECK(sl_gwcluster_api_range(e.c, SL_API_METADATA, &lo, &hi) && hi == our->max_version);
    MCHECK(sl_gwcluster_api_range(e.c, SL_API_API_VERSIONS, &lo, &hi) && hi >= 3);
    const sl_gw_node *nodes;
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 1 && nodes[0].id == 7);
    MCHECK(nodes[0].port == b->listeners[0].port && !strcmp(nodes[0].host, "127.0.0.1"));
    MCHECK(sl_gwcluster_controller(e.c) == 7);
    MCHECK(!strcmp(sl_gwcluster_cluster_id(e.c), sl_topics_cluster_id(b->topics)));
    /* Metadata v10+: the catalog resolves topic ids. */
    sl_catalog cat = sl_gwcluster_catalog(e.c);
    sl_str name;
    MCHECK(ar && cat.topic_name(cat.ctx, &t->id, ar, &name) && sl_str_eqc(name, "orders"));
    sl_uuid other = t->id;
    other.b[0] ^= 1;
    sl_str none;
    MCHECK(!cat.topic_name(cat.ctx, &other, ar, &none));
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 3 && h.offline == 0 && h.under_replicated == 0 && h.reachable);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("orders"), 2) == 7);
    MCHECK(seen.count == 1 && seen.version == our->max_version && seen.all_topics &&
           seen.client_id_ok);
    /* A burst of refresh_soon makes one Metadata request, not ten. */
    seen.count = 0;
    for (int i = 0; i < 10; i++) sl_gwcluster_refresh_soon(e.c);
    MCHECK(run_until(&e, md_count_is, &seen));
    int64_t window = sl_mono_ms() + 400;
    while (sl_mono_ms() < window) sl_loop_run_once(e.loop, 20);
    MCHECK(seen.count == 1);
    /* A topic created later shows up after refresh_soon. */
    MCHECK(sl_topics_create(b->topics, sl_str_c("later"), 1, NULL, false, NULL) == SL_OK);
    sl_gwcluster_refresh_soon(e.c);
    MCHECK(run_until(&e, topic_there, "later"));
    /* A name the catalog gave out survives the refreshes that replaced its entry: a request
     * forwarded upstream holds it until the answer (regression: use after free). */
    MCHECK(sl_str_eqc(name, "orders"));
done:
    if (e.c) env_close(&e);
    sl_arena_free(ar);
    sl_broker_free(b);
    nftw(dir, local_broker_rm, 16, FTW_DEPTH | FTW_PHYS);
    CHECK_EQ(fails, 0);
}

/* ---- a fake upstream whose ApiVersions answer is not usable ---- */

typedef struct fake {
    sl_loop *loop;
    int lfd, cfd;
    int mode; /* 0: no Metadata in the list; 1: an error code; 2: not a Kafka answer */
    int requests;
} fake;

static void fake_on_conn(void *ctx, uint32_t ev) {
    fake *f = ctx;
    uint8_t buf[4096];
    ssize_t n = read(f->cfd, buf, sizeof buf);
    if (n <= 0) {
        sl_loop_unwatch(f->loop, f->cfd);
        close(f->cfd);
        f->cfd = -1;
        return;
    }
    if (n < 12) return; /* the whole small request comes in one read on loopback */
    f->requests++;
    sl_arena *a = sl_arena_new(1024);
    sl_wr w;
    sl_wr_init(&w, a, 64);
    sl_wr_raw(&w, "\0\0\0\0", 4); /* size, filled below */
    sl_wr_raw(&w, buf + 8, 4);    /* the correlation id */
    int16_t key = (int16_t)sl_get_be16(buf + 4), version = (int16_t)sl_get_be16(buf + 6);
    if (f->mode == 2) {
        sl_wr_raw(&w, "\xff\xff\xff", 3);
    } else if (f->mode == 3 && key == SL_API_API_VERSIONS) {
        sl_api_versions_resp r;
        sl_api_versions_resp_init(&r);
        sl_api_versions_resp_api_key k[2] = {{SL_API_API_VERSIONS, 0, 2}, {SL_API_METADATA, 0, 1}};
        r.api_keys = k;
        r.api_keys_count = 2;
        sl_api_versions_resp_encode(&w, 0, &r);
    } else if (f->mode == 3 && key == SL_API_METADATA) {
        /* No broker (a cluster in trouble), one topic. */
        sl_metadata_resp r;
        sl_metadata_resp_init(&r);
        sl_metadata_resp_topic t;
        sl_metadata_resp_topic_init(&t);
        sl_metadata_resp_partition p;
        sl_metadata_resp_partition_init(&p);
        t.name = sl_str_c("x");
        t.partitions = &p;
        t.partitions_count = 1;
        r.brokers_count = 0;
        r.controller_id = 5;
        r.topics = &t;
        r.topics_count = 1;
        sl_metadata_resp_encode(&w, version, &r);
    } else {
        sl_api_versions_resp r;
        sl_api_versions_resp_init(&r);
        sl_api_versions_resp_api_key k = {SL_API_API_VERSIONS, 0, 2};
        r.error_code = f->mode == 1 ? SL_KAFKA_UNSUPPORTED_VERSION : 0;
        r.api_keys = &k;
        r.api_keys_count = 1;
        sl_api_versions_resp_encode(&w, 0, &r);
    }
    sl_be32(w.buf, (uint32_t)(w.len - 4));
    if (write(f->cfd, w.buf, w.len) != (ssize_t)w.len) f->requests = -1000;
    sl_arena_free(a);
}

static void fake_on_accept(void *ctx, uint32_t ev) {
    fake *f = ctx;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return;
    if (f->cfd >= 0) {
        sl_loop_unwatch(f->loop, f->cfd);
        close(f->cfd);
    }
    f->cfd = fd;
    sl_loop_watch(f->loop, fd, SL_EV_READ, fake_on_conn, f);
}

static int fake_start(fake *f, sl_loop *loop, int mode) {
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->mode = mode;
    f->cfd = -1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) || listen(f->lfd, 8) ||
        getsockname(f->lfd, (struct sockaddr *)&a, &l) ||
        sl_loop_watch(loop, f->lfd, SL_EV_READ, fake_on_accept, f))
        return 0;
    return ntohs(a.sin_port);
}

static void fake_stop(fake *f) {
    if (f->cfd >= 0) {
        sl_loop_unwatch(f->loop, f->cfd);
        close(f->cfd);
    }
    if (f->lfd >= 0) {
        sl_loop_unwatch(f->loop, f->lfd);
        close(f->lfd);
    }
}

static bool fake_asked(env *e, void *arg) { return ((fake *)arg)->requests >= 2; }

SL_TEST(gwcluster_unusable_api_versions_fail_and_retry) {
    for (int mode = 0; mode < 3; mode++) {
        sl_loop *loop = sl_loop_new();
        CHECK(loop);
        fake f;
        int port = fake_start(&f, loop, mode);
        env e = {0};
        int fails = 0;
        char boot[64];
        snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
        MCHECK(port > 0 && env_open(&e, loop, boot, 60000));
        /* Asked again after the backoff, never getting further than ApiVersions. */
        MCHECK(run_until(&e, fake_asked, &f));
        MCHECK(!sl_gwcluster_wait_ready(e.c, 1));
        sl_gw_health h;
        sl_gwcluster_health(e.c, &h);
        MCHECK(!h.reachable && h.failures >= 1 && h.refreshed_ms == 0);
        int16_t lo, hi;
        /* A well-formed list without Metadata is still kept; the others are not. */
        MCHECK(sl_gwcluster_versions_known(e.c) == (mode == 0));
        MCHECK(!sl_gwcluster_api_range(e.c, SL_API_METADATA, &lo, &hi));
    done:
        env_close(&e);
        fake_stop(&f);
        sl_loop_free(loop);
        CHECK_EQ(fails, 0);
    }
}

/* A full answer naming no broker keeps the brokers known (here learnt from a client's answer):
 * forgetting them would leave clients nowhere to go. */
SL_TEST(gwcluster_answer_without_brokers_keeps_nodes) {
    sl_loop *loop = sl_loop_new();
    CHECK(loop);
    fake f;
    int port = fake_start(&f, loop, 3);
    env e = {0};
    int fails = 0;
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", port);
    MCHECK(port > 0 && env_open(&e, loop, boot, 60000));
    sl_metadata_resp_broker br;
    sl_metadata_resp_broker_init(&br);
    br.node_id = 4;
    br.host = sl_str_c("127.0.0.1");
    br.port = port;
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    m.brokers = &br;
    m.brokers_count = 1;
    sl_gwcluster_learn(e.c, 1, &m);
    MCHECK(sl_gwcluster_wait_ready(e.c, 10000));
    const sl_gw_node *nodes;
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 1 && nodes[0].id == 4);
    MCHECK(sl_gwcluster_controller(e.c) == 5 && e.rec.changes == 1);
    sl_catalog cat = sl_gwcluster_catalog(e.c);
    MCHECK(cat.topic_exists(cat.ctx, sl_str_c("x")));
    int16_t lo, hi;
    MCHECK(sl_gwcluster_api_range(e.c, SL_API_METADATA, &lo, &hi) && hi == 1);
done:
    env_close(&e);
    fake_stop(&f);
    sl_loop_free(loop);
    CHECK_EQ(fails, 0);
}

/* Freed with a connection attempt and then a request in flight: their callbacks, run later,
 * touch nothing (ASan would say). */
SL_TEST(gwcluster_free_with_requests_in_flight) {
    mock m;
    CHECK(mock_start(&m, NULL));
    int fails = 0;
    env e;
    MCHECK(env_open(&e, NULL, m.bootstrap, 60000));
    sl_loop_run_once(e.loop, 0); /* the first attempt starts on its worker */
    env_close(&e);
    MCHECK(env_open(&e, NULL, m.bootstrap, 60000));
    MCHECK(sl_gwcluster_wait_ready(e.c, 10000));
    MCHECK(mock_cmd(&m, "rtt 1 300")); /* answers of broker 1 (the control one) come late */
    int64_t deadline = sl_mono_ms() + 300;
    while (sl_mono_ms() < deadline) sl_loop_run_once(e.loop, 20); /* past the soon spacing */
    sl_gwcluster_refresh_soon(e.c);
    sl_loop_run_once(e.loop, 0); /* the posted refresh sends Metadata */
    env_close(&e);
done:
    mock_stop(&m);
    CHECK_EQ(fails, 0);
}

/* ---- learning from clients' answers ---- */

static sl_metadata_resp_partition part(int32_t idx, int32_t leader, int32_t *reps, int nrep,
                                       int32_t *isr, int nisr) {
    sl_metadata_resp_partition p;
    sl_metadata_resp_partition_init(&p);
    p.partition_index = idx;
    p.leader_id = leader;
    p.replica_nodes = reps;
    p.replica_nodes_count = nrep;
    p.isr_nodes = isr;
    p.isr_nodes_count = nisr;
    return p;
}

SL_TEST(gwcluster_learn_merges_partial_answers) {
    env e;
    int fails = 0;
    char boot[64];
    sl_arena *ar = sl_arena_new(256);
    snprintf(boot, sizeof boot, "127.0.0.1:%d", dead_port());
    CHECK(env_open(&e, NULL, boot, 60000));
    int32_t r3[] = {1, 2, 3}, r2[] = {1, 2};
    sl_metadata_resp_broker br[3];
    for (int i = 0; i < 3; i++) {
        sl_metadata_resp_broker_init(&br[i]);
        br[i].node_id = i + 1;
        br[i].host = sl_str_c("up.example");
        br[i].port = 9092 + i;
        br[i].rack = i == 0 ? sl_str_c("az1") : SL_STR_NULL;
    }
    sl_metadata_resp_partition pa[3] = {part(0, 1, r3, 3, r3, 3), part(2, -1, r3, 3, r2, 2),
                                        part(1, 2, r3, 3, r2, 2)};
    sl_metadata_resp_partition pb[1] = {part(0, 2, r2, 2, r2, 2)};
    sl_metadata_resp_topic tp[2];
    for (int i = 0; i < 2; i++) sl_metadata_resp_topic_init(&tp[i]);
    tp[0].name = sl_str_c("a");
    tp[0].partitions = pa;
    tp[0].partitions_count = 3;
    tp[1].name = sl_str_c("b");
    tp[1].partitions = pb;
    tp[1].partitions_count = 1;
    tp[1].topic_id.b[15] = 9;
    sl_metadata_resp m;
    sl_metadata_resp_init(&m);
    m.brokers = br;
    m.brokers_count = 2;
    m.controller_id = 2;
    m.cluster_id = sl_str_c("up-cluster");
    m.topics = tp;
    m.topics_count = 2;
    sl_gwcluster_learn(e.c, 12, &m);
    const sl_gw_node *nodes;
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 2);
    MCHECK(!strcmp(nodes[0].rack, "az1") && !strcmp(nodes[1].rack, ""));
    MCHECK(!strcmp(nodes[1].host, "up.example") && nodes[1].port == 9093);
    MCHECK(e.rec.changes == 1 && e.rec.last_n == 2 && e.rec.nodes_before_any_node);
    MCHECK(sl_gwcluster_controller(e.c) == 2);
    MCHECK(!strcmp(sl_gwcluster_cluster_id(e.c), "up-cluster"));
    sl_gw_health h;
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 4 && h.offline == 1 && h.under_replicated == 2 && h.brokers == 2);
    /* partitions arrive in any order; they are looked up by index */
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("a"), 1) == 2);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("a"), 2) == -1);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("a"), 3) == -1);
    sl_catalog cat = sl_gwcluster_catalog(e.c);
    sl_str name;
    MCHECK(ar && cat.topic_name(cat.ctx, &tp[1].topic_id, ar, &name) && sl_str_eqc(name, "b"));

    /* The same answer again changes nothing about the brokers. */
    sl_gwcluster_learn(e.c, 12, &m);
    MCHECK(e.rec.changes == 1);

    /* A partial answer naming only "a" (leader moved, ISR whole again) and a third broker:
     * "b" stays. */
    sl_metadata_resp_partition pa2[3] = {part(0, 3, r3, 3, r3, 3), part(1, 2, r3, 3, r3, 3),
                                         part(2, 1, r3, 3, r3, 3)};
    tp[0].partitions = pa2;
    m.brokers = &br[2];
    m.brokers_count = 1;
    m.topics_count = 1;
    sl_gwcluster_learn(e.c, 12, &m);
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 3 && nodes[2].id == 3);
    MCHECK(e.rec.changes == 2 && e.rec.last_n == 3);
    MCHECK(sl_gwcluster_leader(e.c, sl_str_c("a"), 0) == 3);
    MCHECK(cat.topic_exists(cat.ctx, sl_str_c("b")));
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 4 && h.offline == 0 && h.under_replicated == 0 && h.brokers == 3);

    /* Not authorized for "b" says nothing about it; unknown "a" is gone. */
    tp[0].error_code = SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
    tp[0].partitions_count = 0;
    tp[1].error_code = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    tp[1].partitions_count = 0;
    m.brokers_count = 0;
    m.topics_count = 2;
    sl_gwcluster_learn(e.c, 12, &m);
    MCHECK(!cat.topic_exists(cat.ctx, sl_str_c("a")));
    MCHECK(cat.topic_exists(cat.ctx, sl_str_c("b")));
    MCHECK(cat.topic_name(cat.ctx, &tp[1].topic_id, ar, &name) && sl_str_eqc(name, "b"));
    MCHECK(sl_gwcluster_nodes(e.c, &nodes) == 3);
    sl_gwcluster_health(e.c, &h);
    MCHECK(h.partitions == 1);

    /* "b" deleted and created again: the new id names it, the old one nothing. */
    sl_uuid old_id = tp[1].topic_id;
    tp[1].error_code = 0;
    tp[1].partitions_count = 1;
    tp[1].topic_id.b[0] = 0x42;
    m.topics = &tp[1];
    m.topics_count = 1;
    sl_gwcluster_learn(e.c, 12, &m);
    MCHECK(!cat.topic_name(cat.ctx, &old_id, ar, &name));
    MCHECK(cat.topic_name(cat.ctx, &tp[1].topic_id, ar, &name) && sl_str_eqc(name, "b"));
    /* An old version carries no id: the known one stays. */
    sl_gwcluster_learn(e.c, 2, &m);
    MCHECK(cat.topic_name(cat.ctx, &tp[1].topic_id, ar, &name) && sl_str_eqc(name, "b"));

    /* Many topics: the name index grows and still finds each one. */
    char names_buf[300][24];
    sl_metadata_resp_topic many[300];
    for (int i = 0; i < 300; i++) {
        sl_metadata_resp_topic_init(&many[i]);
        snprintf(names_buf[i], sizeof names_buf[i], "topic-%d", i);
        many[i].name = sl_str_c(names_buf[i]);
        many[i].partitions = pb;
        many[i].partitions_count = 1;
    }
    m.topics = many;
    m.topics_count = 300;
    sl_gwcluster_learn(e.c, 1, &m);
    for (int i = 0; i < 300; i++) MCHECK(cat.topic_exists(cat.ctx, many[i].name));
    MCHECK(cat.topic_exists(cat.ctx, sl_str_c("b")));
    int cnt = 0;
    cat.each_topic(cat.ctx, count_call, &cnt);
    MCHECK(cnt == 301);
done:
    env_close(&e);
    sl_arena_free(ar);
    CHECK_EQ(fails, 0);
}
