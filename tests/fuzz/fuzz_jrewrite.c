/* libFuzzer target for the JSON rewriter (src/protect/sl_jrewrite.h), which reads every record
 * value of a protected topic. Input: byte 0 picks paths from a fixed list (one bit each), byte 1
 * the callback's behaviour, the rest is the document (an exact-size heap copy, so ASan sees any
 * read past its end). Whatever the bytes:
 * - validity agrees with src/auth/sl_json.c's parser, except for what that one refuses on
 *   purpose (duplicate names, more than SL_JSON_MAX_MEMBERS members, numbers over 64 bytes);
 * - the rewrite succeeds exactly when the document is valid (unless the callback fails, whose
 *   error is then returned), and fails with SL_ECORRUPT or SL_ETOOLARGE otherwise;
 * - every matched value handed to the callback is a valid JSON text inside the input, and a
 *   string's unescaped contents are UTF-8 that sl_json_quote writes back to the same contents;
 * - unchanged means the input pointer itself; replacing every value by its own text gives the
 *   input byte for byte; any other successful rewrite (replacements, removals) is valid JSON,
 *   and a second pass over it meets, in order, exactly what the first one left: the kept values,
 *   the replacements, null for a removed array element, nothing for a removed member. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_json.h"
#include "protect/sl_jrewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *k_paths[8] = {"a",     "a.b",  "items[*].pan", "[*]",
                                 "[*].a", "a[*]", "b.c.d",        "x[*][*].y"};
static const char *k_reps[] = {"null", "0", "\"r\"", "{\"k\":[1,{}]}", "[]", "-1.5e+3"};

enum { MODE_KEEP, MODE_SELF, MODE_MIX, MODE_FAIL, MODE_CHECK };

#define MAX_SEEN 256

typedef struct fz {
    int mode;
    unsigned salt;
    int calls, fail_at;
    const uint8_t *in, *end;
    sl_arena *a;
    const sl_jpath *paths;
    /* What the second pass must meet: the text left in place of each matched value. */
    int nseen, nleft, checked;
    const uint8_t *left[MAX_SEEN];
    size_t leftlen[MAX_SEEN];
} fz;

static void leave(fz *z, const uint8_t *p, size_t n) {
    if (z->nleft < MAX_SEEN) {
        z->left[z->nleft] = p;
        z->leftlen[z->nleft] = n;
    }
    z->nleft++;
}

static sl_err fz_fn(void *arg, int path, const sl_jval *v, sl_jrw_out *out) {
    fz *z = arg;
    z->calls++;
    if (path < 0 || path >= 8 || !v->rawlen || v->raw < z->in || v->raw + v->rawlen > z->end)
        abort();
    if (!sl_json_valid(v->raw, v->rawlen)) abort();
    if (z->mode == MODE_CHECK) {
        int i = z->checked++;
        if (i < MAX_SEEN &&
            (i >= z->nleft || z->leftlen[i] != v->rawlen || memcmp(z->left[i], v->raw, v->rawlen)))
            abort();
        out->action = SL_JRW_KEEP;
        return SL_OK;
    }
    static const char first[] = {
        [SL_JV_OBJ] = '{', [SL_JV_ARR] = '[', [SL_JV_STR] = '"', [SL_JV_NULL] = 'n'};
    if ((v->type == SL_JV_OBJ || v->type == SL_JV_ARR || v->type == SL_JV_STR ||
         v->type == SL_JV_NULL) &&
        v->raw[0] != first[v->type])
        abort();
    uint8_t *q = NULL;
    size_t qn = 0;
    if (v->type == SL_JV_STR) {
        if (sl_json_quote(z->a, v->str, v->slen, &q, &qn) != SL_OK) abort();
        char err[96];
        sl_json *j = sl_json_parse(z->a, (const char *)q, qn, 4, err, sizeof err);
        if (!j || j->type != SL_JSON_STR || j->slen != v->slen || memcmp(j->s, v->str, v->slen))
            abort();
    }
    if (z->mode == MODE_FAIL && z->calls == z->fail_at) return SL_EPOLICY;
    out->action = SL_JRW_KEEP;
    if (z->mode == MODE_SELF) {
        out->action = SL_JRW_REPLACE;
        out->json = v->raw;
        out->len = v->rawlen;
    } else if (z->mode != MODE_KEEP) {
        unsigned h = z->salt + (unsigned)z->calls * 31u + v->raw[v->rawlen - 1] + (unsigned)path;
        switch (h % 4) {
        case 0:
            break;
        case 1:
            out->action = SL_JRW_REMOVE;
            break;
        case 2:
            out->action = SL_JRW_REPLACE;
            out->json = q ? q : (const uint8_t *)"true";
            out->len = q ? qn : 4;
            break;
        default:
            out->action = SL_JRW_REPLACE;
            out->json = (const uint8_t *)k_reps[h / 4 % (sizeof k_reps / sizeof k_reps[0])];
            out->len = strlen((const char *)out->json);
            break;
        }
    }
    const sl_jpath *pa = &z->paths[path];
    if (out->action == SL_JRW_KEEP)
        leave(z, v->raw, v->rawlen);
    else if (out->action == SL_JRW_REPLACE)
        leave(z, out->json, out->len);
    else if (pa->seg[pa->nseg - 1].any_index) /* an array element: null */
        leave(z, (const uint8_t *)"null", 4);
    return SL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    sl_jpath paths[8];
    int np = 0;
    for (int i = 0; i < 8; i++)
        if (data[0] & (1u << i)) {
            if (sl_jpath_parse(k_paths[i], strlen(k_paths[i]), &paths[np], NULL) != SL_OK) abort();
            np++;
        }
    /* Path indexes seen by the callback are positions in `paths`, within 0..7 either way. */
    size_t n = size - 2;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    if (n) memcpy(buf, data + 2, n);
    sl_arena *a = sl_arena_new(4096);
    if (!a) {
        free(buf);
        return 0;
    }

    bool valid = sl_json_valid(buf, n);
    char err[128] = "";
    bool theirs = sl_json_parse(a, (const char *)buf, n, SL_JRW_MAX_DEPTH, err, sizeof err) != NULL;
    if (theirs && !valid) abort();
    if (!theirs && valid && !strstr(err, "duplicate member name") &&
        !strstr(err, "too many members") && !strstr(err, "number too long"))
        abort();

    fz z = {.mode = data[1] & 3,
            .salt = data[1] >> 2,
            .fail_at = (data[1] >> 2) % 4 + 1,
            .in = buf,
            .end = buf + n,
            .a = a,
            .paths = paths};
    uint8_t *out = NULL;
    size_t olen = 0;
    bool changed = false;
    sl_err e = sl_jrewrite(paths, np, buf, n, a, fz_fn, &z, &out, &olen, &changed);
    if (e == SL_EPOLICY) {
        if (z.mode != MODE_FAIL || z.calls != z.fail_at) abort();
    } else if (e != SL_OK) {
        if (valid || (e != SL_ECORRUPT && e != SL_ETOOLARGE)) abort();
    } else {
        if (!valid) abort();
        if (!changed && (out != buf || olen != n)) abort();
        if (changed && (out == buf || !sl_json_valid(out, olen))) abort();
        if (z.mode == MODE_KEEP && changed) abort();
        if (z.mode == MODE_SELF && (changed != (z.calls > 0) || olen != n || memcmp(out, buf, n)))
            abort();
        /* The second pass, over an exact-size copy of the output. */
        uint8_t *o2 = malloc(olen ? olen : 1);
        if (o2) {
            if (olen) memcpy(o2, out, olen);
            z.mode = MODE_CHECK;
            z.in = o2;
            z.end = o2 + olen;
            z.calls = 0;
            uint8_t *out2;
            size_t olen2;
            bool changed2;
            if (sl_jrewrite(paths, np, o2, olen, a, fz_fn, &z, &out2, &olen2, &changed2) != SL_OK ||
                changed2 || z.checked != z.nleft)
                abort();
            free(o2);
        }
    }
    sl_arena_free(a);
    free(buf);
    return 0;
}
