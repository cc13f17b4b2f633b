/* libFuzzer target for `sluice audit verify` (sl_audit_verify_files, src/audit): a trail file is
 * untrusted input (an attacker who edits the trail chooses its bytes). The input is written as
 * one trail file and verified with a fixed Ed25519 key, the one that signed the seed trails in
 * tests/fuzz/corpus/audit_verify (so mutations reach the chain and signature checks, not only the
 * JSON parser). Invariants: no crash, no leak, and a verdict that is either intact or names a
 * line within the file. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/sl_audit_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seed trails' signing key: 32 fixed bytes (a test key, never used elsewhere). */
static const unsigned char k_seed[32] = "sluice-fuzz-audit-verify-key-32b";

static EVP_PKEY *g_pub;
static char g_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    if (!g_pub) {
        g_pub = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k_seed, sizeof k_seed);
        snprintf(g_path, sizeof g_path, "/tmp/sl_fuzz_audit_%d.jsonl", (int)getpid());
        if (!g_pub) abort();
    }
    FILE *f = fopen(g_path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    long lines = 0;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    char *paths[1] = {g_path};
    sl_audit_verdict v;
    memset(&v, 0, sizeof v);
    sl_audit_verify_files(paths, 1, g_pub, size && (data[0] & 1), NULL, &v);
    if (!v.ok && (v.line < 0 || v.line > lines + 1)) abort();
    unlink(g_path);
    return 0;
}
