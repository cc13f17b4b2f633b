#include "sl_buf.h"

#include <stdarg.h>
#include <stdio.h>

void sl_wr_init(sl_wr *w, sl_arena *a, size_t initial) {
    w->a = a;
    w->len = 0;
    w->err = SL_OK;
    w->ref_min = 0;
    w->refs = NULL;
    w->nrefs = w->refcap = 0;
    w->cap = initial < 64 ? 64 : initial;
    w->buf = sl_arena_alloc(a, w->cap);
    if (!w->buf) {
        w->cap = 0;
        w->err = SL_ENOMEM;
    }
}

uint8_t *sl_wr_reserve(sl_wr *w, size_t n) {
    if (w->err) return NULL;
    if (w->cap - w->len >= n) return w->buf + w->len;
    size_t cap = w->cap ? w->cap : 64;
    while (cap - w->len < n) {
        if (cap > SIZE_MAX / 2) {
            w->err = SL_ENOMEM;
            return NULL;
        }
        cap *= 2;
    }
    uint8_t *nb = sl_arena_alloc(w->a, cap);
    if (!nb) {
        w->err = SL_ENOMEM;
        return NULL;
    }
    if (w->len) memcpy(nb, w->buf, w->len);
    w->buf = nb;
    w->cap = cap;
    return w->buf + w->len;
}

void sl_wr_enable_refs(sl_wr *w, size_t min) { w->ref_min = min ? min : 1; }

void sl_wr_raw_ref(sl_wr *w, const void *p, size_t n) {
    if (!w->ref_min || n < w->ref_min) {
        sl_wr_raw(w, p, n);
        return;
    }
    if (w->err) return;
    if (w->nrefs == w->refcap) {
        int cap = w->refcap ? w->refcap * 2 : 8;
        sl_wr_ref *nr = cap > INT32_MAX / 4 ? NULL : sl_arena_alloc(w->a, (size_t)cap * sizeof *nr);
        if (!nr) {
            w->err = SL_ENOMEM;
            return;
        }
        if (w->nrefs) memcpy(nr, w->refs, (size_t)w->nrefs * sizeof *nr);
        w->refs = nr;
        w->refcap = cap;
    }
    w->refs[w->nrefs++] = (sl_wr_ref){w->len, p, n};
}

int sl_wr_iov(sl_wr *w, struct iovec **out) {
    if (w->err) return -1;
    struct iovec *v = sl_arena_alloc(w->a, ((size_t)w->nrefs * 2 + 1) * sizeof *v);
    if (!v) return -1;
    int n = 0;
    size_t from = 0;
    for (int i = 0; i < w->nrefs; i++) {
        const sl_wr_ref *r = &w->refs[i];
        if (r->at > from) v[n++] = (struct iovec){w->buf + from, r->at - from};
        v[n++] = (struct iovec){(void *)r->p, r->n};
        from = r->at;
    }
    if (w->len > from || n == 0) v[n++] = (struct iovec){w->buf + from, w->len - from};
    *out = v;
    return n;
}

sl_str sl_str_printf(sl_arena *a, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0) return SL_STR_NULL;
    if ((size_t)len >= sizeof buf) len = sizeof buf - 1;
    char *p = sl_arena_dup(a, buf, (size_t)len + 1);
    return p ? (sl_str){p, len} : SL_STR_NULL;
}
