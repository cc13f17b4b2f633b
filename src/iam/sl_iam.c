/* The broker's IAM context: lifecycle and verification (sl_iam.h). A login is verified in four
 * steps: the SigV4 signature (sl_msk_iam.h, the store finding the secret: an unknown, disabled
 * or expired key signs with a dummy and fails like a wrong secret), the identity the key
 * resolves to (sl_iamstore_identity), kafka-cluster:Connect on the cluster's ARN by the
 * identity's own policies (MSK refuses the login otherwise), and the session's end (the
 * signature's validity or the temporary credentials', whichever is first). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acl/sl_acl.h"
#include "auth/sl_msk_iam.h"
#include "base/sl_logging.h"
#include "iam/sl_iam.h"
#include "iam/sl_iam_int.h"

#define MAX_HOSTS 64

static sl_err add_host(sl_iam *iam, const char *h, size_t n, char *err, size_t elen) {
    while (n && (*h == ' ' || *h == '\t')) h++, n--;
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    if (!n) return SL_OK;
    if (n > 255) {
        snprintf(err, elen, "sluice.iam.hosts: a host name is longer than 255 bytes");
        return SL_ECONFIG;
    }
    for (size_t i = 0; i < iam->nhosts; i++)
        if (strlen(iam->hosts[i]) == n && !strncasecmp(iam->hosts[i], h, n)) return SL_OK;
    if (iam->nhosts >= MAX_HOSTS) {
        snprintf(err, elen, "sluice.iam.hosts: more than %d host names", MAX_HOSTS);
        return SL_ECONFIG;
    }
    char *c = malloc(n + 1);
    if (!c) return SL_ENOMEM;
    memcpy(c, h, n);
    c[n] = 0;
    iam->hosts[iam->nhosts++] = c;
    return SL_OK;
}

sl_err sl_iam_new(const sl_config *cfg, const char *cluster_id, const char *const *hosts,
                  size_t nhosts, sl_iam **out, char *err, size_t elen) {
    *out = NULL;
    sl_iam *iam = calloc(1, sizeof *iam);
    if (!iam || !(iam->hosts = calloc(MAX_HOSTS, sizeof *iam->hosts))) {
        free(iam);
        return SL_ENOMEM;
    }
    sl_err e = sl_iam_arn_cfg_from(cfg, cluster_id, &iam->arns, err, elen);
    if (!e &&
        (!cfg->sluice_iam_region[0] || strlen(cfg->sluice_iam_region) >= sizeof iam->region)) {
        snprintf(err, elen, "sluice.iam.region: empty or longer than %zu bytes",
                 sizeof iam->region - 1);
        e = SL_ECONFIG;
    }
    if (!e) memcpy(iam->region, cfg->sluice_iam_region, strlen(cfg->sluice_iam_region) + 1);
    for (size_t i = 0; !e && i < nhosts; i++)
        if (hosts[i]) e = add_host(iam, hosts[i], strlen(hosts[i]), err, elen);
    for (const char *p = cfg->sluice_iam_hosts; !e && *p;) {
        size_t n = strcspn(p, ",");
        e = add_host(iam, p, n, err, elen);
        p += n;
        if (*p == ',') p++;
    }
    iam->skew_s = cfg->sluice_iam_clock_skew_ms / 1000;
    if (!e) {
        char file[SL_CFG_STR_MAX + 64], keyfile[SL_CFG_STR_MAX + 64];
        sl_iamstore_paths(cfg, file, sizeof file, keyfile, sizeof keyfile);
        e = sl_iamstore_open(file, keyfile, true, &iam->store, err, elen);
    }
    if (e) {
        sl_iam_free(iam);
        return e;
    }
    *out = iam;
    return SL_OK;
}

void sl_iam_free(sl_iam *iam) {
    if (!iam) return;
    sl_iamstore_free(iam->store);
    for (size_t i = 0; iam->hosts && i < iam->nhosts; i++) free(iam->hosts[i]);
    free(iam->hosts);
    free(iam);
}

sl_iamstore *sl_iam_store(sl_iam *iam) { return iam ? iam->store : NULL; }

const sl_iam_arn_cfg *sl_iam_arns(const sl_iam *iam) { return iam ? &iam->arns : NULL; }

/* The verifier's secret lookup over the store, keeping the session token it was asked about:
 * sl_iamstore_identity needs it to resolve a temporary key, and sl_msk_iam_id does not carry
 * it. A token that does not fit cannot be one the store sealed. */
typedef struct lookup_ctx {
    sl_iamstore *store;
    char token[SL_IAM_TOKEN_MAX];
    bool has_token;
    char presented[SL_IAM_AKID_LEN + 1]; /* the key id the signature names, if AWS-shaped */
} lookup_ctx;

/* An access key id as AWS and the store write them (4 + 16 of [A-Z0-9]): only such a text is
 * repeated in a refused login's audit event and log line, so a client cannot put arbitrary
 * text there. Says nothing of whether the key exists. */
static bool akid_shaped(const char *akid) {
    size_t n = strlen(akid);
    if (n != SL_IAM_AKID_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!((akid[i] >= 'A' && akid[i] <= 'Z') || (akid[i] >= '0' && akid[i] <= '9')))
            return false;
    return true;
}

static bool lookup(void *ud, const char *akid, const char *session_token, char *secret,
                   size_t cap) {
    lookup_ctx *l = ud;
    l->has_token = false;
    if (akid_shaped(akid)) memcpy(l->presented, akid, SL_IAM_AKID_LEN + 1);
    if (session_token) {
        size_t n = strlen(session_token);
        if (n >= sizeof l->token) return false;
        memcpy(l->token, session_token, n + 1);
        l->has_token = true;
    }
    return sl_iamstore_secret_lookup(l->store, akid, session_token, secret, cap);
}

typedef sl_err (*verify_fn)(const sl_msk_iam_verify_cfg *cfg, const void *in, size_t n,
                            sl_msk_iam_id *id, const char **reason);

static sl_err v_payload(const sl_msk_iam_verify_cfg *cfg, const void *in, size_t n,
                        sl_msk_iam_id *id, const char **reason) {
    return sl_msk_iam_verify_payload(cfg, in, n, id, reason);
}

static sl_err v_token(const sl_msk_iam_verify_cfg *cfg, const void *in, size_t n, sl_msk_iam_id *id,
                      const char **reason) {
    return sl_msk_iam_verify_token(cfg, in, n, id, reason);
}

/* May `id` connect: kafka-cluster:Connect on the cluster's ARN by its attached policies, with
 * the connection's address and transport for aws:SourceIp and aws:SecureTransport. */
static bool may_connect(sl_iam *iam, const sl_iam_identity *id, int64_t now_s,
                        const char *source_ip, bool tls) {
    char arn[SL_IAM_ARN_MAX];
    if (sl_iam_arn(&iam->arns, SL_ACL_RES_CLUSTER, "", 0, arn, sizeof arn) < 0) return false;
    const sl_iam_policy *pols[SL_IAM_MAX_ATTACHED];
    sl_iam_tag tags[SL_IAM_MAX_TAGS];
    size_t ntags = 0;
    size_t np = sl_iamstore_policies_for(iam->store, id, pols, SL_IAM_MAX_ATTACHED, tags,
                                         SL_IAM_MAX_TAGS, &ntags);
    sl_iam_ctx ctx = {.source_ip = source_ip && source_ip[0] ? source_ip : NULL,
                      .secure_transport = tls,
                      .now_s = now_s,
                      .tags = tags,
                      .ntags = ntags,
                      .username = id->role ? NULL : id->name,
                      .principal_arn = id->arn,
                      .principal_type = id->role ? "AssumedRole" : "User"};
    return sl_iam_evaluate(pols, np, "kafka-cluster:Connect", arn, &ctx, NULL) == SL_IAM_ALLOW;
}

static sl_err v_http(const sl_msk_iam_verify_cfg *cfg, const void *in, size_t n, sl_msk_iam_id *id,
                     const char **reason) {
    return sl_msk_iam_verify_http(cfg, in, id, reason);
}

/* `connect`: a Kafka login, which also needs kafka-cluster:Connect (an STS call does not). */
static sl_err verify(sl_iam *iam, verify_fn fn, const void *in, size_t n, int64_t now_s,
                     const char *source_ip, bool tls, bool connect, sl_iam_identity *id,
                     const char **reason) {
    const char *dummy;
    if (!reason) reason = &dummy;
    *reason = NULL;
    memset(id, 0, sizeof *id);
    if (!iam || !iam->store) {
        *reason = "IAM not configured";
        return SL_EAUTH;
    }
    /* A key created, disabled or removed with `sluice iam` applies to the next login. */
    (void)sl_iamstore_refresh(iam->store);
    lookup_ctx *l = calloc(1, sizeof *l);
    if (!l) {
        *reason = "out of memory";
        return SL_ENOMEM;
    }
    l->store = iam->store;
    sl_msk_iam_verify_cfg vc = {.hosts = (const char *const *)iam->hosts,
                                .nhosts = iam->nhosts,
                                .region = iam->region,
                                .now_s = now_s,
                                .skew_s = iam->skew_s,
                                .lookup = lookup,
                                .ud = l};
    sl_msk_iam_id mid;
    memset(&mid, 0, sizeof mid);
    sl_err e = fn(&vc, in, n, &mid, reason);
    if (!e && mid.temporary != l->has_token) e = SL_EAUTH, *reason = "signature does not match";
    if (!e && sl_iamstore_identity(iam->store, mid.akid, l->has_token ? l->token : NULL,
                                   iam->arns.account, id) != SL_OK)
        e = SL_EAUTH, *reason = "signature does not match"; /* removed since the lookup */
    char presented[SL_IAM_AKID_LEN + 1];
    memcpy(presented, l->presented, sizeof presented);
    OPENSSL_cleanse(l, sizeof *l);
    free(l);
    if (e) {
        /* A refusal keeps only the key id the client presented (for the trail: who tried),
         * whether or not it exists. */
        memset(id, 0, sizeof *id);
        memcpy(id->akid, presented, sizeof presented);
        if (!*reason) *reason = e == SL_ENOMEM ? "out of memory" : "signature does not match";
        return e;
    }
    if (id->expiry_s <= 0 || mid.expiry_s < id->expiry_s) id->expiry_s = mid.expiry_s;
    if (id->expiry_s <= now_s) {
        /* Temporary credentials that ended while the signature is still valid. */
        *reason = "expired";
        return SL_EAUTH;
    }
    if (connect && !may_connect(iam, id, now_s, source_ip, tls)) {
        *reason = "not allowed kafka-cluster:Connect";
        return SL_EAUTH;
    }
    if (!id->role) sl_iamstore_note_use(iam->store, id->akid, now_s);
    return SL_OK;
}

sl_err sl_iam_verify_payload(sl_iam *iam, const uint8_t *p, size_t n, int64_t now_s,
                             sl_iam_identity *id, const char **reason) {
    return verify(iam, v_payload, p, n, now_s, NULL, true, true, id, reason);
}

sl_err sl_iam_verify_token(sl_iam *iam, const char *tok, size_t n, int64_t now_s,
                           sl_iam_identity *id, const char **reason) {
    return verify(iam, v_token, tok, n, now_s, NULL, true, true, id, reason);
}

sl_err sl_iam_verify_payload_from(sl_iam *iam, const uint8_t *p, size_t n, int64_t now_s,
                                  const char *source_ip, bool tls, sl_iam_identity *id,
                                  const char **reason) {
    return verify(iam, v_payload, p, n, now_s, source_ip, tls, true, id, reason);
}

sl_err sl_iam_verify_token_from(sl_iam *iam, const char *tok, size_t n, int64_t now_s,
                                const char *source_ip, bool tls, sl_iam_identity *id,
                                const char **reason) {
    return verify(iam, v_token, tok, n, now_s, source_ip, tls, true, id, reason);
}

sl_err sl_iam_verify_http(sl_iam *iam, const sl_msk_iam_http *r, int64_t now_s, sl_iam_identity *id,
                          const char **reason) {
    return verify(iam, v_http, r, 0, now_s, NULL, true, false, id, reason);
}

const char *sl_iam_region(const sl_iam *iam) { return iam->region; }
