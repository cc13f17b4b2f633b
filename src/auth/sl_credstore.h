/* The SCRAM credential store: one file, mode 0600, holding per user and mechanism the salt,
 * StoredKey, ServerKey and iteration count (never a password), plus a per-store secret from
 * which unknown users get a stable mock salt. Written atomically (temporary file, fsync,
 * rename, fsync of the directory); writers (broker and `sluice user`) serialise on an flock of
 * "<path>.lock". The broker calls sl_credstore_refresh() before each login, so changes made by
 * the CLI apply to new logins without a restart.
 *
 * Not thread-safe: one loop thread (or one CLI process) uses a store at a time. */
#ifndef SL_AUTH_CREDSTORE_H
#define SL_AUTH_CREDSTORE_H
#include <stdbool.h>
#include <stddef.h>

#include "auth/sl_scram.h"
#include "base/sl_err.h"

typedef struct sl_credstore sl_credstore;

/* Loads the store at `path` (copied). If the file is missing: with `create`, writes an empty
 * store with a fresh secret; without, returns SL_ENOTFOUND. Refuses (SL_ECONFIG) a file that
 * group or others can access, or that does not parse. Caller owns *out. */
sl_err sl_credstore_open(const char *path, bool create, sl_credstore **out, char *err,
                         size_t err_len);
void sl_credstore_free(sl_credstore *s);
const char *sl_credstore_path(const sl_credstore *s);

/* Reloads when the file's inode, size or mtime changed. On a read or parse error the loaded
 * contents stay (and the error is returned). */
sl_err sl_credstore_refresh(sl_credstore *s);

/* The credential of `user` for `mech`, or NULL. Valid until the next refresh/put/remove. */
const sl_scram_cred *sl_credstore_find(const sl_credstore *s, const char *user, size_t user_len,
                                       int mech);
/* sl_scram_lookup_fn over a store (ctx = the store): the credential, or a deterministic mock
 * (HMAC of the user name under the store's secret, SL_SCRAM_SALT_LEN bytes of salt, the mock
 * iteration count) for an unknown user, with false. */
bool sl_credstore_lookup(void *store, const char *user, size_t user_len, int mech,
                         sl_scram_cred *out);
/* The iteration count of the mock (SL_SCRAM_DEF_ITER until set; values outside
 * SL_SCRAM_MIN_ITER..SL_SCRAM_MAX_ITER are ignored). Set it to the count real users are created
 * with (sluice.sasl.scram.iterations), or the count alone tells which names exist. */
void sl_credstore_set_mock_iterations(sl_credstore *s, int32_t iterations);

/* Listing: entries in file order. Returns the user name (NUL-terminated) and its credential. */
int sl_credstore_count(const sl_credstore *s);
const char *sl_credstore_at(const sl_credstore *s, int i, const sl_scram_cred **cred);

/* In-memory changes; sl_credstore_save() writes them. Names are 1..255 bytes without control
 * characters. */
sl_err sl_credstore_put(sl_credstore *s, const char *user, size_t user_len,
                        const sl_scram_cred *cred);
/* Removes `user`'s credential for `mech` (0: every mechanism); SL_ENOTFOUND if none. */
sl_err sl_credstore_remove(sl_credstore *s, const char *user, size_t user_len, int mech);
sl_err sl_credstore_save(sl_credstore *s);

/* Takes the writers' lock and reloads, so a read-modify-save does not lose another writer's
 * change. Blocks until the lock is free. */
sl_err sl_credstore_lock(sl_credstore *s);
void sl_credstore_unlock(sl_credstore *s);

#endif
