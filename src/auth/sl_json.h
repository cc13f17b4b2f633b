/* A small strict JSON (RFC 8259) parser for JWT headers, claims and JWKS documents. Everything
 * it returns lives in the caller's arena. Refused: trailing commas, comments, leading zeros,
 * bad escapes, unpaired surrogates, invalid UTF-8, control characters in strings, duplicate
 * object keys (a signed claim set must have one meaning), nesting deeper than max_depth, and
 * trailing data. Strings are unescaped and NUL-terminated, with their length (they may hold
 * "\u0000", so compare with the length). */
#ifndef SL_JSON_H
#define SL_JSON_H
#include <stdbool.h>
#include <stddef.h>

#include "base/sl_arena.h"

/* Members of one object; more is refused. */
#define SL_JSON_MAX_MEMBERS 1024

typedef enum {
    SL_JSON_NULL,
    SL_JSON_BOOL,
    SL_JSON_NUM,
    SL_JSON_STR,
    SL_JSON_ARR,
    SL_JSON_OBJ
} sl_json_type;

typedef struct sl_json sl_json;
struct sl_json {
    sl_json_type type;
    const char *key; /* member name when inside an object */
    size_t klen;
    bool b;
    double num;
    bool is_int;   /* NUM written without fraction or exponent */
    const char *s; /* STR */
    size_t slen;
    sl_json *child; /* ARR/OBJ: first element */
    size_t n;       /* ARR/OBJ: element count */
    sl_json *next;
};

/* Parses exactly one JSON value filling all of text[0..len). NULL on error with a short reason
 * in err (never quoting the input). The tree is owned by `a`. */
sl_json *sl_json_parse(sl_arena *a, const char *text, size_t len, int max_depth, char *err,
                       size_t elen);
/* Member `key` of object `o`, or NULL (also when o is not an object). */
const sl_json *sl_json_get(const sl_json *o, const char *key);
/* True when v is a string equal to the n bytes at s. */
bool sl_json_str_eq(const sl_json *v, const char *s, size_t n);

#endif
