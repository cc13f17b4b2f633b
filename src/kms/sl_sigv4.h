/* AWS Signature Version 4 (header form) for the aws-kms provider: canonical request, string to
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

/* out[17] gets "YYYYMMDDTHHMMSSZ" for `unix_s` (UTC). */
void sl_sigv4_amz_date(int64_t unix_s, char out[17]);

/* Hex of SHA-256 over n bytes into out[65]. */
void sl_sigv4_sha256_hex(const void *p, size_t n, char out[65]);

#endif
