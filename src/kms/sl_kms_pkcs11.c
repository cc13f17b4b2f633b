/* The pkcs11 KMS provider: key-encryption keys are non-extractable AES-256 secret keys on a
 * PKCS#11 token (an HSM, or SoftHSM2 for trying), labelled "<sluice.kms.pkcs11.key.label>-v<n>".
 * The module is dlopen'ed (p11-kit's proxy by default) so the broker has no link dependency on
 * any vendor library; nothing talks to the token until the first call, so a broker starts while
 * the HSM is down and recovers by itself when it comes back (docs/kms-pkcs11.md).
 *
 * Wrapped forms (the first byte says which, so a keyring written on one token type still
 * unwraps after a module change):
 *   0x01 || IV (12, from C_GenerateRandom) || AES-256-GCM(KEK, IV, AAD = context, topic key)
 *        || tag (16)                                                   (CKM_AES_GCM, preferred)
 *   0x02 || RFC 5649(KEK, topic key || SHA-256(context))               (CKM_AES_KEY_WRAP_PAD)
 * Key wrap has no associated data, so the fallback binds the context by wrapping its digest
 * with the key and comparing it (constant time) after unwrap: a wrapped key moved to another
 * context fails like an edited one. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kms/sl_kms.h"
#include "kms/sl_kms_pkcs11.h"

/* Last: p11-kit's Cryptoki header (the standard 2.40 names) defines lower-case macros such as
 * `value` and `count` for its compatibility names. Included by its path under /usr/include so
 * the build needs no pkg-config flags; only the header is used, the module is dlopen'ed. */
#include <p11-kit-1/p11-kit/pkcs11.h>

#define FMT_GCM         0x01
#define FMT_KWP         0x02
#define GCM_IV          12
#define GCM_TAG         16
#define PIN_MAX         256
#define PLAIN_MAX       128 /* topic keys are 32 bytes; anything much longer is a caller bug */
#define TOKEN_LABEL_LEN 32

#ifndef CKR_AEAD_DECRYPT_FAILED
#define CKR_AEAD_DECRYPT_FAILED 0x35UL /* PKCS#11 3.0 */
#endif

typedef struct p11 {
    sl_kms base;
    void *dl;
    CK_FUNCTION_LIST *f;
    bool inited; /* C_Initialize succeeded and C_Finalize is owed */
    bool ready;  /* a logged-in session is open */
    bool gcm;    /* the token offers CKM_AES_GCM encrypt/decrypt (wrap uses it) */
    bool kwp;    /* ... and CKM_AES_KEY_WRAP_PAD wrap/unwrap */
    bool force_kwp;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    /* The PIN file as it was when the token refused its PIN: not tried again until the file
     * changes, so a wrong PIN does not count down the token's retry counter on every call
     * until the HSM locks the user out. */
    bool pin_refused;
    struct stat refused_st;
    char module[SL_CFG_STR_MAX];
    char token[SL_CFG_STR_MAX];
    char pin_file[SL_CFG_STR_MAX];
    char key_label[SL_CFG_STR_MAX];
} p11;

static const char *rv_name(CK_RV rv) {
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_HOST_MEMORY:
        return "CKR_HOST_MEMORY";
    case CKR_SLOT_ID_INVALID:
        return "CKR_SLOT_ID_INVALID";
    case CKR_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED:
        return "CKR_FUNCTION_FAILED";
    case CKR_ARGUMENTS_BAD:
        return "CKR_ARGUMENTS_BAD";
    case CKR_ATTRIBUTE_SENSITIVE:
        return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_ATTRIBUTE_VALUE_INVALID:
        return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY:
        return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_REMOVED:
        return "CKR_DEVICE_REMOVED";
    case CKR_ENCRYPTED_DATA_INVALID:
        return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
        return "CKR_ENCRYPTED_DATA_LEN_RANGE";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID:
        return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_PIN_EXPIRED:
        return "CKR_PIN_EXPIRED";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_SESSION_CLOSED:
        return "CKR_SESSION_CLOSED";
    case CKR_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case CKR_TEMPLATE_INCONSISTENT:
        return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED:
        return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_TOKEN_WRITE_PROTECTED:
        return "CKR_TOKEN_WRITE_PROTECTED";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_WRAPPED_KEY_INVALID:
        return "CKR_WRAPPED_KEY_INVALID";
    case CKR_WRAPPED_KEY_LEN_RANGE:
        return "CKR_WRAPPED_KEY_LEN_RANGE";
    case CKR_BUFFER_TOO_SMALL:
        return "CKR_BUFFER_TOO_SMALL";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case CKR_AEAD_DECRYPT_FAILED:
        return "CKR_AEAD_DECRYPT_FAILED";
    default:
        return "CKR_?";
    }
}

/* Codes after which the session (or the module's connection to the device) is gone: the call
 * fails as unavailable and the next one starts over from C_Initialize, which is what brings a
 * restarted network HSM (or p11-kit server) back without restarting the broker. */
static bool rv_outage(CK_RV rv) {
    switch (rv) {
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_REMOVED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_HOST_MEMORY:
    case CKR_FUNCTION_FAILED:
        return true;
    default:
        return false;
    }
}

/* Maps a failed call that is not an integrity failure. Unknown codes count as the token
 * refusing (loud, not retried) rather than as an outage, except the outage list. */
static sl_err fail(p11 *p, CK_RV rv, const char *what, char *err, size_t errlen) {
    snprintf(err, errlen, "pkcs11 token \"%s\": %s: %s (0x%lx)", p->token, what, rv_name(rv),
             (unsigned long)rv);
    if (rv_outage(rv)) {
        p->ready = false;
        return SL_EKMS_UNAVAILABLE;
    }
    return SL_EKMS_DENIED;
}

/* Reads the PIN (up to PIN_MAX-1 bytes, trailing newlines dropped) into pin[PIN_MAX]; the caller
 * cleanses it. Returns false with a reason naming the key. */
static bool read_pin(const char *path, char *pin, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "sluice.kms.pkcs11.pin.file: cannot open \"%s\": %s", path,
                 strerror(errno));
        return false;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, pin + n, PIN_MAX - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "sluice.kms.pkcs11.pin.file: cannot read \"%s\": %s", path,
                     strerror(errno));
            close(fd);
            return false;
        }
        if (r == 0 || (n += (size_t)r) == PIN_MAX) break;
    }
    close(fd);
    if (n == PIN_MAX) {
        snprintf(err, errlen, "sluice.kms.pkcs11.pin.file: \"%s\" is longer than %d bytes", path,
                 PIN_MAX - 1);
        return false;
    }
    while (n && (pin[n - 1] == '\n' || pin[n - 1] == '\r')) n--;
    if (!n) {
        snprintf(err, errlen, "sluice.kms.pkcs11.pin.file: \"%s\" is empty", path);
        return false;
    }
    pin[n] = 0;
    *len = n;
    return true;
}

static void disconnect(p11 *p) {
    if (p->inited) p->f->C_Finalize(NULL); /* closes every session and logs out */
    p->inited = false;
    p->ready = false;
}

static bool token_matches(const CK_TOKEN_INFO *ti, const char *label) {
    size_t n = strlen(label);
    if (n > TOKEN_LABEL_LEN || memcmp(ti->label, label, n)) return false;
    for (size_t i = n; i < TOKEN_LABEL_LEN; i++)
        if (ti->label[i] != ' ' && ti->label[i] != 0) return false;
    return true;
}

static bool mech_has(p11 *p, CK_MECHANISM_TYPE m, CK_FLAGS want) {
    CK_MECHANISM_INFO mi;
    return p->f->C_GetMechanismInfo(p->slot, m, &mi) == CKR_OK && (mi.flags & want) == want;
}

static bool same_file_state(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Brings up a logged-in session unless one is up: C_Finalize (if owed), C_Initialize, the slot
 * whose token has the configured label, an RW session, C_Login with the PIN read afresh from
 * its file (so a PIN change needs no restart). */
static sl_err connect_token(p11 *p, char *err, size_t errlen) {
    if (p->ready) return SL_OK;
    struct stat st;
    if (p->pin_refused && stat(p->pin_file, &st) == 0 && same_file_state(&st, &p->refused_st)) {
        snprintf(err, errlen,
                 "pkcs11 token \"%s\": the PIN in sluice.kms.pkcs11.pin.file was refused; not "
                 "tried again until that file changes",
                 p->token);
        return SL_EKMS_DENIED;
    }
    disconnect(p);
    CK_C_INITIALIZE_ARGS ia = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = p->f->C_Initialize(&ia);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(err, errlen, "pkcs11 module \"%s\": C_Initialize: %s (0x%lx)", p->module,
                 rv_name(rv), (unsigned long)rv);
        return SL_EKMS_UNAVAILABLE;
    }
    p->inited = true;
    CK_ULONG nslots = 0;
    rv = p->f->C_GetSlotList(CK_TRUE, NULL, &nslots);
    if (rv != CKR_OK) return fail(p, rv, "C_GetSlotList", err, errlen), SL_EKMS_UNAVAILABLE;
    if (nslots > 4096) nslots = 4096;
    CK_SLOT_ID *slots = calloc(nslots ? nslots : 1, sizeof *slots);
    if (!slots) return SL_ENOMEM;
    rv = p->f->C_GetSlotList(CK_TRUE, slots, &nslots);
    bool found = false;
    for (CK_ULONG i = 0; rv == CKR_OK && i < nslots && !found; i++) {
        CK_TOKEN_INFO ti;
        if (p->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && token_matches(&ti, p->token)) {
            p->slot = slots[i];
            found = true;
        }
    }
    free(slots);
    if (rv != CKR_OK) return fail(p, rv, "C_GetSlotList", err, errlen), SL_EKMS_UNAVAILABLE;
    if (!found) {
        /* An unreachable network HSM looks exactly like this (the module lists no token), so
         * this is an outage, retried, not a configuration error. */
        snprintf(err, errlen, "pkcs11 module \"%s\": no token labelled \"%s\" is present",
                 p->module, p->token);
        return SL_EKMS_UNAVAILABLE;
    }
    rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->s);
    if (rv != CKR_OK) return fail(p, rv, "C_OpenSession", err, errlen), SL_EKMS_UNAVAILABLE;
    char pin[PIN_MAX + 1];
    size_t pinlen = 0;
    /* Stat before reading: a file rewritten in between reads as changed next time. */
    bool have_st = stat(p->pin_file, &st) == 0;
    if (!read_pin(p->pin_file, pin, &pinlen, err, errlen)) {
        OPENSSL_cleanse(pin, sizeof pin);
        return SL_EKMS_DENIED;
    }
    rv = p->f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR *)pin, pinlen);
    OPENSSL_cleanse(pin, sizeof pin);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        sl_err e = fail(p, rv, "C_Login", err, errlen);
        if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
            p->pin_refused = have_st;
            if (have_st) p->refused_st = st;
        }
        if (e == SL_EKMS_DENIED) disconnect(p);
        return e;
    }
    p->pin_refused = false;
    p->gcm = mech_has(p, CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);
    p->kwp = mech_has(p, CKM_AES_KEY_WRAP_PAD, CKF_WRAP | CKF_UNWRAP);
    p->ready = true;
    return SL_OK;
}

/* Finds the one secret key labelled `label`. SL_EKMS_DENIED when there is none or more than
 * one (two keys under one label would make unwrap depend on which one the token lists first). */
static sl_err find_key(p11 *p, const char *label, CK_OBJECT_HANDLE *h, bool *absent, char *err,
                       size_t errlen) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_RV rv = p->f->C_FindObjectsInit(p->s, t, 2);
    if (rv != CKR_OK) return fail(p, rv, "C_FindObjectsInit", err, errlen);
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    rv = p->f->C_FindObjects(p->s, found, 2, &n);
    CK_RV rv2 = p->f->C_FindObjectsFinal(p->s);
    if (rv == CKR_OK) rv = rv2;
    if (rv != CKR_OK) return fail(p, rv, "C_FindObjects", err, errlen);
    if (absent) *absent = n == 0;
    if (n != 1) {
        snprintf(err, errlen, "pkcs11 token \"%s\": %s key labelled \"%s\"", p->token,
                 n ? "more than one" : "no", label);
        return SL_EKMS_DENIED;
    }
    *h = found[0];
    return SL_OK;
}

/* Runs op once, and once more on a fresh connection when a session that was already up turns
 * out to be gone (the HSM restarted since the last call): the first call after a recovered
 * outage succeeds instead of failing once. */
typedef sl_err (*p11_op)(p11 *p, void *arg, char *err, size_t errlen);
static sl_err run(p11 *p, p11_op op, void *arg, char *err, size_t errlen) {
    for (int attempt = 0;; attempt++) {
        bool was_up = p->ready;
        sl_err e = connect_token(p, err, errlen);
        if (e) return e;
        e = op(p, arg, err, errlen);
        if (e == SL_EKMS_UNAVAILABLE && !p->ready && was_up && attempt == 0) continue;
        return e;
    }
}

typedef struct wrap_args {
    const sl_kms_keyref *kek;
    const uint8_t *ctx;
    size_t ctxlen;
    const uint8_t *in;
    size_t n;
    uint8_t *out;
    size_t cap;
    size_t *outlen;
} wrap_args;

static sl_err wrap_kwp(p11 *p, CK_OBJECT_HANDLE kek, wrap_args *a, char *err, size_t errlen);

static sl_err wrap_gcm(p11 *p, CK_OBJECT_HANDLE kek, wrap_args *a, char *err, size_t errlen) {
    if (a->cap < 1 + GCM_IV + a->n + GCM_TAG) {
        snprintf(err, errlen, "pkcs11: output buffer too small");
        return SL_EKMS_DENIED;
    }
    /* A random 96-bit IV per wrap: the KEK wraps one topic key per create/rotate/rewrap, far
     * below the 2^32 messages NIST SP 800-38D allows for random IVs under one key. It is passed
     * in place (pIv points into `out`), so a token that writes back an IV of its own choosing
     * gets that one stored. */
    uint8_t *iv = a->out + 1;
    CK_RV rv = p->f->C_GenerateRandom(p->s, iv, GCM_IV);
    if (rv != CKR_OK) return fail(p, rv, "C_GenerateRandom", err, errlen);
    CK_GCM_PARAMS gp = {.pIv = iv,
                        .ulIvLen = GCM_IV,
                        .ulIvBits = GCM_IV * 8,
                        .pAAD = (CK_BYTE *)a->ctx,
                        .ulAADLen = a->ctxlen,
                        .ulTagBits = GCM_TAG * 8};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
    rv = p->f->C_EncryptInit(p->s, &m, kek);
    if ((rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID) && p->kwp) {
        /* Listed but refused as used here (e.g. an HSM in FIPS mode that will not take a
         * caller's IV): key wrap from now on. */
        p->gcm = false;
        return wrap_kwp(p, kek, a, err, errlen);
    }
    if (rv != CKR_OK) return fail(p, rv, "C_EncryptInit(CKM_AES_GCM)", err, errlen);
    CK_ULONG len = a->cap - 1 - GCM_IV;
    rv = p->f->C_Encrypt(p->s, (CK_BYTE *)a->in, a->n, a->out + 1 + GCM_IV, &len);
    if (rv != CKR_OK) return fail(p, rv, "C_Encrypt(CKM_AES_GCM)", err, errlen);
    if (len != a->n + GCM_TAG) {
        snprintf(err, errlen, "pkcs11: C_Encrypt(CKM_AES_GCM) returned %lu bytes",
                 (unsigned long)len);
        return SL_EKMS_DENIED;
    }
    a->out[0] = FMT_GCM;
    *a->outlen = 1 + GCM_IV + len;
    return SL_OK;
}

static void ctx_digest(const uint8_t *ctx, size_t ctxlen, uint8_t d[SHA256_DIGEST_LENGTH]) {
    SHA256(ctxlen ? ctx : (const uint8_t *)"", ctxlen, d);
}

static sl_err wrap_kwp(p11 *p, CK_OBJECT_HANDLE kek, wrap_args *a, char *err, size_t errlen) {
    uint8_t mat[PLAIN_MAX + SHA256_DIGEST_LENGTH];
    size_t matlen = a->n + SHA256_DIGEST_LENGTH;
    memcpy(mat, a->in, a->n);
    ctx_digest(a->ctx, a->ctxlen, mat + a->n);
    /* The topic key enters the token only as a short-lived session object to be wrapped. */
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
                        {CKA_TOKEN, &no, sizeof no},         {CKA_SENSITIVE, &no, sizeof no},
                        {CKA_EXTRACTABLE, &yes, sizeof yes}, {CKA_VALUE, mat, matlen}};
    CK_OBJECT_HANDLE obj;
    CK_RV rv = p->f->C_CreateObject(p->s, t, sizeof t / sizeof *t, &obj);
    OPENSSL_cleanse(mat, sizeof mat);
    if (rv != CKR_OK) return fail(p, rv, "C_CreateObject", err, errlen);
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG len = a->cap > 1 ? a->cap - 1 : 0;
    rv = p->f->C_WrapKey(p->s, &m, kek, obj, a->out + 1, &len);
    p->f->C_DestroyObject(p->s, obj);
    if (rv != CKR_OK) return fail(p, rv, "C_WrapKey(CKM_AES_KEY_WRAP_PAD)", err, errlen);
    a->out[0] = FMT_KWP;
    *a->outlen = 1 + len;
    return SL_OK;
}

static sl_err op_wrap(p11 *p, void *arg, char *err, size_t errlen) {
    wrap_args *a = arg;
    CK_OBJECT_HANDLE kek;
    sl_err e = find_key(p, a->kek->id, &kek, NULL, err, errlen);
    if (e) return e;
    if (p->gcm && !p->force_kwp) return wrap_gcm(p, kek, a, err, errlen);
    if (p->kwp) return wrap_kwp(p, kek, a, err, errlen);
    /* Not checked at connect: describe, generate and destroy still work on such a token (and
     * through p11-kit 0.24's remoting, which forwards neither mechanism). */
    snprintf(err, errlen, "pkcs11 token \"%s\" offers neither CKM_AES_GCM nor CKM_AES_KEY_WRAP_PAD",
             p->token);
    return SL_EKMS_DENIED;
}

/* What a token answers for a wrapped form that fails its check (SoftHSM: CKR_GENERAL_ERROR for
 * both GCM and key wrap): integrity failure, never an outage. */
static bool rv_tamper(CK_RV rv) {
    return rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID ||
           rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_WRAPPED_KEY_INVALID ||
           rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_AEAD_DECRYPT_FAILED ||
           rv == CKR_SIGNATURE_INVALID || rv == CKR_DATA_LEN_RANGE;
}

static sl_err tamper(p11 *p, const wrap_args *a, const char *why, char *err, size_t errlen) {
    snprintf(err, errlen,
             "pkcs11 token \"%s\": wrapped key under \"%s\" failed authentication (%s)", p->token,
             a->kek->id, why);
    return SL_ETAMPER;
}

static sl_err unwrap_gcm(p11 *p, CK_OBJECT_HANDLE kek, wrap_args *a, char *err, size_t errlen) {
    if (a->n < 1 + GCM_IV + GCM_TAG + 1) return tamper(p, a, "too short", err, errlen);
    CK_GCM_PARAMS gp = {.pIv = (CK_BYTE *)a->in + 1,
                        .ulIvLen = GCM_IV,
                        .ulIvBits = GCM_IV * 8,
                        .pAAD = (CK_BYTE *)a->ctx,
                        .ulAADLen = a->ctxlen,
                        .ulTagBits = GCM_TAG * 8};
    CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
    CK_RV rv = p->f->C_DecryptInit(p->s, &m, kek);
    if (rv != CKR_OK) return fail(p, rv, "C_DecryptInit(CKM_AES_GCM)", err, errlen);
    uint8_t buf[SL_KMS_WRAPPED_MAX];
    CK_ULONG len = sizeof buf;
    rv = p->f->C_Decrypt(p->s, (CK_BYTE *)a->in + 1 + GCM_IV, a->n - 1 - GCM_IV, buf, &len);
    sl_err e = SL_OK;
    if (rv_tamper(rv))
        e = tamper(p, a, rv_name(rv), err, errlen);
    else if (rv != CKR_OK)
        e = fail(p, rv, "C_Decrypt(CKM_AES_GCM)", err, errlen);
    else if (len != a->n - 1 - GCM_IV - GCM_TAG || len > a->cap)
        e = tamper(p, a, "unexpected length", err, errlen);
    else {
        memcpy(a->out, buf, len);
        *a->outlen = len;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return e;
}

static sl_err unwrap_kwp(p11 *p, CK_OBJECT_HANDLE kek, wrap_args *a, char *err, size_t errlen) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &kt, sizeof kt},
                        {CKA_TOKEN, &no, sizeof no},
                        {CKA_SENSITIVE, &no, sizeof no},
                        {CKA_EXTRACTABLE, &yes, sizeof yes}};
    CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_HANDLE obj;
    CK_RV rv = p->f->C_UnwrapKey(p->s, &m, kek, (CK_BYTE *)a->in + 1, a->n - 1, t,
                                 sizeof t / sizeof *t, &obj);
    if (rv_tamper(rv)) return tamper(p, a, rv_name(rv), err, errlen);
    if (rv != CKR_OK) return fail(p, rv, "C_UnwrapKey(CKM_AES_KEY_WRAP_PAD)", err, errlen);
    uint8_t mat[PLAIN_MAX + SHA256_DIGEST_LENGTH];
    CK_ATTRIBUTE v = {CKA_VALUE, mat, sizeof mat};
    rv = p->f->C_GetAttributeValue(p->s, obj, &v, 1);
    p->f->C_DestroyObject(p->s, obj);
    sl_err e = SL_OK;
    uint8_t d[SHA256_DIGEST_LENGTH];
    ctx_digest(a->ctx, a->ctxlen, d);
    if (rv != CKR_OK)
        e = fail(p, rv, "C_GetAttributeValue(CKA_VALUE)", err, errlen);
    else if (v.ulValueLen <= sizeof d || v.ulValueLen > sizeof mat)
        e = tamper(p, a, "unexpected length", err, errlen);
    else if (CRYPTO_memcmp(mat + v.ulValueLen - sizeof d, d, sizeof d))
        e = tamper(p, a, "context mismatch", err, errlen);
    else if (v.ulValueLen - sizeof d > a->cap)
        e = tamper(p, a, "unexpected length", err, errlen);
    else {
        memcpy(a->out, mat, v.ulValueLen - sizeof d);
        *a->outlen = v.ulValueLen - sizeof d;
    }
    OPENSSL_cleanse(mat, sizeof mat);
    return e;
}

static sl_err op_unwrap(p11 *p, void *arg, char *err, size_t errlen) {
    wrap_args *a = arg;
    CK_OBJECT_HANDLE kek;
    sl_err e = find_key(p, a->kek->id, &kek, NULL, err, errlen);
    if (e) return e;
    if (a->in[0] == FMT_GCM) return unwrap_gcm(p, kek, a, err, errlen);
    if (a->in[0] == FMT_KWP) return unwrap_kwp(p, kek, a, err, errlen);
    return tamper(p, a, "unknown format", err, errlen);
}

static sl_err check_ref(const sl_kms_keyref *kek, char *err, size_t errlen) {
    if (!kek || !memchr(kek->id, 0, sizeof kek->id) || !kek->id[0]) {
        snprintf(err, errlen, "pkcs11: bad key reference");
        return SL_EKMS_DENIED;
    }
    return SL_OK;
}

static sl_err p11_wrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                       const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                       char *err, size_t errlen) {
    if (check_ref(kek, err, errlen)) return SL_EKMS_DENIED;
    if (!n || n > PLAIN_MAX) {
        snprintf(err, errlen, "pkcs11: cannot wrap %zu bytes", n);
        return SL_EKMS_DENIED;
    }
    wrap_args a = {kek, ctx, ctxlen, plain, n, out, cap, outlen};
    return run((p11 *)k, op_wrap, &a, err, errlen);
}

static sl_err p11_unwrap(sl_kms *k, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                         const uint8_t *wrapped, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                         char *err, size_t errlen) {
    if (check_ref(kek, err, errlen)) return SL_EKMS_DENIED;
    wrap_args a = {kek, ctx, ctxlen, wrapped, n, out, cap, outlen};
    /* Every valid form is 1 + at least 24 bytes; anything outside is edited, not sent. */
    if (n < 2 || n > SL_KMS_WRAPPED_MAX) return tamper((p11 *)k, &a, "bad length", err, errlen);
    return run((p11 *)k, op_unwrap, &a, err, errlen);
}

typedef struct gen_args {
    uint32_t version;
    sl_kms_keyref *out;
} gen_args;

static sl_err get_bools(p11 *p, CK_OBJECT_HANDLE h, CK_BBOOL *extractable, CK_BBOOL *sensitive,
                        CK_BBOOL *never_extr, CK_ULONG *len, char *err, size_t errlen) {
    CK_ATTRIBUTE t[] = {{CKA_EXTRACTABLE, extractable, sizeof *extractable},
                        {CKA_SENSITIVE, sensitive, sizeof *sensitive},
                        {CKA_NEVER_EXTRACTABLE, never_extr, sizeof *never_extr},
                        {CKA_VALUE_LEN, len, sizeof *len}};
    CK_RV rv = p->f->C_GetAttributeValue(p->s, h, t, 4);
    /* A token that does not keep CKA_NEVER_EXTRACTABLE (or hides CKA_VALUE_LEN) still answers
     * the rest; only the two attributes the checks rest on are required. */
    if ((rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) &&
        t[0].ulValueLen == sizeof *extractable && t[1].ulValueLen == sizeof *sensitive) {
        if (t[2].ulValueLen != sizeof *never_extr) *never_extr = CK_FALSE;
        if (t[3].ulValueLen != sizeof *len) *len = 0;
        rv = CKR_OK;
    }
    if (rv != CKR_OK) return fail(p, rv, "C_GetAttributeValue", err, errlen);
    return SL_OK;
}

static sl_err op_generate(p11 *p, void *arg, char *err, size_t errlen) {
    gen_args *a = arg;
    char label[sizeof a->out->id];
    int ln = snprintf(label, sizeof label, "%s-v%u", p->key_label, (unsigned)a->version);
    if (ln < 0 || (size_t)ln >= sizeof label) {
        snprintf(err, errlen, "sluice.kms.pkcs11.key.label: too long");
        return SL_EKMS_DENIED;
    }
    CK_OBJECT_HANDLE h;
    bool absent = false;
    sl_err e = find_key(p, label, &h, &absent, err, errlen);
    if (e && !absent) return e;
    if (e && errlen) err[0] = 0; /* "no key labelled ..." is the expected answer here */
    if (!e) {
        /* Reused (a retried rotate, or a key the HSM admin created): only if it is as safe as
         * one generated here. */
        CK_BBOOL ex = CK_TRUE, se = CK_FALSE, ne = CK_FALSE;
        CK_ULONG len = 0;
        if ((e = get_bools(p, h, &ex, &se, &ne, &len, err, errlen))) return e;
        if (ex || !se || len != 32) {
            snprintf(err, errlen,
                     "pkcs11 token \"%s\": existing key \"%s\" is not a sensitive, "
                     "non-extractable AES-256 key",
                     p->token, label);
            return SL_EKMS_DENIED;
        }
    } else {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ULONG vlen = 32;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        uint8_t id[4] = {(uint8_t)(a->version >> 24), (uint8_t)(a->version >> 16),
                         (uint8_t)(a->version >> 8), (uint8_t)a->version};
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                            {CKA_KEY_TYPE, &kt, sizeof kt},
                            {CKA_VALUE_LEN, &vlen, sizeof vlen},
                            {CKA_TOKEN, &yes, sizeof yes},
                            {CKA_PRIVATE, &yes, sizeof yes},
                            {CKA_SENSITIVE, &yes, sizeof yes},
                            {CKA_EXTRACTABLE, &no, sizeof no},
                            {CKA_WRAP, &yes, sizeof yes},
                            {CKA_UNWRAP, &yes, sizeof yes},
                            {CKA_ENCRYPT, &yes, sizeof yes},
                            {CKA_DECRYPT, &yes, sizeof yes},
                            {CKA_LABEL, label, strlen(label)},
                            {CKA_ID, id, sizeof id}};
        CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
        CK_RV rv = p->f->C_GenerateKey(p->s, &m, t, sizeof t / sizeof *t, &h);
        if (rv != CKR_OK) return fail(p, rv, "C_GenerateKey(CKM_AES_KEY_GEN)", err, errlen);
    }
    memset(a->out, 0, sizeof *a->out);
    memcpy(a->out->id, label, (size_t)ln + 1);
    a->out->version = a->version;
    return SL_OK;
}

static sl_err p11_generate(sl_kms *k, uint32_t version, sl_kms_keyref *out, char *err,
                           size_t errlen) {
    gen_args a = {version, out};
    return run((p11 *)k, op_generate, &a, err, errlen);
}

typedef struct desc_args {
    const sl_kms_keyref *kek;
    char *out;
    size_t cap;
} desc_args;

static sl_err op_describe(p11 *p, void *arg, char *err, size_t errlen) {
    desc_args *a = arg;
    CK_OBJECT_HANDLE h;
    sl_err e = find_key(p, a->kek->id, &h, NULL, err, errlen);
    if (e) return e;
    CK_BBOOL ex = CK_TRUE, se = CK_FALSE, ne = CK_FALSE;
    CK_ULONG len = 0;
    if ((e = get_bools(p, h, &ex, &se, &ne, &len, err, errlen))) return e;
    snprintf(a->out, a->cap,
             "pkcs11 token \"%s\" key \"%s\": AES-%lu, extractable=%s sensitive=%s "
             "never-extractable=%s, wraps with %s",
             p->token, a->kek->id, (unsigned long)len * 8, ex ? "true" : "false",
             se ? "true" : "false", ne ? "true" : "false",
             p->gcm && !p->force_kwp ? "CKM_AES_GCM"
             : p->kwp                ? "CKM_AES_KEY_WRAP_PAD"
                      : "nothing (the token offers neither AES-GCM nor AES key wrap)");
    return SL_OK;
}

static sl_err p11_describe(sl_kms *k, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                           size_t errlen) {
    if (check_ref(kek, err, errlen)) return SL_EKMS_DENIED;
    desc_args a = {kek, out, cap};
    return run((p11 *)k, op_describe, &a, err, errlen);
}

static sl_err op_destroy(p11 *p, void *arg, char *err, size_t errlen) {
    const sl_kms_keyref *kek = arg;
    CK_OBJECT_HANDLE h;
    bool absent = false;
    sl_err e = find_key(p, kek->id, &h, &absent, err, errlen);
    if (absent) return SL_OK; /* already gone (a retried retire): the goal is reached */
    if (e) return e;
    CK_RV rv = p->f->C_DestroyObject(p->s, h);
    if (rv != CKR_OK) return fail(p, rv, "C_DestroyObject", err, errlen);
    return SL_OK;
}

static sl_err p11_destroy(sl_kms *k, const sl_kms_keyref *kek, char *err, size_t errlen) {
    if (check_ref(kek, err, errlen)) return SL_EKMS_DENIED;
    return run((p11 *)k, op_destroy, (void *)kek, err, errlen);
}

static void p11_free(sl_kms *k) {
    p11 *p = (p11 *)k;
    if (!p) return;
    disconnect(p);
    if (p->dl) dlclose(p->dl);
    free(p);
}

static const sl_kms_ops k_ops = {
    .name = "pkcs11",
    .wrap = p11_wrap,
    .unwrap = p11_unwrap,
    .generate = p11_generate,
    .describe = p11_describe,
    .destroy = p11_destroy,
    .free = p11_free,
};

void sl_kms_pkcs11_force_kwp(sl_kms *k, bool on) { ((p11 *)k)->force_kwp = on; }

sl_err sl_kms_pkcs11_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    *out = NULL;
    if (!cfg->sluice_kms_pkcs11_module[0]) {
        snprintf(err, errlen, "sluice.kms.pkcs11.module: not set");
        return SL_ECONFIG;
    }
    if (!cfg->sluice_kms_pkcs11_token_label[0] ||
        strlen(cfg->sluice_kms_pkcs11_token_label) > TOKEN_LABEL_LEN) {
        snprintf(err, errlen, "sluice.kms.pkcs11.token.label: %s",
                 cfg->sluice_kms_pkcs11_token_label[0] ? "longer than 32 bytes" : "not set");
        return SL_ECONFIG;
    }
    if (!cfg->sluice_kms_pkcs11_key_label[0] || strlen(cfg->sluice_kms_pkcs11_key_label) > 200) {
        snprintf(err, errlen, "sluice.kms.pkcs11.key.label: %s",
                 cfg->sluice_kms_pkcs11_key_label[0] ? "longer than 200 bytes" : "not set");
        return SL_ECONFIG;
    }
    if (!cfg->sluice_kms_pkcs11_pin_file[0]) {
        snprintf(err, errlen, "sluice.kms.pkcs11.pin.file: not set");
        return SL_ECONFIG;
    }
    char pin[PIN_MAX + 1];
    size_t pinlen;
    bool pin_ok = read_pin(cfg->sluice_kms_pkcs11_pin_file, pin, &pinlen, err, errlen);
    OPENSSL_cleanse(pin, sizeof pin);
    if (!pin_ok) return SL_ECONFIG;

    p11 *p = calloc(1, sizeof *p);
    if (!p) return SL_ENOMEM;
    p->base.ops = &k_ops;
    memcpy(p->module, cfg->sluice_kms_pkcs11_module, sizeof p->module);
    memcpy(p->token, cfg->sluice_kms_pkcs11_token_label, sizeof p->token);
    memcpy(p->pin_file, cfg->sluice_kms_pkcs11_pin_file, sizeof p->pin_file);
    memcpy(p->key_label, cfg->sluice_kms_pkcs11_key_label, sizeof p->key_label);
    /* Loading is checked now (a wrong path is a configuration error); initialising is not,
     * because that is what reaches the device. */
    p->dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        snprintf(err, errlen, "sluice.kms.pkcs11.module: cannot load \"%s\": %s", p->module,
                 dlerror());
        free(p);
        return SL_ECONFIG;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(p->dl, "C_GetFunctionList");
    if (!gfl || gfl(&p->f) != CKR_OK || !p->f) {
        snprintf(err, errlen, "sluice.kms.pkcs11.module: \"%s\" is not a PKCS#11 module",
                 p->module);
        p11_free(&p->base);
        return SL_ECONFIG;
    }
    /* A network HSM's module (p11-kit-client, vendor clients) writes to a socket whose peer may
     * be gone; with the default disposition that write kills the process instead of failing
     * as an outage. `sluice serve` ignores SIGPIPE already; the CLI paths may not. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    *out = &p->base;
    return SL_OK;
}
