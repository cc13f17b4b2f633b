/* TLS server contexts built from Kafka's ssl.* keys, one endpoint per SSL/SASL_SSL listener.
 *
 * An endpoint owns the SSL_CTX handed to new connections. A reload builds a complete new
 * context from the files and swaps it in only if that succeeded; connections already open keep
 * the context they started with (each SSL holds its own reference), so a bad file never takes
 * the listener down and a good one never disturbs open sessions. Loop thread only. */
#ifndef SL_CRYPTO_TLS_CTX_H
#define SL_CRYPTO_TLS_CTX_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "crypto/sl_principal.h"

struct ssl_ctx_st; /* SSL_CTX, without pulling OpenSSL into every includer */

typedef enum {
    SL_TLS_CLIENT_AUTH_NONE,
    SL_TLS_CLIENT_AUTH_REQUESTED,
    SL_TLS_CLIENT_AUTH_REQUIRED
} sl_tls_client_auth;

/* Settings of one endpoint; strings are borrowed by sl_tls_ctx_build and copied by the
 * endpoint. NULL/"" where the key is unset. */
typedef struct sl_tls_opts {
    const char *keystore_location;
    const char *key_password;
    const char *truststore_location;
    const char *enabled_protocols; /* NULL: TLSv1.3,TLSv1.2 */
    const char *cipher_suites;     /* NULL: the curated default (config table) */
    const char *groups;            /* key exchange, TLS 1.2 and 1.3 (NULL: X25519 + NIST) */
    sl_tls_client_auth client_auth;
    const char *session_context; /* e.g. the listener name: sessions never resume elsewhere */
} sl_tls_opts;

/* Builds a server SSL_CTX. Caller owns *out (SSL_CTX_free). SL_ECONFIG with `err` naming the
 * key or file at fault (never file contents or the password). */
sl_err sl_tls_ctx_build(const sl_tls_opts *o, struct ssl_ctx_st **out, char *err, size_t elen);

typedef struct sl_tls_endpoint sl_tls_endpoint;

/* Reads listener `listener`'s ssl.* keys (listener.name.<listener>. overrides first), builds its
 * context and principal rules. Caller owns *out. */
sl_err sl_tls_endpoint_new(const sl_config *cfg, const char *listener, sl_tls_endpoint **out,
                           char *err, size_t elen);
/* An endpoint from explicit settings rather than a Kafka listener's keys (the metrics listener):
 * `name` names it in logs and events; no principal mapping rules. Reloads as any endpoint.
 * Caller owns *out. */
sl_err sl_tls_endpoint_new_opts(const char *name, const sl_tls_opts *o, sl_tls_endpoint **out,
                                char *err, size_t elen);
void sl_tls_endpoint_free(sl_tls_endpoint *ep);
/* The context for the next accepted connection; borrowed, valid until the next reload (SSL_new
 * takes its own reference). */
struct ssl_ctx_st *sl_tls_endpoint_ctx(const sl_tls_endpoint *ep);
const sl_principal_rules *sl_tls_endpoint_rules(const sl_tls_endpoint *ep);
const char *sl_tls_endpoint_listener(const sl_tls_endpoint *ep);
/* The expiry (notAfter) of the certificate the endpoint serves now, in seconds since the epoch;
 * 0 when it cannot be read. Follows reloads. */
int64_t sl_tls_endpoint_not_after(const sl_tls_endpoint *ep);
/* Rebuilds the context when `force` (SIGHUP) or when the keystore or truststore file changed
 * (inode, size or mtime). 1: swapped; 0: nothing changed; -1: the build failed, the previous
 * context stays and the reason (naming the file) is logged. */
int sl_tls_endpoint_reload(sl_tls_endpoint *ep, bool force);
/* The reason the last failed reload gave (names the key or file, never contents or the
 * password); NULL when none failed yet. Points into the endpoint. */
const char *sl_tls_endpoint_last_error(const sl_tls_endpoint *ep);
/* Handshake failures, for the connection's close event: the TLS transport notes the failure of
 * `peer` ("ip:port"; `reason` a short category, copied) just before the server closes that
 * connection; the close handler takes it (true, reason copied into `reason`) if it is the same
 * peer's. One slot per endpoint: the close follows the note in the same loop callback. */
void sl_tls_endpoint_note_failure(sl_tls_endpoint *ep, const char *peer, const char *reason);
bool sl_tls_endpoint_take_failure(sl_tls_endpoint *ep, const char *peer, char *reason, size_t rlen);

#endif
