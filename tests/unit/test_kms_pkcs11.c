/* The pkcs11 KMS provider against a real SoftHSM2 token each test creates in a temp directory
 * (SOFTHSM2_CONF names a private softhsm2.conf; softhsm2-util initialises the token): the KEK is
 * non-extractable (asked of the module directly), wrap/unwrap round trips under GCM and under
 * the RFC 5649 fallback, a wrong context or an edited byte is SL_ETAMPER, describe and destroy,
 * configuration errors name their key, and an outage (the p11-kit server in front of the token
 * killed, then restarted) is SL_EKMS_UNAVAILABLE and then heals in the same process. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "kms/sl_kms.h"
#include "kms/sl_kms_pkcs11.h"
#include "sl_test.h"

#include <p11-kit-1/p11-kit/pkcs11.h> /* last: it defines lower-case compatibility macros */

extern char **environ;

#define SOFTHSM    "/usr/lib/softhsm/libsofthsm2.so"
#define P11_CLIENT "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
#define PIN        "1234"

typedef struct tok {
    char dir[128];
    char conf[192];
    char pin[192];
    char label[33];
} tok;

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
}

static bool write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(s, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Runs argv[0] (from PATH) with stdout/stderr to /dev/null; true when it exits 0. */
static bool run_quiet(char *const argv[]) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return false;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* A fresh token labelled `label` in its own directory; SOFTHSM2_CONF points at it (the module
 * reads it at C_Initialize, which the provider does on its first call). */
static bool tok_make(tok *t, const char *label) {
    snprintf(t->dir, sizeof t->dir, "/tmp/sl_p11_XXXXXX");
    if (!mkdtemp(t->dir)) return false;
    snprintf(t->label, sizeof t->label, "%s", label);
    char tokens[192], conf[512];
    snprintf(tokens, sizeof tokens, "%s/tokens", t->dir);
    if (mkdir(tokens, 0700)) return false;
    snprintf(t->conf, sizeof t->conf, "%s/softhsm2.conf", t->dir);
    snprintf(conf, sizeof conf,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    snprintf(t->pin, sizeof t->pin, "%s/pin", t->dir);
    if (!write_file(t->conf, conf) || !write_file(t->pin, PIN "\n")) return false;
    setenv("SOFTHSM2_CONF", t->conf, 1);
    char *argv[] = {"softhsm2-util", "--init-token", "--free", "--label", t->label,
                    "--so-pin",      "0000",         "--pin",  PIN,       NULL};
    return run_quiet(argv);
}

static void cfg_for(sl_config *c, const tok *t, const char *module) {
    sl_config_defaults(c);
    char err[256];
    sl_config_set(c, "sluice.kms.provider", "pkcs11", err, sizeof err);
    sl_config_set(c, "sluice.kms.pkcs11.module", module, err, sizeof err);
    sl_config_set(c, "sluice.kms.pkcs11.token.label", t->label, err, sizeof err);
    sl_config_set(c, "sluice.kms.pkcs11.pin.file", t->pin, err, sizeof err);
}

/* Reads CKA_VALUE of the secret key labelled `label` through the module itself, in a session of
 * the test's own: the answer is the module's, not the provider's. Returns the CK_RV. Leaves the
 * module initialised (the provider's C_Finalize ends it). */
static CK_RV read_key_value(const char *module, const char *token, const char *label) {
    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!dl) return CKR_GENERAL_ERROR;
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    CK_FUNCTION_LIST *f = NULL;
    CK_RV rv = gfl ? gfl(&f) : CKR_GENERAL_ERROR;
    if (rv == CKR_OK) rv = f->C_Initialize(NULL);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) rv = CKR_OK;
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16;
    if (rv == CKR_OK) rv = f->C_GetSlotList(CK_TRUE, slots, &n);
    CK_SLOT_ID slot = 0;
    bool found = false;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && !memcmp(ti.label, token, strlen(token)) &&
            ti.label[strlen(token)] == ' ') {
            slot = slots[i];
            found = true;
        }
    }
    if (rv == CKR_OK && !found) rv = CKR_TOKEN_NOT_PRESENT;
    CK_SESSION_HANDLE s = 0;
    if (rv == CKR_OK) rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK) {
        CK_RV lr = f->C_Login(s, CKU_USER, (CK_UTF8CHAR *)PIN, strlen(PIN));
        if (lr != CKR_OK && lr != CKR_USER_ALREADY_LOGGED_IN) rv = lr;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h;
    CK_ULONG nh = 0;
    if (rv == CKR_OK) rv = f->C_FindObjectsInit(s, t, 2);
    if (rv == CKR_OK) {
        rv = f->C_FindObjects(s, &h, 1, &nh);
        f->C_FindObjectsFinal(s);
    }
    if (rv == CKR_OK && nh != 1) rv = CKR_KEY_HANDLE_INVALID;
    if (rv == CKR_OK) {
        uint8_t v[64];
        CK_ATTRIBUTE a = {CKA_VALUE, v, sizeof v};
        rv = f->C_GetAttributeValue(s, h, &a, 1);
    }
    if (s) f->C_CloseSession(s);
    dlclose(dl);
    return rv;
}

static const uint8_t k_ctx[] = "topic=orders;tk=1";
static const uint8_t k_ctx2[] = "topic=other;tk=1";

/* Round trip, tamper and context checks on `k` with KEK `ref`; *failed set by CHECK. */
static void roundtrip(int *sl_failed_, sl_kms *k, const sl_kms_keyref *ref, uint8_t want_fmt) {
    uint8_t tk[32], w[SL_KMS_WRAPPED_MAX], w2[SL_KMS_WRAPPED_MAX], out[64];
    for (size_t i = 0; i < sizeof tk; i++) tk[i] = (uint8_t)(i * 7 + 1);
    char err[256] = "";
    size_t wl = 0, wl2 = 0, ol = 0;
    sl_err e =
        k->ops->wrap(k, ref, k_ctx, sizeof k_ctx, tk, sizeof tk, w, sizeof w, &wl, err, sizeof err);
    if (e) fprintf(stderr, "  wrap: %s\n", err);
    CHECK_EQ(e, SL_OK);
    CHECK_EQ(w[0], want_fmt);
    CHECK(wl > sizeof tk && !memmem(w, wl, tk, sizeof tk));
    CHECK_EQ(
        k->ops->unwrap(k, ref, k_ctx, sizeof k_ctx, w, wl, out, sizeof out, &ol, err, sizeof err),
        SL_OK);
    CHECK_EQ(ol, sizeof tk);
    CHECK(!memcmp(out, tk, sizeof tk));
    /* A second wrap of the same key differs under GCM (fresh IV) and still unwraps. */
    CHECK_EQ(k->ops->wrap(k, ref, k_ctx, sizeof k_ctx, tk, sizeof tk, w2, sizeof w2, &wl2, err,
                          sizeof err),
             SL_OK);
    if (want_fmt == 0x01) CHECK(memcmp(w, w2, wl));
    /* Another context (the wrapped key moved to another topic): integrity failure. */
    CHECK_EQ(
        k->ops->unwrap(k, ref, k_ctx2, sizeof k_ctx2, w, wl, out, sizeof out, &ol, err, sizeof err),
        SL_ETAMPER);
    CHECK_EQ(k->ops->unwrap(k, ref, NULL, 0, w, wl, out, sizeof out, &ol, err, sizeof err),
             SL_ETAMPER);
    /* Every byte flipped in turn, and truncations. */
    for (size_t i = 0; i < wl; i++) {
        memcpy(w2, w, wl);
        w2[i] ^= 0x40;
        e = k->ops->unwrap(k, ref, k_ctx, sizeof k_ctx, w2, wl, out, sizeof out, &ol, err,
                           sizeof err);
        if (e != SL_ETAMPER) fprintf(stderr, "  byte %zu: %d %s\n", i, (int)e, err);
        CHECK_EQ(e, SL_ETAMPER);
    }
    for (size_t n = 0; n < wl; n += 7)
        CHECK_EQ(k->ops->unwrap(k, ref, k_ctx, sizeof k_ctx, w, n, out, sizeof out, &ol, err,
                                sizeof err),
                 SL_ETAMPER);
    /* After all that the session still works. */
    CHECK_EQ(
        k->ops->unwrap(k, ref, k_ctx, sizeof k_ctx, w, wl, out, sizeof out, &ol, err, sizeof err),
        SL_OK);
    CHECK(!memcmp(out, tk, sizeof tk));
}

static void lifecycle(int *sl_failed_, bool kwp) {
    tok t;
    CHECK(tok_make(&t, kwp ? "sl-kwp" : "sl-gcm"));
    sl_config c;
    cfg_for(&c, &t, SOFTHSM);
    sl_kms *k = NULL;
    char err[256] = "";
    sl_err e = sl_kms_open(&c, &k, err, sizeof err);
    if (e) fprintf(stderr, "  open: %s\n", err);
    CHECK_EQ(e, SL_OK);
    CHECK(!strcmp(k->ops->name, "pkcs11"));
    sl_kms_pkcs11_force_kwp(k, kwp);
    sl_kms_keyref r1, again, r2;
    e = k->ops->generate(k, 1, &r1, err, sizeof err);
    if (e) fprintf(stderr, "  generate: %s\n", err);
    CHECK_EQ(e, SL_OK);
    CHECK(!strcmp(r1.id, "sluice-kek-v1"));
    CHECK_EQ(r1.version, 1);
    /* The key is on the token and the module itself refuses to reveal it. */
    CHECK_EQ(read_key_value(SOFTHSM, t.label, "sluice-kek-v1"), CKR_ATTRIBUTE_SENSITIVE);
    /* Generating the same version again reuses it (a retried rotate makes no second key). */
    CHECK_EQ(k->ops->generate(k, 1, &again, err, sizeof err), SL_OK);
    CHECK(!strcmp(again.id, r1.id));
    CHECK_EQ(k->ops->generate(k, 2, &r2, err, sizeof err), SL_OK);
    CHECK(!strcmp(r2.id, "sluice-kek-v2"));

    roundtrip(sl_failed_, k, &r1, kwp ? 0x02 : 0x01);
    if (*sl_failed_) return;

    /* A topic key wrapped under v1 does not unwrap as if it were under v2. */
    uint8_t tk[32] = {1, 2, 3}, w[SL_KMS_WRAPPED_MAX], out[64];
    size_t wl = 0, ol = 0;
    CHECK_EQ(
        k->ops->wrap(k, &r1, k_ctx, sizeof k_ctx, tk, sizeof tk, w, sizeof w, &wl, err, sizeof err),
        SL_OK);
    CHECK_EQ(
        k->ops->unwrap(k, &r2, k_ctx, sizeof k_ctx, w, wl, out, sizeof out, &ol, err, sizeof err),
        SL_ETAMPER);

    char d[512] = "";
    CHECK_EQ(k->ops->describe(k, &r1, d, sizeof d, err, sizeof err), SL_OK);
    CHECK(strstr(d, "sluice-kek-v1") && strstr(d, "AES-256"));
    CHECK(strstr(d, "extractable=false") && strstr(d, "sensitive=true"));
    CHECK(strstr(d, kwp ? "CKM_AES_KEY_WRAP_PAD" : "CKM_AES_GCM"));

    /* Destroyed: gone from the token, unknown to every call, destroy again is a no-op. */
    CHECK_EQ(k->ops->destroy(k, &r1, err, sizeof err), SL_OK);
    CHECK_EQ(read_key_value(SOFTHSM, t.label, "sluice-kek-v1"), CKR_KEY_HANDLE_INVALID);
    CHECK_EQ(
        k->ops->unwrap(k, &r1, k_ctx, sizeof k_ctx, w, wl, out, sizeof out, &ol, err, sizeof err),
        SL_EKMS_DENIED);
    CHECK_EQ(k->ops->describe(k, &r1, d, sizeof d, err, sizeof err), SL_EKMS_DENIED);
    CHECK_EQ(k->ops->destroy(k, &r1, err, sizeof err), SL_OK);
    /* v2 is untouched. */
    CHECK_EQ(k->ops->describe(k, &r2, d, sizeof d, err, sizeof err), SL_OK);
    k->ops->free(k);
    rm_rf(t.dir);
}

SL_TEST(kms_pkcs11_gcm_lifecycle) { lifecycle(sl_failed_, false); }
SL_TEST(kms_pkcs11_kwp_lifecycle) { lifecycle(sl_failed_, true); }
