/* Record encryption toward the upstream (docs/gateway.md, "Encryption toward the cluster").
 *
 * With sluice.gateway.encrypt.enable, every record of a topic matching
 * sluice.gateway.encrypt.topics is sealed per record before the Produce goes upstream, so the
 * cluster stores only ciphertext, and opened again on Fetch. The upstream still gets valid
 * batches: same batch headers (base offset, producer id, epoch, base sequence, attributes,
 * record count, timestamps), same codec, CRC resealed; control batches pass untouched.
 *
 * Envelope (self-describing, so any gateway sharing the keyring can open any record, and
 * compaction keeps working): the record value becomes a sealed blob; the marker header
 * `sluice.enc` (one version byte) is the record's only header when headers are encrypted
 * (sluice.gateway.encrypt.headers=encrypt), else it is prepended to the clear headers. Null
 * values (tombstones) stay null with clear (or deterministically sealed) keys. With
 * sluice.gateway.encrypt.keys=deterministic the key is sealed with AES-256-SIV under a key derived
 * for keys only, so equal keys stay equal upstream (partitioning, compaction).
 *
 * Keys: one keyring entry per topic name (id derived from the name, not a topic id the upstream
 * owns), created on first use and rotated, rewrapped, retired and shredded with `sluice keys`
 * like the broker's topic keys, through the same KMS providers (sl_keysvc_key_get). A key not yet
 * in the cache makes the partition answer KAFKA_STORAGE_ERROR (retriable) while it loads.
 *
 * Fetch: records carrying the marker are opened (a record failing authentication fails the
 * partition with CORRUPT_MESSAGE and an SL_EV_KEY "tamper" event); records without it on an
 * encrypted topic were written around the gateway: counted
 * (sluice_gateway_unencrypted_records_total), reported as an SL_EV_KEY event (op "unencrypted")
 * at most once per partition per minute, and passed (policy report) or refused with
 * INVALID_RECORD (policy reject). */
#ifndef SL_GATEWAY_CRYPT_H
#define SL_GATEWAY_CRYPT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_buf.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "events/sl_events.h"
#include "proto/sl_xform.h"

struct sl_keysvc;
typedef struct sl_gwcrypt sl_gwcrypt;

/* NULL with *out (no error) when sluice.gateway.encrypt.enable is false. `ks` (the key service,
 * required when enabled) and `hub` must outlive it. SL_ECONFIG with `err` naming the key. */
sl_err sl_gwcrypt_new(const sl_config *cfg, struct sl_keysvc *ks, sl_events *hub, sl_gwcrypt **out,
                      char *err, size_t elen);
void sl_gwcrypt_free(sl_gwcrypt *g); /* NULL-safe; cleanses cached keys */

/* True when records of `topic` are sealed. */
bool sl_gwcrypt_applies(const sl_gwcrypt *g, sl_str topic);
/* The seal (produce) and unseal (fetch) transforms for sl_xform_chain; arg is `g`. They read the
 * topic and partition from the sl_xform_ctx and pass sets of other topics unchanged. */
sl_xform sl_gwcrypt_seal(sl_gwcrypt *g);
sl_xform sl_gwcrypt_unseal(sl_gwcrypt *g);

/* The keyring id of `topic`'s gateway key (byte 0 is 0xFE: no topic id or field key has it). */
void sl_gwcrypt_key_id(sl_str topic, uint8_t id[16]);

typedef struct sl_gwcrypt_stats {
    int64_t sealed_records, opened_records, unencrypted_records, failed_records;
} sl_gwcrypt_stats;
void sl_gwcrypt_stats_get(const sl_gwcrypt *g, sl_gwcrypt_stats *out);

#endif
