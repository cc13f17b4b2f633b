/* sluice: command-line entry point. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/sl_audit.h"
#include "base/sl_config.h"
#include "base/sl_logging.h"
#include "broker/sl_broker.h"
#include "broker/sl_provision.h"
#include "cli/sl_cli_acl.h"
#include "cli/sl_cli_iam.h"
#include "cli/sl_cli_keys.h"
#include "cli/sl_cli_protect.h"
#include "cli/sl_cli_user.h"
#include "gateway/sl_gateway.h"

#define SLUICE_VERSION "0.1.0"

static const char k_usage[] =
    "NAME\n"
    "    sluice - a secure, single-binary broker that speaks the Kafka protocol\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice serve [-c FILE] [--override KEY=VALUE]...\n"
    "    sluice gateway -c FILE [--override KEY=VALUE]...\n"
    "    sluice config\n"
    "    sluice user add|passwd|rm|list ...\n"
    "    sluice acl add|rm|list ...\n"
    "    sluice iam user|key|role|assume-role|policy ...\n"
    "    sluice audit verify|pubkey ...\n"
    "    sluice keys status|rotate|rewrap|retire|reencrypt|shred|create|forget ...\n"
    "    sluice protect|reveal --policy FILE --topic T [-c FILE]\n"
    "    sluice protect grant|revoke|list|status ...\n"
    "    sluice version\n"
    "    sluice --help | sluice COMMAND --help\n"
    "\n"
    "DESCRIPTION\n"
    "    Sluice serves unmodified Kafka clients. Its configuration uses Kafka's server.properties\n"
    "    format and key names; Sluice-only keys start with \"sluice.\".\n"
    "\n"
    "COMMANDS\n"
    "    serve     Run the broker in the foreground until SIGTERM or SIGINT.\n"
    "    gateway   Run the same security layer in front of an existing Kafka cluster.\n"
    "    config    List every configuration key with its type, default and meaning.\n"
    "    version   Print the version.\n"
    "    user      Manage SASL/SCRAM users in the credential store (see sluice user --help).\n"
    "    acl       Manage Kafka ACLs (see sluice acl --help).\n"
    "    iam       Manage IAM users, access keys, roles and policies; simulate policy decisions\n"
    "              (see sluice iam --help).\n"
    "    audit     Verify an audit trail (see sluice audit --help).\n"
    "    keys      Encryption-at-rest and field keys of a running broker (see sluice keys\n"
    "              --help).\n"
    "    protect   Protect record values (stdin to stdout) as the broker would, or manage the\n"
    "              broker's reveal grants (see sluice protect --help).\n"
    "    reveal    Show the encrypted fields of protected values in clear (stdin to stdout).\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on a clean stop, 1 on a runtime failure, 2 on a usage or configuration error.\n";

static const char k_gateway_usage[] =
    "NAME\n"
    "    sluice gateway - Sluice's security layer in front of an existing Kafka cluster\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice gateway -c FILE [--override KEY=VALUE]...\n"
    "\n"
    "DESCRIPTION\n"
    "    Serves unmodified Kafka clients like `sluice serve` (listeners, TLS, SASL, ACLs, audit,\n"
    "    metrics, field protection: the same keys) and forwards what they are allowed to do to "
    "the\n"
    "    upstream cluster named by sluice.gateway.upstream.bootstrap.servers. Each upstream "
    "broker\n"
    "    is reachable through a gateway port (or SNI name); clients never see upstream addresses.\n"
    "    log.dirs holds only Sluice's own state (credentials, ACLs, keyring, audit).\n"
    "    See docs/gateway.md.\n"
    "\n"
    "EXAMPLES\n"
    "    sluice gateway -c /etc/sluice/gateway.properties\n"
    "    sluice gateway --override sluice.gateway.upstream.bootstrap.servers=b-1.msk:9098\n";

static const char k_serve_usage[] =
    "NAME\n"
    "    sluice serve - run the broker\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice serve [-c FILE] [--override KEY=VALUE]...\n"
    "\n"
    "DESCRIPTION\n"
    "    Opens the data directory (log.dirs), recovers every partition log (a torn tail left by\n"
    "    a crash is truncated and indexes are rebuilt), binds the listeners and serves until\n"
    "    SIGTERM or SIGINT. On a signal it stops accepting, answers the requests already\n"
    "    received, fsyncs every partition and exits 0. Logs go to stderr as key=value lines and\n"
    "    never contain record payloads.\n"
    "\n"
    "    Without -c, the defaults give a working, secured broker on a fresh machine: data\n"
    "    under ./sluice-data and one SASL_SSL listener (SCRAM-SHA-512) on 127.0.0.1:9092. The\n"
    "    first start creates a CA and broker certificate, an admin user with a random password\n"
    "    (a super user) and ready client configuration files in the data directory\n"
    "    (client.properties for librdkafka/kcat, client-java.properties for Java clients):\n"
    "        kcat -F sluice-data/client.properties -L\n"
    "    Set sluice.provision.enable=false to create none of this.\n"
    "\n"
    "OPTIONS\n"
    "    -c, --config FILE\n"
    "        Read a server.properties file (Kafka's format and key names). Unknown keys are\n"
    "        logged and ignored; an invalid value stops start-up with a message naming the key.\n"
    "    --override KEY=VALUE\n"
    "        Set one key after the file is read (may repeat), as kafka-server-start does.\n"
    "    -h, --help\n"
    "        Show this text.\n"
    "\n"
    "EXAMPLES\n"
    "    sluice serve\n"
    "    sluice serve -c /etc/sluice/server.properties\n"
    "    sluice serve --override listeners=PLAINTEXT://127.0.0.1:19092 --override "
    "log.dirs=/tmp/s\n"
    "\n"
    "SEE ALSO\n"
    "    sluice config; docs/configuration.md\n";

static int cmd_config(void) {
    sl_config c;
    sl_config_defaults(&c);
    sl_config_finish(&c, (char[256]){0}, 256);
    for (size_t i = 0; i < sl_config_key_count(); i++) {
        const sl_config_key_info *k = sl_config_key_at(i);
        char v[SL_CFG_STR_MAX];
        if (!sl_config_format(&c, i, v, sizeof v)) snprintf(v, sizeof v, "(none)");
        printf("%s (%s, default %s)\n    %s\n", k->name, k->type, v, k->doc);
    }
    return 0;
}

/* Request arenas come and go at the rate of requests, each up to a produce batch or a fetch's
 * worth. glibc's defaults hand such blocks back to the kernel (mmap, or trimming the heap top)
 * and fault them in again, zeroed, on the next request: measured 3-5 % of broker CPU in page
 * faults. Keep blocks up to 32 MiB on the heap and up to 64 MiB of free heap top; PLAINTEXT
 * produce went from 0.87/0.59 to 0.49/0.51 CPU-s/GB side by side (docs/benchmarks.md). */
static void tune_malloc(void) {
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

static int cmd_serve(int argc, char **argv, bool gateway) {
    tune_malloc();
    sl_config cfg;
    sl_config_defaults(&cfg);
    char err[512] = "";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(gateway ? k_gateway_usage : k_serve_usage, stdout);
            return 0;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
            if (sl_config_load(&cfg, argv[++i], err, sizeof err)) {
                fprintf(stderr, "sluice: %s\n", err);
                return 2;
            }
        } else if (!strcmp(a, "--override") && i + 1 < argc) {
            char kv[SL_CFG_STR_MAX + 256];
            snprintf(kv, sizeof kv, "%s", argv[++i]);
            char *eq = strchr(kv, '=');
            if (!eq) {
                fprintf(stderr, "sluice: --override expects KEY=VALUE, got \"%s\"\n", kv);
                return 2;
            }
            *eq = 0;
            if (sl_config_set(&cfg, kv, eq + 1, err, sizeof err)) {
                fprintf(stderr, "sluice: %s\n", err);
                return 2;
            }
        } else {
            const char *cmd = gateway ? "gateway" : "serve";
            fprintf(stderr, "sluice %s: unknown argument \"%s\" (see sluice %s --help)\n", cmd, a,
                    cmd);
            return 2;
        }
    }
    if (sl_config_finish(&cfg, err, sizeof err)) {
        fprintf(stderr, "sluice: %s\n", err);
        return 2;
    }
    sl_log_set_level(!strcmp(cfg.sluice_log_level, "debug")   ? SL_LOG_DEBUG
                     : !strcmp(cfg.sluice_log_level, "warn")  ? SL_LOG_WARN
                     : !strcmp(cfg.sluice_log_level, "error") ? SL_LOG_ERROR
                                                              : SL_LOG_INFO);
    if (sl_provision(&cfg, err, sizeof err)) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    sl_broker *b = NULL;
    sl_err e =
        sl_broker_new(&cfg, gateway ? SL_BROKER_GATEWAY : SL_BROKER_SERVE, &b, err, sizeof err);
    if (e) {
        SL_ERROR("broker", "start-up failed", "reason=\"%s\"", err);
        fprintf(stderr, "sluice: %s\n", err);
        return e == SL_ECONFIG ? 2 : 1;
    }
    /* The gateway is the same broker object with the execute stage forwarding upstream. */
    if (gateway && (e = sl_gateway_attach(b, err, sizeof err))) {
        SL_ERROR("gateway", "start-up failed", "reason=\"%s\"", err);
        fprintf(stderr, "sluice: %s\n", err);
        sl_broker_free(b);
        return e == SL_ECONFIG ? 2 : 1;
    }
    int rc = sl_broker_run(b);
    sl_broker_free(b);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(k_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc - 2, argv + 2, false);
    if (!strcmp(argv[1], "gateway")) return cmd_serve(argc - 2, argv + 2, true);
    if (!strcmp(argv[1], "config")) return cmd_config();
    if (!strcmp(argv[1], "user")) return sl_cli_user(argc - 2, argv + 2);
    if (!strcmp(argv[1], "acl")) return sl_cli_acl(argc - 2, argv + 2);
    if (!strcmp(argv[1], "iam")) return sl_cli_iam(argc - 2, argv + 2);
    if (!strcmp(argv[1], "audit")) return sl_audit_cli(argc - 2, argv + 2);
    if (!strcmp(argv[1], "keys")) return sl_cli_keys(argc - 2, argv + 2);
    if (!strcmp(argv[1], "protect")) return sl_cli_protect(argc - 2, argv + 2);
    if (!strcmp(argv[1], "reveal")) return sl_cli_reveal(argc - 2, argv + 2);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    fprintf(stderr, "sluice: unknown command \"%s\" (see sluice --help)\n", argv[1]);
    return 2;
}
