/* Broker glue of the idempotent producer: the broker's producer-id allocator and the periodic
 * expiry/snapshot timer over every partition's state. The state is in src/producer/sl_pstate.c,
 * its persistence in src/producer/sl_pstore.c, the InitProducerId handler in
 * sl_h_producer_id.c. */
#include "sl_producers.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"

#define SUB "producers"

static void producers_tick(void *ctx) {
    sl_producers *pr = ctx;
    sl_broker *b = pr->b;
    int64_t now = sl_wall_ms();
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++) {
            sl_partition *p = t->parts[i];
            if (!p->pstate) continue;
            int n = sl_pstate_tick(p->pstate, p->log, now, b->cfg.producer_id_expiration_ms);
            if (n)
                SL_INFO(SUB, "expired producer ids", "topic=%s partition=%d expired=%d", t->name, i,
                        n);
        }
    pr->timer = sl_timer_start(b->loop, b->cfg.producer_id_expiration_check_interval_ms,
                               producers_tick, pr);
}

sl_err sl_producers_new(sl_broker *b, sl_producers **out, char *err, size_t elen) {
    sl_producers *pr = calloc(1, sizeof *pr);
    if (!pr) return SL_ENOMEM;
    pr->b = b;
    int64_t floor = 0;
    for (sl_topic *t = sl_topics_next(b->topics, NULL); t; t = sl_topics_next(b->topics, t))
        for (int32_t i = 0; i < t->npart; i++)
            if (t->parts[i]->pstate) {
                int64_t m = sl_pstate_max_pid(t->parts[i]->pstate);
                if (m >= floor) floor = m + 1;
            }
    /* Above every id the transaction coordinator holds too (its log outlives partitions). */
    int64_t tm = sl_txn_coord_max_pid(b->txn);
    if (tm >= floor) floor = tm + 1;
    sl_err e = sl_pid_alloc_open(b->cfg.log_dirs, floor, &pr->pids);
    if (e) {
        snprintf(err, elen, "%s/%s: cannot read the producer-id mark: %s", b->cfg.log_dirs,
                 SL_PID_FILE, sl_strerror(e));
        free(pr);
        return e;
    }
    pr->timer = sl_timer_start(b->loop, b->cfg.producer_id_expiration_check_interval_ms,
                               producers_tick, pr);
    *out = pr;
    return SL_OK;
}

void sl_producers_free(sl_producers *pr) {
    if (!pr) return;
    if (pr->timer) sl_timer_cancel(pr->b->loop, pr->timer);
    sl_pid_alloc_free(pr->pids);
    free(pr);
}
