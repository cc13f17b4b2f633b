/* libFuzzer target for the encrypted segment format: the envelope codec, the frame codec, and
 * the log's open/read/re-encrypt paths over a segment file made of attacker bytes, with a fixed
 * topic key. The first input byte picks the mode:
 *   0: sl_envelope_decode of the rest; what decodes re-encodes to the same bytes;
 *   1: sl_frame_decode of the rest, then sl_frame_payload_ok when the frame is whole;
 *   2: the rest (after a flags byte) is `00000000000000000000.log` of a partition directory:
 *      open (recovery), set keys, read every offset with several sizes (batches and keyless
 *      headers), ListOffsets by time;
 *   3: as 2, then re-encrypt everything under topic-key version 2 and read again.
 * Flags bit 0: plaintext is allowed below offset 2^62 (else nowhere).
 * Invariants: nothing crashes, and every batch a read returns is a whole v2 batch with a correct
 * CRC: either clear data the flags allow, or the plaintext of a frame sealed with the fixed key
 * (the seeds), never bytes that failed or skipped authentication.
 *
 * Seeds: built with FUZZ_ENVELOPE_GEN_MAIN (see gen_seeds at the end):
 *   cc -std=c11 -D_GNU_SOURCE -Isrc -DFUZZ_ENVELOPE_GEN_MAIN -fsanitize=address,undefined \
 *      tests/fuzz/fuzz_envelope.c $(ls build/asan/src/ -R ...objects but cli/main.o) -lssl ...
 *   ./gen tests/fuzz/corpus/envelope */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sl_arena.h"
#include "base/sl_buf.h"
#include "base/sl_logging.h"
#include "crypto/sl_aead.h"
#include "crypto/sl_dek.h"
#include "proto/sl_batch.h"
#include "storage/sl_envelope.h"
#include "storage/sl_frame.h"
#include "storage/sl_log.h"
#include "storage/sl_storage_hooks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a fixed key service -------------------------------------------------------------------- */

static const uint8_t k_tk[SL_AEAD_KEY] = {
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
static uint32_t g_tk_version = 1;

static void dek_context(uint8_t out[36], const uint8_t topic[16], int32_t part, int64_t base,
                        uint32_t id) {
    memcpy(out, "SLDK", 4);
    memcpy(out + 4, topic, 16);
    sl_be32(out + 20, (uint32_t)part);
    sl_be64(out + 24, (uint64_t)base);
    sl_be32(out + 32, id);
}

static sl_err f_dek_new(void *ctx, const sl_log_keys *k, int64_t base, sl_envelope *env,
                        sl_dek **dek) {
    uint8_t key[SL_AEAD_KEY], c[36];
    static uint32_t next_id = 0x1000;
    uint32_t id = ++next_id;
    if (sl_random_key(key, sizeof key)) return SL_ENOMEM;
    dek_context(c, k->topic_id, k->partition, base, id);
    size_t wl = 0;
    sl_err e =
        sl_kwp_wrap(k_tk, c, sizeof c, key, sizeof key, env->wrapped, sizeof env->wrapped, &wl);
    if (!e) {
        env->wrapped_len = (uint8_t)wl;
        env->dek_id = id;
        env->tk_version = g_tk_version;
        e = sl_dek_new(id, key, dek);
    }
    memset(key, 0, sizeof key);
    return e;
}

static sl_err f_dek_open(void *ctx, const sl_log_keys *k, const sl_envelope *env, sl_dek **dek) {
    uint8_t key[80], c[36];
    size_t kl = 0;
    dek_context(c, k->topic_id, k->partition, env->seg_base, env->dek_id);
    sl_err e =
        sl_kwp_unwrap(k_tk, c, sizeof c, env->wrapped, env->wrapped_len, key, sizeof key, &kl);
    if (!e && kl != SL_AEAD_KEY) e = SL_ETAMPER;
    if (!e) e = sl_dek_new(env->dek_id, key, dek);
    memset(key, 0, sizeof key);
    return e;
}

static const sl_log_keys_ops k_ops = {.dek_new = f_dek_new, .dek_open = f_dek_open};

static sl_log_keys fuzz_keys(bool allow_plain) {
    sl_log_keys k = {.ops = &k_ops, .partition = 0, .plain_below = allow_plain ? (1LL << 62) : 0};
    memset(k.topic_id, 0x5A, sizeof k.topic_id);
    return k;
}

/* ---- the partition directory ---------------------------------------------------------------- */

static int no_fsync(int fd) { return 0; } /* speed: durability is not what is fuzzed */

static const char *fuzz_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        strcpy(dir, "/tmp/sl_fuzz_env_XXXXXX");
        if (!mkdtemp(dir)) abort();
        sl_storage_fsync = no_fsync;
        sl_log_set_level(SL_LOG_ERROR);
    }
    return dir;
}

static void clean_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') (void)unlinkat(dirfd(d), de->d_name, 0);
    if (d) closedir(d);
}

/* Every returned batch must be whole and carry a correct CRC. */
static void check_batches(const uint8_t *p, size_t len) {
    while (len > 0) {
        sl_batch_info b;
        if (!sl_batch_parse(p, len, &b) || b.magic != 2) abort();
        if (!sl_batch_crc_ok(p, b.size)) abort();
        p += b.size;
        len -= b.size;
    }
}

static void read_everything(sl_log *log) {
    static const int32_t sizes[] = {1, 300, 1 << 20};
    int64_t start = sl_log_start_offset(log), end = sl_log_end_offset(log);
    if (end - start > 4096) end = start + 4096;
    for (int64_t off = start; off < end; off++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            sl_arena *a = sl_arena_new(1 << 16);
            if (!a) return;
            uint8_t *out = NULL;
            size_t len = 0;
            if (sl_log_read(log, off, sizes[i], a, &out, &len) == SL_OK) check_batches(out, len);
            int n = 0;
            if (sl_log_read_headers(log, off, (int)i * 3 + 1, a, &out, &n) == SL_OK &&
                (n < 0 || n > (int)i * 3 + 1 || (n && !out)))
                abort();
            sl_arena_free(a);
        }
    int64_t o, ts;
    (void)sl_log_offset_for_time(log, 0, &o, &ts);
    (void)sl_log_max_timestamp(log, &o, &ts);
}

static void open_path(const uint8_t *p, size_t n, bool allow_plain, bool reenc) {
    const char *dir = fuzz_dir();
    clean_dir(dir);
    char path[128];
    snprintf(path, sizeof path, "%s/00000000000000000000.log", dir);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
    sl_log_config cfg;
    sl_log_config_default(&cfg);
    cfg.index_interval_bytes = 128;
    sl_log *log = NULL;
    if (sl_log_open(dir, &cfg, &log) == SL_OK) {
        sl_log_keys k = fuzz_keys(allow_plain);
        sl_log_set_keys(log, &k);
        read_everything(log);
        if (reenc) {
            g_tk_version = 2;
            for (int i = 0; i < 8; i++) {
                sl_log_reenc *j = NULL;
                if (sl_log_reenc_prepare(log, 2, &j) != SL_OK || !j) break;
                (void)sl_log_reenc_finish(j, sl_log_reenc_run(j));
            }
            g_tk_version = 1;
            read_everything(log);
        }
        sl_log_close(log);
    }
    clean_dir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1 << 20)) return 0;
    uint8_t mode = data[0] & 3;
    size_t n = size - 1;
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    if (n) memcpy(copy, data + 1, n);
    if (mode == 0) {
        sl_envelope e;
        if (sl_envelope_decode(copy, n, &e) == SL_FRAME_OK) {
            uint8_t out[SL_ENV_MAX];
            size_t m = sl_envelope_encode(&e, out, sizeof out);
            if (m != n || memcmp(out, copy, n) != 0) abort();
        }
    } else if (mode == 1) {
        sl_frame f;
        if (sl_frame_decode(copy, n, &f) == SL_FRAME_OK) {
            if (f.hlen > n || f.flen != (uint64_t)f.hlen + f.plen + f.tlen) abort();
            if ((f.flags & SL_FRAME_FLAG_ENC) &&
                (f.nlen != SL_FRAME_ENC_NONCE || f.tlen != SL_FRAME_ENC_TAG || !f.key_id))
                abort();
            if (f.flen <= n) (void)sl_frame_payload_ok(&f, copy + f.hlen);
        }
    } else if (n >= 1) {
        open_path(copy + 1, n - 1, copy[0] & 1, mode == 3);
    }
    free(copy);
    return 0;
}

#ifdef FUZZ_ENVELOPE_GEN_MAIN
#include "storage/sl_batch_build.h"

static void put_seed(const char *dir, const char *name, uint8_t mode, const uint8_t *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputc(mode, f);
    fwrite(p, 1, n, f);
    fclose(f);
}

/* Writes a segment of 4 batches (sealed under the fixed key, or clear) and returns its bytes. */
static uint8_t *make_segment(bool sealed, size_t *n) {
    const char *dir = fuzz_dir();
    clean_dir(dir);
    sl_log_config cfg;
    sl_log_config_default(&cfg);
    cfg.index_interval_bytes = 128;
    sl_log *log;
    if (sl_log_open(dir, &cfg, &log)) abort();
    sl_log_keys k = fuzz_keys(true);
    if (sealed) sl_log_set_keys(log, &k);
    sl_arena *a = sl_arena_new(1 << 16);
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *b = sl_batch_build(a, 1000 + i, 2 + i, "seed-value", 10, &len);
        int64_t base;
        if (sl_log_append(log, b, len, 2 + i, 1001 + 2 * i, &base)) abort();
    }
    sl_arena_free(a);
    sl_log_close(log);
    char path[128];
    snprintf(path, sizeof path, "%s/00000000000000000000.log", dir);
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(1 << 16);
    *n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    clean_dir(dir);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    size_t n;
    uint8_t *enc = make_segment(true, &n);
    uint8_t flags_enc[1 << 16];
    flags_enc[0] = 0;
    memcpy(flags_enc + 1, enc, n);
    put_seed(argv[1], "seg_sealed", 2, flags_enc, n + 1);
    put_seed(argv[1], "seg_sealed_reenc", 3, flags_enc, n + 1);
    uint32_t hl = sl_get_be32(enc + 24);
    put_seed(argv[1], "envelope", 0, enc + 64, hl - 64);
    put_seed(argv[1], "frame_sealed", 1, enc + hl, sl_get_be32(enc + hl + 8));
    free(enc);
    uint8_t *clear = make_segment(false, &n);
    flags_enc[0] = 1;
    memcpy(flags_enc + 1, clear, n);
    put_seed(argv[1], "seg_clear", 2, flags_enc, n + 1);
    put_seed(argv[1], "seg_clear_reenc", 3, flags_enc, n + 1);
    put_seed(argv[1], "frame_clear", 1, clear + 64, sl_get_be32(clear + 64 + 8));
    free(clear);
    rmdir(fuzz_dir());
    return 0;
}
#endif
