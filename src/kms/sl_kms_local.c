/* The local provider (docs/encryption-at-rest.md, "Local provider"): KEKs are random 32-byte
 * keys kept in <keyring>.local-keks, each wrapped (RFC 5649 under HKDF) by a master key that
 * lives outside the data directory: a systemd credential, an environment variable, or a file
 * beside log.dirs (created on first start). A stolen data directory thus holds only wrapped
 * KEKs; whoever also has the master key has everything, which is why it is not in there.
 *
 * KEK file format (big-endian): magic "SLKEKS01" | u32 count | count x { u32 version |
 * i64 created_ms | u8 wlen (40) | wrapped KEK } | HMAC-SHA-256 over everything before it, keyed by
 * HKDF(master, "sluice/local-keks/mac/v1"). The MAC says early and clearly when the master key
 * is not the one the file was written with. Unwrapped KEKs exist only for the length of a call. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_secmem.h"
#include "kms/sl_keyring.h"
#include "kms/sl_kms.h"

#define KEKS_MAGIC "SLKEKS01"
#define MAX_KEKS   4096

typedef struct local_kek {
    uint32_t version;
    int64_t created_ms;
    uint8_t wrapped[SL_KWP_WRAPPED_32];
} local_kek;

typedef struct local_kms {
    sl_kms base;
    uint8_t *master;                        /* a secmem slot */
    char source[4400];                      /* where the master key came from (no key material) */
    char dir[4200], name[4200], path[4200]; /* the KEK file */
    local_kek *keks;
    int nkeks;
} local_kms;

static void kek_context(uint32_t version, uint8_t out[32], size_t *n) {
    *n = (size_t)snprintf((char *)out, 32, "sluice/local-kek/v1|%u", version);
}

static sl_err mac_of(const local_kms *l, const uint8_t *p, size_t n, uint8_t out[32]) {
    static const char info[] = "sluice/local-keks/mac/v1";
    uint8_t k[32];
    sl_err e = sl_hkdf(l->master, 32, (const uint8_t *)info, sizeof info - 1, k, sizeof k);
    size_t ol = 0;
    if (!e && !EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k, sizeof k, p, n, out, 32, &ol))
        e = SL_ENOMEM;
    OPENSSL_cleanse(k, sizeof k);
    return e;
}

/* ---- the master key ---- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 64 hex digits (an optional trailing newline) into out[32]. */
static bool parse_hex_key(const char *s, size_t n, uint8_t out[32]) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    if (n != 64) return false;
    unsigned bad = 0;
    for (int i = 0; i < 32; i++) {
        int h = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        bad |= (unsigned)(h < 0) | (unsigned)(lo < 0);
        out[i] = (uint8_t)((h & 15) << 4 | (lo & 15));
    }
    return !bad;
}

/* Reads a key file that must be owner-only: 32 raw bytes, or (`hex_ok`) 64 hex digits. */
static sl_err read_key_file(const char *path, bool hex_ok, uint8_t out[32], char *err,
                            size_t errlen, const char *what) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open %s: %s", what, path, strerror(errno));
        return SL_ECONFIG;
    }
    struct stat st;
    char buf[80];
    ssize_t n = -1;
    sl_err e = SL_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: %s is not a regular file", what, path);
        e = SL_ECONFIG;
    } else if (st.st_mode & 077) {
        snprintf(err, errlen, "%s: %s has mode %03o, must be 0600 or stricter (chmod 600)", what,
                 path, (unsigned)(st.st_mode & 0777));
        e = SL_ECONFIG;
    } else {
        n = read(fd, buf, sizeof buf);
        if (n == 32)
            memcpy(out, buf, 32);
        else if (!(hex_ok && n > 0 && parse_hex_key(buf, (size_t)n, out))) {
            snprintf(err, errlen, "%s: %s must hold exactly 32 bytes%s (has %lld)", what, path,
                     hex_ok ? " or 64 hex digits" : "", (long long)(n < 0 ? 0 : n));
            e = SL_ECONFIG;
        }
    }
    OPENSSL_cleanse(buf, sizeof buf);
    close(fd);
    return e;
}

/* The default file: sluice-master.key in the secrets directory (outside the data directory),
 * or beside log.dirs where a build before the secrets directory created it. */
static void default_master_path(const sl_config *cfg, char *out, size_t n) {
    char old[SL_CFG_STR_MAX + 32], dir[SL_CFG_STR_MAX];
    sl_config_beside_log_dirs(cfg, "sluice-master.key", old, sizeof old);
    sl_config_secrets_dir(cfg, dir, sizeof dir);
    snprintf(out, n, "%s/sluice-master.key", dir);
    if (access(out, F_OK) != 0 && access(old, F_OK) == 0) snprintf(out, n, "%s", old);
}

static sl_err create_master_file(const char *path, uint8_t out[32], char *err, size_t errlen) {
    sl_err e = sl_random_key(out, 32);
    if (e) return e;
    (void)sl_mkdir_parent(path, 0700); /* the secrets directory, on a first start */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "sluice.kms.local.master.key.file: cannot create %s: %s", path,
                 strerror(errno));
        return SL_ECONFIG;
    }
    bool ok = sl_write_all(fd, out, 32) && fsync(fd) == 0;
    close(fd);
    char dir[4200];
    sl_parent_dir(path, dir, sizeof dir);
    if (ok) ok = sl_fsync_dir(dir) == SL_OK;
    if (!ok) {
        (void)unlink(path);
        snprintf(err, errlen, "sluice.kms.local.master.key.file: cannot write %s", path);
        return SL_EIO;
    }
    SL_WARN("kms", "created a new local master key",
            "file=%s hint=\"back it up apart from the data: without it nothing can be read\"",
            path);
    return SL_OK;
}

static sl_err load_master(local_kms *l, const sl_config *cfg, char *err, size_t errlen) {
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    if (cred && cred[0]) {
        char p[4200];
        if (snprintf(p, sizeof p, "%s/sluice-master-key", cred) >= (int)sizeof p) p[0] = 0;
        if (access(p, F_OK) == 0) {
            snprintf(l->source, sizeof l->source, "systemd credential %s", p);
            return read_key_file(p, true, l->master, err, errlen, "systemd credential");
        }
    }
    const char *envname = cfg->sluice_kms_local_master_key_env;
    const char *v = envname[0] ? getenv(envname) : NULL;
    if (v && v[0]) {
        if (!parse_hex_key(v, strlen(v), l->master)) {
            snprintf(err, errlen,
                     "sluice.kms.local.master.key.env: $%s must hold 64 hex digits (32 bytes)",
                     envname);
            return SL_ECONFIG;
        }
        snprintf(l->source, sizeof l->source, "environment variable %s", envname);
        return SL_OK;
    }
    char p[4200];
    if (cfg->sluice_kms_local_master_key_file[0])
        snprintf(p, sizeof p, "%s", cfg->sluice_kms_local_master_key_file);
    else
        default_master_path(cfg, p, sizeof p);
    snprintf(l->source, sizeof l->source, "file %s", p);
    struct stat st;
    if (lstat(p, &st) != 0 && errno == ENOENT) {
        /* KEKs exist, so a master key did too: a new one would only hide the real problem. */
        if (access(l->path, F_OK) == 0) {
            snprintf(err, errlen,
                     "sluice.kms.local.master.key.file: %s is missing but %s exists: restore the "
                     "master key it was written with (or set its credential or variable)",
                     p, l->path);
            return SL_ECONFIG;
        }
        return create_master_file(p, l->master, err, errlen);
    }
    return read_key_file(p, false, l->master, err, errlen, "sluice.kms.local.master.key.file");
}

/* ---- the KEK file ---- */

static sl_err save_keks(local_kms *l, char *err, size_t errlen) {
    size_t n = 8 + 4 + (size_t)l->nkeks * (4 + 8 + 1 + SL_KWP_WRAPPED_32) + 32;
    uint8_t *b = malloc(n), *q = b;
    if (!b) return SL_ENOMEM;
    memcpy(q, KEKS_MAGIC, 8);
    q += 8;
    uint32_t c = (uint32_t)l->nkeks;
    for (int s = 24; s >= 0; s -= 8) *q++ = (uint8_t)(c >> s);
    for (int i = 0; i < l->nkeks; i++) {
        for (int s = 24; s >= 0; s -= 8) *q++ = (uint8_t)(l->keks[i].version >> s);
        for (int s = 56; s >= 0; s -= 8) *q++ = (uint8_t)((uint64_t)l->keks[i].created_ms >> s);
        *q++ = SL_KWP_WRAPPED_32;
        memcpy(q, l->keks[i].wrapped, SL_KWP_WRAPPED_32);
        q += SL_KWP_WRAPPED_32;
    }
    sl_err e = mac_of(l, b, (size_t)(q - b), q);
    if (!e) e = sl_keyring_replace_file(l->dir, l->name, b, n);
    free(b);
    if (e) snprintf(err, errlen, "local KMS: cannot write %s: %s", l->path, sl_strerror(e));
    return e;
}

static sl_err load_keks(local_kms *l, char *err, size_t errlen) {
    FILE *f = fopen(l->path, "rb");
    if (!f) {
        if (errno == ENOENT) return SL_OK; /* first start: rotate/generate creates it */
        snprintf(err, errlen, "local KMS: cannot open %s: %s", l->path, strerror(errno));
        return SL_EIO;
    }
    uint8_t *b = malloc(8 + 4 + MAX_KEKS * (4 + 8 + 1 + SL_KWP_WRAPPED_32) + 32 + 1);
    size_t cap = 8 + 4 + MAX_KEKS * (4 + 8 + 1 + SL_KWP_WRAPPED_32) + 32 + 1;
    if (!b) {
        fclose(f);
        return SL_ENOMEM;
    }
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    sl_err e = SL_ECORRUPT;
    const char *why = "malformed";
    uint8_t mac[32];
    if (n < 8 + 4 + 32 || memcmp(b, KEKS_MAGIC, 8)) {
        why = "not a local KEK file";
    } else if (mac_of(l, b, n - 32, mac) || CRYPTO_memcmp(mac, b + n - 32, 32)) {
        why = "its MAC does not match: the master key is not the one this file was written "
              "with, or the file was edited";
    } else {
        const uint8_t *q = b + 8;
        uint32_t c = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
        q += 4;
        if (c <= MAX_KEKS && n == 8 + 4 + (size_t)c * (4 + 8 + 1 + SL_KWP_WRAPPED_32) + 32) {
            l->keks = c ? calloc(c, sizeof *l->keks) : NULL;
            e = c && !l->keks ? SL_ENOMEM : SL_OK;
            for (uint32_t i = 0; !e && i < c; i++) {
                local_kek *k = &l->keks[i];
                k->version =
                    (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
                q += 4;
                uint64_t t = 0;
                for (int s = 0; s < 8; s++) t = t << 8 | *q++;
                k->created_ms = (int64_t)t;
                if (*q++ != SL_KWP_WRAPPED_32 || k->version == 0) e = SL_ECORRUPT;
                memcpy(k->wrapped, q, SL_KWP_WRAPPED_32);
                q += SL_KWP_WRAPPED_32;
                l->nkeks++;
            }
        }
    }
    free(b);
    if (e) snprintf(err, errlen, "local KMS: %s: %s", l->path, why);
    return e;
}

static local_kek *find_kek(local_kms *l, uint32_t version) {
    for (int i = 0; i < l->nkeks; i++)
        if (l->keks[i].version == version) return &l->keks[i];
    return NULL;
}

/* Processes sharing one keyring share this file too (gateways, docs/gateway.md): another may
 * have added or destroyed a KEK version since it was read. Reads it again; an unreadable or
 * missing file keeps what memory has (the key service serializes the writers with the keyring's
 * lock, and the file is always replaced whole). */
static void reread_keks(local_kms *l) {
    local_kek *old = l->keks;
    int nold = l->nkeks;
    l->keks = NULL;
    l->nkeks = 0;
    char err[256];
    bool ok = load_keks(l, err, sizeof err) == SL_OK && (l->nkeks || !nold);
    local_kek *drop = ok ? old : l->keks;
    int ndrop = ok ? nold : l->nkeks;
    if (!ok) {
        l->keks = old;
        l->nkeks = nold;
    }
    if (drop) OPENSSL_cleanse(drop, sizeof *drop * (size_t)ndrop);
    free(drop);
}

/* Unwraps KEK `ref` into kek[32] (the caller cleanses it). */
static sl_err open_kek(local_kms *l, const sl_kms_keyref *ref, uint8_t kek[32], char *err,
                       size_t errlen) {
    local_kek *k = find_kek(l, ref->version);
    if (!k) {
        reread_keks(l);
        k = find_kek(l, ref->version);
    }
    char want[32];
    snprintf(want, sizeof want, "local:%u", ref->version);
    if (!k || strcmp(ref->id, want)) {
        snprintf(err, errlen, "local KMS: no KEK %s (version %u; destroyed?)", ref->id,
                 ref->version);
        return SL_EKMS_DENIED;
    }
    uint8_t ctx[32];
    size_t cl, ol = 0;
    kek_context(k->version, ctx, &cl);
    sl_err e = sl_kwp_unwrap(l->master, ctx, cl, k->wrapped, SL_KWP_WRAPPED_32, kek, 32, &ol);
    if (e || ol != 32) {
        snprintf(err, errlen, "local KMS: KEK %s does not unwrap under the master key", want);
        return SL_ETAMPER;
    }
    return SL_OK;
}

static sl_err l_wrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                     const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                     char *err, size_t errlen) {
    local_kms *l = (local_kms *)k;
    uint8_t key[32];
    sl_err e = open_kek(l, kek, key, err, errlen);
    if (!e) e = sl_kwp_wrap(key, ctx, ctxlen, plain, n, out, cap, outlen);
    OPENSSL_cleanse(key, sizeof key);
    return e;
}

static sl_err l_unwrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                       const uint8_t *wrapped, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                       char *err, size_t errlen) {
    local_kms *l = (local_kms *)k;
    uint8_t key[32];
    sl_err e = open_kek(l, kek, key, err, errlen);
    if (!e) {
        e = sl_kwp_unwrap(key, ctx, ctxlen, wrapped, n, out, cap, outlen);
        if (e == SL_ETAMPER || e == SL_EINVAL) {
            snprintf(err, errlen, "local KMS: the wrapped key does not unwrap under %s", kek->id);
            e = SL_ETAMPER;
        }
    }
    OPENSSL_cleanse(key, sizeof key);
    return e;
}

/* Idempotent: a version that exists is returned as is, so a rotate interrupted between the KEK
 * file and the keyring can simply be run again. */
static sl_err l_generate(sl_kms *k, uint32_t version, sl_kms_keyref *out, char *err,
                         size_t errlen) {
    local_kms *l = (local_kms *)k;
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "local:%u", version);
    out->version = version;
    if (version == 0) return SL_EINVAL;
    reread_keks(l); /* what another process sharing the file made stays in it */
    if (find_kek(l, version)) return SL_OK;
    if (l->nkeks >= MAX_KEKS) {
        snprintf(err, errlen, "local KMS: too many KEK versions (retire old ones)");
        return SL_EKMS_DENIED;
    }
    local_kek *n = realloc(l->keks, sizeof *n * (size_t)(l->nkeks + 1));
    if (!n) return SL_ENOMEM;
    l->keks = n;
    local_kek *nk = &n[l->nkeks];
    memset(nk, 0, sizeof *nk);
    nk->version = version;
    nk->created_ms = sl_wall_ms();
    uint8_t key[32], ctx[32];
    size_t cl, wl = 0;
    kek_context(version, ctx, &cl);
    sl_err e = sl_random_key(key, sizeof key);
    if (!e) e = sl_kwp_wrap(l->master, ctx, cl, key, 32, nk->wrapped, sizeof nk->wrapped, &wl);
    OPENSSL_cleanse(key, sizeof key);
    if (e) return e;
    l->nkeks++;
    e = save_keks(l, err, errlen);
    if (e) l->nkeks--;
    return e;
}

static sl_err l_describe(sl_kms *k, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                         size_t errlen) {
    local_kms *l = (local_kms *)k;
    local_kek *lk = find_kek(l, kek->version);
    if (!lk) {
        snprintf(err, errlen, "local KMS: no KEK %s", kek->id);
        return SL_EKMS_DENIED;
    }
    snprintf(out, cap,
             "local %s: AES-256, created %lld ms, in %s, wrapped by the master key from %s",
             kek->id, (long long)lk->created_ms, l->path, l->source);
    return SL_OK;
}

static sl_err l_destroy(sl_kms *k, const sl_kms_keyref *kek, char *err, size_t errlen) {
    local_kms *l = (local_kms *)k;
    reread_keks(l);
    for (int i = 0; i < l->nkeks; i++)
        if (l->keks[i].version == kek->version) {
            local_kek gone = l->keks[i];
            memmove(&l->keks[i], &l->keks[i + 1], sizeof *l->keks * (size_t)(l->nkeks - i - 1));
            l->nkeks--;
            sl_err e = save_keks(l, err, errlen);
            if (e) { /* put it back: memory must say what the file says */
                memmove(&l->keks[i + 1], &l->keks[i], sizeof *l->keks * (size_t)(l->nkeks - i));
                l->keks[i] = gone;
                l->nkeks++;
            }
            OPENSSL_cleanse(&gone, sizeof gone);
            return e;
        }
    snprintf(err, errlen, "local KMS: no KEK %s", kek->id);
    return SL_EKMS_DENIED;
}

static void l_free(sl_kms *k) {
    local_kms *l = (local_kms *)k;
    if (!l) return;
    sl_secmem_free_key(l->master);
    if (l->keks) OPENSSL_cleanse(l->keks, sizeof *l->keks * (size_t)l->nkeks);
    free(l->keks);
    free(l);
}

static const sl_kms_ops k_local_ops = {
    .name = "local",
    .wrap = l_wrap,
    .unwrap = l_unwrap,
    .generate = l_generate,
    .describe = l_describe,
    .destroy = l_destroy,
    .free = l_free,
};

sl_err sl_kms_local_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    local_kms *l = calloc(1, sizeof *l);
    if (!l) return SL_ENOMEM;
    l->base.ops = &k_local_ops;
    l->master = sl_secmem_alloc_key();
    if (!l->master) {
        free(l);
        snprintf(err, errlen, "local KMS: no room in locked key memory");
        return SL_ENOMEM;
    }
    char kr[4096];
    sl_keyring_path(cfg, kr, sizeof kr);
    snprintf(l->path, sizeof l->path, "%s.local-keks", kr);
    snprintf(l->dir, sizeof l->dir, "%s", l->path);
    char *slash = strrchr(l->dir, '/');
    if (slash) {
        snprintf(l->name, sizeof l->name, "%s", slash + 1);
        *(slash == l->dir ? slash + 1 : slash) = 0;
    } else {
        snprintf(l->name, sizeof l->name, "%s", l->path);
        snprintf(l->dir, sizeof l->dir, ".");
    }
    sl_err e = load_master(l, cfg, err, errlen);
    if (!e) e = load_keks(l, err, errlen);
    if (e) {
        l_free(&l->base);
        return e;
    }
    *out = &l->base;
    return SL_OK;
}
