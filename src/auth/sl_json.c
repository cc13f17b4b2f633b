#include "sl_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_text.h"

typedef struct parser {
    const char *p, *end;
    sl_arena *a;
    int depth, max_depth;
    const char *err;
} parser;

static sl_json *fail(parser *ps, const char *why) {
    if (!ps->err) ps->err = why;
    return NULL;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* At the opening quote. The unescaped form is never longer than the escaped one. */
static bool parse_string(parser *ps, const char **out, size_t *olen) {
    const char *p = ps->p + 1;
    const char *q = p;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) return fail(ps, "unterminated string"), false;
    char *buf = sl_arena_alloc(ps->a, (size_t)(q - p) + 1);
    if (!buf) return fail(ps, "out of memory"), false;
    size_t o = 0;
    while (p < q) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) return fail(ps, "control character in string"), false;
        if (c != '\\') {
            size_t n = sl_utf8_len((const unsigned char *)p, (size_t)(q - p));
            if (!n) return fail(ps, "invalid UTF-8"), false;
            memcpy(buf + o, p, n);
            o += n;
            p += n;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case '"':
            buf[o++] = '"';
            break;
        case '\\':
            buf[o++] = '\\';
            break;
        case '/':
            buf[o++] = '/';
            break;
        case 'b':
            buf[o++] = '\b';
            break;
        case 'f':
            buf[o++] = '\f';
            break;
        case 'n':
            buf[o++] = '\n';
            break;
        case 'r':
            buf[o++] = '\r';
            break;
        case 't':
            buf[o++] = '\t';
            break;
        case 'u': {
            int cp = q - p >= 4 ? hex4(p) : -1;
            if (cp < 0) return fail(ps, "bad \\u escape"), false;
            p += 4;
            unsigned u = (unsigned)cp;
            if (u >= 0xdc00 && u <= 0xdfff) return fail(ps, "unpaired surrogate"), false;
            if (u >= 0xd800 && u <= 0xdbff) {
                int lo = q - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                if (lo < 0xdc00 || lo > 0xdfff) return fail(ps, "unpaired surrogate"), false;
                u = 0x10000 + ((u - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
                p += 6;
            }
            o += sl_utf8_put((unsigned char *)buf + o, u);
            break;
        }
        default:
            return fail(ps, "bad escape"), false;
        }
    }
    buf[o] = 0;
    *out = buf;
    *olen = o;
    ps->p = q + 1;
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static sl_json *parse_number(parser *ps, sl_json *v) {
    const char *s = ps->p, *p = s;
    bool is_int = true;
    if (p < ps->end && *p == '-') p++;
    if (p >= ps->end || !is_digit(*p)) return fail(ps, "bad number");
    if (*p == '0')
        p++;
    else
        while (p < ps->end && is_digit(*p)) p++;
    if (p < ps->end && *p == '.') {
        is_int = false;
        p++;
        if (p >= ps->end || !is_digit(*p)) return fail(ps, "bad number");
        while (p < ps->end && is_digit(*p)) p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || !is_digit(*p)) return fail(ps, "bad number");
        while (p < ps->end && is_digit(*p)) p++;
    }
    size_t n = (size_t)(p - s);
    if (n > 64) return fail(ps, "number too long");
    char tmp[65];
    memcpy(tmp, s, n);
    tmp[n] = 0;
    v->type = SL_JSON_NUM;
    v->num = strtod(tmp, NULL);
    v->is_int = is_int;
    ps->p = p;
    return v;
}

static bool lit(parser *ps, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n)) return false;
    ps->p += n;
    return true;
}

static sl_json *parse_value(parser *ps);

static sl_json *parse_container(parser *ps, sl_json *v, bool obj) {
    if (++ps->depth > ps->max_depth) return fail(ps, "nesting too deep");
    v->type = obj ? SL_JSON_OBJ : SL_JSON_ARR;
    ps->p++;
    skip_ws(ps);
    sl_json **tail = &v->child;
    if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen = 0;
        if (obj) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected member name");
            if (!parse_string(ps, &key, &klen)) return NULL;
            /* The duplicate check is quadratic; a bound keeps it cheap. */
            if (v->n >= SL_JSON_MAX_MEMBERS) return fail(ps, "too many members");
            for (sl_json *m = v->child; m; m = m->next)
                if (m->klen == klen && !memcmp(m->key, key, klen))
                    return fail(ps, "duplicate member name");
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
            ps->p++;
        }
        sl_json *e = parse_value(ps);
        if (!e) return NULL;
        e->key = key;
        e->klen = klen;
        *tail = e;
        tail = &e->next;
        v->n++;
        skip_ws(ps);
        if (ps->p >= ps->end) return fail(ps, "unterminated container");
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == (obj ? '}' : ']')) {
            ps->p++;
            ps->depth--;
            return v;
        }
        return fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static sl_json *parse_value(parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "unexpected end");
    sl_json *v = sl_arena_calloc(ps->a, 1, sizeof *v);
    if (!v) return fail(ps, "out of memory");
    switch (*ps->p) {
    case '{':
        return parse_container(ps, v, true);
    case '[':
        return parse_container(ps, v, false);
    case '"':
        v->type = SL_JSON_STR;
        return parse_string(ps, &v->s, &v->slen) ? v : NULL;
    case 't':
    case 'f':
        v->type = SL_JSON_BOOL;
        v->b = *ps->p == 't';
        return lit(ps, v->b ? "true" : "false") ? v : fail(ps, "bad literal");
    case 'n':
        v->type = SL_JSON_NULL;
        return lit(ps, "null") ? v : fail(ps, "bad literal");
    default:
        return parse_number(ps, v);
    }
}

sl_json *sl_json_parse(sl_arena *a, const char *text, size_t len, int max_depth, char *err,
                       size_t elen) {
    parser ps = {.p = text, .end = text + len, .a = a, .max_depth = max_depth};
    sl_json *v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) v = fail(&ps, "trailing data");
    }
    if (!v && err && elen) snprintf(err, elen, "invalid JSON: %s", ps.err ? ps.err : "?");
    return v;
}

const sl_json *sl_json_get(const sl_json *o, const char *key) {
    if (!o || o->type != SL_JSON_OBJ) return NULL;
    size_t n = strlen(key);
    for (const sl_json *m = o->child; m; m = m->next)
        if (m->klen == n && !memcmp(m->key, key, n)) return m;
    return NULL;
}

bool sl_json_str_eq(const sl_json *v, const char *s, size_t n) {
    return v && v->type == SL_JSON_STR && v->slen == n && !memcmp(v->s, s, n);
}
