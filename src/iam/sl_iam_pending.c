/* Weak placeholders for the IAM modules while they are built in parallel (issue 15): each is
 * replaced by the real definition when its module lands, and this file goes when all have.
 * Every placeholder refuses: nothing authenticates or is allowed through them. */
#include "auth/sl_auth.h"
#include "iam/sl_iam.h"

#define SL_WEAK __attribute__((weak))

SL_WEAK sl_err sl_iam_policy_parse(const char *name, const char *json, size_t len,
                                   sl_iam_policy **out, char *err, size_t elen) {
    (void)name, (void)json, (void)len, (void)err, (void)elen;
    *out = NULL;
    return SL_EINVAL;
}
SL_WEAK void sl_iam_policy_free(sl_iam_policy *p) { (void)p; }
SL_WEAK sl_iam_effect sl_iam_evaluate(const sl_iam_policy *const *pols, size_t n,
                                      const char *action, const char *resource,
                                      const sl_iam_ctx *ctx, sl_iam_why *why) {
    (void)pols, (void)n, (void)action, (void)resource, (void)ctx;
    if (why) *why = (sl_iam_why){NULL, -1, ""};
    return SL_IAM_IMPLICIT_DENY;
}
SL_WEAK bool sl_iam_allows_any(const sl_iam_policy *const *pols, size_t n, const char *action,
                               const char *resource_pattern, const sl_iam_ctx *ctx) {
    (void)pols, (void)n, (void)action, (void)resource_pattern, (void)ctx;
    return false;
}
SL_WEAK sl_err sl_iam_new(const sl_config *cfg, const char *cluster_id, const char *const *hosts,
                          size_t nhosts, sl_iam **out, char *err, size_t elen) {
    (void)cfg, (void)cluster_id, (void)hosts, (void)nhosts, (void)err, (void)elen;
    *out = NULL;
    return SL_ECONFIG;
}
SL_WEAK void sl_iam_free(sl_iam *iam) { (void)iam; }
SL_WEAK bool sl_iam_decide(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                           int op, int rtype, const char *name, size_t nlen, char *why,
                           size_t wlen) {
    (void)iam, (void)id, (void)source_ip, (void)tls, (void)op, (void)rtype, (void)name, (void)nlen;
    if (why && wlen) why[0] = 0;
    return false;
}
SL_WEAK void sl_auth_set_iam(sl_auth *a, struct sl_iam *iam) { (void)a, (void)iam; }
