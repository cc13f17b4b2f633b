/* The local topic metadata, configuration and producer ids behind the seam
 * (pipeline/sl_backend.h), driven through the interface alone. */
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/sl_broker.h"
#include "broker/sl_producers.h"
#include "local_broker.h"
#include "sl_test.h"

typedef struct fixture {
    char dir[64];
    sl_broker b;
    sl_producers pr;
    sl_topics_meta m;
    sl_arena *a;
} fixture;

static bool fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    if (!local_broker_open(f->dir, "sl_metalocal", &f->b, 2)) return false;
    if (sl_pid_alloc_open(f->dir, 0, &f->pr.pids)) return false;
    f->b.producers = &f->pr;
    f->m = sl_topics_meta_local(&f->b);
    f->a = sl_arena_new(4096);
    return f->a != NULL;
}

static void fixture_close(fixture *f) {
    if (f->pr.pids) sl_pid_alloc_free(f->pr.pids);
    sl_arena_free(f->a);
    local_broker_close(f->dir, &f->b);
}

static void count_topic(void *arg, const sl_topic_desc *t) { ++*(int *)arg; }

static const sl_config_desc *find(const sl_config_desc *d, int32_t n, const char *name) {
    for (int32_t i = 0; i < n; i++)
        if (sl_str_eq(d[i].name, sl_str_c(name))) return &d[i];
    return NULL;
}

static bool only_retention(void *arg, const char *name) { return !strcmp(name, "retention.ms"); }

SL_TEST(meta_local_topics_and_auto_create) {
    fixture f;
    CHECK(fixture_open(&f));
    CHECK(sl_meta_cluster_id(&f.m) && sl_meta_cluster_id(&f.m)[0]);
    sl_topic_desc t;
    CHECK_EQ(sl_meta_describe_topic(&f.m, sl_str_c("t"), NULL, &t), 0);
    CHECK_EQ(t.partitions, 2);
    sl_uuid id = t.id;
    CHECK_EQ(sl_meta_describe_topic(&f.m, SL_STR_NULL, &id, &t), 0);
    CHECK(sl_str_eq(t.name, sl_str_c("t")));
    sl_uuid zero = {0};
    CHECK_EQ(sl_meta_describe_topic(&f.m, SL_STR_NULL, &zero, &t), SL_KAFKA_UNKNOWN_TOPIC_ID);
    CHECK_EQ(sl_meta_describe_topic(&f.m, sl_str_c("u"), NULL, &t),
             SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);

    f.b.cfg.auto_create_topics_enable = false;
    CHECK(!sl_meta_auto_create_enabled(&f.m));
    CHECK_EQ(sl_meta_auto_create(&f.m, sl_str_c("u"), &t), SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    f.b.cfg.auto_create_topics_enable = true;
    CHECK_EQ(sl_meta_auto_create(&f.m, sl_str_c("a/b"), &t), SL_KAFKA_INVALID_TOPIC_EXCEPTION);
    CHECK_EQ(sl_meta_auto_create(&f.m, sl_str_c("u"), &t), 0);
    CHECK_EQ(t.partitions, f.b.cfg.num_partitions);
    int n = 0;
    sl_meta_each_topic(&f.m, count_topic, &n);
    CHECK_EQ(n, 2);
    fixture_close(&f);
}

SL_TEST(meta_local_topic_configs) {
    fixture f;
    CHECK(fixture_open(&f));
    sl_config_desc *d;
    int32_t n;
    CHECK_EQ(sl_meta_topic_configs(&f.m, sl_str_c("t"), NULL, NULL, true, f.a, &d, &n), 0);
    CHECK_EQ(n, SL_TCFG__COUNT);
    const sl_config_desc *r = find(d, n, "retention.ms");
    CHECK(r && r->is_default && r->source == SL_CONFIG_SRC_DEFAULT);
    CHECK_EQ(r->nsynonyms, 1); /* the broker default only */

    sl_config_alter set[] = {{sl_str_c("retention.ms"), sl_str_c("5000"), 0}};
    sl_str bad;
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("t"), set, 1, false, true, &bad), 0);
    CHECK_EQ(sl_meta_topic_configs(&f.m, sl_str_c("t"), only_retention, NULL, true, f.a, &d, &n),
             0);
    CHECK_EQ(n, 1);
    CHECK(d[0].is_default); /* validate_only changed nothing */
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("t"), set, 1, false, false, &bad), 0);
    CHECK_EQ(sl_meta_topic_configs(&f.m, sl_str_c("t"), only_retention, NULL, true, f.a, &d, &n),
             0);
    CHECK(!d[0].is_default && !strncmp(d[0].value.p, "5000", 4));
    CHECK_EQ(d[0].source, SL_CONFIG_SRC_DYNAMIC_TOPIC);
    CHECK_EQ(d[0].nsynonyms, 2);

    /* AlterConfigs: what is not given goes. */
    sl_config_alter seg[] = {{sl_str_c("segment.bytes"), sl_str_c("1048576"), 0}};
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("t"), seg, 1, true, false, &bad), 0);
    CHECK_EQ(sl_meta_topic_configs(&f.m, sl_str_c("t"), NULL, NULL, false, f.a, &d, &n), 0);
    CHECK(find(d, n, "retention.ms")->is_default);
    CHECK(!find(d, n, "segment.bytes")->is_default);

    sl_config_alter wrong[] = {{sl_str_c("retention.ms"), sl_str_c("soon"), 0}};
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("t"), wrong, 1, false, false, &bad),
             SL_KAFKA_INVALID_CONFIG);
    CHECK(sl_str_eq(bad, sl_str_c("retention.ms")));
    sl_config_alter append[] = {{sl_str_c("retention.ms"), sl_str_c("1"), 2}};
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("t"), append, 1, false, false, &bad),
             SL_KAFKA_INVALID_CONFIG);
    CHECK_EQ(sl_meta_alter_topic_configs(&f.m, sl_str_c("nope"), set, 1, false, false, &bad),
             SL_KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    fixture_close(&f);
}

SL_TEST(meta_local_broker_configs_and_producer_ids) {
    fixture f;
    CHECK(fixture_open(&f));
    sl_config_desc *d;
    int32_t n;
    sl_str msg = SL_STR_NULL;
    CHECK_EQ(sl_meta_broker_configs(&f.m, sl_str_c("99"), NULL, NULL, false, f.a, &d, &n, &msg),
             SL_KAFKA_INVALID_REQUEST);
    CHECK(msg.len > 0);
    CHECK_EQ(sl_meta_broker_configs(&f.m, sl_str_c(""), NULL, NULL, true, f.a, &d, &n, &msg), 0);
    const sl_config_desc *r = find(d, n, "log.retention.ms");
    CHECK(r && !r->read_only && r->doc);
    sl_config_alter set[] = {{sl_str_c("log.retention.ms"), sl_str_c("7000"), 0}};
    sl_str bad;
    CHECK_EQ(sl_meta_alter_broker_configs(&f.m, sl_str_c(""), set, 1, false, &bad), 0);
    CHECK_EQ(f.b.cfg.log_retention_ms, 7000);
    sl_config_alter ro[] = {{sl_str_c("listeners"), sl_str_c("PLAINTEXT://:1"), 0}};
    CHECK_EQ(sl_meta_alter_broker_configs(&f.m, sl_str_c(""), ro, 1, false, &bad),
             SL_KAFKA_INVALID_CONFIG);

    int64_t pid, pid2;
    int16_t epoch;
    CHECK_EQ(sl_meta_init_producer_id(&f.m, -1, -1, &pid, &epoch), 0);
    CHECK(pid >= 0);
    CHECK_EQ(epoch, 0);
    CHECK_EQ(sl_meta_init_producer_id(&f.m, pid, 0, &pid2, &epoch), 0); /* KIP-360 bump */
    CHECK_EQ(pid2, pid);
    CHECK_EQ(epoch, 1);
    CHECK_EQ(sl_meta_init_producer_id(&f.m, pid, INT16_MAX - 1, &pid2, &epoch), 0);
    CHECK(pid2 != pid); /* an exhausted epoch: a new id */
    CHECK_EQ(epoch, 0);
    fixture_close(&f);
}
