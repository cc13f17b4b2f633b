/* HTTP/1.1 request heads for the broker's non-Kafka endpoints (metrics: GET/HEAD; IAM STS:
 * POST with a bounded body). Bounded and strict.
 *
 * The endpoints listen where anyone on that network may reach them, so the parser believes
 * nothing: the head must end within SL_HTTP_MAX_HEAD bytes, the target is printable ASCII of
 * bounded length, header lines are strict (CRLF, token names, no folding), at most
 * SL_HTTP_MAX_HEADERS of them. A body is accepted only where the caller's limits allow POST,
 * and then only with one Content-Length (digits, at most lim->max_body); Transfer-Encoding is
 * refused everywhere, so no smuggled request can hide behind a body. Pure: no I/O, no
 * allocation, so the fuzzer (tests/fuzz/fuzz_http.c) drives it directly. */
#ifndef SL_HTTP_H
#define SL_HTTP_H
#include <stdbool.h>
#include <stddef.h>

#define SL_HTTP_MAX_HEAD    8192 /* request line and headers, CRLFCRLF included */
#define SL_HTTP_MAX_TARGET  1024
#define SL_HTTP_MAX_AUTH    1024 /* the Authorization value kept */
#define SL_HTTP_MAX_HEADERS 32

typedef enum { SL_HTTP_GET = 0, SL_HTTP_HEAD, SL_HTTP_POST } sl_http_method;

/* One header line as sent: name and value (optional white space trimmed), pointing into the
 * buffer given to sl_http_parse_ex (valid while it is; not NUL-terminated). */
typedef struct sl_http_hdr {
    const char *name;
    size_t nlen;
    const char *value;
    size_t vlen;
} sl_http_hdr;

typedef struct sl_http_req {
    sl_http_method method;
    bool head;                         /* method == SL_HTTP_HEAD */
    char path[SL_HTTP_MAX_TARGET + 1]; /* the target up to '?', NUL-terminated */
    bool has_auth;
    char auth[SL_HTTP_MAX_AUTH + 1]; /* the Authorization value, NUL-terminated */
    bool keep_alive;                 /* HTTP/1.1 unless "Connection: close"; 1.0 only if asked */
    size_t content_length;           /* POST: the body's length (0 for GET/HEAD) */
    int nheaders;
    sl_http_hdr headers[SL_HTTP_MAX_HEADERS]; /* every header line, in order */
} sl_http_req;

/* What a listener accepts beyond GET and HEAD. */
typedef struct sl_http_limits {
    bool allow_post; /* POST with a Content-Length body */
    size_t max_body; /* POST bodies longer than this: 413 */
} sl_http_limits;

/* Parses one request head from the start of `buf` (`len` bytes) into *out, under `lim` (NULL:
 * GET/HEAD only, no body).
 * > 0: the head is complete and that many bytes belong to it (the body, out->content_length
 *      bytes, follows it);
 * 0: incomplete, read more (len is still below SL_HTTP_MAX_HEAD);
 * < 0: refused, the negated HTTP status to answer before closing: 400 malformed, 405 a method
 *      not allowed, 411 POST without Content-Length, 413 body over lim->max_body, 414 target too
 *      long, 431 head too large or too many headers, 505 not HTTP/1.0 or 1.1.
 * `out` is written even on failure; its strings are always NUL-terminated. */
int sl_http_parse_ex(const char *buf, size_t len, const sl_http_limits *lim, sl_http_req *out);
/* sl_http_parse_ex(buf, len, NULL, out): the metrics endpoint's GET/HEAD-only form. */
int sl_http_parse(const char *buf, size_t len, sl_http_req *out);

/* The first header named `name` (case-insensitive) of `r`, or NULL; *vlen gets its length. */
const char *sl_http_header(const sl_http_req *r, const char *name, size_t *vlen);

/* The reason phrase of `status` ("Not Found"); "Error" for codes it does not know. */
const char *sl_http_reason(int status);

#endif
