/* A slab of fixed 32-byte slots in one private anonymous mapping, between two PROT_NONE guard
 * pages (an overrun of a slot faults instead of reading the next heap object). Our own slab
 * rather than OpenSSL's secure heap: no coupling to its global arena (TLS private keys compete
 * for that one) and MADV_WIPEONFORK, which it does not set (research brief, section 2). */
#include "crypto/sl_secmem.h"

#include <openssl/crypto.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/sl_logging.h"

#define SLOT            32
#define DEFAULT_SLOTS   4096
#define MAX_SLOTS_LIMIT (1u << 20) /* 32 MiB: more keys than that is a bug, not a cache */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *g_map;      /* guard | slots | guard */
static size_t g_map_len;    /* whole mapping */
static uint8_t *g_slots;    /* first slot */
static size_t g_nslots;     /* slots in the slab */
static int32_t *g_next;     /* free list links (slot indexes; not secret: ordinary heap) */
static int32_t g_free = -1; /* head of the free list */
static bool g_locked;

static bool init_locked(size_t max_keys) {
    if (g_map) return true;
    if (max_keys == 0) max_keys = DEFAULT_SLOTS;
    if (max_keys > MAX_SLOTS_LIMIT) max_keys = MAX_SLOTS_LIMIT;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (max_keys * SLOT + page - 1) / page * page;
    size_t len = body + 2 * page;
    uint8_t *m = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    if (mprotect(m + page, body, PROT_READ | PROT_WRITE) != 0) {
        munmap(m, len);
        return false;
    }
    int32_t *next = malloc(sizeof *next * (body / SLOT));
    if (!next) {
        munmap(m, len);
        return false;
    }
    /* Not fatal: DONTDUMP needs Linux 3.4, WIPEONFORK 4.14; the process is also made
     * non-dumpable (sl_secmem_no_core_dumps) when encryption is on. */
    (void)madvise(m + page, body, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
    (void)madvise(m + page, body, MADV_WIPEONFORK);
#endif
    g_locked = mlock(m + page, body) == 0;
    if (!g_locked)
        SL_WARN("secmem", "cannot lock key memory: keys may be swapped out",
                "bytes=%zu hint=\"raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit)\"", body);
    g_map = m;
    g_map_len = len;
    g_slots = m + page;
    g_nslots = body / SLOT;
    g_next = next;
    for (size_t i = 0; i < g_nslots; i++) g_next[i] = i + 1 < g_nslots ? (int32_t)(i + 1) : -1;
    g_free = 0;
    return true;
}

bool sl_secmem_init(size_t max_keys) {
    pthread_mutex_lock(&g_mu);
    bool ok = init_locked(max_keys);
    pthread_mutex_unlock(&g_mu);
    return ok;
}

void *sl_secmem_alloc_key(void) {
    pthread_mutex_lock(&g_mu);
    void *p = NULL;
    if (init_locked(DEFAULT_SLOTS) && g_free >= 0) {
        int32_t i = g_free;
        g_free = g_next[i];
        g_next[i] = -2; /* in use: a double free is caught below */
        p = g_slots + (size_t)i * SLOT;
        memset(p, 0, SLOT);
    }
    pthread_mutex_unlock(&g_mu);
    return p;
}

void sl_secmem_free_key(void *p) {
    if (!p) return;
    pthread_mutex_lock(&g_mu);
    uint8_t *u = p;
    if (g_map && u >= g_slots && u < g_slots + g_nslots * SLOT &&
        (size_t)(u - g_slots) % SLOT == 0) {
        int32_t i = (int32_t)((size_t)(u - g_slots) / SLOT);
        if (g_next[i] == -2) {
            OPENSSL_cleanse(u, SLOT);
            g_next[i] = g_free;
            g_free = i;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

bool sl_secmem_locked(void) {
    pthread_mutex_lock(&g_mu);
    bool l = g_map && g_locked;
    pthread_mutex_unlock(&g_mu);
    return l;
}

void sl_secmem_no_core_dumps(void) {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        SL_WARN("secmem", "cannot disable core dumps", "%s", "call=prctl");
}
