#include "sl_topics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/sl_file.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_producers.h"
#include "broker/sl_txnpart.h"
#include "kms/sl_keysvc.h"
#include "producer/sl_pstore.h"

#define NBUCKETS 1024
#define REGISTRY "sluice-topics.meta"
/* A registry larger than this is not one this broker wrote. */
#define REGISTRY_MAX ((size_t)256 << 20)
/* Written by a clean stop after every log was synced (sl_topics_mark_clean_stop). */
#define CLEAN_MARKER ".sluice-clean-shutdown"

typedef struct job job;

/* A name being created or deleted: no other creation may use it until the files are settled. */
typedef struct reserved {
    struct reserved *next;
    char name[SL_TOPIC_NAME_MAX + 1];
} reserved;

struct sl_topics {
    const sl_config *cfg;
    sl_keysvc *ks; /* borrowed; NULL: encryption at rest off */
    bool dir_ids;  /* sluice.encryption.dir.names=id */
    sl_topic *buckets[NBUCKETS];
    int count;
    char cluster_id[32];
    reserved *reserved; /* loop thread only */
    bool clean_start;   /* the previous run stopped cleanly with every log synced */
    /* The file worker: partition directories are created and removed on its thread. */
    pthread_t worker;
    bool worker_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *queue, **queue_tail; /* guarded by mu */
    job *done, **done_tail;   /* guarded by mu */
    bool stop;                /* guarded by mu */
    int efd;
    int jobs; /* posted and not yet completed on the loop thread (loop thread only) */
    pthread_cond_t ensured_cv; /* a blocking topic-key job finished (guarded by mu) */
    int64_t next_retry_ms;     /* sl_topics_retry_unavailable */
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
    [SL_TCFG_DELETE_RETENTION_MS] = {"delete.retention.ms", "log.cleaner.delete.retention.ms"},
    [SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO] = {"min.cleanable.dirty.ratio",
                                           "log.cleaner.min.cleanable.ratio"},
    [SL_TCFG_MIN_COMPACTION_LAG_MS] = {"min.compaction.lag.ms",
                                       "log.cleaner.min.compaction.lag.ms"},
    [SL_TCFG_MAX_COMPACTION_LAG_MS] = {"max.compaction.lag.ms",
                                       "log.cleaner.max.compaction.lag.ms"},
};

static const char *const k_policy_names[] = {"delete", "compact", "compact,delete"};

static int64_t ratio_bits(double d) {
    int64_t v;
    memcpy(&v, &d, sizeof v);
    return v;
}

static double bits_ratio(int64_t v) {
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

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
        int pol = sl_config_cleanup_policy(buf);
        if (pol < 0) return SL_ECONFIG;
        *out = pol;
        return SL_OK;
    }
    if (id == SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO) {
        double d;
        if (!sl_config_parse_ratio(buf, &d)) return SL_ECONFIG;
        *out = ratio_bits(d);
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
    case SL_TCFG_MAX_COMPACTION_LAG_MS:
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
    case SL_TCFG_CLEANUP_POLICY:
        return c->log_cleanup_policy_id;
    case SL_TCFG_DELETE_RETENTION_MS:
        return c->log_cleaner_delete_retention_ms;
    case SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO:
        return ratio_bits(c->log_cleaner_min_cleanable_ratio);
    case SL_TCFG_MIN_COMPACTION_LAG_MS:
        return c->log_cleaner_min_compaction_lag_ms;
    case SL_TCFG_MAX_COMPACTION_LAG_MS:
        return c->log_cleaner_max_compaction_lag_ms;
    default:
        return 0;
    }
}

int64_t sl_tcfg_value(const sl_topics *t, const sl_topic *tp, int id) {
    return (tp->cfg.set_mask >> id) & 1 ? tp->cfg.v[id] : broker_default(t->cfg, id);
}

bool sl_tcfg_effective(const sl_topics *t, const sl_topic *topic, int id, char *buf, size_t len) {
    int64_t v = sl_tcfg_value(t, topic, id);
    if (id == SL_TCFG_CLEANUP_POLICY)
        snprintf(buf, len, "%s", k_policy_names[v >= 0 && v <= 2 ? v : 0]);
    else if (id == SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO)
        snprintf(buf, len, "%g", bits_ratio(v));
    else
        snprintf(buf, len, "%lld", (long long)sl_tcfg_value(t, topic, id));
    return (topic->cfg.set_mask >> id) & 1;
}

double sl_tcfg_ratio(const sl_topics *t, const sl_topic *topic) {
    return bits_ratio(sl_tcfg_value(t, topic, SL_TCFG_MIN_CLEANABLE_DIRTY_RATIO));
}

bool sl_topic_compacted(const sl_topics *t, const sl_topic *topic) {
    return sl_tcfg_value(t, topic, SL_TCFG_CLEANUP_POLICY) != 0;
}

static void log_config_for(const sl_topics *t, const sl_topic *tp, sl_log_config *lc) {
    sl_log_config_default(lc);
    lc->segment_bytes = sl_tcfg_value(t, tp, SL_TCFG_SEGMENT_BYTES);
    lc->segment_ms = sl_tcfg_value(t, tp, SL_TCFG_SEGMENT_MS);
    lc->retention_ms = sl_tcfg_value(t, tp, SL_TCFG_RETENTION_MS);
    lc->retention_bytes = sl_tcfg_value(t, tp, SL_TCFG_RETENTION_BYTES);
    if (sl_tcfg_value(t, tp, SL_TCFG_CLEANUP_POLICY) == 1) /* compact only: no retention */
        lc->retention_ms = lc->retention_bytes = -1;
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
            sl_uuid_hex(tp->id.b, hex);
            if (i < 0)
                len += (size_t)snprintf(buf + len, cap - len, "topic %s %s %d\n", tp->name, hex,
                                        tp->npart);
            else
                len += (size_t)snprintf(buf + len, cap - len, "config %s %s %lld\n", tp->name,
                                        k_tcfg[i].name, (long long)tp->cfg.v[i]);
        }
    }
    /* The registry names every topic: with encryption on it is sealed under the system key,
     * the file name bound, so it can be neither read nor swapped for another file. */
    if (t->ks) {
        uint8_t *sealed = NULL;
        size_t slen = 0;
        sl_err se = sl_keysvc_seal_blob(t->ks, REGISTRY, (const uint8_t *)buf, len, &sealed, &slen);
        OPENSSL_cleanse(buf, len);
        free(buf);
        if (se) {
            SL_ERROR("topics", "cannot seal the topic registry", "err=%s (%s)", sl_errname(se),
                     sl_strerror(se));
            return se;
        }
        se = sl_file_write_atomic(t->cfg->log_dirs, REGISTRY, sealed, slen, 0600);
        free(sealed);
        return se;
    }
    sl_err e = sl_file_write_atomic(t->cfg->log_dirs, REGISTRY, buf, len, 0600);
    free(buf);
    return e;
}

static bool dir_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Directory of partition `i` in one style: `<name>-<i>` or `<topic id hex>-<i>`. */
static void dir_in_style(const char *log_dirs, const char *name, const sl_uuid *id, bool ids,
                         int32_t i, char *out, size_t cap) {
    char hex[33];
    if (ids) sl_uuid_hex(id->b, hex);
    snprintf(out, cap, "%s/%s-%d", log_dirs, ids ? hex : name, i);
}

/* The configured style, unless only the other style's directory exists: switching
 * sluice.encryption.dir.names never strands a partition (new partitions take the configured
 * style; an existing directory is not renamed, which a crash could leave half done). */
static void partition_dir(const sl_topics *t, const sl_topic *tp, int32_t i, char *out,
                          size_t cap) {
    dir_in_style(t->cfg->log_dirs, tp->name, &tp->id, t->dir_ids, i, out, cap);
    if (dir_exists(out)) return;
    char other[PATH_MAX];
    dir_in_style(t->cfg->log_dirs, tp->name, &tp->id, !t->dir_ids, i, other, sizeof other);
    if (dir_exists(other)) snprintf(out, cap, "%s", other);
}

void sl_topics_partition_dir(const sl_topics *t, const sl_topic *tp, int32_t i, char *out,
                             size_t cap) {
    partition_dir(t, tp, i, out, cap);
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

/* Gives `log` the keys of partition `part` of topic `id` (nothing without a key service).
 * Loop thread (sl_keysvc_log_keys). */
static sl_err apply_keys(sl_keysvc *ks, const sl_uuid *id, int32_t part, sl_log *log) {
    if (!ks || !log) return SL_OK;
    sl_log_keys k;
    memset(&k, 0, sizeof k);
    sl_err e = sl_keysvc_log_keys(ks, id->b, part, sl_log_end_offset(log), &k);
    if (!e) sl_log_set_keys(log, &k);
    return e;
}

/* Opens the log and producer state of `p` in `dir`. With `fresh` (a partition being created,
 * not loaded) a directory left by an interrupted creation or deletion is removed first (and
 * `stale`, the same partition's directory in the other naming style, if not NULL): a
 * partition the registry does not list has no data; and on failure nothing of the partition
 * stays on disk. Touches only `p` and its files, so it runs on the file worker too; there
 * `keys` is NULL and the loop gives the log its keys afterwards (a fresh log holds nothing to
 * read meanwhile). On the loop `keys` is the key service: the log gets its keys before the
 * producer state reads it. `blobs` seals producer snapshots (any thread). */
static sl_err open_partition_files(const char *dir, const char *stale, const sl_log_config *lc,
                                   bool fresh, bool synced, sl_keysvc *keys, sl_keysvc *blobs,
                                   const sl_uuid *id, sl_partition *p) {
    if (fresh && dir_exists(dir)) {
        SL_WARN("topics", "removing a leftover partition directory", "dir=%s", dir);
        remove_partition_dir(dir);
    }
    if (fresh && stale && dir_exists(stale)) {
        SL_WARN("topics", "removing a leftover partition directory", "dir=%s", stale);
        remove_partition_dir(stale);
    }
    sl_err e = synced ? sl_log_open_synced(dir, lc, &p->log) : sl_log_open(dir, lc, &p->log);
    if (!e) e = apply_keys(keys, id, p->index, p->log);
    if (!e) e = sl_pstate_open_keys(dir, p->log, sl_wall_ms(), blobs, &p->pstate);
    if (!e) e = sl_txnpart_open(p);
    if (e && fresh) {
        if (p->log) {
            (void)sl_log_destroy(p->log);
            p->log = NULL;
        } else {
            remove_partition_dir(dir);
        }
        sl_txnpart_free(p->txn);
    } else if (e) {
        /* A stored partition that does not open is left on disk as it is, for inspection and
         * repair; the partition is unavailable meanwhile. */
        sl_pstate_close(p->pstate, NULL);
        p->pstate = NULL;
        sl_log_close(p->log);
        p->log = NULL;
        sl_txnpart_free(p->txn);
    }
    return e;
}

/* Opens partition `i` of `tp` on the loop thread (see open_partition_files). */
static sl_err open_partition(sl_topics *t, sl_topic *tp, int32_t i, bool fresh) {
    char dir[PATH_MAX];
    if (fresh)
        dir_in_style(t->cfg->log_dirs, tp->name, &tp->id, t->dir_ids, i, dir, sizeof dir);
    else
        partition_dir(t, tp, i, dir, sizeof dir);
    sl_log_config lc;
    log_config_for(t, tp, &lc);
    if (!tp->parts[i]) tp->parts[i] = calloc(1, sizeof **tp->parts);
    if (!tp->parts[i]) return SL_ENOMEM;
    tp->parts[i]->topic = tp;
    tp->parts[i]->index = i;
    char stale[PATH_MAX];
    dir_in_style(t->cfg->log_dirs, tp->name, &tp->id, !t->dir_ids, i, stale, sizeof stale);
    return open_partition_files(dir, fresh ? stale : NULL, &lc, fresh, !fresh && t->clean_start,
                                t->ks, t->ks, &tp->id, tp->parts[i]);
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
        sl_txnpart_free(p->txn);
    }
}

static void topic_free(sl_topic *tp) {
    if (!tp) return;
    for (int32_t i = 0; i < tp->npart; i++) {
        sl_log *log = tp->parts[i] ? tp->parts[i]->log : NULL;
        /* A log that never held a batch has no producer state to snapshot; skipping it keeps
         * the stop of thousands of idle partitions from writing a file for each. */
        if (tp->parts[i]) {
            sl_pstate_close(tp->parts[i]->pstate, log && sl_log_end_offset(log) > 0 ? log : NULL);
            sl_txnpart_free(tp->parts[i]->txn); /* before the log closes: records its checkpoint */
        }
        if (log) sl_log_close(log);
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

/* ---- file worker --------------------------------------------------------------------------
 * Creating a partition is a directory, three files and four fsyncs; a thousand of them take
 * seconds. That runs on the worker thread; the registry stays on the loop thread, which links,
 * persists and answers when the worker's completion arrives through the eventfd. */

typedef enum {
    JOB_OPEN,
    JOB_DESTROY,
    JOB_ENSURE, /* makes a topic key for a creation on the loop, which waits (ensure_blocking) */
} job_kind;

struct job {
    job *next;
    job_kind kind;
    sl_topics *t;
    sl_topic *tp; /* held (sl_topic_hold) while the job lives; NULL for a deletion */
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_uuid id;       /* the topic's (key, directory names, shred) */
    int32_t from, to; /* partitions [from, to) */
    /* JOB_OPEN: partitions the worker fills (log, pstate); only the worker touches them until
     * the completion. JOB_DESTROY: the logs to remove (pstates already closed). */
    sl_partition **parts;
    sl_log **logs;
    bool own_parts; /* parts is the job's array (adding partitions), not tp->parts */
    sl_log_config lc;
    sl_err result;
    int32_t failed;       /* the partition that failed, -1: none */
    sl_err report;        /* the error the caller gets once cleanup finished */
    bool finished;        /* JOB_ENSURE: the worker is done with it (guarded by mu) */
    bool blocking;        /* JOB_ENSURE: its owner waits (ensure_blocking), no continuation */
    void (*cont)(job *j); /* loop-thread continuation */
    sl_topics_done_cb cb;
    void *ctx;
};

static bool is_reserved(const sl_topics *t, sl_str name) {
    for (const reserved *r = t->reserved; r; r = r->next)
        if (strlen(r->name) == (size_t)name.len && !memcmp(r->name, name.p, (size_t)name.len))
            return true;
    return false;
}

static bool reserve(sl_topics *t, const char *name) {
    reserved *r = calloc(1, sizeof *r);
    if (!r) return false;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->next = t->reserved;
    t->reserved = r;
    return true;
}

static void unreserve(sl_topics *t, const char *name) {
    for (reserved **pp = &t->reserved; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, name)) {
            reserved *r = *pp;
            *pp = r->next;
            free(r);
            return;
        }
}

/* Worker thread: file work only; touches nothing but the job. */
static void job_run(job *j) {
    char dir[PATH_MAX];
    j->result = SL_OK;
    j->failed = -1;
    sl_topics *t = j->t;
    if (j->kind == JOB_ENSURE || (j->kind == JOB_OPEN && t->ks)) {
        /* The topic key exists before any partition does: a partition must never be able to
         * take a plaintext append. Nothing is created when it cannot be made. */
        char why[256] = "";
        j->result =
            t->ks ? sl_keysvc_topic_ensure_sync(t->ks, j->id.b, j->name, why, sizeof why) : SL_OK;
        if (j->result) {
            SL_ERROR("topics", "cannot create the topic key; the topic is not created",
                     "topic=%s err=%s (%s) detail=\"%s\"", j->name, sl_errname(j->result),
                     sl_strerror(j->result), why);
            return;
        }
        if (j->kind == JOB_ENSURE) return;
    }
    if (j->kind == JOB_OPEN) {
        for (int32_t i = j->from; i < j->to && !j->result; i++) {
            char stale[PATH_MAX];
            dir_in_style(t->cfg->log_dirs, j->name, &j->id, t->dir_ids, i, dir, sizeof dir);
            dir_in_style(t->cfg->log_dirs, j->name, &j->id, !t->dir_ids, i, stale, sizeof stale);
            j->result = open_partition_files(dir, stale, &j->lc, true, false, NULL, t->ks, &j->id,
                                             j->parts[i - j->from]);
            if (j->result) j->failed = i;
        }
        if (!j->result) return;
        /* All or nothing: undo the partitions opened before the failure. */
        for (int32_t i = j->from; i < j->to; i++) {
            sl_partition *p = j->parts[i - j->from];
            sl_pstate_close(p->pstate, NULL);
            p->pstate = NULL;
            if (p->log) (void)sl_log_destroy(p->log);
            p->log = NULL;
            sl_txnpart_free(p->txn);
        }
        return;
    }
    /* Only the files: the logs are closed on the loop thread (job_free), since a flush in
     * flight may still hold one and the last reference must drop there. */
    for (int32_t i = 0; i < j->to - j->from; i++) {
        if (j->logs[i] && sl_log_remove_files(j->logs[i]) != SL_OK)
            SL_WARN("topics", "could not remove partition directory", "topic=%s partition=%d",
                    j->name, j->from + i);
    }
}

static void *worker_main(void *arg) {
    sl_topics *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (!t->queue && !t->stop) pthread_cond_wait(&t->cv, &t->mu);
        job *j = t->queue;
        if (j) {
            t->queue = j->next;
            if (!t->queue) t->queue_tail = &t->queue;
        }
        pthread_mutex_unlock(&t->mu);
        if (!j) break; /* stopping, queue drained */
        job_run(j);
        j->next = NULL;
        if (j->blocking) { /* its owner waits on the loop thread and frees it */
            pthread_mutex_lock(&t->mu);
            j->finished = true;
            pthread_cond_broadcast(&t->ensured_cv);
            pthread_mutex_unlock(&t->mu);
            continue;
        }
        pthread_mutex_lock(&t->mu);
        *t->done_tail = j;
        t->done_tail = &j->next;
        pthread_mutex_unlock(&t->mu);
        uint64_t one = 1;
        while (write(t->efd, &one, sizeof one) < 0 && errno == EINTR) {
        }
    }
    return NULL;
}

/* Queues `j` for the worker; once stopped (closing), runs it inline. Loop thread. */
static void post_job(sl_topics *t, job *j) {
    t->jobs++;
    j->next = NULL;
    pthread_mutex_lock(&t->mu);
    if (!t->worker_started) {
        pthread_mutex_unlock(&t->mu);
        job_run(j);
        pthread_mutex_lock(&t->mu);
        *t->done_tail = j;
        t->done_tail = &j->next;
    } else {
        *t->queue_tail = j;
        t->queue_tail = &j->next;
        pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

int sl_topics_fd(const sl_topics *t) { return t->efd; }

sl_err sl_topics_mark_clean_stop(sl_topics *t) {
    return sl_file_write_atomic(t->cfg->log_dirs, CLEAN_MARKER, "", 0, 0600);
}

void sl_topics_dispatch(sl_topics *t) {
    uint64_t n;
    while (read(t->efd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&t->mu);
    job *list = t->done;
    t->done = NULL;
    t->done_tail = &t->done;
    pthread_mutex_unlock(&t->mu);
    while (list) {
        job *j = list;
        list = j->next;
        t->jobs--;
        j->cont(j);
    }
}

int sl_topics_pending(const sl_topics *t) { return t->jobs; }

static void job_free(job *j) {
    if (j->tp) sl_topic_release(j->tp);
    if (j->own_parts) {
        for (int32_t i = 0; i < j->to - j->from; i++) free(j->parts[i]);
        free(j->parts);
    }
    if (j->logs)
        for (int32_t i = 0; i < j->to - j->from; i++) sl_log_close(j->logs[i]);
    free(j->logs);
    free(j);
}

static job *job_new(sl_topics *t, job_kind kind, const char *name, int32_t from, int32_t to) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->t = t;
    j->kind = kind;
    snprintf(j->name, sizeof j->name, "%s", name);
    j->from = from;
    j->to = to;
    j->failed = -1;
    return j;
}

/* After the cleanup of a creation that failed on the loop thread: report, release. */
static void cleanup_done(job *j) {
    unreserve(j->t, j->name);
    j->cb(j->ctx, j->report, NULL);
    job_free(j);
}

/* Removes the partitions a failed operation opened (on the worker), then reports `e`. Takes
 * the logs out of the partitions; the caller closed their producer states. */
static void cleanup_then_report(sl_topics *t, job *j, sl_err e) {
    job *d = job_new(t, JOB_DESTROY, j->name, j->from, j->to);
    sl_log **logs = d ? calloc((size_t)(j->to - j->from), sizeof *logs) : NULL;
    if (!d || !logs) {
        /* Without memory for the job the removal happens here: slower, never left behind. */
        for (int32_t i = 0; i < j->to - j->from; i++)
            if (j->parts[i]->log) (void)sl_log_destroy(j->parts[i]->log);
        free(d);
        for (int32_t i = 0; i < j->to - j->from; i++) j->parts[i]->log = NULL;
        unreserve(t, j->name);
        j->cb(j->ctx, e, NULL);
        return;
    }
    for (int32_t i = 0; i < j->to - j->from; i++) {
        logs[i] = j->parts[i]->log;
        j->parts[i]->log = NULL;
    }
    d->logs = logs;
    d->report = e;
    d->cb = j->cb;
    d->ctx = j->ctx;
    d->cont = cleanup_done;
    post_job(t, d);
}

/* Gives the logs the worker opened their keys (loop thread); on failure *failed names the
 * partition. */
static sl_err keys_for_new(sl_topics *t, job *j) {
    for (int32_t i = 0; i < j->to - j->from; i++) {
        sl_err e = apply_keys(t->ks, &j->id, j->from + i, j->parts[i]->log);
        if (e) {
            j->failed = j->from + i;
            return e;
        }
    }
    return SL_OK;
}

static void create_done(job *j) {
    sl_topics *t = j->t;
    sl_topic *tp = j->tp;
    sl_err e = j->result;
    if (!e) e = keys_for_new(t, j);
    if (!e) {
        link_topic(t, tp);
        e = persist(t);
        if (e) unlink_topic(t, tp);
    }
    if (e) {
        SL_WARN("topics", "topic creation failed; nothing kept",
                "topic=%s partitions=%d failed_partition=%d err=%s (%s)", tp->name, tp->npart,
                j->failed, sl_errname(e), sl_strerror(e));
        for (int32_t i = 0; i < tp->npart; i++) {
            sl_pstate_close(tp->parts[i]->pstate, NULL);
            tp->parts[i]->pstate = NULL;
            sl_txnpart_free(tp->parts[i]->txn);
        }
        /* The worker already removed what it opened when it failed itself. */
        if (!j->result) {
            cleanup_then_report(t, j, e);
        } else {
            unreserve(t, j->name);
            j->cb(j->ctx, e, NULL);
        }
        tp->deleted = true;
        sl_topic_release(tp); /* the registry's reference: it was never listed */
        job_free(j);
        return;
    }
    unreserve(t, j->name);
    SL_INFO("topics", "topic created", "topic=%s partitions=%d", tp->name, tp->npart);
    j->cb(j->ctx, SL_OK, tp);
    job_free(j);
}

sl_err sl_topics_create_async(sl_topics *t, sl_str name, int32_t npart, const sl_topic_config *tc,
                              sl_topics_done_cb cb, void *ctx) {
    if (!sl_topic_name_valid(name)) return SL_EINVAL;
    if (sl_topics_find(t, name) || is_reserved(t, name)) return SL_EEXISTS;
    if (npart < 1 || npart > 100000) return SL_EINVAL;
    sl_topic *tp = topic_new(name.p, (size_t)name.len, npart);
    if (!tp) return SL_ENOMEM;
    do random_bytes(tp->id.b, 16);
    while (sl_uuid_is_zero(&tp->id) || sl_topics_find_id(t, &tp->id));
    if (tc) tp->cfg = *tc;
    job *j = job_new(t, JOB_OPEN, tp->name, 0, npart);
    if (j) j->id = tp->id;
    bool ok = j != NULL;
    for (int32_t i = 0; ok && i < npart; i++) {
        if (!(tp->parts[i] = calloc(1, sizeof **tp->parts)))
            ok = false;
        else {
            tp->parts[i]->topic = tp;
            tp->parts[i]->index = i;
        }
    }
    if (!ok || !reserve(t, tp->name)) {
        free(j);
        topic_free(tp);
        return SL_ENOMEM;
    }
    sl_topic_hold(tp);
    j->tp = tp;
    j->parts = tp->parts;
    log_config_for(t, tp, &j->lc);
    j->cont = create_done;
    j->cb = cb;
    j->ctx = ctx;
    post_job(t, j);
    return SL_OK;
}

static void add_done(job *j) {
    sl_topics *t = j->t;
    sl_topic *tp = j->tp;
    tp->busy = false;
    sl_err e = j->result;
    int32_t old = tp->npart;
    if (!e && tp->deleted) e = SL_ENOTFOUND;
    if (!e) e = keys_for_new(t, j);
    if (!e) {
        sl_partition **np = realloc(tp->parts, (size_t)j->to * sizeof *np);
        if (!np) {
            e = SL_ENOMEM;
        } else {
            tp->parts = np;
            for (int32_t i = j->from; i < j->to; i++) np[i] = j->parts[i - j->from];
            tp->npart = j->to;
            e = persist(t);
            if (e) tp->npart = old;
        }
    }
    if (e) {
        SL_WARN("topics", "adding partitions failed; nothing kept",
                "topic=%s partitions=%d requested=%d failed_partition=%d err=%s (%s)", tp->name,
                old, j->to, j->failed, sl_errname(e), sl_strerror(e));
        for (int32_t i = 0; i < j->to - j->from; i++) {
            sl_pstate_close(j->parts[i]->pstate, NULL);
            j->parts[i]->pstate = NULL;
            sl_txnpart_free(j->parts[i]->txn);
        }
        if (!j->result) {
            cleanup_then_report(t, j, e);
        } else {
            unreserve(t, j->name);
            j->cb(j->ctx, e, NULL);
        }
        job_free(j);
        return;
    }
    j->own_parts = false; /* the partitions now belong to the topic */
    free(j->parts);
    j->parts = NULL;
    unreserve(t, j->name);
    SL_INFO("topics", "partitions added", "topic=%s partitions=%d", tp->name, tp->npart);
    j->cb(j->ctx, SL_OK, tp);
    job_free(j);
}

sl_err sl_topics_add_partitions_async(sl_topics *t, sl_topic *tp, int32_t npart,
                                      sl_topics_done_cb cb, void *ctx) {
    if (tp->deleted) return SL_ENOTFOUND;
    if (tp->busy) return SL_ESTATE;
    if (npart <= tp->npart || npart > 100000) return SL_EINVAL;
    job *j = job_new(t, JOB_OPEN, tp->name, tp->npart, npart);
    if (!j) return SL_ENOMEM;
    j->id = tp->id;
    j->own_parts = true;
    j->parts = calloc((size_t)(npart - tp->npart), sizeof *j->parts);
    bool ok = j->parts != NULL;
    for (int32_t i = tp->npart; ok && i < npart; i++) {
        sl_partition *p = calloc(1, sizeof *p);
        if (!p)
            ok = false;
        else {
            p->topic = tp;
            p->index = i;
            j->parts[i - tp->npart] = p;
        }
    }
    if (!ok || !reserve(t, tp->name)) {
        job_free(j);
        return SL_ENOMEM;
    }
    sl_topic_hold(tp);
    j->tp = tp;
    tp->busy = true;
    log_config_for(t, tp, &j->lc);
    j->cont = add_done;
    j->cb = cb;
    j->ctx = ctx;
    post_job(t, j);
    return SL_OK;
}

static void shredded(void *ctx, sl_err e, const char *result) {
    if (e)
        SL_ERROR("topics",
                 "a deleted topic's key could not be shredded; its key stays in the keyring until "
                 "`sluice keys shred` succeeds",
                 "err=%s (%s) result=\"%s\"", sl_errname(e), sl_strerror(e), result ? result : "");
    else
        SL_INFO("topics", "deleted topic's key shredded", "result=\"%s\"", result ? result : "");
}

static void delete_done(job *j) {
    unreserve(j->t, j->name);
    SL_INFO("topics", "topic deleted", "topic=%s", j->name);
    /* Its files are gone; shredding the key makes every other copy of them (backups, disk
     * images) undecryptable too. The answer does not wait for it: the topic is deleted
     * either way, and a failed shred is logged for the operator to repeat. */
    if (j->t->ks)
        sl_keysvc_op(j->t->ks, SL_KEYOP_SHRED, j->id.b, 0, "DeleteTopics", shredded, NULL);
    j->cb(j->ctx, SL_OK, NULL);
    job_free(j);
}

sl_err sl_topics_delete_async(sl_topics *t, sl_topic *tp, sl_topics_done_cb cb, void *ctx) {
    if (tp->busy) return SL_ESTATE;
    job *j = job_new(t, JOB_DESTROY, tp->name, 0, tp->npart);
    if (j) j->id = tp->id;
    sl_log **logs = j ? calloc((size_t)tp->npart, sizeof *logs) : NULL;
    if (!logs || !reserve(t, tp->name)) {
        free(logs);
        free(j);
        return SL_ENOMEM;
    }
    unlink_topic(t, tp);
    sl_err e = persist(t);
    if (e) {
        link_topic(t, tp);
        unreserve(t, tp->name);
        free(logs);
        free(j);
        return e;
    }
    for (int32_t i = 0; i < tp->npart; i++) {
        sl_pstate_close(tp->parts[i]->pstate, NULL);
        tp->parts[i]->pstate = NULL;
        logs[i] = tp->parts[i]->log;
        tp->parts[i]->log = NULL;
        sl_txnpart_free(tp->parts[i]->txn);
        if (!logs[i]) {
            /* An unavailable partition has no log to remove its files: rare, done here. */
            char dir[PATH_MAX];
            partition_dir(t, tp, i, dir, sizeof dir);
            remove_partition_dir(dir);
        }
    }
    j->logs = logs;
    j->cont = delete_done;
    j->cb = cb;
    j->ctx = ctx;
    tp->deleted = true;
    sl_topic_release(tp);
    post_job(t, j);
    return SL_OK;
}

/* Reads the whole registry file: *buf NULL (SL_OK) when there is none. Caller frees *buf. */
static sl_err read_registry(const char *path, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? SL_OK : SL_EIO;
    sl_err e = SL_OK;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        e = SL_EIO;
    else if ((size_t)sz > REGISTRY_MAX)
        e = SL_ECORRUPT;
    else if (!(*buf = malloc((size_t)sz + 1)))
        e = SL_ENOMEM;
    else if (fread(*buf, 1, (size_t)sz, f) != (size_t)sz)
        e = SL_EIO;
    fclose(f);
    if (e) {
        free(*buf);
        *buf = NULL;
        return e;
    }
    *len = (size_t)sz;
    return SL_OK;
}

/* Loads the registry's text (plaintext lines) into `t`. */
static sl_err parse_registry(sl_topics *t, const char *text, size_t len) {
    sl_err e = SL_OK;
    const char *p = text, *end = text + len;
    while (!e && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[1024];
        if (n >= sizeof line) return SL_ECORRUPT;
        memcpy(line, p, n);
        line[n] = 0;
        p += n + (nl ? 1 : 0);
        char name[SL_TOPIC_NAME_MAX + 2], a[64], b[64];
        long long np;
        if (sscanf(line, "topic %250s %63s %lld", name, a, &np) == 3) {
            sl_str nm = sl_str_c(name);
            if (!sl_topic_name_valid(nm) || np < 1 || np > 100000 || sl_topics_find(t, nm))
                return SL_ECORRUPT;
            sl_topic *tp = topic_new(name, strlen(name), (int32_t)np);
            if (!tp || !uuid_parse(a, &tp->id)) {
                topic_free(tp);
                return tp ? SL_ECORRUPT : SL_ENOMEM;
            }
            link_topic(t, tp);
        } else if (sscanf(line, "config %250s %63s %63s", name, a, b) == 3) {
            sl_topic *tp = sl_topics_find(t, sl_str_c(name));
            int id = sl_tcfg_lookup(sl_str_c(a));
            char *cend;
            long long v = strtoll(b, &cend, 10);
            if (!tp || id < 0 || *cend) return SL_ECORRUPT;
            tp->cfg.v[id] = v;
            tp->cfg.set_mask |= 1u << id;
        }
    }
    return e;
}

/* Reads the registry, sealed or (from before encryption, or with it off) plaintext. *migrate:
 * a plaintext registry was read while encryption is on (to be rewritten sealed). */
static sl_err load_registry(sl_topics *t, bool *migrate, char *err, size_t elen) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" REGISTRY, t->cfg->log_dirs);
    uint8_t *raw = NULL;
    size_t len = 0;
    sl_err e = read_registry(path, &raw, &len);
    if (e) {
        snprintf(err, elen, "%s: cannot read the topic registry: %s", path, sl_strerror(e));
        return e;
    }
    if (!raw) return SL_OK;
    uint8_t *text = raw;
    size_t tlen = len;
    bool sealed = sl_keysvc_is_sealed_blob(raw, len);
    if (sealed && !t->ks) {
        snprintf(err, elen,
                 "%s: the topic registry is encrypted but sluice.encryption.enable is false; "
                 "turn encryption back on (with the same key settings) to read this data",
                 path);
        free(raw);
        return SL_ECONFIG;
    }
    if (sealed) {
        e = sl_keysvc_open_blob(t->ks, REGISTRY, raw, len, &text, &tlen);
        free(raw);
        raw = NULL;
        if (e) {
            snprintf(err, elen, "%s: cannot decrypt the topic registry: %s (%s)", path,
                     sl_errname(e), sl_strerror(e));
            return e;
        }
    }
    *migrate = !sealed && t->ks;
    e = parse_registry(t, (const char *)text, tlen);
    if (sealed) OPENSSL_cleanse(text, tlen);
    free(text);
    if (e) snprintf(err, elen, "%s: malformed topic registry", path);
    return e;
}

/* Failures a later attempt may not repeat: the key manager or a topic key was not there. */
static bool retriable(sl_err e) { return e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE; }

static const char *unavailable_hint(sl_err e) {
    switch (e) {
    case SL_ETAMPER:
        return "stored data failed authentication (modified, or copied from elsewhere)";
    case SL_EKEY_UNAVAILABLE:
    case SL_EKMS_UNAVAILABLE:
        return "its key is not available now (key management service)";
    case SL_EKEY_DESTROYED:
        return "its key was destroyed (shredded)";
    case SL_EKMS_DENIED:
        return "the key management service refused the key";
    default:
        return "the log could not be opened";
    }
}

sl_err sl_topics_open(const sl_config *cfg, sl_topics **out, char *err, size_t elen) {
    return sl_topics_open_keys(cfg, NULL, out, err, elen);
}

sl_err sl_topics_open_keys(const sl_config *cfg, sl_keysvc *ks, sl_topics **out, char *err,
                           size_t elen) {
    sl_topics *t = calloc(1, sizeof *t);
    if (!t) return SL_ENOMEM;
    t->cfg = cfg;
    t->ks = ks;
    t->dir_ids = !strcmp(cfg->sluice_encryption_dir_names, "id");
    t->efd = -1;
    t->queue_tail = &t->queue;
    t->done_tail = &t->done;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->ensured_cv, NULL);
    if (sl_mkdir_p(cfg->log_dirs, 0700)) {
        snprintf(err, elen, "log.dirs: cannot create %s: %s", cfg->log_dirs, strerror(errno));
        sl_topics_close(t);
        return SL_ECONFIG;
    }
    sl_err e = load_cluster_id(t, err, elen);
    bool migrate = false;
    if (!e) e = load_registry(t, &migrate, err, elen);
    if (e) {
        sl_topics_close(t);
        return e;
    }
    /* Every topic has a topic key before any of its logs can take an append: topics from
     * before encryption get theirs now (their old segments stay readable, new ones are
     * sealed). A key that cannot be made now leaves the topic's partitions unavailable. */
    for (sl_topic *tp = sl_topics_next(t, NULL); ks && tp; tp = sl_topics_next(t, tp)) {
        char why[256] = "";
        sl_err ke = sl_keysvc_topic_ensure_sync(ks, tp->id.b, tp->name, why, sizeof why);
        if (ke) {
            SL_ERROR("topics", "topic key not available; the topic's partitions are unavailable",
                     "topic=%s err=%s (%s) detail=\"%s\"", tp->name, sl_errname(ke),
                     sl_strerror(ke), why);
            tp->key_missing = retriable(ke); /* not a shredded or refused key */
            for (int32_t i = 0; i < tp->npart; i++) {
                if (!tp->parts[i] && !(tp->parts[i] = calloc(1, sizeof **tp->parts))) {
                    sl_topics_close(t);
                    return SL_ENOMEM;
                }
                tp->parts[i]->topic = tp;
                tp->parts[i]->index = i;
                tp->parts[i]->unavailable = ke;
            }
        }
    }
    if (migrate) {
        if ((e = persist(t)) != SL_OK) {
            snprintf(err, elen, "%s/" REGISTRY ": cannot rewrite the topic registry sealed: %s",
                     cfg->log_dirs, sl_strerror(e));
            sl_topics_close(t);
            return e;
        }
        SL_INFO("topics", "topic registry rewritten encrypted (it was plaintext)", "topics=%d",
                t->count);
    }
    /* The marker is consumed before any log opens: a crash from here on must not pass for a
     * clean stop at the next start. */
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/" CLEAN_MARKER, cfg->log_dirs);
    t->clean_start = unlink(marker) == 0 && sl_fsync_dir(cfg->log_dirs) == SL_OK;
    if (t->clean_start)
        SL_INFO("topics", "previous stop was clean; partition logs need no recovery sync", "%s",
                "");
    /* One partition that does not open (damaged, tampered, its key unavailable) costs that
     * partition only: the broker starts and answers KAFKA_STORAGE_ERROR for it. */
    int unavailable = 0;
    for (sl_topic *tp = sl_topics_next(t, NULL); tp; tp = sl_topics_next(t, tp))
        for (int32_t i = 0; i < tp->npart; i++) {
            if (tp->parts[i] && tp->parts[i]->unavailable) {
                unavailable++;
                continue;
            }
            e = open_partition(t, tp, i, false);
            if (e == SL_ENOMEM) {
                snprintf(err, elen, "cannot open partition %s-%d: %s", tp->name, i, sl_strerror(e));
                sl_topics_close(t);
                return e;
            }
            if (e) {
                char dir[PATH_MAX];
                partition_dir(t, tp, i, dir, sizeof dir);
                tp->parts[i]->unavailable = e;
                unavailable++;
                SL_ERROR("topics",
                         "partition unavailable: it could not be opened; its produce, fetch and "
                         "list-offsets requests get KAFKA_STORAGE_ERROR, the rest is served",
                         "topic=%s partition=%d dir=%s err=%s (%s) reason=\"%s\"", tp->name, i, dir,
                         sl_errname(e), sl_strerror(e), unavailable_hint(e));
            }
        }
    if (unavailable) SL_WARN("topics", "some partitions are unavailable", "count=%d", unavailable);
    t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->efd < 0 || pthread_create(&t->worker, NULL, worker_main, t) != 0) {
        snprintf(err, elen, "cannot start the partition file worker");
        sl_topics_close(t);
        return SL_ENOMEM;
    }
    t->worker_started = true;
    *out = t;
    return SL_OK;
}

void sl_topics_close(sl_topics *t) {
    if (!t) return;
    if (t->worker_started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->worker, NULL);
        t->worker_started = false;
    }
    /* Work the worker finished still completes (callbacks run exactly once); what that posts
     * now runs inline (post_job). */
    while (t->done) sl_topics_dispatch(t);
    if (t->efd >= 0) close(t->efd);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->ensured_cv);
    while (t->reserved) {
        reserved *r = t->reserved;
        t->reserved = r->next;
        free(r);
    }
    for (int b = 0; b < NBUCKETS; b++)
        for (sl_topic *tp = t->buckets[b], *n; tp; tp = n) {
            n = tp->next;
            topic_free(tp);
        }
    free(t);
}

/* Makes the topic key of a topic created on the loop thread (auto-creation, the audit topic).
 * The key service's blocking calls belong off the loop, so the file worker makes it while the
 * loop waits: a synchronous creation blocks the loop anyway, and this keeps the key service's
 * threading contract. Before the worker starts (at start) it runs here. The loop waits only
 * for the local provider (an in-process wrap); with a network KMS or an HSM the topic is
 * created without its key and the key service makes it off the loop on first use (the first
 * produce gets the retriable KAFKA_STORAGE_ERROR until it is made), so a slow or unreachable
 * KMS never stalls the loop. */
static sl_err ensure_blocking(sl_topics *t, const sl_topic *tp) {
    if (!t->ks) return SL_OK;
    if (t->worker_started && !sl_keysvc_provider_is_local(t->ks)) return SL_OK;
    job *j = job_new(t, JOB_ENSURE, tp->name, 0, 0);
    if (!j) return SL_ENOMEM;
    j->id = tp->id;
    j->blocking = true;
    pthread_mutex_lock(&t->mu);
    if (!t->worker_started || t->stop) {
        pthread_mutex_unlock(&t->mu);
        job_run(j);
    } else {
        *t->queue_tail = j;
        t->queue_tail = &j->next;
        pthread_cond_signal(&t->cv);
        while (!j->finished) pthread_cond_wait(&t->ensured_cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
    sl_err e = j->result;
    free(j);
    return e;
}

sl_err sl_topics_create(sl_topics *t, sl_str name, int32_t npart, const sl_topic_config *tc,
                        bool validate_only, sl_topic **out) {
    if (!sl_topic_name_valid(name)) return SL_EINVAL;
    if (sl_topics_find(t, name) || is_reserved(t, name)) return SL_EEXISTS;
    if (npart < 1 || npart > 100000) return SL_EINVAL;
    if (validate_only) return SL_OK;
    sl_topic *tp = topic_new(name.p, (size_t)name.len, npart);
    if (!tp) return SL_ENOMEM;
    do random_bytes(tp->id.b, 16);
    while (sl_uuid_is_zero(&tp->id) || sl_topics_find_id(t, &tp->id));
    if (tc) tp->cfg = *tc;
    sl_err e = ensure_blocking(t, tp);
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
    for (int32_t i = 0; i < tp->npart; i++)
        if (tp->parts[i]->log) sl_log_set_config(tp->parts[i]->log, &lc);
    return SL_OK;
}

#define RETRY_INTERVAL_MS 5000

static void key_retry_done(job *j) {
    sl_topic *tp = j->tp;
    tp->key_retrying = false;
    if (!j->result) {
        tp->key_missing = false;
        SL_INFO("topics", "topic key available again; reopening its partitions", "topic=%s",
                tp->name);
        j->t->next_retry_ms = 0; /* reopen at the next tick */
    }
    job_free(j);
}

void sl_topics_retry_unavailable(sl_topics *t, int64_t now_ms) {
    if (!t->ks || now_ms < t->next_retry_ms) return;
    t->next_retry_ms = now_ms + RETRY_INTERVAL_MS;
    for (sl_topic *tp = sl_topics_next(t, NULL); tp; tp = sl_topics_next(t, tp)) {
        if (tp->deleted || tp->busy) continue;
        if (tp->key_missing) {
            if (tp->key_retrying) continue;
            job *j = job_new(t, JOB_ENSURE, tp->name, 0, 0);
            if (!j) return;
            j->id = tp->id;
            j->tp = tp;
            sl_topic_hold(tp);
            j->cont = key_retry_done;
            tp->key_retrying = true;
            post_job(t, j);
            continue;
        }
        for (int32_t i = 0; i < tp->npart; i++) {
            sl_partition *p = tp->parts[i];
            if (!p || !retriable(p->unavailable)) continue;
            sl_err e = open_partition(t, tp, i, false);
            if (e) {
                if (e != p->unavailable)
                    SL_WARN("topics", "partition still unavailable",
                            "topic=%s partition=%d err=%s (%s)", tp->name, i, sl_errname(e),
                            sl_strerror(e));
                p->unavailable = e;
                continue;
            }
            p->unavailable = SL_OK;
            SL_INFO("topics", "partition available again", "topic=%s partition=%d", tp->name, i);
        }
    }
}

void sl_topics_drop_keys(sl_topics *t, const uint8_t topic_id[16]) {
    sl_uuid id;
    memcpy(id.b, topic_id, 16);
    sl_topic *tp = sl_topics_find_id(t, &id);
    if (!tp) return;
    for (int32_t i = 0; i < tp->npart; i++)
        if (tp->parts[i] && tp->parts[i]->log) sl_log_drop_keys(tp->parts[i]->log);
    SL_INFO("topics", "topic key shredded; its partitions' keys dropped", "topic=%s partitions=%d",
            tp->name, tp->npart);
}
