/* Connections from the gateway to the upstream Kafka cluster (docs/gateway.md).
 *
 * One sl_upconn is one TCP (or TLS) connection to one upstream broker, authenticated as the
 * gateway (or as a mapped principal). Setting it up (connect, TLS handshake, SASL exchange) runs
 * on a worker thread with blocking I/O bounded by sluice.gateway.upstream.connect.timeout.ms, so
 * the event loop never waits on an upstream; the established socket is then handed to the loop,
 * where requests and responses move without blocking. Requests sent before that queue.
 *
 * Order: requests go out in sl_upconn_send order and Kafka answers a connection in order, so the
 * callbacks run in send order. The upstream correlation ids are the connection's own (a counter);
 * the caller's are never sent upstream.
 *
 * Re-authentication (KIP-368): when the upstream's SaslAuthenticate gave a session lifetime, the
 * connection is replaced before it expires: new sends queue, the outstanding ones finish, a fresh
 * connection is set up on the worker, and the queue continues on it. Per-connection ordering is
 * kept because nothing is in flight on two sockets at once.
 *
 * Lifetime: refcounted. The creator holds one reference; each outstanding request holds one until
 * its callback has run. Loop thread only, except where said. */
#ifndef SL_GATEWAY_UPSTREAM_H
#define SL_GATEWAY_UPSTREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_config.h"
#include "base/sl_err.h"
#include "net/sl_loop.h"

/* How the gateway authenticates upstream: parsed once from the sluice.gateway.upstream.* keys,
 * then shared read-only (also by worker threads). Secrets are held in locked memory, zeroed on
 * free. */
typedef struct sl_upstream_cfg sl_upstream_cfg;

/* Parses and checks the upstream keys of `cfg` (bootstrap list, protocol, TLS files readable,
 * SASL settings complete for the mechanism, password file read). NULL with `err` naming the key
 * on failure. Caller owns the result (sl_upstream_cfg_free). */
sl_upstream_cfg *sl_upstream_cfg_new(const sl_config *cfg, char *err, size_t elen);
void sl_upstream_cfg_free(sl_upstream_cfg *u);
/* The bootstrap servers, in configured order: `i`th host and port; false past the end. */
bool sl_upstream_cfg_bootstrap(const sl_upstream_cfg *u, int i, char *host, size_t hcap, int *port);

/* A principal's own upstream identity (sluice.gateway.principal.mapping); NULL: the gateway's.
 * Owned by the cfg. */
const sl_upstream_cfg *sl_upstream_cfg_for_principal(const sl_upstream_cfg *u,
                                                     const char *principal);

typedef struct sl_upconn sl_upconn;

/* Why a request got no response. */
typedef enum {
    SL_UP_OK = 0,
    SL_UP_CONNECT,  /* could not connect, TLS failed, or the upstream went away */
    SL_UP_AUTH,     /* the upstream refused the gateway's credentials */
    SL_UP_TIMEOUT,  /* sluice.gateway.upstream.request.timeout.ms passed */
    SL_UP_PROTOCOL, /* the upstream sent something that is not a Kafka response */
    SL_UP_CLOSED,   /* sl_upconn_close was called first */
} sl_up_status;

/* A response: `body` is what follows the correlation id (the response header's tagged fields,
 * if the version is flexible, then the body), valid only during the call; copy what you keep.
 * With a status other than SL_UP_OK, body is NULL. Runs on the loop thread, never inside
 * sl_upconn_send. */
typedef void (*sl_upconn_fn)(void *ctx, sl_up_status st, const uint8_t *body, size_t len);

/* What the gateway learns about each upstream connection (metrics, audit, /readyz). */
typedef struct sl_upconn_events {
    void *ctx;
    /* Set up (ok) or failed (`why`, no secret): once per attempt. */
    void (*connected)(void *ctx, int32_t node, const char *addr, bool ok, sl_up_status st,
                      const char *why);
    /* An established connection ended (`why`: "closed by upstream", "timeout", ...). */
    void (*lost)(void *ctx, int32_t node, const char *addr, const char *why);
} sl_upconn_events;

/* Starts connecting to `host`:`port` (upstream node `node`, -1: a bootstrap address) as
 * `cfg`'s identity; TLS checks the certificate against `host`. `cfg` and `ev` must outlive the
 * connection. Returns the connection with one reference for the caller, or NULL when out of
 * memory. */
sl_upconn *sl_upconn_new(sl_loop *loop, const sl_upstream_cfg *cfg, const sl_upconn_events *ev,
                         int32_t node, const char *host, int port);
void sl_upconn_ref(sl_upconn *u);
void sl_upconn_unref(sl_upconn *u);

/* Sends one request: `frame` is a whole request without the 4-byte size (header then body), in
 * the caller's memory, copied before return. Its correlation id is replaced by the
 * connection's own. `fn` NULL: no response is expected (Produce with acks=0) and none is waited
 * for. Otherwise `fn(ctx, ...)` runs exactly once: with the response, or with the reason there is
 * none (also when the connection is or becomes unusable; then asynchronously, posted to the
 * loop). */
void sl_upconn_send(sl_upconn *u, const uint8_t *frame, size_t len, sl_upconn_fn fn, void *ctx);
/* sl_upconn_send whose response `body` stays valid as long as `keep` (a request's arena, which
 * the caller keeps alive until fn has run): the answer can go on pointing into it, with no copy.
 * A large answer read at the start of the connection's buffer is handed to `keep` whole
 * (sl_arena_adopt); any other is copied there. With fn set, `frame` too must stay valid until
 * fn has run (it lives in `keep`): what the socket does not take at once is sent later from it,
 * not copied. */
void sl_upconn_send_kept(sl_upconn *u, const uint8_t *frame, size_t len, sl_arena *keep,
                         sl_upconn_fn fn, void *ctx);
/* The connection's backlog: bytes of the requests sent and not answered yet, whether still
 * waiting for the connection to be ready, not yet taken by the socket, or on the wire. */
size_t sl_upconn_backlog(const sl_upconn *u);
/* fn(ctx) runs once, when the backlog is at most `mark`: after writes, answers, or a failure
 * that dropped it (then from the loop, after the failed callbacks). It may run inside
 * sl_upconn_send. fn NULL cancels; a later call replaces an earlier one. */
void sl_upconn_when_below(sl_upconn *u, size_t mark, void (*fn)(void *ctx), void *ctx);

/* Closes now: every outstanding callback runs (posted) with SL_UP_CLOSED. The caller's reference
 * is not released. Idempotent. */
void sl_upconn_close(sl_upconn *u);

/* True once set up and not lost (a send would go out now rather than queue). */
bool sl_upconn_ready(const sl_upconn *u);
/* True after a failure or sl_upconn_close: every later send fails. */
bool sl_upconn_dead(const sl_upconn *u);
/* Requests sent and not yet answered. */
int sl_upconn_outstanding(const sl_upconn *u);

/* Memory for answers, shared by the connections put under it (a gateway's client connections).
 * An answer of at least SL_UPGATE_MIN bytes is read only while what the process holds of
 * answers (held(ctx): bytes queued for clients and not yet taken by their sockets, plus the
 * answers this gate admitted and whose reading has not finished) stays within `budget` with it,
 * or when nothing is held (an answer larger than the budget still passes, alone). A connection
 * refused stops reading: the answer waits in the kernel and TCP slows the upstream, which keeps
 * it (Kafka sends from its page cache). Refused connections are retried every few milliseconds,
 * in the order they were refused; the first one still refused ends the round, so a big answer is
 * not passed over forever by small ones. Smaller answers (produce acknowledgements, metadata)
 * are never held back. Without a connection being read, no request of it can time out: the
 * upstream has answered.
 *
 * Lifetime: refcounted; the creator holds one reference (sl_upgate_free drops it and stops
 * calling `held`), every connection under the gate one. Loop thread only. */
#define SL_UPGATE_MIN ((size_t)64 * 1024)
typedef struct sl_upgate sl_upgate;
sl_upgate *sl_upgate_new(sl_loop *loop, size_t budget, size_t (*held)(void *ctx), void *ctx);
void sl_upgate_free(sl_upgate *g);
/* Bytes of admitted answers still being read. */
size_t sl_upgate_reading(const sl_upgate *g);
/* Connections waiting for memory now, and how many times one was refused so far. */
int sl_upgate_waiting(const sl_upgate *g);
uint64_t sl_upgate_refusals(const sl_upgate *g);
/* Puts `u` under `g` (which it references) before anything is sent on it. */
void sl_upconn_set_gate(sl_upconn *u, sl_upgate *g);

/* Session lifetime the upstream gave at authentication (ms; 0: none). */
int64_t sl_upconn_session_lifetime_ms(const sl_upconn *u);

#endif
