/* The storage backend seam: what the handlers need from whatever stores topics and coordinates
 * groups. Four interfaces, each a table of operations with its context:
 *   - sl_storage, the data path: what the Produce, Fetch, ListOffsets, OffsetForLeaderEpoch and
 *     DeleteRecords handlers need from whatever stores partitions;
 *   - sl_groups, group coordination: the classic group APIs and committed offsets;
 *   - sl_topics_meta, topic metadata and configuration: Metadata, the configs APIs,
 *     DescribeCluster, InitProducerId's producer ids;
 *   - sl_topic_admin, topic administration: CreateTopics, DeleteTopics, CreatePartitions.
 * The local broker implements them over its logs, flusher, producer state, registry and group
 * coordinator (src/broker/sl_{storage,groups,meta,admin}_local.c); `sluice gateway` will
 * implement them over an upstream cluster. Handlers keep Kafka's request semantics
 * (authorization answers read from the pipeline's stage, budgets, the record-set transform
 * chain of sl_xform.h, response shapes); the backend only stores, reads and coordinates.
 *
 * It lives beside the catalog (sl_api.h), in the pipeline, because both backends share it and
 * it depends on nothing of local storage.
 *
 * Errors are Kafka wire codes (0: none): the backend maps its own failures (and logs them),
 * since an upstream cluster answers in those codes already.
 *
 * Handles: a topic handle and a partition handle are opaque and valid for the loop callback
 * that looked them up (the request's own execution step, or one event callback). Anything that
 * keeps one longer subscribes (sl_storage_subscribe), which holds the partition until
 * sl_storage_unsubscribe. Loop thread only, like the request that calls. */
#ifndef SL_PIPELINE_BACKEND_H
#define SL_PIPELINE_BACKEND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"

struct sl_xform_chain;

typedef struct sl_stopic sl_stopic; /* a topic, as the backend has it */
typedef struct sl_spart sl_spart;   /* one of its partitions */

/* What a handler needs to know about a partition besides its offsets. */
typedef struct sl_spart_info {
    const char *topic;                  /* the topic's name, valid as long as the handle */
    int32_t index;                      /* the partition index */
    int64_t max_message_bytes;          /* effective max.message.bytes */
    const struct sl_xform_chain *xform; /* transforms registered for it (sl_xform.h); NULL: none */
} sl_spart_info;

typedef struct sl_spart_offsets {
    int64_t log_start;      /* first offset still readable */
    int64_t log_end;        /* next offset to be assigned */
    int64_t high_watermark; /* last offset a consumer may read, plus one */
    /* Last stable offset: read_committed consumers read below it (the first offset of the
     * oldest open transaction, else the high watermark). */
    int64_t last_stable;
    /* Not 0: the partition is unavailable (e.g. its stored data could not be opened): the
     * offsets are -1 and every data operation on it answers this code. */
    int16_t error;
} sl_spart_offsets;

/* An aborted transaction, for Fetch's aborted_transactions (read_committed). */
typedef struct sl_spart_aborted {
    int64_t producer_id;
    int64_t first_offset;
} sl_spart_aborted;

/* What an append did. */
typedef struct sl_append_result {
    int64_t base_offset; /* first offset assigned, or the original one of a duplicate; -1: none */
    int64_t log_start;   /* the partition's log start offset after the append */
    int64_t records;     /* records appended (0 for a duplicate) */
    bool duplicate;      /* a retried batch: nothing appended, base_offset is the original */
} sl_append_result;

/* The durability callback of an append: `err` is 0 once everything the partition had when the
 * append returned is durable, or the Kafka error that says it is not. */
typedef void (*sl_durable_fn)(void *ctx, int16_t err);

/* A subscription to a partition's "appended" event (a parked fetch). The subscriber allocates
 * it (in its request arena), sets `fn` and `ctx`, and the backend owns the other fields while
 * it is subscribed. `fn` runs on the loop thread with the bytes just appended, or with a
 * negative count when the partition is going away (topic deleted, broker stopping): then the
 * subscriber must unsubscribe before it returns. `fn` may unsubscribe any subscription,
 * including its own, and finish requests; it must not subscribe. */
typedef struct sl_waiter sl_waiter;
typedef void (*sl_appended_fn)(sl_waiter *w, int64_t bytes);
struct sl_waiter {
    sl_appended_fn fn;
    void *ctx;
    /* the backend's */
    sl_waiter *next, *prev;
    sl_spart *part;
    uint64_t seen; /* the event this subscriber was last told of */
};

typedef struct sl_storage_ops {
    /* The topic named `name`, or with id `id` when `id` is not NULL; NULL when none exists. */
    sl_stopic *(*topic)(void *ctx, sl_str name, const sl_uuid *id);
    /* Partition `index` of `t`; NULL when it has no such partition. */
    sl_spart *(*partition)(void *ctx, sl_stopic *t, int32_t index);
    void (*info)(void *ctx, sl_spart *p, sl_spart_info *out);
    void (*offsets)(void *ctx, sl_spart *p, sl_spart_offsets *out);
    /* Appends one partition's record set: whole magic-2 batches that went through the produce
     * transform chain, in the request arena at `data` (writable: offsets are stamped in place,
     * no copy). A batch that repeats one the producer already appended is answered with its
     * original offset (result->duplicate) instead of being appended. Subscribers hear of the
     * bytes appended. *result is filled on errors too (a set can fail after some of its
     * batches were appended). When the return is 0 and `durable` is not NULL,
     * durable(dctx, err) runs exactly once, on the loop thread, after the set (or its
     * original) is durable; normally from a later loop callback, but inline before this
     * returns if the backend is out of memory. No callback runs when the return is an error.
     * The backend keeps its bookkeeping for the callback in `a`, which must live until then. */
    int16_t (*append)(void *ctx, sl_spart *p, uint8_t *data, size_t len, sl_arena *a,
                      sl_append_result *result, sl_durable_fn durable, void *dctx);
    /* Whole batches from the one holding `offset`, up to `max_bytes` but at least one batch when
     * offset < log end, copied into `a` (one read per contiguous range, never per record; the
     * last batch may be cut short). Empty at the log end; OFFSET_OUT_OF_RANGE outside the log. */
    int16_t (*read)(void *ctx, sl_spart *p, int64_t offset, int32_t max_bytes, sl_arena *a,
                    uint8_t **data, size_t *len);
    /* First offset whose batch holds a timestamp >= ts, with that timestamp; -1/-1 if none. */
    int16_t (*offset_for_time)(void *ctx, sl_spart *p, int64_t ts, int64_t *offset,
                               int64_t *found_ts);
    /* The offset and timestamp of the largest timestamp; -1/-1 when empty. */
    int16_t (*max_timestamp)(void *ctx, sl_spart *p, int64_t *offset, int64_t *ts);
    /* Moves the log start to `offset` (log start <= offset <= log end, checked by the caller)
     * if it is above the current one; *low_watermark is the log start afterwards. */
    int16_t (*delete_records)(void *ctx, sl_spart *p, int64_t offset, int64_t *low_watermark);
    /* Subscribes `w` (fn and ctx set) to p's "appended" event; holds p until unsubscribed. */
    void (*subscribe)(void *ctx, sl_spart *p, sl_waiter *w);
    void (*unsubscribe)(void *ctx, sl_waiter *w);
    /* The aborted transactions whose records may lie in [from, to) (*out in `a`); the count,
     * or -1 when out of memory. NULL: the backend keeps none (always 0). */
    int (*aborted)(void *ctx, sl_spart *p, int64_t from, int64_t to, sl_arena *a,
                   sl_spart_aborted **out);
} sl_storage_ops;

/* A backend's data path: its operations and their context. Owned by the backend. */
typedef struct sl_storage {
    const sl_storage_ops *ops;
    void *ctx;
} sl_storage;

/* Convenience wrappers: one indirect call each. */
static inline sl_stopic *sl_storage_topic(const sl_storage *s, sl_str name, const sl_uuid *id) {
    return s->ops->topic(s->ctx, name, id);
}
static inline sl_spart *sl_storage_partition(const sl_storage *s, sl_stopic *t, int32_t index) {
    return s->ops->partition(s->ctx, t, index);
}
static inline void sl_storage_info(const sl_storage *s, sl_spart *p, sl_spart_info *out) {
    s->ops->info(s->ctx, p, out);
}
static inline void sl_storage_offsets(const sl_storage *s, sl_spart *p, sl_spart_offsets *out) {
    s->ops->offsets(s->ctx, p, out);
}
static inline int16_t sl_storage_append(const sl_storage *s, sl_spart *p, uint8_t *data, size_t len,
                                        sl_arena *a, sl_append_result *result,
                                        sl_durable_fn durable, void *dctx) {
    return s->ops->append(s->ctx, p, data, len, a, result, durable, dctx);
}
static inline int16_t sl_storage_read(const sl_storage *s, sl_spart *p, int64_t offset,
                                      int32_t max_bytes, sl_arena *a, uint8_t **data, size_t *len) {
    return s->ops->read(s->ctx, p, offset, max_bytes, a, data, len);
}
static inline int16_t sl_storage_offset_for_time(const sl_storage *s, sl_spart *p, int64_t ts,
                                                 int64_t *offset, int64_t *found_ts) {
    return s->ops->offset_for_time(s->ctx, p, ts, offset, found_ts);
}
static inline int16_t sl_storage_max_timestamp(const sl_storage *s, sl_spart *p, int64_t *offset,
                                               int64_t *ts) {
    return s->ops->max_timestamp(s->ctx, p, offset, ts);
}
static inline int16_t sl_storage_delete_records(const sl_storage *s, sl_spart *p, int64_t offset,
                                                int64_t *low_watermark) {
    return s->ops->delete_records(s->ctx, p, offset, low_watermark);
}
static inline void sl_storage_subscribe(const sl_storage *s, sl_spart *p, sl_waiter *w) {
    s->ops->subscribe(s->ctx, p, w);
}
static inline void sl_storage_unsubscribe(const sl_storage *s, sl_waiter *w) {
    s->ops->unsubscribe(s->ctx, w);
}
static inline int sl_storage_aborted(const sl_storage *s, sl_spart *p, int64_t from, int64_t to,
                                     sl_arena *a, sl_spart_aborted **out) {
    *out = NULL;
    return s->ops->aborted ? s->ops->aborted(s->ctx, p, from, to, a, out) : 0;
}

/* ---- topic administration ----
 *
 * What CreateTopics, DeleteTopics and CreatePartitions need: the backend validates what only it
 * can (names, existence, partition counts, replication factors, config names and values) and
 * changes its topics; the handlers keep the request's semantics (authorization, duplicates in
 * one request, replica assignments against the request, response shapes). Every change is
 * asynchronous: the backend may create or delete off the loop (or upstream), and the completion
 * runs exactly once, on the loop thread, with a Kafka error code; it may run before the call
 * returns. The caller's arena `a` holds the backend's bookkeeping and what the completion is
 * handed, so it must live until the completion ran (a request's arena does). */

/* A config as the wire carries it (CreateTopics, DescribeConfigs, AlterConfigs). */
typedef struct sl_config_entry {
    sl_str name;
    sl_str value;    /* null: none */
    bool is_default; /* the backend's default, not an override */
} sl_config_entry;

typedef struct sl_new_topic {
    sl_str name;
    int32_t num_partitions;         /* -1: the backend's default */
    int16_t replication_factor;     /* -1: the backend's default */
    const sl_config_entry *configs; /* overrides, name and value each */
    int32_t nconfigs;
} sl_new_topic;

/* What a creation did (or, with validate_only, would do). The strings and arrays live in the
 * caller's arena. */
typedef struct sl_topic_created {
    int16_t error;
    sl_str message; /* null: none */
    sl_uuid id;     /* zero with validate_only */
    int32_t num_partitions;
    int16_t replication_factor;
    sl_config_entry *configs; /* the topic's effective configs; NULL with validate_only */
    int32_t nconfigs;
} sl_topic_created;

typedef void (*sl_topic_created_fn)(void *ctx, const sl_topic_created *r);
/* The completion of a deletion or partition change; `message` (null: none) lives in the
 * caller's arena. */
typedef void (*sl_admin_done_fn)(void *ctx, int16_t err, sl_str message);

typedef struct sl_topic_admin_ops {
    /* The name and id of the topic named `name`, or with id `id` when `id` is not NULL (so the
     * handler can authorize a deletion by id on the name): UNKNOWN_TOPIC_OR_PARTITION or
     * UNKNOWN_TOPIC_ID when none exists. The name is copied into `a`. */
    int16_t (*resolve)(void *ctx, sl_str name, const sl_uuid *id, sl_arena *a, sl_str *name_out,
                       sl_uuid *id_out);
    /* Creates `t` (copied before the call returns), or only validates it. */
    void (*create_topic)(void *ctx, const sl_new_topic *t, bool validate_only, sl_arena *a,
                         sl_topic_created_fn done, void *dctx);
    /* Deletes the topic named `name`; what was parked on its partitions completes first. */
    void (*delete_topic)(void *ctx, sl_str name, sl_arena *a, sl_admin_done_fn done, void *dctx);
    /* Grows the topic named `name` to `count` partitions, or only validates that.
     * `nassignments` is how many replica assignments the request gave (0: none); when some,
     * there must be one per new partition. */
    void (*add_partitions)(void *ctx, sl_str name, int32_t count, int32_t nassignments,
                           bool validate_only, sl_arena *a, sl_admin_done_fn done, void *dctx);
} sl_topic_admin_ops;

/* A backend's topic administration: its operations and their context. Owned by the backend. */
typedef struct sl_topic_admin {
    const sl_topic_admin_ops *ops;
    void *ctx;
} sl_topic_admin;

static inline int16_t sl_admin_resolve(const sl_topic_admin *s, sl_str name, const sl_uuid *id,
                                       sl_arena *a, sl_str *name_out, sl_uuid *id_out) {
    return s->ops->resolve(s->ctx, name, id, a, name_out, id_out);
}
static inline void sl_admin_create_topic(const sl_topic_admin *s, const sl_new_topic *t,
                                         bool validate_only, sl_arena *a, sl_topic_created_fn done,
                                         void *dctx) {
    s->ops->create_topic(s->ctx, t, validate_only, a, done, dctx);
}
static inline void sl_admin_delete_topic(const sl_topic_admin *s, sl_str name, sl_arena *a,
                                         sl_admin_done_fn done, void *dctx) {
    s->ops->delete_topic(s->ctx, name, a, done, dctx);
}
static inline void sl_admin_add_partitions(const sl_topic_admin *s, sl_str name, int32_t count,
                                           int32_t nassignments, bool validate_only, sl_arena *a,
                                           sl_admin_done_fn done, void *dctx) {
    s->ops->add_partitions(s->ctx, name, count, nassignments, validate_only, a, done, dctx);
}

/* ---- group coordination ----
 *
 * What the classic group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
 * OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete) need from whatever
 * coordinates groups. The local broker implements it over its state machine and offsets log
 * (src/broker/sl_groups_local.c); the gateway over an upstream coordinator. Handlers keep the
 * request semantics (authorization answers, versions, response shapes).
 *
 * Strings and byte ranges handed to a callback are views valid during the call only. Answers
 * that wait (a join or sync for the rest of the group, a change waiting for durability) arrive
 * through a completion that runs exactly once on the loop thread, possibly before the call
 * returns, possibly for another connection's request than the one being executed (so the
 * completion only answers its own request). The caller's arena `a` holds the backend's
 * bookkeeping for it and must live until the completion ran. An operation that returns an error
 * runs no completion. */

typedef struct sl_group_protocol {
    sl_str name;
    sl_bytes metadata;
} sl_group_protocol;

/* A member as a JoinGroup leader or DescribeGroups sees it. */
typedef struct sl_group_member {
    sl_str member_id, instance_id, client_id, client_host;
    sl_bytes metadata;   /* for the selected protocol */
    sl_bytes assignment; /* DescribeGroups only */
} sl_group_member;

typedef struct sl_group_join_args {
    sl_str group_id, member_id, instance_id, client_id, client_host, protocol_type, reason;
    int32_t session_timeout_ms, rebalance_timeout_ms; /* rebalance -1: the session's */
    const sl_group_protocol *protocols;
    int32_t nprotocols;
    bool require_known_member_id;  /* JoinGroup v4+ */
    bool supports_skip_assignment; /* JoinGroup v9+ */
} sl_group_join_args;

typedef struct sl_group_join_result {
    int16_t error;
    int32_t generation;
    sl_str protocol_type, protocol_name; /* null on error */
    sl_str leader, member_id;
    bool skip_assignment;
    const sl_group_member *members; /* the leader's answer only */
    int32_t nmembers;
} sl_group_join_result;

typedef struct sl_group_assignment {
    sl_str member_id;
    sl_bytes assignment;
} sl_group_assignment;

typedef struct sl_group_sync_args {
    sl_str group_id, member_id, instance_id;
    int32_t generation;
    sl_str protocol_type, protocol_name; /* null when the request version lacks them */
    const sl_group_assignment *assignments;
    int32_t nassignments;
} sl_group_sync_args;

typedef struct sl_group_sync_result {
    int16_t error;
    sl_str protocol_type, protocol_name;
    sl_bytes assignment;
} sl_group_sync_result;

/* One member of a LeaveGroup; `error` is the backend's answer for it. */
typedef struct sl_group_leaver {
    sl_str member_id, instance_id;
    int16_t error;
} sl_group_leaver;

/* One partition of an OffsetCommit or OffsetDelete. `error` set by the caller (authorization,
 * the group check) leaves the partition alone; otherwise the backend answers in it. */
typedef struct sl_group_offset {
    sl_str topic;
    int32_t partition;
    int64_t offset;       /* commit only */
    int32_t leader_epoch; /* commit only; -1: none */
    sl_str metadata;      /* commit only; null: none */
    int16_t error;
} sl_group_offset;

/* A committed offset: offset -1 when none. metadata null: none. */
typedef struct sl_group_committed {
    int64_t offset;
    int32_t leader_epoch;
    sl_str metadata;
} sl_group_committed;

/* A group as listed; `state` is Kafka's name ("Stable", "Empty", ...). */
typedef struct sl_group_summary {
    sl_str group_id, protocol_type;
    const char *state;
} sl_group_summary;

typedef struct sl_group_description {
    const char *state;
    sl_str protocol_type, protocol_name;
    const sl_group_member *members;
    int32_t nmembers;
} sl_group_description;

typedef void (*sl_group_join_fn)(void *ctx, const sl_group_join_result *r);
typedef void (*sl_group_sync_fn)(void *ctx, const sl_group_sync_result *r);
/* The completion of a change that waits for durability: `err` 0 once it is durable, else the
 * Kafka error for whatever the change had answered with success. */
typedef void (*sl_group_done_fn)(void *ctx, int16_t err);

typedef struct sl_groups_ops {
    /* INVALID_GROUP_ID for an id no group can have, else 0. */
    int16_t (*check_group)(void *ctx, sl_str group);
    /* A JoinGroup (`j` is copied before the call returns); answered through `done` once the
     * rebalance it takes part in allows. Error: out of memory. */
    int16_t (*join)(void *ctx, const sl_group_join_args *j, sl_arena *a, sl_group_join_fn done,
                    void *dctx);
    /* A SyncGroup, likewise. */
    int16_t (*sync)(void *ctx, const sl_group_sync_args *s, sl_arena *a, sl_group_sync_fn done,
                    void *dctx);
    int16_t (*heartbeat)(void *ctx, sl_str group, int32_t generation, sl_str member_id,
                         sl_str instance_id);
    /* The members leave (each one's error in its `error`); `done` runs when the answer may go
     * (after the group's record is durable when they emptied it; its error is not the
     * leavers'). Error: out of memory, nobody left. */
    int16_t (*leave)(void *ctx, sl_str group, sl_group_leaver *m, int32_t n, sl_arena *a,
                     sl_group_done_fn done, void *dctx);
    /* Whether (generation, member, instance) may commit to `group`: the group-level error. */
    int16_t (*commit_check)(void *ctx, sl_str group, int32_t generation, sl_str member_id,
                            sl_str instance_id);
    /* Commits the partitions without an error yet (after commit_check), answering each in
     * `error`; `done` runs once the commits are durable (at once when none was stored).
     * Error: out of memory, nothing committed. */
    int16_t (*commit)(void *ctx, sl_str group, sl_group_offset *o, int32_t n, sl_arena *a,
                      sl_group_done_fn done, void *dctx);
    /* The committed offset of one partition into *out (offset -1: none). */
    void (*committed)(void *ctx, sl_str group, sl_str topic, int32_t partition,
                      sl_group_committed *out);
    /* Every committed partition of `group`. */
    void (*each_committed)(void *ctx, sl_str group,
                           void (*fn)(void *arg, sl_str topic, int32_t partition,
                                      const sl_group_committed *c),
                           void *arg);
    /* Every live group. */
    void (*list)(void *ctx, void (*fn)(void *arg, const sl_group_summary *g), void *arg);
    /* Describes `group` into `fn`; false (no call) when it is unknown. */
    bool (*describe)(void *ctx, sl_str group, void (*fn)(void *arg, const sl_group_description *d),
                     void *arg);
    /* Deletes the groups without an error yet, answering each in errors[i]; `done` runs once
     * the deletions are durable. Error: out of memory, nothing deleted. */
    int16_t (*delete_groups)(void *ctx, const sl_str *groups, int16_t *errors, int32_t n,
                             sl_arena *a, sl_group_done_fn done, void *dctx);
    /* OffsetDelete's group-level error (the group must exist and be empty or not subscribed). */
    int16_t (*offset_delete_check)(void *ctx, sl_str group);
    /* Removes the partitions' offsets (those without an error yet), answering each in `error`;
     * `done` runs once that is durable. Error: out of memory, nothing removed. */
    int16_t (*offset_delete)(void *ctx, sl_str group, sl_group_offset *o, int32_t n, sl_arena *a,
                             sl_group_done_fn done, void *dctx);
} sl_groups_ops;

/* A backend's group coordination: its operations and their context. Owned by the backend. */
typedef struct sl_groups {
    const sl_groups_ops *ops;
    void *ctx;
} sl_groups;

static inline int16_t sl_groups_check_group(const sl_groups *g, sl_str group) {
    return g->ops->check_group(g->ctx, group);
}
static inline int16_t sl_groups_join(const sl_groups *g, const sl_group_join_args *j, sl_arena *a,
                                     sl_group_join_fn done, void *dctx) {
    return g->ops->join(g->ctx, j, a, done, dctx);
}
static inline int16_t sl_groups_sync(const sl_groups *g, const sl_group_sync_args *s, sl_arena *a,
                                     sl_group_sync_fn done, void *dctx) {
    return g->ops->sync(g->ctx, s, a, done, dctx);
}
static inline int16_t sl_groups_heartbeat(const sl_groups *g, sl_str group, int32_t generation,
                                          sl_str member_id, sl_str instance_id) {
    return g->ops->heartbeat(g->ctx, group, generation, member_id, instance_id);
}
static inline int16_t sl_groups_leave(const sl_groups *g, sl_str group, sl_group_leaver *m,
                                      int32_t n, sl_arena *a, sl_group_done_fn done, void *dctx) {
    return g->ops->leave(g->ctx, group, m, n, a, done, dctx);
}
static inline int16_t sl_groups_commit_check(const sl_groups *g, sl_str group, int32_t generation,
                                             sl_str member_id, sl_str instance_id) {
    return g->ops->commit_check(g->ctx, group, generation, member_id, instance_id);
}
static inline int16_t sl_groups_commit(const sl_groups *g, sl_str group, sl_group_offset *o,
                                       int32_t n, sl_arena *a, sl_group_done_fn done, void *dctx) {
    return g->ops->commit(g->ctx, group, o, n, a, done, dctx);
}
static inline void sl_groups_committed(const sl_groups *g, sl_str group, sl_str topic,
                                       int32_t partition, sl_group_committed *out) {
    g->ops->committed(g->ctx, group, topic, partition, out);
}
static inline void sl_groups_each_committed(const sl_groups *g, sl_str group,
                                            void (*fn)(void *arg, sl_str topic, int32_t partition,
                                                       const sl_group_committed *c),
                                            void *arg) {
    g->ops->each_committed(g->ctx, group, fn, arg);
}
static inline void sl_groups_list(const sl_groups *g,
                                  void (*fn)(void *arg, const sl_group_summary *s), void *arg) {
    g->ops->list(g->ctx, fn, arg);
}
static inline bool sl_groups_describe(const sl_groups *g, sl_str group,
                                      void (*fn)(void *arg, const sl_group_description *d),
                                      void *arg) {
    return g->ops->describe(g->ctx, group, fn, arg);
}
static inline int16_t sl_groups_delete(const sl_groups *g, const sl_str *groups, int16_t *errors,
                                       int32_t n, sl_arena *a, sl_group_done_fn done, void *dctx) {
    return g->ops->delete_groups(g->ctx, groups, errors, n, a, done, dctx);
}
static inline int16_t sl_groups_offset_delete_check(const sl_groups *g, sl_str group) {
    return g->ops->offset_delete_check(g->ctx, group);
}
static inline int16_t sl_groups_offset_delete(const sl_groups *g, sl_str group, sl_group_offset *o,
                                              int32_t n, sl_arena *a, sl_group_done_fn done,
                                              void *dctx) {
    return g->ops->offset_delete(g->ctx, group, o, n, a, done, dctx);
}

/* ---- topic metadata, configuration, cluster and producer ids ----
 *
 * What Metadata, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster and
 * InitProducerId need. The handlers keep the request semantics (authorization answers, the
 * serving process's own endpoints and node id, which versions carry what); the backend knows
 * its topics, their configs and its own settings. Answers are immediate: strings handed out
 * are views valid for the loop callback that asked, unless copied into the caller's arena `a`. */

typedef struct sl_topic_desc {
    sl_str name;
    sl_uuid id;
    int32_t partitions;
} sl_topic_desc;

/* DescribeConfigs' config sources and types (Kafka's numbering). */
enum {
    SL_CONFIG_SRC_DYNAMIC_TOPIC = 1,
    SL_CONFIG_SRC_STATIC_BROKER = 4,
    SL_CONFIG_SRC_DEFAULT = 5,
};
enum {
    SL_CONFIG_TYPE_BOOLEAN = 1,
    SL_CONFIG_TYPE_STRING = 2,
    SL_CONFIG_TYPE_INT = 3,
    SL_CONFIG_TYPE_LONG = 5,
    SL_CONFIG_TYPE_LIST = 7,
};

typedef struct sl_config_synonym {
    sl_str name, value;
    int8_t source;
} sl_config_synonym;

/* One config as DescribeConfigs reports it; strings in the caller's arena or static. */
typedef struct sl_config_desc {
    sl_str name, value; /* value null: none */
    bool is_default, read_only, is_sensitive;
    int8_t source, type;
    const char *doc;               /* static; NULL: none */
    sl_config_synonym synonyms[2]; /* the override, then the broker default it overrides */
    int32_t nsynonyms;
} sl_config_desc;

/* One change of an (Incremental)AlterConfigs: op 0 SET, 1 DELETE (anything else is invalid,
 * no key being list-valued). */
typedef struct sl_config_alter {
    sl_str name, value;
    int8_t op;
} sl_config_alter;

/* Which config names a describe wants: NULL `want` means all. */
typedef bool (*sl_config_want_fn)(void *arg, const char *name);

typedef struct sl_topics_meta_ops {
    const char *(*cluster_id)(void *ctx);
    /* The topic named `name`, or with id `id` when `id` is not NULL: UNKNOWN_TOPIC_OR_PARTITION
     * or UNKNOWN_TOPIC_ID when none exists. */
    int16_t (*describe_topic)(void *ctx, sl_str name, const sl_uuid *id, sl_topic_desc *out);
    void (*each_topic)(void *ctx, void (*fn)(void *arg, const sl_topic_desc *t), void *arg);
    /* Whether a Metadata request naming a missing topic creates it. */
    bool (*auto_create_enabled)(void *ctx);
    /* Creates `name` for a Metadata request (with the defaults): INVALID_TOPIC_EXCEPTION for a
     * name no topic may have, UNKNOWN_TOPIC_OR_PARTITION when it cannot. */
    int16_t (*auto_create)(void *ctx, sl_str name, sl_topic_desc *out);
    /* The topic's configs (`want`ed ones) into an array in `a`, with synonyms when asked. */
    int16_t (*topic_configs)(void *ctx, sl_str topic, sl_config_want_fn want, void *arg,
                             bool synonyms, sl_arena *a, sl_config_desc **out, int32_t *n);
    /* The broker's configs; `broker` empty or this broker's id, else INVALID_REQUEST with
     * *message set. */
    int16_t (*broker_configs)(void *ctx, sl_str broker, sl_config_want_fn want, void *arg,
                              bool docs, sl_arena *a, sl_config_desc **out, int32_t *n,
                              sl_str *message);
    /* Applies the changes (or only validates them) all or nothing; `replace`: the SETs become
     * the whole set of overrides (AlterConfigs). INVALID_CONFIG names the culprit in *bad. */
    int16_t (*alter_topic_configs)(void *ctx, sl_str topic, const sl_config_alter *c, int32_t n,
                                   bool replace, bool validate_only, sl_str *bad);
    int16_t (*alter_broker_configs)(void *ctx, sl_str broker, const sl_config_alter *c, int32_t n,
                                    bool validate_only, sl_str *bad);
    /* An idempotent producer's id and epoch: a new id for pid -1 (or an id never issued, or an
     * exhausted epoch), else the same id at the next epoch (KIP-360). */
    int16_t (*init_producer_id)(void *ctx, int64_t pid, int16_t epoch, int64_t *pid_out,
                                int16_t *epoch_out);
} sl_topics_meta_ops;

/* A backend's metadata and configuration: its operations and their context. */
typedef struct sl_topics_meta {
    const sl_topics_meta_ops *ops;
    void *ctx;
} sl_topics_meta;

static inline const char *sl_meta_cluster_id(const sl_topics_meta *m) {
    return m->ops->cluster_id(m->ctx);
}
static inline int16_t sl_meta_describe_topic(const sl_topics_meta *m, sl_str name,
                                             const sl_uuid *id, sl_topic_desc *out) {
    return m->ops->describe_topic(m->ctx, name, id, out);
}
static inline void sl_meta_each_topic(const sl_topics_meta *m,
                                      void (*fn)(void *arg, const sl_topic_desc *t), void *arg) {
    m->ops->each_topic(m->ctx, fn, arg);
}
static inline bool sl_meta_auto_create_enabled(const sl_topics_meta *m) {
    return m->ops->auto_create_enabled(m->ctx);
}
static inline int16_t sl_meta_auto_create(const sl_topics_meta *m, sl_str name,
                                          sl_topic_desc *out) {
    return m->ops->auto_create(m->ctx, name, out);
}
static inline int16_t sl_meta_topic_configs(const sl_topics_meta *m, sl_str topic,
                                            sl_config_want_fn want, void *arg, bool synonyms,
                                            sl_arena *a, sl_config_desc **out, int32_t *n) {
    return m->ops->topic_configs(m->ctx, topic, want, arg, synonyms, a, out, n);
}
static inline int16_t sl_meta_broker_configs(const sl_topics_meta *m, sl_str broker,
                                             sl_config_want_fn want, void *arg, bool docs,
                                             sl_arena *a, sl_config_desc **out, int32_t *n,
                                             sl_str *message) {
    return m->ops->broker_configs(m->ctx, broker, want, arg, docs, a, out, n, message);
}
static inline int16_t sl_meta_alter_topic_configs(const sl_topics_meta *m, sl_str topic,
                                                  const sl_config_alter *c, int32_t n, bool replace,
                                                  bool validate_only, sl_str *bad) {
    return m->ops->alter_topic_configs(m->ctx, topic, c, n, replace, validate_only, bad);
}
static inline int16_t sl_meta_alter_broker_configs(const sl_topics_meta *m, sl_str broker,
                                                   const sl_config_alter *c, int32_t n,
                                                   bool validate_only, sl_str *bad) {
    return m->ops->alter_broker_configs(m->ctx, broker, c, n, validate_only, bad);
}
static inline int16_t sl_meta_init_producer_id(const sl_topics_meta *m, int64_t pid, int16_t epoch,
                                               int64_t *pid_out, int16_t *epoch_out) {
    return m->ops->init_producer_id(m->ctx, pid, epoch, pid_out, epoch_out);
}

#endif
