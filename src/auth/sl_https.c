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

#include "base/sl_time.h"

enum { MAX_HEADERS = 16 * 1024 };

typedef struct url_parts {
    char host[256];
    char port[8];
    char path[1024];
    bool ip; /* host is an IP literal: verify against IP SANs */
} url_parts;

static bool parse_url(const char *url, url_parts *u, char *err, size_t elen) {
    if (strncmp(url, "https://", 8)) {
        snprintf(err, elen, "only https:// URLs are fetched");
        return false;
    }
    const char *h = url + 8, *he, *rest;
    if (*h == '[') {
        he = strchr(h, ']');
        if (!he) goto bad;
        h++;
        rest = he + 1;
    } else {
        he = h + strcspn(h, ":/?#");
        rest = he;
    }
    size_t hl = (size_t)(he - h);
    if (!hl || hl >= sizeof u->host) goto bad;
    memcpy(u->host, h, hl);
    u->host[hl] = 0;
    for (size_t i = 0; i < hl; i++) {
        char c = u->host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':'))
            goto bad; /* also refuses user@host */
    }
    snprintf(u->port, sizeof u->port, "443");
    if (*rest == ':') {
        size_t pl = strspn(rest + 1, "0123456789");
        if (pl == 0 || pl > 5 || atoi(rest + 1) > 65535 || atoi(rest + 1) == 0) goto bad;
        memcpy(u->port, rest + 1, pl);
        u->port[pl] = 0;
        rest += 1 + pl;
    }
    if (*rest && *rest != '/') goto bad;
    const char *path = *rest ? rest : "/";
    if (strlen(path) >= sizeof u->path) goto bad;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) goto bad;
    snprintf(u->path, sizeof u->path, "%s", path);
    unsigned char tmp[16];
    u->ip = inet_pton(AF_INET, u->host, tmp) == 1 || inet_pton(AF_INET6, u->host, tmp) == 1;
    return true;
bad:
    snprintf(err, elen, "malformed https URL");
    return false;
}

static int remaining(int64_t deadline) {
    int64_t r = deadline - sl_mono_ms();
    return r <= 0 ? 0 : r > 60000 ? 60000 : (int)r;
}

static bool wait_fd(int fd, short ev, int64_t deadline) {
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int ms = remaining(deadline);
        if (ms == 0) return false;
        int r = poll(&p, 1, ms);
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

static int connect_to(const url_parts *u, int64_t deadline, char *err, size_t elen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc) {
        snprintf(err, elen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline)) {
            int e = 0;
            socklen_t el = sizeof e;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) snprintf(err, elen, "cannot connect to %s:%s", u->host, u->port);
    return fd;
}

/* Drives one SSL call to completion or the deadline. Returns its result (>0 ok). */
static int ssl_io(SSL *ssl, int fd, int64_t deadline, int (*op)(SSL *, void *, int), void *buf,
                  int n, bool *eof) {
    for (;;) {
        ERR_clear_error();
        int r = op(ssl, buf, n);
        if (r > 0) return r;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN) {
            if (eof) *eof = true;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -2;
            continue;
        }
        return -1;
    }
}

static int op_connect(SSL *s, void *b, int n) { return SSL_connect(s); }
static int op_read(SSL *s, void *b, int n) { return SSL_read(s, b, n); }
static int op_write(SSL *s, void *b, int n) { return SSL_write(s, b, n); }

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

/* Splits "status line, headers, body" of a whole response held in buf. */
static sl_err parse_response(char *buf, size_t n, size_t max_body, char **body, size_t *blen,
                             char *err, size_t elen) {
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
    int status = atoi(buf + 9);
    if (status != 200) {
        snprintf(err, elen, "HTTP status %d", status);
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

sl_err sl_https_get(const char *url, const char *ca_file, int64_t timeout_ms, size_t max_body,
                    char **body, size_t *blen, char *err, size_t elen) {
    url_parts u;
    if (elen) err[0] = 0;
    *body = NULL;
    *blen = 0;
    if (!parse_url(url, &u, err, elen)) return SL_ECONFIG;
    int64_t deadline = sl_mono_ms() + timeout_ms;
    sl_err rc = SL_EIO;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    char *buf = NULL;
    int fd = -1;
    if (!ctx) goto out;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Truncation is caught by Content-Length/chunk framing and by the JSON parser. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                            : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, elen, "cannot load CA certificates%s%s", ca_file && *ca_file ? " from " : "",
                 ca_file && *ca_file ? ca_file : "");
        rc = SL_ECONFIG;
        goto out;
    }
    fd = connect_to(&u, deadline, err, elen);
    if (fd < 0) goto out;
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) goto out;
    if (u.ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u.host);
    } else {
        SSL_set_tlsext_host_name(ssl, u.host);
        SSL_set1_host(ssl, u.host);
    }
    int r = ssl_io(ssl, fd, deadline, op_connect, NULL, 0, NULL);
    if (r <= 0) {
        long vr = SSL_get_verify_result(ssl);
        if (r == -2)
            snprintf(err, elen, "TLS handshake with %s:%s timed out", u.host, u.port);
        else if (vr != X509_V_OK)
            snprintf(err, elen, "certificate of %s:%s not trusted: %s", u.host, u.port,
                     X509_verify_cert_error_string(vr));
        else
            snprintf(err, elen, "TLS handshake with %s:%s failed", u.host, u.port);
        goto out;
    }
    char req[1400];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: %s%s%s\r\nAccept: application/json\r\n"
                      "User-Agent: sluice\r\nConnection: close\r\n\r\n",
                      u.path, u.host, strcmp(u.port, "443") ? ":" : "",
                      strcmp(u.port, "443") ? u.port : "");
    if (rl < 0 || rl >= (int)sizeof req ||
        ssl_io(ssl, fd, deadline, op_write, req, rl, NULL) != rl) {
        snprintf(err, elen, "cannot send request to %s:%s", u.host, u.port);
        goto out;
    }
    size_t cap = max_body + MAX_HEADERS, n = 0;
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
        r = ssl_io(ssl, fd, deadline, op_read, buf + n, chunk, &eof);
        if (r == -2) {
            snprintf(err, elen, "reading from %s:%s timed out", u.host, u.port);
            rc = SL_ETIMEOUT;
            goto out;
        }
        if (r < 0) {
            snprintf(err, elen, "TLS read from %s:%s failed", u.host, u.port);
            goto out;
        }
        if (r == 0) eof = true;
        n += (size_t)r > 0 ? (size_t)r : 0;
    }
    buf[n] = 0;
    rc = parse_response(buf, n, max_body, body, blen, err, elen);
out:
    if (rc == SL_EIO && err && !err[0]) snprintf(err, elen, "https fetch failed");
    free(buf);
    if (ssl) SSL_free(ssl);
    if (fd >= 0) close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}
