/* Compaction as users configure it (docs/compaction.md): the topic and broker configs with
 * Kafka's validation, and the produce rules on a compacted topic (a keyless record is refused,
 * a client batch with the delete-horizon flag is refused everywhere), through the local storage
 * backend's append. */
#include <stdio.h>
#include <string.h>

#include "broker/sl_broker.h"
#include "local_broker.h"
#include "proto/sl_records.h"
#include "sl_test.h"
#include "storage/sl_batch_build.h"

static sl_err tparse(int id, const char *v, int64_t *out) {
    return sl_tcfg_parse(id, sl_str_c(v), out);
}

SL_TEST(compaction_topic_config_validation) {
    int64_t v = -7;
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "delete", &v) == SL_OK && v == 0);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "compact", &v) == SL_OK && v == 1);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "compact,delete", &v) == SL_OK && v == 2);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "delete, compact", &v) == SL_OK && v == 2);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "compacted", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_CLEANUP_POLICY, "compact,shred", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "0.25", &v) == SL_OK);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "0", &v) == SL_OK);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "1", &v) == SL_OK);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "1.01", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "-0.1", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "nan", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO, "half", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_DELETE_RETENTION_MS, "0", &v) == SL_OK && v == 0);
    CHECK(tparse(SL_TCFG_DELETE_RETENTION_MS, "-1", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MIN_COMPACTION_LAG_MS, "-1", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MAX_COMPACTION_LAG_MS, "0", &v) == SL_ECONFIG);
    CHECK(tparse(SL_TCFG_MAX_COMPACTION_LAG_MS, "1", &v) == SL_OK && v == 1);
    CHECK_EQ(sl_tcfg_lookup(sl_str_c("min.cleanable.dirty.ratio")),
             SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO);
    CHECK(!strcmp(sl_tcfg_broker_key(SL_TCFG_CLEANUP_POLICY), "log.cleanup.policy"));
    CHECK(!strcmp(sl_tcfg_broker_key(SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO),
                  "log.cleaner.min.cleanable.ratio"));
}

SL_TEST(compaction_broker_config_defaults_and_validation) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(!strcmp(c.log_cleanup_policy, "delete"));
    CHECK_EQ(c.log_cleaner_delete_retention_ms, 86400000);
    CHECK(c.log_cleaner_min_cleanable_ratio == 0.5);
    CHECK_EQ(c.log_cleaner_min_compaction_lag_ms, 0);
    CHECK_EQ(c.log_cleaner_max_compaction_lag_ms, INT64_MAX);
    CHECK_EQ(c.log_cleaner_dedupe_buffer_size, 134217728);
    CHECK_EQ(c.log_cleaner_backoff_ms, 15000);
    CHECK(c.log_cleaner_enable);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_OK);
    CHECK_EQ(c.log_cleanup_policy_id, 0);

    CHECK(sl_config_set(&c, "log.cleanup.policy", "compact,delete", err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "log.cleaner.min.cleanable.ratio", "0.1", err, sizeof err) == SL_OK);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_OK);
    CHECK_EQ(c.log_cleanup_policy_id, 2);
    CHECK(c.log_cleaner_min_cleanable_ratio == 0.1);

    CHECK(sl_config_set(&c, "log.cleanup.policy", "forever", err, sizeof err) == SL_OK);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "log.cleanup.policy") != NULL);
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "log.cleaner.min.cleanable.ratio", "1.5", err, sizeof err) == SL_OK);
    CHECK(sl_config_finish(&c, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "log.cleaner.min.cleanable.ratio") != NULL);
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "log.cleaner.max.compaction.lag.ms", "0", err, sizeof err) ==
          SL_ECONFIG);
    CHECK(strstr(err, "log.cleaner.max.compaction.lag.ms") != NULL);
    CHECK(sl_config_set(&c, "log.cleaner.delete.retention.ms", "-1", err, sizeof err) ==
          SL_ECONFIG);
    CHECK(sl_config_set(&c, "log.cleaner.dedupe.buffer.size", "1024", err, sizeof err) ==
          SL_ECONFIG);
    CHECK(sl_config_set(&c, "log.cleaner.enable", "maybe", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "log.cleaner.enable") != NULL);
}

/* A one-record batch whose key is `key` (NULL: no key). */
static uint8_t *keyed_batch(sl_arena *a, const char *key, size_t *len) {
    sl_rec_builder b;
    sl_rec_builder_init(&b, a, 64);
    sl_rec_in r = {.key =
                       key ? (sl_bytes){(const uint8_t *)key, (int32_t)strlen(key)} : SL_BYTES_NULL,
                   .value = {(const uint8_t *)"v", 1}};
    uint8_t *out = NULL;
    if (sl_rec_builder_add(&b, &r) || sl_rec_builder_seal(&b, 0, 1000, 1000, &out, len))
        return NULL;
    return out;
}

SL_TEST(compaction_produce_refuses_keyless_and_delete_horizon) {
    char dir[64];
    sl_broker b;
    memset(&b, 0, sizeof b);
    CHECK(local_broker_open(dir, "sl_compw", &b, 1)); /* "t": cleanup.policy delete */
    sl_topic_config tc = {0};
    tc.v[SL_TCFG_CLEANUP_POLICY] = 1;
    tc.set_mask = 1u << SL_TCFG_CLEANUP_POLICY;
    CHECK(sl_topics_create(b.topics, sl_str_c("c"), 1, &tc, false, NULL) == SL_OK);
    sl_storage st = sl_storage_local(&b);
    sl_arena *a = sl_arena_new(4096);
    CHECK(a);
    sl_spart *pc = sl_storage_partition(&st, sl_storage_topic(&st, sl_str_c("c"), NULL), 0);
    sl_spart *pt = sl_storage_partition(&st, sl_storage_topic(&st, sl_str_c("t"), NULL), 0);
    CHECK(pc && pt);
    sl_append_result r;
    size_t len;

    /* Compacted: a keyless record is refused and nothing is appended; keyed ones go. */
    uint8_t *keyless = keyed_batch(a, NULL, &len);
    CHECK(keyless);
    CHECK_EQ(sl_storage_append(&st, pc, keyless, len, a, &r, NULL, NULL), SL_KAFKA_INVALID_RECORD);
    sl_spart_offsets off;
    sl_storage_offsets(&st, pc, &off);
    CHECK_EQ(off.log_end, 0);
    /* The same keyless batch built by the test builder (several records, none with a key). */
    uint8_t *many = sl_batch_build(a, 1000, 5, "x", 1, &len);
    CHECK_EQ(sl_storage_append(&st, pc, many, len, a, &r, NULL, NULL), SL_KAFKA_INVALID_RECORD);
    uint8_t *keyed = keyed_batch(a, "k", &len);
    CHECK_EQ(sl_storage_append(&st, pc, keyed, len, a, &r, NULL, NULL), 0);
    CHECK_EQ(r.base_offset, 0);
    /* A set of a keyed batch then a keyless one: refused whole, before anything is appended. */
    size_t l1, l2;
    uint8_t *b1 = keyed_batch(a, "k2", &l1), *b2 = keyed_batch(a, NULL, &l2);
    uint8_t *set = sl_arena_alloc(a, l1 + l2);
    memcpy(set, b1, l1);
    memcpy(set + l1, b2, l2);
    CHECK_EQ(sl_storage_append(&st, pc, set, l1 + l2, a, &r, NULL, NULL), SL_KAFKA_INVALID_RECORD);
    sl_storage_offsets(&st, pc, &off);
    CHECK_EQ(off.log_end, 1);

    /* Delete policy: keyless records are fine. */
    keyless = keyed_batch(a, NULL, &len);
    CHECK_EQ(sl_storage_append(&st, pt, keyless, len, a, &r, NULL, NULL), 0);

    /* The delete-horizon flag (attributes bit 6) is the cleaner's: refused on every topic. */
    uint8_t *hz = keyed_batch(a, "k", &len);
    hz[SL_BATCH_ATTRIBUTES + 1] |= 0x40;
    CHECK_EQ(sl_storage_append(&st, pt, hz, len, a, &r, NULL, NULL), SL_KAFKA_INVALID_RECORD);
    hz = keyed_batch(a, "k", &len);
    hz[SL_BATCH_ATTRIBUTES + 1] |= 0x40;
    CHECK_EQ(sl_storage_append(&st, pc, hz, len, a, &r, NULL, NULL), SL_KAFKA_INVALID_RECORD);
    sl_storage_offsets(&st, pt, &off);
    CHECK_EQ(off.log_end, 1);

    sl_arena_free(a);
    local_broker_close(dir, &b);
}
