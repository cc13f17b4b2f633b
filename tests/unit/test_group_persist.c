/* Group metadata records through the real groups log: a coordinator whose records go to an
 * sl_offstore is dropped and a new one is built from the log, with a fake clock, as after a
 * broker restart (kill -9 included: nothing here depends on a clean shutdown of the state
 * machine, only on what was appended). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group/sl_group.h"
#include "group/sl_offstore.h"
#include "sl_test.h"

#define S(x) sl_str_c(x)

typedef struct senv {
    int64_t now;
    sl_offstore *st;
    int records, tombstones;
} senv;

typedef struct pcall {
    bool done;
    int16_t err;
    int32_t gen;
    char member_id[256], leader[256], assign[64];
    int records_at_answer; /* group records persisted when the answer went out */
} pcall;

static int64_t s_now(void *ctx) { return ((senv *)ctx)->now; }

static void s_cp(char *dst, size_t cap, const char *p, int32_t len) {
    size_t n = len > 0 ? (size_t)len : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, p, n);
    dst[n] = 0;
}

static void s_join(void *ctx, void *w, const sl_gc_join_result *r) {
    pcall *c = w;
    c->done = true;
    c->err = r->error;
    c->gen = r->generation;
    s_cp(c->member_id, sizeof c->member_id, r->member_id.p, r->member_id.len);
    s_cp(c->leader, sizeof c->leader, r->leader.p, r->leader.len);
    c->records_at_answer = ((senv *)ctx)->records;
}

static void s_sync(void *ctx, void *w, const sl_gc_sync_result *r) {
    pcall *c = w;
    c->done = true;
    c->err = r->error;
    s_cp(c->assign, sizeof c->assign, (const char *)r->assignment.p, r->assignment.len);
    c->records_at_answer = ((senv *)ctx)->records;
}

static void s_persist(void *ctx, sl_str g, sl_str t, int32_t p, const sl_gc_offset *v) {
    sl_offstore_add(((senv *)ctx)->st, g, t, p, v);
}

static void s_persist_group(void *ctx, sl_str g, const sl_gc_group_view *v) {
    senv *e = ctx;
    if (v)
        e->records++;
    else
        e->tombstones++;
    sl_offstore_add_group(e->st, g, v);
}

/* A coordinator loaded from the log under `dir`; its records go back to that log. */
static sl_gc *open_gc(senv *e, const char *dir) {
    sl_gc_env ge = {e, s_now, s_join, s_sync, s_persist, s_persist_group};
    sl_gc_config cfg = {6000, 1800000, 0, 7LL * 24 * 3600 * 1000, 600000};
    sl_gc *gc = sl_gc_new(&ge, &cfg);
    char err[256];
    if (gc && sl_offstore_open(dir, gc, &e->st, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  open: %s\n", err);
        sl_gc_free(gc);
        return NULL;
    }
    return gc;
}

/* Appends what is buffered and drops the coordinator without telling it anything: its waiters,
 * pending ids and unpersisted state are gone, as with kill -9. An hour passes. */
static sl_gc *restart(senv *e, sl_gc *gc, const char *dir) {
    if (sl_offstore_flush(e->st) != SL_OK) return NULL;
    sl_offstore_close(e->st);
    e->st = NULL;
    sl_gc_free(gc);
    e->now += 3600 * 1000;
    return open_gc(e, dir);
}

static void close_all(senv *e, sl_gc *gc, const char *dir) {
    sl_offstore_close(e->st);
    sl_gc_free(gc);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", dir);
}

static const sl_gc_protocol k_proto[] = {{{"range", 5}, {(const uint8_t *)"sub", 3}},
                                         {{"roundrobin", 10}, {(const uint8_t *)"rr", 2}}};

static void pjoin(sl_gc *gc, const char *member, const char *instance, pcall *c) {
    memset(c, 0, sizeof *c);
    sl_gc_join_req r = {.group_id = S("g"),
                        .member_id = S(member),
                        .instance_id = instance ? S(instance) : SL_STR_NULL,
                        .client_id = S("cli"),
                        .client_host = S("/10.0.0.1"),
                        .protocol_type = S("consumer"),
                        .reason = SL_STR_NULL,
                        .session_timeout_ms = 10000,
                        .rebalance_timeout_ms = 30000,
                        .protocols = k_proto,
                        .nprotocols = 2,
                        .require_known_member_id = true,
                        .supports_skip_assignment = true};
    sl_gc_join(gc, &r, c);
}

static void psync(sl_gc *gc, int32_t gen, const char *member, const char *instance,
                  const sl_gc_assignment *as, int n, pcall *c) {
    memset(c, 0, sizeof *c);
    sl_gc_sync(gc, S("g"), gen, S(member), instance ? S(instance) : SL_STR_NULL, SL_STR_NULL,
               SL_STR_NULL, as, n, c);
}

/* Two dynamic members a (leader) and b, Stable in generation 1 with assignments "PA"/"PB". */
static bool two_stable(sl_gc *gc, char *a, char *b) {
    pcall ja, jb, sa, sb;
    pjoin(gc, "", NULL, &ja);
    pjoin(gc, "", NULL, &jb);
    if (ja.err != SL_KAFKA_MEMBER_ID_REQUIRED || jb.err != SL_KAFKA_MEMBER_ID_REQUIRED)
        return false;
    snprintf(a, 256, "%s", ja.member_id);
    snprintf(b, 256, "%s", jb.member_id);
    pjoin(gc, a, NULL, &ja);
    pjoin(gc, b, NULL, &jb);
    if (!ja.done || !jb.done || ja.gen != 1 || strcmp(ja.leader, a)) return false;
    psync(gc, 1, b, NULL, NULL, 0, &sb);
    sl_gc_assignment as[2] = {{S(a), {(const uint8_t *)"PA", 2}},
                              {S(b), {(const uint8_t *)"PB", 2}}};
    psync(gc, 1, a, NULL, as, 2, &sa);
    return sa.done && sb.done && !sa.err && !sb.err && !strcmp(sb.assign, "PB");
}

typedef struct gprobe {
    sl_group_state state;
    int32_t gen, n;
    char leader[256], pname[32], ids[4][256], assign[4][16], host[4][32];
    int32_t session[4], nprotos[4];
} gprobe;

static void gprobe_fn(void *ctx, const sl_gc_group_view *g) {
    gprobe *p = ctx;
    p->state = g->state;
    p->gen = g->generation;
    p->n = g->nmembers;
    s_cp(p->leader, sizeof p->leader, g->leader.p, g->leader.len);
    s_cp(p->pname, sizeof p->pname, g->protocol_name.p, g->protocol_name.len);
    for (int32_t i = 0; i < g->nmembers && i < 4; i++) {
        const sl_gc_member_view *m = &g->members[i];
        s_cp(p->ids[i], sizeof p->ids[i], m->member_id.p, m->member_id.len);
        s_cp(p->assign[i], sizeof p->assign[i], (const char *)m->assignment.p, m->assignment.len);
        s_cp(p->host[i], sizeof p->host[i], m->client_host.p, m->client_host.len);
    }
}

static gprobe gdescribe(sl_gc *gc) {
    gprobe p;
    memset(&p, 0, sizeof p);
    p.state = SL_GS_DEAD;
    sl_gc_describe(gc, S("g"), gprobe_fn, &p);
    return p;
}

/* Index of member `id` in the probe, -1 if absent. */
static int pidx(const gprobe *p, const char *id) {
    for (int i = 0; i < p->n && i < 4; i++)
        if (!strcmp(p->ids[i], id)) return i;
    return -1;
}

static char *tmpdir(char *buf) {
    strcpy(buf, "/tmp/sl_gpersist_XXXXXX");
    return mkdtemp(buf);
}

SL_TEST(group_persist_stable_group_restored_and_members_keep_heartbeating) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    CHECK_EQ(e.records, 1); /* one record per completed generation */
    for (int i = 0; i < 5; i++) CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    CHECK_EQ(e.records, 1); /* none per heartbeat */

    CHECK((gc = restart(&e, gc, dir)));
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_STABLE);
    CHECK_EQ(p.gen, 1);
    CHECK_EQ(p.n, 2);
    CHECK(!strcmp(p.leader, a));
    CHECK(!strcmp(p.pname, "range"));
    CHECK(pidx(&p, a) >= 0 && pidx(&p, b) >= 0);
    CHECK(!strcmp(p.assign[pidx(&p, a)], "PA"));
    CHECK(!strcmp(p.assign[pidx(&p, b)], "PB"));
    CHECK(!strcmp(p.host[pidx(&p, b)], "/10.0.0.1"));
    CHECK_EQ(sl_gc_group_count(gc), 1);

    /* the old ids and generation are accepted: no UNKNOWN_MEMBER_ID, no rebalance */
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(b), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(b), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 0, S(a), SL_STR_NULL), SL_KAFKA_ILLEGAL_GENERATION);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S("ghost"), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    pcall s;
    psync(gc, 1, b, NULL, NULL, 0, &s);
    CHECK(s.done && !s.err && !strcmp(s.assign, "PB"));
    /* a follower rejoining with the same protocols gets the restored generation back, which
     * needs every protocol it offered to have survived, not only the selected one */
    pcall j;
    pjoin(gc, b, NULL, &j);
    CHECK(j.done && !j.err);
    CHECK_EQ(j.gen, 1);
    CHECK_EQ(gdescribe(gc).state, SL_GS_STABLE);
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_restored_member_that_never_returns_expires_and_group_rebalances) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    CHECK((gc = restart(&e, gc, dir)));
    int64_t loaded = e.now;
    /* sessions restart at load time, whatever the time of the members' last heartbeat */
    CHECK_EQ(sl_gc_next_deadline(gc), loaded + 10000);
    sl_gc_tick(gc);
    CHECK_EQ(gdescribe(gc).n, 2);
    e.now = loaded + 9000;
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    e.now = loaded + 10000;
    sl_gc_tick(gc);
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_PREPARING); /* b is gone: rebalance */
    CHECK_EQ(p.n, 1);
    CHECK(!strcmp(p.ids[0], a));
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), SL_KAFKA_REBALANCE_IN_PROGRESS);
    pcall j, s;
    pjoin(gc, a, NULL, &j);
    CHECK(j.done && !j.err);
    CHECK_EQ(j.gen, 2);
    sl_gc_assignment as = {S(a), {(const uint8_t *)"ALL", 3}};
    psync(gc, 2, a, NULL, &as, 1, &s);
    CHECK(s.done && !s.err);
    CHECK(s.records_at_answer == e.records && e.records >= 1); /* record before the answer */
    /* and that generation is the one a second restart brings back */
    CHECK((gc = restart(&e, gc, dir)));
    p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_STABLE);
    CHECK_EQ(p.gen, 2);
    CHECK_EQ(p.n, 1);
    CHECK(!strcmp(p.assign[0], "ALL"));
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_mid_rebalance_restores_last_completed_generation) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    /* b leaves, a rejoins: generation 2 is in CompletingRebalance when the broker dies */
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(b), SL_STR_NULL), 0);
    pcall j;
    pjoin(gc, a, NULL, &j);
    CHECK(j.done && j.gen == 2);
    CHECK_EQ(gdescribe(gc).state, SL_GS_COMPLETING);
    CHECK((gc = restart(&e, gc, dir)));
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_STABLE);
    CHECK_EQ(p.gen, 1);
    CHECK_EQ(p.n, 2);
    /* a, already in generation 2, is told to rejoin; it gets generation 1 back */
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 2, S(a), SL_STR_NULL), SL_KAFKA_ILLEGAL_GENERATION);
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_empty_group_restored_empty_with_its_offsets) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, 42, 3, S("m")), SL_OK);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(a), SL_STR_NULL), 0);
    int before = e.records;
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(b), SL_STR_NULL), 0);
    CHECK_EQ(gdescribe(gc).state, SL_GS_EMPTY);
    CHECK_EQ(e.records, before + 1); /* the Empty record */
    int32_t gen = gdescribe(gc).gen;
    CHECK((gc = restart(&e, gc, dir)));
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_EMPTY);
    CHECK_EQ(p.gen, gen);
    CHECK_EQ(p.n, 0);
    sl_gc_offset o;
    CHECK(sl_gc_offset_get(gc, S("g"), S("t"), 0, &o));
    CHECK_EQ(o.offset, 42);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(a), SL_STR_NULL), SL_KAFKA_UNKNOWN_MEMBER_ID);
    /* members come back through a normal join, into the next generation */
    pcall j1, j2;
    pjoin(gc, "", NULL, &j1);
    pjoin(gc, j1.member_id, NULL, &j2);
    CHECK(j2.done && !j2.err);
    CHECK_EQ(j2.gen, gen + 1);
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_deleted_group_stays_deleted) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, 7, -1, SL_STR_NULL), SL_OK);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(a), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_leave(gc, S("g"), S(b), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_delete_group(gc, S("g")), 0);
    CHECK_EQ(e.tombstones, 1);
    CHECK((gc = restart(&e, gc, dir)));
    CHECK_EQ(gdescribe(gc).state, SL_GS_DEAD);
    CHECK_EQ(sl_gc_group_count(gc), 0);
    sl_gc_offset o;
    CHECK(!sl_gc_offset_get(gc, S("g"), S("t"), 0, &o));
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_static_member_keeps_its_instance_and_fencing) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    pcall j1, s1, j2;
    pjoin(gc, "", "inst", &j1);
    CHECK(j1.done && !j1.err);
    char old[256];
    snprintf(old, sizeof old, "%s", j1.member_id);
    sl_gc_assignment as = {S(old), {(const uint8_t *)"X", 1}};
    psync(gc, 1, old, "inst", &as, 1, &s1);
    CHECK(s1.done && !s1.err);
    /* the process restarts: new id for the instance, same generation, and a record for it
     * before the answer */
    pjoin(gc, "", "inst", &j2);
    CHECK(j2.done && !j2.err && j2.gen == 1);
    CHECK_EQ(e.records, 2);
    CHECK_EQ(j2.records_at_answer, 2);
    char cur[256];
    snprintf(cur, sizeof cur, "%s", j2.member_id);
    CHECK((gc = restart(&e, gc, dir)));
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_STABLE);
    CHECK_EQ(p.n, 1);
    CHECK(!strcmp(p.ids[0], cur));
    CHECK(!strcmp(p.leader, cur));
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(cur), S("inst")), 0);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(old), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 1, S(old), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    /* rejoining by instance id after the restart replaces the id again without a rebalance */
    pcall j3;
    pjoin(gc, "", "inst", &j3);
    CHECK(j3.done && !j3.err && j3.gen == 1);
    CHECK(strcmp(j3.member_id, cur) != 0);
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 1, S(cur), S("inst")), SL_KAFKA_FENCED_INSTANCE_ID);
    close_all(&e, gc, dir);
}

SL_TEST(group_persist_compaction_keeps_the_latest_group_record) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    char a[256], b[256];
    CHECK(two_stable(gc, a, b));
    /* generations 2..41: b leaves and comes back, each time a new record */
    for (int i = 0; i < 40; i++) {
        pcall ja, jb, sa, sb;
        if (i % 2 == 0) {
            CHECK_EQ(sl_gc_leave(gc, S("g"), S(b), SL_STR_NULL), 0);
            pjoin(gc, a, NULL, &ja);
            CHECK(ja.done && !ja.err);
            sl_gc_assignment as = {S(a), {(const uint8_t *)"SOLO", 4}};
            psync(gc, ja.gen, a, NULL, &as, 1, &sa);
        } else {
            pjoin(gc, "", NULL, &jb);
            snprintf(b, sizeof b, "%s", jb.member_id);
            pjoin(gc, b, NULL, &jb);
            pjoin(gc, a, NULL, &ja);
            CHECK(ja.done && jb.done && !ja.err);
            psync(gc, jb.gen, b, NULL, NULL, 0, &sb);
            sl_gc_assignment as[2] = {{S(a), {(const uint8_t *)"PA", 2}},
                                      {S(b), {(const uint8_t *)"PB", 2}}};
            psync(gc, ja.gen, a, NULL, as, 2, &sa);
            CHECK(sb.done && !sb.err);
        }
        CHECK(sa.done && !sa.err);
    }
    CHECK_EQ(gdescribe(gc).gen, 41);
    CHECK_EQ(sl_gc_commit_check(gc, S("g"), 41, S(a), SL_STR_NULL), 0);
    for (int i = 0; i < 1100; i++)
        CHECK_EQ(sl_gc_offset_commit(gc, S("g"), S("t"), 0, i, -1, SL_STR_NULL), SL_OK);
    CHECK((gc = restart(&e, gc, dir))); /* replays everything, then compacts */
    int64_t replayed, live;
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK_EQ(replayed, 41 + 1100);
    CHECK_EQ(live, 2); /* one offset, one group record */
    CHECK((gc = restart(&e, gc, dir)));
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK_EQ(replayed, 2);
    gprobe p = gdescribe(gc);
    CHECK_EQ(p.state, SL_GS_STABLE);
    CHECK_EQ(p.gen, 41);
    CHECK_EQ(p.n, 2);
    CHECK(pidx(&p, b) >= 0);
    CHECK(!strcmp(p.assign[pidx(&p, b)], "PB"));
    CHECK_EQ(sl_gc_heartbeat(gc, S("g"), 41, S(b), SL_STR_NULL), 0);
    sl_gc_offset o;
    CHECK(sl_gc_offset_get(gc, S("g"), S("t"), 0, &o));
    CHECK_EQ(o.offset, 1099);
    close_all(&e, gc, dir);
}

/* Committed metadata is bytes: a NUL inside it survives the coordinator and a restart (it was
 * kept as a C string and came back cut at the NUL). */
SL_TEST(group_persist_offset_metadata_with_nul_round_trips) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    static const char meta[] = "Hello\0world!";
    sl_str m = {meta, (int32_t)sizeof meta - 1};
    CHECK_EQ(sl_gc_commit_check(gc, S("solo"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("solo"), S("t"), 0, 7, -1, m), SL_OK);
    sl_gc_offset o;
    CHECK(sl_gc_offset_get(gc, S("solo"), S("t"), 0, &o));
    CHECK_EQ(o.metadata.len, 12);
    CHECK(!memcmp(o.metadata.p, meta, 12));
    CHECK((gc = restart(&e, gc, dir)));
    CHECK(sl_gc_offset_get(gc, S("solo"), S("t"), 0, &o));
    CHECK_EQ(o.offset, 7);
    CHECK_EQ(o.metadata.len, 12);
    CHECK(!memcmp(o.metadata.p, meta, 12));
    close_all(&e, gc, dir);
}
