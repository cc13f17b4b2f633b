/* Locked memory for raw key bytes: one mmap'd slab, mlock'ed (never swapped), MADV_DONTDUMP (not
 * in core dumps) and MADV_WIPEONFORK (a forked child sees zeros), cleansed on free. Raw topic
 * keys and unwrapped DEK bytes live here, never in the ordinary heap. Thread-safe.
 *
 * If mlock is refused (RLIMIT_MEMLOCK) the slab still works, unlocked, and
 * sl_secmem_locked() says so (logged once at start). */
#ifndef SL_CRYPTO_SECMEM_H
#define SL_CRYPTO_SECMEM_H
#include <stdbool.h>
#include <stddef.h>

/* Reserves room for `max_keys` 32-byte keys (idempotent; later calls keep the first slab). */
bool sl_secmem_init(size_t max_keys);
/* A zeroed 32-byte key slot, or NULL when the slab is full. */
void *sl_secmem_alloc_key(void);
/* Cleanses and frees a slot (NULL-safe). */
void sl_secmem_free_key(void *p);
bool sl_secmem_locked(void);
/* Marks the process not dumpable (prctl PR_SET_DUMPABLE 0): OpenSSL's key schedules live in the
 * ordinary heap, so with encryption on no core dump may be written at all. */
void sl_secmem_no_core_dumps(void);

#endif
