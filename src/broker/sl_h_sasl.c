/* SASL on the wire: SaslHandshake, SaslAuthenticate, the raw-token flow after SaslHandshake v0,
 * the per-connection session (created in on_open, freed in on_close) and the session rules the
 * authenticate stage enforces. The mechanisms themselves live in src/auth. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_auth.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "broker/sl_broker.h"
#include "net/sl_tls.h"
#include "proto/gen/sl_msgs.h"

#define TOKEN_MAX 2048 /* our answers: server-first/final SCRAM messages, empty for PLAIN */

const char *sl_session_principal(const sl_conn *c) {
    const sl_session *s = c ? sl_conn_data(c) : NULL;
    if (!s || !s->authenticated) return NULL;
    /* SSL without SASL: the client certificate's mapped name, known once the handshake is done
     * (before any request frame); no certificate means User:ANONYMOUS. */
    if (!s->mechs && sl_conn_is_tls(c)) {
        sl_session *m = (sl_session *)s; /* cache: the mapping is fixed for the connection */
        const char *tp = sl_conn_tls_principal(c);
        if (tp && strncmp(m->principal, "User:", 5) == 0 && strcmp(m->principal + 5, tp) != 0)
            snprintf(m->principal, sizeof m->principal, "User:%s", tp);
    }
    return s->principal;
}

/* ---- authentication events (SL_EV_AUTH) ---- */

/* A mechanism name a client asked for, as a bounded label: the known names, else "other" (a
 * client must not be able to mint event values or metric labels at will). */
static const char *mech_label(const char *name, size_t len) {
    unsigned bit = sl_mech_from_name(name, len);
    if (bit) return sl_mech_name(bit);
    if (len == 6 && !memcmp(name, "GSSAPI", 6)) return "GSSAPI";
    return "other";
}

/* One authentication fact, from the connection: the principal is the connection's (NULL before
 * a first success), the user the claimed name without "User:", TLS details on TLS listeners. */
static void emit_auth(sl_broker *b, sl_conn *c, const sl_session *s, sl_auth_activity act, bool ok,
                      const char *mech, const char *reason, int64_t life) {
    const char *claimed = s && !strncmp(s->attempt_principal, "User:", 5) && s->attempt_principal[5]
                              ? s->attempt_principal + 5
                              : NULL;
    if (!claimed && c && mech && !strcmp(mech, "SSL")) claimed = sl_conn_tls_principal(c);
    sl_events_emit(&b->events, &(sl_event){.kind = SL_EV_AUTH,
                                           .conn_id = c ? sl_conn_id(c) : 0,
                                           .principal = c ? sl_session_principal(c) : NULL,
                                           .peer = c ? sl_conn_peer(c) : NULL,
                                           .listener = c ? sl_conn_listener(c) : NULL,
                                           .auth = {.activity = act,
                                                    .success = ok,
                                                    .mechanism = mech,
                                                    .user = claimed,
                                                    .reason = ok ? NULL : reason,
                                                    .session_lifetime_ms = ok ? life : 0,
                                                    .tls_version = sl_conn_tls_version(c),
                                                    .tls_cipher = sl_conn_tls_cipher(c),
                                                    .cert_subject = sl_conn_tls_subject(c)}});
}

static sl_auth_activity activity(const sl_session *s) {
    return s && s->authenticated ? SL_AUTH_REAUTH : SL_AUTH_LOGON;
}

static bool is_sasl(sl_security_protocol p) {
    return p == SL_SEC_SASL_PLAINTEXT || p == SL_SEC_SASL_SSL;
}

void sl_sasl_conn_open(sl_broker *b, sl_conn *c) {
    sl_security_protocol p = sl_broker_listener_protocol(b, sl_conn_listener(c));
    unsigned mechs = is_sasl(p) ? sl_auth_listener_mechs(b->auth, sl_conn_listener(c)) : 0;
    /* SSL listeners without SASL start as User:ANONYMOUS; sl_session_principal() switches to
     * the client certificate's mapped name once the handshake has verified one. */
    sl_session *s = sl_session_new(sl_conn_peer(c), mechs, "User:ANONYMOUS");
    if (!s) {
        sl_conn_close(c, false, "out of memory");
        return;
    }
    s->tls = sl_conn_is_tls(c);
    sl_conn_set_data(c, s);
    /* max.connections.per.ip is enforced by the server at accept, before any TLS work. */
    if (!mechs) sl_conn_set_authenticated(c);
}

void sl_sasl_conn_close(sl_broker *b, sl_conn *c) {
    sl_session *s = sl_conn_data(c);
    if (!s) return;
    sl_conn_set_data(c, NULL);
    sl_session_free(s);
}

/* ---- delayed failure answers ---- */

/* A failed authentication is answered after connection.failed.authentication.delay.ms, so a
 * guesser gets few tries per connection-second; the connection stops reading at once. The
 * request (in its arena, held) is finished when the delay ends, or at shutdown. */
typedef struct sl_sasl_delayed {
    struct sl_sasl_delayed *next, *prev;
    sl_req *rq;
    const uint8_t *data; /* in the request arena; NULL: no answer (raw flow) */
    size_t len;
    sl_timer *t;
} sl_delayed;

static void delayed_unlink(sl_broker *b, sl_delayed *d) {
    if (d->prev)
        d->prev->next = d->next;
    else
        b->delayed = d->next;
    if (d->next) d->next->prev = d->prev;
}

static void delayed_finish(sl_req *rq, const uint8_t *data, size_t len) {
    if (data)
        sl_req_respond_raw(rq, data, len);
    else
        sl_req_noreply(rq);
}

static void delayed_fire(void *ctx) {
    sl_delayed *d = ctx;
    sl_req *rq = d->rq;
    delayed_unlink(rq->b, d);
    delayed_finish(rq, d->data, d->len);
    free(d);
    sl_req_release(rq);
}

static void fail_later(sl_req *rq, const uint8_t *data, size_t len, const char *why) {
    sl_conn *c = sl_pending_conn(rq->p);
    if (c) sl_conn_close(c, true, why);
    rq->error = SL_KAFKA_SASL_AUTHENTICATION_FAILED;
    int64_t delay = rq->b->cfg.connection_failed_authentication_delay_ms;
    sl_delayed *d = delay > 0 ? calloc(1, sizeof *d) : NULL;
    if (d) d->t = sl_timer_start(rq->b->loop, delay, delayed_fire, d);
    if (!d || !d->t) {
        free(d);
        delayed_finish(rq, data, len);
        return;
    }
    sl_req_hold(rq);
    d->rq = rq;
    d->data = data;
    d->len = len;
    d->next = rq->b->delayed;
    if (d->next) d->next->prev = d;
    rq->b->delayed = d;
}

void sl_sasl_flush_delayed(sl_broker *b) {
    while (b->delayed) {
        sl_delayed *d = b->delayed;
        sl_req *rq = d->rq;
        sl_timer_cancel(b->loop, d->t);
        delayed_unlink(b, d);
        sl_req_noreply(rq);
        free(d);
        sl_req_release(rq);
    }
}

/* ---- SaslHandshake ---- */

void sl_h_sasl_handshake(sl_req *rq) {
    sl_sasl_handshake_req req = *(const sl_sasl_handshake_req *)rq->req;
    sl_session *s = sl_conn_data(rq->conn);
    sl_sasl_handshake_resp resp;
    sl_sasl_handshake_resp_init(&resp);
    const char *names[8];
    int n = s ? sl_auth_mech_names(s->mechs, names, 8) : 0;
    sl_str *list = sl_arena_alloc(rq->a, sizeof(sl_str) * 8);
    if (!list) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) list[i] = sl_str_c(names[i]);
    resp.mechanisms = list;
    resp.mechanisms_count = n;
    sl_err e = !s || !s->mechs ? SL_ESTATE
               : req.mechanism.len < 0
                   ? SL_ENOTFOUND
                   : sl_session_handshake(s, req.mechanism.p, (size_t)req.mechanism.len,
                                          rq->h.api_version == 0);
    /* KIP-368: re-authentication needs the v1 flow (SaslAuthenticate), never raw tokens. */
    if (!e && s->reauth && rq->h.api_version == 0) {
        s->state = SL_SASL_FAILED;
        e = SL_ESTATE;
    }
    if (e == SL_OK) {
        SL_RESPOND(rq, sasl_handshake, &resp);
        return;
    }
    resp.error_code =
        e == SL_ENOTFOUND ? SL_KAFKA_UNSUPPORTED_SASL_MECHANISM : SL_KAFKA_ILLEGAL_SASL_STATE;
    emit_auth(rq->b, rq->conn, s, activity(s), false,
              mech_label(req.mechanism.p ? req.mechanism.p : "",
                         req.mechanism.len > 0 ? (size_t)req.mechanism.len : 0),
              e == SL_ENOTFOUND ? "unknown mechanism" : "illegal SASL state", 0);
    char addr[64];
    sl_log_limited(SL_LOG_INFO, "auth", "SASL handshake refused",
                   sl_log_peer_addr(sl_conn_peer(rq->conn), addr, sizeof addr),
                   "peer=%s mechanism=\"%.*s\" error=%d", sl_conn_peer(rq->conn),
                   req.mechanism.len > 64 ? 64
                                          : (int)(req.mechanism.len < 0 ? 0 : req.mechanism.len),
                   req.mechanism.p ? req.mechanism.p : "", resp.error_code);
    /* Kafka answers and then closes: the client may not try another mechanism on this
     * connection. */
    SL_RESPOND(rq, sasl_handshake, &resp);
    sl_conn *c = sl_pending_conn(rq->p);
    if (c) sl_conn_close(c, true, "SASL handshake refused");
}

/* ---- SaslAuthenticate and raw tokens ---- */

static int64_t finish_success(sl_broker *b, sl_conn *c, sl_session *s) {
    sl_conn_set_authenticated(c);
    int64_t now = sl_wall_ms(), life = b->cfg.connections_max_reauth_ms;
    s->expires_ms = life > 0 ? now + life : 0;
    /* A bearer token's expiry always bounds the session (Kafka only applies it when
     * connections.max.reauth.ms is set; an expired token should never keep a connection). */
    if (s->credential_expiry_ms > 0 && (!s->expires_ms || s->credential_expiry_ms < s->expires_ms))
        s->expires_ms = s->credential_expiry_ms;
    if (s->expires_ms) life = s->expires_ms > now ? s->expires_ms - now : 1;
    SL_INFO("auth", s->reauth ? "re-authenticated" : "authenticated",
            "peer=%s principal=%s mechanism=%s", sl_conn_peer(c), s->principal,
            sl_mech_name(s->mech));
    life = life > 0 ? life : 0;
    emit_auth(b, c, s, s->reauth ? SL_AUTH_REAUTH : SL_AUTH_LOGON, true, sl_mech_name(s->mech),
              NULL, life);
    return life;
}

/* Logs and reports a failed exchange, once, when it fails (a delayed answer goes out later
 * but is not a second failure). */
static void log_failure(sl_broker *b, sl_conn *c, const sl_session *s) {
    /* A guesser decides how many of these there are: bounded per client address. */
    sl_log_limited(SL_LOG_WARN, "auth", "authentication failed", s->addr,
                   "peer=%s principal=%s mechanism=%s", c ? sl_conn_peer(c) : "-",
                   s->attempt_principal[0] ? s->attempt_principal : "-", sl_mech_name(s->mech));
    emit_auth(b, c, s, s->reauth ? SL_AUTH_REAUTH : SL_AUTH_LOGON, false, sl_mech_name(s->mech),
              s->fail_reason ? s->fail_reason : "invalid credentials", 0);
}

void sl_h_sasl_authenticate(sl_req *rq) {
    sl_sasl_authenticate_req req = *(const sl_sasl_authenticate_req *)rq->req;
    sl_session *s = sl_conn_data(rq->conn);
    sl_sasl_authenticate_resp resp;
    sl_sasl_authenticate_resp_init(&resp);
    if (!s || s->raw || (s->state != SL_SASL_HANDSHAKE && s->state != SL_SASL_EXCHANGE) ||
        (s->reauth && rq->h.api_version < 1)) {
        resp.error_code = SL_KAFKA_ILLEGAL_SASL_STATE;
        resp.error_message = sl_str_c("SaslAuthenticate without a SaslHandshake");
        if (s)
            emit_auth(rq->b, rq->conn, s, activity(s), false,
                      s->mech ? sl_mech_name(s->mech) : NULL, "illegal SASL state", 0);
        resp.auth_bytes = (sl_bytes){(const uint8_t *)"", 0};
        SL_RESPOND(rq, sasl_authenticate, &resp);
        sl_conn *c = sl_pending_conn(rq->p);
        if (c) sl_conn_close(c, true, "illegal SASL state");
        return;
    }
    uint8_t *out = sl_arena_alloc(rq->a, TOKEN_MAX);
    if (!out) {
        sl_req_fail(rq, "out of memory");
        return;
    }
    size_t out_len = 0;
    bool done = false;
    sl_err e = sl_session_step(rq->b->auth, s, req.auth_bytes.p ? req.auth_bytes.p : out,
                               req.auth_bytes.len > 0 ? (size_t)req.auth_bytes.len : 0, out,
                               TOKEN_MAX, &out_len, &done);
    resp.auth_bytes = (sl_bytes){out, (int32_t)out_len};
    if (e) {
        log_failure(rq->b, rq->conn, s);
        resp.error_code = SL_KAFKA_SASL_AUTHENTICATION_FAILED;
        resp.error_message = sl_str_c(sl_auth_failed_message(s->mech));
        resp.auth_bytes = (sl_bytes){out, 0};
        sl_wr w;
        sl_req_resp_begin(rq, &w);
        sl_sasl_authenticate_resp_encode(&w, rq->h.api_version, &resp);
        if (w.err) {
            sl_req_fail(rq, "out of memory");
            return;
        }
        fail_later(rq, w.buf, w.len, "authentication failed");
        return;
    }
    if (done) resp.session_lifetime_ms = finish_success(rq->b, rq->conn, s);
    SL_RESPOND(rq, sasl_authenticate, &resp);
}

bool sl_sasl_raw_frame(sl_req *rq, const uint8_t *frame, size_t len) {
    sl_session *s = sl_conn_data(rq->conn);
    if (!s || !s->raw || (s->state != SL_SASL_HANDSHAKE && s->state != SL_SASL_EXCHANGE))
        return false;
    rq->raw = true;
    uint8_t *out = sl_arena_alloc(rq->a, TOKEN_MAX);
    if (!out) {
        sl_req_fail(rq, "out of memory");
        return true;
    }
    size_t out_len = 0;
    bool done = false;
    sl_err e = sl_session_step(rq->b->auth, s, frame, len, out, TOKEN_MAX, &out_len, &done);
    if (e) {
        /* The raw flow has no error frame: Kafka just closes the connection. */
        log_failure(rq->b, rq->conn, s);
        fail_later(rq, NULL, 0, "authentication failed");
        return true;
    }
    if (done) {
        (void)finish_success(rq->b, rq->conn, s);
        s->raw = false;
    }
    sl_req_respond_raw(rq, out, out_len);
    return true;
}

/* ---- the authenticate stage ---- */

bool sl_sasl_authenticate_stage(sl_req *rq) {
    sl_session *s = sl_conn_data(rq->conn);
    if (!s) return true;
    /* SSL without SASL: the handshake verified the client certificate before this first frame
     * could arrive; that is the connection's authentication (anonymous ones are not reported). */
    if (!s->mechs && !s->reported && sl_conn_tls_subject(rq->conn)) {
        s->reported = true;
        emit_auth(rq->b, rq->conn, s, SL_AUTH_LOGON, true, "SSL", NULL, 0);
    }
    /* What may come before authentication is the descriptors' one list (SL_API_PREAUTH). */
    if (rq->api && (rq->api->flags & SL_API_PREAUTH)) return true;
    if (!s->authenticated) {
        /* Kafka closes such connections without an answer. */
        sl_req_fail(rq, "request before authentication");
        return false;
    }
    if (s->raw && (s->state == SL_SASL_HANDSHAKE || s->state == SL_SASL_EXCHANGE)) {
        sl_req_fail(rq, "request during a raw SASL exchange");
        return false;
    }
    if (s->expires_ms && sl_wall_ms() >= s->expires_ms) {
        /* Pipelined frames behind this one meet the same closed session: reported once. */
        if (!s->reported) {
            s->reported = true;
            emit_auth(rq->b, rq->conn, s, SL_AUTH_EXPIRED, false, sl_mech_name(s->mech),
                      "session expired", 0);
        }
        sl_req_fail(rq, "SASL session expired (connections.max.reauth.ms)");
        return false;
    }
    return true;
}
