/* MSK's IAM vocabulary over Kafka's authorization questions. The authorization stage asks, for
 * every resource a request names, "may this principal do operation OP on resource TYPE:NAME"
 * (src/pipeline/sl_authorize.h). For an IAM principal that question becomes one or more MSK
 * actions on one resource ARN, all of which must be allowed, following the MSK developer
 * guide's table (e.g. WRITE on a topic: kafka-cluster:WriteData and kafka-cluster:DescribeTopic;
 * READ on a topic: ReadData and DescribeTopic; READ on a group: AlterGroup and DescribeGroup;
 * IDEMPOTENT_WRITE on the cluster: WriteDataIdempotently and WriteData on... see the table in
 * sl_iamaction.c and docs/iam.md). CLUSTER_ACTION (replication) has no IAM action: denied.
 *
 * ARNs, with the cluster's name and UUID and the region and account from configuration:
 *   cluster            arn:aws:kafka:REGION:ACCOUNT:cluster/CLUSTER/UUID
 *   topic              arn:aws:kafka:REGION:ACCOUNT:topic/CLUSTER/UUID/TOPIC
 *   group              arn:aws:kafka:REGION:ACCOUNT:group/CLUSTER/UUID/GROUP
 *   transactional id   arn:aws:kafka:REGION:ACCOUNT:transactional-id/CLUSTER/UUID/ID
 * Pure apart from sl_iam_arn_cfg_from (reads the config). */
#ifndef SL_IAM_ACTION_H
#define SL_IAM_ACTION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "iam/sl_iampolicy.h"

#define SL_IAM_ARN_MAX     512
#define SL_IAM_MAX_ACTIONS 3 /* most actions one Kafka question needs */

typedef struct sl_iam_arn_cfg {
    char region[32];
    char account[16];
    char cluster[SL_IAM_NAME_MAX + 1];
    char uuid[64];
} sl_iam_arn_cfg;

/* From sluice.iam.region, .account.id, .cluster.name and .cluster.uuid (`cluster_id`, the
 * broker's, when the UUID is unset). SL_ECONFIG naming the key for a malformed value (account
 * not 12 digits, a name with '/' or ':'...). */
sl_err sl_iam_arn_cfg_from(const sl_config *cfg, const char *cluster_id, sl_iam_arn_cfg *out,
                           char *err, size_t elen);

/* The MSK actions that Kafka operation `op` on a resource of type `rtype` (SL_ACL_OP_*,
 * SL_ACL_RES_* of src/acl/sl_acl.h) needs, all of them: fills actions[0..n) with static
 * strings and returns n (0: no IAM action grants it; always denied). */
int sl_iam_actions_for(int op, int rtype, const char **actions, int max);

/* The ARN of resource rtype:name into buf[cap] (NUL-terminated); its length, or -1 when it does
 * not fit or the type has no ARN. The cluster's ARN ignores `name`. */
int sl_iam_arn(const sl_iam_arn_cfg *c, int rtype, const char *name, size_t nlen, char *buf,
               size_t cap);

/* The decision for an IAM principal: every action sl_iam_actions_for lists must be allowed on
 * the resource's ARN by pols[0..n). On a denial, `why` (wlen bytes, may be NULL) says which
 * action was refused and what decided, for the audit trail:
 *   "kafka-cluster:WriteData on arn:...: explicit deny by policy P statement 2 (Sid S)"
 *   "kafka-cluster:WriteData on arn:...: no statement allows it (implicit deny)" */
bool sl_iam_authorize(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                      const sl_iam_ctx *ctx, int op, int rtype, const char *name, size_t nlen,
                      char *why, size_t wlen);

/* Kafka's authorizeByResourceType for an IAM principal: true when some resource of `rtype`
 * could be allowed `op` (sl_iam_allows_any on the type's ARN prefix with a '*'). */
bool sl_iam_authorize_any(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                          const sl_iam_ctx *ctx, int op, int rtype);

/* Bitfield (1 << op) of the operations Kafka lists for `rtype` that the principal may perform
 * on the resource (for the *_authorized_operations fields), as sl_authorizer_ops. */
int32_t sl_iam_ops(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                   const sl_iam_ctx *ctx, int rtype, const char *name, size_t nlen);

/* why[wlen] gets what decided `action` on `arn`: the explicit Deny's policy, statement and
 * Sid, or that no statement allows it. For denials (e != SL_IAM_ALLOW). */
void sl_iam_explain(char *why, size_t wlen, const char *action, const char *arn, sl_iam_effect e,
                    const sl_iam_why *w);

#endif
