/* The IAM store (sl_iamstore.h). File handling as the SCRAM store (src/auth/sl_credstore.c):
 * mode 0600, written atomically, writers serialised on an flock of "<path>.lock", reloaded
 * when the file's identity changes.
 *
 * File format (text, one record a line, fields separated by exactly one space, none empty;
 * written in this order, and read so that a line may only name what lines above it defined;
 * "check" comes before every other record; anything else refuses the whole file):
 *
 *   sluice-iam 1                                       the format and its version
 *   # comment lines                                    ignored
 *   check CHECK                                        base64 of 16 bytes derived from the IAM
 *                                                      key: a wrong key file is refused at once
 *   policy NAME DOC                                    DOC: base64 of the document as given
 *   user NAME CREATED                                  CREATED: epoch seconds
 *   tag user NAME KEY VALUE                            %XX for bytes outside [A-Za-z0-9._@:/=+]
 *                                                      ('-' too); an empty value is "-"
 *   key AKID USER active|inactive CREATED LASTUSED SEALED
 *                                                      LASTUSED 0: never. SEALED: base64 of
 *                                                      nonce(12) | AES-256-GCM(secret) | tag(16)
 *                                                      under a key derived from the IAM key,
 *                                                      the access key id as AAD
 *   role NAME ROLEID MAXSESSION                        ROLEID "AROA" + 16: a re-created role
 *                                                      does not honour the old one's sessions;
 *                                                      MAXSESSION seconds, 900..43200
 *   tag role NAME KEY VALUE
 *   attach user|role NAME POLICY
 *
 * Names are IAM names ([A-Za-z0-9+=,.@_-]{1,128}), so they need no escaping. Nothing in the
 * file is a plaintext secret: the file alone reveals no secret access key, and with the wrong
 * key file it does not load.
 *
 * Keys derived from the IAM key (HKDF-SHA256, distinct labels): one encrypts secret access
 * keys, one seals session tokens, one makes the check value. A session token is
 * base64(version 1 | nonce(12) | AES-256-GCM(payload) | tag(16)), the version byte as AAD, with
 * payload = akid(20) | secret(40) | role id(20) | expiry (8, big-endian) | role name length (1)
 * | role name | session name length (1) | session name. */
#include "iam/sl_iamstore.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_b64.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_text.h"
#include "iam/sl_iamstore_int.h"

#define KEY_LEN        SL_IAM_KEY_LEN
#define NAME_MAX_      SL_IAM_NAME_MAX
#define MAX_FILE       (16 << 20)
#define NONCE_LEN      12
#define TAG_LEN        16
#define SEALED_LEN     (NONCE_LEN + SL_IAM_SECRET_LEN + TAG_LEN)
#define CHECK_LEN      16
#define TOKEN_VERSION  1
#define ROLEID_LEN     20
#define MIN_SESSION_S  900
#define MAX_SESSION_S  43200 /* IAM's ceiling: 12 h */
#define DEF_SESSION_S  3600  /* a role added with max_session_s 0 */
#define USE_SAVE_EVERY 60    /* seconds between saves of one key's last use */
#define TAG_KEY_MAX    128
#define TAG_VALUE_MAX  256
#define SESSION_MIN    2
#define SESSION_MAX    64
#define DEF_SESSION    "sluice-session"
#define MAGIC          "sluice-iam 1"
#define COMMENT        "# sluice IAM store: managed by `sluice iam` and the broker; do not edit"

static const char k_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

typedef struct taglist {
    sl_iam_tag *v; /* key and value malloc'd */
    size_t n;
} taglist;

typedef struct attlist {
    int n;
    char v[SL_IAM_MAX_ATTACHED][NAME_MAX_ + 1];
} attlist;

typedef struct iuser {
    char name[NAME_MAX_ + 1];
    int64_t created;
    taglist tags;
    attlist att;
} iuser;

typedef struct ikey {
    char akid[SL_IAM_AKID_LEN + 1];
    char user[NAME_MAX_ + 1];
    bool active;
    int64_t created, last_used;
    int64_t saved_use; /* the last use the file holds (note_use saves when this is old) */
    uint8_t sealed[SEALED_LEN];
} ikey;

typedef struct irole {
    char name[NAME_MAX_ + 1];
    char id[ROLEID_LEN + 1];
    int64_t max_s;
    taglist tags;
    attlist att;
} irole;

typedef struct ipolicy {
    char name[NAME_MAX_ + 1];
    char *doc; /* NUL-terminated copy */
    size_t len;
    sl_iam_policy *p;
} ipolicy;

typedef struct data {
    iuser *u;
    int nu, cu;
    ikey *k;
    int nk, ck;
    irole *r;
    int nr, cr;
    ipolicy *p;
    int np, cp;
} data;

struct sl_iamstore {
    char path[4096];
    char keypath[4096];
    uint8_t sec_key[KEY_LEN]; /* encrypts secret access keys */
    uint8_t tok_key[KEY_LEN]; /* seals session tokens */
    uint8_t check[CHECK_LEN];
    data d;
    bool has_file;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int lock_fd;
};

/* ---- small helpers ---- */

static bool iam_name_ok(const char *s, size_t minl, size_t maxl) {
    size_t n = strlen(s);
    if (n < minl || n > maxl) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("+=,.@_-", c)))
            return false;
    }
    return true;
}

static bool name_ok(const char *s) { return s && iam_name_ok(s, 1, NAME_MAX_); }

static bool akid_ok(const char *a, const char *prefix) {
    if (!a || strlen(a) != SL_IAM_AKID_LEN || memcmp(a, prefix, 4)) return false;
    for (int i = 4; i < SL_IAM_AKID_LEN; i++)
        if (!strchr(k_b32, a[i]) || !a[i]) return false;
    return true;
}

static bool tag_text_ok(const char *s, size_t minl, size_t maxl) {
    size_t n = strlen(s);
    if (n < minl || n > maxl) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static void *grow(void *v, int *cap, int n, size_t sz) {
    if (n < *cap) return v;
    int nc = *cap ? *cap * 2 : 8;
    void *nv = realloc(v, (size_t)nc * sz);
    if (!nv) return NULL;
    memset((char *)nv + (size_t)*cap * sz, 0, (size_t)(nc - *cap) * sz);
    *cap = nc;
    return nv;
}

static void tags_free(taglist *t) {
    for (size_t i = 0; i < t->n; i++) {
        free((char *)t->v[i].key);
        free((char *)t->v[i].value);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static sl_err tag_push(taglist *t, const char *k, const char *v) {
    if (t->n >= SL_IAM_MAX_TAGS) return SL_ETOOLARGE;
    if (!tag_text_ok(k, 1, TAG_KEY_MAX) || !tag_text_ok(v, 0, TAG_VALUE_MAX)) return SL_EINVAL;
    for (size_t i = 0; i < t->n; i++)
        if (!strcasecmp(t->v[i].key, k)) return SL_EINVAL; /* IAM: keys are case-insensitive */
    sl_iam_tag *nv = realloc(t->v, (t->n + 1) * sizeof *nv);
    if (!nv) return SL_ENOMEM;
    t->v = nv;
    char *kc = strdup(k), *vc = strdup(v);
    if (!kc || !vc) {
        free(kc);
        free(vc);
        return SL_ENOMEM;
    }
    t->v[t->n].key = kc;
    t->v[t->n].value = vc;
    t->n++;
    return SL_OK;
}

static sl_err tags_set(taglist *t, const sl_iam_tag *tags, size_t n) {
    if (n > SL_IAM_MAX_TAGS) return SL_ETOOLARGE;
    if (n && !tags) return SL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        sl_err e =
            !tags[i].key || !tags[i].value ? SL_EINVAL : tag_push(t, tags[i].key, tags[i].value);
        if (e) {
            tags_free(t);
            return e;
        }
    }
    return SL_OK;
}

static void data_free(data *d) {
    for (int i = 0; i < d->nu; i++) tags_free(&d->u[i].tags);
    for (int i = 0; i < d->nr; i++) tags_free(&d->r[i].tags);
    for (int i = 0; i < d->np; i++) {
        free(d->p[i].doc);
        sl_iam_policy_free(d->p[i].p);
    }
    free(d->u);
    free(d->k);
    free(d->r);
    free(d->p);
    memset(d, 0, sizeof *d);
}

static int find_user(const data *d, const char *n) {
    for (int i = 0; i < d->nu; i++)
        if (!strcmp(d->u[i].name, n)) return i;
    return -1;
}
static int find_role(const data *d, const char *n) {
    for (int i = 0; i < d->nr; i++)
        if (!strcmp(d->r[i].name, n)) return i;
    return -1;
}
static int find_policy(const data *d, const char *n) {
    for (int i = 0; i < d->np; i++)
        if (!strcmp(d->p[i].name, n)) return i;
    return -1;
}
static int find_key(const data *d, const char *akid) {
    for (int i = 0; i < d->nk; i++)
        if (!strcmp(d->k[i].akid, akid)) return i;
    return -1;
}

static bool random_b32(char *out, size_t n) {
    uint8_t r[32];
    if (n > sizeof r || RAND_bytes(r, (int)n) != 1) return false;
    for (size_t i = 0; i < n; i++) out[i] = k_b32[r[i] & 31]; /* 256 = 8 * 32: uniform */
    OPENSSL_cleanse(r, sizeof r);
    out[n] = 0;
    return true;
}

static bool random_id(const data *d, const char *prefix, char out[SL_IAM_AKID_LEN + 1]) {
    for (int tries = 0; tries < 8; tries++) {
        memcpy(out, prefix, 4);
        if (!random_b32(out + 4, SL_IAM_AKID_LEN - 4)) return false;
        if (!d || find_key(d, out) < 0) return true;
    }
    return false;
}

static bool random_secret(char out[SL_IAM_SECRET_LEN + 1]) {
    uint8_t r[SL_IAM_SECRET_LEN];
    if (RAND_bytes(r, sizeof r) != 1) return false;
    for (size_t i = 0; i < sizeof r; i++) out[i] = k_b64[r[i] & 63]; /* 256 = 4 * 64 */
    OPENSSL_cleanse(r, sizeof r);
    out[SL_IAM_SECRET_LEN] = 0;
    return true;
}

/* ---- crypto ---- */

static bool hkdf(const uint8_t ikm[KEY_LEN], const char *label, uint8_t *out, size_t olen) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    bool ok = false;
    if (c) {
        static const char salt[] = "sluice-iam";
        OSSL_PARAM p[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, KEY_LEN),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sizeof salt - 1),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)label, strlen(label)),
            OSSL_PARAM_construct_end()};
        ok = EVP_KDF_derive(c, out, olen, p) == 1;
    }
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
    return ok;
}

static bool derive_keys(sl_iamstore *s, const uint8_t ikm[KEY_LEN]) {
    return hkdf(ikm, "sluice-iam v1 secret access keys", s->sec_key, KEY_LEN) &&
           hkdf(ikm, "sluice-iam v1 session tokens", s->tok_key, KEY_LEN) &&
           hkdf(ikm, "sluice-iam v1 key check", s->check, CHECK_LEN);
}

/* AES-256-GCM; encrypt: in -> out and tag written; decrypt: tag checked. */
static bool gcm(bool enc, const uint8_t key[KEY_LEN], const uint8_t nonce[NONCE_LEN],
                const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out,
                uint8_t tag[TAG_LEN]) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c) return false;
    int l = 0;
    bool ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc ? 1 : 0) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
              EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc ? 1 : 0) == 1 &&
              (!alen || EVP_CipherUpdate(c, NULL, &l, aad, (int)alen) == 1) &&
              (!n || EVP_CipherUpdate(c, out, &l, in, (int)n) == 1);
    if (ok && !enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    if (ok) ok = EVP_CipherFinal_ex(c, out + n, &l) == 1;
    if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok && !enc && n) OPENSSL_cleanse(out, n);
    return ok;
}

static bool seal_secret(const sl_iamstore *s, const char *akid, const char *secret,
                        uint8_t sealed[SEALED_LEN]) {
    if (RAND_bytes(sealed, NONCE_LEN) != 1) return false;
    return gcm(true, s->sec_key, sealed, (const uint8_t *)akid, strlen(akid),
               (const uint8_t *)secret, SL_IAM_SECRET_LEN, sealed + NONCE_LEN,
               sealed + NONCE_LEN + SL_IAM_SECRET_LEN);
}

/* Decrypts a key's secret into out[SL_IAM_SECRET_LEN + 1]. */
static bool open_secret(const sl_iamstore *s, const ikey *k, char *out) {
    uint8_t tag[TAG_LEN];
    memcpy(tag, k->sealed + NONCE_LEN + SL_IAM_SECRET_LEN, TAG_LEN);
    bool ok = gcm(false, s->sec_key, k->sealed, (const uint8_t *)k->akid, strlen(k->akid),
                  k->sealed + NONCE_LEN, SL_IAM_SECRET_LEN, (uint8_t *)out, tag);
    out[ok ? SL_IAM_SECRET_LEN : 0] = 0;
    return ok;
}

/* ---- session tokens ---- */

typedef struct session {
    char akid[SL_IAM_AKID_LEN + 1];
    char secret[SL_IAM_SECRET_LEN + 1];
    char role_id[ROLEID_LEN + 1];
    char role[NAME_MAX_ + 1];
    char name[SESSION_MAX + 1];
    int64_t expiry;
} session;

#define PAYLOAD_MAX                                                                                \
    (SL_IAM_AKID_LEN + SL_IAM_SECRET_LEN + ROLEID_LEN + 8 + 1 + NAME_MAX_ + 1 + SESSION_MAX)
#define BLOB_MAX (1 + NONCE_LEN + PAYLOAD_MAX + TAG_LEN)

static bool token_seal(const sl_iamstore *s, const session *ss, char *token, size_t cap) {
    uint8_t pt[PAYLOAD_MAX], blob[BLOB_MAX];
    size_t n = 0, rl = strlen(ss->role), nl = strlen(ss->name);
    memcpy(pt + n, ss->akid, SL_IAM_AKID_LEN);
    n += SL_IAM_AKID_LEN;
    memcpy(pt + n, ss->secret, SL_IAM_SECRET_LEN);
    n += SL_IAM_SECRET_LEN;
    memcpy(pt + n, ss->role_id, ROLEID_LEN);
    n += ROLEID_LEN;
    for (int i = 7; i >= 0; i--) pt[n++] = (uint8_t)((uint64_t)ss->expiry >> (8 * i));
    pt[n++] = (uint8_t)rl;
    memcpy(pt + n, ss->role, rl);
    n += rl;
    pt[n++] = (uint8_t)nl;
    memcpy(pt + n, ss->name, nl);
    n += nl;
    blob[0] = TOKEN_VERSION;
    bool ok = RAND_bytes(blob + 1, NONCE_LEN) == 1 &&
              gcm(true, s->tok_key, blob + 1, blob, 1, pt, n, blob + 1 + NONCE_LEN,
                  blob + 1 + NONCE_LEN + n) &&
              sl_b64std_encode(blob, 1 + NONCE_LEN + n + TAG_LEN, token, cap) > 0;
    OPENSSL_cleanse(pt, sizeof pt);
    OPENSSL_cleanse(blob, sizeof blob);
    return ok;
}

/* Opens a token; true only for an authentic one whose fields are well formed (expiry and
 * role are the caller's to check). */
static bool token_open(const sl_iamstore *s, const char *token, session *ss) {
    uint8_t blob[BLOB_MAX], pt[PAYLOAD_MAX];
    size_t bl = 0, tl = token ? strnlen(token, SL_IAM_TOKEN_MAX) : 0;
    memset(ss, 0, sizeof *ss);
    if (!tl || tl >= SL_IAM_TOKEN_MAX || !sl_b64std_decode(token, tl, blob, sizeof blob, &bl))
        return false;
    size_t min = 1 + NONCE_LEN + SL_IAM_AKID_LEN + SL_IAM_SECRET_LEN + ROLEID_LEN + 8 + 2 + TAG_LEN;
    if (bl < min || blob[0] != TOKEN_VERSION) return false;
    size_t n = bl - 1 - NONCE_LEN - TAG_LEN;
    bool ok =
        gcm(false, s->tok_key, blob + 1, blob, 1, blob + 1 + NONCE_LEN, n, pt, blob + bl - TAG_LEN);
    if (ok) {
        size_t o = 0;
        memcpy(ss->akid, pt, SL_IAM_AKID_LEN);
        o += SL_IAM_AKID_LEN;
        memcpy(ss->secret, pt + o, SL_IAM_SECRET_LEN);
        o += SL_IAM_SECRET_LEN;
        memcpy(ss->role_id, pt + o, ROLEID_LEN);
        o += ROLEID_LEN;
        uint64_t e = 0;
        for (int i = 0; i < 8; i++) e = e << 8 | pt[o++];
        ss->expiry = (int64_t)e;
        size_t rl = pt[o++];
        ok = rl <= NAME_MAX_ && o + rl + 1 <= n;
        if (ok) {
            memcpy(ss->role, pt + o, rl);
            o += rl;
            size_t nl = pt[o++];
            ok = nl <= SESSION_MAX && o + nl == n;
            if (ok) memcpy(ss->name, pt + o, nl);
        }
        ok = ok && akid_ok(ss->akid, "ASIA") && name_ok(ss->role) && akid_ok(ss->role_id, "AROA") &&
             iam_name_ok(ss->name, SESSION_MIN, SESSION_MAX);
    }
    OPENSSL_cleanse(pt, sizeof pt);
    OPENSSL_cleanse(blob, sizeof blob);
    if (!ok) OPENSSL_cleanse(ss, sizeof *ss);
    return ok;
}

/* A token that opens, names `akid`, has not expired (wall clock) and whose role still exists
 * (the same role: same id). */
static bool session_valid(const sl_iamstore *s, const char *akid, const char *token, session *ss) {
    if (!token_open(s, token, ss)) return false;
    int r = find_role(&s->d, ss->role);
    bool ok = strlen(akid) == SL_IAM_AKID_LEN && !CRYPTO_memcmp(ss->akid, akid, SL_IAM_AKID_LEN) &&
              ss->expiry > (int64_t)time(NULL) && r >= 0 && !strcmp(s->d.r[r].id, ss->role_id);
    if (!ok) OPENSSL_cleanse(ss, sizeof *ss);
    return ok;
}

/* ---- the file format: writing ---- */

static void sb_b64(sl_text *b, const uint8_t *p, size_t n) {
    size_t cap = sl_b64_enc_len(n);
    char *t = malloc(cap);
    if (!t) {
        b->oom = true;
        return;
    }
    size_t l = sl_b64std_encode(p, n, t, cap);
    sl_text_put(b, t, l);
    free(t);
}

/* Tag text: anything outside [A-Za-z0-9._@:/=+] as %XX ('-' too: a lone "-" is the empty
 * value). */
static void sb_pct(sl_text *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    if (!*s) {
        sl_text_puts(b, "-");
        return;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("._@:/=+", c)) {
            sl_text_put(b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sl_text_put(b, e, 3);
        }
    }
}

static void sb_tags(sl_text *b, const char *kind, const char *name, const taglist *t) {
    for (size_t i = 0; i < t->n; i++) {
        sl_text_printf(b, "tag %s %s ", kind, name);
        sb_pct(b, t->v[i].key);
        sl_text_puts(b, " ");
        sb_pct(b, t->v[i].value);
        sl_text_puts(b, "\n");
    }
}

sl_err sl_iamstore_to_text(const sl_iamstore *s, char **out, size_t *len) {
    sl_text b = {0};
    const data *d = &s->d;
    sl_text_puts(&b, MAGIC "\n" COMMENT "\ncheck ");
    sb_b64(&b, s->check, CHECK_LEN);
    sl_text_puts(&b, "\n");
    for (int i = 0; i < d->np; i++) {
        sl_text_printf(&b, "policy %s ", d->p[i].name);
        sb_b64(&b, (const uint8_t *)d->p[i].doc, d->p[i].len);
        sl_text_puts(&b, "\n");
    }
    for (int i = 0; i < d->nu; i++)
        sl_text_printf(&b, "user %s %lld\n", d->u[i].name, (long long)d->u[i].created);
    for (int i = 0; i < d->nu; i++) sb_tags(&b, "user", d->u[i].name, &d->u[i].tags);
    for (int i = 0; i < d->nk; i++) {
        const ikey *k = &d->k[i];
        sl_text_printf(&b, "key %s %s %s %lld %lld ", k->akid, k->user,
                       k->active ? "active" : "inactive", (long long)k->created,
                       (long long)k->last_used);
        sb_b64(&b, k->sealed, SEALED_LEN);
        sl_text_puts(&b, "\n");
    }
    for (int i = 0; i < d->nr; i++)
        sl_text_printf(&b, "role %s %s %lld\n", d->r[i].name, d->r[i].id, (long long)d->r[i].max_s);
    for (int i = 0; i < d->nr; i++) sb_tags(&b, "role", d->r[i].name, &d->r[i].tags);
    for (int i = 0; i < d->nu; i++)
        for (int j = 0; j < d->u[i].att.n; j++)
            sl_text_printf(&b, "attach user %s %s\n", d->u[i].name, d->u[i].att.v[j]);
    for (int i = 0; i < d->nr; i++)
        for (int j = 0; j < d->r[i].att.n; j++)
            sl_text_printf(&b, "attach role %s %s\n", d->r[i].name, d->r[i].att.v[j]);
    if (b.oom) {
        free(b.p);
        return SL_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return SL_OK;
}

/* ---- the file format: reading ---- */

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool pct_decode(const char *in, char *out, size_t cap) {
    size_t o = 0;
    if (!strcmp(in, "-")) {
        out[0] = 0;
        return true;
    }
    for (; *in; in++) {
        char ch = *in;
        if (ch == '%') {
            int h = hexv(in[1]), l = h >= 0 ? hexv(in[2]) : -1;
            if (l < 0) return false;
            ch = (char)(h << 4 | l);
            in += 2;
        }
        if (o + 1 >= cap || !ch) return false;
        out[o++] = ch;
    }
    out[o] = 0;
    return o > 0;
}

static bool parse_i64(const char *s, int64_t max, int64_t *out) {
    if (!*s || strlen(s) > 18) return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (*s - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

static int split(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return -1;
        f[n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    for (int i = 0; i < n; i++)
        if (!f[i][0]) return -1;
    return n;
}

static sl_err att_add(attlist *a, const char *p) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->v[i], p)) return SL_EEXISTS;
    if (a->n >= SL_IAM_MAX_ATTACHED) return SL_ETOOLARGE;
    snprintf(a->v[a->n++], sizeof a->v[0], "%s", p);
    return SL_OK;
}

/* One line into d; false: malformed (why in err). */
static bool parse_line(const sl_iamstore *s, data *d, char *line, bool *have_check, char *why,
                       size_t wlen) {
    char *f[8];
    int nf = split(line, f, 8);
    if (nf < 1) return false;
    int64_t a = 0, b2 = 0;
    if (nf == 2 && !strcmp(f[0], "check")) {
        uint8_t c[CHECK_LEN + 4];
        size_t cl = 0;
        if (*have_check || !sl_b64std_decode(f[1], strlen(f[1]), c, sizeof c, &cl) ||
            cl != CHECK_LEN)
            return false;
        if (CRYPTO_memcmp(c, s->check, CHECK_LEN)) {
            snprintf(why, wlen, "the IAM key file does not match this store (wrong key file?)");
            return false;
        }
        *have_check = true;
        return true;
    }
    if (!*have_check) return false;
    if (nf == 3 && !strcmp(f[0], "policy")) {
        if (!name_ok(f[1]) || find_policy(d, f[1]) >= 0) return false;
        size_t bl = strlen(f[2]), dl = 0;
        if (bl > sl_b64_enc_len(SL_IAM_POLICY_MAX_BYTES)) return false;
        char *doc = malloc(sl_b64_dec_max(bl) + 1);
        if (!doc) return false;
        if (!sl_b64std_decode(f[2], bl, (uint8_t *)doc, sl_b64_dec_max(bl), &dl) ||
            dl > SL_IAM_POLICY_MAX_BYTES) {
            free(doc);
            return false;
        }
        doc[dl] = 0;
        sl_iam_policy *p = NULL;
        char perr[256] = "refused";
        if (sl_iam_policy_parse(f[1], doc, dl, &p, perr, sizeof perr) || !p) {
            snprintf(why, wlen, "policy %s does not parse: %s", f[1], perr);
            free(doc);
            return false;
        }
        ipolicy *np = grow(d->p, &d->cp, d->np, sizeof *d->p);
        if (!np) {
            free(doc);
            sl_iam_policy_free(p);
            return false;
        }
        d->p = np;
        ipolicy *e = &d->p[d->np++];
        snprintf(e->name, sizeof e->name, "%s", f[1]);
        e->doc = doc;
        e->len = dl;
        e->p = p;
        return true;
    }
    if (nf == 3 && !strcmp(f[0], "user")) {
        if (!name_ok(f[1]) || find_user(d, f[1]) >= 0 || !parse_i64(f[2], INT64_MAX, &a))
            return false;
        iuser *nu = grow(d->u, &d->cu, d->nu, sizeof *d->u);
        if (!nu) return false;
        d->u = nu;
        iuser *u = &d->u[d->nu++];
        memset(u, 0, sizeof *u);
        snprintf(u->name, sizeof u->name, "%s", f[1]);
        u->created = a;
        return true;
    }
    if (nf == 5 && !strcmp(f[0], "tag")) {
        taglist *t = NULL;
        if (!strcmp(f[1], "user")) {
            int i = find_user(d, f[2]);
            if (i >= 0) t = &d->u[i].tags;
        } else if (!strcmp(f[1], "role")) {
            int i = find_role(d, f[2]);
            if (i >= 0) t = &d->r[i].tags;
        }
        char k[TAG_KEY_MAX + 1], v[TAG_VALUE_MAX + 1];
        return t && pct_decode(f[3], k, sizeof k) && pct_decode(f[4], v, sizeof v) &&
               tag_push(t, k, v) == SL_OK;
    }
    if (nf == 7 && !strcmp(f[0], "key")) {
        uint8_t sealed[SEALED_LEN + 4];
        size_t sl = 0;
        bool act = !strcmp(f[3], "active");
        if ((!akid_ok(f[1], "AKIA")) || find_key(d, f[1]) >= 0 || find_user(d, f[2]) < 0 ||
            (!act && strcmp(f[3], "inactive")) || !parse_i64(f[4], INT64_MAX, &a) ||
            !parse_i64(f[5], INT64_MAX, &b2) ||
            !sl_b64std_decode(f[6], strlen(f[6]), sealed, sizeof sealed, &sl) || sl != SEALED_LEN)
            return false;
        int per_user = 0;
        for (int i = 0; i < d->nk; i++) per_user += !strcmp(d->k[i].user, f[2]);
        if (per_user >= SL_IAM_MAX_KEYS) return false;
        ikey *nk = grow(d->k, &d->ck, d->nk, sizeof *d->k);
        if (!nk) return false;
        d->k = nk;
        ikey *k = &d->k[d->nk++];
        memset(k, 0, sizeof *k);
        snprintf(k->akid, sizeof k->akid, "%s", f[1]);
        snprintf(k->user, sizeof k->user, "%s", f[2]);
        k->active = act;
        k->created = a;
        k->last_used = k->saved_use = b2;
        memcpy(k->sealed, sealed, SEALED_LEN);
        return true;
    }
    if (nf == 4 && !strcmp(f[0], "role")) {
        if (!name_ok(f[1]) || find_role(d, f[1]) >= 0 || !akid_ok(f[2], "AROA") ||
            !parse_i64(f[3], MAX_SESSION_S, &a) || a < MIN_SESSION_S)
            return false;
        irole *nr = grow(d->r, &d->cr, d->nr, sizeof *d->r);
        if (!nr) return false;
        d->r = nr;
        irole *r = &d->r[d->nr++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", f[1]);
        snprintf(r->id, sizeof r->id, "%s", f[2]);
        r->max_s = a;
        return true;
    }
    if (nf == 4 && !strcmp(f[0], "attach")) {
        attlist *at = NULL;
        if (!strcmp(f[1], "user")) {
            int i = find_user(d, f[2]);
            if (i >= 0) at = &d->u[i].att;
        } else if (!strcmp(f[1], "role")) {
            int i = find_role(d, f[2]);
            if (i >= 0) at = &d->r[i].att;
        }
        return at && find_policy(d, f[3]) >= 0 && att_add(at, f[3]) == SL_OK;
    }
    return false;
}

/* Parses text[len] into *out (fresh); nothing else changes. */
static sl_err parse_text(const sl_iamstore *s, const char *text, size_t len, data *out, char *err,
                         size_t elen) {
    memset(out, 0, sizeof *out);
    if (len > MAX_FILE) {
        snprintf(err, elen, "IAM store %s is too large", s->path);
        return SL_ECONFIG;
    }
    char *buf = malloc(len + 1);
    if (!buf) return SL_ENOMEM;
    memcpy(buf, text, len);
    buf[len] = 0;
    data d = {0};
    bool have_check = false;
    int lineno = 0;
    char why[320] = "";
    char *p = buf, *end = buf + len;
    bool ok = true;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        *le = 0;
        lineno++;
        if (memchr(p, 0, (size_t)(le - p))) { /* a NUL inside the line */
            ok = false;
            break;
        }
        if (lineno == 1) {
            if (strcmp(p, MAGIC)) {
                snprintf(why, sizeof why, "not a sluice IAM store (expected \"%s\")", MAGIC);
                ok = false;
                break;
            }
        } else if (p[0] && p[0] != '#' && !parse_line(s, &d, p, &have_check, why, sizeof why)) {
            ok = false;
            break;
        }
        p = le + 1;
    }
    if (ok && lineno == 0) {
        snprintf(why, sizeof why, "empty file");
        ok = false;
    }
    if (ok && !have_check) {
        snprintf(why, sizeof why, "no check line");
        ok = false;
    }
    OPENSSL_clear_free(buf, len + 1);
    if (!ok) {
        data_free(&d);
        if (why[0])
            snprintf(err, elen, "IAM store %s: line %d: %s", s->path, lineno, why);
        else
            snprintf(err, elen, "IAM store %s: line %d is malformed", s->path, lineno);
        return SL_ECONFIG;
    }
    *out = d;
    return SL_OK;
}

/* Replaces the loaded contents, keeping uses noted in memory but not yet saved. */
static void install(sl_iamstore *s, data *d) {
    for (int i = 0; i < d->nk; i++) {
        int j = find_key(&s->d, d->k[i].akid);
        if (j < 0) continue;
        const ikey *o = &s->d.k[j];
        if (o->last_used > d->k[i].last_used) d->k[i].last_used = o->last_used;
        if (o->saved_use > d->k[i].saved_use) d->k[i].saved_use = o->saved_use;
    }
    data_free(&s->d);
    s->d = *d;
    memset(d, 0, sizeof *d);
}

static sl_err load(sl_iamstore *s, char *err, size_t elen) {
    struct stat st;
    sl_err oe;
    int fd = sl_file_open_private(s->path, "IAM store", &st, &oe, err, elen);
    if (fd < 0) return oe;
    if (st.st_size > MAX_FILE) {
        snprintf(err, elen, "IAM store %s is too large", s->path);
        close(fd);
        return SL_ECONFIG;
    }
    size_t sz = (size_t)st.st_size;
    char *text = malloc(sz + 1);
    if (!text) {
        close(fd);
        return SL_ENOMEM;
    }
    size_t got = sl_read_full(fd, text, sz);
    close(fd);
    sl_err e = SL_EIO;
    data d;
    if (got != sz)
        snprintf(err, elen, "cannot read IAM store %s", s->path);
    else
        e = parse_text(s, text, sz, &d, err, elen);
    free(text);
    if (!e) {
        install(s, &d);
        s->has_file = true;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->size = st.st_size;
        s->mtime = st.st_mtim;
    }
    return e;
}

/* ---- the key file ---- */

static sl_err key_read(const char *path, uint8_t key[KEY_LEN], char *err, size_t elen) {
    struct stat st;
    sl_err e = SL_OK;
    int fd = sl_file_open_private(path, "IAM key file", &st, &e, err, elen);
    if (fd < 0) return e == SL_EIO ? SL_ECONFIG : e;
    if (st.st_size != KEY_LEN || sl_read_full(fd, key, KEY_LEN) != KEY_LEN) {
        snprintf(err, elen, "IAM key file %s must hold exactly %d bytes", path, KEY_LEN);
        e = SL_ECONFIG;
    }
    close(fd);
    if (e) OPENSSL_cleanse(key, KEY_LEN);
    return e;
}

/* Writes a new random key unless one appeared meanwhile (link() does not replace). */
static sl_err key_create(const char *path, char *err, size_t elen) {
    (void)sl_mkdir_parent(path, 0700);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    uint8_t k[KEY_LEN];
    if (RAND_bytes(k, sizeof k) != 1) return SL_ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0 && !fchmod(fd, 0600) && sl_write_all(fd, k, sizeof k) && !fsync(fd);
    OPENSSL_cleanse(k, sizeof k);
    if (fd >= 0 && close(fd)) ok = false;
    if (ok && link(tmp, path) && errno != EEXIST) ok = false;
    unlink(tmp);
    if (!ok) {
        snprintf(err, elen, "cannot create IAM key file %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    char dir[4096];
    sl_parent_dir(path, dir, sizeof dir);
    (void)sl_fsync_dir(dir);
    return SL_OK;
}

/* ---- lifecycle ---- */

void sl_iamstore_paths(const sl_config *cfg, char *file, size_t flen, char *keyfile, size_t klen) {
    if (cfg->sluice_iam_file[0])
        snprintf(file, flen, "%s", cfg->sluice_iam_file);
    else
        snprintf(file, flen, "%s/sluice-iam", cfg->log_dirs);
    if (cfg->sluice_iam_key_file[0]) {
        snprintf(keyfile, klen, "%s", cfg->sluice_iam_key_file);
    } else {
        char dir[SL_CFG_STR_MAX];
        sl_config_secrets_dir(cfg, dir, sizeof dir);
        snprintf(keyfile, klen, "%s/sluice-iam.key", dir);
    }
}

static sl_iamstore *store_new(void) {
    sl_iamstore *s = calloc(1, sizeof *s);
    if (s) s->lock_fd = -1;
    return s;
}

static sl_err write_file(sl_iamstore *s, bool noreplace);

sl_err sl_iamstore_open(const char *path, const char *keyfile, bool create, sl_iamstore **out,
                        char *err, size_t elen) {
    *out = NULL;
    sl_iamstore *s = store_new();
    if (!s) return SL_ENOMEM;
    if (snprintf(s->path, sizeof s->path, "%s", path) >= (int)sizeof s->path ||
        snprintf(s->keypath, sizeof s->keypath, "%s", keyfile) >= (int)sizeof s->keypath) {
        snprintf(err, elen, "IAM store path too long");
        free(s);
        return SL_ECONFIG;
    }
    struct stat st;
    bool missing = lstat(path, &st) && errno == ENOENT;
    if (missing && !create) {
        snprintf(err, elen, "IAM store %s does not exist", path);
        sl_iamstore_free(s);
        return SL_ENOTFOUND;
    }
    uint8_t k[KEY_LEN];
    sl_err e = key_read(keyfile, k, err, elen);
    if (e == SL_ENOTFOUND && missing) {
        e = key_create(keyfile, err, elen);
        if (!e) e = key_read(keyfile, k, err, elen);
    } else if (e == SL_ENOTFOUND) {
        snprintf(err, elen,
                 "IAM key file %s is missing but the store %s exists: its secrets cannot be read "
                 "without the key it was written with",
                 keyfile, path);
        e = SL_ECONFIG;
    }
    if (!e && !derive_keys(s, k)) e = SL_ENOMEM;
    OPENSSL_cleanse(k, sizeof k);
    if (!e) e = load(s, err, elen);
    if (e == SL_ENOTFOUND && create) {
        (void)sl_mkdir_parent(path, 0700);
        e = write_file(s, true);
        if (e)
            snprintf(err, elen, "cannot create IAM store %s: %s", path, sl_strerror(e));
        else
            e = load(s, err, elen);
    }
    if (e) {
        sl_iamstore_free(s);
        return e;
    }
    *out = s;
    return SL_OK;
}

sl_err sl_iamstore_from_text(const uint8_t k[SL_IAM_KEY_LEN], const char *text, size_t len,
                             sl_iamstore **out, char *err, size_t elen) {
    *out = NULL;
    sl_iamstore *s = store_new();
    if (!s) return SL_ENOMEM;
    snprintf(s->path, sizeof s->path, "(text)");
    data d;
    sl_err e = derive_keys(s, k) ? parse_text(s, text, len, &d, err, elen) : SL_ENOMEM;
    if (e) {
        sl_iamstore_free(s);
        return e;
    }
    install(s, &d);
    *out = s;
    return SL_OK;
}

void sl_iamstore_free(sl_iamstore *s) {
    if (!s) return;
    if (s->lock_fd >= 0) close(s->lock_fd);
    data_free(&s->d);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

const char *sl_iamstore_path(const sl_iamstore *s) { return s->path; }

sl_err sl_iamstore_refresh(sl_iamstore *s) {
    if (!s->has_file) return SL_ESTATE;
    struct stat st;
    if (stat(s->path, &st)) return SL_EIO;
    if (st.st_dev == s->dev && st.st_ino == s->ino && st.st_size == s->size &&
        st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec)
        return SL_OK;
    char err[512];
    sl_err e = load(s, err, sizeof err);
    if (e)
        SL_WARN("iam", "IAM store reload failed; keeping the loaded one", "err=\"%s\"", err);
    else
        SL_INFO("iam", "IAM store reloaded", "path=%s users=%d roles=%d policies=%d", s->path,
                s->d.nu, s->d.nr, s->d.np);
    return e;
}

static sl_err write_file(sl_iamstore *s, bool noreplace) {
    char *text = NULL;
    size_t len = 0;
    sl_err e = sl_iamstore_to_text(s, &text, &len);
    if (e) return e;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s->path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) e = SL_EIO;
    /* fchmod in case the file pre-existed with a wider mode or the umask is unusual. */
    else if (fchmod(fd, 0600) || !sl_write_all(fd, text, len) || fsync(fd))
        e = errno == ENOSPC ? SL_ENOSPC : SL_EIO;
    if (fd >= 0 && close(fd) && !e) e = SL_EIO;
    free(text);
    if (!e) {
        /* A new store must not replace one another process created meanwhile. */
        if (noreplace ? (link(tmp, s->path) && errno != EEXIST) : rename(tmp, s->path) != 0)
            e = SL_EIO;
    }
    if (e || noreplace) unlink(tmp);
    if (e) return e;
    char dir[4096];
    sl_parent_dir(s->path, dir, sizeof dir);
    e = sl_fsync_dir(dir);
    struct stat st;
    if (!e && !noreplace && !stat(s->path, &st)) {
        s->has_file = true;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->size = st.st_size;
        s->mtime = st.st_mtim;
        for (int i = 0; i < s->d.nk; i++) s->d.k[i].saved_use = s->d.k[i].last_used;
    }
    return e;
}

sl_err sl_iamstore_save(sl_iamstore *s) {
    if (!s->has_file) return SL_ESTATE;
    return write_file(s, false);
}

static sl_err lock_fd(sl_iamstore *s) {
    if (s->lock_fd >= 0) return SL_OK;
    if (!s->has_file) return SL_ESTATE;
    char lp[4200];
    snprintf(lp, sizeof lp, "%s.lock", s->path);
    s->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    return s->lock_fd < 0 ? SL_EIO : SL_OK;
}

sl_err sl_iamstore_lock(sl_iamstore *s) {
    sl_err e = lock_fd(s);
    if (e) return e;
    while (flock(s->lock_fd, LOCK_EX))
        if (errno != EINTR) return SL_EIO;
    e = sl_iamstore_refresh(s);
    if (e) flock(s->lock_fd, LOCK_UN);
    return e;
}

void sl_iamstore_unlock(sl_iamstore *s) {
    if (s->lock_fd >= 0) flock(s->lock_fd, LOCK_UN);
}

/* ---- users and keys ---- */

sl_err sl_iamstore_user_add(sl_iamstore *s, const char *name, const sl_iam_tag *tags, size_t ntags,
                            int64_t now_s) {
    if (!name_ok(name) || now_s < 0) return SL_EINVAL;
    if (find_user(&s->d, name) >= 0) return SL_EEXISTS;
    taglist t = {0};
    sl_err e = tags_set(&t, tags, ntags);
    if (e) return e;
    iuser *nu = grow(s->d.u, &s->d.cu, s->d.nu, sizeof *s->d.u);
    if (!nu) {
        tags_free(&t);
        return SL_ENOMEM;
    }
    s->d.u = nu;
    iuser *u = &s->d.u[s->d.nu++];
    memset(u, 0, sizeof *u);
    snprintf(u->name, sizeof u->name, "%s", name);
    u->created = now_s;
    u->tags = t;
    return SL_OK;
}

static void key_del(data *d, int i) {
    OPENSSL_cleanse(&d->k[i], sizeof d->k[i]);
    memmove(&d->k[i], &d->k[i + 1], (size_t)(d->nk - i - 1) * sizeof *d->k);
    d->nk--;
}

sl_err sl_iamstore_user_rm(sl_iamstore *s, const char *name) {
    int i = name ? find_user(&s->d, name) : -1;
    if (i < 0) return SL_ENOTFOUND;
    for (int k = 0; k < s->d.nk;)
        if (!strcmp(s->d.k[k].user, name))
            key_del(&s->d, k);
        else
            k++;
    tags_free(&s->d.u[i].tags);
    memmove(&s->d.u[i], &s->d.u[i + 1], (size_t)(s->d.nu - i - 1) * sizeof *s->d.u);
    s->d.nu--;
    return SL_OK;
}

int sl_iamstore_user_count(const sl_iamstore *s) { return s->d.nu; }

const char *sl_iamstore_user_at(const sl_iamstore *s, int i) {
    return i >= 0 && i < s->d.nu ? s->d.u[i].name : NULL;
}

int sl_iamstore_user_keys(const sl_iamstore *s, const char *user, sl_iam_key_info *out, int max) {
    if (!user || find_user(&s->d, user) < 0) return -1;
    int n = 0;
    for (int i = 0; i < s->d.nk; i++) {
        const ikey *k = &s->d.k[i];
        if (strcmp(k->user, user)) continue;
        if (out && n < max) {
            memset(&out[n], 0, sizeof out[n]);
            memcpy(out[n].akid, k->akid, sizeof out[n].akid);
            out[n].active = k->active;
            out[n].created_s = k->created;
            out[n].last_used_s = k->last_used;
        }
        n++;
    }
    return n;
}

sl_err sl_iamstore_key_create(sl_iamstore *s, const char *user, int64_t now_s, char *akid,
                              char *secret) {
    if (!user || find_user(&s->d, user) < 0) return SL_ENOTFOUND;
    if (sl_iamstore_user_keys(s, user, NULL, 0) >= SL_IAM_MAX_KEYS) return SL_ETOOLARGE;
    ikey k = {0};
    if (!random_id(&s->d, "AKIA", k.akid) || !random_secret(secret)) return SL_ENOMEM;
    if (!seal_secret(s, k.akid, secret, k.sealed)) {
        OPENSSL_cleanse(secret, SL_IAM_SECRET_LEN + 1);
        return SL_ENOMEM;
    }
    ikey *nk = grow(s->d.k, &s->d.ck, s->d.nk, sizeof *s->d.k);
    if (!nk) {
        OPENSSL_cleanse(secret, SL_IAM_SECRET_LEN + 1);
        return SL_ENOMEM;
    }
    s->d.k = nk;
    snprintf(k.user, sizeof k.user, "%s", user);
    k.active = true;
    k.created = now_s;
    s->d.k[s->d.nk++] = k;
    memcpy(akid, k.akid, sizeof k.akid);
    return SL_OK;
}

sl_err sl_iamstore_key_set_active(sl_iamstore *s, const char *akid, bool active) {
    int i = akid ? find_key(&s->d, akid) : -1;
    if (i < 0) return SL_ENOTFOUND;
    s->d.k[i].active = active;
    return SL_OK;
}

sl_err sl_iamstore_key_rm(sl_iamstore *s, const char *akid) {
    int i = akid ? find_key(&s->d, akid) : -1;
    if (i < 0) return SL_ENOTFOUND;
    key_del(&s->d, i);
    return SL_OK;
}

const char *sl_iamstore_key_user(const sl_iamstore *s, const char *akid) {
    int i = akid ? find_key(&s->d, akid) : -1;
    return i < 0 ? NULL : s->d.k[i].user;
}

/* ---- roles ---- */

sl_err sl_iamstore_role_add(sl_iamstore *s, const char *name, int64_t max_session_s,
                            const sl_iam_tag *tags, size_t ntags) {
    if (!name_ok(name)) return SL_EINVAL;
    if (!max_session_s) max_session_s = DEF_SESSION_S;
    if (max_session_s < MIN_SESSION_S || max_session_s > MAX_SESSION_S) return SL_EINVAL;
    if (find_role(&s->d, name) >= 0) return SL_EEXISTS;
    taglist t = {0};
    sl_err e = tags_set(&t, tags, ntags);
    if (e) return e;
    irole *nr = grow(s->d.r, &s->d.cr, s->d.nr, sizeof *s->d.r);
    if (!nr) {
        tags_free(&t);
        return SL_ENOMEM;
    }
    s->d.r = nr;
    irole *r = &s->d.r[s->d.nr];
    memset(r, 0, sizeof *r);
    if (!random_id(NULL, "AROA", r->id)) {
        tags_free(&t);
        return SL_ENOMEM;
    }
    s->d.nr++;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->max_s = max_session_s;
    r->tags = t;
    return SL_OK;
}

sl_err sl_iamstore_role_rm(sl_iamstore *s, const char *name) {
    int i = name ? find_role(&s->d, name) : -1;
    if (i < 0) return SL_ENOTFOUND;
    tags_free(&s->d.r[i].tags);
    memmove(&s->d.r[i], &s->d.r[i + 1], (size_t)(s->d.nr - i - 1) * sizeof *s->d.r);
    s->d.nr--;
    return SL_OK;
}

int sl_iamstore_role_count(const sl_iamstore *s) { return s->d.nr; }

const char *sl_iamstore_role_at(const sl_iamstore *s, int i, int64_t *max_session_s) {
    if (i < 0 || i >= s->d.nr) return NULL;
    if (max_session_s) *max_session_s = s->d.r[i].max_s;
    return s->d.r[i].name;
}

sl_err sl_iamstore_assume_role(sl_iamstore *s, const char *role_name, const char *session_name,
                               int64_t duration_s, int64_t now_s, char *akid, char *secret,
                               char *token, int64_t *expiry_s) {
    int r = role_name ? find_role(&s->d, role_name) : -1;
    if (r < 0) return SL_ENOTFOUND;
    if (!session_name || !session_name[0]) session_name = DEF_SESSION;
    if (!iam_name_ok(session_name, SESSION_MIN, SESSION_MAX) || duration_s < MIN_SESSION_S ||
        duration_s > s->d.r[r].max_s || now_s < 0 || now_s > INT64_MAX / 2)
        return SL_EINVAL;
    session ss = {0};
    ss.expiry = now_s + duration_s;
    snprintf(ss.role, sizeof ss.role, "%s", s->d.r[r].name);
    snprintf(ss.role_id, sizeof ss.role_id, "%s", s->d.r[r].id);
    snprintf(ss.name, sizeof ss.name, "%s", session_name);
    bool ok = random_id(NULL, "ASIA", ss.akid) && random_secret(ss.secret) &&
              token_seal(s, &ss, token, SL_IAM_TOKEN_MAX);
    if (ok) {
        memcpy(akid, ss.akid, sizeof ss.akid);
        memcpy(secret, ss.secret, sizeof ss.secret);
        if (expiry_s) *expiry_s = ss.expiry;
    }
    OPENSSL_cleanse(&ss, sizeof ss);
    return ok ? SL_OK : SL_ENOMEM;
}

/* ---- policies ---- */

sl_err sl_iamstore_policy_put(sl_iamstore *s, const char *name, const char *json, size_t len,
                              char *err, size_t elen) {
    if (!name_ok(name)) {
        snprintf(err, elen, "invalid policy name (use [A-Za-z0-9+=,.@_-], 1..%d characters)",
                 NAME_MAX_);
        return SL_EINVAL;
    }
    if (len > SL_IAM_POLICY_MAX_BYTES) {
        snprintf(err, elen, "policy document larger than %d bytes", SL_IAM_POLICY_MAX_BYTES);
        return SL_EINVAL;
    }
    sl_iam_policy *p = NULL;
    if (elen) err[0] = 0;
    sl_err e = sl_iam_policy_parse(name, json, len, &p, err, elen);
    if (e || !p) {
        if (elen && !err[0]) snprintf(err, elen, "policy document refused");
        return e ? e : SL_EINVAL;
    }
    char *doc = malloc(len + 1);
    if (!doc) {
        sl_iam_policy_free(p);
        return SL_ENOMEM;
    }
    if (len) memcpy(doc, json, len);
    doc[len] = 0;
    int i = find_policy(&s->d, name);
    if (i < 0) {
        ipolicy *np = grow(s->d.p, &s->d.cp, s->d.np, sizeof *s->d.p);
        if (!np) {
            free(doc);
            sl_iam_policy_free(p);
            return SL_ENOMEM;
        }
        s->d.p = np;
        i = s->d.np++;
        memset(&s->d.p[i], 0, sizeof s->d.p[i]);
        snprintf(s->d.p[i].name, sizeof s->d.p[i].name, "%s", name);
    }
    free(s->d.p[i].doc);
    sl_iam_policy_free(s->d.p[i].p);
    s->d.p[i].doc = doc;
    s->d.p[i].len = len;
    s->d.p[i].p = p;
    return SL_OK;
}

const char *sl_iamstore_policy_get(const sl_iamstore *s, const char *name, size_t *len) {
    int i = name ? find_policy(&s->d, name) : -1;
    if (i < 0) return NULL;
    if (len) *len = s->d.p[i].len;
    return s->d.p[i].doc;
}

static bool attached(const attlist *a, const char *p) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->v[i], p)) return true;
    return false;
}

sl_err sl_iamstore_policy_rm(sl_iamstore *s, const char *name) {
    int i = name ? find_policy(&s->d, name) : -1;
    if (i < 0) return SL_ENOTFOUND;
    for (int j = 0; j < s->d.nu; j++)
        if (attached(&s->d.u[j].att, name)) return SL_ESTATE;
    for (int j = 0; j < s->d.nr; j++)
        if (attached(&s->d.r[j].att, name)) return SL_ESTATE;
    free(s->d.p[i].doc);
    sl_iam_policy_free(s->d.p[i].p);
    memmove(&s->d.p[i], &s->d.p[i + 1], (size_t)(s->d.np - i - 1) * sizeof *s->d.p);
    s->d.np--;
    return SL_OK;
}

int sl_iamstore_policy_count(const sl_iamstore *s) { return s->d.np; }

const char *sl_iamstore_policy_at(const sl_iamstore *s, int i) {
    return i >= 0 && i < s->d.np ? s->d.p[i].name : NULL;
}

static attlist *target_att(sl_iamstore *s, bool is_role, const char *target) {
    if (!target) return NULL;
    int i = is_role ? find_role(&s->d, target) : find_user(&s->d, target);
    return i < 0 ? NULL : is_role ? &s->d.r[i].att : &s->d.u[i].att;
}

sl_err sl_iamstore_attach(sl_iamstore *s, const char *pol, bool is_role, const char *target) {
    attlist *a = target_att(s, is_role, target);
    if (!a || !pol || find_policy(&s->d, pol) < 0) return SL_ENOTFOUND;
    sl_err e = att_add(a, pol);
    return e == SL_EEXISTS ? SL_OK : e; /* attaching twice is harmless, as IAM */
}

sl_err sl_iamstore_detach(sl_iamstore *s, const char *pol, bool is_role, const char *target) {
    attlist *a = target_att(s, is_role, target);
    if (!a || !pol) return SL_ENOTFOUND;
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->v[i], pol)) {
            memmove(a->v[i], a->v[i + 1], (size_t)(a->n - i - 1) * sizeof a->v[0]);
            a->n--;
            return SL_OK;
        }
    return SL_ENOTFOUND;
}

/* ---- verification ---- */

static bool has_token(const char *t) { return t && t[0]; }

bool sl_iamstore_secret_lookup(void *store, const char *akid, const char *session_token,
                               char *secret, size_t cap) {
    const sl_iamstore *s = store;
    char sec[SL_IAM_SECRET_LEN + 1];
    bool ok = false;
    if (!akid || cap <= SL_IAM_SECRET_LEN) return false;
    if (akid_ok(akid, "ASIA") && has_token(session_token)) {
        session ss;
        if (session_valid(s, akid, session_token, &ss)) {
            memcpy(sec, ss.secret, sizeof sec);
            ok = true;
        }
        OPENSSL_cleanse(&ss, sizeof ss);
    } else if (akid_ok(akid, "AKIA") && !has_token(session_token)) {
        int i = find_key(&s->d, akid);
        const ikey *k = i >= 0 ? &s->d.k[i] : NULL;
        bool usable = k && k->active && find_user(&s->d, k->user) >= 0;
        /* An unknown or disabled key costs a decryption too (of a blob that never opens), so
         * the lookup's time does not tell which key ids exist. */
        ikey dummy;
        memset(&dummy, 0, sizeof dummy);
        memcpy(dummy.akid, akid, SL_IAM_AKID_LEN);
        ok = open_secret(s, usable ? k : &dummy, sec) && usable;
    }
    if (ok) memcpy(secret, sec, sizeof sec);
    OPENSSL_cleanse(sec, sizeof sec);
    return ok;
}

sl_err sl_iamstore_identity(sl_iamstore *s, const char *akid, const char *session_token,
                            const char *account, sl_iam_identity *out) {
    memset(out, 0, sizeof *out);
    if (!akid || !account) return SL_ENOTFOUND;
    if (akid_ok(akid, "ASIA") && has_token(session_token)) {
        session ss;
        if (!session_valid(s, akid, session_token, &ss)) return SL_ENOTFOUND;
        out->role = true;
        snprintf(out->name, sizeof out->name, "%s", ss.role);
        snprintf(out->session, sizeof out->session, "%s", ss.name);
        out->expiry_s = ss.expiry;
        OPENSSL_cleanse(&ss, sizeof ss);
        if (snprintf(out->arn, sizeof out->arn, "arn:aws:sts::%s:assumed-role/%s/%s", account,
                     out->name, out->session) >= (int)sizeof out->arn) {
            memset(out, 0, sizeof *out);
            return SL_ENOTFOUND;
        }
    } else if (akid_ok(akid, "AKIA") && !has_token(session_token)) {
        int i = find_key(&s->d, akid);
        if (i < 0 || !s->d.k[i].active || find_user(&s->d, s->d.k[i].user) < 0) return SL_ENOTFOUND;
        snprintf(out->name, sizeof out->name, "%s", s->d.k[i].user);
        if (!sl_iam_principal_arn(account, false, out->name, out->arn, sizeof out->arn)) {
            memset(out, 0, sizeof *out);
            return SL_ENOTFOUND;
        }
    } else {
        return SL_ENOTFOUND;
    }
    memcpy(out->akid, akid, SL_IAM_AKID_LEN + 1);
    return SL_OK;
}

void sl_iamstore_note_use(sl_iamstore *s, const char *akid, int64_t now_s) {
    int i = akid ? find_key(&s->d, akid) : -1;
    if (i < 0) return;
    ikey *k = &s->d.k[i];
    if (now_s > k->last_used) k->last_used = now_s;
    if (now_s - k->saved_use < USE_SAVE_EVERY) return;
    /* On the loop thread: never wait for the lock (a busy writer means next time) and never
     * reload here (that would invalidate what the store handed out, and is refresh's job): when
     * another writer changed the file since it was loaded, the save waits for the next use
     * after a refresh, which keeps the uses noted in memory. */
    sl_err e = lock_fd(s);
    if (e) goto out;
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB)) return;
    struct stat st;
    bool same = !stat(s->path, &st) && st.st_dev == s->dev && st.st_ino == s->ino &&
                st.st_size == s->size && st.st_mtim.tv_sec == s->mtime.tv_sec &&
                st.st_mtim.tv_nsec == s->mtime.tv_nsec;
    if (same) e = sl_iamstore_save(s);
    flock(s->lock_fd, LOCK_UN);
out:
    if (!e) return;
    /* Not again for a minute: a failing disk must not cost every login a write. */
    k->saved_use = now_s;
    SL_WARN("iam", "cannot record an access key's last use", "akid=%s err=\"%s\"", akid,
            sl_strerror(e));
}

size_t sl_iamstore_policies_for(const sl_iamstore *s, const sl_iam_identity *id,
                                const sl_iam_policy **out, size_t max, sl_iam_tag *tags,
                                size_t tmax, size_t *ntags) {
    if (ntags) *ntags = 0;
    if (!id) return 0;
    const attlist *a = NULL;
    const taglist *t = NULL;
    if (id->role) {
        int i = find_role(&s->d, id->name);
        if (i >= 0) a = &s->d.r[i].att, t = &s->d.r[i].tags;
    } else {
        int i = find_user(&s->d, id->name);
        if (i >= 0) a = &s->d.u[i].att, t = &s->d.u[i].tags;
    }
    if (!a) return 0;
    size_t n = 0;
    for (int j = 0; j < a->n && n < max; j++) {
        int p = find_policy(&s->d, a->v[j]);
        if (p >= 0 && s->d.p[p].p) out[n++] = s->d.p[p].p;
    }
    size_t nt = 0;
    for (size_t j = 0; j < t->n && nt < tmax && tags; j++) tags[nt++] = t->v[j];
    if (ntags) *ntags = nt;
    return n;
}

bool sl_iam_principal_arn(const char *account, bool role, const char *name, char *out, size_t cap) {
    int n = snprintf(out, cap, "arn:aws:iam::%s:%s/%s", account, role ? "role" : "user", name);
    return n >= 0 && (size_t)n < cap;
}
