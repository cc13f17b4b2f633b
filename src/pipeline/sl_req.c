/* The request lifecycle and its one finish path (sl_req.h). */
#include "pipeline/sl_req.h"

#include <string.h>
#include <time.h>

#include "base/sl_logging.h"
#include "broker/sl_broker.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool sl_req_observers_add(sl_req_observers *o, sl_req_observer_fn fn, void *ctx) {
    if (o->n >= SL_REQ_MAX_OBSERVERS) return false;
    o->list[o->n++] = (sl_req_observer){fn, ctx};
    return true;
}

sl_req *sl_req_start(struct sl_broker *b, sl_conn *c, sl_pending *p, sl_arena *a,
                     const uint8_t *frame, size_t len) {
    sl_req *rq = sl_arena_calloc(a, 1, sizeof *rq);
    if (!rq) return NULL;
    rq->start_ns = now_ns();
    rq->b = b;
    rq->conn = c;
    rq->p = p;
    rq->a = a;
    rq->body = sl_rd_init(frame, len);
    rq->frame = frame;
    rq->frame_len = len;
    rq->bytes_in = (int64_t)len + 4;
    rq->conn_id = sl_conn_id(c);
    rq->h.api_key = -1;
    /* Copies: a parked request can outlive its connection, and observers still want these. */
    const char *peer = sl_conn_peer(c), *ln = sl_conn_listener(c);
    rq->peer = sl_arena_dup(a, peer, strlen(peer) + 1);
    rq->listener = sl_arena_dup(a, ln, strlen(ln) + 1);
    if (!rq->peer || !rq->listener) return NULL;
    return rq;
}

bool sl_req_finished(const sl_req *rq) { return rq->outcome != SL_REQ_OUT_NONE; }

/* The one way out: records the end, lets every observer see the request once. */
static bool finish(sl_req *rq, sl_req_outcome out, int64_t bytes_out) {
    if (rq->outcome != SL_REQ_OUT_NONE) {
        SL_ERROR("pipeline", "request completed twice", "api=%d corr=%d", rq->h.api_key,
                 rq->h.correlation_id);
        return false;
    }
    rq->outcome = out;
    rq->end_ns = now_ns();
    rq->bytes_out = bytes_out;
    const sl_req_observers *o = &rq->b->observers;
    for (int i = 0; i < o->n; i++) o->list[i].fn(o->list[i].ctx, rq);
    return true;
}

void sl_req_resp_begin(sl_req *rq, sl_wr *w) {
    sl_wr_init(w, rq->a, 1024);
    sl_wr_enable_refs(w, SL_RESP_REF_MIN);
    sl_resp_header_encode(w, rq->h.api_key, rq->h.api_version, rq->h.correlation_id);
}

void sl_req_respond(sl_req *rq, sl_wr *w) {
    struct iovec *iov = NULL;
    int n = w->err ? -1 : w->nrefs ? sl_wr_iov(w, &iov) : 0;
    if (w->err || n < 0) {
        SL_ERROR("pipeline", "response encoding failed", "api=%d err=%s", rq->h.api_key,
                 sl_errname(w->err ? w->err : SL_ENOMEM));
        rq->error = SL_KAFKA_UNKNOWN_SERVER_ERROR;
        if (!finish(rq, SL_REQ_OUT_CLOSED, 0)) return;
        rq->why = "response encoding failed";
        sl_conn *c = sl_pending_conn(rq->p);
        if (c) sl_conn_close(c, false, rq->why);
        sl_pending_noreply(rq->p);
        return;
    }
    if (!finish(rq, SL_REQ_OUT_RESPONSE, (int64_t)sl_wr_total(w) + 4)) return;
    if (!w->nrefs)
        sl_pending_respond(rq->p, w->buf, w->len);
    else
        sl_pending_respond_iov(rq->p, iov, n);
}

void sl_req_respond_raw(sl_req *rq, const uint8_t *data, size_t len) {
    if (!finish(rq, SL_REQ_OUT_RESPONSE, (int64_t)len + 4)) return;
    sl_pending_respond(rq->p, data, len);
}

void sl_req_noreply(sl_req *rq) {
    if (!finish(rq, SL_REQ_OUT_NOREPLY, 0)) return;
    sl_pending_noreply(rq->p);
}

void sl_req_fail(sl_req *rq, const char *why) {
    rq->why = why;
    if (!finish(rq, SL_REQ_OUT_CLOSED, 0)) return;
    sl_conn *c = sl_pending_conn(rq->p);
    SL_WARN("pipeline", "closing connection", "peer=%s api=%d version=%d reason=\"%s\"", rq->peer,
            rq->h.api_key, rq->h.api_version, why);
    if (c) sl_conn_close(c, true, why);
    sl_pending_noreply(rq->p);
}

void sl_req_hold(sl_req *rq) { sl_pending_hold(rq->p); }
void sl_req_release(sl_req *rq) { sl_pending_release(rq->p); }

bool sl_resp_mirror_(sl_arena *a, const void *rtopics, size_t rsize, int32_t rnt, size_t rcount_off,
                     void **otopics, int32_t *ont, size_t osize, size_t oparts_off,
                     size_t ocount_off, size_t psize) {
    int32_t nt = rnt > 0 ? rnt : 0;
    uint8_t *out = sl_arena_calloc(a, (size_t)(nt ? nt : 1), osize);
    if (!out) return false;
    for (int32_t i = 0; i < nt; i++) {
        int32_t np;
        memcpy(&np, (const uint8_t *)rtopics + (size_t)i * rsize + rcount_off, sizeof np);
        if (np < 0) np = 0;
        void *parts = sl_arena_calloc(a, (size_t)(np ? np : 1), psize);
        if (!parts) return false;
        uint8_t *ot = out + (size_t)i * osize;
        memcpy(ot + oparts_off, &parts, sizeof parts);
        memcpy(ot + ocount_off, &np, sizeof np);
    }
    *otopics = out;
    *ont = nt;
    return true;
}

sl_req_data *sl_req_data_add(sl_req *rq, sl_str topic, int32_t partition, bool write) {
    if (rq->ndata == rq->capdata) {
        int32_t cap = rq->capdata ? rq->capdata * 2 : 8;
        sl_req_data *d = sl_arena_alloc(rq->a, (size_t)cap * sizeof *d);
        if (!d) return NULL;
        if (rq->ndata) memcpy(d, rq->data, (size_t)rq->ndata * sizeof *d);
        rq->data = d;
        rq->capdata = cap;
    }
    char *name = topic.len > 0 ? sl_arena_dup(rq->a, topic.p, (size_t)topic.len) : NULL;
    if (topic.len > 0 && !name) return NULL;
    sl_req_data *e = &rq->data[rq->ndata++];
    *e = (sl_req_data){.topic = {name, topic.len > 0 ? topic.len : 0},
                       .partition = partition,
                       .write = write,
                       .first_offset = -1,
                       .last_offset = -1};
    return e;
}
