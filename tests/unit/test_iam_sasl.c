/* IAM logins through the SASL sessions: AWS_MSK_IAM payloads and MSK OAUTHBEARER tokens made
 * by sl_msk_iam (as the AWS libraries make them) against a temporary IAM store, stepped through
 * sl_session_step as the broker does: who is authenticated, until when, what the client gets
 * back, and every refusal with the reason the audit trail records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_auth.h"
#include "auth/sl_msk_iam.h"
#include "iam/sl_iam.h"
#include "iam/sl_iamstore.h"
#include "sl_test.h"
#include "test_jwt_util.h"

#define HOST   "b-1.sluice.test"
#define REGION "us-east-1"
#define ACCT   "000000000000"

typedef struct fx {
    char dir[64];
    sl_config cfg;
    sl_iam *iam;
    sl_auth *a;
    char akid[SL_IAM_AKID_LEN + 1], secret[SL_IAM_SECRET_LEN + 1];
} fx;

static bool fx_open(fx *f, const char *jwks_url) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sl_iamsasl_XXXXXX");
    if (!mkdtemp(f->dir)) return false;
    sl_config_defaults(&f->cfg);
    snprintf(f->cfg.log_dirs, sizeof f->cfg.log_dirs, "%s", f->dir);
    snprintf(f->cfg.sluice_secrets_dir, sizeof f->cfg.sluice_secrets_dir, "%s", f->dir);
    snprintf(f->cfg.sasl_enabled_mechanisms, sizeof f->cfg.sasl_enabled_mechanisms,
             "AWS_MSK_IAM,OAUTHBEARER");
    if (jwks_url) {
        snprintf(f->cfg.sasl_oauthbearer_jwks_endpoint_url,
                 sizeof f->cfg.sasl_oauthbearer_jwks_endpoint_url, "%s", jwks_url);
        snprintf(f->cfg.sasl_oauthbearer_expected_issuer,
                 sizeof f->cfg.sasl_oauthbearer_expected_issuer, "https://idp.test");
        snprintf(f->cfg.sasl_oauthbearer_expected_audience,
                 sizeof f->cfg.sasl_oauthbearer_expected_audience, "kafka");
    }
    char err[512];
    const char *hosts[] = {HOST};
    if (sl_iam_new(&f->cfg, "cluster-uuid-1", hosts, 1, &f->iam, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  sl_iam_new: %s\n", err);
        return false;
    }
    if (sl_auth_new(&f->cfg, false, &f->a, err, sizeof err) != SL_OK) return false;
    sl_auth_set_iam(f->a, f->iam);
    if (sl_auth_add_listener(f->a, "L", true, err, sizeof err) != SL_OK) {
        fprintf(stderr, "  add_listener: %s\n", err);
        return false;
    }
    sl_iamstore *st = sl_iam_store(f->iam);
    int64_t now = (int64_t)time(NULL);
    return sl_iamstore_user_add(st, "alice", NULL, 0, now) == SL_OK &&
           sl_iamstore_key_create(st, "alice", now, f->akid, f->secret) == SL_OK &&
           sl_iamstore_role_add(st, "reader", 3600, NULL, 0) == SL_OK &&
           sl_iamstore_save(st) == SL_OK;
}

static void fx_close(fx *f) {
    sl_auth_free(f->a);
    sl_iam_free(f->iam);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", f->dir);
}

/* A payload as the AWS libraries sign it (malloc'd). */
static char *payload(const char *akid, const char *secret, const char *token, const char *host,
                     int64_t at) {
    sl_sigv4_creds c = {akid, secret, token};
    char *p = NULL;
    size_t n = 0;
    return sl_msk_iam_payload(&c, REGION, host, at, "aws-msk-iam-auth/2.2.0", &p, &n) == SL_OK
               ? p
               : NULL;
}

/* One AWS_MSK_IAM login on a fresh session (*sp, the caller frees) with `msg` (freed). */
static sl_err step(fx *f, sl_session *s, const char *mech, char *msg, char *resp, size_t cap) {
    if (!s || !msg || sl_session_handshake(s, mech, strlen(mech), false) != SL_OK) {
        free(msg);
        return SL_EINVAL;
    }
    size_t n = 0;
    bool done = false;
    sl_err e = sl_session_step(f->a, s, (const uint8_t *)msg, strlen(msg), (uint8_t *)resp, cap - 1,
                               &n, &done);
    resp[n] = 0;
    free(msg);
    if (!e && !done) return SL_ESTATE;
    return e;
}

static sl_err login_mech(fx *f, const char *mech, char *msg, sl_session **sp, char *resp,
                         size_t cap) {
    sl_session *s = sl_session_new("192.0.2.7:4000", sl_auth_listener_mechs(f->a, "L"), NULL);
    *sp = s;
    if (s) s->tls = true;
    return step(f, s, mech, msg, resp, cap);
}

static sl_err login(fx *f, char *msg, sl_session **sp, char *resp, size_t cap) {
    return login_mech(f, "AWS_MSK_IAM", msg, sp, resp, cap);
}

/* "n,,\x01auth=Bearer <tok>\x01\x01" (RFC 7628), malloc'd; frees tok. */
static char *bearer(char *tok) {
    if (!tok) return NULL;
    size_t n = strlen(tok) + 32;
    char *m = malloc(n);
    snprintf(m, n,
             "n,,\x01"
             "auth=Bearer %s\x01\x01",
             tok);
    free(tok);
    return m;
}

static char *msk_token(const char *akid, const char *secret, const char *token, int64_t at) {
    sl_sigv4_creds c = {akid, secret, token};
    char *t = NULL;
    return sl_msk_iam_token(&c, REGION, at, "aws-msk-iam-sasl-signer-js/1.0.0", &t) == SL_OK ? t
                                                                                             : NULL;
}

/* The refused login's reason as the session (and so the audit trail) records it. */
static const char *refused(fx *f, char *msg) {
    sl_session *s = NULL;
    char resp[256];
    static char why[64];
    sl_err e = login(f, msg, &s, resp, sizeof resp);
    snprintf(why, sizeof why, "%s",
             e == SL_EAUTH && s && s->state == SL_SASL_FAILED && !s->authenticated && !s->iam &&
                     s->fail_reason
                 ? s->fail_reason
                 : "NOT REFUSED");
    sl_session_free(s);
    return why;
}

/* Who a refused login claimed to be (the trail's user): its attempt principal. */
static const char *claimed(fx *f, char *msg) {
    sl_session *s = NULL;
    char resp[256];
    static char who[SL_PRINCIPAL_MAX];
    sl_err e = login(f, msg, &s, resp, sizeof resp);
    snprintf(who, sizeof who, "%s", e == SL_EAUTH && s ? s->attempt_principal : "NOT REFUSED");
    sl_session_free(s);
    return who;
}

/* The verifier's own reason (the broker's log) for a payload. */
static const char *log_reason(fx *f, char *p) {
    sl_iam_identity id;
    const char *why = NULL;
    sl_err e = sl_iam_verify_payload(f->iam, (const uint8_t *)p, p ? strlen(p) : 0,
                                     (int64_t)time(NULL), &id, &why);
    free(p);
    return e == SL_OK ? "OK" : why ? why : "(null)";
}

SL_TEST(iam_sasl_mechanism_config) {
    sl_config cfg;
    sl_config_defaults(&cfg);
    char dir[] = "/tmp/sl_iamsasl_XXXXXX", err[512];
    CHECK(mkdtemp(dir));
    snprintf(cfg.log_dirs, sizeof cfg.log_dirs, "%s", dir);
    snprintf(cfg.sluice_secrets_dir, sizeof cfg.sluice_secrets_dir, "%s", dir);
    snprintf(cfg.sasl_enabled_mechanisms, sizeof cfg.sasl_enabled_mechanisms,
             "SCRAM-SHA-512, AWS_MSK_IAM");
    CHECK_EQ(sl_mech_from_name("AWS_MSK_IAM", 11), SL_MECH_AWS_MSK_IAM);
    CHECK(!strcmp(sl_mech_name(SL_MECH_AWS_MSK_IAM), "AWS_MSK_IAM"));
    CHECK_EQ(sl_auth_config_mechs(&cfg, "L"), SL_MECH_SCRAM_SHA_512 | SL_MECH_AWS_MSK_IAM);
    sl_auth *a = NULL;
    CHECK(sl_auth_new(&cfg, false, &a, err, sizeof err) == SL_OK);
    /* Without the IAM context the mechanism cannot work: refused at start. */
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "AWS_MSK_IAM") && strstr(err, "sluice.iam"));
    sl_iam *iam = NULL;
    const char *hosts[] = {HOST};
    CHECK(sl_iam_new(&cfg, "cluster-uuid-1", hosts, 1, &iam, err, sizeof err) == SL_OK);
    sl_auth_set_iam(a, iam);
    /* Over plaintext a payload is replayable for its 15 minutes: refused like PLAIN... */
    CHECK(sl_auth_add_listener(a, "P", false, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "SASL_SSL") && strstr(err, "sluice.sasl.plain.allow.insecure"));
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_OK);
    CHECK_EQ(sl_auth_listener_mechs(a, "L"), SL_MECH_SCRAM_SHA_512 | SL_MECH_AWS_MSK_IAM);
    const char *names[8];
    int n = sl_auth_mech_names(sl_auth_listener_mechs(a, "L"), names, 8);
    CHECK(n == 2 && !strcmp(names[1], "AWS_MSK_IAM"));
    /* The failure message names the mechanism (not another one's cached text). */
    CHECK(strstr(sl_auth_failed_message(SL_MECH_OAUTHBEARER), "OAUTHBEARER"));
    CHECK(strstr(sl_auth_failed_message(SL_MECH_AWS_MSK_IAM), "AWS_MSK_IAM"));
    sl_auth_free(a);
    /* ...unless the operator overrides it as for PLAIN. */
    cfg.sluice_sasl_plain_allow_insecure = true;
    CHECK(sl_auth_new(&cfg, false, &a, err, sizeof err) == SL_OK);
    sl_auth_set_iam(a, iam);
    CHECK(sl_auth_add_listener(a, "P", false, err, sizeof err) == SL_OK);
    sl_auth_free(a);
    /* OAUTHBEARER: with the IAM context and no JWT settings, MSK tokens only (no error);
     * without the IAM context the JWT settings stay required. */
    snprintf(cfg.sasl_enabled_mechanisms, sizeof cfg.sasl_enabled_mechanisms, "OAUTHBEARER");
    CHECK(sl_auth_new(&cfg, false, &a, err, sizeof err) == SL_OK);
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_ECONFIG);
    CHECK(strstr(err, "sasl.oauthbearer.jwks.endpoint.url"));
    sl_auth_set_iam(a, iam);
    CHECK(sl_auth_add_listener(a, "L", true, err, sizeof err) == SL_OK);
    sl_auth_free(a);
    sl_iam_free(iam);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Every refusal, with no policy attached anywhere (so a correct signature ends at
 * kafka-cluster:Connect, which tells a verified signature from a refused one). */
SL_TEST(iam_sasl_refusals) {
    fx f;
    CHECK(fx_open(&f, NULL));
    int64_t now = (int64_t)time(NULL);
    char wrong[SL_IAM_SECRET_LEN + 1];
    snprintf(wrong, sizeof wrong, "%s", f.secret);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';

    /* A correct signature by a user without a policy allowing kafka-cluster:Connect. */
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, HOST, now)),
                  "not allowed kafka-cluster:Connect"));
    CHECK(!strcmp(log_reason(&f, payload(f.akid, f.secret, NULL, HOST, now)),
                  "not allowed kafka-cluster:Connect"));
    {
        /* The trail names who was refused: the verified identity's ARN. */
        sl_session *s = NULL;
        char resp[256];
        CHECK_EQ(login(&f, payload(f.akid, f.secret, NULL, HOST, now), &s, resp, sizeof resp),
                 SL_EAUTH);
        CHECK(!strcmp(s->attempt_principal, "User:arn:aws:iam::" ACCT ":user/alice"));
        CHECK(!resp[0] && !s->iam && !s->principal[0]);
        sl_session_free(s);
    }
    /* Wrong secret, and an unknown key id: the same reason, in the trail and in the log. */
    CHECK(!strcmp(refused(&f, payload(f.akid, wrong, NULL, HOST, now)), "invalid credentials"));
    CHECK(!strcmp(refused(&f, payload("AKIAZZZZZZZZZZZZZZZZ", f.secret, NULL, HOST, now)),
                  "invalid credentials"));
    const char *r1 = log_reason(&f, payload(f.akid, wrong, NULL, HOST, now));
    const char *r2 = log_reason(&f, payload("AKIAZZZZZZZZZZZZZZZZ", f.secret, NULL, HOST, now));
    CHECK(!strcmp(r1, r2) && !strcmp(r1, "signature does not match"));
    /* Both name the key id presented (who tried), existing or not; a key id not shaped like
     * AWS's is not repeated at all. */
    char want[64];
    snprintf(want, sizeof want, "User:%s", f.akid);
    CHECK(!strcmp(claimed(&f, payload(f.akid, wrong, NULL, HOST, now)), want));
    CHECK(!strcmp(claimed(&f, payload("AKIAZZZZZZZZZZZZZZZZ", f.secret, NULL, HOST, now)),
                  "User:AKIAZZZZZZZZZZZZZZZZ"));
    CHECK(!strcmp(claimed(&f, payload("akia.zzzz=zzzz;zzzzzz", f.secret, NULL, HOST, now)), ""));
    /* Another host, a date beyond the skew, a tampered field. */
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, "b-1.other.test", now)),
                  "invalid credentials"));
    CHECK(!strcmp(log_reason(&f, payload(f.akid, f.secret, NULL, "b-1.other.test", now)),
                  "host is not this broker"));
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, HOST, now + 400)),
                  "invalid credentials"));
    CHECK(!strcmp(log_reason(&f, payload(f.akid, f.secret, NULL, HOST, now + 400)),
                  "date in the future"));
    char *p = payload(f.akid, f.secret, NULL, HOST, now), *at = p ? strstr(p, "\"900\"") : NULL;
    CHECK(at);
    memcpy(at, "\"899\"", 5);
    CHECK(!strcmp(refused(&f, p), "invalid credentials"));
    /* A payload replayed after its 15 minutes. */
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, HOST, now - 901)), "token expired"));
    /* Not JSON. */
    CHECK(!strcmp(refused(&f, strdup("{\"version\":")), "malformed"));
    /* A disabled key: its correct signature is refused like a wrong one. */
    sl_iamstore *st = sl_iam_store(f.iam);
    CHECK(sl_iamstore_key_set_active(st, f.akid, false) == SL_OK && sl_iamstore_save(st) == SL_OK);
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, HOST, now)), "invalid credentials"));
    CHECK(sl_iamstore_key_set_active(st, f.akid, true) == SL_OK && sl_iamstore_save(st) == SL_OK);
    CHECK(!strcmp(refused(&f, payload(f.akid, f.secret, NULL, HOST, now)),
                  "not allowed kafka-cluster:Connect"));
    /* Temporary credentials: valid ones verify (and meet Connect); an expired session token is
     * refused like a wrong secret; a token that is not the key's too. */
    char tak[SL_IAM_AKID_LEN + 1], tsec[SL_IAM_SECRET_LEN + 1], tok[SL_IAM_TOKEN_MAX];
    char oak[SL_IAM_AKID_LEN + 1], osec[SL_IAM_SECRET_LEN + 1], otok[SL_IAM_TOKEN_MAX];
    int64_t exp = 0;
    CHECK(sl_iamstore_assume_role(st, "reader", "s1", 900, now, tak, tsec, tok, &exp) == SL_OK);
    CHECK(!strcmp(refused(&f, payload(tak, tsec, tok, HOST, now)),
                  "not allowed kafka-cluster:Connect"));
    CHECK(!strcmp(refused(&f, payload(tak, tsec, NULL, HOST, now)), "invalid credentials"));
    CHECK(sl_iamstore_assume_role(st, "reader", "old", 900, now - 7200, oak, osec, otok, &exp) ==
          SL_OK);
    CHECK(exp < now);
    CHECK(!strcmp(refused(&f, payload(oak, osec, otok, HOST, now)), "invalid credentials"));
    CHECK(!strcmp(refused(&f, payload(tak, tsec, otok, HOST, now)), "invalid credentials"));
    /* OAUTHBEARER: an MSK token goes to the IAM verifier (no JWT settings here: MSK only). */
    sl_session *s = NULL;
    char resp[256];
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(msk_token(f.akid, f.secret, NULL, now)), &s, resp,
                        sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "not allowed kafka-cluster:Connect"));
    sl_session_free(s);
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(msk_token(f.akid, wrong, NULL, now)), &s, resp,
                        sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "invalid token"));
    sl_session_free(s);
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(msk_token(f.akid, f.secret, NULL, now - 901)), &s,
                        resp, sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "token expired"));
    sl_session_free(s);
    /* A JWT without JWT settings: refused, not taken for an MSK token. */
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(strdup("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")), &s,
                        resp, sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "invalid token"));
    sl_session_free(s);
    CHECK(sl_auth_failures(f.a, "192.0.2.7") > 10);
    memset(wrong, 0, sizeof wrong);
    fx_close(&f);
}

#define CLUSTER_ARN "arn:aws:kafka:" REGION ":" ACCT ":cluster/sluice/cluster-uuid-1"
#define ALLOW_CONNECT                                                                              \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"                 \
    "\"kafka-cluster:Connect\",\"Resource\":\"" CLUSTER_ARN "\"}]}"
/* Connect only over TLS and from 192.0.2.0/24 (MSK-style conditions on the login itself). */
#define DENY_UNLESS                                                                                \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":"                  \
    "\"kafka-cluster:Connect\",\"Resource\":\"*\",\"Condition\":{\"Bool\":"                        \
    "{\"aws:SecureTransport\":\"false\"}}},{\"Effect\":\"Deny\",\"Action\":\"kafka-cluster:*\","   \
    "\"Resource\":\"*\",\"Condition\":{\"NotIpAddress\":{\"aws:SourceIp\":\"192.0.2.0/24\"}}}]}"

static bool put_policy(sl_iamstore *st, const char *name, const char *doc) {
    char err[256];
    sl_err e = sl_iamstore_policy_put(st, name, doc, strlen(doc), err, sizeof err);
    if (e) fprintf(stderr, "  policy %s: %s\n", name, err);
    return e == SL_OK;
}

/* MSK's answer: exactly {"version":"2020_10_22","request-id":"<UUID v4>"}. */
static bool msk_answer(const char *r) {
    const char *pre = "{\"version\":\"2020_10_22\",\"request-id\":\"";
    size_t pl = strlen(pre);
    if (strncmp(r, pre, pl) || strlen(r) != pl + 36 + 2 || strcmp(r + pl + 36, "\"}")) return false;
    const char *u = r + pl;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !strchr("0123456789abcdef", u[i])) return false;
    }
    return u[14] == '4' && strchr("89ab", u[19]);
}

SL_TEST(iam_sasl_logins) {
    /* JWTs configured too: OAUTHBEARER takes both kinds of token. */
    char jdir[256], jwks[600], keys[4096] = "", doc[4200];
    snprintf(jdir, sizeof jdir, "%s", tj_tmpdir());
    snprintf(jwks, sizeof jwks, "%s/jwks.json", jdir);
    tj_jwk(tj_rsa_key(0), "r1", "RS256", keys, sizeof keys);
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", keys);
    CHECK(tj_write_file(jwks, doc));
    char url[700];
    snprintf(url, sizeof url, "file://%s", jwks);
    fx f;
    CHECK(fx_open(&f, url));
    sl_iamstore *st = sl_iam_store(f.iam);
    int64_t now = (int64_t)time(NULL);
    char bak[SL_IAM_AKID_LEN + 1], bsec[SL_IAM_SECRET_LEN + 1];
    CHECK(put_policy(st, "connect", ALLOW_CONNECT));
    CHECK(sl_iamstore_attach(st, "connect", false, "alice") == SL_OK);
    CHECK(sl_iamstore_attach(st, "connect", true, "reader") == SL_OK);
    CHECK(sl_iamstore_user_add(st, "bob", NULL, 0, now) == SL_OK);
    CHECK(sl_iamstore_key_create(st, "bob", now, bak, bsec) == SL_OK);
    CHECK(sl_iamstore_attach(st, "connect", false, "bob") == SL_OK);
    CHECK(sl_iamstore_save(st) == SL_OK);

    /* A user: the ARN as principal, the identity on the session, the signature's end as the
     * session's, MSK's answer, the key's last use. */
    sl_session *s = NULL;
    char resp[256];
    CHECK_EQ(login(&f, payload(f.akid, f.secret, NULL, HOST, now), &s, resp, sizeof resp), SL_OK);
    CHECK(s->authenticated && !strcmp(s->principal, "User:arn:aws:iam::" ACCT ":user/alice"));
    CHECK(s->iam && !s->iam->role && !strcmp(s->iam->name, "alice"));
    CHECK(!strcmp(s->iam->akid, f.akid) &&
          !strcmp(s->iam->arn, "arn:aws:iam::" ACCT ":user/alice"));
    CHECK_EQ(s->iam->expiry_s, now + 900);
    CHECK_EQ(s->credential_expiry_ms, (now + 900) * 1000);
    CHECK(msk_answer(resp));
    char first_id[256];
    snprintf(first_id, sizeof first_id, "%s", resp);
    sl_iam_key_info ki[2];
    CHECK_EQ(sl_iamstore_user_keys(st, "alice", ki, 2), 1);
    CHECK(ki[0].last_used_s >= now);
    /* Re-authentication: the same user again (a new request id), not another one. */
    CHECK_EQ(step(&f, s, "AWS_MSK_IAM", payload(f.akid, f.secret, NULL, HOST, now + 1), resp,
                  sizeof resp),
             SL_OK);
    CHECK(s->reauth && msk_answer(resp) && strcmp(resp, first_id) != 0);
    CHECK_EQ(s->credential_expiry_ms, (now + 901) * 1000);
    CHECK_EQ(step(&f, s, "AWS_MSK_IAM", payload(bak, bsec, NULL, HOST, now), resp, sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "principal changed"));
    CHECK(!strcmp(s->principal, "User:arn:aws:iam::" ACCT ":user/alice"));
    CHECK(!strcmp(s->iam->name, "alice"));
    sl_session_free(s);

    /* A role session ending before the signature: the session ends with the credentials. */
    char tak[SL_IAM_AKID_LEN + 1], tsec[SL_IAM_SECRET_LEN + 1], tok[SL_IAM_TOKEN_MAX];
    int64_t exp = 0;
    CHECK(sl_iamstore_assume_role(st, "reader", "batch-7", 900, now - 600, tak, tsec, tok, &exp) ==
          SL_OK);
    CHECK_EQ(exp, now + 300);
    CHECK_EQ(login(&f, payload(tak, tsec, tok, HOST, now), &s, resp, sizeof resp), SL_OK);
    CHECK(!strcmp(s->principal, "User:arn:aws:sts::" ACCT ":assumed-role/reader/batch-7"));
    CHECK(s->iam && s->iam->role && !strcmp(s->iam->session, "batch-7"));
    CHECK_EQ(s->credential_expiry_ms, exp * 1000);
    sl_session_free(s);

    /* OAUTHBEARER: an MSK token is an IAM login; a JWT still goes to the JWT validator. */
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(msk_token(f.akid, f.secret, NULL, now)), &s, resp,
                        sizeof resp),
             SL_OK);
    CHECK(!strcmp(s->principal, "User:arn:aws:iam::" ACCT ":user/alice") && s->iam);
    CHECK(!resp[0] && s->credential_expiry_ms == (now + 900) * 1000);
    sl_session_free(s);
    char claims[256];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"https://idp.test\",\"aud\":\"kafka\",\"sub\":\"carol\",\"exp\":%lld}",
             (long long)now + 600);
    CHECK_EQ(login_mech(&f, "OAUTHBEARER", bearer(tj_sign(tj_rsa_key(0), "RS256", "r1", claims)),
                        &s, resp, sizeof resp),
             SL_OK);
    CHECK(!strcmp(s->principal, "User:carol") && !s->iam);
    CHECK_EQ(s->credential_expiry_ms, (now + 600) * 1000);
    /* A JWT login cannot re-authenticate as an IAM identity (nor the reverse). */
    CHECK_EQ(step(&f, s, "OAUTHBEARER", bearer(msk_token(f.akid, f.secret, NULL, now)), resp,
                  sizeof resp),
             SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "principal changed") && !s->iam);
    sl_session_free(s);

    /* Conditions on Connect see the connection: over TLS from 192.0.2.7 allowed; without TLS,
     * or from another address, denied. */
    CHECK(put_policy(st, "conditions", DENY_UNLESS));
    CHECK(sl_iamstore_attach(st, "conditions", false, "alice") == SL_OK);
    CHECK(sl_iamstore_save(st) == SL_OK);
    CHECK_EQ(login(&f, payload(f.akid, f.secret, NULL, HOST, now), &s, resp, sizeof resp), SL_OK);
    sl_session_free(s);
    s = sl_session_new("192.0.2.7:4000", sl_auth_listener_mechs(f.a, "L"), NULL);
    CHECK(s);
    s->tls = false;
    CHECK_EQ(
        step(&f, s, "AWS_MSK_IAM", payload(f.akid, f.secret, NULL, HOST, now), resp, sizeof resp),
        SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "not allowed kafka-cluster:Connect"));
    sl_session_free(s);
    s = sl_session_new("198.51.100.1:4000", sl_auth_listener_mechs(f.a, "L"), NULL);
    CHECK(s);
    s->tls = true;
    CHECK_EQ(
        step(&f, s, "AWS_MSK_IAM", payload(f.akid, f.secret, NULL, HOST, now), resp, sizeof resp),
        SL_EAUTH);
    CHECK(!strcmp(s->fail_reason, "not allowed kafka-cluster:Connect"));
    sl_session_free(s);
    memset(bsec, 0, sizeof bsec);
    fx_close(&f);
    unlink(jwks);
    rmdir(jdir);
}
