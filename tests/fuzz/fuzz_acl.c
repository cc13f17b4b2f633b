/* libFuzzer target for the ACL admin requests and the stored ACL file. The first byte picks
 * the target and (for requests) the version:
 *   0: CreateAcls request → every creation through sl_acl_invalid; the valid ones are built
 *      into a set, serialized, parsed back and must compare equal;
 *   1: DescribeAcls request → the filter through sl_acl_filter_invalid and matched against a
 *      fixed set and an indexed lookup of its name;
 *   2: DeleteAcls request → every filter as above;
 *   3: the stored ACL file parser; what it accepts must serialize to the same text. */
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "proto/gen/sl_msgs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const sl_acl k_fixed[] = {
    {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_READ, SL_ACL_PERM_ALLOW, "payments", "User:a",
     "*"},
    {SL_ACL_RES_TOPIC, SL_ACL_PAT_LITERAL, SL_ACL_OP_ALL, SL_ACL_PERM_DENY, "*", "User:*", "h"},
    {SL_ACL_RES_GROUP, SL_ACL_PAT_PREFIXED, SL_ACL_OP_READ, SL_ACL_PERM_ALLOW, "fraud-",
     "User:fraud", "*"},
    {SL_ACL_RES_TOPIC, SL_ACL_PAT_PREFIXED, SL_ACL_OP_WRITE, SL_ACL_PERM_ALLOW, "p", "User:b", "*"},
};

/* NUL-terminated arena copy; NULL for null or NUL-holding strings (the handler refuses those). */
static const char *cstr(sl_arena *a, sl_str s, bool *bad) {
    if (s.len < 0) return NULL;
    if (memchr(s.p, 0, (size_t)s.len)) *bad = true;
    char *p = sl_arena_alloc(a, (size_t)s.len + 1);
    if (!p) abort();
    memcpy(p, s.p, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

static bool count_one(void *ctx, const sl_acl *a) {
    ++*(int *)ctx;
    return true;
}

static void check_filter(const sl_acl_set *fixed, const sl_acl_filter *f) {
    if (sl_acl_filter_invalid(f)) return;
    int n = 0;
    for (size_t i = 0; i < sl_acl_set_count(fixed); i++)
        n += sl_acl_filter_matches(f, sl_acl_set_at(fixed, i));
    if (n > (int)sl_acl_set_count(fixed)) abort();
    if (f->name && f->rtype > SL_ACL_RES_ANY) {
        int seen = 0;
        sl_acl_set_visit(fixed, f->rtype, f->name, strlen(f->name), count_one, &seen);
        /* MATCH semantics and the index must agree on what applies to a name. */
        if (f->pattern == SL_ACL_PAT_MATCH && f->op == SL_ACL_OP_ANY &&
            f->perm == SL_ACL_PERM_ANY && !f->principal && !f->host && seen != n)
            abort();
    }
}

static void round_trip(const sl_acl_set *s) {
    char *txt = NULL, *txt2 = NULL;
    size_t len = 0, len2 = 0;
    if (sl_acl_set_serialize(s, &txt, &len)) abort();
    sl_acl_set *back = NULL;
    char err[128];
    if (sl_acl_set_parse(txt, len, &back, err, sizeof err)) abort();
    if (sl_acl_set_count(back) != sl_acl_set_count(s)) abort();
    for (size_t i = 0; i < sl_acl_set_count(s); i++)
        if (!sl_acl_equal(sl_acl_set_at(s, i), sl_acl_set_at(back, i))) abort();
    if (sl_acl_set_serialize(back, &txt2, &len2) || len2 != len || memcmp(txt, txt2, len)) abort();
    free(txt);
    free(txt2);
    sl_acl_set_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    int which = data[0] & 3;
    int16_t v = (int16_t)((data[0] >> 2) & 3);
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    sl_acl_set *fixed = NULL;
    if (sl_acl_set_build(k_fixed, sizeof k_fixed / sizeof k_fixed[0], &fixed)) abort();
    sl_arena *a = sl_arena_new(16 * 1024);
    if (!a) abort();
    sl_rd r = sl_rd_init(p, n);
    bool bad = false;
    if (which == 0) {
        sl_create_acls_req req;
        if (sl_create_acls_req_decode(&r, a, v, &req) == SL_OK && req.creations_count > 0) {
            sl_acl *ok = calloc((size_t)req.creations_count, sizeof *ok);
            if (!ok) abort();
            size_t nok = 0;
            for (int32_t i = 0; i < req.creations_count; i++) {
                sl_create_acls_req_creation *c = &req.creations[i];
                bad = false;
                sl_acl x = {c->resource_type,
                            c->resource_pattern_type,
                            c->operation,
                            c->permission_type,
                            cstr(a, c->resource_name, &bad),
                            cstr(a, c->principal, &bad),
                            cstr(a, c->host, &bad)};
                if (!bad && !sl_acl_invalid(&x)) ok[nok++] = x;
            }
            sl_acl_set *s = NULL;
            if (sl_acl_set_build(ok, nok, &s)) abort();
            round_trip(s);
            sl_acl_set_free(s);
            free(ok);
        }
    } else if (which == 1) {
        sl_describe_acls_req req;
        if (sl_describe_acls_req_decode(&r, a, v, &req) == SL_OK) {
            sl_acl_filter f = {req.resource_type_filter,
                               req.pattern_type_filter,
                               req.operation,
                               req.permission_type,
                               cstr(a, req.resource_name_filter, &bad),
                               cstr(a, req.principal_filter, &bad),
                               cstr(a, req.host_filter, &bad)};
            if (!bad) check_filter(fixed, &f);
        }
    } else if (which == 2) {
        sl_delete_acls_req req;
        if (sl_delete_acls_req_decode(&r, a, v, &req) == SL_OK)
            for (int32_t i = 0; i < req.filters_count; i++) {
                sl_delete_acls_req_filter *rf = &req.filters[i];
                bad = false;
                sl_acl_filter f = {rf->resource_type_filter,
                                   rf->pattern_type_filter,
                                   rf->operation,
                                   rf->permission_type,
                                   cstr(a, rf->resource_name_filter, &bad),
                                   cstr(a, rf->principal_filter, &bad),
                                   cstr(a, rf->host_filter, &bad)};
                if (!bad) check_filter(fixed, &f);
            }
    } else {
        sl_acl_set *s = NULL;
        char err[256];
        if (sl_acl_set_parse((const char *)p, n, &s, err, sizeof err) == SL_OK) {
            round_trip(s);
            sl_acl_set_free(s);
        } else if (s || !err[0]) {
            abort();
        }
    }
    sl_arena_free(a);
    sl_acl_set_free(fixed);
    return 0;
}
