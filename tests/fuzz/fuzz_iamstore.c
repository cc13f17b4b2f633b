/* libFuzzer target for the IAM store's file format and session tokens (src/iam/sl_iamstore).
 * Input: the store file's bytes, optionally followed by a NUL and "AKID TOKEN" (a presented
 * access key id and session token).
 *
 * The file is parsed under a fixed IAM key (the seeds in tests/fuzz/corpus/iamstore were
 * written under it, so their check lines and sealed secrets are valid). Invariants, aborting
 * when broken:
 *   - what parses writes back to text that parses to the same text (round trip);
 *   - every active key of a parsed store opens (its sealed secret authenticated) or is refused,
 *     and its identity agrees with the lookup;
 *   - a session issued by a parsed store's role opens in that store, and names that role;
 *   - the presented token never yields a secret for a key id it does not name, and a secret
 *     only for a key id that resolves to an identity (the reverse need not hold: a key whose
 *     sealed secret was damaged in the file still has an owner, but no secret, so it never
 *     authenticates; the broker asks for the identity only after the signature verified).
 * The key is in this source, so a token forged under it is no finding; the interest is the
 * parser's memory safety on any bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iam/sl_iamstore.h"
#include "iam/sl_iamstore_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds' key: 32 bytes of 0x5a. */
static uint8_t g_key[SL_IAM_KEY_LEN];

static void check_store(sl_iamstore *s) {
    char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    char err[512];
    if (sl_iamstore_to_text(s, &t1, &l1)) return; /* out of memory */
    sl_iamstore *p = NULL;
    if (sl_iamstore_from_text(g_key, t1, l1, &p, err, sizeof err)) {
        fprintf(stderr, "written text does not parse: %s\n", err);
        abort();
    }
    if (sl_iamstore_to_text(p, &t2, &l2) || l1 != l2 || memcmp(t1, t2, l1)) abort();
    free(t1);
    free(t2);
    sl_iamstore_free(p);

    char secret[SL_IAM_SECRET_LEN + 1];
    sl_iam_identity id;
    const sl_iam_policy *pols[SL_IAM_MAX_ATTACHED];
    sl_iam_tag tags[SL_IAM_MAX_TAGS];
    size_t nt = 0;
    for (int u = 0; u < sl_iamstore_user_count(s); u++) {
        const char *name = sl_iamstore_user_at(s, u);
        sl_iam_key_info ki[SL_IAM_MAX_KEYS];
        int n = sl_iamstore_user_keys(s, name, ki, SL_IAM_MAX_KEYS);
        if (n < 0 || n > SL_IAM_MAX_KEYS) abort();
        for (int k = 0; k < n; k++) {
            bool ok = sl_iamstore_secret_lookup(s, ki[k].akid, NULL, secret, sizeof secret);
            if (ok && (!ki[k].active || strlen(secret) != SL_IAM_SECRET_LEN)) abort();
            sl_err e = sl_iamstore_identity(s, ki[k].akid, NULL, "000000000000", &id);
            if (ki[k].active && !e && strcmp(id.name, name)) abort();
            if (!e)
                sl_iamstore_policies_for(s, &id, pols, SL_IAM_MAX_ATTACHED, tags, SL_IAM_MAX_TAGS,
                                         &nt);
            if (nt > SL_IAM_MAX_TAGS) abort();
        }
    }
    int64_t now = (int64_t)time(NULL);
    for (int r = 0; r < sl_iamstore_role_count(s); r++) {
        int64_t max = 0;
        const char *role = sl_iamstore_role_at(s, r, &max);
        char akid[SL_IAM_AKID_LEN + 1], tok[SL_IAM_TOKEN_MAX];
        int64_t exp = 0;
        if (sl_iamstore_assume_role(s, role, "fuzz", 900, now, akid, secret, tok, &exp)) abort();
        char got[SL_IAM_SECRET_LEN + 1];
        if (!sl_iamstore_secret_lookup(s, akid, tok, got, sizeof got) || strcmp(got, secret))
            abort();
        if (sl_iamstore_identity(s, akid, tok, "000000000000", &id) || !id.role ||
            strcmp(id.name, role))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_key[0]) memset(g_key, 0x5a, sizeof g_key);
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    sl_iamstore *s = NULL;
    char err[512];
    if (sl_iamstore_from_text(g_key, (const char *)data, flen, &s, err, sizeof err)) return 0;
    check_store(s);
    if (nul) {
        /* "AKID TOKEN" */
        size_t rest = size - flen - 1;
        char *q = malloc(rest + 1);
        if (q) {
            memcpy(q, nul + 1, rest);
            q[rest] = 0;
            char *sp = strchr(q, ' ');
            if (sp) {
                *sp = 0;
                char secret[SL_IAM_SECRET_LEN + 1];
                sl_iam_identity id;
                bool ok = sl_iamstore_secret_lookup(s, q, sp + 1, secret, sizeof secret);
                sl_err e = sl_iamstore_identity(s, q, sp + 1, "000000000000", &id);
                if (ok && e != SL_OK) abort();
                if (!e && strcmp(id.akid, q)) abort();
            }
            free(q);
        }
    }
    sl_iamstore_free(s);
    return 0;
}
