/* Group metadata records through the real groups log: a coordinator whose records go to an
 * sl_offstore is dropped and a new one is built from the log, with a fake clock, as after a
 * broker restart (kill -9 included: nothing here depends on a clean shutdown of the state
 * machine, only on what was appended). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/sl_time.h"
#include "group/sl_group.h"
#include "group/sl_offstore.h"
#include "keys_env.h"
#include "sl_test.h"
#include "storage/sl_cleaner.h"

#define S(x) sl_str_c(x)

typedef struct senv {
    int64_t now;
    sl_offstore *st;
    int records, tombstones;
    sl_keysvc *ks;         /* encryption at rest when set */
    int64_t segment_bytes; /* 0: the default */
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

/* With small segments, each record is its own batch (as one commit per request is in the
 * broker), so the records spread over many segments. */
static void s_persist(void *ctx, sl_str g, sl_str t, int32_t p, const sl_gc_offset *v) {
    senv *e = ctx;
    sl_offstore_add(e->st, g, t, p, v);
    if (e->segment_bytes) (void)sl_offstore_flush(e->st);
}

static void s_persist_group(void *ctx, sl_str g, const sl_gc_group_view *v) {
    senv *e = ctx;
    if (v)
        e->records++;
    else
        e->tombstones++;
    sl_offstore_add_group(e->st, g, v);
    if (e->segment_bytes) (void)sl_offstore_flush(e->st);
}

/* A coordinator loaded from the log under `dir`; its records go back to that log. */
static sl_gc *open_gc(senv *e, const char *dir) {
    sl_gc_env ge = {e, s_now, s_join, s_sync, s_persist, s_persist_group};
    sl_gc_config cfg = {6000, 1800000, 0, 7LL * 24 * 3600 * 1000, 600000};
    sl_gc *gc = sl_gc_new(&ge, &cfg);
    char err[256];
    if (gc &&
        sl_offstore_open_keys(dir, e->ks, e->segment_bytes, gc, &e->st, err, sizeof err) != SL_OK) {
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

/* One clean of the store's log by the log cleaner, as the compactor runs it (prepare on this
 * thread, run, commit), at wall time `now_ms`. */
static sl_err clean_store(senv *e, int64_t now_ms, sl_cleaner_result *res) {
    sl_cleaner_config cc;
    sl_cleaner_config_default(&cc);
    memset(res, 0, sizeof *res);
    res->bad_base = -1;
    sl_cleaner_job *j = NULL;
    sl_err err = sl_cleaner_prepare(sl_offstore_log(e->st), &cc, now_ms, &j);
    if (err || !j) return err ? err : SL_ENOTFOUND;
    return sl_cleaner_commit(j, sl_cleaner_run(j), res);
}

/* The log cleaner (no more hand compaction at open) reduces 41 generations and 1100 commits to
 * about their last records, and the replay restores the same group. */
SL_TEST(group_persist_compaction_keeps_the_latest_group_record) {
    char dir[64];
    CHECK(tmpdir(dir));
    senv e = {.now = 1000000, .segment_bytes = 4096};
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
    CHECK((gc = restart(&e, gc, dir))); /* replays everything; nothing is rewritten at open */
    int64_t replayed, live;
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK_EQ(replayed, 41 + 1100);
    CHECK_EQ(live, 2); /* one offset, one group record */
    CHECK((gc = restart(&e, gc, dir)));
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK_EQ(replayed, 41 + 1100);
    sl_cleaner_result res;
    CHECK_EQ(clean_store(&e, sl_wall_ms(), &res), SL_OK);
    CHECK(res.records_dropped > 1000);
    CHECK((gc = restart(&e, gc, dir)));
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK(replayed < 100); /* the last records of the closed segments, and the active segment */
    CHECK_EQ(live, 2);
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

/* ---- the log cleaner on the offsets log ---- */

/* The replayed state as sorted text: every group (state, generation, leader, members with their
 * assignments) and every committed offset. Two replays giving the same text restored the same
 * coordinator. */
typedef struct snap {
    char lines[64][512];
    int n;
    sl_gc *gc;
} snap;

static void snap_group(void *ctx, const sl_gc_group_view *g) {
    snap *sn = ctx;
    if (sn->n >= 64) return;
    char *l = sn->lines[sn->n++];
    int k = snprintf(l, 512, "G %.*s st=%d gen=%d leader=%.*s n=%d", (int)g->group_id.len,
                     g->group_id.p, (int)g->state, (int)g->generation,
                     (int)(g->leader.len > 0 ? g->leader.len : 0), g->leader.p ? g->leader.p : "",
                     (int)g->nmembers);
    for (int32_t i = 0; i < g->nmembers && k < 400; i++)
        k += snprintf(l + k, (size_t)(512 - k), " %.*s=%.*s", (int)g->members[i].member_id.len,
                      g->members[i].member_id.p, (int)g->members[i].assignment.len,
                      (const char *)g->members[i].assignment.p);
    sl_str t;
    int32_t part;
    sl_gc_offset o;
    for (int32_t i = 0; sn->n < 64 && sl_gc_offset_at(sn->gc, g->group_id, i, &t, &part, &o); i++)
        snprintf(sn->lines[sn->n++], 512, "O %.*s %.*s/%d off=%lld ep=%d meta=%.*s ms=%lld",
                 (int)g->group_id.len, g->group_id.p, (int)t.len, t.p, (int)part,
                 (long long)o.offset, (int)o.leader_epoch,
                 (int)(o.metadata.len > 0 ? o.metadata.len : 0), o.metadata.p ? o.metadata.p : "",
                 (long long)o.commit_ms);
}

static int line_cmp(const void *a, const void *b) { return strcmp(a, b); }

static void take_snap(sl_gc *gc, snap *sn) {
    memset(sn, 0, sizeof *sn);
    sn->gc = gc;
    sl_gc_list(gc, snap_group, sn);
    qsort(sn->lines, (size_t)sn->n, sizeof sn->lines[0], line_cmp);
}

static bool snap_eq(const snap *a, const snap *b) {
    if (a->n != b->n) {
        fprintf(stderr, "  snapshot: %d lines vs %d\n", a->n, b->n);
        return false;
    }
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->lines[i], b->lines[i])) {
            fprintf(stderr, "  snapshot: '%s' vs '%s'\n", a->lines[i], b->lines[i]);
            return false;
        }
    return true;
}

/* Bytes of the offsets log's segment files. */
static long long log_bytes(const char *dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, SL_OFFSTORE_DIR);
    DIR *d = opendir(p);
    if (!d) return -1;
    long long n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 4 || strcmp(de->d_name + l - 4, ".log")) continue;
        char f[600];
        snprintf(f, sizeof f, "%s/%s", p, de->d_name);
        struct stat st;
        if (stat(f, &st) == 0) n += st.st_size;
    }
    closedir(d);
    return n;
}

static int files_ending(const char *dir, const char *suffix) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, SL_OFFSTORE_DIR);
    DIR *d = opendir(p);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        if (l >= sl && !strcmp(de->d_name + l - sl, suffix)) n++;
    }
    closedir(d);
    return n;
}

/* Many commits over few keys, generations of group "g", a deleted offset and a deleted group:
 * every kind of record and both kinds of tombstone, over many small segments. */
static bool workload(sl_gc *gc, int commits) {
    char a[256], b[256];
    if (!two_stable(gc, a, b)) return false;
    for (int i = 0; i < 6; i++) {
        pcall ja, sa;
        if (sl_gc_leave(gc, S("g"), S(i % 2 ? a : b), SL_STR_NULL)) return false;
        const char *stay = i % 2 ? b : a;
        pjoin(gc, stay, NULL, &ja);
        if (!ja.done || ja.err) return false;
        sl_gc_assignment as = {S(stay), {(const uint8_t *)"SOLO", 4}};
        psync(gc, ja.gen, stay, NULL, &as, 1, &sa);
        if (!sa.done || sa.err) return false;
        pcall jn;
        pjoin(gc, "", NULL, &jn);
        char nm[256];
        snprintf(nm, sizeof nm, "%s", jn.member_id);
        pjoin(gc, nm, NULL, &jn);
        pjoin(gc, stay, NULL, &ja);
        pcall sn;
        psync(gc, jn.gen, nm, NULL, NULL, 0, &sn);
        sl_gc_assignment as2[2] = {{S(stay), {(const uint8_t *)"PA", 2}},
                                   {S(nm), {(const uint8_t *)"PB", 2}}};
        psync(gc, ja.gen, stay, NULL, as2, 2, &sa);
        if (!sa.done || sa.err || !sn.done) return false;
        snprintf(i % 2 ? a : b, 256, "%s", nm);
    }
    if (sl_gc_commit_check(gc, S("s"), -1, S(""), SL_STR_NULL)) return false;
    for (int i = 0; i < commits; i++)
        if (sl_gc_offset_commit(gc, S("s"), S("t"), i % 4, i, 3, S("m")) != SL_OK) return false;
    if (sl_gc_offset_delete(gc, S("s"), S("t"), 3)) return false; /* an offset tombstone */
    if (sl_gc_commit_check(gc, S("gone"), -1, S(""), SL_STR_NULL) ||
        sl_gc_offset_commit(gc, S("gone"), S("t"), 0, 5, -1, SL_STR_NULL) != SL_OK ||
        sl_gc_delete_group(gc, S("gone")))
        return false;
    /* More commits after the deletions, so that their tombstones are in closed segments (the
     * active one is never cleaned). */
    for (int i = 0; i < commits / 4; i++)
        if (sl_gc_offset_commit(gc, S("s"), S("t"), i % 3, commits + i, 3, S("m")) != SL_OK)
            return false;
    return true;
}

/* With and without encryption at rest (the offsets log is sealed under the system key): a clean
 * makes the log smaller and the replay gives the same state; a clean after delete retention
 * removes the tombstones and still gives the same state. */
static void clean_same_state(int *sl_failed_, bool encrypted) {
    char dir[64];
    CHECK(tmpdir(dir));
    sl_config *kc = NULL;
    senv e = {.now = 1000000, .segment_bytes = 4096};
    char kdir[96];
    snprintf(kdir, sizeof kdir, "%s/keys", dir);
    if (encrypted) {
        CHECK(mkdir(kdir, 0700) == 0);
        kc = sl_t_keys_cfg(kdir);
        char err[256] = "";
        CHECK(kc && sl_keysvc_open(kc, NULL, &e.ks, err, sizeof err) == SL_OK);
    }
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    CHECK(workload(gc, 3000));
    CHECK((gc = restart(&e, gc, dir)));
    snap before, after;
    take_snap(gc, &before);
    CHECK(before.n >= 5);
    int64_t replayed0, replayed, live;
    sl_offstore_stats(e.st, &replayed0, &live);
    long long bytes0 = log_bytes(dir);
    CHECK(bytes0 > 40000);
    sl_cleaner_result res;
    CHECK_EQ(clean_store(&e, sl_wall_ms(), &res), SL_OK);
    CHECK(res.records_dropped > 2500);
    CHECK_EQ(res.tombstones_dropped, 0); /* they stay for delete retention */
    CHECK((gc = restart(&e, gc, dir)));
    take_snap(gc, &after);
    CHECK(snap_eq(&before, &after));
    sl_offstore_stats(e.st, &replayed, &live);
    CHECK(replayed < replayed0 / 10);
    CHECK(log_bytes(dir) < bytes0 / 4);
    /* Delete retention (the broker default, a day) has passed: the tombstones go. */
    CHECK_EQ(clean_store(&e, sl_wall_ms() + 86400000LL + 60000, &res), SL_OK);
    CHECK(res.tombstones_dropped >= 2);
    CHECK((gc = restart(&e, gc, dir)));
    take_snap(gc, &after);
    CHECK(snap_eq(&before, &after));
    /* Appends go on after cleaning, and replay with them. */
    CHECK_EQ(sl_gc_commit_check(gc, S("s"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("s"), S("t"), 0, 123456, 3, S("m")), SL_OK);
    take_snap(gc, &before);
    CHECK((gc = restart(&e, gc, dir)));
    take_snap(gc, &after);
    CHECK(snap_eq(&before, &after));
    sl_offstore_close(e.st);
    sl_gc_free(gc);
    if (e.ks) sl_keysvc_close(e.ks);
    free(kc);
    sl_t_rm_rf(dir);
}

SL_TEST(group_persist_cleaner_shrinks_the_log_and_replay_is_unchanged) {
    clean_same_state(sl_failed_, false);
}

SL_TEST(group_persist_cleaner_encrypted_shrinks_the_log_and_replay_is_unchanged) {
    clean_same_state(sl_failed_, true);
}

/* A kill -9 after each durable step of a clean in turn (sl_cleaner__crash_after): the reopened
 * offsets log replays into the same state, with nothing of the clean left over; then a clean
 * completes. Encrypted, the default. */
SL_TEST(group_persist_cleaner_crash_at_every_step_keeps_the_state) {
    char dir[64];
    CHECK(tmpdir(dir));
    char kdir[96];
    snprintf(kdir, sizeof kdir, "%s/keys", dir);
    CHECK(mkdir(kdir, 0700) == 0);
    sl_config *kc = sl_t_keys_cfg(kdir);
    sl_keysvc *ks = NULL;
    char err[256] = "";
    CHECK(kc && sl_keysvc_open(kc, NULL, &ks, err, sizeof err) == SL_OK);
    bool finished = false;
    int stop;
    for (stop = 1; stop < 200 && !finished; stop++) {
        char sdir[128];
        snprintf(sdir, sizeof sdir, "%s/s%d", dir, stop);
        CHECK(mkdir(sdir, 0700) == 0);
        senv e = {.now = 1000000, .segment_bytes = 4096, .ks = ks};
        sl_gc *gc = open_gc(&e, sdir);
        CHECK(gc);
        CHECK(workload(gc, 120));
        CHECK((gc = restart(&e, gc, sdir)));
        snap before, after;
        take_snap(gc, &before);
        sl_cleaner_result res;
        sl_cleaner__crash_after = stop;
        sl_err ce = clean_store(&e, sl_wall_ms() + 86400000LL + 60000, &res);
        sl_cleaner__crash_after = 0;
        if (ce == SL_OK)
            finished = true;
        else
            CHECK_EQ(ce, SL_ESTATE);
        /* restart: the store closes, the files stay as the crash left them, the log reopens
         * (completing a decided swap or removing an undecided one) and replays */
        CHECK((gc = restart(&e, gc, sdir)));
        CHECK_EQ(files_ending(sdir, ".cleaned"), 0);
        CHECK_EQ(files_ending(sdir, "cleaner-swap"), 0);
        take_snap(gc, &after);
        CHECK(snap_eq(&before, &after));
        CHECK_EQ(clean_store(&e, sl_wall_ms(), &res), SL_OK);
        CHECK((gc = restart(&e, gc, sdir)));
        take_snap(gc, &after);
        CHECK(snap_eq(&before, &after));
        sl_offstore_close(e.st);
        sl_gc_free(gc);
    }
    CHECK(finished && stop > 8);
    sl_keysvc_close(ks);
    free(kc);
    sl_t_rm_rf(dir);
}

/* A broker upgrading with an interrupted hand compaction of the brokers before the cleaner on
 * disk: `.old` without the log (crash between the two renames) is the log; `.old` next to the
 * log (crash before `.old` was removed) is stale; `.compact` is always incomplete. */
SL_TEST(group_persist_recovers_an_interrupted_old_style_compaction) {
    char dir[64];
    CHECK(tmpdir(dir));
    char live[128], old[160], tmp[160], saved[160], cmd[600];
    snprintf(live, sizeof live, "%s/%s", dir, SL_OFFSTORE_DIR);
    snprintf(old, sizeof old, "%s.old", live);
    snprintf(tmp, sizeof tmp, "%s.compact", live);
    snprintf(saved, sizeof saved, "%s/saved", dir);
    senv e = {.now = 1000000};
    sl_gc *gc = open_gc(&e, dir);
    CHECK(gc);
    CHECK_EQ(sl_gc_commit_check(gc, S("s"), -1, S(""), SL_STR_NULL), 0);
    CHECK_EQ(sl_gc_offset_commit(gc, S("s"), S("t"), 0, 10, -1, SL_STR_NULL), SL_OK);
    CHECK((gc = restart(&e, gc, dir)));
    sl_offstore_close(e.st);
    e.st = NULL;
    snap a, b, got;
    take_snap(gc, &a);
    sl_gc_free(gc);
    /* Crash between the renames: only `.old` and a `.compact` (a copy, as good as any partial
     * one: it must not be taken). */
    snprintf(cmd, sizeof cmd, "cp -r %s %s && mv %s %s", live, tmp, live, old);
    CHECK(system(cmd) == 0);
    CHECK((gc = open_gc(&e, dir)));
    take_snap(gc, &got);
    CHECK(snap_eq(&a, &got));
    struct stat st;
    CHECK(stat(old, &st) != 0 && stat(tmp, &st) != 0 && stat(live, &st) == 0);
    /* A newer log in place and a stale `.old` (an older state) next to it. */
    sl_offstore_close(e.st);
    e.st = NULL;
    snprintf(cmd, sizeof cmd, "cp -r %s %s", live, saved);
    CHECK(system(cmd) == 0);
    sl_gc_free(gc);
    CHECK((gc = open_gc(&e, dir)));
    CHECK_EQ(sl_gc_offset_commit(gc, S("s"), S("t"), 0, 20, -1, SL_STR_NULL), SL_OK);
    CHECK((gc = restart(&e, gc, dir)));
    take_snap(gc, &b);
    CHECK(a.n == b.n && strcmp(a.lines[a.n - 1], b.lines[b.n - 1]) != 0); /* offset 10 -> 20 */
    sl_offstore_close(e.st);
    e.st = NULL;
    sl_gc_free(gc);
    CHECK(rename(saved, old) == 0);
    CHECK((gc = open_gc(&e, dir)));
    take_snap(gc, &got);
    CHECK(snap_eq(&b, &got));
    CHECK(stat(old, &st) != 0);
    close_all(&e, gc, dir);
}
