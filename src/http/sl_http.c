/* HTTP request heads for the broker's non-Kafka endpoints (sl_http.h). */
#include "http/sl_http.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The end of the head (just past CRLFCRLF) within the first `n` bytes, or 0. */
static size_t head_end(const char *b, size_t n) {
    for (size_t i = 0; i + 3 < n; i++)
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') return i + 4;
    return 0;
}

static bool name_is(const char *p, size_t n, const char *want) {
    return n == strlen(want) && strncasecmp(p, want, n) == 0;
}

/* True when the comma-separated list [v, v+n) names `tok` (case-insensitive). */
static bool list_has(const char *v, size_t n, const char *tok) {
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < n && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0) return true;
    }
    return false;
}

/* A Content-Length value: digits only, at least one. A value over `max` sets *over instead of
 * being computed, so a huge number can neither overflow nor pass the limit. */
static bool content_length(const char *v, size_t n, size_t max, size_t *out, bool *over) {
    if (!n) return false;
    size_t x = 0;
    *over = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        size_t d = (size_t)(v[i] - '0');
        if (*over || x > max / 10 || d > max - x * 10)
            *over = true;
        else
            x = x * 10 + d;
    }
    *out = x;
    return true;
}

int sl_http_parse_ex(const char *buf, size_t len, const sl_http_limits *lim, sl_http_req *out) {
    memset(out, 0, sizeof *out);
    size_t scan = len < SL_HTTP_MAX_HEAD ? len : SL_HTTP_MAX_HEAD;
    size_t end = head_end(buf, scan);
    if (!end) return len >= SL_HTTP_MAX_HEAD ? -431 : 0;
    /* Request line: method SP target SP HTTP/1.x CRLF. */
    const char *p = buf, *hend = buf + end - 2; /* hend: the final CRLF */
    const char *eol = memchr(p, '\r', (size_t)(hend - p));
    if (!eol || eol[1] != '\n') return -400;
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p) return -400;
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q)) return -400;
    size_t mlen = (size_t)(sp1 - p);
    bool get = mlen == 3 && !memcmp(p, "GET", 3), head = mlen == 4 && !memcmp(p, "HEAD", 4);
    /* POST is a method only where the listener takes bodies; elsewhere it is refused (405) like
     * any other, after the head's own checks, as before. */
    bool post = lim && lim->allow_post && mlen == 4 && !memcmp(p, "POST", 4);
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
    if (!sp2 || sp2 == t) return -400;
    size_t vlen = (size_t)(eol - sp2 - 1);
    const char *ver = sp2 + 1;
    if (vlen != 8 || memcmp(ver, "HTTP/1.", 7))
        return vlen >= 5 && !memcmp(ver, "HTTP/", 5) ? -505 : -400;
    if (ver[7] != '0' && ver[7] != '1') return -505;
    bool http11 = ver[7] == '1';
    size_t tlen = (size_t)(sp2 - t);
    if (tlen > SL_HTTP_MAX_TARGET) return -414;
    if (t[0] != '/') return -400;
    size_t plen = 0;
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f) return -400;
        if (c == '?' || c == '#') break;
        plen++;
    }
    memcpy(out->path, t, plen);
    out->path[plen] = 0;
    out->method = post ? SL_HTTP_POST : head ? SL_HTTP_HEAD : SL_HTTP_GET;
    out->head = head;
    out->keep_alive = http11;
    bool conn_close = false, conn_keep = false, host = false, has_cl = false, over = false;
    size_t max_body = post ? lim->max_body : 0, cl = 0;
    /* Headers: name ":" OWS value OWS CRLF, until the final CRLF. */
    p = eol + 2;
    while (p < hend) {
        eol = memchr(p, '\r', (size_t)(hend - p));
        if (!eol || eol[1] != '\n') return -400;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return -400; /* also refuses obs-fold (a leading SP) */
        for (const char *q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q)) return -400;
        const char *v = colon + 1, *ve = eol;
        for (const char *q = v; q < ve; q++) {
            unsigned char c = (unsigned char)*q;
            if ((c < 0x20 && c != '\t') || c == 0x7f) return -400; /* NUL, bare LF or CR */
        }
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t nlen = (size_t)(colon - p), vl = (size_t)(ve - v);
        if (out->nheaders >= SL_HTTP_MAX_HEADERS) return -431;
        out->headers[out->nheaders++] = (sl_http_hdr){p, nlen, v, vl};
        if (name_is(p, nlen, "Authorization")) {
            if (out->has_auth || vl > SL_HTTP_MAX_AUTH) return -400;
            memcpy(out->auth, v, vl);
            out->auth[vl] = 0;
            out->has_auth = true;
        } else if (name_is(p, nlen, "Connection")) {
            if (list_has(v, vl, "close")) conn_close = true;
            if (list_has(v, vl, "keep-alive")) conn_keep = true;
        } else if (name_is(p, nlen, "Content-Length")) {
            /* One, digits only: two lengths (even equal) or "+5", "5, 5", " 0x5" are how a
             * request smuggles a second one past a proxy that reads them differently. Without
             * a body allowed, only 0. */
            if (has_cl || !content_length(v, vl, max_body, &cl, &over)) return -400;
            if (!post && (vl != 1 || v[0] != '0')) return -400;
            has_cl = true;
        } else if (name_is(p, nlen, "Transfer-Encoding")) {
            return -400;
        } else if (name_is(p, nlen, "Host")) {
            if (host) return -400;
            host = true;
        }
        p = eol + 2;
    }
    if (http11 && !host) return -400; /* RFC 9112 3.2 */
    if (!get && !head && !post) return -405;
    if (post) {
        if (!has_cl) return -411;
        if (over) return -413;
        out->content_length = cl;
    }
    if (conn_close)
        out->keep_alive = false;
    else if (!http11 && conn_keep)
        out->keep_alive = true;
    return (int)end;
}

int sl_http_parse(const char *buf, size_t len, sl_http_req *out) {
    return sl_http_parse_ex(buf, len, NULL, out);
}

const char *sl_http_header(const sl_http_req *r, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    for (int i = 0; i < r->nheaders; i++)
        if (r->headers[i].nlen == nl && !strncasecmp(r->headers[i].name, name, nl)) {
            if (vlen) *vlen = r->headers[i].vlen;
            return r->headers[i].value;
        }
    if (vlen) *vlen = 0;
    return NULL;
}

const char *sl_http_reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}
