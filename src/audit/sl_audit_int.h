/* Internals of the audit trail shared by its files and the unit tests: the JSON line builder,
 * the OCSF formatting of events, the data-access aggregation, the hash chain and checkpoint
 * signatures, and the verifier. Not for use outside src/audit and tests/unit/test_audit*.c. */
#ifndef SL_AUDIT_INT_H
#define SL_AUDIT_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "audit/sl_audit.h"
#include "base/sl_text.h"

/* ---- JSON pieces of a line (a base/sl_text.h buffer) ---- */
/* A JSON string literal of n bytes: quotes, backslash and control characters escaped, valid
 * UTF-8 copied, every byte that is not valid UTF-8 replaced by U+FFFD. NULL (s) is `null`. */
void sl_json_str(sl_text *b, const char *s, size_t n);
void sl_json_cstrq(sl_text *b,
                   const char *s); /* sl_json_str of a NUL-terminated (or NULL) string */

/* ---- OCSF ---- */
#define SL_OCSF_VERSION "1.1.0"
/* What every line of a trail says about where it comes from. */
typedef struct sl_ocsf_src {
    const char *cluster_id;
    int32_t node_id;
} sl_ocsf_src;

/* One event's class fields, ready to be chained: `body` is the JSON members after metadata
 * (no braces), `unmapped` extra members of the unmapped object (may be empty). */
typedef struct sl_ocsf_ev {
    const char *code; /* metadata.event_code: the event type ("authenticate"), or "checkpoint" */
    int class_uid, activity_id, severity_id;
    int64_t time_ms;
} sl_ocsf_ev;

/* Data access of one principal x client x topic-partition (Produce or Fetch), summed over an
 * interval or one request. */
typedef struct sl_audit_data {
    const char *principal, *client_id, *peer, *listener, *topic;
    int32_t partition;
    bool write;
    int64_t records, bytes, first_offset, last_offset; /* offsets -1: none */
    int64_t requests, errors;
    int16_t last_error;
    int64_t start_ms, end_ms;
} sl_audit_data;

/* Formatting: each appends the class members of one event to `b` (each member preceded by a
 * comma), members for the unmapped object to `x` (the same way), and fills `ev`. */
void sl_ocsf_auth(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
void sl_ocsf_net(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
void sl_ocsf_app(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
void sl_ocsf_admin(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
void sl_ocsf_detection(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
/* Key use (SL_EV_KEY): API Activity, api.operation "kms:<op>", api.service.name the provider,
 * resources the KEK and the topic id; data failing authentication ("tamper") is severity High. */
void sl_ocsf_key(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
/* Field protection (SL_EV_PROTECT): API Activity, api.operation "protect:<op>", api.service.name
 * "field-protection", resources the topic (with the partition), the field (with the view) and the
 * target (principal granted, subject token, policy file); unmapped protect_op, view, count,
 * failed. */
void sl_ocsf_protect(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
void sl_ocsf_upstream(sl_text *b, sl_text *x, const sl_event *e, sl_ocsf_ev *ev);
/* A management or describe request: one event with every resource it named and its outcome. */
void sl_ocsf_request(sl_text *b, sl_text *x, const sl_event *e, sl_audit_type type, sl_ocsf_ev *ev);
/* One denied resource of a request (index `i` of rq->res). */
void sl_ocsf_denial(sl_text *b, sl_text *x, const sl_event *e, int32_t i, sl_ocsf_ev *ev);
/* Data access: `n` entries of one principal and client (n > 1 only for one request with
 * sluice.audit.data.interval.ms=0). */
void sl_ocsf_data(sl_text *b, sl_text *x, const sl_audit_data *d, int n, int64_t time_ms,
                  sl_ocsf_ev *ev);
/* A lifecycle line of the trail itself (activity 99 with a name, or start 3 / stop 4). */
void sl_ocsf_trail(sl_text *b, int activity_id, const char *activity_name, const char *code,
                   const char *message, int64_t time_ms, sl_ocsf_ev *ev);

/* The whole line (into an empty `out`): metadata with `seq`, the common members, `body`, then
 * unmapped: cluster, node, `extra` (may be NULL), prev_hash last.
 * `prev_hex` is 64 hex digits. Returns false when out of memory. */
bool sl_ocsf_line(sl_text *out, const sl_ocsf_src *src, uint64_t seq, const sl_ocsf_ev *ev,
                  const sl_text *body, const sl_text *extra, const char *prev_hex);

/* True when resource `i` of the request is only the alternative of another resource that was
 * allowed (CREATE on the cluster, or else on the topic): its denial decided nothing. */
bool sl_audit_alt_allowed(const sl_req *rq, int32_t i);
/* The API's name for the catalogue ("CreateTopics"); "ApiKey<n>" for others (in buf). */
const char *sl_audit_api_name(int16_t key, char *buf, size_t n);
bool sl_audit_api_management(int16_t key);
bool sl_audit_api_describe(int16_t key);

/* ---- chain and checkpoints ---- */
#define SL_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"
/* SHA-256 of n bytes as 64 lowercase hex digits + NUL. */
void sl_audit_sha256_hex(const void *p, size_t n, char out[65]);
/* The bytes a checkpoint signs. */
int sl_audit_cp_message(char *buf, size_t n, uint64_t seq, const char *prev_hex, int64_t time_ms,
                        const char *reason);
/* Ed25519 signature of msg as 128 hex digits + NUL; false on failure. */
bool sl_audit_sign(EVP_PKEY *key, const char *msg, size_t n, char out[129]);
bool sl_audit_verify_sig(EVP_PKEY *pub, const char *msg, size_t n, const char *sig_hex);
/* First 16 hex digits of the SHA-256 of the raw public key. */
bool sl_audit_key_id(EVP_PKEY *key, char out[17]);
/* Loads the private key at `path`, creating it (0600) when missing; writes <path>.pub when
 * missing. Caller owns *out. */
sl_err sl_audit_key_load(const char *path, EVP_PKEY **out, char *err, size_t elen);
/* A public key from a PEM file (PUBLIC KEY, or a private key whose public half is used). */
EVP_PKEY *sl_audit_pubkey_read(const char *path);

/* Emits the data-access summaries gathered so far (the interval's end; tests). Loop thread. */
void sl_audit_flush_data(sl_audit *a);

/* ---- verification ---- */
typedef struct sl_audit_verdict {
    bool ok;
    char file[512];
    long line;   /* 1-based line in `file` of the first bad event */
    int64_t seq; /* its sequence, -1: unknown */
    char what[512];
    long events, checkpoints, files;
    int warnings;
} sl_audit_verdict;
/* Verifies the files in order as one trail. `allow_open` accepts a trail without the final
 * checkpoint (a running broker's). Notes and warnings go to `notes` (may be NULL). */
void sl_audit_verify_files(char *const *paths, int n, EVP_PKEY *pub, bool allow_open, FILE *notes,
                           sl_audit_verdict *v);

#endif
