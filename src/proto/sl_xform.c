/* The record-set transform chain; see sl_xform.h. */
#include "sl_xform.h"

#include "base/sl_err.h"
#include "proto/sl_batch.h"
#include "proto/sl_legacy.h"

/* Runs one registered transform, keeping the chain's view of the set consistent. */
static int16_t run(const sl_xform *x, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                   bool *rewritten) {
    if (!x->fn) return SL_KAFKA_NONE;
    uint8_t *d = *data;
    size_t l = *len;
    bool rw = false;
    int16_t ec = x->fn(x->arg, c, &d, &l, &rw);
    if (ec) return ec;
    if (rw || d != *data || l != *len) {
        *data = d;
        *len = l;
        *rewritten = true;
    }
    return SL_KAFKA_NONE;
}

int16_t sl_xform_produce(const sl_xform_chain *chain, const sl_xform_ctx *c, sl_bytes *records,
                         int *nbatches) {
    /* Produce v0-2 carries magic 0/1 message sets: converted to one v2 batch here, so every
     * later stage sees only magic 2. */
    int16_t ec = sl_legacy_produce_hook(c->api_version, records, c->a, c->now_ms, c->max_bytes);
    if (ec) return ec;
    int nb = 0;
    bool transforms = chain && (chain->protect.fn || chain->seal.fn);
    ec = transforms || !c->crc_checked_downstream
             ? sl_batch_validate_set(records->p, (size_t)records->len, c->api_version, c->max_bytes,
                                     &nb)
             : sl_batch_validate_set_shape(records->p, (size_t)records->len, c->api_version,
                                           c->max_bytes, &nb);
    if (ec) return ec;
    if (nbatches) *nbatches = nb;
    if (transforms) {
        /* The request frame lives in the arena the handler owns: writable. */
        uint8_t *d = (uint8_t *)records->p;
        size_t l = (size_t)records->len;
        bool rw = false;
        if (chain->protect.fn && (ec = run(&chain->protect, c, &d, &l, &rw))) return ec;
        if (chain->seal.fn && (ec = run(&chain->seal, c, &d, &l, &rw))) return ec;
        if (l > INT32_MAX) return SL_KAFKA_MESSAGE_TOO_LARGE;
        *records = (sl_bytes){d, (int32_t)l};
    }
    return SL_KAFKA_NONE;
}

int16_t sl_xform_fetch(const sl_xform_chain *chain, const sl_xform_ctx *c, uint8_t **data,
                       size_t *len, bool *rewritten) {
    bool rw = false;
    int16_t ec = SL_KAFKA_NONE;
    if (chain && chain->unseal.fn && *len > 0) ec = run(&chain->unseal, c, data, len, &rw);
    if (!ec && chain && chain->unprotect.fn && *len > 0)
        ec = run(&chain->unprotect, c, data, len, &rw);
    /* Fetch v0-3 clients get magic 0/1 message sets; newer ones the (stored) batches. */
    if (!ec && c->api_version <= 3 && *len > 0) {
        uint8_t *before = *data;
        ec = sl_legacy_fetch_hook(c->api_version, c->fetch_offset, c->max_bytes, c->a, data, len);
        if (*data != before) rw = true;
    }
    /* Only v2 batches have codec bits to check; below v4 the converter has already dealt with
     * zstd, and its message sets are not batches. */
    if (!ec && c->api_version >= 4) ec = sl_batch_fetch_codec_check(*data, len, c->api_version);
    if (rewritten) *rewritten = rw;
    return ec;
}
