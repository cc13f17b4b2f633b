/* `sluice keys status|rotate|rewrap|retire|reencrypt|shred|create|forget`: asks the running
 * broker over its control socket (ctl/sl_ctl.h for the protocol) and renders the answer: status
 * as text or JSON, reencrypt's progress as a bar on a terminal and as plain lines otherwise. The
 * CLI holds no key: every operation runs in the broker, which checks who is asking. */
#include "cli/sl_cli_keys.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sl_json.h"
#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "cli/sl_cli_ctl.h"
#include "ctl/sl_ctl.h"
#include "protect/sl_fcrypt.h"

static const char k_keys_usage[] =
    "NAME\n"
    "    sluice keys - encryption-at-rest key lifecycle of a running broker\n"
    "\n"
    "SYNOPSIS\n"
    "    sluice keys status    [CONN] [--json] [--topic T]\n"
    "    sluice keys rotate    [CONN]\n"
    "    sluice keys rotate    [CONN] --topic T            (a gateway's topic key)\n"
    "    sluice keys rewrap    [CONN]\n"
    "    sluice keys retire    [CONN] --version N\n"
    "    sluice keys reencrypt [CONN] [--topic T] [--new-topic-key]\n"
    "    sluice keys shred     [CONN] --topic T [--yes-destroy-all-data-of-topic T]\n"
    "    sluice keys create    [CONN] --field NAME\n"
    "    sluice keys rotate    [CONN] --fields [NAME]\n"
    "    sluice keys forget    [CONN] --subject ID [--token-key KEY]\n"
    "    sluice keys forget    [CONN] --subject-token TOKEN\n"
    "\n"
    "    CONN  -c server.properties (the socket is sluice.ctl.socket, or\n"
    "          <log.dirs>/sluice-ctl.sock) or --socket PATH\n"
    "\n"
    "DESCRIPTION\n"
    "    The broker must be running; the command talks to it over its control socket, which\n"
    "    only the broker's user and root may use.\n"
    "    status     KEK versions, every topic's key versions and the KEK version wrapping each,\n"
    "               and per partition how many segments each topic-key version protects\n"
    "               (0: plaintext, written before encryption was on).\n"
    "    rotate     Creates a new KEK version; new topic keys are wrapped by it.\n"
    "    rewrap     Re-wraps every topic key under the current KEK version (keyring only, no\n"
    "               segment is rewritten).\n"
    "    retire     Destroys KEK version N; refused while a topic key is still wrapped by it\n"
    "               (run rewrap first).\n"
    "    reencrypt  Rewrites, online, every segment that is plaintext or under an older\n"
    "               topic-key version; prints progress. Safe to interrupt (or to lose the\n"
    "               broker): rerun it and it finishes the rest. --new-topic-key first gives\n"
    "               each topic a new topic-key version, so every segment is rewritten (to\n"
    "               resume an interrupted run, rerun without it).\n"
    "    shred      Destroys every version of the topic's key: all its data, in every copy of\n"
    "               its segments, becomes unreadable. Asks for the topic name on a terminal;\n"
    "               otherwise --yes-destroy-all-data-of-topic must repeat it.\n"
    "\n"
    "    Field protection (docs/field-protection.md):\n"
    "    create     Creates field key NAME (version 1) for the policy's token and encrypt rules\n"
    "               ([A-Za-z0-9_-], at most 64 characters).\n"
    "    rotate --fields [NAME]\n"
    "               Adds a version to field key NAME, or to every field key the policy uses:\n"
    "               new values use it, values written before keep decrypting with theirs.\n"
    "               (rotate without --fields is the KEK rotation above.)\n"
    "    forget     Destroys one data subject's key (crypto-shredding): every field encrypted\n"
    "               for that subject becomes unreadable to everyone, in every copy. ID is the\n"
    "               subject's clear id as records carry it (e.g. C-1001); --token-key KEY\n"
    "               limits it to the subject rule with that token key (default: every subject\n"
    "               rule of the policy). --subject-token forgets the subject whose token string\n"
    "               (tok1.KEY.VER.MAC) is TOKEN, when only the token is known.\n"
    "    Against `sluice gateway` (docs/gateway.md, \"Encryption toward the cluster\"): --topic T\n"
    "    names the gateway's record-encryption key of topic T (the gateway stores no segments).\n"
    "    status --topic T  that key's versions and the KEK versions wrapping them.\n"
    "    rotate --topic T  Adds a version to it: records sealed from now on use it; records\n"
    "               sealed before keep opening with theirs.\n"
    "    shred --topic T   Destroys every version: every record of T the gateway sealed, in\n"
    "               every copy upstream, becomes unreadable (fetches answer\n"
    "               KAFKA_STORAGE_ERROR). rotate, rewrap and retire (KEKs) cover these keys too;\n"
    "               reencrypt is refused (nothing is stored to rewrite).\n"
    "    See docs/keys-cli.md for the runbooks.\n"
    "\n"
    "EXAMPLES\n"
    "    sluice keys status -c /etc/sluice/server.properties\n"
    "    sluice keys rotate -c server.properties && sluice keys rewrap -c server.properties\n"
    "    sluice keys retire -c server.properties --version 1\n"
    "    sluice keys shred -c server.properties --topic old-pii \\\n"
    "        --yes-destroy-all-data-of-topic old-pii\n"
    "    sluice keys create -c server.properties --field pan\n"
    "    sluice keys forget -c server.properties --subject C-1001\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success, 1 on failure (the reason on stderr), 2 on a usage error.\n";

static int usage_error(const char *msg) {
    fprintf(stderr, "sluice keys: %s (see sluice keys --help)\n", msg);
    return 2;
}

static int fail(const char *msg) {
    fprintf(stderr, "sluice keys: %s\n", msg);
    return 1;
}

/* ---- status as text ---- */

static const sl_json *get(const sl_json *o, const char *k) { return o ? sl_json_get(o, k) : NULL; }

static long long num(const sl_json *v) {
    return v && v->type == SL_JSON_NUM ? (long long)v->num : 0;
}

static void print_tk_counts(const sl_json *by) {
    bool first = true;
    for (const sl_json *m = by && by->type == SL_JSON_OBJ ? by->child : NULL; m; m = m->next) {
        bool plain = m->klen == 1 && m->key[0] == '0';
        printf("%s%s%.*s: %lld", first ? "" : ", ", plain ? "plaintext" : "topic key v",
               plain ? 0 : (int)m->klen, m->key, num(m));
        first = false;
    }
    if (first) printf("no segments");
}

static const char *str_or(const sl_json *v, const char *dflt) {
    return v && v->type == SL_JSON_STR ? v->s : dflt;
}

/* The key service's entry for topic id `hex` (its "topics" array), or NULL. */
static const sl_json *keys_topic(const sl_json *keys, const sl_json *hex) {
    const sl_json *kt = get(keys, "topics");
    for (const sl_json *e = kt && kt->type == SL_JSON_ARR ? kt->child : NULL; e; e = e->next)
        if (hex && hex->type == SL_JSON_STR && sl_json_str_eq(get(e, "id"), hex->s, hex->slen))
            return e;
    return NULL;
}

/* "topic key v1 (KEK v2), topic key v2 (KEK v2)": the join status exists for, which KEK
 * version protects which segments through which topic-key version. */
static void print_tk_versions(const sl_json *kentry, long long current_kek) {
    const sl_json *vs = get(kentry, "versions");
    bool first = true;
    for (const sl_json *v = vs && vs->type == SL_JSON_ARR ? vs->child : NULL; v; v = v->next) {
        long long kek = num(get(v, "kek_version"));
        printf("%stopic key v%lld wrapped by KEK v%lld%s", first ? "" : ", ",
               num(get(v, "version")), kek, kek == current_kek ? "" : " (not current)");
        first = false;
    }
    if (first) printf("no topic key");
}

static int print_status(void *arg, const char *json, size_t len) {
    (void)arg;
    sl_arena *a = sl_arena_new(64 * 1024);
    if (!a) return fail("out of memory");
    char err[128];
    sl_json *root = sl_json_parse(a, json, len, 32, err, sizeof err);
    if (!root || root->type != SL_JSON_OBJ) {
        sl_arena_free(a);
        fprintf(stderr, "sluice keys: the broker's status is not valid JSON (%s)\n",
                root ? "not an object" : err);
        return 1;
    }
    const sl_json *enc = get(root, "encryption");
    bool on = enc && enc->type == SL_JSON_BOOL && enc->b;
    const sl_json *keys = get(root, "keys");
    if (keys && keys->type != SL_JSON_OBJ) keys = NULL;
    printf("encryption at rest: %s", on ? "on" : "off");
    if (keys)
        printf(" (provider %s, keyring %s)", str_or(get(keys, "provider"), "?"),
               str_or(get(keys, "keyring"), "?"));
    printf("\n");
    long long cur_kek = num(get(keys, "current_kek_version"));
    const sl_json *keks = get(keys, "keks");
    if (keks && keks->type == SL_JSON_ARR) {
        printf("KEK versions:");
        for (const sl_json *k = keks->child; k; k = k->next)
            printf(" v%lld%s", num(get(k, "version")),
                   num(get(k, "version")) == cur_kek ? " (current)" : "");
        printf("\n");
    }
    const sl_json *cache = get(keys, "cache"), *locked = get(keys, "secmem_locked");
    if (cache && cache->type == SL_JSON_OBJ)
        printf("cached: %lld topic keys, %lld system keys, %lld DEKs; key memory locked: %s\n",
               num(get(cache, "topic_keys")), num(get(cache, "system_keys")),
               num(get(cache, "deks")),
               locked && locked->type == SL_JSON_BOOL ? (locked->b ? "yes" : "NO") : "?");
    const sl_json *gwj = get(root, "gateway");
    if (gwj && gwj->type == SL_JSON_OBJ) {
        const sl_json *re = get(gwj, "record_encryption");
        printf("gateway record encryption: %s\n",
               re && re->type == SL_JSON_BOOL && re->b ? "on" : "off");
        const sl_json *gt = get(gwj, "topic");
        if (gt && gt->type == SL_JSON_OBJ) {
            const sl_json *kentry = keys_topic(keys, get(gt, "id")), *en = get(gt, "encrypted");
            printf("gateway topic %s (%s): ", str_or(get(gt, "name"), "?"),
                   en && en->type == SL_JSON_BOOL && en->b ? "encrypted"
                                                           : "not encrypted by this gateway");
            const sl_json *shredded = get(kentry, "shredded");
            if (shredded && shredded->type == SL_JSON_BOOL && shredded->b)
                printf("SHREDDED (its records are unreadable)");
            else if (kentry)
                print_tk_versions(kentry, cur_kek);
            else
                printf("no key yet");
            printf("\n");
        }
    }
    const sl_json *topics = get(root, "topics");
    for (const sl_json *t = topics && topics->type == SL_JSON_ARR ? topics->child : NULL; t;
         t = t->next) {
        const sl_json *kentry = keys_topic(keys, get(t, "id"));
        long long tkv = num(get(t, "tk_version"));
        printf("topic %s: ", str_or(get(t, "name"), "?"));
        const sl_json *shredded = get(kentry, "shredded");
        if (shredded && shredded->type == SL_JSON_BOOL && shredded->b)
            printf("SHREDDED (its data is unreadable)");
        else if (kentry)
            print_tk_versions(kentry, cur_kek);
        else
            printf(tkv ? "current topic key v%lld" : "no topic key", tkv);
        if (tkv) printf("; current v%lld", tkv);
        printf("\n  segments: ");
        print_tk_counts(get(t, "by_tk_version"));
        long long pend = num(get(t, "pending"));
        if (pend) printf("; %lld not under the current topic key (run reencrypt)", pend);
        printf("\n");
        const sl_json *parts = get(t, "partitions");
        for (const sl_json *p = parts && parts->type == SL_JSON_ARR ? parts->child : NULL; p;
             p = p->next) {
            printf("  partition %lld: ", num(get(p, "partition")));
            const sl_json *av = get(p, "available");
            if (av && av->type == SL_JSON_BOOL && !av->b)
                printf("UNAVAILABLE (its keys or data could not be opened; see the broker log)");
            else
                print_tk_counts(get(p, "by_tk_version"));
            printf("\n");
        }
    }
    /* Keys of topics the registry no longer lists (deleted, hence shredded). */
    const sl_json *kt = get(keys, "topics");
    for (const sl_json *e = kt && kt->type == SL_JSON_ARR ? kt->child : NULL; e; e = e->next) {
        const sl_json *sys = get(e, "system");
        if (sys && sys->type == SL_JSON_BOOL && sys->b) {
            printf("system key (groups log, snapshots, registry): ");
            print_tk_versions(e, cur_kek);
            printf("\n");
            continue;
        }
        bool listed = false;
        for (const sl_json *t = topics && topics->type == SL_JSON_ARR ? topics->child : NULL;
             t && !listed; t = t->next) {
            const sl_json *id = get(e, "id");
            listed = id && id->type == SL_JSON_STR && sl_json_str_eq(get(t, "id"), id->s, id->slen);
        }
        if (listed) continue;
        const sl_json *sh = get(e, "shredded"), *fld = get(e, "field");
        if (sl_json_str_eq(get(e, "kind"), "gateway-topic", 13)) {
            printf("gateway topic key id %s: ", str_or(get(e, "id"), "?"));
            if (sh && sh->type == SL_JSON_BOOL && sh->b)
                printf("SHREDDED");
            else
                print_tk_versions(e, cur_kek);
            printf("\n");
            continue;
        }
        if (fld && fld->type == SL_JSON_BOOL && fld->b) { /* a field key, not a lost topic */
            printf("field key id %s: ", str_or(get(e, "id"), "?"));
            if (sh && sh->type == SL_JSON_BOOL && sh->b)
                printf("SHREDDED");
            else
                print_tk_versions(e, cur_kek);
            printf("\n");
            continue;
        }
        printf("topic id %s (no longer in the registry): %s\n", str_or(get(e, "id"), "?"),
               sh && sh->type == SL_JSON_BOOL && sh->b ? "shredded" : "key kept");
    }
    sl_arena_free(a);
    return 0;
}

/* An interactive shred asks for the name, the way a person must slow down to type it. */
static bool confirm_on_tty(const char *topic) {
    fprintf(stderr,
            "This destroys every key of topic %s: all of its data, in every copy of its\n"
            "segments, becomes unreadable for good.\n"
            "Type the topic name to confirm: ",
            topic);
    fflush(stderr);
    char ans[512];
    if (!fgets(ans, sizeof ans, stdin)) return false;
    ans[strcspn(ans, "\n")] = 0;
    return !strcmp(ans, topic);
}

/* A word the control protocol carries as it is: printable ASCII, no space. */
static bool word_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (!n || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~') return false;
    return true;
}

int sl_cli_keys(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(k_keys_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = argv[0], *cfg_path = NULL, *sock = NULL, *topic = NULL, *version = NULL,
               *yes = NULL, *field = NULL, *subject = NULL, *token_key = NULL, *token = NULL;
    bool json = false, new_tk = false, fields = false;
    bool status = !strcmp(cmd, "status"), rotate = !strcmp(cmd, "rotate"),
         rewrap = !strcmp(cmd, "rewrap"), retire = !strcmp(cmd, "retire"),
         reenc = !strcmp(cmd, "reencrypt"), shred = !strcmp(cmd, "shred"),
         create = !strcmp(cmd, "create"), forget = !strcmp(cmd, "forget");
    if (!status && !rotate && !rewrap && !retire && !reenc && !shred && !create && !forget)
        return usage_error("unknown subcommand");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_keys_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json") && status) {
            json = true;
            continue;
        } else if (!strcmp(a, "--new-topic-key") && reenc) {
            new_tk = true;
            continue;
        } else if (!strcmp(a, "--fields") && rotate) {
            /* The key name is optional: absent, every field key of the policy. */
            fields = true;
            if (v && v[0] != '-') {
                field = v;
                i++;
            }
            continue;
        } else if (!v) {
            return usage_error("unexpected argument or missing value");
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            cfg_path = v;
        } else if (!strcmp(a, "--socket")) {
            sock = v;
        } else if (!strcmp(a, "--topic") && (status || reenc || shred || rotate)) {
            topic = v;
        } else if (!strcmp(a, "--version") && retire) {
            version = v;
        } else if (!strcmp(a, "--yes-destroy-all-data-of-topic") && shred) {
            yes = v;
        } else if (!strcmp(a, "--field") && create) {
            field = v;
        } else if (!strcmp(a, "--subject") && forget) {
            subject = v;
        } else if (!strcmp(a, "--token-key") && forget) {
            token_key = v;
        } else if (!strcmp(a, "--subject-token") && forget) {
            token = v;
        } else {
            return usage_error("unexpected argument");
        }
        i++;
    }
    if (retire && !version) return usage_error("retire needs --version N");
    if (version && strspn(version, "0123456789") != strlen(version))
        return usage_error("--version takes a number");
    if (shred && !topic) return usage_error("shred needs --topic");
    if (rotate && topic && fields) return usage_error("--topic and --fields do not go together");
    if (topic && (!topic[0] || strlen(topic) > 249 || strpbrk(topic, " \t\r\n")))
        return usage_error("invalid topic name");
    if (create && !field) return usage_error("create needs --field NAME");
    if (field && !sl_fc_keyname_ok(field, strlen(field)))
        return usage_error("a field key name is 1-64 characters of A-Z a-z 0-9 _ -");
    if (token_key && !sl_fc_keyname_ok(token_key, strlen(token_key)))
        return usage_error("a field key name is 1-64 characters of A-Z a-z 0-9 _ -");
    if (forget && !subject == !token)
        return usage_error("forget needs --subject ID or --subject-token TOKEN");
    if (token && token_key) return usage_error("--token-key goes with --subject, not a token");
    /* The hex of the id and the command word fit one control line. */
    if (subject && (!subject[0] || strlen(subject) > (SL_CTL_LINE_MAX - 128) / 2))
        return usage_error("--subject must be 1-1984 bytes");
    if (token && !word_ok(token, SL_FC_TOKEN_STR_MAX))
        return usage_error("--subject-token is a token string (tok1.KEY.VER.MAC)");
    if (shred) {
        if (yes && strcmp(yes, topic))
            return usage_error("--yes-destroy-all-data-of-topic must repeat the --topic name");
        if (!yes && !isatty(STDIN_FILENO))
            return usage_error("shred destroys the topic's data: confirm with "
                               "--yes-destroy-all-data-of-topic <topic>");
        if (!yes && !confirm_on_tty(topic)) return fail("not confirmed; nothing was destroyed");
    }

    char path[SL_CFG_STR_MAX + 32];
    int rc = sl_cli_ctl_socket("sluice keys", cfg_path, sock, path, sizeof path);
    if (rc) return rc;
    char req[SL_CTL_LINE_MAX];
    if (status) {
        snprintf(req, sizeof req, "status%s%s", topic ? " " : "", topic ? topic : "");
    } else if (rotate && fields) {
        snprintf(req, sizeof req, "field-rotate%s%s", field ? " " : "", field ? field : "");
    } else if (rotate && topic) {
        snprintf(req, sizeof req, "rotate %s", topic);
    } else if (rotate || rewrap) {
        snprintf(req, sizeof req, "%s", cmd);
    } else if (retire) {
        snprintf(req, sizeof req, "retire %s", version);
    } else if (reenc) {
        snprintf(req, sizeof req, "reencrypt%s%s%s", topic ? " " : "", topic ? topic : "",
                 new_tk ? " +new-topic-key" : "");
    } else if (create) {
        snprintf(req, sizeof req, "field-create %s", field);
    } else if (forget && token) {
        snprintf(req, sizeof req, "forget-token %s", token);
    } else if (forget) {
        /* The clear id travels hex-encoded: any bytes, and never split into words. */
        size_t off = (size_t)snprintf(req, sizeof req, "forget ");
        for (const unsigned char *s = (const unsigned char *)subject; *s; s++, off += 2)
            snprintf(req + off, sizeof req - off, "%02x", *s);
        if (token_key) snprintf(req + off, sizeof req - off, " %s", token_key);
    } else {
        snprintf(req, sizeof req, "shred %s %s", topic, topic);
    }
    sl_cli_ctl_view v = {.prog = "sluice keys",
                         .json = json,
                         .tty = isatty(STDERR_FILENO) && isatty(STDOUT_FILENO),
                         .ok_quiet = "status",
                         .on_json = print_status};
    return sl_cli_ctl_exchange(path, req, &v);
}
