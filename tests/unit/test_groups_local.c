/* The local group coordination behind the seam (pipeline/sl_backend.h), driven through the
 * interface alone: a one-member group joins and syncs (the sync that completes a generation is
 * answered only after its group record is durable), commits complete after the offsets log is
 * fsynced (at once when nothing was stored), and the listings, leave, offset and group deletion
 * answer as the handlers expect. */
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "local_broker.h"
#include "sl_test.h"

/* A broker with what the coordinator uses: the loop (its timer), the flusher, the registry. */
typedef struct fixture {
    char dir[64];
    sl_broker b;
    sl_groups g;
    sl_arena *a;
} fixture;

static bool fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    if (!local_broker_open(f->dir, "sl_grlocal", &f->b, 2)) return false;
    f->b.cfg.group_initial_rebalance_delay_ms = 0;
    char err[256];
    if (!(f->b.loop = sl_loop_new())) return false;
    if (sl_flusher_new(&f->b.flusher)) return false;
    if (!(f->b.groups = sl_group_coord_new(&f->b, err, sizeof err))) return false;
    f->g = sl_groups_local(&f->b);
    f->a = sl_arena_new(4096);
    return f->a != NULL;
}

static void fixture_close(fixture *f) {
    if (f->b.flusher) sl_flusher_free(f->b.flusher); /* runs what is still queued */
    if (f->b.groups) sl_group_coord_free(f->b.groups);
    if (f->b.loop) sl_loop_free(f->b.loop);
    sl_arena_free(f->a);
    local_broker_close(f->dir, &f->b);
}

/* Runs loop timers and flusher completions until `*done` or a 5 s deadline. */
static void await(fixture *f, const int *done) {
    int64_t deadline = sl_mono_ms() + 5000;
    while (!*done && sl_mono_ms() < deadline) {
        sl_loop_run_once(f->b.loop, 0);
        struct pollfd pfd = {.fd = sl_flusher_fd(f->b.flusher), .events = POLLIN};
        if (poll(&pfd, 1, 20) > 0) sl_flusher_dispatch(f->b.flusher);
    }
}

typedef struct joined {
    int calls;
    int16_t error;
    int32_t generation, nmembers;
    char member_id[128];
} joined;

static void on_join(void *ctx, const sl_group_join_result *r) {
    joined *j = ctx;
    j->calls++;
    j->error = r->error;
    j->generation = r->generation;
    j->nmembers = r->nmembers;
    snprintf(j->member_id, sizeof j->member_id, "%.*s", r->member_id.len > 0 ? r->member_id.len : 0,
             r->member_id.p);
}

typedef struct synced {
    int calls;
    int16_t error;
    char assignment[16];
} synced;

static void on_sync(void *ctx, const sl_group_sync_result *r) {
    synced *s = ctx;
    s->calls++;
    s->error = r->error;
    snprintf(s->assignment, sizeof s->assignment, "%.*s", (int)r->assignment.len,
             (const char *)r->assignment.p);
}

typedef struct done_seen {
    int calls;
    int16_t err;
} done_seen;

static void on_done(void *ctx, int16_t err) {
    done_seen *d = ctx;
    d->calls++;
    d->err = err;
}

static void count_group(void *arg, const sl_group_summary *s) {
    if (!strcmp(s->state, "Stable")) ++*(int *)arg;
}

static void describe_seen(void *arg, const sl_group_description *d) {
    *(int32_t *)arg = d->nmembers;
}

static void count_committed(void *arg, sl_str topic, int32_t partition,
                            const sl_group_committed *c) {
    ++*(int *)arg;
}

/* Joins and syncs one member into group "g"; its member id into `member`. */
static bool form_group(fixture *f, char *member, size_t len) {
    sl_group_protocol proto = {sl_str_c("range"), {(const uint8_t *)"m", 1}};
    sl_group_join_args ja = {.group_id = sl_str_c("g"),
                             .member_id = sl_str_c(""),
                             .instance_id = SL_STR_NULL,
                             .client_id = sl_str_c("c"),
                             .client_host = sl_str_c("/127.0.0.1"),
                             .protocol_type = sl_str_c("consumer"),
                             .reason = SL_STR_NULL,
                             .session_timeout_ms = 10000,
                             .rebalance_timeout_ms = 10000,
                             .protocols = &proto,
                             .nprotocols = 1};
    joined j = {0};
    if (sl_groups_join(&f->g, &ja, f->a, on_join, &j)) return false;
    await(f, &j.calls);
    if (j.calls != 1 || j.error || j.nmembers != 1) return false;
    snprintf(member, len, "%s", j.member_id);
    sl_group_assignment as = {sl_str_c(member), {(const uint8_t *)"p0", 2}};
    sl_group_sync_args sa = {.group_id = sl_str_c("g"),
                             .member_id = sl_str_c(member),
                             .instance_id = SL_STR_NULL,
                             .generation = j.generation,
                             .protocol_type = SL_STR_NULL,
                             .protocol_name = SL_STR_NULL,
                             .assignments = &as,
                             .nassignments = 1};
    synced s = {0};
    if (sl_groups_sync(&f->g, &sa, f->a, on_sync, &s)) return false;
    /* The generation's record is not durable yet: the answer waits for the fsync. */
    if (s.calls != 0) return false;
    await(f, &s.calls);
    return s.calls == 1 && s.error == 0 && !strcmp(s.assignment, "p0");
}

SL_TEST(groups_local_join_sync_commit_fetch) {
    fixture f;
    CHECK(fixture_open(&f));
    char member[128];
    CHECK(form_group(&f, member, sizeof member));
    CHECK_EQ(sl_groups_heartbeat(&f.g, sl_str_c("g"), 1, sl_str_c(member), SL_STR_NULL), 0);
    int stable = 0;
    sl_groups_list(&f.g, count_group, &stable);
    CHECK_EQ(stable, 1);
    int32_t nm = -1;
    CHECK(sl_groups_describe(&f.g, sl_str_c("g"), describe_seen, &nm));
    CHECK_EQ(nm, 1);
    CHECK(!sl_groups_describe(&f.g, sl_str_c("nope"), describe_seen, &nm));
    CHECK_EQ(sl_groups_check_group(&f.g, sl_str_c("")), SL_KAFKA_INVALID_GROUP_ID);

    CHECK_EQ(sl_groups_commit_check(&f.g, sl_str_c("g"), 1, sl_str_c(member), SL_STR_NULL), 0);
    char big[5000];
    memset(big, 'x', sizeof big);
    sl_group_offset o[] = {
        {sl_str_c("t"), 1, 42, 0, sl_str_c("meta"), 0},
        {sl_str_c("t"), 9, 1, -1, SL_STR_NULL, 0},
        {sl_str_c("t"), 0, 1, -1, (sl_str){big, (int32_t)sizeof big}, 0},
        {sl_str_c("t"), 0, 7, -1, SL_STR_NULL, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED},
    };
    done_seen d = {0};
    CHECK_EQ(sl_groups_commit(&f.g, sl_str_c("g"), o, 4, f.a, on_done, &d), 0);
    CHECK_EQ(d.calls, 0); /* stored: waits for the fsync */
    await(&f, &d.calls);
    CHECK_EQ(d.calls, 1);
    CHECK_EQ(d.err, 0);
    CHECK_EQ(o[0].error, 0);
    CHECK_EQ(o[1].error, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(o[2].error, SL_KAFKA_OFFSET_METADATA_TOO_LARGE);
    CHECK_EQ(o[3].error, SL_KAFKA_TOPIC_AUTHORIZATION_FAILED); /* left alone */
    sl_group_committed c;
    sl_groups_committed(&f.g, sl_str_c("g"), sl_str_c("t"), 1, &c);
    CHECK_EQ(c.offset, 42);
    CHECK(sl_str_eq(c.metadata, sl_str_c("meta")));
    sl_groups_committed(&f.g, sl_str_c("g"), sl_str_c("t"), 0, &c);
    CHECK_EQ(c.offset, -1);
    int n = 0;
    sl_groups_each_committed(&f.g, sl_str_c("g"), count_committed, &n);
    CHECK_EQ(n, 1);

    /* Nothing stored: answered at once. */
    sl_group_offset none[] = {{sl_str_c("nope"), 0, 1, -1, SL_STR_NULL, 0}};
    d = (done_seen){0};
    CHECK_EQ(sl_groups_commit(&f.g, sl_str_c("g"), none, 1, f.a, on_done, &d), 0);
    CHECK_EQ(d.calls, 1);
    CHECK_EQ(none[0].error, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    fixture_close(&f);
}

SL_TEST(groups_local_leave_and_delete) {
    fixture f;
    CHECK(fixture_open(&f));
    char member[128];
    CHECK(form_group(&f, member, sizeof member));
    /* A stable group consuming nothing yet: its offsets may go, the group may not. */
    CHECK_EQ(sl_groups_commit_check(&f.g, sl_str_c("g"), 1, sl_str_c(member), SL_STR_NULL), 0);
    sl_group_offset o[] = {{sl_str_c("t"), 0, 5, -1, SL_STR_NULL, 0}};
    done_seen d = {0};
    CHECK_EQ(sl_groups_commit(&f.g, sl_str_c("g"), o, 1, f.a, on_done, &d), 0);
    await(&f, &d.calls);
    sl_str gs[] = {sl_str_c("g"), sl_str_c("other")};
    int16_t errs[2] = {0, SL_KAFKA_GROUP_AUTHORIZATION_FAILED};
    d = (done_seen){0};
    CHECK_EQ(sl_groups_delete(&f.g, gs, errs, 2, f.a, on_done, &d), 0);
    await(&f, &d.calls);
    CHECK_EQ(errs[0], SL_KAFKA_NON_EMPTY_GROUP);
    CHECK_EQ(errs[1], SL_KAFKA_GROUP_AUTHORIZATION_FAILED); /* left alone */

    /* The last member leaving empties the group: the answer waits for that record. */
    sl_group_leaver m[] = {{sl_str_c(member), SL_STR_NULL, 0}};
    d = (done_seen){0};
    CHECK_EQ(sl_groups_leave(&f.g, sl_str_c("g"), m, 1, f.a, on_done, &d), 0);
    CHECK_EQ(d.calls, 0);
    await(&f, &d.calls);
    CHECK_EQ(d.calls, 1);
    CHECK_EQ(m[0].error, 0);

    CHECK_EQ(sl_groups_offset_delete_check(&f.g, sl_str_c("g")), 0);
    sl_group_offset del[] = {{sl_str_c("t"), 0, 0, -1, SL_STR_NULL, 0},
                             {sl_str_c("nope"), 0, 0, -1, SL_STR_NULL, 0}};
    d = (done_seen){0};
    CHECK_EQ(sl_groups_offset_delete(&f.g, sl_str_c("g"), del, 2, f.a, on_done, &d), 0);
    await(&f, &d.calls);
    CHECK_EQ(del[0].error, 0);
    CHECK_EQ(del[1].error, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    sl_group_committed c;
    sl_groups_committed(&f.g, sl_str_c("g"), sl_str_c("t"), 0, &c);
    CHECK_EQ(c.offset, -1);

    int16_t e1[1] = {0};
    d = (done_seen){0};
    CHECK_EQ(sl_groups_delete(&f.g, gs, e1, 1, f.a, on_done, &d), 0);
    await(&f, &d.calls);
    CHECK_EQ(d.err, 0);
    CHECK_EQ(e1[0], 0);
    CHECK(!sl_groups_describe(&f.g, sl_str_c("g"), describe_seen, &(int32_t){0}));
    fixture_close(&f);
}
