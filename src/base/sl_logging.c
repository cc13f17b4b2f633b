#include "sl_logging.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static sl_log_level g_level = SL_LOG_INFO;
static const char *const k_names[] = {"debug", "info", "warn", "error"};

void sl_log_set_level(sl_log_level lvl) { g_level = lvl; }
sl_log_level sl_log_get_level(void) { return g_level; }

static void vlogf(sl_log_level lvl, const char *sub, const char *msg, const char *fmt, va_list ap) {
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s sub=%s msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, k_names[lvl], sub, msg);
    if (n < 0) return;
    if ((size_t)n < sizeof line - 2 && fmt && *fmt) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        if (m > 0) n += m;
    }
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

void sl_logf(sl_log_level lvl, const char *sub, const char *msg, const char *fmt, ...) {
    if (lvl < g_level) return;
    va_list ap;
    va_start(ap, fmt);
    vlogf(lvl, sub, msg, fmt, ap);
    va_end(ap);
}

/* ---- rate-limited lines ---- */

#define SLOTS 256
#define PROBE 8

typedef struct slot {
    const char *sub, *msg; /* string literals at the call sites: compared by address */
    char addr[64];
    sl_log_level lvl;
    int64_t window_start;
    uint32_t written;
    uint64_t suppressed;
} slot;

static slot g_slots[SLOTS];
static unsigned long long g_suppressed_total;
/* Across all addresses: many addresses (an IPv6 prefix) must not multiply the bound. */
static int64_t g_window_start;
static uint32_t g_written;
static uint64_t g_over; /* lines past the global budget in this window */

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t slot_hash(const char *sub, const char *msg, const char *addr) {
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)sub ^ (uint32_t)((uintptr_t)msg * 31u);
    for (const char *p = addr; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void summarize(slot *s) {
    if (s->suppressed && s->lvl >= g_level) {
        char m[160];
        snprintf(m, sizeof m, "%s (suppressed)", s->msg);
        sl_logf(s->lvl, s->sub, m, "addr=%s suppressed=%llu window_ms=%d", s->addr,
                (unsigned long long)s->suppressed, SL_LOG_LIMIT_WINDOW_MS);
    }
    s->suppressed = 0;
    s->written = 0;
}

static bool expired(const slot *s, int64_t now) {
    return now - s->window_start >= SL_LOG_LIMIT_WINDOW_MS;
}

/* The slot of (sub, msg, addr): its own, a free or finished one to take over, or - with every
 * probed slot busy - the message's shared slot for all addresses. */
static slot *find_slot(const char *sub, const char *msg, const char *addr, int64_t now) {
    uint32_t h = slot_hash(sub, msg, addr);
    slot *take = NULL;
    for (int i = 0; i < PROBE; i++) {
        slot *s = &g_slots[(h + (uint32_t)i) % SLOTS];
        if (s->msg == msg && s->sub == sub && !strcmp(s->addr, addr)) return s;
        if (!take && (!s->msg || (expired(s, now) && !s->suppressed))) take = s;
    }
    if (!take) {
        if (strcmp(addr, "*") != 0) return find_slot(sub, msg, "*", now);
        /* Even the shared slot found no room: it evicts the first probed slot (after writing
         * that slot's summary), so the line stays counted rather than written. */
        take = &g_slots[h % SLOTS];
    }
    if (take->msg) summarize(take);
    take->sub = sub;
    take->msg = msg;
    snprintf(take->addr, sizeof take->addr, "%s", addr);
    take->window_start = now;
    take->written = 0;
    take->suppressed = 0;
    return take;
}

static void global_roll(int64_t now) {
    if (now - g_window_start < SL_LOG_LIMIT_WINDOW_MS) return;
    if (g_over)
        sl_logf(SL_LOG_WARN, "log", "rate-limited lines suppressed (all addresses)",
                "suppressed=%llu window_ms=%d", (unsigned long long)g_over, SL_LOG_LIMIT_WINDOW_MS);
    g_window_start = now;
    g_written = 0;
    g_over = 0;
}

void sl_log_limited(sl_log_level lvl, const char *sub, const char *msg, const char *addr,
                    const char *fmt, ...) {
    if (lvl < g_level) return;
    int64_t now = mono_ms();
    global_roll(now);
    if (g_written >= SL_LOG_LIMIT_GLOBAL) {
        g_over++;
        g_suppressed_total++;
        return;
    }
    slot *s = find_slot(sub, msg, addr && *addr ? addr : "?", now);
    if (expired(s, now)) {
        summarize(s);
        s->window_start = now;
    }
    s->lvl = lvl;
    if (s->written >= SL_LOG_LIMIT_BURST) {
        s->suppressed++;
        g_suppressed_total++;
        return;
    }
    s->written++;
    g_written++;
    va_list ap;
    va_start(ap, fmt);
    vlogf(lvl, sub, msg, fmt, ap);
    va_end(ap);
}

void sl_log_limited_flush(void) {
    int64_t now = mono_ms();
    global_roll(now);
    for (int i = 0; i < SLOTS; i++)
        if (g_slots[i].msg && g_slots[i].suppressed && expired(&g_slots[i], now)) {
            summarize(&g_slots[i]);
            g_slots[i].window_start = now;
        }
}

unsigned long long sl_log_suppressed_total(void) { return g_suppressed_total; }

const char *sl_log_peer_addr(const char *peer, char *out, size_t n) {
    if (!n) return out;
    const char *p = peer ? peer : "";
    size_t len = strlen(p);
    if (*p == '[') {
        const char *e = strchr(p, ']');
        p++;
        len = e ? (size_t)(e - p) : strlen(p);
    } else {
        const char *c = strrchr(p, ':');
        if (c && c == strchr(p, ':')) len = (size_t)(c - p); /* one colon: v4:port */
    }
    if (len >= n) len = n - 1;
    memcpy(out, p, len);
    out[len] = 0;
    return out;
}
