/* The kmip KMS provider: KEKs live in a KMIP server (OASIS KMIP 1.4 over mutual TLS) and never
 * leave it; Sluice asks it to Encrypt / Decrypt topic keys with AES-GCM (docs/kms-kmip.md).
 *
 * Wrapped form of a topic key: IV (12 bytes, random per wrap) || ciphertext || GCM tag (16). The
 * caller's context is the GCM additional data, so a wrapped key moved to another topic or version
 * fails to unwrap (SL_ETAMPER). The IV is chosen here, never by the server: servers that pick one
 * (PyKMIP) choose 16 bytes, not GCM's 96 bits. Random IVs are fine: a KEK wraps a few keys per
 * topic, far below SP 800-38D's 2^32 invocations.
 *
 * One TLS connection, opened on first use and kept; any I/O, TLS or framing failure drops it and
 * the next call reconnects. Every call has one deadline (sluice.kms.timeout.ms) covering connect,
 * handshake, request and answer; the socket is non-blocking and polled, so a stopped server costs
 * a timeout, never a hang. The key service calls from its worker thread, one call at a time. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/sl_addr.h"
#include "base/sl_buf.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "kms/sl_kms.h"
#include "kms/sl_ttlv.h"
#include "net/sl_dial.h"

#define KMIP_DEFAULT_PORT "5696"
/* Answers Sluice expects are a few hundred bytes; a larger length is a broken or hostile peer. */
#define RESP_MAX  (64 * 1024)
#define ITEMS_MAX 1024
#define IV_LEN    12
#define TAG_LEN   16
/* TLS 1.2 suites: forward secret AES-GCM only. PyKMIP offers no ECDHE-RSA-GCM suite, so a
 * server certificate with an EC key is needed there; the RSA ones are for real key managers.
 * TLS 1.3 keeps OpenSSL's defaults (all AEAD). */
#define KMIP_CIPHERS                                                                               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"                                 \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"

typedef struct kmip {
    sl_kms base;
    char host[256];
    char port[8];
    bool ip; /* host is an IP literal: verify against IP SANs */
    int64_t timeout_ms;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    bool down; /* the last attempt failed: log recovery once */
    sl_ttlv_item items[ITEMS_MAX];
    uint8_t resp[SL_TTLV_HEADER + RESP_MAX]; /* may hold an unwrapped key: cleansed after use */
} kmip;

/* ---- Connection ---- */

static void drop(kmip *k) {
    if (k->ssl) {
        /* No close_notify: the peer may be gone or stopped, and this must not block. */
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
}

/* SSL_write on a socket whose peer is gone raises SIGPIPE (OpenSSL writes with write(2)); the
 * broker ignores it, but a CLI path may not. Blocked for this thread around the call, and a
 * SIGPIPE it caused is consumed before unblocking. */
typedef struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
    sigset_t s, pend;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, &g->old);
}

static void sigpipe_unblock(sigpipe_guard *g) {
    sigset_t s, pend;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    sigpending(&pend);
    if (!g->was_pending && sigismember(&pend, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&s, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int ssl_io(kmip *k, int64_t deadline, int (*op)(SSL *, void *, int), void *buf, int n) {
    return sl_dial_ssl_io(k->ssl, k->fd, deadline, op, buf, n);
}

/* The reason OpenSSL gave last (e.g. "tlsv1 alert unknown ca" when the server refuses our
 * certificate), or a fallback. Static strings. */
static const char *ssl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "connection closed";
}

static sl_err tcp_connect(kmip *k, int64_t deadline, char *err, size_t errlen) {
    char why[300];
    k->fd = sl_dial_tcp(k->host, k->port, deadline, why, sizeof why);
    if (k->fd < 0) {
        snprintf(err, errlen, "kmip: %s", why);
        return SL_EKMS_UNAVAILABLE;
    }
    return SL_OK;
}

static sl_err kmip_connect(kmip *k, int64_t deadline, char *err, size_t errlen) {
    sl_err rc = tcp_connect(k, deadline, err, errlen);
    if (rc) return rc;
    k->ssl = SSL_new(k->ctx);
    if (!k->ssl || SSL_set_fd(k->ssl, k->fd) != 1) {
        drop(k);
        snprintf(err, errlen, "kmip: out of memory");
        return SL_ENOMEM;
    }
    if (k->ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), k->host);
    } else {
        SSL_set_tlsext_host_name(k->ssl, k->host);
        SSL_set1_host(k->ssl, k->host);
    }
    sigpipe_guard g;
    sigpipe_block(&g);
    int r = ssl_io(k, deadline, sl_dial_op_connect, NULL, 0);
    sigpipe_unblock(&g);
    if (r <= 0) {
        long vr = SSL_get_verify_result(k->ssl);
        if (r == -2)
            snprintf(err, errlen, "kmip: TLS handshake with %s:%s timed out", k->host, k->port);
        else if (vr != X509_V_OK)
            snprintf(err, errlen, "kmip: certificate of %s:%s not trusted: %s", k->host, k->port,
                     X509_verify_cert_error_string(vr));
        else
            snprintf(err, errlen,
                     "kmip: TLS handshake with %s:%s failed: %s (is Sluice's client certificate "
                     "trusted by the server?)",
                     k->host, k->port, ssl_reason());
        drop(k);
        ERR_clear_error();
        return SL_EKMS_UNAVAILABLE;
    }
    SL_INFO("kms", "kmip connected", "endpoint=%s:%s tls=%s cipher=%s", k->host, k->port,
            SSL_get_version(k->ssl), SSL_get_cipher_name(k->ssl));
    return SL_OK;
}

/* An idle kept connection the server closed (restart, idle timeout) reads as ready: EOF or a
 * close_notify. Such a connection is dropped before use rather than failing the request. TLS
 * 1.3 servers may also send session tickets after the handshake: SSL_peek consumes those and
 * then wants more, which means the connection is fine. */
static bool stale(kmip *k) {
    struct pollfd p = {.fd = k->fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
    uint8_t b;
    sigpipe_guard g;
    sigpipe_block(&g);
    ERR_clear_error();
    int r = SSL_peek(k->ssl, &b, 1);
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(k->ssl, r);
    sigpipe_unblock(&g);
    ERR_clear_error();
    /* Application data nobody asked for means the stream is out of step: stale too. */
    return !(r <= 0 && e == SSL_ERROR_WANT_READ);
}

/* Sends the request and reads one whole response message into k->resp. Returns SL_OK, or
 * SL_EKMS_UNAVAILABLE with `err` set and the connection dropped; `*fresh_fail` then says the
 * connection failed before any answer arrived and without a timeout (a dead kept connection:
 * worth one retry on a new one). */
static sl_err exchange(kmip *k, const uint8_t *req, size_t reqlen, size_t *resplen,
                       int64_t deadline, bool *fresh_fail, char *err, size_t errlen) {
    sigpipe_guard g;
    sigpipe_block(&g);
    int r = ssl_io(k, deadline, sl_dial_op_write, (void *)req, (int)reqlen);
    const char *what = NULL;
    size_t got = 0, want = SL_TTLV_HEADER;
    if (r != (int)reqlen) {
        what = r == -2 ? "sending timed out" : "send failed";
        goto fail;
    }
    while (got < want) {
        r = ssl_io(k, deadline, sl_dial_op_read, k->resp + got, (int)(want - got));
        if (r <= 0) {
            what = r == -2  ? "no answer in time"
                   : r == 0 ? "server closed the connection"
                            : "read failed";
            goto fail;
        }
        got += (size_t)r;
        if (want == SL_TTLV_HEADER && got == SL_TTLV_HEADER) {
            uint32_t len = sl_get_be32(k->resp + 4);
            if (sl_get_be32(k->resp) !=
                    ((uint32_t)SL_KMIP_TAG_RESPONSE_MESSAGE << 8 | SL_TTLV_STRUCT) ||
                len > RESP_MAX || len % 8) {
                what = "answer is not a KMIP response message";
                goto fail;
            }
            want += len;
        }
    }
    sigpipe_unblock(&g);
    *resplen = got;
    *fresh_fail = false;
    return SL_OK;
fail:
    sigpipe_unblock(&g);
    OPENSSL_cleanse(k->resp, got); /* part of an answer may be part of a key */
    /* Nothing read yet on a kept connection: the server may have dropped it while idle. */
    *fresh_fail = got == 0 && r != -2;
    snprintf(err, errlen, "kmip: %s:%s: %s%s%s", k->host, k->port, what, r == -1 ? ": " : "",
             r == -1 ? ssl_reason() : "");
    drop(k);
    ERR_clear_error();
    return SL_EKMS_UNAVAILABLE;
}

/* ---- Requests ---- */

static const char *op_name(uint32_t op) {
    switch (op) {
    case SL_KMIP_OP_CREATE:
        return "Create";
    case SL_KMIP_OP_GET_ATTRIBUTES:
        return "Get Attributes";
    case SL_KMIP_OP_ACTIVATE:
        return "Activate";
    case SL_KMIP_OP_REVOKE:
        return "Revoke";
    case SL_KMIP_OP_DESTROY:
        return "Destroy";
    case SL_KMIP_OP_ENCRYPT:
        return "Encrypt";
    case SL_KMIP_OP_DECRYPT:
        return "Decrypt";
    default:
        return "operation";
    }
}

static const char *reason_name(uint32_t r) {
    switch (r) {
    case SL_KMIP_REASON_ITEM_NOT_FOUND:
        return "Item Not Found";
    case SL_KMIP_REASON_RESPONSE_TOO_LARGE:
        return "Response Too Large";
    case SL_KMIP_REASON_AUTH_NOT_SUCCESSFUL:
        return "Authentication Not Successful";
    case SL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE:
        return "Cryptographic Failure";
    case SL_KMIP_REASON_PERMISSION_DENIED:
        return "Permission Denied";
    case SL_KMIP_REASON_GENERAL_FAILURE:
        return "General Failure";
    default:
        return NULL;
    }
}

/* The server's Result Message, reduced to printable ASCII: it goes into a log line. */
static void printable(const uint8_t *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (cap) out[o] = 0;
}

/* A failed Result Status to an error. Decrypt is the one place an answer of "no" can mean the
 * wrapped bytes or their context are wrong: the spec's reason is Cryptographic Failure, and
 * PyKMIP reports its InvalidTag as General Failure; both are SL_ETAMPER. Everything else the
 * server refused is SL_EKMS_DENIED (not retried), except answers that say "later". */
static sl_err failure(const kmip *k, uint32_t op, const sl_kmip_resp *r, char *err, size_t errlen) {
    char msg[160], rn[24];
    printable(r->message, r->message_len, msg, sizeof msg);
    const char *reason = reason_name(r->reason);
    if (!reason) {
        snprintf(rn, sizeof rn, "reason 0x%x", (unsigned)r->reason);
        reason = rn;
    }
    snprintf(err, errlen, "kmip: %s refused by %s:%s: %s%s%s", op_name(op), k->host, k->port,
             reason, msg[0] ? ": " : "", msg);
    if (r->status == SL_KMIP_STATUS_PENDING || r->status == SL_KMIP_STATUS_UNDONE)
        return SL_EKMS_UNAVAILABLE;
    if (op == SL_KMIP_OP_DECRYPT && (r->reason == SL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE ||
                                     r->reason == SL_KMIP_REASON_GENERAL_FAILURE))
        return SL_ETAMPER;
    return SL_EKMS_DENIED;
}

/* Sends the request `e` built and decodes the answer into *r (views into k->resp, valid until
 * the next call; the caller cleanses k->resp with done()). Connects first if needed, and retries
 * once on a fresh connection when a kept one turns out dead before answering. SL_OK only for a
 * successful result; a refusal is mapped by failure(). */
static sl_err call(kmip *k, uint32_t op, sl_ttlv_enc *e, sl_kmip_resp *r, char *err,
                   size_t errlen) {
    sl_err rc = sl_ttlv_enc_finish(e);
    if (rc) {
        snprintf(err, errlen, "kmip: cannot build the %s request", op_name(op));
        return rc;
    }
    int64_t deadline = sl_mono_ms() + k->timeout_ms;
    size_t resplen = 0;
    for (int attempt = 0;; attempt++) {
        bool reused = k->ssl != NULL;
        if (reused && stale(k)) {
            drop(k);
            reused = false;
        }
        if (!k->ssl) {
            rc = kmip_connect(k, deadline, err, errlen);
            if (rc) goto down;
        }
        bool fresh_fail = false;
        rc = exchange(k, e->buf, e->len, &resplen, deadline, &fresh_fail, err, errlen);
        if (!rc) break;
        if (!(reused && fresh_fail && attempt == 0)) goto down;
    }
    if (k->down) {
        SL_INFO("kms", "kmip server reachable again", "endpoint=%s:%s", k->host, k->port);
        k->down = false;
    }
    if (sl_kmip_resp_decode(k->resp, resplen, k->items, ITEMS_MAX, r) ||
        (r->operation && r->operation != op)) {
        OPENSSL_cleanse(k->resp, resplen);
        drop(k);
        snprintf(err, errlen, "kmip: malformed answer from %s:%s to %s", k->host, k->port,
                 op_name(op));
        return SL_EKMS_UNAVAILABLE;
    }
    if (r->status != SL_KMIP_STATUS_SUCCESS) {
        rc = failure(k, op, r, err, errlen);
        OPENSSL_cleanse(k->resp, resplen);
        return rc;
    }
    if (r->payload < 0 && op != SL_KMIP_OP_ACTIVATE && op != SL_KMIP_OP_REVOKE &&
        op != SL_KMIP_OP_DESTROY) {
        OPENSSL_cleanse(k->resp, resplen);
        snprintf(err, errlen, "kmip: %s answer from %s:%s has no payload", op_name(op), k->host,
                 k->port);
        return SL_EKMS_UNAVAILABLE;
    }
    return SL_OK;
down:
    if (!k->down) {
        /* Once per outage; the key service logs each failed call with `err` too. */
        SL_WARN("kms", "kmip server unreachable", "endpoint=%s:%s reason=\"%s\"", k->host, k->port,
                err);
        k->down = true;
    }
    return rc == SL_ENOMEM ? rc : SL_EKMS_UNAVAILABLE;
}

static void done(kmip *k) { OPENSSL_cleanse(k->resp, sizeof k->resp); }

/* A payload field's bytes (type `type`), or false. */
static bool field(const sl_kmip_resp *r, uint32_t tag, uint8_t type, const uint8_t **p, size_t *n) {
    return sl_ttlv_get_bytes(&r->doc, sl_ttlv_child(&r->doc, r->payload, tag), type, p, n);
}

static bool valid_uid(const char *id) {
    size_t n = strnlen(id, sizeof((sl_kms_keyref *)0)->id);
    return n > 0 && n < sizeof((sl_kms_keyref *)0)->id;
}

/* ---- Provider operations ---- */

static sl_err kmip_wrap(sl_kms *base, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                        const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                        char *err, size_t errlen) {
    kmip *k = (kmip *)base;
    if (!valid_uid(kek->id) || n == 0 || n > 1024 || cap < IV_LEN + n + TAG_LEN) {
        snprintf(err, errlen, "kmip: bad wrap arguments");
        return SL_EINVAL;
    }
    uint8_t iv[IV_LEN];
    if (RAND_bytes(iv, sizeof iv) != 1) {
        snprintf(err, errlen, "kmip: no random bytes for the IV");
        return SL_EIO;
    }
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_encrypt(&e, kek->id, plain, n, iv, ctx, ctxlen);
    sl_kmip_resp r;
    sl_err rc = call(k, SL_KMIP_OP_ENCRYPT, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e); /* cleanses: it held the key */
    if (rc) return rc;
    const uint8_t *ct, *tag, *riv;
    size_t ctn, tagn, rivn;
    if (!field(&r, SL_KMIP_TAG_DATA, SL_TTLV_BYTES, &ct, &ctn) || ctn != n) {
        rc = SL_EKMS_UNAVAILABLE;
        snprintf(err, errlen, "kmip: Encrypt answer without %zu bytes of data", n);
    } else if (!field(&r, SL_KMIP_TAG_AE_TAG, SL_TTLV_BYTES, &tag, &tagn) || tagn != TAG_LEN) {
        /* A server below KMIP 1.4 drops the AAD and tag fields: it did not do GCM as asked. */
        rc = SL_EKMS_DENIED;
        snprintf(err, errlen,
                 "kmip: Encrypt answer without a 16-byte authentication tag (the server must "
                 "support KMIP 1.4 and AES-GCM)");
    } else if (field(&r, SL_KMIP_TAG_IV_COUNTER_NONCE, SL_TTLV_BYTES, &riv, &rivn) &&
               (rivn != IV_LEN || CRYPTO_memcmp(riv, iv, IV_LEN))) {
        rc = SL_EKMS_DENIED;
        snprintf(err, errlen, "kmip: Encrypt answer used another IV than the one sent");
    } else {
        memcpy(out, iv, IV_LEN);
        memcpy(out + IV_LEN, ct, n);
        memcpy(out + IV_LEN + n, tag, TAG_LEN);
        *outlen = IV_LEN + n + TAG_LEN;
    }
    done(k);
    return rc;
}

static sl_err kmip_unwrap(sl_kms *base, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                          const uint8_t *wrapped, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen, char *err, size_t errlen) {
    kmip *k = (kmip *)base;
    if (!valid_uid(kek->id)) {
        snprintf(err, errlen, "kmip: bad KEK id");
        return SL_EINVAL;
    }
    if (n <= IV_LEN + TAG_LEN || n > IV_LEN + 1024 + TAG_LEN) {
        snprintf(err, errlen, "kmip: wrapped key of %zu bytes is not IV || data || tag", n);
        return SL_ETAMPER;
    }
    size_t ctn = n - IV_LEN - TAG_LEN;
    if (cap < ctn) {
        snprintf(err, errlen, "kmip: unwrap buffer too small");
        return SL_EINVAL;
    }
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_decrypt(&e, kek->id, wrapped + IV_LEN, ctn, wrapped, ctx, ctxlen,
                        wrapped + IV_LEN + ctn);
    sl_kmip_resp r;
    sl_err rc = call(k, SL_KMIP_OP_DECRYPT, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    if (rc) return rc;
    const uint8_t *pt;
    size_t ptn;
    if (!field(&r, SL_KMIP_TAG_DATA, SL_TTLV_BYTES, &pt, &ptn) || ptn != ctn) {
        rc = SL_EKMS_UNAVAILABLE;
        snprintf(err, errlen, "kmip: Decrypt answer without %zu bytes of data", ctn);
    } else {
        memcpy(out, pt, ptn);
        *outlen = ptn;
    }
    done(k);
    return rc;
}

/* Copies a Unique Identifier answered by the server into out (printable, fits). */
static bool take_uid(const sl_kmip_resp *r, char *out, size_t cap) {
    const uint8_t *p;
    size_t n;
    if (!field(r, SL_KMIP_TAG_UNIQUE_IDENTIFIER, SL_TTLV_TEXT, &p, &n) || n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e) return false;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

static sl_err kmip_generate(sl_kms *base, uint32_t version, sl_kms_keyref *out, char *err,
                            size_t errlen) {
    kmip *k = (kmip *)base;
    char name[64];
    snprintf(name, sizeof name, "sluice-kek-v%u", (unsigned)version);
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_create(&e, name);
    sl_kmip_resp r;
    sl_err rc = call(k, SL_KMIP_OP_CREATE, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    if (rc) return rc;
    char uid[sizeof out->id];
    bool ok = take_uid(&r, uid, sizeof uid);
    done(k);
    if (!ok) {
        snprintf(err, errlen, "kmip: Create answer without a usable Unique Identifier");
        return SL_EKMS_UNAVAILABLE;
    }
    /* Created keys start Pre-Active; Encrypt needs Active. */
    sl_ttlv_enc_init(&e);
    sl_kmip_req_uid(&e, SL_KMIP_OP_ACTIVATE, uid);
    rc = call(k, SL_KMIP_OP_ACTIVATE, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    done(k);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    memcpy(out->id, uid, strlen(uid) + 1);
    out->version = version;
    SL_INFO("kms", "kmip key created", "endpoint=%s:%s uid=%s name=%s", k->host, k->port, uid,
            name);
    return SL_OK;
}

static const char *state_name(uint32_t s) {
    static const char *names[] = {
        "unknown",   "Pre-Active",           "Active", "Deactivated", "Compromised",
        "Destroyed", "Destroyed Compromised"};
    return s < sizeof names / sizeof *names ? names[s] : "unknown";
}

static sl_err kmip_describe(sl_kms *base, const sl_kms_keyref *kek, char *out, size_t cap,
                            char *err, size_t errlen) {
    kmip *k = (kmip *)base;
    if (!valid_uid(kek->id)) {
        snprintf(err, errlen, "kmip: bad KEK id");
        return SL_EINVAL;
    }
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_get_attributes(&e, kek->id);
    sl_kmip_resp r;
    sl_err rc = call(k, SL_KMIP_OP_GET_ATTRIBUTES, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    if (rc) return rc;
    uint32_t state, alg, len;
    sl_kmip_resp_attributes(&r, &state, &alg, &len);
    done(k);
    snprintf(out, cap, "kmip %s:%s uid=%s state=%s algorithm=%s length=%u", k->host, k->port,
             kek->id, state_name(state), alg == 3 ? "AES" : "other", (unsigned)len);
    return SL_OK;
}

static sl_err kmip_destroy(sl_kms *base, const sl_kms_keyref *kek, char *err, size_t errlen) {
    kmip *k = (kmip *)base;
    if (!valid_uid(kek->id)) {
        snprintf(err, errlen, "kmip: bad KEK id");
        return SL_EINVAL;
    }
    /* An Active key cannot be destroyed: revoke it first. A refusal to revoke (already revoked,
     * never activated) is not fatal; Destroy's answer decides. */
    sl_ttlv_enc e;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_revoke(&e, kek->id);
    sl_kmip_resp r;
    sl_err rc = call(k, SL_KMIP_OP_REVOKE, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    done(k);
    if (rc == SL_EKMS_UNAVAILABLE || rc == SL_ENOMEM) return rc;
    sl_ttlv_enc_init(&e);
    sl_kmip_req_uid(&e, SL_KMIP_OP_DESTROY, kek->id);
    rc = call(k, SL_KMIP_OP_DESTROY, &e, &r, err, errlen);
    sl_ttlv_enc_free(&e);
    done(k);
    if (!rc)
        SL_INFO("kms", "kmip key destroyed", "endpoint=%s:%s uid=%s", k->host, k->port, kek->id);
    return rc;
}

static void kmip_free(sl_kms *base) {
    kmip *k = (kmip *)base;
    if (!k) return;
    drop(k);
    SSL_CTX_free(k->ctx);
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}

static const sl_kms_ops k_ops = {
    .name = "kmip",
    .wrap = kmip_wrap,
    .unwrap = kmip_unwrap,
    .generate = kmip_generate,
    .describe = kmip_describe,
    .destroy = kmip_destroy,
    .free = kmip_free,
};

/* "host", "host:port", "[v6]" or "[v6]:port" (port default 5696). */
static bool parse_endpoint(const char *s, kmip *k) {
    sl_hostport hp;
    const char *rest;
    if (!sl_hostport_parse(s, "", KMIP_DEFAULT_PORT, &hp, &rest) || *rest) return false;
    memcpy(k->host, hp.host, sizeof k->host);
    memcpy(k->port, hp.port, sizeof k->port);
    k->ip = hp.ip;
    return true;
}

sl_err sl_kms_kmip_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    static const struct {
        const char *key;
        size_t off;
    } k_required[] = {
        {"sluice.kms.kmip.endpoint", offsetof(sl_config, sluice_kms_kmip_endpoint)},
        {"sluice.kms.kmip.ca.file", offsetof(sl_config, sluice_kms_kmip_ca_file)},
        {"sluice.kms.kmip.cert.file", offsetof(sl_config, sluice_kms_kmip_cert_file)},
        {"sluice.kms.kmip.key.file", offsetof(sl_config, sluice_kms_kmip_key_file)},
    };
    for (size_t i = 0; i < sizeof k_required / sizeof *k_required; i++)
        if (!((const char *)cfg + k_required[i].off)[0]) {
            snprintf(err, errlen, "%s: required with sluice.kms.provider=kmip", k_required[i].key);
            return SL_ECONFIG;
        }
    kmip *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    k->base.ops = &k_ops;
    k->fd = -1;
    k->timeout_ms = cfg->sluice_kms_timeout_ms;
    sl_err rc = SL_ECONFIG;
    if (!parse_endpoint(cfg->sluice_kms_kmip_endpoint, k)) {
        snprintf(err, errlen, "sluice.kms.kmip.endpoint: expected host:port, got \"%s\"",
                 cfg->sluice_kms_kmip_endpoint);
        goto fail;
    }
    k->ctx = SSL_CTX_new(TLS_client_method());
    if (!k->ctx) {
        rc = SL_ENOMEM;
        goto fail;
    }
    SSL_CTX_set_min_proto_version(k->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(k->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(k->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_cipher_list(k->ctx, KMIP_CIPHERS) != 1) {
        snprintf(err, errlen, "kmip: cipher list refused by OpenSSL");
        goto fail;
    }
    /* The files are read now, so a wrong path fails the start naming its key rather than the
     * first KMS call; the server itself is only contacted on first use. */
    if (SSL_CTX_load_verify_locations(k->ctx, cfg->sluice_kms_kmip_ca_file, NULL) != 1) {
        snprintf(err, errlen, "sluice.kms.kmip.ca.file: cannot load CA certificates from %s",
                 cfg->sluice_kms_kmip_ca_file);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(k->ctx, cfg->sluice_kms_kmip_cert_file) != 1) {
        snprintf(err, errlen, "sluice.kms.kmip.cert.file: cannot load a PEM certificate from %s",
                 cfg->sluice_kms_kmip_cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(k->ctx, cfg->sluice_kms_kmip_key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "sluice.kms.kmip.key.file: cannot load a PEM private key from %s",
                 cfg->sluice_kms_kmip_key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(k->ctx) != 1) {
        snprintf(err, errlen,
                 "sluice.kms.kmip.key.file: the key does not match sluice.kms.kmip.cert.file");
        goto fail;
    }
    ERR_clear_error();
    *out = &k->base;
    return SL_OK;
fail:
    ERR_clear_error();
    kmip_free(&k->base);
    return rc;
}
