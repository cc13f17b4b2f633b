/* The authorization stage (sl_authorize.h): named resources, one decision each, recorded. */
#include "pipeline/sl_authorize.h"

#include <stdio.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "iam/sl_iam.h"

/* Decisions keyed by (type, op, name, any-type): a request names a handful of resources, or
 * thousands for a Metadata of every topic, so lookups go through a hash, not a scan. */
static uint32_t res_hash(int rtype, int op, bool any, sl_str name) {
    uint32_t h = 2166136261u ^ (uint32_t)(rtype << 16 | op << 8 | any);
    for (int32_t i = 0; i < name.len; i++) h = (h ^ (uint8_t)name.p[i]) * 16777619u;
    return h;
}

static sl_str nonnull(sl_str s) { return s.len < 0 ? (sl_str){"", 0} : s; }

static int32_t res_find(const sl_req *rq, int rtype, int op, bool any, sl_str name) {
    if (!rq->capres) return -1;
    name = nonnull(name);
    uint32_t cap = (uint32_t)rq->capres * 2;
    for (int32_t i = rq->hash[res_hash(rtype, op, any, name) % cap]; i; i = rq->res[i - 1].hnext) {
        const sl_req_res *r = &rq->res[i - 1];
        if (r->rtype == rtype && r->op == op && ((r->flags & SL_AZ_ANY) != 0) == any &&
            r->name.len == name.len && !memcmp(r->name.p, name.p, (size_t)name.len))
            return i - 1;
    }
    return -1;
}

static bool res_grow(sl_req *rq) {
    int32_t cap = rq->capres ? rq->capres * 2 : 8;
    sl_req_res *res = sl_arena_alloc(rq->a, (size_t)cap * sizeof *res);
    int32_t *hash = sl_arena_calloc(rq->a, (size_t)cap * 2, sizeof *hash);
    if (!res || !hash) return false;
    if (rq->nres) memcpy(res, rq->res, (size_t)rq->nres * sizeof *res);
    for (int32_t i = 0; i < rq->nres; i++) {
        sl_req_res *r = &res[i];
        uint32_t b = res_hash(r->rtype, r->op, r->flags & SL_AZ_ANY, r->name) % (uint32_t)(cap * 2);
        r->hnext = hash[b];
        hash[b] = i + 1;
    }
    rq->res = res;
    rq->hash = hash;
    rq->capres = cap;
    return true;
}

/* Out of memory while naming: the resource stays unnamed, so every decision asked about it
 * is a denial, and the request carries UNKNOWN_SERVER_ERROR for the observers. */
static int32_t need(sl_req *rq, int op, int rtype, sl_str name, unsigned flags, int32_t alt) {
    name = nonnull(name);
    bool any = flags & SL_AZ_ANY;
    int32_t at = res_find(rq, rtype, op, any, name);
    if (at >= 0) {
        rq->res[at].flags &= (uint8_t)(flags | ~SL_AZ_QUIET); /* a logged naming wins */
        return at;
    }
    char *copy = NULL;
    if ((rq->nres == rq->capres && !res_grow(rq)) ||
        !(copy = sl_arena_dup(rq->a, name.p, (size_t)name.len))) {
        rq->error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        return -1;
    }
    sl_req_res *r = &rq->res[rq->nres];
    *r = (sl_req_res){.name = {copy, name.len},
                      .rtype = (int8_t)rtype,
                      .op = (int8_t)op,
                      .flags = (uint8_t)flags,
                      .alt = alt < rq->nres ? alt : -1};
    uint32_t b = res_hash(rtype, op, any, r->name) % (uint32_t)(rq->capres * 2);
    r->hnext = rq->hash[b];
    rq->hash[b] = ++rq->nres;
    return rq->nres - 1;
}

int32_t sl_req_need(sl_req *rq, int op, int rtype, sl_str name, unsigned flags) {
    return need(rq, op, rtype, name, flags & ~(unsigned)SL_AZ_OPS, -1);
}

int32_t sl_req_need_alt(sl_req *rq, int op, int rtype, sl_str name, unsigned flags, int32_t alt) {
    return need(rq, op, rtype, name, flags & ~(unsigned)SL_AZ_OPS, alt);
}

int32_t sl_req_need_cluster(sl_req *rq, int op, unsigned flags) {
    return sl_req_need(rq, op, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME), flags);
}

void sl_req_need_ops(sl_req *rq, int rtype, sl_str name) {
    need(rq, SL_ACL_OP_ALL, rtype, name, SL_AZ_OPS | SL_AZ_QUIET, -1);
}

const char *sl_req_host(const sl_req *rq, char *buf, size_t len) {
    const char *peer = rq->peer ? rq->peer : "";
    const char *start = peer, *end = strrchr(peer, ':');
    if (*start == '[') {
        start++;
        end = strchr(start, ']');
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n >= len) n = len - 1;
    memcpy(buf, start, n);
    buf[n] = 0;
    return buf;
}

/* Everything Kafka lists for the type, as a broker without an authorizer answers. */
static int32_t all_ops(int rtype) {
    int32_t all = 0;
    for (int op = SL_ACL_OP_READ; op <= SL_ACL_OP_IDEMPOTENT_WRITE; op++) all |= 1 << op;
    if (rtype == SL_ACL_RES_TOPIC)
        return all & ~(1 << SL_ACL_OP_CLUSTER_ACTION | 1 << SL_ACL_OP_IDEMPOTENT_WRITE);
    if (rtype == SL_ACL_RES_GROUP)
        return 1 << SL_ACL_OP_READ | 1 << SL_ACL_OP_DESCRIBE | 1 << SL_ACL_OP_DELETE;
    return all & ~(1 << SL_ACL_OP_READ | 1 << SL_ACL_OP_WRITE | 1 << SL_ACL_OP_DELETE);
}

/* Denials are audit events (Kafka logs them too); resource names are not payload, but group
 * names are any bytes the client chose: printable ASCII only reaches the log line. */
static void log_denial(const sl_req *rq, const char *host, const sl_req_res *r) {
    char safe[201];
    int n = r->name.len > 200 ? 200 : r->name.len;
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->name.p[i];
        safe[i] = c > 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    safe[n] = 0;
    SL_INFO(rq->iam ? "iam" : "acl", "denied", "principal=%s host=%s api=%d op=%s resource=%s:%s",
            rq->principal ? rq->principal : "-", host, rq->h.api_key, sl_acl_op_name(r->op),
            sl_acl_res_name(r->rtype), (r->flags & SL_AZ_ANY) ? "*any*" : safe);
}

int16_t sl_authorize_denial_code(int rtype) {
    switch (rtype) {
    case SL_ACL_RES_TOPIC:
        return SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
    case SL_ACL_RES_GROUP:
        return SL_KAFKA_GROUP_AUTHORIZATION_FAILED;
    case SL_ACL_RES_TRANSACTIONAL_ID:
        return SL_KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    default:
        return SL_KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    }
}

/* ---- the audit topic's rule (SL_AUDIT_TOPIC) ---- */

static bool is_audit_topic(const sl_req_res *r) {
    return r->rtype == SL_ACL_RES_TOPIC && !(r->flags & SL_AZ_ANY) &&
           sl_str_eqc(r->name, SL_AUDIT_TOPIC);
}

typedef struct grant_ctx {
    const char *host;
    int op;
    bool allowed, denied;
} grant_ctx;

static bool grant_one(void *vc, const sl_acl *a) {
    grant_ctx *c = vc;
    if (strcmp(a->host, "*") != 0 && strcmp(a->host, c->host) != 0) return true;
    if (a->perm == SL_ACL_PERM_DENY) {
        if (a->op == SL_ACL_OP_ALL || a->op == c->op) {
            c->denied = true;
            return false;
        }
        return true;
    }
    /* Only a binding naming the topic itself grants: not "*", not a prefix. */
    if (a->pattern != SL_ACL_PAT_LITERAL || strcmp(a->name, SL_AUDIT_TOPIC) != 0) return true;
    if (a->op == SL_ACL_OP_ALL || a->op == c->op ||
        (c->op == SL_ACL_OP_DESCRIBE && a->op == SL_ACL_OP_READ) ||
        (c->op == SL_ACL_OP_DESCRIBE_CONFIGS && a->op == SL_ACL_OP_READ))
        c->allowed = true;
    return true;
}

/* The decision for `op` on the audit topic: never for changes, an explicit grant for reads
 * (no super-user bypass, no allow.everyone.if.no.acl.found); without an authorizer, describing
 * is open as for every topic and reading is closed. */
static bool audit_topic_allows(const sl_req *rq, struct sl_authorizer *az, const char *host,
                               int op) {
    switch (op) {
    case SL_ACL_OP_READ:
    case SL_ACL_OP_DESCRIBE:
    case SL_ACL_OP_DESCRIBE_CONFIGS:
        break;
    default:
        return false;
    }
    if (!az) return op != SL_ACL_OP_READ;
    if (!rq->principal) return false;
    grant_ctx c = {.host = host, .op = op};
    (void)sl_acl_set_visit_principal(sl_authorizer_set(az), SL_ACL_RES_TOPIC, SL_AUDIT_TOPIC,
                                     strlen(SL_AUDIT_TOPIC), rq->principal, grant_one, &c);
    return c.allowed && !c.denied;
}

static int32_t audit_topic_ops(const sl_req *rq, struct sl_authorizer *az, const char *host) {
    int32_t ops = 0;
    for (int op = SL_ACL_OP_READ; op <= SL_ACL_OP_IDEMPOTENT_WRITE; op++)
        if (audit_topic_allows(rq, az, host, op)) ops |= 1 << op;
    return ops;
}

/* Keeps what decided a denial with the resource, for the observers (the audit trail names it). */
static void decided_by(sl_req *rq, sl_req_res *r, const char *why) {
    if (!(r->flags & SL_AZ_QUIET) && why[0])
        r->decided_by = sl_arena_dup(rq->a, why, strlen(why) + 1);
}

/* Records a denial: what decided, the Kafka error, and the log line unless quiet. */
static void denied(sl_req *rq, const char *host, sl_req_res *r, const char *why) {
    decided_by(rq, r, why);
    r->error = sl_authorize_denial_code(r->rtype);
    if (!(r->flags & SL_AZ_QUIET)) log_denial(rq, host, r);
}

/* An IAM principal (rq->iam) is decided by its attached policies only: no super users, no
 * ACLs, no allow.everyone.if.no.acl.found; on a broker without IAM, nothing is allowed. The
 * audit topic is never theirs: its trail is read under a literal ACL grant, which IAM
 * principals cannot hold, so a broad policy (kafka-cluster:* on *) does not reveal it. */
static void decide_iam(sl_req *rq, const char *host, sl_req_res *r) {
    struct sl_iam *iam = rq->b ? rq->b->iam : NULL;
    char why[768] = "";
    if (is_audit_topic(r)) {
        r->ops = 0;
        r->allowed = false;
        if (r->flags & SL_AZ_OPS) return;
        denied(rq, host, r, "the audit topic's rule (IAM principals neither read nor change it)");
        return;
    }
    if (r->flags & SL_AZ_OPS) {
        r->ops = iam ? sl_iam_decide_ops(iam, rq->iam, host, rq->tls, r->rtype, r->name.p,
                                         (size_t)r->name.len)
                     : 0;
        r->allowed = r->ops != 0;
        return;
    }
    if (r->alt >= 0 && rq->res[r->alt].allowed) {
        r->allowed = r->by_alt = true;
        return;
    }
    if (!iam) {
        r->allowed = false;
        snprintf(why, sizeof why, "IAM principal on a broker without IAM (everything denied)");
    } else if (r->flags & SL_AZ_ANY) {
        r->allowed = sl_iam_decide_any(iam, rq->iam, host, rq->tls, r->op, r->rtype);
        snprintf(why, sizeof why, "no statement allows %s on any %s (implicit deny)",
                 sl_acl_op_name(r->op), sl_acl_res_name(r->rtype));
    } else {
        r->allowed = sl_iam_decide(iam, rq->iam, host, rq->tls, r->op, r->rtype, r->name.p,
                                   (size_t)r->name.len, why, sizeof why);
    }
    if (!r->allowed) denied(rq, host, r, why);
}

/* Decides one named resource and records the decision (logging a denial unless quiet). */
static void decide(sl_req *rq, struct sl_authorizer *az, const char *host, sl_req_res *r) {
    if (rq->iam) {
        decide_iam(rq, host, r);
        return;
    }
    char why[256] = "";
    if (is_audit_topic(r)) {
        /* Before alternatives: CREATE on the cluster does not create this topic. */
        if (r->flags & SL_AZ_OPS) {
            r->ops = audit_topic_ops(rq, az, host);
            r->allowed = r->ops != 0;
            return;
        }
        r->allowed = audit_topic_allows(rq, az, host, r->op);
        if (r->allowed) return;
        decided_by(rq, r,
                   "the audit topic's rule (written by the broker only; read by literal grant)");
        r->error = SL_KAFKA_TOPIC_AUTHORIZATION_FAILED;
        if (!(r->flags & SL_AZ_QUIET)) log_denial(rq, host, r);
        return;
    }
    if (r->flags & SL_AZ_OPS) {
        r->ops = az ? sl_authorizer_ops(az, rq->principal, host, r->rtype, r->name.p,
                                        (size_t)r->name.len)
                    : all_ops(r->rtype);
        r->allowed = r->ops != 0;
        return;
    }
    if (r->alt >= 0 && rq->res[r->alt].allowed) {
        r->allowed = r->by_alt = true;
        return;
    }
    if (!az)
        r->allowed = true;
    else if (r->flags & SL_AZ_ANY)
        r->allowed = sl_authorizer_allows_any(az, rq->principal, host, r->op, r->rtype);
    else
        r->allowed = sl_authorizer_explain(az, rq->principal, host, r->op, r->rtype, r->name.p,
                                           (size_t)r->name.len, why, sizeof why);
    if (r->allowed) return;
    denied(rq, host, r,
           (r->flags & SL_AZ_ANY) ? "no ALLOW binding on any resource of the type" : why);
}

void sl_authorize_stage(sl_req *rq, struct sl_authorizer *az) {
    char host[64] = "";
    if (az || rq->iam) sl_req_host(rq, host, sizeof host);
    for (int32_t i = 0; i < rq->nres; i++) decide(rq, az, host, &rq->res[i]);
}

bool sl_authorize_late(sl_req *rq, struct sl_authorizer *az, int op, int rtype, sl_str name,
                       unsigned flags) {
    if (flags & SL_AZ_OPS) {
        op = SL_ACL_OP_ALL;
        flags |= SL_AZ_QUIET;
    }
    int32_t before = rq->nres;
    int32_t at = need(rq, op, rtype, name, flags, -1);
    if (at < 0) return false;
    if (at < before) return rq->res[at].allowed; /* named (and decided) already */
    char host[64] = "";
    if (az || rq->iam) sl_req_host(rq, host, sizeof host);
    decide(rq, az, host, &rq->res[at]);
    return rq->res[at].allowed;
}

static const sl_req_res *lookup(const sl_req *rq, int op, int rtype, bool any, sl_str name) {
    int32_t at = res_find(rq, rtype, op, any, name);
    if (at >= 0) return &rq->res[at];
    /* A handler asking about what its descriptor never named is a bug; deny, loudly. */
    SL_ERROR("pipeline", "authorization asked for a resource the request did not name",
             "api=%d op=%d resource_type=%d", rq->h.api_key, op, rtype);
    return NULL;
}

bool sl_req_allowed(const sl_req *rq, int op, int rtype, sl_str name) {
    const sl_req_res *r = lookup(rq, op, rtype, false, name);
    return r && r->allowed;
}

bool sl_req_allowed_cluster(const sl_req *rq, int op) {
    return sl_req_allowed(rq, op, SL_ACL_RES_CLUSTER, sl_str_c(SL_ACL_CLUSTER_NAME));
}

bool sl_req_allowed_any(const sl_req *rq, int op, int rtype) {
    const sl_req_res *r = lookup(rq, op, rtype, true, (sl_str){"", 0});
    return r && r->allowed;
}

int32_t sl_req_ops(const sl_req *rq, int rtype, sl_str name) {
    const sl_req_res *r = lookup(rq, SL_ACL_OP_ALL, rtype, false, name);
    return r ? r->ops : 0;
}

void sl_req_res_error(sl_req *rq, int op, int rtype, sl_str name, int16_t err) {
    int32_t at = res_find(rq, rtype, op, false, name);
    if (at >= 0 && !rq->res[at].error) rq->res[at].error = err;
}
