/* The one place security and health events go (docs/ARCHITECTURE.md, "Events").
 *
 * Sources report facts at their stage: the server reports connections opened, refused and
 * closed; the authenticate stage reports logins; the finish path reports every finished request
 * (through a request observer the hub registers, sl_req.h); the broker reports its own life;
 * detections report findings. Consumers subscribe once and see every event: the audit trail
 * (src/audit) turns them into OCSF records, metrics (src/metrics) count them, the guard
 * (src/guard) evaluates detections over them. No source knows its consumers.
 *
 * Everything runs on the loop thread. An event and every pointer in it are valid only during
 * the call to a subscriber; a subscriber that keeps something copies it. A subscriber may emit
 * further events (the guard emits findings); they are delivered before emit returns, depth
 * first, to every subscriber. */
#ifndef SL_EVENTS_H
#define SL_EVENTS_H
#include <stdbool.h>
#include <stdint.h>

#include "pipeline/sl_req.h"

typedef enum {
    SL_EV_REQUEST,   /* a finished request: `rq` (API activity, data access, denials) */
    SL_EV_AUTH,      /* an authentication attempt or session end: `auth` (OCSF 3002) */
    SL_EV_NET,       /* a connection opened, refused or closed: `net` (OCSF 4001) */
    SL_EV_APP,       /* the broker's own life: `app` (OCSF 6002) */
    SL_EV_ADMIN,     /* a management action that is not a request (certificate reload): `admin` */
    SL_EV_DETECTION, /* a finding of a built-in rule: `det` (OCSF 2004) */
    SL_EV_KEY,       /* a KMS call or key lifecycle step, or a batch failing authentication */
    SL_EV_PROTECT,   /* field protection: a reveal, a forget, a grant change, a policy load */
    SL_EV_UPSTREAM,  /* gateway: a connection to an upstream broker set up, failed or lost */
} sl_ev_kind;

typedef enum {
    SL_AUTH_LOGON,   /* a first authentication on a connection (success or failure) */
    SL_AUTH_REAUTH,  /* a re-authentication (KIP-368) */
    SL_AUTH_EXPIRED, /* the session lifetime passed without re-authentication: closed */
} sl_auth_activity;

typedef struct sl_ev_auth {
    sl_auth_activity activity;
    bool success;
    const char *mechanism;       /* "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER", "SSL" (mTLS) */
    const char *user;            /* the name the client claimed (failures too); NULL: unknown */
    const char *reason;          /* failures: why, never the secret ("invalid credentials") */
    int64_t session_lifetime_ms; /* success: the session's lifetime (0: unlimited) */
    const char *tls_version;     /* NULL on plain listeners */
    const char *tls_cipher;
    const char *cert_subject; /* the client certificate's subject, NULL when none */
} sl_ev_auth;

typedef enum {
    SL_NET_OPEN,
    SL_NET_REFUSED, /* closed at accept: `reason` says which limit (or "blocked") */
    SL_NET_CLOSE,
} sl_net_activity;

typedef struct sl_ev_net {
    sl_net_activity activity;
    const char *reason; /* refusals: "max.connections", "max.connections.per.ip",
                         * "sluice.ssl.handshake.rate.per.ip", "sluice.ssl.max.handshakes.per.ip",
                         * "blocked"; closes: why, NULL for an orderly end */
    int64_t bytes_in, bytes_out, duration_ms; /* closes */
    int64_t count; /* refusals: how many this event stands for (>1: a summary of refusals
                    * held back by a consumer's rate limit); 0 or 1: one */
    /* closes: the TLS handshake failed, why: OpenSSL's reason text ("no shared cipher",
     * "unsupported protocol", "certificate verify failed", "peer closed", ...; a fixed set,
     * nothing the peer wrote); NULL when the handshake did not fail (or no TLS) */
    const char *tls_failure;
} sl_ev_net;

typedef enum {
    SL_APP_START,
    SL_APP_STOP,
    SL_APP_CONFIG,      /* configuration loaded: `digest` (SHA-256 of the effective, non-secret
                         * values), `detail` the file */
    SL_APP_TRAIL_OPEN,  /* an audit file opened: `detail` its path */
    SL_APP_TRAIL_ROTATE /* an audit file rotated: `detail` the new path */
} sl_app_activity;

typedef struct sl_ev_app {
    sl_app_activity activity;
    const char *detail;
    const char *digest;
} sl_ev_app;

typedef struct sl_ev_admin {
    const char *action;   /* "certificate reload" */
    const char *resource; /* "listener SASL_SSL" */
    bool success;
    const char *detail; /* failures: why */
} sl_ev_admin;

typedef struct sl_ev_detection {
    const char *rule;    /* stable id: "auth_bruteforce_address", "auth_bruteforce_principal",
                          * "denial_spike", "new_address", "new_topic_read", "cert_expiry",
                          * "disk_full", "address_blocked" */
    const char *title;   /* one line for people */
    int severity;        /* OCSF severity_id: 1 info, 2 low, 3 medium, 4 high, 5 critical */
    const char *subject; /* what the finding is about: an address, a principal, a topic, a path */
    double value, threshold;
    int64_t window_ms;
    int64_t block_ms; /* address_blocked: how long it is refused */
} sl_ev_detection;

/* Key use (docs/encryption-at-rest.md): one per KMS call (never per cached use) and per
 * lifecycle step; also a stored batch that failed authentication (op "tamper"). */
typedef struct sl_ev_key {
    const char *op;       /* wrap, unwrap, generate, describe, destroy, rotate, rewrap, retire,
                             shred, reencrypt, tamper */
    const char *provider; /* "local", "pkcs11", "kmip", "aws-kms" */
    const char *key_id;   /* KEK id (provider's), or NULL */
    uint32_t key_version; /* KEK version, 0: n/a */
    const char *topic;    /* topic name or id (hex), NULL: none / system key */
    int32_t partition;    /* -1: n/a */
    const char *reason;   /* why: "new topic", "cache miss", "start", "rotate", "shred", ... */
    bool success;
    const char *detail; /* failure reason (never key material) or NULL */
    int64_t latency_ms;
} sl_ev_key;

/* Field protection (docs/field-protection.md). Reveals are reported once per fetched partition
 * and encrypt rule with values shown or failed (never per record); the principal, peer and
 * connection are the event's. */
typedef struct sl_ev_protect {
    const char *op;     /* "reveal", "forget", "grant", "revoke", "policy", "reject" */
    const char *topic;  /* reveal, reject: the topic; grant/revoke: the grant's topic */
    int32_t partition;  /* reveal, reject: the partition; -1: n/a */
    const char *field;  /* reveal: the rule target ("value.card_number"); grant: the field */
    const char *view;   /* reveal, grant: "reveal", "mask", "token" */
    const char *target; /* grant/revoke: the principal granted; forget: the subject's token
                         * string (never the clear id); policy: the file */
    int64_t count;      /* reveal: values shown; reject: records refused */
    int64_t failed;     /* reveal: values that did not decrypt (forgotten subject, destroyed
                         * key, tampered) and were left as stored */
    bool success;
    const char *detail; /* failures: why (a policy error names its line); NULL */
} sl_ev_protect;

/* `sluice gateway` (docs/gateway.md): one per upstream connection attempt and per loss, so
 * failures reaching the cluster are in the trail and the metrics. */
typedef struct sl_ev_upstream {
    const char *op;      /* "connect", "lost" */
    int32_t node;        /* upstream node id; -1: a bootstrap address */
    const char *address; /* upstream host:port */
    bool success;
    const char *detail; /* failures and losses: why (never a secret) */
} sl_ev_upstream;

typedef struct sl_event {
    sl_ev_kind kind;
    int64_t time_ms;       /* wall clock; emit fills it when 0 */
    uint64_t conn_id;      /* 0: no connection */
    const char *principal; /* "User:alice"; NULL: none (before authentication) */
    const char *peer;      /* client "ip:port"; NULL: none */
    const char *listener;  /* listener name; NULL: none */
    union {
        const sl_req *rq;
        sl_ev_auth auth;
        sl_ev_net net;
        sl_ev_app app;
        sl_ev_admin admin;
        sl_ev_detection det;
        sl_ev_key key;
        sl_ev_protect protect;
        sl_ev_upstream upstream;
    };
} sl_event;

typedef void (*sl_event_fn)(void *ctx, const sl_event *ev);

#define SL_EVENTS_MAX_SUBSCRIBERS 8
typedef struct sl_events {
    struct {
        sl_event_fn fn;
        void *ctx;
    } subs[SL_EVENTS_MAX_SUBSCRIBERS];
    int n;
    int depth; /* nesting of emit calls (findings emitted from inside a delivery) */
} sl_events;

/* Adds a subscriber (in the order they are added, which is the order of delivery); false when
 * the list is full. `ctx` is borrowed and must outlive the hub's use. */
bool sl_events_subscribe(sl_events *h, sl_event_fn fn, void *ctx);
/* Removes every subscription whose context is `ctx` (a consumer's free calls it first). */
void sl_events_unsubscribe(sl_events *h, void *ctx);
/* Delivers `ev` to every subscriber (filling time_ms when 0). Loop thread only. */
void sl_events_emit(sl_events *h, const sl_event *ev);
/* The request observer that turns finished requests into SL_EV_REQUEST events; add it to the
 * pipeline's observers (sl_req_observers_add(&obs, sl_events_request_observer, h)). */
void sl_events_request_observer(void *h, const sl_req *rq);

/* A subscriber that logs each event as one debug line (sub=event; nothing when the level is
 * above debug), the way tests and operators see what the sources report. Never a secret: events
 * carry none. `ctx` is unused but identifies the subscription (the broker passes the hub). */
void sl_events_debug_subscriber(void *ctx, const sl_event *ev);

/* (The client address without the port: sl_log_peer_addr, base/sl_logging.h.) The port of
 * "ip:port", 0 when none. */
int sl_events_peer_port(const char *peer);

#endif
