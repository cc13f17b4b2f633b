/* Built-in detections (docs/detections.md): rules evaluated in the broker over sliding
 * windows of the events the hub (src/events) delivers, each raising an OCSF Detection Finding
 * (emitted back into the hub as SL_EV_DETECTION, so the trail records it and metrics count it):
 * authentication failures per address and per principal, authorization-denial spikes per
 * principal, a principal from a new address, a principal reading a topic it never read, a
 * certificate expiring soon, the data disk nearly full. With sluice.guard.block.seconds, an
 * address that raised a brute-force finding is refused at accept for that long (the server's
 * admit hook asks sl_guard_refuse). Loop thread only. */
#ifndef SL_GUARD_H
#define SL_GUARD_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "events/sl_events.h"
#include "net/sl_loop.h"

typedef struct sl_guard sl_guard;

/* What the periodic checks (certificates, disk) look at: filled by the broker, called on the
 * loop; NULL functions skip the check. */
typedef struct sl_guard_env {
    sl_loop *loop;
    sl_events *hub;       /* the guard subscribes to it and emits findings into it */
    const char *data_dir; /* copied; disk free is measured here */
    /* The certificates served: calls fn(arg, listener, not_after_seconds) for each. */
    void (*each_cert)(void *ctx, void (*fn)(void *arg, const char *listener, int64_t not_after),
                      void *arg);
    void *cert_ctx;
    /* Optional: the free and total bytes of the file system holding `path`; false when unknown
     * (the check is then skipped). NULL measures with statvfs(2). Tests inject their own. */
    bool (*disk_space)(void *ctx, const char *path, uint64_t *free_bytes, uint64_t *total_bytes);
    void *disk_ctx;
} sl_guard_env;

/* What the guard keeps is bounded (a hostile client must not grow it): each table below holds at
 * most this many entries and evicts the least recently used one when full (docs/detections.md
 * states what an eviction costs). */
#define SL_GUARD_MAX_ADDRESSES  4096  /* failed-authentication windows per client address */
#define SL_GUARD_MAX_PRINCIPALS 4096  /* per claimed user, per principal (denials, addresses) */
#define SL_GUARD_MAX_PAIRS      16384 /* principal x address and principal x topic, each */
#define SL_GUARD_MAX_BLOCKED    4096  /* blocked addresses */
#define SL_GUARD_MAX_CERTS      64    /* certificates reported on */
#define SL_GUARD_RECENT         64    /* findings kept for sl_guard_recent */
/* The periodic checks (certificates, disk, expired blocks) run this often. */
#define SL_GUARD_CHECK_MS 10000

/* NULL with sluice.guard.enable=false (every call below accepts NULL). Caller owns it. */
sl_guard *sl_guard_new(const sl_config *cfg, const sl_guard_env *env);
void sl_guard_free(sl_guard *g);

/* The server's admit hook: a reason ("blocked", static) while `ip` (no port, borrowed) is
 * blocked, else NULL. */
const char *sl_guard_refuse(sl_guard *g, const char *ip);

/* The latest findings (at most SL_GUARD_RECENT), newest first, for the status page and metrics:
 * copies up to `max` into the caller's `out` and returns how many. */
typedef struct sl_guard_finding {
    int64_t time_ms;
    char rule[40];
    char subject[128];
    char title[160];
    int severity;
} sl_guard_finding;
int sl_guard_recent(const sl_guard *g, sl_guard_finding *out, int max);

typedef struct sl_guard_stats {
    uint64_t findings;         /* all rules */
    int32_t blocked_addresses; /* blocked now */
    uint64_t blocked_refusals; /* connections refused because blocked */
    int64_t tracked;           /* entries held across every table (bounded, see above) */
    uint64_t evicted;          /* entries evicted because a table was full */
} sl_guard_stats;
void sl_guard_stats_get(const sl_guard *g, sl_guard_stats *out);
/* Findings raised so far by rule id (see sl_ev_detection.rule); 0 for an unknown rule. */
uint64_t sl_guard_findings_by_rule(const sl_guard *g, const char *rule);

/* Runs the periodic checks (certificates, disk, expired blocks) now; the guard's own timer calls
 * it every SL_GUARD_CHECK_MS. */
void sl_guard_check(sl_guard *g);
/* Tests: the guard's clock for what no event carries (admission, the periodic checks) is
 * `now_ms` (wall-clock ms) instead of the wall clock; 0 returns to the wall clock. Events are
 * always judged at their own time_ms. */
void sl_guard_set_clock(sl_guard *g, int64_t now_ms);

#endif
