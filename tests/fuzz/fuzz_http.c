/* libFuzzer target for the shared HTTP request parser (src/http/sl_http.h): whatever the bytes,
 * the parser must stay inside them, and what it accepts must be a coherent request: a consumed
 * length within the input and the head limit, ending in CRLFCRLF; a path that is printable
 * ASCII starting with '/'; NUL-terminated strings within their buffers; every recorded header
 * inside the head. A refusal must be one of the statuses the header lists.
 *
 * Every input is parsed twice: GET/HEAD only (the metrics endpoint) and with POST allowed (the
 * STS endpoint), under a body limit the input's last byte picks (0, 1, 16, 1 KiB, 1 MiB or
 * SIZE_MAX, where a huge Content-Length must saturate, not wrap). The two must agree on every
 * request that is not a POST, and an accepted body is never over the limit. The input is
 * copied to an exact-size heap buffer so ASan sees any read past its end. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/sl_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The invariants of one parse of buf[size]; aborts on a violation. */
static void check(const char *buf, size_t size, const sl_http_limits *lim, int n,
                  const sl_http_req *r) {
    if (n > 0) {
        if ((size_t)n > size || n > SL_HTTP_MAX_HEAD || n < 4) abort();
        if (memcmp(buf + n - 4, "\r\n\r\n", 4)) abort();
        if (r->path[0] != '/') abort();
        size_t pl = strnlen(r->path, sizeof r->path);
        if (pl == sizeof r->path) abort();
        for (size_t i = 0; i < pl; i++)
            if ((unsigned char)r->path[i] <= 0x20 || (unsigned char)r->path[i] >= 0x7f) abort();
        if (strnlen(r->auth, sizeof r->auth) == sizeof r->auth) abort();
        if (r->nheaders < 0 || r->nheaders > SL_HTTP_MAX_HEADERS) abort();
        for (int i = 0; i < r->nheaders; i++) {
            const sl_http_hdr *h = &r->headers[i];
            if (h->name < buf || h->nlen == 0 || h->nlen > (size_t)n || h->name + h->nlen > buf + n)
                abort();
            if (h->value < buf || h->vlen > (size_t)n || h->value + h->vlen > buf + n) abort();
            size_t vl = 0;
            char name[SL_HTTP_MAX_HEAD + 1];
            memcpy(name, h->name, h->nlen);
            name[h->nlen] = 0;
            if (!sl_http_header(r, name, &vl)) abort();
        }
        if (r->method == SL_HTTP_POST) {
            if (!lim || !lim->allow_post || r->content_length > lim->max_body) abort();
            /* The length is the header's value, read again here independently. */
            size_t vl = 0;
            const char *v = sl_http_header(r, "content-length", &vl);
            if (!v || !vl) abort();
            unsigned long long x = 0;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9' || x > (ULLONG_MAX - 9) / 10) abort();
                x = x * 10 + (unsigned long long)(v[i] - '0');
            }
            if (x != r->content_length) abort();
        } else if (r->content_length != 0 || r->head != (r->method == SL_HTTP_HEAD)) {
            abort();
        }
    } else if (n < 0) {
        if (n != -400 && n != -405 && n != -414 && n != -431 && n != -505 &&
            !(lim && lim->allow_post && (n == -411 || n == -413)))
            abort();
    } else if (size >= SL_HTTP_MAX_HEAD) {
        abort(); /* "incomplete" only while more bytes could still fit */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    static const size_t k_max[] = {0, 1, 16, 1024, 1 << 20, SIZE_MAX};
    sl_http_limits lim = {.allow_post = true, .max_body = k_max[size ? data[size - 1] % 6 : 0]};
    static sl_http_req r, rp;
    int n = sl_http_parse(buf, size, &r);
    check(buf, size, NULL, n, &r);
    int np = sl_http_parse_ex(buf, size, &lim, &rp);
    check(buf, size, &lim, np, &rp);
    /* Allowing POST changes nothing for other methods. */
    if (n > 0 && np != n) abort();
    if (np > 0 && rp.method != SL_HTTP_POST && n != np) abort();
    /* A prefix of an accepted head is never accepted (the end is the first CRLFCRLF). */
    if (n > 0 && sl_http_parse(buf, (size_t)n - 1, &r) > 0) abort();
    if (np > 0 && sl_http_parse_ex(buf, (size_t)np - 1, &lim, &rp) > 0) abort();
    free(buf);
    return 0;
}
