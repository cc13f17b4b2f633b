#include "sl_logging.h"

#include "base/sl_limit.h"

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

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Slots are keyed by (sub, msg, addr): sub and msg are string literals at the call sites. */
static void summarize(void *ctx, const sl_limit_slot *s) {
    (void)ctx;
    if ((sl_log_level)s->aux < g_level) return;
    char m[160];
    snprintf(m, sizeof m, "%s (suppressed)", (const char *)s->k2);
    sl_logf((sl_log_level)s->aux, (const char *)s->k1, m, "addr=%s suppressed=%llu window_ms=%d",
            s->addr, (unsigned long long)s->suppressed, SL_LOG_LIMIT_WINDOW_MS);
}

static void summarize_all(void *ctx, uint64_t over) {
    (void)ctx;
    sl_logf(SL_LOG_WARN, "log", "rate-limited lines suppressed (all addresses)",
            "suppressed=%llu window_ms=%d", (unsigned long long)over, SL_LOG_LIMIT_WINDOW_MS);
}

static sl_limiter g_lim;
static bool g_lim_ready;

static sl_limiter *lim(void) {
    if (!g_lim_ready) {
        sl_limiter_init(&g_lim, SL_LOG_LIMIT_BURST, SL_LOG_LIMIT_GLOBAL, SL_LOG_LIMIT_WINDOW_MS,
                        summarize, summarize_all, NULL);
        g_lim_ready = true;
    }
    return &g_lim;
}

void sl_log_limited(sl_log_level lvl, const char *sub, const char *msg, const char *addr,
                    const char *fmt, ...) {
    if (lvl < g_level) return;
    if (!sl_limiter_admit(lim(), sub, msg, addr, (int)lvl, mono_ms())) return;
    va_list ap;
    va_start(ap, fmt);
    vlogf(lvl, sub, msg, fmt, ap);
    va_end(ap);
}

void sl_log_limited_flush(void) { sl_limiter_flush(lim(), mono_ms()); }

unsigned long long sl_log_suppressed_total(void) { return lim()->suppressed_total; }

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
