/* Per-address rate limiting of things a peer can make the broker do at will (log lines, audit
 * events of refused connections): at most `burst` per (kind, address) per window, at most
 * `global` per window over all of them (so many addresses do not multiply the bound); what is
 * held back is counted, and the owner is told each count once the window ends, to write one
 * summary in its place. Slots are a fixed table: when every probed slot is busy an address
 * shares the kind's slot for all addresses ("*"), so memory never grows with the addresses
 * seen. Not thread-safe: one owner thread. */
#ifndef SL_BASE_LIMIT_H
#define SL_BASE_LIMIT_H
#include <stdbool.h>
#include <stdint.h>

#define SL_LIMIT_SLOTS 256

typedef struct sl_limit_slot {
    const void *k1, *k2; /* what is limited, compared by address (e.g. two string literals) */
    char addr[64];
    int aux; /* the owner's value kept with the slot (the log level) */
    int64_t window_start;
    uint32_t passed;
    uint64_t suppressed;
} sl_limit_slot;

/* A slot's window ended (or the slot is taken over) with `s->suppressed` > 0 held back. */
typedef void (*sl_limit_summary_fn)(void *ctx, const sl_limit_slot *s);
/* The global window ended with `over` held back by the global bound. */
typedef void (*sl_limit_global_fn)(void *ctx, uint64_t over);

typedef struct sl_limiter {
    uint32_t burst, global;
    int64_t window_ms;
    sl_limit_summary_fn summary;
    sl_limit_global_fn global_summary;
    void *ctx;
    /* state */
    sl_limit_slot slots[SL_LIMIT_SLOTS];
    int64_t g_window_start;
    uint32_t g_passed;
    uint64_t g_over;
    unsigned long long suppressed_total;
} sl_limiter;

/* Initializes `l` (its callbacks may be NULL). */
void sl_limiter_init(sl_limiter *l, uint32_t burst, uint32_t global, int64_t window_ms,
                     sl_limit_summary_fn summary, sl_limit_global_fn global_summary, void *ctx);
/* True when one more (k1, k2, addr) may pass now (monotonic ms); false when it is held back
 * (and counted). `aux` is kept with the slot for its summary. */
bool sl_limiter_admit(sl_limiter *l, const void *k1, const void *k2, const char *addr, int aux,
                      int64_t now_ms);
/* Reports the summaries of windows that ended (call about once a second). */
void sl_limiter_flush(sl_limiter *l, int64_t now_ms);

#endif
