#include "sl_compactor.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_txnpart.h"
#include "kms/sl_keysvc.h"
#include "storage/sl_cleaner.h"

/* A topic key that is loading (the key service fetches it off the loop): try again soon. */
#define KEY_RETRY_MS 1000
/* After a clean failed authentication, the partition waits this many backoffs (its reads fail
 * the same way and are reported there; the cleaner need not repeat it every tick). */
#define TAMPER_BACKOFFS 40
/* Dirty segments per clean (R9): prepare's key operations and commit's renames run on the loop,
 * so a backlog is cleaned in windows, each clean starting where the last one stopped. */
#define MAX_DIRTY_SEGMENTS 64

/* Per-partition state: the checkpoint the cleaner gave back (read from the partition's file the
 * first time the partition is assessed), keyed by partition; entries of deleted topics go when
 * their topic is settled. */
typedef struct ckpt {
    struct ckpt *next;
    const sl_partition *p;
    sl_cleaner_checkpoint ck;
    int64_t retry_after_ms; /* after a failed clean, this partition waits a backoff */
    bool shredded;          /* its topic key is destroyed: nothing to clean, ever */
} ckpt;

#define CK_BUCKETS 1024

static size_t ck_bucket(const sl_partition *p) {
    uintptr_t v = (uintptr_t)p;
    return (size_t)((v >> 4) ^ (v >> 14)) % CK_BUCKETS;
}

struct sl_compactor {
    sl_loop *loop;
    sl_topics *topics;
    const sl_config *cfg;
    sl_keysvc *ks; /* borrowed; NULL: encryption at rest off */
    sl_timer *timer;
    int efd;
    ckpt *cks[CK_BUCKETS]; /* by partition address */
    /* The job in flight (loop thread): its partition and topic (held). */
    sl_cleaner_job *job;
    sl_partition *job_part;
    sl_topic *job_topic;
    int64_t job_start_ms;
    /* Worker hand-off. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sl_cleaner_job *todo; /* guarded by mu: posted to the worker */
    bool done;            /* guarded by mu: the worker finished `job` */
    sl_err run_result;    /* guarded by mu */
    bool stop;            /* guarded by mu */
    sl_compactor_stats stats;
    /* Internal logs (see that section below): registered ones, and the one in flight. */
    struct internal_log *internals;
    struct internal_log *job_internal;
};

static void *worker(void *arg) {
    sl_compactor *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->todo && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
        if (!c->todo) break; /* stop with nothing to do */
        sl_cleaner_job *j = c->todo;
        c->todo = NULL;
        pthread_mutex_unlock(&c->mu);
        sl_err e = sl_cleaner_run(j);
        pthread_mutex_lock(&c->mu);
        c->run_result = e;
        c->done = true;
        pthread_cond_broadcast(&c->cv);
        uint64_t one = 1;
        ssize_t w = write(c->efd, &one, sizeof one); /* post the completion to the loop */
        (void)w;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static ckpt *ckpt_for(sl_compactor *c, sl_partition *p) {
    ckpt **head = &c->cks[ck_bucket(p)];
    for (ckpt *k = *head; k; k = k->next)
        if (k->p == p) return k;
    ckpt *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->p = p;
    char dir[PATH_MAX];
    sl_topics_partition_dir(c->topics, p->topic, p->index, dir, sizeof dir);
    if (sl_cleaner_read_checkpoint(dir, &k->ck) != SL_OK) {
        /* A damaged checkpoint: start over from the log's start (cleaning twice is harmless). */
        SL_WARN("cleaner", "checkpoint unreadable; cleaning from the start",
                "topic=%s partition=%d", p->topic->name, p->index);
        k->ck = (sl_cleaner_checkpoint){.offset = 0, .horizon_ms = -1};
    }
    k->next = *head;
    *head = k;
    return k;
}

static void config_for(const sl_compactor *c, const sl_topic *tp, sl_cleaner_config *cc) {
    sl_cleaner_config_default(cc);
    cc->delete_retention_ms = sl_tcfg_value(c->topics, tp, SL_TCFG_DELETE_RETENTION_MS);
    cc->min_compaction_lag_ms = sl_tcfg_value(c->topics, tp, SL_TCFG_MIN_COMPACTION_LAG_MS);
    cc->max_compaction_lag_ms = sl_tcfg_value(c->topics, tp, SL_TCFG_MAX_COMPACTION_LAG_MS);
    cc->min_cleanable_dirty_ratio = sl_tcfg_ratio(c->topics, tp);
    cc->offset_map_bytes = (size_t)c->cfg->log_cleaner_dedupe_buffer_size;
    cc->max_dirty_segments = MAX_DIRTY_SEGMENTS;
    cc->segment_bytes = sl_tcfg_value(c->topics, tp, SL_TCFG_SEGMENT_BYTES);
}

/* What a failed prepare or run means for the partition: a key still loading is retried soon and
 * silently; a shredded topic is never cleaned again; a segment that fails authentication is a
 * tamper event (as a read of it is) and the partition waits long; anything else waits a minute. */
static void key_failure(sl_compactor *c, sl_partition *p, ckpt *k, sl_err e, int64_t bad_base) {
    int64_t mono = sl_mono_ms();
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) {
        if (k) k->retry_after_ms = mono + KEY_RETRY_MS;
        return;
    }
    if (e == SL_EKEY_DESTROYED) {
        if (k && !k->shredded)
            SL_INFO("cleaner", "topic key shredded: partition no longer cleaned",
                    "topic=%s partition=%d", p->topic->name, p->index);
        if (k) k->shredded = true;
        return;
    }
    if (e == SL_ETAMPER) {
        char what[96];
        if (bad_base >= 0)
            snprintf(what, sizeof what, "cleaner: segment %" PRId64, bad_base);
        else
            snprintf(what, sizeof what, "cleaner: segment keys");
        if (c->ks) sl_keysvc_tamper(c->ks, p->topic->id.b, p->index, what);
        if (k) k->retry_after_ms = mono + (int64_t)c->cfg->log_cleaner_backoff_ms * TAMPER_BACKOFFS;
        SL_WARN("cleaner",
                "stored data failed authentication; nothing was rewritten, the partition is "
                "retried later",
                "topic=%s partition=%d during=%s", p->topic->name, p->index, what);
        return;
    }
    if (k) k->retry_after_ms = mono + 60000;
    if (e != SL_ESTATE)
        SL_WARN("cleaner", "clean failed; retried later", "topic=%s partition=%d err=%s",
                p->topic->name, p->index, sl_errname(e));
}

static void finish_internal(sl_compactor *c);

/* Commits the finished job on the loop thread and logs what it did. */
static void finish(sl_compactor *c) {
    if (c->job_internal) {
        finish_internal(c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    sl_err run = c->run_result;
    c->done = false;
    pthread_mutex_unlock(&c->mu);
    sl_partition *p = c->job_part;
    sl_topic *tp = c->job_topic;
    sl_cleaner_result res;
    memset(&res, 0, sizeof res);
    sl_err e = sl_cleaner_commit(c->job, run, &res);
    c->job = NULL;
    c->job_part = NULL;
    c->job_topic = NULL;
    ckpt *k = ckpt_for(c, p);
    if (e == SL_OK) {
        /* Fetches run on this thread too: none sees the removed markers' entries in between. */
        sl_txnpart_forget_aborted(p, res.removed_abort_markers, res.nremoved_abort);
        if (k) k->ck = res.checkpoint;
        c->stats.cleans++;
        c->stats.records_dropped += res.records_dropped;
        c->stats.bytes_before += res.bytes_before;
        c->stats.bytes_after += res.bytes_after;
        SL_INFO("cleaner", "partition cleaned",
                "topic=%s partition=%d segments=%d records_read=%" PRId64
                " records_dropped=%" PRId64 " tombstones_dropped=%" PRId64
                " aborted_batches_dropped=%" PRId64 " markers_stamped=%" PRId64
                " markers_removed=%" PRId64 " bytes_before=%" PRId64 " bytes_after=%" PRId64
                " first_dirty=%" PRId64 " map_full=%d ms=%" PRId64,
                tp->name, p->index, res.segments_rewritten, res.records_read, res.records_dropped,
                res.tombstones_dropped, res.aborted_batches_dropped, res.markers_stamped,
                res.markers_removed, res.bytes_before, res.bytes_after, res.checkpoint.offset,
                res.map_full ? 1 : 0, sl_mono_ms() - c->job_start_ms);
        sl_cleaner_result_free(&res);
    } else {
        c->stats.failures++;
        key_failure(c, p, k, e, res.bad_base);
    }
    sl_topic_release(tp);
}

static void efd_ready(void *ctx, uint32_t ev) {
    sl_compactor *c = ctx;
    uint64_t n;
    ssize_t r = read(c->efd, &n, sizeof n);
    (void)r;
    pthread_mutex_lock(&c->mu);
    bool done = c->done;
    pthread_mutex_unlock(&c->mu);
    if (done && c->job) finish(c);
}

static void arm(sl_compactor *c);
static void tick_internal(sl_compactor *c);
static void free_internals(sl_compactor *c);

/* Picks the dirtiest due partition of the compacted topics and posts its clean. */
static void tick(void *ctx) {
    sl_compactor *c = ctx;
    c->timer = NULL;
    if (!c->job) tick_internal(c); /* first: they are small, and never starved by topics */
    if (!c->job) {
        int64_t now = sl_wall_ms(), mono = sl_mono_ms();
        sl_partition *best = NULL;
        double best_ratio = -1;
        int64_t best_end = 0;
        ckpt *best_k = NULL;
        for (sl_topic *tp = sl_topics_next(c->topics, NULL); tp;
             tp = sl_topics_next(c->topics, tp)) {
            if (tp->deleted || tp->busy || !sl_topic_compacted(c->topics, tp)) continue;
            sl_cleaner_config cc;
            config_for(c, tp, &cc);
            for (int32_t i = 0; i < tp->npart; i++) {
                sl_partition *p = tp->parts[i];
                if (!p || !p->log || p->unavailable) continue;
                ckpt *k = ckpt_for(c, p);
                if (!k || k->shredded || k->retry_after_ms > mono) continue;
                /* Bounded by the last stable offset: an open transaction's data is judged once
                 * its marker is in the log (sl_cleaner.h). */
                sl_cleaner_assessment as;
                sl_cleaner_assess_txn(p->log, &cc, &k->ck, sl_txnpart_lso(p), now, &as);
                if (!as.due) continue;
                /* Kafka: the dirtiest first; a lag or tombstone deadline counts as fully dirty. */
                double r = as.lag_exceeded || as.tombstones_expired ? 2.0 : as.dirty_ratio;
                if (r > best_ratio) {
                    best_ratio = r;
                    best = p;
                    best_end = as.cleanable_end;
                    best_k = k;
                }
            }
        }
        if (best) {
            sl_cleaner_config cc;
            config_for(c, best->topic, &cc);
            sl_cleaner_job *j = NULL;
            sl_cleaner_txn txn = {.stable_end = sl_txnpart_lso(best)};
            sl_cleaner_aborted *ab = NULL;
            sl_err e = sl_txnpart_aborted_below(best, best_end, &ab, &txn.nab);
            txn.ab = ab;
            if (!e) e = sl_cleaner_prepare_txn(best->log, &cc, &best_k->ck, &txn, now, &j);
            free(ab); /* prepare copied what it needs */
            if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE || e == SL_EKEY_DESTROYED ||
                e == SL_ETAMPER) {
                key_failure(c, best, ckpt_for(c, best), e, -1);
            } else if (e) {
                ckpt *k = ckpt_for(c, best);
                if (k) k->retry_after_ms = mono + (int64_t)c->cfg->log_cleaner_backoff_ms;
                if (e != SL_ESTATE)
                    SL_WARN("cleaner", "cannot prepare a clean", "topic=%s partition=%d err=%s",
                            best->topic->name, best->index, sl_errname(e));
            } else if (j) {
                if (!c->thread_started) {
                    if (pthread_create(&c->thread, NULL, worker, c) != 0) {
                        sl_cleaner_commit(j, SL_ENOMEM, NULL); /* discard */
                        SL_ERROR("cleaner", "cannot start the cleaner thread", "err=%s",
                                 strerror(errno));
                        arm(c);
                        return;
                    }
                    c->thread_started = true;
                }
                c->job = j;
                c->job_part = best;
                c->job_topic = best->topic;
                c->job_start_ms = mono;
                sl_topic_hold(best->topic);
                SL_INFO("cleaner", "clean started", "topic=%s partition=%d", best->topic->name,
                        best->index);
                pthread_mutex_lock(&c->mu);
                c->todo = j;
                pthread_cond_signal(&c->cv);
                pthread_mutex_unlock(&c->mu);
            }
        }
    }
    arm(c);
}

static void arm(sl_compactor *c) {
    int64_t ms = c->cfg->log_cleaner_backoff_ms;
    c->timer = sl_timer_start(c->loop, ms > 0 ? ms : 1, tick, c);
}

sl_err sl_compactor_new(sl_loop *loop, sl_topics *topics, const sl_config *cfg,
                        sl_compactor **out) {
    *out = NULL;
    if (!cfg->log_cleaner_enable) return SL_OK;
    sl_compactor *c = calloc(1, sizeof *c);
    if (!c) return SL_ENOMEM;
    c->loop = loop;
    c->topics = topics;
    c->cfg = cfg;
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd < 0) {
        free(c);
        return SL_EIO;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (sl_loop_watch(loop, c->efd, SL_EV_READ, efd_ready, c)) {
        close(c->efd);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return SL_ENOMEM;
    }
    arm(c);
    *out = c;
    return SL_OK;
}

/* Blocks the loop until the worker finished the job in flight, then commits it. */
static void wait_and_finish(sl_compactor *c) {
    if (!c->job) return;
    pthread_mutex_lock(&c->mu);
    while (!c->done) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    finish(c);
}

void sl_compactor_set_keysvc(sl_compactor *c, sl_keysvc *ks) {
    if (c) c->ks = ks;
}

void sl_compactor_shredded(sl_compactor *c, const uint8_t topic_id[16]) {
    if (!c || !c->job || !c->job_topic || memcmp(c->job_topic->id.b, topic_id, 16) != 0) return;
    /* The worker stops at its next frame and its key copies go; finish discards the run. A run
     * already decided completes: its files are sealed under DEKs the shredded key wrapped. */
    sl_cleaner_cancel(c->job);
}

void sl_compactor_settle(sl_compactor *c, sl_topic *topic) {
    if (!c) return;
    if (c->job && c->job_topic == topic) {
        SL_INFO("cleaner", "topic deleted during a clean: finishing it first", "topic=%s",
                topic->name);
        wait_and_finish(c);
    }
    for (int32_t i = 0; i < topic->npart; i++) {
        for (ckpt **pk = &c->cks[ck_bucket(topic->parts[i])]; *pk;) {
            if ((*pk)->p == topic->parts[i]) {
                ckpt *k = *pk;
                *pk = k->next;
                free(k);
            } else {
                pk = &(*pk)->next;
            }
        }
    }
}

void sl_compactor_free(sl_compactor *c) {
    if (!c) return;
    if (c->timer) sl_timer_cancel(c->loop, c->timer);
    wait_and_finish(c);
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    sl_loop_unwatch(c->loop, c->efd);
    close(c->efd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    for (size_t b = 0; b < CK_BUCKETS; b++)
        while (c->cks[b]) {
            ckpt *k = c->cks[b];
            c->cks[b] = k->next;
            free(k);
        }
    free_internals(c);
    free(c);
}

void sl_compactor_stats_get(const sl_compactor *c, sl_compactor_stats *out) {
    if (c)
        *out = c->stats;
    else
        memset(out, 0, sizeof *out);
}

/* ---- internal logs ----
 * Partition logs that are not a topic's (the group-offsets log) are cleaned by the same cleaner,
 * one clean at a time with the topics' (the same worker and completion), under the broker's
 * log.cleaner.* settings as Kafka cleans __consumer_offsets (cleanup.policy=compact, the broker
 * defaults). They are assessed before the topics at each tick. Sealed under the system key (topic
 * id all zero, partition 0): a segment failing authentication is a tamper event against it. */

typedef struct internal_log {
    struct internal_log *next;
    char name[64];
    sl_log *log; /* borrowed; outlives the compactor */
    sl_cleaner_checkpoint ck;
    int64_t retry_after_ms;
} internal_log;

static const uint8_t k_system_id[16] = {0};

static void internal_config(const sl_compactor *c, sl_cleaner_config *cc) {
    sl_cleaner_config_default(cc);
    cc->delete_retention_ms = c->cfg->log_cleaner_delete_retention_ms;
    cc->min_compaction_lag_ms = c->cfg->log_cleaner_min_compaction_lag_ms;
    cc->max_compaction_lag_ms = c->cfg->log_cleaner_max_compaction_lag_ms;
    cc->min_cleanable_dirty_ratio = c->cfg->log_cleaner_min_cleanable_ratio;
    cc->offset_map_bytes = (size_t)c->cfg->log_cleaner_dedupe_buffer_size;
    cc->segment_bytes = c->cfg->offsets_topic_segment_bytes; /* the one internal log */
}

sl_err sl_compactor_add_internal(sl_compactor *c, const char *name, sl_log *log, const char *dir) {
    if (!c) return SL_OK;
    internal_log *l = calloc(1, sizeof *l);
    if (!l) return SL_ENOMEM;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->log = log;
    if (sl_cleaner_read_checkpoint(dir, &l->ck) != SL_OK) {
        SL_WARN("cleaner", "checkpoint unreadable; cleaning from the start", "log=%s", name);
        l->ck = (sl_cleaner_checkpoint){.offset = 0, .horizon_ms = -1};
    }
    l->next = c->internals;
    c->internals = l;
    return SL_OK;
}

static void free_internals(sl_compactor *c) {
    while (c->internals) {
        internal_log *l = c->internals;
        c->internals = l->next;
        free(l);
    }
}

/* Posts `j` to the worker (started on first use); false (the job discarded) when it cannot. */
static bool start_job(sl_compactor *c, sl_cleaner_job *j) {
    if (!c->thread_started) {
        if (pthread_create(&c->thread, NULL, worker, c) != 0) {
            sl_cleaner_commit(j, SL_ENOMEM, NULL); /* discard */
            SL_ERROR("cleaner", "cannot start the cleaner thread", "err=%s", strerror(errno));
            return false;
        }
        c->thread_started = true;
    }
    c->job = j;
    c->job_start_ms = sl_mono_ms();
    pthread_mutex_lock(&c->mu);
    c->todo = j;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return true;
}

/* As key_failure, against the system key. */
static void internal_failure(sl_compactor *c, internal_log *l, sl_err e, int64_t bad_base) {
    int64_t mono = sl_mono_ms();
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) {
        l->retry_after_ms = mono + KEY_RETRY_MS;
        return;
    }
    if (e == SL_ETAMPER) {
        char what[160];
        if (bad_base >= 0)
            snprintf(what, sizeof what, "cleaner: %s segment %" PRId64, l->name, bad_base);
        else
            snprintf(what, sizeof what, "cleaner: %s segment keys", l->name);
        if (c->ks) sl_keysvc_tamper(c->ks, k_system_id, 0, what);
        l->retry_after_ms = mono + (int64_t)c->cfg->log_cleaner_backoff_ms * TAMPER_BACKOFFS;
        SL_WARN("cleaner",
                "stored data failed authentication; nothing was rewritten, the log is retried "
                "later",
                "log=%s during=%s", l->name, what);
        return;
    }
    l->retry_after_ms = mono + 60000;
    if (e != SL_ESTATE)
        SL_WARN("cleaner", "clean failed; retried later", "log=%s err=%s", l->name, sl_errname(e));
}

/* Starts the clean of the dirtiest due internal log, if any. */
static void tick_internal(sl_compactor *c) {
    int64_t now = sl_wall_ms(), mono = sl_mono_ms();
    sl_cleaner_config cc;
    internal_config(c, &cc);
    internal_log *best = NULL;
    double best_ratio = -1;
    for (internal_log *l = c->internals; l; l = l->next) {
        if (l->retry_after_ms > mono) continue;
        sl_cleaner_assessment as;
        sl_cleaner_assess(l->log, &cc, &l->ck, now, &as);
        if (!as.due) continue;
        double r = as.lag_exceeded || as.tombstones_expired ? 2.0 : as.dirty_ratio;
        if (r > best_ratio) {
            best_ratio = r;
            best = l;
        }
    }
    if (!best) return;
    sl_cleaner_job *j = NULL;
    sl_err e = sl_cleaner_prepare(best->log, &cc, now, &j);
    if (e) {
        internal_failure(c, best, e, -1);
        return;
    }
    if (!j) return;
    if (!start_job(c, j)) return;
    c->job_internal = best;
    SL_INFO("cleaner", "clean started", "log=%s", best->name);
}

/* finish() for an internal log. */
static void finish_internal(sl_compactor *c) {
    pthread_mutex_lock(&c->mu);
    sl_err run = c->run_result;
    c->done = false;
    pthread_mutex_unlock(&c->mu);
    internal_log *l = c->job_internal;
    sl_cleaner_result res;
    memset(&res, 0, sizeof res);
    sl_err e = sl_cleaner_commit(c->job, run, &res);
    c->job = NULL;
    c->job_internal = NULL;
    if (e != SL_OK) {
        c->stats.failures++;
        internal_failure(c, l, e, res.bad_base);
        return;
    }
    l->ck = res.checkpoint;
    c->stats.cleans++;
    c->stats.records_dropped += res.records_dropped;
    c->stats.bytes_before += res.bytes_before;
    c->stats.bytes_after += res.bytes_after;
    SL_INFO("cleaner", "internal log cleaned",
            "log=%s segments=%d records_read=%" PRId64 " records_dropped=%" PRId64
            " tombstones_dropped=%" PRId64 " bytes_before=%" PRId64 " bytes_after=%" PRId64
            " first_dirty=%" PRId64 " map_full=%d ms=%" PRId64,
            l->name, res.segments_rewritten, res.records_read, res.records_dropped,
            res.tombstones_dropped, res.bytes_before, res.bytes_after, res.checkpoint.offset,
            res.map_full ? 1 : 0, sl_mono_ms() - c->job_start_ms);
}
