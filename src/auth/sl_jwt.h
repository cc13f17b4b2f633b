/* OAUTHBEARER token validation as Kafka's KIP-768 broker side does it
 * (OAuthBearerValidatorCallbackHandler): a compact JWS signed with RS256 or ES256 by a key from a
 * JWKS (file:// or https://), with issuer, audience, expiry and subject checks.
 *
 * The validator owns its key set and a background thread that refreshes it every
 * sasl.oauthbearer.jwks.endpoint.refresh.ms, and sooner (rate-limited) when a token names an
 * unknown kid. The loop thread only ever takes a mutex for a pointer-sized critical section;
 * fetching and parsing happen on the refresh thread. See docs/oauthbearer.md. */
#ifndef SL_JWT_H
#define SL_JWT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_config.h"
#include "base/sl_err.h"

/* Hard limits: what a peer can make us parse. */
#define SL_JWT_MAX_TOKEN     (16 * 1024)
#define SL_JWKS_MAX_BYTES    (1024 * 1024)
#define SL_JSON_MAX_DEPTH    16
#define SL_JWT_MAX_PRINCIPAL 255

typedef struct sl_jwt_config {
    char jwks_url[SL_CFG_STR_MAX];        /* file:///abs/path or https://host[:port]/path */
    char jwks_truststore[SL_CFG_STR_MAX]; /* PEM CA bundle for https; "" = system CA store */
    int64_t refresh_ms;                   /* periodic refetch; default 3600000 */
    int64_t min_refetch_ms;               /* unknown-kid refetches at most this often; 10000 */
    int64_t fetch_timeout_ms;             /* whole https GET (connect+TLS+body); 10000 */
    char expected_issuer[SL_CFG_STR_MAX];
    char expected_audience[SL_CFG_STR_MAX]; /* comma list: the token's aud must contain one */
    int32_t clock_skew_s;                   /* default 30 */
    char sub_claim[SL_CFG_STR_MAX];         /* default "sub" */
    char scope_claim[SL_CFG_STR_MAX];       /* default "scope": parsed, not enforced */
} sl_jwt_config;

/* Fills `out` with the defaults above. */
void sl_jwt_config_defaults(sl_jwt_config *out);
/* Fills `out` from the broker configuration's sasl.oauthbearer.* keys (and
 * sluice.sasl.oauthbearer.jwks.endpoint.truststore). */
void sl_jwt_config_from(sl_jwt_config *out, const sl_config *c);

typedef struct sl_jwt_validator sl_jwt_validator;

/* Built from `cfg` (copied, not kept). Loads the key set once before returning (blocking, at
 * start-up, like Kafka's broker) and starts the refresh thread. NULL with a message naming the
 * key in `err` on bad configuration or when the first load fails. Caller owns the result. */
sl_jwt_validator *sl_jwt_validator_new(const sl_jwt_config *cfg, char *err, size_t elen);
/* Stops and joins the refresh thread. NULL is allowed. */
void sl_jwt_validator_free(sl_jwt_validator *v);

/* Validates a compact JWS. On success writes the principal (value of the sub claim name,
 * NUL-terminated, printable ASCII) and the expiry (ms since epoch). Thread: loop thread; never
 * blocks (an unknown kid triggers an async refetch and fails this attempt). Returns SL_OK, or
 * SL_EAUTH with a non-secret reason in `why` (never any part of the token). */
sl_err sl_jwt_validate(sl_jwt_validator *v, const char *token, size_t len, int64_t now_ms,
                       char *principal, size_t plen, int64_t *expiry_ms, char *why, size_t wlen);

/* Number of successful key set loads so far (1 after _new). Tests poll it after a rotation. */
uint64_t sl_jwt_validator_generation(sl_jwt_validator *v);
/* Asks the refresh thread to refetch now (rate limit ignored). Used by tests and SIGHUP. */
void sl_jwt_validator_refresh(sl_jwt_validator *v);

/* RFC 7628 client first message: "n,[a=authzid],\x01auth=Bearer <token>\x01[k=v\x01]*\x01".
 * On success points token and tlen into `msg`. A non-empty authzid must equal the token's
 * principal (Kafka's rule); it is returned through authzid and alen (alen 0 if absent).
 * SL_EAUTH on anything malformed. */
sl_err sl_oauthbearer_parse_client_msg(const char *msg, size_t len, const char **token,
                                       size_t *tlen, const char **authzid, size_t *alen);

#endif
