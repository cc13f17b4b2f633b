/* Kafka's ACL model: bindings (resource pattern + principal, host, operation, permission), an
 * immutable indexed set of them, binding filters with Kafka's ANY/MATCH semantics, and the
 * stored text format. Enum values are Kafka's wire codes, so requests map onto them directly.
 *
 * An sl_acl_set is built once and never changed: an update builds a new set and swaps it in,
 * so a decision never sees a half-applied change. Not thread-safe beyond that. */
#ifndef SL_ACL_H
#define SL_ACL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

enum { /* ResourceType */
       SL_ACL_RES_UNKNOWN = 0,
       SL_ACL_RES_ANY = 1,
       SL_ACL_RES_TOPIC = 2,
       SL_ACL_RES_GROUP = 3,
       SL_ACL_RES_CLUSTER = 4,
       SL_ACL_RES_TRANSACTIONAL_ID = 5,
       SL_ACL_RES_DELEGATION_TOKEN = 6,
       SL_ACL_RES_USER = 7,
       SL_ACL_RES__COUNT = 8
};
enum { /* PatternType */
       SL_ACL_PAT_UNKNOWN = 0,
       SL_ACL_PAT_ANY = 1,
       SL_ACL_PAT_MATCH = 2,
       SL_ACL_PAT_LITERAL = 3,
       SL_ACL_PAT_PREFIXED = 4
};
enum { /* AclOperation */
       SL_ACL_OP_UNKNOWN = 0,
       SL_ACL_OP_ANY = 1,
       SL_ACL_OP_ALL = 2,
       SL_ACL_OP_READ = 3,
       SL_ACL_OP_WRITE = 4,
       SL_ACL_OP_CREATE = 5,
       SL_ACL_OP_DELETE = 6,
       SL_ACL_OP_ALTER = 7,
       SL_ACL_OP_DESCRIBE = 8,
       SL_ACL_OP_CLUSTER_ACTION = 9,
       SL_ACL_OP_DESCRIBE_CONFIGS = 10,
       SL_ACL_OP_ALTER_CONFIGS = 11,
       SL_ACL_OP_IDEMPOTENT_WRITE = 12,
       SL_ACL_OP_CREATE_TOKENS = 13,
       SL_ACL_OP_DESCRIBE_TOKENS = 14
};
enum { /* AclPermissionType */
       SL_ACL_PERM_UNKNOWN = 0,
       SL_ACL_PERM_ANY = 1,
       SL_ACL_PERM_DENY = 2,
       SL_ACL_PERM_ALLOW = 3
};

/* The cluster resource's only name. */
#define SL_ACL_CLUSTER_NAME "kafka-cluster"
/* Longest resource name, principal or host accepted (far above Kafka's practical limits; bounds
 * the stored file and the prefix probe). */
#define SL_ACL_STR_MAX 4096

/* One binding. Strings are NUL-terminated and contain no NUL; who owns them depends on where
 * the struct comes from (a set owns its entries'; callers own what they pass in). */
typedef struct sl_acl {
    int8_t rtype, pattern, op, perm;
    const char *name, *principal, *host;
} sl_acl;

/* A binding filter as in DescribeAcls/DeleteAcls: NULL strings match anything; rtype, op and
 * perm may be ANY; pattern may be ANY or MATCH. */
typedef sl_acl sl_acl_filter;

/* Names for the enums ("TOPIC", "PREFIXED", "READ", "ALLOW"); "UNKNOWN" for other values. */
const char *sl_acl_res_name(int v);
const char *sl_acl_pat_name(int v);
const char *sl_acl_op_name(int v);
const char *sl_acl_perm_name(int v);
/* Case-insensitive parse of a name, accepting kafka-acls spellings (Read, IdempotentWrite,
 * idempotent_write, TransactionalId); -1 when unknown. */
int sl_acl_res_parse(const char *s);
int sl_acl_pat_parse(const char *s);
int sl_acl_op_parse(const char *s);
int sl_acl_perm_parse(const char *s);

/* Why a binding cannot be stored (Kafka's InvalidRequestException messages), or NULL if it is
 * a valid concrete binding: known type (not ANY), LITERAL or PREFIXED, a real operation and
 * permission, non-empty name (kafka-cluster for Cluster), principal "Type:name", host set. */
const char *sl_acl_invalid(const sl_acl *a);
/* Why a filter cannot be used (it has UNKNOWN elements or out-of-range codes), or NULL. */
const char *sl_acl_filter_invalid(const sl_acl_filter *f);
/* True when `a` matches filter `f` (AclBindingFilter.matches). */
bool sl_acl_filter_matches(const sl_acl_filter *f, const sl_acl *a);
bool sl_acl_equal(const sl_acl *a, const sl_acl *b);

typedef struct sl_acl_set sl_acl_set;

/* Builds a set from `n` bindings (strings copied; duplicates kept once, first order kept).
 * Every binding must pass sl_acl_invalid() (SL_EINVAL otherwise). Caller owns *out. */
sl_err sl_acl_set_build(const sl_acl *acls, size_t n, sl_acl_set **out);
void sl_acl_set_free(sl_acl_set *s);
size_t sl_acl_set_count(const sl_acl_set *s);
/* The i-th binding; owned by the set. */
const sl_acl *sl_acl_set_at(const sl_acl_set *s, size_t i);

/* The bindings whose resource pattern matches resource (rtype, name): LITERAL name, LITERAL
 * "*", and PREFIXED patterns that are a prefix of name. Calls `fn` for each (indexed: cost
 * grows with the name's length and the matches, not with the set's size). Stops early when
 * `fn` returns false. */
typedef bool (*sl_acl_visit_fn)(void *ctx, const sl_acl *a);
void sl_acl_set_visit(const sl_acl_set *s, int rtype, const char *name, size_t name_len,
                      sl_acl_visit_fn fn, void *ctx);

/* The same walk restricted to bindings whose principal is `principal` or User:* (one probe
 * each per matching resource, however many other principals share it). Returns whether any
 * binding at all matched the resource, for allow.everyone.if.no.acl.found; when `fn` stops the
 * walk early the answer is true (a binding was seen). */
bool sl_acl_set_visit_principal(const sl_acl_set *s, int rtype, const char *name, size_t name_len,
                                const char *principal, sl_acl_visit_fn fn, void *ctx);

/* The stored format: a "sluice-acls 1" line, then one binding per line as seven tab-separated
 * fields (permission, operation, resource type, pattern type, name, principal, host) with bytes
 * outside printable ASCII, '%' and space percent-encoded. `*out` is malloc'd (caller frees). */
sl_err sl_acl_set_serialize(const sl_acl_set *s, char **out, size_t *out_len);
/* Parses the stored format; SL_ECORRUPT with the line explained in `err` on anything else.
 * Caller owns *out. */
sl_err sl_acl_set_parse(const char *data, size_t len, sl_acl_set **out, char *err, size_t err_len);

/* "ALLOW User:alice from * READ on TOPIC LITERAL:payments" into buf (truncated to len). */
void sl_acl_format(const sl_acl *a, char *buf, size_t len);

#endif
