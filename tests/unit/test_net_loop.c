#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "base/sl_time.h"
#include "net/sl_loop.h"
#include "sl_test.h"

typedef struct {
    int order[16];
    int n;
} fired_log;

typedef struct {
    fired_log *log;
    int id;
} timer_arg;

static void on_timer(void *ctx) {
    timer_arg *a = ctx;
    if (a->log->n < 16) a->log->order[a->log->n++] = a->id;
}

SL_TEST(loop_timers_fire_in_order_and_cancel) {
    sl_loop *l = sl_loop_new();
    CHECK(l);
    fired_log log = {{0}, 0};
    timer_arg args[6];
    int64_t delays[6] = {30, 10, 20, 10, 40, 5};
    sl_timer *t[6];
    int64_t start = sl_mono_ms();
    for (int i = 0; i < 6; i++) {
        args[i] = (timer_arg){&log, i};
        t[i] = sl_timer_start(l, delays[i], on_timer, &args[i]);
        CHECK(t[i]);
    }
    sl_timer_cancel(l, t[2]);
    while (log.n < 5 && sl_mono_ms() - start < 2000) sl_loop_run_once(l, 100);
    int64_t took = sl_mono_ms() - start;
    sl_loop_free(l);
    CHECK_EQ(log.n, 5);
    /* equal deadlines fire in start order */
    int want[5] = {5, 1, 3, 0, 4};
    for (int i = 0; i < 5; i++) CHECK_EQ(log.order[i], want[i]);
    CHECK(took >= 40);
}

SL_TEST(loop_free_cancels_pending_timers) {
    sl_loop *l = sl_loop_new();
    fired_log log = {{0}, 0};
    timer_arg a = {&log, 1};
    CHECK(sl_timer_start(l, 100000, on_timer, &a));
    CHECK(sl_timer_start(l, 0, on_timer, &a));
    sl_loop_run_once(l, 0);
    sl_loop_free(l);
    CHECK_EQ(log.n, 1);
}

typedef struct {
    sl_loop *l;
    int count;
} rearm_ctx;

static void rearm(void *ctx) {
    rearm_ctx *r = ctx;
    r->count++;
    sl_timer_start(r->l, 0, rearm, r);
}

SL_TEST(loop_zero_delay_rearm_does_not_starve) {
    sl_loop *l = sl_loop_new();
    rearm_ctx r = {l, 0};
    sl_timer_start(l, 0, rearm, &r);
    for (int i = 0; i < 3; i++) sl_loop_run_once(l, 0);
    sl_loop_free(l);
    CHECK_EQ(r.count, 3);
}

typedef struct {
    int signo;
    int count;
} sig_ctx;

static void on_sig(void *ctx, int signo) {
    sig_ctx *s = ctx;
    s->signo = signo;
    s->count++;
}

SL_TEST(loop_signal_delivery) {
    sl_loop *l = sl_loop_new();
    sig_ctx s = {0, 0};
    CHECK(sl_loop_on_signal(l, SIGUSR1, on_sig, &s) == SL_OK);
    CHECK(raise(SIGUSR1) == 0);
    int64_t start = sl_mono_ms();
    while (s.count == 0 && sl_mono_ms() - start < 2000) sl_loop_run_once(l, 100);
    sl_loop_free(l);
    CHECK_EQ(s.count, 1);
    CHECK_EQ(s.signo, SIGUSR1);
}

typedef struct {
    sl_loop *l;
    int fds[2];
    int calls;
} pipe_ctx;

static void on_pipe_unwatch(void *ctx, uint32_t ev) {
    pipe_ctx *p = ctx;
    p->calls++;
    /* Unwatch both while the second may be in the same dispatch round. */
    sl_loop_unwatch(p->l, p->fds[0]);
    sl_loop_unwatch(p->l, p->fds[1]);
}

SL_TEST(loop_unwatch_during_dispatch) {
    int a[2], b[2];
    CHECK(pipe(a) == 0);
    CHECK(pipe(b) == 0);
    sl_loop *l = sl_loop_new();
    pipe_ctx p = {l, {a[0], b[0]}, 0};
    CHECK(sl_loop_watch(l, a[0], SL_EV_READ, on_pipe_unwatch, &p) == SL_OK);
    CHECK(sl_loop_watch(l, b[0], SL_EV_READ, on_pipe_unwatch, &p) == SL_OK);
    CHECK(sl_loop_watch(l, b[0], SL_EV_READ, on_pipe_unwatch, &p) == SL_EEXISTS);
    CHECK(write(a[1], "x", 1) == 1);
    CHECK(write(b[1], "x", 1) == 1);
    sl_loop_run_once(l, 1000);
    sl_loop_run_once(l, 0);
    int calls = p.calls;
    sl_loop_free(l);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    CHECK_EQ(calls, 1);
}

static void on_write_ready(void *ctx, uint32_t ev) {
    int *got = ctx;
    *got |= (int)ev;
}

SL_TEST(loop_modify_and_now) {
    int a[2];
    CHECK(pipe(a) == 0);
    sl_loop *l = sl_loop_new();
    int got = 0;
    CHECK(sl_loop_watch(l, a[1], 0, on_write_ready, &got) == SL_OK);
    sl_loop_run_once(l, 0);
    int before = got;
    CHECK(sl_loop_modify(l, a[1], SL_EV_WRITE) == SL_OK);
    int64_t t0 = sl_loop_now(l);
    sl_loop_run_once(l, 1000);
    int after = got;
    int64_t t1 = sl_loop_now(l);
    sl_loop_unwatch(l, a[1]);
    sl_loop_free(l);
    close(a[0]), close(a[1]);
    CHECK_EQ(before, 0);
    CHECK(after & SL_EV_WRITE);
    CHECK(t1 >= t0);
}
