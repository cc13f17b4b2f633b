/* Minimal HTTPS client: GET for JWKS endpoints, and general requests for the aws-kms provider.
 * Blocking (with an overall deadline): call it only from a background thread, never from the event
 * loop. The server certificate is verified against `ca_file` (PEM bundle) or, when that is
 * NULL/empty, the system CA store, and its name against the URL's host (DNS name or IP literal).
 * TLS 1.2 or newer. Redirects are not followed. sl_https_get accepts only a 200 answer and refuses
 * plain http:// (keys fetched in clear could be replaced); sl_https_request returns any answer and
 * allows http:// only to loopback and the instance metadata address, when asked. */
#ifndef SL_HTTPS_H
#define SL_HTTPS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

/* On SL_OK *body is a malloc'd, NUL-terminated buffer of *blen bytes (<= max_body) owned by the
 * caller. Otherwise err says why (host, port and status; never the body). DNS resolution is not
 * covered by the deadline (getaddrinfo has no timeout). */
sl_err sl_https_get(const char *url, const char *ca_file, int64_t timeout_ms, size_t max_body,
                    char **body, size_t *blen, char *err, size_t elen);

/* General requests (the aws-kms provider: KMS and STS over HTTPS, IMDSv2 over plain HTTP).
 * Same TLS rules as sl_https_get; one connection per request (Connection: close). */
typedef struct sl_https_header {
    const char *name;
    const char *value; /* no CR/LF */
} sl_https_header;

typedef struct sl_https_req {
    const char *method; /* "GET", "POST", "PUT" */
    const char *url;
    const char *ca_file; /* NULL/empty: the system store */
    /* Sent after Host, in this order; Host, Content-Length, Connection and Transfer-Encoding are
     * the client's own and refused here. */
    const sl_https_header *headers;
    size_t nheaders;
    const void *body; /* Content-Length is sent for a body and for every method but GET */
    size_t blen;
    int64_t timeout_ms; /* whole exchange (not DNS) */
    size_t max_body;
    /* Accept http:// too, but only to loopback addresses and the EC2 instance metadata address
     * (169.254.169.254, fd00:ec2::254): that service is plain HTTP on a link-local address, and
     * tests use loopback stubs. Any other http:// URL is refused even with this set. */
    bool allow_http;
} sl_https_req;

typedef struct sl_https_resp {
    int status;
    char *body; /* malloc'd, NUL-terminated, owned by the caller (also for non-2xx answers) */
    size_t blen;
} sl_https_resp;

/* SL_OK once an HTTP answer of any status was read (resp->status says which); otherwise no
 * answer: SL_ECONFIG/SL_EINVAL (bad URL, CA file or header), SL_ETIMEOUT, SL_ETOOLARGE, SL_EIO,
 * SL_EPROTO, with err saying why (never the body or header values). */
sl_err sl_https_request(const sl_https_req *rq, sl_https_resp *resp, char *err, size_t elen);

/* out[cap] gets the Host header value sl_https_request sends for `url` (what a request signature
 * must cover). SL_ECONFIG for a malformed URL. */
sl_err sl_https_host(const char *url, bool allow_http, char *out, size_t cap);

#endif
