/* TLS: principal mapping rules, ssl.* config validation, listener overrides, context building,
 * certificate bootstrap, and the transport's non-blocking handshake and I/O over a socketpair. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "crypto/sl_certgen.h"
#include "crypto/sl_principal.h"
#include "crypto/sl_tls_ctx.h"
#include "net/sl_loop.h"
#include "net/sl_tls.h"
#include "sl_test.h"

static bool map(const char *rules, const char *dn, char *out, size_t n) {
    sl_principal_rules *r = NULL;
    char err[256];
    if (sl_principal_rules_parse(rules, &r, err, sizeof err) != SL_OK) return false;
    bool ok = sl_principal_map(r, dn, out, n);
    sl_principal_rules_free(r);
    return ok;
}

SL_TEST(tls_principal_default_is_the_whole_dn) {
    char out[256];
    CHECK(map("DEFAULT", "CN=alice,OU=eng,O=acme", out, sizeof out));
    CHECK(strcmp(out, "CN=alice,OU=eng,O=acme") == 0);
    CHECK(map(NULL, "CN=bob", out, sizeof out)); /* unset: DEFAULT */
    CHECK(strcmp(out, "CN=bob") == 0);
    CHECK(!map("DEFAULT", "CN=alice,OU=eng,O=acme", out, 8)); /* does not fit: refused */
}

SL_TEST(tls_principal_kafka_rule_examples) {
    /* The examples of Kafka's documentation, one rule list. */
    const char *rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\n"
                        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\n"
                        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,\n"
                        "DEFAULT";
    char out[256];
    CHECK(map(rules, "CN=kafka-svc,OU=ServiceUsers,O=Unknown", out, sizeof out));
    CHECK(strcmp(out, "kafka-svc") == 0);
    CHECK(map(rules, "CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US", out,
              sizeof out));
    CHECK(strcmp(out, "duke@javasoft") == 0); /* /L */
    CHECK(map(rules, "O=x,cn=Mixed.Case1,OU=y", out, sizeof out));
    CHECK(strcmp(out, "MIXED.CASE1") == 0);       /* /U */
    CHECK(map(rules, "O=only", out, sizeof out)); /* nothing matched: DEFAULT */
    CHECK(strcmp(out, "O=only") == 0);
}

SL_TEST(tls_principal_rules_first_match_and_no_match) {
    char out[128];
    /* No DEFAULT and no match: refused (Kafka fails the authentication). */
    CHECK(!map("RULE:^CN=([a-z]+)$/$1/", "CN=alice,O=acme", out, sizeof out));
    CHECK(map("RULE:^CN=([a-z]+)$/$1/", "CN=alice", out, sizeof out));
    CHECK(strcmp(out, "alice") == 0);
    /* The pattern must match the whole DN, not a substring. */
    CHECK(!map("RULE:CN=alice/x/", "CN=alice,O=acme", out, sizeof out));
    /* First matching rule wins; escaped slash and literal text in the replacement. */
    CHECK(map("RULE:^CN=(.*),O=(.*)$/svc\\/$2-$1/,RULE:.*/never/", "CN=a,O=b", out, sizeof out));
    CHECK(strcmp(out, "svc/b-a") == 0);
    /* \d is Java; translated. */
    CHECK(map("RULE:^CN=user(\\d+)$/u$1/", "CN=user42", out, sizeof out));
    CHECK(strcmp(out, "u42") == 0);
    /* An empty result is no principal. */
    CHECK(!map("RULE:^CN=(.*)$/$2/", "CN=x", out, sizeof out));
}

SL_TEST(tls_principal_rules_syntax_errors_name_the_key) {
    const char *bad[] = {"RULE:^CN=(.*)$/$1", "RULE:^CN=(.*$/$1/", "FOO", "RULE:a/b/X",
                         "DEFAULT junk"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sl_principal_rules *r = NULL;
        char err[256] = "";
        CHECK(sl_principal_rules_parse(bad[i], &r, err, sizeof err) == SL_ECONFIG);
        CHECK(r == NULL);
        CHECK(strstr(err, "ssl.principal.mapping.rules") != NULL);
    }
}

SL_TEST(tls_config_validation_names_the_key) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(strcmp(c.ssl_client_auth, "none") == 0);
    CHECK(strcmp(c.ssl_enabled_protocols, "TLSv1.3,TLSv1.2") == 0);
    CHECK(sl_config_set(&c, "ssl.client.auth", "always", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.client.auth") != NULL);
    CHECK(sl_config_set(&c, "ssl.keystore.type", "JKS", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.keystore.type") != NULL);
    CHECK(sl_config_set(&c, "ssl.truststore.type", "PKCS12", err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.truststore.type") != NULL);
    CHECK(sl_config_set(&c, "ssl.keystore.type", "pem", err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "ssl.client.auth", "required", err, sizeof err) == SL_OK);
    /* Per-listener values are validated like global ones, and named as written. */
    CHECK(sl_config_set(&c, "listener.name.ssl.ssl.client.auth", "maybe", err, sizeof err) ==
          SL_ECONFIG);
    CHECK(strstr(err, "listener.name.ssl.ssl.client.auth") != NULL);
    CHECK(sl_config_set(&c, "listener.name.ssl.ssl.keystore.type", "JKS", err, sizeof err) ==
          SL_ECONFIG);
}

SL_TEST(tls_config_password_is_never_formatted) {
    sl_config c;
    char err[256] = "", buf[256] = "";
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "ssl.key.password", "s3cret", err, sizeof err) == SL_OK);
    int i = sl_config_key_index("ssl.key.password");
    CHECK(i >= 0);
    CHECK(!sl_config_format(&c, (size_t)i, buf, sizeof buf));
    CHECK(strstr(buf, "s3cret") == NULL);
    CHECK(sl_config_key_at((size_t)i)->sensitive);
    CHECK(strcmp(c.ssl_key_password, "s3cret") == 0);
}

SL_TEST(tls_config_listener_overrides_fall_back_to_global) {
    sl_config c;
    char err[256] = "";
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "ssl.client.auth", "requested", err, sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "listener.name.internal.ssl.client.auth", "required", err,
                        sizeof err) == SL_OK);
    CHECK(sl_config_set(&c, "listener.name.internal.scram-sha-256.sasl.enabled.mechanisms",
                        "SCRAM-SHA-256", err, sizeof err) == SL_OK);
    CHECK(strcmp(sl_config_listener_str(&c, "INTERNAL", "ssl.client.auth"), "required") == 0);
    CHECK(strcmp(sl_config_listener_str(&c, "EXTERNAL", "ssl.client.auth"), "requested") == 0);
    CHECK(strcmp(sl_config_listener_str(&c, "internal", "scram-sha-256.sasl.enabled.mechanisms"),
                 "SCRAM-SHA-256") == 0);
    CHECK(sl_config_listener_str(&c, "EXTERNAL", "ssl.keystore.location") == NULL);
    /* Setting it again replaces, not appends. */
    CHECK(sl_config_set(&c, "listener.name.internal.ssl.client.auth", "none", err, sizeof err) ==
          SL_OK);
    CHECK(strcmp(sl_config_listener_str(&c, "INTERNAL", "ssl.client.auth"), "none") == 0);
    CHECK_EQ(c.noverrides, 2);
    /* Unknown keys under the prefix are ignored like any unknown key. */
    CHECK(sl_config_set(&c, "listener.name.internal.no.such.key", "1", err, sizeof err) == SL_OK);
    CHECK_EQ(c.noverrides, 2);
}

/* ---- contexts from generated certificates ---- */

static char g_dir[64];

static const char *pki_dir(void) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/sl_tls_XXXXXX");
        if (!mkdtemp(g_dir)) return NULL;
        char err[256];
        if (sl_tls_bootstrap(g_dir, err, sizeof err) != SL_OK) {
            fprintf(stderr, "  bootstrap: %s\n", err);
            return NULL;
        }
    }
    return g_dir;
}

SL_TEST(tls_bootstrap_creates_private_files_once) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    char p[256];
    struct stat st, ks1, ks2, ca1, ca2;
    snprintf(p, sizeof p, "%s/ca-key.pem", d);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(p, sizeof p, "%s/broker.pem", d);
    CHECK(stat(p, &ks1) == 0 && (ks1.st_mode & 0777) == 0600);
    snprintf(p, sizeof p, "%s/ca.pem", d);
    CHECK(stat(p, &ca1) == 0);
    char err[256];
    CHECK(sl_tls_bootstrap(d, err, sizeof err) == SL_OK); /* idempotent: nothing rewritten */
    snprintf(p, sizeof p, "%s/broker.pem", d);
    CHECK(stat(p, &ks2) == 0 && ks1.st_ino == ks2.st_ino);
    CHECK(ks1.st_mtim.tv_sec == ks2.st_mtim.tv_sec && ks1.st_mtim.tv_nsec == ks2.st_mtim.tv_nsec);
    snprintf(p, sizeof p, "%s/ca.pem", d);
    CHECK(stat(p, &ca2) == 0 && ca1.st_ino == ca2.st_ino);
    /* The broker certificate chains to the CA and names localhost and 127.0.0.1. */
    snprintf(p, sizeof p, "%s/broker.pem", d);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL);
    X509 *leaf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(p, sizeof p, "%s/ca.pem", d);
    f = fopen(p, "r");
    CHECK(f != NULL);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(leaf && ca);
    CHECK(X509_verify(leaf, X509_get0_pubkey(ca)) == 1);
    CHECK(X509_check_host(leaf, "localhost", 0, 0, NULL) == 1);
    CHECK(X509_check_ip_asc(leaf, "127.0.0.1", 0) == 1);
    CHECK(X509_check_ca(ca) >= 1);
    X509_free(leaf);
    X509_free(ca);
}

SL_TEST(tls_ctx_build_errors_name_key_and_file) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    char ks[256], ts[256], err[512];
    snprintf(ks, sizeof ks, "%s/broker.pem", d);
    snprintf(ts, sizeof ts, "%s/ca.pem", d);
    SSL_CTX *ctx = NULL;
    sl_tls_opts o = {.keystore_location = ks};
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_OK);
    SSL_CTX_free(ctx);
    o.enabled_protocols = "TLSv1.3,SSLv3";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.enabled.protocols") && strstr(err, "SSLv3"));
    o.enabled_protocols = NULL;
    o.cipher_suites = "ECDHE-RSA-AES128-GCM-SHA256,NOT-A-CIPHER";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.cipher.suites") && strstr(err, "NOT-A-CIPHER"));
    o.cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_OK); /* IANA names accepted */
    SSL_CTX_free(ctx);
    o.cipher_suites = NULL;
    o.client_auth = SL_TLS_CLIENT_AUTH_REQUIRED;
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.truststore.location") != NULL);
    o.truststore_location = ts;
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_OK);
    SSL_CTX_free(ctx);
    o.keystore_location = ts; /* a certificate without its key */
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.keystore.location") && strstr(err, "private key"));
    o.keystore_location = "/nonexistent/broker.pem";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "/nonexistent/broker.pem") != NULL);
    CHECK(ctx == NULL);
}

SL_TEST(tls_encrypted_key_needs_the_password) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    EVP_PKEY *k = sl_cert_keygen();
    X509 *x = k ? sl_cert_issue(k, "enc", NULL, NULL, 1, false, "DNS:localhost") : NULL;
    CHECK(x != NULL);
    char p[256], err[512];
    snprintf(p, sizeof p, "%s/enc.pem", d);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    PEM_write_X509(f, x);
    PEM_write_PKCS8PrivateKey(f, k, EVP_aes_256_cbc(), "pw123", 5, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    SSL_CTX *ctx = NULL;
    sl_tls_opts o = {.keystore_location = p};
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "ssl.key.password") != NULL);
    CHECK(strstr(err, "pw123") == NULL);
    o.key_password = "wrong";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_ECONFIG);
    o.key_password = "pw123";
    CHECK(sl_tls_ctx_build(&o, &ctx, err, sizeof err) == SL_OK);
    SSL_CTX_free(ctx);
}

/* ---- the transport over a socketpair, both ends non-blocking ---- */

/* An SSL listener's endpoint over the test PKI's broker certificate, in *ep. */
static void test_endpoint(int *sl_failed_, sl_tls_endpoint **ep) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    sl_config c;
    char err[512], p[256];
    sl_config_defaults(&c);
    snprintf(p, sizeof p, "%s/broker.pem", d);
    CHECK(sl_config_set(&c, "ssl.keystore.location", p, err, sizeof err) == SL_OK);
    CHECK(sl_tls_endpoint_new(&c, "SSL", ep, err, sizeof err) == SL_OK);
}

SL_TEST(tls_transport_refuses_plaintext_bytes) {
    sl_tls_endpoint *ep = NULL;
    test_endpoint(sl_failed_, &ep);
    CHECK(ep != NULL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    sl_transport *t = sl_tls_transport_new(ep, sv[0], "test", "SSL");
    CHECK(t != NULL);
    /* A Kafka ApiVersions v0 request, in clear. */
    const unsigned char kreq[] = {0, 0, 0, 14, 0, 18, 0, 0, 0, 0, 0, 1, 0, 4, 't', 'e', 's', 't'};
    CHECK(write(sv[1], kreq, sizeof kreq) == (ssize_t)sizeof kreq);
    char buf[64];
    ssize_t n = t->vt->read(t, buf, sizeof buf);
    CHECK(n < 0 && errno != EAGAIN);
    CHECK(t->vt->read(t, buf, sizeof buf) < 0); /* stays failed */
    t->vt->close(t);
    close(sv[1]);
    sl_tls_endpoint_free(ep);
    ERR_clear_error();
}

SL_TEST(tls_endpoint_reload_keeps_old_context_on_bad_file) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    char src[256], ks[256], err[512];
    snprintf(src, sizeof src, "%s/broker.pem", d);
    snprintf(ks, sizeof ks, "%s/reload.pem", d);
    /* Copy the keystore so it can be damaged. */
    FILE *in = fopen(src, "r"), *out = fopen(ks, "w");
    CHECK(in && out);
    char b[8192];
    size_t n = fread(b, 1, sizeof b, in);
    CHECK(fwrite(b, 1, n, out) == n);
    fclose(in);
    fclose(out);
    sl_config c;
    sl_config_defaults(&c);
    CHECK(sl_config_set(&c, "ssl.keystore.location", ks, err, sizeof err) == SL_OK);
    sl_tls_endpoint *ep = NULL;
    CHECK(sl_tls_endpoint_new(&c, "SSL", &ep, err, sizeof err) == SL_OK);
    SSL_CTX *before = sl_tls_endpoint_ctx(ep);
    CHECK_EQ(sl_tls_endpoint_reload(ep, false), 0); /* nothing changed */
    out = fopen(ks, "w");
    CHECK(out != NULL);
    fputs("-----BEGIN CERTIFICATE-----\ngarbage\n", out);
    fclose(out);
    CHECK_EQ(sl_tls_endpoint_reload(ep, false), -1);
    CHECK(sl_tls_endpoint_ctx(ep) == before);
    CHECK_EQ(sl_tls_endpoint_reload(ep, false), 0); /* reported once, not every tick */
    out = fopen(ks, "w");
    CHECK(out != NULL);
    CHECK(fwrite(b, 1, n, out) == n);
    fclose(out);
    CHECK_EQ(sl_tls_endpoint_reload(ep, true), 1);
    CHECK(sl_tls_endpoint_ctx(ep) != NULL);
    sl_tls_endpoint_free(ep);
    ERR_clear_error();
}

/* ---- the write path: batched records, held ciphertext, answers SSL_read makes ---- */

typedef struct tpair {
    sl_tls_endpoint *ep;
    sl_transport *t; /* the server side, over sv[0] */
    SSL_CTX *cctx;
    SSL *cl; /* a plain OpenSSL client over sv[1] */
    int cfd;
} tpair;

/* A server transport and a client, handshake done. `bufsize` > 0 shrinks both sockets' buffers
 * so that writes fill them; `tls12` caps the client at TLS 1.2. */
static void tpair_open(int *sl_failed_, tpair *p, int bufsize, bool tls12) {
    memset(p, 0, sizeof *p);
    test_endpoint(sl_failed_, &p->ep);
    CHECK(p->ep != NULL);
    const char *d = pki_dir();
    char path[256];
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    if (bufsize > 0) {
        for (int i = 0; i < 2; i++) {
            CHECK(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize) == 0);
            CHECK(setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize) == 0);
        }
    }
    p->cfd = sv[1];
    p->t = sl_tls_transport_new(p->ep, sv[0], "test", "SSL");
    CHECK(p->t != NULL);
    p->cctx = SSL_CTX_new(TLS_client_method());
    snprintf(path, sizeof path, "%s/ca.pem", d);
    CHECK(SSL_CTX_load_verify_locations(p->cctx, path, NULL) == 1);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
    if (tls12) SSL_CTX_set_max_proto_version(p->cctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(p->cctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    p->cl = SSL_new(p->cctx);
    SSL_set_fd(p->cl, sv[1]);
    SSL_set_connect_state(p->cl);
    SSL_set1_host(p->cl, "localhost");
    bool done = false;
    char buf[64];
    for (int i = 0; i < 200 && !done; i++) {
        done = SSL_do_handshake(p->cl) == 1;
        ssize_t n = p->t->vt->read(p->t, buf, sizeof buf);
        CHECK(n < 0 && errno == EAGAIN);
        CHECK((p->t->vt->wants(p->t) & ~(uint32_t)(SL_EV_READ | SL_EV_WRITE)) == 0);
    }
    CHECK(done);
    /* The server's TLS 1.3 session tickets: read them now so later reads see only data. */
    (void)SSL_read(p->cl, buf, 0);
    ERR_clear_error();
}

static void tpair_close(tpair *p) {
    if (p->t) p->t->vt->close(p->t);
    SSL_free(p->cl);
    SSL_CTX_free(p->cctx);
    if (p->cfd > 0) close(p->cfd);
    sl_tls_endpoint_free(p->ep);
    ERR_clear_error();
}

/* The handshake driven in turn from both sides (tpair_open: the server side only ever says
 * EAGAIN, never blocks), then a request, a scattered answer and an orderly close. */
SL_TEST(tls_transport_handshake_and_io_without_blocking) {
    tpair pr;
    tpair_open(sl_failed_, &pr, 0, false);
    sl_transport *t = pr.t;
    SSL *cl = pr.cl;
    CHECK(t != NULL && cl != NULL);
    char buf[64];
    const char msg[] = "ApiVersions?";
    CHECK(SSL_write(cl, msg, sizeof msg) == (int)sizeof msg);
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++) n = t->vt->read(t, buf, sizeof buf);
    CHECK_EQ(n, (ssize_t)sizeof msg);
    CHECK(memcmp(buf, msg, sizeof msg) == 0);
    /* Scattered writes arrive whole and in order. */
    struct iovec iov[2] = {{(void *)"abc", 3}, {(void *)"defg", 4}};
    CHECK_EQ(t->vt->writev(t, iov, 2), 7);
    char rb[16] = "";
    int got = 0;
    for (int i = 0; i < 100 && got < 7; i++) {
        int r = SSL_read(cl, rb + got, (int)sizeof rb - 1 - got);
        if (r > 0) got += r;
    }
    CHECK_EQ(got, 7);
    CHECK(memcmp(rb, "abcdefg", 7) == 0);
    /* An orderly close from the client reads as end of stream. */
    SSL_shutdown(cl);
    n = -1;
    for (int i = 0; i < 100 && n < 0; i++) n = t->vt->read(t, buf, sizeof buf);
    CHECK_EQ(n, 0);
    tpair_close(&pr);
}

/* Reads up to `cap` bytes at the client without blocking; -1 on a TLS error. */
static long client_read(SSL *cl, unsigned char *dst, size_t cap) {
    size_t got = 0;
    while (got < cap) {
        size_t n = 0;
        if (SSL_read_ex(cl, dst + got, cap - got, &n) == 1) {
            got += n;
            continue;
        }
        int e = SSL_get_error(cl, 0);
        if (e == SSL_ERROR_WANT_READ) break;
        return -1;
    }
    return (long)got;
}

static void fill_pattern(unsigned char *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)((i * 131 + seed + (i >> 9)) & 0xff);
}

SL_TEST(tls_transport_sends_a_batch_of_records_at_once) {
    tpair p;
    tpair_open(sl_failed_, &p, 0, false);
    if (*sl_failed_) return;
    enum { LEN = 64 * 1024 };
    unsigned char *src = malloc(LEN), *dst = malloc(LEN);
    CHECK(src && dst);
    fill_pattern(src, LEN, 7);
    /* One iovec: four records, straight from the caller's memory, one send. */
    uint64_t s0 = sl_tls_transport_sends(p.t);
    struct iovec one = {src, LEN};
    CHECK_EQ(p.t->vt->writev(p.t, &one, 1), LEN);
    CHECK_EQ(sl_tls_transport_sends(p.t) - s0, 1);
    CHECK_EQ(client_read(p.cl, dst, LEN), LEN);
    CHECK(memcmp(src, dst, LEN) == 0);
    /* Many small iovecs (a header and 1000-byte pieces): records assembled, still one send. */
    struct iovec iov[80];
    int n = 0;
    iov[n++] = (struct iovec){src, 4};
    for (size_t off = 4; off < LEN; off += 1000)
        iov[n++] = (struct iovec){src + off, LEN - off < 1000 ? LEN - off : 1000};
    CHECK(n <= 80);
    s0 = sl_tls_transport_sends(p.t);
    CHECK_EQ(p.t->vt->writev(p.t, iov, n), LEN);
    CHECK_EQ(sl_tls_transport_sends(p.t) - s0, 1);
    memset(dst, 0, LEN);
    CHECK_EQ(client_read(p.cl, dst, LEN), LEN);
    CHECK(memcmp(src, dst, LEN) == 0);
    /* More than a batch: one send per batch, all in one call while the socket takes them. */
    struct iovec more[2] = {{src, LEN}, {src, 100}};
    s0 = sl_tls_transport_sends(p.t);
    CHECK_EQ(p.t->vt->writev(p.t, more, 2), LEN + 100);
    CHECK_EQ(sl_tls_transport_sends(p.t) - s0, 2);
    CHECK_EQ(client_read(p.cl, dst, LEN), LEN);
    CHECK_EQ(client_read(p.cl, dst, LEN), 100);
    CHECK(memcmp(src, dst, 100) == 0);
    free(src);
    free(dst);
    tpair_close(&p);
}

/* Writes `len` bytes the way the server's queue does (restarting at the first byte not reported
 * written, as one iovec or as `piece`-byte iovecs cut from fixed boundaries), to a client that
 * reads at most `chunk` bytes a round. */
static void pump_slow_reader(int *sl_failed_, tpair *p, size_t len, size_t piece, size_t chunk) {
    unsigned char *src = malloc(len), *dst = malloc(len);
    CHECK(src && dst);
    fill_pattern(src, len, (unsigned)piece);
    size_t done = 0, got = 0;
    int eagain = 0;
    for (int round = 0; round < 100000 && got < len; round++) {
        if (done < len) {
            struct iovec iov[64];
            int n = 0;
            if (!piece) {
                iov[n++] = (struct iovec){src + done, len - done};
            } else {
                for (size_t off = done; off < len && n < 64; n++) {
                    size_t end = (off / piece + 1) * piece;
                    if (end > len) end = len;
                    iov[n] = (struct iovec){src + off, end - off};
                    off = end;
                }
            }
            size_t asked = 0;
            for (int i = 0; i < n; i++) asked += iov[i].iov_len;
            ssize_t w = p->t->vt->writev(p->t, iov, n);
            if (w < 0) {
                CHECK(errno == EAGAIN);
                eagain++;
            } else {
                CHECK(w > 0 && (size_t)w <= asked);
                done += (size_t)w;
            }
        }
        size_t want = len - got < chunk ? len - got : chunk;
        long r = client_read(p->cl, dst + got, want);
        CHECK(r >= 0);
        got += (size_t)r;
    }
    CHECK_EQ(done, len);
    CHECK_EQ(got, len);
    CHECK(memcmp(src, dst, len) == 0);
    CHECK(eagain > 0); /* the socket did fill: held ciphertext was resumed */
    free(src);
    free(dst);
}

SL_TEST(tls_transport_resumes_held_records_for_a_slow_reader) {
    tpair p;
    tpair_open(sl_failed_, &p, 4096, false);
    if (*sl_failed_) return;
    pump_slow_reader(sl_failed_, &p, 1024 * 1024, 0, 3000);
    if (!*sl_failed_) pump_slow_reader(sl_failed_, &p, 1024 * 1024, 1000, 3000);
    if (!*sl_failed_) pump_slow_reader(sl_failed_, &p, 300 * 1024 + 17, 20000, 7000);
    tpair_close(&p);
}

static int client_inbound(const tpair *p) {
    int avail = -1;
    return ioctl(p->cfd, FIONREAD, &avail) == 0 ? avail : -1;
}

SL_TEST(tls_transport_answers_a_key_update) {
    tpair p;
    tpair_open(sl_failed_, &p, 0, false);
    if (*sl_failed_) return;
    CHECK(SSL_version(p.cl) == TLS1_3_VERSION);
    struct iovec iov = {(void *)"pong", 5};
    unsigned char rb[64];
    CHECK_EQ(p.t->vt->writev(p.t, &iov, 1), 5);
    int one_record = client_inbound(&p);
    CHECK(one_record > 5);
    CHECK_EQ(client_read(p.cl, rb, sizeof rb), 5);
    /* The client asks for an update while the server only reads. OpenSSL 3 answers with the
     * next record it writes, so the answer travels in the server's next batch. */
    CHECK(SSL_key_update(p.cl, SSL_KEY_UPDATE_REQUESTED) == 1);
    const char ping[] = "ping";
    CHECK(SSL_write(p.cl, ping, sizeof ping) == (int)sizeof ping); /* the update goes first */
    char buf[64];
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++) n = p.t->vt->read(p.t, buf, sizeof buf);
    CHECK_EQ(n, (ssize_t)sizeof ping);
    CHECK(memcmp(buf, ping, sizeof ping) == 0);
    CHECK_EQ(p.t->vt->wants(p.t) & SL_EV_WRITE, 0);
    CHECK_EQ(p.t->vt->writev(p.t, &iov, 1), 5);
    CHECK(client_inbound(&p) > one_record); /* the KeyUpdate, then the data */
    CHECK_EQ(client_read(p.cl, rb, sizeof rb), 5);
    CHECK(memcmp(rb, "pong", 5) == 0);
    /* Both directions keep working under the new keys. */
    for (int round = 0; round < 3; round++) {
        CHECK(SSL_write(p.cl, ping, sizeof ping) == (int)sizeof ping);
        n = -1;
        for (int i = 0; i < 100 && n < 0; i++) n = p.t->vt->read(p.t, buf, sizeof buf);
        CHECK_EQ(n, (ssize_t)sizeof ping);
        CHECK_EQ(p.t->vt->writev(p.t, &iov, 1), 5);
        CHECK_EQ(client_read(p.cl, rb, sizeof rb), 5);
        CHECK(memcmp(rb, "pong", 5) == 0);
    }
    tpair_close(&p);
}

SL_TEST(tls_transport_sends_what_a_read_makes_it_say) {
    /* TLS 1.2 renegotiation is refused with an alert written while the server only reads. */
    tpair p;
    tpair_open(sl_failed_, &p, 0, true);
    if (*sl_failed_) return;
    CHECK(SSL_version(p.cl) == TLS1_2_VERSION);
    CHECK(SSL_renegotiate(p.cl) == 1);
    (void)SSL_do_handshake(p.cl); /* sends a ClientHello, then waits */
    char buf[64];
    ssize_t n = p.t->vt->read(p.t, buf, sizeof buf);
    CHECK(n < 0);
    CHECK(client_inbound(&p) > 0);
    CHECK_EQ(p.t->vt->wants(p.t) & SL_EV_WRITE, 0);
    ERR_clear_error();
    int r = SSL_do_handshake(p.cl);
    CHECK(r <= 0);
    CHECK_EQ(ERR_GET_REASON(ERR_peek_error()), SSL_R_NO_RENEGOTIATION);
    ERR_clear_error();
    tpair_close(&p);
}

SL_TEST(tls_transport_close_sends_close_notify) {
    tpair p;
    tpair_open(sl_failed_, &p, 0, false);
    if (*sl_failed_) return;
    p.t->vt->close(p.t);
    p.t = NULL;
    unsigned char rb[16];
    int r = SSL_read(p.cl, rb, sizeof rb);
    CHECK(r <= 0);
    CHECK_EQ(SSL_get_error(p.cl, r), SSL_ERROR_ZERO_RETURN);
    tpair_close(&p);
}

SL_TEST(tls_transport_reports_a_partial_record) {
    tpair p;
    tpair_open(sl_failed_, &p, 0, false);
    if (*sl_failed_) return;
    CHECK(p.t->vt->partial != NULL);
    CHECK(!p.t->vt->partial(p.t));
    /* The client's record, captured instead of sent, then delivered in two halves. */
    BIO *mem = BIO_new(BIO_s_mem());
    CHECK(mem != NULL);
    SSL_set0_wbio(p.cl, mem);
    unsigned char msg[3000];
    fill_pattern(msg, sizeof msg, 3);
    CHECK(SSL_write(p.cl, msg, sizeof msg) == (int)sizeof msg);
    char *rec = NULL;
    long rl = BIO_get_mem_data(mem, &rec);
    CHECK(rl > 100);
    CHECK_EQ(write(p.cfd, rec, (size_t)rl / 2), rl / 2);
    unsigned char buf[4096];
    ssize_t n = p.t->vt->read(p.t, buf, sizeof buf);
    CHECK(n < 0 && errno == EAGAIN);
    CHECK(p.t->vt->partial(p.t));
    CHECK(!p.t->vt->pending(p.t)); /* nothing to read again until the peer sends */
    CHECK_EQ(write(p.cfd, rec + rl / 2, (size_t)(rl - rl / 2)), rl - rl / 2);
    n = p.t->vt->read(p.t, buf, sizeof buf);
    CHECK_EQ(n, (ssize_t)sizeof msg);
    CHECK(memcmp(buf, msg, sizeof msg) == 0);
    CHECK(!p.t->vt->partial(p.t));
    tpair_close(&p);
}
