/* libFuzzer target for the ACL admin requests and the stored ACL file. The first byte picks
 * the target and (for requests) the version:
 *   0: CreateAcls request → every creation through sl_acl_invalid; the valid ones are built
 *      into a set, serialized, parsed back and must compare equal;
 *   1: DescribeAcls request → the filter through sl_acl_filter_invalid and matched against a
 *      fixed set and an indexed lookup of its name;
 *   2: DeleteAcls request → every filter as above;
 *   3: the stored ACL file parser; what it accepts must serialize to the same text.
 * With bit 4 of the first byte set, the input is instead a small rule set and one request,
 * decided by the authorizer (sl_authorizer_allows over an ACL file) and checked against Kafka's
 * rules (decide() below):
 *   byte 1: bit 0 allow.everyone.if.no.acl.found, bits 1-7 the request's principal, host,
 *           operation (rest of the input: pairs of bytes)
 *   then 4 bytes per binding (at most 8): permission/operation, resource type/pattern, name,
 *   principal/host, from small vocabularies so that bindings and requests overlap; then 3 bytes
 *   for the request: operation, resource type, name.
 * Invariants: no principal (unauthenticated) is denied; a super user is allowed; a matching DENY
 * always wins; an allowed request has a matching ALLOW (or no binding names the resource at all
 * and allow.everyone.if.no.acl.found is on); and conversely a matching ALLOW without a DENY, or an
 * unnamed resource with allow.everyone.if.no.acl.found, is allowed. The authorized-operations
 * bitfield never claims an operation the decision refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
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

/* ---- the authorizer against a model of Kafka's rules ---- */

static const char *const k_names[] = {"topic-a", "topic", "t", "*", "to", "x", "kafka-cluster"};
static const char *const k_principals[] = {"User:a", "User:b", "User:*", "User:root"};
static const char *const k_hosts[] = {"*", "10.0.0.1", "10.0.0.2"};
static const char *const k_req_principals[] = {"User:a", "User:b", "User:root", NULL};
static const char *const k_req_hosts[] = {"10.0.0.1", "10.0.0.2"};
static const int8_t k_rtypes[] = {SL_ACL_RES_TOPIC, SL_ACL_RES_GROUP, SL_ACL_RES_CLUSTER,
                                  SL_ACL_RES_TRANSACTIONAL_ID};
#define PICK(arr, b) (arr)[(b) % (sizeof(arr) / sizeof((arr)[0]))]

static bool res_match(const sl_acl *a, int rtype, const char *name) {
    if (a->rtype != rtype) return false;
    if (a->pattern == SL_ACL_PAT_LITERAL) return !strcmp(a->name, name) || !strcmp(a->name, "*");
    return a->pattern == SL_ACL_PAT_PREFIXED && !strncmp(name, a->name, strlen(a->name));
}

static bool who_match(const sl_acl *a, const char *principal, const char *host) {
    return (!strcmp(a->principal, principal) || !strcmp(a->principal, "User:*")) &&
           (!strcmp(a->host, host) || !strcmp(a->host, "*"));
}

/* Kafka: ALLOW on READ, WRITE, DELETE or ALTER implies DESCRIBE; ALTER_CONFIGS implies
 * DESCRIBE_CONFIGS. A DENY denies only what it names (or ALL). */
static bool op_match(const sl_acl *a, int op) {
    if (a->op == op || a->op == SL_ACL_OP_ALL) return true;
    if (a->perm != SL_ACL_PERM_ALLOW) return false;
    if (op == SL_ACL_OP_DESCRIBE)
        return a->op == SL_ACL_OP_READ || a->op == SL_ACL_OP_WRITE || a->op == SL_ACL_OP_DELETE ||
               a->op == SL_ACL_OP_ALTER;
    return op == SL_ACL_OP_DESCRIBE_CONFIGS && a->op == SL_ACL_OP_ALTER_CONFIGS;
}

typedef struct model {
    bool named, deny, allow; /* some binding names the resource; a matching DENY; ALLOW */
} model;

static model decide(const sl_acl_set *set, const char *principal, const char *host, int op,
                    int rtype, const char *name) {
    model m = {false, false, false};
    for (size_t i = 0; i < sl_acl_set_count(set); i++) {
        const sl_acl *a = sl_acl_set_at(set, i);
        if (!res_match(a, rtype, name)) continue;
        m.named = true;
        if (!who_match(a, principal, host) || !op_match(a, op)) continue;
        if (a->perm == SL_ACL_PERM_DENY) m.deny = true;
        if (a->perm == SL_ACL_PERM_ALLOW) m.allow = true;
    }
    return m;
}

static void fail(const char *why, const char *principal, const char *host, int op, int rtype,
                 const char *name) {
    fprintf(stderr, "fuzz_acl: %s: %s@%s %s %s:%s\n", why, principal ? principal : "(none)", host,
            sl_acl_op_name(op), sl_acl_res_name(rtype), name);
    abort();
}

static void authorizer_model(const uint8_t *p, size_t n) {
    if (n < 4) return;
    static char path[256];
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/sluice-fuzz-acl-%d", tmp && *tmp ? tmp : "/tmp",
                 (int)getpid());
    }
    bool allow_if_none = p[0] & 1;
    const char *principal = PICK(k_req_principals, p[0] >> 1);
    const char *host = PICK(k_req_hosts, p[0] >> 3);
    size_t nb = (n - 4) / 4 > 8 ? 8 : (n - 4) / 4;
    sl_acl acls[8];
    size_t na = 0;
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *b = p + 1 + 4 * i;
        sl_acl a = {PICK(k_rtypes, b[1]),
                    (b[1] >> 4) & 1 ? SL_ACL_PAT_PREFIXED : SL_ACL_PAT_LITERAL,
                    (int8_t)(SL_ACL_OP_ALL + (b[0] & 15) % 13),
                    (b[0] >> 4) & 1 ? SL_ACL_PERM_DENY : SL_ACL_PERM_ALLOW,
                    PICK(k_names, b[2]),
                    PICK(k_principals, b[3]),
                    PICK(k_hosts, b[3] >> 4)};
        if (!sl_acl_invalid(&a)) acls[na++] = a;
    }
    const uint8_t *q = p + 1 + 4 * nb;
    int op = SL_ACL_OP_READ + q[0] % 12;
    int rtype = PICK(k_rtypes, q[1]);
    const char *name = rtype == SL_ACL_RES_CLUSTER ? SL_ACL_CLUSTER_NAME : PICK(k_names, q[2]);
    sl_acl_set *set = NULL;
    char *txt = NULL, err[256];
    size_t tl = 0;
    if (sl_acl_set_build(acls, na, &set) || sl_acl_set_serialize(set, &txt, &tl)) abort();
    FILE *f = fopen(path, "w");
    if (!f || fwrite(txt, 1, tl, f) != tl || fclose(f)) abort();
    free(txt);
    sl_authorizer *az = NULL;
    if (sl_authorizer_new(path, "User:root", allow_if_none, &az, err, sizeof err)) abort();
    if (sl_acl_set_count(sl_authorizer_set(az)) != sl_acl_set_count(set)) abort();
    bool got = sl_authorizer_allows(az, principal, host, op, rtype, name, strlen(name));
    model m = principal ? decide(set, principal, host, op, rtype, name) : (model){0};
    if (!principal) {
        if (got) fail("allowed without a principal", principal, host, op, rtype, name);
    } else if (!strcmp(principal, "User:root")) {
        if (!got) fail("super user denied", principal, host, op, rtype, name);
    } else if (m.deny) {
        if (got) fail("allowed despite a matching DENY", principal, host, op, rtype, name);
    } else if (m.allow || (!m.named && allow_if_none)) {
        if (!got) fail("denied despite a matching ALLOW", principal, host, op, rtype, name);
    } else if (got) {
        fail("allowed without a matching ALLOW", principal, host, op, rtype, name);
    }
    if (principal) {
        int32_t ops = sl_authorizer_ops(az, principal, host, rtype, name, strlen(name));
        for (int o = SL_ACL_OP_READ; o <= SL_ACL_OP_DESCRIBE_TOKENS; o++)
            if ((ops >> o & 1) &&
                !sl_authorizer_allows(az, principal, host, o, rtype, name, strlen(name)))
                fail("authorized operations list a refused one", principal, host, o, rtype, name);
    }
    sl_authorizer_free(az);
    sl_acl_set_free(set);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    if (data[0] & 0x10) {
        authorizer_model(data + 1, size - 1);
        return 0;
    }
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
