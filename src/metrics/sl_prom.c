/* Prometheus text exposition (sl_prom.h). */
#include "metrics/sl_prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_replacement[] = "\xef\xbf\xbd";

void sl_prom_label_value(sl_text *t, const char *v, size_t n) {
    const unsigned char *s = (const unsigned char *)v;
    for (size_t i = 0; i < n;) {
        size_t k = sl_utf8_len(s + i, n - i);
        if (!k) {
            sl_text_put(t, k_replacement, 3);
            i++;
            continue;
        }
        if (s[i] == '\\')
            sl_text_put(t, "\\\\", 2);
        else if (s[i] == '"')
            sl_text_put(t, "\\\"", 2);
        else if (s[i] == '\n')
            sl_text_put(t, "\\n", 2);
        else
            sl_text_put(t, v + i, k);
        i += k;
    }
}

void sl_prom_help_text(sl_text *t, const char *v) {
    for (; *v; v++) {
        if (*v == '\\')
            sl_text_put(t, "\\\\", 2);
        else if (*v == '\n')
            sl_text_put(t, "\\n", 2);
        else
            sl_text_put(t, v, 1);
    }
}

void sl_prom_value(sl_text *t, double v) {
    if (isnan(v))
        sl_text_puts(t, "NaN");
    else if (isinf(v))
        sl_text_puts(t, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        sl_text_printf(t, "%.0f", v);
    else
        sl_text_printf(t, "%.17g", v);
}

void sl_prom_family(sl_text *t, const char *name, const char *type, const char *help) {
    sl_text_printf(t, "# HELP %s ", name);
    sl_prom_help_text(t, help);
    sl_text_printf(t, "\n# TYPE %s %s\n", name, type);
}

static void sample_head(sl_text *t, const char *name, const char *const *labels) {
    sl_text_puts(t, name);
    if (!labels || !labels[0]) {
        sl_text_put(t, " ", 1);
        return;
    }
    sl_text_put(t, "{", 1);
    for (int i = 0; labels[i] && labels[i + 1]; i += 2) {
        if (i) sl_text_put(t, ",", 1);
        sl_text_puts(t, labels[i]);
        sl_text_put(t, "=\"", 2);
        sl_prom_label_value(t, labels[i + 1], strlen(labels[i + 1]));
        sl_text_put(t, "\"", 1);
    }
    sl_text_put(t, "} ", 2);
}

void sl_prom_sample(sl_text *t, const char *name, const char *const *labels, double v) {
    sample_head(t, name, labels);
    sl_prom_value(t, v);
    sl_text_put(t, "\n", 1);
}

void sl_prom_sample_u64(sl_text *t, const char *name, const char *const *labels, uint64_t v) {
    sample_head(t, name, labels);
    sl_text_printf(t, "%llu\n", (unsigned long long)v);
}
