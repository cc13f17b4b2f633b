/* libFuzzer target for the keyring decoder (src/kms/sl_keyring.c). The input's last 4 bytes are
 * replaced by its CRC-32C so the fuzzer reaches the structure behind the checksum. Invariants:
 * no crash or leak on any input; what decodes re-encodes to exactly the same bytes (the format
 * has one encoding per keyring), and decodes again; sl_keyring_merge of it keeps it whole and
 * decodable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_crc32c.h"
#include "kms/sl_keyring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4 || size > (1u << 20)) return 0;
    uint8_t *b = malloc(size);
    if (!b) return 0;
    memcpy(b, data, size);
    uint32_t crc = sl_crc32c(0, b, size - 4);
    b[size - 4] = (uint8_t)(crc >> 24);
    b[size - 3] = (uint8_t)(crc >> 16);
    b[size - 2] = (uint8_t)(crc >> 8);
    b[size - 1] = (uint8_t)crc;
    sl_keyring kr;
    char why[160];
    if (sl_keyring_decode(b, size, &kr, why, sizeof why) == SL_OK) {
        uint8_t *e = NULL;
        size_t n = 0;
        if (sl_keyring_encode(&kr, &e, &n) == SL_OK) {
            if (n != size || memcmp(e, b, size)) abort();
            sl_keyring again;
            if (sl_keyring_decode(e, n, &again, why, sizeof why) != SL_OK) abort();
            sl_keyring_free(&again);
            free(e);
        }
        /* The merge of processes sharing the file (sl_keyring_merge) keeps a valid keyring:
         * everything as this process's additions, or as another's file. */
        sl_keyring empty = {0}, m;
        for (int pass = 0; pass < 2; pass++) {
            if (sl_keyring_merge(pass ? &empty : &kr, &empty, pass ? &kr : &empty, &m, NULL))
                continue;
            if (m.ntopics != kr.ntopics || m.nkeks != kr.nkeks) abort();
            if (sl_keyring_encode(&m, &e, &n) == SL_OK) {
                sl_keyring again;
                if (sl_keyring_decode(e, n, &again, why, sizeof why) != SL_OK) abort();
                sl_keyring_free(&again);
                free(e);
            }
            sl_keyring_free(&m);
        }
        sl_keyring_free(&kr);
    }
    free(b);
    return 0;
}
