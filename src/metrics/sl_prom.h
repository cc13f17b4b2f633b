/* Prometheus text exposition format 0.0.4 (docs/metrics.md): a growable text buffer and the
 * pieces of a sample line, escaped as the format requires. Used by the endpoint to render
 * /metrics and the status page; pure, so unit tests check the escaping byte for byte. */
#ifndef SL_METRICS_PROM_H
#define SL_METRICS_PROM_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_text.h"

/* A label value as the format wants it between double quotes: backslash, double quote and line
 * feed escaped (\\, \", \n); bytes that are not valid UTF-8 become U+FFFD, so a hostile name
 * (a claimed user, a topic) cannot break the exposition. */
void sl_prom_label_value(sl_text *t, const char *v, size_t n);
/* HELP text: backslash and line feed escaped. */
void sl_prom_help_text(sl_text *t, const char *v);
/* A sample value: integers exactly, others with %.17g, and +Inf, -Inf, NaN by name. */
void sl_prom_value(sl_text *t, double v);

/* "# HELP name help\n# TYPE name type\n". */
void sl_prom_family(sl_text *t, const char *name, const char *type, const char *help);
/* One sample: name{l1="v1",...} value. `labels` alternates names and values (NULL-terminated;
 * NULL or empty: no braces). */
void sl_prom_sample(sl_text *t, const char *name, const char *const *labels, double v);
/* Same with an unsigned 64-bit value printed exactly (counters beyond 2^53). */
void sl_prom_sample_u64(sl_text *t, const char *name, const char *const *labels, uint64_t v);

#endif
