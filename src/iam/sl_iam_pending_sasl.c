/* Weak stand-ins (issue 15, until sl_iamaction.c lands; the lead removes this file with
 * sl_iam_pending.c): the cluster ARN settings and ARNs as sl_iamaction.h defines them, so the
 * broker's IAM context builds. The real definitions override these. */
#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "iam/sl_iamaction.h"

#define SL_WEAK __attribute__((weak))

SL_WEAK sl_err sl_iam_arn_cfg_from(const sl_config *cfg, const char *cluster_id,
                                   sl_iam_arn_cfg *out, char *err, size_t elen) {
    memset(out, 0, sizeof *out);
    const char *uuid = cfg->sluice_iam_cluster_uuid[0] ? cfg->sluice_iam_cluster_uuid : cluster_id;
    if (!uuid) uuid = "";
    if (strlen(cfg->sluice_iam_region) >= sizeof out->region ||
        strlen(cfg->sluice_iam_account_id) >= sizeof out->account ||
        strlen(cfg->sluice_iam_cluster_name) >= sizeof out->cluster ||
        strlen(uuid) >= sizeof out->uuid) {
        snprintf(err, elen, "sluice.iam.*: a value is too long");
        return SL_ECONFIG;
    }
    memcpy(out->region, cfg->sluice_iam_region, strlen(cfg->sluice_iam_region) + 1);
    memcpy(out->account, cfg->sluice_iam_account_id, strlen(cfg->sluice_iam_account_id) + 1);
    memcpy(out->cluster, cfg->sluice_iam_cluster_name, strlen(cfg->sluice_iam_cluster_name) + 1);
    memcpy(out->uuid, uuid, strlen(uuid) + 1);
    return SL_OK;
}

SL_WEAK int sl_iam_arn(const sl_iam_arn_cfg *c, int rtype, const char *name, size_t nlen, char *buf,
                       size_t cap) {
    const char *kind = rtype == SL_ACL_RES_CLUSTER            ? "cluster"
                       : rtype == SL_ACL_RES_TOPIC            ? "topic"
                       : rtype == SL_ACL_RES_GROUP            ? "group"
                       : rtype == SL_ACL_RES_TRANSACTIONAL_ID ? "transactional-id"
                                                              : NULL;
    if (!kind) return -1;
    int n = rtype == SL_ACL_RES_CLUSTER
                ? snprintf(buf, cap, "arn:aws:kafka:%s:%s:cluster/%s/%s", c->region, c->account,
                           c->cluster, c->uuid)
                : snprintf(buf, cap, "arn:aws:kafka:%s:%s:%s/%s/%s/%.*s", c->region, c->account,
                           kind, c->cluster, c->uuid, (int)nlen, name);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
