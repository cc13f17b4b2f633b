/* TLS transport (see sl_tls.h).
 *
 * Reads: SSL_read until the caller's buffer is full or OpenSSL needs more bytes from the socket,
 * so a short read means nothing decrypted is left behind; pending() covers the case where the
 * caller stops early (backpressure, read budget) with decrypted bytes still buffered.
 * Writes: up to one record of the caller's iovecs is staged in `wbuf`. After WANT_WRITE,
 * OpenSSL requires the same bytes again; the connection's queue always restarts at the first
 * unacknowledged byte, which is exactly the staged data, so the retry uses `wbuf` unchanged. */
#include "net/sl_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "net/sl_loop.h"

#define SL_TLS_STAGE 16384 /* one TLS record of plaintext */

typedef struct tls_t {
    sl_transport base; /* first: the server sees only this */
    SSL *ssl;
    const sl_tls_endpoint *ep;
    bool established, failed;
    bool starved; /* the last read wanted more bytes than read-ahead holds: a partial record */
    uint32_t hs_want, rd_want, wr_want; /* socket events OpenSSL waits for, per direction */
    char peer[64];
    char *principal;
    char *subject; /* the verified client certificate's subject (RFC 2253), NULL: none */
    size_t wlen;   /* staged bytes awaiting a (retried) SSL_write */
    unsigned char wbuf[SL_TLS_STAGE];
} tls_t;

/* Lines an unauthenticated peer can cause at will: limited per client address (sl_logging.h). */
#define TLS_LOG(lvl, x, msg, ...)                                                                  \
    do {                                                                                           \
        char addr_[64];                                                                            \
        sl_log_limited(lvl, "tls", msg, sl_log_peer_addr((x)->peer, addr_, sizeof addr_),          \
                       __VA_ARGS__);                                                               \
    } while (0)

static bool tls_established(const sl_transport *t) { return ((const tls_t *)t)->established; }

static const sl_transport_vt tls_vt;

static const char *err_reason(int ssl_err, int sys_errno) {
    static char buf[160];
    unsigned long e = ERR_peek_last_error();
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        return buf;
    }
    if (ssl_err == SSL_ERROR_SYSCALL)
        return sys_errno ? strerror(sys_errno) : "peer closed the connection";
    return "unknown error";
}

/* A short, stable reason for a failed handshake (a metric label, an event field): OpenSSL's
 * reason text for its last error (a fixed table, nothing the peer chose), else what the socket
 * said. */
static const char *fail_category(int ssl_err, int sys_errno) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r) return r;
    if (ssl_err == SSL_ERROR_SYSCALL) return sys_errno ? "socket error" : "peer closed";
    return "handshake failed";
}

/* After the handshake: the client certificate (verified by OpenSSL against the truststore, or
 * absent) becomes the principal. False if no mapping rule accepts it (Kafka refuses those). */
static bool on_established(tls_t *x) {
    const char *listener = sl_tls_endpoint_listener(x->ep);
    X509 *cert = SSL_get0_peer_certificate(x->ssl);
    char dn[1024] = "", name[1024] = "";
    if (cert) {
        if (SSL_get_verify_result(x->ssl) != X509_V_OK ||
            !sl_x509_subject_rfc2253(cert, dn, sizeof dn) ||
            !sl_principal_map(sl_tls_endpoint_rules(x->ep), dn, name, sizeof name)) {
            TLS_LOG(SL_LOG_WARN, x, "client certificate refused: no principal mapping rule matched",
                    "listener=%s peer=%s subject=\"%s\"", listener, x->peer, dn);
            sl_tls_endpoint_note_failure((sl_tls_endpoint *)x->ep, x->peer,
                                         SSL_get_verify_result(x->ssl) != X509_V_OK
                                             ? "certificate verify failed"
                                             : "no principal mapping rule matched");
            return false;
        }
        x->principal = strdup(name);
        x->subject = strdup(dn);
        if (!x->principal || !x->subject) return false;
    }
    TLS_LOG(SL_LOG_INFO, x, "tls handshake complete",
            "listener=%s peer=%s protocol=%s cipher=%s principal=\"%s%s\"", listener, x->peer,
            SSL_get_version(x->ssl), SSL_get_cipher_name(x->ssl), x->principal ? "User:" : "",
            x->principal ? x->principal : "none");
    return true;
}

/* 1: established; 0: in progress (errno EAGAIN); -1: failed (errno set, reason logged). */
static int handshake(tls_t *x) {
    if (x->failed) {
        errno = EPROTO;
        return -1;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(x->ssl);
    if (r == 1) {
        x->hs_want = 0;
        if (!on_established(x)) {
            x->failed = true;
            errno = EACCES;
            return -1;
        }
        x->established = true;
        return 1;
    }
    int se = errno, e = SSL_get_error(x->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        x->hs_want = e == SSL_ERROR_WANT_READ ? SL_EV_READ : SL_EV_WRITE;
        errno = EAGAIN;
        return 0;
    }
    x->failed = true;
    /* The endpoint is shared read-only except for this one failure slot (sl_tls_ctx.h). */
    sl_tls_endpoint_note_failure((sl_tls_endpoint *)x->ep, x->peer, fail_category(e, se));
    TLS_LOG(SL_LOG_INFO, x, "tls handshake failed", "listener=%s peer=%s reason=\"%s\"",
            sl_tls_endpoint_listener(x->ep), x->peer, err_reason(e, se));
    ERR_clear_error();
    errno = e == SSL_ERROR_SYSCALL && se ? se : EPROTO;
    return -1;
}

static ssize_t tls_read(sl_transport *t, void *buf, size_t len) {
    tls_t *x = (tls_t *)t;
    if (!x->established && handshake(x) <= 0) return -1;
    size_t got = 0;
    x->rd_want = 0;
    x->starved = false;
    while (got < len) {
        ERR_clear_error();
        size_t n = 0;
        int r = SSL_read_ex(x->ssl, (unsigned char *)buf + got, len - got, &n);
        if (r == 1) {
            got += n;
            continue;
        }
        int se = errno, e = SSL_get_error(x->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            x->starved = true;
            break;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            x->rd_want = SL_EV_WRITE;
            break;
        }
        if (got) break; /* deliver what we have; the condition repeats on the next call */
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && se == 0)) return 0;
        if (e == SSL_ERROR_SSL)
            TLS_LOG(SL_LOG_INFO, x, "tls error on read", "listener=%s peer=%s reason=\"%s\"",
                    x->ep ? sl_tls_endpoint_listener(x->ep) : "upstream", x->peer,
                    err_reason(e, se));
        ERR_clear_error();
        errno = e == SSL_ERROR_SYSCALL ? se : EPROTO;
        return -1;
    }
    if (got) return (ssize_t)got;
    errno = EAGAIN;
    return -1;
}

/* Copies up to `cap` bytes of the iovecs, starting `off` bytes in, to `dst`. */
static size_t gather(const struct iovec *iov, int iovcnt, size_t off, unsigned char *dst,
                     size_t cap) {
    size_t n = 0;
    for (int i = 0; i < iovcnt && n < cap; i++) {
        size_t l = iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t take = l - off;
        if (take > cap - n) take = cap - n;
        memcpy(dst + n, (const unsigned char *)iov[i].iov_base + off, take);
        n += take;
        off = 0;
    }
    return n;
}

static ssize_t tls_writev(sl_transport *t, const struct iovec *iov, int iovcnt) {
    tls_t *x = (tls_t *)t;
    if (!x->established && handshake(x) <= 0) return -1;
    size_t total = 0;
    x->wr_want = 0;
    for (;;) {
        if (!x->wlen) x->wlen = gather(iov, iovcnt, total, x->wbuf, sizeof x->wbuf);
        if (!x->wlen) break;
        ERR_clear_error();
        size_t n = 0;
        int r = SSL_write_ex(x->ssl, x->wbuf, x->wlen, &n);
        if (r == 1) {
            /* A partial write is a completed call: the rest is a new write, not a retry. */
            memmove(x->wbuf, x->wbuf + n, x->wlen - n);
            x->wlen -= n;
            total += n;
            continue;
        }
        int se = errno, e = SSL_get_error(x->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            x->wr_want = e == SSL_ERROR_WANT_READ ? SL_EV_READ : 0; /* WRITE: the server asks */
            break;
        }
        if (total) break;
        ERR_clear_error();
        errno = e == SSL_ERROR_SYSCALL && se ? se : EPIPE;
        return -1;
    }
    if (total) return (ssize_t)total;
    errno = EAGAIN;
    return -1;
}

static void tls_close(sl_transport *t) {
    tls_t *x = (tls_t *)t;
    /* close_notify, best effort and without waiting: a truncation the peer can detect. */
    if (x->established && !x->failed) {
        ERR_clear_error();
        (void)SSL_shutdown(x->ssl);
    }
    ERR_clear_error();
    SSL_free(x->ssl);
    close(x->base.fd);
    free(x->principal);
    free(x->subject);
    OPENSSL_cleanse(x->wbuf, sizeof x->wbuf);
    free(x);
}

static uint32_t tls_wants(const sl_transport *t) {
    const tls_t *x = (const tls_t *)t;
    if (!x->established) return x->failed ? 0 : x->hs_want;
    return x->rd_want | x->wr_want;
}

static bool tls_pending(const sl_transport *t) {
    const tls_t *x = (const tls_t *)t;
    /* SSL_has_pending also sees whole records read ahead but not yet decrypted, which never
     * make the fd readable again; but it is also true for a partial record, which only more
     * bytes from the peer can complete: after a read that ran dry, only decrypted bytes count,
     * or the server would spin on a peer that sent half a record. */
    if (!x->established) return false;
    return SSL_pending(x->ssl) > 0 || (!x->starved && SSL_has_pending(x->ssl));
}

static const sl_transport_vt tls_vt = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .close = tls_close,
    .wants = tls_wants,
    .pending = tls_pending,
    .established = tls_established,
};

sl_transport *sl_tls_transport_new(void *epv, int fd, const char *peer, const char *listener) {
    sl_tls_endpoint *ep = epv;
    tls_t *x = calloc(1, sizeof *x);
    SSL *ssl = x ? SSL_new(sl_tls_endpoint_ctx(ep)) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SL_ERROR("tls", "cannot create a TLS session", "listener=%s", listener);
        ERR_clear_error();
        SSL_free(ssl);
        free(x);
        close(fd);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    x->base.vt = &tls_vt;
    x->base.fd = fd;
    x->ssl = ssl;
    x->ep = ep;
    x->hs_want = SL_EV_READ;
    snprintf(x->peer, sizeof x->peer, "%s", peer ? peer : "?");
    return &x->base;
}

sl_transport *sl_tls_client_transport(SSL *ssl, int fd) {
    tls_t *x = calloc(1, sizeof *x);
    if (!x) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    x->base.vt = &tls_vt;
    x->base.fd = fd;
    x->ssl = ssl;
    x->established = true; /* no endpoint: the handshake was done by the caller */
    snprintf(x->peer, sizeof x->peer, "upstream");
    return &x->base;
}

const char *sl_conn_tls_principal(const sl_conn *c) {
    const sl_transport *t = sl_conn_transport(c);
    if (!t || t->vt != &tls_vt) return NULL;
    const tls_t *x = (const tls_t *)t;
    return x->established ? x->principal : NULL;
}

bool sl_conn_is_tls(const sl_conn *c) {
    const sl_transport *t = sl_conn_transport(c);
    return t && t->vt == &tls_vt;
}

static const tls_t *established_tls(const sl_conn *c) {
    const sl_transport *t = c ? sl_conn_transport(c) : NULL;
    if (!t || t->vt != &tls_vt || !((const tls_t *)t)->established) return NULL;
    return (const tls_t *)t;
}

const char *sl_conn_tls_version(const sl_conn *c) {
    const tls_t *x = established_tls(c);
    return x ? SSL_get_version(x->ssl) : NULL;
}

const char *sl_conn_tls_server_name(const sl_conn *c) {
    const tls_t *x = established_tls(c);
    return x ? SSL_get_servername(x->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

const char *sl_conn_tls_cipher(const sl_conn *c) {
    const tls_t *x = established_tls(c);
    return x ? SSL_get_cipher_name(x->ssl) : NULL;
}

const char *sl_conn_tls_subject(const sl_conn *c) {
    const tls_t *x = established_tls(c);
    return x ? x->subject : NULL;
}
