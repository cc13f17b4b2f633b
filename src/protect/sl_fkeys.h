/* Field keys and data-subject keys (docs/field-protection.md, "Keys").
 *
 * A field key is a key of the key service (sl_keysvc.h), stored in the keyring beside the topic
 * keys, wrapped by a KEK of the configured KMS provider, versioned (`sluice keys rotate --fields`
 * adds a version: new writes use it, old ciphertexts name theirs) and destroyable
 * (`sluice keys shred`). Its keyring id is derived from its name (sl_fkeys_id), so the keyring
 * still holds no names. Field keys are created by `sluice keys create --field NAME`; the key
 * "_subjects" is created by the broker when a policy names a subject.
 *
 * A subject key is 32 random bytes of one data subject (a customer), created on first use and
 * stored in the subject store (`sluice.protect.subject.keys.file`, default
 * <log.dirs>/sluice-subject-keys) wrapped with RFC 5649 under
 * HKDF(the current "_subjects" field key version, "sluice/subject/v1" || subject id). Forgetting
 * a subject removes its entry and rewrites the store zeroing the old blocks
 * (sl_keyring_replace_file): every ciphertext made with it is then unreadable to everyone.
 *
 * Store format: "SLSUBJ01", then fixed records of SL_FKEYS_REC bytes:
 *   subject id (16) | "_subjects" version (4, big-endian) | wrapped key (40) | CRC-32C (4) of
 *   the preceding 60 bytes.
 * Appended under flock(LOCK_EX) (the broker and libsluice processes on one host may both
 * create subjects); a reader that misses an id rereads what was appended since it last looked.
 * A torn last record (crash) is ignored and overwritten.
 *
 * Two ways to open:
 *   broker  keys come from the running key service on the loop thread: a field key version not
 *           in its cache is loaded by its worker and SL_EKEY_UNAVAILABLE is returned meanwhile
 *           (the request gets a retriable error, as for topic keys)
 *   direct  (libsluice, `sluice protect`/`sluice reveal`): reads the keyring and calls the KMS
 *           provider itself, blocking; read-only except for subject creation.
 * One thread uses an sl_fkeys at a time. */
#ifndef SL_PROTECT_FKEYS_H
#define SL_PROTECT_FKEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"
#include "protect/sl_fcrypt.h"

#define SL_FKEYS_SUBJECTS "_subjects"
#define SL_FKEYS_REC      64
#define SL_FKEYS_MAGIC    "SLSUBJ01"

struct sl_keysvc;
typedef struct sl_fkeys sl_fkeys;

/* The keyring id of field key `name`: the first 16 bytes of
 * SHA-256("sluice/field-key/v1\0" || name), with byte 0 forced to 0xFF (random topic ids are
 * version-4 UUIDs, which this cannot collide with in practice; the mark also lets status tell
 * the two apart). */
void sl_fkeys_id(const char *name, uint8_t id[16]);
/* True when id has the field-key mark. */
bool sl_fkeys_is_field_id(const uint8_t id[16]);

/* Broker mode over `ks` (borrowed; must outlive the result; NULL: encryption at rest is off
 * and only keyless rules work: every key lookup answers SL_ENOTFOUND). Opens (creating) the
 * subject store named by `cfg`. Caller owns *out. */
sl_err sl_fkeys_open_broker(const sl_config *cfg, struct sl_keysvc *ks, sl_fkeys **out, char *err,
                            size_t errlen);
/* Direct mode: the provider and keyring `cfg` names (sluice.kms.*, log.dirs, sluice.secrets.dir
 * as for the broker), and its subject store (a missing store is created on the first subject).
 * Caller owns *out. */
sl_err sl_fkeys_open_direct(const sl_config *cfg, sl_fkeys **out, char *err, size_t errlen);
void sl_fkeys_close(sl_fkeys *k); /* NULL-safe; cleanses every cached key */

/* True when field key `name` exists (any version, not shredded). */
bool sl_fkeys_exists(sl_fkeys *k, const char *name);

/* The key context (sl_fcrypt.h) for field key `name` at `version` (0: the current one; *outv,
 * when not NULL, gets the version used) and, when `subject_id` is not NULL, that data subject.
 * With `create` a subject without a key gets one (appended to the store, durable only after
 * sl_fkeys_sync). Borrowed from the cache: valid until the next sl_fkeys_tick, sl_fkeys_forget
 * or sl_fkeys_close. Errors: SL_ENOTFOUND (no such key or version; a subject without a key and
 * !create), SL_EKEY_UNAVAILABLE (broker: being loaded, retry), SL_EKEY_DESTROYED (shredded),
 * SL_EKMS_* (direct: the provider's answer), SL_EIO. */
sl_err sl_fkeys_get(sl_fkeys *k, const char *name, uint32_t version, const uint8_t *subject_id,
                    bool create, const sl_fc_key **out, uint32_t *outv);
/* Makes every subject key created since the last call durable (one fdatasync). Call before the
 * data that uses them is acknowledged. */
sl_err sl_fkeys_sync(sl_fkeys *k);
/* Destroys subject `subject_id`'s key (store rewritten, old blocks zeroed, caches cleansed).
 * *found says whether it had one. Any version of any field key made with it stops decrypting. */
sl_err sl_fkeys_forget(sl_fkeys *k, const uint8_t subject_id[16], bool *found);
/* Versions of field key `name` (ascending, at most cap; returns how many) for forget, which
 * computes a subject's id under every version of the subject rule's token key. */
int sl_fkeys_versions(sl_fkeys *k, const char *name, uint32_t *versions, int cap);
/* Evicts cached key contexts unused for `ttl_ms` (subject keys are many) and, in broker mode,
 * nothing else. `now_ms` monotonic. */
void sl_fkeys_tick(sl_fkeys *k, int64_t now_ms, int64_t ttl_ms);
/* Subjects in the store (status, metrics). */
int64_t sl_fkeys_subjects(const sl_fkeys *k);

#endif
