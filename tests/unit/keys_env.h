/* Shared by the unit tests that need a key service with field keys (test_fkeys, test_protect,
 * test_libsluice): temporary directories, a local-provider configuration and lifecycle ops run
 * to completion, so each test file does not carry its own copy. */
#ifndef SL_TEST_KEYS_ENV_H
#define SL_TEST_KEYS_ENV_H
#include <stdint.h>

#include "base/sl_config.h"
#include "kms/sl_keysvc.h"

/* mkdtemp of /tmp/<prefix>XXXXXX into a malloc'd string (the caller frees it); NULL on failure. */
char *sl_t_tmpdir(const char *prefix);
/* Removes `dir` and everything in it (test directories only). */
void sl_t_rm_rf(const char *dir);
/* A calloc'd configuration (the caller frees it): encryption at rest on, the local provider,
 * data in <dir>/data (created), secrets in <dir>/secrets, no master key from the environment. */
sl_config *sl_t_keys_cfg(const char *dir);
/* Runs lifecycle op `op` on key `id` and dispatches completions until its callback ran (10 s
 * deadline: SL_ETIMEOUT). */
sl_err sl_t_keyop(sl_keysvc *ks, sl_keyop op, const uint8_t id[16]);
/* Creates field key `name`, or adds a version to it, as `sluice keys create|rotate --field`. */
sl_err sl_t_field_key(sl_keysvc *ks, const char *name);

#endif
