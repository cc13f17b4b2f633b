/* Topic registry: names, stable topic ids, partition logs and per-topic configs, persisted in
 * `<log.dirs>/sluice-topics.meta` (written atomically: a crash leaves the old or the new file).
 * Single-threaded: loop thread only. Topics are malloc'd and owned by the registry. */
#ifndef SL_BROKER_TOPICS_H
#define SL_BROKER_TOPICS_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "storage/sl_log.h"

struct sl_keysvc;

#define SL_TOPIC_NAME_MAX 249

/* Topic-level overrides; a field is meaningful only when its bit is in set_mask. */
enum {
    SL_TCFG_RETENTION_MS,
    SL_TCFG_RETENTION_BYTES,
    SL_TCFG_SEGMENT_BYTES,
    SL_TCFG_SEGMENT_MS,
    SL_TCFG_MAX_MESSAGE_BYTES,
    SL_TCFG_CLEANUP_POLICY,
    SL_TCFG_FLUSH_MESSAGES,
    SL_TCFG_FLUSH_MS,
    SL_TCFG_DELETE_RETENTION_MS,
    SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO,
    SL_TCFG_MIN_COMPACTION_LAG_MS,
    SL_TCFG_MAX_COMPACTION_LAG_MS,
    SL_TCFG__COUNT
};
typedef struct sl_topic_config {
    /* cleanup.policy: 0 delete, 1 compact, 2 compact,delete (sl_config_cleanup_policy);
     * min.cleanable.dirty.ratio: the bits of a double (sl_tcfg_ratio) */
    int64_t v[SL_TCFG__COUNT];
    uint32_t set_mask;
} sl_topic_config;

typedef struct sl_waiter sl_waiter; /* a subscriber to "appended" (pipeline/sl_backend.h) */

typedef struct sl_partition {
    struct sl_topic *topic;
    int32_t index;
    sl_log *log;
    sl_waiter *waiters;       /* subscribers to "appended" (parked fetches) */
    uint64_t ticks;           /* events and unsubscriptions so far (sl_storage_local.c) */
    struct sl_pstate *pstate; /* idempotent producer state (sl_producers.h), owned */
    struct sl_txnpart *txn;   /* transaction state: LSO, aborted index (sl_txnpart.h), owned */
    /* record-set transforms registered for this partition (sl_xform.h), borrowed; NULL: none */
    const struct sl_xform_chain *xform;
    /* Not SL_OK: the partition could not be opened (a damaged or tampered segment, a key that is
     * not available): log and pstate are NULL and every data operation on it answers this
     * (KAFKA_STORAGE_ERROR), while the rest of the broker serves normally. */
    sl_err unavailable;
    /* Rate limits of the "stored data failed authentication" warning and event, and of the
     * "key not usable" warning: one each per partition per window, the ones held back counted
     * into the next (sl_storage_local.c). Separate, so key trouble never hides a tamper. */
    int64_t tamper_next_ms, keywarn_next_ms;
    uint64_t tamper_held, keywarn_held;
} sl_partition;

typedef struct sl_topic {
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_uuid id;
    int32_t npart;
    sl_partition **parts; /* individually allocated: parked fetches hold pointers */
    sl_topic_config cfg;
    struct sl_topic *next;
    int32_t refs; /* the registry's while listed, plus sl_topic_hold()s */
    bool deleted; /* removed from the registry; its partitions' logs are gone (NULL) */
    bool busy;    /* partitions being added (sl_topics_add_partitions_async) */
    /* Its topic key could not be made at start (key manager down): made again before its
     * partitions are retried (sl_topics_retry_unavailable). */
    bool key_missing;
    bool key_retrying; /* an asynchronous attempt is queued */
} sl_topic;

typedef struct sl_topics sl_topics;

/* Opens the registry under cfg->log_dirs (creating the directory), loading topics and opening
 * every partition log (which recovers it). `cfg` must outlive the registry. A partition that
 * cannot be opened does not stop the others: it is marked unavailable (sl_partition) and named
 * in one error line; a registry that cannot be read is fatal. Encryption off (no key service). */
sl_err sl_topics_open(const sl_config *cfg, sl_topics **out, char *err, size_t err_len);
/* The same with encryption at rest when `ks` is not NULL (borrowed; must outlive the registry):
 * every topic gets a topic key (sl_keysvc_topic_ensure_sync, so a registry from before
 * encryption is migrated), every partition log gets its keys (sl_log_set_keys) before anything
 * reads it, producer snapshots and the registry file are sealed (sl_keysvc_seal_blob; older
 * plaintext ones are still read, and the registry is rewritten sealed at once), a creation
 * makes the topic key first (a failure fails the creation, nothing kept) and a deletion shreds
 * it. With sluice.encryption.dir.names=id new partition directories are named
 * `<topic id hex>-<partition>`; an existing directory in the other style keeps being used. */
sl_err sl_topics_open_keys(const sl_config *cfg, struct sl_keysvc *ks, sl_topics **out, char *err,
                           size_t err_len);
/* Tries again, at most every few seconds, to open the partitions left unavailable because a
 * key or the key manager was not available (never those whose data failed authentication):
 * once the key manager is back they serve again without a restart. Loop thread (a timer). */
void sl_topics_retry_unavailable(sl_topics *t, int64_t now_ms);
/* Drops the DEKs held by every log of the topic with id `topic_id` (after a shred). */
void sl_topics_drop_keys(sl_topics *t, const uint8_t topic_id[16]);
/* The directory of partition `i` of `tp` (the one in use, see sl_topics_open_keys). */
void sl_topics_partition_dir(const sl_topics *t, const sl_topic *tp, int32_t i, char *out,
                             size_t cap);
/* Records that every partition log was synced and nothing will write to them in this run: the
 * next sl_topics_open then skips the recovery fsync of each log (it consumes the record first).
 * Call only after a successful sl_log_sync of every log, with the loop stopped. */
sl_err sl_topics_mark_clean_stop(sl_topics *t);
/* Stops the file worker (finishing queued work and running its callbacks), closes every log and
 * frees the registry. */
void sl_topics_close(sl_topics *t);

sl_topic *sl_topics_find(sl_topics *t, sl_str name);
sl_topic *sl_topics_find_id(sl_topics *t, const sl_uuid *id);
sl_partition *sl_topics_partition(sl_topics *t, sl_str name, int32_t part);
/* Iteration in name order is not guaranteed; `*cursor` starts NULL. */
sl_topic *sl_topics_next(sl_topics *t, sl_topic *cursor);
int sl_topics_count(const sl_topics *t);

/* Kafka's topic name rules: [a-zA-Z0-9._-], 1..249 chars, not "." or "..". */
bool sl_topic_name_valid(sl_str name);
/* Creates a topic with `npart` partitions and the given overrides (NULL: none); persists it.
 * SL_EEXISTS when present. With validate_only nothing is created. */
sl_err sl_topics_create(sl_topics *t, sl_str name, int32_t npart, const sl_topic_config *tc,
                        bool validate_only, sl_topic **out);
/* Keeps `topic` (and its partitions) allocated across asynchronous work; every hold is paired
 * with one release. Loop thread only. */
void sl_topic_hold(sl_topic *topic);
void sl_topic_release(sl_topic *topic);
/* Replaces the topic's overrides, applies them to its logs, persists. */
sl_err sl_topics_set_config(sl_topics *t, sl_topic *topic, const sl_topic_config *tc);

/* ---- Asynchronous administration ------------------------------------------------------------
 * Partition directories are created and removed on the registry's file worker thread, so a
 * CreateTopics of thousands of partitions does not stall the loop. The registry itself stays on
 * the loop thread: the worker's completions arrive through sl_topics_fd(), and the loop thread
 * calls sl_topics_dispatch(), which links or unlinks, persists and runs the callback. A name
 * being created or deleted is reserved until its files are settled (sl_topics_create and the
 * async calls answer SL_EEXISTS meanwhile). */

/* Runs exactly once, on the loop thread, from sl_topics_dispatch (or sl_topics_close). `topic`
 * is the created or grown topic on success, NULL otherwise; borrowed (sl_topic_hold to keep). */
typedef void (*sl_topics_done_cb)(void *ctx, sl_err result, sl_topic *topic);
/* Creates a topic: validates now (SL_EINVAL, SL_EEXISTS, SL_ENOMEM returned and cb never runs),
 * then opens the partitions on the worker; on success the topic is listed and persisted before
 * cb. A failure is atomic: every partition directory is removed before cb gets the error. */
sl_err sl_topics_create_async(sl_topics *t, sl_str name, int32_t npart, const sl_topic_config *tc,
                              sl_topics_done_cb cb, void *ctx);
/* Grows `topic` to `npart` partitions the same way (all or none). SL_ESTATE while another
 * addition to the topic runs. */
sl_err sl_topics_add_partitions_async(sl_topics *t, sl_topic *topic, int32_t npart,
                                      sl_topics_done_cb cb, void *ctx);
/* Deletes `topic`: wakes nothing itself (the caller completes parked fetches first); unlisted
 * and persisted now, its directories removed on the worker, then cb. The struct lives on, marked
 * deleted with NULL logs, while anything holds it (sl_topic_hold), so a late completion that
 * kept a pointer stays safe. SL_ESTATE while partitions are being added. */
sl_err sl_topics_delete_async(sl_topics *t, sl_topic *topic, sl_topics_done_cb cb, void *ctx);
/* An eventfd readable when completions wait; the loop watches it and calls sl_topics_dispatch. */
int sl_topics_fd(const sl_topics *t);
void sl_topics_dispatch(sl_topics *t);
/* Asynchronous operations posted and not completed yet. */
int sl_topics_pending(const sl_topics *t);

/* Topic config names ("retention.ms", ...) <-> ids; values parsed/validated per key. */
const char *sl_tcfg_name(int id);
int sl_tcfg_lookup(sl_str name);
/* Parses `value` for config `id`; SL_ECONFIG when invalid. */
sl_err sl_tcfg_parse(int id, sl_str value, int64_t *out);
/* Effective value (override or broker default), formatted. Returns true if overridden. */
bool sl_tcfg_effective(const sl_topics *t, const sl_topic *topic, int id, char *buf, size_t len);
/* Effective numeric value (override or broker default) of topic config `id`. */
int64_t sl_tcfg_value(const sl_topics *t, const sl_topic *topic, int id);
/* The broker config key that provides the default for topic config `id`. */
const char *sl_tcfg_broker_key(int id);
/* The topic's min.cleanable.dirty.ratio (its own or the broker's). */
double sl_tcfg_ratio(const sl_topics *t, const sl_topic *topic);
/* cleanup.policy includes compact. */
bool sl_topic_compacted(const sl_topics *t, const sl_topic *topic);

const char *sl_topics_cluster_id(const sl_topics *t);

#endif
