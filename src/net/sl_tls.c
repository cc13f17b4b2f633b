/* TLS transport (see sl_tls.h).
 *
 * Reads: SSL_read until the caller's buffer is full or OpenSSL needs more bytes from the socket,
 * so a short read means nothing decrypted is left behind; pending() covers the case where the
 * caller stops early (backpressure, read budget) with decrypted bytes still buffered.
 *
 * Writes: after the handshake (which stays on OpenSSL's socket BIO) the SSL writes its records
 * into `out`, a per-connection buffer, through a BIO of ours that always accepts. writev
 * encrypts SL_TLS_BATCH records at a time and hands each batch's ciphertext to the kernel in one
 * send(), until the socket is full: each send on loopback runs the receive path and wakes the
 * reader, which cost more than the encryption when it was one send per record. A record is
 * reported written only once its ciphertext is completely sent; until then it is held, and
 * since the caller's queue restarts at the first unreported byte, the next call finds that
 * record's plaintext at the front of its iovecs and skips it (it must never be encrypted twice:
 * record sequence numbers). New records are encrypted only when nothing is held, so `out` never
 * holds more than one batch plus what SSL_read made OpenSSL send (alerts; OpenSSL 3 answers a
 * KeyUpdate with the next record it writes), which tls_read flushes itself.
 *
 * The error queue is cleared once per read/writev call and after each failure that ends one:
 * entries appear only on failure, so SSL_get_error stays reliable without clearing before every
 * SSL_read_ex/SSL_write_ex (which costs a thread-state lookup in OpenSSL 3). */
#include "net/sl_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "net/sl_loop.h"

#define SL_TLS_REC 16384 /* plaintext of one full TLS record */
/* Records per send: 4 is 64 KiB, the loopback MTU and the read-ahead size, so the per-send cost
 * is paid once per 64 KiB instead of per 16 KiB. A batch is also what a connection holds while
 * its socket is full (~66 KiB, given back once it drains); a broker can have thousands of slow
 * readers, so no more. */
#define SL_TLS_BATCH 4
/* Ciphertext room for a batch: record header, explicit IV or nonce, tag or MAC and padding stay
 * under 256 bytes a record for every suite OpenSSL 3 offers (TLS 1.0's 1/n-1 split included). */
#define SL_TLS_OUT_CAP (SL_TLS_BATCH * (SL_TLS_REC + 256))
/* Bytes SSL_read may queue for sending (answers to the peer) before reads pause until they are
 * sent: a peer that never reads cannot make us buffer without bound. */
#define SL_TLS_READ_OUT_MAX SL_TLS_REC

typedef struct wrec {
    size_t end;   /* offset just past its ciphertext in `out` */
    size_t plain; /* plaintext bytes it carries */
} wrec;

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
    /* Ciphertext not yet sent is out[ooff, olen); NULL when none (idle connections hold none). */
    unsigned char *out;
    size_t ocap, ooff, olen;
    wrec recs[SL_TLS_BATCH]; /* records with ciphertext unsent: recs[rhead, rtail) */
    int rhead, rtail;
    size_t credit;    /* plaintext of records completely sent, not yet reported to the caller */
    size_t retry_len; /* an SSL_write_ex that must be retried with this many bytes (WANT_READ) */
    int werr;         /* errno of a failed send: every later write fails with it */
    uint64_t sends;   /* send() calls after the handshake (tests) */
    unsigned char stage[SL_TLS_REC]; /* a record gathered from several small iovecs */
} tls_t;

/* Lines an unauthenticated peer can cause at will: limited per client address (sl_logging.h). */
#define TLS_LOG(lvl, x, msg, ...)                                                                  \
    do {                                                                                           \
        char addr_[64];                                                                            \
        sl_log_limited(lvl, "tls", msg, sl_log_peer_addr((x)->peer, addr_, sizeof addr_),          \
                       __VA_ARGS__);                                                               \
    } while (0)

/* ---- ciphertext output ---- */

/* One drained buffer kept per thread: a busy connection gives its buffer back after every send
 * that empties it, and the next connection to write takes it, so idle connections hold nothing
 * and the steady state does no malloc. Ciphertext only: nothing to zero. */
static _Thread_local unsigned char *g_spare_out;

static void out_release(tls_t *x) {
    if (!x->out) return;
    if (x->ocap == SL_TLS_OUT_CAP && !g_spare_out)
        g_spare_out = x->out;
    else
        free(x->out);
    x->out = NULL;
    x->ocap = x->ooff = x->olen = 0;
}

static bool out_reserve(tls_t *x, size_t len) {
    if (x->ocap - x->olen >= len) return true;
    if (!x->out && len <= SL_TLS_OUT_CAP) {
        x->out = g_spare_out ? g_spare_out : malloc(SL_TLS_OUT_CAP);
        g_spare_out = NULL;
        if (!x->out) return false;
        x->ocap = SL_TLS_OUT_CAP;
        return true;
    }
    /* Beyond a batch: answers SSL_read queued behind held records (bounded by the reads). */
    size_t cap = x->ocap ? x->ocap * 2 : SL_TLS_OUT_CAP;
    while (cap - x->olen < len) cap *= 2;
    unsigned char *p = realloc(x->out, cap);
    if (!p) return false;
    x->out = p;
    x->ocap = cap;
    return true;
}

/* One send() of the held ciphertext; records it completes move to `credit`. 0, or -1 with errno
 * set once the socket has failed (then nothing is held any more: it can never be sent). */
static int out_flush(tls_t *x) {
    if (x->werr) {
        errno = x->werr;
        return -1;
    }
    if (x->ooff == x->olen) return 0;
    ssize_t n = send(x->base.fd, x->out + x->ooff, x->olen - x->ooff, MSG_NOSIGNAL);
    x->sends++;
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        x->werr = errno;
        x->ooff = x->olen = 0;
        x->rhead = x->rtail = 0;
        return -1;
    }
    x->ooff += (size_t)n;
    while (x->rhead < x->rtail && x->recs[x->rhead].end <= x->ooff)
        x->credit += x->recs[x->rhead++].plain;
    if (x->ooff == x->olen) x->ooff = x->olen = 0;
    if (x->rhead == x->rtail) x->rhead = x->rtail = 0;
    return 0;
}

/* Held bytes that no unreported record of the caller's covers (answers SSL_read produced): the
 * caller has no reason to come back for them, so wants() asks for the socket's writability. */
static size_t out_unowned(const tls_t *x) {
    size_t from = x->rhead < x->rtail ? x->recs[x->rtail - 1].end : x->ooff;
    return x->olen - from;
}

static int obio_write(BIO *b, const char *data, size_t len, size_t *written) {
    tls_t *x = BIO_get_data(b);
    if (!x || !out_reserve(x, len)) return 0; /* no retry flag: a hard error */
    memcpy(x->out + x->olen, data, len);
    x->olen += len;
    *written = len;
    return 1;
}

static long obio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    const tls_t *x = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the read or writev that made the records sends them before returning */
    case BIO_CTRL_WPENDING:
        return x ? (long)(x->olen - x->ooff) : 0;
    default:
        return 0; /* no dup (it could not share `out`), no kTLS, nothing to read */
    }
}

static BIO_METHOD *g_obio_method;
static pthread_once_t g_obio_once = PTHREAD_ONCE_INIT;

static void obio_init(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice tls out");
    if (m && BIO_meth_set_write_ex(m, obio_write) == 1 && BIO_meth_set_ctrl(m, obio_ctrl) == 1)
        g_obio_method = m;
    else
        BIO_meth_free(m);
}

/* Once established: the SSL writes into `out` instead of the socket (the socket BIO stays the
 * read BIO; SSL_set0_wbio drops only the write side's reference to it). */
static bool use_out_bio(tls_t *x) {
    pthread_once(&g_obio_once, obio_init);
    BIO *b = g_obio_method ? BIO_new(g_obio_method) : NULL;
    if (!b) return false;
    BIO_set_data(b, x);
    BIO_set_init(b, 1);
    SSL_set0_wbio(x->ssl, b);
    return true;
}

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
        if (!use_out_bio(x)) {
            SL_ERROR("tls", "out of memory finishing a handshake", "peer=%s", x->peer);
            x->failed = true;
            errno = ENOMEM;
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
    ERR_clear_error();
    /* Answers an earlier read queued go out first, whether or not anyone writes. A send that
     * failed fails the next writev; reading goes on, to deliver the peer's last bytes. */
    (void)out_flush(x);
    size_t queued = x->olen;
    size_t got = 0;
    x->rd_want = 0;
    x->starved = false;
    while (got < len) {
        if (out_unowned(x) > SL_TLS_READ_OUT_MAX) {
            (void)out_flush(x);
            if (out_unowned(x) > SL_TLS_READ_OUT_MAX) {
                x->rd_want = SL_EV_WRITE;
                break;
            }
            queued = x->olen;
        }
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
        if (got) { /* deliver what we have; the condition repeats on the next call */
            ERR_clear_error();
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && se == 0)) {
            ERR_clear_error();
            return 0;
        }
        if (e == SSL_ERROR_SSL)
            TLS_LOG(SL_LOG_INFO, x, "tls error on read", "listener=%s peer=%s reason=\"%s\"",
                    x->ep ? sl_tls_endpoint_listener(x->ep) : "upstream", x->peer,
                    err_reason(e, se));
        ERR_clear_error();
        (void)out_flush(x); /* the alert OpenSSL queued for the peer, best effort */
        errno = e == SSL_ERROR_SYSCALL ? se : EPROTO;
        return -1;
    }
    if (x->olen != queued) (void)out_flush(x);
    if (x->olen == 0) out_release(x);
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

/* Encrypts the iovecs from byte `off` on into `out`, up to SL_TLS_BATCH records. A record comes
 * straight from the caller's memory when one iovec holds all of it (OpenSSL may be given a new
 * address on a retry: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER); only one assembled from several
 * iovecs is copied. 0; 1 when OpenSSL must be retried later (wr_want says on what); -1 with
 * errno set on a failure that ends the connection. */
static int encrypt_batch(tls_t *x, const struct iovec *iov, int iovcnt, size_t off, size_t left) {
    int i = 0;
    while (i < iovcnt && off >= iov[i].iov_len) off -= iov[i++].iov_len;
    while (left && x->rtail < SL_TLS_BATCH) {
        /* After WANT_READ, OpenSSL wants the same bytes again, and the caller's queue starts
         * with exactly them. */
        size_t want = x->retry_len ? x->retry_len : left < SL_TLS_REC ? left : SL_TLS_REC;
        if (want > left) want = left;
        while (off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        const unsigned char *p = (const unsigned char *)iov[i].iov_base + off;
        if (iov[i].iov_len - off < want) {
            want = gather(iov + i, iovcnt - i, off, x->stage, want);
            p = x->stage;
        }
        size_t n = 0;
        int r = SSL_write_ex(x->ssl, p, want, &n);
        if (r != 1) {
            int se = errno, e = SSL_get_error(x->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                x->retry_len = want;
                x->wr_want = e == SSL_ERROR_WANT_READ ? SL_EV_READ : 0; /* WRITE: the caller */
                return 1;
            }
            ERR_clear_error();
            errno = e == SSL_ERROR_SYSCALL && se ? se : EPIPE;
            return -1;
        }
        /* A partial write is a completed call: the rest is a new write, not a retry. */
        x->retry_len = 0;
        x->recs[x->rtail++] = (wrec){x->olen, n};
        left -= n;
        while (n) {
            size_t step = iov[i].iov_len - off < n ? iov[i].iov_len - off : n;
            off += step;
            n -= step;
            if (off == iov[i].iov_len && n) {
                i++;
                off = 0;
            }
        }
    }
    return 0;
}

static ssize_t tls_writev(sl_transport *t, const struct iovec *iov, int iovcnt) {
    tls_t *x = (tls_t *)t;
    if (!x->established && handshake(x) <= 0) return -1;
    ERR_clear_error();
    x->wr_want = 0;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    int err = out_flush(x);
    /* The front `credit` bytes of the iovecs are records already sent; what follows is new.
     * Batch after batch until the socket is full: a short count tells the caller it is. */
    while (!err && x->rhead == x->rtail && x->olen == 0 && total > x->credit) {
        int r = encrypt_batch(x, iov, iovcnt, x->credit, total - x->credit);
        err = r < 0 ? -1 : out_flush(x);
        if (r > 0) break;
    }
    int e = errno;
    size_t done = x->credit < total ? x->credit : total;
    x->credit -= done;
    if (x->olen == 0 && x->rhead == x->rtail) out_release(x);
    if (done) return (ssize_t)done;
    if (err) {
        errno = e;
        return -1;
    }
    if (!total) return 0;
    errno = EAGAIN;
    return -1;
}

static void tls_close(sl_transport *t) {
    tls_t *x = (tls_t *)t;
    /* close_notify, best effort and without waiting: a truncation the peer can detect. */
    if (x->established && !x->failed) {
        ERR_clear_error();
        (void)SSL_shutdown(x->ssl);
        (void)out_flush(x);
    }
    ERR_clear_error();
    SSL_free(x->ssl);
    close(x->base.fd);
    free(x->principal);
    free(x->subject);
    out_release(x);
    OPENSSL_cleanse(x->stage, sizeof x->stage);
    free(x);
}

static uint32_t tls_wants(const sl_transport *t) {
    const tls_t *x = (const tls_t *)t;
    if (!x->established) return x->failed ? 0 : x->hs_want;
    return x->rd_want | x->wr_want | (out_unowned(x) ? SL_EV_WRITE : 0);
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

static bool tls_partial(const sl_transport *t) {
    const tls_t *x = (const tls_t *)t;
    /* Once OpenSSL has asked the socket for more (WANT_READ), every whole record read ahead has
     * been processed: bytes still in its read buffer are the start of one it cannot finish. */
    return (x->starved || !x->established) && SSL_has_pending(x->ssl);
}

static const sl_transport_vt tls_vt = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .close = tls_close,
    .wants = tls_wants,
    .pending = tls_pending,
    .partial = tls_partial,
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
    if (x) x->ssl = ssl;
    if (!x || !use_out_bio(x)) {
        SSL_free(ssl);
        close(fd);
        free(x);
        return NULL;
    }
    x->base.vt = &tls_vt;
    x->base.fd = fd;
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

uint64_t sl_tls_transport_sends(const sl_transport *t) {
    return t && t->vt == &tls_vt ? ((const tls_t *)t)->sends : 0;
}
