#include "crypto/sl_secmem.h"

#include <openssl/crypto.h>

#include <stdlib.h>

/* Stub: ordinary heap until the locked slab lands. */
bool sl_secmem_init(size_t max_keys) { return true; }
void *sl_secmem_alloc_key(void) { return calloc(1, 32); }
void sl_secmem_free_key(void *p) {
    if (!p) return;
    OPENSSL_cleanse(p, 32);
    free(p);
}
bool sl_secmem_locked(void) { return false; }
void sl_secmem_no_core_dumps(void) {}
