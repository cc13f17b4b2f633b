/* libFuzzer target for the metrics endpoint's request parser (src/metrics/sl_http.h): whatever
 * the bytes, the parser must stay inside them, and what it accepts must be a coherent request:
 * a consumed length within the input and the head limit, ending in CRLFCRLF; a path that is
 * printable ASCII starting with '/'; NUL-terminated strings within their buffers. A refusal
 * must be one of the statuses the header lists. The input is copied to an exact-size heap
 * buffer so ASan sees any read past its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/sl_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sl_http_req r;
    int n = sl_http_parse(buf, size, &r);
    if (n > 0) {
        if ((size_t)n > size || n > SL_HTTP_MAX_HEAD || n < 4) abort();
        if (memcmp(buf + n - 4, "\r\n\r\n", 4)) abort();
        if (r.path[0] != '/') abort();
        size_t pl = strnlen(r.path, sizeof r.path);
        if (pl == sizeof r.path) abort();
        for (size_t i = 0; i < pl; i++)
            if ((unsigned char)r.path[i] <= 0x20 || (unsigned char)r.path[i] >= 0x7f) abort();
        if (strnlen(r.auth, sizeof r.auth) == sizeof r.auth) abort();
        /* A prefix of an accepted head is never accepted (the end is the first CRLFCRLF). */
        if (sl_http_parse(buf, (size_t)n - 1, &r) > 0) abort();
    } else if (n < 0) {
        if (n != -400 && n != -405 && n != -414 && n != -431 && n != -505) abort();
    } else if (size >= SL_HTTP_MAX_HEAD) {
        abort(); /* "incomplete" only while more bytes could still fit */
    }
    free(buf);
    return 0;
}
