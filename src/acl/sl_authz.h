/* The authorizer: Kafka's StandardAuthorizer rules over an indexed ACL set, the super.users
 * list, and the ACL file (written atomically; writers — the broker's CreateAcls/DeleteAcls and
 * `sluice acl` — serialise on an flock of "<path>.lock").
 *
 * Decision order for (principal, host, operation, resource):
 *   1. a principal in super.users is allowed everything;
 *   2. a matching DENY (same operation or ALL) denies;
 *   3. a matching ALLOW allows, where ALL allows every operation, READ/WRITE/DELETE/ALTER also
 *      allow DESCRIBE and ALTER_CONFIGS also allows DESCRIBE_CONFIGS (implication is for ALLOW
 *      only);
 *   4. when no binding at all matches the resource, allow.everyone.if.no.acl.found decides;
 *   5. otherwise deny.
 * A binding matches when its resource pattern matches (LITERAL name, LITERAL "*", or PREFIXED
 * prefix of the name), its principal is the caller's or User:*, and its host is the caller's
 * address or *.
 *
 * Owned by one thread (the broker's loop, or one CLI process). */
#ifndef SL_AUTHZ_H
#define SL_AUTHZ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl/sl_acl.h"
#include "base/sl_config.h"
#include "base/sl_err.h"

typedef struct sl_authorizer sl_authorizer;

/* True when the configuration turns the authorizer on: authorizer.class.name names Kafka's
 * StandardAuthorizer or AclAuthorizer (anything else non-empty is a configuration error,
 * reported in `err`, returning false with *bad set), or sluice.authorizer.enable=true. */
bool sl_authz_enabled(const sl_config *cfg, bool *bad, char *err, size_t err_len);
/* The ACL file: sluice.acl.file, or <log.dirs>/sluice-acls. */
void sl_authz_path(const sl_config *cfg, char *out, size_t len);

/* Opens the authorizer over the ACL file at `path` (copied); a missing file is an empty set.
 * A file that does not parse is refused (SL_ECONFIG, explained in `err`): starting with a
 * different rule set than the one written would be a silent change of policy.
 * `super_users` is the super.users value ("User:a;User:b"), copied. Caller owns *out. */
sl_err sl_authorizer_new(const char *path, const char *super_users, bool allow_if_no_acl,
                         sl_authorizer **out, char *err, size_t err_len);
void sl_authorizer_free(sl_authorizer *az);

/* Reloads the file if its inode, size or mtime changed since it was read; checked at most
 * once a second unless `force`. On a parse error the loaded set stays (logged once). */
sl_err sl_authorizer_refresh(sl_authorizer *az, bool force);
/* The current set; owned by the authorizer, valid until the next refresh or replace. */
const sl_acl_set *sl_authorizer_set(const sl_authorizer *az);
/* Replaces the set with `next`, taking ownership of it in every case: writes the file first
 * (atomically, mode 0600) and swaps only when that succeeded; on failure the old set stays and
 * `next` is freed. Call between lock and unlock. */
sl_err sl_authorizer_replace(sl_authorizer *az, sl_acl_set *next);
/* The writers' lock; lock also reloads the file, so a read-modify-write loses no change made
 * by another writer. Blocks until the lock is free. */
sl_err sl_authorizer_lock(sl_authorizer *az);
void sl_authorizer_unlock(sl_authorizer *az);

bool sl_authorizer_is_super(const sl_authorizer *az, const char *principal);
/* The decision described above. `principal` may be NULL (unauthenticated: denied), `host` is
 * the client's address without port. */
bool sl_authorizer_allows(const sl_authorizer *az, const char *principal, const char *host, int op,
                          int rtype, const char *name, size_t name_len);
/* sl_authorizer_allows, also saying what decided a denial into `why` (`len` bytes): the DENY
 * binding that matched (sl_acl_format), or that no ALLOW binding matched (deny by default), or
 * that the caller is unauthenticated. `why` is left untouched when allowed. For the audit trail,
 * which names the rule behind every denial. */
bool sl_authorizer_explain(const sl_authorizer *az, const char *principal, const char *host, int op,
                           int rtype, const char *name, size_t name_len, char *why, size_t len);
/* Kafka's authorizeByResourceType: true when some resource of `rtype` would allow `op` (an
 * ALLOW binding for the caller not shadowed by a DENY on a pattern covering it). Scans the set. */
bool sl_authorizer_allows_any(const sl_authorizer *az, const char *principal, const char *host,
                              int op, int rtype);
/* Bitfield (1 << op) of the operations Kafka lists for `rtype` that the caller may perform,
 * for the *_authorized_operations fields. */
int32_t sl_authorizer_ops(const sl_authorizer *az, const char *principal, const char *host,
                          int rtype, const char *name, size_t name_len);

#endif
