/* The event hub (sl_events.h): a list of subscribers, delivery in order. */
#include "events/sl_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_time.h"

bool sl_events_subscribe(sl_events *h, sl_event_fn fn, void *ctx) {
    if (h->n >= SL_EVENTS_MAX_SUBSCRIBERS) return false;
    h->subs[h->n].fn = fn;
    h->subs[h->n].ctx = ctx;
    h->n++;
    return true;
}

void sl_events_unsubscribe(sl_events *h, void *ctx) {
    int j = 0;
    for (int i = 0; i < h->n; i++)
        if (h->subs[i].ctx != ctx) h->subs[j++] = h->subs[i];
    h->n = j;
}

/* A finding emitted from inside a delivery is delivered at once, but a subscriber emitting in
 * answer to its own events without end would recurse without end: beyond this depth events are
 * dropped (a bug, never the normal path). */
#define SL_EVENTS_MAX_DEPTH 4

void sl_events_emit(sl_events *h, const sl_event *ev) {
    if (!h || h->depth >= SL_EVENTS_MAX_DEPTH) return;
    sl_event e = *ev;
    if (!e.time_ms) e.time_ms = sl_wall_ms();
    h->depth++;
    for (int i = 0; i < h->n; i++) h->subs[i].fn(h->subs[i].ctx, &e);
    h->depth--;
}

void sl_events_request_observer(void *ctx, const sl_req *rq) {
    sl_events *h = ctx;
    sl_event e = {.kind = SL_EV_REQUEST,
                  .conn_id = rq->conn_id,
                  .principal = rq->principal,
                  .peer = rq->peer,
                  .listener = rq->listener,
                  .rq = rq};
    sl_events_emit(h, &e);
}

int sl_events_peer_port(const char *peer) {
    const char *c = peer ? strrchr(peer, ':') : NULL;
    if (!c || (peer[0] == '[' && c < strchr(peer, ']'))) return 0;
    return atoi(c + 1);
}
