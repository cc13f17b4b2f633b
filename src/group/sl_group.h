/* The classic consumer-group coordinator: group membership state machine (Empty,
 * PreparingRebalance, CompletingRebalance, Stable, Dead) and committed offsets, kept in memory.
 *
 * Independent of the network and of wall time: the clock is a function pointer, time-driven
 * transitions happen in sl_gc_tick(), and everything the coordinator says later (delayed JoinGroup
 * and SyncGroup answers, offsets to persist) goes out through callbacks in sl_gc_env. The broker
 * glue (src/broker/sl_groups_local.c) owns the real timers, the handlers the wire codecs;
 * unit tests drive it with a fake clock.
 *
 * Ownership: the coordinator copies every string and byte range it keeps; views it hands to
 * callbacks are valid only during the callback. Waiters (`void *waiter`) are opaque to it: each
 * waiter given to sl_gc_join/sl_gc_sync is answered exactly once through join_done/sync_done,
 * except by sl_gc_free, which drops them unanswered. Single-threaded. */
#ifndef SL_GROUP_H
#define SL_GROUP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_err.h"

typedef enum {
    SL_GS_EMPTY,
    SL_GS_PREPARING,  /* PreparingRebalance: collecting JoinGroups */
    SL_GS_COMPLETING, /* CompletingRebalance: waiting for the leader's SyncGroup */
    SL_GS_STABLE,
    SL_GS_DEAD,
} sl_group_state;
const char *sl_group_state_name(sl_group_state s); /* Kafka's spelling, e.g. "Stable" */
/* Parses a state name case-insensitively; -1 if unknown. */
int sl_group_state_parse(sl_str s);

typedef struct sl_gc sl_gc;

typedef struct sl_gc_protocol {
    sl_str name;
    sl_bytes metadata;
} sl_gc_protocol;

/* One member as a JoinGroup leader (or DescribeGroups) sees it. */
typedef struct sl_gc_member_view {
    sl_str member_id, instance_id, client_id, client_host;
    sl_bytes metadata;   /* for the selected protocol */
    sl_bytes assignment; /* DescribeGroups and group records only */
    /* Group records only (persist_group, sl_gc_group_load): everything a restart needs to
     * carry on with the member as it was. */
    int32_t session_timeout_ms, rebalance_timeout_ms;
    const sl_gc_protocol *protocols;
    int32_t nprotocols;
} sl_gc_member_view;

/* A group as listed, described, or persisted (a group record). */
typedef struct sl_gc_group_view {
    sl_str group_id, protocol_type, protocol_name;
    sl_group_state state;
    int32_t generation;
    sl_str leader;
    const sl_gc_member_view *members;
    int32_t nmembers;
    int64_t state_ms; /* when the group entered `state` (group records only) */
} sl_gc_group_view;

typedef struct sl_gc_join_result {
    int16_t error;
    int32_t generation;
    sl_str protocol_type, protocol_name; /* null on error */
    sl_str leader, member_id;
    bool skip_assignment;
    const sl_gc_member_view *members; /* leader only */
    int32_t nmembers;
} sl_gc_join_result;

typedef struct sl_gc_sync_result {
    int16_t error;
    sl_str protocol_type, protocol_name;
    sl_bytes assignment;
} sl_gc_sync_result;

/* A committed offset. metadata.len == -1: null. */
typedef struct sl_gc_offset {
    int64_t offset;
    int32_t leader_epoch;
    sl_str metadata;
    int64_t commit_ms;
} sl_gc_offset;

typedef struct sl_gc_env {
    void *ctx;
    int64_t (*now)(void *ctx); /* milliseconds; wall-clock in the broker (offsets expire across
                                  restarts by commit time) */
    void (*join_done)(void *ctx, void *waiter, const sl_gc_join_result *r);
    void (*sync_done)(void *ctx, void *waiter, const sl_gc_sync_result *r);
    /* An offset changed (val) or was removed (val NULL): called for commits, deletes and
     * expiry, never for sl_gc_offset_load. May be NULL. */
    void (*persist)(void *ctx, sl_str group, sl_str topic, int32_t partition,
                    const sl_gc_offset *val);
    /* The group's metadata must be stored (g, state Stable or Empty) or removed (g NULL): called
     * when a generation completes (the leader's SyncGroup), when the group becomes Empty, when a
     * static member's id is replaced in a Stable group, and when the group is deleted or
     * expires; never for a heartbeat, never during sl_gc_group_load. It is called before any
     * join_done/sync_done that the same change causes, so the caller can hold those answers
     * until the record is durable. May be NULL. */
    void (*persist_group)(void *ctx, sl_str group, const sl_gc_group_view *g);
} sl_gc_env;

typedef struct sl_gc_config {
    int32_t min_session_timeout_ms, max_session_timeout_ms;
    int32_t initial_rebalance_delay_ms;
    int64_t offsets_retention_ms;
    int64_t offsets_retention_check_interval_ms;
} sl_gc_config;

/* Caller owns the result (sl_gc_free). `env` and `cfg` are copied. NULL on OOM. */
sl_gc *sl_gc_new(const sl_gc_env *env, const sl_gc_config *cfg);
/* Frees everything; pending waiters are dropped without callbacks. */
void sl_gc_free(sl_gc *gc);
/* Answers every pending JoinGroup/SyncGroup with `error` (shutdown), members stay. */
void sl_gc_abort_waiters(sl_gc *gc, int16_t error);

/* Runs every transition due at now(): session expiry, rebalance (join/sync) timeouts, the
 * initial rebalance delay, offset expiry. */
void sl_gc_tick(sl_gc *gc);
/* The earliest time sl_gc_tick has something to do (INT64_MAX: nothing). */
int64_t sl_gc_next_deadline(sl_gc *gc);

typedef struct sl_gc_join_req {
    sl_str group_id, member_id, instance_id, client_id, client_host, protocol_type, reason;
    int32_t session_timeout_ms, rebalance_timeout_ms;
    const sl_gc_protocol *protocols;
    int32_t nprotocols;
    bool require_known_member_id;  /* JoinGroup v4+ */
    bool supports_skip_assignment; /* JoinGroup v9+ */
} sl_gc_join_req;
/* Answers through join_done(waiter), now or later. */
void sl_gc_join(sl_gc *gc, const sl_gc_join_req *r, void *waiter);

typedef struct sl_gc_assignment {
    sl_str member_id;
    sl_bytes assignment;
} sl_gc_assignment;
/* protocol_type/protocol_name: null when the request version does not carry them. */
void sl_gc_sync(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                sl_str instance_id, sl_str protocol_type, sl_str protocol_name,
                const sl_gc_assignment *assignments, int32_t nassignments, void *waiter);

int16_t sl_gc_heartbeat(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                        sl_str instance_id);
/* One member leaving; returns its error. */
int16_t sl_gc_leave(sl_gc *gc, sl_str group_id, sl_str member_id, sl_str instance_id);
/* Top-level error for a LeaveGroup batch against a group (GROUP_ID_NOT_FOUND-style errors are
 * per member in Kafka, so this only checks the group id). */
int16_t sl_gc_check_group_id(sl_str group_id);

/* Validates an OffsetCommit from (generation, member, instance); on success the caller commits
 * each partition with sl_gc_offset_commit. Creates the group for simple commits. */
int16_t sl_gc_commit_check(sl_gc *gc, sl_str group_id, int32_t generation, sl_str member_id,
                           sl_str instance_id);
/* Stores one offset (after sl_gc_commit_check) and calls persist. */
sl_err sl_gc_offset_commit(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                           int64_t offset, int32_t leader_epoch, sl_str metadata);
/* Restores one offset at startup (no persist); creates the group if needed. */
sl_err sl_gc_offset_load(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                         const sl_gc_offset *val);
/* Undoes a loaded offset (a tombstone met during replay; no persist); drops the group when
 * nothing is left of it. */
void sl_gc_offset_unload(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition);
/* The committed offset, or false when none. metadata stays valid until the next change. */
bool sl_gc_offset_get(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition,
                      sl_gc_offset *out);
/* Iterates a group's offsets: i from 0 until it returns false. */
bool sl_gc_offset_at(sl_gc *gc, sl_str group_id, int32_t i, sl_str *topic, int32_t *partition,
                     sl_gc_offset *out);
int32_t sl_gc_offset_count(sl_gc *gc, sl_str group_id);

/* Restores a group record at startup (no persist): its members, generation, protocol and
 * leader replace whatever the group had (its offsets stay; the group is created if needed).
 * Only Stable and Empty records are accepted (SL_EINVAL otherwise). Every restored member's
 * session restarts now: one that never comes back expires a session timeout from now. */
sl_err sl_gc_group_load(sl_gc *gc, const sl_gc_group_view *g);
/* A group tombstone met during replay: forgets the group's metadata and drops the group when
 * no offsets are left (no persist). */
void sl_gc_group_unload(sl_gc *gc, sl_str group_id);
/* The group's record as persist_group would give it now, into `fn`; false when the group is
 * unknown or has nothing to persist (never completed a generation). For compaction. */
bool sl_gc_group_record(sl_gc *gc, sl_str group_id,
                        void (*fn)(void *ctx, const sl_gc_group_view *g), void *ctx);

/* DeleteGroups for one group: INVALID_GROUP_ID, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP or NONE
 * (its offsets are removed through persist). */
int16_t sl_gc_delete_group(sl_gc *gc, sl_str group_id);
/* OffsetDelete: top-level error (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) or NONE. */
int16_t sl_gc_offset_delete_check(sl_gc *gc, sl_str group_id);
/* Per partition: GROUP_SUBSCRIBED_TO_TOPIC when the group consumes the topic, else removes. */
int16_t sl_gc_offset_delete(sl_gc *gc, sl_str group_id, sl_str topic, int32_t partition);

/* Listing and describing. */
/* Visits every live group; the view is valid during the call. */
void sl_gc_list(sl_gc *gc, void (*fn)(void *ctx, const sl_gc_group_view *g), void *ctx);
/* Describes one group into `fn`; false when the group is unknown. */
bool sl_gc_describe(sl_gc *gc, sl_str group_id, void (*fn)(void *ctx, const sl_gc_group_view *g),
                    void *ctx);
int sl_gc_group_count(sl_gc *gc);

#endif
