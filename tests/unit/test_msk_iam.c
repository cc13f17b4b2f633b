/* AWS_MSK_IAM payloads and MSK OAUTHBEARER tokens: Sluice builds → Sluice verifies, every check
 * the verifier makes refuses a payload that breaks it, and botocore-made payloads and tokens
 * (tests/unit/msk_iam/, made by make_fixtures.py there) verify. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/sl_b64.h"
#include "auth/sl_msk_iam.h"
#include "sl_test.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define T0     1796569200 /* 2026-12-06T15:00:00Z, the fixtures' time */
#define HOST1  "b-1.demo.abc123.c3.kafka.eu-west-1.amazonaws.com"
#define HOST2  "b-2.demo.abc123.c3.kafka.eu-west-1.amazonaws.com"
#define REGION "eu-west-1"

/* Knows AKIDEXAMPLE and ASIAEXAMPLE (the latter only with its token); counts lookups. */
static int g_lookups;
static bool lookup(void *ud, const char *akid, const char *token, char *secret, size_t cap) {
    (void)ud;
    g_lookups++;
    if (!strcmp(akid, "AKIDEXAMPLE") ||
        (!strcmp(akid, "ASIAEXAMPLE") && token && !strcmp(token, "tok/en+=x"))) {
        snprintf(secret, cap, "%s", SECRET);
        return true;
    }
    return false;
}

static const char *const k_hosts[] = {HOST1, HOST2};

static sl_msk_iam_verify_cfg cfg_at(int64_t now) {
    return (sl_msk_iam_verify_cfg){.hosts = k_hosts,
                                   .nhosts = 2,
                                   .region = REGION,
                                   .now_s = now,
                                   .skew_s = 300,
                                   .max_expires = 900,
                                   .lookup = lookup};
}

static sl_err verify_str(const sl_msk_iam_verify_cfg *cfg, const char *json, const char **why) {
    sl_msk_iam_id id;
    return sl_msk_iam_verify_payload(cfg, (const uint8_t *)json, strlen(json), &id, why);
}

/* Replaces the first `from` in s (malloc'd) with `to`; returns a new malloc'd string. */
static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) return NULL;
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return r;
}

SL_TEST(msk_iam_payload_round_trip_and_refusals) {
    sl_sigv4_creds lt = {"AKIDEXAMPLE", SECRET, NULL};
    char *p = NULL;
    size_t pl = 0;
    CHECK_EQ(sl_msk_iam_payload(&lt, REGION, HOST1, T0, "sluice-test/1", &p, &pl), SL_OK);
    CHECK(p && pl == strlen(p) && !strstr(p, "x-amz-security-token") && !strstr(p, SECRET));
    sl_msk_iam_verify_cfg cfg = cfg_at(T0 + 10);
    sl_msk_iam_id id;
    const char *why = NULL;
    CHECK_EQ(sl_msk_iam_verify_payload(&cfg, (const uint8_t *)p, pl, &id, &why), SL_OK);
    CHECK(!strcmp(id.akid, "AKIDEXAMPLE") && id.expiry_s == T0 + 900 && !id.temporary);

    /* tampered signature */
    char *bad = strdup(p);
    char *sig = strstr(bad, "\"x-amz-signature\":\"") + 19;
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    free(bad);
    /* a signed field changed (expires) */
    bad = replace(p, "\"900\"", "\"899\"");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    free(bad);
    /* another host (not ours) and a host of ours it was not signed for */
    bad = replace(p, HOST1, "b-9.other.example.com");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    CHECK(!strcmp(why, "host is not this broker"));
    free(bad);
    bad = replace(p, HOST1, HOST2);
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    free(bad);
    /* expired: the last valid second, then one past */
    cfg = cfg_at(T0 + 900);
    CHECK_EQ(verify_str(&cfg, p, &why), SL_OK);
    cfg = cfg_at(T0 + 901);
    CHECK_EQ(verify_str(&cfg, p, &why), SL_EAUTH);
    CHECK(!strcmp(why, "expired"));
    /* from the future: within the skew, then beyond it */
    cfg = cfg_at(T0 - 300);
    CHECK_EQ(verify_str(&cfg, p, &why), SL_OK);
    cfg = cfg_at(T0 - 301);
    CHECK_EQ(verify_str(&cfg, p, &why), SL_EAUTH);
    CHECK(!strcmp(why, "date in the future"));
    /* a shorter allowed expiry */
    cfg = cfg_at(T0);
    cfg.max_expires = 600;
    CHECK_EQ(verify_str(&cfg, p, &why), SL_EAUTH);
    CHECK(!strcmp(why, "expires too long"));
    /* wrong region configured */
    cfg = cfg_at(T0);
    cfg.region = "us-east-1";
    CHECK_EQ(verify_str(&cfg, p, &why), SL_EAUTH);
    CHECK(!strcmp(why, "wrong region"));
    /* unknown key, signed properly with the right secret: looked up, refused like a bad
     * signature */
    cfg = cfg_at(T0);
    sl_sigv4_creds unk = {"AKIDUNKNOWN", SECRET, NULL};
    char *u = NULL;
    CHECK_EQ(sl_msk_iam_payload(&unk, REGION, HOST1, T0, "x", &u, NULL), SL_OK);
    g_lookups = 0;
    CHECK_EQ(verify_str(&cfg, u, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match") && g_lookups == 1);
    free(u);
    /* unknown keys, non-string values, wrong version, missing signature */
    bad = replace(p, "\"version\"", "\"extra\":\"1\",\"version\"");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    free(bad);
    bad = replace(p, "\"900\"", "900");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    free(bad);
    bad = replace(p, "2020_10_22", "2020_10_23");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    free(bad);
    bad = replace(p, "\"x-amz-signature\"", "\"user-agent2\"");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    free(bad);
    CHECK_EQ(verify_str(&cfg, "[]", &why), SL_EAUTH);
    free(p);

    /* temporary credentials: the token is in the payload and signed; the lookup sees it */
    sl_sigv4_creds tmp = {"ASIAEXAMPLE", SECRET, "tok/en+=x"};
    CHECK_EQ(sl_msk_iam_payload(&tmp, REGION, HOST2, T0, "a\"b\\c", &p, &pl), SL_OK);
    CHECK(strstr(p, "\"x-amz-security-token\":\"tok/en+=x\""));
    CHECK_EQ(sl_msk_iam_verify_payload(&cfg, (const uint8_t *)p, pl, &id, &why), SL_OK);
    CHECK(id.temporary && !strcmp(id.akid, "ASIAEXAMPLE"));
    bad = replace(p, "tok/en+=x", "tok/en+=y");
    CHECK_EQ(verify_str(&cfg, bad, &why), SL_EAUTH);
    free(bad);
    free(p);
}

SL_TEST(msk_iam_token_round_trip_and_refusals) {
    sl_sigv4_creds tmp = {"ASIAEXAMPLE", SECRET, "tok/en+=x"};
    char *t = NULL;
    CHECK_EQ(sl_msk_iam_token(&tmp, REGION, T0, "sluice-test/1 (x)", &t), SL_OK);
    CHECK(t && !strchr(t, '=') && !strchr(t, '.') && sl_msk_iam_is_token(t, strlen(t)));
    sl_msk_iam_verify_cfg cfg = cfg_at(T0 + 1);
    sl_msk_iam_id id;
    const char *why = NULL;
    CHECK_EQ(sl_msk_iam_verify_token(&cfg, t, strlen(t), &id, &why), SL_OK);
    CHECK(id.temporary && id.expiry_s == T0 + 900 && !strcmp(id.akid, "ASIAEXAMPLE"));
    /* decode, tamper, re-encode */
    uint8_t url[2048];
    size_t ul = 0;
    CHECK(sl_b64url_decode(t, strlen(t), url, sizeof url - 1, &ul));
    url[ul] = 0;
    CHECK(!strncmp((char *)url,
                   "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3A"
                   "Connect&",
                   70));
    CHECK(strstr((char *)url, "&User-Agent=sluice-test%2F1%20%28x%29"));
    static const char *const tamper[][2] = {
        {"X-Amz-Expires=900", "X-Amz-Expires=901"},    /* signed value */
        {"tok%2Fen%2B%3Dx", "tok%2Fen%2B%3Dy"},        /* the session token is signed */
        {"&User-Agent=", "&User-Agent=a&User-Agent="}, /* duplicate */
        {"&User-Agent=", "&Other=1&User-Agent="},      /* unknown parameter */
        {"eu-west-1.amazonaws.com", "us-east-1.amazonaws.com"},
    };
    for (size_t i = 0; i < sizeof tamper / sizeof *tamper; i++) {
        char *b = replace((char *)url, tamper[i][0], tamper[i][1]);
        CHECK(b);
        char enc[4096];
        CHECK(sl_b64url_encode((const uint8_t *)b, strlen(b), enc, sizeof enc));
        free(b);
        CHECK_EQ(sl_msk_iam_verify_token(&cfg, enc, strlen(enc), &id, &why), SL_EAUTH);
    }
    /* the User-Agent is not signed: another one still verifies */
    char *b = replace((char *)url, "&User-Agent=sluice-test", "&User-Agent=other");
    char enc[4096];
    CHECK(sl_b64url_encode((const uint8_t *)b, strlen(b), enc, sizeof enc));
    free(b);
    CHECK_EQ(sl_msk_iam_verify_token(&cfg, enc, strlen(enc), &id, &why), SL_OK);
    cfg = cfg_at(T0 + 901);
    CHECK_EQ(sl_msk_iam_verify_token(&cfg, t, strlen(t), &id, &why), SL_EAUTH);
    CHECK(!strcmp(why, "expired"));
    /* a JWT is not an MSK token */
    CHECK(!sl_msk_iam_is_token("eyJhbGciOiJIUzI1NiJ9.e30.x", 25));
    free(t);
}

static char *read_fixture(const char *name) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "tests/unit/msk_iam/%s", name);
    FILE *f = fopen(p, "rb");
    if (!f) {
        char exe[PATH_MAX - 64];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) return NULL;
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (!s) return NULL;
        *s = 0;
        snprintf(p, sizeof p, "%s/../../tests/unit/msk_iam/%s", exe, name);
        f = fopen(p, "rb");
    }
    if (!f) return NULL;
    char *buf = calloc(1, 8192);
    if (buf) fread(buf, 1, 8191, f);
    fclose(f);
    return buf;
}

SL_TEST(msk_iam_botocore_fixtures_verify) {
    sl_msk_iam_verify_cfg cfg = cfg_at(T0 + 60);
    const char *why = NULL;
    char *a = read_fixture("botocore-payload-long-term.json");
    char *b = read_fixture("botocore-payload-session.json");
    char *t = read_fixture("botocore-token.txt");
    CHECK(a && b && t);
    CHECK_EQ(verify_str(&cfg, a, &why), SL_OK);
    CHECK_EQ(verify_str(&cfg, b, &why), SL_OK);
    sl_msk_iam_verify_cfg tc = cfg;
    tc.region = "us-west-2";
    sl_msk_iam_id id;
    CHECK_EQ(sl_msk_iam_verify_token(&tc, t, strlen(t), &id, &why), SL_OK);
    CHECK(id.temporary && !strcmp(id.akid, "AKIDEXAMPLE"));
    /* and Sluice builds the same signature botocore did for the same inputs */
    sl_sigv4_creds lt = {"AKIDEXAMPLE", SECRET, NULL};
    char *p = NULL;
    CHECK_EQ(sl_msk_iam_payload(&lt, REGION, HOST1, T0, "x", &p, NULL), SL_OK);
    const char *s1 = strstr(p, "\"x-amz-signature\":\"") + 19;
    const char *s2 = strstr(a, "\"x-amz-signature\": \"") + 20;
    CHECK(!strncmp(s1, s2, 64));
    free(p);
    free(a);
    free(b);
    free(t);
}

/* ---- the header form (the STS endpoint's requests) ---- */

/* A fixture request split into headers (NUL-terminated in place) and its body. */
typedef struct http_fx {
    char *text;
    sl_sigv4_header h[SL_SIGV4_MAX_HEADERS];
    size_t n;
    const char *body;
} http_fx;

static bool split_fx(char *text, http_fx *fx) {
    memset(fx, 0, sizeof *fx);
    fx->text = text;
    char *p = text;
    for (;;) {
        char *eol = strstr(p, "\r\n");
        if (!eol) return false;
        *eol = 0;
        if (eol == p) break;
        char *colon = strchr(p, ':');
        if (!colon || fx->n == SL_SIGV4_MAX_HEADERS) return false;
        *colon = 0;
        fx->h[fx->n++] = (sl_sigv4_header){p, colon + 2};
        p = eol + 2;
    }
    fx->body = p + 2;
    return true;
}

static const char *k_sts_hosts[] = {"127.0.0.1"};

static sl_err verify_fx(const http_fx *fx, int64_t now, const char *region, const char *body,
                        const char **why) {
    sl_msk_iam_verify_cfg cfg = cfg_at(now);
    cfg.hosts = k_sts_hosts;
    cfg.nhosts = 1;
    cfg.region = region;
    sl_msk_iam_http r = {.method = "POST",
                         .path = "/",
                         .query = "",
                         .headers = fx->h,
                         .nheaders = fx->n,
                         .body = (const uint8_t *)body,
                         .blen = strlen(body),
                         .service = "sts"};
    sl_msk_iam_id id;
    sl_err e = sl_msk_iam_verify_http(&cfg, &r, &id, why);
    if (!e && (strcmp(id.akid, "ASIAEXAMPLE") || !id.temporary)) return SL_EINVAL;
    return e;
}

static sl_sigv4_header *fx_header(http_fx *fx, const char *name) {
    for (size_t i = 0; i < fx->n; i++)
        if (!strcasecmp(fx->h[i].name, name)) return &fx->h[i];
    return NULL;
}

SL_TEST(msk_iam_http_header_form_botocore_request_and_refusals) {
    char *t = read_fixture("botocore-sts-assume-role.txt");
    CHECK(t);
    if (!t) return;
    http_fx fx;
    CHECK(split_fx(t, &fx));
    const char *why = NULL;
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_OK);
    CHECK_EQ(verify_fx(&fx, T0 - 299, REGION, fx.body, &why), SL_OK);
    /* the body is signed */
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, "Action=AssumeRole&Version=2011-06-15", &why),
             SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    /* out of the skew, both ways: a captured request replays only within it */
    CHECK_EQ(verify_fx(&fx, T0 + 301, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "expired"));
    CHECK_EQ(verify_fx(&fx, T0 - 301, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "date in the future"));
    CHECK_EQ(verify_fx(&fx, T0 + 60, "us-east-1", fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "wrong region"));
    /* another host */
    sl_sigv4_header *host = fx_header(&fx, "host");
    const char *h0 = host->value;
    host->value = "127.0.0.2:9443";
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "host is not this broker"));
    host->value = "127.0.0.1:9444"; /* signed with the port: another port is another request */
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    host->value = h0;
    /* the token: another one does not open the key; one left unsigned is refused */
    sl_sigv4_header *tok = fx_header(&fx, "x-amz-security-token");
    tok->value = "tok/en+=y";
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    tok->value = "tok/en+=x";
    sl_sigv4_header *az = fx_header(&fx, "authorization");
    const char *a0 = az->value;
    char *a1 = replace(a0, ";x-amz-security-token", "");
    az->value = a1;
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "the security token must be signed"));
    free(a1);
    /* an unknown key and a wrong secret look alike */
    a1 = replace(a0, "ASIAEXAMPLE", "ASIAEXAMPLF");
    az->value = a1;
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "signature does not match"));
    free(a1);
    /* the service in the scope must be sts */
    a1 = replace(a0, "/sts/", "/kafka-cluster/");
    az->value = a1;
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "wrong service"));
    free(a1);
    /* a signed header the request does not carry; a repeated date; no authorization */
    a1 = replace(a0, "content-type;", "content-type;x-extra;");
    az->value = a1;
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "a signed header is missing"));
    free(a1);
    az->value = a0;
    fx.h[fx.n++] = (sl_sigv4_header){"x-amz-date", "20261206T150001Z"};
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "a signing header is repeated"));
    fx.n--;
    az->name = "x-not-authorization";
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_EAUTH);
    CHECK(!strcmp(why, "missing authorization"));
    az->name = "Authorization";
    CHECK_EQ(verify_fx(&fx, T0 + 60, REGION, fx.body, &why), SL_OK);
    free(t);
}
