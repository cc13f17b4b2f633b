/* Certificate subject → principal name, with Kafka's ssl.principal.mapping.rules syntax:
 *   RULE:pattern/replacement/[L|U], ..., DEFAULT
 * Rules are tried in order; the first whose pattern matches the whole RFC 2253 subject wins.
 * DEFAULT yields the subject unchanged. Patterns are POSIX extended regular expressions (Java's
 * lazy quantifiers are accepted and matched greedily); replacements may use $0..$9. */
#ifndef SL_CRYPTO_PRINCIPAL_H
#define SL_CRYPTO_PRINCIPAL_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_err.h"

typedef struct sl_principal_rules sl_principal_rules;

/* Parses `spec` (NULL or "" means DEFAULT). Caller owns *out (sl_principal_rules_free).
 * SL_ECONFIG with `err` naming ssl.principal.mapping.rules and the bad rule. */
sl_err sl_principal_rules_parse(const char *spec, sl_principal_rules **out, char *err, size_t elen);
void sl_principal_rules_free(sl_principal_rules *r);
/* Maps `dn` into out (outlen bytes). False when no rule matches, the result is empty or does
 * not fit: Kafka then refuses the connection. */
bool sl_principal_map(const sl_principal_rules *r, const char *dn, char *out, size_t outlen);

/* The subject of `x509` (an X509 *) in RFC 2253 form ("CN=alice,OU=eng,O=acme"); UTF-8 kept
 * as is. False if it does not fit or cannot be formatted. */
bool sl_x509_subject_rfc2253(const void *x509, char *out, size_t outlen);

#endif
