/* Structured log lines on stderr: `ts=... level=... sub=... msg="..." k=v ...`.
 * Never pass record payloads or secrets. */
#ifndef SL_LOGGING_H
#define SL_LOGGING_H

typedef enum { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;

void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
/* `fmt` continues the line after msg (key=value pairs); it may be "". */
void sl_logf(sl_log_level lvl, const char *sub, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SL_DEBUG(sub, msg, ...) sl_logf(SL_LOG_DEBUG, sub, msg, __VA_ARGS__)
#define SL_INFO(sub, msg, ...)  sl_logf(SL_LOG_INFO, sub, msg, __VA_ARGS__)
#define SL_WARN(sub, msg, ...)  sl_logf(SL_LOG_WARN, sub, msg, __VA_ARGS__)
#define SL_ERROR(sub, msg, ...) sl_logf(SL_LOG_ERROR, sub, msg, __VA_ARGS__)

#endif
