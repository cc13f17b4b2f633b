/* OAUTHBEARER validation: JSON, base64url, JWKS and the KIP-768 claim rules, with keys and tokens
 * made in-process and the JWKS served from a file:// URL in a scratch directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_b64.h"
#include "auth/sl_json.h"
#include "auth/sl_jwks.h"
#include "auth/sl_jwt.h"
#include "base/sl_arena.h"
#include "base/sl_time.h"
#include "sl_test.h"
#include "test_jwt_util.h"

#define ISS "https://idp.example/"
#define NOW 1700000000000LL /* ms */

/* Claims with exp/nbf relative to NOW in seconds. */
static const char *claims(const char *iss, const char *aud_json, const char *sub, long exp_rel,
                          const char *extra) {
    static char b[2048];
    snprintf(b, sizeof b, "{\"iss\":\"%s\",\"aud\":%s,\"sub\":\"%s\",\"exp\":%lld%s%s}", iss,
             aud_json, sub, NOW / 1000 + exp_rel, extra ? "," : "", extra ? extra : "");
    return b;
}

typedef struct fixture {
    char dir[512], path[600];
    sl_jwt_validator *v;
} fixture;

static void write_jwks(fixture *f, const char *keys_json) {
    char doc[16384];
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", keys_json);
    tj_write_file(f->path, doc);
}

/* RSA key 0 as "r1" and EC key 0 as "e1". */
static bool setup(fixture *f, int64_t min_refetch_ms) {
    snprintf(f->dir, sizeof f->dir, "%s", tj_tmpdir());
    snprintf(f->path, sizeof f->path, "%s/jwks.json", f->dir);
    char keys[8192] = "";
    tj_jwk(tj_rsa_key(0), "r1", "RS256", keys, sizeof keys);
    strcat(keys, ",");
    tj_jwk(tj_ec_key(0), "e1", NULL, keys, sizeof keys);
    write_jwks(f, keys);
    sl_jwt_config c;
    sl_jwt_config_defaults(&c);
    snprintf(c.jwks_url, sizeof c.jwks_url, "file://%s", f->path);
    snprintf(c.expected_issuer, sizeof c.expected_issuer, "%s", ISS);
    snprintf(c.expected_audience, sizeof c.expected_audience, "kafka, other");
    c.min_refetch_ms = min_refetch_ms;
    char err[256];
    f->v = sl_jwt_validator_new(&c, err, sizeof err);
    if (!f->v) fprintf(stderr, "  validator: %s\n", err);
    return f->v != NULL;
}

static void teardown(fixture *f) {
    sl_jwt_validator_free(f->v);
    unlink(f->path);
    rmdir(f->dir);
}

/* Validates and frees tok; returns the result and leaves the reason in why. */
static sl_err check(fixture *f, char *tok, char *principal, int64_t *exp, char *why) {
    sl_err e = sl_jwt_validate(f->v, tok, strlen(tok), NOW, principal, 256, exp, why, 128);
    free(tok);
    return e;
}

SL_TEST(jwt_b64_strict) {
    uint8_t out[64];
    size_t n;
    char enc[64];
    CHECK(sl_b64url_encode((const uint8_t *)"\xfb\xff", 2, enc, sizeof enc) == 3);
    CHECK(!strcmp(enc, "-_8"));
    CHECK(sl_b64url_decode("-_8", 3, out, sizeof out, &n) && n == 2 && out[0] == 0xfb);
    CHECK(!sl_b64url_decode("-_9", 3, out, sizeof out, &n));  /* non-zero padding bits */
    CHECK(!sl_b64url_decode("-_8=", 4, out, sizeof out, &n)); /* no padding in base64url */
    CHECK(!sl_b64url_decode("+/8", 3, out, sizeof out, &n));  /* standard alphabet */
    CHECK(!sl_b64url_decode("A", 1, out, sizeof out, &n));    /* impossible length */
    CHECK(!sl_b64url_decode("AA A", 4, out, sizeof out, &n));
    CHECK(!sl_b64url_decode("AAAAAAAA", 8, out, 5, &n)); /* output too small */
    CHECK(sl_b64std_encode((const uint8_t *)"ab", 2, enc, sizeof enc) == 4 && !strcmp(enc, "YWI="));
    CHECK(sl_b64std_decode("YWI=", 4, out, sizeof out, &n) && n == 2 && !memcmp(out, "ab", 2));
    CHECK(!sl_b64std_decode("YWI", 3, out, sizeof out, &n));
    CHECK(!sl_b64std_decode("YW==", 4, out, sizeof out, &n)); /* non-canonical */
    CHECK(!sl_b64std_decode("Y===", 4, out, sizeof out, &n));
}

static bool json_ok(const char *s) {
    sl_arena *a = sl_arena_new(4096);
    char err[128];
    bool ok = sl_json_parse(a, s, strlen(s), 16, err, sizeof err) != NULL;
    sl_arena_free(a);
    return ok;
}

SL_TEST(jwt_json_strict) {
    CHECK(json_ok("{\"a\":[1,-2.5e3,true,false,null,\"x\\u00e9\\ud83d\\ude00\"]}"));
    CHECK(json_ok(" 0 "));
    CHECK(!json_ok("{\"a\":1,}"));
    CHECK(!json_ok("[1,]"));
    CHECK(!json_ok("{\"a\":1,\"a\":2}")); /* duplicate member */
    CHECK(!json_ok("01"));
    CHECK(!json_ok("{} x"));
    CHECK(!json_ok("\"\\ud800\""));  /* unpaired surrogate */
    CHECK(!json_ok("\"\xc0\xaf\"")); /* overlong UTF-8 */
    CHECK(!json_ok("\"a\nb\""));     /* raw control character */
    CHECK(!json_ok("{'a':1}"));
    CHECK(!json_ok("/*c*/1"));
    CHECK(!json_ok("[1 2]"));
    CHECK(!json_ok(""));
    char deep[64];
    memset(deep, '[', 17);
    memset(deep + 17, ']', 17);
    deep[34] = 0;
    CHECK(!json_ok(deep));                               /* depth 17 */
    CHECK(json_ok("[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]")); /* depth 16 */
    sl_arena *a = sl_arena_new(4096);
    const char *s = "{\"k\":\"a\\u0000b\",\"n\":12}";
    const sl_json *j = sl_json_parse(a, s, strlen(s), 16, NULL, 0);
    CHECK(j && sl_json_str_eq(sl_json_get(j, "k"), "a\0b", 3));
    CHECK(sl_json_get(j, "n")->num == 12 && sl_json_get(j, "n")->is_int);
    sl_arena_free(a);
}

SL_TEST(jwt_valid_rs256_and_es256) {
    fixture f;
    CHECK(setup(&f, 10000));
    char p[256], why[128];
    int64_t exp = 0;
    sl_err e = check(
        &f, tj_sign(tj_rsa_key(0), "RS256", "r1", claims(ISS, "\"kafka\"", "alice", 600, NULL)), p,
        &exp, why);
    CHECK_EQ(e, SL_OK);
    CHECK(!strcmp(p, "alice"));
    CHECK_EQ(exp, NOW + 600000);
    e = check(
        &f,
        tj_sign(tj_ec_key(0), "ES256", "e1",
                claims(ISS, "[\"x\",\"other\"]", "svc-bob@example.com", 60, "\"scope\":\"a b\"")),
        p, &exp, why);
    CHECK_EQ(e, SL_OK);
    CHECK(!strcmp(p, "svc-bob@example.com"));
    /* Within the 30 s skew: expired 10 s ago, nbf 10 s ahead. */
    e = check(
        &f,
        tj_sign(tj_rsa_key(0), "RS256", "r1",
                claims(ISS, "\"kafka\"", "alice", -10, "\"nbf\":1700000010,\"iat\":1700000000")),
        p, &exp, why);
    CHECK_EQ(e, SL_OK);
    teardown(&f);
}

SL_TEST(jwt_claims_rejected) {
    fixture f;
    CHECK(setup(&f, 10000));
    char p[256], why[128];
    int64_t exp = 0;
    EVP_PKEY *k = tj_rsa_key(0);
#define REJECT(tok, reason)                                                                        \
    do {                                                                                           \
        CHECK_EQ(check(&f, tok, p, &exp, why), SL_EAUTH);                                          \
        if (!strstr(why, reason)) fprintf(stderr, "  why: %s\n", why);                             \
        CHECK(strstr(why, reason) != NULL);                                                        \
        CHECK(p[0] == 0);                                                                          \
    } while (0)
    REJECT(tj_sign(k, "RS256", "r1", claims("https://evil/", "\"kafka\"", "alice", 600, NULL)),
           "issuer");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka2\"", "alice", 600, NULL)), "audience");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "[\"a\",1]", "alice", 600, NULL)), "audience");
    REJECT(tj_sign(k, "RS256", "r1", "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"exp\":1700000600}"),
           "audience");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "alice", -31, NULL)), "expired");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "alice", 600, "\"nbf\":1700000031")),
           "not yet valid");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "alice", 600, "\"iat\":1700000100")),
           "future");
    REJECT(tj_sign(k, "RS256", "r1", "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":\"a\"}"),
           "exp");
    REJECT(tj_sign(k, "RS256", "r1",
                   "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":\"a\",\"exp\":\"1800000000\"}"),
           "exp");
    REJECT(tj_sign(k, "RS256", "r1",
                   "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":\"a\",\"exp\":1e300}"),
           "exp");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "", 600, NULL)), "subject");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "al ice", 600, NULL)), "subject");
    REJECT(tj_sign(k, "RS256", "r1",
                   "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":5,\"exp\":1800000000}"),
           "subject");
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "alice", 600, "\"scope\":7")),
           "scope");
    /* Duplicate claims could mean different things to different parsers. */
    REJECT(tj_sign(k, "RS256", "r1", claims(ISS, "\"kafka\"", "alice", 600, "\"sub\":\"root\"")),
           "");
    REJECT(tj_sign(k, "RS256", "r1", "[1]"), "not a JSON object");
    teardown(&f);
}

SL_TEST(jwt_header_and_signature_rejected) {
    fixture f;
    CHECK(setup(&f, 10000));
    char p[256], why[128];
    int64_t exp = 0;
    const char *ok = claims(ISS, "\"kafka\"", "alice", 600, NULL);
    char cl[2048];
    snprintf(cl, sizeof cl, "%s", ok);
    /* Signed by a key that is not in the set but under a known kid. */
    REJECT(tj_sign(tj_rsa_key(1), "RS256", "r1", cl), "bad signature");
    REJECT(tj_sign(tj_ec_key(1), "ES256", "e1", cl), "bad signature");
    /* A byte of the signed claims changed after signing. */
    char *t = tj_sign(tj_rsa_key(0), "RS256", "r1", cl);
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    REJECT(t, "");
    REJECT(tj_sign_raw(NULL, "{\"alg\":\"none\",\"kid\":\"r1\"}", cl), "alg none");
    REJECT(tj_sign_raw(NULL, "{\"alg\":\"None\"}", cl), "alg none");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"alg\":\"HS256\",\"kid\":\"r1\"}", cl), "unsupported alg");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"alg\":\"RS512\",\"kid\":\"r1\"}", cl), "unsupported alg");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"kid\":\"r1\"}", cl), "unsupported alg");
    /* alg/key-type confusion both ways */
    REJECT(tj_sign(tj_ec_key(0), "ES256", "r1", cl), "does not match");
    REJECT(tj_sign(tj_rsa_key(0), "RS256", "e1", cl), "does not match");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"alg\":\"RS256\"}", cl), "no kid");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"x\"]}", cl),
           "critical");
    /* Malformed encodings */
    REJECT(strdup("abc"), "malformed");
    REJECT(strdup("a.b.c.d"), "malformed");
    REJECT(strdup("e30.e30."), "unsupported alg"); /* {} header: no alg */
    t = tj_sign(tj_rsa_key(0), "RS256", "r1", cl);
    t[2] = '+';
    REJECT(t, "malformed");
    t = tj_sign(tj_rsa_key(0), "RS256", "r1", cl);
    t[strlen(t) - 1] = '=';
    REJECT(t, "malformed");
    REJECT(tj_sign_raw(tj_rsa_key(0), "{\"alg\":\"RS256\",\"kid\":\"r1\"", cl), "JSON");
    REJECT(tj_sign_raw(tj_ec_key(0), "{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{\"sub\":"), "");
    /* ES256 signature of the wrong length */
    t = tj_sign(tj_ec_key(0), "ES256", "e1", cl);
    strcat(t, "AAAA"); /* 67 bytes */
    REJECT(t, "bad signature");
    /* Oversized: a valid token padded with a large claim. */
    char *big = malloc(20000);
    snprintf(big, 20000,
             "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":\"a\",\"exp\":1800000000,\"x\":\"");
    size_t bl = strlen(big);
    memset(big + bl, 'x', 13000);
    strcpy(big + bl + 13000, "\"}");
    REJECT(tj_sign(tj_rsa_key(0), "RS256", "r1", big), "too large");
    free(big);
    teardown(&f);
}

SL_TEST(jwt_unknown_kid_refetch) {
    fixture f;
    CHECK(setup(&f, 0));
    char p[256], why[128];
    int64_t exp = 0;
    const char *cl = claims(ISS, "\"kafka\"", "carol", 600, NULL);
    uint64_t g0 = sl_jwt_validator_generation(f.v);
    CHECK_EQ(g0, 1);
    /* Rotate: the file now holds a new kid, the validator does not know it yet. */
    char keys[8192] = "";
    tj_jwk(tj_rsa_key(2), "r2", NULL, keys, sizeof keys);
    write_jwks(&f, keys);
    REJECT(tj_sign(tj_rsa_key(2), "RS256", "r2", cl), "unknown kid");
    int64_t deadline = sl_mono_ms() + 10000;
    while (sl_jwt_validator_generation(f.v) == g0 && sl_mono_ms() < deadline) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL); /* polling with a deadline, not a timed wait for an event */
    }
    CHECK(sl_jwt_validator_generation(f.v) > g0);
    CHECK_EQ(check(&f, tj_sign(tj_rsa_key(2), "RS256", "r2", cl), p, &exp, why), SL_OK);
    CHECK(!strcmp(p, "carol"));
    /* A broken JWKS does not replace a working one. (Checked before the old kid is tried
     * below: that attempt starts a refetch, and a successful one still in flight would bump
     * the generation.) */
    uint64_t g1 = sl_jwt_validator_generation(f.v);
    tj_write_file(f.path, "{\"keys\":[");
    sl_jwt_validator_refresh(f.v);
    CHECK_EQ(check(&f, tj_sign(tj_rsa_key(2), "RS256", "r2", cl), p, &exp, why), SL_OK);
    CHECK_EQ(sl_jwt_validator_generation(f.v), g1);
    /* The old key is gone with the old set. */
    REJECT(tj_sign(tj_rsa_key(0), "RS256", "r1", cl), "unknown kid");
    teardown(&f);
}

SL_TEST(jwt_unknown_kid_rate_limited) {
    fixture f;
    CHECK(setup(&f, 3600000));
    char p[256], why[128];
    int64_t exp = 0;
    char keys[8192] = "";
    tj_jwk(tj_rsa_key(2), "r2", NULL, keys, sizeof keys);
    write_jwks(&f, keys);
    /* The load at start counts as the last fetch: within the hour no refetch is asked for. */
    for (int i = 0; i < 3; i++)
        REJECT(tj_sign(tj_rsa_key(2), "RS256", "r2", claims(ISS, "\"kafka\"", "c", 600, NULL)),
               "unknown kid");
    CHECK_EQ(sl_jwt_validator_generation(f.v), 1);
    teardown(&f);
}

static sl_jwks *jwks(const char *keys) {
    char doc[8192], err[256];
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", keys);
    sl_jwks *ks = sl_jwks_parse(doc, strlen(doc), err, sizeof err);
    return ks;
}

SL_TEST(jwt_jwks_parse) {
    char k[8192] = "";
    /* Unusable keys are skipped; a set of only unusable keys is an error. */
    tj_jwk(tj_rsa_key(0), "enc", NULL, k, sizeof k);
    char *use = strstr(k, "\"sig\"");
    memcpy(use, "\"enc\"", 5);
    CHECK(jwks(k) == NULL);
    k[0] = 0;
    tj_jwk(tj_rsa_key(0), "a", "RS512", k, sizeof k);
    CHECK(jwks(k) == NULL);
    CHECK(jwks("{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"AAAA\"}") == NULL);
    CHECK(jwks("{\"kty\":\"RSA\",\"kid\":\"s\",\"n\":\"AQAB\",\"e\":\"AQAB\"}") == NULL);
    /* EC point off the curve: y changed. */
    k[0] = 0;
    tj_jwk(tj_ec_key(0), "e", NULL, k, sizeof k);
    char *y = strstr(k, "\"y\":\"") + 5;
    y[5] = y[5] == 'A' ? 'B' : 'A';
    CHECK(jwks(k) == NULL);
    /* A good key next to bad ones, and a key without kid skipped. */
    k[0] = 0;
    strcat(k, "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p384\",\"x\":\"AA\",\"y\":\"AA\"},");
    tj_jwk(tj_ec_key(0), "good", "ES256", k, sizeof k);
    sl_jwks *ks = jwks(k);
    CHECK(ks && ks->n == 1 && sl_jwks_find(ks, "good", 4) && !sl_jwks_find(ks, "p384", 4));
    sl_jwks_free(ks);
    CHECK(jwks("") == NULL);
    char err[128];
    CHECK(sl_jwks_parse("{}", 2, err, sizeof err) == NULL);
}

SL_TEST(jwt_config_requires_issuer_and_audience) {
    sl_jwt_config c;
    char err[256];
    sl_jwt_config_defaults(&c);
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);
    CHECK(strstr(err, "sasl.oauthbearer.jwks.endpoint.url") != NULL);
    snprintf(c.jwks_url, sizeof c.jwks_url, "file:///nonexistent/jwks.json");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);
    CHECK(strstr(err, "sasl.oauthbearer.expected.issuer") != NULL);
    snprintf(c.expected_issuer, sizeof c.expected_issuer, "x");
    snprintf(c.expected_audience, sizeof c.expected_audience, " , ");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);
    CHECK(strstr(err, "sasl.oauthbearer.expected.audience") != NULL);
    snprintf(c.expected_audience, sizeof c.expected_audience, "kafka");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL); /* the file is missing */
    CHECK(strstr(err, "sasl.oauthbearer.jwks.endpoint.url") != NULL);
    snprintf(c.jwks_url, sizeof c.jwks_url, "http://idp/jwks");
    CHECK(sl_jwt_validator_new(&c, err, sizeof err) == NULL);

    sl_config bc;
    sl_config_defaults(&bc);
    CHECK_EQ(bc.sasl_oauthbearer_jwks_endpoint_refresh_ms, 3600000);
    CHECK_EQ(bc.sasl_oauthbearer_clock_skew_seconds, 30);
    CHECK(!strcmp(bc.sasl_oauthbearer_sub_claim_name, "sub"));
    CHECK_EQ(sl_config_set(&bc, "sasl.oauthbearer.jwks.endpoint.url", "https://idp/jwks", err,
                           sizeof err),
             SL_OK);
    CHECK_EQ(sl_config_finish(&bc, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sasl.oauthbearer.expected.issuer") != NULL);
    CHECK_EQ(sl_config_set(&bc, "sasl.oauthbearer.expected.issuer", ISS, err, sizeof err), SL_OK);
    CHECK_EQ(sl_config_finish(&bc, err, sizeof err), SL_ECONFIG);
    CHECK(strstr(err, "sasl.oauthbearer.expected.audience") != NULL);
    CHECK_EQ(sl_config_set(&bc, "sasl.oauthbearer.expected.audience", "kafka", err, sizeof err),
             SL_OK);
    CHECK_EQ(sl_config_finish(&bc, err, sizeof err), SL_OK);
    sl_jwt_config_from(&c, &bc);
    CHECK(!strcmp(c.jwks_url, "https://idp/jwks") && !strcmp(c.expected_audience, "kafka"));
    CHECK_EQ(c.clock_skew_s, 30);
}

static sl_err climsg(const char *m, size_t n, char *tok, char *az) {
    const char *t, *a;
    size_t tl, al;
    sl_err e = sl_oauthbearer_parse_client_msg(m, n, &t, &tl, &a, &al);
    if (!e) {
        memcpy(tok, t, tl);
        tok[tl] = 0;
        memcpy(az, a ? a : "", al);
        az[al] = 0;
    }
    return e;
}

SL_TEST(jwt_oauthbearer_client_msg) {
    char t[64], a[64];
#define M(s) s, sizeof(s) - 1
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer abc.def.ghi\x01\x01"),
                    t, a),
             SL_OK);
    CHECK(!strcmp(t, "abc.def.ghi") && !strcmp(a, ""));
    CHECK_EQ(climsg(M("n,a=alice,\x01host=h\x01"
                      "auth=bearer x-y_z\x01port=9\x01\x01"),
                    t, a),
             SL_OK);
    CHECK(!strcmp(t, "x-y_z") && !strcmp(a, "alice"));
    CHECK_EQ(climsg(M("y,,\x01"
                      "auth=Bearer abc\x01\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Basic abc\x01\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer abc\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer abc\x01\x01x"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer a b\x01\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer \x01\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01host=h\x01\x01"), t, a), SL_EAUTH);
    CHECK_EQ(climsg(M("n,,\x01"
                      "auth=Bearer a\x01"
                      "auth=Bearer b\x01\x01"),
                    t, a),
             SL_EAUTH);
    CHECK_EQ(climsg(M(""), t, a), SL_EAUTH);
}

/* Cross-implementation check: keys, JWKS and tokens made by tests/interop/jwtutil.py (Python
 * cryptography) validate here, so the interop tests and the broker agree on the formats (EC
 * r||s signatures, unpadded base64url, aud arrays). Runs from the repository root. */
SL_TEST(jwt_python_tokens_accepted) {
    const char *dir = tj_tmpdir();
    CHECK(dir != NULL);
    char d[512], cmd[700], path[600];
    snprintf(d, sizeof d, "%s", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/interop/jwtutil.py demo '%s'", d);
    FILE *pp = popen(cmd, "r");
    CHECK(pp != NULL);
    static char toks[3][4096];
    int n = 0;
    while (n < 3 && fgets(toks[n], sizeof toks[n], pp)) toks[n][strcspn(toks[n], "\n")] = 0, n++;
    int st = pclose(pp);
    if (n != 3)
        fprintf(stderr, "  jwtutil.py demo failed (status %d): python3-cryptography?\n", st);
    CHECK_EQ(n, 3);
    sl_jwt_config c;
    sl_jwt_config_defaults(&c);
    snprintf(path, sizeof path, "%s/jwks.json", d);
    snprintf(c.jwks_url, sizeof c.jwks_url, "file://%s", path);
    snprintf(c.expected_issuer, sizeof c.expected_issuer, "https://idp.sluice.test/");
    snprintf(c.expected_audience, sizeof c.expected_audience, "sluice");
    char err[256], p[256], why[128];
    int64_t exp;
    sl_jwt_validator *v = sl_jwt_validator_new(&c, err, sizeof err);
    CHECK(v != NULL);
    int64_t now = sl_wall_ms();
    sl_err e1 = sl_jwt_validate(v, toks[0], strlen(toks[0]), now, p, sizeof p, &exp, why, 128);
    bool p1 = !strcmp(p, "py-rsa");
    sl_err e2 = sl_jwt_validate(v, toks[1], strlen(toks[1]), now, p, sizeof p, &exp, why, 128);
    bool p2 = !strcmp(p, "py-ec");
    sl_err e3 = sl_jwt_validate(v, toks[2], strlen(toks[2]), now, p, sizeof p, &exp, why, 128);
    sl_jwt_validator_free(v);
    unlink(path);
    rmdir(d);
    CHECK_EQ(e1, SL_OK);
    CHECK(p1);
    CHECK_EQ(e2, SL_OK);
    CHECK(p2);
    CHECK_EQ(e3, SL_EAUTH);
    CHECK(strstr(why, "expired") != NULL);
}
