#include "sl_topics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_producers.h"

#define NBUCKETS 1024

struct sl_topics {
    const sl_config *cfg;
    sl_topic *buckets[NBUCKETS];
    int count;
    char cluster_id[32];
};

static const struct {
    const char *name;
    const char *broker_key;
} k_tcfg[SL_TCFG__COUNT] = {
    [SL_TCFG_RETENTION_MS] = {"retention.ms", "log.retention.ms"},
    [SL_TCFG_RETENTION_BYTES] = {"retention.bytes", "log.retention.bytes"},
    [SL_TCFG_SEGMENT_BYTES] = {"segment.bytes", "log.segment.bytes"},
    [SL_TCFG_SEGMENT_MS] = {"segment.ms", "log.roll.ms"},
    [SL_TCFG_MAX_MESSAGE_BYTES] = {"max.message.bytes", "message.max.bytes"},
    [SL_TCFG_CLEANUP_POLICY] = {"cleanup.policy", "log.cleanup.policy"},
    [SL_TCFG_FLUSH_MESSAGES] = {"flush.messages", "log.flush.interval.messages"},
    [SL_TCFG_FLUSH_MS] = {"flush.ms", "log.flush.interval.ms"},
};

const char *sl_tcfg_name(int id) { return id >= 0 && id < SL_TCFG__COUNT ? k_tcfg[id].name : ""; }
const char *sl_tcfg_broker_key(int id) {
    return id >= 0 && id < SL_TCFG__COUNT ? k_tcfg[id].broker_key : "";
}

int sl_tcfg_lookup(sl_str name) {
    for (int i = 0; i < SL_TCFG__COUNT; i++)
        if (sl_str_eqc(name, k_tcfg[i].name)) return i;
    return -1;
}

sl_err sl_tcfg_parse(int id, sl_str value, int64_t *out) {
    if (value.len < 0 || value.len > 64) return SL_ECONFIG;
    char buf[80];
    memcpy(buf, value.p, (size_t)value.len);
    buf[value.len] = 0;
    if (id == SL_TCFG_CLEANUP_POLICY) {
        if (strcmp(buf, "delete") != 0) return SL_ECONFIG; /* compaction is not implemented */
        *out = 0;
        return SL_OK;
    }
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end) return SL_ECONFIG;
    int64_t min = 0, max = INT64_MAX;
    switch (id) {
    case SL_TCFG_RETENTION_MS:
    case SL_TCFG_RETENTION_BYTES:
        min = -1;
        break;
    case SL_TCFG_SEGMENT_BYTES:
        min = 14;
        max = INT32_MAX;
        break;
    case SL_TCFG_SEGMENT_MS:
    case SL_TCFG_FLUSH_MESSAGES:
        min = 1;
        break;
    case SL_TCFG_MAX_MESSAGE_BYTES:
        max = INT32_MAX;
        break;
    default:
        break;
    }
    if (v < min || v > max) return SL_ECONFIG;
    *out = v;
    return SL_OK;
}

static int64_t broker_default(const sl_config *c, int id) {
    switch (id) {
    case SL_TCFG_RETENTION_MS:
        return c->log_retention_ms;
    case SL_TCFG_RETENTION_BYTES:
        return c->log_retention_bytes;
    case SL_TCFG_SEGMENT_BYTES:
        return c->log_segment_bytes;
    case SL_TCFG_SEGMENT_MS:
        return c->log_roll_ms;
    case SL_TCFG_MAX_MESSAGE_BYTES:
        return c->message_max_bytes;
    case SL_TCFG_FLUSH_MESSAGES:
        return c->log_flush_interval_messages;
    case SL_TCFG_FLUSH_MS:
        return c->log_flush_interval_ms;
    default:
        return 0;
    }
}

int64_t sl_tcfg_value(const sl_topics *t, const sl_topic *tp, int id) {
    return (tp->cfg.set_mask >> id) & 1 ? tp->cfg.v[id] : broker_default(t->cfg, id);
}

bool sl_tcfg_effective(const sl_topics *t, const sl_topic *topic, int id, char *buf, size_t len) {
    if (id == SL_TCFG_CLEANUP_POLICY)
        snprintf(buf, len, "delete");
    else
        snprintf(buf, len, "%lld", (long long)sl_tcfg_value(t, topic, id));
    return (topic->cfg.set_mask >> id) & 1;
}

static void log_config_for(const sl_topics *t, const sl_topic *tp, sl_log_config *lc) {
    sl_log_config_default(lc);
    lc->segment_bytes = sl_tcfg_value(t, tp, SL_TCFG_SEGMENT_BYTES);
    lc->segment_ms = sl_tcfg_value(t, tp, SL_TCFG_SEGMENT_MS);
    lc->retention_ms = sl_tcfg_value(t, tp, SL_TCFG_RETENTION_MS);
    lc->retention_bytes = sl_tcfg_value(t, tp, SL_TCFG_RETENTION_BYTES);
    lc->flush_interval_messages = sl_tcfg_value(t, tp, SL_TCFG_FLUSH_MESSAGES);
    lc->flush_interval_ms = sl_tcfg_value(t, tp, SL_TCFG_FLUSH_MS);
    lc->index_interval_bytes = t->cfg->log_index_interval_bytes;
    lc->max_index_bytes = t->cfg->log_index_size_max_bytes;
}

static uint32_t hash_name(const char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h % NBUCKETS;
}

bool sl_topic_name_valid(sl_str name) {
    if (name.len <= 0 || name.len > SL_TOPIC_NAME_MAX) return false;
    if ((name.len == 1 && name.p[0] == '.') || (name.len == 2 && !memcmp(name.p, "..", 2)))
        return false;
    for (int32_t i = 0; i < name.len; i++) {
        char c = name.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

sl_topic *sl_topics_find(sl_topics *t, sl_str name) {
    if (name.len <= 0 || name.len > SL_TOPIC_NAME_MAX) return NULL;
    for (sl_topic *tp = t->buckets[hash_name(name.p, (size_t)name.len)]; tp; tp = tp->next)
        if (strlen(tp->name) == (size_t)name.len && !memcmp(tp->name, name.p, (size_t)name.len))
            return tp;
    return NULL;
}

sl_topic *sl_topics_find_id(sl_topics *t, const sl_uuid *id) {
    for (int b = 0; b < NBUCKETS; b++)
        for (sl_topic *tp = t->buckets[b]; tp; tp = tp->next)
            if (!memcmp(tp->id.b, id->b, 16)) return tp;
    return NULL;
}

sl_partition *sl_topics_partition(sl_topics *t, sl_str name, int32_t part) {
    sl_topic *tp = sl_topics_find(t, name);
    if (!tp || part < 0 || part >= tp->npart) return NULL;
    return tp->parts[part];
}

sl_topic *sl_topics_next(sl_topics *t, sl_topic *cur) {
    int b = 0;
    if (cur) {
        if (cur->next) return cur->next;
        b = (int)hash_name(cur->name, strlen(cur->name)) + 1;
    }
    for (; b < NBUCKETS; b++)
        if (t->buckets[b]) return t->buckets[b];
    return NULL;
}

int sl_topics_count(const sl_topics *t) { return t->count; }
const char *sl_topics_cluster_id(const sl_topics *t) { return t->cluster_id; }

static void uuid_hex(const sl_uuid *u, char out[33]) {
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", u->b[i]);
}

static bool uuid_parse(const char *s, sl_uuid *u) {
    if (strlen(s) != 32) return false;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
        u->b[i] = (uint8_t)v;
    }
    return true;
}

static sl_err persist(sl_topics *t) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return SL_ENOMEM;
    len += (size_t)snprintf(buf, cap,
                            "# Sluice topic registry. Written atomically; do not edit "
                            "while the broker runs.\nversion 1\n");
    for (sl_topic *tp = sl_topics_next(t, NULL); tp; tp = sl_topics_next(t, tp)) {
        for (int i = -1; i < SL_TCFG__COUNT; i++) {
            if (i >= 0 && !((tp->cfg.set_mask >> i) & 1)) continue;
            if (cap - len < 512) {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    free(buf);
                    return SL_ENOMEM;
                }
                buf = nb;
                cap *= 2;
            }
            char hex[33];
            uuid_hex(&tp->id, hex);
            if (i < 0)
                len += (size_t)snprintf(buf + len, cap - len, "topic %s %s %d\n", tp->name, hex,
                                        tp->npart);
            else
                len += (size_t)snprintf(buf + len, cap - len, "config %s %s %lld\n", tp->name,
                                        k_tcfg[i].name, (long long)tp->cfg.v[i]);
        }
    }
    sl_err e = sl_file_write_atomic(t->cfg->log_dirs, "sluice-topics.meta", buf, len, 0600);
    free(buf);
    return e;
}

static void partition_dir(const sl_topics *t, const sl_topic *tp, int32_t i, char *out,
                          size_t cap) {
    snprintf(out, cap, "%s/%s-%d", t->cfg->log_dirs, tp->name, i);
}

/* Removes a partition directory and the files in it (partition directories hold no
 * subdirectories). Missing is fine. */
static void remove_partition_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            (void)unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
    (void)rmdir(dir);
}

/* Opens partition `i`. With `fresh` (a partition being created, not loaded) a directory left
 * by an interrupted creation or deletion is removed first: a partition the registry does not
 * list has no data. On failure nothing of the partition stays on disk when `fresh`. */
static sl_err open_partition(sl_topics *t, sl_topic *tp, int32_t i, bool fresh) {
    char dir[PATH_MAX];
    partition_dir(t, tp, i, dir, sizeof dir);
    sl_log_config lc;
    log_config_for(t, tp, &lc);
    if (!tp->parts[i]) tp->parts[i] = calloc(1, sizeof **tp->parts);
    if (!tp->parts[i]) return SL_ENOMEM;
    sl_partition *p = tp->parts[i];
    p->topic = tp;
    p->index = i;
    struct stat st;
    if (fresh && lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        SL_WARN("topics", "removing a leftover partition directory", "dir=%s", dir);
        remove_partition_dir(dir);
    }
    sl_err e = sl_log_open(dir, &lc, &p->log);
    if (!e) e = sl_pstate_open(dir, p->log, sl_wall_ms(), &p->pstate);
    if (e && fresh) {
        if (p->log) {
            (void)sl_log_destroy(p->log);
            p->log = NULL;
        } else {
            remove_partition_dir(dir);
        }
    }
    return e;
}

/* Undoes the creation of partitions [from, to): closes and removes them. */
static void discard_partitions(sl_topics *t, sl_topic *tp, int32_t from, int32_t to) {
    for (int32_t i = from; i < to; i++) {
        sl_partition *p = tp->parts[i];
        if (!p) continue;
        sl_pstate_close(p->pstate, NULL);
        p->pstate = NULL;
        if (p->log) {
            (void)sl_log_destroy(p->log);
            p->log = NULL;
        } else {
            char dir[PATH_MAX];
            partition_dir(t, tp, i, dir, sizeof dir);
            remove_partition_dir(dir);
        }
    }
}

static void topic_free(sl_topic *tp) {
    if (!tp) return;
    for (int32_t i = 0; i < tp->npart; i++) {
        if (tp->parts[i]) sl_pstate_close(tp->parts[i]->pstate, tp->parts[i]->log);
        if (tp->parts[i] && tp->parts[i]->log) sl_log_close(tp->parts[i]->log);
        free(tp->parts[i]);
    }
    free(tp->parts);
    free(tp);
}

static sl_topic *topic_new(const char *name, size_t nlen, int32_t npart) {
    sl_topic *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->parts = calloc((size_t)npart, sizeof *tp->parts);
    if (!tp->parts) {
        free(tp);
        return NULL;
    }
    memcpy(tp->name, name, nlen);
    tp->name[nlen] = 0;
    tp->npart = npart;
    tp->refs = 1; /* the registry's */
    return tp;
}

void sl_topic_hold(sl_topic *tp) { tp->refs++; }

void sl_topic_release(sl_topic *tp) {
    if (--tp->refs == 0) topic_free(tp);
}

static void link_topic(sl_topics *t, sl_topic *tp) {
    uint32_t h = hash_name(tp->name, strlen(tp->name));
    tp->next = t->buckets[h];
    t->buckets[h] = tp;
    t->count++;
}

static void unlink_topic(sl_topics *t, sl_topic *tp) {
    sl_topic **pp = &t->buckets[hash_name(tp->name, strlen(tp->name))];
    while (*pp && *pp != tp) pp = &(*pp)->next;
    if (*pp) {
        *pp = tp->next;
        t->count--;
    }
}

static void random_bytes(void *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t r = getrandom((char *)p + off, n - off, 0);
        if (r > 0) off += (size_t)r;
    }
}

static sl_err load_cluster_id(sl_topics *t, char *err, size_t elen) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/meta.properties", t->cfg->log_dirs);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "cluster.id=", 11)) {
                line[strcspn(line, "\r\n")] = 0;
                snprintf(t->cluster_id, sizeof t->cluster_id, "%.31s", line + 11);
            }
        fclose(f);
        if (t->cluster_id[0]) return SL_OK;
    }
    /* Kafka cluster ids are 16 random bytes in unpadded base64url (22 chars). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[16];
    random_bytes(r, sizeof r);
    for (int i = 0; i < 22; i++) {
        int bit = i * 6, byte = bit / 8, sh = bit % 8;
        unsigned v = (unsigned)r[byte] << 8 | (byte + 1 < 16 ? r[byte + 1] : 0);
        t->cluster_id[i] = b64[(v >> (10 - sh)) & 63];
    }
    t->cluster_id[22] = 0;
    char body[256];
    int n = snprintf(body, sizeof body, "version=1\ncluster.id=%s\nnode.id=%d\n", t->cluster_id,
                     t->cfg->node_id);
    if (sl_file_write_atomic(t->cfg->log_dirs, "meta.properties", body, (size_t)n, 0600)) {
        snprintf(err, elen, "log.dirs: cannot write %s", path);
        return SL_EIO;
    }
    return SL_OK;
}

sl_err sl_topics_open(const sl_config *cfg, sl_topics **out, char *err, size_t elen) {
    sl_topics *t = calloc(1, sizeof *t);
    if (!t) return SL_ENOMEM;
    t->cfg = cfg;
    if (sl_mkdir_p(cfg->log_dirs, 0700)) {
        snprintf(err, elen, "log.dirs: cannot create %s: %s", cfg->log_dirs, strerror(errno));
        free(t);
        return SL_ECONFIG;
    }
    sl_err e = load_cluster_id(t, err, elen);
    if (e) {
        free(t);
        return e;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/sluice-topics.meta", cfg->log_dirs);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[1024];
        while (!e && fgets(line, sizeof line, f)) {
            char name[SL_TOPIC_NAME_MAX + 2], a[64], b[64];
            long long n;
            if (sscanf(line, "topic %250s %63s %lld", name, a, &n) == 3) {
                sl_str nm = sl_str_c(name);
                if (!sl_topic_name_valid(nm) || n < 1 || n > 100000 || sl_topics_find(t, nm)) {
                    e = SL_ECORRUPT;
                    break;
                }
                sl_topic *tp = topic_new(name, strlen(name), (int32_t)n);
                if (!tp || !uuid_parse(a, &tp->id)) {
                    topic_free(tp);
                    e = tp ? SL_ECORRUPT : SL_ENOMEM;
                    break;
                }
                link_topic(t, tp);
            } else if (sscanf(line, "config %250s %63s %63s", name, a, b) == 3) {
                sl_topic *tp = sl_topics_find(t, sl_str_c(name));
                int id = sl_tcfg_lookup(sl_str_c(a));
                char *end;
                long long v = strtoll(b, &end, 10);
                if (!tp || id < 0 || *end) {
                    e = SL_ECORRUPT;
                    break;
                }
                tp->cfg.v[id] = v;
                tp->cfg.set_mask |= 1u << id;
            }
        }
        fclose(f);
        if (e) {
            snprintf(err, elen, "%s: malformed topic registry", path);
            sl_topics_close(t);
            return e;
        }
    }
    for (sl_topic *tp = sl_topics_next(t, NULL); tp; tp = sl_topics_next(t, tp))
        for (int32_t i = 0; i < tp->npart; i++) {
            e = open_partition(t, tp, i, false);
            if (e) {
                snprintf(err, elen, "cannot open partition %s-%d: %s", tp->name, i, sl_strerror(e));
                sl_topics_close(t);
                return e;
            }
        }
    *out = t;
    return SL_OK;
}

void sl_topics_close(sl_topics *t) {
    if (!t) return;
    for (int b = 0; b < NBUCKETS; b++)
        for (sl_topic *tp = t->buckets[b], *n; tp; tp = n) {
            n = tp->next;
            topic_free(tp);
        }
    free(t);
}

sl_err sl_topics_create(sl_topics *t, sl_str name, int32_t npart, const sl_topic_config *tc,
                        bool validate_only, sl_topic **out) {
    if (!sl_topic_name_valid(name)) return SL_EINVAL;
    if (sl_topics_find(t, name)) return SL_EEXISTS;
    if (npart < 1 || npart > 100000) return SL_EINVAL;
    if (validate_only) return SL_OK;
    sl_topic *tp = topic_new(name.p, (size_t)name.len, npart);
    if (!tp) return SL_ENOMEM;
    do random_bytes(tp->id.b, 16);
    while (sl_uuid_is_zero(&tp->id) || sl_topics_find_id(t, &tp->id));
    if (tc) tp->cfg = *tc;
    sl_err e = SL_OK;
    int32_t failed = -1;
    for (int32_t i = 0; i < npart && !e; i++)
        if ((e = open_partition(t, tp, i, true)) != SL_OK) failed = i;
    if (!e) {
        link_topic(t, tp);
        e = persist(t);
        if (e) unlink_topic(t, tp);
    }
    if (e) {
        /* All or nothing: a topic that could not be created leaves no directory behind. */
        discard_partitions(t, tp, 0, npart);
        SL_WARN("topics", "topic creation failed; nothing kept",
                "topic=%s partitions=%d failed_partition=%d err=%s (%s)", tp->name, npart, failed,
                sl_errname(e), sl_strerror(e));
        topic_free(tp);
        return e;
    }
    SL_INFO("topics", "topic created", "topic=%s partitions=%d", tp->name, npart);
    if (out) *out = tp;
    return SL_OK;
}

sl_err sl_topics_delete(sl_topics *t, sl_topic *tp) {
    unlink_topic(t, tp);
    sl_err e = persist(t);
    if (e) {
        link_topic(t, tp);
        return e;
    }
    for (int32_t i = 0; i < tp->npart; i++) {
        if (sl_log_destroy(tp->parts[i]->log))
            SL_WARN("topics", "could not remove partition directory", "topic=%s partition=%d",
                    tp->name, i);
        tp->parts[i]->log = NULL;
    }
    SL_INFO("topics", "topic deleted", "topic=%s", tp->name);
    tp->deleted = true;
    sl_topic_release(tp);
    return SL_OK;
}

sl_err sl_topics_add_partitions(sl_topics *t, sl_topic *tp, int32_t npart) {
    if (npart <= tp->npart || npart > 100000) return SL_EINVAL;
    sl_partition **np = realloc(tp->parts, (size_t)npart * sizeof *np);
    if (!np) return SL_ENOMEM;
    tp->parts = np;
    memset(np + tp->npart, 0, (size_t)(npart - tp->npart) * sizeof *np);
    int32_t old = tp->npart;
    sl_err e = SL_OK;
    int32_t failed = -1;
    for (int32_t i = old; i < npart && !e; i++)
        if ((e = open_partition(t, tp, i, true)) != SL_OK) failed = i;
    if (!e) {
        tp->npart = npart;
        e = persist(t);
        if (!e) return SL_OK;
    }
    discard_partitions(t, tp, old, npart);
    for (int32_t i = old; i < npart; i++) {
        free(np[i]);
        np[i] = NULL;
    }
    tp->npart = old;
    SL_WARN("topics", "adding partitions failed; nothing kept",
            "topic=%s partitions=%d requested=%d failed_partition=%d err=%s (%s)", tp->name, old,
            npart, failed, sl_errname(e), sl_strerror(e));
    return e;
}

sl_err sl_topics_set_config(sl_topics *t, sl_topic *tp, const sl_topic_config *tc) {
    sl_topic_config old = tp->cfg;
    tp->cfg = *tc;
    sl_err e = persist(t);
    if (e) {
        tp->cfg = old;
        return e;
    }
    sl_log_config lc;
    log_config_for(t, tp, &lc);
    for (int32_t i = 0; i < tp->npart; i++) sl_log_set_config(tp->parts[i]->log, &lc);
    return SL_OK;
}
