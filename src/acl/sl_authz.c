/* The authorizer (sl_authz.h): decisions over the indexed set, the super.users list, the ACL
 * file and its writers' lock. */
#include "acl/sl_authz.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"

struct sl_authorizer {
    sl_acl_set *set;
    bool allow_if_no_acl;
    char *path;
    char *supers; /* super.users with ';' turned into NULs, ended by an empty string */
    int lock_fd;
    /* identity of the file the set came from, to notice another writer's change */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool have_file;
    int64_t checked_ms;
    bool warned;
};

static const char *const k_class_names[] = {
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
};

bool sl_authz_enabled(const sl_config *cfg, bool *bad, char *err, size_t err_len) {
    *bad = false;
    const char *cn = cfg->authorizer_class_name;
    while (*cn == ' ') cn++;
    if (*cn) {
        for (size_t i = 0; i < sizeof k_class_names / sizeof k_class_names[0]; i++)
            if (!strcmp(cn, k_class_names[i])) return true;
        snprintf(err, err_len,
                 "authorizer.class.name: unsupported authorizer \"%.200s\" (use "
                 "org.apache.kafka.metadata.authorizer.StandardAuthorizer)",
                 cn);
        *bad = true;
        return false;
    }
    return cfg->sluice_authorizer_enable;
}

void sl_authz_path(const sl_config *cfg, char *out, size_t len) {
    if (cfg->sluice_acl_file[0])
        snprintf(out, len, "%s", cfg->sluice_acl_file);
    else
        snprintf(out, len, "%s/sluice-acls", cfg->log_dirs);
}

/* Reads the whole file; SL_ENOTFOUND when it does not exist. */
static sl_err read_file(const char *path, char **data, size_t *len, struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    if (fstat(fd, st) || st->st_size > (off_t)256 * 1024 * 1024) {
        close(fd);
        return SL_EIO;
    }
    size_t n = (size_t)st->st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return SL_ENOMEM;
    }
    size_t got = sl_read_full(fd, buf, n);
    close(fd);
    if (got != n) {
        free(buf);
        return SL_EIO;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return SL_OK;
}

static bool same_file(const sl_authorizer *az, const struct stat *st) {
    return az->have_file && st->st_dev == az->dev && st->st_ino == az->ino &&
           st->st_size == az->size && st->st_mtim.tv_sec == az->mtime.tv_sec &&
           st->st_mtim.tv_nsec == az->mtime.tv_nsec;
}

static void remember(sl_authorizer *az, const struct stat *st) {
    az->have_file = true;
    az->dev = st->st_dev;
    az->ino = st->st_ino;
    az->size = st->st_size;
    az->mtime = st->st_mtim;
}

/* Loads the file into a new set. A missing file is an empty set. */
static sl_err load(sl_authorizer *az, sl_acl_set **out, struct stat *st, char *err, size_t elen) {
    char *data = NULL;
    size_t len = 0;
    sl_err e = read_file(az->path, &data, &len, st);
    if (e == SL_ENOTFOUND) {
        memset(st, 0, sizeof *st);
        return sl_acl_set_build(NULL, 0, out);
    }
    if (e) {
        snprintf(err, elen, "cannot read %s: %s", az->path, sl_strerror(e));
        return e;
    }
    char perr[256] = "";
    e = sl_acl_set_parse(data, len, out, perr, sizeof perr);
    free(data);
    if (e) snprintf(err, elen, "%s: %s", az->path, perr);
    return e;
}

sl_err sl_authorizer_new(const char *path, const char *super_users, bool allow_if_no_acl,
                         sl_authorizer **out, char *err, size_t err_len) {
    *out = NULL;
    sl_authorizer *az = calloc(1, sizeof *az);
    if (!az) return SL_ENOMEM;
    az->lock_fd = -1;
    az->allow_if_no_acl = allow_if_no_acl;
    az->path = strdup(path);
    size_t sl = strlen(super_users ? super_users : "");
    az->supers = calloc(sl + 2, 1);
    if (!az->path || !az->supers) {
        sl_authorizer_free(az);
        return SL_ENOMEM;
    }
    /* "User:a; User:b" → "User:a\0User:b\0\0", blanks around entries dropped */
    char *w = az->supers;
    for (const char *p = super_users ? super_users : ""; *p;) {
        while (*p == ';' || *p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, ";");
        size_t t = n;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\t')) t--;
        if (t) {
            memcpy(w, p, t);
            w += t + 1;
        }
        p += n;
    }
    struct stat st;
    sl_err e = load(az, &az->set, &st, err, err_len);
    if (e) {
        sl_authorizer_free(az);
        return e == SL_ECORRUPT ? SL_ECONFIG : e;
    }
    if (st.st_ino) remember(az, &st);
    az->checked_ms = sl_mono_ms();
    *out = az;
    return SL_OK;
}

void sl_authorizer_free(sl_authorizer *az) {
    if (!az) return;
    if (az->lock_fd >= 0) close(az->lock_fd);
    sl_acl_set_free(az->set);
    free(az->path);
    free(az->supers);
    free(az);
}

sl_err sl_authorizer_refresh(sl_authorizer *az, bool force) {
    int64_t now = sl_mono_ms();
    if (!force && now - az->checked_ms < 1000) return SL_OK;
    az->checked_ms = now;
    struct stat st;
    if (stat(az->path, &st)) {
        if (errno != ENOENT || !az->have_file) return errno == ENOENT ? SL_OK : SL_EIO;
        /* The file was removed: every ACL with it. */
        sl_acl_set *empty = NULL;
        if (sl_acl_set_build(NULL, 0, &empty)) return SL_ENOMEM;
        sl_acl_set_free(az->set);
        az->set = empty;
        az->have_file = false;
        SL_WARN("acl", "ACL file removed: no ACLs in force", "path=%s", az->path);
        return SL_OK;
    }
    if (same_file(az, &st)) return SL_OK;
    char err[512];
    sl_acl_set *next = NULL;
    sl_err e = load(az, &next, &st, err, sizeof err);
    if (e) {
        if (!az->warned)
            SL_ERROR("acl", "ACL file not reloaded; the previous ACLs stay in force",
                     "reason=\"%s\"", err);
        az->warned = true;
        return e;
    }
    az->warned = false;
    sl_acl_set_free(az->set);
    az->set = next;
    remember(az, &st);
    SL_INFO("acl", "ACLs reloaded", "path=%s acls=%zu", az->path, sl_acl_set_count(next));
    return SL_OK;
}

const sl_acl_set *sl_authorizer_set(const sl_authorizer *az) { return az->set; }

sl_err sl_authorizer_replace(sl_authorizer *az, sl_acl_set *next) {
    char *data = NULL;
    size_t len = 0;
    sl_err e = sl_acl_set_serialize(next, &data, &len);
    if (e) {
        sl_acl_set_free(next);
        return e;
    }
    char d[4096], n[4096];
    snprintf(d, sizeof d, "%s", az->path);
    snprintf(n, sizeof n, "%s", az->path);
    const char *dir = dirname(d), *base = basename(n);
    e = sl_mkdir_p(dir, 0700);
    if (!e) e = sl_file_write_atomic(dir, base, data, len, 0600);
    free(data);
    if (e) {
        sl_acl_set_free(next);
        return e;
    }
    sl_acl_set_free(az->set);
    az->set = next;
    struct stat st;
    if (!stat(az->path, &st)) remember(az, &st);
    return SL_OK;
}

sl_err sl_authorizer_lock(sl_authorizer *az) {
    if (az->lock_fd < 0) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s.lock", az->path);
        char d[4200];
        snprintf(d, sizeof d, "%s", az->path);
        (void)sl_mkdir_p(dirname(d), 0700);
        az->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (az->lock_fd < 0) return SL_EIO;
    }
    while (flock(az->lock_fd, LOCK_EX))
        if (errno != EINTR) return SL_EIO;
    sl_err e = sl_authorizer_refresh(az, true);
    if (e) flock(az->lock_fd, LOCK_UN);
    return e;
}

void sl_authorizer_unlock(sl_authorizer *az) {
    if (az->lock_fd >= 0) flock(az->lock_fd, LOCK_UN);
}

bool sl_authorizer_is_super(const sl_authorizer *az, const char *principal) {
    if (!principal) return false;
    for (const char *p = az->supers; *p; p += strlen(p) + 1)
        if (!strcmp(p, principal)) return true;
    return false;
}

/* ---- decisions ---- */

static bool principal_matches(const char *acl, const char *principal) {
    return !strcmp(acl, "User:*") || !strcmp(acl, principal);
}

static bool host_matches(const char *acl, const char *host) {
    return !strcmp(acl, "*") || (host && !strcmp(acl, host));
}

/* Does an ALLOW for `granted` cover `op`? */
static bool allow_implies(int granted, int op) {
    if (granted == SL_ACL_OP_ALL || granted == op) return true;
    if (op == SL_ACL_OP_DESCRIBE)
        return granted == SL_ACL_OP_READ || granted == SL_ACL_OP_WRITE ||
               granted == SL_ACL_OP_DELETE || granted == SL_ACL_OP_ALTER;
    if (op == SL_ACL_OP_DESCRIBE_CONFIGS) return granted == SL_ACL_OP_ALTER_CONFIGS;
    return false;
}

typedef struct decide_ctx {
    const char *principal, *host;
    int op;
    bool found, allowed, denied;
    const sl_acl *deny; /* the DENY binding that decided, when one did */
} decide_ctx;

static bool decide_one(void *vc, const sl_acl *a) {
    decide_ctx *c = vc;
    if (!principal_matches(a->principal, c->principal) || !host_matches(a->host, c->host))
        return true;
    if (a->perm == SL_ACL_PERM_DENY) {
        if (a->op == SL_ACL_OP_ALL || a->op == c->op) {
            c->denied = true;
            c->deny = a;
            return false; /* DENY wins; nothing else can change the answer */
        }
    } else if (allow_implies(a->op, c->op)) {
        c->allowed = true;
    }
    return true;
}

bool sl_authorizer_explain(const sl_authorizer *az, const char *principal, const char *host, int op,
                           int rtype, const char *name, size_t name_len, char *why, size_t len) {
    if (!principal) {
        if (why) snprintf(why, len, "unauthenticated");
        return false;
    }
    if (sl_authorizer_is_super(az, principal)) return true;
    decide_ctx c = {.principal = principal, .host = host, .op = op};
    c.found = sl_acl_set_visit_principal(az->set, rtype, name, name_len, principal, decide_one, &c);
    if (c.denied) {
        if (why) sl_acl_format(c.deny, why, len);
        return false;
    }
    if (c.allowed || (!c.found && az->allow_if_no_acl)) return true;
    if (why) snprintf(why, len, "no ALLOW binding matches (deny by default)");
    return false;
}

bool sl_authorizer_allows(const sl_authorizer *az, const char *principal, const char *host, int op,
                          int rtype, const char *name, size_t name_len) {
    return sl_authorizer_explain(az, principal, host, op, rtype, name, name_len, NULL, 0);
}

/* True when DENY binding `d` covers every resource ALLOW binding `a` names. */
static bool shadows(const sl_acl *d, const sl_acl *a) {
    if (d->pattern == SL_ACL_PAT_LITERAL)
        return !strcmp(d->name, "*") ||
               (a->pattern == SL_ACL_PAT_LITERAL && !strcmp(d->name, a->name));
    return !strncmp(a->name, d->name, strlen(d->name));
}

bool sl_authorizer_allows_any(const sl_authorizer *az, const char *principal, const char *host,
                              int op, int rtype) {
    if (!principal) return false;
    if (sl_authorizer_is_super(az, principal)) return true;
    size_t n = sl_acl_set_count(az->set);
    bool any_of_type = false;
    for (size_t i = 0; i < n; i++) {
        const sl_acl *a = sl_acl_set_at(az->set, i);
        if (a->rtype != rtype) continue;
        any_of_type = true;
        if (a->perm != SL_ACL_PERM_ALLOW || !allow_implies(a->op, op) ||
            !principal_matches(a->principal, principal) || !host_matches(a->host, host))
            continue;
        bool shadowed = false;
        for (size_t j = 0; j < n && !shadowed; j++) {
            const sl_acl *d = sl_acl_set_at(az->set, j);
            shadowed = d->rtype == rtype && d->perm == SL_ACL_PERM_DENY &&
                       (d->op == SL_ACL_OP_ALL || d->op == op) &&
                       principal_matches(d->principal, principal) && host_matches(d->host, host) &&
                       shadows(d, a);
        }
        if (!shadowed) return true;
    }
    return !any_of_type && az->allow_if_no_acl;
}

int32_t sl_authorizer_ops(const sl_authorizer *az, const char *principal, const char *host,
                          int rtype, const char *name, size_t name_len) {
    static const int topic[] = {
        SL_ACL_OP_READ,  SL_ACL_OP_WRITE,    SL_ACL_OP_CREATE,           SL_ACL_OP_DELETE,
        SL_ACL_OP_ALTER, SL_ACL_OP_DESCRIBE, SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_OP_ALTER_CONFIGS};
    static const int group[] = {SL_ACL_OP_READ, SL_ACL_OP_DESCRIBE, SL_ACL_OP_DELETE};
    static const int cluster[] = {SL_ACL_OP_CREATE,           SL_ACL_OP_ALTER,
                                  SL_ACL_OP_DESCRIBE,         SL_ACL_OP_CLUSTER_ACTION,
                                  SL_ACL_OP_DESCRIBE_CONFIGS, SL_ACL_OP_ALTER_CONFIGS,
                                  SL_ACL_OP_IDEMPOTENT_WRITE};
    const int *ops = rtype == SL_ACL_RES_TOPIC   ? topic
                     : rtype == SL_ACL_RES_GROUP ? group
                                                 : cluster;
    size_t n = rtype == SL_ACL_RES_TOPIC   ? sizeof topic / sizeof topic[0]
               : rtype == SL_ACL_RES_GROUP ? sizeof group / sizeof group[0]
                                           : sizeof cluster / sizeof cluster[0];
    int32_t bits = 0;
    for (size_t i = 0; i < n; i++)
        if (sl_authorizer_allows(az, principal, host, ops[i], rtype, name, name_len))
            bits |= (int32_t)1 << ops[i];
    return bits;
}
