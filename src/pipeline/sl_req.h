/* One request's lifecycle, shared by `serve` and (later) `gateway`.
 *
 * Every request that reaches the application is an sl_req in its own arena, from the frame to
 * the last byte written: start and end time, API and version, the principal (resolved once, at
 * authentication), every resource it named with the operation and the authorization decision,
 * bytes and records in and out, and the outcome. Whatever happens (a response, an error that
 * closes the connection, acks=0, a SASL token, a version fallback), the request ends in exactly
 * one call of the finish path (sl_req_respond, sl_req_respond_raw, sl_req_noreply or
 * sl_req_fail), which notifies the observers (metrics, audit) and hands the bytes to the
 * connection. Nothing else needs to see requests. */
#ifndef SL_PIPELINE_REQ_H
#define SL_PIPELINE_REQ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "net/sl_server.h"
#include "proto/sl_proto.h"

struct sl_broker;
struct sl_api_desc;

/* A resource a request named, with what the authorization stage decided about it. */
typedef struct sl_req_res {
    sl_str name; /* arena copy: valid as long as the request */
    int8_t rtype, op;
    uint8_t flags;          /* SL_AZ_* (sl_authorize.h) */
    bool allowed;           /* the stage's decision */
    int32_t ops;            /* with SL_AZ_OPS: Kafka's authorized-operations bitfield */
    bool by_alt;            /* allowed through its alternative, not asked itself */
    int16_t error;          /* outcome for this resource (a Kafka error code, 0: none recorded) */
    const char *decided_by; /* a denial: the rule or binding that decided (arena; NULL: none) */
    int32_t alt;            /* index of the alternative resource, -1: none */
    int32_t hnext;          /* hash chain (index + 1; 0 ends) */
} sl_req_res;

/* Data a request read or wrote in one topic-partition, for audit and metrics: recorded by the
 * descriptor's `outcomes` from the answer (Produce: the appended batches; Fetch: the batches
 * returned), walking batch headers only. */
typedef struct sl_req_data {
    sl_str topic; /* arena copy */
    int32_t partition;
    bool write;                        /* Produce; false: Fetch */
    int16_t error;                     /* the partition's outcome */
    int64_t first_offset, last_offset; /* -1 when nothing was read or written */
    int64_t records, bytes;
} sl_req_data;

typedef enum {
    SL_REQ_OUT_NONE,     /* still running */
    SL_REQ_OUT_RESPONSE, /* answered */
    SL_REQ_OUT_NOREPLY,  /* completed without an answer (acks=0) */
    SL_REQ_OUT_CLOSED,   /* the connection was closed instead of an answer */
} sl_req_outcome;

typedef struct sl_req {
    struct sl_broker *b; /* the backend and configuration serving this request */
    sl_conn *conn;       /* borrowed; may close while the request runs (sl_pending_conn) */
    sl_pending *p;       /* owns the arena */
    sl_arena *a;
    const struct sl_api_desc *api; /* NULL until the header decoded to a served API */
    sl_req_header h;
    sl_rd body;
    /* The whole frame as received (header then body, no size prefix), in the arena: the
     * gateway forwards it as it is when nothing needs rewriting. */
    const uint8_t *frame;
    size_t frame_len;
    void *req; /* the decoded request body (the API's generated struct), in the arena */
    bool raw;  /* a bare SASL token frame (no Kafka header) */

    /* lifecycle, for the observers */
    int64_t start_ns, end_ns;
    const char *principal; /* arena copy, set by the authenticate stage; NULL before */
    /* With an IAM principal (AWS_MSK_IAM or an MSK token): who, an arena copy set by the
     * authenticate stage; the authorize stage decides by its policies. NULL otherwise. */
    const struct sl_iam_identity *iam;
    bool tls; /* the connection is TLS (aws:SecureTransport) */
    const char *peer, *listener;
    uint64_t conn_id;
    sl_req_res *res; /* resources named, in naming order */
    int32_t nres, capres;
    int32_t *hash; /* res index + 1 by name hash; capacity 2 * capres */
    int64_t bytes_in, bytes_out, records_in, records_out;
    sl_req_data *data; /* per topic-partition data access, in answer order */
    int32_t ndata, capdata;
    int16_t error; /* request-level outcome (a Kafka error code) */
    sl_req_outcome outcome;
    const char *why; /* with SL_REQ_OUT_CLOSED: the reason (static or arena) */
} sl_req;

/* Observers see each finished request exactly once, on the loop thread, before its bytes go
 * to the connection; `rq` and what it points to are valid only during the call. */
typedef void (*sl_req_observer_fn)(void *ctx, const sl_req *rq);
typedef struct sl_req_observer {
    sl_req_observer_fn fn;
    void *ctx;
} sl_req_observer;
#define SL_REQ_MAX_OBSERVERS 8
typedef struct sl_req_observers {
    sl_req_observer list[SL_REQ_MAX_OBSERVERS];
    int n;
} sl_req_observers;
/* false when the list is full. */
bool sl_req_observers_add(sl_req_observers *o, sl_req_observer_fn fn, void *ctx);

/* Starts the lifecycle of a frame: allocates the request in `a` (which `p` owns). NULL when
 * out of memory (the caller then closes the connection and completes `p`). */
sl_req *sl_req_start(struct sl_broker *b, sl_conn *c, sl_pending *p, sl_arena *a,
                     const uint8_t *frame, size_t len);

/* ---- the finish path: exactly one of these per request ---- */
/* Byte ranges this large (record sets, a relayed upstream answer) go to the socket straight from
 * where they are; smaller ones are cheaper to copy than to give their own iovec. */
#define SL_RESP_REF_MIN 2048
/* Starts a response writer in the request arena with the response header already written. */
void sl_req_resp_begin(sl_req *rq, sl_wr *w);
/* Sends what `w` holds (or closes the connection if encoding ran out of memory). */
void sl_req_respond(sl_req *rq, sl_wr *w);
/* Sends `len` bytes from the arena as they are (a bare SASL token, a pre-encoded answer). */
void sl_req_respond_raw(sl_req *rq, const uint8_t *data, size_t len);
/* Completes without an answer (acks=0). */
void sl_req_noreply(sl_req *rq);
/* Closes the connection (after what is queued ahead) instead of answering: malformed
 * requests are never answered with guesses. `why` is logged and kept (static or arena). */
void sl_req_fail(sl_req *rq, const char *why);
/* True once one of the above ran. */
bool sl_req_finished(const sl_req *rq);

/* An asynchronous completion (flush callback, parked fetch or join) that will still use the
 * request's arena holds it until done, so failing or closing the request frees nothing the
 * completion touches. Loop thread only. */
void sl_req_hold(sl_req *rq);
void sl_req_release(sl_req *rq);

/* Records the outcome for the resource the request named as (op, rtype, name), for the
 * observers (first error wins; authorization denials are recorded by the stage). */
void sl_req_res_error(sl_req *rq, int op, int rtype, sl_str name, int16_t err);

/* Appends a data-access entry (the topic name is copied into the arena); NULL when out of memory
 * (the entry is then not recorded). */
sl_req_data *sl_req_data_add(sl_req *rq, sl_str topic, int32_t partition, bool write);

/* Allocates a zeroed response array of `n` elements (n <= 0: empty) in the request arena and
 * sets its count; false when out of memory. `n` is evaluated more than once. */
#define SL_RESP_ARRAY(rq, arr, cnt, n)                                                             \
    (((arr) = sl_arena_calloc((rq)->a, (size_t)((n) > 0 ? (n) : 1), sizeof *(arr))) != NULL &&     \
     ((cnt) = (n) > 0 ? (n) : 0, true))

/* The topic x partition shape most data APIs answer in: allocates, in the request arena, the
 * response's topic array for the request's `rnt` topics (count into `ont`, at least 0) and in
 * each response topic its partition array, zeroed, with as many elements as the request topic
 * has partitions (`rcount`: the request topic's partition count field; `oparts`/`ocount`: the
 * response topic's array and count fields). False when out of memory. Handlers then fill the
 * mirrored arrays in one loop (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords,
 * OffsetCommit, OffsetDelete). */
#define SL_RESP_MIRROR(rq, rtopics, rnt, rcount, otopics, ont, oparts, ocount)                     \
    sl_resp_mirror_((rq)->a, (rtopics), sizeof *(rtopics), (rnt),                                  \
                    offsetof(__typeof__(*(rtopics)), rcount), (void **)&(otopics), &(ont),         \
                    sizeof *(otopics), offsetof(__typeof__(*(otopics)), oparts),                   \
                    offsetof(__typeof__(*(otopics)), ocount), sizeof *(otopics)->oparts)
bool sl_resp_mirror_(sl_arena *a, const void *rtopics, size_t rsize, int32_t rnt, size_t rcount_off,
                     void **otopics, int32_t *ont, size_t osize, size_t oparts_off,
                     size_t ocount_off, size_t psize);

/* Records per-resource outcomes from the answer `resp` (the API's response struct), through the
 * request's descriptor (sl_api.h). SL_RESPOND calls it. */
void sl_api_outcomes(sl_req *rq, const void *resp);

/* Encodes response struct `resp` of type sl_<name>_resp and finishes the request with it. */
#define SL_RESPOND(rq, name, resp)                                                                 \
    do {                                                                                           \
        sl_wr w_;                                                                                  \
        sl_api_outcomes((rq), (resp));                                                             \
        sl_req_resp_begin((rq), &w_);                                                              \
        sl_##name##_resp_encode(&w_, (rq)->h.api_version, (resp));                                 \
        sl_req_respond((rq), &w_);                                                                 \
    } while (0)

#endif
