/* The kmip KMS provider without a KMIP server: configuration errors name their key, and a server
 * that is not there or never answers is SL_EKMS_UNAVAILABLE within sluice.kms.timeout.ms.
 *
 * kms_kmip_live talks to a real KMIP server when SLUICE_TEST_KMIP_ENDPOINT, _CA, _CERT and _KEY
 * are set: tests/interop/test_kms_kmip.py starts PyKMIP's server and runs this binary with them
 * (a standalone driver for the provider, before and besides the broker). Without them it does
 * nothing and says so on stdout; the interop test checks its "kmip live: ok" line. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "base/sl_time.h"
#include "crypto/sl_certgen.h"
#include "kms/sl_kms.h"
#include "sl_test.h"

/* A config for the kmip provider with certificates from sl_tls_bootstrap in a temp dir. */
static sl_config *kmip_cfg(char *dir, const char *endpoint, const char *timeout_ms) {
    snprintf(dir, 64, "/tmp/sl_kmip_XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char err[256], p[128];
    if (sl_tls_bootstrap(dir, err, sizeof err)) return NULL;
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    sl_config_set(c, "sluice.kms.provider", "kmip", err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.endpoint", endpoint, err, sizeof err);
    snprintf(p, sizeof p, "%s/ca.pem", dir);
    sl_config_set(c, "sluice.kms.kmip.ca.file", p, err, sizeof err);
    snprintf(p, sizeof p, "%s/broker.pem", dir);
    sl_config_set(c, "sluice.kms.kmip.cert.file", p, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.key.file", p, err, sizeof err);
    sl_config_set(c, "sluice.kms.timeout.ms", timeout_ms, err, sizeof err);
    return c;
}

static void rm_dir(const char *dir) {
    char p[128];
    static const char *files[] = {"ca.pem", "ca-key.pem", "broker.pem"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

SL_TEST(kms_kmip_config_errors_name_the_key) {
    char dir[64], err[256];
    sl_config *c = kmip_cfg(dir, "127.0.0.1:5696", "1000");
    CHECK(c);
    sl_kms *k = NULL;
    CHECK_EQ(sl_kms_open(c, &k, err, sizeof err), SL_OK);
    CHECK(k && !strcmp(k->ops->name, "kmip"));
    k->ops->free(k);

    sl_config bad = *c;
    bad.sluice_kms_kmip_endpoint[0] = 0;
    CHECK_EQ(sl_kms_open(&bad, &k, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.kmip.endpoint"));
    bad = *c;
    snprintf(bad.sluice_kms_kmip_endpoint, sizeof bad.sluice_kms_kmip_endpoint, "host:99999");
    CHECK_EQ(sl_kms_open(&bad, &k, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.kmip.endpoint"));
    bad = *c;
    snprintf(bad.sluice_kms_kmip_ca_file, sizeof bad.sluice_kms_kmip_ca_file, "%s/none.pem", dir);
    CHECK_EQ(sl_kms_open(&bad, &k, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.kmip.ca.file"));
    bad = *c;
    snprintf(bad.sluice_kms_kmip_key_file, sizeof bad.sluice_kms_kmip_key_file, "%s/ca-key.pem",
             dir); /* a key, but not the certificate's */
    CHECK_EQ(sl_kms_open(&bad, &k, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.kmip.key.file"));
    bad = *c;
    bad.sluice_kms_kmip_cert_file[0] = 0;
    CHECK_EQ(sl_kms_open(&bad, &k, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sluice.kms.kmip.cert.file"));
    rm_dir(dir);
    free(c);
}

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

SL_TEST(kms_kmip_unreachable_is_unavailable) {
    char dir[64], ep[64], err[256];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", closed_port());
    sl_config *c = kmip_cfg(dir, ep, "2000");
    CHECK(c);
    sl_kms *k = NULL;
    CHECK_EQ(sl_kms_open(c, &k, err, sizeof err), SL_OK);
    sl_kms_keyref kek = {.id = "1", .version = 1};
    uint8_t key[32] = {0}, out[SL_KMS_WRAPPED_MAX];
    size_t n = 0;
    sl_err e = k->ops->wrap(k, &kek, (const uint8_t *)"ctx", 3, key, 32, out, sizeof out, &n, err,
                            sizeof err);
    int ok = e == SL_EKMS_UNAVAILABLE && strstr(err, "cannot connect") != NULL;
    sl_kms_keyref made;
    e = k->ops->generate(k, 1, &made, err, sizeof err);
    ok = ok && e == SL_EKMS_UNAVAILABLE;
    k->ops->free(k);
    rm_dir(dir);
    free(c);
    CHECK(ok);
}

/* A server that accepts TCP (the kernel's backlog) but never speaks TLS: a stopped process. */
SL_TEST(kms_kmip_silent_server_times_out) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 4) == 0);
    getsockname(ls, (struct sockaddr *)&a, &al);
    char dir[64], ep[64], err[256];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", ntohs(a.sin_port));
    sl_config *c = kmip_cfg(dir, ep, "300");
    CHECK(c);
    sl_kms *k = NULL;
    CHECK_EQ(sl_kms_open(c, &k, err, sizeof err), SL_OK);
    sl_kms_keyref kek = {.id = "1", .version = 1};
    char desc[256];
    int64_t t0 = sl_mono_ms();
    sl_err e = k->ops->describe(k, &kek, desc, sizeof desc, err, sizeof err);
    int64_t took = sl_mono_ms() - t0;
    int ok = e == SL_EKMS_UNAVAILABLE && strstr(err, "timed out") && took >= 250 && took < 5000;
    if (!ok) fprintf(stderr, "  e=%s took=%lld err=%s\n", sl_errname(e), (long long)took, err);
    k->ops->free(k);
    close(ls);
    rm_dir(dir);
    free(c);
    CHECK(ok);
}

SL_TEST(kms_kmip_live) {
    const char *ep = getenv("SLUICE_TEST_KMIP_ENDPOINT"), *ca = getenv("SLUICE_TEST_KMIP_CA"),
               *cert = getenv("SLUICE_TEST_KMIP_CERT"), *key = getenv("SLUICE_TEST_KMIP_KEY");
    if (!ep || !ca || !cert || !key) {
        printf("kmip live: not run (SLUICE_TEST_KMIP_* unset; tests/interop/test_kms_kmip.py "
               "runs it)\n");
        return;
    }
    char err[256];
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    sl_config_set(c, "sluice.kms.provider", "kmip", err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.endpoint", ep, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.ca.file", ca, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.cert.file", cert, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.key.file", key, err, sizeof err);
    sl_kms *k = NULL;
    sl_err e = sl_kms_open(c, &k, err, sizeof err);
    free(c);
    if (e) fprintf(stderr, "  open: %s\n", err);
    CHECK_EQ(e, SL_OK);
#define LIVE(call, want)                                                                           \
    do {                                                                                           \
        sl_err got_ = (call);                                                                      \
        if (got_ != (want)) {                                                                      \
            fprintf(stderr, "  %s: %s (want %s): %s\n", #call, sl_errname(got_), sl_errname(want), \
                    err);                                                                          \
            k->ops->free(k);                                                                       \
            CHECK(0);                                                                              \
        }                                                                                          \
    } while (0)
    sl_kms_keyref kek, kek2;
    LIVE(k->ops->generate(k, 1, &kek, err, sizeof err), SL_OK);
    LIVE(k->ops->generate(k, 2, &kek2, err, sizeof err), SL_OK);
    CHECK(kek.version == 1 && kek.id[0] && strcmp(kek.id, kek2.id));
    char desc[256];
    LIVE(k->ops->describe(k, &kek, desc, sizeof desc, err, sizeof err), SL_OK);
    printf("kmip live: %s\n", desc);
    CHECK(strstr(desc, "state=Active") && strstr(desc, "algorithm=AES") &&
          strstr(desc, "length=256"));

    uint8_t tk[32], w1[SL_KMS_WRAPPED_MAX], w2[SL_KMS_WRAPPED_MAX], back[64];
    for (int i = 0; i < 32; i++) tk[i] = (uint8_t)(0xA0 + i);
    static const uint8_t ctx[] = "sluice|cluster|topic-1|v1";
    size_t n1 = 0, n2 = 0, nb = 0;
    LIVE(k->ops->wrap(k, &kek, ctx, sizeof ctx, tk, 32, w1, sizeof w1, &n1, err, sizeof err),
         SL_OK);
    LIVE(k->ops->wrap(k, &kek, ctx, sizeof ctx, tk, 32, w2, sizeof w2, &n2, err, sizeof err),
         SL_OK);
    CHECK_EQ(n1, 12 + 32 + 16);
    CHECK(memcmp(w1, w2, n1) != 0); /* fresh IV each time */
    CHECK(memmem(w1, n1, tk, 32) == NULL);
    LIVE(k->ops->unwrap(k, &kek, ctx, sizeof ctx, w1, n1, back, sizeof back, &nb, err, sizeof err),
         SL_OK);
    CHECK(nb == 32 && !memcmp(back, tk, 32));
    /* Another context, an edited byte in each part, another KEK: all fail authentication. */
    static const uint8_t other[] = "sluice|cluster|topic-2|v1";
    LIVE(k->ops->unwrap(k, &kek, other, sizeof other, w1, n1, back, sizeof back, &nb, err,
                        sizeof err),
         SL_ETAMPER);
    size_t spots[] = {0, 12, n1 - 1};
    for (size_t i = 0; i < 3; i++) {
        w1[spots[i]] ^= 1;
        LIVE(k->ops->unwrap(k, &kek, ctx, sizeof ctx, w1, n1, back, sizeof back, &nb, err,
                            sizeof err),
             SL_ETAMPER);
        w1[spots[i]] ^= 1;
    }
    LIVE(k->ops->unwrap(k, &kek2, ctx, sizeof ctx, w1, n1, back, sizeof back, &nb, err, sizeof err),
         SL_ETAMPER);
    LIVE(k->ops->unwrap(k, &kek, ctx, sizeof ctx, w1, 20, back, sizeof back, &nb, err, sizeof err),
         SL_ETAMPER);
    /* An unknown key is a refusal, not an outage. */
    sl_kms_keyref none = {.id = "no-such-key-4711", .version = 9};
    LIVE(k->ops->wrap(k, &none, ctx, sizeof ctx, tk, 32, w2, sizeof w2, &n2, err, sizeof err),
         SL_EKMS_DENIED);
    printf("kmip live: unknown key refused: %s\n", err);
    /* Retiring: the key is gone, and so is everything it wrapped. */
    LIVE(k->ops->destroy(k, &kek, err, sizeof err), SL_OK);
    LIVE(k->ops->unwrap(k, &kek, ctx, sizeof ctx, w1, n1, back, sizeof back, &nb, err, sizeof err),
         SL_EKMS_DENIED);
    LIVE(k->ops->wrap(k, &kek, ctx, sizeof ctx, tk, 32, w2, sizeof w2, &n2, err, sizeof err),
         SL_EKMS_DENIED);
    /* The kept connection survived all of the above; the other key still works. */
    LIVE(k->ops->wrap(k, &kek2, ctx, sizeof ctx, tk, 32, w2, sizeof w2, &n2, err, sizeof err),
         SL_OK);
    LIVE(k->ops->unwrap(k, &kek2, ctx, sizeof ctx, w2, n2, back, sizeof back, &nb, err, sizeof err),
         SL_OK);
    CHECK(nb == 32 && !memcmp(back, tk, 32));
    k->ops->free(k);
    printf("kmip live: ok\n");
#undef LIVE
}

/* An outage and its end, driven from here: SLUICE_TEST_KMIP_PID names the server's process group
 * (tests/interop/test_kms_kmip.py). SIGSTOP makes it a server that accepts but never answers. */
SL_TEST(kms_kmip_outage) {
    const char *ep = getenv("SLUICE_TEST_KMIP_ENDPOINT"), *ca = getenv("SLUICE_TEST_KMIP_CA"),
               *cert = getenv("SLUICE_TEST_KMIP_CERT"), *key = getenv("SLUICE_TEST_KMIP_KEY"),
               *pid_s = getenv("SLUICE_TEST_KMIP_PID");
    if (!ep || !ca || !cert || !key || !pid_s) {
        printf("kmip outage: not run (SLUICE_TEST_KMIP_* unset)\n");
        return;
    }
    pid_t pg = (pid_t)atoi(pid_s);
    CHECK(pg > 1);
    char err[256];
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    sl_config_set(c, "sluice.kms.provider", "kmip", err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.endpoint", ep, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.ca.file", ca, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.cert.file", cert, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.key.file", key, err, sizeof err);
    sl_config_set(c, "sluice.kms.timeout.ms", "1000", err, sizeof err);
    sl_kms *k = NULL;
    sl_err e = sl_kms_open(c, &k, err, sizeof err);
    free(c);
    CHECK_EQ(e, SL_OK);
    sl_kms_keyref kek;
    uint8_t tk[32] = {7}, w[SL_KMS_WRAPPED_MAX], back[64];
    static const uint8_t ctx[] = "sluice|outage|v1";
    size_t n = 0, nb = 0;
    int ok =
        k->ops->generate(k, 1, &kek, err, sizeof err) == SL_OK &&
        k->ops->wrap(k, &kek, ctx, sizeof ctx, tk, 32, w, sizeof w, &n, err, sizeof err) == SL_OK;
    if (!ok) fprintf(stderr, "  before the outage: %s\n", err);
    kill(-pg, SIGSTOP);
    /* The kept connection: the request goes out, no answer comes. */
    int64_t t0 = sl_mono_ms();
    e = k->ops->unwrap(k, &kek, ctx, sizeof ctx, w, n, back, sizeof back, &nb, err, sizeof err);
    int64_t took = sl_mono_ms() - t0;
    printf("kmip outage: stopped server, kept connection: %s after %lld ms: %s\n", sl_errname(e),
           (long long)took, err);
    ok = ok && e == SL_EKMS_UNAVAILABLE && took >= 900 && took < 5000;
    /* A new connection: TCP is accepted by the kernel, the handshake never completes. */
    t0 = sl_mono_ms();
    e = k->ops->unwrap(k, &kek, ctx, sizeof ctx, w, n, back, sizeof back, &nb, err, sizeof err);
    took = sl_mono_ms() - t0;
    printf("kmip outage: stopped server, new connection: %s after %lld ms: %s\n", sl_errname(e),
           (long long)took, err);
    ok = ok && e == SL_EKMS_UNAVAILABLE && strstr(err, "timed out") && took < 5000;
    kill(-pg, SIGCONT);
    /* Back: the same provider object reconnects on its own. */
    e = k->ops->unwrap(k, &kek, ctx, sizeof ctx, w, n, back, sizeof back, &nb, err, sizeof err);
    printf("kmip outage: resumed server: %s\n", sl_errname(e));
    ok = ok && e == SL_OK && nb == 32 && !memcmp(back, tk, 32);
    k->ops->free(k);
    CHECK(ok);
    printf("kmip outage: ok\n");
}

/* The server restarts between two calls (tests/interop/test_kms_kmip.py kills and starts it when
 * this prints "ready", then creates SLUICE_TEST_KMIP_RESTARTED): the kept connection is dead, and
 * the next call must notice before using it and succeed on a new one, with no error at all. */
SL_TEST(kms_kmip_restart) {
    const char *ep = getenv("SLUICE_TEST_KMIP_ENDPOINT"), *ca = getenv("SLUICE_TEST_KMIP_CA"),
               *cert = getenv("SLUICE_TEST_KMIP_CERT"), *key = getenv("SLUICE_TEST_KMIP_KEY"),
               *flag = getenv("SLUICE_TEST_KMIP_RESTARTED");
    if (!ep || !ca || !cert || !key || !flag) {
        printf("kmip restart: not run (SLUICE_TEST_KMIP_* unset)\n");
        return;
    }
    char err[256];
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    sl_config_set(c, "sluice.kms.provider", "kmip", err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.endpoint", ep, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.ca.file", ca, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.cert.file", cert, err, sizeof err);
    sl_config_set(c, "sluice.kms.kmip.key.file", key, err, sizeof err);
    sl_kms *k = NULL;
    sl_err e = sl_kms_open(c, &k, err, sizeof err);
    free(c);
    CHECK_EQ(e, SL_OK);
    sl_kms_keyref kek;
    uint8_t tk[32] = {9}, w[SL_KMS_WRAPPED_MAX], back[64];
    static const uint8_t ctx[] = "sluice|restart|v1";
    size_t n = 0, nb = 0;
    int ok =
        k->ops->generate(k, 1, &kek, err, sizeof err) == SL_OK &&
        k->ops->wrap(k, &kek, ctx, sizeof ctx, tk, 32, w, sizeof w, &n, err, sizeof err) == SL_OK;
    if (!ok) fprintf(stderr, "  before the restart: %s\n", err);
    printf("kmip restart: ready\n");
    fflush(stdout);
    int64_t deadline = sl_mono_ms() + 90000;
    while (access(flag, F_OK) != 0 && sl_mono_ms() < deadline) usleep(20000);
    ok = ok && access(flag, F_OK) == 0;
    e = k->ops->unwrap(k, &kek, ctx, sizeof ctx, w, n, back, sizeof back, &nb, err, sizeof err);
    printf("kmip restart: first call after the restart: %s %s\n", sl_errname(e), e ? err : "");
    ok = ok && e == SL_OK && nb == 32 && !memcmp(back, tk, 32);
    k->ops->free(k);
    CHECK(ok);
    printf("kmip restart: ok\n");
}
