/* Amazon MSK IAM authentication, both directions: the AWS_MSK_IAM SASL client-first JSON payload
 * and MSK's OAUTHBEARER token (the base64url of a presigned
 * https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&... URL). Both carry a
 * SigV4 query-string presign (service kafka-cluster, path "/", signed header host, payload hash
 * SHA-256("")), built and checked with src/kms/sl_sigv4. The formats follow aws-msk-iam-auth (Java)
 * and the aws-msk-iam-sasl-signer libraries; botocore-made fixtures in tests/unit/msk_iam/ pin
 * them. Expiry is strict (now <= x-amz-date + x-amz-expires); the skew only lets x-amz-date be
 * ahead of the verifier's clock.
 *
 * Verification never says why to the peer: every refusal is SL_EAUTH with a short static reason
 * for the broker's own log. An unknown access key and a wrong signature give the same reason and
 * take the same work (a dummy secret is signed with), so neither the answer nor its timing tells
 * them apart. Secrets are cleansed after use and never appear in a reason. */
#ifndef SL_MSK_IAM_H
#define SL_MSK_IAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "kms/sl_sigv4.h"

#define SL_MSK_IAM_VERSION    "2020_10_22"
#define SL_MSK_IAM_EXPIRES    900 /* what every client signs for (15 minutes) */
#define SL_MSK_IAM_MAX_INPUT  8192
#define SL_MSK_IAM_MAX_SECRET 256

/* Builds the AWS_MSK_IAM payload for a connection to `host` (no port) as of `now_s`, signed with
 * `c` for `region`; x-amz-security-token only when c->token is non-empty. *out gets a malloc'd
 * NUL-terminated JSON object (its length in *outlen) the caller frees. Takes no ownership of its
 * inputs; the secret is only read. SL_EINVAL for malformed input, SL_ENOMEM. */
sl_err sl_msk_iam_payload(const sl_sigv4_creds *c, const char *region, const char *host,
                          int64_t now_s, const char *user_agent, char **out, size_t *outlen);

/* Builds MSK's OAUTHBEARER token (base64url without padding) as of `now_s`; `user_agent` is
 * appended after signing as User-Agent, unsigned, like the aws-msk-iam-sasl-signer libraries.
 * *out gets a malloc'd NUL-terminated string the caller frees. Ownership as above. */
sl_err sl_msk_iam_token(const sl_sigv4_creds *c, const char *region, int64_t now_s,
                        const char *user_agent, char **out);

/* Finds the secret of `akid`: copies it NUL-terminated into secret[cap] and returns true, or
 * returns false for an unknown key. `session_token` is the presented token (NULL when none), so
 * a lookup can bind temporary keys to their token. The verifier cleanses `secret` after use. */
typedef bool (*sl_msk_iam_secret_fn)(void *ud, const char *akid, const char *session_token,
                                     char *secret, size_t cap);

typedef struct sl_msk_iam_verify_cfg {
    const char *const *hosts; /* payload: accepted "host" values (the broker's advertised names,
                                 compared case-insensitively); unused for tokens */
    size_t nhosts;
    const char *region;   /* required; the credential scope must name it */
    int64_t now_s;        /* the verifier's clock */
    int64_t skew_s;       /* x-amz-date may be this far in the future */
    unsigned max_expires; /* largest accepted x-amz-expires (0: SL_MSK_IAM_EXPIRES) */
    sl_msk_iam_secret_fn lookup;
    void *ud;
} sl_msk_iam_verify_cfg;

typedef struct sl_msk_iam_id {
    char akid[129];   /* the authenticated access key id (the principal) */
    int64_t expiry_s; /* x-amz-date + x-amz-expires: the session must end by then */
    bool temporary;   /* a session token was presented */
} sl_msk_iam_id;

/* Parses and verifies an AWS_MSK_IAM payload (p[n], not NUL-terminated). SL_OK fills *id;
 * otherwise SL_EAUTH (SL_ENOMEM) and *reason (if reason is non-NULL) gets a static string. Takes
 * no ownership. */
sl_err sl_msk_iam_verify_payload(const sl_msk_iam_verify_cfg *cfg, const uint8_t *p, size_t n,
                                 sl_msk_iam_id *id, const char **reason);

/* Parses and verifies an MSK OAUTHBEARER token (tok[n]; '=' padding tolerated). The signed host
 * is kafka.<cfg->region>.amazonaws.com; the canonical query is rebuilt from every parameter but
 * X-Amz-Signature and User-Agent. Results and ownership as for the payload. */
sl_err sl_msk_iam_verify_token(const sl_msk_iam_verify_cfg *cfg, const char *tok, size_t n,
                               sl_msk_iam_id *id, const char **reason);

/* An AWS API request signed in SigV4's header form (Authorization: AWS4-HMAC-SHA256 ...), as
 * the STS endpoint (src/iam/sl_iam_sts.h) receives it from botocore, the AWS CLI and the SDKs.
 * Pointers are borrowed for the call. */
typedef struct sl_msk_iam_http {
    const char *method;             /* "POST" */
    const char *path;               /* decoded, starting with '/' */
    const char *query;              /* raw, without '?'; "" for none */
    const sl_sigv4_header *headers; /* every header received (NUL-terminated values) */
    size_t nheaders;                /* <= SL_SIGV4_MAX_HEADERS */
    const uint8_t *body;
    size_t blen;
    const char *service; /* the credential scope's service: "sts" */
} sl_msk_iam_http;

/* Verifies a header-form signature: one Authorization, X-Amz-Date and Host each; the scope names
 * cfg->region and r->service; the date within cfg->skew_s of cfg->now_s either way (a captured
 * request replays only that long); Host (its host part) among cfg->hosts; the signed headers
 * include host, x-amz-date and x-amz-security-token when sent; the payload hash is the body's.
 * SL_OK fills *id (expiry_s: when the signature stops being accepted); otherwise as for the
 * payload: SL_EAUTH with a static *reason, the same for an unknown key and a wrong secret. */
sl_err sl_msk_iam_verify_http(const sl_msk_iam_verify_cfg *cfg, const sl_msk_iam_http *r,
                              sl_msk_iam_id *id, const char **reason);

/* True when tok[n] decodes to an MSK IAM URL rather than, say, a JWT: lets the OAUTHBEARER
 * mechanism route a token to the right verifier. */
bool sl_msk_iam_is_token(const char *tok, size_t n);

#endif
