/* Certificates for the secure default: a private CA and a broker certificate it signs, so a
 * fresh install can serve TLS without an operator running openssl first. */
#ifndef SL_CRYPTO_CERTGEN_H
#define SL_CRYPTO_CERTGEN_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_err.h"

struct evp_pkey_st;
struct x509_st;

/* A fresh ECDSA P-256 key; caller owns it (EVP_PKEY_free). NULL on failure. */
struct evp_pkey_st *sl_cert_keygen(void);
/* Issues a certificate for `key` with subject CN=`cn` (O=Sluice), valid from an hour ago for
 * `days`, with a random 127-bit serial. `issuer`/`issuer_key` NULL: self-signed. `is_ca`: a CA
 * certificate (keyCertSign), else a server one (serverAuth) with subjectAltName `san` (e.g.
 * "DNS:localhost,IP:127.0.0.1", may be NULL). Caller owns the result (X509_free). */
struct x509_st *sl_cert_issue(struct evp_pkey_st *key, const char *cn, struct x509_st *issuer,
                              struct evp_pkey_st *issuer_key, int days, bool is_ca,
                              const char *san);

/* Makes `dir` ready for a TLS listener: ca.pem (the CA certificate, for clients),
 * ca-key.pem (its key, 0600) and broker.pem (broker certificate, CA certificate and broker key:
 * a PEM keystore for ssl.keystore.location, 0600). The CA is valid 10 years, the broker
 * certificate 1 year for DNS:localhost and IP:127.0.0.1. Idempotent: an existing broker.pem is
 * left alone; an existing CA is reused to issue a missing broker.pem. Files appear atomically. */
sl_err sl_tls_bootstrap(const char *dir, char *err, size_t elen);

#endif
