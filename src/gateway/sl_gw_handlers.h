/* The gateway's control-path handlers (sl_gw_handlers.c): the parts that are pure functions over
 * decoded requests and answers, so they can be tested without an upstream. Loop thread only. */
#ifndef SL_GATEWAY_HANDLERS_H
#define SL_GATEWAY_HANDLERS_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "proto/gen/sl_msgs.h"

/* What the client may see of the resources an upstream answer names (topics or groups, per
 * API): the handlers decide it for the client principal with sl_authorize_late. */
typedef struct sl_gw_authz {
    void *ctx;
    /* 0 when the client may DESCRIBE `name`; otherwise the error its entry gets. */
    int16_t (*deny)(void *ctx, sl_str name);
    /* Kafka's authorized-operations bitfield of `name` for the client. */
    int32_t (*ops)(void *ctx, sl_str name);
} sl_gw_authz;

/* The upstream's supported range of `key`; false when it does not serve it. */
typedef bool (*sl_gw_range_fn)(void *ctx, int16_t key, int16_t *min, int16_t *max);

/* ApiVersions in gateway mode: for each API descriptor the gateway executes (sl_gw_exec), in
 * descriptor order, into `out` (room for every descriptor). Local APIs (ApiVersions, SASL, the
 * ACL and SCRAM credential APIs, which act on the gateway's own stores) keep their descriptor's
 * range; forwarded ones get the intersection with the upstream's range and are left out when
 * the upstream lacks them or the intersection is empty; Produce starts at v3 and Fetch at v4
 * (magic-2 record batches only). While the upstream's versions are unknown (`known` false) only
 * ApiVersions and SASL are listed. Returns the count. */
int32_t sl_gw_advertised(bool known, sl_gw_range_fn range, void *ctx,
                         sl_api_versions_resp_api_key *out);

/* A topic of a Metadata request answered by the gateway itself (denied), as the request named
 * it: by name, or (name null) by id. */
typedef struct sl_gw_local_topic {
    sl_str name;
    sl_uuid id;
    int16_t error;
} sl_gw_local_topic;

/* Metadata: turns the upstream's answer `m` (to the forwarded, possibly stripped request) into
 * the client's answer to `req`, in place (new arrays in `a`):
 *  - `all` (every topic asked for): the topics `az` denies are left out without a word;
 *  - named topics: an upstream entry `az` denies becomes TOPIC_AUTHORIZATION_FAILED, named as
 *    the request named it (by id: name null, so an id does not reveal its name), and entries
 *    the request did not ask for are dropped; then the `nlocal` local entries are appended;
 *  - TopicAuthorizedOperations: `az->ops` for each listed topic without an error when
 *    `want_ops`, else INT32_MIN (the upstream computed them for the gateway's identity).
 * False when out of memory. */
bool sl_gw_metadata_merge(sl_arena *a, const sl_metadata_req *req, bool all, bool want_ops,
                          const sl_gw_local_topic *local, int32_t nlocal, const sl_gw_authz *az,
                          sl_metadata_resp *m);

/* ListGroups: leaves out the groups `az` denies (in place). */
void sl_gw_list_groups_filter(sl_list_groups_resp *m, const sl_gw_authz *az);

/* DescribeGroups: the answer to `req` in request order: groups `az` denies get
 * GROUP_AUTHORIZATION_FAILED (they were not forwarded), the others the upstream's entry (an
 * entry missing from it: COORDINATOR_NOT_AVAILABLE, retriable), with AuthorizedOperations from
 * `az->ops` when `want_ops`, else INT32_MIN. False when out of memory. */
bool sl_gw_describe_groups_merge(sl_arena *a, const sl_describe_groups_req *req, bool want_ops,
                                 const sl_gw_authz *az, sl_describe_groups_resp *m);

/* DescribeTransactions: the answer to `req` in request order (as Kafka's KafkaApis answers):
 * ids `txn` denies get TRANSACTIONAL_ID_AUTHORIZATION_FAILED (they were not forwarded), the
 * others the upstream's entry (an id missing from it: COORDINATOR_NOT_AVAILABLE, retriable) with
 * the topics `topic` denies left out of its partitions. Upstream entries the request did not ask
 * for are dropped. False when out of memory. */
bool sl_gw_describe_transactions_merge(sl_arena *a, const sl_describe_transactions_req *req,
                                       const sl_gw_authz *txn, const sl_gw_authz *topic,
                                       sl_describe_transactions_resp *m);

/* ListTransactions: leaves out the transactional ids `az` denies (in place). */
void sl_gw_list_transactions_filter(sl_list_transactions_resp *m, const sl_gw_authz *az);

/* AddPartitionsToTxn is all or nothing (Kafka's KafkaApis): `txn_err` (the transactional id's
 * denial, 0 when allowed) fails every partition; otherwise, with any topic `az` denies (WRITE),
 * nothing is added: a denied topic's partitions get its error, every other partition
 * OPERATION_NOT_ATTEMPTED, in request order. Returns 1 when nothing is denied (the request is
 * forwarded as is), 0 with the gateway's answer in `m`, -1 when out of memory. */
int sl_gw_add_partitions_to_txn_local(sl_arena *a, const sl_add_partitions_to_txn_req *q,
                                      int16_t txn_err, const sl_gw_authz *az,
                                      sl_add_partitions_to_txn_resp *m);

#endif
