/* Group commit: one thread fsyncs on behalf of every log; requests that arrive while it is busy
 * share the next round of fsyncs. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "sl_log.h"
#include "sl_log_internal.h"
#include "storage/sl_flusher.h"

typedef struct req {
    struct req *next;
    sl_log *log;
    int64_t target, rec_mark;
    sl_flush_cb cb;
    void *ctx;
    sl_err result;
} req;

struct sl_flusher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req *queue, **queue_tail; /* guarded by mu */
    req *done, **done_tail;   /* guarded by mu */
    bool stop;                /* guarded by mu */
    int efd;
    uint64_t round; /* flusher thread only */
    /* fsync latency (sl_flusher.h): written by the flusher thread, read by scrapes */
    _Atomic uint64_t fsync_bucket[SL_FSYNC_NBUCKETS + 1], fsync_sum_ns;
};

const double sl_fsync_bucket_le[SL_FSYNC_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5};

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fsync_observe(sl_flusher *f, int64_t ns) {
    int i = 0;
    while (i < SL_FSYNC_NBUCKETS && (double)ns > sl_fsync_bucket_le[i] * 1e9) i++;
    atomic_fetch_add_explicit(&f->fsync_bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->fsync_sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

void sl_flusher_fsync_hist(const sl_flusher *f, sl_fsync_hist *out) {
    for (int i = 0; i <= SL_FSYNC_NBUCKETS; i++)
        out->bucket[i] = atomic_load_explicit(&f->fsync_bucket[i], memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&f->fsync_sum_ns, memory_order_relaxed);
}

static void post_done(sl_flusher *f, req *head, req **tail) {
    pthread_mutex_lock(&f->mu);
    *f->done_tail = head;
    f->done_tail = tail;
    pthread_mutex_unlock(&f->mu);
    uint64_t one = 1;
    while (write(f->efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

static void *flusher_main(void *arg) {
    sl_flusher *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (!f->queue && !f->stop) pthread_cond_wait(&f->cv, &f->mu);
        req *batch = f->queue, **tail = f->queue_tail;
        f->queue = NULL;
        f->queue_tail = &f->queue;
        bool stop = f->stop;
        pthread_mutex_unlock(&f->mu);
        if (!batch) {
            if (stop) break;
            continue;
        }
        /* Each distinct log is synced once per round however many requests name it; the
         * round stamp lives in the log and is touched only by this thread. */
        f->round++;
        for (req *r = batch; r; r = r->next) {
            if (r->log->flush_round != f->round) {
                r->log->flush_round = f->round;
                int64_t t0 = mono_ns();
                r->log->flush_result = sl_log__fsync_dirty(r->log);
                fsync_observe(f, mono_ns() - t0);
            }
            r->result = r->log->flush_result;
        }
        post_done(f, batch, tail);
    }
    return NULL;
}

sl_err sl_flusher_new(sl_flusher **out) {
    sl_flusher *f = calloc(1, sizeof *f);
    if (!f) return SL_ENOMEM;
    f->queue_tail = &f->queue;
    f->done_tail = &f->done;
    f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->efd < 0) {
        free(f);
        return SL_EIO;
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, flusher_main, f) != 0) {
        close(f->efd);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return SL_ENOMEM;
    }
    *out = f;
    return SL_OK;
}

void sl_flusher_free(sl_flusher *f) {
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    /* Callbacks promised "exactly once" still run, here on the caller's (loop) thread. */
    sl_flusher_dispatch(f);
    close(f->efd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

int sl_flusher_fd(const sl_flusher *f) { return f->efd; }

void sl_flusher_request(sl_flusher *f, sl_log *log, sl_flush_cb cb, void *ctx) {
    req *r = f ? malloc(sizeof *r) : NULL;
    if (!r) {
        /* Without memory for the request, or without a flusher (a gateway's broker has none:
         * sl_broker.h), the sync happens inline: slower, never lost. */
        int64_t target = sl_log_end_offset(log), mark = log->appended_records;
        sl_err e = sl_log__fsync_dirty(log);
        if (!e) sl_log__mark_durable(log, target, mark);
        cb(ctx, e);
        return;
    }
    sl_log__ref(log);
    *r = (req){.log = log,
               .target = sl_log_end_offset(log),
               .rec_mark = log->appended_records,
               .cb = cb,
               .ctx = ctx};
    if (sl_log_durable_offset(log) >= r->target) {
        /* Already durable: skip the thread but still complete from dispatch, as promised. */
        r->result = SL_OK;
        post_done(f, r, &r->next);
        return;
    }
    pthread_mutex_lock(&f->mu);
    *f->queue_tail = r;
    f->queue_tail = &r->next;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void sl_flusher_dispatch(sl_flusher *f) {
    uint64_t n;
    while (read(f->efd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&f->mu);
    req *list = f->done;
    f->done = NULL;
    f->done_tail = &f->done;
    pthread_mutex_unlock(&f->mu);
    while (list) {
        req *r = list;
        list = r->next;
        if (r->result == SL_OK && !r->log->closed)
            sl_log__mark_durable(r->log, r->target, r->rec_mark);
        r->cb(r->ctx, r->result);
        sl_log__unref(r->log);
        free(r);
    }
}
