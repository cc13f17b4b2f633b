/* Host and port of a URL or endpoint, parsed once for every client that dials out (JWKS and
 * AWS over https, KMIP). Pure; bounds-checked. */
#ifndef SL_BASE_ADDR_H
#define SL_BASE_ADDR_H
#include <stdbool.h>
#include <stddef.h>

typedef struct sl_hostport {
    char host[256]; /* name or address, IPv6 without brackets */
    char port[8];
    bool ip; /* host is a literal address (no name to check in a certificate) */
} sl_hostport;

/* Parses "host", "host:port", "[v6]" or "[v6]:port" at `s`. The host ends at one of `stops`
 * (besides ':'; e.g. "/?#" inside a URL) or at the end; host names are letters, digits, '.',
 * '-' (so "user@host" is refused). `def_port` when no port is given; a port is 1..65535.
 * *rest (optional) points after what was parsed. False for anything malformed. */
bool sl_hostport_parse(const char *s, const char *stops, const char *def_port, sl_hostport *out,
                       const char **rest);

#endif
