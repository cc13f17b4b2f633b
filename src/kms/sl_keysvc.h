/* The key service: the keyring, the topic-key and DEK caches, the KMS worker thread and the key
 * lifecycle (docs/encryption-at-rest.md). The broker creates one; storage borrows DEKs from it
 * through sl_log_keys; `sluice keys ...` (over the control socket) drives rotate, rewrap,
 * retire, shred and status; every KMS call is reported as an SL_EV_KEY event.
 *
 * Key hierarchy: KEK (in the KMS, versioned) -> topic key (32 random bytes per topic and version,
 * stored ONLY in the keyring, wrapped by a KEK version) -> DEK (per segment, wrapped by the topic
 * key in software with RFC 5649 under an HKDF context naming topic, partition, segment and DEK id,
 * stored in the segment's envelope). The system key (topic id all zero) protects the groups log,
 * producer snapshots and the topic registry.
 *
 * Threads: the keyring and KMS calls belong to the worker thread (and to the _sync functions,
 * which any thread but the loop may call while the loop does not run keysvc work, e.g. start);
 * caches and callbacks belong to the loop thread. Completions come back through an eventfd
 * (sl_keysvc_fd / sl_keysvc_dispatch), like sl_flusher. */
#ifndef SL_KMS_KEYSVC_H
#define SL_KMS_KEYSVC_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "base/sl_text.h"
#include "events/sl_events.h"
#include "kms/sl_kms.h"
#include "storage/sl_log.h"

typedef struct sl_keysvc sl_keysvc;

/* Opens the provider and the keyring (`sluice.kms.keyring.file`, created 0600 on first start
 * with KEK version 1 and the system key), starts the worker and unwraps every topic key it can
 * within `sluice.kms.timeout.ms` (a topic whose key cannot be unwrapped now is logged and stays
 * unavailable until a later load succeeds). `hub` (borrowed, may be NULL) receives SL_EV_KEY
 * events, emitted on the loop thread from sl_keysvc_dispatch. With
 * sluice.encryption.enable=false: *out is NULL and SL_OK (nothing is encrypted). Caller owns
 * *out (sl_keysvc_close). */
sl_err sl_keysvc_open(const sl_config *cfg, sl_events *hub, sl_keysvc **out, char *err,
                      size_t errlen);
/* Joins the worker, cleanses every cached key. NULL-safe. */
void sl_keysvc_close(sl_keysvc *ks);
int sl_keysvc_fd(const sl_keysvc *ks);
/* Runs completions (SL_EV_KEY events, op callbacks). Loop thread, when sl_keysvc_fd is
 * readable. */
void sl_keysvc_dispatch(sl_keysvc *ks);
/* Evicts keys unused for sluice.kms.cache.ttl.ms. Loop thread, from a timer; `now_ms` is
 * monotonic (sl_mono_ms). */
void sl_keysvc_tick(sl_keysvc *ks, int64_t now_ms);

/* Makes sure the topic `topic_id` has a topic key (creating, wrapping and storing one when the
 * keyring has none). Blocks on the KMS: call from the topics file worker or at start, never
 * from the loop. `name` is for events and logs only (the keyring stores ids, not names). */
sl_err sl_keysvc_topic_ensure_sync(sl_keysvc *ks, const uint8_t topic_id[16], const char *name,
                                   char *err, size_t errlen);
/* Fills `out` so a partition log of that topic can encrypt (sl_log_set_keys). `plain_below`
 * comes from the keyring: the log end offset recorded the first time this partition was seen
 * with encryption on (0 for a partition born encrypted); `log_end` is today's end, recorded when
 * the keyring has no mark yet (migration of an existing plaintext partition). The all-zero id is
 * the system key. Loop thread. */
sl_err sl_keysvc_log_keys(sl_keysvc *ks, const uint8_t topic_id[16], int32_t partition,
                          int64_t log_end, sl_log_keys *out);
/* Current topic-key version of a topic (0: none; for reencrypt and status). Loop thread. */
uint32_t sl_keysvc_topic_version(sl_keysvc *ks, const uint8_t topic_id[16]);
/* True for the local provider, whose calls are in-process key wraps and a local file write
 * (microseconds, no network): the only provider a creation on the loop may wait for. */
bool sl_keysvc_provider_is_local(const sl_keysvc *ks);

/* Seals / opens small files (producer snapshots, the topic registry) under the system key:
 * AES-256-GCM with a fresh random DEK per file wrapped by the system key, the file name bound as
 * associated data. `out` is malloc'd (caller frees). Any thread. */
sl_err sl_keysvc_seal_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen);
sl_err sl_keysvc_open_blob(sl_keysvc *ks, const char *name, const uint8_t *in, size_t n,
                           uint8_t **out, size_t *outlen);
/* True when `p` starts like a sealed blob (so a reader can accept older plaintext files). */
bool sl_keysvc_is_sealed_blob(const uint8_t *p, size_t n);

/* ---- Lifecycle (each runs on the worker; `cb` runs on the loop with a one-line result) ---- */
typedef void (*sl_keysvc_cb)(void *ctx, sl_err e, const char *result);
typedef enum {
    SL_KEYOP_ROTATE, /* new KEK version; new topic keys and new topic-key versions use it */
    SL_KEYOP_REWRAP, /* every topic key re-wrapped under the current KEK version (keyring only) */
    SL_KEYOP_RETIRE, /* destroy KEK version `version` (refused while a topic key still uses it) */
    SL_KEYOP_SHRED,  /* destroy every version of `topic_id`'s topic key: its data is gone */
    SL_KEYOP_TK_ROTATE, /* new topic-key version for `topic_id` (before reencrypt); with
                         * `version` 1: only when it has none yet (first use: a version another
                         * process sharing the keyring file created meanwhile is used instead) */
} sl_keyop;
void sl_keysvc_op(sl_keysvc *ks, sl_keyop op, const uint8_t topic_id[16], uint32_t version,
                  const char *reason, sl_keysvc_cb cb, void *ctx);
/* Appends a JSON object describing KEK versions, topic keys (id, versions, KEK version wrapping
 * each, loaded or not, shredded) and cache state. Loop thread. */
void sl_keysvc_status_json(sl_keysvc *ks, sl_text *out);
/* Called by the service after a shred completes, for the broker to drop the topic's DEKs from
 * its logs (sl_log_drop_keys). Set once by the broker. */
void sl_keysvc_on_shred(sl_keysvc *ks, void (*fn)(void *ctx, const uint8_t topic_id[16]),
                        void *ctx);

/* ---- Additions (tests, metrics, storage) ---- */
/* As sl_keysvc_open with the provider `kms` instead of the one the configuration names (tests
 * inject a fake). Takes ownership of `kms` (freed by close, or here on failure). */
sl_err sl_keysvc_open_with(const sl_config *cfg, sl_events *hub, sl_kms *kms, sl_keysvc **out,
                           char *err, size_t errlen);
/* Storage found a batch failing authentication: one SL_EV_KEY "tamper" event (severity high in
 * the audit trail) and sluice_encryption_tamper_total. `what` says where (no key material).
 * Loop thread. */
void sl_keysvc_tamper(sl_keysvc *ks, const uint8_t topic_id[16], int32_t partition,
                      const char *what);

/* Process-wide counters for src/metrics (the key service of the process; any thread). */
#define SL_KMS_NOPS     5 /* wrap, unwrap, generate, describe, destroy */
#define SL_KMS_NBUCKETS 12
extern const char *const sl_kms_op_names[SL_KMS_NOPS];
extern const double sl_kms_bucket_le[SL_KMS_NBUCKETS];
typedef struct sl_keysvc_stats {
    char provider[16];                    /* "" before any key service opened */
    uint64_t calls[SL_KMS_NOPS][2];       /* [op][0 ok, 1 error] */
    uint64_t bucket[SL_KMS_NBUCKETS + 1]; /* call latency, per bucket (not cumulative) */
    uint64_t sum_ns;
    uint64_t tamper;     /* wrapped DEKs or batches failing authentication */
    int64_t keys_cached; /* topic keys + DEKs in the caches now */
} sl_keysvc_stats;
void sl_keysvc_stats_get(sl_keysvc_stats *out);

/* ---- Other keys of the keyring: field keys (protect/sl_fkeys.h) ---- */
/* A field key is a keyring entry like a topic key, under an id no topic has (sl_fkeys_id); it is
 * created and rotated with SL_KEYOP_TK_ROTATE (the first call creates version 1) and destroyed
 * with SL_KEYOP_SHRED, and KEK rotation, rewrap and retire cover it like every topic key.
 *
 * Copies version `version` (0: the current one; *outv, when not NULL, gets it) of key `id` into
 * out[32] (the caller cleanses it after use). Loop thread. A version not in the cache has its
 * load queued on the worker and SL_EKEY_UNAVAILABLE is returned meanwhile (a local provider's
 * load is done before this returns, as for topic keys). A key or version missing from memory
 * first has the keyring file reread on the worker if it changed on disk (another process sharing
 * it; looked at most every 200 ms; the local provider waits for it, others get
 * SL_EKEY_UNAVAILABLE meanwhile). SL_ENOTFOUND: no such key or version;
 * SL_EKEY_DESTROYED: shredded. */
sl_err sl_keysvc_key_get(sl_keysvc *ks, const uint8_t id[16], uint32_t version, uint8_t out[32],
                         uint32_t *outv);
/* The versions of key `id`, ascending, at most `cap` (returns how many; 0: none or shredded).
 * Loop thread. */
int sl_keysvc_key_versions(sl_keysvc *ks, const uint8_t id[16], uint32_t *versions, int cap);

/* Read-only access to the keyring without a running key service (libsluice, `sluice protect`
 * filters on the broker's host): opens the provider `cfg` names and reads the keyring file
 * (sl_keyring_path), rereading it when it changed on disk (looked at most every 200 ms, and at
 * once on a miss or a failed unwrap: a rotation or shred reaches it that late). Blocking, one
 * thread at a time; never writes the keyring. Caller owns *out. */
typedef struct sl_keyreader sl_keyreader;
sl_err sl_keyreader_open(const sl_config *cfg, sl_keyreader **out, char *err, size_t errlen);
/* As sl_keysvc_key_get, calling the provider to unwrap (SL_EKMS_* on its failure). */
sl_err sl_keyreader_get(sl_keyreader *r, const uint8_t id[16], uint32_t version, uint8_t out[32],
                        uint32_t *outv, char *err, size_t errlen);
int sl_keyreader_versions(sl_keyreader *r, const uint8_t id[16], uint32_t *versions, int cap);
void sl_keyreader_close(sl_keyreader *r); /* NULL-safe */

#endif
