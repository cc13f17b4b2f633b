/* SigV4 signer against the published AWS test suite (a subset vendored under tests/unit/sigv4/,
 * see its README), plus the AWS credential sources' parsers (shared credentials file, IMDS and
 * STS web-identity answers). Each vector file is a signed request; the test removes its
 * Authorization header, signs what is left and must produce that header byte for byte. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kms/sl_sigv4.h"
#include "sl_test.h"

#define VEC_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define VEC_DATE   "20150830T123600Z"

/* The vector directory: tests/unit/sigv4 from the repository root (how tests/run_all.sh runs
 * the binary), else next to build/<flavour>/unit_tests. */
static FILE *open_vector(const char *name) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "tests/unit/sigv4/%s.txt", name);
    FILE *f = fopen(p, "rb");
    if (f) return f;
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *s = strrchr(exe, '/');
    if (!s) return NULL;
    *s = 0;
    snprintf(p, sizeof p, "%s/../../tests/unit/sigv4/%s.txt", exe, name);
    return fopen(p, "rb");
}

typedef struct vec {
    char buf[8192];
    char *method, *path, *query;
    sl_sigv4_header h[SL_SIGV4_MAX_HEADERS];
    size_t nh;
    char *authz, *token;
    uint8_t *body;
    size_t blen;
} vec;

/* Parses a signed-request file in place: request line, "Name:value" lines (a line starting
 * with a space adds one more value to the previous header), blank line, body. */
static int load_vector(const char *name, vec *v) {
    memset(v, 0, sizeof *v);
    FILE *f = open_vector(name);
    if (!f) return -1;
    size_t n = fread(v->buf, 1, sizeof v->buf - 1, f);
    fclose(f);
    v->buf[n] = 0;
    char *end = v->buf + n, *p = v->buf;
    char *nl = strchr(p, '\n');
    if (!nl) return -1;
    *nl = 0;
    v->method = p;
    char *sp = strchr(p, ' ');
    if (!sp) return -1;
    *sp = 0;
    v->path = sp + 1;
    char *sp2 = strrchr(v->path, ' ');
    if (!sp2) return -1;
    *sp2 = 0;
    char *q = strchr(v->path, '?');
    if (q) {
        *q = 0;
        v->query = q + 1;
    }
    p = nl + 1;
    while (p < end && *p != '\n') {
        nl = strchr(p, '\n');
        if (!nl) return -1;
        *nl = 0;
        if (*p == ' ') {
            /* A continuation line is one more value of the previous header: the suite's
             * canonical request joins them with ',' like repeated headers. */
            if (!v->nh || v->nh == SL_SIGV4_MAX_HEADERS) return -1;
            v->h[v->nh].name = v->h[v->nh - 1].name;
            v->h[v->nh++].value = p;
        } else {
            char *c = strchr(p, ':');
            if (!c || v->nh == SL_SIGV4_MAX_HEADERS) return -1;
            *c = 0;
            if (!strcasecmp(p, "Authorization")) {
                v->authz = c + 1;
            } else {
                if (!strcasecmp(p, "X-Amz-Security-Token")) v->token = c + 1;
                v->h[v->nh].name = p;
                v->h[v->nh++].value = c + 1;
            }
        }
        p = nl + 1;
    }
    if (p < end) p++;
    v->body = (uint8_t *)p;
    v->blen = (size_t)(end - p);
    return v->authz ? 0 : -1;
}

static sl_sigv4_request vec_req(const vec *v) {
    return (sl_sigv4_request){.method = v->method,
                              .path = v->path,
                              .query = v->query,
                              .headers = v->h,
                              .nheaders = v->nh,
                              .body = v->body,
                              .blen = v->blen};
}

static sl_err sign_vec(const vec *v, char *authz, size_t cap, char *sts, size_t stscap) {
    sl_sigv4_request r = vec_req(v);
    sl_sigv4_creds c = {"AKIDEXAMPLE", VEC_SECRET, v->token};
    return sl_sigv4_sign(&r, &c, "us-east-1", "service", VEC_DATE, authz, cap, sts, stscap);
}

static const char *const k_vectors[] = {
    "get-vanilla-query",
    "post-vanilla",
    "get-header-key-duplicate",
    "get-header-value-multiline",
    "get-header-value-order",
    "get-header-value-trim",
    "get-unreserved",
    "get-utf8",
    "get-vanilla-empty-query-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "get-vanilla-query-order-encoded",
    "get-vanilla-with-session-token",
    "get-slashes-normalized",
    "get-slash-dot-slash-normalized",
    "get-relative-relative-normalized",
    "get-space-normalized",
    "post-header-key-sort",
    "post-header-value-case",
    "post-vanilla-query",
    "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters",
};

SL_TEST(sigv4_published_vectors) {
    static vec v;
    for (size_t i = 0; i < sizeof k_vectors / sizeof *k_vectors; i++) {
        if (load_vector(k_vectors[i], &v)) {
            fprintf(stderr, "  cannot load vector %s\n", k_vectors[i]);
            CHECK(0);
        }
        char authz[512];
        CHECK_EQ(sign_vec(&v, authz, sizeof authz, NULL, 0), SL_OK);
        if (strcmp(authz, v.authz)) {
            fprintf(stderr, "  %s:\n  got  %s\n  want %s\n", k_vectors[i], authz, v.authz);
            CHECK(0);
        }
    }
}

/* The intermediate forms for get-vanilla (botocore produces the same, research §5.1). */
SL_TEST(sigv4_vanilla_canonical_request_and_string_to_sign) {
    static vec v;
    CHECK(load_vector("get-vanilla-query", &v) == 0);
    sl_sigv4_request r = vec_req(&v);
    char *creq = sl_sigv4_canonical_request(&r);
    CHECK(creq);
    int same = !strcmp(creq, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
                             "\nhost;x-amz-date\n"
                             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(creq);
    CHECK(same);
    char authz[512], sts[512];
    CHECK_EQ(sign_vec(&v, authz, sizeof authz, sts, sizeof sts), SL_OK);
    CHECK(!strcmp(
        sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
             "aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"));
}

/* Any change to what is signed changes the signature: the vectors cannot pass by accident. */
SL_TEST(sigv4_tampering_changes_signature) {
    static vec v;
    CHECK(load_vector("post-x-www-form-urlencoded", &v) == 0);
    char good[512], bad[512];
    CHECK_EQ(sign_vec(&v, good, sizeof good, NULL, 0), SL_OK);
    CHECK(!strcmp(good, v.authz));
    v.body[0] ^= 1;
    CHECK_EQ(sign_vec(&v, bad, sizeof bad, NULL, 0), SL_OK);
    CHECK(strcmp(bad, good));
    v.body[0] ^= 1;
    v.h[0].value = "application/json";
    CHECK_EQ(sign_vec(&v, bad, sizeof bad, NULL, 0), SL_OK);
    CHECK(strcmp(bad, good));
}

SL_TEST(sigv4_refuses_malformed_input) {
    static vec v;
    CHECK(load_vector("get-vanilla-with-session-token", &v) == 0);
    char authz[512];
    sl_sigv4_request r = vec_req(&v);
    /* temporary credentials whose token is not among the signed headers */
    sl_sigv4_creds c = {"AKIDEXAMPLE", VEC_SECRET, "another-token"};
    CHECK_EQ(sl_sigv4_sign(&r, &c, "us-east-1", "service", VEC_DATE, authz, sizeof authz, NULL, 0),
             SL_EINVAL);
    c.token = v.token;
    /* a signing date other than the x-amz-date sent */
    CHECK_EQ(sl_sigv4_sign(&r, &c, "us-east-1", "service", "20150830T123601Z", authz, sizeof authz,
                           NULL, 0),
             SL_EINVAL);
    CHECK_EQ(
        sl_sigv4_sign(&r, &c, "us-east-1", "service", "2015-08-30", authz, sizeof authz, NULL, 0),
        SL_EINVAL);
    CHECK_EQ(sl_sigv4_sign(&r, &c, "us/east", "service", VEC_DATE, authz, sizeof authz, NULL, 0),
             SL_EINVAL);
    CHECK_EQ(sl_sigv4_sign(&r, &c, "us-east-1", "service", VEC_DATE, authz, 40, NULL, 0),
             SL_ETOOLARGE);
    /* no host header */
    sl_sigv4_header h[2] = {{"X-Amz-Date", VEC_DATE}, {"Bad Name", "x"}};
    sl_sigv4_request nohost = {.method = "GET", .path = "/", .headers = h, .nheaders = 1};
    c.token = NULL;
    CHECK_EQ(
        sl_sigv4_sign(&nohost, &c, "us-east-1", "service", VEC_DATE, authz, sizeof authz, NULL, 0),
        SL_EINVAL);
    sl_sigv4_header h2[2] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", VEC_DATE}};
    sl_sigv4_request rel = {.method = "GET", .path = "relative", .headers = h2, .nheaders = 2};
    CHECK_EQ(
        sl_sigv4_sign(&rel, &c, "us-east-1", "service", VEC_DATE, authz, sizeof authz, NULL, 0),
        SL_EINVAL);
    sl_sigv4_header h3[3] = {
        {"Host", "example.amazonaws.com"}, {"X-Amz-Date", VEC_DATE}, {"Bad Name", "x"}};
    sl_sigv4_request badname = {.method = "GET", .path = "/", .headers = h3, .nheaders = 3};
    CHECK_EQ(
        sl_sigv4_sign(&badname, &c, "us-east-1", "service", VEC_DATE, authz, sizeof authz, NULL, 0),
        SL_EINVAL);
}

SL_TEST(sigv4_amz_date) {
    char d[17];
    sl_sigv4_amz_date(1440938160, d); /* 2015-08-30T12:36:00Z */
    CHECK(!strcmp(d, VEC_DATE));
}
