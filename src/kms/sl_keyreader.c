/* sl_keyreader (sl_keysvc.h): the keyring read without a key service, for libsluice and the
 * `sluice protect` filters. It never writes the keyring (the broker's key service owns it); it
 * rereads the file whenever its identity or size or time changes (the service replaces it by
 * rename, so a changed file is always a complete one) — looking at most every RECHECK_MS, as
 * every field of every record asks, except on a miss or a failed unwrap, which look at once —
 * and asks the provider to unwrap each
 * field key version with the context the service wrapped it under (sl_keyring_tk_context). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/sl_file.h"
#include "base/sl_time.h"
#include "kms/sl_keyring.h"
#include "kms/sl_keysvc.h"
#include "kms/sl_kms.h"

/* A rotation or a shred reaches a running reader within this (libsluice's hot path would
 * otherwise open and stat the keyring for every field). */
#define RECHECK_MS 200

struct sl_keyreader {
    sl_kms *kms;
    char path[4096];
    sl_keyring kr;
    bool loaded;
    /* what the loaded keyring was read from */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int64_t checked_ms; /* when the file was last looked at */
};

/* Same mark as sl_keysvc.c's is_field: topic keys and the system key are not handed out. */
static bool is_field(const uint8_t id[16]) { return id[0] == 0xFF; }

static bool same_file(const sl_keyreader *r, const struct stat *st) {
    return r->loaded && r->dev == st->st_dev && r->ino == st->st_ino && r->size == st->st_size &&
           r->mtime.tv_sec == st->st_mtim.tv_sec && r->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           r->ctime.tv_sec == st->st_ctim.tv_sec && r->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Rereads the keyring when it changed (or, `force`, anyway: a replacement within one timestamp
 * tick may reuse the freed inode number and keep the size). On failure the old copy is dropped (a
 * keyring that can no longer be read must not keep serving keys it may have destroyed since). */
static sl_err refresh(sl_keyreader *r, bool force, char *err, size_t errlen) {
    int64_t now = sl_mono_ms();
    if (!force && r->loaded && now - r->checked_ms < RECHECK_MS) return SL_OK;
    r->checked_ms = now;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the keyring %s: %s", r->path, strerror(errno));
        sl_keyring_free(&r->kr);
        r->loaded = false;
        return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SL_KEYRING_MAX) {
        close(fd);
        snprintf(err, errlen, "%s is not a keyring file", r->path);
        sl_keyring_free(&r->kr);
        r->loaded = false;
        return SL_ECORRUPT;
    }
    if (!force && same_file(r, &st)) {
        close(fd);
        return SL_OK;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return SL_ENOMEM;
    }
    got = sl_read_full(fd, b, n);
    close(fd);
    sl_keyring kr = {0};
    char why[160] = "short read";
    sl_err e = got == n ? sl_keyring_decode(b, n, &kr, why, sizeof why) : SL_EIO;
    free(b);
    sl_keyring_free(&r->kr);
    r->loaded = false;
    if (e) {
        sl_keyring_free(&kr);
        snprintf(err, errlen, "the keyring %s is unreadable (%s)", r->path, why);
        return SL_ECORRUPT;
    }
    r->kr = kr;
    r->loaded = true;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    r->size = st.st_size;
    r->mtime = st.st_mtim;
    r->ctime = st.st_ctim;
    return SL_OK;
}

sl_err sl_keyreader_open(const sl_config *cfg, sl_keyreader **out, char *err, size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = 0;
    sl_keyreader *r = calloc(1, sizeof *r);
    if (!r) return SL_ENOMEM;
    sl_keyring_path(cfg, r->path, sizeof r->path);
    sl_err e = refresh(r, true, err, errlen);
    if (e == SL_ENOTFOUND)
        snprintf(err, errlen,
                 "no keyring at %s (sluice.kms.keyring.file; the broker creates it when it starts "
                 "with sluice.encryption.enable=true)",
                 r->path);
    if (!e) e = sl_kms_open(cfg, &r->kms, err, errlen);
    if (e) {
        sl_keyreader_close(r);
        return e;
    }
    *out = r;
    return SL_OK;
}

/* One attempt on the keyring as last read. */
static sl_err get_once(sl_keyreader *r, const uint8_t id[16], uint32_t version, uint8_t out[32],
                       uint32_t *outv, char *err, size_t errlen) {
    sl_kr_topic *t = sl_keyring_topic(&r->kr, id);
    if (t && t->shredded) return SL_EKEY_DESTROYED;
    uint32_t v = version ? version : t && t->ntks ? t->tks[t->ntks - 1].version : 0;
    const sl_kr_tk *w = v ? sl_keyring_tk(t, v) : NULL;
    if (!w) return SL_ENOTFOUND;
    const sl_kr_kek *kek = sl_keyring_kek(&r->kr, w->kek_version);
    if (!kek) return SL_ECORRUPT; /* sl_keyring_decode refuses this; kept for safety */
    uint8_t ctx[SL_KEYRING_TKCTX_MAX];
    size_t cl = sl_keyring_tk_context(ctx, id, v), ol = 0;
    sl_err e = r->kms->ops->unwrap(r->kms, &kek->ref, ctx, cl, w->wrapped, w->wlen, out, 32, &ol,
                                   err, errlen);
    if (!e && ol != 32) e = SL_ETAMPER;
    if (e) {
        OPENSSL_cleanse(out, 32);
        return e;
    }
    if (outv) *outv = v;
    return SL_OK;
}

sl_err sl_keyreader_get(sl_keyreader *r, const uint8_t id[16], uint32_t version, uint8_t out[32],
                        uint32_t *outv, char *err, size_t errlen) {
    char scratch[8];
    if (!err || !errlen) err = scratch, errlen = sizeof scratch;
    err[0] = 0;
    if (!is_field(id)) return SL_ENOTFOUND;
    sl_err e = refresh(r, false, err, errlen);
    if (!e) e = get_once(r, id, version, out, outv, err, errlen);
    /* A miss or a failed unwrap may be a change the file's stat did not show (a rewrap under
     * a KEK since retired): read the file again, once, before answering. */
    if (e == SL_ENOTFOUND || e == SL_ETAMPER || e == SL_EKMS_DENIED) {
        err[0] = 0;
        e = refresh(r, true, err, errlen);
        if (!e) e = get_once(r, id, version, out, outv, err, errlen);
    }
    return e;
}

int sl_keyreader_versions(sl_keyreader *r, const uint8_t id[16], uint32_t *versions, int cap) {
    char err[200];
    if (!is_field(id) || refresh(r, false, err, sizeof err)) return 0;
    sl_kr_topic *t = sl_keyring_topic(&r->kr, id);
    int n = 0;
    if (t && !t->shredded)
        for (int i = 0; i < t->ntks && n < cap; i++) versions[n++] = t->tks[i].version;
    return n;
}

void sl_keyreader_close(sl_keyreader *r) {
    if (!r) return;
    if (r->kms) r->kms->ops->free(r->kms);
    sl_keyring_free(&r->kr);
    free(r);
}
