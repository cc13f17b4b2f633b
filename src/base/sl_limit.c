/* Per-address rate limiting (sl_limit.h). */
#include "base/sl_limit.h"

#include <stdio.h>
#include <string.h>

#define PROBE 8

void sl_limiter_init(sl_limiter *l, uint32_t burst, uint32_t global, int64_t window_ms,
                     sl_limit_summary_fn summary, sl_limit_global_fn global_summary, void *ctx) {
    memset(l, 0, sizeof *l);
    l->burst = burst;
    l->global = global;
    l->window_ms = window_ms;
    l->summary = summary;
    l->global_summary = global_summary;
    l->ctx = ctx;
}

static uint32_t slot_hash(const void *k1, const void *k2, const char *addr) {
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)k1 ^ (uint32_t)((uintptr_t)k2 * 31u);
    for (const char *p = addr; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void summarize(sl_limiter *l, sl_limit_slot *s) {
    if (s->suppressed && l->summary) l->summary(l->ctx, s);
    s->suppressed = 0;
    s->passed = 0;
}

static bool expired(const sl_limiter *l, const sl_limit_slot *s, int64_t now) {
    return now - s->window_start >= l->window_ms;
}

/* The slot of (k1, k2, addr): its own, a free or finished one to take over, or - with every
 * probed slot busy - the kind's shared slot for all addresses. */
static sl_limit_slot *find_slot(sl_limiter *l, const void *k1, const void *k2, const char *addr,
                                int64_t now) {
    uint32_t h = slot_hash(k1, k2, addr);
    sl_limit_slot *take = NULL;
    for (int i = 0; i < PROBE; i++) {
        sl_limit_slot *s = &l->slots[(h + (uint32_t)i) % SL_LIMIT_SLOTS];
        if (s->k1 == k1 && s->k2 == k2 && (s->k1 || s->k2) && !strcmp(s->addr, addr)) return s;
        if (!take && ((!s->k1 && !s->k2) || (expired(l, s, now) && !s->suppressed))) take = s;
    }
    if (!take) {
        if (strcmp(addr, "*") != 0) return find_slot(l, k1, k2, "*", now);
        /* Even the shared slot found no room: it evicts the first probed slot (after that
         * slot's summary), so what comes is still counted rather than let through. */
        take = &l->slots[h % SL_LIMIT_SLOTS];
    }
    if (take->k1 || take->k2) summarize(l, take);
    take->k1 = k1;
    take->k2 = k2;
    snprintf(take->addr, sizeof take->addr, "%s", addr);
    take->window_start = now;
    take->passed = 0;
    take->suppressed = 0;
    return take;
}

static void global_roll(sl_limiter *l, int64_t now) {
    if (now - l->g_window_start < l->window_ms) return;
    if (l->g_over && l->global_summary) l->global_summary(l->ctx, l->g_over);
    l->g_window_start = now;
    l->g_passed = 0;
    l->g_over = 0;
}

bool sl_limiter_admit(sl_limiter *l, const void *k1, const void *k2, const char *addr, int aux,
                      int64_t now) {
    global_roll(l, now);
    if (l->g_passed >= l->global) {
        l->g_over++;
        l->suppressed_total++;
        return false;
    }
    sl_limit_slot *s = find_slot(l, k1, k2, addr && *addr ? addr : "?", now);
    if (expired(l, s, now)) {
        summarize(l, s);
        s->window_start = now;
    }
    s->aux = aux;
    if (s->passed >= l->burst) {
        s->suppressed++;
        l->suppressed_total++;
        return false;
    }
    s->passed++;
    l->g_passed++;
    return true;
}

void sl_limiter_flush(sl_limiter *l, int64_t now) {
    global_roll(l, now);
    for (int i = 0; i < SL_LIMIT_SLOTS; i++) {
        sl_limit_slot *s = &l->slots[i];
        if ((s->k1 || s->k2) && s->suppressed && expired(l, s, now)) {
            summarize(l, s);
            s->window_start = now;
        }
    }
}
