/* Field keys and subject keys: the key service's field-key access (sl_keysvc_key_get, its cache
 * and the local provider's load before returning), sl_keyreader over the same keyring, and
 * sl_fkeys (protect/sl_fkeys.h) in broker and direct mode over one subject store. Each test runs
 * over the real local provider in its own mkdtemp directory. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "base/sl_text.h"
#include "base/sl_time.h"
#include "kms/sl_keysvc.h"
#include "sl_test.h"

static char *fk_tmpdir(void) {
    char *t = malloc(64);
    snprintf(t, 64, "/tmp/sl_fkeys_XXXXXX");
    return mkdtemp(t);
}

static void fk_rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* Encryption on, the local provider, data in <dir>/data and secrets in <dir>/secrets. */
static sl_config *fk_cfg(const char *dir) {
    sl_config *c = calloc(1, sizeof *c);
    sl_config_defaults(c);
    char p[512], err[256];
    snprintf(p, sizeof p, "%s/data", dir);
    mkdir(p, 0700);
    if (sl_config_set(c, "log.dirs", p, err, sizeof err)) abort();
    snprintf(p, sizeof p, "%s/secrets", dir);
    if (sl_config_set(c, "sluice.secrets.dir", p, err, sizeof err)) abort();
    if (sl_config_set(c, "sluice.encryption.enable", "true", err, sizeof err)) abort();
    if (sl_config_set(c, "sluice.kms.provider", "local", err, sizeof err)) abort();
    if (sl_config_set(c, "sluice.kms.local.master.key.env", "SLUICE_TEST_NO_SUCH_VAR", err,
                      sizeof err))
        abort();
    return c;
}

typedef struct fk_op {
    volatile bool done;
    sl_err e;
} fk_op;

static void fk_op_cb(void *ctx, sl_err e, const char *msg) {
    (void)msg;
    fk_op *r = ctx;
    r->e = e;
    r->done = true;
}

/* Runs a lifecycle op and dispatches completions until its callback ran (10 s deadline). */
static sl_err fk_run_op(sl_keysvc *ks, sl_keyop op, const uint8_t id[16]) {
    fk_op r = {0};
    sl_keysvc_op(ks, op, id, 0, "test", fk_op_cb, &r);
    int64_t deadline = sl_mono_ms() + 10000;
    while (!r.done && sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        if (poll(&p, 1, 20) > 0) sl_keysvc_dispatch(ks);
    }
    return r.done ? r.e : SL_ETIMEOUT;
}

/* A field-key id as sl_fkeys_id makes them (byte 0 is 0xFF), without depending on it. */
static void fk_raw_id(uint8_t id[16], uint8_t tag) {
    memset(id, tag, 16);
    id[0] = 0xFF;
}

SL_TEST(fkeys_keysvc_key_get) {
    char *dir = fk_tmpdir();
    sl_config *c = fk_cfg(dir);
    char err[256] = "";
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    uint8_t id[16], other[16], k1[32], k1b[32], k2[32];
    fk_raw_id(id, 1);
    fk_raw_id(other, 2);
    uint32_t v = 0, vs[8];
    CHECK(sl_keysvc_key_get(ks, id, 0, k1, &v) == SL_ENOTFOUND);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 0);
    CHECK(fk_run_op(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k1, &v) == SL_OK);
    CHECK_EQ(v, 1);
    CHECK(sl_keysvc_key_get(ks, id, 2, k2, &v) == SL_ENOTFOUND);
    CHECK(sl_keysvc_key_get(ks, other, 0, k2, &v) == SL_ENOTFOUND);
    /* Topic keys and the system key are never handed out. */
    uint8_t topic[16] = {0x12, 0x34}, zero[16] = {0};
    CHECK(fk_run_op(ks, SL_KEYOP_TK_ROTATE, topic) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, topic, 0, k2, &v) == SL_ENOTFOUND);
    CHECK(sl_keysvc_key_get(ks, zero, 0, k2, &v) == SL_ENOTFOUND);
    CHECK(fk_run_op(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k2, &v) == SL_OK);
    CHECK_EQ(v, 2);
    CHECK(memcmp(k1, k2, 32) != 0);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 2);
    CHECK(vs[0] == 1 && vs[1] == 2);
    /* Status marks it as a field key, so nobody reports it as a lost topic. */
    sl_text st = {0};
    sl_keysvc_status_json(ks, &st);
    char hex[33];
    sl_uuid_hex(id, hex);
    char *at = st.p ? strstr(st.p, hex) : NULL;
    CHECK(at && !strncmp(at + 32, "\",\"system\":false,\"field\":true", 29));
    sl_uuid_hex(topic, hex);
    at = strstr(st.p, hex);
    CHECK(at && !strncmp(at + 32, "\",\"system\":false,\"field\":false", 30));
    sl_text_free(&st);
    sl_keysvc_close(ks);

    /* A fresh service loads only current versions at start; version 1 is loaded on the miss and,
     * the provider being local, before key_get returns (no dispatch in between). */
    ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    CHECK(sl_keysvc_key_get(ks, id, 1, k1b, &v) == SL_OK);
    CHECK_EQ(v, 1);
    CHECK(!memcmp(k1, k1b, 32));
    /* Evicted, then loaded again the same way. */
    sl_keysvc_tick(ks, sl_mono_ms() + 100000000);
    CHECK(sl_keysvc_key_get(ks, id, 0, k1b, &v) == SL_OK);
    CHECK(v == 2 && !memcmp(k2, k1b, 32));
    /* Shredded: refused at once, and no versions. */
    CHECK(fk_run_op(ks, SL_KEYOP_SHRED, id) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k1b, &v) == SL_EKEY_DESTROYED);
    CHECK(sl_keysvc_key_get(ks, id, 1, k1b, &v) == SL_EKEY_DESTROYED);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 0);
    sl_keysvc_close(ks);
    free(c);
    fk_rm_rf(dir);
    free(dir);
}

SL_TEST(fkeys_keyreader) {
    char *dir = fk_tmpdir();
    sl_config *c = fk_cfg(dir);
    char err[256] = "";
    sl_keyreader *r = NULL;
    /* No keyring yet: a clear error, nothing created. */
    CHECK(sl_keyreader_open(c, &r, err, sizeof err) == SL_ENOTFOUND && !r);
    CHECK(strstr(err, "no keyring") != NULL);
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    uint8_t id[16], ka[32], kb[32];
    fk_raw_id(id, 3);
    CHECK(fk_run_op(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    CHECK(sl_keyreader_open(c, &r, err, sizeof err) == SL_OK && r);
    uint32_t v = 0, vs[4];
    CHECK(sl_keyreader_get(r, id, 0, ka, &v, err, sizeof err) == SL_OK);
    CHECK_EQ(v, 1);
    CHECK(sl_keysvc_key_get(ks, id, 0, kb, &v) == SL_OK);
    CHECK(!memcmp(ka, kb, 32));
    CHECK(sl_keyreader_get(r, id, 2, ka, &v, err, sizeof err) == SL_ENOTFOUND);
    uint8_t zero[16] = {0};
    CHECK(sl_keyreader_get(r, zero, 0, ka, &v, err, sizeof err) == SL_ENOTFOUND);
    /* A rotation by the service: the reader sees the rewritten file. */
    CHECK(fk_run_op(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    CHECK(sl_keyreader_get(r, id, 0, ka, &v, err, sizeof err) == SL_OK);
    CHECK_EQ(v, 2);
    CHECK(sl_keysvc_key_get(ks, id, 2, kb, &v) == SL_OK);
    CHECK(!memcmp(ka, kb, 32));
    CHECK_EQ(sl_keyreader_versions(r, id, vs, 4), 2);
    CHECK(sl_keyreader_get(r, id, 1, ka, &v, err, sizeof err) == SL_OK);
    CHECK(fk_run_op(ks, SL_KEYOP_SHRED, id) == SL_OK);
    CHECK(sl_keyreader_get(r, id, 1, ka, &v, err, sizeof err) == SL_EKEY_DESTROYED);
    CHECK_EQ(sl_keyreader_versions(r, id, vs, 4), 0);
    /* The reader never writes the keyring. */
    sl_keysvc_close(ks);
    char path[600];
    snprintf(path, sizeof path, "%s/data/sluice-keyring", dir);
    struct stat st0, st1;
    CHECK(stat(path, &st0) == 0);
    uint8_t id2[16];
    fk_raw_id(id2, 4);
    CHECK(sl_keyreader_get(r, id2, 0, ka, &v, err, sizeof err) == SL_ENOTFOUND);
    CHECK_EQ(sl_keyreader_versions(r, id2, vs, 4), 0);
    CHECK(stat(path, &st1) == 0);
    CHECK(st1.st_ino == st0.st_ino && st1.st_size == st0.st_size &&
          st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec && st1.st_mtim.tv_sec == st0.st_mtim.tv_sec);
    sl_keyreader_close(r);
    free(c);
    fk_rm_rf(dir);
    free(dir);
}
