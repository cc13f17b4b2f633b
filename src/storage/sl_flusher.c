/* Group commit: one thread fsyncs on behalf of every log; requests that arrive while it is busy
 * share the next round of fsyncs. */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "sl_log.h"
#include "sl_log_internal.h"

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
};

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
                r->log->flush_result = sl_log__fsync_dirty(r->log);
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
    req *r = malloc(sizeof *r);
    if (!r) {
        /* Without memory for the request the sync happens inline: slower, never lost. */
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
