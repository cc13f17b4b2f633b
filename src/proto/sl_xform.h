/* The per-partition transform chain over record sets, in the order the data flows:
 *
 *   produce:  legacy up-convert -> validate -> protect -> seal
 *   fetch:    unseal -> unprotect -> legacy down-convert -> codec checks
 *
 * Legacy conversion (sl_legacy.h), validation and the codec checks (sl_batch.h) are built-in
 * stages. `protect` and `unprotect` are slots: a feature such as field protection registers one
 * transform (a function with its context) in a chain and sets it on the partitions it applies
 * to; the Produce and Fetch handlers make one call each and never change.
 *
 * Transforms work on record sets in the request arena. A transform that changes the bytes
 * returns new ones (allocated in the arena, or the same buffer rewritten in place, which is
 * writable) and says so; the chain reports whether any stage rewrote the set, so the copy-free
 * fetch path (stored bytes referenced straight into the response) stays for every set no
 * transform touched: with no transform registered and a v4+ Fetch client, sl_xform_fetch
 * returns the very pointer it was given. Everything runs on the request's thread; a chain is
 * immutable once set on a partition. */
#ifndef SL_PROTO_XFORM_H
#define SL_PROTO_XFORM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"

/* What a stage knows about the record set it is given. */
typedef struct sl_xform_ctx {
    sl_arena *a;          /* the request arena: rewritten sets are allocated here */
    int16_t api_version;  /* of the Produce or Fetch request */
    int64_t now_ms;       /* produce: wall clock, stamped on magic-0 records */
    int64_t max_bytes;    /* produce: max.message.bytes; fetch: this partition's byte budget */
    int64_t fetch_offset; /* fetch: the offset asked for */
    sl_str topic;         /* borrowed, for transforms configured per topic */
    int32_t partition;
    /* The request the set belongs to (pipeline/sl_req.h; NULL in tools and tests): transforms
     * that depend on who asks (field protection's reveal) read its principal, and report what
     * they did as events with its connection. */
    const struct sl_req *rq;
    /* Produce: where a transform that refuses the set says why, for the partition's
     * error_message (NUL-terminated, no record data); NULL when nobody asks. */
    char *why;
    size_t whylen;
    /* Produce: the set goes on to a backend that checks every batch's CRC itself (the
     * gateway's upstream). When no transform reads the records either, the CRC pass is left
     * to it: the bytes reach it unchanged, so its CORRUPT_MESSAGE is the same answer. A
     * transform always gets a checked set: it would otherwise re-seal garbage as valid. */
    bool crc_checked_downstream;
} sl_xform_ctx;

/* A transform. On produce it gets whole, validated magic-2 batches and must return whole,
 * valid magic-2 batches with the same batch headers' offsets, counts and producer fields
 * (sequence checks and the append follow); on fetch it gets the stored batches as the log
 * returned them (the last may be cut short) and returns batches in the same form. To change
 * the bytes it points *data and *len at the new set and sets *rewritten; otherwise it leaves all
 * three alone. Returns a Kafka error code (0: go on). */
typedef int16_t (*sl_xform_fn)(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                               bool *rewritten);

typedef struct sl_xform {
    sl_xform_fn fn; /* NULL: empty slot */
    void *arg;      /* the transform's context, borrowed by the chain */
} sl_xform;

/* The registered transforms of one or more partitions. Owned by whoever registered them (the
 * partition borrows it); it must outlive every request that reads it. */
typedef struct sl_xform_chain {
    sl_xform protect;   /* produce, after validation */
    sl_xform unprotect; /* fetch, before legacy down-conversion */
    /* The gateway's record encryption toward the upstream (src/gateway/sl_gwcrypt.h): seal runs
     * last on produce (after protect), unseal first on fetch (before unprotect), so field
     * protection always sees clear records and the upstream only envelopes. */
    sl_xform seal;
    sl_xform unseal;
} sl_xform_chain;

/* Runs the produce stages on one partition's record set, *records (in c->a, borrowed), replacing
 * it when a stage rewrites it. `chain` may be NULL (built-in stages only). *nbatches (optional)
 * gets the number of batches validated. Returns a Kafka error code: the legacy converter's, then
 * sl_batch_validate_set's, then the protect transform's. */
int16_t sl_xform_produce(const sl_xform_chain *chain, const sl_xform_ctx *c, sl_bytes *records,
                         int *nbatches);

/* Runs the fetch stages on stored batches data[0..len) (as sl_log_read returned them, in c->a),
 * replacing *data and *len when a stage rewrites or shortens them. *rewritten (optional) is set
 * when the bytes are no longer the stored ones (shortening by the codec check is not a rewrite: the
 * bytes are still a prefix of the stored ones). `chain` may be NULL. Returns a Kafka error code:
 * the unprotect transform's, then the legacy converter's (Fetch v0-3) or
 * sl_batch_fetch_codec_check's (Fetch v4-9). */
int16_t sl_xform_fetch(const sl_xform_chain *chain, const sl_xform_ctx *c, uint8_t **data,
                       size_t *len, bool *rewritten);

#endif
