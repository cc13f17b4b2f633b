#include "sl_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} chunk;

/* A buffer handed over by sl_arena_adopt, freed with the arena. */
typedef struct adopted {
    struct adopted *next;
    void *p;
    size_t n;
} adopted;

struct sl_arena {
    chunk *head;
    adopted *owned;
    size_t chunk_size;
    size_t total;
    int cleanse; /* wipe chunks before releasing them */
};

static chunk *chunk_new(size_t cap) {
    chunk *c = malloc(sizeof(chunk) + cap);
    if (!c) return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

sl_arena *sl_arena_new(size_t chunk_size) {
    sl_arena *a = malloc(sizeof *a);
    if (!a) return NULL;
    a->chunk_size = chunk_size < 256 ? 256 : chunk_size;
    a->total = 0;
    a->cleanse = 0;
    a->owned = NULL;
    a->head = chunk_new(a->chunk_size);
    if (!a->head) {
        free(a);
        return NULL;
    }
    return a;
}

void sl_arena_set_cleanse(sl_arena *a) { a->cleanse = 1; }

static void chunk_free(const sl_arena *a, chunk *c) {
    if (a->cleanse) explicit_bzero(c->data, c->used);
    free(c);
}

/* The adopted buffers' records live in the chunks: released before them. */
static void release_owned(sl_arena *a) {
    for (adopted *o = a->owned; o; o = o->next) {
        if (a->cleanse) explicit_bzero(o->p, o->n);
        free(o->p);
    }
    a->owned = NULL;
}

void sl_arena_free(sl_arena *a) {
    if (!a) return;
    release_owned(a);
    for (chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        chunk_free(a, c);
    }
    free(a);
}

void sl_arena_reset(sl_arena *a) {
    /* The head is a regular chunk (large allocations sit behind it): it is the one kept. */
    release_owned(a);
    chunk *h = a->head;
    for (chunk *c = h->next, *n; c; c = n) {
        n = c->next;
        chunk_free(a, c);
    }
    if (a->cleanse) explicit_bzero(h->data, h->used);
    h->next = NULL;
    h->used = 0;
    a->total = 0;
}

void *sl_arena_alloc(sl_arena *a, size_t n) {
    if (n > SIZE_MAX - 15) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    chunk *c = a->head;
    if (c->cap - c->used < need) {
        /* Large allocations get a chunk of their own behind the head so the head's free space
         * stays usable for the small ones that follow. */
        if (need > a->chunk_size / 4) {
            chunk *big = chunk_new(need);
            if (!big) return NULL;
            big->used = need;
            big->next = c->next;
            c->next = big;
            a->total += need;
            return big->data;
        }
        chunk *nc = chunk_new(a->chunk_size);
        if (!nc) return NULL;
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->total += need;
    return p;
}

void *sl_arena_calloc(sl_arena *a, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = sl_arena_alloc(a, n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *sl_arena_dup(sl_arena *a, const void *p, size_t n) {
    void *d = sl_arena_alloc(a, n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

bool sl_arena_adopt(sl_arena *a, void *p, size_t n) {
    adopted *o = sl_arena_alloc(a, sizeof *o);
    if (!o) return false;
    *o = (adopted){a->owned, p, n};
    a->owned = o;
    a->total += n;
    return true;
}

size_t sl_arena_used(const sl_arena *a) { return a->total; }
