/* Minimal HTTPS GET for JWKS endpoints. Blocking (with an overall deadline): call it only from a
 * background thread, never from the event loop. The server certificate is verified against
 * `ca_file` (PEM bundle) or, when that is NULL/empty, the system CA store, and its name against
 * the URL's host (DNS name or IP literal). TLS 1.2 or newer. Redirects are not followed; only a
 * 200 answer is accepted. Plain http:// is refused: keys fetched in clear could be replaced. */
#ifndef SL_HTTPS_H
#define SL_HTTPS_H
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"

/* On SL_OK *body is a malloc'd, NUL-terminated buffer of *blen bytes (<= max_body) owned by the
 * caller. Otherwise err says why (host, port and status; never the body). DNS resolution is not
 * covered by the deadline (getaddrinfo has no timeout). */
sl_err sl_https_get(const char *url, const char *ca_file, int64_t timeout_ms, size_t max_body,
                    char **body, size_t *blen, char *err, size_t elen);

#endif
