/* Growable text and UTF-8 (sl_text.h). */
#include "base/sl_text.h"

#include <stdint.h>
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

size_t sl_utf8_put(unsigned char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF). */
size_t sl_utf8_len(const unsigned char *s, size_t n) {
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

void sl_text_wipe(sl_text *t) {
    if (t->p) explicit_bzero(t->p, t->cap);
    sl_text_free(t);
}

void sl_text_markup(sl_text *t, const char *v) {
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    for (size_t i = 0; i < n;) {
        size_t k = sl_utf8_len(s + i, n - i);
        if (!k) {
            sl_text_put(t, "\xef\xbf\xbd", 3 /* U+FFFD */);
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
