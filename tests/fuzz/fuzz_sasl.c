/* libFuzzer target for the SASL parsers and exchanges. The first byte picks the target: SCRAM
 * client-first, SCRAM client-final, PLAIN, base64 (a successful decode must re-encode to the same
 * text, so no two encodings mean one value), a whole SCRAM exchange (client-first and
 * client-final separated by the first 0xff byte) against a fixed user and a mock for anybody
 * else, or (5) a login through the broker's session layer (sl_session_step over a real
 * credential store):
 *   byte 1: mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or SCRAM straight against
 *           sl_scram_server with a mock that shares the known user's password) and tampering
 *           flags
 *   rest:   PLAIN: the whole client message, as sent;
 *           SCRAM: "<user>\0<password>\0<client nonce>"; the harness is an honest SCRAM client
 *           (RFC 5802) that proves knowledge of that password, unless a flag tampers with the
 *           exchange (a wrong nonce, channel binding, a flipped proof byte, a wrong mechanism's
 *           proof).
 *
 * Security invariants of (4) and (5), the harness knowing the credential store it set up:
 *   - a SCRAM exchange the fuzzer drives alone (4) never succeeds: it cannot know the server's
 *     nonce;
 *   - a login succeeds only for a user in the store, with that user's password, through a
 *     mechanism the user has a credential for, and untampered; the session's principal is then
 *     that user. An unknown user never logs in, whatever password (mock credentials included);
 *   - conversely an honest login with the right password succeeds (so the checks above are
 *     reached and are not vacuous). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sl_auth.h"
#include "auth/sl_credstore.h"
#include "auth/sl_plain.h"
#include "auth/sl_scram.h"
#include "base/sl_config.h"
#include "base/sl_logging.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const uint8_t *p, size_t n, sl_str s) {
    return s.len >= 0 && (const uint8_t *)s.p >= p && (const uint8_t *)s.p + s.len <= p + n;
}

static bool lookup(void *ctx, const char *user, size_t n, int mech, sl_scram_cred *out) {
    static const uint8_t salt[16] = "fuzz-salt-16byte";
    uint8_t salted[SL_SCRAM_MAX_HASH];
    memset(out, 0, sizeof *out);
    bool known = n == 4 && !memcmp(user, "user", 4);
    /* One iteration keeps the fuzzer fast; the exchange does not depend on the count. */
    if (sl_scram_salted_password(mech, "pencil", 6, salt, sizeof salt, 1, salted) ||
        sl_scram_cred_from_salted(mech, salted, salt, sizeof salt, 1, out))
        abort();
    return known;
}

/* ---- (5) logins through the session layer ---- */

typedef struct account {
    const char *user, *password;
    unsigned mechs; /* SL_MECH_x the store holds a credential for */
} account;

static const account k_accounts[] = {
    {"user", "pencil", SL_MECH_SCRAM_SHA_256 | SL_MECH_SCRAM_SHA_512},
    {"other", "other-pw", SL_MECH_SCRAM_SHA_256},
    {"a=b,c", "comma", SL_MECH_SCRAM_SHA_512}, /* saslname escaping */
};
#define NACCOUNTS (sizeof k_accounts / sizeof k_accounts[0])

static sl_auth *g_auth;
static char g_dir[256];

static void auth_cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    sl_auth_free(g_auth);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_sasl: cannot remove %s\n", g_dir);
}

static void auth_init(void) {
    sl_log_set_level(SL_LOG_ERROR);
    const char *tmp = getenv("TMPDIR");
    char dir[256], path[300], err[256];
    snprintf(dir, sizeof dir, "%s/sluice-fuzz-sasl-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/users", dir);
    sl_credstore *st;
    if (sl_credstore_open(path, true, &st, err, sizeof err) != SL_OK) abort();
    for (size_t i = 0; i < NACCOUNTS; i++)
        for (int mech = SL_SCRAM_SHA_256; mech <= SL_SCRAM_SHA_512; mech++) {
            unsigned bit = mech == SL_SCRAM_SHA_256 ? SL_MECH_SCRAM_SHA_256 : SL_MECH_SCRAM_SHA_512;
            if (!(k_accounts[i].mechs & bit)) continue;
            sl_scram_cred c;
            const account *ac = &k_accounts[i];
            if (sl_scram_cred_from_password(mech, ac->password, strlen(ac->password),
                                            SL_SCRAM_MIN_ITER, &c) ||
                sl_credstore_put(st, ac->user, strlen(ac->user), &c))
                abort();
        }
    if (sl_credstore_save(st)) abort();
    sl_credstore_free(st);
    sl_config cfg;
    sl_config_defaults(&cfg);
    if (sl_config_set(&cfg, "sluice.sasl.credentials.file", path, err, sizeof err) ||
        sl_config_set(&cfg, "log.dirs", dir, err, sizeof err) ||
        sl_config_finish(&cfg, err, sizeof err) ||
        sl_auth_new(&cfg, true, &g_auth, err, sizeof err))
        abort();
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    atexit(auth_cleanup);
}

/* Whether the store lets `user` in with `pw` over `mech`. */
static bool entitled(const char *user, size_t ul, const char *pw, size_t pl, unsigned mech) {
    for (size_t i = 0; i < NACCOUNTS; i++) {
        const account *ac = &k_accounts[i];
        if (ul == strlen(ac->user) && !memcmp(user, ac->user, ul) && pl == strlen(ac->password) &&
            !memcmp(pw, ac->password, pl))
            return mech == SL_MECH_PLAIN || (ac->mechs & mech);
    }
    return false;
}

static void check_principal(const sl_session *s, const char *user, size_t ul) {
    char want[SL_PRINCIPAL_MAX + 8];
    snprintf(want, sizeof want, "User:%.*s", (int)ul, user);
    if (!s->authenticated || strcmp(s->principal, want) != 0) abort();
}

/* PLAIN as RFC 4616 defines it, parsed here independently of sl_plain_parse: authzid NUL authcid
 * NUL passwd, authzid empty or equal to authcid. */
static void login_plain(const uint8_t *m, size_t n) {
    sl_session *s = sl_session_new("127.0.0.1:1", SL_MECH_PLAIN | SL_MECH_SCRAM_SHA_256, NULL);
    if (!s || sl_session_handshake(s, "PLAIN", 5, false) != SL_OK) abort();
    uint8_t out[1024];
    size_t ol;
    bool done = false;
    sl_err e = sl_session_step(g_auth, s, m, n, out, sizeof out, &ol, &done);
    const uint8_t *z1 = memchr(m, 0, n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - m)) : NULL;
    bool ok_msg = z2 && !memchr(z2 + 1, 0, n - (size_t)(z2 + 1 - m));
    const char *authz = (const char *)m, *user = z1 ? (const char *)z1 + 1 : NULL;
    size_t al = z1 ? (size_t)(z1 - m) : 0, ul = z2 ? (size_t)(z2 - z1 - 1) : 0;
    const char *pw = z2 ? (const char *)z2 + 1 : NULL;
    size_t pl = z2 ? n - (size_t)(z2 + 1 - m) : 0;
    bool allowed = ok_msg && (al == 0 || (al == ul && !memcmp(authz, user, ul))) &&
                   entitled(user, ul, pw, pl, SL_MECH_PLAIN);
    if (e == SL_OK && done) {
        if (!allowed) {
            fprintf(stderr, "fuzz_sasl: PLAIN login succeeded without the right credentials\n");
            abort();
        }
        check_principal(s, user, ul);
    } else if (allowed) {
        abort(); /* the right password was refused */
    }
    sl_session_free(s);
}

enum {
    T_NONCE = 1,   /* client-final carries only the client's nonce */
    T_CBIND = 2,   /* channel binding "y,," instead of the gs2 header sent */
    T_PROOF = 4,   /* one proof byte flipped */
    T_HASH = 8,    /* proof computed with the other mechanism's hash */
    T_PASSWD = 16, /* proof from the password with its last byte changed */
};

static bool hmac(const EVP_MD *md, const void *key, size_t kl, const void *d, size_t n,
                 uint8_t *out) {
    unsigned int ol = 0;
    return HMAC(md, key, (int)kl, d, n, out, &ol) != NULL;
}

/* Value of attribute `k` ("r=", "s=", "i=") in a server-first message. */
static bool attr(const char *m, size_t n, char k, const char **v, size_t *vl) {
    for (size_t i = 0; i + 1 < n; i++) {
        if ((i == 0 || m[i - 1] == ',') && m[i] == k && m[i + 1] == '=') {
            size_t j = i + 2;
            while (j < n && m[j] != ',') j++;
            *v = m + i + 2;
            *vl = j - i - 2;
            return true;
        }
    }
    return false;
}

/* The server side of a SCRAM login: the broker's session layer over the credential store, or
 * (direct) sl_scram_server with lookup() above, whose mock credential for unknown users is made
 * from the same password as the known user's: only the exchange's `known` check keeps them out. */
typedef struct server {
    bool direct;
    int mech, steps;
    sl_session *s;
    sl_scram_server sc;
} server;

static sl_err server_step(server *v, const char *in, size_t n, uint8_t *out, size_t cap, size_t *ol,
                          bool *done) {
    if (!v->direct)
        return sl_session_step(g_auth, v->s, (const uint8_t *)in, n, out, cap, ol, done);
    *done = false;
    if (v->steps++ == 0)
        return sl_scram_server_first(&v->sc, v->mech, (const uint8_t *)in, n, lookup, NULL,
                                     (char *)out, cap, ol);
    sl_err e = sl_scram_server_final(&v->sc, (const uint8_t *)in, n, (char *)out, cap, ol);
    *done = e == SL_OK;
    return e;
}

static void server_free(server *v) {
    sl_session_free(v->s);
    sl_scram_server_clear(&v->sc);
}

static void login_scram(unsigned mech_bit, bool direct, unsigned flags, const uint8_t *p,
                        size_t n) {
    const uint8_t *z1 = memchr(p, 0, n);
    if (!z1) return;
    const uint8_t *z2 = memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - p));
    if (!z2) return;
    const char *user = (const char *)p, *pw = (const char *)z1 + 1, *cn = (const char *)z2 + 1;
    size_t ul = (size_t)(z1 - p), pl = (size_t)(z2 - z1 - 1), cnl = n - (size_t)(z2 + 1 - p);
    if (ul > SL_SCRAM_MAX_USER || pl > 256 || cnl > 256) return;
    int mech = mech_bit == SL_MECH_SCRAM_SHA_256 ? SL_SCRAM_SHA_256 : SL_SCRAM_SHA_512;
    const EVP_MD *md = mech == SL_SCRAM_SHA_256 ? EVP_sha256() : EVP_sha512();
    const EVP_MD *pmd =
        (flags & T_HASH) ? (mech == SL_SCRAM_SHA_256 ? EVP_sha512() : EVP_sha256()) : md;
    size_t hl = (size_t)EVP_MD_get_size(pmd);
    static server v; /* large (two SCRAM states): not on the stack */
    memset(&v, 0, sizeof v);
    v.direct = direct;
    v.mech = mech;
    if (!direct && (!(v.s = sl_session_new("127.0.0.1:1",
                                           SL_MECH_SCRAM_SHA_256 | SL_MECH_SCRAM_SHA_512, NULL)) ||
                    sl_session_handshake(v.s, sl_mech_name(mech_bit),
                                         strlen(sl_mech_name(mech_bit)), false) != SL_OK))
        abort();
    /* client-first: gs2 header "n,,", the user as a saslname (',' and '=' escaped). */
    char first[2048];
    size_t fl = (size_t)snprintf(first, sizeof first, "n,,n=");
    for (size_t i = 0; i < ul; i++)
        fl += (size_t)(user[i] == ','   ? snprintf(first + fl, 4, "=2C")
                       : user[i] == '=' ? snprintf(first + fl, 4, "=3D")
                                        : (first[fl] = user[i], 1));
    fl += (size_t)snprintf(first + fl, sizeof first - fl, ",r=%.*s", (int)cnl, cn);
    uint8_t sf[SL_SCRAM_MAX_MSG + 512], sfin[1024];
    size_t sfl = 0, sfinl = 0;
    bool done = false;
    sl_err e = server_step(&v, first, fl, sf, sizeof sf, &sfl, &done);
    const char *r, *salt64, *it;
    size_t rl, sl, il;
    if (e != SL_OK || done || !attr((const char *)sf, sfl, 'r', &r, &rl) ||
        !attr((const char *)sf, sfl, 's', &salt64, &sl) ||
        !attr((const char *)sf, sfl, 'i', &it, &il)) {
        if (!done && e == SL_OK) abort(); /* a server-first we cannot read */
        if (done) abort();                /* SCRAM cannot finish in one step */
        server_free(&v);
        return;
    }
    uint8_t salt[SL_SCRAM_MAX_SALT + 4], salted[SL_SCRAM_MAX_HASH], ck[SL_SCRAM_MAX_HASH],
        sk[SL_SCRAM_MAX_HASH], sig[SL_SCRAM_MAX_HASH];
    long saltn = sl_b64_decode(salt64, sl, salt, sizeof salt);
    char ibuf[16];
    snprintf(ibuf, sizeof ibuf, "%.*s", (int)(il < 15 ? il : 15), it);
    int iters = (int)strtol(ibuf, NULL, 10);
    if (saltn <= 0 || iters < 1 || iters > SL_SCRAM_MAX_ITER) abort();
    char pwx[260];
    memcpy(pwx, pw, pl);
    if ((flags & T_PASSWD) && pl) pwx[pl - 1] ^= 1;
    unsigned int sz = 0;
    if (PKCS5_PBKDF2_HMAC(pwx, (int)pl, salt, (int)saltn, iters, pmd, (int)hl, salted) != 1 ||
        !hmac(pmd, salted, hl, "Client Key", 10, ck) || EVP_Digest(ck, hl, sk, &sz, pmd, NULL) != 1)
        abort();
    char fin[2048];
    size_t finl = (size_t)snprintf(fin, sizeof fin, "c=%s,r=", (flags & T_CBIND) ? "eSws" : "biws");
    if (flags & T_NONCE)
        finl += (size_t)snprintf(fin + finl, sizeof fin - finl, "%.*s", (int)cnl, cn);
    else
        finl += (size_t)snprintf(fin + finl, sizeof fin - finl, "%.*s", (int)rl, r);
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    char am[6144];
    int aml = snprintf(am, sizeof am, "%.*s,%.*s,%.*s", (int)(fl - 3), first + 3, (int)sfl,
                       (const char *)sf, (int)finl, fin);
    if (aml < 0 || (size_t)aml >= sizeof am || !hmac(pmd, sk, hl, am, (size_t)aml, sig)) abort();
    for (size_t i = 0; i < hl; i++) ck[i] ^= sig[i];
    if (flags & T_PROOF) ck[0] ^= 0x80;
    char proof64[SL_SCRAM_MAX_HASH * 2];
    sl_b64_encode(ck, hl, proof64);
    finl += (size_t)snprintf(fin + finl, sizeof fin - finl, ",p=%s", proof64);
    e = server_step(&v, fin, finl, sfin, sizeof sfin, &sfinl, &done);
    /* Judged on the password the proof was really made from: flipping a bit of a wrong
     * password can give the right one (a false alarm the fuzzer found). */
    bool allowed =
        !(flags & ~(unsigned)T_PASSWD) &&
        (direct ? ul == 4 && !memcmp(user, "user", 4) && pl == 6 && !memcmp(pwx, "pencil", 6)
                : entitled(user, ul, pwx, pl, mech_bit));
    if (e == SL_OK && done) {
        if (!allowed) {
            fprintf(stderr, "fuzz_sasl: %s login of \"%.*s\" succeeded (flags %u)\n",
                    sl_mech_name(mech_bit), (int)ul, user, flags);
            abort();
        }
        if (!direct) check_principal(v.s, user, ul);
    } else if (allowed) {
        fprintf(stderr, "fuzz_sasl: honest %s login of \"%.*s\" refused\n", sl_mech_name(mech_bit),
                (int)ul, user);
        abort();
    }
    server_free(&v);
}

static void login(const uint8_t *p, size_t n) {
    if (n < 1) return;
    if (!g_auth) auth_init();
    /* Low two bits: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (session layer), SCRAM direct (its hash
     * from the top bit); the five bits between: tampering flags. */
    unsigned sel = p[0] & 3, flags = (p[0] >> 2) & 31;
    unsigned mech =
        sel == 1 || (sel == 3 && !(p[0] & 0x80)) ? SL_MECH_SCRAM_SHA_256 : SL_MECH_SCRAM_SHA_512;
    if (sel == 0)
        login_plain(p + 1, n - 1);
    else
        login_scram(mech, sel == 3, flags, p + 1, n - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    uint8_t which = data[0] % 6;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (which) {
    case 0: {
        sl_scram_client_first f;
        if (sl_scram_parse_client_first(p, n, &f) == SL_OK) {
            if (!inside(p, n, f.bare) || !inside(p, n, f.nonce) || !inside(p, n, f.gs2_header) ||
                f.nonce.len <= 0 || f.user_len == 0 || f.user_len > SL_SCRAM_MAX_USER ||
                strlen(f.user) != f.user_len)
                abort();
        }
        break;
    }
    case 1: {
        sl_scram_client_final f;
        if (sl_scram_parse_client_final(p, n, &f) == SL_OK) {
            if (!inside(p, n, f.without_proof) || !inside(p, n, f.nonce) ||
                !inside(p, n, f.channel_binding) || f.proof_len == 0 ||
                f.proof_len > SL_SCRAM_MAX_HASH)
                abort();
        }
        break;
    }
    case 2: {
        sl_plain_msg m;
        if (sl_plain_parse(p, n, &m) == SL_OK) {
            if (!inside(p, n, m.authzid) || !inside(p, n, m.authcid) || !inside(p, n, m.passwd) ||
                m.authcid.len == 0 || m.passwd.len == 0 ||
                (m.authzid.len && !sl_str_eq(m.authzid, m.authcid)))
                abort();
        }
        break;
    }
    case 3: {
        uint8_t out[8192];
        char enc[8192 / 3 * 4 + 8];
        long got = sl_b64_decode((const char *)p, n, out, sizeof out);
        if (got >= 0) {
            size_t el = sl_b64_encode(out, (size_t)got, enc);
            if (el != n || memcmp(enc, p, n) != 0) abort();
        }
        break;
    }
    case 5:
        login(p, n);
        break;
    default: {
        const uint8_t *sep = memchr(p, 0xff, n);
        size_t n1 = sep ? (size_t)(sep - p) : n;
        const uint8_t *p2 = sep ? sep + 1 : p + n;
        size_t n2 = sep ? n - n1 - 1 : 0;
        static sl_scram_server s;
        char out[SL_SCRAM_MAX_MSG + 512];
        size_t ol = 0;
        int mech = (n1 & 1) ? SL_SCRAM_SHA_512 : SL_SCRAM_SHA_256;
        if (sl_scram_server_first(&s, mech, p, n1, lookup, NULL, out, sizeof out, &ol) == SL_OK) {
            if (ol == 0 || ol > sizeof out) abort();
            /* The server's nonce is random and not in the input: no proof can match it. */
            if (sl_scram_server_final(&s, p2, n2, out, sizeof out, &ol) == SL_OK) abort();
        }
        sl_scram_server_clear(&s);
        break;
    }
    }
    return 0;
}
