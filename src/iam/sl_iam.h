/* The broker's IAM context: the store (users, keys, roles, policies), the resource-ARN
 * settings and the verification parameters, shared by the two stages that use them:
 *   authenticate: AWS_MSK_IAM payloads and MSK OAUTHBEARER tokens are verified here
 *                 (src/auth/sl_msk_iam.h does the SigV4 work; the store finds secrets) and
 *                 become an sl_iam_identity on the session and on each request (sl_req.iam);
 *   authorize:    a request whose principal is an IAM identity is decided by its attached
 *                 policies (sl_iamaction.h), every other principal by Kafka ACLs.
 * Created by the broker when a listener enables AWS_MSK_IAM, or OAUTHBEARER (MSK tokens are
 * told apart from JWTs), or when the IAM store exists; NULL otherwise. Loop thread only.
 *
 * sl_iam.c: lifecycle and verification. sl_iam_authz.c: the decisions. */
#ifndef SL_IAM_H
#define SL_IAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sl_msk_iam.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "iam/sl_iamaction.h"
#include "iam/sl_iamstore.h"

typedef struct sl_iam sl_iam;

/* Opens (creating) the store and key of `cfg` (sl_iamstore_paths), reads the ARN settings
 * (`cluster_id`: the broker's, for an unset sluice.iam.cluster.uuid) and the host names a
 * payload may be signed for: hosts[0..nhosts) (the advertised listeners' hosts, copied) plus
 * sluice.iam.hosts. Errors name the key or file. Caller owns *out. */
sl_err sl_iam_new(const sl_config *cfg, const char *cluster_id, const char *const *hosts,
                  size_t nhosts, sl_iam **out, char *err, size_t elen);
void sl_iam_free(sl_iam *iam);
sl_iamstore *sl_iam_store(sl_iam *iam);
const sl_iam_arn_cfg *sl_iam_arns(const sl_iam *iam);

/* Verifies an AWS_MSK_IAM client-first payload p[n] (sl_msk_iam_verify_payload with the store's
 * secrets, the configured region, hosts and skew, at now_s) and resolves who signed it. SL_OK
 * fills *id (its expiry_s: the end of the signature's validity or of the temporary
 * credentials, whichever is first: the session must end then, KIP-368) and records the key's
 * use. SL_EAUTH: *reason gets a static text for the broker's log (never sent to the client;
 * an unknown key id and a wrong secret give the same one), and id->akid the key id the
 * signature named when it has AWS's form (20 of [A-Z0-9]; else empty), existing or not: who
 * tried, for the audit trail. */
sl_err sl_iam_verify_payload(sl_iam *iam, const uint8_t *p, size_t n, int64_t now_s,
                             sl_iam_identity *id, const char **reason);
/* The same for an MSK OAUTHBEARER token tok[n] (sl_msk_iam_verify_token). */
sl_err sl_iam_verify_token(sl_iam *iam, const char *tok, size_t n, int64_t now_s,
                           sl_iam_identity *id, const char **reason);
/* Both for a connection from `source_ip` (no port; NULL: absent) over TLS or not: the
 * kafka-cluster:Connect decision's aws:SourceIp and aws:SecureTransport (the two above decide
 * as for an absent address over TLS). When Connect is denied, *id names who was refused. */
sl_err sl_iam_verify_payload_from(sl_iam *iam, const uint8_t *p, size_t n, int64_t now_s,
                                  const char *source_ip, bool tls, sl_iam_identity *id,
                                  const char **reason);
sl_err sl_iam_verify_token_from(sl_iam *iam, const char *tok, size_t n, int64_t now_s,
                                const char *source_ip, bool tls, sl_iam_identity *id,
                                const char **reason);

/* Verifies an AWS API request signed in SigV4's header form (sl_msk_iam_verify_http, for the
 * STS endpoint: r->service "sts") with the store's secrets, the configured region, hosts and
 * skew, and resolves who signed it, as sl_iam_verify_payload (no kafka-cluster:Connect: the
 * caller decides its own action). */
sl_err sl_iam_verify_http(sl_iam *iam, const sl_msk_iam_http *r, int64_t now_s, sl_iam_identity *id,
                          const char **reason);
/* The region payloads and requests must be signed for. */
const char *sl_iam_region(const sl_iam *iam);

/* ---- decisions (sl_iam_authz.c) ----
 * `source_ip`: the client's address without port; `tls`: the connection is TLS. The store is
 * refreshed at most once a second before deciding, so a policy change applies to the next
 * request. */

/* As sl_authorizer_explain: may `id` do op on rtype:name; on a denial `why` says which action
 * and which statement (or none) decided. */
bool sl_iam_decide(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls, int op,
                   int rtype, const char *name, size_t nlen, char *why, size_t wlen);
/* As sl_authorizer_allows_any. */
bool sl_iam_decide_any(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                       int op, int rtype);
/* `action` (e.g. "sts:AssumeRole") on `resource` (an ARN) for `id`, by its attached policies;
 * on a denial `why` names the deciding statement (or none). */
bool sl_iam_decide_action(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                          const char *action, const char *resource, char *why, size_t wlen);
/* As sl_authorizer_ops. */
int32_t sl_iam_decide_ops(sl_iam *iam, const sl_iam_identity *id, const char *source_ip, bool tls,
                          int rtype, const char *name, size_t nlen);

#endif
