/* The ACL admin APIs: DescribeAcls, CreateAcls
 * and DeleteAcls v0-3 over the broker's authorizer (src/acl). Changes are written to the ACL
 * file before they are answered and apply from the next request on every connection, since
 * every decision reads the authorizer's current set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/sl_authz.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "proto/gen/sl_msgs.h"

#define NO_AUTHORIZER "No Authorizer is configured on the broker"

/* NUL-terminated arena copy of a wire string; NULL for a null string. *bad when the string
 * holds a NUL byte, which no stored binding can (it would match something else). */
static const char *cstr(sl_req *rq, sl_str s, bool *bad) {
    if (s.len < 0) return NULL;
    if (memchr(s.p, 0, (size_t)s.len)) *bad = true;
    char *p = sl_arena_alloc(rq->a, (size_t)s.len + 1);
    if (!p) {
        *bad = true;
        return "";
    }
    memcpy(p, s.p, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

static sl_str astr(sl_req *rq, const char *s) {
    size_t n = strlen(s);
    char *p = sl_arena_dup(rq->a, s, n);
    return p ? (sl_str){p, (int32_t)n} : SL_STR_NULL;
}

static int cmp_resource(const void *x, const void *y) {
    const sl_acl *a = *(const sl_acl *const *)x, *b = *(const sl_acl *const *)y;
    if (a->rtype != b->rtype) return a->rtype - b->rtype;
    if (a->pattern != b->pattern) return a->pattern - b->pattern;
    int c = strcmp(a->name, b->name);
    if (c) return c;
    return a < b ? -1 : a > b;
}

void sl_h_describe_acls(sl_req *rq) {
    sl_describe_acls_req req = *(const sl_describe_acls_req *)rq->req;
    sl_describe_acls_resp resp;
    sl_describe_acls_resp_init(&resp);
    resp.error_message = SL_STR_NULL;
    resp.resources_count = 0;
    sl_authorizer *az = rq->b->authz;
    bool bad = false;
    sl_acl_filter f = {.rtype = req.resource_type_filter,
                       .pattern = req.pattern_type_filter,
                       .op = req.operation,
                       .perm = req.permission_type,
                       .name = cstr(rq, req.resource_name_filter, &bad),
                       .principal = cstr(rq, req.principal_filter, &bad),
                       .host = cstr(rq, req.host_filter, &bad)};
    const char *why = sl_acl_filter_invalid(&f);
    if (!az) {
        resp.error_code = SL_KAFKA_SECURITY_DISABLED;
        resp.error_message = sl_str_c(NO_AUTHORIZER);
    } else if (!sl_req_allowed_cluster(rq, SL_ACL_OP_DESCRIBE)) {
        resp.error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        resp.error_message = sl_str_c("Cluster authorization failed.");
    } else if (why || bad) {
        resp.error_code = SL_KAFKA_INVALID_REQUEST;
        resp.error_message = sl_str_c(why ? why : "The filter contains a NUL character");
    } else {
        const sl_acl_set *set = sl_authorizer_set(az);
        size_t n = sl_acl_set_count(set), m = 0;
        const sl_acl **hit = n ? sl_arena_alloc(rq->a, n * sizeof *hit) : NULL;
        if (n && !hit) return sl_req_fail(rq, "out of memory");
        for (size_t i = 0; i < n; i++)
            if (sl_acl_filter_matches(&f, sl_acl_set_at(set, i))) hit[m++] = sl_acl_set_at(set, i);
        if (m > 1) qsort(hit, m, sizeof *hit, cmp_resource);
        resp.resources = m ? sl_arena_calloc(rq->a, m, sizeof *resp.resources) : NULL;
        sl_describe_acls_resp_acl *acls = m ? sl_arena_calloc(rq->a, m, sizeof *acls) : NULL;
        if (m && (!resp.resources || !acls)) return sl_req_fail(rq, "out of memory");
        int32_t nr = 0;
        for (size_t i = 0; i < m; i++) {
            const sl_acl *a = hit[i];
            if (!i || hit[i - 1]->rtype != a->rtype || hit[i - 1]->pattern != a->pattern ||
                strcmp(hit[i - 1]->name, a->name)) {
                sl_describe_acls_resp_resource *r = &resp.resources[nr++];
                r->resource_type = a->rtype;
                r->resource_name = sl_str_c(a->name);
                r->pattern_type = a->pattern;
                r->acls = &acls[i];
                r->acls_count = 0;
            }
            sl_describe_acls_resp_resource *r = &resp.resources[nr - 1];
            sl_describe_acls_resp_acl *o = &r->acls[r->acls_count++];
            o->principal = sl_str_c(a->principal);
            o->host = sl_str_c(a->host);
            o->operation = a->op;
            o->permission_type = a->perm;
        }
        resp.resources_count = nr;
    }
    SL_RESPOND(rq, describe_acls, &resp);
}

/* Current bindings plus room for `extra` more, in a malloc'd array the caller frees (the
 * strings stay the set's). */
static sl_acl *copy_current(const sl_acl_set *set, size_t extra, size_t *n) {
    *n = sl_acl_set_count(set);
    sl_acl *v = malloc((*n + extra + 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < *n; i++) v[i] = *sl_acl_set_at(set, i);
    return v;
}

void sl_h_create_acls(sl_req *rq) {
    sl_create_acls_req req = *(const sl_create_acls_req *)rq->req;
    sl_create_acls_resp resp;
    sl_create_acls_resp_init(&resp);
    int32_t nc = req.creations_count > 0 ? req.creations_count : 0;
    resp.results = sl_arena_calloc(rq->a, (size_t)(nc ? nc : 1), sizeof *resp.results);
    sl_acl *want = sl_arena_calloc(rq->a, (size_t)(nc ? nc : 1), sizeof *want);
    if (!resp.results || !want) return sl_req_fail(rq, "out of memory");
    resp.results_count = nc;
    sl_authorizer *az = rq->b->authz;
    bool cluster_ok = az && sl_req_allowed_cluster(rq, SL_ACL_OP_ALTER);
    size_t nwant = 0;
    for (int32_t i = 0; i < nc; i++) {
        sl_create_acls_req_creation *c = &req.creations[i];
        sl_create_acls_resp_result *o = &resp.results[i];
        o->error_message = SL_STR_NULL;
        if (!az) {
            o->error_code = SL_KAFKA_SECURITY_DISABLED;
            o->error_message = sl_str_c(NO_AUTHORIZER);
            continue;
        }
        if (!cluster_ok) {
            o->error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
            o->error_message = sl_str_c("Cluster authorization failed.");
            continue;
        }
        bool bad = false;
        sl_acl a = {.rtype = c->resource_type,
                    .pattern = c->resource_pattern_type,
                    .op = c->operation,
                    .perm = c->permission_type,
                    .name = cstr(rq, c->resource_name, &bad),
                    .principal = cstr(rq, c->principal, &bad),
                    .host = cstr(rq, c->host, &bad)};
        const char *why = bad ? "Invalid NUL character" : sl_acl_invalid(&a);
        if (why) {
            o->error_code = SL_KAFKA_INVALID_REQUEST;
            o->error_message = sl_str_c(why);
            continue;
        }
        want[nwant++] = a;
    }
    if (nwant) {
        sl_err e = sl_authorizer_lock(az);
        bool locked = !e;
        size_t n = 0;
        sl_acl *v = e ? NULL : copy_current(sl_authorizer_set(az), nwant, &n);
        if (!e && !v) e = SL_ENOMEM;
        sl_acl_set *next = NULL;
        if (!e) {
            memcpy(v + n, want, nwant * sizeof *v);
            e = sl_acl_set_build(v, n + nwant, &next);
        }
        free(v);
        if (!e) e = sl_authorizer_replace(az, next);
        if (locked) sl_authorizer_unlock(az);
        if (e) {
            SL_ERROR("acl", "ACLs not created", "err=%s", sl_errname(e));
            for (int32_t i = 0; i < nc; i++)
                if (!resp.results[i].error_code) {
                    resp.results[i].error_code = sl_err_to_kafka(e);
                    resp.results[i].error_message = sl_str_c("The ACL file could not be written");
                }
        } else {
            for (size_t i = 0; i < nwant; i++) {
                char line[512];
                sl_acl_format(&want[i], line, sizeof line);
                for (char *c = line; *c; c++) /* names are client bytes: keep the line one line */
                    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || *c == '"' ||
                        *c == '\\')
                        *c = '?';
                SL_INFO("acl", "ACL created", "by=%s acl=\"%s\"",
                        (rq->principal ? rq->principal : "-"), line);
            }
        }
    }
    SL_RESPOND(rq, create_acls, &resp);
}

void sl_h_delete_acls(sl_req *rq) {
    sl_delete_acls_req req = *(const sl_delete_acls_req *)rq->req;
    sl_delete_acls_resp resp;
    sl_delete_acls_resp_init(&resp);
    int32_t nf = req.filters_count > 0 ? req.filters_count : 0;
    resp.filter_results =
        sl_arena_calloc(rq->a, (size_t)(nf ? nf : 1), sizeof *resp.filter_results);
    sl_acl_filter *fs = sl_arena_calloc(rq->a, (size_t)(nf ? nf : 1), sizeof *fs);
    bool *usable = sl_arena_calloc(rq->a, (size_t)(nf ? nf : 1), sizeof *usable);
    if (!resp.filter_results || !fs || !usable) return sl_req_fail(rq, "out of memory");
    resp.filter_results_count = nf;
    sl_authorizer *az = rq->b->authz;
    bool cluster_ok = az && sl_req_allowed_cluster(rq, SL_ACL_OP_ALTER);
    int32_t nusable = 0;
    for (int32_t i = 0; i < nf; i++) {
        sl_delete_acls_req_filter *rf = &req.filters[i];
        sl_delete_acls_resp_filter_result *o = &resp.filter_results[i];
        o->error_message = SL_STR_NULL;
        o->matching_acls_count = 0;
        if (!az) {
            o->error_code = SL_KAFKA_SECURITY_DISABLED;
            o->error_message = sl_str_c(NO_AUTHORIZER);
            continue;
        }
        if (!cluster_ok) {
            o->error_code = SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
            o->error_message = sl_str_c("Cluster authorization failed.");
            continue;
        }
        bool bad = false;
        fs[i] = (sl_acl_filter){.rtype = rf->resource_type_filter,
                                .pattern = rf->pattern_type_filter,
                                .op = rf->operation,
                                .perm = rf->permission_type,
                                .name = cstr(rq, rf->resource_name_filter, &bad),
                                .principal = cstr(rq, rf->principal_filter, &bad),
                                .host = cstr(rq, rf->host_filter, &bad)};
        const char *why =
            bad ? "The filter contains a NUL character" : sl_acl_filter_invalid(&fs[i]);
        if (why) {
            o->error_code = SL_KAFKA_INVALID_REQUEST;
            o->error_message = sl_str_c(why);
            continue;
        }
        usable[i] = true;
        nusable++;
    }
    if (nusable) {
        sl_err e = sl_authorizer_lock(az);
        bool locked = !e;
        const sl_acl_set *cur = e ? NULL : sl_authorizer_set(az);
        size_t n = sl_acl_set_count(cur), nkeep = 0;
        sl_acl *keep = !e ? malloc((n + 1) * sizeof *keep) : NULL;
        if (!e && !keep) e = SL_ENOMEM;
        for (size_t k = 0; !e && k < n; k++) {
            const sl_acl *a = sl_acl_set_at(cur, k);
            bool gone = false;
            for (int32_t i = 0; i < nf; i++)
                if (usable[i] && sl_acl_filter_matches(&fs[i], a)) {
                    gone = true;
                    sl_delete_acls_resp_filter_result *o = &resp.filter_results[i];
                    if (!o->matching_acls) {
                        o->matching_acls = sl_arena_calloc(rq->a, n, sizeof *o->matching_acls);
                        if (!o->matching_acls) {
                            e = SL_ENOMEM;
                            break;
                        }
                    }
                    /* Copied: the set they live in is freed when the new one replaces it. */
                    sl_delete_acls_resp_matching_acl *m =
                        &o->matching_acls[o->matching_acls_count++];
                    m->error_message = SL_STR_NULL;
                    m->resource_type = a->rtype;
                    m->resource_name = astr(rq, a->name);
                    m->pattern_type = a->pattern;
                    m->principal = astr(rq, a->principal);
                    m->host = astr(rq, a->host);
                    m->operation = a->op;
                    m->permission_type = a->perm;
                }
            if (!gone && keep) keep[nkeep++] = *a;
        }
        if (!e && nkeep < n) {
            sl_acl_set *next = NULL;
            e = sl_acl_set_build(keep, nkeep, &next);
            if (!e) e = sl_authorizer_replace(az, next);
            if (!e)
                SL_INFO("acl", "ACLs deleted", "by=%s count=%zu",
                        (rq->principal ? rq->principal : "-"), n - nkeep);
        }
        free(keep);
        if (locked) sl_authorizer_unlock(az);
        if (e) {
            SL_ERROR("acl", "ACLs not deleted", "err=%s", sl_errname(e));
            for (int32_t i = 0; i < nf; i++)
                if (usable[i]) {
                    resp.filter_results[i].error_code = sl_err_to_kafka(e);
                    resp.filter_results[i].error_message =
                        sl_str_c("The ACL file could not be written");
                    resp.filter_results[i].matching_acls_count = 0;
                }
        }
    }
    SL_RESPOND(rq, delete_acls, &resp);
}
