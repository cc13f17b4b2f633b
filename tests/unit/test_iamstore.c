/* The IAM store (src/iam/sl_iamstore): users, keys, roles, session tokens, the file (0600,
 * atomic, locked, refreshed), identities and the file format. */
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_b64.h"
#include "base/sl_config.h"
#include "base/sl_file.h"
#include "iam/sl_iamstore.h"
#include "iam/sl_iamstore_int.h"
#include "sl_test.h"

#define ACCT "123456789012"

typedef struct fx {
    char dir[64], path[128], key[128];
} fx;

static bool fx_init(fx *f) {
    snprintf(f->dir, sizeof f->dir, "/tmp/sl_iamstore_XXXXXX");
    if (!mkdtemp(f->dir)) return false;
    snprintf(f->path, sizeof f->path, "%s/sluice-iam", f->dir);
    snprintf(f->key, sizeof f->key, "%s/secrets/sluice-iam.key", f->dir);
    return true;
}

static void fx_done(fx *f) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd)) {
    }
}

static sl_iamstore *fx_open(fx *f) {
    sl_iamstore *s = NULL;
    char err[512];
    if (sl_iamstore_open(f->path, f->key, true, &s, err, sizeof err)) {
        fprintf(stderr, "  open: %s\n", err);
        return NULL;
    }
    return s;
}

static bool file_contains(const char *path, const char *needle) {
    char *t = NULL;
    size_t n = 0;
    if (sl_file_read(path, 1 << 20, &t, &n)) return false;
    bool r = strstr(t, needle) != NULL;
    free(t);
    return r;
}

static bool charset(const char *s, size_t from, const char *set) {
    for (size_t i = from; s[i]; i++)
        if (!strchr(set, s[i])) return false;
    return true;
}

SL_TEST(iamstore_users_and_keys) {
    fx f;
    CHECK(fx_init(&f));
    char err[512];
    sl_iamstore *none = NULL;
    CHECK_EQ(sl_iamstore_open(f.path, f.key, false, &none, err, sizeof err), SL_ENOTFOUND);
    CHECK(access(f.key, F_OK) != 0); /* no key made for a store that is not created */
    sl_iamstore *s = fx_open(&f);
    CHECK(s);
    struct stat st;
    CHECK(!stat(f.key, &st));
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(st.st_size, 32);
    CHECK(!stat(f.path, &st));
    CHECK_EQ(st.st_mode & 0777, 0600);

    sl_iam_tag tags[] = {{"team", "payments"}, {"cost center", "42-a"}, {"empty", ""}};
    CHECK_EQ(sl_iamstore_user_add(s, "alice", tags, 3, 1000), SL_OK);
    CHECK_EQ(sl_iamstore_user_add(s, "bob", NULL, 0, 1001), SL_OK);
    CHECK_EQ(sl_iamstore_user_add(s, "alice", NULL, 0, 1002), SL_EEXISTS);
    CHECK_EQ(sl_iamstore_user_add(s, "bad name", NULL, 0, 1), SL_EINVAL);
    CHECK_EQ(sl_iamstore_user_add(s, "", NULL, 0, 1), SL_EINVAL);
    sl_iam_tag dup[] = {{"k", "1"}, {"K", "2"}};
    CHECK_EQ(sl_iamstore_user_add(s, "carol", dup, 2, 1), SL_EINVAL);
    CHECK_EQ(sl_iamstore_user_count(s), 2);
    CHECK(!strcmp(sl_iamstore_user_at(s, 0), "alice"));
    CHECK(!strcmp(sl_iamstore_user_at(s, 1), "bob"));
    CHECK(sl_iamstore_user_at(s, 2) == NULL);
    CHECK_EQ(sl_iamstore_user_keys(s, "nobody", NULL, 0), -1);
    CHECK_EQ(sl_iamstore_user_keys(s, "alice", NULL, 0), 0);

    char a1[SL_IAM_AKID_LEN + 1], s1[SL_IAM_SECRET_LEN + 1];
    char a2[SL_IAM_AKID_LEN + 1], s2[SL_IAM_SECRET_LEN + 1];
    char a3[SL_IAM_AKID_LEN + 1], s3[SL_IAM_SECRET_LEN + 1];
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 2000, a1, s1), SL_OK);
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 2001, a2, s2), SL_OK);
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 2002, a3, s3), SL_ETOOLARGE);
    CHECK_EQ(sl_iamstore_key_create(s, "nobody", 2002, a3, s3), SL_ENOTFOUND);
    CHECK_EQ(strlen(a1), 20);
    CHECK(!strncmp(a1, "AKIA", 4) && charset(a1, 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    CHECK_EQ(strlen(s1), 40);
    CHECK(charset(s1, 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"));
    CHECK(strcmp(a1, a2) && strcmp(s1, s2));
    CHECK(!strcmp(sl_iamstore_key_user(s, a1), "alice"));
    CHECK(sl_iamstore_key_user(s, "AKIAAAAAAAAAAAAAAAAA") == NULL);
    sl_iam_key_info ki[4];
    CHECK_EQ(sl_iamstore_user_keys(s, "alice", ki, 4), 2);
    CHECK(!strcmp(ki[0].akid, a1) && ki[0].active && ki[0].created_s == 2000 &&
          ki[0].last_used_s == 0);

    char got[64];
    CHECK(sl_iamstore_secret_lookup(s, a1, NULL, got, sizeof got));
    CHECK(!strcmp(got, s1));
    CHECK(sl_iamstore_secret_lookup(s, a2, "", got, sizeof got));
    CHECK(!strcmp(got, s2));
    CHECK(!sl_iamstore_secret_lookup(s, a1, NULL, got, 40)); /* no room for the NUL */
    CHECK(!sl_iamstore_secret_lookup(s, a1, "c29tZSB0b2tlbg==", got, sizeof got));
    CHECK(!sl_iamstore_secret_lookup(s, "AKIAAAAAAAAAAAAAAAAA", NULL, got, sizeof got));
    CHECK(!sl_iamstore_secret_lookup(s, "nonsense", NULL, got, sizeof got));
    CHECK_EQ(sl_iamstore_key_set_active(s, a1, false), SL_OK);
    CHECK(!sl_iamstore_secret_lookup(s, a1, NULL, got, sizeof got));
    sl_iam_identity id;
    CHECK_EQ(sl_iamstore_identity(s, a1, NULL, ACCT, &id), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_key_set_active(s, a1, true), SL_OK);
    CHECK(sl_iamstore_secret_lookup(s, a1, NULL, got, sizeof got));
    CHECK_EQ(sl_iamstore_identity(s, a1, NULL, ACCT, &id), SL_OK);
    CHECK(!id.role && !strcmp(id.name, "alice") && !id.session[0] && !strcmp(id.akid, a1));
    CHECK(!strcmp(id.arn, "arn:aws:iam::" ACCT ":user/alice"));
    CHECK_EQ(id.expiry_s, 0);
    CHECK_EQ(sl_iamstore_key_set_active(s, a1, false), SL_OK);
    CHECK_EQ(sl_iamstore_key_set_active(s, "AKIAAAAAAAAAAAAAAAAA", false), SL_ENOTFOUND);

    /* Saved: nothing in the file is a secret; a reopened store has everything. */
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    CHECK(file_contains(f.path, "sluice-iam 1\n"));
    CHECK(file_contains(f.path, a1));
    CHECK(!file_contains(f.path, s1));
    CHECK(!file_contains(f.path, s2));
    sl_iamstore *r = fx_open(&f);
    CHECK(r);
    CHECK_EQ(sl_iamstore_user_count(r), 2);
    CHECK_EQ(sl_iamstore_user_keys(r, "alice", ki, 4), 2);
    CHECK(!strcmp(ki[0].akid, a1) && !ki[0].active && ki[1].active && ki[1].created_s == 2001);
    CHECK(!sl_iamstore_secret_lookup(r, a1, NULL, got, sizeof got));
    CHECK(sl_iamstore_secret_lookup(r, a2, NULL, got, sizeof got));
    CHECK(!strcmp(got, s2));
    sl_iam_tag tg[8];
    size_t nt = 0;
    CHECK_EQ(sl_iamstore_identity(r, a2, NULL, ACCT, &id), SL_OK);
    const sl_iam_policy *pols[4];
    CHECK_EQ(sl_iamstore_policies_for(r, &id, pols, 4, tg, 8, &nt), 0);
    CHECK_EQ(nt, 3);
    CHECK(!strcmp(tg[1].key, "cost center") && !strcmp(tg[1].value, "42-a"));
    CHECK(!strcmp(tg[2].key, "empty") && !strcmp(tg[2].value, ""));
    sl_iamstore_free(r);

    /* key rm and user rm (which takes the user's keys along) */
    CHECK_EQ(sl_iamstore_key_rm(s, a1), SL_OK);
    CHECK_EQ(sl_iamstore_key_rm(s, a1), SL_ENOTFOUND);
    CHECK(!sl_iamstore_key_user(s, a1));
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 2003, a3, s3), SL_OK);
    CHECK_EQ(sl_iamstore_user_rm(s, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_user_rm(s, "alice"), SL_ENOTFOUND);
    CHECK(!sl_iamstore_key_user(s, a2) && !sl_iamstore_key_user(s, a3));
    CHECK(!sl_iamstore_secret_lookup(s, a2, NULL, got, sizeof got));
    CHECK_EQ(sl_iamstore_user_count(s), 1);
    sl_iamstore_free(s);
    fx_done(&f);
}

/* Flips one byte of the sealed blob inside a base64 token. */
static void tamper(char *tok, size_t at) {
    uint8_t b[1024];
    size_t n = 0;
    if (!sl_b64std_decode(tok, strlen(tok), b, sizeof b, &n) || !n) return;
    b[at % n] ^= 0x01;
    sl_b64std_encode(b, n, tok, SL_IAM_TOKEN_MAX);
}

SL_TEST(iamstore_roles_and_sessions) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *s = fx_open(&f);
    CHECK(s);
    sl_iam_tag tags[] = {{"env", "prod"}};
    CHECK_EQ(sl_iamstore_role_add(s, "reader", 3600, tags, 1), SL_OK);
    CHECK_EQ(sl_iamstore_role_add(s, "reader", 3600, NULL, 0), SL_EEXISTS);
    CHECK_EQ(sl_iamstore_role_add(s, "short", 899, NULL, 0), SL_EINVAL);
    CHECK_EQ(sl_iamstore_role_add(s, "long", 43201, NULL, 0), SL_EINVAL);
    CHECK_EQ(sl_iamstore_role_add(s, "max", 43200, NULL, 0), SL_OK);
    CHECK_EQ(sl_iamstore_role_add(s, "bad/name", 3600, NULL, 0), SL_EINVAL);
    CHECK_EQ(sl_iamstore_role_count(s), 2);
    int64_t mx = 0;
    CHECK(!strcmp(sl_iamstore_role_at(s, 0, &mx), "reader") && mx == 3600);
    CHECK(sl_iamstore_role_at(s, 2, &mx) == NULL);

    int64_t now = (int64_t)time(NULL), exp = 0;
    char ak[SL_IAM_AKID_LEN + 1], sk[SL_IAM_SECRET_LEN + 1], tok[SL_IAM_TOKEN_MAX];
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "s1", 899, now, ak, sk, tok, &exp), SL_EINVAL);
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "s1", 3601, now, ak, sk, tok, &exp), SL_EINVAL);
    CHECK_EQ(sl_iamstore_assume_role(s, "nope", "s1", 900, now, ak, sk, tok, &exp), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "bad name", 900, now, ak, sk, tok, &exp),
             SL_EINVAL);
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "etl-1", 3600, now, ak, sk, tok, &exp), SL_OK);
    CHECK_EQ(exp, now + 3600);
    CHECK(!strncmp(ak, "ASIA", 4) && strlen(ak) == 20 &&
          charset(ak, 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    CHECK_EQ(strlen(sk), 40);
    CHECK(strlen(tok) > 0 && strlen(tok) < SL_IAM_TOKEN_MAX);

    char got[64];
    CHECK(sl_iamstore_secret_lookup(s, ak, tok, got, sizeof got));
    CHECK(!strcmp(got, sk));
    CHECK(!sl_iamstore_secret_lookup(s, ak, NULL, got, sizeof got));
    sl_iam_identity id;
    CHECK_EQ(sl_iamstore_identity(s, ak, tok, ACCT, &id), SL_OK);
    CHECK(id.role && !strcmp(id.name, "reader") && !strcmp(id.session, "etl-1"));
    CHECK(!strcmp(id.arn, "arn:aws:sts::" ACCT ":assumed-role/reader/etl-1"));
    CHECK_EQ(id.expiry_s, now + 3600);
    CHECK(!strcmp(id.akid, ak));
    sl_iam_tag tg[4];
    size_t nt = 0;
    const sl_iam_policy *pols[4];
    CHECK_EQ(sl_iamstore_policies_for(s, &id, pols, 4, tg, 4, &nt), 0);
    CHECK(nt == 1 && !strcmp(tg[0].key, "env") && !strcmp(tg[0].value, "prod"));

    /* a tampered token, at several places (version, nonce, ciphertext, tag) */
    size_t places[] = {0, 5, 20, 60, 100, 1000};
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        char t2[SL_IAM_TOKEN_MAX];
        snprintf(t2, sizeof t2, "%s", tok);
        tamper(t2, places[i]);
        CHECK(strcmp(t2, tok));
        CHECK(!sl_iamstore_secret_lookup(s, ak, t2, got, sizeof got));
        CHECK_EQ(sl_iamstore_identity(s, ak, t2, ACCT, &id), SL_ENOTFOUND);
    }
    CHECK(!sl_iamstore_secret_lookup(s, ak, "not base64!", got, sizeof got));
    /* another key's id with this token, and this key's id with another token */
    char ak2[SL_IAM_AKID_LEN + 1], sk2[SL_IAM_SECRET_LEN + 1], tok2[SL_IAM_TOKEN_MAX];
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", NULL, 900, now, ak2, sk2, tok2, &exp), SL_OK);
    CHECK(!sl_iamstore_secret_lookup(s, ak2, tok, got, sizeof got));
    CHECK(!sl_iamstore_secret_lookup(s, ak, tok2, got, sizeof got));
    CHECK(sl_iamstore_secret_lookup(s, ak2, tok2, got, sizeof got));
    CHECK_EQ(sl_iamstore_identity(s, ak2, tok2, ACCT, &id), SL_OK);
    CHECK(!strcmp(id.session, "sluice-session"));
    /* a long-term key's id with a token */
    CHECK(!sl_iamstore_secret_lookup(s, "AKIAAAAAAAAAAAAAAAAA", tok, got, sizeof got));
    /* expired: issued so that it ended a minute ago */
    char ak3[SL_IAM_AKID_LEN + 1], sk3[SL_IAM_SECRET_LEN + 1], tok3[SL_IAM_TOKEN_MAX];
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "old", 900, now - 960, ak3, sk3, tok3, &exp),
             SL_OK);
    CHECK(exp < (int64_t)time(NULL));
    CHECK(!sl_iamstore_secret_lookup(s, ak3, tok3, got, sizeof got));
    CHECK_EQ(sl_iamstore_identity(s, ak3, tok3, ACCT, &id), SL_ENOTFOUND);

    /* a token sealed by another store's key does not open here */
    fx g;
    CHECK(fx_init(&g));
    sl_iamstore *o = fx_open(&g);
    CHECK(o);
    CHECK_EQ(sl_iamstore_role_add(o, "reader", 3600, NULL, 0), SL_OK);
    CHECK_EQ(sl_iamstore_assume_role(o, "reader", "x1", 900, now, ak3, sk3, tok3, &exp), SL_OK);
    CHECK(sl_iamstore_secret_lookup(o, ak3, tok3, got, sizeof got));
    CHECK(!sl_iamstore_secret_lookup(s, ak3, tok3, got, sizeof got));
    sl_iamstore_free(o);
    fx_done(&g);

    /* the role removed; re-created under the same name, old sessions stay dead */
    CHECK_EQ(sl_iamstore_role_rm(s, "reader"), SL_OK);
    CHECK_EQ(sl_iamstore_role_rm(s, "reader"), SL_ENOTFOUND);
    CHECK(!sl_iamstore_secret_lookup(s, ak, tok, got, sizeof got));
    CHECK_EQ(sl_iamstore_identity(s, ak, tok, ACCT, &id), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_role_add(s, "reader", 3600, NULL, 0), SL_OK);
    CHECK(!sl_iamstore_secret_lookup(s, ak, tok, got, sizeof got));

    /* roles survive a save and reopen (with their ids: new sessions keep working) */
    CHECK_EQ(sl_iamstore_assume_role(s, "reader", "s2", 900, now, ak, sk, tok, &exp), SL_OK);
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    sl_iamstore *r = fx_open(&f);
    CHECK(r);
    CHECK_EQ(sl_iamstore_role_count(r), 2);
    CHECK(sl_iamstore_secret_lookup(r, ak, tok, got, sizeof got));
    CHECK(!strcmp(got, sk));
    sl_iamstore_free(r);
    sl_iamstore_free(s);
    fx_done(&f);
}

SL_TEST(iamstore_file_permissions_and_keys) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *s = fx_open(&f);
    CHECK(s);
    CHECK_EQ(sl_iamstore_user_add(s, "alice", NULL, 0, 1), SL_OK);
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    sl_iamstore_free(s);
    char err[512];
    sl_iamstore *r = NULL;
    /* a store that others can read is refused */
    CHECK(!chmod(f.path, 0644));
    CHECK_EQ(sl_iamstore_open(f.path, f.key, true, &r, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "0600"));
    CHECK(!chmod(f.path, 0600));
    /* so is such a key file */
    CHECK(!chmod(f.key, 0640));
    CHECK_EQ(sl_iamstore_open(f.path, f.key, true, &r, err, sizeof err), SL_ECONFIG);
    CHECK(!chmod(f.key, 0600));
    CHECK((r = fx_open(&f)) != NULL);
    sl_iamstore_free(r);
    /* a key file of the wrong size */
    char k2[160];
    snprintf(k2, sizeof k2, "%s/short.key", f.dir);
    CHECK_EQ(sl_file_write_atomic(f.dir, "short.key", "0123456789", 10, 0600), SL_OK);
    CHECK_EQ(sl_iamstore_open(f.path, k2, true, &r, err, sizeof err), SL_ECONFIG);
    /* another key (32 bytes, 0600): the store does not open with it */
    uint8_t other[32];
    CHECK(RAND_bytes(other, sizeof other) == 1);
    CHECK_EQ(sl_file_write_atomic(f.dir, "other.key", other, 32, 0600), SL_OK);
    snprintf(k2, sizeof k2, "%s/other.key", f.dir);
    CHECK_EQ(sl_iamstore_open(f.path, k2, true, &r, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "key"));
    /* a missing key file for an existing store is not silently replaced */
    snprintf(k2, sizeof k2, "%s/missing.key", f.dir);
    CHECK_EQ(sl_iamstore_open(f.path, k2, true, &r, err, sizeof err), SL_ECONFIG);
    CHECK(access(k2, F_OK) != 0);
    /* a file that is not a store */
    CHECK(!chmod(f.path, 0600));
    CHECK_EQ(sl_file_write_atomic(f.dir, "sluice-iam", "hello\n", 6, 0600), SL_OK);
    CHECK_EQ(sl_iamstore_open(f.path, f.key, true, &r, err, sizeof err), SL_ECONFIG);
    /* a key file made 0600 even under a permissive umask */
    fx g;
    CHECK(fx_init(&g));
    mode_t old = umask(0);
    r = fx_open(&g);
    umask(old);
    CHECK(r);
    struct stat st;
    CHECK(!stat(g.key, &st) && (st.st_mode & 0777) == 0600);
    CHECK(!stat(g.path, &st) && (st.st_mode & 0777) == 0600);
    sl_iamstore_free(r);
    fx_done(&g);
    fx_done(&f);
}

SL_TEST(iamstore_two_handles_refresh) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *a = fx_open(&f), *b = fx_open(&f);
    CHECK(a && b);
    CHECK_EQ(sl_iamstore_lock(a), SL_OK);
    CHECK_EQ(sl_iamstore_user_add(a, "alice", NULL, 0, 1), SL_OK);
    char ak[SL_IAM_AKID_LEN + 1], sk[SL_IAM_SECRET_LEN + 1], got[64];
    CHECK_EQ(sl_iamstore_key_create(a, "alice", 1, ak, sk), SL_OK);
    CHECK_EQ(sl_iamstore_save(a), SL_OK);
    sl_iamstore_unlock(a);
    CHECK(!sl_iamstore_secret_lookup(b, ak, NULL, got, sizeof got));
    CHECK_EQ(sl_iamstore_refresh(b), SL_OK);
    CHECK(sl_iamstore_secret_lookup(b, ak, NULL, got, sizeof got));
    CHECK(!strcmp(got, sk));
    /* b disables the key; a sees it after its refresh */
    CHECK_EQ(sl_iamstore_lock(b), SL_OK);
    CHECK_EQ(sl_iamstore_key_set_active(b, ak, false), SL_OK);
    CHECK_EQ(sl_iamstore_save(b), SL_OK);
    sl_iamstore_unlock(b);
    CHECK(sl_iamstore_secret_lookup(a, ak, NULL, got, sizeof got));
    CHECK_EQ(sl_iamstore_refresh(a), SL_OK);
    CHECK(!sl_iamstore_secret_lookup(a, ak, NULL, got, sizeof got));
    /* a broken file: refresh fails and the loaded contents stay */
    CHECK_EQ(sl_file_write_atomic(f.dir, "sluice-iam", "sluice-iam 1\ngarbage\n", 21, 0600), SL_OK);
    CHECK(sl_iamstore_refresh(a) != SL_OK);
    CHECK_EQ(sl_iamstore_user_count(a), 1);
    sl_iamstore_free(a);
    sl_iamstore_free(b);
    fx_done(&f);
}

/* Two processes each add users under the lock, interleaved: none is lost. */
SL_TEST(iamstore_lock_two_writers) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *s = fx_open(&f);
    CHECK(s);
    sl_iamstore_free(s);
    enum { N = 25 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            sl_iamstore *c = fx_open(&f);
            int bad = !c;
            for (int i = 0; i < N && !bad; i++) {
                char name[32];
                snprintf(name, sizeof name, "u%d-%d", k, i);
                bad |= sl_iamstore_lock(c) != SL_OK;
                if (bad) break;
                bad |= sl_iamstore_user_add(c, name, NULL, 0, i) != SL_OK;
                bad |= sl_iamstore_save(c) != SL_OK;
                sl_iamstore_unlock(c);
            }
            sl_iamstore_free(c);
            _exit(bad);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st = 0;
        CHECK(waitpid(kids[k], &st, 0) == kids[k]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    s = fx_open(&f);
    CHECK(s);
    CHECK_EQ(sl_iamstore_user_count(s), 2 * N);
    sl_iamstore_free(s);
    fx_done(&f);
}

SL_TEST(iamstore_note_use) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *s = fx_open(&f), *o = NULL;
    CHECK(s);
    CHECK_EQ(sl_iamstore_user_add(s, "alice", NULL, 0, 1), SL_OK);
    char ak[SL_IAM_AKID_LEN + 1], sk[SL_IAM_SECRET_LEN + 1];
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 1, ak, sk), SL_OK);
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    CHECK((o = fx_open(&f)) != NULL);
    sl_iam_key_info ki[2];
    sl_iamstore_note_use(s, ak, 5000); /* first use: saved at once */
    CHECK_EQ(sl_iamstore_user_keys(s, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5000);
    CHECK_EQ(sl_iamstore_refresh(o), SL_OK);
    CHECK_EQ(sl_iamstore_user_keys(o, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5000);
    sl_iamstore_note_use(s, ak, 5030); /* within the minute: memory only */
    CHECK_EQ(sl_iamstore_user_keys(s, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5030);
    CHECK_EQ(sl_iamstore_refresh(o), SL_OK);
    CHECK_EQ(sl_iamstore_user_keys(o, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5000);
    /* another writer's change in between: note_use does not overwrite it (nor reload: what
     * s handed out stays valid); after s's refresh the noted use is still there and saved */
    CHECK_EQ(sl_iamstore_lock(o), SL_OK);
    CHECK_EQ(sl_iamstore_user_add(o, "bob", NULL, 0, 2), SL_OK);
    CHECK_EQ(sl_iamstore_save(o), SL_OK);
    sl_iamstore_unlock(o);
    const char *alice = sl_iamstore_user_at(s, 0);
    sl_iamstore_note_use(s, ak, 5060);
    CHECK_EQ(sl_iamstore_user_count(s), 1);
    CHECK(alice == sl_iamstore_user_at(s, 0));
    CHECK_EQ(sl_iamstore_refresh(o), SL_OK);
    CHECK_EQ(sl_iamstore_user_count(o), 2);
    CHECK_EQ(sl_iamstore_user_keys(o, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5000);
    CHECK_EQ(sl_iamstore_refresh(s), SL_OK);
    CHECK_EQ(sl_iamstore_user_keys(s, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5060);
    sl_iamstore_note_use(s, ak, 5061); /* a minute after the last save: saved */
    CHECK_EQ(sl_iamstore_refresh(o), SL_OK);
    CHECK_EQ(sl_iamstore_user_count(o), 2);
    CHECK_EQ(sl_iamstore_user_keys(o, "alice", ki, 2), 1);
    CHECK_EQ(ki[0].last_used_s, 5061);
    sl_iamstore_note_use(s, "AKIAAAAAAAAAAAAAAAAA", 9999); /* unknown: nothing */
    sl_iamstore_free(o);
    sl_iamstore_free(s);
    fx_done(&f);
}

SL_TEST(iamstore_paths) {
    sl_config c;
    sl_config_defaults(&c);
    snprintf(c.log_dirs, sizeof c.log_dirs, "/var/lib/sluice/data");
    char file[512], key[512];
    sl_iamstore_paths(&c, file, sizeof file, key, sizeof key);
    CHECK(!strcmp(file, "/var/lib/sluice/data/sluice-iam"));
    CHECK(!strcmp(key, "/var/lib/sluice/sluice-secrets/sluice-iam.key"));
    snprintf(c.sluice_iam_file, sizeof c.sluice_iam_file, "/etc/sluice/iam");
    snprintf(c.sluice_iam_key_file, sizeof c.sluice_iam_key_file, "/etc/sluice/iam.key");
    sl_iamstore_paths(&c, file, sizeof file, key, sizeof key);
    CHECK(!strcmp(file, "/etc/sluice/iam"));
    CHECK(!strcmp(key, "/etc/sluice/iam.key"));
}

/* The text format: what is written parses back to the same text; malformed lines refused. */
SL_TEST(iamstore_text_round_trip) {
    uint8_t k[SL_IAM_KEY_LEN] = {1, 2, 3};
    fx f;
    CHECK(fx_init(&f));
    CHECK_EQ(sl_file_write_atomic(f.dir, "k", k, sizeof k, 0600), SL_OK);
    char kp[160];
    snprintf(kp, sizeof kp, "%s/k", f.dir);
    sl_iamstore *s = NULL;
    char err[512];
    CHECK_EQ(sl_iamstore_open(f.path, kp, true, &s, err, sizeof err), SL_OK);
    sl_iam_tag tags[] = {{"a b", "c%d-e"}, {"x", ""}, {"-", "-"}};
    CHECK_EQ(sl_iamstore_user_add(s, "u.1@x", tags, 3, 77), SL_OK);
    CHECK_EQ(sl_iamstore_role_add(s, "r_1", 7200, tags, 2), SL_OK);
    char ak[SL_IAM_AKID_LEN + 1], sk[SL_IAM_SECRET_LEN + 1];
    CHECK_EQ(sl_iamstore_key_create(s, "u.1@x", 5, ak, sk), SL_OK);
    char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK_EQ(sl_iamstore_to_text(s, &t1, &l1), SL_OK);
    sl_iamstore *p = NULL;
    CHECK_EQ(sl_iamstore_from_text(k, t1, l1, &p, err, sizeof err), SL_OK);
    CHECK_EQ(sl_iamstore_to_text(p, &t2, &l2), SL_OK);
    CHECK(l1 == l2 && !memcmp(t1, t2, l1));
    char got[64];
    CHECK(sl_iamstore_secret_lookup(p, ak, NULL, got, sizeof got) && !strcmp(got, sk));
    sl_iamstore_free(p);
    /* a sealed secret moved to another key id does not open (the key id is the AAD) */
    char ak2[SL_IAM_AKID_LEN + 1], sk2[SL_IAM_SECRET_LEN + 1];
    CHECK_EQ(sl_iamstore_key_create(s, "u.1@x", 6, ak2, sk2), SL_OK);
    char *t3 = NULL;
    size_t l3 = 0;
    CHECK_EQ(sl_iamstore_to_text(s, &t3, &l3), SL_OK);
    char *l1p = strstr(t3, ak), *l2p = strstr(t3, ak2);
    CHECK(l1p && l2p);
    memcpy(l1p, ak2, SL_IAM_AKID_LEN); /* swap the two lines' ids: each holds the other's */
    memcpy(l2p, ak, SL_IAM_AKID_LEN);
    CHECK_EQ(sl_iamstore_from_text(k, t3, l3, &p, err, sizeof err), SL_OK);
    CHECK(!sl_iamstore_secret_lookup(p, ak, NULL, got, sizeof got));
    CHECK(!sl_iamstore_secret_lookup(p, ak2, NULL, got, sizeof got));
    sl_iamstore_free(p);
    free(t3);
    CHECK_EQ(sl_iamstore_key_rm(s, ak2), SL_OK);
    /* another key: refused */
    uint8_t k2[SL_IAM_KEY_LEN] = {9};
    CHECK_EQ(sl_iamstore_from_text(k2, t1, l1, &p, err, sizeof err), SL_ECONFIG);
    /* malformed variants */
    const char *bad[] = {
        "sluice-iam 2\n",
        "",
        "sluice-iam 1\nuser alice 1\n",           /* before the check line */
        "sluice-iam 1\n%CHECK%\nuser alice\n",    /* missing field */
        "sluice-iam 1\n%CHECK%\nuser al ice 1\n", /* extra field */
        "sluice-iam 1\n%CHECK%\nuser alice  1\n", /* empty field */
        "sluice-iam 1\n%CHECK%\nuser alice 1\nuser alice 2\n",
        "sluice-iam 1\n%CHECK%\nrole r AROAAAAAAAAAAAAAAAAA 100\n",
        "sluice-iam 1\n%CHECK%\ntag user nobody k v\n",
        "sluice-iam 1\n%CHECK%\nattach user nobody p\n",
        "sluice-iam 1\n%CHECK%\nuser alice 1\nattach user alice nopolicy\n",
        "sluice-iam 1\n%CHECK%\nuser alice 1\nkey AKIAAAAAAAAAAAAAAAAA alice active 1 0 AAAA\n",
        "sluice-iam 1\n%CHECK%\nuser alice 1\ntag user alice %4 v\n",
        "sluice-iam 1\n%CHECK%\nuser alice 99999999999999999999\n",
        "sluice-iam 1\n%CHECK%\npolicy p e30=\n", /* the placeholder or the parser refuses {} */
        "sluice-iam 1\n%CHECK%\nbogus line\n",
    };
    const char *cl = strstr(t1, "\ncheck ") + 1;
    size_t cll = (size_t)(strchr(cl, '\n') - cl);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char txt[1024];
        const char *m = strstr(bad[i], "%CHECK%");
        if (m)
            snprintf(txt, sizeof txt, "%.*s%.*s%s", (int)(m - bad[i]), bad[i], (int)cll, cl, m + 7);
        else
            snprintf(txt, sizeof txt, "%s", bad[i]);
        if (sl_iamstore_from_text(k, txt, strlen(txt), &p, err, sizeof err) != SL_ECONFIG) {
            fprintf(stderr, "  accepted bad[%zu]\n", i);
            CHECK(0);
        }
    }
    /* the minimal valid file */
    char ok[256];
    snprintf(ok, sizeof ok, "sluice-iam 1\n%.*s\n", (int)cll, cl);
    CHECK_EQ(sl_iamstore_from_text(k, ok, strlen(ok), &p, err, sizeof err), SL_OK);
    CHECK_EQ(sl_iamstore_user_count(p), 0);
    CHECK_EQ(sl_iamstore_save(p), SL_ESTATE); /* no file behind it */
    sl_iamstore_free(p);
    free(t1);
    free(t2);
    sl_iamstore_free(s);
    fx_done(&f);
}

static const char k_allow[] =
    "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Sid\": \"w\", "
    "\"Effect\": \"Allow\", \"Action\": \"kafka-cluster:WriteData\", "
    "\"Resource\": \"arn:aws:kafka:us-east-1:" ACCT ":topic/sluice/*/payments\"}]}";
static const char k_connect[] = "{\"Version\": \"2012-10-17\", \"Statement\": {\"Effect\": "
                                "\"Allow\", \"Action\": \"kafka-cluster:Connect\", "
                                "\"Resource\": \"*\"}}";

SL_TEST(iamstore_policies) {
    fx f;
    CHECK(fx_init(&f));
    sl_iamstore *s = fx_open(&f);
    CHECK(s);
    char err[512];
    CHECK_EQ(sl_iamstore_policy_put(s, "writer", k_allow, strlen(k_allow), err, sizeof err), SL_OK);
    CHECK_EQ(sl_iamstore_policy_put(s, "connect", k_connect, strlen(k_connect), err, sizeof err),
             SL_OK);
    err[0] = 0;
    CHECK_EQ(sl_iamstore_policy_put(s, "broken", "{\"Version\": 1}", 14, err, sizeof err),
             SL_EINVAL);
    CHECK(err[0]);
    CHECK_EQ(sl_iamstore_policy_put(s, "bad name", k_allow, strlen(k_allow), err, sizeof err),
             SL_EINVAL);
    CHECK_EQ(sl_iamstore_policy_count(s), 2);
    CHECK(!strcmp(sl_iamstore_policy_at(s, 0), "writer"));
    CHECK(sl_iamstore_policy_at(s, 2) == NULL);
    size_t len = 0;
    const char *doc = sl_iamstore_policy_get(s, "writer", &len);
    CHECK(doc && len == strlen(k_allow) && !memcmp(doc, k_allow, len));
    CHECK(sl_iamstore_policy_get(s, "broken", &len) == NULL);

    sl_iam_tag ut[] = {{"team", "payments"}};
    CHECK_EQ(sl_iamstore_user_add(s, "alice", ut, 1, 1), SL_OK);
    CHECK_EQ(sl_iamstore_role_add(s, "reader", 3600, NULL, 0), SL_OK);
    CHECK_EQ(sl_iamstore_attach(s, "writer", false, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_attach(s, "connect", false, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_attach(s, "connect", false, "alice"), SL_OK); /* idempotent */
    CHECK_EQ(sl_iamstore_attach(s, "connect", true, "reader"), SL_OK);
    CHECK_EQ(sl_iamstore_attach(s, "nope", false, "alice"), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_attach(s, "writer", false, "nobody"), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_attach(s, "writer", true, "alice"), SL_ENOTFOUND); /* not a role */
    CHECK_EQ(sl_iamstore_policy_rm(s, "connect"), SL_ESTATE);
    CHECK_EQ(sl_iamstore_policy_rm(s, "writer"), SL_ESTATE); /* on a user only */
    CHECK_EQ(sl_iamstore_policy_rm(s, "nope"), SL_ENOTFOUND);

    char ak[SL_IAM_AKID_LEN + 1], sk[SL_IAM_SECRET_LEN + 1];
    CHECK_EQ(sl_iamstore_key_create(s, "alice", 1, ak, sk), SL_OK);
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    sl_iamstore_free(s);
    s = fx_open(&f); /* attachments and documents survive a reopen, parsed again */
    CHECK(s);
    sl_iam_identity id;
    CHECK_EQ(sl_iamstore_identity(s, ak, NULL, ACCT, &id), SL_OK);
    const sl_iam_policy *pols[SL_IAM_MAX_ATTACHED];
    sl_iam_tag tg[4];
    size_t nt = 0;
    CHECK_EQ(sl_iamstore_policies_for(s, &id, pols, SL_IAM_MAX_ATTACHED, tg, 4, &nt), 2);
    CHECK(!strcmp(sl_iam_policy_name(pols[0]), "writer"));
    CHECK(!strcmp(sl_iam_policy_name(pols[1]), "connect"));
    CHECK(nt == 1 && !strcmp(tg[0].key, "team") && !strcmp(tg[0].value, "payments"));
    CHECK_EQ(sl_iamstore_policies_for(s, &id, pols, 1, tg, 0, &nt), 1); /* bounded by max */
    CHECK_EQ(nt, 0);
    sl_iam_ctx ctx = {.now_s = 1, .principal_type = "User", .username = "alice"};
    CHECK_EQ(sl_iam_evaluate(pols, 2, "kafka-cluster:WriteData",
                             "arn:aws:kafka:us-east-1:" ACCT ":topic/sluice/u-1/payments", &ctx,
                             NULL),
             SL_IAM_ALLOW);
    CHECK_EQ(sl_iam_evaluate(pols, 2, "kafka-cluster:WriteData",
                             "arn:aws:kafka:us-east-1:" ACCT ":topic/sluice/u-1/other", &ctx, NULL),
             SL_IAM_IMPLICIT_DENY);
    /* a role session gets the role's policies */
    char tak[SL_IAM_AKID_LEN + 1], tsk[SL_IAM_SECRET_LEN + 1], tok[SL_IAM_TOKEN_MAX];
    int64_t exp = 0;
    CHECK_EQ(
        sl_iamstore_assume_role(s, "reader", "s1", 900, (int64_t)time(NULL), tak, tsk, tok, &exp),
        SL_OK);
    CHECK_EQ(sl_iamstore_identity(s, tak, tok, ACCT, &id), SL_OK);
    CHECK_EQ(sl_iamstore_policies_for(s, &id, pols, SL_IAM_MAX_ATTACHED, tg, 4, &nt), 1);
    CHECK(!strcmp(sl_iam_policy_name(pols[0]), "connect") && nt == 0);

    /* replacing a document changes what is attached */
    CHECK_EQ(sl_iamstore_policy_put(s, "connect", k_allow, strlen(k_allow), err, sizeof err),
             SL_OK);
    doc = sl_iamstore_policy_get(s, "connect", &len);
    CHECK(doc && len == strlen(k_allow));
    /* detach, then rm; user_rm and role_rm take their attachments along */
    CHECK_EQ(sl_iamstore_detach(s, "writer", false, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_detach(s, "writer", false, "alice"), SL_ENOTFOUND);
    CHECK_EQ(sl_iamstore_policy_rm(s, "writer"), SL_OK);
    CHECK_EQ(sl_iamstore_policy_rm(s, "connect"), SL_ESTATE);
    CHECK_EQ(sl_iamstore_user_rm(s, "alice"), SL_OK);
    CHECK_EQ(sl_iamstore_policy_rm(s, "connect"), SL_ESTATE); /* still on the role */
    CHECK_EQ(sl_iamstore_role_rm(s, "reader"), SL_OK);
    CHECK_EQ(sl_iamstore_policy_rm(s, "connect"), SL_OK);
    CHECK_EQ(sl_iamstore_policy_count(s), 0);

    /* at most SL_IAM_MAX_ATTACHED per user */
    CHECK_EQ(sl_iamstore_user_add(s, "bob", NULL, 0, 1), SL_OK);
    for (int i = 0; i <= SL_IAM_MAX_ATTACHED; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        CHECK_EQ(sl_iamstore_policy_put(s, name, k_connect, strlen(k_connect), err, sizeof err),
                 SL_OK);
        CHECK_EQ(sl_iamstore_attach(s, name, false, "bob"),
                 i < SL_IAM_MAX_ATTACHED ? SL_OK : SL_ETOOLARGE);
    }
    CHECK_EQ(sl_iamstore_save(s), SL_OK);
    sl_iamstore_free(s);
    CHECK((s = fx_open(&f)) != NULL);
    CHECK_EQ(sl_iamstore_policy_count(s), SL_IAM_MAX_ATTACHED + 1);
    sl_iamstore_free(s);
    fx_done(&f);
}
