/* Segment frame codec; the format is specified in docs/on-disk-format.md (keep them in sync). */
#include "sl_frame.h"

#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "proto/sl_batch.h"

size_t sl_frame_encode(uint8_t *h, sl_frame *f) {
    if (f->nlen > SL_FRAME_NONCE_MAX || f->tlen > SL_FRAME_TAG_MAX ||
        f->plen > SL_FRAME_PAYLOAD_MAX || (f->nlen && !f->nonce))
        return 0;
    f->hlen = (uint16_t)(SL_FRAME_HDR_MIN + f->nlen);
    f->flen = (uint32_t)f->hlen + f->plen + f->tlen;
    h[0] = SL_FRAME_MAGIC;
    h[1] = SL_FRAME_TYPE_BATCH;
    sl_be16(h + 2, f->flags);
    sl_be16(h + 4, f->hlen);
    h[6] = f->nlen;
    h[7] = f->tlen;
    sl_be32(h + 8, f->flen);
    sl_be32(h + 12, f->key_id);
    sl_be32(h + 16, f->plen);
    sl_be64(h + 20, (uint64_t)f->base);
    sl_be32(h + 28, (uint32_t)f->lod);
    sl_be32(h + 32, (uint32_t)f->count);
    sl_be64(h + 36, (uint64_t)f->max_ts);
    sl_be32(h + 44, (f->flags & SL_FRAME_FLAG_ENC) ? f->ct_crc : 0); /* reserved when clear */
    if (f->nlen) memcpy(h + SL_FRAME_FIXED, f->nonce, f->nlen);
    size_t crc_at = SL_FRAME_FIXED + f->nlen;
    sl_be32(h + crc_at, sl_crc32c(0, h, crc_at));
    return f->hlen;
}

size_t sl_frame_encode_batch(uint8_t *h, int64_t base, int32_t lod, int32_t count, int64_t max_ts,
                             uint32_t plen, sl_frame *f) {
    sl_frame tmp = {.base = base, .lod = lod, .count = count, .max_ts = max_ts, .plen = plen};
    size_t n = sl_frame_encode(h, &tmp);
    if (f) *f = tmp;
    return n;
}

sl_frame_status sl_frame_decode(const uint8_t *p, size_t avail, sl_frame *f) {
    if (avail < SL_FRAME_HDR_MIN) return SL_FRAME_SHORT;
    if (p[0] != SL_FRAME_MAGIC || p[1] != SL_FRAME_TYPE_BATCH) return SL_FRAME_CORRUPT;
    f->flags = sl_get_be16(p + 2);
    f->hlen = sl_get_be16(p + 4);
    f->nlen = p[6];
    f->tlen = p[7];
    if (f->nlen > SL_FRAME_NONCE_MAX || f->tlen > SL_FRAME_TAG_MAX) return SL_FRAME_CORRUPT;
    if (f->hlen != SL_FRAME_HDR_MIN + f->nlen) return SL_FRAME_CORRUPT;
    if (avail < f->hlen) return SL_FRAME_SHORT;
    if (sl_crc32c(0, p, (size_t)f->hlen - 4) != sl_get_be32(p + f->hlen - 4))
        return SL_FRAME_CORRUPT;
    f->flen = sl_get_be32(p + 8);
    f->key_id = sl_get_be32(p + 12);
    f->plen = sl_get_be32(p + 16);
    f->base = (int64_t)sl_get_be64(p + 20);
    f->lod = (int32_t)sl_get_be32(p + 28);
    f->count = (int32_t)sl_get_be32(p + 32);
    f->max_ts = (int64_t)sl_get_be64(p + 36);
    f->nonce = f->nlen ? p + SL_FRAME_FIXED : NULL;
    f->ct_crc = sl_get_be32(p + 44);
    if (f->flags == SL_FRAME_FLAG_ENC) {
        /* One cipher: any other slot size is damage or a downgrade (a short tag). */
        if (f->key_id == 0 || f->nlen != SL_FRAME_ENC_NONCE || f->tlen != SL_FRAME_ENC_TAG)
            return SL_FRAME_CORRUPT;
    } else if (f->flags != 0 || f->key_id != 0 || f->nlen != 0 || f->tlen != 0 || f->ct_crc != 0) {
        return SL_FRAME_CORRUPT;
    }
    if (f->plen < SL_BATCH_HEADER_SIZE || f->plen > SL_FRAME_PAYLOAD_MAX) return SL_FRAME_CORRUPT;
    if ((uint64_t)f->flen != (uint64_t)f->hlen + f->plen + f->tlen) return SL_FRAME_CORRUPT;
    if (f->lod < 0 || f->count < 0 || f->base < 0 || f->base > INT64_MAX - f->lod - 1)
        return SL_FRAME_CORRUPT;
    return SL_FRAME_OK;
}

bool sl_frame_payload_ok(const sl_frame *f, const uint8_t *payload) {
    sl_batch_info b;
    /* The clear part of a sealed batch header parses like any other (the CRC is not checked). */
    if (sl_batch_parse_exact(payload, f->plen, &b) != SL_OK) return false;
    if (b.base_offset != f->base || b.last_offset_delta != f->lod) return false;
    if (f->flags & SL_FRAME_FLAG_ENC)
        return sl_crc32c(0, payload, (size_t)f->plen + f->tlen) == f->ct_crc;
    return sl_batch_crc_ok(payload, f->plen);
}
