/* Listeners, connections, framing and in-order responses.
 *
 * Reentrancy: handlers run inside a connection's pump (busy > 0); anything they do to that
 * connection (respond, close) only marks state, and the pump picks it up when the handler
 * returns. Anything done to another connection (completing its parked fetch, answering its
 * JoinGroup) only posts that connection to the loop (sl_loop_post), which pumps it after the
 * current callback returns: no request ever runs nested inside another. A closed connection is
 * moved to a zombie list and freed from a 0 ms timer, so a pointer a caller still holds stays
 * valid until it returns to the loop. */
#include "net/sl_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "net/sl_transport.h"

#define SL_INBUF_SIZE        (16 * 1024)
#define SL_OUT_HIGH          (4 * 1024 * 1024) /* unsent response bytes before reading pauses */
#define SL_MAX_IOV           64
#define SL_READS_PER_EVENT   16
#define SL_ACCEPTS_PER_EVENT 64
#define SL_CLOSE_FLUSH_MS    5000
#define SL_ACCEPT_PAUSE_MS   100
#define SL_IP_BUCKETS        1024

enum { P_OUTSTANDING, P_RESPONSE, P_NOREPLY };

/* Lives in its own arena, so it disappears with it. */
struct sl_pending {
    sl_conn *conn; /* NULL once the connection closed */
    sl_arena *arena;
    sl_pending *next;
    const struct iovec *segs; /* the response body: one segment, or a gathered list */
    int nsegs;
    struct iovec one;
    size_t len; /* body bytes over all segments */
    uint8_t hdr[4];
    uint8_t state;
    bool net_done; /* written, dropped or detached and completed: the server is done with it */
    int holds;     /* sl_pending_hold() references: the arena outlives net_done until 0 */
};

typedef struct sl_listener {
    sl_server *s;
    int fd; /* -1 once closed by a drain; the record (and name) lives until sl_server_free */
    char *name;
    sl_transport_factory tnew; /* NULL: TCP */
    void *tctx;
} sl_listener;

struct sl_conn {
    sl_server *s;
    sl_conn *prev, *next; /* live list; zombies use next only */
    sl_transport *t;
    int fd;
    uint64_t id;
    const char *listener;
    char peer[64];
    char why[64]; /* reason for a pending flush-close */
    char close_reason[64];
    void *data;
    sl_post post; /* queued on the loop when another callback completed one of our requests */
    bool authenticated, closed, closing, write_blocked;
    bool input_held;     /* sl_conn_hold_input */
    bool handshaking;    /* counted in its address's handshakes in progress */
    struct ip_entry *ip; /* its address's accounting; NULL once closed */
    int busy;
    uint32_t watched;
    int64_t last_io, close_deadline, accepted;
    /* unparsed input is in[in_off, in_len) */
    uint8_t *in;
    size_t in_off, in_len;
    /* frame being received: its pending, buffer, size and bytes so far */
    sl_pending *fp;
    uint8_t *fbuf;
    size_t fsize, fgot;
    /* responses, in request order; head_off bytes of the head already written */
    sl_pending *qhead, *qtail;
    int32_t qlen;
    size_t head_off;
    size_t out_bytes;
    uint64_t rx, tx;       /* bytes through the transport (decrypted TLS payload) */
    int64_t opened_wall;   /* wall-clock ms at accept */
    const char *close_why; /* set when closed, for on_close (static or `why`) */
};

/* Per client address accounting: open connections, TLS handshakes in progress and the token
 * bucket of handshake starts. An entry lives while it has connections or its bucket is not yet
 * full again (so closing and reconnecting does not reset it); the sweep drops the rest. */
typedef struct ip_entry {
    struct ip_entry *next;
    uint8_t addr[16]; /* IPv6, or IPv4-mapped */
    int32_t conns, handshakes;
    double tokens;
    int64_t refill_ms;
} ip_entry;

struct sl_server {
    sl_loop *loop;
    sl_server_config cfg;
    sl_server_handlers h;
    sl_listener **ls;
    size_t nls;
    sl_conn *conns, *zombies;
    int nconns;
    size_t out_total; /* every connection's out_bytes: response bytes held unsent */
    uint64_t gen;     /* bumped per close, so list walks notice handlers closing other conns */
    uint64_t next_id;
    sl_timer *sweep, *reap, *accept_resume, *drain_timer;
    bool accept_paused, draining, freeing;
    void (*done)(void *ctx);
    void *done_ctx;
    sl_server_refusals refused;
    int32_t admin_conns; /* loopback connections allowed beyond max_connections */
    ip_entry *ips[SL_IP_BUCKETS];
};

static void conn_pump(sl_conn *c, bool readable);

/* The server is done with `p`; its arena goes now unless an asynchronous completion still
 * holds it (sl_pending_hold). */
static void pending_put(sl_pending *p) {
    p->net_done = true;
    if (p->holds == 0) sl_arena_free(p->arena);
}

static void conn_posted(void *ctx) { conn_pump(ctx, false); }

/* Something changed for `c` outside its own pump: let the loop pump it once the current
 * callback has returned. Inside its own pump the pump's loop picks the change up. */
static void conn_post(sl_conn *c) {
    if (!c->busy && !c->closed) sl_loop_post(c->s->loop, &c->post);
}

static int64_t now_ms(const sl_server *s) { return sl_loop_now(s->loop); }

/* ---- per-address accounting ---- */

static void addr_key(const struct sockaddr_storage *ss, uint8_t out[16]) {
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    } else if (ss->ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    }
}

static bool addr_is_loopback(const uint8_t a[16]) {
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t v6[16] = {[15] = 1};
    return (!memcmp(a, v4, 12) && a[12] == 127) || !memcmp(a, v6, 16);
}

static size_t addr_bucket(const uint8_t a[16]) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ a[i]) * 16777619u;
    return h % SL_IP_BUCKETS;
}

static ip_entry *ip_get(sl_server *s, const uint8_t a[16]) {
    ip_entry **b = &s->ips[addr_bucket(a)];
    for (ip_entry *e = *b; e; e = e->next)
        if (!memcmp(e->addr, a, 16)) return e;
    ip_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    memcpy(e->addr, a, 16);
    e->tokens = s->cfg.handshake_burst_per_ip;
    e->refill_ms = now_ms(s);
    e->next = *b;
    *b = e;
    return e;
}

static void ip_refill(sl_server *s, ip_entry *e) {
    if (s->cfg.handshake_rate_per_ip <= 0) return;
    int64_t now = now_ms(s);
    e->tokens += (double)(now - e->refill_ms) * s->cfg.handshake_rate_per_ip / 1000.0;
    if (e->tokens > s->cfg.handshake_burst_per_ip) e->tokens = s->cfg.handshake_burst_per_ip;
    e->refill_ms = now;
}

static void conn_handshake_done(sl_conn *c) {
    if (!c->handshaking) return;
    c->handshaking = false;
    if (c->ip && c->ip->handshakes > 0) c->ip->handshakes--;
}

static void conn_release_ip(sl_conn *c) {
    conn_handshake_done(c);
    if (c->ip && c->ip->conns > 0) c->ip->conns--;
    c->ip = NULL;
}

/* Drops entries with no connection whose bucket is full again (or has no rate). */
static void ip_sweep(sl_server *s) {
    for (size_t i = 0; i < SL_IP_BUCKETS; i++) {
        for (ip_entry **pp = &s->ips[i]; *pp;) {
            ip_entry *e = *pp;
            ip_refill(s, e);
            if (e->conns == 0 && e->handshakes == 0 && e->tokens >= s->cfg.handshake_burst_per_ip) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

int64_t sl_server_fd_reserve(int64_t nofile) {
    int64_t r = nofile / 4;
    return r < 256 ? 256 : r;
}

int32_t sl_server_auto_max_connections(int64_t nofile) {
    /* Half of what the reserve leaves: the other half is the partition files' descriptor
     * cache (sl_broker.c), so neither can starve the other. */
    int64_t n = (nofile - sl_server_fd_reserve(nofile)) / 2 - SL_SERVER_ADMIN_CONNS;
    return n < 16 ? 16 : n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

static void put_be32(uint8_t *d, uint32_t v) {
    d[0] = (uint8_t)(v >> 24);
    d[1] = (uint8_t)(v >> 16);
    d[2] = (uint8_t)(v >> 8);
    d[3] = (uint8_t)v;
}

/* ---- deferred work: freeing zombies, finishing a drain ---- */

static void on_reap(void *ctx) {
    sl_server *s = ctx;
    s->reap = NULL;
    while (s->zombies) {
        sl_conn *c = s->zombies;
        s->zombies = c->next;
        free(c);
    }
    if (s->draining && s->done && s->nconns == 0) {
        void (*done)(void *) = s->done;
        s->done = NULL;
        if (s->drain_timer) sl_timer_cancel(s->loop, s->drain_timer);
        s->drain_timer = NULL;
        done(s->done_ctx); /* may free s: nothing after this */
    }
}

static void schedule_reap(sl_server *s) {
    if (!s->reap && !s->freeing) s->reap = sl_timer_start(s->loop, 0, on_reap, s);
}

/* ---- connection state ---- */

static bool read_allowed(const sl_conn *c) {
    return !c->closed && !c->closing && !c->input_held && c->qlen < c->s->cfg.max_inflight &&
           c->out_bytes < SL_OUT_HIGH;
}

static void update_interest(sl_conn *c) {
    if (c->closed) return;
    /* A closing connection still reads, only to notice the peer has gone (see drain_closing). */
    bool rd = read_allowed(c) || c->closing;
    uint32_t ev = (rd ? SL_EV_READ : 0) | (c->write_blocked ? SL_EV_WRITE : 0);
    ev |= c->t->vt->wants(c->t);
    if (ev == c->watched) return;
    if (sl_loop_modify(c->s->loop, c->fd, ev) == SL_OK) c->watched = ev;
}

static void conn_destroy(sl_conn *c, bool quiet, const char *why) {
    if (c->closed) return;
    sl_server *s = c->s;
    c->closed = true;
    if (why != c->why) {
        c->close_why = why;
    } else {
        memcpy(c->close_reason, c->why, sizeof c->why);
        c->close_why = c->close_reason;
    }
    sl_loop_unpost(s->loop, &c->post);
    conn_release_ip(c);
    if (c->authenticated) {
        sl_logf(quiet ? SL_LOG_DEBUG : SL_LOG_INFO, "net", "connection closed",
                "conn=%llu peer=%s listener=%s reason=\"%s\"", (unsigned long long)c->id, c->peer,
                c->listener, why);
    } else {
        /* Unauthenticated peers choose how often this happens: bounded per address. */
        char addr[64];
        sl_log_limited(quiet ? SL_LOG_DEBUG : SL_LOG_INFO, "net", "connection closed",
                       sl_log_peer_addr(c->peer, addr, sizeof addr),
                       "conn=%llu peer=%s listener=%s reason=\"%s\"", (unsigned long long)c->id,
                       c->peer, c->listener, why);
    }
    sl_loop_unwatch(s->loop, c->fd);
    c->t->vt->close(c->t);
    c->t = NULL;
    free(c->in);
    c->in = NULL;
    if (c->fp) sl_arena_free(c->fp->arena);
    c->fp = NULL;
    /* Outstanding pendings are detached: their handler completes them later, which then only
     * frees the arena. Completed ones can never be written now. */
    for (sl_pending *p = c->qhead, *next; p; p = next) {
        next = p->next;
        if (p->state == P_OUTSTANDING) {
            p->conn = NULL;
            p->next = NULL;
        } else {
            pending_put(p);
        }
    }
    c->qhead = c->qtail = NULL;
    c->qlen = 0;
    s->out_total -= c->out_bytes;
    c->out_bytes = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    s->gen++;
    c->prev = NULL;
    c->next = s->zombies;
    s->zombies = c;
    schedule_reap(s);
    if (s->h.on_close) s->h.on_close(s->h.app, c);
}

static void pop_head(sl_conn *c) {
    sl_pending *p = c->qhead;
    c->qhead = p->next;
    if (!c->qhead) c->qtail = NULL;
    c->qlen--;
    c->head_off = 0;
    pending_put(p);
}

/* Writes the completed prefix of the queue. */
static void conn_flush(sl_conn *c) {
    for (;;) {
        while (c->qhead && c->qhead->state == P_NOREPLY) pop_head(c);
        if (!c->qhead || c->qhead->state == P_OUTSTANDING) {
            c->write_blocked = false;
            /* Bytes the transport owes the peer itself (an alert TLS wrote while reading) must
             * not wait for a response, nor for reading to resume. A failure shows on the next
             * read. */
            if (c->t->vt->wants(c->t) & SL_EV_WRITE) (void)c->t->vt->writev(c->t, NULL, 0);
            return;
        }
        struct iovec iov[SL_MAX_IOV];
        int n = 0;
        size_t total = 0;
        bool full = false;
        for (sl_pending *p = c->qhead;
             p && p->state != P_OUTSTANDING && !full && n + 2 <= SL_MAX_IOV; p = p->next) {
            if (p->state == P_NOREPLY) continue;
            size_t off = p == c->qhead ? c->head_off : 0;
            if (off < 4) {
                iov[n++] = (struct iovec){p->hdr + off, 4 - off};
                total += 4 - off;
                off = 4;
            }
            /* Skip the segments already written, then gather what fits. */
            size_t skip = off - 4;
            for (int i = 0; i < p->nsegs; i++) {
                const struct iovec *sg = &p->segs[i];
                if (skip >= sg->iov_len) {
                    skip -= sg->iov_len;
                    continue;
                }
                if (n == SL_MAX_IOV) {
                    full = true; /* the rest of this body goes in the next writev */
                    break;
                }
                iov[n++] = (struct iovec){(uint8_t *)sg->iov_base + skip, sg->iov_len - skip};
                total += sg->iov_len - skip;
                skip = 0;
            }
        }
        ssize_t w = c->t->vt->writev(c->t, iov, n);
        if (w > 0) c->tx += (uint64_t)w;
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->write_blocked = true;
                return;
            }
            bool reset = errno == EPIPE || errno == ECONNRESET;
            conn_destroy(c, reset, reset ? "peer closed while writing" : "write error");
            return;
        }
        c->last_io = now_ms(c->s);
        c->out_bytes -= (size_t)w;
        c->s->out_total -= (size_t)w;
        size_t left = (size_t)w;
        for (;;) {
            while (c->qhead && c->qhead->state == P_NOREPLY) pop_head(c);
            if (!left) break;
            size_t rem = 4 + c->qhead->len - c->head_off;
            if (left >= rem) {
                left -= rem;
                pop_head(c);
            } else {
                c->head_off += left;
                left = 0;
            }
        }
        if ((size_t)w < total) {
            c->write_blocked = true;
            return;
        }
    }
}

/* ---- framing ---- */

static int32_t frame_cap(const sl_conn *c) {
    return c->authenticated ? c->s->cfg.max_request_bytes : c->s->cfg.max_preauth_bytes;
}

/* Validates the size before allocating anything, then prepares the frame's arena. */
static bool frame_start(sl_conn *c, int32_t size) {
    int32_t cap = frame_cap(c);
    if (size < 0 || size > cap) {
        SL_WARN("net", "frame size rejected", "conn=%llu peer=%s size=%d cap=%d authenticated=%d",
                (unsigned long long)c->id, c->peer, size, cap, c->authenticated);
        conn_destroy(c, false, "frame size out of range");
        return false;
    }
    size_t chunk = (size_t)size + 4096;
    if (chunk > 64 * 1024) chunk = 64 * 1024;
    sl_arena *a = sl_arena_new(chunk);
    sl_pending *p = a ? sl_arena_calloc(a, 1, sizeof *p) : NULL;
    uint8_t *buf = p ? sl_arena_alloc(a, (size_t)size) : NULL;
    if (!buf) {
        sl_arena_free(a);
        SL_ERROR("net", "out of memory for a frame", "conn=%llu peer=%s size=%d",
                 (unsigned long long)c->id, c->peer, size);
        conn_destroy(c, false, "out of memory");
        return false;
    }
    p->arena = a;
    c->fp = p;
    c->fbuf = buf;
    c->fsize = (size_t)size;
    c->fgot = 0;
    return true;
}

static void frame_dispatch(sl_conn *c) {
    sl_pending *p = c->fp;
    c->fp = NULL;
    p->conn = c;
    p->state = P_OUTSTANDING;
    if (c->qtail)
        c->qtail->next = p;
    else
        c->qhead = p;
    c->qtail = p;
    c->qlen++;
    sl_server *s = c->s;
    s->h.on_request(s->h.app, c, p, p->arena, c->fbuf, c->fsize);
}

/* Turns buffered input into frames while reading is allowed; returns frames dispatched. */
static int process_input(sl_conn *c) {
    int n = 0;
    while (read_allowed(c)) {
        size_t avail = c->in_len - c->in_off;
        if (c->fp) {
            size_t take = c->fsize - c->fgot;
            if (take > avail) take = avail;
            memcpy(c->fbuf + c->fgot, c->in + c->in_off, take);
            c->in_off += take;
            c->fgot += take;
            if (c->fgot < c->fsize) break;
            frame_dispatch(c);
            n++;
            continue;
        }
        if (avail < 4) break;
        const uint8_t *h = c->in + c->in_off;
        int32_t size =
            (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
        c->in_off += 4;
        if (!frame_start(c, size)) break;
    }
    if (!c->closed && c->in_off == c->in_len) c->in_off = c->in_len = 0;
    return n;
}

/* The socket is drained but a request is incomplete (at our level, or inside the TLS layer):
 * ACK now. A client with Nagle on (librdkafka's default before 2.10) that wrote the request in
 * two pieces (over TLS: two records) holds the second until the first is ACKed, and Linux would
 * delay that ACK by up to 40 ms, since we have nothing to send until the request is whole.
 * Quick-ACK mode lasts only until the next delayed-ACK decision, so it is re-armed each time. */
static void ack_partial(sl_conn *c) {
    if (!(c->fp || c->in_len > c->in_off || (c->t->vt->partial && c->t->vt->partial(c->t)))) return;
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

/* A read that returned `r` <= 0: the end of the stream or an error destroys the connection
 * (true); EAGAIN leaves it for the next readiness (false). */
static bool read_ended(sl_conn *c, ssize_t r) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    bool reset = r < 0 && errno == ECONNRESET;
    conn_destroy(c, r == 0 || reset,
                 r == 0  ? "peer closed"
                 : reset ? "connection reset by peer"
                         : "read error");
    return true;
}

static void read_some(sl_conn *c) {
    for (int i = 0; i < SL_READS_PER_EVENT && read_allowed(c); i++) {
        /* The rest of a big frame goes straight into its arena buffer: no second copy. */
        bool direct = c->fp && c->in_off == c->in_len && c->fsize - c->fgot >= SL_INBUF_SIZE;
        size_t want;
        ssize_t r;
        if (direct) {
            want = c->fsize - c->fgot;
            r = c->t->vt->read(c->t, c->fbuf + c->fgot, want);
        } else {
            if (c->in_off) {
                memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                c->in_len -= c->in_off;
                c->in_off = 0;
            }
            want = SL_INBUF_SIZE - c->in_len;
            r = c->t->vt->read(c->t, c->in + c->in_len, want);
        }
        if (r <= 0) {
            if (!read_ended(c, r)) ack_partial(c);
            return;
        }
        c->rx += (uint64_t)r;
        c->last_io = now_ms(c->s);
        if (direct) {
            c->fgot += (size_t)r;
            if (c->fgot == c->fsize) frame_dispatch(c);
        } else {
            c->in_len += (size_t)r;
            process_input(c);
        }
        if ((size_t)r < want) { /* drained; level-triggered epoll says if more comes */
            if (!c->closed) ack_partial(c);
            return;
        }
    }
}

/* A flush-close waits for answers still owed (a parked JoinGroup can take its rebalance timeout)
 * and takes no more requests. If the peer has already gone there is no one to flush to, so what
 * arrives is read only to see its EOF or reset, and dropped; the slot is freed at once instead of
 * at the flush deadline. Bounded per event like read_some. */
static void drain_closing(sl_conn *c) {
    c->in_off = c->in_len = 0;
    for (int i = 0; i < SL_READS_PER_EVENT; i++) {
        ssize_t r = c->t->vt->read(c->t, c->in, SL_INBUF_SIZE);
        if (r <= 0) {
            (void)read_ended(c, r);
            return;
        }
        c->rx += (uint64_t)r;
    }
}

/* Moves everything that can move: writes completed responses, turns buffered input into
 * requests once backpressure lifts, reads when `readable`, finishes a flush-close. */
static void conn_pump(sl_conn *c, bool readable) {
    if (c->closed) return;
    c->busy++;
    for (;;) {
        conn_flush(c);
        if (c->closed) break;
        if (c->closing && !c->qhead) {
            conn_destroy(c, false, c->why);
            break;
        }
        if (c->closing) {
            if (readable || (c->t->vt->pending && c->t->vt->pending(c->t))) drain_closing(c);
            break;
        }
        if (!read_allowed(c)) break;
        if (process_input(c) > 0) continue;
        if (c->closed) break;
        /* Decrypted bytes buffered in the transport never make the fd readable again. */
        if (!readable && !(c->t->vt->pending && c->t->vt->pending(c->t))) break;
        readable = false;
        read_some(c);
        if (c->closed) break;
    }
    c->busy--;
    update_interest(c);
}

static void conn_io(void *ctx, uint32_t ev) {
    sl_conn *c = ctx;
    if (ev & SL_EV_ERROR) {
        /* ERR/HUP: the peer is gone both ways, nothing queued can be delivered. */
        conn_destroy(c, true, "socket error or hangup");
        return;
    }
    /* The transport may need the fd writable to make progress on a read (TLS handshake). */
    conn_pump(c, (ev & SL_EV_READ) || (ev & c->t->vt->wants(c->t)));
    if (c->handshaking && !c->closed && c->t->vt->established(c->t)) conn_handshake_done(c);
}

/* ---- accepting ---- */

static void listener_io(void *ctx, uint32_t ev);

static void watch_listeners(sl_server *s, bool on) {
    for (size_t i = 0; i < s->nls; i++) {
        sl_listener *l = s->ls[i];
        if (l->fd < 0) continue;
        if (on) {
            if (sl_loop_watch(s->loop, l->fd, SL_EV_READ, listener_io, l) != SL_OK)
                SL_ERROR("net", "cannot watch listener", "listener=%s", l->name);
        } else {
            sl_loop_unwatch(s->loop, l->fd);
        }
    }
}

static void on_accept_resume(void *ctx) {
    sl_server *s = ctx;
    s->accept_resume = NULL;
    s->accept_paused = false;
    if (!s->draining) watch_listeners(s, true);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, n, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(out, n, "unknown");
    }
}

static void conn_new(sl_server *s, sl_listener *l, int fd, const struct sockaddr_storage *ss,
                     ip_entry *ip) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sl_conn *c = calloc(1, sizeof *c);
    uint8_t *in = c ? malloc(SL_INBUF_SIZE) : NULL;
    char peer[64];
    format_peer(ss, peer, sizeof peer);
    sl_transport *t = !in       ? NULL
                      : l->tnew ? l->tnew(l->tctx, fd, peer, l->name)
                                : sl_transport_tcp_new(fd);
    if (!t) {
        if (!in) close(fd);
        free(in);
        free(c);
        SL_ERROR("net", "out of memory accepting a connection", "listener=%s", l->name);
        return;
    }
    c->s = s;
    c->t = t;
    c->fd = fd;
    c->in = in;
    c->post.cb = conn_posted;
    c->post.ctx = c;
    c->id = ++s->next_id;
    c->listener = l->name;
    memcpy(c->peer, peer, sizeof c->peer);
    c->last_io = c->accepted = now_ms(s);
    c->opened_wall = sl_wall_ms();
    c->ip = ip;
    ip->conns++;
    c->handshaking = t->vt->established && !t->vt->established(t);
    if (c->handshaking) ip->handshakes++;
    if (sl_loop_watch(s->loop, fd, SL_EV_READ, conn_io, c) != SL_OK) {
        conn_release_ip(c);
        SL_ERROR("net", "cannot watch connection", "peer=%s", c->peer);
        t->vt->close(t);
        free(in);
        free(c);
        return;
    }
    c->watched = SL_EV_READ;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    SL_DEBUG("net", "connection accepted", "conn=%llu peer=%s listener=%s",
             (unsigned long long)c->id, c->peer, c->listener);
    if (s->h.on_open) {
        c->busy++;
        s->h.on_open(s->h.app, c);
        c->busy--;
        if (!c->closed && c->closing) conn_pump(c, false);
    }
}

/* Decides at accept, before a byte is read or any TLS object exists: NULL to admit (taking a
 * handshake token on handshaking listeners), else the refusal's reason (and it is counted). */
static const char *admit(sl_server *s, const sl_listener *l, ip_entry *ip, const uint8_t a[16]) {
    int64_t max = s->cfg.max_connections;
    if (max > 0 && addr_is_loopback(a)) max += s->admin_conns;
    if (max > 0 && s->nconns >= max) {
        s->refused.max_connections++;
        return "max.connections";
    }
    if (!ip) {
        s->refused.max_connections++;
        return "out of memory";
    }
    if (s->cfg.max_connections_per_ip > 0 && ip->conns >= s->cfg.max_connections_per_ip) {
        s->refused.max_connections_per_ip++;
        return "max.connections.per.ip";
    }
    if (!l->tnew) return NULL;
    if (s->cfg.max_handshakes_per_ip > 0 && ip->handshakes >= s->cfg.max_handshakes_per_ip) {
        s->refused.handshakes_per_ip++;
        return "sluice.ssl.max.handshakes.per.ip";
    }
    if (s->cfg.handshake_rate_per_ip > 0) {
        ip_refill(s, ip);
        if (ip->tokens < 1.0) {
            s->refused.handshake_rate_per_ip++;
            return "sluice.ssl.handshake.rate.per.ip";
        }
        ip->tokens -= 1.0;
    }
    return NULL;
}

static void listener_io(void *ctx, uint32_t ev) {
    sl_listener *l = ctx;
    sl_server *s = l->s;
    for (int i = 0; i < SL_ACCEPTS_PER_EVENT && l->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays in the backlog; level-triggered epoll would
                 * report it again at once, so stop watching for a moment. */
                SL_WARN("net", "accept paused", "listener=%s errno=%d pause_ms=%d", l->name, errno,
                        SL_ACCEPT_PAUSE_MS);
                if (!s->accept_paused) {
                    watch_listeners(s, false);
                    s->accept_paused = true;
                    s->accept_resume =
                        sl_timer_start(s->loop, SL_ACCEPT_PAUSE_MS, on_accept_resume, s);
                }
                return;
            }
            SL_ERROR("net", "accept failed", "listener=%s errno=%d", l->name, errno);
            return;
        }
        uint8_t a[16];
        addr_key(&ss, a);
        ip_entry *ip = ip_get(s, a);
        char peer[64], addr[64];
        format_peer(&ss, peer, sizeof peer);
        const char *why = admit(s, l, ip, a);
        if (!why && s->h.admit) {
            if ((why = s->h.admit(s->h.app, sl_log_peer_addr(peer, addr, sizeof addr))))
                s->refused.blocked++;
        }
        if (why) {
            close(fd);
            if (s->h.on_refused) s->h.on_refused(s->h.app, peer, l->name, why);
            sl_log_limited(SL_LOG_WARN, "net", "connection refused",
                           sl_log_peer_addr(peer, addr, sizeof addr),
                           "listener=%s peer=%s reason=\"%s\"", l->name, peer, why);
            continue;
        }
        conn_new(s, l, fd, &ss, ip);
    }
}

/* ---- idle sweep ---- */

static int64_t sweep_interval(const sl_server *s) {
    int64_t iv = s->cfg.idle_ms > 0 ? s->cfg.idle_ms / 4 : 1000;
    if (s->cfg.auth_timeout_ms > 0 && s->cfg.auth_timeout_ms / 4 < iv)
        iv = s->cfg.auth_timeout_ms / 4;
    return iv < 10 ? 10 : iv > 1000 ? 1000 : iv;
}

static void on_sweep(void *ctx) {
    sl_server *s = ctx;
    int64_t now = now_ms(s);
    for (sl_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        uint64_t g = s->gen;
        if (c->closing && now >= c->close_deadline)
            conn_destroy(c, false, "timed out flushing before close");
        /* A client that reads none of its answers (its socket refuses our writes) is as idle
         * as one that sends nothing, as Kafka counts it, and holds their memory until closed. */
        else if (s->cfg.idle_ms > 0 && !c->closing && (c->qlen == 0 || c->write_blocked) &&
                 now - c->last_io >= s->cfg.idle_ms)
            conn_destroy(c, !c->write_blocked,
                         c->write_blocked ? "idle timeout (answers not read)" : "idle timeout");
        /* Unauthenticated connections cost a slot and memory: a peer that stalls its TLS
         * handshake or SASL exchange must not keep them for connections.max.idle.ms. */
        else if (s->cfg.auth_timeout_ms > 0 && !c->closing && c->t &&
                 (!c->authenticated || (c->t->vt->established && !c->t->vt->established(c->t))) &&
                 now - c->accepted >= s->cfg.auth_timeout_ms)
            conn_destroy(c, false, "authentication timeout");
        if (s->gen != g && !(s->gen == g + 1 && c->closed)) next = s->conns;
    }
    ip_sweep(s);
    sl_log_limited_flush();
    s->sweep = sl_timer_start(s->loop, sweep_interval(s), on_sweep, s);
}

/* ---- public API ---- */

sl_server *sl_server_new(sl_loop *l, const sl_server_config *cfg, const sl_server_handlers *h) {
    if (!l || !cfg || !h || !h->on_request) return NULL;
    sl_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = l;
    s->cfg = *cfg;
    s->h = *h;
    if (s->cfg.max_request_bytes <= 0) s->cfg.max_request_bytes = 104857600;
    if (s->cfg.max_preauth_bytes <= 0) s->cfg.max_preauth_bytes = 524288;
    if (s->cfg.max_preauth_bytes > s->cfg.max_request_bytes)
        s->cfg.max_preauth_bytes = s->cfg.max_request_bytes;
    if (s->cfg.idle_ms < 0) s->cfg.idle_ms = 0;
    if (s->cfg.auth_timeout_ms < 0) s->cfg.auth_timeout_ms = 0;
    if (s->cfg.max_inflight <= 0) s->cfg.max_inflight = 64;
    if (s->cfg.max_connections == SL_SERVER_CONN_AUTO) {
        struct rlimit rl;
        int64_t nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                             ? (int64_t)rl.rlim_cur
                             : 1024;
        s->cfg.max_connections = sl_server_auto_max_connections(nofile);
        s->admin_conns = SL_SERVER_ADMIN_CONNS;
    }
    if (s->cfg.max_connections < 0) s->cfg.max_connections = 0;
    if (s->cfg.max_connections_per_ip < 0) s->cfg.max_connections_per_ip = 0;
    if (s->cfg.handshake_rate_per_ip < 0) s->cfg.handshake_rate_per_ip = 0;
    if (s->cfg.handshake_burst_per_ip <= 0)
        s->cfg.handshake_burst_per_ip = s->cfg.handshake_rate_per_ip > INT32_MAX / 2
                                            ? INT32_MAX
                                            : 2 * s->cfg.handshake_rate_per_ip;
    if (s->cfg.max_handshakes_per_ip < 0) s->cfg.max_handshakes_per_ip = 0;
    /* Writes use MSG_NOSIGNAL; this also covers transports that cannot (TLS libraries). */
    signal(SIGPIPE, SIG_IGN);
    s->sweep = sl_timer_start(l, sweep_interval(s), on_sweep, s);
    if (!s->sweep) {
        free(s);
        return NULL;
    }
    return s;
}

static int sa_port(const struct sockaddr_storage *ss) {
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

static void sa_set_port(struct sockaddr_storage *ss, int port) {
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* A bound, listening, non-blocking socket, or -1 with errno set. */
static int bind_one(const struct sockaddr_storage *sa, socklen_t len, bool v6only) {
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (v6only) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)sa, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Takes ownership of `fd`. */
static sl_err add_listener(sl_server *s, const char *name, int fd, sl_transport_factory f,
                           void *fctx) {
    sl_listener *l = calloc(1, sizeof *l);
    char *nm = strdup(name);
    sl_listener **nls = realloc(s->ls, (s->nls + 1) * sizeof *nls);
    if (nls) s->ls = nls;
    sl_err e = (!l || !nm || !nls) ? SL_ENOMEM : SL_OK;
    if (!e) {
        l->s = s;
        l->fd = fd;
        l->name = nm;
        l->tnew = f;
        l->tctx = fctx;
        if (!s->accept_paused) e = sl_loop_watch(s->loop, fd, SL_EV_READ, listener_io, l);
    }
    if (e) {
        free(l);
        free(nm);
        close(fd);
        return e;
    }
    s->ls[s->nls++] = l;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    char addr[80] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0) format_peer(&ss, addr, sizeof addr);
    SL_INFO("net", "listening", "listener=%s address=%s", name, addr);
    return SL_OK;
}

sl_err sl_server_listen(sl_server *s, const char *name, const char *host, int port,
                        int *bound_port) {
    return sl_server_listen_with(s, name, host, port, bound_port, NULL, NULL);
}

sl_err sl_server_listen_with(sl_server *s, const char *name, const char *host, int port,
                             int *bound_port, sl_transport_factory f, void *fctx) {
    if (s->draining) return SL_ESTATE;
    if (!name || port < 0 || port > 65535) return SL_EINVAL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (gai != 0) {
        SL_ERROR("net", "cannot resolve listener host", "listener=%s host=%s error=\"%s\"", name,
                 host ? host : "", gai_strerror(gai));
        return SL_ECONFIG;
    }
    /* Every address the host resolves to ("localhost" is often ::1 and 127.0.0.1; an empty
     * host is :: and 0.0.0.0), on one port, so clients reach it whichever address they try.
     * With several, IPv6 sockets are v6-only so the IPv4 bind does not collide. Addresses
     * after the first that fail (no IPv6 on the host, duplicates) are skipped. */
    int naddr = 0, nbound = 0, err = 0, real_port = port;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) naddr++;
    sl_err e = SL_OK;
    for (struct addrinfo *ai = res; ai && !e; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        struct sockaddr_storage sa;
        memset(&sa, 0, sizeof sa);
        memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
        sa_set_port(&sa, real_port);
        int fd = bind_one(&sa, ai->ai_addrlen, ai->ai_family == AF_INET6 && naddr > 1);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (nbound == 0) {
            struct sockaddr_storage ss;
            socklen_t slen = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0) real_port = sa_port(&ss);
        }
        e = add_listener(s, name, fd, f, fctx);
        if (!e) nbound++;
    }
    freeaddrinfo(res);
    if (e) return e;
    if (nbound == 0) {
        SL_ERROR("net", "cannot listen", "listener=%s host=%s port=%d error=\"%s\"", name,
                 host ? host : "", port, strerror(err ? err : EAFNOSUPPORT));
        return SL_ECONFIG;
    }
    if (bound_port) *bound_port = real_port;
    return SL_OK;
}

static void close_listeners(sl_server *s) {
    for (size_t i = 0; i < s->nls; i++) {
        sl_listener *l = s->ls[i];
        if (l->fd < 0) continue;
        sl_loop_unwatch(s->loop, l->fd);
        close(l->fd);
        l->fd = -1;
    }
    if (s->accept_resume) sl_timer_cancel(s->loop, s->accept_resume);
    s->accept_resume = NULL;
}

static void on_drain_deadline(void *ctx) {
    sl_server *s = ctx;
    s->drain_timer = NULL;
    if (s->conns)
        SL_WARN("net", "drain deadline passed, closing connections", "open=%d", s->nconns);
    while (s->conns) conn_destroy(s->conns, false, "drain deadline passed");
    schedule_reap(s);
}

void sl_server_drain(sl_server *s, int64_t deadline_ms, void (*done)(void *ctx), void *ctx) {
    if (s->draining) return;
    s->draining = true;
    s->done = done;
    s->done_ctx = ctx;
    close_listeners(s);
    if (deadline_ms < 0) deadline_ms = 0;
    if (deadline_ms > INT64_MAX / 4) deadline_ms = INT64_MAX / 4; /* no overflow below */
    int64_t deadline = now_ms(s) + deadline_ms;
    SL_INFO("net", "draining", "connections=%d grace_ms=%lld", s->nconns, (long long)deadline_ms);
    for (sl_conn *c = s->conns; c; c = c->next) {
        if (!c->closing || c->close_deadline > deadline) c->close_deadline = deadline;
        if (!c->closing) snprintf(c->why, sizeof c->why, "server draining");
        c->closing = true;
    }
    /* Connections with nothing queued close when the loop pumps them, after this callback. */
    for (sl_conn *c = s->conns; c; c = c->next) conn_post(c);
    s->drain_timer = sl_timer_start(s->loop, deadline - now_ms(s), on_drain_deadline, s);
    if (s->nconns == 0) schedule_reap(s);
}

void sl_server_free(sl_server *s) {
    if (!s) return;
    s->freeing = true;
    close_listeners(s);
    while (s->conns) conn_destroy(s->conns, true, "server shutting down");
    sl_timer *timers[] = {s->sweep, s->reap, s->drain_timer};
    for (size_t i = 0; i < sizeof timers / sizeof *timers; i++)
        if (timers[i]) sl_timer_cancel(s->loop, timers[i]);
    while (s->zombies) {
        sl_conn *c = s->zombies;
        s->zombies = c->next;
        free(c);
    }
    for (size_t i = 0; i < s->nls; i++) {
        free(s->ls[i]->name);
        free(s->ls[i]);
    }
    free(s->ls);
    for (size_t i = 0; i < SL_IP_BUCKETS; i++)
        for (ip_entry *e = s->ips[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(s);
}

sl_server_refusals sl_server_refused(const sl_server *s) { return s->refused; }
int32_t sl_server_max_connections(const sl_server *s) { return s->cfg.max_connections; }

int sl_server_conn_count(const sl_server *s) { return s->nconns; }

void sl_pending_respond(sl_pending *p, const uint8_t *data, size_t len) {
    p->one = (struct iovec){(void *)data, len};
    sl_pending_respond_iov(p, &p->one, 1);
}

void sl_pending_respond_iov(sl_pending *p, const struct iovec *iov, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += iov[i].iov_len;
    sl_conn *c = p->conn;
    if (!c) {
        pending_put(p);
        return;
    }
    if (p->state != P_OUTSTANDING) {
        SL_ERROR("net", "request completed twice", "conn=%llu", (unsigned long long)c->id);
        return;
    }
    if (len > INT32_MAX) {
        SL_ERROR("net", "response too large to frame", "conn=%llu len=%zu",
                 (unsigned long long)c->id, len);
        p->state = P_NOREPLY;
        conn_destroy(c, false, "response too large");
        return;
    }
    p->segs = iov;
    p->nsegs = n;
    p->len = len;
    put_be32(p->hdr, (uint32_t)len);
    p->state = P_RESPONSE;
    c->out_bytes += 4 + len;
    c->s->out_total += 4 + len;
    conn_post(c);
}

void sl_pending_noreply(sl_pending *p) {
    sl_conn *c = p->conn;
    if (!c) {
        pending_put(p);
        return;
    }
    if (p->state != P_OUTSTANDING) {
        SL_ERROR("net", "request completed twice", "conn=%llu", (unsigned long long)c->id);
        return;
    }
    p->state = P_NOREPLY;
    conn_post(c);
}

size_t sl_conn_unsent(const sl_conn *c) { return c->out_bytes; }

size_t sl_server_unsent(const sl_server *s) { return s->out_total; }

void sl_pending_hold(sl_pending *p) { p->holds++; }

void sl_pending_release(sl_pending *p) {
    if (--p->holds == 0 && p->net_done) sl_arena_free(p->arena);
}

sl_conn *sl_pending_conn(const sl_pending *p) { return p->conn; }

void sl_conn_close(sl_conn *c, bool flush, const char *why) {
    if (c->closed) return;
    if (!why) why = "closed by server";
    if (!flush) {
        conn_destroy(c, false, why);
        return;
    }
    if (c->closing) return;
    c->closing = true;
    snprintf(c->why, sizeof c->why, "%s", why);
    c->close_deadline = now_ms(c->s) + SL_CLOSE_FLUSH_MS;
    conn_post(c);
}

void sl_conn_set_authenticated(sl_conn *c) { c->authenticated = true; }

void sl_conn_hold_input(sl_conn *c, bool hold) {
    if (c->closed || c->input_held == hold) return;
    c->input_held = hold;
    if (hold) {
        if (!c->busy) update_interest(c); /* inside its pump, the pump's end does it */
    } else {
        conn_post(c); /* input may already be buffered: the fd alone would not say so */
    }
}

void sl_conn_set_data(sl_conn *c, void *data) { c->data = data; }
void *sl_conn_data(const sl_conn *c) { return c->data; }
const char *sl_conn_peer(const sl_conn *c) { return c->peer; }
const char *sl_conn_listener(const sl_conn *c) { return c->listener; }
uint64_t sl_conn_id(const sl_conn *c) { return c->id; }
int sl_conn_local_port(const sl_conn *c) {
    if (c->closed) return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}
sl_transport *sl_conn_transport(const sl_conn *c) { return c->closed ? NULL : c->t; }

void sl_conn_stats(const sl_conn *c, uint64_t *bytes_in, uint64_t *bytes_out, int64_t *opened_ms) {
    if (bytes_in) *bytes_in = c->rx;
    if (bytes_out) *bytes_out = c->tx;
    if (opened_ms) *opened_ms = c->opened_wall;
}

const char *sl_conn_close_reason(const sl_conn *c) { return c->closed ? c->close_why : NULL; }
