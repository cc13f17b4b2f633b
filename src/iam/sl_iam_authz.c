/* The broker's decisions for IAM principals (sl_iam.h): the identity's attached policies and
 * tags from the store, the request's context (source address, TLS, time, who), and the MSK
 * actions of the Kafka question (sl_iamaction.h). Loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/sl_time.h"
#include "iam/sl_iam.h"
#include "iam/sl_iam_int.h"

/* A policy change (`sluice iam policy put|attach|detach`) applies to the next request, but the
 * store's file is looked at no more than once a second. On a refresh error the loaded contents
 * stay (sl_iamstore_refresh), so a half-written or unreadable file never widens anything. */
static void maybe_refresh(sl_iam *iam) {
    int64_t now = sl_mono_ms();
    if (iam->last_refresh_ms && now - iam->last_refresh_ms < 1000) return;
    iam->last_refresh_ms = now;
    (void)sl_iamstore_refresh(iam->store);
}

typedef struct who {
    const sl_iam_policy *pols[SL_IAM_MAX_ATTACHED];
    size_t n;
    sl_iam_tag tags[SL_IAM_MAX_TAGS];
    char principal_arn[320];
    sl_iam_ctx ctx;
} who;

/* Fills w for `id`; the policies and tags are the store's, valid until its next refresh. */
static bool load(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls, who *w) {
    memset(w, 0, sizeof *w);
    if (!iam || !iam->store || !id) return false;
    maybe_refresh(iam);
    size_t ntags = 0;
    /* aws:PrincipalArn: a role session's is its role's ARN (as IAM; as `policy simulate`). */
    if (!id->role)
        snprintf(w->principal_arn, sizeof w->principal_arn, "%s", id->arn);
    else if (!sl_iam_principal_arn(iam->arns.account, true, id->name, w->principal_arn,
                                   sizeof w->principal_arn))
        return false;
    w->n = sl_iamstore_policies_for(iam->store, id, w->pols, SL_IAM_MAX_ATTACHED, w->tags,
                                    SL_IAM_MAX_TAGS, &ntags);
    w->ctx = (sl_iam_ctx){
        .source_ip = source_ip && source_ip[0] ? source_ip : NULL,
        .secure_transport = tls,
        .now_s = sl_wall_ms() / 1000,
        .tags = w->tags,
        .ntags = ntags,
        .username = id->role ? NULL : id->name,
        .principal_arn = w->principal_arn,
        .principal_type = id->role ? "AssumedRole" : "User",
    };
    return true;
}

bool sl_iam_decide(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls, int op,
                   int rtype, const char *name, size_t nlen, char *why, size_t wlen) {
    who w;
    if (!load(iam, id, source_ip, tls, &w)) {
        if (why && wlen) snprintf(why, wlen, "IAM is not in use on this broker (implicit deny)");
        return false;
    }
    return sl_iam_authorize(w.pols, w.n, &iam->arns, &w.ctx, op, rtype, name, nlen, why, wlen);
}

bool sl_iam_decide_any(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                       int op, int rtype) {
    who w;
    if (!load(iam, id, source_ip, tls, &w)) return false;
    return sl_iam_authorize_any(w.pols, w.n, &iam->arns, &w.ctx, op, rtype);
}

int32_t sl_iam_decide_ops(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                          int rtype, const char *name, size_t nlen) {
    who w;
    if (!load(iam, id, source_ip, tls, &w)) return 0;
    return sl_iam_ops(w.pols, w.n, &iam->arns, &w.ctx, rtype, name, nlen);
}

bool sl_iam_decide_action(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                          const char *action, const char *resource, char *why, size_t wlen) {
    who w;
    if (!load(iam, id, source_ip, tls, &w)) {
        if (why && wlen) snprintf(why, wlen, "IAM is not in use on this broker (implicit deny)");
        return false;
    }
    sl_iam_why d = {0};
    sl_iam_effect e = sl_iam_evaluate(w.pols, w.n, action, resource, &w.ctx, &d);
    if (e != SL_IAM_ALLOW) sl_iam_explain(why, wlen, action, resource, e, &d);
    return e == SL_IAM_ALLOW;
}
