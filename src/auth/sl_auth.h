/* Authentication: the broker-wide context (enabled mechanisms, credential store, failure
 * counters, per-address connection counts) and the per-connection session with its SASL state
 * machine. Transport-agnostic: the broker feeds it tokens (from SaslAuthenticate or raw frames)
 * and sends what it returns.
 *
 * Everything here runs on the loop thread. */
#ifndef SL_AUTH_H
#define SL_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sl_credstore.h"
#include "auth/sl_scram.h"
#include "base/sl_config.h"
#include "base/sl_err.h"

/* Mechanism bits. */
enum {
    SL_MECH_PLAIN = 1u,
    SL_MECH_SCRAM_SHA_256 = 2u,
    SL_MECH_SCRAM_SHA_512 = 4u,
    SL_MECH_OAUTHBEARER = 8u,  /* JWT validation in src/auth/sl_jwt.c; MSK IAM tokens too */
    SL_MECH_AWS_MSK_IAM = 16u, /* SigV4-signed payload, src/auth/sl_msk_iam.h + src/iam */
};
/* Bit for a SASL mechanism name (exact, case-sensitive as Kafka), or 0. */
unsigned sl_mech_from_name(const char *name, size_t len);
const char *sl_mech_name(unsigned bit);

typedef struct sl_auth sl_auth;

/* Builds the context from `cfg` (not kept). Opens (creating if `need_store`) the credential
 * store: sluice.sasl.credentials.file, or <log.dirs>/sluice-users. Errors name the key. */
sl_err sl_auth_new(const sl_config *cfg, bool need_store, sl_auth **out, char *err, size_t err_len);
void sl_auth_free(sl_auth *a);

/* Path of the credential store a configuration designates (CLI and broker agree on it). */
void sl_auth_store_path(const sl_config *cfg, char *out, size_t len);

/* Validates and records the mechanisms of one SASL listener (`tls`: SASL_SSL). Refuses GSSAPI
 * and unknown names, an empty list, and PLAIN or AWS_MSK_IAM without TLS unless
 * sluice.sasl.plain.allow.insecure=true; AWS_MSK_IAM without the IAM context
 * (sl_auth_set_iam first); OAUTHBEARER starts the JWT validator (which loads the key set,
 * blocking), which with the IAM context only happens when sasl.oauthbearer.jwks.endpoint.url is
 * set (else OAUTHBEARER takes MSK IAM tokens only). Call once per SASL listener at start. */
sl_err sl_auth_add_listener(sl_auth *a, const char *listener, bool tls, char *err, size_t err_len);
/* The mechanism bits `cfg` enables for `listener` (sasl.enabled.mechanisms or its
 * listener.name override), before any listener is added; 0 when the list names none or an
 * unknown one (sl_auth_add_listener then explains). */
unsigned sl_auth_config_mechs(const sl_config *cfg, const char *listener);
/* Mechanism bits enabled on `listener` (0 for a non-SASL listener). */
unsigned sl_auth_listener_mechs(const sl_auth *a, const char *listener);
/* Comma-free list for SaslHandshake answers: fills names (at most 8) and returns the count. */
int sl_auth_mech_names(unsigned mechs, const char **names, int max);

/* Gives the context the broker's IAM context (borrowed; outlives `a`), which AWS_MSK_IAM and
 * MSK OAUTHBEARER tokens are verified against. Without it neither is accepted. */
struct sl_iam;
void sl_auth_set_iam(sl_auth *a, struct sl_iam *iam);

/* The store, opening (and with `create`, creating) it on first use; NULL if unavailable. */
sl_credstore *sl_auth_store(sl_auth *a, bool create);

/* Failure counters (in memory; the metrics issue exports them). Keys are principals
 * ("User:alice") and client addresses ("127.0.0.1"). */
void sl_auth_count_failure(sl_auth *a, const char *principal, const char *addr);
uint64_t sl_auth_failures(const sl_auth *a, const char *key);

/* Per-address connection accounting against cfg->max_connections_per_ip: true if `addr` may
 * open one more (and counts it); sl_auth_conn_closed() undoes a counted open. The broker does
 * not use it: sl_server enforces the limit at accept, before any TLS work, and forgets
 * addresses without connections (this table keeps every address it has seen). */
bool sl_auth_conn_opened(sl_auth *a, const char *addr);
void sl_auth_conn_closed(sl_auth *a, const char *addr);

/* ---- sessions ---- */

typedef enum {
    SL_SASL_IDLE,      /* no handshake yet (or a finished exchange) */
    SL_SASL_HANDSHAKE, /* mechanism chosen; expects the first token */
    SL_SASL_EXCHANGE,  /* mid-exchange (SCRAM's second round) */
    SL_SASL_FAILED,
} sl_sasl_state;

#define SL_PRINCIPAL_MAX (5 + SL_SCRAM_MAX_USER + 1)

typedef struct sl_session {
    sl_sasl_state state;
    unsigned mechs; /* enabled on the listener; 0: not a SASL listener */
    unsigned mech;  /* chosen mechanism bit */
    bool raw;       /* SaslHandshake v0: tokens arrive as bare frames */
    bool authenticated;
    bool reauth;                  /* exchange started on an authenticated connection (KIP-368) */
    int64_t expires_ms;           /* wall clock; 0: never */
    int64_t credential_expiry_ms; /* set by a successful step: the token's exp (OAUTHBEARER) */
    char principal[SL_PRINCIPAL_MAX];
    char attempt_principal[SL_PRINCIPAL_MAX]; /* who the running exchange claims to be */
    /* After a failed step: why, one of a fixed set of texts that never hold the secret
     * ("invalid credentials", "malformed", "token expired", "invalid token", "principal
     * changed", and for IAM logins "not allowed kafka-cluster:Connect"); static. NULL
     * otherwise. */
    const char *fail_reason;
    bool reported; /* the broker's once-per-connection report (mTLS logon, expiry) was made */
    bool tls;      /* the connection is TLS (set by the broker): IAM's aws:SecureTransport */
    char addr[64];
    sl_scram_server scram;
    /* After an IAM login (AWS_MSK_IAM, or OAUTHBEARER with an MSK token): who (malloc'd, owned
     * by the session, freed with it); NULL for every other login. */
    struct sl_iam_identity *iam;
} sl_session;

/* Malloc'd session for a connection from `peer` ("ip:port") on a listener with `mechs`
 * (0: authenticated at once as `principal`, e.g. "User:ANONYMOUS"). */
sl_session *sl_session_new(const char *peer, unsigned mechs, const char *principal);
/* Wipes and frees. */
void sl_session_free(sl_session *s);

/* Starts an exchange for mechanism `name`: SL_OK, SL_ENOTFOUND (not enabled here: answer
 * UNSUPPORTED_SASL_MECHANISM), SL_ESTATE (an exchange is running: ILLEGAL_SASL_STATE). */
sl_err sl_session_handshake(sl_session *s, const char *name, size_t len, bool raw);

/* Feeds one client token. On SL_OK, `out` (cap bytes) holds *out_len bytes to send and *done
 * says whether the exchange finished successfully (the session is then authenticated as
 * s->principal). SL_EAUTH: authentication failed (one message for every reason); SL_ESTATE:
 * no exchange is running. */
sl_err sl_session_step(sl_auth *a, sl_session *s, const uint8_t *in, size_t len, uint8_t *out,
                       size_t cap, size_t *out_len, bool *done);

/* The message every failed authentication gets, whatever the cause. */
const char *sl_auth_failed_message(unsigned mech);

#endif
