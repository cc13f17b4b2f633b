/* The idempotent producer in the broker: producer-id allocation (persisted so ids are never
 * reused) and, per partition, what each producer id last appended, so retries are answered as
 * duplicates and gaps are refused. Split like src/group: the pure state is
 * src/producer/sl_pstate.h, its persistence (snapshots, rebuild, the id mark file)
 * src/producer/sl_pstore.h, the InitProducerId handler sl_h_producer_id.c; this header adds the
 * broker glue and includes the other two for the callers.
 *
 * Per-partition state (sl_pstate) is malloc'd and owned by its sl_partition. Everything here
 * runs on the broker's loop thread. See docs/idempotence.md. */
#ifndef SL_BROKER_PRODUCERS_H
#define SL_BROKER_PRODUCERS_H
#include <stddef.h>

#include "base/sl_err.h"
#include "producer/sl_pstate.h"
#include "producer/sl_pstore.h"

/* ---- broker glue ---- */
struct sl_broker;
struct sl_timer;
/* Owned by the broker; the InitProducerId handler allocates from `pids`. */
typedef struct sl_producers {
    struct sl_broker *b;
    sl_pid_alloc *pids;
    struct sl_timer *timer;
} sl_producers;
/* Creates the broker's producer-id allocator (ids above every id found in the partitions'
 * state) and starts the expiry/snapshot timer. Call after the topics are open and the loop
 * exists. Caller owns *out; free it with sl_producers_free before the topics and the loop. */
sl_err sl_producers_new(struct sl_broker *b, sl_producers **out, char *err, size_t err_len);
void sl_producers_free(sl_producers *pr);

#endif
