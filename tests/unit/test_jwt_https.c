/* JWKS over HTTPS: an in-process TLS server (its own test CA, certificate for IP 127.0.0.1)
 * serves the key set; the validator must verify the chain and the name, pick up a rotated key
 * after an unknown kid, and refuse an untrusted CA, a wrong name and an oversized body. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_https.h"
#include "auth/sl_jwt.h"
#include "base/sl_time.h"
#include "sl_test.h"
#include "test_jwt_util.h"

#define ISS "https://idp.test/"

static void add_ext(X509 *x, X509 *issuer, int nid, const char *v) {
    X509V3_CTX c;
    X509V3_set_ctx_nodb(&c);
    X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* issuer NULL: self-signed CA. */
static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn,
                       const char *san) {
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    add_ext(x, issuer ? issuer : x, NID_basic_constraints,
            issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
    add_ext(x, issuer ? issuer : x, NID_key_usage,
            issuer ? "critical,digitalSignature" : "critical,keyCertSign,cRLSign");
    add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
    if (san) add_ext(x, issuer, NID_subject_alt_name, san);
    X509_sign(x, signer, EVP_sha256());
    return x;
}

typedef struct srv {
    int lfd, port;
    SSL_CTX *ctx;
    pthread_mutex_t mu;
    char *body; /* guarded by mu */
    bool chunked;
    atomic_bool stop;
    atomic_int hits;
    pthread_t th;
} srv;

static void serve_one(srv *s, int fd) {
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(s->ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        char req[8192];
        int n = 0, r;
        while (n < (int)sizeof req - 1 &&
               (r = SSL_read(ssl, req + n, (int)sizeof req - 1 - n)) > 0) {
            n += r;
            req[n] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        pthread_mutex_lock(&s->mu);
        size_t bl = strlen(s->body);
        char *resp = malloc(bl + 512);
        int hl;
        if (s->chunked) {
            /* Two chunks, to exercise the de-chunker. */
            size_t h = bl / 2;
            hl = sprintf(resp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n", h);
            memcpy(resp + hl, s->body, h);
            hl += (int)h;
            hl += sprintf(resp + hl, "\r\n%zx\r\n", bl - h);
            memcpy(resp + hl, s->body + h, bl - h);
            hl += (int)(bl - h);
            hl += sprintf(resp + hl, "\r\n0\r\n\r\n");
        } else {
            hl = sprintf(resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", bl);
            memcpy(resp + hl, s->body, bl);
            hl += (int)bl;
        }
        pthread_mutex_unlock(&s->mu);
        SSL_write(ssl, resp, hl);
        free(resp);
        SSL_shutdown(ssl);
        atomic_fetch_add(&s->hits, 1);
    }
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
}

static void *srv_main(void *arg) {
    srv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue; /* wakes to notice stop */
        int fd = accept(s->lfd, NULL, NULL);
        if (fd >= 0) serve_one(s, fd);
    }
    return NULL;
}

static void srv_set_body(srv *s, const char *keys, bool chunked) {
    char *b = malloc(strlen(keys) + 32);
    sprintf(b, "{\"keys\":[%s]}", keys);
    pthread_mutex_lock(&s->mu);
    free(s->body);
    s->body = b;
    s->chunked = chunked;
    pthread_mutex_unlock(&s->mu);
}

/* Writes ca.pem (the CA that signed the server) and other.pem (an unrelated CA) into dir. */
static bool srv_start(srv *s, const char *dir) {
    memset(s, 0, sizeof *s);
    EVP_PKEY *cak = tj_ec_key(2), *sk = tj_ec_key(3), *ok = tj_ec_key(1);
    X509 *ca = make_cert(cak, cak, NULL, "sluice test CA", NULL);
    X509 *leaf = make_cert(sk, cak, ca, "jwks server", "IP:127.0.0.1");
    X509 *other = make_cert(ok, ok, NULL, "other CA", NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, ca);
    fclose(f);
    snprintf(path, sizeof path, "%s/other.pem", dir);
    f = fopen(path, "w");
    PEM_write_X509(f, other);
    fclose(f);
    s->ctx = SSL_CTX_new(TLS_server_method());
    bool ok_ =
        SSL_CTX_use_certificate(s->ctx, leaf) == 1 && SSL_CTX_use_PrivateKey(s->ctx, sk) == 1;
    X509_free(ca);
    X509_free(leaf);
    X509_free(other);
    if (!ok_) return false;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 16) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al))
        return false;
    s->port = ntohs(a.sin_port);
    pthread_mutex_init(&s->mu, NULL);
    srv_set_body(s, "", false);
    return pthread_create(&s->th, NULL, srv_main, s) == 0;
}

static void srv_stop(srv *s) {
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
    free(s->body);
    pthread_mutex_destroy(&s->mu);
}

static void cleanup_dir(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/ca.pem", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/other.pem", dir);
    unlink(p);
    rmdir(dir);
}

static void cfg_for(sl_jwt_config *c, const char *host, int port, const char *dir, const char *ca) {
    sl_jwt_config_defaults(c);
    snprintf(c->jwks_url, sizeof c->jwks_url, "https://%s:%d/keys/jwks.json", host, port);
    snprintf(c->jwks_truststore, sizeof c->jwks_truststore, "%s/%s", dir, ca);
    snprintf(c->expected_issuer, sizeof c->expected_issuer, ISS);
    snprintf(c->expected_audience, sizeof c->expected_audience, "kafka");
    c->min_refetch_ms = 0;
    c->fetch_timeout_ms = 5000;
}

static sl_err validate(sl_jwt_validator *v, char *tok, char *p, char *why) {
    int64_t exp;
    sl_err e = sl_jwt_validate(v, tok, strlen(tok), sl_wall_ms(), p, 256, &exp, why, 128);
    free(tok);
    return e;
}

static const char *claims(const char *sub) {
    static char b[512];
    snprintf(b, sizeof b, "{\"iss\":\"" ISS "\",\"aud\":[\"kafka\"],\"sub\":\"%s\",\"exp\":%lld}",
             sub, (long long)(sl_wall_ms() / 1000 + 300));
    return b;
}

SL_TEST(jwt_https_jwks_rotation) {
    char dir[512], err[256], p[256], why[128];
    snprintf(dir, sizeof dir, "%s", tj_tmpdir());
    srv s;
    CHECK(srv_start(&s, dir));
    char keys[8192] = "";
    tj_jwk(tj_rsa_key(0), "h1", NULL, keys, sizeof keys);
    srv_set_body(&s, keys, false);
    sl_jwt_config c;
    cfg_for(&c, "127.0.0.1", s.port, dir, "ca.pem");
    sl_jwt_validator *v = sl_jwt_validator_new(&c, err, sizeof err);
    if (!v) fprintf(stderr, "  %s\n", err);
    CHECK(v != NULL);
    CHECK_EQ(validate(v, tj_sign(tj_rsa_key(0), "RS256", "h1", claims("dave")), p, why), SL_OK);
    CHECK(!strcmp(p, "dave"));
    /* The IdP rotates to an EC key, served chunked this time. */
    keys[0] = 0;
    tj_jwk(tj_ec_key(0), "h2", "ES256", keys, sizeof keys);
    srv_set_body(&s, keys, true);
    uint64_t g = sl_jwt_validator_generation(v);
    CHECK_EQ(validate(v, tj_sign(tj_ec_key(0), "ES256", "h2", claims("erin")), p, why), SL_EAUTH);
    CHECK(strstr(why, "unknown kid") != NULL);
    int64_t deadline = sl_mono_ms() + 10000;
    while (sl_jwt_validator_generation(v) == g && sl_mono_ms() < deadline) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    CHECK(sl_jwt_validator_generation(v) > g);
    CHECK_EQ(validate(v, tj_sign(tj_ec_key(0), "ES256", "h2", claims("erin")), p, why), SL_OK);
    CHECK(!strcmp(p, "erin"));
    CHECK(atomic_load(&s.hits) >= 2);
    sl_jwt_validator_free(v);

    /* Untrusted CA, and a name the certificate does not carry. */
    cfg_for(&c, "127.0.0.1", s.port, dir, "other.pem");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);
    CHECK(strstr(err, "not trusted") != NULL);
    cfg_for(&c, "localhost", s.port, dir, "ca.pem");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);
    CHECK(strstr(err, "jwks.endpoint.url") != NULL);
    /* Size cap */
    char *body = NULL;
    size_t bl = 0;
    char ca[600], url[128];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", s.port);
    CHECK_EQ(sl_https_get(url, ca, 5000, 16, &body, &bl, err, sizeof err), SL_ETOOLARGE);
    CHECK(body == NULL);
    CHECK_EQ(sl_https_get("http://127.0.0.1/", NULL, 5000, 16, &body, &bl, err, sizeof err),
             SL_ECONFIG);
    CHECK_EQ(sl_https_get("https://user@127.0.0.1/", NULL, 5000, 16, &body, &bl, err, sizeof err),
             SL_ECONFIG);
    srv_stop(&s);
    cleanup_dir(dir);
}
