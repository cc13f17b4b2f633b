/* Level-triggered epoll loop. Watches live in per-fd records reached through epoll's data
 * pointer; an unwatched record is only marked dead and freed after the dispatch round, so an
 * event already fetched for it (or for a reused fd number) is skipped instead of touching freed
 * memory. Timers sit in a binary min-heap ordered by (deadline, start sequence). */
#include "net/sl_loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"

#define SL_LOOP_MAX_EVENTS 256
#define SL_LOOP_NSIG       65

typedef struct sl_watch {
    int fd;
    uint32_t events;
    bool dead;
    sl_io_cb cb;
    void *ctx;
    struct sl_watch *next_dead;
} sl_watch;

struct sl_timer {
    int64_t deadline;
    uint64_t seq;
    size_t idx;
    sl_timer_cb cb;
    void *ctx;
};

struct sl_loop {
    int epfd;
    sl_watch **byfd; /* indexed by fd; NULL when not watched */
    size_t nbyfd;
    sl_watch *dead;
    sl_post *posted, *posted_tail; /* FIFO of posted work */
    sl_timer **heap;
    size_t nheap, capheap;
    uint64_t seq;
    int64_t now;
    bool stop;
    int sigfd;
    sigset_t sigmask;
    struct {
        sl_signal_cb cb;
        void *ctx;
    } sigs[SL_LOOP_NSIG];
};

sl_loop *sl_loop_new(void) {
    sl_loop *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        SL_ERROR("net", "epoll_create1 failed", "errno=%d", errno);
        free(l);
        return NULL;
    }
    l->sigfd = -1;
    sigemptyset(&l->sigmask);
    l->now = sl_mono_ms();
    return l;
}

static void free_dead(sl_loop *l) {
    while (l->dead) {
        sl_watch *w = l->dead;
        l->dead = w->next_dead;
        free(w);
    }
}

void sl_loop_free(sl_loop *l) {
    if (!l) return;
    for (size_t i = 0; i < l->nbyfd; i++) free(l->byfd[i]);
    free(l->byfd);
    free_dead(l);
    for (size_t i = 0; i < l->nheap; i++) free(l->heap[i]);
    free(l->heap);
    /* The signals stay blocked: unblocking would let a pending one take its default action. */
    if (l->sigfd >= 0) close(l->sigfd);
    close(l->epfd);
    free(l);
}

static uint32_t to_epoll(uint32_t ev) {
    return ((ev & SL_EV_READ) ? (uint32_t)EPOLLIN : 0) |
           ((ev & SL_EV_WRITE) ? (uint32_t)EPOLLOUT : 0);
}

static uint32_t from_epoll(uint32_t ev) {
    return ((ev & EPOLLIN) ? SL_EV_READ : 0) | ((ev & EPOLLOUT) ? SL_EV_WRITE : 0) |
           ((ev & (EPOLLERR | EPOLLHUP)) ? SL_EV_ERROR : 0);
}

static sl_err errno_to_err(int e) { return (e == ENOMEM || e == ENOSPC) ? SL_ENOMEM : SL_EINVAL; }

sl_err sl_loop_watch(sl_loop *l, int fd, uint32_t events, sl_io_cb cb, void *ctx) {
    if (fd < 0 || !cb) return SL_EINVAL;
    if ((size_t)fd >= l->nbyfd) {
        size_t n = l->nbyfd ? l->nbyfd : 64;
        while (n <= (size_t)fd) n *= 2;
        sl_watch **nb = realloc(l->byfd, n * sizeof *nb);
        if (!nb) return SL_ENOMEM;
        memset(nb + l->nbyfd, 0, (n - l->nbyfd) * sizeof *nb);
        l->byfd = nb;
        l->nbyfd = n;
    }
    if (l->byfd[fd]) return SL_EEXISTS;
    sl_watch *w = calloc(1, sizeof *w);
    if (!w) return SL_ENOMEM;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->ctx = ctx;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        sl_err e = errno_to_err(errno);
        free(w);
        return e;
    }
    l->byfd[fd] = w;
    return SL_OK;
}

sl_err sl_loop_modify(sl_loop *l, int fd, uint32_t events) {
    if (fd < 0 || (size_t)fd >= l->nbyfd || !l->byfd[fd]) return SL_ENOTFOUND;
    sl_watch *w = l->byfd[fd];
    if (w->events == events) return SL_OK;
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return errno_to_err(errno);
    w->events = events;
    return SL_OK;
}

void sl_loop_unwatch(sl_loop *l, int fd) {
    if (fd < 0 || (size_t)fd >= l->nbyfd || !l->byfd[fd]) return;
    sl_watch *w = l->byfd[fd];
    /* Fails harmlessly if the fd was already closed: epoll dropped it then. */
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->byfd[fd] = NULL;
    w->dead = true;
    w->next_dead = l->dead;
    l->dead = w;
}

/* ---- timers ---- */

static bool timer_before(const sl_timer *a, const sl_timer *b) {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(sl_loop *l, size_t i, sl_timer *t) {
    l->heap[i] = t;
    t->idx = i;
}

static void sift_up(sl_loop *l, size_t i) {
    sl_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, l->heap[parent])) break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void sift_down(sl_loop *l, size_t i) {
    sl_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->nheap) break;
        if (c + 1 < l->nheap && timer_before(l->heap[c + 1], l->heap[c])) c++;
        if (!timer_before(l->heap[c], t)) break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

static void heap_remove(sl_loop *l, size_t i) {
    sl_timer *last = l->heap[--l->nheap];
    if (i == l->nheap) return;
    heap_set(l, i, last);
    sift_down(l, i);
    sift_up(l, last->idx);
}

sl_timer *sl_timer_start(sl_loop *l, int64_t delay_ms, sl_timer_cb cb, void *ctx) {
    if (!cb) return NULL;
    if (l->nheap == l->capheap) {
        size_t n = l->capheap ? l->capheap * 2 : 16;
        sl_timer **nh = realloc(l->heap, n * sizeof *nh);
        if (!nh) return NULL;
        l->heap = nh;
        l->capheap = n;
    }
    sl_timer *t = malloc(sizeof *t);
    if (!t) return NULL;
    if (delay_ms < 0) delay_ms = 0;
    /* The real clock, not the cached one: a timer started after a long callback must not fire
     * early. */
    int64_t now = sl_mono_ms();
    t->deadline = delay_ms > INT64_MAX - now ? INT64_MAX : now + delay_ms;
    t->seq = l->seq++;
    t->cb = cb;
    t->ctx = ctx;
    l->heap[l->nheap] = t;
    t->idx = l->nheap++;
    sift_up(l, t->idx);
    return t;
}

void sl_timer_cancel(sl_loop *l, sl_timer *t) {
    if (!t) return;
    heap_remove(l, t->idx);
    free(t);
}

static int run_posted(sl_loop *l);

static int run_timers(sl_loop *l) {
    /* Timers started by these callbacks wait for the next iteration, so a timer re-arming
     * itself with delay 0 cannot starve I/O. */
    uint64_t limit = l->seq;
    int ran = 0;
    while (l->nheap && l->heap[0]->deadline <= l->now && l->heap[0]->seq < limit) {
        sl_timer *t = l->heap[0];
        heap_remove(l, 0);
        sl_timer_cb cb = t->cb;
        void *ctx = t->ctx;
        free(t);
        cb(ctx);
        ran++;
        ran += run_posted(l);
    }
    return ran;
}

/* ---- signals ---- */

static void on_signalfd(void *ctx, uint32_t events) {
    sl_loop *l = ctx;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(l->sigfd, &si, sizeof si);
        if (n != (ssize_t)sizeof si) break;
        int signo = (int)si.ssi_signo;
        if (signo > 0 && signo < SL_LOOP_NSIG && l->sigs[signo].cb)
            l->sigs[signo].cb(l->sigs[signo].ctx, signo);
    }
}

sl_err sl_loop_on_signal(sl_loop *l, int signo, sl_signal_cb cb, void *ctx) {
    if (signo <= 0 || signo >= SL_LOOP_NSIG || !cb) return SL_EINVAL;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    /* Blocked on this thread (and threads it starts later) so only the signalfd sees it. */
    if (pthread_sigmask(SIG_BLOCK, &one, NULL) != 0) return SL_EINVAL;
    sigaddset(&l->sigmask, signo);
    int fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) return errno_to_err(errno);
    if (l->sigfd < 0) {
        l->sigfd = fd;
        sl_err e = sl_loop_watch(l, fd, SL_EV_READ, on_signalfd, l);
        if (e != SL_OK) {
            close(fd);
            l->sigfd = -1;
            return e;
        }
    }
    l->sigs[signo].cb = cb;
    l->sigs[signo].ctx = ctx;
    return SL_OK;
}

/* ---- posted work ---- */

void sl_loop_post(sl_loop *l, sl_post *p) {
    if (p->queued) return;
    p->queued = true;
    p->next = NULL;
    p->prev = l->posted_tail;
    if (l->posted_tail)
        l->posted_tail->next = p;
    else
        l->posted = p;
    l->posted_tail = p;
}

void sl_loop_unpost(sl_loop *l, sl_post *p) {
    if (!p->queued) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        l->posted = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->posted_tail = p->prev;
    p->prev = p->next = NULL;
    p->queued = false;
}

static int run_posted(sl_loop *l) {
    int ran = 0;
    while (l->posted) {
        sl_post *p = l->posted;
        sl_loop_unpost(l, p);
        p->cb(p->ctx);
        ran++;
    }
    return ran;
}

int sl_loop_run_posted(sl_loop *l) { return run_posted(l); }

/* ---- running ---- */

int sl_loop_run_once(sl_loop *l, int timeout_ms) {
    l->now = sl_mono_ms();
    int timeout = timeout_ms;
    if (l->nheap) {
        int64_t d = l->heap[0]->deadline - l->now;
        if (d < 0) d = 0;
        if (timeout < 0 || d < timeout) timeout = d > INT32_MAX ? INT32_MAX : (int)d;
    }
    struct epoll_event evs[SL_LOOP_MAX_EVENTS];
    int n = epoll_wait(l->epfd, evs, SL_LOOP_MAX_EVENTS, timeout);
    if (n < 0) {
        if (errno != EINTR) {
            SL_ERROR("net", "epoll_wait failed", "errno=%d", errno);
            return -1;
        }
        n = 0;
    }
    l->now = sl_mono_ms();
    int ran = run_posted(l); /* work posted outside any callback (tests, start-up) */
    for (int i = 0; i < n; i++) {
        sl_watch *w = evs[i].data.ptr;
        if (w->dead) continue;
        w->cb(w->ctx, from_epoll(evs[i].events));
        ran++;
        ran += run_posted(l);
    }
    free_dead(l);
    ran += run_timers(l);
    free_dead(l);
    return ran;
}

void sl_loop_run(sl_loop *l) {
    l->stop = false;
    while (!l->stop) {
        if (sl_loop_run_once(l, -1) < 0) break;
    }
}

void sl_loop_stop(sl_loop *l) { l->stop = true; }

int64_t sl_loop_now(const sl_loop *l) { return l->now; }
