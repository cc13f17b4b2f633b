/* Upstream connections of the gateway (see sl_upstream.h).
 *
 * Set-up: each connection attempt runs on its own detached worker thread (TCP with a deadline,
 * TLS client handshake, SASL exchange; all blocking, bounded by connect.timeout.ms). The worker
 * shares only an `attempt` with the loop (two references: worker and loop) and signals completion
 * through the attempt's eventfd, which the loop watches. An attempt the loop abandons (close)
 * finishes on its own and frees itself. The configuration counts its running workers and
 * sl_upstream_cfg_free waits for them, so a worker never reads a freed configuration.
 *
 * Loop side: requests wait in `waitq` until the connection is ready (and not re-authenticating),
 * then are written with the connection's own correlation id, straight from the caller's frame
 * when nothing is queued ahead; what the socket does not take waits in the `out` queue, still
 * in the caller's frame for a kept request (sl_upconn_send_kept: its frame lives until its
 * callback runs, which needs its answer, which needs every byte written), else copied. Those
 * expecting an answer move to the `inflight` FIFO. Each answer must carry the FIFO head's
 * correlation id. Failures and sl_upconn_close move every callback to `failed`, run from a posted
 * callback, never inside the call that caused them (sl_upconn_send included).
 *
 * Re-authentication: at 85% of the session lifetime the connection stops sending (requests
 * queue), waits until nothing is in flight or unwritten, closes the socket and runs a fresh
 * attempt on a worker; the queue then continues on the new socket. */
#include "gateway/sl_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/sl_msk_iam.h"
#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "gateway/sl_saslc.h"
#include "kms/sl_awscreds.h"
#include "net/sl_dial.h"
#include "net/sl_tls.h"
#include "net/sl_transport.h"
#include "proto/gen/sl_msgs.h"
#include "proto/sl_proto.h"

#define UP_MAX_FRAME     (256u * 1024 * 1024) /* larger answers are not Kafka: protocol error */
#define UP_MAX_SASL_RESP (1024 * 1024)
#define UP_MAX_TOKEN     16384
#define UP_CLIENT_ID     "sluice-gateway"
#define UP_REAUTH_PCT    85

enum { MECH_PLAIN = 1, MECH_SCRAM256, MECH_SCRAM512, MECH_OAUTH, MECH_MSKIAM };

typedef struct boot_addr {
    char host[256];
    int port;
} boot_addr;

struct sl_upstream_cfg {
    boot_addr *boot;
    int nboot;
    bool tls, sasl, verify_host;
    int mech;
    const char *mech_name;
    SSL_CTX *ctx;
    char user[SL_SCRAM_MAX_USER + 1];
    /* Secrets live in one mmap'd region: locked (best effort), not in core dumps, cleansed. */
    char *secrets;
    size_t secrets_cap;
    const char *password, *token; /* into `secrets`; NULL when unset */
    size_t pw_len, token_len;
    char token_cmd[SL_CFG_STR_MAX];
    char region[64], profile[256], imds[SL_CFG_STR_MAX];
    int64_t connect_timeout_ms, request_timeout_ms;
    /* Workers in flight, and the AWS credential cache; under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int workers;
    sl_awscreds aws;
    bool aws_valid;
    /* sluice.gateway.principal.mapping: principals with their own upstream identity */
    struct up_map *maps;
    int nmaps;
};

typedef struct up_map {
    char principal[256];
    sl_upstream_cfg *cfg;
} up_map;

/* ---------------------------------------------------------------- configuration ---- */

static bool parse_bootstrap(sl_upstream_cfg *u, const char *list, char *err, size_t elen) {
    static const char *key = "sluice.gateway.upstream.bootstrap.servers";
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    u->boot = calloc((size_t)cap, sizeof *u->boot);
    if (!u->boot) {
        snprintf(err, elen, "out of memory");
        return false;
    }
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        if (!e) e = p + strlen(p);
        const char *s = p, *t = e;
        while (s < t && (*s == ' ' || *s == '\t')) s++;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        p = *e ? e + 1 : e;
        if (s == t) continue;
        char item[300];
        size_t n = (size_t)(t - s);
        if (n >= sizeof item) {
            snprintf(err, elen, "%s: address too long", key);
            return false;
        }
        memcpy(item, s, n);
        item[n] = 0;
        const char *host = item, *port;
        size_t hl;
        if (item[0] == '[') {
            char *rb = strchr(item, ']');
            if (!rb || rb[1] != ':') goto bad;
            host = item + 1;
            hl = (size_t)(rb - host);
            port = rb + 2;
            struct in6_addr a6;
            *rb = 0;
            if (inet_pton(AF_INET6, host, &a6) != 1) goto bad;
        } else {
            char *c = strrchr(item, ':');
            if (!c || strchr(item, ':') != c) goto bad;
            hl = (size_t)(c - item);
            *c = 0;
            port = c + 1;
        }
        if (hl == 0 || hl >= sizeof u->boot[0].host) goto bad;
        char *end;
        long pv = strtol(port, &end, 10);
        if (!*port || *end || pv < 1 || pv > 65535) goto bad;
        boot_addr *b = &u->boot[u->nboot++];
        memcpy(b->host, host, hl);
        b->host[hl] = 0;
        b->port = (int)pv;
        continue;
    bad:
        snprintf(err, elen, "%s: invalid address \"%.*s\" (host:port or [ipv6]:port)", key, (int)n,
                 s);
        return false;
    }
    if (u->nboot == 0) {
        snprintf(err, elen, "%s: required (host:port[,host:port...])", key);
        return false;
    }
    return true;
}

static const char *ssl_err_text(char *buf, size_t n) {
    unsigned long e = ERR_peek_last_error();
    if (!e) return "unknown error";
    ERR_error_string_n(e, buf, n);
    return buf;
}

/* No passphrase prompt on the terminal for an encrypted key: it fails to load instead. */
static int no_passphrase(char *buf, int size, int rw, void *ud) {
    (void)buf, (void)size, (void)rw, (void)ud;
    return 0;
}

static bool build_ctx(sl_upstream_cfg *u, const sl_config *c, char *err, size_t elen) {
    char eb[256];
    u->ctx = SSL_CTX_new(TLS_client_method());
    if (!u->ctx) {
        snprintf(err, elen, "cannot create a TLS context");
        return false;
    }
    SSL_CTX_set_min_proto_version(u->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(u->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* As the server side: records are encrypted straight from the caller's (moving) buffer. */
    SSL_CTX_set_mode(u->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(u->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_default_passwd_cb(u->ctx, no_passphrase);
    const char *ca = c->sluice_gateway_upstream_ssl_ca_location;
    ERR_clear_error();
    if (ca[0] ? SSL_CTX_load_verify_locations(u->ctx, ca, NULL) != 1
              : SSL_CTX_set_default_verify_paths(u->ctx) != 1) {
        snprintf(err, elen, "sluice.gateway.upstream.ssl.ca.location: cannot load \"%s\": %s",
                 ca[0] ? ca : "(system store)", ssl_err_text(eb, sizeof eb));
        return false;
    }
    const char *cert = c->sluice_gateway_upstream_ssl_certificate_location,
               *key = c->sluice_gateway_upstream_ssl_key_location;
    if (cert[0] && !key[0]) {
        snprintf(err, elen,
                 "sluice.gateway.upstream.ssl.key.location: required with "
                 "sluice.gateway.upstream.ssl.certificate.location");
        return false;
    }
    if (key[0] && !cert[0]) {
        snprintf(err, elen,
                 "sluice.gateway.upstream.ssl.certificate.location: required with "
                 "sluice.gateway.upstream.ssl.key.location");
        return false;
    }
    if (cert[0]) {
        if (SSL_CTX_use_certificate_chain_file(u->ctx, cert) != 1) {
            snprintf(err, elen,
                     "sluice.gateway.upstream.ssl.certificate.location: cannot load \"%s\": %s",
                     cert, ssl_err_text(eb, sizeof eb));
            return false;
        }
        if (SSL_CTX_use_PrivateKey_file(u->ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(u->ctx) != 1) {
            snprintf(err, elen, "sluice.gateway.upstream.ssl.key.location: cannot use \"%s\": %s",
                     key, ssl_err_text(eb, sizeof eb));
            return false;
        }
    }
    ERR_clear_error();
    return true;
}

/* First line of `path` (without its end of line) into buf[cap]; false with err. */
static bool read_first_line(const char *path, const char *key, char *buf, size_t cap, size_t *len,
                            char *err, size_t elen) {
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, elen, "%s: cannot read \"%s\": %s", key, path, strerror(errno));
        return false;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    size_t l = strcspn(buf, "\r\n");
    OPENSSL_cleanse(buf + l, n - l);
    buf[l] = 0;
    *len = l;
    if (l == 0) {
        snprintf(err, elen, "%s: \"%s\" is empty", key, path);
        return false;
    }
    return true;
}

/* Copies the password and token into the secrets region. */
static bool store_secrets(sl_upstream_cfg *u, const char *pw, size_t pwl, const char *tok,
                          size_t tl, char *err, size_t elen) {
    size_t need = pwl + 1 + tl + 1;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    u->secrets_cap = (need + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
    void *m =
        mmap(NULL, u->secrets_cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        u->secrets = NULL;
        snprintf(err, elen, "out of memory");
        return false;
    }
    u->secrets = m;
    (void)mlock(m, u->secrets_cap); /* best effort (RLIMIT_MEMLOCK) */
    (void)madvise(m, u->secrets_cap, MADV_DONTDUMP);
    if (pw) {
        memcpy(u->secrets, pw, pwl);
        u->password = u->secrets;
        u->pw_len = pwl;
    }
    if (tok) {
        memcpy(u->secrets + pwl + 1, tok, tl);
        u->token = u->secrets + pwl + 1;
        u->token_len = tl;
    }
    return true;
}

static bool parse_sasl(sl_upstream_cfg *u, const sl_config *c, char *err, size_t elen) {
    const char *m = c->sluice_gateway_upstream_sasl_mechanism;
    static const struct {
        const char *name;
        int mech;
    } mechs[] = {{"PLAIN", MECH_PLAIN},
                 {"SCRAM-SHA-256", MECH_SCRAM256},
                 {"SCRAM-SHA-512", MECH_SCRAM512},
                 {"OAUTHBEARER", MECH_OAUTH},
                 {"AWS_MSK_IAM", MECH_MSKIAM}};
    for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++)
        if (!strcmp(m, mechs[i].name)) {
            u->mech = mechs[i].mech;
            u->mech_name = mechs[i].name;
        }
    if (!u->mech) {
        snprintf(err, elen,
                 "sluice.gateway.upstream.sasl.mechanism: invalid value \"%s\" (one of: PLAIN "
                 "SCRAM-SHA-256 SCRAM-SHA-512 OAUTHBEARER AWS_MSK_IAM)",
                 m);
        return false;
    }
    const char *pwv = c->sluice_gateway_upstream_sasl_password,
               *pwf = c->sluice_gateway_upstream_sasl_password_file,
               *tokv = c->sluice_gateway_upstream_sasl_oauthbearer_token,
               *tokc = c->sluice_gateway_upstream_sasl_oauthbearer_token_command;
    if (u->mech == MECH_PLAIN || u->mech == MECH_SCRAM256 || u->mech == MECH_SCRAM512) {
        const char *user = c->sluice_gateway_upstream_sasl_username;
        if (!user[0] || strlen(user) > SL_SCRAM_MAX_USER) {
            snprintf(err, elen, "sluice.gateway.upstream.sasl.username: %s with %s",
                     user[0] ? "too long" : "required", u->mech_name);
            return false;
        }
        memcpy(u->user, user, strlen(user) + 1);
        if (pwv[0] && pwf[0]) {
            snprintf(err, elen,
                     "sluice.gateway.upstream.sasl.password.file: set either it or "
                     "sluice.gateway.upstream.sasl.password, not both");
            return false;
        }
        if (!pwv[0] && !pwf[0]) {
            snprintf(err, elen,
                     "sluice.gateway.upstream.sasl.password: required with %s (or "
                     "sluice.gateway.upstream.sasl.password.file)",
                     u->mech_name);
            return false;
        }
        char buf[SL_CFG_STR_MAX];
        size_t l = 0;
        bool ok;
        if (pwf[0]) {
            ok = read_first_line(pwf, "sluice.gateway.upstream.sasl.password.file", buf, sizeof buf,
                                 &l, err, elen);
        } else {
            l = strlen(pwv);
            memcpy(buf, pwv, l + 1);
            ok = true;
        }
        if (ok && u->mech == MECH_PLAIN && memchr(buf, 0, l)) ok = false;
        ok = ok && store_secrets(u, buf, l, NULL, 0, err, elen);
        OPENSSL_cleanse(buf, sizeof buf);
        return ok;
    }
    if (u->mech == MECH_OAUTH) {
        if (tokv[0] && tokc[0]) {
            snprintf(err, elen,
                     "sluice.gateway.upstream.sasl.oauthbearer.token.command: set either it or "
                     "sluice.gateway.upstream.sasl.oauthbearer.token, not both");
            return false;
        }
        if (!tokv[0] && !tokc[0]) {
            snprintf(err, elen,
                     "sluice.gateway.upstream.sasl.oauthbearer.token: required with OAUTHBEARER "
                     "(or sluice.gateway.upstream.sasl.oauthbearer.token.command)");
            return false;
        }
        snprintf(u->token_cmd, sizeof u->token_cmd, "%s", tokc);
        if (tokv[0]) {
            uint8_t probe[UP_MAX_TOKEN + 64];
            size_t pl;
            if (sl_saslc_oauthbearer(tokv, strlen(tokv), probe, sizeof probe, &pl) != SL_OK) {
                OPENSSL_cleanse(probe, sizeof probe);
                snprintf(err, elen,
                         "sluice.gateway.upstream.sasl.oauthbearer.token: not a bearer token "
                         "(printable, no spaces)");
                return false;
            }
            OPENSSL_cleanse(probe, sizeof probe);
        }
        return store_secrets(u, NULL, 0, tokv[0] ? tokv : NULL, strlen(tokv), err, elen);
    }
    /* AWS_MSK_IAM: the region now; credentials per connection, on the worker. */
    if (strlen(c->sluice_gateway_upstream_aws_profile) >= sizeof u->profile ||
        strlen(c->sluice_gateway_upstream_aws_region) >= sizeof u->region) {
        snprintf(err, elen, "sluice.gateway.upstream.aws.%s: too long",
                 strlen(c->sluice_gateway_upstream_aws_region) >= sizeof u->region ? "region"
                                                                                   : "profile");
        return false;
    }
    memcpy(u->profile, c->sluice_gateway_upstream_aws_profile,
           strlen(c->sluice_gateway_upstream_aws_profile) + 1);
    memcpy(u->imds, c->sluice_kms_aws_imds_endpoint, sizeof u->imds);
    if (c->sluice_gateway_upstream_aws_region[0])
        memcpy(u->region, c->sluice_gateway_upstream_aws_region,
               strlen(c->sluice_gateway_upstream_aws_region) + 1);
    else if (!sl_awscreds_region(u->profile[0] ? u->profile : NULL, u->region, sizeof u->region))
        u->region[0] = 0;
    if (!u->region[0]) {
        snprintf(err, elen,
                 "sluice.gateway.upstream.aws.region: required with AWS_MSK_IAM (or AWS_REGION, "
                 "or the profile's region)");
        return false;
    }
    return true;
}

static sl_upstream_cfg *cfg_new(const sl_config *c, bool mapped, char *err, size_t elen);

/* sluice.gateway.principal.mapping: one line per client principal,
 *   PRINCIPAL KEY=VALUE [KEY=VALUE...]
 * where each KEY is a sluice.gateway.upstream.* key without that prefix (sasl.mechanism,
 * sasl.username, sasl.password.file, sasl.oauthbearer.token.command, aws.profile, ...). The
 * principal's upstream identity is the gateway's configuration with those keys replaced; TLS
 * and the bootstrap list stay the gateway's. '#' starts a comment. Errors name FILE:LINE. */
static bool parse_mapping(sl_upstream_cfg *u, const sl_config *c, char *err, size_t elen) {
    const char *path = c->sluice_gateway_principal_mapping_file;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, elen, "sluice.gateway.principal.mapping: cannot read %s: %s", path,
                 strerror(errno));
        return false;
    }
    sl_config *mc = malloc(sizeof *mc);
    char line[4096];
    int lineno = 0;
    bool ok = mc != NULL;
    if (!mc) snprintf(err, elen, "out of memory");
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        char *h = strchr(line, '#');
        if (h) *h = 0;
        char *save = NULL, *principal = strtok_r(line, " \t\r\n", &save);
        if (!principal) continue;
        if (strlen(principal) >= sizeof u->maps[0].principal || !strchr(principal, ':')) {
            snprintf(err, elen, "sluice.gateway.principal.mapping: %s:%d: bad principal", path,
                     lineno);
            ok = false;
            break;
        }
        for (int i = 0; i < u->nmaps; i++)
            if (!strcmp(u->maps[i].principal, principal)) {
                snprintf(err, elen, "sluice.gateway.principal.mapping: %s:%d: %s mapped twice",
                         path, lineno, principal);
                ok = false;
            }
        *mc = *c;
        mc->sluice_gateway_principal_mapping_file[0] = 0;
        int nkv = 0;
        for (char *kv; ok && (kv = strtok_r(NULL, " \t\r\n", &save)) != NULL; nkv++) {
            char *eq = strchr(kv, '=');
            char key[256], e2[256];
            if (!eq || (size_t)(eq - kv) + sizeof "sluice.gateway.upstream." > sizeof key ||
                (strncmp(kv, "sasl.", 5) != 0 && strncmp(kv, "aws.", 4) != 0)) {
                snprintf(err, elen,
                         "sluice.gateway.principal.mapping: %s:%d: expected sasl.*=VALUE or "
                         "aws.*=VALUE",
                         path, lineno);
                ok = false;
                break;
            }
            snprintf(key, sizeof key, "sluice.gateway.upstream.%.*s", (int)(eq - kv), kv);
            if (sl_config_set(mc, key, eq + 1, e2, sizeof e2) != SL_OK) {
                snprintf(err, elen, "sluice.gateway.principal.mapping: %s:%d: %s", path, lineno,
                         e2);
                ok = false;
            }
        }
        if (!ok) break;
        if (!nkv) {
            snprintf(err, elen, "sluice.gateway.principal.mapping: %s:%d: no upstream identity",
                     path, lineno);
            ok = false;
            break;
        }
        up_map *nm = realloc(u->maps, (size_t)(u->nmaps + 1) * sizeof *nm);
        if (!nm) {
            snprintf(err, elen, "out of memory");
            ok = false;
            break;
        }
        u->maps = nm;
        char e3[512];
        sl_upstream_cfg *child = cfg_new(mc, true, e3, sizeof e3);
        if (!child) {
            snprintf(err, elen, "sluice.gateway.principal.mapping: %s:%d: %s", path, lineno, e3);
            ok = false;
            break;
        }
        snprintf(u->maps[u->nmaps].principal, sizeof u->maps[0].principal, "%s", principal);
        u->maps[u->nmaps++].cfg = child;
    }
    if (mc) {
        OPENSSL_cleanse(mc, sizeof *mc); /* it held the mapped passwords */
        free(mc);
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    return ok;
}

sl_upstream_cfg *sl_upstream_cfg_new(const sl_config *c, char *err, size_t elen) {
    return cfg_new(c, false, err, elen);
}

static sl_upstream_cfg *cfg_new(const sl_config *c, bool mapped, char *err, size_t elen) {
    sl_upstream_cfg *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, elen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    u->connect_timeout_ms = c->sluice_gateway_upstream_connect_timeout_ms;
    u->request_timeout_ms = c->sluice_gateway_upstream_request_timeout_ms;
    u->verify_host = c->sluice_gateway_upstream_ssl_verify_hostname;
    const char *proto = c->sluice_gateway_upstream_security_protocol;
    if (!strcmp(proto, "PLAINTEXT")) {
    } else if (!strcmp(proto, "SSL")) {
        u->tls = true;
    } else if (!strcmp(proto, "SASL_PLAINTEXT")) {
        u->sasl = true;
    } else if (!strcmp(proto, "SASL_SSL")) {
        u->tls = u->sasl = true;
    } else {
        snprintf(err, elen,
                 "sluice.gateway.upstream.security.protocol: invalid value \"%s\" (one of: "
                 "PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL)",
                 proto);
        goto fail;
    }
    if (!parse_bootstrap(u, c->sluice_gateway_upstream_bootstrap_servers, err, elen)) goto fail;
    if (u->tls && !build_ctx(u, c, err, elen)) goto fail;
    if (u->sasl && !parse_sasl(u, c, err, elen)) goto fail;
    if (!mapped && c->sluice_gateway_principal_mapping_file[0]) {
        if (!u->sasl) {
            snprintf(err, elen,
                     "sluice.gateway.principal.mapping: needs a SASL upstream "
                     "(sluice.gateway.upstream.security.protocol SASL_SSL or SASL_PLAINTEXT)");
            goto fail;
        }
        if (!parse_mapping(u, c, err, elen)) goto fail;
    }
    return u;
fail:
    ERR_clear_error();
    sl_upstream_cfg_free(u);
    return NULL;
}

void sl_upstream_cfg_free(sl_upstream_cfg *u) {
    if (!u) return;
    /* Workers still setting up a connection read the configuration: wait for them (bounded by
     * connect.timeout.ms, plus a token command). */
    pthread_mutex_lock(&u->mu);
    while (u->workers > 0) pthread_cond_wait(&u->cv, &u->mu);
    pthread_mutex_unlock(&u->mu);
    if (u->secrets) {
        OPENSSL_cleanse(u->secrets, u->secrets_cap);
        munlock(u->secrets, u->secrets_cap);
        munmap(u->secrets, u->secrets_cap);
    }
    for (int i = 0; i < u->nmaps; i++) sl_upstream_cfg_free(u->maps[i].cfg);
    free(u->maps);
    sl_awscreds_clear(&u->aws);
    SSL_CTX_free(u->ctx);
    free(u->boot);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cv);
    OPENSSL_cleanse(u, sizeof *u);
    free(u);
}

bool sl_upstream_cfg_bootstrap(const sl_upstream_cfg *u, int i, char *host, size_t hcap,
                               int *port) {
    if (!u || i < 0 || i >= u->nboot) return false;
    snprintf(host, hcap, "%s", u->boot[i].host);
    *port = u->boot[i].port;
    return true;
}

const sl_upstream_cfg *sl_upstream_cfg_for_principal(const sl_upstream_cfg *u,
                                                     const char *principal) {
    for (int i = 0; u && principal && i < u->nmaps; i++)
        if (!strcmp(u->maps[i].principal, principal)) return u->maps[i].cfg;
    return NULL;
}

/* ---------------------------------------------------------------- worker side ---- */

typedef struct up_attempt {
    atomic_int refs; /* the worker's and the loop's */
    int efd;
    sl_upstream_cfg *cfg;
    char host[256];
    int port;
    /* Results, written by the worker before it signals efd. */
    int fd;
    SSL *ssl;
    sl_up_status st;
    char why[256];
    int64_t lifetime_ms;
} up_attempt;

static void attempt_unref(up_attempt *a) {
    if (atomic_fetch_sub(&a->refs, 1) != 1) return;
    if (a->ssl) SSL_free(a->ssl);
    if (a->fd >= 0) close(a->fd);
    if (a->efd >= 0) close(a->efd);
    free(a);
}

typedef struct wio {
    int fd;
    SSL *ssl;
    int64_t deadline;
    int32_t corr;
} wio;

/* 0: done; -1: closed or failed; -2: timed out. */
static int wio_write(wio *w, const uint8_t *p, size_t n) {
    while (n) {
        if (w->ssl) {
            int r = sl_dial_ssl_io(w->ssl, w->fd, w->deadline, sl_dial_op_write, (void *)p,
                                   n > INT32_MAX ? INT32_MAX : (int)n);
            if (r <= 0) return r == -2 ? -2 : -1;
            p += r;
            n -= (size_t)r;
            continue;
        }
        ssize_t r = send(w->fd, p, n, MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!sl_dial_wait(w->fd, POLLOUT, w->deadline)) return -2;
        } else {
            return -1;
        }
    }
    return 0;
}

static int wio_read(wio *w, uint8_t *p, size_t n) {
    while (n) {
        if (w->ssl) {
            int r = sl_dial_ssl_io(w->ssl, w->fd, w->deadline, sl_dial_op_read, p,
                                   n > INT32_MAX ? INT32_MAX : (int)n);
            if (r <= 0) return r == -2 ? -2 : -1;
            p += r;
            n -= (size_t)r;
            continue;
        }
        ssize_t r = recv(w->fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!sl_dial_wait(w->fd, POLLIN, w->deadline)) return -2;
        } else {
            return -1;
        }
    }
    return 0;
}

/* One SASL request/response on the worker. `body` encodes the request body into w. The answer
 * (after the correlation id) is left in *resp (arena). The frame buffer is cleansed (it may hold
 * a password). */
typedef void (*enc_fn)(sl_wr *w, int16_t v, const void *m);

static sl_up_status sasl_call(wio *io, sl_arena *a, int16_t key, int16_t ver, enc_fn enc,
                              const void *m, size_t hint, sl_rd *resp, char *why, size_t wl) {
    sl_wr w;
    sl_wr_init(&w, a, hint + 256);
    sl_wr_i32(&w, 0);
    sl_req_header h = {key, ver, ++io->corr, sl_str_c(UP_CLIENT_ID)};
    sl_req_header_encode(&w, &h);
    enc(&w, ver, m);
    if (w.err) {
        snprintf(why, wl, "out of memory");
        return SL_UP_CONNECT;
    }
    sl_be32(w.buf, (uint32_t)(w.len - 4));
    int r = wio_write(io, w.buf, w.len);
    OPENSSL_cleanse(w.buf, w.cap);
    if (r) {
        snprintf(why, wl, "%s during SASL with the upstream",
                 r == -2 ? "connect.timeout.ms passed" : "connection lost");
        return SL_UP_CONNECT;
    }
    uint8_t hdr[4];
    if ((r = wio_read(io, hdr, 4)) == 0) {
        uint32_t n = sl_get_be32(hdr);
        if (n < 4 || n > UP_MAX_SASL_RESP) {
            snprintf(why, wl, "upstream sent a %u-byte frame during SASL", n);
            return SL_UP_PROTOCOL;
        }
        uint8_t *b = sl_arena_alloc(a, n);
        if (!b) {
            snprintf(why, wl, "out of memory");
            return SL_UP_CONNECT;
        }
        if ((r = wio_read(io, b, n)) == 0) {
            *resp = sl_rd_init(b, n);
            int32_t corr = 0;
            if (sl_resp_header_decode(resp, key, ver, &corr) || corr != io->corr) {
                snprintf(why, wl, "upstream answered SASL with a wrong correlation id");
                return SL_UP_PROTOCOL;
            }
            return SL_UP_OK;
        }
    }
    snprintf(why, wl, "%s during SASL with the upstream",
             r == -2 ? "connect.timeout.ms passed" : "connection closed by upstream");
    return SL_UP_CONNECT;
}

static void enc_handshake(sl_wr *w, int16_t v, const void *m) {
    sl_sasl_handshake_req_encode(w, v, m);
}
static void enc_auth(sl_wr *w, int16_t v, const void *m) {
    sl_sasl_authenticate_req_encode(w, v, m);
}

/* Printable copy of an upstream message for `why` (never a secret of ours). */
static void printable(char *out, size_t cap, const char *p, int32_t n) {
    size_t o = 0;
    for (int32_t i = 0; p && i < n && o + 1 < cap; i++)
        out[o++] = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' ? p[i] : '?';
    out[o] = 0;
}

#define SASL_AUTH_VERSION 1 /* SessionLifetimeMs (KIP-368); every Kafka since 2.0 */

/* One SaslAuthenticate round: sends `out`, returns the server's auth bytes in *in. */
static sl_up_status auth_round(wio *io, sl_arena *a, const uint8_t *out, size_t n, sl_bytes *in,
                               int64_t *lifetime, char *why, size_t wl) {
    sl_sasl_authenticate_req rq;
    sl_sasl_authenticate_req_init(&rq);
    rq.auth_bytes = (sl_bytes){out, (int32_t)n};
    sl_rd r;
    sl_up_status st = sasl_call(io, a, 36, SASL_AUTH_VERSION, enc_auth, &rq, n, &r, why, wl);
    if (st) return st;
    sl_sasl_authenticate_resp resp;
    sl_sasl_authenticate_resp_init(&resp);
    if (sl_sasl_authenticate_resp_decode(&r, a, SASL_AUTH_VERSION, &resp)) {
        snprintf(why, wl, "upstream sent a malformed SaslAuthenticate response");
        return SL_UP_PROTOCOL;
    }
    if (resp.error_code) {
        char msg[160];
        printable(msg, sizeof msg, resp.error_message.p, resp.error_message.len);
        snprintf(why, wl, "upstream refused authentication (error %d: %s)", resp.error_code,
                 msg[0] ? msg : "no message");
        return SL_UP_AUTH;
    }
    *in = resp.auth_bytes;
    if (resp.session_lifetime_ms > 0) *lifetime = resp.session_lifetime_ms;
    return SL_UP_OK;
}

/* A fresh token from the command (stdout's first line) into tok[cap]. */
static bool run_token_command(const char *cmd, char *tok, size_t cap, size_t *len, char *why,
                              size_t wl) {
    FILE *p = popen(cmd, "re");
    if (!p) {
        snprintf(why, wl, "cannot run the OAUTHBEARER token command: %s", strerror(errno));
        return false;
    }
    size_t n = fread(tok, 1, cap - 1, p);
    char sink[256];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    OPENSSL_cleanse(sink, sizeof sink);
    int rc = pclose(p);
    tok[n] = 0;
    size_t l = strcspn(tok, "\r\n");
    OPENSSL_cleanse(tok + l, n - l);
    *len = l;
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0 || l == 0) {
        snprintf(why, wl, "the OAUTHBEARER token command failed (%s)",
                 rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0 ? "no token printed"
                                                                   : "non-zero exit");
        return false;
    }
    return true;
}

static bool aws_creds(sl_upstream_cfg *c, sl_awscreds *out, char *why, size_t wl) {
    int64_t now = (int64_t)time(NULL);
    pthread_mutex_lock(&c->mu);
    if (!c->aws_valid || sl_awscreds_stale(&c->aws, now)) {
        sl_awscreds_cfg ac = {.profile = c->profile[0] ? c->profile : NULL,
                              .imds_endpoint = c->imds,
                              .region = c->region,
                              .timeout_ms = c->connect_timeout_ms};
        sl_awscreds fresh;
        char err[256];
        if (sl_awscreds_resolve(&ac, now, &fresh, err, sizeof err) == SL_OK) {
            c->aws = fresh;
            c->aws_valid = true;
        } else if (!c->aws_valid || !sl_awscreds_usable(&c->aws, now)) {
            sl_awscreds_clear(&fresh);
            pthread_mutex_unlock(&c->mu);
            /* Cut to fit: `why` is a one-line reason for the log and the trail. */
            snprintf(why, wl, "no AWS credentials for AWS_MSK_IAM: %.200s", err);
            return false;
        }
        sl_awscreds_clear(&fresh);
    }
    *out = c->aws;
    pthread_mutex_unlock(&c->mu);
    return true;
}

static sl_up_status sasl_exchange(up_attempt *at, wio *io, char *why, size_t wl) {
    sl_upstream_cfg *c = at->cfg;
    sl_arena *a = sl_arena_new(16384);
    if (!a) {
        snprintf(why, wl, "out of memory");
        return SL_UP_CONNECT;
    }
    sl_sasl_handshake_req hs;
    sl_sasl_handshake_req_init(&hs);
    hs.mechanism = sl_str_c(c->mech_name);
    sl_rd r;
    sl_up_status st = sasl_call(io, a, 17, 1, enc_handshake, &hs, 64, &r, why, wl);
    if (st) goto out;
    sl_sasl_handshake_resp hr;
    sl_sasl_handshake_resp_init(&hr);
    if (sl_sasl_handshake_resp_decode(&r, a, 1, &hr)) {
        snprintf(why, wl, "upstream sent a malformed SaslHandshake response");
        st = SL_UP_PROTOCOL;
        goto out;
    }
    if (hr.error_code) {
        char offers[160] = "";
        size_t o = 0;
        for (int32_t i = 0; i < hr.mechanisms_count && o + 2 < sizeof offers; i++) {
            if (i) offers[o++] = ' ';
            printable(offers + o, sizeof offers - o, hr.mechanisms[i].p, hr.mechanisms[i].len);
            o = strlen(offers);
        }
        snprintf(why, wl, "upstream refused SASL mechanism %s (error %d; it offers: %s)",
                 c->mech_name, hr.error_code, offers[0] ? offers : "none");
        st = SL_UP_AUTH;
        goto out;
    }
    sl_bytes in = {NULL, 0};
    int64_t life = 0;
    switch (c->mech) {
    case MECH_PLAIN: {
        uint8_t msg[SL_SCRAM_MAX_USER + SL_CFG_STR_MAX + 4];
        size_t n;
        if (sl_saslc_plain(c->user, c->password, c->pw_len, msg, sizeof msg, &n)) {
            snprintf(why, wl, "PLAIN credentials unusable");
            st = SL_UP_AUTH;
        } else {
            st = auth_round(io, a, msg, n, &in, &life, why, wl);
        }
        OPENSSL_cleanse(msg, sizeof msg);
        break;
    }
    case MECH_SCRAM256:
    case MECH_SCRAM512: {
        sl_saslc_scram s;
        char msg[SL_SASLC_MAX_MSG + 256];
        size_t n;
        int mech = c->mech == MECH_SCRAM256 ? SL_SCRAM_SHA_256 : SL_SCRAM_SHA_512;
        sl_err e = sl_saslc_scram_first(&s, mech, c->user, NULL, msg, sizeof msg, &n);
        if (e) {
            snprintf(why, wl, "cannot start SCRAM");
            st = SL_UP_AUTH;
        } else if (!(st = auth_round(io, a, (uint8_t *)msg, n, &in, &life, why, wl))) {
            e = sl_saslc_scram_final(&s, c->password, c->pw_len, in.p,
                                     in.len > 0 ? (size_t)in.len : 0, msg, sizeof msg, &n);
            if (e) {
                snprintf(why, wl, "upstream's SCRAM server-first message %s",
                         e == SL_EAUTH ? "was refused (nonce, iteration count or error)"
                                       : "was malformed");
                st = e == SL_EAUTH ? SL_UP_AUTH : SL_UP_PROTOCOL;
            } else if (!(st = auth_round(io, a, (uint8_t *)msg, n, &in, &life, why, wl))) {
                e = sl_saslc_scram_verify(&s, in.p, in.len > 0 ? (size_t)in.len : 0);
                if (e) {
                    snprintf(why, wl, "upstream's SCRAM server signature %s",
                             e == SL_EAUTH ? "did not verify" : "was malformed");
                    st = e == SL_EAUTH ? SL_UP_AUTH : SL_UP_PROTOCOL;
                }
            }
        }
        sl_saslc_scram_clear(&s);
        OPENSSL_cleanse(msg, sizeof msg);
        break;
    }
    case MECH_OAUTH: {
        char tok[UP_MAX_TOKEN];
        uint8_t msg[UP_MAX_TOKEN + 64];
        size_t tl = 0, n = 0;
        bool ok = true;
        if (c->token) {
            memcpy(tok, c->token, c->token_len);
            tl = c->token_len;
        } else {
            ok = run_token_command(c->token_cmd, tok, sizeof tok, &tl, why, wl);
        }
        if (ok && sl_saslc_oauthbearer(tok, tl, msg, sizeof msg, &n)) {
            snprintf(why, wl, "the OAUTHBEARER token is not a bearer token");
            ok = false;
        }
        if (!ok) {
            st = SL_UP_AUTH;
        } else if (!(st = auth_round(io, a, msg, n, &in, &life, why, wl)) && in.len > 0) {
            /* An error challenge (RFC 7628 §3.2.3): acknowledge; the failure follows. */
            st = auth_round(io, a, (const uint8_t *)"\x01", 1, &in, &life, why, wl);
            if (!st) {
                snprintf(why, wl, "upstream refused the OAUTHBEARER token");
                st = SL_UP_AUTH;
            }
        }
        OPENSSL_cleanse(tok, sizeof tok);
        OPENSSL_cleanse(msg, sizeof msg);
        break;
    }
    case MECH_MSKIAM: {
        sl_awscreds ac;
        char *payload = NULL;
        size_t pl = 0;
        if (!aws_creds(c, &ac, why, wl)) {
            st = SL_UP_AUTH;
            break;
        }
        sl_sigv4_creds sc = {ac.akid, ac.secret, ac.token};
        sl_err e = sl_msk_iam_payload(&sc, c->region, at->host, (int64_t)time(NULL), UP_CLIENT_ID,
                                      &payload, &pl);
        sl_awscreds_clear(&ac);
        if (e) {
            snprintf(why, wl, "cannot build the AWS_MSK_IAM payload");
            st = SL_UP_AUTH;
            break;
        }
        st = auth_round(io, a, (const uint8_t *)payload, pl, &in, &life, why, wl);
        OPENSSL_cleanse(payload, pl);
        free(payload);
        break;
    }
    default:
        st = SL_UP_AUTH;
    }
    at->lifetime_ms = life;
out:
    sl_arena_free(a);
    return st;
}

static bool is_ip(const char *h) {
    struct in6_addr a;
    return inet_pton(AF_INET, h, &a) == 1 || inet_pton(AF_INET6, h, &a) == 1;
}

static void run_setup(up_attempt *at) {
    sl_upstream_cfg *c = at->cfg;
    int64_t deadline = sl_mono_ms() + c->connect_timeout_ms;
    char port[16];
    snprintf(port, sizeof port, "%d", at->port);
    int fd = sl_dial_tcp(at->host, port, deadline, at->why, sizeof at->why);
    if (fd < 0) {
        at->st = SL_UP_CONNECT;
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = NULL;
    if (c->tls) {
        ssl = SSL_new(c->ctx);
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
            snprintf(at->why, sizeof at->why, "cannot create a TLS session");
            goto fail_connect;
        }
        bool ip = is_ip(at->host);
        if (!ip) SSL_set_tlsext_host_name(ssl, at->host);
        if (c->verify_host) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, at->host)
                    : X509_VERIFY_PARAM_set1_host(vp, at->host, 0)) != 1) {
                snprintf(at->why, sizeof at->why, "cannot set the expected TLS name");
                goto fail_connect;
            }
        }
        int r = sl_dial_ssl_io(ssl, fd, deadline, sl_dial_op_connect, NULL, 0);
        if (r <= 0) {
            long vr = SSL_get_verify_result(ssl);
            char eb[200];
            snprintf(at->why, sizeof at->why, "TLS handshake with %.100s:%d failed: %.120s",
                     at->host, at->port,
                     r == -2           ? "connect.timeout.ms passed"
                     : vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                                       : ssl_err_text(eb, sizeof eb));
            goto fail_connect;
        }
    }
    if (c->sasl) {
        wio io = {fd, ssl, deadline, 0};
        at->st = sasl_exchange(at, &io, at->why, sizeof at->why);
        if (at->st) goto fail;
    }
    ERR_clear_error();
    at->fd = fd;
    at->ssl = ssl;
    at->st = SL_UP_OK;
    return;
fail_connect:
    at->st = SL_UP_CONNECT;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
}

static void *worker_main(void *arg) {
    up_attempt *at = arg;
    sl_upstream_cfg *c = at->cfg;
    run_setup(at);
    ERR_clear_error();
    atomic_thread_fence(memory_order_release); /* the results before the signal */
    uint64_t one = 1;
    ssize_t w;
    do w = write(at->efd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    pthread_mutex_lock(&c->mu);
    if (--c->workers == 0) pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    attempt_unref(at);
    return NULL;
}

/* ---------------------------------------------------------------- loop side ---- */

typedef struct up_req {
    struct up_req *next;
    sl_upconn_fn fn;
    void *ctx;
    int32_t corr;
    int64_t deadline;
    uint8_t *frame; /* size prefix + request; NULL once written */
    size_t len;
    sl_arena *keep;  /* where the answer goes (sl_upconn_send_kept); NULL: read in place */
    sl_up_status st; /* in `failed` */
    bool unsent;     /* its out segment still borrows its frame */
} up_req;

/* Request bytes the socket has not taken yet, in order: the size/key/version/correlation
 * header (hdr, hlen 12) then the rest of the frame (body), `off` bytes of both written. A
 * segment borrows a kept request's frame (r set), or owns a copy of what was left (owned). */
typedef struct up_seg {
    struct up_seg *next;
    up_req *r;
    uint8_t hdr[12];
    size_t hlen;
    const uint8_t *body;
    size_t blen, off;
    uint8_t *owned;
    bool noreply; /* its bytes count in `unsent_noreply` (no answer will count them) */
} up_seg;

typedef struct req_list {
    up_req *head, *tail;
} req_list;

static void rl_push(req_list *l, up_req *r) {
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static up_req *rl_pop(req_list *l) {
    up_req *r = l->head;
    if (r) {
        l->head = r->next;
        if (!l->head) l->tail = NULL;
    }
    return r;
}

enum { ST_CONNECTING, ST_READY, ST_DEAD };
enum { EV_NONE, EV_CONNECT_FAILED, EV_LOST };

struct sl_upconn {
    int refs;
    sl_loop *loop;
    sl_upstream_cfg *cfg;
    const sl_upconn_events *ev;
    int32_t node;
    char host[256];
    int port;
    char addr[300];
    int state;
    bool reauth;     /* re-authentication due or running */
    bool ever_ready; /* the first attempt succeeded */
    up_attempt *at;
    sl_transport *t;
    uint32_t watched;
    uint8_t *rbuf;
    size_t rlen, rcap;
    up_seg *out, *out_tail;
    size_t unsent_noreply; /* bytes in `out` of requests that expect no answer */
    size_t awaiting;       /* bytes of the requests in `inflight` */
    size_t queued;         /* bytes of the requests in `waitq` */
    size_t below;          /* `below_fn` runs once the backlog is at most this */
    void (*below_fn)(void *ctx);
    void *below_ctx;
    req_list waitq, inflight, failed;
    int ninflight, nwaiting; /* with a callback: on the wire, and queued */
    int32_t next_corr;
    sl_timer *req_timer, *reauth_timer;
    int64_t lifetime_ms;
    sl_up_status dead_st;
    sl_post post;
    sl_upgate *gate;  /* NULL: answers are read without asking */
    size_t admitted;  /* the gate admitted the answer at the start of rbuf, this large */
    size_t gate_size; /* while waiting: the size of the answer it waits to read */
    bool gate_wait;   /* refused: not reading until the gate admits gate_size */
    sl_upconn *gnext; /* in the gate's waiting list */
    sl_post resume;   /* posted by the gate once it admits a waiting connection */
    int pending_ev;   /* EV_*: reported from the posted callback */
    sl_up_status pending_ev_st;
    char pending_why[256];
};

static void up_fail(sl_upconn *u, sl_up_status st, const char *why, int event);
static void gate_release(sl_upconn *u);
static void gate_unref(sl_upgate *g);
static void pump(sl_upconn *u);
static void on_io(void *ctx, uint32_t events);
static void on_attempt(void *ctx, uint32_t events);

void sl_upconn_ref(sl_upconn *u) { u->refs++; }

/* Runs `below_fn` once the backlog has fallen to its mark. */
static void check_below(sl_upconn *u) {
    if (!u->below_fn || sl_upconn_backlog(u) > u->below) return;
    void (*fn)(void *) = u->below_fn;
    u->below_fn = NULL;
    fn(u->below_ctx);
}

static void out_pop(sl_upconn *u) {
    up_seg *s = u->out;
    u->out = s->next;
    if (!u->out) u->out_tail = NULL;
    if (s->r) s->r->unsent = false;
    free(s->owned);
    free(s);
}

static void teardown_io(sl_upconn *u) {
    if (u->t) {
        sl_loop_unwatch(u->loop, u->t->fd);
        u->t->vt->close(u->t);
        u->t = NULL;
        u->watched = 0;
    }
    if (u->at) {
        sl_loop_unwatch(u->loop, u->at->efd);
        attempt_unref(u->at); /* the worker finishes on its own */
        u->at = NULL;
    }
    if (u->req_timer) sl_timer_cancel(u->loop, u->req_timer);
    if (u->reauth_timer) sl_timer_cancel(u->loop, u->reauth_timer);
    u->req_timer = u->reauth_timer = NULL;
    u->rlen = 0;
    gate_release(u);
    while (u->out) out_pop(u);
    u->unsent_noreply = 0;
}

void sl_upconn_unref(sl_upconn *u) {
    if (!u || --u->refs > 0) return;
    teardown_io(u);
    sl_loop_unpost(u->loop, &u->post);
    /* Only fn-less requests can be left (each callback holds a reference). */
    up_req *r;
    while ((r = rl_pop(&u->waitq))) {
        free(r->frame);
        free(r);
    }
    sl_loop_unpost(u->loop, &u->resume);
    gate_unref(u->gate);
    free(u->rbuf);
    free(u);
}

/* Runs what a failure left: the event, then every callback with its status. */
static void run_posted(void *ctx) {
    sl_upconn *u = ctx;
    u->refs++;
    if (u->pending_ev && u->ev) {
        int ev = u->pending_ev;
        u->pending_ev = EV_NONE;
        if (ev == EV_CONNECT_FAILED && u->ev->connected)
            u->ev->connected(u->ev->ctx, u->node, u->addr, false, u->pending_ev_st, u->pending_why);
        else if (ev == EV_LOST && u->ev->lost)
            u->ev->lost(u->ev->ctx, u->node, u->addr, u->pending_why);
    }
    up_req *r;
    while ((r = rl_pop(&u->failed))) {
        sl_upconn_fn fn = r->fn;
        void *c = r->ctx;
        sl_up_status st = r->st;
        free(r->frame);
        free(r);
        fn(c, st, NULL, 0);
        sl_upconn_unref(u);
    }
    check_below(u); /* the failure dropped the backlog */
    sl_upconn_unref(u);
}

static void fail_req(sl_upconn *u, up_req *r, sl_up_status st) {
    if (!r->fn) {
        free(r->frame);
        free(r);
        return;
    }
    r->st = st;
    rl_push(&u->failed, r);
}

static void up_fail(sl_upconn *u, sl_up_status st, const char *why, int event) {
    if (u->state == ST_DEAD) return;
    u->state = ST_DEAD;
    u->dead_st = st;
    teardown_io(u);
    up_req *r;
    while ((r = rl_pop(&u->inflight))) fail_req(u, r, st);
    u->ninflight = 0;
    u->awaiting = 0;
    while ((r = rl_pop(&u->waitq))) fail_req(u, r, st);
    u->nwaiting = 0;
    u->queued = 0;
    if (event != EV_NONE) {
        u->pending_ev = event;
        u->pending_ev_st = st;
        snprintf(u->pending_why, sizeof u->pending_why, "%s", why);
        SL_WARN("gateway",
                event == EV_LOST ? "upstream connection lost" : "upstream connection failed",
                "node=%d addr=%s reason=\"%s\"", (int)u->node, u->addr, why);
    }
    sl_loop_post(u->loop, &u->post);
}

static bool start_attempt(sl_upconn *u) {
    up_attempt *at = calloc(1, sizeof *at);
    if (!at) return false;
    atomic_init(&at->refs, 2);
    at->fd = -1;
    at->cfg = u->cfg;
    snprintf(at->host, sizeof at->host, "%s", u->host);
    at->port = u->port;
    at->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (at->efd < 0) {
        free(at);
        return false;
    }
    u->at = at;
    if (sl_loop_watch(u->loop, at->efd, SL_EV_READ, on_attempt, u) != SL_OK) {
        u->at = NULL;
        close(at->efd);
        free(at);
        return false;
    }
    pthread_mutex_lock(&u->cfg->mu);
    u->cfg->workers++;
    pthread_mutex_unlock(&u->cfg->mu);
    pthread_attr_t pa;
    pthread_t th;
    pthread_attr_init(&pa);
    pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &pa, worker_main, at);
    pthread_attr_destroy(&pa);
    if (rc) {
        pthread_mutex_lock(&u->cfg->mu);
        if (--u->cfg->workers == 0) pthread_cond_broadcast(&u->cfg->cv);
        pthread_mutex_unlock(&u->cfg->mu);
        sl_loop_unwatch(u->loop, at->efd);
        u->at = NULL;
        close(at->efd);
        free(at);
        return false;
    }
    return true;
}

static void update_watch(sl_upconn *u) {
    if (!u->t) return;
    uint32_t want = SL_EV_READ | (u->out ? SL_EV_WRITE : 0) | u->t->vt->wants(u->t);
    /* Waiting for memory: the answer stays in the kernel, and a readable socket nobody reads
     * would wake the loop without end (also when TLS asks to read to write: writes wait too). */
    if (u->gate_wait) want &= ~(uint32_t)SL_EV_READ;
    if (want != u->watched && sl_loop_modify(u->loop, u->t->fd, want) == SL_OK) u->watched = want;
}

static void on_reauth_timer(void *ctx);

static void maybe_reauth(sl_upconn *u) {
    if (!u->reauth || u->state != ST_READY || u->ninflight || u->out) return;
    /* Nothing in flight or unwritten: replace the connection. */
    SL_INFO("gateway", "re-authenticating upstream connection", "node=%d addr=%s", (int)u->node,
            u->addr);
    sl_loop_unwatch(u->loop, u->t->fd);
    u->t->vt->close(u->t);
    u->t = NULL;
    u->watched = 0;
    u->rlen = 0;
    u->state = ST_CONNECTING;
    if (!start_attempt(u)) up_fail(u, SL_UP_CONNECT, "cannot start a worker thread", EV_LOST);
}

static void on_reauth_timer(void *ctx) {
    sl_upconn *u = ctx;
    u->reauth_timer = NULL;
    u->reauth = true;
    maybe_reauth(u);
}

static void on_attempt(void *ctx, uint32_t events) {
    sl_upconn *u = ctx;
    up_attempt *at = u->at;
    uint64_t v;
    if (read(at->efd, &v, sizeof v) != (ssize_t)sizeof v) return; /* spurious */
    atomic_thread_fence(memory_order_acquire);
    sl_loop_unwatch(u->loop, at->efd);
    u->at = NULL;
    sl_up_status st = at->st;
    char why[256];
    snprintf(why, sizeof why, "%s", at->why);
    int fd = at->fd;
    SSL *ssl = at->ssl;
    at->fd = -1;
    at->ssl = NULL;
    int64_t life = at->lifetime_ms;
    attempt_unref(at);
    bool first = !u->ever_ready;
    if (st != SL_UP_OK) {
        char w2[300];
        snprintf(w2, sizeof w2, "%s%s", first ? "" : "re-authentication failed: ", why);
        up_fail(u, st, w2, first ? EV_CONNECT_FAILED : EV_LOST);
        return;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    u->t = ssl ? sl_tls_client_transport(ssl, fd) : sl_transport_tcp_new(fd);
    if (!u->t || sl_loop_watch(u->loop, fd, SL_EV_READ, on_io, u) != SL_OK) {
        up_fail(u, SL_UP_CONNECT, "out of memory", first ? EV_CONNECT_FAILED : EV_LOST);
        return;
    }
    u->watched = SL_EV_READ;
    u->state = ST_READY;
    u->reauth = false;
    u->ever_ready = true;
    u->lifetime_ms = life;
    if (life > 0) {
        int64_t d = life * UP_REAUTH_PCT / 100;
        u->reauth_timer = sl_timer_start(u->loop, d > 0 ? d : 1, on_reauth_timer, u);
    }
    if (first) {
        SL_INFO("gateway", "upstream connected", "node=%d addr=%s tls=%s sasl=%s lifetime_ms=%lld",
                (int)u->node, u->addr, u->cfg->tls ? "true" : "false",
                u->cfg->sasl ? u->cfg->mech_name : "none", (long long)life);
        if (u->ev && u->ev->connected) {
            u->refs++;
            u->ev->connected(u->ev->ctx, u->node, u->addr, true, SL_UP_OK, "");
            bool gone = u->state != ST_READY;
            sl_upconn_unref(u);
            if (gone) return;
        }
    }
    pump(u);
}

/* ---- memory for answers (sl_upgate) ---- */

#define UPGATE_RETRY_MS 5

struct sl_upgate {
    int refs;
    sl_loop *loop;
    size_t budget;
    size_t (*held)(void *ctx); /* NULL once sl_upgate_free ran: everything is admitted */
    void *ctx;
    size_t reading;
    sl_upconn *head, *tail; /* waiting, in the order refused; each holds a reference */
    int waiting;
    uint64_t refusals;
    sl_timer *timer;
};

sl_upgate *sl_upgate_new(sl_loop *loop, size_t budget, size_t (*held)(void *ctx), void *ctx) {
    sl_upgate *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    *g = (sl_upgate){.refs = 1, .loop = loop, .budget = budget, .held = held, .ctx = ctx};
    return g;
}

static void gate_unref(sl_upgate *g) {
    if (!g || --g->refs > 0) return;
    if (g->timer) sl_timer_cancel(g->loop, g->timer);
    free(g);
}

static sl_upconn *gate_pop(sl_upgate *g) {
    sl_upconn *u = g->head;
    g->head = u->gnext;
    if (!g->head) g->tail = NULL;
    u->gnext = NULL;
    u->gate_wait = false;
    g->waiting--;
    return u;
}

void sl_upgate_free(sl_upgate *g) {
    if (!g) return;
    g->held = NULL;
    while (g->head) sl_upconn_unref(gate_pop(g)); /* their owners are closing them */
    gate_unref(g);
}

size_t sl_upgate_reading(const sl_upgate *g) { return g->reading; }
int sl_upgate_waiting(const sl_upgate *g) { return g->waiting; }
uint64_t sl_upgate_refusals(const sl_upgate *g) { return g->refusals; }

void sl_upconn_set_gate(sl_upconn *u, sl_upgate *g) {
    if (g) g->refs++;
    gate_unref(u->gate);
    u->gate = g;
}

/* True when an answer of `size` bytes fits what the process holds (or nothing is held). */
static bool gate_fits(const sl_upgate *g, size_t size) {
    if (!g->held) return true;
    size_t held = g->held(g->ctx) + g->reading;
    return held == 0 || (held <= g->budget && size <= g->budget - held);
}

static void gate_take(sl_upconn *u, size_t size) {
    u->admitted = size;
    u->gate->reading += size;
}

static void gate_release(sl_upconn *u) {
    if (!u->admitted) return;
    u->gate->reading -= u->admitted;
    u->admitted = 0;
}

static void gate_retry(void *ctx);

/* Admits the answer `size` bytes long at the start of u's buffer, or puts u at the end of the
 * waiting list (connections already waiting go first). */
static bool gate_admit(sl_upconn *u, size_t size) {
    sl_upgate *g = u->gate;
    if (!g->head && gate_fits(g, size)) {
        gate_take(u, size);
        return true;
    }
    u->gate_wait = true;
    u->gate_size = size;
    u->refs++;
    if (g->tail)
        g->tail->gnext = u;
    else
        g->head = u;
    g->tail = u;
    g->waiting++;
    g->refusals++;
    if (!g->timer) g->timer = sl_timer_start(g->loop, UPGATE_RETRY_MS, gate_retry, g);
    return false; /* on_io, the only reader, stops watching for reads as it returns */
}

/* Admits waiting connections in order while their answers fit; each is then read from the loop
 * (its resume post carries the list's reference). */
static void gate_retry(void *ctx) {
    sl_upgate *g = ctx;
    g->timer = NULL;
    while (g->head) {
        sl_upconn *u = g->head;
        if (u->state == ST_READY && u->t && !gate_fits(g, u->gate_size)) break;
        gate_pop(g);
        if (u->state != ST_READY || !u->t) { /* failed meanwhile: nothing to read */
            sl_upconn_unref(u);
            continue;
        }
        gate_take(u, u->gate_size);
        sl_loop_post(u->loop, &u->resume);
    }
    if (g->head) g->timer = sl_timer_start(g->loop, UPGATE_RETRY_MS, gate_retry, g);
}

static void on_resume(void *ctx) {
    sl_upconn *u = ctx;
    if (u->state == ST_READY && u->t) on_io(u, SL_EV_READ);
    sl_upconn_unref(u);
}

sl_upconn *sl_upconn_new(sl_loop *loop, const sl_upstream_cfg *cfg, const sl_upconn_events *ev,
                         int32_t node, const char *host, int port) {
    sl_upconn *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->refs = 1;
    u->loop = loop;
    u->cfg = (sl_upstream_cfg *)cfg; /* only its worker counter and credential cache change */
    u->ev = ev;
    u->node = node;
    snprintf(u->host, sizeof u->host, "%s", host);
    u->port = port;
    snprintf(u->addr, sizeof u->addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    u->post.cb = run_posted;
    u->post.ctx = u;
    u->resume.cb = on_resume;
    u->resume.ctx = u;
    u->state = ST_CONNECTING;
    if (!start_attempt(u))
        up_fail(u, SL_UP_CONNECT, "cannot start a worker thread", EV_CONNECT_FAILED);
    return u;
}

static void on_req_timer(void *ctx) {
    sl_upconn *u = ctx;
    u->req_timer = NULL;
    if (u->state != ST_READY || !u->inflight.head) return;
    if (u->gate_wait) { /* answered: its bytes wait in the kernel for memory (sl_upgate) */
        u->req_timer = sl_timer_start(u->loop, 1000, on_req_timer, u);
        return;
    }
    int64_t left = u->inflight.head->deadline - sl_loop_now(u->loop);
    if (left <= 0) {
        up_fail(u, SL_UP_TIMEOUT, "timeout (no answer within request.timeout.ms)", EV_LOST);
        return;
    }
    u->req_timer = sl_timer_start(u->loop, left, on_req_timer, u);
}

#define UP_OUT_IOV 16

/* Marks n more bytes of `out` written. */
static void out_advance(sl_upconn *u, size_t n) {
    while (n) {
        up_seg *s = u->out;
        size_t left = s->hlen + s->blen - s->off, k = n < left ? n : left;
        if (s->noreply) u->unsent_noreply -= k;
        n -= k;
        if (k < left) {
            s->off += k;
            return;
        }
        out_pop(u);
    }
}

/* Writes what `out` holds until the socket is full. */
static void flush(sl_upconn *u) {
    while (u->t && u->out) {
        struct iovec iov[UP_OUT_IOV];
        int n = 0;
        for (up_seg *s = u->out; s && n <= UP_OUT_IOV - 2; s = s->next) {
            size_t off = s->off;
            if (off < s->hlen) {
                iov[n++] = (struct iovec){s->hdr + off, s->hlen - off};
                off = 0;
            } else {
                off -= s->hlen;
            }
            iov[n++] = (struct iovec){(uint8_t *)s->body + off, s->blen - off};
        }
        ssize_t w = u->t->vt->writev(u->t, iov, n);
        if (w > 0) {
            out_advance(u, (size_t)w);
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        char why[160];
        snprintf(why, sizeof why, "write to upstream failed: %s", strerror(w < 0 ? errno : EPIPE));
        up_fail(u, SL_UP_CONNECT, why, EV_LOST);
        return;
    }
    update_watch(u);
    check_below(u);
}

/* Queues what the socket did not take of r (`done` of its header and body written): borrowed
 * from the frame when `borrow` (r->unsent until written), else copied. False when out of
 * memory. */
static bool out_queue(sl_upconn *u, up_req *r, bool borrow, const uint8_t hdr[12],
                      const uint8_t *body, size_t blen, size_t done) {
    up_seg *s = calloc(1, sizeof *s);
    if (!s) return false;
    if (borrow) {
        memcpy(s->hdr, hdr, 12);
        s->hlen = 12;
        s->body = body;
        s->blen = blen;
        s->off = done;
        s->r = r;
        r->unsent = true;
    } else {
        size_t rest = 12 + blen - done, h = done < 12 ? 12 - done : 0;
        if (!(s->owned = malloc(rest))) { /* rest > 0: the request was not all written */
            free(s);
            return false;
        }
        memcpy(s->owned, hdr + 12 - h, h);
        memcpy(s->owned + h, body + (blen - (rest - h)), rest - h);
        s->body = s->owned;
        s->blen = rest;
    }
    if ((s->noreply = !r->fn)) u->unsent_noreply += 12 + blen - done;
    if (u->out_tail)
        u->out_tail->next = s;
    else
        u->out = s;
    u->out_tail = s;
    return true;
}

/* Sends one request: its size prefix, then `frame` (the request from its header on) with the
 * correlation id replaced by the connection's next one (kept in r->corr). With nothing queued
 * ahead it goes to the socket straight from `frame` (a produce request is often a megabyte);
 * what the socket does not take is queued, borrowing `frame` when `borrow`. A write error is
 * left for flush() to report. False when out of memory; the caller fails the connection. */
static bool put_frame(sl_upconn *u, up_req *r, const uint8_t *frame, size_t len, bool borrow) {
    u->next_corr = u->next_corr == INT32_MAX ? 1 : u->next_corr + 1;
    r->corr = u->next_corr;
    uint8_t hdr[12]; /* size(4) key(2) version(2) corr(4) */
    sl_be32(hdr, (uint32_t)len);
    memcpy(hdr + 4, frame, 4);
    sl_be32(hdr + 8, (uint32_t)r->corr);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(uint8_t *)frame + 8, len - 8}};
    size_t done = 0;
    if (u->t && !u->out) {
        ssize_t n = u->t->vt->writev(u->t, iov, 2);
        if (n > 0) done = (size_t)n;
    }
    return done == len + 4 || out_queue(u, r, borrow, hdr, frame + 8, len - 8, done);
}

/* r goes out (or into `out`), then waits for its answer (or, without a callback, is done).
 * `borrow`: `frame` outlives r's callback (sl_upconn_send_kept). False when out of memory: r is
 * failed and so is the connection. */
static bool send_now(sl_upconn *u, up_req *r, const uint8_t *frame, size_t len, bool borrow) {
    if (!put_frame(u, r, frame, len, borrow && r->fn)) {
        fail_req(u, r, SL_UP_CONNECT);
        up_fail(u, SL_UP_CONNECT, "out of memory", EV_LOST);
        return false;
    }
    if (!r->fn) {
        free(r);
        return true;
    }
    r->deadline = sl_loop_now(u->loop) + u->cfg->request_timeout_ms;
    r->len = len + 4;
    rl_push(&u->inflight, r);
    u->ninflight++;
    u->awaiting += r->len;
    return true;
}

/* After requests went out: the request timer runs while answers are awaited. */
static void arm_and_flush(sl_upconn *u) {
    if (u->inflight.head && !u->req_timer)
        u->req_timer = sl_timer_start(u->loop, u->cfg->request_timeout_ms, on_req_timer, u);
    flush(u);
}

static void pump(sl_upconn *u) {
    if (u->state != ST_READY || u->reauth) return;
    up_req *r;
    while ((r = rl_pop(&u->waitq))) {
        if (r->fn) u->nwaiting--;
        u->queued -= r->len;
        uint8_t *f = r->frame;
        r->frame = NULL;
        bool ok = send_now(u, r, f + 4, r->len - 4, false);
        free(f);
        if (!ok) return;
    }
    arm_and_flush(u);
}

void sl_upconn_send(sl_upconn *u, const uint8_t *frame, size_t len, sl_upconn_fn fn, void *ctx) {
    sl_upconn_send_kept(u, frame, len, NULL, fn, ctx);
}

void sl_upconn_send_kept(sl_upconn *u, const uint8_t *frame, size_t len, sl_arena *keep,
                         sl_upconn_fn fn, void *ctx) {
    up_req *r = calloc(1, sizeof *r);
    if (!r) {
        /* Out of memory: the request cannot even be queued; the connection is unusable. */
        up_fail(u, SL_UP_CONNECT, "out of memory", EV_LOST);
        return;
    }
    r->keep = keep;
    r->fn = fn;
    r->ctx = ctx;
    if (fn) u->refs++;
    if (u->state == ST_DEAD || len < 8 || len > UP_MAX_FRAME) {
        fail_req(u, r, u->state == ST_DEAD ? u->dead_st : SL_UP_PROTOCOL);
        if (fn) sl_loop_post(u->loop, &u->post);
        return;
    }
    if (u->state == ST_READY && !u->reauth && !u->waitq.head) {
        /* Nothing queued ahead of it: straight to the socket, without the copy a queued
         * request needs (a produce request is often a megabyte). */
        if (send_now(u, r, frame, len, keep != NULL)) arm_and_flush(u);
        return;
    }
    r->frame = malloc(len + 4);
    if (!r->frame) {
        fail_req(u, r, SL_UP_CONNECT);
        up_fail(u, SL_UP_CONNECT, "out of memory", EV_LOST);
        return;
    }
    sl_be32(r->frame, (uint32_t)len);
    memcpy(r->frame + 4, frame, len);
    r->len = len + 4;
    rl_push(&u->waitq, r);
    if (fn) u->nwaiting++;
    u->queued += r->len;
    pump(u);
}

/* Answers at least this large, found at the start of rbuf, are handed to the request's arena
 * with the buffer they were read into instead of being copied out of it. */
#define UP_ADOPT_MIN (64 * 1024)

/* The body of the complete answer at rbuf[off..] (size prefix `size`), in `keep`: when the
 * answer is large and starts the buffer, the buffer itself is adopted and rbuf becomes a new one
 * holding what followed the answer (*adopted); else the body is copied. The new buffer is sized
 * for an answer like this one, not like the largest so far: the request holds the old one until
 * its answer is written, and a buffer grown once for a big answer would otherwise be held, whole,
 * by every later one. NULL when out of memory. */
static const uint8_t *kept_body(sl_upconn *u, sl_arena *keep, size_t off, uint32_t size,
                                bool *adopted) {
    *adopted = false;
    size_t end = off + 4 + (size_t)size, rest = u->rlen - end;
    if (off == 0 && size >= UP_ADOPT_MIN) {
        size_t cap = UP_ADOPT_MIN;
        while (cap < (size_t)size + 4 || cap < rest) cap *= 2;
        uint8_t *nb = malloc(cap);
        if (nb) {
            uint8_t *old = u->rbuf;
            if (sl_arena_adopt(keep, old, u->rcap)) {
                memcpy(nb, old + end, rest);
                u->rbuf = nb;
                u->rcap = cap;
                u->rlen = rest;
                *adopted = true;
                return old + 8;
            }
            free(nb);
        }
    }
    return sl_arena_dup(keep, u->rbuf + off + 8, (size_t)size - 4);
}

/* Dispatches every complete answer in rbuf. False when the connection failed or changed. */
static bool dispatch(sl_upconn *u) {
    size_t off = 0;
    sl_transport *t = u->t;
    while (u->rlen - off >= 4) {
        uint32_t size = sl_get_be32(u->rbuf + off);
        if (size < 4 || size > UP_MAX_FRAME) {
            char why[120];
            snprintf(why, sizeof why, "upstream sent a frame of %u bytes", size);
            up_fail(u, SL_UP_PROTOCOL, why, EV_LOST);
            return false;
        }
        if (u->rlen - off - 4 < size) break;
        int32_t corr = (int32_t)sl_get_be32(u->rbuf + off + 4);
        up_req *h = u->inflight.head;
        if (h && h->corr == corr && h->unsent) {
            /* Answered before the whole request was written: not Kafka, and its callback
             * would free the frame the rest is still being sent from. */
            up_fail(u, SL_UP_PROTOCOL, "upstream answered a request before receiving all of it",
                    EV_LOST);
            return false;
        }
        if (!h || h->corr != corr) {
            char why[160];
            snprintf(why, sizeof why,
                     "upstream answered correlation id %d, expected %d (protocol error)", corr,
                     h ? h->corr : -1);
            up_fail(u, SL_UP_PROTOCOL, why, EV_LOST);
            return false;
        }
        const uint8_t *body = u->rbuf + off + 8;
        size_t next = off + 4 + (size_t)size;
        if (h->keep) {
            bool adopted;
            body = kept_body(u, h->keep, off, size, &adopted);
            if (!body) {
                up_fail(u, SL_UP_CONNECT, "out of memory", EV_LOST);
                return false;
            }
            if (adopted) next = 0; /* what followed the answer now starts the new buffer */
        }
        if (off == 0) gate_release(u); /* the admitted answer is the one rbuf started with */
        rl_pop(&u->inflight);
        u->ninflight--;
        u->awaiting -= h->len;
        h->fn(h->ctx, SL_UP_OK, body, size - 4);
        free(h);
        sl_upconn_unref(u); /* the caller of dispatch holds another reference */
        off = next;
        if (u->state != ST_READY || u->t != t) return false;
    }
    if (off) {
        memmove(u->rbuf, u->rbuf + off, u->rlen - off);
        u->rlen -= off;
    }
    check_below(u);
    return true;
}

static void do_read(sl_upconn *u) {
    for (;;) {
        if (u->gate_wait) return;
        size_t need = 16384, frame = 0; /* frame: the incomplete answer rbuf starts with */
        if (u->rlen >= 4) {
            uint32_t size = sl_get_be32(u->rbuf);
            if (size <= UP_MAX_FRAME && (size_t)size + 4 > u->rlen) frame = (size_t)size + 4;
        }
        if (frame && u->gate && !u->admitted && frame >= SL_UPGATE_MIN && !gate_admit(u, frame))
            return;
        if (frame && frame - u->rlen > need) need = frame - u->rlen;
        if (u->rcap - u->rlen < need) {
            size_t cap = u->rcap ? u->rcap : 65536;
            while (cap - u->rlen < need) cap *= 2;
            uint8_t *nb = realloc(u->rbuf, cap);
            if (!nb) {
                up_fail(u, SL_UP_CONNECT, "out of memory", EV_LOST);
                return;
            }
            u->rbuf = nb;
            u->rcap = cap;
        }
        size_t len = u->rcap - u->rlen;
        /* Under a gate, no further than the admitted answer and a small answer's worth past it:
         * a buffer grown once for a big answer must not take in the next one unadmitted. */
        if (u->gate) {
            size_t lim = (u->admitted && frame ? frame - u->rlen : 0) + SL_UPGATE_MIN;
            if (len > lim) len = lim;
        }
        ssize_t n = u->t->vt->read(u->t, u->rbuf + u->rlen, len);
        if (n > 0) {
            u->rlen += (size_t)n;
            if (!dispatch(u)) return;
            continue;
        }
        if (n == 0) {
            up_fail(u, SL_UP_CONNECT, "closed by upstream", EV_LOST);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            if (u->t->vt->pending && u->t->vt->pending(u->t)) continue;
            return;
        }
        char why[160];
        snprintf(why, sizeof why, "read from upstream failed: %s", strerror(errno));
        up_fail(u, SL_UP_CONNECT, why, EV_LOST);
        return;
    }
}

static void on_io(void *ctx, uint32_t events) {
    sl_upconn *u = ctx;
    if (u->state != ST_READY || !u->t) return;
    u->refs++;
    if (u->out) flush(u);
    if (u->state == ST_READY && u->t) do_read(u);
    if (u->state == ST_READY && u->t) {
        update_watch(u);
        maybe_reauth(u);
    }
    sl_upconn_unref(u);
}

void sl_upconn_close(sl_upconn *u) {
    if (u->state == ST_DEAD) return;
    up_fail(u, SL_UP_CLOSED, "closed", EV_NONE);
}

bool sl_upconn_ready(const sl_upconn *u) { return u->state == ST_READY && !u->reauth; }
bool sl_upconn_dead(const sl_upconn *u) { return u->state == ST_DEAD; }
int sl_upconn_outstanding(const sl_upconn *u) { return u->ninflight + u->nwaiting; }
size_t sl_upconn_backlog(const sl_upconn *u) { return u->queued + u->awaiting + u->unsent_noreply; }

void sl_upconn_when_below(sl_upconn *u, size_t mark, void (*fn)(void *ctx), void *ctx) {
    u->below = mark;
    u->below_fn = fn;
    u->below_ctx = ctx;
}
int64_t sl_upconn_session_lifetime_ms(const sl_upconn *u) { return u->lifetime_ms; }
