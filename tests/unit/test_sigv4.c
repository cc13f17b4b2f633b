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

#include "auth/sl_https.h"
#include "kms/sl_awscreds.h"
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

/* ---- credential sources: parsers ---- */

SL_TEST(awscreds_shared_file_profiles) {
    static const char k_creds[] = "# comment\n"
                                  "[default]\n"
                                  "aws_access_key_id = AKIDDEFAULT\n"
                                  "aws_secret_access_key=secretdefault\n"
                                  "\n"
                                  "[ci]\r\n"
                                  "  aws_access_key_id\t=  AKIDCI  \r\n"
                                  "aws_secret_access_key = secret/ci+x=\r\n"
                                  "aws_session_token = tokci\r\n"
                                  "[half]\n"
                                  "aws_access_key_id = AKIDHALF\n"
                                  "[bad\n"
                                  "aws_access_key_id = AKIDBAD\n";
    sl_awscreds c;
    CHECK_EQ(sl_awscreds_parse_ini(k_creds, sizeof k_creds - 1, "default", false, &c), SL_OK);
    CHECK(!strcmp(c.akid, "AKIDDEFAULT") && !strcmp(c.secret, "secretdefault") && !c.token[0]);
    CHECK_EQ(sl_awscreds_parse_ini(k_creds, sizeof k_creds - 1, "ci", false, &c), SL_OK);
    CHECK(!strcmp(c.akid, "AKIDCI") && !strcmp(c.secret, "secret/ci+x=") &&
          !strcmp(c.token, "tokci") && c.expires == 0);
    CHECK_EQ(sl_awscreds_parse_ini(k_creds, sizeof k_creds - 1, "half", false, &c), SL_EKMS_DENIED);
    CHECK_EQ(sl_awscreds_parse_ini(k_creds, sizeof k_creds - 1, "nope", false, &c), SL_ENOTFOUND);
    /* a malformed section header ends the previous section without opening one */
    CHECK_EQ(sl_awscreds_parse_ini(k_creds, sizeof k_creds - 1, "bad", false, &c), SL_ENOTFOUND);
    /* the config file names sections "profile x", except default */
    static const char k_cfg[] = "[default]\nregion = eu-west-1\n[profile ci]\nregion=us-east-2\n"
                                "aws_access_key_id=AKIDCFG\naws_secret_access_key=s\n[ci]\n"
                                "region=wrong\n";
    char r[32];
    CHECK(sl_awscreds_ini_value(k_cfg, sizeof k_cfg - 1, "ci", true, "region", r, sizeof r));
    CHECK(!strcmp(r, "us-east-2"));
    CHECK(sl_awscreds_ini_value(k_cfg, sizeof k_cfg - 1, "default", true, "region", r, sizeof r));
    CHECK(!strcmp(r, "eu-west-1"));
    CHECK_EQ(sl_awscreds_parse_ini(k_cfg, sizeof k_cfg - 1, "ci", true, &c), SL_OK);
    CHECK(!strcmp(c.akid, "AKIDCFG"));
    /* values that could inject into an HTTP header are refused */
    static const char k_inj[] = "[x]\naws_access_key_id=A B\naws_secret_access_key=s\n";
    CHECK_EQ(sl_awscreds_parse_ini(k_inj, sizeof k_inj - 1, "x", false, &c), SL_EKMS_DENIED);
    sl_awscreds_clear(&c);
}

SL_TEST(awscreds_time) {
    CHECK_EQ(sl_awscreds_parse_time("2015-08-30T12:36:00Z", 20), 1440938160);
    CHECK_EQ(sl_awscreds_parse_time("2015-08-30T12:36:00.123Z", 24), 1440938160);
    CHECK_EQ(sl_awscreds_parse_time("2015-08-30T12:36:00+00:00", 25), 1440938160);
    CHECK_EQ(sl_awscreds_parse_time("2015-08-30 12:36:00Z", 20), -1);
    CHECK_EQ(sl_awscreds_parse_time("2015-13-30T12:36:00Z", 20), -1);
    CHECK_EQ(sl_awscreds_parse_time("2015-08-30T12:36:00", 19), -1);
}

SL_TEST(awscreds_imds_answer) {
    static const char k_ok[] = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : "
                               "\"2026-12-06T10:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n  "
                               "\"AccessKeyId\" : \"ASIAIMDS\",\n  \"SecretAccessKey\" : "
                               "\"imds/secret\",\n  \"Token\" : \"imdstoken==\",\n  "
                               "\"Expiration\" : \"2026-12-06T16:00:00Z\"\n}";
    sl_awscreds c;
    CHECK_EQ(sl_awscreds_parse_imds(k_ok, sizeof k_ok - 1, &c), SL_OK);
    CHECK(!strcmp(c.akid, "ASIAIMDS") && !strcmp(c.secret, "imds/secret") &&
          !strcmp(c.token, "imdstoken=="));
    CHECK_EQ(c.expires, sl_awscreds_parse_time("2026-12-06T16:00:00Z", 20));
    CHECK(!strcmp(c.source, "instance metadata"));
    /* refresh 15 min before expiry, use until 10 min before */
    CHECK(!sl_awscreds_stale(&c, c.expires - 16 * 60));
    CHECK(sl_awscreds_stale(&c, c.expires - 14 * 60));
    CHECK(sl_awscreds_usable(&c, c.expires - 11 * 60));
    CHECK(!sl_awscreds_usable(&c, c.expires - 9 * 60));
    static const char *const k_bad[] = {
        "{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\","
        "\"Expiration\":\"2026-12-06T16:00:00Z\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\"}",
        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":7,\"Token\":\"T\",\"Expiration\":\"x\"}",
        "{\"AccessKeyId\":\"A\\nB\",\"SecretAccessKey\":\"S\",\"Token\":\"T\","
        "\"Expiration\":\"2026-12-06T16:00:00Z\"}",
        "[1,2]",
        "{\"AccessKeyId\":\"A\",",
        "",
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof *k_bad; i++)
        CHECK_EQ(sl_awscreds_parse_imds(k_bad[i], strlen(k_bad[i]), &c), SL_EKMS_DENIED);
}

SL_TEST(awscreds_sts_answer) {
    static const char k_ok[] =
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleWithWebIdentityResult>\n"
        "    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sluice</"
        "SubjectFromWebIdentityToken>\n"
        "    <Credentials>\n"
        "      <SessionToken>FwoG&amp;token/+=</SessionToken>\n"
        "      <SecretAccessKey>wJal/sts</SecretAccessKey>\n"
        "      <Expiration>2026-12-06T13:00:00Z</Expiration>\n"
        "      <AccessKeyId>ASIASTS</AccessKeyId>\n"
        "    </Credentials>\n"
        "  </AssumeRoleWithWebIdentityResult>\n"
        "</AssumeRoleWithWebIdentityResponse>\n";
    sl_awscreds c;
    char err[160];
    CHECK_EQ(sl_awscreds_parse_sts(k_ok, sizeof k_ok - 1, &c, err, sizeof err), SL_OK);
    CHECK(!strcmp(c.akid, "ASIASTS") && !strcmp(c.secret, "wJal/sts") &&
          !strcmp(c.token, "FwoG&token/+="));
    CHECK_EQ(c.expires, sl_awscreds_parse_time("2026-12-06T13:00:00Z", 20));
    static const char k_err[] = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</"
                                "Code><Message>Not authorized</Message></Error></ErrorResponse>";
    CHECK_EQ(sl_awscreds_parse_sts(k_err, sizeof k_err - 1, &c, err, sizeof err), SL_EKMS_DENIED);
    CHECK(strstr(err, "AccessDenied"));
    static const char *const k_bad[] = {
        "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
        "</Credentials></AssumeRoleWithWebIdentityResult>",
        "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
        "<SecretAccessKey>S</SecretAccessKey><SessionToken>T&bogus;</SessionToken>"
        "<Expiration>2026-12-06T13:00:00Z</Expiration></Credentials>"
        "</AssumeRoleWithWebIdentityResult>",
        "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
        "<SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>"
        "<Expiration>tomorrow</Expiration></Credentials></AssumeRoleWithWebIdentityResult>",
        "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A",
        "",
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof *k_bad; i++)
        CHECK_EQ(sl_awscreds_parse_sts(k_bad[i], strlen(k_bad[i]), &c, err, sizeof err),
                 SL_EKMS_DENIED);
}

/* Plain http:// is for loopback and the instance metadata address only, and only when asked. */
SL_TEST(https_plain_http_limited) {
    sl_https_resp r;
    char err[160];
    sl_https_req rq = {.method = "GET",
                       .url = "http://192.0.2.1/",
                       .timeout_ms = 200,
                       .max_body = 16,
                       .allow_http = true};
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_ECONFIG);
    rq.url = "http://example.com/";
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_ECONFIG);
    rq.url = "http://127.0.0.1:1/";
    rq.allow_http = false;
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_ECONFIG);
    /* allowed: fails only for want of a listener */
    rq.allow_http = true;
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_EIO);
    /* header injection and client-owned headers are refused */
    sl_https_header h[] = {{"X-A", "v\r\nX-B: w"}};
    rq.headers = h;
    rq.nheaders = 1;
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_EINVAL);
    h[0] = (sl_https_header){"Host", "evil"};
    CHECK_EQ(sl_https_request(&rq, &r, err, sizeof err), SL_EINVAL);
    char host[64];
    CHECK_EQ(sl_https_host("https://127.0.0.1:8443/", false, host, sizeof host), SL_OK);
    CHECK(!strcmp(host, "127.0.0.1:8443"));
    CHECK_EQ(sl_https_host("https://kms.eu-west-1.amazonaws.com/", false, host, sizeof host),
             SL_OK);
    CHECK(!strcmp(host, "kms.eu-west-1.amazonaws.com"));
    CHECK_EQ(sl_https_host("https://[::1]:9/", false, host, sizeof host), SL_OK);
    CHECK(!strcmp(host, "[::1]:9"));
}

/* ---- Query-string (presign) form ---- */

/* The aws-c-auth query-signed-request.txt vectors (README: query-*.txt). The parameters before
 * the first X-Amz-Signature are what was signed (the session-token file repeats the token after
 * it); every case's signature implies X-Amz-Expires=3600, which the files carry. The caller's own
 * parameters in these cases need no decoding, and the test refuses any that would. */
static void check_presign_vector(int *sl_failed_, const char *name, const char *want_sig) {
    char buf[2048];
    FILE *f = open_vector(name);
    CHECK(f != NULL);
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strchr(buf, '?'), *sp = q ? strchr(q, ' ') : NULL;
    CHECK(q && sp);
    if (!q || !sp) return;
    *sp = 0;
    sl_sigv4_param user[8];
    size_t nu = 0;
    const char *token = NULL, *file_sig = NULL;
    for (char *s = strtok(q + 1, "&"); s; s = strtok(NULL, "&")) {
        char *eq = strchr(s, '=');
        CHECK(eq != NULL);
        if (!eq) return;
        *eq = 0;
        if (!strcmp(s, "X-Amz-Signature")) {
            file_sig = eq + 1;
            break;
        }
        if (!strcmp(s, "X-Amz-Security-Token")) token = eq + 1;
        if (strncmp(s, "X-Amz-", 6)) {
            CHECK(!strchr(s, '%') && !strchr(eq + 1, '%') && nu < 8);
            user[nu++] = (sl_sigv4_param){s, eq + 1};
        }
    }
    CHECK(file_sig && !strcmp(file_sig, want_sig));
    sl_sigv4_presign_req r = {.method = "GET",
                              .path = "/",
                              .host = "example.amazonaws.com",
                              .params = user,
                              .nparams = nu,
                              .expires = 3600};
    sl_sigv4_creds c = {"AKIDEXAMPLE", VEC_SECRET, token};
    char sig[65], *qs = NULL;
    CHECK_EQ(sl_sigv4_presign(&r, &c, "us-east-1", "service", VEC_DATE, sig, &qs, NULL), SL_OK);
    if (strcmp(sig, want_sig)) {
        fprintf(stderr, "  %s:\n  got  %s\n  want %s\n", name, sig, want_sig);
        CHECK(0);
    }
    char tail[96];
    snprintf(tail, sizeof tail, "&X-Amz-Signature=%s", want_sig);
    CHECK(qs && strlen(qs) > strlen(tail) && !strcmp(qs + strlen(qs) - strlen(tail), tail));
    free(qs);
}

SL_TEST(sigv4_presign_published_vectors) {
    check_presign_vector(sl_failed_, "query-get-vanilla-query",
                         "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d");
    check_presign_vector(sl_failed_, "query-get-vanilla-query-order-key-case",
                         "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5");
    check_presign_vector(sl_failed_, "query-get-vanilla-query-unreserved",
                         "8e76a88a7433637b12778d5592799b29ad21ecd6cf6325051c21d86f0acda2bf");
    check_presign_vector(sl_failed_, "query-get-vanilla-with-session-token",
                         "7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c");
}

/* The S3 documentation's presigned URL example (sigv4-query-string-auth.html): needs the caller's
 * payload hash ("UNSIGNED-PAYLOAD") and a non-root path. */
SL_TEST(sigv4_presign_s3_docs_example) {
    sl_sigv4_presign_req r = {.method = "GET",
                              .path = "/test.txt",
                              .host = "examplebucket.s3.amazonaws.com",
                              .expires = 86400,
                              .payload_hash = "UNSIGNED-PAYLOAD"};
    sl_sigv4_creds c = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL};
    char sig[65];
    CHECK_EQ(sl_sigv4_presign(&r, &c, "us-east-1", "s3", "20130524T000000Z", sig, NULL, NULL),
             SL_OK);
    CHECK(!strcmp(sig, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"));
}

/* The MSK IAM shape: the kafkajs plugin's published vector
 * (jmaver-plume/kafkajs-msk-iam-authentication-mechanism src/create-payload.spec.ts, MIT),
 * reproduced by botocore. Also the exact canonical request, and sl_sigv4_signature over it gives
 * the same signature (what a verifier rebuilds). */
SL_TEST(sigv4_presign_msk_vector) {
    sl_sigv4_param act = {"Action", "kafka-cluster:Connect"};
    sl_sigv4_presign_req r = {.method = "GET",
                              .path = "/",
                              .host = "examples.com",
                              .params = &act,
                              .nparams = 1,
                              .expires = 900};
    sl_sigv4_creds c = {"accessKeyId", "secretAccessKey", "sessionToken"};
    char sig[65], *qs = NULL, *creq = NULL;
    CHECK_EQ(
        sl_sigv4_presign(&r, &c, "us-east-1", "kafka-cluster", "20210101T000000Z", sig, &qs, &creq),
        SL_OK);
    static const char want[] = "3515d158e62c159a3d8d4344942cff44c865cdeac6748a4b5dc42686641bb272";
    CHECK(!strcmp(sig, want));
    static const char want_q[] =
        "Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "accessKeyId%2F20210101%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date="
        "20210101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=sessionToken&X-Amz-"
        "SignedHeaders=host";
    char want_creq[1024];
    snprintf(want_creq, sizeof want_creq,
             "GET\n/\n%s\nhost:examples.com\n\nhost\n"
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
             want_q);
    CHECK(creq && !strcmp(creq, want_creq));
    CHECK(qs && !strncmp(qs, want_q, strlen(want_q)));
    char sig2[65], sts[400];
    CHECK_EQ(sl_sigv4_signature(want_creq, "secretAccessKey", "us-east-1", "kafka-cluster",
                                "20210101T000000Z", sig2, sts, sizeof sts),
             SL_OK);
    CHECK(!strcmp(sig2, want));
    CHECK(!strcmp(sts, "AWS4-HMAC-SHA256\n20210101T000000Z\n20210101/us-east-1/kafka-cluster/"
                       "aws4_request\n"
                       "c47dbf9b36a0c796198a43061b8fe4e9dff7f9a9a0c7a802dceb31e0708da148"));
    free(qs);
    free(creq);
    /* Encoding once: a raw '/' '+' '=' in a value is escaped, a '%' is not decoded first. */
    sl_sigv4_param p[] = {{"b", "x%2F"}, {"a", "t/o+k=en"}};
    char *cq = sl_sigv4_query_canonical(p, 2);
    CHECK(cq && !strcmp(cq, "a=t%2Fo%2Bk%3Den&b=x%252F"));
    free(cq);
    /* Out-of-range expiry and malformed input are refused. */
    r.expires = 0;
    CHECK_EQ(
        sl_sigv4_presign(&r, &c, "us-east-1", "kafka-cluster", "20210101T000000Z", sig, NULL, NULL),
        SL_EINVAL);
    r.expires = 604801;
    CHECK_EQ(
        sl_sigv4_presign(&r, &c, "us-east-1", "kafka-cluster", "20210101T000000Z", sig, NULL, NULL),
        SL_EINVAL);
    r.expires = 900;
    r.host = "a b";
    CHECK_EQ(
        sl_sigv4_presign(&r, &c, "us-east-1", "kafka-cluster", "20210101T000000Z", sig, NULL, NULL),
        SL_EINVAL);
}
