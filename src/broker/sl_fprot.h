/* The broker's field protection (docs/field-protection.md): the protect stage's transforms for
 * Produce and Fetch (sl_xform.h slots), the policy snapshot and its reload, the reveal grants,
 * and the `sluice protect` / `sluice keys create|rotate --fields|forget` commands of the control
 * socket.
 *
 * Produce: the partition's topic is looked up in the current policy; a topic without a block
 * returns at once (unprotected topics pay one lookup). Otherwise sl_protect_set rewrites the
 * set; SL_EUNPROTECTABLE answers the partition INVALID_RECORD (with an SL_EV_PROTECT "reject"
 * event; the producer sees the error), a key being loaded KAFKA_STORAGE_ERROR (retriable).
 * Fetch: a principal with no grant, or a topic without a block, returns at once (the copy-free
 * path stays); otherwise the views of the principal for each encrypt rule are resolved once per
 * partition and sl_reveal_set runs, and one SL_EV_PROTECT "reveal" event per rule with values
 * shown or failed goes to the audit trail and metrics.
 *
 * Reload: every sluice.protect.reload.interval.ms the file's mtime/size/inode are compared, and
 * SIGHUP forces a reload. A file that fails to parse (or names a field key that does not exist)
 * keeps the previous policy; the error (with its line) is logged and reported as an
 * SL_EV_PROTECT "policy" event with success false. Requests use the snapshot current when
 * their transform runs.
 *
 * Control-socket commands (one line, words; the CLI builds them, docs/keys-cli.md):
 *   protect-grant PRINCIPAL TOPIC FIELD VIEW   add or replace a grant (saved before "ok")
 *   protect-revoke PRINCIPAL TOPIC FIELD       remove it
 *   protect-list                               "json [...]" then ok
 *   protect-status                             "json {policy file, digest, topics, subjects}"
 *   field-create NAME                          create field key NAME (version 1)
 *   field-rotate [NAME]                        new version of NAME, or of every field key the
 *                                              policy uses
 *   forget HEX [KEY]                           forget the subject whose clear id is the bytes
 *                                              HEX (hex-encoded by the CLI), under every version
 *                                              of the token key KEY (default: every subject
 *                                              key of the policy)
 *   forget-token TOKEN                         forget the subject whose token string is TOKEN
 * Each is an SL_EV_PROTECT event (grant, revoke, forget) or SL_EV_KEY (field keys). */
#ifndef SL_BROKER_FPROT_H
#define SL_BROKER_FPROT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_err.h"
#include "ctl/sl_ctl.h"
#include "proto/sl_xform.h"

struct sl_broker;
struct sl_keysvc;
typedef struct sl_fprot sl_fprot;

/* Loads the policy (sluice.protect.policy.file), the grants and the subject store, makes sure the
 * "_subjects" field key exists when the policy names a subject (blocking KMS call: at start, before
 * the loop runs), starts the reload timer. A policy that does not load fails the start with the
 * error naming the line. `b` and `ks` (may be NULL: encryption at rest off; then only keyless rules
 * load) are borrowed. Caller owns *out. Without a policy file: *out NULL when `ks` is NULL too
 * (nothing to do), else a module that serves the control-socket commands (field keys, grants) and
 * puts nothing in the chain (sl_fprot_chain NULL), so keys can be created before a policy names
 * them. */
sl_err sl_fprot_open(struct sl_broker *b, struct sl_keysvc *ks, sl_fprot **out, char *err,
                     size_t errlen);
/* Stops the timer, drops the policy and caches. NULL-safe. */
void sl_fprot_free(sl_fprot *f);
/* The transform chain every partition uses (protect + unprotect slots); NULL when f is NULL. */
const sl_xform_chain *sl_fprot_chain(sl_fprot *f);
/* True when the current policy has a block for `topic` (its records are rewritten on produce
 * and may be revealed on fetch); the gateway keeps its copy-free relay for the others. NULL-safe.
 * Loop thread. */
bool sl_fprot_covers(const sl_fprot *f, sl_str topic);
/* Rereads the policy file if it changed (or always with `force`, SIGHUP). Loop thread. */
void sl_fprot_reload(sl_fprot *f, bool force);
/* Serves a control-socket command if it is one of the above (returns true: answered or will
 * be), else returns false. Loop thread. `f` may be NULL (then the commands answer "error field
 * protection is off"). */
bool sl_fprot_ctl(sl_fprot *f, struct sl_broker *b, struct sl_keysvc *ks, sl_ctl_conn *c,
                  const sl_ctl_req *req);

/* ---- Additions (the control socket's departures, produce answers, metrics) ---- */
/* The control socket's peer of a command sl_fprot_ctl took (answered later) went away: `c` is
 * not used afterwards. NULL-safe. Loop thread. */
void sl_fprot_ctl_gone(sl_fprot *f, sl_ctl_conn *c);
/* Process-wide counters for src/metrics (any thread). Index 0: protect, 1: reveal. */
typedef struct sl_fprot_stats {
    uint64_t records[2];    /* records rewritten */
    uint64_t fields[2];     /* values protected / shown in a view */
    uint64_t rejected;      /* records refused (INVALID_RECORD) */
    uint64_t reveal_failed; /* values left stored because they did not decrypt */
    uint64_t reloads[2];    /* policy loads: [0] ok, [1] error */
} sl_fprot_stats;
void sl_fprot_stats_get(sl_fprot_stats *out);

#endif
