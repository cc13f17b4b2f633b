/* The broker's IAM context's fields, shared by sl_iam.c (lifecycle, verification) and
 * sl_iam_authz.c (decisions). Internal to src/iam: nothing else includes it. Fields may be
 * added; none removed. Loop thread only. */
#ifndef SL_IAM_INT_H
#define SL_IAM_INT_H
#include <stddef.h>
#include <stdint.h>

#include "iam/sl_iam.h"
#include "iam/sl_iamaction.h"
#include "iam/sl_iamstore.h"

struct sl_iam {
    sl_iamstore *store;  /* owned */
    sl_iam_arn_cfg arns; /* resource ARNs (region, account, cluster name and UUID) */
    char region[32];     /* the region payloads must be signed for */
    char **hosts;        /* host names a payload may be signed for (owned) */
    size_t nhosts;
    int64_t skew_s;          /* allowed clock skew of x-amz-date */
    int64_t last_refresh_ms; /* monotonic ms of the last sl_iamstore_refresh (decisions) */
};

#endif
