/* libFuzzer target for the MSK IAM parsers (src/auth/sl_msk_iam). The first input byte picks:
 *   0: sl_msk_iam_verify_payload(rest)  — AWS_MSK_IAM JSON
 *   1: sl_msk_iam_verify_token(rest)    — OAUTHBEARER base64url URL
 *   2: sl_msk_iam_is_token(rest)
 *   3: "<user-agent>\n<session token>" built into a payload and a token with the secret, then
 *      verified: what Sluice builds must verify (round trip), whatever the strings hold.
 * Security invariant: the lookup's secret is random, made at start-up, and never leaves this
 * process, so no input can carry a valid signature; modes 0-2 aborting on SL_OK would mean a
 * forgery got through. The clock is fixed near the seeds' date so the signature check is
 * reached. */
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_msk_iam.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 1796569200 /* 2026-12-06T15:00:00Z, the seeds' date */

static char g_secret[41];

static bool lookup(void *ud, const char *akid, const char *token, char *secret, size_t cap) {
    (void)ud;
    (void)token;
    if (!akid[0]) abort(); /* the verifier never asks for an empty key id */
    snprintf(secret, cap, "%s", g_secret);
    return true;
}

static const char *const k_hosts[] = {"b-1.demo.abc123.c3.kafka.eu-west-1.amazonaws.com",
                                      "b-2.demo.abc123.c3.kafka.eu-west-1.amazonaws.com",
                                      "examples.com"};

static void init(void) {
    if (g_secret[0]) return;
    uint8_t r[20];
    if (RAND_bytes(r, sizeof r) != 1) abort();
    for (int i = 0; i < 20; i++) snprintf(g_secret + 2 * i, 3, "%02x", r[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size < 1) return 0;
    uint8_t mode = data[0] % 4;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    sl_msk_iam_verify_cfg cfg = {.hosts = k_hosts,
                                 .nhosts = 3,
                                 .region = "eu-west-1",
                                 .now_s = T0 + 60,
                                 .skew_s = 300,
                                 .max_expires = 900,
                                 .lookup = lookup};
    sl_msk_iam_id id;
    const char *why = NULL;
    if (mode == 0) {
        if (sl_msk_iam_verify_payload(&cfg, p, n, &id, &why) == SL_OK) abort();
        if (!why) abort();
    } else if (mode == 1) {
        cfg.region = "us-west-2";
        if (sl_msk_iam_verify_token(&cfg, (const char *)p, n, &id, &why) == SL_OK) abort();
        if (!why) abort();
    } else if (mode == 2) {
        (void)sl_msk_iam_is_token((const char *)p, n);
    } else {
        if (n > 1024) return 0; /* escaped, still under SL_MSK_IAM_MAX_INPUT */
        char *s = malloc(n + 1);
        if (!s) return 0;
        memcpy(s, p, n);
        s[n] = 0;
        char *tok = strchr(s, '\n');
        if (tok) *tok++ = 0;
        /* C strings: stop at an embedded NUL like any caller would */
        sl_sigv4_creds c = {"ASIAFUZZ", g_secret, tok};
        char *out = NULL;
        size_t ol = 0;
        if (sl_msk_iam_payload(&c, "eu-west-1", k_hosts[0], T0, s, &out, &ol) == SL_OK) {
            sl_err e = sl_msk_iam_verify_payload(&cfg, (const uint8_t *)out, ol, &id, &why);
            /* the JSON parser refuses invalid UTF-8, so only a valid-text round trip must pass */
            if (e == SL_OK && (strcmp(id.akid, "ASIAFUZZ") || id.temporary != (tok && *tok)))
                abort();
            if (e != SL_OK && why && strcmp(why, "payload is not a JSON object")) abort();
            free(out);
        }
        char *t = NULL;
        if (sl_msk_iam_token(&c, "eu-west-1", T0, s, &t) == SL_OK) {
            if (sl_msk_iam_verify_token(&cfg, t, strlen(t), &id, &why) != SL_OK) abort();
            free(t);
        }
        free(s);
    }
    return 0;
}
