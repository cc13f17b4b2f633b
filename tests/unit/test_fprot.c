/* The broker's field protection stage (src/broker/sl_fprot.h) without a key service (keyless
 * rules): the produce transform applies the policy to the topics it names and leaves the others'
 * bytes alone; a policy file that does not parse keeps the previous policy in force and is
 * reported with its line (log, SL_EV_PROTECT "policy" failure); a start with such a file fails
 * naming the line; the control-socket commands manage grants (saved before "ok") and answer
 * what they cannot do. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "broker/sl_broker.h"
#include "broker/sl_fprot.h"
#include "ctl/sl_ctl.h"
#include "proto/sl_batch.h"
#include "proto/sl_records.h"
#include "proto/sl_xform.h"
#include "sl_test.h"

typedef struct rec_events {
    int policy_ok, policy_failed;
    char detail[512];
} rec_events;

static void on_event(void *ctx, const sl_event *e) {
    rec_events *r = ctx;
    if (e->kind != SL_EV_PROTECT || strcmp(e->protect.op, "policy")) return;
    if (e->protect.success) {
        r->policy_ok++;
    } else {
        r->policy_failed++;
        snprintf(r->detail, sizeof r->detail, "%s", e->protect.detail ? e->protect.detail : "");
    }
}

typedef struct env {
    char dir[64], policy[128];
    sl_broker *b;
    rec_events ev;
} env;

static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static bool env_open(env *e, const char *policy_text) {
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/sl_fprot_XXXXXX");
    if (!mkdtemp(e->dir)) return false;
    snprintf(e->policy, sizeof e->policy, "%s/policy", e->dir);
    if (!write_file(e->policy, policy_text)) return false;
    e->b = calloc(1, sizeof *e->b);
    if (!e->b) return false;
    char err[256];
    sl_config_defaults(&e->b->cfg);
    if (sl_config_set(&e->b->cfg, "log.dirs", e->dir, err, sizeof err) ||
        sl_config_set(&e->b->cfg, "sluice.secrets.dir", e->dir, err, sizeof err) ||
        sl_config_set(&e->b->cfg, "sluice.protect.policy.file", e->policy, err, sizeof err) ||
        sl_config_set(&e->b->cfg, "sluice.protect.reload.interval.ms", "0", err, sizeof err))
        return false;
    e->b->loop = sl_loop_new();
    return e->b->loop && sl_events_subscribe(&e->b->events, on_event, &e->ev);
}

static void env_close(env *e) {
    if (e->b) {
        if (e->b->loop) sl_loop_free(e->b->loop);
        free(e->b);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd)) {
    }
}

/* One batch with one record whose value is `value`. */
static sl_bytes one_batch(sl_arena *a, const char *value) {
    sl_rec_builder rb;
    sl_rec_builder_init(&rb, a, 64);
    sl_rec_in in = {.key = {NULL, -1}, .value = {(const uint8_t *)value, (int32_t)strlen(value)}};
    uint8_t *b = NULL;
    size_t len = 0;
    if (sl_rec_builder_add(&rb, &in) || sl_rec_builder_seal(&rb, 0, 1000, 1000, &b, &len))
        return (sl_bytes){NULL, 0};
    return (sl_bytes){b, (int32_t)len};
}

/* Produces `value` to `topic` through the chain; the stored value (NUL-terminated, in `a`) or
 * NULL on a Kafka error (*ec). */
static char g_why[256]; /* the last refusal's reason (sl_xform_ctx.why) */

static const char *produce(const sl_xform_chain *ch, sl_arena *a, const char *topic,
                           const char *value, int16_t *ec, bool *same) {
    sl_bytes set = one_batch(a, value);
    const uint8_t *before = set.p;
    g_why[0] = 0;
    sl_xform_ctx c = {.a = a,
                      .api_version = 9,
                      .max_bytes = 1 << 20,
                      .topic = sl_str_c(topic),
                      .partition = 0,
                      .why = g_why,
                      .whylen = sizeof g_why};
    *ec = sl_xform_produce(ch, &c, &set, NULL);
    *same = set.p == before;
    if (*ec) return NULL;
    sl_rec_iter it;
    sl_record r;
    if (sl_rec_iter_init(&it, set.p, (size_t)set.len, a, 1 << 20) || !sl_rec_iter_next(&it, &r) ||
        r.value.len < 0)
        return NULL;
    char *out = sl_arena_alloc(a, (size_t)r.value.len + 1);
    if (!out) return NULL;
    memcpy(out, r.value.p, (size_t)r.value.len);
    out[r.value.len] = 0;
    return out;
}

#define CARD "{\"card\":\"4111111111111111\",\"n\":1}"

SL_TEST(fprot_policy_reload_keeps_the_old_one_on_error) {
    env e;
    CHECK(env_open(&e, "version 1\ntopic orders\n  value.card mask keep-first=0 keep-last=4\n"));
    sl_fprot *f = NULL;
    char err[512] = "";
    CHECK_EQ(sl_fprot_open(e.b, NULL, &f, err, sizeof err), SL_OK);
    CHECK(f != NULL);
    CHECK_EQ(e.ev.policy_ok, 0); /* announced once the loop runs (the trail subscribes later) */
    sl_loop_run_once(e.b->loop, 10);
    CHECK_EQ(e.ev.policy_ok, 1);
    const sl_xform_chain *ch = sl_fprot_chain(f);
    CHECK(ch && ch->protect.fn && ch->unprotect.fn);
    sl_arena *a = sl_arena_new(1 << 16);
    int16_t ec;
    bool same;
    const char *v = produce(ch, a, "orders", CARD, &ec, &same);
    CHECK_EQ(ec, 0);
    CHECK(v && !strstr(v, "4111111111111111") && strstr(v, "1111\""));
    /* A topic the policy does not name: the very bytes the producer sent. */
    v = produce(ch, a, "misc", CARD, &ec, &same);
    CHECK(v && same && !strcmp(v, CARD));

    /* A broken file: the old policy stays, the error names the line. */
    CHECK(write_file(e.policy, "version 1\ntopic orders\n  value.card hash\n"));
    sl_fprot_reload(f, true);
    CHECK_EQ(e.ev.policy_failed, 1);
    CHECK(strstr(e.ev.detail, ":3:") != NULL);
    v = produce(ch, a, "orders", CARD, &ec, &same);
    CHECK(v && !strstr(v, "4111111111111111"));
    /* Unchanged file, no force: not reread (no new event). */
    sl_fprot_reload(f, false);
    CHECK_EQ(e.ev.policy_failed + e.ev.policy_ok, 2);

    /* A valid file naming another topic: swapped in on the next check. */
    CHECK(write_file(e.policy, "version 1\ntopic other*\n  value.card redact\n"));
    sl_fprot_reload(f, false);
    CHECK_EQ(e.ev.policy_ok, 2);
    v = produce(ch, a, "orders", CARD, &ec, &same);
    CHECK(v && same && !strcmp(v, CARD));
    v = produce(ch, a, "other-1", CARD, &ec, &same);
    CHECK(v && !strstr(v, "4111"));

    /* A value the rule cannot apply to: INVALID_RECORD, and the reason for the producer. */
    v = produce(ch, a, "other-1", "not json", &ec, &same);
    CHECK_EQ(ec, SL_KAFKA_INVALID_RECORD);
    CHECK(!strcmp(g_why, "value is not JSON")); /* never the data */

    sl_arena_free(a);
    sl_fprot_free(f);
    env_close(&e);
}

SL_TEST(fprot_start_fails_naming_the_policy_line) {
    env e;
    CHECK(env_open(&e, "version 1\ntopic orders\n  value.card mask\n  value.card redact\n"));
    sl_fprot *f = NULL;
    char err[512] = "";
    CHECK(sl_fprot_open(e.b, NULL, &f, err, sizeof err) != SL_OK);
    CHECK(f == NULL);
    CHECK(strstr(err, "sluice.protect.policy.file") && strstr(err, ":4:"));
    env_close(&e);
}

SL_TEST(fprot_off_without_a_policy_file) {
    env e;
    CHECK(env_open(&e, "version 1\n"));
    char err[256];
    CHECK_EQ(sl_config_set(&e.b->cfg, "sluice.protect.policy.file", "", err, sizeof err), SL_OK);
    sl_fprot *f = (sl_fprot *)1;
    CHECK_EQ(sl_fprot_open(e.b, NULL, &f, err, sizeof err), SL_OK);
    CHECK(f == NULL);
    CHECK(sl_fprot_chain(NULL) == NULL);
    sl_fprot_reload(NULL, true);
    sl_fprot_free(NULL);
    env_close(&e);
}

/* ---- the control-socket commands, over a real socket ---- */

typedef struct ctlfx {
    sl_fprot *f;
    sl_broker *b;
} ctlfx;

static void cx_request(void *ctx, sl_ctl_conn *c, const sl_ctl_req *req) {
    ctlfx *x = ctx;
    if (!sl_fprot_ctl(x->f, x->b, NULL, c, req)) sl_ctl_finish(c, false, "unknown command");
}

static void cx_gone(void *ctx, sl_ctl_conn *c) { sl_fprot_ctl_gone(((ctlfx *)ctx)->f, c); }

/* Sends one request line and runs the loop until the whole answer (final line, EOF) is in. */
static const char *ask(sl_loop *loop, const char *path, const char *line, char *buf, size_t cap) {
    buf[0] = 0;
    int fd = sl_ctl_connect(path);
    if (fd < 0) return buf;
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
        close(fd);
        return buf;
    }
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t got = 0;
    for (int i = 0; i < 500; i++) {
        sl_loop_run_once(loop, 10);
        ssize_t r;
        while ((r = recv(fd, buf + got, cap - 1 - got, 0)) > 0) got += (size_t)r;
        if (r == 0) break;
    }
    buf[got] = 0;
    close(fd);
    return buf;
}

static bool file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

SL_TEST(fprot_ctl_grants_and_refusals) {
    env e;
    CHECK(env_open(&e, "version 1\ntopic orders\n  value.card mask\n"));
    sl_fprot *f = NULL;
    char err[512] = "", path[160], grants[160], buf[8192];
    CHECK_EQ(sl_fprot_open(e.b, NULL, &f, err, sizeof err), SL_OK);
    snprintf(path, sizeof path, "%s/ctl.sock", e.dir);
    snprintf(grants, sizeof grants, "%s/sluice-protect-grants", e.dir);
    ctlfx x = {.f = f, .b = e.b};
    sl_ctl_handlers h = {.ctx = &x, .on_request = cx_request, .on_gone = cx_gone};
    sl_ctl *ctl = NULL;
    CHECK_EQ(sl_ctl_new(e.b->loop, path, &h, &ctl, err, sizeof err), SL_OK);

    CHECK(strstr(
        ask(e.b->loop, path, "protect-grant User:alice orders value.card reveal", buf, sizeof buf),
        "ok grant added"));
    CHECK(file_has(grants, "User:alice orders value.card reveal"));
    CHECK(strstr(
        ask(e.b->loop, path, "protect-grant User:alice orders value.card mask", buf, sizeof buf),
        "ok grant replaced"));
    ask(e.b->loop, path, "protect-list", buf, sizeof buf);
    CHECK(strstr(buf, "json [") && strstr(buf, "\"User:alice\"") && strstr(buf, "\"mask\""));
    CHECK(strstr(buf, "\nok "));
    CHECK(strstr(
        ask(e.b->loop, path, "protect-grant User:alice orders value.card peek", buf, sizeof buf),
        "error "));
    ask(e.b->loop, path, "protect-status", buf, sizeof buf);
    CHECK(strstr(buf, "json {\"policy\":") && strstr(buf, "\"topics\":1") &&
          strstr(buf, "\"grants\":1"));
    /* A save that fails (a directory where the file goes: rename refuses, root or not) puts the
     * set back as it was: the replaced view, no added grant, the revoked one kept. */
    char kept[200];
    snprintf(kept, sizeof kept, "%s.kept", grants);
    CHECK(rename(grants, kept) == 0 && mkdir(grants, 0700) == 0);
    CHECK(strstr(
        ask(e.b->loop, path, "protect-grant User:alice orders value.card reveal", buf, sizeof buf),
        "error grant not saved"));
    CHECK(strstr(ask(e.b->loop, path, "protect-grant User:bob orders * reveal", buf, sizeof buf),
                 "error grant not saved"));
    CHECK(
        strstr(ask(e.b->loop, path, "protect-revoke User:alice orders value.card", buf, sizeof buf),
               "error revocation not saved"));
    ask(e.b->loop, path, "protect-list", buf, sizeof buf);
    CHECK(strstr(buf, "\"User:alice\"") && strstr(buf, "\"mask\"") && !strstr(buf, "reveal") &&
          !strstr(buf, "User:bob"));
    CHECK(rmdir(grants) == 0 && rename(kept, grants) == 0);
    CHECK(
        strstr(ask(e.b->loop, path, "protect-revoke User:alice orders value.card", buf, sizeof buf),
               "ok grant revoked"));
    CHECK(!file_has(grants, "User:alice"));
    CHECK(
        strstr(ask(e.b->loop, path, "protect-revoke User:alice orders value.card", buf, sizeof buf),
               "error no such grant"));
    /* No key service: field keys cannot exist. */
    CHECK(strstr(ask(e.b->loop, path, "field-create pan", buf, sizeof buf),
                 "error encryption at rest is off"));
    CHECK(strstr(ask(e.b->loop, path, "forget-token nope", buf, sizeof buf), "error not a token"));
    CHECK(strstr(ask(e.b->loop, path, "forget 4142", buf, sizeof buf),
                 "error the policy names no subject"));
    CHECK(strstr(ask(e.b->loop, path, "forget 41x2 cust", buf, sizeof buf), "error "));
    /* Field protection off: its commands say so. */
    x.f = NULL;
    CHECK(strstr(ask(e.b->loop, path, "protect-list", buf, sizeof buf),
                 "error field protection is off"));
    sl_ctl_free(ctl);
    sl_fprot_free(f);
    env_close(&e);
}
