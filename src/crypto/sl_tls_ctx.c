/* TLS server contexts and their reload (see sl_tls_ctx.h). */
#include "crypto/sl_tls_ctx.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/sl_logging.h"

#define SL_TLS_READ_BUFFER (64 * 1024)

#define SL_PEM_MAX (1024 * 1024) /* a keystore or CA bundle larger than this is a mistake */

static const char *const k_default_protocols = "TLSv1.3,TLSv1.2";
static const char *const k_default_tls12 =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
/* No finite-field groups: an ffdhe8192 handshake costs the broker 120-140 ms of CPU against
 * about 0.5 ms for X25519, which let an unauthenticated peer saturate the loop ("DHEat"). */
static const char *const k_default_groups = "X25519:P-256:P-384:P-521";
static const char *const k_default_tls13 =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

/* The last OpenSSL error as text (reasons only: OpenSSL never puts key material there). */
static const char *ssl_reason(void) {
    static char buf[160];
    unsigned long e = ERR_peek_last_error();
    if (!e) return "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

/* Reads a whole (small) file into a malloc'd buffer; caller cleanses and frees. */
static unsigned char *read_file(const char *key, const char *path, size_t *len, char *err,
                                size_t elen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, elen, "%s: cannot open %s: %s", key, path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = malloc(SL_PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, SL_PEM_MAX + 1, f) : 0;
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf || bad || n > SL_PEM_MAX || n == 0) {
        snprintf(err, elen, "%s: cannot read %s: %s", key, path,
                 !buf  ? "out of memory"
                 : bad ? "read error"
                 : n   ? "file larger than 1 MiB"
                       : "file is empty");
        if (buf) OPENSSL_cleanse(buf, n > SL_PEM_MAX ? SL_PEM_MAX + 1 : n);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int pw_cb(char *buf, int size, int rwflag, void *u) {
    const char *pw = u;
    if (!pw || !*pw) return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size) return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

static sl_err load_keystore(SSL_CTX *ctx, const sl_tls_opts *o, char *err, size_t elen) {
    const char *path = o->keystore_location;
    if (!path || !*path) {
        snprintf(err, elen, "ssl.keystore.location: required on TLS listeners");
        return SL_ECONFIG;
    }
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        SL_WARN("tls", "keystore readable by group or others (chmod 600)", "file=%s", path);
    size_t len = 0;
    unsigned char *buf = read_file("ssl.keystore.location", path, &len, err, elen);
    if (!buf) return SL_ECONFIG;
    sl_err rc = SL_ECONFIG;
    EVP_PKEY *pkey = NULL;
    X509 *leaf = NULL;
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    if (!b) goto out;
    leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!leaf) {
        snprintf(err, elen, "ssl.keystore.location: no certificate in %s", path);
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        snprintf(err, elen, "ssl.keystore.location: certificate in %s refused: %s", path,
                 ssl_reason());
        goto out;
    }
    for (X509 *x; (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            snprintf(err, elen, "ssl.keystore.location: chain certificate in %s refused: %s", path,
                     ssl_reason());
            goto out;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(b);
    b = BIO_new_mem_buf(buf, (int)len);
    if (!b) goto out;
    pkey = PEM_read_bio_PrivateKey(b, NULL, pw_cb, (void *)o->key_password);
    if (!pkey) {
        ERR_clear_error();
        snprintf(err, elen,
                 "ssl.keystore.location: no usable private key in %s (missing, or encrypted and "
                 "ssl.key.password is unset or wrong)",
                 path);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, elen,
                 "ssl.keystore.location: private key in %s does not match its certificate", path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        SL_WARN("tls", "broker certificate has expired", "file=%s", path);
    rc = SL_OK;
out:
    BIO_free(b);
    EVP_PKEY_free(pkey);
    X509_free(leaf);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

static sl_err load_truststore(SSL_CTX *ctx, const char *path, char *err, size_t elen) {
    size_t len = 0;
    unsigned char *buf = read_file("ssl.truststore.location", path, &len, err, elen);
    if (!buf) return SL_ECONFIG;
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    sl_err rc = SL_ECONFIG;
    if (!infos || !names) {
        snprintf(err, elen, "ssl.truststore.location: cannot parse %s: %s", path, ssl_reason());
        goto out;
    }
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509 *x = sk_X509_INFO_value(infos, i)->x509;
        if (!x) continue;
        if (X509_STORE_add_cert(store, x) != 1) {
            snprintf(err, elen, "ssl.truststore.location: certificate in %s refused: %s", path,
                     ssl_reason());
            goto out;
        }
        X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
        if (nm && !sk_X509_NAME_push(names, nm)) X509_NAME_free(nm);
        n++;
    }
    if (n == 0) {
        snprintf(err, elen, "ssl.truststore.location: no certificates in %s", path);
        goto out;
    }
    /* Tells clients which CAs we accept, so they pick the right certificate. */
    SSL_CTX_set_client_CA_list(ctx, names);
    names = NULL;
    rc = SL_OK;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(b);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

static int proto_version(const char *s, size_t n) {
    static const struct {
        const char *name;
        int v;
    } k[] = {{"TLSv1.3", TLS1_3_VERSION},
             {"TLSv1.2", TLS1_2_VERSION},
             {"TLSv1.1", TLS1_1_VERSION},
             {"TLSv1.0", TLS1_VERSION},
             {"TLSv1", TLS1_VERSION}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (strlen(k[i].name) == n && !strncmp(k[i].name, s, n)) return k[i].v;
    return 0;
}

static sl_err set_protocols(SSL_CTX *ctx, const char *list, char *err, size_t elen) {
    bool on[5] = {0}; /* index: version - TLS1_VERSION (0x301..0x304) */
    int lo = 0, hi = 0;
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ') p++;
        size_t n = strcspn(p, ", ");
        if (!n) break;
        int v = proto_version(p, n);
        if (!v) {
            snprintf(err, elen, "ssl.enabled.protocols: unsupported protocol \"%.*s\"", (int)n, p);
            return SL_ECONFIG;
        }
        on[v - TLS1_VERSION] = true;
        if (!lo || v < lo) lo = v;
        if (v > hi) hi = v;
        p += n;
    }
    if (!lo) {
        snprintf(err, elen, "ssl.enabled.protocols: no protocol enabled");
        return SL_ECONFIG;
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    static const uint64_t no[] = {SSL_OP_NO_TLSv1, SSL_OP_NO_TLSv1_1, SSL_OP_NO_TLSv1_2,
                                  SSL_OP_NO_TLSv1_3};
    for (int v = lo; v <= hi; v++)
        if (!on[v - TLS1_VERSION]) SSL_CTX_set_options(ctx, no[v - TLS1_VERSION]);
    if (lo < TLS1_2_VERSION) {
        /* OpenSSL 3 refuses TLS < 1.2 above security level 0 (SHA-1 handshake signatures);
         * whoever listed them explicitly asked for that. */
        SSL_CTX_set_security_level(ctx, 0);
        SL_WARN("tls", "TLS versions below 1.2 enabled by ssl.enabled.protocols", "lowest=%s",
                lo == TLS1_VERSION ? "TLSv1" : "TLSv1.1");
    }
    return SL_OK;
}

static bool is_tls13_suite(const char *s, size_t n) {
    static const char *const k13[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                      "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
                                      "TLS_AES_128_CCM_8_SHA256"};
    for (size_t i = 0; i < sizeof k13 / sizeof *k13; i++)
        if (strlen(k13[i]) == n && !strncmp(k13[i], s, n)) return true;
    return false;
}

/* Kafka lists suites of both versions in one key (IANA names, as Java spells them); OpenSSL
 * keeps TLS 1.2 and 1.3 suites apart and spells 1.2 its own way. A version none of whose suites
 * is listed keeps its default. */
static sl_err set_ciphers(SSL_CTX *ctx, const char *list, char *err, size_t elen) {
    char l12[SL_CFG_STR_MAX * 2] = "", l13[SL_CFG_STR_MAX] = "";
    size_t n12 = 0, n13 = 0;
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ' || *p == ':') p++;
        size_t n = strcspn(p, ", :");
        if (!n) break;
        char name[128];
        if (n >= sizeof name) {
            snprintf(err, elen, "ssl.cipher.suites: name too long");
            return SL_ECONFIG;
        }
        memcpy(name, p, n);
        name[n] = 0;
        p += n;
        if (is_tls13_suite(name, n)) {
            n13 += (size_t)snprintf(l13 + n13, sizeof l13 - n13, "%s%s", n13 ? ":" : "", name);
            continue;
        }
        const char *os = name;
        if (!strncmp(name, "TLS_", 4) || !strncmp(name, "SSL_", 4)) {
            os = OPENSSL_cipher_name(name);
            if (!os || !strcmp(os, "(NONE)")) {
                snprintf(err, elen, "ssl.cipher.suites: unknown cipher suite \"%s\"", name);
                return SL_ECONFIG;
            }
        }
        if (SSL_CTX_set_cipher_list(ctx, os) != 1) {
            ERR_clear_error();
            snprintf(err, elen, "ssl.cipher.suites: unknown or unavailable cipher suite \"%s\"",
                     name);
            return SL_ECONFIG;
        }
        n12 += (size_t)snprintf(l12 + n12, sizeof l12 - n12, "%s%s", n12 ? ":" : "", os);
        if (n12 >= sizeof l12 || n13 >= sizeof l13) {
            snprintf(err, elen, "ssl.cipher.suites: list too long");
            return SL_ECONFIG;
        }
    }
    if (SSL_CTX_set_cipher_list(ctx, n12 ? l12 : k_default_tls12) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, n13 ? l13 : k_default_tls13) != 1) {
        snprintf(err, elen, "ssl.cipher.suites: rejected by OpenSSL: %s", ssl_reason());
        return SL_ECONFIG;
    }
    return SL_OK;
}

/* Each name must be one OpenSSL knows and can use: a typo would otherwise only show as
 * handshakes failing. Commas are accepted like Kafka's list keys. */
static sl_err set_groups(SSL_CTX *ctx, const char *list, char *err, size_t elen) {
    char norm[SL_CFG_STR_MAX];
    size_t n = 0;
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ' || *p == ':') p++;
        size_t k = strcspn(p, ", :");
        if (!k) break;
        char one[64];
        if (k >= sizeof one || n + k + 2 >= sizeof norm) {
            snprintf(err, elen, "sluice.ssl.groups: name or list too long");
            return SL_ECONFIG;
        }
        memcpy(one, p, k);
        one[k] = 0;
        if (SSL_CTX_set1_groups_list(ctx, one) != 1) {
            ERR_clear_error();
            snprintf(err, elen, "sluice.ssl.groups: unknown or unavailable group \"%s\"", one);
            return SL_ECONFIG;
        }
        n += (size_t)snprintf(norm + n, sizeof norm - n, "%s%s", n ? ":" : "", one);
        p += k;
    }
    if (!n) {
        snprintf(err, elen, "sluice.ssl.groups: no group listed");
        return SL_ECONFIG;
    }
    if (SSL_CTX_set1_groups_list(ctx, norm) != 1) {
        snprintf(err, elen, "sluice.ssl.groups: rejected by OpenSSL: %s", ssl_reason());
        return SL_ECONFIG;
    }
    return SL_OK;
}

sl_err sl_tls_ctx_build(const sl_tls_opts *o, SSL_CTX **out, char *err, size_t elen) {
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, elen, "cannot create a TLS context: %s", ssl_reason());
        return SL_ENOMEM;
    }
    /* No renegotiation (a client-driven CPU sink with a history of bugs), no compression
     * (CRIME); our suite order wins; writes may be partial and retried from a moved buffer,
     * as the connection's output queue does; idle connections give their buffers back. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read ahead into a buffer of several records: one read() per ~64 KiB of a produce stream
     * instead of two per 16 KiB record (header, then body). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, SL_TLS_READ_BUFFER);
    sl_err e = set_protocols(ctx,
                             o->enabled_protocols && *o->enabled_protocols ? o->enabled_protocols
                                                                           : k_default_protocols,
                             err, elen);
    if (!e) e = set_ciphers(ctx, o->cipher_suites ? o->cipher_suites : "", err, elen);
    if (!e) e = set_groups(ctx, o->groups && *o->groups ? o->groups : k_default_groups, err, elen);
    if (!e) e = load_keystore(ctx, o, err, elen);
    if (!e && o->truststore_location && *o->truststore_location)
        e = load_truststore(ctx, o->truststore_location, err, elen);
    if (!e && o->client_auth != SL_TLS_CLIENT_AUTH_NONE &&
        !(o->truststore_location && *o->truststore_location)) {
        snprintf(err, elen, "ssl.truststore.location: required when ssl.client.auth is %s",
                 o->client_auth == SL_TLS_CLIENT_AUTH_REQUIRED ? "required" : "requested");
        e = SL_ECONFIG;
    }
    if (e) {
        SSL_CTX_free(ctx);
        return e;
    }
    int mode = o->client_auth == SL_TLS_CLIENT_AUTH_NONE ? SSL_VERIFY_NONE
               : o->client_auth == SL_TLS_CLIENT_AUTH_REQUIRED
                   ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                   : SSL_VERIFY_PEER;
    SSL_CTX_set_verify(ctx, mode, NULL);
    /* A client certificate must be meant for client authentication (EKU, if present). */
    SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    const char *sc = o->session_context && *o->session_context ? o->session_context : "sluice";
    size_t scl = strlen(sc);
    if (scl > SSL_MAX_SID_CTX_LENGTH) scl = SSL_MAX_SID_CTX_LENGTH;
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sc, (unsigned)scl);
    *out = ctx;
    return SL_OK;
}

/* ---- endpoints and reload ---- */

typedef struct file_id {
    bool present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
} file_id;

struct sl_tls_endpoint {
    char listener[64];
    char *keystore, *password, *truststore, *protocols, *ciphers, *groups;
    sl_tls_client_auth client_auth;
    SSL_CTX *ctx;
    sl_principal_rules *rules;
    file_id ks_id, ts_id;
    char last_error[512]; /* the last failed reload's reason (names the key or file) */
    char fail_peer[64];   /* the last failed handshake, until its connection's close takes it */
    char fail_reason[128];
};

static file_id stat_id(const char *path) {
    file_id id = {0};
    struct stat st;
    if (path && *path && stat(path, &st) == 0) {
        id.present = true;
        id.dev = st.st_dev;
        id.ino = st.st_ino;
        id.size = st.st_size;
        id.mtim = st.st_mtim;
    }
    return id;
}

static bool same_id(const file_id *a, const file_id *b) {
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec;
}

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

static sl_tls_opts ep_opts(const sl_tls_endpoint *ep) {
    return (sl_tls_opts){.keystore_location = ep->keystore,
                         .key_password = ep->password,
                         .truststore_location = ep->truststore,
                         .enabled_protocols = ep->protocols,
                         .cipher_suites = ep->ciphers,
                         .groups = ep->groups,
                         .client_auth = ep->client_auth,
                         .session_context = ep->listener};
}

void sl_tls_endpoint_free(sl_tls_endpoint *ep) {
    if (!ep) return;
    SSL_CTX_free(ep->ctx);
    sl_principal_rules_free(ep->rules);
    if (ep->password) OPENSSL_cleanse(ep->password, strlen(ep->password));
    free(ep->password);
    free(ep->keystore);
    free(ep->truststore);
    free(ep->protocols);
    free(ep->ciphers);
    free(ep->groups);
    free(ep);
}

sl_err sl_tls_endpoint_new(const sl_config *cfg, const char *listener, sl_tls_endpoint **out,
                           char *err, size_t elen) {
    *out = NULL;
    sl_tls_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep) return SL_ENOMEM;
    snprintf(ep->listener, sizeof ep->listener, "%s", listener);
#define LSTR(k) sl_config_listener_str(cfg, listener, k)
    const char *ca = LSTR("ssl.client.auth");
    ep->client_auth = !ca || !strcmp(ca, "none") ? SL_TLS_CLIENT_AUTH_NONE
                      : !strcmp(ca, "requested") ? SL_TLS_CLIENT_AUTH_REQUESTED
                                                 : SL_TLS_CLIENT_AUTH_REQUIRED;
    ep->keystore = dup_or_null(LSTR("ssl.keystore.location"));
    ep->password = dup_or_null(LSTR("ssl.key.password"));
    ep->truststore = dup_or_null(LSTR("ssl.truststore.location"));
    ep->protocols = dup_or_null(LSTR("ssl.enabled.protocols"));
    ep->ciphers = dup_or_null(LSTR("ssl.cipher.suites"));
    ep->groups = dup_or_null(LSTR("sluice.ssl.groups"));
    sl_err e = sl_principal_rules_parse(LSTR("ssl.principal.mapping.rules"), &ep->rules, err, elen);
#undef LSTR
    ep->ks_id = stat_id(ep->keystore);
    ep->ts_id = stat_id(ep->truststore);
    if (!e) {
        sl_tls_opts o = ep_opts(ep);
        e = sl_tls_ctx_build(&o, &ep->ctx, err, elen);
    }
    if (e) {
        /* Say which listener, the key and file are already in err. */
        size_t n = strlen(err);
        if (n + 20 < elen) snprintf(err + n, elen - n, " (listener %s)", listener);
        sl_tls_endpoint_free(ep);
        return e;
    }
    *out = ep;
    return SL_OK;
}

sl_err sl_tls_endpoint_new_opts(const char *name, const sl_tls_opts *o, sl_tls_endpoint **out,
                                char *err, size_t elen) {
    *out = NULL;
    sl_tls_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep) return SL_ENOMEM;
    snprintf(ep->listener, sizeof ep->listener, "%s", name);
    ep->client_auth = o->client_auth;
    ep->keystore = dup_or_null(o->keystore_location);
    ep->password = dup_or_null(o->key_password);
    ep->truststore = dup_or_null(o->truststore_location);
    ep->protocols = dup_or_null(o->enabled_protocols);
    ep->ciphers = dup_or_null(o->cipher_suites);
    ep->groups = dup_or_null(o->groups);
    ep->ks_id = stat_id(ep->keystore);
    ep->ts_id = stat_id(ep->truststore);
    sl_tls_opts eo = ep_opts(ep);
    sl_err e = sl_tls_ctx_build(&eo, &ep->ctx, err, elen);
    if (e) {
        sl_tls_endpoint_free(ep);
        return e;
    }
    *out = ep;
    return SL_OK;
}

SSL_CTX *sl_tls_endpoint_ctx(const sl_tls_endpoint *ep) { return ep->ctx; }
const sl_principal_rules *sl_tls_endpoint_rules(const sl_tls_endpoint *ep) { return ep->rules; }
const char *sl_tls_endpoint_listener(const sl_tls_endpoint *ep) { return ep->listener; }

int sl_tls_endpoint_reload(sl_tls_endpoint *ep, bool force) {
    file_id ks = stat_id(ep->keystore), ts = stat_id(ep->truststore);
    if (!force && same_id(&ks, &ep->ks_id) && same_id(&ts, &ep->ts_id)) return 0;
    /* Remember what we looked at even if the build fails, so a broken file is reported once,
     * and retried as soon as it changes again. */
    ep->ks_id = ks;
    ep->ts_id = ts;
    sl_tls_opts o = ep_opts(ep);
    SSL_CTX *ctx = NULL;
    char err[512] = "";
    if (sl_tls_ctx_build(&o, &ctx, err, sizeof err) != SL_OK) {
        snprintf(ep->last_error, sizeof ep->last_error, "%s", err);
        SL_ERROR("tls", "certificate reload failed, keeping the previous certificate",
                 "listener=%s reason=\"%s\"", ep->listener, err);
        return -1;
    }
    SSL_CTX_free(ep->ctx); /* open connections hold their own references */
    ep->ctx = ctx;
    char serial[80] = "?", subject[256] = "?";
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (leaf) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        if (hex) snprintf(serial, sizeof serial, "%s", hex);
        OPENSSL_free(hex);
        BN_free(bn);
        (void)sl_x509_subject_rfc2253(leaf, subject, sizeof subject);
    }
    SL_INFO("tls", "certificate reloaded", "listener=%s keystore=%s subject=\"%s\" serial=%s",
            ep->listener, ep->keystore ? ep->keystore : "-", subject, serial);
    return 1;
}

const char *sl_tls_endpoint_last_error(const sl_tls_endpoint *ep) {
    return ep && ep->last_error[0] ? ep->last_error : NULL;
}

void sl_tls_endpoint_note_failure(sl_tls_endpoint *ep, const char *peer, const char *reason) {
    snprintf(ep->fail_peer, sizeof ep->fail_peer, "%s", peer ? peer : "");
    snprintf(ep->fail_reason, sizeof ep->fail_reason, "%s", reason ? reason : "handshake failed");
}

bool sl_tls_endpoint_take_failure(sl_tls_endpoint *ep, const char *peer, char *reason,
                                  size_t rlen) {
    if (!ep || !peer || !ep->fail_peer[0] || strcmp(ep->fail_peer, peer) != 0) return false;
    snprintf(reason, rlen, "%s", ep->fail_reason);
    ep->fail_peer[0] = 0;
    return true;
}

int64_t sl_tls_endpoint_not_after(const sl_tls_endpoint *ep) {
    X509 *leaf = ep && ep->ctx ? SSL_CTX_get0_certificate(ep->ctx) : NULL;
    if (!leaf) return 0;
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) != 1) return 0;
    return (int64_t)timegm(&tm);
}
