/* `sluice user add|passwd|rm|list`: manages the SCRAM credential store the broker reads. Passwords
 * come from stdin or a file, never from the command line (argv is visible in ps). */
#include "cli/sl_cli_user.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_auth.h"
#include "auth/sl_credstore.h"
#include "base/sl_config.h"

static const char k_user_usage[] =
    "NAME\n"
    "    sluice user - manage SASL/SCRAM users\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice user add NAME    [STORE] [--mechanism M]... [--iterations N]\n"
    "                            [--password-file F | --password-stdin]\n"
    "    sluice user passwd NAME [STORE] [--mechanism M]... [--iterations N]\n"
    "                            [--password-file F | --password-stdin]\n"
    "    sluice user rm NAME     [STORE] [--mechanism M]\n"
    "    sluice user list        [STORE]\n"
    "\n"
    "    STORE is -c server.properties (the store is sluice.sasl.credentials.file, or\n"
    "    <log.dirs>/sluice-users) or --store PATH.\n"
    "\n"
    "DESCRIPTION\n"
    "    The store holds salts, StoredKey/ServerKey and iteration counts, never passwords. It is\n"
    "    written atomically with mode 0600; a running broker picks changes up at the next login.\n"
    "    Without --mechanism, add and passwd write both SCRAM-SHA-512 and SCRAM-SHA-256 (PLAIN\n"
    "    logins check the same credentials). The password is the first line of the file or of\n"
    "    stdin (the default), without its newline. Iterations: 4096 to 16384; the default is\n"
    "    sluice.sasl.scram.iterations of -c FILE (4096 without -c). Unknown names are answered\n"
    "    with that count too, so a user given another one can be told apart before login.\n"
    "    list prints names, mechanisms and iteration counts only.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success, 1 on failure, 2 on a usage error.\n";

static int usage_error(const char *msg) {
    fprintf(stderr, "sluice user: %s (see sluice user --help)\n", msg);
    return 2;
}

/* Reads the first line of `f` into buf; false if empty or too long. */
static bool read_password(FILE *f, char *buf, size_t cap, size_t *len) {
    if (!fgets(buf, (int)cap, f)) return false;
    size_t n = strlen(buf);
    if (n == cap - 1 && buf[n - 1] != '\n') return false;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    buf[n] = 0;
    *len = n;
    return n > 0;
}

int sl_cli_user(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_user_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *cmd = argv[0], *name = NULL, *store_path = NULL, *cfg_path = NULL;
    const char *pw_file = NULL;
    bool pw_stdin = false;
    int mechs[2] = {0, 0}, nmech = 0;
    long iterations = 0; /* 0: the configured default */
    bool is_list = !strcmp(cmd, "list");
    if (!is_list && strcmp(cmd, "add") && strcmp(cmd, "passwd") && strcmp(cmd, "rm"))
        return usage_error("unknown subcommand");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_user_usage, stdout);
            return 0;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && more) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "--store") && more) {
            store_path = argv[++i];
        } else if (!strcmp(a, "--mechanism") && more) {
            const char *m = argv[++i];
            int code = sl_scram_mech_from_name(m, strlen(m));
            if (!code) return usage_error("--mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512");
            if (nmech < 2 && (nmech == 0 || mechs[0] != code)) mechs[nmech++] = code;
        } else if (!strcmp(a, "--iterations") && more) {
            char *end;
            iterations = strtol(argv[++i], &end, 10);
            if (*end || iterations < SL_SCRAM_MIN_ITER || iterations > SL_SCRAM_MAX_ITER)
                return usage_error("--iterations must be between 4096 and 16384");
        } else if (!strcmp(a, "--password-file") && more) {
            pw_file = argv[++i];
        } else if (!strcmp(a, "--password-stdin")) {
            pw_stdin = true;
        } else if (!strcmp(a, "--password")) {
            return usage_error("passwords are not taken on the command line (ps shows them); "
                               "use --password-stdin or --password-file");
        } else if (a[0] != '-' && !name && !is_list) {
            name = a;
        } else {
            return usage_error("unexpected argument");
        }
    }
    if (!is_list && !name) return usage_error("missing user NAME");
    if (pw_file && pw_stdin) return usage_error("give one of --password-file, --password-stdin");
    char path[SL_CFG_STR_MAX + 32], err[512];
    sl_config cfg;
    sl_config_defaults(&cfg);
    if (cfg_path && sl_config_load(&cfg, cfg_path, err, sizeof err)) {
        fprintf(stderr, "sluice user: %s\n", err);
        return 2;
    }
    if (store_path)
        snprintf(path, sizeof path, "%s", store_path);
    else
        sl_auth_store_path(&cfg, path, sizeof path);
    if (!iterations) iterations = cfg.sluice_sasl_scram_iterations;
    if (iterations != cfg.sluice_sasl_scram_iterations)
        fprintf(stderr,
                "sluice user: warning: %ld iterations differ from sluice.sasl.scram.iterations "
                "(%d), which unknown names are answered with: this user's existence shows "
                "before login\n",
                iterations, (int)cfg.sluice_sasl_scram_iterations);
    bool writes = !is_list;
    sl_credstore *st = NULL;
    sl_err e = sl_credstore_open(path, !strcmp(cmd, "add"), &st, err, sizeof err);
    if (e) {
        fprintf(stderr, "sluice user: %s\n", err);
        return 1;
    }
    if (is_list) {
        for (int i = 0; i < sl_credstore_count(st); i++) {
            const sl_scram_cred *c;
            const char *u = sl_credstore_at(st, i, &c);
            printf("%s %s iterations=%d\n", u, sl_scram_mech_name(c->mech), (int)c->iterations);
        }
        sl_credstore_free(st);
        return 0;
    }
    if (nmech == 0) {
        mechs[0] = SL_SCRAM_SHA_512;
        mechs[1] = SL_SCRAM_SHA_256;
        nmech = 2;
    }
    char pw[1024];
    size_t pwlen = 0;
    int rc = 0;
    if (!strcmp(cmd, "add") || !strcmp(cmd, "passwd")) {
        FILE *f = pw_file ? fopen(pw_file, "r") : stdin;
        if (!f) {
            fprintf(stderr, "sluice user: cannot open %s\n", pw_file);
            sl_credstore_free(st);
            return 1;
        }
        bool ok = read_password(f, pw, sizeof pw, &pwlen);
        if (f != stdin) fclose(f);
        if (!ok) {
            fprintf(stderr, "sluice user: no password read (first line of the %s)\n",
                    pw_file ? "file" : "standard input");
            sl_credstore_free(st);
            return 1;
        }
    }
    if (sl_credstore_lock(st)) {
        fprintf(stderr, "sluice user: cannot lock the credential store %s\n", path);
        OPENSSL_cleanse(pw, sizeof pw);
        sl_credstore_free(st);
        return 1;
    }
    size_t nl = strlen(name);
    bool exists = false;
    for (int m = 0; m < 2; m++)
        exists |= sl_credstore_find(st, name, nl, m ? SL_SCRAM_SHA_512 : SL_SCRAM_SHA_256) != NULL;
    if (!strcmp(cmd, "add") && exists) {
        fprintf(stderr, "sluice user: user %s exists (use passwd)\n", name);
        rc = 1;
    } else if (strcmp(cmd, "add") && !exists) {
        fprintf(stderr, "sluice user: no user %s\n", name);
        rc = 1;
    } else if (!strcmp(cmd, "rm")) {
        if (sl_credstore_remove(st, name, nl, nmech == 1 ? mechs[0] : 0)) {
            fprintf(stderr, "sluice user: user %s has no such credential\n", name);
            rc = 1;
        }
    } else {
        for (int m = 0; m < nmech && !rc; m++) {
            sl_scram_cred c;
            e = sl_scram_cred_from_password(mechs[m], pw, pwlen, (int32_t)iterations, &c);
            if (!e) e = sl_credstore_put(st, name, nl, &c);
            OPENSSL_cleanse(&c, sizeof c);
            if (e) {
                fprintf(stderr, "sluice user: invalid user name or credential: %s\n",
                        sl_strerror(e));
                rc = 1;
            }
        }
    }
    OPENSSL_cleanse(pw, sizeof pw);
    if (!rc && writes && (e = sl_credstore_save(st)) != SL_OK) {
        fprintf(stderr, "sluice user: cannot write %s: %s\n", path, sl_strerror(e));
        rc = 1;
    }
    sl_credstore_unlock(st);
    sl_credstore_free(st);
    return rc;
}
