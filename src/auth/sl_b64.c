#include "sl_b64.h"

static const char k_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char k_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sl_b64_enc_len(size_t n) { return (n + 2) / 3 * 4 + 1; }
size_t sl_b64_dec_max(size_t n) { return n / 4 * 3 + 3; }

static size_t encode(const char *alpha, bool pad, const uint8_t *in, size_t n, char *out,
                     size_t cap) {
    if (cap < sl_b64_enc_len(n)) return 0;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        if (pad) out[o++] = '=', out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        if (pad) out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

size_t sl_b64std_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
    return encode(k_std, true, in, n, out, cap);
}
size_t sl_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
    return encode(k_url, false, in, n, out, cap);
}

static int val(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

/* `n` excludes padding. A final group of 1 character is impossible; the unused low bits of a
 * final group of 2 or 3 must be zero (RFC 4648 §3.5, canonical encoding). */
static bool decode(const char *in, size_t n, bool url, uint8_t *out, size_t cap, size_t *outlen) {
    size_t rem = n % 4, need = n / 4 * 3 + (rem ? rem - 1 : 0);
    if (rem == 1 || need > cap) return false;
    size_t o = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = val(in[i], url);
        if (v < 0) return false;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (uint8_t)(acc >> 16);
            out[o++] = (uint8_t)(acc >> 8);
            out[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (rem == 2) {
        if (acc & 0xf) return false;
        out[o++] = (uint8_t)(acc >> 4);
    } else if (rem == 3) {
        if (acc & 0x3) return false;
        out[o++] = (uint8_t)(acc >> 10);
        out[o++] = (uint8_t)(acc >> 2);
    }
    *outlen = o;
    return true;
}

bool sl_b64std_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
    if (n % 4) return false;
    size_t pad = 0;
    while (pad < 2 && n > pad && in[n - 1 - pad] == '=') pad++;
    return decode(in, n - pad, false, out, cap, outlen);
}

bool sl_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
    return decode(in, n, true, out, cap, outlen);
}
