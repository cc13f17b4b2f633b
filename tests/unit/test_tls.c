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

SL_TEST(tls_transport_handshake_and_io_without_blocking) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    sl_config c;
    char err[512], p[256];
    sl_config_defaults(&c);
    snprintf(p, sizeof p, "%s/broker.pem", d);
    CHECK(sl_config_set(&c, "ssl.keystore.location", p, err, sizeof err) == SL_OK);
    sl_tls_endpoint *ep = NULL;
    CHECK(sl_tls_endpoint_new(&c, "SSL", &ep, err, sizeof err) == SL_OK);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    sl_transport *t = sl_tls_transport_new(ep, sv[0], "test", "SSL");
    CHECK(t != NULL);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    snprintf(p, sizeof p, "%s/ca.pem", d);
    CHECK(SSL_CTX_load_verify_locations(cctx, p, NULL) == 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    SSL *cl = SSL_new(cctx);
    SSL_set_fd(cl, sv[1]);
    SSL_set_connect_state(cl);
    SSL_set1_host(cl, "localhost");
    /* Drive both sides in turn; the server side must only ever say EAGAIN, never block. */
    char buf[64];
    bool client_done = false;
    for (int i = 0; i < 100 && !client_done; i++) {
        int r = SSL_do_handshake(cl);
        client_done = r == 1;
        ssize_t n = t->vt->read(t, buf, sizeof buf);
        CHECK(n < 0 && errno == EAGAIN);
        CHECK((t->vt->wants(t) & ~(uint32_t)(SL_EV_READ | SL_EV_WRITE)) == 0);
    }
    CHECK(client_done);
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
    t->vt->close(t);
    SSL_free(cl);
    SSL_CTX_free(cctx);
    close(sv[1]);
    sl_tls_endpoint_free(ep);
}

SL_TEST(tls_transport_refuses_plaintext_bytes) {
    const char *d = pki_dir();
    CHECK(d != NULL);
    sl_config c;
    char err[512], p[256];
    sl_config_defaults(&c);
    snprintf(p, sizeof p, "%s/broker.pem", d);
    CHECK(sl_config_set(&c, "ssl.keystore.location", p, err, sizeof err) == SL_OK);
    sl_tls_endpoint *ep = NULL;
    CHECK(sl_tls_endpoint_new(&c, "SSL", &ep, err, sizeof err) == SL_OK);
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
