/* AWS Signature Version 4, header form (the aws-kms provider) and query-string presign form
 * (MSK IAM, below): canonical request, string to
 * sign, HMAC-SHA256 key derivation (date, region, service, "aws4_request") and the Authorization
 * header. Pure functions over caller-owned data; nothing is logged, and intermediate keys are
 * cleansed before returning. Checked against the published AWS test suite (tests/unit/sigv4/)
 * and, in the interop test, against botocore's signer.
 *
 * What is signed is exactly the header list given: the caller sends the same headers, with
 * Host (including ":port" when not the scheme's default), X-Amz-Date and, for temporary
 * credentials, X-Amz-Security-Token. Paths are given decoded ("/a b/") and are normalised (no
 * "." or "..", no empty segments) and URI-encoded once, as every service but S3 expects. */
#ifndef SL_SIGV4_H
#define SL_SIGV4_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

#define SL_SIGV4_MAX_HEADERS 32

typedef struct sl_sigv4_header {
    const char *name;
    const char *value;
} sl_sigv4_header;

typedef struct sl_sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* decoded, starting with '/' */
    const char *query;  /* raw, without '?'; NULL or "" for none */
    const sl_sigv4_header *headers;
    size_t nheaders; /* <= SL_SIGV4_MAX_HEADERS; must include host and x-amz-date */
    const uint8_t *body;
    size_t blen;
} sl_sigv4_request;

typedef struct sl_sigv4_creds {
    const char *akid;
    const char *secret;
    const char *token; /* NULL or "" unless temporary credentials */
} sl_sigv4_creds;

/* The canonical request (SigV4 step 1) as a malloc'd NUL-terminated string the caller frees,
 * or NULL for malformed input (no host header, a bad header name, a path not starting with
 * '/', too many headers) or out of memory. */
char *sl_sigv4_canonical_request(const sl_sigv4_request *r);

/* Signs `r` as of `amz_date` ("YYYYMMDDTHHMMSSZ", the value of its x-amz-date header) for
 * `region`/`service`. authz[cap] gets the Authorization header value. SL_EINVAL for malformed
 * input, including temporary credentials without an x-amz-security-token header carrying them;
 * SL_ETOOLARGE if cap is too small. `sts` (NULL, or stscap bytes) gets the string to sign, for
 * tests. Secrets are only read. */
sl_err sl_sigv4_sign(const sl_sigv4_request *r, const sl_sigv4_creds *c, const char *region,
                     const char *service, const char *amz_date, char *authz, size_t cap, char *sts,
                     size_t stscap);

/* Query-string (presigned) form, for AWS_MSK_IAM payloads, MSK OAUTHBEARER tokens and S3-style
 * presigned URLs. Parameters are given raw (decoded: "kafka-cluster:Connect") and are
 * URI-encoded exactly once by the signer; a value is never percent-decoded first, so JSON values
 * and decoded URL values give the same bytes. */
typedef struct sl_sigv4_param {
    const char *name;
    const char *value;
} sl_sigv4_param;

#define SL_SIGV4_MAX_PARAMS 64

/* The canonical query of n raw pairs: each name and value encoded once, sorted by encoded name
 * then encoded value, joined with '&'. Malloc'd NUL-terminated string the caller frees; NULL for
 * n > SL_SIGV4_MAX_PARAMS, a NULL name/value or out of memory. Takes no ownership of `p`. */
char *sl_sigv4_query_canonical(const sl_sigv4_param *p, size_t n);

/* Signature (SigV4 steps 2-4) of a canonical request the caller already has, e.g. one a verifier
 * rebuilt from a presigned payload: string to sign, key derivation from `secret`, HMAC.
 * sig_hex[65] gets 64 lower-case hex digits. `sts` (NULL, or stscap bytes) gets the string to
 * sign. Takes no ownership; `secret` is only read and every derived key is cleansed before
 * returning (the caller cleanses its own copy of the secret). SL_EINVAL for a malformed date,
 * region, service or secret. */
sl_err sl_sigv4_signature(const char *creq, const char *secret, const char *region,
                          const char *service, const char *amz_date, char sig_hex[65], char *sts,
                          size_t stscap);

typedef struct sl_sigv4_presign_req {
    const char *method; /* "GET" */
    const char *path;   /* decoded, starting with '/'; normalised like the header form */
    const char *host;   /* the only signed header: host[:port] exactly as the client sends it */
    const sl_sigv4_param *params; /* raw caller parameters (e.g. Action), may be NULL */
    size_t nparams;               /* <= SL_SIGV4_MAX_PARAMS - 6 */
    unsigned expires;             /* X-Amz-Expires, 1..604800 */
    const char *payload_hash;     /* NULL: SHA-256 of the empty body (MSK); or "UNSIGNED-PAYLOAD" */
} sl_sigv4_presign_req;

/* Presigns `r` as of `amz_date` for `region`/`service`: adds X-Amz-Algorithm, X-Amz-Credential,
 * X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders=host and, for temporary credentials,
 * X-Amz-Security-Token to the query before signing. sig_hex (NULL, or 65 bytes) gets the
 * signature; *query_out (query_out may be NULL) gets a malloc'd string the caller frees: the
 * canonical query followed by "&X-Amz-Signature=<hex>", ready to put after '?'. `creq_out`
 * likewise gets the canonical request, for tests. Takes no ownership of its inputs; the secret
 * is only read. SL_EINVAL for malformed input, SL_ENOMEM. */
sl_err sl_sigv4_presign(const sl_sigv4_presign_req *r, const sl_sigv4_creds *c, const char *region,
                        const char *service, const char *amz_date, char *sig_hex, char **query_out,
                        char **creq_out);

/* out[17] gets "YYYYMMDDTHHMMSSZ" for `unix_s` (UTC). */
void sl_sigv4_amz_date(int64_t unix_s, char out[17]);

/* Hex of SHA-256 over n bytes into out[65]. */
void sl_sigv4_sha256_hex(const void *p, size_t n, char out[65]);

#endif
