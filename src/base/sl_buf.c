#include "sl_buf.h"

void sl_wr_init(sl_wr *w, sl_arena *a, size_t initial) {
    w->a = a;
    w->len = 0;
    w->err = SL_OK;
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
