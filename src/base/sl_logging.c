#include "sl_logging.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static sl_log_level g_level = SL_LOG_INFO;
static const char *const k_names[] = {"debug", "info", "warn", "error"};

void sl_log_set_level(sl_log_level lvl) { g_level = lvl; }
sl_log_level sl_log_get_level(void) { return g_level; }

void sl_logf(sl_log_level lvl, const char *sub, const char *msg, const char *fmt, ...) {
    if (lvl < g_level) return;
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
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m > 0) n += m;
    }
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}
