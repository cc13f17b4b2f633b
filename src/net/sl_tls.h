/* TLS connections: an sl_transport over a non-blocking OpenSSL session, for SSL and SASL_SSL
 * listeners. The handshake runs inside read/writev calls and reports the socket events it needs
 * through wants(), so it never blocks the loop. */
#ifndef SL_NET_TLS_H
#define SL_NET_TLS_H
#include <stdbool.h>
#include <stdint.h>

#include "crypto/sl_tls_ctx.h"
#include "net/sl_server.h"
#include "net/sl_transport.h"

/* Wraps accepted socket `fd` in a server-side TLS session using the endpoint's current context.
 * Takes ownership of `fd` (closed on failure, then NULL). `ep` (not owned) must outlive the
 * transport; `peer` is copied for log lines. Matches sl_transport_factory, so
 * sl_server_listen_with(..., sl_tls_transport_new, ep) makes a TLS listener. */
sl_transport *sl_tls_transport_new(void *ep, int fd, const char *peer, const char *listener);

/* Wraps an SSL session the caller has already taken through its client handshake (blocking,
 * on a worker: the gateway's upstream connections) over the non-blocking socket `fd`, with the
 * same read/writev as the server side. Takes ownership of both (freed on failure, then NULL). */
struct ssl_st; /* SSL */
sl_transport *sl_tls_client_transport(struct ssl_st *ssl, int fd);

/* Socket writes the transport `t` (a TLS one, else 0) made after its handshake: tests check
 * that a batch of records leaves in one. */
uint64_t sl_tls_transport_sends(const sl_transport *t);

/* The principal name mapped (ssl.principal.mapping.rules) from the verified client certificate,
 * e.g. "CN=alice,OU=eng,O=acme" — the session principal is User:<this>. NULL when the
 * connection is not TLS, the handshake has not finished, or the client sent no certificate.
 * Every request frame arrives after the handshake, so on_request can rely on it. Points into
 * the connection; valid while it is open. */
const char *sl_conn_tls_principal(const sl_conn *c);
/* The negotiated protocol ("TLSv1.3") and cipher suite names, and the verified client
 * certificate's subject (RFC 2253); NULL when the connection is not TLS, the handshake has not
 * finished, or (subject) the client sent no certificate. Point into the connection (OpenSSL's
 * static names for the first two); valid while it is open. */
const char *sl_conn_tls_version(const sl_conn *c);
const char *sl_conn_tls_cipher(const sl_conn *c);
/* The server name the client's ClientHello asked for (SNI); NULL when none or not TLS. */
const char *sl_conn_tls_server_name(const sl_conn *c);
const char *sl_conn_tls_subject(const sl_conn *c);
/* True when `c` runs over TLS. */
bool sl_conn_is_tls(const sl_conn *c);

#endif
