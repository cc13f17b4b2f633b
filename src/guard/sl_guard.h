/* Built-in detections (docs/audit.md, "Detections"): rules evaluated in the broker over sliding
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
} sl_guard_env;

/* NULL with sluice.guard.enable=false (every call below accepts NULL). Caller owns it. */
sl_guard *sl_guard_new(const sl_config *cfg, const sl_guard_env *env);
void sl_guard_free(sl_guard *g);

/* The server's admit hook: a reason ("blocked") while `ip` (no port) is blocked, else NULL. */
const char *sl_guard_refuse(sl_guard *g, const char *ip);

/* The latest findings, newest first, for the status page and metrics. */
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
} sl_guard_stats;
void sl_guard_stats_get(const sl_guard *g, sl_guard_stats *out);
/* Findings raised so far by rule id (see sl_ev_detection.rule); 0 for an unknown rule. */
uint64_t sl_guard_findings_by_rule(const sl_guard *g, const char *rule);

#endif
