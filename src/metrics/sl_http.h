/* The metrics endpoint's HTTP/1.1 request parser: GET and HEAD only, no bodies, bounded.
 *
 * The endpoint listens where scrapers and browsers reach it and may be reachable by anyone on
 * that network, so the parser believes nothing: the head must end within SL_HTTP_MAX_HEAD
 * bytes, the target is printable ASCII of bounded length, header lines are strict (CRLF, token
 * names, no folding), and any sign of a body (Content-Length other than 0, Transfer-Encoding)
 * is refused rather than skipped, so no smuggled request can hide behind one. Pure: no I/O, no
 * allocation, so the fuzzer (tests/fuzz/fuzz_http.c) drives it directly. */
#ifndef SL_METRICS_HTTP_H
#define SL_METRICS_HTTP_H
#include <stdbool.h>
#include <stddef.h>

#define SL_HTTP_MAX_HEAD   8192 /* request line and headers, CRLFCRLF included */
#define SL_HTTP_MAX_TARGET 1024
#define SL_HTTP_MAX_AUTH   1024 /* the Authorization value kept */

typedef struct sl_http_req {
    bool head;                         /* HEAD (else GET) */
    char path[SL_HTTP_MAX_TARGET + 1]; /* the target up to '?', NUL-terminated */
    bool has_auth;
    char auth[SL_HTTP_MAX_AUTH + 1]; /* the Authorization value, NUL-terminated */
    bool keep_alive;                 /* HTTP/1.1 unless "Connection: close"; 1.0 only if asked */
} sl_http_req;

/* Parses one request head from the start of `buf` (`len` bytes) into *out.
 * > 0: the head is complete and that many bytes belong to it;
 * 0: incomplete, read more (len is still below SL_HTTP_MAX_HEAD);
 * < 0: refused, the negated HTTP status to answer before closing: 400 malformed, 405 not
 *      GET/HEAD, 414 target too long, 431 head too large, 505 not HTTP/1.0 or 1.1.
 * `out` is written even on failure; its strings are always NUL-terminated. */
int sl_http_parse(const char *buf, size_t len, sl_http_req *out);

/* The reason phrase of `status` ("Not Found"); "Error" for codes it does not know. */
const char *sl_http_reason(int status);

#endif
