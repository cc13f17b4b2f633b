/* Detections (src/guard): synthetic events into a hub holding a guard and a capturing
 * subscriber. Each rule fires at its threshold and not one below, windows slide, a finding is
 * not raised twice per window, state stays bounded under a flood, and a block ends on time.
 * The clock is the events' own time_ms (and sl_guard_set_clock for admission and the periodic
 * checks), so nothing here waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_config.h"
#include "events/sl_events.h"
#include "guard/sl_guard.h"
#include "pipeline/sl_authorize.h"
#include "sl_test.h"

#define T0 1800000000000LL /* a wall-clock ms in 2027 */

/* ---- capture ---- */

typedef struct seen {
    char rule[40], subject[128], principal[64], peer[64];
    double value, threshold;
    int64_t window_ms, block_ms, time_ms;
    int severity;
} seen;

typedef struct capture {
    seen f[256];
    int n;
    int others; /* non-detection events delivered */
} capture;

static void on_ev(void *ctx, const sl_event *ev) {
    capture *c = ctx;
    if (ev->kind != SL_EV_DETECTION) {
        c->others++;
        return;
    }
    if (c->n >= 256) return;
    seen *s = &c->f[c->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->rule, sizeof s->rule, "%s", ev->det.rule);
    snprintf(s->subject, sizeof s->subject, "%s", ev->det.subject);
    snprintf(s->principal, sizeof s->principal, "%s", ev->principal ? ev->principal : "");
    snprintf(s->peer, sizeof s->peer, "%s", ev->peer ? ev->peer : "");
    s->value = ev->det.value;
    s->threshold = ev->det.threshold;
    s->window_ms = ev->det.window_ms;
    s->block_ms = ev->det.block_ms;
    s->time_ms = ev->time_ms;
    s->severity = ev->det.severity;
}

static int count_rule(const capture *c, const char *rule) {
    int n = 0;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->f[i].rule, rule) == 0) n++;
    return n;
}

static const seen *last_rule(const capture *c, const char *rule) {
    for (int i = c->n - 1; i >= 0; i--)
        if (strcmp(c->f[i].rule, rule) == 0) return &c->f[i];
    return NULL;
}

/* ---- a guard on a hub ---- */

typedef struct fixture {
    sl_events hub;
    capture cap;
    sl_config cfg;
    sl_guard *g;
    /* the injected environment */
    int64_t not_after[4];
    int ncerts;
    double disk_free_pct;
    bool disk_known;
} fixture;

static void fx_each_cert(void *ctx, void (*fn)(void *arg, const char *listener, int64_t not_after),
                         void *arg) {
    fixture *fx = ctx;
    static const char *const names[] = {"SASL_SSL", "SSL", "EXTERNAL", "INTERNAL"};
    for (int i = 0; i < fx->ncerts; i++) fn(arg, names[i], fx->not_after[i]);
}

static bool fx_disk(void *ctx, const char *path, uint64_t *fr, uint64_t *total) {
    fixture *fx = ctx;
    *total = 1000000;
    *fr = (uint64_t)(fx->disk_free_pct * 10000);
    return fx->disk_known;
}

/* `kv`: NULL-terminated key, value pairs applied over the defaults. */
static fixture *fx_new(const char *const *kv) {
    fixture *fx = calloc(1, sizeof *fx);
    sl_config_defaults(&fx->cfg);
    char err[256];
    for (int i = 0; kv && kv[i]; i += 2)
        if (sl_config_set(&fx->cfg, kv[i], kv[i + 1], err, sizeof err) != SL_OK) {
            fprintf(stderr, "  config: %s\n", err);
            free(fx);
            return NULL;
        }
    fx->disk_free_pct = 50;
    fx->disk_known = true;
    /* The capture first: it must see findings exactly as any later subscriber (the trail). */
    sl_events_subscribe(&fx->hub, on_ev, &fx->cap);
    sl_guard_env env = {.hub = &fx->hub,
                        .data_dir = "/data",
                        .each_cert = fx_each_cert,
                        .cert_ctx = fx,
                        .disk_space = fx_disk,
                        .disk_ctx = fx};
    fx->g = sl_guard_new(&fx->cfg, &env);
    return fx;
}

static void fx_free(fixture *fx) {
    if (!fx) return;
    sl_guard_free(fx->g);
    free(fx);
}

static void auth(fixture *fx, int64_t t, bool ok, const char *peer, const char *user) {
    char principal[128];
    snprintf(principal, sizeof principal, "User:%s", user ? user : "");
    sl_event ev = {.kind = SL_EV_AUTH,
                   .time_ms = t,
                   .conn_id = 7,
                   .principal = ok && user ? principal : NULL,
                   .peer = peer,
                   .listener = "SASL_PLAINTEXT",
                   .auth = {.activity = SL_AUTH_LOGON,
                            .success = ok,
                            .mechanism = "SCRAM-SHA-512",
                            .user = user,
                            .reason = ok ? NULL : "invalid credentials"}};
    sl_events_emit(&fx->hub, &ev);
}

/* A finished request of `principal` naming `res` and reading or writing `data`. */
static void request(fixture *fx, int64_t t, const char *principal, sl_req_res *res, int nres,
                    sl_req_data *data, int ndata) {
    sl_req rq;
    memset(&rq, 0, sizeof rq);
    rq.principal = principal;
    rq.peer = "10.0.0.9:40000";
    rq.listener = "SASL_PLAINTEXT";
    rq.res = res;
    rq.nres = nres;
    rq.data = data;
    rq.ndata = ndata;
    sl_event ev = {.kind = SL_EV_REQUEST,
                   .time_ms = t,
                   .principal = principal,
                   .peer = rq.peer,
                   .listener = rq.listener,
                   .rq = &rq};
    sl_events_emit(&fx->hub, &ev);
}

static sl_req_res res_of(int op, int rtype, const char *name, bool allowed, unsigned flags) {
    return (sl_req_res){.name = sl_str_c(name),
                        .op = (int8_t)op,
                        .rtype = (int8_t)rtype,
                        .allowed = allowed,
                        .flags = (uint8_t)flags,
                        .alt = -1};
}

/* ---- rules ---- */

SL_TEST(guard_off_is_null_and_calls_accept_null) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.enable", "false", NULL});
    CHECK(fx);
    CHECK(fx->g == NULL);
    CHECK_EQ(fx->hub.n, 1); /* only the capture */
    CHECK(sl_guard_refuse(NULL, "127.0.0.1") == NULL);
    sl_guard_stats st;
    sl_guard_stats_get(NULL, &st);
    CHECK_EQ(st.findings, 0);
    sl_guard_finding f[2];
    CHECK_EQ(sl_guard_recent(NULL, f, 2), 0);
    CHECK_EQ(sl_guard_findings_by_rule(NULL, "disk_full"), 0);
    sl_guard_check(NULL);
    sl_guard_set_clock(NULL, 1);
    fx_free(fx);
}

SL_TEST(guard_auth_bruteforce_address_at_threshold_once_per_window) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.auth.failures.per.address", "5",
                                               "sluice.guard.auth.failures.per.principal", "1000",
                                               "sluice.guard.window.ms", "60000", NULL});
    CHECK(fx && fx->g);
    CHECK_EQ(fx->hub.n, 2);
    for (int i = 0; i < 4; i++) auth(fx, T0 + i * 100, false, "10.0.0.1:5000", "mallory");
    /* Another address's failures are its own. */
    for (int i = 0; i < 4; i++) auth(fx, T0 + i * 100, false, "10.0.0.2:5000", "mallory");
    CHECK_EQ(fx->cap.n, 0);
    auth(fx, T0 + 500, false, "10.0.0.1:5001", "mallory");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    const seen *s = last_rule(&fx->cap, "auth_bruteforce_address");
    CHECK(strcmp(s->subject, "10.0.0.1") == 0);
    CHECK(strcmp(s->peer, "10.0.0.1:5001") == 0);
    CHECK_EQ(s->value, 5);
    CHECK_EQ(s->threshold, 5);
    CHECK_EQ(s->window_ms, 60000);
    CHECK_EQ(s->severity, 4);
    CHECK_EQ(s->block_ms, 0);
    CHECK_EQ(s->time_ms, T0 + 500);
    /* More failures in the same window: not raised again. */
    for (int i = 0; i < 20; i++) auth(fx, T0 + 1000 + i, false, "10.0.0.1:5001", "mallory");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    /* A window after the finding, the failures still coming: raised again. */
    auth(fx, T0 + 500 + 60000, false, "10.0.0.1:5001", "mallory");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1); /* only 1 in the new window */
    for (int i = 1; i < 5; i++) auth(fx, T0 + 60500 + i, false, "10.0.0.1:5001", "mallory");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 2);
    CHECK_EQ(sl_guard_findings_by_rule(fx->g, "auth_bruteforce_address"), 2);
    CHECK_EQ(sl_guard_findings_by_rule(fx->g, "no_such_rule"), 0);
    /* No block without sluice.guard.block.seconds. */
    CHECK(sl_guard_refuse(fx->g, "10.0.0.1") == NULL);
    CHECK_EQ(count_rule(&fx->cap, "address_blocked"), 0);
    fx_free(fx);
}

SL_TEST(guard_window_slides) {
    /* 16 s window: 1 s buckets. */
    fixture *fx = fx_new((const char *const[]){"sluice.guard.auth.failures.per.address", "3",
                                               "sluice.guard.auth.failures.per.principal", "1000",
                                               "sluice.guard.window.ms", "16000", NULL});
    CHECK(fx && fx->g);
    /* One failure every 8 s: never 3 within a window, however long it goes on. */
    for (int i = 0; i < 20; i++) auth(fx, T0 + i * 8000, false, "10.0.0.1:1", "u");
    CHECK_EQ(fx->cap.n, 0);
    /* Two at the start of a window and one as it ends (15 s later): still in the window. */
    int64_t t = T0 + 1000000;
    auth(fx, t, false, "10.0.0.3:1", "u");
    auth(fx, t + 1, false, "10.0.0.3:1", "u");
    auth(fx, t + 15000, false, "10.0.0.3:1", "u");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    /* The same 17 s apart: the first ones have left the window. */
    t += 100000;
    auth(fx, t, false, "10.0.0.4:1", "u");
    auth(fx, t + 1, false, "10.0.0.4:1", "u");
    auth(fx, t + 17000, false, "10.0.0.4:1", "u");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    /* A second one in the window (2 of 3); a late event (older than the window) is not
     * counted; a third one in the window raises. */
    auth(fx, t + 17001, false, "10.0.0.4:1", "u");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    auth(fx, t - 100000, false, "10.0.0.4:1", "u");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    auth(fx, t + 17002, false, "10.0.0.4:1", "u");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 2);
    fx_free(fx);
}

SL_TEST(guard_auth_bruteforce_principal_across_addresses) {
    fixture *fx =
        fx_new((const char *const[]){"sluice.guard.auth.failures.per.address", "1000",
                                     "sluice.guard.auth.failures.per.principal", "4", NULL});
    CHECK(fx && fx->g);
    char peer[64];
    for (int i = 0; i < 3; i++) {
        snprintf(peer, sizeof peer, "10.1.0.%d:99", i);
        auth(fx, T0 + i, false, peer, "alice");
    }
    auth(fx, T0 + 3, false, "10.1.0.9:9", "bob");
    auth(fx, T0 + 4, false, "10.1.0.9:9", NULL); /* no claimed user: the address only */
    CHECK_EQ(fx->cap.n, 0);
    auth(fx, T0 + 5, false, "10.1.0.3:99", "alice");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_principal"), 1);
    const seen *s = last_rule(&fx->cap, "auth_bruteforce_principal");
    CHECK(strcmp(s->subject, "alice") == 0);
    CHECK_EQ(s->value, 4);
    CHECK_EQ(s->threshold, 4);
    auth(fx, T0 + 6, false, "10.1.0.4:99", "alice");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_principal"), 1);
    /* Successes are not failures. */
    for (int i = 0; i < 10; i++) auth(fx, T0 + 10 + i, true, "10.1.0.9:9", "bob");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_principal"), 1);
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 0);
    fx_free(fx);
}

SL_TEST(guard_denial_spike_counts_denials_not_listings) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.denials.per.principal", "6", NULL});
    CHECK(fx && fx->g);
    sl_req_res two[] = {res_of(SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "a", false, 0),
                        res_of(SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "b", false, 0),
                        res_of(SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, "c", true, 0)};
    sl_req_res quiet[] = {res_of(SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, "x", false, SL_AZ_QUIET),
                          res_of(SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, "y", false, SL_AZ_QUIET),
                          res_of(0, SL_ACL_RES_TOPIC, "z", false, SL_AZ_OPS)};
    for (int i = 0; i < 20; i++) request(fx, T0 + i, "User:app", quiet, 3, NULL, 0);
    request(fx, T0 + 30, "User:app", two, 3, NULL, 0);
    request(fx, T0 + 31, "User:app", two, 3, NULL, 0);
    request(fx, T0 + 32, "User:other", two, 3, NULL, 0);
    CHECK_EQ(fx->cap.n, 0); /* 4 of 6 */
    request(fx, T0 + 33, "User:app", two, 1, NULL, 0);
    CHECK_EQ(fx->cap.n, 0); /* 5 of 6 */
    request(fx, T0 + 34, "User:app", two, 1, NULL, 0);
    CHECK_EQ(count_rule(&fx->cap, "denial_spike"), 1);
    const seen *s = last_rule(&fx->cap, "denial_spike");
    CHECK(strcmp(s->subject, "User:app") == 0);
    CHECK(strcmp(s->principal, "User:app") == 0);
    CHECK_EQ(s->value, 6);
    CHECK_EQ(s->threshold, 6);
    request(fx, T0 + 35, "User:app", two, 3, NULL, 0);
    CHECK_EQ(count_rule(&fx->cap, "denial_spike"), 1);
    /* Unauthenticated requests (no principal) are not attributed to anyone. */
    for (int i = 0; i < 10; i++) request(fx, T0 + 40 + i, NULL, two, 3, NULL, 0);
    CHECK_EQ(fx->cap.n, 1);
    fx_free(fx);
}

SL_TEST(guard_new_address_not_first_once_per_pair) {
    fixture *fx = fx_new((const char *const[]){NULL});
    CHECK(fx && fx->g);
    auth(fx, T0, true, "10.2.0.1:1000", "alice");
    auth(fx, T0 + 1, true, "10.2.0.1:1001", "alice"); /* same address, another port */
    CHECK_EQ(fx->cap.n, 0);
    auth(fx, T0 + 2, true, "10.2.0.2:1000", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 1);
    const seen *s = last_rule(&fx->cap, "new_address");
    CHECK(strcmp(s->subject, "User:alice") == 0);
    CHECK(strcmp(s->peer, "10.2.0.2:1000") == 0);
    auth(fx, T0 + 3, true, "10.2.0.2:1002", "alice");
    auth(fx, T0 + 4, true, "10.2.0.1:1002", "alice");
    auth(fx, T0 + 5, true, "10.2.0.2:1000", "bob"); /* bob's first address */
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 1);
    /* A failure from a new address is not an authentication from it. */
    auth(fx, T0 + 6, false, "10.2.0.3:1000", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 1);
    /* Another new address within the window: not raised yet, and not learned either... */
    auth(fx, T0 + 7, true, "[2001:db8::1]:9093", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 1);
    /* ...so it raises once the window after the last finding has passed. */
    auth(fx, T0 + 2 + 60000 - 1, true, "[2001:db8::1]:9093", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 1);
    auth(fx, T0 + 2 + 60000, true, "[2001:db8::1]:9093", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 2);
    CHECK(strcmp(last_rule(&fx->cap, "new_address")->peer, "[2001:db8::1]:9093") == 0);
    CHECK_EQ(last_rule(&fx->cap, "new_address")->window_ms, 60000);
    auth(fx, T0 + 200000, true, "[2001:db8::1]:9094", "alice");
    CHECK_EQ(count_rule(&fx->cap, "new_address"), 2);
    fx_free(fx);

    fx = fx_new((const char *const[]){"sluice.guard.new.address.enable", "false", NULL});
    CHECK(fx && fx->g);
    auth(fx, T0, true, "10.2.0.1:1000", "alice");
    auth(fx, T0 + 1, true, "10.2.0.2:1000", "alice");
    CHECK_EQ(fx->cap.n, 0);
    fx_free(fx);
}

SL_TEST(guard_new_topic_read_first_read_per_principal_topic) {
    fixture *fx = fx_new((const char *const[]){NULL});
    CHECK(fx && fx->g);
    sl_req_data fetch[] = {{.topic = sl_str_c("orders"), .partition = 0},
                           {.topic = sl_str_c("orders"), .partition = 1},
                           {.topic = sl_str_c("cards"), .partition = 0, .error = 29}};
    sl_req_data produce[] = {{.topic = sl_str_c("payments"), .write = true}};
    request(fx, T0, "User:app", NULL, 0, produce, 1);
    CHECK_EQ(fx->cap.n, 0); /* a write is not a read */
    request(fx, T0 + 1, "User:app", NULL, 0, fetch, 3);
    CHECK_EQ(count_rule(&fx->cap, "new_topic_read"), 1); /* orders; cards failed */
    const seen *s = last_rule(&fx->cap, "new_topic_read");
    CHECK(strcmp(s->subject, "orders") == 0);
    CHECK(strcmp(s->principal, "User:app") == 0);
    request(fx, T0 + 2, "User:app", NULL, 0, fetch, 3);
    CHECK_EQ(count_rule(&fx->cap, "new_topic_read"), 1);
    request(fx, T0 + 3, "User:bi", NULL, 0, fetch, 2); /* another principal: its own first */
    CHECK_EQ(count_rule(&fx->cap, "new_topic_read"), 2);
    /* READ on a topic authorized (OffsetCommit, a Fetch that returned nothing yet). */
    sl_req_res rd[] = {res_of(SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "payments", true, 0),
                       res_of(SL_ACL_OP_READ, SL_ACL_RES_TOPIC, "secret", false, 0),
                       res_of(SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, "ledger", true, 0),
                       res_of(SL_ACL_OP_READ, SL_ACL_RES_GROUP, "grp", true, 0)};
    request(fx, T0 + 4, "User:app", rd, 4, NULL, 0);
    CHECK_EQ(count_rule(&fx->cap, "new_topic_read"), 3);
    CHECK(strcmp(last_rule(&fx->cap, "new_topic_read")->subject, "payments") == 0);
    request(fx, T0 + 5, "User:app", rd, 1, fetch, 1);
    CHECK_EQ(count_rule(&fx->cap, "new_topic_read"), 3);
    fx_free(fx);

    fx = fx_new((const char *const[]){"sluice.guard.new.topic.read.enable", "false", NULL});
    CHECK(fx && fx->g);
    request(fx, T0 + 1, "User:app", NULL, 0, fetch, 3);
    CHECK_EQ(fx->cap.n, 0);
    fx_free(fx);
}

SL_TEST(guard_cert_expiry_within_days_once_per_day) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.cert.expiry.days", "30", NULL});
    CHECK(fx && fx->g);
    int64_t now_s = T0 / 1000;
    fx->ncerts = 3;
    fx->not_after[0] = now_s + 31 * 86400; /* a day outside */
    fx->not_after[1] = now_s + 10 * 86400;
    fx->not_after[2] = 0; /* unknown */
    sl_guard_set_clock(fx->g, T0);
    sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "cert_expiry"), 1);
    const seen *s = last_rule(&fx->cap, "cert_expiry");
    CHECK(strcmp(s->subject, "SSL") == 0);
    CHECK_EQ(s->value, 10);
    CHECK_EQ(s->threshold, 30);
    CHECK_EQ(s->severity, 3);
    sl_guard_set_clock(fx->g, T0 + 86400000 - 1);
    sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "cert_expiry"), 1);
    sl_guard_set_clock(fx->g, T0 + 86400000);
    sl_guard_check(fx->g);
    /* A day later: the second one again, and the first is now within 30 days. */
    CHECK_EQ(count_rule(&fx->cap, "cert_expiry"), 3);
    /* Expired: critical. */
    fx->ncerts = 1;
    fx->not_after[0] = now_s - 1;
    sl_guard_check(fx->g);
    s = last_rule(&fx->cap, "cert_expiry");
    CHECK_EQ(s->severity, 5);
    CHECK(s->value < 0);
    fx_free(fx);
}

SL_TEST(guard_disk_full_once_per_crossing) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.disk.free.min.percent", "10", NULL});
    CHECK(fx && fx->g);
    sl_guard_set_clock(fx->g, T0);
    fx->disk_free_pct = 10; /* at the threshold: not below */
    sl_guard_check(fx->g);
    CHECK_EQ(fx->cap.n, 0);
    fx->disk_free_pct = 9.5;
    sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "disk_full"), 1);
    const seen *s = last_rule(&fx->cap, "disk_full");
    CHECK(strcmp(s->subject, "/data") == 0);
    CHECK_EQ(s->threshold, 10);
    for (int i = 0; i < 5; i++) sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "disk_full"), 1);
    fx->disk_known = false; /* a failed measurement changes nothing */
    sl_guard_check(fx->g);
    fx->disk_known = true;
    sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "disk_full"), 1);
    fx->disk_free_pct = 40;
    sl_guard_check(fx->g);
    fx->disk_free_pct = 2;
    sl_guard_check(fx->g);
    CHECK_EQ(count_rule(&fx->cap, "disk_full"), 2);
    fx_free(fx);

    /* 0 %: off. */
    fx = fx_new((const char *const[]){"sluice.guard.disk.free.min.percent", "0", NULL});
    CHECK(fx && fx->g);
    fx->disk_free_pct = 0;
    sl_guard_check(fx->g);
    CHECK_EQ(fx->cap.n, 0);
    fx_free(fx);
}

SL_TEST(guard_block_refuses_then_expires) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.auth.failures.per.address", "5",
                                               "sluice.guard.block.seconds", "3", NULL});
    CHECK(fx && fx->g);
    sl_guard_set_clock(fx->g, T0);
    for (int i = 0; i < 4; i++) auth(fx, T0 + i, false, "127.0.0.1:4000", "x");
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") == NULL); /* one below: not blocked */
    auth(fx, T0 + 4, false, "127.0.0.1:4000", "x");
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    CHECK_EQ(count_rule(&fx->cap, "address_blocked"), 1);
    const seen *s = last_rule(&fx->cap, "address_blocked");
    CHECK(strcmp(s->subject, "127.0.0.1") == 0);
    CHECK_EQ(s->block_ms, 3000);
    /* The finding comes before the block's. */
    CHECK(strcmp(fx->cap.f[fx->cap.n - 2].rule, "auth_bruteforce_address") == 0);
    sl_guard_set_clock(fx->g, T0 + 5);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") != NULL);
    CHECK(strcmp(sl_guard_refuse(fx->g, "127.0.0.1"), "blocked") == 0);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.2") == NULL);
    sl_guard_stats st;
    sl_guard_stats_get(fx->g, &st);
    CHECK_EQ(st.blocked_addresses, 1);
    CHECK_EQ(st.blocked_refusals, 2);
    CHECK_EQ(st.findings, 2);
    /* A connection opened before the block fails once more: the count starts again from the
     * block, so no second block. */
    auth(fx, T0 + 6, false, "127.0.0.1:4001", "x");
    CHECK_EQ(count_rule(&fx->cap, "address_blocked"), 1);
    sl_guard_set_clock(fx->g, T0 + 4 + 2999);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") != NULL);
    sl_guard_set_clock(fx->g, T0 + 4 + 3000);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") == NULL);
    sl_guard_stats_get(fx->g, &st);
    CHECK_EQ(st.blocked_addresses, 0);
    CHECK_EQ(st.blocked_refusals, 3);
    /* Back, and guessing again: blocked again after a full threshold of new failures (the
     * finding itself stays once per window). */
    for (int i = 0; i < 3; i++) auth(fx, T0 + 4000 + i, false, "127.0.0.1:4002", "x");
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") == NULL); /* 4 since the block */
    auth(fx, T0 + 4010, false, "127.0.0.1:4002", "x");
    CHECK_EQ(count_rule(&fx->cap, "address_blocked"), 2);
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_address"), 1);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") != NULL);
    /* The periodic check drops expired blocks. */
    sl_guard_set_clock(fx->g, T0 + 8000);
    sl_guard_check(fx->g);
    sl_guard_stats_get(fx->g, &st);
    CHECK_EQ(st.blocked_addresses, 0);
    CHECK(sl_guard_refuse(fx->g, "127.0.0.1") == NULL);
    fx_free(fx);
}

SL_TEST(guard_state_bounded_under_flood) {
    fixture *fx = fx_new((const char *const[]){"sluice.guard.auth.failures.per.address", "3",
                                               "sluice.guard.block.seconds", "60", NULL});
    CHECK(fx && fx->g);
    sl_guard_set_clock(fx->g, T0);
    char peer[64], user[64], topic[64];
    /* Every address and every claimed user new: a spray from a large IPv6 prefix. */
    for (int i = 0; i < 3 * SL_GUARD_MAX_ADDRESSES; i++) {
        snprintf(peer, sizeof peer, "[2001:db8::%x]:1", i);
        snprintf(user, sizeof user, "u%d", i);
        auth(fx, T0 + i, false, peer, user);
    }
    /* Successes of ever new principals from ever new addresses, and reads of ever new topics. */
    for (int i = 0; i < 2 * SL_GUARD_MAX_PAIRS; i++) {
        snprintf(peer, sizeof peer, "10.%d.%d.%d:1", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        snprintf(user, sizeof user, "p%d", i); /* each one new: its first address */
        auth(fx, T0 + i, true, peer, user);
        snprintf(topic, sizeof topic, "t%d", i);
        sl_req_data d = {.topic = sl_str_c(topic)};
        request(fx, T0 + i, "User:reader", NULL, 0, &d, 1);
    }
    sl_guard_stats st;
    sl_guard_stats_get(fx->g, &st);
    CHECK(st.tracked <= SL_GUARD_MAX_ADDRESSES + 3 * SL_GUARD_MAX_PRINCIPALS +
                            2 * SL_GUARD_MAX_PAIRS + SL_GUARD_MAX_BLOCKED + SL_GUARD_MAX_CERTS);
    CHECK(st.evicted > 0);
    /* The tables are full, not more: addresses, users and the two pair tables. */
    CHECK(st.tracked >= SL_GUARD_MAX_ADDRESSES + SL_GUARD_MAX_PRINCIPALS + 2 * SL_GUARD_MAX_PAIRS);
    /* Nothing blocked: each address failed once. Then one address brute-forces through the
     * churn: it still raises (its own entry is the newest). */
    CHECK_EQ(st.blocked_addresses, 0);
    for (int i = 0; i < 3; i++) auth(fx, T0 + 100000 + i, false, "192.0.2.1:1", "z");
    CHECK(sl_guard_refuse(fx->g, "192.0.2.1") != NULL);
    /* Recent findings: a ring, newest first. */
    sl_guard_finding rec[SL_GUARD_RECENT + 8];
    int n = sl_guard_recent(fx->g, rec, SL_GUARD_RECENT + 8);
    CHECK_EQ(n, SL_GUARD_RECENT);
    CHECK(strcmp(rec[0].rule, "address_blocked") == 0);
    CHECK(strcmp(rec[1].rule, "auth_bruteforce_address") == 0);
    CHECK(strcmp(rec[1].subject, "192.0.2.1") == 0);
    CHECK(rec[0].time_ms >= rec[n - 1].time_ms);
    CHECK_EQ(sl_guard_recent(fx->g, rec, 1), 1);
    CHECK(strcmp(rec[0].rule, "address_blocked") == 0);
    fx_free(fx);
}

SL_TEST(guard_hostile_subjects_are_cut_and_logged_safely) {
    fixture *fx =
        fx_new((const char *const[]){"sluice.guard.auth.failures.per.principal", "1", NULL});
    CHECK(fx && fx->g);
    char user[2000];
    memset(user, 'A', sizeof user - 1);
    user[sizeof user - 1] = 0;
    user[3] = '"';
    user[4] = '\n';
    auth(fx, T0, false, "10.9.0.1:1", user);
    CHECK_EQ(count_rule(&fx->cap, "auth_bruteforce_principal"), 1);
    CHECK(strlen(last_rule(&fx->cap, "auth_bruteforce_principal")->subject) <= 127);
    sl_guard_finding rec[1];
    CHECK_EQ(sl_guard_recent(fx->g, rec, 1), 1);
    CHECK(strlen(rec[0].title) < sizeof rec[0].title);
    fx_free(fx);
}
