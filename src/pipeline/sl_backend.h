/* The storage backend seam, data path: what the Produce, Fetch, ListOffsets,
 * OffsetForLeaderEpoch and DeleteRecords handlers need from whatever stores partitions. The
 * local broker implements it over its logs, flusher and producer state
 * (src/broker/sl_storage_local.c); `sluice gateway` will implement it over an upstream cluster.
 * Handlers keep Kafka's request semantics (authorization answers, budgets, the record-set
 * transform chain of sl_xform.h); the backend only stores and reads.
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
} sl_spart_offsets;

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

#endif
