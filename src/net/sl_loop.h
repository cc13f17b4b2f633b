/* Single-threaded event loop (epoll): fd watches, one-shot timers, signals via signalfd.
 * Everything registered here runs on the loop thread. */
#ifndef SL_NET_LOOP_H
#define SL_NET_LOOP_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_err.h"

enum { SL_EV_READ = 1u, SL_EV_WRITE = 2u, SL_EV_ERROR = 4u };

typedef struct sl_loop sl_loop;
typedef struct sl_timer sl_timer;
typedef void (*sl_io_cb)(void *ctx, uint32_t events);
typedef void (*sl_timer_cb)(void *ctx);
typedef void (*sl_signal_cb)(void *ctx, int signo);

/* Caller owns the loop; sl_loop_free() cancels remaining timers without running them. */
sl_loop *sl_loop_new(void);
void sl_loop_free(sl_loop *l);

/* Watches `fd` (not owned) for `events`; cb(ctx, events_seen) on the loop thread. */
sl_err sl_loop_watch(sl_loop *l, int fd, uint32_t events, sl_io_cb cb, void *ctx);
sl_err sl_loop_modify(sl_loop *l, int fd, uint32_t events);
/* Safe to call from inside any callback, including for the fd being dispatched. */
void sl_loop_unwatch(sl_loop *l, int fd);

/* One-shot timer `delay_ms` from now. The handle belongs to the loop and is invalid once the
 * callback has started or sl_timer_cancel() returned. */
sl_timer *sl_timer_start(sl_loop *l, int64_t delay_ms, sl_timer_cb cb, void *ctx);
void sl_timer_cancel(sl_loop *l, sl_timer *t);

/* Posted work ("post, don't pump"): a callback queued from inside another callback runs after
 * that callback returns, never inside it, so no handler runs nested in another. The node is
 * intrusive and owned by the caller; posting a node already queued does nothing. Posted
 * callbacks run in posting order after every I/O or timer callback, until none is left (one
 * posted from a posted callback runs in the same round). */
typedef struct sl_post {
    void (*cb)(void *ctx);
    void *ctx;
    struct sl_post *prev, *next;
    bool queued;
} sl_post;
void sl_loop_post(sl_loop *l, sl_post *p);
/* Removes `p` if queued; call before freeing the memory holding it. */
void sl_loop_unpost(sl_loop *l, sl_post *p);
/* Runs the posted work queued so far (and what it posts in turn), no I/O and no timers. For
 * teardown: completions a closing subsystem posted (each holding its own reference) must run
 * before the loop is freed, or what they hold leaks. Returns the number run. */
int sl_loop_run_posted(sl_loop *l);

/* Blocks `signo` for the process and delivers it through the loop. */
sl_err sl_loop_on_signal(sl_loop *l, int signo, sl_signal_cb cb, void *ctx);

/* Runs until sl_loop_stop(). */
void sl_loop_run(sl_loop *l);
/* One iteration: waits up to `timeout_ms` (-1: until the next timer or event; 0: poll) for
 * events, dispatches them, then runs the timers that are due. Returns the number of callbacks
 * run, or -1 if epoll failed. For tests and for embedding the loop in another one. */
int sl_loop_run_once(sl_loop *l, int timeout_ms);
void sl_loop_stop(sl_loop *l);
/* Monotonic ms, refreshed once per loop iteration. */
int64_t sl_loop_now(const sl_loop *l);

#endif
