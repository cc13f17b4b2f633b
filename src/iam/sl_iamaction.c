/* MSK's actions over Kafka's authorization questions, and the resource ARNs they apply to.
 *
 * The table follows the MSK developer guide's "IAM access control" semantics: each action is
 * the equivalent of one Kafka ACL (operation, resource type), and some actions need others
 * alongside them. Here a question needs its own action plus those of its required actions that
 * apply to the SAME resource (WriteData and DescribeTopic on the topic; AlterGroup and
 * DescribeGroup on the group). Requirements on other resources are met by the questions the
 * request asks about them: ReadData's AlterGroup by the group questions of group consumption
 * (JoinGroup, OffsetCommit...), WriteDataIdempotently's and AlterTransactionalId's WriteData by
 * Produce's WRITE on each topic. Connect is checked once, at authentication.
 *
 * Two questions have no action of their own:
 *   CLUSTER_ACTION on the cluster: replication between brokers; no IAM principal is a broker.
 *   CREATE on the cluster: Kafka's "may create any topic", asked with CREATE on each topic as
 *     its alternative. MSK's CreateTopic is granted on topic ARNs, so an IAM principal's topic
 *     creation is always decided per topic ARN (a Deny on some topic names cannot be bypassed
 *     through the cluster question). */
#include "iam/sl_iamaction.h"

#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"

#define A(x) "kafka-cluster:" x

typedef struct action_row {
    int8_t op, rtype;
    const char *actions[SL_IAM_MAX_ACTIONS]; /* the first is the question's own action */
} action_row;

static const action_row k_rows[] = {
    /* topics */
    {SL_ACL_OP_READ, SL_ACL_RES_TOPIC, {A("ReadData"), A("DescribeTopic")}},
    {SL_ACL_OP_WRITE, SL_ACL_RES_TOPIC, {A("WriteData"), A("DescribeTopic")}},
    {SL_ACL_OP_CREATE, SL_ACL_RES_TOPIC, {A("CreateTopic")}},
    {SL_ACL_OP_DELETE, SL_ACL_RES_TOPIC, {A("DeleteTopic"), A("DescribeTopic")}},
    {SL_ACL_OP_ALTER, SL_ACL_RES_TOPIC, {A("AlterTopic"), A("DescribeTopic")}},
    {SL_ACL_OP_DESCRIBE, SL_ACL_RES_TOPIC, {A("DescribeTopic")}},
    {SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_RES_TOPIC, {A("DescribeTopicDynamicConfiguration")}},
    {SL_ACL_OP_ALTER_CONFIGS,
     SL_ACL_RES_TOPIC,
     {A("AlterTopicDynamicConfiguration"), A("DescribeTopicDynamicConfiguration")}},
    /* consumer groups */
    {SL_ACL_OP_READ, SL_ACL_RES_GROUP, {A("AlterGroup"), A("DescribeGroup")}},
    {SL_ACL_OP_DESCRIBE, SL_ACL_RES_GROUP, {A("DescribeGroup")}},
    {SL_ACL_OP_DELETE, SL_ACL_RES_GROUP, {A("DeleteGroup"), A("DescribeGroup")}},
    /* the cluster */
    {SL_ACL_OP_DESCRIBE, SL_ACL_RES_CLUSTER, {A("DescribeCluster")}},
    {SL_ACL_OP_ALTER, SL_ACL_RES_CLUSTER, {A("AlterCluster"), A("DescribeCluster")}},
    {SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_RES_CLUSTER, {A("DescribeClusterDynamicConfiguration")}},
    {SL_ACL_OP_ALTER_CONFIGS,
     SL_ACL_RES_CLUSTER,
     {A("AlterClusterDynamicConfiguration"), A("DescribeClusterDynamicConfiguration")}},
    {SL_ACL_OP_IDEMPOTENT_WRITE, SL_ACL_RES_CLUSTER, {A("WriteDataIdempotently")}},
    /* transactional ids */
    {SL_ACL_OP_WRITE,
     SL_ACL_RES_TRANSACTIONAL_ID,
     {A("AlterTransactionalId"), A("DescribeTransactionalId")}},
    {SL_ACL_OP_DESCRIBE, SL_ACL_RES_TRANSACTIONAL_ID, {A("DescribeTransactionalId")}},
};

int sl_iam_actions_for(int op, int rtype, const char **actions, int max) {
    for (size_t i = 0; i < sizeof k_rows / sizeof k_rows[0]; i++) {
        const action_row *r = &k_rows[i];
        if (r->op != op || r->rtype != rtype) continue;
        int n = 0;
        while (n < SL_IAM_MAX_ACTIONS && r->actions[n]) n++;
        if (n > max) n = max;
        for (int k = 0; k < n; k++) actions[k] = r->actions[k];
        return n;
    }
    return 0;
}

/* ---- ARNs ---- */

static const char *arn_kind(int rtype) {
    switch (rtype) {
    case SL_ACL_RES_CLUSTER:
        return "cluster";
    case SL_ACL_RES_TOPIC:
        return "topic";
    case SL_ACL_RES_GROUP:
        return "group";
    case SL_ACL_RES_TRANSACTIONAL_ID:
        return "transactional-id";
    default:
        return NULL;
    }
}

int sl_iam_arn(const sl_iam_arn_cfg *c, int rtype, const char *name, size_t nlen, char *buf,
               size_t cap) {
    const char *kind = arn_kind(rtype);
    if (!kind || !buf || !cap) return -1;
    if (rtype != SL_ACL_RES_CLUSTER) {
        /* A NUL would cut the ARN short, naming another resource (a group "a\0b" as "a"). */
        if (!name && nlen) return -1;
        if (nlen && memchr(name, 0, nlen)) return -1;
    }
    int n = snprintf(buf, cap, "arn:aws:kafka:%s:%s:%s/%s/%s", c->region, c->account, kind,
                     c->cluster, c->uuid);
    if (n < 0 || (size_t)n >= cap) goto too_long;
    if (rtype == SL_ACL_RES_CLUSTER) return n;
    if ((size_t)n + 1 + nlen >= cap) goto too_long;
    buf[n++] = '/';
    if (nlen) memcpy(buf + n, name, nlen);
    n += (int)nlen;
    buf[n] = 0;
    return n;
too_long:
    buf[0] = 0;
    return -1;
}

/* ---- configuration ---- */

static bool all_of(const char *s, const char *extra, bool digits, bool upper) {
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= 'a' && c <= 'z') || (digits && c >= '0' && c <= '9') ||
                  (upper && c >= 'A' && c <= 'Z') || (c && strchr(extra, c));
        if (!ok) return false;
    }
    return true;
}

static bool is_digits(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* The UUID is whatever names the cluster (MSK's "abcd1234-...-1", Kafka's base64url cluster
 * id): printable, and none of the characters that separate or match ARN parts. */
static bool uuid_ok(const char *s) {
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("/:*?$", c)) return false;
    }
    return true;
}

sl_err sl_iam_arn_cfg_from(const sl_config *cfg, const char *cluster_id, sl_iam_arn_cfg *out,
                           char *err, size_t elen) {
    memset(out, 0, sizeof *out);
    const char *region = cfg->sluice_iam_region, *account = cfg->sluice_iam_account_id;
    const char *cluster = cfg->sluice_iam_cluster_name;
    const char *uuid = cfg->sluice_iam_cluster_uuid[0] ? cfg->sluice_iam_cluster_uuid
                       : cluster_id                    ? cluster_id
                                                       : "";
    const char *bad = NULL, *why = NULL;
    if (!all_of(region, "-", true, false) || strlen(region) >= sizeof out->region)
        bad = "sluice.iam.region", why = "lower-case letters, digits and '-' (us-east-1)";
    else if (!is_digits(account, 12))
        bad = "sluice.iam.account.id", why = "12 digits";
    else if (!all_of(cluster, "-", true, true) || strlen(cluster) >= sizeof out->cluster)
        bad = "sluice.iam.cluster.name", why = "1 to 128 letters, digits and '-'";
    else if (!uuid_ok(uuid) || strlen(uuid) >= sizeof out->uuid)
        bad = cfg->sluice_iam_cluster_uuid[0] ? "sluice.iam.cluster.uuid" : "the cluster id",
        why = "1 to 63 printable characters, none of '/', ':', '*', '?', '$' or space";
    if (bad) {
        if (err && elen) snprintf(err, elen, "%s: must be %s", bad, why);
        return SL_ECONFIG;
    }
    memcpy(out->region, region, strlen(region) + 1);
    memcpy(out->account, account, strlen(account) + 1);
    memcpy(out->cluster, cluster, strlen(cluster) + 1);
    memcpy(out->uuid, uuid, strlen(uuid) + 1);
    return SL_OK;
}

/* ---- decisions ---- */

void sl_iam_explain(char *why, size_t wlen, const char *action, const char *arn, sl_iam_effect e,
                    const sl_iam_why *w) {
    if (!why || !wlen) return;
    if (e == SL_IAM_EXPLICIT_DENY && w->policy) {
        if (w->sid && w->sid[0])
            snprintf(why, wlen, "%s on %s: explicit deny by policy %s statement %d (Sid %s)",
                     action, arn, w->policy, w->statement, w->sid);
        else
            snprintf(why, wlen, "%s on %s: explicit deny by policy %s statement %d", action, arn,
                     w->policy, w->statement);
    } else {
        snprintf(why, wlen, "%s on %s: no statement allows it (implicit deny)", action, arn);
    }
}

static void no_action_why(char *why, size_t wlen, int op, int rtype) {
    if (why && wlen)
        snprintf(why, wlen, "%s on %s: no kafka-cluster action grants it (implicit deny)",
                 sl_acl_op_name(op), sl_acl_res_name(rtype));
}

bool sl_iam_authorize(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                      const sl_iam_ctx *ctx, int op, int rtype, const char *name, size_t nlen,
                      char *why, size_t wlen) {
    if (why && wlen) why[0] = 0;
    const char *acts[SL_IAM_MAX_ACTIONS];
    int na = sl_iam_actions_for(op, rtype, acts, SL_IAM_MAX_ACTIONS);
    if (na == 0) {
        no_action_why(why, wlen, op, rtype);
        return false;
    }
    char arn[SL_IAM_ARN_MAX];
    if (sl_iam_arn(arns, rtype, name, nlen, arn, sizeof arn) < 0) {
        if (why && wlen)
            snprintf(why, wlen, "%s: the resource name has no ARN (too long or a NUL byte)",
                     acts[0]);
        return false;
    }
    /* Every action is evaluated so that an explicit deny is what the audit trail names when
     * there is one, whichever action it refused. */
    int denied = -1;
    sl_iam_effect worst = SL_IAM_ALLOW;
    sl_iam_why wd = {NULL, -1, ""};
    for (int i = 0; i < na; i++) {
        sl_iam_why w = {NULL, -1, ""};
        sl_iam_effect e = sl_iam_evaluate(pols, n, acts[i], arn, ctx, &w);
        if (e == SL_IAM_ALLOW) continue;
        if (denied < 0 || (e == SL_IAM_EXPLICIT_DENY && worst != SL_IAM_EXPLICIT_DENY)) {
            denied = i;
            worst = e;
            wd = w;
        }
        if (e == SL_IAM_EXPLICIT_DENY) break;
    }
    if (denied < 0) return true;
    sl_iam_explain(why, wlen, acts[denied], arn, worst, &wd);
    return false;
}

bool sl_iam_authorize_any(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                          const sl_iam_ctx *ctx, int op, int rtype) {
    if (rtype == SL_ACL_RES_CLUSTER) /* the only one of its type */
        return sl_iam_authorize(pols, n, arns, ctx, op, rtype, "", 0, NULL, 0);
    const char *acts[SL_IAM_MAX_ACTIONS];
    int na = sl_iam_actions_for(op, rtype, acts, SL_IAM_MAX_ACTIONS);
    char pattern[SL_IAM_ARN_MAX];
    if (na == 0 || sl_iam_arn(arns, rtype, "*", 1, pattern, sizeof pattern) < 0) return false;
    for (int i = 0; i < na; i++)
        if (!sl_iam_allows_any(pols, n, acts[i], pattern, ctx)) return false;
    return true;
}

int32_t sl_iam_ops(const sl_iam_policy *const *pols, size_t n, const sl_iam_arn_cfg *arns,
                   const sl_iam_ctx *ctx, int rtype, const char *name, size_t nlen) {
    /* What Kafka lists for each type (as sl_authorizer_ops). */
    static const int topic[] = {
        SL_ACL_OP_READ,  SL_ACL_OP_WRITE,    SL_ACL_OP_CREATE,           SL_ACL_OP_DELETE,
        SL_ACL_OP_ALTER, SL_ACL_OP_DESCRIBE, SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_OP_ALTER_CONFIGS};
    static const int group[] = {SL_ACL_OP_READ, SL_ACL_OP_DESCRIBE, SL_ACL_OP_DELETE};
    static const int cluster[] = {SL_ACL_OP_CREATE,           SL_ACL_OP_ALTER,
                                  SL_ACL_OP_DESCRIBE,         SL_ACL_OP_CLUSTER_ACTION,
                                  SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_OP_ALTER_CONFIGS,
                                  SL_ACL_OP_IDEMPOTENT_WRITE};
    static const int txn[] = {SL_ACL_OP_WRITE, SL_ACL_OP_DESCRIBE};
    const int *ops;
    size_t nops;
    switch (rtype) {
    case SL_ACL_RES_TOPIC:
        ops = topic, nops = sizeof topic / sizeof topic[0];
        break;
    case SL_ACL_RES_GROUP:
        ops = group, nops = sizeof group / sizeof group[0];
        break;
    case SL_ACL_RES_CLUSTER:
        ops = cluster, nops = sizeof cluster / sizeof cluster[0];
        break;
    case SL_ACL_RES_TRANSACTIONAL_ID:
        ops = txn, nops = sizeof txn / sizeof txn[0];
        break;
    default:
        return 0;
    }
    int32_t bits = 0;
    for (size_t i = 0; i < nops; i++)
        if (sl_iam_authorize(pols, n, arns, ctx, ops[i], rtype, name, nlen, NULL, 0))
            bits |= (int32_t)1 << ops[i];
    return bits;
}
