/* Several key services sharing one keyring file (docs/gateway.md, "Several gateways behind a load
 * balancer"): two services opened on the same configuration (same keyring file, same local master
 * key) stand for two gateways. A key or version one creates reaches the other on its next miss
 * (reread of the changed file), a first version created by both at once is one key, writes do
 * not drop each other's entries, and a damaged file on reread keeps the keys in memory. */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_text.h"
#include "base/sl_time.h"
#include "gateway/sl_gwcrypt.h"
#include "keys_env.h"
#include "kms/sl_keyring.h"
#include "kms/sl_keysvc.h"
#include "sl_test.h"

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

static void pump(sl_keysvc *ks, int ms) {
    struct pollfd p = {.fd = sl_keysvc_fd(ks), .events = POLLIN};
    if (poll(&p, 1, ms) > 0) sl_keysvc_dispatch(ks);
}

/* TK_ROTATE of `id` with `version` (1: first use), run to completion. */
static sl_err tk_op(sl_keysvc *ks, const uint8_t id[16], uint32_t version) {
    opres r = {0};
    sl_keysvc_op(ks, SL_KEYOP_TK_ROTATE, id, version, "test", op_cb, &r);
    int64_t deadline = sl_mono_ms() + 10000;
    while (!r.done && sl_mono_ms() < deadline) pump(ks, 20);
    return r.done ? r.e : SL_ETIMEOUT;
}

/* The loop asking for (id, v) until it is there (5 s deadline): a miss within 200 ms of the last
 * look at the file answers SL_ENOTFOUND without looking again. */
static sl_err get_soon(sl_keysvc *ks, const uint8_t id[16], uint32_t v, uint8_t out[32],
                       uint32_t *outv) {
    int64_t deadline = sl_mono_ms() + 5000;
    sl_err e;
    for (;;) {
        uint32_t got = 0;
        e = sl_keysvc_key_get(ks, id, v, out, &got);
        if (outv) *outv = got;
        if (e == SL_OK && (v || !outv || *outv)) break;
        if (e != SL_ENOTFOUND && e != SL_EKEY_UNAVAILABLE) break;
        if (sl_mono_ms() > deadline) break;
        pump(ks, 20);
    }
    return e;
}

static sl_keysvc *open_ks(const sl_config *c) {
    sl_keysvc *ks = NULL;
    char err[512];
    if (sl_keysvc_open(c, NULL, &ks, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  open: %s\n", err);
        return NULL;
    }
    return ks;
}

/* Gateway A creates key X (v1), B opens it; A rotates (v2), B opens v2 and seals with it (the
 * current version) without a restart; B's own write afterwards keeps A's versions in the file. */
SL_TEST(keysvc_shared_keyring_reread_on_miss) {
    char *dir = sl_t_tmpdir("sl_ksshare_");
    sl_config *c = sl_t_keys_cfg(dir);
    sl_keysvc *a = open_ks(c), *b = open_ks(c), *c3 = NULL;
    CHECK(a && b);
    uint8_t x[16], z[16], ka1[32], ka2[32], k[32];
    uint32_t v = 0, vs[8];
    sl_gwcrypt_key_id(sl_str_c("orders"), x);
    sl_gwcrypt_key_id(sl_str_c("payments"), z);
    CHECK(get_soon(b, x, 0, k, NULL) == SL_ENOTFOUND);
    CHECK(tk_op(a, x, 1) == SL_OK);
    CHECK(sl_keysvc_key_get(a, x, 1, ka1, &v) == SL_OK && v == 1);
    CHECK(get_soon(b, x, 1, k, &v) == SL_OK && v == 1);
    CHECK(!memcmp(k, ka1, 32));
    CHECK(tk_op(a, x, 0) == SL_OK); /* sluice keys rotate --topic on A */
    CHECK(sl_keysvc_key_get(a, x, 2, ka2, &v) == SL_OK && v == 2);
    CHECK(memcmp(ka1, ka2, 32));
    CHECK(get_soon(b, x, 2, k, &v) == SL_OK && v == 2);
    CHECK(!memcmp(k, ka2, 32));
    /* B's current version follows within the recheck interval (it seals with v2 from then). */
    int64_t deadline = sl_mono_ms() + 5000;
    do {
        pump(b, 20);
        CHECK(sl_keysvc_key_get(b, x, 0, k, &v) == SL_OK);
    } while (v != 2 && sl_mono_ms() < deadline);
    CHECK_EQ(v, 2);
    /* B writes (its own key): A's two versions of X stay in the file, B's Z joins them. */
    CHECK(tk_op(b, z, 1) == SL_OK);
    c3 = open_ks(c);
    CHECK(c3);
    CHECK_EQ(sl_keysvc_key_versions(c3, x, vs, 8), 2);
    CHECK(sl_keysvc_key_get(c3, x, 2, k, &v) == SL_OK && !memcmp(k, ka2, 32));
    CHECK_EQ(sl_keysvc_key_versions(c3, z, vs, 8), 1);
    /* ... and A, writing after B, keeps B's Z. */
    uint8_t w[16];
    sl_gwcrypt_key_id(sl_str_c("audit"), w);
    CHECK(tk_op(a, w, 1) == SL_OK);
    sl_keysvc_close(c3);
    c3 = open_ks(c);
    CHECK(c3);
    CHECK_EQ(sl_keysvc_key_versions(c3, z, vs, 8), 1);
    CHECK_EQ(sl_keysvc_key_versions(c3, x, vs, 8), 2);
    CHECK_EQ(sl_keysvc_key_versions(c3, w, vs, 8), 1);
    sl_keysvc_close(c3);
    sl_keysvc_close(a);
    sl_keysvc_close(b);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* Both gateways see a topic for the first time together and each asks for its first version:
 * one key results (the second creation finds the first under the file lock and uses it). */
SL_TEST(keysvc_shared_keyring_first_use_race) {
    char *dir = sl_t_tmpdir("sl_ksshare_");
    sl_config *c = sl_t_keys_cfg(dir);
    sl_keysvc *a = open_ks(c), *b = open_ks(c), *c3 = NULL;
    CHECK(a && b);
    for (int round = 0; round < 8; round++) {
        char name[32];
        snprintf(name, sizeof name, "topic-%d", round);
        uint8_t y[16], ka[32], kb[32], k[32];
        uint32_t va = 0, vb = 0, vs[8];
        sl_gwcrypt_key_id(sl_str_c(name), y);
        opres ra = {0}, rb = {0};
        sl_keysvc_op(a, SL_KEYOP_TK_ROTATE, y, 1, "first use", op_cb, &ra);
        sl_keysvc_op(b, SL_KEYOP_TK_ROTATE, y, 1, "first use", op_cb, &rb);
        int64_t deadline = sl_mono_ms() + 10000;
        while ((!ra.done || !rb.done) && sl_mono_ms() < deadline) {
            pump(a, 5);
            pump(b, 5);
        }
        CHECK(ra.done && rb.done && ra.e == SL_OK && rb.e == SL_OK);
        CHECK(sl_keysvc_key_get(a, y, 0, ka, &va) == SL_OK);
        CHECK(get_soon(b, y, 0, kb, &vb) == SL_OK);
        CHECK_EQ(va, 1);
        CHECK_EQ(vb, 1);
        CHECK(!memcmp(ka, kb, 32));
        CHECK_EQ(sl_keysvc_key_versions(a, y, vs, 8), 1);
        CHECK_EQ(sl_keysvc_key_versions(b, y, vs, 8), 1);
        c3 = open_ks(c);
        CHECK(c3);
        CHECK_EQ(sl_keysvc_key_versions(c3, y, vs, 8), 1);
        CHECK(sl_keysvc_key_get(c3, y, 1, k, NULL) == SL_OK && !memcmp(k, ka, 32));
        sl_keysvc_close(c3);
        c3 = NULL;
    }
    sl_keysvc_close(a);
    sl_keysvc_close(b);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* The shared file replaced by a torn copy (a non-atomic copy by configuration management): the
 * reread on a miss fails, is logged, and B keeps serving every key it had; its next write puts
 * a complete keyring back (with what it knows). */
SL_TEST(keysvc_shared_keyring_torn_file_keeps_keys) {
    char *dir = sl_t_tmpdir("sl_ksshare_");
    sl_config *c = sl_t_keys_cfg(dir);
    sl_keysvc *a = open_ks(c), *b = open_ks(c), *c3 = NULL;
    CHECK(a && b);
    uint8_t x[16], z[16], k1[32], k[32];
    uint32_t v = 0, vs[8];
    sl_gwcrypt_key_id(sl_str_c("orders"), x);
    sl_gwcrypt_key_id(sl_str_c("payments"), z);
    CHECK(tk_op(a, x, 1) == SL_OK);
    CHECK(get_soon(b, x, 1, k1, &v) == SL_OK && v == 1);
    char path[600], tmp[620];
    snprintf(path, sizeof path, "%s/data/sluice-keyring", dir);
    snprintf(tmp, sizeof tmp, "%s.torn", path);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 40);
    /* Half of the file, renamed over it (a new inode and size: the reread sees a change). */
    int in = open(path, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(in >= 0 && out >= 0);
    char buf[8192];
    ssize_t n =
        read(in, buf, (size_t)st.st_size / 2 < sizeof buf ? (size_t)st.st_size / 2 : sizeof buf);
    CHECK(n > 0 && write(out, buf, (size_t)n) == n);
    close(in);
    close(out);
    CHECK(rename(tmp, path) == 0);
    /* A version nobody has: B rereads, cannot decode, answers not found, keeps v1. */
    CHECK(get_soon(b, x, 2, k, NULL) == SL_ENOTFOUND);
    CHECK(sl_keysvc_key_get(b, x, 1, k, &v) == SL_OK && !memcmp(k, k1, 32));
    CHECK(get_soon(b, x, 0, k, &v) == SL_OK && v == 1);
    /* B's next write replaces the torn file with a whole keyring. */
    CHECK(tk_op(b, z, 1) == SL_OK);
    c3 = open_ks(c);
    CHECK(c3);
    CHECK_EQ(sl_keysvc_key_versions(c3, x, vs, 8), 1);
    CHECK(sl_keysvc_key_get(c3, x, 1, k, NULL) == SL_OK && !memcmp(k, k1, 32));
    CHECK_EQ(sl_keysvc_key_versions(c3, z, vs, 8), 1);
    sl_keysvc_close(c3);
    sl_keysvc_close(a);
    sl_keysvc_close(b);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* sl_keyring_merge on its own: what this process changed since base survives, the rest is the
 * file's (another process's rotation, retire and shred). */
SL_TEST(keyring_merge_three_way) {
    sl_keyring base = {0}, mem = {0}, file = {0}, out = {0};
    sl_kms_keyref k1 = {"local:1", 1}, k2 = {"local:2", 2}, k3 = {"local:3", 3};
    uint8_t t1[16] = {0xFE, 1}, t2[16] = {0xFE, 2}, t3[16] = {0xFE, 3};
    /* base: KEK 1, 2 (current 1); t1 v1; t2 v1 */
    sl_keyring *all[3] = {&base, &mem, &file};
    for (int i = 0; i < 3; i++) {
        sl_keyring *kr = all[i];
        CHECK(sl_keyring_kek_add(kr, &k1) && sl_keyring_kek_add(kr, &k2));
        kr->current = 1;
        sl_kr_tk *w = sl_keyring_tk_add(sl_keyring_topic_add(kr, t1));
        w->kek_version = 1, w->wlen = 1, w->wrapped[0] = 0x11;
        w = sl_keyring_tk_add(sl_keyring_topic_add(kr, t2));
        w->kek_version = 1, w->wlen = 1, w->wrapped[0] = 0x21;
    }
    /* here: t1 v2 created; KEK 2 retired */
    sl_kr_tk *w = sl_keyring_tk_add(sl_keyring_topic(&mem, t1));
    w->kek_version = 1, w->wlen = 1, w->wrapped[0] = 0x12;
    sl_keyring_kek_remove(&mem, 2);
    /* elsewhere: KEK 3 made current; t2 shredded; t3 v1 created */
    CHECK(sl_keyring_kek_add(&file, &k3));
    file.current = 3;
    sl_kr_topic *ft2 = sl_keyring_topic(&file, t2);
    free(ft2->tks);
    ft2->tks = NULL, ft2->ntks = 0, ft2->shredded = true;
    w = sl_keyring_tk_add(sl_keyring_topic_add(&file, t3));
    w->kek_version = 3, w->wlen = 1, w->wrapped[0] = 0x31;
    int conflicts = -1;
    CHECK(sl_keyring_merge(&mem, &base, &file, &out, &conflicts) == SL_OK);
    CHECK_EQ(conflicts, 0);
    CHECK_EQ(out.current, 3);
    CHECK(sl_keyring_kek(&out, 1) && !sl_keyring_kek(&out, 2) && sl_keyring_kek(&out, 3));
    sl_kr_topic *o1 = sl_keyring_topic(&out, t1), *o2 = sl_keyring_topic(&out, t2),
                *o3 = sl_keyring_topic(&out, t3);
    CHECK(o1 && o1->ntks == 2 && o1->tks[1].version == 2 && o1->tks[1].wrapped[0] == 0x12);
    CHECK(o2 && o2->shredded && o2->ntks == 0);
    CHECK(o3 && o3->ntks == 1 && o3->tks[0].wrapped[0] == 0x31);
    /* It encodes to a keyring that decodes. */
    uint8_t *b = NULL;
    size_t n = 0;
    sl_keyring again = {0};
    char why[160];
    CHECK(sl_keyring_encode(&out, &b, &n) == SL_OK);
    CHECK(sl_keyring_decode(b, n, &again, why, sizeof why) == SL_OK);
    free(b);
    sl_keyring_free(&again);
    sl_keyring_free(&out);
    /* Both made t3 v1 with different bytes: the file's stays, counted as a conflict. */
    w = sl_keyring_tk_add(sl_keyring_topic_add(&mem, t3));
    w->kek_version = 1, w->wlen = 1, w->wrapped[0] = 0x99;
    CHECK(sl_keyring_merge(&mem, &base, &file, &out, &conflicts) == SL_OK);
    CHECK_EQ(conflicts, 1);
    o3 = sl_keyring_topic(&out, t3);
    CHECK(o3 && o3->ntks == 1 && o3->tks[0].wrapped[0] == 0x31);
    sl_keyring_free(&out);
    sl_keyring_free(&base);
    sl_keyring_free(&mem);
    sl_keyring_free(&file);
}

static sl_err kek_op(sl_keysvc *ks, sl_keyop op, uint32_t version) {
    opres r = {0};
    sl_keysvc_op(ks, op, NULL, version, "test", op_cb, &r);
    int64_t deadline = sl_mono_ms() + 10000;
    while (!r.done && sl_mono_ms() < deadline) pump(ks, 20);
    return r.done ? r.e : SL_ETIMEOUT;
}

/* KEK rotation on one service (the local provider's KEK file is shared with the keyring): the
 * other unwraps keys wrapped under the new KEK version, and its own rotation later keeps the
 * first one's KEK version in the shared KEK file (a third service reads every key). */
SL_TEST(keysvc_shared_keyring_kek_rotation) {
    char *dir = sl_t_tmpdir("sl_ksshare_");
    sl_config *c = sl_t_keys_cfg(dir);
    sl_keysvc *a = open_ks(c), *b = open_ks(c), *c3 = NULL;
    CHECK(a && b);
    uint8_t x[16], z[16], kx[32], kz[32], k[32];
    uint32_t v = 0;
    sl_gwcrypt_key_id(sl_str_c("orders"), x);
    sl_gwcrypt_key_id(sl_str_c("payments"), z);
    CHECK(kek_op(a, SL_KEYOP_ROTATE, 0) == SL_OK); /* KEK v2, in A's provider only so far */
    CHECK(tk_op(a, x, 1) == SL_OK);                /* X v1 wrapped under KEK v2 */
    CHECK(sl_keysvc_key_get(a, x, 1, kx, &v) == SL_OK);
    /* B rotates before it ever needed KEK v2: v3, and A's v2 stays in the shared KEK file. */
    CHECK(kek_op(b, SL_KEYOP_ROTATE, 0) == SL_OK);
    CHECK(get_soon(b, x, 1, k, &v) == SL_OK && !memcmp(k, kx, 32));
    CHECK(tk_op(b, z, 1) == SL_OK);
    CHECK(sl_keysvc_key_get(b, z, 1, kz, &v) == SL_OK);
    CHECK(get_soon(a, z, 1, k, &v) == SL_OK && !memcmp(k, kz, 32));
    CHECK(kek_op(a, SL_KEYOP_REWRAP, 0) == SL_OK); /* X moves to KEK v3 */
    c3 = open_ks(c);
    CHECK(c3);
    CHECK(sl_keysvc_key_get(c3, x, 1, k, &v) == SL_OK && !memcmp(k, kx, 32));
    CHECK(sl_keysvc_key_get(c3, z, 1, k, &v) == SL_OK && !memcmp(k, kz, 32));
    sl_text st = {0};
    sl_keysvc_status_json(c3, &st);
    CHECK(st.p && strstr(st.p, "\"current_kek_version\":3"));
    sl_text_free(&st);
    sl_keysvc_close(c3);
    sl_keysvc_close(a);
    sl_keysvc_close(b);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}
