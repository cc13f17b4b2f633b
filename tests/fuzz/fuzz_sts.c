/* libFuzzer target for the STS endpoint's parsers (src/iam/sl_iam_sts.h, the header form of
 * src/auth/sl_msk_iam.h, the POST side of src/http/sl_http.h). The first input byte picks:
 *   0: sl_sts_form_parse(rest) and sl_sts_role_name(rest);
 *   1: rest is an HTTP request (head and body): parsed as the endpoint parses it, then its
 *      signature verified with a secret no input can know — SL_OK would be a forgery;
 *   2: rest is a form body: signed by Sluice's own signer, it must verify (round trip), and the
 *      same request with one body byte changed must not.
 * The clock is fixed at the seeds' date so the signature check is reached. */
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_msk_iam.h"
#include "http/sl_http.h"
#include "iam/sl_iam_sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 1796569200 /* 2026-12-06T15:00:00Z */

static char g_secret[41];

static bool lookup(void *ud, const char *akid, const char *token, char *secret, size_t cap) {
    (void)ud;
    (void)token;
    if (!akid[0]) abort();
    snprintf(secret, cap, "%s", g_secret);
    return true;
}

static const char *const k_hosts[] = {"127.0.0.1", "sts.example"};

static sl_msk_iam_verify_cfg cfg(void) {
    return (sl_msk_iam_verify_cfg){.hosts = k_hosts,
                                   .nhosts = 2,
                                   .region = "eu-west-1",
                                   .now_s = T0 + 30,
                                   .skew_s = 300,
                                   .lookup = lookup};
}

static void http_mode(const char *p, size_t n) {
    sl_http_limits lim = {.allow_post = true, .max_body = SL_STS_MAX_BODY};
    sl_http_req r;
    int h = sl_http_parse_ex(p, n, &lim, &r);
    if (h <= 0 || (size_t)h + r.content_length > n) return;
    for (int i = 0; i < r.nheaders; i++) {
        const sl_http_hdr *x = &r.headers[i];
        if (x->name < p || x->value < p || x->name + x->nlen > p + h || x->value + x->vlen > p + h)
            abort(); /* the parser's pointers stay inside the head */
    }
    static char scratch[SL_HTTP_MAX_HEAD + 2 * SL_HTTP_MAX_HEADERS];
    sl_sigv4_header hs[SL_SIGV4_MAX_HEADERS];
    size_t nh = sl_iam_sts_headers(&r, hs, scratch, sizeof scratch);
    sl_msk_iam_http mr = {.method = "POST",
                          .path = "/",
                          .query = "",
                          .headers = hs,
                          .nheaders = nh,
                          .body = (const uint8_t *)p + h,
                          .blen = r.content_length,
                          .service = "sts"};
    sl_msk_iam_verify_cfg c = cfg();
    sl_msk_iam_id id;
    if (sl_msk_iam_verify_http(&c, &mr, &id, NULL) == SL_OK) abort();
}

static void roundtrip(const char *p, size_t n) {
    if (n > 4096 || memchr(p, 0, n)) return;
    char date[17];
    sl_sigv4_amz_date(T0, date);
    sl_sigv4_header hs[5] = {{"Host", "127.0.0.1:9443"},
                             {"Content-Type", "application/x-www-form-urlencoded"},
                             {"X-Amz-Date", date},
                             {"Authorization", NULL}};
    sl_sigv4_request sr = {.method = "POST",
                           .path = "/",
                           .query = "",
                           .headers = hs,
                           .nheaders = 3,
                           .body = (const uint8_t *)p,
                           .blen = n};
    sl_sigv4_creds cr = {"AKIAFUZZFUZZFUZZFUZZ", g_secret, NULL};
    char authz[512];
    if (sl_sigv4_sign(&sr, &cr, "eu-west-1", "sts", date, authz, sizeof authz, NULL, 0)) abort();
    hs[3].value = authz;
    sl_msk_iam_http mr = {.method = "POST",
                          .path = "/",
                          .query = "",
                          .headers = hs,
                          .nheaders = 4,
                          .body = (const uint8_t *)p,
                          .blen = n,
                          .service = "sts"};
    sl_msk_iam_verify_cfg c = cfg();
    sl_msk_iam_id id;
    const char *why = NULL;
    if (sl_msk_iam_verify_http(&c, &mr, &id, &why) != SL_OK) {
        fprintf(stderr, "own signature refused: %s\n", why ? why : "?");
        abort();
    }
    if (!n) return;
    char *q = malloc(n);
    if (!q) return;
    memcpy(q, p, n);
    q[n / 2] ^= 1;
    mr.body = (const uint8_t *)q;
    if (sl_msk_iam_verify_http(&c, &mr, &id, NULL) == SL_OK) abort();
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_secret[0]) {
        uint8_t r[20];
        if (RAND_bytes(r, sizeof r) != 1) abort();
        for (int i = 0; i < 20; i++) snprintf(g_secret + 2 * i, 3, "%02x", r[i]);
    }
    if (size < 1) return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        sl_sts_form f;
        if (sl_sts_form_parse(p, n, &f, NULL) && f.duration_s < 0) abort();
        char *s = malloc(n + 1);
        if (!s) return 0;
        memcpy(s, p, n);
        s[n] = 0;
        char name[129];
        if (sl_sts_role_name(s, "123456789012", name, sizeof name) && !name[0]) abort();
        free(s);
        break;
    }
    case 1:
        http_mode(p, n);
        break;
    default:
        roundtrip(p, n);
    }
    return 0;
}
