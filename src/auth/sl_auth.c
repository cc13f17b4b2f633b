#include "sl_auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_jwt.h"
#include "auth/sl_msk_iam.h"
#include "auth/sl_plain.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "iam/sl_iam.h"

static const struct {
    const char *name;
    unsigned bit;
} k_mechs[] = {
    {"SCRAM-SHA-512", SL_MECH_SCRAM_SHA_512},
    {"SCRAM-SHA-256", SL_MECH_SCRAM_SHA_256},
    {"PLAIN", SL_MECH_PLAIN},
    {"OAUTHBEARER", SL_MECH_OAUTHBEARER},
    {"AWS_MSK_IAM", SL_MECH_AWS_MSK_IAM},
};
#define NMECHS ((int)(sizeof k_mechs / sizeof k_mechs[0]))

unsigned sl_mech_from_name(const char *name, size_t len) {
    for (int i = 0; i < NMECHS; i++)
        if (strlen(k_mechs[i].name) == len && !memcmp(k_mechs[i].name, name, len))
            return k_mechs[i].bit;
    return 0;
}

const char *sl_mech_name(unsigned bit) {
    for (int i = 0; i < NMECHS; i++)
        if (k_mechs[i].bit == bit) return k_mechs[i].name;
    return "?";
}

int sl_auth_mech_names(unsigned mechs, const char **names, int max) {
    int n = 0;
    for (int i = 0; i < NMECHS && n < max; i++)
        if (mechs & k_mechs[i].bit) names[n++] = k_mechs[i].name;
    return n;
}

static int scram_code(unsigned bit) {
    return bit == SL_MECH_SCRAM_SHA_256   ? SL_SCRAM_SHA_256
           : bit == SL_MECH_SCRAM_SHA_512 ? SL_SCRAM_SHA_512
                                          : 0;
}

/* A small open-addressing table of string keys; bounded so that a flood of distinct names or
 * addresses cannot grow memory (excess keys are not counted individually). */
#define TABLE_SLOTS 4096
typedef struct counter {
    char key[SL_PRINCIPAL_MAX];
    uint64_t n;
} counter;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static counter *slot(counter *t, const char *key, bool insert) {
    uint64_t h = fnv(key);
    for (int i = 0; i < 64; i++) {
        counter *c = &t[(h + (uint64_t)i) % TABLE_SLOTS];
        if (c->key[0] && !strcmp(c->key, key)) return c;
        if (!c->key[0]) {
            if (!insert) return NULL;
            snprintf(c->key, sizeof c->key, "%s", key);
            return c;
        }
    }
    return NULL;
}

typedef struct listener_mechs {
    char name[64];
    unsigned mechs;
} listener_mechs;

struct sl_auth {
    sl_config cfg;
    char store_path[SL_CFG_STR_MAX + 32];
    sl_credstore *store;
    listener_mechs lm[16];
    int nlm;
    counter *failures;     /* TABLE_SLOTS */
    counter *conns;        /* TABLE_SLOTS */
    sl_jwt_validator *jwt; /* when some listener enables OAUTHBEARER (and JWTs are configured) */
    struct sl_iam *iam;    /* borrowed (sl_auth_set_iam): AWS_MSK_IAM and MSK tokens */
};

void sl_auth_set_iam(sl_auth *a, struct sl_iam *iam) { a->iam = iam; }

void sl_auth_store_path(const sl_config *cfg, char *out, size_t len) {
    if (cfg->sluice_sasl_credentials_file[0])
        snprintf(out, len, "%s", cfg->sluice_sasl_credentials_file);
    else
        sl_config_secret_path(cfg, "sluice-users", out, len, NULL);
}

sl_err sl_auth_new(const sl_config *cfg, bool need_store, sl_auth **out, char *err, size_t elen) {
    *out = NULL;
    sl_auth *a = calloc(1, sizeof *a);
    if (!a) return SL_ENOMEM;
    a->cfg = *cfg;
    a->failures = calloc(TABLE_SLOTS, sizeof *a->failures);
    a->conns = calloc(TABLE_SLOTS, sizeof *a->conns);
    if (!a->failures || !a->conns) {
        sl_auth_free(a);
        return SL_ENOMEM;
    }
    sl_auth_store_path(cfg, a->store_path, sizeof a->store_path);
    if (need_store) {
        sl_err e = sl_credstore_open(a->store_path, true, &a->store, err, elen);
        if (e) {
            sl_auth_free(a);
            return e;
        }
        sl_credstore_set_mock_iterations(a->store, cfg->sluice_sasl_scram_iterations);
    }
    *out = a;
    return SL_OK;
}

void sl_auth_free(sl_auth *a) {
    if (!a) return;
    sl_credstore_free(a->store);
    sl_jwt_validator_free(a->jwt);
    free(a->failures);
    free(a->conns);
    free(a);
}

sl_credstore *sl_auth_store(sl_auth *a, bool create) {
    if (!a->store) {
        char err[512];
        sl_err e = sl_credstore_open(a->store_path, create, &a->store, err, sizeof err);
        if (e && e != SL_ENOTFOUND)
            SL_WARN("auth", "credential store unavailable", "err=\"%s\"", err);
        if (!e) sl_credstore_set_mock_iterations(a->store, a->cfg.sluice_sasl_scram_iterations);
    }
    return a->store;
}

/* The mechanism bits `listener` enables in `cfg`; SL_ECONFIG for an unknown name. */
static sl_err parse_mechs(const sl_config *cfg, const char *listener, unsigned *out, char *err,
                          size_t elen) {
    /* Kafka's per-listener override: listener.name.<listener>.sasl.enabled.mechanisms. */
    const char *list = sl_config_listener_str(cfg, listener, "sasl.enabled.mechanisms");
    if (!list) list = "";
    unsigned mechs = 0;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t && p[t - 1] == ' ') t--;
        if (!t) break;
        unsigned bit = sl_mech_from_name(p, t);
        if (!bit) {
            snprintf(err, elen,
                     "sasl.enabled.mechanisms: %.*s is not supported (supported: SCRAM-SHA-512, "
                     "SCRAM-SHA-256, PLAIN, OAUTHBEARER, AWS_MSK_IAM)",
                     (int)t, p);
            return SL_ECONFIG;
        }
        mechs |= bit;
        p += n;
    }
    *out = mechs;
    return SL_OK;
}

unsigned sl_auth_config_mechs(const sl_config *cfg, const char *listener) {
    unsigned mechs = 0;
    char err[8];
    return parse_mechs(cfg, listener, &mechs, err, sizeof err) == SL_OK ? mechs : 0;
}

sl_err sl_auth_add_listener(sl_auth *a, const char *listener, bool tls, char *err, size_t elen) {
    if (a->nlm >= 16) return SL_ECONFIG;
    unsigned mechs = 0;
    sl_err e = parse_mechs(&a->cfg, listener, &mechs, err, elen);
    if (e) return e;
    if (!mechs) {
        snprintf(err, elen, "sasl.enabled.mechanisms: no mechanism enabled for listener %s",
                 listener);
        return SL_ECONFIG;
    }
    if ((mechs & SL_MECH_PLAIN) && !tls && !a->cfg.sluice_sasl_plain_allow_insecure) {
        snprintf(err, elen,
                 "sasl.enabled.mechanisms: PLAIN on listener %s (SASL_PLAINTEXT) would send "
                 "passwords in clear; use SASL_SSL or set sluice.sasl.plain.allow.insecure=true",
                 listener);
        return SL_ECONFIG;
    }
    /* AWS_MSK_IAM over plaintext: the signed payload is a bearer credential for its 15 minutes
     * (anyone who reads it can replay it), so it needs TLS like PLAIN's password, with the same
     * override. */
    if ((mechs & SL_MECH_AWS_MSK_IAM) && !tls && !a->cfg.sluice_sasl_plain_allow_insecure) {
        snprintf(err, elen,
                 "sasl.enabled.mechanisms: AWS_MSK_IAM on listener %s (SASL_PLAINTEXT) would send "
                 "replayable signatures in clear; use SASL_SSL or set "
                 "sluice.sasl.plain.allow.insecure=true",
                 listener);
        return SL_ECONFIG;
    }
    if ((mechs & SL_MECH_AWS_MSK_IAM) && !a->iam) {
        snprintf(err, elen,
                 "sasl.enabled.mechanisms: AWS_MSK_IAM on listener %s needs the IAM "
                 "store (sluice.iam.*)",
                 listener);
        return SL_ECONFIG;
    }
    /* With the IAM context, OAUTHBEARER also takes MSK IAM tokens: the JWT settings are then
     * optional (without sasl.oauthbearer.jwks.endpoint.url only MSK tokens are accepted);
     * without it they are required. */
    bool want_jwt = !a->iam || a->cfg.sasl_oauthbearer_jwks_endpoint_url[0];
    if ((mechs & SL_MECH_OAUTHBEARER) && want_jwt && !a->jwt) {
        /* One validator (key set and refresh thread) serves every listener. */
        sl_jwt_config jc;
        sl_jwt_config_from(&jc, &a->cfg);
        if (!(a->jwt = sl_jwt_validator_new(&jc, err, elen))) return SL_ECONFIG;
    }
    snprintf(a->lm[a->nlm].name, sizeof a->lm[0].name, "%s", listener);
    a->lm[a->nlm++].mechs = mechs;
    return SL_OK;
}

unsigned sl_auth_listener_mechs(const sl_auth *a, const char *listener) {
    for (int i = 0; listener && i < a->nlm; i++)
        if (!strcmp(a->lm[i].name, listener)) return a->lm[i].mechs;
    return 0;
}

void sl_auth_count_failure(sl_auth *a, const char *principal, const char *addr) {
    counter *c;
    if (principal && principal[0] && (c = slot(a->failures, principal, true))) c->n++;
    if (addr && addr[0] && (c = slot(a->failures, addr, true))) c->n++;
}

uint64_t sl_auth_failures(const sl_auth *a, const char *key) {
    counter *c = slot(a->failures, key, false);
    return c ? c->n : 0;
}

bool sl_auth_conn_opened(sl_auth *a, const char *addr) {
    counter *c = slot(a->conns, addr, true);
    if (!c) return a->cfg.max_connections_per_ip == INT32_MAX; /* table full: only if no limit */
    if (c->n >= (uint64_t)a->cfg.max_connections_per_ip) return false;
    c->n++;
    return true;
}

void sl_auth_conn_closed(sl_auth *a, const char *addr) {
    counter *c = slot(a->conns, addr, false);
    if (c && c->n) c->n--;
}

/* ---- sessions ---- */

sl_session *sl_session_new(const char *peer, unsigned mechs, const char *principal) {
    sl_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->mechs = mechs;
    snprintf(s->addr, sizeof s->addr, "%s", peer ? peer : "");
    char *colon = strrchr(s->addr, ':');
    if (colon) *colon = 0;
    if (s->addr[0] == '[') { /* "[::1]" → "::1" */
        size_t n = strlen(s->addr);
        memmove(s->addr, s->addr + 1, n);
        if (n >= 2 && s->addr[n - 2] == ']') s->addr[n - 2] = 0;
    }
    if (!mechs) {
        s->authenticated = true;
        snprintf(s->principal, sizeof s->principal, "%s", principal ? principal : "User:ANONYMOUS");
    }
    return s;
}

void sl_session_free(sl_session *s) {
    if (!s) return;
    if (s->iam) {
        OPENSSL_cleanse(s->iam, sizeof *s->iam);
        free(s->iam);
    }
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

sl_err sl_session_handshake(sl_session *s, const char *name, size_t len, bool raw) {
    if (s->state == SL_SASL_HANDSHAKE || s->state == SL_SASL_EXCHANGE || s->state == SL_SASL_FAILED)
        return SL_ESTATE;
    unsigned bit = sl_mech_from_name(name, len);
    if (!bit || !(bit & s->mechs)) return SL_ENOTFOUND;
    s->mech = bit;
    s->raw = raw;
    s->reauth = s->authenticated;
    s->state = SL_SASL_HANDSHAKE;
    s->attempt_principal[0] = 0;
    return SL_OK;
}

const char *sl_auth_failed_message(unsigned mech) {
    static char buf[5][128];
    int i = mech == SL_MECH_PLAIN           ? 0
            : mech == SL_MECH_SCRAM_SHA_256 ? 1
            : mech == SL_MECH_SCRAM_SHA_512 ? 2
            : mech == SL_MECH_AWS_MSK_IAM   ? 4
                                            : 3;
    if (!buf[i][0])
        snprintf(buf[i], sizeof buf[i],
                 "Authentication failed: invalid credentials with SASL mechanism %s",
                 sl_mech_name(mech));
    return buf[i];
}

static void set_attempt(sl_session *s, const char *user, size_t n) {
    snprintf(s->attempt_principal, sizeof s->attempt_principal, "User:%.*s", (int)n, user);
}

/* Finishes a successful exchange as `iam` (an IAM identity, NULL for every other login);
 * re-authentication may not change who the connection is, nor whether it is an IAM identity
 * (a SCRAM name spelled like an ARN is not the IAM user). */
static sl_err succeed_as(sl_session *s, const sl_iam_identity *iam) {
    if (s->reauth && (strcmp(s->principal, s->attempt_principal) != 0 || !s->iam != !iam)) {
        s->fail_reason = "principal changed";
        return SL_EAUTH;
    }
    if (iam) {
        sl_iam_identity *copy = s->iam ? s->iam : malloc(sizeof *copy);
        if (!copy) {
            s->fail_reason = "invalid credentials";
            return SL_EAUTH;
        }
        *copy = *iam;
        s->iam = copy;
    }
    memcpy(s->principal, s->attempt_principal, sizeof s->principal);
    s->authenticated = true;
    s->state = SL_SASL_IDLE;
    return SL_OK;
}

static sl_err succeed(sl_session *s) { return succeed_as(s, NULL); }

/* The session's failure text for a refused IAM login (the verifier's detailed reason goes to
 * the broker's log only): a format problem is "malformed", a signature past its validity
 * "token expired", a verified identity without kafka-cluster:Connect says so; everything else
 * (wrong secret, unknown, disabled or expired key, another host or region, a date ahead of the
 * skew) is "invalid credentials" for a payload and "invalid token" for a token. */
static const char *iam_fail_reason(const char *why, bool token) {
    static const char *const malformed[] = {"payload is not a JSON object",
                                            "unknown key",
                                            "value is not a string",
                                            "unsupported version",
                                            "empty security token",
                                            "unknown parameter",
                                            "duplicate parameter",
                                            "missing field",
                                            "action is not kafka-cluster:Connect",
                                            "unsupported algorithm",
                                            "signed headers are not host"};
    if (!why) return token ? "invalid token" : "invalid credentials";
    if (!strcmp(why, "expired")) return "token expired";
    if (!strcmp(why, "not allowed kafka-cluster:Connect"))
        return "not allowed kafka-cluster:Connect";
    if (!strncmp(why, "malformed", 9) || !strncmp(why, "missing", 7)) return "malformed";
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        if (!strcmp(why, malformed[i])) return "malformed";
    return token ? "invalid token" : "invalid credentials";
}

/* Finishes an IAM verification (AWS_MSK_IAM payload or MSK token): the principal is the
 * identity's ARN, the session ends with the credential. */
static sl_err iam_done(sl_session *s, sl_err e, const sl_iam_identity *id, const char *why,
                       bool token, bool *done) {
    /* The principal; for a verified identity refused (no kafka-cluster:Connect), who the trail
     * names. */
    size_t n = strnlen(id->arn, sizeof id->arn);
    bool fits = n && n < sizeof id->arn && 5 + n < sizeof s->attempt_principal;
    if (fits) {
        memcpy(s->attempt_principal, "User:", 5);
        memcpy(s->attempt_principal + 5, id->arn, n + 1);
    } else if (e && id->akid[0]) {
        /* Refused before an identity: the trail names the key id presented (as a refused
         * SCRAM login names the user it claimed), which says nothing of whether it exists. */
        snprintf(s->attempt_principal, sizeof s->attempt_principal, "User:%s", id->akid);
    }
    if (e == SL_OK && !fits) e = SL_EAUTH, why = "identity ARN too long";
    if (e) {
        SL_INFO("auth", "IAM login refused", "addr=%s mechanism=%s reason=\"%s\"", s->addr,
                token ? "OAUTHBEARER" : "AWS_MSK_IAM", why ? why : "-");
        s->fail_reason = iam_fail_reason(why, token);
        return SL_EAUTH;
    }
    s->credential_expiry_ms = id->expiry_s > 0 ? id->expiry_s * 1000 : 0;
    *done = true;
    return succeed_as(s, id);
}

/* AWS_MSK_IAM (aws-msk-iam-auth): one client message, the signed JSON payload; the server
 * answers MSK's JSON {"version":"2020_10_22","request-id":"<random UUID>"}. */
static sl_err step_iam(sl_auth *a, sl_session *s, const uint8_t *in, size_t len, uint8_t *out,
                       size_t cap, size_t *out_len, bool *done) {
    sl_iam_identity id;
    memset(&id, 0, sizeof id);
    const char *why = "IAM not configured";
    sl_err e = a->iam ? sl_iam_verify_payload_from(a->iam, in, len, sl_wall_ms() / 1000, s->addr,
                                                   s->tls, &id, &why)
                      : SL_EAUTH;
    if (e == SL_OK) {
        uint8_t r[16];
        if (RAND_bytes(r, sizeof r) != 1) {
            e = SL_EAUTH, why = "no randomness for the request id";
        } else {
            r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* UUID version 4 */
            r[8] = (uint8_t)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
            int n = snprintf((char *)out, cap,
                             "{\"version\":\"" SL_MSK_IAM_VERSION "\",\"request-id\":\""
                             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                             "%02x%02x%02x%02x%02x%02x\"}",
                             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                             r[11], r[12], r[13], r[14], r[15]);
            if (n < 0 || (size_t)n >= cap)
                e = SL_EAUTH, why = "answer buffer too small";
            else
                *out_len = (size_t)n;
        }
    }
    e = iam_done(s, e, &id, why, false, done);
    OPENSSL_cleanse(&id, sizeof id);
    return e;
}

static sl_err step_plain(sl_auth *a, sl_session *s, const uint8_t *in, size_t len, bool *done) {
    sl_plain_msg m;
    if (sl_plain_parse(in, len, &m)) {
        s->fail_reason = "malformed";
        return SL_EAUTH;
    }
    set_attempt(s, m.authcid.p, (size_t)m.authcid.len);
    sl_credstore *st = sl_auth_store(a, false);
    if (st) sl_credstore_refresh(st);
    sl_scram_cred cred;
    bool known = false;
    if (st) {
        /* Prefer the stronger credential; an unknown user costs the same PBKDF2 on a mock. */
        const sl_scram_cred *c =
            sl_credstore_find(st, m.authcid.p, (size_t)m.authcid.len, SL_SCRAM_SHA_512);
        if (!c) c = sl_credstore_find(st, m.authcid.p, (size_t)m.authcid.len, SL_SCRAM_SHA_256);
        if (c) {
            cred = *c;
            known = true;
        } else {
            sl_credstore_lookup(st, m.authcid.p, (size_t)m.authcid.len, SL_SCRAM_SHA_512, &cred);
        }
    } else {
        memset(&cred, 0, sizeof cred);
        cred.mech = SL_SCRAM_SHA_512;
        cred.iterations = a->cfg.sluice_sasl_scram_iterations;
        cred.salt_len = SL_SCRAM_SALT_LEN;
    }
    bool ok = sl_scram_check_password(&cred, m.passwd.p, (size_t)m.passwd.len) && known;
    OPENSSL_cleanse(&cred, sizeof cred);
    if (!ok) {
        s->fail_reason = "invalid credentials";
        return SL_EAUTH;
    }
    *done = true;
    return succeed(s);
}

/* RFC 7628 / KIP-255: one client message with the token; Kafka answers an empty token on
 * success. A failure is reported at once as SASL_AUTHENTICATION_FAILED rather than through the
 * RFC's error-JSON round trip: clients treat both as a failed login. */
static sl_err step_oauth(sl_auth *a, sl_session *s, const uint8_t *in, size_t len, bool *done) {
    const char *tok = NULL, *authz = NULL;
    size_t tl = 0, al = 0;
    char sub[SL_JWT_MAX_PRINCIPAL + 1], why[160];
    int64_t exp_ms = 0;
    if (sl_oauthbearer_parse_client_msg((const char *)in, len, &tok, &tl, &authz, &al)) {
        s->fail_reason = "malformed";
        return SL_EAUTH;
    }
    /* MSK's IAM token (a presigned URL, base64url) or a JWT: each to its own verifier. */
    if (a->iam && sl_msk_iam_is_token(tok, tl)) {
        sl_iam_identity id;
        memset(&id, 0, sizeof id);
        const char *r = NULL;
        sl_err e = sl_iam_verify_token_from(a->iam, tok, tl, sl_wall_ms() / 1000, s->addr, s->tls,
                                            &id, &r);
        /* Kafka's rule: a non-empty authorization id must be the principal (here the ARN). */
        if (!e && al && (al != strlen(id.arn) || memcmp(authz, id.arn, al) != 0)) {
            e = SL_EAUTH, r = "authorization id is not the identity";
            memset(&id, 0, sizeof id);
        }
        e = iam_done(s, e, &id, r, true, done);
        OPENSSL_cleanse(&id, sizeof id);
        return e;
    }
    if (!a->jwt) {
        s->fail_reason = "invalid token";
        return SL_EAUTH;
    }
    if (sl_jwt_validate(a->jwt, tok, tl, sl_wall_ms(), sub, sizeof sub, &exp_ms, why, sizeof why) !=
        SL_OK) {
        SL_INFO("auth", "OAUTHBEARER token refused", "addr=%s reason=\"%s\"", s->addr, why);
        s->fail_reason = !strcmp(why, "token expired")   ? "token expired"
                         : !strncmp(why, "malformed", 9) ? "malformed"
                                                         : "invalid token";
        return SL_EAUTH;
    }
    set_attempt(s, sub, strlen(sub));
    if (al && (al != strlen(sub) || memcmp(authz, sub, al) != 0)) {
        s->fail_reason = "invalid credentials";
        return SL_EAUTH;
    }
    s->credential_expiry_ms = exp_ms;
    *done = true;
    return succeed(s);
}

/* No store: every name is unknown, answered like the store's mock would be (ctx = the auth). */
static bool lookup_none(void *ctx, const char *user, size_t n, int mech, sl_scram_cred *out) {
    const sl_auth *a = ctx;
    memset(out, 0, sizeof *out);
    out->mech = mech;
    out->iterations = a->cfg.sluice_sasl_scram_iterations;
    out->salt_len = SL_SCRAM_SALT_LEN;
    return false;
}

sl_err sl_session_step(sl_auth *a, sl_session *s, const uint8_t *in, size_t len, uint8_t *out,
                       size_t cap, size_t *out_len, bool *done) {
    *out_len = 0;
    *done = false;
    if (s->state != SL_SASL_HANDSHAKE && s->state != SL_SASL_EXCHANGE) return SL_ESTATE;
    sl_err e = SL_EAUTH;
    int sm = scram_code(s->mech);
    s->credential_expiry_ms = 0;
    s->fail_reason = NULL;
    if (s->mech == SL_MECH_PLAIN) {
        e = step_plain(a, s, in, len, done);
    } else if (s->mech == SL_MECH_OAUTHBEARER) {
        e = step_oauth(a, s, in, len, done);
    } else if (s->mech == SL_MECH_AWS_MSK_IAM) {
        e = step_iam(a, s, in, len, out, cap, out_len, done);
    } else if (sm && s->state == SL_SASL_HANDSHAKE) {
        sl_credstore *st = sl_auth_store(a, false);
        if (st) sl_credstore_refresh(st);
        e = sl_scram_server_first(&s->scram, sm, in, len, st ? sl_credstore_lookup : lookup_none,
                                  st ? (void *)st : (void *)a, (char *)out, cap, out_len);
        if (s->scram.user[0]) set_attempt(s, s->scram.user, strlen(s->scram.user));
        if (!e) {
            s->state = SL_SASL_EXCHANGE;
            return SL_OK;
        }
        /* Delegation tokens and a foreign authorization id are refused as credentials. */
        s->fail_reason = e == SL_EAUTH ? "invalid credentials" : "malformed";
        e = SL_EAUTH;
    } else if (sm) {
        e = sl_scram_server_final(&s->scram, in, len, (char *)out, cap, out_len);
        sl_scram_server_clear(&s->scram);
        if (!e) {
            *done = true;
            e = succeed(s);
        } else {
            s->fail_reason = "invalid credentials";
        }
    }
    if (e) {
        if (!s->fail_reason) s->fail_reason = "invalid credentials";
        *out_len = 0;
        *done = false;
        s->state = SL_SASL_FAILED;
        sl_auth_count_failure(a, s->attempt_principal, s->addr);
        return SL_EAUTH;
    }
    return SL_OK;
}
