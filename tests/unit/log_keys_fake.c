#include "log_keys_fake.h"

#include <string.h>

#include "base/sl_buf.h"
#include "base/sl_crc32c.h"
#include "crypto/sl_dek.h"
#include "storage/sl_envelope.h"

static void dek_context(uint8_t out[36], const uint8_t topic[16], int32_t part, int64_t base,
                        uint32_t dek_id) {
    memcpy(out, "SLDK", 4);
    memcpy(out + 4, topic, 16);
    sl_be32(out + 20, (uint32_t)part);
    sl_be64(out + 24, (uint64_t)base);
    sl_be32(out + 32, dek_id);
}

static sl_err t_dek_new(void *ctx, const sl_log_keys *k, int64_t seg_base, sl_envelope *env,
                        sl_dek **dek) {
    tkeys *t = ctx;
    t->n_new++;
    if (t->fail_new) return t->fail_new;
    uint8_t key[SL_AEAD_KEY], c[36];
    uint32_t id = 0;
    while (!id)
        if (sl_random_key((uint8_t *)&id, sizeof id)) return SL_ENOMEM;
    if (sl_random_key(key, sizeof key)) return SL_ENOMEM;
    dek_context(c, k->topic_id, k->partition, seg_base, id);
    size_t wl = 0;
    sl_err e = sl_kwp_wrap(t->tk[t->tk_version], c, sizeof c, key, sizeof key, env->wrapped,
                           sizeof env->wrapped, &wl);
    if (!e) {
        env->wrapped_len = (uint8_t)wl;
        env->dek_id = id;
        env->tk_version = t->tk_version;
        e = sl_dek_new(id, key, dek);
    }
    memset(key, 0, sizeof key);
    return e;
}

static sl_err t_dek_open(void *ctx, const sl_log_keys *k, const sl_envelope *env, sl_dek **dek) {
    tkeys *t = ctx;
    t->n_open++;
    if (t->fail_open) return t->fail_open;
    if (env->tk_version < 1 || env->tk_version > 3) return SL_EKEY_UNAVAILABLE;
    uint8_t key[64], c[36];
    size_t kl = 0;
    dek_context(c, k->topic_id, k->partition, env->seg_base, env->dek_id);
    sl_err e = sl_kwp_unwrap(t->tk[env->tk_version], c, sizeof c, env->wrapped, env->wrapped_len,
                             key, sizeof key, &kl);
    if (!e && kl != SL_AEAD_KEY) e = SL_ETAMPER;
    if (!e) e = sl_dek_new(env->dek_id, key, dek);
    memset(key, 0, sizeof key);
    return e;
}

const sl_log_keys_ops k_tops = {.dek_new = t_dek_new, .dek_open = t_dek_open};

void tkeys_init(tkeys *t) {
    memset(t, 0, sizeof *t);
    for (int v = 1; v <= 3; v++) sl_random_key(t->tk[v], SL_AEAD_KEY);
    t->tk_version = 1;
}

sl_log_keys mkkeys(tkeys *t, uint8_t topic_byte, int32_t part, int64_t plain_below) {
    sl_log_keys k = {.ops = &k_tops, .ctx = t, .partition = part, .plain_below = plain_below};
    memset(k.topic_id, topic_byte, sizeof k.topic_id);
    return k;
}

size_t frame_pos(const uint8_t *f, size_t n, int k) {
    size_t pos = sl_get_be32(f + 24);
    for (int i = 0; i < k && pos + 12 <= n; i++) pos += sl_get_be32(f + pos + 8);
    return pos;
}

void fix_frame_crcs(uint8_t *f, size_t pos) {
    uint16_t hlen = sl_get_be16(f + pos + 4);
    uint32_t plen = sl_get_be32(f + pos + 16);
    uint8_t tlen = f[pos + 7];
    if (sl_get_be16(f + pos + 2) & 1)
        sl_be32(f + pos + 44, sl_crc32c(0, f + pos + hlen, plen + tlen));
    sl_be32(f + pos + hlen - 4, sl_crc32c(0, f + pos, (size_t)hlen - 4));
}

void fix_envelope_crc(uint8_t *f) {
    uint32_t hl = sl_get_be32(f + 24);
    sl_be32(f + hl - 4, sl_crc32c(0, f + 64, hl - 64 - 4));
}
