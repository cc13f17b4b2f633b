/* libFuzzer target for the SASL parsers. The first byte picks the target: SCRAM client-first,
 * SCRAM client-final, PLAIN, base64 (a successful decode must re-encode to the same text, so
 * no two encodings mean one value), or a whole SCRAM exchange (client-first and client-final
 * separated by the first 0xff byte) against a fixed user and a mock for anybody else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_plain.h"
#include "auth/sl_scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const uint8_t *p, size_t n, sl_str s) {
    return s.len >= 0 && (const uint8_t *)s.p >= p && (const uint8_t *)s.p + s.len <= p + n;
}

static bool lookup(void *ctx, const char *user, size_t n, int mech, sl_scram_cred *out) {
    static const uint8_t salt[16] = "fuzz-salt-16byte";
    uint8_t salted[SL_SCRAM_MAX_HASH];
    memset(out, 0, sizeof *out);
    bool known = n == 4 && !memcmp(user, "user", 4);
    /* One iteration keeps the fuzzer fast; the exchange does not depend on the count. */
    if (sl_scram_salted_password(mech, "pencil", 6, salt, sizeof salt, 1, salted) ||
        sl_scram_cred_from_salted(mech, salted, salt, sizeof salt, 1, out))
        abort();
    return known;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    uint8_t which = data[0] % 5;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (which) {
    case 0: {
        sl_scram_client_first f;
        if (sl_scram_parse_client_first(p, n, &f) == SL_OK) {
            if (!inside(p, n, f.bare) || !inside(p, n, f.nonce) || !inside(p, n, f.gs2_header) ||
                f.nonce.len <= 0 || f.user_len == 0 || f.user_len > SL_SCRAM_MAX_USER ||
                strlen(f.user) != f.user_len)
                abort();
        }
        break;
    }
    case 1: {
        sl_scram_client_final f;
        if (sl_scram_parse_client_final(p, n, &f) == SL_OK) {
            if (!inside(p, n, f.without_proof) || !inside(p, n, f.nonce) ||
                !inside(p, n, f.channel_binding) || f.proof_len == 0 ||
                f.proof_len > SL_SCRAM_MAX_HASH)
                abort();
        }
        break;
    }
    case 2: {
        sl_plain_msg m;
        if (sl_plain_parse(p, n, &m) == SL_OK) {
            if (!inside(p, n, m.authzid) || !inside(p, n, m.authcid) || !inside(p, n, m.passwd) ||
                m.authcid.len == 0 || m.passwd.len == 0 ||
                (m.authzid.len && !sl_str_eq(m.authzid, m.authcid)))
                abort();
        }
        break;
    }
    case 3: {
        uint8_t out[8192];
        char enc[8192 / 3 * 4 + 8];
        long got = sl_b64_decode((const char *)p, n, out, sizeof out);
        if (got >= 0) {
            size_t el = sl_b64_encode(out, (size_t)got, enc);
            if (el != n || memcmp(enc, p, n) != 0) abort();
        }
        break;
    }
    default: {
        const uint8_t *sep = memchr(p, 0xff, n);
        size_t n1 = sep ? (size_t)(sep - p) : n;
        const uint8_t *p2 = sep ? sep + 1 : p + n;
        size_t n2 = sep ? n - n1 - 1 : 0;
        static sl_scram_server s;
        char out[SL_SCRAM_MAX_MSG + 512];
        size_t ol = 0;
        int mech = (n1 & 1) ? SL_SCRAM_SHA_512 : SL_SCRAM_SHA_256;
        if (sl_scram_server_first(&s, mech, p, n1, lookup, NULL, out, sizeof out, &ol) == SL_OK) {
            if (ol == 0 || ol > sizeof out) abort();
            (void)sl_scram_server_final(&s, p2, n2, out, sizeof out, &ol);
        }
        sl_scram_server_clear(&s);
        break;
    }
    }
    return 0;
}
