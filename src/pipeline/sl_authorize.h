/* The authorization stage: one place where ACLs are consulted, for `serve` and `gateway` alike.
 *
 * Before a request executes, its API descriptor names every resource the request acts on, with
 * the operation (sl_req_need, from the descriptor's `resources` function). The stage then asks
 * the authorizer once per distinct (type, operation, name), records each decision in the
 * request's lifecycle (sl_req.h) and logs denials. Handlers never consult the authorizer: they
 * read the recorded decisions (sl_req_allowed, sl_req_ops) to shape Kafka's answer (per-topic
 * errors, listings that leave out what the caller may not see, cluster-level denials). A
 * decision asked for a resource the descriptor did not name is a denial (and an error in the
 * log): a handler cannot widen what was authorized. */
#ifndef SL_PIPELINE_AUTHORIZE_H
#define SL_PIPELINE_AUTHORIZE_H

/* The audit trail's topic (sluice.audit.sinks=topic). No client, super users included, may
 * write, delete, alter, reconfigure, create or delete records of it; reading and describing it
 * need an ALLOW binding naming it literally (super users too, so reading the trail always leaves
 * an ACL change in it); without an authorizer nobody reads it. */
#define SL_AUDIT_TOPIC "__sluice_audit"
#include <stdbool.h>
#include <stdint.h>

#include "pipeline/sl_req.h"

struct sl_authorizer;

enum {
    SL_AZ_QUIET = 1, /* a listing: a denial leaves the resource out, it is not logged */
    SL_AZ_ANY = 2,   /* Kafka's authorizeByResourceType: allowed on any resource of the type */
    SL_AZ_OPS = 4,   /* also compute the authorized-operations bitfield for the resource */
};

/* Names a resource of the request (from an API's resources function). `name` is copied into
 * the arena; a null name is the empty one. Naming the same (type, op, name) twice keeps one
 * entry (a logged naming wins over a quiet one). Out of memory makes every decision a denial. */
int32_t sl_req_need(sl_req *rq, int op, int rtype, sl_str name, unsigned flags);
/* The same, as an alternative: if the resource at index `alt` (a value sl_req_need returned;
 * negative: none) is allowed, this one is allowed without being asked (Kafka's "CREATE on the
 * cluster, or else on the topic"). */
int32_t sl_req_need_alt(sl_req *rq, int op, int rtype, sl_str name, unsigned flags, int32_t alt);
/* Names the cluster resource. */
int32_t sl_req_need_cluster(sl_req *rq, int op, unsigned flags);
/* Names an authorized-operations question (Metadata, DescribeGroups, DescribeCluster). */
void sl_req_need_ops(sl_req *rq, int rtype, sl_str name);

/* Runs the stage: decides every named resource against `az` (NULL: no authorizer, all allowed,
 * and authorized-operations bitfields list everything Kafka lists for the type). Refreshes
 * nothing: the caller picks up ACL file changes before. */
void sl_authorize_stage(sl_req *rq, struct sl_authorizer *az);
/* The Kafka error a denial on a resource of type `rtype` (SL_ACL_RES_*) answers:
 * TOPIC_/GROUP_/TRANSACTIONAL_ID_/CLUSTER_AUTHORIZATION_FAILED. */
int16_t sl_authorize_denial_code(int rtype);

/* Late authorization (the gateway: a topic or group it learns of only from the upstream's
 * answer): the decision for (op, rtype, name), naming the resource and deciding it now against
 * `az` when the request has not named it yet, recorded like the stage's (flags as for
 * sl_req_need; SL_AZ_OPS names an authorized-operations question, read with sl_req_ops). A
 * resource named already keeps its decision. */
bool sl_authorize_late(sl_req *rq, struct sl_authorizer *az, int op, int rtype, sl_str name,
                       unsigned flags);

/* The stage's decision for a named resource; false for one never named. */
bool sl_req_allowed(const sl_req *rq, int op, int rtype, sl_str name);
bool sl_req_allowed_cluster(const sl_req *rq, int op);
/* The decision for a resource type named with SL_AZ_ANY. */
bool sl_req_allowed_any(const sl_req *rq, int op, int rtype);
/* The authorized-operations bitfield recorded for a resource named with sl_req_need_ops. */
int32_t sl_req_ops(const sl_req *rq, int rtype, sl_str name);

/* The client's address without the port ("10.0.0.1", "::1"), as ACL hosts are written. */
const char *sl_req_host(const sl_req *rq, char *buf, size_t len);

#endif
