/* libFuzzer target for the gateway's SCRAM client (src/gateway/sl_saslc.h): what an upstream
 * broker says back is untrusted. The first byte picks the target:
 *   0: server-first parsing (sl_saslc_parse_server_first) for the client nonce "fuzzNONCE";
 *   1: server-final checking (sl_saslc_scram_verify) against a fixed expected signature;
 *   2: a whole client step: client-first with a fixed nonce, then client-final computed from
 *      the input as server-first (SHA-256 or SHA-512 by the second byte's low bit).
 * Invariants:
 *   - an accepted server-first has a nonce that extends ours, lies inside the input, an
 *     iteration count within SL_SASLC_MIN_ITER..SL_SASLC_MAX_ITER and a 1..64-byte salt;
 *   - a server-final is accepted only when it carries exactly the expected signature;
 *   - client-final is "c=biws,r=<the server's nonce>,p=<proof>" and fits its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sl_scram.h"
#include "gateway/sl_saslc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CNONCE "fuzzNONCE"

static void check_first(const uint8_t *p, size_t n) {
    sl_saslc_server_first sf;
    if (sl_saslc_parse_server_first(p, n, CNONCE, strlen(CNONCE), &sf) != SL_OK) return;
    if (sf.nonce_len <= strlen(CNONCE) || memcmp(sf.nonce, CNONCE, strlen(CNONCE))) abort();
    if ((const uint8_t *)sf.nonce < p || (const uint8_t *)sf.nonce + sf.nonce_len > p + n) abort();
    if (sf.iterations < SL_SASLC_MIN_ITER || sf.iterations > SL_SASLC_MAX_ITER) abort();
    if (sf.salt_len < 1 || sf.salt_len > SL_SCRAM_MAX_SALT) abort();
}

static void check_final(const uint8_t *p, size_t n, int mech) {
    sl_saslc_scram s;
    memset(&s, 0, sizeof s);
    s.mech = mech;
    s.step = 2;
    size_t hl = sl_scram_hash_len(mech);
    for (size_t i = 0; i < hl; i++) s.server_sig[i] = (uint8_t)(i * 7 + 1);
    char want[(SL_SCRAM_MAX_HASH / 3 + 1) * 4 + 4] = "v=";
    size_t wl = 2 + sl_b64_encode(s.server_sig, hl, want + 2);
    sl_err e = sl_saslc_scram_verify(&s, p, n);
    if (e == SL_OK && (n < wl || memcmp(p, want, wl) || (n > wl && p[wl] != ','))) abort();
    if (sl_saslc_scram_verify(&s, p, n) != SL_ESTATE) abort(); /* one use only */
}

static void check_exchange(const uint8_t *p, size_t n, int mech) {
    sl_saslc_server_first sf;
    /* Only inputs that parse reach the key derivation; keep those at the floor so a run stays
     * fast (4096 PBKDF2 rounds). */
    if (sl_saslc_parse_server_first(p, n, CNONCE, strlen(CNONCE), &sf) != SL_OK ||
        sf.iterations != SL_SASLC_MIN_ITER)
        return;
    sl_saslc_scram s;
    char first[512], fin[SL_SASLC_MAX_MSG + 256];
    size_t fl, l;
    if (sl_saslc_scram_first(&s, mech, "gw,=user", CNONCE, first, sizeof first, &fl) != SL_OK)
        abort();
    if (fl != strlen("n,,n=gw=2C=3Duser,r=" CNONCE) || memcmp(first, "n,,n=gw=2C=3Duser,r=", 20))
        abort();
    if (sl_saslc_scram_final(&s, "pw", 2, p, n, fin, sizeof fin, &l) != SL_OK) abort();
    if (l < 9 + sf.nonce_len + 3 || memcmp(fin, "c=biws,r=", 9) ||
        memcmp(fin + 9, sf.nonce, sf.nonce_len) || memcmp(fin + 9 + sf.nonce_len, ",p=", 3))
        abort();
    sl_saslc_scram_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int mech = data[1] & 1 ? SL_SCRAM_SHA_512 : SL_SCRAM_SHA_256;
    switch (data[0] % 3) {
    case 0:
        check_first(data + 2, size - 2);
        break;
    case 1:
        check_final(data + 2, size - 2, mech);
        break;
    default:
        check_exchange(data + 2, size - 2, mech);
    }
    return 0;
}
