#include "sl_provision.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/sl_auth.h"
#include "auth/sl_credstore.h"
#include "auth/sl_scram.h"
#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "crypto/sl_certgen.h"

#define ADMIN_USER   "admin"
#define ADMIN_MARKER "sluice-provisioned-admin"

static bool mech_enabled(const char *list, const char *mech) {
    size_t n = strlen(mech);
    for (const char *p = list; (p = strstr(p, mech)); p += n)
        if ((p == list || p[-1] == ',' || p[-1] == ' ') &&
            (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return true;
    return false;
}

static void add_super_user(sl_config *cfg, const char *principal) {
    size_t n = strlen(principal);
    for (const char *p = cfg->super_users; (p = strstr(p, principal)); p += n)
        if ((p == cfg->super_users || p[-1] == ';') && (p[n] == 0 || p[n] == ';')) return;
    char buf[SL_CFG_STR_MAX];
    int len = snprintf(buf, sizeof buf, "%s%s%s", cfg->super_users, cfg->super_users[0] ? ";" : "",
                       principal);
    if (len > 0 && (size_t)len < sizeof buf) memcpy(cfg->super_users, buf, (size_t)len + 1);
}

/* 24 random bytes as unpadded base64url: 32 characters, no shell or properties metacharacters. */
static bool random_password(char out[40]) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[24];
    if (RAND_bytes(r, sizeof r) != 1) return false;
    for (int i = 0; i < 8; i++) {
        uint32_t v = (uint32_t)r[3 * i] << 16 | (uint32_t)r[3 * i + 1] << 8 | r[3 * i + 2];
        for (int j = 0; j < 4; j++) out[4 * i + j] = b64[(v >> (18 - 6 * j)) & 63];
    }
    out[32] = 0;
    OPENSSL_cleanse(r, sizeof r);
    return true;
}

static sl_err write_client_files(const sl_config *cfg, const char *pdir, const char *tlsdir,
                                 const sl_listener_spec *ep, const char *mech,
                                 const char *password) {
    /* Clients run from anywhere: the CA path they are given must not depend on our cwd. */
    char dir[PATH_MAX];
    if (!realpath(tlsdir, dir)) return SL_EIO;
    char body[4096];
    int n =
        snprintf(body, sizeof body,
                 "# Written by sluice on first start: a client configuration for the generated\n"
                 "# admin user (librdkafka key names: kcat -F, confluent-kafka).\n"
                 "bootstrap.servers=%s:%d\n"
                 "security.protocol=SASL_SSL\n"
                 "sasl.mechanism=%s\n"
                 "sasl.username=" ADMIN_USER "\n"
                 "sasl.password=%s\n"
                 "ssl.ca.location=%s/ca.pem\n",
                 ep->host, ep->port, mech, password, dir);
    sl_err e = (n > 0 && (size_t)n < sizeof body)
                   ? sl_file_write_atomic(pdir, "client.properties", body, (size_t)n, 0600)
                   : SL_EINVAL;
    if (e) return e;
    n = snprintf(body, sizeof body,
                 "# Written by sluice on first start: the same client configuration with Java\n"
                 "# client key names (kafka-console-producer --producer.config ...).\n"
                 "bootstrap.servers=%s:%d\n"
                 "security.protocol=SASL_SSL\n"
                 "sasl.mechanism=%s\n"
                 "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                 "required username=\"" ADMIN_USER "\" password=\"%s\";\n"
                 "ssl.truststore.type=PEM\n"
                 "ssl.truststore.location=%s/ca.pem\n",
                 ep->host, ep->port, mech, password, dir);
    e = (n > 0 && (size_t)n < sizeof body)
            ? sl_file_write_atomic(pdir, "client-java.properties", body, (size_t)n, 0600)
            : SL_EINVAL;
    OPENSSL_cleanse(body, sizeof body);
    return e;
}

/* Creates the admin credential for every SCRAM mechanism offered, if the store is empty. */
static sl_err provision_admin(sl_config *cfg, const char *tlsdir, const sl_listener_spec *ep,
                              char *err, size_t elen) {
    char pdir[SL_CFG_STR_MAX];
    sl_config_secret_dir_for(cfg, ADMIN_MARKER, pdir, sizeof pdir);
    if (sl_mkdir_p(pdir, 0700)) {
        snprintf(err, elen, "sluice.secrets.dir: cannot create %s: %s", pdir, strerror(errno));
        return SL_ECONFIG;
    }
    char marker[SL_CFG_STR_MAX + 64];
    snprintf(marker, sizeof marker, "%s/" ADMIN_MARKER, pdir);
    char path[SL_CFG_STR_MAX + 32];
    sl_auth_store_path(cfg, path, sizeof path);
    sl_credstore *st = NULL;
    sl_err e = sl_credstore_open(path, true, &st, err, elen);
    if (e) return e;
    bool fresh = false;
    if ((e = sl_credstore_lock(st)) == SL_OK) {
        if (sl_credstore_count(st) == 0) {
            char pw[40];
            const char *mechs[] = {"SCRAM-SHA-512", "SCRAM-SHA-256"};
            const char *first = NULL;
            if (!random_password(pw)) e = SL_EIO;
            for (int i = 0; !e && i < 2; i++) {
                if (!mech_enabled(cfg->sasl_enabled_mechanisms, mechs[i])) continue;
                sl_scram_cred c;
                int m = sl_scram_mech_from_name(mechs[i], strlen(mechs[i]));
                /* The configured count, as every other user and the unknown-name mock: a
                 * count of its own would tell the admin's name apart before login. */
                e = sl_scram_cred_from_password(m, pw, strlen(pw),
                                                cfg->sluice_sasl_scram_iterations, &c);
                if (!e) e = sl_credstore_put(st, ADMIN_USER, strlen(ADMIN_USER), &c);
                OPENSSL_cleanse(&c, sizeof c);
                if (!first) first = mechs[i];
            }
            if (!e && first) e = sl_credstore_save(st);
            if (!e && first) e = write_client_files(cfg, pdir, tlsdir, ep, first, pw);
            if (!e && first)
                e = sl_file_write_atomic(pdir, ADMIN_MARKER, "User:" ADMIN_USER "\n",
                                         strlen("User:" ADMIN_USER "\n"), 0600);
            fresh = !e && first;
            OPENSSL_cleanse(pw, sizeof pw);
        }
        sl_credstore_unlock(st);
    }
    sl_credstore_free(st);
    if (e) {
        if (!*err) snprintf(err, elen, "cannot create the admin credential in %s", path);
        return e;
    }
    if (access(marker, F_OK) == 0) {
        /* A deployment Sluice provisioned itself is locked down: the generated admin is a super
         * user and everyone else needs ACLs, unless the operator chose an authorizer setting. */
        add_super_user(cfg, "User:" ADMIN_USER);
        int k1 = sl_config_key_index("authorizer.class.name");
        int k2 = sl_config_key_index("sluice.authorizer.enable");
        if ((k1 < 0 || !sl_config_is_set(cfg, (size_t)k1)) &&
            (k2 < 0 || !sl_config_is_set(cfg, (size_t)k2)))
            cfg->sluice_authorizer_enable = true;
    }
    if (fresh) {
        SL_INFO("provision", "created the admin user (a super user) and client configuration",
                "client_config=%s/client.properties java_client_config=%s/"
                "client-java.properties try=\"kcat -F %s/client.properties -L\"",
                pdir, pdir, pdir);
        SL_INFO("provision",
                "authorization is on: other users need ACLs, e.g. for an application 'app' "
                "writing topic 'payments'",
                "add_user=\"sluice user add app --password-stdin\" "
                "grant=\"sluice acl add --allow-principal User:app --operation Write "
                "--operation Describe --topic payments\"");
    }
    return SL_OK;
}

sl_err sl_provision(sl_config *cfg, char *err, size_t elen) {
    if (!cfg->sluice_provision_enable) return SL_OK;
    sl_listener_spec ls[16];
    int n = sl_listeners_parse(cfg->listeners, ls, 16, err, elen);
    bool tls = false;
    const sl_listener_spec *scram_ep = NULL;
    for (int i = 0; i < n; i++) {
        int p = sl_listener_protocol(cfg->listener_security_protocol_map, ls[i].name, err, elen);
        if (p == SL_SEC_SSL || p == SL_SEC_SASL_SSL) tls = true;
        if (p == SL_SEC_SASL_SSL && !scram_ep) scram_ep = &ls[i];
    }
    if (!tls && !scram_ep) return SL_OK;
    if (sl_mkdir_p(cfg->log_dirs, 0700)) {
        snprintf(err, elen, "log.dirs: cannot create %s: %s", cfg->log_dirs, strerror(errno));
        return SL_ECONFIG;
    }
    char tlsdir[SL_CFG_STR_MAX];
    sl_config_secret_dir_for(cfg, "broker.pem", tlsdir, sizeof tlsdir);
    if (tls && !cfg->ssl_keystore_location[0]) {
        char broker_pem[SL_CFG_STR_MAX + 32];
        snprintf(broker_pem, sizeof broker_pem, "%s/broker.pem", tlsdir);
        bool existed = access(broker_pem, F_OK) == 0;
        if (sl_mkdir_p(tlsdir, 0700)) {
            snprintf(err, elen, "sluice.secrets.dir: cannot create %s: %s", tlsdir,
                     strerror(errno));
            return SL_ECONFIG;
        }
        sl_err e = sl_tls_bootstrap(tlsdir, err, elen);
        if (e) return e;
        if (sl_config_set(cfg, "ssl.keystore.location", broker_pem, err, elen)) return SL_ECONFIG;
        if (!existed)
            SL_INFO("provision", "created a CA and broker certificate", "ca=%s/ca.pem keystore=%s",
                    tlsdir, broker_pem);
    }
    if (scram_ep && (mech_enabled(cfg->sasl_enabled_mechanisms, "SCRAM-SHA-512") ||
                     mech_enabled(cfg->sasl_enabled_mechanisms, "SCRAM-SHA-256"))) {
        sl_listener_spec ep = *scram_ep;
        if (!strcmp(ep.host, "0.0.0.0") || !strcmp(ep.host, "::") || !ep.host[0])
            snprintf(ep.host, sizeof ep.host, "127.0.0.1");
        sl_listener_spec adv[16];
        int na = cfg->advertised_listeners[0]
                     ? sl_listeners_parse(cfg->advertised_listeners, adv, 16, err, elen)
                     : 0;
        for (int i = 0; i < na; i++)
            if (!strcmp(adv[i].name, scram_ep->name)) ep = adv[i];
        return provision_admin(cfg, tlsdir, &ep, err, elen);
    }
    return SL_OK;
}
