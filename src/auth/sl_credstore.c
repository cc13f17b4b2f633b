#include "sl_credstore.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"

#define SECRET_LEN 32
#define MAX_FILE   (16 << 20)
#define HEADER                                                                                     \
    "# sluice credential store v1: managed by `sluice user` and the broker; do not edit\n"

typedef struct entry {
    char user[SL_SCRAM_MAX_USER + 1];
    sl_scram_cred cred;
} entry;

struct sl_credstore {
    char path[4096];
    uint8_t secret[SECRET_LEN];
    entry *v;
    int n, cap;
    /* identity of the file last loaded, to notice changes */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int lock_fd;
    int32_t mock_iterations; /* what unknown names are answered with */
};

static bool name_ok(const char *u, size_t n) {
    if (n == 0 || n > SL_SCRAM_MAX_USER) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] < 0x20 || u[i] == 0x7f) return false;
    return true;
}

/* Names are percent-encoded in the file so any byte but controls survives a line format. */
static void pct_encode(const char *u, char *out) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *u; u++) {
        unsigned char ch = (unsigned char)*u;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("._-@", ch)) {
            *out++ = (char)ch;
        } else {
            *out++ = '%';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 15];
        }
    }
    *out = 0;
}

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool pct_decode(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (; *in; in++) {
        char ch = *in;
        if (ch == '%') {
            int h = hexv(in[1]), l = h >= 0 ? hexv(in[2]) : -1;
            if (l < 0) return false;
            ch = (char)(h << 4 | l);
            in += 2;
        }
        if (o + 1 >= cap) return false;
        out[o++] = ch;
    }
    out[o] = 0;
    return name_ok(out, o);
}

static bool b64_field(const char *s, uint8_t *out, size_t cap, size_t *n) {
    long r = sl_b64_decode(s, strlen(s), out, cap);
    if (r <= 0) return false;
    *n = (size_t)r;
    return true;
}

/* Parses the whole file into fresh arrays; nothing in `s` changes on failure. */
static sl_err parse(sl_credstore *s, char *text, char *err, size_t elen) {
    uint8_t secret[SECRET_LEN];
    bool have_secret = false;
    entry *v = NULL;
    int n = 0, cap = 0, lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (!line[0] || line[0] == '#') continue;
        char *f[8];
        int nf = 0;
        char *fs = NULL;
        for (char *t = strtok_r(line, " ", &fs); t && nf < 8; t = strtok_r(NULL, " ", &fs))
            f[nf++] = t;
        size_t len = 0;
        if (nf == 2 && !strcmp(f[0], "secret")) {
            if (!b64_field(f[1], secret, sizeof secret, &len) || len != SECRET_LEN) goto bad;
            have_secret = true;
            continue;
        }
        if (nf != 7 || strcmp(f[0], "user")) goto bad;
        if (n == cap) {
            int nc = cap ? cap * 2 : 16;
            entry *nv = realloc(v, (size_t)nc * sizeof *nv);
            if (!nv) {
                OPENSSL_clear_free(v, (size_t)cap * sizeof *v);
                return SL_ENOMEM;
            }
            v = nv;
            cap = nc;
        }
        entry *e = &v[n];
        memset(e, 0, sizeof *e);
        e->cred.mech = sl_scram_mech_from_name(f[2], strlen(f[2]));
        char *end = NULL;
        long it = strtol(f[3], &end, 10);
        size_t hl = sl_scram_hash_len(e->cred.mech), kl = 0;
        if (!pct_decode(f[1], e->user, sizeof e->user) || !hl || *end || it < 1 || it > INT32_MAX ||
            !b64_field(f[4], e->cred.salt, sizeof e->cred.salt, &e->cred.salt_len))
            goto bad;
        e->cred.iterations = (int32_t)it;
        if (!b64_field(f[5], e->cred.stored_key, sizeof e->cred.stored_key, &kl) || kl != hl ||
            !b64_field(f[6], e->cred.server_key, sizeof e->cred.server_key, &kl) || kl != hl)
            goto bad;
        n++;
    }
    if (!have_secret) {
        snprintf(err, elen, "credential store %s has no secret line", s->path);
        OPENSSL_clear_free(v, (size_t)cap * sizeof *v);
        return SL_ECONFIG;
    }
    if (s->v) OPENSSL_clear_free(s->v, (size_t)s->cap * sizeof *s->v);
    s->v = v;
    s->n = n;
    s->cap = cap;
    memcpy(s->secret, secret, sizeof secret);
    OPENSSL_cleanse(secret, sizeof secret);
    return SL_OK;
bad:
    snprintf(err, elen, "credential store %s: line %d is malformed", s->path, lineno);
    if (v) OPENSSL_clear_free(v, (size_t)cap * sizeof *v);
    OPENSSL_cleanse(secret, sizeof secret);
    return SL_ECONFIG;
}

static sl_err load(sl_credstore *s, char *err, size_t elen) {
    struct stat st;
    sl_err oe;
    int fd = sl_file_open_private(s->path, "credential store", &st, &oe, err, elen);
    if (fd < 0) return oe;
    if (st.st_size > MAX_FILE) {
        snprintf(err, elen, "credential store %s is too large", s->path);
        close(fd);
        return SL_ECONFIG;
    }
    size_t sz = (size_t)st.st_size, got = 0;
    char *text = malloc(sz + 1);
    if (!text) {
        close(fd);
        return SL_ENOMEM;
    }
    while (got < sz) {
        ssize_t r = read(fd, text + got, sz - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    text[got] = 0;
    sl_err e = got == sz ? parse(s, text, err, elen) : SL_EIO;
    if (e == SL_EIO) snprintf(err, elen, "cannot read credential store %s", s->path);
    OPENSSL_clear_free(text, sz + 1);
    if (!e) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->size = st.st_size;
        s->mtime = st.st_mtim;
    }
    return e;
}

sl_err sl_credstore_open(const char *path, bool create, sl_credstore **out, char *err,
                         size_t elen) {
    *out = NULL;
    sl_credstore *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    s->lock_fd = -1;
    s->mock_iterations = SL_SCRAM_DEF_ITER;
    if (snprintf(s->path, sizeof s->path, "%s", path) >= (int)sizeof s->path) {
        snprintf(err, elen, "credential store path too long");
        free(s);
        return SL_ECONFIG;
    }
    sl_err e = load(s, err, elen);
    if (e == SL_ENOTFOUND && create) {
        /* A new store in the secrets directory may be the first file there. */
        (void)sl_mkdir_parent(path, 0700);
        if (RAND_bytes(s->secret, sizeof s->secret) != 1)
            e = SL_ENOMEM;
        else if ((e = sl_credstore_save(s)) != SL_OK)
            snprintf(err, elen, "cannot create credential store %s: %s", path, sl_strerror(e));
        else
            e = load(s, err, elen);
    }
    if (e) {
        sl_credstore_free(s);
        return e;
    }
    *out = s;
    return SL_OK;
}

void sl_credstore_free(sl_credstore *s) {
    if (!s) return;
    if (s->lock_fd >= 0) close(s->lock_fd);
    if (s->v) OPENSSL_clear_free(s->v, (size_t)s->cap * sizeof *s->v);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

const char *sl_credstore_path(const sl_credstore *s) { return s->path; }

sl_err sl_credstore_refresh(sl_credstore *s) {
    struct stat st;
    if (stat(s->path, &st)) return SL_EIO;
    if (st.st_dev == s->dev && st.st_ino == s->ino && st.st_size == s->size &&
        st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec)
        return SL_OK;
    char err[512];
    sl_err e = load(s, err, sizeof err);
    if (e)
        SL_WARN("auth", "credential store reload failed; keeping the loaded one", "err=\"%s\"",
                err);
    else
        SL_INFO("auth", "credential store reloaded", "path=%s users=%d", s->path, s->n);
    return e;
}

static int find_idx(const sl_credstore *s, const char *u, size_t n, int mech) {
    for (int i = 0; i < s->n; i++)
        if (s->v[i].cred.mech == mech && strlen(s->v[i].user) == n && !memcmp(s->v[i].user, u, n))
            return i;
    return -1;
}

const sl_scram_cred *sl_credstore_find(const sl_credstore *s, const char *u, size_t n, int mech) {
    int i = find_idx(s, u, n, mech);
    return i < 0 ? NULL : &s->v[i].cred;
}

void sl_credstore_set_mock_iterations(sl_credstore *s, int32_t iterations) {
    if (iterations >= SL_SCRAM_MIN_ITER && iterations <= SL_SCRAM_MAX_ITER)
        s->mock_iterations = iterations;
}

/* The mock credential of `user`: a pure function of (secret, mechanism, name), so a client
 * probing the same unknown name twice sees the same salt, as it would for a real user. */
static void mock_cred(const sl_credstore *s, const char *user, size_t n, int mech,
                      sl_scram_cred *out) {
    memset(out, 0, sizeof *out);
    out->mech = sl_scram_hash_len(mech) ? mech : SL_SCRAM_SHA_512;
    out->iterations = s->mock_iterations;
    out->salt_len = SL_SCRAM_SALT_LEN;
    uint8_t buf[SL_SCRAM_MAX_USER + 8], mac[64];
    unsigned int ml = 0;
    const char *tags[3] = {"salt", "stored", "server"};
    uint8_t *dst[3] = {out->salt, out->stored_key, out->server_key};
    size_t dl[3] = {SL_SCRAM_SALT_LEN, SL_SCRAM_MAX_HASH, SL_SCRAM_MAX_HASH};
    for (int k = 0; k < 3; k++) {
        size_t tl = strlen(tags[k]);
        memcpy(buf, tags[k], tl);
        buf[tl] = (uint8_t)mech;
        size_t un = n > SL_SCRAM_MAX_USER ? SL_SCRAM_MAX_USER : n;
        memcpy(buf + tl + 1, user, un);
        HMAC(EVP_sha512(), s->secret, SECRET_LEN, buf, tl + 1 + un, mac, &ml);
        memcpy(dst[k], mac, dl[k]);
    }
}

bool sl_credstore_lookup(void *store, const char *user, size_t n, int mech, sl_scram_cred *out) {
    sl_credstore *s = store;
    /* Derived for known names too, so a lookup costs the same either way: a known user's
     * server-first must not come back measurably sooner than an unknown one's. */
    mock_cred(s, user, n, mech, out);
    const sl_scram_cred *c = sl_credstore_find(s, user, n, mech);
    if (!c) return false;
    *out = *c;
    return true;
}

int sl_credstore_count(const sl_credstore *s) { return s->n; }

const char *sl_credstore_at(const sl_credstore *s, int i, const sl_scram_cred **cred) {
    if (i < 0 || i >= s->n) return NULL;
    if (cred) *cred = &s->v[i].cred;
    return s->v[i].user;
}

sl_err sl_credstore_put(sl_credstore *s, const char *user, size_t n, const sl_scram_cred *cred) {
    if (!name_ok(user, n) || !sl_scram_hash_len(cred->mech)) return SL_EINVAL;
    int i = find_idx(s, user, n, cred->mech);
    if (i < 0) {
        if (s->n == s->cap) {
            int nc = s->cap ? s->cap * 2 : 16;
            entry *nv = malloc((size_t)nc * sizeof *nv);
            if (!nv) return SL_ENOMEM;
            if (s->n) memcpy(nv, s->v, (size_t)s->n * sizeof *nv);
            if (s->v) OPENSSL_clear_free(s->v, (size_t)s->cap * sizeof *s->v);
            s->v = nv;
            s->cap = nc;
        }
        i = s->n++;
        memset(&s->v[i], 0, sizeof s->v[i]);
        memcpy(s->v[i].user, user, n);
    }
    s->v[i].cred = *cred;
    return SL_OK;
}

sl_err sl_credstore_remove(sl_credstore *s, const char *user, size_t n, int mech) {
    bool any = false;
    for (int i = 0; i < s->n;) {
        entry *e = &s->v[i];
        if (strlen(e->user) == n && !memcmp(e->user, user, n) && (!mech || e->cred.mech == mech)) {
            memmove(e, e + 1, (size_t)(s->n - i - 1) * sizeof *e);
            s->n--;
            OPENSSL_cleanse(&s->v[s->n], sizeof s->v[s->n]);
            any = true;
        } else {
            i++;
        }
    }
    return any ? SL_OK : SL_ENOTFOUND;
}

sl_err sl_credstore_save(sl_credstore *s) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s->path, (long)getpid());
    size_t cap = 256 + (size_t)s->n * (3 * SL_SCRAM_MAX_USER + 512), len = 0;
    char *text = malloc(cap);
    if (!text) return SL_ENOMEM;
    char b64[256], name[3 * SL_SCRAM_MAX_USER + 1];
    len += (size_t)snprintf(text + len, cap - len, "%s", HEADER);
    sl_b64_encode(s->secret, SECRET_LEN, b64);
    len += (size_t)snprintf(text + len, cap - len, "secret %s\n", b64);
    for (int i = 0; i < s->n; i++) {
        const sl_scram_cred *c = &s->v[i].cred;
        size_t hl = sl_scram_hash_len(c->mech);
        char salt[128], sk[128], vk[128];
        pct_encode(s->v[i].user, name);
        sl_b64_encode(c->salt, c->salt_len, salt);
        sl_b64_encode(c->stored_key, hl, sk);
        sl_b64_encode(c->server_key, hl, vk);
        len += (size_t)snprintf(text + len, cap - len, "user %s %s %d %s %s %s\n", name,
                                sl_scram_mech_name(c->mech), (int)c->iterations, salt, sk, vk);
    }
    OPENSSL_cleanse(b64, sizeof b64);
    sl_err e = SL_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) e = SL_EIO;
    /* fchmod in case the file pre-existed with a wider mode or the umask is unusual. */
    else if (fchmod(fd, 0600) || !sl_write_all(fd, text, len) || fsync(fd))
        e = SL_EIO;
    if (fd >= 0 && close(fd)) e = SL_EIO;
    OPENSSL_clear_free(text, cap);
    if (!e && rename(tmp, s->path)) e = SL_EIO;
    if (e) {
        unlink(tmp);
        return e;
    }
    /* The rename is durable only once the directory entry is. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", s->path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd)) e = SL_EIO;
        close(dfd);
    }
    struct stat st;
    if (!e && !stat(s->path, &st)) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->size = st.st_size;
        s->mtime = st.st_mtim;
    }
    return e;
}

sl_err sl_credstore_lock(sl_credstore *s) {
    if (s->lock_fd < 0) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s.lock", s->path);
        s->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lock_fd < 0) return SL_EIO;
    }
    while (flock(s->lock_fd, LOCK_EX))
        if (errno != EINTR) return SL_EIO;
    sl_err e = sl_credstore_refresh(s);
    if (e) flock(s->lock_fd, LOCK_UN);
    return e;
}

void sl_credstore_unlock(sl_credstore *s) {
    if (s->lock_fd >= 0) flock(s->lock_fd, LOCK_UN);
}
