/* The HTTP/1.1 server of the broker's non-Kafka endpoints (sl_httpd.h): metrics and IAM STS.
 *
 * A connection reads into one buffer that holds a request head and, for POST, its body. The
 * buffer starts at SL_HTTP_MAX_HEAD and grows only when a parsed head announces a body (to
 * head + Content-Length, which the parser bounds by limits.max_body), and shrinks back once
 * that request is answered: a connection holds at most SL_HTTP_MAX_HEAD + max_body, and only
 * while a body it was promised is arriving. The handler runs once the body is whole. */
#include "http/sl_httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "crypto/sl_certgen.h"
#include "crypto/sl_tls_ctx.h"
#include "http/sl_httpd_testing.h"
#include "net/sl_loop.h"

/* Hostile-input bounds: a client needs a handful of connections and one small request at a
 * time; anything slower or bigger is closed. */
#define DEFAULT_MAX_CONNS 64
#define REQ_TIMEOUT_MS    10000 /* TLS handshake and a whole request (head and body), or an answer */
#define IDLE_TIMEOUT_MS   30000 /* a kept-alive connection between requests */

typedef struct hconn {
    struct hconn *prev, *next;
    sl_httpd *h;
    int fd;
    SSL *ssl;
    bool handshaking, writing, close_after;
    uint32_t watched;
    sl_timer *timer;
    char peer[64];              /* "ip:port" */
    char ip[INET6_ADDRSTRLEN];  /* the address alone */
    char *rbuf;                 /* SL_HTTP_MAX_HEAD, or head + body while a body arrives */
    size_t rcap, rlen, scanned; /* scanned: bytes already searched for the end of the head */
    size_t need;                /* a head is parsed: its bytes + its body's; else 0 */
    sl_text out;
    bool out_secret; /* `out` holds a secret (sl_httpd_resp.sensitive): wiped when freed */
    size_t woff;
} hconn;

struct sl_httpd {
    sl_httpd_opts o;
    char name[32];
    int fd, port;
    hconn *conns;
    int nconns;
    uint64_t refused;
    int64_t req_ms, idle_ms;
};

static void conn_close(hconn *c);

static void conn_timeout(void *ctx) {
    hconn *c = ctx;
    c->timer = NULL;
    conn_close(c);
}

static void conn_deadline(hconn *c, int64_t ms) {
    if (c->timer) sl_timer_cancel(c->h->o.loop, c->timer);
    c->timer = sl_timer_start(c->h->o.loop, ms, conn_timeout, c);
}

static void out_free(hconn *c) {
    if (c->out_secret)
        sl_text_wipe(&c->out);
    else
        sl_text_free(&c->out);
    c->out_secret = false;
}

static void conn_close(hconn *c) {
    sl_httpd *h = c->h;
    if (c->timer) sl_timer_cancel(h->o.loop, c->timer);
    sl_loop_unwatch(h->o.loop, c->fd);
    if (c->ssl) {
        if (!c->handshaking) SSL_shutdown(c->ssl); /* best effort close_notify, never waits */
        SSL_free(c->ssl);
    }
    close(c->fd);
    out_free(c);
    free(c->rbuf);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    free(c);
}

/* Watches what the connection waits for now. */
static void conn_watch(hconn *c, uint32_t want) {
    if (want == c->watched) return;
    if (sl_loop_modify(c->h->o.loop, c->fd, want) == SL_OK) c->watched = want;
}

/* Resizes the read buffer to `cap` (at least rlen); false when out of memory. */
static bool conn_resize(hconn *c, size_t cap) {
    if (cap == c->rcap) return true;
    char *p = realloc(c->rbuf, cap);
    if (!p) return false;
    c->rbuf = p;
    c->rcap = cap;
    return true;
}

/* Queues the answer: the fixed header block, the handler's lines, then the body (not for
 * HEAD). Takes the body. */
static void queue_answer(hconn *c, sl_httpd_resp *resp, bool head) {
    if (resp->body.oom) {
        sl_text_free(&resp->body);
        resp->status = 500;
        resp->content_type = "text/plain; charset=utf-8";
        resp->headers[0] = 0;
        c->close_after = true;
        sl_text_puts(&resp->body, "out of memory\n");
    }
    resp->headers[sizeof resp->headers - 1] = 0; /* a handler that filled it whole */
    out_free(c);
    sl_text_printf(&c->out,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
                   resp->status, sl_http_reason(resp->status),
                   resp->content_type ? resp->content_type : "text/plain; charset=utf-8",
                   resp->body.len, resp->headers, c->close_after ? "Connection: close\r\n" : "");
    if (!head && resp->body.len) sl_text_put(&c->out, resp->body.p, resp->body.len);
    c->out_secret = resp->sensitive;
    if (resp->sensitive)
        sl_text_wipe(&resp->body);
    else
        sl_text_free(&resp->body);
    if (c->out.oom) c->close_after = true;
    c->woff = 0;
    c->writing = true;
}

/* The parser's refusal: its status and reason, then close. */
static void refuse(hconn *c, int status) {
    sl_httpd_resp resp = {.status = status, .content_type = "text/plain; charset=utf-8"};
    sl_text_printf(&resp.body, "%s\n", sl_http_reason(status));
    snprintf(resp.headers, sizeof resp.headers, "Content-Security-Policy: default-src 'none'\r\n");
    c->close_after = true;
    queue_answer(c, &resp, false);
}

/* The complete request at the start of rbuf (c->need bytes, the head parsed before): the
 * handler's answer. */
static void dispatch(hconn *c) {
    sl_httpd *h = c->h;
    sl_http_req r;
    int n = sl_http_parse_ex(c->rbuf, c->rlen, &h->o.limits, &r);
    if (n <= 0 || (size_t)n + r.content_length != c->need) { /* cannot happen: parsed before */
        refuse(c, 500);
        return;
    }
    sl_httpd_resp resp = {.status = 200, .content_type = "text/plain; charset=utf-8"};
    sl_httpd_peer peer = {.addr = c->peer, .ip = c->ip, .tls = c->ssl != NULL};
    h->o.handler(h->o.ud, &peer, &r, c->rbuf + n, r.content_length, &resp);
    c->close_after = !r.keep_alive || resp.close;
    queue_answer(c, &resp, r.head);
}

/* I/O through TLS or the socket: > 0 bytes, 0 end of stream, -1 error, -2 would block (with
 * *want set to the event to wait for). */
static ssize_t io_read(hconn *c, void *buf, size_t n, uint32_t *want) {
    if (!c->ssl) {
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            *want = SL_EV_READ;
            return -2;
        }
        return r;
    }
    int r = SSL_read(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? SL_EV_READ : SL_EV_WRITE;
        return -2;
    }
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static ssize_t io_write(hconn *c, const void *buf, size_t n, uint32_t *want) {
    if (!c->ssl) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            *want = SL_EV_WRITE;
            return -2;
        }
        return r;
    }
    int r = SSL_write(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? SL_EV_READ : SL_EV_WRITE;
        return -2;
    }
    ERR_clear_error();
    return -1;
}

/* Takes the next request from the buffer if it is there: true when an answer was queued. */
static bool next_request(hconn *c) {
    sl_httpd *h = c->h;
    if (!c->need) {
        /* Parsed only once the head can be complete, so a client trickling bytes does not make
         * every byte rescan all that came before it. */
        bool complete = c->rlen >= SL_HTTP_MAX_HEAD;
        for (size_t i = c->scanned > 3 ? c->scanned - 3 : 0; !complete && i + 3 < c->rlen; i++)
            if (!memcmp(c->rbuf + i, "\r\n\r\n", 4)) complete = true;
        c->scanned = c->rlen;
        if (!complete) return false;
        sl_http_req r;
        int n = sl_http_parse_ex(c->rbuf, c->rlen, &h->o.limits, &r);
        if (n < 0) {
            refuse(c, -n);
            return true;
        }
        if (n == 0) return false; /* cannot happen: complete, or at the limit */
        c->need = (size_t)n + r.content_length;
        /* The announced body must fit: grow to exactly head + body, no more. */
        if (c->need > c->rcap && !conn_resize(c, c->need)) {
            refuse(c, 500);
            return true;
        }
    }
    if (c->rlen < c->need) return false; /* the body is still arriving */
    dispatch(c);
    memmove(c->rbuf, c->rbuf + c->need, c->rlen - c->need);
    c->rlen -= c->need;
    c->need = 0;
    c->scanned = 0;
    /* Give back a body's room once it is answered (what a pipelined client sent after it
     * stays). */
    if (c->rcap > SL_HTTP_MAX_HEAD && c->rlen <= SL_HTTP_MAX_HEAD)
        (void)conn_resize(c, SL_HTTP_MAX_HEAD);
    return true;
}

/* Runs the connection as far as it can go without blocking. */
static void conn_run(hconn *c) {
    sl_httpd *h = c->h;
    for (;;) {
        uint32_t want = SL_EV_READ;
        if (c->handshaking) {
            int r = SSL_accept(c->ssl);
            if (r == 1) {
                c->handshaking = false;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                SL_INFO(h->name, "tls handshake failed", "peer=%s", c->peer);
                conn_close(c);
                return;
            }
            conn_watch(c, e == SSL_ERROR_WANT_READ ? SL_EV_READ : SL_EV_WRITE);
            return;
        }
        if (c->writing) {
            while (c->woff < c->out.len) {
                ssize_t w = io_write(c, c->out.p + c->woff, c->out.len - c->woff, &want);
                if (w == -2) {
                    conn_watch(c, want);
                    return;
                }
                if (w <= 0) {
                    conn_close(c);
                    return;
                }
                c->woff += (size_t)w;
            }
            c->writing = false;
            out_free(c);
            if (c->close_after) {
                conn_close(c);
                return;
            }
            conn_deadline(c, c->rlen ? h->req_ms : h->idle_ms);
        }
        /* A complete request already buffered (pipelined) is answered before reading more. */
        if (next_request(c)) {
            conn_deadline(c, h->req_ms);
            continue;
        }
        if (c->rlen >= c->rcap) { /* cannot happen: a full buffer holds a head or a request */
            conn_close(c);
            return;
        }
        ssize_t got = io_read(c, c->rbuf + c->rlen, c->rcap - c->rlen, &want);
        if (got == -2) {
            conn_watch(c, want);
            return;
        }
        if (got <= 0) {
            conn_close(c);
            return;
        }
        /* A request starts: it has req_ms for its head and its body together. */
        if (c->rlen == 0) conn_deadline(c, h->req_ms);
        c->rlen += (size_t)got;
    }
}

static void conn_io(void *ctx, uint32_t ev) { conn_run(ctx); }

static void on_accept(void *ctx, uint32_t ev) {
    sl_httpd *h = ctx;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or a transient error: the next readiness retries */
        if (h->nconns >= h->o.max_conns) {
            h->refused++;
            close(fd);
            continue;
        }
        hconn *c = calloc(1, sizeof *c);
        if (!c || !(c->rbuf = malloc(SL_HTTP_MAX_HEAD))) {
            free(c);
            close(fd);
            continue;
        }
        c->rcap = SL_HTTP_MAX_HEAD;
        c->h = h;
        c->fd = fd;
        char serv[8] = "?";
        snprintf(c->ip, sizeof c->ip, "?");
        getnameinfo((struct sockaddr *)&ss, sl, c->ip, sizeof c->ip, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(c->peer, sizeof c->peer, "%s:%s", c->ip, serv);
        if (h->o.tls) {
            c->ssl = SSL_new(sl_tls_endpoint_ctx(h->o.tls));
            if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
                SSL_free(c->ssl);
                close(fd);
                free(c->rbuf);
                free(c);
                continue;
            }
            c->handshaking = true;
        }
        if (sl_loop_watch(h->o.loop, fd, SL_EV_READ, conn_io, c) != SL_OK) {
            SSL_free(c->ssl);
            close(fd);
            free(c->rbuf);
            free(c);
            continue;
        }
        c->watched = SL_EV_READ;
        c->next = h->conns;
        if (h->conns) h->conns->prev = c;
        h->conns = c;
        h->nconns++;
        conn_deadline(c, h->req_ms);
        conn_run(c);
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

bool sl_httpd_parse_url(const char *url, bool *https, char *host, size_t hl, int *port) {
    const char *p;
    if (!strncmp(url, "http://", 7)) {
        *https = false;
        p = url + 7;
    } else if (!strncmp(url, "https://", 8)) {
        *https = true;
        p = url + 8;
    } else
        return false;
    const char *colon;
    if (*p == '[') {
        const char *rb = strchr(p, ']');
        if (!rb || rb[1] != ':') return false;
        if ((size_t)(rb - p - 1) >= hl) return false;
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon || (size_t)(colon - p) >= hl) return false;
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = 0;
    }
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end && strcmp(end, "/")) || v < 0 || v > 65535) return false;
    *port = (int)v;
    return true;
}

/* Binds and listens; errno-style failure in *eno. */
static int bind_listen(const char *host, int port, int *bound, int *eno) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host && host[0] ? host : NULL, ps, &hints, &res);
    if (rc) {
        *eno = EADDRNOTAVAIL;
        return -1;
    }
    int fd = -1;
    *eno = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            *eno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        *eno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

sl_err sl_httpd_listen(const sl_httpd_opts *o, const char *host, int port, sl_httpd **out,
                       int *eno) {
    *out = NULL;
    int dummy;
    if (!eno) eno = &dummy;
    *eno = 0;
    if (!o || !o->loop || !o->handler) return SL_EINVAL;
    sl_httpd *h = calloc(1, sizeof *h);
    if (!h) return SL_ENOMEM;
    h->o = *o;
    snprintf(h->name, sizeof h->name, "%s", o->name && o->name[0] ? o->name : "http");
    h->o.name = h->name;
    if (h->o.max_conns <= 0) h->o.max_conns = DEFAULT_MAX_CONNS;
    if (!h->o.limits.allow_post) h->o.limits.max_body = 0;
    h->req_ms = REQ_TIMEOUT_MS;
    h->idle_ms = IDLE_TIMEOUT_MS;
    h->fd = bind_listen(host, port, &h->port, eno);
    if (h->fd < 0) {
        free(h);
        return SL_EIO;
    }
    if (sl_loop_watch(h->o.loop, h->fd, SL_EV_READ, on_accept, h) != SL_OK) {
        close(h->fd);
        free(h);
        return SL_EIO;
    }
    *out = h;
    return SL_OK;
}

void sl_httpd_free(sl_httpd *h) {
    if (!h) return;
    while (h->conns) conn_close(h->conns);
    sl_loop_unwatch(h->o.loop, h->fd);
    close(h->fd);
    free(h);
}

int sl_httpd_port(const sl_httpd *h) { return h ? h->port : 0; }

uint64_t sl_httpd_refused(const sl_httpd *h) { return h ? h->refused : 0; }

void sl_httpd_set_deadlines(sl_httpd *h, int64_t request_ms, int64_t idle_ms) {
    if (request_ms > 0) h->req_ms = request_ms;
    if (idle_ms > 0) h->idle_ms = idle_ms;
}

sl_err sl_httpd_tls(const struct sl_config *cfg, const char *name, const char *key,
                    const char *keystore, struct sl_tls_endpoint **out, char *err, size_t elen) {
    *out = NULL;
    const char *ks = keystore && keystore[0] ? keystore : cfg->ssl_keystore_location;
    char provisioned[SL_CFG_STR_MAX + 32];
    if (!ks[0]) {
        /* Secure by default like the Kafka listeners (sl_provision.h): the CA and broker
         * certificate in the secrets directory, created if missing. */
        if (!cfg->sluice_provision_enable) {
            snprintf(err, elen,
                     "%s: https needs a keystore (or ssl.keystore.location, or "
                     "sluice.provision.enable=true)",
                     key);
            return SL_ECONFIG;
        }
        char dir[SL_CFG_STR_MAX];
        sl_config_secret_dir_for(cfg, "broker.pem", dir, sizeof dir);
        if (sl_mkdir_p(dir, 0700)) {
            snprintf(err, elen, "sluice.secrets.dir: cannot create %s", dir);
            return SL_ECONFIG;
        }
        sl_err e = sl_tls_bootstrap(dir, err, elen);
        if (e) return e;
        snprintf(provisioned, sizeof provisioned, "%s/broker.pem", dir);
        ks = provisioned;
    }
    sl_tls_opts o = {.keystore_location = ks,
                     .key_password = cfg->ssl_key_password[0] ? cfg->ssl_key_password : NULL,
                     .client_auth = SL_TLS_CLIENT_AUTH_NONE};
    char e2[256];
    sl_err e = sl_tls_endpoint_new_opts(name, &o, out, e2, sizeof e2);
    if (e) snprintf(err, elen, "%s: %s", key, e2);
    return e;
}
