/* Segment envelope codec; the layout is specified in docs/on-disk-format.md ("Encryption"). */
#include "storage/sl_envelope.h"

#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"

#define ENV_MAGIC   0x534C4556u /* "SLEV" */
#define ENV_VERSION 1
#define ENV_FIXED   44 /* bytes before the wrapped DEK */

static bool env_valid(const sl_envelope *e) {
    return e->alg == SL_ENV_ALG_AES256GCM && e->dek_id != 0 && e->tk_version != 0 &&
           e->partition >= 0 && e->seg_base >= 0 && e->wrapped_len >= 1 &&
           e->wrapped_len <= SL_ENV_WRAPPED_MAX;
}

size_t sl_envelope_encode(const sl_envelope *e, uint8_t *out, size_t cap) {
    if (!env_valid(e)) return 0;
    size_t n = ENV_FIXED + (size_t)e->wrapped_len + 4;
    if (n > cap || n > SL_ENV_MAX) return 0;
    sl_be32(out, ENV_MAGIC);
    out[4] = ENV_VERSION;
    out[5] = e->alg;
    out[6] = e->wrapped_len;
    out[7] = 0;
    sl_be32(out + 8, e->dek_id);
    memcpy(out + 12, e->topic_id, 16);
    sl_be32(out + 28, (uint32_t)e->partition);
    sl_be64(out + 32, (uint64_t)e->seg_base);
    sl_be32(out + 40, e->tk_version);
    memcpy(out + ENV_FIXED, e->wrapped, e->wrapped_len);
    sl_be32(out + n - 4, sl_crc32c(0, out, n - 4));
    return n;
}

sl_frame_status sl_envelope_decode(const uint8_t *p, size_t n, sl_envelope *e) {
    memset(e, 0, sizeof *e);
    /* The file header gives the envelope's exact length, so anything else is damage. */
    if (n < ENV_FIXED + 4 + 1 || n > SL_ENV_MAX) return SL_FRAME_CORRUPT;
    if (sl_get_be32(p) != ENV_MAGIC || p[4] != ENV_VERSION || p[7] != 0) return SL_FRAME_CORRUPT;
    if ((size_t)p[6] + ENV_FIXED + 4 != n) return SL_FRAME_CORRUPT;
    if (sl_crc32c(0, p, n - 4) != sl_get_be32(p + n - 4)) return SL_FRAME_CORRUPT;
    e->alg = p[5];
    e->wrapped_len = p[6];
    e->dek_id = sl_get_be32(p + 8);
    memcpy(e->topic_id, p + 12, 16);
    e->partition = (int32_t)sl_get_be32(p + 28);
    e->seg_base = (int64_t)sl_get_be64(p + 32);
    e->tk_version = sl_get_be32(p + 40);
    if (!env_valid(e)) {
        memset(e, 0, sizeof *e);
        return SL_FRAME_CORRUPT;
    }
    memcpy(e->wrapped, p + ENV_FIXED, e->wrapped_len);
    return SL_FRAME_OK;
}
