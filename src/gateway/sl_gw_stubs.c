/* TEMPORARY (branch h14-gwdata): weak stand-ins for what sl_gateway.c and sl_gwaddr.c define on
 * main, so this branch links before they land. The real (strong) definitions win at link time;
 * delete this file when merging main. */
#include "gateway/sl_gateway.h"

__attribute__((weak)) void sl_gw_forward(sl_req *rq, const uint8_t *frame, size_t len,
                                         bool expect_response, sl_gw_resp_fn fn, void *arg) {
    (void)frame, (void)len, (void)expect_response, (void)fn, (void)arg;
    sl_req_fail(rq, "gateway forwarding not built");
}
__attribute__((weak)) void sl_gw_respond_body(sl_req *rq, const uint8_t *body, size_t len) {
    (void)body, (void)len;
    sl_req_fail(rq, "gateway forwarding not built");
}
__attribute__((weak)) const sl_xform_chain *sl_gw_chain(sl_gateway *g, sl_str topic) {
    (void)g, (void)topic;
    return NULL;
}
__attribute__((weak)) void sl_gw_req_begin(sl_req *rq, sl_wr *w) {
    sl_wr_init(w, rq->a, 256);
    sl_req_header_encode(w, &rq->h);
}
__attribute__((weak)) void sl_gwaddr_rewrite_produce(const sl_gwaddr *a, sl_arena *ar,
                                                     sl_produce_resp *m) {
    (void)a, (void)ar;
    m->node_endpoints_count = 0;
}
__attribute__((weak)) void sl_gwaddr_rewrite_fetch(const sl_gwaddr *a, sl_arena *ar,
                                                   sl_fetch_resp *m) {
    (void)a, (void)ar;
    m->node_endpoints_count = 0;
}
