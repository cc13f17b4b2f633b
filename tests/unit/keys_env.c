#include "keys_env.h"

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/sl_time.h"
#include "protect/sl_fkeys.h"

char *sl_t_tmpdir(const char *prefix) {
    char *t = malloc(96);
    if (!t) return NULL;
    snprintf(t, 96, "/tmp/%sXXXXXX", prefix);
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

void sl_t_rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

sl_config *sl_t_keys_cfg(const char *dir) {
    sl_config *c = calloc(1, sizeof *c);
    if (!c) abort();
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

typedef struct opres {
    volatile bool done;
    sl_err e;
} opres;

static void op_cb(void *ctx, sl_err e, const char *msg) {
    (void)msg;
    opres *r = ctx;
    r->e = e;
    r->done = true;
}

sl_err sl_t_keyop(sl_keysvc *ks, sl_keyop op, const uint8_t id[16]) {
    opres r = {0};
    sl_keysvc_op(ks, op, id, 0, "test", op_cb, &r);
    int64_t deadline = sl_mono_ms() + 10000;
    while (!r.done && sl_mono_ms() < deadline) {
        struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
        if (poll(&p, 1, 20) > 0) sl_keysvc_dispatch(ks);
    }
    return r.done ? r.e : SL_ETIMEOUT;
}

sl_err sl_t_field_key(sl_keysvc *ks, const char *name) {
    uint8_t id[16];
    sl_fkeys_id(name, id);
    return sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id);
}
