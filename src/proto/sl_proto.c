#include "proto/sl_proto.h"

#include "proto/gen/sl_msgs.h"

void sl_pr_skip_tags(sl_rd *r) {
    uint32_t n = sl_rd_uvarint(r);
    /* Each field costs at least two bytes, so a huge count fails on the input, not the CPU. */
    for (uint32_t i = 0; i < n && !r->err; i++) {
        (void)sl_rd_uvarint(r);
        sl_rd_skip(r, sl_rd_uvarint(r));
    }
}

void sl_pw_tag_end(sl_wr *w, size_t mark) {
    if (w->err) return;
    size_t len = w->len - mark;
    /* Referenced ranges inside the field count towards its size and move with its bytes. */
    int first = w->nrefs;
    while (first > 0 && w->refs[first - 1].at >= mark) first--;
    for (int i = first; i < w->nrefs; i++) len += w->refs[i].n;
    if (len > UINT32_MAX) {
        w->err = SL_EINVAL;
        return;
    }
    size_t k = sl_uvarint_size(len);
    if (!sl_wr_reserve(w, k)) return;
    /* The size precedes the data but is only known after it, so slide the data over. */
    memmove(w->buf + mark + k, w->buf + mark, w->len - mark);
    for (int i = first; i < w->nrefs; i++) w->refs[i].at += k;
    size_t end = w->len + k;
    w->len = mark;
    sl_wr_uvarint(w, (uint32_t)len);
    w->len = end;
}

sl_err sl_req_header_decode(sl_rd *r, sl_req_header *h) {
    h->api_key = sl_rd_i16(r);
    h->api_version = sl_rd_i16(r);
    h->correlation_id = sl_rd_i32(r);
    h->client_id = sl_rd_string(r);
    if (!r->err && sl_api_flexible(h->api_key, h->api_version)) sl_pr_skip_tags(r);
    return r->err;
}

void sl_req_header_encode(sl_wr *w, const sl_req_header *h) {
    sl_wr_i16(w, h->api_key);
    sl_wr_i16(w, h->api_version);
    sl_wr_i32(w, h->correlation_id);
    sl_wr_string(w, h->client_id);
    if (sl_api_flexible(h->api_key, h->api_version)) sl_wr_uvarint(w, 0);
}

static bool resp_header_v1(int16_t api_key, int16_t api_version) {
    return api_key != SL_API_API_VERSIONS && sl_api_flexible(api_key, api_version);
}

void sl_resp_header_encode(sl_wr *w, int16_t api_key, int16_t api_version, int32_t correlation_id) {
    sl_wr_i32(w, correlation_id);
    if (resp_header_v1(api_key, api_version)) sl_wr_uvarint(w, 0);
}

sl_err sl_resp_header_decode(sl_rd *r, int16_t api_key, int16_t api_version,
                             int32_t *correlation_id) {
    *correlation_id = sl_rd_i32(r);
    if (resp_header_v1(api_key, api_version)) sl_pr_skip_tags(r);
    return r->err;
}
