/* The local topic administration behind the seam (pipeline/sl_backend.h), driven through the
 * interface alone: creation with configs and validate_only, the checks a one-broker cluster
 * answers with, partition growth, deletion completing what was parked on the topic. Changes are
 * asynchronous: their completions run only from the registry's dispatch (the loop's part), never
 * inline; refusals complete before the call returns. */
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/sl_broker.h"
#include "local_broker.h"
#include "sl_test.h"

typedef struct fixture {
    char dir[64];
    sl_broker b;
    sl_topic_admin ad;
    sl_arena *a;
} fixture;

static bool fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    if (!local_broker_open(f->dir, "sl_adlocal", &f->b, 0)) return false;
    f->ad = sl_topic_admin_local(&f->b);
    f->a = sl_arena_new(4096);
    return f->a != NULL;
}

static void fixture_close(fixture *f) {
    sl_arena_free(f->a);
    local_broker_close(f->dir, &f->b);
}

/* Runs the registry's completions, as the loop does when its eventfd is readable, until *calls
 * reaches `want` or a deadline passes. */
static bool settle(fixture *f, const int *calls, int want) {
    for (int i = 0; i < 1000 && *calls < want; i++) {
        struct pollfd pfd = {.fd = sl_topics_fd(f->b.topics), .events = POLLIN};
        poll(&pfd, 1, 10);
        sl_topics_dispatch(f->b.topics);
    }
    return *calls == want;
}

typedef struct created_seen {
    int calls;
    sl_topic_created r;
} created_seen;

static void on_created(void *ctx, const sl_topic_created *r) {
    created_seen *c = ctx;
    c->calls++;
    c->r = *r;
}

typedef struct done_seen {
    int calls;
    int16_t err;
    sl_str message;
} done_seen;

static void on_done(void *ctx, int16_t err, sl_str message) {
    done_seen *d = ctx;
    d->calls++;
    d->err = err;
    d->message = message;
}

static const char *cfg_value(const sl_topic_created *r, const char *name) {
    for (int32_t i = 0; i < r->nconfigs; i++)
        if (sl_str_eq(r->configs[i].name, sl_str_c(name))) return r->configs[i].value.p;
    return NULL;
}

SL_TEST(admin_local_create_validate_and_configs) {
    fixture f;
    CHECK(fixture_open(&f));
    sl_config_entry cfg[] = {{sl_str_c("retention.ms"), sl_str_c("1234"), false}};
    sl_new_topic nt = {sl_str_c("t1"), 3, -1, cfg, 1};
    created_seen c = {0};
    sl_admin_create_topic(&f.ad, &nt, true, f.a, on_created, &c);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(c.r.error, 0);
    CHECK_EQ(c.r.num_partitions, 3);
    CHECK(c.r.configs == NULL);
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t1")) == NULL); /* validate_only */

    sl_admin_create_topic(&f.ad, &nt, false, f.a, on_created, &c);
    CHECK_EQ(c.calls, 1); /* the files are made on the worker; nothing listed yet */
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t1")) == NULL);
    /* The name is reserved while the creation runs. */
    created_seen c2 = {0};
    sl_admin_create_topic(&f.ad, &nt, false, f.a, on_created, &c2);
    CHECK_EQ(c2.calls, 1);
    CHECK_EQ(c2.r.error, SL_KAFKA_TOPIC_ALREADY_EXISTS);
    CHECK(c2.r.message.len > 0);
    CHECK(settle(&f, &c.calls, 2));
    CHECK_EQ(c.r.error, 0);
    CHECK_EQ(c.r.replication_factor, 1);
    sl_topic *t = sl_topics_find(f.b.topics, sl_str_c("t1"));
    CHECK(t && t->npart == 3);
    CHECK(!memcmp(&c.r.id, &t->id, sizeof t->id));
    CHECK(cfg_value(&c.r, "retention.ms") && !strcmp(cfg_value(&c.r, "retention.ms"), "1234"));

    sl_str name;
    sl_uuid id;
    CHECK_EQ(sl_admin_resolve(&f.ad, SL_STR_NULL, &t->id, f.a, &name, &id), 0);
    CHECK(sl_str_eq(name, sl_str_c("t1")));
    sl_uuid zero = {0};
    CHECK_EQ(sl_admin_resolve(&f.ad, SL_STR_NULL, &zero, f.a, &name, &id),
             SL_KAFKA_UNKNOWN_TOPIC_ID);
    CHECK_EQ(sl_admin_resolve(&f.ad, sl_str_c("nope"), NULL, f.a, &name, &id),
             SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);

    /* What a one-broker cluster refuses. */
    sl_admin_create_topic(&f.ad, &nt, false, f.a, on_created, &c);
    CHECK_EQ(c.r.error, SL_KAFKA_TOPIC_ALREADY_EXISTS);
    CHECK(c.r.message.len > 0);
    sl_new_topic bad = {sl_str_c("t2"), 1, 3, NULL, 0};
    sl_admin_create_topic(&f.ad, &bad, false, f.a, on_created, &c);
    CHECK_EQ(c.r.error, SL_KAFKA_INVALID_REPLICATION_FACTOR);
    bad = (sl_new_topic){sl_str_c("t2"), 0, -1, NULL, 0};
    sl_admin_create_topic(&f.ad, &bad, false, f.a, on_created, &c);
    CHECK_EQ(c.r.error, SL_KAFKA_INVALID_PARTITIONS);
    bad = (sl_new_topic){sl_str_c("a/b"), 1, -1, NULL, 0};
    sl_admin_create_topic(&f.ad, &bad, false, f.a, on_created, &c);
    CHECK_EQ(c.r.error, SL_KAFKA_INVALID_TOPIC_EXCEPTION);
    sl_config_entry badcfg[] = {{sl_str_c("retention.ms"), sl_str_c("soon"), false}};
    bad = (sl_new_topic){sl_str_c("t2"), 1, -1, badcfg, 1};
    sl_admin_create_topic(&f.ad, &bad, false, f.a, on_created, &c);
    CHECK_EQ(c.r.error, SL_KAFKA_INVALID_CONFIG);
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t2")) == NULL);
    CHECK_EQ(c.calls, 7);
    fixture_close(&f);
}

SL_TEST(admin_local_partitions_and_delete) {
    fixture f;
    CHECK(fixture_open(&f));
    CHECK_EQ(sl_topics_create(f.b.topics, sl_str_c("t"), 2, NULL, false, NULL), SL_OK);
    done_seen d = {0};
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 2, 0, false, f.a, on_done, &d);
    CHECK_EQ(d.calls, 1);
    CHECK_EQ(d.err, SL_KAFKA_INVALID_PARTITIONS);
    CHECK(d.message.len > 0);
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 4, 1, false, f.a, on_done, &d);
    CHECK_EQ(d.err, SL_KAFKA_INVALID_REPLICA_ASSIGNMENT);
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 4, 0, true, f.a, on_done, &d);
    CHECK_EQ(d.err, 0);
    CHECK_EQ(sl_topics_find(f.b.topics, sl_str_c("t"))->npart, 2); /* validate_only */
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 4, 2, false, f.a, on_done, &d);
    CHECK_EQ(d.calls, 3); /* posted to the worker */
    /* While partitions are being added the topic is busy: neither grown again (validate_only
     * included) nor deleted. */
    done_seen busy = {0};
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 6, 0, false, f.a, on_done, &busy);
    CHECK_EQ(busy.calls, 1);
    CHECK_EQ(busy.err, SL_KAFKA_REASSIGNMENT_IN_PROGRESS);
    CHECK(busy.message.len > 0);
    sl_admin_add_partitions(&f.ad, sl_str_c("t"), 6, 0, true, f.a, on_done, &busy);
    CHECK_EQ(busy.err, SL_KAFKA_REASSIGNMENT_IN_PROGRESS);
    sl_admin_delete_topic(&f.ad, sl_str_c("t"), f.a, on_done, &busy);
    CHECK_EQ(busy.calls, 3);
    CHECK_EQ(busy.err, SL_KAFKA_REASSIGNMENT_IN_PROGRESS);
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t")) != NULL);
    CHECK(settle(&f, &d.calls, 4));
    CHECK_EQ(d.err, 0);
    CHECK_EQ(sl_topics_find(f.b.topics, sl_str_c("t"))->npart, 4);
    sl_admin_add_partitions(&f.ad, sl_str_c("nope"), 4, 0, false, f.a, on_done, &d);
    CHECK_EQ(d.err, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);

    f.b.cfg.delete_topic_enable = false;
    sl_admin_delete_topic(&f.ad, sl_str_c("t"), f.a, on_done, &d);
    CHECK_EQ(d.err, SL_KAFKA_TOPIC_DELETION_DISABLED);
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t")) != NULL);
    f.b.cfg.delete_topic_enable = true;
    sl_admin_delete_topic(&f.ad, sl_str_c("t"), f.a, on_done, &d);
    CHECK_EQ(d.calls, 6); /* unlisted now, its directories removed on the worker */
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t")) == NULL);
    CHECK(settle(&f, &d.calls, 7));
    CHECK_EQ(d.err, 0);
    CHECK(sl_topics_find(f.b.topics, sl_str_c("t")) == NULL);
    sl_admin_delete_topic(&f.ad, sl_str_c("t"), f.a, on_done, &d);
    CHECK_EQ(d.err, SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(d.calls, 8);
    fixture_close(&f);
}
