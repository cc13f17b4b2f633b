/* aws-kms: KEKs are AWS KMS keys (docs/kms-aws.md). wrap = Encrypt, unwrap = Decrypt, both with
 * an EncryptionContext built from the caller's context bytes ({"sluice:ctx": hex}), so a blob
 * moved to another topic key entry fails like a tampered one; generate and describe =
 * DescribeKey. AWS rotates a key's backing material itself under the same key id: the KEK
 * version here is Sluice's bookkeeping (which configured key wrapped a topic key), not AWS's.
 * destroy is refused: ScheduleKeyDeletion would take every version sharing the key with it
 * after a 7-30 day wait, so retiring happens in AWS, by a person, not from `sluice keys`.
 *
 * JSON 1.1 protocol over HTTPS (one connection per call; calls are rare: topic keys only),
 * signed with SigV4 (sl_sigv4.c); credentials from sl_awscreds.c, cached until close to
 * expiry. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sl_b64.h"
#include "auth/sl_https.h"
#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "kms/sl_awscreds.h"
#include "kms/sl_kms.h"
#include "kms/sl_sigv4.h"

enum {
    MAX_ANSWER = 64 * 1024,
    MAX_PLAIN = 4096, /* KMS Encrypt's limit */
    MAX_BLOB = 6144,  /* KMS's largest CiphertextBlob */
    MAX_CTX = 1024,   /* caller's context bytes (hex doubles them) */
};

typedef struct aws_kms {
    sl_kms base;
    char region[64];
    char key_id[SL_CFG_STR_MAX];
    char url[SL_CFG_STR_MAX + 64];
    char path[256];
    char ca_file[SL_CFG_STR_MAX];
    char profile[SL_CFG_STR_MAX];
    char imds[SL_CFG_STR_MAX];
    int64_t timeout_ms;
    sl_awscreds creds;
    bool have_creds;
} aws_kms;

/* A decoded KMS answer: status and its JSON (NULL when the body is not JSON). */
typedef struct answer {
    sl_arena *arena;
    const sl_json *j;
    char *body;
    size_t blen;
    int status;
} answer;

static void answer_free(answer *a) {
    if (a->body) {
        OPENSSL_cleanse(a->body, a->blen);
        free(a->body);
    }
    sl_arena_free(a->arena);
    memset(a, 0, sizeof *a);
}

static sl_err get_creds(aws_kms *k, bool force, char *err, size_t errlen) {
    int64_t now = (int64_t)time(NULL);
    if (k->have_creds && !force && !sl_awscreds_stale(&k->creds, now)) return SL_OK;
    sl_awscreds_cfg cfg = {.profile = k->profile,
                           .imds_endpoint = k->imds,
                           .region = k->region,
                           .ca_file = k->ca_file,
                           .timeout_ms = k->timeout_ms};
    sl_awscreds fresh;
    sl_err rc = sl_awscreds_resolve(&cfg, now, &fresh, err, errlen);
    if (rc == SL_OK) {
        sl_awscreds_clear(&k->creds);
        k->creds = fresh;
        k->have_creds = true;
        sl_awscreds_clear(&fresh);
        return SL_OK;
    }
    /* A failed refresh keeps serving until the mandatory window (botocore's behaviour). */
    if (k->have_creds && !force && sl_awscreds_usable(&k->creds, now)) return SL_OK;
    sl_awscreds_clear(&k->creds);
    k->have_creds = false;
    return rc;
}

/* "com.amazonaws.kms#NotFoundException" -> "NotFoundException". */
static const char *error_type(const sl_json *j, size_t *len) {
    const sl_json *t = j ? sl_json_get(j, "__type") : NULL;
    if (!t || t->type != SL_JSON_STR) {
        *len = 0;
        return "";
    }
    const char *s = t->s;
    size_t n = t->slen;
    const char *h = memchr(s, '#', n);
    if (h) {
        n -= (size_t)(h + 1 - s);
        s = h + 1;
    }
    const char *colon = memchr(s, ':', n); /* some services append ":http://..." */
    if (colon) n = (size_t)(colon - s);
    *len = n;
    return s;
}

static bool type_is(const char *t, size_t n, const char *name) {
    return strlen(name) == n && !memcmp(t, name, n);
}

/* Maps a non-200 KMS answer to the provider's errors (sl_kms.h). */
static sl_err map_error(const answer *a, const char *op, bool unwrap, char *err, size_t errlen) {
    size_t tl;
    const char *t = error_type(a->j, &tl);
    static const char *const k_retriable[] = {
        "ThrottlingException",     "KMSInternalException",   "DependencyTimeoutException",
        "KeyUnavailableException", "LimitExceededException", "ServiceUnavailableException",
        "InternalFailure",         "RequestTimeoutException"};
    sl_err rc = a->status >= 500 || a->status == 429 ? SL_EKMS_UNAVAILABLE : SL_EKMS_DENIED;
    for (size_t i = 0; i < sizeof k_retriable / sizeof *k_retriable; i++)
        if (type_is(t, tl, k_retriable[i])) rc = SL_EKMS_UNAVAILABLE;
    if (unwrap &&
        (type_is(t, tl, "InvalidCiphertextException") || type_is(t, tl, "IncorrectKeyException")))
        rc = SL_ETAMPER;
    const sl_json *m = a->j ? sl_json_get(a->j, "message") : NULL;
    if (!m && a->j) m = sl_json_get(a->j, "Message");
    int ml = m && m->type == SL_JSON_STR ? (int)(m->slen > 160 ? 160 : m->slen) : 0;
    /* The message is KMS's own text (key ids, states), never key material. */
    char clean[161];
    for (int i = 0; i < ml; i++) {
        unsigned char c = (unsigned char)m->s[i];
        clean[i] = c < 0x20 || c > 0x7e ? '?' : (char)c;
    }
    clean[ml] = 0;
    snprintf(err, errlen, "aws-kms %s: HTTP %d %.*s%s%s", op, a->status, (int)tl, tl ? t : "error",
             ml ? ": " : "", clean);
    if (type_is(t, tl, "InvalidSignatureException") || type_is(t, tl, "RequestExpired"))
        snprintf(err + strlen(err), errlen - strlen(err),
                 " (wrong secret key, or the host clock is off)");
    return rc;
}

/* One KMS call. SL_OK with a 200 answer in *a (caller frees); otherwise a provider error. */
static sl_err kms_call(aws_kms *k, const char *op, const char *json, answer *a, bool unwrap,
                       char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    for (int attempt = 0; attempt < 2; attempt++) {
        sl_err rc = get_creds(k, attempt > 0, err, errlen);
        if (rc != SL_OK) return rc;
        char host[300], date[17], target[64];
        if (sl_https_host(k->url, false, host, sizeof host) != SL_OK) {
            snprintf(err, errlen, "sluice.kms.aws.endpoint: malformed URL");
            return SL_EKMS_DENIED;
        }
        sl_sigv4_amz_date((int64_t)time(NULL), date);
        snprintf(target, sizeof target, "TrentService.%s", op);
        bool tok = k->creds.token[0] != 0;
        sl_sigv4_header sh[5] = {{"Content-Type", "application/x-amz-json-1.1"},
                                 {"Host", host},
                                 {"X-Amz-Date", date},
                                 {"X-Amz-Target", target},
                                 {"X-Amz-Security-Token", k->creds.token}};
        sl_sigv4_request sr = {.method = "POST",
                               .path = k->path,
                               .headers = sh,
                               .nheaders = tok ? 5 : 4,
                               .body = (const uint8_t *)json,
                               .blen = strlen(json)};
        sl_sigv4_creds sc = {k->creds.akid, k->creds.secret, k->creds.token};
        char authz[512];
        if (sl_sigv4_sign(&sr, &sc, k->region, "kms", date, authz, sizeof authz, NULL, 0) !=
            SL_OK) {
            snprintf(err, errlen, "aws-kms %s: cannot sign the request (credentials from %s)", op,
                     k->creds.source ? k->creds.source : "?");
            return SL_EKMS_DENIED;
        }
        sl_https_header hh[6] = {{"Content-Type", "application/x-amz-json-1.1"},
                                 {"X-Amz-Date", date},
                                 {"X-Amz-Target", target},
                                 {"Authorization", authz},
                                 {"User-Agent", "sluice"},
                                 {"X-Amz-Security-Token", k->creds.token}};
        sl_https_req rq = {.method = "POST",
                           .url = k->url,
                           .ca_file = k->ca_file,
                           .headers = hh,
                           .nheaders = tok ? 6 : 5,
                           .body = json,
                           .blen = strlen(json),
                           .timeout_ms = k->timeout_ms,
                           .max_body = MAX_ANSWER};
        sl_https_resp resp;
        char herr[200];
        rc = sl_https_request(&rq, &resp, herr, sizeof herr);
        OPENSSL_cleanse(authz, sizeof authz);
        if (rc != SL_OK) {
            snprintf(err, errlen, "aws-kms %s: %s", op, herr);
            return rc == SL_ECONFIG || rc == SL_EINVAL ? SL_EKMS_DENIED : SL_EKMS_UNAVAILABLE;
        }
        a->status = resp.status;
        a->body = resp.body;
        a->blen = resp.blen;
        a->arena = sl_arena_new(resp.blen * 2 + 1024);
        if (!a->arena) {
            answer_free(a);
            return SL_ENOMEM;
        }
        char jerr[64];
        a->j =
            resp.blen ? sl_json_parse(a->arena, resp.body, resp.blen, 8, jerr, sizeof jerr) : NULL;
        if (a->status == 200) {
            if (!a->j || a->j->type != SL_JSON_OBJ) {
                answer_free(a);
                snprintf(err, errlen, "aws-kms %s: malformed answer", op);
                return SL_EKMS_UNAVAILABLE;
            }
            return SL_OK;
        }
        size_t tl;
        const char *t = error_type(a->j, &tl);
        /* Credentials revoked, expired early or rotated in their file: fetch them again once
         * (the environment cannot have changed under a running process). */
        bool refetch = k->creds.source && strcmp(k->creds.source, "environment");
        if (attempt == 0 && refetch &&
            (type_is(t, tl, "ExpiredTokenException") ||
             type_is(t, tl, "UnrecognizedClientException") ||
             type_is(t, tl, "InvalidSignatureException"))) {
            answer_free(a);
            continue;
        }
        rc = map_error(a, op, unwrap, err, errlen);
        answer_free(a);
        return rc;
    }
    return SL_EKMS_DENIED; /* not reached */
}

/* Appends src as a JSON string (the ids and ARNs here are printable ASCII; others escaped). */
static bool json_str(char *dst, size_t cap, size_t *o, const char *s) {
    if (*o + 2 >= cap) return false;
    dst[(*o)++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int w = c < 0x20 || c == '"' || c == '\\' || c > 0x7e
                    ? snprintf(dst + *o, cap - *o, "\\u%04x", c)
                    : snprintf(dst + *o, cap - *o, "%c", c);
        if (w < 0 || (size_t)w >= cap - *o) return false;
        *o += (size_t)w;
    }
    if (*o + 2 >= cap) return false;
    dst[(*o)++] = '"';
    dst[*o] = 0;
    return true;
}

static const char *kek_id(const aws_kms *k, const sl_kms_keyref *kek) {
    return kek && kek->id[0] ? kek->id : k->key_id;
}

/* {"KeyId":..., "EncryptionContext":{"sluice:ctx":hex}, <name>:<b64>} into a malloc'd buffer
 * (cleansed by the caller: it may hold key material). */
static char *build_body(const char *key, const uint8_t *ctx, size_t ctxlen, const char *name,
                        const uint8_t *blob, size_t n, size_t *cap_out) {
    size_t cap = strlen(key) * 6 + ctxlen * 2 + sl_b64_enc_len(n) + 256, o = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    *cap_out = cap;
    o = (size_t)snprintf(b, cap, "{\"KeyId\":");
    if (!json_str(b, cap, &o, key)) goto bad;
    o += (size_t)snprintf(b + o, cap - o, ",\"EncryptionContext\":{\"sluice:ctx\":\"");
    for (size_t i = 0; i < ctxlen; i++) o += (size_t)snprintf(b + o, cap - o, "%02x", ctx[i]);
    o += (size_t)snprintf(b + o, cap - o, "\"},\"%s\":\"", name);
    size_t w = sl_b64std_encode(blob, n, b + o, cap - o);
    if (!w && n) goto bad;
    o += w;
    if (o + 3 > cap) goto bad;
    snprintf(b + o, cap - o, "\"}");
    return b;
bad:
    OPENSSL_cleanse(b, cap);
    free(b);
    return NULL;
}

static void free_body(char *b, size_t cap) {
    if (!b) return;
    OPENSSL_cleanse(b, cap);
    free(b);
}

/* Decodes the base64 member `name` of a 200 answer into out[cap]; cleanses the encoded text. */
static sl_err b64_member(const answer *a, const char *name, uint8_t *out, size_t cap,
                         size_t *outlen, const char *op, char *err, size_t errlen) {
    const sl_json *v = sl_json_get(a->j, name);
    if (!v || v->type != SL_JSON_STR) {
        snprintf(err, errlen, "aws-kms %s: answer without %s", op, name);
        return SL_EKMS_UNAVAILABLE;
    }
    bool ok = sl_b64std_decode(v->s, v->slen, out, cap, outlen);
    OPENSSL_cleanse((void *)v->s, v->slen);
    if (!ok) {
        snprintf(err, errlen, "aws-kms %s: %s malformed or larger than %zu bytes", op, name, cap);
        return SL_EKMS_UNAVAILABLE;
    }
    return SL_OK;
}

static sl_err aws_wrap(sl_kms *base, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                       const uint8_t *plain, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                       char *err, size_t errlen) {
    aws_kms *k = (aws_kms *)base;
    if (n == 0 || n > MAX_PLAIN || ctxlen > MAX_CTX) {
        snprintf(err, errlen, "aws-kms Encrypt: bad plaintext or context length");
        return SL_EINVAL;
    }
    size_t bcap;
    char *body = build_body(kek_id(k, kek), ctx, ctxlen, "Plaintext", plain, n, &bcap);
    if (!body) return SL_ENOMEM;
    answer a;
    sl_err rc = kms_call(k, "Encrypt", body, &a, false, err, errlen);
    free_body(body, bcap);
    if (rc != SL_OK) return rc;
    rc = b64_member(&a, "CiphertextBlob", out, cap, outlen, "Encrypt", err, errlen);
    answer_free(&a);
    return rc;
}

static sl_err aws_unwrap(sl_kms *base, const sl_kms_keyref *kek, const uint8_t *ctx, size_t ctxlen,
                         const uint8_t *wrapped, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                         char *err, size_t errlen) {
    aws_kms *k = (aws_kms *)base;
    if (n == 0 || n > MAX_BLOB || ctxlen > MAX_CTX) {
        snprintf(err, errlen, "aws-kms Decrypt: bad ciphertext or context length");
        return SL_ETAMPER;
    }
    size_t bcap;
    /* KeyId pins the key: a blob naming another key is refused rather than decrypted. */
    char *body = build_body(kek_id(k, kek), ctx, ctxlen, "CiphertextBlob", wrapped, n, &bcap);
    if (!body) return SL_ENOMEM;
    answer a;
    sl_err rc = kms_call(k, "Decrypt", body, &a, true, err, errlen);
    free_body(body, bcap);
    if (rc != SL_OK) return rc;
    rc = b64_member(&a, "Plaintext", out, cap, outlen, "Decrypt", err, errlen);
    answer_free(&a);
    return rc;
}

/* DescribeKey of `id`: *a holds the answer, *md its KeyMetadata. */
static sl_err describe_key(aws_kms *k, const char *id, answer *a, const sl_json **md, char *err,
                           size_t errlen) {
    char body[SL_CFG_STR_MAX * 6 + 32];
    size_t o = (size_t)snprintf(body, sizeof body, "{\"KeyId\":");
    if (!json_str(body, sizeof body, &o, id) || o + 2 > sizeof body) return SL_EINVAL;
    snprintf(body + o, sizeof body - o, "}");
    sl_err rc = kms_call(k, "DescribeKey", body, a, false, err, errlen);
    if (rc != SL_OK) return rc;
    *md = sl_json_get(a->j, "KeyMetadata");
    if (!*md || (*md)->type != SL_JSON_OBJ) {
        answer_free(a);
        snprintf(err, errlen, "aws-kms DescribeKey: answer without KeyMetadata");
        return SL_EKMS_UNAVAILABLE;
    }
    return SL_OK;
}

static const char *md_str(const sl_json *md, const char *name, char *buf, size_t cap) {
    const sl_json *v = sl_json_get(md, name);
    if (!v || v->type != SL_JSON_STR || v->slen >= cap) return NULL;
    for (size_t i = 0; i < v->slen; i++)
        buf[i] = (unsigned char)v->s[i] < 0x20 || (unsigned char)v->s[i] > 0x7e ? '?' : v->s[i];
    buf[v->slen] = 0;
    return buf;
}

static sl_err aws_generate(sl_kms *base, uint32_t version, sl_kms_keyref *out, char *err,
                           size_t errlen) {
    aws_kms *k = (aws_kms *)base;
    answer a;
    const sl_json *md;
    sl_err rc = describe_key(k, k->key_id, &a, &md, err, errlen);
    if (rc != SL_OK) return rc;
    char arn[sizeof out->id], state[32], usage[32], spec[48];
    const char *s = md_str(md, "KeyState", state, sizeof state);
    const char *u = md_str(md, "KeyUsage", usage, sizeof usage);
    const char *sp = md_str(md, "KeySpec", spec, sizeof spec);
    if (!sp) sp = md_str(md, "CustomerMasterKeySpec", spec, sizeof spec);
    if (!md_str(md, "Arn", arn, sizeof arn)) {
        rc = SL_EKMS_UNAVAILABLE;
        snprintf(err, errlen, "aws-kms DescribeKey: answer without Arn");
    } else if (!s || strcmp(s, "Enabled")) {
        rc = SL_EKMS_DENIED;
        snprintf(err, errlen, "aws-kms: key %s is %s, not Enabled", arn, s ? s : "in no state");
    } else if ((u && strcmp(u, "ENCRYPT_DECRYPT")) || (sp && strcmp(sp, "SYMMETRIC_DEFAULT"))) {
        rc = SL_EKMS_DENIED;
        snprintf(err, errlen, "aws-kms: key %s is %s/%s; a symmetric ENCRYPT_DECRYPT key is needed",
                 arn, sp ? sp : "?", u ? u : "?");
    } else {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", arn);
        out->version = version;
    }
    answer_free(&a);
    return rc;
}

static sl_err aws_describe(sl_kms *base, const sl_kms_keyref *kek, char *out, size_t cap, char *err,
                           size_t errlen) {
    aws_kms *k = (aws_kms *)base;
    answer a;
    const sl_json *md;
    sl_err rc = describe_key(k, kek_id(k, kek), &a, &md, err, errlen);
    if (rc != SL_OK) return rc;
    char arn[300], state[32], mgr[32], spec[48], date[32] = "?";
    const sl_json *cd = sl_json_get(md, "CreationDate");
    if (cd && cd->type == SL_JSON_NUM) {
        time_t t = (time_t)cd->num;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    const char *sp = md_str(md, "KeySpec", spec, sizeof spec);
    if (!sp) sp = md_str(md, "CustomerMasterKeySpec", spec, sizeof spec);
    const char *m = md_str(md, "KeyManager", mgr, sizeof mgr);
    const char *s = md_str(md, "KeyState", state, sizeof state);
    const char *ar = md_str(md, "Arn", arn, sizeof arn);
    snprintf(out, cap, "aws-kms %s state=%s manager=%s spec=%s created=%s region=%s",
             ar ? ar : kek_id(k, kek), s ? s : "?", m ? m : "?", sp ? sp : "?", date, k->region);
    answer_free(&a);
    return SL_OK;
}

static sl_err aws_destroy(sl_kms *base, const sl_kms_keyref *kek, char *err, size_t errlen) {
    /* Short enough for the key service's 200-byte reason with a full key ARN in it. */
    snprintf(err, errlen,
             "aws-kms never deletes KMS keys: retire %s in AWS (disable, or schedule deletion: "
             "7-30 days) once no topic key uses it",
             kek && kek->id[0] ? kek->id : "the configured key");
    return SL_EPOLICY;
}

static void aws_free(sl_kms *base) {
    aws_kms *k = (aws_kms *)base;
    if (!k) return;
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}

static const sl_kms_ops k_aws_ops = {
    .name = "aws-kms",
    .wrap = aws_wrap,
    .unwrap = aws_unwrap,
    .generate = aws_generate,
    .describe = aws_describe,
    .destroy = aws_destroy,
    .free = aws_free,
};

sl_err sl_kms_aws_new(const sl_config *cfg, sl_kms **out, char *err, size_t errlen) {
    if (!cfg->sluice_kms_aws_key_id[0]) {
        snprintf(err, errlen, "sluice.kms.aws.key.id: required with sluice.kms.provider=aws-kms");
        return SL_ECONFIG;
    }
    aws_kms *k = calloc(1, sizeof *k);
    if (!k) return SL_ENOMEM;
    k->base.ops = &k_aws_ops;
    snprintf(k->key_id, sizeof k->key_id, "%s", cfg->sluice_kms_aws_key_id);
    snprintf(k->ca_file, sizeof k->ca_file, "%s", cfg->sluice_kms_aws_ca_file);
    snprintf(k->profile, sizeof k->profile, "%s", cfg->sluice_kms_aws_profile);
    snprintf(k->imds, sizeof k->imds, "%s", cfg->sluice_kms_aws_imds_endpoint);
    k->timeout_ms = cfg->sluice_kms_timeout_ms;
    bool region_ok = true;
    if (cfg->sluice_kms_aws_region[0]) {
        size_t rl = strlen(cfg->sluice_kms_aws_region);
        region_ok = rl < sizeof k->region;
        if (region_ok) memcpy(k->region, cfg->sluice_kms_aws_region, rl + 1);
    } else if (!sl_awscreds_region(k->profile, k->region, sizeof k->region)) {
        k->region[0] = 0;
    }
    region_ok = region_ok && k->region[0] != 0;
    for (const char *p = k->region; *p; p++)
        region_ok =
            region_ok && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-');
    if (!region_ok) {
        snprintf(err, errlen,
                 "sluice.kms.aws.region: missing or malformed (also looked at AWS_REGION, "
                 "AWS_DEFAULT_REGION and the profile's region)");
        free(k);
        return SL_ECONFIG;
    }
    if (cfg->sluice_kms_aws_endpoint[0])
        snprintf(k->url, sizeof k->url, "%s", cfg->sluice_kms_aws_endpoint);
    else
        snprintf(k->url, sizeof k->url, "https://kms.%s.amazonaws.com/", k->region);
    /* The signed path is the endpoint's; a query string has no place in a KMS endpoint. */
    const char *sch = strstr(k->url, "://");
    const char *p = sch ? strchr(sch + 3, '/') : NULL;
    snprintf(k->path, sizeof k->path, "%s", p ? p : "/");
    char host[300];
    if (!sch || strchr(k->url, '?') || strchr(k->url, '#') ||
        sl_https_host(k->url, false, host, sizeof host) != SL_OK) {
        snprintf(err, errlen, "sluice.kms.aws.endpoint: malformed URL");
        free(k);
        return SL_ECONFIG;
    }
    *out = &k->base;
    return SL_OK;
}
