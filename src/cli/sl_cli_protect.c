/* `sluice protect|reveal --policy P --topic T [-c PROPS]` (filters over libsluice: one record
 * value per line) and `sluice protect grant|revoke|list|status` (the broker's reveal grants,
 * over its control socket, through the same client as `sluice keys`). */
#include "cli/sl_cli_protect.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_config.h"
#include "cli/sl_cli_ctl.h"
#include "ctl/sl_ctl.h"
#include "protect/sl_grants.h"
#include "sluice.h"

/* A longer input line is refused rather than buffered without bound (a record this size is far
 * beyond what a broker accepts by default anyway). */
#define LINE_MAX_BYTES (16u << 20)

static const char k_protect_usage[] =
    "NAME\n"
    "    sluice protect, sluice reveal - field protection from the shell\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice protect --policy FILE --topic T [-c PROPERTIES]  < values > protected\n"
    "    sluice reveal  --policy FILE --topic T [-c PROPERTIES]  < protected > values\n"
    "    sluice protect grant  [CONN] --principal P --topic T --field F [--view V]\n"
    "    sluice protect revoke [CONN] --principal P --topic T --field F\n"
    "    sluice protect list   [CONN]\n"
    "    sluice protect status [CONN]\n"
    "\n"
    "    CONN  -c server.properties (the socket is sluice.ctl.socket, or\n"
    "          <log.dirs>/sluice-ctl.sock) or --socket PATH\n"
    "\n"
    "DESCRIPTION\n"
    "    The filters read stdin, one record value per line (the newline is not part of the\n"
    "    value), apply topic T's block of the policy FILE (the broker's\n"
    "    sluice.protect.policy.file format) as the broker would on produce (protect) or show\n"
    "    every encrypted field in clear (reveal), and write one line per record to stdout. A\n"
    "    topic without a block passes its values unchanged. A whole value redacted to null is\n"
    "    written as an empty line. -c names a properties file giving the keys (sluice.kms.*,\n"
    "    log.dirs, sluice.secrets.dir, as in the broker's configuration); without it only\n"
    "    mask and redact rules work. A value that cannot be protected (not JSON, a wrong type)\n"
    "    stops the filter: the line number and the reason (never the data) go to stderr,\n"
    "    nothing is written for that line, the lines before it have been written, and the exit\n"
    "    status is 1. reveal leaves a value that does not decrypt (a forgotten subject, a\n"
    "    shredded key) as it is.\n"
    "\n"
    "    grant, revoke, list and status manage the running broker's reveal grants: which\n"
    "    principal sees which encrypted field of which topics, and how.\n"
    "    grant    P: a principal (User:alice); T: a topic or a prefix ending in \"*\"; F: a rule\n"
    "             target as the policy writes it (value.card_number) or \"*\" (every encrypted\n"
    "             field); V: reveal (the clear value, the default), mask (the rule's\n"
    "             view-mask) or token (the rule's view-token). Replaces a grant for the same\n"
    "             principal, topic and field.\n"
    "    revoke   Removes that grant.\n"
    "    list     The grants, as JSON.\n"
    "    status   The policy in force (file, digest, topics) and the number of data subjects,\n"
    "             as JSON.\n"
    "\n"
    "EXAMPLES\n"
    "    echo '{\"card_number\":\"4111111111111111\"}' | \\\n"
    "        sluice protect --policy policy.txt --topic payments -c server.properties\n"
    "    sluice protect grant -c server.properties --principal User:fraud --topic payments \\\n"
    "        --field value.card_number --view mask\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success, 1 on failure (the reason on stderr), 2 on a usage or configuration\n"
    "    error.\n";

static int usage_error(const char *prog, const char *msg) {
    fprintf(stderr, "%s: %s (see sluice protect --help)\n", prog, msg);
    return 2;
}

/* ---- the filters ---- */

/* Reads one line (without its newline) into *buf. Returns its length, -1 at the end of the
 * input, -2 for a line longer than LINE_MAX_BYTES, -3 out of memory. */
static long read_line(FILE *in, char **buf, size_t *cap) {
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(in)) != EOF && c != '\n') {
        if (n == LINE_MAX_BYTES) return -2;
        if (n + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, nc);
            if (!nb) return -3;
            *buf = nb;
            *cap = nc;
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0) return -1;
    return (long)n;
}

static int filter(const char *prog, bool reveal, int argc, char **argv) {
    const char *policy = NULL, *topic = NULL, *props = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_protect_usage, stdout);
            return 0;
        } else if (!v) {
            return usage_error(prog, "unexpected argument or missing value");
        } else if (!strcmp(a, "--policy")) {
            policy = v;
        } else if (!strcmp(a, "--topic")) {
            topic = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            props = v;
        } else {
            return usage_error(prog, "unexpected argument");
        }
        i++;
    }
    if (!policy || !topic) return usage_error(prog, "--policy FILE and --topic T are required");
    char err[1024];
    sluice_protector *p = NULL;
    int rc = sluice_open(props, policy, &p, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err);
        /* A missing or unreadable file is a configuration error too; keys and memory are not. */
        return rc == SLUICE_EKEY || rc == SLUICE_ENOMEM ? 1 : 2;
    }
    char *line = NULL;
    size_t cap = 0;
    long n;
    long long lineno = 0;
    int status = 0;
    while ((n = read_line(stdin, &line, &cap)) >= -2) {
        if (n == -1) break;
        lineno++;
        if (n == -2) {
            fprintf(stderr, "%s: line %lld: longer than %u bytes\n", prog, lineno, LINE_MAX_BYTES);
            status = 1;
            break;
        }
        void *out = NULL;
        size_t olen = 0;
        rc = reveal ? sluice_reveal_value(p, topic, line, (size_t)n, &out, &olen, err, sizeof err)
                    : sluice_protect_value(p, topic, line, (size_t)n, &out, &olen, err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s: line %lld: %s\n", prog, lineno, err);
            status = 1;
            break;
        }
        bool ok = fwrite(out, 1, olen, stdout) == olen && putchar('\n') != EOF;
        sluice_free(out);
        if (!ok) break;
    }
    if (n == -3) {
        fprintf(stderr, "%s: out of memory\n", prog);
        status = 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        /* A reader that stopped early (| head) is no news; other write errors are. */
        if (errno != EPIPE)
            fprintf(stderr, "%s: cannot write the output: %s\n", prog, strerror(errno));
        status = 1;
    } else if (ferror(stdin)) {
        fprintf(stderr, "%s: cannot read the input\n", prog);
        status = 1;
    }
    free(line);
    sluice_close(p);
    return status;
}

/* ---- grants over the control socket ---- */

static int control(const char *cmd, int argc, char **argv) {
    const char *prog = "sluice protect";
    bool grant = !strcmp(cmd, "grant"), revoke = !strcmp(cmd, "revoke");
    const char *cfg_path = NULL, *sock = NULL, *principal = NULL, *topic = NULL, *field = NULL,
               *view = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_protect_usage, stdout);
            return 0;
        } else if (!v) {
            return usage_error(prog, "unexpected argument or missing value");
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            cfg_path = v;
        } else if (!strcmp(a, "--socket")) {
            sock = v;
        } else if (!strcmp(a, "--principal") && (grant || revoke)) {
            principal = v;
        } else if (!strcmp(a, "--topic") && (grant || revoke)) {
            topic = v;
        } else if (!strcmp(a, "--field") && (grant || revoke)) {
            field = v;
        } else if (!strcmp(a, "--view") && grant) {
            view = v;
        } else {
            return usage_error(prog, "unexpected argument");
        }
        i++;
    }
    char req[SL_CTL_LINE_MAX];
    if (grant || revoke) {
        if (!principal || !topic || !field)
            return usage_error(prog, "--principal, --topic and --field are required");
        sl_grant g = {0};
        if (strlen(principal) >= sizeof g.principal || strlen(topic) >= sizeof g.topic ||
            strlen(field) >= sizeof g.field)
            return usage_error(prog, "principal, topic or field too long");
        snprintf(g.principal, sizeof g.principal, "%s", principal);
        snprintf(g.topic, sizeof g.topic, "%s", topic);
        snprintf(g.field, sizeof g.field, "%s", field);
        if (!view) view = "reveal";
        if (!sl_view_parse(view, &g.view))
            return usage_error(prog, "--view is reveal, mask or token");
        const char *why = NULL;
        if (sl_grant_check(&g, &why) != SL_OK) {
            fprintf(stderr, "%s: %s (see sluice protect --help)\n", prog,
                    why ? why : "invalid grant");
            return 2;
        }
        if (grant)
            snprintf(req, sizeof req, "protect-grant %s %s %s %s", principal, topic, field, view);
        else
            snprintf(req, sizeof req, "protect-revoke %s %s %s", principal, topic, field);
    } else {
        snprintf(req, sizeof req, "protect-%s", cmd);
    }
    char path[SL_CFG_STR_MAX + 32];
    int rc = sl_cli_ctl_socket(prog, cfg_path, sock, path, sizeof path);
    if (rc) return rc;
    /* list and status: the broker's JSON as it comes (for jq and scripts). */
    sl_cli_ctl_view v = {.prog = prog, .ok_silent = !grant && !revoke};
    return sl_cli_ctl_exchange(path, req, &v);
}

int sl_cli_protect(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_protect_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *w = argv[0];
    if (!strcmp(w, "grant") || !strcmp(w, "revoke") || !strcmp(w, "list") || !strcmp(w, "status"))
        return control(w, argc - 1, argv + 1);
    if (w[0] != '-') return usage_error("sluice protect", "unknown subcommand");
    return filter("sluice protect", false, argc, argv);
}

int sl_cli_reveal(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_protect_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    return filter("sluice reveal", true, argc, argv);
}
