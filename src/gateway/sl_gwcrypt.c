/* Record encryption toward the upstream; see sl_gwcrypt.h.
 *
 * Wire format (envelope version 1):
 *   marker header  `sluice.enc` = one byte: 0x01, | 0x80 when the record key is sealed
 *                  (keys=deterministic and a non-null key); always the record's first header.
 *   value          0x01 | key version (u32 BE) | salt (16, random per batch) |
 *                  nonce (12: four zero bytes | record counter within the batch, u64 BE) |
 *                  AES-256-GCM(parcel) | tag (16)
 *                  under the record key K_b = HKDF-SHA-256(topic key[version],
 *                  info = "sluice-gw-record" | salt): a fresh key per batch, so a nonce (the
 *                  record's index in the batch) is never used twice with a key, whatever the
 *                  number of records a topic key seals. (sl_hkdf takes no salt argument: the
 *                  random salt enters through info, where HKDF-Expand is a PRF under the topic
 *                  key just the same.)
 *   parcel         flags (bit 0: headers inside) | value length (uvarint) | value |
 *                  [header count (uvarint) | per header: key length | key | value length |
 *                   value; lengths zigzag varints, -1 null, as in the record codec]
 *   AAD            "sluice-gw/1" | topic length (u32 BE) | topic | key length (u32 BE,
 *                  0xFFFFFFFF null) | record key as stored upstream (sealed when keys are
 *                  sealed) | the envelope's first 33 bytes (version, key version, salt, nonce)
 *   sealed key     0x01 | SIV tag (16) | AES-256-SIV ciphertext of (0x00 | key), under
 *                  HKDF(topic key[first version], "sluice-gw-key") (64 bytes), the topic name as
 *                  associated data. The first version of the topic key, not the current one:
 *                  equal keys stay equal across rotations (compaction, partitioning by key). The
 *                  0x00 pad byte: OpenSSL's SIV computes no tag for an empty input.
 *
 * Bound: the topic (a record copied to another topic fails), the record key (a value moved to
 * another key fails), the envelope header. Not bound: the partition (admins reassign and tools
 * copy records between partitions of one topic; the client picks the partition anyway), the
 * offset (assigned upstream after sealing) and the producer fields (compaction and mirroring
 * rewrite batches).
 *
 * Tombstones (null value) keep a null value; they get the marker (so a sealed key is found
 * again) and keep their headers clear. */
#include "gateway/sl_gwcrypt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sl_arena.h"
#include "base/sl_logging.h"
#include "base/sl_time.h"
#include "crypto/sl_aead.h"
#include "kms/sl_keysvc.h"
#include "pipeline/sl_req.h"
#include "proto/sl_batch.h"
#include "proto/sl_legacy.h"
#include "proto/sl_records.h"

#define ATTR_CONTROL 0x20
#define MAX_INFLATE  SL_LEGACY_MAX_INFLATE
#define MAX_HINT     ((size_t)4 << 20)

#define ENV_VERSION     1
#define MARK_KEY        "sluice.enc"
#define MARK_KEYLEN     (sizeof MARK_KEY - 1)
#define MARK_SEALED     0x80
#define SALT_LEN        16
#define ENV_HDR         (1 + 4 + SALT_LEN + SL_AEAD_NONCE) /* 33 */
#define ENV_MIN         (ENV_HDR + SL_AEAD_TAG)
#define SIV_TAG         16
#define SIV_KEYLEN      64
#define KEY_MIN         (1 + SIV_TAG + 1)
#define PARCEL_HDRS     0x01
#define REC_INFO        "sluice-gw-record"
#define KEY_INFO        "sluice-gw-key"
#define AAD_PFX         "sluice-gw/1"
#define REPORT_MS       60000
#define CREATE_RETRY_MS 1000
#define NSEEN           1024 /* unencrypted-report slots (direct-mapped by topic and partition) */
#define MAX_VERSIONS    4096

typedef struct pattern {
    char *s;
    size_t n;
    bool prefix;
} pattern;

/* A creation of a topic key in flight (SL_KEYOP_TK_ROTATE on the worker). The key service calls
 * back exactly once, also when closed; after sl_gwcrypt_free the op is an orphan and the
 * callback only frees it. */
typedef struct gwop {
    struct gwop *next;
    sl_gwcrypt *g;
    bool orphan;
    uint8_t id[16];
    char topic[256];
} gwop;

typedef struct seen {
    char *topic; /* malloc'd; NULL: free slot */
    int32_t partition;
    int64_t at_ms;
} seen;

struct sl_gwcrypt {
    struct sl_keysvc *ks;
    sl_events *hub;
    pattern *pats;
    int npats;
    bool keys_det, hdr_enc, reject;
    EVP_CIPHER *siv;
    gwop *ops;
    int64_t create_failed_ms; /* monotonic; creations wait CREATE_RETRY_MS after a failure */
    seen seen[NSEEN];
    int64_t sealed, opened, unencrypted, failed; /* atomics (__atomic builtins) */
};

static void stat_add(int64_t *c, int64_t n) {
    if (n) __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static void topic_cstr(sl_str t, char out[256]) {
    int32_t n = t.len > 255 ? 255 : t.len < 0 ? 0 : t.len;
    if (n) memcpy(out, t.p, (size_t)n);
    out[n] = 0;
}

/* ------------------------------------------------------------------ config, ids */

static sl_err parse_topics(sl_gwcrypt *g, const char *list, char *err, size_t elen) {
    size_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    g->pats = calloc(cap, sizeof *g->pats);
    if (!g->pats) return SL_ENOMEM;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && e[-1] == ' ') e--;
        if (e == s) continue;
        pattern *pt = &g->pats[g->npats];
        pt->prefix = e[-1] == '*';
        pt->n = (size_t)(e - s) - (pt->prefix ? 1 : 0);
        if (memchr(s, '*', pt->n)) {
            snprintf(err, elen,
                     "sluice.gateway.encrypt.topics: \"*\" only at the end of a name (%.*s)",
                     (int)(e - s), s);
            return SL_ECONFIG;
        }
        if (!(pt->s = malloc(pt->n + 1))) return SL_ENOMEM;
        memcpy(pt->s, s, pt->n);
        pt->s[pt->n] = 0;
        g->npats++;
    }
    return SL_OK;
}

sl_err sl_gwcrypt_new(const sl_config *cfg, struct sl_keysvc *ks, sl_events *hub, sl_gwcrypt **out,
                      char *err, size_t elen) {
    *out = NULL;
    if (!cfg->sluice_gateway_encrypt_enable) return SL_OK;
    if (!ks) {
        snprintf(err, elen,
                 "sluice.gateway.encrypt.enable needs the key service "
                 "(sluice.encryption.enable=true and a KMS provider)");
        return SL_ECONFIG;
    }
    sl_gwcrypt *g = calloc(1, sizeof *g);
    if (!g) return SL_ENOMEM;
    g->ks = ks;
    g->hub = hub;
    g->keys_det = !strcmp(cfg->sluice_gateway_encrypt_keys, "deterministic");
    g->hdr_enc = strcmp(cfg->sluice_gateway_encrypt_headers, "clear") != 0;
    g->reject = !strcmp(cfg->sluice_gateway_unencrypted_policy, "reject");
    sl_err e = parse_topics(g, cfg->sluice_gateway_encrypt_topics, err, elen);
    if (!e && !(g->siv = EVP_CIPHER_fetch(NULL, "AES-256-SIV", NULL))) {
        snprintf(err, elen, "sluice.gateway.encrypt.enable: OpenSSL has no AES-256-SIV");
        e = SL_ECONFIG;
    }
    if (e) {
        sl_gwcrypt_free(g);
        return e;
    }
    *out = g;
    return SL_OK;
}

void sl_gwcrypt_free(sl_gwcrypt *g) {
    if (!g) return;
    for (gwop *o = g->ops; o; o = o->next) o->orphan = true; /* the callback frees it */
    for (int i = 0; i < g->npats; i++) free(g->pats[i].s);
    free(g->pats);
    for (int i = 0; i < NSEEN; i++) free(g->seen[i].topic);
    EVP_CIPHER_free(g->siv);
    OPENSSL_cleanse(g, sizeof *g);
    free(g);
}

bool sl_gwcrypt_applies(const sl_gwcrypt *g, sl_str topic) {
    if (!g || topic.len <= 0) return false;
    for (int i = 0; i < g->npats; i++) {
        const pattern *p = &g->pats[i];
        if (p->prefix ? (size_t)topic.len >= p->n && !memcmp(topic.p, p->s, p->n)
                      : (size_t)topic.len == p->n && !memcmp(topic.p, p->s, p->n))
            return true;
    }
    return false;
}

void sl_gwcrypt_key_id(sl_str topic, uint8_t id[16]) {
    static const char pfx[] = "gwtopic:";
    uint8_t md[32];
    unsigned int ml = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(c, pfx, sizeof pfx - 1) &&
              EVP_DigestUpdate(c, topic.p, topic.len > 0 ? (size_t)topic.len : 0) &&
              EVP_DigestFinal_ex(c, md, &ml) && ml == 32;
    EVP_MD_CTX_free(c);
    if (!ok) abort(); /* SHA-256 missing from OpenSSL: nothing can work */
    memcpy(id, md, 16);
    id[0] = 0xFE;
}

void sl_gwcrypt_stats_get(const sl_gwcrypt *g, sl_gwcrypt_stats *out) {
    memset(out, 0, sizeof *out);
    if (!g) return;
    out->sealed_records = __atomic_load_n(&g->sealed, __ATOMIC_RELAXED);
    out->opened_records = __atomic_load_n(&g->opened, __ATOMIC_RELAXED);
    out->unencrypted_records = __atomic_load_n(&g->unencrypted, __ATOMIC_RELAXED);
    out->failed_records = __atomic_load_n(&g->failed, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ events */

static void key_event(sl_gwcrypt *g, const sl_xform_ctx *c, const char *op, const char *topic,
                      const char *reason, const char *detail) {
    if (!g->hub) return;
    sl_event ev = {.kind = SL_EV_KEY};
    if (c->rq) {
        ev.conn_id = c->rq->conn_id;
        ev.principal = c->rq->principal;
        ev.peer = c->rq->peer;
        ev.listener = c->rq->listener;
    }
    ev.key = (sl_ev_key){.op = op,
                         .topic = topic,
                         .partition = c->partition,
                         .reason = reason,
                         .success = false,
                         .detail = detail};
    sl_events_emit(g->hub, &ev);
}

/* True when this partition's unencrypted records were not reported in the last minute (and
 * notes that they are now). */
static bool report_due(sl_gwcrypt *g, const char *topic, int32_t partition, int64_t now) {
    uint32_t h = 2166136261u;
    for (const char *p = topic; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ (uint32_t)partition) * 16777619u;
    seen *s = &g->seen[h % NSEEN];
    if (s->topic && s->partition == partition && !strcmp(s->topic, topic)) {
        if (now - s->at_ms < REPORT_MS) return false;
        s->at_ms = now;
        return true;
    }
    char *dup = strdup(topic);
    if (!dup) return true;
    free(s->topic);
    *s = (seen){dup, partition, now};
    return true;
}

/* ------------------------------------------------------------------ keys */

static void created(void *ctx, sl_err e, const char *result) {
    gwop *o = ctx;
    sl_gwcrypt *g = o->orphan ? NULL : o->g;
    if (g) {
        for (gwop **pp = &g->ops; *pp; pp = &(*pp)->next)
            if (*pp == o) {
                *pp = o->next;
                break;
            }
        if (e) {
            g->create_failed_ms = sl_mono_ms();
            SL_ERROR("gateway", "cannot create the topic's gateway key; its records wait",
                     "topic=%s err=%s result=\"%s\"", o->topic, sl_errname(e),
                     result ? result : "");
        } else {
            SL_INFO("gateway", "gateway key created", "topic=%s", o->topic);
        }
    }
    free(o);
}

/* Starts the creation of `topic`'s key unless one is in flight (or failed just now). */
static void create_async(sl_gwcrypt *g, const uint8_t id[16], const char *topic) {
    for (gwop *o = g->ops; o; o = o->next)
        if (!memcmp(o->id, id, 16)) return;
    if (g->create_failed_ms && sl_mono_ms() - g->create_failed_ms < CREATE_RETRY_MS) return;
    gwop *o = calloc(1, sizeof *o);
    if (!o) return;
    o->g = g;
    memcpy(o->id, id, 16);
    snprintf(o->topic, sizeof o->topic, "%s", topic);
    o->next = g->ops;
    g->ops = o;
    sl_keysvc_op(g->ks, SL_KEYOP_TK_ROTATE, id, 1, "gateway record encryption: first use", created,
                 o);
}

/* Topic key version `v` (0: current; *outv gets it). With `create`, a topic without a key gets
 * one made on the worker and SL_EKEY_UNAVAILABLE meanwhile. */
static sl_err topic_key(sl_gwcrypt *g, const uint8_t id[16], const char *topic, uint32_t v,
                        bool create, uint8_t out[32], uint32_t *outv) {
    sl_err e = sl_keysvc_key_get(g->ks, id, v, out, outv);
    if (e == SL_ENOTFOUND && create && !v) {
        create_async(g, id, topic);
        return SL_EKEY_UNAVAILABLE;
    }
    return e;
}

/* The key-sealing key: derived from the topic key's first version. */
static sl_err siv_key(sl_gwcrypt *g, const uint8_t id[16], const char *topic, bool create,
                      uint8_t out[SIV_KEYLEN]) {
    uint32_t vs[MAX_VERSIONS];
    int n = sl_keysvc_key_versions(g->ks, id, vs, MAX_VERSIONS);
    uint8_t tk[32];
    sl_err e = topic_key(g, id, topic, n > 0 ? vs[0] : 0, create, tk, NULL);
    if (!e)
        e = sl_hkdf(tk, sizeof tk, (const uint8_t *)KEY_INFO, sizeof KEY_INFO - 1, out, SIV_KEYLEN);
    OPENSSL_cleanse(tk, sizeof tk);
    return e;
}

static sl_err batch_key(const uint8_t tk[32], const uint8_t salt[SALT_LEN], sl_aead **out) {
    uint8_t info[sizeof REC_INFO - 1 + SALT_LEN], k[32];
    memcpy(info, REC_INFO, sizeof REC_INFO - 1);
    memcpy(info + sizeof REC_INFO - 1, salt, SALT_LEN);
    sl_err e = sl_hkdf(tk, 32, info, sizeof info, k, sizeof k);
    if (!e) e = sl_aead_new(k, out);
    OPENSSL_cleanse(k, sizeof k);
    return e;
}

/* AES-256-SIV of (0x00 | in) with `ad`, into out (1 + SIV_TAG + 1 + n bytes). */
static sl_err siv_seal(sl_gwcrypt *g, const uint8_t key[SIV_KEYLEN], const char *ad,
                       const uint8_t *in, size_t n, uint8_t *out, uint8_t *tmp) {
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int l = 0;
    tmp[0] = 0;
    if (n) memcpy(tmp + 1, in, n);
    out[0] = ENV_VERSION;
    bool ok = cx && EVP_CipherInit_ex2(cx, g->siv, key, NULL, 1, NULL) &&
              EVP_CipherUpdate(cx, NULL, &l, (const uint8_t *)ad, (int)strlen(ad)) &&
              EVP_CipherUpdate(cx, out + 1 + SIV_TAG, &l, tmp, (int)(n + 1)) &&
              EVP_CipherFinal_ex(cx, out + 1 + SIV_TAG + l, &l) &&
              EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_GET_TAG, SIV_TAG, out + 1) > 0;
    EVP_CIPHER_CTX_free(cx);
    OPENSSL_cleanse(tmp, n + 1);
    return ok ? SL_OK : SL_ENOMEM;
}

/* Opens a sealed key in[0..n) into out (n - KEY_MIN bytes); SL_ETAMPER when it does not. */
static sl_err siv_open(sl_gwcrypt *g, const uint8_t key[SIV_KEYLEN], const char *ad,
                       const uint8_t *in, size_t n, uint8_t *tmp) {
    if (n < KEY_MIN || in[0] != ENV_VERSION) return SL_ETAMPER;
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    if (!cx) return SL_ENOMEM;
    int l = 0, l2 = 0;
    size_t cl = n - 1 - SIV_TAG;
    bool ok = EVP_CipherInit_ex2(cx, g->siv, key, NULL, 0, NULL) &&
              EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_SET_TAG, SIV_TAG, (void *)(in + 1)) > 0 &&
              EVP_CipherUpdate(cx, NULL, &l, (const uint8_t *)ad, (int)strlen(ad)) &&
              EVP_CipherUpdate(cx, tmp, &l, in + 1 + SIV_TAG, (int)cl) &&
              EVP_CipherFinal_ex(cx, tmp + l, &l2) && (size_t)(l + l2) == cl && tmp[0] == 0;
    EVP_CIPHER_CTX_free(cx);
    if (!ok) OPENSSL_cleanse(tmp, cl);
    return ok ? SL_OK : SL_ETAMPER;
}

/* ------------------------------------------------------------------ per record */

/* The AAD of a value envelope. */
static uint8_t *make_aad(sl_arena *a, sl_str topic, sl_bytes key, const uint8_t *hdr, size_t *n) {
    size_t kl = key.len > 0 ? (size_t)key.len : 0;
    *n = sizeof AAD_PFX - 1 + 4 + (size_t)topic.len + 4 + kl + ENV_HDR;
    uint8_t *p = sl_arena_alloc(a, *n), *q = p;
    if (!p) return NULL;
    memcpy(q, AAD_PFX, sizeof AAD_PFX - 1);
    q += sizeof AAD_PFX - 1;
    sl_be32(q, (uint32_t)topic.len);
    memcpy(q + 4, topic.p, (size_t)topic.len);
    q += 4 + topic.len;
    sl_be32(q, key.len < 0 ? 0xFFFFFFFFu : (uint32_t)key.len);
    if (kl) memcpy(q + 4, key.p, kl);
    q += 4 + kl;
    memcpy(q, hdr, ENV_HDR);
    return p;
}

/* A record's headers into an array in `a` (room for one more in front: the marker). */
static sl_rec_header *headers_of(sl_arena *a, sl_record *r, int32_t *n) {
    sl_rec_header *h = sl_arena_alloc(a, sizeof *h * (size_t)(r->nheaders + 1));
    if (!h) return NULL;
    int32_t i = 1;
    while (sl_record_header_next(r, &h[i].key, &h[i].value)) i++;
    *n = i - 1;
    return h;
}

typedef struct sealer {
    sl_gwcrypt *g;
    sl_str topic;
    char tname[256];
    uint8_t id[16];
    uint32_t kv;
    uint8_t tk[32];
    bool have_siv;
    uint8_t siv[SIV_KEYLEN];
    sl_arena *scratch;
    /* open: the batch key of the last (version, salt) seen */
    sl_aead *ak;
    uint32_t ak_v;
    uint8_t ak_salt[SALT_LEN];
    const char *why; /* open: what failed, for the tamper event */
} sealer;

static void sealer_done(sealer *s) {
    OPENSSL_cleanse(s->tk, sizeof s->tk);
    OPENSSL_cleanse(s->siv, sizeof s->siv);
    sl_aead_free(s->ak);
    s->ak = NULL;
}

static sl_err seal_record(sealer *s, sl_aead *ak, const uint8_t salt[SALT_LEN], uint64_t idx,
                          sl_record *r, sl_rec_in *in) {
    sl_gwcrypt *g = s->g;
    sl_arena *t = s->scratch;
    int32_t nh;
    sl_rec_header *h = headers_of(t, r, &nh);
    if (!h) return SL_ENOMEM;
    uint8_t *mark = sl_arena_alloc(t, 1);
    if (!mark) return SL_ENOMEM;
    mark[0] = ENV_VERSION;
    sl_bytes key = r->key;
    if (g->keys_det && key.len >= 0) {
        if ((size_t)key.len > (size_t)INT32_MAX - KEY_MIN) return SL_ETOOLARGE;
        size_t kn = (size_t)key.len + KEY_MIN;
        uint8_t *sk = sl_arena_alloc(t, kn), *tmp = sl_arena_alloc(t, (size_t)key.len + 1);
        if (!sk || !tmp) return SL_ENOMEM;
        sl_err e = siv_seal(g, s->siv, s->tname, key.p, (size_t)key.len, sk, tmp);
        if (e) return e;
        key = (sl_bytes){sk, (int32_t)kn};
        mark[0] |= MARK_SEALED;
    }
    h[0] = (sl_rec_header){{(const uint8_t *)MARK_KEY, MARK_KEYLEN}, {mark, 1}};
    *in = (sl_rec_in){.attributes = r->attributes,
                      .timestamp_delta = r->timestamp_delta,
                      .offset_delta = r->offset_delta,
                      .key = key,
                      .value = r->value,
                      .headers = h,
                      .nheaders = nh + 1};
    if (r->value.len < 0) return SL_OK; /* a tombstone: value null, headers clear */
    bool inside = g->hdr_enc;
    /* Sized up front: a growth would leave a clear copy behind in the scratch arena. */
    size_t est = (size_t)r->value.len + 16;
    for (int32_t i = 1; inside && i <= nh; i++)
        est += 10 + (size_t)(h[i].key.len > 0 ? h[i].key.len : 0) +
               (size_t)(h[i].value.len > 0 ? h[i].value.len : 0);
    sl_wr w;
    sl_wr_init(&w, t, est);
    sl_wr_i8(&w, inside ? PARCEL_HDRS : 0);
    sl_wr_uvarint(&w, (uint32_t)r->value.len);
    sl_wr_raw(&w, r->value.p, (size_t)r->value.len);
    if (inside) {
        sl_wr_uvarint(&w, (uint32_t)nh);
        for (int32_t i = 1; i <= nh; i++) {
            sl_wr_varint(&w, h[i].key.len);
            if (h[i].key.len > 0) sl_wr_raw(&w, h[i].key.p, (size_t)h[i].key.len);
            sl_wr_varint(&w, h[i].value.len);
            if (h[i].value.len > 0) sl_wr_raw(&w, h[i].value.p, (size_t)h[i].value.len);
        }
        in->nheaders = 1;
    }
    if (w.err) return w.err;
    size_t total = ENV_HDR + w.len + SL_AEAD_TAG;
    if (total > INT32_MAX) return SL_ETOOLARGE;
    uint8_t *env = sl_arena_alloc(t, total);
    if (!env) return SL_ENOMEM;
    env[0] = ENV_VERSION;
    sl_be32(env + 1, s->kv);
    memcpy(env + 5, salt, SALT_LEN);
    uint8_t *nonce = env + 5 + SALT_LEN;
    memset(nonce, 0, 4);
    sl_be64(nonce + 4, idx);
    memcpy(env + ENV_HDR, w.buf, w.len);
    OPENSSL_cleanse(w.buf, w.len);
    size_t alen;
    uint8_t *aad = make_aad(t, s->topic, key, env, &alen);
    if (!aad) return SL_ENOMEM;
    sl_aead_part part = {env + ENV_HDR, w.len};
    sl_err e = sl_aead_seal(ak, nonce, aad, alen, &part, 1, env + ENV_HDR + w.len);
    if (e) return e;
    in->value = (sl_bytes){env, (int32_t)total};
    return SL_OK;
}

/* Opens a marked record into *in (pointing into the scratch arena). SL_ETAMPER (s->why says what)
 * when the envelope does not authenticate or parse. */
static sl_err open_record(sealer *s, sl_record *r, sl_rec_header *h, int32_t nh, sl_rec_in *in) {
    sl_gwcrypt *g = s->g;
    sl_arena *t = s->scratch;
    uint8_t mark = h[0].value.p[0];
    if ((mark & ~MARK_SEALED) != ENV_VERSION) {
        s->why = "unknown envelope version";
        return SL_ETAMPER;
    }
    *in = (sl_rec_in){.attributes = r->attributes,
                      .timestamp_delta = r->timestamp_delta,
                      .offset_delta = r->offset_delta,
                      .key = r->key,
                      .value = r->value,
                      .headers = h + 1,
                      .nheaders = nh - 1};
    sl_err e;
    if ((mark & MARK_SEALED) && r->key.len >= 0) {
        if (!s->have_siv) {
            if ((e = siv_key(g, s->id, s->tname, false, s->siv))) return e;
            s->have_siv = true;
        }
        size_t n = (size_t)r->key.len;
        uint8_t *tmp = sl_arena_alloc(t, n > KEY_MIN ? n : KEY_MIN);
        if (!tmp) return SL_ENOMEM;
        if ((e = siv_open(g, s->siv, s->tname, r->key.p, n, tmp))) {
            s->why = "sealed record key";
            return e;
        }
        in->key = (sl_bytes){tmp + 1, (int32_t)(n - KEY_MIN)};
    } else if (mark & MARK_SEALED) {
        s->why = "sealed-key mark on a null key";
        return SL_ETAMPER;
    }
    if (r->value.len < 0) return SL_OK;
    const uint8_t *env = r->value.p;
    size_t n = (size_t)r->value.len;
    if (n < ENV_MIN || env[0] != ENV_VERSION) {
        s->why = "value envelope";
        return SL_ETAMPER;
    }
    uint32_t kv = sl_get_be32(env + 1);
    if (!s->ak || s->ak_v != kv || memcmp(s->ak_salt, env + 5, SALT_LEN)) {
        sl_aead_free(s->ak);
        s->ak = NULL;
        uint8_t tk[32];
        e = topic_key(g, s->id, s->tname, kv, false, tk, NULL);
        /* A version this keyring does not have (yet: another gateway may have rotated) or a
         * shredded key: the partition answers KAFKA_STORAGE_ERROR, as storage does. */
        if (e == SL_ENOTFOUND || e == SL_EKEY_DESTROYED)
            SL_WARN("gateway", "a fetched record names a key version this gateway cannot use",
                    "topic=%s version=%u err=%s", s->tname, (unsigned)kv, sl_errname(e));
        if (!e && !kv) {
            s->why = "key version 0";
            e = SL_ETAMPER;
        }
        if (!e) e = batch_key(tk, env + 5, &s->ak);
        OPENSSL_cleanse(tk, sizeof tk);
        if (e) return e;
        s->ak_v = kv;
        memcpy(s->ak_salt, env + 5, SALT_LEN);
    }
    size_t cl = n - ENV_MIN, alen;
    uint8_t *pt = sl_arena_alloc(t, cl ? cl : 1);
    uint8_t *aad = make_aad(t, s->topic, r->key, env, &alen);
    if (!pt || !aad) return SL_ENOMEM;
    memcpy(pt, env + ENV_HDR, cl);
    sl_aead_part part = {pt, cl};
    if ((e = sl_aead_open(s->ak, env + 5 + SALT_LEN, aad, alen, &part, 1, env + ENV_HDR + cl))) {
        s->why = "value envelope";
        return e == SL_ENOMEM ? e : SL_ETAMPER;
    }
    /* The parcel authenticated: it is ours; a parse failure is still refused, not trusted. */
    sl_rd rd = sl_rd_init(pt, cl);
    uint8_t flags = (uint8_t)sl_rd_i8(&rd);
    uint32_t vl = sl_rd_uvarint(&rd);
    const uint8_t *v = sl_rd_take(&rd, vl);
    in->value = (sl_bytes){v, (int32_t)vl};
    if (!rd.err && vl > INT32_MAX) sl_rd_fail(&rd);
    if (flags & PARCEL_HDRS) {
        int32_t hn = sl_rd_check_count(&rd, sl_rd_uvarint(&rd), 2);
        sl_rec_header *hh = sl_arena_alloc(t, sizeof *hh * (size_t)(hn > 0 ? hn : 1));
        if (!hh) return SL_ENOMEM;
        for (int32_t i = 0; i < hn && !rd.err; i++) {
            hh[i].key = sl_rd_bytes_n(&rd, sl_rd_varint(&rd));
            hh[i].value = sl_rd_bytes_n(&rd, sl_rd_varint(&rd));
        }
        /* Headers inside and outside at once: not something a gateway writes. */
        if (nh != 1) sl_rd_fail(&rd);
        in->headers = hh;
        in->nheaders = hn < 0 ? 0 : hn;
    }
    if (rd.err || sl_rd_left(&rd) || (flags & ~PARCEL_HDRS)) {
        s->why = "parcel";
        return SL_ETAMPER;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------ per batch */

/* Seals every record of one (non-control) batch into *out. */
static sl_err seal_batch(sealer *s, sl_arena *a, const uint8_t *b, const sl_batch_info *bi,
                         uint8_t **out, size_t *outlen, int64_t *nrec) {
    sl_rec_iter it;
    sl_err e = sl_rec_iter_init(&it, b, bi->size, a, MAX_INFLATE);
    if (e) return e;
    uint8_t salt[SALT_LEN];
    if ((e = sl_random_key(salt, sizeof salt))) return e;
    sl_aead *ak = NULL;
    if ((e = batch_key(s->tk, salt, &ak))) return e;
    size_t recs = sl_rd_left(&it.r);
    sl_rec_builder bld;
    /* Each record grows by about 70 bytes; the builder grows beyond the hint when needed. */
    size_t hint = recs + (size_t)bi->record_count * (ENV_MIN + 24) + 64;
    sl_rec_builder_init(&bld, a, hint < MAX_HINT ? hint : MAX_HINT);
    sl_record r;
    uint64_t idx = 0;
    while (!e && sl_rec_iter_next(&it, &r)) {
        sl_rec_in in;
        e = seal_record(s, ak, salt, idx++, &r, &in);
        if (!e) e = sl_rec_builder_add(&bld, &in);
        /* Tiny records grow most: bounded like what a decompression may give. */
        if (!e && sl_rec_builder_bytes(&bld) > 2 * MAX_INFLATE) e = SL_ETOOLARGE;
        sl_arena_reset(s->scratch);
    }
    sl_aead_free(ak);
    if (!e) e = sl_rec_iter_err(&it);
    if (!e) e = sl_rec_builder_seal_like(&bld, bi, out, outlen);
    if (!e) *nrec += (int64_t)idx;
    return e;
}

typedef struct open_count {
    int64_t opened, plain;
} open_count;

/* Opens the marked records of one batch; *out NULL when it holds none (left as stored).
 * *unparsed: the error is the batch's own (it does not decompress or parse), not a record's. */
static sl_err open_batch(sealer *s, sl_arena *a, const uint8_t *b, const sl_batch_info *bi,
                         uint8_t **out, size_t *outlen, open_count *cnt, bool *unparsed) {
    *out = NULL;
    *unparsed = true;
    sl_rec_iter it;
    sl_err e = sl_rec_iter_init(&it, b, bi->size, a, MAX_INFLATE);
    if (e) return e;
    *unparsed = false;
    sl_rec_builder bld;
    sl_rec_builder_init(&bld, a, sl_rd_left(&it.r));
    sl_record r;
    int64_t opened = 0, plain = 0;
    while (!e && sl_rec_iter_next(&it, &r)) {
        int32_t nh;
        sl_rec_header *h = headers_of(s->scratch, &r, &nh);
        if (!h) return SL_ENOMEM;
        h++; /* no room needed in front here */
        sl_rec_in in;
        if (nh > 0 && h[0].key.len == (int32_t)MARK_KEYLEN &&
            !memcmp(h[0].key.p, MARK_KEY, MARK_KEYLEN) && h[0].value.len == 1) {
            e = open_record(s, &r, h, nh, &in);
            opened++;
        } else {
            in = (sl_rec_in){.attributes = r.attributes,
                             .timestamp_delta = r.timestamp_delta,
                             .offset_delta = r.offset_delta,
                             .key = r.key,
                             .value = r.value,
                             .headers = h,
                             .nheaders = nh};
            plain++;
        }
        if (!e) e = sl_rec_builder_add(&bld, &in);
        sl_arena_reset(s->scratch);
    }
    if (e) return e;
    if ((e = sl_rec_iter_err(&it))) {
        *unparsed = true;
        return e;
    }
    cnt->opened += opened;
    cnt->plain += plain;
    if (!opened) return SL_OK;
    return sl_rec_builder_seal_like(&bld, bi, out, outlen);
}

static sl_err sealer_init(sealer *s, sl_gwcrypt *g, sl_str topic) {
    memset(s, 0, sizeof *s);
    s->g = g;
    s->topic = topic;
    topic_cstr(topic, s->tname);
    sl_gwcrypt_key_id(topic, s->id);
    s->scratch = sl_arena_new(64 * 1024);
    return s->scratch ? SL_OK : SL_ENOMEM;
}

/* ------------------------------------------------------------------ the transforms */

static int16_t seal_fn(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                       bool *rewritten) {
    sl_gwcrypt *g = arg;
    if (!sl_gwcrypt_applies(g, c->topic)) return SL_KAFKA_NONE;
    sealer s;
    if (sealer_init(&s, g, c->topic)) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    sl_err e = topic_key(g, s.id, s.tname, 0, true, s.tk, &s.kv);
    if (!e && g->keys_det) {
        e = siv_key(g, s.id, s.tname, true, s.siv);
        s.have_siv = !e;
    }
    const uint8_t *d = *data;
    size_t off = 0, n = *len;
    int64_t nrec = 0;
    sl_wr w;
    sl_wr_init(&w, c->a, n + n / 2 + 256);
    bool any = false;
    while (!e && off < n) {
        sl_batch_info bi;
        if (!sl_batch_parse(d + off, n - off, &bi) || bi.magic != 2) {
            e = SL_ECORRUPT;
            break;
        }
        uint8_t *nb = NULL;
        size_t nl = 0;
        if (!(bi.attributes & ATTR_CONTROL)) {
            e = seal_batch(&s, c->a, d + off, &bi, &nb, &nl, &nrec);
            any |= nb != NULL;
        }
        if (!e) sl_wr_raw(&w, nb ? nb : d + off, nb ? nl : bi.size);
        off += bi.size;
    }
    if (!e) e = w.err;
    sealer_done(&s);
    sl_arena_free(s.scratch);
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) return SL_KAFKA_KAFKA_STORAGE_ERROR;
    if (e) {
        SL_WARN("gateway", "cannot seal a produce set", "topic=%s partition=%d err=%s", s.tname,
                (int)c->partition, sl_errname(e));
        if (c->why && c->whylen)
            snprintf(c->why, c->whylen, "gateway record encryption: %s", sl_strerror(e));
        return e == SL_ENOTFOUND || e == SL_EKEY_DESTROYED ? SL_KAFKA_KAFKA_STORAGE_ERROR
                                                           : sl_err_to_kafka(e);
    }
    stat_add(&g->sealed, nrec);
    if (any) {
        *data = w.buf;
        *len = w.len;
        *rewritten = true;
    }
    return SL_KAFKA_NONE;
}

/* The size of the whole legacy (magic 0 or 1) message at p[0..n), 0 when there is none: offset
 * i64 | size i32 | crc u32 | magic i8 | ... (the smallest, magic 0: 14 bytes after offset and
 * size). Some are shorter than a v2 batch header, so sl_batch_parse would take them for a cut-short
 * batch and let what follows go out unexamined. */
static size_t legacy_size(const uint8_t *p, size_t n) {
    if (n <= SL_BATCH_MAGIC || (p[SL_BATCH_MAGIC] != 0 && p[SL_BATCH_MAGIC] != 1)) return 0;
    int32_t size = (int32_t)sl_get_be32(p + SL_BATCH_LENGTH);
    if (size < 14 || (size_t)size > n - 12) return 0;
    return 12 + (size_t)size;
}

static int16_t unseal_fn(void *arg, const sl_xform_ctx *c, uint8_t **data, size_t *len,
                         bool *rewritten) {
    sl_gwcrypt *g = arg;
    if (!sl_gwcrypt_applies(g, c->topic)) return SL_KAFKA_NONE;
    sealer s;
    if (sealer_init(&s, g, c->topic)) return SL_KAFKA_UNKNOWN_SERVER_ERROR;
    const uint8_t *d = *data;
    size_t off = 0, n = *len;
    sl_wr w;
    sl_wr_init(&w, c->a, n + 256);
    bool any = false, unparsed = false;
    open_count cnt = {0};
    sl_err e = SL_OK;
    while (!e && off < n) {
        sl_batch_info bi;
        const uint8_t *b = d + off;
        size_t lsize = legacy_size(b, n - off);
        if (lsize) { /* a legacy message: written around the gateway by an old client */
            cnt.plain++;
            sl_wr_raw(&w, b, lsize);
            off += lsize;
            continue;
        }
        /* A fetch's last batch may be cut short: it goes out as it is. */
        if (!sl_batch_parse(b, n - off, &bi)) {
            sl_wr_raw(&w, b, n - off);
            break;
        }
        uint8_t *nb = NULL;
        size_t nl = 0;
        if (bi.magic == 2 && !(bi.attributes & ATTR_CONTROL)) {
            bool bad;
            e = open_batch(&s, c->a, b, &bi, &nb, &nl, &cnt, &bad);
            if (e && bad && e != SL_ENOMEM) {
                /* A stored batch that does not decompress (or beyond MAX_INFLATE) or parse goes
                 * out as stored (the client's own checks decide), as field protection does;
                 * under policy reject it is refused: what it holds cannot be checked. */
                unparsed = true;
                nb = NULL;
                e = g->reject ? SL_EPOLICY : SL_OK;
            }
        }
        any |= nb != NULL;
        if (!e) sl_wr_raw(&w, nb ? nb : b, nb ? nl : bi.size);
        off += bi.size;
    }
    if (!e) e = w.err;
    sealer_done(&s);
    sl_arena_free(s.scratch);
    if (unparsed)
        SL_WARN("gateway", "a fetched batch does not parse", "topic=%s partition=%d offset=%lld %s",
                s.tname, (int)c->partition, (long long)c->fetch_offset,
                g->reject ? "refused=policy-reject" : "served=as-stored");
    if (e == SL_EKEY_UNAVAILABLE || e == SL_EKMS_UNAVAILABLE) return SL_KAFKA_KAFKA_STORAGE_ERROR;
    if (e == SL_EPOLICY) return SL_KAFKA_INVALID_RECORD;
    if (e == SL_ETAMPER) {
        stat_add(&g->failed, 1);
        /* A consumer retries the same offset: the log line is rate-limited (per topic, in the
         * slot meant for a client address), the event is not. */
        sl_log_limited(SL_LOG_ERROR, "gateway", "a fetched record failed authentication", s.tname,
                       "topic=%s partition=%d offset=%lld what=\"%s\"", s.tname, (int)c->partition,
                       (long long)c->fetch_offset, s.why ? s.why : "");
        key_event(g, c, "tamper", s.tname, s.why ? s.why : "authentication failed",
                  "a fetched record failed authentication");
        return SL_KAFKA_CORRUPT_MESSAGE;
    }
    if (e) {
        SL_WARN("gateway", "cannot open a fetched set", "topic=%s partition=%d err=%s", s.tname,
                (int)c->partition, sl_errname(e));
        return e == SL_ENOTFOUND || e == SL_EKEY_DESTROYED ? SL_KAFKA_KAFKA_STORAGE_ERROR
                                                           : sl_err_to_kafka(e);
    }
    if (cnt.plain) {
        stat_add(&g->unencrypted, cnt.plain);
        if (report_due(g, s.tname, c->partition, sl_mono_ms())) {
            char detail[96];
            snprintf(detail, sizeof detail, "%lld record(s) without the envelope (policy %s)",
                     (long long)cnt.plain, g->reject ? "reject" : "report");
            SL_WARN("gateway", "records without the envelope on an encrypted topic",
                    "topic=%s partition=%d records=%lld policy=%s", s.tname, (int)c->partition,
                    (long long)cnt.plain, g->reject ? "reject" : "report");
            key_event(g, c, "unencrypted", s.tname, "written around the gateway", detail);
        }
        if (g->reject) return SL_KAFKA_INVALID_RECORD;
    }
    stat_add(&g->opened, cnt.opened);
    if (any) {
        *data = w.buf;
        *len = w.len;
        *rewritten = true;
    }
    return SL_KAFKA_NONE;
}

sl_xform sl_gwcrypt_seal(sl_gwcrypt *g) { return (sl_xform){g ? seal_fn : NULL, g}; }
sl_xform sl_gwcrypt_unseal(sl_gwcrypt *g) { return (sl_xform){g ? unseal_fn : NULL, g}; }
