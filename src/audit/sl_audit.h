/* The audit trail (docs/audit.md): every event the hub (src/events) delivers that the
 * configuration selects becomes one OCSF 1.x JSON object on one line, hash-chained to the one
 * before it and periodically sealed by a signed checkpoint, written to every configured sink.
 *
 * The loop thread only formats and queues: disk and socket I/O happen on the trail's writer
 * thread, so a slow disk never stalls requests. When events cannot be recorded (the queue is
 * full, a sink fails), sluice.audit.failure.policy decides: `block` makes sl_audit_accepting()
 * false until they can again (the pipeline then refuses audited requests with a retriable
 * error), `continue` counts and logs every dropped event. */
#ifndef SL_AUDIT_H
#define SL_AUDIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "events/sl_events.h"
#include "net/sl_loop.h"

typedef struct sl_audit sl_audit;

/* Refused connections are recorded one by one up to this many per client address per window
 * (and this many in all), the rest as one summary per address with their count. */
#define SL_AUDIT_REFUSALS_BURST     10
#define SL_AUDIT_REFUSALS_GLOBAL    200
#define SL_AUDIT_REFUSALS_WINDOW_MS 10000

/* Event types of sluice.audit.enabled.event.types, in the order of sl_audit_event_type_names
 * (base/sl_config.h). */
typedef enum {
    SL_AUDIT_AUTHENTICATE,
    SL_AUDIT_CONNECTION,
    SL_AUDIT_REFUSAL,
    SL_AUDIT_MANAGEMENT,
    SL_AUDIT_DENIAL,
    SL_AUDIT_PRODUCE,
    SL_AUDIT_CONSUME,
    SL_AUDIT_DESCRIBE,
    SL_AUDIT_LIFECYCLE,
    SL_AUDIT_DETECTION,
    SL_AUDIT_NTYPES
} sl_audit_type;

/* Where the topic sink appends: the broker gives the trail a function that appends one record
 * batch's worth of values (each an event line, without its newline) to __sluice_audit, on the
 * loop thread; it returns a Kafka error code (0: appended). */
typedef int16_t (*sl_audit_topic_append_fn)(void *ctx, const char *const *values,
                                            const size_t *lens, int n);

typedef struct sl_audit_env {
    sl_loop *loop;
    sl_events *hub;         /* the trail subscribes to it */
    const char *cluster_id; /* copied */
    int32_t node_id;
    sl_audit_topic_append_fn topic_append; /* NULL: no topic sink possible */
    void *topic_ctx;
} sl_audit_env;

/* Opens the trail as `cfg` says (directory, signing key, sinks; starts the writer thread) and
 * subscribes it to env->hub. With sluice.audit.enable=false *out is NULL and SL_OK returned.
 * A bad value or an unusable directory or key fails with `err` naming the key. Caller owns
 * *out. */
sl_err sl_audit_new(const sl_config *cfg, const sl_audit_env *env, sl_audit **out, char *err,
                    size_t elen);
/* Records the application stop, writes a final checkpoint, drains the queue to the sinks, joins
 * the writer and frees. Call before the hub and loop go; NULL is a no-op. */
void sl_audit_free(sl_audit *a);

/* False while the policy is `block` and events cannot be recorded (the pipeline's audit gate
 * refuses audited requests then); always true with `continue` or without a trail (NULL). */
bool sl_audit_accepting(const sl_audit *a);

/* The pipeline's audit gate refused a request (counted in events_refused). Loop thread. */
void sl_audit_count_refused(sl_audit *a);

typedef struct sl_audit_stats {
    uint64_t events_written; /* lines the file sink (or first sink) has durably written */
    uint64_t events_dropped; /* events lost under the `continue` policy */
    uint64_t events_refused; /* requests refused under the `block` policy */
    uint64_t checkpoints;
    uint64_t queued;      /* waiting for the writer now */
    int64_t lag_ms;       /* age of the oldest queued event */
    uint64_t sink_errors; /* failed writes, all sinks */
    bool failing;         /* a sink cannot write now */
} sl_audit_stats;
/* A snapshot (any thread). */
void sl_audit_stats_get(const sl_audit *a, sl_audit_stats *out);

/* `sluice audit verify PATH...` and `sluice audit pubkey`: checks chain, signatures and
 * sequence of trail files (in the order given, or sorted when a directory is given); prints the
 * first event edited, inserted, deleted, reordered or cut off and returns 1, or 0 when intact. */
int sl_audit_cli(int argc, char **argv);

#endif
