/* A growable text for output that is built piece by piece (audit lines, the metrics exposition,
 * pages), and the UTF-8 check the escapers of those formats share. */
#ifndef SL_BASE_TEXT_H
#define SL_BASE_TEXT_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* A malloc'd, NUL-terminated text that grows; after a failed allocation `oom` is set and every
 * later append does nothing, so renderers check once at the end. The caller owns `p` (free). */
typedef struct sl_text {
    char *p;
    size_t len, cap;
    bool oom;
} sl_text;

void sl_text_put(sl_text *t, const char *s, size_t n);
void sl_text_puts(sl_text *t, const char *s);
__attribute__((format(printf, 2, 3))) void sl_text_printf(sl_text *t, const char *fmt, ...);
void sl_text_free(sl_text *t);
/* sl_text_free after overwriting the whole buffer with zeros: for a text that held a secret
 * (growth reallocates, so a secret is best written into a text that will not grow past its
 * first 4 KiB). */
void sl_text_wipe(sl_text *t);
/* Appends v as HTML or XML text: & < > " ' escaped; invalid UTF-8 becomes U+FFFD. */
void sl_text_markup(sl_text *t, const char *v);

/* Length of the valid UTF-8 sequence at `s` (`n` bytes left, n > 0), 0 when it is not one
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
size_t sl_utf8_len(const unsigned char *s, size_t n);
/* Writes code point cp (at most U+10FFFF, not a surrogate: the caller checked) as UTF-8 at o
 * (room for 4 bytes); returns the bytes written. */
size_t sl_utf8_put(unsigned char *o, unsigned cp);

#endif
