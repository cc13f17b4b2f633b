/* libFuzzer target for field protection's strings (src/protect/sl_fcrypt.h): the ciphertext
 * string parser reads record values written by anyone who can produce to a topic, and reveal
 * decrypts what it accepts. Whatever the bytes: no read outside the input (an exact-size heap
 * copy, so ASan sees one); an accepted header is coherent (key name valid, version >= 1, payload
 * inside the input); and decryption under fixed key contexts never succeeds, because the inputs
 * (seeds included: tests/fuzz/corpus/fcstring, written under other key bytes) were not sealed
 * with them: a success would be a forgery. The token shape check, base64url decoder and mask
 * run over the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "protect/sl_fcrypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Contexts for key "k" version 1 without a subject and with subject id 00..0f, the names and
 * versions the seeds use, so decryption gets past the header check to authentication. */
static sl_fc_key *g_plain, *g_subject;

static void init_keys(void) {
    if (g_plain) return;
    uint8_t k[32], s[32], id[16];
    for (int i = 0; i < 32; i++) k[i] = (uint8_t)(0xa0 + i), s[i] = (uint8_t)(0x50 + i);
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)i;
    if (sl_fc_key_new(k, "k", 1, NULL, NULL, &g_plain) ||
        sl_fc_key_new(k, "k", 1, s, id, &g_subject))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_keys();
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sl_fc_header h;
    if (sl_fc_parse(buf, size, &h) == SL_OK) {
        if ((h.alg != SL_FC_GCM && h.alg != SL_FC_SIV) || h.version == 0 ||
            !sl_fc_keyname_ok(h.key, strlen(h.key)) || h.payload_off >= size)
            abort();
        sl_arena *a = sl_arena_new(1024);
        if (!a) abort();
        uint8_t t, *pt;
        size_t pl;
        if (sl_fc_decrypt(g_plain, buf, size, &h, a, &t, &pt, &pl) == SL_OK) abort();
        if (sl_fc_decrypt(g_subject, buf, size, &h, a, &t, &pt, &pl) == SL_OK) abort();
        sl_arena_free(a);
    }
    (void)sl_fc_is_token(buf, size);
    uint8_t *out = malloc(size ? size : 1);
    if (!out) abort();
    if (sl_fc_b64url_decode(buf, size, out, size) > (long)size) abort();
    sl_fc_mask m = {(int)(size % 5), (int)(size % 3), '*'};
    if (sl_fc_mask_apply(&m, (const uint8_t *)buf, size, out) > size) abort();
    free(out);
    free(buf);
    return 0;
}
