/* The group coordinator's state machine, driven through every transition with a fake clock:
 * no network, no timers, no sleeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group/sl_group.h"
#include "group/sl_offstore.h"
#include "sl_test.h"

/* ---- fake environment ---- */

typedef struct call {
    bool done;
    int16_t err;
    int32_t gen;
    char member_id[256], leader[256], pname[64], assign[64];
    int nmembers;
    bool skip;
} call;

typedef struct env {
    int64_t now;
    int persisted, tombstones;
    int group_records, group_tombstones;
    sl_group_state last_record_state;
    char last_topic[64];
    int64_t last_offset;
} env;

static int64_t fake_now(void *ctx) { return ((env *)ctx)->now; }

static void cp(char *dst, size_t cap, sl_str s) {
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, s.p, n);
    dst[n] = 0;
}

static void on_join(void *ctx, void *waiter, const sl_gc_join_result *r) {
    call *c = waiter;
    c->done = true;
    c->err = r->error;
    c->gen = r->generation;
    cp(c->member_id, sizeof c->member_id, r->member_id);
    cp(c->leader, sizeof c->leader, r->leader);
    cp(c->pname, sizeof c->pname, r->protocol_name);
    c->nmembers = r->nmembers;
    c->skip = r->skip_assignment;
}

static void on_sync(void *ctx, void *waiter, const sl_gc_sync_result *r) {
    call *c = waiter;
    c->done = true;
    c->err = r->error;
    cp(c->assign, sizeof c->assign, (sl_str){(const char *)r->assignment.p, r->assignment.len});
    cp(c->pname, sizeof c->pname, r->protocol_name);
}

static void on_persist(void *ctx, sl_str g, sl_str t, int32_t p, const sl_gc_offset *v) {
    env *e = ctx;
    if (v) {
        e->persisted++;
        e->last_offset = v->offset;
    } else {
        e->tombstones++;
    }
    cp(e->last_topic, sizeof e->last_topic, t);
}

static void on_persist_group(void *ctx, sl_str g, const sl_gc_group_view *v) {
    env *e = ctx;
    if (v) {
        e->group_records++;
        e->last_record_state = v->state;
    } else {
        e->group_tombstones++;
    }
}

static sl_gc *mk(env *e, int32_t delay) {
    memset(e, 0, sizeof *e);
    e->now = 1000000;
    sl_gc_env ge = {e, fake_now, on_join, on_sync, on_persist, on_persist_group};
    sl_gc_config cfg = {6000, 1800000, delay, 7LL * 24 * 3600 * 1000, 600000};
    return sl_gc_new(&ge, &cfg);
}

#define S(x) sl_str_c(x)
static const sl_gc_protocol k_range[] = {{{"range", 5}, {(const uint8_t *)"m", 1}}};

/* JoinGroup as a v5+ client sends it; member "" gets MEMBER_ID_REQUIRED when `known` is set. */
static void join(sl_gc *gc, const char *group, const char *member, const char *instance,
                 const sl_gc_protocol *ps, int n, call *c) {
    memset(c, 0, sizeof *c);
    sl_gc_join_req r = {.group_id = S(group),
                        .member_id = S(member),
                        .instance_id = instance ? S(instance) : SL_STR_NULL,
                        .client_id = S("cli"),
                        .client_host = S("/127.0.0.1"),
                        .protocol_type = S("consumer"),
                        .reason = SL_STR_NULL,
                        .session_timeout_ms = 10000,
                        .rebalance_timeout_ms = 30000,
                        .protocols = ps,
                        .nprotocols = n,
                        .require_known_member_id = true,
                        .supports_skip_assignment = true};
    sl_gc_join(gc, &r, c);
}

static void sync_(sl_gc *gc, const char *group, int32_t gen, const char *member,
                  const sl_gc_assignment *as, int n, call *c) {
    memset(c, 0, sizeof *c);
    sl_gc_sync(gc, S(group), gen, S(member), SL_STR_NULL, SL_STR_NULL, SL_STR_NULL, as, n, c);
}

typedef struct state_probe {
    sl_group_state state;
    int32_t nmembers, gen;
} state_probe;
static void probe_fn(void *ctx, const sl_gc_group_view *g) {
    state_probe *p = ctx;
    p->state = g->state;
    p->nmembers = g->nmembers;
    p->gen = g->generation;
}
static state_probe probe(sl_gc *gc, const char *group) {
    state_probe p = {SL_GS_DEAD, -1, -1};
    sl_gc_describe(gc, S(group), probe_fn, &p);
    return p;
}

/* One dynamic member through MEMBER_ID_REQUIRED, the initial delay and sync: Stable, gen 1. */
static bool one_member_stable(sl_gc *gc, env *e, const char *group, char *id_out) {
    call c, s;
    join(gc, group, "", NULL, k_range, 1, &c);
    if (!c.done || c.err != SL_KAFKA_MEMBER_ID_REQUIRED || !c.member_id[0]) return false;
    snprintf(id_out, 256, "%s", c.member_id);
    join(gc, group, id_out, NULL, k_range, 1, &c);
    sl_gc_tick(gc);
    e->now += 5000;
    sl_gc_tick(gc);
    if (!c.done || c.err || c.gen != 1 || strcmp(c.leader, id_out)) return false;
    sl_gc_assignment as = {S(id_out), {(const uint8_t *)"A0", 2}};
    sync_(gc, group, 1, id_out, &as, 1, &s);
    return s.done && !s.err && !strcmp(s.assign, "A0");
}

/* ---- tests ---- */

SL_TEST(group_join_initial_delay_then_completing_then_stable) {
    env e;
    sl_gc *gc = mk(&e, 3000);
    call c, s;
    join(gc, "g", "", NULL, k_range, 1, &c);
    CHECK(c.done);
    CHECK_EQ(c.err, SL_KAFKA_MEMBER_ID_REQUIRED);
    char id[256];
    snprintf(id, sizeof id, "%s", c.member_id);
    CHECK(strncmp(id, "cli-", 4) == 0);
    CHECK_EQ(probe(gc, "g").state, SL_GS_EMPTY);
    join(gc, "g", id, NULL, k_range, 1, &c);
    CHECK(!c.done); /* parked for the initial delay */
    CHECK_EQ(probe(gc, "g").state, SL_GS_PREPARING);
    CHECK_EQ(sl_gc_next_deadline(gc), e.now + 3000);
    e.now += 2999;
    sl_gc_tick(gc);
    CHECK(!c.done);
    e.now += 1;
    sl_gc_tick(gc);
    CHECK(c.done);
    CHECK_EQ(c.err, 0);
    CHECK_EQ(c.gen, 1);
    CHECK(!strcmp(c.leader, id));
    CHECK_EQ(c.nmembers, 1);
    CHECK(!strcmp(c.pname, "range"));
    CHECK_EQ(probe(gc, "g").state, SL_GS_COMPLETING);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(id), SL_STR_NULL), 0);
    sl_gc_assignment as = {S(id), {(const uint8_t *)"A0", 2}};
    sync_(gc, "g", 1, id, &as, 1, &s);
    CHECK(s.done);
    CHECK_EQ(s.err, 0);
    CHECK(!strcmp(s.assign, "A0"));
    CHECK_EQ(probe(gc, "g").state, SL_GS_STABLE);
    sl_gc_free(gc);
}

SL_TEST(group_initial_delay_extends_while_members_arrive) {
    env e;
    sl_gc *gc = mk(&e, 3000);
    call a, b;
    join(gc, "g", "", "ia", k_range, 1, &a); /* static: no MEMBER_ID_REQUIRED */
    CHECK(!a.done);
    e.now += 2000;
    join(gc, "g", "", "ib", k_range, 1, &b);
    e.now += 1000;
    sl_gc_tick(gc); /* a member arrived in the window: wait another delay */
    CHECK(!a.done && !b.done);
    e.now += 3000;
    sl_gc_tick(gc);
    CHECK(a.done && b.done);
    CHECK_EQ(a.gen, 1);
    CHECK_EQ(b.gen, 1);
    CHECK(!strcmp(a.leader, a.member_id));
    CHECK_EQ(a.nmembers, 2);
    CHECK_EQ(b.nmembers, 0);
    sl_gc_free(gc);
}

SL_TEST(group_member_join_during_stable_rebalances_and_followers_wait_for_leader) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    call jb, ja, sb, sa;
    join(gc, "g", "", NULL, k_range, 1, &jb);
    CHECK_EQ(jb.err, SL_KAFKA_MEMBER_ID_REQUIRED);
    char b[256];
    snprintf(b, sizeof b, "%s", jb.member_id);
    join(gc, "g", b, NULL, k_range, 1, &jb);
    CHECK(!jb.done);
    CHECK_EQ(probe(gc, "g").state, SL_GS_PREPARING);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), SL_KAFKA_REBALANCE_IN_PROGRESS);
    join(gc, "g", a, NULL, k_range, 1, &ja);
    CHECK(ja.done && jb.done); /* everyone rejoined: no need to wait for the timeout */
    CHECK_EQ(ja.gen, 2);
    CHECK_EQ(jb.gen, 2);
    CHECK(!strcmp(ja.leader, a));
    CHECK_EQ(ja.nmembers, 2);
    CHECK_EQ(jb.nmembers, 0);
    sync_(gc, "g", 2, b, NULL, 0, &sb);
    CHECK(!sb.done); /* follower waits for the leader */
    sl_gc_assignment as[2] = {{S(a), {(const uint8_t *)"PA", 2}},
                              {S(b), {(const uint8_t *)"PB", 2}}};
    sync_(gc, "g", 2, a, as, 2, &sa);
    CHECK(sa.done && sb.done);
    CHECK(!strcmp(sa.assign, "PA"));
    CHECK(!strcmp(sb.assign, "PB"));
    CHECK_EQ(probe(gc, "g").state, SL_GS_STABLE);
    CHECK_EQ(probe(gc, "g").nmembers, 2);
    sl_gc_free(gc);
}

SL_TEST(group_leave_triggers_rebalance_and_last_leave_empties) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    CHECK_EQ(sl_gc_leave(gc, S("g"), S("nobody"), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(a), SL_STR_NULL), 0);
    state_probe p = probe(gc, "g");
    CHECK_EQ(p.state, SL_GS_EMPTY); /* the join phase had nobody left to wait for */
    CHECK_EQ(p.nmembers, 0);
    CHECK_EQ(p.gen, 2);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    sl_gc_free(gc);
}

SL_TEST(group_session_expiry_removes_member_and_rebalances) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256], b[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    call jb, ja, sa, sb;
    join(gc, "g", "", NULL, k_range, 1, &jb);
    snprintf(b, sizeof b, "%s", jb.member_id);
    join(gc, "g", b, NULL, k_range, 1, &jb);
    join(gc, "g", a, NULL, k_range, 1, &ja);
    CHECK(ja.done && jb.done);
    sync_(gc, "g", 2, b, NULL, 0, &sb);
    sync_(gc, "g", 2, a, NULL, 0, &sa);
    CHECK(sa.done && sb.done);
    /* a keeps heartbeating, b goes silent */
    for (int i = 0; i < 4; i++) {
        e.now += 3000;
        CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 2, S(a), SL_STR_NULL), 0);
        sl_gc_tick(gc);
    }
    state_probe p = probe(gc, "g");
    CHECK_EQ(p.state, SL_GS_PREPARING);
    CHECK_EQ(p.nmembers, 1);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 2, S(b), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    join(gc, "g", a, NULL, k_range, 1, &ja);
    CHECK(ja.done);
    CHECK_EQ(ja.gen, 3);
    sl_gc_free(gc);
}

SL_TEST(group_rebalance_timeout_drops_members_that_do_not_rejoin) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256], b[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    call jb, ja, sa, sb;
    join(gc, "g", "", NULL, k_range, 1, &jb);
    snprintf(b, sizeof b, "%s", jb.member_id);
    join(gc, "g", b, NULL, k_range, 1, &jb);
    join(gc, "g", a, NULL, k_range, 1, &ja);
    sync_(gc, "g", 2, b, NULL, 0, &sb);
    sync_(gc, "g", 2, a, NULL, 0, &sa);
    /* The leader rejoins (a rebalance); b keeps heartbeating but never rejoins. */
    join(gc, "g", a, NULL, k_range, 1, &ja);
    CHECK(!ja.done);
    for (int i = 0; i < 9; i++) {
        e.now += 3000;
        CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 2, S(b), SL_STR_NULL), SL_KAFKA_REBALANCE_IN_PROGRESS);
        sl_gc_tick(gc);
        CHECK(!ja.done);
    }
    e.now += 3000; /* 30 s rebalance timeout */
    sl_gc_tick(gc);
    CHECK(ja.done);
    CHECK_EQ(ja.err, 0);
    CHECK_EQ(ja.gen, 3);
    CHECK_EQ(ja.nmembers, 1);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 3, S(b), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    sl_gc_free(gc);
}

SL_TEST(group_sync_timeout_removes_members_that_never_sync) {
    env e;
    sl_gc *gc = mk(&e, 0);
    call ja, sa;
    join(gc, "g", "", "i1", k_range, 1, &ja);
    CHECK(ja.done && !ja.err);
    /* The leader never sends SyncGroup but heartbeats: the rebalance timeout still ends it. */
    for (int i = 0; i < 10; i++) {
        e.now += 3000;
        sl_gc_heartbeat(gc, S("g"), 1, S(ja.member_id), S("i1"));
        sl_gc_tick(gc);
    }
    CHECK_EQ(probe(gc, "g").nmembers, 0);
    sync_(gc, "g", 1, ja.member_id, NULL, 0, &sa);
    CHECK_EQ(sa.err, SL_KAFKA_UNKNOWN_MEMBER_ID);
    sl_gc_free(gc);
}

SL_TEST(group_static_member_rejoin_keeps_generation_and_fences_old_id) {
    env e;
    sl_gc *gc = mk(&e, 0);
    call j1, s1, j2;
    join(gc, "g", "", "inst", k_range, 1, &j1);
    CHECK(j1.done && !j1.err);
    char old[256];
    snprintf(old, sizeof old, "%s", j1.member_id);
    sl_gc_assignment as = {S(old), {(const uint8_t *)"X", 1}};
    sync_(gc, "g", 1, old, &as, 1, &s1);
    CHECK(s1.done && !s1.err);
    /* restarted process: same instance id, no member id */
    join(gc, "g", "", "inst", k_range, 1, &j2);
    CHECK(j2.done);
    CHECK_EQ(j2.err, 0);
    CHECK_EQ(j2.gen, 1); /* no rebalance */
    CHECK(strcmp(j2.member_id, old) != 0);
    CHECK(!strcmp(j2.leader, j2.member_id));
    CHECK(j2.skip); /* the leader must not reassign */
    CHECK_EQ(probe(gc, "g").state, SL_GS_STABLE);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(old), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(j2.member_id), S("inst")), 0);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(old), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    call jo;
    join(gc, "g", old, "inst", k_range, 1, &jo);
    CHECK_EQ(jo.err, SL_KAFKA_FENCED_INSTANCE_ID);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(old), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    /* the new id still gets its assignment */
    call s2;
    sync_(gc, "g", 1, j2.member_id, NULL, 0, &s2);
    CHECK(s2.done && !s2.err && !strcmp(s2.assign, "X"));
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(j2.member_id), S("inst")), 0);
    CHECK_EQ(probe(gc, "g").nmembers, 0);
    sl_gc_free(gc);
}

SL_TEST(group_static_rejoin_fences_a_parked_join) {
    env e;
    sl_gc *gc = mk(&e, 3000);
    call j1, j2;
    join(gc, "g", "", "inst", k_range, 1, &j1);
    CHECK(!j1.done); /* initial delay */
    join(gc, "g", "", "inst", k_range, 1, &j2);
    CHECK(j1.done);
    CHECK_EQ(j1.err, SL_KAFKA_FENCED_INSTANCE_ID);
    CHECK(!j2.done);
    e.now += 3000;
    sl_gc_tick(gc);
    e.now += 3000;
    sl_gc_tick(gc);
    CHECK(j2.done && !j2.err);
    CHECK_EQ(j2.gen, 1);
    sl_gc_free(gc);
}

SL_TEST(group_generation_and_member_errors) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 7, S(a), SL_STR_NULL), SL_KAFKA_ILLEGAL_GENERATION);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S("x"), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    CHECK_EQ(sl_gc_heartbeat(gc, S("nogroup"), 1, S(a), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    CHECK_EQ(sl_gc_heartbeat(gc, S(""), 1, S(a), SL_STR_NULL), SL_KAFKA_INVALID_GROUP_ID);
    call s;
    sync_(gc, "g", 7, a, NULL, 0, &s);
    CHECK_EQ(s.err, SL_KAFKA_ILLEGAL_GENERATION);
    sync_(gc, "g", 1, "x", NULL, 0, &s);
    CHECK_EQ(s.err, SL_KAFKA_UNKNOWN_MEMBER_ID);
    sl_gc_sync(gc, S("g"), 1, S(a), SL_STR_NULL, S("consumer"), S("roundrobin"), NULL, 0, &s);
    CHECK_EQ(s.err, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 7, S(a), SL_STR_NULL), SL_KAFKA_ILLEGAL_GENERATION);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S("x"), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    /* a simple (non-member) commit into a group with members is refused */
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), -1, S(""), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, 42, -1, S("m")), SL_OK);
    CHECK_EQ(e.persisted, 1);
    CHECK_EQ(e.last_offset, 42);
    /* unknown groups: only simple commits may create one */
    CHECK_EQ(sl_gc_commit_check(gc, S("other"), 3, S("m"), SL_STR_NULL),
             SL_KAFKA_ILLEGAL_GENERATION);
    CHECK_EQ(sl_gc_commit_check(gc, S("other"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("other"), S("t"), 1, 5, -1, SL_STR_NULL), SL_OK);
    sl_gc_offset o;
    CHECK(sl_gc_offset_get(gc, S("other"), S("t"), 1, &o));
    CHECK_EQ(o.offset, 5);
    CHECK_EQ(o.metadata.len, -1);
    CHECK(!sl_gc_offset_get(gc, S("other"), S("t"), 0, &o));
    call j;
    join(gc, "g", "", NULL, k_range, 1, &j);
    sl_gc_join_req bad = {.group_id = S("g"),
                          .member_id = S(""),
                          .instance_id = SL_STR_NULL,
                          .protocol_type = S("consumer"),
                          .session_timeout_ms = 10,
                          .protocols = k_range,
                          .nprotocols = 1};
    memset(&j, 0, sizeof j);
    sl_gc_join(gc, &bad, &j);
    CHECK_EQ(j.err, SL_KAFKA_INVALID_SESSION_TIMEOUT);
    bad.session_timeout_ms = 10000;
    bad.group_id = S("");
    sl_gc_join(gc, &bad, &j);
    CHECK_EQ(j.err, SL_KAFKA_INVALID_GROUP_ID);
    sl_gc_free(gc);
}

SL_TEST(group_protocol_selection_and_inconsistency) {
    env e;
    sl_gc *gc = mk(&e, 0);
    sl_gc_protocol p1[] = {{S("range"), {NULL, 0}}, {S("roundrobin"), {NULL, 0}}};
    sl_gc_protocol p2[] = {{S("roundrobin"), {NULL, 0}}, {S("range"), {NULL, 0}}};
    sl_gc_protocol p3[] = {{S("roundrobin"), {NULL, 0}}, {S("sticky"), {NULL, 0}}};
    sl_gc_protocol p4[] = {{S("cooperative-sticky"), {NULL, 0}}};
    call a, b, c, d;
    join(gc, "g", "", "ia", p1, 2, &a);
    join(gc, "g", "", "ib", p2, 2, &b);
    join(gc, "g", "", "ic", p3, 2, &c);
    join(gc, "g", "", "id", p4, 1, &d);
    CHECK_EQ(d.err, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    CHECK(a.done); /* delay 0: a completed alone first */
    CHECK_EQ(probe(gc, "g").state, SL_GS_PREPARING);
    join(gc, "g", a.member_id, "ia", p1, 2, &a);
    CHECK(a.done && b.done && c.done);
    CHECK(!strcmp(a.pname, "roundrobin")); /* only roundrobin is common to all three */
    CHECK(!strcmp(b.pname, "roundrobin"));
    CHECK_EQ(a.gen, 2);
    /* another protocol type cannot join */
    sl_gc_join_req other = {.group_id = S("g"),
                            .member_id = S(""),
                            .instance_id = SL_STR_NULL,
                            .protocol_type = S("connect"),
                            .session_timeout_ms = 10000,
                            .protocols = p1,
                            .nprotocols = 2};
    sl_gc_join(gc, &other, &d);
    CHECK_EQ(d.err, SL_KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    sl_gc_free(gc);
}

SL_TEST(group_delete_group_and_offset_delete) {
    env e;
    sl_gc *gc = mk(&e, 0);
    char a[256];
    CHECK(one_member_stable(gc, &e, "g", a));
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, 1, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("u"), 0, 2, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_delete_group(gc, S("g")), SL_KAFKA_NON_EMPTY_GROUP);
    CHECK_EQ(sl_gc_delete_group(gc, S("nope")), SL_KAFKA_GROUP_ID_NOT_FOUND);
    CHECK_EQ(sl_gc_delete_group(gc, S("")), SL_KAFKA_INVALID_GROUP_ID);
    /* k_range metadata "m" is not a consumer subscription: the group cannot say what it
     * consumes, so OffsetDelete refuses while it has members. */
    CHECK_EQ(sl_gc_offset_delete_check(gc, S("g")), SL_KAFKA_NON_EMPTY_GROUP);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_delete_check(gc, S("g")), 0);
    CHECK_EQ(sl_gc_offset_delete(gc, S("g"), S("u"), 0), 0);
    CHECK_EQ(e.tombstones, 1);
    CHECK_EQ(sl_gc_offset_count(gc, S("g")), 1);
    CHECK_EQ(sl_gc_delete_group(gc, S("g")), 0);
    CHECK_EQ(e.tombstones, 2);
    CHECK_EQ(sl_gc_group_count(gc), 0);
    CHECK_EQ(sl_gc_offset_delete_check(gc, S("g")), SL_KAFKA_GROUP_ID_NOT_FOUND);
    sl_gc_free(gc);
}

SL_TEST(group_offset_delete_refuses_subscribed_topics) {
    env e;
    sl_gc *gc = mk(&e, 0);
    /* ConsumerProtocolSubscription v0: version, [topics] ("t"), user data (null) */
    static const uint8_t sub[] = {0, 0, 0, 0, 0, 1, 0, 1, 't', 0xff, 0xff, 0xff, 0xff};
    sl_gc_protocol p[] = {{S("range"), {sub, sizeof sub}}};
    call j, s;
    join(gc, "g", "", "i", p, 1, &j);
    sync_(gc, "g", 1, j.member_id, NULL, 0, &s);
    CHECK_EQ(probe(gc, "g").state, SL_GS_STABLE);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, 1, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("old"), 0, 1, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_offset_delete_check(gc, S("g")), 0);
    CHECK_EQ(sl_gc_offset_delete(gc, S("g"), S("t"), 0), SL_KAFKA_GROUP_SUBSCRIBED_TO_TOPIC);
    CHECK_EQ(sl_gc_offset_delete(gc, S("g"), S("old"), 0), 0);
    CHECK_EQ(sl_gc_offset_count(gc, S("g")), 1);
    sl_gc_free(gc);
}

SL_TEST(group_offsets_of_empty_groups_expire) {
    env e;
    sl_gc *gc = mk(&e, 0);
    CHECK_EQ(sl_gc_commit_check(gc, S("s"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("s"), S("t"), 0, 9, -1, SL_STR_NULL), SL_OK);
    int64_t week = 7LL * 24 * 3600 * 1000;
    e.now += week - 1;
    sl_gc_tick(gc);
    CHECK_EQ(sl_gc_offset_count(gc, S("s")), 1); /* not yet */
    e.now += 600000;                             /* next check */
    sl_gc_tick(gc);
    CHECK_EQ(sl_gc_offset_count(gc, S("s")), 0);
    CHECK_EQ(e.tombstones, 1);
    CHECK_EQ(sl_gc_group_count(gc), 0); /* nothing left: the group is gone */
    sl_gc_free(gc);
}

SL_TEST(group_abort_waiters_answers_parked_requests) {
    env e;
    sl_gc *gc = mk(&e, 3000);
    call j;
    join(gc, "g", "", "i", k_range, 1, &j);
    CHECK(!j.done);
    sl_gc_abort_waiters(gc, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    CHECK(j.done);
    CHECK_EQ(j.err, SL_KAFKA_COORDINATOR_NOT_AVAILABLE);
    sl_gc_free(gc);
}

/* ---- the offsets log ---- */

static int64_t real_now(void *ctx) { return 1700000000000LL; }
static void no_join(void *ctx, void *w, const sl_gc_join_result *r) {}
static void no_sync(void *ctx, void *w, const sl_gc_sync_result *r) {}
static void store_persist(void *ctx, sl_str g, sl_str t, int32_t p, const sl_gc_offset *v) {
    sl_offstore_add(ctx, g, t, p, v);
}

static void store_persist_group(void *ctx, sl_str g, const sl_gc_group_view *v) {
    sl_offstore_add_group(ctx, g, v);
}

static sl_gc *store_gc(sl_offstore **st) {
    sl_gc_env ge = {NULL, real_now, no_join, no_sync, store_persist, store_persist_group};
    sl_gc_config cfg = {6000, 1800000, 0, 7LL * 24 * 3600 * 1000, 600000};
    sl_gc *gc = sl_gc_new(&ge, &cfg);
    (void)st;
    return gc;
}

SL_TEST(group_offstore_replays_last_value_and_tombstones) {
    char dir[] = "/tmp/sl_groups_XXXXXX";
    CHECK(mkdtemp(dir));
    char err[256] = "";
    sl_offstore *st = NULL;
    sl_gc *gc = store_gc(&st);
    CHECK_EQ(sl_offstore_open(dir, gc, &st, err, sizeof err), SL_OK);
    sl_gc_free(gc);
    /* a gc whose persist goes to the store */
    sl_gc_env ge = {st, real_now, no_join, no_sync, store_persist, store_persist_group};
    sl_gc_config cfg = {6000, 1800000, 0, 7LL * 24 * 3600 * 1000, 600000};
    gc = sl_gc_new(&ge, &cfg);
    CHECK_EQ(sl_gc_commit_check(gc, S("g1"), -1, S(""), SL_STR_NULL), 0);
    for (int i = 0; i < 3000; i++) {
        CHECK_EQ(sl_gc_offset_commit(gc, S("g1"), S("t"), i % 3, i, 4, S("meta")), SL_OK);
        if (i % 100 == 99) CHECK_EQ(sl_offstore_flush(st), SL_OK);
    }
    CHECK_EQ(sl_gc_offset_delete(gc, S("g1"), S("t"), 2), 0);
    CHECK_EQ(sl_gc_commit_check(gc, S("g2"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g2"), S("u"), 0, 77, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g2"), S("gone"), 0, 1, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_offset_delete(gc, S("g2"), S("gone"), 0), 0);
    CHECK_EQ(sl_offstore_flush(st), SL_OK);
    sl_offstore_close(st);
    sl_gc_free(gc);

    gc = store_gc(&st);
    CHECK_EQ(sl_offstore_open(dir, gc, &st, err, sizeof err), SL_OK);
    int64_t replayed, live;
    sl_offstore_stats(st, &replayed, &live);
    CHECK_EQ(replayed, 3004); /* 3000 commits, 2 more, 2 tombstones */
    CHECK_EQ(live, 3);
    sl_gc_offset o;
    CHECK(sl_gc_offset_get(gc, S("g1"), S("t"), 0, &o));
    CHECK_EQ(o.offset, 2997);
    CHECK_EQ(o.leader_epoch, 4);
    CHECK(sl_str_eqc(o.metadata, "meta"));
    CHECK(sl_gc_offset_get(gc, S("g1"), S("t"), 1, &o));
    CHECK_EQ(o.offset, 2998);
    CHECK(!sl_gc_offset_get(gc, S("g1"), S("t"), 2, &o));
    CHECK(sl_gc_offset_get(gc, S("g2"), S("u"), 0, &o));
    CHECK_EQ(o.offset, 77);
    CHECK_EQ(o.metadata.len, -1);
    CHECK(!sl_gc_offset_get(gc, S("g2"), S("gone"), 0, &o));
    sl_offstore_close(st);
    sl_gc_free(gc);

    /* an open rewrites nothing (the log cleaner compacts this log; test_group_persist.c): the
     * next one replays the same records into the same state */
    gc = store_gc(&st);
    CHECK_EQ(sl_offstore_open(dir, gc, &st, err, sizeof err), SL_OK);
    sl_offstore_stats(st, &replayed, &live);
    CHECK_EQ(replayed, 3004);
    CHECK_EQ(live, 3);
    CHECK(sl_gc_offset_get(gc, S("g1"), S("t"), 1, &o));
    CHECK_EQ(o.offset, 2998);
    sl_offstore_close(st);
    sl_gc_free(gc);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}
