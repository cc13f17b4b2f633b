/* JSON field paths and a streaming rewriter: the one place field protection reads and writes
 * JSON record contents (docs/field-protection.md, "Paths").
 *
 * A path names fields inside one JSON document: member names separated by ".", and "[*]" for
 * every element of an array: "card.number", "items[*].pan", "a[*][*].b". A member name is 1..128
 * bytes of [A-Za-z0-9_$@:/+-] (no dots, brackets, quotes or spaces: names outside that set cannot
 * be protected in this version). A path matches a value wherever the document has it; absent
 * fields are not an error.
 *
 * The rewriter makes one pass over the input: it validates the whole document strictly (RFC 8259:
 * no trailing commas, comments, leading zeros, bad escapes, unpaired surrogates, invalid UTF-8 or
 * control characters in strings, nothing after the value; nesting at most SL_JRW_MAX_DEPTH) and
 * copies it to the output, asking a callback what to put in place of every value a path
 * matches. Everything it does not replace is copied byte for byte (whitespace, key order, number
 * spelling), so a record that no path touches is returned as the same pointer. Duplicate keys
 * are not refused (they are rewritten alike). */
#ifndef SL_PROTECT_JREWRITE_H
#define SL_PROTECT_JREWRITE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"

#define SL_JPATH_MAX_SEGS 16
#define SL_JPATH_NAME_MAX 128
#define SL_JRW_MAX_DEPTH  64

typedef struct sl_jpath_seg {
    bool any_index; /* "[*]"; otherwise a member name */
    char name[SL_JPATH_NAME_MAX + 1];
    size_t nlen;
} sl_jpath_seg;

typedef struct sl_jpath {
    int nseg; /* >= 1 */
    sl_jpath_seg seg[SL_JPATH_MAX_SEGS];
} sl_jpath;

/* Parses a path (s[0..n), without a root such as "value."): SL_OK, or SL_EINVAL with a short
 * reason in why (static text: "empty member name", "unsupported character", ...). */
sl_err sl_jpath_parse(const char *s, size_t n, sl_jpath *out, const char **why);

typedef enum { SL_JV_NULL, SL_JV_BOOL, SL_JV_NUM, SL_JV_STR, SL_JV_ARR, SL_JV_OBJ } sl_jv_type;

/* A matched value, as views valid during the callback. */
typedef struct sl_jval {
    sl_jv_type type;
    const uint8_t *raw; /* the value's JSON text in the input */
    size_t rawlen;
    const uint8_t *str; /* SL_JV_STR: the unescaped UTF-8 contents (input or arena) */
    size_t slen;
} sl_jval;

typedef enum {
    SL_JRW_KEEP,    /* leave the value as it is */
    SL_JRW_REPLACE, /* write `json` (already valid JSON text, not empty: SL_EINVAL) instead */
    SL_JRW_REMOVE,  /* object member: drop the member (its key too); array element: null */
} sl_jrw_action;

typedef struct sl_jrw_out {
    sl_jrw_action action;
    const uint8_t *json; /* SL_JRW_REPLACE: the replacement text (the callback's memory, valid
                          * until the rewrite returns: the request arena) */
    size_t len;
} sl_jrw_out;

/* Called for each value a path matches, in document order, with the index of the first path
 * that matches it; the insides of a matched value are not visited. A non-zero return stops the
 * rewrite, which returns it. */
typedef sl_err (*sl_jrw_fn)(void *arg, int path, const sl_jval *v, sl_jrw_out *out);

/* Rewrites the JSON document in[0..len) against paths[0..npaths). On success *out and *outlen are
 * the result (in `a`, or `in` itself when nothing was replaced or removed: *changed false).
 * Errors: SL_ECORRUPT when the input is not one valid JSON document (nothing is called after
 * the error is found... the callback may already have run for earlier values: the caller
 * discards the output), SL_ETOOLARGE beyond SL_JRW_MAX_DEPTH, SL_ENOMEM, or the callback's.
 * Borrows everything; output owned by `a` (required when npaths > 0). Fuzzed
 * (tests/fuzz/fuzz_jrewrite.c). */
sl_err sl_jrewrite(const sl_jpath *paths, int npaths, const uint8_t *in, size_t len, sl_arena *a,
                   sl_jrw_fn fn, void *arg, uint8_t **out, size_t *outlen, bool *changed);

/* Writes s[0..n) as a JSON string literal (quotes, escapes for '"', '\\' and control
 * characters; other UTF-8 as is) into `a`. For callbacks building replacements. SL_EINVAL when s
 * is not UTF-8 (no JSON string could hold it). */
sl_err sl_json_quote(sl_arena *a, const uint8_t *s, size_t n, uint8_t **out, size_t *outlen);

/* True when s[0..n) is one valid JSON document (same rules as the rewriter). */
bool sl_json_valid(const uint8_t *s, size_t n);

#endif
