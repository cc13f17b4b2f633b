/* SCRAM (RFC 7677 vector, a SHA-512 vector computed with Python's hashlib), the mock exchange for
 * unknown users, strict parsers, PLAIN, the credential store and KIP-554 derivation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/sl_auth.h"
#include "auth/sl_credstore.h"
#include "auth/sl_plain.h"
#include "auth/sl_scram.h"
#include "sl_test.h"

#define U8(s) ((const uint8_t *)(s))

static const char *k_salt64 = "W22ZaJ0SNY7soEsUEjb6gQ==";

/* A lookup with one user ("user"/"pencil" with the RFC salt) and a mock for anybody else. */
typedef struct fake_db {
    int mech;
    sl_scram_cred cred;
} fake_db;

static bool fake_lookup(void *ctx, const char *user, size_t n, int mech, sl_scram_cred *out) {
    fake_db *db = ctx;
    if (n == 4 && !memcmp(user, "user", 4) && mech == db->mech) {
        *out = db->cred;
        return true;
    }
    memset(out, 0, sizeof *out);
    out->mech = mech;
    out->iterations = SL_SCRAM_DEF_ITER;
    out->salt_len = SL_SCRAM_SALT_LEN;
    memset(out->salt, 0x5a, SL_SCRAM_SALT_LEN);
    memset(out->stored_key, 0x11, sizeof out->stored_key);
    return false;
}

static bool make_db(fake_db *db, int mech) {
    uint8_t salt[32], salted[64];
    long sl = sl_b64_decode(k_salt64, strlen(k_salt64), salt, sizeof salt);
    if (sl != 16) return false;
    db->mech = mech;
    return !sl_scram_salted_password(mech, "pencil", 6, salt, (size_t)sl, 4096, salted) &&
           !sl_scram_cred_from_salted(mech, salted, salt, (size_t)sl, 4096, &db->cred);
}

SL_TEST(scram_sha256_rfc7677_vector) {
    fake_db db;
    CHECK(make_db(&db, SL_SCRAM_SHA_256));
    sl_scram_server s;
    char out[2048];
    size_t n = 0;
    const char *cf = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    CHECK(sl_scram_server_first_nonce(&s, SL_SCRAM_SHA_256, U8(cf), strlen(cf), fake_lookup, &db,
                                      out, sizeof out, &n,
                                      "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0") == SL_OK);
    const char *sf =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    CHECK(n == strlen(sf) && !memcmp(out, sf, n));
    const char *fin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    CHECK(sl_scram_server_final(&s, U8(fin), strlen(fin), out, sizeof out, &n) == SL_OK);
    const char *v = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    CHECK(n == strlen(v) && !memcmp(out, v, n));
}

static const char *k_sn512 = "Sluice512ServerNonce0123456789ab";

SL_TEST(scram_sha512_vector_and_librdkafka_nonce_form) {
    fake_db db;
    CHECK(make_db(&db, SL_SCRAM_SHA_512));
    const char *cf = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    char out[2048], fin[1024];
    size_t n = 0;
    sl_scram_server s;
    /* RFC form */
    CHECK(!sl_scram_server_first_nonce(&s, SL_SCRAM_SHA_512, U8(cf), strlen(cf), fake_lookup, &db,
                                       out, sizeof out, &n, k_sn512));
    snprintf(
        fin, sizeof fin, "c=biws,r=rOprNGfwEbeRWgbNEkqO%s,p=%s", k_sn512,
        "2wCu5C2Wk46z72Jeyi5SyicLn6bZd2atwHoGSKzrrs55S+9fc8nPnn7nyS+NZOPUuf4DHcfOOgOs1iNi52bXWw"
        "==");
    CHECK(sl_scram_server_final(&s, U8(fin), strlen(fin), out, sizeof out, &n) == SL_OK);
    const char *v = "v=P/V1bN6xnJvrOXXs3yclAUYG2PKxw2sqA2X2CNPViiNtDjMr/9wnYuXMR6TgISvz6/"
                    "z3a7+m41VHyVaBfQD7cA==";
    CHECK(n == strlen(v) && !memcmp(out, v, n));
    /* librdkafka <= 2.6: the client nonce repeated before the whole server nonce; AuthMessage is
     * over the bytes as sent. */
    CHECK(!sl_scram_server_first_nonce(&s, SL_SCRAM_SHA_512, U8(cf), strlen(cf), fake_lookup, &db,
                                       out, sizeof out, &n, k_sn512));
    snprintf(
        fin, sizeof fin, "c=biws,r=rOprNGfwEbeRWgbNEkqOrOprNGfwEbeRWgbNEkqO%s,p=%s", k_sn512,
        "gEbghVzrQMN9Lh80XSCsebNjNjZXkgquOcTKRpzLWGshdh8s7LlWd9q6tsYKEkWb0qowFvDm+46qpI0uEGFp+A"
        "==");
    CHECK(sl_scram_server_final(&s, U8(fin), strlen(fin), out, sizeof out, &n) == SL_OK);
    /* Any other nonce is refused, even with a proof computed for it. */
    CHECK(!sl_scram_server_first_nonce(&s, SL_SCRAM_SHA_512, U8(cf), strlen(cf), fake_lookup, &db,
                                       out, sizeof out, &n, k_sn512));
    snprintf(
        fin, sizeof fin, "c=biws,r=XrOprNGfwEbeRWgbNEkqO%s,p=%s", k_sn512,
        "2wCu5C2Wk46z72Jeyi5SyicLn6bZd2atwHoGSKzrrs55S+9fc8nPnn7nyS+NZOPUuf4DHcfOOgOs1iNi52bXWw"
        "==");
    CHECK(sl_scram_server_final(&s, U8(fin), strlen(fin), out, sizeof out, &n) == SL_EAUTH);
}

SL_TEST(scram_wrong_proof_and_unknown_user_look_the_same) {
    fake_db db;
    CHECK(make_db(&db, SL_SCRAM_SHA_256));
    char out1[2048], out2[2048], fin[512];
    size_t n1 = 0, n2 = 0;
    sl_scram_server a, b;
    const char *known = "n,,n=user,r=abcdefgh";
    const char *unknown = "n,,n=nobody,r=abcdefgh";
    CHECK(!sl_scram_server_first(&a, SL_SCRAM_SHA_256, U8(known), strlen(known), fake_lookup, &db,
                                 out1, sizeof out1, &n1));
    CHECK(!sl_scram_server_first(&b, SL_SCRAM_SHA_256, U8(unknown), strlen(unknown), fake_lookup,
                                 &db, out2, sizeof out2, &n2));
    CHECK(a.known && !b.known);
    /* Same shape: nonce length, salt length (base64 of 16 vs 32 bytes differ only because the
     * RFC user has a 16-byte salt; the store's real salts are 32 like the mock), iterations. */
    CHECK(strstr(out1, ",i=4096") && strstr(out2, ",i=4096"));
    CHECK(strchr(out1, ',') - out1 == strchr(out2, ',') - out2);
    /* A wrong proof for the known user and any proof for the unknown one: both SL_EAUTH. */
    snprintf(fin, sizeof fin, "c=biws,r=%.*s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
             (int)(strchr(out1, ',') - out1 - 2), out1 + 2);
    CHECK_EQ(sl_scram_server_final(&a, U8(fin), strlen(fin), out1, sizeof out1, &n1), SL_EAUTH);
    snprintf(fin, sizeof fin, "c=biws,r=%.*s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
             (int)(strchr(out2, ',') - out2 - 2), out2 + 2);
    CHECK_EQ(sl_scram_server_final(&b, U8(fin), strlen(fin), out2, sizeof out2, &n2), SL_EAUTH);
    /* A finished exchange accepts nothing more. */
    CHECK_EQ(sl_scram_server_final(&b, U8(fin), strlen(fin), out2, sizeof out2, &n2), SL_EAUTH);
}

SL_TEST(scram_store_mock_is_stable_and_shaped_like_real_users) {
    char dir[] = "/tmp/sl_auth_XXXXXX", path[256];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/users", dir);
    sl_credstore *st = NULL;
    char err[512];
    CHECK(sl_credstore_open(path, true, &st, err, sizeof err) == SL_OK);
    sl_scram_cred real, m1, m2, m3;
    CHECK(!sl_scram_cred_from_password(SL_SCRAM_SHA_512, "pw", 2, 4096, &real));
    CHECK(!sl_credstore_put(st, "alice", 5, &real));
    CHECK(sl_credstore_lookup(st, "alice", 5, SL_SCRAM_SHA_512, &m1));
    CHECK(!sl_credstore_lookup(st, "mallory", 7, SL_SCRAM_SHA_512, &m1));
    CHECK(!sl_credstore_lookup(st, "mallory", 7, SL_SCRAM_SHA_512, &m2));
    CHECK(!sl_credstore_lookup(st, "trudy", 5, SL_SCRAM_SHA_512, &m3));
    CHECK(m1.salt_len == real.salt_len && m1.iterations == real.iterations);
    CHECK(!memcmp(m1.salt, m2.salt, m1.salt_len));  /* stable per name */
    CHECK(memcmp(m1.salt, m3.salt, m1.salt_len));   /* differs across names */
    CHECK(memcmp(m1.salt, real.salt, m1.salt_len)); /* not some real user's */
    /* The mock depends on the store's secret: another store gives another salt. */
    char path2[300];
    snprintf(path2, sizeof path2, "%s/users2", dir);
    sl_credstore *st2 = NULL;
    CHECK(sl_credstore_open(path2, true, &st2, err, sizeof err) == SL_OK);
    CHECK(!sl_credstore_lookup(st2, "mallory", 7, SL_SCRAM_SHA_512, &m2));
    CHECK(memcmp(m1.salt, m2.salt, m1.salt_len));
    sl_credstore_free(st);
    sl_credstore_free(st2);
    unlink(path);
    unlink(path2);
    rmdir(dir);
}

SL_TEST(scram_parsers_reject_malformed_messages) {
    sl_scram_client_first f;
    const char *bad_first[] = {
        "",
        "n,,",
        "n,,n=,r=abc",           /* empty name */
        "n,,n=user",             /* no nonce */
        "n,,r=abc,n=user",       /* attribute order */
        "n,,n=us=2Xer,r=abc",    /* bad escape */
        "n,,n=user=,r=abc",      /* truncated escape */
        "n,,n=user,r=a,b",       /* extension without '=' */
        "n,,n=user,r=",          /* empty nonce */
        "x,,n=user,r=abc",       /* bad cbind flag */
        "n,b=x,n=user,r=abc",    /* authzid attribute name */
        "n,,m=ext,n=user,r=abc", /* mandatory extension */
        "n,,n=user,r=abc,",      /* trailing comma */
        "n,,n=user,r=ab\x01",    /* control char in nonce */
    };
    for (size_t i = 0; i < sizeof bad_first / sizeof *bad_first; i++)
        CHECK(sl_scram_parse_client_first(U8(bad_first[i]), strlen(bad_first[i]), &f) != SL_OK);
    CHECK_EQ(sl_scram_parse_client_first(U8("p=tls-unique,,n=u,r=abc"), 23, &f), SL_EAUTH);
    CHECK(sl_scram_parse_client_first(U8("n,,n=a\0b,r=abc"), 14, &f) != SL_OK);
    const char *ok = "y,a=we=2Cird=3D,n=we=2Cird=3D,r=abc,tokenauth=true";
    CHECK(sl_scram_parse_client_first(U8(ok), strlen(ok), &f) == SL_OK);
    CHECK(!strcmp(f.user, "we,ird=") && f.token_auth && f.authzid.len == 7);
    CHECK(f.gs2_header.len == 16 && f.nonce.len == 3);

    sl_scram_client_final c;
    const char *bad_final[] = {
        "c=biws,r=abc",            /* no proof */
        "r=abc,c=biws,p=AAAA",     /* order */
        "c=biws,r=abc,p=AAA",      /* base64 length */
        "c=biws,r=abc,p=AA=A",     /* padding in the middle */
        "c=biws,r=abc,p=AAAA,x=1", /* proof not last */
        "c=biws,r=abc,p=AB==",     /* non-canonical trailing bits */
        "c=biws,r=abc,p=****",     /* alphabet */
        "c=,r=abc,p=AAAA",         /* empty binding */
        "c=biws,r=abc,,p=AAAA",    /* empty attribute */
    };
    for (size_t i = 0; i < sizeof bad_final / sizeof *bad_final; i++)
        CHECK(sl_scram_parse_client_final(U8(bad_final[i]), strlen(bad_final[i]), &c) != SL_OK);
    const char *okf = "c=biws,r=abc,ext=1,p=AAAA";
    CHECK(sl_scram_parse_client_final(U8(okf), strlen(okf), &c) == SL_OK);
    CHECK(c.without_proof.len == 18 && c.proof_len == 3);
}

SL_TEST(scram_refuses_channel_binding_mismatch_and_authzid) {
    fake_db db;
    CHECK(make_db(&db, SL_SCRAM_SHA_256));
    sl_scram_server s;
    char out[2048];
    size_t n;
    const char *cf = "n,a=other,n=user,r=abc";
    CHECK_EQ(sl_scram_server_first(&s, SL_SCRAM_SHA_256, U8(cf), strlen(cf), fake_lookup, &db, out,
                                   sizeof out, &n),
             SL_EAUTH);
    const char *cf2 = "n,,n=user,r=abc";
    CHECK(!sl_scram_server_first(&s, SL_SCRAM_SHA_256, U8(cf2), strlen(cf2), fake_lookup, &db, out,
                                 sizeof out, &n));
    char fin[512];
    /* c= must be base64("n,,") exactly */
    snprintf(fin, sizeof fin, "c=eSws,r=%.*s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
             (int)(strchr(out, ',') - out - 2), out + 2);
    CHECK_EQ(sl_scram_server_final(&s, U8(fin), strlen(fin), out, sizeof out, &n), SL_EAUTH);
}

SL_TEST(plain_parsing) {
    sl_plain_msg m;
    CHECK(sl_plain_parse(U8("\0alice\0secret"), 13, &m) == SL_OK);
    CHECK(sl_str_eqc(m.authcid, "alice") && sl_str_eqc(m.passwd, "secret") && m.authzid.len == 0);
    CHECK(sl_plain_parse(U8("alice\0alice\0secret"), 18, &m) == SL_OK);
    CHECK(sl_plain_parse(U8("bob\0alice\0secret"), 16, &m) != SL_OK); /* act as another */
    CHECK(sl_plain_parse(U8("\0\0secret"), 8, &m) != SL_OK);          /* empty authcid */
    CHECK(sl_plain_parse(U8("\0alice\0"), 7, &m) != SL_OK);           /* empty password */
    CHECK(sl_plain_parse(U8("\0alice\0se\0cret"), 14, &m) != SL_OK);  /* third NUL */
    CHECK(sl_plain_parse(U8("alice-secret"), 12, &m) != SL_OK);       /* no NUL */
    CHECK(sl_plain_parse(U8("\0al\nice\0secret"), 14, &m) != SL_OK);  /* control char */
    uint8_t big[300] = {0};
    memset(big + 1, 'a', 5);
    memset(big + 7, 'p', 290);
    CHECK(sl_plain_parse(big, 297, &m) != SL_OK); /* password > 255 */
}

SL_TEST(plain_checks_against_scram_credentials) {
    sl_scram_cred c;
    CHECK(!sl_scram_cred_from_password(SL_SCRAM_SHA_256, "hunter2", 7, 4096, &c));
    CHECK(sl_scram_check_password(&c, "hunter2", 7));
    CHECK(!sl_scram_check_password(&c, "hunter3", 7));
    CHECK(!sl_scram_check_password(&c, "hunter", 6));
}

SL_TEST(credstore_round_trip_atomic_rewrite_and_reload) {
    char dir[] = "/tmp/sl_auth_XXXXXX", path[256], err[512];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/users", dir);
    sl_credstore *st = NULL, *other = NULL;
    CHECK_EQ(sl_credstore_open(path, false, &st, err, sizeof err), SL_ENOTFOUND);
    CHECK(sl_credstore_open(path, true, &st, err, sizeof err) == SL_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    sl_scram_cred c1, c2;
    CHECK(!sl_scram_cred_from_password(SL_SCRAM_SHA_512, "pw1", 3, 8192, &c1));
    CHECK(!sl_scram_cred_from_password(SL_SCRAM_SHA_256, "pw2", 3, 4096, &c2));
    CHECK(!sl_credstore_put(st, "a b,c=%", 7, &c1)); /* name needing escapes */
    CHECK(!sl_credstore_put(st, "bob", 3, &c2));
    CHECK(sl_credstore_put(st, "bad\nname", 8, &c2) == SL_EINVAL);
    CHECK(sl_credstore_put(st, "", 0, &c2) == SL_EINVAL);
    ino_t before = sb.st_ino;
    CHECK(!sl_credstore_save(st));
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 && sb.st_ino != before);
    /* No temporary file is left behind. */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
    /* The file holds no password. */
    FILE *f = fopen(path, "r");
    char text[4096] = {0};
    CHECK(f && fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    CHECK(!strstr(text, "pw1") && strstr(text, "a%20b%2Cc%3D%25 SCRAM-SHA-512 8192"));
    /* Another opener sees it; a change there reaches the first after refresh. */
    CHECK(sl_credstore_open(path, false, &other, err, sizeof err) == SL_OK);
    const sl_scram_cred *g = sl_credstore_find(other, "a b,c=%", 7, SL_SCRAM_SHA_512);
    CHECK(g && g->iterations == 8192 && !memcmp(g->stored_key, c1.stored_key, 64));
    CHECK(sl_scram_check_password(g, "pw1", 3));
    CHECK(!sl_credstore_lock(other));
    CHECK(!sl_credstore_remove(other, "bob", 3, 0));
    CHECK(sl_credstore_remove(other, "bob", 3, 0) == SL_ENOTFOUND);
    CHECK(!sl_credstore_save(other));
    sl_credstore_unlock(other);
    CHECK(sl_credstore_find(st, "bob", 3, SL_SCRAM_SHA_256));
    CHECK(!sl_credstore_refresh(st));
    CHECK(!sl_credstore_find(st, "bob", 3, SL_SCRAM_SHA_256));
    CHECK_EQ(sl_credstore_count(st), 1);
    /* A group-readable store is refused. */
    sl_credstore_free(other);
    other = NULL;
    CHECK(chmod(path, 0640) == 0);
    CHECK_EQ(sl_credstore_open(path, false, &other, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "0600"));
    /* A damaged store is refused with the line. */
    CHECK(chmod(path, 0600) == 0);
    f = fopen(path, "a");
    fputs("user x SCRAM-SHA-256 4096 !!! AAAA AAAA\n", f);
    fclose(f);
    CHECK_EQ(sl_credstore_open(path, false, &other, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "line"));
    /* ... and a running broker keeps what it had. */
    CHECK(sl_credstore_refresh(st) != SL_OK);
    CHECK_EQ(sl_credstore_count(st), 1);
    sl_credstore_free(st);
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", path);
    unlink(lock);
    unlink(path);
    rmdir(dir);
}

SL_TEST(alter_credentials_derivation_matches_password_derivation) {
    /* KIP-554: the client sends salt + SaltedPassword; StoredKey/ServerKey must match what a
     * password-based derivation yields, so the user can then log in with the password. */
    uint8_t salt[16] = "0123456789abcdef", salted[64];
    for (int mech = SL_SCRAM_SHA_256; mech <= SL_SCRAM_SHA_512; mech++) {
        sl_scram_cred c;
        CHECK(!sl_scram_salted_password(mech, "s3cret", 6, salt, 16, 4096, salted));
        CHECK(!sl_scram_cred_from_salted(mech, salted, salt, 16, 4096, &c));
        CHECK(sl_scram_check_password(&c, "s3cret", 6));
        CHECK(!sl_scram_check_password(&c, "s3creT", 6));
    }
    sl_scram_cred c;
    CHECK(sl_scram_cred_from_salted(7, salted, salt, 16, 4096, &c) == SL_EINVAL);
    CHECK(sl_scram_cred_from_salted(SL_SCRAM_SHA_256, salted, salt, 0, 4096, &c) == SL_EINVAL);
    CHECK(sl_scram_cred_from_salted(SL_SCRAM_SHA_256, salted, salt, 65, 4096, &c) == SL_EINVAL);
}

SL_TEST(auth_session_rules_and_mechanism_config) {
    sl_config cfg;
    sl_config_defaults(&cfg);
    char dir[] = "/tmp/sl_auth_XXXXXX", err[512];
    CHECK(mkdtemp(dir));
    snprintf(cfg.log_dirs, sizeof cfg.log_dirs, "%s", dir);
    snprintf(cfg.sluice_secrets_dir, sizeof cfg.sluice_secrets_dir, "%s", dir);
    sl_auth *a = NULL;
    CHECK(sl_auth_new(&cfg, true, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "SASL_PLAINTEXT", false, err, sizeof err) == SL_OK);
    CHECK_EQ(sl_auth_listener_mechs(a, "SASL_PLAINTEXT"),
             SL_MECH_SCRAM_SHA_256 | SL_MECH_SCRAM_SHA_512);
    sl_auth_free(a);
    snprintf(cfg.sasl_enabled_mechanisms, sizeof cfg.sasl_enabled_mechanisms, "PLAIN");
    CHECK(sl_auth_new(&cfg, true, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "L", false, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sluice.sasl.plain.allow.insecure"));
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_OK);
    sl_auth_free(a);
    snprintf(cfg.sasl_enabled_mechanisms, sizeof cfg.sasl_enabled_mechanisms, "GSSAPI");
    CHECK(sl_auth_new(&cfg, true, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "GSSAPI"));
    sl_auth_free(a);

    /* A session: handshake, PLAIN against the store, failure counters. */
    snprintf(cfg.sasl_enabled_mechanisms, sizeof cfg.sasl_enabled_mechanisms,
             "PLAIN,SCRAM-SHA-256");
    cfg.sluice_sasl_plain_allow_insecure = true;
    CHECK(sl_auth_new(&cfg, true, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "L", false, err, sizeof err) == SL_OK);
    sl_credstore *st = sl_auth_store(a, false);
    sl_scram_cred c;
    CHECK(st && !sl_scram_cred_from_password(SL_SCRAM_SHA_256, "pw", 2, 4096, &c));
    CHECK(!sl_credstore_put(st, "carol", 5, &c) && !sl_credstore_save(st));
    sl_session *s = sl_session_new("10.0.0.1:5555", sl_auth_listener_mechs(a, "L"), NULL);
    CHECK(s && !s->authenticated && !strcmp(s->addr, "10.0.0.1"));
    CHECK_EQ(sl_session_handshake(s, "SCRAM-SHA-512", 13, false), SL_ENOTFOUND);
    CHECK_EQ(sl_session_handshake(s, "PLAIN", 5, false), SL_OK);
    CHECK_EQ(sl_session_handshake(s, "PLAIN", 5, false), SL_ESTATE);
    uint8_t out[64];
    size_t n;
    bool done;
    CHECK_EQ(sl_session_step(a, s, U8("\0carol\0pw"), 9, out, sizeof out, &n, &done), SL_OK);
    CHECK(done && s->authenticated && !strcmp(s->principal, "User:carol"));
    /* Re-authentication may not change the principal. */
    CHECK_EQ(sl_session_handshake(s, "PLAIN", 5, false), SL_OK);
    CHECK(s->reauth);
    CHECK(!sl_credstore_put(st, "dave", 4, &c));
    CHECK_EQ(sl_session_step(a, s, U8("\0dave\0pw"), 8, out, sizeof out, &n, &done), SL_EAUTH);
    sl_session_free(s);
    s = sl_session_new("[::1]:5555", sl_auth_listener_mechs(a, "L"), NULL);
    CHECK(!strcmp(s->addr, "::1"));
    CHECK_EQ(sl_session_handshake(s, "PLAIN", 5, false), SL_OK);
    CHECK_EQ(sl_session_step(a, s, U8("\0carol\0px"), 9, out, sizeof out, &n, &done), SL_EAUTH);
    CHECK_EQ(sl_session_step(a, s, U8("\0carol\0pw"), 9, out, sizeof out, &n, &done), SL_ESTATE);
    CHECK_EQ(sl_auth_failures(a, "User:carol"), 1);
    CHECK_EQ(sl_auth_failures(a, "::1"), 1);
    CHECK_EQ(sl_auth_failures(a, "User:dave"), 1);
    sl_session_free(s);
    /* max.connections.per.ip */
    sl_auth_free(a);
    cfg.max_connections_per_ip = 2;
    CHECK(sl_auth_new(&cfg, false, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_conn_opened(a, "1.2.3.4") && sl_auth_conn_opened(a, "1.2.3.4"));
    CHECK(!sl_auth_conn_opened(a, "1.2.3.4"));
    CHECK(sl_auth_conn_opened(a, "1.2.3.5"));
    sl_auth_conn_closed(a, "1.2.3.4");
    CHECK(sl_auth_conn_opened(a, "1.2.3.4"));
    sl_auth_free(a);
    char p[600];
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK(system(p) == 0);
}

SL_TEST(auth_per_listener_mechanisms_override) {
    sl_config cfg;
    sl_config_defaults(&cfg);
    char dir[] = "/tmp/sl_auth_XXXXXX", err[512];
    CHECK(mkdtemp(dir));
    snprintf(cfg.log_dirs, sizeof cfg.log_dirs, "%s", dir);
    snprintf(cfg.sluice_secrets_dir, sizeof cfg.sluice_secrets_dir, "%s", dir);
    CHECK(sl_config_set(&cfg, "listener.name.internal.sasl.enabled.mechanisms", "SCRAM-SHA-256",
                        err, sizeof err) == SL_OK);
    sl_auth *a = NULL;
    CHECK(sl_auth_new(&cfg, true, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "INTERNAL", false, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "EXTERNAL", false, err, sizeof err) == SL_OK);
    CHECK_EQ(sl_auth_listener_mechs(a, "INTERNAL"), SL_MECH_SCRAM_SHA_256);
    CHECK_EQ(sl_auth_listener_mechs(a, "EXTERNAL"), SL_MECH_SCRAM_SHA_256 | SL_MECH_SCRAM_SHA_512);
    CHECK_EQ(sl_auth_listener_mechs(a, "OTHER"), 0);
    sl_auth_free(a);
    char p[600];
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK(system(p) == 0);
}
