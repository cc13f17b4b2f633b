/* Structured log lines on stderr: `ts=... level=... sub=... msg="..." k=v ...`.
 * Never pass record payloads or secrets. */
#ifndef SL_LOGGING_H
#define SL_LOGGING_H
#include <stddef.h>

typedef enum { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;

void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
/* `fmt` continues the line after msg (key=value pairs); it may be "". */
void sl_logf(sl_log_level lvl, const char *sub, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Rate-limited per client address: a line with the same (sub, msg, addr) is written at most
 * SL_LOG_LIMIT_BURST times per SL_LOG_LIMIT_WINDOW_MS; the rest are counted, and one summary
 * line (`msg="<msg> (suppressed)" addr=... suppressed=K`) follows when the window ends. So a
 * flood of failed logins or refused connections writes a bounded number of lines. `addr` is a
 * client address (no port; see sl_log_peer_addr). When too many addresses are active at once
 * they share one slot per message (addr=*), and all rate-limited lines together get at most
 * SL_LOG_LIMIT_GLOBAL per window (the excess is summarized once per window), so many
 * addresses do not multiply the bound. Loop thread. */
#define SL_LOG_LIMIT_BURST     10
#define SL_LOG_LIMIT_GLOBAL    200
#define SL_LOG_LIMIT_WINDOW_MS 10000
void sl_log_limited(sl_log_level lvl, const char *sub, const char *msg, const char *addr,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Writes the summaries of windows that ended (call about once a second). */
void sl_log_limited_flush(void);
/* Lines suppressed since start (metric-ready). */
unsigned long long sl_log_suppressed_total(void);
/* The address part of a peer "ip:port" or "[v6]:port" into out (n bytes). */
const char *sl_log_peer_addr(const char *peer, char *out, size_t n);

#define SL_DEBUG(sub, msg, ...) sl_logf(SL_LOG_DEBUG, sub, msg, __VA_ARGS__)
#define SL_INFO(sub, msg, ...)  sl_logf(SL_LOG_INFO, sub, msg, __VA_ARGS__)
#define SL_WARN(sub, msg, ...)  sl_logf(SL_LOG_WARN, sub, msg, __VA_ARGS__)
#define SL_ERROR(sub, msg, ...) sl_logf(SL_LOG_ERROR, sub, msg, __VA_ARGS__)

#endif
