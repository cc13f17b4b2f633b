/* Hand-written support for the generated codecs in src/proto/gen, plus the request and response
 * headers. The helpers fold the classic/compact (flexible) choice and the nullability check into
 * one call so generated code stays one line per field. */
#ifndef SL_PROTO_H
#define SL_PROTO_H
#include <stdbool.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_err.h"

/* Request header v1/v2. client_id is a view into the reader's buffer. */
typedef struct sl_req_header {
    int16_t api_key, api_version;
    int32_t correlation_id;
    sl_str client_id;
} sl_req_header;

/* Reads api key, version, correlation id and client_id (always a classic nullable string, even
 * in header v2), then skips the header's tagged fields when the API/version is flexible per
 * sl_api_flexible() (unknown keys: header v1). Returns r->err; no allocation. */
sl_err sl_req_header_decode(sl_rd *r, sl_req_header *h);
/* Writes the header as a client would (v2 for flexible API/versions, else v1). */
void sl_req_header_encode(sl_wr *w, const sl_req_header *h);
/* Writes response header v1 (correlation id + empty tagged fields) for flexible versions, else
 * v0. ApiVersions responses always use v0 so clients can parse them before negotiating. */
void sl_resp_header_encode(sl_wr *w, int16_t api_key, int16_t api_version, int32_t correlation_id);
/* The inverse of sl_resp_header_encode, for clients and tests. Returns r->err. */
sl_err sl_resp_header_decode(sl_rd *r, int16_t api_key, int16_t api_version,
                             int32_t *correlation_id);

/* ---- Decoding helpers used by generated code ---- */

static inline sl_str sl_pr_str(sl_rd *r, bool fx, bool nullable) {
    sl_str s = fx ? sl_rd_compact_string(r) : sl_rd_string(r);
    if (s.len < 0 && !nullable) sl_rd_fail(r);
    return s;
}
static inline sl_bytes sl_pr_bytes(sl_rd *r, bool fx, bool nullable) {
    sl_bytes b = fx ? sl_rd_compact_bytes(r) : sl_rd_bytes(r);
    if (b.len < 0 && !nullable) sl_rd_fail(r);
    return b;
}
/* Array count, believed only if `n` elements of at least `min_elem` bytes fit in what is left. */
static inline int32_t sl_pr_count(sl_rd *r, bool fx, bool nullable, size_t min_elem) {
    int32_t n = fx ? sl_rd_compact_count(r, min_elem) : sl_rd_count(r, min_elem);
    if (n < 0 && !nullable) sl_rd_fail(r);
    return r->err ? 0 : n;
}
/* Zeroed room for `n` elements from the arena; NULL for n <= 0 or on error (SL_ENOMEM). */
static inline void *sl_pr_alloc(sl_rd *r, sl_arena *a, int32_t n, size_t size) {
    if (r->err || n <= 0) return NULL;
    void *p = sl_arena_calloc(a, (size_t)n, size);
    if (!p) r->err = SL_ENOMEM;
    return p;
}
/* Checks the version against a message's defined range before any byte is read. */
static inline bool sl_pr_version_ok(sl_err *err, int16_t v, int16_t lo, int16_t hi) {
    if (v >= lo && v <= hi) return true;
    if (!*err) *err = SL_EVERSION;
    return false;
}
/* Reads one tagged field's size and returns a reader over exactly its bytes. */
static inline sl_rd sl_pr_tag(sl_rd *r) {
    uint32_t n = sl_rd_uvarint(r);
    const uint8_t *p = sl_rd_take(r, n);
    if (!p) return (sl_rd){NULL, NULL, SL_EPROTO};
    return sl_rd_init(p, n);
}
/* A known tagged field must fill its declared size exactly. */
static inline void sl_pr_tag_end(sl_rd *r, const sl_rd *t) {
    if (r->err) return;
    if (t->err)
        r->err = t->err;
    else if (t->p != t->end)
        r->err = SL_EPROTO;
}
/* Skips a whole tagged-field section (for structs with no tagged fields we know). */
void sl_pr_skip_tags(sl_rd *r);

/* ---- Encoding helpers ---- */

/* A null given for a non-nullable field is written as empty rather than as an invalid null. */
static inline void sl_pw_str(sl_wr *w, bool fx, bool nullable, sl_str s) {
    if (s.len < 0 && !nullable) s = (sl_str){NULL, 0};
    if (fx)
        sl_wr_compact_string(w, s);
    else
        sl_wr_string(w, s);
}
/* Writes a bytes or records field's length prefix; returns the bytes that must follow it. */
static inline sl_bytes sl_pw_bytes_len(sl_wr *w, bool fx, bool nullable, sl_bytes b) {
    if (b.len < 0 && !nullable) b = (sl_bytes){NULL, 0};
    if (fx)
        sl_wr_compact_bytes_len(w, b.len);
    else
        sl_wr_bytes_len(w, b.len);
    return b;
}
static inline void sl_pw_bytes(sl_wr *w, bool fx, bool nullable, sl_bytes b) {
    b = sl_pw_bytes_len(w, fx, nullable, b);
    if (b.len > 0) sl_wr_raw(w, b.p, (size_t)b.len);
}
/* Record data: like bytes, but a writer with references enabled sends large sets by reference
 * (the records of a Fetch response are not copied into the response buffer). Only records:
 * other bytes may point at state that changes before the response is written. */
static inline void sl_pw_records(sl_wr *w, bool fx, bool nullable, sl_bytes b) {
    b = sl_pw_bytes_len(w, fx, nullable, b);
    if (b.len > 0) sl_wr_raw_ref(w, b.p, (size_t)b.len);
}
/* Writes an array count and returns how many elements to write after it. */
static inline int32_t sl_pw_count(sl_wr *w, bool fx, bool nullable, int32_t n) {
    if (n < 0 && !nullable) n = 0;
    if (fx)
        sl_wr_compact_count(w, n);
    else
        sl_wr_count(w, n);
    return n < 0 ? 0 : n;
}
/* Starts a tagged field: writes the tag and returns the mark sl_pw_tag_end() needs to insert
 * the field's size in front of its data. */
static inline size_t sl_pw_tag_begin(sl_wr *w, uint32_t tag) {
    sl_wr_uvarint(w, tag);
    return w->len;
}
void sl_pw_tag_end(sl_wr *w, size_t mark);

#endif
