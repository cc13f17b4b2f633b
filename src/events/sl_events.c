/* The event hub (sl_events.h): a list of subscribers, delivery in order. */
#include "events/sl_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_logging.h"
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

/* ---- the debug subscriber ---- */

/* Strings in events may come from clients (user names, topics, certificate subjects): quoted
 * in the line with quotes, backslashes and control bytes replaced, and bounded. */
static const char *clean(const char *in, char *out, size_t n) {
    if (!in) return "-";
    size_t j = 0;
    for (; *in && j + 1 < n; in++) {
        unsigned char ch = (unsigned char)*in;
        out[j++] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    out[j] = 0;
    return out;
}

static const char *clean_str(sl_str in, char *out, size_t n) {
    size_t len = in.len > 0 ? (size_t)in.len : 0, j = 0;
    for (size_t i = 0; i < len && j + 1 < n; i++) {
        unsigned char ch = (unsigned char)in.p[i];
        out[j++] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' || ch == ',' ? '?' : (char)ch;
    }
    out[j] = 0;
    return out;
}

static void debug_request(const sl_event *ev, const char *who) {
    const sl_req *rq = ev->rq;
    char data[1024], t[128];
    size_t at = 0;
    data[0] = 0;
    for (int32_t i = 0; i < rq->ndata && at + 1 < sizeof data; i++) {
        const sl_req_data *d = &rq->data[i];
        int n = snprintf(data + at, sizeof data - at, "%s%s:%d:%s:e%d:%lld-%lld:r%lld:b%lld",
                         i ? "," : "", clean_str(d->topic, t, 64), d->partition,
                         d->write ? "w" : "r", d->error, (long long)d->first_offset,
                         (long long)d->last_offset, (long long)d->records, (long long)d->bytes);
        if (n < 0) break;
        at += (size_t)n < sizeof data - at ? (size_t)n : sizeof data - at - 1;
    }
    SL_DEBUG("event", "request",
             "conn=%llu principal=\"%s\" peer=%s listener=%s api=%d version=%d outcome=%d "
             "error=%d resources=%d data=\"%s\"",
             (unsigned long long)ev->conn_id, who, ev->peer ? ev->peer : "-",
             ev->listener ? ev->listener : "-", rq->h.api_key, rq->h.api_version, rq->outcome,
             rq->error, rq->nres, data);
}

void sl_events_debug_subscriber(void *ctx, const sl_event *ev) {
    if (sl_log_get_level() > SL_LOG_DEBUG) return;
    char whob[256], a[256], b[512], c[256];
    const char *who = clean(ev->principal, whob, sizeof whob);
    const char *peer = ev->peer ? ev->peer : "-", *listener = ev->listener ? ev->listener : "-";
    unsigned long long conn = (unsigned long long)ev->conn_id;
    switch (ev->kind) {
    case SL_EV_REQUEST:
        debug_request(ev, who);
        break;
    case SL_EV_AUTH: {
        static const char *const acts[] = {"logon", "reauth", "expired"};
        const sl_ev_auth *x = &ev->auth;
        SL_DEBUG("event", "auth",
                 "conn=%llu activity=%s success=%s mechanism=%s user=\"%s\" principal=\"%s\" "
                 "reason=\"%s\" lifetime_ms=%lld peer=%s listener=%s tls_version=%s "
                 "tls_cipher=%s cert_subject=\"%s\"",
                 conn, acts[x->activity <= SL_AUTH_EXPIRED ? x->activity : 0],
                 x->success ? "true" : "false", x->mechanism ? x->mechanism : "-",
                 clean(x->user, a, sizeof a), who, x->reason ? x->reason : "-",
                 (long long)x->session_lifetime_ms, peer, listener,
                 x->tls_version ? x->tls_version : "-", x->tls_cipher ? x->tls_cipher : "-",
                 clean(x->cert_subject, b, sizeof b));
        break;
    }
    case SL_EV_NET: {
        static const char *const acts[] = {"open", "refused", "close"};
        const sl_ev_net *x = &ev->net;
        SL_DEBUG("event", "net",
                 "conn=%llu activity=%s reason=\"%s\" tls_failure=\"%s\" principal=\"%s\" "
                 "peer=%s listener=%s bytes_in=%lld bytes_out=%lld duration_ms=%lld",
                 conn, acts[x->activity <= SL_NET_CLOSE ? x->activity : 0],
                 clean(x->reason, a, sizeof a), clean(x->tls_failure, c, sizeof c), who, peer,
                 listener, (long long)x->bytes_in, (long long)x->bytes_out,
                 (long long)x->duration_ms);
        break;
    }
    case SL_EV_APP: {
        static const char *const acts[] = {"start", "stop", "config", "trail_open", "trail_rotate"};
        const sl_ev_app *x = &ev->app;
        SL_DEBUG("event", "app", "activity=%s detail=\"%s\" digest=%s",
                 acts[x->activity <= SL_APP_TRAIL_ROTATE ? x->activity : 0],
                 clean(x->detail, b, sizeof b), x->digest ? x->digest : "-");
        break;
    }
    case SL_EV_ADMIN: {
        const sl_ev_admin *x = &ev->admin;
        SL_DEBUG("event", "admin", "action=\"%s\" resource=\"%s\" success=%s detail=\"%s\"",
                 clean(x->action, a, sizeof a), clean(x->resource, c, sizeof c),
                 x->success ? "true" : "false", clean(x->detail, b, sizeof b));
        break;
    }
    case SL_EV_DETECTION: {
        const sl_ev_detection *x = &ev->det;
        SL_DEBUG("event", "detection",
                 "rule=%s severity=%d subject=\"%s\" value=%g threshold=%g window_ms=%lld "
                 "block_ms=%lld",
                 x->rule ? x->rule : "-", x->severity, clean(x->subject, a, sizeof a), x->value,
                 x->threshold, (long long)x->window_ms, (long long)x->block_ms);
        break;
    }
    default:
        SL_DEBUG("event", "other", "kind=%d conn=%llu", (int)ev->kind, conn);
        break;
    }
}
