/* `sluice acl add|rm|list`: manages the ACL file the broker's authorizer reads, with flags
 * modelled on kafka-acls. Writes take the same lock as the broker's CreateAcls/DeleteAcls and
 * reload first, so neither loses the other's change; a running broker applies the new file
 * within a second, from the next request on every connection. */
#include "cli/sl_cli_acl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/sl_acl.h"
#include "acl/sl_authz.h"
#include "base/sl_config.h"

static const char k_acl_usage[] =
    "NAME\n"
    "    sluice acl - manage Kafka ACLs\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice acl add  [STORE] PRINCIPALS RESOURCES [--operation OP]... [--resource-pattern-type "
    "T]\n"
    "    sluice acl rm   [STORE] RESOURCES [PRINCIPALS] [--operation OP]... "
    "[--resource-pattern-type T]\n"
    "    sluice acl list [STORE] [RESOURCES] [--principal P]... [--resource-pattern-type T]\n"
    "\n"
    "    STORE       -c server.properties (the file is sluice.acl.file, or "
    "<log.dirs>/sluice-acls)\n"
    "                or --store PATH\n"
    "    PRINCIPALS  --allow-principal User:NAME, --deny-principal User:NAME (repeatable; User:*\n"
    "                is every principal), with --allow-host H / --deny-host H (default *)\n"
    "    RESOURCES   --topic NAME, --group NAME, --transactional-id ID, --cluster (repeatable;\n"
    "                NAME * is every resource of the type)\n"
    "\n"
    "DESCRIPTION\n"
    "    add creates one ACL per principal, host, operation and resource. --operation is one of\n"
    "    All, Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,\n"
    "    AlterConfigs, IdempotentWrite (default All). --resource-pattern-type is literal\n"
    "    (default) or prefixed; rm and list also take any (every pattern type, default for list)\n"
    "    and match (every ACL that applies to the name). rm without principals or operations\n"
    "    removes every ACL of the resources. A running broker applies changes within a second.\n"
    "\n"
    "EXAMPLES\n"
    "    sluice acl add -c server.properties --allow-principal User:payments-writer \\\n"
    "        --operation Write --topic payments\n"
    "    sluice acl add -c server.properties --allow-principal User:fraud --operation Read \\\n"
    "        --group fraud- --resource-pattern-type prefixed\n"
    "    sluice acl list -c server.properties --topic payments\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success, 1 on failure, 2 on a usage error.\n";

#define MAXV 64

typedef struct opts {
    const char *allow_pr[MAXV], *deny_pr[MAXV], *allow_host[MAXV], *deny_host[MAXV], *list_pr[MAXV];
    int nallow_pr, ndeny_pr, nallow_host, ndeny_host, nlist_pr;
    int ops[MAXV], nops;
    struct {
        int rtype;
        const char *name;
    } res[MAXV];
    int nres;
    int pattern; /* -1: not given */
} opts;

static int usage_error(const char *msg) {
    fprintf(stderr, "sluice acl: %s (see sluice acl --help)\n", msg);
    return 2;
}

static bool push(const char **v, int *n, const char *s) {
    if (*n >= MAXV) return false;
    v[(*n)++] = s;
    return true;
}

static bool push_res(opts *o, int rtype, const char *name) {
    if (o->nres >= MAXV) return false;
    o->res[o->nres].rtype = rtype;
    o->res[o->nres++].name = name;
    return true;
}

static void print_resource(const sl_acl *a) {
    printf("Current ACLs for resource `ResourcePattern(resourceType=%s, name=%s, "
           "patternType=%s)`:\n",
           sl_acl_res_name(a->rtype), a->name, sl_acl_pat_name(a->pattern));
}

static void print_entry(const sl_acl *a) {
    printf(" \t(principal=%s, host=%s, operation=%s, permissionType=%s)\n", a->principal, a->host,
           sl_acl_op_name(a->op), sl_acl_perm_name(a->perm));
}

/* Prints the bindings of `set` matching any of the filters (all when nf == 0), by resource. */
static void list(const sl_acl_set *set, const sl_acl_filter *fs, int nf) {
    size_t n = sl_acl_set_count(set);
    bool *done = calloc(n + 1, 1);
    if (!done) return;
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        const sl_acl *r = sl_acl_set_at(set, i);
        bool header = false;
        for (size_t j = i; j < n; j++) {
            const sl_acl *a = sl_acl_set_at(set, j);
            if (done[j] || a->rtype != r->rtype || a->pattern != r->pattern ||
                strcmp(a->name, r->name))
                continue;
            done[j] = true;
            bool match = nf == 0;
            for (int k = 0; k < nf && !match; k++) match = sl_acl_filter_matches(&fs[k], a);
            if (!match) continue;
            if (!header) print_resource(a);
            header = true;
            print_entry(a);
        }
        if (header) printf("\n");
    }
    free(done);
}

int sl_cli_acl(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_acl_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *cmd = argv[0], *store = NULL, *cfg_path = NULL;
    bool add = !strcmp(cmd, "add"), rm = !strcmp(cmd, "rm") || !strcmp(cmd, "remove"),
         ls = !strcmp(cmd, "list");
    if (!add && !rm && !ls) return usage_error("unknown subcommand");
    opts o;
    memset(&o, 0, sizeof o);
    o.pattern = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        const char *v = more ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_acl_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--cluster")) {
            ok = push_res(&o, SL_ACL_RES_CLUSTER, SL_ACL_CLUSTER_NAME);
            continue;
        } else if (!more) {
            return usage_error("unexpected argument or missing value");
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            cfg_path = v;
        } else if (!strcmp(a, "--store")) {
            store = v;
        } else if (!strcmp(a, "--allow-principal")) {
            ok = push(o.allow_pr, &o.nallow_pr, v);
        } else if (!strcmp(a, "--deny-principal")) {
            ok = push(o.deny_pr, &o.ndeny_pr, v);
        } else if (!strcmp(a, "--allow-host")) {
            ok = push(o.allow_host, &o.nallow_host, v);
        } else if (!strcmp(a, "--deny-host")) {
            ok = push(o.deny_host, &o.ndeny_host, v);
        } else if (!strcmp(a, "--principal")) {
            ok = push(o.list_pr, &o.nlist_pr, v);
        } else if (!strcmp(a, "--operation")) {
            int op = sl_acl_op_parse(v);
            if (op <= SL_ACL_OP_ANY || op > SL_ACL_OP_IDEMPOTENT_WRITE)
                return usage_error("unknown --operation");
            ok = o.nops < MAXV;
            if (ok) o.ops[o.nops++] = op;
        } else if (!strcmp(a, "--topic")) {
            ok = push_res(&o, SL_ACL_RES_TOPIC, v);
        } else if (!strcmp(a, "--group")) {
            ok = push_res(&o, SL_ACL_RES_GROUP, v);
        } else if (!strcmp(a, "--transactional-id")) {
            ok = push_res(&o, SL_ACL_RES_TRANSACTIONAL_ID, v);
        } else if (!strcmp(a, "--resource-pattern-type")) {
            o.pattern = sl_acl_pat_parse(v);
            if (o.pattern <= SL_ACL_PAT_UNKNOWN)
                return usage_error("--resource-pattern-type is literal, prefixed, any or match");
        } else {
            return usage_error("unexpected argument");
        }
        if (!ok) return usage_error("too many values for one flag");
        i++;
    }
    if (add && o.pattern != -1 && o.pattern != SL_ACL_PAT_LITERAL &&
        o.pattern != SL_ACL_PAT_PREFIXED)
        return usage_error("add takes --resource-pattern-type literal or prefixed");
    if (add && (!o.nallow_pr && !o.ndeny_pr)) return usage_error("add needs a principal");
    if ((add || rm) && !o.nres) return usage_error("give a resource (--topic, --group, ...)");
    if ((o.nallow_host && !o.nallow_pr) || (o.ndeny_host && !o.ndeny_pr))
        return usage_error("a host flag needs the matching principal flag");
    int pattern = o.pattern != -1 ? o.pattern : ls ? SL_ACL_PAT_ANY : SL_ACL_PAT_LITERAL;

    char path[SL_CFG_STR_MAX + 32], err[512];
    if (store) {
        snprintf(path, sizeof path, "%s", store);
    } else {
        sl_config cfg;
        sl_config_defaults(&cfg);
        if (cfg_path && sl_config_load(&cfg, cfg_path, err, sizeof err)) {
            fprintf(stderr, "sluice acl: %s\n", err);
            return 2;
        }
        sl_authz_path(&cfg, path, sizeof path);
    }
    sl_authorizer *az = NULL;
    if (sl_authorizer_new(path, "", false, &az, err, sizeof err)) {
        fprintf(stderr, "sluice acl: %s\n", err);
        return 1;
    }
    /* Up to MAXV^3 bindings or filters: principals x hosts x operations x resources. */
    size_t cap = (size_t)(o.nallow_pr + o.ndeny_pr + 1) * (size_t)(MAXV + 1) *
                 (size_t)(o.nops + 1) * (size_t)(o.nres + 1);
    sl_acl *v = calloc(cap, sizeof *v);
    if (!v) {
        sl_authorizer_free(az);
        return 1;
    }
    size_t nv = 0;
    static const char *const k_any_host[] = {"*"};
    for (int r = 0; r < o.nres || (ls && r == 0); r++) {
        sl_acl base = {r < o.nres ? o.res[r].rtype : SL_ACL_RES_ANY,
                       pattern,
                       SL_ACL_OP_ANY,
                       SL_ACL_PERM_ANY,
                       r < o.nres ? o.res[r].name : NULL,
                       NULL,
                       NULL};
        if (ls) {
            if (!o.nlist_pr) v[nv++] = base;
            for (int p = 0; p < o.nlist_pr; p++) {
                v[nv] = base;
                v[nv++].principal = o.list_pr[p];
            }
            continue;
        }
        bool any_pr = o.nallow_pr || o.ndeny_pr;
        if (rm && !any_pr) {
            for (int k = 0; k < (o.nops ? o.nops : 1); k++) {
                v[nv] = base;
                v[nv++].op = o.nops ? o.ops[k] : SL_ACL_OP_ANY;
            }
            continue;
        }
        for (int side = 0; side < 2; side++) {
            const char **prs = side ? o.deny_pr : o.allow_pr;
            int npr = side ? o.ndeny_pr : o.nallow_pr;
            const char *const *hosts = side ? o.deny_host : o.allow_host;
            int nh = side ? o.ndeny_host : o.nallow_host;
            if (!nh) hosts = add ? k_any_host : NULL, nh = add ? 1 : 0;
            for (int p = 0; p < npr; p++)
                for (int h = 0; h < (nh ? nh : 1); h++)
                    for (int k = 0; k < (o.nops ? o.nops : 1); k++) {
                        sl_acl *x = &v[nv++];
                        *x = base;
                        x->perm = side ? SL_ACL_PERM_DENY : SL_ACL_PERM_ALLOW;
                        x->principal = prs[p];
                        x->host = nh ? hosts[h] : NULL;
                        x->op = o.nops ? o.ops[k] : add ? SL_ACL_OP_ALL : SL_ACL_OP_ANY;
                    }
        }
    }
    int rc = 0;
    if (ls) {
        (void)sl_authorizer_refresh(az, true);
        list(sl_authorizer_set(az), v, (int)nv);
    } else {
        for (size_t i = 0; i < nv; i++) {
            const char *why = add ? sl_acl_invalid(&v[i]) : sl_acl_filter_invalid(&v[i]);
            if (why) {
                fprintf(stderr, "sluice acl: %s\n", why);
                rc = 2;
                break;
            }
        }
        sl_err e = rc ? SL_OK : sl_authorizer_lock(az);
        if (!rc && e) {
            fprintf(stderr, "sluice acl: cannot lock or read %s: %s\n", path, sl_strerror(e));
            rc = 1;
        }
        if (!rc) {
            const sl_acl_set *cur = sl_authorizer_set(az);
            size_t n = sl_acl_set_count(cur), nn = 0, changed = 0;
            sl_acl *next = calloc(n + nv + 1, sizeof *next);
            if (!next) rc = 1;
            for (size_t i = 0; !rc && i < n; i++) {
                const sl_acl *a = sl_acl_set_at(cur, i);
                bool gone = false;
                for (size_t k = 0; rm && k < nv && !gone; k++)
                    gone = sl_acl_filter_matches(&v[k], a);
                if (gone) {
                    char line[1024];
                    sl_acl_format(a, line, sizeof line);
                    printf("removed: %s\n", line);
                    changed++;
                } else {
                    next[nn++] = *a;
                }
            }
            for (size_t k = 0; !rc && add && k < nv; k++) {
                bool dup = false;
                for (size_t i = 0; i < nn && !dup; i++) dup = sl_acl_equal(&next[i], &v[k]);
                if (dup) continue;
                next[nn++] = v[k];
                char line[1024];
                sl_acl_format(&v[k], line, sizeof line);
                printf("added: %s\n", line);
                changed++;
            }
            sl_acl_set *s = NULL;
            if (!rc && changed && (e = sl_acl_set_build(next, nn, &s)) == SL_OK)
                e = sl_authorizer_replace(az, s);
            if (!rc && changed && e) {
                fprintf(stderr, "sluice acl: cannot write %s: %s\n", path, sl_strerror(e));
                rc = 1;
            }
            if (!rc && !changed) printf("no change\n");
            free(next);
            sl_authorizer_unlock(az);
        }
    }
    free(v);
    sl_authorizer_free(az);
    return rc;
}
