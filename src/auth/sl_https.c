#include "sl_https.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_addr.h"
#include "base/sl_time.h"
#include "net/sl_dial.h"

enum { MAX_HEADERS = 16 * 1024 };

typedef struct url_parts {
    char host[256];
    char port[8];
    char path[1024];
    bool ip;  /* host is an IP literal: verify against IP SANs */
    bool tls; /* https:// (else plain http://, see plain_http_allowed) */
} url_parts;

static bool parse_url(const char *url, url_parts *u, bool allow_http, char *err, size_t elen) {
    u->tls = !strncmp(url, "https://", 8);
    if (!u->tls && !(allow_http && !strncmp(url, "http://", 7))) {
        snprintf(err, elen, "only https:// URLs are fetched");
        return false;
    }
    sl_hostport hp;
    const char *rest;
    if (!sl_hostport_parse(url + (u->tls ? 8 : 7), "/?#", u->tls ? "443" : "80", &hp, &rest))
        goto bad; /* also refuses user@host */
    memcpy(u->host, hp.host, sizeof u->host);
    memcpy(u->port, hp.port, sizeof u->port);
    u->ip = hp.ip;
    if (*rest && *rest != '/') goto bad;
    const char *path = *rest ? rest : "/";
    if (strlen(path) >= sizeof u->path) goto bad;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) goto bad;
    snprintf(u->path, sizeof u->path, "%s", path);
    return true;
bad:
    snprintf(err, elen, "malformed https URL");
    return false;
}

/* Plain http:// is for endpoints that never leave the host: the EC2 instance metadata service
 * (link-local, answered by the hypervisor) and loopback test servers. */
static bool plain_http_allowed(const url_parts *u) {
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, u->host, &a4) == 1) {
        uint32_t a = ntohl(a4.s_addr);
        return a == 0xA9FEA9FEu /* 169.254.169.254 */ || (a >> 24) == 127;
    }
    if (inet_pton(AF_INET6, u->host, &a6) == 1) {
        static const uint8_t fd00ec2[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                            0,    0,    0,    0,    0, 0, 0x02, 0x54};
        return IN6_IS_ADDR_LOOPBACK(&a6) || !memcmp(&a6, fd00ec2, 16);
    }
    return false;
}

/* De-chunks in place; false on malformed framing. */
static bool dechunk(char *b, size_t *len) {
    size_t in = 0, out = 0, n = *len;
    for (;;) {
        size_t ls = in;
        while (in < n && b[in] != '\r') in++;
        if (in + 1 >= n || b[in + 1] != '\n' || in == ls) return false;
        char *end;
        unsigned long long cl = strtoull(b + ls, &end, 16);
        if (end == b + ls || (*end != '\r' && *end != ';')) return false;
        in += 2;
        if (cl == 0) break;
        if (cl > n - in || n - in - cl < 2 || b[in + cl] != '\r' || b[in + cl + 1] != '\n')
            return false;
        memmove(b + out, b + in, cl);
        out += cl;
        in += cl + 2;
    }
    *len = out;
    return true;
}

/* Splits "status line, headers, body" of a whole response held in buf. With require_200 any
 * other status is an error; otherwise *status gets it and the body is returned whatever it is. */
static sl_err parse_response(char *buf, size_t n, size_t max_body, bool require_200, int *status,
                             char **body, size_t *blen, char *err, size_t elen) {
    char *hend = NULL;
    for (size_t i = 0; i + 3 < n; i++)
        if (!memcmp(buf + i, "\r\n\r\n", 4)) {
            hend = buf + i;
            break;
        }
    if (!hend || strncmp(buf, "HTTP/1.", 7) || n < 12) {
        snprintf(err, elen, "malformed HTTP response");
        return SL_EPROTO;
    }
    *status = atoi(buf + 9);
    if (require_200 && *status != 200) {
        snprintf(err, elen, "HTTP status %d", *status);
        return SL_EPROTO;
    }
    if (*status < 100 || *status > 599) {
        snprintf(err, elen, "malformed HTTP status");
        return SL_EPROTO;
    }
    *hend = 0;
    bool chunked = false;
    long long clen = -1;
    for (char *l = strstr(buf, "\r\n"); l && l < hend; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, "Content-Length:", 15)) clen = atoll(l + 15);
        if (!strncasecmp(l, "Transfer-Encoding:", 18)) {
            const char *v = l + 18;
            while (*v == ' ') v++;
            chunked = !strncasecmp(v, "chunked", 7);
            if (!chunked) {
                snprintf(err, elen, "unsupported Transfer-Encoding");
                return SL_EPROTO;
            }
        }
    }
    char *b = hend + 4;
    size_t bl = n - (size_t)(b - buf);
    if (chunked && !dechunk(b, &bl)) {
        snprintf(err, elen, "malformed chunked body");
        return SL_EPROTO;
    }
    if (!chunked && clen >= 0) {
        if ((unsigned long long)clen > bl) {
            snprintf(err, elen, "truncated body");
            return SL_EPROTO;
        }
        bl = (size_t)clen;
    }
    if (bl > max_body) {
        snprintf(err, elen, "body larger than %zu bytes", max_body);
        return SL_ETOOLARGE;
    }
    char *out = malloc(bl + 1);
    if (!out) return SL_ENOMEM;
    memcpy(out, b, bl);
    out[bl] = 0;
    *body = out;
    *blen = bl;
    return SL_OK;
}

/* One connection, TLS or (loopback/IMDS only) plain. */
typedef struct conn {
    int fd;
    SSL *ssl;
} conn;

static int plain_io(int fd, int64_t deadline, bool wr, void *buf, int n, bool *eof) {
    for (;;) {
        ssize_t r = wr ? send(fd, buf, (size_t)n, MSG_NOSIGNAL) : recv(fd, buf, (size_t)n, 0);
        if (r > 0) return (int)r;
        if (r == 0 && !wr) {
            if (eof) *eof = true;
            return 0;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!sl_dial_wait(fd, wr ? POLLOUT : POLLIN, deadline)) return -2;
            continue;
        }
        return -1;
    }
}

static int conn_write(conn *c, int64_t deadline, const char *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        int chunk = n - done > 65536 ? 65536 : (int)(n - done);
        int r = c->ssl ? sl_dial_ssl_io(c->ssl, c->fd, deadline, sl_dial_op_write,
                                        (void *)(buf + done), chunk)
                       : plain_io(c->fd, deadline, true, (void *)(buf + done), chunk, NULL);
        if (r <= 0) return r == -2 ? -2 : -1;
        done += (size_t)r;
    }
    return 1;
}

static int conn_read(conn *c, int64_t deadline, char *buf, int n, bool *eof) {
    if (!c->ssl) return plain_io(c->fd, deadline, false, buf, n, eof);
    int r = sl_dial_ssl_io(c->ssl, c->fd, deadline, sl_dial_op_read, buf, n);
    if (r == 0 && eof) *eof = true;
    return r;
}

/* The Host header value for u: bracketed IPv6 literal, ":port" unless the scheme's default. */
static void host_value(const url_parts *u, char *out, size_t cap, bool bracket_v6) {
    bool v6 = bracket_v6 && strchr(u->host, ':');
    bool dflt = !strcmp(u->port, u->tls ? "443" : "80");
    snprintf(out, cap, "%s%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "", dflt ? "" : ":",
             dflt ? "" : u->port);
}

typedef struct engine_req {
    const char *url;
    const char *ca_file;
    int64_t timeout_ms;
    size_t max_body;
    bool allow_http;
    bool require_200;
    /* the request head after the request line's path, built by the caller's callback */
    const char *method;
    const char *extra; /* header lines, each ending in \r\n */
    const void *body;
    size_t blen;
    bool legacy_host; /* sl_https_get's Host form, kept byte for byte */
} engine_req;

static sl_err engine(const engine_req *rq, int *status, char **body, size_t *blen, char *err,
                     size_t elen) {
    url_parts u;
    if (elen) err[0] = 0;
    *body = NULL;
    *blen = 0;
    if (!parse_url(rq->url, &u, rq->allow_http, err, elen)) return SL_ECONFIG;
    if (!u.tls && !plain_http_allowed(&u)) {
        snprintf(err, elen, "plain http:// only to loopback or the instance metadata address");
        return SL_ECONFIG;
    }
    int64_t deadline = sl_mono_ms() + rq->timeout_ms;
    sl_err rc = SL_EIO;
    SSL_CTX *ctx = NULL;
    conn c = {.fd = -1, .ssl = NULL};
    char *buf = NULL, *req = NULL;
    size_t req_cap = 0;
    if (u.tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) goto out;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Truncation is caught by Content-Length/chunk framing and by the JSON parser. */
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        const char *ca_file = rq->ca_file;
        if (ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
            snprintf(err, elen, "cannot load CA certificates%s%s",
                     ca_file && *ca_file ? " from " : "", ca_file && *ca_file ? ca_file : "");
            rc = SL_ECONFIG;
            goto out;
        }
    }
    c.fd = sl_dial_tcp(u.host, u.port, deadline, err, elen);
    if (c.fd < 0) goto out;
    int r;
    if (u.tls) {
        c.ssl = SSL_new(ctx);
        if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) goto out;
        if (u.ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), u.host);
        } else {
            SSL_set_tlsext_host_name(c.ssl, u.host);
            SSL_set1_host(c.ssl, u.host);
        }
        r = sl_dial_ssl_io(c.ssl, c.fd, deadline, sl_dial_op_connect, NULL, 0);
        if (r <= 0) {
            long vr = SSL_get_verify_result(c.ssl);
            if (r == -2)
                snprintf(err, elen, "TLS handshake with %s:%s timed out", u.host, u.port);
            else if (vr != X509_V_OK)
                snprintf(err, elen, "certificate of %s:%s not trusted: %s", u.host, u.port,
                         X509_verify_cert_error_string(vr));
            else
                snprintf(err, elen, "TLS handshake with %s:%s failed", u.host, u.port);
            goto out;
        }
    }
    char host[300];
    host_value(&u, host, sizeof host, !rq->legacy_host);
    size_t extra_len = rq->extra ? strlen(rq->extra) : 0;
    size_t rcap = sizeof u.path + sizeof host + extra_len + 200;
    req_cap = rcap + rq->blen;
    req = malloc(req_cap);
    if (!req) {
        rc = SL_ENOMEM;
        goto out;
    }
    int rl = snprintf(req, rcap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s", rq->method, u.path, host,
                      rq->extra ? rq->extra : "");
    if (rl < 0 || (size_t)rl >= rcap) goto out;
    if (rq->body) memcpy(req + rl, rq->body, rq->blen);
    size_t total = (size_t)rl + (rq->body ? rq->blen : 0);
    if (conn_write(&c, deadline, req, total) <= 0) {
        snprintf(err, elen, "cannot send request to %s:%s", u.host, u.port);
        goto out;
    }
    size_t cap = rq->max_body + MAX_HEADERS, n = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        rc = SL_ENOMEM;
        goto out;
    }
    bool eof = false;
    while (!eof) {
        if (n == cap) {
            snprintf(err, elen, "response from %s:%s larger than %zu bytes", u.host, u.port, cap);
            rc = SL_ETOOLARGE;
            goto out;
        }
        int chunk = cap - n > 65536 ? 65536 : (int)(cap - n);
        r = conn_read(&c, deadline, buf + n, chunk, &eof);
        if (r == -2) {
            snprintf(err, elen, "reading from %s:%s timed out", u.host, u.port);
            rc = SL_ETIMEOUT;
            goto out;
        }
        if (r < 0) {
            snprintf(err, elen, "%s read from %s:%s failed", u.tls ? "TLS" : "HTTP", u.host,
                     u.port);
            goto out;
        }
        if (r == 0) eof = true;
        n += (size_t)r > 0 ? (size_t)r : 0;
    }
    buf[n] = 0;
    rc = parse_response(buf, n, rq->max_body, rq->require_200, status, body, blen, err, elen);
out:
    if (rc == SL_EIO && err && !err[0]) snprintf(err, elen, "https fetch failed");
    free(buf);
    /* the request may carry credentials (tokens, signatures) */
    if (req) OPENSSL_cleanse(req, req_cap);
    free(req);
    if (c.ssl) SSL_free(c.ssl);
    if (c.fd >= 0) close(c.fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

sl_err sl_https_get(const char *url, const char *ca_file, int64_t timeout_ms, size_t max_body,
                    char **body, size_t *blen, char *err, size_t elen) {
    engine_req rq = {.url = url,
                     .ca_file = ca_file,
                     .timeout_ms = timeout_ms,
                     .max_body = max_body,
                     .require_200 = true,
                     .method = "GET",
                     .extra = "Accept: application/json\r\nUser-Agent: sluice\r\n"
                              "Connection: close\r\n\r\n",
                     .legacy_host = true};
    int status = 0;
    return engine(&rq, &status, body, blen, err, elen);
}

static bool token_name(const char *s) {
    if (!s || !*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

sl_err sl_https_host(const char *url, bool allow_http, char *out, size_t cap) {
    url_parts u;
    char e[8];
    if (!parse_url(url, &u, allow_http, e, sizeof e)) return SL_ECONFIG;
    host_value(&u, out, cap, true);
    return SL_OK;
}

sl_err sl_https_request(const sl_https_req *rq, sl_https_resp *resp, char *err, size_t elen) {
    memset(resp, 0, sizeof *resp);
    if (elen) err[0] = 0;
    if (!rq->method || !token_name(rq->method)) {
        snprintf(err, elen, "bad HTTP method");
        return SL_EINVAL;
    }
    size_t need = 128;
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *n = rq->headers[i].name, *v = rq->headers[i].value;
        /* Host is the client's (it must match the URL); CR/LF would inject headers. */
        if (!token_name(n) || !v || strpbrk(v, "\r\n") || !strcasecmp(n, "Host") ||
            !strcasecmp(n, "Content-Length") || !strcasecmp(n, "Connection") ||
            !strcasecmp(n, "Transfer-Encoding")) {
            snprintf(err, elen, "bad request header");
            return SL_EINVAL;
        }
        need += strlen(n) + strlen(v) + 4;
    }
    char *extra = malloc(need);
    if (!extra) return SL_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        off += (size_t)snprintf(extra + off, need - off, "%s: %s\r\n", rq->headers[i].name,
                                rq->headers[i].value);
    if (rq->body || strcmp(rq->method, "GET"))
        off += (size_t)snprintf(extra + off, need - off, "Content-Length: %zu\r\n",
                                rq->body ? rq->blen : 0);
    snprintf(extra + off, need - off, "Connection: close\r\n\r\n");
    engine_req e = {.url = rq->url,
                    .ca_file = rq->ca_file,
                    .timeout_ms = rq->timeout_ms,
                    .max_body = rq->max_body,
                    .allow_http = rq->allow_http,
                    .require_200 = false,
                    .method = rq->method,
                    .extra = extra,
                    .body = rq->body,
                    .blen = rq->body ? rq->blen : 0};
    sl_err rc = engine(&e, &resp->status, &resp->body, &resp->blen, err, elen);
    OPENSSL_cleanse(extra, need);
    free(extra);
    return rc;
}
