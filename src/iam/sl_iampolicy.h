/* IAM policy documents and their evaluation, as AWS IAM evaluates identity-based policies: an
 * explicit Deny in any statement wins; otherwise an Allow allows; otherwise the request is
 * implicitly denied. A document is JSON: {"Version": "2012-10-17", "Statement": [...]} (one
 * statement object is accepted in place of the array, as IAM does). A statement has Effect
 * (Allow|Deny), exactly one of Action/NotAction, exactly one of Resource/NotResource (a string
 * or an array of strings), optional Sid and Condition. Principal/NotPrincipal are refused:
 * these are identity policies, attached to users and roles.
 *
 * Matching: actions case-insensitively ("kafka-cluster:ReadData", "kafka-cluster:*", "*",
 * "kafka-cluster:Describe*"); resources case-sensitively; both with the wildcards '*' (any run,
 * also across ':' and '/') and '?' (one character). The policy variables ${aws:username},
 * ${aws:PrincipalTag/KEY}, ${*}, ${?} and ${$} are substituted in Resource values before
 * matching (an unset variable makes the value match nothing).
 *
 * Conditions: every operator in a Condition block must hold (AND), and for an operator, every
 * key (AND), where a key holds when any of its values does (OR). Operators: StringEquals,
 * StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike,
 * StringNotLike, IpAddress, NotIpAddress (IPv4 and IPv6 CIDR), Bool, DateEquals,
 * DateNotEquals, DateLessThan, DateLessThanEquals, DateGreaterThan, DateGreaterThanEquals
 * (ISO 8601 or epoch seconds), NumericEquals/NotEquals/LessThan/LessThanEquals/GreaterThan/
 * GreaterThanEquals, ArnEquals, ArnNotEquals, ArnLike, ArnNotLike (each of an ARN's six parts
 * matched separately), Null; each with the ...IfExists suffix (except Null). Keys:
 * aws:SourceIp, aws:SecureTransport, aws:CurrentTime, aws:EpochTime, aws:PrincipalTag/KEY,
 * aws:username, aws:PrincipalArn, aws:PrincipalType ("User" | "AssumedRole"). A key absent from
 * the context makes its condition false (true for ...IfExists; Null tests presence); a negated
 * operator on an absent key is true, as IAM. Unknown operators are refused at parse time;
 * unknown keys are absent.
 *
 * Limits (checked before allocating): documents up to SL_IAM_POLICY_MAX_BYTES, at most
 * SL_IAM_POLICY_MAX_STATEMENTS statements, SL_IAM_POLICY_MAX_VALUES strings per element.
 *
 * Pure: no I/O, no global state; a parsed policy is immutable and may be shared read-only. */
#ifndef SL_IAM_POLICY_H
#define SL_IAM_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

#define SL_IAM_POLICY_MAX_BYTES      65536
#define SL_IAM_POLICY_MAX_STATEMENTS 256
#define SL_IAM_POLICY_MAX_VALUES     256
#define SL_IAM_NAME_MAX              128 /* policy, user and role names: [A-Za-z0-9+=,.@_-]{1,128} */

typedef struct sl_iam_policy sl_iam_policy;

/* Parses document json[len] (not NUL-terminated) under `name` (copied). SL_OK: *out is the
 * caller's (sl_iam_policy_free). SL_EINVAL for a document IAM would refuse (bad JSON, wrong
 * Version, missing Effect, Action and NotAction together, Principal, unknown condition
 * operator, over a limit...), explained in err (a path like "Statement[2].Condition"), never
 * echoing more than 64 bytes of the input. SL_ENOMEM. */
sl_err sl_iam_policy_parse(const char *name, const char *json, size_t len, sl_iam_policy **out,
                           char *err, size_t elen);
void sl_iam_policy_free(sl_iam_policy *p);
const char *sl_iam_policy_name(const sl_iam_policy *p);
int sl_iam_policy_statements(const sl_iam_policy *p);

/* True when `name` is a valid IAM name ([A-Za-z0-9+=,.@_-], 1..SL_IAM_NAME_MAX bytes). */
bool sl_iam_name_valid(const char *name);

typedef struct sl_iam_tag {
    const char *key, *value;
} sl_iam_tag;

/* What conditions and policy variables read. Borrowed for the call. */
typedef struct sl_iam_ctx {
    const char *source_ip;  /* the client's address without port; NULL: absent */
    bool secure_transport;  /* TLS listener */
    int64_t now_s;          /* aws:CurrentTime, aws:EpochTime (wall clock, seconds) */
    const sl_iam_tag *tags; /* aws:PrincipalTag/KEY (keys compared case-insensitively) */
    size_t ntags;
    const char *username;       /* aws:username: users only (NULL for role sessions) */
    const char *principal_arn;  /* aws:PrincipalArn */
    const char *principal_type; /* aws:PrincipalType: "User" or "AssumedRole" */
} sl_iam_ctx;

typedef enum {
    SL_IAM_IMPLICIT_DENY = 0,
    SL_IAM_ALLOW = 1,
    SL_IAM_EXPLICIT_DENY = 2,
} sl_iam_effect;

/* What decided: the deciding statement (the first explicit Deny that matched, else the first
 * Allow that matched); for an implicit deny, policy NULL and statement -1. policy and sid
 * point into the policy objects (valid while they are). */
typedef struct sl_iam_why {
    const char *policy;
    int statement;   /* index in the document's Statement array */
    const char *sid; /* "" when the statement has none */
} sl_iam_why;

/* Evaluates `action` on `resource` (an ARN) against every policy in pols[0..n) (all the
 * caller's attached policies together). `why` may be NULL. */
sl_iam_effect sl_iam_evaluate(const sl_iam_policy *const *pols, size_t n, const char *action,
                              const char *resource, const sl_iam_ctx *ctx, sl_iam_why *why);

/* True when some resource matching `resource_pattern` could be allowed `action`: an Allow
 * statement matches the action and its resource patterns intersect `resource_pattern` (a
 * prefix up to a '*'), ignoring Deny statements unless they cover the whole pattern. For
 * Kafka's "is any resource of this type allowed" (authorizeByResourceType); conservative:
 * may answer true where a specific resource would be denied, never false where one would be
 * allowed. */
bool sl_iam_allows_any(const sl_iam_policy *const *pols, size_t n, const char *action,
                       const char *resource_pattern, const sl_iam_ctx *ctx);

#endif
