/* The background log cleaner of compacted topics (cleanup.policy compact or compact,delete):
 * a timer on the loop thread (log.cleaner.backoff.ms) assesses every compacted partition, picks
 * the dirtiest one due and prepares it (sl_cleaner_prepare); one worker thread, started at the
 * first clean, runs it (sl_cleaner_run); the completion is posted back to the loop through an
 * eventfd, which commits it (sl_cleaner_commit) and logs what was done. One clean at a time.
 * Encrypted segments are cleaned like the others (sl_cleaner.h): a topic key still loading is
 * retried after 1 s, a shredded topic is skipped for good, a segment failing authentication is a
 * tamper event and waits 40 backoffs.
 * docs/compaction.md. Loop thread only, except the worker's own part. */
#ifndef SL_BROKER_COMPACTOR_H
#define SL_BROKER_COMPACTOR_H
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "broker/sl_topics.h"
#include "net/sl_loop.h"

typedef struct sl_compactor sl_compactor;

/* Borrows `loop`, `topics` and `cfg` (they outlive it). No thread yet, no work when no topic is
 * compacted or log.cleaner.enable is false. */
sl_err sl_compactor_new(sl_loop *loop, sl_topics *topics, const sl_config *cfg, sl_compactor **out);
struct sl_keysvc;
/* The key service (borrowed; outlives the compactor) that a clean finding a segment failing
 * authentication reports the tamper event to. Without one (encryption off) nothing is reported. */
void sl_compactor_set_keysvc(sl_compactor *c, struct sl_keysvc *ks);
/* After the topic with id `topic_id` was shredded: a clean in flight on it is cancelled (the
 * worker drops its key copies at the next frame); each of its partitions is skipped for good once
 * a prepare finds the key destroyed. */
void sl_compactor_shredded(sl_compactor *c, const uint8_t topic_id[16]);
/* Before `topic` is deleted: a clean running on one of its partitions is waited for and
 * committed (its log is still open), so no cleaner file outlives the deletion. */
void sl_compactor_settle(sl_compactor *c, sl_topic *topic);
/* Stops the timer, waits for a running clean and commits it (the swap is crash-safe either way),
 * joins the worker. NULL is fine. */
void sl_compactor_free(sl_compactor *c);

struct sl_log;
/* Internal logs: `log` (the group-offsets log), a partition log that is no topic's, is cleaned
 * like a compacted topic's partition under the broker's log.cleaner.* settings; `name` names it
 * in logs, `dir` is its directory (its cleaner checkpoint is read from there now). `log` is
 * borrowed and must outlive the compactor (sl_compactor_free commits a clean in flight). A NULL
 * compactor (log.cleaner.enable=false) ignores it. Loop thread. */
sl_err sl_compactor_add_internal(sl_compactor *c, const char *name, struct sl_log *log,
                                 const char *dir);

/* Totals since start (tests, logs). */
typedef struct sl_compactor_stats {
    int64_t cleans, failures, records_dropped, bytes_before, bytes_after;
} sl_compactor_stats;
void sl_compactor_stats_get(const sl_compactor *c, sl_compactor_stats *out);

#endif
