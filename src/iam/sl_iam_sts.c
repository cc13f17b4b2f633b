/* The STS-compatible endpoint (sl_iam_sts.h): form parsing, the two actions, STS's XML. The
 * HTTP side (connections, TLS, limits) is src/http/sl_httpd; the signature is checked by
 * sl_iam_verify_http (src/auth/sl_msk_iam's header form); decisions by sl_iam_decide_action. */
#include "iam/sl_iam_sts.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/sl_logging.h"
#include "base/sl_text.h"
#include "base/sl_time.h"
#include "crypto/sl_tls_ctx.h"
#include "events/sl_events.h"
#include "iam/sl_iam_int.h"

#define STS_XMLNS     "https://sts.amazonaws.com/doc/2011-06-15/"
#define MECH          "AWS4-HMAC-SHA256"
#define CHAIN_MAX_S   3600 /* role chaining: AWS caps a role session assuming a role at 1 h */
#define DEFAULT_DUR_S 3600

struct sl_iam_sts {
    sl_iam_sts_env env;
    sl_httpd *httpd;
    sl_tls_endpoint *tls;
};

/* ---- the form ---- */

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes p[n] ('+' a space, %XX) into out[cap] (NUL-terminated); false for a bad escape, a
 * NUL, or a value that does not fit. */
static bool form_decode(const char *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '+')
            c = ' ';
        else if (c == '%') {
            int h = i + 2 < n ? hexv(p[i + 1]) : -1, l = i + 2 < n ? hexv(p[i + 2]) : -1;
            if (h < 0 || l < 0) return false;
            c = h * 16 + l;
            i += 2;
        }
        if (!c || o + 1 >= cap) return false;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return true;
}

bool sl_sts_form_parse(const char *body, size_t n, sl_sts_form *f, const char **why) {
    const char *dummy;
    if (!why) why = &dummy;
    memset(f, 0, sizeof *f);
    if (n > SL_STS_MAX_BODY) {
        *why = "body too large";
        return false;
    }
    char dur[16] = "";
    bool seen[5] = {false};
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && body[i] != '&') i++;
        size_t e = i++;
        if (e == s) continue; /* "a=1&&b=2" */
        const char *eq = memchr(body + s, '=', e - s);
        size_t kl = eq ? (size_t)(eq - body - s) : e - s;
        const char *v = eq ? eq + 1 : body + e;
        size_t vl = (size_t)(body + e - v);
        char key[64];
        if (!form_decode(body + s, kl, key, sizeof key)) {
            *why = "malformed parameter name";
            return false;
        }
        static const char *const names[] = {"Action", "Version", "RoleArn", "RoleSessionName",
                                            "DurationSeconds"};
        char *dst[] = {f->action, f->version, f->role_arn, f->session, dur};
        size_t caps[] = {sizeof f->action, sizeof f->version, sizeof f->role_arn, sizeof f->session,
                         sizeof dur};
        int k = 0;
        while (k < 5 && strcmp(key, names[k])) k++;
        if (k == 5) {
            if (!f->unsupported[0]) snprintf(f->unsupported, sizeof f->unsupported, "%s", key);
            continue;
        }
        if (seen[k]) {
            *why = "repeated parameter";
            return false;
        }
        seen[k] = true;
        if (!form_decode(v, vl, dst[k], caps[k])) {
            *why = "malformed or over-long parameter value";
            return false;
        }
    }
    if (dur[0]) {
        size_t dl = strlen(dur);
        for (size_t j = 0; j < dl; j++)
            if (dur[j] < '0' || dur[j] > '9') {
                *why = "DurationSeconds is not a number";
                return false;
            }
        if (dl > 9) {
            *why = "DurationSeconds is out of range";
            return false;
        }
        f->duration_s = strtoll(dur, NULL, 10);
        if (!f->duration_s) {
            *why = "DurationSeconds is out of range";
            return false;
        }
    }
    return true;
}

bool sl_sts_role_name(const char *arn, const char *account, char *name, size_t cap) {
    static const char pfx[] = "arn:aws:iam::";
    if (strncmp(arn, pfx, sizeof pfx - 1)) return false;
    const char *a = arn + sizeof pfx - 1;
    size_t al = strlen(account);
    if (strncmp(a, account, al) || strncmp(a + al, ":role/", 6)) return false;
    const char *n = a + al + 6;
    if (strlen(n) >= cap || !sl_iam_name_valid(n)) return false; /* a '/' (a path) is invalid */
    strcpy(name, n);
    return true;
}

/* ---- answers ---- */

static void xml_el(sl_text *t, const char *name, const char *value) {
    sl_text_printf(t, "<%s>", name);
    sl_text_markup(t, value);
    sl_text_printf(t, "</%s>", name);
}

static void request_id(char out[37]) {
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) memset(r, 0, sizeof r);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

static void iso8601(int64_t s, char buf[32]) {
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* STS's error document: <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>. */
static void fail(sl_httpd_resp *out, int status, const char *code, const char *msg) {
    char rid[37];
    request_id(rid);
    out->status = status;
    out->content_type = "text/xml";
    sl_text_free(&out->body);
    sl_text_printf(&out->body, "<ErrorResponse xmlns=\"%s\">\n  <Error>\n    <Type>%s</Type>\n",
                   STS_XMLNS, status >= 500 ? "Receiver" : "Sender");
    sl_text_puts(&out->body, "    ");
    xml_el(&out->body, "Code", code);
    sl_text_puts(&out->body, "\n    ");
    xml_el(&out->body, "Message", msg);
    sl_text_printf(&out->body, "\n  </Error>\n  <RequestId>%s</RequestId>\n</ErrorResponse>\n",
                   rid);
}

static void emit_auth(sl_iam_sts *s, const sl_httpd_peer *peer, bool ok, const char *principal,
                      const char *user, const char *reason) {
    if (!s->env.hub) return;
    sl_events_emit(s->env.hub, &(sl_event){.kind = SL_EV_AUTH,
                                           .principal = principal,
                                           .peer = peer->addr,
                                           .listener = SL_STS_TLS_NAME,
                                           .auth = {.activity = SL_AUTH_LOGON,
                                                    .success = ok,
                                                    .mechanism = MECH,
                                                    .user = user,
                                                    .reason = reason}});
}

static void emit_assume(sl_iam_sts *s, const sl_httpd_peer *peer, const char *principal,
                        const char *role_arn, bool ok, const char *detail) {
    if (!s->env.hub) return;
    sl_events_emit(s->env.hub, &(sl_event){.kind = SL_EV_ADMIN,
                                           .principal = principal,
                                           .peer = peer->addr,
                                           .listener = SL_STS_TLS_NAME,
                                           .admin = {.action = "sts:AssumeRole",
                                                     .resource = role_arn,
                                                     .success = ok,
                                                     .detail = detail}});
}

static void get_caller_identity(sl_iam_sts *s, const sl_iam_identity *id, sl_httpd_resp *out) {
    char rid[37];
    request_id(rid);
    const char *acct = s->env.iam->arns.account;
    sl_text *b = &out->body;
    out->content_type = "text/xml";
    sl_text_printf(b, "<GetCallerIdentityResponse xmlns=\"%s\">\n  <GetCallerIdentityResult>\n    ",
                   STS_XMLNS);
    xml_el(b, "Arn", id->arn);
    sl_text_puts(b, "\n    <UserId>");
    /* AWS: a user's unique id, or "ROLEID:session"; Sluice has the key id in both places. */
    sl_text_markup(b, id->akid);
    if (id->role) {
        sl_text_puts(b, ":");
        sl_text_markup(b, id->session);
    }
    sl_text_puts(b, "</UserId>\n    ");
    xml_el(b, "Account", acct);
    sl_text_printf(
        b,
        "\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    "
        "<RequestId>%s</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        rid);
}

static bool role_max(const sl_iamstore *st, const char *name, int64_t *max_s) {
    for (int i = 0; i < sl_iamstore_role_count(st); i++) {
        int64_t m = 0;
        const char *r = sl_iamstore_role_at(st, i, &m);
        if (r && !strcmp(r, name)) {
            *max_s = m;
            return true;
        }
    }
    return false;
}

static bool session_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 2 || n > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_+=,.@-", *s)))
            return false;
    return true;
}

static void assume_role(sl_iam_sts *s, const sl_httpd_peer *peer, const sl_iam_identity *id,
                        const char *principal, const sl_sts_form *f, int64_t now,
                        sl_httpd_resp *out) {
    /* Refusals before the decision are in the trail too: every AssumeRole call is. */
    char m[160];
    const char *code = NULL, *msg = NULL;
    if (f->unsupported[0]) {
        snprintf(m, sizeof m, "Sluice does not support the AssumeRole parameter %s",
                 f->unsupported);
        code = "InvalidParameterValue", msg = m;
    } else if (!f->role_arn[0] || !f->session[0]) {
        code = "MissingParameter";
        msg = !f->role_arn[0] ? "The request must contain the parameter RoleArn"
                              : "The request must contain the parameter RoleSessionName";
    } else if (!session_name_ok(f->session)) {
        code = "ValidationError";
        msg = "1 validation error detected: Value at 'roleSessionName' failed to satisfy "
              "constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*";
    }
    if (code) {
        emit_assume(s, peer, principal, f->role_arn[0] ? f->role_arn : NULL, false, msg);
        fail(out, 400, code, msg);
        return;
    }
    sl_iam *iam = s->env.iam;
    char role[SL_IAM_NAME_MAX + 1], why[512] = "", denied[1024];
    snprintf(denied, sizeof denied,
             "User: %s is not authorized to perform: sts:AssumeRole on "
             "resource: %s",
             id->arn, f->role_arn);
    /* What is decided is the ARN as given (policies match it as IAM would); one that names no
     * role of this account is refused the same way as a role the caller may not assume. */
    bool allowed = sl_iam_decide_action(iam, id, peer->ip, peer->tls, "sts:AssumeRole", f->role_arn,
                                        why, sizeof why);
    int64_t max_s = 0;
    bool exists = sl_sts_role_name(f->role_arn, iam->arns.account, role, sizeof role) &&
                  role_max(sl_iam_store(iam), role, &max_s);
    if (!allowed || !exists) {
        emit_assume(s, peer, principal, f->role_arn, false, allowed ? "no such role" : why);
        SL_INFO("sts", "AssumeRole refused", "principal=%s role=%s why=\"%s\"", id->arn,
                f->role_arn, allowed ? "no such role" : why);
        fail(out, 403, "AccessDenied", denied);
        return;
    }
    int64_t cap = s->env.cfg->sluice_iam_max_session_duration_ms / 1000;
    int64_t dur = f->duration_s ? f->duration_s : (max_s < DEFAULT_DUR_S ? max_s : DEFAULT_DUR_S);
    const char *bad = NULL;
    if (dur < 900)
        bad = "1 validation error detected: Value at 'durationSeconds' failed to satisfy "
              "constraint: Member must have value greater than or equal to 900";
    else if (dur > max_s)
        bad = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.";
    else if (dur > cap)
        bad = "The requested DurationSeconds exceeds sluice.iam.max.session.duration.ms.";
    else if (id->role && dur > CHAIN_MAX_S)
        bad = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
              "by role chaining.";
    if (bad) {
        emit_assume(s, peer, principal, f->role_arn, false, bad);
        fail(out, 400, "ValidationError", bad);
        return;
    }
    char akid[SL_IAM_AKID_LEN + 1], secret[SL_IAM_SECRET_LEN + 1], token[SL_IAM_TOKEN_MAX];
    int64_t expiry = 0;
    sl_err e = sl_iamstore_assume_role(sl_iam_store(iam), role, f->session, dur, now, akid, secret,
                                       token, &expiry);
    if (e) {
        OPENSSL_cleanse(secret, sizeof secret);
        OPENSSL_cleanse(token, sizeof token);
        emit_assume(s, peer, principal, f->role_arn, false, sl_strerror(e));
        fail(out, 500, "InternalFailure", "The credentials could not be issued.");
        return;
    }
    char rid[37], ts[32], arn[SL_IAM_ARN_MAX], detail[256];
    request_id(rid);
    iso8601(expiry, ts);
    snprintf(arn, sizeof arn, "arn:aws:sts::%s:assumed-role/%s/%s", iam->arns.account, role,
             f->session);
    sl_text *b = &out->body;
    out->content_type = "text/xml";
    out->sensitive = true;
    sl_text_printf(b, "<AssumeRoleResponse xmlns=\"%s\">\n  <AssumeRoleResult>\n", STS_XMLNS);
    sl_text_puts(b, "    <Credentials>\n      ");
    xml_el(b, "AccessKeyId", akid);
    sl_text_puts(b, "\n      ");
    xml_el(b, "SecretAccessKey", secret);
    sl_text_puts(b, "\n      ");
    xml_el(b, "SessionToken", token);
    sl_text_puts(b, "\n      ");
    xml_el(b, "Expiration", ts);
    sl_text_puts(b, "\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>");
    sl_text_markup(b, akid);
    sl_text_puts(b, ":");
    sl_text_markup(b, f->session);
    sl_text_puts(b, "</AssumedRoleId>\n      ");
    xml_el(b, "Arn", arn);
    sl_text_printf(b,
                   "\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    "
                   "<RequestId>%s</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
                   rid);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(token, sizeof token);
    snprintf(detail, sizeof detail, "session %s as %s until %s (%llds)", f->session, akid, ts,
             (long long)dur);
    emit_assume(s, peer, principal, f->role_arn, true, detail);
    SL_INFO("sts", "AssumeRole", "principal=%s role=%s session=%s akid=%s expires=%s", id->arn,
            f->role_arn, f->session, akid, ts);
}

size_t sl_iam_sts_headers(const sl_http_req *r, sl_sigv4_header *h, char *scratch, size_t cap) {
    size_t n = 0, at = 0;
    for (int i = 0; i < r->nheaders && n < SL_SIGV4_MAX_HEADERS; i++) {
        const sl_http_hdr *x = &r->headers[i];
        if (at + x->nlen + x->vlen + 2 > cap) break;
        char *nm = scratch + at;
        memcpy(nm, x->name, x->nlen);
        nm[x->nlen] = 0;
        at += x->nlen + 1;
        char *v = scratch + at;
        memcpy(v, x->value, x->vlen);
        v[x->vlen] = 0;
        at += x->vlen + 1;
        h[n++] = (sl_sigv4_header){nm, v};
    }
    return n;
}

void sl_iam_sts_handle(void *ud, const sl_httpd_peer *peer, const sl_http_req *r, const char *body,
                       size_t blen, sl_httpd_resp *out) {
    sl_iam_sts *s = ud;
    if (r->method != SL_HTTP_POST) {
        fail(out, 405, "InvalidAction", "This endpoint takes STS's POST form requests only.");
        snprintf(out->headers, sizeof out->headers, "Allow: POST\r\n");
        return;
    }
    if (strcmp(r->path, "/")) {
        fail(out, 404, "InvalidAction", "Not found: STS requests are POSTed to /.");
        return;
    }
    size_t ctl = 0;
    const char *ct = sl_http_header(r, "content-type", &ctl);
    if (!ct || ctl < 33 || strncasecmp(ct, "application/x-www-form-urlencoded", 33) ||
        (ctl > 33 && ct[33] != ';' && ct[33] != ' ')) {
        fail(out, 400, "InvalidParameterValue",
             "The body must be application/x-www-form-urlencoded.");
        return;
    }
    if (!sl_http_header(r, "authorization", &ctl)) {
        emit_auth(s, peer, false, NULL, NULL, "no signature");
        fail(out, 403, "MissingAuthenticationToken", "Request is missing Authentication Token");
        return;
    }
    sl_sigv4_header hs[SL_SIGV4_MAX_HEADERS];
    char scratch[SL_HTTP_MAX_HEAD + 2 * SL_HTTP_MAX_HEADERS];
    size_t nh = sl_iam_sts_headers(r, hs, scratch, sizeof scratch);
    sl_msk_iam_http mr = {.method = "POST",
                          .path = "/",
                          .query = "",
                          .headers = hs,
                          .nheaders = nh,
                          .body = (const uint8_t *)body,
                          .blen = blen,
                          .service = "sts"};
    int64_t now = sl_wall_ms() / 1000;
    sl_iam_identity id;
    const char *reason = NULL;
    sl_err e = sl_iam_verify_http(s->env.iam, &mr, now, &id, &reason);
    OPENSSL_cleanse(scratch, sizeof scratch); /* held the session token */
    if (e) {
        emit_auth(s, peer, false, NULL, id.akid[0] ? id.akid : NULL, reason);
        SL_INFO("sts", "signature refused", "peer=%s akid=%s reason=\"%s\"", peer->addr,
                id.akid[0] ? id.akid : "-", reason ? reason : "?");
        fail(out, 403, "SignatureDoesNotMatch",
             "The request signature we calculated does not match the signature you provided.");
        return;
    }
    char principal[sizeof id.arn + 8];
    snprintf(principal, sizeof principal, "User:%s", id.arn);
    emit_auth(s, peer, true, principal, id.arn, NULL);
    sl_sts_form f;
    const char *why = NULL;
    if (!sl_sts_form_parse(body, blen, &f, &why)) {
        fail(out, 400, "InvalidParameterValue", why);
        return;
    }
    if (strcmp(f.version, SL_STS_API_VERSION)) {
        fail(out, 400, "InvalidAction", "Version must be " SL_STS_API_VERSION ".");
        return;
    }
    if (!strcmp(f.action, "GetCallerIdentity"))
        get_caller_identity(s, &id, out);
    else if (!strcmp(f.action, "AssumeRole"))
        assume_role(s, peer, &id, principal, &f, now, out);
    else
        fail(out, 400, "InvalidAction",
             "Sluice's STS endpoint serves AssumeRole and GetCallerIdentity.");
    OPENSSL_cleanse(&id, sizeof id);
}

/* ---- lifecycle ---- */

sl_err sl_iam_sts_new(const sl_iam_sts_env *env, sl_iam_sts **out, char *err, size_t elen) {
    *out = NULL;
    const char *url = env->cfg->sluice_iam_sts_listener;
    if (!url[0]) return SL_OK;
    char host[256];
    bool https = false;
    int port = 0;
    if (!sl_httpd_parse_url(url, &https, host, sizeof host, &port) || !https) {
        snprintf(err, elen,
                 "sluice.iam.sts.listener: \"%s\" is not https://host:port (the answers carry "
                 "secrets: TLS only)",
                 url);
        return SL_ECONFIG;
    }
    if (!env->iam) {
        snprintf(err, elen, "sluice.iam.sts.listener: IAM is not in use on this broker");
        return SL_ECONFIG;
    }
    sl_iam_sts *s = calloc(1, sizeof *s);
    if (!s) return SL_ENOMEM;
    s->env = *env;
    sl_err e = sl_httpd_tls(env->cfg, SL_STS_TLS_NAME, "sluice.iam.sts.ssl.keystore.location",
                            env->cfg->sluice_iam_sts_ssl_keystore_location, &s->tls, err, elen);
    if (e) {
        sl_iam_sts_free(s);
        return e;
    }
    sl_httpd_opts o = {.name = "sts",
                       .loop = env->loop,
                       .tls = s->tls,
                       .limits = {.allow_post = true, .max_body = SL_STS_MAX_BODY},
                       .max_conns = 64,
                       .handler = sl_iam_sts_handle,
                       .ud = s};
    int eno = 0;
    if ((e = sl_httpd_listen(&o, host, port, &s->httpd, &eno))) {
        snprintf(err, elen, "sluice.iam.sts.listener: cannot listen on %s: %s", url,
                 strerror(eno ? eno : EINVAL));
        sl_iam_sts_free(s);
        return SL_ECONFIG;
    }
    SL_INFO("sts", "listening", "url=https://%s:%d region=%s", host[0] ? host : "0.0.0.0",
            sl_httpd_port(s->httpd), env->iam->region);
    *out = s;
    return SL_OK;
}

void sl_iam_sts_free(sl_iam_sts *s) {
    if (!s) return;
    sl_httpd_free(s->httpd);
    sl_tls_endpoint_free(s->tls);
    free(s);
}

int sl_iam_sts_port(const sl_iam_sts *s) { return s && s->httpd ? sl_httpd_port(s->httpd) : 0; }

sl_tls_endpoint *sl_iam_sts_tls(const sl_iam_sts *s) { return s ? s->tls : NULL; }
