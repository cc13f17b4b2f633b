/* `sluice iam`: manages the IAM store the broker reads (users, access keys, roles, policy
 * documents and their attachments), issues role sessions and simulates policy decisions.
 * Changes take the store's writers' lock, change, save and unlock, so a running broker applies
 * them at the next login or decision. Secrets (new access keys, role sessions) are printed once
 * and cleansed; nothing else ever prints one. --json output has the AWS CLI's shapes so that
 * existing scripts parse it. */
#include "cli/sl_cli_iam.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/sl_config.h"
#include "iam/sl_iampolicy.h"
#include "iam/sl_iamstore.h"

static const char k_iam_usage[] =
    "NAME\n"
    "    sluice iam - manage IAM users, access keys, roles and policies\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice iam user add NAME [--tag K=V]...              [STORE]\n"
    "    sluice iam user rm NAME                              [STORE]\n"
    "    sluice iam user list [--json]                        [STORE]\n"
    "    sluice iam key create --user NAME [--json]           [STORE]\n"
    "    sluice iam key rotate --user NAME [--json]           [STORE]\n"
    "    sluice iam key list --user NAME [--json]             [STORE]\n"
    "    sluice iam key disable|enable|rm AKID                [STORE]\n"
    "    sluice iam role add NAME [--max-session-duration D] [--tag K=V]... [STORE]\n"
    "    sluice iam role rm NAME                              [STORE]\n"
    "    sluice iam role list [--json]                        [STORE]\n"
    "    sluice iam assume-role ROLE [--session-name S] [--duration D] [--json] [STORE]\n"
    "    sluice iam policy put NAME FILE                      [STORE]\n"
    "    sluice iam policy get|rm NAME                        [STORE]\n"
    "    sluice iam policy list [--json]                      [STORE]\n"
    "    sluice iam policy attach|detach NAME (--user U | --role R) [STORE]\n"
    "    sluice iam policy simulate (--user U | --role R) --action A --resource ARN\n"
    "                               [--source-ip IP] [--secure-transport] [--json] [STORE]\n"
    "\n"
    "    STORE is -c server.properties (the store is sluice.iam.file, or <log.dirs>/sluice-iam,\n"
    "    its key sluice.iam.key.file, or <sluice.secrets.dir>/sluice-iam.key) or --store PATH\n"
    "    --key-file PATH. ARNs use sluice.iam.account.id of -c (000000000000 without -c).\n"
    "\n"
    "DESCRIPTION\n"
    "    Users sign with access keys (AKIA..., a 40-character secret); each user has at most two,\n"
    "    so a key is rotated without downtime: key rotate creates the second key (refused while\n"
    "    the user has two), clients move to it, then key disable and key rm retire the old one.\n"
    "    Secrets are shown once, by key create, key rotate and assume-role, and stored only\n"
    "    encrypted under the IAM key. key list shows each key's status, creation, last use and\n"
    "    age in days.\n"
    "\n"
    "    Roles are assumed with assume-role, which prints temporary credentials (ASIA..., a\n"
    "    secret and a session token) valid for --duration (default 1h, at most the role's\n"
    "    --max-session-duration, default 1h, itself at most sluice.iam.max.session.duration.ms).\n"
    "    Durations: 900 s to 12 h, written 3600, 3600s, 60m or 1h.\n"
    "\n"
    "    Policies are IAM policy documents (Version 2012-10-17) with MSK's kafka-cluster:\n"
    "    actions and ARNs; put refuses a document IAM would refuse, saying why, and replaces an\n"
    "    existing one; rm refuses a policy still attached. A user or role without policies may do\n"
    "    nothing. simulate evaluates action A on resource ARN for the user (aws:username) or the\n"
    "    role (aws:PrincipalType AssumedRole) with its tags, the current time, --source-ip\n"
    "    (aws:SourceIp, absent without it) and --secure-transport (aws:SecureTransport true), and\n"
    "    prints the decision and the statement that decided it.\n"
    "\n"
    "    --json prints the shapes of the AWS CLI: key create and rotate as `aws iam\n"
    "    create-access-key`, key list as `aws iam list-access-keys`, assume-role as `aws sts\n"
    "    assume-role`; simulate as {\"Decision\": \"allowed\"|\"explicitDeny\"|\"implicitDeny\",\n"
    "    \"Policy\", \"Statement\", \"Sid\"}. Times are ISO 8601 UTC.\n"
    "\n"
    "EXAMPLES\n"
    "    sluice iam user add payments-writer --tag team=payments -c server.properties\n"
    "    sluice iam key create --user payments-writer --json -c server.properties\n"
    "    sluice iam policy put payments-write payments-write.json -c server.properties\n"
    "    sluice iam policy attach payments-write --user payments-writer -c server.properties\n"
    "    sluice iam policy simulate --user payments-writer --action kafka-cluster:WriteData \\\n"
    "        --resource arn:aws:kafka:us-east-1:000000000000:topic/sluice/UUID/payments \\\n"
    "        --secure-transport -c server.properties\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success (simulate: allowed), 1 on failure (simulate: denied), 2 on a usage error.\n";

#define P "sluice iam: "

enum {
    O_JSON = 1 << 0,
    O_TAG = 1 << 1,
    O_USER = 1 << 2,
    O_ROLE = 1 << 3,
    O_MAXSESS = 1 << 4,
    O_SESSION = 1 << 5,
    O_DURATION = 1 << 6,
    O_ACTION = 1 << 7,
    O_RESOURCE = 1 << 8,
    O_SRCIP = 1 << 9,
    O_SECURE = 1 << 10,
};

typedef enum { W_READ, W_CHANGE, W_CREATE } iam_write;

typedef struct iam_cmd {
    const char *group, *verb; /* verb NULL: the group is the command (assume-role) */
    int npos;                 /* positional arguments */
    int opts;                 /* O_* allowed */
    iam_write write;          /* W_CREATE: creates a missing store */
} iam_cmd;

static const iam_cmd k_cmds[] = {
    {"user", "add", 1, O_TAG, W_CREATE},
    {"user", "rm", 1, 0, W_CHANGE},
    {"user", "list", 0, O_JSON, W_READ},
    {"key", "create", 0, O_USER | O_JSON, W_CHANGE},
    {"key", "rotate", 0, O_USER | O_JSON, W_CHANGE},
    {"key", "list", 0, O_USER | O_JSON, W_READ},
    {"key", "disable", 1, 0, W_CHANGE},
    {"key", "enable", 1, 0, W_CHANGE},
    {"key", "rm", 1, 0, W_CHANGE},
    {"role", "add", 1, O_MAXSESS | O_TAG, W_CREATE},
    {"role", "rm", 1, 0, W_CHANGE},
    {"role", "list", 0, O_JSON, W_READ},
    {"assume-role", NULL, 1, O_SESSION | O_DURATION | O_JSON, W_READ},
    {"policy", "put", 2, 0, W_CREATE},
    {"policy", "get", 1, 0, W_READ},
    {"policy", "rm", 1, 0, W_CHANGE},
    {"policy", "list", 0, O_JSON, W_READ},
    {"policy", "attach", 1, O_USER | O_ROLE, W_CHANGE},
    {"policy", "detach", 1, O_USER | O_ROLE, W_CHANGE},
    {"policy", "simulate", 0, O_USER | O_ROLE | O_ACTION | O_RESOURCE | O_SRCIP | O_SECURE | O_JSON,
     W_READ},
};

#define TAG_KV_MAX 512

typedef struct iam_args {
    const iam_cmd *cmd;
    const char *pos[2];
    int npos;
    const char *cfg_path, *store, *keyfile;
    const char *user, *role, *session, *action, *resource, *source_ip;
    bool json, secure;
    int64_t duration_s, max_session_s; /* 0: not given */
    sl_iam_tag tags[SL_IAM_MAX_TAGS];
    size_t ntags;
    char tagbuf[SL_IAM_MAX_TAGS][TAG_KV_MAX];
    char account[16];
    sl_config cfg;
} iam_args;

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(P, stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see sluice iam --help)\n", stderr);
    va_end(ap);
    return 2;
}

/* "3600", "3600s", "60m", "1h" into seconds within 900 s .. 12 h; -1 otherwise. */
static int64_t parse_duration(const char *s) {
    if (!isdigit((unsigned char)s[0])) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || v > 1000000) return -1;
    int64_t mul = 1;
    if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 's')
        end++;
    if (*end) return -1;
    int64_t d = (int64_t)v * mul;
    return d >= 900 && d <= 43200 ? d : -1;
}

/* ISO 8601 UTC: "2026-12-06T20:00:00Z". */
static const char *iso8601(int64_t s, char buf[32]) {
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0: overlong forms, surrogates and
 * code points past U+10FFFF are invalid, as is a sequence cut short by the terminating NUL. */
static size_t utf8_seq(const unsigned char *p) {
    unsigned c = p[0], cp, min;
    size_t n;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0)
        n = 2, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : n;
}

/* A JSON string literal (quotes included): valid UTF-8 passes through, a byte that does not
 * begin a valid sequence becomes U+FFFD, so the output always parses (tag values are free
 * text from the command line). */
static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else if (n == 0)
            fputs("\\ufffd", stdout);
        else
            fwrite(p, 1, n, stdout);
        p += n ? n : 1;
    }
    putchar('"');
}

static bool session_name_valid(const char *s) {
    size_t n = strlen(s);
    if (n < 2 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_+=,.@-", s[i])) return false;
    return true;
}

static int parse_args(int argc, char **argv, iam_args *a) {
    const char *group = argv[0], *verb = NULL;
    int first = 1;
    bool group_known = false;
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) {
        if (strcmp(k_cmds[i].group, group)) continue;
        group_known = true;
        if (!k_cmds[i].verb) {
            a->cmd = &k_cmds[i];
            break;
        }
        if (argc < 2) return usage_error("%s: missing subcommand", group);
        verb = argv[1];
        first = 2;
        if (!strcmp(k_cmds[i].verb, verb)) {
            a->cmd = &k_cmds[i];
            break;
        }
    }
    if (!group_known) return usage_error("unknown command \"%s\"", group);
    if (!a->cmd) return usage_error("unknown subcommand \"%s\"", verb);
    int opts = a->cmd->opts;
    for (int i = first; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int flag = 0;
        const char **dst = NULL;
        if (!strcmp(o, "--json")) {
            flag = O_JSON;
        } else if (!strcmp(o, "--secure-transport")) {
            flag = O_SECURE;
        } else if (!strcmp(o, "-c") || !strcmp(o, "--config")) {
            dst = &a->cfg_path;
        } else if (!strcmp(o, "--store")) {
            dst = &a->store;
        } else if (!strcmp(o, "--key-file")) {
            dst = &a->keyfile;
        } else if (!strcmp(o, "--user")) {
            flag = O_USER, dst = &a->user;
        } else if (!strcmp(o, "--role")) {
            flag = O_ROLE, dst = &a->role;
        } else if (!strcmp(o, "--session-name")) {
            flag = O_SESSION, dst = &a->session;
        } else if (!strcmp(o, "--action")) {
            flag = O_ACTION, dst = &a->action;
        } else if (!strcmp(o, "--resource")) {
            flag = O_RESOURCE, dst = &a->resource;
        } else if (!strcmp(o, "--source-ip")) {
            flag = O_SRCIP, dst = &a->source_ip;
        } else if (!strcmp(o, "--tag")) {
            flag = O_TAG;
        } else if (!strcmp(o, "--duration")) {
            flag = O_DURATION;
        } else if (!strcmp(o, "--max-session-duration")) {
            flag = O_MAXSESS;
        } else if (o[0] == '-' && o[1]) {
            return usage_error("unknown option %s", o);
        } else {
            if (a->npos == a->cmd->npos) return usage_error("unexpected argument \"%s\"", o);
            a->pos[a->npos++] = o;
            continue;
        }
        if (flag && !(opts & flag)) return usage_error("%s does not apply here", o);
        if (flag == O_JSON) {
            a->json = true;
            continue;
        }
        if (flag == O_SECURE) {
            a->secure = true;
            continue;
        }
        if (!v || !*v) return usage_error("%s needs a value", o);
        i++;
        if (dst) {
            if (*dst) return usage_error("%s given twice", o);
            *dst = v;
        } else if (flag == O_TAG) {
            if (a->ntags == SL_IAM_MAX_TAGS)
                return usage_error("more than %d tags", SL_IAM_MAX_TAGS);
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || strlen(v) >= TAG_KV_MAX)
                return usage_error("--tag expects KEY=VALUE, got \"%s\"", v);
            char *kv = a->tagbuf[a->ntags];
            snprintf(kv, TAG_KV_MAX, "%s", v);
            kv[eq - v] = 0;
            a->tags[a->ntags++] = (sl_iam_tag){kv, kv + (eq - v) + 1};
        } else {
            int64_t d = parse_duration(v);
            if (d < 0)
                return usage_error("%s must be 900s to 12h (3600, 3600s, 60m or 1h), got \"%s\"", o,
                                   v);
            *(flag == O_DURATION ? &a->duration_s : &a->max_session_s) = d;
        }
    }
    if (a->npos < a->cmd->npos) {
        const char *what = !strcmp(a->cmd->group, "key")                 ? "access key id AKID"
                           : !strcmp(a->cmd->group, "assume-role")       ? "ROLE"
                           : !strcmp(a->cmd->group, "policy") && a->npos ? "FILE"
                                                                         : "NAME";
        return usage_error("missing %s", what);
    }
    if ((opts & O_USER) && !(opts & O_ROLE) && !a->user) return usage_error("missing --user");
    if ((opts & O_ROLE) && !a->user == !a->role)
        return usage_error("give exactly one of --user, --role");
    if ((opts & O_ACTION) && (!a->action || !a->resource))
        return usage_error("simulate needs --action and --resource");
    if (a->source_ip) {
        unsigned char addr[16];
        if (inet_pton(AF_INET, a->source_ip, addr) != 1 &&
            inet_pton(AF_INET6, a->source_ip, addr) != 1)
            return usage_error("--source-ip must be an IPv4 or IPv6 address, got \"%s\"",
                               a->source_ip);
    }
    if (a->session && !session_name_valid(a->session))
        return usage_error("--session-name must be 2 to 64 of [A-Za-z0-9_+=,.@-], got \"%s\"",
                           a->session);
    if (!a->store != !a->keyfile) return usage_error("--store and --key-file go together");
    return 0;
}

/* ---- users ---- */

static bool user_exists(const sl_iamstore *s, const char *name) {
    for (int i = 0; i < sl_iamstore_user_count(s); i++)
        if (!strcmp(sl_iamstore_user_at(s, i), name)) return true;
    return false;
}

static bool role_exists(const sl_iamstore *s, const char *name, int64_t *max_s) {
    for (int i = 0; i < sl_iamstore_role_count(s); i++) {
        int64_t m = 0;
        const char *r = sl_iamstore_role_at(s, i, &m);
        if (r && !strcmp(r, name)) {
            if (max_s) *max_s = m;
            return true;
        }
    }
    return false;
}

/* The tags and attached policies of a user or role (borrowed from the store). */
typedef struct iam_attached {
    const sl_iam_policy *pols[SL_IAM_MAX_ATTACHED];
    size_t npols;
    sl_iam_tag tags[SL_IAM_MAX_TAGS];
    size_t ntags;
} iam_attached;

static void attached_of(const sl_iamstore *s, bool role, const char *name, iam_attached *out) {
    sl_iam_identity id = {.role = role};
    snprintf(id.name, sizeof id.name, "%s", name);
    if (role) snprintf(id.session, sizeof id.session, "sluice-iam-cli");
    out->ntags = 0;
    out->npols = sl_iamstore_policies_for(s, &id, out->pols, SL_IAM_MAX_ATTACHED, out->tags,
                                          SL_IAM_MAX_TAGS, &out->ntags);
}

static void print_tags_text(const iam_attached *at) {
    for (size_t t = 0; t < at->ntags; t++)
        printf("%s%s=%s", t ? "," : " tags=", at->tags[t].key, at->tags[t].value);
    for (size_t p = 0; p < at->npols; p++)
        printf("%s%s", p ? "," : " policies=", sl_iam_policy_name(at->pols[p]));
}

static void print_tags_json(const iam_attached *at) {
    printf(", \"Tags\": [");
    for (size_t t = 0; t < at->ntags; t++) {
        printf("%s{\"Key\": ", t ? ", " : "");
        json_str(at->tags[t].key);
        printf(", \"Value\": ");
        json_str(at->tags[t].value);
        putchar('}');
    }
    printf("], \"AttachedPolicies\": [");
    for (size_t p = 0; p < at->npols; p++) {
        if (p) printf(", ");
        json_str(sl_iam_policy_name(at->pols[p]));
    }
    putchar(']');
}

static int user_list(const sl_iamstore *s, const iam_args *a) {
    int n = s ? sl_iamstore_user_count(s) : 0;
    if (a->json) printf("{\"Users\": [");
    for (int i = 0; i < n; i++) {
        const char *u = sl_iamstore_user_at(s, i);
        iam_attached at;
        attached_of(s, false, u, &at);
        char arn[320];
        snprintf(arn, sizeof arn, "arn:aws:iam::%s:user/%s", a->account, u);
        if (a->json) {
            printf("%s{\"Path\": \"/\", \"UserName\": ", i ? ", " : "");
            json_str(u);
            printf(", \"Arn\": ");
            json_str(arn);
            print_tags_json(&at);
            putchar('}');
        } else {
            printf("%s %s", u, arn);
            print_tags_text(&at);
            putchar('\n');
        }
    }
    if (a->json) printf("]}\n");
    return 0;
}

/* ---- keys ---- */

/* Prints a new key once (create, rotate) and cleanses the secret. */
static void print_new_key(const iam_args *a, const char *akid, char *secret, int64_t now) {
    char ts[32];
    if (a->json) {
        printf("{\"AccessKey\": {\"UserName\": ");
        json_str(a->user);
        printf(", \"AccessKeyId\": \"%s\", \"Status\": \"Active\", \"SecretAccessKey\": \"%s\", "
               "\"CreateDate\": \"%s\"}}\n",
               akid, secret, iso8601(now, ts));
    } else {
        printf("AccessKeyId: %s\nSecretAccessKey: %s\n", akid, secret);
    }
    fflush(stdout);
    OPENSSL_cleanse(secret, SL_IAM_SECRET_LEN + 1);
}

static int key_list(const sl_iamstore *s, const iam_args *a, int64_t now) {
    sl_iam_key_info keys[SL_IAM_MAX_KEYS];
    int n = sl_iamstore_user_keys(s, a->user, keys, SL_IAM_MAX_KEYS);
    if (n < 0) {
        fprintf(stderr, P "no user %s\n", a->user);
        return 1;
    }
    if (n > SL_IAM_MAX_KEYS) n = SL_IAM_MAX_KEYS;
    char c[32], l[32];
    if (a->json) {
        printf("{\"AccessKeyMetadata\": [");
        for (int i = 0; i < n; i++) {
            printf("%s{\"UserName\": ", i ? ", " : "");
            json_str(a->user);
            printf(", \"AccessKeyId\": \"%s\", \"Status\": \"%s\", \"CreateDate\": \"%s\"",
                   keys[i].akid, keys[i].active ? "Active" : "Inactive",
                   iso8601(keys[i].created_s, c));
            if (keys[i].last_used_s > 0)
                printf(", \"LastUsedDate\": \"%s\"", iso8601(keys[i].last_used_s, l));
            putchar('}');
        }
        printf("]}\n");
        return 0;
    }
    printf("%-20s  %-8s  %-20s  %-20s  %s\n", "ACCESS KEY ID", "STATUS", "CREATED", "LAST USED",
           "AGE (DAYS)");
    for (int i = 0; i < n; i++) {
        int64_t age = now > keys[i].created_s ? (now - keys[i].created_s) / 86400 : 0;
        printf("%-20s  %-8s  %-20s  %-20s  %lld\n", keys[i].akid,
               keys[i].active ? "Active" : "Inactive", iso8601(keys[i].created_s, c),
               keys[i].last_used_s > 0 ? iso8601(keys[i].last_used_s, l) : "never", (long long)age);
    }
    return 0;
}

/* ---- roles ---- */

static int role_list(const sl_iamstore *s, const iam_args *a) {
    int n = s ? sl_iamstore_role_count(s) : 0;
    if (a->json) printf("{\"Roles\": [");
    for (int i = 0; i < n; i++) {
        int64_t max_s = 0;
        const char *r = sl_iamstore_role_at(s, i, &max_s);
        iam_attached at;
        attached_of(s, true, r, &at);
        char arn[320];
        snprintf(arn, sizeof arn, "arn:aws:iam::%s:role/%s", a->account, r);
        if (a->json) {
            printf("%s{\"Path\": \"/\", \"RoleName\": ", i ? ", " : "");
            json_str(r);
            printf(", \"Arn\": ");
            json_str(arn);
            printf(", \"MaxSessionDuration\": %lld", (long long)max_s);
            print_tags_json(&at);
            putchar('}');
        } else {
            printf("%s %s max-session-duration=%llds", r, arn, (long long)max_s);
            print_tags_text(&at);
            putchar('\n');
        }
    }
    if (a->json) printf("]}\n");
    return 0;
}

static int assume_role(sl_iamstore *s, const iam_args *a, int64_t now) {
    const char *role = a->pos[0];
    int64_t max_s = 0;
    if (!role_exists(s, role, &max_s)) {
        fprintf(stderr, P "no role %s\n", role);
        return 1;
    }
    int64_t cap = a->cfg.sluice_iam_max_session_duration_ms / 1000;
    int64_t dur = a->duration_s ? a->duration_s : (max_s < 3600 ? max_s : 3600);
    if (dur > max_s) {
        fprintf(stderr, P "--duration %llds exceeds role %s's maximum session duration (%llds)\n",
                (long long)dur, role, (long long)max_s);
        return 1;
    }
    if (dur > cap) {
        fprintf(stderr, P "--duration %llds exceeds sluice.iam.max.session.duration.ms (%llds)\n",
                (long long)dur, (long long)cap);
        return 1;
    }
    char session[80];
    if (a->session)
        snprintf(session, sizeof session, "%s", a->session);
    else
        snprintf(session, sizeof session, "sluice-session-%lld", (long long)now);
    char akid[SL_IAM_AKID_LEN + 1], secret[SL_IAM_SECRET_LEN + 1], token[SL_IAM_TOKEN_MAX];
    int64_t expiry = 0;
    sl_err e = sl_iamstore_assume_role(s, role, session, dur, now, akid, secret, token, &expiry);
    if (e) {
        OPENSSL_cleanse(secret, sizeof secret);
        OPENSSL_cleanse(token, sizeof token);
        fprintf(stderr, P "cannot assume role %s: %s\n", role,
                e == SL_ENOTFOUND ? "no such role" : sl_strerror(e));
        return 1;
    }
    if (a->json) {
        char ts[32];
        printf("{\"Credentials\": {\"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"%s\", "
               "\"SessionToken\": ",
               akid, secret);
        json_str(token);
        printf(", \"Expiration\": \"%s\"}, \"AssumedRoleUser\": {\"AssumedRoleId\": ",
               iso8601(expiry, ts));
        char id[SL_IAM_AKID_LEN + 2 + sizeof session], arn[400];
        snprintf(id, sizeof id, "%s:%s", akid, session);
        snprintf(arn, sizeof arn, "arn:aws:sts::%s:assumed-role/%s/%s", a->account, role, session);
        json_str(id);
        printf(", \"Arn\": ");
        json_str(arn);
        printf("}}\n");
    } else {
        printf("AccessKeyId: %s\nSecretAccessKey: %s\nSessionToken: %s\n", akid, secret, token);
    }
    fflush(stdout);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(token, sizeof token);
    return 0;
}

/* ---- policies ---- */

static int policy_list(const sl_iamstore *s, const iam_args *a) {
    int n = s ? sl_iamstore_policy_count(s) : 0;
    if (a->json) printf("{\"Policies\": [");
    for (int i = 0; i < n; i++) {
        const char *p = sl_iamstore_policy_at(s, i);
        char arn[320];
        snprintf(arn, sizeof arn, "arn:aws:iam::%s:policy/%s", a->account, p);
        if (a->json) {
            printf("%s{\"PolicyName\": ", i ? ", " : "");
            json_str(p);
            printf(", \"Arn\": ");
            json_str(arn);
            putchar('}');
        } else {
            printf("%s\n", p);
        }
    }
    if (a->json) printf("]}\n");
    return 0;
}

/* Reads a policy document (FILE or "-" for stdin), at most SL_IAM_POLICY_MAX_BYTES. */
static char *read_doc(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, P "cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(SL_IAM_POLICY_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, SL_IAM_POLICY_MAX_BYTES + 1, f) : 0;
    bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad || n > SL_IAM_POLICY_MAX_BYTES) {
        fprintf(stderr, P "cannot read %s: %s\n", path,
                !buf  ? "out of memory"
                : bad ? "read error"
                      : "larger than 65536 bytes");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int simulate(const sl_iamstore *s, const iam_args *a, int64_t now) {
    bool role = a->role != NULL;
    const char *name = role ? a->role : a->user;
    if (role ? !role_exists(s, name, NULL) : !user_exists(s, name)) {
        fprintf(stderr, P "no %s %s\n", role ? "role" : "user", name);
        return 1;
    }
    iam_attached at;
    attached_of(s, role, name, &at);
    /* aws:PrincipalArn of a role session is the role's ARN, as in IAM. */
    char arn[320];
    snprintf(arn, sizeof arn, "arn:aws:iam::%s:%s/%s", a->account, role ? "role" : "user", name);
    sl_iam_ctx ctx = {
        .source_ip = a->source_ip,
        .secure_transport = a->secure,
        .now_s = now,
        .tags = at.tags,
        .ntags = at.ntags,
        .username = role ? NULL : name,
        .principal_arn = arn,
        .principal_type = role ? "AssumedRole" : "User",
    };
    sl_iam_why why = {NULL, -1, ""};
    sl_iam_effect eff = sl_iam_evaluate(at.pols, at.npols, a->action, a->resource, &ctx, &why);
    bool has = eff != SL_IAM_IMPLICIT_DENY && why.policy;
    const char *sid = why.sid ? why.sid : "";
    if (a->json) {
        printf("{\"Decision\": \"%s\", \"Policy\": ", eff == SL_IAM_ALLOW ? "allowed"
                                                      : eff == SL_IAM_EXPLICIT_DENY
                                                          ? "explicitDeny"
                                                          : "implicitDeny");
        if (has)
            json_str(why.policy);
        else
            printf("null");
        if (has)
            printf(", \"Statement\": %d, \"Sid\": ", why.statement);
        else
            printf(", \"Statement\": null, \"Sid\": ");
        if (has && *sid)
            json_str(sid);
        else
            printf("null");
        printf("}\n");
    } else if (eff == SL_IAM_IMPLICIT_DENY) {
        printf("denied: implicit deny (no statement of %zu attached polic%s allows %s on %s)\n",
               at.npols, at.npols == 1 ? "y" : "ies", a->action, a->resource);
    } else {
        printf("%s policy %s statement %d",
               eff == SL_IAM_ALLOW ? "allowed:" : "denied: explicit deny by",
               why.policy ? why.policy : "?", why.statement);
        if (*sid) printf(" (Sid %s)", sid);
        putchar('\n');
    }
    return eff == SL_IAM_ALLOW ? 0 : 1;
}

/* ---- changes ---- */

/* One change under the lock; prints what failed and returns the exit status. */
static int change(sl_iamstore *s, const iam_args *a, int64_t now) {
    const iam_cmd *c = a->cmd;
    const char *n0 = a->pos[0];
    char err[512] = "";
    sl_err e = SL_OK;
    char akid[SL_IAM_AKID_LEN + 1] = "", secret[SL_IAM_SECRET_LEN + 1] = "";
    bool new_key = false;
    if (!strcmp(c->group, "user")) {
        if (!strcmp(c->verb, "add")) {
            e = sl_iamstore_user_add(s, n0, a->tags, a->ntags, now);
            if (e == SL_EEXISTS) snprintf(err, sizeof err, "user %s exists", n0);
            if (e == SL_EINVAL)
                snprintf(err, sizeof err,
                         "invalid user name %s or tag (names: 1 to 128 of [A-Za-z0-9+=,.@_-])", n0);
        } else {
            e = sl_iamstore_user_rm(s, n0);
            if (e == SL_ENOTFOUND) snprintf(err, sizeof err, "no user %s", n0);
        }
    } else if (!strcmp(c->group, "key")) {
        if (!strcmp(c->verb, "create") || !strcmp(c->verb, "rotate")) {
            sl_iam_key_info keys[SL_IAM_MAX_KEYS];
            int n = sl_iamstore_user_keys(s, a->user, keys, SL_IAM_MAX_KEYS);
            if (n < 0) {
                e = SL_ENOTFOUND;
                snprintf(err, sizeof err, "no user %s", a->user);
            } else if (n >= SL_IAM_MAX_KEYS) {
                e = SL_ETOOLARGE;
                snprintf(err, sizeof err,
                         "user %s already has %d access keys, the most a user may have: "
                         "disable and remove the old one first (sluice iam key disable AKID; "
                         "sluice iam key rm AKID)",
                         a->user, SL_IAM_MAX_KEYS);
            } else if (!strcmp(c->verb, "rotate") && n == 0) {
                e = SL_ESTATE;
                snprintf(err, sizeof err, "user %s has no access key to rotate (use key create)",
                         a->user);
            } else {
                e = sl_iamstore_key_create(s, a->user, now, akid, secret);
                new_key = !e;
                if (e == SL_ETOOLARGE)
                    snprintf(err, sizeof err, "user %s already has %d access keys", a->user,
                             SL_IAM_MAX_KEYS);
            }
        } else if (!strcmp(c->verb, "rm")) {
            e = sl_iamstore_key_rm(s, n0);
            if (e == SL_ENOTFOUND) snprintf(err, sizeof err, "no access key %s", n0);
        } else {
            e = sl_iamstore_key_set_active(s, n0, !strcmp(c->verb, "enable"));
            if (e == SL_ENOTFOUND) snprintf(err, sizeof err, "no access key %s", n0);
        }
    } else if (!strcmp(c->group, "role")) {
        if (!strcmp(c->verb, "add")) {
            int64_t max_s = a->max_session_s ? a->max_session_s : 3600;
            int64_t cap = a->cfg.sluice_iam_max_session_duration_ms / 1000;
            if (max_s > cap) {
                fprintf(stderr,
                        P "--max-session-duration %llds exceeds "
                          "sluice.iam.max.session.duration.ms (%llds)\n",
                        (long long)max_s, (long long)cap);
                return 1; /* nothing secret held yet */
            }
            e = sl_iamstore_role_add(s, n0, max_s, a->tags, a->ntags);
            if (e == SL_EEXISTS) snprintf(err, sizeof err, "role %s exists", n0);
            if (e == SL_EINVAL)
                snprintf(err, sizeof err,
                         "invalid role name %s or tag (names: 1 to 128 of [A-Za-z0-9+=,.@_-])", n0);
        } else {
            e = sl_iamstore_role_rm(s, n0);
            if (e == SL_ENOTFOUND) snprintf(err, sizeof err, "no role %s", n0);
        }
    } else if (!strcmp(c->verb, "put")) {
        size_t len = 0;
        char *doc = read_doc(a->pos[1], &len);
        if (!doc) return 1; /* nothing secret held yet */
        char perr[400] = "";
        e = sl_iamstore_policy_put(s, n0, doc, len, perr, sizeof perr);
        free(doc);
        if (e)
            snprintf(err, sizeof err, "policy %s refused: %s", n0, *perr ? perr : sl_strerror(e));
    } else if (!strcmp(c->verb, "rm")) {
        e = sl_iamstore_policy_rm(s, n0);
        if (e == SL_ENOTFOUND) snprintf(err, sizeof err, "no policy %s", n0);
        if (e == SL_ESTATE) snprintf(err, sizeof err, "policy %s is attached: detach it first", n0);
    } else {
        bool attach = !strcmp(c->verb, "attach"), role = a->role != NULL;
        const char *t = role ? a->role : a->user, *kind = role ? "role" : "user";
        e = attach ? sl_iamstore_attach(s, n0, role, t) : sl_iamstore_detach(s, n0, role, t);
        if (e == SL_ENOTFOUND) {
            if (!sl_iamstore_policy_get(s, n0, &(size_t){0}))
                snprintf(err, sizeof err, "no policy %s", n0);
            else if (role ? !role_exists(s, t, NULL) : !user_exists(s, t))
                snprintf(err, sizeof err, "no %s %s", kind, t);
            else
                snprintf(err, sizeof err, "policy %s is not attached to %s %s", n0, kind, t);
        }
        if (e == SL_EEXISTS)
            snprintf(err, sizeof err, "policy %s is already attached to %s %s", n0, kind, t);
        if (e == SL_ETOOLARGE)
            snprintf(err, sizeof err, "%s %s already has %d policies", kind, t,
                     SL_IAM_MAX_ATTACHED);
    }
    int rc = 0;
    if (e) {
        fprintf(stderr, P "%s\n", *err ? err : sl_strerror(e));
        rc = 1;
    } else if ((e = sl_iamstore_save(s)) != SL_OK) {
        fprintf(stderr, P "cannot write %s: %s\n", sl_iamstore_path(s), sl_strerror(e));
        rc = 1;
    } else if (new_key) {
        /* Printed only once saved: a key that was not stored is never shown. */
        print_new_key(a, akid, secret, now);
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

int sl_cli_iam(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_iam_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(k_iam_usage, stdout);
            return 0;
        }
    iam_args *a = calloc(1, sizeof *a);
    if (!a) {
        fputs(P "out of memory\n", stderr);
        return 1;
    }
    int rc = parse_args(argc, argv, a);
    if (rc) goto out;
    char err[512];
    sl_config_defaults(&a->cfg);
    if (a->cfg_path && sl_config_load(&a->cfg, a->cfg_path, err, sizeof err)) {
        fprintf(stderr, P "%s\n", err);
        rc = 2;
        goto out;
    }
    const char *acct = a->cfg.sluice_iam_account_id;
    bool acct_ok = strlen(acct) == 12;
    for (size_t i = 0; acct_ok && i < 12; i++) acct_ok = isdigit((unsigned char)acct[i]);
    if (!acct_ok) {
        fprintf(stderr, P "sluice.iam.account.id must be 12 digits, got \"%s\"\n", acct);
        rc = 2;
        goto out;
    }
    memcpy(a->account, acct, 13);
    char path[SL_CFG_STR_MAX + 64], keyfile[SL_CFG_STR_MAX + 64];
    if (a->store) {
        snprintf(path, sizeof path, "%s", a->store);
        snprintf(keyfile, sizeof keyfile, "%s", a->keyfile);
    } else {
        sl_iamstore_paths(&a->cfg, path, sizeof path, keyfile, sizeof keyfile);
    }
    const iam_cmd *c = a->cmd;
    sl_iamstore *s = NULL;
    sl_err e = sl_iamstore_open(path, keyfile, c->write == W_CREATE, &s, err, sizeof err);
    int64_t now = (int64_t)time(NULL);
    bool lists = c->verb && !strcmp(c->verb, "list") && strcmp(c->group, "key");
    if (e == SL_ENOTFOUND && lists) {
        /* No store yet: nothing to list (and nothing created by listing). */
        rc = !strcmp(c->group, "user")   ? user_list(NULL, a)
             : !strcmp(c->group, "role") ? role_list(NULL, a)
                                         : policy_list(NULL, a);
        goto out;
    }
    if (e) {
        if (e == SL_ENOTFOUND)
            fprintf(stderr, P "no IAM store at %s (sluice iam user add creates it)\n", path);
        else
            fprintf(stderr, P "cannot open the IAM store %s: %s\n", path,
                    *err ? err : sl_strerror(e));
        rc = 1;
        goto out;
    }
    if (c->write != W_READ) {
        if ((e = sl_iamstore_lock(s)) != SL_OK) {
            fprintf(stderr, P "cannot lock the IAM store %s: %s\n", path, sl_strerror(e));
            rc = 1;
        } else {
            rc = change(s, a, now);
            sl_iamstore_unlock(s);
        }
    } else if (!strcmp(c->group, "assume-role")) {
        rc = assume_role(s, a, now);
    } else if (!strcmp(c->group, "user")) {
        rc = user_list(s, a);
    } else if (!strcmp(c->group, "role")) {
        rc = role_list(s, a);
    } else if (!strcmp(c->group, "key")) {
        rc = key_list(s, a, now);
    } else if (!strcmp(c->verb, "list")) {
        rc = policy_list(s, a);
    } else if (!strcmp(c->verb, "get")) {
        size_t len = 0;
        const char *doc = sl_iamstore_policy_get(s, a->pos[0], &len);
        if (!doc) {
            fprintf(stderr, P "no policy %s\n", a->pos[0]);
            rc = 1;
        } else {
            fwrite(doc, 1, len, stdout);
            if (!len || doc[len - 1] != '\n') putchar('\n');
        }
    } else {
        rc = simulate(s, a, now);
    }
    sl_iamstore_free(s);
out:
    free(a);
    if (fflush(stdout) && !rc) {
        fprintf(stderr, P "cannot write the output: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}
