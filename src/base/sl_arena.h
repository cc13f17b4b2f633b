/* Per-request arena: everything decoded from a frame and everything encoded for its response is
 * allocated here and released in one sl_arena_free(). Nothing in an arena outlives it. */
#ifndef SL_ARENA_H
#define SL_ARENA_H
#include <stdbool.h>
#include <stddef.h>

typedef struct sl_arena sl_arena;

/* Returns a new arena whose first chunk holds `chunk` bytes, or NULL. Caller owns it. */
sl_arena *sl_arena_new(size_t chunk);
/* Frees the arena and everything allocated from it. NULL is allowed. */
void sl_arena_free(sl_arena *a);
/* 16-byte aligned memory owned by the arena, or NULL when out of memory. */
void *sl_arena_alloc(sl_arena *a, size_t n);
/* Like sl_arena_alloc but zeroed. */
void *sl_arena_calloc(sl_arena *a, size_t n, size_t size);
/* Copies `n` bytes into the arena. */
void *sl_arena_dup(sl_arena *a, const void *p, size_t n);
/* Hands `p` (from malloc, `n` bytes) to the arena, which frees it (wiped first under
 * sl_arena_set_cleanse) with everything else: for a buffer filled elsewhere that a request's
 * answer goes on pointing into, so it need not be copied. False when out of memory: then `p`
 * is still the caller's. */
bool sl_arena_adopt(sl_arena *a, void *p, size_t n);
/* Forgets everything allocated so far and keeps one chunk for what comes next: for scratch
 * arenas reused item after item (field protection rewrites each record in one), so a loop's
 * memory stays the same few hot pages instead of growing with the items. Every pointer the
 * arena handed out becomes invalid. */
void sl_arena_reset(sl_arena *a);
/* From now on every byte the arena handed out is wiped (explicit_bzero) before its memory is
 * released by sl_arena_reset or sl_arena_free: for arenas that hold decrypted data. */
void sl_arena_set_cleanse(sl_arena *a);
/* Bytes handed out so far (for limits and metrics). */
size_t sl_arena_used(const sl_arena *a);

#endif
