#include "sl_plain.h"

#include <string.h>

sl_err sl_plain_parse(const uint8_t *msg, size_t len, sl_plain_msg *out) {
    memset(out, 0, sizeof *out);
    if (len < 4 || len > 3 * SL_PLAIN_MAX_FIELD + 2) return SL_EPROTO;
    const uint8_t *z1 = memchr(msg, 0, len);
    if (!z1) return SL_EPROTO;
    const uint8_t *z2 = memchr(z1 + 1, 0, len - (size_t)(z1 + 1 - msg));
    if (!z2 || memchr(z2 + 1, 0, len - (size_t)(z2 + 1 - msg))) return SL_EPROTO;
    out->authzid = (sl_str){(const char *)msg, (int32_t)(z1 - msg)};
    out->authcid = (sl_str){(const char *)z1 + 1, (int32_t)(z2 - z1 - 1)};
    out->passwd = (sl_str){(const char *)z2 + 1, (int32_t)(msg + len - z2 - 1)};
    if (out->authcid.len <= 0 || out->passwd.len <= 0 || out->authzid.len > SL_PLAIN_MAX_FIELD ||
        out->authcid.len > SL_PLAIN_MAX_FIELD || out->passwd.len > SL_PLAIN_MAX_FIELD)
        return SL_EPROTO;
    if (out->authzid.len > 0 && !sl_str_eq(out->authzid, out->authcid)) return SL_EPROTO;
    for (int32_t i = 0; i < out->authcid.len; i++)
        if ((unsigned char)out->authcid.p[i] < 0x20 || out->authcid.p[i] == 0x7f) return SL_EPROTO;
    return SL_OK;
}
