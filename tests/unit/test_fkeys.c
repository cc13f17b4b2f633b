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

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_text.h"
#include "base/sl_time.h"
#include "keys_env.h"
#include "kms/sl_keysvc.h"
#include "protect/sl_fcrypt.h"
#include "protect/sl_fkeys.h"
#include "protect/sl_fkeys_store.h"
#include "sl_test.h"

#include <openssl/evp.h>

/* Polls `cond` for up to 5 s (a keyreader looks at the keyring file at most every 200 ms). */
#define FK_EVENTUALLY(cond)                                                                        \
    do {                                                                                           \
        int64_t fk_dl_ = sl_mono_ms() + 5000;                                                      \
        while (!(cond) && sl_mono_ms() < fk_dl_) usleep(5000);                                     \
        CHECK(cond);                                                                               \
    } while (0)

/* A field-key id as sl_fkeys_id makes them (byte 0 is 0xFF), without depending on it. */
static void fk_raw_id(uint8_t id[16], uint8_t tag) {
    memset(id, tag, 16);
    id[0] = 0xFF;
}

SL_TEST(fkeys_keysvc_key_get) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "";
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    uint8_t id[16], other[16], k1[32], k1b[32], k2[32];
    fk_raw_id(id, 1);
    fk_raw_id(other, 2);
    uint32_t v = 0, vs[8];
    CHECK(sl_keysvc_key_get(ks, id, 0, k1, &v) == SL_ENOTFOUND);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 0);
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k1, &v) == SL_OK);
    CHECK_EQ(v, 1);
    CHECK(sl_keysvc_key_get(ks, id, 2, k2, &v) == SL_ENOTFOUND);
    CHECK(sl_keysvc_key_get(ks, other, 0, k2, &v) == SL_ENOTFOUND);
    /* Topic keys and the system key are never handed out. */
    uint8_t topic[16] = {0x12, 0x34}, zero[16] = {0};
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, topic) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, topic, 0, k2, &v) == SL_ENOTFOUND);
    CHECK(sl_keysvc_key_get(ks, zero, 0, k2, &v) == SL_ENOTFOUND);
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
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
    CHECK(sl_t_keyop(ks, SL_KEYOP_SHRED, id) == SL_OK);
    CHECK(sl_keysvc_key_get(ks, id, 0, k1b, &v) == SL_EKEY_DESTROYED);
    CHECK(sl_keysvc_key_get(ks, id, 1, k1b, &v) == SL_EKEY_DESTROYED);
    CHECK_EQ(sl_keysvc_key_versions(ks, id, vs, 8), 0);
    sl_keysvc_close(ks);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(fkeys_keyreader) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "";
    sl_keyreader *r = NULL;
    /* No keyring yet: a clear error, nothing created. */
    CHECK(sl_keyreader_open(c, &r, err, sizeof err) == SL_ENOTFOUND && !r);
    CHECK(strstr(err, "no keyring") != NULL);
    sl_keysvc *ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, err, sizeof err) == SL_OK && ks);
    uint8_t id[16], ka[32], kb[32];
    fk_raw_id(id, 3);
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
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
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id) == SL_OK);
    FK_EVENTUALLY(sl_keyreader_get(r, id, 0, ka, &v, err, sizeof err) == SL_OK && v == 2);
    CHECK(sl_keysvc_key_get(ks, id, 2, kb, &v) == SL_OK);
    CHECK(!memcmp(ka, kb, 32));
    CHECK_EQ(sl_keyreader_versions(r, id, vs, 4), 2);
    CHECK(sl_keyreader_get(r, id, 1, ka, &v, err, sizeof err) == SL_OK);
    CHECK(sl_t_keyop(ks, SL_KEYOP_SHRED, id) == SL_OK);
    FK_EVENTUALLY(sl_keyreader_get(r, id, 1, ka, &v, err, sizeof err) == SL_EKEY_DESTROYED);
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
    sl_t_rm_rf(dir);
    free(dir);
}

/* ---- sl_fkeys ---- */

/* A key service over `c` with field keys "pan" and "_subjects" (version 1 each). */
static sl_keysvc *fk_service(const sl_config *c) {
    char err[256] = "";
    sl_keysvc *ks = NULL;
    if (sl_keysvc_open(c, NULL, &ks, err, sizeof err) || !ks) return NULL;
    uint8_t id[16];
    sl_fkeys_id("pan", id);
    if (sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id)) goto fail;
    sl_fkeys_id(SL_FKEYS_SUBJECTS, id);
    if (sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, id)) goto fail;
    return ks;
fail:
    sl_keysvc_close(ks);
    return NULL;
}

/* What a context does with its keys, to compare two contexts: a digest of a deterministic
 * (AES-SIV) ciphertext, which depends on the field key and on the subject's own key (a token
 * would not: tokens ignore the subject). */
static bool fk_mac(const sl_fc_key *k, uint8_t out[16]) {
    bool ok = false;
    sl_arena *a = sl_arena_new(4096);
    char *ct = NULL;
    size_t n = 0;
    uint8_t md[32];
    unsigned int ml = 0;
    if (a &&
        sl_fc_encrypt(k, SL_FC_SIV, SL_FC_T_STR, (const uint8_t *)"4111111111111111", 16, a, &ct,
                      &n) == SL_OK &&
        EVP_Digest(ct, n, md, &ml, EVP_sha256(), NULL) == 1) {
        memcpy(out, md, 16);
        ok = true;
    }
    sl_arena_free(a);
    return ok;
}

static void fk_store_path(const char *dir, char *out, size_t n) {
    snprintf(out, n, "%s/data/sluice-subject-keys", dir);
}

static long fk_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Reads up to cap bytes of fd from offset 0; returns how many. */
static size_t fk_read_fd(int fd, uint8_t *b, size_t cap) {
    ssize_t r = pread(fd, b, cap, 0);
    return r > 0 ? (size_t)r : 0;
}

static bool fk_contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(hay + i, needle, m)) return true;
    return false;
}

SL_TEST(fkeys_id) {
    uint8_t id[16], md[32];
    unsigned int ml = 0;
    sl_fkeys_id("pan", id);
    /* SHA-256("sluice/field-key/v1\0" || name), first 16 bytes, byte 0 = 0xFF. */
    const char in[] = "sluice/field-key/v1\0pan";
    CHECK(EVP_Digest(in, sizeof in - 1, md, &ml, EVP_sha256(), NULL) == 1);
    md[0] = 0xFF;
    CHECK(!memcmp(id, md, 16));
    CHECK(sl_fkeys_is_field_id(id));
    uint8_t other[16];
    sl_fkeys_id("pii", other);
    CHECK(memcmp(id, other, 16) != 0);
    uint8_t topic[16] = {0x12};
    CHECK(!sl_fkeys_is_field_id(topic));
}

SL_TEST(fkeys_field_keys) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "";
    sl_keysvc *ks = fk_service(c);
    CHECK(ks);
    sl_fkeys *fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    const sl_fc_key *k1 = NULL, *k1b = NULL, *k2 = NULL;
    uint32_t v = 0, vs[4];
    CHECK(sl_fkeys_exists(fk, "pan"));
    CHECK(!sl_fkeys_exists(fk, "nope"));
    CHECK(sl_fkeys_get(fk, "pan", 0, NULL, false, &k1, &v) == SL_OK && k1);
    CHECK_EQ(v, 1);
    CHECK(sl_fkeys_get(fk, "pan", 1, NULL, false, &k1b, &v) == SL_OK);
    CHECK(k1b == k1); /* cached */
    CHECK(sl_fkeys_get(fk, "pan", 2, NULL, false, &k2, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(fk, "nope", 0, NULL, false, &k2, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(fk, "bad name", 0, NULL, false, &k2, &v) == SL_ENOTFOUND);
    uint8_t m1[16], m2[16], m1b[16];
    CHECK(fk_mac(k1, m1));
    /* Rotation: version 2 is current, version 1 still works. */
    uint8_t pan[16];
    sl_fkeys_id("pan", pan);
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, pan) == SL_OK);
    CHECK(sl_fkeys_get(fk, "pan", 0, NULL, false, &k2, &v) == SL_OK);
    CHECK_EQ(v, 2);
    CHECK(fk_mac(k2, m2));
    CHECK(memcmp(m1, m2, 16) != 0);
    CHECK(sl_fkeys_get(fk, "pan", 1, NULL, false, &k1b, &v) == SL_OK);
    CHECK_EQ(v, 1);
    CHECK(fk_mac(k1b, m1b));
    CHECK(!memcmp(m1, m1b, 16));
    CHECK_EQ(sl_fkeys_versions(fk, "pan", vs, 4), 2);
    CHECK(vs[0] == 1 && vs[1] == 2);
    /* Evicted and made again: the same key. */
    sl_fkeys_tick(fk, sl_mono_ms() + 1000, 1);
    CHECK(sl_fkeys_get(fk, "pan", 1, NULL, false, &k1b, &v) == SL_OK);
    CHECK(fk_mac(k1b, m1b));
    CHECK(!memcmp(m1, m1b, 16));
    /* Shredded: refused at once, cached context or not. */
    CHECK(sl_t_keyop(ks, SL_KEYOP_SHRED, pan) == SL_OK);
    CHECK(sl_fkeys_get(fk, "pan", 1, NULL, false, &k1b, &v) == SL_EKEY_DESTROYED);
    CHECK(sl_fkeys_get(fk, "pan", 0, NULL, false, &k1b, &v) == SL_EKEY_DESTROYED);
    CHECK(!sl_fkeys_exists(fk, "pan"));
    sl_fkeys_close(fk);
    /* Encryption at rest off: only keyless rules work. */
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, NULL, &fk, err, sizeof err) == SL_OK && fk);
    CHECK(sl_fkeys_get(fk, "pan", 0, NULL, false, &k1b, &v) == SL_ENOTFOUND);
    sl_fkeys_close(fk);
    sl_keysvc_close(ks);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(fkeys_subjects_durable_and_forget) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "", path[600];
    fk_store_path(dir, path, sizeof path);
    sl_keysvc *ks = fk_service(c);
    CHECK(ks);
    sl_fkeys *fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    CHECK_EQ(fk_file_size(path), 8); /* created with its header */
    uint8_t sa[16], sb[16];
    memset(sa, 0xA1, 16);
    memset(sb, 0xB2, 16);
    const sl_fc_key *ka = NULL, *kb = NULL, *kx = NULL;
    uint32_t v = 0;
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &ka, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, true, &ka, &v) == SL_OK && ka);
    CHECK(sl_fkeys_get(fk, "pan", 0, sb, true, &kb, &v) == SL_OK && kb);
    CHECK_EQ(sl_fkeys_subjects(fk), 2);
    CHECK_EQ(fk_file_size(path), 8 + 2 * SL_FKEYS_REC);
    const sl_fc_key *ka2 = NULL, *knone = NULL;
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, true, &ka2, &v) == SL_OK && ka2 == ka);
    CHECK_EQ(sl_fkeys_subjects(fk), 2);
    CHECK_EQ(fk_file_size(path), 8 + 2 * SL_FKEYS_REC);
    uint8_t ma[16], mb[16], mnone[16], mx[16];
    CHECK(fk_mac(ka, ma));
    CHECK(fk_mac(kb, mb));
    CHECK(sl_fkeys_get(fk, "pan", 0, NULL, false, &knone, &v) == SL_OK);
    CHECK(fk_mac(knone, mnone));
    CHECK(memcmp(ma, mb, 16) != 0 && memcmp(ma, mnone, 16) != 0);
    /* The subject key itself, not a cached context: evicted, then unwrapped from the store. */
    sl_fkeys_tick(fk, sl_mono_ms() + 1000, 1);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(!memcmp(ma, mx, 16));
    CHECK(sl_fkeys_sync(fk) == SL_OK);
    sl_fkeys_close(fk);
    sl_keysvc_close(ks);

    /* Durable across a restart of both. */
    char e2[256];
    ks = NULL;
    CHECK(sl_keysvc_open(c, NULL, &ks, e2, sizeof e2) == SL_OK && ks);
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    CHECK_EQ(sl_fkeys_subjects(fk), 2);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(!memcmp(ma, mx, 16));

    /* Forget: the record's wrapped key is gone from the new file and zeroed in the old one. */
    uint8_t before[1024], after[1024], wrapped[SL_KWP_WRAPPED_32];
    int oldfd = open(path, O_RDONLY);
    CHECK(oldfd >= 0);
    size_t nb = fk_read_fd(oldfd, before, sizeof before);
    CHECK_EQ(nb, 8 + 2 * SL_FKEYS_REC);
    bool got = false;
    for (size_t off = 8; off + SL_FKEYS_REC <= nb; off += SL_FKEYS_REC)
        if (!memcmp(before + off, sa, 16)) {
            memcpy(wrapped, before + off + 20, sizeof wrapped);
            got = true;
        }
    CHECK(got);
    bool found = false;
    CHECK(sl_fkeys_forget(fk, sa, &found) == SL_OK && found);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &kx, &v) == SL_ENOTFOUND);
    CHECK_EQ(sl_fkeys_subjects(fk), 1);
    size_t na = fk_read_fd(oldfd, after, sizeof after);
    close(oldfd);
    CHECK(!fk_contains(after, na, wrapped, sizeof wrapped));
    int nfd = open(path, O_RDONLY);
    CHECK(nfd >= 0);
    na = fk_read_fd(nfd, after, sizeof after);
    close(nfd);
    CHECK_EQ(na, 8 + SL_FKEYS_REC);
    CHECK(!fk_contains(after, na, wrapped, sizeof wrapped));
    CHECK(!fk_contains(after, na, sa, 16));
    CHECK(fk_contains(after, na, sb, 16));
    CHECK(sl_fkeys_forget(fk, sa, &found) == SL_OK && !found);
    /* The other subject is untouched; the forgotten one, created again, has a new key. */
    CHECK(sl_fkeys_get(fk, "pan", 0, sb, false, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(!memcmp(mb, mx, 16));
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, true, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(memcmp(ma, mx, 16) != 0);
    sl_fkeys_close(fk);
    sl_keysvc_close(ks);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

static bool fk_append(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0) return false;
    bool ok = write(fd, p, n) == (ssize_t)n;
    close(fd);
    return ok;
}

SL_TEST(fkeys_torn_tail) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "", path[600];
    fk_store_path(dir, path, sizeof path);
    sl_keysvc *ks = fk_service(c);
    CHECK(ks);
    sl_fkeys *fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    uint8_t sa[16], sb[16], sc[16], ma[16], mb[16], mx[16];
    memset(sa, 0xA1, 16);
    memset(sb, 0xB2, 16);
    memset(sc, 0xC3, 16);
    const sl_fc_key *kx = NULL;
    uint32_t v = 0;
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, true, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, ma));
    sl_fkeys_close(fk);
    /* A crash in the middle of an append: part of a record. */
    uint8_t junk[100]; /* longer than a record: overwriting is not enough */
    memset(junk, 0x5A, sizeof junk);
    CHECK(fk_append(path, junk, sizeof junk));
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    CHECK_EQ(sl_fkeys_subjects(fk), 1);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(!memcmp(ma, mx, 16));
    CHECK(sl_fkeys_get(fk, "pan", 0, sb, true, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mb));
    CHECK_EQ(fk_file_size(path), 8 + 2 * SL_FKEYS_REC); /* the torn bytes were overwritten */
    sl_fkeys_close(fk);
    /* A whole record whose CRC does not match (a torn sector), last in the file. */
    uint8_t rec[SL_FKEYS_REC];
    memset(rec, 0, sizeof rec);
    memcpy(rec, sc, 16);
    rec[19] = 1;
    CHECK(fk_append(path, rec, sizeof rec));
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    CHECK_EQ(sl_fkeys_subjects(fk), 2);
    CHECK(sl_fkeys_get(fk, "pan", 0, sc, false, &kx, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(fk, "pan", 0, sc, true, &kx, &v) == SL_OK);
    CHECK_EQ(fk_file_size(path), 8 + 3 * SL_FKEYS_REC);
    sl_fkeys_close(fk);
    /* A damaged record in the middle costs that subject only. */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t x = 0;
    CHECK(pread(fd, &x, 1, 8 + 30) == 1);
    x ^= 0x40;
    CHECK(pwrite(fd, &x, 1, 8 + 30) == 1);
    close(fd);
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_OK && fk);
    CHECK_EQ(sl_fkeys_subjects(fk), 2);
    CHECK(sl_fkeys_get(fk, "pan", 0, sa, false, &kx, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(fk, "pan", 0, sb, false, &kx, &v) == SL_OK);
    CHECK(fk_mac(kx, mx));
    CHECK(!memcmp(mb, mx, 16));
    CHECK(sl_fkeys_get(fk, "pan", 0, sc, false, &kx, &v) == SL_OK);
    sl_fkeys_close(fk);
    /* Not a store at all: refused, not overwritten. */
    CHECK(truncate(path, 0) == 0);
    CHECK(fk_append(path, "NOTASTORE-------", 16));
    fk = NULL;
    CHECK(sl_fkeys_open_broker(c, ks, &fk, err, sizeof err) == SL_ECORRUPT && !fk);
    CHECK_EQ(fk_file_size(path), 16);
    sl_keysvc_close(ks);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

SL_TEST(fkeys_broker_and_direct) {
    char *dir = sl_t_tmpdir("sl_fkeys_");
    sl_config *c = sl_t_keys_cfg(dir);
    char err[256] = "", path[600];
    fk_store_path(dir, path, sizeof path);
    sl_keysvc *ks = fk_service(c);
    CHECK(ks);
    /* Direct mode before the store exists: opened; created by the first subject only. */
    sl_fkeys *d = NULL, *b = NULL;
    CHECK(sl_fkeys_open_direct(c, &d, err, sizeof err) == SL_OK && d);
    CHECK_EQ(fk_file_size(path), -1);
    const sl_fc_key *kd = NULL, *kb = NULL;
    uint32_t v = 0;
    uint8_t sx[16], sy[16], mx[16], my[16], m[16];
    memset(sx, 0x11, 16);
    memset(sy, 0x22, 16);
    CHECK(sl_fkeys_get(d, "pan", 0, sx, false, &kd, &v) == SL_ENOTFOUND);
    CHECK_EQ(fk_file_size(path), -1);
    CHECK(sl_fkeys_get(d, "pan", 0, NULL, false, &kd, &v) == SL_OK);
    CHECK(fk_mac(kd, m));
    CHECK(sl_fkeys_get(d, "pan", 0, sx, true, &kd, &v) == SL_OK);
    CHECK(fk_mac(kd, mx));
    CHECK_EQ(fk_file_size(path), 8 + SL_FKEYS_REC);
    CHECK(sl_fkeys_sync(d) == SL_OK);
    /* The broker's handle: same field key, and the subject the direct one made (read on miss). */
    CHECK(sl_fkeys_open_broker(c, ks, &b, err, sizeof err) == SL_OK && b);
    CHECK(sl_fkeys_get(b, "pan", 0, NULL, false, &kb, &v) == SL_OK);
    uint8_t mm[16];
    CHECK(fk_mac(kb, mm));
    CHECK(!memcmp(m, mm, 16));
    CHECK(sl_fkeys_get(b, "pan", 0, sx, false, &kb, &v) == SL_OK);
    CHECK(fk_mac(kb, mm));
    CHECK(!memcmp(mx, mm, 16));
    /* And the other way round, with both open. */
    CHECK(sl_fkeys_get(b, "pan", 0, sy, true, &kb, &v) == SL_OK);
    CHECK(fk_mac(kb, my));
    CHECK(sl_fkeys_get(d, "pan", 0, sy, false, &kd, &v) == SL_OK);
    CHECK(fk_mac(kd, mm));
    CHECK(!memcmp(my, mm, 16));
    CHECK_EQ(sl_fkeys_subjects(d), 2);
    /* A rotation made by the service reaches the direct handle (keyring reread). */
    uint8_t pan[16];
    sl_fkeys_id("pan", pan);
    CHECK(sl_t_keyop(ks, SL_KEYOP_TK_ROTATE, pan) == SL_OK);
    FK_EVENTUALLY(sl_fkeys_get(d, "pan", 0, NULL, false, &kd, &v) == SL_OK && v == 2);
    /* A forget by the broker: the direct handle follows the replaced store at its next tick. */
    bool found = false;
    CHECK(sl_fkeys_forget(b, sx, &found) == SL_OK && found);
    sl_fkeys_tick(d, sl_mono_ms(), 1000000);
    CHECK(sl_fkeys_get(d, "pan", 1, sx, false, &kd, &v) == SL_ENOTFOUND);
    CHECK(sl_fkeys_get(d, "pan", 1, sy, false, &kd, &v) == SL_OK);
    CHECK(fk_mac(kd, mm));
    CHECK(!memcmp(my, mm, 16));
    /* Appends after a replacement go to the new file, from either handle. */
    uint8_t sz[16];
    memset(sz, 0x33, 16);
    CHECK(sl_fkeys_get(d, "pan", 0, sz, true, &kd, &v) == SL_OK);
    CHECK(sl_fkeys_get(b, "pan", 0, sz, false, &kb, &v) == SL_OK);
    CHECK_EQ(fk_file_size(path), 8 + 2 * SL_FKEYS_REC);
    sl_fkeys_close(d);
    sl_fkeys_close(b);
    sl_keysvc_close(ks);
    free(c);
    sl_t_rm_rf(dir);
    free(dir);
}

/* The record decoder: good records in order, a bad one in the middle skipped, a torn tail not
 * consumed. */
static sl_err fk_count(void *ctx, const sl_fkeys_rec *r) {
    (void)r;
    ++*(int *)ctx;
    return SL_OK;
}

SL_TEST(fkeys_store_decode) {
    uint8_t buf[5 * SL_FKEYS_REC + 10];
    sl_fkeys_rec r = {.version = 1};
    for (int i = 0; i < 5; i++) {
        memset(r.id, i + 1, 16);
        sl_fkeys_rec_encode(&r, buf + i * SL_FKEYS_REC);
    }
    memset(buf + 5 * SL_FKEYS_REC, 0x77, 10);
    buf[SL_FKEYS_REC + 3] ^= 1;     /* record 1: bad, in the middle */
    buf[4 * SL_FKEYS_REC + 3] ^= 1; /* record 4: bad, last whole one */
    int n = 0, bad = 0;
    size_t used = 0;
    CHECK(sl_fkeys_store_decode(buf, sizeof buf, fk_count, &n, &used, &bad) == SL_OK);
    CHECK_EQ(n, 3);
    CHECK_EQ(bad, 1);
    CHECK_EQ(used, 4 * SL_FKEYS_REC);
    CHECK(sl_fkeys_store_decode(buf, 0, fk_count, &n, &used, &bad) == SL_OK && used == 0);
}
