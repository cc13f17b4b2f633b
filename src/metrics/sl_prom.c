/* Prometheus text exposition (sl_prom.h). */
#include "metrics/sl_prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(sl_text *t, size_t extra) {
    if (t->oom) return false;
    if (t->len + extra + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            t->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(t->p, cap);
    if (!p) {
        t->oom = true;
        return false;
    }
    t->p = p;
    t->cap = cap;
    return true;
}

void sl_text_put(sl_text *t, const char *s, size_t n) {
    if (!grow(t, n)) return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

void sl_text_puts(sl_text *t, const char *s) { sl_text_put(t, s, strlen(s)); }

void sl_text_printf(sl_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        sl_text_put(t, small, (size_t)n);
        return;
    }
    if (!grow(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void sl_text_free(sl_text *t) {
    free(t->p);
    *t = (sl_text){0};
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < k) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return k;
}

static const char k_replacement[] = "\xef\xbf\xbd";

void sl_prom_label_value(sl_text *t, const char *v, size_t n) {
    const unsigned char *s = (const unsigned char *)v;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(s + i, n - i);
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

void sl_html_escape(sl_text *t, const char *v) {
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(s + i, n - i);
        if (!k) {
            sl_text_put(t, k_replacement, 3);
            i++;
            continue;
        }
        switch (s[i]) {
        case '&':
            sl_text_puts(t, "&amp;");
            break;
        case '<':
            sl_text_puts(t, "&lt;");
            break;
        case '>':
            sl_text_puts(t, "&gt;");
            break;
        case '"':
            sl_text_puts(t, "&quot;");
            break;
        case '\'':
            sl_text_puts(t, "&#39;");
            break;
        default:
            sl_text_put(t, v + i, k);
        }
        i += k;
    }
}
