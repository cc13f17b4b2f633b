/* A small HTTP/1.1 server on the broker's event loop, for the endpoints that are not Kafka: the
 * metrics endpoint (src/metrics, GET) and the IAM STS endpoint (src/iam/sl_iam_sts.h, POST).
 * One implementation of what both need to survive the network: a connection limit (excess
 * closed at accept and counted), TLS through the broker's sl_tls_endpoint (handshake on the
 * loop, never blocking), a 10 s deadline for a whole request (head and body: a client
 * trickling bytes is closed), 30 s idle keep-alive, pipelined requests answered in order, one
 * answer written before the next request is read (a client that does not read its answers
 * stops being read), and the parser's refusals answered with their status, then closed.
 *
 * Handlers answer synchronously on the loop thread. Everything in this file runs on the loop
 * thread. */
#ifndef SL_HTTPD_H
#define SL_HTTPD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_err.h"
#include "base/sl_text.h"
#include "http/sl_http.h"

struct sl_loop;
struct sl_tls_endpoint;
typedef struct sl_httpd sl_httpd;

/* Who sent the request being handled. */
typedef struct sl_httpd_peer {
    const char *addr; /* "ip:port" of the client */
    const char *ip;   /* the address alone (no port, no brackets) */
    bool tls;         /* the connection is TLS */
} sl_httpd_peer;

/* The answer a handler fills. The server writes the status line, Content-Type,
 * Content-Length, "Cache-Control: no-store", "X-Content-Type-Options: nosniff", then
 * `headers` (extra lines, each ending in CRLF; "" for none), then the body (not for HEAD). */
typedef struct sl_httpd_resp {
    int status;               /* preset 200 */
    const char *content_type; /* static; preset "text/plain; charset=utf-8" */
    sl_text body;             /* preset empty; the server frees it */
    char headers[512];
    bool close;     /* close the connection after this answer */
    bool sensitive; /* the body holds a secret: the server wipes every copy once written */
} sl_httpd_resp;

/* One complete request: r (header pointers into the connection's buffer) and its body[blen]
 * (POST; else blen 0), both valid for the call only. */
typedef void (*sl_httpd_handler)(void *ud, const sl_httpd_peer *peer, const sl_http_req *r,
                                 const char *body, size_t blen, sl_httpd_resp *out);

typedef struct sl_httpd_opts {
    const char *name;            /* for log lines: "metrics", "sts" */
    struct sl_loop *loop;        /* borrowed; outlives the server */
    struct sl_tls_endpoint *tls; /* borrowed, outlives the server; NULL: plain HTTP */
    sl_http_limits limits;       /* POST and its body size; {0}: GET/HEAD only */
    int max_conns;               /* open connections at once; 0: 64 */
    sl_httpd_handler handler;
    void *ud;
} sl_httpd_opts;

/* Binds host:port (host "" or NULL: every address; port 0: any, see sl_httpd_port) and serves
 * `o` on the loop. SL_OK: *out is the caller's (sl_httpd_free). Otherwise *eno gets the errno
 * of the failed bind/listen (EADDRINUSE...), or 0. `o` is copied; its pointers are borrowed. */
sl_err sl_httpd_listen(const sl_httpd_opts *o, const char *host, int port, sl_httpd **out,
                       int *eno);
/* Closes every connection and the listening socket. NULL is a no-op. */
void sl_httpd_free(sl_httpd *h);
int sl_httpd_port(const sl_httpd *h);
/* Connections closed at accept because max_conns were open. */
uint64_t sl_httpd_refused(const sl_httpd *h);

/* Splits "http://host:port" or "https://host:port" (host may be "[v6]", a trailing '/' is
 * allowed) into its parts; false when malformed. */
bool sl_httpd_parse_url(const char *url, bool *https, char *host, size_t hl, int *port);

/* The TLS endpoint an https:// listener serves: the keystore at `keystore` (the
 * endpoint's own key, e.g. sluice.metrics.ssl.keystore.location; "" for none), else
 * ssl.keystore.location, else, with sluice.provision.enable, the broker certificate in the
 * secrets directory (created if missing), like the Kafka listeners. `key` names the setting in
 * errors. SL_OK: *out is the caller's (sl_tls_endpoint_free), named `name` for reloads. */
struct sl_config;
sl_err sl_httpd_tls(const struct sl_config *cfg, const char *name, const char *key,
                    const char *keystore, struct sl_tls_endpoint **out, char *err, size_t elen);

#endif
