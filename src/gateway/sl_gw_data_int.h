/* The pure steps of the gateway's data path (sl_gw_data.c), over decoded requests and answers:
 * what to strip and answer locally, what to forward, how the upstream's answer and the local
 * entries merge into Kafka's shape, and where the record transforms run. No I/O: the request's
 * decisions, the gateway's chains and its catalog come in through an sl_gw_env, so tests can
 * bind fakes (tests/unit/test_gw_data.c).
 *
 * Conventions: everything is allocated in env->a; strings and record sets are borrowed from the
 * request or the answer. A "mirror" answer has the request's shape (topic i, partition j of the
 * answer are the request's), which is what the descriptors' outcomes (sl_api.c) expect; in a
 * mirror, a partition answered locally is one whose error_code is set by the plan, and merge
 * fills only the others. */
#ifndef SL_GATEWAY_DATA_INT_H
#define SL_GATEWAY_DATA_INT_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_xform.h"

struct sl_req;

typedef struct sl_gw_env {
    void *ctx;
    /* The authorization stage's decision for a topic the request named, with the API's
     * operation (Produce WRITE, Fetch READ, ListOffsets/OffsetForLeaderEpoch DESCRIBE,
     * DeleteRecords DELETE). */
    bool (*allowed)(void *ctx, sl_str topic);
    /* Fetch: decides READ on topics an answer carries that the request did not name (the other
     * partitions of an incremental fetch session): ok[i] for names[i]. */
    void (*decide_extra)(void *ctx, const sl_str *names, int32_t n, bool *ok);
    /* Fetch v13+: the name of a topic id, valid for the request's life (the plan keeps it
     * until the upstream answers); false when the catalog does not know it. */
    bool (*topic_name)(void *ctx, const sl_uuid *id, sl_str *name);
    /* The transform chain of a topic (sl_gw_chain), NULL when none applies. */
    const sl_xform_chain *(*chain)(void *ctx, sl_str topic);
    sl_arena *a;
    const struct sl_req *rq; /* handed to the transforms (NULL in tests) */
    int64_t now_ms;
    int64_t max_bytes; /* produce: the bound for validation (the upstream enforces its own) */
} sl_gw_env;

/* ---- Produce ---- */
typedef struct sl_gw_produce_plan {
    sl_produce_req fwd;     /* what goes upstream: the allowed partitions the chain accepted */
    sl_produce_resp mirror; /* the client's answer; local partitions already carry their error */
    int32_t nlocal, nfwd;   /* partitions answered locally / forwarded */
    bool rewrite;           /* fwd differs from the request: re-encode it (else forward as is) */
} sl_gw_produce_plan;

/* Plans a Produce (v3+): `all_err` (a transactional id denied WRITE) answers every partition
 * with it; topics denied get TOPIC_AUTHORIZATION_FAILED; the others run sl_xform_produce with
 * their chain (validation, field protection, seal): a refused set is answered with the error (and
 * the transform's reason as error_message from v8). False when out of memory. */
bool sl_gw_produce_plan_build(const sl_gw_env *e, const sl_produce_req *req, int16_t v,
                              int16_t all_err, sl_gw_produce_plan *pl);
/* Fills the forwarded partitions of pl->mirror from the upstream's answer (by topic name and
 * partition, in the request's order; a partition the upstream left out answers
 * UNKNOWN_SERVER_ERROR) and takes its throttle time and NodeEndpoints. */
void sl_gw_produce_merge(sl_gw_produce_plan *pl, const sl_produce_resp *up);

/* ---- Fetch ---- */
typedef struct sl_gw_fetch_plan {
    sl_fetch_req fwd; /* what goes upstream */
    int16_t *local;   /* per request topic: its local error (0: forwarded) */
    sl_str *names;    /* per request topic: its name (v13+: the catalog's; empty if unknown) */
    int32_t nlocal;   /* request topics answered locally */
    bool sessionless; /* partitions were stripped from a session fetch: forwarded 0/-1 */
} sl_gw_fetch_plan;

/* Plans a Fetch (v4+): `all_err` answers every request topic with it (a replica's fetch);
 * topics without READ get TOPIC_AUTHORIZATION_FAILED, ids the catalog does not know
 * UNKNOWN_TOPIC_ID. When any topic is stripped from a request that carries a fetch session (v7+,
 * session id or epoch other than 0/-1), the forwarded request is sessionless (0/-1, no forgotten
 * topics): the upstream session would no longer match the client's view of it. False when out
 * of memory. */
bool sl_gw_fetch_plan_build(const sl_gw_env *e, const sl_fetch_req *req, int16_t v, int16_t all_err,
                            sl_gw_fetch_plan *pl);

/* The client's answer from the upstream's `up` (NULL: nothing was forwarded): the request's
 * topics in its order (local entries at their place, each followed by the upstream's entries for
 * it), then the upstream's other topics (an incremental session's), which are authorized now
 * (env->decide_extra; denied ones lose their records, answer TOPIC_AUTHORIZATION_FAILED, and the
 * session is dropped: session id 0, so the client starts over with a full fetch, which is
 * planned above). Then each returned record set of a topic with a chain runs sl_xform_fetch
 * (unseal, unprotect) on an arena copy; an error fails that partition. v13+: each topic's name is
 * set from the catalog (not encoded; for the outcomes). *changed: the answer differs from `up`
 * (it must be re-encoded). False when out of memory. */
bool sl_gw_fetch_merge(const sl_gw_env *e, const sl_fetch_req *req, int16_t v,
                       const sl_gw_fetch_plan *pl, const sl_fetch_resp *up, sl_fetch_resp *out,
                       bool *changed);

/* ---- ListOffsets, OffsetForLeaderEpoch, DeleteRecords ----
 * plan: mirror of the request with denied topics (TOPIC_AUTHORIZATION_FAILED) or, with
 * `all_err`, every topic answered locally; fwd holds the others; *nlocal counts the local topics.
 * merge: fills the forwarded partitions from the upstream's answer (UNKNOWN_SERVER_ERROR for one
 * it left out) and takes its throttle time. */
#define SL_GW_OFFSETS_DECL(api)                                                                    \
    bool sl_gw_##api##_plan(const sl_gw_env *e, const sl_##api##_req *req, int16_t all_err,        \
                            sl_##api##_req *fwd, sl_##api##_resp *mirror, int32_t *nlocal);        \
    void sl_gw_##api##_merge(sl_##api##_resp *mirror, const sl_##api##_resp *up);
SL_GW_OFFSETS_DECL(list_offsets)
SL_GW_OFFSETS_DECL(offset_for_leader_epoch)
SL_GW_OFFSETS_DECL(delete_records)

/* True when a consumer may send this replica id (Kafka's consumer -1 and debugging -2); a
 * follower's id (>= 0) or anything else is refused: the gateway's upstream identity may hold
 * ClusterAction. */
static inline bool sl_gw_consumer_replica(int32_t replica_id) {
    return replica_id == -1 || replica_id == -2;
}

#endif
