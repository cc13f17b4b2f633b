/* The STS-compatible endpoint: the admin request that issues temporary credentials, as AWS
 * STS does, so `aws sts assume-role --endpoint-url https://broker:9443`, botocore's and the
 * SDKs' STS clients, and credential providers that assume a role (AWS_ROLE_ARN profiles,
 * `role_arn` in ~/.aws/config) work against Sluice unchanged.
 *
 * Protocol (AWS's Query API): POST / with an application/x-www-form-urlencoded body (Action,
 * Version=2011-06-15, and the action's parameters), signed with SigV4's header form for service
 * "sts" and the configured region (sluice.iam.region) with a key Sluice issued (a user's, or
 * temporary credentials: role chaining). Answers are STS's XML documents; errors are STS's
 * ErrorResponse with its codes.
 *
 * Actions:
 *   AssumeRole (RoleArn, RoleSessionName, DurationSeconds): the caller's attached policies must
 *     allow sts:AssumeRole on the role's ARN (arn:aws:iam::ACCOUNT:role/NAME); the duration is
 *     900 s .. the role's maximum (default 3600 s or the role's maximum if lower), and at most
 *     3600 s for a role session assuming a role (role chaining, as AWS); the credentials are
 *     those `sluice iam assume-role` issues. A role that does not exist answers exactly as one
 *     the caller may not assume (AccessDenied), so roles cannot be enumerated.
 *     Session policies (Policy, PolicyArns) and session tags are refused, not ignored: ignoring
 *     them would grant more than the caller asked for.
 *   GetCallerIdentity: who signed (Account, Arn, UserId); no permission needed, as AWS.
 *
 * Every verification failure (unknown key, wrong secret, expired session, date out of skew,
 * another host) answers SignatureDoesNotMatch (403), so none tells the others apart; the real
 * reason goes to the log and the audit trail (SL_EV_AUTH, mechanism "AWS4-HMAC-SHA256",
 * listener "STS"). Every AssumeRole, allowed or refused, is an SL_EV_ADMIN event naming the
 * role ARN and, when refused, the deciding statement. Secrets and tokens are never logged.
 *
 * HTTPS only (sluice.iam.sts.listener=https://host:port): the answer carries a secret.
 * Loop thread only. */
#ifndef SL_IAM_STS_H
#define SL_IAM_STS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "http/sl_httpd.h"
#include "iam/sl_iam.h"

#define SL_STS_MAX_BODY    16384
#define SL_STS_TLS_NAME    "STS"
#define SL_STS_API_VERSION "2011-06-15"

struct sl_events;
struct sl_loop;
typedef struct sl_iam_sts sl_iam_sts;

/* What the endpoint uses, borrowed: all outlive it. */
typedef struct sl_iam_sts_env {
    const sl_config *cfg; /* sluice.iam.sts.*, sluice.iam.max.session.duration.ms, TLS keys */
    sl_iam *iam;
    struct sl_events *hub; /* audit and metrics observe the endpoint through it; may be NULL */
    struct sl_loop *loop;
} sl_iam_sts_env;

/* Listens on cfg->sluice_iam_sts_listener (off when empty: SL_OK, *out NULL). Errors name the
 * key. Caller owns *out. */
sl_err sl_iam_sts_new(const sl_iam_sts_env *env, sl_iam_sts **out, char *err, size_t elen);
void sl_iam_sts_free(sl_iam_sts *s);
int sl_iam_sts_port(const sl_iam_sts *s);
/* The endpoint's TLS endpoint, for certificate reloads with the broker's; NULL when off. */
struct sl_tls_endpoint *sl_iam_sts_tls(const sl_iam_sts *s);

/* The HTTP handler (sl_httpd_handler), exposed for unit tests: `ud` is the sl_iam_sts. */
void sl_iam_sts_handle(void *ud, const sl_httpd_peer *peer, const sl_http_req *r, const char *body,
                       size_t blen, sl_httpd_resp *out);

/* ---- pure parts (tests, fuzz/fuzz_sts.c) ---- */

typedef struct sl_sts_form {
    char action[32];
    char version[16];
    char role_arn[SL_IAM_ARN_MAX];
    char session[80];
    int64_t duration_s;   /* 0: absent */
    char unsupported[64]; /* the first parameter this endpoint does not take ("" when none) */
} sl_sts_form;

/* Parses an application/x-www-form-urlencoded body[n] ('+' is a space, %XX escapes) into *f.
 * false for a malformed body (a bad escape, a repeated name, an over-long value, a NUL,
 * DurationSeconds not digits), *why a static text. Unknown names are recorded in f->unsupported
 * (the first one), not refused here: the action decides. */
bool sl_sts_form_parse(const char *body, size_t n, sl_sts_form *f, const char **why);

/* r's headers as NUL-terminated strings for the verifier (at most SL_SIGV4_MAX_HEADERS into h,
 * their bytes into scratch[cap], which must outlive h's use); returns how many. Headers that do
 * not fit are left out (the signature then fails to verify). */
size_t sl_iam_sts_headers(const sl_http_req *r, sl_sigv4_header *h, char *scratch, size_t cap);

/* The role name of "arn:aws:iam::ACCOUNT:role/NAME" (ACCOUNT must be `account`, NAME a valid
 * IAM name without a path) into name[cap]; false otherwise. */
bool sl_sts_role_name(const char *arn, const char *account, char *name, size_t cap);

#endif
