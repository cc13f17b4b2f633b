/* Listeners and connections: accept, framing with size caps, per-connection ordered responses.
 *
 * A connection reads 4-byte size-prefixed frames. The cap is `max_preauth_bytes` until the
 * application calls sl_conn_set_authenticated(), then `max_request_bytes`; a larger size closes
 * the connection before anything is allocated. Each frame becomes an sl_pending with its own
 * arena; requests are handed to on_request in arrival order and may complete in any order, but
 * responses are written in arrival order (Kafka clients pipeline and match by order).
 * The transport sits behind a vtable so TLS is just another connection type. */
#ifndef SL_NET_SERVER_H
#define SL_NET_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_err.h"
#include "net/sl_loop.h"
#include "net/sl_transport.h"

typedef struct sl_server sl_server;
typedef struct sl_conn sl_conn;
typedef struct sl_pending sl_pending;

/* Zero (or negative) fields take the default in parentheses. */
typedef struct sl_server_config {
    int32_t max_request_bytes; /* socket.request.max.bytes (104857600) */
    int32_t max_preauth_bytes; /* frame cap before authentication (524288, at most the above) */
    int64_t idle_ms;           /* connections.max.idle.ms (0: no idle timeout; Kafka: 600000) */
    int64_t auth_timeout_ms;   /* accept to sl_conn_set_authenticated(), else closed (0: none) */
    int32_t max_inflight;      /* requests queued per connection before reading pauses (64) */
    /* Connections open at once: 0 unlimited; SL_SERVER_CONN_AUTO: half of the descriptor
     * limit (RLIMIT_NOFILE) left after sl_server_fd_reserve() of it (the broker's own files);
     * the other half is the partition files' descriptor cache. */
    int32_t max_connections;
    int32_t max_connections_per_ip; /* open at once from one address (0: unlimited) */
    /* TLS handshakes, per client address, on listeners with a transport factory: started per
     * second (tokens refilled continuously, up to `handshake_burst_per_ip` saved up) and in
     * progress at once. Excess connections are closed at accept, before any TLS work, so no
     * unauthenticated peer can keep the loop busy with key exchanges. 0: unlimited. */
    int32_t handshake_rate_per_ip;
    int32_t handshake_burst_per_ip; /* (2 x rate) */
    int32_t max_handshakes_per_ip;
} sl_server_config;

#define SL_SERVER_CONN_AUTO (-1)
/* With SL_SERVER_CONN_AUTO, loopback peers (127.0.0.0/8, ::1) may open this many connections
 * beyond the derived max_connections (whose descriptors the derivation keeps free), so an
 * operator on the host can still get in while remote peers hold every slot. An explicit
 * max.connections is a hard limit, as in Kafka. */
#define SL_SERVER_ADMIN_CONNS 4

/* Descriptors kept back from max.connections when it is derived from a descriptor limit of
 * `nofile`: a quarter, at least 256 (partition files, the credential store, logs). */
int64_t sl_server_fd_reserve(int64_t nofile);
/* The max.connections that SL_SERVER_CONN_AUTO gives for a descriptor limit of `nofile`:
 * (nofile - reserve) / 2 - SL_SERVER_ADMIN_CONNS, at least 16. */
int32_t sl_server_auto_max_connections(int64_t nofile);

/* Connections closed at accept, by reason (metric-ready; counted since start). */
typedef struct sl_server_refusals {
    uint64_t max_connections;
    uint64_t max_connections_per_ip;
    uint64_t handshake_rate_per_ip;
    uint64_t handshakes_per_ip;
    uint64_t blocked; /* refused by the application's admit hook */
} sl_server_refusals;
sl_server_refusals sl_server_refused(const sl_server *s);
/* The max.connections in force (after SL_SERVER_CONN_AUTO was resolved; 0: unlimited). */
int32_t sl_server_max_connections(const sl_server *s);

typedef struct sl_server_handlers {
    void *app;
    /* A frame arrived. `frame` (len bytes, without the size prefix) lives in `a`, which `p` owns.
     * The handler must eventually call exactly one of sl_pending_respond() or
     * sl_pending_noreply() for `p`, now or later (even if the connection closed meanwhile). */
    void (*on_request)(void *app, sl_conn *c, sl_pending *p, sl_arena *a, const uint8_t *frame,
                       size_t len);
    /* Called once when the connection is closed; pendings may still be completed afterwards
     * (sl_pending_conn() then returns NULL). Drop every pointer to `c` here: its memory is
     * released when control returns to the loop. */
    void (*on_close)(void *app, sl_conn *c);
    /* Optional. Called once per accepted connection before any byte is read, e.g. to call
     * sl_conn_set_authenticated() on listeners without authentication (so the pre-auth cap does
     * not apply to their first frame) or to close it. on_close follows in every case. */
    void (*on_open)(void *app, sl_conn *c);
    /* Optional. Asked at accept, after the server's own limits and before any byte is read or
     * TLS object made, with the client address without port: NULL admits, a reason (static)
     * refuses (counted as `blocked`). */
    const char *(*admit)(void *app, const char *ip);
    /* Optional. A connection was refused at accept: `peer` "ip:port", `reason` the limit's key
     * (or the admit hook's reason). All borrowed for the call. */
    void (*on_refused)(void *app, const char *peer, const char *listener, const char *reason);
} sl_server_handlers;

/* Caller owns the server. `cfg` and `h` are copied. */
sl_server *sl_server_new(sl_loop *l, const sl_server_config *cfg, const sl_server_handlers *h);
/* Binds and listens (SO_REUSEADDR, non-blocking). `name` is the listener name (e.g. PLAINTEXT).
 * `host` may be a name or literal; every address it resolves to is bound (NULL or "": all
 * interfaces). port 0 picks a free port; *bound_port (if non-NULL) gets the real one.
 * SL_ECONFIG if it does not resolve or nothing could be bound. */
sl_err sl_server_listen(sl_server *s, const char *name, const char *host, int port,
                        int *bound_port);
/* Makes the transport of a connection accepted on a listener (e.g. TLS, sl_tls.h). Takes
 * ownership of `fd`: closes it and returns NULL on failure. `peer` and `listener` are borrowed. */
typedef sl_transport *(*sl_transport_factory)(void *ctx, int fd, const char *peer,
                                              const char *listener);
/* sl_server_listen() whose connections get their transport from `f(fctx, ...)` (not owned;
 * must outlive the server's connections); f NULL: plain TCP. */
sl_err sl_server_listen_with(sl_server *s, const char *name, const char *host, int port,
                             int *bound_port, sl_transport_factory f, void *fctx);
/* Stops accepting and reading new requests; when every accepted request has been answered and
 * written (or `deadline_ms` passed), closes all connections and calls done(ctx) from the loop
 * (never from inside this call; not at all if the server is freed first; done may free the
 * server). `deadline_ms` is the grace period, relative to now (e.g. 30000); <= 0 closes at
 * once. A second call while draining is ignored. */
void sl_server_drain(sl_server *s, int64_t deadline_ms, void (*done)(void *ctx), void *ctx);
/* Closes listeners and connections immediately (on_close runs for each) and frees. Pendings
 * completed later only free their arena. Call before sl_loop_free() and not from inside a
 * server callback other than the drain's done. */
void sl_server_free(sl_server *s);
int sl_server_conn_count(const sl_server *s);

/* Queues `len` bytes (response header + body, without the size prefix, which this adds) as the
 * response to `p`. `data` must stay valid until the arena of `p` is freed (allocate it there).
 * Frees p's arena once the bytes are written or the connection is gone (and no hold remains);
 * `p` is invalid after this call unless held. Callable from inside on_request (written when it
 * returns) or any later loop callback, for any connection: the connection is pumped by the
 * loop after the current callback, never from inside this call. Never twice; loop thread
 * only. */
void sl_pending_respond(sl_pending *p, const uint8_t *data, size_t len);
/* sl_pending_respond() for a body gathered from `n` segments (n >= 1). The array and every
 * segment must stay valid until the arena of `p` is freed (allocate them there, or keep what
 * they point to alive as long). */
void sl_pending_respond_iov(sl_pending *p, const struct iovec *iov, int n);
/* Completes `p` with no response (acks=0) and frees its arena. */
void sl_pending_noreply(sl_pending *p);
/* An asynchronous completion (a flush callback, a parked fetch or join) that will still touch
 * memory in p's arena takes a hold for as long as it may; the arena is freed only when the
 * server is done with `p` (written, dropped, or completed after its connection closed) and
 * every hold is released. So failing or closing a request never frees what a callback uses.
 * Loop thread only. */
void sl_pending_hold(sl_pending *p);
void sl_pending_release(sl_pending *p);
/* The connection of `p`, or NULL if it closed meanwhile. */
sl_conn *sl_pending_conn(const sl_pending *p);

/* Closes the connection after the responses already queued ahead of the close are flushed
 * (`flush`=true) or at once. With flush, reading stops at once and the close happens when the
 * queue is empty, or after 5 s if a request is never completed. `why` goes to the log (copied).
 * `c` stays valid until control returns to the loop, so calling this twice is harmless. */
void sl_conn_close(sl_conn *c, bool flush, const char *why);
void sl_conn_set_authenticated(sl_conn *c);
/* Stops (hold) or resumes turning the connection's input into requests, for a backend that
 * cannot take more yet (the gateway while its upstream socket is full): unread bytes stay in
 * the kernel, so TCP slows the client instead of this process buffering for it. Resuming pumps
 * the connection from the loop, never inside this call. */
void sl_conn_hold_input(sl_conn *c, bool hold);
/* Bytes of responses queued on `c` and not yet written, whether or not their turn has come
 * (answers completed ahead of an earlier request count too): what this connection holds in
 * memory for a client that is not reading. */
size_t sl_conn_unsent(const sl_conn *c);
/* sl_conn_unsent() summed over every open connection of `s`. */
size_t sl_server_unsent(const sl_server *s);
/* Application data attached to the connection (e.g. the session); not owned. */
void sl_conn_set_data(sl_conn *c, void *data);
void *sl_conn_data(const sl_conn *c);
const char *sl_conn_peer(const sl_conn *c);     /* "ip:port" */
const char *sl_conn_listener(const sl_conn *c); /* listener name */
uint64_t sl_conn_id(const sl_conn *c);
/* The local port the connection was accepted on (the gateway's node ports share one listener
 * name); -1 once closed or unknown. */
int sl_conn_local_port(const sl_conn *c);
/* Bytes read and written through the transport so far, and the wall-clock ms of accept. */
void sl_conn_stats(const sl_conn *c, uint64_t *bytes_in, uint64_t *bytes_out, int64_t *opened_ms);
/* Inside on_close: why the connection closed ("peer closed", "idle timeout", ...); NULL before
 * it closed. Valid until on_close returns. */
const char *sl_conn_close_reason(const sl_conn *c);
/* The connection's transport (e.g. to ask TLS for the peer's principal); NULL once closed. */
sl_transport *sl_conn_transport(const sl_conn *c);

#endif
